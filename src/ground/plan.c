/* ground: which items a grounding run sends and in what order — an item list, the dataset's order,
 * the released script's priority or a seeded shuffle; then the shard and the limit. */
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

int v4r_plan_shard_of(const char *item_id, int count)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, 64 bit */
    for (const unsigned char *p = (const unsigned char *)item_id; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return (int)(h % (uint64_t)count) + 1;
}

void v4r_plan_priority(const v4r_dataset *ds, double *score)
{
    size_t n = ds->n_items;
    double *pop = v4r_calloc(n ? n : 1, sizeof(double));
    double *rec = v4r_calloc(n ? n : 1, sizeof(double));
    const v4r_split *tr = &ds->split[V4R_TRAIN];
    for (size_t k = 0; k < tr->n; k++) {
        int32_t i = tr->item[k];
        pop[i] += 1;
        /* recency: the latest timestamp, or the latest position in the file without timestamps */
        double t = tr->has_ts[k] ? (double)tr->ts[k] : (double)(k + 1);
        if (t > rec[i])
            rec[i] = t;
    }
    double pmin = 0, pmax = 0, rmin = 0, rmax = 0;
    for (size_t i = 0; i < n; i++) {
        if (!i || pop[i] < pmin) pmin = pop[i];
        if (!i || pop[i] > pmax) pmax = pop[i];
        if (!i || rec[i] < rmin) rmin = rec[i];
        if (!i || rec[i] > rmax) rmax = rec[i];
    }
    for (size_t i = 0; i < n; i++) {
        double p = pmax > pmin ? (pop[i] - pmin) / (pmax - pmin) : 0;
        double r = rmax > rmin ? (rec[i] - rmin) / (rmax - rmin) : 0;
        score[i] = 0.7 * p + 0.3 * r;
    }
    free(pop);
    free(rec);
}

static const double *sort_score;
static int by_score_desc(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (sort_score[x] != sort_score[y])
        return sort_score[x] > sort_score[y] ? -1 : 1;
    return (x > y) - (x < y); /* ties: dataset order */
}

static int read_item_list(const v4r_dataset *ds, const char *path, v4r_plan *p, v4r_err *err)
{
    v4r_lines r;
    int rc = v4r_lines_open(&r, path, err);
    if (rc)
        return rc;
    size_t cap = 0;
    uint8_t *seen = v4r_calloc(ds->n_items ? ds->n_items : 1, 1);
    int got;
    while ((got = v4r_lines_next(&r, err)) == 1) {
        char *s = r.line;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t len = strlen(s);
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            s[--len] = 0;
        if (!len || *s == '#')
            continue;
        int64_t i = v4r_strmap_get(&ds->item_index, s);
        if (i < 0) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: item '%s' is not in the dataset", path, r.lineno, s);
            break;
        }
        if (seen[i]++)
            continue; /* a repeated id is sent once */
        v4r_grow((void **)&p->item, &cap, p->n + 1, sizeof(int32_t));
        p->item[p->n++] = (int32_t)i;
    }
    if (got < 0)
        rc = err->code;
    v4r_lines_close(&r);
    free(seen);
    return rc;
}

static void order_items(const v4r_dataset *ds, const v4r_ground_opts *o, v4r_plan *p)
{
    if (o->order == V4R_ORDER_PRIORITY) {
        double *score = v4r_malloc((ds->n_items ? ds->n_items : 1) * sizeof(double));
        v4r_plan_priority(ds, score);
        sort_score = score;
        qsort(p->item, p->n, sizeof(int32_t), by_score_desc);
        sort_score = NULL;
        free(score);
    } else if (o->order == V4R_ORDER_RANDOM) {
        v4r_rng rng;
        v4r_rng_seed(&rng, o->order_seed);
        for (size_t k = p->n; k > 1; k--) {
            size_t j = v4r_rng_below(&rng, k);
            int32_t t = p->item[k - 1];
            p->item[k - 1] = p->item[j];
            p->item[j] = t;
        }
    }
}

int v4r_plan_build(const v4r_dataset *ds, const v4r_ground_opts *o, v4r_plan *p, v4r_err *err)
{
    memset(p, 0, sizeof *p);
    if (o->items_path) {
        int rc = read_item_list(ds, o->items_path, p, err);
        if (rc) {
            v4r_plan_free(p);
            return rc;
        }
    } else {
        p->item = v4r_malloc((ds->n_items ? ds->n_items : 1) * sizeof(int32_t));
        for (size_t i = 0; i < ds->n_items; i++)
            p->item[p->n++] = (int32_t)i;
    }
    order_items(ds, o, p);
    if (o->shard_count > 1) {
        size_t kept = 0;
        for (size_t k = 0; k < p->n; k++)
            if (v4r_plan_shard_of(ds->item_id[p->item[k]], o->shard_count) == o->shard_index)
                p->item[kept++] = p->item[k];
        p->n = kept;
    }
    if (o->limit && p->n > o->limit)
        p->n = o->limit;
    return 0;
}

void v4r_plan_free(v4r_plan *p)
{
    free(p->item);
    memset(p, 0, sizeof *p);
}

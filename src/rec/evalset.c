/* The evaluated user set of a protocol: chronological histories, masks, truth sets, candidates;
 * the protocol's names, the seeded user sample and user-id files. */
#include "vlm4rec/rec.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mask_names[] = {"history", "profile", "none"};
static const char *const profile_names[] = {"normalized-mean", "mean"};
static const char *const truth_dup_names[] = {"drop", "keep", "idcg"};

static int name_index(const char *const *names, int n, const char *name)
{
    for (int i = 0; name && i < n; i++)
        if (!strcmp(names[i], name))
            return i;
    return -1;
}

const char *v4r_mask_name(int mask) { return mask >= 0 && mask < 3 ? mask_names[mask] : "?"; }
const char *v4r_profile_name(int profile) { return profile >= 0 && profile < 2 ? profile_names[profile] : "?"; }
const char *v4r_truth_dup_name(int mode) { return mode >= 0 && mode < 3 ? truth_dup_names[mode] : "?"; }
int v4r_mask_parse(const char *name) { return name_index(mask_names, 3, name); }
int v4r_profile_parse(const char *name) { return name_index(profile_names, 2, name); }
int v4r_truth_dup_parse(const char *name) { return name_index(truth_dup_names, 3, name); }

void v4r_protocol_defaults(v4r_protocol *p)
{
    memset(p, 0, sizeof *p);
    p->history_splits = 1u << V4R_TRAIN;
    p->truth_split = V4R_VALID;
    p->history_length = 10;
}

typedef struct {
    int64_t ts;  /* effective timestamp */
    size_t seq;  /* position over the history splits in order: ties keep file order */
    int32_t item;
} hist_entry;

static int cmp_hist(const void *a, const void *b)
{
    const hist_entry *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts and removes repeats; returns the new length. */
static size_t sort_unique(int32_t *v, size_t n)
{
    if (n < 2)
        return n;
    qsort(v, n, sizeof *v, cmp_i32);
    size_t w = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[w - 1])
            v[w++] = v[i];
    return w;
}

/* Groups the history splits' interactions by user, chronologically. A line without a timestamp
 * takes the timestamp of the user's previous history line (or the earliest possible). */
static void group_history(const v4r_dataset *ds, unsigned splits, size_t **off_out, hist_entry **out)
{
    size_t nu = ds->n_users, total = 0;
    size_t *off = v4r_calloc(nu + 1, sizeof *off);
    for (int s = 0; s < V4R_NSPLITS; s++) {
        if (!(splits & (1u << s)))
            continue;
        for (size_t i = 0; i < ds->split[s].n; i++)
            off[ds->split[s].user[i] + 1]++;
        total += ds->split[s].n;
    }
    for (size_t u = 0; u < nu; u++)
        off[u + 1] += off[u];
    hist_entry *e = v4r_malloc((total ? total : 1) * sizeof *e);
    size_t *fill = v4r_malloc((nu ? nu : 1) * sizeof *fill);
    int64_t *last_ts = v4r_malloc((nu ? nu : 1) * sizeof *last_ts);
    memcpy(fill, off, nu * sizeof *fill);
    for (size_t u = 0; u < nu; u++)
        last_ts[u] = INT64_MIN;
    size_t seq = 0;
    for (int s = 0; s < V4R_NSPLITS; s++) {
        if (!(splits & (1u << s)))
            continue;
        const v4r_split *sp = &ds->split[s];
        for (size_t i = 0; i < sp->n; i++, seq++) {
            int32_t u = sp->user[i];
            if (sp->has_ts[i])
                last_ts[u] = sp->ts[i];
            e[fill[u]++] = (hist_entry){last_ts[u], seq, sp->item[i]};
        }
    }
    for (size_t u = 0; u < nu; u++)
        qsort(e + off[u], off[u + 1] - off[u], sizeof *e, cmp_hist);
    free(fill);
    free(last_ts);
    *off_out = off;
    *out = e;
}

void v4r_user_histories(const v4r_dataset *ds, unsigned splits, size_t **off, int32_t **items)
{
    hist_entry *e;
    group_history(ds, splits, off, &e);
    size_t total = (*off)[ds->n_users];
    *items = v4r_malloc((total ? total : 1) * sizeof **items);
    for (size_t i = 0; i < total; i++)
        (*items)[i] = e[i].item;
    free(e);
}

static int32_t *truth_lists(const v4r_dataset *ds, int split, size_t **off_out)
{
    const v4r_split *sp = &ds->split[split];
    size_t nu = ds->n_users;
    size_t *off = v4r_calloc(nu + 1, sizeof *off);
    for (size_t i = 0; i < sp->n; i++)
        off[sp->user[i] + 1]++;
    for (size_t u = 0; u < nu; u++)
        off[u + 1] += off[u];
    int32_t *items = v4r_malloc((sp->n ? sp->n : 1) * sizeof *items);
    size_t *fill = v4r_malloc((nu ? nu : 1) * sizeof *fill);
    memcpy(fill, off, nu * sizeof *fill);
    for (size_t i = 0; i < sp->n; i++)
        items[fill[sp->user[i]]++] = sp->item[i];
    free(fill);
    *off_out = off;
    return items;
}

static void push_list(int32_t **buf, size_t *cap, size_t *len, const int32_t *src, size_t n)
{
    v4r_grow((void **)buf, cap, *len + n + 1, sizeof **buf);
    memcpy(*buf + *len, src, n * sizeof *src);
    *len += n;
}

int v4r_eval_set_build(const v4r_dataset *ds, const v4r_protocol *p, v4r_eval_set *es, v4r_err *err)
{
    memset(es, 0, sizeof *es);
    if (p->truth_split < 0 || p->truth_split >= V4R_NSPLITS || (p->history_splits & (1u << p->truth_split)))
        return v4r_fail(err, V4R_EUSAGE, "the truth split must not be one of the history splits");
    for (int s = 0; s < V4R_NSPLITS; s++)
        if ((p->history_splits & (1u << s)) && ds->split[s].n == 0)
            return v4r_fail(err, V4R_EINPUT, "%s: the history split '%s' is empty", ds->dir ? ds->dir : "dataset",
                            v4r_split_name(s));
    if (ds->split[p->truth_split].n == 0)
        return v4r_fail(err, V4R_EINPUT, "%s: the truth split '%s' is empty", ds->dir ? ds->dir : "dataset",
                        v4r_split_name(p->truth_split));
    const uint8_t *cov = p->covered;
    size_t *hoff, *toff;
    hist_entry *hist;
    group_history(ds, p->history_splits, &hoff, &hist);
    int32_t *truth = truth_lists(ds, p->truth_split, &toff);
    size_t nu = ds->n_users, cap_h = 0, cap_m = 0, cap_t = 0, len_h = 0, len_m = 0, len_t = 0;
    es->users = v4r_malloc((nu ? nu : 1) * sizeof *es->users);
    es->hist_off = v4r_malloc((nu + 1) * sizeof(size_t));
    es->mask_off = v4r_malloc((nu + 1) * sizeof(size_t));
    es->truth_off = v4r_malloc((nu + 1) * sizeof(size_t));
    es->truth_lines = v4r_malloc((nu ? nu : 1) * sizeof *es->truth_lines);
    es->hist_off[0] = es->mask_off[0] = es->truth_off[0] = 0;
    int32_t *tmp = NULL;
    size_t tmp_cap = 0;
    for (size_t u = 0; u < nu; u++) {
        size_t nh = hoff[u + 1] - hoff[u], nt = toff[u + 1] - toff[u];
        if (p->users && !p->users[u]) {
            es->not_selected++;
            continue;
        }
        v4r_grow((void **)&tmp, &tmp_cap, nh + nt + 1, sizeof *tmp);
        size_t kept = 0; /* covered history, chronological */
        for (size_t i = 0; i < nh; i++)
            if (!cov || cov[hist[hoff[u] + i].item])
                tmp[kept++] = hist[hoff[u] + i].item;
        size_t nt_kept = 0;
        for (size_t i = 0; i < nt; i++)
            if (!cov || cov[truth[toff[u] + i]])
                tmp[kept + nt_kept++] = truth[toff[u] + i];
        size_t lines = nt_kept;
        nt_kept = sort_unique(tmp + kept, nt_kept);
        if (kept == 0) {
            es->no_history++;
            continue;
        }
        if (nt_kept == 0) {
            es->no_truth++;
            continue;
        }
        es->users[es->n_eval] = (int32_t)u;
        es->truth_lines[es->n_eval] = lines;
        push_list(&es->hist, &cap_h, &len_h, tmp, kept);
        push_list(&es->truth, &cap_t, &len_t, tmp + kept, nt_kept);
        if (p->mask == V4R_MASK_HISTORY) { /* every item of the history splits, not only the last L */
            size_t nm = 0;
            for (size_t i = 0; i < nh; i++)
                tmp[nm++] = hist[hoff[u] + i].item;
            nm = sort_unique(tmp, nm);
            push_list(&es->mask, &cap_m, &len_m, tmp, nm);
        } else if (p->mask == V4R_MASK_PROFILE) { /* the profile's items: the last L covered ones */
            size_t first = p->history_length && kept > p->history_length ? kept - p->history_length : 0;
            size_t nm = sort_unique(memmove(tmp, tmp + first, (kept - first) * sizeof *tmp), kept - first);
            push_list(&es->mask, &cap_m, &len_m, tmp, nm);
        }
        es->n_eval++;
        es->hist_off[es->n_eval] = len_h;
        es->truth_off[es->n_eval] = len_t;
        es->mask_off[es->n_eval] = len_m;
    }
    free(tmp);
    free(hoff);
    free(hist);
    free(toff);
    free(truth);
    es->n_users_total = nu;
    es->candidates = v4r_malloc((ds->n_items ? ds->n_items : 1) * sizeof *es->candidates);
    for (size_t i = 0; i < ds->n_items; i++)
        if (!cov || cov[i])
            es->candidates[es->n_candidates++] = (int32_t)i;
    if (es->n_eval == 0) {
        v4r_eval_set_free(es);
        return v4r_fail(err, V4R_EINPUT, "no user has both a history and a truth item under this protocol");
    }
    return V4R_OK;
}

void v4r_eval_set_free(v4r_eval_set *es)
{
    free(es->users);
    free(es->hist_off);
    free(es->mask_off);
    free(es->truth_off);
    free(es->hist);
    free(es->mask);
    free(es->truth);
    free(es->truth_lines);
    free(es->candidates);
    memset(es, 0, sizeof *es);
}

void v4r_sample_users(const v4r_dataset *ds, int truth_split, double fraction, uint64_t seed, uint8_t **sel,
                      size_t *population, size_t *size)
{
    size_t nu = ds->n_users, n = 0;
    uint8_t *has = v4r_calloc(nu ? nu : 1, 1);
    const v4r_split *sp = &ds->split[truth_split];
    for (size_t i = 0; i < sp->n; i++)
        has[sp->user[i]] = 1;
    int32_t *pop = v4r_malloc((nu ? nu : 1) * sizeof *pop);
    for (size_t u = 0; u < nu; u++)
        if (has[u])
            pop[n++] = (int32_t)u;
    size_t m = (size_t)floor(fraction * (double)n + 1e-9);
    if (m < 1)
        m = 1;
    if (m > n)
        m = n;
    v4r_rng rng;
    v4r_rng_seed(&rng, seed);
    memset(has, 0, nu);
    for (size_t i = 0; i < m; i++) {
        size_t j = i + (size_t)v4r_rng_below(&rng, n - i);
        int32_t t = pop[i];
        pop[i] = pop[j];
        pop[j] = t;
        has[pop[i]] = 1;
    }
    free(pop);
    *sel = has;
    *population = n;
    *size = m;
}

int v4r_read_users(const v4r_dataset *ds, const char *path, uint8_t **sel, size_t *count, v4r_err *err)
{
    *sel = NULL;
    *count = 0;
    FILE *fp = fopen(path, "r");
    if (!fp)
        return v4r_fail(err, V4R_EIO, "%s: %s", path, strerror(errno));
    uint8_t *mask = v4r_calloc(ds->n_users ? ds->n_users : 1, 1);
    char *line = NULL;
    size_t cap = 0, n = 0;
    long lineno = 0;
    int rc = V4R_OK;
    ssize_t len;
    while (!rc && (len = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0 || line[0] == '#')
            continue;
        int64_t u = v4r_strmap_get(&ds->user_index, line);
        if (u < 0)
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: unknown user '%s'", path, lineno, line);
        else if (!mask[u]) {
            mask[u] = 1;
            n++;
        }
    }
    free(line);
    fclose(fp);
    if (!rc && n == 0)
        rc = v4r_fail(err, V4R_EINPUT, "%s: no user ids", path);
    if (rc) {
        free(mask);
        return rc;
    }
    *sel = mask;
    *count = n;
    return V4R_OK;
}

/* Dataset statistics: counts, density, users and items without interactions, train history lengths,
 * timestamps; with a covered-items list or a vector file, the coverage of items and interactions
 * and the users the covered-subset protocol evaluates. Printed as aligned text or as JSON. */
#include "vlm4rec/data.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t n[V4R_NSPLITS + 1];             /* interactions per split, then total */
    size_t users_without[V4R_NSPLITS + 1]; /* users without interactions in the split / in any */
    size_t with_ts[V4R_NSPLITS + 1];
    size_t items_unused;
    double density;
    size_t hist_min, hist_max;
    double hist_median, hist_mean;
    /* coverage (when has_cov) */
    int has_cov;
    const char *cov_source, *cov_kind;
    size_t cov_items;
    size_t cov_n[V4R_NSPLITS + 1];
    size_t users_evaluated;
} stats;

static double share(size_t a, size_t b) { return b ? (double)a / (double)b : 0.0; }

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Coverage from vectors: nonzero rows are covered; row count must match, values must be finite. */
static int vectors_mask(const v4r_dataset *ds, const char *path, uint8_t **mask, size_t *count, v4r_err *err)
{
    v4r_matrix m;
    int rc = v4r_npy_read(path, &m, err);
    if (rc)
        return rc;
    if (m.rows != ds->n_items) {
        rc = v4r_fail(err, V4R_EINPUT, "%s: %zu rows, but the dataset has %zu items (row i must be item i)", path,
                      m.rows, ds->n_items);
        v4r_matrix_free(&m);
        return rc;
    }
    uint8_t *mk = v4r_calloc(m.rows ? m.rows : 1, 1);
    size_t n = 0;
    for (size_t r = 0; r < m.rows; r++) {
        const float *row = m.data + r * m.cols;
        double norm = 0;
        for (size_t c = 0; c < m.cols; c++) {
            if (!isfinite(row[c])) {
                rc = v4r_fail(err, V4R_EINPUT, "%s: row %zu (item '%s'), column %zu: %s", path, r, ds->item_id[r], c,
                              isnan(row[c]) ? "NaN" : "infinite");
                break;
            }
            norm += (double)row[c] * row[c];
        }
        if (rc)
            break;
        mk[r] = norm > 0;
        n += mk[r];
    }
    v4r_matrix_free(&m);
    if (rc) {
        free(mk);
        return rc;
    }
    *mask = mk;
    *count = n;
    return V4R_OK;
}

static int compute(const v4r_dataset *ds, const v4r_stats_opts *o, stats *st, v4r_err *err)
{
    memset(st, 0, sizeof *st);
    size_t nu = ds->n_users, ni = ds->n_items;
    uint8_t *mask = NULL;
    if (o && o->covered_path && o->vectors_path)
        return v4r_fail(err, V4R_EUSAGE, "give --covered or --vectors, not both");
    if (o && o->covered_path) {
        int rc = v4r_read_covered(ds, o->covered_path, &mask, &st->cov_items, err);
        if (rc)
            return rc;
        st->cov_source = o->covered_path;
        st->cov_kind = "covered";
    } else if (o && o->vectors_path) {
        int rc = vectors_mask(ds, o->vectors_path, &mask, &st->cov_items, err);
        if (rc)
            return rc;
        st->cov_source = o->vectors_path;
        st->cov_kind = "vectors";
    }
    st->has_cov = mask != NULL;

    size_t *cnt[V4R_NSPLITS], *cov_cnt[V4R_NSPLITS];
    uint8_t *item_used = v4r_calloc(ni ? ni : 1, 1);
    for (int s = 0; s < V4R_NSPLITS; s++) {
        const v4r_split *sp = &ds->split[s];
        cnt[s] = v4r_calloc(nu ? nu : 1, sizeof(size_t));
        cov_cnt[s] = v4r_calloc(nu ? nu : 1, sizeof(size_t));
        st->n[s] = sp->n;
        st->n[V4R_NSPLITS] += sp->n;
        for (size_t k = 0; k < sp->n; k++) {
            cnt[s][sp->user[k]]++;
            item_used[sp->item[k]] = 1;
            st->with_ts[s] += sp->has_ts[k];
            if (mask && mask[sp->item[k]]) {
                cov_cnt[s][sp->user[k]]++;
                st->cov_n[s]++;
            }
        }
        st->with_ts[V4R_NSPLITS] += st->with_ts[s];
        st->cov_n[V4R_NSPLITS] += st->cov_n[s];
    }
    for (size_t u = 0; u < nu; u++) {
        size_t any = 0;
        for (int s = 0; s < V4R_NSPLITS; s++) {
            st->users_without[s] += cnt[s][u] == 0;
            any += cnt[s][u];
        }
        st->users_without[V4R_NSPLITS] += any == 0;
        st->users_evaluated += mask && cov_cnt[V4R_TRAIN][u] > 0 && cov_cnt[V4R_VALID][u] > 0;
    }
    for (size_t i = 0; i < ni; i++)
        st->items_unused += !item_used[i];
    st->density = nu && ni ? (double)st->n[V4R_NSPLITS] / ((double)nu * (double)ni) : 0.0;
    if (nu) {
        size_t *h = v4r_malloc(nu * sizeof *h);
        memcpy(h, cnt[V4R_TRAIN], nu * sizeof *h);
        qsort(h, nu, sizeof *h, cmp_size);
        st->hist_min = h[0];
        st->hist_max = h[nu - 1];
        st->hist_median = nu % 2 ? (double)h[nu / 2] : ((double)h[nu / 2 - 1] + (double)h[nu / 2]) / 2.0;
        st->hist_mean = (double)st->n[V4R_TRAIN] / (double)nu;
        free(h);
    }
    for (int s = 0; s < V4R_NSPLITS; s++) {
        free(cnt[s]);
        free(cov_cnt[s]);
    }
    free(item_used);
    free(mask);
    return V4R_OK;
}

static const char *ts_presence(const stats *st)
{
    size_t have = st->with_ts[V4R_NSPLITS], all = st->n[V4R_NSPLITS];
    return have == 0 ? "none" : have == all ? "all" : "some";
}

static json_t *per_split(const size_t v[V4R_NSPLITS + 1], int with_total)
{
    json_t *o = json_object();
    for (int s = 0; s < V4R_NSPLITS; s++)
        json_object_set_new(o, v4r_split_name(s), json_integer((json_int_t)v[s]));
    if (with_total)
        json_object_set_new(o, "total", json_integer((json_int_t)v[V4R_NSPLITS]));
    return o;
}

static int print_json(const v4r_dataset *ds, const stats *st, FILE *out, v4r_err *err)
{
    json_t *root = json_object();
    if (ds->dir)
        json_object_set_new(root, "dataset", json_string(ds->dir));
    json_object_set_new(root, "users", json_integer((json_int_t)ds->n_users));
    json_object_set_new(root, "items", json_integer((json_int_t)ds->n_items));
    json_object_set_new(root, "interactions", per_split(st->n, 1));
    json_object_set_new(root, "density", json_real(st->density));
    json_object_set_new(root, "users_without_interactions", per_split(st->users_without, 1));
    json_object_set_new(root, "items_without_interactions", json_integer((json_int_t)st->items_unused));
    json_t *h = json_object();
    json_object_set_new(h, "min", json_integer((json_int_t)st->hist_min));
    json_object_set_new(h, "median", json_real(st->hist_median));
    json_object_set_new(h, "mean", json_real(st->hist_mean));
    json_object_set_new(h, "max", json_integer((json_int_t)st->hist_max));
    json_object_set_new(root, "train_history", h);
    json_t *ts = per_split(st->with_ts, 1);
    json_object_set_new(ts, "present", json_string(ts_presence(st)));
    json_object_set_new(root, "timestamps", ts);
    if (st->has_cov) {
        json_t *c = json_object();
        json_object_set_new(c, "source", json_string(st->cov_source));
        json_object_set_new(c, "kind", json_string(st->cov_kind));
        json_object_set_new(c, "items", json_integer((json_int_t)st->cov_items));
        json_object_set_new(c, "items_share", json_real(share(st->cov_items, ds->n_items)));
        json_object_set_new(c, "interactions", per_split(st->cov_n, 1));
        json_t *sh = json_object();
        for (int s = 0; s <= V4R_NSPLITS; s++)
            json_object_set_new(sh, s < V4R_NSPLITS ? v4r_split_name(s) : "total",
                                json_real(share(st->cov_n[s], st->n[s])));
        json_object_set_new(c, "interactions_share", sh);
        json_object_set_new(c, "users_evaluated", json_integer((json_int_t)st->users_evaluated));
        json_object_set_new(root, "coverage", c);
    }
    int bad = json_dumpf(root, out, JSON_INDENT(2) | JSON_REAL_PRECISION(12)) != 0;
    json_decref(root);
    if (bad || fputc('\n', out) == EOF)
        return v4r_fail(err, V4R_EIO, "cannot write the statistics");
    return V4R_OK;
}

#define LABEL_W 32
#define COL_W 11

static void row_counts(FILE *out, const char *label, const size_t v[V4R_NSPLITS + 1], int with_total)
{
    fprintf(out, "  %-*s", LABEL_W - 2, label);
    for (int s = 0; s < V4R_NSPLITS; s++)
        fprintf(out, "%*zu", COL_W, v[s]);
    if (with_total)
        fprintf(out, "%*zu", COL_W, v[V4R_NSPLITS]);
    fputc('\n', out);
}

static void row_shares(FILE *out, const char *label, const size_t a[V4R_NSPLITS + 1], const size_t b[V4R_NSPLITS + 1])
{
    fprintf(out, "  %-*s", LABEL_W - 2, label);
    for (int s = 0; s <= V4R_NSPLITS; s++) {
        char cell[32];
        snprintf(cell, sizeof cell, "%.1f%%", 100.0 * share(a[s], b[s]));
        fprintf(out, "%*s", COL_W, cell);
    }
    fputc('\n', out);
}

static int print_text(const v4r_dataset *ds, const stats *st, FILE *out, v4r_err *err)
{
    if (ds->dir)
        fprintf(out, "%-*s%s\n", LABEL_W, "dataset", ds->dir);
    fprintf(out, "%-*s%zu\n", LABEL_W, "users", ds->n_users);
    fprintf(out, "%-*s%zu\n", LABEL_W, "items", ds->n_items);
    fprintf(out, "%-*s%zu\n", LABEL_W, "interactions", st->n[V4R_NSPLITS]);
    fprintf(out, "%-*s%.6g  (interactions / (users x items))\n", LABEL_W, "density", st->density);
    fprintf(out, "%-*s%zu\n", LABEL_W, "items never interacted with", st->items_unused);
    fprintf(out, "%-*smin %zu, median %g, mean %.2f, max %zu\n", LABEL_W, "train history per user", st->hist_min,
            st->hist_median, st->hist_mean, st->hist_max);
    fprintf(out, "%-*s%s (%zu of %zu interactions)\n", LABEL_W, "timestamps", ts_presence(st),
            st->with_ts[V4R_NSPLITS], st->n[V4R_NSPLITS]);
    fputc('\n', out);
    fprintf(out, "%-*s", LABEL_W, "per split");
    for (int s = 0; s < V4R_NSPLITS; s++)
        fprintf(out, "%*s", COL_W, v4r_split_name(s));
    fprintf(out, "%*s\n", COL_W, "total");
    row_counts(out, "interactions", st->n, 1);
    row_counts(out, "users without", st->users_without, 1);
    row_counts(out, "with timestamp", st->with_ts, 1);
    if (st->has_cov) {
        row_counts(out, "on covered items", st->cov_n, 1);
        row_shares(out, "share on covered items", st->cov_n, st->n);
        fputc('\n', out);
        const char *from = !strcmp(st->cov_kind, "covered") ? "covered items from" : "covered items: nonzero rows of";
        fprintf(out, "%-*s%s\n", LABEL_W, from, st->cov_source);
        fprintf(out, "%-*s%zu of %zu (%.1f%%)\n", LABEL_W, "covered items", st->cov_items, ds->n_items,
                100.0 * share(st->cov_items, ds->n_items));
        fprintf(out, "%-*s%zu  (a covered item in train and in valid)\n", LABEL_W, "users evaluated on covered",
                st->users_evaluated);
    }
    fputc('\n', out);
    fputs("(users without: users with no interaction in that split; under total, in none)\n", out);
    if (ferror(out))
        return v4r_fail(err, V4R_EIO, "cannot write the statistics");
    return V4R_OK;
}

int v4r_dataset_stats(const v4r_dataset *ds, const v4r_stats_opts *o, FILE *out, v4r_err *err)
{
    stats st;
    int rc = compute(ds, o, &st, err);
    if (rc)
        return rc;
    return o && o->json ? print_json(ds, &st, out, err) : print_text(ds, &st, out, err);
}

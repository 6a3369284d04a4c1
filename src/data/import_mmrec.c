/* The MMRec layout: one <name>.inter (TSV with header: userID, itemID, rating, timestamp, x_label
 * 0 train / 1 valid / 2 test), integer ids 0..n-1, and optional text_feat.npy / image_feat.npy
 * beside it (row i = item i). */
#include "import_common.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const user_names[] = {"userID", NULL};
static const char *const item_names[] = {"itemID", NULL};
static const char *const ts_names[] = {"timestamp", NULL};
static const char *const label_names[] = {"x_label", NULL};

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Finds the one .inter file in dir. */
static int find_inter(const char *dir, char **path, v4r_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return v4r_fail(err, V4R_EIO, "%s: cannot list the directory", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 6 || strcmp(e->d_name + len - 6, ".inter") != 0)
            continue;
        char *p = v4r_path_join(dir, e->d_name);
        int ok = v4r_file_exists(p);
        free(p);
        if (!ok)
            continue;
        v4r_grow((void **)&names, &cap, n + 1, sizeof *names);
        names[n++] = v4r_strdup(e->d_name);
    }
    closedir(d);
    int rc = V4R_OK;
    if (n == 0) {
        rc = v4r_fail(err, V4R_EINPUT, "%s: no <name>.inter file (the mmrec layout needs exactly one)", dir);
    } else if (n > 1) {
        qsort(names, n, sizeof *names, cmp_str);
        rc = v4r_fail(err, V4R_EINPUT, "%s: %zu .inter files (%s, %s%s); give the one to import as SRC", dir, n,
                      names[0], names[1], n > 2 ? ", ..." : "");
    } else {
        *path = v4r_path_join(dir, names[0]);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* A non-negative decimal id (digits only) below INT32_MAX. */
static int parse_id(const char *s, int64_t *out)
{
    if (!*s)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    if (v4r_parse_i64(s, out) != 0 || *out >= INT32_MAX)
        return -1;
    return 0;
}

/* The rows of the .inter file, before the item count is known. */
typedef struct {
    size_t n, cap;
    int32_t *user, *item;
    int64_t *ts;
    uint8_t *has_ts, *label;
    long *line;
    int64_t max_user, max_item;
} inter_rows;

static void rows_push(inter_rows *r, int32_t u, int32_t i, int64_t ts, int has, int label, long line)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 1024;
        r->user = v4r_realloc(r->user, r->cap * sizeof *r->user);
        r->item = v4r_realloc(r->item, r->cap * sizeof *r->item);
        r->ts = v4r_realloc(r->ts, r->cap * sizeof *r->ts);
        r->has_ts = v4r_realloc(r->has_ts, r->cap * sizeof *r->has_ts);
        r->label = v4r_realloc(r->label, r->cap * sizeof *r->label);
        r->line = v4r_realloc(r->line, r->cap * sizeof *r->line);
    }
    r->user[r->n] = u;
    r->item[r->n] = i;
    r->ts[r->n] = ts;
    r->has_ts[r->n] = (uint8_t)has;
    r->label[r->n] = (uint8_t)label;
    r->line[r->n] = line;
    r->n++;
}

static void rows_free(inter_rows *r)
{
    free(r->user);
    free(r->item);
    free(r->ts);
    free(r->has_ts);
    free(r->label);
    free(r->line);
}

/* Splits a line at tabs into a growing array. */
static size_t split_fields(char *line, char ***fields, size_t *cap)
{
    size_t n = 1;
    for (const char *p = line; *p; p++)
        n += *p == '\t';
    v4r_grow((void **)fields, cap, n, sizeof **fields);
    return v4r_tsv_split(line, *fields, n);
}

static int read_inter(const char *path, inter_rows *rows, v4r_err *err)
{
    v4r_lines r;
    int rc = v4r_lines_open(&r, path, err);
    if (rc)
        return rc;
    char **f = NULL;
    size_t fcap = 0, ncols = 0;
    int cu = -1, ci = -1, ct = -1, cl = -1;
    rows->max_user = rows->max_item = -1;
    int got = v4r_lines_next(&r, err);
    if (got == 0)
        rc = v4r_fail(err, V4R_EINPUT, "%s: empty file (a header line naming the columns is required)", path);
    else if (got < 0)
        rc = err->code;
    if (!rc) {
        ncols = split_fields(r.line, &f, &fcap);
        cu = v4r_imp_find_column(f, ncols, user_names);
        ci = v4r_imp_find_column(f, ncols, item_names);
        ct = v4r_imp_find_column(f, ncols, ts_names);
        cl = v4r_imp_find_column(f, ncols, label_names);
        const char *missing = cu < 0 ? "userID" : ci < 0 ? "itemID" : cl < 0 ? "x_label" : NULL;
        if (missing)
            rc = v4r_fail(err, V4R_EINPUT,
                          "%s:1: header has no %s column (expected userID, itemID, rating, timestamp, x_label)", path,
                          missing);
    }
    while (!rc) {
        got = v4r_lines_next(&r, err);
        if (got <= 0) {
            rc = got < 0 ? err->code : V4R_OK;
            break;
        }
        if (v4r_line_blank(r.line))
            continue;
        size_t n = split_fields(r.line, &f, &fcap);
        if (n != ncols) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: %zu fields, the header has %zu", path, r.lineno, n, ncols);
            break;
        }
        int64_t u, i, label, ts = 0;
        int has = 0;
        if (parse_id(f[cu], &u) != 0) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'userID': '%s' is not a non-negative integer id", path,
                          r.lineno, f[cu]);
            break;
        }
        if (parse_id(f[ci], &i) != 0) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'itemID': '%s' is not a non-negative integer id", path,
                          r.lineno, f[ci]);
            break;
        }
        if (v4r_parse_i64(f[cl], &label) != 0 || label < 0 || label > 2) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'x_label': '%s' is not 0 (train), 1 (valid) or 2 (test)",
                          path, r.lineno, f[cl]);
            break;
        }
        if (ct >= 0 && v4r_imp_parse_ts(f[ct], &ts, &has) != 0) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'timestamp': '%s' is not an integer timestamp", path,
                          r.lineno, f[ct]);
            break;
        }
        rows_push(rows, (int32_t)u, (int32_t)i, ts, has, (int)label, r.lineno);
        if (u > rows->max_user)
            rows->max_user = u;
        if (i > rows->max_item)
            rows->max_item = i;
    }
    free(f);
    v4r_lines_close(&r);
    return rc;
}

int v4r_import_mmrec(const char *src, const char *out, const v4r_import_opts *o, v4r_err *err)
{
    struct stat st;
    if (stat(src, &st) != 0)
        return v4r_imp_check_dir(src, err); /* names the system error */
    char *inter = NULL, *dir = NULL;
    int rc = V4R_OK;
    if (S_ISDIR(st.st_mode)) {
        rc = find_inter(src, &inter, err);
        if (rc)
            return rc;
        dir = v4r_strdup(src);
    } else {
        inter = v4r_strdup(src);
        char *slash = strrchr(inter, '/');
        dir = slash ? v4r_strndup(inter, (size_t)(slash - inter) + (slash == inter)) : v4r_strdup(".");
    }
    v4r_importer im;
    v4r_imp_init(&im, "mmrec", src);
    for (int s = 0; s < V4R_NSPLITS; s++)
        im.split_file[s] = v4r_strdup(inter);
    inter_rows rows = {0};
    rc = read_inter(inter, &rows, err);

    static const char *const feat_src[] = {"text_feat.npy", "image_feat.npy"};
    static const char *const feat_out[] = {"text.npy", "image.npy"};
    for (int k = 0; k < 2 && !rc; k++) {
        char *p = v4r_path_join(dir, feat_src[k]);
        if (v4r_file_exists(p))
            rc = v4r_imp_add_feature(&im, p, feat_out[k], err);
        free(p);
    }
    size_t n_items = (size_t)(rows.max_item + 1), n_users = (size_t)(rows.max_user + 1);
    if (!rc && im.nfeat > 0) {
        const v4r_imp_feature *f0 = &im.feat[0];
        if (im.nfeat == 2 && im.feat[1].m.rows != f0->m.rows)
            rc = v4r_fail(err, V4R_EINPUT, "%s: %zu rows, but %s has %zu (both have one row per item)",
                          im.feat[1].src_path, im.feat[1].m.rows, f0->src_path, f0->m.rows);
        for (size_t r = 0; r < rows.n && !rc; r++)
            if ((size_t)rows.item[r] >= f0->m.rows)
                rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'itemID': item %d is beyond the %zu rows of %s", inter,
                              rows.line[r], rows.item[r], f0->m.rows, f0->src_path);
        n_items = f0->m.rows;
    }
    if (!rc) {
        size_t train = 0;
        for (size_t r = 0; r < rows.n; r++)
            train += rows.label[r] == V4R_TRAIN;
        if (!train)
            rc = v4r_fail(err, V4R_EINPUT, "%s: no row has x_label 0 (the train split must not be empty)", inter);
    }
    if (!rc) {
        char buf[32];
        for (size_t i = 0; i < n_items; i++) {
            snprintf(buf, sizeof buf, "%zu", i);
            v4r_dataset_add_item(&im.ds, buf, "", "", NULL);
        }
        for (size_t u = 0; u < n_users; u++) {
            snprintf(buf, sizeof buf, "%zu", u);
            v4r_dataset_add_user(&im.ds, buf, NULL);
        }
        for (size_t r = 0; r < rows.n; r++)
            v4r_split_push(&im.ds.split[rows.label[r]], rows.user[r], rows.item[r], rows.ts[r], rows.has_ts[r],
                           rows.line[r]);
        rc = v4r_imp_finish(&im, out, o, err);
    }
    rows_free(&rows);
    v4r_imp_free(&im);
    free(inter);
    free(dir);
    return rc;
}

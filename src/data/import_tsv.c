/* The plain TSV layout: train.tsv, valid.tsv (or validation.tsv), test.tsv with user, item[,
 * timestamp] (header optional), optional items.tsv / users.tsv in the dataset format (they fix the
 * order; without them ids are numbered by first appearance over train, valid, test) and optional
 * features/<name>.npy. */
#include "import_common.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* One split: user, item[, timestamp]; the first line is a header when it starts user, item. With
 * fixed_users / fixed_items the ids must be known, else new ones are appended. */
static int read_split(v4r_importer *im, int split, const char *path, int fixed_users, int fixed_items,
                      v4r_err *err)
{
    v4r_dataset *ds = &im->ds;
    v4r_lines r;
    int rc = v4r_lines_open(&r, path, err);
    if (rc)
        return rc;
    size_t ncols = 0; /* 0: no header, 2 or 3 fields a line */
    while (!rc) {
        int got = v4r_lines_next(&r, err);
        if (got <= 0) {
            rc = got < 0 ? err->code : V4R_OK;
            break;
        }
        if (v4r_line_blank(r.line))
            continue;
        char *f[4];
        size_t n = v4r_tsv_split(r.line, f, 4);
        if (r.lineno == 1 && n >= 2 && !strcmp(f[0], "user") && !strcmp(f[1], "item")) {
            if (n > 3 || (n == 3 && strcmp(f[2], "timestamp") != 0))
                rc = v4r_fail(err, V4R_EINPUT, "%s:1: header columns must be user, item[, timestamp]", path);
            ncols = n;
            continue;
        }
        if (ncols ? n != ncols : n < 2 || n > 3) {
            if (ncols)
                rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: %zu fields, the header has %zu", path, r.lineno, n, ncols);
            else
                rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: %zu fields, expected 2 or 3 (user, item[, timestamp])", path,
                              r.lineno, n);
            break;
        }
        for (size_t i = 0; i < n; i++)
            v4r_tsv_unescape(f[i]);
        if (!*f[0] || !*f[1]) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field '%s' is empty", path, r.lineno, *f[0] ? "item" : "user");
            break;
        }
        int64_t u, i, ts = 0;
        int has = 0;
        if (fixed_users) {
            if ((u = v4r_strmap_get(&ds->user_index, f[0])) < 0) {
                rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'user': unknown user '%s' (not in users.tsv)", path,
                              r.lineno, f[0]);
                break;
            }
        } else {
            u = v4r_dataset_add_user(ds, f[0], NULL);
        }
        if (fixed_items) {
            if ((i = v4r_strmap_get(&ds->item_index, f[1])) < 0) {
                rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'item': unknown item '%s' (not in items.tsv)", path,
                              r.lineno, f[1]);
                break;
            }
        } else {
            i = v4r_dataset_add_item(ds, f[1], "", "", NULL);
        }
        if (n > 2 && v4r_imp_parse_ts(f[2], &ts, &has) != 0) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'timestamp': '%s' is not an integer timestamp", path,
                          r.lineno, f[2]);
            break;
        }
        v4r_split_push(&ds->split[split], (int32_t)u, (int32_t)i, ts, has, r.lineno);
    }
    v4r_lines_close(&r);
    return rc;
}

/* SRC/features/<name>.npy, in name order. */
static int read_features(v4r_importer *im, const char *src, v4r_err *err)
{
    char *fdir = v4r_path_join(src, "features");
    DIR *d = opendir(fdir);
    if (!d) {
        free(fdir);
        return V4R_OK;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".npy") != 0)
            continue;
        v4r_grow((void **)&names, &cap, n + 1, sizeof *names);
        names[n++] = v4r_strdup(e->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    int rc = V4R_OK;
    for (size_t k = 0; k < n; k++) {
        char *p = v4r_path_join(fdir, names[k]);
        if (!rc && v4r_file_exists(p))
            rc = v4r_imp_add_feature(im, p, names[k], err);
        free(p);
        free(names[k]);
    }
    free(names);
    free(fdir);
    return rc;
}

int v4r_import_tsv(const char *src, const char *out, const v4r_import_opts *o, v4r_err *err)
{
    int rc = v4r_imp_check_dir(src, err);
    if (rc)
        return rc;
    v4r_importer im;
    v4r_imp_init(&im, "tsv", src);
    static const char *const split_files[V4R_NSPLITS] = {"train.tsv", "valid.tsv", "test.tsv"};
    static const char *const split_alts[V4R_NSPLITS] = {NULL, "validation.tsv", NULL};
    for (int s = 0; s < V4R_NSPLITS && !rc; s++)
        rc = v4r_imp_require(&im, src, split_files[s], split_alts[s], &im.split_file[s], err);
    char *items = v4r_path_join(src, "items.tsv"), *users = v4r_path_join(src, "users.tsv");
    int fixed_items = v4r_file_exists(items), fixed_users = v4r_file_exists(users);
    if (!rc && fixed_items)
        rc = v4r_dataset_read_items(&im.ds, items, err);
    if (!rc && fixed_users)
        rc = v4r_dataset_read_users(&im.ds, users, err);
    for (int s = 0; s < V4R_NSPLITS && !rc; s++)
        rc = read_split(&im, s, im.split_file[s], fixed_users, fixed_items, err);
    if (!rc)
        rc = read_features(&im, src, err);
    if (!rc)
        rc = v4r_imp_finish(&im, out, o, err);
    free(items);
    free(users);
    v4r_imp_free(&im);
    return rc;
}

/* The Kaggle "multimodal recommendation" layout: users.txt, items.txt, train.txt, validation.txt,
 * test.txt (CSV with a header, or tab-separated when the header has tabs and no commas; columns
 * found by name) and optional embed_text.npy / embed_image.npy (row i = item i of items.txt). */
#include "import_common.h"

#include <stdlib.h>
#include <string.h>

static const char *const user_names[] = {"user", "user_id", "userid", "user_idx", "uid", "reviewerid", NULL};
static const char *const item_names[] = {"item", "item_id", "itemid", "item_idx", "iid", "asin", NULL};
static const char *const ts_names[] = {"timestamp", "time", "ts", "unixreviewtime", NULL};
static const char *const title_names[] = {"title", "name", NULL};
static const char *const image_names[] = {"image",    "image_url",  "imurl",      "imageurl",
                                          "img",      "image_path", "image_file", NULL};

/* A CSV source with its header read: the column count and the name of each looked-up column. */
typedef struct {
    v4r_csv csv;
    const char *path;
    size_t ncols;
} table;

/* Opens path as CSV, choosing tabs when the header line has tabs and no commas, and reads the
 * header; cols[k] gets the index of the column for lookups[k] (-1 when absent; an error when
 * required[k]). names[k] gets a copy of that header cell (caller frees). */
static int table_open(table *t, const char *path, size_t nlook, const char *const *const *lookups,
                      const int *required, const char *const *labels, int *cols, char **names, v4r_err *err)
{
    memset(t, 0, sizeof *t);
    t->path = path;
    v4r_lines peek;
    int rc = v4r_lines_open(&peek, path, err);
    if (rc)
        return rc;
    int got = v4r_lines_next(&peek, err);
    char delim = ',';
    if (got > 0 && strchr(peek.line, '\t') && !strchr(peek.line, ','))
        delim = '\t';
    v4r_lines_close(&peek);
    if (got < 0)
        return err->code;
    if (got == 0)
        return v4r_fail(err, V4R_EINPUT, "%s: empty file (a header line naming the columns is required)", path);
    rc = v4r_csv_open(&t->csv, path, delim, err);
    if (rc)
        return rc;
    int n = v4r_csv_next(&t->csv, err);
    if (n < 0) {
        v4r_csv_close(&t->csv);
        return err->code;
    }
    t->ncols = (size_t)n;
    for (size_t k = 0; k < nlook; k++) {
        cols[k] = v4r_imp_find_column(t->csv.fields, t->ncols, lookups[k]);
        names[k] = NULL;
        if (cols[k] < 0 && required[k]) {
            for (size_t j = 0; j < k; j++)
                free(names[j]);
            v4r_csv_close(&t->csv);
            return v4r_fail(err, V4R_EINPUT, "%s:1: header has no %s column (accepted names: %s)", path, labels[k],
                            v4r_imp_name_list(lookups[k]));
        }
        if (cols[k] >= 0)
            names[k] = v4r_strdup(t->csv.fields[cols[k]]);
    }
    return V4R_OK;
}

/* Next data record: 1 (fields in t->csv.fields, count checked), 0 at the end, -1 on error.
 * Blank lines are skipped. */
static int table_next(table *t, v4r_err *err)
{
    for (;;) {
        int n = v4r_csv_next(&t->csv, err);
        if (n <= 0)
            return n;
        if (n == 1 && v4r_line_blank(t->csv.fields[0]))
            continue;
        if ((size_t)n != t->ncols)
            return v4r_fail(err, V4R_EINPUT, "%s:%ld: %d fields, the header has %zu", t->path, t->csv.record_line, n,
                            t->ncols),
                   -1;
        return 1;
    }
}

static void free_names(char **names, size_t n)
{
    for (size_t k = 0; k < n; k++)
        free(names[k]);
}

static int read_users(v4r_importer *im, const char *path, v4r_err *err)
{
    const char *const *look[1] = {user_names};
    static const char *const labels[1] = {"user"};
    int req[1] = {1}, col[1] = {-1};
    char *name[1] = {NULL};
    table t;
    int rc = table_open(&t, path, 1, look, req, labels, col, name, err);
    if (rc)
        return rc;
    long *first = NULL; /* the line of each user, for repeat messages */
    size_t first_cap = 0;
    int got;
    while ((got = table_next(&t, err)) > 0) {
        const char *id = t.csv.fields[col[0]];
        if (!*id) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: column '%s' is empty", path, t.csv.record_line, name[0]);
            break;
        }
        int is_new;
        int32_t u = v4r_dataset_add_user(&im->ds, id, &is_new);
        if (!is_new) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: user '%s' repeats line %ld (column '%s')", path,
                          t.csv.record_line, id, first[u], name[0]);
            break;
        }
        v4r_grow((void **)&first, &first_cap, (size_t)u + 1, sizeof *first);
        first[u] = t.csv.record_line;
    }
    if (got < 0)
        rc = err->code;
    free(first);
    free_names(name, 1);
    v4r_csv_close(&t.csv);
    return rc;
}

static int read_items(v4r_importer *im, const char *path, v4r_err *err)
{
    const char *const *look[3] = {item_names, title_names, image_names};
    static const char *const labels[3] = {"item", "title", "image"};
    int req[3] = {1, 0, 0}, col[3] = {-1, -1, -1};
    char *name[3] = {NULL, NULL, NULL};
    table t;
    int rc = table_open(&t, path, 3, look, req, labels, col, name, err);
    if (rc)
        return rc;
    long *first = NULL; /* the line of each item, for repeat messages */
    size_t first_cap = 0;
    int got;
    while ((got = table_next(&t, err)) > 0) {
        char **f = t.csv.fields;
        const char *id = f[col[0]];
        if (!*id) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: column '%s' is empty", path, t.csv.record_line, name[0]);
            break;
        }
        int is_new;
        int32_t i = v4r_dataset_add_item(&im->ds, id, col[1] >= 0 ? f[col[1]] : "", col[2] >= 0 ? f[col[2]] : "",
                                         &is_new);
        if (!is_new) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: item '%s' repeats line %ld (column '%s')", path,
                          t.csv.record_line, id, first[i], name[0]);
            break;
        }
        v4r_grow((void **)&first, &first_cap, (size_t)i + 1, sizeof *first);
        first[i] = t.csv.record_line;
    }
    if (got < 0)
        rc = err->code;
    free(first);
    free_names(name, 3);
    v4r_csv_close(&t.csv);
    return rc;
}

static int read_split(v4r_importer *im, int split, const char *path, v4r_err *err)
{
    const char *const *look[3] = {user_names, item_names, ts_names};
    static const char *const labels[3] = {"user", "item", "timestamp"};
    int req[3] = {1, 1, 0}, col[3] = {-1, -1, -1};
    char *name[3] = {NULL, NULL, NULL};
    table t;
    int rc = table_open(&t, path, 3, look, req, labels, col, name, err);
    if (rc)
        return rc;
    v4r_dataset *ds = &im->ds;
    int got;
    while ((got = table_next(&t, err)) > 0) {
        char **f = t.csv.fields;
        long line = t.csv.record_line;
        const char *uid = f[col[0]], *iid = f[col[1]];
        if (!*uid || !*iid) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: column '%s' is empty", path, line, name[*uid ? 1 : 0]);
            break;
        }
        int64_t u = v4r_strmap_get(&ds->user_index, uid);
        if (u < 0) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: column '%s': unknown user '%s' (not in users.txt)", path, line,
                          name[0], uid);
            break;
        }
        int64_t i = v4r_strmap_get(&ds->item_index, iid);
        if (i < 0) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: column '%s': unknown item '%s' (not in items.txt)", path, line,
                          name[1], iid);
            break;
        }
        int64_t ts = 0;
        int has = 0;
        if (col[2] >= 0 && v4r_imp_parse_ts(f[col[2]], &ts, &has) != 0) {
            rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: column '%s': '%s' is not an integer timestamp", path, line,
                          name[2], f[col[2]]);
            break;
        }
        v4r_split_push(&ds->split[split], (int32_t)u, (int32_t)i, ts, has, line);
    }
    if (got < 0)
        rc = err->code;
    free_names(name, 3);
    v4r_csv_close(&t.csv);
    return rc;
}

int v4r_import_kaggle(const char *src, const char *out, const v4r_import_opts *o, v4r_err *err)
{
    int rc = v4r_imp_check_dir(src, err);
    if (rc)
        return rc;
    v4r_importer im;
    v4r_imp_init(&im, "kaggle", src);
    static const char *const split_files[V4R_NSPLITS] = {"train.txt", "validation.txt", "test.txt"};
    static const char *const split_alts[V4R_NSPLITS] = {NULL, "valid.txt", NULL};
    char *users = NULL, *items = NULL;
    rc = v4r_imp_require(&im, src, "users.txt", NULL, &users, err);
    if (!rc)
        rc = v4r_imp_require(&im, src, "items.txt", NULL, &items, err);
    for (int s = 0; s < V4R_NSPLITS && !rc; s++)
        rc = v4r_imp_require(&im, src, split_files[s], split_alts[s], &im.split_file[s], err);
    if (!rc)
        rc = read_users(&im, users, err);
    if (!rc)
        rc = read_items(&im, items, err);
    for (int s = 0; s < V4R_NSPLITS && !rc; s++)
        rc = read_split(&im, s, im.split_file[s], err);
    static const char *const feat_src[] = {"embed_text.npy", "embed_image.npy"};
    static const char *const feat_out[] = {"text.npy", "image.npy"};
    for (int k = 0; k < 2 && !rc; k++) {
        char *p = v4r_path_join(src, feat_src[k]);
        if (v4r_file_exists(p))
            rc = v4r_imp_add_feature(&im, p, feat_out[k], err);
        free(p);
    }
    if (!rc)
        rc = v4r_imp_finish(&im, out, o, err);
    free(users);
    free(items);
    v4r_imp_free(&im);
    return rc;
}

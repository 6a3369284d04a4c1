/* Vector parts: one shard's rows of a per-item vector file (PART.npy) and its manifest
 * (PART.part.json) that says which dataset, model, options and items the rows belong to; the
 * fingerprint of a model directory. docs/cluster.md describes the format field by field. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vlm4rec/io.h"

/* The files of a model directory that make its numbers: *.json, *.txt and *.safetensors, also in
 * subfolders (1_Pooling/); hidden ones skipped. Relative paths appended to *names. */
static void model_files(const char *dir, const char *rel, int depth, char ***names, size_t *n, size_t *cap)
{
    char *path = rel[0] ? v4r_path_join(dir, rel) : v4r_strdup(dir);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *sub = rel[0] ? v4r_sprintf("%s/%s", rel, e->d_name) : v4r_strdup(e->d_name);
        char *full = v4r_path_join(dir, sub);
        struct stat sb;
        const char *dot = strrchr(e->d_name, '.');
        int wanted = dot && (!strcmp(dot, ".json") || !strcmp(dot, ".txt") || !strcmp(dot, ".safetensors"));
        if (stat(full, &sb) == 0 && S_ISDIR(sb.st_mode) && depth < 3) {
            model_files(dir, sub, depth + 1, names, n, cap);
        } else if (stat(full, &sb) == 0 && S_ISREG(sb.st_mode) && wanted) {
            if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 16;
                *names = v4r_realloc(*names, *cap * sizeof **names);
            }
            (*names)[(*n)++] = sub;
            sub = NULL;
        }
        free(sub);
        free(full);
    }
    if (d)
        closedir(d);
    free(path);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int v4r_model_fingerprint(const char *dir, char hex[65], v4r_err *err)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    model_files(dir, "", 0, &names, &n, &cap);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    size_t len = 0;
    char *listing = v4r_strdup("");
    int rc = n ? V4R_OK : v4r_fail(err, V4R_EINPUT, "%s: no model files (*.json, *.txt, *.safetensors)", dir);
    for (size_t i = 0; i < n && !rc; i++) {
        char *path = v4r_path_join(dir, names[i]), file_hex[65];
        rc = v4r_sha256_file(path, file_hex, err);
        if (!rc) { /* "relative/path  sha256\n" a file, like sha256sum's lines */
            char *next = v4r_sprintf("%s%s  %s\n", listing, file_hex, names[i]);
            free(listing);
            listing = next;
            len = strlen(listing);
        }
        free(path);
    }
    if (!rc)
        v4r_sha256_hex(listing, len, hex);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(listing);
    return rc;
}

/* ---- the manifest ---- */

void v4r_vecpart_free(v4r_vecpart *p)
{
    for (size_t i = 0; p->item && i < p->rows; i++) {
        free(p->item[i]);
        if (p->reason)
            free(p->reason[i]);
    }
    free(p->item), free(p->covered), free(p->reason);
    free(p->command), free(p->model_id);
    json_decref(p->options);
    json_decref(p->input);
    memset(p, 0, sizeof *p);
}

/* "rows" last, one row a line: [item, covered] or [item, covered, reason]. */
static void write_rows(FILE *fp, const v4r_vecpart *p)
{
    fputs(",\n \"rows\":[", fp);
    for (size_t i = 0; i < p->rows; i++) {
        json_t *row = json_pack("[s, i]", p->item[i], p->covered[i] ? 1 : 0);
        if (p->reason && p->reason[i])
            json_array_append_new(row, json_string(p->reason[i]));
        fputs(i ? ",\n  " : "\n  ", fp);
        json_dumpf(row, fp, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_decref(row);
    }
    fputs(p->rows ? "\n ]\n}\n" : "]\n}\n", fp);
}

int v4r_vecpart_write(const char *manifest, const char *vectors, v4r_vecpart *p, v4r_err *err)
{
    size_t rows, cols;
    int rc = v4r_npy_shape(vectors, &rows, &cols, err);
    if (!rc && (rows != p->rows || cols != p->dim))
        rc = v4r_fail(err, V4R_EINTERNAL, "%s: shape (%zu, %zu), expected (%zu, %zu)", vectors, rows, cols, p->rows,
                      p->dim);
    if (!rc)
        rc = v4r_sha256_file(vectors, p->vectors_sha256, err);
    if (rc)
        return rc;
    const char *base = strrchr(vectors, '/');
    json_t *m = json_pack("{s:s, s:s, s:{s:i, s:i}, s:{s:I, s:s}, s:{s:s, s:s}, s:O, s:O?, s:{s:s, s:I, s:I, s:s}, "
                          "}",
                          "format", V4R_VECPART_FORMAT, "command", p->command, "shard", "index", p->shard_index,
                          "count", p->shard_count, "dataset", "items", (json_int_t)p->n_items, "items_sha256",
                          p->items_sha256, "model", "id", p->model_id, "sha256", p->model_sha256, "options",
                          p->options, "input", p->input, "vectors", "file", base ? base + 1 : vectors, "rows",
                          (json_int_t)p->rows, "dim", (json_int_t)p->dim, "sha256", p->vectors_sha256);
    if (!m)
        return v4r_fail(err, V4R_EINTERNAL, "%s: cannot build the manifest (a string is not UTF-8?)", manifest);
    v4r_outfile out;
    rc = v4r_out_open(&out, manifest, err);
    char *head = rc ? NULL : json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_COMPACT | JSON_ENSURE_ASCII);
    if (head) { /* the fields, then the rows before the closing brace */
        fwrite(head, 1, strlen(head) - 2, out.fp);
        write_rows(out.fp, p);
        rc = v4r_out_commit(&out, err);
    } else if (!rc) {
        v4r_out_abort(&out);
        rc = v4r_fail(err, V4R_EINTERNAL, "%s: cannot write the manifest", manifest);
    }
    free(head);
    json_decref(m);
    return rc;
}

/* ---- reading a manifest back, every field checked ---- */

static int bad(v4r_err *err, const char *path, const char *field, const char *what)
{
    return v4r_fail(err, V4R_EINPUT, "%s: field '%s' %s (a damaged part file: run its shard again)", path, field,
                    what);
}

static int get_str(const char *path, json_t *obj, const char *key, const char *field, const char **out, v4r_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return bad(err, path, field, "is missing or not a string");
    *out = json_string_value(v);
    return V4R_OK;
}

static int get_int(const char *path, json_t *obj, const char *key, const char *field, json_int_t *out, v4r_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return bad(err, path, field, "is missing or not a count");
    *out = json_integer_value(v);
    return V4R_OK;
}

static int get_sha(const char *path, json_t *obj, const char *key, const char *field, char hex[65], v4r_err *err)
{
    const char *s = NULL;
    int rc = get_str(path, obj, key, field, &s, err);
    if (!rc && (strlen(s) != 64 || strspn(s, "0123456789abcdef") != 64))
        rc = bad(err, path, field, "is not a sha256 (64 hex digits)");
    if (!rc)
        memcpy(hex, s, 65);
    return rc;
}

/* "rows": [[item, covered 0|1, reason?], ...], one per vector row. */
static int read_rows(const char *path, json_t *rows, v4r_vecpart *p, v4r_err *err)
{
    if (!json_is_array(rows) || json_array_size(rows) != p->rows)
        return bad(err, path, "rows", "is missing or does not have one entry a vector row");
    p->item = v4r_calloc(p->rows ? p->rows : 1, sizeof *p->item);
    p->reason = v4r_calloc(p->rows ? p->rows : 1, sizeof *p->reason);
    p->covered = v4r_calloc(p->rows ? p->rows : 1, 1);
    for (size_t i = 0; i < p->rows; i++) {
        json_t *r = json_array_get(rows, i), *id = json_array_get(r, 0), *cov = json_array_get(r, 1),
               *why = json_array_get(r, 2);
        size_t n = json_array_size(r);
        int ok = json_is_array(r) && (n == 2 || n == 3) && json_is_string(id) && json_is_integer(cov) &&
                 (json_integer_value(cov) == 0 || json_integer_value(cov) == 1) && (n == 2 || json_is_string(why));
        if (!ok)
            return v4r_fail(err, V4R_EINPUT, "%s: field 'rows' entry %zu is not [item, 0|1] or [item, 0|1, reason] "
                                             "(a damaged part file: run its shard again)",
                            path, i + 1);
        p->item[i] = v4r_strdup(json_string_value(id));
        p->covered[i] = (uint8_t)json_integer_value(cov);
        p->reason[i] = why ? v4r_strdup(json_string_value(why)) : NULL;
    }
    return V4R_OK;
}

static int read_fields(const char *path, json_t *m, v4r_vecpart *p, v4r_err *err)
{
    const char *s = NULL;
    json_int_t x = 0, y = 0;
    json_t *shard = json_object_get(m, "shard"), *ds = json_object_get(m, "dataset"),
           *model = json_object_get(m, "model"), *vec = json_object_get(m, "vectors");
    int rc = get_str(path, m, "format", "format", &s, err);
    if (!rc && strcmp(s, V4R_VECPART_FORMAT))
        return v4r_fail(err, V4R_EINPUT, "%s: format '%s', expected '%s'", path, s, V4R_VECPART_FORMAT);
    if (!rc && !(rc = get_str(path, m, "command", "command", &s, err)))
        p->command = v4r_strdup(s);
    if (!rc && !(rc = get_int(path, shard, "index", "shard.index", &x, err)) &&
        !(rc = get_int(path, shard, "count", "shard.count", &y, err)) && (x < 1 || x > y || y > 1000000))
        rc = bad(err, path, "shard", "is not I of N with 1 <= I <= N");
    p->shard_index = (int)x, p->shard_count = (int)y;
    if (!rc && !(rc = get_int(path, ds, "items", "dataset.items", &x, err)))
        p->n_items = (size_t)x;
    if (!rc)
        rc = get_sha(path, ds, "items_sha256", "dataset.items_sha256", p->items_sha256, err);
    if (!rc && !(rc = get_str(path, model, "id", "model.id", &s, err)))
        p->model_id = v4r_strdup(s);
    if (!rc)
        rc = get_sha(path, model, "sha256", "model.sha256", p->model_sha256, err);
    if (!rc && !json_is_object(json_object_get(m, "options")))
        rc = bad(err, path, "options", "is missing or not an object");
    p->options = json_incref(json_object_get(m, "options"));
    p->input = json_incref(json_object_get(m, "input"));
    if (!rc && !(rc = get_int(path, vec, "rows", "vectors.rows", &x, err)) &&
        !(rc = get_int(path, vec, "dim", "vectors.dim", &y, err)))
        p->rows = (size_t)x, p->dim = (size_t)y;
    if (!rc)
        rc = get_sha(path, vec, "sha256", "vectors.sha256", p->vectors_sha256, err);
    return rc ? rc : read_rows(path, json_object_get(m, "rows"), p, err);
}

int v4r_vecpart_read(const char *manifest, const char *vectors, v4r_vecpart *p, v4r_err *err)
{
    memset(p, 0, sizeof *p);
    if (!v4r_file_exists(manifest))
        return v4r_fail(err, V4R_EINPUT, "%s: no manifest %s: its shard did not finish (run it again)", vectors,
                        manifest);
    json_t *m = NULL;
    int rc = v4r_json_read_object(manifest, &m, err);
    if (!rc)
        rc = read_fields(manifest, m, p, err);
    json_decref(m);
    char hex[65];
    if (!rc)
        rc = v4r_sha256_file(vectors, hex, err);
    if (!rc && strcmp(hex, p->vectors_sha256))
        rc = v4r_fail(err, V4R_EINPUT, "%s: its sha256 is not the one its manifest %s records: the file changed or its "
                                       "shard was stopped while writing it (run shard %d/%d again)",
                      vectors, manifest, p->shard_index, p->shard_count);
    size_t rows, cols;
    if (!rc)
        rc = v4r_npy_shape(vectors, &rows, &cols, err);
    if (!rc && (rows != p->rows || cols != p->dim))
        rc = v4r_fail(err, V4R_EINPUT, "%s: shape (%zu, %zu), its manifest says (%zu, %zu)", vectors, rows, cols,
                      p->rows, p->dim);
    if (rc)
        v4r_vecpart_free(p);
    return rc;
}

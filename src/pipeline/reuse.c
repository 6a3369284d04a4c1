/* pipeline: per-item reuse of an earlier vector file — the keys file beside OUT.npy (one key per
 * row: a sha256 of the model's identity, the options that change numbers and the row's exact
 * input), loading it back with a check that it describes those very vectors, the counts of new,
 * changed, reused, removed and failed items. */
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/ground.h"
#include "vlm4rec/io.h"
#include "vlm4rec/pipeline.h"

#define KEYS_MAGIC "# vlm4rec.keys/1"

char *v4r_reuse_keys_path(const char *npy)
{
    size_t n = strlen(npy);
    if (n > 4 && !strcmp(npy + n - 4, ".npy"))
        n -= 4;
    return v4r_sprintf("%.*s.keys.tsv", (int)n, npy);
}

void v4r_reuse_key(const char *identity, const void *data, size_t n, char hex[65])
{
    size_t il = strlen(identity) + 1;
    char *buf = v4r_malloc(il + n + 1);
    memcpy(buf, identity, il);
    memcpy(buf + il, data, n);
    v4r_sha256_hex(buf, il + n, hex);
    free(buf);
}

/* The sha256 of a matrix's float bytes. */
static void vectors_digest(const float *v, size_t rows, size_t dim, char hex[65])
{
    v4r_sha256_hex(v ? (const void *)v : "", rows * dim * sizeof *v, hex);
}

char *v4r_reuse_counts_text(const v4r_reuse_counts *c)
{
    return v4r_sprintf("%zu new, %zu changed, %zu reused, %zu removed, %zu failed", c->n_new, c->n_changed,
                       c->n_reused, c->n_removed, c->n_failed);
}

int v4r_reuse_write(const char *npy, char *const *items, char *const *keys, size_t n, const v4r_reuse_counts *c,
                    v4r_err *err)
{
    v4r_matrix m = {0};
    int rc = v4r_npy_read(npy, &m, err);
    if (!rc && m.rows != n)
        rc = v4r_fail(err, V4R_EINPUT, "%s: %zu rows, but %zu keys", npy, m.rows, n);
    char hex[65], *path = v4r_reuse_keys_path(npy);
    v4r_outfile out;
    if (!rc)
        rc = v4r_out_open(&out, path, err);
    if (!rc) {
        vectors_digest(m.data, m.rows, m.cols, hex);
        fprintf(out.fp, KEYS_MAGIC "\trows=%zu\tdim=%zu\tvectors=%s\tnew=%zu\tchanged=%zu\treused=%zu\tremoved=%zu"
                                   "\tfailed=%zu\tempty=%zu\n",
                m.rows, m.cols, hex, c->n_new, c->n_changed, c->n_reused, c->n_removed, c->n_failed, c->n_empty);
        for (size_t i = 0; i < n; i++) {
            v4r_tsv_write_field(out.fp, items[i]);
            fprintf(out.fp, "\t%s\n", keys[i] ? keys[i] : "-");
        }
        rc = v4r_out_commit(&out, err);
    }
    v4r_matrix_free(&m);
    free(path);
    return rc;
}

/* The value of "name=" in a header line, or NULL. */
static const char *header_field(const char *line, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strchr(line, '\t'); p; p = strchr(p + 1, '\t'))
        if (!strncmp(p + 1, name, n) && p[1 + n] == '=')
            return p + 2 + n;
    return NULL;
}

static size_t header_size(const char *line, const char *name)
{
    const char *v = header_field(line, name);
    return v ? (size_t)strtoull(v, NULL, 10) : 0;
}

int v4r_reuse_read_counts(const char *npy, v4r_reuse_counts *c)
{
    char *path = v4r_reuse_keys_path(npy);
    FILE *fp = fopen(path, "r");
    char line[512] = "";
    int ok = fp && fgets(line, sizeof line, fp) && !strncmp(line, KEYS_MAGIC "\t", strlen(KEYS_MAGIC) + 1);
    if (fp)
        fclose(fp);
    free(path);
    if (!ok)
        return -1;
    c->n_new = header_size(line, "new");
    c->n_changed = header_size(line, "changed");
    c->n_reused = header_size(line, "reused");
    c->n_removed = header_size(line, "removed");
    c->n_failed = header_size(line, "failed");
    c->n_empty = header_size(line, "empty");
    return 0;
}

/* Reads the keys' rows into r; 0 when there are exactly rows of them. */
static int read_keys(v4r_reuse *r, v4r_lines *lr, size_t rows)
{
    v4r_err e = {0};
    r->item = v4r_calloc(rows ? rows : 1, sizeof *r->item);
    r->key = v4r_calloc(rows ? rows : 1, sizeof *r->key);
    v4r_strmap_init(&r->index, rows);
    size_t n = 0;
    int got;
    while ((got = v4r_lines_next(lr, &e)) > 0) {
        char *f[3];
        if (n == rows || v4r_tsv_split(lr->line, f, 3) != 2)
            return -1;
        v4r_tsv_unescape(f[0]);
        r->item[n] = v4r_strdup(f[0]);
        r->key[n] = v4r_strdup(f[1]);
        v4r_strmap_put(&r->index, f[0], (int64_t)n);
        n++;
        r->rows = n;
    }
    return got < 0 || n != rows ? -1 : 0;
}

int v4r_reuse_load(v4r_reuse *r, const char *npy, char *why, size_t why_len)
{
    memset(r, 0, sizeof *r);
    char *path = v4r_reuse_keys_path(npy), hex[65];
    v4r_err e = {0};
    v4r_lines lr = {0};
    v4r_matrix m = {0};
    const char *bad = NULL;
    if (!v4r_file_exists(npy) || !v4r_file_exists(path))
        bad = "no earlier output with keys";
    else if (v4r_npy_read(npy, &m, &e))
        bad = "the earlier vectors cannot be read";
    else if (v4r_lines_open(&lr, path, &e) || v4r_lines_next(&lr, &e) <= 0 ||
             strncmp(lr.line, KEYS_MAGIC "\t", strlen(KEYS_MAGIC) + 1))
        bad = "the keys file is not one";
    else if (header_size(lr.line, "rows") != m.rows || header_size(lr.line, "dim") != m.cols ||
             (vectors_digest(m.data, m.rows, m.cols, hex), !header_field(lr.line, "vectors")) ||
             strncmp(header_field(lr.line, "vectors"), hex, 64))
        bad = "the keys file does not describe these vectors";
    else if (read_keys(r, &lr, m.rows))
        bad = "the keys file is malformed";
    if (lr.fp)
        v4r_lines_close(&lr);
    free(path);
    if (bad) {
        snprintf(why, why_len, "%s", bad);
        v4r_matrix_free(&m);
        v4r_reuse_free(r);
        return 0;
    }
    r->vec = m.data;
    r->dim = m.cols;
    return 1;
}

void v4r_reuse_free(v4r_reuse *r)
{
    for (size_t i = 0; i < r->rows; i++) {
        free(r->item[i]);
        free(r->key[i]);
    }
    free(r->item);
    free(r->key);
    free(r->vec);
    if (r->index.cap)
        v4r_strmap_free(&r->index);
    memset(r, 0, sizeof *r);
}

const float *v4r_reuse_lookup(const v4r_reuse *r, const char *item, const char *key, v4r_reuse_counts *c)
{
    int64_t row = r->rows ? v4r_strmap_get(&r->index, item) : -1;
    if (row < 0 || !strcmp(r->key[row], "-")) {
        c->n_new++;
        return NULL;
    }
    if (strcmp(r->key[row], key)) {
        c->n_changed++;
        return NULL;
    }
    c->n_reused++;
    return r->vec + (size_t)row * r->dim;
}

void v4r_reuse_count_removed(const v4r_reuse *r, const v4r_strmap *current, v4r_reuse_counts *c)
{
    for (size_t i = 0; i < r->rows; i++)
        c->n_removed += v4r_strmap_get(current, r->item[i]) < 0;
}

void v4r_reuse_prepare(v4r_reuse *r, const char *reuse, const char *output, size_t dim, const char *redo)
{
    const char *prev = reuse ? reuse : output;
    char why[128];
    if (!v4r_reuse_load(r, prev, why, sizeof why) && (reuse || v4r_file_exists(output)))
        v4r_warn("%s: %s; %s", prev, why, redo);
    if (r->rows && r->dim != dim)
        v4r_reuse_free(r);
}

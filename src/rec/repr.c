/* Item representations built from vector files: as is, concatenation, naive average (of the
 * normalized blocks, or of the blocks as they are). */
#include "vlm4rec/rec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Fails on NaN/Inf anywhere, naming the file, row and column. */
static int check_finite(const v4r_matrix *m, const char *source, v4r_err *err)
{
    for (size_t r = 0; r < m->rows; r++)
        for (size_t c = 0; c < m->cols; c++)
            if (!isfinite(m->data[r * m->cols + c]))
                return v4r_fail(err, V4R_EINPUT, "%s: row %zu, column %zu: %s value", source, r, c,
                                isnan(m->data[r * m->cols + c]) ? "NaN" : "infinite");
    return V4R_OK;
}

static int load_block(const char *path, size_t n_items, v4r_matrix *m, v4r_err *err)
{
    int rc = v4r_npy_read(path, m, err);
    if (rc)
        return rc;
    if (m->rows != n_items) {
        rc = v4r_fail(err, V4R_EINPUT, "%s: %zu rows, but the dataset has %zu items (row i must be item i)", path,
                      m->rows, n_items);
    } else {
        rc = check_finite(m, path, err);
    }
    if (rc)
        v4r_matrix_free(m);
    return rc;
}

/* Normalizes rows in place, leaving zero rows zero; returns 1 when a zero row is needed. */
static int normalize_rows(v4r_matrix *m, const uint8_t *needed)
{
    int zero_needed = 0;
#pragma omp parallel for schedule(static) reduction(| : zero_needed)
    for (size_t r = 0; r < m->rows; r++) {
        float *row = m->data + r * m->cols;
        double ss = 0;
        for (size_t c = 0; c < m->cols; c++)
            ss += (double)row[c] * row[c];
        if (ss > 0) {
            float inv = (float)(1.0 / sqrt(ss));
            for (size_t c = 0; c < m->cols; c++)
                row[c] *= inv;
        } else if (!needed || needed[r]) {
            zero_needed = 1;
        }
    }
    return zero_needed;
}

int v4r_repr_normalize(v4r_matrix *m, const uint8_t *needed, const char *source, v4r_err *err)
{
    if (!normalize_rows(m, needed))
        return V4R_OK;
    for (size_t r = 0; r < m->rows; r++) { /* name the first offending row */
        const float *row = m->data + r * m->cols;
        size_t c = 0;
        while (c < m->cols && row[c] == 0)
            c++;
        if (c == m->cols && (!needed || needed[r]))
            return v4r_fail(err, V4R_EINPUT,
                            "%s: row %zu is a zero vector (an item without a representation); restrict the "
                            "candidates to covered items with --covered, or give the item a vector",
                            source, r);
    }
    return V4R_EINTERNAL;
}

typedef enum { COMBINE_NONE, COMBINE_CONCAT, COMBINE_MEAN, COMBINE_MEAN_PAD } combine_kind;

/* The combination of a spec's prefix; *raw = 1 for the blocks as they are (concat-raw:, mean-raw:). */
static combine_kind parse_kind(const char **spec, int *raw)
{
    static const struct {
        const char *prefix;
        combine_kind kind;
        int raw;
    } kinds[] = {{"concat:", COMBINE_CONCAT, 0}, {"mean-pad:", COMBINE_MEAN_PAD, 0}, {"mean:", COMBINE_MEAN, 0},
                 {"concat-raw:", COMBINE_CONCAT, 1}, {"mean-raw:", COMBINE_MEAN, 1}};
    *raw = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        size_t n = strlen(kinds[i].prefix);
        if (!strncmp(*spec, kinds[i].prefix, n)) {
            *spec += n;
            *raw = kinds[i].raw;
            return kinds[i].kind;
        }
    }
    return COMBINE_NONE;
}

static int combine(combine_kind kind, int raw, v4r_matrix *blocks, size_t nb, const char *spec, v4r_matrix *out,
                   v4r_err *err)
{
    size_t rows = blocks[0].rows, dim = 0, maxd = 0;
    for (size_t b = 0; b < nb; b++) {
        dim += blocks[b].cols;
        if (blocks[b].cols > maxd)
            maxd = blocks[b].cols;
    }
    if (kind == COMBINE_MEAN)
        for (size_t b = 1; b < nb; b++)
            if (blocks[b].cols != blocks[0].cols)
                return v4r_fail(err, V4R_EINPUT,
                                "%s: naive average needs blocks of one size, got %zu and %zu; use concat:, or "
                                "mean-pad: to zero-pad the smaller block",
                                spec, blocks[0].cols, blocks[b].cols);
    size_t out_dim = kind == COMBINE_CONCAT ? dim : maxd;
    out->rows = rows;
    out->cols = out_dim;
    out->data = v4r_calloc(rows * out_dim, sizeof(float));
    size_t col0 = 0;
    for (size_t b = 0; b < nb; b++) {
        v4r_matrix *m = &blocks[b];
        if (m->rows == 0)
            continue;
        /* blocks are normalized in place (unless raw); zero rows (items without this modality) stay zero */
        if (!raw)
            (void)normalize_rows(m, NULL);
        float w = kind == COMBINE_CONCAT ? 1.0f : 1.0f / (float)nb;
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < m->cols; c++)
                out->data[r * out_dim + col0 + c] += w * m->data[r * m->cols + c];
        if (kind == COMBINE_CONCAT)
            col0 += m->cols;
    }
    return V4R_OK;
}

int v4r_repr_load(const char *spec, size_t n_items, v4r_matrix *out, v4r_err *err)
{
    memset(out, 0, sizeof *out);
    const char *rest = spec;
    int raw;
    combine_kind kind = parse_kind(&rest, &raw);
    if (kind == COMBINE_NONE)
        return load_block(spec, n_items, out, err);
    char *list = v4r_strdup(rest);
    v4r_matrix blocks[8];
    size_t nb = 0;
    int rc = V4R_OK;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        if (nb == 8)
            rc = v4r_fail(err, V4R_EUSAGE, "%s: at most 8 blocks", spec);
        else if (!(rc = load_block(tok, n_items, &blocks[nb], err)))
            nb++;
    }
    if (!rc && nb < 2)
        rc = v4r_fail(err, V4R_EUSAGE, "%s: a combination needs at least two files, separated by commas", spec);
    if (!rc)
        rc = combine(kind, raw, blocks, nb, spec, out, err);
    for (size_t b = 0; b < nb; b++)
        v4r_matrix_free(&blocks[b]);
    free(list);
    return rc;
}

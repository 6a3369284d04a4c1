/* Building the IVF section: a spherical (inner-product) k-means coarse quantizer trained with
 * cblas_sgemm on a seeded sample (random distinct rows as the first centroids, a fixed number of
 * iterations, empty clusters split as FAISS does), every item assigned to its best centroid, and
 * the inverted lists (item ids, vectors in the index's dtype, panel by panel) written out. */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ASSIGN_ROWS = 2048 }; /* rows per sgemm of the assignment */

/* Best centroid (inner product; ties: the lower list) of each of the n rows of x. */
static void assign_rows(const float *x, size_t n, const float *cent, size_t k, size_t d, int32_t *best, float *buf)
{
    for (size_t r0 = 0; r0 < n; r0 += ASSIGN_ROWS) {
        size_t m = n - r0 < ASSIGN_ROWS ? n - r0 : ASSIGN_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)k, (int)d, 1.0f, x + r0 * d, (int)d, cent,
                    (int)d, 0.0f, buf, (int)k);
#pragma omp parallel for schedule(static)
        for (size_t r = 0; r < m; r++) {
            const float *s = buf + r * k;
            size_t b = 0;
            for (size_t c = 1; c < k; c++)
                if (s[c] > s[b])
                    b = c;
            best[r0 + r] = (int32_t)b;
        }
    }
}

static void normalize_rows(float *c, size_t k, size_t d)
{
    for (size_t i = 0; i < k; i++) {
        double ss = 0;
        for (size_t j = 0; j < d; j++)
            ss += (double)c[i * d + j] * c[i * d + j];
        if (ss > 0) {
            float inv = (float)(1 / sqrt(ss));
            for (size_t j = 0; j < d; j++)
                c[i * d + j] *= inv;
        }
    }
}

/* FAISS's split of empty clusters: an empty one takes a copy of a cluster picked with probability
 * (size - 1) / (n - k), and the two are pushed apart by a relative 1/1024 in alternate dimensions. */
static void split_empty(float *c, size_t *size, size_t k, size_t d, size_t n, v4r_rng *rng)
{
    const float eps = 1.0f / 1024;
    double spare = n > k ? (double)(n - k) : 1;
    for (size_t ci = 0; ci < k; ci++) {
        if (size[ci])
            continue;
        size_t cj = 0;
        for (;; cj = (cj + 1) % k)
            if (size[cj] > 1 && v4r_rng_uniform(rng) < (double)(size[cj] - 1) / spare)
                break;
        memcpy(c + ci * d, c + cj * d, d * sizeof *c);
        for (size_t j = 0; j < d; j++) {
            c[ci * d + j] *= j % 2 ? 1 - eps : 1 + eps;
            c[cj * d + j] *= j % 2 ? 1 + eps : 1 - eps;
        }
        size[ci] = size[cj] / 2;
        size[cj] -= size[ci];
    }
}

/* k centroids (row-major, unit norm) of the n sample rows x. */
static void kmeans(const float *x, size_t n, size_t k, size_t d, size_t iterations, v4r_rng *rng, float *cent)
{
    size_t *pick = v4r_malloc(n * sizeof *pick), *size = v4r_malloc(k * sizeof *size);
    for (size_t i = 0; i < n; i++)
        pick[i] = i;
    for (size_t i = 0; i < k; i++) { /* k distinct random rows */
        size_t j = i + (size_t)v4r_rng_below(rng, n - i), t = pick[i];
        pick[i] = pick[j];
        pick[j] = t;
        memcpy(cent + i * d, x + pick[i] * d, d * sizeof *cent);
    }
    int32_t *best = v4r_malloc(n * sizeof *best);
    float *buf = v4r_malloc((size_t)ASSIGN_ROWS * k * sizeof *buf);
    double *sum = v4r_malloc(k * d * sizeof *sum);
    for (size_t it = 0; it < iterations; it++) {
        assign_rows(x, n, cent, k, d, best, buf);
        memset(sum, 0, k * d * sizeof *sum);
        memset(size, 0, k * sizeof *size);
        for (size_t r = 0; r < n; r++) {
            size[best[r]]++;
            for (size_t j = 0; j < d; j++)
                sum[(size_t)best[r] * d + j] += x[r * d + j];
        }
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; size[i] && j < d; j++)
                cent[i * d + j] = (float)(sum[i * d + j] / (double)size[i]);
        split_empty(cent, size, k, d, n, rng);
        normalize_rows(cent, k, d);
    }
    free(pick);
    free(size);
    free(best);
    free(buf);
    free(sum);
}

/* The training sample: all rows, or a seeded random subset of m of them in row order. */
static float *training_sample(const v4r_matrix *rows, size_t m, v4r_rng *rng)
{
    size_t n = rows->rows, d = rows->cols;
    float *x = v4r_malloc(m * d * sizeof *x);
    if (m == n) {
        memcpy(x, rows->data, n * d * sizeof *x);
        return x;
    }
    size_t *idx = v4r_malloc(n * sizeof *idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    for (size_t i = 0; i < m; i++) {
        size_t j = i + (size_t)v4r_rng_below(rng, n - i), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    for (size_t i = 0; i < m; i++)
        memcpy(x + i * d, rows->data + idx[i] * d, d * sizeof *x);
    free(idx);
    return x;
}

size_t ivf_default_nlist(size_t n_items)
{
    size_t nlist = (size_t)llround(4 * sqrt((double)n_items));
    return nlist < 1 ? 1 : nlist > n_items ? n_items : nlist;
}

/* Lists by counting sort: list_off (nlist + 1), list_items ascending within each list. */
static void make_lists(const int32_t *best, size_t n, size_t nlist, uint64_t *off, uint64_t *panel, int32_t *items)
{
    memset(off, 0, (nlist + 1) * sizeof *off);
    for (size_t i = 0; i < n; i++)
        off[best[i] + 1]++;
    panel[0] = 0;
    for (size_t l = 0; l < nlist; l++) {
        panel[l + 1] = panel[l] + (off[l + 1] + IX_PANEL - 1) / IX_PANEL;
        off[l + 1] += off[l];
    }
    uint64_t *fill = v4r_malloc(nlist * sizeof *fill);
    memcpy(fill, off, nlist * sizeof *fill);
    for (size_t i = 0; i < n; i++)
        items[fill[best[i]]++] = (int32_t)i;
    free(fill);
}

int ivf_build(const v4r_matrix *rows, int dtype, const v4r_index_build_opts *o, int kernel, unsigned char **out,
              uint64_t *len, v4r_err *err)
{
    (void)kernel;
    size_t n = rows->rows, d = rows->cols, nlist = o->nlist ? o->nlist : ivf_default_nlist(n);
    if (nlist > n)
        return v4r_fail(err, V4R_EUSAGE, "nlist = %zu is above the number of items (%zu)", nlist, n);
    size_t m = o->train_per_list && nlist <= n / o->train_per_list ? nlist * o->train_per_list : n;
    v4r_rng rng;
    v4r_rng_seed(&rng, o->seed ^ 0x1f5c0ffeeULL);
    float *x = training_sample(rows, m, &rng), *cent = v4r_malloc(nlist * d * sizeof *cent);
    v4r_info("ivf: k-means of %zu lists on %zu of %zu vectors, %zu iterations", nlist, m, n,
            o->iterations);
    kmeans(x, m, nlist, d, o->iterations, &rng, cent);
    free(x);
    int32_t *best = v4r_malloc(n * sizeof *best);
    float *buf = v4r_malloc((size_t)ASSIGN_ROWS * nlist * sizeof *buf);
    assign_rows(rows->data, n, cent, nlist, d, best, buf);
    free(buf);

    ivf_header v = {.nlist = nlist, .nprobe = nlist, .recall_vs_exact = -1, .recall_vs_f32 = -1,
                    .train_vectors = m, .iterations = o->iterations, .seed = o->seed};
    uint64_t *off = v4r_malloc((nlist + 1) * sizeof *off), *panel = v4r_malloc((nlist + 1) * sizeof *panel);
    int32_t *items = v4r_malloc(n * sizeof *items);
    make_lists(best, n, nlist, off, panel, items);
    v.list_panels = panel[nlist];
    ix_section part[IVF_NPARTS];
    ivf_layout(&v, n, d, dtype, part, len);
    unsigned char *b = v4r_calloc(1, (size_t)*len);
    ivf_header_encode(&v, b);
    float *cp = (float *)(void *)(b + part[IVF_CENTROIDS].off);
    for (size_t l = 0; l < nlist; l++)
        for (size_t k = 0; k < d; k++)
            cp[l / IX_PANEL * d * IX_PANEL + k * IX_PANEL + l % IX_PANEL] = cent[l * d + k];
    memcpy(b + part[IVF_LIST_OFF].off, off, (nlist + 1) * sizeof *off);
    memcpy(b + part[IVF_LIST_PANEL].off, panel, (nlist + 1) * sizeof *panel);
    memcpy(b + part[IVF_LIST_ITEMS].off, items, n * sizeof *items);
    float *scales = dtype == V4R_INDEX_I8 ? (float *)(void *)(b + part[IVF_LIST_SCALES].off) : NULL;
    for (size_t i = 0; scales && i < v.list_panels * IX_PANEL; i++)
        scales[i] = 1;
    for (size_t l = 0; l < nlist; l++)
        for (uint64_t j = off[l]; j < off[l + 1]; j++)
            ix_encode_row(dtype, rows->data + (size_t)items[j] * d, d, b + part[IVF_LIST_VECTORS].off, scales,
                          (size_t)(panel[l] * IX_PANEL + (j - off[l])));
    free(cent);
    free(best);
    free(off);
    free(panel);
    free(items);
    *out = b;
    return V4R_OK;
}

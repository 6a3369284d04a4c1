/* SMORE's graphs: cosine kNN item-item graphs with symmetric normalization, their element-wise
 * maximum (the fusion graph), and the normalized user-item graph. */
#include "ad_internal.h"
#include "smore_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { KNN_BLOCK = 256 };

/* Inserts (s, j) into the top list of len <= k entries, sorted by score desc then index asc. */
static void top_insert(float *ts, int32_t *ti, size_t *len, size_t k, float s, int32_t j)
{
    if (*len == k && !(s > ts[k - 1] || (s == ts[k - 1] && j < ti[k - 1])))
        return;
    size_t at = *len < k ? (*len)++ : k - 1;
    while (at > 0 && (s > ts[at - 1] || (s == ts[at - 1] && j < ti[at - 1]))) {
        ts[at] = ts[at - 1];
        ti[at] = ti[at - 1];
        at--;
    }
    ts[at] = s;
    ti[at] = j;
}

static float *unit_rows(const float *x, size_t n, size_t d)
{
    float *u = v4r_malloc((n * d + 1) * sizeof *u);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double ss = 0;
        for (size_t c = 0; c < d; c++)
            ss += (double)x[i * d + c] * x[i * d + c];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (size_t c = 0; c < d; c++)
            u[i * d + c] = x[i * d + c] * inv;
    }
    return u;
}

/* The k best columns of every row of the cosine matrix: idx and sim, n x k each. */
static void knn_lists(const float *x, size_t n, size_t d, size_t k, int32_t *idx, float *sim)
{
    float *u = unit_rows(x, n, d), *scores = v4r_malloc((KNN_BLOCK * n + 1) * sizeof *scores);
    for (size_t r0 = 0; r0 < n; r0 += KNN_BLOCK) {
        size_t nb = n - r0 < KNN_BLOCK ? n - r0 : KNN_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)n, (int)d, 1.0f, u + r0 * d, (int)d, u,
                    (int)d, 0.0f, scores, (int)n);
#pragma omp parallel for schedule(static)
        for (size_t b = 0; b < nb; b++) {
            size_t len = 0;
            for (size_t j = 0; j < n; j++)
                top_insert(sim + (r0 + b) * k, idx + (r0 + b) * k, &len, k, scores[b * n + j], (int32_t)j);
        }
    }
    free(u);
    free(scores);
}

void v4r_knn_graph(const float *x, size_t n, size_t d, size_t k, v4r_spmat *out)
{
    if (k > n)
        k = n;
    int32_t *idx = v4r_malloc((n * k + 1) * sizeof *idx), *row = v4r_malloc((n * k + 1) * sizeof *row);
    float *sim = v4r_malloc((n * k + 1) * sizeof *sim), *inv = v4r_malloc((n + 1) * sizeof *inv);
    knn_lists(x, n, d, k, idx, sim);
    for (size_t i = 0; i < n; i++) { /* degree: the row sum of the kept cosines */
        float deg = 0;
        for (size_t j = 0; j < k; j++)
            deg += sim[i * k + j];
        inv[i] = deg > 0 ? 1.0f / sqrtf(deg) : 0.0f;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < k; j++) {
            row[i * k + j] = (int32_t)i;
            sim[i * k + j] *= inv[i] * inv[idx[i * k + j]];
        }
    v4r_spmat_build(out, n, n, n * k, row, idx, sim);
    free(idx);
    free(row);
    free(sim);
    free(inv);
}

/* The element-wise maximum of two matrices of one shape over the union of their entries (an
 * entry present in one only keeps its value). */
void v4r_spmat_max(const v4r_spmat *a, const v4r_spmat *b, v4r_spmat *out)
{
    const v4r_csr *x = &a->a, *y = &b->a;
    size_t cap = x->nnz + y->nnz + 1, n = 0;
    int32_t *r = v4r_malloc(cap * sizeof *r), *c = v4r_malloc(cap * sizeof *c);
    float *v = v4r_malloc(cap * sizeof *v);
    for (size_t i = 0; i < x->rows; i++) {
        size_t p = x->ptr[i], q = y->ptr[i];
        while (p < x->ptr[i + 1] || q < y->ptr[i + 1]) {
            int take_x = q == y->ptr[i + 1] || (p < x->ptr[i + 1] && x->col[p] <= y->col[q]);
            int take_y = p == x->ptr[i + 1] || (q < y->ptr[i + 1] && y->col[q] <= x->col[p]);
            r[n] = (int32_t)i;
            if (take_x && take_y) {
                c[n] = x->col[p];
                v[n++] = x->val[p] > y->val[q] ? x->val[p] : y->val[q];
                p++, q++;
            } else if (take_x) {
                c[n] = x->col[p], v[n++] = x->val[p++];
            } else {
                c[n] = y->col[q], v[n++] = y->val[q++];
            }
        }
    }
    v4r_spmat_build(out, x->rows, x->cols, n, r, c, v);
    free(r);
    free(c);
    free(v);
}

/* D^-1/2 A D^-1/2 of the bipartite graph A = [0 R; R^T 0] (R binary), and its R block. */
void v4r_ui_graph(size_t n_users, size_t n_items, const int32_t *user, const int32_t *item, size_t n_inter,
                  v4r_spmat *adj, v4r_spmat *r_norm)
{
    v4r_spmat r; /* duplicates summed, then binarized */
    float *ones = v4r_malloc((n_inter + 1) * sizeof *ones);
    for (size_t i = 0; i < n_inter; i++)
        ones[i] = 1.0f;
    v4r_spmat_build(&r, n_users, n_items, n_inter, user, item, ones);
    free(ones);
    size_t nnz = r.a.nnz, nodes = n_users + n_items;
    float *deg = v4r_calloc(nodes + 1, sizeof *deg);
    int32_t *ru = v4r_malloc((2 * nnz + 1) * sizeof *ru), *ci = v4r_malloc((2 * nnz + 1) * sizeof *ci);
    float *val = v4r_malloc((2 * nnz + 1) * sizeof *val);
    for (size_t u = 0; u < n_users; u++)
        for (size_t k = r.a.ptr[u]; k < r.a.ptr[u + 1]; k++)
            deg[u] += 1.0f, deg[n_users + (size_t)r.a.col[k]] += 1.0f;
    size_t n = 0;
    for (size_t u = 0; u < n_users; u++)
        for (size_t k = r.a.ptr[u]; k < r.a.ptr[u + 1]; k++) {
            ru[n] = (int32_t)u, ci[n] = r.a.col[k];
            val[n++] = 1.0f / sqrtf(deg[u] * deg[n_users + (size_t)r.a.col[k]]);
        }
    v4r_spmat_build(r_norm, n_users, n_items, n, ru, ci, val);
    for (size_t k = 0; k < nnz; k++) { /* both blocks of the symmetric matrix */
        ru[nnz + k] = ci[k] + (int32_t)n_users;
        ci[nnz + k] = ru[k];
        val[nnz + k] = val[k];
        ci[k] += (int32_t)n_users;
    }
    v4r_spmat_build(adj, nodes, nodes, 2 * nnz, ru, ci, val);
    v4r_spmat_free(&r);
    free(deg);
    free(ru);
    free(ci);
    free(val);
}

/* Constant sparse matrices (CSR, with the transpose kept for the backward pass) and their products
 * with dense matrices. */
#include "ad_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t col;
    float val;
} entry;

static int entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    return x->col < y->col ? -1 : x->col > y->col;
}

/* Sorts one row's entries by column: insertion sort for short rows, qsort for long ones. */
static void sort_row(int32_t *col, float *val, size_t n)
{
    if (n > 32) {
        entry *e = v4r_malloc(n * sizeof *e);
        for (size_t i = 0; i < n; i++)
            e[i] = (entry){col[i], val[i]};
        qsort(e, n, sizeof *e, entry_cmp);
        for (size_t i = 0; i < n; i++)
            col[i] = e[i].col, val[i] = e[i].val;
        free(e);
        return;
    }
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && col[b - 1] > col[b]; b--) {
            int32_t tc = col[b];
            float tv = val[b];
            col[b] = col[b - 1], val[b] = val[b - 1];
            col[b - 1] = tc, val[b - 1] = tv;
        }
}

/* CSR of (r, c, v) sorted by row then column, duplicates summed. */
static void csr_from_coo(v4r_csr *m, size_t rows, size_t cols, size_t nnz, const int32_t *r, const int32_t *c,
                         const float *v)
{
    size_t *count = v4r_calloc(rows + 1, sizeof *count);
    for (size_t i = 0; i < nnz; i++)
        count[(size_t)r[i] + 1]++;
    for (size_t i = 0; i < rows; i++)
        count[i + 1] += count[i];
    int32_t *col = v4r_malloc((nnz ? nnz : 1) * sizeof *col);
    float *val = v4r_malloc((nnz ? nnz : 1) * sizeof *val);
    size_t *fill = v4r_malloc((rows + 1) * sizeof *fill);
    memcpy(fill, count, (rows + 1) * sizeof *fill);
    for (size_t i = 0; i < nnz; i++) { /* stable: a row keeps the input order, sorted below */
        size_t at = fill[r[i]]++;
        col[at] = c[i];
        val[at] = v[i];
    }
    free(fill);
    m->rows = rows;
    m->cols = cols;
    m->ptr = v4r_malloc((rows + 1) * sizeof *m->ptr);
    m->col = v4r_malloc((nnz ? nnz : 1) * sizeof *m->col);
    m->val = v4r_malloc((nnz ? nnz : 1) * sizeof *m->val);
    size_t out = 0;
    for (size_t i = 0; i < rows; i++) {
        m->ptr[i] = out;
        size_t lo = count[i], hi = count[i + 1];
        sort_row(col + lo, val + lo, hi - lo);
        for (size_t a = lo; a < hi; a++) {
            if (out > m->ptr[i] && m->col[out - 1] == col[a])
                m->val[out - 1] += val[a];
            else
                m->col[out] = col[a], m->val[out++] = val[a];
        }
    }
    m->ptr[rows] = out;
    m->nnz = out;
    free(count);
    free(col);
    free(val);
}

void v4r_spmat_build(v4r_spmat *m, size_t rows, size_t cols, size_t nnz, const int32_t *r, const int32_t *c,
                     const float *v)
{
    for (size_t i = 0; i < nnz; i++)
        if (r[i] < 0 || (size_t)r[i] >= rows || c[i] < 0 || (size_t)c[i] >= cols) {
            fprintf(stderr, "vlm4rec: internal error: sparse entry (%d, %d) outside %zux%zu\n", r[i], c[i], rows, cols);
            abort();
        }
    csr_from_coo(&m->a, rows, cols, nnz, r, c, v);
    csr_from_coo(&m->at, cols, rows, nnz, c, r, v);
}

static void csr_free(v4r_csr *m)
{
    free(m->ptr);
    free(m->col);
    free(m->val);
    memset(m, 0, sizeof *m);
}

void v4r_spmat_free(v4r_spmat *m)
{
    csr_free(&m->a);
    csr_free(&m->at);
}

/* y (+)= A x, rows of y in parallel, each summed in column order. */
static void csr_mm(const v4r_csr *a, const float *x, size_t cols, float *y, int accumulate)
{
#pragma omp parallel for schedule(dynamic, 256) if (a->nnz * cols > V4R_AD_PAR)
    for (size_t r = 0; r < a->rows; r++) {
        float *yr = y + r * cols;
        if (!accumulate)
            memset(yr, 0, cols * sizeof(float));
        for (size_t k = a->ptr[r]; k < a->ptr[r + 1]; k++) {
            const float *xr = x + (size_t)a->col[k] * cols;
            float w = a->val[k];
            for (size_t c = 0; c < cols; c++)
                yr[c] += w * xr[c];
        }
    }
}

static void spmm_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    const v4r_spmat *a = t->aux;
    csr_mm(&a->at, t->grad, t->cols, v4r_ad_grad(tape, t->in[0]), 1);
}

v4r_ad_tensor *v4r_ad_spmm(v4r_ad_tape *tape, const v4r_spmat *a, v4r_ad_tensor *x)
{
    v4r_ad_check(a->a.cols == x->rows, "spmm", x, NULL);
    v4r_ad_tensor *t = v4r_ad_node(tape, a->a.rows, x->cols, spmm_backward, x, NULL, NULL);
    t->aux = a;
    csr_mm(&a->a, x->val, x->cols, t->val, 0);
    return t;
}

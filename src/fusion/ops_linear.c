/* Autodiff operations on whole matrices: products (cblas_sgemm), linear layers, broadcasting add /
 * sub / mul, scaling, concatenation, slices and reshapes, row gathers and sums. */
#include "ad_internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* ---- matrix product ---- */

static void sgemm(int ta, int tb, size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b,
                  size_t ldb, float beta, float *c)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)k, 1.0f, a, (int)lda, b, (int)ldb, beta, c, (int)n);
}

/* C = A' B' with A' = ta ? A^T : A: dA' = dC B'^T and dB' = A'^T dC, transposed back when needed. */
static void matmul_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *a = t->in[0], *b = t->in[1];
    int ta = (int)t->ia, tb = (int)t->ib;
    size_t m = t->rows, n = t->cols, k = ta ? a->rows : a->cols;
    if (a->needs_grad) {
        float *ga = v4r_ad_grad(tape, a);
        if (!ta) /* dA (m x k) = dC (m x n) B'^T */
            sgemm(0, !tb, m, k, n, t->grad, n, b->val, b->cols, 1.0f, ga);
        else /* dA (k x m) = B' (k x n) dC^T */
            sgemm(tb, 1, k, m, n, b->val, b->cols, t->grad, n, 1.0f, ga);
    }
    if (b->needs_grad) {
        float *gb = v4r_ad_grad(tape, b);
        if (!tb) /* dB (k x n) = A'^T (k x m) dC */
            sgemm(!ta, 0, k, n, m, a->val, a->cols, t->grad, n, 1.0f, gb);
        else /* dB (n x k) = dC^T (n x m) A' */
            sgemm(1, ta, n, k, m, t->grad, n, a->val, a->cols, 1.0f, gb);
    }
}

v4r_ad_tensor *v4r_ad_matmul(v4r_ad_tape *tape, v4r_ad_tensor *a, v4r_ad_tensor *b, int ta, int tb)
{
    size_t m = ta ? a->cols : a->rows, k = ta ? a->rows : a->cols;
    size_t kb = tb ? b->cols : b->rows, n = tb ? b->rows : b->cols;
    v4r_ad_check(k == kb, "matmul", a, b);
    v4r_ad_tensor *t = v4r_ad_node(tape, m, n, matmul_backward, a, b, NULL);
    t->ia = (size_t)ta;
    t->ib = (size_t)tb;
    if (m && n)
        sgemm(ta, tb, m, n, k, a->val, a->cols, b->val, b->cols, 0.0f, t->val);
    return t;
}

/* ---- linear layer ---- */

static void linear_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *x = t->in[0], *w = t->in[1], *bias = t->in[2];
    size_t rows = t->rows, out = t->cols, in = x->cols;
    if (x->needs_grad) /* dx = dy W */
        sgemm(0, 0, rows, in, out, t->grad, out, w->val, in, 1.0f, v4r_ad_grad(tape, x));
    if (w->needs_grad) /* dW = dy^T x */
        sgemm(1, 0, out, in, rows, t->grad, out, x->val, in, 1.0f, v4r_ad_grad(tape, w));
    if (bias && bias->needs_grad)
        v4r_ad_colsum_acc(t->grad, rows, out, v4r_ad_grad(tape, bias));
}

v4r_ad_tensor *v4r_ad_linear(v4r_ad_tape *tape, v4r_ad_tensor *x, v4r_ad_tensor *w, v4r_ad_tensor *bias)
{
    v4r_ad_check(x->cols == w->cols, "linear", x, w);
    v4r_ad_check(!bias || bias->rows * bias->cols == w->rows, "linear (bias)", w, bias);
    size_t rows = x->rows, out = w->rows;
    v4r_ad_tensor *t = v4r_ad_node(tape, rows, out, linear_backward, x, w, bias);
    if (bias) {
#pragma omp parallel for schedule(static) if (rows * out > V4R_AD_PAR)
        for (size_t r = 0; r < rows; r++)
            memcpy(t->val + r * out, bias->val, out * sizeof(float));
    }
    if (rows && out)
        sgemm(0, 1, rows, out, x->cols, x->val, x->cols, w->val, w->cols, bias ? 1.0f : 0.0f, t->val);
    return t;
}

/* ---- broadcasting elementwise ---- */

enum { EW_ADD, EW_SUB, EW_MUL };

static size_t bstride_r(const v4r_ad_tensor *x) { return x->rows == 1 ? 0 : x->cols; }
static size_t bstride_c(const v4r_ad_tensor *x) { return x->cols == 1 ? 0 : 1; }

/* The gradient of operand `which`: accumulated in place when it has the output's shape, else as an
 * output-shaped contribution reduced over the broadcast rows or columns. */
static void ew_operand_backward(v4r_ad_tape *tape, v4r_ad_tensor *t, int which)
{
    v4r_ad_tensor *x = t->in[which], *o = t->in[1 - which];
    size_t rows = t->rows, cols = t->cols, n = rows * cols;
    int kind = (int)t->ia, direct = x->rows == rows && x->cols == cols;
    float *gx = v4r_ad_grad(tape, x);
    if (kind == EW_ADD || (kind == EW_SUB && which == 0)) {
        v4r_ad_reduce_acc(t->grad, rows, cols, gx, x->rows, x->cols);
        return;
    }
    float *dst = direct ? gx : v4r_malloc(n * sizeof(float));
    size_t ors = bstride_r(o), ocs = bstride_c(o);
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t r = 0; r < rows; r++) {
        const float *g = t->grad + r * cols, *ov = o->val + r * ors;
        float *d = dst + r * cols;
        if (kind == EW_SUB && direct)
            for (size_t c = 0; c < cols; c++)
                d[c] -= g[c];
        else if (kind == EW_SUB)
            for (size_t c = 0; c < cols; c++)
                d[c] = -g[c];
        else if (direct)
            for (size_t c = 0; c < cols; c++)
                d[c] += g[c] * ov[c * ocs];
        else
            for (size_t c = 0; c < cols; c++)
                d[c] = g[c] * ov[c * ocs];
    }
    if (!direct) {
        v4r_ad_reduce_acc(dst, rows, cols, gx, x->rows, x->cols);
        free(dst);
    }
}

static void ew_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    for (int which = 0; which < 2; which++)
        if (t->in[which]->needs_grad)
            ew_operand_backward(tape, t, which);
}

static v4r_ad_tensor *elementwise(v4r_ad_tape *tape, v4r_ad_tensor *a, v4r_ad_tensor *b, int kind)
{
    static const char *names[] = {"add", "sub", "mul"};
    int rows_ok = a->rows == b->rows || a->rows == 1 || b->rows == 1;
    int cols_ok = a->cols == b->cols || a->cols == 1 || b->cols == 1;
    v4r_ad_check(rows_ok && cols_ok, names[kind], a, b);
    size_t rows = a->rows > b->rows ? a->rows : b->rows, cols = a->cols > b->cols ? a->cols : b->cols;
    v4r_ad_tensor *t = v4r_ad_node(tape, rows, cols, ew_backward, a, b, NULL);
    t->ia = (size_t)kind;
    size_t ars = bstride_r(a), acs = bstride_c(a), brs = bstride_r(b), bcs = bstride_c(b);
#pragma omp parallel for schedule(static) if (rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < rows; r++) {
        const float *ar = a->val + r * ars, *br = b->val + r * brs;
        float *y = t->val + r * cols;
        if (kind == EW_ADD)
            for (size_t c = 0; c < cols; c++)
                y[c] = ar[c * acs] + br[c * bcs];
        else if (kind == EW_SUB)
            for (size_t c = 0; c < cols; c++)
                y[c] = ar[c * acs] - br[c * bcs];
        else
            for (size_t c = 0; c < cols; c++)
                y[c] = ar[c * acs] * br[c * bcs];
    }
    return t;
}

v4r_ad_tensor *v4r_ad_add(v4r_ad_tape *t, v4r_ad_tensor *a, v4r_ad_tensor *b) { return elementwise(t, a, b, EW_ADD); }
v4r_ad_tensor *v4r_ad_sub(v4r_ad_tape *t, v4r_ad_tensor *a, v4r_ad_tensor *b) { return elementwise(t, a, b, EW_SUB); }
v4r_ad_tensor *v4r_ad_mul(v4r_ad_tape *t, v4r_ad_tensor *a, v4r_ad_tensor *b) { return elementwise(t, a, b, EW_MUL); }

static void scale_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    float *g = v4r_ad_grad(tape, t->in[0]), s = t->fa;
    size_t n = t->rows * t->cols;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t i = 0; i < n; i++)
        g[i] += s * t->grad[i];
}

v4r_ad_tensor *v4r_ad_scale(v4r_ad_tape *tape, v4r_ad_tensor *x, float s)
{
    v4r_ad_tensor *t = v4r_ad_node(tape, x->rows, x->cols, scale_backward, x, NULL, NULL);
    t->fa = s;
    size_t n = x->rows * x->cols;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t i = 0; i < n; i++)
        t->val[i] = s * x->val[i];
    return t;
}

/* ---- concatenation and slices ---- */

/* Copies the block of src (src_cols wide) at column c0 of each row into / out of dst. */
static void copy_cols(float *dst, size_t dst_cols, size_t dst_c0, const float *src, size_t src_cols,
                      size_t src_c0, size_t rows, size_t width, int accumulate)
{
#pragma omp parallel for schedule(static) if (rows * width > V4R_AD_PAR)
    for (size_t r = 0; r < rows; r++) {
        float *d = dst + r * dst_cols + dst_c0;
        const float *s = src + r * src_cols + src_c0;
        if (accumulate)
            for (size_t c = 0; c < width; c++)
                d[c] += s[c];
        else
            memcpy(d, s, width * sizeof(float));
    }
}

static void concat_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *a = t->in[0], *b = t->in[1];
    int axis = (int)t->ia;
    if (a->needs_grad) /* a is the top rows or the left columns */
        copy_cols(v4r_ad_grad(tape, a), a->cols, 0, t->grad, t->cols, 0, a->rows, a->cols, 1);
    if (b->needs_grad) {
        if (axis == 0)
            copy_cols(v4r_ad_grad(tape, b), b->cols, 0, t->grad + a->rows * t->cols, t->cols, 0, b->rows, b->cols, 1);
        else
            copy_cols(v4r_ad_grad(tape, b), b->cols, 0, t->grad, t->cols, a->cols, b->rows, b->cols, 1);
    }
}

v4r_ad_tensor *v4r_ad_concat(v4r_ad_tape *tape, v4r_ad_tensor *a, v4r_ad_tensor *b, int axis)
{
    v4r_ad_check(axis == 0 ? a->cols == b->cols : a->rows == b->rows, "concat", a, b);
    size_t rows = axis == 0 ? a->rows + b->rows : a->rows, cols = axis == 0 ? a->cols : a->cols + b->cols;
    v4r_ad_tensor *t = v4r_ad_node(tape, rows, cols, concat_backward, a, b, NULL);
    t->ia = (size_t)axis;
    if (axis == 0) {
        memcpy(t->val, a->val, a->rows * a->cols * sizeof(float));
        memcpy(t->val + a->rows * cols, b->val, b->rows * b->cols * sizeof(float));
    } else {
        copy_cols(t->val, cols, 0, a->val, a->cols, 0, rows, a->cols, 0);
        copy_cols(t->val, cols, a->cols, b->val, b->cols, 0, rows, b->cols, 0);
    }
    return t;
}

static void slice_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *x = t->in[0];
    float *g = v4r_ad_grad(tape, x);
    if (t->ia == 0)
        copy_cols(g + t->ib * x->cols, x->cols, 0, t->grad, t->cols, 0, t->rows, t->cols, 1);
    else
        copy_cols(g, x->cols, t->ib, t->grad, t->cols, 0, t->rows, t->cols, 1);
}

v4r_ad_tensor *v4r_ad_slice(v4r_ad_tape *tape, v4r_ad_tensor *x, int axis, size_t start, size_t len)
{
    v4r_ad_check(start + len <= (axis == 0 ? x->rows : x->cols), "slice", x, NULL);
    size_t rows = axis == 0 ? len : x->rows, cols = axis == 0 ? x->cols : len;
    v4r_ad_tensor *t = v4r_ad_node(tape, rows, cols, slice_backward, x, NULL, NULL);
    t->ia = (size_t)axis;
    t->ib = start;
    if (axis == 0)
        memcpy(t->val, x->val + start * x->cols, rows * cols * sizeof(float));
    else
        copy_cols(t->val, cols, 0, x->val, x->cols, start, rows, len, 0);
    return t;
}

/* The same values read as rows x cols (row-major order unchanged). */
static void reshape_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    float *g = v4r_ad_grad(tape, t->in[0]);
    for (size_t i = 0; i < t->rows * t->cols; i++)
        g[i] += t->grad[i];
}

v4r_ad_tensor *v4r_ad_reshape(v4r_ad_tape *tape, v4r_ad_tensor *x, size_t rows, size_t cols)
{
    v4r_ad_check(rows * cols == x->rows * x->cols, "reshape", x, NULL);
    v4r_ad_tensor *t = v4r_ad_node(tape, rows, cols, reshape_backward, x, NULL, NULL);
    memcpy(t->val, x->val, rows * cols * sizeof(float));
    return t;
}

/* ---- gathers and sums ---- */

static void gather_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *x = t->in[0];
    float *g = v4r_ad_grad(tape, x);
    const int32_t *idx = t->aux;
    size_t cols = t->cols;
    for (size_t i = 0; i < t->rows; i++) { /* in order: repeated rows add up the same way every time */
        float *d = g + (size_t)idx[i] * cols;
        const float *s = t->grad + i * cols;
        for (size_t c = 0; c < cols; c++)
            d[c] += s[c];
    }
}

v4r_ad_tensor *v4r_ad_gather(v4r_ad_tape *tape, v4r_ad_tensor *x, const int32_t *idx, size_t n)
{
    v4r_ad_tensor *t = v4r_ad_node(tape, n, x->cols, gather_backward, x, NULL, NULL);
    int32_t *copy = v4r_ad_alloc(tape, n * sizeof *copy);
    for (size_t i = 0; i < n; i++) {
        v4r_ad_check(idx[i] >= 0 && (size_t)idx[i] < x->rows, "gather (index out of range)", x, NULL);
        copy[i] = idx[i];
    }
    t->aux = copy;
#pragma omp parallel for schedule(static) if (n * x->cols > V4R_AD_PAR)
    for (size_t i = 0; i < n; i++)
        memcpy(t->val + i * x->cols, x->val + (size_t)copy[i] * x->cols, x->cols * sizeof(float));
    return t;
}

/* The sum of all entries: row sums, then fixed-block column sums (thread-count independent). */
static double total(const float *x, size_t rows, size_t cols)
{
    float *col = v4r_calloc(cols ? cols : 1, sizeof *col);
    v4r_ad_colsum_acc(x, rows, cols, col);
    double s = 0;
    for (size_t c = 0; c < cols; c++)
        s += col[c];
    free(col);
    return s;
}

static void sum_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *x = t->in[0];
    float *g = v4r_ad_grad(tape, x), d = t->grad[0] * t->fa;
    size_t n = x->rows * x->cols;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t i = 0; i < n; i++)
        g[i] += d;
}

static v4r_ad_tensor *sum_scaled(v4r_ad_tape *tape, v4r_ad_tensor *x, float s)
{
    v4r_ad_tensor *t = v4r_ad_node(tape, 1, 1, sum_backward, x, NULL, NULL);
    t->fa = s;
    t->val[0] = (float)(total(x->val, x->rows, x->cols) * s);
    return t;
}

v4r_ad_tensor *v4r_ad_sum(v4r_ad_tape *tape, v4r_ad_tensor *x) { return sum_scaled(tape, x, 1.0f); }

v4r_ad_tensor *v4r_ad_mean(v4r_ad_tape *tape, v4r_ad_tensor *x)
{
    size_t n = x->rows * x->cols;
    return sum_scaled(tape, x, n ? 1.0f / (float)n : 0.0f);
}

static void rowsum_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *x = t->in[0];
    float *g = v4r_ad_grad(tape, x);
    size_t cols = x->cols;
#pragma omp parallel for schedule(static) if (x->rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < x->rows; r++)
        for (size_t c = 0; c < cols; c++)
            g[r * cols + c] += t->grad[r];
}

v4r_ad_tensor *v4r_ad_rowsum(v4r_ad_tape *tape, v4r_ad_tensor *x)
{
    v4r_ad_tensor *t = v4r_ad_node(tape, x->rows, 1, rowsum_backward, x, NULL, NULL);
    size_t cols = x->cols;
#pragma omp parallel for schedule(static) if (x->rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < x->rows; r++) {
        float s = 0;
        for (size_t c = 0; c < cols; c++)
            s += x->val[r * cols + c];
        t->val[r] = s;
    }
    return t;
}

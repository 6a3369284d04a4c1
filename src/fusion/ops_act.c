/* Autodiff operations row by row or entry by entry: ReLU, tanh, sigmoid, log-sigmoid, softmax,
 * log-softmax cross-entropy, LayerNorm and L2 normalization. */
#include "ad_internal.h"

#include <math.h>
#include <stdlib.h>

/* ---- entry by entry ---- */

static void relu_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    const float *x = t->in[0]->val;
    float *g = v4r_ad_grad(tape, t->in[0]);
    size_t n = t->rows * t->cols;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t i = 0; i < n; i++)
        g[i] += x[i] > 0 ? t->grad[i] : 0.0f;
}

v4r_ad_tensor *v4r_ad_relu(v4r_ad_tape *tape, v4r_ad_tensor *x)
{
    v4r_ad_tensor *t = v4r_ad_node(tape, x->rows, x->cols, relu_backward, x, NULL, NULL);
    size_t n = x->rows * x->cols;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t i = 0; i < n; i++)
        t->val[i] = x->val[i] < 0 ? 0.0f : x->val[i]; /* NaN stays NaN */
    return t;
}

/* d tanh = 1 - y^2 */
static void tanh_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    float *g = v4r_ad_grad(tape, t->in[0]);
    size_t n = t->rows * t->cols;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t i = 0; i < n; i++)
        g[i] += t->grad[i] * (1.0f - t->val[i] * t->val[i]);
}

v4r_ad_tensor *v4r_ad_tanh(v4r_ad_tape *tape, v4r_ad_tensor *x)
{
    v4r_ad_tensor *t = v4r_ad_node(tape, x->rows, x->cols, tanh_backward, x, NULL, NULL);
    v4r_ad_tanh_n(x->val, t->val, x->rows * x->cols);
    return t;
}

/* d sigmoid = y (1 - y) */
static void sigmoid_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    float *g = v4r_ad_grad(tape, t->in[0]);
    size_t n = t->rows * t->cols;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t i = 0; i < n; i++)
        g[i] += t->grad[i] * t->val[i] * (1.0f - t->val[i]);
}

v4r_ad_tensor *v4r_ad_sigmoid(v4r_ad_tape *tape, v4r_ad_tensor *x)
{
    v4r_ad_tensor *t = v4r_ad_node(tape, x->rows, x->cols, sigmoid_backward, x, NULL, NULL);
    v4r_ad_sigmoid_n(x->val, t->val, x->rows * x->cols);
    return t;
}

/* log sigmoid x = min(x, 0) - log1p(exp(-|x|)); its derivative is sigmoid(-x). */
static void log_sigmoid_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    const float *x = t->in[0]->val;
    float *g = v4r_ad_grad(tape, t->in[0]);
    size_t n = t->rows * t->cols;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t i = 0; i < n; i++)
        g[i] += t->grad[i] / (1.0f + expf(x[i]));
}

v4r_ad_tensor *v4r_ad_log_sigmoid(v4r_ad_tape *tape, v4r_ad_tensor *x)
{
    v4r_ad_tensor *t = v4r_ad_node(tape, x->rows, x->cols, log_sigmoid_backward, x, NULL, NULL);
    size_t n = x->rows * x->cols;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t i = 0; i < n; i++) {
        float v = x->val[i];
        t->val[i] = (v < 0 ? v : 0.0f) - log1pf(expf(-fabsf(v)));
    }
    return t;
}

/* ---- row by row ---- */

/* y = exp(x - max) / sum, in place over one row; returns log(sum) + max (the row's logsumexp). */
static float softmax_row(const float *x, float *y, size_t n)
{
    float mx = -INFINITY;
    for (size_t c = 0; c < n; c++)
        mx = x[c] > mx || isnan(x[c]) ? x[c] : mx;
    for (size_t c = 0; c < n; c++)
        y[c] = x[c] - mx;
    v4r_ad_exp_serial(y, y, n);
    float s = 0;
    for (size_t c = 0; c < n; c++)
        s += y[c];
    for (size_t c = 0; c < n; c++)
        y[c] /= s;
    return logf(s) + mx;
}

/* dx = y (dy - sum(dy y)) */
static void softmax_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    float *g = v4r_ad_grad(tape, t->in[0]);
    size_t cols = t->cols;
#pragma omp parallel for schedule(static) if (t->rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < t->rows; r++) {
        const float *y = t->val + r * cols, *dy = t->grad + r * cols;
        float dot = 0;
        for (size_t c = 0; c < cols; c++)
            dot += dy[c] * y[c];
        for (size_t c = 0; c < cols; c++)
            g[r * cols + c] += y[c] * (dy[c] - dot);
    }
}

v4r_ad_tensor *v4r_ad_softmax(v4r_ad_tape *tape, v4r_ad_tensor *x)
{
    v4r_ad_tensor *t = v4r_ad_node(tape, x->rows, x->cols, softmax_backward, x, NULL, NULL);
    size_t cols = x->cols;
#pragma omp parallel for schedule(static) if (x->rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < x->rows; r++)
        softmax_row(x->val + r * cols, t->val + r * cols, cols);
    return t;
}

/* saved: the softmax of every row. dx = (p - onehot(target)) g / rows */
static void xent_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *x = t->in[0];
    float *g = v4r_ad_grad(tape, x), d = t->grad[0] / (float)x->rows;
    const int32_t *target = t->aux;
    size_t cols = x->cols;
#pragma omp parallel for schedule(static) if (x->rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < x->rows; r++) {
        const float *p = t->saved + r * cols;
        for (size_t c = 0; c < cols; c++)
            g[r * cols + c] += d * (p[c] - (c == (size_t)target[r] ? 1.0f : 0.0f));
    }
}

v4r_ad_tensor *v4r_ad_xent(v4r_ad_tape *tape, v4r_ad_tensor *x, const int32_t *target)
{
    v4r_ad_tensor *t = v4r_ad_node(tape, 1, 1, xent_backward, x, NULL, NULL);
    size_t rows = x->rows, cols = x->cols;
    int32_t *tg = v4r_ad_alloc(tape, rows * sizeof *tg);
    for (size_t r = 0; r < rows; r++) {
        v4r_ad_check(target[r] >= 0 && (size_t)target[r] < cols, "xent (target out of range)", x, NULL);
        tg[r] = target[r];
    }
    t->aux = tg;
    t->saved = v4r_ad_alloc(tape, rows * cols * sizeof(float));
    float *loss = v4r_ad_alloc(tape, rows * sizeof(float));
#pragma omp parallel for schedule(static) if (rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < rows; r++)
        loss[r] = softmax_row(x->val + r * cols, t->saved + r * cols, cols) - x->val[r * cols + (size_t)tg[r]];
    double s = 0;
    for (size_t r = 0; r < rows; r++)
        s += loss[r];
    t->val[0] = rows ? (float)(s / (double)rows) : 0.0f;
    return t;
}

/* saved: mean and 1/std of each row. dx = rstd (dxh - mean(dxh) - xh mean(dxh xh)), dxh = dy gamma */
static void layernorm_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *x = t->in[0], *gamma = t->in[1], *beta = t->in[2];
    size_t rows = t->rows, cols = t->cols;
    float *dxhat_xhat = v4r_malloc((rows * cols + 1) * sizeof(float)); /* dy * xhat, for dgamma */
    float *gx = x->needs_grad ? v4r_ad_grad(tape, x) : NULL;
#pragma omp parallel for schedule(static) if (rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x->val + r * cols, *dy = t->grad + r * cols;
        float mu = t->saved[2 * r], rstd = t->saved[2 * r + 1], m1 = 0, m2 = 0;
        for (size_t c = 0; c < cols; c++) {
            float xh = (xr[c] - mu) * rstd, dxh = dy[c] * gamma->val[c];
            dxhat_xhat[r * cols + c] = dy[c] * xh;
            m1 += dxh;
            m2 += dxh * xh;
        }
        m1 /= (float)cols;
        m2 /= (float)cols;
        for (size_t c = 0; gx && c < cols; c++) {
            float xh = (xr[c] - mu) * rstd, dxh = dy[c] * gamma->val[c];
            gx[r * cols + c] += rstd * (dxh - m1 - xh * m2);
        }
    }
    if (gamma->needs_grad)
        v4r_ad_colsum_acc(dxhat_xhat, rows, cols, v4r_ad_grad(tape, gamma));
    if (beta->needs_grad)
        v4r_ad_colsum_acc(t->grad, rows, cols, v4r_ad_grad(tape, beta));
    free(dxhat_xhat);
}

v4r_ad_tensor *v4r_ad_layernorm(v4r_ad_tape *tape, v4r_ad_tensor *x, v4r_ad_tensor *gamma, v4r_ad_tensor *beta,
                                float eps)
{
    size_t rows = x->rows, cols = x->cols;
    v4r_ad_check(gamma->rows * gamma->cols == cols && beta->rows * beta->cols == cols, "layernorm", x, gamma);
    v4r_ad_tensor *t = v4r_ad_node(tape, rows, cols, layernorm_backward, x, gamma, beta);
    t->saved = v4r_ad_alloc(tape, 2 * rows * sizeof(float));
#pragma omp parallel for schedule(static) if (rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x->val + r * cols;
        float mu = 0, var = 0;
        for (size_t c = 0; c < cols; c++)
            mu += xr[c];
        mu /= (float)cols;
        for (size_t c = 0; c < cols; c++)
            var += (xr[c] - mu) * (xr[c] - mu);
        float rstd = 1.0f / sqrtf(var / (float)cols + eps);
        t->saved[2 * r] = mu;
        t->saved[2 * r + 1] = rstd;
        for (size_t c = 0; c < cols; c++)
            t->val[r * cols + c] = (xr[c] - mu) * rstd * gamma->val[c] + beta->val[c];
    }
    return t;
}

/* saved: max(|row|, eps). dx = (dy - y (dy . y)) / n when |row| > eps, else dy / eps */
static void l2norm_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *x = t->in[0];
    float *g = v4r_ad_grad(tape, x);
    size_t cols = t->cols;
#pragma omp parallel for schedule(static) if (t->rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < t->rows; r++) {
        const float *y = t->val + r * cols, *dy = t->grad + r * cols;
        float n = t->saved[r], dot = 0;
        if (n > t->fa)
            for (size_t c = 0; c < cols; c++)
                dot += dy[c] * y[c];
        for (size_t c = 0; c < cols; c++)
            g[r * cols + c] += (dy[c] - y[c] * dot) / n;
    }
}

v4r_ad_tensor *v4r_ad_l2norm(v4r_ad_tape *tape, v4r_ad_tensor *x, float eps)
{
    size_t rows = x->rows, cols = x->cols;
    v4r_ad_tensor *t = v4r_ad_node(tape, rows, cols, l2norm_backward, x, NULL, NULL);
    t->fa = eps;
    t->saved = v4r_ad_alloc(tape, rows * sizeof(float));
#pragma omp parallel for schedule(static) if (rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x->val + r * cols;
        float ss = 0;
        for (size_t c = 0; c < cols; c++)
            ss += xr[c] * xr[c];
        float n = sqrtf(ss);
        n = n > eps || isnan(n) ? n : eps;
        t->saved[r] = n;
        for (size_t c = 0; c < cols; c++)
            t->val[r * cols + c] = xr[c] / n;
    }
    return t;
}

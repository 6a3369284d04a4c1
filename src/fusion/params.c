/* Named parameters: creation, PyTorch's initializers, gradient norms and clipping, snapshots for
 * the best checkpoint. */
#include "ad_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void v4r_params_init(v4r_params *ps) { memset(ps, 0, sizeof *ps); }

void v4r_params_free(v4r_params *ps)
{
    for (size_t i = 0; i < ps->n; i++) {
        v4r_param *p = ps->p[i];
        free(p->name);
        free(p->t.val);
        free(p->t.grad);
        free(p->m);
        free(p->v);
        free(p);
    }
    free(ps->p);
    memset(ps, 0, sizeof *ps);
}

v4r_ad_tensor *v4r_params_add(v4r_params *ps, const char *name, int ndim, const size_t *shape)
{
    v4r_param *p = v4r_calloc(1, sizeof *p);
    p->name = v4r_strdup(name);
    p->ndim = ndim;
    size_t rows = ndim >= 2 ? shape[0] : 1, cols = 1;
    for (int d = ndim >= 2 ? 1 : 0; d < ndim; d++)
        cols *= shape[d];
    for (int d = 0; d < ndim && d < 3; d++)
        p->shape[d] = shape[d];
    p->t.rows = rows;
    p->t.cols = cols;
    p->t.val = v4r_calloc(rows * cols, sizeof(float));
    p->t.grad = v4r_calloc(rows * cols, sizeof(float));
    p->t.needs_grad = 1;
    v4r_grow((void **)&ps->p, &ps->cap, ps->n + 1, sizeof *ps->p);
    ps->p[ps->n++] = p;
    return &p->t;
}

v4r_param *v4r_params_find(const v4r_params *ps, const char *name)
{
    for (size_t i = 0; i < ps->n; i++)
        if (!strcmp(ps->p[i]->name, name))
            return ps->p[i];
    return NULL;
}

static size_t numel(const v4r_param *p) { return p->t.rows * p->t.cols; }

size_t v4r_params_count(const v4r_params *ps)
{
    size_t n = 0;
    for (size_t i = 0; i < ps->n; i++)
        n += numel(ps->p[i]);
    return n;
}

void v4r_params_zero_grad(v4r_params *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        memset(ps->p[i]->t.grad, 0, numel(ps->p[i]) * sizeof(float));
}

/* Sum of squares in double over fixed blocks (the same bits whatever the thread count). */
static double sum_squares(const float *x, size_t n)
{
    enum { BLOCK = 1 << 14 };
    size_t nb = (n + BLOCK - 1) / BLOCK;
    double *part = v4r_calloc(nb ? nb : 1, sizeof *part), s = 0;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t b = 0; b < nb; b++) {
        size_t i1 = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
        double acc = 0;
        for (size_t i = b * BLOCK; i < i1; i++)
            acc += (double)x[i] * x[i];
        part[b] = acc;
    }
    for (size_t b = 0; b < nb; b++)
        s += part[b];
    free(part);
    return s;
}

double v4r_params_grad_norm(const v4r_params *ps)
{
    double s = 0;
    for (size_t i = 0; i < ps->n; i++)
        s += sum_squares(ps->p[i]->t.grad, numel(ps->p[i]));
    return sqrt(s);
}

double v4r_params_clip(v4r_params *ps, double max_norm)
{
    double norm = v4r_params_grad_norm(ps);
    double coef = max_norm / (norm + 1e-6);
    if (!(coef < 1.0))
        return norm; /* also when the norm is NaN: the caller sees it and stops */
    for (size_t i = 0; i < ps->n; i++) {
        float *g = ps->p[i]->t.grad, c = (float)coef;
        size_t n = numel(ps->p[i]);
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
        for (size_t k = 0; k < n; k++)
            g[k] *= c;
    }
    return norm;
}

void v4r_params_snapshot(const v4r_params *ps, float *buf)
{
    for (size_t i = 0; i < ps->n; i++) {
        memcpy(buf, ps->p[i]->t.val, numel(ps->p[i]) * sizeof(float));
        buf += numel(ps->p[i]);
    }
}

void v4r_params_restore(v4r_params *ps, const float *buf)
{
    for (size_t i = 0; i < ps->n; i++) {
        memcpy(ps->p[i]->t.val, buf, numel(ps->p[i]) * sizeof(float));
        buf += numel(ps->p[i]);
    }
}

int v4r_params_finite(const v4r_params *ps)
{
    for (size_t i = 0; i < ps->n; i++) {
        const float *x = ps->p[i]->t.val;
        for (size_t k = 0; k < numel(ps->p[i]); k++)
            if (!isfinite(x[k]))
                return 0;
    }
    return 1;
}

/* ---- initializers ---- */

void v4r_init_uniform(v4r_ad_tensor *t, float bound, v4r_rng *rng)
{
    for (size_t i = 0; i < t->rows * t->cols; i++)
        t->val[i] = (float)((2.0 * v4r_rng_uniform(rng) - 1.0) * bound);
}

void v4r_init_normal(v4r_ad_tensor *t, float std, v4r_rng *rng)
{
    for (size_t i = 0; i < t->rows * t->cols; i++)
        t->val[i] = (float)(v4r_rng_normal(rng) * std);
}

void v4r_init_linear(v4r_ad_tensor *w, v4r_ad_tensor *bias, v4r_rng *rng)
{
    float bound = 1.0f / sqrtf((float)w->cols);
    v4r_init_uniform(w, bound, rng);
    if (bias)
        v4r_init_uniform(bias, bound, rng);
}

void v4r_init_xavier(v4r_ad_tensor *w, v4r_rng *rng)
{
    v4r_init_uniform(w, sqrtf(6.0f / (float)(w->rows + w->cols)), rng);
}

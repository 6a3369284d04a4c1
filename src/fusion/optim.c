/* Adam (torch.optim.Adam's update, with L2 or decoupled weight decay), the learning-rate
 * schedules and ReduceLROnPlateau. */
#include "ad_internal.h"
#include "../kernels/vmath_avx2.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void v4r_adam_defaults(v4r_adam *o)
{
    memset(o, 0, sizeof *o);
    o->lr = 1e-3;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
}

typedef struct {
    float b1, b2, c1, c2, step, rb2, eps, shrink, l2;
} adam_consts;

/* Entries [i0, i1) of one parameter; the AVX2 lanes compute exactly what the scalar tail does. */
static void adam_range(float *x, const float *g, float *m, float *v, size_t i0, size_t i1, const adam_consts *k)
{
    size_t i = i0;
#ifdef V4R_HAVE_AVX2
    const __m256 b1 = _mm256_set1_ps(k->b1), b2 = _mm256_set1_ps(k->b2), c1 = _mm256_set1_ps(k->c1);
    const __m256 c2 = _mm256_set1_ps(k->c2), step = _mm256_set1_ps(k->step), rb2 = _mm256_set1_ps(k->rb2);
    const __m256 eps = _mm256_set1_ps(k->eps), shrink = _mm256_set1_ps(k->shrink), l2 = _mm256_set1_ps(k->l2);
    for (; i + 8 <= i1; i += 8) {
        __m256 xi = _mm256_loadu_ps(x + i);
        __m256 gi = _mm256_add_ps(_mm256_loadu_ps(g + i), _mm256_mul_ps(l2, xi));
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(c1, gi));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(c2, gi), gi));
        __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), rb2), eps);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(x + i, _mm256_sub_ps(_mm256_mul_ps(xi, shrink), _mm256_div_ps(_mm256_mul_ps(step, mi), den)));
    }
#endif
    for (; i < i1; i++) {
        float gi = g[i] + k->l2 * x[i];
        m[i] = k->b1 * m[i] + k->c1 * gi;
        v[i] = k->b2 * v[i] + k->c2 * gi * gi;
        x[i] = x[i] * k->shrink - k->step * m[i] / (sqrtf(v[i]) * k->rb2 + k->eps);
    }
}

static void adam_param(v4r_param *p, const v4r_adam *o, double lr, double bias1, double bias2)
{
    enum { BLOCK = 1 << 14 };
    size_t n = p->t.rows * p->t.cols, nb = (n + BLOCK - 1) / BLOCK;
    if (!p->m) {
        p->m = v4r_calloc(n, sizeof *p->m);
        p->v = v4r_calloc(n, sizeof *p->v);
    }
    adam_consts k = {(float)o->beta1, (float)o->beta2, (float)(1.0 - o->beta1), (float)(1.0 - o->beta2),
                     (float)(lr / bias1), (float)(1.0 / sqrt(bias2)), (float)o->eps,
                     o->decoupled ? (float)(1.0 - lr * o->weight_decay) : 1.0f,
                     o->decoupled ? 0.0f : (float)o->weight_decay};
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t b = 0; b < nb; b++)
        adam_range(p->t.val, p->t.grad, p->m, p->v, b * BLOCK, (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n, &k);
}

void v4r_adam_step(v4r_params *ps, const v4r_adam *o, double lr)
{
    ps->steps++;
    double bias1 = 1.0 - pow(o->beta1, (double)ps->steps), bias2 = 1.0 - pow(o->beta2, (double)ps->steps);
    for (size_t i = 0; i < ps->n; i++)
        adam_param(ps->p[i], o, lr, bias1, bias2);
}

/* ---- learning-rate schedules ---- */

static int parse_factor(const char *s, double *out)
{
    return v4r_parse_f64(s, out) == 0 && isfinite(*out) && *out > 0 ? 0 : -1;
}

/* plateau[:G[:N]]: torch's defaults factor 0.1 and patience 10 for what is left out. */
static int parse_plateau(const char *factor, const char *patience, v4r_lr_schedule *s)
{
    int64_t n = 10;
    s->gamma = 0.1;
    if (factor && (parse_factor(factor, &s->gamma) || !(s->gamma < 1)))
        return -1;
    if (patience && (v4r_parse_i64(patience, &n) || n < 0))
        return -1;
    s->step = (size_t)n;
    return 0;
}

int v4r_lr_parse(const char *spec, size_t epochs, v4r_lr_schedule *s, v4r_err *err)
{
    memset(s, 0, sizeof *s);
    s->epochs = epochs;
    char *copy = v4r_strdup(spec), *arg = strchr(copy, ':'), *arg2 = NULL;
    if (arg)
        *arg++ = 0;
    if (arg && (arg2 = strchr(arg, ':')))
        *arg2++ = 0;
    int rc = V4R_OK;
    int64_t n = 0;
    if (!strcmp(copy, "constant") && !arg)
        s->kind = V4R_LR_CONSTANT;
    else if (!strcmp(copy, "exp") && arg && !arg2 && !parse_factor(arg, &s->gamma))
        s->kind = V4R_LR_EXP;
    else if (!strcmp(copy, "step") && arg && arg2 && !v4r_parse_i64(arg, &n) && n > 0 && !parse_factor(arg2, &s->gamma))
        s->kind = V4R_LR_STEP, s->step = (size_t)n;
    else if (!strcmp(copy, "plateau") && parse_plateau(arg, arg2, s) == 0)
        s->kind = V4R_LR_PLATEAU;
    else if (!strcmp(copy, "cosine") && (!arg || (!arg2 && !v4r_parse_f64(arg, &s->min_ratio) && s->min_ratio >= 0 &&
                                                  s->min_ratio <= 1)))
        s->kind = V4R_LR_COSINE;
    else
        rc = v4r_fail(err, V4R_EUSAGE,
                      "learning-rate schedule '%s': expected constant, exp:G, step:N:G, cosine[:MIN] or "
                      "plateau[:G[:N]] (G > 0, plateau G < 1, N >= 1, plateau N >= 0, 0 <= MIN <= 1)",
                      spec);
    free(copy);
    return rc;
}

double v4r_lr_at(const v4r_lr_schedule *s, double base, size_t epoch)
{
    switch (s->kind) {
    case V4R_LR_EXP: return base * pow(s->gamma, (double)epoch);
    case V4R_LR_STEP: return base * pow(s->gamma, (double)(epoch / s->step));
    case V4R_LR_COSINE: {
        double frac = s->epochs > 1 ? (double)epoch / (double)(s->epochs - 1) : 0.0;
        double floor = base * s->min_ratio;
        return floor + (base - floor) * 0.5 * (1.0 + cos(M_PI * frac));
    }
    default: return base;
    }
}

void v4r_lr_format(const v4r_lr_schedule *s, char *buf, size_t size)
{
    switch (s->kind) {
    case V4R_LR_EXP: snprintf(buf, size, "exp:%.9g", s->gamma); break;
    case V4R_LR_STEP: snprintf(buf, size, "step:%zu:%.9g", s->step, s->gamma); break;
    case V4R_LR_COSINE: snprintf(buf, size, "cosine:%.9g", s->min_ratio); break;
    case V4R_LR_PLATEAU: snprintf(buf, size, "plateau:%.9g:%zu", s->gamma, s->step); break;
    default: snprintf(buf, size, "constant");
    }
}

/* ---- ReduceLROnPlateau ---- */

void v4r_plateau_init(v4r_plateau *p, const v4r_lr_schedule *s, double base)
{
    memset(p, 0, sizeof *p);
    p->factor = s->gamma;
    p->patience = s->step;
    p->threshold = 1e-4;
    p->min_lr = 0;
    p->eps = 1e-8;
    p->cooldown = 0;
    p->lr = base;
    p->best = INFINITY;
}

/* ReduceLROnPlateau.step with mode "min", threshold_mode "rel", in its order. */
double v4r_plateau_step(v4r_plateau *p, double loss)
{
    if (loss < p->best * (1.0 - p->threshold)) {
        p->best = loss;
        p->bad = 0;
    } else {
        p->bad++;
    }
    if (p->cooldown_left > 0) {
        p->cooldown_left--;
        p->bad = 0;
    }
    if (p->bad > p->patience) {
        double reduced = fmax(p->lr * p->factor, p->min_lr);
        if (p->lr - reduced > p->eps)
            p->lr = reduced;
        p->cooldown_left = p->cooldown;
        p->bad = 0;
    }
    return p->lr;
}

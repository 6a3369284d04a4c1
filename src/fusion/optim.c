/* Adam (torch.optim.Adam's update, with L2 or decoupled weight decay) and the learning-rate
 * schedules. */
#include "ad_internal.h"

#include <math.h>
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

static void adam_param(v4r_param *p, const v4r_adam *o, double lr, double bias1, double bias2)
{
    size_t n = p->t.rows * p->t.cols;
    if (!p->m) {
        p->m = v4r_calloc(n, sizeof *p->m);
        p->v = v4r_calloc(n, sizeof *p->v);
    }
    float b1 = (float)o->beta1, b2 = (float)o->beta2, c1 = (float)(1.0 - o->beta1), c2 = (float)(1.0 - o->beta2);
    float step = (float)(lr / bias1), rb2 = (float)(1.0 / sqrt(bias2)), eps = (float)o->eps;
    float shrink = o->decoupled ? (float)(1.0 - lr * o->weight_decay) : 1.0f;
    float l2 = o->decoupled ? 0.0f : (float)o->weight_decay;
    float *x = p->t.val, *g = p->t.grad, *m = p->m, *v = p->v;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + l2 * x[i];
        m[i] = b1 * m[i] + c1 * gi;
        v[i] = b2 * v[i] + c2 * gi * gi;
        x[i] = x[i] * shrink - step * m[i] / (sqrtf(v[i]) * rb2 + eps);
    }
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
    else if (!strcmp(copy, "cosine") && (!arg || (!arg2 && !v4r_parse_f64(arg, &s->min_ratio) && s->min_ratio >= 0 &&
                                                  s->min_ratio <= 1)))
        s->kind = V4R_LR_COSINE;
    else
        rc = v4r_fail(err, V4R_EUSAGE,
                      "learning-rate schedule '%s': expected constant, exp:G, step:N:G or cosine[:MIN] (G > 0, N >= 1, "
                      "0 <= MIN <= 1)",
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

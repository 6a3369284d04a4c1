/* Attention and gating fusion: parameters, the forward pass, the InfoNCE loss of a batch, the
 * released script's contrastive loss, and the fused vectors of a whole catalog. */
#include "ad_internal.h"

#include <stdlib.h>
#include <string.h>

static v4r_ad_tensor *add_linear(v4r_params *ps, const char *name, size_t out, size_t in, v4r_ad_tensor **bias,
                                 v4r_rng *rng)
{
    char key[64];
    size_t w_shape[2] = {out, in}, b_shape[1] = {out};
    snprintf(key, sizeof key, "%s.weight", name);
    v4r_ad_tensor *w = v4r_params_add(ps, key, 2, w_shape);
    snprintf(key, sizeof key, "%s.bias", name);
    *bias = v4r_params_add(ps, key, 1, b_shape);
    v4r_init_linear(w, *bias, rng);
    return w;
}

void v4r_fusion_model_init(v4r_fusion_model *m, int kind, size_t dim_text, size_t dim_vision, size_t hidden,
                           size_t dim, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->dim_text = dim_text;
    m->dim_vision = dim_vision;
    m->hidden = hidden;
    m->dim = dim;
    v4r_params_init(&m->params);
    v4r_rng rng;
    v4r_rng_seed(&rng, seed);
    const char *mlp = kind == V4R_MODEL_ATTENTION ? "attention" : "gate";
    char l1[32], l2[32];
    snprintf(l1, sizeof l1, "%s.0", mlp);
    snprintf(l2, sizeof l2, "%s.2", mlp);
    m->text_w = add_linear(&m->params, "text_proj", hidden, dim_text, &m->text_b, &rng);
    m->vision_w = add_linear(&m->params, "vision_proj", hidden, dim_vision, &m->vision_b, &rng);
    m->mlp1_w = add_linear(&m->params, l1, hidden, 2 * hidden, &m->mlp1_b, &rng);
    m->mlp2_w = add_linear(&m->params, l2, kind == V4R_MODEL_ATTENTION ? 2 : hidden, hidden, &m->mlp2_b, &rng);
    m->out_w = add_linear(&m->params, "output.0", dim, hidden, &m->out_b, &rng);
    size_t ln_shape[1] = {dim};
    m->ln_g = v4r_params_add(&m->params, "output.1.weight", 1, ln_shape);
    m->ln_b = v4r_params_add(&m->params, "output.1.bias", 1, ln_shape);
    for (size_t i = 0; i < dim; i++)
        m->ln_g->val[i] = 1.0f;
}

void v4r_fusion_model_free(v4r_fusion_model *m)
{
    v4r_params_free(&m->params);
    memset(m, 0, sizeof *m);
}

v4r_ad_tensor *v4r_fusion_forward(v4r_ad_tape *t, const v4r_fusion_model *m, v4r_ad_tensor *text,
                                  v4r_ad_tensor *vision)
{
    v4r_ad_tensor *pt = v4r_ad_linear(t, text, m->text_w, m->text_b);
    v4r_ad_tensor *pv = v4r_ad_linear(t, vision, m->vision_w, m->vision_b);
    v4r_ad_tensor *h = v4r_ad_relu(t, v4r_ad_linear(t, v4r_ad_concat(t, pt, pv, 1), m->mlp1_w, m->mlp1_b));
    v4r_ad_tensor *logits = v4r_ad_linear(t, h, m->mlp2_w, m->mlp2_b), *fused;
    if (m->kind == V4R_MODEL_ATTENTION) {
        v4r_ad_tensor *w = v4r_ad_softmax(t, logits);
        fused = v4r_ad_add(t, v4r_ad_mul(t, v4r_ad_slice(t, w, 1, 0, 1), pt), v4r_ad_mul(t, v4r_ad_slice(t, w, 1, 1, 1), pv));
    } else { /* g t + (1 - g) v = v + g (t - v) */
        v4r_ad_tensor *g = v4r_ad_sigmoid(t, logits);
        fused = v4r_ad_add(t, pv, v4r_ad_mul(t, g, v4r_ad_sub(t, pt, pv)));
    }
    v4r_ad_tensor *y = v4r_ad_linear(t, fused, m->out_w, m->out_b);
    return v4r_ad_relu(t, v4r_ad_layernorm(t, y, m->ln_g, m->ln_b, 1e-5f));
}

v4r_ad_tensor *v4r_infonce(v4r_ad_tape *t, v4r_ad_tensor *anchors, v4r_ad_tensor *cands, float temperature)
{
    size_t n = anchors->rows;
    v4r_ad_tensor *a = v4r_ad_l2norm(t, anchors, 1e-12f), *c = v4r_ad_l2norm(t, cands, 1e-12f);
    v4r_ad_tensor *logits = v4r_ad_scale(t, v4r_ad_matmul(t, a, c, 0, 1), 1.0f / temperature);
    int32_t *target = v4r_ad_alloc(t, n * sizeof *target);
    for (size_t i = 0; i < n; i++)
        target[i] = (int32_t)i;
    return v4r_ad_xent(t, logits, target);
}

v4r_ad_tensor *v4r_fusion_batch_loss(v4r_ad_tape *t, const v4r_fusion_model *m, v4r_ad_tensor *text,
                                     v4r_ad_tensor *vision, const int32_t *anchor, const int32_t *positive, size_t n,
                                     const int32_t *negative, size_t n_neg, float temperature)
{
    /* one forward pass over anchors, positives and negatives together */
    size_t rows = 2 * n + n_neg;
    int32_t *idx = v4r_ad_alloc(t, rows * sizeof *idx);
    memcpy(idx, anchor, n * sizeof *idx);
    memcpy(idx + n, positive, n * sizeof *idx);
    if (n_neg)
        memcpy(idx + rows - n_neg, negative, n_neg * sizeof *idx);
    v4r_ad_tensor *z = v4r_fusion_forward(t, m, v4r_ad_gather(t, text, idx, rows), v4r_ad_gather(t, vision, idx, rows));
    v4r_ad_tensor *anchors = v4r_ad_slice(t, z, 0, 0, n);
    return v4r_infonce(t, anchors, v4r_ad_slice(t, z, 0, n, rows - n), temperature);
}

v4r_ad_tensor *v4r_released_loss(v4r_ad_tape *t, v4r_ad_tensor *anchors, v4r_ad_tensor *negatives, size_t k,
                                 float temperature)
{
    size_t n = anchors->rows;
    v4r_ad_check(negatives->rows == n * k && k > 0, "released loss (k negatives an anchor)", anchors, negatives);
    v4r_ad_tensor *a = v4r_ad_l2norm(t, anchors, 1e-12f), *b = v4r_ad_l2norm(t, negatives, 1e-12f);
    float inv_t = 1.0f / temperature;
    /* the positive logit: the normalized anchor with itself, as the released code computes it */
    v4r_ad_tensor *pos = v4r_ad_scale(t, v4r_ad_rowsum(t, v4r_ad_mul(t, a, a)), inv_t);
    int32_t *rep = v4r_ad_alloc(t, n * k * sizeof *rep);
    for (size_t i = 0; i < n * k; i++)
        rep[i] = (int32_t)(i / k);
    v4r_ad_tensor *dots = v4r_ad_rowsum(t, v4r_ad_mul(t, v4r_ad_gather(t, a, rep, n * k), b));
    v4r_ad_tensor *neg = v4r_ad_scale(t, v4r_ad_reshape(t, dots, n, k), inv_t);
    int32_t *target = v4r_ad_alloc(t, n * sizeof *target);
    memset(target, 0, n * sizeof *target);
    return v4r_ad_xent(t, v4r_ad_concat(t, pos, neg, 1), target);
}

v4r_ad_tensor *v4r_fusion_released_loss(v4r_ad_tape *t, const v4r_fusion_model *m, v4r_ad_tensor *text,
                                        v4r_ad_tensor *vision, const int32_t *item, size_t n,
                                        const int32_t *negative, size_t k, float temperature)
{
    size_t rows = n + n * k; /* one forward pass: the items, then their negatives */
    int32_t *idx = v4r_ad_alloc(t, rows * sizeof *idx);
    memcpy(idx, item, n * sizeof *idx);
    memcpy(idx + n, negative, n * k * sizeof *idx);
    v4r_ad_tensor *z = v4r_fusion_forward(t, m, v4r_ad_gather(t, text, idx, rows), v4r_ad_gather(t, vision, idx, rows));
    return v4r_released_loss(t, v4r_ad_slice(t, z, 0, 0, n), v4r_ad_slice(t, z, 0, n, n * k), k, temperature);
}

void v4r_fusion_apply(const v4r_fusion_model *m, const float *text, const float *vision, size_t n, float *out)
{
    enum { CHUNK = 4096 };
    v4r_ad_tape *t = v4r_ad_tape_new();
    for (size_t r0 = 0; r0 < n; r0 += CHUNK) {
        size_t rows = n - r0 < CHUNK ? n - r0 : CHUNK;
        v4r_ad_tape_reset(t);
        v4r_ad_tensor *tx = v4r_ad_const(t, rows, m->dim_text, text + r0 * m->dim_text);
        v4r_ad_tensor *vx = v4r_ad_const(t, rows, m->dim_vision, vision + r0 * m->dim_vision);
        v4r_ad_tensor *y = v4r_fusion_forward(t, m, tx, vx);
        memcpy(out + r0 * m->dim, y->val, rows * m->dim * sizeof(float));
    }
    v4r_ad_tape_free(t);
}

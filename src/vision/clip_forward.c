/* The CLIP vision transformer's forward pass over a batch of images: patches unfolded and embedded
 * by one GEMM, class token and positions, pre-LayerNorm, pre-norm encoder layers (linear layers over
 * all the batch's tokens, attention per image and head), post-LayerNorm of the class token and the
 * visual projection. */
#include "clip.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

void v4r_clip_ws_reserve(const v4r_clip *m, v4r_clip_ws *ws, size_t images)
{
    const v4r_clip_config *c = &m->cfg;
    if (images > ws->cap) {
        size_t rows = images * c->tokens, p = c->patch;
        v4r_clip_ws_free(ws);
        ws->patches = v4r_malloc(images * c->grid * c->grid * 3 * p * p * sizeof(float));
        ws->x = v4r_malloc(rows * c->hidden * sizeof(float));
        ws->h = v4r_malloc(rows * c->hidden * sizeof(float));
        ws->ctx = v4r_malloc(rows * c->hidden * sizeof(float));
        ws->qkv = v4r_malloc(rows * 3 * c->hidden * sizeof(float));
        ws->inter = v4r_malloc(rows * c->inter * sizeof(float));
        ws->pooled = v4r_malloc(images * c->hidden * sizeof(float));
        ws->first = v4r_malloc((images + 1) * sizeof *ws->first);
        ws->cap = images;
    }
    int nt = omp_get_max_threads();
    if (nt > ws->n_scratch) {
        for (int t = 0; t < ws->n_scratch; t++)
            free(ws->scratch[t]);
        free(ws->scratch);
        ws->scratch = v4r_malloc((size_t)nt * sizeof *ws->scratch);
        for (int t = 0; t < nt; t++)
            ws->scratch[t] = v4r_malloc(v4r_attention_scratch(c->tokens, c->hidden / c->heads) * sizeof(float));
        ws->n_scratch = nt;
    }
}

void v4r_clip_ws_free(v4r_clip_ws *ws)
{
    free(ws->patches);
    free(ws->x);
    free(ws->h);
    free(ws->ctx);
    free(ws->qkv);
    free(ws->inter);
    free(ws->pooled);
    free(ws->first);
    for (int t = 0; t < ws->n_scratch; t++)
        free(ws->scratch[t]);
    free(ws->scratch);
    memset(ws, 0, sizeof *ws);
}

/* Unfolds each image's grid x grid patches into rows of 3 x patch x patch values (channel, row,
 * column), patches in row-major grid order, as the convolution with stride = patch sees them. */
static void unfold(const v4r_clip_config *c, const float *pixels, size_t n, float *patches)
{
    size_t p = c->patch, g = c->grid, s = c->image, k = 3 * p * p;
#pragma omp parallel for schedule(static)
    for (size_t t = 0; t < n * g; t++) { /* one row of patches of one image */
        size_t i = t / g, gy = t % g;
        const float *img = pixels + i * 3 * s * s;
        for (size_t gx = 0; gx < g; gx++) {
            float *row = patches + ((i * g + gy) * g + gx) * k;
            for (size_t ch = 0; ch < 3; ch++)
                for (size_t ky = 0; ky < p; ky++)
                    memcpy(row + (ch * p + ky) * p, img + (ch * s + gy * p + ky) * s + gx * p, p * sizeof *row);
        }
    }
}

/* x = [class; patch embeddings] + positions, then the pre-LayerNorm. */
static void embed(const v4r_clip *m, const float *pixels, size_t n, v4r_clip_ws *ws)
{
    const v4r_clip_config *c = &m->cfg;
    size_t g2 = c->grid * c->grid, h = c->hidden;
    size_t *pseg = v4r_malloc((n + 1) * sizeof *pseg);
    for (size_t i = 0; i <= n; i++)
        pseg[i] = i * g2;
    unfold(c, pixels, n, ws->patches);
    v4r_linear_apply(&m->patch, ws->patches, n * g2, pseg, n, NULL, V4R_ACT_NONE, ws->ctx);
    free(pseg);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float *x = ws->x + i * c->tokens * h;
        for (size_t d = 0; d < h; d++)
            x[d] = m->cls[d] + m->pos[d];
        for (size_t t = 1; t < c->tokens; t++)
            for (size_t d = 0; d < h; d++)
                x[t * h + d] = ws->ctx[(i * g2 + t - 1) * h + d] + m->pos[t * h + d];
    }
    v4r_layernorm(ws->x, n * c->tokens, h, m->pre_g, m->pre_b, c->eps);
}

/* ctx = multi-head attention of each image's tokens (tasks: image x head). */
static void attend(const v4r_clip *m, size_t n, v4r_clip_ws *ws)
{
    size_t h = m->cfg.hidden, heads = m->cfg.heads, hd = h / heads, T = m->cfg.tokens;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t task = 0; task < n * heads; task++) {
        size_t s = task / heads, hh = task % heads;
        float *scratch = ws->scratch[omp_get_thread_num()];
        v4r_attention(ws->qkv + s * T * 3 * h, 3 * h, T, T, heads, hd, hh, 1, ws->ctx + s * T * h, h, scratch,
                      m->kernel);
    }
}

/* One pre-norm encoder layer: x += attn(LN1(x)); x += fc2(act(fc1(LN2(x)))). */
static void layer_forward(const v4r_clip *m, const v4r_tlayer *L, size_t n, v4r_clip_ws *ws)
{
    size_t rows = n * m->cfg.tokens, h = m->cfg.hidden, bytes = rows * h * sizeof(float);
    const size_t *seg = ws->first;
    memcpy(ws->h, ws->x, bytes);
    v4r_layernorm(ws->h, rows, h, L->ln1_g, L->ln1_b, m->cfg.eps);
    v4r_linear_apply(&L->qkv, ws->h, rows, seg, n, NULL, V4R_ACT_NONE, ws->qkv);
    attend(m, n, ws);
    v4r_linear_apply(&L->out, ws->ctx, rows, seg, n, ws->x, V4R_ACT_NONE, ws->h); /* h: the residual stream */
    memcpy(ws->x, ws->h, bytes);
    v4r_layernorm(ws->x, rows, h, L->ln2_g, L->ln2_b, m->cfg.eps);
    v4r_mlp_apply(&L->fc1, &L->fc2, ws->x, rows, seg, n, ws->h, m->cfg.act, ws->inter, ws->x);
}

/* image_embeds = projection(post-LayerNorm(class token)). */
static void pool(const v4r_clip *m, size_t n, v4r_clip_ws *ws, float *embeds)
{
    size_t h = m->cfg.hidden;
    size_t *seg = v4r_malloc((n + 1) * sizeof *seg);
    for (size_t i = 0; i < n; i++) {
        memcpy(ws->pooled + i * h, ws->x + ws->first[i] * h, h * sizeof(float));
        seg[i] = i;
    }
    seg[n] = n;
    v4r_layernorm(ws->pooled, n, h, m->post_g, m->post_b, m->cfg.eps);
    v4r_linear_apply(&m->proj, ws->pooled, n, seg, n, NULL, V4R_ACT_NONE, embeds);
    free(seg);
}

void v4r_clip_forward(const v4r_clip *m, const float *pixels, size_t n, v4r_clip_ws *ws, float *embeds, float *penult)
{
    const v4r_clip_config *c = &m->cfg;
    if (n == 0)
        return;
    v4r_clip_ws_reserve(m, ws, n);
    for (size_t i = 0; i <= n; i++)
        ws->first[i] = i * c->tokens;
    embed(m, pixels, n, ws);
    for (size_t l = 0; l < c->layers; l++) {
        if (penult && l + 1 == c->layers)
            memcpy(penult, ws->x, n * c->tokens * c->hidden * sizeof(float));
        layer_forward(m, &m->layer[l], n, ws);
    }
    if (embeds)
        pool(m, n, ws, embeds);
}

/* The CLIP vision transformer's weights: "vision_model." tensors and "visual_projection.weight"
 * from safetensors, converted to float32 and prepared for the kernel. */
#include "clip.h"

#include <stdlib.h>
#include <string.h>

static int load_vec(const v4r_safetensors *st, const char *name, size_t n, float **out, v4r_err *err)
{
    return v4r_st_load(st, name, 1, &n, out, err);
}

static int load_mat(const v4r_safetensors *st, const char *name, size_t rows, size_t cols, float **out, v4r_err *err)
{
    size_t shape[2] = {rows, cols};
    return v4r_st_load(st, name, 2, shape, out, err);
}

/* "vision_model.encoder.layers.<i>.<suffix>" in buf (256 bytes). */
static const char *layer_name(char *buf, size_t i, const char *suffix)
{
    snprintf(buf, 256, "vision_model.encoder.layers.%zu.%s", i, suffix);
    return buf;
}

/* A linear layer "<prefix>.weight" (out x in) and "<prefix>.bias". */
static int load_linear(const v4r_clip *m, const v4r_safetensors *st, const char *prefix, size_t out, size_t in,
                       v4r_linear *l, v4r_err *err)
{
    char name[256];
    float *w = NULL, *b = NULL;
    snprintf(name, sizeof name, "%s.weight", prefix);
    int rc = load_mat(st, name, out, in, &w, err);
    snprintf(name, sizeof name, "%s.bias", prefix);
    if (!rc)
        rc = load_vec(st, name, out, &b, err);
    if (!rc)
        v4r_linear_init(l, w, b, out, in, m->kernel);
    free(w);
    free(b);
    return rc;
}

/* q_proj, k_proj, v_proj stacked into one 3H x H layer. */
static int load_qkv(const v4r_clip *m, const v4r_safetensors *st, size_t i, v4r_linear *l, v4r_err *err)
{
    static const char *part[3] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"};
    size_t h = m->cfg.hidden;
    float *w = v4r_malloc(3 * h * h * sizeof *w), *b = v4r_malloc(3 * h * sizeof *b);
    int rc = V4R_OK;
    for (int p = 0; p < 3 && !rc; p++) {
        char name[256];
        float *pw = NULL, *pb = NULL;
        snprintf(name, sizeof name, "vision_model.encoder.layers.%zu.%s.weight", i, part[p]);
        rc = load_mat(st, name, h, h, &pw, err);
        snprintf(name, sizeof name, "vision_model.encoder.layers.%zu.%s.bias", i, part[p]);
        if (!rc)
            rc = load_vec(st, name, h, &pb, err);
        if (!rc) {
            memcpy(w + p * h * h, pw, h * h * sizeof *w);
            memcpy(b + p * h, pb, h * sizeof *b);
        }
        free(pw);
        free(pb);
    }
    if (!rc)
        v4r_linear_init(l, w, b, 3 * h, h, m->kernel);
    free(w);
    free(b);
    return rc;
}

static int load_layer(v4r_clip *m, const v4r_safetensors *st, size_t i, v4r_err *err)
{
    v4r_clip_layer *L = &m->layer[i];
    size_t h = m->cfg.hidden, in = m->cfg.inter;
    char q[256];
    int rc = load_qkv(m, st, i, &L->qkv, err);
    if (!rc)
        rc = load_linear(m, st, layer_name(q, i, "self_attn.out_proj"), h, h, &L->out, err);
    if (!rc)
        rc = load_vec(st, layer_name(q, i, "layer_norm1.weight"), h, &L->ln1_g, err);
    if (!rc)
        rc = load_vec(st, layer_name(q, i, "layer_norm1.bias"), h, &L->ln1_b, err);
    if (!rc)
        rc = load_linear(m, st, layer_name(q, i, "mlp.fc1"), in, h, &L->fc1, err);
    if (!rc)
        rc = load_linear(m, st, layer_name(q, i, "mlp.fc2"), h, in, &L->fc2, err);
    if (!rc)
        rc = load_vec(st, layer_name(q, i, "layer_norm2.weight"), h, &L->ln2_g, err);
    if (!rc)
        rc = load_vec(st, layer_name(q, i, "layer_norm2.bias"), h, &L->ln2_b, err);
    return rc;
}

/* The patch convolution (hidden x 3 x p x p, no bias) as a linear layer over unfolded patches whose
 * columns run channel, row, column: the weight's own layout. */
static int load_patch(v4r_clip *m, const v4r_safetensors *st, v4r_err *err)
{
    size_t p = m->cfg.patch, shape[4] = {m->cfg.hidden, 3, p, p};
    float *w = NULL;
    int rc = v4r_st_load(st, "vision_model.embeddings.patch_embedding.weight", 4, shape, &w, err);
    if (!rc)
        v4r_linear_init(&m->patch, w, NULL, m->cfg.hidden, 3 * p * p, m->kernel);
    free(w);
    return rc;
}

static int load_embeddings(v4r_clip *m, const v4r_safetensors *st, v4r_err *err)
{
    const v4r_clip_config *c = &m->cfg;
    int rc = load_patch(m, st, err);
    if (!rc)
        rc = load_vec(st, "vision_model.embeddings.class_embedding", c->hidden, &m->cls, err);
    if (!rc)
        rc = load_mat(st, "vision_model.embeddings.position_embedding.weight", c->tokens, c->hidden, &m->pos, err);
    if (!rc)
        rc = load_vec(st, "vision_model.pre_layrnorm.weight", c->hidden, &m->pre_g, err);
    if (!rc)
        rc = load_vec(st, "vision_model.pre_layrnorm.bias", c->hidden, &m->pre_b, err);
    return rc;
}

static int load_head(v4r_clip *m, const v4r_safetensors *st, v4r_err *err)
{
    const v4r_clip_config *c = &m->cfg;
    float *w = NULL;
    int rc = load_vec(st, "vision_model.post_layernorm.weight", c->hidden, &m->post_g, err);
    if (!rc)
        rc = load_vec(st, "vision_model.post_layernorm.bias", c->hidden, &m->post_b, err);
    if (!rc)
        rc = load_mat(st, "visual_projection.weight", c->proj, c->hidden, &w, err);
    if (!rc)
        v4r_linear_init(&m->proj, w, NULL, c->proj, c->hidden, m->kernel);
    free(w);
    return rc;
}

static int load_weights(v4r_clip *m, const char *dir, v4r_err *err)
{
    v4r_safetensors *st = NULL;
    int rc = v4r_st_open_dir(dir, &st, err);
    if (!rc)
        rc = load_embeddings(m, st, err);
    if (!rc)
        m->layer = v4r_calloc(m->cfg.layers, sizeof *m->layer);
    for (size_t i = 0; !rc && i < m->cfg.layers; i++)
        rc = load_layer(m, st, i, err);
    if (!rc)
        rc = load_head(m, st, err);
    v4r_st_close(st); /* everything is converted: the mapping is not needed after loading */
    return rc;
}

int v4r_clip_load(const char *dir, int kernel, v4r_clip *m, v4r_err *err)
{
    memset(m, 0, sizeof *m);
    m->kernel = kernel;
    char *cfg = v4r_path_join(dir, "config.json");
    int rc = v4r_clip_config_read(cfg, &m->cfg, err);
    free(cfg);
    if (!rc)
        rc = load_weights(m, dir, err);
    if (rc)
        v4r_clip_free(m);
    return rc;
}

static void free_layer(v4r_clip_layer *L)
{
    v4r_linear_free(&L->qkv);
    v4r_linear_free(&L->out);
    v4r_linear_free(&L->fc1);
    v4r_linear_free(&L->fc2);
    free(L->ln1_g);
    free(L->ln1_b);
    free(L->ln2_g);
    free(L->ln2_b);
}

void v4r_clip_free(v4r_clip *m)
{
    for (size_t i = 0; m->layer && i < m->cfg.layers; i++)
        free_layer(&m->layer[i]);
    free(m->layer);
    v4r_linear_free(&m->patch);
    v4r_linear_free(&m->proj);
    free(m->cls);
    free(m->pos);
    free(m->pre_g);
    free(m->pre_b);
    free(m->post_g);
    free(m->post_b);
    memset(m, 0, sizeof *m);
}

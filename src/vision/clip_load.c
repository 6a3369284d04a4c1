/* The CLIP vision transformer's weights: "vision_model." tensors and "visual_projection.weight"
 * from safetensors, converted to float32 and prepared for the kernel. */
#include "clip.h"

#include <stdlib.h>
#include <string.h>

/* layer i's tensors: "vision_model.encoder.layers.<i>.<name>.weight" and ".bias" */
static const v4r_tlayer_names LAYER_NAMES = {
    .prefix = "vision_model.encoder.layers.",
    .qkv = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
    .out = "self_attn.out_proj",
    .ln1 = "layer_norm1",
    .fc1 = "mlp.fc1",
    .fc2 = "mlp.fc2",
    .ln2 = "layer_norm2",
};

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
        rc = v4r_st_load_vec(st, "vision_model.embeddings.class_embedding", c->hidden, &m->cls, err);
    if (!rc)
        rc = v4r_st_load_mat(st, "vision_model.embeddings.position_embedding.weight", c->tokens, c->hidden, &m->pos,
                             err);
    if (!rc)
        rc = v4r_st_load_vec(st, "vision_model.pre_layrnorm.weight", c->hidden, &m->pre_g, err);
    if (!rc)
        rc = v4r_st_load_vec(st, "vision_model.pre_layrnorm.bias", c->hidden, &m->pre_b, err);
    return rc;
}

static int load_head(v4r_clip *m, const v4r_safetensors *st, v4r_err *err)
{
    const v4r_clip_config *c = &m->cfg;
    float *w = NULL;
    int rc = v4r_st_load_vec(st, "vision_model.post_layernorm.weight", c->hidden, &m->post_g, err);
    if (!rc)
        rc = v4r_st_load_vec(st, "vision_model.post_layernorm.bias", c->hidden, &m->post_b, err);
    if (!rc)
        rc = v4r_st_load_mat(st, "visual_projection.weight", c->proj, c->hidden, &w, err);
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
        rc = v4r_tlayer_load(st, &LAYER_NAMES, i, m->cfg.hidden, m->cfg.inter, m->kernel, &m->layer[i], err);
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

void v4r_clip_free(v4r_clip *m)
{
    for (size_t i = 0; m->layer && i < m->cfg.layers; i++)
        v4r_tlayer_free(&m->layer[i]);
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

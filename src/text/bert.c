/* The BERT encoder: config.json, weights from safetensors, and the forward pass over a packed
 * batch (linear layers over all the batch's tokens, attention per sequence and head). */
#include "bert.h"

#include <jansson.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- config.json ---- */

/* root[key], a positive integer (required). */
static int get_size(const char *path, json_t *root, const char *key, size_t *out, v4r_err *err)
{
    return v4r_json_get_size(path, root, key, 0, SIZE_MAX, out, err);
}

static int parse_act(const char *path, json_t *root, int *act, v4r_err *err)
{
    json_t *v = json_object_get(root, "hidden_act");
    const char *a = v ? json_string_value(v) : "gelu";
    if (!a)
        return v4r_fail(err, V4R_EINPUT, "%s: \"hidden_act\" must be a string", path);
    int found = v4r_act_by_name(a);
    if (found < 0 || found == V4R_ACT_QUICK_GELU)
        return v4r_fail(err, V4R_EINPUT, "%s: hidden_act \"%s\" is not supported (gelu, gelu_new, relu)", path, a);
    *act = found;
    return V4R_OK;
}

/* model_type bert (or absent) with absolute position embeddings. */
static int check_kind(const char *path, json_t *root, v4r_err *err)
{
    json_t *mt = json_object_get(root, "model_type"), *pe = json_object_get(root, "position_embedding_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "bert") != 0))
        return v4r_fail(err, V4R_EINPUT, "%s: model_type %s is not supported (only bert)", path,
                        json_is_string(mt) ? json_string_value(mt) : "(not a string)");
    if (pe && (!json_is_string(pe) || strcmp(json_string_value(pe), "absolute") != 0))
        return v4r_fail(err, V4R_EINPUT, "%s: position_embedding_type must be \"absolute\"", path);
    return V4R_OK;
}

static int parse_config(const char *path, json_t *root, v4r_bert_config *c, v4r_err *err)
{
    int rc = check_kind(path, root, err);
    if (!rc)
        rc = get_size(path, root, "hidden_size", &c->hidden, err);
    if (!rc)
        rc = get_size(path, root, "num_hidden_layers", &c->layers, err);
    if (!rc)
        rc = get_size(path, root, "num_attention_heads", &c->heads, err);
    if (!rc)
        rc = get_size(path, root, "intermediate_size", &c->inter, err);
    if (!rc)
        rc = get_size(path, root, "vocab_size", &c->vocab, err);
    if (!rc)
        rc = get_size(path, root, "max_position_embeddings", &c->max_pos, err);
    if (!rc)
        rc = v4r_json_get_size(path, root, "type_vocab_size", 2, SIZE_MAX, &c->type_vocab, err);
    if (!rc)
        rc = parse_act(path, root, &c->act, err);
    double eps;
    if (!rc)
        rc = v4r_json_get_number(path, root, "layer_norm_eps", 1e-12, &eps, err);
    if (rc)
        return rc;
    c->eps = (float)eps;
    if (c->hidden % c->heads)
        return v4r_fail(err, V4R_EINPUT, "%s: hidden_size %zu is not a multiple of num_attention_heads %zu", path,
                        c->hidden, c->heads);
    return V4R_OK;
}

int v4r_bert_config_read(const char *path, v4r_bert_config *c, v4r_err *err)
{
    json_t *root;
    memset(c, 0, sizeof *c);
    int rc = v4r_json_read_object(path, &root, err);
    if (!rc)
        rc = parse_config(path, root, c, err);
    json_decref(root);
    return rc;
}

/* ---- weights ---- */

/* layer i's tensors: "encoder.layer.<i>.<name>.weight" and ".bias" */
static const v4r_tlayer_names LAYER_NAMES = {
    .prefix = "encoder.layer.",
    .qkv = {"attention.self.query", "attention.self.key", "attention.self.value"},
    .out = "attention.output.dense",
    .ln1 = "attention.output.LayerNorm",
    .fc1 = "intermediate.dense",
    .fc2 = "output.dense",
    .ln2 = "output.LayerNorm",
};

static int load_embeddings(v4r_bert *m, v4r_err *err)
{
    const v4r_bert_config *c = &m->cfg;
    size_t wshape[2] = {c->vocab, c->hidden};
    float *types = NULL;
    int rc = v4r_st_get(m->st, "embeddings.word_embeddings.weight", 2, wshape, &m->word, err);
    if (!rc)
        rc = v4r_st_load_mat(m->st, "embeddings.position_embeddings.weight", c->max_pos, c->hidden, &m->pos, err);
    if (!rc)
        rc = v4r_st_load_mat(m->st, "embeddings.token_type_embeddings.weight", c->type_vocab, c->hidden, &types, err);
    if (!rc) {
        m->type0 = v4r_malloc(c->hidden * sizeof *m->type0);
        memcpy(m->type0, types, c->hidden * sizeof *types);
    }
    free(types);
    if (!rc)
        rc = v4r_st_load_vec(m->st, "embeddings.LayerNorm.weight", c->hidden, &m->emb_g, err);
    if (!rc)
        rc = v4r_st_load_vec(m->st, "embeddings.LayerNorm.bias", c->hidden, &m->emb_b, err);
    return rc;
}

int v4r_bert_load(const char *dir, int kernel, int engine, v4r_bert *m, v4r_err *err)
{
    memset(m, 0, sizeof *m);
    m->kernel = kernel;
    m->half = engine;
    char *cfg = v4r_path_join(dir, "config.json");
    int rc = v4r_bert_config_read(cfg, &m->cfg, err);
    free(cfg);
    if (!rc)
        rc = v4r_st_open_dir(dir, &m->st, err);
    if (!rc)
        rc = load_embeddings(m, err);
    if (!rc)
        m->layer = v4r_calloc(m->cfg.layers, sizeof *m->layer);
    for (size_t i = 0; !rc && i < m->cfg.layers; i++)
        rc = v4r_tlayer_load_half(m->st, &LAYER_NAMES, i, m->cfg.hidden, m->cfg.inter, m->kernel, m->half,
                                  &m->layer[i], err);
    if (rc)
        v4r_bert_free(m);
    return rc;
}

void v4r_bert_free(v4r_bert *m)
{
    for (size_t i = 0; m->layer && i < m->cfg.layers; i++)
        v4r_tlayer_free(&m->layer[i]);
    free(m->layer);
    free(m->pos);
    free(m->type0);
    free(m->emb_g);
    free(m->emb_b);
    v4r_st_close(m->st);
    memset(m, 0, sizeof *m);
}

/* ---- forward ---- */

void v4r_bert_ws_reserve(const v4r_bert *m, v4r_bert_ws *ws, size_t tokens, size_t max_len)
{
    const v4r_bert_config *c = &m->cfg;
    if (tokens > ws->cap_tokens) {
        free(ws->x);
        free(ws->qkv);
        free(ws->ctx);
        free(ws->tmp);
        free(ws->inter);
        ws->x = v4r_huge_alloc(tokens * c->hidden * sizeof(float));
        ws->qkv = v4r_huge_alloc(tokens * 3 * c->hidden * sizeof(float));
        ws->ctx = v4r_huge_alloc(tokens * c->hidden * sizeof(float));
        ws->tmp = v4r_huge_alloc(tokens * c->hidden * sizeof(float));
        ws->inter = v4r_huge_alloc(tokens * c->inter * sizeof(float));
        ws->cap_tokens = tokens;
    }
    int nt = omp_get_max_threads();
    if (max_len > ws->cap_len || nt > ws->n_scratch) {
        for (int t = 0; t < ws->n_scratch; t++)
            free(ws->scratch[t]);
        free(ws->scratch);
        size_t len = max_len > ws->cap_len ? max_len : ws->cap_len;
        ws->scratch = v4r_malloc((size_t)nt * sizeof *ws->scratch);
        for (int t = 0; t < nt; t++)
            ws->scratch[t] = v4r_malloc(v4r_attention_scratch(len, c->hidden / c->heads) * sizeof(float));
        ws->n_scratch = nt;
        ws->cap_len = len;
    }
}

void v4r_bert_ws_free(v4r_bert_ws *ws)
{
    free(ws->x);
    free(ws->qkv);
    free(ws->ctx);
    free(ws->tmp);
    free(ws->inter);
    for (int t = 0; t < ws->n_scratch; t++)
        free(ws->scratch[t]);
    free(ws->scratch);
    memset(ws, 0, sizeof *ws);
}

/* x[t] = LayerNorm((word[id] + type[0]) + pos[p]) for each token, in transformers' order. */
static void embed(const v4r_bert *m, const int32_t *const *ids, const size_t *lens, size_t n, const size_t *first,
                  float *x)
{
    size_t h = m->cfg.hidden;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t s = 0; s < n; s++)
        for (size_t p = 0; p < lens[s]; p++) {
            float *row = x + (first[s] + p) * h;
            v4r_st_to_f32(m->word, (size_t)ids[s][p] * h, h, row);
            for (size_t c = 0; c < h; c++)
                row[c] = (row[c] + m->type0[c]) + m->pos[p * h + c];
        }
    v4r_layernorm(x, first[n], h, m->emb_g, m->emb_b, m->cfg.eps);
}

/* ctx = multi-head attention of each sequence (tasks: sequence x head). */
static void attend(const v4r_bert *m, const size_t *lens, size_t n, const size_t *first, v4r_bert_ws *ws)
{
    size_t h = m->cfg.hidden, heads = m->cfg.heads, hd = h / heads;
    const float *qkv = ws->qkv;
    float *ctx = ws->ctx;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t task = 0; task < n * heads; task++) {
        size_t s = task / heads, hh = task % heads;
        float *scratch = ws->scratch[omp_get_thread_num()];
        v4r_attention(qkv + first[s] * 3 * h, 3 * h, lens[s], lens[s], heads, hd, hh, 1, ctx + first[s] * h, h,
                      scratch, m->kernel);
    }
}

/* One encoder layer over the packed batch; first[] (n + 1 offsets) segments the linear layers by
 * sequence. */
static void layer_forward(const v4r_bert *m, const v4r_tlayer *L, const size_t *lens, size_t n,
                          const size_t *first, v4r_bert_ws *ws)
{
    size_t T = first[n];
    v4r_linear_apply(&L->qkv, ws->x, T, first, n, NULL, V4R_ACT_NONE, ws->qkv);
    attend(m, lens, n, first, ws);
    v4r_norm ln1 = {L->ln1_g, L->ln1_b, m->cfg.eps}, ln2 = {L->ln2_g, L->ln2_b, m->cfg.eps};
    v4r_linear_apply_norm(&L->out, ws->ctx, T, first, n, ws->x, V4R_ACT_NONE, ws->tmp, &ln1);
    v4r_mlp_apply_norm(&L->fc1, &L->fc2, ws->tmp, T, first, n, ws->tmp, m->cfg.act, ws->inter, ws->x, &ln2);
}

void v4r_bert_forward(const v4r_bert *m, const int32_t *const *ids, const size_t *lens, size_t n, v4r_bert_ws *ws,
                      float *states)
{
    size_t *first = v4r_malloc((n + 1) * sizeof *first), max_len = 0;
    first[0] = 0;
    for (size_t s = 0; s < n; s++) {
        first[s + 1] = first[s] + lens[s];
        max_len = lens[s] > max_len ? lens[s] : max_len;
    }
    size_t T = first[n], th = T * m->cfg.hidden;
    v4r_bert_ws_reserve(m, ws, T, max_len);
    embed(m, ids, lens, n, first, ws->x);
    if (states)
        memcpy(states, ws->x, th * sizeof *states);
    for (size_t i = 0; i < m->cfg.layers; i++) {
        layer_forward(m, &m->layer[i], lens, n, first, ws);
        if (states)
            memcpy(states + (i + 1) * th, ws->x, th * sizeof *states);
    }
    free(first);
}

/* SMORE: parameters (named as the official implementation's state dict), graphs, the forward pass
 * over the whole graph, and the loss of a batch (BPR + L2 + InfoNCE between the side and content
 * views). */
#include "ad_internal.h"
#include "smore_internal.h"

#include <stdlib.h>
#include <string.h>

static v4r_ad_tensor *add2(v4r_params *ps, const char *name, size_t rows, size_t cols)
{
    size_t shape[2] = {rows, cols};
    return v4r_params_add(ps, name, 2, shape);
}

/* Linear layer `name`.0 (weight out x in, bias) with nn.Linear's initialization. */
static void add_linear(v4r_params *ps, const char *name, size_t out, size_t in, int bias, v4r_ad_tensor **w,
                       v4r_ad_tensor **b, v4r_rng *rng)
{
    char key[64];
    snprintf(key, sizeof key, "%s.weight", name);
    *w = add2(ps, key, out, in);
    if (bias) {
        size_t shape[1] = {out};
        snprintf(key, sizeof key, "%s.bias", name);
        *b = v4r_params_add(ps, key, 1, shape);
    }
    v4r_init_linear(*w, bias ? *b : NULL, rng);
}

static v4r_ad_tensor *add_filter(v4r_params *ps, const char *name, size_t dim, v4r_rng *rng)
{
    size_t shape[3] = {1, dim / 2 + 1, 2};
    v4r_ad_tensor *f = v4r_params_add(ps, name, 3, shape);
    v4r_init_normal(f, 1.0f, rng);
    return f;
}

static void init_params(v4r_smore_model *m, const float *text, const float *vision, v4r_rng *rng)
{
    v4r_params *ps = &m->params;
    size_t d = m->dim;
    m->user_emb = add2(ps, "user_embedding.weight", m->n_users, d);
    m->item_emb = add2(ps, "item_id_embedding.weight", m->n_items, d);
    v4r_init_xavier(m->user_emb, rng);
    v4r_init_xavier(m->item_emb, rng);
    m->image_feat = add2(ps, "image_embedding.weight", m->n_items, m->dim_vision);
    m->text_feat = add2(ps, "text_embedding.weight", m->n_items, m->dim_text);
    memcpy(m->image_feat->val, vision, m->n_items * m->dim_vision * sizeof(float));
    memcpy(m->text_feat->val, text, m->n_items * m->dim_text * sizeof(float));
    add_linear(ps, "image_trs", d, m->dim_vision, 1, &m->image_w, &m->image_b, rng);
    add_linear(ps, "text_trs", d, m->dim_text, 1, &m->text_w, &m->text_b, rng);
    add_linear(ps, "query_v.0", d, d, 1, &m->query_v[0], &m->query_v[1], rng);
    add_linear(ps, "query_v.2", d, d, 0, &m->query_v[2], NULL, rng);
    add_linear(ps, "query_t.0", d, d, 1, &m->query_t[0], &m->query_t[1], rng);
    add_linear(ps, "query_t.2", d, d, 0, &m->query_t[2], NULL, rng);
    add_linear(ps, "gate_v.0", d, d, 1, &m->gate_v[0], &m->gate_v[1], rng);
    add_linear(ps, "gate_t.0", d, d, 1, &m->gate_t[0], &m->gate_t[1], rng);
    add_linear(ps, "gate_f.0", d, d, 1, &m->gate_f[0], &m->gate_f[1], rng);
    add_linear(ps, "gate_image_prefer.0", d, d, 1, &m->prefer_v[0], &m->prefer_v[1], rng);
    add_linear(ps, "gate_text_prefer.0", d, d, 1, &m->prefer_t[0], &m->prefer_t[1], rng);
    add_linear(ps, "gate_fusion_prefer.0", d, d, 1, &m->prefer_f[0], &m->prefer_f[1], rng);
    m->filter_v = add_filter(ps, "image_complex_weight", d, rng);
    m->filter_t = add_filter(ps, "text_complex_weight", d, rng);
    m->filter_f = add_filter(ps, "fusion_complex_weight", d, rng);
}

void v4r_smore_init(v4r_smore_model *m, size_t n_users, size_t n_items, const int32_t *user, const int32_t *item,
                    size_t n_inter, const float *text, size_t dim_text, const float *vision, size_t dim_vision,
                    size_t dim, size_t knn_image, size_t knn_text, size_t ui_layers, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->n_users = n_users;
    m->n_items = n_items;
    m->dim = dim;
    m->dim_text = dim_text;
    m->dim_vision = dim_vision;
    m->ui_layers = ui_layers;
    m->ii_layers = 1;
    v4r_params_init(&m->params);
    v4r_rng rng;
    v4r_rng_seed(&rng, seed);
    init_params(m, text, vision, &rng);
    v4r_ui_graph(n_users, n_items, user, item, n_inter, &m->ui_adj, &m->r_norm);
    v4r_knn_graph(vision, n_items, dim_vision, knn_image, &m->image_adj);
    v4r_knn_graph(text, n_items, dim_text, knn_text, &m->text_adj);
    v4r_spmat_max(&m->image_adj, &m->text_adj, &m->fusion_adj);
}

void v4r_smore_free(v4r_smore_model *m)
{
    v4r_params_free(&m->params);
    v4r_spmat_free(&m->ui_adj);
    v4r_spmat_free(&m->r_norm);
    v4r_spmat_free(&m->image_adj);
    v4r_spmat_free(&m->text_adj);
    v4r_spmat_free(&m->fusion_adj);
    memset(m, 0, sizeof *m);
}

/* ---- forward ---- */

/* LightGCN: the mean of the embeddings and their propagations over the user-item graph. */
static v4r_ad_tensor *content_view(v4r_ad_tape *t, const v4r_smore_model *m)
{
    v4r_ad_tensor *ego = v4r_ad_concat(t, m->user_emb, m->item_emb, 0), *sum = ego;
    for (size_t l = 0; l < m->ui_layers; l++) {
        ego = v4r_ad_spmm(t, &m->ui_adj, ego);
        sum = v4r_ad_add(t, sum, ego);
    }
    return v4r_ad_scale(t, sum, 1.0f / (float)(m->ui_layers + 1));
}

/* Item ID embeddings gated by a spectral view, propagated over an item-item graph, then to users. */
static v4r_ad_tensor *side_view(v4r_ad_tape *t, const v4r_smore_model *m, v4r_ad_tensor *conv, v4r_ad_tensor *const *gate,
                                const v4r_spmat *graph)
{
    v4r_ad_tensor *items = v4r_ad_mul(t, m->item_emb, v4r_ad_sigmoid(t, v4r_ad_linear(t, conv, gate[0], gate[1])));
    for (size_t l = 0; l < m->ii_layers; l++)
        items = v4r_ad_spmm(t, graph, items);
    return v4r_ad_concat(t, v4r_ad_spmm(t, &m->r_norm, items), items, 0);
}

/* softmax(query(fusion)) * view, weighted by the preference gate from the content view */
static v4r_ad_tensor *attend(v4r_ad_tape *t, v4r_ad_tensor *fusion, v4r_ad_tensor *const *query, v4r_ad_tensor *view,
                             v4r_ad_tensor *pref)
{
    v4r_ad_tensor *q = v4r_ad_tanh(t, v4r_ad_linear(t, fusion, query[0], query[1]));
    v4r_ad_tensor *att = v4r_ad_softmax(t, v4r_ad_linear(t, q, query[2], NULL));
    return v4r_ad_mul(t, pref, v4r_ad_mul(t, att, view));
}

static v4r_ad_tensor *prefer(v4r_ad_tape *t, v4r_ad_tensor *content, v4r_ad_tensor *const *gate)
{
    return v4r_ad_sigmoid(t, v4r_ad_linear(t, content, gate[0], gate[1]));
}

void v4r_smore_forward(v4r_ad_tape *t, const v4r_smore_model *m, v4r_smore_views *out)
{
    size_t d = m->dim;
    v4r_ad_tensor *image_fft = v4r_ad_rfft(t, v4r_ad_linear(t, m->image_feat, m->image_w, m->image_b));
    v4r_ad_tensor *text_fft = v4r_ad_rfft(t, v4r_ad_linear(t, m->text_feat, m->text_w, m->text_b));
    v4r_ad_tensor *image_conv = v4r_ad_irfft(t, v4r_ad_cmul(t, image_fft, m->filter_v), d);
    v4r_ad_tensor *text_conv = v4r_ad_irfft(t, v4r_ad_cmul(t, text_fft, m->filter_t), d);
    v4r_ad_tensor *fusion_conv = v4r_ad_irfft(t, v4r_ad_cmul(t, v4r_ad_cmul(t, text_fft, image_fft), m->filter_f), d);
    v4r_ad_tensor *content = content_view(t, m);
    v4r_ad_tensor *image = side_view(t, m, image_conv, m->gate_v, &m->image_adj);
    v4r_ad_tensor *text = side_view(t, m, text_conv, m->gate_t, &m->text_adj);
    v4r_ad_tensor *fusion = side_view(t, m, fusion_conv, m->gate_f, &m->fusion_adj);
    v4r_ad_tensor *agg_image = attend(t, fusion, m->query_v, image, prefer(t, content, m->prefer_v));
    v4r_ad_tensor *agg_text = attend(t, fusion, m->query_t, text, prefer(t, content, m->prefer_t));
    v4r_ad_tensor *agg_fusion = v4r_ad_mul(t, prefer(t, content, m->prefer_f), fusion);
    out->conv[0] = image_conv, out->conv[1] = text_conv, out->conv[2] = fusion_conv;
    out->view[0] = image, out->view[1] = text, out->view[2] = fusion;
    out->side = v4r_ad_scale(t, v4r_ad_add(t, v4r_ad_add(t, agg_image, agg_text), agg_fusion), 1.0f / 3.0f);
    out->content = content;
    out->all = v4r_ad_add(t, content, out->side);
}

/* ---- loss ---- */

static int32_t *offset(v4r_ad_tape *t, const int32_t *idx, size_t n, size_t by)
{
    int32_t *o = v4r_ad_alloc(t, (n + 1) * sizeof *o);
    for (size_t i = 0; i < n; i++)
        o[i] = idx[i] + (int32_t)by;
    return o;
}

static v4r_ad_tensor *sum_squares(v4r_ad_tape *t, v4r_ad_tensor *x) { return v4r_ad_sum(t, v4r_ad_mul(t, x, x)); }

v4r_ad_tensor *v4r_smore_loss(v4r_ad_tape *t, const v4r_smore_model *m, const int32_t *user, const int32_t *pos,
                              const int32_t *neg, size_t n, size_t batch_size, double reg_weight, double cl_weight,
                              float cl_temperature)
{
    v4r_smore_views v;
    v4r_smore_forward(t, m, &v);
    int32_t *pos_row = offset(t, pos, n, m->n_users), *neg_row = offset(t, neg, n, m->n_users);
    v4r_ad_tensor *u = v4r_ad_gather(t, v.all, user, n), *p = v4r_ad_gather(t, v.all, pos_row, n);
    v4r_ad_tensor *q = v4r_ad_gather(t, v.all, neg_row, n);
    v4r_ad_tensor *diff = v4r_ad_sub(t, v4r_ad_rowsum(t, v4r_ad_mul(t, u, p)), v4r_ad_rowsum(t, v4r_ad_mul(t, u, q)));
    v4r_ad_tensor *bpr = v4r_ad_scale(t, v4r_ad_mean(t, v4r_ad_log_sigmoid(t, diff)), -1.0f);
    v4r_ad_tensor *reg = v4r_ad_add(t, v4r_ad_add(t, sum_squares(t, u), sum_squares(t, p)), sum_squares(t, q));
    reg = v4r_ad_scale(t, reg, (float)(reg_weight * 0.5 / (double)batch_size));
    v4r_ad_tensor *cl_items = v4r_infonce(t, v4r_ad_gather(t, v.side, pos_row, n), v4r_ad_gather(t, v.content, pos_row, n),
                                          cl_temperature);
    v4r_ad_tensor *cl_users = v4r_infonce(t, v4r_ad_gather(t, v.side, user, n), v4r_ad_gather(t, v.content, user, n),
                                          cl_temperature);
    v4r_ad_tensor *cl = v4r_ad_scale(t, v4r_ad_add(t, cl_items, cl_users), (float)cl_weight);
    return v4r_ad_add(t, v4r_ad_add(t, bpr, reg), cl);
}

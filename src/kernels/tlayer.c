/* The weights of one transformer encoder layer (BERT's and CLIP's share the layout: stacked q/k/v,
 * the attention output, the MLP's two linears and two LayerNorms), read from safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/io.h"
#include "vlm4rec/kernels.h"

/* "<prefix><i>.<part>.<what>" in buf (256 bytes). */
static const char *tensor_name(char *buf, const char *prefix, size_t i, const char *part, const char *what)
{
    snprintf(buf, 256, "%s%zu.%s.%s", prefix, i, part, what);
    return buf;
}

/* A linear layer "<part>.weight" (out x in) and "<part>.bias". */
static int load_linear(const v4r_safetensors *st, const v4r_tlayer_names *nm, size_t i, const char *part, size_t out,
                       size_t in, int kernel, int engine, v4r_linear *l, v4r_err *err)
{
    char name[256];
    float *w = NULL, *b = NULL;
    int rc = v4r_st_load_mat(st, tensor_name(name, nm->prefix, i, part, "weight"), out, in, &w, err);
    if (!rc)
        rc = v4r_st_load_vec(st, tensor_name(name, nm->prefix, i, part, "bias"), out, &b, err);
    if (!rc)
        v4r_linear_init_half(l, w, b, out, in, kernel, engine);
    free(w);
    free(b);
    return rc;
}

/* Query, key and value stacked into one 3H x H layer. */
static int load_qkv(const v4r_safetensors *st, const v4r_tlayer_names *nm, size_t i, size_t h, int kernel,
                    int engine, v4r_linear *l, v4r_err *err)
{
    float *w = v4r_malloc(3 * h * h * sizeof *w), *b = v4r_malloc(3 * h * sizeof *b);
    int rc = V4R_OK;
    for (int p = 0; p < 3 && !rc; p++) {
        char name[256];
        float *pw = NULL, *pb = NULL;
        rc = v4r_st_load_mat(st, tensor_name(name, nm->prefix, i, nm->qkv[p], "weight"), h, h, &pw, err);
        if (!rc)
            rc = v4r_st_load_vec(st, tensor_name(name, nm->prefix, i, nm->qkv[p], "bias"), h, &pb, err);
        if (!rc) {
            memcpy(w + p * h * h, pw, h * h * sizeof *w);
            memcpy(b + p * h, pb, h * sizeof *b);
        }
        free(pw);
        free(pb);
    }
    if (!rc)
        v4r_linear_init_half(l, w, b, 3 * h, h, kernel, engine);
    free(w);
    free(b);
    return rc;
}

int v4r_tlayer_load(const v4r_safetensors *st, const v4r_tlayer_names *nm, size_t i, size_t hidden, size_t inter,
                    int kernel, v4r_tlayer *L, v4r_err *err)
{
    return v4r_tlayer_load_half(st, nm, i, hidden, inter, kernel, V4R_BF16_NONE, L, err);
}

int v4r_tlayer_load_half(const v4r_safetensors *st, const v4r_tlayer_names *nm, size_t i, size_t hidden,
                         size_t inter, int kernel, int engine, v4r_tlayer *L, v4r_err *err)
{
    size_t h = hidden;
    char q[256];
    int rc = load_qkv(st, nm, i, h, kernel, engine, &L->qkv, err);
    if (!rc)
        rc = load_linear(st, nm, i, nm->out, h, h, kernel, engine, &L->out, err);
    if (!rc)
        rc = v4r_st_load_vec(st, tensor_name(q, nm->prefix, i, nm->ln1, "weight"), h, &L->ln1_g, err);
    if (!rc)
        rc = v4r_st_load_vec(st, tensor_name(q, nm->prefix, i, nm->ln1, "bias"), h, &L->ln1_b, err);
    if (!rc)
        rc = load_linear(st, nm, i, nm->fc1, inter, h, kernel, engine, &L->fc1, err);
    if (!rc)
        rc = load_linear(st, nm, i, nm->fc2, h, inter, kernel, engine, &L->fc2, err);
    if (!rc)
        rc = v4r_st_load_vec(st, tensor_name(q, nm->prefix, i, nm->ln2, "weight"), h, &L->ln2_g, err);
    if (!rc)
        rc = v4r_st_load_vec(st, tensor_name(q, nm->prefix, i, nm->ln2, "bias"), h, &L->ln2_b, err);
    return rc;
}

void v4r_tlayer_free(v4r_tlayer *L)
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

/* Internal to text: the BERT model (config, weights, forward pass over a packed batch). */
#ifndef V4R_TEXT_BERT_H
#define V4R_TEXT_BERT_H

#include "vlm4rec/io.h"
#include "vlm4rec/kernels.h"
#include "vlm4rec/text.h"

typedef struct {
    size_t vocab, hidden, layers, heads, inter, max_pos, type_vocab;
    float eps;
    int act; /* V4R_ACT_* */
} v4r_bert_config;

typedef struct {
    v4r_bert_config cfg;
    int kernel;
    int half;                  /* V4R_BF16_* / V4R_FP16_AVX512: the linear layers' engine, or none */
    v4r_safetensors *st;       /* kept mapped: word embeddings are converted on use */
    const v4r_st_tensor *word; /* vocab x hidden, any float dtype */
    float *pos, *type0;        /* max_pos x hidden; the token type 0 row */
    float *emb_g, *emb_b;
    v4r_tlayer *layer; /* post-LN: ln1 after attention, ln2 after the MLP */
} v4r_bert;

/* Reads config.json (model_type bert, absolute positions); errors name the file and the key. */
int v4r_bert_config_read(const char *path, v4r_bert_config *c, v4r_err *err);
/* Loads config.json and the safetensors weights of dir, prepared for kernel, the encoder layers'
 * linear layers in bf16 or fp16 for engine (V4R_BF16_NONE: float32). */
int v4r_bert_load(const char *dir, int kernel, int engine, v4r_bert *m, v4r_err *err);
void v4r_bert_free(v4r_bert *m);

/* Activations of one packed batch (sequences one after another, no padding). */
typedef struct {
    size_t cap_tokens, cap_len;
    float *x, *qkv, *ctx, *tmp, *inter;
    float **scratch; /* one attention scratch per thread */
    int n_scratch;
} v4r_bert_ws;

/* Sizes ws for batches of up to tokens tokens and sequences of up to max_len. */
void v4r_bert_ws_reserve(const v4r_bert *m, v4r_bert_ws *ws, size_t tokens, size_t max_len);
void v4r_bert_ws_free(v4r_bert_ws *ws);

/* The forward pass of n sequences (token ids checked by the caller: within the vocabulary, 1 to
 * max_pos tokens); ws->x receives the last hidden states, the sequences' rows one after another.
 * states, when not NULL, receives (layers + 1) x tokens x hidden: the embeddings' output, then each
 * layer's. */
void v4r_bert_forward(const v4r_bert *m, const int32_t *const *ids, const size_t *lens, size_t n, v4r_bert_ws *ws,
                      float *states);

#endif

/* text: the BERT WordPiece tokenizer (as the `tokenizers` library runs it), the BERT encoder from
 * Hugging Face safetensors, and sentence-transformers pooling / normalization. */
#ifndef VLM4REC_TEXT_H
#define VLM4REC_TEXT_H

#include "vlm4rec/base.h"

/* ---- tokenizer ---- */

typedef struct v4r_tokenizer v4r_tokenizer;

/* Loads the tokenizer of a model directory: vocab.txt (or the vocabulary of tokenizer.json),
 * tokenizer_config.json / tokenizer.json for lowercasing, accent stripping, CJK splitting and the
 * special tokens. */
int v4r_tokenizer_load(const char *model_dir, v4r_tokenizer **out, v4r_err *err);
void v4r_tokenizer_free(v4r_tokenizer *t);

/* Tokenizes one UTF-8 text into [CLS] ... [SEP], truncated to max_len tokens in all (0 = no
 * limit; the [SEP] is kept). *ids is allocated (caller frees), *n set. Invalid UTF-8 is V4R_EINPUT
 * naming the byte offset; the empty text gives [CLS] [SEP]. */
int v4r_tokenize(const v4r_tokenizer *t, const char *text, size_t max_len, int32_t **ids, size_t *n, v4r_err *err);
/* The token string of an id (NULL when out of range), and the vocabulary size. */
const char *v4r_tokenizer_token(const v4r_tokenizer *t, int32_t id);
size_t v4r_tokenizer_vocab_size(const v4r_tokenizer *t);

/* ---- encoder ---- */

typedef struct v4r_encoder v4r_encoder;

enum { V4R_POOL_MEAN = 0, V4R_POOL_CLS = 1, V4R_POOL_MAX = 2 };

/* Loads a model directory: config.json, model.safetensors or the shards named by
 * model.safetensors.index.json (F32/F16/BF16, keys with or without "bert."; mmap'ed), the
 * tokenizer, and the sentence-transformers files (modules.json, sentence_bert_config.json,
 * 1_Pooling/config.json) for pooling, normalization and max_seq_length. A plain BERT directory
 * gets mean pooling, normalization and max_seq_length 512 (the position table's size). */
int v4r_encoder_load(const char *model_dir, v4r_encoder **out, v4r_err *err);
/* The same with the precision of the linear layers' products (V4R_PREC_* of vlm4rec/kernels.h):
 * bf16 rounds their weights (once, here) and inputs to bfloat16 and sums in float32 when the CPU has
 * AVX512_BF16 or AMX (v4r_bf16_pick); fp16 rounds them to IEEE half and sums in fp16 over runs of 64
 * depths, the runs in float32, when it has AVX512_FP16. Without the instructions it falls back to
 * fp32: v4r_encoder_precision says which runs. */
int v4r_encoder_load_precision(const char *model_dir, int precision, v4r_encoder **out, v4r_err *err);
int v4r_encoder_precision(const v4r_encoder *e); /* V4R_PREC_FP32, V4R_PREC_BF16 or V4R_PREC_FP16 */
/* Warns "WHO PREC: this CPU has no ...; falling back to fp32" when e runs fp32 for an asked
 * half precision; nothing otherwise. */
void v4r_encoder_warn_fallback(const v4r_encoder *e, int asked, const char *who);
void v4r_encoder_free(v4r_encoder *e);

size_t v4r_encoder_dim(const v4r_encoder *e);
size_t v4r_encoder_max_seq_length(const v4r_encoder *e);
int v4r_encoder_pooling(const v4r_encoder *e);
int v4r_encoder_normalizes(const v4r_encoder *e);
const v4r_tokenizer *v4r_encoder_tokenizer(const v4r_encoder *e);

/* Encodes n token sequences (ids[i] of lens[i] tokens, each already within max_seq_length) into
 * out (n x dim, row i = sequence i): the forward pass, pooling and (if configured) L2
 * normalization. Sequences are batched by length (batch_size sequences at most; 0 = 32) so padding
 * stays small; the result does not depend on batch_size or the thread count. Memory is bounded by
 * the batch. */
int v4r_encoder_encode_ids(v4r_encoder *e, const int32_t *const *ids, const size_t *lens, size_t n,
                           size_t batch_size, float *out, v4r_err *err);
/* Tokenizes (truncating to max_seq_length) and encodes n texts. An invalid text fails naming its
 * index. */
int v4r_encoder_encode_texts(v4r_encoder *e, const char *const *texts, size_t n, size_t batch_size, float *out,
                             v4r_err *err);
/* For parity checks: the token states of one sequence after the embeddings (layer 0) and after
 * each encoder layer (1..L): hidden receives (L + 1) x len x hidden_size floats. */
int v4r_encoder_hidden_states(v4r_encoder *e, const int32_t *ids, size_t len, float *hidden, v4r_err *err);
size_t v4r_encoder_layers(const v4r_encoder *e);
size_t v4r_encoder_hidden_size(const v4r_encoder *e);

/* ---- TF-IDF: the offline fallback encoder (not Sentence-BERT) ---- */

/* The name every output of the TF-IDF encoder carries. */
#define V4R_TFIDF_NAME "tfidf (offline fallback)"
/* Hashed TF-IDF vectors of n texts into out (n x dim): lowercased word tokens (runs of ASCII
 * letters and digits, or of non-ASCII bytes), hashed (FNV-1a 64) into dim buckets; sublinear term
 * frequency 1 + ln(tf); idf = ln((1 + n) / (1 + df)) + 1 with df the texts having the bucket;
 * rows L2-normalized. A text without a token gets a zero row. docs/text.md has the details. */
int v4r_tfidf_encode(const char *const *texts, size_t n, size_t dim, float *out, v4r_err *err);

/* A text template filled in: {title} and {description} replaced, {{ and }} written as one brace
 * (the template is checked beforehand: every other '{' or '}' is copied as it is). Caller frees. */
char *v4r_text_template_fill(const char *tpl, const char *title, const char *description);
/* Checks a text template: V4R_EINPUT naming the first unclosed '{', lone '}' or unknown placeholder
 * (by its character position); *uses_title says whether {title} appears. */
int v4r_text_template_check(const char *tpl, int *uses_title, v4r_err *err);

#endif

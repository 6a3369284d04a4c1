/* tokenizer internals: the tokenizer's state, the vocabulary hash, Unicode helpers, loading. */
#ifndef V4R_TOKENIZER_INTERNAL_H
#define V4R_TOKENIZER_INTERNAL_H

#include <stdint.h>

#include "vlm4rec/text.h"

/* An added token of tokenizer.json: matched in the raw text (normalized = 0) or in the
 * normalized text (normalized = 1) before pre-tokenization. */
typedef struct {
    int32_t *cps; /* the content (normalized when normalized = 1) as code points */
    size_t n_cps;
    int32_t id;
    uint8_t single_word, lstrip, rstrip, normalized;
} v4r_added_token;

struct v4r_tokenizer {
    char **tokens;      /* id -> token (NULL for ids without one) */
    uint32_t *lens;     /* id -> byte length */
    size_t n_tokens;    /* ids 0 .. n_tokens - 1, added tokens included */
    size_t cap_tokens;
    v4r_arena arena;    /* the token strings */
    int32_t *slots;     /* vocabulary hash of the WordPiece model: id + 1, 0 = empty */
    size_t mask;        /* slots - 1 (a power of two minus one) */
    size_t max_key_len; /* longest vocabulary entry in bytes */
    char prefix[16];    /* continuing_subword_prefix, "##" */
    size_t prefix_len;
    size_t max_chars;   /* max_input_chars_per_word */
    int32_t unk_id, cls_id, sep_id;
    int clean_text, chinese, strip_accents, lowercase;
    v4r_added_token *added;
    size_t n_added;
    uint64_t added_first[4]; /* bitmap of (first code point & 255) of the added tokens */
};

/* Vocabulary hash: ids of tokens[] inserted with v4r_vocab_put (a later equal key wins). */
void v4r_vocab_build(v4r_tokenizer *t, size_t n_model_tokens);
/* The id of prefix + s[0..n) (prefix only when cont), or -1. */
int32_t v4r_vocab_find(const v4r_tokenizer *t, const char *s, size_t n, int cont);
/* Sets id's token string (growing the table). */
void v4r_vocab_set(v4r_tokenizer *t, int32_t id, const char *s);

/* Decodes strict UTF-8 into code points (cps has room for strlen(s)); 0, or -1 with the byte
 * offset and the reason. */
int v4r_utf8_decode(const char *s, size_t len, int32_t *cps, size_t *n, size_t *bad_at, const char **why);
/* Encodes one code point; returns its byte count (1..4). */
size_t v4r_utf8_put(int32_t cp, char *out);

/* Unicode predicates as the `tokenizers` library defines them (categories from utf8proc). */
int v4r_uc_is_whitespace(int32_t cp);  /* \t \n \r and White_Space */
int v4r_uc_is_control(int32_t cp);     /* Cc, Cf, Co other than \t \n \r */
int v4r_uc_is_chinese(int32_t cp);     /* the CJK ideograph blocks of BERT */
int v4r_uc_is_punct(int32_t cp);       /* ASCII punctuation or P* */
int v4r_uc_is_word(int32_t cp);        /* regex \w: letters, marks, digits, Pc, joiners */
/* A growable code point vector (kept across the texts of one call). */
typedef struct {
    int32_t *v;
    size_t n, cap;
} v4r_cpvec;
void v4r_cpvec_reserve(v4r_cpvec *a, size_t extra);
/* BertNormalizer as configured in t: in[0..n) -> out (replaced); tmp is scratch. */
void v4r_normalize(const v4r_tokenizer *t, const int32_t *in, size_t n, v4r_cpvec *out, v4r_cpvec *tmp);

/* Loading (tokenizer_load.c): settings, vocabulary and added tokens of a model directory. */
int v4r_tokenizer_load_dir(v4r_tokenizer *t, const char *dir, v4r_err *err);

#endif

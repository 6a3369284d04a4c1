/* tokenizer: BERT WordPiece as `tokenizers` runs it: added tokens, normalizer, pre-tokenizer, WordPiece. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ---- vocabulary hash ---- */

#define FNV_SEED 1469598103934665603ULL

static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

void v4r_vocab_set(v4r_tokenizer *t, int32_t id, const char *s)
{
    size_t need = (size_t)id + 1;
    if (need > t->cap_tokens) {
        size_t cap = need < 2 * t->cap_tokens ? 2 * t->cap_tokens : need < 1024 ? 1024 : need;
        t->tokens = v4r_realloc(t->tokens, cap * sizeof *t->tokens);
        t->lens = v4r_realloc(t->lens, cap * sizeof *t->lens);
        t->cap_tokens = cap;
    }
    for (size_t i = t->n_tokens; i < need; i++) {
        t->tokens[i] = NULL;
        t->lens[i] = 0;
    }
    if (need > t->n_tokens)
        t->n_tokens = need;
    t->tokens[id] = v4r_arena_strdup(&t->arena, s);
    t->lens[id] = (uint32_t)strlen(s);
}

static int key_equal(const v4r_tokenizer *t, int32_t id, const char *s, size_t n, int cont)
{
    size_t p = cont ? t->prefix_len : 0;
    const char *tok = t->tokens[id];
    return t->lens[id] == p + n && (!p || !memcmp(tok, t->prefix, p)) && !memcmp(tok + p, s, n);
}

void v4r_vocab_build(v4r_tokenizer *t, size_t n_model_tokens)
{
    size_t cap = 16;
    while (cap < 2 * n_model_tokens)
        cap *= 2;
    free(t->slots);
    t->slots = v4r_calloc(cap, sizeof *t->slots);
    t->mask = cap - 1;
    t->max_key_len = 0;
    for (size_t id = 0; id < n_model_tokens && id < t->n_tokens; id++) {
        const char *tok = t->tokens[id];
        if (!tok)
            continue;
        size_t i = fnv(FNV_SEED, tok, t->lens[id]) & t->mask;
        while (t->slots[i] && !key_equal(t, t->slots[i] - 1, tok, t->lens[id], 0))
            i = (i + 1) & t->mask;
        t->slots[i] = (int32_t)id + 1; /* a later duplicate wins, as in the reference's map */
        if (t->lens[id] > t->max_key_len)
            t->max_key_len = t->lens[id];
    }
}

int32_t v4r_vocab_find(const v4r_tokenizer *t, const char *s, size_t n, int cont)
{
    uint64_t h = cont ? fnv(fnv(FNV_SEED, t->prefix, t->prefix_len), s, n) : fnv(FNV_SEED, s, n);
    for (size_t i = h & t->mask; t->slots[i]; i = (i + 1) & t->mask)
        if (key_equal(t, t->slots[i] - 1, s, n, cont))
            return t->slots[i] - 1;
    return -1;
}

/* ---- one tokenization run ---- */

typedef struct {
    const v4r_tokenizer *t;
    int32_t *ids;
    size_t n, cap;
    size_t limit; /* most tokens before the [SEP] ([CLS] included) */
    v4r_cpvec norm, tmp;
    char *word;
    size_t word_cap;
} tk_run;

typedef void (*piece_fn)(tk_run *r, const int32_t *v, size_t n);

static int run_full(const tk_run *r) { return r->n >= r->limit; }

static void emit(tk_run *r, int32_t id)
{
    if (run_full(r))
        return;
    if (r->n == r->cap)
        v4r_grow((void **)&r->ids, &r->cap, r->n + 1, sizeof *r->ids);
    r->ids[r->n++] = id;
}

/* The longest vocabulary entry at w[start..): its end offset (0 when none) and *id. */
static size_t longest_piece(const v4r_tokenizer *t, const char *w, size_t len, size_t start, int32_t *id)
{
    int cont = start > 0;
    size_t pre = cont ? t->prefix_len : 0;
    if (t->max_key_len <= pre)
        return 0;
    size_t room = t->max_key_len - pre;
    size_t end = len - start > room ? start + room : len;
    while (end > start && end < len && ((unsigned char)w[end] & 0xC0) == 0x80)
        end--;
    while (end > start) {
        if ((*id = v4r_vocab_find(t, w + start, end - start, cont)) >= 0)
            return end;
        do
            end--;
        while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80);
    }
    return 0;
}

/* WordPiece on one pre-token: greedy longest-match-first; [UNK] for a long or unmatched word. */
static void wordpiece(tk_run *r, const int32_t *v, size_t n)
{
    const v4r_tokenizer *t = r->t;
    if (n > t->max_chars) {
        emit(r, t->unk_id);
        return;
    }
    if (4 * n > r->word_cap)
        v4r_grow((void **)&r->word, &r->word_cap, 4 * n, 1);
    size_t len = 0, mark = r->n;
    for (size_t i = 0; i < n; i++)
        len += v4r_utf8_put(v[i], r->word + len);
    for (size_t start = 0; start < len;) { /* to the end: a bad tail makes the whole word [UNK] */
        int32_t id;
        size_t end = longest_piece(t, r->word, len, start, &id);
        if (!end) {
            r->n = mark;
            emit(r, t->unk_id);
            return;
        }
        emit(r, id);
        start = end;
    }
}

/* BertPreTokenizer: split on whitespace, isolate each punctuation character. */
static void pretokenize(tk_run *r, const int32_t *v, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n && !run_full(r); i++) {
        int ws = v4r_uc_is_whitespace(v[i]);
        if (!ws && !v4r_uc_is_punct(v[i]))
            continue;
        if (i > start)
            wordpiece(r, v + start, i - start);
        if (!ws)
            wordpiece(r, v + i, 1);
        start = i + 1;
    }
    if (n > start && !run_full(r))
        wordpiece(r, v + start, n - start);
}

/* The longest added token (of the given kind) starting at v[i], or NULL. */
static const v4r_added_token *added_at(const v4r_tokenizer *t, const int32_t *v, size_t n, size_t i, int normalized)
{
    unsigned b = (unsigned)v[i] & 255;
    if (!(t->added_first[b >> 6] >> (b & 63) & 1))
        return NULL;
    const v4r_added_token *best = NULL;
    for (size_t k = 0; k < t->n_added; k++) {
        const v4r_added_token *a = &t->added[k];
        if (a->normalized != normalized || a->n_cps > n - i || (best && a->n_cps <= best->n_cps))
            continue;
        if (!memcmp(a->cps, v + i, a->n_cps * sizeof *v))
            best = a;
    }
    return best;
}

/* single_word: the match must not touch a word character on either side. */
static int single_word_ok(const int32_t *v, size_t n, size_t start, size_t stop)
{
    return (start == 0 || !v4r_uc_is_word(v[start - 1])) && (stop == n || !v4r_uc_is_word(v[stop]));
}

/* Splits v around the added tokens of one kind (leftmost-longest), emitting them and passing
 * the text between them to fn, with the lstrip / rstrip / single_word rules of the reference. */
static void split_added(tk_run *r, const int32_t *v, size_t n, int normalized, piece_fn fn)
{
    size_t done = 0, i = 0;
    while (i < n && !run_full(r)) {
        const v4r_added_token *a = added_at(r->t, v, n, i, normalized);
        if (!a) {
            i++;
            continue;
        }
        size_t start = i, stop = i + a->n_cps;
        i = stop;
        if (a->single_word && !single_word_ok(v, n, start, stop))
            continue;
        while (a->lstrip && start > done && v4r_uc_is_whitespace(v[start - 1]))
            start--;
        while (a->rstrip && stop < n && v4r_uc_is_whitespace(v[stop]))
            stop++;
        if (start > done)
            fn(r, v + done, start - done);
        emit(r, a->id);
        done = i = stop;
    }
    if (n > done && !run_full(r))
        fn(r, v + done, n - done);
}

/* A stretch of raw text between added tokens: normalize, then the normalized added tokens,
 * then pre-tokenize and WordPiece. */
static void raw_piece(tk_run *r, const int32_t *v, size_t n)
{
    v4r_normalize(r->t, v, n, &r->norm, &r->tmp);
    split_added(r, r->norm.v, r->norm.n, 1, pretokenize);
}

int v4r_tokenize(const v4r_tokenizer *t, const char *text, size_t max_len, int32_t **ids, size_t *n, v4r_err *err)
{
    *ids = NULL;
    *n = 0;
    if (max_len == 1)
        return v4r_fail(err, V4R_EUSAGE, "a maximum length of 1 leaves no room for [CLS] and [SEP]");
    size_t len = strlen(text), ncp = 0, bad = 0;
    const char *why = "";
    int32_t *cps = v4r_malloc((len + 1) * sizeof *cps);
    if (v4r_utf8_decode(text, len, cps, &ncp, &bad, &why)) {
        free(cps);
        return v4r_fail(err, V4R_EINPUT, "invalid UTF-8 at byte offset %zu (%s)", bad, why);
    }
    tk_run r = {.t = t, .limit = max_len ? max_len - 1 : SIZE_MAX};
    emit(&r, t->cls_id);
    split_added(&r, cps, ncp, 0, raw_piece);
    r.limit = SIZE_MAX;
    emit(&r, t->sep_id);
    free(cps);
    free(r.norm.v);
    free(r.tmp.v);
    free(r.word);
    *ids = r.ids;
    *n = r.n;
    return V4R_OK;
}

const char *v4r_tokenizer_token(const v4r_tokenizer *t, int32_t id)
{
    return id >= 0 && (size_t)id < t->n_tokens ? t->tokens[id] : NULL;
}

size_t v4r_tokenizer_vocab_size(const v4r_tokenizer *t) { return t->n_tokens; }

void v4r_tokenizer_free(v4r_tokenizer *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_added; i++)
        free(t->added[i].cps);
    free(t->added);
    free(t->tokens);
    free(t->lens);
    free(t->slots);
    v4r_arena_free(&t->arena);
    free(t);
}

int v4r_tokenizer_load(const char *model_dir, v4r_tokenizer **out, v4r_err *err)
{
    *out = NULL;
    v4r_tokenizer *t = v4r_calloc(1, sizeof *t);
    int rc = v4r_tokenizer_load_dir(t, model_dir, err);
    if (rc) {
        v4r_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return V4R_OK;
}

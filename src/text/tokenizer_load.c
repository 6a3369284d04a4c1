/* tokenizer loading: vocab.txt or tokenizer.json, tokenizer_config.json settings, added tokens. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"
#include "vlm4rec/io.h"

/* Settings gathered while loading; strip_accents -1 = follow lowercase. */
typedef struct {
    int strip_accents;
    char unk[128], cls[128], sep[128];
    json_t *added; /* tokenizer.json's added_tokens (borrowed) */
    json_t *config_added; /* tokenizer_config.json's added_tokens_decoder (owned) */
    size_t n_model; /* ids below this are the WordPiece vocabulary */
} load_ctx;

static int json_flag(const json_t *obj, const char *key, int dflt)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    if (src && strlen(src) < cap)
        strcpy(dst, src);
}

/* A token setting of tokenizer_config.json: "[UNK]" or {"content": "[UNK]", ...}. */
static const char *token_name(const json_t *v)
{
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_string_value(v);
}

static int load_json(const char *dir, const char *name, json_t **out, v4r_err *err)
{
    char *path = v4r_path_join(dir, name);
    *out = NULL;
    int rc = V4R_OK;
    if (v4r_file_exists(path)) {
        json_error_t je;
        *out = json_load_file(path, 0, &je);
        if (!*out)
            rc = v4r_fail(err, V4R_EINPUT, "%s:%d: %s", path, je.line, je.text);
        else if (!json_is_object(*out))
            rc = v4r_fail(err, V4R_EINPUT, "%s: not a JSON object", path);
    }
    free(path);
    return rc;
}

/* vocab.txt: one token a line, the id is the line's index; trailing whitespace trimmed. */
static int read_vocab_txt(v4r_tokenizer *t, const char *path, load_ctx *c, v4r_err *err)
{
    v4r_lines r;
    int rc = v4r_lines_open(&r, path, err), got;
    while (!rc && (got = v4r_lines_next(&r, err)) == 1) {
        size_t n = r.len;
        while (n && (r.line[n - 1] == ' ' || r.line[n - 1] == '\t' || r.line[n - 1] == '\r'))
            n--;
        r.line[n] = 0;
        if (r.lineno > INT32_MAX)
            rc = v4r_fail(err, V4R_EINPUT, "%s: too many tokens", path);
        else
            v4r_vocab_set(t, (int32_t)(r.lineno - 1), r.line);
    }
    if (!rc && got < 0)
        rc = err->code;
    v4r_lines_close(&r);
    if (!rc && t->n_tokens == 0)
        rc = v4r_fail(err, V4R_EINPUT, "%s: empty vocabulary", path);
    c->n_model = t->n_tokens;
    return rc;
}

static int read_model(v4r_tokenizer *t, const json_t *model, load_ctx *c, const char *path, v4r_err *err)
{
    const char *type = json_string_value(json_object_get(model, "type"));
    const json_t *vocab = json_object_get(model, "vocab");
    if (!type || strcmp(type, "WordPiece") || !json_is_object(vocab) || json_object_size(vocab) == 0)
        return v4r_fail(err, V4R_EINPUT, "%s: the model is not a WordPiece model with a vocabulary", path);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v)
    {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id > 100000000)
            return v4r_fail(err, V4R_EINPUT, "%s: bad id for vocabulary entry '%s'", path, key);
        v4r_vocab_set(t, (int32_t)id, key);
    }
    c->n_model = t->n_tokens;
    copy_str(c->unk, sizeof c->unk, json_string_value(json_object_get(model, "unk_token")));
    const char *prefix = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    if (prefix && strlen(prefix) < sizeof t->prefix)
        strcpy(t->prefix, prefix);
    const json_t *mc = json_object_get(model, "max_input_chars_per_word");
    if (json_is_integer(mc) && json_integer_value(mc) >= 0)
        t->max_chars = (size_t)json_integer_value(mc);
    return V4R_OK;
}

static int read_normalizer(v4r_tokenizer *t, const json_t *norm, load_ctx *c, const char *path, v4r_err *err)
{
    if (!norm || json_is_null(norm)) {
        t->clean_text = t->chinese = t->lowercase = 0;
        c->strip_accents = 0;
        return V4R_OK;
    }
    const char *type = json_string_value(json_object_get(norm, "type"));
    if (!type || strcmp(type, "BertNormalizer"))
        return v4r_fail(err, V4R_EINPUT, "%s: unsupported normalizer '%s' (BertNormalizer only)", path,
                        type ? type : "?");
    t->clean_text = json_flag(norm, "clean_text", 1);
    t->chinese = json_flag(norm, "handle_chinese_chars", 1);
    t->lowercase = json_flag(norm, "lowercase", 1);
    c->strip_accents = json_flag(norm, "strip_accents", -1);
    return V4R_OK;
}

/* BertProcessing's cls / sep: ["[CLS]", 101]. */
static void read_post_processor(const json_t *pp, load_ctx *c)
{
    const char *type = json_string_value(json_object_get(pp, "type"));
    if (!type || strcmp(type, "BertProcessing"))
        return;
    copy_str(c->cls, sizeof c->cls, json_string_value(json_array_get(json_object_get(pp, "cls"), 0)));
    copy_str(c->sep, sizeof c->sep, json_string_value(json_array_get(json_object_get(pp, "sep"), 0)));
}

static int read_tokenizer_json(v4r_tokenizer *t, const json_t *tj, load_ctx *c, const char *path, v4r_err *err)
{
    int rc = read_model(t, json_object_get(tj, "model"), c, path, err);
    if (!rc)
        rc = read_normalizer(t, json_object_get(tj, "normalizer"), c, path, err);
    const json_t *pre = json_object_get(tj, "pre_tokenizer");
    const char *type = json_string_value(json_object_get(pre, "type"));
    if (!rc && (!type || strcmp(type, "BertPreTokenizer")))
        rc = v4r_fail(err, V4R_EINPUT, "%s: unsupported pre_tokenizer '%s' (BertPreTokenizer only)", path,
                      type ? type : "null");
    read_post_processor(json_object_get(tj, "post_processor"), c);
    c->added = json_object_get(tj, "added_tokens");
    return rc;
}

/* tokenizer_config.json: do_lower_case, strip_accents, tokenize_chinese_chars, token names. */
static void read_config(v4r_tokenizer *t, const json_t *cfg, load_ctx *c)
{
    t->lowercase = json_flag(cfg, "do_lower_case", t->lowercase);
    t->chinese = json_flag(cfg, "tokenize_chinese_chars", t->chinese);
    if (json_object_get(cfg, "strip_accents"))
        c->strip_accents = json_flag(cfg, "strip_accents", -1);
    if (c->added)
        return; /* tokenizer.json names its own special tokens */
    copy_str(c->unk, sizeof c->unk, token_name(json_object_get(cfg, "unk_token")));
    copy_str(c->cls, sizeof c->cls, token_name(json_object_get(cfg, "cls_token")));
    copy_str(c->sep, sizeof c->sep, token_name(json_object_get(cfg, "sep_token")));
    const json_t *dec = json_object_get(cfg, "added_tokens_decoder");
    if (json_is_object(dec) && json_object_size(dec))
        c->config_added = json_incref((json_t *)dec);
}

static int32_t find_id(v4r_tokenizer *t, const char *s)
{
    return v4r_vocab_find(t, s, strlen(s), 0);
}

/* Appends an added token; normalized ones are matched in their normalized form. */
static int add_token(v4r_tokenizer *t, const char *content, int32_t id, const json_t *flags, v4r_err *err)
{
    size_t len = strlen(content), n = 0, bad;
    const char *why;
    int32_t *cps = v4r_malloc((len + 1) * sizeof *cps);
    if (len == 0 || v4r_utf8_decode(content, len, cps, &n, &bad, &why)) {
        free(cps);
        return len ? v4r_fail(err, V4R_EINPUT, "added token '%s': invalid UTF-8", content) : V4R_OK;
    }
    v4r_added_token a = {.id = id,
                         .single_word = (uint8_t)json_flag(flags, "single_word", 0),
                         .lstrip = (uint8_t)json_flag(flags, "lstrip", 0),
                         .rstrip = (uint8_t)json_flag(flags, "rstrip", 0),
                         .normalized = (uint8_t)json_flag(flags, "normalized", !json_flag(flags, "special", 1))};
    if (a.normalized) {
        v4r_cpvec out = {0}, tmp = {0};
        v4r_normalize(t, cps, n, &out, &tmp);
        free(cps);
        free(tmp.v);
        cps = out.v;
        n = out.n;
    }
    if (n == 0) {
        free(cps);
        return V4R_OK;
    }
    a.cps = cps;
    a.n_cps = n;
    t->added = v4r_realloc(t->added, (t->n_added + 1) * sizeof *t->added);
    t->added[t->n_added++] = a;
    unsigned b = (unsigned)cps[0] & 255;
    t->added_first[b >> 6] |= 1ULL << (b & 63);
    if ((size_t)id >= t->n_tokens || !t->tokens[id])
        v4r_vocab_set(t, id, content);
    return V4R_OK;
}

static int add_from_json(v4r_tokenizer *t, const json_t *list, v4r_err *err)
{
    size_t i;
    const json_t *a;
    int rc = V4R_OK;
    json_array_foreach(list, i, a)
    {
        const char *content = json_string_value(json_object_get(a, "content"));
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        if (!content || id < 0 || id > 100000000)
            return v4r_fail(err, V4R_EINPUT, "tokenizer.json: added token %zu lacks a content or an id", i);
        if ((rc = add_token(t, content, (int32_t)id, a, err)))
            break;
    }
    return rc;
}

/* tokenizer_config.json's added_tokens_decoder: {"100": {"content": "[UNK]", ...}, ...}. */
static int add_from_config(v4r_tokenizer *t, const json_t *dec, v4r_err *err)
{
    const char *key;
    const json_t *a;
    int rc = V4R_OK;
    json_object_foreach((json_t *)dec, key, a)
    {
        const char *content = json_string_value(json_object_get(a, "content"));
        int64_t id;
        if (!content || v4r_parse_i64(key, &id) || id < 0 || id > 100000000)
            return v4r_fail(err, V4R_EINPUT, "tokenizer_config.json: bad added token '%s'", key);
        if ((rc = add_token(t, content, (int32_t)id, a, err)))
            break;
    }
    return rc;
}

/* Without tokenizer.json: BERT's special tokens, matched unnormalized (ids from the vocabulary,
 * or new ones after it). */
static int add_default_specials(v4r_tokenizer *t, const load_ctx *c, v4r_err *err)
{
    const char *names[5] = {"[PAD]", c->unk, c->cls, c->sep, "[MASK]"};
    int rc = V4R_OK;
    for (size_t i = 0; i < 5 && !rc; i++) {
        int32_t id = find_id(t, names[i]);
        rc = add_token(t, names[i], id >= 0 ? id : (int32_t)t->n_tokens, NULL, err);
    }
    return rc;
}

static int32_t special_id(const v4r_tokenizer *t, const char *name)
{
    int32_t id = v4r_vocab_find(t, name, strlen(name), 0);
    for (size_t i = 0; id < 0 && i < t->n_tokens; i++)
        if (t->tokens[i] && !strcmp(t->tokens[i], name))
            id = (int32_t)i;
    return id;
}

static int finish(v4r_tokenizer *t, load_ctx *c, const char *dir, v4r_err *err)
{
    t->strip_accents = c->strip_accents < 0 ? t->lowercase : c->strip_accents;
    t->prefix_len = strlen(t->prefix);
    v4r_vocab_build(t, c->n_model);
    int rc = c->added ? add_from_json(t, c->added, err)
             : c->config_added ? add_from_config(t, c->config_added, err)
                               : add_default_specials(t, c, err);
    if (rc)
        return rc;
    t->unk_id = special_id(t, c->unk);
    t->cls_id = special_id(t, c->cls);
    t->sep_id = special_id(t, c->sep);
    if (t->unk_id < 0 || t->cls_id < 0 || t->sep_id < 0)
        return v4r_fail(err, V4R_EINPUT, "%s: the vocabulary lacks %s", dir,
                        t->unk_id < 0 ? c->unk : t->cls_id < 0 ? c->cls : c->sep);
    return V4R_OK;
}

static int load_files(v4r_tokenizer *t, const char *dir, load_ctx *c, json_t **tj, json_t **cfg, v4r_err *err)
{
    int rc = load_json(dir, "tokenizer.json", tj, err);
    if (!rc)
        rc = load_json(dir, "tokenizer_config.json", cfg, err);
    char *path = v4r_path_join(dir, *tj ? "tokenizer.json" : "vocab.txt");
    if (!rc && *tj)
        rc = read_tokenizer_json(t, *tj, c, path, err);
    else if (!rc && v4r_file_exists(path))
        rc = read_vocab_txt(t, path, c, err);
    else if (!rc)
        rc = v4r_fail(err, V4R_EIO, "%s: no vocab.txt or tokenizer.json", dir);
    free(path);
    if (!rc && *cfg)
        read_config(t, *cfg, c);
    return rc;
}

int v4r_tokenizer_load_dir(v4r_tokenizer *t, const char *dir, v4r_err *err)
{
    load_ctx c = {.strip_accents = -1, .unk = "[UNK]", .cls = "[CLS]", .sep = "[SEP]"};
    t->clean_text = t->chinese = t->lowercase = 1;
    strcpy(t->prefix, "##");
    t->max_chars = 100;
    json_t *tj = NULL, *cfg = NULL;
    int rc = load_files(t, dir, &c, &tj, &cfg, err);
    if (!rc)
        rc = finish(t, &c, dir, err);
    json_decref(c.config_added);
    json_decref(tj);
    json_decref(cfg);
    return rc;
}

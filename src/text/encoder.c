/* The sentence encoder: a BERT directory with its sentence-transformers modules (pooling,
 * normalization, max_seq_length), length-sorted batches, pooling in input order. */
#include "bert.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct v4r_encoder {
    v4r_bert bert;
    v4r_tokenizer *tok;
    v4r_err tok_err; /* why there is no tokenizer */
    int pooling, normalize;
    size_t max_seq;
    v4r_bert_ws ws;   /* batches run one after another, the products threaded */
    v4r_bert_ws *tws; /* one per thread when whole batches run side by side */
    int n_tws;
};

/* ---- sentence-transformers files ---- */

typedef struct {
    char *transformer; /* directory of config.json, the weights, the tokenizer */
    char *pooling;     /* directory of the Pooling config, or NULL */
    int normalize, has_modules;
} st_modules;

static int load_json(const char *path, json_t **root, v4r_err *err)
{
    json_error_t je;
    *root = json_load_file(path, 0, &je);
    if (!*root)
        return v4r_fail(err, v4r_file_exists(path) ? V4R_EINPUT : V4R_EIO, "%s:%d: %s", path, je.line, je.text);
    return V4R_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* One modules.json entry: Transformer, Pooling or Normalize; anything else changes the vectors. */
static int read_module(const char *path, const char *dir, json_t *mod, st_modules *sm, v4r_err *err)
{
    const char *type = json_string_value(json_object_get(mod, "type"));
    const char *sub = json_string_value(json_object_get(mod, "path"));
    if (!type)
        return v4r_fail(err, V4R_EINPUT, "%s: a module without a \"type\"", path);
    char *where = v4r_path_join(dir, sub ? sub : "");
    if (ends_with(type, "models.Transformer") && !sm->transformer)
        sm->transformer = where;
    else if (ends_with(type, "models.Pooling") && !sm->pooling)
        sm->pooling = where;
    else if (ends_with(type, "models.Normalize")) {
        sm->normalize = 1;
        free(where);
    } else {
        free(where);
        return v4r_fail(err, V4R_EINPUT, "%s: module %s is not supported (only one Transformer, Pooling, Normalize)",
                        path, type);
    }
    return V4R_OK;
}

static int read_modules(const char *dir, st_modules *sm, v4r_err *err)
{
    char *path = v4r_path_join(dir, "modules.json");
    int rc = V4R_OK;
    if (v4r_file_exists(path)) {
        json_t *root;
        sm->has_modules = 1;
        rc = load_json(path, &root, err);
        if (!rc && !json_is_array(root))
            rc = v4r_fail(err, V4R_EINPUT, "%s: not a JSON array", path);
        for (size_t i = 0; !rc && i < json_array_size(root); i++)
            rc = read_module(path, dir, json_array_get(root, i), sm, err);
        if (!rc && (!sm->transformer || !sm->pooling))
            rc = v4r_fail(err, V4R_EINPUT, "%s: needs a Transformer and a Pooling module", path);
        json_decref(root);
    }
    if (!sm->transformer)
        sm->transformer = v4r_strdup(dir);
    free(path);
    return rc;
}

static int pool_flag(json_t *cfg, const char *key) { return json_is_true(json_object_get(cfg, key)); }

/* The one pooling mode of a Pooling config (booleans, or a "pooling_mode" string). */
static int pooling_mode(const char *path, json_t *cfg, int *mode, v4r_err *err)
{
    const char *s = json_string_value(json_object_get(cfg, "pooling_mode"));
    int cls = s ? !strcmp(s, "cls") : pool_flag(cfg, "pooling_mode_cls_token");
    int mean = s ? !strcmp(s, "mean") : pool_flag(cfg, "pooling_mode_mean_tokens");
    int max = s ? !strcmp(s, "max") : pool_flag(cfg, "pooling_mode_max_tokens");
    int other = s ? !(cls || mean || max)
                  : pool_flag(cfg, "pooling_mode_mean_sqrt_len_tokens") ||
                        pool_flag(cfg, "pooling_mode_weightedmean_tokens") || pool_flag(cfg, "pooling_mode_lasttoken");
    if (other || cls + mean + max != 1)
        return v4r_fail(err, V4R_EINPUT, "%s: pooling must be exactly one of mean, cls, max", path);
    *mode = cls ? V4R_POOL_CLS : max ? V4R_POOL_MAX : V4R_POOL_MEAN;
    return V4R_OK;
}

static int read_pooling(const char *dir, size_t hidden, int *mode, v4r_err *err)
{
    char *path = v4r_path_join(dir, "config.json");
    json_t *cfg;
    int rc = load_json(path, &cfg, err);
    if (!rc)
        rc = pooling_mode(path, cfg, mode, err);
    json_t *dim = json_object_get(cfg, "word_embedding_dimension");
    if (!rc && dim && (!json_is_integer(dim) || (size_t)json_integer_value(dim) != hidden))
        rc = v4r_fail(err, V4R_EINPUT, "%s: word_embedding_dimension is not the model's hidden_size %zu", path, hidden);
    json_decref(cfg);
    free(path);
    return rc;
}

/* max_seq_length of sentence_bert_config.json, capped by the position table. */
static int read_max_seq(const char *dir, size_t max_pos, size_t *out, v4r_err *err)
{
    char *path = v4r_path_join(dir, "sentence_bert_config.json");
    int rc = V4R_OK;
    *out = max_pos;
    json_t *cfg = NULL;
    if (v4r_file_exists(path) && !(rc = load_json(path, &cfg, err))) {
        json_t *v = json_object_get(cfg, "max_seq_length");
        if (v && (!json_is_integer(v) || json_integer_value(v) <= 0))
            rc = v4r_fail(err, V4R_EINPUT, "%s: max_seq_length must be a positive integer", path);
        else if (v && (size_t)json_integer_value(v) < max_pos)
            *out = (size_t)json_integer_value(v);
        json_decref(cfg);
    }
    free(path);
    return rc;
}

/* ---- loading ---- */

static int load_parts(v4r_encoder *e, const char *dir, int kernel, int engine, v4r_err *err)
{
    st_modules sm = {0};
    int rc = read_modules(dir, &sm, err);
    if (!rc)
        rc = v4r_bert_load(sm.transformer, kernel, engine, &e->bert, err);
    e->pooling = V4R_POOL_MEAN;
    e->normalize = sm.has_modules ? sm.normalize : 1;
    if (!rc && sm.pooling)
        rc = read_pooling(sm.pooling, e->bert.cfg.hidden, &e->pooling, err);
    if (!rc)
        rc = read_max_seq(sm.transformer, e->bert.cfg.max_pos, &e->max_seq, err);
    if (!rc && v4r_tokenizer_load(sm.transformer, &e->tok, &e->tok_err) != V4R_OK)
        e->tok = NULL; /* encoding token ids still works; encoding texts reports tok_err */
    free(sm.transformer);
    free(sm.pooling);
    return rc;
}

int v4r_encoder_load(const char *model_dir, v4r_encoder **out, v4r_err *err)
{
    return v4r_encoder_load_precision(model_dir, V4R_PREC_FP32, out, err);
}

int v4r_encoder_load_precision(const char *model_dir, int precision, v4r_encoder **out, v4r_err *err)
{
    int kernel, engine = V4R_BF16_NONE;
    *out = NULL;
    if (precision != V4R_PREC_FP32 && precision != V4R_PREC_BF16 && precision != V4R_PREC_FP16)
        return v4r_fail(err, V4R_EUSAGE, "encoder precision %d is not fp32, bf16 or fp16", precision);
    int rc = v4r_kernel_pick(&kernel, err);
    if (!rc)
        rc = v4r_half_pick(precision, &engine, err);
    if (rc)
        return rc;
    v4r_encoder *e = v4r_calloc(1, sizeof *e);
    rc = load_parts(e, model_dir, kernel, engine, err);
    if (rc) {
        v4r_encoder_free(e);
        return rc;
    }
    v4r_debug("encoder %s: %zu layers, hidden %zu, %s kernel, half precision %s, max_seq_length %zu", model_dir,
              e->bert.cfg.layers, e->bert.cfg.hidden, v4r_kernel_name(kernel), v4r_bf16_name(engine), e->max_seq);
    *out = e;
    return V4R_OK;
}

void v4r_encoder_free(v4r_encoder *e)
{
    if (!e)
        return;
    v4r_bert_free(&e->bert);
    v4r_tokenizer_free(e->tok);
    v4r_bert_ws_free(&e->ws);
    for (int t = 0; t < e->n_tws; t++)
        v4r_bert_ws_free(&e->tws[t]);
    free(e->tws);
    free(e);
}

size_t v4r_encoder_dim(const v4r_encoder *e) { return e->bert.cfg.hidden; }
int v4r_encoder_precision(const v4r_encoder *e)
{
    return e->bert.half == V4R_FP16_AVX512 ? V4R_PREC_FP16 : e->bert.half ? V4R_PREC_BF16 : V4R_PREC_FP32;
}
void v4r_encoder_warn_fallback(const v4r_encoder *e, int asked, const char *who)
{
    if (v4r_encoder_precision(e) != asked)
        v4r_warn("%s %s: this CPU has %s; falling back to fp32", who, v4r_precision_name(asked),
                 asked == V4R_PREC_BF16 ? "neither AVX512_BF16 nor AMX-BF16" : "no AVX512_FP16");
}
size_t v4r_encoder_max_seq_length(const v4r_encoder *e) { return e->max_seq; }
int v4r_encoder_pooling(const v4r_encoder *e) { return e->pooling; }
int v4r_encoder_normalizes(const v4r_encoder *e) { return e->normalize; }
const v4r_tokenizer *v4r_encoder_tokenizer(const v4r_encoder *e) { return e->tok; }
size_t v4r_encoder_layers(const v4r_encoder *e) { return e->bert.cfg.layers; }
size_t v4r_encoder_hidden_size(const v4r_encoder *e) { return e->bert.cfg.hidden; }

/* ---- encoding ---- */

static int check_ids(const v4r_encoder *e, const int32_t *ids, size_t len, size_t max_len, size_t index,
                     v4r_err *err)
{
    if (len == 0)
        return v4r_fail(err, V4R_EINPUT, "sequence %zu is empty (it needs at least [CLS] and [SEP])", index);
    if (len > max_len)
        return v4r_fail(err, V4R_EINPUT, "sequence %zu has %zu tokens, more than the %zu allowed", index, len, max_len);
    for (size_t p = 0; p < len; p++)
        if (ids[p] < 0 || (size_t)ids[p] >= e->bert.cfg.vocab)
            return v4r_fail(err, V4R_EINPUT, "sequence %zu: token id %d at position %zu is outside the vocabulary (%zu)",
                            index, (int)ids[p], p, e->bert.cfg.vocab);
    return V4R_OK;
}

/* The sentence vector of one sequence's last hidden states x (len x h). */
static void pool(const v4r_encoder *e, const float *x, size_t len, float *out)
{
    size_t h = e->bert.cfg.hidden;
    memcpy(out, x, h * sizeof *out);
    for (size_t p = 1; p < len && e->pooling != V4R_POOL_CLS; p++)
        for (size_t c = 0; c < h; c++)
            out[c] = e->pooling == V4R_POOL_MAX ? fmaxf(out[c], x[p * h + c]) : out[c] + x[p * h + c];
    if (e->pooling == V4R_POOL_MEAN)
        for (size_t c = 0; c < h; c++)
            out[c] /= (float)len;
    if (!e->normalize)
        return;
    double ss = 0;
    for (size_t c = 0; c < h; c++)
        ss += (double)out[c] * out[c];
    float norm = (float)sqrt(ss);
    norm = norm > 1e-12f ? norm : 1e-12f;
    for (size_t c = 0; c < h; c++)
        out[c] /= norm;
}

typedef struct {
    size_t len, index;
} by_len;

/* Longest first, then input order. */
static int cmp_by_len(const void *a, const void *b)
{
    const by_len *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? 1 : -1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Sequences order[0..n) as one packed batch on ws; vectors to out in input order. */
static void run_batch(v4r_encoder *e, v4r_bert_ws *ws, const int32_t *const *ids, const by_len *order, size_t n,
                      float *out)
{
    const int32_t **bids = v4r_malloc(n * sizeof *bids);
    size_t *blens = v4r_malloc(n * sizeof *blens), *first = v4r_malloc(n * sizeof *first), h = e->bert.cfg.hidden;
    for (size_t i = 0, t = 0; i < n; t += order[i].len, i++) {
        bids[i] = ids[order[i].index];
        blens[i] = order[i].len;
        first[i] = t;
    }
    v4r_bert_forward(&e->bert, bids, blens, n, ws, NULL);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        pool(e, ws->x + first[i] * h, blens[i], out + order[i].index * h);
    free(bids);
    free(blens);
    free(first);
}

/* Tokens a batch holds at most (a longer sequence makes a batch of its own). */
enum { BATCH_TOKENS = 1024 };

/* Splits order[0..n) into batches of consecutive sequences, at most bs of them and BATCH_TOKENS
 * tokens: batch b is order[start[b] .. start[b + 1]). Returns the count; *most: the largest
 * batch's tokens. */
static size_t plan_batches(const by_len *order, size_t n, size_t bs, size_t *start, size_t *most)
{
    size_t count = 0;
    *most = 0;
    for (size_t i = 0; i < n;) {
        size_t tokens = order[i].len, j = i + 1;
        while (j < n && j - i < bs && tokens + order[j].len <= BATCH_TOKENS)
            tokens += order[j++].len;
        start[count++] = i;
        *most = tokens > *most ? tokens : *most;
        i = j;
    }
    start[count] = n;
    return count;
}

/* The batches side by side, a whole batch per thread on the thread's own workspace with the
 * products inside on that thread alone: no barrier between the layers' steps, and a batch's
 * activations stay near its core. */
static void run_side_by_side(v4r_encoder *e, const int32_t *const *ids, const by_len *order, const size_t *start,
                             size_t count, size_t most, int nt, float *out)
{
    if (nt > e->n_tws) {
        e->tws = v4r_realloc(e->tws, (size_t)nt * sizeof *e->tws);
        memset(e->tws + e->n_tws, 0, (size_t)(nt - e->n_tws) * sizeof *e->tws);
        e->n_tws = nt;
    }
    for (int t = 0; t < nt; t++)
        v4r_bert_ws_reserve(&e->bert, &e->tws[t], most, order[0].len);
#pragma omp parallel num_threads(nt)
    {
        v4r_bert_ws *ws = &e->tws[omp_get_thread_num()];
        omp_set_num_threads(1); /* this task's setting: the regions inside run on this thread */
#pragma omp for schedule(dynamic, 1)
        for (size_t b = 0; b < count; b++)
            run_batch(e, ws, ids, order + start[b], start[b + 1] - start[b], out);
    }
}

/* fp16 holds magnitudes up to 65504: past it a product turns infinite and the vector NaN. The
 * first such vector by index is the error. */
static int check_finite(const v4r_encoder *e, const float *out, size_t n, v4r_err *err)
{
    size_t h = e->bert.cfg.hidden;
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < h; c++)
            if (!isfinite(out[i * h + c]))
                return v4r_fail(err, V4R_EINPUT,
                                "sequence %zu: its vector is not finite in fp16 (a value in the model went past "
                                "+-65504); encode with --precision fp32 or bf16",
                                i);
    return V4R_OK;
}

int v4r_encoder_encode_ids(v4r_encoder *e, const int32_t *const *ids, const size_t *lens, size_t n,
                           size_t batch_size, float *out, v4r_err *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = check_ids(e, ids[i], lens[i], e->max_seq, i, err);
        if (rc)
            return rc;
    }
    if (!n)
        return V4R_OK;
    by_len *order = v4r_malloc(n * sizeof *order);
    size_t *start = v4r_malloc((n + 1) * sizeof *start), most;
    for (size_t i = 0; i < n; i++)
        order[i] = (by_len){lens[i], i};
    qsort(order, n, sizeof *order, cmp_by_len);
    size_t count = plan_batches(order, n, batch_size ? batch_size : 32, start, &most);
    int nt = omp_get_max_threads();
    if (nt > 1 && count >= 4 * (size_t)nt) { /* enough batches that the last ones leave no thread idle long */
        run_side_by_side(e, ids, order, start, count, most, nt, out);
    } else {
        v4r_bert_ws_reserve(&e->bert, &e->ws, most, order[0].len); /* the largest batch sizes it once */
        for (size_t b = 0; b < count; b++)
            run_batch(e, &e->ws, ids, order + start[b], start[b + 1] - start[b], out);
    }
    free(order);
    free(start);
    return e->bert.half == V4R_FP16_AVX512 ? check_finite(e, out, n, err) : V4R_OK;
}

/* Tokenizes every text (in parallel); the first failing text by index is the error. */
static int tokenize_all(const v4r_encoder *e, const char *const *texts, size_t n, int32_t **ids, size_t *lens,
                        v4r_err *err)
{
    size_t bad = n;
    v4r_err first = {0};
#pragma omp parallel for schedule(dynamic, 16)
    for (size_t i = 0; i < n; i++) {
        v4r_err me = {0};
        if (v4r_tokenize(e->tok, texts[i], e->max_seq, &ids[i], &lens[i], &me) != V4R_OK) {
            ids[i] = NULL;
#pragma omp critical(v4r_encoder_tokenize)
            if (i < bad) {
                bad = i;
                first = me;
            }
        }
    }
    if (bad == n)
        return V4R_OK;
    v4r_err_prefix(&first, "text %zu: ", bad);
    if (err)
        *err = first;
    return first.code;
}

int v4r_encoder_encode_texts(v4r_encoder *e, const char *const *texts, size_t n, size_t batch_size, float *out,
                             v4r_err *err)
{
    if (!e->tok) {
        v4r_err why = e->tok_err;
        v4r_err_prefix(&why, "no tokenizer: ");
        if (err)
            *err = why;
        return why.code ? why.code : V4R_EINTERNAL;
    }
    int32_t **ids = v4r_calloc(n ? n : 1, sizeof *ids);
    size_t *lens = v4r_calloc(n ? n : 1, sizeof *lens);
    int rc = tokenize_all(e, texts, n, ids, lens, err);
    if (!rc)
        rc = v4r_encoder_encode_ids(e, (const int32_t *const *)ids, lens, n, batch_size, out, err);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(lens);
    return rc;
}

int v4r_encoder_hidden_states(v4r_encoder *e, const int32_t *ids, size_t len, float *hidden, v4r_err *err)
{
    int rc = check_ids(e, ids, len, e->bert.cfg.max_pos, 0, err);
    if (rc)
        return rc;
    v4r_bert_forward(&e->bert, &ids, &len, 1, &e->ws, hidden);
    return V4R_OK;
}

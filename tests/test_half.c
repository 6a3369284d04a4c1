/* Half precision: the bf16 linear layer (AMX and vdpbf16ps) and the fp16 one (vfmadd231ph) against
 * a reference on rounded operands within their summation's error bound, a row's numbers alone or in
 * a batch; the accuracy gate of `encode --precision bf16|fp16` (cosine with the fp32 vector >= 0.9999
 * for every fixture text, bert-tiny and the all-MiniLM-L6-v2 shape); the same bytes across batch
 * sizes and threads; the fp32 fallback. Skips each engine, saying so, on a CPU without it. */
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

static const char *engine_env[4] = {"none", "avx512", "amx", "auto"}; /* VLM4REC_BF16 or _FP16 */

static int precision_of(int engine) { return engine == V4R_FP16_AVX512 ? V4R_PREC_FP16 : V4R_PREC_BF16; }

static char *fixture(const char *rel) { return v4r_sprintf("%s/fixtures/%s", tu_shared(), rel); }

/* The engines this CPU runs (V4R_BF16_AVX512, V4R_BF16_AMX, V4R_FP16_AVX512), a message for each
 * it lacks; 0 when none. */
static int engines(int *list)
{
    int n = 0;
    if (v4r_cpu_has_avx512_bf16())
        list[n++] = V4R_BF16_AVX512;
    else
        print_message("skipped bf16: this CPU lacks AVX512_BF16 (cpuid 7.1 EAX bit 5): bf16 falls back to fp32\n");
    if (v4r_cpu_has_amx_bf16())
        list[n++] = V4R_BF16_AMX;
    if (v4r_cpu_has_avx512_fp16())
        list[n++] = V4R_FP16_AVX512;
    else
        print_message("skipped fp16: this CPU lacks AVX512_FP16 (cpuid 7.0 EDX bit 23): fp16 falls back to fp32\n");
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
static double round_f16(float f) { return v4r_f16_to_f32(v4r_f32_to_f16(f)); }

/* The double sum over i of the rounded x[i] w[i] (acc) and the bound on the engine's summation error
 * (err): float32 sums, 1e-6 of the sum of magnitudes; fp16 runs of 64, the half unit roundoff 2^-11
 * of the sum of the magnitudes of each run's partial sums (each fp16 FMA rounds once), the runs'
 * float32 sum on top. */
static void reference_dot(int engine, const float *x, const float *w, size_t in, double *acc, double *err)
{
    double mag = 0, partial = 0, partials = 0;
    *acc = 0;
    for (size_t i = 0; i < in; i++) {
        double t = engine == V4R_FP16_AVX512 ? round_f16(x[i]) * round_f16(w[i]) : round_bf16(x[i]) * round_bf16(w[i]);
        if (i % 64 == 0)
            partial = 0;
        partial += t;
        partials += fabs(partial);
        *acc += t;
        mag += fabs(t);
    }
    *err = 1e-6 * mag + (engine == V4R_FP16_AVX512 ? 1.01 * 0x1p-11 * partials : 0);
}

/* v rounded to IEEE half, nearest even, from any double (no double rounding through float): 11
 * significant bits, or the quantum 2^-24 among the subnormals. */
static double round_half_exact(double v)
{
    int e;
    if (v == 0)
        return v;
    frexp(v, &e);
    double quantum = ldexp(1.0, e - 11 < -24 ? -24 : e - 11);
    return nearbyint(v / quantum) * quantum;
}

/* What the fp16 engine computes for x . w, operation by operation: each FMA's exact sum rounded to
 * half once, the sum restarting every 64 depths, the runs' sums added in float32 in order. */
static float fp16_dot(const float *x, const float *w, size_t in)
{
    float sum = 0;
    for (size_t i0 = 0; i0 < in; i0 += 64) {
        double run = 0;
        for (size_t i = i0; i < in && i < i0 + 64; i++)
            run = round_half_exact(run + round_f16(x[i]) * round_f16(w[i]));
        sum = i0 ? sum + (float)run : (float)run;
    }
    return sum;
}

/* The fp16 layer without an activation gives the bytes of its emulation. */
static void check_fp16_exact(const v4r_linear *l, const float *x, const float *w, const float *b, const float *res,
                             size_t rows, float *y)
{
    size_t in = l->in, out = l->out;
    v4r_linear_apply(l, x, rows, NULL, 0, res, V4R_ACT_NONE, y);
    for (size_t r = 0; r < rows; r++)
        for (size_t o = 0; o < out; o++) {
            float want = fp16_dot(x + r * in, w + o * in, in) + b[o] + res[r * out + o];
            if (memcmp(&want, &y[r * out + o], sizeof want))
                fail_msg("fp16 row %zu column %zu: %.9g, its emulation %.9g", r, o, y[r * out + o], want);
        }
}

/* rows x in through a half layer (out x in): each output within the summation error bound of the
 * double sum over rounded operands (+ bias, + residual, GELU, whose slope stays under 1.2); each row
 * alone gives the same bits as within the batch. */
static void check_linear(int engine, size_t rows, size_t in, size_t out)
{
    float *w = malloc(out * in * sizeof *w), *b = malloc(out * sizeof *b), *x = malloc(rows * in * sizeof *x);
    float *res = malloc(rows * out * sizeof *res), *y = malloc(rows * out * sizeof *y), *y1 = malloc(out * sizeof *y1);
    fill(w, out * in, (unsigned)(out + in), 1.0f / sqrtf((float)in));
    fill(b, out, (unsigned)out, 0.5f);
    fill(x, rows * in, (unsigned)(rows + in), 2.0f);
    fill(res, rows * out, (unsigned)rows * 3, 1.0f);
    v4r_linear l;
    v4r_linear_init_half(&l, w, b, out, in, V4R_KERNEL_AVX512, engine);
    v4r_linear_apply(&l, x, rows, NULL, 0, res, V4R_ACT_GELU, y);
    for (size_t r = 0; r < rows; r++) {
        for (size_t o = 0; o < out; o++) {
            double acc, err;
            reference_dot(engine, x + r * in, w + o * in, in, &acc, &err);
            double pre = acc + b[o] + res[r * out + o], want = 0.5 * pre * (1 + erf(pre / sqrt(2.0)));
            assert_float_equal(y[r * out + o], want, 1e-6 * (1 + fabs(want)) + 1.2 * err);
        }
        v4r_linear_apply(&l, x + r * in, 1, NULL, 0, res + r * out, V4R_ACT_GELU, y1);
        assert_memory_equal(y1, y + r * out, out * sizeof *y1);
    }
    /* the products are the engine's: the fp32 layer differs */
    v4r_linear f;
    v4r_linear_init(&f, w, b, out, in, V4R_KERNEL_AVX512);
    v4r_linear_apply(&f, x, 1, NULL, 0, res, V4R_ACT_GELU, y1);
    assert_memory_not_equal(y1, y, out * sizeof *y1);
    if (engine == V4R_FP16_AVX512)
        check_fp16_exact(&l, x, w, b, res, rows, y);
    v4r_linear_free(&f);
    v4r_linear_free(&l);
    free(w), free(b), free(x), free(res), free(y), free(y1);
}

static void test_linear(void **state)
{
    (void)state;
    int list[3], n = engines(list);
    if (!n)
        skip();
    static const size_t shapes[][3] = {{1, 16, 16}, {33, 37, 45}, {70, 384, 1152}, {15, 1536, 384}, {40, 128, 33}};
    /* (rows, in, out): one row, odd depths and widths, more rows than a block */
    for (int e = 0; e < n; e++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            check_linear(list[e], shapes[s][0], shapes[s][1], shapes[s][2]);
}

/* ---- the encoder ---- */

/* model in precision, VLM4REC_BF16 or VLM4REC_FP16 (by the precision) set to engine. */
static v4r_encoder *load(const char *model, int precision, const char *engine)
{
    char *rel = v4r_sprintf("models/%s", model), *dir = fixture(rel);
    const char *var = precision == V4R_PREC_FP16 ? "VLM4REC_FP16" : "VLM4REC_BF16";
    v4r_encoder *e;
    v4r_err err = {0};
    setenv(var, engine, 1);
    int rc = v4r_encoder_load_precision(dir, precision, &e, &err);
    unsetenv(var);
    if (rc)
        fail_msg("%s", err.msg);
    free(rel);
    free(dir);
    return e;
}

static float *encode(v4r_encoder *e, size_t n, size_t batch) { return tu_encode(e, &tokens, n, batch); }

/* The smallest cosine between the engine's and the fp32 vectors vf of the first n fixture texts. */
static void gate(const char *model, const float *vf, size_t n, int engine)
{
    int precision = precision_of(engine);
    v4r_encoder *b = load(model, precision, engine_env[engine]);
    assert_int_equal(v4r_encoder_precision(b), precision);
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
    print_message("%s, %s by %s: min cosine with fp32 %.7f (text %zu), max abs diff %.2e over %zu texts\n", model,
                  v4r_precision_name(precision), v4r_bf16_name(engine), worst, at, diff, n);
    assert_true(worst >= 0.9999);
    assert_true(diff > 0); /* the half path ran */
    free(vb);
    v4r_encoder_free(b);
}

static void test_accuracy_gate(void **state)
{
    (void)state;
    int list[3], n = engines(list);
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
    int list[3], n = engines(list);
    if (!n)
        skip();
    for (int e = 0; e < n; e++) {
        v4r_encoder *b = load("minilm-l6-shape", precision_of(list[e]), engine_env[list[e]]);
        tu_same_across_batches(b, &tokens, SANITIZED ? 12 : 60);
        v4r_encoder_free(b);
    }
}

/* Without an engine (VLM4REC_BF16=none or VLM4REC_FP16=none stands for a CPU without one) bf16 and
 * fp16 run fp32, say so, and give the fp32 bytes; `encode --precision bf16|fp16` warns. */
static void test_fallback(void **state)
{
    (void)state;
    v4r_encoder *f = load("bert-tiny", V4R_PREC_FP32, "auto");
    size_t n = 40;
    float *vf = encode(f, n, 32);
    for (int p = V4R_PREC_BF16; p <= V4R_PREC_FP16; p++) {
        v4r_encoder *b = load("bert-tiny", p, "none");
        assert_int_equal(v4r_encoder_precision(b), V4R_PREC_FP32);
        float *vb = encode(b, n, 32);
        assert_memory_equal(vf, vb, n * v4r_encoder_dim(f) * sizeof *vf);
        free(vb);
        v4r_encoder_free(b);
    }
    free(vf);
    v4r_encoder_free(f);

    char *dir = tu_tmpdir(), *model = fixture("models/bert-tiny"), *out = NULL;
    tu_write(dir, "t.jsonl", "{\"item\": \"a\", \"text\": \"a red dress\"}\n");
    setenv("VLM4REC_BF16", "none", 1);
    int rc = tu_run(&out, "encode --model '%s' --input '%s/t.jsonl' -o '%s/v.npy' --precision bf16", model, dir, dir);
    unsetenv("VLM4REC_BF16");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "falling back to fp32"));
    free(out);
    setenv("VLM4REC_FP16", "none", 1);
    rc = tu_run(&out, "encode --model '%s' --input '%s/t.jsonl' -o '%s/v.npy' --precision fp16", model, dir, dir);
    unsetenv("VLM4REC_FP16");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "--precision fp16: this CPU has no AVX512_FP16; falling back to fp32"));
    free(out);
    rc = tu_run(&out, "encode --model '%s' --input '%s/t.jsonl' -o '%s/v.npy' --precision fp8", model, dir, dir);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "--precision must be fp32, bf16 or fp16"));
    free(out);
    setenv("VLM4REC_FP16", "fast", 1);
    rc = tu_run(&out, "encode --model '%s' --input '%s/t.jsonl' -o '%s/v.npy' --precision fp16", model, dir, dir);
    unsetenv("VLM4REC_FP16");
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "VLM4REC_FP16='fast'"));
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

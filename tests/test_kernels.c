/* Kernels: fp16/bf16 conversion, LayerNorm, GELU against erf, masked softmax, attention and linear
 * layers against double-precision references, and the invariances the encoder relies on (a row's
 * numbers do not depend on the other rows, the padding or the thread count), for both kernels. */
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#ifdef __F16C__
#include <immintrin.h>
#endif

#include "vlm4rec/kernels.h"

static float bits_f(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint32_t f_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static void fill(float *x, size_t n, uint64_t seed, float scale)
{
    v4r_rng r;
    v4r_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(v4r_rng_normal(&r) * scale);
}

/* The kernels to test: blas always, avx512 where the CPU has it. */
static int n_kernels(void) { return v4r_cpu_has_avx512() ? 2 : 1; }

/* ---- half precision ---- */

static void test_f16(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = v4r_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff));
            continue;
        }
        assert_int_equal(v4r_f32_to_f16(f), h); /* every half survives the round trip */
#ifdef __F16C__
        assert_int_equal(f_bits(f), f_bits(_cvtsh_ss((unsigned short)h)));
#endif
    }
    /* round to nearest even, overflow, subnormals */
    assert_int_equal(v4r_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(v4r_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(v4r_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(v4r_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(v4r_f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(v4r_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(v4r_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(v4r_f32_to_f16(0x1.8p-25f), 0x0001);
    assert_int_equal(v4r_f32_to_f16(-0.0f), 0x8000);
    assert_true(isnan(v4r_f16_to_f32(v4r_f32_to_f16(NAN))));
#ifdef __F16C__
    for (uint64_t b = 0; b < (1ull << 32); b += 4093) { /* a sweep of float bit patterns */
        float f = bits_f((uint32_t)b);
        if (!isnan(f))
            assert_int_equal(v4r_f32_to_f16(f), _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
    }
#endif
}

static void test_bf16(void **state)
{
    (void)state;
    assert_true(v4r_bf16_to_f32(0x3f80) == 1.0f);
    assert_int_equal(v4r_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80); /* tie: to even */
    assert_int_equal(v4r_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    assert_int_equal(v4r_f32_to_bf16(1.0f + 0x1.2p-8f), 0x3f81);
    assert_int_equal(v4r_f32_to_bf16(-2.0f), 0xc000);
    assert_true(isnan(v4r_bf16_to_f32(v4r_f32_to_bf16(NAN))));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = v4r_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            assert_int_equal(v4r_f32_to_bf16(f), h);
    }
}

static void test_bulk_conversion(void **state)
{
    (void)state;
    unsigned char buf[2 * 70 + 1];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    buf[1 + 2 * 5] = 0x00, buf[1 + 2 * 5 + 1] = 0x7e; /* a NaN among them */
    float a[70], b[70];
    v4r_f16_to_f32_n(buf + 1, a, 70); /* an odd address: any alignment */
    v4r_bf16_to_f32_n(buf + 1, b, 70);
    for (size_t i = 0; i < 70; i++) {
        uint16_t h = (uint16_t)(buf[1 + 2 * i] | buf[2 + 2 * i] << 8);
        float fa = v4r_f16_to_f32(h), fb = v4r_bf16_to_f32(h);
        assert_true(isnan(fa) ? isnan(a[i]) : f_bits(fa) == f_bits(a[i]));
        assert_true(isnan(fb) ? isnan(b[i]) : f_bits(fb) == f_bits(b[i]));
    }
}

/* ---- row operations ---- */

static void test_layernorm(void **state)
{
    (void)state;
    size_t sizes[] = {1, 7, 32, 100, 384};
    for (size_t s = 0; s < 5; s++) {
        size_t n = sizes[s], rows = 3;
        float *x = malloc(rows * n * sizeof *x), *g = malloc(n * sizeof *g), *b = malloc(n * sizeof *b);
        fill(x, rows * n, 1 + s, 3.0f);
        fill(g, n, 10 + s, 1.0f);
        fill(b, n, 20 + s, 1.0f);
        for (size_t i = 0; i < n; i++)
            x[2 * n + i] = 0.25f; /* a constant row gives beta */
        float *y = malloc(rows * n * sizeof *y);
        memcpy(y, x, rows * n * sizeof *y);
        v4r_layernorm(y, rows, n, g, b, 1e-12f);
        for (size_t r = 0; r < 2; r++) {
            double m = 0, v = 0;
            for (size_t i = 0; i < n; i++)
                m += x[r * n + i];
            m /= (double)n;
            for (size_t i = 0; i < n; i++)
                v += (x[r * n + i] - m) * (x[r * n + i] - m);
            v /= (double)n;
            for (size_t i = 0; i < n; i++) {
                double want = (x[r * n + i] - m) / sqrt(v + 1e-12) * g[i] + b[i];
                assert_float_equal(y[r * n + i], want, 2e-6 * (1 + fabs(want)));
            }
        }
        for (size_t i = 0; i < n; i++)
            assert_true(y[2 * n + i] == b[i]);
        free(x), free(g), free(b), free(y);
    }
}

static double gelu_ref(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double gelu_tanh(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
static double quick_gelu(double x) { return x / (1 + exp(-1.702 * x)); }

static double act_ref(int act, double x)
{
    switch (act) {
    case V4R_ACT_GELU: return gelu_ref(x);
    case V4R_ACT_GELU_TANH: return gelu_tanh(x);
    case V4R_ACT_RELU: return fmax(x, 0);
    case V4R_ACT_QUICK_GELU: return quick_gelu(x);
    default: return x;
    }
}

static void test_activations(void **state)
{
    (void)state;
    size_t n = 2000001;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++)
        x[i] = -10.0f + 20.0f * (float)i / (float)(n - 1);
    for (int k = 0; k < n_kernels(); k++) {
        double worst = 0;
        memcpy(y, x, n * sizeof *y);
        v4r_activate(y, n, V4R_ACT_GELU, k);
        for (size_t i = 0; i < n; i++) {
            double d = fabs(y[i] - gelu_ref(x[i])) / (1 + fabs(x[i]));
            worst = d > worst ? d : worst;
        }
        print_message("%s GELU: worst |error| / (1 + |x|) %.2g against erf\n", v4r_kernel_name(k), worst);
        if (worst > 2.5e-7)
            fail_msg("%s GELU: relative error %g against erf", v4r_kernel_name(k), worst);
        memcpy(y, x, n * sizeof *y);
        v4r_activate(y, n, V4R_ACT_GELU_TANH, k);
        for (size_t i = 0; i < n; i++)
            assert_float_equal(y[i], gelu_tanh(x[i]), 1e-6 * (1 + fabs(x[i])));
        memcpy(y, x, n * sizeof *y);
        v4r_activate(y, n, V4R_ACT_RELU, k);
        for (size_t i = 0; i < n; i++)
            assert_true(y[i] == (x[i] > 0 ? x[i] : 0.0f));
        memcpy(y, x, n * sizeof *y);
        v4r_activate(y, n, V4R_ACT_QUICK_GELU, k);
        for (size_t i = 0; i < n; i++)
            assert_float_equal(y[i], quick_gelu(x[i]), 3e-7 * (1 + fabs(x[i])));
    }
    /* far out: -0 (or a tiny negative) below, x itself above, never NaN */
    float far[4] = {-200.0f, -60.0f, 60.0f, 200.0f};
    for (int k = 0; k < n_kernels(); k++) {
        float t[4];
        memcpy(t, far, sizeof t);
        v4r_activate(t, 4, V4R_ACT_QUICK_GELU, k);
        assert_true(t[0] <= 0 && t[0] > -1e-30f && t[1] <= 0 && t[1] > -1e-30f);
        assert_true(t[2] == 60.0f && t[3] == 200.0f);
    }
    assert_float_equal(v4r_quick_gelu_ref(1.0f), 0.8457957659, 1e-7);
    assert_float_equal(v4r_gelu_ref(1.0f), 0.8413447460685429, 1e-7);
    assert_float_equal(v4r_gelu_tanh_ref(1.0f), 0.8411919906082768, 1e-7);
    free(x);
    free(y);
}

static void test_softmax_mask(void **state)
{
    (void)state;
    size_t sizes[] = {1, 5, 16, 37, 100};
    for (int k = 0; k < n_kernels(); k++)
        for (size_t s = 0; s < 5; s++) {
            size_t n = sizes[s];
            float x[100], y[100], sub[100];
            uint8_t mask[100];
            fill(x, n, 40 + s, 4.0f);
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                mask[i] = (uint8_t)(i % 3 != 1 || n == 1);
                if (mask[i])
                    sub[m++] = x[i];
            }
            memcpy(y, x, n * sizeof *y);
            v4r_softmax(y, n, mask, k);
            v4r_softmax(sub, m, NULL, k); /* the unmasked entries alone */
            double total = 0, mx = -INFINITY, z = 0;
            for (size_t i = 0; i < n; i++)
                if (mask[i])
                    mx = fmax(mx, x[i]);
            for (size_t i = 0; i < n; i++)
                z += mask[i] ? exp(x[i] - mx) : 0;
            for (size_t i = 0, j = 0; i < n; i++) {
                total += y[i];
                if (!mask[i]) {
                    assert_true(y[i] == 0.0f);
                    continue;
                }
                assert_float_equal(y[i], exp(x[i] - mx) / z, 2e-7);
                assert_float_equal(y[i], sub[j++], 3e-7);
            }
            assert_float_equal(total, 1.0, 1e-6);
            memset(mask, 0, sizeof mask);
            v4r_softmax(y, n, mask, k);
            for (size_t i = 0; i < n; i++)
                assert_true(y[i] == 0.0f);
        }
}

/* ---- attention ---- */

/* Double-precision attention of query row i, head h, over the first valid keys. */
static void attention_ref(const float *qkv, size_t ld, size_t valid, size_t heads, size_t hd, size_t i, size_t h,
                          double *out)
{
    size_t hidden = heads * hd;
    double s[128], mx = -INFINITY, z = 0;
    for (size_t j = 0; j < valid; j++) {
        s[j] = 0;
        for (size_t d = 0; d < hd; d++)
            s[j] += (double)qkv[i * ld + h * hd + d] * qkv[j * ld + hidden + h * hd + d];
        s[j] /= sqrt((double)hd);
        mx = fmax(mx, s[j]);
    }
    for (size_t j = 0; j < valid; j++)
        z += (s[j] = exp(s[j] - mx));
    for (size_t d = 0; d < hd; d++) {
        out[d] = 0;
        for (size_t j = 0; j < valid; j++)
            out[d] += s[j] / z * qkv[j * ld + 2 * hidden + h * hd + d];
    }
}

static void check_attention(int k, size_t len, size_t heads, size_t hd)
{
    size_t hidden = heads * hd, ld = 3 * hidden + 5, ldo = hidden + 3, valid = len > 3 ? len - 3 : len;
    float *qkv = malloc(len * ld * sizeof *qkv), *out = calloc(len * ldo, sizeof *out),
          *ref = calloc(valid * ldo, sizeof *ref);
    float *scratch = malloc(v4r_attention_scratch(len, hd) * sizeof *scratch);
    fill(qkv, len * ld, len * 31 + hd, 1.5f);
    v4r_attention(qkv, ld, len, valid, heads, hd, 0, heads, out, ldo, scratch, k);
    double worst = 0;
    for (size_t i = 0; i < valid; i++)
        for (size_t h = 0; h < heads; h++) {
            double want[64];
            attention_ref(qkv, ld, valid, heads, hd, i, h, want);
            for (size_t d = 0; d < hd; d++)
                worst = fmax(worst, fabs(out[i * ldo + h * hd + d] - want[d]));
        }
    if (worst > 1e-5)
        fail_msg("%s attention, %zu tokens, head size %zu: off by %g", v4r_kernel_name(k), len, hd, worst);
    if (getenv("V4R_TEST_VERBOSE"))
        print_message("%s attention, %zu tokens, head size %zu: max abs error %g\n", v4r_kernel_name(k), len, hd,
                      worst);
    /* the padded sequence's real rows equal the unpadded sequence's, bit for bit; heads one at a time
     * give the same numbers as all at once */
    for (size_t h = 0; h < heads; h++)
        v4r_attention(qkv, ld, valid, valid, heads, hd, h, 1, ref, ldo, scratch, k);
    for (size_t i = 0; i < valid; i++)
        assert_memory_equal(out + i * ldo, ref + i * ldo, hidden * sizeof *out);
    free(qkv), free(out), free(ref), free(scratch);
}

static void test_attention(void **state)
{
    (void)state;
    for (int k = 0; k < n_kernels(); k++) {
        check_attention(k, 1, 2, 8);
        check_attention(k, 17, 4, 8);
        check_attention(k, 40, 3, 32);
        check_attention(k, 79, 2, 20);
        check_attention(k, 100, 2, 64);
    }
}

/* ---- linear layers ---- */

static void linear_case(int k, size_t rows, size_t out, size_t in, int act, int with_res)
{
    float *w = malloc(out * in * sizeof *w), *b = malloc(out * sizeof *b), *x = malloc(rows * in * sizeof *x);
    float *res = malloc(rows * out * sizeof *res), *y = malloc(rows * out * sizeof *y), *y1 = malloc(rows * out * sizeof *y1);
    fill(w, out * in, out + in, 1.0f / sqrtf((float)in));
    fill(b, out, out, 0.5f);
    fill(x, rows * in, rows + in, 1.0f);
    fill(res, rows * out, rows * 3, 1.0f);
    v4r_linear l;
    v4r_linear_init(&l, w, b, out, in, k);
    size_t seg[4] = {0, rows / 3, rows / 3 + 1, rows};
    v4r_linear_apply(&l, x, rows, seg, 3, with_res ? res : NULL, act, y);
    for (size_t r = 0; r < rows; r++) {
        for (size_t o = 0; o < out; o++) {
            double acc = 0;
            for (size_t i = 0; i < in; i++)
                acc += (double)x[r * in + i] * w[o * in + i];
            acc += b[o] + (with_res ? res[r * out + o] : 0);
            double want = act_ref(act, acc);
            assert_float_equal(y[r * out + o], want, 1e-5 * (1 + fabs(want)));
        }
    }
    /* a segment alone gives the same bits as within the batch */
    for (size_t s = 0; s < 3; s++) {
        size_t r0 = seg[s], m = seg[s + 1] - r0;
        v4r_linear_apply(&l, x + r0 * in, m, NULL, 0, with_res ? res + r0 * out : NULL, act, y1);
        assert_memory_equal(y1, y + r0 * out, m * out * sizeof *y1);
    }
    v4r_linear_free(&l);
    free(w), free(b), free(x), free(res), free(y), free(y1);
}

static void test_linear(void **state)
{
    (void)state;
    for (int k = 0; k < n_kernels(); k++) {
        linear_case(k, 1, 32, 32, V4R_ACT_NONE, 0);
        linear_case(k, 15, 45, 7, V4R_ACT_GELU, 1);
        linear_case(k, 29, 96, 300, V4R_ACT_RELU, 0);
        linear_case(k, 33, 64, 600, V4R_ACT_NONE, 1); /* deeper than one depth block */
        linear_case(k, 20, 50, 40, V4R_ACT_QUICK_GELU, 1);
        linear_case(k, 9, 70, 33, V4R_ACT_GELU_TANH, 0);
    }
}

/* 1 and 2 threads, and other segments around, give the same bits. */
static void test_linear_threads(void **state)
{
    (void)state;
    size_t rows = 200, out = 160, in = 520, seg[5] = {0, 3, 90, 91, 200};
    float *w = malloc(out * in * sizeof *w), *x = malloc(rows * in * sizeof *x);
    float *y1 = malloc(rows * out * sizeof *y1), *y2 = malloc(rows * out * sizeof *y2);
    fill(w, out * in, 5, 0.05f);
    fill(x, rows * in, 6, 1.0f);
    int saved = omp_get_max_threads();
    for (int k = 0; k < n_kernels(); k++) {
        v4r_linear l;
        v4r_linear_init(&l, w, NULL, out, in, k);
        omp_set_num_threads(1);
        v4r_linear_apply(&l, x, rows, seg, 4, NULL, V4R_ACT_GELU, y1);
        omp_set_num_threads(2);
        v4r_linear_apply(&l, x, rows, seg, 4, NULL, V4R_ACT_GELU, y2);
        assert_memory_equal(y1, y2, rows * out * sizeof *y1);
        size_t later[4] = {0, 87, 88, 197}; /* the same segments less the first */
        v4r_linear_apply(&l, x + 3 * in, rows - 3, later, 3, NULL, V4R_ACT_GELU, y2);
        assert_memory_equal(y1 + 3 * out, y2, (rows - 3) * out * sizeof *y1);
        v4r_linear_free(&l);
    }
    omp_set_num_threads(saved);
    free(w), free(x), free(y1), free(y2);
}

/* v4r_mlp_apply: the same bits as fc1 then fc2 through v4r_linear_apply, in place (y = x) too,
 * at 1 and 2 threads; fc2 deeper than one depth block, ragged rows and columns. The _norm forms of
 * both: the same bits as v4r_layernorm after. */
static void mlp_case(int k, size_t rows, size_t hidden, size_t inter, int act)
{
    size_t hx = rows * hidden;
    float *w1 = malloc(inter * hidden * sizeof *w1), *b1 = malloc(inter * sizeof *b1);
    float *w2 = malloc(hidden * inter * sizeof *w2), *b2 = malloc(hidden * sizeof *b2);
    float *x = malloc(hx * sizeof *x), *res = malloc(hx * sizeof *res), *mid = malloc(rows * inter * sizeof *mid);
    float *want = malloc(hx * sizeof *want), *got = malloc(hx * sizeof *got);
    fill(w1, inter * hidden, 11, 0.1f), fill(b1, inter, 12, 0.5f), fill(w2, hidden * inter, 13, 0.05f);
    fill(b2, hidden, 14, 0.5f), fill(x, hx, 15, 1.0f), fill(res, hx, 16, 1.0f);
    v4r_linear fc1, fc2;
    v4r_linear_init(&fc1, w1, b1, inter, hidden, k);
    v4r_linear_init(&fc2, w2, b2, hidden, inter, k);
    size_t seg[3] = {0, rows / 2, rows};
    v4r_linear_apply(&fc1, x, rows, seg, 2, NULL, act, mid);
    v4r_linear_apply(&fc2, mid, rows, seg, 2, res, V4R_ACT_NONE, want);
    float *gamma = malloc(hidden * sizeof *gamma), *beta = malloc(hidden * sizeof *beta);
    float *want_ln = malloc(hx * sizeof *want_ln);
    fill(gamma, hidden, 17, 1.0f), fill(beta, hidden, 18, 0.5f);
    v4r_norm ln = {gamma, beta, 1e-5f};
    memcpy(want_ln, want, hx * sizeof *want_ln);
    v4r_layernorm(want_ln, rows, hidden, gamma, beta, ln.eps);
    int saved = omp_get_max_threads();
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        memset(got, 0, hx * sizeof *got);
        v4r_mlp_apply(&fc1, &fc2, x, rows, seg, 2, res, act, mid, got);
        assert_memory_equal(got, want, hx * sizeof *got);
        memcpy(got, x, hx * sizeof *got); /* in place: y is x */
        v4r_mlp_apply(&fc1, &fc2, got, rows, seg, 2, res, act, mid, got);
        assert_memory_equal(got, want, hx * sizeof *got);
        /* with the LayerNorm after: the same bits as v4r_layernorm over the whole output */
        memset(got, 0, hx * sizeof *got);
        v4r_mlp_apply_norm(&fc1, &fc2, x, rows, seg, 2, res, act, mid, got, &ln);
        assert_memory_equal(got, want_ln, hx * sizeof *got);
        v4r_linear_apply(&fc1, x, rows, seg, 2, NULL, act, mid);
        memset(got, 0, hx * sizeof *got);
        v4r_linear_apply_norm(&fc2, mid, rows, seg, 2, res, V4R_ACT_NONE, got, &ln);
        assert_memory_equal(got, want_ln, hx * sizeof *got);
    }
    omp_set_num_threads(saved);
    v4r_linear_free(&fc1);
    v4r_linear_free(&fc2);
    free(w1), free(b1), free(w2), free(b2), free(x), free(res), free(mid), free(want), free(got);
    free(gamma), free(beta), free(want_ln);
}

static void test_mlp(void **state)
{
    (void)state;
    for (int k = 0; k < n_kernels(); k++) {
        mlp_case(k, 1, 32, 64, V4R_ACT_GELU);
        mlp_case(k, 215, 40, 450, V4R_ACT_GELU); /* several row blocks; fc2 deeper than one block */
        mlp_case(k, 37, 48, 96, V4R_ACT_GELU_TANH);
        mlp_case(k, 20, 33, 70, V4R_ACT_QUICK_GELU);
    }
}

static void test_kernel_pick(void **state)
{
    (void)state;
    int k;
    v4r_err err = {0};
    setenv("VLM4REC_KERNEL", "blas", 1);
    assert_int_equal(v4r_kernel_pick(&k, &err), 0);
    assert_int_equal(k, V4R_KERNEL_BLAS);
    setenv("VLM4REC_KERNEL", "auto", 1);
    assert_int_equal(v4r_kernel_pick(&k, &err), 0);
    assert_int_equal(k, v4r_cpu_has_avx512() ? V4R_KERNEL_AVX512 : V4R_KERNEL_BLAS);
    setenv("VLM4REC_KERNEL", "avx512", 1);
    assert_int_equal(v4r_kernel_pick(&k, &err), v4r_cpu_has_avx512() ? V4R_OK : V4R_EUSAGE);
    setenv("VLM4REC_KERNEL", "fast", 1);
    assert_int_equal(v4r_kernel_pick(&k, &err), V4R_EUSAGE);
    assert_non_null(strstr(err.msg, "'fast'"));
    unsetenv("VLM4REC_KERNEL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16),           cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_bulk_conversion), cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_activations),   cmocka_unit_test(test_softmax_mask),
        cmocka_unit_test(test_attention),     cmocka_unit_test(test_linear),
        cmocka_unit_test(test_linear_threads), cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_kernel_pick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

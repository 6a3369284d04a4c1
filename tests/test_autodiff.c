/* The autodiff tape: every operation's forward values against a plain reference and its gradient
 * against central finite differences; Adam against torch.optim.Adam's update, clipping, the
 * learning-rate schedules, safetensors output read back, and thread-count independence. */
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/fusion.h"
#include "vlm4rec/io.h"

/* ---- the finite-difference checker ---- */

typedef v4r_ad_tensor *(*build_fn)(v4r_ad_tape *tape, v4r_ad_tensor **in, const void *ctx);

typedef struct {
    size_t rows, cols;
    float away_from; /* keep entries at least this far from 0 (ReLU's kink); 0 = anything */
} input_spec;

static void fill_normal(float *x, size_t n, uint64_t seed, float scale)
{
    v4r_rng r;
    v4r_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(v4r_rng_normal(&r) * scale);
}

/* sum(out * weights) in double: the scalar whose gradient the checker compares. */
static double weighted(const v4r_ad_tensor *out, const float *w)
{
    double s = 0;
    for (size_t i = 0; i < out->rows * out->cols; i++)
        s += (double)out->val[i] * w[i];
    return s;
}

/* Builds op(inputs), takes loss = sum(out * W) with a random W, and compares d loss / d input
 * with central differences for every input entry. */
static void check_grad(build_fn build, const void *ctx, const input_spec *specs, size_t n_in, uint64_t seed)
{
    v4r_params ps;
    v4r_params_init(&ps);
    v4r_ad_tensor *in[4];
    for (size_t k = 0; k < n_in; k++) {
        size_t shape[2] = {specs[k].rows, specs[k].cols};
        char name[32];
        snprintf(name, sizeof name, "in%zu", k);
        in[k] = v4r_params_add(&ps, name, 2, shape);
        fill_normal(in[k]->val, shape[0] * shape[1], seed + k, 1.0f);
        for (size_t i = 0; i < shape[0] * shape[1]; i++)
            if (specs[k].away_from > 0 && fabsf(in[k]->val[i]) < specs[k].away_from)
                in[k]->val[i] += in[k]->val[i] < 0 ? -specs[k].away_from : specs[k].away_from;
    }
    v4r_ad_tape *tape = v4r_ad_tape_new();
    v4r_ad_tensor *out = build(tape, in, ctx);
    size_t n_out = out->rows * out->cols;
    float *w = v4r_malloc(n_out * sizeof *w);
    fill_normal(w, n_out, seed + 100, 1.0f);
    v4r_ad_tensor *loss = v4r_ad_sum(tape, v4r_ad_mul(tape, out, v4r_ad_const(tape, out->rows, out->cols, w)));
    v4r_ad_backward(tape, loss);
    const float h = 1e-2f;
    for (size_t k = 0; k < n_in; k++)
        for (size_t i = 0; i < in[k]->rows * in[k]->cols; i++) {
            float keep = in[k]->val[i];
            in[k]->val[i] = keep + h;
            v4r_ad_tape_reset(tape);
            double up = weighted(build(tape, in, ctx), w);
            in[k]->val[i] = keep - h;
            v4r_ad_tape_reset(tape);
            double down = weighted(build(tape, in, ctx), w);
            in[k]->val[i] = keep;
            double numeric = (up - down) / (2.0 * h), analytic = in[k]->grad[i];
            if (fabs(numeric - analytic) > 3e-3 + 1e-2 * fabs(numeric))
                fail_msg("input %zu entry %zu: analytic %.6g, numeric %.6g", k, i, analytic, numeric);
        }
    v4r_ad_tape_free(tape);
    free(w);
    v4r_params_free(&ps);
}

/* ---- builders ---- */

static v4r_ad_tensor *b_matmul(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    const int *flags = ctx;
    return v4r_ad_matmul(t, in[0], in[1], flags[0], flags[1]);
}
static v4r_ad_tensor *b_linear(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    return v4r_ad_linear(t, in[0], in[1], ctx ? in[2] : NULL);
}
static v4r_ad_tensor *b_add(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx) { return v4r_ad_add(t, in[0], in[1]); }
static v4r_ad_tensor *b_sub(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx) { return v4r_ad_sub(t, in[0], in[1]); }
static v4r_ad_tensor *b_mul(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx) { return v4r_ad_mul(t, in[0], in[1]); }
static v4r_ad_tensor *b_scale(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    return v4r_ad_scale(t, in[0], -2.5f);
}
static v4r_ad_tensor *b_relu(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx) { return v4r_ad_relu(t, in[0]); }
static v4r_ad_tensor *b_tanh(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx) { return v4r_ad_tanh(t, in[0]); }
static v4r_ad_tensor *b_sigmoid(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    return v4r_ad_sigmoid(t, in[0]);
}
static v4r_ad_tensor *b_logsig(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    return v4r_ad_log_sigmoid(t, v4r_ad_scale(t, in[0], 3.0f));
}
static v4r_ad_tensor *b_softmax(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    return v4r_ad_softmax(t, in[0]);
}
static v4r_ad_tensor *b_xent(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    return v4r_ad_xent(t, in[0], ctx);
}
static v4r_ad_tensor *b_layernorm(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    return v4r_ad_layernorm(t, in[0], in[1], in[2], 1e-5f);
}
static v4r_ad_tensor *b_l2norm(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    return v4r_ad_l2norm(t, in[0], 1e-12f);
}
static v4r_ad_tensor *b_concat(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    return v4r_ad_concat(t, in[0], in[1], *(const int *)ctx);
}
static v4r_ad_tensor *b_slice(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    int axis = *(const int *)ctx;
    return v4r_ad_slice(t, in[0], axis, 1, 2);
}
static v4r_ad_tensor *b_gather(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    static const int32_t idx[] = {2, 0, 2, 3, 2};
    return v4r_ad_gather(t, in[0], idx, 5);
}
static v4r_ad_tensor *b_mean(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx) { return v4r_ad_mean(t, in[0]); }
static v4r_ad_tensor *b_sum(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx) { return v4r_ad_sum(t, in[0]); }
static v4r_ad_tensor *b_rowsum(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx) { return v4r_ad_rowsum(t, in[0]); }
static v4r_ad_tensor *b_spmm(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx) { return v4r_ad_spmm(t, ctx, in[0]); }
static v4r_ad_tensor *b_rfft(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx) { return v4r_ad_rfft(t, in[0]); }
static v4r_ad_tensor *b_irfft(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    return v4r_ad_irfft(t, in[0], *(const size_t *)ctx);
}
static v4r_ad_tensor *b_cmul(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx) { return v4r_ad_cmul(t, in[0], in[1]); }
/* SMORE's spectral step on one modality pair: irfft(rfft(a) * rfft(b) * w). */
static v4r_ad_tensor *b_spectral(v4r_ad_tape *t, v4r_ad_tensor **in, const void *ctx)
{
    v4r_ad_tensor *fa = v4r_ad_rfft(t, in[0]), *fb = v4r_ad_rfft(t, in[1]);
    return v4r_ad_irfft(t, v4r_ad_cmul(t, v4r_ad_cmul(t, fa, fb), in[2]), in[0]->cols);
}

/* ---- gradient tests ---- */

static void test_grad_matmul(void **state)
{
    (void)state;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int flags[2] = {ta, tb};
            input_spec s[2] = {{ta ? 4 : 3, ta ? 3 : 4, 0}, {tb ? 5 : 4, tb ? 4 : 5, 0}};
            check_grad(b_matmul, flags, s, 2, 10 + (uint64_t)(2 * ta + tb));
        }
}

static void test_grad_linear(void **state)
{
    (void)state;
    input_spec s[3] = {{6, 5, 0}, {4, 5, 0}, {1, 4, 0}};
    check_grad(b_linear, "bias", s, 3, 20);
    check_grad(b_linear, NULL, s, 2, 21);
}

static void test_grad_broadcast(void **state)
{
    (void)state;
    static const size_t shapes[][2] = {{4, 3}, {1, 3}, {4, 1}, {1, 1}};
    build_fn fns[] = {b_add, b_sub, b_mul};
    for (int f = 0; f < 3; f++)
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++) {
                if (a != 0 && b != 0)
                    continue; /* one operand carries the full shape */
                input_spec s[2] = {{shapes[a][0], shapes[a][1], 0}, {shapes[b][0], shapes[b][1], 0}};
                check_grad(fns[f], NULL, s, 2, 30 + (uint64_t)(16 * f + 4 * a + b));
            }
    input_spec s1[1] = {{3, 4, 0}};
    check_grad(b_scale, NULL, s1, 1, 40);
}

static void test_grad_activations(void **state)
{
    (void)state;
    input_spec s[1] = {{5, 7, 0}}, relu[1] = {{5, 7, 0.05f}};
    check_grad(b_relu, NULL, relu, 1, 50);
    check_grad(b_tanh, NULL, s, 1, 51);
    check_grad(b_sigmoid, NULL, s, 1, 52);
    check_grad(b_logsig, NULL, s, 1, 53);
    check_grad(b_softmax, NULL, s, 1, 54);
    static const int32_t target[5] = {0, 6, 3, 3, 1};
    check_grad(b_xent, target, s, 1, 55);
}

static void test_grad_norms(void **state)
{
    (void)state;
    input_spec ln[3] = {{4, 6, 0}, {1, 6, 0}, {1, 6, 0}};
    check_grad(b_layernorm, NULL, ln, 3, 60);
    input_spec l2[1] = {{4, 6, 0}};
    check_grad(b_l2norm, NULL, l2, 1, 61);
}

static void test_grad_shapes(void **state)
{
    (void)state;
    int axis0 = 0, axis1 = 1;
    input_spec rows[2] = {{2, 3, 0}, {4, 3, 0}}, cols[2] = {{3, 2, 0}, {3, 4, 0}};
    check_grad(b_concat, &axis0, rows, 2, 70);
    check_grad(b_concat, &axis1, cols, 2, 71);
    input_spec x[1] = {{4, 5, 0}};
    check_grad(b_slice, &axis0, x, 1, 72);
    check_grad(b_slice, &axis1, x, 1, 73);
    check_grad(b_gather, NULL, x, 1, 74);
    check_grad(b_mean, NULL, x, 1, 75);
    check_grad(b_sum, NULL, x, 1, 76);
    check_grad(b_rowsum, NULL, x, 1, 77);
}

/* A 4 x 5 sparse matrix with a duplicate entry (summed) and an empty row. */
static void small_spmat(v4r_spmat *m)
{
    static const int32_t r[] = {0, 0, 2, 3, 0, 3, 3};
    static const int32_t c[] = {1, 4, 0, 2, 1, 4, 0};
    static const float v[] = {0.5f, -1.0f, 2.0f, 0.25f, 0.75f, 1.5f, -0.5f};
    v4r_spmat_build(m, 4, 5, 7, r, c, v);
}

static void test_grad_spmm(void **state)
{
    (void)state;
    v4r_spmat m;
    small_spmat(&m);
    assert_int_equal(m.a.nnz, 6); /* (0,1) twice */
    input_spec x[1] = {{5, 3, 0}};
    check_grad(b_spmm, &m, x, 1, 80);
    v4r_spmat_free(&m);
}

static void test_grad_fft(void **state)
{
    (void)state;
    for (size_t n = 5; n <= 8; n += 3) { /* odd and even lengths */
        input_spec x[1] = {{3, n, 0}};
        check_grad(b_rfft, NULL, x, 1, 90 + n);
        input_spec z[1] = {{3, 2 * (n / 2 + 1), 0}};
        check_grad(b_irfft, &n, z, 1, 91 + n);
    }
    input_spec c[2] = {{4, 6, 0}, {1, 6, 0}};
    check_grad(b_cmul, NULL, c, 2, 95);
    input_spec c2[2] = {{4, 6, 0}, {4, 6, 0}};
    check_grad(b_cmul, NULL, c2, 2, 96);
    input_spec sp[3] = {{3, 8, 0}, {3, 8, 0}, {1, 10, 0}};
    check_grad(b_spectral, NULL, sp, 3, 97);
}

/* ---- forward values ---- */

static v4r_ad_tensor *konst(v4r_ad_tape *t, size_t rows, size_t cols, uint64_t seed)
{
    v4r_ad_tensor *x = v4r_ad_new(t, rows, cols);
    fill_normal(x->val, rows * cols, seed, 1.0f);
    return x;
}

static void test_forward_values(void **state)
{
    (void)state;
    v4r_ad_tape *t = v4r_ad_tape_new();
    /* matmul with A^T */
    v4r_ad_tensor *a = konst(t, 4, 3, 1), *b = konst(t, 4, 5, 2), *c = v4r_ad_matmul(t, a, b, 1, 0);
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 5; j++) {
            double s = 0;
            for (size_t k = 0; k < 4; k++)
                s += (double)a->val[k * 3 + i] * b->val[k * 5 + j];
            assert_true(fabs(c->val[i * 5 + j] - s) < 1e-5);
        }
    /* softmax rows sum to one, xent is logsumexp - target logit, log-sigmoid is log(sigmoid) */
    v4r_ad_tensor *x = konst(t, 3, 6, 3), *sm = v4r_ad_softmax(t, x);
    int32_t target[3] = {5, 0, 2};
    double want = 0;
    for (size_t r = 0; r < 3; r++) {
        double s = 0, z = 0;
        for (size_t k = 0; k < 6; k++)
            s += sm->val[r * 6 + k], z += exp(x->val[r * 6 + k]);
        assert_true(fabs(s - 1) < 1e-6);
        want += (log(z) - x->val[r * 6 + (size_t)target[r]]) / 3.0;
    }
    assert_true(fabs(v4r_ad_xent(t, x, target)->val[0] - want) < 1e-5);
    v4r_ad_tensor *ls = v4r_ad_log_sigmoid(t, x), *sg = v4r_ad_sigmoid(t, x), *th = v4r_ad_tanh(t, x);
    for (size_t i = 0; i < 18; i++) {
        assert_true(fabs(ls->val[i] - log(1.0 / (1.0 + exp(-x->val[i])))) < 1e-6);
        assert_true(fabs(sg->val[i] - 1.0 / (1.0 + exp(-x->val[i]))) < 1e-6);
        assert_true(fabs(th->val[i] - tanh(x->val[i])) < 1e-6);
    }
    /* LayerNorm: zero mean, unit variance before gamma / beta; l2norm: unit rows */
    float ones[6] = {1, 1, 1, 1, 1, 1}, zeros[6] = {0};
    v4r_ad_tensor *ln = v4r_ad_layernorm(t, x, v4r_ad_const(t, 1, 6, ones), v4r_ad_const(t, 1, 6, zeros), 0.0f);
    v4r_ad_tensor *l2 = v4r_ad_l2norm(t, x, 1e-12f);
    for (size_t r = 0; r < 3; r++) {
        double m = 0, v = 0, n = 0;
        for (size_t k = 0; k < 6; k++)
            m += ln->val[r * 6 + k] / 6.0, v += ln->val[r * 6 + k] * ln->val[r * 6 + k] / 6.0,
                n += l2->val[r * 6 + k] * l2->val[r * 6 + k];
        assert_true(fabs(m) < 1e-6 && fabs(v - 1) < 1e-5 && fabs(n - 1) < 1e-6);
    }
    /* sparse product against the dense matrix */
    v4r_spmat m;
    small_spmat(&m);
    float dense[4][5] = {{0, 1.25f, 0, 0, -1}, {0}, {2, 0, 0, 0, 0}, {-0.5f, 0, 0.25f, 0, 1.5f}};
    v4r_ad_tensor *y = konst(t, 5, 2, 4), *sp = v4r_ad_spmm(t, &m, y);
    for (size_t r = 0; r < 4; r++)
        for (size_t k = 0; k < 2; k++) {
            double s = 0;
            for (size_t j = 0; j < 5; j++)
                s += dense[r][j] * y->val[j * 2 + k];
            assert_true(fabs(sp->val[r * 2 + k] - s) < 1e-6);
        }
    v4r_spmat_free(&m);
    v4r_ad_tape_free(t);
}

/* rfft against a direct DFT (ortho), the round trip, and complex products. */
static void test_forward_fft(void **state)
{
    (void)state;
    v4r_ad_tape *t = v4r_ad_tape_new();
    for (size_t n = 7; n <= 8; n++) {
        size_t half = n / 2 + 1;
        v4r_ad_tensor *x = konst(t, 1100, n, n), *f = v4r_ad_rfft(t, x); /* more rows than one FFT block */
        for (size_t r = 0; r < 1100; r += 137)
            for (size_t k = 0; k < half; k++) {
                double re = 0, im = 0;
                for (size_t j = 0; j < n; j++) {
                    double th = 2 * M_PI * (double)(j * k) / (double)n;
                    re += x->val[r * n + j] * cos(th) / sqrt((double)n);
                    im -= x->val[r * n + j] * sin(th) / sqrt((double)n);
                }
                assert_true(fabs(f->val[(r * half + k) * 2] - re) < 1e-5);
                assert_true(fabs(f->val[(r * half + k) * 2 + 1] - im) < 1e-5);
            }
        v4r_ad_tensor *back = v4r_ad_irfft(t, f, n);
        for (size_t i = 0; i < 1100 * n; i++)
            assert_true(fabs(back->val[i] - x->val[i]) < 1e-5);
    }
    v4r_ad_tensor *a = konst(t, 2, 4, 5), *b = konst(t, 1, 4, 6), *p = v4r_ad_cmul(t, a, b);
    for (size_t r = 0; r < 2; r++)
        for (size_t k = 0; k < 2; k++) {
            float ar = a->val[r * 4 + 2 * k], ai = a->val[r * 4 + 2 * k + 1], br = b->val[2 * k], bi = b->val[2 * k + 1];
            assert_true(fabs(p->val[r * 4 + 2 * k] - (ar * br - ai * bi)) < 1e-6);
            assert_true(fabs(p->val[r * 4 + 2 * k + 1] - (ar * bi + ai * br)) < 1e-6);
        }
    v4r_ad_tape_free(t);
}

/* ---- optimizer, schedules, files ---- */

static void test_adam(void **state)
{
    (void)state;
    v4r_params ps;
    v4r_params_init(&ps);
    size_t shape[1] = {2};
    v4r_ad_tensor *p = v4r_params_add(&ps, "p", 1, shape);
    p->val[0] = 1.0f;
    p->val[1] = -2.0f;
    v4r_adam o;
    v4r_adam_defaults(&o);
    o.weight_decay = 0.1;
    /* torch.optim.Adam(lr=0.1, weight_decay=0.1) on grads (0.5, -1) then (0.25, 2), by hand in double */
    double x[2] = {1.0, -2.0}, m[2] = {0}, v[2] = {0};
    double grads[2][2] = {{0.5, -1.0}, {0.25, 2.0}};
    for (int step = 1; step <= 2; step++) {
        for (int i = 0; i < 2; i++) {
            p->grad[i] = (float)grads[step - 1][i];
            double g = grads[step - 1][i] + 0.1 * x[i];
            m[i] = 0.9 * m[i] + 0.1 * g;
            v[i] = 0.999 * v[i] + 0.001 * g * g;
            double mh = m[i] / (1 - pow(0.9, step)), vh = v[i] / (1 - pow(0.999, step));
            x[i] -= 0.1 * mh / (sqrt(vh) + 1e-8);
        }
        v4r_adam_step(&ps, &o, 0.1);
        for (int i = 0; i < 2; i++)
            if (fabs(p->val[i] - x[i]) > 1e-6)
                fail_msg("step %d, entry %d: %.9g, want %.9g", step, i, p->val[i], x[i]);
    }
    /* clipping: norm 5 to 1 */
    p->grad[0] = 3;
    p->grad[1] = 4;
    assert_true(fabs(v4r_params_clip(&ps, 1.0) - 5.0) < 1e-9);
    assert_true(fabs(p->grad[0] - 0.6) < 1e-6 && fabs(p->grad[1] - 0.8) < 1e-6);
    assert_true(fabs(v4r_params_clip(&ps, 10.0) - 1.0) < 1e-6); /* below the max: unchanged */
    assert_true(fabs(p->grad[0] - 0.6) < 1e-6);
    p->grad[0] = NAN;
    assert_true(isnan(v4r_params_clip(&ps, 1.0)));
    v4r_params_free(&ps);
}

static void test_lr_schedule(void **state)
{
    (void)state;
    v4r_lr_schedule s;
    v4r_err err = {0};
    assert_int_equal(v4r_lr_parse("constant", 10, &s, &err), 0);
    assert_true(v4r_lr_at(&s, 0.1, 7) == 0.1);
    assert_int_equal(v4r_lr_parse("exp:0.5", 10, &s, &err), 0);
    assert_true(fabs(v4r_lr_at(&s, 0.1, 2) - 0.025) < 1e-12);
    assert_int_equal(v4r_lr_parse("step:3:0.1", 10, &s, &err), 0);
    assert_true(fabs(v4r_lr_at(&s, 1, 2) - 1) < 1e-12 && fabs(v4r_lr_at(&s, 1, 3) - 0.1) < 1e-12);
    assert_int_equal(v4r_lr_parse("cosine:0.1", 11, &s, &err), 0);
    assert_true(fabs(v4r_lr_at(&s, 1, 0) - 1) < 1e-12 && fabs(v4r_lr_at(&s, 1, 10) - 0.1) < 1e-12);
    assert_true(fabs(v4r_lr_at(&s, 1, 5) - 0.55) < 1e-12);
    static const char *bad[] = {"", "exp", "exp:0", "exp:-1", "step:0:0.5", "step:2", "cosine:2", "linear", "constant:1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(v4r_lr_parse(bad[i], 10, &s, &err), V4R_EUSAGE);
        assert_non_null(strstr(err.msg, "schedule"));
    }
}

static void test_save(void **state)
{
    (void)state;
    v4r_params ps;
    v4r_params_init(&ps);
    size_t w_shape[2] = {3, 2}, b_shape[1] = {3}, c_shape[3] = {1, 4, 2};
    v4r_ad_tensor *w = v4r_params_add(&ps, "layer.weight", 2, w_shape);
    v4r_ad_tensor *b = v4r_params_add(&ps, "layer.bias", 1, b_shape);
    v4r_ad_tensor *c = v4r_params_add(&ps, "complex_weight", 3, c_shape);
    assert_int_equal(c->rows, 1);
    assert_int_equal(c->cols, 8);
    fill_normal(w->val, 6, 1, 1);
    fill_normal(b->val, 3, 2, 1);
    fill_normal(c->val, 8, 3, 1);
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "w.safetensors");
    const char *meta[] = {"model", "test"};
    v4r_err err = {0};
    assert_int_equal(v4r_params_save(&ps, path, meta, 1, &err), 0);
    v4r_safetensors *st;
    assert_int_equal(v4r_st_open(path, &st, &err), 0);
    assert_int_equal(v4r_st_count(st), 3);
    float *got;
    assert_int_equal(v4r_st_load(st, "layer.weight", 2, w_shape, &got, &err), 0);
    assert_memory_equal(got, w->val, 6 * sizeof(float));
    free(got);
    assert_int_equal(v4r_st_load(st, "layer.bias", 1, b_shape, &got, &err), 0);
    assert_memory_equal(got, b->val, 3 * sizeof(float));
    free(got);
    assert_int_equal(v4r_st_load(st, "complex_weight", 3, c_shape, &got, &err), 0);
    assert_memory_equal(got, c->val, 8 * sizeof(float));
    free(got);
    v4r_st_close(st);
    /* snapshot and restore */
    float snap[17];
    assert_int_equal(v4r_params_count(&ps), 17);
    v4r_params_snapshot(&ps, snap);
    w->val[0] = NAN;
    assert_false(v4r_params_finite(&ps));
    v4r_params_restore(&ps, snap);
    assert_true(v4r_params_finite(&ps));
    v4r_params_free(&ps);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* A larger forward and backward: the same bits on two runs at one thread count; close (OpenBLAS's
 * products round differently with another thread count) on another. */
static void big_pass(float *out_grad, int threads)
{
    omp_set_num_threads(threads);
    v4r_params ps;
    v4r_params_init(&ps);
    size_t xs[2] = {3000, 64}, ws[2] = {64, 64}, bs[1] = {64}, fs[3] = {1, 33, 2};
    v4r_ad_tensor *x = v4r_params_add(&ps, "x", 2, xs), *w = v4r_params_add(&ps, "w", 2, ws);
    v4r_ad_tensor *g = v4r_params_add(&ps, "g", 1, bs), *b = v4r_params_add(&ps, "b", 1, bs);
    v4r_ad_tensor *f = v4r_params_add(&ps, "f", 3, fs);
    fill_normal(x->val, 3000 * 64, 1, 1);
    fill_normal(w->val, 64 * 64, 2, 0.1f);
    fill_normal(g->val, 64, 3, 1);
    fill_normal(f->val, 66, 4, 1);
    int32_t *r = v4r_malloc(30000 * sizeof *r), *c = v4r_malloc(30000 * sizeof *c);
    float *v = v4r_malloc(30000 * sizeof *v);
    v4r_rng rng;
    v4r_rng_seed(&rng, 5);
    for (size_t i = 0; i < 30000; i++)
        r[i] = (int32_t)v4r_rng_below(&rng, 3000), c[i] = (int32_t)v4r_rng_below(&rng, 3000),
        v[i] = (float)v4r_rng_uniform(&rng);
    v4r_spmat m;
    v4r_spmat_build(&m, 3000, 3000, 30000, r, c, v);
    v4r_ad_tape *t = v4r_ad_tape_new();
    v4r_ad_tensor *h = v4r_ad_sigmoid(t, v4r_ad_linear(t, x, w, b));
    h = v4r_ad_layernorm(t, v4r_ad_spmm(t, &m, h), g, b, 1e-5f);
    h = v4r_ad_irfft(t, v4r_ad_cmul(t, v4r_ad_rfft(t, h), f), 64);
    v4r_ad_backward(t, v4r_ad_mean(t, v4r_ad_mul(t, h, h)));
    memcpy(out_grad, x->grad, 3000 * 64 * sizeof(float));
    memcpy(out_grad + 3000 * 64, g->grad, 64 * sizeof(float));
    v4r_ad_tape_free(t);
    v4r_spmat_free(&m);
    free(r);
    free(c);
    free(v);
    v4r_params_free(&ps);
}

static void test_threads(void **state)
{
    (void)state;
    size_t n = 3000 * 64 + 64;
    float *one = v4r_malloc(n * sizeof *one), *two = v4r_malloc(n * sizeof *two), *again = v4r_malloc(n * sizeof *again);
    int keep = omp_get_max_threads();
    big_pass(one, 1);
    big_pass(two, 2);
    big_pass(again, 2);
    omp_set_num_threads(keep);
    assert_memory_equal(two, again, n * sizeof(float));
    double scale = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(one[i]));
    for (size_t i = 0; i < n; i++)
        assert_true(fabs(one[i] - two[i]) <= 1e-4 * scale);
    free(one);
    free(two);
    free(again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_matmul),  cmocka_unit_test(test_grad_linear),
        cmocka_unit_test(test_grad_broadcast), cmocka_unit_test(test_grad_activations),
        cmocka_unit_test(test_grad_norms),   cmocka_unit_test(test_grad_shapes),
        cmocka_unit_test(test_grad_spmm),    cmocka_unit_test(test_grad_fft),
        cmocka_unit_test(test_forward_values), cmocka_unit_test(test_forward_fft),
        cmocka_unit_test(test_adam),         cmocka_unit_test(test_lr_schedule),
        cmocka_unit_test(test_save),         cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

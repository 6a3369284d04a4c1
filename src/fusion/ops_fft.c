/* Real FFT and its inverse along each row (FFTW single precision, norm "ortho"), and complex
 * elementwise products, with their gradients.
 *
 * With Y = rfft(x) / sqrt(n) and real gradients (gr, gi) for (Re Y, Im Y): dx = irfft(G') where G'
 * halves the frequencies that irfft counts twice (0 < k < n/2). With x = irfft(Z): dZ = c_k rfft(dx),
 * c_k = 2 for those same frequencies and 1 for k = 0 (and n/2 when n is even), whose imaginary
 * parts irfft ignores and so get no gradient. */
#include "ad_internal.h"

#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { FFT_BLOCK = 512 }; /* rows a plan transforms at once; fixed, so results do not depend on threads */

/* Forward (r2c) or inverse (c2r) transforms of rows rows of length n, unnormalized, in blocks of
 * FFT_BLOCK rows in parallel. Plans are made here, on the calling thread (FFTW's planner is not
 * thread-safe); executing them is. c2r overwrites its input, so the caller passes a copy. */
static void fft_rows(int inverse, size_t n, size_t rows, float *in, float *out)
{
    size_t half = n / 2 + 1, nb = (rows + FFT_BLOCK - 1) / FFT_BLOCK;
    if (!rows)
        return;
    int len = (int)n;
    unsigned flags = FFTW_ESTIMATE | FFTW_UNALIGNED;
    fftwf_plan plan[2] = {NULL, NULL}; /* full blocks, the last block */
    size_t sizes[2] = {rows < FFT_BLOCK ? rows : FFT_BLOCK, rows - (nb - 1) * FFT_BLOCK};
    for (int p = 0; p < 2; p++) {
        int howmany = (int)sizes[p];
        if (inverse)
            plan[p] = fftwf_plan_many_dft_c2r(1, &len, howmany, (fftwf_complex *)in, NULL, 1, (int)half, out, NULL, 1,
                                              len, flags | FFTW_DESTROY_INPUT);
        else
            plan[p] = fftwf_plan_many_dft_r2c(1, &len, howmany, in, NULL, 1, len, (fftwf_complex *)out, NULL, 1,
                                              (int)half, flags);
    }
#pragma omp parallel for schedule(static) if (rows * n > V4R_AD_PAR)
    for (size_t b = 0; b < nb; b++) {
        fftwf_plan p = b + 1 == nb ? plan[1] : plan[0];
        if (inverse)
            fftwf_execute_dft_c2r(p, (fftwf_complex *)(in + b * FFT_BLOCK * 2 * half), out + b * FFT_BLOCK * n);
        else
            fftwf_execute_dft_r2c(p, in + b * FFT_BLOCK * n, (fftwf_complex *)(out + b * FFT_BLOCK * 2 * half));
    }
    fftwf_destroy_plan(plan[0]);
    fftwf_destroy_plan(plan[1]);
}

/* rfft with norm "ortho", x rows x n into y rows x 2 (n/2 + 1); factor multiplies frequency k
 * (0 < k < n/2 or k = n/2 for odd n) by mid, the others by 1. */
static void rfft_ortho(size_t n, size_t rows, const float *x, float *y, float mid)
{
    size_t half = n / 2 + 1, m = rows * 2 * half;
    float *copy = v4r_malloc((rows * n + 1) * sizeof *copy); /* r2c may not take const input */
    memcpy(copy, x, rows * n * sizeof(float));
    fft_rows(0, n, rows, copy, y);
    free(copy);
    float s = 1.0f / sqrtf((float)n);
#pragma omp parallel for schedule(static) if (m > V4R_AD_PAR)
    for (size_t i = 0; i < m; i++) {
        size_t k = (i / 2) % half;
        int doubled = k > 0 && 2 * k != n;
        y[i] *= doubled ? s * mid : s;
    }
}

/* irfft with norm "ortho" of z (rows x 2 (n/2 + 1)); frequency k with 0 < k, 2k != n is first
 * multiplied by mid. Accumulates into x when acc. */
static void irfft_ortho(size_t n, size_t rows, const float *z, float *x, float mid, int acc)
{
    size_t half = n / 2 + 1, m = rows * 2 * half;
    float *copy = v4r_malloc((m + 1) * sizeof *copy), *out = acc ? v4r_malloc((rows * n + 1) * sizeof *out) : x;
    float s = 1.0f / sqrtf((float)n);
#pragma omp parallel for schedule(static) if (m > V4R_AD_PAR)
    for (size_t i = 0; i < m; i++) {
        size_t k = (i / 2) % half;
        int doubled = k > 0 && 2 * k != n;
        copy[i] = z[i] * (doubled ? s * mid : s);
    }
    fft_rows(1, n, rows, copy, out);
    free(copy);
    if (acc) {
#pragma omp parallel for schedule(static) if (rows * n > V4R_AD_PAR)
        for (size_t i = 0; i < rows * n; i++)
            x[i] += out[i];
        free(out);
    }
}

static void rfft_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *x = t->in[0];
    irfft_ortho(x->cols, x->rows, t->grad, v4r_ad_grad(tape, x), 0.5f, 1);
}

v4r_ad_tensor *v4r_ad_rfft(v4r_ad_tape *tape, v4r_ad_tensor *x)
{
    size_t n = x->cols;
    v4r_ad_check(n >= 1, "rfft", x, NULL);
    v4r_ad_tensor *t = v4r_ad_node(tape, x->rows, 2 * (n / 2 + 1), rfft_backward, x, NULL, NULL);
    rfft_ortho(n, x->rows, x->val, t->val, 1.0f);
    return t;
}

static void irfft_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    v4r_ad_tensor *z = t->in[0];
    size_t n = t->cols, half = n / 2 + 1, rows = t->rows;
    float *dz = v4r_malloc((rows * 2 * half + 1) * sizeof(float)), *g = v4r_ad_grad(tape, z);
    rfft_ortho(n, rows, t->grad, dz, 2.0f);
#pragma omp parallel for schedule(static) if (rows * half > V4R_AD_PAR)
    for (size_t r = 0; r < rows; r++)
        for (size_t k = 0; k < half; k++) {
            int ignored_im = k == 0 || 2 * k == n;
            g[(r * half + k) * 2] += dz[(r * half + k) * 2];
            if (!ignored_im)
                g[(r * half + k) * 2 + 1] += dz[(r * half + k) * 2 + 1];
        }
    free(dz);
}

v4r_ad_tensor *v4r_ad_irfft(v4r_ad_tape *tape, v4r_ad_tensor *z, size_t n)
{
    v4r_ad_check(n >= 1 && z->cols == 2 * (n / 2 + 1), "irfft", z, NULL);
    v4r_ad_tensor *t = v4r_ad_node(tape, z->rows, n, irfft_backward, z, NULL, NULL);
    irfft_ortho(n, z->rows, z->val, t->val, 1.0f, 0);
    return t;
}

/* ---- complex products ---- */

/* For operand which: g conj(other), accumulated in place when it has the output's shape, else
 * reduced over the broadcast rows. */
static void cmul_operand_backward(v4r_ad_tape *tape, v4r_ad_tensor *t, int which)
{
    v4r_ad_tensor *x = t->in[which], *o = t->in[1 - which];
    size_t rows = t->rows, cols = t->cols, ors = o->rows == 1 ? 0 : cols;
    int direct = x->rows == rows;
    float *gx = v4r_ad_grad(tape, x), *dst = direct ? gx : v4r_malloc(rows * cols * sizeof(float));
#pragma omp parallel for schedule(static) if (rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c += 2) {
            float gr = t->grad[r * cols + c], gi = t->grad[r * cols + c + 1];
            float br = o->val[r * ors + c], bi = o->val[r * ors + c + 1];
            float re = gr * br + gi * bi, im = gi * br - gr * bi;
            if (direct) {
                dst[r * cols + c] += re;
                dst[r * cols + c + 1] += im;
            } else {
                dst[r * cols + c] = re;
                dst[r * cols + c + 1] = im;
            }
        }
    if (!direct) {
        v4r_ad_reduce_acc(dst, rows, cols, gx, x->rows, x->cols);
        free(dst);
    }
}

static void cmul_backward(v4r_ad_tape *tape, v4r_ad_tensor *t)
{
    for (int which = 0; which < 2; which++)
        if (t->in[which]->needs_grad)
            cmul_operand_backward(tape, t, which);
}

v4r_ad_tensor *v4r_ad_cmul(v4r_ad_tape *tape, v4r_ad_tensor *a, v4r_ad_tensor *b)
{
    int ok = a->cols == b->cols && a->cols % 2 == 0 && (a->rows == b->rows || a->rows == 1 || b->rows == 1);
    v4r_ad_check(ok, "cmul", a, b);
    size_t rows = a->rows > b->rows ? a->rows : b->rows, cols = a->cols;
    size_t ars = a->rows == 1 ? 0 : cols, brs = b->rows == 1 ? 0 : cols;
    v4r_ad_tensor *t = v4r_ad_node(tape, rows, cols, cmul_backward, a, b, NULL);
#pragma omp parallel for schedule(static) if (rows * cols > V4R_AD_PAR)
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c += 2) {
            float ar = a->val[r * ars + c], ai = a->val[r * ars + c + 1];
            float br = b->val[r * brs + c], bi = b->val[r * brs + c + 1];
            t->val[r * cols + c] = ar * br - ai * bi;
            t->val[r * cols + c + 1] = ar * bi + ai * br;
        }
    return t;
}

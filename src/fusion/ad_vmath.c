/* Vector exp, sigmoid and tanh over float arrays for the autodiff operations: the kernels' AVX2
 * exp where the build has it, libm otherwise. Parallel over large arrays; each value depends only
 * on its input. */
#include "ad_internal.h"
#include "../kernels/vmath_avx2.h"

#include <math.h>

enum { VM_BLOCK = 4096 };

#ifdef V4R_HAVE_AVX2
/* v4r_exp8 maps NaN to 0; a NaN must reach the loss so that training can stop on it. */
static inline __m256 keep_nan(__m256 r, __m256 x) { return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)); }

static void exp_block(const float *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, keep_nan(v4r_exp8(_mm256_loadu_ps(x + i)), _mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i m = v4r_lanes8(n - i);
        __m256 v = _mm256_maskload_ps(x + i, m);
        _mm256_maskstore_ps(y + i, m, keep_nan(v4r_exp8(v), v));
    }
}

/* 1 / (1 + exp(-x)) */
static void sigmoid_block(const float *x, float *y, size_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i < n; i += 8) {
        __m256i m = v4r_lanes8(n - i);
        __m256 v = _mm256_maskload_ps(x + i, m);
        __m256 e = v4r_exp8(_mm256_xor_ps(v, sign));
        _mm256_maskstore_ps(y + i, m, keep_nan(_mm256_div_ps(one, _mm256_add_ps(one, e)), v));
    }
}

/* tanh x = sign(x) (1 - e) / (1 + e), e = exp(-2|x|) */
static void tanh_block(const float *x, float *y, size_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f), m2 = _mm256_set1_ps(-2.0f);
    size_t i = 0;
    for (; i < n; i += 8) {
        __m256i m = v4r_lanes8(n - i);
        __m256 v = _mm256_maskload_ps(x + i, m);
        __m256 a = _mm256_andnot_ps(sign, v);
        __m256 e = v4r_exp8(_mm256_mul_ps(a, m2));
        __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
        _mm256_maskstore_ps(y + i, m, keep_nan(_mm256_or_ps(t, _mm256_and_ps(v, sign)), v));
    }
}
#else
static void exp_block(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = expf(x[i]);
}

static void sigmoid_block(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = 1.0f / (1.0f + expf(-x[i]));
}

static void tanh_block(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = tanhf(x[i]);
}
#endif

typedef void (*block_fn)(const float *, float *, size_t);

static void apply_blocks(block_fn f, const float *x, float *y, size_t n)
{
    size_t nb = (n + VM_BLOCK - 1) / VM_BLOCK;
#pragma omp parallel for schedule(static) if (n > V4R_AD_PAR)
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * VM_BLOCK, len = n - i0 < VM_BLOCK ? n - i0 : VM_BLOCK;
        f(x + i0, y + i0, len);
    }
}

void v4r_ad_exp_n(const float *x, float *y, size_t n) { apply_blocks(exp_block, x, y, n); }
void v4r_ad_exp_serial(const float *x, float *y, size_t n) { exp_block(x, y, n); }
void v4r_ad_sigmoid_n(const float *x, float *y, size_t n) { apply_blocks(sigmoid_block, x, y, n); }
void v4r_ad_tanh_n(const float *x, float *y, size_t n) { apply_blocks(tanh_block, x, y, n); }

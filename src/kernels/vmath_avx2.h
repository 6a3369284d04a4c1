/* AVX2 exp (for arguments <= 88.3), erf/GELU and quick GELU on 8 floats: vmath_avx512.h's algorithms, for the
 * BLAS path on x86-64-v3. */
#ifndef V4R_VMATH_AVX2_H
#define V4R_VMATH_AVX2_H

#if defined(__AVX2__) && defined(__FMA__)
#define V4R_HAVE_AVX2 1
#include <immintrin.h>
#include <stddef.h>

static inline __m256 v4r_exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.3f);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    /* 2^n through the exponent field: n in [-126, 127] */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_and_ps(y, _mm256_cmp_ps(x, lo, _CMP_GE_OQ));
}

static inline __m256 v4r_erf8(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 z = _mm256_andnot_ps(sign, x), z2 = _mm256_mul_ps(z, z);
    __m256 s = _mm256_set1_ps(1.1283791670955126f * 1.0f / 685440.0f);
    s = _mm256_fmadd_ps(s, z2, _mm256_set1_ps(-1.1283791670955126f / 75600.0f));
    s = _mm256_fmadd_ps(s, z2, _mm256_set1_ps(1.1283791670955126f / 9360.0f));
    s = _mm256_fmadd_ps(s, z2, _mm256_set1_ps(-1.1283791670955126f / 1320.0f));
    s = _mm256_fmadd_ps(s, z2, _mm256_set1_ps(1.1283791670955126f / 216.0f));
    s = _mm256_fmadd_ps(s, z2, _mm256_set1_ps(-1.1283791670955126f / 42.0f));
    s = _mm256_fmadd_ps(s, z2, _mm256_set1_ps(1.1283791670955126f / 10.0f));
    s = _mm256_fmadd_ps(s, z2, _mm256_set1_ps(-1.1283791670955126f / 3.0f));
    s = _mm256_fmadd_ps(s, z2, _mm256_set1_ps(1.1283791670955126f));
    s = _mm256_mul_ps(s, z);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z, one));
    __m256 p = _mm256_set1_ps(0.17087277f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
    __m256 big = _mm256_fnmadd_ps(t, v4r_exp8(_mm256_sub_ps(p, z2)), one);
    __m256 e = _mm256_blendv_ps(s, big, _mm256_cmp_ps(z, _mm256_set1_ps(0.75f), _CMP_GE_OQ));
    return _mm256_or_ps(e, _mm256_and_ps(x, sign));
}

static inline __m256 v4r_gelu8(__m256 x)
{
    __m256 e = v4r_erf8(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
    return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* x sigmoid(1.702 x) = x / (1 + e^(-1.702 x)); e^z saturates at e^88.3 for very negative x. */
static inline __m256 v4r_quick_gelu8(__m256 x)
{
    __m256 e = v4r_exp8(_mm256_mul_ps(x, _mm256_set1_ps(-1.702f)));
    return _mm256_mul_ps(x, _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
}

/* Lanes [0, left) as a maskload/maskstore mask. */
static inline __m256i v4r_lanes8(size_t left)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int k = left >= 8 ? 8 : (int)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), idx);
}
#endif

#endif

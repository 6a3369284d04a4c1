/* AVX-512 helpers: exp (about 1-2 ulp), GELU (within 1.7e-7 (1 + |x|)) and quick GELU on 16 floats, a
 * 16 x 16 transpose. */
#ifndef V4R_VMATH_AVX512_H
#define V4R_VMATH_AVX512_H

#include <immintrin.h>
#include <stddef.h>

#define V4R_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define V4R_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f,avx512vl,avx512bw,avx512dq,fma")))

/* x = n ln2 + r, |r| <= ln2 / 2 (n an integer, ln2 in two parts): returns r, n in *n. */
V4R_AVX512_INLINE __m512 v4r_exp_reduce16(__m512 x, __m512 *n)
{
    *n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(*n, _mm512_set1_ps(0.693359375f), x);
    return _mm512_fnmadd_ps(*n, _mm512_set1_ps(-2.12194440e-4f), r);
}

/* e^x: x = n ln2 + r, |r| <= ln2 / 2, a degree-6 polynomial for e^r, 2^n through the exponent
 * (scalef). Below -87.3 the result is 0 (no subnormals), above 88.7 inf. */
V4R_AVX512_INLINE __m512 v4r_exp16(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.72283f);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 n, r = v4r_exp_reduce16(xc, &n);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    __m512 e = _mm512_scalef_ps(p, n);
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ), e);
}

/* e^x for x <= 0 (a softmax's s - max), 0 below -87.3 (no subnormals): x = n ln2 + r, a degree-5
 * fit of e^r (scripts/kernel_fits.py exp: least squares toward the largest relative error, 1.9e-7
 * in float), 2^n through the exponent. 11 operations a vector against v4r_exp16's 16. */
V4R_AVX512_INLINE __m512 v4r_exp16_nonpos(__m512 x)
{
    __m512 n, r = v4r_exp_reduce16(x, &n);
    __m512 p = _mm512_set1_ps(8.297652006e-03f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.191538319e-02f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.666757464e-01f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.999889433e-01f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.999997020e-01f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.000000119e+00f));
    __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_GE_OQ);
    return _mm512_maskz_scalef_ps(live, p, n);
}

/* x/2 (1 + erf(x / sqrt 2)): erf(x / sqrt 2) = x P(x^2) / Q(x^2) with x clamped to +-4 sqrt 2 (where
 * erf is 1 to float precision), P and Q of degree 5 with positive coefficients (a rational
 * least-squares fit by scripts/kernel_fits.py: erf within 2.1e-8 in exact arithmetic, the float result
 * within 1.7e-7 (1 + |x|) of GELU), 1/Q by the 14-bit reciprocal and one Newton step. 22
 * operations a vector, the longest chain 14 of them. At x <= -4 sqrt 2 the result is 0 (GELU is
 * above -5e-8 there), so no rounding of erf near -1 is ever scaled up by a large |x|. */
V4R_AVX512_INLINE __m512 v4r_gelu16(__m512 x)
{
    const __m512 lim = _mm512_set1_ps(5.65685425f);
    __mmask16 above = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-5.65685425f), _CMP_NLE_UQ); /* NaN stays NaN */
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
    __m512 w = _mm512_mul_ps(xc, xc);
    __m512 p = _mm512_set1_ps(4.363792883e-08f), q = _mm512_set1_ps(1.171277745e-06f);
    p = _mm512_fmadd_ps(p, w, _mm512_set1_ps(1.272979716e-05f));
    q = _mm512_fmadd_ps(q, w, _mm512_set1_ps(7.602303231e-05f));
    p = _mm512_fmadd_ps(p, w, _mm512_set1_ps(3.538785677e-04f));
    q = _mm512_fmadd_ps(q, w, _mm512_set1_ps(1.930560800e-03f));
    p = _mm512_fmadd_ps(p, w, _mm512_set1_ps(9.451821446e-03f));
    q = _mm512_fmadd_ps(q, w, _mm512_set1_ps(2.911918424e-02f));
    p = _mm512_fmadd_ps(p, w, _mm512_set1_ps(6.938475370e-02f));
    q = _mm512_fmadd_ps(q, w, _mm512_set1_ps(2.536264658e-01f));
    p = _mm512_fmadd_ps(p, w, _mm512_set1_ps(7.978844047e-01f));
    q = _mm512_fmadd_ps(q, w, _mm512_set1_ps(1.0f));
    __m512 r = _mm512_rcp14_ps(q);
    r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, _mm512_set1_ps(2.0f)));
    __m512 erf = _mm512_mul_ps(_mm512_mul_ps(xc, p), r), half = _mm512_mul_ps(x, _mm512_set1_ps(0.5f));
    return _mm512_maskz_fmadd_ps(above, half, erf, half);
}

/* x sigmoid(1.702 x), in the order PyTorch evaluates quick_gelu: x * (1 / (1 + e^(-1.702 x))). */
V4R_AVX512_INLINE __m512 v4r_quick_gelu16(__m512 x)
{
    __m512 e = v4r_exp16(_mm512_mul_ps(x, _mm512_set1_ps(-1.702f)));
    return _mm512_mul_ps(x, _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e)));
}

/* Transposes the 16 x 16 block r[row] (lane = column) in place. */
V4R_AVX512_INLINE void v4r_transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) {
            t[8 * i + k] = _mm512_shuffle_f32x4(r[8 * i + k], r[8 * i + 4 + k], 0x88);
            t[8 * i + 4 + k] = _mm512_shuffle_f32x4(r[8 * i + k], r[8 * i + 4 + k], 0xdd);
        }
    for (int k = 0; k < 8; k++) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xdd);
    }
}

/* Lanes [0, left) of a vector (all 16 when left >= 16). */
V4R_AVX512_INLINE __mmask16 v4r_lanes(size_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

#endif

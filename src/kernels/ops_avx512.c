/* AVX-512 activations, softmax and single-sequence multi-head attention. */

/* Attention, per head: the valid keys transposed by 16 x 16 blocks (head_dim x keys, zero-padded
 * to 16) and the values copied together; a block of 8 query rows computes 8 x 32 scores per step
 * with broadcast query values; exp(s - max) over the valid keys in 16 lanes; then the 8 output rows
 * as sums over the keys in order of e_ij v_j (two zmm per row when head_dim <= 32), times 1/sum.
 * Masked keys never enter a sum, so a row's numbers depend only on its sequence's valid tokens. */
#include "internal.h"
#include "vmath_avx512.h"

#include <math.h>
#include <string.h>

enum { QB = 8 }; /* query rows per block */

V4R_AVX512 void v4r_avx512_activate(float *x, size_t n, int act)
{
    if (act == V4R_ACT_NONE)
        return;
    if (act == V4R_ACT_GELU_TANH) {
        v4r_activate_generic(x, n, act);
        return;
    }
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        v = act == V4R_ACT_GELU         ? v4r_gelu16(v)
            : act == V4R_ACT_QUICK_GELU ? v4r_quick_gelu16(v)
                                        : _mm512_max_ps(v, _mm512_setzero_ps());
        _mm512_mask_storeu_ps(x + i, m, v);
    }
}


/* Masked lanes: the mask bytes of x[i..i+16) that are nonzero, within n. */
V4R_AVX512_INLINE __mmask16 live(const uint8_t *mask, size_t i, size_t n)
{
    __mmask16 m = v4r_lanes(n - i);
    if (!mask)
        return m;
    __m128i b = _mm_maskz_loadu_epi8(m, mask + i);
    return _mm_mask_test_epi8_mask(m, b, b);
}

/* Softmax in place over the unmasked entries (masked ones become 0). */
V4R_AVX512 void v4r_avx512_softmax(float *x, size_t n, const uint8_t *mask)
{
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (size_t i = 0; i < n; i += 16)
        mx = _mm512_mask_max_ps(mx, live(mask, i, n), mx, _mm512_maskz_loadu_ps(v4r_lanes(n - i), x + i));
    float m = _mm512_reduce_max_ps(mx);
    if (m == -INFINITY) {
        memset(x, 0, n * sizeof *x);
        return;
    }
    __m512 s = _mm512_setzero_ps(), vm = _mm512_set1_ps(m);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 l = live(mask, i, n), in = v4r_lanes(n - i);
        __m512 e = _mm512_maskz_mov_ps(l, v4r_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(l, x + i), vm)));
        s = _mm512_add_ps(s, e);
        _mm512_mask_storeu_ps(x + i, in, e);
    }
    float inv = 1.0f / _mm512_reduce_add_ps(s);
    for (size_t i = 0; i < n; i += 16)
        _mm512_mask_storeu_ps(x + i, v4r_lanes(n - i),
                              _mm512_mul_ps(_mm512_maskz_loadu_ps(v4r_lanes(n - i), x + i), _mm512_set1_ps(inv)));
}

/* kt[d * lp + j] = k_j[d] for the valid keys j, zero up to lp (a multiple of 16), by 16 x 16
 * blocks. */
V4R_AVX512 static void transpose_keys(const float *k, size_t ld, size_t valid, size_t hd, size_t lp, float *kt)
{
    for (size_t j0 = 0; j0 < lp; j0 += 16)
        for (size_t d0 = 0; d0 < hd; d0 += 16) {
            __mmask16 m = v4r_lanes(hd - d0);
            __m512 r[16];
            for (size_t i = 0; i < 16; i++)
                r[i] = j0 + i < valid ? _mm512_maskz_loadu_ps(m, k + (j0 + i) * ld + d0) : _mm512_setzero_ps();
            v4r_transpose16(r);
            for (size_t i = 0; i < 16 && d0 + i < hd; i++)
                _mm512_storeu_ps(kt + (d0 + i) * lp + j0, r[i]);
        }
}

/* s[r * lp + j..j+16*nc) = scale * q_r . k_j for QB query rows, nc (1 or 2) chunks of 16 keys. */
V4R_AVX512_INLINE void score_chunks(const float *const *qr, const float *kt, size_t hd, size_t lp, size_t j,
                                    __m512 scale, float *s, int nc)
{
    __m512 a0[QB], a1[QB];
    for (int r = 0; r < QB; r++)
        a0[r] = a1[r] = _mm512_setzero_ps();
    for (size_t d = 0; d < hd; d++) {
        __m512 k0 = _mm512_loadu_ps(kt + d * lp + j), k1 = nc > 1 ? _mm512_loadu_ps(kt + d * lp + j + 16) : k0;
        for (int r = 0; r < QB; r++) {
            __m512 qv = _mm512_set1_ps(qr[r][d]);
            a0[r] = _mm512_fmadd_ps(qv, k0, a0[r]);
            if (nc > 1)
                a1[r] = _mm512_fmadd_ps(qv, k1, a1[r]);
        }
    }
    for (int r = 0; r < QB; r++) {
        _mm512_storeu_ps(s + r * lp + j, _mm512_mul_ps(a0[r], scale));
        if (nc > 1)
            _mm512_storeu_ps(s + r * lp + j + 16, _mm512_mul_ps(a1[r], scale));
    }
}

/* Scores of QB query rows against the keys (lp of them, zero-padded past the real ones). */
V4R_AVX512 static void scores(const float *const *qr, const float *kt, size_t hd, size_t lp, float scale, float *s)
{
    __m512 sc = _mm512_set1_ps(scale);
    size_t j = 0;
    for (; j + 32 <= lp; j += 32)
        score_chunks(qr, kt, hd, lp, j, sc, s, 2);
    if (j < lp)
        score_chunks(qr, kt, hd, lp, j, sc, s, 1);
}

/* exp(s - max) in place over each row's valid entries; inv[r] = 1 / the row's sum (lanes summed in
 * chunk order, then across). Rows are padded to a multiple of 16, so whole vectors are read. The
 * rows go side by side (the row loop innermost): QB independent chains instead of one row's long
 * chain of maxima, exps and sums at a time. */
V4R_AVX512 static void exp_rows(float *s, size_t lp, size_t valid, float *inv)
{
    __m512 mx[QB], acc[QB];
    for (int r = 0; r < QB; r++) {
        mx[r] = _mm512_set1_ps(-INFINITY);
        acc[r] = _mm512_setzero_ps();
    }
    for (size_t j = 0; j < valid; j += 16)
        for (int r = 0; r < QB; r++)
            mx[r] = _mm512_mask_max_ps(mx[r], v4r_lanes(valid - j), mx[r], _mm512_loadu_ps(s + (size_t)r * lp + j));
    for (int r = 0; r < QB; r++)
        mx[r] = _mm512_set1_ps(_mm512_reduce_max_ps(mx[r]));
    for (size_t j = 0; j < valid; j += 16)
        for (int r = 0; r < QB; r++) {
            float *at = s + (size_t)r * lp + j;
            __m512 e = _mm512_maskz_mov_ps(v4r_lanes(valid - j), v4r_exp16_nonpos(_mm512_sub_ps(_mm512_loadu_ps(at), mx[r])));
            _mm512_storeu_ps(at, e);
            acc[r] = _mm512_add_ps(acc[r], e);
        }
    for (int r = 0; r < QB; r++)
        inv[r] = 1.0f / _mm512_reduce_add_ps(acc[r]);
}

/* out_r[c..c+32) = inv_r * sum over the valid keys j in order of s_rj v_j[c..c+32). */
V4R_AVX512 static void weighted_values(const float *s, size_t lp, const float *v, size_t ld, size_t valid, size_t hd,
                                       const float *inv, float *const *outr, size_t nrows)
{
    for (size_t c = 0; c < hd; c += 32) {
        __mmask16 m0 = v4r_lanes(hd - c), m1 = hd - c > 16 ? v4r_lanes(hd - c - 16) : 0;
        __m512 a0[QB], a1[QB];
        for (int r = 0; r < QB; r++)
            a0[r] = a1[r] = _mm512_setzero_ps();
        for (size_t j = 0; j < valid; j++) {
            __m512 v0 = _mm512_maskz_loadu_ps(m0, v + j * ld + c), v1 = _mm512_maskz_loadu_ps(m1, v + j * ld + c + 16);
            for (int r = 0; r < QB; r++) {
                __m512 p = _mm512_set1_ps(s[(size_t)r * lp + j]);
                a0[r] = _mm512_fmadd_ps(p, v0, a0[r]);
                a1[r] = _mm512_fmadd_ps(p, v1, a1[r]);
            }
        }
        for (int r = 0; r < QB; r++) /* a constant trip count keeps the sums in registers */
            if ((size_t)r < nrows) {
                __m512 iv = _mm512_set1_ps(inv[r]);
                _mm512_mask_storeu_ps(outr[r] + c, m0, _mm512_mul_ps(a0[r], iv));
                _mm512_mask_storeu_ps(outr[r] + c + 16, m1, _mm512_mul_ps(a1[r], iv));
            }
    }
}

/* One head: query blocks of QB rows (the last block repeats the last row to fill up). The values
 * are copied together first: rows ld apart would fall into few cache sets. */
V4R_AVX512 static void head(const float *q, const float *k, const float *v, size_t ld, size_t len, size_t valid,
                            size_t hd, float *out, size_t ldo, float *scratch)
{
    size_t lp = (valid + 15) / 16 * 16;
    float *kt = scratch, *s = kt + hd * lp, *vc = s + QB * lp, inv[QB];
    float scale = (float)(1.0 / sqrt((double)hd));
    transpose_keys(k, ld, valid, hd, lp, kt);
    for (size_t j = 0; j < valid; j++)
        memcpy(vc + j * hd, v + j * ld, hd * sizeof *vc);
    for (size_t i0 = 0; i0 < len; i0 += QB) {
        const float *qr[QB];
        float *outr[QB];
        for (size_t r = 0; r < QB; r++) {
            size_t i = i0 + r < len ? i0 + r : len - 1;
            qr[r] = q + i * ld;
            outr[r] = out + i * ldo;
        }
        scores(qr, kt, hd, lp, scale, s);
        exp_rows(s, lp, valid, inv);
        weighted_values(s, lp, vc, hd, valid, hd, inv, outr, len - i0 < QB ? len - i0 : QB);
    }
}

void v4r_avx512_attention(const float *qkv, size_t ld, size_t len, size_t valid, size_t heads, size_t head_dim,
                          size_t head0, size_t nheads, float *out, size_t ldo, float *scratch)
{
    size_t hidden = heads * head_dim;
    for (size_t h = head0; h < head0 + nheads; h++) {
        size_t off = h * head_dim;
        head(qkv + off, qkv + hidden + off, qkv + 2 * hidden + off, ld, len, valid, head_dim, out + off, ldo,
             scratch);
    }
}

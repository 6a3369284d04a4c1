/* The fp16 GEMM of the linear layers by AVX512_FP16's vfmadd231ph: y = act(x W^T + b [+ res])
 * with W rounded to fp16 and packed once, each row of x rounded to fp16 on the way in, products
 * summed in fp16 over runs of 64 depths and the runs' sums added in float32. */

/* Design: W is packed at load into panels of 64 output columns, k-major (two zmm of 32 halves per
 * depth). A block of rows (the float32 GEMM's driver hands them out) is rounded to fp16 into MR-row
 * k-major micro-panels over the whole depth; a 14 x 64 register tile multiplies it with a panel, each
 * row's half broadcast from memory by the FMA itself ({1to32}: vpbroadcastw would cost a shuffle
 * µop on the FMA port per row). vfmadd231ph does 32 multiply-adds where vfmadd231ps does 16 at the
 * same rate on this kind of core (the AVX512_BF16 vdpbf16ps does 32 at half the rate). fp16 sums
 * lose a bit per doubling of their size, so every HALF_RUN depths the 28 fp16 sums are widened and
 * added into float32 sums (two 14 x 32 buffers, in L1), which then go through the float32 GEMM's
 * epilogue. Each output is one fixed chain over k: it depends on its row alone. */
#include "internal.h"
#include "vmath_avx512.h"

#include <string.h>

#define V4R_FP16 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512fp16,f16c,fma")))

enum { MR = 14, NR = V4R_PANEL16, HALF_RUN = 64, PF_AHEAD = 16 };

void v4r_fp16_pack(const float *w, size_t out, size_t in, uint16_t *pack)
{
    size_t panels = (out + NR - 1) / NR;
    for (size_t p = 0; p < panels; p++)
        for (size_t k = 0; k < in; k++)
            for (size_t j = 0; j < NR; j++) {
                size_t o = p * NR + j;
                pack[(p * in + k) * NR + j] = o < out ? v4r_f32_to_f16(w[o * in + k]) : 0;
            }
}

/* ap = rows [0, mc) of x (ld, K columns) rounded to fp16 (nearest even) as MR-row k-major
 * micro-panels (micro-panel i at ap + i K, depth k of its row r at k MR + r), zero rows past mc. */
V4R_FP16 static void pack_rows(const float *x, size_t ld, size_t K, size_t mc, uint16_t *ap)
{
    for (size_t i = 0; i < mc; i += MR) {
        uint16_t *dst = ap + i * K;
        size_t mr = mc - i < MR ? mc - i : MR;
        for (size_t k = 0; k < K; k += 16) {
            __mmask16 m = v4r_lanes(K - k);
            __m512 r[16];
            for (size_t q = 0; q < 16; q++)
                r[q] = q < mr ? _mm512_maskz_loadu_ps(m, x + (i + q) * ld + k) : _mm512_setzero_ps();
            v4r_transpose16(r);
            for (size_t q = 0; q < 16 && k + q < K; q++)
                _mm256_mask_storeu_epi16(dst + (k + q) * MR, (__mmask16)((1u << MR) - 1),
                                         _mm512_cvtps_ph(r[q], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
    }
}

/* sum[0..16) (+)= the low or high 16 halves of h widened to float32. */
V4R_FP16 static inline void widen_add(__m256i h, float *sum, int first)
{
    __m512 v = _mm512_cvtph_ps(h);
    _mm512_store_ps(sum, first ? v : _mm512_add_ps(_mm512_load_ps(sum), v));
}

/* One MR x 64 tile over K depths: s0 / s1 (MR x 32 each, float32) = a (K x MR halves) b (K x 64
 * halves), the 64-depth runs summed in fp16 and added in float32. */
V4R_FP16 static void tile(size_t K, const uint16_t *restrict a, const uint16_t *restrict b, float *s0, float *s1)
{
    for (size_t k0 = 0; k0 < K; k0 += HALF_RUN) {
        size_t k1 = K - k0 < HALF_RUN ? K : k0 + HALF_RUN;
        __m512h c0[MR], c1[MR];
#pragma GCC unroll 14
        for (size_t r = 0; r < MR; r++)
            c0[r] = c1[r] = _mm512_setzero_ph();
        for (size_t k = k0; k < k1; k++) {
            __m512h b0 = _mm512_load_ph(b + k * NR), b1 = _mm512_load_ph(b + k * NR + 32);
            _mm_prefetch((const char *)(b + (k + PF_AHEAD) * NR), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + (k + PF_AHEAD) * NR + 32), _MM_HINT_T0);
            _mm_prefetch((const char *)(a + (k + PF_AHEAD) * MR), _MM_HINT_T0);
#pragma GCC unroll 14
            for (size_t r = 0; r < MR; r++) /* the row's half broadcast from memory by the FMA */
                __asm__("vfmadd231ph %2%{1to32%}, %3, %0\n\tvfmadd231ph %2%{1to32%}, %4, %1"
                        : "+v"(c0[r]), "+v"(c1[r])
                        : "m"(a[k * MR + r]), "v"(b0), "v"(b1));
        }
        int first = k0 == 0;
#pragma GCC unroll 14
        for (size_t r = 0; r < MR; r++) {
            __m512i h0 = _mm512_castph_si512(c0[r]), h1 = _mm512_castph_si512(c1[r]);
            widen_add(_mm512_castsi512_si256(h0), s0 + r * 32, first);
            widen_add(_mm512_extracti64x4_epi64(h0, 1), s0 + r * 32 + 16, first);
            widen_add(_mm512_castsi512_si256(h1), s1 + r * 32, first);
            widen_add(_mm512_extracti64x4_epi64(h1, 1), s1 + r * 32 + 16, first);
        }
    }
}

size_t v4r_fp16_scratch(const v4r_linear *l, size_t mc) { return (mc + MR - 1) / MR * MR * l->in * sizeof(uint16_t); }

V4R_FP16 void v4r_fp16_row_block(const v4r_linear *l, int act, const float *x, const float *res, float *y, size_t mc,
                                 void *scratch)
{
    float s0[MR * 32] __attribute__((aligned(64))), s1[MR * 32] __attribute__((aligned(64)));
    size_t K = l->in, N = l->out, panels = (N + NR - 1) / NR;
    uint16_t *ap = scratch;
    pack_rows(x, K, K, mc, ap);
    for (size_t p = 0; p < panels; p++) {
        const uint16_t *b = l->pack16 + p * K * NR;
        size_t col = p * NR;
        for (size_t i = 0; i < mc; i += MR) {
            size_t mr = mc - i < MR ? mc - i : MR;
            tile(K, ap + i * K, b, s0, s1);
            const float *ri = res ? res + i * N + col : NULL;
            v4r_avx512_finish_tile(l, act, s0, y + i * N + col, N, mr, col, ri);
            if (col + 32 < N)
                v4r_avx512_finish_tile(l, act, s1, y + i * N + col + 32, N, mr, col + 32, ri ? ri + 32 : NULL);
        }
    }
}

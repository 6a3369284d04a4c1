/* The bf16 GEMM of the linear layers by AVX512_BF16's vdpbf16ps: y = act(x W^T + b [+ res]) with
 * W rounded to bf16 and packed once, each row of x rounded to bf16 on the way in, float32 sums. */

/* Design: W is packed at load into panels of 32 output columns, pair-major: for each pair of depths
 * (k even, k odd) 32 columns x 2 bf16, two zmm (the pairs run to a multiple of 16, zeros past the
 * layer, so AMX tiles read the same pack). Each thread takes an equal share of the rows (in units of
 * MR); per block of MC rows it rounds the rows to bf16 (row-major, the depth padded with zeros) and
 * runs 14 x 32 register tiles over every panel: vdpbf16ps adds a depth pair's two products to each
 * float32 sum, pairs in order, so an output is one chain over k that depends on its row alone (not
 * on the row count, the blocking or the threads). The tile goes through a small buffer to the
 * epilogue (bias, residual, activation) of the float32 GEMM. */
#include "internal.h"
#include "vmath_avx512.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define V4R_BF16 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,fma")))

enum { MR = 14, NR = V4R_PANEL, MC = MR * 12 };

size_t v4r_bf16_kpairs(size_t in) { return ((in + 1) / 2 + 15) / 16 * 16; }

void v4r_bf16_pack(const float *w, size_t out, size_t in, uint16_t *pack)
{
    size_t panels = (out + NR - 1) / NR, kp = v4r_bf16_kpairs(in);
    for (size_t p = 0; p < panels; p++)
        for (size_t kk = 0; kk < kp; kk++)
            for (size_t j = 0; j < NR; j++)
                for (size_t e = 0; e < 2; e++) {
                    size_t o = p * NR + j, k = 2 * kk + e;
                    pack[((p * kp + kk) * NR + j) * 2 + e] = o < out && k < in ? v4r_f32_to_bf16(w[o * in + k]) : 0;
                }
}

/* a (rows_pad x pitch bf16, pitch = 2 kpairs) = rows [0, mc) of x (ld, in columns) rounded to bf16
 * (nearest even), zeros past in and in the rows [mc, rows_pad). Shared with the AMX GEMM. */
V4R_BF16 void v4r_bf16_rows(const float *x, size_t ld, size_t in, size_t mc, size_t rows_pad, size_t pitch,
                            uint16_t *a)
{
    for (size_t r = 0; r < rows_pad; r++) {
        uint16_t *ar = a + r * pitch;
        for (size_t k = 0; k < pitch; k += 32) {
            __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
            if (r < mc && k < in) {
                lo = _mm512_maskz_loadu_ps(v4r_lanes(in - k), x + r * ld + k);
                if (in - k > 16)
                    hi = _mm512_maskz_loadu_ps(v4r_lanes(in - k - 16), x + r * ld + k + 16);
            }
            _mm512_storeu_si512((void *)(ar + k), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
}

/* One MR x 32 tile over kp depth pairs: buf (MR x 32) = a (MR rows, lda uint32 pairs apart) b. */
V4R_BF16 static void tile(size_t kp, const uint32_t *restrict a, size_t lda, const uint16_t *restrict b, float *buf)
{
    __m512 c0[MR], c1[MR];
    for (size_t r = 0; r < MR; r++)
        c0[r] = c1[r] = _mm512_setzero_ps();
    for (size_t kk = 0; kk < kp; kk++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)(b + kk * 2 * NR));
        __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(b + kk * 2 * NR + NR));
        for (size_t r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r * lda + kk]);
            c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
            c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
        }
    }
    for (size_t r = 0; r < MR; r++) {
        _mm512_store_ps(buf + r * NR, c0[r]);
        _mm512_store_ps(buf + r * NR + 16, c1[r]);
    }
}

/* Rows [r0, r0 + mc) over all columns; a: MC rounded-up rows of the bf16 rows. */
V4R_BF16 static void row_block(const v4r_linear *l, const float *x, size_t r0, size_t mc, const float *res, int act,
                               float *y, uint16_t *a)
{
    float buf[MR * NR] __attribute__((aligned(64)));
    size_t K = l->in, N = l->out, kp = v4r_bf16_kpairs(K), panels = (N + NR - 1) / NR;
    size_t used = (K + 1) / 2; /* the pairs past it are zero */
    v4r_bf16_rows(x + r0 * K, K, K, mc, (mc + MR - 1) / MR * MR, 2 * kp, a);
    for (size_t i = 0; i < mc; i += MR) {
        size_t mr = mc - i < MR ? mc - i : MR;
        const uint32_t *ai = (const uint32_t *)(const void *)(a + i * 2 * kp);
        for (size_t p = 0; p < panels; p++) {
            tile(used, ai, kp, l->pack16 + p * kp * 2 * NR, buf);
            size_t off = (r0 + i) * N + p * NR;
            v4r_avx512_finish_tile(l, act, buf, y + off, N, mr, p * NR, res ? res + off : NULL);
        }
    }
}

void v4r_bf16_linear(const v4r_linear *l, const float *x, size_t rows, const float *res, int act, float *y)
{
    int fused = act == V4R_ACT_GELU_TANH ? V4R_ACT_NONE : act; /* no vector tanh GELU: applied after */
    size_t units = (rows + MR - 1) / MR, kp = v4r_bf16_kpairs(l->in);
    size_t step = v4r_row_step(units, MC / MR), blocks = (units + step - 1) / step;
    int nt = omp_get_max_threads();
    if ((size_t)nt > blocks)
        nt = (int)blocks;
#pragma omp parallel num_threads(nt)
    {
        uint16_t *a = v4r_thread_scratch(V4R_SCRATCH_ROWS, (size_t)MC * 2 * kp * sizeof *a);
#pragma omp for schedule(dynamic, 1)
        for (size_t b = 0; b < blocks; b++) {
            size_t r0 = b * step * MR, r1 = r0 + step * MR;
            row_block(l, x, r0, (r1 < rows ? r1 : rows) - r0, res, fused, y, a);
        }
    }
    if (act == V4R_ACT_GELU_TANH)
        v4r_activate_generic(y, rows * l->out, act);
}

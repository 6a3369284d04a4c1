/* The AVX-512 GEMM of the linear layers: y = act(x W^T + b [+ res]) over weights packed once; its
 * driver (row blocks over the threads, the fused MLP, the LayerNorm per block) also runs the fp16
 * GEMM's blocks (gemm_fp16.c). */

/* Design: W is packed at load into panels of 32 output columns, k-major (two zmm per k). The
 * threads take blocks of rows (v4r_row_blocks) as they come free, so a core shared with other work
 * holds up nobody; per block of MC rows and KC depth it
 * packs the rows k-major (MR at a time, by 16 x 16 transposes) and runs 14 x 32 register tiles
 * over every panel, the panel's KC x 32 slice staying in cache across the block's tiles. A tile
 * starts from the partial sums of the previous depth block, so each output is one FMA chain over k
 * in order: the numbers do not depend on the row count, the blocking or the threads. The last depth
 * block stores the tile to a small buffer (whole vectors, so the loads that follow take the values
 * straight from the stores) and adds the bias, the residual and the activation on the way to y. */
#include "internal.h"
#include "vmath_avx512.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* PF_AHEAD: how many depth steps ahead a tile asks for its operands (software prefetch: the B
 * slice, 48 KiB at full depth, and the row panel do not both fit L1, and the hardware's own
 * prefetch left the loop waiting on L2). */
enum { MR = 14, NR = V4R_PANEL, KC = 384, MC = MR * 12, PF_AHEAD = 16 };

void v4r_avx512_pack(const float *w, size_t out, size_t in, float *pack)
{
    size_t panels = (out + NR - 1) / NR;
    for (size_t p = 0; p < panels; p++)
        for (size_t k = 0; k < in; k++)
            for (size_t j = 0; j < NR; j++) {
                size_t o = p * NR + j;
                pack[(p * in + k) * NR + j] = o < out ? w[o * in + k] : 0.0f;
            }
}

/* The epilogue of one 16-column vector: bias, residual, activation. */
V4R_AVX512_INLINE __m512 finish(__m512 v, const float *bias, const float *res, int act, __mmask16 m)
{
    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias));
    if (res)
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, res));
    if (act == V4R_ACT_GELU)
        v = v4r_gelu16(v);
    else if (act == V4R_ACT_QUICK_GELU)
        v = v4r_quick_gelu16(v);
    else if (act == V4R_ACT_RELU)
        v = _mm512_max_ps(v, _mm512_setzero_ps());
    return v;
}

/* One MR x 32 tile: out (ldo, lanes o0/o1) = [cin (ldi, lanes i0/i1) +] a (kc x MR) b (kc x 32),
 * rows [0, mr) only; cin NULL: start from zero. Constant trip counts over the rows keep the 28 sums
 * in registers. */
V4R_AVX512 static void tile(size_t kc, const float *restrict a, const float *restrict b, const float *cin, size_t ldi,
                            __mmask16 i0, __mmask16 i1, float *out, size_t ldo, __mmask16 o0, __mmask16 o1, size_t mr)
{
    __m512 c0[MR], c1[MR];
    for (size_t r = 0; r < MR; r++) {
        c0[r] = r < mr && cin ? _mm512_maskz_loadu_ps(i0, cin + r * ldi) : _mm512_setzero_ps();
        c1[r] = r < mr && cin ? _mm512_maskz_loadu_ps(i1, cin + r * ldi + 16) : _mm512_setzero_ps();
    }
    for (size_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b + k * NR), b1 = _mm512_load_ps(b + k * NR + 16);
        _mm_prefetch((const char *)(b + (k + PF_AHEAD) * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + (k + PF_AHEAD) * NR + 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(a + (k + PF_AHEAD) * MR), _MM_HINT_T0);
        for (size_t r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(a[k * MR + r]);
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
    }
    for (size_t r = 0; r < MR; r++)
        if (r < mr) {
            _mm512_mask_storeu_ps(out + r * ldo, o0, c0[r]);
            _mm512_mask_storeu_ps(out + r * ldo + 16, o1, c1[r]);
        }
}

/* The epilogue of a finished tile: sums from buf (mr x 32, whole vectors, so the loads take the
 * values straight from the stores), bias, residual, activation, into c (ldc); columns [col, col +
 * 32) of the layer, those past its end left alone. */
V4R_AVX512 void v4r_avx512_finish_tile(const v4r_linear *l, int act, const float *buf, float *c, size_t ldc,
                                       size_t mr, size_t col, const float *res)
{
    const float *bias = l->bias + col;
    __mmask16 m0 = v4r_lanes(l->out - col), m1 = l->out - col > 16 ? v4r_lanes(l->out - col - 16) : 0;
    for (size_t r = 0; r < mr; r++) {
        const float *rr = res ? res + r * ldc : NULL;
        _mm512_mask_storeu_ps(c + r * ldc, m0, finish(_mm512_load_ps(buf + r * NR), bias, rr, act, m0));
        if (m1)
            _mm512_mask_storeu_ps(c + r * ldc + 16, m1,
                                  finish(_mm512_load_ps(buf + r * NR + 16), bias + 16, rr ? rr + 16 : NULL, act, m1));
    }
}

/* Packs rows [0, mc) x depth [k0, k0 + kc) of x (ld) into MR-row k-major micro-panels, zero rows
 * past mc, by 16 x 16 transposes. */
V4R_AVX512 static void pack_rows(const float *x, size_t ld, size_t mc, size_t k0, size_t kc, float *ap)
{
    for (size_t i = 0; i < mc; i += MR) {
        float *dst = ap + i * kc;
        size_t mr = mc - i < MR ? mc - i : MR;
        for (size_t k = 0; k < kc; k += 16) {
            __mmask16 m = v4r_lanes(kc - k);
            __m512 r[16];
            for (size_t q = 0; q < 16; q++)
                r[q] = q < mr ? _mm512_maskz_loadu_ps(m, x + (i + q) * ld + k0 + k) : _mm512_setzero_ps();
            v4r_transpose16(r);
            for (size_t q = 0; q < 16 && k + q < kc; q++)
                _mm512_mask_storeu_ps(dst + (k + q) * MR, (__mmask16)((1u << MR) - 1), r[q]);
        }
    }
}


/* Asks L2 for the two lines of 32 columns in each of mr rows (ld apart): the lines a tile's epilogue
 * reads (the residual) and writes, fetched while the tile computes (to L2, not L1: the tile's own
 * operands would push them out of L1 again), so its stores do not wait on L3. */
static inline void prefetch_to_l2(const float *p, size_t ld, size_t mr)
{
    for (size_t r = 0; r < mr; r++) {
        _mm_prefetch((const char *)(p + r * ld), _MM_HINT_T1);
        _mm_prefetch((const char *)(p + r * ld + 16), _MM_HINT_T1);
    }
}

/* y (mc x l->out) = act(x (mc x l->in) W^T + bias [+ res]): one block of rows over all columns. */
V4R_AVX512 static void row_block(const v4r_linear *l, int act, const float *x, const float *res, float *y, size_t mc,
                                 float *ap)
{
    float buf[MR * NR] __attribute__((aligned(64)));
    size_t K = l->in, N = l->out, panels = (N + NR - 1) / NR;
    for (size_t k0 = 0; k0 < K; k0 += KC) {
        size_t kc = K - k0 < KC ? K - k0 : KC;
        int first = k0 == 0, last = k0 + kc == K;
        pack_rows(x, K, mc, k0, kc, ap);
        for (size_t p = 0; p < panels; p++) {
            const float *b = l->pack + (p * K + k0) * NR;
            size_t col = p * NR;
            __mmask16 m0 = v4r_lanes(N - col), m1 = N - col > 16 ? v4r_lanes(N - col - 16) : 0;
            for (size_t i = 0; i < mc; i += MR) {
                size_t mr = mc - i < MR ? mc - i : MR;
                float *c = y + i * N + col;
                if (!last) {
                    tile(kc, ap + i * kc, b, first ? NULL : c, N, m0, m1, c, N, m0, m1, mr);
                    continue;
                }
                prefetch_to_l2(c, N, mr);
                if (res)
                    prefetch_to_l2(res + i * N + col, N, mr);
                tile(kc, ap + i * kc, b, first ? NULL : c, N, m0, m1, buf, NR, 0xffff, 0xffff, mr);
                v4r_avx512_finish_tile(l, act, buf, c, N, mr, col, res ? res + i * N + col : NULL);
            }
        }
    }
}

/* One block of rows of l by its engine: float32 (scratch: MC x KC floats) or fp16. */
V4R_AVX512 static void any_row_block(const v4r_linear *l, int act, const float *x, const float *res, float *y,
                                     size_t mc, void *scratch)
{
    if (l->half == V4R_FP16_AVX512)
        v4r_fp16_row_block(l, act, x, res, y, mc, scratch);
    else
        row_block(l, act, x, res, y, mc, scratch);
}

/* Scratch bytes a thread needs for a block of rows of l. */
static size_t row_scratch(const v4r_linear *l)
{
    size_t f32 = (size_t)MC * KC * sizeof(float);
    if (l->half != V4R_FP16_AVX512)
        return f32;
    size_t f16 = v4r_fp16_scratch(l, MC);
    return f16 > f32 ? f16 : f32;
}

/* The blocks of rows the threads share out (v4r_row_blocks of the row tiles, at most MC rows). */
static size_t row_blocks(size_t rows) { return v4r_row_blocks((rows + MR - 1) / MR, MC / MR); }

/* Block b of blocks: its first row and its row count. */
static size_t block_rows(size_t b, size_t blocks, size_t rows, size_t *r0)
{
    size_t units = (rows + MR - 1) / MR, r1 = (b + 1) * units / blocks * MR;
    *r0 = b * units / blocks * MR;
    return (r1 < rows ? r1 : rows) - *r0;
}

void v4r_avx512_linear(const v4r_linear *l, const float *x, size_t rows, const float *res, int act, float *y,
                       const v4r_norm *norm)
{
    /* the tanh GELU has no vector form here: applied after the product */
    int inner = act == V4R_ACT_GELU_TANH ? V4R_ACT_NONE : act;
    size_t K = l->in, N = l->out, blocks = row_blocks(rows);
    int nt = omp_get_max_threads();
    if ((size_t)nt > blocks)
        nt = (int)blocks;
#pragma omp parallel num_threads(nt)
    {
        void *ap = v4r_thread_scratch(V4R_SCRATCH_ROWS, row_scratch(l));
#pragma omp for schedule(dynamic, 1)
        for (size_t b = 0; b < blocks; b++) {
            size_t r0, mc = block_rows(b, blocks, rows, &r0);
            any_row_block(l, inner, x + r0 * K, res ? res + r0 * N : NULL, y + r0 * N, mc, ap);
            if (norm && act != V4R_ACT_GELU_TANH)
                v4r_layernorm_rows(y + r0 * N, mc, N, norm);
        }
    }
    if (act == V4R_ACT_GELU_TANH) {
        v4r_activate_generic(y, rows * l->out, act);
        if (norm)
            v4r_layernorm(y, rows, N, norm->gamma, norm->beta, norm->eps);
    }
}

void v4r_avx512_mlp(const v4r_linear *fc1, const v4r_linear *fc2, const float *x, size_t rows, const float *res,
                    int act, float *y, const v4r_norm *norm)
{
    int inner = act == V4R_ACT_GELU_TANH ? V4R_ACT_NONE : act;
    size_t K = fc1->in, I = fc1->out, N = fc2->out, blocks = row_blocks(rows);
    int nt = omp_get_max_threads();
    if ((size_t)nt > blocks)
        nt = (int)blocks;
#pragma omp parallel num_threads(nt)
    {
        size_t s1 = row_scratch(fc1), s2 = row_scratch(fc2);
        void *ap = v4r_thread_scratch(V4R_SCRATCH_ROWS, s1 > s2 ? s1 : s2);
        float *mid = v4r_thread_scratch(V4R_SCRATCH_MID, (size_t)MC * I * sizeof *mid);
#pragma omp for schedule(dynamic, 1)
        for (size_t b = 0; b < blocks; b++) {
            size_t r0, mc = block_rows(b, blocks, rows, &r0);
            any_row_block(fc1, inner, x + r0 * K, NULL, mid, mc, ap);
            if (act == V4R_ACT_GELU_TANH)
                v4r_activate_generic(mid, mc * I, act);
            any_row_block(fc2, V4R_ACT_NONE, mid, res ? res + r0 * N : NULL, y + r0 * N, mc, ap);
            if (norm)
                v4r_layernorm_rows(y + r0 * N, mc, N, norm);
        }
    }
}

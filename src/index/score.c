/* Scoring kernels of the index: query groups against vector panels (float32, float16, int8), in
 * AVX-512, AVX2 and portable C. Every score is the same FMA chain over the dimensions in order
 * (score = fma(q[d-1], x[d-1], ... fma(q[0], x[0], 0))), as in the AVX-512 ranking kernel of eval:
 * the bits do not depend on the kernel, the batch or the item's position. int8 chains run over the
 * integer codes and the result is multiplied by the row's scale. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

#include "vlm4rec/kernels.h"
#ifdef __x86_64__
#include <immintrin.h>
#endif

#define INLINE static inline __attribute__((always_inline))

const size_t ix_group_sizes[] = {12, 8, 4, 2, 1, 0};

static float element_of(int dtype, const void *vectors, size_t at)
{
    switch (dtype) {
    case V4R_INDEX_F16: {
        const unsigned char *b = (const unsigned char *)vectors + 2 * at;
        return v4r_f16_to_f32((uint16_t)(b[0] | b[1] << 8));
    }
    case V4R_INDEX_I8: return (float)((const int8_t *)vectors)[at];
    default: return ((const float *)vectors)[at];
    }
}

static float element(const v4r_index *ix, size_t at) { return element_of((int)ix->h.dtype, ix->vectors, at); }

float ix_score_item(const v4r_index *ix, const float *q, int32_t item)
{
    size_t d = ix->h.dim, p = (size_t)item / IX_PANEL, lane = (size_t)item % IX_PANEL;
    size_t at = p * d * IX_PANEL + lane;
    float s = 0;
    for (size_t k = 0; k < d; k++, at += IX_PANEL)
        s = fmaf(q[k], element(ix, at), s);
    return ix->h.dtype == V4R_INDEX_I8 ? s * ix->scales[item] : s;
}

/* ---- portable C (builds without AVX2) ---- */

#if !(defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
static void score_generic(size_t d, int dtype, const void *vectors, const float *scales, const float *a, size_t R,
                          size_t p0, size_t np, float *out, size_t ldo)
{
    for (size_t p = 0; p < np; p++)
        for (size_t lane = 0; lane < IX_PANEL; lane++) {
            size_t item = (p0 + p) * IX_PANEL + lane, base = (p0 + p) * d * IX_PANEL + lane;
            float scale = dtype == V4R_INDEX_I8 ? scales[item] : 1;
            for (size_t u = 0; u < R; u++) {
                float s = 0;
                for (size_t k = 0; k < d; k++)
                    s = fmaf(a[k * R + u], element_of(dtype, vectors, base + k * IX_PANEL), s);
                out[u * ldo + p * IX_PANEL + lane] = dtype == V4R_INDEX_I8 ? s * scale : s;
            }
        }
}
#endif

/* ---- AVX-512: a tile of R queries x P panels, one zmm per (query, panel) ---- */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IX_HAVE_AVX512 1
#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq")))

INLINE AVX512 __m512 load16(const void *v, int dtype, size_t at)
{
    if (dtype == V4R_INDEX_F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)((const uint16_t *)v + at)));
    if (dtype == V4R_INDEX_I8)
        return _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)((const int8_t *)v + at))));
    return _mm512_loadu_ps((const float *)v + at);
}

INLINE AVX512 void tile512(const float *restrict a, size_t R, size_t P, int dtype, const void *v,
                           const float *scales, size_t p0, size_t d, float *restrict out, size_t ldo)
{
    __m512 c[12][4];
#pragma GCC unroll 12
    for (size_t u = 0; u < R; u++)
#pragma GCC unroll 4
        for (size_t p = 0; p < P; p++)
            c[u][p] = _mm512_setzero_ps();
    size_t at = p0 * d * IX_PANEL;
    for (size_t k = 0; k < d; k++, a += R, at += IX_PANEL) {
        __m512 x[4];
#pragma GCC unroll 4
        for (size_t p = 0; p < P; p++)
            x[p] = load16(v, dtype, at + p * d * IX_PANEL);
#pragma GCC unroll 12
        for (size_t u = 0; u < R; u++) {
            __m512 s = _mm512_set1_ps(a[u]);
#pragma GCC unroll 4
            for (size_t p = 0; p < P; p++)
                c[u][p] = _mm512_fmadd_ps(s, x[p], c[u][p]);
        }
    }
#pragma GCC unroll 4
    for (size_t p = 0; p < P; p++) {
        __m512 sc = dtype == V4R_INDEX_I8 ? _mm512_loadu_ps(scales + (p0 + p) * IX_PANEL) : _mm512_set1_ps(1);
#pragma GCC unroll 12
        for (size_t u = 0; u < R; u++)
            _mm512_storeu_ps(out + u * ldo + p * IX_PANEL,
                             dtype == V4R_INDEX_I8 ? _mm512_mul_ps(c[u][p], sc) : c[u][p]);
    }
}

#define IX_RUN512(R, P, DT)                                                                                          \
    static AVX512 void run512_##R##_##DT(const float *a, const void *v, const float *sc, size_t p0, size_t np,      \
                                         size_t d, float *out, size_t ldo)                                         \
    {                                                                                                                \
        size_t p = 0;                                                                                                \
        for (; p + P <= np; p += P)                                                                                  \
            tile512(a, R, P, DT, v, sc, p0 + p, d, out + p * IX_PANEL, ldo);                                         \
        for (; p < np; p++)                                                                                          \
            tile512(a, R, 1, DT, v, sc, p0 + p, d, out + p * IX_PANEL, ldo);                                         \
    }
#define IX_RUN512_ALL(DT) IX_RUN512(12, 2, DT) IX_RUN512(8, 3, DT) IX_RUN512(4, 4, DT) IX_RUN512(2, 4, DT) \
    IX_RUN512(1, 4, DT)
IX_RUN512_ALL(0)
IX_RUN512_ALL(1)
IX_RUN512_ALL(2)

typedef void (*run_fn)(const float *, const void *, const float *, size_t, size_t, size_t, float *, size_t);
#define IX_ROW512(DT) {run512_12_##DT, run512_8_##DT, run512_4_##DT, run512_2_##DT, run512_1_##DT}
static const run_fn runs512[3][5] = {IX_ROW512(0), IX_ROW512(1), IX_ROW512(2)};
#endif

/* ---- AVX2: a tile of R queries x H half panels (8 lanes each) ---- */

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define IX_HAVE_AVX2 1

INLINE __m256 load8(const void *v, int dtype, size_t at)
{
    if (dtype == V4R_INDEX_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)((const uint16_t *)v + at)));
    if (dtype == V4R_INDEX_I8)
        return _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)((const int8_t *)v + at))));
    return _mm256_loadu_ps((const float *)v + at);
}

/* H half panels from half panel h0 (h0 + H <= 2 within one panel pair layout: h = panel * 2 + half). */
INLINE void tile256(const float *restrict a, size_t R, size_t H, int dtype, const void *v, const float *scales,
                    size_t h0, size_t d, float *restrict out, size_t ldo)
{
    __m256 c[6][2];
    size_t at[2];
#pragma GCC unroll 2
    for (size_t h = 0; h < H; h++)
        at[h] = (h0 + h) / 2 * d * IX_PANEL + (h0 + h) % 2 * 8;
#pragma GCC unroll 6
    for (size_t u = 0; u < R; u++)
#pragma GCC unroll 2
        for (size_t h = 0; h < H; h++)
            c[u][h] = _mm256_setzero_ps();
    for (size_t k = 0; k < d; k++, a += R) {
        __m256 x[2];
#pragma GCC unroll 2
        for (size_t h = 0; h < H; h++)
            x[h] = load8(v, dtype, at[h] + k * IX_PANEL);
#pragma GCC unroll 6
        for (size_t u = 0; u < R; u++) {
            __m256 s = _mm256_set1_ps(a[u]);
#pragma GCC unroll 2
            for (size_t h = 0; h < H; h++)
                c[u][h] = _mm256_fmadd_ps(s, x[h], c[u][h]);
        }
    }
#pragma GCC unroll 2
    for (size_t h = 0; h < H; h++) {
        __m256 sc = dtype == V4R_INDEX_I8 ? _mm256_loadu_ps(scales + (h0 + h) * 8) : _mm256_set1_ps(1);
#pragma GCC unroll 6
        for (size_t u = 0; u < R; u++)
            _mm256_storeu_ps(out + u * ldo + h * 8, dtype == V4R_INDEX_I8 ? _mm256_mul_ps(c[u][h], sc) : c[u][h]);
    }
}

/* R queries (at most 6 at once) over np panels. */
INLINE void run256(const float *a, size_t R, int dtype, const void *v, const float *sc, size_t p0, size_t np,
                   size_t d, float *out, size_t ldo)
{
    for (size_t h = 0; h < 2 * np; h += 2)
        tile256(a, R, 2, dtype, v, sc, 2 * p0 + h, d, out + h * 8, ldo);
}

#define IX_RUN256(R, DT)                                                                                             \
    static void run256_##R##_##DT(const float *a, const void *v, const float *sc, size_t p0, size_t np, size_t d,  \
                                  float *out, size_t ldo)                                                          \
    {                                                                                                                \
        run256(a, R, DT, v, sc, p0, np, d, out, ldo);                                                                \
    }
#define IX_RUN256_ALL(DT) IX_RUN256(6, DT) IX_RUN256(4, DT) IX_RUN256(2, DT) IX_RUN256(1, DT)
IX_RUN256_ALL(0)
IX_RUN256_ALL(1)
IX_RUN256_ALL(2)
typedef void (*run256_fn)(const float *, const void *, const float *, size_t, size_t, size_t, float *, size_t);
#define IX_ROW256(DT) {run256_6_##DT, run256_4_##DT, run256_2_##DT, run256_1_##DT}
static const run256_fn runs256[3][4] = {IX_ROW256(0), IX_ROW256(1), IX_ROW256(2)};

/* Groups of 12 and 8 run as 6 + 6 and 4 + 4 (a holds them k-major; split it into halves). */
static void score_avx2(size_t d, int dtype, const void *vectors, const float *scales, const float *a, size_t R,
                       size_t p0, size_t np, float *out, size_t ldo, float *half)
{
    size_t r = R > 6 ? R / 2 : R;
    int which = r == 6 ? 0 : r == 4 ? 1 : r == 2 ? 2 : 3;
    run256_fn fn = runs256[dtype][which];
    if (r == R) {
        fn(a, vectors, scales, p0, np, d, out, ldo);
        return;
    }
    for (size_t part = 0; part < 2; part++) {
        for (size_t k = 0; k < d; k++)
            for (size_t u = 0; u < r; u++)
                half[k * r + u] = a[k * R + part * r + u];
        fn(half, vectors, scales, p0, np, d, out + part * r * ldo, ldo);
    }
}
#endif

void ix_score_block(const v4r_index *ix, int dtype, const void *vectors, const float *scales, const float *a,
                    size_t R, size_t p0, size_t np, float *out, size_t ldo)
{
#ifdef IX_HAVE_AVX512
    if (ix->kernel == V4R_KERNEL_AVX512) {
        int which = R == 12 ? 0 : R == 8 ? 1 : R == 4 ? 2 : R == 2 ? 3 : 4;
        runs512[dtype][which](a, vectors, scales, p0, np, ix->h.dim, out, ldo);
        return;
    }
#endif
#ifdef IX_HAVE_AVX2
    float stack[6 * 1024];
    float *half = R > 6 && ix->h.dim * 6 > 6 * 1024 ? v4r_malloc(ix->h.dim * 6 * sizeof *half) : stack;
    score_avx2(ix->h.dim, dtype, vectors, scales, a, R, p0, np, out, ldo, half);
    if (half != stack)
        free(half);
#else
    score_generic(ix->h.dim, dtype, vectors, scales, a, R, p0, np, out, ldo);
#endif
}

void ix_score_panels(const v4r_index *ix, const float *a, size_t R, size_t p0, size_t np, float *out, size_t ldo)
{
    ix_score_block(ix, (int)ix->h.dtype, ix->vectors, ix->scales, a, R, p0, np, out, ldo);
}

/* Multi-head attention of one sequence: the BLAS path (two cblas_sgemm per head and a softmax
 * per row) and the dispatch to the AVX-512 kernel. */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

enum { QB = 8 }; /* the AVX-512 kernel's query block (its scratch: QB score rows) */

size_t v4r_attention_scratch(size_t len, size_t head_dim)
{
    size_t lp = (len + 15) / 16 * 16, blas = len * len, avx = (2 * head_dim + QB) * lp;
    return blas > avx ? blas : avx;
}

/* The real rows: scores (valid x valid) = scale q k^T; softmax per row; out = p v; padded rows 0.
 * The products involve the real rows only, so padding cannot change them. */
static void head_blas(const float *q, const float *k, const float *v, size_t ld, size_t len, size_t valid,
                      size_t hd, float *out, size_t ldo, float *s)
{
    float scale = (float)(1.0 / sqrt((double)hd));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)valid, (int)valid, (int)hd, scale, q, (int)ld, k,
                (int)ld, 0.0f, s, (int)valid);
    for (size_t i = 0; i < valid; i++)
        v4r_softmax(s + i * valid, valid, NULL, V4R_KERNEL_BLAS);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)valid, (int)hd, (int)valid, 1.0f, s, (int)valid, v,
                (int)ld, 0.0f, out, (int)ldo);
    for (size_t i = valid; i < len; i++)
        memset(out + i * ldo, 0, hd * sizeof *out);
}

void v4r_attention(const float *qkv, size_t ld, size_t len, size_t valid, size_t heads, size_t head_dim,
                   size_t head0, size_t nheads, float *out, size_t ldo, float *scratch, int kernel)
{
    if (len == 0)
        return;
    if (valid == 0) { /* nothing to attend to */
        for (size_t i = 0; i < len; i++)
            memset(out + i * ldo + head0 * head_dim, 0, nheads * head_dim * sizeof *out);
        return;
    }
    if (kernel == V4R_KERNEL_AVX512) {
        v4r_avx512_attention(qkv, ld, len, valid, heads, head_dim, head0, nheads, out, ldo, scratch);
        return;
    }
    size_t hidden = heads * head_dim;
    for (size_t h = head0; h < head0 + nheads; h++) {
        size_t off = h * head_dim;
        head_blas(qkv + off, qkv + hidden + off, qkv + 2 * hidden + off, ld, len, valid, head_dim, out + off, ldo,
                  scratch);
    }
}

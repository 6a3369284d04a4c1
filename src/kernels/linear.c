/* Linear layers: weights prepared once (copied for cblas_sgemm, packed for the AVX-512 GEMM, or
 * rounded to bf16 and packed for vdpbf16ps / AMX, or to fp16 for vfmadd231ph);
 * the BLAS path runs one cblas_sgemm over all rows and a fused bias/residual/activation pass. */
#include "internal.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each thread's scratch slots, freed when the thread ends (a service's worker threads come and go,
 * so a plain _Thread_local would lose its buffers). */
typedef struct {
    void *mem;
    size_t bytes;
} scratch_slot;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *slots)
{
    scratch_slot *s = slots;
    for (int i = 0; i < V4R_SCRATCH_SLOTS; i++)
        free(s[i].mem);
    free(s);
}

static void scratch_key_make(void) { pthread_key_create(&scratch_key, scratch_free); }

void *v4r_thread_scratch(int slot, size_t bytes)
{
    pthread_once(&scratch_once, scratch_key_make);
    scratch_slot *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = v4r_calloc(V4R_SCRATCH_SLOTS, sizeof *s);
        pthread_setspecific(scratch_key, s);
    }
    if (bytes > s[slot].bytes) {
        free(s[slot].mem);
        s[slot].mem = v4r_huge_alloc(bytes);
        s[slot].bytes = bytes;
    }
    return s[slot].mem;
}

size_t v4r_row_step(size_t units, size_t most)
{
    size_t want = 4 * (size_t)omp_get_max_threads(), step = (units + want - 1) / want;
    return step < 1 ? 1 : step > most ? most : step;
}

size_t v4r_row_blocks(size_t units, size_t most)
{
    size_t nt = (size_t)omp_get_max_threads(), blocks = (units + most - 1) / most;
    if (blocks < 4 * nt)
        blocks = 4 * nt;
    blocks = (blocks + nt - 1) / nt * nt;
    return blocks > units ? (units ? units : 1) : blocks;
}

/* The fields every linear layer has: sizes, kernel, a copy of the bias (zeros without one). */
static void linear_head(v4r_linear *l, const float *bias, size_t out, size_t in, int kernel)
{
    memset(l, 0, sizeof *l);
    l->in = in;
    l->out = out;
    l->kernel = kernel;
    l->bias = v4r_calloc(out, sizeof *l->bias);
    if (bias)
        memcpy(l->bias, bias, out * sizeof *bias);
}

void v4r_linear_init(v4r_linear *l, const float *w, const float *bias, size_t out, size_t in, int kernel)
{
    linear_head(l, bias, out, in, kernel);
    if (kernel == V4R_KERNEL_AVX512) {
        size_t panels = (out + V4R_PANEL - 1) / V4R_PANEL;
        l->pack = v4r_huge_alloc(panels * V4R_PANEL * in * sizeof *l->pack);
        v4r_avx512_pack(w, out, in, l->pack);
    } else {
        l->w = v4r_malloc(out * in * sizeof *l->w);
        memcpy(l->w, w, out * in * sizeof *w);
    }
}

void v4r_linear_init_half(v4r_linear *l, const float *w, const float *bias, size_t out, size_t in, int kernel,
                          int engine)
{
    /* an engine this CPU (or OS) lacks degrades: AMX to vdpbf16ps, vdpbf16ps to float32; asking
     * for AMX here also obtains the tile state for the process */
    if (engine == V4R_BF16_AMX && !v4r_cpu_has_amx_bf16())
        engine = V4R_BF16_AVX512;
    if (engine == V4R_BF16_AVX512 && !v4r_cpu_has_avx512_bf16())
        engine = V4R_BF16_NONE;
    if (engine == V4R_FP16_AVX512 && !v4r_cpu_has_avx512_fp16())
        engine = V4R_BF16_NONE;
    if (engine == V4R_BF16_NONE) {
        v4r_linear_init(l, w, bias, out, in, kernel);
        return;
    }
    linear_head(l, bias, out, in, kernel);
    l->half = engine;
    if (engine == V4R_FP16_AVX512) {
        size_t panels = (out + V4R_PANEL16 - 1) / V4R_PANEL16;
        l->pack16 = v4r_huge_alloc(panels * in * V4R_PANEL16 * sizeof *l->pack16);
        v4r_fp16_pack(w, out, in, l->pack16);
        return;
    }
    size_t panels = (out + V4R_PANEL - 1) / V4R_PANEL;
    l->pack16 = v4r_huge_alloc(panels * v4r_bf16_kpairs(in) * 2 * V4R_PANEL * sizeof *l->pack16);
    v4r_bf16_pack(w, out, in, l->pack16);
}

void v4r_linear_free(v4r_linear *l)
{
    free(l->w);
    free(l->pack);
    free(l->pack16);
    free(l->bias);
    memset(l, 0, sizeof *l);
}

/* y[r] = act(y[r] + bias [+ res[r]]) for rows [r0, r1). */
static void epilogue_rows(const v4r_linear *l, size_t r0, size_t r1, const float *res, int act, float *y)
{
    size_t n = l->out;
    for (size_t r = r0; r < r1; r++) {
        float *yr = y + r * n;
        for (size_t c = 0; c < n; c++)
            yr[c] += l->bias[c];
        if (res)
            for (size_t c = 0; c < n; c++)
                yr[c] += res[r * n + c];
        v4r_activate_generic(yr, n, act);
    }
}

/* One cblas_sgemm per segment. Called inside a parallel region, OpenBLAS runs each single-threaded,
 * so a segment's numbers depend only on its rows. */
static void linear_blas(const v4r_linear *l, const float *x, size_t rows, const size_t *seg, size_t nseg,
                        const float *res, int act, float *y)
{
    size_t one[2] = {0, rows};
    if (!seg) {
        seg = one;
        nseg = 1;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t s = 0; s < nseg; s++) {
        size_t r0 = seg[s], m = seg[s + 1] - r0;
        if (m == 0)
            continue;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)l->out, (int)l->in, 1.0f, x + r0 * l->in,
                    (int)l->in, l->w, (int)l->in, 0.0f, y + r0 * l->out, (int)l->out);
        epilogue_rows(l, r0, r0 + m, res, act, y);
    }
}

/* Whether the float32 AVX-512 GEMM's driver runs l (float32 on that kernel, or fp16). */
static int runs_fused(const v4r_linear *l)
{
    return l->half == V4R_FP16_AVX512 || (l->half == V4R_BF16_NONE && l->kernel == V4R_KERNEL_AVX512);
}

void v4r_linear_apply_norm(const v4r_linear *l, const float *x, size_t rows, const size_t *seg, size_t nseg,
                           const float *res, int act, float *y, const v4r_norm *norm)
{
    if (rows == 0)
        return;
    if (runs_fused(l)) {
        v4r_avx512_linear(l, x, rows, res, act, y, norm);
        return;
    }
    if (l->half == V4R_BF16_AMX)
        v4r_amx_linear(l, x, rows, res, act, y);
    else if (l->half == V4R_BF16_AVX512)
        v4r_bf16_linear(l, x, rows, res, act, y);
    else
        linear_blas(l, x, rows, seg, nseg, res, act, y);
    if (norm)
        v4r_layernorm(y, rows, l->out, norm->gamma, norm->beta, norm->eps);
}

void v4r_linear_apply(const v4r_linear *l, const float *x, size_t rows, const size_t *seg, size_t nseg,
                      const float *res, int act, float *y)
{
    v4r_linear_apply_norm(l, x, rows, seg, nseg, res, act, y, NULL);
}

void v4r_mlp_apply_norm(const v4r_linear *fc1, const v4r_linear *fc2, const float *x, size_t rows,
                        const size_t *seg, size_t nseg, const float *res, int act, float *inter, float *y,
                        const v4r_norm *norm)
{
    int fused = runs_fused(fc1) && runs_fused(fc2);
    if (rows && fused) {
        v4r_avx512_mlp(fc1, fc2, x, rows, res, act, y, norm);
        return;
    }
    v4r_linear_apply(fc1, x, rows, seg, nseg, NULL, act, inter);
    v4r_linear_apply_norm(fc2, inter, rows, seg, nseg, res, V4R_ACT_NONE, y, norm);
}

void v4r_mlp_apply(const v4r_linear *fc1, const v4r_linear *fc2, const float *x, size_t rows, const size_t *seg,
                   size_t nseg, const float *res, int act, float *inter, float *y)
{
    v4r_mlp_apply_norm(fc1, fc2, x, rows, seg, nseg, res, act, inter, y, NULL);
}

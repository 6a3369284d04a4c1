/* The bf16 GEMM of the linear layers on AMX tiles: y = act(x W^T + b [+ res]) with W rounded to bf16
 * and packed once (the vdpbf16ps pack), each row of x rounded to bf16, float32 sums. */

/* Design: eight 16 x 64-byte tiles: four float32 sums (32 rows x 32 columns), two of rows (32 bf16
 * depths each), two of weights (16 depth pairs x 16 columns, read from the panel at a 128-byte
 * stride). The threads take blocks of rows (v4r_row_step) as they come free; per 32 rows it
 * rounds the rows to bf16 once, then for every panel runs tdpbf16ps over the depth in order and
 * stores the sums to a buffer for the float32 epilogue. A row's sums see its own row and the
 * weights only (the padded rows are zeros), so its numbers depend on the row alone, never on the
 * row count or the threads. */
#include "internal.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define V4R_AMX __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,amx-tile,amx-bf16")))

enum { MB = 32, NR = V4R_PANEL };

/* The tile configuration (palette 1): tiles 0-7, 16 rows of 64 bytes. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* The configuration lives in memory for ldtilecfg (a complete object: the intrinsic's asm tells
 * the compiler that it reads 8 bytes, so a local's other stores could be dropped). */
static const tile_config CONFIG = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

V4R_AMX static void configure(void) { _tile_loadconfig(&CONFIG); }

V4R_AMX static void release(void) { _tile_release(); }

/* buf (32 x 32 float32) = a (32 rows, pitch bytes apart, kp depth pairs) b (panel of kp pairs). */
V4R_AMX static void block_tiles(const uint16_t *a, size_t pitch, const uint16_t *b, size_t kp, float *buf)
{
    __asm__ volatile("" ::: "memory"); /* the tile loads read memory the compiler does not see */
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (size_t kk = 0; kk < kp; kk += 16) {
        _tile_loadd(4, a + 2 * kk, pitch);
        _tile_loadd(5, (const char *)(a + 2 * kk) + 16 * pitch, pitch);
        _tile_loadd(6, b + kk * 2 * NR, 2 * NR * sizeof *b);
        _tile_loadd(7, b + kk * 2 * NR + NR, 2 * NR * sizeof *b);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, buf, NR * sizeof *buf);
    _tile_stored(1, buf + 16, NR * sizeof *buf);
    _tile_stored(2, buf + 16 * NR, NR * sizeof *buf);
    _tile_stored(3, buf + 16 * NR + 16, NR * sizeof *buf);
    __asm__ volatile("" ::: "memory"); /* and the stores write it */
}

V4R_AMX static void amx_rows(const v4r_linear *l, const float *x, size_t r0, size_t r1, size_t rows, const float *res,
                             int act, float *y)
{
    float buf[MB * NR] __attribute__((aligned(64)));
    size_t K = l->in, N = l->out, kp = v4r_bf16_kpairs(K), panels = (N + NR - 1) / NR;
    uint16_t *a = v4r_thread_scratch(V4R_SCRATCH_ROWS, MB * 2 * kp * sizeof *a);
    for (size_t r = r0; r < r1; r += MB) {
        size_t mc = (r + MB < rows ? r + MB : rows) - r;
        v4r_bf16_rows(x + r * K, K, K, mc, MB, 2 * kp, a);
        for (size_t p = 0; p < panels; p++) {
            block_tiles(a, 2 * kp * sizeof *a, l->pack16 + p * kp * 2 * NR, kp, buf);
            size_t off = r * N + p * NR;
            v4r_avx512_finish_tile(l, act, buf, y + off, N, mc, p * NR, res ? res + off : NULL);
        }
    }
}

void v4r_amx_linear(const v4r_linear *l, const float *x, size_t rows, const float *res, int act, float *y)
{
    int fused = act == V4R_ACT_GELU_TANH ? V4R_ACT_NONE : act; /* no vector tanh GELU: applied after */
    size_t units = (rows + MB - 1) / MB, step = v4r_row_step(units, 4), blocks = (units + step - 1) / step;
    int nt = omp_get_max_threads();
    if ((size_t)nt > blocks)
        nt = (int)blocks;
#pragma omp parallel num_threads(nt)
    {
        configure();
#pragma omp for schedule(dynamic, 1)
        for (size_t b = 0; b < blocks; b++) {
            size_t r0 = b * step * MB, r1 = r0 + step * MB;
            amx_rows(l, x, r0, r1 < rows ? r1 : rows, rows, res, fused, y);
        }
        release();
    }
    if (act == V4R_ACT_GELU_TANH)
        v4r_activate_generic(y, rows * l->out, act);
}

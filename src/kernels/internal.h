/* Internal to the kernels module: the AVX-512 implementations behind the public dispatchers. */
#ifndef V4R_KERNELS_INTERNAL_H
#define V4R_KERNELS_INTERNAL_H

#include "vlm4rec/kernels.h"

enum { V4R_PANEL = 32 };   /* output columns per packed weight panel */
enum { V4R_PANEL16 = 64 }; /* the same for the fp16 GEMM */

/* Packs W (out x in) into ceil(out / 32) panels of in x 32 floats, zero-padded columns. */
void v4r_avx512_pack(const float *w, size_t out, size_t in, float *pack);
/* y = act(x W^T + bias [+ res]) over the packed weights (v4r_linear_apply's contract), float32 or
 * (l->half == V4R_FP16_AVX512) fp16. */
void v4r_avx512_linear(const v4r_linear *l, const float *x, size_t rows, const float *res, int act, float *y,
                       const v4r_norm *norm);
/* y = fc2(act(fc1(x))) + fc2's bias [+ res], a block of rows at a time, the block's fc1 output kept
 * in a per-thread buffer (cache-sized) instead of a rows x fc1->out array: the same numbers as the
 * two v4r_avx512_linear calls. Both end, when norm is not NULL, in v4r_layernorm_rows of each block of
 * rows of y once it is written. */
void v4r_avx512_mlp(const v4r_linear *fc1, const v4r_linear *fc2, const float *x, size_t rows, const float *res,
                    int act, float *y, const v4r_norm *norm);
/* The epilogue of a finished 32-column tile: buf (mr x 32) + bias [+ res], activated, into c (ldc),
 * columns [col, col + 32) of l (those past l->out left alone); act is never V4R_ACT_GELU_TANH. */
void v4r_avx512_finish_tile(const v4r_linear *l, int act, const float *buf, float *c, size_t ldc, size_t mr,
                            size_t col, const float *res);
/* bf16: packs W (out x in) into l->pack16 (see v4r_linear); y = act(x W^T + bias [+ res]) by
 * vdpbf16ps or by AMX tiles. */
void v4r_bf16_pack(const float *w, size_t out, size_t in, uint16_t *pack);
size_t v4r_bf16_kpairs(size_t in); /* depth pairs of a packed bf16 panel: ceil(in / 2) rounded up to 16 */
/* a (rows_pad x pitch bf16) = rows [0, mc) of x (ld, in columns) rounded to bf16, zero-padded. */
void v4r_bf16_rows(const float *x, size_t ld, size_t in, size_t mc, size_t rows_pad, size_t pitch, uint16_t *a);
/* fp16: packs W (out x in) into l->pack16 (see v4r_linear); y (mc x l->out) = act(x (mc x l->in)
 * W^T + bias [+ res]) for one block of rows, on the calling thread, with v4r_fp16_scratch(l, mc)
 * bytes of scratch (act is never V4R_ACT_GELU_TANH). The float32 GEMM's driver runs it. */
void v4r_fp16_pack(const float *w, size_t out, size_t in, uint16_t *pack);
size_t v4r_fp16_scratch(const v4r_linear *l, size_t mc);
void v4r_fp16_row_block(const v4r_linear *l, int act, const float *x, const float *res, float *y, size_t mc,
                        void *scratch);
void v4r_bf16_linear(const v4r_linear *l, const float *x, size_t rows, const float *res, int act, float *y);
void v4r_amx_linear(const v4r_linear *l, const float *x, size_t rows, const float *res, int act, float *y);
void v4r_avx512_activate(float *x, size_t n, int act);
void v4r_avx512_softmax(float *x, size_t n, const uint8_t *mask);
void v4r_avx512_attention(const float *qkv, size_t ld, size_t len, size_t valid, size_t heads, size_t head_dim,
                          size_t head0, size_t nheads, float *out, size_t ldo, float *scratch);

/* The rows of a thread's block, in units of a GEMM's row tile: about four blocks a thread, at most
 * most units (the threads take blocks as they come free; a row's numbers never depend on it). */
size_t v4r_row_step(size_t units, size_t most);
/* The same as a count of blocks that split the units evenly (block b: units [b units / blocks,
 * (b + 1) units / blocks), at most most each), a multiple of the thread count where there are units
 * enough: the threads finish together instead of one waiting on the last, short block. */
size_t v4r_row_blocks(size_t units, size_t most);

/* A buffer of at least bytes for the calling thread, kept for its next call (grown, never shrunk;
 * v4r_huge_alloc'd): the GEMMs' packed rows and the MLP's middle block, without an allocation (and
 * fresh pages to fault in) per call. One buffer a slot: a caller holds one slot at a time. */
enum { V4R_SCRATCH_ROWS, V4R_SCRATCH_MID, V4R_SCRATCH_SLOTS };
void *v4r_thread_scratch(int slot, size_t bytes);

/* Portable pieces shared by both implementations. */
void v4r_activate_generic(float *x, size_t n, int act);
/* v4r_layernorm of rows rows of n floats on the calling thread alone. */
void v4r_layernorm_rows(float *x, size_t rows, size_t n, const v4r_norm *norm);

#endif

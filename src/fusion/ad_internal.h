/* Internal to the fusion module: node creation, gradient buffers, shape checks and the row
 * reductions the operations share. */
#ifndef V4R_AD_INTERNAL_H
#define V4R_AD_INTERNAL_H

#include "vlm4rec/fusion.h"

/* Loops run in parallel from this many floats on: below it a thread team costs more than it saves
 * (and much more on a busy machine). */
#define V4R_AD_PAR (1 << 18)

/* Tape memory (64-byte aligned, reused after a reset). */
void *v4r_ad_alloc(v4r_ad_tape *tape, size_t bytes);
/* A node of rows x cols made by backward from inputs (NULL-terminated up to 3); it needs a
 * gradient when any input does. */
v4r_ad_tensor *v4r_ad_node(v4r_ad_tape *tape, size_t rows, size_t cols, v4r_ad_backward_fn backward,
                           v4r_ad_tensor *a, v4r_ad_tensor *b, v4r_ad_tensor *c);
/* The gradient buffer of t, zero-filled on first use. */
float *v4r_ad_grad(v4r_ad_tape *tape, v4r_ad_tensor *t);
/* Aborts with a message when cond is false (shape mismatches are programming errors). */
void v4r_ad_check(int cond, const char *op, const v4r_ad_tensor *a, const v4r_ad_tensor *b);

/* out[c] += sum over rows of x[r, c], summed in fixed blocks of rows (the same bits whatever the
 * thread count). */
void v4r_ad_colsum_acc(const float *x, size_t rows, size_t cols, float *out);
/* Accumulates contribution g (rows x cols, the output's shape) into the gradient of an operand of
 * shape xr x xc that was broadcast to it. */
void v4r_ad_reduce_acc(const float *g, size_t rows, size_t cols, float *dst, size_t xr, size_t xc);

/* Vector math on n floats (AVX2 where the build has it). */
void v4r_ad_exp_n(const float *x, float *y, size_t n);
/* The same on the calling thread only (inside a parallel loop). */
void v4r_ad_exp_serial(const float *x, float *y, size_t n);
void v4r_ad_sigmoid_n(const float *x, float *y, size_t n);
void v4r_ad_tanh_n(const float *x, float *y, size_t n);

#endif

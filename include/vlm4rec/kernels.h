/* kernels: the numeric building blocks of the encoders: fp16/bf16 conversion, packed linear layers
 * (an AVX-512 GEMM chosen at run time, cblas_sgemm as the fallback), LayerNorm, GELU, softmax and
 * multi-head attention with a padding mask. */
#ifndef VLM4REC_KERNELS_H
#define VLM4REC_KERNELS_H

#include "vlm4rec/base.h"

/* ---- kernel choice ---- */

/* The two implementations: cblas_sgemm + portable C, or the AVX-512 kernels. Each is deterministic:
 * a row's numbers do not depend on how many rows are computed with it, nor on the thread count. */
enum { V4R_KERNEL_BLAS = 0, V4R_KERNEL_AVX512 = 1 };

/* Whether this CPU (and OS) runs the AVX-512 kernels (F, VL, BW, DQ). */
int v4r_cpu_has_avx512(void);
/* VLM4REC_KERNEL: unset, empty or auto = avx512 when the CPU has it, else blas; blas; avx512
 * (an error when the CPU lacks it). Anything else is V4R_EUSAGE. */
int v4r_kernel_pick(int *kernel, v4r_err *err);
const char *v4r_kernel_name(int kernel);

/* ---- precision of the matrix products ---- */

/* fp32: float32 throughout. bf16: the linear layers' weights and inputs rounded to bfloat16 (nearest
 * even), products summed in float32. fp16: rounded to IEEE half (nearest even; past 65504 they
 * become infinite), products summed in fp16 over runs of 64 depths, the runs in float32.
 * Everything else stays float32. */
enum { V4R_PREC_FP32 = 0, V4R_PREC_BF16 = 1, V4R_PREC_FP16 = 2 };
const char *v4r_precision_name(int precision); /* fp32, bf16, fp16 */
int v4r_precision_by_name(const char *name);   /* V4R_PREC_*, or -1 */
/* How the half-precision products run: not at all (fp32 instead), AVX512_BF16's vdpbf16ps, AMX
 * tiles (bf16), or AVX512_FP16's vfmadd231ph (fp16). */
enum { V4R_BF16_NONE = 0, V4R_BF16_AVX512 = 1, V4R_BF16_AMX = 2, V4R_FP16_AVX512 = 3 };

/* Whether this CPU has AVX512_BF16 (cpuid leaf 7 subleaf 1, EAX bit 5) with the AVX-512 kernels. */
int v4r_cpu_has_avx512_bf16(void);
/* Whether this CPU has AMX-TILE and AMX-BF16 (cpuid leaf 7, EDX bits 24 and 22) and the OS grants
 * this process the tile state (asked for once). */
int v4r_cpu_has_amx_bf16(void);
/* The bf16 engine for this CPU: VLM4REC_BF16 unset, empty or auto = AMX when usable, else vdpbf16ps
 * when usable, else none; amx or avx512 = that one only (none without it); none. Anything else is
 * V4R_EUSAGE. */
int v4r_bf16_pick(int *engine, v4r_err *err);
/* Whether this CPU has AVX512_FP16 (cpuid leaf 7, EDX bit 23) with the AVX-512 kernels. */
int v4r_cpu_has_avx512_fp16(void);
/* The engine of precision (V4R_PREC_*) on this CPU: none for fp32, v4r_bf16_pick for bf16; for
 * fp16, VLM4REC_FP16 unset, empty or auto = V4R_FP16_AVX512 when the CPU has it, else none; none.
 * Anything else is V4R_EUSAGE. */
int v4r_half_pick(int precision, int *engine, v4r_err *err);
const char *v4r_bf16_name(int engine); /* any engine's name: none, avx512_bf16, amx, avx512_fp16 */

/* ---- half precision ---- */

float v4r_f16_to_f32(uint16_t h);
uint16_t v4r_f32_to_f16(float f); /* round to nearest even; overflow to inf; NaN stays NaN */
float v4r_bf16_to_f32(uint16_t h);
uint16_t v4r_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */
/* n little-endian values from src (any alignment) into dst. */
void v4r_f16_to_f32_n(const void *src, float *dst, size_t n);
void v4r_bf16_to_f32_n(const void *src, float *dst, size_t n);

/* ---- activations ---- */

enum {
    V4R_ACT_NONE = 0,
    V4R_ACT_GELU = 1,      /* x/2 (1 + erf(x/sqrt 2)): transformers' "gelu" */
    V4R_ACT_GELU_TANH = 2, /* the tanh approximation: "gelu_new", "gelu_pytorch_tanh" */
    V4R_ACT_RELU = 3,
    V4R_ACT_QUICK_GELU = 4, /* x sigmoid(1.702 x): CLIP's "quick_gelu" */
};

/* The activation transformers calls name (a config's "hidden_act": gelu, gelu_python, gelu_new,
 * gelu_pytorch_tanh, gelu_fast, relu, quick_gelu), or -1. */
int v4r_act_by_name(const char *name);
/* Applies act to x[0..n) in place. */
void v4r_activate(float *x, size_t n, int act, int kernel);
/* The scalar references (libm erff / tanhf / expf). */
float v4r_gelu_ref(float x);
float v4r_gelu_tanh_ref(float x);
float v4r_quick_gelu_ref(float x); /* x / (1 + e^(-1.702 x)), libm's expf */

/* ---- row operations ---- */

/* LayerNorm of each of rows rows of n floats, in place: (x - mean) / sqrt(var + eps) * gamma + beta,
 * the biased variance, sums in a fixed order. */
void v4r_layernorm(float *x, size_t rows, size_t n, const float *gamma, const float *beta, float eps);
/* Softmax of x[0..n) in place over the entries whose mask is nonzero (mask NULL: all); masked
 * entries become 0. With nothing unmasked every entry is 0. */
void v4r_softmax(float *x, size_t n, const uint8_t *mask, int kernel);

/* ---- linear layers ---- */

/* y = x W^T + b with W (out x in, PyTorch's layout) prepared once: copied for cblas_sgemm, or packed
 * into 32-column k-major panels for the AVX-512 GEMM. */
typedef struct {
    size_t in, out;
    int kernel;
    float *w;    /* blas: out x in row-major */
    float *pack; /* avx512: ceil(out / 32) panels of in x 32 floats, zero-padded */
    float *bias; /* out floats (zeros when the layer has none) */
    int half;    /* V4R_BF16_* / V4R_FP16_AVX512: the half-precision engine, or V4R_BF16_NONE */
    /* bf16: ceil(out / 32) panels of kpairs x 32 pairs of bf16 (k even, k odd), zero-padded;
     * kpairs = ceil(in / 2) rounded up to 16. fp16: ceil(out / 64) panels of in x 64 halves. */
    uint16_t *pack16;
} v4r_linear;

/* w: out x in; bias may be NULL. */
void v4r_linear_init(v4r_linear *l, const float *w, const float *bias, size_t out, size_t in, int kernel);
/* The same with the weights rounded to bf16 or fp16 and packed for engine (V4R_BF16_AVX512,
 * V4R_BF16_AMX, which needs kernel V4R_KERNEL_AVX512, or V4R_FP16_AVX512); V4R_BF16_NONE is
 * v4r_linear_init, and so is an engine this CPU lacks. The product of a half layer rounds each input
 * row the same way (V4R_PREC_* says how it sums); a row's numbers depend on the row alone, never on
 * the other rows or the thread count. */
void v4r_linear_init_half(v4r_linear *l, const float *w, const float *bias, size_t out, size_t in, int kernel,
                          int engine);
void v4r_linear_free(v4r_linear *l);
/* y (rows x out) = act(x (rows x in) W^T + bias [+ res]), res (rows x out) or NULL; the bias is
 * added to the product, then res, then the activation. The rows fall in nseg segments (sequences):
 * seg[0] = 0 < seg[1] < ... < seg[nseg] = rows (seg NULL: one segment). A row's numbers depend only
 * on its segment (blas: one single-threaded cblas_sgemm per segment, segments in parallel; avx512:
 * on the row alone), never on the other segments or the thread count. Multithreaded (OpenMP); y
 * must not overlap x or res. */
void v4r_linear_apply(const v4r_linear *l, const float *x, size_t rows, const size_t *seg, size_t nseg,
                      const float *res, int act, float *y);

/* y = fc2(act(fc1(x))) [+ res]: v4r_linear_apply of fc1 (into inter, rows x fc1->out) then of fc2,
 * the same numbers; two float32 AVX-512 layers run fused, a block of rows through both while its
 * fc1 output is in cache (inter is then left alone). y may be x (each block of rows is read
 * before it is written), not res. */
void v4r_mlp_apply(const v4r_linear *fc1, const v4r_linear *fc2, const float *x, size_t rows, const size_t *seg,
                   size_t nseg, const float *res, int act, float *inter, float *y);

/* A LayerNorm's parameters (v4r_layernorm's), for a layer whose output it normalizes. */
typedef struct {
    const float *gamma, *beta;
    float eps;
} v4r_norm;
/* v4r_linear_apply and v4r_mlp_apply followed by v4r_layernorm of every row of y (norm NULL: none),
 * the same numbers; the float32 AVX-512 kernel normalizes each block of rows as soon as it is
 * written, while it is still in cache, instead of in a pass over all of y after. */
void v4r_linear_apply_norm(const v4r_linear *l, const float *x, size_t rows, const size_t *seg, size_t nseg,
                           const float *res, int act, float *y, const v4r_norm *norm);
void v4r_mlp_apply_norm(const v4r_linear *fc1, const v4r_linear *fc2, const float *x, size_t rows,
                        const size_t *seg, size_t nseg, const float *res, int act, float *inter, float *y,
                        const v4r_norm *norm);

/* ---- encoder layers ---- */

/* One transformer encoder layer's weights. BERT (post-LN) and CLIP (pre-LN) order the steps
 * differently; each model runs its own forward pass over these. */
typedef struct {
    v4r_linear qkv;                       /* query, key, value stacked: 3 hidden outputs */
    v4r_linear out;                       /* the attention output projection */
    v4r_linear fc1, fc2;                  /* the MLP: hidden -> inter (activated) -> hidden */
    float *ln1_g, *ln1_b, *ln2_g, *ln2_b; /* the LayerNorms around attention and MLP */
} v4r_tlayer;

/* Where a model keeps a layer's tensors: layer i's are "<prefix><i>.<name>.weight" (and ".bias"),
 * e.g. prefix "encoder.layer." and qkv[0] "attention.self.query". */
typedef struct {
    const char *prefix;
    const char *qkv[3], *out, *ln1, *fc1, *fc2, *ln2;
} v4r_tlayer_names;

typedef struct v4r_safetensors v4r_safetensors;

/* Loads layer i (hidden, inter wide) in the order qkv, out, ln1, fc1, fc2, ln2, converted to
 * float32 and prepared for kernel; the first missing or misshapen tensor is the error (from
 * v4r_st_load). On failure L keeps what it loaded: v4r_tlayer_free it. */
int v4r_tlayer_load(const v4r_safetensors *st, const v4r_tlayer_names *names, size_t i, size_t hidden, size_t inter,
                    int kernel, v4r_tlayer *L, v4r_err *err);
/* The same with the four linear layers in bf16 or fp16 for engine (v4r_linear_init_half). */
int v4r_tlayer_load_half(const v4r_safetensors *st, const v4r_tlayer_names *names, size_t i, size_t hidden,
                         size_t inter, int kernel, int engine, v4r_tlayer *L, v4r_err *err);
void v4r_tlayer_free(v4r_tlayer *L);

/* ---- attention ---- */

/* Multi-head scaled dot-product self-attention of one sequence of len tokens of which the first
 * valid are real and the rest padding (masked as keys; their output rows mean nothing: zeros or
 * computed). The real rows' numbers do not depend on the padding. qkv: len rows (stride ld) of [q | k | v], each heads x head_dim; out: len rows (stride
 * ldo) of heads x head_dim. scratch: v4r_attention_scratch(len, head_dim) floats. One thread; the
 * caller parallelizes over sequences (and heads, through head0/nheads). */
void v4r_attention(const float *qkv, size_t ld, size_t len, size_t valid, size_t heads, size_t head_dim,
                   size_t head0, size_t nheads, float *out, size_t ldo, float *scratch, int kernel);
size_t v4r_attention_scratch(size_t len, size_t head_dim);

#endif

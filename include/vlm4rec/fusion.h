/* fusion: a small reverse-mode automatic differentiation tape over float matrices, constant sparse
 * matrices, Adam with gradient clipping and a learning-rate schedule, parameter files
 * (safetensors), and the fusion baselines built on them. */
#ifndef VLM4REC_FUSION_H
#define VLM4REC_FUSION_H

#include "vlm4rec/base.h"

/* ---- tensors and the tape ---- */

/* Every value is a row-major rows x cols float matrix. A complex matrix of m columns is stored as
 * rows x 2m floats, (re, im) interleaved (the layout of torch.view_as_real). */
typedef struct v4r_ad_tensor v4r_ad_tensor;
typedef struct v4r_ad_tape v4r_ad_tape;
typedef void (*v4r_ad_backward_fn)(v4r_ad_tape *tape, v4r_ad_tensor *t);

struct v4r_ad_tensor {
    size_t rows, cols;
    float *val;
    float *grad;    /* d loss / d val: parameters own one; tape nodes get one during backward */
    int needs_grad; /* a parameter, or computed from one */
    /* how a tape node was made */
    v4r_ad_backward_fn backward;
    v4r_ad_tensor *in[3];
    const void *aux; /* op data: indices, a sparse matrix */
    float *saved;    /* values kept for the backward pass */
    float fa;        /* the op's float argument */
    size_t ia, ib;   /* the op's size arguments */
};

/* A tape records the operations of one forward pass; its memory is reused after a reset, so a
 * training step allocates nothing once the first step has run. */
v4r_ad_tape *v4r_ad_tape_new(void);
void v4r_ad_tape_free(v4r_ad_tape *tape);
/* Forgets every node (their values and gradients become invalid); keeps the memory. */
void v4r_ad_tape_reset(v4r_ad_tape *tape);
/* Bytes the tape holds (for memory reports). */
size_t v4r_ad_tape_bytes(const v4r_ad_tape *tape);

/* A constant that refers to data (not copied, never written). */
v4r_ad_tensor *v4r_ad_const(v4r_ad_tape *tape, size_t rows, size_t cols, const float *data);
/* A fresh constant of the tape's memory, uninitialized: the caller fills val. */
v4r_ad_tensor *v4r_ad_new(v4r_ad_tape *tape, size_t rows, size_t cols);
/* Runs the backward pass from loss (1 x 1): every parameter that loss depends on gets d loss /
 * d parameter added to its grad. */
void v4r_ad_backward(v4r_ad_tape *tape, v4r_ad_tensor *loss);

/* ---- operations ----
 * Each records a node and returns it. Shapes must agree (a mismatch is a programming error and
 * aborts with the shapes). "Broadcasting": an operand of 1 row (or 1 column) is repeated over the
 * rows (columns) of the other. */

/* C = op(A) op(B), op = transpose when ta / tb (cblas_sgemm). */
v4r_ad_tensor *v4r_ad_matmul(v4r_ad_tape *t, v4r_ad_tensor *a, v4r_ad_tensor *b, int ta, int tb);
/* y = x W^T + b, W out x in (PyTorch's layout), bias 1 x out or NULL. */
v4r_ad_tensor *v4r_ad_linear(v4r_ad_tape *t, v4r_ad_tensor *x, v4r_ad_tensor *w, v4r_ad_tensor *bias);
v4r_ad_tensor *v4r_ad_add(v4r_ad_tape *t, v4r_ad_tensor *a, v4r_ad_tensor *b); /* broadcasting */
v4r_ad_tensor *v4r_ad_sub(v4r_ad_tape *t, v4r_ad_tensor *a, v4r_ad_tensor *b); /* broadcasting */
v4r_ad_tensor *v4r_ad_mul(v4r_ad_tape *t, v4r_ad_tensor *a, v4r_ad_tensor *b); /* broadcasting */
v4r_ad_tensor *v4r_ad_scale(v4r_ad_tape *t, v4r_ad_tensor *x, float s);
v4r_ad_tensor *v4r_ad_relu(v4r_ad_tape *t, v4r_ad_tensor *x);
v4r_ad_tensor *v4r_ad_tanh(v4r_ad_tape *t, v4r_ad_tensor *x);
v4r_ad_tensor *v4r_ad_sigmoid(v4r_ad_tape *t, v4r_ad_tensor *x);
v4r_ad_tensor *v4r_ad_log_sigmoid(v4r_ad_tape *t, v4r_ad_tensor *x);
v4r_ad_tensor *v4r_ad_softmax(v4r_ad_tape *t, v4r_ad_tensor *x); /* over each row */
/* Mean over rows of -log softmax(row)[target[row]]: 1 x 1 (log-softmax cross-entropy). */
v4r_ad_tensor *v4r_ad_xent(v4r_ad_tape *t, v4r_ad_tensor *logits, const int32_t *target);
/* LayerNorm of each row (biased variance), gamma and beta 1 x cols. */
v4r_ad_tensor *v4r_ad_layernorm(v4r_ad_tape *t, v4r_ad_tensor *x, v4r_ad_tensor *gamma, v4r_ad_tensor *beta,
                                float eps);
/* Each row divided by max(|row|, eps) (torch.nn.functional.normalize). */
v4r_ad_tensor *v4r_ad_l2norm(v4r_ad_tape *t, v4r_ad_tensor *x, float eps);
/* Along axis 0 (rows) or 1 (columns). */
v4r_ad_tensor *v4r_ad_concat(v4r_ad_tape *t, v4r_ad_tensor *a, v4r_ad_tensor *b, int axis);
v4r_ad_tensor *v4r_ad_slice(v4r_ad_tape *t, v4r_ad_tensor *x, int axis, size_t start, size_t len);
/* y[i] = x[idx[i]] (idx is copied). */
v4r_ad_tensor *v4r_ad_gather(v4r_ad_tape *t, v4r_ad_tensor *x, const int32_t *idx, size_t n);
v4r_ad_tensor *v4r_ad_mean(v4r_ad_tape *t, v4r_ad_tensor *x);   /* of all entries: 1 x 1 */
v4r_ad_tensor *v4r_ad_sum(v4r_ad_tape *t, v4r_ad_tensor *x);    /* of all entries: 1 x 1 */
v4r_ad_tensor *v4r_ad_rowsum(v4r_ad_tape *t, v4r_ad_tensor *x); /* of each row: rows x 1 */

/* A constant sparse matrix in CSR form, with its transpose for the backward pass. */
typedef struct {
    size_t rows, cols, nnz;
    size_t *ptr; /* rows + 1 */
    int32_t *col;
    float *val;
} v4r_csr;
typedef struct {
    v4r_csr a, at;
} v4r_spmat;
/* From COO triplets (any order); duplicates are summed. Indices must be in range. */
void v4r_spmat_build(v4r_spmat *m, size_t rows, size_t cols, size_t nnz, const int32_t *r, const int32_t *c,
                     const float *v);
void v4r_spmat_free(v4r_spmat *m);
/* y = A x, A constant (rows of the output parallel; deterministic). */
v4r_ad_tensor *v4r_ad_spmm(v4r_ad_tape *t, const v4r_spmat *a, v4r_ad_tensor *x);

/* Real FFT of each row (n = x->cols), norm "ortho": rows x 2 (n/2 + 1), complex. */
v4r_ad_tensor *v4r_ad_rfft(v4r_ad_tape *t, v4r_ad_tensor *x);
/* Its inverse to n real values a row (torch.fft.irfft(X, n, norm="ortho")): the imaginary parts
 * of the zero (and for even n the n/2) frequency are ignored. */
v4r_ad_tensor *v4r_ad_irfft(v4r_ad_tape *t, v4r_ad_tensor *x, size_t n);
/* Complex elementwise product (broadcasting over rows). */
v4r_ad_tensor *v4r_ad_cmul(v4r_ad_tape *t, v4r_ad_tensor *a, v4r_ad_tensor *b);

/* ---- parameters and Adam ---- */

/* Named parameters with their gradients and Adam moments. A parameter keeps the shape it is saved
 * with (up to 3 dimensions); it is stored as shape[0] x (the rest) floats, a 1-D one as 1 x n. */
typedef struct {
    char *name;
    int ndim;
    size_t shape[3];
    v4r_ad_tensor t; /* val and grad owned */
    float *m, *v;    /* Adam's moments */
} v4r_param;

typedef struct {
    size_t n, cap;
    v4r_param **p;
    uint64_t steps; /* Adam steps taken */
} v4r_params;

void v4r_params_init(v4r_params *ps);
void v4r_params_free(v4r_params *ps);
/* Adds a zero-filled parameter; the tensor stays valid until v4r_params_free. */
v4r_ad_tensor *v4r_params_add(v4r_params *ps, const char *name, int ndim, const size_t *shape);
v4r_param *v4r_params_find(const v4r_params *ps, const char *name);
size_t v4r_params_count(const v4r_params *ps); /* scalars in all */
void v4r_params_zero_grad(v4r_params *ps);
/* sqrt of the sum of every squared gradient entry (in double, in a fixed order). */
double v4r_params_grad_norm(const v4r_params *ps);
/* torch.nn.utils.clip_grad_norm_: scales the gradients by max / (norm + 1e-6) when the norm is
 * above max. Returns the norm before clipping. */
double v4r_params_clip(v4r_params *ps, double max_norm);
/* Every value into one buffer of v4r_params_count floats, and back (best checkpoint). */
void v4r_params_snapshot(const v4r_params *ps, float *buf);
void v4r_params_restore(v4r_params *ps, const float *buf);
/* 1 when every value is finite. */
int v4r_params_finite(const v4r_params *ps);

/* Initializers (PyTorch's). */
void v4r_init_uniform(v4r_ad_tensor *t, float bound, v4r_rng *rng);
void v4r_init_normal(v4r_ad_tensor *t, float std, v4r_rng *rng);
/* nn.Linear's default: weight and bias uniform in +-1/sqrt(in). */
void v4r_init_linear(v4r_ad_tensor *w, v4r_ad_tensor *bias, v4r_rng *rng);
/* nn.init.xavier_uniform_ of an out x in matrix: +-sqrt(6 / (in + out)). */
void v4r_init_xavier(v4r_ad_tensor *w, v4r_rng *rng);

typedef struct {
    double lr;           /* base learning rate */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* 0 = none */
    int decoupled;       /* 0: L2 added to the gradient (torch.optim.Adam); 1: AdamW */
} v4r_adam;

void v4r_adam_defaults(v4r_adam *o);
/* One step at learning rate lr (the schedule's value for this epoch) over every parameter. */
void v4r_adam_step(v4r_params *ps, const v4r_adam *o, double lr);

/* Learning rate per epoch (epochs count from 0). */
enum { V4R_LR_CONSTANT = 0, V4R_LR_STEP, V4R_LR_EXP, V4R_LR_COSINE };
typedef struct {
    int kind;
    double gamma;     /* step, exp: the factor */
    size_t step;      /* step: epochs between decays */
    size_t epochs;    /* cosine: the length of the decay */
    double min_ratio; /* cosine: the floor as a share of the base rate */
} v4r_lr_schedule;
/* "constant", "step:N:G" (x G every N epochs), "exp:G" (x G each epoch), "cosine[:MIN]" (to MIN x
 * base over the run). V4R_EUSAGE names what is wrong. */
int v4r_lr_parse(const char *spec, size_t epochs, v4r_lr_schedule *s, v4r_err *err);
double v4r_lr_at(const v4r_lr_schedule *s, double base, size_t epoch);

/* Writes the parameters as a safetensors file (F32, little-endian), atomically. metadata: NULL or
 * n_meta key/value string pairs stored under "__metadata__". */
int v4r_params_save(const v4r_params *ps, const char *path, const char *const *metadata, size_t n_meta,
                    v4r_err *err);

#endif

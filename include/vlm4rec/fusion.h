/* fusion: a small reverse-mode automatic differentiation tape over float matrices, constant sparse
 * matrices, Adam with gradient clipping and a learning-rate schedule, parameter files
 * (safetensors), and the fusion baselines built on them. */
#ifndef VLM4REC_FUSION_H
#define VLM4REC_FUSION_H

#include "vlm4rec/base.h"
#include "vlm4rec/data.h"

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
 * d parameter added to its grad. The tape nodes' own gradients are scratch: a large one's memory
 * goes to the next gradient once its node has passed it on. */
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
/* The same values, row-major, read as rows x cols (rows x cols must equal the entries of x). */
v4r_ad_tensor *v4r_ad_reshape(v4r_ad_tape *t, v4r_ad_tensor *x, size_t rows, size_t cols);
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

/* Learning rate per epoch (epochs count from 0). V4R_LR_PLATEAU follows a validation loss
 * instead (v4r_plateau below). */
enum { V4R_LR_CONSTANT = 0, V4R_LR_STEP, V4R_LR_EXP, V4R_LR_COSINE, V4R_LR_PLATEAU };
typedef struct {
    int kind;
    double gamma;     /* step, exp: the factor; plateau: the factor of each reduction */
    size_t step;      /* step: epochs between decays; plateau: the patience */
    size_t epochs;    /* cosine: the length of the decay */
    double min_ratio; /* cosine: the floor as a share of the base rate */
} v4r_lr_schedule;
/* "constant", "step:N:G" (x G every N epochs), "exp:G" (x G each epoch), "cosine[:MIN]" (to MIN x
 * base over the run), "plateau[:G[:N]]" (x G, default 0.1, once more than N epochs, default 10,
 * have not lowered the validation loss). V4R_EUSAGE names what is wrong. */
int v4r_lr_parse(const char *spec, size_t epochs, v4r_lr_schedule *s, v4r_err *err);
double v4r_lr_at(const v4r_lr_schedule *s, double base, size_t epoch); /* plateau: base */

/* torch.optim.lr_scheduler.ReduceLROnPlateau(mode="min", factor, patience, threshold=1e-4,
 * threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8), stepped once an epoch on the validation
 * loss: a loss below best x (1 - 1e-4) is the new best; once more than patience epochs in a row
 * have not been, the rate is multiplied by factor (kept when the change would be 1e-8 or less). */
typedef struct {
    double factor, threshold, min_lr, eps;
    size_t patience, cooldown;
    double lr, best;           /* the current rate; the best loss (infinity at first) */
    size_t bad, cooldown_left; /* epochs in a row without a new best; cooldown epochs left */
} v4r_plateau;
void v4r_plateau_init(v4r_plateau *p, const v4r_lr_schedule *s, double base);
/* One scheduler step on this epoch's loss; returns the rate of the next epoch. */
double v4r_plateau_step(v4r_plateau *p, double loss);
/* The schedule as v4r_lr_parse reads it ("exp:0.9991838", "constant", ...) into buf. */
void v4r_lr_format(const v4r_lr_schedule *s, char *buf, size_t size);

/* Writes the parameters as a safetensors file (F32, little-endian), atomically. metadata: NULL or
 * n_meta key/value string pairs stored under "__metadata__". */
int v4r_params_save(const v4r_params *ps, const char *path, const char *const *metadata, size_t n_meta,
                    v4r_err *err);

/* ---- attention and gating fusion ---- */

enum { V4R_MODEL_ATTENTION = 0, V4R_MODEL_GATING = 1, V4R_MODEL_SMORE = 2 };
/* Attention / gating objectives: InfoNCE over user co-interaction (an anchor item, another item of
 * the same user's training history as the positive, in-batch and sampled negatives), or the
 * released script's (one example per training interaction: the item against `negatives` other
 * items drawn for it, the positive logit the normalized item with itself; v4r_released_loss). */
enum { V4R_OBJ_COINTERACTION = 0, V4R_OBJ_RELEASED = 1 };
/* Which weights training keeps: the best epoch's by the validation criterion, or the last epoch's
 * (what the released script ends up saving). */
enum { V4R_KEEP_BEST = 0, V4R_KEEP_LAST = 1 };

/* text and vision rows are each projected to hidden (Linear); an MLP over the concatenated
 * projections (Linear 2h -> h, ReLU, Linear h -> 2 or h) gives two softmax weights (attention) or a
 * per-dimension sigmoid gate g (gating: g t + (1 - g) v); the weighted sum goes through Linear ->
 * LayerNorm -> ReLU to dim. */
typedef struct {
    int kind; /* V4R_MODEL_ATTENTION or V4R_MODEL_GATING */
    size_t dim_text, dim_vision, hidden, dim;
    v4r_params params;
    v4r_ad_tensor *text_w, *text_b, *vision_w, *vision_b; /* projections */
    v4r_ad_tensor *mlp1_w, *mlp1_b, *mlp2_w, *mlp2_b;     /* weights or gate */
    v4r_ad_tensor *out_w, *out_b, *ln_g, *ln_b;           /* output layer */
} v4r_fusion_model;

void v4r_fusion_model_init(v4r_fusion_model *m, int kind, size_t dim_text, size_t dim_vision, size_t hidden,
                           size_t dim, uint64_t seed);
void v4r_fusion_model_free(v4r_fusion_model *m);
/* The fused vectors of the rows of text (n x dim_text) and vision (n x dim_vision). */
v4r_ad_tensor *v4r_fusion_forward(v4r_ad_tape *t, const v4r_fusion_model *m, v4r_ad_tensor *text,
                                  v4r_ad_tensor *vision);
/* InfoNCE of n anchors against candidates whose first n rows are their positives (row i for
 * anchor i) and the rest extra negatives: the cross-entropy of the cosines / temperature. */
v4r_ad_tensor *v4r_infonce(v4r_ad_tape *t, v4r_ad_tensor *anchors, v4r_ad_tensor *cands, float temperature);
/* One batch's loss: items anchor[i] and positive[i] (i < n) and n_neg sampled negatives, their
 * rows taken from the whole text (n_items x dim_text) and vision matrices. */
v4r_ad_tensor *v4r_fusion_batch_loss(v4r_ad_tape *t, const v4r_fusion_model *m, v4r_ad_tensor *text,
                                     v4r_ad_tensor *vision, const int32_t *anchor, const int32_t *positive, size_t n,
                                     const int32_t *negative, size_t n_neg, float temperature);
/* The released script's contrastive_loss: anchors (n x d) and k negatives each (n k x d, those of
 * anchor i in rows i k .. i k + k - 1) are L2-normalized; logits [sum(a_i a_i), a_i . n_ij] /
 * temperature (the first is 1 / temperature up to rounding); cross-entropy with target 0, mean
 * over the n anchors. */
v4r_ad_tensor *v4r_released_loss(v4r_ad_tape *t, v4r_ad_tensor *anchors, v4r_ad_tensor *negatives, size_t k,
                                 float temperature);
/* That loss for items item[0 .. n) with k negatives each (negative[i k .. i k + k)), fused in one
 * forward pass from the whole text and vision matrices. */
v4r_ad_tensor *v4r_fusion_released_loss(v4r_ad_tape *t, const v4r_fusion_model *m, v4r_ad_tensor *text,
                                        v4r_ad_tensor *vision, const int32_t *item, size_t n,
                                        const int32_t *negative, size_t k, float temperature);
/* The fused vectors of n items (rows of text and vision) into out (n x dim), in chunks. */
void v4r_fusion_apply(const v4r_fusion_model *m, const float *text, const float *vision, size_t n, float *out);

/* ---- SMORE (spectral modality fusion with graph convolution, WSDM 2025) ---- */

/* Users and items get learnable 64-d ID embeddings; the modality features (trainable, initialized
 * from the vectors) are projected to 64-d, filtered in the frequency domain (rfft, a learnable
 * complex filter per modality, the product of both spectra times a third filter for the fusion
 * view, irfft) and gate the item ID embeddings; the gated embeddings propagate once over their
 * item-item graph (cosine kNN, symmetric normalization; the fusion graph is the element-wise
 * maximum of the two) and reach users through the normalized interaction matrix. The behavioural
 * ("content") view is LightGCN over the normalized user-item graph (mean of the layer outputs).
 * Softmax attention from the fusion view and sigmoid preference gates from the content view
 * weight the side views; final = content + mean of the three side views. Rows: users, then items. */
typedef struct {
    size_t n_users, n_items, dim, dim_text, dim_vision, ui_layers;
    size_t ii_layers; /* propagations over the item-item graphs (the official n_layers; 1 after init) */
    v4r_params params;
    v4r_ad_tensor *user_emb, *item_emb, *text_feat, *image_feat;
    v4r_ad_tensor *text_w, *text_b, *image_w, *image_b;
    v4r_ad_tensor *query_v[3], *query_t[3]; /* Linear (weight, bias), Tanh, Linear (weight) */
    v4r_ad_tensor *gate_v[2], *gate_t[2], *gate_f[2];
    v4r_ad_tensor *prefer_v[2], *prefer_t[2], *prefer_f[2];
    v4r_ad_tensor *filter_v, *filter_t, *filter_f; /* 1 x (dim/2 + 1) complex */
    v4r_spmat ui_adj;                              /* (users + items)^2, symmetric normalization */
    v4r_spmat r_norm;                              /* its users x items block */
    v4r_spmat image_adj, text_adj, fusion_adj;     /* items x items */
} v4r_smore_model;

/* The kNN graph of the rows of x (n x d) by cosine, k neighbours a row (itself included; ties by
 * lower index), weighted by the cosine and normalized D^-1/2 A D^-1/2 with D the row sums. A zero
 * row has cosine 0 with everything. */
void v4r_knn_graph(const float *x, size_t n, size_t d, size_t k, v4r_spmat *out);

/* user/item: the n_inter training interactions (repeats count once); text, vision: n_items rows;
 * knn_image, knn_text: the neighbours a row of each item-item graph. */
void v4r_smore_init(v4r_smore_model *m, size_t n_users, size_t n_items, const int32_t *user, const int32_t *item,
                    size_t n_inter, const float *text, size_t dim_text, const float *vision, size_t dim_vision,
                    size_t dim, size_t knn_image, size_t knn_text, size_t ui_layers, uint64_t seed);
void v4r_smore_free(v4r_smore_model *m);

typedef struct {
    v4r_ad_tensor *all, *side, *content; /* (users + items) x dim */
    /* intermediates, index 0 image, 1 text, 2 fusion: the spectral filter outputs (items x dim,
     * the official image_conv, text_conv, fusion_conv) and the side views before the preference
     * weighting ((users + items) x dim, the official image_embeds, text_embeds, fusion_embeds) */
    v4r_ad_tensor *conv[3], *view[3];
} v4r_smore_views;

void v4r_smore_forward(v4r_ad_tape *t, const v4r_smore_model *m, v4r_smore_views *out);
/* BPR over (user, pos, neg) triples + reg_weight x L2 of the batch's final embeddings / 2 /
 * batch_size + cl_weight x (InfoNCE(side, content) of the positive items + of the users). */
v4r_ad_tensor *v4r_smore_loss(v4r_ad_tape *t, const v4r_smore_model *m, const int32_t *user, const int32_t *pos,
                              const int32_t *neg, size_t n, size_t batch_size, double reg_weight, double cl_weight,
                              float cl_temperature);

/* ---- training ---- */

typedef struct {
    size_t epoch; /* from 1 */
    size_t steps;
    double lr;
    double train_loss;    /* mean over the epoch's steps */
    double valid_loss;    /* attention / gating; NaN when not computed */
    double valid_recall;  /* Recall@20 on the validation split under the shared retriever; NaN when off */
    double native_recall; /* SMORE: Recall@20 of its own user vectors; NaN otherwise */
    double grad_norm;     /* mean gradient norm before clipping */
    double seconds;       /* training steps, wall clock */
    double cpu_seconds;   /* training steps, CPU time of every thread of the process */
    double eval_seconds;  /* validation */
} v4r_epoch_log;

typedef struct {
    v4r_epoch_log *epochs;
    size_t n_epochs, cap;
    size_t best_epoch; /* by the validation criterion; 0: none */
    size_t kept_epoch; /* whose weights and vectors training returns (the best, or with
                          V4R_KEEP_LAST the last completed); 0: none */
    int kept_last;     /* kept_epoch is the last completed epoch, not the best */
    int diverged;      /* the loss or a gradient stopped being finite */
    size_t diverged_epoch, diverged_step;
    size_t early_stop; /* the epoch after which patience ran out; 0: trained every epoch allowed */
    size_t train_pairs;  /* training examples an epoch */
    double setup_seconds; /* graphs, pairs, validation set */
} v4r_train_log;

void v4r_train_log_free(v4r_train_log *log);

typedef struct v4r_train_opts v4r_train_opts;
struct v4r_train_opts {
    int model;     /* V4R_MODEL_* */
    int objective; /* V4R_OBJ_* (attention and gating) */
    const float *text, *vision; /* n_items rows each */
    size_t dim_text, dim_vision;
    const uint8_t *covered; /* NULL: every item; else train and validate on the covered subset */
    size_t epochs;   /* the most epochs to train */
    size_t patience; /* stop once more than this many epochs in a row did not improve the best epoch's
                        criterion (MMRec's stopping_step); 0: train every epoch */
    size_t batch, hidden, dim;
    size_t negatives; /* co-interaction: sampled a batch; released: drawn for each example */
    int keep;         /* V4R_KEEP_BEST or V4R_KEEP_LAST (attention and gating) */
    double lr, weight_decay, clip, temperature;
    int decoupled; /* weight decay as AdamW's */
    v4r_lr_schedule schedule;
    uint64_t seed;
    int valid_recall; /* compute validation Recall@20 every epoch */
    /* SMORE */
    size_t knn_image, knn_text, ui_layers, ii_layers;
    double reg_weight, cl_weight, cl_temperature;
    /* Called after each epoch, its log entry complete; may change the parameters (fault injection). */
    void (*on_epoch)(void *ctx, const v4r_train_log *log, v4r_params *ps);
    void *ctx;
};

/* The defaults of each model (README, "Training the fusion baselines"). */
void v4r_train_defaults(v4r_train_opts *o, int model);
/* On top of the defaults of attention or gating: the released training script's recipe
 * (objective released, output size 768, hidden 512, batch 256, 4 negatives an example, temperature
 * 0.07, Adam 1e-3, clip 1.0, 15 epochs, plateau:0.5:2 on the validation loss, the last epoch's
 * weights; docs/fusion.md). */
void v4r_train_released_recipe(v4r_train_opts *o);

typedef struct {
    v4r_params *params; /* of the kept epoch; owned by the model inside */
    size_t n_items, dim;
    float *items; /* n_items x dim; zero rows for items outside the covered subset */
    size_t n_users;
    float *users; /* SMORE: n_users x dim, else NULL */
    void *model;
    int model_kind;
} v4r_trained;

void v4r_trained_free(v4r_trained *tr);

/* Trains o->model on ds (history = train split, validation = valid split) and fills out with the
 * kept epoch's weights and vectors (the best, or the last with V4R_KEEP_LAST). A loss or gradient
 * that stops being finite ends training: V4R_EINPUT saying where, with out filled from the kept
 * epoch when there was one (log->kept_epoch > 0). */
int v4r_train(const v4r_dataset *ds, const v4r_train_opts *o, v4r_trained *out, v4r_train_log *log, v4r_err *err);

#endif

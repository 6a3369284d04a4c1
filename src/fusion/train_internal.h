/* Internal to the fusion module: what the trainers share (per-user item lists, the validation set
 * and its Recall@20, log entries) and each model's trainer. */
#ifndef V4R_TRAIN_INTERNAL_H
#define V4R_TRAIN_INTERNAL_H

#include "vlm4rec/fusion.h"
#include "vlm4rec/rec.h"

/* The distinct items of each user in one split (restricted to covered items when given), in
 * file order: items[off[u] .. off[u + 1]). */
typedef struct {
    size_t n_users;
    size_t *off;
    int32_t *items;
} v4r_user_items;

void v4r_user_items_build(const v4r_dataset *ds, int split, const uint8_t *covered, v4r_user_items *ui);
void v4r_user_items_free(v4r_user_items *ui);

/* The candidate items (every item, or the covered ones), ascending. */
int32_t *v4r_candidate_items(size_t n_items, const uint8_t *covered, size_t *n);

/* The validation protocol: history = train, truth = valid, last 10 items, history masked, the
 * covered subset when given. */
typedef struct {
    v4r_protocol proto;
    v4r_eval_set es;
} v4r_valid_set;

int v4r_valid_init(v4r_valid_set *v, const v4r_dataset *ds, const uint8_t *covered, v4r_err *err);
void v4r_valid_free(v4r_valid_set *v);
/* Recall@20 of item vectors (n_items x dim, copied and row-normalized; zero rows stay zero) under
 * the shared retriever. */
int v4r_valid_recall(v4r_valid_set *v, const float *items, size_t n_items, size_t dim, double *recall, v4r_err *err);
/* Recall@20 of the model's own scores (user . item, v4r_rank_native); NaN when they cannot be ranked. */
double v4r_valid_recall_native(const v4r_valid_set *v, const float *users, const float *items, size_t n_items,
                               size_t n_users, size_t dim);

/* CPU time of the whole process (every thread), seconds. */
double v4r_cpu_now(void);

/* One epoch's running totals, shared by the fusion and SMORE trainers. */
typedef struct {
    double t0, c0, loss_sum, norm_sum;
} v4r_epoch_acc;
void v4r_epoch_begin(v4r_epoch_acc *a);
/* One optimizer step on a computed loss: counts the step, then backward, the gradient norm (clipped
 * when clip > 0) and Adam at e->lr. Returns 1, updating nothing, when the loss or the norm is not
 * finite. */
int v4r_train_step(v4r_epoch_acc *a, v4r_epoch_log *e, v4r_ad_tape *tape, v4r_params *ps, v4r_ad_tensor *loss,
                   const v4r_adam *adam, double clip);
/* Frees the tape for the next epoch and fills e's mean loss, mean norm and times; bad is the step
 * that was not finite (0: none). */
void v4r_epoch_end(v4r_epoch_acc *a, v4r_epoch_log *e, v4r_ad_tape *tape, size_t bad);

/* A fresh entry at the end of the log (epoch numbered, metrics NaN). */
v4r_epoch_log *v4r_train_log_push(v4r_train_log *log);
/* MMRec's early stopping: 1 (and log->early_stop set) when more than patience epochs have passed
 * since the best one; never with patience 0. */
int v4r_patience_out(v4r_train_log *log, size_t patience);
/* Records where training stopped on a value that is not finite and says so (V4R_EINPUT). */
int v4r_train_diverged(v4r_train_log *log, size_t epoch, size_t step, const char *what, const char *criterion,
                       v4r_err *err);

/* The released script's negatives of one example: k distinct items of cands (n_cands > k) other
 * than pos, uniformly (np.random.choice over the other items, replace=False). */
void v4r_released_negatives(const int32_t *cands, size_t n_cands, int32_t pos, size_t k, int32_t *out, v4r_rng *rng);

int v4r_train_fusion(const v4r_dataset *ds, const v4r_train_opts *o, v4r_trained *out, v4r_train_log *log,
                     v4r_err *err);
int v4r_train_smore(const v4r_dataset *ds, const v4r_train_opts *o, v4r_trained *out, v4r_train_log *log,
                    v4r_err *err);

#endif

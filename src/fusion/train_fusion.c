/* Training attention and gating fusion: the epoch's examples (co-interaction pairs or, for the
 * released objective, the training interactions), sampled negatives, validation batches, Adam
 * steps with clipping, the learning-rate schedule (ReduceLROnPlateau included), the best (or last)
 * epoch by validation loss, and a stop on a loss that is not finite. */
#include "train_internal.h"
#include "ad_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seeds of the random streams, derived from the run's seed. */
enum { SEED_INIT = 1, SEED_EPOCH = 2, SEED_VALID = 3 };

typedef struct {
    const v4r_train_opts *o;
    const v4r_dataset *ds;
    v4r_fusion_model *m;
    v4r_user_items train;
    int released;   /* the released script's objective */
    int32_t *cands; /* candidate items: the negatives' population */
    size_t n_cands;
    /* training examples: anchor items and (co-interaction) their users */
    int32_t *ex_item, *ex_user;
    size_t n_ex;
    /* validation: anchors, positives and each batch's negatives (released: the items only; their
       negatives are drawn afresh each epoch) */
    int32_t *va_item, *va_pos, *va_neg;
    size_t n_va;
    v4r_valid_set valid;
    v4r_ad_tape *tape;
    v4r_ad_tensor *text, *vision; /* constants over the whole catalog */
    float *kept; /* the weights of the epoch to keep */
} fusion_run;

static uint64_t stream(uint64_t seed, uint64_t purpose, uint64_t index)
{
    return seed * 0x9e3779b97f4a7c15ULL ^ purpose << 56 ^ index;
}

/* A positive for the anchor at position pos of its user's list: another position, uniformly. */
static int32_t other_item(const v4r_user_items *ui, int32_t user, int32_t anchor, v4r_rng *rng)
{
    size_t lo = ui->off[user], n = ui->off[user + 1] - lo;
    size_t k = (size_t)v4r_rng_below(rng, n - 1), at = lo;
    while (ui->items[at] != anchor)
        at++;
    if (lo + k >= at)
        k++;
    return ui->items[lo + k];
}

/* The items of a split's interactions in file order, repeats included (the covered ones only when
 * given): the released script's examples. Returns how many. */
static size_t split_items(const v4r_dataset *ds, int split, const uint8_t *covered, int32_t *item, int32_t *user)
{
    const v4r_split *sp = &ds->split[split];
    size_t n = 0;
    for (size_t i = 0; i < sp->n; i++)
        if (!covered || covered[sp->item[i]]) {
            item[n] = sp->item[i];
            user[n++] = sp->user[i];
        }
    return n;
}

static void build_examples(fusion_run *r)
{
    size_t cap = r->released ? r->ds->split[V4R_TRAIN].n : r->train.off[r->train.n_users];
    r->ex_item = v4r_malloc((cap + 1) * sizeof *r->ex_item);
    r->ex_user = v4r_malloc((cap + 1) * sizeof *r->ex_user);
    r->n_ex = 0;
    if (r->released) {
        r->n_ex = split_items(r->ds, V4R_TRAIN, r->o->covered, r->ex_item, r->ex_user);
        return;
    }
    for (size_t u = 0; u < r->train.n_users; u++)
        if (r->train.off[u + 1] - r->train.off[u] >= 2)
            for (size_t k = r->train.off[u]; k < r->train.off[u + 1]; k++) {
                r->ex_item[r->n_ex] = r->train.items[k];
                r->ex_user[r->n_ex++] = (int32_t)u;
            }
}

/* Validation examples, fixed for the run: each validation interaction (anchor) with one training
 * item of the same user (positive); or, for the released objective, the valid split's interactions
 * in file order. */
static void build_validation(fusion_run *r)
{
    v4r_user_items va;
    v4r_user_items_build(r->ds, V4R_VALID, r->o->covered, &va);
    size_t cap = r->released ? r->ds->split[V4R_VALID].n : va.off[va.n_users];
    r->va_item = v4r_malloc((cap + 1) * sizeof *r->va_item);
    r->va_pos = v4r_malloc((cap + 1) * sizeof *r->va_pos);
    v4r_rng rng;
    v4r_rng_seed(&rng, stream(r->o->seed, SEED_VALID, 0));
    r->n_va = 0;
    if (r->released) {
        r->n_va = split_items(r->ds, V4R_VALID, r->o->covered, r->va_item, r->va_pos); /* va_pos: unused users */
    } else {
        for (size_t u = 0; u < va.n_users; u++) {
            size_t lo = r->train.off[u], nt = r->train.off[u + 1] - lo;
            for (size_t k = va.off[u]; k < va.off[u + 1] && nt; k++) {
                r->va_item[r->n_va] = va.items[k];
                r->va_pos[r->n_va++] = r->train.items[lo + v4r_rng_below(&rng, nt)];
            }
        }
    }
    size_t nb = (r->n_va + r->o->batch - 1) / r->o->batch, nn = r->released ? 0 : r->o->negatives;
    r->va_neg = v4r_malloc((nb * nn + 1) * sizeof *r->va_neg);
    for (size_t i = 0; i < nb * nn; i++)
        r->va_neg[i] = r->cands[v4r_rng_below(&rng, r->n_cands)];
    v4r_user_items_free(&va);
}

void v4r_released_negatives(const int32_t *cands, size_t n_cands, int32_t pos, size_t k, int32_t *out, v4r_rng *rng)
{
    for (size_t j = 0; j < k;) { /* each draw uniform over the candidates not yet taken */
        int32_t c = cands[v4r_rng_below(rng, n_cands)];
        int fresh = c != pos;
        for (size_t i = 0; i < j && fresh; i++)
            fresh = out[i] != c;
        if (fresh)
            out[j++] = c;
    }
}

/* The loss of examples [b0, b0 + n) of the given arrays: co-interaction (anchors, positives and
 * n_neg shared negatives) or, with pos NULL, released (n_neg negatives for each item). */
static v4r_ad_tensor *batch_loss(fusion_run *r, const int32_t *item, const int32_t *pos, size_t n, const int32_t *neg,
                                 size_t n_neg)
{
    v4r_ad_tape_reset(r->tape);
    size_t ni = r->ds->n_items;
    float temp = (float)r->o->temperature;
    r->text = v4r_ad_const(r->tape, ni, r->o->dim_text, r->o->text);
    r->vision = v4r_ad_const(r->tape, ni, r->o->dim_vision, r->o->vision);
    if (!pos)
        return v4r_fusion_released_loss(r->tape, r->m, r->text, r->vision, item, n, neg, n_neg, temp);
    return v4r_fusion_batch_loss(r->tape, r->m, r->text, r->vision, item, pos, n, neg, n_neg, temp);
}

/* The released script's validation loss: each item with negatives drawn afresh for this epoch, the
 * mean of the batches' losses (np.mean over batches, the last partial batch counting as one). */
static double validation_loss_released(fusion_run *r, size_t epoch)
{
    size_t bs = r->o->batch, k = r->o->negatives, nb = 0;
    int32_t *neg = v4r_malloc((bs * k + 1) * sizeof *neg);
    v4r_rng rng;
    v4r_rng_seed(&rng, stream(r->o->seed, SEED_VALID, epoch));
    double sum = 0;
    for (size_t b0 = 0; b0 < r->n_va; b0 += bs, nb++) {
        size_t n = r->n_va - b0 < bs ? r->n_va - b0 : bs;
        for (size_t i = 0; i < n; i++)
            v4r_released_negatives(r->cands, r->n_cands, r->va_item[b0 + i], k, neg + i * k, &rng);
        sum += (double)batch_loss(r, r->va_item + b0, NULL, n, neg, k)->val[0];
    }
    v4r_ad_tape_reset(r->tape);
    free(neg);
    return sum / (double)nb;
}

static double validation_loss(fusion_run *r, size_t epoch)
{
    if (r->released)
        return validation_loss_released(r, epoch);
    size_t bs = r->o->batch, nn = r->o->negatives;
    double sum = 0;
    for (size_t b0 = 0, b = 0; b0 < r->n_va; b0 += bs, b++) {
        size_t n = r->n_va - b0 < bs ? r->n_va - b0 : bs;
        sum += (double)batch_loss(r, r->va_item + b0, r->va_pos + b0, n, r->va_neg + b * nn, nn)->val[0] * (double)n;
    }
    v4r_ad_tape_reset(r->tape);
    return sum / (double)r->n_va;
}

static void shuffle(int32_t *a, int32_t *b, size_t n, v4r_rng *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)v4r_rng_below(rng, i);
        int32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
        t = b[i - 1];
        b[i - 1] = b[j];
        b[j] = t;
    }
}

/* One epoch of Adam steps; returns the step (from 1) at which the loss or the gradient stopped
 * being finite, or 0. */
static size_t train_epoch(fusion_run *r, v4r_epoch_log *e, const v4r_adam *adam)
{
    const v4r_train_opts *o = r->o;
    v4r_rng rng;
    v4r_rng_seed(&rng, stream(o->seed, SEED_EPOCH, e->epoch));
    shuffle(r->ex_item, r->ex_user, r->n_ex, &rng);
    size_t nn = o->negatives, bs = o->batch, neg_cap = r->released ? bs * nn : nn;
    int32_t *pos = v4r_malloc((bs + 1) * sizeof *pos), *neg = v4r_malloc((neg_cap + 1) * sizeof *neg);
    char label[48];
    snprintf(label, sizeof label, "epoch %zu/%zu", e->epoch, o->epochs);
    v4r_progress prog;
    v4r_progress_start(&prog, label, r->n_ex);
    v4r_epoch_acc acc;
    v4r_epoch_begin(&acc);
    size_t bad = 0;
    for (size_t b0 = 0; b0 < r->n_ex && !bad; b0 += bs) {
        size_t n = r->n_ex - b0 < bs ? r->n_ex - b0 : bs;
        if (r->released)
            for (size_t i = 0; i < n; i++)
                v4r_released_negatives(r->cands, r->n_cands, r->ex_item[b0 + i], nn, neg + i * nn, &rng);
        else {
            for (size_t i = 0; i < n; i++)
                pos[i] = other_item(&r->train, r->ex_user[b0 + i], r->ex_item[b0 + i], &rng);
            for (size_t i = 0; i < nn; i++)
                neg[i] = r->cands[v4r_rng_below(&rng, r->n_cands)];
        }
        v4r_params_zero_grad(&r->m->params);
        v4r_ad_tensor *loss = batch_loss(r, r->ex_item + b0, r->released ? NULL : pos, n, neg, nn);
        if (v4r_train_step(&acc, e, r->tape, &r->m->params, loss, adam, o->clip)) {
            bad = e->steps;
            break;
        }
        v4r_progress_add(&prog, n);
    }
    v4r_progress_end(&prog);
    v4r_epoch_end(&acc, e, r->tape, bad);
    free(pos);
    free(neg);
    return bad;
}

/* Fused vectors of every candidate item (zero rows for the others). */
static void all_vectors(fusion_run *r, float *out)
{
    const v4r_train_opts *o = r->o;
    size_t ni = r->ds->n_items, dim = o->dim;
    if (!o->covered) {
        v4r_fusion_apply(r->m, o->text, o->vision, ni, out);
        return;
    }
    float *t = v4r_malloc(r->n_cands * o->dim_text * sizeof *t), *v = v4r_malloc(r->n_cands * o->dim_vision * sizeof *v);
    float *y = v4r_malloc(r->n_cands * dim * sizeof *y);
    for (size_t j = 0; j < r->n_cands; j++) {
        memcpy(t + j * o->dim_text, o->text + (size_t)r->cands[j] * o->dim_text, o->dim_text * sizeof *t);
        memcpy(v + j * o->dim_vision, o->vision + (size_t)r->cands[j] * o->dim_vision, o->dim_vision * sizeof *v);
    }
    v4r_fusion_apply(r->m, t, v, r->n_cands, y);
    memset(out, 0, ni * dim * sizeof *out);
    for (size_t j = 0; j < r->n_cands; j++)
        memcpy(out + (size_t)r->cands[j] * dim, y + j * dim, dim * sizeof *out);
    free(t);
    free(v);
    free(y);
}

static int evaluate_epoch(fusion_run *r, v4r_epoch_log *e, float *items, v4r_err *err)
{
    double t0 = v4r_now();
    e->valid_loss = validation_loss(r, e->epoch);
    int rc = V4R_OK;
    if (r->o->valid_recall) {
        all_vectors(r, items);
        rc = v4r_valid_recall(&r->valid, items, r->ds->n_items, r->o->dim, &e->valid_recall, err);
    }
    e->eval_seconds = v4r_now() - t0;
    return rc;
}

static int setup(fusion_run *r, v4r_train_log *log, v4r_err *err)
{
    double t0 = v4r_now();
    const v4r_train_opts *o = r->o;
    int rc = v4r_valid_init(&r->valid, r->ds, o->covered, err);
    if (rc)
        return rc;
    r->cands = v4r_candidate_items(r->ds->n_items, o->covered, &r->n_cands);
    v4r_user_items_build(r->ds, V4R_TRAIN, o->covered, &r->train);
    build_examples(r);
    build_validation(r);
    const char *dir = r->ds->dir ? r->ds->dir : "dataset", *cov = o->covered ? " among the covered items" : "";
    if (r->n_ex == 0)
        return v4r_fail(err, V4R_EINPUT, "%s: nothing to train on: %s%s", dir,
                        r->released ? "no training interaction" : "no user has two training items", cov);
    if (r->n_va == 0)
        return v4r_fail(err, V4R_EINPUT, "%s: no validation example (%s)", dir,
                        r->released ? "a validation interaction" : "a validation item of a user with training items");
    if (r->n_cands < 2)
        return v4r_fail(err, V4R_EINPUT, "fewer than two candidate items");
    if (r->released && r->n_cands <= o->negatives)
        return v4r_fail(err, V4R_EINPUT, "%zu negatives an example need more than %zu candidate items%s", o->negatives,
                        r->n_cands, cov);
    log->train_pairs = r->n_ex;
    log->setup_seconds = v4r_now() - t0;
    return V4R_OK;
}

static void run_free(fusion_run *r)
{
    v4r_valid_free(&r->valid);
    v4r_user_items_free(&r->train);
    free(r->cands);
    free(r->ex_item);
    free(r->ex_user);
    free(r->va_item);
    free(r->va_pos);
    free(r->va_neg);
    free(r->kept);
    v4r_ad_tape_free(r->tape);
}

/* After an epoch's validation: the best epoch, and the weights to keep (the best, or every epoch's
 * with V4R_KEEP_LAST). The released script copies `model.state_dict()` when the validation loss
 * improves, but that copy shares its tensors with the model, so what it saves is the last epoch. */
static void keep_epoch(fusion_run *r, v4r_train_log *log, const v4r_epoch_log *e, double *best_loss)
{
    int improved = e->valid_loss < *best_loss;
    if (improved) {
        *best_loss = e->valid_loss;
        log->best_epoch = e->epoch;
    }
    if (improved || r->o->keep == V4R_KEEP_LAST) {
        log->kept_epoch = e->epoch;
        v4r_params_snapshot(&r->m->params, r->kept);
    }
}

static int train_loop(fusion_run *r, v4r_train_log *log, float *items, v4r_err *err)
{
    const v4r_train_opts *o = r->o;
    v4r_adam adam;
    v4r_adam_defaults(&adam);
    adam.lr = o->lr;
    adam.weight_decay = o->weight_decay;
    adam.decoupled = o->decoupled;
    v4r_plateau plateau;
    v4r_plateau_init(&plateau, &o->schedule, o->lr);
    int on_plateau = o->schedule.kind == V4R_LR_PLATEAU;
    double best_loss = INFINITY;
    log->kept_last = o->keep == V4R_KEEP_LAST;
    r->kept = v4r_malloc(v4r_params_count(&r->m->params) * sizeof *r->kept);
    for (size_t ep = 1; ep <= o->epochs; ep++) {
        v4r_epoch_log *e = v4r_train_log_push(log);
        e->lr = on_plateau ? plateau.lr : v4r_lr_at(&o->schedule, o->lr, ep - 1);
        size_t bad = train_epoch(r, e, &adam);
        if (bad)
            return v4r_train_diverged(log, ep, bad, "loss or its gradient", "validation loss", err);
        int rc = evaluate_epoch(r, e, items, err);
        if (rc)
            return rc;
        if (!isfinite(e->valid_loss))
            return v4r_train_diverged(log, ep, e->steps, "validation loss", "validation loss", err);
        keep_epoch(r, log, e, &best_loss);
        if (on_plateau && v4r_plateau_step(&plateau, e->valid_loss) != e->lr)
            v4r_info("validation loss on a plateau: learning rate %.3g from epoch %zu", plateau.lr, ep + 1);
        char recall[48] = "";
        if (o->valid_recall)
            snprintf(recall, sizeof recall, ", valid recall@20 %.4f", e->valid_recall);
        v4r_info("epoch %zu/%zu: loss %.4f, valid loss %.4f%s (%.1f s + %.1f s validation)", ep, o->epochs,
                 e->train_loss, e->valid_loss, recall, e->seconds, e->eval_seconds);
        if (o->on_epoch)
            o->on_epoch(o->ctx, log, &r->m->params);
        if (v4r_patience_out(log, o->patience))
            break;
    }
    return V4R_OK;
}

int v4r_train_fusion(const v4r_dataset *ds, const v4r_train_opts *o, v4r_trained *out, v4r_train_log *log,
                     v4r_err *err)
{
    fusion_run r = {.o = o, .ds = ds, .released = o->objective == V4R_OBJ_RELEASED, .tape = v4r_ad_tape_new()};
    r.m = v4r_malloc(sizeof *r.m);
    v4r_fusion_model_init(r.m, o->model, o->dim_text, o->dim_vision, o->hidden, o->dim, stream(o->seed, SEED_INIT, 0));
    out->model = r.m;
    out->model_kind = o->model;
    out->params = &r.m->params;
    out->n_items = ds->n_items;
    out->dim = o->dim;
    out->items = v4r_calloc(ds->n_items * o->dim, sizeof *out->items);
    int rc = setup(&r, log, err);
    if (!rc)
        rc = train_loop(&r, log, out->items, err);
    if (log->kept_epoch) { /* the kept epoch's weights and vectors, also after a divergence */
        v4r_params_restore(&r.m->params, r.kept);
        all_vectors(&r, out->items);
    }
    run_free(&r);
    return rc;
}

/* Training SMORE: the training interactions (the covered items renumbered when given), one sampled
 * negative per positive (an item of the training split outside the user's training items), Adam
 * over full-graph forward passes, the best epoch by validation Recall@20 of its own user . item
 * scores and early stopping on it (the official framework's criterion), and the final user and
 * item vectors. */
#include "train_internal.h"
#include "ad_internal.h"
#include "smore_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SEED_INIT = 1, SEED_EPOCH = 2 };

typedef struct {
    const v4r_train_opts *o;
    const v4r_dataset *ds;
    v4r_smore_model *m;
    int32_t *local_to_item; /* the model's items (candidates) as dataset items */
    size_t n_local;
    int32_t *user, *item; /* training interactions, model item numbers */
    size_t n_inter;
    v4r_user_items seen; /* each user's training items, model numbers, sorted */
    int32_t *pool;       /* the items with a training interaction, ascending: negatives come from them */
    size_t n_pool;
    v4r_valid_set valid;
    v4r_ad_tape *tape;
    float *best;
} smore_run;

static uint64_t stream(uint64_t seed, uint64_t purpose, uint64_t index)
{
    return seed * 0x9e3779b97f4a7c15ULL ^ purpose << 56 ^ index;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* Training interactions over the model's items, and each user's sorted item list. */
static void build_interactions(smore_run *r)
{
    const v4r_dataset *ds = r->ds;
    int32_t *local = v4r_malloc((ds->n_items + 1) * sizeof *local);
    for (size_t i = 0; i < ds->n_items; i++)
        local[i] = -1;
    for (size_t j = 0; j < r->n_local; j++)
        local[r->local_to_item[j]] = (int32_t)j;
    v4r_user_items_build(ds, V4R_TRAIN, r->o->covered, &r->seen);
    size_t n = r->seen.off[r->seen.n_users];
    r->user = v4r_malloc((n + 1) * sizeof *r->user);
    r->item = v4r_malloc((n + 1) * sizeof *r->item);
    r->n_inter = 0;
    for (size_t u = 0; u < r->seen.n_users; u++) {
        for (size_t k = r->seen.off[u]; k < r->seen.off[u + 1]; k++) {
            r->seen.items[k] = local[r->seen.items[k]];
            r->user[r->n_inter] = (int32_t)u;
            r->item[r->n_inter++] = r->seen.items[k];
        }
        qsort(r->seen.items + r->seen.off[u], r->seen.off[u + 1] - r->seen.off[u], sizeof(int32_t), cmp_i32);
    }
    free(local);
}

/* The negatives' pool: every item of the training split (MMRec samples among them). */
static void build_pool(smore_run *r)
{
    uint8_t *trained = v4r_calloc(r->n_local + 1, 1);
    for (size_t k = 0; k < r->n_inter; k++)
        trained[r->item[k]] = 1;
    r->pool = v4r_malloc((r->n_local + 1) * sizeof *r->pool);
    r->n_pool = 0;
    for (size_t j = 0; j < r->n_local; j++)
        if (trained[j])
            r->pool[r->n_pool++] = (int32_t)j;
    free(trained);
}

static int32_t sample_negative(const smore_run *r, int32_t user, v4r_rng *rng)
{
    const int32_t *lo = r->seen.items + r->seen.off[user];
    size_t n = r->seen.off[user + 1] - r->seen.off[user];
    for (;;) { /* a user has fewer training items than the pool (checked at setup) */
        int32_t j = r->pool[v4r_rng_below(rng, r->n_pool)];
        if (!bsearch(&j, lo, n, sizeof j, cmp_i32))
            return j;
    }
}

static void shuffle(int32_t *a, int32_t *b, size_t n, v4r_rng *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)v4r_rng_below(rng, i);
        int32_t t = a[i - 1];
        a[i - 1] = a[j], a[j] = t;
        t = b[i - 1];
        b[i - 1] = b[j], b[j] = t;
    }
}

static size_t train_epoch(smore_run *r, v4r_epoch_log *e, const v4r_adam *adam)
{
    const v4r_train_opts *o = r->o;
    v4r_rng rng;
    v4r_rng_seed(&rng, stream(o->seed, SEED_EPOCH, e->epoch));
    shuffle(r->user, r->item, r->n_inter, &rng);
    int32_t *neg = v4r_malloc((o->batch + 1) * sizeof *neg);
    char label[48];
    snprintf(label, sizeof label, "epoch %zu/%zu", e->epoch, o->epochs);
    v4r_progress prog;
    v4r_progress_start(&prog, label, r->n_inter);
    v4r_epoch_acc acc;
    v4r_epoch_begin(&acc);
    size_t bad = 0;
    for (size_t b0 = 0; b0 < r->n_inter; b0 += o->batch) {
        size_t n = r->n_inter - b0 < o->batch ? r->n_inter - b0 : o->batch;
        for (size_t i = 0; i < n; i++)
            neg[i] = sample_negative(r, r->user[b0 + i], &rng);
        v4r_ad_tape_reset(r->tape);
        v4r_params_zero_grad(&r->m->params);
        v4r_ad_tensor *loss = v4r_smore_loss(r->tape, r->m, r->user + b0, r->item + b0, neg, n, o->batch,
                                             o->reg_weight, o->cl_weight, (float)o->cl_temperature);
        if (v4r_train_step(&acc, e, r->tape, &r->m->params, loss, adam, o->clip)) {
            bad = e->steps;
            break;
        }
        v4r_progress_add(&prog, n);
    }
    v4r_progress_end(&prog);
    v4r_epoch_end(&acc, e, r->tape, bad);
    free(neg);
    return bad;
}

/* The final user vectors and item vectors (dataset item order; zero rows outside the model). */
static void final_vectors(smore_run *r, float *users, float *items)
{
    size_t d = r->m->dim, nu = r->m->n_users;
    v4r_ad_tape_reset(r->tape);
    v4r_smore_views v;
    v4r_smore_forward(r->tape, r->m, &v);
    memcpy(users, v.all->val, nu * d * sizeof(float));
    memset(items, 0, r->ds->n_items * d * sizeof(float));
    for (size_t j = 0; j < r->n_local; j++)
        memcpy(items + (size_t)r->local_to_item[j] * d, v.all->val + (nu + j) * d, d * sizeof(float));
    v4r_ad_tape_reset(r->tape);
}

static int evaluate_epoch(smore_run *r, v4r_epoch_log *e, float *users, float *items, v4r_err *err)
{
    double t0 = v4r_now();
    final_vectors(r, users, items);
    e->native_recall = v4r_valid_recall_native(&r->valid, users, items, r->ds->n_items, r->m->n_users, r->m->dim);
    int rc = r->o->valid_recall ? v4r_valid_recall(&r->valid, items, r->ds->n_items, r->m->dim, &e->valid_recall, err)
                                : V4R_OK;
    e->eval_seconds = v4r_now() - t0;
    return rc;
}

static int setup(smore_run *r, v4r_train_log *log, v4r_err *err)
{
    double t0 = v4r_now();
    const v4r_train_opts *o = r->o;
    int rc = v4r_valid_init(&r->valid, r->ds, o->covered, err);
    if (rc)
        return rc;
    r->local_to_item = v4r_candidate_items(r->ds->n_items, o->covered, &r->n_local);
    build_interactions(r);
    if (r->n_inter == 0)
        return v4r_fail(err, V4R_EINPUT, "%s: no training interaction%s", r->ds->dir ? r->ds->dir : "dataset",
                        o->covered ? " with a covered item" : "");
    build_pool(r);
    for (size_t u = 0; u < r->seen.n_users; u++)
        if (r->seen.off[u + 1] - r->seen.off[u] >= r->n_pool)
            return v4r_fail(err, V4R_EINPUT,
                            "%s: user '%s' has every item of the training split: no negative to sample",
                            r->ds->dir ? r->ds->dir : "dataset", r->ds->user_id[u]);
    size_t dt = o->dim_text, dv = o->dim_vision, nl = r->n_local;
    float *text = v4r_malloc((nl * dt + 1) * sizeof *text), *vision = v4r_malloc((nl * dv + 1) * sizeof *vision);
    for (size_t j = 0; j < nl; j++) {
        memcpy(text + j * dt, o->text + (size_t)r->local_to_item[j] * dt, dt * sizeof *text);
        memcpy(vision + j * dv, o->vision + (size_t)r->local_to_item[j] * dv, dv * sizeof *vision);
    }
    v4r_smore_init(r->m, r->ds->n_users, nl, r->user, r->item, r->n_inter, text, dt, vision, dv, o->dim, o->knn_image,
                   o->knn_text, o->ui_layers, stream(o->seed, SEED_INIT, 0));
    r->m->ii_layers = o->ii_layers;
    free(text);
    free(vision);
    log->train_pairs = r->n_inter;
    log->setup_seconds = v4r_now() - t0;
    v4r_info("smore: %zu users, %zu items, %zu training interactions; graphs built in %.1f s", r->ds->n_users, nl,
             r->n_inter, log->setup_seconds);
    return V4R_OK;
}

static int train_loop(smore_run *r, v4r_train_log *log, float *users, float *items, v4r_err *err)
{
    const v4r_train_opts *o = r->o;
    v4r_adam adam;
    v4r_adam_defaults(&adam);
    adam.lr = o->lr;
    adam.weight_decay = o->weight_decay;
    adam.decoupled = o->decoupled;
    double best = -1;
    r->best = v4r_malloc(v4r_params_count(&r->m->params) * sizeof *r->best);
    for (size_t ep = 1; ep <= o->epochs; ep++) {
        v4r_epoch_log *e = v4r_train_log_push(log);
        e->lr = v4r_lr_at(&o->schedule, o->lr, ep - 1);
        size_t bad = train_epoch(r, e, &adam);
        if (bad)
            return v4r_train_diverged(log, ep, bad, "loss or its gradient", "validation Recall@20", err);
        int rc = evaluate_epoch(r, e, users, items, err);
        if (rc)
            return rc;
        if (!isfinite(e->native_recall))
            return v4r_train_diverged(log, ep, e->steps, "validation score", "validation Recall@20", err);
        if (e->native_recall > best) {
            best = e->native_recall;
            log->best_epoch = ep;
            v4r_params_snapshot(&r->m->params, r->best);
        }
        char recall[48] = "";
        if (o->valid_recall)
            snprintf(recall, sizeof recall, ", as item vectors %.4f", e->valid_recall);
        v4r_info("epoch %zu/%zu: loss %.4f, valid recall@20 %.4f%s (%.1f s + %.1f s validation)", ep, o->epochs,
                 e->train_loss, e->native_recall, recall, e->seconds, e->eval_seconds);
        if (o->on_epoch)
            o->on_epoch(o->ctx, log, &r->m->params);
        if (v4r_patience_out(log, o->patience))
            break;
    }
    return V4R_OK;
}

int v4r_train_smore(const v4r_dataset *ds, const v4r_train_opts *o, v4r_trained *out, v4r_train_log *log,
                    v4r_err *err)
{
    smore_run r = {.o = o, .ds = ds, .tape = v4r_ad_tape_new()};
    r.m = v4r_calloc(1, sizeof *r.m);
    out->model = r.m;
    out->model_kind = V4R_MODEL_SMORE;
    out->n_items = ds->n_items;
    out->n_users = ds->n_users;
    out->dim = o->dim;
    out->items = v4r_calloc(ds->n_items * o->dim + 1, sizeof *out->items);
    out->users = v4r_calloc(ds->n_users * o->dim + 1, sizeof *out->users);
    int rc = setup(&r, log, err);
    out->params = &r.m->params;
    if (!rc)
        rc = train_loop(&r, log, out->users, out->items, err);
    if (log->best_epoch) {
        v4r_params_restore(&r.m->params, r.best);
        final_vectors(&r, out->users, out->items);
    }
    v4r_valid_free(&r.valid);
    v4r_user_items_free(&r.seen);
    free(r.local_to_item);
    free(r.user);
    free(r.item);
    free(r.pool);
    free(r.best);
    v4r_ad_tape_free(r.tape);
    return rc;
}

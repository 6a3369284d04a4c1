/* What the trainers share: defaults and the released recipe, per-user item lists, candidate items, validation Recall@20
 * (the shared retriever, and SMORE's own scores), the epoch log, and the v4r_train dispatch. */
#include "train_internal.h"
#include "ad_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { VALID_K = 20 };

void v4r_train_defaults(v4r_train_opts *o, int model)
{
    memset(o, 0, sizeof *o);
    o->model = model;
    o->objective = V4R_OBJ_COINTERACTION;
    o->lr = 1e-3;
    o->seed = 0;
    o->valid_recall = 1;
    o->schedule.kind = V4R_LR_CONSTANT;
    if (model == V4R_MODEL_SMORE) { /* trained as MMRec's overall.yaml and SMORE.yaml say; graphs as the
                                       method describes its baseline (docs/fusion.md) */
        o->epochs = 1000;
        o->patience = 20;
        o->batch = 2048;
        o->dim = 64;
        o->knn_image = o->knn_text = 10;
        o->ui_layers = 2;
        o->ii_layers = 1;
        o->schedule.kind = V4R_LR_EXP; /* learning_rate_scheduler [0.96, 50]: x 0.96 every 50 epochs */
        o->schedule.gamma = pow(0.96, 1.0 / 50.0);
        o->reg_weight = 1e-5;
        o->cl_weight = 0.01;
        o->cl_temperature = 0.2;
        o->clip = 0;
    } else {
        o->epochs = 15;
        o->batch = 256;
        o->negatives = 256;
        o->hidden = 512;
        o->dim = 512;
        o->clip = 1.0;
        o->temperature = 0.07;
    }
    o->schedule.epochs = o->epochs;
}

void v4r_train_released_recipe(v4r_train_opts *o)
{
    o->objective = V4R_OBJ_RELEASED;
    o->hidden = 512;
    o->dim = 768;
    o->batch = 256;
    o->negatives = 4;
    o->temperature = 0.07;
    o->lr = 1e-3;
    o->weight_decay = 0;
    o->decoupled = 0;
    o->clip = 1.0;
    o->epochs = 15;
    o->patience = 0;
    o->keep = V4R_KEEP_LAST;
    memset(&o->schedule, 0, sizeof o->schedule);
    o->schedule.kind = V4R_LR_PLATEAU; /* ReduceLROnPlateau(mode="min", factor=0.5, patience=2) */
    o->schedule.gamma = 0.5;
    o->schedule.step = 2;
    o->schedule.epochs = o->epochs;
}

/* ---- item lists ---- */

void v4r_user_items_build(const v4r_dataset *ds, int split, const uint8_t *covered, v4r_user_items *ui)
{
    const v4r_split *sp = &ds->split[split];
    size_t nu = ds->n_users;
    ui->n_users = nu;
    ui->off = v4r_calloc(nu + 1, sizeof *ui->off);
    for (size_t i = 0; i < sp->n; i++)
        if (!covered || covered[sp->item[i]])
            ui->off[(size_t)sp->user[i] + 1]++;
    for (size_t u = 0; u < nu; u++)
        ui->off[u + 1] += ui->off[u];
    ui->items = v4r_malloc((ui->off[nu] + 1) * sizeof *ui->items);
    size_t *fill = v4r_malloc((nu + 1) * sizeof *fill);
    memcpy(fill, ui->off, (nu + 1) * sizeof *fill);
    for (size_t i = 0; i < sp->n; i++) /* a split holds each (user, item) pair once */
        if (!covered || covered[sp->item[i]])
            ui->items[fill[sp->user[i]]++] = sp->item[i];
    free(fill);
}

void v4r_user_items_free(v4r_user_items *ui)
{
    free(ui->off);
    free(ui->items);
    memset(ui, 0, sizeof *ui);
}

int32_t *v4r_candidate_items(size_t n_items, const uint8_t *covered, size_t *n)
{
    int32_t *c = v4r_malloc((n_items + 1) * sizeof *c);
    *n = 0;
    for (size_t i = 0; i < n_items; i++)
        if (!covered || covered[i])
            c[(*n)++] = (int32_t)i;
    return c;
}

/* ---- validation ---- */

int v4r_valid_init(v4r_valid_set *v, const v4r_dataset *ds, const uint8_t *covered, v4r_err *err)
{
    memset(v, 0, sizeof *v);
    if (ds->split[V4R_VALID].n == 0)
        return v4r_fail(err, V4R_EINPUT,
                        "%s: no validation split (valid.tsv has no interactions): training picks its best epoch on it",
                        ds->dir ? ds->dir : "dataset");
    v4r_protocol_defaults(&v->proto);
    v->proto.covered = covered;
    int rc = v4r_eval_set_build(ds, &v->proto, &v->es, err);
    if (!rc && v->es.n_eval == 0) {
        v4r_eval_set_free(&v->es);
        rc = v4r_fail(err, V4R_EINPUT, "%s: no user has both a training and a validation interaction%s",
                      ds->dir ? ds->dir : "dataset", covered ? " among the covered items" : "");
    }
    return rc;
}

void v4r_valid_free(v4r_valid_set *v)
{
    if (v->es.users)
        v4r_eval_set_free(&v->es);
    memset(v, 0, sizeof *v);
}

static double mean_recall(const v4r_eval_set *es, const int32_t *top)
{
    size_t ks[1] = {VALID_K};
    double sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (size_t u = 0; u < es->n_eval; u++) {
        double m[V4R_NMETRICS];
        v4r_metrics_user(top + u * VALID_K, VALID_K, es->truth + es->truth_off[u], es->truth_off[u + 1] - es->truth_off[u],
                         ks, 1, m);
        sum += m[V4R_M_RECALL];
    }
    return es->n_eval ? sum / (double)es->n_eval : 0.0;
}

int v4r_valid_recall(v4r_valid_set *v, const float *items, size_t n_items, size_t dim, double *recall, v4r_err *err)
{
    v4r_matrix m = {v4r_malloc(n_items * dim * sizeof(float)), n_items, dim};
    memcpy(m.data, items, n_items * dim * sizeof(float));
    for (size_t i = 0; i < n_items; i++) {
        float *r = m.data + i * dim;
        double ss = 0;
        for (size_t c = 0; c < dim; c++)
            ss += (double)r[c] * r[c];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (size_t c = 0; c < dim; c++)
            r[c] *= inv;
    }
    int32_t *top = v4r_malloc((v->es.n_eval * VALID_K + 1) * sizeof *top);
    float *scores = v4r_malloc((v->es.n_eval * VALID_K + 1) * sizeof *scores);
    int rc = v4r_rank(&v->es, &v->proto, &m, VALID_K, top, scores, err);
    if (!rc)
        *recall = mean_recall(&v->es, top);
    free(top);
    free(scores);
    v4r_matrix_free(&m);
    return rc;
}

double v4r_valid_recall_native(const v4r_valid_set *v, const float *users, const float *items, size_t n_items,
                               size_t n_users, size_t dim)
{
    v4r_matrix u = {(float *)users, n_users, dim}, m = {(float *)items, n_items, dim}; /* read only */
    int32_t *top = v4r_malloc((v->es.n_eval * VALID_K + 1) * sizeof *top);
    float *scores = v4r_malloc((v->es.n_eval * VALID_K + 1) * sizeof *scores);
    v4r_err err = {0};
    double r = v4r_rank_native(&v->es, &v->proto, &u, &m, VALID_K, top, scores, &err) ? NAN : mean_recall(&v->es, top);
    free(top);
    free(scores);
    return r;
}

/* ---- log ---- */

double v4r_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

v4r_epoch_log *v4r_train_log_push(v4r_train_log *log)
{
    v4r_grow((void **)&log->epochs, &log->cap, log->n_epochs + 1, sizeof *log->epochs);
    v4r_epoch_log *e = &log->epochs[log->n_epochs++];
    memset(e, 0, sizeof *e);
    e->epoch = log->n_epochs;
    e->valid_loss = e->valid_recall = e->native_recall = NAN;
    return e;
}

void v4r_train_log_free(v4r_train_log *log)
{
    free(log->epochs);
    memset(log, 0, sizeof *log);
}

int v4r_patience_out(v4r_train_log *log, size_t patience)
{
    if (!patience || log->n_epochs - log->best_epoch <= patience)
        return 0;
    log->early_stop = log->n_epochs;
    v4r_info("no improvement in %zu epochs: stopping after epoch %zu, keeping epoch %zu", log->n_epochs - log->best_epoch,
             log->n_epochs, log->best_epoch);
    return 1;
}

int v4r_train_diverged(v4r_train_log *log, size_t epoch, size_t step, const char *what, const char *criterion,
                       v4r_err *err)
{
    log->diverged = 1;
    log->diverged_epoch = epoch;
    log->diverged_step = step;
    if (log->kept_last && log->kept_epoch)
        return v4r_fail(err, V4R_EINPUT,
                        "training stopped at epoch %zu, step %zu: the %s is not finite (try a lower --lr or --clip); kept "
                        "epoch %zu, the last completed",
                        epoch, step, what, log->kept_epoch);
    if (log->best_epoch)
        return v4r_fail(err, V4R_EINPUT,
                        "training stopped at epoch %zu, step %zu: the %s is not finite (try a lower --lr or --clip); kept "
                        "epoch %zu, the best by %s",
                        epoch, step, what, log->best_epoch, criterion);
    return v4r_fail(err, V4R_EINPUT,
                    "training stopped at epoch %zu, step %zu: the %s is not finite (try a lower --lr or --clip); no "
                    "epoch completed, nothing to keep",
                    epoch, step, what);
}

/* ---- dispatch ---- */

void v4r_trained_free(v4r_trained *tr)
{
    if (tr->model && tr->model_kind == V4R_MODEL_SMORE)
        v4r_smore_free(tr->model);
    else if (tr->model)
        v4r_fusion_model_free(tr->model);
    free(tr->model);
    free(tr->items);
    free(tr->users);
    memset(tr, 0, sizeof *tr);
}

int v4r_train(const v4r_dataset *ds, const v4r_train_opts *o, v4r_trained *out, v4r_train_log *log, v4r_err *err)
{
    memset(out, 0, sizeof *out);
    memset(log, 0, sizeof *log);
    if (!o->text || !o->vision || !o->dim_text || !o->dim_vision)
        return v4r_fail(err, V4R_EUSAGE, "training needs text and vision vectors");
    if (!o->epochs || !o->batch || !o->dim || (o->model != V4R_MODEL_SMORE && !o->hidden) ||
        (o->model == V4R_MODEL_SMORE && (!o->knn_image || !o->knn_text)))
        return v4r_fail(err, V4R_EUSAGE, "epochs, batch size, hidden and output sizes must be positive");
    int smore = o->model == V4R_MODEL_SMORE;
    if (!(o->lr > 0) || !(smore ? o->cl_temperature > 0 : o->temperature > 0) || o->clip < 0 || o->weight_decay < 0)
        return v4r_fail(err, V4R_EUSAGE, "the learning rate and temperature must be positive, clip and decay >= 0");
    if (smore && (o->objective != V4R_OBJ_COINTERACTION || o->keep != V4R_KEEP_BEST || o->schedule.kind == V4R_LR_PLATEAU))
        return v4r_fail(err, V4R_EUSAGE, "the released objective, keeping the last epoch and the plateau schedule are "
                                         "for attention and gating");
    if (o->objective == V4R_OBJ_RELEASED && !o->negatives)
        return v4r_fail(err, V4R_EUSAGE, "the released objective needs at least one negative an example");
    if (o->model == V4R_MODEL_ATTENTION || o->model == V4R_MODEL_GATING)
        return v4r_train_fusion(ds, o, out, log, err);
    if (o->model == V4R_MODEL_SMORE) {
        int rc = v4r_train_smore(ds, o, out, log, err);
        log->kept_epoch = log->best_epoch; /* SMORE keeps its best epoch */
        return rc;
    }
    return v4r_fail(err, V4R_EUSAGE, "unknown model %d", o->model);
}

void v4r_epoch_begin(v4r_epoch_acc *a)
{
    a->t0 = v4r_now();
    a->c0 = v4r_cpu_now();
    a->loss_sum = a->norm_sum = 0;
}

int v4r_train_step(v4r_epoch_acc *a, v4r_epoch_log *e, v4r_ad_tape *tape, v4r_params *ps, v4r_ad_tensor *loss,
                   const v4r_adam *adam, double clip)
{
    e->steps++;
    if (!isfinite(loss->val[0]))
        return 1;
    v4r_ad_backward(tape, loss);
    double norm = clip > 0 ? v4r_params_clip(ps, clip) : v4r_params_grad_norm(ps);
    if (!isfinite(norm))
        return 1;
    v4r_adam_step(ps, adam, e->lr);
    a->loss_sum += loss->val[0];
    a->norm_sum += norm;
    return 0;
}

void v4r_epoch_end(v4r_epoch_acc *a, v4r_epoch_log *e, v4r_ad_tape *tape, size_t bad)
{
    v4r_debug("training tape: %.0f MiB", (double)v4r_ad_tape_bytes(tape) / (1 << 20));
    v4r_ad_tape_reset(tape);
    e->train_loss = a->loss_sum / (double)(e->steps - (bad != 0));
    e->grad_norm = a->norm_sum / (double)(e->steps - (bad != 0));
    e->seconds = v4r_now() - a->t0;
    e->cpu_seconds = v4r_cpu_now() - a->c0;
}

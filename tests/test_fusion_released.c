/* The released training recipe (--objective released) against the released script: the loss of a
 * batch by hand (the positive logit is 1 / T whatever the weights), ReduceLROnPlateau against
 * torch's on fixed losses, the negatives (distinct, never the positive, uniform), one example per
 * training interaction, two training steps of attention and gating fusion against the released
 * classes in torch, and the last epoch's weights kept. Goldens: tests/reference/released_fusion.py. */
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/fusion/train_internal.h"
#include "reference/released_golden.h"
#include "vlm4rec/fusion.h"

/* ---- the loss by hand ---- */

static void fill_normal(float *x, size_t n, float scale, v4r_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (float)v4r_rng_normal(r);
}

/* cross-entropy with target 0 of [1/T, cos(a_i, n_ij)/T], mean over i, in double */
static double loss_by_hand(const float *a, const float *neg, size_t n, size_t k, size_t d, double temp)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double na = 0, logits[16];
        for (size_t c = 0; c < d; c++)
            na += (double)a[i * d + c] * a[i * d + c];
        logits[0] = 1.0 / temp;
        for (size_t j = 0; j < k; j++) {
            const float *b = neg + (i * k + j) * d;
            double dot = 0, nb = 0;
            for (size_t c = 0; c < d; c++)
                dot += (double)a[i * d + c] * b[c], nb += (double)b[c] * b[c];
            logits[1 + j] = dot / sqrt(na * nb) / temp;
        }
        double mx = logits[0], z = 0;
        for (size_t j = 1; j <= k; j++)
            mx = fmax(mx, logits[j]);
        for (size_t j = 0; j <= k; j++)
            z += exp(logits[j] - mx);
        sum += mx + log(z) - logits[0];
    }
    return sum / (double)n;
}

static void test_loss_by_hand(void **state)
{
    (void)state;
    enum { N = 6, K = 4, D = 9 };
    v4r_rng r;
    v4r_rng_seed(&r, 11);
    float a[N * D], neg[N * K * D];
    v4r_ad_tape *t = v4r_ad_tape_new();
    for (int round = 0; round < 3; round++) { /* any scale of the anchors: the positive logit stays 1/T */
        fill_normal(a, N * D, round == 0 ? 1.0f : round == 1 ? 40.0f : 0.01f, &r);
        fill_normal(neg, N * K * D, 1.0f, &r);
        for (size_t i = 0; i < N * K * D; i += 3) /* some negatives close to their anchor */
            neg[i] += a[(i / (K * D)) * D + i % D];
        v4r_ad_tape_reset(t);
        double got = v4r_released_loss(t, v4r_ad_const(t, N, D, a), v4r_ad_const(t, N * K, D, neg), K, 0.07f)->val[0];
        double want = loss_by_hand(a, neg, N, K, D, 0.07);
        print_message("released loss: %.7f, by hand %.7f\n", got, want);
        assert_true(fabs(got - want) < 1e-5 * fmax(1.0, want));
    }
    v4r_ad_tape_free(t);
}

/* ---- ReduceLROnPlateau ---- */

static void test_plateau_matches_torch(void **state)
{
    (void)state;
    for (size_t s = 0; s < PLATEAU_SETTINGS; s++) {
        v4r_lr_schedule sch = {.kind = V4R_LR_PLATEAU, .gamma = PLATEAU_SETTING[s][1],
                               .step = (size_t)PLATEAU_SETTING[s][2]};
        v4r_plateau p;
        v4r_plateau_init(&p, &sch, PLATEAU_SETTING[s][0]);
        for (size_t i = 0; i < PLATEAU_N; i++) {
            double lr = v4r_plateau_step(&p, PLATEAU_LOSSES[i]);
            if (lr != PLATEAU_LR[s][i])
                fail_msg("setting %zu, step %zu: lr %.17g, torch %.17g", s, i, lr, PLATEAU_LR[s][i]);
        }
    }
    /* the option string of the released recipe */
    v4r_lr_schedule sch;
    v4r_err err = {0};
    assert_int_equal(v4r_lr_parse("plateau:0.5:2", 15, &sch, &err), 0);
    assert_int_equal(sch.kind, V4R_LR_PLATEAU);
    assert_true(sch.gamma == 0.5 && sch.step == 2);
    assert_int_equal(v4r_lr_parse("plateau", 15, &sch, &err), 0); /* torch's defaults */
    assert_true(sch.gamma == 0.1 && sch.step == 10);
    char buf[64];
    v4r_lr_format(&sch, buf, sizeof buf);
    assert_string_equal(buf, "plateau:0.1:10");
    assert_int_equal(v4r_lr_parse("plateau:1.5", 15, &sch, &err), V4R_EUSAGE);
    assert_int_equal(v4r_lr_parse("plateau:0.5:-1", 15, &sch, &err), V4R_EUSAGE);
}

/* ---- negatives and examples ---- */

static void test_negatives(void **state)
{
    (void)state;
    enum { N_CANDS = 10, K = 4, DRAWS = 9000 };
    int32_t cands[N_CANDS], out[K];
    for (int i = 0; i < N_CANDS; i++)
        cands[i] = 3 * i; /* item ids, as a covered subset gives */
    size_t count[N_CANDS] = {0};
    v4r_rng r;
    v4r_rng_seed(&r, 5);
    for (int d = 0; d < DRAWS; d++) {
        int32_t pos = d % 3 ? 9 : cands[d % N_CANDS];
        v4r_released_negatives(cands, N_CANDS, pos, K, out, &r);
        for (int j = 0; j < K; j++) {
            assert_true(out[j] != pos && out[j] % 3 == 0 && out[j] < 3 * N_CANDS);
            for (int i = 0; i < j; i++)
                assert_true(out[i] != out[j]);
            if (pos == 9)
                count[out[j] / 3]++;
        }
    }
    /* uniform over the 9 others: each in 4/9 of the 6300 draws with positive 9 (2800, sd 39) */
    for (int i = 0; i < N_CANDS; i++)
        if (i == 3)
            assert_int_equal(count[i], 0);
        else
            assert_true(count[i] > 2630 && count[i] < 2970);
    /* all the others when k = n - 1 */
    int32_t all[N_CANDS - 1];
    v4r_released_negatives(cands, N_CANDS, 0, N_CANDS - 1, all, &r);
    int seen[N_CANDS] = {0};
    for (int j = 0; j < N_CANDS - 1; j++)
        seen[all[j] / 3]++;
    for (int i = 1; i < N_CANDS; i++)
        assert_int_equal(seen[i], 1);
}

static void released_opts(v4r_train_opts *o, const tu_catalog *c)
{
    v4r_train_defaults(o, V4R_MODEL_ATTENTION);
    v4r_train_released_recipe(o);
    o->text = c->desc.data, o->dim_text = c->desc.cols;
    o->vision = c->visual.data, o->dim_vision = c->visual.cols;
    o->hidden = 32, o->dim = 48;
    o->valid_recall = 0;
}

static void test_recipe_and_examples(void **state)
{
    (void)state;
    v4r_train_opts o;
    v4r_train_defaults(&o, V4R_MODEL_GATING);
    v4r_train_released_recipe(&o);
    assert_int_equal(o.objective, V4R_OBJ_RELEASED);
    assert_true(o.hidden == 512 && o.dim == 768 && o.batch == 256 && o.negatives == 4 && o.epochs == 15);
    assert_true(o.lr == 1e-3 && o.clip == 1.0 && o.temperature == 0.07 && o.patience == 0);
    assert_true(o.schedule.kind == V4R_LR_PLATEAU && o.schedule.gamma == 0.5 && o.schedule.step == 2);
    assert_int_equal(o.keep, V4R_KEEP_LAST);
    tu_catalog c;
    tu_catalog_make(&c, 200, 400, 2000);
    /* a repeated interaction is an example of its own, as a repeated row of train.csv */
    v4r_split *tr = &c.ds.split[V4R_TRAIN];
    v4r_split_push(tr, tr->user[0], tr->item[0], 0, 0, 0);
    released_opts(&o, &c);
    o.epochs = 2;
    v4r_trained out;
    v4r_train_log log;
    v4r_err err = {0};
    assert_int_equal(v4r_train(&c.ds, &o, &out, &log, &err), 0);
    assert_int_equal(log.train_pairs, tr->n);
    for (size_t e = 0; e < 2; e++)
        assert_int_equal(log.epochs[e].steps, (tr->n + 255) / 256);
    assert_int_equal(log.kept_epoch, 2);
    assert_int_equal(out.dim, 48);
    v4r_trained_free(&out);
    v4r_train_log_free(&log);
    tu_catalog_free(&c);
}

/* ---- two steps against torch ---- */

static void check_steps(int kind, const char *const *names, size_t n_params, const float *const *init,
                        const float *const *after, const double *losses)
{
    v4r_fusion_model m;
    v4r_fusion_model_init(&m, kind, STEP_DIN, STEP_DIN, STEP_HIDDEN, STEP_DOUT, 99);
    assert_int_equal(m.params.n, n_params);
    for (size_t i = 0; i < n_params; i++) {
        v4r_param *p = v4r_params_find(&m.params, names[i]);
        assert_non_null(p);
        memcpy(p->t.val, init[i], p->t.rows * p->t.cols * sizeof(float));
    }
    v4r_ad_tape *t = v4r_ad_tape_new();
    v4r_adam adam;
    v4r_adam_defaults(&adam);
    v4r_epoch_log e = {.lr = 1e-3};
    v4r_epoch_acc acc;
    v4r_epoch_begin(&acc);
    for (int b = 0; b < 2; b++) {
        v4r_params_zero_grad(&m.params);
        v4r_ad_tape_reset(t);
        v4r_ad_tensor *tx = v4r_ad_const(t, STEP_ITEMS, STEP_DIN, STEP_TEXT);
        v4r_ad_tensor *vx = v4r_ad_const(t, STEP_ITEMS, STEP_DIN, STEP_VISION);
        v4r_ad_tensor *loss = v4r_fusion_released_loss(t, &m, tx, vx, STEP_ITEM[b], STEP_BATCH, STEP_NEG[b], STEP_K, 0.07f);
        print_message("step %d: loss %.7f, torch %.7f\n", b + 1, loss->val[0], losses[b]);
        assert_true(fabs(loss->val[0] - losses[b]) < 1e-5);
        assert_int_equal(v4r_train_step(&acc, &e, t, &m.params, loss, &adam, 1.0), 0);
    }
    double worst = 0;
    for (size_t i = 0; i < n_params; i++) {
        v4r_param *p = v4r_params_find(&m.params, names[i]);
        for (size_t j = 0; j < p->t.rows * p->t.cols; j++)
            worst = fmax(worst, fabs((double)p->t.val[j] - after[i][j]));
    }
    print_message("largest weight difference after two steps: %.3g\n", worst);
    assert_true(worst < 1e-5);
    v4r_ad_tape_free(t);
    v4r_fusion_model_free(&m);
}

static void test_steps_match_torch(void **state)
{
    (void)state;
    check_steps(V4R_MODEL_ATTENTION, STEP_ATTENTION_NAMES, STEP_ATTENTION_NPARAMS, STEP_ATTENTION_INIT,
                STEP_ATTENTION_AFTER, STEP_ATTENTION_LOSS);
    check_steps(V4R_MODEL_GATING, STEP_GATING_NAMES, STEP_GATING_NPARAMS, STEP_GATING_INIT, STEP_GATING_AFTER,
                STEP_GATING_LOSS);
}

/* ---- the last epoch's weights ---- */

typedef struct {
    float *last; /* the weights after the last epoch */
} keep_ctx;

/* After epoch 2 the output LayerNorm's bias jumps to 10: every fused vector points the same way,
 * epoch 3's validation loss is far worse, and the best epoch is an earlier one. */
static void spoil_then_record(void *ctx, const v4r_train_log *log, v4r_params *ps)
{
    keep_ctx *k = ctx;
    if (log->n_epochs == 2) {
        v4r_param *b = v4r_params_find(ps, "output.1.bias");
        for (size_t i = 0; i < b->t.cols; i++)
            b->t.val[i] = 10.0f;
    }
    if (log->n_epochs == 3)
        v4r_params_snapshot(ps, k->last);
}

static void test_keeps_last_epoch(void **state)
{
    (void)state;
    tu_catalog c;
    tu_catalog_make(&c, 200, 400, 2000);
    for (int keep = V4R_KEEP_BEST; keep <= V4R_KEEP_LAST; keep++) {
        v4r_train_opts o;
        released_opts(&o, &c);
        o.epochs = 3;
        o.keep = keep;
        keep_ctx k = {v4r_malloc(1 << 20)};
        o.on_epoch = spoil_then_record, o.ctx = &k;
        v4r_trained out;
        v4r_train_log log;
        v4r_err err = {0};
        assert_int_equal(v4r_train(&c.ds, &o, &out, &log, &err), 0);
        assert_true(log.best_epoch < 3);
        assert_true(log.epochs[2].valid_loss > log.epochs[log.best_epoch - 1].valid_loss);
        size_t n = v4r_params_count(out.params);
        float *kept = v4r_malloc(n * sizeof *kept);
        v4r_params_snapshot(out.params, kept);
        if (keep == V4R_KEEP_LAST) {
            assert_int_equal(log.kept_epoch, 3);
            assert_memory_equal(kept, k.last, n * sizeof *kept);
        } else {
            assert_int_equal(log.kept_epoch, log.best_epoch);
            assert_memory_not_equal(kept, k.last, n * sizeof *kept);
        }
        /* the item vectors are the kept weights' fused outputs */
        float *y = v4r_malloc(out.n_items * out.dim * sizeof *y);
        v4r_fusion_apply(out.model, c.desc.data, c.visual.data, out.n_items, y);
        assert_memory_equal(y, out.items, out.n_items * out.dim * sizeof *y);
        free(y);
        free(kept);
        free(k.last);
        v4r_trained_free(&out);
        v4r_train_log_free(&log);
    }
    tu_catalog_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_by_hand),        cmocka_unit_test(test_plateau_matches_torch),
        cmocka_unit_test(test_negatives),           cmocka_unit_test(test_recipe_and_examples),
        cmocka_unit_test(test_steps_match_torch),   cmocka_unit_test(test_keeps_last_epoch),
    };
    omp_set_num_threads(1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

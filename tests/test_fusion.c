/* Attention and gating fusion: the gradient of the full batch loss against finite differences,
 * training on the synthetic catalog (the loss falls; attention fusion beats concatenation on
 * validation Recall@20), seeded determinism, the covered subset, a loss that turns NaN (the best
 * epoch is kept), and a dataset without a validation split. */
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/fusion.h"
#include "vlm4rec/rec.h"

/* ---- the full loss against finite differences ---- */

/* co-interaction: anchors with positives and 3 shared negatives; released: 2 negatives each */
static v4r_ad_tensor *model_loss(v4r_ad_tape *t, const v4r_fusion_model *m, const float *text, const float *vision,
                                 int released)
{
    static const int32_t anchor[] = {0, 3, 5, 7}, positive[] = {1, 2, 6, 7}, negative[] = {4, 8, 9};
    static const int32_t own[] = {1, 4, 2, 9, 6, 8, 4, 0};
    v4r_ad_tensor *tx = v4r_ad_const(t, 10, m->dim_text, text), *vx = v4r_ad_const(t, 10, m->dim_vision, vision);
    if (released)
        return v4r_fusion_released_loss(t, m, tx, vx, anchor, 4, own, 2, 0.5f);
    return v4r_fusion_batch_loss(t, m, tx, vx, anchor, positive, 4, negative, 3, 0.5f);
}

static float batch_loss_value(v4r_ad_tape *t, const v4r_fusion_model *m, const float *text, const float *vision,
                              int released)
{
    v4r_ad_tape_reset(t);
    return model_loss(t, m, text, vision, released)->val[0];
}

static void check_model_grad(int kind, int released)
{
    v4r_fusion_model m;
    v4r_fusion_model_init(&m, kind, 5, 7, 6, 4, 12); /* no ReLU input within h of its kink */
    float text[50], vision[70];
    v4r_rng r;
    v4r_rng_seed(&r, 3);
    for (size_t i = 0; i < 50; i++)
        text[i] = (float)v4r_rng_normal(&r);
    for (size_t i = 0; i < 70; i++)
        vision[i] = (float)v4r_rng_normal(&r);
    for (size_t p = 0; p < m.params.n; p++) /* LayerNorm gains away from 1 so that they matter */
        if (!strcmp(m.params.p[p]->name, "output.1.weight"))
            for (size_t i = 0; i < 4; i++)
                m.params.p[p]->t.val[i] = 0.5f + 0.3f * (float)i;
    v4r_ad_tape *t = v4r_ad_tape_new();
    v4r_params_zero_grad(&m.params);
    v4r_ad_backward(t, model_loss(t, &m, text, vision, released));
    size_t checked = 0, bad = 0;
    for (size_t p = 0; p < m.params.n; p++) {
        v4r_ad_tensor *x = &m.params.p[p]->t;
        for (size_t i = 0; i < x->rows * x->cols; i++) {
            float keep = x->val[i], h = 2e-3f;
            x->val[i] = keep + h;
            double up = batch_loss_value(t, &m, text, vision, released);
            x->val[i] = keep - h;
            double down = batch_loss_value(t, &m, text, vision, released);
            x->val[i] = keep;
            double numeric = (up - down) / (2.0 * h), analytic = x->grad[i];
            checked++;
            if (fabs(numeric - analytic) > 2e-3 + 2e-2 * fabs(numeric)) {
                bad++;
                print_message("%s[%zu]: analytic %.6g, numeric %.6g\n", m.params.p[p]->name, i, analytic, numeric);
            }
        }
    }
    assert_true(checked > 200);
    assert_int_equal(bad, 0);
    v4r_ad_tape_free(t);
    v4r_fusion_model_free(&m);
}

static void test_grad_attention(void **state)
{
    (void)state;
    check_model_grad(V4R_MODEL_ATTENTION, 0);
    check_model_grad(V4R_MODEL_ATTENTION, 1);
}

static void test_grad_gating(void **state)
{
    (void)state;
    check_model_grad(V4R_MODEL_GATING, 0);
    check_model_grad(V4R_MODEL_GATING, 1);
}

/* ---- training on the synthetic catalog ---- */

static void small_opts(v4r_train_opts *o, const tu_catalog *c, int kind)
{
    v4r_train_defaults(o, kind);
    o->text = c->desc.data, o->dim_text = c->desc.cols;
    o->vision = c->visual.data, o->dim_vision = c->visual.cols;
    o->hidden = o->dim = 128;
    o->batch = o->negatives = 128;
    o->epochs = 5;
    o->valid_recall = 0;
    o->seed = 7;
}

/* validation Recall@20 of a representation spec through the library's evaluation */
static double valid_recall20(const tu_catalog *c, const char *spec)
{
    v4r_eval_opts eo;
    v4r_eval_opts_defaults(&eo);
    eo.ks[0] = 20, eo.nk = 1, eo.bootstrap = 0;
    v4r_model_spec ms = {"m", (char *)spec};
    v4r_eval_result res;
    v4r_err err = {0};
    assert_int_equal(v4r_evaluate(&c->ds, &ms, 1, &eo, &res, &err), 0);
    double r = res.models[0].mean[V4R_M_RECALL];
    v4r_eval_result_free(&res);
    return r;
}

static void test_attention_beats_concat(void **state)
{
    (void)state;
    tu_catalog c;
    tu_catalog_make(&c, 1000, 2000, 10000);
    v4r_train_opts o;
    small_opts(&o, &c, V4R_MODEL_ATTENTION);
    o.valid_recall = 1;
    v4r_trained tr;
    v4r_train_log log;
    v4r_err err = {0};
    assert_int_equal(v4r_train(&c.ds, &o, &tr, &log, &err), 0);
    assert_int_equal(log.n_epochs, 5);
    assert_true(log.epochs[4].train_loss < log.epochs[0].train_loss - 0.1);
    assert_true(log.best_epoch >= 1 && log.best_epoch <= 5);
    for (size_t e = 0; e < 5; e++)
        assert_true(log.epochs[e].valid_recall > 0 && log.epochs[e].valid_loss > 0);
    char *path = v4r_path_join(c.dir, "att.npy");
    assert_int_equal(v4r_npy_write(path, tr.items, tr.n_items, tr.dim, &err), 0);
    double fused = valid_recall20(&c, path);
    char *spec = v4r_sprintf("concat:%s/features/description.npy,%s/features/visual.npy", c.dir, c.dir);
    double concat = valid_recall20(&c, spec);
    print_message("validation Recall@20: attention %.4f, concatenation %.4f\n", fused, concat);
    assert_true(fused > concat + 0.01);
    /* the log's Recall@20 of the best epoch is the library's evaluation of the written vectors */
    assert_true(fabs(log.epochs[log.best_epoch - 1].valid_recall - fused) < 1e-6);
    free(spec);
    free(path);
    v4r_trained_free(&tr);
    v4r_train_log_free(&log);
    tu_catalog_free(&c);
}

static void test_gating_and_released(void **state)
{
    (void)state;
    tu_catalog c;
    tu_catalog_make(&c, 400, 800, 4000);
    for (int variant = 0; variant < 2; variant++) {
        v4r_train_opts o;
        small_opts(&o, &c, variant ? V4R_MODEL_ATTENTION : V4R_MODEL_GATING);
        o.objective = variant ? V4R_OBJ_RELEASED : V4R_OBJ_COINTERACTION;
        o.hidden = o.dim = 64;
        if (variant)
            o.negatives = 4;
        v4r_trained tr;
        v4r_train_log log;
        v4r_err err = {0};
        assert_int_equal(v4r_train(&c.ds, &o, &tr, &log, &err), 0);
        assert_true(log.epochs[4].train_loss < log.epochs[0].train_loss);
        /* released: one example per training interaction */
        if (variant)
            assert_int_equal(log.train_pairs, c.ds.split[V4R_TRAIN].n);
        for (size_t i = 0; i < tr.n_items * tr.dim; i++)
            assert_true(isfinite(tr.items[i]));
        v4r_trained_free(&tr);
        v4r_train_log_free(&log);
    }
    tu_catalog_free(&c);
}

static void test_deterministic_and_covered(void **state)
{
    (void)state;
    tu_catalog c;
    tu_catalog_make(&c, 300, 600, 3000);
    v4r_train_opts o;
    small_opts(&o, &c, V4R_MODEL_ATTENTION);
    o.hidden = o.dim = 32;
    o.epochs = 2;
    v4r_trained a, b, d;
    v4r_train_log la, lb, ld;
    v4r_err err = {0};
    assert_int_equal(v4r_train(&c.ds, &o, &a, &la, &err), 0);
    assert_int_equal(v4r_train(&c.ds, &o, &b, &lb, &err), 0);
    assert_memory_equal(a.items, b.items, a.n_items * a.dim * sizeof(float));
    o.seed = 8;
    assert_int_equal(v4r_train(&c.ds, &o, &d, &ld, &err), 0);
    assert_memory_not_equal(a.items, d.items, a.n_items * a.dim * sizeof(float));
    v4r_trained_free(&a), v4r_trained_free(&b), v4r_trained_free(&d);
    v4r_train_log_free(&la), v4r_train_log_free(&lb), v4r_train_log_free(&ld);
    /* the covered subset: other items get zero rows */
    uint8_t *cov = v4r_calloc(c.ds.n_items, 1);
    for (size_t i = 0; i < c.ds.n_items; i += 2)
        cov[i] = 1;
    o.covered = cov;
    assert_int_equal(v4r_train(&c.ds, &o, &a, &la, &err), 0);
    for (size_t i = 0; i < a.n_items; i++) {
        double ss = 0;
        for (size_t k = 0; k < a.dim; k++)
            ss += a.items[i * a.dim + k] * a.items[i * a.dim + k];
        assert_true(cov[i] ? ss > 0 : ss == 0);
    }
    v4r_trained_free(&a);
    v4r_train_log_free(&la);
    free(cov);
    tu_catalog_free(&c);
}

/* After epoch 1, a weight turns NaN: training stops in epoch 2 and keeps epoch 1. */
static void poison_after_first(void *ctx, const v4r_train_log *log, v4r_params *ps)
{
    if (log->n_epochs == 1) {
        memcpy(ctx, ps->p[0]->t.val, sizeof(float)); /* proves the restore below */
        ps->p[0]->t.val[0] = NAN;
    }
}

static void test_nan_keeps_best(void **state)
{
    (void)state;
    tu_catalog c;
    tu_catalog_make(&c, 300, 600, 3000);
    v4r_train_opts o;
    small_opts(&o, &c, V4R_MODEL_ATTENTION);
    o.hidden = o.dim = 32;
    o.epochs = 4;
    float first = 0;
    o.on_epoch = poison_after_first;
    o.ctx = &first;
    v4r_trained tr;
    v4r_train_log log;
    v4r_err err = {0};
    assert_int_equal(v4r_train(&c.ds, &o, &tr, &log, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "not finite"));
    assert_non_null(strstr(err.msg, "kept epoch 1"));
    assert_true(log.diverged && log.diverged_epoch == 2 && log.diverged_step == 1);
    assert_int_equal(log.best_epoch, 1);
    assert_true(tr.params->p[0]->t.val[0] == first);
    for (size_t i = 0; i < tr.n_items * tr.dim; i++)
        assert_true(isfinite(tr.items[i]));
    v4r_trained_free(&tr);
    v4r_train_log_free(&log);
    /* an absurd learning rate: NaN in the first epoch, nothing to keep */
    o.on_epoch = NULL;
    o.lr = 1e30;
    assert_int_equal(v4r_train(&c.ds, &o, &tr, &log, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "nothing to keep"));
    assert_int_equal(log.best_epoch, 0);
    v4r_trained_free(&tr);
    v4r_train_log_free(&log);
    tu_catalog_free(&c);
}

static void test_no_validation_split(void **state)
{
    (void)state;
    tu_catalog c;
    tu_catalog_make(&c, 100, 200, 1000);
    c.ds.split[V4R_VALID].n = 0;
    v4r_train_opts o;
    small_opts(&o, &c, V4R_MODEL_GATING);
    v4r_trained tr;
    v4r_train_log log;
    v4r_err err = {0};
    assert_int_equal(v4r_train(&c.ds, &o, &tr, &log, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "no validation split"));
    v4r_trained_free(&tr);
    v4r_train_log_free(&log);
    tu_catalog_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_attention),        cmocka_unit_test(test_grad_gating),
        cmocka_unit_test(test_attention_beats_concat), cmocka_unit_test(test_gating_and_released),
        cmocka_unit_test(test_deterministic_and_covered), cmocka_unit_test(test_nan_keeps_best),
        cmocka_unit_test(test_no_validation_split),
    };
    /* one thread: these small models gain nothing from two, and lose much when the machine is busy */
    omp_set_num_threads(1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

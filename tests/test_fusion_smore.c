/* SMORE: the kNN, fusion and user-item graphs against brute force, the gradient of the full loss
 * against finite differences, and training on the synthetic catalog (the loss falls, validation
 * Recall@20 rises, seeded runs repeat, early stopping, the trained vectors against concatenation
 * and the visual vectors under vlm4rec eval, on a denser catalog a win over concatenation, a
 * covered subset, a NaN keeps the best epoch). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/fusion.h"
#include "vlm4rec/rec.h"

static void fill(float *x, size_t n, uint64_t seed)
{
    v4r_rng r;
    v4r_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)v4r_rng_normal(&r);
}

/* entry (r, c) of a CSR matrix, 0 when absent */
static float at(const v4r_csr *m, size_t r, size_t c)
{
    for (size_t k = m->ptr[r]; k < m->ptr[r + 1]; k++)
        if ((size_t)m->col[k] == c)
            return m->val[k];
    return 0.0f;
}

/* ---- graphs ---- */

static void test_knn_graph(void **state)
{
    (void)state;
    enum { N = 30, D = 5, K = 4 };
    float x[N * D];
    fill(x, N * D, 1);
    memcpy(x + 7 * D, x + 3 * D, D * sizeof(float)); /* item 7 duplicates item 3: a tie at cosine 1 */
    for (size_t c = 0; c < D; c++)
        x[9 * D + c] = 0; /* a zero row */
    v4r_spmat g;
    v4r_knn_graph(x, N, D, K, &g);
    assert_int_equal(g.a.nnz, N * K);
    double cosine[N][N], deg[N] = {0};
    int32_t nb[N][K];
    for (size_t i = 0; i < N; i++) {
        double ni = 0;
        for (size_t c = 0; c < D; c++)
            ni += x[i * D + c] * x[i * D + c];
        for (size_t j = 0; j < N; j++) {
            double nj = 0, dot = 0;
            for (size_t c = 0; c < D; c++)
                nj += x[j * D + c] * x[j * D + c], dot += x[i * D + c] * x[j * D + c];
            cosine[i][j] = ni > 0 && nj > 0 ? dot / sqrt(ni * nj) : 0;
        }
        uint8_t taken[N] = {0};
        for (size_t k = 0; k < K; k++) { /* the best untaken; ties to the lower index */
            int32_t best = -1;
            for (size_t j = 0; j < N; j++)
                if (!taken[j] && (best < 0 || cosine[i][j] > cosine[i][best] + 1e-6))
                    best = (int32_t)j;
            taken[best] = 1;
            nb[i][k] = best;
            deg[i] += cosine[i][best];
        }
    }
    assert_true(nb[3][0] == 3 && nb[3][1] == 7 && nb[7][0] == 3 && nb[7][1] == 7);
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < K; k++) {
            size_t j = (size_t)nb[i][k];
            double want = deg[i] > 0 && deg[j] > 0 ? cosine[i][j] / sqrt(deg[i] * deg[j]) : 0;
            if (fabs(at(&g.a, i, j) - want) > 1e-5)
                fail_msg("(%zu, %zu): %g, want %g", i, j, at(&g.a, i, j), want);
        }
    for (size_t k = g.a.ptr[9]; k < g.a.ptr[10]; k++) /* the zero row: no weight */
        assert_true(g.a.val[k] == 0);
    v4r_spmat_free(&g);
}

/* A tiny model: 5 users, 8 items, 13 interactions (one repeated), 8-d, k = 3 (vision) and 4 (text). */
static void tiny_model(v4r_smore_model *m, uint64_t seed)
{
    static const int32_t user[] = {0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 0};
    static const int32_t item[] = {0, 1, 2, 2, 3, 4, 5, 1, 6, 7, 0, 7, 1};
    float text[8 * 6], vision[8 * 7];
    fill(text, 8 * 6, seed);
    fill(vision, 8 * 7, seed + 1);
    v4r_smore_init(m, 5, 8, user, item, 13, text, 6, vision, 7, 8, 3, 4, 2, seed + 2);
}

static void test_graphs(void **state)
{
    (void)state;
    v4r_smore_model m;
    tiny_model(&m, 1);
    /* user-item: 1 / sqrt(deg u deg i) over the distinct interactions, symmetric */
    static const int deg_u[5] = {3, 2, 3, 2, 2}, deg_i[8] = {2, 2, 2, 1, 1, 1, 1, 2};
    assert_int_equal(m.r_norm.a.nnz, 12);
    assert_true(fabs(at(&m.r_norm.a, 0, 1) - 1 / sqrt(deg_u[0] * deg_i[1])) < 1e-6);
    assert_true(fabs(at(&m.r_norm.a, 3, 6) - 1 / sqrt(deg_u[3] * deg_i[6])) < 1e-6);
    assert_true(at(&m.r_norm.a, 1, 0) == 0);
    assert_int_equal(m.ui_adj.a.nnz, 24);
    assert_int_equal(m.image_adj.a.nnz, 8 * 3); /* k per modality */
    assert_int_equal(m.text_adj.a.nnz, 8 * 4);
    for (size_t r = 0; r < 13; r++)
        for (size_t c = 0; c < 13; c++)
            assert_true(at(&m.ui_adj.a, r, c) == at(&m.ui_adj.a, c, r));
    assert_true(at(&m.ui_adj.a, 2, 5 + 4) == at(&m.r_norm.a, 2, 4));
    /* fusion: the element-wise maximum over the union */
    for (size_t r = 0; r < 8; r++)
        for (size_t c = 0; c < 8; c++) {
            float a = at(&m.image_adj.a, r, c), b = at(&m.text_adj.a, r, c), f = at(&m.fusion_adj.a, r, c);
            float present_a = a != 0, present_b = b != 0;
            float want = present_a && present_b ? fmaxf(a, b) : present_a ? a : b;
            assert_true(f == want);
        }
    v4r_smore_free(&m);
}

/* ---- the full loss ---- */

static float loss_value(v4r_ad_tape *t, const v4r_smore_model *m)
{
    static const int32_t user[] = {0, 2, 4, 1}, pos[] = {1, 5, 7, 3}, neg[] = {6, 0, 2, 7};
    v4r_ad_tape_reset(t);
    return v4r_smore_loss(t, m, user, pos, neg, 4, 4, 0.1, 0.5, 0.2f)->val[0];
}

static void test_smore_grad(void **state)
{
    (void)state;
    v4r_smore_model m;
    tiny_model(&m, 5);
    v4r_ad_tape *t = v4r_ad_tape_new();
    static const int32_t user[] = {0, 2, 4, 1}, pos[] = {1, 5, 7, 3}, neg[] = {6, 0, 2, 7};
    v4r_params_zero_grad(&m.params);
    v4r_ad_backward(t, v4r_smore_loss(t, &m, user, pos, neg, 4, 4, 0.1, 0.5, 0.2f));
    size_t checked = 0, bad = 0;
    for (size_t p = 0; p < m.params.n; p++) {
        v4r_ad_tensor *x = &m.params.p[p]->t;
        for (size_t i = 0; i < x->rows * x->cols; i++) {
            float keep = x->val[i], h = 1e-2f;
            x->val[i] = keep + h;
            double up = loss_value(t, &m);
            x->val[i] = keep - h;
            double down = loss_value(t, &m);
            x->val[i] = keep;
            double numeric = (up - down) / (2.0 * h), analytic = x->grad[i];
            checked++;
            if (fabs(numeric - analytic) > 1e-3 + 2e-2 * fabs(numeric)) {
                bad++;
                print_message("%s[%zu]: analytic %.6g, numeric %.6g\n", m.params.p[p]->name, i, analytic, numeric);
            }
        }
    }
    assert_true(checked > 600);
    assert_int_equal(bad, 0);
    v4r_ad_tape_free(t);
    v4r_smore_free(&m);
}

/* ---- training ---- */

static void smore_opts(v4r_train_opts *o, const tu_catalog *c)
{
    v4r_train_defaults(o, V4R_MODEL_SMORE);
    o->text = c->desc.data, o->dim_text = c->desc.cols;
    o->vision = c->visual.data, o->dim_vision = c->visual.cols;
    o->batch = 256;
    o->epochs = 6;
    o->seed = 3;
}

static void test_smore_trains(void **state)
{
    (void)state;
    tu_catalog c;
    tu_catalog_make(&c, 300, 600, 3000);
    v4r_train_opts o;
    smore_opts(&o, &c);
    v4r_trained a, b;
    v4r_train_log la, lb;
    v4r_err err = {0};
    assert_int_equal(v4r_train(&c.ds, &o, &a, &la, &err), 0);
    assert_int_equal(la.n_epochs, 6);
    assert_int_equal(la.early_stop, 0);
    assert_true(la.epochs[5].train_loss < la.epochs[0].train_loss - 0.02);
    assert_true(la.epochs[la.best_epoch - 1].native_recall > la.epochs[0].native_recall + 0.02);
    assert_true(la.epochs[0].valid_recall > 0);
    assert_non_null(a.users);
    assert_int_equal(a.dim, 64);
    for (size_t i = 0; i < a.n_users * a.dim; i++)
        assert_true(isfinite(a.users[i]));
    assert_non_null(v4r_params_find(a.params, "image_complex_weight"));
    assert_int_equal(v4r_params_find(a.params, "image_complex_weight")->shape[1], 33);
    /* the same seed, the same vectors */
    assert_int_equal(v4r_train(&c.ds, &o, &b, &lb, &err), 0);
    assert_memory_equal(a.items, b.items, a.n_items * a.dim * sizeof(float));
    assert_memory_equal(a.users, b.users, a.n_users * a.dim * sizeof(float));
    v4r_trained_free(&a), v4r_trained_free(&b);
    v4r_train_log_free(&la), v4r_train_log_free(&lb);
    tu_catalog_free(&c);
}

/* ---- early stopping ---- */

/* A learning rate too small to move any weight: every epoch validates alike, so none improves on
 * the first, and MMRec's rule stops once more than `patience` epochs in a row did not improve. */
static void test_smore_patience(void **state)
{
    (void)state;
    tu_catalog c;
    tu_catalog_make(&c, 200, 400, 2000);
    v4r_train_opts o;
    smore_opts(&o, &c);
    o.lr = 1e-30;
    o.epochs = 10;
    o.patience = 2;
    v4r_trained tr;
    v4r_train_log log;
    v4r_err err = {0};
    assert_int_equal(v4r_train(&c.ds, &o, &tr, &log, &err), 0);
    assert_int_equal(log.best_epoch, 1);
    assert_int_equal(log.n_epochs, 4);
    assert_int_equal(log.early_stop, 4);
    for (size_t e = 1; e < log.n_epochs; e++)
        assert_true(log.epochs[e].native_recall == log.epochs[0].native_recall);
    v4r_trained_free(&tr);
    v4r_train_log_free(&log);
    o.patience = 0; /* a fixed epoch count */
    assert_int_equal(v4r_train(&c.ds, &o, &tr, &log, &err), 0);
    assert_int_equal(log.n_epochs, 10);
    assert_int_equal(log.early_stop, 0);
    assert_int_equal(log.best_epoch, 1);
    v4r_trained_free(&tr);
    v4r_train_log_free(&log);
    tu_catalog_free(&c);
}

static json_t *load_json(const char *dir, const char *name)
{
    char *text = tu_read(dir, name);
    assert_non_null(text);
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    free(text);
    return j;
}

/* The command line: --patience, --knn-image and --knn-text reach the model and the log. */
static void test_smore_cli_options(void **state)
{
    (void)state;
    tu_catalog c;
    tu_catalog_make(&c, 200, 400, 2000);
    char *out = NULL;
    int rc = tu_run(&out,
                    "train smore -q --dataset '%s' --text features/description.npy --vision features/visual.npy "
                    "-o '%s/s.npy' --epochs 8 --patience 1 --lr 1e-30 --knn-image 5 --knn-text 7 --batch-size 256 "
                    "--threads 1",
                    c.dir, c.dir);
    if (rc != 0)
        fail_msg("train failed (%d): %s", rc, out);
    free(out);
    json_t *log = load_json(c.dir, "s.log.json"), *config = json_object_get(log, "config");
    assert_int_equal(json_array_size(json_object_get(log, "epochs")), 3);
    assert_int_equal(json_integer_value(json_object_get(log, "best_epoch")), 1);
    assert_int_equal(json_integer_value(json_object_get(log, "early_stop")), 3);
    assert_true(json_is_true(json_object_get(log, "complete")));
    assert_int_equal(json_integer_value(json_object_get(config, "epochs")), 8);
    assert_int_equal(json_integer_value(json_object_get(config, "patience")), 1);
    assert_int_equal(json_integer_value(json_object_get(config, "knn_image")), 5);
    assert_int_equal(json_integer_value(json_object_get(config, "knn_text")), 7);
    assert_int_equal(json_integer_value(json_object_get(config, "item_layers")), 1);
    assert_non_null(strstr(json_string_value(json_object_get(config, "lr_schedule")), "exp:0.99918"));
    json_decref(log);
    rc = tu_run(&out, "train smore --dataset '%s' --text features/description.npy --vision features/visual.npy "
                      "-o '%s/bad.npy' --knn-text 0", c.dir, c.dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--knn-text"));
    free(out);
    tu_catalog_free(&c);
}

/* ---- against the shared protocol ---- */

static double eval_recall(json_t *res, const char *model)
{
    json_t *models = json_object_get(res, "models");
    for (size_t i = 0; i < json_array_size(models); i++) {
        json_t *m = json_array_get(models, i);
        if (!strcmp(json_string_value(json_object_get(m, "name")), model))
            return json_real_value(json_object_get(json_object_get(json_object_get(m, "metrics"), "recall@20"), "mean"));
    }
    fail_msg("no model %s in the eval output", model);
    return NAN;
}

/* Trained SMORE written out and ranked by `vlm4rec eval` (its validation users, masks and
 * Recall@20) next to the concatenation of its inputs and the visual vectors alone: eval gives the
 * log's numbers, and both SMORE's own scores and its item vectors under the shared retriever rank
 * the validation items far better than the visual vectors, which lack what users choose by. */
static void test_smore_under_eval(void **state)
{
    (void)state;
    tu_catalog c;
    tu_catalog_make(&c, 300, 600, 3000);
    v4r_train_opts o;
    smore_opts(&o, &c);
    o.epochs = 12;
    v4r_trained tr;
    v4r_train_log log;
    v4r_err err = {0};
    assert_int_equal(v4r_train(&c.ds, &o, &tr, &log, &err), 0);
    char *items = v4r_path_join(c.dir, "smore.npy"), *users = v4r_path_join(c.dir, "smore.users.npy");
    assert_int_equal(v4r_npy_write(items, tr.items, tr.n_items, tr.dim, &err), 0);
    assert_int_equal(v4r_npy_write(users, tr.users, tr.n_users, tr.dim, &err), 0);
    char *out = NULL;
    int rc = tu_run(&out,
                    "eval -q --dataset '%s' --model concat=concat:features/description.npy,features/visual.npy "
                    "--model visual=features/visual.npy --model smore='%s' --model own='%s' --native own='%s' "
                    "--bootstrap 0 --threads 1 -o '%s/res.json'",
                    c.dir, items, items, users, c.dir);
    if (rc != 0)
        fail_msg("eval failed (%d): %s", rc, out);
    free(out);
    json_t *res = load_json(c.dir, "res.json");
    double concat = eval_recall(res, "concat"), visual = eval_recall(res, "visual");
    double shared = eval_recall(res, "smore"), own = eval_recall(res, "own");
    const v4r_epoch_log *best = &log.epochs[log.best_epoch - 1];
    print_message("recall@20: concat %.4f, visual %.4f, smore item vectors %.4f, smore's own scores %.4f\n", concat,
                  visual, shared, own);
    assert_true(fabs(shared - best->valid_recall) < 1e-6);
    assert_true(fabs(own - best->native_recall) < 1e-6);
    assert_true(shared > visual + 0.1);
    assert_true(own > visual + 0.1);
    json_decref(res);
    free(items);
    free(users);
    v4r_trained_free(&tr);
    v4r_train_log_free(&log);
    tu_catalog_free(&c);
}

static void run_ok(const char *what, char *out, int rc)
{
    if (rc != 0)
        fail_msg("%s failed (%d): %s", what, rc, out);
    free(out);
}

/* On a catalog dense enough for its ID embeddings (20 interactions per item), SMORE trained with
 * the official setting for the method's data (3 user-item layers, k = 40 for the image graph)
 * beats the concatenation of its inputs on validation Recall@20 under `vlm4rec eval`, by its own
 * scores and as item vectors. Release build only: 30 epochs of full-graph steps take minutes under
 * the sanitizers. */
static void test_smore_beats_concat(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip();
#endif
    char *dir = tu_tmpdir(), *out = NULL;
    run_ok("synth", out, tu_run(&out, "dataset synth -o '%s' --users 1000 --items 1000 --interactions 20000 --seed 1",
                                dir));
    out = NULL;
    run_ok("train", out,
           tu_run(&out,
                  "train smore -q --dataset '%s' --text features/description.npy --vision features/visual.npy "
                  "-o '%s/smore.npy' --layers 3 --knn-image 40 --epochs 30 --patience 0 --threads 2",
                  dir, dir));
    out = NULL;
    run_ok("eval", out,
           tu_run(&out,
                  "eval -q --dataset '%s' --model concat=concat:features/description.npy,features/visual.npy "
                  "--model smore='%s/smore.npy' --model own='%s/smore.npy' --native own='%s/smore.users.npy' "
                  "--bootstrap 0 --threads 2 -o '%s/res.json'",
                  dir, dir, dir, dir, dir));
    json_t *res = load_json(dir, "res.json");
    double concat = eval_recall(res, "concat"), items = eval_recall(res, "smore"), own = eval_recall(res, "own");
    print_message("validation recall@20: concatenation %.4f, SMORE item vectors %.4f, SMORE's own scores %.4f\n",
                  concat, items, own);
    assert_true(own > concat + 0.01);
    assert_true(items > concat + 0.01);
    json_decref(res);
    tu_rmtree(dir);
    free(dir);
}

static void poison(void *ctx, const v4r_train_log *log, v4r_params *ps)
{
    (void)ctx;
    if (log->n_epochs == 2)
        ps->p[0]->t.val[0] = NAN;
}

static void test_smore_covered_and_nan(void **state)
{
    (void)state;
    tu_catalog c;
    tu_catalog_make(&c, 200, 400, 2000);
    v4r_train_opts o;
    smore_opts(&o, &c);
    o.epochs = 3;
    uint8_t *cov = v4r_calloc(c.ds.n_items, 1);
    for (size_t i = 0; i < c.ds.n_items; i++)
        cov[i] = i % 3 != 0;
    o.covered = cov;
    v4r_trained tr;
    v4r_train_log log;
    v4r_err err = {0};
    assert_int_equal(v4r_train(&c.ds, &o, &tr, &log, &err), 0);
    for (size_t i = 0; i < tr.n_items; i++) {
        double ss = 0;
        for (size_t k = 0; k < tr.dim; k++)
            ss += tr.items[i * tr.dim + k] * tr.items[i * tr.dim + k];
        assert_true(cov[i] ? ss > 0 : ss == 0);
    }
    v4r_trained_free(&tr);
    v4r_train_log_free(&log);
    o.covered = NULL;
    o.on_epoch = poison;
    assert_int_equal(v4r_train(&c.ds, &o, &tr, &log, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "not finite"));
    assert_true(log.best_epoch >= 1 && log.best_epoch <= 2 && log.diverged_epoch == 3);
    for (size_t i = 0; i < tr.n_items * tr.dim; i++)
        assert_true(isfinite(tr.items[i]));
    v4r_trained_free(&tr);
    v4r_train_log_free(&log);
    free(cov);
    tu_catalog_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_knn_graph),    cmocka_unit_test(test_graphs),
        cmocka_unit_test(test_smore_grad),   cmocka_unit_test(test_smore_trains),
        cmocka_unit_test(test_smore_patience), cmocka_unit_test(test_smore_cli_options),
        cmocka_unit_test(test_smore_under_eval), cmocka_unit_test(test_smore_beats_concat), cmocka_unit_test(test_smore_covered_and_nan),
    };
    omp_set_num_threads(1); /* small models: one thread is fastest, and stays fast on a busy machine */
    return cmocka_run_group_tests(tests, NULL, NULL);
}

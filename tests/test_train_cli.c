/* `vlm4rec train` end to end: the three outputs and their shapes, `eval --native` on SMORE's user
 * vectors, the released recipe (--objective released) and its overrides, and bad input (vector files of
 * the wrong length or with NaN, a dataset without a validation split, a learning rate that makes
 * the loss NaN, bad options) named with a non-zero exit and no output left behind. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/io.h"

#define SMALL "--hidden 32 --dim 32 --batch-size 64 --negatives 64 --epochs 2 --threads 1"

static char *make_catalog(void)
{
    char *dir = tu_tmpdir(), *out = NULL;
    int rc = tu_run(&out, "dataset synth -o '%s/ds' --users 200 --items 400 --interactions 2000", dir);
    if (rc != 0)
        fail_msg("synth failed: %s", out);
    free(out);
    return dir;
}

static void cleanup(char *dir)
{
    tu_rmtree(dir);
    free(dir);
}

static int exists(const char *dir, const char *name)
{
    char *p = v4r_path_join(dir, name);
    int e = v4r_file_exists(p);
    free(p);
    return e;
}

static void test_outputs(void **state)
{
    (void)state;
    char *dir = make_catalog(), *out = NULL;
    int rc = tu_run(&out,
                    "train attention --dataset '%s/ds' --text features/description.npy --vision features/visual.npy "
                    "-o '%s/att.npy' " SMALL,
                    dir, dir);
    if (rc != 0)
        fail_msg("train failed (%d): %s", rc, out);
    free(out);
    char *p = v4r_path_join(dir, "att.npy");
    v4r_matrix m;
    v4r_err err = {0};
    assert_int_equal(v4r_npy_read(p, &m, &err), 0);
    assert_int_equal(m.rows, 400);
    assert_int_equal(m.cols, 32);
    v4r_matrix_free(&m);
    free(p);
    /* the weights, with PyTorch-style names and shapes */
    p = v4r_path_join(dir, "att.safetensors");
    v4r_safetensors *st;
    assert_int_equal(v4r_st_open(p, &st, &err), 0);
    size_t w_shape[2] = {32, 384}, ln_shape[1] = {32}, a_shape[2] = {2, 32};
    float *w;
    assert_int_equal(v4r_st_load(st, "text_proj.weight", 2, w_shape, &w, &err), 0);
    free(w);
    assert_int_equal(v4r_st_load(st, "output.1.weight", 1, ln_shape, &w, &err), 0);
    free(w);
    assert_int_equal(v4r_st_load(st, "attention.2.weight", 2, a_shape, &w, &err), 0);
    free(w);
    v4r_st_close(st);
    free(p);
    /* the log */
    char *text = tu_read(dir, "att.log.json");
    assert_non_null(text);
    json_t *log = json_loads(text, 0, NULL);
    assert_non_null(log);
    assert_string_equal(json_string_value(json_object_get(log, "format")), "vlm4rec.train/1");
    assert_string_equal(json_string_value(json_object_get(log, "model")), "attention");
    json_t *epochs = json_object_get(log, "epochs");
    assert_int_equal(json_array_size(epochs), 2);
    json_t *e0 = json_array_get(epochs, 0);
    assert_true(json_real_value(json_object_get(e0, "train_loss")) > 0);
    assert_true(json_real_value(json_object_get(e0, "valid_recall@20")) > 0);
    assert_true(json_is_integer(json_object_get(log, "best_epoch")));
    assert_true(json_is_true(json_object_get(log, "complete")));
    assert_true(json_is_null(json_object_get(log, "stopped")));
    json_decref(log);
    free(text);
    /* the vectors rank under eval */
    rc = tu_run(&out, "eval --dataset '%s/ds' --model att='%s/att.npy' --bootstrap 0", dir, dir);
    assert_int_equal(rc, 0);
    free(out);
    cleanup(dir);
}

static size_t npy_cols(const char *dir, const char *name)
{
    char *p = v4r_path_join(dir, name);
    v4r_matrix m;
    v4r_err err = {0};
    assert_int_equal(v4r_npy_read(p, &m, &err), 0);
    size_t cols = m.cols;
    assert_int_equal(m.rows, 400);
    v4r_matrix_free(&m);
    free(p);
    return cols;
}

/* --objective released: the released script's recipe (768 columns, batch 256, 4 negatives, the
 * plateau schedule, the last epoch kept); options given before or after it override it. */
static void test_released_recipe(void **state)
{
    (void)state;
    char *dir = make_catalog(), *out = NULL;
    const char *io = "--dataset '%s/ds' --text features/description.npy --vision features/visual.npy -o '%s/%s'";
    char *cmd = v4r_sprintf("train attention %s --objective released --epochs 2 --no-recall --threads 1", io);
    int rc = tu_run(&out, cmd, dir, dir, "rel.npy");
    if (rc != 0)
        fail_msg("train failed (%d): %s", rc, out);
    free(out);
    free(cmd);
    assert_int_equal(npy_cols(dir, "rel.npy"), 768);
    char *text = tu_read(dir, "rel.log.json");
    json_t *log = json_loads(text, 0, NULL), *c = json_object_get(log, "config");
    assert_string_equal(json_string_value(json_object_get(c, "objective")), "released");
    assert_string_equal(json_string_value(json_object_get(c, "lr_schedule")), "plateau:0.5:2");
    assert_string_equal(json_string_value(json_object_get(c, "keep")), "last");
    assert_int_equal(json_integer_value(json_object_get(c, "batch_size")), 256);
    assert_int_equal(json_integer_value(json_object_get(c, "negatives")), 4);
    assert_int_equal(json_integer_value(json_object_get(c, "hidden")), 512);
    assert_true(json_real_value(json_object_get(c, "clip")) == 1.0);
    assert_int_equal(json_integer_value(json_object_get(log, "kept_epoch")), 2);
    assert_int_equal(json_integer_value(json_object_get(log, "train_examples")), 1280); /* the train split's rows */
    json_decref(log);
    free(text);
    /* explicit options win wherever they stand */
    cmd = v4r_sprintf("train gating %s --dim 32 --hidden 16 --objective released --keep best --epochs 1 --no-recall "
                      "--threads 1",
                      io);
    rc = tu_run(&out, cmd, dir, dir, "rel32.npy");
    if (rc != 0)
        fail_msg("train failed (%d): %s", rc, out);
    free(out);
    free(cmd);
    assert_int_equal(npy_cols(dir, "rel32.npy"), 32);
    text = tu_read(dir, "rel32.log.json");
    log = json_loads(text, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(log, "config"), "keep")), "best");
    json_decref(log);
    free(text);
    /* the co-interaction default is untouched */
    cmd = v4r_sprintf("train attention %s --epochs 1 --hidden 16 --no-recall --threads 1", io);
    rc = tu_run(&out, cmd, dir, dir, "co.npy");
    assert_int_equal(rc, 0);
    free(out);
    free(cmd);
    assert_int_equal(npy_cols(dir, "co.npy"), 512);
    text = tu_read(dir, "co.log.json");
    log = json_loads(text, 0, NULL);
    c = json_object_get(log, "config");
    assert_string_equal(json_string_value(json_object_get(c, "objective")), "cointeraction");
    assert_string_equal(json_string_value(json_object_get(c, "lr_schedule")), "constant");
    assert_string_equal(json_string_value(json_object_get(c, "keep")), "best");
    assert_int_equal(json_integer_value(json_object_get(c, "negatives")), 256);
    json_decref(log);
    free(text);
    cleanup(dir);
}

static void test_smore_outputs(void **state)
{
    (void)state;
    char *dir = make_catalog(), *out = NULL;
    int rc = tu_run(&out,
                    "train smore --dataset '%s/ds' --text features/description.npy --vision features/visual.npy "
                    "-o '%s/smore.npy' --epochs 2 --batch-size 256 --threads 1",
                    dir, dir);
    if (rc != 0)
        fail_msg("train failed (%d): %s", rc, out);
    free(out);
    v4r_matrix m;
    v4r_err err = {0};
    char *p = v4r_path_join(dir, "smore.users.npy");
    assert_int_equal(v4r_npy_read(p, &m, &err), 0);
    assert_int_equal(m.rows, 200);
    assert_int_equal(m.cols, 64);
    v4r_matrix_free(&m);
    free(p);
    p = v4r_path_join(dir, "smore.safetensors");
    v4r_safetensors *st;
    assert_int_equal(v4r_st_open(p, &st, &err), 0);
    size_t filter[3] = {1, 33, 2}, feat[2] = {400, 768};
    float *w;
    assert_int_equal(v4r_st_load(st, "fusion_complex_weight", 3, filter, &w, &err), 0);
    free(w);
    assert_int_equal(v4r_st_load(st, "image_embedding.weight", 2, feat, &w, &err), 0);
    free(w);
    v4r_st_close(st);
    free(p);
    char *text = tu_read(dir, "smore.log.json");
    json_t *log = json_loads(text, 0, NULL);
    json_t *e0 = json_array_get(json_object_get(log, "epochs"), 0);
    assert_true(json_real_value(json_object_get(e0, "native_recall@20")) > 0);
    assert_true(json_is_null(json_object_get(e0, "valid_loss")));
    const char *users = json_string_value(json_object_get(json_object_get(log, "outputs"), "users"));
    assert_non_null(users);
    assert_non_null(strstr(users, "smore.users.npy"));
    size_t best = (size_t)json_integer_value(json_object_get(log, "best_epoch"));
    double native = json_real_value(
        json_object_get(json_array_get(json_object_get(log, "epochs"), best - 1), "native_recall@20"));
    json_decref(log);
    free(text);
    /* eval --native ranks by SMORE's own user vectors: the log's validation Recall@20 */
    rc = tu_run(&out, "eval --dataset '%s/ds' --model smore='%s/smore.npy' --native smore='%s/smore.users.npy' "
                      "--bootstrap 0 -o '%s/native.json'", dir, dir, dir, dir);
    if (rc != 0)
        fail_msg("eval --native failed (%d): %s", rc, out);
    free(out);
    text = tu_read(dir, "native.json");
    json_t *res = json_loads(text, 0, NULL);
    json_t *m0 = json_array_get(json_object_get(res, "models"), 0);
    double got = json_real_value(json_object_get(json_object_get(json_object_get(m0, "metrics"), "recall@20"), "mean"));
    assert_true(fabs(got - native) < 1e-6);
    assert_non_null(strstr(json_string_value(json_object_get(m0, "source")), "native:"));
    json_decref(res);
    free(text);
    /* user vectors of the wrong length, and a name that is no model */
    rc = tu_run(&out, "eval --dataset '%s/ds' --model smore='%s/smore.npy' --native smore='%s/smore.npy'", dir, dir, dir);
    assert_int_equal(rc, 3);
    assert_non_null(strstr(out, "users (row u must be user u)"));
    free(out);
    rc = tu_run(&out, "eval --dataset '%s/ds' --model smore='%s/smore.npy' --native other='%s/smore.users.npy'", dir,
                dir, dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "no model named 'other'"));
    free(out);
    cleanup(dir);
}

/* Runs a train command that must fail with code and a message containing needle, leaving no
 * OUT.npy, OUT.safetensors or temporaries. */
static void expect_fail(const char *dir, int code, const char *needle, const char *args)
{
    char *out = NULL;
    int rc = tu_run(&out, "train %s -o '%s/bad.npy'", args, dir);
    if (rc != code || !strstr(out, needle))
        fail_msg("exit %d (want %d), output lacks '%s':\n%s", rc, code, needle, out);
    free(out);
    assert_false(exists(dir, "bad.npy"));
    assert_false(exists(dir, "bad.safetensors"));
    rc = tu_run(&out, "help >/dev/null; ls -a '%s' | grep -c '\\.tmp\\.' || true", dir);
    assert_int_equal(atoi(out), 0);
    free(out);
}

static void test_bad_vectors(void **state)
{
    (void)state;
    char *dir = make_catalog();
    float *v = v4r_calloc(399 * 8, sizeof *v);
    for (size_t i = 0; i < 399 * 8; i++)
        v[i] = (float)(i % 7) - 3.0f;
    char *p = v4r_path_join(dir, "short.npy");
    assert_int_equal(v4r_npy_write(p, v, 399, 8, NULL), 0);
    free(p);
    char *args = v4r_sprintf("attention --dataset '%s/ds' --text '%s/short.npy' --vision features/visual.npy " SMALL,
                             dir, dir);
    expect_fail(dir, 3, "399 rows, but the dataset has 400 items", args);
    free(args);
    float *w = v4r_calloc(400 * 8, sizeof *w);
    memcpy(w, v, 399 * 8 * sizeof *v);
    w[5 * 8 + 3] = NAN;
    p = v4r_path_join(dir, "nan.npy");
    assert_int_equal(v4r_npy_write(p, w, 400, 8, NULL), 0);
    free(p);
    args = v4r_sprintf("gating --dataset '%s/ds' --text features/description.npy --vision '%s/nan.npy' " SMALL, dir,
                       dir);
    expect_fail(dir, 3, "row 5, column 3", args);
    free(args);
    free(v);
    free(w);
    cleanup(dir);
}

static void test_no_validation(void **state)
{
    (void)state;
    char *dir = make_catalog();
    char *ds = v4r_path_join(dir, "ds");
    tu_write(ds, "valid.tsv", "user\titem\ttimestamp\n");
    char *args = v4r_sprintf("attention --dataset '%s' --text features/description.npy --vision features/visual.npy " SMALL,
                             ds);
    expect_fail(dir, 3, "no validation split", args);
    assert_false(exists(dir, "bad.log.json"));
    free(args);
    free(ds);
    cleanup(dir);
}

static void test_nan_loss(void **state)
{
    (void)state;
    char *dir = make_catalog();
    char *args = v4r_sprintf(
        "attention --dataset '%s/ds' --text features/description.npy --vision features/visual.npy " SMALL " --lr 1e30", dir);
    expect_fail(dir, 3, "not finite", args);
    free(args);
    char *text = tu_read(dir, "bad.log.json"); /* the log says where it stopped */
    assert_non_null(text);
    json_t *log = json_loads(text, 0, NULL);
    assert_true(json_is_object(json_object_get(log, "stopped")));
    assert_true(json_is_false(json_object_get(log, "complete")));
    json_decref(log);
    free(text);
    /* a schedule that explodes in epoch 2 keeps epoch 1's outputs */
    char *out = NULL;
    int rc = tu_run(&out,
                    "train attention --dataset '%s/ds' --text features/description.npy --vision features/visual.npy "
                    "-o '%s/kept.npy' " SMALL " --lr-schedule exp:1e33",
                    dir, dir);
    if (rc != 3 || !strstr(out, "kept epoch 1"))
        fail_msg("exit %d: %s", rc, out);
    free(out);
    assert_true(exists(dir, "kept.npy") && exists(dir, "kept.safetensors"));
    cleanup(dir);
}

static void test_usage(void **state)
{
    (void)state;
    char *dir = make_catalog();
    char *base = v4r_sprintf("--dataset '%s/ds' --text features/description.npy --vision features/visual.npy", dir);
    char *args = v4r_sprintf("fancy %s", base);
    expect_fail(dir, 2, "attention, gating or smore", args);
    free(args);
    args = v4r_sprintf("attention --dataset '%s/ds' --text features/description.npy", dir);
    expect_fail(dir, 2, "required", args);
    free(args);
    args = v4r_sprintf("attention %s --epochs 0", base);
    expect_fail(dir, 2, "--epochs", args);
    free(args);
    args = v4r_sprintf("attention %s --lr-schedule exp", base);
    expect_fail(dir, 2, "schedule", args);
    free(args);
    args = v4r_sprintf("gating %s --objective other", base);
    expect_fail(dir, 2, "--objective", args);
    free(args);
    args = v4r_sprintf("smore %s --objective released", base);
    expect_fail(dir, 2, "--objective is for attention and gating", args);
    free(args);
    args = v4r_sprintf("smore %s --lr-schedule plateau", base);
    expect_fail(dir, 2, "plateau", args);
    free(args);
    args = v4r_sprintf("attention %s --keep middle", base);
    expect_fail(dir, 2, "--keep", args);
    free(args);
    args = v4r_sprintf("attention %s --objective released --negatives 0", base);
    expect_fail(dir, 2, "--negatives", args);
    free(args);
    char *out = NULL; /* an output folder that does not exist: refused before training */
    assert_int_equal(tu_run(&out, "train attention %s -o '%s/missing/x.npy'", base, dir), 4);
    assert_non_null(strstr(out, "does not exist"));
    free(out);
    free(base);
    assert_int_equal(tu_run(&out, "train --help"), 0);
    assert_non_null(strstr(out, "--objective"));
    free(out);
    cleanup(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outputs),   cmocka_unit_test(test_smore_outputs), cmocka_unit_test(test_bad_vectors), cmocka_unit_test(test_no_validation),
        cmocka_unit_test(test_nan_loss), cmocka_unit_test(test_usage), cmocka_unit_test(test_released_recipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* `vlm4rec eval`'s protocol presets against the released evaluation arithmetic: every metric of
 * tests/data/released-eval/expected.tsv (written by tests/reference/released_eval.py, a numpy
 * transcription of the released evaluate_all_final.py and of recommender.py + metrics.py) to 1e-6;
 * each setting the match depends on, changed alone, breaks it; the seeded user sample. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATA V4R_TEST_DATA_DIR "/released-eval"
/* vision.npy has a zero row, which only the plain-mean profile takes (cosine 0, as sklearn's) */
#define MODELS_NONZERO                                                                                             \
    "--model bert=features/bert.npy --model mean-raw=mean-raw:features/bert.npy,features/vision.npy "            \
    "--model concat-raw=concat-raw:features/bert.npy,features/vision.npy"
#define MODELS MODELS_NONZERO " --model vision=features/vision.npy"
/* the released evaluate_all_final.py on the sample its main() drew (written out by the generator) */
#define RELEASED "--protocol released --users sample-users.txt"
/* recommender.py + metrics.py: the paper preset with the plain mean and metrics.py's repeats */
#define RECOMMENDER "--protocol paper --profile mean --truth-duplicates idcg"

typedef struct {
    char cse[32], model[32], metric[32];
    double value;
} expected;

static size_t read_expected(expected *e, size_t cap)
{
    FILE *fp = fopen(DATA "/expected.tsv", "r");
    assert_non_null(fp);
    char line[256];
    size_t n = 0;
    assert_non_null(fgets(line, sizeof line, fp)); /* header */
    while (n < cap && fscanf(fp, "%31s %31s %31s %lf", e[n].cse, e[n].model, e[n].metric, &e[n].value) == 4)
        n++;
    fclose(fp);
    return n;
}

/* Runs eval of the models on the reference dataset; returns the results JSON. */
static json_t *run_models(const char *dir, const char *models, const char *args)
{
    char *out = NULL;
    int rc = tu_run(&out, "eval -q --dataset '%s' %s --bootstrap 0 %s -o '%s/r.json'", DATA, models, args, dir);
    if (rc != 0)
        fail_msg("eval %s: exit %d\n%s", args, rc, out);
    free(out);
    char *path = v4r_path_join(dir, "r.json");
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    free(path);
    assert_non_null(root);
    return root;
}

static json_t *run_eval(const char *dir, const char *args) { return run_models(dir, MODELS, args); }

/* A model's mean of a metric; NaN when the model was not evaluated. */
static double metric_of(json_t *root, const char *model, const char *metric)
{
    json_t *models = json_object_get(root, "models");
    for (size_t i = 0; i < json_array_size(models); i++) {
        json_t *m = json_array_get(models, i);
        if (!strcmp(json_string_value(json_object_get(m, "name")), model))
            return json_real_value(json_object_get(json_object_get(json_object_get(m, "metrics"), metric), "mean"));
    }
    return NAN;
}

/* The largest difference from the expected values of one case (and how many were compared). */
static double max_diff(json_t *root, const char *cse, size_t *compared)
{
    static expected e[256];
    size_t n = read_expected(e, 256);
    double worst = 0;
    *compared = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(e[i].cse, cse))
            continue;
        double got = metric_of(root, e[i].model, e[i].metric);
        if (isnan(got))
            continue;
        double d = fabs(got - e[i].value);
        if (d > worst)
            worst = d;
        ++*compared;
    }
    return worst;
}

static void expect_match(const char *dir, const char *cse, const char *args)
{
    json_t *root = run_eval(dir, args);
    size_t n;
    double d = max_diff(root, cse, &n);
    assert_int_equal(n, 36); /* 4 models x 3 metrics x 3 cutoffs */
    if (d > 1e-6)
        fail_msg("%s (%s): a metric differs by %g from the released arithmetic", cse, args, d);
    json_decref(root);
}

/* Changing one setting must move some metric well away: the match is not an accident. */
static void expect_mismatch(const char *dir, const char *cse, const char *args)
{
    json_t *root = run_models(dir, strstr(args, "normalized-mean") ? MODELS_NONZERO : MODELS, args);
    size_t n;
    double d = max_diff(root, cse, &n);
    if (d < 1e-3)
        fail_msg("%s (%s): still matches (largest difference %g); the check cannot fail", cse, args, d);
    json_decref(root);
}

static void test_released_script(void **state)
{
    char *dir = tu_tmpdir();
    expect_match(dir, "released", RELEASED);
    json_t *root = run_eval(dir, RELEASED);
    json_t *p = json_object_get(root, "protocol");
    assert_string_equal(json_string_value(json_object_get(p, "preset")), "released");
    assert_string_equal(json_string_value(json_object_get(p, "mask")), "none");
    assert_string_equal(json_string_value(json_object_get(p, "profile")), "mean");
    assert_string_equal(json_string_value(json_object_get(p, "truth_duplicates")), "keep");
    assert_int_equal(json_integer_value(json_object_get(p, "history_length")), 0);
    json_t *sample = json_object_get(p, "sample");
    char *file = tu_read(DATA, "sample-users.txt");
    size_t lines = 0;
    for (char *c = file; *c; c++)
        lines += *c == '\n';
    assert_int_equal(json_integer_value(json_object_get(sample, "size")), lines);
    assert_true(json_is_null(json_object_get(sample, "fraction"))); /* the file replaced the preset's draw */
    assert_non_null(strstr(file, json_string_value(json_array_get(json_object_get(sample, "users"), 0))));
    free(file);
    json_decref(root);
    expect_mismatch(dir, "released", RELEASED " --profile normalized-mean");
    expect_mismatch(dir, "released", RELEASED " --mask history");
    expect_mismatch(dir, "released", RELEASED " --mask profile");
    expect_mismatch(dir, "released", RELEASED " --truth-duplicates idcg");
    expect_mismatch(dir, "released", RELEASED " --history train");
    expect_mismatch(dir, "released", "--protocol released --sample-users 0"); /* every user */
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_released_recommender(void **state)
{
    char *dir = tu_tmpdir();
    expect_match(dir, "recommender", RECOMMENDER);
    /* the same, spelled out */
    expect_match(dir, "recommender",
                 "--history train --history-length 10 --truth test --mask profile --profile mean "
                 "--truth-duplicates idcg");
    expect_mismatch(dir, "recommender", RECOMMENDER " --profile normalized-mean");
    expect_mismatch(dir, "recommender", RECOMMENDER " --keep-history");
    expect_mismatch(dir, "recommender", RECOMMENDER " --truth-duplicates keep");
    expect_mismatch(dir, "recommender", RECOMMENDER " --history-length 0");
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static json_t *sample_users(const char *dir, const char *args)
{
    json_t *root = run_eval(dir, args);
    json_t *users = json_deep_copy(json_object_get(json_object_get(json_object_get(root, "protocol"), "sample"), "users"));
    json_decref(root);
    return users;
}

/* floor(fraction x users with test lines), at least 1; the same for one seed, another for another;
 * explicit options override the preset wherever they stand. */
static void test_sample(void **state)
{
    char *dir = tu_tmpdir();
    json_t *a = sample_users(dir, "--protocol released --sample-users 0.5 --seed 3");
    json_t *b = sample_users(dir, "--sample-users 0.5 --seed 3 --protocol released");
    json_t *c = sample_users(dir, "--protocol released --sample-users 0.5 --seed 4");
    json_t *one = sample_users(dir, "--protocol released"); /* 1% of 55 users: 1 */
    assert_int_equal(json_array_size(a), 27); /* 55 users have test lines */
    assert_true(json_equal(a, b));
    assert_false(json_equal(a, c));
    assert_int_equal(json_array_size(one), 1);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(one);
    json_t *root = run_models(dir, MODELS_NONZERO, "--mask profile --protocol paper --keep-history --truth-duplicates idcg");
    json_t *p = json_object_get(root, "protocol");
    assert_string_equal(json_string_value(json_object_get(p, "mask")), "none");
    assert_false(json_is_true(json_object_get(p, "mask_history")));
    assert_string_equal(json_string_value(json_object_get(p, "profile")), "normalized-mean");
    assert_string_equal(json_string_value(json_object_get(p, "truth")), "test");
    assert_true(json_is_null(json_object_get(p, "sample")));
    json_decref(root);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_bad_options(void **state)
{
    static const char *const cases[][2] = {
        {"--protocol paperish", "--protocol must be paper or released"},
        {"--mask some", "--mask must be history, profile or none"},
        {"--profile median", "--profile must be normalized-mean or mean"},
        {"--truth-duplicates twice", "--truth-duplicates must be drop, keep or idcg"},
        {"--sample-users 1.5", "--sample-users must be a fraction"},
        {"--users nobody.txt", "nobody.txt"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out = NULL;
        int rc = tu_run(&out, "eval -q --dataset '%s' --model b=features/bert.npy --truth-duplicates keep %s", DATA,
                        cases[i][0]);
        if (rc == 0 || !strstr(out, cases[i][1]))
            fail_msg("%s: exit %d, output lacks '%s':\n%s", cases[i][0], rc, cases[i][1], out);
        free(out);
    }
    /* repeated test lines: the default (a set) loads only a dataset without them; the normalized
     * mean refuses a zero row */
    char *out = NULL;
    int zrc = tu_run(&out, "eval -q --dataset '%s' --model v=features/vision.npy --truth-duplicates keep", DATA);
    if (zrc == 0 || !strstr(out, "row 77 is a zero vector"))
        fail_msg("exit %d, output lacks 'row 77 is a zero vector':\n%s", zrc, out);
    free(out);
    int rc = tu_run(&out, "eval -q --dataset '%s' --model b=features/bert.npy --truth test", DATA);
    if (rc == 0 || !strstr(out, "duplicate interaction") || !strstr(out, "--truth-duplicates"))
        fail_msg("exit %d, output lacks 'duplicate interaction' and the hint:\n%s", rc, out);
    free(out);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_released_script),
        cmocka_unit_test(test_released_recommender),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

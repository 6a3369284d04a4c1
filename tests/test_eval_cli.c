/* `vlm4rec eval` end to end: outputs and their shapes, and every bad input named with a non-zero
 * exit and no output left behind. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/io.h"

/* 6 items, 3 users; u0 and u1 have train and valid items, u2 only train. */
static char *make_dataset(void)
{
    char *dir = tu_tmpdir();
    tu_write(dir, "items.tsv", "item\ttitle\timage\na\tA\t\nb\tB\t\nc\tC\t\nd\tD\t\ne\tE\t\nf\tF\t\n");
    tu_write(dir, "users.tsv", "user\nu0\nu1\nu2\n");
    tu_write(dir, "train.tsv", "user\titem\ttimestamp\nu0\ta\t1\nu0\tb\t2\nu1\tc\t1\nu2\td\t1\n");
    tu_write(dir, "valid.tsv", "user\titem\ttimestamp\nu0\tc\t3\nu1\te\t2\n");
    tu_write(dir, "test.tsv", "user\titem\ttimestamp\nu0\tf\t4\n");
    float v[12] = {1, 0, 0.9f, 0.1f, 0.8f, 0.3f, 0, 1, 0.5f, 0.5f, -1, 0};
    char *path = v4r_path_join(dir, "v.npy");
    assert_int_equal(v4r_npy_write(path, v, 6, 2, NULL), 0);
    free(path);
    return dir;
}

static void cleanup(char *dir)
{
    tu_rmtree(dir);
    free(dir);
}

static int no_tmp_files(const char *dir)
{
    char *out = NULL;
    int rc = tu_run(&out, "help >/dev/null; ls -a '%s' | grep -c '\\.tmp\\.' || true", dir);
    (void)rc;
    int clean = atoi(out) == 0;
    free(out);
    return clean;
}

static void expect_fail(const char *dir, int code, const char *needle, const char *args)
{
    char *out = NULL;
    int rc = tu_run(&out, "eval --dataset '%s' %s -o '%s/r.json' --per-user '%s/pu.tsv'", dir, args, dir, dir);
    if (rc != code || !strstr(out, needle))
        fail_msg("exit %d (want %d), output lacks '%s':\n%s", rc, code, needle, out);
    free(out);
    char *r = tu_read(dir, "r.json"), *pu = tu_read(dir, "pu.tsv");
    assert_null(r);
    assert_null(pu);
    assert_true(no_tmp_files(dir));
}

static void test_outputs(void **state)
{
    char *dir = make_dataset(), *out = NULL;
    int rc = tu_run(&out,
                    "eval --dataset '%s' --model v=v.npy --model w=concat:v.npy,v.npy --k 1,2 -o '%s/r.json' "
                    "--per-user '%s/pu.tsv' --rankings '%s/rk.tsv' --bootstrap 50",
                    dir, dir, dir, dir);
    if (rc != 0)
        fail_msg("eval failed: %s", out);
    assert_non_null(strstr(out, "recall@1"));
    assert_non_null(strstr(out, "(baseline)"));
    free(out);
    char *path = v4r_path_join(dir, "r.json");
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    free(path);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "format")), "vlm4rec.eval/1");
    json_t *users = json_object_get(root, "users");
    assert_int_equal(json_integer_value(json_object_get(users, "evaluated")), 2);
    assert_int_equal(json_integer_value(json_object_get(users, "no_truth")), 1);
    json_t *m0 = json_array_get(json_object_get(root, "models"), 0);
    assert_string_equal(json_string_value(json_object_get(m0, "name")), "v");
    assert_int_equal(json_integer_value(json_object_get(m0, "dim")), 2);
    json_t *r1 = json_object_get(json_object_get(m0, "metrics"), "recall@1");
    assert_non_null(json_object_get(r1, "mean"));
    assert_non_null(json_object_get(r1, "std"));
    assert_non_null(json_object_get(json_object_get(m0, "metrics"), "map@2"));
    assert_true(json_is_null(json_object_get(m0, "vs_baseline")));
    json_t *m1 = json_array_get(json_object_get(root, "models"), 1);
    assert_int_equal(json_integer_value(json_object_get(m1, "dim")), 4);
    /* concat of a block with itself ranks exactly as the block: zero difference */
    json_t *cmp = json_object_get(json_object_get(m1, "vs_baseline"), "ndcg@2");
    assert_float_equal(json_real_value(json_object_get(cmp, "diff")), 0, 1e-12);
    json_decref(root);
    /* u0: profile from a,b -> c is the best unmasked item; u1: profile c -> b, then a, e (0.5,0.5)... */
    char *rk = tu_read(dir, "rk.tsv");
    assert_non_null(rk);
    assert_non_null(strstr(rk, "model\tuser\trank\titem\tscore\n"));
    assert_non_null(strstr(rk, "v\tu0\t1\tc\t"));
    free(rk);
    char *pu = tu_read(dir, "pu.tsv");
    assert_non_null(strstr(pu, "model\tuser\thistory\ttruth\trecall@1\tndcg@1\thit@1\tprecision@1\tmap@1\trecall@2"));
    assert_non_null(strstr(pu, "v\tu0\t2\t1\t1\t1\t1\t1\t1\t"));
    free(pu);
    cleanup(dir);
    (void)state;
}

static void test_bad_dataset_files(void **state)
{
    char *dir = make_dataset();
    tu_write(dir, "train.tsv", "user\titem\ttimestamp\nu0\ta\t1\nu0\tb\n");
    expect_fail(dir, 3, "train.tsv:3: 2 fields", "--model v=v.npy");
    tu_write(dir, "train.tsv", "user\titem\ttimestamp\nu0\tzz\t1\n");
    expect_fail(dir, 3, "train.tsv:2: field 'item': unknown item 'zz'", "--model v=v.npy");
    tu_write(dir, "train.tsv", "user\titem\ttimestamp\nu9\ta\t1\n");
    expect_fail(dir, 3, "unknown user 'u9'", "--model v=v.npy");
    tu_write(dir, "train.tsv", "user\titem\ttimestamp\nu0\ta\tyesterday\n");
    expect_fail(dir, 3, "field 'timestamp'", "--model v=v.npy");
    tu_write(dir, "train.tsv", "user\titem\ttimestamp\nu0\ta\t1\nu1\tc\t1\nu0\ta\t5\n");
    expect_fail(dir, 3, "train.tsv:4: duplicate interaction (user 'u0', item 'a'), first at line 2", "--model v=v.npy");
    tu_write(dir, "train.tsv", "usr\titem\n");
    expect_fail(dir, 3, "header column 1 is 'usr'", "--model v=v.npy");
    tu_write(dir, "train.tsv", "user\titem\ttimestamp\nu0\ta\t1\n");
    tu_write(dir, "valid.tsv", "user\titem\ttimestamp\n");
    expect_fail(dir, 3, "the truth split 'valid' is empty", "--model v=v.npy");
    tu_write(dir, "items.tsv", "item\ttitle\timage\na\tA\t\na\tB\t\n");
    expect_fail(dir, 3, "items.tsv:3: field 'item': 'a' repeats line 2", "--model v=v.npy");
    cleanup(dir);
    (void)state;
}

static void write_vectors(const char *dir, const char *name, const float *v, size_t rows, size_t cols)
{
    char *path = v4r_path_join(dir, name);
    assert_int_equal(v4r_npy_write(path, v, rows, cols, NULL), 0);
    free(path);
}

static void test_bad_vectors(void **state)
{
    char *dir = make_dataset();
    float v[12] = {1, 0, 0.9f, 0.1f, 0.8f, 0.3f, 0, 1, 0.5f, 0.5f, -1, 0};
    v[5] = NAN;
    write_vectors(dir, "nan.npy", v, 6, 2);
    expect_fail(dir, 3, "nan.npy: row 2, column 1: NaN", "--model v=nan.npy");
    v[5] = 0.3f;
    write_vectors(dir, "short.npy", v, 5, 2);
    expect_fail(dir, 3, "short.npy: 5 rows, but the dataset has 6 items", "--model v=short.npy");
    v[6] = v[7] = 0;
    write_vectors(dir, "zero.npy", v, 6, 2);
    expect_fail(dir, 3, "zero.npy: row 3 is a zero vector", "--model v=zero.npy");
    /* item d (row 3) is not covered: its zero vector is never used */
    tu_write(dir, "cov.txt", "a\nb\nc\ne\nf\n");
    char *out = NULL;
    assert_int_equal(tu_run(&out, "eval --dataset '%s' --model v=zero.npy --covered '%s/cov.txt'", dir, dir), 0);
    assert_non_null(strstr(out, "candidates covered (5 items)"));
    free(out);
    tu_write(dir, "cov.txt", "a\nnope\n");
    expect_fail(dir, 3, "cov.txt:2: unknown item 'nope'", "--model v=v.npy --covered cov.txt");
    /* truncated and non-float files */
    char *path = v4r_path_join(dir, "v.npy"), *data;
    size_t len;
    assert_int_equal(v4r_read_file(path, &data, &len, NULL), 0);
    free(path);
    FILE *fp = fopen(path = v4r_path_join(dir, "trunc.npy"), "wb");
    fwrite(data, 1, len - 5, fp);
    fclose(fp);
    free(path);
    expect_fail(dir, 3, "trunc.npy: truncated", "--model v=trunc.npy");
    char *hdr = data;
    while (hdr < data + len - 3 && memcmp(hdr, "<f4", 3) != 0)
        hdr++;
    assert_non_null(hdr);
    memcpy(hdr, "<i4", 3);
    fp = fopen(path = v4r_path_join(dir, "int.npy"), "wb");
    fwrite(data, 1, len, fp);
    fclose(fp);
    free(path);
    free(data);
    expect_fail(dir, 3, "int.npy: dtype '<i4' is not a little-endian float", "--model v=int.npy");
    expect_fail(dir, 4, "missing.npy: cannot open", "--model v=missing.npy");
    write_vectors(dir, "three.npy", v, 6, 3 - 1);
    float w[18] = {0};
    for (int i = 0; i < 18; i++)
        w[i] = (float)(i + 1);
    write_vectors(dir, "w3.npy", w, 6, 3);
    expect_fail(dir, 3, "naive average needs blocks of one size, got 2 and 3", "--model m=mean:v.npy,w3.npy");
    cleanup(dir);
    (void)state;
}

static void test_usage_errors(void **state)
{
    char *dir = make_dataset();
    expect_fail(dir, 2, "at least one --model", "");
    expect_fail(dir, 2, "--k: 'x' is not", "--model v=v.npy --k 5,x");
    expect_fail(dir, 2, "--model wants NAME=SPEC", "--model v.npy");
    expect_fail(dir, 2, "--truth valid cannot be used with --history train+valid",
                "--model v=v.npy --history train+valid");
    expect_fail(dir, 2, "baseline 'zz' is not one of the models", "--model v=v.npy --baseline zz");
    expect_fail(dir, 2, "model name 'v' given twice", "--model v=v.npy --model v=v.npy");
    char *out = NULL;
    assert_int_equal(tu_run(&out, "eval --help"), 0);
    assert_non_null(strstr(out, "--keep-history"));
    free(out);
    assert_int_equal(tu_run(NULL, "nonsense"), 2);
    assert_int_equal(tu_run(NULL, "help"), 0);
    cleanup(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outputs),
        cmocka_unit_test(test_bad_dataset_files),
        cmocka_unit_test(test_bad_vectors),
        cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

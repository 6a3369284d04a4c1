/* Dataset statistics on a small hand-computed dataset: text and JSON, coverage from a list and from
 * vectors, and the errors (vector rows, non-finite rows, both sources). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/data.h"
#include "vlm4rec/io.h"

/* 4 users (d has nothing), 5 items (x5 unused); train histories a=3, b=1, c=1, d=0. */
static char *make_dataset(void)
{
    char *dir = tu_tmpdir();
    tu_write(dir, "items.tsv", "item\ttitle\timage\nx1\t\t\nx2\t\t\nx3\t\t\nx4\t\t\nx5\t\t\n");
    tu_write(dir, "users.tsv", "user\na\nb\nc\nd\n");
    tu_write(dir, "train.tsv", "user\titem\ttimestamp\na\tx1\t1\na\tx2\t2\na\tx3\t3\nb\tx1\t4\nc\tx2\t5\n");
    tu_write(dir, "valid.tsv", "user\titem\ttimestamp\na\tx4\t\nb\tx2\t\n");
    tu_write(dir, "test.tsv", "user\titem\ttimestamp\na\tx1\t\nc\tx4\t\n");
    tu_write(dir, "covered.txt", "# covered items\nx1\n\nx4\nx1\n");
    float v[10] = {1, 0, 0, 0, 0, 0, 0, -2, 0, 0};
    char *p = v4r_path_join(dir, "vec.npy");
    assert_int_equal(v4r_npy_write(p, v, 5, 2, NULL), 0);
    free(p);
    return dir;
}

static char *run_stats(const v4r_dataset *ds, const v4r_stats_opts *o, int expect_rc, v4r_err *err)
{
    FILE *fp = tmpfile();
    assert_non_null(fp);
    int rc = v4r_dataset_stats(ds, o, fp, err);
    if (rc != expect_rc)
        fail_msg("stats returned %d (%s), expected %d", rc, err->msg, expect_rc);
    long len = ftell(fp);
    assert_true(len >= 0);
    rewind(fp);
    char *buf = v4r_malloc((size_t)len + 1);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    buf[len] = 0;
    fclose(fp);
    return buf;
}

static json_int_t jint(json_t *root, const char *a, const char *b)
{
    json_t *v = json_object_get(root, a);
    if (b)
        v = json_object_get(v, b);
    if (!json_is_integer(v))
        fail_msg("%s.%s is not an integer", a, b ? b : "");
    return json_integer_value(v);
}

static double jreal(json_t *root, const char *a, const char *b)
{
    json_t *v = json_object_get(root, a);
    if (b)
        v = json_object_get(v, b);
    if (!json_is_number(v))
        fail_msg("%s.%s is not a number", a, b ? b : "");
    return json_number_value(v);
}

static void check_base_json(json_t *root)
{
    assert_int_equal(jint(root, "users", NULL), 4);
    assert_int_equal(jint(root, "items", NULL), 5);
    assert_int_equal(jint(root, "interactions", "train"), 5);
    assert_int_equal(jint(root, "interactions", "valid"), 2);
    assert_int_equal(jint(root, "interactions", "test"), 2);
    assert_int_equal(jint(root, "interactions", "total"), 9);
    assert_true(fabs(jreal(root, "density", NULL) - 0.45) < 1e-9);
    assert_int_equal(jint(root, "users_without_interactions", "train"), 1);
    assert_int_equal(jint(root, "users_without_interactions", "valid"), 2);
    assert_int_equal(jint(root, "users_without_interactions", "test"), 2);
    assert_int_equal(jint(root, "users_without_interactions", "total"), 1);
    assert_int_equal(jint(root, "items_without_interactions", NULL), 1);
    assert_int_equal(jint(root, "train_history", "min"), 0);
    assert_true(jreal(root, "train_history", "median") == 1.0);
    assert_true(fabs(jreal(root, "train_history", "mean") - 1.25) < 1e-9);
    assert_int_equal(jint(root, "train_history", "max"), 3);
    assert_int_equal(jint(root, "timestamps", "train"), 5);
    assert_int_equal(jint(root, "timestamps", "valid"), 0);
    assert_int_equal(jint(root, "timestamps", "total"), 5);
    assert_string_equal(json_string_value(json_object_get(json_object_get(root, "timestamps"), "present")), "some");
}

static void check_coverage_json(json_t *root, const char *kind)
{
    json_t *c = json_object_get(root, "coverage");
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(c, "kind")), kind);
    assert_int_equal(jint(c, "items", NULL), 2);
    assert_true(fabs(jreal(c, "items_share", NULL) - 0.4) < 1e-9);
    assert_int_equal(jint(c, "interactions", "train"), 2);
    assert_int_equal(jint(c, "interactions", "valid"), 1);
    assert_int_equal(jint(c, "interactions", "test"), 2);
    assert_int_equal(jint(c, "interactions", "total"), 5);
    assert_true(fabs(jreal(c, "interactions_share", "train") - 0.4) < 1e-9);
    assert_true(fabs(jreal(c, "interactions_share", "valid") - 0.5) < 1e-9);
    assert_true(fabs(jreal(c, "interactions_share", "test") - 1.0) < 1e-9);
    assert_true(fabs(jreal(c, "interactions_share", "total") - 5.0 / 9.0) < 1e-9);
    /* a: x1 in train, x4 in valid; b's valid x2 is not covered */
    assert_int_equal(jint(c, "users_evaluated", NULL), 1);
}

/* The text after a label at the start of a line (labels are padded to one column). */
static void expect_line(const char *text, const char *label, const char *value)
{
    size_t ll = strlen(label);
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (!strncmp(line, label, ll) && line[ll] == ' ' && line[ll + 1] == ' ') {
            const char *v = line + ll;
            while (*v == ' ')
                v++;
            size_t vl = nl ? (size_t)(nl - v) : strlen(v);
            if (vl >= strlen(value) && !strncmp(v, value, strlen(value)))
                return;
            fail_msg("line '%s': value '%.*s', expected '%s'", label, (int)vl, v, value);
        }
        line = nl ? nl + 1 : NULL;
    }
    fail_msg("no line '%s' in:\n%s", label, text);
}

static void test_stats_text_and_json(void **state)
{
    char *dir = make_dataset();
    v4r_dataset ds;
    v4r_err err = {0};
    if (v4r_dataset_load(dir, &ds, &err))
        fail_msg("load: %s", err.msg);
    v4r_stats_opts o = {0};
    char *text = run_stats(&ds, &o, 0, &err);
    expect_line(text, "users", "4");
    expect_line(text, "items", "5");
    expect_line(text, "interactions", "9");
    expect_line(text, "density", "0.45");
    expect_line(text, "items never interacted with", "1");
    expect_line(text, "train history per user", "min 0, median 1, mean 1.25, max 3");
    expect_line(text, "timestamps", "some (5 of 9 interactions)");
    expect_line(text, "  interactions", "5          2          2          9");
    expect_line(text, "  users without", "1          2          2          1");
    expect_line(text, "  with timestamp", "5          0          0          5");
    assert_null(strstr(text, "covered"));
    /* the columns line up: the header's last column ends where the rows' do */
    const char *hdr = strstr(text, "per split"), *row = strstr(text, "  interactions");
    assert_int_equal(strchr(hdr, '\n') - hdr, strchr(row, '\n') - row);
    free(text);

    o.json = 1;
    char *js = run_stats(&ds, &o, 0, &err);
    json_error_t jerr;
    json_t *root = json_loads(js, 0, &jerr);
    if (!root)
        fail_msg("bad JSON (%s): %s", jerr.text, js);
    check_base_json(root);
    assert_null(json_object_get(root, "coverage"));
    json_decref(root);
    free(js);

    /* coverage from a list */
    o.json = 0;
    o.covered_path = v4r_path_join(dir, "covered.txt");
    text = run_stats(&ds, &o, 0, &err);
    expect_line(text, "covered items", "2 of 5 (40.0%)");
    expect_line(text, "  on covered items", "2          1          2          5");
    expect_line(text, "  share on covered items", "40.0%      50.0%     100.0%      55.6%");
    expect_line(text, "users evaluated on covered", "1");
    free(text);
    o.json = 1;
    js = run_stats(&ds, &o, 0, &err);
    root = json_loads(js, 0, &jerr);
    assert_non_null(root);
    check_base_json(root);
    check_coverage_json(root, "covered");
    json_decref(root);
    free(js);
    free((char *)o.covered_path);
    o.covered_path = NULL;

    /* coverage from vectors: nonzero rows */
    o.vectors_path = v4r_path_join(dir, "vec.npy");
    js = run_stats(&ds, &o, 0, &err);
    root = json_loads(js, 0, &jerr);
    assert_non_null(root);
    check_coverage_json(root, "vectors");
    json_decref(root);
    free(js);
    free((char *)o.vectors_path);
    o.vectors_path = NULL;

    v4r_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_stats_errors(void **state)
{
    char *dir = make_dataset();
    v4r_dataset ds;
    v4r_err err = {0};
    assert_int_equal(v4r_dataset_load(dir, &ds, &err), 0);
    v4r_stats_opts o = {0};
    char *p = v4r_path_join(dir, "bad.npy");
    float v[10] = {1, 0, 0, 0, 0, NAN, 0, 0, 0, 0};
    assert_int_equal(v4r_npy_write(p, v, 4, 2, NULL), 0);
    o.vectors_path = p;
    free(run_stats(&ds, &o, V4R_EINPUT, &err));
    assert_non_null(strstr(err.msg, "bad.npy"));
    assert_non_null(strstr(err.msg, "4 rows"));
    assert_int_equal(v4r_npy_write(p, v, 5, 2, NULL), 0);
    free(run_stats(&ds, &o, V4R_EINPUT, &err));
    assert_non_null(strstr(err.msg, "bad.npy: row 2 (item 'x3')"));
    v[5] = INFINITY;
    assert_int_equal(v4r_npy_write(p, v, 5, 2, NULL), 0);
    free(run_stats(&ds, &o, V4R_EINPUT, &err));
    assert_non_null(strstr(err.msg, "row 2"));
    tu_write(dir, "cov.txt", "x1\nzz\n");
    o.vectors_path = NULL;
    char *cov = v4r_path_join(dir, "cov.txt");
    o.covered_path = cov;
    free(run_stats(&ds, &o, V4R_EINPUT, &err));
    assert_non_null(strstr(err.msg, "cov.txt:2:"));
    v4r_dataset_free(&ds);

    /* through the CLI */
    char *out;
    assert_int_equal(tu_run(&out, "dataset stats '%s' --json", dir), 0);
    json_error_t jerr;
    json_t *root = json_loads(out, 0, &jerr);
    if (!root)
        fail_msg("bad JSON (%s): %s", jerr.text, out);
    check_base_json(root);
    json_decref(root);
    free(out);
    assert_int_equal(tu_run(&out, "dataset stats '%s' --vectors '%s'", dir, p), 3);
    assert_non_null(strstr(out, "bad.npy"));
    free(out);
    assert_int_equal(tu_run(&out, "dataset stats '%s' --vectors '%s' --covered '%s'", dir, p, cov), 2);
    free(out);
    free(cov);
    free(p);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_text_and_json),
        cmocka_unit_test(test_stats_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* base: the string map and arena, random streams, strict number parsing, atomic output files. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_strmap_and_arena(void **state)
{
    v4r_strmap m;
    v4r_strmap_init(&m, 4);
    char key[32];
    for (int i = 0; i < 20000; i++) { /* many rehashes */
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(v4r_strmap_put(&m, key, i), -1);
    }
    assert_int_equal(v4r_strmap_put(&m, "k7", 99), 7); /* present: the old value, no insert */
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(v4r_strmap_get(&m, key), i);
    }
    assert_int_equal(v4r_strmap_get(&m, "absent"), -1);
    assert_int_equal(m.count, 20000);
    v4r_strmap_free(&m);
    v4r_arena a = {0};
    char *big = v4r_malloc(200000);
    memset(big, 'x', 199999);
    big[199999] = 0;
    char *s1 = v4r_arena_strdup(&a, "short"), *s2 = v4r_arena_strdup(&a, big), *s3 = v4r_arena_strdup(&a, "");
    assert_string_equal(s1, "short");
    assert_string_equal(s2, big);
    assert_string_equal(s3, "");
    free(big);
    v4r_arena_free(&a);
    (void)state;
}

static void test_rng_and_parsing(void **state)
{
    v4r_rng a, b;
    v4r_rng_seed(&a, 3);
    v4r_rng_seed(&b, 3);
    for (int i = 0; i < 100; i++)
        assert_true(v4r_rng_next(&a) == v4r_rng_next(&b));
    for (int i = 0; i < 1000; i++) {
        assert_true(v4r_rng_below(&a, 7) < 7);
        double u = v4r_rng_uniform(&a);
        assert_true(u >= 0 && u < 1);
    }
    int64_t v;
    double d;
    assert_int_equal(v4r_parse_i64("-42", &v), 0);
    assert_int_equal(v, -42);
    assert_int_equal(v4r_parse_i64("4x", &v), -1);
    assert_int_equal(v4r_parse_i64("", &v), -1);
    assert_int_equal(v4r_parse_i64("99999999999999999999", &v), -1);
    assert_int_equal(v4r_parse_f64("0.25", &d), 0);
    assert_true(d == 0.25);
    assert_int_equal(v4r_parse_f64("0.25 ", &d), -1);
    (void)state;
}

static void test_atomic_output(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "sub/dir/out.txt");
    v4r_err err = {0};
    char *sub = v4r_path_join(dir, "sub/dir");
    assert_int_equal(v4r_mkdir_p(sub, &err), 0);
    v4r_outfile out;
    assert_int_equal(v4r_out_open(&out, path, &err), 0);
    fputs("partial", out.fp);
    v4r_out_abort(&out); /* nothing appears */
    assert_false(v4r_file_exists(path));
    assert_int_equal(v4r_out_open(&out, path, &err), 0);
    fputs("done", out.fp);
    assert_false(v4r_file_exists(path)); /* not before the commit */
    assert_int_equal(v4r_out_commit(&out, &err), 0);
    char *text = tu_read(sub, "out.txt");
    assert_string_equal(text, "done");
    free(text);
    char *none = v4r_path_join(dir, "missing/x.txt");
    assert_int_equal(v4r_out_open(&out, none, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "missing/x.txt: cannot create"));
    free(none);
    free(sub);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strmap_and_arena),
        cmocka_unit_test(test_rng_and_parsing),
        cmocka_unit_test(test_atomic_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The TF-IDF fallback encoder: the formula on a hand-worked case, case folding, empty texts, the
 * labelled `encode --tfidf` output, and descriptions ahead of titles on the synthetic catalog. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/io.h"
#include "vlm4rec/text.h"

enum { DIM = 1 << 16 };

static size_t nonzero(const float *row, float *vals)
{
    size_t n = 0;
    for (size_t d = 0; d < DIM; d++)
        if (row[d] != 0)
            vals[n++] = row[d];
    return n;
}

static void test_formula(void **state)
{
    const char *texts[] = {"a b B", "A, c!", "...", "\xc3\xa9t\xc3\xa9 a"};
    float *out = v4r_malloc(4 * DIM * sizeof *out), v[8];
    assert_int_equal(v4r_tfidf_encode(texts, 4, DIM, out, NULL), 0);
    /* text 0: a (tf 1, df 3), b (tf 2, df 1); n = 4 */
    assert_int_equal(nonzero(out, v), 2);
    double wa = log(5.0 / 4.0) + 1, wb = (1 + log(2.0)) * (log(5.0 / 2.0) + 1), norm = sqrt(wa * wa + wb * wb);
    double lo = fmin(v[0], v[1]), hi = fmax(v[0], v[1]);
    assert_true(fabs(lo - wa / norm) < 1e-6 && fabs(hi - wb / norm) < 1e-6);
    assert_int_equal(nonzero(out + 2 * DIM, v), 0); /* no word: zero row */
    assert_int_equal(nonzero(out + 3 * DIM, v), 2); /* non-ASCII bytes make a word */
    /* same bucket for "a" and "A": text 1 shares exactly one bucket with text 0 */
    size_t shared = 0;
    for (size_t d = 0; d < DIM; d++)
        shared += out[d] != 0 && out[DIM + d] != 0;
    assert_int_equal(shared, 1);
    free(out);
}

static void test_cli(void **state)
{
    char *dir = tu_tmpdir(), *out = NULL;
    int rc = tu_run(&out, "dataset synth -o '%s/cat' --users 400 --items 700 --interactions 3200 --seed 2", dir);
    assert_int_equal(rc, 0);
    free(out);
    rc = tu_run(&out, "encode --tfidf --dim 512 --dataset '%s/cat' --input '%s/cat/descriptions.tsv' -o '%s/d.npy' "
                      "&& VLM4REC_LOG=info '%s' encode --tfidf --dataset '%s/cat' --titles --dim 512 -o '%s/t.npy'",
                dir, dir, dir, V4R_BINARY, dir, dir);
    if (rc)
        fail_msg("%s", out);
    assert_non_null(strstr(out, V4R_TFIDF_NAME));
    free(out);
    v4r_matrix m = {0};
    char *p = v4r_path_join(dir, "d.npy");
    assert_int_equal(v4r_npy_read(p, &m, NULL), 0);
    assert_int_equal(m.rows, 700);
    assert_int_equal(m.cols, 512);
    v4r_matrix_free(&m);
    free(p);
    rc = tu_run(&out, "eval --dataset '%s/cat' --model title='%s/t.npy' --model desc='%s/d.npy' --bootstrap 0 -q -o '%s/r.json' "
                      "&& grep -A3 '\"recall@10\"' '%s/r.json' | grep mean",
                dir, dir, dir, dir, dir);
    assert_int_equal(rc, 0);
    double title = 0, desc = 0;
    char *second = strstr(out, "mean");
    assert_non_null(second);
    second = strstr(second + 1, "mean");
    assert_non_null(second);
    title = strtod(strchr(out, ':') + 1, NULL);
    desc = strtod(strchr(second, ':') + 1, NULL);
    if (!(desc > title * 1.1))
        fail_msg("descriptions %.4f should beat titles %.4f", desc, title);
    free(out);
    assert_int_equal(tu_run(&out, "encode --tfidf --model x --dataset '%s/cat' --titles -o '%s/x.npy'", dir, dir), 2);
    free(out);
    assert_int_equal(tu_run(&out, "encode --tfidf --dim 0 --dataset '%s/cat' --titles -o '%s/x.npy'", dir, dir), 2);
    free(out);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_formula), cmocka_unit_test(test_cli)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

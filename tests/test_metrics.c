/* Metrics by hand: Recall, NDCG, Hit, Precision, MAP with ties in rank, |truth| > K, empty truth;
 * the paired bootstrap. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "vlm4rec/rec.h"

#define M(k, metric) out[(k) * V4R_NMETRICS + (metric)]

static void test_hand_computed(void **state)
{
    /* ranked: 7 3 9 1 4; truth {3, 4, 8} */
    int32_t ranked[5] = {7, 3, 9, 1, 4}, truth[3] = {3, 4, 8};
    size_t ks[2] = {2, 5};
    double out[2 * V4R_NMETRICS];
    v4r_metrics_user(ranked, 5, truth, 3, ks, 2, out);
    /* K=2: one hit at rank 2 */
    assert_float_equal(M(0, V4R_M_RECALL), 1.0 / 3, 1e-12);
    assert_float_equal(M(0, V4R_M_NDCG), (1 / log2(3)) / (1 + 1 / log2(3)), 1e-12);
    assert_float_equal(M(0, V4R_M_HIT), 1, 0);
    assert_float_equal(M(0, V4R_M_PRECISION), 0.5, 1e-12);
    assert_float_equal(M(0, V4R_M_MAP), (1.0 / 2) / 2, 1e-12); /* min(|T|,K) = 2 */
    /* K=5: hits at ranks 2 and 5 */
    double dcg = 1 / log2(3) + 1 / log2(6), idcg = 1 + 1 / log2(3) + 1 / log2(4);
    assert_float_equal(M(1, V4R_M_RECALL), 2.0 / 3, 1e-12);
    assert_float_equal(M(1, V4R_M_NDCG), dcg / idcg, 1e-12);
    assert_float_equal(M(1, V4R_M_PRECISION), 2.0 / 5, 1e-12);
    assert_float_equal(M(1, V4R_M_MAP), (1.0 / 2 + 2.0 / 5) / 3, 1e-12);
    (void)state;
}

static void test_truth_larger_than_k(void **state)
{
    int32_t ranked[2] = {1, 2}, truth[4] = {1, 2, 3, 4};
    size_t ks[1] = {2};
    double out[V4R_NMETRICS];
    v4r_metrics_user(ranked, 2, truth, 4, ks, 1, out);
    assert_float_equal(M(0, V4R_M_RECALL), 0.5, 1e-12); /* recall is over |truth| */
    assert_float_equal(M(0, V4R_M_NDCG), 1.0, 1e-12);   /* IDCG over min(|truth|, K) = 2 */
    assert_float_equal(M(0, V4R_M_MAP), 1.0, 1e-12);
    assert_float_equal(M(0, V4R_M_PRECISION), 1.0, 1e-12);
    (void)state;
}

static void test_empty_truth_and_short_lists(void **state)
{
    int32_t ranked[3] = {5, -1, -1}, truth[1] = {5};
    size_t ks[2] = {1, 3};
    double out[2 * V4R_NMETRICS];
    v4r_metrics_user(ranked, 3, truth, 0, ks, 2, out);
    for (size_t i = 0; i < 2 * V4R_NMETRICS; i++)
        assert_true(out[i] == 0);
    v4r_metrics_user(ranked, 3, truth, 1, ks, 2, out);
    assert_float_equal(M(1, V4R_M_RECALL), 1.0, 0);
    assert_float_equal(M(1, V4R_M_NDCG), 1.0, 1e-12);
    assert_float_equal(M(1, V4R_M_PRECISION), 1.0 / 3, 1e-12);
    (void)state;
}

/* Truth {2, 5} from three lines (5 twice), ranked 5, 9, 2: the three duplicates modes by hand. */
static void test_truth_line_counts(void **state)
{
    const int32_t ranked[3] = {5, 9, 2}, truth[2] = {2, 5};
    const size_t ks[1] = {2};
    double out[V4R_NMETRICS];
    double dcg = 1.0, idcg2 = 1.0 + 1.0 / log2(3.0);
    v4r_metrics_user_counts(ranked, 3, truth, 2, 2, 2, ks, 1, out); /* drop */
    assert_float_equal(out[V4R_M_RECALL], 0.5, 1e-12);
    assert_float_equal(out[V4R_M_NDCG], dcg / idcg2, 1e-12);
    v4r_metrics_user_counts(ranked, 3, truth, 2, 3, 3, ks, 1, out); /* keep: 1 hit of 3 lines */
    assert_float_equal(out[V4R_M_RECALL], 1.0 / 3.0, 1e-12);
    assert_float_equal(out[V4R_M_NDCG], dcg / idcg2, 1e-12); /* min(K=2, 3) = 2 ideal positions */
    assert_float_equal(out[V4R_M_HIT], 1.0, 0);
    const size_t k3[1] = {3};
    v4r_metrics_user_counts(ranked, 3, truth, 2, 2, 3, k3, 1, out); /* idcg: K = 3 shows the difference */
    double idcg3 = idcg2 + 0.5, dcg3 = 1.0 + 0.5;
    assert_float_equal(out[V4R_M_RECALL], 1.0, 1e-12);
    assert_float_equal(out[V4R_M_NDCG], dcg3 / idcg3, 1e-12);
    assert_float_equal(out[V4R_M_MAP], (1.0 + 2.0 / 3.0) / 3.0, 1e-12);
    (void)state;
}

static void test_no_hit(void **state)
{
    int32_t ranked[3] = {1, 2, 3}, truth[2] = {7, 9};
    size_t ks[1] = {3};
    double out[V4R_NMETRICS];
    v4r_metrics_user(ranked, 3, truth, 2, ks, 1, out);
    for (int m = 0; m < V4R_NMETRICS; m++)
        assert_true(out[m] == 0);
    (void)state;
}

static void test_bootstrap(void **state)
{
    enum { N = 400 };
    double a[N], b[N];
    for (int i = 0; i < N; i++) {
        a[i] = (i % 4 == 0) ? 1 : 0; /* mean 0.25 */
        b[i] = (i % 10 == 0) ? 1 : 0; /* mean 0.1 */
    }
    v4r_paired p1, p2, p0;
    v4r_bootstrap_paired(a, b, N, 1, 1, 2000, 0.95, 7, &p1);
    v4r_bootstrap_paired(a, b, N, 1, 1, 2000, 0.95, 7, &p2);
    assert_float_equal(p1.diff, 0.15, 1e-12);
    assert_true(p1.low < 0.15 && p1.high > 0.15);
    assert_true(p1.low > 0.05 && p1.high < 0.25); /* the difference is clearly positive */
    assert_true(p1.low == p2.low && p1.high == p2.high); /* seeded */
    v4r_bootstrap_paired(a, a, N, 1, 1, 500, 0.95, 7, &p0);
    assert_true(p0.diff == 0 && p0.low == 0 && p0.high == 0);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed), cmocka_unit_test(test_truth_larger_than_k),
        cmocka_unit_test(test_empty_truth_and_short_lists), cmocka_unit_test(test_no_hit),
        cmocka_unit_test(test_bootstrap), cmocka_unit_test(test_truth_line_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

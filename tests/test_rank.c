/* Protocols and ranking on tiny in-memory datasets: chronology, last L, masking, covered subsets,
 * tie order, agreement with a brute-force ranking, and the metric properties the method relies on. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/rec.h"

static void add_items(v4r_dataset *ds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "i%zu", i);
        v4r_dataset_add_item(ds, id, "", "", NULL);
    }
}

static void add_users(v4r_dataset *ds, size_t n)
{
    for (size_t u = 0; u < n; u++) {
        char id[32];
        snprintf(id, sizeof id, "u%zu", u);
        v4r_dataset_add_user(ds, id, NULL);
    }
}

static void push(v4r_dataset *ds, int split, int32_t u, int32_t i, int64_t ts, int has_ts)
{
    v4r_split_push(&ds->split[split], u, i, ts, has_ts, (long)ds->split[split].n + 2);
}

static void test_history_chronology(void **state)
{
    v4r_dataset ds;
    v4r_dataset_init(&ds);
    add_items(&ds, 8);
    add_users(&ds, 3);
    /* user 0: file order 5,1,2 with timestamps 30,10,20 -> chronological 1,2,5 */
    push(&ds, V4R_TRAIN, 0, 5, 30, 1);
    push(&ds, V4R_TRAIN, 0, 1, 10, 1);
    push(&ds, V4R_TRAIN, 0, 2, 20, 1);
    /* user 1: no timestamps -> file order; tie handled by file order */
    push(&ds, V4R_TRAIN, 1, 3, 0, 0);
    push(&ds, V4R_TRAIN, 1, 4, 0, 0);
    push(&ds, V4R_VALID, 0, 6, 40, 1);
    push(&ds, V4R_VALID, 0, 6 + 1, 41, 1);
    push(&ds, V4R_VALID, 1, 0, 0, 0);
    /* user 2 has only a truth item */
    push(&ds, V4R_VALID, 2, 0, 0, 0);
    push(&ds, V4R_TEST, 0, 0, 50, 1);
    v4r_protocol p;
    v4r_protocol_defaults(&p);
    v4r_eval_set es;
    v4r_err err = {0};
    assert_int_equal(v4r_eval_set_build(&ds, &p, &es, &err), 0);
    assert_int_equal(es.n_eval, 2);
    assert_int_equal(es.no_history, 1);
    assert_int_equal(es.no_truth, 0);
    assert_int_equal(es.users[0], 0);
    int32_t want0[3] = {1, 2, 5};
    assert_int_equal(es.hist_off[1], 3);
    assert_memory_equal(es.hist, want0, sizeof want0);
    assert_int_equal(es.hist[3], 3);
    assert_int_equal(es.hist[4], 4);
    int32_t truth0[2] = {6, 7};
    assert_memory_equal(es.truth, truth0, sizeof truth0);
    int32_t mask0[3] = {1, 2, 5}; /* sorted */
    assert_memory_equal(es.mask, mask0, sizeof mask0);
    v4r_eval_set_free(&es);
    /* train+valid history, test truth: only user 0 has a test item */
    p.history_splits = 1u << V4R_TRAIN | 1u << V4R_VALID;
    p.truth_split = V4R_TEST;
    assert_int_equal(v4r_eval_set_build(&ds, &p, &es, &err), 0);
    assert_int_equal(es.n_eval, 1);
    assert_int_equal(es.no_truth, 2); /* users 1 and 2 have a history but no test item */
    int32_t want_tv[5] = {1, 2, 5, 6, 7};
    assert_memory_equal(es.hist, want_tv, sizeof want_tv);
    v4r_eval_set_free(&es);
    /* truth inside the history: refused */
    p.truth_split = V4R_VALID;
    assert_int_equal(v4r_eval_set_build(&ds, &p, &es, &err), V4R_EUSAGE);
    v4r_dataset_free(&ds);
    (void)state;
}

static void test_covered_subset(void **state)
{
    v4r_dataset ds;
    v4r_dataset_init(&ds);
    add_items(&ds, 6);
    add_users(&ds, 3);
    uint8_t cov[6] = {1, 0, 1, 0, 1, 1};
    push(&ds, V4R_TRAIN, 0, 0, 1, 1);
    push(&ds, V4R_TRAIN, 0, 1, 2, 1);
    push(&ds, V4R_VALID, 0, 2, 3, 1);
    push(&ds, V4R_VALID, 0, 3, 3, 1);
    push(&ds, V4R_TRAIN, 1, 1, 1, 1); /* history not covered */
    push(&ds, V4R_VALID, 1, 2, 2, 1);
    push(&ds, V4R_TRAIN, 2, 4, 1, 1);
    push(&ds, V4R_VALID, 2, 3, 2, 1); /* truth not covered */
    v4r_protocol p;
    v4r_protocol_defaults(&p);
    p.covered = cov;
    v4r_eval_set es;
    v4r_err err = {0};
    assert_int_equal(v4r_eval_set_build(&ds, &p, &es, &err), 0);
    assert_int_equal(es.n_eval, 1);
    assert_int_equal(es.no_history, 1);
    assert_int_equal(es.no_truth, 1);
    assert_int_equal(es.hist_off[1], 1); /* item 1 dropped from the history */
    assert_int_equal(es.hist[0], 0);
    assert_int_equal(es.truth_off[1], 1); /* item 3 dropped from the truth */
    assert_int_equal(es.truth[0], 2);
    assert_int_equal(es.n_candidates, 4);
    int32_t cands[4] = {0, 2, 4, 5};
    assert_memory_equal(es.candidates, cands, sizeof cands);
    v4r_eval_set_free(&es);
    v4r_dataset_free(&ds);
    (void)state;
}

/* Two users over 6 items in 2-D; checks tie order, masking, keep-history and the last-L window. */
static void test_rank_ties_masks_window(void **state)
{
    v4r_dataset ds;
    v4r_dataset_init(&ds);
    add_items(&ds, 6);
    add_users(&ds, 1);
    float vec[12] = {1, 0, /* 0 */ 1, 0, /* 1: ties with 0 */ 0, 1, /* 2 */ 1, 0, /* 3: ties */
                     0.6f, 0.8f, /* 4 */ -1, 0 /* 5 */};
    v4r_matrix items = {vec, 6, 2};
    push(&ds, V4R_TRAIN, 0, 2, 1, 1);
    push(&ds, V4R_TRAIN, 0, 1, 2, 1);
    push(&ds, V4R_VALID, 0, 3, 3, 1);
    v4r_protocol p;
    v4r_protocol_defaults(&p);
    p.history_length = 1; /* profile = item 1 = (1, 0) */
    v4r_eval_set es;
    v4r_err err = {0};
    assert_int_equal(v4r_eval_set_build(&ds, &p, &es, &err), 0);
    int32_t top[6];
    float sc[6];
    assert_int_equal(v4r_rank(&es, &p, &items, 6, top, sc, &err), 0);
    /* 1 and 2 masked; ties 0 and 3 at score 1 in index order; then 4 (0.6), 5 (-1), then padding */
    int32_t want[6] = {0, 3, 4, 5, -1, -1};
    assert_memory_equal(top, want, sizeof want);
    assert_float_equal(sc[0], 1, 1e-6);
    assert_float_equal(sc[2], 0.6, 1e-6);
    p.mask = V4R_MASK_NONE;
    v4r_eval_set_free(&es);
    assert_int_equal(v4r_eval_set_build(&ds, &p, &es, &err), 0);
    assert_int_equal(v4r_rank(&es, &p, &items, 6, top, sc, &err), 0);
    int32_t want_keep[6] = {0, 1, 3, 4, 2, 5};
    assert_memory_equal(top, want_keep, sizeof want_keep);
    /* whole history: profile = normalize((0,1)+(1,0)); item 4 (0.6,0.8) is now first */
    p.history_length = 0;
    v4r_eval_set_free(&es);
    assert_int_equal(v4r_eval_set_build(&ds, &p, &es, &err), 0);
    assert_int_equal(v4r_rank(&es, &p, &items, 2, top, sc, &err), 0);
    assert_int_equal(top[0], 4);
    assert_float_equal(sc[0], (0.6 + 0.8) / sqrt(2), 1e-6);
    v4r_eval_set_free(&es);
    v4r_dataset_free(&ds);
    (void)state;
}

/* Random data: the BLAS/heap ranking equals a brute-force double-precision ranking. */
static void test_rank_matches_brute_force(void **state)
{
    enum { NI = 3000, NU = 700, D = 24, K = 20 };
    v4r_dataset ds;
    v4r_dataset_init(&ds);
    add_items(&ds, NI);
    add_users(&ds, NU);
    v4r_rng rng;
    v4r_rng_seed(&rng, 42);
    for (int u = 0; u < NU; u++) {
        int nh = 1 + (int)v4r_rng_below(&rng, 15);
        for (int h = 0; h < nh; h++)
            push(&ds, V4R_TRAIN, u, (int32_t)v4r_rng_below(&rng, NI), (int64_t)v4r_rng_below(&rng, 1000), 1);
        push(&ds, V4R_VALID, u, (int32_t)v4r_rng_below(&rng, NI), 2000, 1);
    }
    v4r_matrix items = {v4r_malloc(sizeof(float) * NI * D), NI, D};
    for (size_t i = 0; i < (size_t)NI * D; i++)
        items.data[i] = (float)v4r_rng_normal(&rng);
    v4r_err err = {0};
    assert_int_equal(v4r_repr_normalize(&items, NULL, "random", &err), 0);
    v4r_protocol p;
    v4r_protocol_defaults(&p);
    v4r_eval_set es;
    assert_int_equal(v4r_eval_set_build(&ds, &p, &es, &err), 0);
    int32_t *top = v4r_malloc(sizeof *top * es.n_eval * K);
    float *sc = v4r_malloc(sizeof *sc * es.n_eval * K);
    assert_int_equal(v4r_rank(&es, &p, &items, K, top, sc, &err), 0);
    double *scores = v4r_malloc(sizeof *scores * NI);
    float prof[D];
    for (size_t u = 0; u < es.n_eval; u++) {
        v4r_profile(es.hist + es.hist_off[u], es.hist_off[u + 1] - es.hist_off[u], 10, &items, prof);
        for (int i = 0; i < NI; i++) {
            double s = 0;
            for (int c = 0; c < D; c++)
                s += (double)prof[c] * items.data[(size_t)i * D + c];
            scores[i] = s;
        }
        for (size_t m = es.mask_off[u]; m < es.mask_off[u + 1]; m++)
            scores[es.mask[m]] = -INFINITY;
        for (int r = 0; r < K; r++) { /* selection: the r-th best of the brute force */
            int best = -1;
            for (int i = 0; i < NI; i++)
                if (scores[i] > -INFINITY && (best < 0 || scores[i] > scores[best]))
                    best = i;
            int32_t got = top[u * K + (size_t)r];
            assert_true(got >= 0);
            assert_float_equal(sc[u * K + (size_t)r], scores[best], 1e-5);
            if (got != best) /* only a near-tie may swap */
                assert_float_equal(scores[got], scores[best], 1e-5);
            scores[got] = -INFINITY;
        }
    }
    free(scores);
    free(top);
    free(sc);
    free(items.data);
    v4r_eval_set_free(&es);
    v4r_dataset_free(&ds);
    (void)state;
}

/* A representation that encodes the truth exactly: each user's truth item has the same vector as
 * its history item, every other pair is orthogonal. Recall@1 must be 1. */
static void test_truth_model_scores_recall_one(void **state)
{
    enum { NU = 40 };
    v4r_dataset ds;
    v4r_dataset_init(&ds);
    add_items(&ds, 2 * NU);
    add_users(&ds, NU);
    v4r_matrix items = {v4r_calloc(2 * NU * NU, sizeof(float)), 2 * NU, NU};
    for (int u = 0; u < NU; u++) {
        items.data[(size_t)(2 * u) * NU + (size_t)u] = 1;
        items.data[(size_t)(2 * u + 1) * NU + (size_t)u] = 1;
        push(&ds, V4R_TRAIN, u, 2 * u, 1, 1);
        push(&ds, V4R_VALID, u, 2 * u + 1, 2, 1);
    }
    v4r_eval_opts o;
    v4r_eval_opts_defaults(&o);
    o.ks[0] = 1;
    o.nk = 1;
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "truth.npy");
    v4r_err err = {0};
    assert_int_equal(v4r_npy_write(path, items.data, items.rows, items.cols, &err), 0);
    v4r_model_spec spec = {"truth", path};
    v4r_eval_result res;
    assert_int_equal(v4r_evaluate(&ds, &spec, 1, &o, &res, &err), 0);
    assert_int_equal(res.set.n_eval, NU);
    assert_float_equal(res.models[0].mean[V4R_M_RECALL], 1.0, 0);
    assert_float_equal(res.models[0].mean[V4R_M_NDCG], 1.0, 1e-12);
    assert_float_equal(res.models[0].std[V4R_M_RECALL], 0.0, 0);
    v4r_eval_result_free(&res);
    free(items.data);
    free(path);
    tu_rmtree(dir);
    free(dir);
    v4r_dataset_free(&ds);
    (void)state;
}

/* Relabelling items (a permutation of the catalog and of the vector rows) leaves every metric
 * unchanged. */
static void test_relabelling_invariance(void **state)
{
    enum { NI = 500, NU = 120, D = 16 };
    v4r_rng rng;
    v4r_rng_seed(&rng, 9);
    int32_t perm[NI];
    for (int i = 0; i < NI; i++)
        perm[i] = i;
    for (int i = NI - 1; i > 0; i--) {
        int j = (int)v4r_rng_below(&rng, (uint64_t)i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    float *vec = v4r_malloc(sizeof(float) * NI * D), *pvec = v4r_malloc(sizeof(float) * NI * D);
    for (size_t i = 0; i < (size_t)NI * D; i++)
        vec[i] = (float)v4r_rng_normal(&rng);
    for (int i = 0; i < NI; i++) /* new index perm[i] holds old item i */
        memcpy(pvec + (size_t)perm[i] * D, vec + (size_t)i * D, sizeof(float) * D);
    v4r_dataset a, b;
    v4r_dataset_init(&a);
    v4r_dataset_init(&b);
    add_items(&a, NI);
    add_items(&b, NI);
    add_users(&a, NU);
    add_users(&b, NU);
    for (int u = 0; u < NU; u++)
        for (int h = 0; h < 8; h++) {
            int32_t it = (int32_t)v4r_rng_below(&rng, NI);
            int split = h < 5 ? V4R_TRAIN : V4R_VALID;
            push(&a, split, u, it, h, 1);
            push(&b, split, u, perm[it], h, 1);
        }
    char *dir = tu_tmpdir(), *pa = v4r_path_join(dir, "a.npy"), *pb = v4r_path_join(dir, "b.npy");
    v4r_err err = {0};
    assert_int_equal(v4r_npy_write(pa, vec, NI, D, &err), 0);
    assert_int_equal(v4r_npy_write(pb, pvec, NI, D, &err), 0);
    v4r_eval_opts o;
    v4r_eval_opts_defaults(&o);
    v4r_model_spec sa = {"m", pa}, sb = {"m", pb};
    v4r_eval_result ra, rb;
    assert_int_equal(v4r_evaluate(&a, &sa, 1, &o, &ra, &err), 0);
    assert_int_equal(v4r_evaluate(&b, &sb, 1, &o, &rb, &err), 0);
    assert_true(ra.models[0].mean[V4R_M_RECALL + V4R_NMETRICS * 2] > 0); /* something is hit */
    for (size_t c = 0; c < o.nk * V4R_NMETRICS; c++)
        assert_float_equal(ra.models[0].mean[c], rb.models[0].mean[c], 1e-12);
    v4r_eval_result_free(&ra);
    v4r_eval_result_free(&rb);
    v4r_dataset_free(&a);
    v4r_dataset_free(&b);
    free(vec);
    free(pvec);
    free(pa);
    free(pb);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_history_chronology),       cmocka_unit_test(test_covered_subset),
        cmocka_unit_test(test_rank_ties_masks_window),   cmocka_unit_test(test_rank_matches_brute_force),
        cmocka_unit_test(test_truth_model_scores_recall_one), cmocka_unit_test(test_relabelling_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

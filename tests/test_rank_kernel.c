/* The AVX-512 ranking kernel against the BLAS path, the caller's matrix restored, VLM4REC_KERNEL. */

/* Odd sizes, masks, candidate subsets, exact ties from duplicated vectors, whole histories that
 * overflow the kernel's row staging, and thread-count independence. */
#include "testutil.h"
#include "vlm4rec/kernels.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/rec/rank_internal.h"
#include "vlm4rec/rec.h"

static int have_avx512(void)
{
    if (v4r_cpu_has_avx512())
        return 1;
    printf("note: this CPU lacks AVX-512 (F, VL, BW, DQ); the kernel comparison is skipped\n");
    return 0;
}

typedef struct {
    size_t ni, nu, d, kmax, history_length;
    int mask, subset; /* mask: V4R_MASK_* */
    uint64_t seed;
    size_t hist_max; /* histories of 1..hist_max items (0: 14) */
    int profile;     /* V4R_PROFILE_*: the mean profile weights rows by the fixture's norms */
} config;

/* A random catalog and histories; every 7th item (from 7 on) repeats an earlier item's vector, and
 * user u % 5 == 0 has a one-item history whose vector has duplicates (its top two tie). */
typedef struct {
    v4r_dataset ds;
    v4r_matrix items;
    float *norms; /* random weights standing for the rows' norms (the mean profile) */
    uint8_t *covered;
} fixture;

static void fixture_build(fixture *f, const config *c)
{
    v4r_rng rng;
    v4r_rng_seed(&rng, c->seed);
    v4r_dataset_init(&f->ds);
    for (size_t i = 0; i < c->ni; i++) {
        char id[24];
        snprintf(id, sizeof id, "i%zu", i);
        v4r_dataset_add_item(&f->ds, id, "", "", NULL);
    }
    for (size_t u = 0; u < c->nu; u++) {
        char id[24];
        snprintf(id, sizeof id, "u%zu", u);
        v4r_dataset_add_user(&f->ds, id, NULL);
    }
    f->items = (v4r_matrix){v4r_malloc(sizeof(float) * c->ni * c->d), c->ni, c->d};
    for (size_t i = 0; i < c->ni * c->d; i++)
        f->items.data[i] = (float)v4r_rng_normal(&rng);
    for (size_t i = 7; i < c->ni; i += 7) /* duplicates: item i repeats item i / 7 */
        memcpy(f->items.data + i * c->d, f->items.data + i / 7 * c->d, sizeof(float) * c->d);
    v4r_err err = {0};
    assert_int_equal(v4r_repr_normalize(&f->items, NULL, "random", &err), 0);
    f->norms = v4r_malloc(c->ni * sizeof *f->norms);
    for (size_t i = 0; i < c->ni; i++)
        f->norms[i] = (float)(0.25 + 4 * v4r_rng_uniform(&rng));
    for (size_t u = 0; u < c->nu; u++) {
        size_t nh = u % 5 == 0 ? 1 : 1 + v4r_rng_below(&rng, c->hist_max ? c->hist_max : 14);
        for (size_t h = 0; h < nh; h++) {
            int32_t it = u % 5 == 0 ? (int32_t)((v4r_rng_below(&rng, c->ni / 49 + 1) + 1) % c->ni)
                                    : (int32_t)v4r_rng_below(&rng, c->ni);
            v4r_split_push(&f->ds.split[V4R_TRAIN], (int32_t)u, it, (int64_t)h, 1, 2);
        }
        v4r_split_push(&f->ds.split[V4R_VALID], (int32_t)u, (int32_t)v4r_rng_below(&rng, c->ni), 100, 1, 2);
    }
    f->covered = NULL;
    if (c->subset) {
        f->covered = v4r_malloc(c->ni);
        for (size_t i = 0; i < c->ni; i++)
            f->covered[i] = v4r_rng_below(&rng, 10) < 7;
    }
}

static void fixture_free(fixture *f)
{
    free(f->items.data);
    free(f->norms);
    free(f->covered);
    v4r_dataset_free(&f->ds);
}

static void rank_with(const char *kernel, const v4r_eval_set *es, const v4r_protocol *p, const v4r_matrix *items,
                      const float *norms, size_t kmax, int32_t *top, float *sc)
{
    v4r_err err = {0};
    setenv("VLM4REC_KERNEL", kernel, 1);
    int rc = v4r_rank_norms(es, p, items, norms, kmax, top, sc, &err);
    unsetenv("VLM4REC_KERNEL");
    if (rc)
        fail_msg("%s: %s", kernel, err.msg);
}

static int position(const int32_t *list, size_t k, int32_t item)
{
    for (size_t r = 0; r < k; r++)
        if (list[r] == item)
            return (int)r;
    return -1;
}

/* Within one list: exact ties in ascending item order, scores not increasing, -1 only at the end. */
static void check_order(const int32_t *top, const float *sc, size_t k)
{
    for (size_t r = 0; r + 1 < k; r++) {
        if (top[r] < 0) {
            assert_int_equal(top[r + 1], -1);
            continue;
        }
        if (top[r + 1] < 0)
            continue;
        assert_true(sc[r] >= sc[r + 1]);
        if (sc[r] == sc[r + 1])
            assert_true(top[r] < top[r + 1]);
    }
}

/* a (AVX-512) against b (BLAS): the same items except near-ties (< 1e-5), scores agreeing to 1e-5. */
static void compare_lists(const int32_t *a, const float *sa, const int32_t *b, const float *sb, size_t k)
{
    check_order(a, sa, k);
    check_order(b, sb, k);
    for (size_t r = 0; r < k; r++) {
        assert_int_equal(a[r] < 0, b[r] < 0);
        if (a[r] < 0)
            continue;
        assert_float_equal(sa[r], sb[r], 1e-5);
        if (a[r] == b[r])
            continue;
        int q = position(b, k, a[r]); /* a swap must be a near-tie */
        if (q >= 0)
            assert_float_equal(sb[q], sa[r], 1e-5);
        else
            assert_float_equal(sa[r], sb[k - 1], 1e-5);
    }
}

/* Exact ties in the AVX-512 list (a) between duplicated vectors: counted, to show the data
 * exercises the tie rule (check_order holds it in both lists; compare_lists allows the BLAS path,
 * whose rounding can depend on an item's position, only near-tie swaps). */
static size_t count_duplicate_ties(const v4r_eval_set *es, const int32_t *a, const float *sa, size_t k,
                                   const v4r_matrix *items)
{
    size_t seen = 0, d = items->cols;
    for (size_t r = 0; r + 1 < es->n_eval * k; r++) {
        if (r % k == k - 1 || a[r] < 0 || a[r + 1] < 0 || sa[r] != sa[r + 1])
            continue;
        if (!memcmp(items->data + (size_t)a[r] * d, items->data + (size_t)a[r + 1] * d, d * sizeof(float)))
            seen++;
    }
    return seen;
}

static void run_config(const config *c)
{
    fixture f;
    fixture_build(&f, c);
    v4r_protocol p;
    v4r_protocol_defaults(&p);
    p.history_length = c->history_length;
    p.mask = c->mask;
    p.profile = c->profile;
    p.covered = f.covered;
    v4r_eval_set es;
    v4r_err err = {0};
    assert_int_equal(v4r_eval_set_build(&f.ds, &p, &es, &err), 0);
    assert_true(es.n_eval > 0);
    size_t n = es.n_eval * c->kmax;
    int32_t *ta = v4r_malloc(n * sizeof *ta), *tb = v4r_malloc(n * sizeof *tb), *t1 = v4r_malloc(n * sizeof *t1);
    float *sa = v4r_malloc(n * sizeof *sa), *sb = v4r_malloc(n * sizeof *sb), *s1 = v4r_malloc(n * sizeof *s1);
    size_t bytes = f.items.rows * f.items.cols * sizeof(float);
    float *orig = v4r_malloc(bytes);
    memcpy(orig, f.items.data, bytes);
    rank_with("avx512", &es, &p, &f.items, f.norms, c->kmax, ta, sa);
    assert_memory_equal(f.items.data, orig, bytes); /* restored bit-exactly */
    rank_with("blas", &es, &p, &f.items, f.norms, c->kmax, tb, sb);
    int threads = omp_get_max_threads();
    omp_set_num_threads(threads > 1 ? 1 : 3);
    rank_with("avx512", &es, &p, &f.items, f.norms, c->kmax, t1, s1);
    omp_set_num_threads(threads);
    assert_memory_equal(ta, t1, n * sizeof *ta); /* the thread count changes nothing */
    assert_memory_equal(sa, s1, n * sizeof *sa);
    for (size_t u = 0; u < es.n_eval; u++)
        compare_lists(ta + u * c->kmax, sa + u * c->kmax, tb + u * c->kmax, sb + u * c->kmax, c->kmax);
    if (c->d == 1) /* scores are exactly +-1: ties everywhere, the tie rule alone decides */
        assert_memory_equal(ta, tb, n * sizeof *ta);
    if (c->kmax >= 2 && c->ni >= 500) /* user u % 5 == 0: the history item's duplicates tie */
        assert_true(count_duplicate_ties(&es, ta, sa, c->kmax, &f.items) > 0);
    free(orig);
    free(ta);
    free(tb);
    free(t1);
    free(sa);
    free(sb);
    free(s1);
    v4r_eval_set_free(&es);
    fixture_free(&f);
}

static void test_odd_sizes(void **state)
{
    if (!have_avx512())
        skip();
    static const size_t ds[] = {1, 7, 16, 33, 384}, nis[] = {1001, 517, 1999, 1100, 1100};
    static const size_t nus[] = {203, 97, 131, 601, 71};
    static const size_t ks[] = {1, 20, 50};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++)
        for (size_t j = 0; j < sizeof ks / sizeof *ks; j++) {
            config c = {nis[i], nus[i], ds[i], ks[j], 10, 0, 0, 100 + i * 10 + j, 0, 0};
            run_config(&c);
        }
    (void)state;
}

/* Whole histories, long enough that a block's rows overflow the staging (users read from panels). */
static void test_no_masks_whole_history(void **state)
{
    if (!have_avx512())
        skip();
    static const size_t ds[] = {1, 7, 33, 1500}, nus[] = {413, 113, 777, 401};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) {
        config c = {1203, nus[i], ds[i], 20, 0, i % 2 ? V4R_MASK_NONE : V4R_MASK_HISTORY, 0, 200 + i, 60, 0};
        run_config(&c);
    }
    (void)state;
}

static void test_candidate_subset(void **state)
{
    if (!have_avx512())
        skip();
    static const size_t ds[] = {1, 16, 33, 384}, ks[] = {1, 20, 50};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++)
        for (size_t j = 0; j < sizeof ks / sizeof *ks; j++) {
            config c = {1501, 143, ds[i], ks[j], 10, j == 1 ? V4R_MASK_NONE : V4R_MASK_HISTORY, 1, 300 + i * 10 + j, 0, 0};
            run_config(&c);
        }
    (void)state;
}

/* Fewer candidates than kmax, fewer users than a register tile, one panel. */
static void test_tiny(void **state)
{
    if (!have_avx512())
        skip();
    static const size_t nis[] = {1, 5, 16, 17, 31, 33};
    for (size_t i = 0; i < sizeof nis / sizeof *nis; i++) {
        config c = {nis[i], 5, 3, 50, 10, 0, 0, 400 + i, 0, 0};
        run_config(&c);
        c.mask = V4R_MASK_NONE;
        run_config(&c);
    }
    (void)state;
}

/* Every mask and profile mode, full catalog and subset: both kernels give the same lists. */
static void test_modes(void **state)
{
    if (!have_avx512())
        skip();
    static const int masks[] = {V4R_MASK_HISTORY, V4R_MASK_PROFILE, V4R_MASK_NONE};
    for (size_t m = 0; m < 3; m++)
        for (int prof = 0; prof < 2; prof++)
            for (int subset = 0; subset < 2; subset++) {
                config c = {1203, 211, 33, 20, 5, masks[m], subset, 500 + m * 4 + (size_t)prof * 2 + (size_t)subset,
                            30, prof ? V4R_PROFILE_MEAN : V4R_PROFILE_NORMALIZED_MEAN};
                run_config(&c);
            }
    (void)state;
}

static void test_kernel_variable(void **state)
{
    config c = {40, 13, 5, 3, 10, 0, 0, 7, 0, 0};
    fixture f;
    fixture_build(&f, &c);
    v4r_protocol p;
    v4r_protocol_defaults(&p);
    v4r_eval_set es;
    v4r_err err = {0};
    assert_int_equal(v4r_eval_set_build(&f.ds, &p, &es, &err), 0);
    int32_t *top = v4r_malloc(es.n_eval * c.kmax * sizeof *top);
    float *sc = v4r_malloc(es.n_eval * c.kmax * sizeof *sc);
    setenv("VLM4REC_KERNEL", "fast", 1);
    assert_int_equal(v4r_rank(&es, &p, &f.items, c.kmax, top, sc, &err), V4R_EUSAGE);
    assert_non_null(strstr(err.msg, "VLM4REC_KERNEL"));
    setenv("VLM4REC_KERNEL", "avx512", 1);
    int rc = v4r_rank(&es, &p, &f.items, c.kmax, top, sc, &err);
    if (v4r_cpu_has_avx512())
        assert_int_equal(rc, 0);
    else {
        assert_int_equal(rc, V4R_EUSAGE);
        assert_non_null(strstr(err.msg, "AVX-512"));
    }
    setenv("VLM4REC_KERNEL", "auto", 1);
    assert_int_equal(v4r_rank(&es, &p, &f.items, c.kmax, top, sc, &err), 0);
    assert_int_equal(v4r_rank(&es, &p, &f.items, 0, top, sc, &err), 0); /* kmax 0: nothing to write */
    unsetenv("VLM4REC_KERNEL");
    free(top);
    free(sc);
    v4r_eval_set_free(&es);
    fixture_free(&f);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_odd_sizes),        cmocka_unit_test(test_no_masks_whole_history),
        cmocka_unit_test(test_candidate_subset), cmocka_unit_test(test_tiny),
        cmocka_unit_test(test_kernel_variable), cmocka_unit_test(test_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The IVF section of the serving index: build and open round trip, the default nprobe's recall
 * on a clustered catalog, nprobe = nlist equal to exact search bit for bit for every dtype (masks,
 * candidates, batches, threads), order and masks at the default nprobe, damaged IVF sections
 * refused, version 1 files still opening, and the CLI options. */
#include "index_testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/ground.h"
#include "vlm4rec/index.h"
#include "vlm4rec/io.h"

enum { NI = 6000, NU = 400, DIM = 32, NC = 60, HIST = 6, H_VERSION = 8, H_IVF = 432 };

/* A Gaussian mixture: NC unit centers, item i = center (i * 7919 % NC) + noise of norm about 0.6;
 * user u's history: HIST items of cluster u % NC (train), one more (valid), all distinct. */
static void mixture(v4r_dataset *ds, v4r_matrix *m, uint64_t seed)
{
    v4r_rng rng;
    v4r_rng_seed(&rng, seed);
    float *center = v4r_malloc(sizeof(float) * NC * DIM);
    for (size_t c = 0; c < NC; c++) {
        double ss = 0;
        for (size_t k = 0; k < DIM; k++) {
            center[c * DIM + k] = (float)v4r_rng_normal(&rng);
            ss += center[c * DIM + k] * center[c * DIM + k];
        }
        for (size_t k = 0; k < DIM; k++)
            center[c * DIM + k] /= (float)sqrt(ss);
    }
    v4r_dataset_init(ds);
    char id[32];
    *m = (v4r_matrix){v4r_malloc(sizeof(float) * NI * DIM), NI, DIM};
    for (size_t i = 0; i < NI; i++) {
        snprintf(id, sizeof id, "i%zu", i);
        v4r_dataset_add_item(ds, id, "", "", NULL);
        for (size_t k = 0; k < DIM; k++)
            m->data[i * DIM + k] = center[i * 7919 % NC * DIM + k] + 0.6f * (float)v4r_rng_normal(&rng) / sqrtf(DIM);
    }
    for (size_t u = 0; u < NU; u++) {
        snprintf(id, sizeof id, "u%zu", u);
        v4r_dataset_add_user(ds, id, NULL);
        size_t first = (size_t)v4r_rng_below(&rng, NI / NC);
        for (size_t h = 0; h <= HIST; h++) {
            size_t c = u % NC, j = (first + h) % (NI / NC); /* distinct items */
            size_t item = 0; /* the j-th item of cluster c */
            for (size_t i = 0, seen = 0; i < NI; i++)
                if (i * 7919 % NC == c && seen++ == j) {
                    item = i;
                    break;
                }
            v4r_split_push(&ds->split[h < HIST ? V4R_TRAIN : V4R_VALID], (int32_t)u, (int32_t)item, (int64_t)h, 1, 0);
        }
    }
    free(center);
}

static char *build(const char *dir, const char *name, v4r_index_dtype dtype, int ivf, size_t nlist,
                   v4r_index_build_report *rep)
{
    v4r_dataset ds;
    v4r_matrix m;
    mixture(&ds, &m, 5);
    v4r_index_build_opts o;
    v4r_index_build_defaults(&o);
    o.dtype = dtype;
    o.ivf = ivf;
    o.nlist = nlist;
    o.check_users = 300;
    char *path = v4r_path_join(dir, name);
    v4r_err err = {0};
    v4r_index_build_report r;
    if (v4r_index_build(&ds, &m, &o, path, rep ? rep : &r, &err))
        fail_msg("build: %s", err.msg);
    v4r_matrix_free(&m);
    v4r_dataset_free(&ds);
    return path;
}

static v4r_index *open_ok(const char *path)
{
    v4r_index *ix = NULL;
    v4r_err err = {0};
    if (v4r_index_open(path, 1, &ix, &err))
        fail_msg("open %s: %s", path, err.msg);
    return ix;
}

/* Every user's list (NU x k) with nprobe, on `threads`; flavour 1 adds masks and candidates. */
static void lists(const v4r_index *ix, size_t nprobe, size_t k, int flavour, int threads, int32_t *items,
                  float *scores)
{
    static int32_t excl[3] = {1, 2, 3}, cand[NI / 2];
    for (size_t i = 0; i < NI / 2; i++)
        cand[i] = (int32_t)(2 * i);
    v4r_index_query q[NU];
    for (size_t u = 0; u < NU; u++) {
        memset(&q[u], 0, sizeof q[u]);
        q[u].n_history = v4r_index_user_history(ix, (int32_t)u, &q[u].history);
        q[u].k = k;
        q[u].nprobe = nprobe;
        if (flavour && u % 3 == 0)
            q[u].keep_history = 1, q[u].exclude = excl, q[u].n_exclude = 3;
        if (flavour && u % 3 == 1)
            q[u].candidates = cand, q[u].n_candidates = NI / 2;
    }
    v4r_err err = {0};
    if (v4r_index_search_threads(ix, q, NU, k, threads, items, scores, &err))
        fail_msg("search: %s", err.msg);
}

static void test_round_trip(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    v4r_index_build_report rep;
    char *path = build(dir, "a.idx", V4R_INDEX_F32, 1, 0, &rep);
    v4r_index *ix = open_ok(path);
    size_t want_nlist = (size_t)llround(4 * sqrt((double)NI));
    assert_int_equal(v4r_index_nlist(ix), want_nlist);
    assert_int_equal(rep.nlist, want_nlist);
    assert_int_equal(v4r_index_nprobe(ix), rep.nprobe);
    assert_true(rep.nprobe >= 1 && rep.nprobe < want_nlist / 4); /* approximate, not a disguised scan */
    assert_true(v4r_index_ivf_recall(ix, 0) >= 0.98);
    assert_true(v4r_index_ivf_recall(ix, 1) == v4r_index_ivf_recall(ix, 0)); /* float32: the same lists */
    assert_int_equal(rep.ivf_queries, 300);
    json_error_t je;
    json_t *meta = json_loads(v4r_index_meta_json(ix), 0, &je), *ivf = json_object_get(meta, "ivf");
    assert_int_equal(json_integer_value(json_object_get(meta, "format_version")), 2);
    assert_int_equal(json_integer_value(json_object_get(ivf, "nlist")), want_nlist);
    assert_int_equal(json_integer_value(json_object_get(ivf, "nprobe")), rep.nprobe);
    json_decref(meta);
    v4r_index_close(ix);
    /* the same build twice: the same bytes but the meta's time */
    v4r_index_build_report rep2;
    char *again = build(dir, "b.idx", V4R_INDEX_F32, 1, 0, &rep2);
    assert_int_equal(rep2.nprobe, rep.nprobe);
    assert_true(rep2.ivf_recall_vs_exact == rep.ivf_recall_vs_exact);
    free(again);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* nprobe = nlist: the exact scan's lists and scores, bit for bit, for every dtype, with masks,
 * candidates and threads; and the lists of an index built without IVF. */
static void test_all_lists_equal_exact(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    enum { K = 20 };
    int32_t *ia = v4r_malloc(sizeof(int32_t) * NU * K * 3), *ib = ia + NU * K, *ic = ib + NU * K;
    float *sa = v4r_malloc(sizeof(float) * NU * K * 3), *sb = sa + NU * K, *sc = sb + NU * K;
    for (int t = 0; t < 3; t++) {
        char *path = build(dir, "a.idx", (v4r_index_dtype)t, 1, 50, NULL);
        char *plain = build(dir, "p.idx", (v4r_index_dtype)t, 0, 0, NULL);
        v4r_index *ix = open_ok(path), *px = open_ok(plain);
        assert_int_equal(v4r_index_nlist(px), 0);
        for (int flavour = 0; flavour < 2; flavour++)
            for (int threads = 1; threads <= 2; threads++) {
                lists(ix, 50, K, flavour, threads, ia, sa);
                lists(ix, V4R_INDEX_EXACT, K, flavour, 1, ib, sb);
                lists(px, 7, K, flavour, 1, ic, sc); /* no IVF: nprobe ignored */
                assert_memory_equal(ia, ib, sizeof(int32_t) * NU * K);
                assert_memory_equal(sa, sb, sizeof(float) * NU * K);
                assert_memory_equal(ia, ic, sizeof(int32_t) * NU * K);
                assert_memory_equal(sa, sc, sizeof(float) * NU * K);
                lists(ix, 1000, K, flavour, threads, ia, sa); /* above nlist: all lists */
                assert_memory_equal(ia, ib, sizeof(int32_t) * NU * K);
            }
        v4r_index_close(ix);
        v4r_index_close(px);
        free(path);
        free(plain);
    }
    free(ia);
    free(sa);
    tu_rmtree(dir);
    free(dir);
}

static double overlap(const int32_t *a, const int32_t *b, size_t k)
{
    size_t hit = 0;
    for (size_t j = 0; j < k; j++)
        for (size_t i = 0; i < k; i++)
            hit += a[i] == b[j] && b[j] >= 0;
    return (double)hit / (double)k;
}

/* The default nprobe on queries the build did not sample (the users' valid items as histories):
 * Recall@10 >= 0.98 for every dtype; an nprobe of 1 is worse (the test can fail). Lists in
 * (score desc, index asc) order without history items. */
static void test_default_recall_order_masks(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    enum { K = 10 };
    int32_t *ia = v4r_malloc(sizeof(int32_t) * NU * K * 2), *ib = ia + NU * K;
    float *sa = v4r_malloc(sizeof(float) * NU * K * 2), *sb = sa + NU * K;
    for (int t = 0; t < 3; t++) {
        char *path = build(dir, "a.idx", (v4r_index_dtype)t, 1, 0, NULL);
        v4r_index *ix = open_ok(path);
        lists(ix, 0, K, 0, 1, ia, sa);
        lists(ix, V4R_INDEX_EXACT, K, 0, 1, ib, sb);
        double sum = 0;
        for (size_t u = 0; u < NU; u++) {
            sum += overlap(ia + u * K, ib + u * K, K);
            const int32_t *h;
            size_t nh = v4r_index_user_history(ix, (int32_t)u, &h);
            for (size_t j = 0; j < K; j++) {
                assert_true(ia[u * K + j] >= 0);
                for (size_t x = 0; x < nh; x++)
                    assert_int_not_equal(ia[u * K + j], h[x]);
                if (j)
                    assert_true(sa[u * K + j - 1] > sa[u * K + j] ||
                                (sa[u * K + j - 1] == sa[u * K + j] && ia[u * K + j - 1] < ia[u * K + j]));
            }
        }
        double recall = sum / NU;
        assert_true(recall >= 0.98);
        assert_true(fabs(recall - v4r_index_ivf_recall(ix, 0)) < 0.02);
        lists(ix, 1, K, 0, 1, ia, sa);
        sum = 0;
        for (size_t u = 0; u < NU; u++)
            sum += overlap(ia + u * K, ib + u * K, K);
        assert_true(sum / NU < recall);
        v4r_index_close(ix);
        free(path);
    }
    free(ia);
    free(sa);
    tu_rmtree(dir);
    free(dir);
}

static void test_damaged_ivf(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *path = build(dir, "a.idx", V4R_INDEX_I8, 1, 40, NULL);
    char *bad = v4r_path_join(dir, "bad.idx");
    char *data;
    size_t n;
    assert_int_equal(v4r_read_file(path, &data, &n, NULL), 0);
    unsigned char *orig = (unsigned char *)data, *b = v4r_malloc(n);
    uint64_t at = get_u64(orig + H_IVF);
    assert_int_equal(orig[H_VERSION], 2);
    struct {
        uint64_t off, value;
        const char *needle;
    } edits[] = {
        {8, 0, "field 'nlist'"},
        {8, NI + 1, "field 'nlist'"},
        {16, 41, "field 'nprobe'"},
        {16, 0, "field 'nprobe'"},
        {56, 3, "length"},
        {100, 1, "sub-header bytes"},
        {0, 0, "sub-header"},
    };
    for (size_t e = 0; e < sizeof edits / sizeof *edits; e++) {
        memcpy(b, orig, n);
        put_u64(b + at + edits[e].off, edits[e].value);
        expect_refused(bad, b, n, 0, edits[e].needle);
    }
    /* the parts: the lists' offsets, a repeated item, a scale; header: the section's place */
    {
        uint64_t centroids = 128, cbytes = (40 + 15) / 16 * 16 * DIM * 4, loff = (centroids + cbytes + 63) / 64 * 64;
        memcpy(b, orig, n);
        put_u64(b + at + loff + 8, get_u64(orig + at + loff + 8) + 16);
        expect_refused(bad, b, n, 0, "list_");
        uint64_t lpan = loff + (41 * 8 + 63) / 64 * 64, items = lpan + (41 * 8 + 63) / 64 * 64;
        memcpy(b, orig, n);
        memcpy(b + at + items, b + at + items + 4, 4);
        expect_refused(bad, b, n, 0, "part 'list_items'");
    }
    memcpy(b, orig, n);
    put_u64(b + H_IVF, at + 8);
    reseal(b);
    expect_refused(bad, b, n, 0, "section 'ivf'");
    memcpy(b, orig, n);
    put_u64(b + H_IVF + 8, 0);
    put_u64(b + H_IVF, 0);
    reseal(b);
    expect_refused(bad, b, n, 0, "IVF section");
    memcpy(b, orig, n);
    b[H_VERSION] = 1;
    reseal(b);
    expect_refused(bad, b, n, 0, "version 1");
    memcpy(b, orig, n);
    b[at + 200] ^= 1; /* a centroid bit: caught by the checksum */
    expect_refused(bad, b, n, 1, "sha256");
    expect_refused(bad, orig, n - 64, 0, "truncated");
    free(b);
    free(orig);
    free(bad);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* A build without --ivf writes version 1 (bytes 432..447 zero); such files open and search
 * exactly whatever nprobe asks. */
static void test_version1_file(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *path = build(dir, "a.idx", V4R_INDEX_F16, 0, 0, NULL);
    char *data;
    size_t n;
    assert_int_equal(v4r_read_file(path, &data, &n, NULL), 0);
    assert_int_equal(data[H_VERSION], 1);
    for (int i = H_IVF; i < H_IVF + 16; i++)
        assert_int_equal(data[i], 0);
    free(data);
    v4r_index *ix = open_ok(path);
    assert_int_equal(v4r_index_nlist(ix), 0);
    assert_int_equal(v4r_index_nprobe(ix), 0);
    assert_true(v4r_index_ivf_recall(ix, 0) == -1);
    v4r_index_close(ix);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

static void test_cli(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *out = NULL;
    v4r_dataset ds;
    v4r_matrix m;
    mixture(&ds, &m, 9);
    char *dsdir = v4r_path_join(dir, "ds"), *npy = v4r_path_join(dir, "ds/v.npy");
    v4r_err err = {0};
    if (v4r_dataset_write(dsdir, &ds, &err))
        fail_msg("save: %s", err.msg);
    assert_int_equal(v4r_npy_write(npy, m.data, NI, DIM, NULL), 0);
    int rc = tu_run(&out, "index build --dataset '%s' --vectors v.npy -o '%s/x.idx' --ivf --nlist 64 -q", dsdir, dir);
    if (rc)
        fail_msg("%s", out);
    assert_non_null(strstr(out, "ivf: 64 lists, nprobe "));
    free(out);
    rc = tu_run(&out, "index info '%s/x.idx'", dir);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "ivf: 64 lists, default nprobe "));
    free(out);
    char *exact = NULL, *all = NULL;
    assert_int_equal(tu_run(&exact, "recommend --index '%s/x.idx' --user u3 -k 5 --exact", dir), 0);
    assert_int_equal(tu_run(&all, "recommend --index '%s/x.idx' --user u3 -k 5 --nprobe 64", dir), 0);
    assert_string_equal(exact, all);
    free(all);
    assert_int_equal(tu_run(&all, "recommend --index '%s/x.idx' --user u3 -k 5 --nprobe 1", dir), 0);
    assert_non_null(strstr(all, "u3\t1\t"));
    free(all);
    free(exact);
    rc = tu_run(&out, "recommend --index '%s/x.idx' --user u3 --nprobe 0", dir);
    assert_int_equal(rc, 2);
    free(out);
    rc = tu_run(&out, "index build --dataset '%s' --vectors v.npy -o '%s/y.idx' --nlist 9", dsdir, dir);
    assert_int_equal(rc, 2);
    free(out);
    rc = tu_run(&out, "index build --dataset '%s' --vectors v.npy -o '%s/y.idx' --ivf --nlist 7000", dsdir, dir);
    assert_int_equal(rc, 2);
    free(out);
    rc = tu_run(&out, "index build --dataset '%s' --vectors v.npy -o '%s/y.idx' --ivf --ivf-recall 1.5", dsdir, dir);
    assert_int_equal(rc, 2);
    free(out);
    v4r_matrix_free(&m);
    v4r_dataset_free(&ds);
    free(dsdir);
    free(npy);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_all_lists_equal_exact),
        cmocka_unit_test(test_default_recall_order_masks),
        cmocka_unit_test(test_damaged_ivf),
        cmocka_unit_test(test_version1_file),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

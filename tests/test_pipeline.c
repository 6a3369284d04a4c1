/* `vlm4rec run`: a small config through every stage twice (the second run does nothing), a
 * changed setting reruns only what depends on it, --from forces, bad configs fail early with
 * file:line, the embedded default equals configs/demo.conf, results carry groups and encoders;
 * --dry-run prints each step's command line (the shipped clothing config's real arguments). */
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
    expect_conf_error("[dataset]\n[text t]\nsource = feature:t.npy\n[vision]\nsource = feature:v.npy\n[fusion f]\n"
                      "kind = attention\ntext = t\ncovered = yes\n", 3, "bad.conf:9: [fusion f]: covered = yes, but [text t]");
    expect_conf_error("[dataset]\n[text t]\nsource = titles\ntext_template = {title}\n", 3,
                      "bad.conf:4: [text t]: text_template applies to grounded and file: sources");
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

/* ---- a dry run's printout: each step's header line, then its command, indented ---- */

/* The shell words of a printed command line (plain words and '...' with '\\'' inside). */
static char **split_words(const char *line, size_t len)
{
    char **words = v4r_calloc(len + 1, sizeof *words);
    size_t n = 0, i = 0;
    while (i < len) {
        while (i < len && line[i] == ' ')
            i++;
        if (i == len)
            break;
        char *w = v4r_calloc(len + 1, 1);
        size_t k = 0;
        while (i < len && line[i] != ' ') {
            if (line[i] == '\'') {
                for (i++; i < len && line[i] != '\''; i++)
                    w[k++] = line[i];
                i++;
            } else if (line[i] == '\\' && i + 1 < len) {
                w[k++] = line[i + 1];
                i += 2;
            } else {
                w[k++] = line[i++];
            }
        }
        words[n++] = w;
    }
    return words;
}

static void free_words(char **words)
{
    for (size_t i = 0; words && words[i]; i++)
        free(words[i]);
    free(words);
}

/* The argv a dry run printed for step ID (NULL-terminated; free_words), or NULL without that step. */
static char **step_argv(const char *out, const char *id)
{
    for (const char *p = out; (p = strstr(p, "] ")); p++) {
        const char *name = p + 2;
        size_t n = strlen(id);
        if (strncmp(name, id, n) || name[n] != ' ')
            continue;
        const char *cmd = strchr(name, '\n');
        if (!cmd || strncmp(cmd + 1, "        ", 8))
            return NULL;
        cmd += 9;
        const char *end = strchr(cmd, '\n');
        return split_words(cmd, end ? (size_t)(end - cmd) : strlen(cmd));
    }
    return NULL;
}

/* The value of OPT in argv (OPT=VALUE), or NULL when absent. */
static const char *argv_option(char **argv, const char *opt)
{
    size_t n = strlen(opt);
    for (size_t i = 0; argv && argv[i]; i++)
        if (!strncmp(argv[i], opt, n) && argv[i][n] == '=')
            return argv[i] + n + 1;
    return NULL;
}

static size_t argv_count(char **argv, const char *opt)
{
    size_t n = 0;
    for (size_t i = 0; argv && argv[i]; i++)
        n += !strncmp(argv[i], opt, strlen(opt)) && argv[i][strlen(opt)] == '=';
    return n;
}

static int argv_has(char **argv, const char *word)
{
    for (size_t i = 0; argv && argv[i]; i++)
        if (!strcmp(argv[i], word))
            return 1;
    return 0;
}

/* Asserts that step ID was printed with OPT=WANT (WANT NULL: without OPT at all). */
static void assert_step_option(const char *out, const char *id, const char *opt, const char *want)
{
    char **argv = step_argv(out, id);
    if (!argv)
        fail_msg("no step %s in the dry run:\n%s", id, out);
    const char *got = argv_option(argv, opt);
    if (want ? !got || strcmp(got, want) : got != NULL)
        fail_msg("step %s: %s is '%s', want '%s'", id, opt, got ? got : "(absent)", want ? want : "(absent)");
    free_words(argv);
}

/* A step's subcommand words: argv[1] and argv[2]. */
static void assert_step_command(const char *out, const char *id, const char *cmd, const char *sub)
{
    char **argv = step_argv(out, id);
    if (!argv)
        fail_msg("no step %s in the dry run:\n%s", id, out);
    assert_non_null(argv[1]);
    assert_string_equal(argv[1], cmd);
    if (sub)
        assert_string_equal(argv[2], sub);
    free_words(argv);
}

/* The shipped method config, dry: nothing runs, nothing is written, its data need not exist; the
 * LLaVA fusions train on the LLaVA text's covered list, the others on the whole catalog. */
static void test_dry_run_clothing(void **state)
{
    char *dir = tu_tmpdir(), *conf = source_path("configs/vlm4rec-clothing.conf"), *out = NULL;
    char *home = v4r_path_join(dir, "home");
    setenv("VLM4REC_HOME", home, 1); /* an empty model cache: the model is named by its id */
    setenv("HF_HUB_OFFLINE", "1", 1);
    int rc = tu_run(&out, "run '%s' -o '%s/run' --dry-run", conf, dir);
    if (rc)
        fail_msg("dry run exit %d:\n%s", rc, out);
    assert_non_null(strstr(out, "path: 'kaggle' does not exist; a run stops here"));
    char *run = v4r_path_join(dir, "run"), *ds = v4r_path_join(run, "dataset");
    assert_false(v4r_file_exists(run)); /* a dry run writes nothing */
    assert_step_command(out, "dataset", "dataset", "import");
    /* the llava text: the semantic cache's descriptions as they are */
    char **enc = step_argv(out, "encode.llava");
    assert_non_null(enc);
    assert_null(argv_option(enc, "--text-template")); /* the paper encodes the description alone */
    const char *vectors = argv_option(enc, "--output") ? argv_option(enc, "--output") : "";
    assert_true(strlen(vectors) > 4);
    char *covered = v4r_sprintf("%.*s.covered.txt", (int)strlen(vectors) - 4, vectors); /* encode's default */
    free_words(enc);
    static const char *const fusions[][3] = {{"fusion.llava-attention", "attention", "llava"},
                                             {"fusion.llava-smore", "smore", "llava"},
                                             {"fusion.bert-attention", "attention", "bert"},
                                             {"fusion.bert-smore", "smore", "bert"},
                                             {"fusion.gating", "gating", "bert"}};
    for (size_t i = 0; i < 5; i++) {
        assert_step_command(out, fusions[i][0], "train", fusions[i][1]);
        assert_step_option(out, fusions[i][0], "--covered", strcmp(fusions[i][2], "llava") ? NULL : covered);
        assert_step_option(out, fusions[i][0], "--dataset", ds);
    }
    /* the protocols: covered restricts to the same list; full evaluates its seven on everything */
    assert_step_command(out, "eval.covered", "eval", NULL);
    assert_step_option(out, "eval.covered", "--covered", covered);
    assert_step_option(out, "eval.covered", "--protocol", "paper");
    assert_step_option(out, "eval.covered", "--truth", "test");
    assert_step_command(out, "eval.full", "eval", NULL);
    assert_step_option(out, "eval.full", "--dataset", ds);
    assert_step_option(out, "eval.full", "--covered", NULL);
    assert_step_option(out, "eval.full", "--protocol", "paper"); /* the paper's "full test set" */
    assert_step_option(out, "eval.full", "--truth", "test");
    assert_step_option(out, "eval.full", "--baseline", "BERT (text only)");
    char *full = v4r_sprintf("%s/results/full.json", run);
    assert_step_option(out, "eval.full", "--output", full);
    char **ev = step_argv(out, "eval.full");
    assert_int_equal(argv_count(ev, "--model"), 7);
    char *bert = v4r_sprintf("--model=BERT (text only)=%s/features/text.npy", ds);
    char *clip = v4r_sprintf("--model=CLIP (vision only)=%s/features/image.npy", ds);
    assert_true(argv_has(ev, bert));
    assert_true(argv_has(ev, clip));
    free_words(ev);
    assert_step_command(out, "report", "report", NULL);
    free(clip);
    free(bert);
    free(full);
    free(covered);
    free(out);
    free(run);
    free(ds);
    free(home);
    free(conf);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}


/* The released code's setup: its prompt, its encoder input, its evaluation preset and baselines. */
static void test_dry_run_released(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *conf = source_path("configs/vlm4rec-clothing-released.conf"), *out = NULL;
    char *home = v4r_path_join(dir, "home");
    setenv("VLM4REC_HOME", home, 1);
    setenv("HF_HUB_OFFLINE", "1", 1);
    int rc = tu_run(&out, "run '%s' -o '%s/run' --dry-run", conf, dir);
    if (rc)
        fail_msg("dry run exit %d:\n%s", rc, out);
    assert_step_option(out, "ground", "--prompt", "script");
    assert_step_option(out, "ground", "--max-tokens", "150");
    char **enc = step_argv(out, "encode.llava");
    assert_non_null(enc);
    assert_string_equal(argv_option(enc, "--text-template"), "{title}. {description}");
    free_words(enc);
    assert_step_option(out, "eval.released", "--protocol", "released");
    assert_step_option(out, "eval.released", "--covered", NULL);
    assert_step_option(out, "eval.released-llava", "--protocol", "released");
    char **ev = step_argv(out, "eval.released");
    assert_non_null(ev);
    int raw_mean = 0, raw_concat = 0;
    for (char **a = ev; *a; a++) {
        raw_mean += strstr(*a, "=mean-raw:") != NULL;
        raw_concat += strstr(*a, "=concat-raw:") != NULL;
    }
    assert_int_equal(raw_mean, 1);
    assert_int_equal(raw_concat, 1);
    free_words(ev);
    free(out);
    free(home);
    free(conf);
    free(dir);
}

/* [fusion] covered (auto, no, a file) and text_template ([encoder]'s default, [text]'s own, none
 * for titles), as a dry run prints them. */
static void test_dry_run_keys(void **state)
{
    static const char *conf = "[dataset]\nsource = synth\n"
                              "[encoder]\nmodel = no-such-org/no-such-model\npull = no\n"
                              "text_template = {title}: {description}\n"
                              "[text title]\nsource = titles\n"
                              "[text d]\nsource = file:descriptions.tsv\n"
                              "[text d2]\nsource = file:descriptions.tsv\ntext_template = [{description}]\n"
                              "[vision]\nsource = feature:features/visual.npy\n"
                              "[fusion a]\nkind = attention\ntext = d\n"
                              "[fusion b]\nkind = attention\ntext = d\ncovered = no\n"
                              "[fusion c]\nkind = smore\ntext = title\ncovered = covered.txt\n"
                              "[fusion e]\nkind = gating\ntext = d2\ncovered = yes\n";
    char *dir = tu_tmpdir(), *out = NULL;
    tu_write(dir, "k.conf", conf);
    int rc = tu_run(&out, "run '%s/k.conf' -o '%s/run' --dry-run", dir, dir);
    if (rc)
        fail_msg("dry run exit %d:\n%s", rc, out);
    char *d_cov = v4r_sprintf("%s/run/vectors/d.covered.txt", dir), *d2_cov = v4r_sprintf("%s/run/vectors/d2.covered.txt", dir);
    char *list = v4r_sprintf("%s/run/dataset/covered.txt", dir);
    assert_step_option(out, "encode.title", "--text-template", NULL);
    assert_step_option(out, "encode.d", "--text-template", "{title}: {description}");
    assert_step_option(out, "encode.d2", "--text-template", "[{description}]");
    assert_step_option(out, "fusion.a", "--covered", d_cov);
    assert_step_option(out, "fusion.b", "--covered", NULL);
    assert_step_option(out, "fusion.c", "--covered", list);
    assert_step_option(out, "fusion.e", "--covered", d2_cov);
    free(out);
    free(d_cov);
    free(d2_cov);
    free(list);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_default_is_shipped),
        cmocka_unit_test(test_dry_run_clothing),
        cmocka_unit_test(test_dry_run_released),
        cmocka_unit_test(test_dry_run_keys),
        cmocka_unit_test(test_twice_and_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

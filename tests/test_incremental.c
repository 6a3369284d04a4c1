/* `vlm4rec run` on a catalog that changed: a synthetic catalog grown by 100 items is grounded,
 * encoded and embedded only for those 100 (the stand-in server's request log, the steps' counts),
 * and an imported catalog that lost items drops their rows without computing anything; in both
 * cases the vectors are byte for byte, and the metrics exactly, those of a full run from scratch.
 * Also encode --reuse directly: a changed text is recomputed, a changed option recomputes all. */
#include "testutil.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* %s: the [dataset] section; %s, %s: the fixtures' models directory (text, vision). */
static const char *conf_template =
    "[dataset]\n"
    "%s"
    "[ground]\n"
    "endpoint = standin\n"
    "order = priority\n"
    "concurrency = 4\n"
    "[encoder]\n"
    "model = %s/bert-tiny\n"
    "pull = no\n"
    "fallback = none\n"
    "[text title]\n"
    "source = titles\n"
    "[text grounded]\n"
    "source = grounded\n"
    "[vision]\n"
    "source = clip:%s/clip-vision-tiny-224\n"
    "[fusion ga]\n"
    "kind = attention\n"
    "text = grounded\n"
    "options = --epochs 1 --hidden 16 --dim 16 --negatives 8 --threads 1\n"
    "[model Title]\n"
    "spec = text:title\n"
    "[model Grounded]\n"
    "spec = text:grounded\n"
    "[model Grounded + vision]\n"
    "spec = concat:text:grounded,vision\n"
    "[model Grounded + attention]\n"
    "spec = fusion:ga\n"
    "[protocol full]\n"
    "bootstrap = 50\n";

static const char *const outputs[] = {"vectors/title.npy",           "vectors/grounded.npy", "vectors/vision.npy",
                                      "vectors/grounded.covered.txt", "vectors/vision.covered.txt", "fusion/ga.npy"};

static char *write_conf(const char *dir, const char *name, const char *dataset)
{
    char *models = v4r_path_join(tu_shared(), "fixtures/models");
    char *text = v4r_sprintf(conf_template, dataset, models, models);
    tu_write(dir, name, text);
    free(text);
    free(models);
    return v4r_path_join(dir, name);
}

static char *run(const char *conf, const char *rundir)
{
    char *out = NULL;
    int rc = tu_run(&out, "run '%s' -o '%s'", conf, rundir);
    if (rc != 0)
        fail_msg("run exit %d:\n%s", rc, out);
    return out;
}

/* Requests the stand-in answered in this run directory so far (a log line each). */
static int standin_requests(const char *rundir)
{
    char *log = tu_read(rundir, "ground/standin.log");
    int n = 0;
    for (const char *c = log; c && *c; c++)
        n += *c == '\n';
    free(log);
    return n;
}

static void assert_says(const char *out, const char *line)
{
    if (!strstr(out, line))
        fail_msg("missing '%s' in:\n%s", line, out);
}

static void assert_same_bytes(const char *a_dir, const char *b_dir, const char *name)
{
    char *a = v4r_path_join(a_dir, name), *b = v4r_path_join(b_dir, name), *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    assert_int_equal(v4r_read_file(a, &x, &nx, NULL), 0);
    assert_int_equal(v4r_read_file(b, &y, &ny, NULL), 0);
    if (nx != ny || memcmp(x, y, nx))
        fail_msg("%s and %s differ", a, b);
    free(a), free(b), free(x), free(y);
}

/* The results' models without what names the run (paths, timings): the metrics. */
static json_t *metrics_of(const char *rundir)
{
    char *path = v4r_path_join(rundir, "results/full.json");
    json_t *root = json_load_file(path, 0, NULL), *models = json_incref(json_object_get(root, "models"));
    assert_non_null(models);
    size_t i;
    json_t *m;
    json_array_foreach (models, i, m) {
        json_object_del(m, "source");
        json_object_del(m, "timing");
    }
    assert_true(json_array_size(models) == 4);
    json_decref(root);
    free(path);
    return models;
}

/* The incremental run directory against a full run from scratch of the same config. */
static void assert_equals_full_run(const char *dir, const char *conf, const char *inc)
{
    char *full = v4r_path_join(dir, "full"), *out = run(conf, full);
    for (size_t i = 0; i < sizeof outputs / sizeof *outputs; i++)
        assert_same_bytes(inc, full, outputs[i]);
    json_t *a = metrics_of(inc), *b = metrics_of(full);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    free(out);
    tu_rmtree(full);
    free(full);
}

static void test_grown_synthetic_catalog(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *inc = v4r_path_join(dir, "inc");
    static const char *synth = "source = synth\nusers = 200\ninteractions = 1500\nseed = 3\nimages = yes\n";
    char *small = v4r_sprintf("%sitems = 300\n", synth), *grown = v4r_sprintf("%sitems = 400\n", synth);
    char *conf = write_conf(dir, "small.conf", small), *out = run(conf, inc);
    assert_int_equal(standin_requests(inc), 300);
    assert_says(out, "items of encode.title: 300 new, 0 changed, 0 reused, 0 removed, 0 failed");
    free(out);
    free(conf);
    conf = write_conf(dir, "grown.conf", grown);
    out = run(conf, inc);
    assert_int_equal(standin_requests(inc), 400); /* exactly the 100 new items were described */
    assert_says(out, "the stand-in server answered 100 requests");
    assert_says(out, "items of ground: 100 new, 300 reused, 0 failed");
    assert_says(out, "items of encode.title: 100 new, 0 changed, 300 reused, 0 removed, 0 failed");
    assert_says(out, "items of encode.grounded: 100 new, 0 changed, 300 reused, 0 removed, 0 failed");
    assert_says(out, "items of vision: 100 new, 0 changed, 300 reused, 0 removed, 0 failed");
    assert_says(out, "fusion.ga                    done"); /* what reads the vectors runs again */
    assert_says(out, "eval.full                    done");
    char *json = tu_read(inc, "results/full.json"), *md = tu_read(inc, "report/report.md");
    assert_non_null(strstr(json, "\"vision\": \"100 new, 0 changed, 300 reused, 0 removed, 0 failed\""));
    assert_non_null(strstr(md, "| items.encode.grounded | 100 new, 0 changed, 300 reused, 0 removed, 0 failed |"));
    assert_equals_full_run(dir, conf, inc);
    free(json), free(md), free(out), free(conf), free(small), free(grown), free(inc);
    tu_rmtree(dir);
    free(dir);
}

/* ---- an imported catalog that loses items ---- */

/* 1 when a line names a removed item (I000005, I000011, ...: every sixth) in field col. */
static int removed_line(const char *line, size_t len, int col)
{
    const char *f = line;
    for (int c = 0; c < col && f; c++) {
        f = memchr(f, '\t', len - (size_t)(f - line));
        f = f ? f + 1 : NULL;
    }
    return f && f[0] == 'I' && f[1] != 't' && atoi(f + 1) % 6 == 5;
}

/* Copies SRC/name to DST/name, without the removed items' lines when drop; items.tsv's image
 * paths become absolute (SRC's images stay where they are). */
static void copy_rows(const char *src, const char *dst, const char *name, int col, int drop)
{
    char *text = tu_read(src, name), *line = text, *out = v4r_strdup(""), *next;
    assert_non_null(text);
    while (*line) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        int skip = drop && removed_line(line, len, col), image = !strcmp(name, "items.tsv") && line != text;
        const char *tab = image ? memchr(line, '\t', len) : NULL;
        const char *tab2 = tab ? memchr(tab + 1, '\t', len - (size_t)(tab + 1 - line)) : NULL;
        if (!skip && tab2)
            next = v4r_sprintf("%s%.*s%s/%.*s\n", out, (int)(tab2 + 1 - line), line, src,
                               (int)(len - (size_t)(tab2 + 1 - line)), tab2 + 1);
        else
            next = skip ? v4r_strdup(out) : v4r_sprintf("%s%.*s\n", out, (int)len, line);
        free(out);
        out = next;
        line += len + (end != NULL);
    }
    tu_write(dst, name, out);
    free(out);
    free(text);
}

static void write_source(const char *synth, const char *src, int drop)
{
    copy_rows(synth, src, "items.tsv", 0, drop);
    copy_rows(synth, src, "users.tsv", 0, 0);
    copy_rows(synth, src, "train.tsv", 1, drop);
    copy_rows(synth, src, "valid.tsv", 1, drop);
    copy_rows(synth, src, "test.tsv", 1, drop);
}

static void test_imported_catalog_loses_items(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *synth = v4r_path_join(dir, "synth"), *src = v4r_path_join(dir, "src");
    char *inc = v4r_path_join(dir, "inc"), *out = NULL;
    assert_int_equal(tu_run(&out, "dataset synth --users 150 --items 240 --interactions 1200 --seed 5 --images "
                                  "--output '%s'", synth), 0);
    free(out);
    assert_int_equal(v4r_mkdir_p(src, NULL), 0);
    write_source(synth, src, 0);
    char *section = v4r_sprintf("source = import\nformat = tsv\npath = %s\n", src);
    char *conf = write_conf(dir, "import.conf", section);
    out = run(conf, inc);
    assert_int_equal(standin_requests(inc), 240);
    free(out);
    write_source(synth, src, 1); /* 40 items (every sixth) and their interactions are gone */
    out = run(conf, inc);
    assert_says(out, "dataset                      done");
    assert_int_equal(standin_requests(inc), 240); /* nothing to describe */
    assert_says(out, "items of ground: 0 new, 200 reused, 0 failed");
    assert_says(out, "items of encode.title: 0 new, 0 changed, 200 reused, 40 removed, 0 failed");
    assert_says(out, "items of encode.grounded: 0 new, 0 changed, 200 reused, 40 removed, 0 failed");
    assert_says(out, "items of vision: 0 new, 0 changed, 200 reused, 40 removed, 0 failed");
    char *covered = tu_read(inc, "vectors/vision.covered.txt");
    assert_null(strstr(covered, "I000005"));
    assert_non_null(strstr(covered, "I000004"));
    assert_equals_full_run(dir, conf, inc);
    free(covered), free(out), free(conf), free(section), free(inc), free(src), free(synth);
    tu_rmtree(dir);
    free(dir);
}

/* ---- encode --reuse on its own ---- */

/* The counts on the first line of a keys file. */
static void assert_counts(const char *dir, const char *keys, const char *want)
{
    char *text = tu_read(dir, keys);
    assert_non_null(text);
    char *nl = strchr(text, '\n');
    if (nl)
        *nl = 0;
    if (!strstr(text, want))
        fail_msg("%s: '%s' lacks '%s'", keys, text, want);
    free(text);
}

static void test_encode_reuse_keys(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *ds = v4r_path_join(dir, "ds"), *model = v4r_path_join(tu_shared(), "fixtures/models/bert-tiny");
    char *out = NULL;
    assert_int_equal(tu_run(&out, "dataset synth --users 50 --items 60 --interactions 300 --output '%s'", ds), 0);
    free(out);
    tu_write(dir, "a.tsv", "item\ttext\nI000001\tred shoe\nI000002\tblue coat\nI000003\tgreen hat\n");
    tu_write(dir, "b.tsv", "item\ttext\nI000001\tred shoe\nI000002\tdark blue coat\nI000004\tnew scarf\n");
    /* a.npy, then b.npy reusing a.npy: one text changed, one new, one removed, one kept */
    assert_int_equal(tu_run(&out, "encode --model '%s' --dataset '%s' --input '%s/a.tsv' -o '%s/a.npy' --incremental",
                            model, ds, dir, dir), 0);
    free(out);
    assert_int_equal(tu_run(&out, "encode --model '%s' --dataset '%s' --input '%s/b.tsv' -o '%s/b.npy' --reuse '%s/a.npy'",
                            model, ds, dir, dir, dir), 0);
    free(out);
    assert_counts(dir, "b.keys.tsv", "new=1\tchanged=1\treused=1\tremoved=0\tfailed=0\tempty=57");
    assert_int_equal(tu_run(&out, "encode --model '%s' --dataset '%s' --input '%s/b.tsv' -o '%s/c.npy'", model, ds,
                            dir, dir), 0);
    free(out);
    char *b = v4r_path_join(dir, "b.npy"), *c = v4r_path_join(dir, "c.npy");
    char *bx = NULL, *cx = NULL;
    size_t nb, nc;
    assert_int_equal(v4r_read_file(b, &bx, &nb, NULL), 0);
    assert_int_equal(v4r_read_file(c, &cx, &nc, NULL), 0);
    assert_true(nb == nc && !memcmp(bx, cx, nb)); /* equal to encoding b from scratch */
    /* an option that changes the numbers invalidates every key */
    assert_int_equal(tu_run(&out, "encode --model '%s' --dataset '%s' --input '%s/b.tsv' -o '%s/b.npy' --incremental "
                                  "--empty reference", model, ds, dir, dir), 0);
    free(out);
    assert_counts(dir, "b.keys.tsv", "new=0\tchanged=3\treused=0\tremoved=0\tfailed=0\tempty=57");
    /* keys that do not describe the vectors (the vectors were replaced): everything again */
    tu_write(dir, "b.npy", "garbage");
    assert_int_equal(tu_run(&out, "encode --model '%s' --dataset '%s' --input '%s/b.tsv' -o '%s/b.npy' --incremental",
                            model, ds, dir, dir), 0);
    assert_says(out, "encoding every item");
    free(out);
    assert_counts(dir, "b.keys.tsv", "new=3\tchanged=0\treused=0\tremoved=0");
    free(b), free(c), free(bx), free(cx), free(model), free(ds);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_reuse_keys),
        cmocka_unit_test(test_grown_synthetic_catalog),
        cmocka_unit_test(test_imported_catalog_loses_items),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

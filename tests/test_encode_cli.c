/* `vlm4rec encode` end to end on the fixture models: the reference's vectors, dataset order with
 * coverage, --text-template (the same vectors as the texts filled in by hand), --empty reference
 * (the reference's vector of an empty text), and bad input named by line. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/io.h"

#include <jansson.h>

static char *fixture(const char *rel) { return v4r_sprintf("%s/fixtures/%s", tu_shared(), rel); }

/* A file of the source tree (V4R_SHARED_DIR is SRC/../shared). */
static char *source_path(const char *rel)
{
    const char *shared = V4R_SHARED_DIR;
    size_t n = strlen(shared) - strlen("/../shared");
    return v4r_sprintf("%.*s/%s", (int)n, shared, rel);
}

/* A small dataset: items a (Red shoe), b (no title), c (Blue hat), d (Green {cap}). */
static void small_dataset(const char *dir)
{
    tu_write(dir, "ds/items.tsv", "item\ttitle\timage\na\tRed shoe\t\nb\t\t\nc\tBlue hat\t\nd\tGreen {cap}\t\n");
    tu_write(dir, "ds/users.tsv", "user\nu\n");
    tu_write(dir, "ds/train.tsv", "user\titem\ttimestamp\nu\ta\t1\n");
    tu_write(dir, "ds/valid.tsv", "user\titem\ttimestamp\nu\tc\t2\n");
    tu_write(dir, "ds/test.tsv", "user\titem\ttimestamp\n");
}

static void read_npy(const char *dir, const char *name, v4r_matrix *m)
{
    char *path = v4r_path_join(dir, name);
    v4r_err err = {0};
    if (v4r_npy_read(path, m, &err))
        fail_msg("%s: %s", path, err.msg);
    free(path);
}

static int zero_row(const v4r_matrix *m, size_t r)
{
    for (size_t c = 0; c < m->cols; c++)
        if (m->data[r * m->cols + c] != 0)
            return 0;
    return 1;
}

/* The corpus as JSONL with item ids "t0".."t346". */
static char *corpus_jsonl(const char *dir)
{
    char *src = fixture("text/corpus.jsonl"), *dst = v4r_path_join(dir, "corpus.jsonl");
    char *cmd = v4r_sprintf("sed 's/^{\"id\": \\([0-9]*\\)/{\"item\": \"t\\1\"/' '%s' > '%s'", src, dst);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(src);
    return dst;
}

/* 1 for each corpus text that is empty or blank: encode gives those no vector (a zero row). */
static uint8_t *blank_texts(size_t *n)
{
    char *path = fixture("text/corpus.jsonl");
    json_t *texts = json_array();
    v4r_lines r;
    assert_int_equal(v4r_lines_open(&r, path, NULL), 0);
    while (v4r_lines_next(&r, NULL) == 1) {
        json_t *obj = json_loads(r.line, JSON_ALLOW_NUL, NULL);
        json_array_append_new(texts, obj ? obj : json_null());
    }
    v4r_lines_close(&r);
    *n = json_array_size(texts);
    uint8_t *blank = v4r_calloc(*n, 1);
    for (size_t i = 0; i < *n; i++) {
        const char *t = json_string_value(json_object_get(json_array_get(texts, i), "text"));
        blank[i] = t && t[strspn(t, " \t\r\n")] == 0;
    }
    json_decref(texts);
    free(path);
    return blank;
}

static void check_against_golden(const char *npy, const char *golden_rel, float tol)
{
    size_t n_texts;
    uint8_t *blank = blank_texts(&n_texts);
    char *golden = fixture(golden_rel);
    v4r_matrix a, b;
    v4r_err err = {0};
    assert_int_equal(v4r_npy_read(npy, &a, &err), 0);
    assert_int_equal(v4r_npy_read(golden, &b, &err), 0);
    assert_int_equal(a.rows, b.rows);
    assert_int_equal(a.cols, b.cols);
    assert_int_equal(a.rows, n_texts);
    float worst = 0;
    size_t n_blank = 0;
    for (size_t r = 0; r < a.rows; r++) {
        n_blank += blank[r];
        for (size_t c = 0; c < a.cols; c++) {
            float x = a.data[r * a.cols + c];
            if (blank[r])
                assert_true(x == 0);
            else
                worst = fmaxf(worst, fabsf(x - b.data[r * a.cols + c]));
        }
    }
    assert_true(n_blank > 0 && n_blank < 10);
    free(blank);
    if (worst > tol)
        fail_msg("%s: max abs difference %g > %g", npy, worst, tol);
    v4r_matrix_free(&a);
    v4r_matrix_free(&b);
    free(golden);
}

static void test_corpus_matches_reference(void **state)
{
    char *dir = tu_tmpdir(), *corpus = corpus_jsonl(dir), *out = NULL;
    char *tiny = fixture("models/bert-tiny"), *minilm = fixture("models/minilm-l6-shape");
    int rc = tu_run(&out, "encode --model '%s' --input '%s' -o '%s/tiny.npy' --batch-size 5", tiny, corpus, dir);
    if (rc)
        fail_msg("encode: %s", out);
    free(out);
    char *npy = v4r_path_join(dir, "tiny.npy");
    check_against_golden(npy, "goldens/bert-tiny.embeddings.npy", 1e-5f);
    free(npy);
    rc = tu_run(&out, "encode --model '%s' --input '%s' -o '%s/minilm.npy' --threads 1", minilm, corpus, dir);
    if (rc)
        fail_msg("encode: %s", out);
    free(out);
    npy = v4r_path_join(dir, "minilm.npy");
    check_against_golden(npy, "goldens/minilm-l6-shape.embeddings.npy", 1e-4f);
    free(npy);
    free(tiny);
    free(minilm);
    free(corpus);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_dataset_order_and_coverage(void **state)
{
    char *dir = tu_tmpdir(), *tiny = fixture("models/bert-tiny"), *out = NULL;
    tu_write(dir, "ds/items.tsv", "item\ttitle\timage\na\tRed shoe\t\nb\t\t\nc\tBlue hat\t\n");
    tu_write(dir, "ds/users.tsv", "user\nu\n");
    tu_write(dir, "ds/train.tsv", "user\titem\ttimestamp\nu\ta\t1\n");
    tu_write(dir, "ds/valid.tsv", "user\titem\ttimestamp\nu\tc\t2\n");
    tu_write(dir, "ds/test.tsv", "user\titem\ttimestamp\n");
    tu_write(dir, "d.tsv", "item\ttext\nc\tA blue hat.\na\tA red shoe.\nb\t   \n");
    int rc = tu_run(&out, "encode --model '%s' --dataset '%s/ds' --input '%s/d.tsv' -o '%s/v.npy'", tiny, dir, dir,
                    dir);
    if (rc)
        fail_msg("encode: %s", out);
    free(out);
    char *cov = tu_read(dir, "v.covered.txt");
    assert_string_equal(cov, "a\nc\n"); /* item order; b's text is blank */
    free(cov);
    /* the same texts encoded without a dataset, in file order: rows must match */
    tu_write(dir, "d2.tsv", "a\tA red shoe.\nc\tA blue hat.\n");
    assert_int_equal(tu_run(NULL, "encode --model '%s' --input '%s/d2.tsv' -o '%s/w.npy'", tiny, dir, dir), 0);
    char *pv = v4r_path_join(dir, "v.npy"), *pw = v4r_path_join(dir, "w.npy");
    v4r_matrix v, w;
    assert_int_equal(v4r_npy_read(pv, &v, NULL), 0);
    assert_int_equal(v4r_npy_read(pw, &w, NULL), 0);
    assert_int_equal(v.rows, 3);
    assert_memory_equal(v.data, w.data, v.cols * sizeof(float));                  /* a */
    assert_memory_equal(v.data + 2 * v.cols, w.data + w.cols, v.cols * sizeof(float)); /* c */
    for (size_t c = 0; c < v.cols; c++)
        assert_true(v.data[v.cols + c] == 0); /* b: zero row */
    v4r_matrix_free(&v);
    v4r_matrix_free(&w);
    /* titles of the dataset */
    assert_int_equal(tu_run(NULL, "encode --model '%s' --dataset '%s/ds' --titles -o '%s/t.npy' --covered-out '%s/t.txt'",
                            tiny, dir, dir, dir),
                     0);
    cov = tu_read(dir, "t.txt");
    assert_string_equal(cov, "a\nc\n");
    free(cov);
    free(pv);
    free(pw);
    free(tiny);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_text_template(void **state)
{
    char *dir = tu_tmpdir(), *tiny = fixture("models/bert-tiny"), *out = NULL;
    small_dataset(dir);
    tu_write(dir, "d.tsv", "item\tdescription\nc\t  \nd\tA green cap.\na\tA red shoe.\nb\tPlain.\n");
    int rc = tu_run(&out, "encode --model '%s' --dataset '%s/ds' --input '%s/d.tsv' -o '%s/v.npy' "
                          "--text-template '{title}. {description} {{ok}}'", tiny, dir, dir, dir);
    if (rc)
        fail_msg("encode: %s", out);
    free(out);
    /* the same texts filled in by hand, encoded as they are (file order = rows 0, 1, 2) */
    tu_write(dir, "hand.tsv", "a\tRed shoe. A red shoe. {ok}\nb\t. Plain. {ok}\nd\tGreen {cap}. A green cap. {ok}\n");
    assert_int_equal(tu_run(NULL, "encode --model '%s' --input '%s/hand.tsv' -o '%s/w.npy'", tiny, dir, dir), 0);
    /* and the texts without the template differ */
    assert_int_equal(tu_run(NULL, "encode --model '%s' --dataset '%s/ds' --input '%s/d.tsv' -o '%s/plain.npy'", tiny,
                            dir, dir, dir),
                     0);
    v4r_matrix v, w, plain;
    read_npy(dir, "v.npy", &v);
    read_npy(dir, "w.npy", &w);
    read_npy(dir, "plain.npy", &plain);
    assert_int_equal(v.rows, 4);
    assert_int_equal(w.rows, 3);
    size_t row_bytes = v.cols * sizeof(float);
    assert_memory_equal(v.data, w.data, row_bytes);                              /* a */
    assert_memory_equal(v.data + v.cols, w.data + w.cols, row_bytes);            /* b: an empty title */
    assert_memory_equal(v.data + 3 * v.cols, w.data + 2 * w.cols, row_bytes);    /* d: braces in the title */
    assert_true(zero_row(&v, 2));                                                /* c: no description */
    assert_memory_not_equal(v.data, plain.data, row_bytes);
    char *cov = tu_read(dir, "v.covered.txt");
    assert_string_equal(cov, "a\nb\nd\n");
    free(cov);
    /* {description} alone is the text itself */
    assert_int_equal(tu_run(NULL, "encode --model '%s' --dataset '%s/ds' --input '%s/d.tsv' -o '%s/same.npy' "
                                  "--text-template '{description}'", tiny, dir, dir, dir),
                     0);
    v4r_matrix same;
    read_npy(dir, "same.npy", &same);
    assert_memory_equal(same.data, plain.data, v.rows * row_bytes);
    v4r_matrix_free(&same);
    v4r_matrix_free(&v);
    v4r_matrix_free(&w);
    v4r_matrix_free(&plain);
    free(tiny);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* The reference (sentence-transformers) gives "" and blank texts the vector of [CLS] [SEP]:
 * tests/data/bert-tiny.empty.npy, written by tests/reference/empty_text.py. */
static void test_empty_reference(void **state)
{
    char *dir = tu_tmpdir(), *tiny = fixture("models/bert-tiny"), *golden = source_path("tests/data/bert-tiny.empty.npy");
    char *out = NULL;
    tu_write(dir, "e.jsonl", "{\"item\": \"e0\", \"text\": \"\"}\n{\"item\": \"e1\", \"text\": \"   \"}\n"
                             "{\"item\": \"e2\", \"text\": \" \\t\\n \"}\n{\"item\": \"x\", \"text\": \"a real text\"}\n");
    int rc = tu_run(&out, "encode --model '%s' --input '%s/e.jsonl' -o '%s/r.npy' --empty reference", tiny, dir, dir);
    if (rc)
        fail_msg("encode: %s", out);
    free(out);
    assert_int_equal(tu_run(NULL, "encode --model '%s' --input '%s/e.jsonl' -o '%s/z.npy'", tiny, dir, dir), 0);
    v4r_matrix r, z, g;
    read_npy(dir, "r.npy", &r);
    read_npy(dir, "z.npy", &z);
    assert_int_equal(v4r_npy_read(golden, &g, NULL), 0);
    assert_int_equal(r.rows, 4);
    assert_int_equal(g.rows, 3);
    assert_int_equal(g.cols, r.cols);
    float worst = 0;
    for (size_t i = 0; i < 3; i++) {
        for (size_t c = 0; c < r.cols; c++)
            worst = fmaxf(worst, fabsf(r.data[i * r.cols + c] - g.data[i * g.cols + c]));
        assert_true(zero_row(&z, i)); /* the default: no vector */
    }
    if (worst > 1e-5f)
        fail_msg("--empty reference: max abs difference %g from the reference > 1e-5", worst);
    assert_memory_equal(r.data + 3 * r.cols, z.data + 3 * z.cols, r.cols * sizeof(float));
    /* with a dataset, the empty text's item counts as covered */
    small_dataset(dir);
    tu_write(dir, "d.tsv", "a\tA red shoe.\nb\t \n");
    assert_int_equal(tu_run(NULL, "encode --model '%s' --dataset '%s/ds' --input '%s/d.tsv' -o '%s/c.npy' --empty "
                                  "reference", tiny, dir, dir, dir),
                     0);
    char *cov = tu_read(dir, "c.covered.txt");
    assert_string_equal(cov, "a\nb\n");
    free(cov);
    v4r_matrix_free(&r);
    v4r_matrix_free(&z);
    v4r_matrix_free(&g);
    free(golden);
    free(tiny);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void expect_fail(const char *dir, int code, const char *needle, const char *args)
{
    char *out = NULL, *tiny = fixture("models/bert-tiny");
    int rc = tu_run(&out, "encode --model '%s' %s -o '%s/bad.npy'", tiny, args, dir);
    if (rc != code || !strstr(out, needle))
        fail_msg("exit %d (want %d), output lacks '%s':\n%s", rc, code, needle, out);
    char *left = tu_read(dir, "bad.npy");
    assert_null(left);
    free(out);
    free(tiny);
}

static void test_bad_input(void **state)
{
    char *dir = tu_tmpdir();
    tu_write(dir, "utf8.tsv", "a\tfine\nb\tbad \xC3\x28 byte\n");
    char *args = v4r_sprintf("--input '%s/utf8.tsv'", dir);
    expect_fail(dir, 3, "utf8.tsv:2: ", args);
    free(args);
    tu_write(dir, "j.jsonl", "{\"item\": \"a\", \"text\": \"ok\"}\n{\"item\": \"b\"}\n");
    args = v4r_sprintf("--input '%s/j.jsonl'", dir);
    expect_fail(dir, 3, "j.jsonl:2: field 'text' missing", args);
    free(args);
    tu_write(dir, "k.jsonl", "{\"item\": \"a\", \"text\": \"ok\"\n");
    args = v4r_sprintf("--input '%s/k.jsonl'", dir);
    expect_fail(dir, 3, "k.jsonl:1: not a JSON object", args);
    free(args);
    tu_write(dir, "ds/items.tsv", "item\ttitle\timage\na\t\t\n");
    tu_write(dir, "ds/users.tsv", "user\n");
    tu_write(dir, "ds/train.tsv", "user\titem\n");
    tu_write(dir, "ds/valid.tsv", "user\titem\n");
    tu_write(dir, "ds/test.tsv", "user\titem\n");
    tu_write(dir, "u.tsv", "a\tone\nzz\ttwo\na\tthree\n");
    args = v4r_sprintf("--dataset '%s/ds' --input '%s/u.tsv'", dir, dir);
    expect_fail(dir, 3, "u.tsv:2: field 'item': unknown item 'zz'", args);
    free(args);
    tu_write(dir, "u.tsv", "a\tone\na\tthree\n");
    args = v4r_sprintf("--dataset '%s/ds' --input '%s/u.tsv'", dir, dir);
    expect_fail(dir, 3, "u.tsv:2: item 'a' already has a text at line 1", args);
    free(args);
    args = v4r_sprintf("--input '%s/u.tsv' --titles", dir);
    expect_fail(dir, 2, "either --input FILE or --titles", args);
    free(args);
    static const char *const templates[][2] = {
        {"{title}. {desc}", "unknown placeholder '{desc}'"},
        {"{Title} {description}", "unknown placeholder '{Title}'"},
        {"{title}. {description", "'{' at character 10 is not closed"},
        {"a } {description}", "a lone '}' at character 3"},
        {"{{x} {description}", "a lone '}' at character 4"},
    };
    for (size_t i = 0; i < sizeof templates / sizeof *templates; i++) {
        args = v4r_sprintf("--dataset '%s/ds' --input '%s/u.tsv' --text-template '%s'", dir, dir, templates[i][0]);
        expect_fail(dir, 2, templates[i][1], args);
        free(args);
    }
    args = v4r_sprintf("--input '%s/u.tsv' --text-template '{title}: {description}'", dir);
    expect_fail(dir, 2, "{title} needs --dataset", args);
    free(args);
    char *tf = NULL;
    assert_int_equal(tu_run(&tf, "encode --tfidf --input '%s/u.tsv' --empty reference -o '%s/bad.npy'", dir, dir), 2);
    assert_non_null(strstr(tf, "--empty reference needs --model"));
    free(tf);
    args = v4r_sprintf("--input '%s/u.tsv' --empty blank", dir);
    expect_fail(dir, 2, "--empty must be zero or reference", args);
    free(args);
    char *out = NULL, *home = v4r_path_join(dir, "home");
    setenv("VLM4REC_HOME", home, 1); /* an empty model cache */
    free(home);
    assert_int_equal(tu_run(&out, "encode --model nobody/nothing --offline --input '%s/u.tsv' -o '%s/x.npy'", dir, dir),
                     4);
    assert_non_null(strstr(out, "is not in the model cache"));
    free(out);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_matches_reference),
        cmocka_unit_test(test_dataset_order_and_coverage),
        cmocka_unit_test(test_text_template),
        cmocka_unit_test(test_empty_reference),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

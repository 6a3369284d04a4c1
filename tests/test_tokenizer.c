/* tokenizer: the fixture corpus against the reference ids, special tokens, invalid UTF-8, the CLI;
 * recently assigned code points against the reference (tests/data/tokenizer-unicode/). */
#include "testutil.h"

#include "../src/text/tokenizer_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/text.h"

static char *model_path(const char *name) { return v4r_sprintf("%s/fixtures/models/%s", tu_shared(), name); }

static v4r_tokenizer *load_dir(const char *dir)
{
    v4r_tokenizer *t = NULL;
    v4r_err err = {0};
    int rc = v4r_tokenizer_load(dir, &t, &err);
    if (rc)
        print_error("load %s: %s\n", dir, err.msg);
    assert_int_equal(rc, 0);
    return t;
}

static v4r_tokenizer *load_model(const char *name)
{
    char *dir = model_path(name);
    v4r_tokenizer *t = load_dir(dir);
    free(dir);
    return t;
}

/* The tokens of text joined by spaces (caller frees). */
static char *tokens_of(const v4r_tokenizer *t, const char *text, size_t max_len)
{
    int32_t *ids;
    size_t n;
    v4r_err err = {0};
    assert_int_equal(v4r_tokenize(t, text, max_len, &ids, &n, &err), 0);
    char *s = v4r_strdup("");
    for (size_t i = 0; i < n; i++) {
        char *next = v4r_sprintf("%s%s%s", s, i ? " " : "", v4r_tokenizer_token(t, ids[i]));
        free(s);
        s = next;
    }
    free(ids);
    return s;
}

static void expect_tokens(const v4r_tokenizer *t, const char *text, const char *want)
{
    char *got = tokens_of(t, text, 0);
    if (strcmp(got, want))
        print_error("text '%s': got '%s', want '%s'\n", text, got, want);
    assert_string_equal(got, want);
    free(got);
}

static json_t *load_jsonl(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    json_t *all = json_array();
    char line[1 << 16];
    while (fgets(line, sizeof line, fp)) {
        json_error_t je;
        json_t *o = json_loads(line, JSON_ALLOW_NUL, &je);
        assert_non_null(o);
        json_array_append_new(all, o);
    }
    fclose(fp);
    *n = json_array_size(all);
    return all;
}

/* The text of a corpus record without its NUL bytes (U+0000 is dropped by clean_text anyway). */
static char *corpus_text(const json_t *rec)
{
    const json_t *v = json_object_get(rec, "text");
    size_t n = json_string_length(v), k = 0;
    char *s = v4r_strndup(json_string_value(v), n);
    for (size_t i = 0; i < n; i++)
        if (s[i])
            s[k++] = s[i];
    s[k] = 0;
    return s;
}

static void expect_ids(const v4r_tokenizer *t, const char *text, size_t max_len, const json_t *want, long id)
{
    int32_t *ids;
    size_t n;
    v4r_err err = {0};
    assert_int_equal(v4r_tokenize(t, text, max_len, &ids, &n, &err), 0);
    int same = n == json_array_size(want);
    for (size_t i = 0; same && i < n; i++)
        same = ids[i] == json_integer_value(json_array_get(want, i));
    if (!same)
        print_error("corpus id %ld (max %zu): %zu ids, want %zu\n", id, max_len, n, json_array_size(want));
    assert_true(same);
    free(ids);
}

static void expect_token_strings(const v4r_tokenizer *t, const char *text, const json_t *want, long id)
{
    int32_t *ids;
    size_t n;
    v4r_err err = {0};
    assert_int_equal(v4r_tokenize(t, text, 0, &ids, &n, &err), 0);
    assert_int_equal(n, json_array_size(want));
    for (size_t i = 0; i < n; i++)
        if (strcmp(v4r_tokenizer_token(t, ids[i]), json_string_value(json_array_get(want, i)))) {
            print_error("corpus id %ld token %zu\n", id, i);
            fail();
        }
    free(ids);
}

/* Every text of dir/corpus.jsonl against the reference's ids (no limit and 256) and token strings. */
static void check_corpus_in(const v4r_tokenizer *t, const char *dir, size_t min_texts)
{
    char *cpath = v4r_sprintf("%s/corpus.jsonl", dir);
    char *rpath = v4r_sprintf("%s/tokens.bert-base-uncased.jsonl", dir);
    size_t nc, nr;
    json_t *corpus = load_jsonl(cpath, &nc), *ref = load_jsonl(rpath, &nr);
    assert_int_equal(nc, nr);
    assert_true(nc >= min_texts);
    for (size_t i = 0; i < nc; i++) {
        const json_t *c = json_array_get(corpus, i), *r = json_array_get(ref, i);
        long id = (long)json_integer_value(json_object_get(c, "id"));
        assert_int_equal(id, json_integer_value(json_object_get(r, "id")));
        char *text = corpus_text(c);
        expect_ids(t, text, 0, json_object_get(r, "ids"), id);
        expect_ids(t, text, 256, json_object_get(r, "ids_256"), id);
        expect_token_strings(t, text, json_object_get(r, "tokens"), id);
        free(text);
    }
    json_decref(corpus);
    json_decref(ref);
    free(cpath);
    free(rpath);
}

static void check_corpus(const v4r_tokenizer *t)
{
    char *dir = v4r_sprintf("%s/fixtures/text", tu_shared());
    check_corpus_in(t, dir, 300);
    free(dir);
}

static void test_corpus_bert_tiny(void **state)
{
    v4r_tokenizer *t = load_model("bert-tiny");
    assert_int_equal(v4r_tokenizer_vocab_size(t), 30522);
    assert_string_equal(v4r_tokenizer_token(t, 101), "[CLS]");
    assert_null(v4r_tokenizer_token(t, 30522));
    assert_null(v4r_tokenizer_token(t, -1));
    check_corpus(t);
    v4r_tokenizer_free(t);
    (void)state;
}

static void test_corpus_minilm(void **state)
{
    v4r_tokenizer *t = load_model("minilm-l6-shape");
    check_corpus(t);
    v4r_tokenizer_free(t);
    (void)state;
}

/* A directory with only vocab.txt (bert-base-uncased defaults), or only tokenizer.json. */
static void test_single_file_dirs(void **state)
{
    const char *files[2] = {"vocab.txt", "tokenizer.json"};
    for (int k = 0; k < 2; k++) {
        char *dir = tu_tmpdir(), *src = model_path("bert-tiny");
        char *data = tu_read(src, files[k]);
        assert_non_null(data);
        tu_write(dir, files[k], data);
        v4r_tokenizer *t = load_dir(dir);
        check_corpus(t);
        expect_tokens(t, "x [MASK]y", "[CLS] x [MASK] y [SEP]");
        v4r_tokenizer_free(t);
        free(data);
        free(src);
        tu_rmtree(dir);
        free(dir);
    }
    (void)state;
}

static void test_timing(void **state)
{
    v4r_tokenizer *t = load_model("bert-tiny");
    char *cpath = v4r_sprintf("%s/fixtures/text/corpus.jsonl", tu_shared());
    size_t nc;
    json_t *corpus = load_jsonl(cpath, &nc);
    char **texts = v4r_calloc(nc, sizeof *texts);
    for (size_t i = 0; i < nc; i++)
        texts[i] = corpus_text(json_array_get(corpus, i));
    double t0 = v4r_now();
    size_t total = 0;
    for (size_t i = 0; i < nc; i++) {
        int32_t *ids;
        size_t n;
        assert_int_equal(v4r_tokenize(t, texts[i], 256, &ids, &n, NULL), 0);
        total += n;
        free(ids);
    }
    double ms = (v4r_now() - t0) * 1e3;
    print_message("tokenized %zu texts (%zu tokens) in %.2f ms\n", nc, total, ms);
    assert_true(ms < 2000); /* generous: sanitizer builds run this too */
    for (size_t i = 0; i < nc; i++)
        free(texts[i]);
    free(texts);
    json_decref(corpus);
    free(cpath);
    v4r_tokenizer_free(t);
    (void)state;
}

static void test_special_tokens(void **state)
{
    v4r_tokenizer *t = load_model("bert-tiny");
    expect_tokens(t, "a[MASK]b", "[CLS] a [MASK] b [SEP]");
    expect_tokens(t, "say [SEP] hello", "[CLS] say [SEP] hello [SEP]");
    expect_tokens(t, "[mask]", "[CLS] [ mask ] [SEP]");        /* case-sensitive, not normalized */
    expect_tokens(t, "[MASK[MASK]]", "[CLS] [ mask [MASK] ] [SEP]");
    expect_tokens(t, "##hash", "[CLS] # # hash [SEP]");
    v4r_tokenizer_free(t);
    (void)state;
}

static void test_normalization(void **state)
{
    v4r_tokenizer *t = load_model("bert-tiny");
    expect_tokens(t, "", "[CLS] [SEP]");
    expect_tokens(t, " \t\n ", "[CLS] [SEP]");
    expect_tokens(t, "Caf\xC3\xA9 \xC3\x91" "and\xC3\xBA", "[CLS] cafe nan ##du [SEP]"); /* Café Ñandú */
    expect_tokens(t, "e\xCC\x81", "[CLS] e [SEP]");                                   /* e + U+0301 */
    expect_tokens(t, "a\xE4\xB8\xAD\xE6\x96\x87" "b", "[CLS] a 中 文 b [SEP]");          /* CJK spaced */
    expect_tokens(t, "he\xE2\x80\x8Bl\x01lo", "[CLS] hello [SEP]");                   /* Cf, Cc dropped */
    expect_tokens(t, "hello\xC2\xA0world", "[CLS] hello world [SEP]");                  /* NBSP */
    expect_tokens(t, "\xC4\xB0", "[CLS] i [SEP]");                                      /* U+0130 */
    char word[128];
    memset(word, 'a', 101);
    word[101] = 0;
    expect_tokens(t, word, "[CLS] [UNK] [SEP]");
    word[100] = 0;
    char *got = tokens_of(t, word, 0);
    assert_null(strstr(got, "[UNK]"));
    free(got);
    v4r_tokenizer_free(t);
    (void)state;
}

static void test_truncation(void **state)
{
    v4r_tokenizer *t = load_model("bert-tiny");
    char *got = tokens_of(t, "hello world, hello world", 5);
    assert_string_equal(got, "[CLS] hello world , [SEP]");
    free(got);
    got = tokens_of(t, "hello world", 2);
    assert_string_equal(got, "[CLS] [SEP]");
    free(got);
    got = tokens_of(t, "aaaaaaaaaaaa", 3); /* a word cut between its pieces */
    assert_int_equal(strncmp(got, "[CLS] ", 6), 0);
    assert_int_equal(strlen(strstr(got, " [SEP]")), 6);
    free(got);
    got = tokens_of(t, "worldwide\xF0\x9F\x98\x80 x", 3); /* the unmatched tail makes the word [UNK] */
    assert_string_equal(got, "[CLS] [UNK] [SEP]");
    free(got);
    int32_t *ids;
    size_t n;
    v4r_err err = {0};
    assert_int_equal(v4r_tokenize(t, "x", 1, &ids, &n, &err), V4R_EUSAGE);
    v4r_tokenizer_free(t);
    (void)state;
}

static void expect_bad_utf8(const v4r_tokenizer *t, const char *text, size_t offset, const char *why)
{
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    v4r_err err = {0};
    assert_int_equal(v4r_tokenize(t, text, 0, &ids, &n, &err), V4R_EINPUT);
    assert_null(ids);
    assert_int_equal(n, 0);
    char want[64];
    snprintf(want, sizeof want, "byte offset %zu", offset);
    if (!strstr(err.msg, want) || !strstr(err.msg, why))
        print_error("message '%s' lacks '%s' / '%s'\n", err.msg, want, why);
    assert_non_null(strstr(err.msg, want));
    assert_non_null(strstr(err.msg, why));
}

static void test_invalid_utf8(void **state)
{
    v4r_tokenizer *t = load_model("bert-tiny");
    expect_bad_utf8(t, "ab\xE2\x82", 2, "truncated");
    expect_bad_utf8(t, "ab\xE2\x82x", 2, "truncated");
    expect_bad_utf8(t, "\xC0\xAF", 0, "overlong");
    expect_bad_utf8(t, "ok \xE0\x80\xAF", 3, "overlong");
    expect_bad_utf8(t, "abc\x80", 3, "continuation");
    expect_bad_utf8(t, "\xED\xA0\x80", 0, "surrogate");
    expect_bad_utf8(t, "\xF4\x90\x80\x80", 0, "above U+10FFFF");
    expect_bad_utf8(t, "a\xFF", 1, "invalid byte");
    v4r_tokenizer_free(t);
    (void)state;
}

/* A tokenizer.json variant: [MASK] single_word, a normalized added token "HeLLo" (id 30522). */
static void test_added_token_flags(void **state)
{
    char *src = model_path("bert-tiny"), *dir = tu_tmpdir();
    char *path = v4r_path_join(src, "tokenizer.json");
    json_t *tj = json_load_file(path, 0, NULL);
    assert_non_null(tj);
    json_t *added = json_object_get(tj, "added_tokens");
    json_object_set_new(json_array_get(added, 4), "single_word", json_true());
    json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", 30522, "content", "HeLLo",
                                           "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 1, "special", 0));
    char *text = json_dumps(tj, 0);
    tu_write(dir, "tokenizer.json", text);
    v4r_tokenizer *t = load_dir(dir);
    assert_int_equal(v4r_tokenizer_vocab_size(t), 30523);
    expect_tokens(t, "a[MASK]b", "[CLS] a [ mask ] b [SEP]");
    expect_tokens(t, "a [MASK] b", "[CLS] a [MASK] b [SEP]");
    expect_tokens(t, "say HELLO!", "[CLS] say HeLLo ! [SEP]");
    expect_tokens(t, "sayhello", "[CLS] say HeLLo [SEP]");
    v4r_tokenizer_free(t);
    free(text);
    json_decref(tj);
    free(path);
    free(src);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_cli(void **state)
{
    char *dir = tu_tmpdir(), *model = model_path("bert-tiny"), *out = NULL;
    tu_write(dir, "in.jsonl", "{\"id\": \"a\", \"text\": \"Hello, world!\"}\n\n{\"text\": \"x\"}\n");
    assert_int_equal(tu_run(&out, "tokenize --model '%s' --input '%s/in.jsonl'", model, dir), 0);
    assert_string_equal(out, "{\"id\": \"a\", \"ids\": [101, 7592, 1010, 2088, 999, 102], \"tokens\": [\"[CLS]\", "
                             "\"hello\", \",\", \"world\", \"!\", \"[SEP]\"]}\n"
                             "{\"id\": 1, \"ids\": [101, 1060, 102], \"tokens\": [\"[CLS]\", \"x\", \"[SEP]\"]}\n");
    free(out);
    tu_write(dir, "in.txt", "\nsay \"hello\"\n");
    assert_int_equal(tu_run(&out, "tokenize --model '%s' --input '%s/in.txt' --max-length 4", model, dir), 0);
    assert_string_equal(out, "{\"id\": 0, \"ids\": [101, 102], \"tokens\": [\"[CLS]\", \"[SEP]\"]}\n"
                             "{\"id\": 1, \"ids\": [101, 2360, 1000, 102], \"tokens\": [\"[CLS]\", \"say\", \"\\\"\", "
                             "\"[SEP]\"]}\n");
    free(out);
    char *many = v4r_strdup("");
    for (int i = 0; i < 300; i++) {
        char *next = v4r_sprintf("%s x", many);
        free(many);
        many = next;
    }
    tu_write(dir, "long.txt", many);
    assert_int_equal(tu_run(&out, "tokenize --model '%s' --input '%s/long.txt' --format text", model, dir), 0);
    size_t commas = 0;
    for (char *p = strstr(out, "\"ids\""); *p && *p != ']'; p++)
        commas += *p == ',';
    assert_int_equal(commas + 1, 256); /* max_seq_length of sentence_bert_config.json */
    free(out);
    free(many);
    assert_int_equal(tu_run(&out, "tokenize --model '%s' --input '%s/long.txt' --max-length 0", model, dir), 0);
    assert_non_null(strstr(out, "\"ids\": [101, 1060,"));
    free(out);
    free(model);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void expect_cli_fail(const char *dir, const char *model, int code, const char *what, const char *file,
                            const char *content)
{
    char *out = NULL;
    tu_write(dir, file, content);
    int rc = tu_run(&out, "tokenize --model '%s' --input '%s/%s'", model, dir, file);
    if (rc != code || !strstr(out, what))
        print_error("exit %d, output: %s\n", rc, out);
    assert_int_equal(rc, code);
    assert_non_null(strstr(out, what));
    free(out);
}

static void test_cli_errors(void **state)
{
    char *dir = tu_tmpdir(), *model = model_path("bert-tiny"), *out = NULL;
    expect_cli_fail(dir, model, 3, "bad.txt:2: invalid UTF-8 at byte offset 1", "bad.txt", "fine\na\xC3(\n");
    expect_cli_fail(dir, model, 3, "bad.jsonl:2: malformed JSON", "bad.jsonl", "{\"text\": \"a\"}\n{\"text\": \n");
    expect_cli_fail(dir, model, 3, "no.jsonl:1: the record has no \"text\"", "no.jsonl", "{\"title\": \"a\"}\n");
    expect_cli_fail(dir, model, 3, "num.jsonl:1: the record has no \"text\"", "num.jsonl", "{\"text\": 5}\n");
    assert_int_equal(tu_run(&out, "tokenize --input x"), 2);
    assert_non_null(strstr(out, "--model is required"));
    free(out);
    assert_int_equal(tu_run(NULL, "tokenize --model '%s'", model), 2);
    assert_int_equal(tu_run(NULL, "tokenize --model '%s' --input x --format csv", model), 2);
    assert_int_equal(tu_run(NULL, "tokenize --model '%s' --input x --max-length 1", model), 2);
    assert_int_equal(tu_run(NULL, "tokenize --model '%s' --input x --max-length -3", model), 2);
    assert_int_equal(tu_run(NULL, "tokenize --model '%s' --input '%s/missing'", model, dir), 4);
    assert_int_equal(tu_run(NULL, "tokenize --model '%s' --input x", dir), 4);
    assert_int_equal(tu_run(&out, "tokenize --help"), 0);
    assert_non_null(strstr(out, "--max-length"));
    free(out);
    free(model);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* Texts with recently assigned code points against the reference's ids. */
static void test_unicode_corpus(void **state)
{
    v4r_tokenizer *t = load_model("bert-tiny");
    check_corpus_in(t, V4R_TEST_DATA_DIR "/tokenizer-unicode", 20);
    v4r_tokenizer_free(t);
    (void)state;
}

#define DIGEST_BLOCK 4096

static uint64_t fnv64(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001B3ULL;
    return h;
}

/* The pre-tokens of normalized v[0..n) as the digest hashes them: pieces joined by 0x1F, then 0x1E. */
static uint64_t hash_pieces(uint64_t h, const int32_t *v, size_t n)
{
    char buf[8];
    int pieces = 0, open = 0;
    for (size_t i = 0; i < n; i++) {
        int ws = v4r_uc_is_whitespace(v[i]), punct = !ws && v4r_uc_is_punct(v[i]);
        if (ws || punct)
            open = 0;
        if (ws)
            continue;
        if (!open && pieces++)
            h = fnv64(h, "\x1f", 1);
        h = fnv64(h, buf, v4r_utf8_put(v[i], buf));
        open = !punct;
    }
    return fnv64(h, "\x1e", 1);
}

/* Every code point, normalized and pre-tokenized in "a" + ch + "b", hashed per block of 4096 code
 * points against the reference's hashes (tests/reference/tokenizer_unicode.py). */
static void test_unicode_every_code_point(void **state)
{
    v4r_tokenizer *t = load_model("bert-tiny");
    char *text = tu_read(V4R_TEST_DATA_DIR "/tokenizer-unicode", "digest.txt");
    assert_non_null(text);
    v4r_cpvec norm = {0}, tmp = {0};
    size_t blocks = 0, bad = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned first;
        unsigned long long want;
        if (line[0] == '#')
            continue;
        assert_int_equal(sscanf(line, "%x %llx", &first, &want), 2);
        uint64_t h = 0xCBF29CE484222325ULL;
        for (int32_t cp = (int32_t)first; cp < (int32_t)first + DIGEST_BLOCK && cp <= 0x10FFFF; cp++) {
            if (cp >= 0xD800 && cp <= 0xDFFF)
                continue;
            int32_t in[3] = {'a', cp, 'b'};
            v4r_normalize(t, in, 3, &norm, &tmp);
            h = hash_pieces(h, norm.v, norm.n);
        }
        if (h != want && bad++ < 10)
            print_error("code points U+%04X..U+%04X differ from the reference\n", first, first + DIGEST_BLOCK - 1);
        blocks++;
    }
    assert_int_equal(blocks, 0x110000 / DIGEST_BLOCK);
    assert_int_equal(bad, 0);
    free(norm.v);
    free(tmp.v);
    free(text);
    v4r_tokenizer_free(t);
    (void)state;
}

/* Single characters whose reference treatment differs from current Unicode data. */
static void test_recent_code_points(void **state)
{
    v4r_tokenizer *t = load_model("bert-tiny");
    expect_tokens(t, "a\xD8\x9D" "b", "[CLS] [UNK] [SEP]");        /* U+061D: not punctuation there */
    expect_tokens(t, "a\xE2\xB9\x9D" "b", "[CLS] [UNK] [SEP]");    /* U+2E5D */
    expect_tokens(t, "a\xE1\x99\xAD" "b", "[CLS] a [UNK] b [SEP]"); /* U+166D: still punctuation there */
    expect_tokens(t, "a\xE0\xA2\x90" "b", "[CLS] [UNK] [SEP]");    /* U+0890 (Cf): kept */
    expect_tokens(t, "cafe\xDF\xBD", "[CLS] [UNK] [SEP]");          /* U+07FD (Mn): not stripped */
    expect_tokens(t, "cafe\xCC\x81", "[CLS] cafe [SEP]");           /* U+0301 stripped */
    expect_tokens(t, "a\xF0\x9F\xAB\xA0" "b", "[CLS] [UNK] [SEP]"); /* U+1FAE0 */
    v4r_tokenizer_free(t);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_bert_tiny),  cmocka_unit_test(test_corpus_minilm),
        cmocka_unit_test(test_single_file_dirs),  cmocka_unit_test(test_timing),
        cmocka_unit_test(test_special_tokens),    cmocka_unit_test(test_normalization),
        cmocka_unit_test(test_truncation),        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_added_token_flags), cmocka_unit_test(test_cli),
        cmocka_unit_test(test_cli_errors),        cmocka_unit_test(test_unicode_corpus),
        cmocka_unit_test(test_unicode_every_code_point), cmocka_unit_test(test_recent_code_points),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* `vlm4rec cache` end to end: stats, export, import, merge with their exit codes, and `vlm4rec
 * encode` reading a cache: the same bytes as encoding its export. */
#include "cache_testutil.h"

#include <jansson.h>
#include <stdio.h>

#include "vlm4rec/io.h"

static const char *paper_hash(char hex[65])
{
    const char *p = v4r_prompt_preset("paper");
    v4r_sha256_hex(p, strlen(p), hex);
    return hex;
}

static void expect_run(int code, const char *needle, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void expect_run(int code, const char *needle, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *out = NULL;
    int rc = tu_run(&out, "%s", args);
    if (rc != code || (needle && !strstr(out, needle)))
        fail_msg("vlm4rec %s: exit %d, expected %d with '%s':\n%s", args, rc, code, needle ? needle : "", out);
    free(out);
}

/* Three items a, b, c; c has an image file. */
static void write_dataset(const char *dir)
{
    tu_write(dir, "ds/items.tsv", "item\ttitle\timage\na\tRed shoe\t\nb\tBlue hat\t\nc\tGreen bag\timg/c.jpg\n");
    tu_write(dir, "ds/img/c.jpg", "jpeg bytes");
    tu_write(dir, "ds/users.tsv", "user\nu\n");
    tu_write(dir, "ds/train.tsv", "user\titem\ttimestamp\nu\ta\t1\n");
    tu_write(dir, "ds/valid.tsv", "user\titem\ttimestamp\nu\tb\t2\n");
    tu_write(dir, "ds/test.tsv", "user\titem\ttimestamp\nu\tc\t3\n");
}

static void test_usage_and_stats(void **state)
{
    char *dir = tu_tmpdir(), *out = NULL;
    expect_run(0, "cache stats CACHE", "cache --help");
    expect_run(0, "cache merge OUT SRC", "cache stats --help");
    expect_run(2, "subcommand is required", "cache");
    expect_run(2, "unknown subcommand 'frob'", "cache frob");
    expect_run(2, "expected one CACHE", "cache stats");
    expect_run(2, "bad option", "cache stats x.db --bogus");
    expect_run(2, "--covered does not apply", "cache stats x.db --covered y");
    expect_run(2, "--json does not apply", "cache export x.db -o y --json");
    expect_run(2, "--dataset does not apply", "cache merge a b --dataset d");
    expect_run(2, "--replace does not apply", "cache stats x.db --replace");
    expect_run(2, "--prompt-hash", "cache stats x.db --prompt-hash 12");
    /* a missing cache: i/o error naming it, and nothing created */
    expect_run(4, "missing.db", "cache stats '%s/missing.db'", dir);
    char *missing = v4r_path_join(dir, "missing.db");
    assert_false(v4r_file_exists(missing));
    free(missing);
    /* not a cache */
    tu_write(dir, "junk.db", "plain text, not SQLite, and long enough that SQLite reads a whole header of it.....\n");
    expect_run(3, "junk.db: not a vlm4rec cache", "cache stats '%s/junk.db'", dir);
    /* a real one, through import */
    tu_write(dir, "d.tsv", "a\tA red shoe.\nb\tA blue hat.\n");
    expect_run(0, NULL, "cache import '%s/c.db' '%s/d.tsv' --model llava --prompt-preset paper", dir, dir);
    assert_int_equal(tu_run(&out, "cache stats '%s/c.db'", dir), 0);
    assert_non_null(strstr(out, "done       2\n"));
    assert_non_null(strstr(out, "llava  "));
    assert_non_null(strstr(out, "\"Describe this product image"));
    free(out);
    assert_int_equal(tu_run(&out, "cache stats '%s/c.db' --json --model llava", dir), 0);
    json_error_t je;
    json_t *root = json_loads(out, 0, &je);
    if (!root)
        fail_msg("bad JSON (%s): %s", je.text, out);
    assert_int_equal(json_integer_value(json_object_get(root, "done")), 2);
    json_decref(root);
    free(out);
    assert_int_equal(tu_run(&out, "cache stats '%s/c.db' --model other", dir), 0);
    assert_non_null(strstr(out, "rows       0\n"));
    free(out);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_import(void **state)
{
    char *dir = tu_tmpdir(), hex[65];
    write_dataset(dir);
    tu_write(dir, "d.jsonl",
             "{\"item\": \"a\", \"description\": \"A red shoe.\"}\n{\"id\": \"c\", \"text\": \"A bag.\"}\n");
    expect_run(2, "--model is required", "cache import '%s/c.db' '%s/d.jsonl' --prompt x", dir, dir);
    expect_run(2, "exactly one of", "cache import '%s/c.db' '%s/d.jsonl' --model m", dir, dir);
    expect_run(2, "exactly one of", "cache import '%s/c.db' '%s/d.jsonl' --model m --prompt x --prompt-preset paper",
               dir, dir);
    expect_run(2, "paper or script", "cache import '%s/c.db' '%s/d.jsonl' --model m --prompt-preset novel", dir, dir);
    expect_run(2, "64 hex digits", "cache import '%s/c.db' '%s/d.jsonl' --model m --prompt-hash abcdef", dir, dir);
    expect_run(2, "expected CACHE and FILE", "cache import '%s/c.db' --model m --prompt x", dir);
    expect_run(4, "nope.txt", "cache import '%s/c.db' '%s/d.jsonl' --model m --prompt-file '%s/nope.txt'", dir, dir,
               dir);
    expect_run(4, "nope.jsonl", "cache import '%s/c.db' '%s/nope.jsonl' --model m --prompt x", dir, dir);
    tu_write(dir, "bad.tsv", "a\tfine\nb\t   \n");
    expect_run(3, "bad.tsv:2: empty description", "cache import '%s/c.db' '%s/bad.tsv' --model m --prompt x", dir, dir);
    tu_write(dir, "unknown.tsv", "a\tfine\nzz\tno such item\n");
    expect_run(3, "unknown.tsv:2: unknown item 'zz'",
               "cache import '%s/c.db' '%s/unknown.tsv' --model m --prompt x --dataset '%s/ds'", dir, dir, dir);
    /* the failed imports into a new file left none */
    char *db = v4r_path_join(dir, "c.db");
    assert_false(v4r_file_exists(db));
    expect_run(0, NULL, "cache import '%s/c.db' '%s/d.jsonl' --model first --prompt-hash %s", dir, dir, PH);
    /* into an existing cache they store nothing, not even their prompt */
    expect_run(3, "bad.tsv:2: empty description", "cache import '%s/c.db' '%s/bad.tsv' --model m --prompt x", dir, dir);
    assert_true(v4r_file_exists(db));
    assert_int_equal(raw_int(db, "SELECT count(*) FROM descriptions"), 2);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM prompts"), 0);
    /* a prompt file: trailing newlines dropped; the hash is of the template */
    tu_write(dir, "prompt.txt", "Describe {title}.\n\n");
    expect_run(0, NULL, "cache import '%s/c.db' '%s/d.jsonl' --model m --prompt-file '%s/prompt.txt' --dataset '%s/ds'",
               dir, dir, dir, dir);
    v4r_sha256_hex("Describe {title}.", 17, hex);
    char *t = raw_text(db, "SELECT text FROM prompts WHERE hash = %Q", hex);
    assert_string_equal(t, "Describe {title}.");
    free(t);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM descriptions WHERE status = 'done' AND model = 'm'"), 2);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM prompts"), 1);
    char img[65];
    v4r_sha256_hex("jpeg bytes", 10, img);
    t = raw_text(db, "SELECT image_hash FROM descriptions WHERE item = 'c' AND model = 'm'");
    assert_string_equal(t, img);
    free(t);
    /* by hash; then --replace */
    tu_write(dir, "again.tsv", "item\tdescription\na\tA shoe, red.\n");
    expect_run(0, NULL, "cache import '%s/c.db' '%s/again.tsv' --model m --prompt-hash %s --dataset '%s/ds'", dir, dir,
               hex, dir);
    t = raw_text(db, "SELECT description FROM descriptions WHERE item = 'a' AND model = 'm'");
    assert_string_equal(t, "A red shoe.");
    free(t);
    expect_run(0, NULL, "cache import '%s/c.db' '%s/again.tsv' --model m --prompt-hash %s --replace --dataset '%s/ds'",
               dir, dir, hex, dir);
    t = raw_text(db, "SELECT description FROM descriptions WHERE item = 'a' AND model = 'm'");
    assert_string_equal(t, "A shoe, red.");
    free(t);
    /* a preset by name */
    expect_run(0, NULL, "cache import '%s/c.db' '%s/d.jsonl' --model p --prompt-preset paper", dir, dir);
    t = raw_text(db, "SELECT prompt_hash FROM descriptions WHERE model = 'p' LIMIT 1");
    assert_string_equal(t, paper_hash(hex));
    free(t);
    free(db);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_export_and_merge(void **state)
{
    char *dir = tu_tmpdir();
    write_dataset(dir);
    tu_write(dir, "d.tsv", "zz\tnot in the dataset\nc\tA bag.\na\tA red shoe.\n");
    expect_run(0, NULL, "cache import '%s/c.db' '%s/d.tsv' --model llava --prompt-preset paper", dir, dir);
    expect_run(2, "-o OUT.jsonl is required", "cache export '%s/c.db'", dir);
    expect_run(4, "none.db", "cache export '%s/none.db' -o '%s/o.jsonl'", dir, dir);
    expect_run(4, "items.tsv", "cache export '%s/c.db' -o '%s/o.jsonl' --dataset '%s'", dir, dir, dir);
    char *o = v4r_path_join(dir, "o.jsonl");
    assert_false(v4r_file_exists(o));
    free(o);
    expect_run(0, NULL, "cache export '%s/c.db' -o '%s/all.jsonl' --covered '%s/all.txt'", dir, dir, dir);
    char *txt = tu_read(dir, "all.txt");
    assert_string_equal(txt, "a\nc\nzz\n");
    free(txt);
    expect_run(0, "1 described item is not in the dataset",
               "cache export '%s/c.db' -o '%s/ds.jsonl' --covered '%s/ds.txt' --dataset '%s/ds'", dir, dir, dir, dir);
    txt = tu_read(dir, "ds.txt");
    assert_string_equal(txt, "a\nc\n");
    free(txt);
    txt = tu_read(dir, "ds.jsonl");
    assert_non_null(strstr(txt, "{\"item\":\"a\",\"description\":\"A red shoe.\",\"model\":\"llava\","));
    assert_null(strstr(txt, "zz"));
    free(txt);
    char hex[65];
    char *prefix = v4r_strndup(paper_hash(hex), 8);
    expect_run(0, NULL, "cache export '%s/c.db' -o '%s/f.jsonl' --prompt-hash %s --model llava", dir, dir, prefix);
    txt = tu_read(dir, "f.jsonl");
    assert_non_null(strstr(txt, "A bag."));
    free(txt);
    expect_run(0, NULL, "cache export '%s/c.db' -o '%s/f.jsonl' --model other", dir, dir);
    txt = tu_read(dir, "f.jsonl");
    assert_string_equal(txt, "");
    free(txt);
    expect_run(2, "--prompt-hash", "cache export '%s/c.db' -o '%s/f.jsonl' --prompt-hash xyzxyz", dir, dir);
    free(prefix);
    /* merge */
    tu_write(dir, "b.tsv", "b\tA blue hat.\na\tAnother shoe.\n");
    expect_run(0, NULL, "cache import '%s/b.db' '%s/b.tsv' --model llava --prompt-preset paper", dir, dir);
    expect_run(2, "expected OUT and at least one SRC", "cache merge '%s/m.db'", dir);
    expect_run(2, "is OUT itself", "cache merge '%s/c.db' '%s/./c.db'", dir, dir);
    expect_run(4, "gone.db", "cache merge '%s/m.db' '%s/c.db' '%s/gone.db'", dir, dir, dir);
    char *m = v4r_path_join(dir, "m.db");
    assert_false(v4r_file_exists(m)); /* a failed merge leaves no new OUT */
    tu_write(dir, "junk.db", "plain text, not SQLite, and long enough that SQLite reads a whole header of it.....\n");
    expect_run(3, "junk.db", "cache merge '%s/m.db' '%s/c.db' '%s/junk.db'", dir, dir, dir);
    assert_false(v4r_file_exists(m));
    expect_run(0, NULL, "cache merge '%s/m.db' '%s/c.db' '%s/b.db'", dir, dir, dir);
    assert_int_equal(raw_int(m, "SELECT count(*) FROM descriptions"), 4);
    assert_int_equal(raw_int(m, "SELECT count(*) FROM prompts"), 1);
    char *t = raw_text(m, "SELECT description FROM descriptions WHERE item = 'a'");
    assert_string_equal(t, "A red shoe."); /* the earlier of two done rows */
    free(t);
    /* into an existing OUT: a failure changes nothing */
    char *c = v4r_path_join(dir, "c.db");
    expect_run(3, "junk.db", "cache merge '%s/c.db' '%s/b.db' '%s/junk.db'", dir, dir, dir);
    assert_int_equal(raw_int(c, "SELECT count(*) FROM descriptions"), 3);
    free(c);
    free(m);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void read_npy(const char *dir, const char *name, char **data, size_t *len)
{
    char *p = v4r_path_join(dir, name);
    assert_int_equal(v4r_read_file(p, data, len, NULL), 0);
    free(p);
}

static void expect_same_file(const char *dir, const char *x, const char *y)
{
    char *a, *b;
    size_t na, nb;
    read_npy(dir, x, &a, &na);
    read_npy(dir, y, &b, &nb);
    if (na != nb || memcmp(a, b, na))
        fail_msg("%s and %s differ", x, y);
    free(a);
    free(b);
}

static void test_encode_from_cache(void **state)
{
    char *dir = tu_tmpdir(), *tiny = v4r_sprintf("%s/fixtures/models/bert-tiny", tu_shared()), hex[65];
    write_dataset(dir);
    tu_write(dir, "d.tsv", "zz\tnot in the dataset\nc\tA green leather bag with a gold clasp.\na\tA red shoe.\n");
    tu_write(dir, "old.tsv", "a\tAn older text of a, under another model.\nb\tOnly the other model described b.\n");
    expect_run(0, NULL, "cache import '%s/c.db' '%s/old.tsv' --model other --prompt-preset script", dir, dir);
    expect_run(0, NULL, "cache import '%s/c.db' '%s/d.tsv' --model llava --prompt-preset paper", dir, dir);
    /* no dataset: one row per described item, in id order, as its export */
    expect_run(0, NULL, "cache export '%s/c.db' -o '%s/all.jsonl'", dir, dir);
    expect_run(0, NULL, "encode --model '%s' --input '%s/c.db' -o '%s/c.npy'", tiny, dir, dir);
    expect_run(0, NULL, "encode --model '%s' --input '%s/all.jsonl' -o '%s/j.npy'", tiny, dir, dir);
    expect_same_file(dir, "c.npy", "j.npy");
    size_t rows, cols;
    char *p = v4r_path_join(dir, "c.npy");
    assert_int_equal(v4r_npy_shape(p, &rows, &cols, NULL), 0);
    assert_int_equal(rows, 4); /* a, b, c, zz */
    free(p);
    /* with a dataset and filters; --format cache for a file of any name */
    expect_run(0, NULL, "cache export '%s/c.db' -o '%s/ds.jsonl' --dataset '%s/ds' --model llava", dir, dir, dir);
    char *prefix = v4r_strndup(paper_hash(hex), 10);
    expect_run(0, "not in the dataset",
               "encode --model '%s' --input '%s/c.db' --dataset '%s/ds' -o '%s/cd.npy' --cache-model llava"
               " --cache-prompt-hash %s",
               tiny, dir, dir, dir, prefix);
    expect_run(0, NULL, "encode --model '%s' --input '%s/ds.jsonl' --dataset '%s/ds' -o '%s/jd.npy'", tiny, dir, dir,
               dir);
    expect_same_file(dir, "cd.npy", "jd.npy");
    char *cov = tu_read(dir, "cd.covered.txt");
    assert_string_equal(cov, "a\nc\n");
    free(cov);
    p = v4r_path_join(dir, "cd.npy");
    assert_int_equal(v4r_npy_shape(p, &rows, &cols, NULL), 0);
    assert_int_equal(rows, 3); /* the dataset's items; b has no llava text: a zero row */
    free(p);
    char *copy = v4r_sprintf("cp '%s/c.db' '%s/cache.bin'", dir, dir);
    assert_int_equal(system(copy), 0);
    free(copy);
    expect_run(0, NULL, "encode --model '%s' --input '%s/cache.bin' --format cache -o '%s/f.npy' --cache-model %s",
               tiny, dir, dir, "llava");
    expect_run(0, NULL, "cache export '%s/c.db' -o '%s/llava.jsonl' --model llava", dir, dir);
    expect_run(0, NULL, "encode --model '%s' --input '%s/llava.jsonl' -o '%s/fl.npy'", tiny, dir, dir);
    expect_same_file(dir, "f.npy", "fl.npy");
    /* errors */
    expect_run(2, "applies only to a cache", "encode --model '%s' --input '%s/d.tsv' -o '%s/x.npy' --cache-model m",
               tiny, dir, dir);
    expect_run(2, "--cache-prompt-hash", "encode --model '%s' --input '%s/c.db' -o '%s/x.npy' --cache-prompt-hash zz",
               tiny, dir, dir);
    expect_run(2, "jsonl, tsv or cache", "encode --model '%s' --input '%s/c.db' -o '%s/x.npy' --format csv", tiny, dir,
               dir);
    expect_run(3, "no descriptions", "encode --model '%s' --input '%s/c.db' -o '%s/x.npy' --cache-model nobody", tiny,
               dir, dir);
    expect_run(3, "not a vlm4rec cache", "encode --model '%s' --input '%s/d.tsv' -o '%s/x.npy' --format cache", tiny,
               dir, dir);
    expect_run(4, "none.db", "encode --model '%s' --input '%s/none.db' -o '%s/x.npy' --format cache", tiny, dir, dir);
    /* a description that is not UTF-8 is named by its item */
    char *db = v4r_path_join(dir, "c.db");
    raw_sql(db, "UPDATE descriptions SET description = CAST(x'6869ff' AS TEXT) WHERE item = 'c' AND model = 'llava'");
    free(db);
    expect_run(3, "c.db: item 'c':", "encode --model '%s' --input '%s/c.db' -o '%s/x.npy'", tiny, dir, dir);
    char *x = v4r_path_join(dir, "x.npy");
    assert_false(v4r_file_exists(x));
    free(x);
    free(prefix);
    free(tiny);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_and_stats),
        cmocka_unit_test(test_import),
        cmocka_unit_test(test_export_and_merge),
        cmocka_unit_test(test_encode_from_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The semantic cache's tools: merge rules, export with and without a dataset, import of the three
 * formats with its errors and replace rule, stats in text and JSON. */
#include "cache_testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "vlm4rec/data.h"
#include "vlm4rec/io.h"

/* One row written directly; rows are spelled positionally, trailing fields left out. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
typedef struct {
    const char *item, *status;
    int permanent;
    const char *description, *error;
    int attempts;
    double latency, updated;
    const char *owner;
    double lease;
    const char *model, *ph;
} row_spec;

static void put(const char *path, row_spec r)
{
    char lat[64] = "NULL", lease[64] = "NULL";
    if (r.latency > 0)
        snprintf(lat, sizeof lat, "%.17g", r.latency);
    if (r.lease > 0)
        snprintf(lease, sizeof lease, "%.17g", r.lease);
    raw_sql(path,
            "INSERT INTO descriptions(item, image_hash, prompt_hash, model, status, permanent, description, error,"
            " attempts, latency_s, prompt_tokens, completion_tokens, endpoint, owner, lease_until, created, updated)"
            " VALUES(%Q, 'img', %Q, %Q, %Q, %d, %Q, %Q, %d, %s, %s, %s, 'http://e', %Q, %s, %f, %f)",
            r.item, r.ph ? r.ph : PH, r.model ? r.model : "m", r.status, r.permanent, r.description, r.error,
            r.attempts, lat, r.latency > 0 ? "100" : "NULL", r.latency > 0 ? "30" : "NULL", r.owner, lease,
            r.updated - 10, r.updated);
}

static char *row_field(const char *path, const char *item, const char *col)
{
    return raw_text(path, "SELECT %s FROM descriptions WHERE item = %Q", col, item);
}

static void expect_field(const char *path, const char *item, const char *col, const char *want)
{
    char *got = row_field(path, item, col);
    if (!want ? got != NULL : !got || strcmp(got, want))
        fail_msg("%s.%s: '%s', expected '%s'", item, col, got ? got : "NULL", want ? want : "NULL");
    free(got);
}

/* ------------------------------------------------------------------ merge -------------------- */

static void test_merge(void **state)
{
    char *dir = tu_tmpdir(), *dst = v4r_path_join(dir, "dst.db"), *src = v4r_path_join(dir, "src.db");
    v4r_cache *c = copen(dst), *s = copen(src);
    v4r_err err = {0};
    assert_int_equal(v4r_cache_put_prompt(c, PH, "dst text", &err), 0);
    assert_int_equal(v4r_cache_put_prompt(s, PH, "src text", &err), 0);
    assert_int_equal(v4r_cache_put_prompt(s, PH2, "second prompt", &err), 0);
    v4r_cache_close(s);
    /* k1 two done: the earlier-finished wins */
    put(dst, (row_spec){"k1", "done", 0, "dst k1", NULL, 1, 0, 200});
    put(src, (row_spec){"k1", "done", 0, "src k1", NULL, 2, 0, 100});
    /* k2 failed in dst, done in src */
    put(dst, (row_spec){"k2", "failed", 1, NULL, "bad", 1, 0, 100});
    put(src, (row_spec){"k2", "done", 0, "src k2", NULL, 3, 0, 300});
    /* k3 running in dst, failed in src */
    put(dst, (row_spec){"k3", "running", 0, NULL, NULL, 0, 0, 100, "h:1:x", 1e12});
    put(src, (row_spec){"k3", "failed", 0, NULL, "HTTP 500", 5, 0, 90});
    /* k4 done in dst, failed in src: kept, attempts add */
    put(dst, (row_spec){"k4", "done", 0, "dst k4", NULL, 1, 0, 100});
    put(src, (row_spec){"k4", "failed", 1, NULL, "nope", 4, 0, 500});
    /* k5 only in src (done), k6 only in src (running) */
    put(src, (row_spec){"k5", "done", 0, "src k5", NULL, 1, 2.5, 100});
    put(src, (row_spec){"k6", "running", 0, NULL, NULL, 0, 0, 100, "h:2:y", 1e12});
    /* k7 two done, dst earlier: kept */
    put(dst, (row_spec){"k7", "done", 0, "dst k7", NULL, 1, 0, 50});
    put(src, (row_spec){"k7", "done", 0, "src k7", NULL, 1, 0, 60});
    /* k8 failed in dst, running in src: kept, attempts add */
    put(dst, (row_spec){"k8", "failed", 0, NULL, "dst err", 2, 0, 50});
    put(src, (row_spec){"k8", "running", 0, NULL, "old err", 1, 0, 60, "h:3:z", 1e12});
    /* k9 both failed: the later one's error */
    put(dst, (row_spec){"k9", "failed", 0, NULL, "older", 1, 0, 50});
    put(src, (row_spec){"k9", "failed", 1, NULL, "newer", 1, 0, 60});
    /* k10 same in both, no attempts in src: untouched */
    put(dst, (row_spec){"k10", "done", 0, "same", NULL, 1, 0, 50});
    put(src, (row_spec){"k10", "done", 0, "same", NULL, 0, 0, 50});
    size_t n_new = 99, n_upd = 99;
    assert_int_equal(v4r_cache_merge(c, src, &n_new, &n_upd, &err), 0);
    assert_int_equal(n_new, 2);
    assert_int_equal(n_upd, 7);
    expect_field(dst, "k1", "description", "src k1");
    expect_field(dst, "k1", "attempts", "3");
    expect_field(dst, "k1", "created", "90.0"); /* the earlier of the two */
    expect_field(dst, "k2", "status", "done");
    expect_field(dst, "k2", "description", "src k2");
    expect_field(dst, "k2", "attempts", "4");
    expect_field(dst, "k2", "error", NULL);
    expect_field(dst, "k3", "status", "failed");
    expect_field(dst, "k3", "error", "HTTP 500");
    expect_field(dst, "k3", "attempts", "5");
    expect_field(dst, "k3", "owner", NULL);
    expect_field(dst, "k4", "status", "done");
    expect_field(dst, "k4", "description", "dst k4");
    expect_field(dst, "k4", "attempts", "5");
    expect_field(dst, "k5", "description", "src k5");
    expect_field(dst, "k5", "latency_s", "2.5");
    expect_field(dst, "k6", "status", "running");
    expect_field(dst, "k6", "lease_until", "0.0"); /* anyone may take it here */
    expect_field(dst, "k7", "description", "dst k7");
    expect_field(dst, "k7", "attempts", "2");
    expect_field(dst, "k8", "status", "failed");
    expect_field(dst, "k8", "error", "dst err");
    expect_field(dst, "k8", "attempts", "3");
    expect_field(dst, "k9", "error", "newer");
    expect_field(dst, "k9", "permanent", "1");
    expect_field(dst, "k9", "attempts", "2");
    expect_field(dst, "k10", "attempts", "1");
    /* prompts copied, existing ones kept */
    char *t = raw_text(dst, "SELECT text FROM prompts WHERE hash = %Q", PH);
    assert_string_equal(t, "dst text");
    free(t);
    t = raw_text(dst, "SELECT text FROM prompts WHERE hash = %Q", PH2);
    assert_string_equal(t, "second prompt");
    free(t);
    /* a new claim on the merged running row works */
    v4r_cache_key k = ckey("k6");
    int out;
    assert_int_equal(v4r_cache_claim(c, &k, 0, &out, &err), 0);
    assert_int_equal(out, V4R_CLAIM_OK);
    /* itself, by any name */
    char *self = v4r_sprintf("%s/./dst.db", dir);
    assert_int_equal(v4r_cache_merge(c, self, &n_new, &n_upd, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "itself"));
    free(self);
    /* not a cache, missing */
    tu_write(dir, "junk.db",
             "junk junk junk junk junk junk junk junk junk junk junk junk junk junk junk junk junk"
             " junk junk junk junk junk\n");
    char *junk = v4r_path_join(dir, "junk.db"), *missing = v4r_path_join(dir, "missing.db");
    assert_int_equal(v4r_cache_merge(c, junk, &n_new, &n_upd, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, junk));
    assert_int_equal(v4r_cache_merge(c, missing, &n_new, &n_upd, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, missing));
    assert_false(v4r_file_exists(missing));
    /* merging again adds the attempts again but changes no winner; inside a caller's transaction */
    assert_int_equal(v4r_cache_begin(c, &err), 0);
    assert_int_equal(v4r_cache_merge(c, src, &n_new, &n_upd, &err), 0);
    assert_int_equal(v4r_cache_commit(c, &err), 0);
    assert_int_equal(n_new, 0);
    expect_field(dst, "k1", "description", "src k1");
    expect_field(dst, "k1", "attempts", "5");
    v4r_cache_close(c);
    free(junk);
    free(missing);
    free(dst);
    free(src);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* ------------------------------------------------------------------ export ------------------- */

/* Items x1..x4 (x2 with an image file, x3 with a missing one, x4 with a URL). */
static void write_dataset(const char *dir)
{
    tu_write(dir, "ds/items.tsv",
             "item\ttitle\timage\nx1\tOne\t\nx2\tTwo\timages/x2.png\nx3\tThree\timages/none.png\n"
             "x4\tFour\thttp://example.com/x4.jpg\n");
    tu_write(dir, "ds/images/x2.png", "not really a png, but bytes to hash");
    tu_write(dir, "ds/users.tsv", "user\nu\n");
    tu_write(dir, "ds/train.tsv", "user\titem\ttimestamp\nu\tx1\t1\n");
    tu_write(dir, "ds/valid.tsv", "user\titem\ttimestamp\nu\tx2\t2\n");
    tu_write(dir, "ds/test.tsv", "user\titem\ttimestamp\nu\tx3\t3\n");
}

static json_t *parse_line(const char *line)
{
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    if (!o)
        fail_msg("bad JSON line '%s': %s", line, je.text);
    return o;
}

static void test_export(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    write_dataset(dir);
    v4r_cache *c = copen(path);
    put(path, (row_spec){"x3", "done", 0, "three", NULL, 2, 1.25, 1700000000});
    put(path, (row_spec){"x1", "done", 0, "one \"quoted\" é", NULL, 1, 0, 1700000100});
    put(path, (row_spec){"x1", "done", 0, "one, older", NULL, 1, 0, 1600000000, NULL, 0, "m2"});
    put(path, (row_spec){"x2", "failed", 1, NULL, "bad", 1, 0, 100});
    put(path, (row_spec){"zz", "done", 0, "not in the dataset", NULL, 1, 0, 100});
    put(path, (row_spec){"x4", "done", 0, "four", NULL, 1, 0, 100, NULL, 0, "m", PH2});
    v4r_err err = {0};
    char *jl = v4r_path_join(dir, "out.jsonl"), *cov = v4r_path_join(dir, "cov.txt");
    size_t n = 0;
    /* without a dataset: id order */
    assert_int_equal(v4r_cache_export(c, NULL, NULL, jl, cov, &n, &err), 0);
    assert_int_equal(n, 4);
    char *txt = tu_read(dir, "cov.txt");
    assert_string_equal(txt, "x1\nx3\nx4\nzz\n");
    free(txt);
    txt = tu_read(dir, "out.jsonl");
    char *save = NULL, *line = strtok_r(txt, "\n", &save);
    json_t *o = parse_line(line);
    assert_string_equal(json_string_value(json_object_get(o, "item")), "x1");
    assert_string_equal(json_string_value(json_object_get(o, "description")), "one \"quoted\" é");
    assert_string_equal(json_string_value(json_object_get(o, "model")), "m");
    assert_string_equal(json_string_value(json_object_get(o, "prompt_hash")), PH);
    assert_string_equal(json_string_value(json_object_get(o, "image_hash")), "img");
    assert_true(json_is_null(json_object_get(o, "latency_s")));
    assert_true(json_is_null(json_object_get(o, "prompt_tokens")));
    assert_true(json_is_null(json_object_get(o, "completion_tokens")));
    assert_string_equal(json_string_value(json_object_get(o, "updated")), "2023-11-14T22:15:00Z");
    assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 1);
    assert_int_equal(json_object_size(o), 10);
    assert_non_null(strstr(line, "é")); /* UTF-8 as is, not \u escapes */
    json_decref(o);
    o = parse_line(strtok_r(NULL, "\n", &save));
    assert_string_equal(json_string_value(json_object_get(o, "item")), "x3");
    assert_true(json_real_value(json_object_get(o, "latency_s")) == 1.25);
    assert_int_equal(json_integer_value(json_object_get(o, "prompt_tokens")), 100);
    assert_int_equal(json_integer_value(json_object_get(o, "completion_tokens")), 30);
    assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 2);
    json_decref(o);
    free(txt);
    /* with the dataset: its order, its items only; without a covered list */
    v4r_dataset ds;
    char *dsdir = v4r_path_join(dir, "ds");
    assert_int_equal(v4r_dataset_load(dsdir, &ds, &err), 0);
    remove(cov);
    assert_int_equal(v4r_cache_export(c, NULL, &ds, jl, NULL, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_false(v4r_file_exists(cov));
    txt = tu_read(dir, "out.jsonl");
    assert_non_null(strstr(txt, "\"x1\""));
    assert_true(strstr(txt, "\"x1\"") < strstr(txt, "\"x3\"") && strstr(txt, "\"x3\"") < strstr(txt, "\"x4\""));
    assert_null(strstr(txt, "zz"));
    free(txt);
    /* filters */
    v4r_cache_filter f = {"m2", NULL};
    assert_int_equal(v4r_cache_export(c, &f, &ds, jl, cov, &n, &err), 0);
    assert_int_equal(n, 1);
    txt = tu_read(dir, "out.jsonl");
    assert_non_null(strstr(txt, "one, older"));
    free(txt);
    f = (v4r_cache_filter){NULL, "fedcba98"};
    assert_int_equal(v4r_cache_export(c, &f, NULL, jl, cov, &n, &err), 0);
    assert_int_equal(n, 1);
    txt = tu_read(dir, "cov.txt");
    assert_string_equal(txt, "x4\n");
    free(txt);
    f = (v4r_cache_filter){NULL, "fedcb"};
    assert_int_equal(v4r_cache_export(c, &f, NULL, jl, cov, &n, &err), V4R_EUSAGE);
    /* nothing matches: empty files */
    f = (v4r_cache_filter){"nobody", NULL};
    assert_int_equal(v4r_cache_export(c, &f, NULL, jl, cov, &n, &err), 0);
    assert_int_equal(n, 0);
    txt = tu_read(dir, "out.jsonl");
    assert_string_equal(txt, "");
    free(txt);
    /* a folder that does not exist: i/o error, nothing written */
    char *bad = v4r_path_join(dir, "no/such/out.jsonl");
    assert_int_equal(v4r_cache_export(c, NULL, NULL, bad, NULL, &n, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, bad));
    free(bad);
    /* a description that is not UTF-8: bad data, no partial output */
    raw_sql(path, "UPDATE descriptions SET description = CAST(x'6869ff' AS TEXT) WHERE item = 'x3'");
    char *jl2 = v4r_path_join(dir, "out2.jsonl");
    assert_int_equal(v4r_cache_export(c, NULL, NULL, jl2, NULL, &n, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "x3"));
    assert_false(v4r_file_exists(jl2));
    free(jl2);
    v4r_dataset_free(&ds);
    v4r_cache_close(c);
    free(dsdir);
    free(jl);
    free(cov);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* ------------------------------------------------------------------ import ------------------- */

static int import(v4r_cache *c, const char *dir, const char *name, const v4r_dataset *ds, int replace, size_t *n,
                  v4r_err *err)
{
    char *p = v4r_path_join(dir, name);
    v4r_cache_import_opts o = {"llava", PH, ds, replace};
    int rc = v4r_cache_import(c, p, &o, n, err);
    free(p);
    return rc;
}

static void expect_import_error(v4r_cache *c, const char *dir, const char *name, const char *text,
                                const v4r_dataset *ds, int code, const char *needle)
{
    if (text)
        tu_write(dir, name, text);
    v4r_err err = {0};
    size_t n = 77;
    int rc = import(c, dir, name, ds, 0, &n, &err);
    if (rc != code || !strstr(err.msg, needle))
        fail_msg("%s: rc %d '%s', expected %d with '%s'", name, rc, err.msg, code, needle);
    assert_int_equal(n, 0);
}

static char *desc_of(const char *path, const char *item)
{
    return raw_text(path, "SELECT description FROM descriptions WHERE item = %Q AND model = 'llava'", item);
}

static void test_import_formats(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    v4r_cache *c = copen(path);
    v4r_err err = {0};
    size_t n = 0;
    /* a JSON object over several lines */
    tu_write(dir, "obj.json", "\xef\xbb\xbf  {\n  \"a\": \"text a\",\n  \"b\": \"text \\u00e9 b\"\n}\n");
    assert_int_equal(import(c, dir, "obj.json", NULL, 0, &n, &err), 0);
    assert_int_equal(n, 2);
    char *d = desc_of(path, "b");
    assert_string_equal(d, "text é b");
    free(d);
    /* JSONL with both spellings of the fields and an integer id */
    tu_write(dir, "d.jsonl",
             "{\"item\": \"c\", \"description\": \"text c\"}\n\n{\"id\": 42, \"text\": \"text 42\"}\r\n");
    assert_int_equal(import(c, dir, "d.jsonl", NULL, 0, &n, &err), 0);
    assert_int_equal(n, 2);
    d = desc_of(path, "42");
    assert_string_equal(d, "text 42");
    free(d);
    /* one JSONL record alone on its line is a record, not an object of items */
    tu_write(dir, "one.jsonl", "{\"item\": \"solo\", \"description\": \"solo text\"}\n");
    assert_int_equal(import(c, dir, "one.jsonl", NULL, 0, &n, &err), 0);
    assert_int_equal(n, 1);
    d = desc_of(path, "solo");
    assert_string_equal(d, "solo text");
    free(d);
    /* TSV with and without the header; escapes */
    tu_write(dir, "h.tsv", "item\tdescription\nd\ttext d\\twith a tab\ne\ttext e\n");
    assert_int_equal(import(c, dir, "h.tsv", NULL, 0, &n, &err), 0);
    assert_int_equal(n, 2);
    d = desc_of(path, "d");
    assert_string_equal(d, "text d\twith a tab");
    free(d);
    tu_write(dir, "plain.txt", "f\ttext f\n");
    assert_int_equal(import(c, dir, "plain.txt", NULL, 0, &n, &err), 0);
    assert_int_equal(n, 1);
    /* every row: done, the model and prompt given, image hash "" without a dataset */
    assert_int_equal(raw_int(path, "SELECT count(*) FROM descriptions"), 8);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM descriptions WHERE status = 'done' AND model = 'llava'"
                                   " AND prompt_hash = '" PH "' AND image_hash = '' AND attempts = 0"
                                   " AND owner IS NULL AND updated = created"),
                     8);
    /* replace: a done row is kept unless asked */
    tu_write(dir, "again.tsv", "a\tnew text a\n");
    assert_int_equal(import(c, dir, "again.tsv", NULL, 0, &n, &err), 0);
    assert_int_equal(n, 0);
    d = desc_of(path, "a");
    assert_string_equal(d, "text a");
    free(d);
    assert_int_equal(import(c, dir, "again.tsv", NULL, 1, &n, &err), 0);
    assert_int_equal(n, 1);
    d = desc_of(path, "a");
    assert_string_equal(d, "new text a");
    free(d);
    /* a failed or running row is replaced without asking, keeping its attempts */
    raw_sql(path, "UPDATE descriptions SET status = 'failed', description = NULL, error = 'x', attempts = 3"
                  " WHERE item = 'e'");
    raw_sql(path, "UPDATE descriptions SET status = 'running', description = NULL, owner = 'h:1:t', lease_until = 1e12"
                  " WHERE item = 'f'");
    tu_write(dir, "ef.tsv", "e\tfixed e\nf\tfixed f\n");
    assert_int_equal(import(c, dir, "ef.tsv", NULL, 0, &n, &err), 0);
    assert_int_equal(n, 2);
    expect_field(path, "e", "description", "fixed e");
    expect_field(path, "e", "error", NULL);
    expect_field(path, "e", "attempts", "3");
    expect_field(path, "f", "owner", NULL);
    expect_field(path, "f", "lease_until", NULL);
    /* options */
    v4r_cache_import_opts o = {NULL, PH, NULL, 0};
    char *p = v4r_path_join(dir, "ef.tsv");
    assert_int_equal(v4r_cache_import(c, p, &o, &n, &err), V4R_EUSAGE);
    o = (v4r_cache_import_opts){"m", "abc", NULL, 0};
    assert_int_equal(v4r_cache_import(c, p, &o, &n, &err), V4R_EUSAGE);
    o = (v4r_cache_import_opts){"m", "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", NULL, 0};
    assert_int_equal(v4r_cache_import(c, p, &o, &n, &err), 0); /* stored in lower case */
    assert_int_equal(raw_int(path, "SELECT count(*) FROM descriptions WHERE model = 'm' AND prompt_hash = '" PH "'"),
                     2);
    free(p);
    v4r_cache_close(c);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_import_errors(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    write_dataset(dir);
    v4r_cache *c = copen(path);
    v4r_dataset ds;
    v4r_err err = {0};
    char *dsdir = v4r_path_join(dir, "ds");
    assert_int_equal(v4r_dataset_load(dsdir, &ds, &err), 0);
    expect_import_error(c, dir, "e1.jsonl",
                        "{\"item\": \"a\", \"text\": \"ok\"}\n{\"item\": \"b\", \"text\": \"ok\"}\n{bad\n", NULL,
                        V4R_EINPUT, "e1.jsonl:3: not a JSON object");
    expect_import_error(c, dir, "e2.jsonl", "{\"item\": \"a\", \"text\": \"ok\"}\n[1, 2]\n", NULL, V4R_EINPUT,
                        "e2.jsonl:2: not a JSON object");
    expect_import_error(c, dir, "e3.jsonl", "{\"item\": \"a\", \"text\": \"ok\"}\n{\"text\": \"x\"}\n", NULL,
                        V4R_EINPUT, "e3.jsonl:2: field 'item'");
    expect_import_error(c, dir, "e4.jsonl", "{\"item\": \"a\", \"text\": \"ok\"}\n{\"item\": \"b\", \"text\": 5}\n",
                        NULL, V4R_EINPUT, "e4.jsonl:2: field 'description'");
    expect_import_error(c, dir, "e5.jsonl",
                        "{\"item\": \"a\", \"text\": \"ok\"}\n{\"item\": \"b\", \"text\": \"  \"}\n", NULL, V4R_EINPUT,
                        "e5.jsonl:2: empty description");
    expect_import_error(c, dir, "e6.jsonl",
                        "{\"item\": \"a\", \"text\": \"ok\"}\n{\"item\": \"a\", \"text\": \"again\"}\n", NULL,
                        V4R_EINPUT, "e6.jsonl:2: item 'a' already described at line 1");
    expect_import_error(c, dir, "e7.jsonl", "{\"item\": \"\", \"text\": \"x\"}\n", NULL, V4R_EINPUT,
                        "e7.jsonl:1: empty item id");
    expect_import_error(c, dir, "e8.tsv", "item\tdescription\na\tok\nb\tx\ty\n", NULL, V4R_EINPUT,
                        "e8.tsv:3: 3 fields");
    expect_import_error(c, dir, "e9.tsv", "a\tok\n\nb\t\n", NULL, V4R_EINPUT, "e9.tsv:3: empty description");
    expect_import_error(c, dir, "e10.tsv", "a\tok\nb\n", NULL, V4R_EINPUT, "e10.tsv:2: 1 field,");
    expect_import_error(c, dir, "e11.tsv", "a\tok\xff\n", NULL, V4R_EINPUT, "e11.tsv:1: not valid UTF-8");
    expect_import_error(c, dir, "e12.tsv", "x1\tok\nnope\tfine\n", &ds, V4R_EINPUT, "e12.tsv:2: unknown item 'nope'");
    expect_import_error(c, dir, "e13.json", "{\n \"a\": \"ok\",\n \"b\": \"\"\n}\n", NULL, V4R_EINPUT,
                        "e13.json:3: empty description for item 'b'");
    expect_import_error(c, dir, "e14.json", "{\n \"a\": \"ok\",\n \"b\": 3\n}\n", NULL, V4R_EINPUT,
                        "e14.json:3: the description of item 'b' is not a string");
    expect_import_error(c, dir, "e15.json", "{\n \"x1\": \"ok\",\n \"q\": \"fine\"\n}\n", &ds, V4R_EINPUT,
                        "e15.json:3: unknown item 'q'");
    expect_import_error(c, dir, "e16.json", "{}\n", NULL, V4R_EINPUT, "no descriptions");
    expect_import_error(c, dir, "e17.tsv", " \n\t\n", NULL, V4R_EINPUT, "e17.tsv: no descriptions");
    expect_import_error(c, dir, "e18.tsv", "item\tdescription\n", NULL, V4R_EINPUT, "e18.tsv: no descriptions");
    tu_write(dir, "e19.tsv", "a\tb");
    char *p19 = v4r_path_join(dir, "e19.tsv");
    FILE *fp = fopen(p19, "ab");
    fputc(0, fp);
    fclose(fp);
    free(p19);
    expect_import_error(c, dir, "e19.tsv", NULL, NULL, V4R_EINPUT, "NUL");
    expect_import_error(c, dir, "missing.tsv", NULL, NULL, V4R_EIO, "missing.tsv");
    /* all or nothing: none of the good lines before an error were stored */
    assert_int_equal(raw_int(path, "SELECT count(*) FROM descriptions"), 0);
    /* with the dataset: image hashes from the files */
    tu_write(dir, "ok.tsv", "x1\tone\nx2\ttwo\nx3\tthree\nx4\tfour\n");
    size_t n;
    assert_int_equal(import(c, dir, "ok.tsv", &ds, 0, &n, &err), 0);
    assert_int_equal(n, 4);
    char hex[65];
    const char *bytes = "not really a png, but bytes to hash";
    v4r_sha256_hex(bytes, strlen(bytes), hex);
    expect_field(path, "x2", "image_hash", hex);
    expect_field(path, "x1", "image_hash", ""); /* no image */
    expect_field(path, "x3", "image_hash", ""); /* a missing file */
    expect_field(path, "x4", "image_hash", ""); /* a URL */
    v4r_dataset_free(&ds);
    v4r_cache_close(c);
    free(dsdir);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* ------------------------------------------------------------------ stats -------------------- */

static char *stats(v4r_cache *c, const v4r_cache_filter *f, int json, int expect)
{
    FILE *fp = tmpfile();
    assert_non_null(fp);
    v4r_err err = {0};
    int rc = v4r_cache_stats(c, f, json, fp, &err);
    if (rc != expect)
        fail_msg("stats: %d (%s), expected %d", rc, err.msg, expect);
    char *s = slurp(fp);
    fclose(fp);
    return s;
}

static json_int_t ji(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    if (!json_is_integer(v))
        fail_msg("%s.%s is not an integer", a, b ? b : "");
    return json_integer_value(v);
}

static double jr(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(json_object_get(o, a), b);
    if (!json_is_number(v))
        fail_msg("%s.%s is not a number", a, b);
    return json_number_value(v);
}

static void test_stats(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    v4r_cache *c = copen(path);
    v4r_err err = {0};
    assert_int_equal(
        v4r_cache_put_prompt(c, PH, "Describe\nthis image in some detail, please, with colors and more", &err), 0);
    double now = (double)time(NULL);
    put(path, (row_spec){"d1", "done", 0, "x", NULL, 1, 1.0, now});
    put(path, (row_spec){"d2", "done", 0, "x", NULL, 2, 2.0, now});
    put(path, (row_spec){"d3", "done", 0, "x", NULL, 1, 3.0, now});
    put(path, (row_spec){"d4", "done", 0, "x", NULL, 1, 10.0, now});
    put(path, (row_spec){"d5", "done", 0, "x", NULL, 1, 0, now, NULL, 0, "other", PH2});
    put(path, (row_spec){"f1", "failed", 1, NULL, "HTTP 400", 1, 0, now});
    put(path, (row_spec){"f2", "failed", 0, NULL, "HTTP 500", 3, 0, now});
    put(path, (row_spec){"f3", "failed", 0, NULL, "HTTP 500", 2, 0, now});
    put(path, (row_spec){"f4", "failed", 0, NULL, "timeout", 1, 0, now, NULL, 0, "other", PH2});
    put(path, (row_spec){"r1", "running", 0, NULL, NULL, 0, 0, now, v4r_cache_owner(c), now + 1000});
    put(path, (row_spec){"r2", "running", 0, NULL, NULL, 0, 0, now, "h:1:x", now - 1});
    char *js = stats(c, NULL, 1, 0);
    json_error_t je;
    json_t *root = json_loads(js, 0, &je);
    if (!root)
        fail_msg("bad JSON: %s\n%s", je.text, js);
    assert_int_equal(ji(root, "rows", NULL), 11);
    assert_int_equal(ji(root, "done", NULL), 5);
    assert_int_equal(ji(root, "failed", "permanent"), 1);
    assert_int_equal(ji(root, "failed", "transient"), 3);
    assert_int_equal(ji(root, "running", "live"), 1);
    assert_int_equal(ji(root, "running", "stale"), 1);
    assert_int_equal(ji(root, "attempts", NULL), 13);
    assert_int_equal(ji(root, "latency_s", "count"), 4);
    assert_true(fabs(jr(root, "latency_s", "mean") - 4.0) < 1e-9);
    assert_true(fabs(jr(root, "latency_s", "p50") - 2.5) < 1e-9);
    assert_true(fabs(jr(root, "latency_s", "p95") - 8.95) < 1e-9);
    assert_int_equal(ji(root, "tokens", "prompt"), 400);
    assert_int_equal(ji(root, "tokens", "completion"), 120);
    json_t *groups = json_object_get(root, "groups");
    assert_int_equal(json_array_size(groups), 2);
    json_t *g0 = json_array_get(groups, 0), *g1 = json_array_get(groups, 1);
    assert_string_equal(json_string_value(json_object_get(g0, "model")), "m");
    assert_string_equal(json_string_value(json_object_get(g0, "prompt_hash")), "0123456789ab");
    assert_int_equal(ji(g0, "done", NULL), 4);
    assert_int_equal(ji(g0, "failed", NULL), 3);
    assert_int_equal(ji(g0, "running", NULL), 2);
    assert_non_null(strstr(json_string_value(json_object_get(g0, "prompt")), "Describe"));
    assert_string_equal(json_string_value(json_object_get(g1, "model")), "other");
    assert_true(json_is_null(json_object_get(g1, "prompt")));
    json_t *errors = json_object_get(root, "errors");
    assert_int_equal(json_array_size(errors), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 0), "error")), "HTTP 500");
    assert_int_equal(ji(json_array_get(errors, 0), "count", NULL), 2);
    json_decref(root);
    free(js);
    /* text: the same numbers */
    char *txt = stats(c, NULL, 0, 0);
    const char *want[] = {"rows       11\n",
                          "done       5\n",
                          "failed     4 (permanent 1, transient 3)\n",
                          "running    2 (live 1, stale 1",
                          "attempts   13\n",
                          "mean 4.000 s, p50 2.500 s, p95 8.950 s",
                          "prompt 400, completion 120",
                          "  m  0123456789ab  done 4  failed 3  running 2  \"Describe...\"",
                          "  other  fedcba987654  done 1  failed 1  running 0\n",
                          "       2  HTTP 500\n",
                          "       1  HTTP 400\n"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(txt, want[i]))
            fail_msg("stats text lacks '%s':\n%s", want[i], txt);
    free(txt);
    /* filtered */
    v4r_cache_filter f = {"other", NULL};
    js = stats(c, &f, 1, 0);
    root = json_loads(js, 0, NULL);
    assert_int_equal(ji(root, "rows", NULL), 2);
    assert_int_equal(ji(root, "done", NULL), 1);
    assert_int_equal(ji(root, "latency_s", "count"), 0);
    assert_true(json_is_null(json_object_get(json_object_get(root, "latency_s"), "p50")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(root, "filter"), "model")), "other");
    json_decref(root);
    free(js);
    f = (v4r_cache_filter){NULL, "0123456"};
    txt = stats(c, &f, 0, 0);
    assert_non_null(strstr(txt, "rows       9\n"));
    free(txt);
    f = (v4r_cache_filter){NULL, "01234"};
    txt = stats(c, &f, 0, V4R_EUSAGE);
    free(txt);
    v4r_cache_close(c);
    /* an empty cache */
    char *empty = v4r_path_join(dir, "empty.db");
    c = copen(empty);
    txt = stats(c, NULL, 0, 0);
    assert_non_null(strstr(txt, "rows       0\n"));
    assert_non_null(strstr(txt, "latency    -\n"));
    free(txt);
    v4r_cache_close(c);
    free(empty);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_export),
        cmocka_unit_test(test_import_formats),
        cmocka_unit_test(test_import_errors),
        cmocka_unit_test(test_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* `encode --shard I/N`, `embed-images --shard I/N` and `vectors merge` on a small synthetic catalog:
 * the merged files equal the unsharded run's byte for byte (N = 1, 3, 4), the shards split the items
 * as ground's hash does, and the merge refuses a missing shard, a shard given twice, a part of
 * another shard count, an item claimed by the wrong shard, parts of another dataset, model, options
 * or command, and damaged parts; a shard stopped midway is simply run again. */
#include "testutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlm4rec/ground.h"
#include "vlm4rec/io.h"

static char *bert(void) { return v4r_sprintf("%s/fixtures/models/bert-tiny", tu_shared()); }
static char *clip(void) { return v4r_sprintf("%s/fixtures/models/clip-vision-tiny-224", tu_shared()); }

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("failed: %s", cmd);
}

/* dir/ds: 60 items with images, item I000005's image removed; dir/texts.tsv: the descriptions of
 * the first 39 items only (the others get no vector). */
static char *catalog(void)
{
    char *dir = tu_tmpdir(), *out = NULL;
    int rc = tu_run(&out, "dataset synth -o '%s/ds' --users 30 --items 60 --interactions 200 --images", dir);
    if (rc)
        fail_msg("dataset synth: %s", out);
    free(out);
    sh("rm '%s/ds/images/I000005.png' && head -40 '%s/ds/descriptions.tsv' > '%s/texts.tsv'", dir, dir, dir);
    return dir;
}

static void run_ok(const char *what, char *out, int rc)
{
    if (rc)
        fail_msg("%s: exit %d: %s", what, rc, out);
    free(out);
}

/* encode (shard I/N, or the whole catalog when n is 0) into dir/name.npy. */
static void encode(const char *dir, const char *name, int i, int n, const char *extra)
{
    char *m = bert(), *out = NULL, shard[32] = "";
    if (n)
        snprintf(shard, sizeof shard, "--shard %d/%d", i, n);
    int rc = tu_run(&out, "encode --model '%s' --dataset '%s/ds' --input '%s/texts.tsv' -o '%s/%s.npy' %s %s", m, dir,
                    dir, dir, name, shard, extra);
    run_ok("encode", out, rc);
    free(m);
}

static void embed(const char *dir, const char *name, int i, int n, const char *extra)
{
    char *m = clip(), *out = NULL, shard[32] = "";
    if (n)
        snprintf(shard, sizeof shard, "--shard %d/%d", i, n);
    int rc = tu_run(&out, "embed-images --model '%s' --dataset '%s/ds' -o '%s/%s.npy' %s %s", m, dir, dir, name, shard,
                    extra);
    run_ok("embed-images", out, rc);
    free(m);
}

/* vectors merge of the parts (names without .npy, space separated) into dir/OUT.npy; the exit code. */
static int merge(const char *dir, const char *parts, const char *out_name, char **out)
{
    char list[1024] = "", *save = NULL, *copy = v4r_strdup(parts);
    for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, " '%s/%s.npy'", dir, t);
    }
    free(copy);
    return tu_run(out, "vectors merge --dataset '%s/ds'%s -o '%s/%s.npy'", dir, list, dir, out_name);
}

/* A merge that fails with exit 3 and a message containing want. */
static void merge_refused(const char *dir, const char *parts, const char *want)
{
    char *out = NULL;
    int rc = merge(dir, parts, "bad", &out);
    if (rc != 3 || !strstr(out, want))
        fail_msg("merge %s: exit %d, expected 3 with '%s': %s", parts, rc, want, out);
    char *npy = v4r_sprintf("%s/bad.npy", dir);
    assert_false(v4r_file_exists(npy)); /* nothing half written */
    free(npy), free(out);
}

static void assert_same(const char *dir, const char *a, const char *b)
{
    char *da = tu_read(dir, a), *db = tu_read(dir, b);
    char *pa = v4r_path_join(dir, a), *pb = v4r_path_join(dir, b), ha[65], hb[65];
    assert_non_null(da);
    assert_non_null(db);
    assert_int_equal(v4r_sha256_file(pa, ha, NULL), 0);
    assert_int_equal(v4r_sha256_file(pb, hb, NULL), 0);
    if (strcmp(ha, hb))
        fail_msg("%s and %s differ", a, b);
    free(da), free(db), free(pa), free(pb);
}

/* Parts 1..n named PREFIX-n-i, merged into PREFIX-merged-n; the part files list ground's split. */
static void shard_and_merge(const char *dir, const char *prefix, int n, int images, const char *whole)
{
    char parts[512] = "", name[64], merged[64];
    size_t rows = 0;
    for (int i = 1; i <= n; i++) {
        snprintf(name, sizeof name, "%s-%d-%d", prefix, n, i);
        if (images)
            embed(dir, name, i, n, "--chunk-size 4 --batch-size 3");
        else
            encode(dir, name, i, n, "--batch-size 5");
        char *path = v4r_sprintf("%s/%s.npy", dir, name), *mpath = v4r_sprintf("%s/%s.part.json", dir, name);
        v4r_vecpart p;
        assert_int_equal(v4r_vecpart_read(mpath, path, &p, NULL), 0);
        for (size_t r = 0; r < p.rows; r++)
            assert_int_equal(v4r_plan_shard_of(p.item[r], n), i);
        rows += p.rows;
        v4r_vecpart_free(&p);
        free(path), free(mpath);
        size_t len = strlen(parts);
        snprintf(parts + len, sizeof parts - len, "%s%s", i > 1 ? " " : "", name);
    }
    assert_int_equal(rows, 60);
    snprintf(merged, sizeof merged, "%s-merged-%d", prefix, n);
    char *out = NULL;
    run_ok("vectors merge", out, merge(dir, parts, merged, &out));
    char a[96], b[96];
    const char *exts[] = {".npy", ".covered.txt", ".failures.tsv"};
    for (int e = 0; e < (images ? 3 : 2); e++) {
        snprintf(a, sizeof a, "%s%s", merged, exts[e]);
        snprintf(b, sizeof b, "%s%s", whole, exts[e]);
        assert_same(dir, a, b);
    }
}

static void test_encode_merge_is_unsharded(void **state)
{
    char *dir = catalog();
    encode(dir, "whole", 0, 0, "");
    char *cov = tu_read(dir, "whole.covered.txt");
    size_t lines = 0;
    for (char *c = cov; *c; c++)
        lines += *c == '\n';
    assert_int_equal(lines, 39); /* some items have no text: the coverage is part of what is merged */
    free(cov);
    shard_and_merge(dir, "enc", 1, 0, "whole");
    shard_and_merge(dir, "enc", 3, 0, "whole");
    shard_and_merge(dir, "enc", 4, 0, "whole");
    tu_rmtree(dir);
    free(dir);
}

static void test_images_merge_is_unsharded(void **state)
{
    char *dir = catalog();
    embed(dir, "whole", 0, 0, "");
    char *fail = tu_read(dir, "whole.failures.tsv");
    assert_non_null(strstr(fail, "I000005\t")); /* a failure with its reason is part of what is merged */
    free(fail);
    shard_and_merge(dir, "img", 1, 1, "whole");
    shard_and_merge(dir, "img", 3, 1, "whole");
    shard_and_merge(dir, "img", 4, 1, "whole");
    tu_rmtree(dir);
    free(dir);
}

static void test_refusals(void **state)
{
    char *dir = catalog();
    for (int i = 1; i <= 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        encode(dir, name, i, 3, "");
    }
    encode(dir, "four1", 1, 4, "");
    merge_refused(dir, "p1 p3", "shard 2/3 missing");
    merge_refused(dir, "p1 p2 p3 p2", "shard 2/3 is given twice");
    merge_refused(dir, "p1 p2 p3 four1", "shard 1/4, but");
    /* options, model, command */
    encode(dir, "tpl2", 2, 3, "--text-template '{title}. {description}'");
    merge_refused(dir, "p1 tpl2 p3", "option 'text_template' is \"{title}. {description}\", but null in");
    char *m = bert();
    sh("cp -r '%s' '%s/other-model' && printf ' ' >> '%s/other-model/config.json'", m, dir, dir);
    char *out = NULL;
    run_ok("encode", out,
           tu_run(&out, "encode --model '%s/other-model' --dataset '%s/ds' --input '%s/texts.tsv' -o '%s/mod2.npy' "
                        "--shard 2/3",
                  dir, dir, dir, dir));
    merge_refused(dir, "p1 mod2 p3", "another model");
    embed(dir, "img2", 2, 3, "");
    merge_refused(dir, "p1 img2 p3", "written by 'embed-images'");
    /* another dataset: the same items, another title */
    sh("cp -r '%s/ds' '%s/ds2' && sed -i '2s/\\t[^\\t]*\\t/\\tRenamed\\t/' '%s/ds2/items.tsv'", dir, dir, dir);
    run_ok("encode", out,
           tu_run(&out, "encode --model '%s' --dataset '%s/ds2' --input '%s/texts.tsv' -o '%s/ds2p.npy' --shard 2/3", m,
                  dir, dir, dir));
    merge_refused(dir, "p1 ds2p p3", "made from another dataset");
    free(m);
    tu_rmtree(dir);
    free(dir);
}

/* Part files damaged after the fact, and a part whose rows name an item of another shard. */
static void test_damaged_parts(void **state)
{
    char *dir = catalog();
    for (int i = 1; i <= 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        encode(dir, name, i, 3, "");
    }
    sh("cp '%s/p2.npy' '%s/keep.npy'", dir, dir);
    sh("cp '%s/p2.part.json' '%s/keep.part.json'", dir, dir);
    sh("truncate -s -4 '%s/p2.npy'", dir);
    merge_refused(dir, "p1 p2 p3", "run shard 2/3 again");
    sh("cp '%s/keep.npy' '%s/p2.npy'", dir, dir);
    sh("head -c 200 '%s/keep.part.json' > '%s/p2.part.json'", dir, dir);
    merge_refused(dir, "p1 p2 p3", "p2.part.json:");
    sh("sed 's/\"items_sha256\"/\"items_sha\"/' '%s/keep.part.json' > '%s/p2.part.json'", dir, dir);
    merge_refused(dir, "p1 p2 p3", "field 'dataset.items_sha256' is missing");
    sh("rm '%s/p2.part.json'", dir);
    merge_refused(dir, "p1 p2 p3", "its shard did not finish");
    /* the first row of part 2 renamed to an item of part 1: an item in the wrong shard */
    char *p1 = tu_read(dir, "p1.part.json"), *first = strstr(p1, "[\"I");
    char id[16] = {0};
    memcpy(id, first + 2, 7);
    char *cmd = v4r_sprintf("sed '0,/\\[\"I[0-9]*\"/s//[\"%s\"/' '%s/keep.part.json' > '%s/p2.part.json'", id, dir, dir);
    assert_int_equal(system(cmd), 0);
    char *want = v4r_sprintf("item '%s' belongs to shard 1/3, not 2", id);
    merge_refused(dir, "p1 p2 p3", want);
    free(cmd), free(want), free(p1);
    sh("cp '%s/keep.part.json' '%s/p2.part.json'", dir, dir);
    char *out = NULL;
    run_ok("merge", out, merge(dir, "p1 p2 p3", "good", &out));
    tu_rmtree(dir);
    free(dir);
}

/* A shard killed midway (embed-images: SIGKILL after a chunk; encode: a rerun that fails) leaves no
 * finished part; running it again as before completes it, and the merge is the unsharded run's. */
static void test_rerun_after_kill(void **state)
{
    char *dir = catalog(), *m = clip(), *out = NULL;
    embed(dir, "whole", 0, 0, "");
    embed(dir, "k1", 1, 2, "--chunk-size 4");
    setenv("VLM4REC_TEST_KILL_AFTER_CHUNKS", "2", 1);
    int rc = tu_run(&out, "embed-images --model '%s' --dataset '%s/ds' -o '%s/k2.npy' --shard 2/2 --chunk-size 4", m,
                    dir, dir);
    unsetenv("VLM4REC_TEST_KILL_AFTER_CHUNKS");
    assert_true(rc == 137 || rc == 128);
    free(out);
    merge_refused(dir, "k1 k2", "k2.npy");
    embed(dir, "k2", 2, 2, "--chunk-size 4");
    run_ok("merge", out, merge(dir, "k1 k2", "kmerged", &out));
    assert_same(dir, "kmerged.npy", "whole.npy");
    assert_same(dir, "kmerged.failures.tsv", "whole.failures.tsv");
    /* encode: a finished part, then a rerun that stops (bad text) leaves it unfinished */
    encode(dir, "ewhole", 0, 0, "");
    encode(dir, "e1", 1, 2, "");
    encode(dir, "e2", 2, 2, "");
    sh("cp '%s/texts.tsv' '%s/texts.good'", dir, dir);
    sh("printf 'I000059\\t\\377bad\\n' >> '%s/texts.tsv'", dir);
    char *b = bert();
    int stopped = 0;
    for (int i = 1; i <= 2; i++) { /* the bad line is in one of the two shards */
        rc = tu_run(&out, "encode --model '%s' --dataset '%s/ds' --input '%s/texts.tsv' -o '%s/e%d.npy' --shard %d/2",
                    b, dir, dir, dir, i, i);
        free(out);
        stopped += rc == 3;
        if (rc)
            merge_refused(dir, "e1 e2", "its shard did not finish");
    }
    assert_int_equal(stopped, 1);
    sh("cp '%s/texts.good' '%s/texts.tsv'", dir, dir);
    encode(dir, "e1", 1, 2, "");
    encode(dir, "e2", 2, 2, "");
    run_ok("merge", out, merge(dir, "e1 e2", "emerged", &out));
    assert_same(dir, "emerged.npy", "ewhole.npy");
    assert_same(dir, "emerged.covered.txt", "ewhole.covered.txt");
    free(b), free(m);
    tu_rmtree(dir);
    free(dir);
}

static void test_usage(void **state)
{
    char *m = bert(), *out = NULL;
    assert_int_equal(tu_run(&out, "encode --model '%s' --titles --dataset x -o y.npy --shard 0/3", m), 2);
    free(out);
    assert_int_equal(tu_run(&out, "encode --model '%s' --titles --dataset x -o y.npy --shard 4/3", m), 2);
    free(out);
    assert_int_equal(tu_run(&out, "encode --tfidf --titles --dataset x -o y.npy --shard 1/3"), 2);
    assert_non_null(strstr(out, "idf"));
    free(out);
    assert_int_equal(tu_run(&out, "vectors merge -o y.npy a.npy"), 2);
    free(out);
    assert_int_equal(tu_run(&out, "vectors split"), 2);
    free(out);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_merge_is_unsharded),
        cmocka_unit_test(test_images_merge_is_unsharded),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_damaged_parts),
        cmocka_unit_test(test_rerun_after_kill),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

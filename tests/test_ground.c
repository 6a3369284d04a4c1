/* `vlm4rec ground` end to end against the stand-in server: every item described, every fault
 * survived, bad images failed with their reason, runs killed with SIGKILL resumed, two processes on
 * one cache, shards merged, endpoints rested; and the plan's order, shards and limit. */
#include "testutil.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "../src/ground/runner_internal.h"
#include "vlm4rec/ground.h"

#include "hubserver.c"

#define N_ITEMS 40

typedef struct {
    char *dir;     /* temporary directory */
    char *data;    /* the synthetic dataset with images */
    char *cache;   /* dir/cache.sqlite */
    char *log;     /* the stand-in's request log */
    v4r_standin *srv;
    char url[64];
} env;

static void start_server(env *e, v4r_standin_opts *so)
{
    so->log_path = e->log;
    v4r_err err = {0};
    assert_int_equal(v4r_standin_start(so, &e->srv, &err), 0);
    snprintf(e->url, sizeof e->url, "http://127.0.0.1:%d/v1", v4r_standin_port(e->srv));
}

static env *env_new(void)
{
    env *e = v4r_calloc(1, sizeof *e);
    e->dir = tu_tmpdir();
    e->data = v4r_path_join(e->dir, "data");
    e->cache = v4r_path_join(e->dir, "cache.sqlite");
    e->log = v4r_path_join(e->dir, "standin.log");
    assert_int_equal(tu_run(NULL, "dataset synth -o '%s' --users 30 --items %d --interactions 200 --images", e->data,
                            N_ITEMS),
                     0);
    return e;
}

static void env_free(env *e)
{
    if (e->srv)
        v4r_standin_stop(e->srv);
    tu_rmtree(e->dir);
    free(e->dir);
    free(e->data);
    free(e->cache);
    free(e->log);
    free(e);
}

/* Runs `vlm4rec ground` on the environment's dataset, cache and server with extra options. */
static int ground(env *e, char **out, const char *extra)
{
    return tu_run(out, "ground --dataset '%s' --cache '%s' --endpoint %s --model standin --backoff 0.05 %s", e->data,
                  e->cache, e->url, extra);
}

/* One integer from an SQL query on a cache. */
static long long query(const char *cache, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(cache, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    long long v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Successful answers in the stand-in's log, and the most any one image got. */
static void log_answers(const char *log, size_t *ok, size_t *max_per_image)
{
    v4r_strmap seen;
    v4r_strmap_init(&seen, 64);
    v4r_lines r;
    *ok = *max_per_image = 0;
    assert_int_equal(v4r_lines_open(&r, log, NULL), 0);
    while (v4r_lines_next(&r, NULL) == 1) {
        char *f[4];
        if (v4r_tsv_split(r.line, f, 4) != 4 || strcmp(f[3], "200"))
            continue;
        (*ok)++;
        int64_t n = v4r_strmap_get(&seen, f[1]);
        n = n < 0 ? 1 : n + 1;
        v4r_strmap_put(&seen, f[1], n);
        if ((size_t)n > *max_per_image)
            *max_per_image = (size_t)n;
    }
    v4r_lines_close(&r);
    v4r_strmap_free(&seen);
}

/* Requests in the stand-in's log for an image that had already been answered 400. */
static size_t requests_after_400(const char *log)
{
    v4r_strmap bad;
    v4r_strmap_init(&bad, 64);
    v4r_lines r;
    size_t after = 0;
    assert_int_equal(v4r_lines_open(&r, log, NULL), 0);
    while (v4r_lines_next(&r, NULL) == 1) {
        char *f[4];
        if (v4r_tsv_split(r.line, f, 4) != 4)
            continue;
        if (v4r_strmap_get(&bad, f[1]) >= 0)
            after++;
        if (!strcmp(f[3], "400"))
            v4r_strmap_put(&bad, f[1], 1);
    }
    v4r_lines_close(&r);
    v4r_strmap_free(&bad);
    return after;
}

static void test_all_items_described_once(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    so.latency_s = 0.01;
    so.cap = 4;
    start_server(e, &so);
    char *out = NULL;
    assert_int_equal(ground(e, &out, "--concurrency 4"), 0);
    assert_non_null(strstr(out, "40 described, 0 failed"));
    free(out);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE status='done'"), N_ITEMS);
    assert_int_equal(query(e->cache, "SELECT count(DISTINCT item) FROM descriptions"), N_ITEMS);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE attempts != 1"), 0);
    /* the description is the stand-in's text for that image */
    v4r_image img;
    char *png = v4r_path_join(e->data, "images/I000007.png");
    assert_int_equal(v4r_image_load(png, &img, NULL), 0);
    char *want = v4r_standin_describe(&img);
    char *sql = v4r_sprintf("SELECT description = '%s' FROM descriptions WHERE item='I000007'", want);
    assert_int_equal(query(e->cache, sql), 1);
    free(sql);
    free(want);
    free(png);
    v4r_image_free(&img);
    /* a second run sends nothing */
    uint64_t before = v4r_standin_requests(e->srv);
    assert_int_equal(ground(e, &out, ""), 0);
    assert_non_null(strstr(out, "0 described, 0 failed; skipped 40 already done"));
    free(out);
    assert_int_equal(v4r_standin_requests(e->srv), before);
    assert_true(v4r_standin_peak_concurrency(e->srv) <= 4);
    env_free(e);
}

static void test_faults_survived(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    so.fault_rate[V4R_FAULT_429] = 0.15;
    so.fault_rate[V4R_FAULT_500] = 0.15;
    so.fault_rate[V4R_FAULT_MALFORMED] = 0.1;
    so.fault_rate[V4R_FAULT_EMPTY] = 0.1;
    so.fault_rate[V4R_FAULT_DROP] = 0.1;
    so.fault_rate[V4R_FAULT_DRIP] = 0.1;
    so.fault_attempts = 2; /* the third request for an image always succeeds */
    so.retry_after_s = 0.2;
    so.drip_s = 5;
    so.seed = 7;
    start_server(e, &so);
    char *out = NULL;
    assert_int_equal(ground(e, &out, "--concurrency 8 --timeout 1 --retries 3"), 0);
    assert_non_null(strstr(out, "40 described, 0 failed"));
    free(out);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE status='done'"), N_ITEMS);
    /* faults happened and were retried */
    assert_true(query(e->cache, "SELECT count(*) FROM descriptions WHERE attempts > 1") > 5);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE description = ''"), 0);
    env_free(e);
}

static void test_permanent_and_exhausted_failures(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    so.fault_rate[V4R_FAULT_400] = 0.3;
    so.fault_rate[V4R_FAULT_500] = 0.2; /* on every attempt: those items exhaust their retries */
    so.seed = 3;
    start_server(e, &so);
    char *out = NULL;
    assert_int_equal(ground(e, &out, "--retries 2"), 0);
    free(out);
    long long perm = query(e->cache, "SELECT count(*) FROM descriptions WHERE status='failed' AND permanent=1");
    long long gave_up = query(e->cache, "SELECT count(*) FROM descriptions WHERE status='failed' AND permanent=0");
    assert_true(perm > 0);
    /* a 400 is never retried: no request for an image follows its 400 */
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE permanent=1 AND "
                                     "error NOT LIKE 'HTTP 400: stand-in injected 400%'"),
                     0);
    assert_int_equal(requests_after_400(e->log), 0);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE permanent=0 AND status='failed' AND "
                                     "(attempts != 3 OR error NOT LIKE 'gave up after 3 attempts: HTTP 500%')"),
                     0);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE status='done'") + perm + gave_up,
                     N_ITEMS);
    /* a re-run retries only the transient failures; --retry-failed takes the permanent ones too */
    v4r_standin_stop(e->srv);
    v4r_standin_defaults(&so);
    start_server(e, &so);
    assert_int_equal(ground(e, &out, ""), 0);
    char want[128];
    snprintf(want, sizeof want, "%lld described, 0 failed", gave_up);
    assert_non_null(strstr(out, want));
    free(out);
    assert_int_equal(ground(e, &out, "--retry-failed"), 0);
    snprintf(want, sizeof want, "%lld described, 0 failed", perm);
    assert_non_null(strstr(out, want));
    free(out);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE status='done'"), N_ITEMS);
    env_free(e);
}

static void test_bad_images(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    start_server(e, &so);
    /* corrupt, empty, missing, not an image, and an item without an image */
    char *cmd = v4r_sprintf("cd '%s/images' && head -c 100 I000001.png > t && mv t I000001.png && : > I000002.png && "
                            "rm I000003.png && echo 'hello' > I000004.png && "
                            "sed -i 's#images/I000005.png##' ../items.tsv",
                            e->data);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char *out = NULL;
    assert_int_equal(ground(e, &out, ""), 0);
    assert_non_null(strstr(out, "35 described, 5 failed"));
    free(out);
    const char *want[][2] = {{"I000001", "%corrupt PNG%"}, {"I000002", "%empty file%"},
                             {"I000003", "%not readable%"}, {"I000004", "%not a JPEG, PNG or WebP image%"},
                             {"I000005", "the item has no image"}};
    for (int k = 0; k < 5; k++) {
        char *sql = v4r_sprintf("SELECT count(*) FROM descriptions WHERE item='%s' AND status='failed' AND permanent=1 "
                                "AND attempts=0 AND error LIKE '%s'",
                                want[k][0], want[k][1]);
        if (query(e->cache, sql) != 1)
            fail_msg("%s: no permanent failure like '%s'", want[k][0], want[k][1]);
        free(sql);
    }
    env_free(e);
}

static pid_t spawn(const char *cmdline)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmdline, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static char *ground_cmdline(env *e, const char *extra)
{
    return v4r_sprintf("VLM4REC_LOG=quiet exec '%s' ground --dataset '%s' --cache '%s' --endpoint %s --model standin "
                       "--backoff 0.05 %s >/dev/null 2>&1",
                       V4R_BINARY, e->data, e->cache, e->url, extra);
}

static void test_sigkill_resume(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    so.latency_s = 0.05;
    so.cap = 4;
    start_server(e, &so);
    char *cmd = ground_cmdline(e, "--concurrency 4");
    srand((unsigned)time(NULL));
    int kills = 0;
    for (int round = 0; round < 5; round++) {
        pid_t pid = spawn(cmd);
        usleep(50000 + rand() % 200000);
        if (kill(pid, SIGKILL) == 0)
            kills++;
        int status;
        waitpid(pid, &status, 0);
    }
    int status;
    pid_t pid = spawn(cmd);
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(cmd);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE status='done'"), N_ITEMS);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions"), N_ITEMS);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
    /* at most the requests in flight were lost to each kill */
    size_t ok, most;
    log_answers(e->log, &ok, &most);
    assert_true(ok >= N_ITEMS);
    assert_true(ok <= (size_t)N_ITEMS + (size_t)kills * 4);
    env_free(e);
}

static void test_two_processes_share_a_cache(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    so.latency_s = 0.02;
    start_server(e, &so);
    char *cmd = ground_cmdline(e, "--concurrency 3");
    pid_t a = spawn(cmd), b = spawn(cmd);
    int sa, sb;
    waitpid(a, &sa, 0);
    waitpid(b, &sb, 0);
    free(cmd);
    assert_true(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
    assert_true(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE status='done'"), N_ITEMS);
    size_t ok, most;
    log_answers(e->log, &ok, &most);
    assert_int_equal(ok, N_ITEMS); /* no image was sent twice */
    assert_int_equal(most, 1);
    env_free(e);
}

static void test_shards_merge_to_single_run(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    start_server(e, &so);
    char *single = v4r_path_join(e->dir, "single.sqlite"), *s1 = v4r_path_join(e->dir, "s1.sqlite"),
         *s2 = v4r_path_join(e->dir, "s2.sqlite"), *merged = v4r_path_join(e->dir, "merged.sqlite");
    const char *caches[] = {single, s1, s2};
    const char *extra[] = {"", "--shard 1/2", "--shard 2/2"};
    for (int k = 0; k < 3; k++) {
        char *out = NULL;
        assert_int_equal(tu_run(&out, "ground --dataset '%s' --cache '%s' --endpoint %s --model standin %s", e->data,
                                caches[k], e->url, extra[k]),
                         0);
        free(out);
    }
    long long n1 = query(s1, "SELECT count(*) FROM descriptions"), n2 = query(s2, "SELECT count(*) FROM descriptions");
    assert_true(n1 > 0 && n2 > 0);
    assert_int_equal(n1 + n2, N_ITEMS);
    assert_int_equal(tu_run(NULL, "cache merge '%s' '%s' '%s'", merged, s1, s2), 0);
    char *ea = v4r_path_join(e->dir, "a.jsonl"), *eb = v4r_path_join(e->dir, "b.jsonl");
    assert_int_equal(tu_run(NULL, "cache export '%s' -o '%s'", single, ea), 0);
    assert_int_equal(tu_run(NULL, "cache export '%s' -o '%s'", merged, eb), 0);
    /* the same items, images, prompts and texts, line by line (timings differ) */
    v4r_lines la, lb;
    assert_int_equal(v4r_lines_open(&la, ea, NULL), 0);
    assert_int_equal(v4r_lines_open(&lb, eb, NULL), 0);
    size_t lines = 0;
    for (;;) {
        int ga = v4r_lines_next(&la, NULL), gb = v4r_lines_next(&lb, NULL);
        assert_int_equal(ga, gb);
        if (ga != 1)
            break;
        json_t *ja = json_loads(la.line, 0, NULL), *jb = json_loads(lb.line, 0, NULL);
        const char *fields[] = {"item", "description", "image_hash", "prompt_hash", "model"};
        for (int f = 0; f < 5; f++)
            assert_string_equal(json_string_value(json_object_get(ja, fields[f])),
                                json_string_value(json_object_get(jb, fields[f])));
        json_decref(ja);
        json_decref(jb);
        lines++;
    }
    assert_int_equal(lines, N_ITEMS);
    v4r_lines_close(&la);
    v4r_lines_close(&lb);
    free(ea);
    free(eb);
    free(single);
    free(s1);
    free(s2);
    free(merged);
    env_free(e);
}

static void test_dead_endpoint_rested(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    so.latency_s = 0.01;
    start_server(e, &so);
    /* a second endpoint where nothing listens: its requests fail, it is rested, the items go on */
    char *out = NULL;
    assert_int_equal(ground(e, &out, "--endpoint http://127.0.0.1:9/v1 --concurrency 2"), 0);
    assert_non_null(strstr(out, "40 described, 0 failed"));
    unsigned requests = 0, retries = 0;
    const char *p = strstr(out, "ground: ");
    p = p ? strstr(p + 1, "ground: ") : NULL;
    assert_non_null(p);
    assert_int_equal(sscanf(p, "ground: %u requests (%u retries)", &requests, &retries), 2);
    assert_true(retries >= 1);
    assert_true(retries <= 4); /* three faults rest it for longer than the run takes */
    free(out);
    env_free(e);
}

static void test_retry_after_honoured(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    so.fault_rate[V4R_FAULT_429] = 1.0;
    so.fault_attempts = 1;
    so.retry_after_s = 1.0;
    start_server(e, &so);
    char *out = NULL;
    double t0 = v4r_now();
    assert_int_equal(ground(e, &out, "--limit 3 --backoff 0.01"), 0);
    double took = v4r_now() - t0;
    assert_non_null(strstr(out, "3 described, 0 failed"));
    free(out);
    assert_true(took >= 1.0);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE attempts = 2"), 3);
    env_free(e);
}

static void test_cli_errors(void **state)
{
    env *e = env_new();
    char *out = NULL;
    assert_int_equal(tu_run(&out, "ground --dataset '%s' --model m", e->data), 2);
    assert_non_null(strstr(out, "--endpoint"));
    free(out);
    assert_int_equal(tu_run(&out, "ground --dataset '%s' --endpoint http://x --model m --shard 3/2", e->data), 2);
    assert_non_null(strstr(out, "--shard"));
    free(out);
    assert_int_equal(tu_run(&out, "ground --dataset '%s' --endpoint http://x --model m --prompt nope", e->data), 2);
    free(out);
    assert_int_equal(tu_run(&out, "ground --dataset '%s/none' --endpoint http://x --model m", e->dir), 4);
    free(out);
    tu_write(e->dir, "items.txt", "I000001\nnope\n");
    assert_int_equal(tu_run(&out, "ground --dataset '%s' --endpoint http://x --model m --items '%s/items.txt'",
                            e->data, e->dir),
                     3);
    assert_non_null(strstr(out, "items.txt:2"));
    free(out);
    assert_int_equal(tu_run(&out, "ground --dataset '%s' --endpoint http://x --model m --api-key-env V4R_NOPE_KEY",
                            e->data),
                     2);
    free(out);
    env_free(e);
}

static void test_url_images_downloaded_once(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    start_server(e, &so);
    char *images = v4r_path_join(e->data, "images");
    hs_repo repo = {"shop/images", images, "0123456789abcdef0123456789abcdef01234567"};
    hubserver *hs = hs_start(&repo, 1);
    assert_non_null(hs);
    /* every image becomes a URL; one of them points at nothing */
    char *cmd = v4r_sprintf("sed -i 's#\\timages/#\\t%s/shop/images/resolve/main/#; s#main/I000009.png#main/none.png#' "
                            "'%s/items.tsv'",
                            hs_url(hs), e->data);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char *out = NULL;
    assert_int_equal(ground(e, &out, "--concurrency 4"), 0);
    assert_non_null(strstr(out, "39 described, 1 failed"));
    free(out);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE item='I000009' AND permanent=1 AND "
                                     "error LIKE 'downloading %none.png: HTTP 404'"),
                     1);
    /* the same descriptions as from the files; a new cache reuses the downloads */
    hs_counts k;
    hs_counts_get(hs, &k);
    int fetched = k.total;
    assert_true(fetched >= 40);
    char *fresh = v4r_path_join(e->dir, "fresh.sqlite");
    assert_int_equal(tu_run(&out, "ground --dataset '%s' --cache '%s' --endpoint %s --model standin "
                                  "--image-cache '%s.images'",
                            e->data, fresh, e->url, e->cache),
                     0);
    assert_non_null(strstr(out, "39 described, 1 failed"));
    free(out);
    hs_counts_get(hs, &k);
    assert_int_equal(k.total, fetched + 1); /* only the missing one is asked for again */
    /* a download over the size limit fails for good */
    char *small = v4r_path_join(e->dir, "small.sqlite");
    assert_int_equal(tu_run(&out, "ground --dataset '%s' --cache '%s' --endpoint %s --model standin --limit 2 "
                                  "--max-image-bytes 100",
                            e->data, small, e->url),
                     0);
    assert_non_null(strstr(out, "0 described, 2 failed"));
    free(out);
    assert_int_equal(query(small, "SELECT count(*) FROM descriptions WHERE error LIKE '%over the limit of 100%'"), 2);
    free(small);
    free(fresh);
    hs_stop(hs);
    free(images);
    env_free(e);
}

static void test_max_side_downscales(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    start_server(e, &so);
    char *out = NULL;
    assert_int_equal(ground(e, &out, "--limit 1 --max-side 32"), 0);
    assert_non_null(strstr(out, "1 described, 0 failed"));
    free(out);
    /* the server saw the 32 x 32 bicubic reduction (PNG keeps it exact) */
    v4r_image img, small;
    char *png = v4r_path_join(e->data, "images/I000000.png");
    assert_int_equal(v4r_image_load(png, &img, NULL), 0);
    assert_int_equal(v4r_image_resize(&img, 32, 32, V4R_RESAMPLE_BICUBIC, &small, NULL), 0);
    char *want = v4r_standin_describe(&small), *full = v4r_standin_describe(&img);
    assert_string_not_equal(want, full);
    char *sql = v4r_sprintf("SELECT description = '%s' FROM descriptions WHERE item='I000000'", want);
    assert_int_equal(query(e->cache, sql), 1);
    /* the key keeps the hash of the original file */
    char *data = NULL;
    size_t n = 0;
    assert_int_equal(v4r_read_file(png, &data, &n, NULL), 0);
    char hex[65];
    v4r_sha256_hex(data, n, hex);
    char *sql2 = v4r_sprintf("SELECT image_hash = '%s' FROM descriptions WHERE item='I000000'", hex);
    assert_int_equal(query(e->cache, sql2), 1);
    free(sql2);
    free(data);
    free(sql);
    free(want);
    free(full);
    free(png);
    v4r_image_free(&img);
    v4r_image_free(&small);
    env_free(e);
}

static void test_api_key(void **state)
{
    env *e = env_new();
    v4r_standin_opts so;
    v4r_standin_defaults(&so);
    so.api_key = "s3cret";
    start_server(e, &so);
    char *out = NULL;
    /* without the key every request is refused: an endpoint fault, retried, then given up */
    assert_int_equal(ground(e, &out, "--limit 2 --retries 1"), 0);
    assert_non_null(strstr(out, "0 described, 2 failed"));
    free(out);
    assert_int_equal(query(e->cache, "SELECT count(*) FROM descriptions WHERE permanent=0 AND "
                                     "error LIKE 'gave up after 2 attempts: HTTP 401%API key%'"),
                     2);
    setenv("V4R_TEST_KEY", "s3cret", 1);
    assert_int_equal(ground(e, &out, "--limit 2 --api-key-env V4R_TEST_KEY"), 0);
    assert_non_null(strstr(out, "2 described, 0 failed"));
    free(out);
    unsetenv("V4R_TEST_KEY");
    env_free(e);
}

/* ---- the plan ---- */

static void test_plan_order_shard_limit(void **state)
{
    char *dir = tu_tmpdir();
    assert_int_equal(tu_run(NULL, "dataset synth -o '%s/d' --users 50 --items 200 --interactions 600", dir), 0);
    char *data = v4r_sprintf("%s/d", dir);
    v4r_dataset ds;
    assert_int_equal(v4r_dataset_load(data, &ds, NULL), 0);
    v4r_ground_opts o;
    v4r_ground_defaults(&o);
    v4r_plan p;
    /* priority: scores never increase along the plan */
    o.order = V4R_ORDER_PRIORITY;
    assert_int_equal(v4r_plan_build(&ds, &o, &p, NULL), 0);
    assert_int_equal(p.n, 200);
    double *score = v4r_malloc(200 * sizeof(double));
    v4r_plan_priority(&ds, score);
    for (size_t k = 1; k < p.n; k++)
        assert_true(score[p.item[k - 1]] >= score[p.item[k]]);
    v4r_plan_free(&p);
    free(score);
    /* shards: disjoint, together all items */
    uint8_t seen[200] = {0};
    for (int s = 1; s <= 3; s++) {
        o.order = V4R_ORDER_DATASET;
        o.shard_index = s;
        o.shard_count = 3;
        assert_int_equal(v4r_plan_build(&ds, &o, &p, NULL), 0);
        for (size_t k = 0; k < p.n; k++)
            seen[p.item[k]]++;
        v4r_plan_free(&p);
    }
    for (int i = 0; i < 200; i++)
        assert_int_equal(seen[i], 1);
    /* random: a permutation, the same for the same seed, another for another seed; then the limit */
    o.shard_count = 0;
    o.order = V4R_ORDER_RANDOM;
    o.order_seed = 5;
    o.limit = 10;
    v4r_plan q, r;
    assert_int_equal(v4r_plan_build(&ds, &o, &p, NULL), 0);
    assert_int_equal(v4r_plan_build(&ds, &o, &q, NULL), 0);
    o.order_seed = 6;
    assert_int_equal(v4r_plan_build(&ds, &o, &r, NULL), 0);
    assert_int_equal(p.n, 10);
    assert_memory_equal(p.item, q.item, 10 * sizeof(int32_t));
    assert_memory_not_equal(p.item, r.item, 10 * sizeof(int32_t));
    v4r_plan_free(&p);
    v4r_plan_free(&q);
    v4r_plan_free(&r);
    v4r_dataset_free(&ds);
    free(data);
    tu_rmtree(dir);
    free(dir);
}

/* ---- answers ---- */

static void test_answer_classes(void **state)
{
    v4r_answer a;
    const char *ok = "{\"choices\":[{\"message\":{\"content\":\"  A red dress. \"}}],"
                     "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":4}}";
    v4r_answer_parse(CURLE_OK, "", 200, ok, strlen(ok), NULL, &a);
    assert_int_equal(a.kind, V4R_ANSWER_OK);
    assert_string_equal(a.text, "A red dress.");
    assert_int_equal(a.prompt_tokens, 10);
    assert_int_equal(a.completion_tokens, 4);
    v4r_answer_free(&a);
    const char *empty = "{\"choices\":[{\"message\":{\"content\":\" \"}}]}";
    v4r_answer_parse(CURLE_OK, "", 200, empty, strlen(empty), NULL, &a);
    assert_int_equal(a.kind, V4R_ANSWER_RETRY);
    assert_string_equal(a.error, "empty answer");
    v4r_answer_free(&a);
    v4r_answer_parse(CURLE_OK, "", 200, "{\"choices\": [", 13, NULL, &a);
    assert_int_equal(a.kind, V4R_ANSWER_RETRY);
    assert_non_null(strstr(a.error, "malformed"));
    v4r_answer_free(&a);
    const char *bad = "{\"error\":{\"message\":\"image too small\"}}";
    v4r_answer_parse(CURLE_OK, "", 400, bad, strlen(bad), NULL, &a);
    assert_int_equal(a.kind, V4R_ANSWER_PERMANENT);
    assert_string_equal(a.error, "HTTP 400: image too small");
    v4r_answer_free(&a);
    v4r_answer_parse(CURLE_OK, "", 429, "", 0, "3", &a);
    assert_int_equal(a.kind, V4R_ANSWER_RETRY);
    assert_true(a.retry_after == 3.0);
    v4r_answer_free(&a);
    v4r_answer_parse(CURLE_OK, "", 503, "oops", 4, NULL, &a);
    assert_int_equal(a.kind, V4R_ANSWER_RETRY);
    assert_true(a.endpoint_fault);
    v4r_answer_free(&a);
    v4r_answer_parse(CURLE_OPERATION_TIMEDOUT, "Operation timed out", 0, NULL, 0, NULL, &a);
    assert_int_equal(a.kind, V4R_ANSWER_RETRY);
    assert_non_null(strstr(a.error, "timed out"));
    v4r_answer_free(&a);
    assert_true(v4r_retry_after_seconds("  2 ") == 2.0);
    assert_true(v4r_retry_after_seconds("soon") == 0.0);
    assert_true(v4r_retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0); /* in the past */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_classes),
        cmocka_unit_test(test_plan_order_shard_limit),
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_all_items_described_once),
        cmocka_unit_test(test_faults_survived),
        cmocka_unit_test(test_permanent_and_exhausted_failures),
        cmocka_unit_test(test_bad_images),
        cmocka_unit_test(test_sigkill_resume),
        cmocka_unit_test(test_two_processes_share_a_cache),
        cmocka_unit_test(test_shards_merge_to_single_run),
        cmocka_unit_test(test_dead_endpoint_rested),
        cmocka_unit_test(test_retry_after_honoured),
        cmocka_unit_test(test_url_images_downloaded_once),
        cmocka_unit_test(test_max_side_downscales),
        cmocka_unit_test(test_api_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The semantic cache: schema and identity checks, every branch of claim and finish, leases, dead and
 * live owners across processes, four processes claiming one key list, SIGKILL in the middle of
 * writes, transactions, prompts, and the description reader. */
#include "cache_testutil.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int claim(v4r_cache *c, const char *item, int retry_failed)
{
    v4r_cache_key k = ckey(item);
    int out = -1;
    v4r_err err = {0};
    if (v4r_cache_claim(c, &k, retry_failed, &out, &err) != 0)
        fail_msg("claim %s: %s", item, err.msg);
    return out;
}

static void finish(v4r_cache *c, const char *item, v4r_cache_result r)
{
    v4r_cache_key k = ckey(item);
    v4r_err err = {0};
    if (v4r_cache_finish(c, &k, &r, &err) != 0)
        fail_msg("finish %s: %s", item, err.msg);
}

static v4r_cache_row get(v4r_cache *c, const char *item, int *found)
{
    v4r_cache_key k = ckey(item);
    v4r_cache_row row;
    v4r_err err = {0};
    assert_int_equal(v4r_cache_get(c, &k, &row, found, &err), 0);
    return row;
}

static void test_schema_create_reopen(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_sprintf("%s/sub/dir/c.db", dir);
    double t0 = wall();
    v4r_cache *c = copen(path); /* creates sub/dir */
    assert_string_equal(v4r_cache_path(c), path);
    const char *owner = v4r_cache_owner(c);
    char host[256];
    gethostname(host, sizeof host);
    char *prefix = v4r_sprintf("%s:%ld:", host, (long)getpid());
    assert_memory_equal(owner, prefix, strlen(prefix));
    assert_int_equal(strlen(owner + strlen(prefix)), 16);
    assert_int_equal(strspn(owner + strlen(prefix), "0123456789abcdef"), 16);
    free(prefix);
    assert_int_equal(claim(c, "a", 0), V4R_CLAIM_OK);
    v4r_cache_close(c);
    assert_int_equal(raw_int(path, "PRAGMA application_id"), 0x76347263);
    assert_int_equal(raw_int(path, "PRAGMA user_version"), 1);
    char *mode = raw_text(path, "PRAGMA journal_mode");
    assert_string_equal(mode, "wal");
    free(mode);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"), 2);
    /* reopen: the row is there, with the times of its claim */
    c = copen(path);
    int found;
    v4r_cache_row r = get(c, "a", &found);
    assert_true(found);
    assert_int_equal(r.status, V4R_CACHE_RUNNING);
    assert_true(r.created >= t0 - 1 && r.created <= wall() + 1);
    assert_true(r.updated == r.created);
    v4r_cache_row_free(&r);
    v4r_cache_row_free(&r); /* twice is harmless */
    v4r_cache_close(c);
    v4r_cache_close(NULL);
    /* read-only: opens an existing cache; a missing one is an i/o error naming it */
    v4r_err err = {0};
    assert_int_equal(v4r_cache_open_readonly(path, &c, &err), 0);
    v4r_cache_close(c);
    char *missing = v4r_sprintf("%s/missing.db", dir);
    assert_int_equal(v4r_cache_open_readonly(missing, &c, &err), V4R_EIO);
    assert_null(c);
    assert_non_null(strstr(err.msg, missing));
    assert_false(v4r_file_exists(missing));
    free(missing);
    /* an empty file becomes a cache */
    tu_write(dir, "empty.db", "");
    char *empty = v4r_sprintf("%s/empty.db", dir);
    assert_int_equal(v4r_cache_open_readonly(empty, &c, &err), V4R_EINPUT);
    c = copen(empty);
    v4r_cache_close(c);
    assert_int_equal(raw_int(empty, "PRAGMA application_id"), 0x76347263);
    free(empty);
    assert_string_equal(v4r_cache_status_name(V4R_CACHE_RUNNING), "running");
    assert_string_equal(v4r_cache_status_name(V4R_CACHE_DONE), "done");
    assert_string_equal(v4r_cache_status_name(V4R_CACHE_FAILED), "failed");
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void expect_open_fail(const char *path, int code, const char *needle)
{
    v4r_cache *c = (v4r_cache *)&c;
    v4r_err err = {0};
    assert_int_equal(v4r_cache_open(path, &c, &err), code);
    assert_null(c);
    if (!strstr(err.msg, path) || (needle && !strstr(err.msg, needle)))
        fail_msg("message '%s' should name %s and say '%s'", err.msg, path, needle ? needle : "");
    if (code == V4R_EINPUT) {
        c = (v4r_cache *)&c;
        assert_int_equal(v4r_cache_open_readonly(path, &c, &err), code);
        assert_null(c);
    }
}

static void test_not_a_cache(void **state)
{
    char *dir = tu_tmpdir();
    tu_write(dir, "garbage.db",
             "this is not a database at all, just some text that is long enough to have a header"
             " of a hundred bytes or more, which SQLite reads first........................\n");
    tu_write(dir, "short.db", "hello\n");
    char *garbage = v4r_path_join(dir, "garbage.db"), *shortf = v4r_path_join(dir, "short.db");
    expect_open_fail(garbage, V4R_EINPUT, "not a vlm4rec cache");
    expect_open_fail(shortf, V4R_EINPUT, "not a vlm4rec cache");
    /* another SQLite database */
    char *other = v4r_path_join(dir, "other.db");
    raw_sql(other, "CREATE TABLE t(x); INSERT INTO t VALUES(1);");
    expect_open_fail(other, V4R_EINPUT, "not a vlm4rec cache");
    raw_sql(other, "PRAGMA application_id = 7;");
    expect_open_fail(other, V4R_EINPUT, "application_id 0x7");
    /* a newer schema */
    char *newer = v4r_path_join(dir, "newer.db");
    v4r_cache_close(copen(newer));
    raw_sql(newer, "PRAGMA user_version = 2;");
    expect_open_fail(newer, V4R_EINPUT, "newer");
    /* our id without the tables */
    char *damaged = v4r_path_join(dir, "damaged.db");
    raw_sql(damaged, "PRAGMA application_id = 1983148643; PRAGMA user_version = 1; CREATE TABLE prompts(x);");
    expect_open_fail(damaged, V4R_EINPUT, "damaged");
    /* a directory, and a parent that is a file */
    expect_open_fail(dir, V4R_EIO, "directory");
    char *under_file = v4r_sprintf("%s/c.db", shortf);
    expect_open_fail(under_file, V4R_EIO, NULL);
    free(under_file);
    free(garbage);
    free(shortf);
    free(other);
    free(newer);
    free(damaged);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_claim_branches(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    v4r_cache *a = copen(path), *b = copen(path);
    assert_string_not_equal(v4r_cache_owner(a), v4r_cache_owner(b));
    int found;
    /* none -> inserted, running, ours */
    double t0 = wall();
    assert_int_equal(claim(a, "k1", 0), V4R_CLAIM_OK);
    v4r_cache_row r = get(a, "k1", &found);
    assert_true(found);
    assert_int_equal(r.status, V4R_CACHE_RUNNING);
    assert_string_equal(r.owner, v4r_cache_owner(a));
    assert_true(fabs(r.lease_until - (t0 + 120)) < 5);
    assert_int_equal(r.attempts, 0);
    assert_null(r.description);
    assert_string_equal(r.image_hash, "img");
    v4r_cache_row_free(&r);
    /* ours again: renewed */
    v4r_cache_set_lease(a, 1000);
    assert_int_equal(claim(a, "k1", 0), V4R_CLAIM_OK);
    r = get(a, "k1", &found);
    assert_true(fabs(r.lease_until - (t0 + 1000)) < 5);
    v4r_cache_row_free(&r);
    /* held by a live owner -> busy */
    assert_int_equal(claim(b, "k1", 0), V4R_CLAIM_BUSY);
    /* done */
    finish(a, "k1", done_result("a red shoe", 2));
    r = get(b, "k1", &found);
    assert_int_equal(r.status, V4R_CACHE_DONE);
    assert_string_equal(r.description, "a red shoe");
    assert_int_equal(r.attempts, 2);
    assert_true(r.latency_s == 1.5);
    assert_int_equal(r.prompt_tokens, 10);
    assert_int_equal(r.completion_tokens, 20);
    assert_string_equal(r.endpoint, "http://e/v1");
    assert_null(r.owner);
    assert_null(r.error);
    assert_true(r.lease_until == 0);
    assert_true(r.updated >= r.created);
    v4r_cache_row_free(&r);
    assert_int_equal(claim(a, "k1", 0), V4R_CLAIM_DONE);
    assert_int_equal(claim(b, "k1", 1), V4R_CLAIM_DONE);
    /* failed, transient: taken again, keeping attempts and the error */
    assert_int_equal(claim(a, "k2", 0), V4R_CLAIM_OK);
    finish(a, "k2", failed_result("HTTP 500", 0, 1));
    r = get(a, "k2", &found);
    assert_int_equal(r.status, V4R_CACHE_FAILED);
    assert_false(r.permanent);
    assert_string_equal(r.error, "HTTP 500");
    assert_null(r.description);
    assert_true(r.latency_s == -1);
    assert_int_equal(r.prompt_tokens, -1);
    assert_null(r.endpoint);
    v4r_cache_row_free(&r);
    assert_int_equal(claim(b, "k2", 0), V4R_CLAIM_OK);
    r = get(a, "k2", &found);
    assert_int_equal(r.status, V4R_CACHE_RUNNING);
    assert_string_equal(r.owner, v4r_cache_owner(b));
    assert_int_equal(r.attempts, 1);
    assert_string_equal(r.error, "HTTP 500");
    v4r_cache_row_free(&r);
    /* failed, permanent: refused unless retry_failed */
    finish(b, "k2", failed_result("HTTP 400: bad image", 1, 3));
    r = get(a, "k2", &found);
    assert_int_equal(r.attempts, 4);
    assert_true(r.permanent);
    v4r_cache_row_free(&r);
    assert_int_equal(claim(a, "k2", 0), V4R_CLAIM_FAILED);
    assert_int_equal(claim(a, "k2", 1), V4R_CLAIM_OK);
    finish(a, "k2", done_result("fine after all", 1));
    r = get(a, "k2", &found);
    assert_int_equal(r.status, V4R_CACHE_DONE);
    assert_false(r.permanent);
    assert_null(r.error);
    assert_int_equal(r.attempts, 5);
    v4r_cache_row_free(&r);
    /* renew and release act on our running rows only */
    v4r_err err = {0};
    assert_int_equal(claim(a, "k3", 0), V4R_CLAIM_OK);
    assert_int_equal(claim(b, "k4", 0), V4R_CLAIM_OK);
    v4r_cache_set_lease(a, 5000);
    assert_int_equal(v4r_cache_renew(a, &err), 0);
    r = get(a, "k3", &found);
    assert_true(r.lease_until > wall() + 4000);
    v4r_cache_row_free(&r);
    r = get(a, "k4", &found);
    assert_true(r.lease_until < wall() + 200);
    v4r_cache_row_free(&r);
    assert_int_equal(claim(b, "k3", 0), V4R_CLAIM_BUSY);
    assert_int_equal(v4r_cache_release(a, &err), 0);
    r = get(a, "k3", &found);
    assert_true(r.lease_until == 0);
    assert_string_equal(r.owner, v4r_cache_owner(a)); /* kept */
    v4r_cache_row_free(&r);
    r = get(a, "k4", &found);
    assert_true(r.lease_until > wall());
    v4r_cache_row_free(&r);
    assert_int_equal(claim(b, "k3", 0), V4R_CLAIM_OK); /* released: anyone may take it */
    assert_int_equal(claim(a, "k3", 0), V4R_CLAIM_BUSY);
    /* a missing row, and keys without a field */
    r = get(a, "nothing", &found);
    assert_false(found);
    assert_null(r.item);
    v4r_cache_key k = {"x", NULL, PH, "m"};
    int out;
    assert_int_equal(v4r_cache_claim(a, &k, 0, &out, &err), 0); /* NULL image hash is "" */
    assert_int_equal(out, V4R_CLAIM_OK);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM descriptions WHERE item = 'x' AND image_hash = ''"), 1);
    v4r_cache_key bad = {"x", "", NULL, "m"};
    assert_int_equal(v4r_cache_claim(a, &bad, 0, &out, &err), V4R_EINTERNAL);
    assert_int_equal(out, V4R_CLAIM_BUSY);
    v4r_cache_row row;
    assert_int_equal(v4r_cache_get(a, &bad, &row, &found, &err), V4R_EINTERNAL);
    v4r_cache_result res = done_result("d", 1);
    assert_int_equal(v4r_cache_finish(a, &bad, &res, &err), V4R_EINTERNAL);
    v4r_cache_close(a);
    v4r_cache_close(b);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* A claim whose lease ran out is taken over; the first holder's late result does not overwrite. */
static void test_lease_expiry_and_late_finish(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    v4r_cache *a = copen(path), *b = copen(path);
    v4r_cache_set_lease(a, 0.05);
    assert_int_equal(claim(a, "k", 0), V4R_CLAIM_OK);
    assert_int_equal(claim(b, "k", 0), V4R_CLAIM_BUSY);
    sleep_s(0.1);
    assert_int_equal(claim(b, "k", 0), V4R_CLAIM_OK);
    int found;
    v4r_cache_row r = get(a, "k", &found);
    assert_string_equal(r.owner, v4r_cache_owner(b));
    v4r_cache_row_free(&r);
    /* a finishes while b holds it: nothing changes */
    finish(a, "k", done_result("from a", 1));
    r = get(a, "k", &found);
    assert_int_equal(r.status, V4R_CACHE_RUNNING);
    assert_string_equal(r.owner, v4r_cache_owner(b));
    assert_int_equal(r.attempts, 0);
    v4r_cache_row_free(&r);
    finish(b, "k", done_result("from b", 1));
    /* a finishes after b did: the done row is kept */
    finish(a, "k", done_result("from a, late", 1));
    finish(a, "k", failed_result("late failure", 1, 1));
    r = get(a, "k", &found);
    assert_int_equal(r.status, V4R_CACHE_DONE);
    assert_string_equal(r.description, "from b");
    assert_int_equal(r.attempts, 1);
    v4r_cache_row_free(&r);
    /* finishing a key never claimed creates nothing */
    finish(a, "never", done_result("x", 1));
    r = get(a, "never", &found);
    assert_false(found);
    v4r_cache_close(a);
    v4r_cache_close(b);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* A child claims and exits without finishing: the claim dies with it. */
static void test_dead_owner_takeover(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    v4r_cache_close(copen(path));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        v4r_cache *c = NULL;
        v4r_cache_key k = ckey("k");
        int out = -1;
        if (v4r_cache_open(path, &c, NULL) != 0 || v4r_cache_claim(c, &k, 0, &out, NULL) != 0 || out != V4R_CLAIM_OK)
            _exit(1);
        _exit(0); /* no finish, no close */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    v4r_cache *c = copen(path);
    int found;
    v4r_cache_row r = get(c, "k", &found);
    assert_int_equal(r.status, V4R_CACHE_RUNNING);
    char *child = v4r_sprintf(":%ld:", (long)pid);
    assert_non_null(strstr(r.owner, child));
    assert_true(r.lease_until > wall() + 60); /* the lease alone would hold */
    v4r_cache_row_free(&r);
    free(child);
    assert_int_equal(claim(c, "k", 0), V4R_CLAIM_OK);
    r = get(c, "k", &found);
    assert_string_equal(r.owner, v4r_cache_owner(c));
    v4r_cache_row_free(&r);
    /* owners that cannot be shown dead hold until their lease ends */
    char host[256];
    gethostname(host, sizeof host);
    char *live[] = {
        v4r_sprintf("otherhost:%ld:0123456789abcdef", (long)pid), /* gone here, but another machine's */
        v4r_strdup("garbage"),
        v4r_sprintf("%s:1:0123456789abcdef", host), /* pid 1 exists */
        v4r_sprintf("%s::x", host),
        v4r_sprintf("%s:-5:x", host),
        v4r_sprintf("%s:abc:x", host),
    };
    for (size_t i = 0; i < sizeof live / sizeof *live; i++) {
        raw_sql(path, "UPDATE descriptions SET owner = %Q, lease_until = %f WHERE item = 'k'", live[i], wall() + 100);
        if (claim(c, "k", 0) != V4R_CLAIM_BUSY)
            fail_msg("owner '%s' should count as alive", live[i]);
        free(live[i]);
    }
    /* no owner at all: taken */
    raw_sql(path, "UPDATE descriptions SET owner = NULL, lease_until = %f WHERE item = 'k'", wall() + 100);
    assert_int_equal(claim(c, "k", 0), V4R_CLAIM_OK);
    /* our host, a process that is gone */
    char owner[400];
    snprintf(owner, sizeof owner, "%s:%ld:0123456789abcdef", host, (long)pid);
    raw_sql(path, "UPDATE descriptions SET owner = %Q, lease_until = %f WHERE item = 'k'", owner, wall() + 100);
    assert_int_equal(claim(c, "k", 0), V4R_CLAIM_OK);
    v4r_cache_close(c);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* A child holds a claim and waits: the parent is told busy until the child is gone. */
static void test_live_owner_busy(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    v4r_cache_close(copen(path));
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(up[0]);
        close(down[1]);
        v4r_cache *c = NULL;
        v4r_cache_key k = ckey("k");
        int out = -1;
        char ch = 'x';
        if (v4r_cache_open(path, &c, NULL) != 0 || v4r_cache_claim(c, &k, 0, &out, NULL) != 0 || out != V4R_CLAIM_OK)
            ch = 'e';
        if (write(up[1], &ch, 1) != 1 || read(down[0], &ch, 1) != 1)
            _exit(2);
        _exit(ch == 'e');
    }
    close(up[1]);
    close(down[0]);
    char ch;
    assert_int_equal(read(up[0], &ch, 1), 1);
    assert_int_equal(ch, 'x');
    v4r_cache *c = copen(path);
    assert_int_equal(claim(c, "k", 0), V4R_CLAIM_BUSY);
    assert_int_equal(claim(c, "k", 1), V4R_CLAIM_BUSY);
    assert_int_equal(write(down[1], "g", 1), 1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(claim(c, "k", 0), V4R_CLAIM_OK);
    v4r_cache_close(c);
    close(up[0]);
    close(down[1]);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

enum { N_KEYS = 300, N_CHILDREN = 4 };

static void key_name(char *buf, size_t n, int i) { snprintf(buf, n, "item%03d", i); }

/* Four processes claim every key of one list: each key is described exactly once. */
static void test_concurrent_claims(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    v4r_cache_close(copen(path));
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pids[N_CHILDREN];
    for (int p = 0; p < N_CHILDREN; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            close(fds[0]);
            v4r_cache *c = NULL;
            if (v4r_cache_open(path, &c, NULL) != 0)
                _exit(1);
            char desc[64];
            snprintf(desc, sizeof desc, "described by %ld", (long)getpid());
            int mine = 0;
            for (int i = 0; i < N_KEYS; i++) {
                char item[32];
                key_name(item, sizeof item, i);
                v4r_cache_key k = ckey(item);
                int out;
                v4r_err err = {0};
                if (v4r_cache_claim(c, &k, 0, &out, &err) != 0) {
                    fprintf(stderr, "child: %s\n", err.msg);
                    _exit(2);
                }
                if (out != V4R_CLAIM_OK)
                    continue;
                v4r_cache_result r = done_result(desc, 1);
                if (v4r_cache_finish(c, &k, &r, &err) != 0) {
                    fprintf(stderr, "child: %s\n", err.msg);
                    _exit(3);
                }
                mine++;
            }
            v4r_cache_close(c);
            int32_t rec[2] = {(int32_t)getpid(), mine};
            if (write(fds[1], rec, sizeof rec) != sizeof rec)
                _exit(4);
            _exit(0);
        }
    }
    close(fds[1]);
    int total = 0;
    for (int p = 0; p < N_CHILDREN; p++) {
        int status;
        assert_true(waitpid(pids[p], &status, 0) > 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("child %d exited with status %d", p, status);
    }
    int32_t rec[2];
    int reports = 0;
    while (read(fds[0], rec, sizeof rec) == sizeof rec) {
        reports++;
        total += rec[1];
        char *n = raw_text(path, "SELECT count(*) FROM descriptions WHERE description = 'described by %d'", rec[0]);
        assert_int_equal(atoi(n), rec[1]); /* what each says it did is what the file holds */
        free(n);
    }
    close(fds[0]);
    assert_int_equal(reports, N_CHILDREN);
    assert_int_equal(total, N_KEYS);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM descriptions"), N_KEYS);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM descriptions WHERE status = 'done' AND attempts = 1"), N_KEYS);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* Eight processes open one new file at the same moment: one creates the schema, all get a cache. */
static void test_concurrent_create(void **state)
{
    enum { N = 8 };
    char *dir = tu_tmpdir(), *path = v4r_sprintf("%s/new/c.db", dir);
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pids[N];
    for (int p = 0; p < N; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            close(go[1]);
            char ch;
            if (read(go[0], &ch, 1) != 0) /* wait for the parent to close its end */
                _exit(5);
            v4r_cache *c = NULL;
            v4r_err err = {0};
            char item[32];
            snprintf(item, sizeof item, "p%d", p);
            v4r_cache_key k = ckey(item);
            int out = -1;
            if (v4r_cache_open(path, &c, &err) != 0 || v4r_cache_claim(c, &k, 0, &out, &err) != 0 ||
                out != V4R_CLAIM_OK) {
                fprintf(stderr, "child %d: %s\n", p, err.msg);
                _exit(1);
            }
            v4r_cache_close(c);
            _exit(0);
        }
    }
    close(go[0]);
    close(go[1]); /* all start now */
    for (int p = 0; p < N; p++) {
        int status;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("child %d: status %d", p, status);
    }
    assert_int_equal(raw_int(path, "SELECT count(*) FROM descriptions"), N);
    assert_int_equal(raw_int(path, "PRAGMA application_id"), 0x76347263);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* SIGKILL while a child writes: the file is intact and every result it reported is there. */
static void test_kill9_durability(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    v4r_cache_close(copen(path));
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        v4r_cache *c = NULL;
        if (v4r_cache_open(path, &c, NULL) != 0)
            _exit(1);
        for (int32_t i = 0; i < 1000000; i++) {
            char item[32];
            snprintf(item, sizeof item, "k%d", i);
            v4r_cache_key k = ckey(item);
            int out;
            v4r_cache_result r = done_result("a description long enough to fill some pages of the database file", 1);
            if (v4r_cache_claim(c, &k, 0, &out, NULL) != 0 || out != V4R_CLAIM_OK ||
                v4r_cache_finish(c, &k, &r, NULL) != 0)
                _exit(2);
            if (write(fds[1], &i, sizeof i) != sizeof i) /* after the commit */
                _exit(3);
        }
        _exit(4);
    }
    close(fds[1]);
    enum { MAX_GOT = 1000000 };
    int32_t *got = v4r_malloc(MAX_GOT * sizeof *got), n = 0;
    while (n < 200 && read(fds[0], &got[n], sizeof got[n]) == sizeof got[n])
        n++;
    assert_int_equal(n, 200);
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    while (n < MAX_GOT && read(fds[0], &got[n], sizeof got[n]) == sizeof got[n])
        n++;
    close(fds[0]);
    v4r_cache *c = copen(path);
    char *ok = raw_text(path, "PRAGMA integrity_check");
    assert_string_equal(ok, "ok");
    free(ok);
    for (int32_t i = 0; i < n; i++) {
        char item[32];
        snprintf(item, sizeof item, "k%d", got[i]);
        assert_int_equal(got[i], i);
        int found;
        v4r_cache_row r = get(c, item, &found);
        if (!found || r.status != V4R_CACHE_DONE)
            fail_msg("%s was reported finished but is %s", item, found ? v4r_cache_status_name(r.status) : "missing");
        v4r_cache_row_free(&r);
    }
    /* the key the child was on when killed (if claimed) is running under a dead owner: taken */
    char item[32];
    snprintf(item, sizeof item, "k%d", n);
    int out = claim(c, item, 0);
    assert_true(out == V4R_CLAIM_OK || out == V4R_CLAIM_DONE);
    v4r_cache_close(c);
    free(got);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_transactions(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    v4r_cache *a = copen(path);
    v4r_err err = {0};
    assert_int_equal(v4r_cache_commit(a, &err), V4R_EINTERNAL);
    assert_int_equal(v4r_cache_begin(a, &err), 0);
    assert_int_equal(v4r_cache_begin(a, &err), V4R_EINTERNAL);
    assert_int_equal(claim(a, "t1", 0), V4R_CLAIM_OK);
    assert_int_equal(claim(a, "t2", 0), V4R_CLAIM_OK);
    finish(a, "t1", done_result("one", 1));
    assert_int_equal(v4r_cache_put_prompt(a, PH, "the prompt", &err), 0);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM descriptions"), 0); /* not visible yet */
    assert_int_equal(v4r_cache_commit(a, &err), 0);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM descriptions"), 2);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM prompts"), 1);
    /* closing inside a transaction drops it */
    assert_int_equal(v4r_cache_begin(a, &err), 0);
    assert_int_equal(claim(a, "t3", 0), V4R_CLAIM_OK);
    v4r_cache_close(a);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM descriptions WHERE item = 't3'"), 0);
    /* a read-only handle cannot write */
    assert_int_equal(v4r_cache_open_readonly(path, &a, &err), 0);
    int out;
    v4r_cache_key k = ckey("t4");
    assert_int_not_equal(v4r_cache_claim(a, &k, 0, &out, &err), 0);
    assert_non_null(strstr(err.msg, path));
    v4r_cache_close(a);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_prompts_and_sha256(void **state)
{
    char hex[65];
    v4r_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    v4r_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *paper = v4r_prompt_preset("paper"), *script = v4r_prompt_preset("script");
    assert_non_null(paper);
    assert_non_null(strstr(paper, "color, style, material"));
    assert_non_null(strstr(script, "Product title: {title}\nProvide"));
    assert_null(v4r_prompt_preset("other"));
    assert_null(v4r_prompt_preset(NULL));
    char *s = v4r_prompt_fill(script, "Red Shoe");
    assert_non_null(strstr(s, "Product title: Red Shoe\nProvide"));
    free(s);
    s = v4r_prompt_fill("{title}/{title} {{title}} }} {{ {x} {", "T");
    assert_string_equal(s, "T/T {title} } { {x} {");
    free(s);
    s = v4r_prompt_fill("a {title} b", NULL);
    assert_string_equal(s, "a  b");
    free(s);
    s = v4r_prompt_fill(paper, "ignored");
    assert_string_equal(s, paper);
    free(s);
    /* prompts are stored once */
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    v4r_cache *c = copen(path);
    v4r_err err = {0};
    assert_int_equal(v4r_cache_put_prompt(c, PH, "first", &err), 0);
    assert_int_equal(v4r_cache_put_prompt(c, PH, "second", &err), 0);
    v4r_cache_close(c);
    char *t = raw_text(path, "SELECT text FROM prompts WHERE hash = '%s'", PH);
    assert_string_equal(t, "first");
    free(t);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

typedef struct {
    char buf[4096];
    int calls, stop_after;
} collect;

static int collect_fn(const char *item, const char *text, void *ctx)
{
    collect *c = ctx;
    size_t n = strlen(c->buf);
    snprintf(c->buf + n, sizeof c->buf - n, "%s=%s;", item, text);
    return ++c->calls == c->stop_after ? 42 : 0;
}

static void put_row(const char *path, const char *item, const char *ph, const char *model, const char *status,
                    const char *desc, double updated)
{
    raw_sql(path,
            "INSERT INTO descriptions(item, image_hash, prompt_hash, model, status, description, created, updated)"
            " VALUES(%Q, 'img', %Q, %Q, %Q, %Q, %f, %f)",
            item, ph, model, status, desc, updated - 1, updated);
}

static void test_foreach_text(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "c.db");
    v4r_cache *c = copen(path);
    put_row(path, "b", PH, "m", "done", "b text", 100);
    put_row(path, "a", PH, "m", "done", "a old", 100);
    put_row(path, "a", PH2, "m", "done", "a new", 200); /* the most recent of a */
    put_row(path, "a", PH, "m2", "done", "a other model", 150);
    put_row(path, "c", PH, "m", "failed", NULL, 300);
    put_row(path, "d", PH, "m", "running", NULL, 300);
    put_row(path, "e", PH2, "m2", "done", "e text", 50);
    v4r_err err = {0};
    collect got = {{0}, 0, 0};
    assert_int_equal(v4r_cache_foreach_text(c, NULL, collect_fn, &got, &err), 0);
    assert_string_equal(got.buf, "a=a new;b=b text;e=e text;");
    v4r_cache_filter f = {"m", NULL};
    memset(&got, 0, sizeof got);
    assert_int_equal(v4r_cache_foreach_text(c, &f, collect_fn, &got, &err), 0);
    assert_string_equal(got.buf, "a=a new;b=b text;");
    f = (v4r_cache_filter){NULL, "0123456789ab"};
    memset(&got, 0, sizeof got);
    assert_int_equal(v4r_cache_foreach_text(c, &f, collect_fn, &got, &err), 0);
    assert_string_equal(got.buf, "a=a other model;b=b text;");
    f = (v4r_cache_filter){"m2", "FEDCBA"}; /* either case */
    memset(&got, 0, sizeof got);
    assert_int_equal(v4r_cache_foreach_text(c, &f, collect_fn, &got, &err), 0);
    assert_string_equal(got.buf, "e=e text;");
    f = (v4r_cache_filter){"nope", NULL};
    memset(&got, 0, sizeof got);
    assert_int_equal(v4r_cache_foreach_text(c, &f, collect_fn, &got, &err), 0);
    assert_int_equal(got.calls, 0);
    /* a callback stops the walk with its value */
    memset(&got, 0, sizeof got);
    got.stop_after = 2;
    assert_int_equal(v4r_cache_foreach_text(c, NULL, collect_fn, &got, &err), 42);
    assert_int_equal(got.calls, 2);
    /* bad prefixes */
    const char *bad[] = {"01234", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", "01234z",
                         "0123%5", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        f = (v4r_cache_filter){NULL, bad[i]};
        assert_int_equal(v4r_cache_foreach_text(c, &f, collect_fn, &got, &err), V4R_EUSAGE);
        assert_non_null(strstr(err.msg, "hex"));
    }
    v4r_cache_close(c);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_create_reopen),
        cmocka_unit_test(test_not_a_cache),
        cmocka_unit_test(test_claim_branches),
        cmocka_unit_test(test_lease_expiry_and_late_finish),
        cmocka_unit_test(test_dead_owner_takeover),
        cmocka_unit_test(test_live_owner_busy),
        cmocka_unit_test(test_concurrent_claims),
        cmocka_unit_test(test_concurrent_create),
        cmocka_unit_test(test_kill9_durability),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_prompts_and_sha256),
        cmocka_unit_test(test_foreach_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The semantic cache: opening (schema, WAL, identity checks), transactions with busy retries,
 * claims with owners and leases, results, single-row reads and the description reader that encode
 * uses. Stats, export and merge are in cache_tools.c, import in cache_import.c. */
#include "cache_internal.h"

#include <errno.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const stmt_sql[CST_COUNT] = {
    [CST_STATE] = "SELECT status, permanent, owner, lease_until FROM descriptions"
                  " WHERE item = ?1 AND image_hash = ?2 AND prompt_hash = ?3 AND model = ?4",
    [CST_INSERT] = "INSERT INTO descriptions(item, image_hash, prompt_hash, model, status, owner, lease_until,"
                   " attempts, created, updated) VALUES(?1, ?2, ?3, ?4, 'running', ?5, ?6, 0, ?7, ?7)",
    [CST_TAKE] = "UPDATE descriptions SET status = 'running', owner = ?5, lease_until = ?6, updated = ?7"
                 " WHERE item = ?1 AND image_hash = ?2 AND prompt_hash = ?3 AND model = ?4",
    [CST_FINISH] = "UPDATE descriptions SET status = ?6, description = ?7, error = ?8, permanent = ?9,"
                   " attempts = attempts + ?10, latency_s = ?11, prompt_tokens = ?12, completion_tokens = ?13,"
                   " endpoint = ?14, owner = NULL, lease_until = NULL, updated = ?15"
                   " WHERE item = ?1 AND image_hash = ?2 AND prompt_hash = ?3 AND model = ?4"
                   " AND status = 'running' AND owner = ?5",
    [CST_GET] = "SELECT item, image_hash, prompt_hash, model, status, permanent, description, error, attempts,"
                " latency_s, prompt_tokens, completion_tokens, endpoint, owner, lease_until, created, updated"
                " FROM descriptions WHERE item = ?1 AND image_hash = ?2 AND prompt_hash = ?3 AND model = ?4",
    [CST_RENEW] = "UPDATE descriptions SET lease_until = ?2 WHERE status = 'running' AND owner = ?1",
    [CST_RELEASE] = "UPDATE descriptions SET lease_until = 0 WHERE status = 'running' AND owner = ?1",
    [CST_PROMPT] = "INSERT OR IGNORE INTO prompts(hash, text) VALUES(?1, ?2)",
};

static const char *const schema_sql =
    "CREATE TABLE prompts(hash TEXT PRIMARY KEY, text TEXT NOT NULL);"
    "CREATE TABLE descriptions("
    " item TEXT NOT NULL, image_hash TEXT NOT NULL, prompt_hash TEXT NOT NULL, model TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK(status IN ('running','done','failed')),"
    " permanent INTEGER NOT NULL DEFAULT 0, description TEXT, error TEXT,"
    " attempts INTEGER NOT NULL DEFAULT 0, latency_s REAL, prompt_tokens INTEGER, completion_tokens INTEGER,"
    " endpoint TEXT, owner TEXT, lease_until REAL, created REAL NOT NULL, updated REAL NOT NULL,"
    " PRIMARY KEY(item, image_hash, prompt_hash, model));";

/* ------------------------------------------------------------------ helpers ------------------ */

double cache_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cache_sqlfail(const v4r_cache *c, int rc, const char *what, v4r_err *err)
{
    int code = V4R_EIO;
    switch (rc & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT: code = V4R_EINPUT; break;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISUSE:
    case SQLITE_ERROR:
    case SQLITE_RANGE: code = V4R_EINTERNAL; break;
    case SQLITE_NOMEM: code = V4R_ENOMEM; break;
    default: break;
    }
    const char *msg = c && c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
    if ((rc & 0xff) == SQLITE_NOTADB)
        return v4r_fail(err, code, "%s: not a vlm4rec cache (%s)", c->path, msg);
    return v4r_fail(err, code, "%s: %s: %s", c->path, what, msg);
}

int cache_exec(v4r_cache *c, const char *sql, v4r_err *err)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? V4R_OK : cache_sqlfail(c, rc, sql, err);
}

int cache_prepare(v4r_cache *c, const char *sql, sqlite3_stmt **st, v4r_err *err)
{
    int rc = sqlite3_prepare_v2(c->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? V4R_OK : cache_sqlfail(c, rc, "prepare", err);
}

int cache_stmt(v4r_cache *c, int which, sqlite3_stmt **st, v4r_err *err)
{
    if (!c->st[which]) {
        int rc = sqlite3_prepare_v3(c->db, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &c->st[which], NULL);
        if (rc != SQLITE_OK)
            return cache_sqlfail(c, rc, "prepare", err);
    }
    sqlite3_reset(c->st[which]);
    sqlite3_clear_bindings(c->st[which]);
    *st = c->st[which];
    return V4R_OK;
}

char *cache_col_str(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    return s ? v4r_strndup((const char *)s, (size_t)sqlite3_column_bytes(st, col)) : NULL;
}

int cache_status_parse(const char *s)
{
    if (!s)
        return 0;
    if (!strcmp(s, "running"))
        return V4R_CACHE_RUNNING;
    if (!strcmp(s, "done"))
        return V4R_CACHE_DONE;
    if (!strcmp(s, "failed"))
        return V4R_CACHE_FAILED;
    return 0;
}

const char *v4r_cache_status_name(int status)
{
    switch (status) {
    case V4R_CACHE_RUNNING: return "running";
    case V4R_CACHE_DONE: return "done";
    case V4R_CACHE_FAILED: return "failed";
    default: return "unknown";
    }
}

/* Runs one statement, retrying while another connection holds the lock past the busy handler
 * (WAL recovery and the like answer busy without waiting). */
static int step_retry(v4r_cache *c, const char *sql, v4r_err *err)
{
    double deadline = cache_now() + V4R_CACHE_BUSY_MS / 1000.0;
    for (;;) {
        int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            return V4R_OK;
        if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
            return cache_sqlfail(c, rc, sql, err);
        if (cache_now() > deadline)
            return v4r_fail(err, V4R_EIO, "%s: %s: still locked by another process after %d s", c->path, sql,
                            V4R_CACHE_BUSY_MS / 1000);
        usleep(2000);
    }
}

int cache_tx_begin(v4r_cache *c, int *mine, v4r_err *err)
{
    *mine = 0;
    if (c->in_tx || !sqlite3_get_autocommit(c->db))
        return V4R_OK; /* inside v4r_cache_begin or an enclosing operation */
    int rc = step_retry(c, "BEGIN IMMEDIATE", err);
    if (!rc)
        *mine = 1;
    return rc;
}

int cache_tx_end(v4r_cache *c, int mine, int rc, v4r_err *err)
{
    if (!mine)
        return rc;
    if (rc) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    rc = step_retry(c, "COMMIT", err);
    if (rc && !sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int v4r_cache_begin(v4r_cache *c, v4r_err *err)
{
    if (c->in_tx)
        return v4r_fail(err, V4R_EINTERNAL, "%s: a transaction is already open", c->path);
    int rc = step_retry(c, "BEGIN IMMEDIATE", err);
    if (!rc)
        c->in_tx = 1;
    return rc;
}

int v4r_cache_commit(v4r_cache *c, v4r_err *err)
{
    if (!c->in_tx)
        return v4r_fail(err, V4R_EINTERNAL, "%s: commit without a transaction", c->path);
    c->in_tx = 0;
    return cache_tx_end(c, 1, V4R_OK, err);
}

/* ------------------------------------------------------------------ owners ------------------- */

static void make_owner(v4r_cache *c)
{
    if (gethostname(c->host, sizeof c->host) != 0 || !c->host[0])
        strcpy(c->host, "localhost");
    c->host[sizeof c->host - 1] = 0;
    c->pid = getpid();
    unsigned char r[8];
    if (RAND_bytes(r, sizeof r) != 1) { /* no entropy source: time and address still differ */
        uint64_t x = (uint64_t)(cache_now() * 1e9) ^ ((uint64_t)c->pid << 32) ^ (uint64_t)(uintptr_t)c;
        for (int i = 0; i < 8; i++)
            r[i] = (unsigned char)(x >> (8 * i));
    }
    int n = snprintf(c->owner, sizeof c->owner, "%s:%ld:", c->host, (long)c->pid);
    for (int i = 0; i < 8; i++)
        n += snprintf(c->owner + n, sizeof c->owner - (size_t)n, "%02x", r[i]);
}

int cache_owner_dead(const v4r_cache *c, const char *owner)
{
    if (!owner || !*owner)
        return 1;
    const char *last = strrchr(owner, ':');
    if (!last || last == owner)
        return 0;
    const char *p = last - 1;
    while (p > owner && *p != ':')
        p--;
    if (*p != ':')
        return 0;
    size_t host_len = (size_t)(p - owner);
    if (host_len != strlen(c->host) || memcmp(owner, c->host, host_len) != 0)
        return 0; /* another machine: only the lease can tell */
    char num[32];
    size_t n = (size_t)(last - p - 1);
    if (n == 0 || n >= sizeof num)
        return 0;
    memcpy(num, p + 1, n);
    num[n] = 0;
    int64_t pid;
    if (v4r_parse_i64(num, &pid) != 0 || pid <= 0)
        return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

const char *v4r_cache_owner(const v4r_cache *c) { return c->owner; }
const char *v4r_cache_path(const v4r_cache *c) { return c->path; }
void v4r_cache_set_lease(v4r_cache *c, double seconds) { c->lease = seconds; }

/* ------------------------------------------------------------------ opening ------------------ */

static int pragma_int(v4r_cache *c, const char *sql, int64_t *v, v4r_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = cache_prepare(c, sql, &st, err);
    if (rc)
        return rc;
    int s = sqlite3_step(st);
    *v = s == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    rc = s == SQLITE_ROW || s == SQLITE_DONE ? V4R_OK : cache_sqlfail(c, s, sql, err);
    sqlite3_finalize(st);
    return rc;
}

static int create_schema(v4r_cache *c, v4r_err *err)
{
    int rc = step_retry(c, "PRAGMA journal_mode = WAL", err), mine;
    if (!rc)
        rc = cache_tx_begin(c, &mine, err);
    if (rc)
        return rc;
    int64_t n;
    rc = pragma_int(c, "SELECT count(*) FROM sqlite_master", &n, err);
    if (!rc && n == 0) { /* nobody created it in the meantime */
        char *sql = v4r_sprintf("PRAGMA application_id = %d; PRAGMA user_version = %d; %s", V4R_CACHE_APP_ID,
                                V4R_CACHE_SCHEMA, schema_sql);
        rc = cache_exec(c, sql, err);
        free(sql);
    }
    return cache_tx_end(c, mine, rc, err);
}

static int check_schema(v4r_cache *c, v4r_err *err)
{
    for (int pass = 0;; pass++) {
        int64_t app, ver, n;
        int rc = pragma_int(c, "PRAGMA application_id", &app, err);
        if (!rc)
            rc = pragma_int(c, "PRAGMA user_version", &ver, err);
        if (!rc)
            rc = pragma_int(c, "SELECT count(*) FROM sqlite_master", &n, err);
        if (rc)
            return rc;
        if (app == 0 && ver == 0 && n == 0) {
            if (c->readonly)
                return v4r_fail(err, V4R_EINPUT, "%s: not a vlm4rec cache (an empty database)", c->path);
            if (pass > 0)
                return v4r_fail(err, V4R_EINTERNAL, "%s: the schema could not be created", c->path);
            rc = create_schema(c, err);
            if (rc)
                return rc;
            continue;
        }
        if (app != V4R_CACHE_APP_ID)
            return v4r_fail(err, V4R_EINPUT, "%s: not a vlm4rec cache (an SQLite database with application_id %#llx)",
                            c->path, (unsigned long long)app);
        if (ver > V4R_CACHE_SCHEMA)
            return v4r_fail(err, V4R_EINPUT,
                            "%s: written by a newer vlm4rec (cache schema version %lld; this one reads %d)", c->path,
                            (long long)ver, V4R_CACHE_SCHEMA);
        rc = pragma_int(c,
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('prompts',"
                        " 'descriptions')",
                        &n, err);
        if (rc)
            return rc;
        if (ver < V4R_CACHE_SCHEMA || n != 2)
            return v4r_fail(err, V4R_EINPUT, "%s: a damaged vlm4rec cache (schema version %lld, %lld of 2 tables)",
                            c->path, (long long)ver, (long long)n);
        return V4R_OK;
    }
}

static int cache_open_mode(const char *path, int readonly, v4r_cache **out, v4r_err *err)
{
    *out = NULL;
    struct stat sb;
    if (readonly && stat(path, &sb) != 0)
        return v4r_fail(err, V4R_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return v4r_fail(err, V4R_EIO, "%s: cannot open: is a directory", path);
    if (!readonly) {
        const char *slash = strrchr(path, '/');
        if (slash && slash != path) {
            char *dir = v4r_strndup(path, (size_t)(slash - path));
            v4r_err e = {0};
            int rc = v4r_mkdir_p(dir, &e);
            free(dir);
            if (rc)
                return v4r_fail(err, rc, "%s: %s", path, e.msg);
        }
    }
    v4r_cache *c = v4r_calloc(1, sizeof *c);
    c->path = v4r_strdup(path);
    c->lease = 120;
    c->readonly = readonly;
    make_owner(c);
    /* Read-only handles open read-write without create (SQLite falls back to read-only for a protected
     * file) under query_only: the last connection to close can then fold the WAL back and remove the
     * -wal and -shm files, which a read-only connection would leave behind. */
    int flags = SQLITE_OPEN_READWRITE | (readonly ? 0 : SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX;
    int s = sqlite3_open_v2(path, &c->db, flags, NULL);
    int rc = V4R_OK;
    if (s != SQLITE_OK)
        rc = v4r_fail(err, V4R_EIO, "%s: cannot open: %s", path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(s));
    if (!rc) {
        sqlite3_busy_timeout(c->db, V4R_CACHE_BUSY_MS);
        if (readonly)
            rc = cache_exec(c, "PRAGMA query_only = 1", err);
        if (!rc)
            rc = check_schema(c, err);
    }
    if (!rc && !readonly) {
        rc = step_retry(c, "PRAGMA journal_mode = WAL", err);
        if (!rc)
            rc = cache_exec(c, "PRAGMA synchronous = NORMAL", err);
    }
    if (rc) {
        v4r_cache_close(c);
        return rc;
    }
    *out = c;
    return V4R_OK;
}

int v4r_cache_open(const char *path, v4r_cache **out, v4r_err *err) { return cache_open_mode(path, 0, out, err); }

int v4r_cache_open_readonly(const char *path, v4r_cache **out, v4r_err *err)
{
    return cache_open_mode(path, 1, out, err);
}

void v4r_cache_close(v4r_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < CST_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    if (c->db) {
        if (c->in_tx)
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close_v2(c->db);
    }
    free(c->path);
    free(c);
}

/* ------------------------------------------------------------------ claims and results ------- */

static int key_check(const v4r_cache *c, const v4r_cache_key *k, v4r_err *err)
{
    if (!k || !k->item || !k->prompt_hash || !k->model)
        return v4r_fail(err, V4R_EINTERNAL, "%s: a cache key needs an item, a prompt hash and a model", c->path);
    return V4R_OK;
}

static void bind_key(sqlite3_stmt *st, const v4r_cache_key *k)
{
    sqlite3_bind_text(st, 1, k->item, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k->image_hash ? k->image_hash : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, k->prompt_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, k->model, -1, SQLITE_STATIC);
}

/* Runs a bound write statement to its end and resets it. */
static int run_write(v4r_cache *c, sqlite3_stmt *st, const char *what, v4r_err *err)
{
    int s = sqlite3_step(st);
    int rc = s == SQLITE_DONE ? V4R_OK : cache_sqlfail(c, s, what, err);
    sqlite3_reset(st);
    return rc;
}

typedef struct {
    int found, status, permanent;
    char *owner;
    double lease_until;
} key_state;

static int read_state(v4r_cache *c, const v4r_cache_key *k, key_state *ks, v4r_err *err)
{
    memset(ks, 0, sizeof *ks);
    sqlite3_stmt *st = NULL;
    int rc = cache_stmt(c, CST_STATE, &st, err);
    if (rc)
        return rc;
    bind_key(st, k);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        ks->found = 1;
        ks->status = cache_status_parse((const char *)sqlite3_column_text(st, 0));
        ks->permanent = sqlite3_column_int(st, 1);
        ks->owner = cache_col_str(st, 2);
        ks->lease_until = sqlite3_column_type(st, 3) == SQLITE_NULL ? 0 : sqlite3_column_double(st, 3);
    } else if (s != SQLITE_DONE) {
        rc = cache_sqlfail(c, s, "read", err);
    }
    sqlite3_reset(st);
    return rc;
}

/* The row becomes (or stays) running under our owner with a fresh lease. */
static int take(v4r_cache *c, const v4r_cache_key *k, int insert, double now, v4r_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = cache_stmt(c, insert ? CST_INSERT : CST_TAKE, &st, err);
    if (rc)
        return rc;
    bind_key(st, k);
    sqlite3_bind_text(st, 5, c->owner, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 6, now + c->lease);
    sqlite3_bind_double(st, 7, now);
    return run_write(c, st, insert ? "insert" : "claim", err);
}

static int claim_locked(v4r_cache *c, const v4r_cache_key *k, int retry_failed, int *outcome, v4r_err *err)
{
    key_state ks;
    int rc = read_state(c, k, &ks, err);
    if (rc)
        return rc;
    double now = cache_now();
    int act = 0; /* 1: insert, 2: take */
    if (!ks.found)
        act = 1;
    else if (ks.status == V4R_CACHE_DONE)
        *outcome = V4R_CLAIM_DONE;
    else if (ks.status == V4R_CACHE_FAILED && ks.permanent && !retry_failed)
        *outcome = V4R_CLAIM_FAILED;
    else if (ks.status == V4R_CACHE_FAILED)
        act = 2; /* keeps its attempts and last error */
    else if (ks.status == V4R_CACHE_RUNNING) {
        if ((ks.owner && !strcmp(ks.owner, c->owner)) || ks.lease_until < now || cache_owner_dead(c, ks.owner))
            act = 2;
        else
            *outcome = V4R_CLAIM_BUSY;
    } else
        rc = v4r_fail(err, V4R_EINPUT, "%s: item %s: unknown status", c->path, k->item);
    free(ks.owner);
    if (!rc && act) {
        rc = take(c, k, act == 1, now, err);
        if (!rc)
            *outcome = V4R_CLAIM_OK;
    }
    return rc;
}

int v4r_cache_claim(v4r_cache *c, const v4r_cache_key *k, int retry_failed, int *outcome, v4r_err *err)
{
    *outcome = V4R_CLAIM_BUSY;
    int rc = key_check(c, k, err), mine = 0;
    if (!rc)
        rc = cache_tx_begin(c, &mine, err);
    if (rc)
        return rc;
    rc = claim_locked(c, k, retry_failed, outcome, err);
    rc = cache_tx_end(c, mine, rc, err);
    if (rc)
        *outcome = V4R_CLAIM_BUSY;
    return rc;
}

static void bind_opt_double(sqlite3_stmt *st, int i, double v)
{
    if (v < 0)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_double(st, i, v);
}

static void bind_opt_i64(sqlite3_stmt *st, int i, int64_t v)
{
    if (v < 0)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_int64(st, i, v);
}

static int finish_locked(v4r_cache *c, const v4r_cache_key *k, const v4r_cache_result *r, v4r_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = cache_stmt(c, CST_FINISH, &st, err);
    if (rc)
        return rc;
    int done = r->description != NULL;
    bind_key(st, k);
    sqlite3_bind_text(st, 5, c->owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, done ? "done" : "failed", -1, SQLITE_STATIC);
    if (done)
        sqlite3_bind_text(st, 7, r->description, -1, SQLITE_STATIC);
    if (!done)
        sqlite3_bind_text(st, 8, r->error ? r->error : "unknown error", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 9, done ? 0 : r->permanent != 0);
    sqlite3_bind_int(st, 10, r->attempts > 0 ? r->attempts : 0);
    bind_opt_double(st, 11, r->latency_s);
    bind_opt_i64(st, 12, r->prompt_tokens);
    bind_opt_i64(st, 13, r->completion_tokens);
    if (r->endpoint)
        sqlite3_bind_text(st, 14, r->endpoint, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 15, cache_now());
    rc = run_write(c, st, "finish", err);
    if (rc || sqlite3_changes(c->db) > 0)
        return rc;
    key_state ks;
    rc = read_state(c, k, &ks, err);
    if (!rc)
        v4r_warn("%s: item %s (model %s, prompt %.12s): no longer held by this process (%s%s%s); its result is not "
                 "recorded",
                 c->path, k->item, k->model, k->prompt_hash, ks.found ? v4r_cache_status_name(ks.status) : "no row",
                 ks.found && ks.status == V4R_CACHE_RUNNING ? " by " : "",
                 ks.found && ks.status == V4R_CACHE_RUNNING && ks.owner ? ks.owner : "");
    free(ks.owner);
    return rc;
}

int v4r_cache_finish(v4r_cache *c, const v4r_cache_key *k, const v4r_cache_result *r, v4r_err *err)
{
    int rc = key_check(c, k, err), mine = 0;
    if (!rc)
        rc = cache_tx_begin(c, &mine, err);
    if (rc)
        return rc;
    rc = finish_locked(c, k, r, err);
    return cache_tx_end(c, mine, rc, err);
}

static int owner_update(v4r_cache *c, int which, v4r_err *err)
{
    int mine, rc = cache_tx_begin(c, &mine, err);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    rc = cache_stmt(c, which, &st, err);
    if (!rc) {
        sqlite3_bind_text(st, 1, c->owner, -1, SQLITE_STATIC);
        if (which == CST_RENEW)
            sqlite3_bind_double(st, 2, cache_now() + c->lease);
        rc = run_write(c, st, which == CST_RENEW ? "renew" : "release", err);
    }
    return cache_tx_end(c, mine, rc, err);
}

int v4r_cache_renew(v4r_cache *c, v4r_err *err) { return owner_update(c, CST_RENEW, err); }
int v4r_cache_release(v4r_cache *c, v4r_err *err) { return owner_update(c, CST_RELEASE, err); }

int v4r_cache_put_prompt(v4r_cache *c, const char *hash, const char *text, v4r_err *err)
{
    int mine, rc = cache_tx_begin(c, &mine, err);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    rc = cache_stmt(c, CST_PROMPT, &st, err);
    if (!rc) {
        sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
        rc = run_write(c, st, "store prompt", err);
    }
    return cache_tx_end(c, mine, rc, err);
}

/* ------------------------------------------------------------------ reads -------------------- */

void v4r_cache_row_free(v4r_cache_row *r)
{
    if (!r)
        return;
    free(r->item);
    free(r->image_hash);
    free(r->prompt_hash);
    free(r->model);
    free(r->description);
    free(r->error);
    free(r->endpoint);
    free(r->owner);
    memset(r, 0, sizeof *r);
}

static double col_double(sqlite3_stmt *st, int col, double null_value)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? null_value : sqlite3_column_double(st, col);
}

static int64_t col_i64(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, col);
}

int v4r_cache_get(v4r_cache *c, const v4r_cache_key *k, v4r_cache_row *row, int *found, v4r_err *err)
{
    memset(row, 0, sizeof *row);
    *found = 0;
    sqlite3_stmt *st = NULL;
    int rc = key_check(c, k, err);
    if (!rc)
        rc = cache_stmt(c, CST_GET, &st, err);
    if (rc)
        return rc;
    bind_key(st, k);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        *found = 1;
        row->item = cache_col_str(st, 0);
        row->image_hash = cache_col_str(st, 1);
        row->prompt_hash = cache_col_str(st, 2);
        row->model = cache_col_str(st, 3);
        row->status = cache_status_parse((const char *)sqlite3_column_text(st, 4));
        row->permanent = sqlite3_column_int(st, 5);
        row->description = cache_col_str(st, 6);
        row->error = cache_col_str(st, 7);
        row->attempts = sqlite3_column_int(st, 8);
        row->latency_s = col_double(st, 9, -1);
        row->prompt_tokens = col_i64(st, 10);
        row->completion_tokens = col_i64(st, 11);
        row->endpoint = cache_col_str(st, 12);
        row->owner = cache_col_str(st, 13);
        row->lease_until = col_double(st, 14, 0);
        row->created = col_double(st, 15, 0);
        row->updated = col_double(st, 16, 0);
    } else if (s != SQLITE_DONE) {
        rc = cache_sqlfail(c, s, "read", err);
    }
    sqlite3_reset(st);
    return rc;
}

/* ------------------------------------------------------------------ filters ------------------ */

int cache_filter_check(const v4r_cache_filter *f, v4r_err *err)
{
    if (!f || !f->prompt_hash)
        return V4R_OK;
    size_t n = strlen(f->prompt_hash);
    int hex = n == strspn(f->prompt_hash, "0123456789abcdefABCDEF");
    if (n < 6 || n > 64 || !hex)
        return v4r_fail(err, V4R_EUSAGE, "prompt hash '%s': give 6 to 64 hex digits (a prefix of the sha256)",
                        f->prompt_hash);
    return V4R_OK;
}

const char *cache_filter_sql(const v4r_cache_filter *f)
{
    int m = f && f->model, p = f && f->prompt_hash;
    if (m && p)
        return " AND model = :model AND prompt_hash LIKE :ph";
    if (m)
        return " AND model = :model";
    if (p)
        return " AND prompt_hash LIKE :ph";
    return "";
}

void cache_filter_bind(sqlite3_stmt *st, const v4r_cache_filter *f)
{
    if (!f)
        return;
    int i = sqlite3_bind_parameter_index(st, ":model");
    if (i > 0)
        sqlite3_bind_text(st, i, f->model, -1, SQLITE_STATIC);
    i = sqlite3_bind_parameter_index(st, ":ph");
    if (i > 0)
        sqlite3_bind_text(st, i, v4r_sprintf("%s%%", f->prompt_hash), -1, free);
}

int v4r_cache_foreach_text(v4r_cache *c, const v4r_cache_filter *f, v4r_cache_text_fn fn, void *ctx, v4r_err *err)
{
    int rc = cache_filter_check(f, err);
    if (rc)
        return rc;
    char *sql = v4r_sprintf("SELECT item, description FROM descriptions WHERE status = 'done'%s"
                            " ORDER BY item, updated DESC, model, prompt_hash, image_hash",
                            cache_filter_sql(f));
    sqlite3_stmt *st = NULL;
    rc = cache_prepare(c, sql, &st, err);
    free(sql);
    if (rc)
        return rc;
    cache_filter_bind(st, f);
    char *prev = NULL;
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *item = (const char *)sqlite3_column_text(st, 0);
        const char *text = (const char *)sqlite3_column_text(st, 1);
        if (prev && !strcmp(prev, item))
            continue; /* an older description of the same item */
        free(prev);
        prev = v4r_strdup(item);
        rc = fn(item, text ? text : "", ctx);
    }
    if (!rc && s != SQLITE_DONE)
        rc = cache_sqlfail(c, s, "read", err);
    free(prev);
    sqlite3_finalize(st);
    return rc;
}

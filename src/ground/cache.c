/* The semantic cache: opening (schema, WAL, identity checks), statements, transactions with busy
 * retries, owners. Claims, results and reads are in cache_rows.c; stats and export in
 * cache_tools.c, merge in cache_merge.c, import in cache_import.c. */
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

/* The file's identity in one statement: one snapshot, even while another process creates it. */
static int read_identity(v4r_cache *c, int64_t v[4], v4r_err *err)
{
    static const char *const sql =
        "SELECT (SELECT application_id FROM pragma_application_id), (SELECT user_version FROM pragma_user_version),"
        " (SELECT count(*) FROM sqlite_master),"
        " (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('prompts', 'descriptions'))";
    sqlite3_stmt *st = NULL;
    int rc = cache_prepare(c, sql, &st, err);
    if (rc)
        return rc;
    int s = sqlite3_step(st);
    for (int i = 0; i < 4; i++)
        v[i] = s == SQLITE_ROW ? sqlite3_column_int64(st, i) : 0;
    rc = s == SQLITE_ROW ? V4R_OK : cache_sqlfail(c, s, "read the schema", err);
    sqlite3_finalize(st);
    return rc;
}

static int check_schema(v4r_cache *c, v4r_err *err)
{
    for (int pass = 0;; pass++) {
        int64_t v[4];
        int rc = read_identity(c, v, err);
        if (rc)
            return rc;
        int64_t app = v[0], ver = v[1], n = v[2], tables = v[3];
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
        if (ver < V4R_CACHE_SCHEMA || tables != 2)
            return v4r_fail(err, V4R_EINPUT, "%s: a damaged vlm4rec cache (schema version %lld, %lld of 2 tables)",
                            c->path, (long long)ver, (long long)tables);
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

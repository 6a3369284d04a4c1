/* The semantic cache's insides, shared by cache.c (open, statements, transactions, owners),
 * cache_rows.c (claims, results, reads), cache_tools.c (stats, export), cache_merge.c,
 * cache_import.c and sha256.c. */
#ifndef V4R_GROUND_CACHE_INTERNAL_H
#define V4R_GROUND_CACHE_INTERNAL_H

#include <sqlite3.h>
#include <sys/types.h>

#include "vlm4rec/ground.h"

#define V4R_CACHE_APP_ID 0x76347263 /* "v4rc" */
#define V4R_CACHE_SCHEMA 1          /* PRAGMA user_version this build writes and reads */
#define V4R_CACHE_BUSY_MS 30000     /* how long a writer waits for the lock */

/* Statements prepared once per connection and kept until close. */
enum {
    CST_STATE,   /* status, permanent, owner, lease_until of a key */
    CST_INSERT,  /* a new running row */
    CST_TAKE,    /* a row becomes running under our owner with a new lease */
    CST_FINISH,  /* a running row of ours becomes done or failed */
    CST_GET,     /* every column of a key */
    CST_RENEW,   /* new lease on every running row of ours */
    CST_RELEASE, /* lease 0 on every running row of ours */
    CST_PROMPT,  /* INSERT OR IGNORE a prompt */
    CST_COUNT
};

struct v4r_cache {
    sqlite3 *db;
    char *path;
    char host[256];
    char owner[320];
    pid_t pid;
    double lease;
    int readonly;
    int in_tx; /* inside v4r_cache_begin .. v4r_cache_commit */
    sqlite3_stmt *st[CST_COUNT];
};

/* Unix wall-clock seconds. */
double cache_now(void);
/* Turns an SQLite failure into an error naming the file: not a database / corrupt is V4R_EINPUT,
 * constraint and misuse are V4R_EINTERNAL, the rest V4R_EIO. */
int cache_sqlfail(const v4r_cache *c, int rc, const char *what, v4r_err *err);
/* Runs SQL without results. */
int cache_exec(v4r_cache *c, const char *sql, v4r_err *err);
/* A cached statement, reset and unbound, ready for binding. */
int cache_stmt(v4r_cache *c, int which, sqlite3_stmt **st, v4r_err *err);
/* A one-off statement (caller finalizes). */
int cache_prepare(v4r_cache *c, const char *sql, sqlite3_stmt **st, v4r_err *err);
/* Opens a write transaction (BEGIN IMMEDIATE, retried while busy) unless v4r_cache_begin already
 * did; *mine says whether this call opened it. */
int cache_tx_begin(v4r_cache *c, int *mine, v4r_err *err);
/* Ends what cache_tx_begin opened: COMMIT when rc is 0, else ROLLBACK. Returns rc or the commit's
 * failure. */
int cache_tx_end(v4r_cache *c, int mine, int rc, v4r_err *err);

/* A text column as a fresh string (NULL for SQL NULL). */
char *cache_col_str(sqlite3_stmt *st, int col);
int cache_status_parse(const char *s); /* V4R_CACHE_*, 0 when unknown */

/* Filters: the check (prompt hash: 6 to 64 hex digits, V4R_EUSAGE otherwise), the SQL condition
 * (" AND ..." with the parameters :model and :ph; "" when nothing filters) and the binding. */
int cache_filter_check(const v4r_cache_filter *f, v4r_err *err);
const char *cache_filter_sql(const v4r_cache_filter *f);
void cache_filter_bind(sqlite3_stmt *st, const v4r_cache_filter *f);

/* 1 when a running row's claim no longer holds: no owner, or an owner that is a process of this
 * host that no longer exists. */
int cache_owner_dead(const v4r_cache *c, const char *owner);

/* The hex sha256 of a file's bytes; -1 when it cannot be read. */
int cache_sha256_file(const char *path, char hex[65]);
/* "YYYY-MM-DDTHH:MM:SSZ" of unix seconds. */
void cache_iso8601(double t, char out[32]);
/* 1 when both paths name the same existing file. */
int cache_same_file(const char *a, const char *b);

#endif

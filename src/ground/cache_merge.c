/* `cache merge`: the rows and prompts of another cache file folded into this one, in one
 * transaction. Per key: done beats failed beats running; the earlier of two done rows and the later
 * of two failed rows are kept; attempts add up. */
#include <string.h>

#include "cache_internal.h"

static int status_rank(const char *s)
{
    int st = cache_status_parse(s);
    return st == V4R_CACHE_DONE ? 3 : st == V4R_CACHE_FAILED ? 2 : st == V4R_CACHE_RUNNING ? 1 : 0;
}

enum { MC_ITEM, MC_IMAGE, MC_PROMPT, MC_MODEL, MC_STATUS, MC_PERM, MC_DESC, MC_ERROR, MC_ATTEMPTS, MC_LATENCY,
       MC_PTOK, MC_CTOK, MC_ENDPOINT, MC_OWNER, MC_LEASE, MC_CREATED, MC_UPDATED, MC_NCOLS };
#define MERGE_COLS                                                                                                     \
    "item, image_hash, prompt_hash, model, status, permanent, description, error, attempts, latency_s,"              \
    " prompt_tokens, completion_tokens, endpoint, owner, lease_until, created, updated"

/* Copies every column of the source row into the statement's parameters 1..17. */
static void bind_row(sqlite3_stmt *dst, sqlite3_stmt *src)
{
    for (int i = 0; i < MC_NCOLS; i++)
        sqlite3_bind_value(dst, i + 1, sqlite3_column_value(src, i));
}

typedef struct {
    int found, rank;
    int64_t attempts;
    double created, updated;
} dest_row;

static int merge_row(v4r_cache *c, sqlite3_stmt *src, sqlite3_stmt *look, sqlite3_stmt *put, sqlite3_stmt *add,
                     size_t *n_new, size_t *n_updated, v4r_err *err)
{
    dest_row d = {0};
    for (int i = 0; i < 4; i++)
        sqlite3_bind_value(look, i + 1, sqlite3_column_value(src, i));
    int s = sqlite3_step(look);
    if (s == SQLITE_ROW) {
        d.found = 1;
        d.rank = status_rank((const char *)sqlite3_column_text(look, 0));
        d.attempts = sqlite3_column_int64(look, 1);
        d.created = sqlite3_column_double(look, 2);
        d.updated = sqlite3_column_double(look, 3);
    }
    sqlite3_reset(look);
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        return cache_sqlfail(c, s, "read", err);
    int rank = status_rank((const char *)sqlite3_column_text(src, MC_STATUS));
    double updated = sqlite3_column_double(src, MC_UPDATED), created = sqlite3_column_double(src, MC_CREATED);
    int64_t attempts = sqlite3_column_int64(src, MC_ATTEMPTS);
    int replace = !d.found || rank > d.rank || (rank == 3 && d.rank == 3 && updated < d.updated) ||
                  (rank == 2 && d.rank == 2 && updated > d.updated);
    sqlite3_stmt *w = NULL;
    if (replace) {
        w = put;
        bind_row(put, src);
        sqlite3_bind_int64(put, MC_ATTEMPTS + 1, attempts + d.attempts);
        if (d.found && d.created < created)
            sqlite3_bind_double(put, MC_CREATED + 1, d.created);
        if (rank == 1) /* a claim made in another file does not hold here: anyone may take it */
            sqlite3_bind_double(put, MC_LEASE + 1, 0);
    } else if (attempts > 0) {
        w = add;
        for (int i = 0; i < 4; i++)
            sqlite3_bind_value(add, i + 1, sqlite3_column_value(src, i));
        sqlite3_bind_int64(add, 5, attempts);
    }
    if (!w)
        return V4R_OK;
    s = sqlite3_step(w);
    sqlite3_reset(w);
    sqlite3_clear_bindings(w);
    if (s != SQLITE_DONE)
        return cache_sqlfail(c, s, "merge", err);
    if (d.found)
        (*n_updated)++;
    else
        (*n_new)++;
    return V4R_OK;
}

static int merge_prompts(v4r_cache *c, v4r_cache *src, v4r_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = cache_prepare(src, "SELECT hash, text FROM prompts ORDER BY hash", &st, err), s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW)
        rc = v4r_cache_put_prompt(c, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
                                  err);
    if (!rc && s != SQLITE_DONE)
        rc = cache_sqlfail(src, s, "read", err);
    sqlite3_finalize(st);
    return rc;
}

static int merge_rows(v4r_cache *c, v4r_cache *src, size_t *n_new, size_t *n_updated, v4r_err *err)
{
    sqlite3_stmt *rows = NULL, *look = NULL, *put = NULL, *add = NULL;
    int rc = cache_prepare(src, "SELECT " MERGE_COLS " FROM descriptions ORDER BY item, image_hash, prompt_hash, model",
                           &rows, err);
    if (!rc)
        rc = cache_prepare(c,
                           "SELECT status, attempts, created, updated FROM descriptions"
                           " WHERE item = ?1 AND image_hash = ?2 AND prompt_hash = ?3 AND model = ?4",
                           &look, err);
    if (!rc)
        rc = cache_prepare(c,
                           "INSERT OR REPLACE INTO descriptions(" MERGE_COLS ")"
                           " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                           &put, err);
    if (!rc)
        rc = cache_prepare(c,
                           "UPDATE descriptions SET attempts = attempts + ?5"
                           " WHERE item = ?1 AND image_hash = ?2 AND prompt_hash = ?3 AND model = ?4",
                           &add, err);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(rows)) == SQLITE_ROW)
        rc = merge_row(c, rows, look, put, add, n_new, n_updated, err);
    if (!rc && s != SQLITE_DONE)
        rc = cache_sqlfail(src, s, "read", err);
    sqlite3_finalize(rows);
    sqlite3_finalize(look);
    sqlite3_finalize(put);
    sqlite3_finalize(add);
    return rc;
}

int v4r_cache_merge(v4r_cache *c, const char *src_path, size_t *n_new, size_t *n_updated, v4r_err *err)
{
    size_t nn = 0, nu = 0;
    if (n_new)
        *n_new = 0;
    if (n_updated)
        *n_updated = 0;
    if (cache_same_file(c->path, src_path))
        return v4r_fail(err, V4R_EINPUT, "%s: cannot merge a cache into itself", src_path);
    v4r_cache *src = NULL;
    int rc = v4r_cache_open_readonly(src_path, &src, err), mine = 0;
    if (!rc)
        rc = cache_tx_begin(c, &mine, err);
    if (rc) {
        v4r_cache_close(src);
        return rc;
    }
    rc = cache_exec(src, "BEGIN", err); /* one snapshot of the source */
    if (!rc)
        rc = merge_prompts(c, src, err);
    if (!rc)
        rc = merge_rows(c, src, &nn, &nu, err);
    v4r_cache_close(src);
    rc = cache_tx_end(c, mine, rc, err);
    if (!rc && n_new)
        *n_new = nn;
    if (!rc && n_updated)
        *n_updated = nu;
    return rc;
}

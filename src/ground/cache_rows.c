/* The semantic cache's rows: claims with owners and leases, results, renew and release, prompts,
 * single-row reads, the filters and the description reader that encode uses. */
#include <stdlib.h>
#include <string.h>

#include "cache_internal.h"

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

/* The semantic cache's tools: stats (text or JSON) and export to JSONL with the covered-items list.
 * Merge is in cache_merge.c, import in cache_import.c. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cache_internal.h"
#include "vlm4rec/io.h"

/* ------------------------------------------------------------------ stats -------------------- */

/* A prepared statement over descriptions with the filter's condition in place of %s. */
static int filtered(v4r_cache *c, const char *fmt, const v4r_cache_filter *f, sqlite3_stmt **st, v4r_err *err)
{
    char *sql = v4r_sprintf(fmt, cache_filter_sql(f));
    int rc = cache_prepare(c, sql, st, err);
    free(sql);
    if (!rc)
        cache_filter_bind(*st, f);
    return rc;
}

static int step_end(v4r_cache *c, int s, v4r_err *err)
{
    return s == SQLITE_DONE || s == SQLITE_ROW ? V4R_OK : cache_sqlfail(c, s, "read", err);
}

/* Linear interpolation between the closest ranks (numpy's default). */
static double percentile(const double *v, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (v[hi] - v[lo]) * (pos - (double)lo);
}

static int stats_totals(v4r_cache *c, const v4r_cache_filter *f, json_t *root, v4r_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = filtered(c,
                      "SELECT count(*), coalesce(sum(status = 'done'), 0),"
                      " coalesce(sum(status = 'failed' AND permanent), 0),"
                      " coalesce(sum(status = 'failed' AND NOT permanent), 0), coalesce(sum(attempts), 0),"
                      " coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0)"
                      " FROM descriptions WHERE 1%s",
                      f, &st, err);
    if (rc)
        return rc;
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        json_object_set_new(root, "rows", json_integer(sqlite3_column_int64(st, 0)));
        json_object_set_new(root, "done", json_integer(sqlite3_column_int64(st, 1)));
        json_object_set_new(root, "failed",
                            json_pack("{sI sI}", "permanent", (json_int_t)sqlite3_column_int64(st, 2), "transient",
                                      (json_int_t)sqlite3_column_int64(st, 3)));
        json_object_set_new(root, "attempts", json_integer(sqlite3_column_int64(st, 4)));
        json_object_set_new(root, "tokens",
                            json_pack("{sI sI}", "prompt", (json_int_t)sqlite3_column_int64(st, 5), "completion",
                                      (json_int_t)sqlite3_column_int64(st, 6)));
    }
    rc = step_end(c, s, err);
    sqlite3_finalize(st);
    return rc;
}

static int stats_running(v4r_cache *c, const v4r_cache_filter *f, json_t *root, v4r_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = filtered(c, "SELECT owner, lease_until FROM descriptions WHERE status = 'running'%s", f, &st, err);
    if (rc)
        return rc;
    double now = cache_now();
    json_int_t live = 0, stale = 0;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *owner = (const char *)sqlite3_column_text(st, 0);
        double lease = sqlite3_column_type(st, 1) == SQLITE_NULL ? 0 : sqlite3_column_double(st, 1);
        if (lease < now || cache_owner_dead(c, owner))
            stale++;
        else
            live++;
    }
    rc = step_end(c, s, err);
    sqlite3_finalize(st);
    json_object_set_new(root, "running", json_pack("{sI sI}", "live", live, "stale", stale));
    return rc;
}

static int stats_latency(v4r_cache *c, const v4r_cache_filter *f, json_t *root, v4r_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = filtered(c,
                      "SELECT latency_s FROM descriptions WHERE status = 'done' AND latency_s IS NOT NULL%s"
                      " ORDER BY latency_s",
                      f, &st, err);
    if (rc)
        return rc;
    size_t n = 0, cap = 0;
    double *v = NULL, sum = 0;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        v4r_grow((void **)&v, &cap, n + 1, sizeof *v);
        v[n] = sqlite3_column_double(st, 0);
        sum += v[n++];
    }
    rc = step_end(c, s, err);
    sqlite3_finalize(st);
    json_t *lat = json_pack("{sI}", "count", (json_int_t)n);
    json_object_set_new(lat, "mean", n ? json_real(sum / (double)n) : json_null());
    json_object_set_new(lat, "p50", n ? json_real(percentile(v, n, 0.50)) : json_null());
    json_object_set_new(lat, "p95", n ? json_real(percentile(v, n, 0.95)) : json_null());
    json_object_set_new(root, "latency_s", lat);
    free(v);
    return rc;
}

static int stats_groups(v4r_cache *c, const v4r_cache_filter *f, json_t *root, v4r_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = filtered(c,
                      "SELECT model, substr(prompt_hash, 1, 12) AS ph, sum(status = 'done'), sum(status = 'failed'),"
                      " sum(status = 'running'), max(p.text)"
                      " FROM descriptions LEFT JOIN prompts p ON p.hash = prompt_hash WHERE 1%s"
                      " GROUP BY model, ph ORDER BY model, ph",
                      f, &st, err);
    if (rc)
        return rc;
    json_t *groups = json_array();
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *prompt = (const char *)sqlite3_column_text(st, 5);
        json_t *g = json_pack("{ss ss sI sI sI}", "model", (const char *)sqlite3_column_text(st, 0), "prompt_hash",
                              (const char *)sqlite3_column_text(st, 1), "done",
                              (json_int_t)sqlite3_column_int64(st, 2), "failed",
                              (json_int_t)sqlite3_column_int64(st, 3), "running",
                              (json_int_t)sqlite3_column_int64(st, 4));
        json_object_set_new(g, "prompt", prompt ? json_string(prompt) : json_null());
        json_array_append_new(groups, g ? g : json_null());
    }
    rc = step_end(c, s, err);
    sqlite3_finalize(st);
    json_object_set_new(root, "groups", groups);
    return rc;
}

static int stats_errors(v4r_cache *c, const v4r_cache_filter *f, json_t *root, v4r_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = filtered(c,
                      "SELECT error, count(*) AS n FROM descriptions WHERE status = 'failed' AND error IS NOT NULL%s"
                      " GROUP BY error ORDER BY n DESC, error LIMIT 5",
                      f, &st, err);
    if (rc)
        return rc;
    json_t *errors = json_array();
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *e = json_string((const char *)sqlite3_column_text(st, 0));
        if (!e) /* not UTF-8: keep the count, mark the text */
            e = json_string("(an error message that is not UTF-8)");
        json_array_append_new(errors,
                              json_pack("{so sI}", "error", e, "count", (json_int_t)sqlite3_column_int64(st, 1)));
    }
    rc = step_end(c, s, err);
    sqlite3_finalize(st);
    json_object_set_new(root, "errors", errors);
    return rc;
}

static json_int_t geti(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    return json_integer_value(b ? json_object_get(v, b) : v);
}

static void stats_text(json_t *root, FILE *out)
{
    json_int_t perm = geti(root, "failed", "permanent"), trans = geti(root, "failed", "transient");
    json_int_t live = geti(root, "running", "live"), stale = geti(root, "running", "stale");
    fprintf(out, "cache      %s\n", json_string_value(json_object_get(root, "cache")));
    json_t *flt = json_object_get(root, "filter");
    if (json_object_size(flt)) {
        json_t *m = json_object_get(flt, "model"), *p = json_object_get(flt, "prompt_hash");
        fprintf(out, "filter    %s%s%s%s\n", m ? " model " : "", m ? json_string_value(m) : "", p ? " prompt " : "",
                p ? json_string_value(p) : "");
    }
    fprintf(out, "rows       %lld\n", (long long)geti(root, "rows", NULL));
    fprintf(out, "done       %lld\n", (long long)geti(root, "done", NULL));
    fprintf(out, "failed     %lld (permanent %lld, transient %lld)\n", (long long)(perm + trans), (long long)perm,
            (long long)trans);
    fprintf(out, "running    %lld (live %lld, stale %lld: lease expired or owner gone)\n", (long long)(live + stale),
            (long long)live, (long long)stale);
    fprintf(out, "attempts   %lld\n", (long long)geti(root, "attempts", NULL));
    json_t *lat = json_object_get(root, "latency_s");
    if (geti(lat, "count", NULL))
        fprintf(out, "latency    mean %.3f s, p50 %.3f s, p95 %.3f s (%lld done rows)\n",
                json_real_value(json_object_get(lat, "mean")), json_real_value(json_object_get(lat, "p50")),
                json_real_value(json_object_get(lat, "p95")), (long long)geti(lat, "count", NULL));
    else
        fprintf(out, "latency    -\n");
    fprintf(out, "tokens     prompt %lld, completion %lld\n", (long long)geti(root, "tokens", "prompt"),
            (long long)geti(root, "tokens", "completion"));
    json_t *groups = json_object_get(root, "groups"), *g;
    size_t i;
    if (json_array_size(groups))
        fprintf(out, "by model and prompt:\n");
    json_array_foreach(groups, i, g)
    {
        const char *prompt = json_string_value(json_object_get(g, "prompt"));
        fprintf(out, "  %s  %s  done %lld  failed %lld  running %lld", json_string_value(json_object_get(g, "model")),
                json_string_value(json_object_get(g, "prompt_hash")), (long long)geti(g, "done", NULL),
                (long long)geti(g, "failed", NULL), (long long)geti(g, "running", NULL));
        if (prompt) /* a one-line excerpt */
            fprintf(out, "  \"%.*s%s\"", (int)strcspn(prompt, "\r\n") < 48 ? (int)strcspn(prompt, "\r\n") : 48,
                    prompt, strlen(prompt) > 48 || prompt[strcspn(prompt, "\r\n")] ? "..." : "");
        fputc('\n', out);
    }
    json_t *errors = json_object_get(root, "errors"), *e;
    if (json_array_size(errors))
        fprintf(out, "most common errors:\n");
    json_array_foreach(errors, i, e)
    {
        fprintf(out, "  %6lld  %s\n", (long long)geti(e, "count", NULL),
                json_string_value(json_object_get(e, "error")));
    }
}

int v4r_cache_stats(v4r_cache *c, const v4r_cache_filter *f, int json, FILE *out, v4r_err *err)
{
    int rc = cache_filter_check(f, err);
    if (rc)
        return rc;
    json_t *root = json_pack("{ss}", "cache", c->path);
    if (!root) /* a path that is not UTF-8 */
        root = json_pack("{ss}", "cache", "?");
    json_t *flt = json_object();
    if (f && f->model)
        json_object_set_new(flt, "model", json_string(f->model));
    if (f && f->prompt_hash)
        json_object_set_new(flt, "prompt_hash", json_string(f->prompt_hash));
    json_object_set_new(root, "filter", flt);
    static const char *const order[] = {"rows", "done", "failed", "running", "attempts", "latency_s", "tokens",
                                        "groups", "errors"};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) /* the keys in this order; filled below */
        json_object_set_new(root, order[i], json_null());
    /* one read transaction: the parts agree with each other */
    int own = sqlite3_get_autocommit(c->db);
    rc = own ? cache_exec(c, "BEGIN", err) : V4R_OK;
    if (!rc) {
        rc = stats_totals(c, f, root, err);
        if (!rc)
            rc = stats_running(c, f, root, err);
        if (!rc)
            rc = stats_latency(c, f, root, err);
        if (!rc)
            rc = stats_groups(c, f, root, err);
        if (!rc)
            rc = stats_errors(c, f, root, err);
        if (own)
            sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
    }
    if (!rc && json) {
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fprintf(out, "%s\n", s);
        free(s);
    } else if (!rc) {
        stats_text(root, out);
    }
    json_decref(root);
    if (!rc && (fflush(out) != 0 || ferror(out)))
        rc = v4r_fail(err, V4R_EIO, "cannot write the statistics");
    return rc;
}

/* ------------------------------------------------------------------ export ------------------- */

static json_t *opt_real(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? json_null() : json_real(sqlite3_column_double(st, col));
}

static json_t *opt_int(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? json_null() : json_integer(sqlite3_column_int64(st, col));
}

/* One export line (without the newline); NULL when a text is not UTF-8. */
static char *export_line(sqlite3_stmt *st)
{
    char when[32];
    cache_iso8601(sqlite3_column_double(st, 8), when);
    json_t *o = json_object();
    static const char *const str_fields[] = {"item", "description", "model", "prompt_hash", "image_hash"};
    int ok = 1;
    for (int i = 0; i < 5; i++) {
        const char *v = (const char *)sqlite3_column_text(st, i);
        json_t *s = json_string(v ? v : "");
        ok = ok && s;
        json_object_set_new(o, str_fields[i], s ? s : json_null());
    }
    json_object_set_new(o, "latency_s", opt_real(st, 5));
    json_object_set_new(o, "prompt_tokens", opt_int(st, 6));
    json_object_set_new(o, "completion_tokens", opt_int(st, 7));
    json_object_set_new(o, "updated", json_string(when));
    json_object_set_new(o, "attempts", json_integer(sqlite3_column_int64(st, 9)));
    char *line = ok ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    return line;
}

static void write_id(FILE *fp, const char *id)
{
    v4r_tsv_write_field(fp, id);
    fputc('\n', fp);
}

int v4r_cache_export(v4r_cache *c, const v4r_cache_filter *f, const v4r_dataset *ds, const char *jsonl_path,
                     const char *covered_path, size_t *n_out, v4r_err *err)
{
    if (n_out)
        *n_out = 0;
    int rc = cache_filter_check(f, err);
    sqlite3_stmt *st = NULL;
    if (!rc)
        rc = filtered(c,
                      "SELECT item, description, model, prompt_hash, image_hash, latency_s, prompt_tokens,"
                      " completion_tokens, updated, attempts FROM descriptions WHERE status = 'done'%s"
                      " ORDER BY item, updated DESC, model, prompt_hash, image_hash",
                      f, &st, err);
    if (rc)
        return rc;
    v4r_outfile jo = {0}, co = {0};
    if (jsonl_path)
        rc = v4r_out_open(&jo, jsonl_path, err);
    if (!rc && covered_path)
        rc = v4r_out_open(&co, covered_path, err);
    char **lines = ds ? v4r_calloc(ds->n_items ? ds->n_items : 1, sizeof *lines) : NULL;
    char *prev = NULL;
    size_t n = 0, unknown = 0;
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *item = (const char *)sqlite3_column_text(st, 0);
        if (prev && !strcmp(prev, item))
            continue; /* an older description of the same item */
        free(prev);
        prev = v4r_strdup(item);
        int64_t idx = ds ? v4r_strmap_get(&ds->item_index, item) : -1;
        if (ds && idx < 0) {
            unknown++;
            continue;
        }
        char *line = export_line(st);
        if (!line) {
            rc = v4r_fail(err, V4R_EINPUT, "%s: item %s: a text that is not valid UTF-8", c->path, item);
            break;
        }
        n++;
        if (ds) {
            lines[idx] = line;
            continue;
        }
        if (jsonl_path)
            fprintf(jo.fp, "%s\n", line);
        if (covered_path)
            write_id(co.fp, item);
        free(line);
    }
    if (!rc && s != SQLITE_DONE)
        rc = cache_sqlfail(c, s, "read", err);
    sqlite3_finalize(st);
    free(prev);
    for (size_t i = 0; ds && i < ds->n_items; i++)
        if (lines[i]) {
            if (!rc && jsonl_path)
                fprintf(jo.fp, "%s\n", lines[i]);
            if (!rc && covered_path)
                write_id(co.fp, ds->item_id[i]);
            free(lines[i]);
        }
    free(lines);
    if (!rc && jsonl_path)
        rc = v4r_out_commit(&jo, err);
    if (!rc && covered_path)
        rc = v4r_out_commit(&co, err);
    if (jo.fp)
        v4r_out_abort(&jo);
    if (co.fp)
        v4r_out_abort(&co);
    if (!rc && unknown)
        v4r_warn("%s: %zu described item%s not in the dataset %s: skipped", c->path, unknown,
                 unknown == 1 ? " is" : "s are", ds->dir ? ds->dir : "");
    if (!rc && n_out)
        *n_out = n;
    return rc;
}

/* The JSON side of a request: the body of POST /v1/recommend and the id of the similar route
 * checked and resolved against the index into one query, the answer written from the search's row,
 * and the JSON error body. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "serve_internal.h"

#define MAX_DEPTH 32 /* nesting the request bodies never need */

char *error_body(unsigned status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *clean = utf8_clean(msg, strlen(msg)); /* an id cut short may end mid-character */
    json_t *o = json_pack("{s:{s:i,s:s}}", "error", "status", (int)status, "message", clean);
    free(clean);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

void request_error(serve_request *r, unsigned status, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    r->status = status;
    free(r->answer);
    r->answer = error_body(status, "%s", msg);
}

int serve_fail(serve_request *r, unsigned status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    request_error(r, status, fmt, ap);
    va_end(ap);
    return -1;
}

size_t json_depth(const char *text, size_t n)
{
    size_t depth = 0, deepest = 0;
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = text[i];
        if (in_string) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_string = 0;
        } else if (ch == '"') {
            in_string = 1;
        } else if (ch == '[' || ch == '{') {
            if (++depth > deepest)
                deepest = depth;
        } else if ((ch == ']' || ch == '}') && depth) {
            depth--;
        }
    }
    return deepest;
}

/* The ids of an optional array field: each known one appended to ids, unknown ones to r->unknown. */
static int resolve_ids(serve_request *r, json_t *root, const char *field, int32_t *ids, size_t *n)
{
    json_t *arr = json_object_get(root, field);
    *n = 0;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return serve_fail(r, 400, "\"%s\" must be an array of item ids (strings)", field);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v))
            return serve_fail(r, 400, "\"%s\"[%zu] must be a string (an item id)", field, i);
        int32_t item = v4r_live_find_item(r->h->live, json_string_value(v), json_string_length(v));
        if (item >= 0)
            ids[(*n)++] = item;
        else
            json_array_append(r->unknown, v);
    }
    return 0;
}

static size_t array_size(json_t *root, const char *field)
{
    return json_array_size(json_object_get(root, field)); /* 0 for anything but an array */
}

/* k: an integer in 1..max_k (default 10). */
static int parse_k(serve_request *r, json_t *root, size_t max_k)
{
    json_t *k = json_object_get(root, "k");
    r->q.k = 10 < max_k ? 10 : max_k;
    if (!k || json_is_null(k))
        return 0;
    if (!json_is_integer(k) || json_integer_value(k) < 1 || (uint64_t)json_integer_value(k) > max_k)
        return serve_fail(r, 400, "\"k\" must be an integer from 1 to %zu", max_k);
    r->q.k = (size_t)json_integer_value(k);
    return 0;
}

/* nprobe: lists an IVF index probes, an integer >= 1 (absent: the server's default). */
static int parse_nprobe(serve_request *r, json_t *root)
{
    json_t *np = json_object_get(root, "nprobe");
    if (!np || json_is_null(np))
        return 0;
    if (!json_is_integer(np) || json_integer_value(np) < 1)
        return serve_fail(r, 400, "\"nprobe\" must be an integer of at least 1");
    r->q.nprobe = (size_t)json_integer_value(np);
    return 0;
}

/* "user": the stored history of a known user (404 when unknown). */
static int use_user(serve_request *r, json_t *user)
{
    if (!json_is_string(user))
        return serve_fail(r, 400, "\"user\" must be a string (a user id)");
    r->user = v4r_strndup(json_string_value(user), json_string_length(user));
    int32_t u = v4r_index_find_user(r->h->ix, json_string_value(user), json_string_length(user));
    if (u < 0)
        return serve_fail(r, 404, "unknown user \"%.200s\"", r->user);
    r->q.n_history = v4r_live_user_history(r->h->live, u, &r->user_history);
    r->q.history = r->user_history;
    if (!r->q.n_history)
        return serve_fail(r, 422, "user \"%.200s\" has no history in the index", r->user);
    return 0;
}

static int parse_fields(serve_request *r, json_t *root, size_t max_k)
{
    json_t *user = json_object_get(root, "user"), *history = json_object_get(root, "history");
    if (user && history)
        return serve_fail(r, 400, "give \"user\" or \"history\", not both");
    if (!user && !history)
        return serve_fail(r, 400, "the body needs \"user\" (a user id) or \"history\" (item ids, most recent last)");
    json_t *keep = json_object_get(root, "keep_history");
    if (keep && !json_is_boolean(keep))
        return serve_fail(r, 400, "\"keep_history\" must be true or false");
    r->q.keep_history = json_is_true(keep);
    if (parse_k(r, root, max_k) || parse_nprobe(r, root))
        return -1;
    if (json_object_get(root, "candidates") && !json_is_array(json_object_get(root, "candidates")))
        return serve_fail(r, 400, "\"candidates\" must be an array of item ids (strings)");
    size_t n_hist = array_size(root, "history"), n_excl = array_size(root, "exclude");
    size_t n_cand = array_size(root, "candidates"), n = 0;
    r->ids = v4r_malloc((n_hist + n_excl + n_cand + 1) * sizeof *r->ids);
    int32_t *hist = r->ids, *excl = hist + n_hist, *cand = excl + n_excl;
    if (history && resolve_ids(r, root, "history", hist, &n))
        return -1;
    r->history_length = history ? json_array_size(history) : 0;
    if (history && !n)
        return serve_fail(r, 422, "no item of \"history\" is in the index");
    if (history)
        r->q.history = hist, r->q.n_history = n;
    if (resolve_ids(r, root, "exclude", excl, &r->q.n_exclude) || resolve_ids(r, root, "candidates", cand, &n))
        return -1;
    r->q.exclude = excl;
    if (json_object_get(root, "candidates"))
        r->q.candidates = cand, r->q.n_candidates = n;
    if (user && use_user(r, user))
        return -1;
    if (user)
        r->history_length = r->q.n_history;
    return 0;
}

int request_parse_recommend(serve_request *r, index_holder *h, size_t max_k)
{
    r->h = h; /* the caller's reference, dropped when r is freed */
    r->unknown = json_array();
    memset(&r->q, 0, sizeof r->q);
    if (json_depth(r->body, r->n_body) > MAX_DEPTH)
        return serve_fail(r, 400, "the body nests arrays or objects deeper than %d", MAX_DEPTH);
    json_error_t je;
    json_t *root = json_loadb(r->body ? r->body : "", r->n_body, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return serve_fail(r, 400, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
    int rc = json_is_object(root) ? parse_fields(r, root, max_k) : serve_fail(r, 400, "the body must be a JSON object");
    json_decref(root);
    return rc;
}

int request_parse_similar(serve_request *r, index_holder *h, const char *id, const char *k_text, size_t max_k)
{
    r->h = h; /* the caller's reference, dropped when r is freed */
    r->unknown = json_array();
    memset(&r->q, 0, sizeof r->q);
    r->item = v4r_strdup(id);
    r->q.k = 10 < max_k ? 10 : max_k;
    int64_t k;
    if (k_text && (v4r_parse_i64(k_text, &k) || k < 1 || (uint64_t)k > max_k))
        return serve_fail(r, 400, "query parameter \"k\" must be an integer from 1 to %zu", max_k);
    if (k_text)
        r->q.k = (size_t)k;
    int32_t item = v4r_live_find_item(h->live, id, strlen(id));
    if (item < 0)
        return serve_fail(r, 404, "unknown item \"%.200s\"", id);
    r->ids = v4r_malloc(sizeof *r->ids);
    r->ids[0] = item;
    r->vector = v4r_malloc(v4r_index_dim(h->ix) * sizeof *r->vector);
    v4r_live_item_vector(h->live, item, r->vector);
    r->q.history = r->ids; /* excludes the item itself */
    r->q.n_history = 1;
    r->q.vector = r->vector;
    return 0;
}

char *utf8_clean(const char *s, size_t n)
{
    char *out = v4r_malloc(3 * n + 1), *o = out;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (len > 0 && cp != 0) {
            memcpy(o, s + i, (size_t)len);
            o += len;
            i += (size_t)len;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    *o = 0;
    return out;
}

/* An id as a JSON string (bytes that are not UTF-8 written as U+FFFD). */
static json_t *id_string(const char *id)
{
    json_t *s = json_string(id);
    if (s)
        return s;
    char *clean = utf8_clean(id, strlen(id));
    s = json_string(clean);
    free(clean);
    return s;
}

void request_answer(serve_request *r, const int32_t *items, const float *scores)
{
    json_t *o = json_object(), *list = json_array();
    if (r->user)
        json_object_set_new(o, "user", json_string(r->user));
    if (r->item)
        json_object_set_new(o, "item", id_string(r->item));
    for (size_t j = 0; j < r->q.k && items[j] >= 0; j++)
        json_array_append_new(list, json_pack("{s:o,s:f}", "item", id_string(v4r_live_item_id(r->h->live, items[j])),
                                              "score", (double)scores[j]));
    json_object_set_new(o, "items", list);
    if (!r->item)
        json_object_set(o, "unknown", r->unknown);
    json_object_set_new(o, "index_version", json_string(v4r_index_version(r->h->ix)));
    free(r->answer);
    r->answer = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    r->status = 200;
    json_decref(o);
    if (!r->answer) {
        r->status = 500;
        r->answer = error_body(500, "the answer could not be written as JSON");
    }
}

void request_release_query(serve_request *r)
{
    free(r->ids);
    free(r->vector);
    free(r->user_history);
    r->user_history = NULL;
    r->ids = NULL;
    r->vector = NULL;
    json_decref(r->unknown);
    r->unknown = NULL;
    if (r->h)
        holder_put(r->h);
    r->h = NULL;
}

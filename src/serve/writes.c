/* The write routes of the service (docs/serving.md, "Live additions"): POST /v1/items (an item's
 * text encoded in process with the index's encoder, or its vector), DELETE /v1/items/ID and
 * POST /v1/users/ID/events, each checked whole, logged and fsync'ed before the answer; and the
 * loading of the encoder the index names. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "serve_internal.h"
#include "vlm4rec/io.h"
#include "vlm4rec/kernels.h"
#include "vlm4rec/text.h"

/* ---- the encoder ---- */

int live_load_encoder(v4r_server *s, const v4r_index *ix, v4r_err *err)
{
    json_t *meta = json_loads(v4r_index_meta_json(ix), 0, NULL), *enc = json_object_get(meta, "encoder");
    int rc = V4R_OK;
    if (json_is_object(enc)) {
        const char *dir = s->o.encoder_dir ? s->o.encoder_dir : json_string_value(json_object_get(enc, "path"));
        const char *want = json_string_value(json_object_get(enc, "sha256"));
        char have[65];
        rc = dir ? v4r_model_fingerprint(dir, have, err)
                 : v4r_fail(err, V4R_EINPUT, "serve: the index's encoder has no path");
        if (!rc && want && strcmp(have, want))
            rc = v4r_fail(err, V4R_EINPUT,
                          "serve: the encoder at %s (sha256 %.12s) is not the one the index names (%.12s, %s)", dir,
                          have, want, json_string_value(json_object_get(enc, "model")));
        const char *prec_name = json_string_value(json_object_get(enc, "precision"));
        int precision = prec_name ? v4r_precision_by_name(prec_name) : V4R_PREC_FP32; /* older indexes: fp32 */
        if (!rc && precision < 0)
            rc = v4r_fail(err, V4R_EINPUT, "serve: the index's encoder precision '%s' is not fp32, bf16 or fp16",
                          prec_name);
        if (!rc)
            rc = v4r_encoder_load_precision(dir, precision, &s->encoder, err);
        if (!rc)
            v4r_encoder_warn_fallback(s->encoder, precision, "serve: the index's encoder precision");
        if (!rc && v4r_encoder_dim(s->encoder) != v4r_index_dim(ix))
            rc = v4r_fail(err, V4R_EINPUT, "serve: the encoder gives %zu dimensions, the index has %zu",
                          v4r_encoder_dim(s->encoder), v4r_index_dim(ix));
        const char *tpl = json_string_value(json_object_get(enc, "text_template"));
        s->text_template = tpl ? v4r_strdup(tpl) : NULL;
        if (!rc)
            v4r_info("serve: encoder %s loaded (%zu dimensions, %s)", dir, v4r_encoder_dim(s->encoder),
                     v4r_precision_name(v4r_encoder_precision(s->encoder)));
    }
    json_decref(meta);
    return rc;
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return 0;
    return 1;
}

/* The body as a JSON object whose keys are all among the allowed ones; NULL on error (answered). */
static json_t *parse_body(serve_request *r, const char *const *allowed)
{
    json_error_t je;
    if (json_depth(r->body ? r->body : "", r->n_body) > 32) {
        serve_fail(r, 400, "the body nests arrays or objects deeper than 32");
        return NULL;
    }
    json_t *root = json_loadb(r->body ? r->body : "", r->n_body, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        serve_fail(r, 400, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        serve_fail(r, 400, "the body must be a JSON object");
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key))
            i++;
        if (!allowed[i]) {
            char *clean = utf8_clean(key, strlen(key));
            serve_fail(r, 400, "unknown field \"%.100s\"", clean);
            free(clean);
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

/* The vector field: dim finite numbers. */
static int vector_of(serve_request *r, json_t *arr, size_t dim, float *out)
{
    if (!json_is_array(arr))
        return serve_fail(r, 400, "\"vector\" must be an array of numbers");
    if (json_array_size(arr) != dim)
        return serve_fail(r, 422, "\"vector\" has %zu values, the index's dimension is %zu", json_array_size(arr), dim);
    for (size_t k = 0; k < dim; k++) {
        json_t *x = json_array_get(arr, k);
        if (!json_is_number(x))
            return serve_fail(r, 400, "\"vector\"[%zu] must be a number", k);
        out[k] = (float)json_number_value(x);
        if (!isfinite(out[k]))
            return serve_fail(r, 422, "\"vector\"[%zu] is not a finite float32", k);
    }
    return 0;
}

/* The item's vector from its text, with the index's encoder and text template. */
static int vector_of_text(serve_request *r, json_t *root, json_t *desc, size_t dim, float *out)
{
    v4r_server *s = r->srv;
    json_t *title = json_object_get(root, "title");
    if (!json_is_string(desc))
        return serve_fail(r, 400, "\"description\" must be a string");
    if (title && !json_is_string(title))
        return serve_fail(r, 400, "\"title\" must be a string");
    if (is_blank(json_string_value(desc)))
        return serve_fail(r, 422, "\"description\" is empty or blank");
    if (!s->encoder)
        return serve_fail(r, 422, "the index names no encoder (index build --encoder): send the item's \"vector\"");
    char *text = s->text_template ? v4r_text_template_fill(s->text_template, title ? json_string_value(title) : "",
                                                  json_string_value(desc))
                                  : v4r_strdup(json_string_value(desc));
    const char *texts[1] = {text};
    v4r_err err = {0};
    pthread_mutex_lock(&s->encoder_mu);
    int rc = v4r_encoder_encode_texts(s->encoder, texts, 1, 1, out, &err);
    pthread_mutex_unlock(&s->encoder_mu);
    free(text);
    (void)dim;
    return rc ? serve_fail(r, 422, "the text could not be encoded: %s", err.msg) : 0;
}

/* The status of a failed change. */
static void change_failed(serve_request *r, int rc, const v4r_err *err)
{
    if (rc == V4R_LIVE_ROTATED)
        v4r_server_reload(r->srv);
    unsigned status = rc == V4R_LIVE_EXISTS    ? 409
                      : rc == V4R_LIVE_UNKNOWN ? 404
                      : rc == V4R_LIVE_ROTATED ? 503
                      : rc == V4R_EINPUT       ? 422
                                               : 500;
    serve_fail(r, status, "%s", err->msg);
}

void live_add(serve_request *r)
{
    static const char *const allowed[] = {"item", "description", "title", "vector", NULL};
    v4r_server *s = r->srv;
    json_t *root = parse_body(r, allowed);
    if (!root)
        return;
    json_t *id = json_object_get(root, "item"), *desc = json_object_get(root, "description");
    json_t *vec = json_object_get(root, "vector");
    pthread_mutex_lock(&s->write_mu);
    r->h = server_index(s);
    size_t dim = v4r_index_dim(r->h->ix);
    float *v = v4r_malloc(dim * sizeof *v);
    int bad = 0;
    if (!json_is_string(id) || is_blank(json_string_value(id)))
        bad = serve_fail(r, 400, "\"item\" must be a nonempty string (the item's id)");
    else if (strlen(json_string_value(id)) != json_string_length(id))
        bad = serve_fail(r, 400, "\"item\" must not contain \\u0000");
    else if (!desc == !vec)
        bad = serve_fail(r, 400, "give \"description\" (text, encoded with the index's encoder) or \"vector\", one of them");
    else if (vec && json_object_get(root, "title"))
        bad = serve_fail(r, 400, "\"title\" goes with \"description\", not with \"vector\"");
    else
        bad = vec ? vector_of(r, vec, dim, v) : vector_of_text(r, root, desc, dim, v);
    if (!bad) {
        int32_t item;
        uint64_t seq;
        v4r_err err = {0};
        int rc = v4r_live_add_item(r->h->live, json_string_value(id), v, dim, &item, &seq, &err);
        if (rc) {
            change_failed(r, rc, &err);
        } else {
            json_t *o = json_pack("{s:O,s:I,s:I,s:s}", "item", id, "index", (json_int_t)item, "seq", (json_int_t)seq,
                                  "index_version", v4r_index_version(r->h->ix));
            free(r->answer);
            r->answer = json_dumps(o, JSON_COMPACT);
            r->status = 201;
            json_decref(o);
        }
    }
    pthread_mutex_unlock(&s->write_mu);
    free(v);
    json_decref(root);
}

void live_delete(serve_request *r, const char *id)
{
    v4r_server *s = r->srv;
    pthread_mutex_lock(&s->write_mu);
    r->h = server_index(s);
    r->item = v4r_strdup(id);
    uint64_t seq;
    v4r_err err = {0};
    int rc = v4r_live_delete_item(r->h->live, id, &seq, &err);
    if (rc) {
        change_failed(r, rc, &err);
    } else {
        char *clean = utf8_clean(id, strlen(id));
        json_t *o = json_pack("{s:s,s:b,s:I,s:s}", "item", clean, "deleted", 1, "seq", (json_int_t)seq, "index_version",
                              v4r_index_version(r->h->ix));
        free(r->answer);
        r->answer = json_dumps(o, JSON_COMPACT);
        r->status = 200;
        json_decref(o);
        free(clean);
    }
    pthread_mutex_unlock(&s->write_mu);
}

/* The ids of "items", all live items, into *items. */
static int event_items(serve_request *r, json_t *arr, int32_t **items, size_t *n)
{
    if (!json_is_array(arr))
        return serve_fail(r, 400, "\"items\" must be an array of item ids (strings)");
    *n = json_array_size(arr);
    if (!*n)
        return serve_fail(r, 422, "\"items\" is empty");
    *items = v4r_malloc(*n * sizeof **items);
    for (size_t i = 0; i < *n; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_string(v))
            return serve_fail(r, 400, "\"items\"[%zu] must be a string (an item id)", i);
        (*items)[i] = v4r_live_find_item(r->h->live, json_string_value(v), json_string_length(v));
        if ((*items)[i] < 0) {
            char *clean = utf8_clean(json_string_value(v), json_string_length(v));
            serve_fail(r, 422, "\"items\"[%zu]: unknown item \"%.200s\"", i, clean);
            free(clean);
            return -1;
        }
    }
    return 0;
}

void live_events(serve_request *r, const char *user)
{
    static const char *const allowed[] = {"items", NULL};
    v4r_server *s = r->srv;
    json_t *root = parse_body(r, allowed);
    if (!root)
        return;
    pthread_mutex_lock(&s->write_mu);
    r->h = server_index(s);
    r->user = v4r_strdup(user);
    int32_t u = v4r_index_find_user(r->h->ix, user, strlen(user)), *items = NULL;
    size_t n = 0;
    int bad = u < 0 ? serve_fail(r, 404, "unknown user \"%.200s\"", user) : 0;
    if (!bad && !json_object_get(root, "items"))
        bad = serve_fail(r, 400, "the body needs \"items\" (item ids, oldest first)");
    if (!bad)
        bad = event_items(r, json_object_get(root, "items"), &items, &n);
    if (!bad) {
        uint64_t seq;
        v4r_err err = {0};
        int rc = v4r_live_add_events(r->h->live, u, items, n, &seq, &err);
        if (rc) {
            change_failed(r, rc, &err);
        } else {
            int32_t *hist;
            size_t nh = v4r_live_user_history(r->h->live, u, &hist);
            free(hist);
            char *clean = utf8_clean(user, strlen(user));
            json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:s}", "user", clean, "events", (json_int_t)n, "history_length",
                                  (json_int_t)nh, "seq", (json_int_t)seq, "index_version", v4r_index_version(r->h->ix));
            free(r->answer);
            r->answer = json_dumps(o, JSON_COMPACT);
            r->status = 201;
            json_decref(o);
            free(clean);
        }
    }
    pthread_mutex_unlock(&s->write_mu);
    free(items);
    json_decref(root);
}

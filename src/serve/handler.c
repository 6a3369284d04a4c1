/* The HTTP side of a request, as libmicrohttpd calls it: routing, methods, the drain, bearer token,
 * rate limit, content type and body size checked when the headers arrive; the body collected; then
 * a query queued for the workers (the connection suspended until its answer) or an answer written
 * at once; every answer counted in the metrics and the access log. */
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "serve_internal.h"

#define SIMILAR_PREFIX "/v1/items/"
#define SIMILAR_SUFFIX "/similar"
#define CONTENT_JSON "application/json"
#define CONTENT_METRICS "text/plain; version=0.0.4; charset=utf-8"

/* ---- routes ---- */

static int is_similar_path(const char *url)
{
    size_t n = strlen(url), np = strlen(SIMILAR_PREFIX), ns = strlen(SIMILAR_SUFFIX);
    return n > np + ns && !strncmp(url, SIMILAR_PREFIX, np) && !strcmp(url + n - ns, SIMILAR_SUFFIX);
}

#define USERS_PREFIX "/v1/users/"
#define EVENTS_SUFFIX "/events"

static int is_events_path(const char *url)
{
    size_t n = strlen(url), np = strlen(USERS_PREFIX), ns = strlen(EVENTS_SUFFIX);
    return n > np + ns && !strncmp(url, USERS_PREFIX, np) && !strcmp(url + n - ns, EVENTS_SUFFIX);
}

static int route_of(const char *url)
{
    if (!strcmp(url, "/v1/recommend"))
        return ROUTE_RECOMMEND;
    if (is_similar_path(url))
        return ROUTE_SIMILAR;
    if (!strcmp(url, "/v1/items"))
        return ROUTE_ADD;
    if (!strncmp(url, SIMILAR_PREFIX, strlen(SIMILAR_PREFIX)) && url[strlen(SIMILAR_PREFIX)])
        return ROUTE_DELETE;
    if (is_events_path(url))
        return ROUTE_EVENTS;
    if (!strcmp(url, "/healthz"))
        return ROUTE_HEALTHZ;
    if (!strcmp(url, "/metrics"))
        return ROUTE_METRICS;
    return ROUTE_OTHER;
}

/* Routes that take a JSON body. */
static int has_body(int route) { return route == ROUTE_RECOMMEND || route == ROUTE_ADD || route == ROUTE_EVENTS; }

static const char *allowed_methods(int route)
{
    return has_body(route) ? "POST" : route == ROUTE_DELETE ? "DELETE" : "GET, HEAD";
}

static int method_allowed(int route, const char *method)
{
    if (has_body(route))
        return !strcmp(method, "POST");
    if (route == ROUTE_DELETE)
        return !strcmp(method, "DELETE");
    return !strcmp(method, "GET") || !strcmp(method, "HEAD");
}

static int is_api(int route) { return route != ROUTE_HEALTHZ && route != ROUTE_METRICS && route != ROUTE_OTHER; }

/* ---- requests ---- */

static void client_address(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, n, "unknown");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (getnameinfo(sa, len, out, (socklen_t)n, NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(out, n, "unknown");
}

static serve_request *request_new(v4r_server *s, struct MHD_Connection *c, const char *url, const char *method)
{
    serve_request *r = v4r_calloc(1, sizeof *r);
    r->srv = s;
    r->conn = c;
    r->t0 = v4r_now();
    r->path = v4r_strdup(url);
    snprintf(r->method, sizeof r->method, "%s", method);
    r->route = route_of(url);
    client_address(c, r->remote, sizeof r->remote);
    pthread_mutex_lock(&s->open_mu);
    s->open_requests++;
    pthread_mutex_unlock(&s->open_mu);
    metrics_inflight(&s->metrics, 1);
    return r;
}

static void request_free(serve_request *r)
{
    request_release_query(r);
    free(r->body);
    free(r->answer);
    free(r->path);
    free(r->user);
    free(r->item);
    free(r);
}

/* ---- answers ---- */

typedef struct {
    const char *name, *value;
} header;

/* Queues body (taken) with status and counts the answer. */
static enum MHD_Result respond(serve_request *r, unsigned status, char *body, const char *type, const header *extra)
{
    v4r_server *s = r->srv;
    size_t len = strlen(body);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", type);
    for (; extra && extra->name; extra++)
        MHD_add_response_header(resp, extra->name, extra->value);
    if (atomic_load(&s->draining))
        MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->stage = STAGE_RESPONDED;
    double seconds = v4r_now() - r->t0;
    metrics_request(&s->metrics, r->route, status, seconds);
    metrics_inflight(&s->metrics, -1);
    access_log_write(&s->log, r, len, seconds, r->h ? v4r_index_version(r->h->ix) : NULL);
    return ret;
}

/* Queues the answer left in r->answer (by a refusal, the parser or a worker). */
static enum MHD_Result respond_answer(serve_request *r)
{
    char *answer = r->answer;
    r->answer = NULL;
    header extra[] = {{r->extra_name, r->extra_value}, {NULL, NULL}};
    return respond(r, r->status, answer, CONTENT_JSON, extra);
}

static enum MHD_Result respond_json(serve_request *r, unsigned status, json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return respond(r, status, text, CONTENT_JSON, NULL);
}

static enum MHD_Result answer_healthz(serve_request *r)
{
    const v4r_index *ix = r->h->ix;
    return respond_json(r, 200,
                        json_pack("{s:s,s:s,s:I,s:I,s:I,s:s,s:I,s:I}", "status", "ok", "index_version",
                                  v4r_index_version(ix), "items", (json_int_t)v4r_index_n_items(ix), "users",
                                  (json_int_t)v4r_index_n_users(ix), "dim", (json_int_t)v4r_index_dim(ix), "storage",
                                  v4r_index_dtype_name(v4r_index_storage(ix)), "live_items",
                                  (json_int_t)v4r_live_n_added(r->h->live), "deleted",
                                  (json_int_t)v4r_live_n_deleted(r->h->live)));
}

static enum MHD_Result answer_metrics(serve_request *r)
{
    return respond(r, 200, metrics_text(&r->srv->metrics, r->h->live), CONTENT_METRICS, NULL);
}

/* ---- checks when the headers arrive ---- */

/* 1 when the Content-Type is application/json (any charset parameter must be UTF-8). */
static int is_json_type(const char *type)
{
    if (!type)
        return 0;
    char lower[256];
    size_t n = 0;
    for (; type[n] && n + 1 < sizeof lower; n++)
        lower[n] = (char)(type[n] >= 'A' && type[n] <= 'Z' ? type[n] - 'A' + 'a' : type[n]);
    lower[n] = 0;
    const char *t = lower + strspn(lower, " ");
    size_t len = strlen(CONTENT_JSON);
    if (strncmp(t, CONTENT_JSON, len) || (t[len] && t[len] != ';' && t[len] != ' '))
        return 0;
    const char *cs = strstr(t + len, "charset=");
    if (!cs)
        return 1;
    cs += 8 + (cs[8] == '"');
    return !strncmp(cs, "utf-8", 5) || !strncmp(cs, "utf8", 4);
}

/* A refusal decided on the headers; answered once the body (if any) is read, so the connection
 * can stay open. Returns 1. */
static int refuse(serve_request *r, unsigned status, const char *header_name, const char *header_value,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int refuse(serve_request *r, unsigned status, const char *header_name, const char *header_value,
                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    request_error(r, status, fmt, ap);
    va_end(ap);
    r->extra_name = header_name;
    snprintf(r->extra_value, sizeof r->extra_value, "%s", header_value ? header_value : "");
    r->stage = STAGE_REFUSED;
    return 1;
}

static int refuse_draining(serve_request *r)
{
    if (r->route != ROUTE_HEALTHZ)
        return refuse(r, 503, NULL, NULL, "the server is shutting down");
    r->status = 503;
    r->answer = v4r_strdup("{\"status\":\"draining\"}");
    r->stage = STAGE_REFUSED;
    return 1;
}

/* Admission on the route's own terms: token, rate, content type. 1 when refused. */
static int refused_by_api(serve_request *r)
{
    v4r_server *s = r->srv;
    struct MHD_Connection *c = r->conn;
    if (s->token && !token_matches(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"), s->token))
        return refuse(r, 401, "WWW-Authenticate", "Bearer realm=\"vlm4rec\"",
                      "missing or wrong bearer token (header Authorization: Bearer TOKEN)");
    long wait = limiter_take(&s->limiter, r->remote, v4r_now());
    if (wait > 0) {
        char secs[32];
        snprintf(secs, sizeof secs, "%ld", wait);
        return refuse(r, 429, "Retry-After", secs, "over the rate limit of %g requests per second for %s", s->o.rate,
                      r->remote);
    }
    const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (has_body(r->route) && !is_json_type(type))
        return refuse(r, 415, NULL, NULL, "Content-Type must be application/json, not %.200s", type ? type : "none");
    return 0;
}

/* 1 when the request is refused on its headers (r->stage is then STAGE_REFUSED). */
static int refused_on_headers(serve_request *r)
{
    if (atomic_load(&r->srv->draining) && r->route != ROUTE_METRICS)
        return refuse_draining(r);
    if (r->route == ROUTE_OTHER)
        return refuse(r, 404, NULL, NULL, "no route for %.16s %.400s", r->method, r->path);
    if (!method_allowed(r->route, r->method))
        return refuse(r, 405, "Allow", allowed_methods(r->route), "%s takes %s, not %.16s", r->path,
                      allowed_methods(r->route), r->method);
    return is_api(r->route) && refused_by_api(r);
}

/* The declared body is over the limit: answered at once, the body never read (MHD then closes). */
static int declared_too_large(serve_request *r)
{
    const char *length = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    int64_t n;
    if (!has_body(r->route) || !length || v4r_parse_i64(length, &n) || (uint64_t)n <= r->srv->o.max_body)
        return 0;
    r->status = 413;
    r->answer = error_body(413, "the body (%s bytes) is larger than %zu bytes", length, r->srv->o.max_body);
    return 1;
}

/* ---- the body ---- */

/* Takes a piece of the body: kept for the recommend route up to max_body, else discarded; MHD_NO
 * (close the connection) when a refused body goes on past its allowance. */
static enum MHD_Result take_body(serve_request *r, const char *data, size_t n)
{
    size_t max = r->srv->o.max_body;
    if (r->stage == STAGE_RECEIVING && has_body(r->route) && !r->too_large && r->n_body + n > max) {
        r->too_large = 1;
        r->discarded = r->n_body;
        free(r->body);
        r->body = NULL;
        r->n_body = r->cap_body = 0;
    }
    if (r->stage == STAGE_RECEIVING && has_body(r->route) && !r->too_large) {
        v4r_grow((void **)&r->body, &r->cap_body, r->n_body + n + 1, 1);
        memcpy(r->body + r->n_body, data, n);
        r->n_body += n;
        r->body[r->n_body] = 0;
        return MHD_YES;
    }
    r->discarded += n;
    return r->discarded > max + ((size_t)1 << 20) ? MHD_NO : MHD_YES;
}

/* ---- the end of the request ---- */

static enum MHD_Result enqueue(serve_request *r)
{
    r->stage = STAGE_QUEUED;
    MHD_suspend_connection(r->conn);
    queue_push(&r->srv->queue, r);
    return MHD_YES;
}

static enum MHD_Result finish_recommend(serve_request *r)
{
    if (r->too_large) {
        r->status = 413;
        r->answer = error_body(413, "the body is larger than %zu bytes", r->srv->o.max_body);
        return respond_answer(r);
    }
    if (request_parse_recommend(r, server_index(r->srv), r->srv->o.max_k))
        return respond_answer(r);
    if (!r->q.nprobe)
        r->q.nprobe = r->srv->o.nprobe;
    return enqueue(r);
}

static enum MHD_Result finish_similar(serve_request *r, const char *url)
{
    size_t np = strlen(SIMILAR_PREFIX), n = strlen(url) - np - strlen(SIMILAR_SUFFIX);
    char *id = v4r_strndup(url + np, n);
    const char *k = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "k");
    int rc = request_parse_similar(r, server_index(r->srv), id, k, r->srv->o.max_k);
    free(id);
    if (rc)
        return respond_answer(r);
    r->q.nprobe = r->srv->o.nprobe;
    return enqueue(r);
}

/* The write routes: answered on this thread once the change is logged and applied. */
static enum MHD_Result finish_write(serve_request *r, const char *url)
{
    if (r->too_large) {
        r->status = 413;
        r->answer = error_body(413, "the body is larger than %zu bytes", r->srv->o.max_body);
        return respond_answer(r);
    }
    if (r->route == ROUTE_ADD) {
        live_add(r);
    } else if (r->route == ROUTE_DELETE) {
        live_delete(r, url + strlen(SIMILAR_PREFIX));
    } else {
        size_t np = strlen(USERS_PREFIX), n = strlen(url) - np - strlen(EVENTS_SUFFIX);
        char *user = v4r_strndup(url + np, n);
        live_events(r, user);
        free(user);
    }
    if (r->status == 503) {
        r->extra_name = "Retry-After";
        snprintf(r->extra_value, sizeof r->extra_value, "1");
    }
    return respond_answer(r);
}

static enum MHD_Result finish(serve_request *r, const char *url)
{
    switch (r->route) {
    case ROUTE_RECOMMEND: return finish_recommend(r);
    case ROUTE_SIMILAR: return finish_similar(r, url);
    case ROUTE_ADD:
    case ROUTE_DELETE:
    case ROUTE_EVENTS: return finish_write(r, url);
    case ROUTE_HEALTHZ: r->h = server_index(r->srv); return answer_healthz(r);
    default: r->h = server_index(r->srv); return answer_metrics(r);
    }
}

enum MHD_Result handler_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *data, size_t *data_size, void **con_cls)
{
    (void)version;
    v4r_server *s = cls;
    serve_request *r = *con_cls;
    if (!r) {
        r = *con_cls = request_new(s, c, url, method);
        if (!refused_on_headers(r) && declared_too_large(r))
            return respond_answer(r);
        return MHD_YES;
    }
    if (*data_size) {
        enum MHD_Result ret = r->stage == STAGE_RECEIVING || r->stage == STAGE_REFUSED ? take_body(r, data, *data_size)
                                                                                      : MHD_YES;
        *data_size = 0;
        return ret;
    }
    if (r->stage == STAGE_RECEIVING)
        return finish(r, url);
    if (r->stage == STAGE_ANSWERED || r->stage == STAGE_REFUSED)
        return respond_answer(r);
    return MHD_YES; /* queued, or answered already */
}

void handler_resume(serve_request *r)
{
    r->stage = STAGE_ANSWERED;
    MHD_resume_connection(r->conn);
}

void handler_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)c, (void)toe;
    v4r_server *s = cls;
    serve_request *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    if (r->stage != STAGE_RESPONDED)
        metrics_inflight(&s->metrics, -1);
    request_free(r);
    pthread_mutex_lock(&s->open_mu);
    if (--s->open_requests == 0)
        pthread_cond_broadcast(&s->open_cv);
    pthread_mutex_unlock(&s->open_mu);
}

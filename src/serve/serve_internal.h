/* serve: what the server's parts share: the refcounted index holder, one request's state, the
 * batch queue, the metrics, the rate limiter and the server itself. */
#ifndef V4R_SERVE_INTERNAL_H
#define V4R_SERVE_INTERNAL_H

#include <stdarg.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "vlm4rec/index.h"
#include "vlm4rec/serve.h"

/* ---- the index in service: refcounted, so a swap never closes it under a request ---- */

typedef struct {
    v4r_live *live; /* the index and its live changes */
    v4r_index *ix;  /* v4r_live_base(live) */
    atomic_long refs;
} index_holder;

index_holder *holder_new(v4r_live *live); /* one reference, the server's */
void holder_put(index_holder *h);         /* the last put closes the index */

/* ---- routes ---- */

enum { ROUTE_RECOMMEND, ROUTE_SIMILAR, ROUTE_HEALTHZ, ROUTE_METRICS, ROUTE_OTHER, ROUTE_ADD, ROUTE_DELETE,
       ROUTE_EVENTS, NROUTES };
const char *route_name(int route);

/* ---- one request ---- */

enum { STAGE_RECEIVING, STAGE_REFUSED, STAGE_QUEUED, STAGE_ANSWERED, STAGE_RESPONDED };

typedef struct serve_request {
    struct serve_request *next; /* queue link */
    struct v4r_server *srv;
    struct MHD_Connection *conn;
    int route, stage;
    double t0;
    char remote[64], method[16];
    char *path;
    /* the body */
    char *body;
    size_t n_body, cap_body, discarded;
    int too_large;
    /* the query, once parsed: ids and vector point into the arrays below or the index */
    index_holder *h;
    v4r_index_query q;
    int32_t *ids; /* history (when given), exclude and candidates, in one block */
    int32_t *user_history; /* a known user's history (stored, then events) */
    float *vector;
    json_t *unknown;  /* ids not in the index */
    char *user, *item; /* echoed */
    size_t history_length;
    /* the answer */
    unsigned status;
    char *answer;
    const char *extra_name; /* one more header of the answer (Allow, Retry-After, ...) or NULL */
    char extra_value[64];
    size_t batch;
} serve_request;

/* Parses the body of POST /v1/recommend against h into r->q (r->h takes over
 * the caller's reference to h);
 * on error sets r->status and r->answer to an error and returns -1. */
int request_parse_recommend(serve_request *r, index_holder *h, size_t max_k);
/* The same for GET /v1/items/{id}/similar (id decoded, k as the query string gave it or NULL). */
int request_parse_similar(serve_request *r, index_holder *h, const char *id, const char *k_text, size_t max_k);
/* Writes the answer of a searched query: items and scores of one row (kmax wide). */
void request_answer(serve_request *r, const int32_t *items, const float *scores);
/* Frees the query's arrays and drops its index reference. */
void request_release_query(serve_request *r);
/* {"error":{"status":N,"message":"..."}} as a fresh string. */
char *error_body(unsigned status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sets r's status and its answer to the error body of the formatted message (freeing any answer). */
void request_error(serve_request *r, unsigned status, const char *fmt, va_list ap);
/* request_error with a printf format; returns -1 (for "return serve_fail(...)"). */
int serve_fail(serve_request *r, unsigned status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* s (n bytes) with every byte that does not start a valid UTF-8 character (and NUL) as U+FFFD;
 * caller frees. */
char *utf8_clean(const char *s, size_t n);
/* The deepest nesting of arrays and objects in a JSON text (strings skipped). */
size_t json_depth(const char *text, size_t n);

/* ---- the batch queue and its workers ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_request *head, *tail;
    int stop;
    size_t max_batch, n_workers;
    pthread_t *workers;
} batch_queue;

int queue_start(struct v4r_server *s, size_t workers, size_t max_batch, v4r_err *err);
void queue_push(batch_queue *q, serve_request *r);
void queue_stop(batch_queue *q); /* after the queue ran empty: joins the workers */

/* ---- metrics ---- */

#define N_DURATION_BUCKETS 12
#define N_BATCH_BUCKETS 12

typedef struct {
    pthread_mutex_t mu;
    uint64_t requests[NROUTES][600]; /* by HTTP status */
    uint64_t duration_buckets[NROUTES][N_DURATION_BUCKETS];
    uint64_t duration_count[NROUTES];
    double duration_sum[NROUTES];
    uint64_t batch_buckets[N_BATCH_BUCKETS], batch_count, batch_sum;
    uint64_t reloads_ok, reloads_error;
    long inflight;
} serve_metrics;

void metrics_init(serve_metrics *m);
void metrics_free(serve_metrics *m);
void metrics_request(serve_metrics *m, int route, unsigned status, double seconds);
void metrics_batch(serve_metrics *m, size_t size);
void metrics_reload(serve_metrics *m, int ok);
void metrics_inflight(serve_metrics *m, long delta);
/* The Prometheus text exposition (0.0.4) of everything, with the index in service. */
char *metrics_text(serve_metrics *m, const v4r_live *live);

/* ---- rate limits and tokens ---- */

typedef struct {
    double tokens, last;
} token_bucket;

typedef struct {
    pthread_mutex_t mu;
    double rate, burst;
    v4r_strmap index; /* client address -> bucket */
    token_bucket *buckets;
    size_t n, cap;
} rate_limiter;

void limiter_init(rate_limiter *l, double rate, double burst);
void limiter_free(rate_limiter *l);
/* Takes one token for the client at time now: 0 when allowed, else the whole seconds to wait. */
long limiter_take(rate_limiter *l, const char *client, double now);
/* 1 when header is "Bearer TOKEN" for this token (compared in constant time). */
int token_matches(const char *header, const char *token);

/* ---- the access log ---- */

typedef struct {
    pthread_mutex_t mu;
    FILE *fp;
    int owned;
} access_log;

int access_log_open(access_log *a, const char *path, v4r_err *err);
void access_log_close(access_log *a);
void access_log_write(access_log *a, const serve_request *r, size_t bytes, double seconds, const char *version);

/* ---- the server ---- */

struct v4r_server {
    v4r_serve_opts o;
    char *index_path, *host, *token;
    struct MHD_Daemon *d;
    int port;
    /* the index in service */
    pthread_mutex_t ix_mu;
    index_holder *current;
    /* the reloader */
    pthread_t reloader;
    pthread_mutex_t reload_mu;
    pthread_cond_t reload_cv;
    int reload_wanted, reload_stop;
    dev_t file_dev;
    ino_t file_ino;
    off_t file_size;
    struct timespec file_mtime;
    /* requests received and not yet completed, for the drain */
    pthread_mutex_t open_mu;
    pthread_cond_t open_cv;
    long open_requests;
    atomic_int draining;
    batch_queue queue;
    serve_metrics metrics;
    rate_limiter limiter;
    access_log log;
    /* live additions: one change at a time, never across an index swap */
    pthread_mutex_t write_mu;
    struct v4r_encoder *encoder; /* the index's encoder, NULL when it names none */
    pthread_mutex_t encoder_mu;
    char *text_template;         /* the index's text template, or NULL */
};

/* The write routes (live.c): POST /v1/items, DELETE /v1/items/ID, POST /v1/users/ID/events; the
 * answer in r->status / r->answer. */
void live_add(serve_request *r);
void live_delete(serve_request *r, const char *id);
void live_events(serve_request *r, const char *user);
/* Loads the encoder the index names (its meta's "encoder") when it names one. */
int live_load_encoder(struct v4r_server *s, const v4r_index *ix, v4r_err *err);

index_holder *server_index(struct v4r_server *s); /* a reference to the index in service */

/* The MHD callbacks (handler.c). */
enum MHD_Result handler_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *data, size_t *data_size, void **con_cls);
void handler_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe);
/* Called by a worker once r->status and r->answer are set: lets MHD queue the answer. */
void handler_resume(serve_request *r);

#endif

/* The service's metrics: request counts by route and status, request durations and batch sizes as
 * histograms, index reloads, requests in flight; written as Prometheus text exposition 0.0.4. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve_internal.h"

static const double duration_le[N_DURATION_BUCKETS - 1] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                           0.05,   0.1,   0.25,   0.5,   1};
static const double batch_le[N_BATCH_BUCKETS - 1] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

const char *route_name(int route)
{
    static const char *const names[NROUTES] = {"recommend", "similar", "healthz", "metrics",
                                               "other",     "items",   "delete",  "events"};
    return route >= 0 && route < NROUTES ? names[route] : "other";
}

void metrics_init(serve_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void metrics_free(serve_metrics *m) { pthread_mutex_destroy(&m->mu); }

static size_t bucket_of(const double *le, size_t n, double v)
{
    size_t b = 0;
    while (b < n && v > le[b])
        b++;
    return b; /* n: +Inf */
}

void metrics_request(serve_metrics *m, int route, unsigned status, double seconds)
{
    size_t b = bucket_of(duration_le, N_DURATION_BUCKETS - 1, seconds);
    pthread_mutex_lock(&m->mu);
    m->requests[route][status < 600 ? status : 599]++;
    m->duration_buckets[route][b]++;
    m->duration_count[route]++;
    m->duration_sum[route] += seconds;
    pthread_mutex_unlock(&m->mu);
}

void metrics_batch(serve_metrics *m, size_t size)
{
    size_t b = bucket_of(batch_le, N_BATCH_BUCKETS - 1, (double)size);
    pthread_mutex_lock(&m->mu);
    m->batch_buckets[b]++;
    m->batch_count++;
    m->batch_sum += size;
    pthread_mutex_unlock(&m->mu);
}

void metrics_reload(serve_metrics *m, int ok)
{
    pthread_mutex_lock(&m->mu);
    if (ok)
        m->reloads_ok++;
    else
        m->reloads_error++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_inflight(serve_metrics *m, long delta)
{
    pthread_mutex_lock(&m->mu);
    m->inflight += delta;
    pthread_mutex_unlock(&m->mu);
}

/* A growing text buffer. */
typedef struct {
    char *s;
    size_t n, cap;
} text_buf;

static void put(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text_buf *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int need = vsnprintf(t->s + t->n, t->cap - t->n, fmt, ap);
        va_end(ap);
        if ((size_t)need < t->cap - t->n) {
            t->n += (size_t)need;
            return;
        }
        v4r_grow((void **)&t->s, &t->cap, t->n + (size_t)need + 1, 1);
    }
}

/* A label value with \ " and newline escaped. */
static char *label_value(const char *s)
{
    char *out = v4r_malloc(2 * strlen(s) + 1), *o = out;
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            *o++ = '\\', *o++ = *s;
        else if (*s == '\n')
            *o++ = '\\', *o++ = 'n';
        else
            *o++ = *s;
    }
    *o = 0;
    return out;
}

static void put_requests(text_buf *t, const serve_metrics *m)
{
    put(t, "# HELP vlm4rec_requests_total HTTP requests answered, by route and status.\n"
           "# TYPE vlm4rec_requests_total counter\n");
    for (int r = 0; r < NROUTES; r++)
        for (int st = 0; st < 600; st++)
            if (m->requests[r][st])
                put(t, "vlm4rec_requests_total{route=\"%s\",status=\"%d\"} %llu\n", route_name(r), st,
                    (unsigned long long)m->requests[r][st]);
}

static void put_durations(text_buf *t, const serve_metrics *m)
{
    put(t, "# HELP vlm4rec_request_duration_seconds Time from a request's headers to its answer being queued.\n"
           "# TYPE vlm4rec_request_duration_seconds histogram\n");
    for (int r = 0; r < NROUTES; r++) {
        if (!m->duration_count[r])
            continue;
        uint64_t acc = 0;
        for (size_t b = 0; b < N_DURATION_BUCKETS; b++) {
            acc += m->duration_buckets[r][b];
            if (b + 1 < N_DURATION_BUCKETS)
                put(t, "vlm4rec_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n", route_name(r),
                    duration_le[b], (unsigned long long)acc);
            else
                put(t, "vlm4rec_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", route_name(r),
                    (unsigned long long)acc);
        }
        put(t, "vlm4rec_request_duration_seconds_sum{route=\"%s\"} %.9g\n", route_name(r), m->duration_sum[r]);
        put(t, "vlm4rec_request_duration_seconds_count{route=\"%s\"} %llu\n", route_name(r),
            (unsigned long long)m->duration_count[r]);
    }
}

static void put_batches(text_buf *t, const serve_metrics *m)
{
    put(t, "# HELP vlm4rec_batch_size Queries answered by one search.\n# TYPE vlm4rec_batch_size histogram\n");
    uint64_t acc = 0;
    for (size_t b = 0; b < N_BATCH_BUCKETS; b++) {
        acc += m->batch_buckets[b];
        if (b + 1 < N_BATCH_BUCKETS)
            put(t, "vlm4rec_batch_size_bucket{le=\"%g\"} %llu\n", batch_le[b], (unsigned long long)acc);
        else
            put(t, "vlm4rec_batch_size_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)acc);
    }
    put(t, "vlm4rec_batch_size_sum %llu\nvlm4rec_batch_size_count %llu\n", (unsigned long long)m->batch_sum,
        (unsigned long long)m->batch_count);
}

static void put_index(text_buf *t, const serve_metrics *m, const v4r_index *ix)
{
    char *version = label_value(v4r_index_version(ix));
    put(t, "# HELP vlm4rec_index_info The index in service.\n# TYPE vlm4rec_index_info gauge\n"
           "vlm4rec_index_info{version=\"%s\",storage=\"%s\"} 1\n",
        version, v4r_index_dtype_name(v4r_index_storage(ix)));
    free(version);
    put(t, "# HELP vlm4rec_index_items Items in the index in service.\n# TYPE vlm4rec_index_items gauge\n"
           "vlm4rec_index_items %zu\n",
        v4r_index_n_items(ix));
    put(t, "# HELP vlm4rec_index_users Users with a stored history in the index in service.\n"
           "# TYPE vlm4rec_index_users gauge\nvlm4rec_index_users %zu\n",
        v4r_index_n_users(ix));
    put(t, "# HELP vlm4rec_index_reloads_total Index reloads, by result.\n# TYPE vlm4rec_index_reloads_total counter\n"
           "vlm4rec_index_reloads_total{result=\"ok\"} %llu\nvlm4rec_index_reloads_total{result=\"error\"} %llu\n",
        (unsigned long long)m->reloads_ok, (unsigned long long)m->reloads_error);
}

static void put_live(text_buf *t, const v4r_live *live)
{
    put(t, "# HELP vlm4rec_live_items Items added live since the index was built.\n"
           "# TYPE vlm4rec_live_items gauge\nvlm4rec_live_items %zu\n",
        v4r_live_n_added(live));
    put(t, "# HELP vlm4rec_live_deletions Items deleted live since the index was built.\n"
           "# TYPE vlm4rec_live_deletions gauge\nvlm4rec_live_deletions %zu\n",
        v4r_live_n_deleted(live));
    put(t, "# HELP vlm4rec_live_log_bytes The length of the index's live-additions log.\n"
           "# TYPE vlm4rec_live_log_bytes gauge\nvlm4rec_live_log_bytes %llu\n",
        (unsigned long long)v4r_live_log_bytes(live));
}

char *metrics_text(serve_metrics *m, const v4r_live *live)
{
    const v4r_index *ix = v4r_live_base(live);
    text_buf t = {v4r_malloc(4096), 0, 4096};
    pthread_mutex_lock(&m->mu);
    put_requests(&t, m);
    put_durations(&t, m);
    put_batches(&t, m);
    put_index(&t, m, ix);
    put_live(&t, live);
    put(&t, "# HELP vlm4rec_inflight_requests Requests received and not yet answered.\n"
            "# TYPE vlm4rec_inflight_requests gauge\nvlm4rec_inflight_requests %ld\n",
        m->inflight);
    pthread_mutex_unlock(&m->mu);
    return t.s;
}

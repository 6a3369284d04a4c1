/* The server's life: options, the index holder and its swap, the background reloader and the file
 * watch, the HTTP daemon (epoll, a small I/O thread pool, suspended connections while a query
 * waits for its batch), and the drain that answers everything received before stopping. */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serve_internal.h"
#include "vlm4rec/text.h"

#define HEADER_MEMORY ((size_t)32 << 10) /* per connection: request line, headers, buffers */
#define DRAIN_GRACE_S 5.0                 /* past the connection timeout, the drain stops waiting */

void v4r_serve_defaults(v4r_serve_opts *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->max_batch = 64;
    o->workers = 1;
    o->max_body = 65536;
    o->max_k = 1000;
    o->timeout_s = 10;
    o->max_connections = 1000;
}

int v4r_server_port(const v4r_server *s) { return s->port; }

/* ---- the index holder ---- */

index_holder *holder_new(v4r_live *live)
{
    index_holder *h = v4r_calloc(1, sizeof *h);
    h->live = live;
    h->ix = v4r_live_base(live);
    atomic_init(&h->refs, 1);
    return h;
}

void holder_put(index_holder *h)
{
    if (h && atomic_fetch_sub(&h->refs, 1) == 1) {
        v4r_live_close(h->live);
        free(h);
    }
}

index_holder *server_index(v4r_server *s)
{
    pthread_mutex_lock(&s->ix_mu);
    index_holder *h = s->current;
    atomic_fetch_add(&h->refs, 1);
    pthread_mutex_unlock(&s->ix_mu);
    return h;
}

static void swap_index(v4r_server *s, v4r_live *live)
{
    index_holder *h = holder_new(live);
    pthread_mutex_lock(&s->ix_mu);
    index_holder *old = s->current;
    s->current = h;
    pthread_mutex_unlock(&s->ix_mu);
    holder_put(old); /* closed once the requests that hold it are answered */
}

/* ---- reloads ---- */

/* Remembers the file's identity; 1 when it differs from the one remembered. */
static int note_file(v4r_server *s)
{
    struct stat st;
    if (stat(s->index_path, &st) != 0)
        return 0;
    int changed = st.st_dev != s->file_dev || st.st_ino != s->file_ino || st.st_size != s->file_size ||
                  st.st_mtim.tv_sec != s->file_mtime.tv_sec || st.st_mtim.tv_nsec != s->file_mtime.tv_nsec;
    s->file_dev = st.st_dev;
    s->file_ino = st.st_ino;
    s->file_size = st.st_size;
    s->file_mtime = st.st_mtim;
    return changed;
}

/* Opens the index and replays its live log. */
static int open_live(const char *path, v4r_live **out, v4r_err *err)
{
    v4r_index *ix = NULL;
    int rc = v4r_index_open(path, 1, &ix, err);
    if (rc)
        return rc;
    char *log = v4r_live_log_path(path);
    v4r_live_replay rep;
    rc = v4r_live_open(ix, log, out, &rep, err);
    if (!rc && rep.records)
        v4r_info("serve: %s: %zu live changes replayed (%llu bytes)", log, rep.records,
                 (unsigned long long)rep.log_bytes);
    free(log);
    return rc;
}

static void reload_once(v4r_server *s)
{
    pthread_mutex_lock(&s->reload_mu);
    note_file(s);
    pthread_mutex_unlock(&s->reload_mu);
    v4r_live *live = NULL;
    v4r_err err = {0};
    pthread_mutex_lock(&s->write_mu); /* no change between the replay and the swap */
    if (open_live(s->index_path, &live, &err) != V4R_OK) {
        pthread_mutex_unlock(&s->write_mu);
        metrics_reload(&s->metrics, 0);
        index_holder *h = server_index(s);
        v4r_warn("serve: reload failed, still serving index %s: %s", v4r_index_version(h->ix), err.msg);
        holder_put(h);
        return;
    }
    v4r_info("serve: reloaded %s: index %s, %zu items", s->index_path, v4r_index_version(v4r_live_base(live)),
             v4r_live_n_items(live));
    swap_index(s, live);
    pthread_mutex_unlock(&s->write_mu);
    metrics_reload(&s->metrics, 1);
}

static void *reloader_main(void *arg)
{
    v4r_server *s = arg;
    pthread_mutex_lock(&s->reload_mu);
    for (;;) {
        while (!s->reload_wanted && !s->reload_stop)
            pthread_cond_wait(&s->reload_cv, &s->reload_mu);
        if (s->reload_stop)
            break;
        s->reload_wanted = 0;
        pthread_mutex_unlock(&s->reload_mu);
        reload_once(s);
        pthread_mutex_lock(&s->reload_mu);
    }
    pthread_mutex_unlock(&s->reload_mu);
    return NULL;
}

void v4r_server_reload(v4r_server *s)
{
    pthread_mutex_lock(&s->reload_mu);
    s->reload_wanted = 1;
    pthread_cond_signal(&s->reload_cv);
    pthread_mutex_unlock(&s->reload_mu);
}

int v4r_server_check_file(v4r_server *s)
{
    pthread_mutex_lock(&s->reload_mu);
    int changed = note_file(s);
    pthread_mutex_unlock(&s->reload_mu);
    if (changed)
        v4r_server_reload(s);
    return changed;
}

/* ---- the daemon ---- */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = 0;
    v4r_debug("serve: http: %s", line);
}

/* Connections at most: the option, kept under the open-file limit. */
static unsigned connection_limit(size_t wanted)
{
    struct rlimit rl;
    size_t limit = wanted;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < limit + 64)
        limit = rl.rlim_cur > 128 ? rl.rlim_cur - 64 : 64;
    return (unsigned)limit;
}

static unsigned io_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long n = cpus / 4;
    return (unsigned)(n < 2 ? 2 : n > 4 ? 4 : n);
}

static int start_daemon(v4r_server *s, v4r_err *err)
{
    struct sockaddr_storage sa;
    int v6 = 0;
    int rc = v4r_listen_address(s->host, s->o.port, "serve: --host", &sa, &v6, err);
    if (rc)
        return rc;
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(
        flags, (uint16_t)s->o.port, NULL, NULL, handler_access, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, io_threads(), MHD_OPTION_CONNECTION_LIMIT, connection_limit(s->o.max_connections),
        MHD_OPTION_CONNECTION_TIMEOUT, s->o.timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, HEADER_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, handler_completed, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (!s->d) {
        int e = errno;
        return v4r_fail(err, V4R_EIO, "serve: cannot listen on %s port %d%s%s", s->host, s->o.port, e ? ": " : "",
                        e ? strerror(e) : "");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? (int)info->port : s->o.port;
    return V4R_OK;
}

/* ---- start and stop ---- */

static int check_opts(const v4r_serve_opts *o, v4r_err *err)
{
    if (!o->index_path)
        return v4r_fail(err, V4R_EUSAGE, "serve: no index file");
    if (o->port < 0 || o->port > 65535)
        return v4r_fail(err, V4R_EUSAGE, "serve: port %d is out of range 0..65535", o->port);
    if (!o->max_batch || !o->max_body || !o->max_k || !o->timeout_s || !o->max_connections)
        return v4r_fail(err, V4R_EUSAGE, "serve: max batch, max body, max k, timeout and connections must be positive");
    if (!(o->rate >= 0) || !(o->burst >= 0))
        return v4r_fail(err, V4R_EUSAGE, "serve: rate and burst must not be negative");
    if (o->burst > 0 && o->burst < 1)
        return v4r_fail(err, V4R_EUSAGE, "serve: a burst below 1 would refuse every request");
    if (o->token && !*o->token)
        return v4r_fail(err, V4R_EUSAGE, "serve: the bearer token is empty");
    return V4R_OK;
}

static v4r_server *server_new(const v4r_serve_opts *o)
{
    v4r_server *s = v4r_calloc(1, sizeof *s);
    s->o = *o;
    s->index_path = v4r_strdup(o->index_path);
    s->host = v4r_strdup(o->host && *o->host ? o->host : "127.0.0.1");
    s->token = o->token ? v4r_strdup(o->token) : NULL;
    s->o.index_path = s->index_path;
    s->o.host = s->host;
    s->o.token = s->token;
    s->o.access_log = NULL;
    if (!s->o.workers)
        s->o.workers = 1;
    if (!s->o.threads) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        s->o.threads = cpus > 0 ? (size_t)cpus : 1;
    }
    pthread_mutex_init(&s->ix_mu, NULL);
    pthread_mutex_init(&s->reload_mu, NULL);
    pthread_cond_init(&s->reload_cv, NULL);
    pthread_mutex_init(&s->open_mu, NULL);
    pthread_cond_init(&s->open_cv, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    pthread_mutex_init(&s->encoder_mu, NULL);
    metrics_init(&s->metrics);
    limiter_init(&s->limiter, o->rate, o->burst);
    return s;
}

static void server_free(v4r_server *s)
{
    holder_put(s->current);
    v4r_encoder_free(s->encoder);
    free(s->text_template);
    pthread_mutex_destroy(&s->write_mu);
    pthread_mutex_destroy(&s->encoder_mu);
    access_log_close(&s->log);
    limiter_free(&s->limiter);
    metrics_free(&s->metrics);
    pthread_mutex_destroy(&s->ix_mu);
    pthread_mutex_destroy(&s->reload_mu);
    pthread_cond_destroy(&s->reload_cv);
    pthread_mutex_destroy(&s->open_mu);
    pthread_cond_destroy(&s->open_cv);
    free(s->index_path);
    free(s->host);
    free(s->token);
    free(s);
}

int v4r_server_start(const v4r_serve_opts *o, v4r_server **out, v4r_err *err)
{
    *out = NULL;
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    v4r_live *live = NULL;
    if ((rc = open_live(o->index_path, &live, err)) != V4R_OK)
        return rc;
    v4r_server *s = server_new(o);
    s->current = holder_new(live);
    note_file(s);
    if ((rc = live_load_encoder(s, v4r_live_base(live), err)) != V4R_OK) {
        server_free(s);
        return rc;
    }
    if ((rc = access_log_open(&s->log, o->access_log, err)) != V4R_OK) {
        server_free(s);
        return rc;
    }
    if ((rc = queue_start(s, s->o.workers, s->o.max_batch, err)) != V4R_OK) {
        queue_stop(&s->queue);
        server_free(s);
        return rc;
    }
    if (pthread_create(&s->reloader, NULL, reloader_main, s) != 0) {
        queue_stop(&s->queue);
        server_free(s);
        return v4r_fail(err, V4R_EINTERNAL, "serve: cannot start the reloader thread");
    }
    if ((rc = start_daemon(s, err)) != V4R_OK) {
        s->d = NULL;
        v4r_server_drain_and_free(s);
        return rc;
    }
    *out = s;
    return V4R_OK;
}

/* Waits until every request received is completed, or the slowest client could not take longer. */
static void wait_open_requests(v4r_server *s)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)(2 * s->o.timeout_s + DRAIN_GRACE_S);
    pthread_mutex_lock(&s->open_mu);
    while (s->open_requests > 0 && pthread_cond_timedwait(&s->open_cv, &s->open_mu, &deadline) != ETIMEDOUT)
        ;
    long left = s->open_requests;
    pthread_mutex_unlock(&s->open_mu);
    if (left)
        v4r_warn("serve: stopping with %ld requests still open (clients too slow)", left);
}

void v4r_server_drain_and_free(v4r_server *s)
{
    if (!s)
        return;
    atomic_store(&s->draining, 1);
    if (s->d) {
        MHD_socket fd = MHD_quiesce_daemon(s->d);
        if (fd != MHD_INVALID_SOCKET)
            close(fd); /* new connections are refused from here on */
        wait_open_requests(s);
        MHD_stop_daemon(s->d);
    }
    queue_stop(&s->queue);
    pthread_mutex_lock(&s->reload_mu);
    s->reload_stop = 1;
    pthread_cond_signal(&s->reload_cv);
    pthread_mutex_unlock(&s->reload_mu);
    pthread_join(s->reloader, NULL);
    server_free(s);
}

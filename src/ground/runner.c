/* ground: the grounding job runner — one event loop over libcurl's multi interface that keeps every
 * endpoint's request slots full, sends each item to the least-busy healthy endpoint, retries
 * transient faults with backoff, rests endpoints that keep failing, and records every end in the
 * semantic cache as it happens. */
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "runner_internal.h"

#define FAULTS_TO_REST 3        /* consecutive endpoint faults before it rests */
#define REST_FIRST_S 5.0        /* first rest; doubles up to REST_MAX_S */
#define REST_MAX_S 300.0
#define ANSWER_LIMIT (16u << 20) /* an answer larger than this is not a description */

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

void v4r_ground_defaults(v4r_ground_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_tokens = 150;
    o->temperature = 0;
    o->timeout_s = 120;
    o->retries = 5;
    o->backoff_s = 1;
    o->backoff_max_s = 60;
    o->max_image_bytes = 20u << 20;
    o->progress = 1;
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    v4r_buf *b = ctx;
    size_t len = size * n;
    if (b->limit && b->len + len > b->limit) {
        b->overflow = 1;
        return 0; /* aborts the transfer */
    }
    v4r_grow((void **)&b->data, &b->cap, b->len + len + 1, 1);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
    v4r_job *j = ctx;
    size_t len = size * n;
    if (len > 12 && !strncasecmp(data, "retry-after:", 12)) {
        size_t v = len - 12;
        if (v >= sizeof j->retry_after)
            v = sizeof j->retry_after - 1;
        memcpy(j->retry_after, data + 12, v);
        j->retry_after[v] = 0;
        j->retry_after[strcspn(j->retry_after, "\r\n")] = 0;
    }
    return len;
}

/* Easy handles are reused (curl_easy_reset keeps their buffers and caches): creating one per
 * request costs more than the request itself on a busy client. */
static CURL *handle_get(v4r_run *r)
{
    if (r->n_pool)
        return r->pool[--r->n_pool];
    return curl_easy_init();
}

static void handle_put(v4r_run *r, CURL *e)
{
    curl_easy_reset(e);
    v4r_grow((void **)&r->pool, &r->pool_cap, r->n_pool + 1, sizeof(CURL *));
    r->pool[r->n_pool++] = e;
}

CURL *v4r_run_transfer(v4r_run *r, v4r_job *j, int ep)
{
    CURL *e = handle_get(r);
    if (!e)
        return NULL;
    free(j->resp.data);
    memset(&j->resp, 0, sizeof j->resp);
    j->retry_after[0] = 0;
    j->errbuf[0] = 0;
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &j->resp);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->o->timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(r->o->timeout_s < 10 ? r->o->timeout_s * 1000 : 10000));
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (j->fetching) {
        j->resp.limit = r->o->max_image_bytes;
        curl_easy_setopt(e, CURLOPT_URL, r->ds.item_image[j->item]);
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->o->max_image_bytes);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "vlm4rec/" V4R_VERSION);
    } else {
        j->resp.limit = ANSWER_LIMIT;
        curl_easy_setopt(e, CURLOPT_URL, r->ep[ep].chat_url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(j->body));
    }
    return e;
}

/* ---- endpoints ---- */

static int ep_limit(const v4r_ep_state *e, double now)
{
    if (now < e->rest_until)
        return 0;
    return e->probing ? 1 : e->concurrency;
}

/* The least-busy endpoint with a free slot (in-flight share of its slots), or -1. */
static int pick_endpoint(v4r_run *r, double now)
{
    int best = -1;
    double best_load = 0;
    for (size_t k = 0; k < r->n_ep; k++) {
        int lim = ep_limit(&r->ep[k], now);
        if (r->ep[k].in_flight >= lim)
            continue;
        double load = (double)r->ep[k].in_flight / r->ep[k].concurrency;
        if (best < 0 || load < best_load) {
            best = (int)k;
            best_load = load;
        }
    }
    return best;
}

static int free_slots(v4r_run *r, double now)
{
    int n = 0;
    for (size_t k = 0; k < r->n_ep; k++) {
        int lim = ep_limit(&r->ep[k], now);
        n += lim > r->ep[k].in_flight ? lim - r->ep[k].in_flight : 0;
    }
    return n;
}

static void ep_fault(v4r_run *r, v4r_ep_state *e, double now)
{
    e->faults++;
    if (++e->consecutive_faults < FAULTS_TO_REST && !e->probing)
        return;
    e->rest_s = e->rest_s ? e->rest_s * 2 : REST_FIRST_S;
    if (e->rest_s > REST_MAX_S)
        e->rest_s = REST_MAX_S;
    e->rest_until = now + e->rest_s;
    e->probing = 1; /* after the rest, one request at a time until one succeeds */
    e->consecutive_faults = 0;
    v4r_info("endpoint %s keeps failing; resting it for %.0f s", e->chat_url, e->rest_s);
}

static void ep_success(v4r_ep_state *e)
{
    e->ok++;
    e->consecutive_faults = 0;
    e->probing = 0;
    e->rest_s = 0;
}

/* ---- the loop ---- */

static int start_job(v4r_run *r, v4r_job *j, int ep, double now)
{
    CURL *e = v4r_run_transfer(r, j, ep);
    if (!e)
        return -1;
    j->easy = e;
    j->stage = JOB_SEND;
    j->endpoint = ep;
    j->sent_at = now;
    j->attempts++;
    if (!j->fetching) {
        r->ep[ep].in_flight++;
        r->ep[ep].sent++;
        r->sum->requests++;
    }
    curl_multi_add_handle(r->multi, e);
    return 0;
}

/* Image downloads in flight. */
static size_t fetching_in_flight(const v4r_run *r)
{
    size_t n = 0;
    for (size_t k = 0; k < r->n_jobs; k++)
        n += r->jobs[k]->stage == JOB_SEND && r->jobs[k]->fetching;
    return n;
}

/* Sends every waiting job that is due and has somewhere to go, oldest first. */
static void dispatch(v4r_run *r, double now)
{
    size_t fetching = fetching_in_flight(r);
    for (size_t k = 0; k < r->n_jobs; k++) {
        v4r_job *j = r->jobs[k];
        if (j->stage != JOB_WAIT || j->not_before > now)
            continue;
        if (j->fetching) { /* downloads: at most as many at once as request slots */
            if (fetching >= r->max_jobs / 2)
                continue;
            if (!start_job(r, j, -1, now))
                fetching++;
            continue;
        }
        int ep = pick_endpoint(r, now);
        if (ep < 0)
            break;
        start_job(r, j, ep, now);
    }
}

static size_t due_waiting(v4r_run *r, double now)
{
    size_t n = 0;
    for (size_t k = 0; k < r->n_jobs; k++)
        n += r->jobs[k]->stage == JOB_WAIT && r->jobs[k]->not_before <= now;
    return n;
}

/* Takes new items while request slots would otherwise stay empty, and keeps a few requests
 * prepared ahead so that a slot that frees up is refilled at once. */
static int fill(v4r_run *r, double now, v4r_err *err)
{
    while (r->next < r->plan.n && r->n_jobs < r->max_jobs && !stop_signal) {
        int slots = free_slots(r, now);
        if (!slots && !r->n_jobs)
            break; /* every endpoint is resting */
        if ((size_t)slots + r->prefetch <= due_waiting(r, now))
            break;
        int rc = v4r_run_prepare_next(r, err);
        if (rc)
            return rc;
        /* drop jobs that ended at once (skipped, bad image) */
        if (r->jobs[r->n_jobs - 1]->stage == JOB_DONE)
            v4r_job_free(r->jobs[--r->n_jobs]);
    }
    return 0;
}

static int retry_or_fail(v4r_run *r, v4r_job *j, const v4r_answer *a, double now, v4r_err *err)
{
    if (a->kind == V4R_ANSWER_PERMANENT)
        return v4r_run_finish(r, j, NULL, a->error, 1, err);
    if (j->attempts > r->o->retries) {
        char msg[1200];
        snprintf(msg, sizeof msg, "gave up after %d attempts: %s", j->attempts, a->error);
        return v4r_run_finish(r, j, NULL, msg, 0, err);
    }
    double wait = v4r_run_backoff(r, j->attempts);
    if (a->retry_after > wait)
        wait = a->retry_after;
    j->stage = JOB_WAIT;
    j->not_before = now + wait;
    r->sum->retries++;
    v4r_debug("%s: %s; retrying in %.1f s", r->ds.item_id[j->item], a->error, wait);
    return 0;
}

static int on_answer(v4r_run *r, v4r_job *j, CURLcode cc, double now, v4r_err *err)
{
    long status = 0;
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
    if (j->fetching)
        return v4r_run_fetch_done(r, j, cc, status, err);
    v4r_ep_state *e = &r->ep[j->endpoint];
    e->in_flight--;
    v4r_answer a;
    if (j->resp.overflow)
        cc = CURLE_WRITE_ERROR;
    v4r_answer_parse(cc, j->errbuf, status, j->resp.data, j->resp.len, j->retry_after, &a);
    int rc;
    if (a.kind == V4R_ANSWER_OK) {
        ep_success(e);
        rc = v4r_run_finish(r, j, &a, NULL, 0, err);
    } else {
        if (a.endpoint_fault)
            ep_fault(r, e, now);
        rc = retry_or_fail(r, j, &a, now, err);
    }
    v4r_answer_free(&a);
    return rc;
}

/* Handles every finished transfer, recording the ends in one cache transaction. */
static int collect(v4r_run *r, double now, v4r_err *err)
{
    CURLMsg *m;
    int left, rc = 0, began = 0;
    while ((m = curl_multi_info_read(r->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        v4r_job *j = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
        CURLcode cc = m->data.result;
        curl_multi_remove_handle(r->multi, m->easy_handle);
        if (!began && !rc) {
            rc = v4r_cache_begin(r->cache, err);
            began = !rc;
        }
        if (!rc)
            rc = on_answer(r, j, cc, now, err);
        handle_put(r, j->easy);
        j->easy = NULL;
    }
    if (began) {
        int crc = v4r_cache_commit(r->cache, err);
        if (!rc)
            rc = crc;
    }
    size_t kept = 0;
    for (size_t k = 0; k < r->n_jobs; k++) {
        if (r->jobs[k]->stage == JOB_DONE)
            v4r_job_free(r->jobs[k]);
        else
            r->jobs[kept++] = r->jobs[k];
    }
    r->n_jobs = kept;
    return rc;
}

static long poll_timeout_ms(v4r_run *r, double now)
{
    double t = 0.25;
    /* jobs already due wait for a free slot, which only a finished transfer (socket activity) or
     * the end of a rest brings; jobs backing off wake the loop when they become due */
    int slot_free = free_slots(r, now) > 0;
    int fetch_free = fetching_in_flight(r) < r->max_jobs / 2;
    for (size_t k = 0; k < r->n_jobs; k++) {
        const v4r_job *j = r->jobs[k];
        if (j->stage != JOB_WAIT || (j->not_before <= now && !(j->fetching ? fetch_free : slot_free)))
            continue;
        if (j->not_before - now < t)
            t = j->not_before - now;
    }
    for (size_t k = 0; k < r->n_ep; k++)
        if (r->ep[k].rest_until > now && r->ep[k].rest_until - now < t)
            t = r->ep[k].rest_until - now;
    return t > 0 ? (long)(t * 1000) + 1 : 0;
}

static int run_loop(v4r_run *r, v4r_err *err)
{
    double lease_every = 30;
    int rc = 0;
    while (!rc && !stop_signal) {
        double now = v4r_now();
        dispatch(r, now); /* what is ready goes out first */
        rc = fill(r, now, err);
        if (rc)
            break;
        dispatch(r, v4r_now());
        if (!r->n_jobs && r->next >= r->plan.n)
            break;
        int running;
        curl_multi_perform(r->multi, &running);
        rc = collect(r, v4r_now(), err);
        if (rc)
            break;
        now = v4r_now();
        if (now - r->last_renew > lease_every) {
            rc = v4r_cache_renew(r->cache, err);
            r->last_renew = now;
        }
        v4r_run_progress(r, 0);
        if (!rc)
            curl_multi_poll(r->multi, NULL, 0, (int)poll_timeout_ms(r, v4r_now()), NULL);
    }
    return rc;
}

static void abandon_jobs(v4r_run *r)
{
    for (size_t k = 0; k < r->n_jobs; k++) {
        v4r_job *j = r->jobs[k];
        if (j->easy) {
            curl_multi_remove_handle(r->multi, j->easy);
            curl_easy_cleanup(j->easy);
        }
        v4r_job_free(j);
    }
    r->n_jobs = 0;
}

static char *chat_url(const char *base)
{
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        n--;
    const char *tail = "/chat/completions";
    if (n >= strlen(tail) && !strncmp(base + n - strlen(tail), tail, strlen(tail)))
        return v4r_strndup(base, n);
    return v4r_sprintf("%.*s%s", (int)n, base, tail);
}

static int setup(v4r_run *r, const v4r_ground_opts *o, v4r_err *err)
{
    int rc = v4r_dataset_load(o->dataset_dir, &r->ds, err);
    if (!rc)
        rc = v4r_plan_build(&r->ds, o, &r->plan, err);
    if (!rc)
        rc = v4r_cache_open(o->cache_path, &r->cache, err);
    if (rc)
        return rc;
    v4r_cache_set_lease(r->cache, o->timeout_s * 2 > 120 ? o->timeout_s * 2 : 120);
    v4r_sha256_hex(o->prompt, strlen(o->prompt), r->prompt_hash);
    rc = v4r_cache_put_prompt(r->cache, r->prompt_hash, o->prompt, err);
    if (rc)
        return rc;
    r->image_cache_dir = o->image_cache_dir ? v4r_strdup(o->image_cache_dir) : v4r_sprintf("%s.images", o->cache_path);
    r->multi = curl_multi_init();
    r->headers = curl_slist_append(NULL, "Content-Type: application/json");
    r->headers = curl_slist_append(r->headers, "Expect:");
    if (o->api_key && *o->api_key) {
        char *auth = v4r_sprintf("Authorization: Bearer %s", o->api_key);
        r->headers = curl_slist_append(r->headers, auth);
        free(auth);
    }
    r->n_ep = o->n_endpoints;
    r->ep = v4r_calloc(r->n_ep, sizeof *r->ep);
    size_t slots = 0;
    for (size_t k = 0; k < r->n_ep; k++) {
        r->ep[k].chat_url = chat_url(o->endpoints[k].url);
        r->ep[k].concurrency = o->endpoints[k].concurrency > 0 ? o->endpoints[k].concurrency : 1;
        slots += r->ep[k].concurrency;
    }
    r->prefetch = slots / 4 + 1;
    r->max_jobs = 2 * slots + r->prefetch + 8; /* in flight, retries waiting, the next few ready */
    v4r_rng_seed(&r->rng, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    return 0;
}

static void teardown(v4r_run *r)
{
    abandon_jobs(r);
    for (size_t k = 0; k < r->n_pool; k++)
        curl_easy_cleanup(r->pool[k]);
    free(r->pool);
    if (r->multi)
        curl_multi_cleanup(r->multi);
    curl_slist_free_all(r->headers);
    for (size_t k = 0; k < r->n_ep; k++)
        free(r->ep[k].chat_url);
    free(r->ep);
    free(r->jobs);
    free(r->image_cache_dir);
    v4r_cache_close(r->cache);
    v4r_plan_free(&r->plan);
    v4r_dataset_free(&r->ds);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int v4r_ground_run(const v4r_ground_opts *o, v4r_ground_summary *s, v4r_err *err)
{
    memset(s, 0, sizeof *s);
    if (!o->n_endpoints)
        return v4r_fail(err, V4R_EUSAGE, "no endpoint given");
    if (!o->model || !*o->model)
        return v4r_fail(err, V4R_EUSAGE, "no model name given");
    v4r_run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.sum = s;
    /* a long run frees and allocates around the top of the heap all the time: do not hand memory
     * back to the system each time (glibc's brk trimming flushes every CPU's TLB) */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    double cpu0 = cpu_seconds();
    r.start = v4r_now();
    r.last_renew = r.start;
    int rc = setup(&r, o, err);
    s->planned = r.plan.n;
    stop_signal = 0;
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    if (!rc)
        rc = run_loop(&r, err);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    s->interrupted = stop_signal != 0;
    if (r.cache) {
        abandon_jobs(&r);
        v4r_err rel = {0};
        if (v4r_cache_release(r.cache, &rel) && !rc) {
            *err = rel;
            rc = rel.code;
        }
    }
    s->seconds = v4r_now() - r.start;
    s->cpu_seconds = cpu_seconds() - cpu0;
    if (r.cache)
        v4r_run_progress(&r, 1);
    teardown(&r);
    return rc;
}

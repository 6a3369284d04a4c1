/* ground: what the job runner's files share — the plan, image preparation, requests and answers. */
#ifndef VLM4REC_RUNNER_INTERNAL_H
#define VLM4REC_RUNNER_INTERNAL_H

#include <curl/curl.h>

#include "vlm4rec/ground.h"

/* The items of one run, in the order they are sent. */
typedef struct {
    int32_t *item;
    size_t n;
} v4r_plan;

/* Builds the plan from the options (items list, order, shard, limit). */
int v4r_plan_build(const v4r_dataset *ds, const v4r_ground_opts *o, v4r_plan *p, v4r_err *err);
void v4r_plan_free(v4r_plan *p);
/* The released script's priority: 0.7 x min-max normalized popularity + 0.3 x normalized recency,
 * both over the training split; one score per item. */
void v4r_plan_priority(const v4r_dataset *ds, double *score);
/* 1-based shard of an item id among count (FNV-1a of the id). */
int v4r_plan_shard_of(const char *item_id, int count);

/* An image ready to upload: its hash (of the original bytes) and its data URL. */
typedef struct {
    char hash[65];
    char *data_url; /* "data:image/png;base64,..." */
    int w, h;       /* as decoded */
} v4r_upload;

/* Checks and prepares image bytes: size limit, decoding (a bad image is V4R_EINPUT with the
 * decoder's reason), downscaling so the longer side is at most max_side (0: never), data URL. */
int v4r_upload_prepare(const uint8_t *bytes, size_t n, const char *what, int max_side, size_t max_bytes,
                       v4r_upload *u, v4r_err *err);
void v4r_upload_free(v4r_upload *u);

/* The chat-completions request body (JSON). Caller frees. */
char *v4r_request_body(const v4r_ground_opts *o, const char *prompt, const char *data_url);

/* How an answer is classified. */
enum { V4R_ANSWER_OK = 0, V4R_ANSWER_RETRY = 1, V4R_ANSWER_PERMANENT = 2 };
typedef struct {
    int kind;            /* V4R_ANSWER_* */
    int endpoint_fault;  /* the endpoint itself misbehaved (counts toward resting it) */
    char *text;          /* OK: the description */
    char *error;         /* otherwise: the reason */
    double retry_after;  /* seconds the server asked to wait; 0 when it did not */
    int64_t prompt_tokens, completion_tokens;
} v4r_answer;
/* Classifies a finished transfer: curl's result, the HTTP status, the body and Retry-After. */
void v4r_answer_parse(CURLcode cc, const char *curl_msg, long status, const char *body, size_t body_len,
                      const char *retry_after, v4r_answer *a);
void v4r_answer_free(v4r_answer *a);
/* Seconds from a Retry-After value (delta seconds or an HTTP date); 0 when absent or unreadable. */
double v4r_retry_after_seconds(const char *value);

#endif

/* ---- the run's state, shared by runner.c, runner_items.c and runner_progress.c ---- */

enum { JOB_WAIT = 1, JOB_SEND = 2, JOB_DONE = 3 };

typedef struct {
    char *data;
    size_t len, cap, limit; /* limit: abort the transfer beyond it */
    int overflow;           /* the transfer was aborted at the limit */
} v4r_buf;

typedef struct {
    int32_t item;
    int stage;          /* JOB_*; JOB_DONE jobs are removed by the loop */
    int fetching;       /* the transfer (next or in flight) is the image download, not the request */
    int attempts;       /* requests (or downloads) made for this item in this run */
    double not_before;  /* JOB_WAIT: earliest time to send (backoff) */
    int endpoint;       /* JOB_SEND: index of the endpoint */
    double sent_at;
    CURL *easy;
    v4r_buf resp;
    char retry_after[64];
    char errbuf[CURL_ERROR_SIZE];
    char image_hash[65];
    char *body;         /* the request JSON */
    char *last_error;
} v4r_job;

typedef struct {
    char *chat_url;
    int concurrency;
    int in_flight;
    int consecutive_faults;
    double rest_until, rest_s; /* resting after repeated faults; then one probe at a time */
    int probing;
    size_t sent, ok, faults;
} v4r_ep_state;

typedef struct {
    const v4r_ground_opts *o;
    v4r_dataset ds;
    v4r_cache *cache;
    v4r_plan plan;
    size_t next;             /* next plan position to prepare */
    char prompt_hash[65];
    char *image_cache_dir;
    CURLM *multi;
    CURL **pool;             /* easy handles for reuse */
    size_t n_pool, pool_cap;
    struct curl_slist *headers;
    v4r_ep_state *ep;
    size_t n_ep;
    v4r_job **jobs;          /* active jobs, oldest first */
    size_t n_jobs, jobs_cap;
    size_t max_jobs;
    size_t prefetch;         /* requests kept prepared beyond the free slots */
    v4r_ground_summary *sum;
    double start, last_renew, last_draw, last_log;
    int in_txn;              /* a cache transaction is open for a batch of finishes */
    v4r_rng rng;             /* backoff jitter */
} v4r_run;

/* runner_items.c: takes the next plan item; may finish it at once (skip, bad image) or add a job. */
int v4r_run_prepare_next(v4r_run *r, v4r_err *err);
/* A finished image download: checks, stores and claims the item, then readies its request. */
int v4r_run_fetch_done(v4r_run *r, v4r_job *j, CURLcode cc, long status, v4r_err *err);
/* Records the end of a claimed item in the cache and the summary: a description (a non-NULL) or a
 * failure (error, permanent); j->attempts requests were sent. Marks j JOB_DONE. */
int v4r_run_finish(v4r_run *r, v4r_job *j, const v4r_answer *a, const char *error, int permanent, v4r_err *err);
/* Delay before retry number `attempt` (1-based): exponential with jitter, capped. */
double v4r_run_backoff(v4r_run *r, int attempt);
void v4r_job_free(v4r_job *j);
/* Creates the transfer for j's next step (the download, or the request to endpoint ep). */
CURL *v4r_run_transfer(v4r_run *r, v4r_job *j, int ep);

/* runner_progress.c */
void v4r_run_progress(v4r_run *r, int final);

/* ground: visual semantic grounding (f_vg). The semantic cache (SQLite, WAL), prompts, the client
 * and job runner for OpenAI-compatible chat-completions servers, and the stand-in server that tests
 * and the offline demo use in place of a vision-language model. */
#ifndef VLM4REC_GROUND_H
#define VLM4REC_GROUND_H

#include <stdint.h>
#include <stdio.h>

#include "vlm4rec/base.h"
#include "vlm4rec/data.h"
#include "vlm4rec/image.h"

/* ---------------------------------------------------------------- the semantic cache ---------- */

/* One row per key. Several processes may share one cache file: rows being worked on are claimed
 * ('running', with the owner and a lease); a claim held by a dead process or an expired lease is
 * taken over. docs/cache.md describes the schema. */
typedef struct v4r_cache v4r_cache;

enum { V4R_CACHE_RUNNING = 1, V4R_CACHE_DONE = 2, V4R_CACHE_FAILED = 3 };
const char *v4r_cache_status_name(int status); /* "running", "done", "failed" */

typedef struct {
    const char *item;        /* item id */
    const char *image_hash;  /* hex sha256 of the image bytes; "" when the image could not be read */
    const char *prompt_hash; /* hex sha256 of the prompt template (before {title} is filled in) */
    const char *model;       /* model name sent to the server */
} v4r_cache_key;

/* A row as read back; strings are owned by the row (v4r_cache_row_free). */
typedef struct {
    char *item, *image_hash, *prompt_hash, *model;
    int status;
    int permanent;     /* failed rows: 1 when retrying cannot help (bad image, HTTP 400) */
    char *description; /* done rows; NULL otherwise */
    char *error;       /* last error message; NULL when none */
    int attempts;      /* requests sent for this key, over all runs */
    double latency_s;  /* of the request that succeeded; -1 when unknown */
    int64_t prompt_tokens, completion_tokens; /* -1 when the server did not say */
    char *endpoint;    /* URL that answered; NULL when none */
    char *owner;       /* running rows: "host:pid:token" of the claiming process */
    double lease_until, created, updated; /* unix seconds */
} v4r_cache_row;
void v4r_cache_row_free(v4r_cache_row *r);

/* Opens (creating when missing, with its directory) a cache file: WAL journal, busy timeout, schema
 * checked. A file that is not a vlm4rec cache is V4R_EINPUT naming it. */
int v4r_cache_open(const char *path, v4r_cache **out, v4r_err *err);
/* Opens an existing cache read-only (a missing file is V4R_EIO). */
int v4r_cache_open_readonly(const char *path, v4r_cache **out, v4r_err *err);
void v4r_cache_close(v4r_cache *c);
const char *v4r_cache_path(const v4r_cache *c);
/* This process's owner string ("host:pid:token"), written into the rows it claims. */
const char *v4r_cache_owner(const v4r_cache *c);
/* Lease length in seconds for claims made from now on (default 120). */
void v4r_cache_set_lease(v4r_cache *c, double seconds);

/* Groups the writes between begin and commit into one transaction (BEGIN IMMEDIATE). */
int v4r_cache_begin(v4r_cache *c, v4r_err *err);
int v4r_cache_commit(v4r_cache *c, v4r_err *err);

/* Stores a prompt template under its hash (idempotent). */
int v4r_cache_put_prompt(v4r_cache *c, const char *hash, const char *text, v4r_err *err);

/* Outcome of a claim. */
enum {
    V4R_CLAIM_OK = 0,     /* this process now holds the key ('running', our owner, a fresh lease) */
    V4R_CLAIM_DONE = 1,   /* already described */
    V4R_CLAIM_FAILED = 2, /* failed permanently (and retry_failed was 0) */
    V4R_CLAIM_BUSY = 3,   /* running in another live process, lease not expired */
};
/* Claims a key for work, atomically against other processes. A missing row is inserted; a failed
 * row that is not permanent (or any failed row with retry_failed) is taken; a running row is taken
 * when its lease expired or its owner is a process of this host that no longer exists. */
int v4r_cache_claim(v4r_cache *c, const v4r_cache_key *k, int retry_failed, int *outcome, v4r_err *err);
/* Renews the lease of every running row this process holds. */
int v4r_cache_renew(v4r_cache *c, v4r_err *err);

typedef struct {
    const char *description; /* non-NULL: done; NULL: failed with error */
    const char *error;
    int permanent;
    int attempts;   /* requests sent in this claim; added to the row's count */
    double latency_s;
    int64_t prompt_tokens, completion_tokens;
    const char *endpoint;
} v4r_cache_result;
/* Records the end of work on a key this process holds. */
int v4r_cache_finish(v4r_cache *c, const v4r_cache_key *k, const v4r_cache_result *r, v4r_err *err);
/* Gives up every claim this process still holds (their lease ends now), e.g. on Ctrl-C. */
int v4r_cache_release(v4r_cache *c, v4r_err *err);
/* Reads one row; *found is 0 when there is none. */
int v4r_cache_get(v4r_cache *c, const v4r_cache_key *k, v4r_cache_row *row, int *found, v4r_err *err);

/* Which rows the cache commands and readers look at; NULL fields match everything. */
typedef struct {
    const char *model;
    const char *prompt_hash; /* a full hash or a prefix of at least 6 hex digits */
} v4r_cache_filter;

/* Calls fn for every done row matching f, one per item: when an item has several (other images,
 * prompts or models), the most recently finished. Items in id order. fn returns 0 to go on. */
typedef int (*v4r_cache_text_fn)(const char *item, const char *description, void *ctx);
int v4r_cache_foreach_text(v4r_cache *c, const v4r_cache_filter *f, v4r_cache_text_fn fn, void *ctx, v4r_err *err);

/* `cache stats`: rows by status, by model and prompt, attempts, latency and token totals, the most
 * common errors. Text or JSON. */
int v4r_cache_stats(v4r_cache *c, const v4r_cache_filter *f, int json, FILE *out, v4r_err *err);
/* `cache export`: one JSON object a line per done item (item, description, model, prompt_hash,
 * image_hash, latency_s, tokens, updated), and optionally the covered-item list (ids one a line,
 * in dataset order when ds is given, else id order) that `eval --covered` reads. Atomic files. */
int v4r_cache_export(v4r_cache *c, const v4r_cache_filter *f, const v4r_dataset *ds, const char *jsonl_path,
                     const char *covered_path, size_t *n_out, v4r_err *err);
/* `cache import`: descriptions made elsewhere. path holds a JSON object {item: text}, JSONL lines
 * ({"item"|"id": ..., "description"|"text": ...}) or TSV (item, description). Rows are stored done
 * under the given model and prompt hash; with ds, ids are checked against the dataset and the image
 * hash is computed from the item's image. An existing done row is kept unless replace. */
typedef struct {
    const char *model;       /* required */
    const char *prompt_hash; /* required (hash of the prompt text the descriptions were made with) */
    const v4r_dataset *ds;   /* optional */
    int replace;
} v4r_cache_import_opts;
int v4r_cache_import(v4r_cache *c, const char *path, const v4r_cache_import_opts *o, size_t *n_in, v4r_err *err);
/* `cache merge`: folds the rows of src into c. Per key: done beats failed beats running; between two
 * done rows the earlier-finished is kept; attempts add up. Prompts are copied. */
int v4r_cache_merge(v4r_cache *c, const char *src_path, size_t *n_new, size_t *n_updated, v4r_err *err);

/* ---------------------------------------------------------------- prompts --------------------- */

/* The preset prompt templates: "paper" and "script" (NULL for an unknown name). */
const char *v4r_prompt_preset(const char *name);
/* Fills {title} in a template (other text as is; "{{" and "}}" are literal braces). Caller frees. */
char *v4r_prompt_fill(const char *tmpl, const char *title);
/* The 1-based shard of an item id among count (FNV-1a of the id, modulo count, plus 1): the split
 * of ground --shard, which encode and embed-images --shard share. */
int v4r_plan_shard_of(const char *item_id, int count);

/* ---------------------------------------------------------------- the job runner -------------- */

typedef struct {
    const char *url;  /* base URL, e.g. http://127.0.0.1:8080/v1; requests go to URL/chat/completions */
    int concurrency;  /* requests in flight at once on this endpoint */
} v4r_endpoint;

enum { V4R_ORDER_DATASET = 0, V4R_ORDER_PRIORITY = 1, V4R_ORDER_RANDOM = 2 };

typedef struct {
    const char *dataset_dir;
    const char *cache_path;
    const v4r_endpoint *endpoints;
    size_t n_endpoints;
    const char *model;
    const char *api_key;      /* NULL: no Authorization header */
    const char *prompt;       /* template text */
    int max_tokens;           /* default 150 */
    double temperature;       /* default 0 (greedy) */
    int has_seed;
    int64_t seed;             /* passed through to the server when has_seed */
    int order;                /* V4R_ORDER_* */
    uint64_t order_seed;      /* for V4R_ORDER_RANDOM */
    const char *items_path;   /* optional list of item ids (one a line): only these, in this order */
    size_t limit;             /* 0: no limit */
    int shard_index, shard_count; /* 1-based index of count; count 0 or 1: no sharding */
    double timeout_s;         /* per request (default 120) */
    int retries;              /* retries after the first attempt for transient errors (default 5) */
    double backoff_s, backoff_max_s; /* first retry delay and its cap (default 1, 60) */
    int max_side;             /* >0: downscale images whose longer side is larger before upload */
    size_t max_image_bytes;   /* images larger than this (file or download) fail (default 20 MB) */
    const char *image_cache_dir; /* where downloaded images are kept (default beside the cache) */
    int retry_failed;         /* also retry items that failed permanently */
    int progress;             /* draw progress on a terminal */
} v4r_ground_opts;
void v4r_ground_defaults(v4r_ground_opts *o);

typedef struct {
    size_t planned;     /* items in this run's plan (after items list, shard, limit) */
    size_t done;        /* described in this run */
    size_t failed;      /* failed in this run */
    size_t skipped_done, skipped_failed, skipped_busy; /* found done / failed / held elsewhere */
    size_t requests, retries;
    double seconds;
    double cpu_seconds; /* this process's user + system time during the run */
    int interrupted;    /* stopped early by SIGINT / SIGTERM */
} v4r_ground_summary;

/* Runs grounding until every planned item is done, failed, or held by another process. On SIGINT
 * or SIGTERM it stops sending, abandons the requests in flight, releases its claims and returns 0
 * with s->interrupted set. A bad dataset or option is an error; a bad image is a failed item. */
int v4r_ground_run(const v4r_ground_opts *o, v4r_ground_summary *s, v4r_err *err);

/* ---------------------------------------------------------------- the stand-in server ---------- */

/* A small HTTP server speaking the chat-completions API, for tests, benchmarks and the offline demo.
 * It is not a vision-language model: it decodes the image and writes a deterministic description
 * from simple pixel statistics (colors, shape of the object, brightness), so different images get
 * different texts. Faults can be injected. */
enum {
    V4R_FAULT_429 = 0,       /* 429 Too Many Requests with Retry-After */
    V4R_FAULT_500,           /* 500 Internal Server Error */
    V4R_FAULT_400,           /* 400 Bad Request (a permanent error) */
    V4R_FAULT_MALFORMED,     /* 200 with a body that is not JSON */
    V4R_FAULT_EMPTY,         /* 200 with an empty message content */
    V4R_FAULT_DRIP,          /* 200 sent a few bytes at a time, slower than any sane timeout */
    V4R_FAULT_DROP,          /* connection closed without an answer */
    V4R_NFAULTS
};
const char *v4r_fault_name(int fault); /* "429", "500", "400", "malformed", "empty", "drip", "drop" */
int v4r_fault_parse(const char *name);  /* -1 when unknown */

typedef struct {
    const char *bind;        /* address (default 127.0.0.1) */
    int port;                /* 0: any free port */
    double latency_s;        /* service time per request (default 0) */
    int cap;                 /* requests served at once (0: no cap); more wait their turn */
    int cap_reject;          /* with cap: answer 429 instead of waiting */
    double fault_rate[V4R_NFAULTS]; /* probability of each fault per request */
    int fault_attempts;      /* faults only on the first N requests for an image (0: any) */
    double retry_after_s;    /* Retry-After of 429 answers (default 1) */
    double drip_s;           /* how long a drip answer takes in all (default 30) */
    uint64_t seed;
    const char *log_path;    /* one line per request: time, image sha256, request number, answer */
    const char *api_key;     /* when set, chat requests need "Authorization: Bearer KEY" (else 401) */
} v4r_standin_opts;
void v4r_standin_defaults(v4r_standin_opts *o);

typedef struct v4r_standin v4r_standin;
int v4r_standin_start(const v4r_standin_opts *o, v4r_standin **out, v4r_err *err);
int v4r_standin_port(const v4r_standin *s);
/* Requests answered so far, and the most served at once. */
uint64_t v4r_standin_requests(const v4r_standin *s);
int v4r_standin_peak_concurrency(const v4r_standin *s);
void v4r_standin_stop(v4r_standin *s);
/* The description the stand-in writes for an image (the same text it serves). Caller frees. */
char *v4r_standin_describe(const v4r_image *img);

#endif

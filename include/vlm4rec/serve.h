/* serve: the recommendation HTTP service over a serving index (docs/serving.md, "The service"):
 * JSON routes answered by micro-batched searches on worker threads, bearer tokens, per-client rate
 * limits, Prometheus metrics, an access log, index reloads without downtime and a draining stop. */
#ifndef VLM4REC_SERVE_H
#define VLM4REC_SERVE_H

#include "vlm4rec/base.h"

typedef struct {
    const char *index_path; /* the index file (required) */
    const char *host;       /* bind address (default 127.0.0.1) */
    int port;               /* 0: any free port (default 8080) */
    size_t workers;         /* searches running at once (default 1) */
    size_t threads;         /* threads each search's catalog scan is split over; 0 = the number of CPUs */
    size_t max_batch;       /* most queries one search answers together (default 64; 1 = no batching) */
    size_t max_body;        /* largest request body in bytes (default 65536) */
    double rate;            /* API requests per second per client address; 0 = no limit */
    double burst;           /* token bucket size; 0 = max(1, rate) */
    const char *token;      /* when set, API routes need "Authorization: Bearer TOKEN" */
    const char *access_log; /* NULL: none; "-": stderr; else a file appended to */
    size_t max_k;           /* largest k a request may ask (default 1000) */
    unsigned timeout_s;     /* idle connection timeout (default 10) */
    size_t max_connections; /* open connections at most (default 1000, less when the fd limit is lower) */
    size_t nprobe;          /* IVF index: lists a request probes unless it says; 0 = the index's default */
    const char *encoder_dir; /* the encoder of POST /v1/items descriptions; NULL = the directory the index's
                                meta names (its sha256 must match either way) */
} v4r_serve_opts;

void v4r_serve_defaults(v4r_serve_opts *o);

typedef struct v4r_server v4r_server;

/* Opens and verifies the index, starts the workers, the reloader and the HTTP daemon. */
int v4r_server_start(const v4r_serve_opts *o, v4r_server **out, v4r_err *err);
/* The port the daemon listens on (the chosen one when the port was 0). */
int v4r_server_port(const v4r_server *s);
/* Asks for a reload of the index file in the background (open, verify, swap); requests coalesce. */
void v4r_server_reload(v4r_server *s);
/* Compares the index file's device, inode, size and mtime with the last seen; asks for a reload
 * when they changed. Returns 1 when it asked. */
int v4r_server_check_file(v4r_server *s);
/* Stops accepting connections, answers every request already received, then stops everything and
 * frees the server. */
void v4r_server_drain_and_free(v4r_server *s);

#endif

/* base: status codes and error messages, logging, allocation, progress bar, atomic files, string map. */
#ifndef VLM4REC_BASE_H
#define VLM4REC_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Status codes. They double as the CLI's exit codes (see README, "Exit codes"). */
enum {
    V4R_OK = 0,
    V4R_EINTERNAL = 1, /* a bug or an unexpected system failure */
    V4R_EUSAGE = 2,    /* bad command line or option value */
    V4R_EINPUT = 3,    /* malformed or inconsistent input data */
    V4R_EIO = 4,       /* a file could not be read or written */
    V4R_ENOMEM = 5,    /* out of memory */
};

/* An error: a status and a message that names the file, line and field involved. */
typedef struct {
    int code;
    char msg[1024];
} v4r_err;

/* Sets err (when not NULL) and returns code, so callers can `return v4r_fail(...)`. */
int v4r_fail(v4r_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefixes the message already in err with more context ("while reading X: "). */
int v4r_err_prefix(v4r_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *v4r_code_name(int code);

/* Allocation: these never return NULL; on failure they print and abort (out of memory is not
 * recoverable for this program's workloads). */
void *v4r_malloc(size_t n);
void *v4r_calloc(size_t count, size_t size);
void *v4r_realloc(void *p, size_t n);
/* For large arrays swept again and again (weights, activations): 64-byte aligned, and from 2 MiB
 * up on 2 MiB boundaries with transparent huge pages asked for (madvise), so a sweep walks few
 * TLB entries; free() it. */
void *v4r_huge_alloc(size_t n);
char *v4r_strdup(const char *s);
char *v4r_strndup(const char *s, size_t n);
char *v4r_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Grows *buf (of *cap elements of elem bytes) to hold at least need elements. */
void v4r_grow(void **buf, size_t *cap, size_t need, size_t elem);

/* Logging to stderr. Level from v4r_log_set_level or VLM4REC_LOG (quiet, info, debug). */
enum { V4R_LOG_QUIET = 0, V4R_LOG_WARN = 1, V4R_LOG_INFO = 2, V4R_LOG_DEBUG = 3 };
void v4r_log_set_level(int level);
int v4r_log_level(void);
void v4r_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void v4r_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void v4r_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Wall clock in seconds (monotonic). */
double v4r_now(void);

/* Progress bar on stderr, shown only when stderr is a terminal and the log level is info+. */
typedef struct {
    const char *label;
    uint64_t total;
    uint64_t done;
    double start, last_draw;
    int enabled;
} v4r_progress;
void v4r_progress_start(v4r_progress *p, const char *label, uint64_t total);
void v4r_progress_add(v4r_progress *p, uint64_t n); /* thread-safe */
void v4r_progress_end(v4r_progress *p);

/* Atomic output: write to a temporary file beside path, rename over path on commit. */
typedef struct {
    FILE *fp;
    char *path;
    char *tmp_path;
} v4r_outfile;
int v4r_out_open(v4r_outfile *out, const char *path, v4r_err *err);
int v4r_out_commit(v4r_outfile *out, v4r_err *err); /* flush, fsync, close, rename */
void v4r_out_abort(v4r_outfile *out);               /* close and remove the temporary */

/* A listening address for a server: host (name or address) and port into *sa (struct
 * sockaddr_storage from <sys/socket.h>); *v6 says IPv6. A name that does not resolve is V4R_EUSAGE,
 * the message starting with what. */
struct sockaddr_storage;
int v4r_listen_address(const char *host, int port, const char *what, struct sockaddr_storage *sa, int *v6,
                       v4r_err *err);

/* Files and directories. */
int v4r_mkdir_p(const char *path, v4r_err *err);
int v4r_file_exists(const char *path);
char *v4r_path_join(const char *dir, const char *name); /* caller frees */
int v4r_read_file(const char *path, char **data, size_t *len, v4r_err *err);
/* Hex sha256 (65 bytes with the NUL) of bytes in memory, and of a file's bytes (read in 1 MiB blocks). */
void v4r_sha256_hex(const void *data, size_t n, char hex[65]);
int v4r_sha256_file(const char *path, char hex[65], v4r_err *err);

/* A string arena: many small strings packed in a few large blocks, all freed at once (ids and
 * titles of a catalog cost their bytes, not a heap chunk each). A zeroed arena is ready. */
typedef struct {
    char **blocks;
    size_t n_blocks, cap_blocks;
    size_t used, size; /* of the current block */
} v4r_arena;
char *v4r_arena_strdup(v4r_arena *a, const char *s);
void v4r_arena_free(v4r_arena *a);

/* A string -> index map (open addressing), for id lookups. Keys are copied into its arena. */
typedef struct {
    const char **keys;
    int64_t *vals;
    size_t cap, count;
    v4r_arena arena;
} v4r_strmap;
void v4r_strmap_init(v4r_strmap *m, size_t expected);
void v4r_strmap_free(v4r_strmap *m);
/* Returns the existing value when key is present (and does not insert), else inserts val, returns -1. */
int64_t v4r_strmap_put(v4r_strmap *m, const char *key, int64_t val);
int64_t v4r_strmap_get(const v4r_strmap *m, const char *key); /* -1 when absent */
/* v4r_strmap_get of the len bytes at key (not NUL-terminated). */
int64_t v4r_strmap_getn(const v4r_strmap *m, const char *key, size_t len);

/* A small deterministic random generator (splitmix64 seeding xoshiro256**). */
typedef struct {
    uint64_t s[4];
} v4r_rng;
void v4r_rng_seed(v4r_rng *r, uint64_t seed);
uint64_t v4r_rng_next(v4r_rng *r);
double v4r_rng_uniform(v4r_rng *r);               /* [0, 1) */
uint64_t v4r_rng_below(v4r_rng *r, uint64_t n);   /* [0, n) without bias */
double v4r_rng_normal(v4r_rng *r);                /* standard normal */

/* Parsing numbers exactly: the whole string must be the number. */
int v4r_parse_i64(const char *s, int64_t *out);
int v4r_parse_f64(const char *s, double *out);

#endif

/* index: the serving index, one file loaded by mmap (versioned header, checksum, item ids, the
 * L2-normalized item vectors in float32, float16 or int8, the last items of every known user), and
 * batched recommendation over it: profile construction plus one matrix product per batch. */
#ifndef VLM4REC_INDEX_H
#define VLM4REC_INDEX_H

#include "vlm4rec/base.h"
#include "vlm4rec/data.h"
#include "vlm4rec/io.h"

/* Storage of the vectors. int8 is symmetric per row: row = round(v / scale), scale = max|v| / 127. */
typedef enum { V4R_INDEX_F32 = 0, V4R_INDEX_F16 = 1, V4R_INDEX_I8 = 2 } v4r_index_dtype;
const char *v4r_index_dtype_name(v4r_index_dtype t); /* "float32", "float16", "int8" */
int v4r_index_dtype_parse(const char *name);          /* -1 when unknown */

typedef struct {
    v4r_index_dtype dtype;    /* default float32 */
    unsigned history_splits;  /* bit per split giving users' histories; default train|valid|test */
    size_t keep;              /* last items kept per user; default 10; 0 = all */
    size_t profile_length;    /* a profile is the mean of the last this many history items; default 10 */
    const char *label;        /* version label; NULL = "<dtype>-<first 12 hex of the checksum>" */
    size_t check_users;       /* known users sampled to measure the recall of float16/int8 against
                                 float32 (default 2000; 0 = skip) */
    size_t check_k;           /* the K of that recall (default 10) */
    uint64_t seed;            /* the sample's seed */
    const char *vectors_source; /* recorded in the meta (the vectors spec); NULL = not recorded */
    /* IVF (approximate search): a spherical k-means coarse quantizer and inverted lists */
    int ivf;                  /* 1 = write the IVF section (format version 2) */
    size_t nlist;             /* lists; 0 = 4 sqrt(n_items) rounded (at most n_items) */
    size_t nprobe;            /* the default lists probed; 0 = the smallest of 1, 2, 4, ... (then
                                 nlist) whose Recall@check_k against exact search reaches
                                 ivf_target on the sampled users */
    double ivf_target;        /* default 0.98 */
    size_t train_per_list;    /* k-means sample: at most this many vectors per list (default 64) */
    size_t iterations;        /* k-means iterations (default 10) */
    /* The encoder that made the vectors, recorded in the meta as "encoder" (a JSON object text:
     * model, path, sha256, pooling, normalize, dim, text_template); NULL = none recorded. */
    const char *encoder_json;
    /* Compaction (v4r_live_compact): the rows are already as stored (no normalization here), and
     * for int8 row_scales[i] is row i's scale (NULL: computed from the row). */
    int rows_normalized;
    const float *row_scales;
} v4r_index_build_opts;

void v4r_index_build_defaults(v4r_index_build_opts *o);

/* What a build measured and wrote. recall_vs_f32 is the mean over sampled users of
 * |top-K(stored) ∩ top-K(float32)| / K; 1 for float32 itself; -1 when not measured. */
typedef struct {
    size_t n_items, dim, n_users, n_history; /* n_history: user history entries stored */
    uint64_t file_bytes;
    double recall_vs_f32;
    size_t recall_users;
    char checksum[65]; /* hex sha256 of everything after the header */
    char version[128];
    /* IVF (nlist = 0: none): the default nprobe and its Recall@K against exact search of the same
     * storage and against exact float32, over recall_users sampled users (-1: not measured) */
    size_t nlist, nprobe, ivf_queries;
    double ivf_recall_vs_exact, ivf_recall_vs_f32;
    double ivf_seconds; /* k-means and lists */
} v4r_index_build_report;

/* Builds the index of a dataset's items (vectors: one row per dataset item; rows are L2-normalized
 * here; a zero or non-finite row is an error naming the row and item id) into path, atomically. */
int v4r_index_build(const v4r_dataset *ds, const v4r_matrix *vectors, const v4r_index_build_opts *o,
                    const char *path, v4r_index_build_report *rep, v4r_err *err);

/* An open index: read-only, mmap'ed, safe to search from many threads at once. */
typedef struct v4r_index v4r_index;

/* Opens and checks an index: magic, format version, sizes against the file length, every offset,
 * and (verify = 1) the checksum. Errors name the file and what is wrong. */
int v4r_index_open(const char *path, int verify, v4r_index **out, v4r_err *err);
void v4r_index_close(v4r_index *ix);

size_t v4r_index_n_items(const v4r_index *ix);
size_t v4r_index_dim(const v4r_index *ix);
size_t v4r_index_n_users(const v4r_index *ix);
size_t v4r_index_profile_length(const v4r_index *ix);
v4r_index_dtype v4r_index_storage(const v4r_index *ix);
const char *v4r_index_version(const v4r_index *ix);  /* the label */
const char *v4r_index_checksum(const v4r_index *ix); /* hex sha256 */
double v4r_index_recall_vs_f32(const v4r_index *ix); /* as measured at build; -1 unknown */
size_t v4r_index_nlist(const v4r_index *ix);          /* IVF lists; 0 = no IVF section */
size_t v4r_index_nprobe(const v4r_index *ix);         /* the IVF's default nprobe; 0 = no IVF */
/* The IVF's Recall@K at the default nprobe as measured at build: against exact search of the same
 * storage (vs_f32 = 0) or against exact float32 (vs_f32 = 1); -1 unknown. */
double v4r_index_ivf_recall(const v4r_index *ix, int vs_f32);
/* Build facts as one JSON object (dataset, vectors source, created time, options, recall check). */
const char *v4r_index_meta_json(const v4r_index *ix);

const char *v4r_index_item_id(const v4r_index *ix, int32_t item);
const char *v4r_index_user_id(const v4r_index *ix, int32_t user);
int32_t v4r_index_find_item(const v4r_index *ix, const char *id, size_t len); /* -1 when unknown */
int32_t v4r_index_find_user(const v4r_index *ix, const char *id, size_t len); /* -1 when unknown */
/* A known user's stored history, oldest first. */
size_t v4r_index_user_history(const v4r_index *ix, int32_t user, const int32_t **items);
/* One item's vector as float32 (dequantized for float16/int8) into out (dim floats). */
void v4r_index_item_vector(const v4r_index *ix, int32_t item, float *out);

/* One query. The profile is the normalized mean of the last profile_length items of history
 * (oldest first, most recent last); a query may instead give its own vector (then history only
 * excludes). */
typedef struct {
    const int32_t *history;
    size_t n_history;
    const float *vector;      /* NULL = the profile of history; else dim floats, used as they are */
    const int32_t *exclude;   /* never returned (any order, repeats allowed) */
    size_t n_exclude;
    int keep_history;         /* 0 (default): history items are not returned */
    const int32_t *candidates;/* NULL = every item; else only these (any order, repeats allowed) */
    size_t n_candidates;
    size_t k;                 /* at most kmax of v4r_index_search */
    size_t nprobe;            /* IVF index: lists probed; 0 = the index's default; nprobe >= nlist
                                 gives the exact lists; V4R_INDEX_EXACT = the exact scan. Without an
                                 IVF section every search is exact. */
} v4r_index_query;
#define V4R_INDEX_EXACT SIZE_MAX

/* Answers nq queries with one matrix product over the catalog (in cache-sized item blocks): for
 * query q, top_items[q * kmax + j] / top_scores[...] for j < k by (score desc, item index asc);
 * -1 / 0 pad lists shorter than kmax (few candidates). Every score is the FMA chain over the
 * dimensions in order (the arithmetic of eval's AVX-512 kernel), so a query's answer does not
 * depend on the batch, and for float32 storage the lists equal v4r_rank's (eval) on the same
 * history, masks and candidates (bit for bit against the AVX-512 kernel; up to near-ties against
 * the BLAS one). Runs on the calling thread: no OpenMP, no BLAS, no global state; scratch is
 * allocated per call. A query with an empty history and no vector, an item index out of range or a
 * non-finite vector is V4R_EINPUT; k > kmax is V4R_EUSAGE. */
int v4r_index_search(const v4r_index *ix, const v4r_index_query *queries, size_t nq, size_t kmax,
                     int32_t *top_items, float *top_scores, v4r_err *err);
/* With an IVF section, a query probes its nprobe lists whose centroids score highest against the
 * profile (score desc, list asc), scores their items with the same kernels (the same bits as the
 * exact scan: no re-rank is needed) and keeps the same order and masks; the lists miss only items
 * outside the probed lists. */
/* v4r_index_search with the catalog scan split over `threads` OpenMP threads by item ranges (one
 * query's latency falls with the threads); the same lists and scores, bit for bit. */
int v4r_index_search_threads(const v4r_index *ix, const v4r_index_query *queries, size_t nq, size_t kmax,
                             int threads, int32_t *top_items, float *top_scores, v4r_err *err);

/* ---- live additions (docs/serving.md, "Live additions") ----
 *
 * A live index is an open index plus the changes logged beside it (INDEX.log): added items (ids
 * and vectors, indexes n_base .. in log order), deleted items (masked from every answer and
 * treated as unknown ids), and events appended to users' histories. Searches consult the changes:
 * added items are scanned exactly after the base scan (exact or IVF), deleted ones are masked.
 * Every change is appended to the log as one checksummed line and fsync'ed before it is applied.
 * Thread-safe: searches and lookups take a read lock; changes are serialized. */
typedef struct v4r_live v4r_live;

typedef struct {
    size_t records;      /* records replayed */
    uint64_t log_bytes;  /* the log's length after replay */
    int truncated;       /* 1 when a torn last record was cut off */
    uint64_t torn_at;    /* where */
} v4r_live_replay;

/* The log of an index file: INDEX.log. Caller frees. */
char *v4r_live_log_path(const char *index_path);
/* Wraps ix (the live index owns it from here on, and closes it) and replays log_path if it
 * exists (a missing log is no change). A torn last record is cut off with a warning; a damaged
 * record before the last, or a log made for another index (its first line names the index's
 * sha256), is V4R_EINPUT naming the byte offset. On error ix is closed too. */
int v4r_live_open(v4r_index *ix, const char *log_path, v4r_live **out, v4r_live_replay *rep, v4r_err *err);
void v4r_live_close(v4r_live *lv);
v4r_index *v4r_live_base(const v4r_live *lv);

size_t v4r_live_n_items(const v4r_live *lv);   /* base + added (deleted ones included) */
size_t v4r_live_n_added(const v4r_live *lv);
size_t v4r_live_n_deleted(const v4r_live *lv);
uint64_t v4r_live_log_bytes(const v4r_live *lv);
uint64_t v4r_live_seq(const v4r_live *lv);     /* the last record's sequence number (0: none) */
/* An item's id (base or added); the string lives as long as lv. */
const char *v4r_live_item_id(const v4r_live *lv, int32_t item);
/* The item of an id, -1 when unknown or deleted. */
int32_t v4r_live_find_item(const v4r_live *lv, const char *id, size_t len);
/* A known user's history: the stored one then the events, deleted items left out; *items is
 * allocated (caller frees), the count returned. */
size_t v4r_live_user_history(const v4r_live *lv, int32_t user, int32_t **items);
/* One item's vector as float32 (as stored: normalized, dequantized). */
void v4r_live_item_vector(const v4r_live *lv, int32_t item, float *out);

/* Adds an item: vector (dim floats, as the index's vectors were given: it is normalized here as
 * index build normalizes). Logged (fsync'ed), then applied: *item is its index, *seq the record's
 * sequence number. An id that is a base or live item (not deleted) is V4R_LIVE_EXISTS; a wrong
 * length, a non-finite or zero vector is V4R_EINPUT; a log rotated by `index compact` is
 * V4R_LIVE_ROTATED (reload the index). Nothing changes on an error. */
enum { V4R_LIVE_EXISTS = 17, V4R_LIVE_ROTATED = 18, V4R_LIVE_UNKNOWN = 19 };
int v4r_live_add_item(v4r_live *lv, const char *id, const float *vector, size_t dim, int32_t *item, uint64_t *seq,
                      v4r_err *err);
/* Deletes an item (base or added): V4R_LIVE_UNKNOWN when unknown or already deleted. */
int v4r_live_delete_item(v4r_live *lv, const char *id, uint64_t *seq, v4r_err *err);
/* Appends items (ids known and not deleted) to a known user's history. */
int v4r_live_add_events(v4r_live *lv, int32_t user, const int32_t *items, size_t n, uint64_t *seq, v4r_err *err);

/* v4r_index_search_threads over the live index: item indexes below v4r_live_n_items, deleted
 * items never returned, added items scored exactly, order (score desc, item index asc). */
int v4r_live_search(const v4r_live *lv, const v4r_index_query *queries, size_t nq, size_t kmax, int threads,
                    int32_t *top_items, float *top_scores, v4r_err *err);

typedef struct {
    size_t records, added, deleted, events, n_items;
    int rotated; /* the log was emptied (the output is the index itself) */
    v4r_index_build_report build;
} v4r_live_compact_report;
/* Folds the log of index_path into a new index file (out; NULL = index_path itself, then the log
 * is emptied: the old one kept as INDEX.log.old), atomically. Vectors and ids equal a fresh
 * build on the base items (deleted ones dropped) with the added items appended in log order. */
int v4r_live_compact(const char *index_path, const char *out, v4r_live_compact_report *rep, v4r_err *err);

#endif

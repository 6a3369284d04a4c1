/* Internal to the index module: the file header, the open index, the scoring kernels. */
#ifndef V4R_INDEX_INTERNAL_H
#define V4R_INDEX_INTERNAL_H

#include "vlm4rec/index.h"

#include "../rec/rank_internal.h"

#define IX_MAGIC "V4RINDEX"
enum {
    IX_VERSION = 1,     /* files without an IVF section */
    IX_VERSION_IVF = 2, /* files with one (header bytes 432..447 locate it) */
    IX_HEADER_BYTES = 512,
    IX_ALIGN = 64,
    IX_PANEL = 16, /* items per vector panel: element (k, lane) of panel p at (p * dim + k) * 16 + lane */
    IX_LABEL_BYTES = 128,
    IX_HEADER_SHA_AT = 448, /* the header's own sha256 (hex) covers the bytes before it */
};

/* The sections, in file order. */
enum {
    SEC_ITEM_OFF,   /* u64 x (n_items + 1): offsets into SEC_ITEM_STR */
    SEC_ITEM_STR,   /* the item ids, each NUL-terminated */
    SEC_USER_OFF,   /* u64 x (n_users + 1) */
    SEC_USER_STR,   /* the user ids, each NUL-terminated */
    SEC_VECTORS,    /* n_panels x dim x 16 elements of the dtype */
    SEC_SCALES,     /* int8: f32 x n_panels * 16 (one per item, padding lanes 1); else empty */
    SEC_HIST_OFF,   /* u64 x (n_users + 1): offsets into SEC_HIST_ITEMS */
    SEC_HIST_ITEMS, /* i32 x n_history: item indices, each user's oldest first */
    SEC_META,       /* the JSON meta blob, NUL-terminated */
    IX_NSECTIONS
};
extern const char *const ix_section_names[IX_NSECTIONS];

typedef struct {
    uint64_t off, len;
} ix_section;

/* The decoded header (see docs/serving.md, "Index file format", for the bytes). */
typedef struct {
    uint32_t version, dtype;
    uint64_t n_items, dim, n_users, n_history, keep, profile_length;
    uint32_t history_splits, recall_k;
    double recall;
    uint64_t recall_users, file_bytes;
    ix_section sec[IX_NSECTIONS];
    ix_section ivf; /* version 2: the IVF section; {0, 0} = none */
    char label[IX_LABEL_BYTES];
    char body_sha[65];
} ix_header;

/* The IVF section (docs/serving.md, "IVF section"): a 128-byte sub-header, then the parts below,
 * each at a multiple of 64 bytes from the section's start. */
enum { IVF_HEAD_BYTES = 128 };
#define IVF_MAGIC "V4RIVF\0\0"
enum { IVF_CENTROIDS, IVF_LIST_OFF, IVF_LIST_PANEL, IVF_LIST_ITEMS, IVF_LIST_VECTORS, IVF_LIST_SCALES, IVF_NPARTS };
typedef struct {
    uint64_t nlist, nprobe, recall_k, recall_users, list_panels, train_vectors, iterations, seed;
    double recall_vs_exact, recall_vs_f32; /* at the default nprobe; -1 = not measured */
} ivf_header;

/* Where each part lies (offset from the section's start, length) and the section's length, from
 * the counts. */
void ivf_layout(const ivf_header *v, uint64_t n_items, uint64_t dim, int dtype, ix_section part[IVF_NPARTS],
                uint64_t *total);
void ivf_header_encode(const ivf_header *v, unsigned char *out);
void ivf_header_decode(const unsigned char *in, ivf_header *v);

struct v4r_index {
    char *path;
    const unsigned char *base; /* the whole file: mmap'ed, or a build's buffer */
    size_t size;
    int mapped;
    ix_header h;
    const uint64_t *item_off, *user_off, *hist_off;
    const char *item_str, *user_str, *meta;
    const void *vectors;
    const float *scales;
    const int32_t *hist;
    size_t n_panels;
    int kernel; /* V4R_KERNEL_BLAS (portable FMA loops) or V4R_KERNEL_AVX512 */
    /* IVF (nlist = 0: none) */
    ivf_header ivf;
    const float *centroids;      /* ceil(nlist / 16) float32 panels */
    const uint64_t *list_off;    /* nlist + 1: list l is list_items[list_off[l] .. list_off[l + 1]) */
    const uint64_t *list_panel;  /* nlist + 1: list l's vectors are panels list_panel[l] .. [l + 1] */
    const int32_t *list_items;
    const void *list_vectors;
    const float *list_scales;    /* int8 only */
    int has_maps;
    v4r_strmap item_map, user_map;
};

size_t ix_dtype_size(int dtype);
/* Writes h into the 512 header bytes (including the header's own checksum). */
/* Little-endian fields of the file's headers (format.c). */
void ix_put_u32(unsigned char *p, uint32_t v);
void ix_put_u64(unsigned char *p, uint64_t v);
void ix_put_f64(unsigned char *p, double d);
uint32_t ix_get_u32(const unsigned char *p);
uint64_t ix_get_u64(const unsigned char *p);
double ix_get_f64(const unsigned char *p);
void ix_header_encode(const ix_header *h, unsigned char *out);
/* Opens the index in bytes (named path in messages): every check of v4r_index_open. */
int ix_open_memory(const unsigned char *bytes, size_t size, const char *path, int verify, v4r_index **out,
                   v4r_err *err);
/* Points the section fields of ix at ix->base according to ix->h (no checks). */
void ix_attach(v4r_index *ix);

/* Scores: out[u * ldo + j] = query u . item (p0 * 16 + j) for R queries whose profiles are
 * k-major in a (a[k * R + u]) and the np panels from p0; every score is the FMA chain over k in
 * order (the same bits in every kernel and for every batch), times the row scale for int8. */
void ix_score_panels(const v4r_index *ix, const float *a, size_t R, size_t p0, size_t np, float *out, size_t ldo);
/* The same score for one query (q: dim floats) and one item. */
float ix_score_item(const v4r_index *ix, const float *q, int32_t item);
/* ix_score_panels over any panels: vectors / scales of the dtype (centroids, IVF lists). */
void ix_score_block(const v4r_index *ix, int dtype, const void *vectors, const float *scales, const float *a,
                    size_t R, size_t p0, size_t np, float *out, size_t ldo);
/* Group sizes ix_score_panels handles best, largest first (ends with 1). */
extern const size_t ix_group_sizes[];


/* The search state of one query. */
typedef struct {
    v4r_topk top;
    uint64_t *blocked; /* bit per item: never returned */
    int direct;        /* few candidates: scored one by one */
    size_t nprobe;     /* lists probed (IVF) */
} query_state;

static inline int ix_is_set(const uint64_t *bits, int32_t i) { return (int)(bits[i >> 6] >> (i & 63) & 1); }

/* A scan split over threads: thread t > 0 works on its own copy of the nq states, parts[(t - 1) * nq
 * + q], with its own empty top-K heap from heaps (kmax entries a query); thread 0 on st itself.
 * ix_thread_states returns thread t's states; ix_merge_threads offers every part's entries of the
 * n queries of order to st (the (score, index) order is total, so the result equals one thread's). */
query_state *ix_thread_states(query_state *st, query_state *parts, v4r_entry *heaps, size_t nq, size_t kmax, int t);
void ix_merge_threads(query_state *st, const query_state *parts, size_t nq, int threads, const size_t *order,
                      size_t n);

/* Groups of queries with their profiles k-major (ix_group_sizes), for the kernels. */
typedef struct {
    size_t R;
    size_t first; /* into the order */
    float *a;
} ix_group;
size_t ix_make_groups(const size_t *order, size_t n, const float *prof, size_t d, ix_group *g, float *a);

/* Attaches the IVF parts of an index whose header has an IVF section (no checks). */
void ivf_attach(v4r_index *ix);
/* Checks the IVF section of an open index; errors name path and the part. */
int ivf_check(const v4r_index *ix, const char *path, v4r_err *err);
/* The IVF scan of the n queries of order (profiles prof, nq x dim): each probes st[q].nprobe lists. */
void ivf_scan(const v4r_index *ix, const size_t *order, size_t n, const float *prof, query_state *st, size_t nq,
              size_t kmax, int threads);
/* One normalized row into the panels of a dtype at slot (panel * 16 + lane); int8 sets scales[slot]. */
void ix_encode_row(int dtype, const float *row, size_t d, void *panels, float *scales, size_t slot);
/* 4 sqrt(n_items) rounded, 1 to n_items. */
size_t ivf_default_nlist(size_t n_items);
/* Builds the IVF parts for the normalized rows (k-means, lists) into a new buffer (*out, *len). */
int ivf_build(const v4r_matrix *rows, int dtype, const v4r_index_build_opts *o, int kernel, unsigned char **out,
              uint64_t *len, v4r_err *err);

/* Row slot of panels in a dtype as float32 (dequantized). */
void ix_decode_row(int dtype, size_t d, const void *panels, const float *scales, size_t slot, float *out);

/* The changes of a live index a search consults (live.c): items n_items .. n_items + n_added - 1
 * in their own panels of the index's dtype, scanned exactly; deleted items (a bit per item over
 * base and added) never returned. */
typedef struct {
    size_t n_added;
    const void *panels;
    const float *scales; /* int8 */
    const uint64_t *deleted;
} ix_delta;
int ix_search_delta(const v4r_index *ix, const ix_delta *dl, const v4r_index_query *queries, size_t nq, size_t kmax,
                    int threads, int32_t *top_items, float *top_scores, v4r_err *err);

#endif

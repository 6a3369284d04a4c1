/* Internal to the index module: the file header, the open index, the scoring kernels. */
#ifndef V4R_INDEX_INTERNAL_H
#define V4R_INDEX_INTERNAL_H

#include "vlm4rec/index.h"

#define IX_MAGIC "V4RINDEX"
enum {
    IX_VERSION = 1,
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
    char label[IX_LABEL_BYTES];
    char body_sha[65];
} ix_header;

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
    int has_maps;
    v4r_strmap item_map, user_map;
};

size_t ix_dtype_size(int dtype);
/* Writes h into the 512 header bytes (including the header's own checksum). */
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
/* Group sizes ix_score_panels handles best, largest first (ends with 1). */
extern const size_t ix_group_sizes[];

#endif

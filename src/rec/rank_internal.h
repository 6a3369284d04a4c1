/* Internal to ranking: the top-K heap both kernels share, profiles from any row source, AVX-512. */
#ifndef V4R_RANK_INTERNAL_H
#define V4R_RANK_INTERNAL_H

#include "vlm4rec/rec.h"

typedef struct {
    float s;
    int32_t i; /* candidate position; ascending position = ascending item index */
} v4r_entry;

/* a ranks below b: lower score, or the same score and a higher index */
static inline int v4r_worse(v4r_entry a, v4r_entry b) { return a.s < b.s || (a.s == b.s && a.i > b.i); }

static inline void v4r_sift_down(v4r_entry *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && v4r_worse(h[l], h[m]))
            m = l;
        if (r < n && v4r_worse(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        v4r_entry t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static inline void v4r_sift_up(v4r_entry *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!v4r_worse(h[i], h[p]))
            return;
        v4r_entry t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* The per-user state of the scan: a min-heap of the best kmax so far and the sorted mask. */
typedef struct {
    v4r_entry *heap;
    size_t n, kmax;
    const int32_t *mask;
    size_t n_mask;
    const int32_t *cand_items; /* NULL: candidate position = item index */
} v4r_topk;

static inline int v4r_topk_masked(const v4r_topk *t, int32_t pos)
{
    int32_t item = t->cand_items ? t->cand_items[pos] : pos;
    size_t lo = 0, hi = t->n_mask;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->mask[mid] < item)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n_mask && t->mask[lo] == item;
}

/* Offers candidate pos with score s; positions must be offered in ascending order. */
static inline void v4r_topk_offer(v4r_topk *t, float s, int32_t pos)
{
    if (v4r_topk_masked(t, pos))
        return;
    v4r_entry e = {s, pos};
    if (t->n < t->kmax) {
        t->heap[t->n] = e;
        v4r_sift_up(t->heap, t->n++);
    } else if (v4r_worse(t->heap[0], e)) {
        t->heap[0] = e;
        v4r_sift_down(t->heap, t->n, 0);
    }
}

/* An empty top-K of evaluated user u, over heap storage of kmax entries. */
void v4r_topk_init(v4r_topk *t, const v4r_eval_set *es, size_t u, v4r_entry *heap, size_t kmax,
                   const int32_t *cand_items);
/* Sorts the heap best first and writes kmax item indices and scores (-1 and NaN pad). */
void v4r_topk_finish(v4r_topk *t, int32_t *items, float *scores);

/* Row source for profiles: the d floats of item, the h-th of the profile's window (may fill and
 * return tmp). */
typedef const float *(*v4r_row_fn)(const void *ctx, int32_t item, size_t h, float *tmp);
/* v4r_profile over any row source; the same arithmetic, so bit-identical results. */
void v4r_profile_rows(const int32_t *hist, size_t n_hist, size_t history_length, size_t d, v4r_row_fn row,
                      const void *ctx, float *tmp, float *out);
/* v4r_profile_rows with each row scaled by weight[item] (NULL: 1; the norms, for V4R_PROFILE_MEAN). */
void v4r_profile_rows_weighted(const int32_t *hist, size_t n_hist, size_t history_length, const float *weight,
                               size_t d, v4r_row_fn row, const void *ctx, float *tmp, float *out);

/* The fused AVX-512 scoring + top-K kernel, v4r_rank's contract. Call only when supported. The
 * full-catalog case reorganizes items->data in place during the call and restores it bit-exactly
 * before returning. */
void v4r_rank_avx512(const v4r_eval_set *es, const v4r_protocol *p, const v4r_matrix *items, const float *weight,
                     size_t kmax, int32_t *top_items, float *top_scores);

#endif

/* Batched search over an open index: query checks, profiles, masks, the scan of the vector panels
 * in cache-sized chunks by query groups, and the top-K lists (v4r_rank's heap and order). */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/kernels.h"

enum { CHUNK_BYTES = 256 * 1024 }; /* vector bytes scanned per pass over the query groups */

static int check_list(const int32_t *v, size_t n, size_t n_items, size_t q, const char *what, v4r_err *err)
{
    if (n && !v)
        return v4r_fail(err, V4R_EUSAGE, "query %zu: %zu %s but no array", q, n, what);
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0 || (size_t)v[i] >= n_items)
            return v4r_fail(err, V4R_EINPUT, "query %zu: %s entry %zu is item %d, not below %zu", q, what, i, v[i],
                            n_items);
    return V4R_OK;
}

static int check_query(const v4r_index *ix, const v4r_index_query *qr, size_t q, size_t kmax, size_t n, v4r_err *err)
{
    if (qr->k > kmax)
        return v4r_fail(err, V4R_EUSAGE, "query %zu: k = %zu is above kmax = %zu", q, qr->k, kmax);
    if (!qr->vector && qr->n_history == 0)
        return v4r_fail(err, V4R_EINPUT, "query %zu: no history and no vector", q);
    int rc = check_list(qr->history, qr->n_history, n, q, "history", err);
    if (!rc)
        rc = check_list(qr->exclude, qr->n_exclude, n, q, "exclude", err);
    if (!rc)
        rc = check_list(qr->candidates, qr->n_candidates, n, q, "candidates", err);
    for (size_t k = 0; !rc && qr->vector && k < ix->h.dim; k++)
        if (!isfinite(qr->vector[k]))
            rc = v4r_fail(err, V4R_EINPUT, "query %zu: vector entry %zu is not a finite number", q, k);
    return rc;
}

/* The index and its live changes (dl NULL: none). */
typedef struct {
    const v4r_index *ix;
    const ix_delta *dl;
} search_ctx;

static const float *index_row(const void *ctx, int32_t item, size_t h, float *tmp)
{
    (void)h;
    const search_ctx *c = ctx;
    size_t n = c->ix->h.n_items;
    if ((size_t)item < n)
        v4r_index_item_vector(c->ix, item, tmp);
    else
        ix_decode_row((int)c->ix->h.dtype, c->ix->h.dim, c->dl->panels, c->dl->scales, (size_t)item - n, tmp);
    return tmp;
}

/* ix_score_item for an added item: the same FMA chain over the stored elements. */
static float score_added(const v4r_index *ix, const ix_delta *dl, const float *q, size_t slot)
{
    size_t d = ix->h.dim, at = slot / IX_PANEL * d * IX_PANEL + slot % IX_PANEL;
    const unsigned char *v = dl->panels;
    float s = 0;
    for (size_t k = 0; k < d; k++, at += IX_PANEL) {
        float x = ix->h.dtype == V4R_INDEX_F16   ? v4r_f16_to_f32((uint16_t)(v[2 * at] | v[2 * at + 1] << 8))
                  : ix->h.dtype == V4R_INDEX_I8 ? (float)((const int8_t *)dl->panels)[at]
                                                 : ((const float *)dl->panels)[at];
        s = fmaf(q[k], x, s);
    }
    return ix->h.dtype == V4R_INDEX_I8 ? s * dl->scales[slot] : s;
}

static void set_bits(uint64_t *bits, const int32_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bits[v[i] >> 6] |= (uint64_t)1 << (v[i] & 63);
}



/* The blocked items of a query: history (unless kept), exclusions, and everything but the candidates. */
static void block_items(const v4r_index_query *qr, size_t words, uint64_t *bits, const uint64_t *deleted)
{
    int only = qr->candidates != NULL;
    memset(bits, only ? 0xff : 0, words * sizeof *bits);
    for (size_t i = 0; only && i < qr->n_candidates; i++)
        bits[qr->candidates[i] >> 6] &= ~((uint64_t)1 << (qr->candidates[i] & 63));
    if (!qr->keep_history)
        set_bits(bits, qr->history, qr->n_history);
    set_bits(bits, qr->exclude, qr->n_exclude);
    for (size_t w = 0; deleted && w < words; w++)
        bits[w] |= deleted[w];
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* Few candidates: score each distinct one in ascending item order. */
static void search_direct(const v4r_index *ix, const ix_delta *dl, const v4r_index_query *qr, const float *prof,
                          query_state *st)
{
    int32_t *c = v4r_malloc((qr->n_candidates ? qr->n_candidates : 1) * sizeof *c);
    memcpy(c, qr->candidates, qr->n_candidates * sizeof *c);
    qsort(c, qr->n_candidates, sizeof *c, cmp_i32);
    for (size_t i = 0; i < qr->n_candidates; i++)
        if ((i == 0 || c[i] != c[i - 1]) && !ix_is_set(st->blocked, c[i]))
            v4r_topk_offer(&st->top,
                           (size_t)c[i] < ix->h.n_items ? ix_score_item(ix, prof, c[i])
                                                        : score_added(ix, dl, prof, (size_t)c[i] - ix->h.n_items),
                           c[i]);
    free(c);
}

/* Offers the scores of items first..first+n-1 to a query, the heap's threshold first. */
static void offer_scores(query_state *st, const float *s, size_t n, int32_t first)
{
    v4r_topk *t = &st->top;
    if (t->kmax == 0)
        return;
    for (size_t j = 0; j < n; j++) {
        /* full: a later item with an equal score never wins */
        if (t->n == t->kmax && !(s[j] > t->heap[0].s))
            continue;
        if (!ix_is_set(st->blocked, first + (int32_t)j))
            v4r_topk_offer(t, s[j], first + (int32_t)j);
    }
}

size_t ix_make_groups(const size_t *order, size_t n_scan, const float *prof, size_t d, ix_group *g, float *a)
{
    size_t ng = 0, done = 0;
    for (size_t s = 0; ix_group_sizes[s]; s++)
        while (n_scan - done >= ix_group_sizes[s]) {
            size_t R = ix_group_sizes[s];
            g[ng] = (ix_group){R, done, a};
            for (size_t u = 0; u < R; u++)
                for (size_t k = 0; k < d; k++)
                    a[k * R + u] = prof[order[done + u] * d + k];
            a += R * d;
            done += R;
            ng++;
        }
    return ng;
}

/* Scans panels [p_lo, p_hi) for the n_scan queries of order. */
static void scan_catalog(const v4r_index *ix, const size_t *order, size_t n_scan, const float *prof,
                         query_state *st, size_t p_lo, size_t p_hi)
{
    size_t d = ix->h.dim, n_items = ix->h.n_items;
    size_t panel_bytes = IX_PANEL * d * ix_dtype_size((int)ix->h.dtype);
    size_t chunk = CHUNK_BYTES / panel_bytes ? CHUNK_BYTES / panel_bytes : 1, ldo = chunk * IX_PANEL;
    ix_group *g = v4r_malloc(n_scan * sizeof *g);
    float *a = v4r_malloc(n_scan * d * sizeof *a);
    float *out = v4r_malloc(12 * ldo * sizeof *out);
    size_t ng = ix_make_groups(order, n_scan, prof, d, g, a);
    for (size_t p0 = p_lo; p0 < p_hi; p0 += chunk) {
        size_t np = p_hi - p0 < chunk ? p_hi - p0 : chunk;
        size_t first = p0 * IX_PANEL, n = n_items - first < np * IX_PANEL ? n_items - first : np * IX_PANEL;
        for (size_t i = 0; i < ng; i++) {
            ix_score_panels(ix, g[i].a, g[i].R, p0, np, out, ldo);
            for (size_t u = 0; u < g[i].R; u++)
                offer_scores(&st[order[g[i].first + u]], out + u * ldo, n, (int32_t)first);
        }
    }
    free(g);
    free(a);
    free(out);
}

static void finish(query_state *st, size_t k, size_t kmax, int32_t *items, float *scores)
{
    v4r_topk_finish(&st->top, items, scores);
    for (size_t j = 0; j < kmax; j++)
        if (j >= k || items[j] < 0) {
            items[j] = -1;
            scores[j] = 0;
        }
}

query_state *ix_thread_states(query_state *st, query_state *parts, v4r_entry *heaps, size_t nq, size_t kmax, int t)
{
    if (t == 0)
        return st;
    query_state *mine = parts + (size_t)(t - 1) * nq;
    for (size_t q = 0; q < nq; q++) {
        mine[q] = st[q];
        mine[q].top.heap = heaps + ((size_t)(t - 1) * nq + q) * kmax;
        mine[q].top.n = 0;
    }
    return mine;
}

void ix_merge_threads(query_state *st, const query_state *parts, size_t nq, int threads, const size_t *order,
                      size_t n)
{
    for (int t = 1; t < threads; t++)
        for (size_t u = 0; u < n; u++) {
            const v4r_topk *from = &parts[(size_t)(t - 1) * nq + order[u]].top;
            for (size_t j = 0; j < from->n; j++)
                v4r_topk_offer(&st[order[u]].top, from->heap[j].s, from->heap[j].i);
        }
}

/* The scan split over threads by panel ranges: each thread keeps its own top-K lists (sharing the
 * blocked bits), merged afterwards (ix_merge_threads). */
static void scan_threads(const v4r_index *ix, const size_t *order, size_t n_scan, const float *prof, query_state *st,
                         size_t nq, size_t kmax, int threads)
{
    size_t n_panels = ix->n_panels;
    if (threads < 2 || n_panels < 2 * (size_t)threads) {
        scan_catalog(ix, order, n_scan, prof, st, 0, n_panels);
        return;
    }
    query_state *part = v4r_malloc((size_t)(threads - 1) * nq * sizeof *part);
    v4r_entry *heaps = v4r_malloc((size_t)(threads - 1) * nq * (kmax ? kmax : 1) * sizeof *heaps);
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int t = 0; t < threads; t++)
        scan_catalog(ix, order, n_scan, prof, ix_thread_states(st, part, heaps, nq, kmax, t),
                     n_panels * (size_t)t / (size_t)threads, n_panels * (size_t)(t + 1) / (size_t)threads);
    ix_merge_threads(st, part, nq, threads, order, n_scan);
    free(part);
    free(heaps);
}

/* The exact scan of the added items for the n queries of order, after the base scan. */
static void scan_added(const v4r_index *ix, const ix_delta *dl, const size_t *order, size_t n, const float *prof,
                       query_state *st)
{
    size_t d = ix->h.dim, panels = (dl->n_added + IX_PANEL - 1) / IX_PANEL, chunk = 64, ldo = chunk * IX_PANEL;
    ix_group *g = v4r_malloc(n * sizeof *g);
    float *a = v4r_malloc(n * d * sizeof *a), *out = v4r_malloc(12 * ldo * sizeof *out);
    size_t ng = ix_make_groups(order, n, prof, d, g, a);
    for (size_t p0 = 0; p0 < panels; p0 += chunk) {
        size_t np = panels - p0 < chunk ? panels - p0 : chunk, first = p0 * IX_PANEL;
        size_t m = dl->n_added - first < np * IX_PANEL ? dl->n_added - first : np * IX_PANEL;
        for (size_t i = 0; i < ng; i++) {
            ix_score_block(ix, (int)ix->h.dtype, dl->panels, dl->scales, g[i].a, g[i].R, p0, np, out, ldo);
            for (size_t u = 0; u < g[i].R; u++)
                offer_scores(&st[order[g[i].first + u]], out + u * ldo, m, (int32_t)(ix->h.n_items + first));
        }
    }
    free(g);
    free(a);
    free(out);
}

static size_t probes(const v4r_index *ix, size_t nprobe)
{
    size_t nlist = (size_t)ix->ivf.nlist;
    if (!nlist || nprobe == V4R_INDEX_EXACT)
        return 0;
    if (nprobe == 0)
        return (size_t)ix->ivf.nprobe;
    return nprobe < nlist ? nprobe : nlist;
}

static int search(const v4r_index *ix, const ix_delta *dl, const v4r_index_query *queries, size_t nq, size_t kmax,
                  int threads, int32_t *top_items, float *top_scores, v4r_err *err)
{
    size_t n_total = ix->h.n_items + (dl ? dl->n_added : 0);
    search_ctx ctx = {ix, dl};
    for (size_t q = 0; q < nq; q++) {
        int rc = check_query(ix, &queries[q], q, kmax, n_total, err);
        if (rc)
            return rc;
    }
    if (nq == 0)
        return V4R_OK;
    size_t d = ix->h.dim, words = (n_total + 63) / 64, n_scan = 0, n_ivf = 0, n_added = 0;
    float *prof = v4r_malloc(nq * d * sizeof *prof), *tmp = v4r_malloc(d * sizeof *tmp);
    query_state *st = v4r_calloc(nq, sizeof *st);
    uint64_t *bits = v4r_malloc(nq * words * sizeof *bits);
    v4r_entry *heaps = v4r_malloc((kmax ? nq * kmax : 1) * sizeof *heaps);
    size_t *order = v4r_malloc(nq * sizeof *order), *ivf_order = v4r_malloc(nq * sizeof *ivf_order);
    size_t *added_order = v4r_malloc(nq * sizeof *added_order);
    for (size_t q = 0; q < nq; q++) {
        const v4r_index_query *qr = &queries[q];
        if (qr->vector)
            memcpy(prof + q * d, qr->vector, d * sizeof *prof);
        else
            v4r_profile_rows(qr->history, qr->n_history, ix->h.profile_length, d, index_row, &ctx, tmp, prof + q * d);
        st[q].top = (v4r_topk){heaps + q * kmax, 0, qr->k, NULL, 0, NULL};
        st[q].blocked = bits + q * words;
        block_items(qr, words, st[q].blocked, dl ? dl->deleted : NULL);
        st[q].direct = qr->candidates && qr->n_candidates * 8 < ix->h.n_items;
        st[q].nprobe = probes(ix, qr->nprobe);
        if (!st[q].direct && dl && dl->n_added)
            added_order[n_added++] = q;
        if (st[q].direct)
            search_direct(ix, dl, qr, prof + q * d, &st[q]);
        else if (st[q].nprobe)
            ivf_order[n_ivf++] = q;
        else
            order[n_scan++] = q;
    }
    if (n_scan)
        scan_threads(ix, order, n_scan, prof, st, nq, kmax, threads);
    if (n_ivf)
        ivf_scan(ix, ivf_order, n_ivf, prof, st, nq, kmax, threads);
    if (n_added)
        scan_added(ix, dl, added_order, n_added, prof, st);
    for (size_t q = 0; q < nq; q++)
        finish(&st[q], queries[q].k, kmax, top_items + q * kmax, top_scores + q * kmax);
    free(prof);
    free(tmp);
    free(st);
    free(bits);
    free(heaps);
    free(order);
    free(ivf_order);
    free(added_order);
    return V4R_OK;
}

int v4r_index_search(const v4r_index *ix, const v4r_index_query *queries, size_t nq, size_t kmax,
                     int32_t *top_items, float *top_scores, v4r_err *err)
{
    return search(ix, NULL, queries, nq, kmax, 1, top_items, top_scores, err);
}

int v4r_index_search_threads(const v4r_index *ix, const v4r_index_query *queries, size_t nq, size_t kmax,
                             int threads, int32_t *top_items, float *top_scores, v4r_err *err)
{
    return search(ix, NULL, queries, nq, kmax, threads, top_items, top_scores, err);
}

int ix_search_delta(const v4r_index *ix, const ix_delta *dl, const v4r_index_query *queries, size_t nq, size_t kmax,
                    int threads, int32_t *top_items, float *top_scores, v4r_err *err)
{
    return search(ix, dl, queries, nq, kmax, threads, top_items, top_scores, err);
}

/* Profiles and exact cosine top-K over the candidates: one BLAS product per user block and item
 * chunk, a bounded heap per user with a threshold scan, history items masked. */
#include "vlm4rec/rec.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

enum { USER_BLOCK = 256, ITEM_CHUNK = 2048 };

void v4r_profile(const int32_t *hist, size_t n_hist, size_t history_length, const v4r_matrix *items, float *out)
{
    size_t d = items->cols, first = 0;
    if (history_length && n_hist > history_length)
        first = n_hist - history_length;
    memset(out, 0, d * sizeof *out);
    for (size_t h = first; h < n_hist; h++) {
        const float *row = items->data + (size_t)hist[h] * d;
        for (size_t c = 0; c < d; c++)
            out[c] += row[c];
    }
    /* the mean's 1/n factor vanishes in the renormalization */
    double ss = 0;
    for (size_t c = 0; c < d; c++)
        ss += (double)out[c] * out[c];
    if (ss > 0) {
        float inv = (float)(1.0 / sqrt(ss));
        for (size_t c = 0; c < d; c++)
            out[c] *= inv;
    }
}

typedef struct {
    float s;
    int32_t i; /* candidate position; ascending position = ascending item index */
} entry;

/* a ranks below b: lower score, or the same score and a higher index */
static int worse(entry a, entry b) { return a.s < b.s || (a.s == b.s && a.i > b.i); }

static void sift_down(entry *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(h[l], h[m]))
            m = l;
        if (r < n && worse(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        entry t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void sift_up(entry *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!worse(h[i], h[p]))
            return;
        entry t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* The per-user state of the scan: a min-heap of the best kmax so far and the sorted mask. */
typedef struct {
    entry *heap;
    size_t n, kmax;
    const int32_t *mask;
    size_t n_mask;
    const int32_t *cand_items; /* NULL: candidate position = item index */
} topk;

static int is_masked(const topk *t, int32_t pos)
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

static void offer(topk *t, float s, int32_t pos)
{
    if (is_masked(t, pos))
        return;
    entry e = {s, pos};
    if (t->n < t->kmax) {
        t->heap[t->n] = e;
        sift_up(t->heap, t->n++);
    } else if (worse(t->heap[0], e)) {
        t->heap[0] = e;
        sift_down(t->heap, t->n, 0);
    }
}

/* Scans n scores of candidates base..base+n-1, in ascending position. */
static void scan(topk *t, const float *s, size_t n, int32_t base)
{
    size_t j = 0;
    for (; j < n && t->n < t->kmax; j++)
        offer(t, s[j], base + (int32_t)j);
    if (t->kmax == 0)
        return;
    /* heap full: a later position with an equal score never wins, so a strict > test suffices */
    float thr = t->heap[0].s;
#ifdef __AVX2__
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(s + j);
        int bits = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(thr), _CMP_GT_OQ));
        while (bits) {
            int b = __builtin_ctz((unsigned)bits);
            bits &= bits - 1;
            if (s[j + (size_t)b] > thr) {
                offer(t, s[j + (size_t)b], base + (int32_t)(j + (size_t)b));
                thr = t->heap[0].s;
            }
        }
    }
#endif
    for (; j < n; j++)
        if (s[j] > thr) {
            offer(t, s[j], base + (int32_t)j);
            thr = t->heap[0].s;
        }
}

static int cmp_entry_best_first(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (worse(*x, *y))
        return 1;
    if (worse(*y, *x))
        return -1;
    return 0;
}

typedef struct {
    const v4r_eval_set *es;
    const v4r_protocol *p;
    const v4r_matrix *items;
    const float *cand; /* candidate rows: n_candidates x d */
    const int32_t *cand_items;
    size_t kmax;
    int32_t *top_items;
    float *top_scores;
} rank_job;

static void rank_block(const rank_job *job, size_t u0, size_t u1, float *prof, float *scores, entry *heaps)
{
    const v4r_eval_set *es = job->es;
    size_t d = job->items->cols, nb = u1 - u0, nc_total = es->n_candidates, kmax = job->kmax;
    topk t[USER_BLOCK];
    for (size_t j = 0; j < nb; j++) {
        size_t u = u0 + j;
        v4r_profile(es->hist + es->hist_off[u], es->hist_off[u + 1] - es->hist_off[u], job->p->history_length,
                    job->items, prof + j * d);
        t[j] = (topk){heaps + j * kmax, 0, kmax, es->mask + es->mask_off[u], es->mask_off[u + 1] - es->mask_off[u],
                      job->cand_items};
    }
    for (size_t c0 = 0; c0 < nc_total; c0 += ITEM_CHUNK) {
        size_t nc = nc_total - c0 < ITEM_CHUNK ? nc_total - c0 : ITEM_CHUNK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)nc, (int)d, 1.0f, prof, (int)d,
                    job->cand + c0 * d, (int)d, 0.0f, scores, ITEM_CHUNK);
        for (size_t j = 0; j < nb; j++)
            scan(&t[j], scores + j * ITEM_CHUNK, nc, (int32_t)c0);
    }
    for (size_t j = 0; j < nb; j++) {
        qsort(t[j].heap, t[j].n, sizeof(entry), cmp_entry_best_first);
        int32_t *out_items = job->top_items + (u0 + j) * kmax;
        float *out_scores = job->top_scores + (u0 + j) * kmax;
        for (size_t r = 0; r < kmax; r++) {
            int has = r < t[j].n;
            int32_t pos = has ? t[j].heap[r].i : -1;
            out_items[r] = !has ? -1 : job->cand_items ? job->cand_items[pos] : pos;
            out_scores[r] = has ? t[j].heap[r].s : NAN;
        }
    }
}

int v4r_rank(const v4r_eval_set *es, const v4r_protocol *p, const v4r_matrix *items, size_t kmax,
             int32_t *top_items, float *top_scores, v4r_err *err)
{
    size_t d = items->cols;
    if (d == 0 || items->rows == 0)
        return v4r_fail(err, V4R_EINPUT, "empty item vectors");
    rank_job job = {es, p, items, items->data, NULL, kmax, top_items, top_scores};
    float *gathered = NULL;
    if (es->n_candidates != items->rows) { /* a candidate subset: gather its rows once */
        gathered = v4r_malloc(es->n_candidates * d * sizeof *gathered);
        for (size_t c = 0; c < es->n_candidates; c++)
            memcpy(gathered + c * d, items->data + (size_t)es->candidates[c] * d, d * sizeof *gathered);
        job.cand = gathered;
        job.cand_items = es->candidates;
    }
    size_t nblocks = (es->n_eval + USER_BLOCK - 1) / USER_BLOCK;
    v4r_progress prog;
    v4r_progress_start(&prog, "ranking users", es->n_eval);
#pragma omp parallel
    {
        float *prof = v4r_malloc(USER_BLOCK * d * sizeof *prof);
        float *scores = v4r_malloc((size_t)USER_BLOCK * ITEM_CHUNK * sizeof *scores);
        entry *heaps = v4r_malloc(USER_BLOCK * (kmax ? kmax : 1) * sizeof *heaps);
#pragma omp for schedule(dynamic, 1)
        for (size_t b = 0; b < nblocks; b++) {
            size_t u0 = b * USER_BLOCK, u1 = u0 + USER_BLOCK < es->n_eval ? u0 + USER_BLOCK : es->n_eval;
            rank_block(&job, u0, u1, prof, scores, heaps);
            v4r_progress_add(&prog, u1 - u0);
        }
        free(prof);
        free(scores);
        free(heaps);
    }
    v4r_progress_end(&prog);
    free(gathered);
    return V4R_OK;
}

/* Ranking: kernel choice (VLM4REC_KERNEL), profiles, top-K output, the BLAS kernel, and ranking by a
 * model's own user vectors. */

/* The BLAS kernel: one product per user block and item chunk, then a threshold scan into bounded
 * heaps (rank_internal.h). The AVX-512 kernel (rank_avx512.c) is preferred where the CPU has it. */
#include "rank_internal.h"
#include "vlm4rec/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

enum { USER_BLOCK = 256, ITEM_CHUNK = 2048 };

void v4r_profile_rows(const int32_t *hist, size_t n_hist, size_t history_length, size_t d, v4r_row_fn row,
                      const void *ctx, float *tmp, float *out)
{
    v4r_profile_rows_weighted(hist, n_hist, history_length, NULL, d, row, ctx, tmp, out);
}

void v4r_profile_rows_weighted(const int32_t *hist, size_t n_hist, size_t history_length, const float *weight,
                               size_t d, v4r_row_fn row, const void *ctx, float *tmp, float *out)
{
    size_t first = 0;
    if (history_length && n_hist > history_length)
        first = n_hist - history_length;
    memset(out, 0, d * sizeof *out);
    for (size_t h = first; h < n_hist; h++) {
        const float *r = row(ctx, hist[h], h - first, tmp);
        if (weight) {
            float w = weight[hist[h]];
            for (size_t c = 0; c < d; c++)
                out[c] += w * r[c];
        } else {
            for (size_t c = 0; c < d; c++)
                out[c] += r[c];
        }
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

static const float *row_major(const void *ctx, int32_t item, size_t h, float *tmp)
{
    const v4r_matrix *m = ctx;
    (void)h;
    (void)tmp;
    return m->data + (size_t)item * m->cols;
}

void v4r_profile(const int32_t *hist, size_t n_hist, size_t history_length, const v4r_matrix *items, float *out)
{
    v4r_profile_rows(hist, n_hist, history_length, items->cols, row_major, items, NULL, out);
}

void v4r_topk_init(v4r_topk *t, const v4r_eval_set *es, size_t u, v4r_entry *heap, size_t kmax,
                   const int32_t *cand_items)
{
    *t = (v4r_topk){heap, 0, kmax, es->mask + es->mask_off[u], es->mask_off[u + 1] - es->mask_off[u], cand_items};
}

static int cmp_entry_best_first(const void *a, const void *b)
{
    const v4r_entry *x = a, *y = b;
    if (v4r_worse(*x, *y))
        return 1;
    if (v4r_worse(*y, *x))
        return -1;
    return 0;
}

void v4r_topk_finish(v4r_topk *t, int32_t *items, float *scores)
{
    qsort(t->heap, t->n, sizeof(v4r_entry), cmp_entry_best_first);
    for (size_t r = 0; r < t->kmax; r++) {
        int has = r < t->n;
        int32_t pos = has ? t->heap[r].i : -1;
        items[r] = !has ? -1 : t->cand_items ? t->cand_items[pos] : pos;
        scores[r] = has ? t->heap[r].s : NAN;
    }
}

/* Scans n scores of candidates base..base+n-1, in ascending position. */
static void scan(v4r_topk *t, const float *s, size_t n, int32_t base)
{
    size_t j = 0;
    for (; j < n && t->n < t->kmax; j++)
        v4r_topk_offer(t, s[j], base + (int32_t)j);
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
                v4r_topk_offer(t, s[j + (size_t)b], base + (int32_t)(j + (size_t)b));
                thr = t->heap[0].s;
            }
        }
    }
#endif
    for (; j < n; j++)
        if (s[j] > thr) {
            v4r_topk_offer(t, s[j], base + (int32_t)j);
            thr = t->heap[0].s;
        }
}

typedef struct {
    const v4r_eval_set *es;
    const v4r_protocol *p;
    const v4r_matrix *items;
    const v4r_matrix *users; /* NULL: profiles from the histories; else row u is user u's vector */
    const float *weight;     /* profile row weights (V4R_PROFILE_MEAN: the norms), or NULL */
    const float *cand; /* candidate rows: n_candidates x d */
    const int32_t *cand_items;
    size_t kmax;
    int32_t *top_items;
    float *top_scores;
} rank_job;

static void rank_block(const rank_job *job, size_t u0, size_t u1, float *prof, float *scores, v4r_entry *heaps)
{
    const v4r_eval_set *es = job->es;
    size_t d = job->items->cols, nb = u1 - u0, nc_total = es->n_candidates, kmax = job->kmax;
    v4r_topk t[USER_BLOCK];
    for (size_t j = 0; j < nb; j++) {
        if (job->users)
            memcpy(prof + j * d, job->users->data + (size_t)es->users[u0 + j] * d, d * sizeof *prof);
        else
            v4r_profile_rows_weighted(es->hist + es->hist_off[u0 + j], es->hist_off[u0 + j + 1] - es->hist_off[u0 + j],
                                      job->p->history_length, job->weight, d, row_major, job->items, NULL,
                                      prof + j * d);
        v4r_topk_init(&t[j], es, u0 + j, heaps + j * kmax, kmax, job->cand_items);
    }
    for (size_t c0 = 0; c0 < nc_total; c0 += ITEM_CHUNK) {
        size_t nc = nc_total - c0 < ITEM_CHUNK ? nc_total - c0 : ITEM_CHUNK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)nc, (int)d, 1.0f, prof, (int)d,
                    job->cand + c0 * d, (int)d, 0.0f, scores, ITEM_CHUNK);
        for (size_t j = 0; j < nb; j++)
            scan(&t[j], scores + j * ITEM_CHUNK, nc, (int32_t)c0);
    }
    for (size_t j = 0; j < nb; j++)
        v4r_topk_finish(&t[j], job->top_items + (u0 + j) * kmax, job->top_scores + (u0 + j) * kmax);
}

static void rank_blas(const v4r_eval_set *es, const v4r_protocol *p, const v4r_matrix *items,
                      const v4r_matrix *users, const float *weight, size_t kmax, int32_t *top_items,
                      float *top_scores)
{
    size_t d = items->cols;
    rank_job job = {es, p, items, users, weight, items->data, NULL, kmax, top_items, top_scores};
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
        v4r_entry *heaps = v4r_malloc(USER_BLOCK * (kmax ? kmax : 1) * sizeof *heaps);
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
}

/* The AVX-512 kernel transposes items->data in place while it runs and restores it bit-exactly
 * before returning: no other thread may read the matrix during the call. */
int v4r_rank(const v4r_eval_set *es, const v4r_protocol *p, const v4r_matrix *items, size_t kmax,
             int32_t *top_items, float *top_scores, v4r_err *err)
{
    return v4r_rank_norms(es, p, items, NULL, kmax, top_items, top_scores, err);
}

int v4r_rank_norms(const v4r_eval_set *es, const v4r_protocol *p, const v4r_matrix *items, const float *norms,
                   size_t kmax, int32_t *top_items, float *top_scores, v4r_err *err)
{
    if (items->cols == 0 || items->rows == 0)
        return v4r_fail(err, V4R_EINPUT, "empty item vectors");
    if (p->profile == V4R_PROFILE_MEAN && !norms)
        return v4r_fail(err, V4R_EUSAGE, "the mean profile needs the item vectors' norms");
    const float *weight = p->profile == V4R_PROFILE_MEAN ? norms : NULL;
    int kernel, rc = v4r_kernel_pick(&kernel, err);
    int avx512 = kernel == V4R_KERNEL_AVX512;
    if (rc)
        return rc;
    v4r_debug("ranking with the %s kernel", avx512 ? "avx512" : "blas");
    if (avx512)
        v4r_rank_avx512(es, p, items, weight, kmax, top_items, top_scores);
    else
        rank_blas(es, p, items, NULL, weight, kmax, top_items, top_scores);
    return V4R_OK;
}

int v4r_rank_native(const v4r_eval_set *es, const v4r_protocol *p, const v4r_matrix *users, const v4r_matrix *items,
                    size_t kmax, int32_t *top_items, float *top_scores, v4r_err *err)
{
    if (items->cols == 0 || items->rows == 0)
        return v4r_fail(err, V4R_EINPUT, "empty item vectors");
    if (users->cols != items->cols)
        return v4r_fail(err, V4R_EINPUT, "user vectors of %zu dimensions, item vectors of %zu", users->cols,
                        items->cols);
    rank_blas(es, p, items, users, NULL, kmax, top_items, top_scores);
    return V4R_OK;
}

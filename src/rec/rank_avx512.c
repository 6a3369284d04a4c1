/* The fused AVX-512 scoring + top-K kernel over 16-item k-major panels packed in place. */

/* Design: the candidates become panels of 16 items, k-major (one zmm per coordinate), by
 * transposing each 16-row block of the caller's matrix in place (a small padded panel for the
 * last rows, a gathered copy for a candidate subset), and back before returning. Each thread
 * takes blocks of up to 384 users; per block, for each chunk of panels (~384 KB, in L2), each
 * group of 12 users (profiles k-major) runs 12 x 32 register tiles over the full depth, and the
 * lanes above each user's heap threshold go to the shared top-K code in ascending item order.
 * Profiles need rows, which the panels scatter over 16x the memory: a thread takes its next block
 * one ahead and copies that block's history rows out of each tile while it is in cache. */
#include "rank_internal.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq")))

enum {
    PW = 16,              /* items per panel (one zmm) */
    MR = 12,              /* users per register tile */
    NR = 2 * PW,          /* items per register tile */
    GROUPS = 32,          /* user groups of MR per block */
    UBLOCK = MR * GROUPS  /* users per block (one scheduling unit) at most */
};
#define CHUNK_BYTES ((size_t)384 * 1024)      /* packed panels scanned per pass over a block's groups */
#define STAGE_BYTES ((size_t)1 * 1024 * 1024) /* history rows staged per thread at most */

/* ---- the candidates as panels ---- */

/* Panel p holds positions 16p..16p+15, element (k, lane) at k * 16 + lane. */
typedef struct {
    float *full;       /* n_full consecutive panels */
    float *tail;       /* the last, partial panel with zero lanes, or NULL */
    float *owned;      /* gathered storage of a subset; NULL when full is the caller's matrix */
    const float *rows; /* the caller's matrix; rows n_full * 16 and above stay row-major */
    size_t n_full, n_panels, n, d;
} panels;

static const float *panel_at(const panels *pk, size_t p)
{
    return p < pk->n_full ? pk->full + p * PW * pk->d : pk->tail;
}

/* Whether item's row is currently only available from its panel. */
static int in_panel(const panels *pk, int32_t item) { return !pk->owned && (size_t)item < pk->n_full * PW; }

static void panel_column(const panels *pk, int32_t item, float *out)
{
    size_t i = (size_t)item, d = pk->d;
    const float *col = pk->full + (i / PW) * PW * d + i % PW;
    for (size_t k = 0; k < d; k++)
        out[k] = col[k * PW];
}

static void block_to_panel(float *blk, size_t d, float *tmp)
{
    memcpy(tmp, blk, PW * d * sizeof *tmp);
    for (size_t k = 0; k < d; k++)
        for (size_t r = 0; r < PW; r++)
            blk[k * PW + r] = tmp[r * d + k];
}

static void panel_to_block(float *blk, size_t d, float *tmp)
{
    memcpy(tmp, blk, PW * d * sizeof *tmp);
    for (size_t r = 0; r < PW; r++)
        for (size_t k = 0; k < d; k++)
            blk[r * d + k] = tmp[k * PW + r];
}

/* Transposes every full 16-row block of data into a panel (to_panels) or back. */
static void transpose_blocks(float *data, size_t n_full, size_t d, int to_panels)
{
#pragma omp parallel
    {
        float *tmp = v4r_malloc(PW * d * sizeof *tmp);
#pragma omp for schedule(static)
        for (size_t b = 0; b < n_full; b++) {
            if (to_panels)
                block_to_panel(data + b * PW * d, d, tmp);
            else
                panel_to_block(data + b * PW * d, d, tmp);
        }
        free(tmp);
    }
}

/* Candidates first..first+nrows-1 (idx: their item indices, NULL = identity) into one
 * zero-padded panel. */
static void rows_to_panel(float *dst, const float *data, const int32_t *idx, size_t first, size_t nrows, size_t d)
{
    memset(dst, 0, PW * d * sizeof *dst);
    for (size_t r = 0; r < nrows; r++) {
        const float *row = data + (idx ? (size_t)idx[first + r] : first + r) * d;
        for (size_t k = 0; k < d; k++)
            dst[k * PW + r] = row[k];
    }
}

static void panels_build(panels *pk, const v4r_eval_set *es, const v4r_matrix *items)
{
    size_t n = es->n_candidates, d = items->cols;
    *pk = (panels){.rows = items->data, .n = n, .d = d, .n_panels = (n + PW - 1) / PW};
    if (n != items->rows) { /* a (small) subset: gather it, the caller's matrix stays as it is */
        pk->owned = v4r_malloc(pk->n_panels * PW * d * sizeof *pk->owned);
#pragma omp parallel for schedule(static)
        for (size_t p = 0; p < pk->n_panels; p++)
            rows_to_panel(pk->owned + p * PW * d, items->data, es->candidates, p * PW,
                          n - p * PW < PW ? n - p * PW : PW, d);
        pk->full = pk->owned;
        pk->n_full = pk->n_panels;
        return;
    }
    pk->full = items->data;
    pk->n_full = n / PW;
    transpose_blocks(items->data, pk->n_full, d, 1);
    if (n % PW) {
        pk->tail = v4r_malloc(PW * d * sizeof *pk->tail);
        rows_to_panel(pk->tail, items->data, NULL, pk->n_full * PW, n % PW, d);
    }
}

static void panels_release(panels *pk)
{
    if (pk->owned)
        free(pk->owned);
    else
        transpose_blocks(pk->full, pk->n_full, pk->d, 0);
    free(pk->tail);
}

/* ---- the register tile ---- */

#define V4R_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define V4R_DECL(u) __m512 c0_##u = _mm512_setzero_ps(), c1_##u = _mm512_setzero_ps();
#define V4R_STEP(u)                                                                                                  \
    {                                                                                                                \
        __m512 s_ = _mm512_set1_ps(a[u]);                                                                            \
        c0_##u = _mm512_fmadd_ps(s_, x0, c0_##u);                                                                    \
        if (two)                                                                                                     \
            c1_##u = _mm512_fmadd_ps(s_, x1, c1_##u);                                                                \
    }
/* store the scores; the mask: lanes above the threshold (all lanes when it is NaN: heap not full) */
#define V4R_TEST(u)                                                                                                  \
    {                                                                                                                \
        __m512 t_ = _mm512_set1_ps(thr[u]);                                                                          \
        _mm512_storeu_ps(out + u * NR, c0_##u);                                                                      \
        _mm512_storeu_ps(out + u * NR + PW, c1_##u);                                                                 \
        mask[u] = (uint32_t)_mm512_cmp_ps_mask(c0_##u, t_, _CMP_NLE_UQ) |                                            \
                  (uint32_t)_mm512_cmp_ps_mask(c1_##u, t_, _CMP_NLE_UQ) << PW;                                       \
    }

/* out[u * NR + j] = a_u . item j for MR users (a: k-major, MR per k) and one or two panels, and
 * mask[u] the lanes of user u that beat thr[u]. */
static inline __attribute__((always_inline)) AVX512 void tile_dot(const float *restrict a, const float *restrict b0,
                                                                 const float *restrict b1, size_t d, const float *thr,
                                                                 float *restrict out, uint32_t *mask, int two)
{
    V4R_ROWS(V4R_DECL)
    for (size_t k = 0; k < d; k++, a += MR) {
        __m512 x0 = _mm512_loadu_ps(b0 + k * PW), x1 = two ? _mm512_loadu_ps(b1 + k * PW) : x0;
        V4R_ROWS(V4R_STEP)
    }
    V4R_ROWS(V4R_TEST)
}

static AVX512 void tile_dot2(const float *a, const float *b0, const float *b1, size_t d, const float *thr, float *out,
                             uint32_t *mask)
{
    tile_dot(a, b0, b1, d, thr, out, mask, 1);
}

static AVX512 void tile_dot1(const float *a, const float *b0, size_t d, const float *thr, float *out, uint32_t *mask)
{
    tile_dot(a, b0, b0, d, thr, out, mask, 0);
}

/* Offers the passing lanes (positions base + j) in ascending order, rechecking the rising threshold. */
static void tile_offer(v4r_topk *t, size_t nu, const float *s, const uint32_t *mask, int32_t base, uint32_t valid)
{
    for (size_t u = 0; u < nu; u++, s += NR) {
        v4r_topk *tu = &t[u];
        for (uint32_t m = mask[u] & valid; m; m &= m - 1) {
            int j = __builtin_ctz(m);
            /* full: a later position needs a strictly greater score */
            if (tu->n < tu->kmax || s[j] > tu->heap[0].s)
                v4r_topk_offer(tu, s[j], base + j);
        }
    }
}

/* ---- staging the next block's history rows ---- */

typedef struct {
    int32_t item;
    uint32_t slot;
} stage_ent;

/* The history rows of one block: user j's window rows at slots slot0[j].., for users below n_users;
 * ents lists the slots to fill from panels, by item. */
typedef struct {
    size_t n_users, n_ents, next, cap;
    size_t slot0[UBLOCK + 1];
    stage_ent *ents; /* cap */
    float *rows;     /* cap x d */
} stage;

static int cmp_ent(const void *a, const void *b)
{
    const stage_ent *x = a, *y = b;
    return x->item < y->item ? -1 : x->item > y->item ? 1 : (x->slot > y->slot) - (x->slot < y->slot);
}

/* The window of user u: hist[first..n). */
static const int32_t *window(const v4r_eval_set *es, size_t u, size_t history_length, size_t *n)
{
    size_t n_hist = es->hist_off[u + 1] - es->hist_off[u], first = 0;
    if (history_length && n_hist > history_length)
        first = n_hist - history_length;
    *n = n_hist - first;
    return es->hist + es->hist_off[u] + first;
}

/* Plans the staging of users u0..u0+nb-1 (as many as fit), rows to be filled chunk by chunk. */
static void stage_plan(stage *st, const v4r_eval_set *es, const panels *pk, size_t history_length, size_t u0,
                       size_t nb)
{
    st->n_ents = st->next = st->n_users = 0;
    st->slot0[0] = 0;
    for (size_t j = 0; j < nb && !pk->owned; j++) {
        size_t n;
        const int32_t *w = window(es, u0 + j, history_length, &n);
        if (st->slot0[j] + n > st->cap)
            break;
        for (size_t h = 0; h < n; h++)
            if (in_panel(pk, w[h]))
                st->ents[st->n_ents++] = (stage_ent){w[h], (uint32_t)(st->slot0[j] + h)};
        st->slot0[j + 1] = st->slot0[j] + n;
        st->n_users = j + 1;
    }
    qsort(st->ents, st->n_ents, sizeof *st->ents, cmp_ent);
}

/* Copies the planned rows whose panels are below p_end (the chunk just scanned, still in cache). */
static void stage_collect(stage *st, const panels *pk, size_t p_end)
{
    for (; st->next < st->n_ents && (size_t)st->ents[st->next].item < p_end * PW; st->next++)
        panel_column(pk, st->ents[st->next].item, st->rows + (size_t)st->ents[st->next].slot * pk->d);
}

/* Row source of a block's profiles: staged rows, else the row-major rows, else the panel. */
typedef struct {
    const panels *pk;
    const stage *st; /* NULL: nothing staged for this block */
    size_t j;        /* the user within the block */
} row_ctx;

static const float *block_row(const void *ctx, int32_t item, size_t h, float *tmp)
{
    const row_ctx *c = ctx;
    if (!in_panel(c->pk, item))
        return c->pk->rows + (size_t)item * c->pk->d;
    if (c->st && c->j < c->st->n_users)
        return c->st->rows + (c->st->slot0[c->j] + h) * c->pk->d;
    panel_column(c->pk, item, tmp);
    return tmp;
}

/* ---- blocks of users ---- */

typedef struct {
    const v4r_eval_set *es;
    size_t history_length, kmax, chunk; /* chunk: panels per pass, even */
    const float *weight;                /* profile row weights (V4R_PROFILE_MEAN), or NULL */
    const panels *pk;
    const int32_t *cand_items;
    int32_t *top_items;
    float *top_scores;
    size_t block, nblocks, next_block; /* users per block; next_block: shared, taken atomically */
    v4r_progress *prog;
} job;

typedef struct {
    float *prof; /* GROUPS groups of d x MR, k-major */
    float *row, *tmp;
    v4r_entry *heaps;
    v4r_topk t[UBLOCK];
    stage st;
    float tile[MR * NR];
    uint32_t mask[MR];
    float thr[MR];
} work;

static work *work_new(size_t d, size_t kmax)
{
    work *w = v4r_malloc(sizeof *w);
    w->prof = v4r_malloc(UBLOCK * d * sizeof *w->prof);
    w->row = v4r_malloc(d * sizeof *w->row);
    w->tmp = v4r_malloc(d * sizeof *w->tmp);
    w->heaps = v4r_malloc(UBLOCK * (kmax ? kmax : 1) * sizeof *w->heaps);
    w->st.cap = STAGE_BYTES / (d * sizeof(float));
    w->st.ents = v4r_malloc(w->st.cap * sizeof *w->st.ents);
    w->st.rows = v4r_malloc(w->st.cap * d * sizeof *w->st.rows);
    return w;
}

static void work_free(work *w)
{
    free(w->prof);
    free(w->row);
    free(w->tmp);
    free(w->heaps);
    free(w->st.ents);
    free(w->st.rows);
    free(w);
}

/* Profiles of users u0..u0+nb-1 into the k-major groups (zero rows pad the last group), and
 * their empty heaps. st: the rows staged for this block, or NULL. */
static void block_profiles(const job *jb, work *w, size_t u0, size_t nb, const stage *st)
{
    size_t d = jb->pk->d, padded = (nb + MR - 1) / MR * MR;
    for (size_t j = 0; j < padded; j++) {
        if (j < nb) {
            size_t n;
            const int32_t *win = window(jb->es, u0 + j, jb->history_length, &n);
            row_ctx c = {jb->pk, st, j};
            v4r_profile_rows_weighted(win, n, 0, jb->weight, d, block_row, &c, w->tmp, w->row);
            v4r_topk_init(&w->t[j], jb->es, u0 + j, w->heaps + j * jb->kmax, jb->kmax, jb->cand_items);
        } else
            memset(w->row, 0, d * sizeof *w->row);
        float *g = w->prof + j / MR * MR * d + j % MR;
        for (size_t k = 0; k < d; k++)
            g[k * MR] = w->row[k];
    }
}

/* One group of nu users (profiles a, heaps t) against panels p and, when p + 1 < p_end, p + 1. */
static void group_tile(const job *jb, work *w, const float *a, v4r_topk *t, size_t nu, size_t p, size_t p_end)
{
    const panels *pk = jb->pk;
    for (size_t u = 0; u < MR; u++)
        w->thr[u] = u < nu && t[u].n == t[u].kmax ? t[u].heap[0].s : NAN;
    size_t left = pk->n - p * PW;
    uint32_t valid = left >= NR ? 0xffffffffu : (1u << left) - 1;
    if (p + 1 < p_end)
        tile_dot2(a, panel_at(pk, p), panel_at(pk, p + 1), pk->d, w->thr, w->tile, w->mask);
    else {
        tile_dot1(a, panel_at(pk, p), pk->d, w->thr, w->tile, w->mask);
        valid &= 0xffffu;
    }
    tile_offer(t, nu, w->tile, w->mask, (int32_t)(p * PW), valid);
}

/* Ranks the nb users of a block (profiles built); the last group's pass over each tile also
 * copies the next block's history rows out of the panels while they are in cache. */
static void block_scan(const job *jb, work *w, size_t nb)
{
    size_t d = jb->pk->d, np = jb->pk->n_panels, ng = (nb + MR - 1) / MR;
    for (size_t c0 = 0; c0 < np; c0 += jb->chunk) {
        size_t c1 = c0 + jb->chunk < np ? c0 + jb->chunk : np;
        for (size_t g = 0; g < ng; g++) {
            size_t nu = nb - g * MR < MR ? nb - g * MR : MR;
            for (size_t p = c0; p < c1; p += 2) {
                group_tile(jb, w, w->prof + g * MR * d, &w->t[g * MR], nu, p, c1);
                if (g + 1 == ng)
                    stage_collect(&w->st, jb->pk, p + 2 < c1 ? p + 2 : c1);
            }
        }
    }
}

static size_t take_block(job *jb)
{
    size_t b;
#pragma omp atomic capture
    b = jb->next_block++;
    return b;
}

/* The number of users in block b (0 past the end). */
static size_t block_users(const job *jb, size_t b)
{
    if (b >= jb->nblocks)
        return 0;
    size_t left = jb->es->n_eval - b * jb->block;
    return left < jb->block ? left : jb->block;
}

/* One thread's share: blocks taken one ahead, so the next block's rows stage during this one. */
static void worker(job *jb)
{
    work *w = work_new(jb->pk->d, jb->kmax);
    const stage *staged = NULL;
    for (size_t b = take_block(jb); b < jb->nblocks;) {
        size_t u0 = b * jb->block, nb = block_users(jb, b);
        block_profiles(jb, w, u0, nb, staged);
        size_t next = take_block(jb);
        stage_plan(&w->st, jb->es, jb->pk, jb->history_length, next * jb->block, block_users(jb, next));
        block_scan(jb, w, nb);
        staged = &w->st;
        for (size_t j = 0; j < nb; j++)
            v4r_topk_finish(&w->t[j], jb->top_items + (u0 + j) * jb->kmax, jb->top_scores + (u0 + j) * jb->kmax);
        v4r_progress_add(jb->prog, nb);
        b = next;
    }
    work_free(w);
}

/* Users per block: UBLOCK, or fewer (a multiple of MR) so that each thread gets about 4 blocks. */
static size_t block_size(size_t n_eval)
{
    size_t parts = 4 * (size_t)omp_get_max_threads(), b = (n_eval + parts - 1) / parts;
    b = (b + MR - 1) / MR * MR;
    return b < MR ? MR : b > UBLOCK ? UBLOCK : b;
}

static size_t chunk_panels(size_t d)
{
    size_t c = CHUNK_BYTES / (PW * d * sizeof(float));
    c &= ~(size_t)1;
    return c < 2 ? 2 : c;
}

void v4r_rank_avx512(const v4r_eval_set *es, const v4r_protocol *p, const v4r_matrix *items, const float *weight,
                     size_t kmax, int32_t *top_items, float *top_scores)
{
    if (kmax == 0 || es->n_eval == 0)
        return;
    panels pk;
    double t0 = v4r_now();
    panels_build(&pk, es, items);
    double t1 = v4r_now();
    v4r_progress prog;
    size_t block = block_size(es->n_eval);
    job jb = {es,
              p->history_length,
              kmax,
              chunk_panels(items->cols),
              weight,
              &pk,
              es->n_candidates != items->rows ? es->candidates : NULL,
              top_items,
              top_scores,
              block,
              (es->n_eval + block - 1) / block,
              0,
              &prog};
    v4r_progress_start(&prog, "ranking users", es->n_eval);
#pragma omp parallel
    worker(&jb);
    v4r_progress_end(&prog);
    double t2 = v4r_now();
    panels_release(&pk);
    v4r_debug("avx512 kernel: pack %.3fs, rank %.3fs, unpack %.3fs", t1 - t0, t2 - t1, v4r_now() - t2);
}

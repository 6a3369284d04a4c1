/* The IVF section of the index file: its layout and sub-header, the checks at open, and the
 * approximate scan (probe the lists whose centroids score highest, score their items with the
 * index's kernels, keep the exact search's order and masks). */
#include "internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Byte positions of the sub-header fields. */
enum {
    V_MAGIC = 0,
    V_NLIST = 8,
    V_NPROBE = 16,
    V_RECALL_K = 24,
    V_RECALL_USERS = 32,
    V_RECALL_EXACT = 40,
    V_RECALL_F32 = 48,
    V_LIST_PANELS = 56,
    V_TRAIN = 64,
    V_ITERATIONS = 72,
    V_SEED = 80,
    V_END = 88, /* bytes 88..127 are zero */
};

void ivf_header_encode(const ivf_header *v, unsigned char *out)
{
    memset(out, 0, IVF_HEAD_BYTES);
    memcpy(out + V_MAGIC, IVF_MAGIC, 8);
    ix_put_u64(out + V_NLIST, v->nlist);
    ix_put_u64(out + V_NPROBE, v->nprobe);
    ix_put_u64(out + V_RECALL_K, v->recall_k);
    ix_put_u64(out + V_RECALL_USERS, v->recall_users);
    ix_put_f64(out + V_RECALL_EXACT, v->recall_vs_exact);
    ix_put_f64(out + V_RECALL_F32, v->recall_vs_f32);
    ix_put_u64(out + V_LIST_PANELS, v->list_panels);
    ix_put_u64(out + V_TRAIN, v->train_vectors);
    ix_put_u64(out + V_ITERATIONS, v->iterations);
    ix_put_u64(out + V_SEED, v->seed);
}

void ivf_header_decode(const unsigned char *in, ivf_header *v)
{
    v->nlist = ix_get_u64(in + V_NLIST);
    v->nprobe = ix_get_u64(in + V_NPROBE);
    v->recall_k = ix_get_u64(in + V_RECALL_K);
    v->recall_users = ix_get_u64(in + V_RECALL_USERS);
    v->recall_vs_exact = ix_get_f64(in + V_RECALL_EXACT);
    v->recall_vs_f32 = ix_get_f64(in + V_RECALL_F32);
    v->list_panels = ix_get_u64(in + V_LIST_PANELS);
    v->train_vectors = ix_get_u64(in + V_TRAIN);
    v->iterations = ix_get_u64(in + V_ITERATIONS);
    v->seed = ix_get_u64(in + V_SEED);
}

static uint64_t up64(uint64_t n) { return (n + IX_ALIGN - 1) / IX_ALIGN * IX_ALIGN; }

void ivf_layout(const ivf_header *v, uint64_t n_items, uint64_t dim, int dtype, ix_section part[IVF_NPARTS],
                uint64_t *total)
{
    uint64_t len[IVF_NPARTS];
    len[IVF_CENTROIDS] = (v->nlist + IX_PANEL - 1) / IX_PANEL * IX_PANEL * dim * 4;
    len[IVF_LIST_OFF] = (v->nlist + 1) * 8;
    len[IVF_LIST_PANEL] = (v->nlist + 1) * 8;
    len[IVF_LIST_ITEMS] = n_items * 4;
    len[IVF_LIST_VECTORS] = v->list_panels * IX_PANEL * dim * ix_dtype_size(dtype);
    len[IVF_LIST_SCALES] = dtype == V4R_INDEX_I8 ? v->list_panels * IX_PANEL * 4 : 0;
    uint64_t at = IVF_HEAD_BYTES;
    for (int p = 0; p < IVF_NPARTS; p++) {
        at = up64(at);
        part[p] = (ix_section){at, len[p]};
        at += len[p];
    }
    *total = at;
}

void ivf_attach(v4r_index *ix)
{
    const unsigned char *b = ix->base + ix->h.ivf.off;
    memset(&ix->ivf, 0, sizeof ix->ivf);
    if (ix->h.ivf.len < IVF_HEAD_BYTES)
        return; /* refused by ivf_check */
    ivf_header_decode(b, &ix->ivf);
    ix_section part[IVF_NPARTS];
    uint64_t total = UINT64_MAX;
    if (ix->ivf.nlist <= ix->h.n_items && ix->ivf.list_panels <= ix->n_panels + ix->ivf.nlist)
        ivf_layout(&ix->ivf, ix->h.n_items, ix->h.dim, (int)ix->h.dtype, part, &total);
    if (total > ix->h.ivf.len) { /* refused by ivf_check; no lists meanwhile */
        ix->ivf.nlist = 0;
        return;
    }
    ix->centroids = (const float *)(const void *)(b + part[IVF_CENTROIDS].off);
    ix->list_off = (const uint64_t *)(const void *)(b + part[IVF_LIST_OFF].off);
    ix->list_panel = (const uint64_t *)(const void *)(b + part[IVF_LIST_PANEL].off);
    ix->list_items = (const int32_t *)(const void *)(b + part[IVF_LIST_ITEMS].off);
    ix->list_vectors = b + part[IVF_LIST_VECTORS].off;
    ix->list_scales = ix->h.dtype == V4R_INDEX_I8 ? (const float *)(const void *)(b + part[IVF_LIST_SCALES].off)
                                                  : NULL;
}

/* ---- checks ---- */

static int bad(v4r_err *err, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(v4r_err *err, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return v4r_fail(err, V4R_EINPUT, "%s: section 'ivf': %s", path, msg);
}

static int recall_ok(double r) { return r == -1 || (r >= 0 && r <= 1); }

static int check_head(const v4r_index *ix, const unsigned char *b, const char *path, v4r_err *err)
{
    ivf_header raw;
    if (ix->h.ivf.len < IVF_HEAD_BYTES || memcmp(b, IVF_MAGIC, 8) != 0)
        return bad(err, path, "no sub-header (it must start with V4RIVF)");
    ivf_header_decode(b, &raw);
    if (raw.nlist == 0 || raw.nlist > ix->h.n_items)
        return bad(err, path, "field 'nlist' is %llu (1 to n_items)", (unsigned long long)raw.nlist);
    if (raw.nprobe == 0 || raw.nprobe > raw.nlist)
        return bad(err, path, "field 'nprobe' is %llu (1 to nlist = %llu)", (unsigned long long)raw.nprobe,
                   (unsigned long long)raw.nlist);
    if (!recall_ok(raw.recall_vs_exact) || !recall_ok(raw.recall_vs_f32))
        return bad(err, path, "fields 'recall_vs_exact' / 'recall_vs_f32' are %g / %g (-1, or 0 to 1)",
                   raw.recall_vs_exact, raw.recall_vs_f32);
    if (raw.list_panels > ix->n_panels + raw.nlist)
        return bad(err, path, "field 'list_panels' is %llu, more than items and lists allow",
                   (unsigned long long)raw.list_panels);
    for (int i = V_END; i < IVF_HEAD_BYTES; i++)
        if (b[i])
            return bad(err, path, "sub-header bytes %d..%d are not zero", V_END, IVF_HEAD_BYTES - 1);
    ix_section part[IVF_NPARTS];
    uint64_t total;
    ivf_layout(&raw, ix->h.n_items, ix->h.dim, (int)ix->h.dtype, part, &total);
    if (total != ix->h.ivf.len)
        return bad(err, path, "length %llu, the counts in its sub-header give %llu",
                   (unsigned long long)ix->h.ivf.len, (unsigned long long)total);
    return V4R_OK;
}

static int check_lists(const v4r_index *ix, const char *path, v4r_err *err)
{
    uint64_t nlist = ix->ivf.nlist, n = ix->h.n_items;
    if (ix->list_off[0] != 0 || ix->list_off[nlist] != n || ix->list_panel[0] != 0 ||
        ix->list_panel[nlist] != ix->ivf.list_panels)
        return bad(err, path, "part 'list_offsets' must run from 0 to n_items, 'list_panels' from 0 to list_panels");
    for (uint64_t l = 0; l < nlist; l++) {
        if (ix->list_off[l + 1] < ix->list_off[l])
            return bad(err, path, "part 'list_offsets': offset %llu decreases", (unsigned long long)(l + 1));
        uint64_t panels = (ix->list_off[l + 1] - ix->list_off[l] + IX_PANEL - 1) / IX_PANEL;
        if (ix->list_panel[l + 1] - ix->list_panel[l] != panels)
            return bad(err, path, "part 'list_panels': list %llu has %llu panels, its %llu items take %llu",
                       (unsigned long long)l, (unsigned long long)(ix->list_panel[l + 1] - ix->list_panel[l]),
                       (unsigned long long)(ix->list_off[l + 1] - ix->list_off[l]), (unsigned long long)panels);
    }
    uint64_t *seen = v4r_calloc((n + 63) / 64, sizeof *seen);
    int rc = V4R_OK;
    for (uint64_t i = 0; i < n && !rc; i++) {
        int32_t it = ix->list_items[i];
        if (it < 0 || (uint64_t)it >= n || ix_is_set(seen, it))
            rc = bad(err, path, "part 'list_items': entry %llu is item %d (every item once, below %llu)",
                     (unsigned long long)i, it, (unsigned long long)n);
        else
            seen[it >> 6] |= (uint64_t)1 << (it & 63);
    }
    free(seen);
    return rc;
}

static int check_numbers(const v4r_index *ix, const char *path, v4r_err *err)
{
    size_t nc = (size_t)((ix->ivf.nlist + IX_PANEL - 1) / IX_PANEL * IX_PANEL * ix->h.dim);
    for (size_t i = 0; i < nc; i++)
        if (!isfinite(ix->centroids[i]))
            return bad(err, path, "part 'centroids': value %zu is not a finite number", i);
    for (size_t i = 0; ix->list_scales && i < ix->ivf.list_panels * IX_PANEL; i++)
        if (!(isfinite(ix->list_scales[i]) && ix->list_scales[i] > 0))
            return bad(err, path, "part 'list_scales': scale %zu is %g, not a positive number", i,
                       (double)ix->list_scales[i]);
    return V4R_OK;
}

int ivf_check(const v4r_index *ix, const char *path, v4r_err *err)
{
    int rc = check_head(ix, ix->base + ix->h.ivf.off, path, err);
    if (!rc)
        rc = check_lists(ix, path, err);
    return rc ? rc : check_numbers(ix, path, err);
}

/* ---- search ---- */

/* The lists query q probes: the st->nprobe best centroids by (score desc, list asc). */
static void pick_lists(const float *cscore, size_t nlist, size_t nprobe, v4r_entry *heap, int32_t *lists)
{
    v4r_topk t = {heap, 0, nprobe, NULL, 0, NULL};
    for (size_t l = 0; l < nlist; l++)
        if (t.n < nprobe || !(cscore[l] < heap[0].s))
            v4r_topk_offer(&t, cscore[l], (int32_t)l);
    for (size_t j = 0; j < t.n; j++)
        lists[j] = heap[j].i;
}

/* Every query's probed lists into a CSR by list: the queries probing list l are
 * qs[qoff[l] .. qoff[l + 1]), ascending. */
static void probe_lists(const v4r_index *ix, const size_t *order, size_t n, const float *prof, const query_state *st,
                        uint64_t *qoff, size_t **qs_out)
{
    size_t d = ix->h.dim, nlist = (size_t)ix->ivf.nlist, cp = (nlist + IX_PANEL - 1) / IX_PANEL, ldo = cp * IX_PANEL;
    ix_group *g = v4r_malloc(n * sizeof *g);
    float *a = v4r_malloc(n * d * sizeof *a), *out = v4r_malloc(12 * ldo * sizeof *out);
    size_t total = 0;
    for (size_t u = 0; u < n; u++)
        total += st[order[u]].nprobe;
    int32_t *lists = v4r_malloc((total ? total : 1) * sizeof *lists);
    v4r_entry *heap = v4r_malloc(nlist * sizeof *heap);
    size_t ng = ix_make_groups(order, n, prof, d, g, a), at = 0;
    for (size_t i = 0; i < ng; i++) {
        ix_score_block(ix, V4R_INDEX_F32, ix->centroids, NULL, g[i].a, g[i].R, 0, cp, out, ldo);
        for (size_t u = 0; u < g[i].R; u++) {
            size_t np = st[order[g[i].first + u]].nprobe;
            pick_lists(out + u * ldo, nlist, np, heap, lists + at);
            at += np;
        }
    }
    /* the groups run in order, so lists holds the queries' picks in order */
    memset(qoff, 0, (nlist + 1) * sizeof *qoff);
    for (size_t j = 0; j < total; j++)
        qoff[lists[j] + 1]++;
    for (size_t l = 0; l < nlist; l++)
        qoff[l + 1] += qoff[l];
    size_t *qs = v4r_malloc((total ? total : 1) * sizeof *qs), *fill = v4r_malloc((nlist + 1) * sizeof *fill);
    for (size_t l = 0; l <= nlist; l++)
        fill[l] = (size_t)qoff[l];
    at = 0;
    for (size_t u = 0; u < n; u++)
        for (size_t j = 0; j < st[order[u]].nprobe; j++, at++)
            qs[fill[lists[at]]++] = order[u];
    free(fill);
    free(g);
    free(a);
    free(out);
    free(lists);
    free(heap);
    *qs_out = qs;
}

static void offer_list(query_state *st, const float *s, size_t n, const int32_t *ids)
{
    v4r_topk *t = &st->top;
    if (t->kmax == 0)
        return;
    for (size_t j = 0; j < n; j++) {
        if (t->n == t->kmax && s[j] < t->heap[0].s)
            continue;
        if (!ix_is_set(st->blocked, ids[j]))
            v4r_topk_offer(t, s[j], ids[j]);
    }
}

enum { LIST_CHUNK_PANELS = 64 };

/* Scans lists [l_lo, l_hi) for the queries probing them. */
static void scan_lists(const v4r_index *ix, const uint64_t *qoff, const size_t *qs, const float *prof,
                       query_state *st, size_t l_lo, size_t l_hi, size_t max_q)
{
    size_t d = ix->h.dim, ldo = LIST_CHUNK_PANELS * IX_PANEL;
    ix_group *g = v4r_malloc((max_q ? max_q : 1) * sizeof *g);
    float *a = v4r_malloc((max_q ? max_q : 1) * d * sizeof *a), *out = v4r_malloc(12 * ldo * sizeof *out);
    for (size_t l = l_lo; l < l_hi; l++) {
        size_t nql = (size_t)(qoff[l + 1] - qoff[l]);
        if (!nql)
            continue;
        const size_t *order = qs + qoff[l];
        size_t ng = ix_make_groups(order, nql, prof, d, g, a);
        uint64_t first = ix->list_off[l], n_items = ix->list_off[l + 1] - first;
        for (uint64_t p = 0; p < ix->list_panel[l + 1] - ix->list_panel[l]; p += LIST_CHUNK_PANELS) {
            size_t np = (size_t)(ix->list_panel[l + 1] - ix->list_panel[l] - p);
            np = np < LIST_CHUNK_PANELS ? np : LIST_CHUNK_PANELS;
            size_t at = (size_t)p * IX_PANEL, n = (size_t)n_items - at < np * IX_PANEL ? (size_t)n_items - at
                                                                                         : np * IX_PANEL;
            for (size_t i = 0; i < ng; i++) {
                ix_score_block(ix, (int)ix->h.dtype, ix->list_vectors, ix->list_scales, g[i].a, g[i].R,
                               (size_t)ix->list_panel[l] + (size_t)p, np, out, ldo);
                for (size_t u = 0; u < g[i].R; u++)
                    offer_list(&st[order[g[i].first + u]], out + u * ldo, n, ix->list_items + first + at);
            }
        }
    }
    free(g);
    free(a);
    free(out);
}

/* Cuts lists into `parts` contiguous ranges of about equal work (items x queries). */
static void split_work(const v4r_index *ix, const uint64_t *qoff, size_t parts, size_t *cut)
{
    size_t nlist = (size_t)ix->ivf.nlist;
    double total = 0, acc = 0;
    for (size_t l = 0; l < nlist; l++)
        total += (double)(ix->list_off[l + 1] - ix->list_off[l]) * (double)(qoff[l + 1] - qoff[l]);
    cut[0] = 0;
    size_t p = 1;
    for (size_t l = 0; l < nlist && p < parts; l++) {
        acc += (double)(ix->list_off[l + 1] - ix->list_off[l]) * (double)(qoff[l + 1] - qoff[l]);
        while (p < parts && acc >= total * (double)p / (double)parts)
            cut[p++] = l + 1;
    }
    while (p <= parts)
        cut[p++] = nlist;
}

void ivf_scan(const v4r_index *ix, const size_t *order, size_t n, const float *prof, query_state *st, size_t nq,
              size_t kmax, int threads)
{
    size_t nlist = (size_t)ix->ivf.nlist, *qs, max_q = 0;
    uint64_t *qoff = v4r_malloc((nlist + 1) * sizeof *qoff);
    probe_lists(ix, order, n, prof, st, qoff, &qs);
    for (size_t l = 0; l < nlist; l++)
        max_q = qoff[l + 1] - qoff[l] > max_q ? (size_t)(qoff[l + 1] - qoff[l]) : max_q;
    double work = 0; /* item scores to compute: below about 64k per thread, threads cost more than they save */
    for (size_t l = 0; l < nlist; l++)
        work += (double)(ix->list_off[l + 1] - ix->list_off[l]) * (double)(qoff[l + 1] - qoff[l]);
    if (threads > 1 && work < 65536.0 * threads)
        threads = work < 2 * 65536.0 ? 1 : (int)(work / 65536.0);
    if (threads < 2 || qoff[nlist] < 2) {
        scan_lists(ix, qoff, qs, prof, st, 0, nlist, max_q);
    } else {
        size_t T = (size_t)threads, *cut = v4r_malloc((T + 1) * sizeof *cut);
        split_work(ix, qoff, T, cut);
        query_state *part = v4r_malloc((T - 1) * nq * sizeof *part);
        v4r_entry *heaps = v4r_malloc((T - 1) * nq * (kmax ? kmax : 1) * sizeof *heaps);
#pragma omp parallel for num_threads(threads) schedule(static, 1)
        for (int t = 0; t < threads; t++)
            scan_lists(ix, qoff, qs, prof, ix_thread_states(st, part, heaps, nq, kmax, t), cut[t], cut[t + 1], max_q);
        ix_merge_threads(st, part, nq, threads, order, n);
        free(cut);
        free(part);
        free(heaps);
    }
    free(qoff);
    free(qs);
}

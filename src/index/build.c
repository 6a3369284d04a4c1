/* Building the index file: vector checks and normalization, the sections (ids, vector panels in
 * the chosen dtype, users' last items), the recall of float16/int8 against float32 on a sample of
 * known users, the meta blob, checksums, and the atomic write. */
#include "internal.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vlm4rec/ground.h"
#include "vlm4rec/kernels.h"
#include "vlm4rec/rec.h"

void v4r_index_build_defaults(v4r_index_build_opts *o)
{
    memset(o, 0, sizeof *o);
    o->dtype = V4R_INDEX_F32;
    o->history_splits = 1u << V4R_TRAIN | 1u << V4R_VALID | 1u << V4R_TEST;
    o->keep = 10;
    o->profile_length = 10;
    o->check_users = 2000;
    o->check_k = 10;
    o->ivf_target = 0.98;
    o->train_per_list = 64;
    o->iterations = 10;
}

static size_t align_up(size_t n) { return (n + IX_ALIGN - 1) / IX_ALIGN * IX_ALIGN; }

/* Every row finite and nonzero; errors name the row and the item. */
static int check_vectors(const v4r_dataset *ds, const v4r_matrix *m, v4r_err *err)
{
    if (m->rows != ds->n_items)
        return v4r_fail(err, V4R_EINPUT, "vectors: %zu rows, but the dataset has %zu items (row i must be item i)",
                        m->rows, ds->n_items);
    if (m->cols == 0 || m->rows == 0)
        return v4r_fail(err, V4R_EINPUT, "vectors: empty (%zu x %zu)", m->rows, m->cols);
    if (m->rows > INT32_MAX)
        return v4r_fail(err, V4R_EINPUT, "vectors: %zu rows, at most 2^31-1", m->rows);
    for (size_t r = 0; r < m->rows; r++) {
        const float *row = m->data + r * m->cols;
        int nonzero = 0;
        for (size_t c = 0; c < m->cols; c++) {
            if (!isfinite(row[c]))
                return v4r_fail(err, V4R_EINPUT, "vectors: row %zu (item '%s'), column %zu: %s value", r,
                                ds->item_id[r], c, isnan(row[c]) ? "NaN" : "infinite");
            nonzero |= row[c] != 0;
        }
        if (!nonzero)
            return v4r_fail(err, V4R_EINPUT, "vectors: row %zu (item '%s') is a zero vector", r, ds->item_id[r]);
    }
    return V4R_OK;
}

/* The file being built: header, sections but the meta, in one zeroed buffer. */
typedef struct {
    ix_header h;
    unsigned char *buf;
    size_t size;
    size_t *hoff;  /* every user's full chronological history */
    int32_t *hall;
} draft;

static void lay_out(draft *f, const size_t id_bytes[2])
{
    uint64_t len[IX_NSECTIONS];
    uint64_t panels = (f->h.n_items + IX_PANEL - 1) / IX_PANEL;
    len[SEC_ITEM_OFF] = (f->h.n_items + 1) * 8;
    len[SEC_ITEM_STR] = id_bytes[0];
    len[SEC_USER_OFF] = (f->h.n_users + 1) * 8;
    len[SEC_USER_STR] = id_bytes[1];
    len[SEC_VECTORS] = panels * IX_PANEL * f->h.dim * ix_dtype_size((int)f->h.dtype);
    len[SEC_SCALES] = f->h.dtype == V4R_INDEX_I8 ? panels * IX_PANEL * 4 : 0;
    len[SEC_HIST_OFF] = (f->h.n_users + 1) * 8;
    len[SEC_HIST_ITEMS] = f->h.n_history * 4;
    len[SEC_META] = 0; /* appended at the end */
    size_t at = IX_HEADER_BYTES;
    for (int s = 0; s < IX_NSECTIONS; s++) {
        at = align_up(at);
        f->h.sec[s] = (ix_section){at, len[s]};
        at += len[s];
    }
    f->size = at;
    f->buf = v4r_calloc(1, at);
}

static size_t id_table_bytes(char *const *ids, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(ids[i]) + 1;
    return total;
}

static void put_ids(draft *f, char *const *ids, size_t n, int off_sec, int str_sec)
{
    uint64_t *off = (uint64_t *)(void *)(f->buf + f->h.sec[off_sec].off);
    char *str = (char *)(f->buf + f->h.sec[str_sec].off);
    off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(ids[i]) + 1;
        memcpy(str + off[i], ids[i], len);
        off[i + 1] = off[i] + len;
    }
}

void ix_encode_row(int dtype, const float *row, size_t d, void *panels, float *scales, size_t slot)
{
    unsigned char *v = panels;
    size_t at = slot / IX_PANEL * d * IX_PANEL + slot % IX_PANEL;
    float maxabs = 0;
    for (size_t k = 0; k < d; k++)
        maxabs = fabsf(row[k]) > maxabs ? fabsf(row[k]) : maxabs;
    float scale = maxabs / 127;
    if (dtype == V4R_INDEX_I8)
        scales[slot] = scale;
    for (size_t k = 0; k < d; k++, at += IX_PANEL) {
        if (dtype == V4R_INDEX_F32) {
            ((float *)(void *)v)[at] = row[k];
        } else if (dtype == V4R_INDEX_F16) {
            uint16_t h = v4r_f32_to_f16(row[k]);
            v[2 * at] = (unsigned char)(h & 0xff);
            v[2 * at + 1] = (unsigned char)(h >> 8);
        } else {
            long q = lrintf(row[k] / scale);
            ((int8_t *)v)[at] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
        }
    }
}

/* Rows (normalized) into k-major panels of 16 items in the dtype; int8 scales beside. */
static void put_vectors(draft *f, const v4r_matrix *m)
{
    size_t panels = (m->rows + IX_PANEL - 1) / IX_PANEL;
    float *scales = (float *)(void *)(f->buf + f->h.sec[SEC_SCALES].off);
    for (size_t i = 0; f->h.dtype == V4R_INDEX_I8 && i < panels * IX_PANEL; i++)
        scales[i] = 1;
    for (size_t r = 0; r < m->rows; r++)
        ix_encode_row((int)f->h.dtype, m->data + r * m->cols, m->cols, f->buf + f->h.sec[SEC_VECTORS].off, scales, r);
}

/* int8 rows given with their scales (compaction): the codes of each row under its own scale. */
static void put_scaled_rows(draft *f, const v4r_matrix *m, const float *row_scales)
{
    float *scales = (float *)(void *)(f->buf + f->h.sec[SEC_SCALES].off);
    int8_t *v = (int8_t *)(void *)(f->buf + f->h.sec[SEC_VECTORS].off);
    for (size_t r = 0; r < m->rows; r++) {
        size_t d = m->cols, at = r / IX_PANEL * d * IX_PANEL + r % IX_PANEL;
        scales[r] = row_scales[r];
        for (size_t k = 0; k < d; k++, at += IX_PANEL) {
            long q = lrintf(m->data[r * d + k] / row_scales[r]);
            v[at] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
        }
    }
}

/* The last keep items (0: all) of every user's chronological history. */
static void put_history(draft *f, size_t keep)
{
    uint64_t *off = (uint64_t *)(void *)(f->buf + f->h.sec[SEC_HIST_OFF].off);
    int32_t *items = (int32_t *)(void *)(f->buf + f->h.sec[SEC_HIST_ITEMS].off);
    off[0] = 0;
    for (size_t u = 0; u < f->h.n_users; u++) {
        size_t n = f->hoff[u + 1] - f->hoff[u], first = keep && n > keep ? n - keep : 0;
        memcpy(items + off[u], f->hall + f->hoff[u] + first, (n - first) * sizeof *items);
        off[u + 1] = off[u] + (n - first);
    }
}

static uint64_t count_kept(const size_t *hoff, size_t n_users, size_t keep)
{
    uint64_t total = 0;
    for (size_t u = 0; u < n_users; u++) {
        size_t n = hoff[u + 1] - hoff[u];
        total += keep && n > keep ? keep : n;
    }
    return total;
}

/* ---- the recall check ---- */

/* An index over the draft's bytes (no file, no id maps), or a float32 twin over rows. */
static v4r_index *draft_view(const draft *f, int kernel)
{
    v4r_index *ix = v4r_calloc(1, sizeof *ix);
    ix->base = f->buf;
    ix->size = f->size;
    ix->h = f->h;
    ix->kernel = kernel;
    ix_attach(ix);
    return ix;
}

static float *f32_panels(const v4r_matrix *m)
{
    size_t d = m->cols, panels = (m->rows + IX_PANEL - 1) / IX_PANEL;
    float *p = v4r_calloc(panels * IX_PANEL * d, sizeof *p);
    for (size_t r = 0; r < m->rows; r++)
        for (size_t k = 0; k < d; k++)
            p[r / IX_PANEL * d * IX_PANEL + k * IX_PANEL + r % IX_PANEL] = m->data[r * d + k];
    return p;
}

/* Users with a stored history, a seeded sample of at most n of them. */
static size_t sample_users(const v4r_index *ix, size_t n, uint64_t seed, int32_t **out)
{
    size_t nu = ix->h.n_users, m = 0;
    int32_t *u = v4r_malloc((nu ? nu : 1) * sizeof *u);
    for (size_t i = 0; i < nu; i++)
        if (ix->hist_off[i + 1] > ix->hist_off[i])
            u[m++] = (int32_t)i;
    v4r_rng rng;
    v4r_rng_seed(&rng, seed);
    size_t take = n < m ? n : m;
    for (size_t i = 0; i < take; i++) {
        size_t j = i + (size_t)v4r_rng_below(&rng, m - i);
        int32_t t = u[i];
        u[i] = u[j];
        u[j] = t;
    }
    *out = u;
    return take;
}

/* |a ∩ b| / |b| over lists of k (-1 pads). */
static double overlap(const int32_t *a, const int32_t *b, size_t k)
{
    size_t nb = 0, hit = 0;
    for (size_t j = 0; j < k && b[j] >= 0; j++) {
        nb++;
        for (size_t i = 0; i < k && a[i] >= 0; i++)
            hit += a[i] == b[j];
    }
    return nb ? (double)hit / (double)nb : 1;
}

static double mean_overlap(const int32_t *a, const int32_t *b, size_t n, size_t k)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += overlap(a + i * k, b + i * k, k);
    return n ? sum / (double)n : -1;
}

enum { CHECK_BATCH = 64 };

/* The check's queries: sampled known users (their stored histories) or, for an IVF build without
 * users, sampled items (the item's own vector as the query, the item excluded). */
typedef struct {
    int32_t *ids;
    size_t n;
    const float *item_rows; /* non-NULL: ids are items */
    size_t dim;
} check_sample;

/* The top-k lists of every sampled query (n x k), probing nprobe lists. */
static void sample_lists(const v4r_index *ix, const check_sample *s, size_t k, size_t nprobe, int32_t *out)
{
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t b = 0; b < s->n; b += CHECK_BATCH) {
        size_t m = s->n - b < CHECK_BATCH ? s->n - b : CHECK_BATCH;
        v4r_index_query q[CHECK_BATCH];
        float *sc = v4r_malloc(m * k * sizeof *sc);
        for (size_t i = 0; i < m; i++) {
            memset(&q[i], 0, sizeof q[i]);
            if (s->item_rows) {
                q[i].vector = s->item_rows + (size_t)s->ids[b + i] * s->dim;
                q[i].exclude = &s->ids[b + i];
                q[i].n_exclude = 1;
            } else {
                q[i].n_history = v4r_index_user_history(ix, s->ids[b + i], &q[i].history);
            }
            q[i].k = k;
            q[i].nprobe = nprobe;
        }
        v4r_err e = {0};
        if (v4r_index_search(ix, q, m, k, out + b * k, sc, &e) != 0)
            for (size_t j = 0; j < m * k; j++)
                out[b * k + j] = -1;
        free(sc);
    }
}

/* Seeded sample of n items (IVF check without users). */
static size_t sample_items(size_t n_items, size_t n, uint64_t seed, int32_t **out)
{
    v4r_rng rng;
    v4r_rng_seed(&rng, seed);
    size_t take = n < n_items ? n : n_items;
    int32_t *ids = v4r_malloc((take ? take : 1) * sizeof *ids);
    for (size_t i = 0; i < take; i++)
        ids[i] = (int32_t)v4r_rng_below(&rng, n_items);
    *out = ids;
    return take;
}

/* The default nprobe: o->nprobe, or the smallest of 1, 2, 4, ... (then nlist) whose recall against
 * exact search reaches the target; the IVF sub-header gets it and its recalls. */
static void choose_nprobe(draft *f, const v4r_index *stored, const check_sample *s, const int32_t *exact,
                          const int32_t *f32, const v4r_index_build_opts *o)
{
    ivf_header v = stored->ivf;
    size_t k = o->check_k, nlist = (size_t)v.nlist;
    int32_t *lists = v4r_malloc((s->n ? s->n : 1) * (k ? k : 1) * sizeof *lists);
    for (size_t p = o->nprobe ? o->nprobe : 1;; p *= 2) {
        v.nprobe = p < nlist ? p : nlist;
        if (!s->n) { /* nothing measured: the exact lists unless told */
            v.nprobe = o->nprobe ? v.nprobe : nlist;
            break;
        }
        sample_lists(stored, s, k, (size_t)v.nprobe, lists);
        v.recall_vs_exact = mean_overlap(lists, exact, s->n, k);
        v.recall_vs_f32 = mean_overlap(lists, f32, s->n, k);
        v4r_info("ivf: nprobe %llu of %zu: recall@%zu %.4f against exact search",
                (unsigned long long)v.nprobe, nlist, k, v.recall_vs_exact);
        if (o->nprobe || v.recall_vs_exact >= o->ivf_target || v.nprobe == nlist)
            break;
    }
    v.recall_k = s->n ? k : 0;
    v.recall_users = s->n;
    free(lists);
    ivf_header_encode(&v, f->buf + f->h.ivf.off);
}

static void measure_recall(draft *f, const v4r_matrix *rows, const v4r_index_build_opts *o, int kernel)
{
    int is_f32 = f->h.dtype == V4R_INDEX_F32, has_ivf = f->h.ivf.len > 0;
    f->h.recall = is_f32 ? 1 : -1;
    f->h.recall_k = (uint32_t)o->check_k;
    int checked = o->check_users && o->check_k;
    if ((is_f32 && !has_ivf) || (!checked && !has_ivf))
        return;
    v4r_index *stored = draft_view(f, kernel), *ref = stored;
    float *panels = NULL;
    check_sample s = {NULL, 0, NULL, rows->cols};
    if (checked)
        s.n = sample_users(stored, o->check_users, o->seed, &s.ids);
    if (checked && !s.n && has_ivf) {
        free(s.ids);
        s.n = sample_items(rows->rows, o->check_users, o->seed, &s.ids);
        s.item_rows = rows->data;
    }
    if (!is_f32 && s.n) {
        ref = draft_view(f, kernel);
        panels = f32_panels(rows);
        ref->h.dtype = V4R_INDEX_F32;
        ref->vectors = panels;
        ref->scales = NULL;
    }
    size_t k = o->check_k ? o->check_k : 1;
    int32_t *exact = v4r_malloc((s.n ? s.n : 1) * k * sizeof *exact), *f32 = exact;
    v4r_info("recall check: exact lists of %zu sampled queries", s.n);
    sample_lists(stored, &s, k, V4R_INDEX_EXACT, exact);
    if (ref != stored) {
        f32 = v4r_malloc(s.n * k * sizeof *f32);
        sample_lists(ref, &s, k, V4R_INDEX_EXACT, f32);
        if (!s.item_rows) {
            f->h.recall = mean_overlap(exact, f32, s.n, k);
            f->h.recall_users = s.n;
        }
    }
    if (has_ivf)
        choose_nprobe(f, stored, &s, exact, f32, o);
    if (f32 != exact)
        free(f32);
    free(exact);
    free(s.ids);
    free(panels);
    if (ref != stored)
        free(ref);
    free(stored);
}

/* ---- meta, checksums, writing ---- */

static json_t *meta_json(const draft *f, const v4r_dataset *ds, const v4r_index_build_opts *o)
{
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *splits = json_array();
    for (int s = 0; s < V4R_NSPLITS; s++)
        if (o->history_splits & (1u << s))
            json_array_append_new(splits, json_string(v4r_split_name(s)));
    json_t *check = f->h.recall_users
                        ? json_pack("{s:I,s:I,s:f}", "k", (json_int_t)f->h.recall_k, "users",
                                    (json_int_t)f->h.recall_users, "recall_vs_f32", f->h.recall)
                        : json_null();
    json_t *ivf = json_null();
    if (f->h.ivf.len) {
        ivf_header v;
        ivf_header_decode(f->buf + f->h.ivf.off, &v);
        ivf = json_pack("{s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:o,s:o}", "nlist", (json_int_t)v.nlist, "nprobe",
                        (json_int_t)v.nprobe, "target", o->ivf_target, "train_vectors", (json_int_t)v.train_vectors,
                        "iterations", (json_int_t)v.iterations, "recall_k", (json_int_t)v.recall_k, "recall_users",
                        (json_int_t)v.recall_users, "recall_vs_exact",
                        v.recall_vs_exact < 0 ? json_null() : json_real(v.recall_vs_exact), "recall_vs_f32",
                        v.recall_vs_f32 < 0 ? json_null() : json_real(v.recall_vs_f32));
    }
    json_t *meta = json_pack("{s:i,s:s,s:o,s:o,s:s,s:o,s:{s:s,s:o,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I},s:o,s:o}",
                     "format_version", (int)f->h.version, "vlm4rec_version", V4R_VERSION, "dataset",
                     ds->dir ? json_string(ds->dir) : json_null(), "vectors",
                     o->vectors_source ? json_string(o->vectors_source) : json_null(), "created", created, "label",
                     o->label ? json_string(o->label) : json_null(), "options", "dtype",
                     v4r_index_dtype_name(o->dtype), "history_splits", splits, "keep", (json_int_t)o->keep,
                     "profile_length", (json_int_t)o->profile_length, "check_users", (json_int_t)o->check_users,
                     "check_k", (json_int_t)o->check_k, "seed", (json_int_t)o->seed, "counts", "items",
                     (json_int_t)f->h.n_items, "dim", (json_int_t)f->h.dim, "users", (json_int_t)f->h.n_users,
                     "history_entries", (json_int_t)f->h.n_history, "recall_check", check, "ivf", ivf);
    json_t *encoder = o->encoder_json ? json_loads(o->encoder_json, 0, NULL) : NULL; /* checked by check_opts */
    json_object_set_new(meta, "encoder", encoder ? encoder : json_null());
    return meta;
}

static void append_meta(draft *f, const v4r_dataset *ds, const v4r_index_build_opts *o)
{
    json_t *meta = meta_json(f, ds, o);
    char *text = json_dumps(meta, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(meta);
    size_t len = strlen(text) + 1, at = align_up(f->size);
    f->buf = v4r_realloc(f->buf, at + len);
    memset(f->buf + f->size, 0, at - f->size);
    memcpy(f->buf + at, text, len);
    f->h.sec[SEC_META] = (ix_section){at, len};
    f->size = at + len;
    free(text);
}

static void finish_header(draft *f, const v4r_index_build_opts *o)
{
    f->h.file_bytes = f->size;
    v4r_sha256_hex(f->buf + IX_HEADER_BYTES, f->size - IX_HEADER_BYTES, f->h.body_sha);
    if (o->label) /* checked by check_opts */
        snprintf(f->h.label, sizeof f->h.label, "%s", o->label);
    else
        snprintf(f->h.label, sizeof f->h.label, "%s-%.12s", v4r_index_dtype_name((v4r_index_dtype)f->h.dtype),
                 f->h.body_sha);
    ix_header_encode(&f->h, f->buf);
}

static int write_file(const draft *f, const char *path, v4r_err *err)
{
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    if (rc)
        return rc;
    if (fwrite(f->buf, 1, f->size, out.fp) != f->size) {
        v4r_out_abort(&out);
        return v4r_fail(err, V4R_EIO, "%s: cannot write", path);
    }
    return v4r_out_commit(&out, err);
}

/* Ids unique and nonempty (the dataset keeps them so; the file format relies on it). */
static int check_ids(char *const *ids, size_t n, const char *what, v4r_err *err)
{
    v4r_strmap m;
    v4r_strmap_init(&m, n);
    int rc = V4R_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        if (!ids[i][0])
            rc = v4r_fail(err, V4R_EINPUT, "%s %zu has an empty id", what, i);
        else if (v4r_strmap_put(&m, ids[i], (int64_t)i) >= 0)
            rc = v4r_fail(err, V4R_EINPUT, "%s id '%s' repeats (%s %zu)", what, ids[i], what, i);
    }
    v4r_strmap_free(&m);
    return rc;
}

static int check_opts(const v4r_dataset *ds, const v4r_index_build_opts *o, v4r_err *err)
{
    if ((unsigned)o->dtype > V4R_INDEX_I8)
        return v4r_fail(err, V4R_EUSAGE, "dtype %d is not float32, float16 or int8", (int)o->dtype);
    if (o->history_splits == 0 || o->history_splits > 7)
        return v4r_fail(err, V4R_EUSAGE, "history splits: a nonempty set of train, valid, test");
    if (o->label && (!o->label[0] || strlen(o->label) >= IX_LABEL_BYTES))
        return v4r_fail(err, V4R_EUSAGE, "label: 1 to %d bytes", IX_LABEL_BYTES - 1);
    if (o->ivf && (o->nlist > ds->n_items || o->nprobe > (o->nlist ? o->nlist : ivf_default_nlist(ds->n_items))))
        return v4r_fail(err, V4R_EUSAGE, "ivf: nlist = %zu and nprobe = %zu must not exceed the items (%zu) and nlist",
                        o->nlist, o->nprobe, ds->n_items);
    if (o->ivf && (!(o->ivf_target > 0 && o->ivf_target <= 1) || o->iterations == 0 || o->train_per_list == 0))
        return v4r_fail(err, V4R_EUSAGE, "ivf: the recall target must be in (0, 1], iterations and train_per_list >= 1");
    if (o->encoder_json) {
        json_t *e = json_loads(o->encoder_json, 0, NULL);
        int is_object = json_is_object(e);
        json_decref(e);
        if (!is_object)
            return v4r_fail(err, V4R_EUSAGE, "encoder: not a JSON object");
    }
    if (ds->n_users > INT32_MAX)
        return v4r_fail(err, V4R_EINPUT, "%zu users, at most 2^31-1", ds->n_users);
    int rc = check_ids(ds->item_id, ds->n_items, "item", err);
    return rc ? rc : check_ids(ds->user_id, ds->n_users, "user", err);
}

static void fill_report(const draft *f, v4r_index_build_report *rep)
{
    memset(rep, 0, sizeof *rep);
    rep->n_items = f->h.n_items;
    rep->dim = f->h.dim;
    rep->n_users = f->h.n_users;
    rep->n_history = f->h.n_history;
    rep->file_bytes = f->size;
    rep->recall_vs_f32 = f->h.recall;
    rep->recall_users = f->h.recall_users;
    memcpy(rep->checksum, f->h.body_sha, sizeof rep->checksum);
    snprintf(rep->version, sizeof rep->version, "%s", f->h.label);
    rep->ivf_recall_vs_exact = rep->ivf_recall_vs_f32 = -1;
    if (f->h.ivf.len) {
        ivf_header v;
        ivf_header_decode(f->buf + f->h.ivf.off, &v);
        rep->nlist = (size_t)v.nlist;
        rep->nprobe = (size_t)v.nprobe;
        rep->ivf_queries = (size_t)v.recall_users;
        rep->ivf_recall_vs_exact = v.recall_vs_exact;
        rep->ivf_recall_vs_f32 = v.recall_vs_f32;
    }
}

/* The IVF section after the history (the meta comes last), format version 2. */
static int append_ivf(draft *f, const v4r_matrix *rows, const v4r_index_build_opts *o, int kernel, v4r_err *err)
{
    unsigned char *blob;
    uint64_t len;
    int rc = ivf_build(rows, (int)f->h.dtype, o, kernel, &blob, &len, err);
    if (rc)
        return rc;
    size_t at = align_up(f->size);
    f->buf = v4r_realloc(f->buf, at + (size_t)len);
    memset(f->buf + f->size, 0, at - f->size);
    memcpy(f->buf + at, blob, (size_t)len);
    free(blob);
    f->h.ivf = (ix_section){at, len};
    f->h.version = IX_VERSION_IVF;
    f->size = at + (size_t)len;
    return V4R_OK;
}

/* Header counts and every section but the meta, from the dataset and the normalized rows. */
static void fill_sections(draft *f, const v4r_dataset *ds, const v4r_matrix *rows, const v4r_index_build_opts *o)
{
    memset(f, 0, sizeof *f);
    f->h = (ix_header){.version = IX_VERSION, .dtype = (uint32_t)o->dtype, .n_items = ds->n_items,
                       .dim = rows->cols, .n_users = ds->n_users, .keep = o->keep,
                       .profile_length = o->profile_length, .history_splits = o->history_splits};
    v4r_user_histories(ds, o->history_splits, &f->hoff, &f->hall);
    f->h.n_history = count_kept(f->hoff, ds->n_users, o->keep);
    size_t id_bytes[2] = {id_table_bytes(ds->item_id, ds->n_items), id_table_bytes(ds->user_id, ds->n_users)};
    lay_out(f, id_bytes);
    put_ids(f, ds->item_id, ds->n_items, SEC_ITEM_OFF, SEC_ITEM_STR);
    put_ids(f, ds->user_id, ds->n_users, SEC_USER_OFF, SEC_USER_STR);
    put_vectors(f, rows);
    if (o->dtype == V4R_INDEX_I8 && o->row_scales)
        put_scaled_rows(f, rows, o->row_scales);
    put_history(f, o->keep);
}

int v4r_index_build(const v4r_dataset *ds, const v4r_matrix *vectors, const v4r_index_build_opts *o,
                    const char *path, v4r_index_build_report *rep, v4r_err *err)
{
    int kernel, rc = check_opts(ds, o, err);
    if (!rc)
        rc = check_vectors(ds, vectors, err);
    if (!rc)
        rc = v4r_kernel_pick(&kernel, err);
    if (rc)
        return rc;
    v4r_matrix rows = {v4r_malloc(vectors->rows * vectors->cols * sizeof(float)), vectors->rows, vectors->cols};
    memcpy(rows.data, vectors->data, rows.rows * rows.cols * sizeof(float));
    if (!o->rows_normalized)
        rc = v4r_repr_normalize(&rows, NULL, "vectors", err); /* eval's normalization: the same floats */
    if (rc) {
        free(rows.data);
        return rc;
    }
    draft f;
    fill_sections(&f, ds, &rows, o);
    double t0 = v4r_now();
    if (o->ivf)
        rc = append_ivf(&f, &rows, o, kernel, err);
    double ivf_seconds = v4r_now() - t0;
    if (!rc) {
        measure_recall(&f, &rows, o, kernel);
        append_meta(&f, ds, o);
        finish_header(&f, o);
        rc = write_file(&f, path, err);
    }
    if (!rc && rep) {
        fill_report(&f, rep);
        rep->ivf_seconds = o->ivf ? ivf_seconds : 0;
    }
    free(rows.data);
    free(f.buf);
    free(f.hoff);
    free(f.hall);
    return rc;
}

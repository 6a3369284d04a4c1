/* The index file: header encoding, opening by mmap with a check of every field, and the lookups
 * of an open index (ids, histories, vectors, build facts). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vlm4rec/ground.h"
#include "vlm4rec/kernels.h"

const char *const ix_section_names[IX_NSECTIONS] = {"item_offsets", "item_ids",      "user_offsets",
                                                    "user_ids",     "vectors",       "scales",
                                                    "history_offsets", "history_items", "meta"};

/* Byte positions of the header fields. */
enum {
    AT_MAGIC = 0,
    AT_VERSION = 8,
    AT_DTYPE = 12,
    AT_N_ITEMS = 16,
    AT_DIM = 24,
    AT_N_USERS = 32,
    AT_N_HISTORY = 40,
    AT_KEEP = 48,
    AT_PROFILE_LENGTH = 56,
    AT_HISTORY_SPLITS = 64,
    AT_RECALL_K = 68,
    AT_RECALL = 72,
    AT_RECALL_USERS = 80,
    AT_FILE_BYTES = 88,
    AT_SECTIONS = 96, /* IX_NSECTIONS x (offset u64, length u64) */
    AT_LABEL = 240,
    AT_BODY_SHA = 368,
    AT_IVF = 432, /* version 2: the IVF section (offset u64, length u64); version 1: zero */
};

const char *v4r_index_dtype_name(v4r_index_dtype t)
{
    switch (t) {
    case V4R_INDEX_F16: return "float16";
    case V4R_INDEX_I8: return "int8";
    default: return "float32";
    }
}

int v4r_index_dtype_parse(const char *name)
{
    for (int t = 0; t < 3; t++)
        if (!strcmp(name, v4r_index_dtype_name((v4r_index_dtype)t)))
            return t;
    return -1;
}

size_t ix_dtype_size(int dtype) { return dtype == V4R_INDEX_F16 ? 2 : dtype == V4R_INDEX_I8 ? 1 : 4; }

/* ---- little-endian fields ---- */

void ix_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

void ix_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

uint32_t ix_get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

uint64_t ix_get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

void ix_put_f64(unsigned char *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    ix_put_u64(p, v);
}

double ix_get_f64(const unsigned char *p)
{
    uint64_t v = ix_get_u64(p);
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

void ix_header_encode(const ix_header *h, unsigned char *out)
{
    memset(out, 0, IX_HEADER_BYTES);
    memcpy(out + AT_MAGIC, IX_MAGIC, 8);
    ix_put_u32(out + AT_VERSION, h->version);
    ix_put_u32(out + AT_DTYPE, h->dtype);
    ix_put_u64(out + AT_N_ITEMS, h->n_items);
    ix_put_u64(out + AT_DIM, h->dim);
    ix_put_u64(out + AT_N_USERS, h->n_users);
    ix_put_u64(out + AT_N_HISTORY, h->n_history);
    ix_put_u64(out + AT_KEEP, h->keep);
    ix_put_u64(out + AT_PROFILE_LENGTH, h->profile_length);
    ix_put_u32(out + AT_HISTORY_SPLITS, h->history_splits);
    ix_put_u32(out + AT_RECALL_K, h->recall_k);
    ix_put_f64(out + AT_RECALL, h->recall);
    ix_put_u64(out + AT_RECALL_USERS, h->recall_users);
    ix_put_u64(out + AT_FILE_BYTES, h->file_bytes);
    for (int s = 0; s < IX_NSECTIONS; s++) {
        ix_put_u64(out + AT_SECTIONS + 16 * s, h->sec[s].off);
        ix_put_u64(out + AT_SECTIONS + 16 * s + 8, h->sec[s].len);
    }
    ix_put_u64(out + AT_IVF, h->ivf.off);
    ix_put_u64(out + AT_IVF + 8, h->ivf.len);
    memcpy(out + AT_LABEL, h->label, strnlen(h->label, IX_LABEL_BYTES - 1));
    memcpy(out + AT_BODY_SHA, h->body_sha, 64);
    char hex[65];
    v4r_sha256_hex(out, IX_HEADER_SHA_AT, hex);
    memcpy(out + IX_HEADER_SHA_AT, hex, 64);
}

static void header_decode(const unsigned char *in, ix_header *h)
{
    memset(h, 0, sizeof *h);
    h->version = ix_get_u32(in + AT_VERSION);
    h->dtype = ix_get_u32(in + AT_DTYPE);
    h->n_items = ix_get_u64(in + AT_N_ITEMS);
    h->dim = ix_get_u64(in + AT_DIM);
    h->n_users = ix_get_u64(in + AT_N_USERS);
    h->n_history = ix_get_u64(in + AT_N_HISTORY);
    h->keep = ix_get_u64(in + AT_KEEP);
    h->profile_length = ix_get_u64(in + AT_PROFILE_LENGTH);
    h->history_splits = ix_get_u32(in + AT_HISTORY_SPLITS);
    h->recall_k = ix_get_u32(in + AT_RECALL_K);
    h->recall = ix_get_f64(in + AT_RECALL);
    h->recall_users = ix_get_u64(in + AT_RECALL_USERS);
    h->file_bytes = ix_get_u64(in + AT_FILE_BYTES);
    for (int s = 0; s < IX_NSECTIONS; s++) {
        h->sec[s].off = ix_get_u64(in + AT_SECTIONS + 16 * s);
        h->sec[s].len = ix_get_u64(in + AT_SECTIONS + 16 * s + 8);
    }
    h->ivf.off = ix_get_u64(in + AT_IVF);
    h->ivf.len = ix_get_u64(in + AT_IVF + 8);
    memcpy(h->label, in + AT_LABEL, IX_LABEL_BYTES);
    h->label[IX_LABEL_BYTES - 1] = 0;
    memcpy(h->body_sha, in + AT_BODY_SHA, 64);
    h->body_sha[64] = 0;
}

void ix_attach(v4r_index *ix)
{
    const unsigned char *b = ix->base;
    const ix_section *s = ix->h.sec;
    ix->item_off = (const uint64_t *)(const void *)(b + s[SEC_ITEM_OFF].off);
    ix->item_str = (const char *)(b + s[SEC_ITEM_STR].off);
    ix->user_off = (const uint64_t *)(const void *)(b + s[SEC_USER_OFF].off);
    ix->user_str = (const char *)(b + s[SEC_USER_STR].off);
    ix->vectors = b + s[SEC_VECTORS].off;
    ix->scales = ix->h.dtype == V4R_INDEX_I8 ? (const float *)(const void *)(b + s[SEC_SCALES].off) : NULL;
    ix->hist_off = (const uint64_t *)(const void *)(b + s[SEC_HIST_OFF].off);
    ix->hist = (const int32_t *)(const void *)(b + s[SEC_HIST_ITEMS].off);
    ix->meta = (const char *)(b + s[SEC_META].off);
    ix->n_panels = (size_t)((ix->h.n_items + IX_PANEL - 1) / IX_PANEL);
    if (ix->h.ivf.len)
        ivf_attach(ix);
}

/* ---- checks ---- */

static int bad(v4r_err *err, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(v4r_err *err, const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return v4r_fail(err, V4R_EINPUT, "%s: %s", path, msg);
}

static int check_counts(const ix_header *h, const char *path, v4r_err *err)
{
    if (h->dtype > V4R_INDEX_I8)
        return bad(err, path, "header field 'dtype' is %u (0 float32, 1 float16, 2 int8)", h->dtype);
    if (h->n_items == 0 || h->n_items > INT32_MAX)
        return bad(err, path, "header field 'n_items' is %llu (1 to 2^31-1)", (unsigned long long)h->n_items);
    if (h->dim == 0 || h->dim > (1u << 20))
        return bad(err, path, "header field 'dim' is %llu (1 to 2^20)", (unsigned long long)h->dim);
    if (h->n_users > INT32_MAX)
        return bad(err, path, "header field 'n_users' is %llu (at most 2^31-1)", (unsigned long long)h->n_users);
    if (h->n_history > ((uint64_t)1 << 40))
        return bad(err, path, "header field 'n_history' is %llu", (unsigned long long)h->n_history);
    if (h->history_splits == 0 || h->history_splits > 7)
        return bad(err, path, "header field 'history_splits' is %u (bits 1 train, 2 valid, 4 test)",
                   h->history_splits);
    if (!(h->recall == -1 || (h->recall >= 0 && h->recall <= 1)))
        return bad(err, path, "header field 'recall_vs_f32' is %g (-1, or 0 to 1)", h->recall);
    return V4R_OK;
}

/* The byte length each section must have, from the counts. */
static uint64_t expected_len(const ix_header *h, int s)
{
    uint64_t panels = (h->n_items + IX_PANEL - 1) / IX_PANEL;
    switch (s) {
    case SEC_ITEM_OFF: return (h->n_items + 1) * 8;
    case SEC_USER_OFF:
    case SEC_HIST_OFF: return (h->n_users + 1) * 8;
    case SEC_VECTORS: return panels * IX_PANEL * h->dim * ix_dtype_size((int)h->dtype);
    case SEC_SCALES: return h->dtype == V4R_INDEX_I8 ? panels * IX_PANEL * 4 : 0;
    case SEC_HIST_ITEMS: return h->n_history * 4;
    default: return UINT64_MAX; /* strings and meta: free */
    }
}

static int check_sections(const ix_header *h, uint64_t size, const char *path, v4r_err *err)
{
    uint64_t end = IX_HEADER_BYTES;
    /* in file order; the IVF section (when there is one) lies between history_items and meta */
    for (int at = 0; at <= IX_NSECTIONS; at++) {
        int s = at < SEC_META ? at : at == SEC_META ? -1 : SEC_META;
        if (s < 0 && !h->ivf.len)
            continue;
        const ix_section *c = s < 0 ? &h->ivf : &h->sec[s];
        const char *name = s < 0 ? "ivf" : ix_section_names[s];
        if (c->off % IX_ALIGN)
            return bad(err, path, "section '%s': offset %llu is not a multiple of %d", name,
                       (unsigned long long)c->off, IX_ALIGN);
        if (c->off < end)
            return bad(err, path, "section '%s': offset %llu overlaps what comes before it (ends at %llu)", name,
                       (unsigned long long)c->off, (unsigned long long)end);
        if (c->off > size || c->len > size - c->off)
            return bad(err, path, "section '%s': offset %llu + length %llu is past the end of the file (%llu bytes)",
                       name, (unsigned long long)c->off, (unsigned long long)c->len, (unsigned long long)size);
        uint64_t want = s < 0 ? UINT64_MAX : expected_len(h, s); /* the IVF's: checked with its sub-header */
        if (want != UINT64_MAX && c->len != want)
            return bad(err, path, "section '%s': length %llu, the counts in the header give %llu", name,
                       (unsigned long long)c->len, (unsigned long long)want);
        end = c->off + c->len;
    }
    if (end != size)
        return bad(err, path, "%llu bytes after the last section (file of %llu bytes)",
                   (unsigned long long)(size - end), (unsigned long long)size);
    return V4R_OK;
}

/* An id table: offsets from 0, increasing, each id non-empty, NUL-terminated, without an inner NUL. */
static int check_ids(const uint64_t *off, const char *str, uint64_t n, uint64_t len, const char *what,
                     const char *path, v4r_err *err)
{
    if (off[0] != 0)
        return bad(err, path, "section '%s_offsets': the first offset is %llu, not 0", what,
                   (unsigned long long)off[0]);
    for (uint64_t i = 0; i < n; i++)
        if (off[i + 1] <= off[i] + 1 || off[i + 1] > len)
            return bad(err, path, "section '%s_offsets': offset %llu (%llu) is not above the previous one plus 1 "
                       "or is past the ids (%llu bytes)", what, (unsigned long long)(i + 1),
                       (unsigned long long)off[i + 1], (unsigned long long)len);
    if (off[n] != len)
        return bad(err, path, "section '%s_offsets': the last offset is %llu, the ids take %llu bytes", what,
                   (unsigned long long)off[n], (unsigned long long)len);
    for (uint64_t i = 0; i < n; i++)
        if (memchr(str + off[i], 0, off[i + 1] - off[i]) != str + off[i + 1] - 1)
            return bad(err, path, "section '%s_ids': id %llu is not one NUL-terminated string", what,
                       (unsigned long long)i);
    return V4R_OK;
}

static int check_history(const v4r_index *ix, const char *path, v4r_err *err)
{
    const ix_header *h = &ix->h;
    if (ix->hist_off[0] != 0 || ix->hist_off[h->n_users] != h->n_history)
        return bad(err, path, "section 'history_offsets': offsets must run from 0 to n_history (%llu)",
                   (unsigned long long)h->n_history);
    for (uint64_t u = 0; u < h->n_users; u++)
        if (ix->hist_off[u + 1] < ix->hist_off[u])
            return bad(err, path, "section 'history_offsets': offset %llu decreases", (unsigned long long)(u + 1));
    for (uint64_t i = 0; i < h->n_history; i++)
        if (ix->hist[i] < 0 || (uint64_t)ix->hist[i] >= h->n_items)
            return bad(err, path, "section 'history_items': entry %llu is item %d, not below n_items (%llu)",
                       (unsigned long long)i, ix->hist[i], (unsigned long long)h->n_items);
    return V4R_OK;
}

static int check_scales(const v4r_index *ix, const char *path, v4r_err *err)
{
    for (size_t i = 0; ix->scales && i < ix->n_panels * IX_PANEL; i++)
        if (!(isfinite(ix->scales[i]) && ix->scales[i] > 0))
            return bad(err, path, "section 'scales': scale %zu is %g, not a positive number", i,
                       (double)ix->scales[i]);
    return V4R_OK;
}

static int check_meta(const v4r_index *ix, const char *path, v4r_err *err)
{
    uint64_t len = ix->h.sec[SEC_META].len;
    if (len == 0 || ix->meta[len - 1] != 0 || memchr(ix->meta, 0, len) != ix->meta + len - 1)
        return bad(err, path, "section 'meta': not one NUL-terminated text");
    json_error_t je;
    json_t *root = json_loads(ix->meta, 0, &je);
    int ok = root && json_is_object(root);
    json_decref(root);
    if (!ok)
        return bad(err, path, "section 'meta': not a JSON object (%s)", root ? "another value" : je.text);
    return V4R_OK;
}

static int check_header_text(const unsigned char *b, const char *path, v4r_err *err)
{
    const unsigned char *label = b + AT_LABEL, *nul = memchr(label, 0, IX_LABEL_BYTES);
    if (!nul || nul == label)
        return bad(err, path, "header field 'label': empty or not NUL-terminated");
    for (const unsigned char *p = nul; p < label + IX_LABEL_BYTES; p++)
        if (*p)
            return bad(err, path, "header field 'label': bytes after its end are not zero");
    for (int i = 0; i < 64; i++)
        if (!strchr("0123456789abcdef", b[AT_BODY_SHA + i]) || !b[AT_BODY_SHA + i])
            return bad(err, path, "header field 'sha256' is not 64 hex digits");
    char hex[65];
    v4r_sha256_hex(b, IX_HEADER_SHA_AT, hex);
    if (memcmp(hex, b + IX_HEADER_SHA_AT, 64) != 0)
        return bad(err, path, "header field 'header_sha256' does not match the header's bytes (a damaged header)");
    return V4R_OK;
}

static int build_maps(v4r_index *ix, const char *path, v4r_err *err)
{
    v4r_strmap_init(&ix->item_map, ix->h.n_items);
    v4r_strmap_init(&ix->user_map, ix->h.n_users);
    ix->has_maps = 1;
    for (uint64_t i = 0; i < ix->h.n_items; i++)
        if (v4r_strmap_put(&ix->item_map, ix->item_str + ix->item_off[i], (int64_t)i) >= 0)
            return bad(err, path, "section 'item_ids': id '%s' repeats (item %llu)", ix->item_str + ix->item_off[i],
                       (unsigned long long)i);
    for (uint64_t u = 0; u < ix->h.n_users; u++)
        if (v4r_strmap_put(&ix->user_map, ix->user_str + ix->user_off[u], (int64_t)u) >= 0)
            return bad(err, path, "section 'user_ids': id '%s' repeats (user %llu)", ix->user_str + ix->user_off[u],
                       (unsigned long long)u);
    return V4R_OK;
}

/* Every check of an index whose bytes are at ix->base (size ix->size). */
static int check_all(v4r_index *ix, const char *path, int verify, v4r_err *err)
{
    const unsigned char *b = ix->base;
    if (ix->size < IX_HEADER_BYTES)
        return bad(err, path, "truncated: %zu bytes, the header alone takes %d", ix->size, IX_HEADER_BYTES);
    if (memcmp(b, IX_MAGIC, 8) != 0)
        return bad(err, path, "header field 'magic': not an index file (it does not start with %s)", IX_MAGIC);
    header_decode(b, &ix->h);
    if (ix->h.version != IX_VERSION && ix->h.version != IX_VERSION_IVF)
        return bad(err, path, "header field 'version': format version %u, this build reads versions %d and %d",
                   ix->h.version, IX_VERSION, IX_VERSION_IVF);
    if ((ix->h.version == IX_VERSION) != (ix->h.ivf.off == 0 && ix->h.ivf.len == 0))
        return bad(err, path, "header field 'ivf': %s", ix->h.version == IX_VERSION
                   ? "bytes 432..447 must be zero in a version 1 file" : "a version 2 file must have an IVF section");
    if (ix->h.file_bytes != ix->size)
        return bad(err, path, "header field 'file_bytes': %llu, the file has %zu bytes (%s)",
                   (unsigned long long)ix->h.file_bytes, ix->size,
                   ix->h.file_bytes > ix->size ? "truncated" : "bytes appended");
    int rc = check_counts(&ix->h, path, err);
    if (!rc)
        rc = check_sections(&ix->h, ix->size, path, err);
    if (!rc)
        rc = check_header_text(b, path, err);
    if (rc)
        return rc;
    ix_attach(ix);
    rc = check_ids(ix->item_off, ix->item_str, ix->h.n_items, ix->h.sec[SEC_ITEM_STR].len, "item", path, err);
    if (!rc)
        rc = check_ids(ix->user_off, ix->user_str, ix->h.n_users, ix->h.sec[SEC_USER_STR].len, "user", path, err);
    if (!rc)
        rc = check_history(ix, path, err);
    if (!rc)
        rc = check_scales(ix, path, err);
    if (!rc)
        rc = check_meta(ix, path, err);
    if (!rc && ix->h.ivf.len)
        rc = ivf_check(ix, path, err);
    if (!rc && verify) {
        char hex[65];
        v4r_sha256_hex(b + IX_HEADER_BYTES, ix->size - IX_HEADER_BYTES, hex);
        if (strcmp(hex, ix->h.body_sha) != 0)
            rc = bad(err, path, "header field 'sha256': the sections hash to %.12s..., the header says %.12s... "
                     "(a damaged file)", hex, ix->h.body_sha);
    }
    if (!rc)
        rc = build_maps(ix, path, err);
    return rc;
}

int ix_open_memory(const unsigned char *bytes, size_t size, const char *path, int verify, v4r_index **out,
                   v4r_err *err)
{
    v4r_index *ix = v4r_calloc(1, sizeof *ix);
    ix->path = v4r_strdup(path);
    ix->base = bytes;
    ix->size = size;
    int rc = v4r_kernel_pick(&ix->kernel, err);
    if (!rc)
        rc = check_all(ix, path, verify, err);
    if (rc) {
        v4r_index_close(ix);
        ix = NULL;
    }
    *out = ix;
    return rc;
}

int v4r_index_open(const char *path, int verify, v4r_index **out, v4r_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return v4r_fail(err, V4R_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        close(fd);
        return v4r_fail(err, V4R_EIO, "%s: not a regular file%s%s", path, e ? ": " : "", e ? strerror(e) : "");
    }
    size_t size = (size_t)st.st_size;
    if (size < IX_HEADER_BYTES) {
        close(fd);
        return bad(err, path, "truncated: %zu bytes, the header alone takes %d", size, IX_HEADER_BYTES);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return v4r_fail(err, V4R_EIO, "%s: cannot map: %s", path, strerror(e));
    int rc = ix_open_memory(map, size, path, verify, out, err);
    if (rc)
        munmap(map, size);
    else
        (*out)->mapped = 1;
    return rc;
}

void v4r_index_close(v4r_index *ix)
{
    if (!ix)
        return;
    if (ix->mapped)
        munmap((void *)ix->base, ix->size);
    if (ix->has_maps) {
        v4r_strmap_free(&ix->item_map);
        v4r_strmap_free(&ix->user_map);
    }
    free(ix->path);
    free(ix);
}

/* ---- lookups ---- */

size_t v4r_index_n_items(const v4r_index *ix) { return (size_t)ix->h.n_items; }
size_t v4r_index_dim(const v4r_index *ix) { return (size_t)ix->h.dim; }
size_t v4r_index_n_users(const v4r_index *ix) { return (size_t)ix->h.n_users; }
size_t v4r_index_profile_length(const v4r_index *ix) { return (size_t)ix->h.profile_length; }
v4r_index_dtype v4r_index_storage(const v4r_index *ix) { return (v4r_index_dtype)ix->h.dtype; }
const char *v4r_index_version(const v4r_index *ix) { return ix->h.label; }
const char *v4r_index_checksum(const v4r_index *ix) { return ix->h.body_sha; }
double v4r_index_recall_vs_f32(const v4r_index *ix) { return ix->h.recall; }
const char *v4r_index_meta_json(const v4r_index *ix) { return ix->meta; }
size_t v4r_index_nlist(const v4r_index *ix) { return (size_t)ix->ivf.nlist; }
size_t v4r_index_nprobe(const v4r_index *ix) { return (size_t)ix->ivf.nprobe; }
double v4r_index_ivf_recall(const v4r_index *ix, int vs_f32)
{
    return !ix->ivf.nlist ? -1 : vs_f32 ? ix->ivf.recall_vs_f32 : ix->ivf.recall_vs_exact;
}

const char *v4r_index_item_id(const v4r_index *ix, int32_t item) { return ix->item_str + ix->item_off[item]; }
const char *v4r_index_user_id(const v4r_index *ix, int32_t user) { return ix->user_str + ix->user_off[user]; }

int32_t v4r_index_find_item(const v4r_index *ix, const char *id, size_t len)
{
    return (int32_t)v4r_strmap_getn(&ix->item_map, id, len);
}

int32_t v4r_index_find_user(const v4r_index *ix, const char *id, size_t len)
{
    return (int32_t)v4r_strmap_getn(&ix->user_map, id, len);
}

size_t v4r_index_user_history(const v4r_index *ix, int32_t user, const int32_t **items)
{
    *items = ix->hist + ix->hist_off[user];
    return (size_t)(ix->hist_off[user + 1] - ix->hist_off[user]);
}

void ix_decode_row(int dtype, size_t d, const void *panels, const float *scales, size_t slot, float *out)
{
    size_t at = slot / IX_PANEL * d * IX_PANEL + slot % IX_PANEL;
    const unsigned char *v = panels;
    float scale = dtype == V4R_INDEX_I8 ? scales[slot] : 1;
    for (size_t k = 0; k < d; k++, at += IX_PANEL) {
        if (dtype == V4R_INDEX_F16)
            out[k] = v4r_f16_to_f32((uint16_t)(v[2 * at] | v[2 * at + 1] << 8));
        else if (dtype == V4R_INDEX_I8)
            out[k] = (float)((const int8_t *)panels)[at] * scale;
        else
            out[k] = ((const float *)panels)[at];
    }
}

void v4r_index_item_vector(const v4r_index *ix, int32_t item, float *out)
{
    ix_decode_row((int)ix->h.dtype, (size_t)ix->h.dim, ix->vectors, ix->scales, (size_t)item, out);
}

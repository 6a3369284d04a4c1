/* Live additions to an open index: items added and deleted and users' events, kept in memory
 * (added vectors in panels of the index's dtype, a deleted bit per item, events per user) and
 * appended to a checksummed log beside the index (INDEX.log, one line per change, fsync'ed
 * before the change is applied); the replay of that log at open (a torn last line cut off), the
 * search over base and changes, and the compaction of index and log into a new index file. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vlm4rec/ground.h"
#include "vlm4rec/rec.h"

enum { SUM_HEX = 16 }; /* a line is "<16 hex of the JSON's sha256> <JSON>\n" */
#define LOG_FORMAT "vlm4rec.live-log/1"

struct v4r_live {
    v4r_index *ix;
    char *log_path;
    pthread_rwlock_t rw; /* readers: searches and lookups; the writer: applying a change */
    pthread_mutex_t wmu; /* one change at a time: check, log, apply */
    size_t dim, n_base;
    /* added items: item n_base + j is slot j */
    size_t n_added, cap_added; /* cap: a multiple of 16 */
    unsigned char *panels;
    float *scales;
    char **ids;
    v4r_strmap live_map; /* id -> key; key_item[key] = its latest item */
    int32_t *key_item;
    size_t n_keys, cap_keys;
    /* deleted items */
    uint64_t *deleted;
    size_t deleted_words, n_deleted;
    /* events: per user, item indexes appended to the stored history */
    int32_t **ev;
    size_t *ev_n, *ev_cap;
    /* the log */
    int fd;
    uint64_t log_bytes, seq;
};

char *v4r_live_log_path(const char *index_path) { return v4r_sprintf("%s.log", index_path); }

/* ---- state ---- */

static int is_deleted(const v4r_live *lv, int32_t item)
{
    return (size_t)item / 64 < lv->deleted_words && ix_is_set(lv->deleted, item);
}

static int32_t find_unlocked(const v4r_live *lv, const char *id, size_t len)
{
    int64_t key = v4r_strmap_getn(&lv->live_map, id, len);
    int32_t item = key >= 0 ? lv->key_item[key] : v4r_index_find_item(lv->ix, id, len);
    return item >= 0 && !is_deleted(lv, item) ? item : -1;
}

static void grow_deleted(v4r_live *lv, size_t n_items)
{
    size_t words = (n_items + 63) / 64;
    if (words <= lv->deleted_words)
        return;
    size_t want = words * 2;
    lv->deleted = v4r_realloc(lv->deleted, want * sizeof *lv->deleted);
    memset(lv->deleted + lv->deleted_words, 0, (want - lv->deleted_words) * sizeof *lv->deleted);
    lv->deleted_words = want;
}

/* Appends a normalized row (called with the write lock). */
static int32_t apply_add(v4r_live *lv, const char *id, const float *row)
{
    int dtype = (int)lv->ix->h.dtype;
    if (lv->n_added == lv->cap_added) {
        size_t cap = lv->cap_added ? lv->cap_added * 2 : 64, panel = IX_PANEL * lv->dim * ix_dtype_size(dtype);
        lv->panels = v4r_realloc(lv->panels, cap / IX_PANEL * panel);
        memset(lv->panels + lv->cap_added / IX_PANEL * panel, 0, (cap - lv->cap_added) / IX_PANEL * panel);
        lv->scales = v4r_realloc(lv->scales, cap * sizeof *lv->scales);
        for (size_t i = lv->cap_added; i < cap; i++)
            lv->scales[i] = 1;
        lv->ids = v4r_realloc(lv->ids, cap * sizeof *lv->ids);
        lv->cap_added = cap;
    }
    size_t slot = lv->n_added++;
    ix_encode_row(dtype, row, lv->dim, lv->panels, lv->scales, slot);
    lv->ids[slot] = v4r_strdup(id);
    int32_t item = (int32_t)(lv->n_base + slot);
    grow_deleted(lv, lv->n_base + lv->n_added);
    int64_t key = v4r_strmap_getn(&lv->live_map, id, strlen(id));
    if (key < 0) {
        v4r_grow((void **)&lv->key_item, &lv->cap_keys, lv->n_keys + 1, sizeof *lv->key_item);
        key = (int64_t)lv->n_keys++;
        v4r_strmap_put(&lv->live_map, id, key);
    }
    lv->key_item[key] = item;
    return item;
}

static void apply_delete(v4r_live *lv, int32_t item)
{
    lv->deleted[item >> 6] |= (uint64_t)1 << (item & 63);
    lv->n_deleted++;
}

static void apply_events(v4r_live *lv, int32_t user, const int32_t *items, size_t n)
{
    if (!lv->ev) {
        size_t users = v4r_index_n_users(lv->ix);
        lv->ev = v4r_calloc(users ? users : 1, sizeof *lv->ev);
        lv->ev_n = v4r_calloc(users ? users : 1, sizeof *lv->ev_n);
        lv->ev_cap = v4r_calloc(users ? users : 1, sizeof *lv->ev_cap);
    }
    v4r_grow((void **)&lv->ev[user], &lv->ev_cap[user], lv->ev_n[user] + n, sizeof **lv->ev);
    memcpy(lv->ev[user] + lv->ev_n[user], items, n * sizeof *items);
    lv->ev_n[user] += n;
}

/* The row normalized as index build normalizes it; V4R_EINPUT for a wrong length, a non-finite
 * or a zero vector. */
static int normalized_row(const v4r_live *lv, const float *vector, size_t dim, float *row, v4r_err *err)
{
    if (dim != lv->dim)
        return v4r_fail(err, V4R_EINPUT, "the vector has %zu values, the index's dimension is %zu", dim, lv->dim);
    int nonzero = 0;
    for (size_t k = 0; k < dim; k++) {
        if (!isfinite(vector[k]))
            return v4r_fail(err, V4R_EINPUT, "vector entry %zu is not a finite number", k);
        nonzero |= vector[k] != 0;
    }
    if (!nonzero)
        return v4r_fail(err, V4R_EINPUT, "the vector is all zeros");
    memcpy(row, vector, dim * sizeof *row);
    v4r_matrix m = {row, 1, dim};
    return v4r_repr_normalize(&m, NULL, "vector", err);
}

/* ---- log records ---- */

static char *hex_of(const void *data, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = data;
    char *s = v4r_malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = digits[b[i] >> 4];
        s[2 * i + 1] = digits[b[i] & 15];
    }
    s[2 * n] = 0;
    return s;
}

static int unhex(const char *s, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int h = 0; h < 2; h++) {
            char c = s[2 * i + h];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                return -1;
            v = v << 4 | d;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* One log line of a record (taken). */
static char *record_line(json_t *rec, size_t *len)
{
    char *text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rec);
    char sum[65];
    v4r_sha256_hex(text, strlen(text), sum);
    char *line = v4r_sprintf("%.*s %s\n", SUM_HEX, sum, text);
    free(text);
    *len = strlen(line);
    return line;
}

/* The header line that binds a log to its index. */
static char *header_line(const v4r_index *ix, size_t *len)
{
    return record_line(json_pack("{s:s,s:s,s:s}", "op", "log", "format", LOG_FORMAT, "index_sha256",
                                 v4r_index_checksum(ix)),
                       len);
}

/* Parses line [0, n) (without its newline): NULL when the checksum or the JSON is bad. */
static json_t *parse_line(const char *line, size_t n)
{
    if (n < SUM_HEX + 2 || line[SUM_HEX] != ' ')
        return NULL;
    char sum[65];
    v4r_sha256_hex(line + SUM_HEX + 1, n - SUM_HEX - 1, sum);
    if (memcmp(sum, line, SUM_HEX))
        return NULL;
    return json_loadb(line + SUM_HEX + 1, n - SUM_HEX - 1, JSON_REJECT_DUPLICATES, NULL);
}

/* Applies one record read from the log (offset for messages). */
static int replay_record(v4r_live *lv, json_t *rec, uint64_t at, v4r_err *err)
{
    const char *op = json_string_value(json_object_get(rec, "op"));
    json_int_t seq = json_integer_value(json_object_get(rec, "seq"));
    const char *path = lv->log_path;
    if (!op || seq != (json_int_t)lv->seq + 1)
        return v4r_fail(err, V4R_EINPUT, "%s: the record at byte %llu has no op or sequence number %llu", path,
                        (unsigned long long)at, (unsigned long long)lv->seq + 1);
    if (!strcmp(op, "add")) {
        const char *id = json_string_value(json_object_get(rec, "item"));
        const char *hex = json_string_value(json_object_get(rec, "vector_f32le"));
        if (!id || !*id || !hex || strlen(hex) != lv->dim * 8)
            return v4r_fail(err, V4R_EINPUT, "%s: the add record at byte %llu has no item or a vector of the wrong length",
                            path, (unsigned long long)at);
        if (find_unlocked(lv, id, strlen(id)) >= 0)
            return v4r_fail(err, V4R_EINPUT, "%s: the add record at byte %llu repeats the item '%s'", path,
                            (unsigned long long)at, id);
        float *v = v4r_malloc(2 * lv->dim * sizeof *v);
        int rc = unhex(hex, lv->dim * 4, (unsigned char *)v) ? V4R_EINPUT : normalized_row(lv, v, lv->dim, v + lv->dim, err);
        if (!rc)
            apply_add(lv, id, v + lv->dim);
        free(v);
        if (rc)
            return v4r_fail(err, V4R_EINPUT, "%s: the add record at byte %llu has a bad vector", path,
                            (unsigned long long)at);
    } else if (!strcmp(op, "delete")) {
        const char *id = json_string_value(json_object_get(rec, "item"));
        int32_t item = id ? find_unlocked(lv, id, strlen(id)) : -1;
        if (item < 0)
            return v4r_fail(err, V4R_EINPUT, "%s: the delete record at byte %llu names no live item", path,
                            (unsigned long long)at);
        apply_delete(lv, item);
    } else if (!strcmp(op, "events")) {
        const char *user = json_string_value(json_object_get(rec, "user"));
        json_t *arr = json_object_get(rec, "items");
        int32_t u = user ? v4r_index_find_user(lv->ix, user, strlen(user)) : -1;
        size_t n = json_array_size(arr);
        if (u < 0 || !n)
            return v4r_fail(err, V4R_EINPUT, "%s: the events record at byte %llu names no known user or no items", path,
                            (unsigned long long)at);
        int32_t *items = v4r_malloc(n * sizeof *items);
        for (size_t i = 0; i < n; i++) {
            const char *id = json_string_value(json_array_get(arr, i));
            items[i] = id ? find_unlocked(lv, id, strlen(id)) : -1;
            if (items[i] < 0) {
                free(items);
                return v4r_fail(err, V4R_EINPUT, "%s: the events record at byte %llu names an unknown item", path,
                                (unsigned long long)at);
            }
        }
        apply_events(lv, u, items, n);
        free(items);
    } else {
        return v4r_fail(err, V4R_EINPUT, "%s: the record at byte %llu has the unknown op '%s'", path,
                        (unsigned long long)at, op);
    }
    lv->seq++;
    return V4R_OK;
}

static int check_header(const v4r_live *lv, json_t *rec, v4r_err *err)
{
    const char *op = json_string_value(json_object_get(rec, "op"));
    const char *sha = json_string_value(json_object_get(rec, "index_sha256"));
    if (!op || strcmp(op, "log") || !sha)
        return v4r_fail(err, V4R_EINPUT, "%s: the first line is not a log header", lv->log_path);
    if (strcmp(sha, v4r_index_checksum(lv->ix)))
        return v4r_fail(err, V4R_EINPUT,
                        "%s: the log was written for the index with sha256 %.12s, not this one (%.12s); if "
                        "`index compact` was interrupted, the index already holds its records: move the log away",
                        lv->log_path, sha, v4r_index_checksum(lv->ix));
    return V4R_OK;
}

/* Replays the log's bytes; *good is where the last whole record ends. */
static int replay_bytes(v4r_live *lv, const char *data, size_t size, uint64_t *good, size_t *records, v4r_err *err)
{
    size_t pos = 0;
    *good = 0;
    *records = 0;
    while (pos < size) {
        const char *nl = memchr(data + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - data) : size;
        json_t *rec = nl ? parse_line(data + pos, end - pos) : NULL;
        if (!rec) {
            if (!nl || end + 1 == size)
                return V4R_OK; /* a torn last record: the caller cuts it off */
            return v4r_fail(err, V4R_EINPUT, "%s: the record at byte %zu is damaged (checksum or JSON)",
                            lv->log_path, pos);
        }
        int rc = pos == 0 ? check_header(lv, rec, err) : replay_record(lv, rec, pos, err);
        json_decref(rec);
        if (rc)
            return rc;
        *records += pos > 0;
        pos = end + 1;
        *good = pos;
    }
    return V4R_OK;
}

/* Opens, locks and replays the log when it exists; a torn tail is truncated. locked_fd >= 0: the
 * log, open and locked by the caller (compaction), which keeps it. */
static int replay(v4r_live *lv, v4r_live_replay *rep, int locked_fd, v4r_err *err)
{
    int fd = locked_fd >= 0 ? locked_fd : open(lv->log_path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? V4R_OK : v4r_fail(err, V4R_EIO, "%s: %s", lv->log_path, strerror(errno));
    if (locked_fd < 0)
        flock(fd, LOCK_EX);
    char *data = NULL;
    size_t size = 0;
    uint64_t good = 0;
    int rc = v4r_read_file(lv->log_path, &data, &size, err);
    if (!rc)
        rc = replay_bytes(lv, data, size, &good, &rep->records, err);
    if (!rc && good < size) {
        v4r_warn("%s: the last record (at byte %llu, %llu bytes) is torn: cut off", lv->log_path,
                 (unsigned long long)good, (unsigned long long)(size - good));
        rep->truncated = 1;
        rep->torn_at = good;
        if (ftruncate(fd, (off_t)good) != 0 || fsync(fd) != 0)
            rc = v4r_fail(err, V4R_EIO, "%s: cannot cut off the torn record: %s", lv->log_path, strerror(errno));
    }
    free(data);
    lv->log_bytes = good;
    if (locked_fd >= 0)
        return rc;
    flock(fd, LOCK_UN);
    if (rc || good == 0) {
        close(fd);
        return rc;
    }
    lv->fd = fd;
    return V4R_OK;
}

/* ---- open, close, lookups ---- */

static int live_open(v4r_index *ix, const char *log_path, int locked_fd, v4r_live **out, v4r_live_replay *rep,
                     v4r_err *err)
{
    v4r_live_replay none;
    rep = rep ? rep : &none;
    memset(rep, 0, sizeof *rep);
    v4r_live *lv = v4r_calloc(1, sizeof *lv);
    lv->ix = ix;
    lv->log_path = v4r_strdup(log_path);
    lv->dim = v4r_index_dim(ix);
    lv->n_base = v4r_index_n_items(ix);
    lv->fd = -1;
    pthread_rwlock_init(&lv->rw, NULL);
    pthread_mutex_init(&lv->wmu, NULL);
    v4r_strmap_init(&lv->live_map, 64);
    grow_deleted(lv, lv->n_base);
    int rc = replay(lv, rep, locked_fd, err);
    rep->log_bytes = lv->log_bytes;
    if (rc) {
        v4r_live_close(lv);
        return rc;
    }
    *out = lv;
    return V4R_OK;
}

int v4r_live_open(v4r_index *ix, const char *log_path, v4r_live **out, v4r_live_replay *rep, v4r_err *err)
{
    return live_open(ix, log_path, -1, out, rep, err);
}

void v4r_live_close(v4r_live *lv)
{
    if (!lv)
        return;
    if (lv->fd >= 0)
        close(lv->fd);
    for (size_t i = 0; i < lv->n_added; i++)
        free(lv->ids[i]);
    size_t users = v4r_index_n_users(lv->ix);
    for (size_t u = 0; lv->ev && u < users; u++)
        free(lv->ev[u]);
    free(lv->ev);
    free(lv->ev_n);
    free(lv->ev_cap);
    free(lv->ids);
    free(lv->panels);
    free(lv->scales);
    free(lv->key_item);
    free(lv->deleted);
    v4r_strmap_free(&lv->live_map);
    pthread_rwlock_destroy(&lv->rw);
    pthread_mutex_destroy(&lv->wmu);
    v4r_index_close(lv->ix);
    free(lv->log_path);
    free(lv);
}

v4r_index *v4r_live_base(const v4r_live *lv) { return lv->ix; }

#define READ_LOCKED(lv, expr)                                                                                   \
    pthread_rwlock_rdlock(&((v4r_live *)(lv))->rw);                                                             \
    expr;                                                                                                       \
    pthread_rwlock_unlock(&((v4r_live *)(lv))->rw)

size_t v4r_live_n_items(const v4r_live *lv)
{
    READ_LOCKED(lv, size_t n = lv->n_base + lv->n_added);
    return n;
}

size_t v4r_live_n_added(const v4r_live *lv)
{
    READ_LOCKED(lv, size_t n = lv->n_added);
    return n;
}

size_t v4r_live_n_deleted(const v4r_live *lv)
{
    READ_LOCKED(lv, size_t n = lv->n_deleted);
    return n;
}

uint64_t v4r_live_log_bytes(const v4r_live *lv)
{
    READ_LOCKED(lv, uint64_t n = lv->log_bytes);
    return n;
}

uint64_t v4r_live_seq(const v4r_live *lv)
{
    READ_LOCKED(lv, uint64_t n = lv->seq);
    return n;
}

const char *v4r_live_item_id(const v4r_live *lv, int32_t item)
{
    if ((size_t)item < lv->n_base)
        return v4r_index_item_id(lv->ix, item);
    READ_LOCKED(lv, const char *id = lv->ids[(size_t)item - lv->n_base]);
    return id;
}

int32_t v4r_live_find_item(const v4r_live *lv, const char *id, size_t len)
{
    READ_LOCKED(lv, int32_t item = find_unlocked(lv, id, len));
    return item;
}

size_t v4r_live_user_history(const v4r_live *lv, int32_t user, int32_t **items)
{
    const int32_t *stored;
    size_t n_stored = v4r_index_user_history(lv->ix, user, &stored), n = 0;
    pthread_rwlock_rdlock((pthread_rwlock_t *)&lv->rw);
    size_t n_ev = lv->ev ? lv->ev_n[user] : 0;
    *items = v4r_malloc((n_stored + n_ev + 1) * sizeof **items);
    for (size_t i = 0; i < n_stored + n_ev; i++) {
        int32_t it = i < n_stored ? stored[i] : lv->ev[user][i - n_stored];
        if (!is_deleted(lv, it))
            (*items)[n++] = it;
    }
    pthread_rwlock_unlock((pthread_rwlock_t *)&lv->rw);
    return n;
}

void v4r_live_item_vector(const v4r_live *lv, int32_t item, float *out)
{
    if ((size_t)item < lv->n_base) {
        v4r_index_item_vector(lv->ix, item, out);
        return;
    }
    READ_LOCKED(lv, ix_decode_row((int)lv->ix->h.dtype, lv->dim, lv->panels, lv->scales, (size_t)item - lv->n_base,
                                  out));
}

int v4r_live_search(const v4r_live *lv, const v4r_index_query *queries, size_t nq, size_t kmax, int threads,
                    int32_t *top_items, float *top_scores, v4r_err *err)
{
    pthread_rwlock_rdlock((pthread_rwlock_t *)&lv->rw);
    ix_delta dl = {lv->n_added, lv->panels, lv->scales, lv->n_deleted ? lv->deleted : NULL};
    int rc = ix_search_delta(lv->ix, &dl, queries, nq, kmax, threads, top_items, top_scores, err);
    pthread_rwlock_unlock((pthread_rwlock_t *)&lv->rw);
    return rc;
}

/* ---- appending ---- */

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static void fsync_dir(const char *path)
{
    char *dir = v4r_strdup(path), *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = 0;
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* 1 when the file at the log's path is no longer the one open (compaction rotated it). */
static int rotated(const v4r_live *lv)
{
    struct stat a, b;
    return fstat(lv->fd, &a) != 0 || stat(lv->log_path, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

/* Opens the log for the first change: a new log gets its header; an existing one that is not the
 * log replayed (size or header) was rotated. Called with the lock held, returns locked. */
static int open_for_append(v4r_live *lv, v4r_err *err)
{
    int fd = open(lv->log_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return v4r_fail(err, V4R_EIO, "%s: cannot open the log: %s", lv->log_path, strerror(errno));
    flock(fd, LOCK_EX);
    struct stat st;
    fstat(fd, &st);
    if (st.st_size != 0) { /* made by another process since the replay: a compaction's new log */
        close(fd);
        return v4r_fail(err, V4R_LIVE_ROTATED, "%s: the log was replaced (index compacted): reload the index",
                        lv->log_path);
    }
    size_t len;
    char *line = header_line(lv->ix, &len);
    int bad = write_all(fd, line, len) || fsync(fd);
    free(line);
    if (bad) {
        int e = errno;
        (void)ftruncate(fd, 0);
        close(fd);
        return v4r_fail(err, V4R_EIO, "%s: cannot write the log: %s", lv->log_path, strerror(e));
    }
    fsync_dir(lv->log_path);
    lv->fd = fd;
    lv->log_bytes = len;
    return V4R_OK;
}

/* Appends one record (the next sequence number is set here) and syncs it; nothing is written on
 * an error. */
static int append(v4r_live *lv, json_t *rec, v4r_err *err)
{
    json_object_set_new(rec, "seq", json_integer((json_int_t)lv->seq + 1));
    int rc = V4R_OK;
    if (lv->fd < 0)
        rc = open_for_append(lv, err);
    else if (flock(lv->fd, LOCK_EX) != 0 || rotated(lv))
        rc = v4r_fail(err, V4R_LIVE_ROTATED, "%s: the log was rotated (index compacted): reload the index",
                      lv->log_path);
    if (rc) {
        if (lv->fd >= 0)
            flock(lv->fd, LOCK_UN);
        json_decref(rec);
        return rc;
    }
    size_t len;
    char *line = record_line(rec, &len);
    if (write_all(lv->fd, line, len) || fdatasync(lv->fd)) {
        rc = v4r_fail(err, V4R_EIO, "%s: cannot append to the log: %s", lv->log_path, strerror(errno));
        (void)ftruncate(lv->fd, (off_t)lv->log_bytes);
    }
    flock(lv->fd, LOCK_UN);
    free(line);
    if (!rc)
        lv->log_bytes += len;
    return rc;
}

int v4r_live_add_item(v4r_live *lv, const char *id, const float *vector, size_t dim, int32_t *item, uint64_t *seq,
                      v4r_err *err)
{
    if (!id || !*id)
        return v4r_fail(err, V4R_EINPUT, "the item id is empty");
    float *row = v4r_malloc((dim ? dim : 1) * sizeof *row);
    pthread_mutex_lock(&lv->wmu);
    int rc = normalized_row(lv, vector, dim, row, err);
    if (!rc && find_unlocked(lv, id, strlen(id)) >= 0)
        rc = v4r_fail(err, V4R_LIVE_EXISTS, "the item '%.200s' is already in the index", id);
    if (!rc) {
        char *hex = hex_of(vector, dim * sizeof *vector); /* little-endian hosts only (as the index file) */
        rc = append(lv, json_pack("{s:s,s:s,s:s}", "op", "add", "item", id, "vector_f32le", hex), err);
        free(hex);
    }
    if (!rc) {
        pthread_rwlock_wrlock(&lv->rw);
        *item = apply_add(lv, id, row);
        *seq = ++lv->seq;
        pthread_rwlock_unlock(&lv->rw);
    }
    pthread_mutex_unlock(&lv->wmu);
    free(row);
    return rc;
}

int v4r_live_delete_item(v4r_live *lv, const char *id, uint64_t *seq, v4r_err *err)
{
    pthread_mutex_lock(&lv->wmu);
    int32_t item = find_unlocked(lv, id, strlen(id));
    int rc = item < 0 ? v4r_fail(err, V4R_LIVE_UNKNOWN, "unknown item \"%.200s\"", id)
                      : append(lv, json_pack("{s:s,s:s}", "op", "delete", "item", id), err);
    if (!rc) {
        pthread_rwlock_wrlock(&lv->rw);
        apply_delete(lv, item);
        *seq = ++lv->seq;
        pthread_rwlock_unlock(&lv->rw);
    }
    pthread_mutex_unlock(&lv->wmu);
    return rc;
}

int v4r_live_add_events(v4r_live *lv, int32_t user, const int32_t *items, size_t n, uint64_t *seq, v4r_err *err)
{
    if (user < 0 || (size_t)user >= v4r_index_n_users(lv->ix) || !n)
        return v4r_fail(err, V4R_EINPUT, "events need a known user and at least one item");
    pthread_mutex_lock(&lv->wmu);
    json_t *ids = json_array();
    int rc = V4R_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        if (items[i] < 0 || (size_t)items[i] >= lv->n_base + lv->n_added || is_deleted(lv, items[i]))
            rc = v4r_fail(err, V4R_LIVE_UNKNOWN, "event %zu is not a live item", i);
        else
            json_array_append_new(ids, json_string((size_t)items[i] < lv->n_base
                                                       ? v4r_index_item_id(lv->ix, items[i])
                                                       : lv->ids[(size_t)items[i] - lv->n_base]));
    }
    if (!rc)
        rc = append(lv,
                    json_pack("{s:s,s:s,s:O}", "op", "events", "user", v4r_index_user_id(lv->ix, user), "items", ids),
                    err);
    json_decref(ids);
    if (!rc) {
        pthread_rwlock_wrlock(&lv->rw);
        apply_events(lv, user, items, n);
        *seq = ++lv->seq;
        pthread_rwlock_unlock(&lv->rw);
    }
    pthread_mutex_unlock(&lv->wmu);
    return rc;
}

/* ---- compaction ---- */

/* The build options of the index as its header and meta record them. */
static void compact_opts(const v4r_live *lv, json_t *meta, v4r_index_build_opts *o, char **source, char **encoder)
{
    const v4r_index *ix = lv->ix;
    json_t *opt = json_object_get(meta, "options"), *ivf = json_object_get(meta, "ivf");
    v4r_index_build_defaults(o);
    o->dtype = (v4r_index_dtype)ix->h.dtype;
    o->history_splits = 1u << V4R_TRAIN; /* the stored histories, as train interactions in order */
    o->keep = (size_t)ix->h.keep;
    o->profile_length = (size_t)ix->h.profile_length;
    o->label = json_string_value(json_object_get(meta, "label"));
    if (json_is_integer(json_object_get(opt, "check_users")))
        o->check_users = (size_t)json_integer_value(json_object_get(opt, "check_users"));
    if (json_is_integer(json_object_get(opt, "check_k")))
        o->check_k = (size_t)json_integer_value(json_object_get(opt, "check_k"));
    if (json_is_integer(json_object_get(opt, "seed")))
        o->seed = (uint64_t)json_integer_value(json_object_get(opt, "seed"));
    if (ix->ivf.nlist) {
        o->ivf = 1;
        o->nlist = ix->ivf.nlist == ivf_default_nlist((size_t)ix->h.n_items) ? 0 : (size_t)ix->ivf.nlist;
        if (json_is_number(json_object_get(ivf, "target")))
            o->ivf_target = json_number_value(json_object_get(ivf, "target"));
        if (ix->ivf.iterations)
            o->iterations = (size_t)ix->ivf.iterations;
    }
    const char *vectors = json_string_value(json_object_get(meta, "vectors"));
    *source = v4r_sprintf("%s + %s", vectors ? vectors : "?", lv->log_path);
    o->vectors_source = *source;
    json_t *enc = json_object_get(meta, "encoder");
    *encoder = json_is_object(enc) ? json_dumps(enc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    o->encoder_json = *encoder;
}

/* The dataset of the live index: items not deleted (base, then added), users, and each user's
 * history (stored, then events; deleted items left out) as train interactions in order; rows
 * (and int8 scales) as stored. */
static void compact_dataset(const v4r_live *lv, v4r_dataset *ds, v4r_matrix *rows, float **scales)
{
    size_t n_all = lv->n_base + lv->n_added, n = 0, d = lv->dim;
    int32_t *map = v4r_malloc((n_all ? n_all : 1) * sizeof *map);
    v4r_dataset_init(ds);
    rows->data = v4r_malloc((n_all ? n_all : 1) * d * sizeof *rows->data);
    rows->cols = d;
    *scales = v4r_malloc((n_all ? n_all : 1) * sizeof **scales);
    int is_new;
    for (size_t i = 0; i < n_all; i++) {
        map[i] = -1;
        if (is_deleted(lv, (int32_t)i))
            continue;
        map[i] = v4r_dataset_add_item(ds, v4r_live_item_id(lv, (int32_t)i), "", "", &is_new);
        v4r_live_item_vector(lv, (int32_t)i, rows->data + n * d);
        (*scales)[n] = i < lv->n_base ? (lv->ix->scales ? lv->ix->scales[i] : 1) : lv->scales[i - lv->n_base];
        n++;
    }
    rows->rows = n;
    size_t users = v4r_index_n_users(lv->ix);
    for (size_t u = 0; u < users; u++) {
        int32_t du = v4r_dataset_add_user(ds, v4r_index_user_id(lv->ix, (int32_t)u), &is_new);
        int32_t *hist;
        size_t nh = v4r_live_user_history(lv, (int32_t)u, &hist);
        for (size_t j = 0; j < nh; j++)
            v4r_split_push(&ds->split[V4R_TRAIN], du, map[hist[j]], (int64_t)j, 1, 0);
        free(hist);
    }
    free(map);
}

int v4r_live_compact(const char *index_path, const char *out, v4r_live_compact_report *rep, v4r_err *err)
{
    memset(rep, 0, sizeof *rep);
    v4r_index *ix;
    int rc = v4r_index_open(index_path, 1, &ix, err);
    if (rc)
        return rc;
    char *log_path = v4r_live_log_path(index_path);
    int lock_fd = open(log_path, O_RDWR | O_CLOEXEC); /* held locked: no change slips in meanwhile */
    if (lock_fd >= 0)
        flock(lock_fd, LOCK_EX);
    v4r_live *lv = NULL;
    v4r_live_replay rp;
    if (lock_fd < 0 && errno != ENOENT)
        rc = v4r_fail(err, V4R_EIO, "%s: %s", log_path, strerror(errno));
    if (!rc)
        rc = live_open(ix, log_path, lock_fd, &lv, &rp, err);
    else
        v4r_index_close(ix);
    if (!rc) {
        json_t *meta = json_loads(v4r_index_meta_json(ix), 0, NULL);
        v4r_index_build_opts o;
        char *source, *encoder;
        compact_opts(lv, meta, &o, &source, &encoder);
        v4r_dataset ds;
        v4r_matrix rows;
        float *scales;
        compact_dataset(lv, &ds, &rows, &scales);
        ds.dir = v4r_strdup(json_string_value(json_object_get(meta, "dataset")) ? json_string_value(json_object_get(meta, "dataset")) : ".");
        o.rows_normalized = 1;
        o.row_scales = scales;
        const char *target = out ? out : index_path;
        rep->records = rp.records;
        rep->added = lv->n_added;
        rep->deleted = lv->n_deleted;
        rep->n_items = rows.rows;
        for (size_t u = 0; lv->ev && u < v4r_index_n_users(ix); u++)
            rep->events += lv->ev_n[u];
        rc = v4r_index_build(&ds, &rows, &o, target, &rep->build, err);
        if (!rc && strcmp(target, index_path) == 0 && lock_fd >= 0) {
            /* the new index is in place: keep the old log aside, start an empty one */
            char *old = v4r_sprintf("%s.old", log_path);
            if (rename(log_path, old) != 0)
                rc = v4r_fail(err, V4R_EIO, "%s: cannot rotate the log: %s", log_path, strerror(errno));
            free(old);
            rep->rotated = rc == 0;
            fsync_dir(log_path);
        }
        json_decref(meta);
        free(source);
        free(encoder);
        free(rows.data);
        free(scales);
        v4r_dataset_free(&ds);
        v4r_live_close(lv);
    }
    if (lock_fd >= 0)
        close(lock_fd);
    free(log_path);
    return rc;
}

/* `cache import`: descriptions made elsewhere (a JSON object, JSONL or TSV, told apart by content)
 * stored as done rows in one transaction: all of the file or nothing. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cache_internal.h"
#include "vlm4rec/io.h"

typedef struct {
    char *item, *text;
    long line; /* 0 when the format has no lines to name (then the item is named) */
} entry;

typedef struct {
    const char *path;
    const v4r_dataset *ds;
    entry *e;
    size_t n, cap;
    v4r_strmap seen; /* item -> index into e */
} entries;

static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p >> 5) == 6 ? 1 : (*p >> 4) == 14 ? 2 : (*p >> 3) == 30 ? 3 : -1;
        if (n < 0)
            return 0;
        unsigned cp = n ? *p & (0x3f >> n) : *p;
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        static const unsigned min[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* "FILE:LINE" or "FILE: item 'X'" for messages. */
static char *where(const entries *es, long line, const char *item)
{
    return line > 0 ? v4r_sprintf("%s:%ld", es->path, line) : v4r_sprintf("%s: item '%s'", es->path, item);
}

static int add(entries *es, const char *item, const char *text, long line, v4r_err *err)
{
    char *at = where(es, line, item);
    int rc = V4R_OK;
    if (!*item)
        rc = v4r_fail(err, V4R_EINPUT, "%s: empty item id", at);
    else if (!utf8_valid(item) || !utf8_valid(text))
        rc = v4r_fail(err, V4R_EINPUT, "%s: not valid UTF-8", at);
    else if (v4r_line_blank(text) || !text[strspn(text, " \t\r\n")])
        rc = v4r_fail(err, V4R_EINPUT, "%s: empty description for item '%s'", at, item);
    else if (es->ds && v4r_strmap_get(&es->ds->item_index, item) < 0)
        rc = v4r_fail(err, V4R_EINPUT, "%s: unknown item '%s' (not in the dataset %s)", at, item,
                      es->ds->dir ? es->ds->dir : "");
    if (!rc) {
        int64_t prev = v4r_strmap_put(&es->seen, item, (int64_t)es->n);
        if (prev >= 0 && es->e[prev].line > 0)
            rc = v4r_fail(err, V4R_EINPUT, "%s: item '%s' already described at line %ld", at, item, es->e[prev].line);
        else if (prev >= 0)
            rc = v4r_fail(err, V4R_EINPUT, "%s: described twice", at);
    }
    free(at);
    if (rc)
        return rc;
    v4r_grow((void **)&es->e, &es->cap, es->n + 1, sizeof *es->e);
    es->e[es->n++] = (entry){v4r_strdup(item), v4r_strdup(text), line};
    return V4R_OK;
}

/* The line where a key of a JSON object first appears in the file (0 when not found). */
static long key_line(const char *data, const char *key)
{
    json_t *k = json_string(key);
    char *enc = k ? json_dumps(k, JSON_ENCODE_ANY) : NULL;
    json_decref(k);
    const char *hit = enc ? strstr(data, enc) : NULL;
    free(enc);
    long line = hit ? 1 : 0;
    for (const char *p = data; hit && p < hit; p++)
        line += *p == '\n';
    return line;
}

static int read_object(entries *es, json_t *root, const char *data, v4r_err *err)
{
    const char *key;
    json_t *val;
    int rc = V4R_OK;
    json_object_foreach(root, key, val)
    {
        long line = key_line(data, key);
        if (!json_is_string(val)) {
            char *at = where(es, line, key);
            rc = v4r_fail(err, V4R_EINPUT, "%s: the description of item '%s' is not a string", at, key);
            free(at);
        } else {
            rc = add(es, key, json_string_value(val), line, err);
        }
        if (rc)
            break;
    }
    if (!rc && es->n == 0)
        rc = v4r_fail(err, V4R_EINPUT, "%s: no descriptions (an empty object)", es->path);
    return rc;
}

static int read_jsonl_line(entries *es, const char *line, long lineno, v4r_err *err)
{
    json_error_t je;
    json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
    int rc = V4R_OK;
    if (!json_is_object(o))
        rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: not a JSON object%s%s%s", es->path, lineno, o ? "" : " (",
                      o ? "" : je.text, o ? "" : ")");
    json_t *id = o ? json_object_get(o, "item") : NULL, *text = o ? json_object_get(o, "description") : NULL;
    if (o && !id)
        id = json_object_get(o, "id");
    if (o && !text)
        text = json_object_get(o, "text");
    char num[32];
    const char *id_str = NULL;
    if (!rc && json_is_string(id))
        id_str = json_string_value(id);
    else if (!rc && json_is_integer(id))
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(id)), id_str = num;
    else if (!rc)
        rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'item' (or 'id') missing or not a string", es->path, lineno);
    if (!rc && !json_is_string(text))
        rc = v4r_fail(err, V4R_EINPUT, "%s:%ld: field 'description' (or 'text') missing or not a string", es->path,
                      lineno);
    if (!rc)
        rc = add(es, id_str, json_string_value(text), lineno, err);
    json_decref(o);
    return rc;
}

static int read_tsv_line(entries *es, char *line, long lineno, v4r_err *err)
{
    char *f[3];
    size_t n = v4r_tsv_split(line, f, 3);
    if (lineno == 1 && n == 2 && !strcmp(f[0], "item") && (!strcmp(f[1], "description") || !strcmp(f[1], "text")))
        return V4R_OK; /* header */
    if (n != 2)
        return v4r_fail(err, V4R_EINPUT, "%s:%ld: %zu field%s, expected item<TAB>description", es->path, lineno, n,
                        n == 1 ? "" : "s");
    v4r_tsv_unescape(f[0]);
    v4r_tsv_unescape(f[1]);
    return add(es, f[0], f[1], lineno, err);
}

/* Splits data into lines (numbered from 1, \r\n or \n) and reads each non-blank one. */
static int read_lines(entries *es, char *data, int jsonl, v4r_err *err)
{
    long lineno = 0;
    int rc = V4R_OK;
    for (char *p = data; *p && !rc;) {
        char *nl = strchr(p, '\n'), *next = nl ? nl + 1 : p + strlen(p);
        if (nl) {
            *nl = 0;
            if (nl > p && nl[-1] == '\r')
                nl[-1] = 0;
        }
        lineno++;
        if (!v4r_line_blank(p))
            rc = jsonl ? read_jsonl_line(es, p, lineno, err) : read_tsv_line(es, p, lineno, err);
        p = next;
    }
    if (!rc && es->n == 0)
        rc = v4r_fail(err, V4R_EINPUT, "%s: no descriptions", es->path);
    return rc;
}

static int looks_like_record(json_t *o)
{
    return (json_object_get(o, "item") || json_object_get(o, "id")) &&
           (json_object_get(o, "description") || json_object_get(o, "text"));
}

static int parse_file(entries *es, v4r_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = v4r_read_file(es->path, &data, &len, err);
    if (rc)
        return rc;
    if (memchr(data, 0, len)) {
        free(data);
        return v4r_fail(err, V4R_EINPUT, "%s: a NUL byte: not a text file", es->path);
    }
    char *body = data + (len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3) ? 3 : 0);
    const char *first = body + strspn(body, " \t\r\n");
    if (!*first) {
        rc = v4r_fail(err, V4R_EINPUT, "%s: no descriptions (an empty file)", es->path);
    } else if (*first == '{') {
        json_t *root = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
        /* a single line holding one record is JSONL, not an {item: description} object */
        const char *nl = strchr(first, '\n');
        int one_line = !nl || nl[strspn(nl, " \t\r\n")] == 0;
        if (json_is_object(root) && !(one_line && looks_like_record(root)))
            rc = read_object(es, root, body, err);
        else
            rc = read_lines(es, body, 1, err);
        json_decref(root);
    } else {
        rc = read_lines(es, body, 0, err);
    }
    free(data);
    return rc;
}

/* The item's image hash: sha256 of its file (relative paths against the dataset directory); "" for
 * no image, a URL, or a file that cannot be read. */
static void image_hash(const v4r_dataset *ds, const char *item, char hex[65], size_t *missing)
{
    hex[0] = 0;
    if (!ds)
        return;
    int64_t i = v4r_strmap_get(&ds->item_index, item);
    const char *img = i >= 0 ? ds->item_image[i] : NULL;
    if (!img || !*img)
        return;
    if (strstr(img, "://")) {
        (*missing)++;
        return;
    }
    char *path = v4r_path_join(ds->dir, img);
    if (cache_sha256_file(path, hex) != 0) {
        hex[0] = 0;
        (*missing)++;
    }
    free(path);
}

static int store(v4r_cache *c, const entries *es, const v4r_cache_import_opts *o, const char *ph, size_t *n_in,
                 v4r_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = cache_prepare(c,
                           "INSERT INTO descriptions(item, image_hash, prompt_hash, model, status, permanent,"
                           " description, attempts, created, updated) VALUES(?1, ?2, ?3, ?4, 'done', 0, ?5, 0, ?6, ?6)"
                           " ON CONFLICT(item, image_hash, prompt_hash, model) DO UPDATE SET status = 'done',"
                           " permanent = 0, description = excluded.description, error = NULL, latency_s = NULL,"
                           " prompt_tokens = NULL, completion_tokens = NULL, endpoint = NULL, owner = NULL,"
                           " lease_until = NULL, updated = excluded.updated WHERE status != 'done' OR ?7",
                           &st, err),
        mine = 0;
    if (!rc)
        rc = cache_tx_begin(c, &mine, err);
    if (rc) {
        sqlite3_finalize(st);
        return rc;
    }
    double now = cache_now();
    size_t stored = 0, missing = 0;
    for (size_t i = 0; i < es->n && !rc; i++) {
        char hex[65];
        image_hash(o->ds, es->e[i].item, hex, &missing);
        sqlite3_bind_text(st, 1, es->e[i].item, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, hex, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, ph, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, o->model, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, es->e[i].text, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 6, now);
        sqlite3_bind_int(st, 7, o->replace != 0);
        int s = sqlite3_step(st);
        if (s != SQLITE_DONE)
            rc = cache_sqlfail(c, s, "import", err);
        else
            stored += (size_t)sqlite3_changes(c->db);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    rc = cache_tx_end(c, mine, rc, err);
    if (!rc) {
        if (es->n > stored)
            v4r_info("%s: %zu item%s already described: kept (replace them with --replace)", c->path, es->n - stored,
                     es->n - stored == 1 ? "" : "s");
        if (missing)
            v4r_info("%s: %zu image%s could not be read: stored with an empty image hash", c->path, missing,
                     missing == 1 ? "" : "s");
        if (n_in)
            *n_in = stored;
    }
    return rc;
}

int v4r_cache_import(v4r_cache *c, const char *path, const v4r_cache_import_opts *o, size_t *n_in, v4r_err *err)
{
    if (n_in)
        *n_in = 0;
    if (!o || !o->model || !*o->model)
        return v4r_fail(err, V4R_EUSAGE, "import: a model name is required");
    const char *h = o->prompt_hash;
    if (!h || strlen(h) != 64 || strspn(h, "0123456789abcdefABCDEF") != 64)
        return v4r_fail(err, V4R_EUSAGE, "import: the prompt hash must be a sha256 in hex (64 digits), not '%s'",
                        h ? h : "");
    char ph[65];
    for (int i = 0; i < 65; i++)
        ph[i] = (char)(h[i] >= 'A' && h[i] <= 'F' ? h[i] - 'A' + 'a' : h[i]);
    entries es = {.path = path, .ds = o->ds};
    v4r_strmap_init(&es.seen, 1024);
    int rc = parse_file(&es, err);
    if (!rc)
        rc = store(c, &es, o, ph, n_in, err);
    for (size_t i = 0; i < es.n; i++) {
        free(es.e[i].item);
        free(es.e[i].text);
    }
    free(es.e);
    v4r_strmap_free(&es.seen);
    return rc;
}

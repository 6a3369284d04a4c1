/* hub HTTP: libcurl GETs with the hub's headers, manual redirects (the token stays on the
 * endpoint's origin), Range resumption into a sink, and the hub's error answers as messages. */
#include "hub_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define HUB_MAX_REDIRECTS 10

static int curl_ready;

/* "scheme://host:port" of a URL (host lowercased, default port filled in); NULL when malformed. */
static char *url_origin(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
    if (u && !curl_url_set(u, CURLUPART_URL, url, 0) && !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
        !curl_url_get(u, CURLUPART_HOST, &host, 0) && !curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT)) {
        for (char *c = host; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        out = v4r_sprintf("%s://%s:%s", scheme, host, port);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return out;
}

int hub_http_open(hub_http *h, const char *endpoint, const char *token, v4r_err *err)
{
    memset(h, 0, sizeof *h);
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
            return v4r_fail(err, V4R_EINTERNAL, "libcurl does not initialize");
        curl_ready = 1;
    }
    size_t n = strlen(endpoint);
    while (n > 0 && endpoint[n - 1] == '/')
        n--;
    h->endpoint = v4r_strndup(endpoint, n);
    h->origin = url_origin(h->endpoint);
    if (!h->origin || (strncmp(h->endpoint, "http://", 7) && strncmp(h->endpoint, "https://", 8))) {
        hub_http_close(h);
        return v4r_fail(err, V4R_EUSAGE, "hub endpoint '%s' is not an http(s) URL (check HF_ENDPOINT)", endpoint);
    }
    h->token = token && *token ? v4r_strdup(token) : NULL;
    h->curl = curl_easy_init();
    if (!h->curl) {
        hub_http_close(h);
        return v4r_fail(err, V4R_EINTERNAL, "libcurl: cannot create a handle");
    }
    return V4R_OK;
}

void hub_http_close(hub_http *h)
{
    if (h->curl)
        curl_easy_cleanup(h->curl);
    free(h->endpoint);
    free(h->origin);
    free(h->token);
    memset(h, 0, sizeof *h);
}

void hub_resp_free(hub_resp *r)
{
    free(r->repo_commit);
    free(r->linked_etag);
    free(r->error_code);
    free(r->error_message);
    free(r->final_url);
    memset(r, 0, sizeof *r);
}

char *hub_quote(const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = v4r_malloc(3 * strlen(s) + 1), *o = out;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (isalnum(*c) || strchr("-._~", *c) || (keep_slash && *c == '/')) {
            *o++ = (char)*c;
        } else {
            *o++ = '%';
            *o++ = hex[*c >> 4];
            *o++ = hex[*c & 15];
        }
    }
    *o = 0;
    return out;
}

/* One request's state, seen by the callbacks. */
typedef struct {
    hub_http *h;
    hub_sink *sink;
    hub_resp *r;
    long status;
    int started;
    int64_t range_start; /* from Content-Range; -1 when absent */
} hop;

/* A header value without quotes or the weak-validator prefix. */
static char *header_value(const char *v, size_t n)
{
    while (n > 0 && isspace((unsigned char)v[n - 1]))
        n--;
    while (n > 0 && isspace((unsigned char)*v))
        v++, n--;
    if (n >= 2 && !strncmp(v, "W/", 2))
        v += 2, n -= 2;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
        v++, n -= 2;
    return v4r_strndup(v, n);
}

static void keep_first(char **slot, char *value)
{
    if (*slot)
        free(value);
    else
        *slot = value;
}

static void on_header_field(hop *hp, const char *name, size_t nlen, const char *v, size_t vlen)
{
    hub_resp *r = hp->r;
#define IS(s) (nlen == strlen(s) && !strncasecmp(name, s, nlen))
    if (IS("X-Repo-Commit"))
        keep_first(&r->repo_commit, header_value(v, vlen));
    else if (IS("X-Linked-Etag"))
        keep_first(&r->linked_etag, header_value(v, vlen));
    else if (IS("X-Linked-Size") && r->linked_size < 0) {
        char *s = header_value(v, vlen);
        int64_t size;
        if (!v4r_parse_i64(s, &size) && size >= 0)
            r->linked_size = size;
        free(s);
    } else if (IS("X-Error-Code"))
        keep_first(&r->error_code, header_value(v, vlen));
    else if (IS("X-Error-Message"))
        keep_first(&r->error_message, header_value(v, vlen));
    else if (IS("Content-Range")) {
        unsigned long long start;
        char *s = header_value(v, vlen);
        if (sscanf(s, "bytes %llu-", &start) == 1)
            hp->range_start = (int64_t)start;
        free(s);
    }
#undef IS
}

static size_t on_header(char *line, size_t size, size_t count, void *ud)
{
    hop *hp = ud;
    size_t n = size * count;
    if (n > 5 && !strncmp(line, "HTTP/", 5)) {
        const char *sp = memchr(line, ' ', n);
        hp->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return n;
    }
    const char *colon = memchr(line, ':', n);
    if (colon)
        on_header_field(hp, line, (size_t)(colon - line), colon + 1, n - (size_t)(colon + 1 - line));
    return n;
}

/* Before the first byte of a 2xx body: a 200 to a Range request restarts the file; a 206 must
 * start where asked. Returns 0, or -1 to abort. */
static int start_body(hop *hp)
{
    hub_sink *s = hp->sink;
    if (!s || !s->fp || s->offset == 0)
        return 0;
    if (hp->status == 200) {
        if (fflush(s->fp) != 0 || ftruncate(fileno(s->fp), 0) != 0 || fseek(s->fp, 0, SEEK_SET) != 0)
            return -1;
        if (hp->h->progress)
            hp->h->progress->done -= s->offset < hp->h->progress->done ? s->offset : hp->h->progress->done;
        s->offset = 0;
        return 0;
    }
    if (hp->status == 206 && hp->range_start != (int64_t)s->offset) {
        hp->r->bad_range = 1;
        return -1;
    }
    return 0;
}

static int sink_write(hub_sink *s, const char *data, size_t n)
{
    if (s->fp)
        return fwrite(data, 1, n, s->fp) == n ? 0 : -1;
    if (s->mem_len + n > s->mem_max)
        return -1;
    v4r_grow((void **)&s->mem, &s->mem_cap, s->mem_len + n + 1, 1);
    memcpy(s->mem + s->mem_len, data, n);
    s->mem_len += n;
    s->mem[s->mem_len] = 0;
    return 0;
}

static size_t on_body(char *data, size_t size, size_t count, void *ud)
{
    hop *hp = ud;
    size_t n = size * count;
    int ok2xx = hp->status >= 200 && hp->status < 300;
    if (!hp->started) {
        hp->started = 1;
        if (ok2xx && start_body(hp) != 0)
            return 0;
    }
    if (!ok2xx || !hp->sink) {
        size_t room = sizeof hp->r->body - 1 - strlen(hp->r->body);
        strncat(hp->r->body, data, n < room ? n : room);
        return n;
    }
    if (sink_write(hp->sink, data, n) != 0)
        return 0;
    hp->r->received += n;
    hp->h->bytes += hp->sink->fp ? n : 0;
    if (hp->h->progress)
        v4r_progress_add(hp->h->progress, n);
    return n;
}

static struct curl_slist *request_headers(const hub_http *h, const char *url)
{
    struct curl_slist *hd = curl_slist_append(NULL, "Accept-Encoding: identity");
    if (h->accept) {
        char *accept = v4r_sprintf("Accept: %s", h->accept);
        hd = curl_slist_append(hd, accept);
        free(accept);
    }
    char *origin = url_origin(url);
    if (h->token && origin && !strcmp(origin, h->origin)) {
        char *auth = v4r_sprintf("Authorization: Bearer %s", h->token);
        hd = curl_slist_append(hd, auth);
        free(auth);
    }
    free(origin);
    return hd;
}

static void set_options(hub_http *h, const char *url, hop *hp, struct curl_slist *hd)
{
    CURL *c = h->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "vlm4rec/" V4R_VERSION " (hf_hub protocol; libcurl)");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, hp);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, hp);
    if (hp->sink && hp->sink->fp && hp->sink->offset > 0) {
        char range[32];
        snprintf(range, sizeof range, "%llu-", (unsigned long long)hp->sink->offset);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
}

/* One request (no redirect following). Returns V4R_OK or V4R_EIO (transfer broken). */
static int perform(hub_http *h, const char *url, hub_sink *sink, hub_resp *r, char **location, v4r_err *err)
{
    hop hp = {.h = h, .sink = sink, .r = r, .range_start = -1};
    struct curl_slist *hd = request_headers(h, url);
    set_options(h, url, &hp, hd);
    r->body[0] = 0;
    h->requests++;
    CURLcode cc = curl_easy_perform(h->curl);
    curl_slist_free_all(hd);
    r->status = hp.status;
    if (cc != CURLE_OK) {
        r->transport = !r->bad_range;
        if (r->bad_range)
            return v4r_fail(err, V4R_EIO, "%s: the server resumed at byte %lld, not %llu", url,
                            (long long)hp.range_start, (unsigned long long)sink->offset);
        return v4r_fail(err, V4R_EIO, "%s: %s (after %llu bytes)", url, curl_easy_strerror(cc),
                        (unsigned long long)r->received);
    }
    char *loc = NULL;
    if (r->status >= 300 && r->status < 400 && curl_easy_getinfo(h->curl, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK &&
        loc)
        *location = v4r_strdup(loc);
    return V4R_OK;
}

int hub_http_get(hub_http *h, const char *url, hub_sink *sink, hub_resp *r, v4r_err *err)
{
    memset(r, 0, sizeof *r);
    r->linked_size = -1;
    char *cur = v4r_strdup(url);
    for (int hops = 0;; hops++) {
        char *next = NULL;
        int rc = perform(h, cur, sink, r, &next, err);
        if (rc != V4R_OK || !next) {
            r->final_url = cur;
            return rc;
        }
        free(cur);
        cur = next;
        if (hops == HUB_MAX_REDIRECTS) {
            r->final_url = cur;
            return v4r_fail(err, V4R_EIO, "%s: more than %d redirects", url, HUB_MAX_REDIRECTS);
        }
    }
}

/* The server's own words: X-Error-Message, else a JSON {"error": ...} body, else the body. */
static void server_words(const hub_resp *r, char *out, size_t n)
{
    const char *msg = r->error_message, *e = strstr(r->body, "\"error\"");
    out[0] = 0;
    if (msg)
        snprintf(out, n, ": %s", msg);
    else if (e && (e = strchr(e + 7, '"')) != NULL)
        snprintf(out, n, ": %.*s", (int)strcspn(e + 1, "\""), e + 1);
    else if (r->body[0] && r->body[0] != '<')
        snprintf(out, n, ": %.*s", (int)strcspn(r->body, "\r\n"), r->body);
}

int hub_http_fail(const hub_http *h, const char *repo, const char *rev, const char *file, const char *url,
                  const hub_resp *r, v4r_err *err)
{
    const char *code = r->error_code ? r->error_code : "";
    char words[300];
    server_words(r, words, sizeof words);
    if (r->status == 401 || r->status == 403) {
        if (!strcmp(code, "GatedRepo"))
            return v4r_fail(err, V4R_EIO,
                            "%s: access denied (HTTP %ld): the repository is gated; accept its conditions on the hub "
                            "and set HF_TOKEN to a token of that account%s",
                            repo, r->status, words);
        return v4r_fail(err, V4R_EIO,
                        "%s: access denied (HTTP %ld from %s)%s: the repository is private or gated, or does not "
                        "exist; %s",
                        repo, r->status, url, words,
                        h->token ? "the token in HF_TOKEN is not accepted for it"
                                 : "set HF_TOKEN to a token that can read it");
    }
    if (r->status == 404 && file && !strcmp(code, "EntryNotFound"))
        return v4r_fail(err, V4R_EIO, "%s@%s: file '%s' not found (HTTP 404 from %s)", repo, rev, file, url);
    if (r->status == 404)
        return v4r_fail(err, V4R_EIO, "%s: repository or revision '%s' not found (HTTP 404 from %s)%s", repo, rev,
                        url, words);
    return v4r_fail(err, V4R_EIO, "%s: HTTP %ld from %s%s", repo, r->status, url, words);
}

/* hubserver: a Hugging Face hub look-alike (libmicrohttpd) for tests; included by the tests that
 * use it (tests/CMakeLists.txt builds each test_*.c alone). */
#include "hubserver.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vlm4rec/base.h"

#define HS_MAX_REQUESTS 5000

typedef struct {
    char *path, *abs;
    uint64_t size;
    char sha256[65], sha1[41];
    int lfs;
} hs_file;

typedef struct {
    char *repo, *commit;
    hs_file *files;
    size_t n, cap;
} hs_repo_i;

typedef struct {
    struct hubserver *s;
    int cdn;
} hs_port;

struct hubserver {
    struct MHD_Daemon *hub, *cdn;
    hs_port hub_port, cdn_port;
    uint16_t port, cdnport;
    char url[64];
    pthread_mutex_t mu;
    hs_repo_i *repos;
    size_t n_repos;
    char *token, *cut_file, *corrupt_file;
    uint64_t cut_after;
    int cut_times;
    hs_counts counts;
    char pypi_url[80];
    char *pkg, *listed; /* the package index's one project, and the sha256 it lists */
    hs_repo_i wheels;   /* its file (a repository of one, for send_file) */
    int html;
};

/* ---- the repositories' files: sizes, sha256, git blob sha1 ---- */

static void hex(const unsigned char *md, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void hash_file(hs_file *f)
{
    char *data = NULL;
    size_t len = 0;
    if (v4r_read_file(f->abs, &data, &len, NULL) != 0)
        abort();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    hex(md, n, f->sha256);
    char head[64];
    int hl = snprintf(head, sizeof head, "blob %zu", len) + 1; /* with its NUL, as git hashes it */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
    EVP_DigestUpdate(ctx, head, (size_t)hl);
    EVP_DigestUpdate(ctx, data, len);
    EVP_DigestFinal_ex(ctx, md, &n);
    EVP_MD_CTX_free(ctx);
    hex(md, n, f->sha1);
    f->size = len;
    f->lfs = len > HS_LFS_THRESHOLD;
    free(data);
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const hs_file *)a)->path, ((const hs_file *)b)->path);
}

static void scan(hs_repo_i *r, const char *root, const char *rel)
{
    char *dir = rel[0] ? v4r_sprintf("%s/%s", root, rel) : v4r_strdup(root);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *sub = rel[0] ? v4r_sprintf("%s/%s", rel, e->d_name) : v4r_strdup(e->d_name);
        char *abs = v4r_sprintf("%s/%s", root, sub);
        struct stat st;
        if (stat(abs, &st) == 0 && S_ISDIR(st.st_mode)) {
            scan(r, root, sub);
            free(sub);
            free(abs);
            continue;
        }
        v4r_grow((void **)&r->files, &r->cap, r->n + 1, sizeof *r->files);
        hs_file *f = &r->files[r->n++];
        memset(f, 0, sizeof *f);
        f->path = sub;
        f->abs = abs;
        hash_file(f);
    }
    if (d)
        closedir(d);
    free(dir);
}

static const hs_repo_i *find_repo(const hubserver *s, const char *repo, size_t n)
{
    for (size_t i = 0; i < s->n_repos; i++)
        if (strlen(s->repos[i].repo) == n && !strncmp(s->repos[i].repo, repo, n))
            return &s->repos[i];
    return NULL;
}

/* ---- responses ---- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *ctype, const char *text,
                                 const char *error_code)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", ctype);
    if (error_code) {
        MHD_add_response_header(r, "X-Error-Code", error_code);
        MHD_add_response_header(r, "X-Error-Message", text);
    }
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *code, const char *msg)
{
    char body[256];
    snprintf(body, sizeof body, "{\"error\":\"%s\"}", msg);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (code)
        MHD_add_response_header(r, "X-Error-Code", code);
    MHD_add_response_header(r, "X-Error-Message", msg);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static json_t *sibling_json(const hs_file *f, int blobs)
{
    json_t *o = json_pack("{s:s}", "rfilename", f->path);
    if (!blobs)
        return o;
    json_object_set_new(o, "blobId", json_string(f->sha1));
    json_object_set_new(o, "size", json_integer((json_int_t)f->size));
    if (f->lfs)
        json_object_set_new(o, "lfs", json_pack("{s:s, s:I, s:i}", "sha256", f->sha256, "size",
                                                (json_int_t)f->size, "pointerSize", 134));
    return o;
}

static enum MHD_Result send_listing(struct MHD_Connection *c, const hs_repo_i *r)
{
    const char *b = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "blobs");
    int blobs = b && (!strcasecmp(b, "true") || !strcmp(b, "1"));
    json_t *sibs = json_array();
    for (size_t i = 0; i < r->n; i++)
        json_array_append_new(sibs, sibling_json(&r->files[i], blobs));
    json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:b, s:o}", "_id", "0000", "id", r->repo, "modelId", r->repo,
                             "sha", r->commit, "private", 0, "siblings", sibs);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    enum MHD_Result ret = send_text(c, 200, "application/json", text, NULL);
    free(text);
    return ret;
}

/* ---- file bodies: ranges, cuts, corruption ---- */

typedef struct {
    int fd;
    uint64_t start, len, cut; /* cut: relative bytes after which the body breaks */
    int64_t corrupt_at;       /* absolute offset of the flipped byte; -1 none */
    hubserver *s;
} body;

static ssize_t read_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    body *b = cls;
    if (pos >= b->cut) {
        pthread_mutex_lock(&b->s->mu);
        b->s->counts.cut++;
        pthread_mutex_unlock(&b->s->mu);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    uint64_t n = b->len - pos;
    if (n > max)
        n = max;
    if (n > b->cut - pos)
        n = b->cut - pos;
    ssize_t got = pread(b->fd, buf, n, (off_t)(b->start + pos));
    if (got <= 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    int64_t at = b->corrupt_at - (int64_t)(b->start + pos);
    if (b->corrupt_at >= 0 && at >= 0 && at < got)
        buf[at] ^= 0x5a;
    return got;
}

static void free_body(void *cls)
{
    body *b = cls;
    close(b->fd);
    free(b);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Parses "bytes=N-" or "bytes=N-M"; 0 when absent, 1 when valid, -1 when unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *len)
{
    unsigned long long a, z;
    if (!h)
        return 0;
    int n = sscanf(h, "bytes=%llu-%llu", &a, &z);
    if (n < 1 || a >= size)
        return -1;
    if (n < 2 || z >= size)
        z = size - 1;
    if (z < a)
        return -1;
    *start = a;
    *len = z - a + 1;
    return 1;
}

static body *new_body(hubserver *s, const hs_file *f, uint64_t start, uint64_t len, int is_get)
{
    body *b = v4r_calloc(1, sizeof *b);
    b->fd = open(f->abs, O_RDONLY);
    b->start = start;
    b->len = len;
    b->cut = UINT64_MAX;
    b->corrupt_at = -1;
    b->s = s;
    pthread_mutex_lock(&s->mu);
    if (is_get && s->cut_times > 0 && s->cut_file && ends_with(f->path, s->cut_file)) {
        s->cut_times--;
        b->cut = s->cut_after;
    }
    if (s->corrupt_file && ends_with(f->path, s->corrupt_file))
        b->corrupt_at = (int64_t)(f->size / 2);
    pthread_mutex_unlock(&s->mu);
    return b;
}

static void common_headers(struct MHD_Response *r, const hs_repo_i *repo, const hs_file *f)
{
    char etag[80];
    snprintf(etag, sizeof etag, "\"%s\"", f->lfs ? f->sha256 : f->sha1);
    MHD_add_response_header(r, "X-Repo-Commit", repo->commit);
    MHD_add_response_header(r, "ETag", etag);
    if (f->lfs) {
        char size[32];
        snprintf(size, sizeof size, "%llu", (unsigned long long)f->size);
        snprintf(etag, sizeof etag, "\"%s\"", f->sha256);
        MHD_add_response_header(r, "X-Linked-Etag", etag);
        MHD_add_response_header(r, "X-Linked-Size", size);
    }
}

static enum MHD_Result send_file(struct MHD_Connection *c, hubserver *s, const hs_repo_i *repo, const hs_file *f,
                                 const char *method)
{
    const char *rh = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    uint64_t start = 0, len = f->size;
    int ranged = parse_range(rh, f->size, &start, &len);
    if (ranged < 0) {
        char cr[64];
        snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)f->size);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Content-Range", cr);
        enum MHD_Result ret = MHD_queue_response(c, 416, r);
        MHD_destroy_response(r);
        return ret;
    }
    body *b = new_body(s, f, start, len, !strcmp(method, "GET"));
    struct MHD_Response *r = MHD_create_response_from_callback(len, 64 * 1024, read_body, b, free_body);
    common_headers(r, repo, f);
    MHD_add_response_header(r, "Accept-Ranges", "bytes");
    MHD_add_response_header(r, "Content-Type", "application/octet-stream");
    if (ranged) {
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)start,
                 (unsigned long long)(start + len - 1), (unsigned long long)f->size);
        MHD_add_response_header(r, "Content-Range", cr);
    }
    enum MHD_Result ret = MHD_queue_response(c, ranged ? 206 : 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* An LFS file on the hub port: 302 to the CDN, with the linked headers. */
static enum MHD_Result send_redirect(struct MHD_Connection *c, hubserver *s, const hs_repo_i *repo, const hs_file *f)
{
    char *loc = v4r_sprintf("http://127.0.0.1:%u/cdn/%s/%s?filename=%s", (unsigned)s->cdnport, repo->repo,
                            f->sha256, f->path);
    char *text = v4r_sprintf("Found. Redirecting to %s", loc);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    common_headers(r, repo, f);
    MHD_add_response_header(r, "Location", loc);
    MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(c, 302, r);
    MHD_destroy_response(r);
    free(loc);
    return ret;
}

/* ---- routes ---- */

static int rev_ok(const hs_repo_i *r, const char *rev, size_t n)
{
    return (n == 4 && !strncmp(rev, "main", 4)) || (n == 40 && !strncmp(rev, r->commit, 40));
}

static const hs_file *find_file(const hs_repo_i *r, const char *path)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->files[i].path, path))
            return &r->files[i];
    return NULL;
}

/* "ORG/NAME/<rest>": the repository and where rest begins. */
static const hs_repo_i *repo_prefix(const hubserver *s, const char *p, const char **rest)
{
    const char *slash = strchr(p, '/');
    const char *end = slash ? strchr(slash + 1, '/') : NULL;
    if (!end)
        return NULL;
    *rest = end + 1;
    return find_repo(s, p, (size_t)(end - p));
}

static enum MHD_Result route_api(struct MHD_Connection *c, hubserver *s, const char *url)
{
    const char *rest;
    const hs_repo_i *r = repo_prefix(s, url + strlen("/api/models/"), &rest);
    if (!r)
        return send_error(c, 404, "RepoNotFound", "Repository not found");
    if (strncmp(rest, "revision/", 9) || !rev_ok(r, rest + 9, strlen(rest + 9)))
        return send_error(c, 404, "RevisionNotFound", "Invalid rev id");
    return send_listing(c, r);
}

static enum MHD_Result route_resolve(struct MHD_Connection *c, hubserver *s, const char *url, const char *method)
{
    const char *rest;
    const hs_repo_i *r = repo_prefix(s, url + 1, &rest);
    if (!r)
        return send_error(c, 404, "RepoNotFound", "Repository not found");
    if (strncmp(rest, "resolve/", 8))
        return send_error(c, 404, NULL, "Not found");
    rest += 8;
    const char *slash = strchr(rest, '/');
    if (!slash || !rev_ok(r, rest, (size_t)(slash - rest)))
        return send_error(c, 404, "RevisionNotFound", "Invalid rev id");
    const hs_file *f = find_file(r, slash + 1);
    if (!f)
        return send_error(c, 404, "EntryNotFound", "Entry not found");
    return f->lfs ? send_redirect(c, s, r, f) : send_file(c, s, r, f, method);
}

static enum MHD_Result route_cdn(struct MHD_Connection *c, hubserver *s, const char *url, const char *method)
{
    const char *rest;
    const hs_repo_i *r = strncmp(url, "/cdn/", 5) ? NULL : repo_prefix(s, url + 5, &rest);
    for (size_t i = 0; r && i < r->n; i++)
        if (r->files[i].lfs && !strcmp(r->files[i].sha256, rest))
            return send_file(c, s, r, &r->files[i], method);
    return send_error(c, 404, NULL, "NoSuchKey");
}

/* ---- the package index ---- */

static enum MHD_Result send_project(struct MHD_Connection *c, hubserver *s)
{
    const hs_file *f = &s->wheels.files[0];
    const char *sha = s->listed ? s->listed : f->sha256;
    char *text;
    if (s->html) {
        text = v4r_sprintf("<!DOCTYPE html>\n<html><body><h1>Links for %s</h1>\n<a href=\"../../files/%s#sha256=%s\">%s</a>"
                           "<br/>\n</body></html>\n",
                           s->pkg, f->path, sha, f->path);
        enum MHD_Result ret = send_text(c, 200, "text/html", text, NULL);
        free(text);
        return ret;
    }
    json_t *file = json_pack("{s:s, s:s, s:{s:s}, s:I, s:b}", "filename", f->path, "url", "", "hashes", "sha256", sha,
                             "size", (json_int_t)f->size, "yanked", 0);
    char *url = v4r_sprintf("../../files/%s", f->path);
    json_object_set_new(file, "url", json_string(url));
    free(url);
    json_t *root = json_pack("{s:{s:s}, s:s, s:[o]}", "meta", "api-version", "1.1", "name", s->pkg, "files", file);
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    enum MHD_Result ret = send_text(c, 200, "application/vnd.pypi.simple.v1+json", text, NULL);
    free(text);
    return ret;
}

static enum MHD_Result route_pypi(struct MHD_Connection *c, hubserver *s, const char *url, const char *method)
{
    pthread_mutex_lock(&s->mu);
    int index = !strncmp(url, "/simple/", 8);
    s->counts.pypi_index += index;
    s->counts.pypi_files += !index;
    pthread_mutex_unlock(&s->mu);
    if (!s->pkg)
        return send_error(c, 404, NULL, "Not Found");
    size_t n = strlen(s->pkg);
    if (index && !strncmp(url + 8, s->pkg, n) && !strcmp(url + 8 + n, "/"))
        return send_project(c, s);
    if (!index && !strcmp(url + 7, s->wheels.files[0].path))
        return send_file(c, s, &s->wheels, &s->wheels.files[0], method);
    return send_error(c, 404, NULL, "Not Found");
}

/* Counts the request; 1 when it may go on. */
static int count(hubserver *s, struct MHD_Connection *c, const char *url, int cdn)
{
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&s->mu);
    hs_counts *k = &s->counts;
    k->total++;
    k->cdn += cdn;
    k->api += !cdn && !strncmp(url, "/api/models/", 12);
    k->resolve += !cdn && strstr(url, "/resolve/") != NULL;
    k->with_auth += !cdn && auth != NULL;
    k->cdn_with_auth += cdn && auth != NULL;
    if (range) {
        k->ranged++;
        snprintf(k->last_range, sizeof k->last_range, "%s", range);
    }
    int ok = k->total <= HS_MAX_REQUESTS;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static int authorized(hubserver *s, struct MHD_Connection *c)
{
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&s->mu);
    int ok = !s->token || (auth && !strncmp(auth, "Bearer ", 7) && !strcmp(auth + 7, s->token));
    s->counts.unauthorized += !ok;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version, (void)upload, (void)upload_size, (void)con_cls;
    hs_port *p = cls;
    hubserver *s = p->s;
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return send_error(c, 405, NULL, "Method not allowed");
    if (!count(s, c, url, p->cdn))
        return send_error(c, 503, NULL, "request limit reached");
    if (p->cdn)
        return route_cdn(c, s, url, method);
    if (!strncmp(url, "/simple/", 8) || !strncmp(url, "/files/", 7))
        return route_pypi(c, s, url, method);
    if (!authorized(s, c))
        return send_error(c, 401, "RepoNotFound", "Invalid username or password.");
    if (!strncmp(url, "/api/models/", 12))
        return route_api(c, s, url);
    return route_resolve(c, s, url, method);
}

/* ---- lifecycle ---- */

static struct MHD_Daemon *start_port(hs_port *p, uint16_t *port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = 0; /* the OS chooses */
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, handle, p, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END);
    if (!d)
        return NULL;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? info->port : 0;
    return d;
}

hubserver *hs_start(const hs_repo *repos, size_t n)
{
    hubserver *s = v4r_calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->repos = v4r_calloc(n, sizeof *s->repos);
    s->n_repos = n;
    for (size_t i = 0; i < n; i++) {
        s->repos[i].repo = v4r_strdup(repos[i].repo);
        s->repos[i].commit = v4r_strdup(repos[i].commit);
        scan(&s->repos[i], repos[i].dir, "");
        qsort(s->repos[i].files, s->repos[i].n, sizeof(hs_file), by_path);
    }
    s->hub_port = (hs_port){s, 0};
    s->cdn_port = (hs_port){s, 1};
    s->hub = start_port(&s->hub_port, &s->port);
    s->cdn = start_port(&s->cdn_port, &s->cdnport);
    if (!s->hub || !s->cdn || !s->port || !s->cdnport) {
        hs_stop(s);
        return NULL;
    }
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%u", (unsigned)s->port);
    snprintf(s->pypi_url, sizeof s->pypi_url, "http://127.0.0.1:%u/simple", (unsigned)s->port);
    s->wheels.repo = v4r_strdup("pypi");
    s->wheels.commit = v4r_strdup("0000000000000000000000000000000000000000");
    return s;
}

void hs_stop(hubserver *s)
{
    if (!s)
        return;
    if (s->hub)
        MHD_stop_daemon(s->hub);
    if (s->cdn)
        MHD_stop_daemon(s->cdn);
    for (size_t i = 0; i < s->n_repos; i++) {
        for (size_t k = 0; k < s->repos[i].n; k++) {
            free(s->repos[i].files[k].path);
            free(s->repos[i].files[k].abs);
        }
        free(s->repos[i].files);
        free(s->repos[i].repo);
        free(s->repos[i].commit);
    }
    free(s->repos);
    hs_pypi(s, NULL, NULL, NULL, NULL, 0);
    free(s->wheels.files);
    free(s->wheels.repo);
    free(s->wheels.commit);
    free(s->token);
    free(s->cut_file);
    free(s->corrupt_file);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *hs_url(const hubserver *s) { return s->url; }
const char *hs_pypi_url(const hubserver *s) { return s->pypi_url; }

void hs_pypi(hubserver *s, const char *package, const char *filename, const char *path, const char *listed, int html)
{
    pthread_mutex_lock(&s->mu);
    free(s->pkg);
    free(s->listed);
    for (size_t i = 0; i < s->wheels.n; i++) {
        free(s->wheels.files[i].path);
        free(s->wheels.files[i].abs);
    }
    s->wheels.n = 0;
    s->pkg = package ? v4r_strdup(package) : NULL;
    s->listed = listed ? v4r_strdup(listed) : NULL;
    s->html = html;
    if (package) {
        v4r_grow((void **)&s->wheels.files, &s->wheels.cap, 1, sizeof *s->wheels.files);
        hs_file *f = &s->wheels.files[s->wheels.n++];
        memset(f, 0, sizeof *f);
        f->path = v4r_strdup(filename);
        f->abs = v4r_strdup(path);
        hash_file(f);
        f->lfs = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

static void set_str(hubserver *s, char **slot, const char *v)
{
    pthread_mutex_lock(&s->mu);
    free(*slot);
    *slot = v ? v4r_strdup(v) : NULL;
    pthread_mutex_unlock(&s->mu);
}

void hs_require_token(hubserver *s, const char *token) { set_str(s, &s->token, token); }
void hs_corrupt(hubserver *s, const char *file) { set_str(s, &s->corrupt_file, file); }

void hs_cut(hubserver *s, const char *file, uint64_t after, int times)
{
    set_str(s, &s->cut_file, file);
    pthread_mutex_lock(&s->mu);
    s->cut_after = after;
    s->cut_times = times;
    pthread_mutex_unlock(&s->mu);
}

void hs_counts_get(hubserver *s, hs_counts *c)
{
    pthread_mutex_lock(&s->mu);
    *c = s->counts;
    pthread_mutex_unlock(&s->mu);
}

void hs_counts_reset(hubserver *s)
{
    pthread_mutex_lock(&s->mu);
    memset(&s->counts, 0, sizeof s->counts);
    pthread_mutex_unlock(&s->mu);
}

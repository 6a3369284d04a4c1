/* hub cache: the repository listing and file selection, refs, snapshot markers, cache paths. */
#include "hub_internal.h"

#include <fnmatch.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Weight formats vlm4rec does not read, skipped by default when the repository has safetensors. */
static const char *const skip_globs[] = {
    "*.bin", "*.bin.index.json", "*.h5", "*.h5.index.json", "*.msgpack", "*.msgpack.index.json", "*.ot",
    "*.onnx", "*.onnx_data", "*.tflite", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.mlmodel", "*.mlpackage/*",
    "onnx/*", "openvino/*", "coreml/*", "tf/*", "flax/*"};

int hub_is_commit(const char *s)
{
    size_t n = strspn(s, "0123456789abcdef");
    return n == 40 && s[40] == 0;
}

int hub_safe_path(const char *p)
{
    if (!*p || *p == '/' || strchr(p, '\\'))
        return 0;
    for (const char *s = p;;) {
        size_t n = strcspn(s, "/");
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && !strncmp(s, "..", 2)))
            return 0;
        if (!s[n])
            break;
        s += n + 1;
    }
    size_t len = strlen(p), li = strlen(HUB_INCOMPLETE);
    return strcmp(p, HUB_MARKER) && (len < li || strcmp(p + len - li, HUB_INCOMPLETE));
}

void hub_listing_free(hub_listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->files[i].path);
    free(l->files);
    free(l->source);
    memset(l, 0, sizeof *l);
}

static int is_sha256(const char *s)
{
    return s && strspn(s, "0123456789abcdef") == 64 && s[64] == 0;
}

static int parse_sibling(json_t *sib, hub_file *f, const char *what, v4r_err *err)
{
    const char *name = json_string_value(json_object_get(sib, "rfilename"));
    if (!name)
        return v4r_fail(err, V4R_EINPUT, "%s: a sibling without \"rfilename\"", what);
    if (!hub_safe_path(name))
        return v4r_fail(err, V4R_EINPUT, "%s: unsafe file name '%s'", what, name);
    json_t *size = json_object_get(sib, "size"), *lfs = json_object_get(sib, "lfs");
    f->path = v4r_strdup(name);
    f->size = json_is_integer(size) ? (int64_t)json_integer_value(size) : -1;
    if (json_is_object(lfs)) {
        const char *sha = json_string_value(json_object_get(lfs, "sha256"));
        json_t *lsize = json_object_get(lfs, "size");
        if (sha && !is_sha256(sha))
            return v4r_fail(err, V4R_EINPUT, "%s: '%s': malformed lfs.sha256 '%s'", what, name, sha);
        if (sha)
            memcpy(f->sha256, sha, 65);
        if (f->size < 0 && json_is_integer(lsize))
            f->size = (int64_t)json_integer_value(lsize);
    }
    if (json_object_get(sib, "have") == json_true())
        f->have = 1;
    return V4R_OK;
}

static int parse_root(json_t *root, const char *what, hub_listing *l, v4r_err *err)
{
    const char *sha = json_string_value(json_object_get(root, "sha"));
    json_t *sibs = json_object_get(root, "siblings");
    if (!sha || !hub_is_commit(sha))
        return v4r_fail(err, V4R_EINPUT, "%s: no commit \"sha\" of 40 hex digits in the answer", what);
    if (!json_is_array(sibs))
        return v4r_fail(err, V4R_EINPUT, "%s: no \"siblings\" list in the answer", what);
    memcpy(l->commit, sha, 41);
    const char *source = json_string_value(json_object_get(root, "source"));
    l->source = source ? v4r_strdup(source) : NULL;
    l->files = v4r_calloc(json_array_size(sibs) + 1, sizeof *l->files);
    for (size_t i = 0; i < json_array_size(sibs); i++) {
        int rc = parse_sibling(json_array_get(sibs, i), &l->files[l->n], what, err);
        l->n++;
        if (rc)
            return rc;
    }
    return V4R_OK;
}

int hub_listing_parse(const char *json, size_t len, const char *what, hub_listing *l, v4r_err *err)
{
    memset(l, 0, sizeof *l);
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return v4r_fail(err, V4R_EINPUT, "%s: the answer is not a JSON object (%s)", what, je.text);
    }
    int rc = parse_root(root, what, l, err);
    json_decref(root);
    if (rc)
        hub_listing_free(l);
    return rc;
}

/* Python fnmatch semantics ('*' crosses '/'); a pattern ending in '/' means the whole folder. */
static int glob_match(const char *pattern, const char *path)
{
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '/') {
        char *folder = v4r_sprintf("%s*", pattern);
        int m = fnmatch(folder, path, FNM_NOESCAPE) == 0;
        free(folder);
        return m;
    }
    return fnmatch(pattern, path, FNM_NOESCAPE) == 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

void hub_select(hub_listing *l, const char *const *include, size_t n_include)
{
    int has_safetensors = 0;
    for (size_t i = 0; i < l->n; i++)
        has_safetensors |= ends_with(l->files[i].path, ".safetensors");
    for (size_t i = 0; i < l->n; i++) {
        hub_file *f = &l->files[i];
        f->selected = n_include == 0;
        for (size_t k = 0; k < n_include; k++)
            f->selected |= glob_match(include[k], f->path);
        for (size_t k = 0; n_include == 0 && has_safetensors && k < sizeof skip_globs / sizeof *skip_globs; k++)
            if (glob_match(skip_globs[k], f->path))
                f->selected = 0;
    }
}

char *hub_repo_dir(const char *home, const char *repo)
{
    return v4r_sprintf("%s/models/%s", home, repo);
}

char *hub_snapshot_dir(const char *repo_dir, const char *commit)
{
    return v4r_sprintf("%s/snapshots/%s", repo_dir, commit);
}

int hub_ref_read(const char *repo_dir, const char *rev, char commit[41])
{
    char *path = v4r_sprintf("%s/refs/%s", repo_dir, rev), *data = NULL;
    int rc = v4r_read_file(path, &data, NULL, NULL);
    free(path);
    if (rc)
        return -1;
    data[strcspn(data, " \t\r\n")] = 0;
    int ok = hub_is_commit(data);
    if (ok)
        memcpy(commit, data, 41);
    free(data);
    return ok ? 0 : -1;
}

static int write_text(const char *path, const char *text, v4r_err *err)
{
    char *dir = v4r_strdup(path);
    *strrchr(dir, '/') = 0;
    int rc = v4r_mkdir_p(dir, err);
    free(dir);
    v4r_outfile out;
    if (rc || (rc = v4r_out_open(&out, path, err)))
        return rc;
    fputs(text, out.fp);
    return v4r_out_commit(&out, err);
}

int hub_ref_write(const char *repo_dir, const char *rev, const char *commit, v4r_err *err)
{
    char *path = v4r_sprintf("%s/refs/%s", repo_dir, rev);
    int rc = write_text(path, commit, err);
    free(path);
    return rc;
}

int hub_marker_load(const char *snap_dir, hub_listing *l, v4r_err *err)
{
    memset(l, 0, sizeof *l);
    char *path = v4r_path_join(snap_dir, HUB_MARKER), *data = NULL;
    size_t len = 0;
    int rc = v4r_read_file(path, &data, &len, err);
    if (rc == V4R_OK) {
        rc = hub_listing_parse(data, len, path, l, err);
        if (rc)
            rc = V4R_EIO;
    }
    free(data);
    free(path);
    return rc;
}

static json_t *file_json(const hub_file *f)
{
    json_t *o = json_pack("{s:s, s:I}", "rfilename", f->path, "size", (json_int_t)f->size);
    if (f->sha256[0])
        json_object_set_new(o, "lfs", json_pack("{s:s, s:I}", "sha256", f->sha256, "size", (json_int_t)f->size));
    if (f->have)
        json_object_set_new(o, "have", json_true());
    return o;
}

int hub_marker_save(const char *snap_dir, const hub_listing *l, v4r_err *err)
{
    json_t *sibs = json_array();
    for (size_t i = 0; i < l->n; i++)
        json_array_append_new(sibs, file_json(&l->files[i]));
    json_t *root = json_pack("{s:s, s:s, s:o}", "format", "vlm4rec.snapshot/1", "sha", l->commit, "siblings", sibs);
    if (l->source)
        json_object_set_new(root, "source", json_string(l->source));
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(root);
    char *path = v4r_path_join(snap_dir, HUB_MARKER);
    int rc = write_text(path, text, err);
    free(path);
    free(text);
    return rc;
}

const hub_file *hub_first_missing(const char *snap_dir, const hub_listing *l)
{
    for (size_t i = 0; i < l->n; i++) {
        const hub_file *f = &l->files[i];
        if (!f->selected)
            continue;
        char *path = v4r_path_join(snap_dir, f->path);
        struct stat st;
        int ok = f->have && stat(path, &st) == 0 && S_ISREG(st.st_mode) && (f->size < 0 || st.st_size == f->size);
        free(path);
        if (!ok)
            return f;
    }
    return NULL;
}

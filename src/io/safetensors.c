/* safetensors: mmap'ed files or index + shards, checked headers, tensors by name, F32/F16/BF16. */
#include "vlm4rec/io.h"
#include "vlm4rec/kernels.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *path;
    void *map;
    size_t size;
} st_file;

struct v4r_safetensors {
    char *path;
    st_file *files;
    size_t n_files, files_cap;
    v4r_st_tensor *tensors;
    size_t n, cap;
    v4r_strmap index; /* name -> position in tensors */
};

/* ---- one file ---- */

static int map_file(const char *path, st_file *f, v4r_err *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return v4r_fail(err, V4R_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return v4r_fail(err, V4R_EIO, "%s: not a regular file", path);
    }
    f->path = v4r_strdup(path);
    f->size = (size_t)sb.st_size;
    f->map = NULL;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return v4r_fail(err, V4R_EIO, "%s: cannot map: %s", path, strerror(e));
        }
        f->map = m;
    }
    close(fd);
    return V4R_OK;
}

static size_t dtype_size(const char *d)
{
    static const struct {
        const char *name;
        size_t size;
    } table[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
                 {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1},   {"BOOL", 1}, {"F8_E4M3", 1},
                 {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (!strcmp(d, table[i].name))
            return table[i].size;
    return 0;
}

/* Reads "shape" into t (numel too). */
static int parse_shape(const st_file *f, const char *name, json_t *shape, v4r_st_tensor *t, v4r_err *err)
{
    if (!json_is_array(shape) || json_array_size(shape) > 8)
        return v4r_fail(err, V4R_EINPUT, "%s: tensor '%s': 'shape' is not an array of at most 8 sizes", f->path, name);
    t->ndim = (int)json_array_size(shape);
    t->numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        json_t *v = json_array_get(shape, (size_t)d);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return v4r_fail(err, V4R_EINPUT, "%s: tensor '%s': 'shape' holds a non-size", f->path, name);
        t->shape[d] = (size_t)json_integer_value(v);
        if (t->shape[d] && t->numel > SIZE_MAX / t->shape[d])
            return v4r_fail(err, V4R_EINPUT, "%s: tensor '%s': shape too large", f->path, name);
        t->numel *= t->shape[d];
    }
    return V4R_OK;
}

/* Reads "data_offsets" against the data area of data_len bytes at data. */
static int parse_offsets(const st_file *f, const char *name, json_t *offs, const unsigned char *data, size_t data_len,
                         v4r_st_tensor *t, v4r_err *err)
{
    json_t *a = json_array_get(offs, 0), *b = json_array_get(offs, 1);
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_is_integer(a) || !json_is_integer(b) ||
        json_integer_value(a) < 0 || json_integer_value(b) < json_integer_value(a))
        return v4r_fail(err, V4R_EINPUT, "%s: tensor '%s': 'data_offsets' is not [begin, end]", f->path, name);
    size_t begin = (size_t)json_integer_value(a), end = (size_t)json_integer_value(b);
    if (end > data_len)
        return v4r_fail(err, V4R_EINPUT,
                        "%s: truncated: tensor '%s' ends at data byte %zu, but the file holds %zu bytes of data",
                        f->path, name, end, data_len);
    size_t isz = dtype_size(t->dtype);
    if (isz && (t->numel > SIZE_MAX / isz || t->numel * isz != end - begin))
        return v4r_fail(err, V4R_EINPUT, "%s: tensor '%s': %zu bytes of data for %zu elements of %s", f->path, name,
                        end - begin, t->numel, t->dtype);
    t->data = data + begin;
    t->nbytes = end - begin;
    return V4R_OK;
}

static int parse_entry(const st_file *f, const char *name, json_t *v, const unsigned char *data, size_t data_len,
                       v4r_st_tensor *t, v4r_err *err)
{
    memset(t, 0, sizeof *t);
    json_t *dt = json_object_get(v, "dtype");
    if (!json_is_object(v) || !json_is_string(dt) || strlen(json_string_value(dt)) >= sizeof t->dtype)
        return v4r_fail(err, V4R_EINPUT, "%s: tensor '%s' has no valid 'dtype'", f->path, name);
    strcpy(t->dtype, json_string_value(dt));
    int rc = parse_shape(f, name, json_object_get(v, "shape"), t, err);
    if (!rc)
        rc = parse_offsets(f, name, json_object_get(v, "data_offsets"), data, data_len, t, err);
    t->file = f->path;
    return rc;
}

static int add_tensor(v4r_safetensors *st, const v4r_st_tensor *t, const char *name, v4r_err *err)
{
    if (v4r_strmap_get(&st->index, name) >= 0)
        return v4r_fail(err, V4R_EINPUT, "%s: tensor '%s' appears twice (also in %s)", t->file, name,
                        st->tensors[v4r_strmap_get(&st->index, name)].file);
    v4r_grow((void **)&st->tensors, &st->cap, st->n + 1, sizeof *st->tensors);
    st->tensors[st->n] = *t;
    st->tensors[st->n].name = v4r_strdup(name);
    v4r_strmap_put(&st->index, name, (int64_t)st->n);
    st->n++;
    return V4R_OK;
}

/* Parses the header of mapped file f and adds its tensors. */
static int read_header(v4r_safetensors *st, const st_file *f, v4r_err *err)
{
    const unsigned char *m = f->map;
    if (f->size < 8)
        return v4r_fail(err, V4R_EINPUT, "%s: truncated: %zu bytes, not even a header length", f->path, f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | m[i];
    if (hlen > f->size - 8)
        return v4r_fail(err, V4R_EINPUT, "%s: truncated: the header needs %llu bytes, the file has %zu after the length",
                        f->path, (unsigned long long)hlen, f->size - 8);
    json_error_t je;
    json_t *h = json_loadb((const char *)m + 8, (size_t)hlen, 0, &je);
    if (!h)
        return v4r_fail(err, V4R_EINPUT, "%s: the header is not JSON: %s", f->path, je.text);
    if (!json_is_object(h)) {
        json_decref(h);
        return v4r_fail(err, V4R_EINPUT, "%s: the header is not a JSON object", f->path);
    }
    const char *name;
    json_t *v;
    int rc = V4R_OK;
    json_object_foreach(h, name, v)
    {
        if (!strcmp(name, "__metadata__"))
            continue;
        v4r_st_tensor t;
        rc = parse_entry(f, name, v, m + 8 + hlen, f->size - 8 - (size_t)hlen, &t, err);
        if (!rc)
            rc = add_tensor(st, &t, name, err);
        if (rc)
            break;
    }
    json_decref(h);
    return rc;
}

static int open_file(v4r_safetensors *st, const char *path, v4r_err *err)
{
    v4r_grow((void **)&st->files, &st->files_cap, st->n_files + 1, sizeof *st->files);
    st_file *f = &st->files[st->n_files++];
    memset(f, 0, sizeof *f);
    int rc = map_file(path, f, err);
    return rc ? rc : read_header(st, f, err);
}

/* ---- an index and its shards ---- */

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? v4r_strndup(path, (size_t)(slash - path)) : v4r_strdup(".");
}

/* Opens each distinct shard of weight_map once, in order of first mention. */
static int open_shards(v4r_safetensors *st, const char *index, json_t *map, v4r_err *err)
{
    char *dir = dir_of(index);
    v4r_strmap seen;
    v4r_strmap_init(&seen, 16);
    const char *name;
    json_t *v;
    int rc = V4R_OK;
    json_object_foreach(map, name, v)
    {
        if (!json_is_string(v)) {
            rc = v4r_fail(err, V4R_EINPUT, "%s: weight_map['%s'] is not a file name", index, name);
            break;
        }
        if (v4r_strmap_put(&seen, json_string_value(v), 0) >= 0)
            continue;
        char *path = v4r_path_join(dir, json_string_value(v));
        rc = open_file(st, path, err);
        free(path);
        if (rc) {
            v4r_err_prefix(err, "%s names shard '%s': ", index, json_string_value(v));
            break;
        }
    }
    v4r_strmap_free(&seen);
    free(dir);
    return rc;
}

/* Every tensor the index places must be in its shard. */
static int check_placement(const v4r_safetensors *st, const char *index, json_t *map, v4r_err *err)
{
    char *dir = dir_of(index);
    const char *name;
    json_t *v;
    int rc = V4R_OK;
    json_object_foreach(map, name, v)
    {
        int64_t i = v4r_strmap_get(&st->index, name);
        char *path = v4r_path_join(dir, json_string_value(v));
        if (i < 0 || strcmp(st->tensors[i].file, path) != 0)
            rc = v4r_fail(err, V4R_EINPUT, "%s: tensor '%s' should be in %s, but that shard has no such tensor", index,
                          name, path);
        free(path);
        if (rc)
            break;
    }
    free(dir);
    return rc;
}

static int open_index(v4r_safetensors *st, const char *path, v4r_err *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        if (!v4r_file_exists(path))
            return v4r_fail(err, V4R_EIO, "%s: cannot open: %s", path, strerror(ENOENT));
        return v4r_fail(err, V4R_EINPUT, "%s:%d: not JSON: %s", path, je.line, je.text);
    }
    json_t *map = json_object_get(root, "weight_map");
    int rc = V4R_OK;
    if (!json_is_object(map))
        rc = v4r_fail(err, V4R_EINPUT, "%s: no \"weight_map\" object", path);
    if (!rc)
        rc = open_shards(st, path, map, err);
    if (!rc)
        rc = check_placement(st, path, map, err);
    json_decref(root);
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int v4r_st_open(const char *path, v4r_safetensors **out, v4r_err *err)
{
    v4r_safetensors *st = v4r_calloc(1, sizeof *st);
    st->path = v4r_strdup(path);
    v4r_strmap_init(&st->index, 256);
    int rc = ends_with(path, ".json") ? open_index(st, path, err) : open_file(st, path, err);
    if (rc) {
        v4r_st_close(st);
        st = NULL;
    }
    *out = st;
    return rc;
}

int v4r_st_open_dir(const char *dir, v4r_safetensors **out, v4r_err *err)
{
    char *index = v4r_path_join(dir, "model.safetensors.index.json"), *single = v4r_path_join(dir, "model.safetensors");
    int rc;
    *out = NULL;
    if (v4r_file_exists(index))
        rc = v4r_st_open(index, out, err);
    else if (v4r_file_exists(single))
        rc = v4r_st_open(single, out, err);
    else
        rc = v4r_fail(err, V4R_EIO, "%s: no weights: neither model.safetensors nor model.safetensors.index.json", dir);
    free(index);
    free(single);
    return rc;
}

void v4r_st_close(v4r_safetensors *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_files; i++) {
        if (st->files[i].map)
            munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    for (size_t i = 0; i < st->n; i++)
        free(st->tensors[i].name);
    free(st->files);
    free(st->tensors);
    v4r_strmap_free(&st->index);
    free(st->path);
    free(st);
}

/* ---- lookups ---- */

const char *v4r_st_path(const v4r_safetensors *st) { return st->path; }
size_t v4r_st_count(const v4r_safetensors *st) { return st->n; }
const v4r_st_tensor *v4r_st_at(const v4r_safetensors *st, size_t i) { return i < st->n ? &st->tensors[i] : NULL; }

const v4r_st_tensor *v4r_st_find(const v4r_safetensors *st, const char *name)
{
    int64_t i = v4r_strmap_get(&st->index, name);
    if (i < 0) {
        char *prefixed = v4r_sprintf("bert.%s", name);
        i = v4r_strmap_get(&st->index, prefixed);
        free(prefixed);
    }
    if (i < 0 && !strncmp(name, "bert.", 5))
        i = v4r_strmap_get(&st->index, name + 5);
    return i < 0 ? NULL : &st->tensors[i];
}

static void shape_str(int ndim, const size_t *shape, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%zu", d ? ", " : "", shape[d]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static int is_float(const char *dtype) { return !strcmp(dtype, "F32") || !strcmp(dtype, "F16") || !strcmp(dtype, "BF16"); }

int v4r_st_get(const v4r_safetensors *st, const char *name, int ndim, const size_t *shape, const v4r_st_tensor **t,
               v4r_err *err)
{
    const v4r_st_tensor *x = v4r_st_find(st, name);
    *t = NULL;
    if (!x)
        return v4r_fail(err, V4R_EINPUT, "%s: missing tensor '%s' (nor 'bert.%s')", st->path, name, name);
    if (!is_float(x->dtype))
        return v4r_fail(err, V4R_EINPUT, "%s: tensor '%s' has dtype %s, not F32, F16 or BF16", x->file, x->name,
                        x->dtype);
    int same = x->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = x->shape[d] == shape[d];
    if (!same) {
        char got[160], want[160];
        shape_str(x->ndim, x->shape, got, sizeof got);
        shape_str(ndim, shape, want, sizeof want);
        return v4r_fail(err, V4R_EINPUT, "%s: tensor '%s' has shape %s, expected %s", x->file, x->name, got, want);
    }
    *t = x;
    return V4R_OK;
}

void v4r_st_to_f32(const v4r_st_tensor *t, size_t first, size_t n, float *out)
{
    if (!strcmp(t->dtype, "F32"))
        memcpy(out, t->data + first * 4, n * sizeof *out);
    else if (!strcmp(t->dtype, "F16"))
        v4r_f16_to_f32_n(t->data + first * 2, out, n);
    else
        v4r_bf16_to_f32_n(t->data + first * 2, out, n);
}

int v4r_st_load(const v4r_safetensors *st, const char *name, int ndim, const size_t *shape, float **out, v4r_err *err)
{
    const v4r_st_tensor *t;
    *out = NULL;
    int rc = v4r_st_get(st, name, ndim, shape, &t, err);
    if (rc)
        return rc;
    *out = v4r_malloc((t->numel ? t->numel : 1) * sizeof **out);
    v4r_st_to_f32(t, 0, t->numel, *out);
    return V4R_OK;
}

int v4r_st_load_vec(const v4r_safetensors *st, const char *name, size_t n, float **out, v4r_err *err)
{
    return v4r_st_load(st, name, 1, &n, out, err);
}

int v4r_st_load_mat(const v4r_safetensors *st, const char *name, size_t rows, size_t cols, float **out, v4r_err *err)
{
    size_t shape[2] = {rows, cols};
    return v4r_st_load(st, name, 2, shape, out, err);
}

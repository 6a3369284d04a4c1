/* JSON files: reading a file whose top level must be an object, and typed fields of an object
 * with defaults; every error names the file (and the key). */
#include <jansson.h>
#include <stdint.h>

#include "vlm4rec/io.h"

int v4r_json_read_object(const char *path, json_t **root, v4r_err *err)
{
    json_error_t je;
    *root = json_load_file(path, 0, &je);
    if (!*root) {
        if (!v4r_file_exists(path))
            return v4r_fail(err, V4R_EIO, "%s: cannot open: no such file", path);
        return v4r_fail(err, V4R_EINPUT, "%s:%d: not JSON: %s", path, je.line, je.text);
    }
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return v4r_fail(err, V4R_EINPUT, "%s: not a JSON object", path);
    }
    return V4R_OK;
}

int v4r_json_get_size(const char *path, const json_t *obj, const char *key, size_t dflt, size_t max, size_t *out,
                      v4r_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v && dflt) {
        *out = dflt;
        return V4R_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || (uint64_t)json_integer_value(v) > (uint64_t)max)
        return v4r_fail(err, V4R_EINPUT, "%s: \"%s\" must be a positive integer", path, key);
    *out = (size_t)json_integer_value(v);
    return V4R_OK;
}

int v4r_json_get_number(const char *path, const json_t *obj, const char *key, double dflt, double *out, v4r_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (v && !json_is_number(v))
        return v4r_fail(err, V4R_EINPUT, "%s: \"%s\" must be a number", path, key);
    *out = v ? json_number_value(v) : dflt;
    return V4R_OK;
}

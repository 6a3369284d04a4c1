/* The CLIP vision config: a clip_vision_model's config.json, or the "vision_config" of a clip
 * model's, with CLIPVisionConfig's defaults for absent keys. */
#include "clip.h"

#include <jansson.h>
#include <string.h>

/* root[key], a positive integer up to 2^20, or dflt when absent. */
static int get_size(const char *path, json_t *root, const char *key, size_t dflt, size_t *out, v4r_err *err)
{
    return v4r_json_get_size(path, root, key, dflt, (size_t)1 << 20, out, err);
}

static int parse_act(const char *path, json_t *root, int *act, v4r_err *err)
{
    json_t *v = json_object_get(root, "hidden_act");
    const char *a = v ? json_string_value(v) : "quick_gelu";
    if (!a)
        return v4r_fail(err, V4R_EINPUT, "%s: \"hidden_act\" must be a string", path);
    int found = v4r_act_by_name(a);
    if (found < 0)
        return v4r_fail(err, V4R_EINPUT, "%s: hidden_act \"%s\" is not supported (quick_gelu, gelu, gelu_new, relu)",
                        path, a);
    *act = found;
    return V4R_OK;
}

static int parse_sizes(const char *path, json_t *vc, v4r_clip_config *c, v4r_err *err)
{
    size_t channels = 3;
    int rc = get_size(path, vc, "hidden_size", 768, &c->hidden, err);
    if (!rc)
        rc = get_size(path, vc, "intermediate_size", 3072, &c->inter, err);
    if (!rc)
        rc = get_size(path, vc, "num_hidden_layers", 12, &c->layers, err);
    if (!rc)
        rc = get_size(path, vc, "num_attention_heads", 12, &c->heads, err);
    if (!rc)
        rc = get_size(path, vc, "image_size", 224, &c->image, err);
    if (!rc)
        rc = get_size(path, vc, "patch_size", 32, &c->patch, err);
    if (!rc)
        rc = get_size(path, vc, "num_channels", 3, &channels, err);
    if (!rc && channels != 3)
        rc = v4r_fail(err, V4R_EINPUT, "%s: num_channels %zu is not supported (only 3)", path, channels);
    if (!rc && c->hidden % c->heads)
        rc = v4r_fail(err, V4R_EINPUT, "%s: hidden_size %zu is not a multiple of num_attention_heads %zu", path,
                      c->hidden, c->heads);
    if (!rc && (c->patch > c->image || c->image > 4096))
        rc = v4r_fail(err, V4R_EINPUT, "%s: image_size %zu and patch_size %zu do not make a grid", path, c->image,
                      c->patch);
    return rc;
}

static int parse_vision(const char *path, json_t *vc, v4r_clip_config *c, v4r_err *err)
{
    if (!json_is_object(vc))
        return v4r_fail(err, V4R_EINPUT, "%s: \"vision_config\" must be an object", path);
    int rc = parse_sizes(path, vc, c, err);
    if (!rc)
        rc = parse_act(path, vc, &c->act, err);
    double eps;
    if (!rc)
        rc = v4r_json_get_number(path, vc, "layer_norm_eps", 1e-5, &eps, err);
    if (rc)
        return rc;
    c->eps = (float)eps;
    c->grid = c->image / c->patch;
    c->tokens = 1 + c->grid * c->grid;
    return V4R_OK;
}

/* A clip model's vision half (projection_dim at the top), or a vision model. */
static int parse_config(const char *path, json_t *root, v4r_clip_config *c, v4r_err *err)
{
    json_t *mt = json_object_get(root, "model_type"), *vc = json_object_get(root, "vision_config");
    const char *type = json_string_value(mt);
    if (mt && !type)
        return v4r_fail(err, V4R_EINPUT, "%s: \"model_type\" must be a string", path);
    int full = type ? !strcmp(type, "clip") : vc != NULL;
    if (type && !full && strcmp(type, "clip_vision_model"))
        return v4r_fail(err, V4R_EINPUT, "%s: model_type %s is not supported (clip or clip_vision_model)", path, type);
    json_t *empty = json_object();
    int rc = parse_vision(path, full ? (vc ? vc : empty) : root, c, err);
    json_decref(empty);
    if (!rc)
        rc = get_size(path, root, "projection_dim", 512, &c->proj, err); /* both keep it at the top */
    return rc;
}

int v4r_clip_config_read(const char *path, v4r_clip_config *c, v4r_err *err)
{
    json_t *root;
    memset(c, 0, sizeof *c);
    int rc = v4r_json_read_object(path, &root, err);
    if (!rc)
        rc = parse_config(path, root, c, err);
    json_decref(root);
    return rc;
}

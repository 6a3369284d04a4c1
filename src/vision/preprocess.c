/* CLIP preprocessing: preprocessor_config.json, then resize (Pillow's filters, 16-bit weights),
 * center crop, rescale and normalize in float32 as transformers' CLIPImageProcessor does. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/io.h"
#include "vlm4rec/vision.h"

static const double OPENAI_MEAN[3] = {0.48145466, 0.4578275, 0.40821073};
static const double OPENAI_STD[3] = {0.26862954, 0.26130258, 0.27577711};

void v4r_vision_preproc_default(v4r_vision_preproc *p, int size)
{
    memset(p, 0, sizeof *p);
    p->do_resize = p->do_center_crop = p->do_rescale = p->do_normalize = 1;
    p->shortest_edge = size;
    p->resample = V4R_RESAMPLE_BICUBIC;
    p->crop_w = p->crop_h = size;
    p->rescale_factor = 1.0 / 255.0;
    memcpy(p->mean, OPENAI_MEAN, sizeof p->mean);
    memcpy(p->std, OPENAI_STD, sizeof p->std);
}

/* ---- preprocessor_config.json ---- */

static int side(json_t *v, int *out)
{
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 16384)
        return -1;
    *out = (int)json_integer_value(v);
    return 0;
}

/* "size": an int (the shortest edge), {"shortest_edge": N} or {"height": H, "width": W}. */
static int read_size(const char *path, json_t *v, v4r_vision_preproc *p, v4r_err *err)
{
    if (json_is_integer(v))
        return side(v, &p->shortest_edge) ? v4r_fail(err, V4R_EINPUT, "%s: \"size\" must be 1..16384", path) : 0;
    json_t *se = json_object_get(v, "shortest_edge");
    if (se && json_object_get(v, "longest_edge"))
        return v4r_fail(err, V4R_EINPUT, "%s: \"size\" with a longest_edge is not supported", path);
    if (se)
        return side(se, &p->shortest_edge)
                   ? v4r_fail(err, V4R_EINPUT, "%s: \"size.shortest_edge\" must be 1..16384", path)
                   : 0;
    p->shortest_edge = 0;
    if (side(json_object_get(v, "height"), &p->resize_h) || side(json_object_get(v, "width"), &p->resize_w))
        return v4r_fail(err, V4R_EINPUT,
                        "%s: \"size\" must be an int, {\"shortest_edge\": N} or {\"height\": H, \"width\": W}", path);
    return V4R_OK;
}

/* "crop_size": an int (a square) or {"height": H, "width": W}. */
static int read_crop(const char *path, json_t *v, v4r_vision_preproc *p, v4r_err *err)
{
    if (json_is_integer(v) && !side(v, &p->crop_w)) {
        p->crop_h = p->crop_w;
        return V4R_OK;
    }
    if (side(json_object_get(v, "height"), &p->crop_h) || side(json_object_get(v, "width"), &p->crop_w))
        return v4r_fail(err, V4R_EINPUT, "%s: \"crop_size\" must be an int or {\"height\": H, \"width\": W}", path);
    return V4R_OK;
}

/* "image_mean" / "image_std": three numbers, or one for every channel. */
static int read_triple(const char *path, json_t *root, const char *key, double out[3], v4r_err *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return V4R_OK;
    if (json_is_number(v)) {
        out[0] = out[1] = out[2] = json_number_value(v);
        return V4R_OK;
    }
    if (!json_is_array(v) || json_array_size(v) != 3)
        return v4r_fail(err, V4R_EINPUT, "%s: \"%s\" must be a number or 3 numbers", path, key);
    for (size_t c = 0; c < 3; c++) {
        if (!json_is_number(json_array_get(v, c)))
            return v4r_fail(err, V4R_EINPUT, "%s: \"%s\" must be a number or 3 numbers", path, key);
        out[c] = json_number_value(json_array_get(v, c));
    }
    return V4R_OK;
}

static int read_flag(const char *path, json_t *root, const char *key, int *out, v4r_err *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return V4R_OK;
    if (!json_is_boolean(v))
        return v4r_fail(err, V4R_EINPUT, "%s: \"%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return V4R_OK;
}

static int read_numbers(const char *path, json_t *root, v4r_vision_preproc *p, v4r_err *err)
{
    json_t *rs = json_object_get(root, "resample"), *rf = json_object_get(root, "rescale_factor");
    if (rs && !json_is_null(rs)) {
        json_int_t r = json_is_integer(rs) ? json_integer_value(rs) : -1;
        if (r != V4R_RESAMPLE_BILINEAR && r != V4R_RESAMPLE_BICUBIC)
            return v4r_fail(err, V4R_EINPUT, "%s: \"resample\" must be 2 (bilinear) or 3 (bicubic)", path);
        p->resample = (int)r;
    }
    if (rf && !json_is_null(rf)) {
        if (!json_is_number(rf) || json_number_value(rf) <= 0)
            return v4r_fail(err, V4R_EINPUT, "%s: \"rescale_factor\" must be a positive number", path);
        p->rescale_factor = json_number_value(rf);
    }
    int rc = read_triple(path, root, "image_mean", p->mean, err);
    if (!rc)
        rc = read_triple(path, root, "image_std", p->std, err);
    for (int c = 0; c < 3 && !rc; c++)
        if (p->std[c] == 0)
            rc = v4r_fail(err, V4R_EINPUT, "%s: \"image_std\" has a zero", path);
    return rc;
}

static int parse_preproc(const char *path, json_t *root, v4r_vision_preproc *p, v4r_err *err)
{
    static const char *flags[] = {"do_resize", "do_center_crop", "do_rescale", "do_normalize"};
    int *dst[] = {&p->do_resize, &p->do_center_crop, &p->do_rescale, &p->do_normalize};
    int rc = V4R_OK;
    for (int i = 0; i < 4 && !rc; i++)
        rc = read_flag(path, root, flags[i], dst[i], err);
    json_t *size = json_object_get(root, "size"), *crop = json_object_get(root, "crop_size");
    if (!rc && size && !json_is_null(size))
        rc = read_size(path, size, p, err);
    if (!rc && crop && !json_is_null(crop))
        rc = read_crop(path, crop, p, err);
    if (!rc)
        rc = read_numbers(path, root, p, err);
    return rc;
}

int v4r_vision_preproc_read(const char *path, v4r_vision_preproc *p, v4r_err *err)
{
    v4r_vision_preproc_default(p, 224);
    json_t *root;
    int rc = v4r_json_read_object(path, &root, err);
    if (!rc)
        rc = parse_preproc(path, root, p, err);
    json_decref(root);
    return rc;
}

int v4r_vision_preproc_size(const v4r_vision_preproc *p, int *w, int *h)
{
    if (p->do_center_crop) {
        *w = p->crop_w;
        *h = p->crop_h;
    } else if (p->do_resize && !p->shortest_edge) {
        *w = p->resize_w;
        *h = p->resize_h;
    } else
        return -1;
    return 0;
}

/* ---- applying it ---- */

/* The size the resize step gives an image of w x h. */
static void resized_size(const v4r_vision_preproc *p, int w, int h, int *rw, int *rh)
{
    if (!p->shortest_edge) {
        *rw = p->resize_w;
        *rh = p->resize_h;
    } else if (w <= h) {
        *rw = p->shortest_edge;
        *rh = (int)((long long)p->shortest_edge * h / w);
    } else {
        *rh = p->shortest_edge;
        *rw = (int)((long long)p->shortest_edge * w / h);
    }
}

static int floor_half(int d) { return d >= 0 ? d / 2 : -((-d + 1) / 2); }

/* Channels-first floats from 8-bit RGB, as the reference's float32 arithmetic gives them. */
static void to_float(const v4r_vision_preproc *p, const v4r_image *img, float *out)
{
    size_t n = (size_t)img->w * img->h;
    for (int c = 0; c < 3; c++) {
        float sub = 0.0f, div = 1.0f, mul = 1.0f;
        if (p->do_normalize && p->do_rescale) { /* mean and std in float32, times 1 / factor */
            float inv = (float)(1.0 / p->rescale_factor);
            sub = (float)p->mean[c] * inv;
            div = (float)p->std[c] * inv;
        } else if (p->do_normalize) {
            sub = (float)p->mean[c];
            div = (float)p->std[c];
        } else if (p->do_rescale)
            mul = (float)p->rescale_factor;
        float *o = out + (size_t)c * n;
        for (size_t i = 0; i < n; i++)
            o[i] = p->do_normalize ? ((float)img->px[3 * i + c] - sub) / div : (float)img->px[3 * i + c] * mul;
    }
}

int v4r_vision_preproc_apply(const v4r_vision_preproc *p, const v4r_image *img, float *out, int *w, int *h,
                             v4r_err *err)
{
    v4r_image cur = *img, tmp = {0};
    int rc = V4R_OK;
    if (p->do_resize) {
        int rw, rh;
        resized_size(p, img->w, img->h, &rw, &rh);
        rc = v4r_image_resize(img, rw, rh, p->resample | V4R_RESAMPLE_INT16, &tmp, err);
        cur = tmp;
    }
    if (!rc && p->do_center_crop) {
        v4r_image c;
        rc = v4r_image_crop(&cur, floor_half(cur.w - p->crop_w), floor_half(cur.h - p->crop_h), p->crop_w, p->crop_h,
                            &c, err);
        v4r_image_free(&tmp);
        cur = tmp = c;
    }
    if (!rc) {
        to_float(p, &cur, out);
        if (w)
            *w = cur.w;
        if (h)
            *h = cur.h;
    }
    v4r_image_free(&tmp);
    return rc;
}

/* The vision encoder: a CLIP model directory (config, weights, preprocessor_config.json), batches
 * of preprocessed images, and image files decoded in parallel with per-file failures. */
#include "clip.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct v4r_vision {
    v4r_clip clip;
    v4r_vision_preproc pre;
    v4r_clip_ws ws;
};

/* preprocessor_config.json, whose output must be the model's image_size square. */
static int load_preproc(v4r_vision *v, const char *dir, v4r_err *err)
{
    char *path = v4r_path_join(dir, "preprocessor_config.json");
    int w, h, rc = v4r_vision_preproc_read(path, &v->pre, err);
    size_t s = v->clip.cfg.image;
    if (!rc && v4r_vision_preproc_size(&v->pre, &w, &h))
        rc = v4r_fail(err, V4R_EINPUT, "%s: without a center crop or a fixed \"size\" the images' size varies",
                      path);
    else if (!rc && ((size_t)w != s || (size_t)h != s))
        rc = v4r_fail(err, V4R_EINPUT, "%s: the images come out %d x %d, the model takes %zu x %zu", path, w, h, s, s);
    free(path);
    return rc;
}

int v4r_vision_load(const char *model_dir, v4r_vision **out, v4r_err *err)
{
    int kernel;
    *out = NULL;
    int rc = v4r_kernel_pick(&kernel, err);
    if (rc)
        return rc;
    v4r_vision *v = v4r_calloc(1, sizeof *v);
    rc = v4r_clip_load(model_dir, kernel, &v->clip, err);
    if (!rc)
        rc = load_preproc(v, model_dir, err);
    if (rc) {
        v4r_vision_free(v);
        return rc;
    }
    const v4r_clip_config *c = &v->clip.cfg;
    v4r_debug("vision %s: %zu layers, hidden %zu, %zu px, patch %zu, projection %zu, %s kernel", model_dir, c->layers,
              c->hidden, c->image, c->patch, c->proj, v4r_kernel_name(kernel));
    *out = v;
    return V4R_OK;
}

void v4r_vision_free(v4r_vision *v)
{
    if (!v)
        return;
    v4r_clip_free(&v->clip);
    v4r_clip_ws_free(&v->ws);
    free(v);
}

size_t v4r_vision_dim(const v4r_vision *v) { return v->clip.cfg.proj; }
size_t v4r_vision_hidden_size(const v4r_vision *v) { return v->clip.cfg.hidden; }
size_t v4r_vision_layers(const v4r_vision *v) { return v->clip.cfg.layers; }
size_t v4r_vision_tokens(const v4r_vision *v) { return v->clip.cfg.tokens; }
int v4r_vision_image_size(const v4r_vision *v) { return (int)v->clip.cfg.image; }
size_t v4r_vision_pixel_count(const v4r_vision *v) { return 3 * v->clip.cfg.image * v->clip.cfg.image; }
const v4r_vision_preproc *v4r_vision_preproc_of(const v4r_vision *v) { return &v->pre; }

int v4r_vision_preprocess(const v4r_vision *v, const v4r_image *img, float *pixels, v4r_err *err)
{
    return v4r_vision_preproc_apply(&v->pre, img, pixels, NULL, NULL, err);
}

void v4r_vision_forward(v4r_vision *v, const float *pixels, size_t n, size_t batch_size, float *embeds, float *penult)
{
    size_t bs = batch_size ? batch_size : 16, pc = v4r_vision_pixel_count(v), dim = v->clip.cfg.proj;
    size_t states = v->clip.cfg.tokens * v->clip.cfg.hidden;
    for (size_t b = 0; b < n; b += bs) {
        size_t m = n - b < bs ? n - b : bs;
        v4r_clip_forward(&v->clip, pixels + b * pc, m, &v->ws, embeds ? embeds + b * dim : NULL,
                         penult ? penult + b * states : NULL);
    }
}

/* Loads and preprocesses one file into pixels; on failure the reason in *why. */
static int prepare_file(const v4r_vision *v, const char *path, float *pixels, char **why)
{
    v4r_image img = {0};
    v4r_err err = {0};
    if (!path) {
        *why = v4r_strdup("no image");
        return -1;
    }
    int rc = v4r_image_load(path, &img, &err);
    if (!rc && (rc = v4r_vision_preprocess(v, &img, pixels, &err)) != 0)
        v4r_err_prefix(&err, "%s: ", path);
    v4r_image_free(&img);
    *why = rc ? v4r_strdup(err.msg) : NULL;
    return rc ? -1 : 0;
}

/* Files [0, m) of a group: decoded in parallel, the good ones' pixels packed in order into pixels,
 * their indices in good[]; returns their count. */
static size_t prepare_group(const v4r_vision *v, const char *const *paths, size_t m, float *pixels, uint8_t *ok,
                            char **why, size_t *good)
{
    size_t pc = v4r_vision_pixel_count(v), n_good = 0;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < m; i++)
        ok[i] = prepare_file(v, paths[i], pixels + i * pc, &why[i]) == 0;
    for (size_t i = 0; i < m; i++)
        if (ok[i]) {
            if (n_good != i)
                memcpy(pixels + n_good * pc, pixels + i * pc, pc * sizeof *pixels);
            good[n_good++] = i;
        }
    return n_good;
}

size_t v4r_vision_embed_files(v4r_vision *v, const char *const *paths, size_t n, size_t batch_size, float *embeds,
                              uint8_t *ok, char **why, v4r_progress *prog)
{
    size_t bs = batch_size ? batch_size : 16, pc = v4r_vision_pixel_count(v), dim = v->clip.cfg.proj, failed = 0;
    float *pixels = v4r_malloc(bs * pc * sizeof *pixels), *out = v4r_malloc(bs * dim * sizeof *out);
    size_t *good = v4r_malloc(bs * sizeof *good);
    memset(embeds, 0, n * dim * sizeof *embeds);
    for (size_t b = 0; b < n; b += bs) {
        size_t m = n - b < bs ? n - b : bs;
        size_t n_good = prepare_group(v, paths + b, m, pixels, ok + b, why + b, good);
        v4r_clip_forward(&v->clip, pixels, n_good, &v->ws, out, NULL);
        for (size_t j = 0; j < n_good; j++)
            memcpy(embeds + (b + good[j]) * dim, out + j * dim, dim * sizeof *out);
        failed += m - n_good;
        if (prog)
            v4r_progress_add(prog, m);
    }
    free(pixels);
    free(out);
    free(good);
    return failed;
}

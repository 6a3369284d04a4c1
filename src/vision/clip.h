/* Internal to vision: the CLIP vision transformer (config, weights, forward pass over a batch of
 * images, each a sequence of the same number of tokens). */
#ifndef V4R_VISION_CLIP_H
#define V4R_VISION_CLIP_H

#include "vlm4rec/io.h"
#include "vlm4rec/kernels.h"
#include "vlm4rec/vision.h"

typedef struct {
    size_t hidden, layers, heads, inter, image, patch, proj;
    size_t grid, tokens; /* image / patch; 1 + grid^2 */
    float eps;
    int act; /* V4R_ACT_* */
} v4r_clip_config;

typedef struct {
    v4r_clip_config cfg;
    int kernel;
    v4r_linear patch; /* the patch convolution as a hidden x (3 patch^2) layer, no bias */
    float *cls, *pos; /* hidden; tokens x hidden */
    float *pre_g, *pre_b, *post_g, *post_b;
    v4r_tlayer *layer; /* pre-LN: ln1 before attention, ln2 before the MLP */
    v4r_linear proj; /* visual_projection: proj x hidden, no bias */
} v4r_clip;

/* Reads config.json: a clip_vision_model, or a clip model's "vision_config" (with the model's
 * projection_dim); missing keys take CLIPVisionConfig's defaults. Errors name the file and key. */
int v4r_clip_config_read(const char *path, v4r_clip_config *c, v4r_err *err);
/* Loads config.json and the weights of dir, prepared for kernel. */
int v4r_clip_load(const char *dir, int kernel, v4r_clip *m, v4r_err *err);
void v4r_clip_free(v4r_clip *m);

/* Activations of one batch of images. */
typedef struct {
    size_t cap; /* images */
    float *patches, *x, *h, *qkv, *ctx, *inter, *pooled;
    size_t *first; /* cap + 1 row offsets: image i's tokens start at first[i] */
    float **scratch;
    int n_scratch;
} v4r_clip_ws;

void v4r_clip_ws_reserve(const v4r_clip *m, v4r_clip_ws *ws, size_t images);
void v4r_clip_ws_free(v4r_clip_ws *ws);

/* The forward pass of n images (n x 3 x image x image floats): embeds (n x proj, may be NULL),
 * penult (n x tokens x hidden, may be NULL): the states entering the last layer. */
void v4r_clip_forward(const v4r_clip *m, const float *pixels, size_t n, v4r_clip_ws *ws, float *embeds, float *penult);

#endif

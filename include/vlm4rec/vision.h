/* vision: CLIP image preprocessing as transformers' CLIPImageProcessor does it (from the model's
 * preprocessor_config.json), and the CLIP vision transformer from Hugging Face safetensors
 * (CLIPVisionModelWithProjection, or the vision half of a CLIPModel): image_embeds and the
 * penultimate layer's token states. */
#ifndef VLM4REC_VISION_H
#define VLM4REC_VISION_H

#include "vlm4rec/base.h"
#include "vlm4rec/image.h"

/* ---- preprocessing ---- */

/* The steps of CLIPImageProcessor, in order: resize, center crop, rescale, normalize; channels
 * first. */
typedef struct {
    int do_resize;
    int shortest_edge;      /* > 0: the shorter side becomes this, the other int(this * long / short) */
    int resize_w, resize_h; /* shortest_edge 0: resized to exactly this */
    int resample;           /* V4R_RESAMPLE_BILINEAR or V4R_RESAMPLE_BICUBIC */
    int do_center_crop;
    int crop_w, crop_h;
    int do_rescale;
    double rescale_factor;
    int do_normalize;
    double mean[3], std[3];
} v4r_vision_preproc;

/* CLIPImageProcessor's defaults for images of size x size (shortest edge and crop size, bicubic,
 * 1/255, OpenAI's mean and std). */
void v4r_vision_preproc_default(v4r_vision_preproc *p, int size);
/* Reads a preprocessor_config.json over the defaults: "size" as an int (shortest edge),
 * {"shortest_edge": N} or {"height": H, "width": W}; "crop_size" as an int or {"height", "width"};
 * "resample" 2 (bilinear) or 3 (bicubic); the do_* flags, rescale_factor, image_mean, image_std.
 * Anything it cannot honour is V4R_EINPUT naming the file and the key. */
int v4r_vision_preproc_read(const char *path, v4r_vision_preproc *p, v4r_err *err);
/* The output's size when it does not depend on the image (a crop, or an exact resize): 0 and *w,
 * *h; else -1. */
int v4r_vision_preproc_size(const v4r_vision_preproc *p, int *w, int *h);
/* Preprocesses img into out (3 x h x w floats, channels first): resize with Pillow's filter and
 * 16-bit weights (as transformers' torch path), rounding to 8 bits, center crop (top-left corner
 * floor((h - crop) / 2); zeros where the crop passes the image), then in float32 (v - mean * 255) /
 * (std * 255) when rescaling by 1/255 and normalizing (the fused form of the reference), v * factor,
 * or (v - mean) / std. *w, *h (may be NULL) receive the output size. */
int v4r_vision_preproc_apply(const v4r_vision_preproc *p, const v4r_image *img, float *out, int *w, int *h,
                             v4r_err *err);

/* ---- the model ---- */

typedef struct v4r_vision v4r_vision;

/* Loads a model directory: config.json (a clip_vision_model, or a clip model whose
 * "vision_config" is used), model.safetensors (or an index and shards; tensors under
 * "vision_model." and "visual_projection.weight"; F32/F16/BF16 computed in float32) and
 * preprocessor_config.json, whose output size must be the model's image_size. Errors name the file
 * and the key or tensor. The kernel follows VLM4REC_KERNEL (see kernels.h). */
int v4r_vision_load(const char *model_dir, v4r_vision **out, v4r_err *err);
void v4r_vision_free(v4r_vision *v);

size_t v4r_vision_dim(const v4r_vision *v);         /* projection_dim: the length of image_embeds */
size_t v4r_vision_hidden_size(const v4r_vision *v); /* hidden_size */
size_t v4r_vision_layers(const v4r_vision *v);
size_t v4r_vision_tokens(const v4r_vision *v);      /* 1 + (image_size / patch_size)^2 */
int v4r_vision_image_size(const v4r_vision *v);
size_t v4r_vision_pixel_count(const v4r_vision *v); /* 3 x image_size^2 floats a preprocessed image */
const v4r_vision_preproc *v4r_vision_preproc_of(const v4r_vision *v);

/* The model's preprocessing of one image: v4r_vision_pixel_count(v) floats. */
int v4r_vision_preprocess(const v4r_vision *v, const v4r_image *img, float *pixels, v4r_err *err);

/* The forward pass of n preprocessed images (n x 3 x S x S floats), batch_size at a time (0: 16):
 * embeds (n x dim, may be NULL) receives image_embeds = visual_projection(post_layernorm(class
 * token)); penult (may be NULL) receives n x tokens x hidden_size, the token states that enter the
 * last layer (transformers' hidden_states[-2]). An image's numbers do not depend on the batch size,
 * the other images or the thread count. Not thread-safe for one v. */
void v4r_vision_forward(v4r_vision *v, const float *pixels, size_t n, size_t batch_size, float *embeds, float *penult);

/* Reads, decodes, preprocesses and embeds the image files paths[0..n) (decoding in parallel),
 * batch_size images a forward batch: row i of embeds (n x dim) is image i's image_embeds, or zeros
 * when it failed; then ok[i] = 0 and why[i] holds the reason (allocated; free() it), else ok[i] =
 * 1 and why[i] = NULL. A NULL path fails as "no image". prog (may be NULL) counts images done.
 * Returns the number of images that failed. */
size_t v4r_vision_embed_files(v4r_vision *v, const char *const *paths, size_t n, size_t batch_size, float *embeds,
                              uint8_t *ok, char **why, v4r_progress *prog);

#endif

/* Private to the synthetic catalog (src/data/synth*.c): the silhouettes and the PNG renderer. */
#ifndef VLM4REC_SYNTH_INTERNAL_H
#define VLM4REC_SYNTH_INTERNAL_H

#include "vlm4rec/base.h"

/* Silhouettes: what the "visual" view and the rendered images see of an item's category. */
enum {
    V4R_SHAPE_DRESS,   /* A-line: bodice and flared skirt */
    V4R_SHAPE_TOP,     /* T shape with short sleeves */
    V4R_SHAPE_COAT,    /* long body with long sleeves */
    V4R_SHAPE_SHOE,    /* low foot profile on a sole */
    V4R_SHAPE_BOOT,    /* L shape: shaft and foot */
    V4R_SHAPE_BAG,     /* box with a handle arc */
    V4R_SHAPE_HAT,     /* dome crown on a wide brim */
    V4R_SHAPE_RING,    /* band with a stone */
    V4R_SHAPE_PENDANT, /* chain arc with a drop */
    V4R_SHAPE_WATCH,   /* round face on a strap */
    V4R_NSHAPES
};

/* Image side in pixels. */
enum { V4R_SYNTH_IMAGE_SIZE = 64 };

/* Renders a SIZE x SIZE RGB image: light background, the shape filled with rgb (edges shaded
 * darker), placed with a small scale and offset jitter drawn from rng. */
void v4r_synth_render(uint8_t *pixels, int shape, const uint8_t rgb[3], v4r_rng *rng);
/* Writes an 8-bit RGB PNG (no time or text chunks, so the bytes depend only on the pixels),
 * atomically. */
int v4r_synth_write_png(const char *path, const uint8_t *pixels, int width, int height, v4r_err *err);

#endif

/* image: decoding JPEG / PNG / WebP into 8-bit RGB the way PIL's Image.open(...).convert("RGB")
 * does, resizing, and encoding back to PNG or JPEG (for uploads to a vision-language model). */
#ifndef VLM4REC_IMAGE_H
#define VLM4REC_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "vlm4rec/base.h"

/* An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B (w * h * 3 bytes). */
typedef struct {
    int w, h;
    uint8_t *px;
} v4r_image;

/* The format named by the first bytes: "png", "jpeg", "webp", or NULL when none of them. */
const char *v4r_image_sniff(const uint8_t *data, size_t n);
/* The MIME type of a format name from v4r_image_sniff ("image/png", ...). */
const char *v4r_image_mime(const char *format);

/* Decodes data (JPEG, PNG or WebP, told apart by their first bytes) into RGB: grayscale is
 * replicated, palettes expanded, alpha dropped (not composited, as PIL's convert("RGB")), 16-bit
 * samples reduced to 8, CMYK/YCCK JPEG converted as PIL does. A file that is empty, not an image,
 * truncated or corrupt is V4R_EINPUT with a message saying which ("empty file", "not a JPEG, PNG or
 * WebP image", "corrupt PNG: ..."); `what` (a path or URL, may be NULL) prefixes the message. */
int v4r_image_decode(const uint8_t *data, size_t n, const char *what, v4r_image *img, v4r_err *err);
/* Files larger than this are refused by v4r_image_load (V4R_EINPUT) before they are read. */
#define V4R_IMAGE_MAX_FILE_BYTES ((uint64_t)256 << 20)
/* Reads and decodes a file (a missing file is V4R_EIO naming it). */
int v4r_image_load(const char *path, v4r_image *img, v4r_err *err);
void v4r_image_free(v4r_image *img);

/* Resampling filters, as PIL names them. */
enum { V4R_RESAMPLE_BILINEAR = 2, V4R_RESAMPLE_BICUBIC = 3 };
/* Or'd into the filter: weights rounded to 16 bits with the precision chosen per pass (the largest
 * weight kept under 2^15), as Pillow-SIMD and torchvision's resize of uint8 tensors do; this is what
 * transformers' CLIP image processor produces. Without it, PIL's 22-bit weights. */
enum { V4R_RESAMPLE_INT16 = 0x100 };
/* Resizes to w x h the way PIL's Image.resize(size, filter) does for 8-bit RGB (separable passes,
 * support widened by the scale when shrinking, fixed-point coefficients), byte for byte. */
int v4r_image_resize(const v4r_image *src, int w, int h, int filter, v4r_image *dst, v4r_err *err);
/* Copies the w x h window whose top-left corner is (x, y); parts outside the image are zero, as
 * PIL's crop. */
int v4r_image_crop(const v4r_image *src, int x, int y, int w, int h, v4r_image *dst, v4r_err *err);
/* Encodes to PNG or JPEG (quality 1..100) in memory; *out is allocated (free()). */
int v4r_image_encode_png(const v4r_image *img, uint8_t **out, size_t *n, v4r_err *err);
int v4r_image_encode_jpeg(const v4r_image *img, int quality, uint8_t **out, size_t *n, v4r_err *err);

#endif

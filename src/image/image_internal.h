/* image: what the decoders, the resampler and the encoders share inside the module. */
#ifndef V4R_IMAGE_INTERNAL_H
#define V4R_IMAGE_INTERNAL_H

#include "vlm4rec/image.h"

/* Limits on a decoded image: a side over 65535 or more than 2^28 pixels is refused as bad input
 * (no real photo is that large; a corrupt header often claims so). */
#define V4R_IMAGE_MAX_SIDE 65535
#define V4R_IMAGE_MAX_PIXELS (1LL << 28)

/* Sets err to V4R_EINPUT with the message, prefixed by "<what>: " when what is not NULL. */
int v4r_image_bad(v4r_err *err, const char *what, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* 0 when w x h is a decodable size, else the error above. */
int v4r_image_check_size(long long w, long long h, const char *what, const char *format, v4r_err *err);
/* Allocates img->px for w x h RGB (zeroed). */
void v4r_image_alloc(v4r_image *img, int w, int h);

int v4r_image_decode_jpeg(const uint8_t *data, size_t n, const char *what, v4r_image *img, v4r_err *err);
int v4r_image_decode_png(const uint8_t *data, size_t n, const char *what, v4r_image *img, v4r_err *err);
int v4r_image_decode_webp(const uint8_t *data, size_t n, const char *what, v4r_image *img, v4r_err *err);

#endif

/* Image decoding: format sniffing, the dispatch to the JPEG / PNG / WebP decoders, the WebP decoder
 * itself (libwebp), size limits and error messages. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <webp/decode.h>

#include "image_internal.h"

const char *v4r_image_sniff(const uint8_t *data, size_t n)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (!data)
        return NULL;
    if (n >= 8 && memcmp(data, png_sig, 8) == 0)
        return "png";
    if (n >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return "jpeg";
    if (n >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0)
        return "webp";
    return NULL;
}

const char *v4r_image_mime(const char *format)
{
    if (!format)
        return NULL;
    if (strcmp(format, "png") == 0)
        return "image/png";
    if (strcmp(format, "jpeg") == 0)
        return "image/jpeg";
    if (strcmp(format, "webp") == 0)
        return "image/webp";
    return NULL;
}

int v4r_image_bad(v4r_err *err, const char *what, const char *fmt, ...)
{
    if (!err)
        return V4R_EINPUT;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = V4R_EINPUT;
    if (what)
        v4r_err_prefix(err, "%s: ", what);
    return V4R_EINPUT;
}

int v4r_image_check_size(long long w, long long h, const char *what, const char *format, v4r_err *err)
{
    if (w <= 0 || h <= 0)
        return v4r_image_bad(err, what, "corrupt %s: empty image (%lld x %lld)", format, w, h);
    if (w > V4R_IMAGE_MAX_SIDE || h > V4R_IMAGE_MAX_SIDE || w * h > V4R_IMAGE_MAX_PIXELS)
        return v4r_image_bad(err, what, "%s image too large: %lld x %lld (at most %d a side, %lld pixels)", format, w,
                             h, V4R_IMAGE_MAX_SIDE, V4R_IMAGE_MAX_PIXELS);
    return 0;
}

void v4r_image_alloc(v4r_image *img, int w, int h)
{
    img->w = w;
    img->h = h;
    img->px = v4r_calloc((size_t)w * (size_t)h, 3);
}

void v4r_image_free(v4r_image *img)
{
    if (!img)
        return;
    free(img->px);
    memset(img, 0, sizeof *img);
}

static const char *webp_status(VP8StatusCode s)
{
    switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated";
    default: return "error";
    }
}

/* Alpha, when present, is dropped: libwebp's RGB output holds the stored colors as they are, which
 * is what PIL's RGBA -> RGB conversion keeps. */
int v4r_image_decode_webp(const uint8_t *data, size_t n, const char *what, v4r_image *img, v4r_err *err)
{
    WebPBitstreamFeatures f;
    VP8StatusCode s = WebPGetFeatures(data, n, &f);
    if (s != VP8_STATUS_OK)
        return v4r_image_bad(err, what, "corrupt WebP: %s", webp_status(s));
    if (f.has_animation)
        return v4r_image_bad(err, what, "corrupt WebP: animated WebP is not supported");
    int rc = v4r_image_check_size(f.width, f.height, what, "WebP", err);
    if (rc)
        return rc;
    v4r_image out;
    v4r_image_alloc(&out, f.width, f.height);
    size_t stride = (size_t)f.width * 3;
    if (!WebPDecodeRGBInto(data, n, out.px, stride * (size_t)f.height, (int)stride)) {
        v4r_image_free(&out);
        /* tell truncation apart from other damage */
        WebPDecoderConfig cfg;
        const char *why = "bitstream error";
        if (WebPInitDecoderConfig(&cfg)) {
            cfg.output.colorspace = MODE_RGB;
            VP8StatusCode d = WebPDecode(data, n, &cfg);
            if (d != VP8_STATUS_OK)
                why = webp_status(d);
            WebPFreeDecBuffer(&cfg.output);
        }
        return v4r_image_bad(err, what, "corrupt WebP: %s", why);
    }
    *img = out;
    return 0;
}

int v4r_image_decode(const uint8_t *data, size_t n, const char *what, v4r_image *img, v4r_err *err)
{
    memset(img, 0, sizeof *img);
    if (!data || n == 0)
        return v4r_image_bad(err, what, "empty file");
    const char *format = v4r_image_sniff(data, n);
    if (!format)
        return v4r_image_bad(err, what, "not a JPEG, PNG or WebP image");
    if (strcmp(format, "jpeg") == 0)
        return v4r_image_decode_jpeg(data, n, what, img, err);
    if (strcmp(format, "png") == 0)
        return v4r_image_decode_png(data, n, what, img, err);
    return v4r_image_decode_webp(data, n, what, img, err);
}

int v4r_image_load(const char *path, v4r_image *img, v4r_err *err)
{
    memset(img, 0, sizeof *img);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > V4R_IMAGE_MAX_FILE_BYTES)
        return v4r_fail(err, V4R_EINPUT, "%s: the file is %lld bytes, over the limit of %llu for an image", path,
                        (long long)st.st_size, (unsigned long long)V4R_IMAGE_MAX_FILE_BYTES);
    char *data;
    size_t n;
    int rc = v4r_read_file(path, &data, &n, err);
    if (rc)
        return rc;
    rc = v4r_image_decode((const uint8_t *)data, n, path, img, err);
    free(data);
    return rc;
}

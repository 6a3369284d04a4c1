/* Encoding RGB images to PNG (libpng) and JPEG (libjpeg, 4:2:0) in memory. */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

#include "image_internal.h"

static int check_image(const v4r_image *img, v4r_err *err)
{
    if (!img || !img->px || img->w <= 0 || img->h <= 0)
        return v4r_fail(err, V4R_EINPUT, "cannot encode an empty image");
    if (img->w > V4R_IMAGE_MAX_SIDE || img->h > V4R_IMAGE_MAX_SIDE)
        return v4r_fail(err, V4R_EINPUT, "cannot encode a %d x %d image (at most %d a side)", img->w, img->h,
                        V4R_IMAGE_MAX_SIDE);
    return 0;
}

/* ---- PNG ---- */

/* Everything the longjmp path frees lives here, reached through a pointer that never changes. */
typedef struct {
    png_structp png;
    png_infop info;
    uint8_t *buf;
    size_t len, cap;
    char msg[256];
} png_encoder;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_encoder *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void png_write_mem(png_structp png, png_bytep data, size_t len)
{
    png_encoder *e = png_get_io_ptr(png);
    v4r_grow((void **)&e->buf, &e->cap, e->len + len, 1);
    memcpy(e->buf + e->len, data, len);
    e->len += len;
}

static void png_flush_mem(png_structp png)
{
    (void)png;
}

static int png_run(png_encoder *e, const v4r_image *img, v4r_err *err)
{
    e->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, e, png_on_error, png_on_warning);
    if (e->png)
        e->info = png_create_info_struct(e->png);
    if (!e->png || !e->info) {
        png_destroy_write_struct(&e->png, &e->info);
        return v4r_fail(err, V4R_ENOMEM, "out of memory for a PNG encoder");
    }
    if (setjmp(png_jmpbuf(e->png))) {
        png_destroy_write_struct(&e->png, &e->info);
        free(e->buf);
        e->buf = NULL;
        return v4r_fail(err, V4R_EINTERNAL, "PNG encoding failed: %s", e->msg);
    }
    png_set_write_fn(e->png, e, png_write_mem, png_flush_mem);
    png_set_IHDR(e->png, e->info, (png_uint_32)img->w, (png_uint_32)img->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(e->png, e->info);
    for (int y = 0; y < img->h; y++)
        png_write_row(e->png, (png_const_bytep)(img->px + (size_t)y * img->w * 3));
    png_write_end(e->png, NULL);
    png_destroy_write_struct(&e->png, &e->info);
    return 0;
}

int v4r_image_encode_png(const v4r_image *img, uint8_t **out, size_t *n, v4r_err *err)
{
    *out = NULL;
    *n = 0;
    int rc = check_image(img, err);
    if (rc)
        return rc;
    png_encoder *e = v4r_calloc(1, sizeof *e);
    rc = png_run(e, img, err);
    if (rc == 0) {
        *out = e->buf;
        *n = e->len;
    }
    free(e);
    return rc;
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_errors;

/* Everything the longjmp path frees lives here; libjpeg allocates and grows buf with malloc. */
typedef struct {
    struct jpeg_compress_struct cinfo;
    jpeg_errors jerr;
    unsigned char *buf;
    unsigned long len;
} jpeg_encoder;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    e->pub.format_message(cinfo, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_on_output(j_common_ptr cinfo)
{
    (void)cinfo;
}

static int jpeg_run(jpeg_encoder *e, const v4r_image *img, int quality, v4r_err *err)
{
    struct jpeg_compress_struct *ci = &e->cinfo;
    ci->err = jpeg_std_error(&e->jerr.pub);
    e->jerr.pub.error_exit = jpeg_on_error;
    e->jerr.pub.output_message = jpeg_on_output;
    if (setjmp(e->jerr.jb)) {
        jpeg_destroy_compress(ci);
        free(e->buf);
        e->buf = NULL;
        return v4r_fail(err, V4R_EINTERNAL, "JPEG encoding failed: %s", e->jerr.msg);
    }
    jpeg_create_compress(ci);
    jpeg_mem_dest(ci, &e->buf, &e->len);
    ci->image_width = (JDIMENSION)img->w;
    ci->image_height = (JDIMENSION)img->h;
    ci->input_components = 3;
    ci->in_color_space = JCS_RGB;
    jpeg_set_defaults(ci); /* YCbCr, 2x2 luma sampling (4:2:0), integer slow DCT */
    jpeg_set_quality(ci, quality, TRUE);
    jpeg_start_compress(ci, TRUE);
    while (ci->next_scanline < ci->image_height) {
        JSAMPROW row = (JSAMPROW)(img->px + (size_t)ci->next_scanline * img->w * 3);
        jpeg_write_scanlines(ci, &row, 1);
    }
    jpeg_finish_compress(ci);
    jpeg_destroy_compress(ci);
    return 0;
}

int v4r_image_encode_jpeg(const v4r_image *img, int quality, uint8_t **out, size_t *n, v4r_err *err)
{
    *out = NULL;
    *n = 0;
    int rc = check_image(img, err);
    if (rc)
        return rc;
    if (quality < 1 || quality > 100)
        return v4r_fail(err, V4R_EUSAGE, "JPEG quality %d is not in 1..100", quality);
    jpeg_encoder *e = v4r_calloc(1, sizeof *e);
    rc = jpeg_run(e, img, quality, err);
    if (rc == 0) {
        *out = e->buf;
        *n = e->len;
    }
    free(e);
    return rc;
}

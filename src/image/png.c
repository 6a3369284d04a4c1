/* PNG decoding through libpng, to RGB as PIL's convert("RGB") gives it: palettes expanded, low-depth
 * gray scaled to 0..255, gray replicated, alpha and tRNS dropped, 16-bit color cut to its high byte
 * and 16-bit gray clipped to 255 (PIL holds it as an integer image, which converts by clipping);
 * no gamma or color-profile correction. */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

/* Everything the longjmp path frees lives here, reached through a pointer that never changes. */
typedef struct {
    const uint8_t *data;
    size_t n, pos;
    png_structp png;
    png_infop info;
    uint8_t *buf;
    png_bytep *rows;
    v4r_image out;
    char msg[256];
} png_decoder;

static void on_error(png_structp png, png_const_charp msg)
{
    png_decoder *d = png_get_error_ptr(png);
    snprintf(d->msg, sizeof d->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void read_mem(png_structp png, png_bytep out, size_t len)
{
    png_decoder *d = png_get_io_ptr(png);
    if (len > d->n - d->pos)
        png_error(png, "truncated file");
    memcpy(out, d->data + d->pos, len);
    d->pos += len;
}

/* One decoded row (after libpng's expansions) to RGB. */
static void row_to_rgb(const uint8_t *in, int channels, int gray16, int w, uint8_t *out)
{
    for (int x = 0; x < w; x++, out += 3) {
        if (gray16) {
            int v = in[2 * x] ? 255 : in[2 * x + 1];
            out[0] = out[1] = out[2] = (uint8_t)v;
        } else if (channels <= 2) {
            out[0] = out[1] = out[2] = in[channels * x];
        } else {
            memcpy(out, in + channels * x, 3);
        }
    }
}

static void decoder_cleanup(png_decoder *d)
{
    png_destroy_read_struct(&d->png, &d->info, NULL);
    free(d->buf);
    free(d->rows);
    d->buf = NULL;
    d->rows = NULL;
}

static void set_transforms(png_decoder *d, int depth, int color, int *gray16)
{
    png_structp png = d->png;
    *gray16 = 0;
    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) {
        if (color == PNG_COLOR_TYPE_GRAY)
            *gray16 = 1;
        else
            png_set_strip_16(png);
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, d->info);
}

static int decode(png_decoder *d, const char *what, v4r_err *err)
{
    d->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, d, on_error, on_warning);
    if (d->png)
        d->info = png_create_info_struct(d->png);
    if (!d->png || !d->info) {
        decoder_cleanup(d);
        return v4r_fail(err, V4R_ENOMEM, "out of memory for a PNG decoder");
    }
    if (setjmp(png_jmpbuf(d->png))) {
        decoder_cleanup(d);
        v4r_image_free(&d->out);
        return v4r_image_bad(err, what, "corrupt PNG: %s", d->msg);
    }
    png_set_read_fn(d->png, d, read_mem);
    /* a damaged ancillary chunk is an error, as in PIL, not a warning */
    png_set_crc_action(d->png, PNG_CRC_DEFAULT, PNG_CRC_ERROR_QUIT);
    png_set_user_limits(d->png, 0x7fffffff, 0x7fffffff);
    png_read_info(d->png, d->info);
    png_uint_32 w, h;
    int depth, color, interlace;
    png_get_IHDR(d->png, d->info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    int rc = v4r_image_check_size(w, h, what, "PNG", err);
    if (rc) {
        decoder_cleanup(d);
        return rc;
    }
    int gray16;
    set_transforms(d, depth, color, &gray16);
    int channels = png_get_channels(d->png, d->info);
    size_t rowbytes = png_get_rowbytes(d->png, d->info);
    d->buf = v4r_malloc(rowbytes * h);
    d->rows = v4r_malloc(sizeof *d->rows * h);
    for (png_uint_32 y = 0; y < h; y++)
        d->rows[y] = d->buf + rowbytes * y;
    png_read_image(d->png, d->rows);
    /* the chunks after the image data are not read: PIL does not need them either */
    v4r_image_alloc(&d->out, (int)w, (int)h);
    for (png_uint_32 y = 0; y < h; y++)
        row_to_rgb(d->rows[y], channels, gray16, (int)w, d->out.px + (size_t)y * w * 3);
    decoder_cleanup(d);
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int v4r_image_decode_png(const uint8_t *data, size_t n, const char *what, v4r_image *img, v4r_err *err)
{
    /* the size in the header, checked before libpng reads on to the image data */
    if (n >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        int rc = v4r_image_check_size(be32(data + 16), be32(data + 20), what, "PNG", err);
        if (rc)
            return rc;
    }
    png_decoder *d = v4r_calloc(1, sizeof *d);
    d->data = data;
    d->n = n;
    int rc = decode(d, what, err);
    if (rc == 0)
        *img = d->out;
    free(d);
    return rc;
}

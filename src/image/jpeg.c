/* JPEG decoding through libjpeg with PIL's settings (integer slow DCT, fancy upsampling, Adobe CMYK
 * read inverted and converted with PIL's formula). libjpeg's errors come back through longjmp and
 * its warnings are kept off stderr; running out of data is an error, as PIL reports "image file is
 * truncated". */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

#include "image_internal.h"

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int finishing; /* past the last scanline: a missing end marker is accepted, as PIL does */
    int truncated;
    char msg[JMSG_LENGTH_MAX];
} jpeg_errors;

/* Everything the longjmp path frees lives here, reached through a pointer that never changes. */
typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_errors jerr;
    uint8_t *row;
    v4r_image out;
} jpeg_decoder;

static void on_error(j_common_ptr cinfo)
{
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    e->pub.format_message(cinfo, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings (corrupt data that libjpeg skips over) are ignored as PIL ignores them, except the end
 * of the data before the image is complete. */
static void on_message(j_common_ptr cinfo, int level)
{
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    if (level < 0 && e->pub.msg_code == JWRN_JPEG_EOF && !e->finishing) {
        e->truncated = 1;
        snprintf(e->msg, sizeof e->msg, "truncated file");
        longjmp(e->jb, 1);
    }
}

static void on_output(j_common_ptr cinfo)
{
    (void)cinfo;
}

/* PIL's CMYK -> RGB for one channel, from the raw (Adobe, inverted) samples: with C = 255 - c and
 * K = 255 - k, R = clip(255 - K - C * (255 - K) / 255), the division rounded as PIL's MULDIV255. */
static inline uint8_t cmyk_channel(int c, int k)
{
    int C = 255 - c, nk = k;
    int t = C * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void row_to_rgb(const uint8_t *in, int components, int w, uint8_t *out)
{
    if (components == 3) {
        memcpy(out, in, (size_t)w * 3);
    } else if (components == 1) {
        for (int x = 0; x < w; x++)
            out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[x];
    } else {
        for (int x = 0; x < w; x++) {
            const uint8_t *p = in + 4 * x;
            out[3 * x] = cmyk_channel(p[0], p[3]);
            out[3 * x + 1] = cmyk_channel(p[1], p[3]);
            out[3 * x + 2] = cmyk_channel(p[2], p[3]);
        }
    }
}

static void decoder_cleanup(jpeg_decoder *d)
{
    jpeg_destroy_decompress(&d->cinfo);
    free(d->row);
    d->row = NULL;
}

static int decode(jpeg_decoder *d, const uint8_t *data, size_t n, const char *what, v4r_err *err)
{
    struct jpeg_decompress_struct *ci = &d->cinfo;
    ci->err = jpeg_std_error(&d->jerr.pub);
    d->jerr.pub.error_exit = on_error;
    d->jerr.pub.emit_message = on_message;
    d->jerr.pub.output_message = on_output;
    if (setjmp(d->jerr.jb)) {
        decoder_cleanup(d);
        v4r_image_free(&d->out);
        return v4r_image_bad(err, what, "corrupt JPEG: %s", d->jerr.msg);
    }
    jpeg_create_decompress(ci);
    jpeg_mem_src(ci, data, (unsigned long)n);
    jpeg_read_header(ci, TRUE);
    int rc = v4r_image_check_size(ci->image_width, ci->image_height, what, "JPEG", err);
    if (rc) {
        decoder_cleanup(d);
        return rc;
    }
    switch (ci->num_components) {
    case 1: ci->out_color_space = JCS_GRAYSCALE; break;
    case 3: ci->out_color_space = JCS_RGB; break;
    case 4: ci->out_color_space = JCS_CMYK; break; /* YCCK is turned into CMYK by libjpeg */
    default:
        decoder_cleanup(d);
        return v4r_image_bad(err, what, "corrupt JPEG: unsupported %d-component image", ci->num_components);
    }
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(ci);
    int w = (int)ci->output_width, comps = ci->output_components;
    d->row = v4r_malloc((size_t)w * (size_t)comps);
    v4r_image_alloc(&d->out, w, (int)ci->output_height);
    while (ci->output_scanline < ci->output_height) {
        uint8_t *out = d->out.px + (size_t)ci->output_scanline * (size_t)w * 3;
        JSAMPROW rows[1] = {d->row};
        if (jpeg_read_scanlines(ci, rows, 1) != 1) {
            decoder_cleanup(d);
            v4r_image_free(&d->out);
            return v4r_image_bad(err, what, "corrupt JPEG: truncated file");
        }
        row_to_rgb(d->row, comps, w, out);
    }
    d->jerr.finishing = 1;
    jpeg_finish_decompress(ci);
    decoder_cleanup(d);
    return 0;
}

int v4r_image_decode_jpeg(const uint8_t *data, size_t n, const char *what, v4r_image *img, v4r_err *err)
{
    jpeg_decoder *d = v4r_calloc(1, sizeof *d);
    int rc = decode(d, data, n, what, err);
    if (rc == 0)
        *img = d->out;
    free(d);
    return rc;
}

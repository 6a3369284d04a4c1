/* The synthetic catalog's images: one silhouette per category group, filled with the item's color,
 * rendered with 4x4 supersampling and written as PNG through libpng. */
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "synth_internal.h"

static int in_rect(double x, double y, double x0, double x1, double y0, double y1)
{
    return x >= x0 && x <= x1 && y >= y0 && y <= y1;
}

static int in_ellipse(double x, double y, double cx, double cy, double rx, double ry)
{
    double dx = (x - cx) / rx, dy = (y - cy) / ry;
    return dx * dx + dy * dy <= 1.0;
}

static int in_annulus(double x, double y, double cx, double cy, double r0, double r1)
{
    double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
    return d2 >= r0 * r0 && d2 <= r1 * r1;
}

/* Within r of the segment a-b. */
static int in_capsule(double x, double y, double ax, double ay, double bx, double by, double r)
{
    double vx = bx - ax, vy = by - ay, wx = x - ax, wy = y - ay;
    double t = (vx * wx + vy * wy) / (vx * vx + vy * vy);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double dx = wx - t * vx, dy = wy - t * vy;
    return dx * dx + dy * dy <= r * r;
}

/* Shape membership in [-1, 1]^2, y pointing down. */
static int inside(int shape, double x, double y)
{
    double ax = fabs(x);
    switch (shape) {
    case V4R_SHAPE_DRESS:
        if (in_rect(ax, y, 0.14, 0.22, -0.95, -0.7))
            return 1; /* straps */
        if (in_rect(x, y, -0.25, 0.25, -0.75, -0.25))
            return 1; /* bodice */
        return y >= -0.25 && y <= 0.9 && ax <= 0.25 + (y + 0.25) / 1.15 * 0.45;
    case V4R_SHAPE_TOP:
        if (in_ellipse(x, y, 0, -0.72, 0.2, 0.14))
            return 0; /* neckline */
        return in_rect(x, y, -0.45, 0.45, -0.72, 0.85) || in_capsule(ax, y, 0.38, -0.6, 0.85, -0.2, 0.16);
    case V4R_SHAPE_COAT:
        if (in_ellipse(x, y, 0, -0.82, 0.16, 0.12))
            return 0;
        return in_rect(x, y, -0.4, 0.4, -0.82, 0.95) || in_capsule(ax, y, 0.35, -0.7, 0.72, 0.6, 0.13);
    case V4R_SHAPE_SHOE:
        if (in_rect(x, y, -0.85, 0.85, 0.35, 0.5))
            return 1; /* sole */
        if (in_ellipse(x, y, 0.45, -0.05, 0.25, 0.12))
            return 0; /* collar opening */
        return y <= 0.35 && in_ellipse(x, y, 0, 0.35, 0.85, 0.45);
    case V4R_SHAPE_BOOT:
        return in_rect(x, y, 0.0, 0.5, -0.85, 0.6) || in_rect(x, y, -0.55, 0.5, 0.15, 0.6) ||
               in_ellipse(x, y, -0.55, 0.4, 0.3, 0.2);
    case V4R_SHAPE_BAG:
        return in_rect(x, y, -0.7, 0.7, -0.15, 0.8) || (y <= -0.15 && in_annulus(x, y, 0, -0.15, 0.32, 0.45));
    case V4R_SHAPE_HAT:
        return in_ellipse(x, y, 0, 0.35, 0.95, 0.16) || (y <= 0.35 && in_ellipse(x, y, 0, 0.35, 0.5, 0.75));
    case V4R_SHAPE_RING:
        return in_annulus(x, y, 0, 0.15, 0.4, 0.58) || in_ellipse(x, y, 0, -0.5, 0.2, 0.2);
    case V4R_SHAPE_PENDANT:
        return (y >= -0.6 && in_annulus(x, y, 0, -0.6, 0.6, 0.66)) || in_ellipse(x, y, 0, 0.45, 0.18, 0.26) ||
               in_capsule(x, y, 0, 0.04, 0, 0.22, 0.03);
    case V4R_SHAPE_WATCH:
        return in_rect(x, y, -0.22, 0.22, -0.95, 0.95) || in_ellipse(x, y, 0, 0, 0.42, 0.42) ||
               in_rect(x, y, 0.4, 0.5, -0.06, 0.06);
    default:
        return 0;
    }
}

void v4r_synth_render(uint8_t *pixels, int shape, const uint8_t rgb[3], v4r_rng *rng)
{
    enum { N = V4R_SYNTH_IMAGE_SIZE, SS = 4 };
    static const double bg[3] = {238, 236, 230};
    double scale = 0.85 + 0.15 * v4r_rng_uniform(rng);
    double ox = 0.16 * v4r_rng_uniform(rng) - 0.08, oy = 0.16 * v4r_rng_uniform(rng) - 0.08;
    /* the shape at pixel corners; a pixel whose four corners agree is taken as wholly in or out
     * (every stroke is wider than a pixel), the others get SS x SS samples */
    uint8_t corner[N + 1][N + 1];
    for (int cy = 0; cy <= N; cy++)
        for (int cx = 0; cx <= N; cx++) {
            double X = (double)cx / N * 2 - 1, Y = (double)cy / N * 2 - 1;
            corner[cy][cx] = (uint8_t)inside(shape, (X - ox) / scale, (Y - oy) / scale);
        }
    float cov[N][N];
    for (int py = 0; py < N; py++)
        for (int px = 0; px < N; px++) {
            int sum = corner[py][px] + corner[py][px + 1] + corner[py + 1][px] + corner[py + 1][px + 1];
            if (sum == 0 || sum == 4) {
                cov[py][px] = (float)(sum / 4);
                continue;
            }
            int hits = 0;
            for (int sy = 0; sy < SS; sy++)
                for (int sx = 0; sx < SS; sx++) {
                    double X = (px + (sx + 0.5) / SS) / N * 2 - 1, Y = (py + (sy + 0.5) / SS) / N * 2 - 1;
                    hits += inside(shape, (X - ox) / scale, (Y - oy) / scale);
                }
            cov[py][px] = (float)hits / (SS * SS);
        }
    for (int py = 0; py < N; py++)
        for (int px = 0; px < N; px++) {
            float c = cov[py][px];
            /* an edge: covered, next to a pixel that is not fully covered (or the border) */
            int edge = c > 0 && (c < 1 || px == 0 || py == 0 || px == N - 1 || py == N - 1 || cov[py][px - 1] < 1 ||
                                 cov[py][px + 1] < 1 || cov[py - 1][px] < 1 || cov[py + 1][px] < 1);
            uint8_t *p = pixels + ((size_t)py * N + px) * 3;
            for (int k = 0; k < 3; k++) {
                double fg = edge ? 0.55 * rgb[k] : rgb[k];
                double v = bg[k] * (1 - c) + fg * c;
                p[k] = (uint8_t)(v + 0.5);
            }
        }
}

/* Encodes into fp; -1 when libpng fails (it has printed why). Nothing here is changed after
 * setjmp, so the longjmp path needs no volatile. */
static int png_encode(FILE *fp, const uint8_t *pixels, int width, int height)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    if (!png)
        return -1;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++)
        png_write_row(png, (png_const_bytep)(pixels + (size_t)y * width * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int v4r_synth_write_png(const char *path, const uint8_t *pixels, int width, int height, v4r_err *err)
{
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    if (rc)
        return rc;
    if (png_encode(out.fp, pixels, width, height) != 0) {
        v4r_out_abort(&out);
        return v4r_fail(err, V4R_EIO, "%s: PNG encoding failed", path);
    }
    return v4r_out_commit(&out, err);
}

/* Resampling as PIL's ImagingResample does for 8-bit images: per output pixel a window of filter
 * weights (the support widened by the scale when shrinking), normalized, turned into fixed point,
 * a horizontal pass into an 8-bit intermediate and a vertical pass, each pass skipped when its
 * dimension is unchanged. Also cropping. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

/* PIL's fixed point: 32 bits less 8 for the samples and 2 for the filters' overshoot. */
#define PRECISION_BITS (32 - 8 - 2)
/* The 16-bit variant (Pillow-SIMD, torchvision on uint8 tensors): the largest weight must stay
 * below 2^15 after scaling. */
#define MAX_COEFS_PRECISION (16 - 1)

typedef struct {
    double (*fn)(double x);
    double support;
} filter;

static double bilinear_fn(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double bicubic_fn(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static const filter BILINEAR = {bilinear_fn, 1.0};
static const filter BICUBIC = {bicubic_fn, 2.0};

/* The weights of one pass: for output pixel i, ksize slots at k + i * ksize, of which the first
 * bounds[2i + 1] apply to input pixels from bounds[2i]; `prec` fractional bits. */
typedef struct {
    int ksize, prec;
    int *bounds;
    int32_t *k;
} weights;

/* Float weights exactly as PIL's precompute_coeffs computes them (box 0..in_size). */
static double *float_weights(int in_size, int out_size, const filter *f, int *ksize_out, int *bounds)
{
    double scale = (double)(float)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *kk = v4r_malloc((size_t)out_size * (size_t)ksize * sizeof *kk);
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        double *k = kk + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = f->fn((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0)
                k[x] /= ww;
        for (; x < ksize; x++)
            k[x] = 0;
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    *ksize_out = ksize;
    return kk;
}

/* The precision of the 16-bit variant: the most bits that keep the largest weight under 2^15. */
static int int16_precision(const double *kk, size_t n)
{
    double maxkk = kk[0];
    for (size_t i = 0; i < n; i++)
        if (maxkk < kk[i])
            maxkk = kk[i];
    int prec;
    for (prec = 0; prec < PRECISION_BITS; prec++) {
        int next = (int)(0.5 + maxkk * (1 << (prec + 1)));
        if (next >= (1 << MAX_COEFS_PRECISION))
            break;
    }
    return prec;
}

static void make_weights(int in_size, int out_size, const filter *f, int int16, weights *wt)
{
    wt->bounds = v4r_malloc((size_t)out_size * 2 * sizeof *wt->bounds);
    double *kk = float_weights(in_size, out_size, f, &wt->ksize, wt->bounds);
    size_t n = (size_t)out_size * (size_t)wt->ksize;
    wt->prec = int16 ? int16_precision(kk, n) : PRECISION_BITS;
    wt->k = v4r_malloc(n * sizeof *wt->k);
    double one = (double)(1 << wt->prec);
    for (size_t i = 0; i < n; i++)
        wt->k[i] = kk[i] < 0 ? (int32_t)(-0.5 + kk[i] * one) : (int32_t)(0.5 + kk[i] * one);
    free(kk);
}

static void free_weights(weights *wt)
{
    free(wt->bounds);
    free(wt->k);
}

static inline uint8_t clip8(int32_t ss, int prec)
{
    int32_t v = ss >> prec;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Output rows 0..rows-1 from input rows y0..y0+rows-1, widths in_w -> out_w. */
static void pass_horizontal(const uint8_t *in, int in_w, int y0, int rows, uint8_t *out, int out_w,
                            const weights *wt)
{
    const int32_t half = 1 << (wt->prec - 1);
#pragma omp parallel for schedule(static) if ((long long)rows * out_w * wt->ksize > 200000)
    for (int yy = 0; yy < rows; yy++) {
        const uint8_t *src = in + ((size_t)(yy + y0) * (size_t)in_w) * 3;
        uint8_t *dst = out + (size_t)yy * (size_t)out_w * 3;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = wt->bounds[2 * xx], xmax = wt->bounds[2 * xx + 1];
            const int32_t *k = wt->k + (size_t)xx * wt->ksize;
            const uint8_t *p = src + (size_t)xmin * 3;
            int32_t s0 = half, s1 = half, s2 = half;
            for (int x = 0; x < xmax; x++) {
                s0 += p[3 * x] * k[x];
                s1 += p[3 * x + 1] * k[x];
                s2 += p[3 * x + 2] * k[x];
            }
            dst[3 * xx] = clip8(s0, wt->prec);
            dst[3 * xx + 1] = clip8(s1, wt->prec);
            dst[3 * xx + 2] = clip8(s2, wt->prec);
        }
    }
}

/* Output rows 0..out_h-1 of width w; the weights' bounds index the rows of `in`. */
static void pass_vertical(const uint8_t *in, int w, uint8_t *out, int out_h, const weights *wt)
{
    const size_t n = (size_t)w * 3;
    const int32_t half = 1 << (wt->prec - 1);
#pragma omp parallel if ((long long)out_h * w * wt->ksize > 200000)
    {
        int32_t *acc = v4r_malloc(n * sizeof *acc);
#pragma omp for schedule(static)
        for (int yy = 0; yy < out_h; yy++) {
            int ymin = wt->bounds[2 * yy], ymax = wt->bounds[2 * yy + 1];
            const int32_t *k = wt->k + (size_t)yy * wt->ksize;
            for (size_t i = 0; i < n; i++)
                acc[i] = half;
            for (int y = 0; y < ymax; y++) {
                const uint8_t *src = in + (size_t)(y + ymin) * n;
                const int32_t ky = k[y];
                for (size_t i = 0; i < n; i++)
                    acc[i] += src[i] * ky;
            }
            uint8_t *dst = out + (size_t)yy * n;
            for (size_t i = 0; i < n; i++)
                dst[i] = clip8(acc[i], wt->prec);
        }
        free(acc);
    }
}

static int check_target(int w, int h, v4r_err *err)
{
    if (w <= 0 || h <= 0 || w > V4R_IMAGE_MAX_SIDE || h > V4R_IMAGE_MAX_SIDE ||
        (long long)w * h > V4R_IMAGE_MAX_PIXELS)
        return v4r_fail(err, V4R_EINPUT, "bad image size %d x %d (1 to %d a side, at most %lld pixels)", w, h,
                        V4R_IMAGE_MAX_SIDE, V4R_IMAGE_MAX_PIXELS);
    return 0;
}

static int check_source(const v4r_image *src, v4r_err *err)
{
    if (!src || !src->px || src->w <= 0 || src->h <= 0)
        return v4r_fail(err, V4R_EINPUT, "empty source image");
    return 0;
}

int v4r_image_resize(const v4r_image *src, int w, int h, int filter_id, v4r_image *dst, v4r_err *err)
{
    memset(dst, 0, sizeof *dst);
    int rc = check_source(src, err);
    if (rc || (rc = check_target(w, h, err)))
        return rc;
    const filter *f;
    switch (filter_id & ~V4R_RESAMPLE_INT16) {
    case V4R_RESAMPLE_BILINEAR: f = &BILINEAR; break;
    case V4R_RESAMPLE_BICUBIC: f = &BICUBIC; break;
    default: return v4r_fail(err, V4R_EINPUT, "unsupported resampling filter %d", filter_id);
    }
    int int16 = (filter_id & V4R_RESAMPLE_INT16) != 0;
    int need_h = w != src->w, need_v = h != src->h;
    if (!need_h && !need_v) {
        v4r_image_alloc(dst, w, h);
        memcpy(dst->px, src->px, (size_t)w * h * 3);
        return 0;
    }
    weights wv = {0}, wh = {0};
    const uint8_t *in = src->px;
    uint8_t *tmp = NULL;
    if (need_v)
        make_weights(src->h, h, f, int16, &wv);
    if (need_h) {
        /* only the rows the vertical pass reads */
        int y0 = 0, y1 = src->h;
        if (need_v) {
            y0 = wv.bounds[0];
            y1 = wv.bounds[2 * h - 2] + wv.bounds[2 * h - 1];
            for (int i = 0; i < h; i++)
                wv.bounds[2 * i] -= y0;
        }
        make_weights(src->w, w, f, int16, &wh);
        tmp = v4r_malloc((size_t)w * (size_t)(y1 - y0) * 3);
        pass_horizontal(src->px, src->w, y0, y1 - y0, tmp, w, &wh);
        free_weights(&wh);
        in = tmp;
    }
    if (need_v) {
        v4r_image_alloc(dst, w, h);
        pass_vertical(in, w, dst->px, h, &wv);
        free_weights(&wv);
        free(tmp);
    } else {
        dst->w = w;
        dst->h = h;
        dst->px = tmp;
    }
    return 0;
}

int v4r_image_crop(const v4r_image *src, int x, int y, int w, int h, v4r_image *dst, v4r_err *err)
{
    memset(dst, 0, sizeof *dst);
    int rc = check_source(src, err);
    if (rc || (rc = check_target(w, h, err)))
        return rc;
    v4r_image_alloc(dst, w, h);
    /* the overlap of [x, x + w) x [y, y + h) with the source, in 64 bits against overflow */
    long long x0 = x < 0 ? 0 : x, x1 = (long long)x + w < src->w ? (long long)x + w : src->w;
    long long y0 = y < 0 ? 0 : y, y1 = (long long)y + h < src->h ? (long long)y + h : src->h;
    for (long long sy = y0; sy < y1 && x0 < x1; sy++)
        memcpy(dst->px + ((size_t)(sy - y) * w + (size_t)(x0 - x)) * 3, src->px + ((size_t)sy * src->w + x0) * 3,
               (size_t)(x1 - x0) * 3);
    return 0;
}

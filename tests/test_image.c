/* image: decoding the fixture images as PIL does (pixel hashes taken from PIL), broken and odd
 * files, PNG variants written here with libpng, WebP through libwebp's encoder; resizing as PIL
 * does (hashes) and CLIP's preprocessing against transformers' pixel values; cropping; PNG and JPEG
 * encoding round trips. */
#include "testutil.h"

#include <unistd.h>

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <webp/encode.h>

#include "vlm4rec/image.h"

/* The decodable fixtures, in file-name order (the order of the goldens), with the size and the
 * FNV-1a hash of the RGB pixels that PIL's Image.open(f).convert("RGB") gives. */
static const struct {
    const char *name;
    int w, h;
    uint64_t hash;
} FIXTURES[] = {
    {"cmyk_360x240.jpg", 360, 240, 0x99e9663d000b52baULL},
    {"gray_400.jpg", 400, 400, 0x6ab596872a02865aULL},
    {"landscape_640x480.jpg", 640, 480, 0x84d6bdbcb6385c09ULL},
    {"odd_333x777.jpg", 333, 777, 0x561c8101c763aad2ULL},
    {"palette_300x200.png", 300, 200, 0x139bafab19496a08ULL},
    {"portrait_300x500.jpg", 300, 500, 0xdcffbcd0eaa63720ULL},
    {"progressive_512x384.jpg", 512, 384, 0x10b03fae57342c86ULL},
    {"rgba_256x320.png", 256, 320, 0x48f23a1272ad43d2ULL},
    {"square_224.jpg", 224, 224, 0x8b98cb5da9600cacULL},
    {"subsampled420_800x600.jpg", 800, 600, 0xfb3f93644c7e5691ULL},
    {"tiny_97x61.png", 97, 61, 0xf54019d9fc3d9e6cULL},
    {"wide_1000x150.jpg", 1000, 150, 0x65969483061c4214ULL},
};
enum { N_FIXTURES = sizeof FIXTURES / sizeof FIXTURES[0] };

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static char *fixture_path(const char *name)
{
    return v4r_sprintf("%s/fixtures/images/%s", tu_shared(), name);
}

static uint8_t *read_fixture(const char *name, size_t *n)
{
    char *path = fixture_path(name), *data;
    v4r_err err = {0};
    assert_int_equal(v4r_read_file(path, &data, n, &err), 0);
    free(path);
    return (uint8_t *)data;
}

/* The size written in a fixture's name: "_WxH." or "_N." for a square. */
static void size_from_name(const char *name, int *w, int *h)
{
    const char *u = strrchr(name, '_');
    assert_non_null(u);
    if (sscanf(u + 1, "%dx%d", w, h) == 2)
        return;
    assert_int_equal(sscanf(u + 1, "%d", w), 1);
    *h = *w;
}

static void test_sniff_and_mime(void **state)
{
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const uint8_t jpg[4] = {0xff, 0xd8, 0xff, 0xe0};
    assert_string_equal(v4r_image_sniff(png, sizeof png), "png");
    assert_string_equal(v4r_image_sniff(jpg, sizeof jpg), "jpeg");
    assert_string_equal(v4r_image_sniff((const uint8_t *)"RIFF\x10\0\0\0WEBPVP8 ", 16), "webp");
    assert_null(v4r_image_sniff((const uint8_t *)"RIFF\x10\0\0\0WAVEfmt ", 16));
    assert_null(v4r_image_sniff(png, 7));
    assert_null(v4r_image_sniff(jpg, 2));
    assert_null(v4r_image_sniff((const uint8_t *)"GIF89a", 6));
    assert_null(v4r_image_sniff(NULL, 0));
    assert_string_equal(v4r_image_mime("png"), "image/png");
    assert_string_equal(v4r_image_mime("jpeg"), "image/jpeg");
    assert_string_equal(v4r_image_mime("webp"), "image/webp");
    assert_null(v4r_image_mime("gif"));
    assert_null(v4r_image_mime(NULL));
    (void)state;
}

static void test_fixtures_decode_as_pil(void **state)
{
    for (int i = 0; i < N_FIXTURES; i++) {
        char *path = fixture_path(FIXTURES[i].name);
        v4r_image img;
        v4r_err err = {0};
        int rc = v4r_image_load(path, &img, &err);
        if (rc)
            fail_msg("%s: %s", FIXTURES[i].name, err.msg);
        int w, h;
        size_from_name(FIXTURES[i].name, &w, &h);
        assert_int_equal(img.w, w);
        assert_int_equal(img.h, h);
        assert_int_equal(img.w, FIXTURES[i].w);
        assert_int_equal(img.h, FIXTURES[i].h);
        uint64_t hash = fnv1a(img.px, (size_t)img.w * img.h * 3);
        if (hash != FIXTURES[i].hash)
            fail_msg("%s: pixels differ from PIL's (hash %016llx)", FIXTURES[i].name, (unsigned long long)hash);
        if (strncmp(FIXTURES[i].name, "gray", 4) == 0)
            for (size_t p = 0; p < (size_t)w * h; p++)
                assert_true(img.px[3 * p] == img.px[3 * p + 1] && img.px[3 * p] == img.px[3 * p + 2]);
        v4r_image_free(&img);
        free(path);
    }
    (void)state;
}

static void test_broken_files(void **state)
{
    v4r_image img;
    v4r_err err = {0};
    char *path = fixture_path("corrupt_truncated.jpg");
    assert_int_equal(v4r_image_load(path, &img, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "corrupt JPEG"));
    assert_non_null(strstr(err.msg, "truncated"));
    assert_null(img.px);
    free(path);

    path = fixture_path("not_an_image.jpg");
    assert_int_equal(v4r_image_load(path, &img, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "not a JPEG, PNG or WebP image"));
    assert_int_equal(strncmp(err.msg, path, strlen(path)), 0);
    free(path);

    path = fixture_path("no_such_image.png");
    assert_int_equal(v4r_image_load(path, &img, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, path));
    free(path);

    assert_int_equal(v4r_image_decode((const uint8_t *)"", 0, NULL, &img, &err), V4R_EINPUT);
    assert_string_equal(err.msg, "empty file");
    assert_int_equal(v4r_image_decode(NULL, 0, "http://x/y.jpg", &img, &err), V4R_EINPUT);
    assert_string_equal(err.msg, "http://x/y.jpg: empty file");
    assert_int_equal(v4r_image_decode((const uint8_t *)"hello", 5, NULL, &img, &err), V4R_EINPUT);
    assert_string_equal(err.msg, "not a JPEG, PNG or WebP image");
    (void)state;
}

/* Every prefix of a good file fails cleanly (no crash, no leak, V4R_EINPUT). */
static void check_prefixes(const char *name, const char *want)
{
    size_t n;
    uint8_t *data = read_fixture(name, &n);
    size_t cuts[] = {3, 8, 12, 40, 100, n / 3, n / 2, n - 200, n - 40};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        v4r_image img;
        v4r_err err = {0};
        int rc = v4r_image_decode(data, cuts[i], "cut", &img, &err);
        if (rc != V4R_EINPUT)
            fail_msg("%s cut at %zu: rc %d (%s)", name, cuts[i], rc, err.msg);
        assert_non_null(strstr(err.msg, want));
        assert_int_equal(strncmp(err.msg, "cut: ", 5), 0);
    }
    free(data);
}

static void test_truncated_and_damaged(void **state)
{
    check_prefixes("landscape_640x480.jpg", "JPEG");
    check_prefixes("progressive_512x384.jpg", "JPEG");
    check_prefixes("rgba_256x320.png", "PNG");
    check_prefixes("palette_300x200.png", "PNG");

    /* damage inside the PNG image data: the checksum catches it */
    size_t n;
    uint8_t *data = read_fixture("tiny_97x61.png", &n);
    data[n / 2] ^= 0x55;
    v4r_image img;
    v4r_err err = {0};
    assert_int_equal(v4r_image_decode(data, n, NULL, &img, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "corrupt PNG: "));
    free(data);

    /* a JPEG signature followed by garbage */
    uint8_t junk[64] = {0xff, 0xd8, 0xff, 0x12, 0x00, 0x04, 0x01, 0x02};
    assert_int_equal(v4r_image_decode(junk, sizeof junk, NULL, &img, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "corrupt JPEG: "));
    (void)state;
}

/* ---- PNG variants, written here ---- */

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} membuf;

static void mem_write(png_structp png, png_bytep data, size_t len)
{
    membuf *m = png_get_io_ptr(png);
    v4r_grow((void **)&m->buf, &m->cap, m->len + len, 1);
    memcpy(m->buf + m->len, data, len);
    m->len += len;
}

static void mem_flush(png_structp png)
{
    (void)png;
}

/* A PNG of the given type from raw rows (rowbytes each), optionally Adam7-interlaced, with an
 * optional palette / tRNS. */
static membuf write_png(int w, int h, int depth, int color, int interlace, const uint8_t *raw, size_t rowbytes,
                        const png_color *pal, int npal, int trns)
{
    membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_int_equal(setjmp(png_jmpbuf(png)), 0);
    png_set_write_fn(png, &m, mem_write, mem_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal)
        png_set_PLTE(png, info, pal, npal);
    if (trns && pal) {
        png_byte alpha[2] = {0, 128};
        png_set_tRNS(png, info, alpha, 2, NULL);
    } else if (trns) {
        png_color_16 c = {0, 1, 2, 3, 1};
        png_set_tRNS(png, info, NULL, 0, &c);
    }
    /* a gamma chunk that must not be applied */
    png_set_gAMA(png, info, 0.8);
    png_write_info(png, info);
    png_bytep *rows = malloc(sizeof *rows * (size_t)h);
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)(raw + (size_t)y * rowbytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return m;
}

static v4r_image decode_ok(const membuf *m)
{
    v4r_image img;
    v4r_err err = {0};
    int rc = v4r_image_decode(m->buf, m->len, "mem", &img, &err);
    if (rc)
        fail_msg("%s", err.msg);
    return img;
}

static void test_png_variants(void **state)
{
    enum { W = 13, H = 9 };
    for (int interlace = 0; interlace < 2; interlace++) {
        /* 16-bit RGB: PIL keeps the high byte */
        uint8_t rgb16[H][W * 6];
        for (int y = 0; y < H; y++)
            for (int i = 0; i < W * 6; i++)
                rgb16[y][i] = (uint8_t)(y * 31 + i * 7 + 3);
        membuf m = write_png(W, H, 16, PNG_COLOR_TYPE_RGB, interlace, &rgb16[0][0], W * 6, NULL, 0, 1);
        v4r_image img = decode_ok(&m);
        assert_int_equal(img.w, W);
        assert_int_equal(img.h, H);
        for (int y = 0; y < H; y++)
            for (int i = 0; i < W * 3; i++)
                assert_int_equal(img.px[(y * W) * 3 + i], rgb16[y][2 * i]);
        v4r_image_free(&img);
        free(m.buf);

        /* 16-bit gray: PIL holds it as integers and clips to 255 when converting */
        uint8_t g16[H][W * 2];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int v = (x + y) % 3 == 0 ? 300 + x : (x * 19 + y) % 256;
                g16[y][2 * x] = (uint8_t)(v >> 8);
                g16[y][2 * x + 1] = (uint8_t)v;
            }
        m = write_png(W, H, 16, PNG_COLOR_TYPE_GRAY, interlace, &g16[0][0], W * 2, NULL, 0, 0);
        img = decode_ok(&m);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int v = (g16[y][2 * x] << 8) | g16[y][2 * x + 1];
                uint8_t want = (uint8_t)(v > 255 ? 255 : v);
                const uint8_t *p = img.px + (y * W + x) * 3;
                assert_true(p[0] == want && p[1] == want && p[2] == want);
            }
        v4r_image_free(&img);
        free(m.buf);

        /* 8-bit gray + alpha: alpha dropped, gray replicated */
        uint8_t ga[H][W * 2];
        for (int y = 0; y < H; y++)
            for (int i = 0; i < W * 2; i++)
                ga[y][i] = (uint8_t)(y * 17 + i * 5);
        m = write_png(W, H, 8, PNG_COLOR_TYPE_GRAY_ALPHA, interlace, &ga[0][0], W * 2, NULL, 0, 0);
        img = decode_ok(&m);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++)
                    assert_int_equal(img.px[(y * W + x) * 3 + c], ga[y][2 * x]);
        v4r_image_free(&img);
        free(m.buf);

        /* 2-bit gray: scaled to 0, 85, 170, 255 */
        uint8_t g2[H][(W * 2 + 7) / 8];
        for (int y = 0; y < H; y++)
            for (size_t i = 0; i < sizeof g2[0]; i++)
                g2[y][i] = (uint8_t)(0x1b + y * 40 + i * 3);
        m = write_png(W, H, 2, PNG_COLOR_TYPE_GRAY, interlace, &g2[0][0], sizeof g2[0], NULL, 0, 1);
        img = decode_ok(&m);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int v = (g2[y][x / 4] >> (6 - 2 * (x % 4))) & 3;
                assert_int_equal(img.px[(y * W + x) * 3 + 1], v * 85);
            }
        v4r_image_free(&img);
        free(m.buf);

        /* 4-bit palette with transparency: colors as they are, tRNS ignored */
        png_color pal[16];
        for (int i = 0; i < 16; i++)
            pal[i] = (png_color){(png_byte)(i * 16), (png_byte)(255 - i * 9), (png_byte)(i * i)};
        uint8_t p4[H][(W + 1) / 2];
        for (int y = 0; y < H; y++)
            for (size_t i = 0; i < sizeof p4[0]; i++)
                p4[y][i] = (uint8_t)(y * 37 + i * 11);
        m = write_png(W, H, 4, PNG_COLOR_TYPE_PALETTE, interlace, &p4[0][0], sizeof p4[0], pal, 16, 1);
        img = decode_ok(&m);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int idx = (p4[y][x / 2] >> (x % 2 ? 0 : 4)) & 15;
                const uint8_t *p = img.px + (y * W + x) * 3;
                assert_true(p[0] == pal[idx].red && p[1] == pal[idx].green && p[2] == pal[idx].blue);
            }
        v4r_image_free(&img);
        free(m.buf);
    }
    (void)state;
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A PNG that is only a signature and an IHDR claiming w x h. */
static size_t png_header(uint8_t *buf, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(buf, sig, 8);
    put32(buf + 8, 13);
    memcpy(buf + 12, "IHDR", 4);
    put32(buf + 16, w);
    put32(buf + 20, h);
    buf[24] = 8;
    buf[25] = 2;
    buf[26] = buf[27] = buf[28] = 0;
    put32(buf + 29, crc32_of(buf + 12, 17));
    return 33;
}

static void test_absurd_sizes(void **state)
{
    uint8_t buf[64];
    v4r_image img;
    v4r_err err = {0};
    size_t n = png_header(buf, 70000, 10);
    assert_int_equal(v4r_image_decode(buf, n, NULL, &img, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "too large"));
    n = png_header(buf, 60000, 60000);
    assert_int_equal(v4r_image_decode(buf, n, NULL, &img, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "too large"));
    /* a sane header with no image data after it */
    n = png_header(buf, 100, 100);
    assert_int_equal(v4r_image_decode(buf, n, NULL, &img, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "corrupt PNG"));
    (void)state;
}

static void test_webp(void **state)
{
    enum { W = 31, H = 17 };
    uint8_t rgba[H * W * 4];
    for (int i = 0; i < H * W; i++) {
        rgba[4 * i] = (uint8_t)(i * 7);
        rgba[4 * i + 1] = (uint8_t)(i * 3 + 50);
        rgba[4 * i + 2] = (uint8_t)(255 - i);
        rgba[4 * i + 3] = (uint8_t)(1 + i % 255); /* never fully transparent: colors are kept */
    }
    uint8_t *out = NULL;
    size_t n = WebPEncodeLosslessRGBA(rgba, W, H, W * 4, &out);
    assert_true(n > 0);
    assert_string_equal(v4r_image_sniff(out, n), "webp");
    v4r_image img;
    v4r_err err = {0};
    assert_int_equal(v4r_image_decode(out, n, NULL, &img, &err), 0);
    assert_int_equal(img.w, W);
    assert_int_equal(img.h, H);
    for (int i = 0; i < H * W; i++)
        assert_memory_equal(img.px + 3 * i, rgba + 4 * i, 3);
    v4r_image_free(&img);
    assert_int_equal(v4r_image_decode(out, n / 2, "w.webp", &img, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "w.webp: corrupt WebP"));
    out[20] ^= 0xff;
    out[n - 5] ^= 0xff;
    int rc = v4r_image_decode(out, n, NULL, &img, &err);
    if (rc == 0)
        v4r_image_free(&img); /* damage libwebp can live with */
    else
        assert_int_equal(rc, V4R_EINPUT);
    WebPFree(out);
    (void)state;
}

/* ---- resize and crop ---- */

static v4r_image make_image(int w, int h, unsigned seed)
{
    v4r_image img = {w, h, v4r_malloc((size_t)w * h * 3)};
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        seed = seed * 1103515245u + 12345u;
        img.px[i] = (uint8_t)(seed >> 16);
    }
    return img;
}

static v4r_image resized(const v4r_image *src, int w, int h, int filter)
{
    v4r_image out;
    v4r_err err = {0};
    int rc = v4r_image_resize(src, w, h, filter, &out, &err);
    if (rc)
        fail_msg("resize to %dx%d: %s", w, h, err.msg);
    assert_int_equal(out.w, w);
    assert_int_equal(out.h, h);
    return out;
}

static const int FILTERS[] = {V4R_RESAMPLE_BILINEAR, V4R_RESAMPLE_BICUBIC,
                              V4R_RESAMPLE_BILINEAR | V4R_RESAMPLE_INT16, V4R_RESAMPLE_BICUBIC | V4R_RESAMPLE_INT16};

static void test_resize_identity_and_sizes(void **state)
{
    v4r_image src = make_image(37, 23, 1);
    for (size_t f = 0; f < sizeof FILTERS / sizeof FILTERS[0]; f++) {
        v4r_image same = resized(&src, 37, 23, FILTERS[f]);
        assert_memory_equal(same.px, src.px, 37 * 23 * 3);
        v4r_image_free(&same);
        static const int sizes[][2] = {{80, 51}, {5, 3}, {1, 1}, {37, 100}, {200, 23}, {12, 40}, {1, 23}};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            v4r_image r = resized(&src, sizes[i][0], sizes[i][1], FILTERS[f]);
            v4r_image_free(&r);
        }
    }
    v4r_image out;
    v4r_err err = {0};
    assert_int_equal(v4r_image_resize(&src, 0, 5, V4R_RESAMPLE_BICUBIC, &out, &err), V4R_EINPUT);
    assert_int_equal(v4r_image_resize(&src, 70000, 5, V4R_RESAMPLE_BICUBIC, &out, &err), V4R_EINPUT);
    assert_int_equal(v4r_image_resize(&src, 5, 5, 1, &out, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "filter"));
    v4r_image_free(&src);
    (void)state;
}

static void test_resize_constant_stays_constant(void **state)
{
    static const uint8_t values[] = {0, 1, 77, 128, 254, 255};
    for (size_t v = 0; v < sizeof values; v++) {
        v4r_image src = {41, 29, v4r_malloc(41 * 29 * 3)};
        memset(src.px, values[v], 41 * 29 * 3);
        for (size_t f = 0; f < sizeof FILTERS / sizeof FILTERS[0]; f++) {
            static const int sizes[][2] = {{100, 70}, {7, 5}, {41, 3}, {300, 29}, {2, 200}};
            for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
                v4r_image r = resized(&src, sizes[i][0], sizes[i][1], FILTERS[f]);
                for (size_t p = 0; p < (size_t)r.w * r.h * 3; p++)
                    if (r.px[p] != values[v])
                        fail_msg("constant %d, filter %d, %dx%d: %d at %zu", values[v], FILTERS[f], r.w, r.h,
                                 r.px[p], p);
                v4r_image_free(&r);
            }
        }
        v4r_image_free(&src);
    }
    (void)state;
}

static void test_resize_small_cases(void **state)
{
    /* two pixels to one: each weighs half, and PIL rounds half up */
    uint8_t px[6] = {10, 0, 255, 21, 255, 0};
    v4r_image src = {2, 1, px};
    v4r_image r = resized(&src, 1, 1, V4R_RESAMPLE_BILINEAR);
    assert_int_equal(r.px[0], 16);
    assert_int_equal(r.px[1], 128);
    assert_int_equal(r.px[2], 128);
    v4r_image_free(&r);
    /* bicubic overshoot is clipped to 0..255 */
    uint8_t step[3 * 8];
    for (int i = 0; i < 8; i++)
        step[3 * i] = step[3 * i + 1] = step[3 * i + 2] = i < 4 ? 0 : 255;
    src = (v4r_image){8, 1, step};
    r = resized(&src, 32, 1, V4R_RESAMPLE_BICUBIC);
    static const uint8_t want[32] = {0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   21,  88,
                                     167, 234, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255};
    for (int i = 0; i < 32; i++)
        assert_int_equal(r.px[3 * i], want[i]); /* -18.7 at 12 and 273.7 at 19 before clipping */
    v4r_image_free(&r);
    (void)state;
}

/* Hashes of PIL's Image.resize on decoded fixtures. */
static void test_resize_matches_pil(void **state)
{
    static const struct {
        const char *name;
        int w, h, filter;
        uint64_t hash;
    } cases[] = {
        {"tiny_97x61.png", 356, 224, V4R_RESAMPLE_BICUBIC, 0xa58bd0fc372d1e8fULL},
        {"tiny_97x61.png", 50, 30, V4R_RESAMPLE_BILINEAR, 0xdd81f5ae6532e0e4ULL},
        {"wide_1000x150.jpg", 33, 7, V4R_RESAMPLE_BICUBIC, 0x867ba660f57a76a9ULL},
        {"odd_333x777.jpg", 17, 1000, V4R_RESAMPLE_BILINEAR, 0xf08bfe09920e91d7ULL},
        {"cmyk_360x240.jpg", 400, 300, V4R_RESAMPLE_BILINEAR, 0x8bec6295124e5c57ULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = fixture_path(cases[i].name);
        v4r_image img;
        v4r_err err = {0};
        assert_int_equal(v4r_image_load(path, &img, &err), 0);
        v4r_image r = resized(&img, cases[i].w, cases[i].h, cases[i].filter);
        uint64_t hash = fnv1a(r.px, (size_t)r.w * r.h * 3);
        if (hash != cases[i].hash)
            fail_msg("%s to %dx%d: differs from PIL (hash %016llx)", cases[i].name, cases[i].w, cases[i].h,
                     (unsigned long long)hash);
        v4r_image_free(&r);
        v4r_image_free(&img);
        free(path);
    }
    (void)state;
}

/* Thread count must not change a result. */
static void test_resize_deterministic(void **state)
{
    v4r_image src = make_image(640, 480, 7);
    v4r_image a = resized(&src, 300, 1000, V4R_RESAMPLE_BICUBIC);
    v4r_image b = resized(&src, 300, 1000, V4R_RESAMPLE_BICUBIC);
    assert_memory_equal(a.px, b.px, (size_t)a.w * a.h * 3);
    v4r_image_free(&a);
    v4r_image_free(&b);
    v4r_image_free(&src);
    (void)state;
}

static void test_crop(void **state)
{
    v4r_image src = make_image(10, 8, 3), c;
    v4r_err err = {0};
    assert_int_equal(v4r_image_crop(&src, 2, 3, 5, 4, &c, &err), 0);
    assert_int_equal(c.w, 5);
    assert_int_equal(c.h, 4);
    for (int y = 0; y < 4; y++)
        assert_memory_equal(c.px + y * 5 * 3, src.px + ((y + 3) * 10 + 2) * 3, 5 * 3);
    v4r_image_free(&c);
    /* partly outside: zeros there, as PIL */
    assert_int_equal(v4r_image_crop(&src, -2, -1, 14, 10, &c, &err), 0);
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 14; x++) {
            const uint8_t *p = c.px + (y * 14 + x) * 3;
            int sx = x - 2, sy = y - 1;
            if (sx >= 0 && sx < 10 && sy >= 0 && sy < 8)
                assert_memory_equal(p, src.px + (sy * 10 + sx) * 3, 3);
            else
                assert_true(p[0] == 0 && p[1] == 0 && p[2] == 0);
        }
    v4r_image_free(&c);
    /* wholly outside */
    assert_int_equal(v4r_image_crop(&src, 100, -50, 3, 3, &c, &err), 0);
    for (int i = 0; i < 27; i++)
        assert_int_equal(c.px[i], 0);
    v4r_image_free(&c);
    assert_int_equal(v4r_image_crop(&src, 0, 0, 0, 3, &c, &err), V4R_EINPUT);
    v4r_image_free(&src);
    (void)state;
}

/* ---- CLIP preprocessing against transformers' pixel values ---- */

/* Reads a C-order little-endian float32 .npy of any rank (the project's reader takes 1-D or 2-D). */
static float *read_npy_f32(const char *path, size_t *shape, int *ndim)
{
    size_t n;
    char *data;
    v4r_err err = {0};
    assert_int_equal(v4r_read_file(path, &data, &n, &err), 0);
    assert_true(n > 10 && memcmp(data, "\x93NUMPY", 6) == 0);
    size_t hlen = data[6] == 1 ? (uint8_t)data[8] | (size_t)(uint8_t)data[9] << 8
                               : (uint8_t)data[8] | (size_t)(uint8_t)data[9] << 8 | (size_t)(uint8_t)data[10] << 16;
    size_t off = (data[6] == 1 ? 10 : 12) + hlen;
    char *hdr = v4r_strndup(data + (data[6] == 1 ? 10 : 12), hlen);
    assert_non_null(strstr(hdr, "'<f4'"));
    assert_non_null(strstr(hdr, "'fortran_order': False"));
    const char *p = strchr(strstr(hdr, "'shape'"), '(') + 1;
    size_t total = 1;
    *ndim = 0;
    while (*p && *p != ')') {
        char *end;
        shape[*ndim] = strtoul(p, &end, 10);
        total *= shape[(*ndim)++];
        p = end;
        while (*p == ',' || *p == ' ')
            p++;
    }
    assert_int_equal(n, off + total * 4);
    float *out = v4r_malloc(total * 4);
    memcpy(out, data + off, total * 4);
    free(hdr);
    free(data);
    return out;
}

/* CLIPImageProcessor: shortest side to `size` (the other int(size * long / short)), bicubic, center
 * crop size x size with top = (h - size) // 2, then rescale and normalize fused as its torch path
 * does, in float32: (v - mean * 255) / (std * 255); channels first. */
static void clip_preprocess(const v4r_image *img, int size, int filter, float *out)
{
    static const double mean[3] = {0.48145466, 0.4578275, 0.40821073};
    static const double stdv[3] = {0.26862954, 0.26130258, 0.27577711};
    int w, h;
    if (img->w <= img->h) {
        w = size;
        h = (int)((long long)size * img->h / img->w);
    } else {
        h = size;
        w = (int)((long long)size * img->w / img->h);
    }
    v4r_image r = resized(img, w, h, filter), c;
    v4r_err err = {0};
    assert_int_equal(v4r_image_crop(&r, (w - size) / 2, (h - size) / 2, size, size, &c, &err), 0);
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < size * size; i++) {
            float m = (float)mean[ch] * 255.0f, s = (float)stdv[ch] * 255.0f;
            out[(size_t)ch * size * size + i] = ((float)c.px[3 * i + ch] - m) / s;
        }
    v4r_image_free(&r);
    v4r_image_free(&c);
}

/* Compares one golden; returns the worst max abs diff and fills per-image numbers. */
static void check_golden(const char *model, int size)
{
    char *path = v4r_sprintf("%s/fixtures/goldens/%s.pixel_values.npy", tu_shared(), model);
    if (!v4r_file_exists(path)) {
        print_message("%s: no pixel_values golden, skipped\n", model);
        free(path);
        return;
    }
    size_t shape[8];
    int ndim;
    float *gold = read_npy_f32(path, shape, &ndim);
    assert_int_equal(ndim, 4);
    assert_int_equal(shape[0], N_FIXTURES);
    assert_int_equal(shape[1], 3);
    assert_int_equal(shape[2], size);
    assert_int_equal(shape[3], size);
    size_t per = (size_t)3 * size * size;
    float *mine = v4r_malloc(per * sizeof *mine);
    static const double stdv[3] = {0.26862954, 0.26130258, 0.27577711};
    for (int i = 0; i < N_FIXTURES; i++) {
        char *img_path = fixture_path(FIXTURES[i].name);
        v4r_image img;
        v4r_err err = {0};
        assert_int_equal(v4r_image_load(img_path, &img, &err), 0);
        /* transformers' resize gives the 16-bit-weight result; PIL's own is within a level or two */
        for (int variant = 0; variant < 2; variant++) {
            int filter = V4R_RESAMPLE_BICUBIC | (variant == 0 ? V4R_RESAMPLE_INT16 : 0);
            clip_preprocess(&img, size, filter, mine);
            double max = 0, sum = 0;
            for (size_t k = 0; k < per; k++) {
                double d = fabs((double)mine[k] - gold[i * per + k]);
                sum += d;
                if (d > max)
                    max = d;
                assert_true(d <= 2.0 / 255.0 / stdv[k / ((size_t)size * size)] + 1e-5);
            }
            double mean = sum / per;
            print_message("%s %-26s %s: max abs diff %.3g, mean %.3g\n", model, FIXTURES[i].name,
                          variant == 0 ? "16-bit weights" : "PIL weights   ", max, mean);
            assert_true(mean < 1e-4);
            if (variant == 0)
                assert_true(max == 0); /* the same bytes and the same float arithmetic */
        }
        v4r_image_free(&img);
        free(img_path);
    }
    free(mine);
    free(gold);
    free(path);
}

static void test_clip_preprocess_goldens(void **state)
{
    check_golden("clip-vision-tiny-224", 224);
    check_golden("clip-vision-tiny-336", 336);
    (void)state;
}

/* ---- encoding ---- */

static void test_encode_png_roundtrip(void **state)
{
    char *path = fixture_path("odd_333x777.jpg");
    v4r_image img, back;
    v4r_err err = {0};
    assert_int_equal(v4r_image_load(path, &img, &err), 0);
    uint8_t *png;
    size_t n;
    assert_int_equal(v4r_image_encode_png(&img, &png, &n, &err), 0);
    assert_string_equal(v4r_image_sniff(png, n), "png");
    assert_int_equal(v4r_image_decode(png, n, NULL, &back, &err), 0);
    assert_int_equal(back.w, img.w);
    assert_int_equal(back.h, img.h);
    assert_memory_equal(back.px, img.px, (size_t)img.w * img.h * 3);
    v4r_image_free(&back);
    free(png);
    v4r_image one = {1, 1, (uint8_t[]){1, 2, 3}};
    assert_int_equal(v4r_image_encode_png(&one, &png, &n, &err), 0);
    assert_int_equal(v4r_image_decode(png, n, NULL, &back, &err), 0);
    assert_memory_equal(back.px, one.px, 3);
    v4r_image_free(&back);
    free(png);
    v4r_image_free(&img);
    free(path);
    (void)state;
}

static double mean_abs_diff(const v4r_image *a, const v4r_image *b)
{
    double s = 0;
    size_t n = (size_t)a->w * a->h * 3;
    for (size_t i = 0; i < n; i++)
        s += abs((int)a->px[i] - (int)b->px[i]);
    return s / n;
}

static void test_encode_jpeg_roundtrip(void **state)
{
    static const char *names[] = {"landscape_640x480.jpg", "gray_400.jpg", "portrait_300x500.jpg", "rgba_256x320.png"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *path = fixture_path(names[i]);
        v4r_image img, back;
        v4r_err err = {0};
        assert_int_equal(v4r_image_load(path, &img, &err), 0);
        size_t prev_n = 0;
        static const int qualities[] = {50, 90, 100};
        for (size_t q = 0; q < 3; q++) {
            uint8_t *jpg;
            size_t n;
            assert_int_equal(v4r_image_encode_jpeg(&img, qualities[q], &jpg, &n, &err), 0);
            assert_string_equal(v4r_image_sniff(jpg, n), "jpeg");
            assert_int_equal(v4r_image_decode(jpg, n, NULL, &back, &err), 0);
            assert_int_equal(back.w, img.w);
            assert_int_equal(back.h, img.h);
            double d = mean_abs_diff(&img, &back);
            print_message("%s at quality %d: %zu bytes, mean abs diff %.2f\n", names[i], qualities[q], n, d);
            assert_true(d < (qualities[q] >= 90 ? 7.0 : 10.0)); /* sharp color edges lose to 4:2:0 */
            assert_true(n > prev_n);                          /* better quality, more bytes */
            prev_n = n;
            v4r_image_free(&back);
            free(jpg);
        }
        v4r_image_free(&img);
        free(path);
    }
    (void)state;
}

static void test_encode_jpeg_smooth(void **state)
{
    enum { W = 160, H = 120 };
    v4r_image img = {W, H, v4r_malloc(W * H * 3)}, back;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = img.px + (y * W + x) * 3;
            p[0] = (uint8_t)(x * 255 / W);
            p[1] = (uint8_t)(y * 255 / H);
            p[2] = (uint8_t)(128 + 100 * sin(x * 0.05 + y * 0.03));
        }
    uint8_t *jpg;
    size_t n;
    v4r_err err = {0};
    assert_int_equal(v4r_image_encode_jpeg(&img, 90, &jpg, &n, &err), 0);
    assert_int_equal(v4r_image_decode(jpg, n, NULL, &back, &err), 0);
    double d = mean_abs_diff(&img, &back);
    print_message("smooth %dx%d at quality 90: %zu bytes, mean abs diff %.2f\n", W, H, n, d);
    assert_true(d < 1.5);
    v4r_image_free(&back);
    v4r_image_free(&img);
    free(jpg);
    (void)state;
}

static void test_encode_errors(void **state)
{
    v4r_image img = make_image(8, 8, 5), empty = {0};
    uint8_t *out = (uint8_t *)"x";
    size_t n = 1;
    v4r_err err = {0};
    assert_int_equal(v4r_image_encode_jpeg(&img, 0, &out, &n, &err), V4R_EUSAGE);
    assert_null(out);
    assert_int_equal(n, 0);
    assert_int_equal(v4r_image_encode_jpeg(&img, 101, &out, &n, &err), V4R_EUSAGE);
    assert_int_equal(v4r_image_encode_jpeg(&empty, 90, &out, &n, &err), V4R_EINPUT);
    assert_int_equal(v4r_image_encode_png(&empty, &out, &n, &err), V4R_EINPUT);
    /* the smallest image, and an odd-sized one, through 4:2:0 */
    v4r_image odd = make_image(1, 1, 9);
    assert_int_equal(v4r_image_encode_jpeg(&odd, 75, &out, &n, &err), 0);
    free(out);
    v4r_image_free(&odd);
    odd = make_image(17, 3, 9);
    assert_int_equal(v4r_image_encode_jpeg(&odd, 75, &out, &n, &err), 0);
    v4r_image back;
    assert_int_equal(v4r_image_decode(out, n, NULL, &back, &err), 0);
    assert_int_equal(back.w, 17);
    assert_int_equal(back.h, 3);
    v4r_image_free(&back);
    free(out);
    v4r_image_free(&odd);
    v4r_image_free(&img);
    (void)state;
}

/* A file over the size limit is refused before it is read (a sparse file: no disk is used). */
static void test_file_size_limit(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *path = v4r_path_join(dir, "huge.png");
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(ftruncate(fileno(fp), (off_t)V4R_IMAGE_MAX_FILE_BYTES + 1), 0);
    fclose(fp);
    v4r_image img;
    v4r_err err = {0};
    assert_int_equal(v4r_image_load(path, &img, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "over the limit"));
    assert_non_null(strstr(err.msg, "huge.png"));
    free(path);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sniff_and_mime),
        cmocka_unit_test(test_fixtures_decode_as_pil),
        cmocka_unit_test(test_broken_files),
        cmocka_unit_test(test_file_size_limit),
        cmocka_unit_test(test_truncated_and_damaged),
        cmocka_unit_test(test_png_variants),
        cmocka_unit_test(test_absurd_sizes),
        cmocka_unit_test(test_webp),
        cmocka_unit_test(test_resize_identity_and_sizes),
        cmocka_unit_test(test_resize_constant_stays_constant),
        cmocka_unit_test(test_resize_small_cases),
        cmocka_unit_test(test_resize_matches_pil),
        cmocka_unit_test(test_resize_deterministic),
        cmocka_unit_test(test_crop),
        cmocka_unit_test(test_clip_preprocess_goldens),
        cmocka_unit_test(test_encode_png_roundtrip),
        cmocka_unit_test(test_encode_jpeg_roundtrip),
        cmocka_unit_test(test_encode_jpeg_smooth),
        cmocka_unit_test(test_encode_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The stand-in server's image description: plain English written from pixel statistics only (the
 * background from the border, a foreground mask, colors named from a small palette, the mask's
 * size, outline, openings and symmetry, brightness and texture). It is not a vision-language model:
 * it sees no objects, only where the pixels differ from the background and how. Deterministic:
 * the same pixels always give the same text, and the exact figures it quotes (coverage, extent,
 * mean color) keep the texts of different images apart. docs/standin.md lists the rules. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/ground.h"

/* Statistics run on at most this many pixels a side (larger images are box-averaged down). */
#define WORK_SIDE 256

/* ---- colors ---- */

typedef struct {
    const char *name;
    uint8_t rgb[3];
} palette_color;

/* Typical sRGB values of common color names; a pixel takes the nearest in CIELAB. */
static const palette_color palette[] = {
    {"black", {25, 25, 25}},       {"white", {248, 248, 248}},  {"gray", {128, 128, 128}},
    {"red", {200, 30, 40}},        {"maroon", {115, 20, 35}},   {"pink", {240, 140, 170}},
    {"orange", {240, 130, 30}},    {"yellow", {240, 210, 50}},  {"olive", {110, 110, 40}},
    {"green", {40, 140, 60}},      {"teal", {20, 128, 128}},    {"sky blue", {130, 190, 235}},
    {"blue", {40, 90, 200}},       {"navy", {20, 30, 90}},      {"purple", {120, 50, 150}},
    {"brown", {120, 75, 40}},      {"beige", {220, 200, 160}},
};
#define NPAL ((int)(sizeof palette / sizeof palette[0]))

static double srgb_linear(double c)
{
    c /= 255.0;
    return c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4);
}

static double lab_f(double t) { return t > 216.0 / 24389.0 ? cbrt(t) : (24389.0 / 27.0 * t + 16.0) / 116.0; }

/* sRGB (D65) to CIELAB. */
static void rgb_to_lab(const uint8_t *p, float lab[3])
{
    double r = srgb_linear(p[0]), g = srgb_linear(p[1]), b = srgb_linear(p[2]);
    double x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047;
    double y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b;
    double z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883;
    double fx = lab_f(x), fy = lab_f(y), fz = lab_f(z);
    lab[0] = (float)(116.0 * fy - 16.0);
    lab[1] = (float)(500.0 * (fx - fy));
    lab[2] = (float)(200.0 * (fy - fz));
}

static float lab_dist(const float *a, const float *b)
{
    float d0 = a[0] - b[0], d1 = a[1] - b[1], d2 = a[2] - b[2];
    return sqrtf(d0 * d0 + d1 * d1 + d2 * d2);
}

static int nearest_color(const float *lab, float pal_lab[][3])
{
    int best = 0;
    float bd = INFINITY;
    for (int i = 0; i < NPAL; i++) {
        float d = lab_dist(lab, pal_lab[i]);
        if (d < bd)
            bd = d, best = i;
    }
    return best;
}

/* ---- text ---- */

typedef struct {
    char *s;
    size_t n, cap;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    v4r_grow((void **)&t->s, &t->cap, t->n + (size_t)need + 1, 1);
    va_start(ap, fmt);
    vsnprintf(t->s + t->n, (size_t)need + 1, fmt, ap);
    va_end(ap);
    t->n += (size_t)need;
}

static const char *article(const char *word) { return strchr("aeiouAEIOU", word[0]) ? "an" : "a"; }

static int pct(double f) { return (int)lround(100.0 * f); }

/* ---- the working image ---- */

typedef struct {
    int w, h;
    int f;            /* working pixel = f x f image pixels */
    int img_w, img_h; /* the image's size */
    uint8_t *rgb; /* w * h * 3 */
    float *lab;   /* w * h * 3 */
    float pal_lab[NPAL][3];
} work;

/* Box-averages img down to at most WORK_SIDE a side (an integer factor) and converts to Lab. */
static void work_init(work *k, const v4r_image *img)
{
    int side = img->w > img->h ? img->w : img->h;
    int f = (side + WORK_SIDE - 1) / WORK_SIDE;
    if (f < 1)
        f = 1;
    k->f = f;
    k->img_w = img->w;
    k->img_h = img->h;
    k->w = (img->w + f - 1) / f;
    k->h = (img->h + f - 1) / f;
    size_t n = (size_t)k->w * (size_t)k->h;
    k->rgb = v4r_malloc(n * 3);
    k->lab = v4r_malloc(n * 3 * sizeof(float));
    for (int y = 0; y < k->h; y++)
        for (int x = 0; x < k->w; x++) {
            unsigned sum[3] = {0, 0, 0}, cnt = 0;
            for (int yy = y * f; yy < (y + 1) * f && yy < img->h; yy++)
                for (int xx = x * f; xx < (x + 1) * f && xx < img->w; xx++) {
                    const uint8_t *p = img->px + ((size_t)yy * (size_t)img->w + (size_t)xx) * 3;
                    sum[0] += p[0], sum[1] += p[1], sum[2] += p[2];
                    cnt++;
                }
            uint8_t *q = k->rgb + ((size_t)y * (size_t)k->w + (size_t)x) * 3;
            for (int c = 0; c < 3; c++)
                q[c] = (uint8_t)((sum[c] + cnt / 2) / cnt);
        }
    for (size_t i = 0; i < n; i++)
        rgb_to_lab(k->rgb + i * 3, k->lab + i * 3);
    for (int i = 0; i < NPAL; i++)
        rgb_to_lab(palette[i].rgb, k->pal_lab[i]);
}

static void work_free(work *k)
{
    free(k->rgb);
    free(k->lab);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Color statistics over the pixels where sel is set (all when sel is NULL). */
typedef struct {
    size_t n;
    size_t counts[NPAL];
    int order[NPAL]; /* palette indices by count, most first */
    uint8_t mean[3];
    double mean_l;
    double texture; /* share of neighboring selected pairs whose lightness differs by more than 6 */
} color_stats;

static void color_stats_of(const work *k, const uint8_t *sel, color_stats *cs)
{
    memset(cs, 0, sizeof *cs);
    size_t n = (size_t)k->w * (size_t)k->h;
    double sum[3] = {0, 0, 0}, suml = 0;
    size_t pairs = 0, rough = 0;
    for (size_t i = 0; i < n; i++) {
        if (sel && !sel[i])
            continue;
        cs->n++;
        cs->counts[nearest_color(k->lab + i * 3, (float(*)[3])k->pal_lab)]++;
        for (int c = 0; c < 3; c++)
            sum[c] += k->rgb[i * 3 + c];
        suml += k->lab[i * 3];
        int x = (int)(i % (size_t)k->w), y = (int)(i / (size_t)k->w);
        size_t nb[2] = {i + 1, i + (size_t)k->w};
        int ok[2] = {x + 1 < k->w, y + 1 < k->h};
        for (int j = 0; j < 2; j++)
            if (ok[j] && (!sel || sel[nb[j]])) {
                pairs++;
                rough += fabsf(k->lab[i * 3] - k->lab[nb[j] * 3]) > 6.0f;
            }
    }
    for (int i = 0; i < NPAL; i++)
        cs->order[i] = i;
    for (int i = 1; i < NPAL; i++) /* insertion sort, stable: ties keep palette order */
        for (int j = i; j > 0 && cs->counts[cs->order[j]] > cs->counts[cs->order[j - 1]]; j--) {
            int t = cs->order[j];
            cs->order[j] = cs->order[j - 1];
            cs->order[j - 1] = t;
        }
    if (cs->n) {
        for (int c = 0; c < 3; c++)
            cs->mean[c] = (uint8_t)lround(sum[c] / (double)cs->n);
        cs->mean_l = suml / (double)cs->n;
    }
    cs->texture = pairs ? (double)rough / (double)pairs : 0;
}

static double share(const color_stats *cs, int rank)
{
    return cs->n ? (double)cs->counts[cs->order[rank]] / (double)cs->n : 0;
}

static const char *tones(double l) { return l < 35 ? "dark" : l > 70 ? "light" : "medium"; }

static const char *surface(double texture)
{
    return texture < 0.05 ? "smooth and even" : texture < 0.2 ? "lightly textured" : "detailed, with a lot of texture";
}

/* ---- the background and the foreground mask ---- */

typedef struct {
    uint8_t rgb[3];
    float lab[3];
    float spread; /* 75th percentile of the border's distance to the background color */
    float threshold;
} background;

static void find_background(const work *k, background *bg)
{
    int bw = (k->w < k->h ? k->w : k->h) / 16;
    if (bw < 1)
        bw = 1;
    size_t hist[3][256];
    memset(hist, 0, sizeof hist);
    size_t nb = 0;
    for (int y = 0; y < k->h; y++)
        for (int x = 0; x < k->w; x++) {
            if (x >= bw && x < k->w - bw && y >= bw && y < k->h - bw)
                continue;
            const uint8_t *p = k->rgb + ((size_t)y * (size_t)k->w + (size_t)x) * 3;
            for (int c = 0; c < 3; c++)
                hist[c][p[c]]++;
            nb++;
        }
    for (int c = 0; c < 3; c++) {
        size_t acc = 0;
        int v = 0;
        while (v < 255 && (acc += hist[c][v]) * 2 < nb)
            v++;
        bg->rgb[c] = (uint8_t)v;
    }
    rgb_to_lab(bg->rgb, bg->lab);
    float *d = v4r_malloc(nb * sizeof(float));
    size_t j = 0;
    for (int y = 0; y < k->h; y++)
        for (int x = 0; x < k->w; x++) {
            if (x >= bw && x < k->w - bw && y >= bw && y < k->h - bw)
                continue;
            d[j++] = lab_dist(k->lab + ((size_t)y * (size_t)k->w + (size_t)x) * 3, bg->lab);
        }
    qsort(d, nb, sizeof(float), cmp_float);
    bg->spread = d[(nb * 3) / 4];
    free(d);
    bg->threshold = 2.0f * bg->spread + 2.0f;
    if (bg->threshold < 4.0f)
        bg->threshold = 4.0f;
}

/* ---- shape ---- */

typedef struct {
    size_t fg;
    int x0, x1, y0, y1;      /* bounding box, inclusive */
    double cx, cy;           /* centroid */
    double thirds[3];        /* mean row extent in the top, middle and bottom thirds of the box */
    double symmetry;         /* IoU of the mask and its mirror image about the box's center line */
    size_t hole_area;        /* background pixels enclosed by the mask */
    int center_open;         /* the box's center is an enclosed opening */
    int parts;               /* connected pieces of at least 3% of the mask */
    int level;               /* depth of the core pixels the colors are taken from */
} shape_stats;

/* City-block distance of each mask pixel to the nearest background pixel (outside counts as
 * background), in two passes. */
static void depth_map(const uint8_t *mask, int w, int h, int *d)
{
    int big = w + h + 2;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * (size_t)w + (size_t)x;
            if (!mask[i]) {
                d[i] = 0;
                continue;
            }
            int up = y ? d[i - (size_t)w] : 0, left = x ? d[i - 1] : 0;
            int v = up < left ? up : left;
            d[i] = v + 1 < big ? v + 1 : big;
        }
    for (int y = h - 1; y >= 0; y--)
        for (int x = w - 1; x >= 0; x--) {
            size_t i = (size_t)y * (size_t)w + (size_t)x;
            if (!mask[i])
                continue;
            int down = y + 1 < h ? d[i + (size_t)w] : 0, right = x + 1 < w ? d[i + 1] : 0;
            int v = (down < right ? down : right) + 1;
            if (v < d[i])
                d[i] = v;
        }
}

/* Marks (in seen) the pixels equal to want in mask that connect to the seeds already pushed;
 * 8-connected when diag, else 4-connected. Returns how many were marked. */
static size_t flood(const uint8_t *mask, uint8_t want, int w, int h, uint8_t *seen, size_t *stack, size_t top,
                    int diag)
{
    size_t count = top;
    while (top) {
        size_t i = stack[--top];
        int x = (int)(i % (size_t)w), y = (int)(i / (size_t)w);
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                if ((!dx && !dy) || (!diag && dx && dy))
                    continue;
                int nx = x + dx, ny = y + dy;
                if (nx < 0 || ny < 0 || nx >= w || ny >= h)
                    continue;
                size_t j = (size_t)ny * (size_t)w + (size_t)nx;
                if (seen[j] || mask[j] != want)
                    continue;
                seen[j] = 1;
                stack[top++] = j;
                count++;
            }
    }
    return count;
}

static void shape_of(const uint8_t *mask, int w, int h, shape_stats *st)
{
    size_t n = (size_t)w * (size_t)h;
    memset(st, 0, sizeof *st);
    st->x0 = w, st->y0 = h, st->x1 = -1, st->y1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (mask[(size_t)y * (size_t)w + (size_t)x]) {
                st->fg++;
                st->cx += x;
                st->cy += y;
                st->x0 = x < st->x0 ? x : st->x0;
                st->x1 = x > st->x1 ? x : st->x1;
                st->y0 = y < st->y0 ? y : st->y0;
                st->y1 = y > st->y1 ? y : st->y1;
            }
    if (st->fg)
        st->cx /= (double)st->fg, st->cy /= (double)st->fg;
    /* width profile: each row's extent (leftmost to rightmost mask pixel), averaged by thirds */
    int bh = st->y1 - st->y0 + 1;
    double sum[3] = {0, 0, 0};
    int rows[3] = {0, 0, 0};
    for (int y = st->y0; y <= st->y1; y++) {
        int l = -1, r = -1;
        for (int x = st->x0; x <= st->x1; x++)
            if (mask[(size_t)y * (size_t)w + (size_t)x]) {
                if (l < 0)
                    l = x;
                r = x;
            }
        int third = (y - st->y0) * 3 / bh;
        sum[third] += l < 0 ? 0 : r - l + 1;
        rows[third]++;
    }
    for (int t = 0; t < 3; t++)
        st->thirds[t] = rows[t] ? sum[t] / rows[t] : 0;
    /* mirror symmetry about the box's vertical center line */
    size_t inter = 0, uni = 0;
    for (int y = st->y0; y <= st->y1; y++)
        for (int x = st->x0; x <= st->x1; x++) {
            int a = mask[(size_t)y * (size_t)w + (size_t)x];
            int b = mask[(size_t)y * (size_t)w + (size_t)(st->x0 + st->x1 - x)];
            inter += a && b;
            uni += a || b;
        }
    st->symmetry = uni ? (double)inter / (double)uni : 1;
    /* openings: background pixels that the background around the border cannot reach */
    uint8_t *seen = v4r_calloc(n, 1);
    size_t *stack = v4r_malloc(n * sizeof(size_t));
    size_t top = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * (size_t)w + (size_t)x;
            if ((x == 0 || y == 0 || x == w - 1 || y == h - 1) && !mask[i] && !seen[i]) {
                seen[i] = 1;
                stack[top++] = i;
            }
        }
    size_t outside = flood(mask, 0, w, h, seen, stack, top, 0);
    st->hole_area = n - st->fg - outside;
    size_t center = (size_t)((st->y0 + st->y1) / 2) * (size_t)w + (size_t)((st->x0 + st->x1) / 2);
    st->center_open = !mask[center] && !seen[center];
    /* pieces: 8-connected components of the mask */
    memset(seen, 0, n);
    size_t min_part = st->fg * 3 / 100 > 4 ? st->fg * 3 / 100 : 4;
    for (size_t i = 0; i < n; i++)
        if (mask[i] && !seen[i]) {
            seen[i] = 1;
            stack[0] = i;
            if (flood(mask, 1, w, h, seen, stack, 1, 1) >= min_part)
                st->parts++;
        }
    free(stack);
    free(seen);
}

static const char *profile(const shape_stats *st)
{
    double t = st->thirds[0], m = st->thirds[1], b = st->thirds[2];
    double lo = t < b ? t : b, hi = t > b ? t : b;
    if (b > 1.25 * t && b >= m)
        return "narrow at the top and flaring toward the bottom";
    if (t > 1.25 * b && t >= m)
        return "wider at the top than at the bottom";
    if (m > 1.2 * hi)
        return "widest through the middle";
    if (m < 0.8 * lo)
        return "pinched in at the middle";
    return "straight-sided";
}

/* ---- the texts ---- */

static void describe_plain(const work *k, const background *bg, text *t)
{
    color_stats cs;
    color_stats_of(k, NULL, &cs);
    const char *name = palette[cs.order[0]].name;
    add(t, "An almost uniform %s image with no distinct object standing out from the background. ", name);
    add(t, "It is in %s tones and %s, with a mean color of #%02x%02x%02x.", tones(cs.mean_l), surface(cs.texture),
        cs.mean[0], cs.mean[1], cs.mean[2]);
    (void)bg;
}

/* A busy picture, or one whose content runs over the whole frame: colors by region. */
static void describe_scene(const work *k, int busy, text *t)
{
    color_stats all, top, bottom;
    size_t n = (size_t)k->w * (size_t)k->h;
    uint8_t *sel = v4r_calloc(n, 1);
    color_stats_of(k, NULL, &all);
    for (size_t i = 0; i < n; i++)
        sel[i] = (int)(i / (size_t)k->w) < k->h / 3;
    color_stats_of(k, sel, &top);
    for (size_t i = 0; i < n; i++)
        sel[i] = (int)(i / (size_t)k->w) >= k->h - k->h / 3;
    color_stats_of(k, sel, &bottom);
    free(sel);
    const char *c1 = palette[all.order[0]].name;
    add(t, "%s picture whose content fills the frame, mostly %s (%d%% of it)", busy ? "A busy" : "A full-frame", c1,
        pct(share(&all, 0)));
    if (share(&all, 1) >= 0.1) {
        add(t, " with %s", palette[all.order[1]].name);
        if (share(&all, 2) >= 0.1)
            add(t, " and %s", palette[all.order[2]].name);
        add(t, " areas");
    }
    add(t, ". ");
    const char *ct = palette[top.order[0]].name, *cb = palette[bottom.order[0]].name;
    if (strcmp(ct, cb))
        add(t, "The top of the frame is mostly %s and the bottom mostly %s. ", ct, cb);
    else
        add(t, "The same %s runs from the top of the frame to the bottom. ", ct);
    const char *shape = k->w > k->h * 13 / 10 ? "a wide" : k->h > k->w * 13 / 10 ? "a tall" : "a roughly square";
    add(t, "It is %s, in %s tones, on %s frame, with a mean color of #%02x%02x%02x.", surface(all.texture),
        tones(all.mean_l), shape, all.mean[0], all.mean[1], all.mean[2]);
}

static void describe_object(const work *k, const background *bg, const uint8_t *mask, text *t)
{
    size_t n = (size_t)k->w * (size_t)k->h;
    shape_stats st;
    shape_of(mask, k->w, k->h, &st);
    /* colors from the core of the mask: the pixels at least `level` deep, away from the outline
     * and its blended or shaded edge, when enough of them are left */
    int *depth = v4r_malloc(n * sizeof(int));
    depth_map(mask, k->w, k->h, depth);
    uint8_t *core = v4r_malloc(n);
    int level = 3;
    for (; level > 1; level--) {
        size_t cnt = 0;
        for (size_t i = 0; i < n; i++)
            cnt += depth[i] >= level;
        if (cnt >= 12 && cnt >= st.fg / 8)
            break;
    }
    for (size_t i = 0; i < n; i++)
        core[i] = depth[i] >= level;
    free(depth);
    color_stats cs, whole;
    color_stats_of(k, core, &cs);
    color_stats_of(k, mask, &whole);
    free(core);
    float bl[3];
    rgb_to_lab(bg->rgb, bl);
    const char *bg_name = palette[nearest_color(bl, (float(*)[3])k->pal_lab)].name;

    double cover = (double)st.fg / (double)n;
    int bw = st.x1 - st.x0 + 1, bh = st.y1 - st.y0 + 1;
    const char *size = cover < 0.08 ? "small" : cover < 0.3 ? "medium-sized" : "large";
    /* sentence 1: color, size, background, proportions */
    add(t, "%s %s %s", article(size)[1] ? "An" : "A", size, palette[cs.order[0]].name);
    if (share(&cs, 1) >= 0.15)
        add(t, " and %s", palette[cs.order[1]].name);
    add(t, " item on a %s %s background, %s. ", bg->spread > 6 ? "mottled" : "plain", bg_name,
        bw * 10 > bh * 13   ? "wider than it is tall"
        : bh * 10 > bw * 13 ? "taller than it is wide"
                            : "roughly as wide as it is tall");
    /* sentence 2: outline */
    add(t, "Its outline is %s", profile(&st));
    double box = (double)bw * (double)bh;
    if (st.center_open && (double)st.hole_area >= 0.03 * box)
        add(t, ", ring-like with an open center");
    else if ((double)st.hole_area >= 0.02 * box)
        add(t, ", with an enclosed opening");
    if (st.parts > 1)
        add(t, ", in %d separate pieces", st.parts);
    double fill = (double)st.fg / box;
    add(t, ". It is %s and fills %d%% of its bounding box (%s). ",
        st.symmetry >= 0.9    ? "symmetric from left to right"
        : st.symmetry >= 0.75 ? "roughly symmetric"
                              : "clearly asymmetric",
        pct(fill),
        fill > 0.75   ? "a compact, solid form"
        : fill > 0.45 ? "a moderately open form"
                      : "a thin or spread-out form");
    /* sentence 3: surface and tones */
    add(t, "The surface looks %s, in %s tones", surface(cs.texture), tones(cs.mean_l));
    if (share(&cs, 1) >= 0.05 && share(&cs, 1) < 0.15)
        add(t, " with touches of %s", palette[cs.order[1]].name);
    add(t, "; the main color is close to #%02x%02x%02x. ", cs.mean[0], cs.mean[1], cs.mean[2]);
    /* sentence 4: placement, with exact figures. Coverage and center count partly covered pixels
     * by how far they are from the background relative to the main color, so that sub-pixel
     * differences of outline show. */
    float main_lab[3];
    rgb_to_lab(cs.mean, main_lab);
    float full = lab_dist(main_lab, bg->lab);
    double soft = 0, sx = 0, sy = 0;
    for (size_t i = 0; i < n; i++) {
        float d = lab_dist(k->lab + i * 3, bg->lab);
        if (d <= 0.5f * bg->threshold)
            continue;
        double a = full > 0 ? d / full : 1;
        a = a > 1 ? 1 : a;
        soft += a;
        sx += a * (double)(i % (size_t)k->w);
        sy += a * (double)(i / (size_t)k->w);
    }
    if (soft > 0)
        sx /= soft, sy /= soft;
    double cx = (st.x0 + st.x1 + 1) / 2.0 / k->w - 0.5, cy = (st.y0 + st.y1 + 1) / 2.0 / k->h - 0.5;
    const char *horiz = cx < -0.1 ? "left" : cx > 0.1 ? "right" : NULL;
    const char *vert = cy < -0.1 ? "upper" : cy > 0.1 ? "lower" : NULL;
    add(t, "It sits ");
    if (!horiz && !vert)
        add(t, "in the center");
    else if (horiz && vert)
        add(t, "toward the %s %s", vert, horiz);
    else if (horiz)
        add(t, "toward the %s", horiz);
    else
        add(t, "in the %s part", vert);
    add(t, " and covers %.2f%% of the frame: a box of %d by %d pixels in the %d by %d image, centered at (%.2f, %.2f), "
           "averaging #%02x%02x%02x.",
        100.0 * soft / (double)n, bw * k->f, bh * k->f, k->img_w, k->img_h, (sx + 0.5) * k->f, (sy + 0.5) * k->f,
        whole.mean[0], whole.mean[1], whole.mean[2]);
}

char *v4r_standin_describe(const v4r_image *img)
{
    text t = {0};
    if (!img || img->w <= 0 || img->h <= 0 || !img->px) {
        add(&t, "An empty image.");
        return t.s;
    }
    work k;
    work_init(&k, img);
    background bg;
    find_background(&k, &bg);
    size_t n = (size_t)k.w * (size_t)k.h, fg = 0;
    uint8_t *mask = v4r_malloc(n);
    for (size_t i = 0; i < n; i++)
        fg += mask[i] = lab_dist(k.lab + i * 3, bg.lab) > bg.threshold;
    double cover = (double)fg / (double)n;
    int busy = bg.spread > 12;
    if (!busy && cover < 0.002)
        describe_plain(&k, &bg, &t);
    else if (busy || cover > 0.9)
        describe_scene(&k, busy, &t);
    else
        describe_object(&k, &bg, mask, &t);
    free(mask);
    work_free(&k);
    return t.s;
}

/* `vlm4rec dataset synth`: a synthetic catalog with planted semantics. Items get latent attributes
 * (brand, category, color, material, style, occasion, season; the category fixes a silhouette),
 * users prefer a few attribute values and interact by them. Written out: the dataset layout, sparse
 * titles, rich LVLM-like descriptions, per-view vectors (title, visual, description), what was
 * planted (attributes.tsv, user_prefs.tsv), covered.txt and optional PNG images.
 *
 * docs/synthetic.md states every planted number below; keep the two in step. Every random draw
 * comes from a stream seeded by (seed, purpose, index), so the output does not depend on the
 * thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "synth_internal.h"
#include "vlm4rec/data.h"
#include "vlm4rec/io.h"

/* ---- what can be planted ---- */

enum { A_BRAND, A_CATEGORY, A_COLOR, A_MATERIAL, A_STYLE, A_OCCASION, A_SEASON, A_SHAPE, NATTR };
static const char *const attr_names[NATTR] = {"brand", "category", "color",  "material",
                                              "style", "occasion", "season", "shape"};

enum { NCAT = 16, NCOLOR = 12, NMATERIAL = 17, NSTYLE = 10, NOCCASION = 8, NSEASON = 4, NBRAND = 200 };
static const int attr_card[NATTR] = {NBRAND, NCAT, NCOLOR, NMATERIAL, NSTYLE, NOCCASION, NSEASON, V4R_NSHAPES};

static const char *const colors[NCOLOR] = {"black", "white", "gray",   "red",   "pink",  "yellow",
                                           "green", "blue",  "navy",   "purple", "brown", "beige"};
static const uint8_t color_rgb[NCOLOR][3] = {{30, 30, 30},   {250, 250, 250}, {128, 128, 128}, {200, 30, 40},
                                             {240, 140, 170}, {240, 210, 50}, {40, 140, 60},   {40, 90, 200},
                                             {20, 30, 90},    {120, 50, 150}, {120, 75, 40},   {220, 200, 160}};

enum {
    M_COTTON, M_LINEN, M_SILK, M_WOOL, M_DENIM, M_POLYESTER, M_CASHMERE, M_VELVET, M_LEATHER,
    M_SUEDE, M_CANVAS, M_NYLON, M_STRAW, M_GOLD, M_SILVER, M_STEEL, M_CERAMIC
};
static const char *const materials[NMATERIAL] = {"cotton",  "linen", "silk",  "wool",    "denim",  "polyester",
                                                 "cashmere", "velvet", "leather", "suede", "canvas", "nylon",
                                                 "straw",   "gold",  "silver", "steel",  "ceramic"};

typedef struct {
    const char *name;
    int shape;
    int material[4]; /* the materials an item of this category can have */
} category_def;

static const category_def categories[NCAT] = {
    {"dress", V4R_SHAPE_DRESS, {M_COTTON, M_SILK, M_LINEN, M_VELVET}},
    {"skirt", V4R_SHAPE_DRESS, {M_DENIM, M_COTTON, M_SILK, M_WOOL}},
    {"shirt", V4R_SHAPE_TOP, {M_COTTON, M_LINEN, M_SILK, M_DENIM}},
    {"blouse", V4R_SHAPE_TOP, {M_SILK, M_COTTON, M_LINEN, M_POLYESTER}},
    {"sweater", V4R_SHAPE_TOP, {M_WOOL, M_CASHMERE, M_COTTON, M_POLYESTER}},
    {"jacket", V4R_SHAPE_COAT, {M_LEATHER, M_DENIM, M_WOOL, M_NYLON}},
    {"coat", V4R_SHAPE_COAT, {M_WOOL, M_CASHMERE, M_POLYESTER, M_LEATHER}},
    {"sneaker", V4R_SHAPE_SHOE, {M_CANVAS, M_LEATHER, M_SUEDE, M_NYLON}},
    {"sandal", V4R_SHAPE_SHOE, {M_LEATHER, M_SUEDE, M_STRAW, M_CANVAS}},
    {"boot", V4R_SHAPE_BOOT, {M_LEATHER, M_SUEDE, M_CANVAS, M_NYLON}},
    {"handbag", V4R_SHAPE_BAG, {M_LEATHER, M_SUEDE, M_CANVAS, M_STRAW}},
    {"backpack", V4R_SHAPE_BAG, {M_NYLON, M_CANVAS, M_LEATHER, M_POLYESTER}},
    {"hat", V4R_SHAPE_HAT, {M_STRAW, M_WOOL, M_COTTON, M_POLYESTER}},
    {"ring", V4R_SHAPE_RING, {M_GOLD, M_SILVER, M_STEEL, M_CERAMIC}},
    {"necklace", V4R_SHAPE_PENDANT, {M_GOLD, M_SILVER, M_STEEL, M_LEATHER}},
    {"watch", V4R_SHAPE_WATCH, {M_STEEL, M_LEATHER, M_GOLD, M_SILVER}},
};
static const char *const shape_names[V4R_NSHAPES] = {"dress", "top", "coat", "shoe", "boot",
                                                     "bag",   "hat", "ring", "pendant", "watch"};

static const char *const styles[NSTYLE] = {"casual",  "formal",     "bohemian", "minimalist", "vintage",
                                           "sporty",  "streetwear", "elegant",  "preppy",     "romantic"};
static const char *const occasions[NOCCASION] = {"everyday", "work",   "party",   "wedding",
                                                 "beach",    "travel", "workout", "date night"};
/* How descriptions phrase an occasion; each phrase contains the occasion's name. */
static const char *const occasion_phrases[NOCCASION] = {"everyday wear", "work",   "a party",   "a wedding",
                                                        "the beach",     "travel", "a workout", "a date night"};
static const char *const seasons[NSEASON] = {"spring", "summer", "autumn", "winter"};

static const char *const brand_heads[20] = {"Aster",  "Bellamy", "Corvo",   "Dalia", "Elm",   "Fenwick", "Goldin",
                                            "Harlow", "Isla",    "Juno",    "Kestrel", "Lumen", "Marlo", "Nova",
                                            "Orla",   "Pike",    "Quill",   "Rowan", "Sable", "Tamsin"};
static const char *const brand_tails[10] = {"",     " & Co",  " Studio", " Atelier", " Label",
                                            "wear", " Goods", " House",  " Supply",  " Collective"};

/* ---- the planted model's numbers (docs/synthetic.md) ---- */

enum { VIEW_TITLE, VIEW_VISUAL, VIEW_DESC, NVIEWS };
static const char *const view_files[NVIEWS] = {"features/title.npy", "features/visual.npy",
                                               "features/description.npy"};
/* Weight of each attribute's basis vector in each view. */
static const double view_weight[NVIEWS][NATTR] = {
    /*            brand category color material style occasion season shape */
    [VIEW_TITLE] = {1.0, 1.0, 0.7, 0, 0, 0, 0, 0},
    [VIEW_VISUAL] = {0, 0, 1.0, 0, 0, 0, 0, 1.0},
    [VIEW_DESC] = {0, 1.0, 0.6, 0.7, 0.8, 0.7, 0.6, 0},
};
/* Norm of the per-item Gaussian noise added before the final L2 normalization. */
static const double view_noise[NVIEWS] = {[VIEW_TITLE] = 0.5, [VIEW_VISUAL] = 0.6, [VIEW_DESC] = 0.6};

#define P_NOISE 0.10       /* an interaction ignores the preferences: an item by popularity alone */
#define P_CROSS 0.25       /* an interaction in another (random) category, still by the other preferences */
#define AFFINITY 20.0      /* weight factor per matched preferred attribute value */
#define P_COLOR_PREF 0.5   /* share of users who also prefer a color */
#define ZIPF_S 0.8         /* popularity = (rank + ZIPF_OFFSET)^-ZIPF_S over a random ranking */
#define ZIPF_OFFSET 10.0
#define COUNT_SIGMA 1.0    /* per-user interaction counts: 3 + lognormal(0, COUNT_SIGMA) share of the rest */
#define T_START 1388534400LL             /* 2014-01-01 00:00:00 UTC */
#define T_START_SPAN (3LL * 365 * 86400) /* a user's first interaction is within 3 years of T_START */
#define GAP_MIN 3600LL                   /* seconds between two interactions of a user: at least an hour */
#define GAP_MEAN (15.0 * 86400)          /* plus an exponential gap of mean 15 days */
#define SHARE_TEST 0.17
#define SHARE_VALID 0.19
#define CARRY_MAX 5.0      /* bound on the rounding carry of the split shares */
#define PRIO_POP 0.7       /* covered.txt priority = 0.7 popularity + 0.3 recency */
#define PRIO_REC 0.3

/* Purposes of the random streams. */
enum { S_ITEM = 1, S_RANK, S_COUNT, S_USER, S_BASIS, S_VECTOR, S_TEXT, S_IMAGE };

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void stream(v4r_rng *r, uint64_t seed, uint64_t purpose, uint64_t index)
{
    uint64_t h = mix64(seed);
    h = mix64(h ^ (purpose * 0xd6e8feb86659fd93ULL));
    h = mix64(h ^ (index * 0xa0761d6478bd642fULL));
    v4r_rng_seed(r, h);
}

/* Approximately standard normal from one draw: the sum of four 16-bit uniforms (Irwin-Hall),
 * centred and scaled to unit variance. Integer-exact, so portable bit for bit. */
static double quick_normal(v4r_rng *r)
{
    uint64_t x = v4r_rng_next(r);
    double s = (double)(x & 0xffff) + (double)((x >> 16) & 0xffff) + (double)((x >> 32) & 0xffff) + (double)(x >> 48);
    return ((s + 2.0) / 65536.0 - 2.0) * 1.7320508075688772;
}

/* ---- state ---- */

typedef struct {
    int16_t a[NATTR];
} synth_item;

typedef struct {
    int16_t pref[NATTR]; /* -1: no preference */
} synth_user;

typedef struct {
    const v4r_synth_opts *o;
    size_t n_items, n_users, n_inter;
    synth_item *items;
    double *pop;     /* popularity weight per item */
    double *pop_cum; /* cumulative popularity over all items */
    int32_t *cat_items[NCAT];
    size_t cat_len[NCAT];
    synth_user *users;
    size_t *count, *off; /* interactions per user, offsets into inter_item / inter_ts */
    int32_t *inter_item;
    int64_t *inter_ts;
} synth_state;

static void state_free(synth_state *st)
{
    free(st->items);
    free(st->pop);
    free(st->pop_cum);
    for (int c = 0; c < NCAT; c++)
        free(st->cat_items[c]);
    free(st->users);
    free(st->count);
    free(st->off);
    free(st->inter_item);
    free(st->inter_ts);
    memset(st, 0, sizeof *st);
}

/* ---- options ---- */

void v4r_synth_defaults(v4r_synth_opts *o)
{
    memset(o, 0, sizeof *o);
    o->users = 23318;
    o->items = 38493;
    o->interactions = 178944;
    o->seed = 1;
    o->images = 0;
    o->dim_title = 768;
    o->dim_visual = 768;
    o->dim_desc = 384;
    o->covered_fraction = 4708.0 / 38493.0;
}

static int check_opts(const v4r_synth_opts *o, v4r_err *err)
{
    const size_t max_count = (size_t)1 << 30, max_dim = 65536;
    if (o->users == 0 || o->users > max_count)
        return v4r_fail(err, V4R_EUSAGE, "synth: --users must be between 1 and %zu, not %zu", max_count, o->users);
    if (o->items < 3 || o->items > max_count)
        return v4r_fail(err, V4R_EUSAGE,
                        "synth: --items must be between 3 and %zu (each user needs 3 distinct items, one per split), "
                        "not %zu",
                        max_count, o->items);
    const struct {
        const char *name;
        size_t v;
    } dims[3] = {{"dim-title", o->dim_title}, {"dim-visual", o->dim_visual}, {"dim-desc", o->dim_desc}};
    for (int i = 0; i < 3; i++)
        if (dims[i].v == 0 || dims[i].v > max_dim)
            return v4r_fail(err, V4R_EUSAGE, "synth: --%s must be between 1 and %zu, not %zu", dims[i].name, max_dim,
                            dims[i].v);
    if (!(o->covered_fraction > 0 && o->covered_fraction <= 1))
        return v4r_fail(err, V4R_EUSAGE, "synth: --covered must be in (0, 1], not %g", o->covered_fraction);
    if (o->interactions < 3 * o->users)
        return v4r_fail(err, V4R_EUSAGE,
                        "synth: --interactions %zu is too few: each of the %zu users needs at least 3 (one each in "
                        "train, valid and test), so at least %zu",
                        o->interactions, o->users, 3 * o->users);
    if (o->interactions > 4 * max_count)
        return v4r_fail(err, V4R_EUSAGE, "synth: --interactions must be at most %zu, not %zu", 4 * max_count,
                        o->interactions);
    if ((o->interactions - 1) / o->users >= o->items)
        return v4r_fail(err, V4R_EUSAGE,
                        "synth: the catalog is too small: %zu users x %zu items allow at most %zu distinct "
                        "interactions, %zu asked",
                        o->users, o->items, o->users * o->items, o->interactions);
    return V4R_OK;
}

/* ---- items ---- */

static void make_items(synth_state *st)
{
    const v4r_synth_opts *o = st->o;
    size_t n = st->n_items;
    st->items = v4r_malloc(n * sizeof *st->items);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        v4r_rng r;
        stream(&r, o->seed, S_ITEM, i);
        synth_item *it = &st->items[i];
        int c = (int)v4r_rng_below(&r, NCAT);
        it->a[A_CATEGORY] = (int16_t)c;
        it->a[A_SHAPE] = (int16_t)categories[c].shape;
        it->a[A_COLOR] = (int16_t)v4r_rng_below(&r, NCOLOR);
        it->a[A_MATERIAL] = (int16_t)categories[c].material[v4r_rng_below(&r, 4)];
        it->a[A_STYLE] = (int16_t)v4r_rng_below(&r, NSTYLE);
        it->a[A_OCCASION] = (int16_t)v4r_rng_below(&r, NOCCASION);
        it->a[A_SEASON] = (int16_t)v4r_rng_below(&r, NSEASON);
        it->a[A_BRAND] = (int16_t)v4r_rng_below(&r, NBRAND);
    }
    /* popularity: Zipf over a random ranking of the items */
    size_t *rank = v4r_malloc(n * sizeof *rank);
    for (size_t i = 0; i < n; i++)
        rank[i] = i;
    v4r_rng r;
    stream(&r, o->seed, S_RANK, 0);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)v4r_rng_below(&r, i + 1), t = rank[i];
        rank[i] = rank[j];
        rank[j] = t;
    }
    st->pop = v4r_malloc(n * sizeof *st->pop);
    st->pop_cum = v4r_malloc(n * sizeof *st->pop_cum);
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        st->pop[i] = pow((double)rank[i] + ZIPF_OFFSET, -ZIPF_S);
        total += st->pop[i];
        st->pop_cum[i] = total;
    }
    free(rank);
    for (size_t i = 0; i < n; i++)
        st->cat_len[st->items[i].a[A_CATEGORY]]++;
    for (int c = 0; c < NCAT; c++) {
        st->cat_items[c] = v4r_malloc((st->cat_len[c] ? st->cat_len[c] : 1) * sizeof(int32_t));
        st->cat_len[c] = 0;
    }
    for (size_t i = 0; i < n; i++) {
        int c = st->items[i].a[A_CATEGORY];
        st->cat_items[c][st->cat_len[c]++] = (int32_t)i;
    }
}

/* ---- users ---- */

/* Interactions per user: 3 each, and the rest shared in proportion to lognormal weights (floors,
 * then one more each in user order until the total is exact), at most n_items per user. */
static void make_counts(synth_state *st)
{
    size_t nu = st->n_users, extra = st->n_inter - 3 * nu, cap = st->n_items - 3;
    double *w = v4r_malloc(nu * sizeof *w), total = 0;
    for (size_t u = 0; u < nu; u++) {
        v4r_rng r;
        stream(&r, st->o->seed, S_COUNT, u);
        w[u] = exp(COUNT_SIGMA * v4r_rng_normal(&r));
        total += w[u];
    }
    st->count = v4r_malloc(nu * sizeof *st->count);
    st->off = v4r_malloc(nu * sizeof *st->off);
    size_t given = 0;
    for (size_t u = 0; u < nu; u++) {
        double share = floor((double)extra * w[u] / total);
        size_t e = share >= (double)cap ? cap : (size_t)share;
        st->count[u] = e;
        given += e;
    }
    for (size_t u = 0; given < extra; u = (u + 1) % nu)
        if (st->count[u] < cap) {
            st->count[u]++;
            given++;
        }
    size_t off = 0;
    for (size_t u = 0; u < nu; u++) {
        st->count[u] += 3;
        st->off[u] = off;
        off += st->count[u];
    }
    free(w);
}

static void make_prefs(synth_user *u, v4r_rng *r)
{
    for (int a = 0; a < NATTR; a++)
        u->pref[a] = -1;
    int c = (int)v4r_rng_below(r, NCAT);
    u->pref[A_CATEGORY] = (int16_t)c;
    int pool[4] = {A_MATERIAL, A_STYLE, A_OCCASION, A_SEASON};
    int k = 2 + (int)v4r_rng_below(r, 2);
    for (int j = 0; j < k; j++) {
        int pick = j + (int)v4r_rng_below(r, (uint64_t)(4 - j)), a = pool[pick];
        pool[pick] = pool[j];
        pool[j] = a;
        u->pref[a] = (int16_t)(a == A_MATERIAL ? categories[c].material[v4r_rng_below(r, 4)]
                                                 : (int)v4r_rng_below(r, (uint64_t)attr_card[a]));
    }
    if (v4r_rng_uniform(r) < P_COLOR_PREF)
        u->pref[A_COLOR] = (int16_t)v4r_rng_below(r, NCOLOR);
}

/* Preferred values (other than the category) that item it has. */
static int matches(const synth_user *u, const synth_item *it)
{
    static const int attrs[5] = {A_COLOR, A_MATERIAL, A_STYLE, A_OCCASION, A_SEASON};
    int m = 0;
    for (int k = 0; k < 5; k++)
        m += u->pref[attrs[k]] >= 0 && u->pref[attrs[k]] == it->a[attrs[k]];
    return m;
}

/* Cumulative weights popularity x AFFINITY^matches over one category's items, items the user
 * already has (mark == ui) weighing 0; returns the total. */
static double category_cum(const synth_state *st, const synth_user *u, int c, const int32_t *mark, int32_t ui,
                           double *cum)
{
    double pw[6] = {1, 0, 0, 0, 0, 0}, total = 0;
    for (int k = 1; k < 6; k++)
        pw[k] = pw[k - 1] * AFFINITY;
    for (size_t k = 0; k < st->cat_len[c]; k++) {
        int32_t i = st->cat_items[c][k];
        if (mark[i] != ui)
            total += st->pop[i] * pw[matches(u, &st->items[i])];
        cum[k] = total;
    }
    return total;
}

/* First index whose cumulative weight exceeds x (x < cum[n - 1]). */
static size_t search_cum(const double *cum, size_t n, double x)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cum[mid] > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* An item by popularity alone that the user does not have yet: up to 64 draws, then the next
 * unused item after a uniform start. */
static int32_t draw_popular(const synth_state *st, const int32_t *mark, int32_t ui, v4r_rng *r)
{
    double all = st->pop_cum[st->n_items - 1];
    for (int attempt = 0; attempt < 64; attempt++) {
        int32_t i = (int32_t)search_cum(st->pop_cum, st->n_items, v4r_rng_uniform(r) * all);
        if (mark[i] != ui)
            return i;
    }
    size_t k = (size_t)v4r_rng_below(r, st->n_items);
    while (mark[k] == ui)
        k = (k + 1) % st->n_items;
    return (int32_t)k;
}

/* One user's preferences and interactions. Each interaction picks a mode: with P_NOISE an item by
 * popularity alone, with P_CROSS an item of another random category weighted by popularity x
 * AFFINITY^matches, otherwise the same in the preferred category. Items are drawn without
 * replacement (a user's items are distinct); an exhausted category falls back to popularity. */
static void make_user(synth_state *st, size_t uix, double *cum, double *cum2, int32_t *mark)
{
    v4r_rng r;
    stream(&r, st->o->seed, S_USER, uix);
    int32_t ui = (int32_t)uix;
    synth_user *u = &st->users[uix];
    make_prefs(u, &r);
    int c = u->pref[A_CATEGORY];
    size_t len = st->cat_len[c], n = st->count[uix], off = st->off[uix];
    double own_total = len ? category_cum(st, u, c, mark, ui, cum) : 0;
    int64_t t = T_START + (int64_t)v4r_rng_below(&r, (uint64_t)T_START_SPAN);
    for (size_t j = 0; j < n; j++) {
        double x = v4r_rng_uniform(&r);
        int32_t item = -1;
        if (x < P_NOISE) {
            item = draw_popular(st, mark, ui, &r);
        } else if (x < P_NOISE + P_CROSS) {
            int c2 = (int)v4r_rng_below(&r, NCAT - 1);
            c2 += c2 >= c;
            double tot = st->cat_len[c2] ? category_cum(st, u, c2, mark, ui, cum2) : 0;
            item = tot > 0 ? st->cat_items[c2][search_cum(cum2, st->cat_len[c2], v4r_rng_uniform(&r) * tot)]
                           : draw_popular(st, mark, ui, &r);
        } else {
            double y = v4r_rng_uniform(&r);
            if (own_total > 0) {
                item = st->cat_items[c][search_cum(cum, len, y * own_total)];
                if (mark[item] == ui) { /* drawn before: drop the user's items and draw again */
                    own_total = category_cum(st, u, c, mark, ui, cum);
                    item = own_total > 0 ? st->cat_items[c][search_cum(cum, len, y * own_total)] : -1;
                }
            }
            if (item < 0)
                item = draw_popular(st, mark, ui, &r);
        }
        mark[item] = ui;
        t += GAP_MIN + (int64_t)(-log(1.0 - v4r_rng_uniform(&r)) * GAP_MEAN);
        st->inter_item[off + j] = item;
        st->inter_ts[off + j] = t;
    }
}

static void make_users(synth_state *st)
{
    size_t nu = st->n_users, maxlen = 1;
    for (int c = 0; c < NCAT; c++)
        maxlen = st->cat_len[c] > maxlen ? st->cat_len[c] : maxlen;
    st->users = v4r_malloc(nu * sizeof *st->users);
    st->inter_item = v4r_malloc(st->n_inter * sizeof *st->inter_item);
    st->inter_ts = v4r_malloc(st->n_inter * sizeof *st->inter_ts);
    v4r_progress prog;
    v4r_progress_start(&prog, "synth: users", nu);
#pragma omp parallel
    {
        double *cum = v4r_malloc(maxlen * sizeof *cum), *cum2 = v4r_malloc(maxlen * sizeof *cum2);
        int32_t *mark = v4r_malloc(st->n_items * sizeof *mark);
        memset(mark, 0xff, st->n_items * sizeof *mark);
#pragma omp for schedule(dynamic, 64)
        for (size_t u = 0; u < nu; u++) {
            make_user(st, u, cum, cum2, mark);
            v4r_progress_add(&prog, 1);
        }
        free(cum);
        free(cum2);
        free(mark);
    }
    v4r_progress_end(&prog);
}

/* ---- the dataset layout ---- */

static void brand_name(char *buf, size_t cap, int b)
{
    snprintf(buf, cap, "%s%s", brand_heads[b % 20], brand_tails[b / 20]);
}

static void capitalized(char *buf, size_t cap, const char *s)
{
    snprintf(buf, cap, "%s", s);
    if (buf[0] >= 'a' && buf[0] <= 'z')
        buf[0] = (char)(buf[0] - 'a' + 'A');
}

static void item_id(char *buf, size_t cap, size_t i) { snprintf(buf, cap, "I%06zu", i); }
static void user_id(char *buf, size_t cap, size_t u) { snprintf(buf, cap, "U%05zu", u); }

/* Per user: test = max(1, round(0.17 n + carry)), valid = max(1, round(0.19 n + carry)), train the
 * rest (at least 1); the rounding carries (error diffusion) keep the overall shares on target. */
static void build_dataset(const synth_state *st, v4r_dataset *ds, size_t split_n[V4R_NSPLITS])
{
    char id[32], brand[64], color[32], cat[32], title[160], image[64];
    v4r_dataset_init(ds);
    for (size_t i = 0; i < st->n_items; i++) {
        const synth_item *it = &st->items[i];
        item_id(id, sizeof id, i);
        brand_name(brand, sizeof brand, it->a[A_BRAND]);
        capitalized(color, sizeof color, colors[it->a[A_COLOR]]);
        capitalized(cat, sizeof cat, categories[it->a[A_CATEGORY]].name);
        snprintf(title, sizeof title, "%s %s %s", brand, color, cat);
        snprintf(image, sizeof image, "images/%s.png", id);
        v4r_dataset_add_item(ds, id, title, st->o->images ? image : "", NULL);
    }
    for (size_t u = 0; u < st->n_users; u++) {
        user_id(id, sizeof id, u);
        v4r_dataset_add_user(ds, id, NULL);
    }
    double carry_t = 0, carry_v = 0;
    for (size_t u = 0; u < st->n_users; u++) {
        size_t n = st->count[u], off = st->off[u];
        double want_t = SHARE_TEST * (double)n + carry_t;
        long nt = lround(want_t);
        nt = nt < 1 ? 1 : nt > (long)n - 2 ? (long)n - 2 : nt;
        carry_t = fmin(CARRY_MAX, fmax(-CARRY_MAX, want_t - (double)nt));
        double want_v = SHARE_VALID * (double)n + carry_v;
        long nv = lround(want_v);
        nv = nv < 1 ? 1 : nv > (long)n - 1 - nt ? (long)n - 1 - nt : nv;
        carry_v = fmin(CARRY_MAX, fmax(-CARRY_MAX, want_v - (double)nv));
        size_t n_train = n - (size_t)nt - (size_t)nv;
        for (size_t j = 0; j < n; j++) {
            int s = j < n_train ? V4R_TRAIN : j < n_train + (size_t)nv ? V4R_VALID : V4R_TEST;
            v4r_split_push(&ds->split[s], (int32_t)u, st->inter_item[off + j], st->inter_ts[off + j], 1, 0);
        }
    }
    for (int s = 0; s < V4R_NSPLITS; s++)
        split_n[s] = ds->split[s].n;
}

/* ---- what was planted: attributes.tsv, user_prefs.tsv, descriptions.tsv ---- */

static int open_out(v4r_outfile *f, const char *dir, const char *name, v4r_err *err)
{
    char *path = v4r_path_join(dir, name);
    int rc = v4r_out_open(f, path, err);
    free(path);
    return rc;
}

static int write_attributes(const synth_state *st, const char *dir, v4r_err *err)
{
    v4r_outfile f;
    int rc = open_out(&f, dir, "attributes.tsv", err);
    if (rc)
        return rc;
    fputs("item\tbrand\tcategory\tcolor\tmaterial\tstyle\toccasion\tseason\n", f.fp);
    char id[32], brand[64];
    for (size_t i = 0; i < st->n_items; i++) {
        const synth_item *it = &st->items[i];
        item_id(id, sizeof id, i);
        brand_name(brand, sizeof brand, it->a[A_BRAND]);
        fprintf(f.fp, "%s\t", id);
        v4r_tsv_write_field(f.fp, brand);
        fprintf(f.fp, "\t%s\t%s\t%s\t%s\t%s\t%s\n", categories[it->a[A_CATEGORY]].name, colors[it->a[A_COLOR]],
                materials[it->a[A_MATERIAL]], styles[it->a[A_STYLE]], occasions[it->a[A_OCCASION]],
                seasons[it->a[A_SEASON]]);
    }
    return v4r_out_commit(&f, err);
}

static const char *attr_value(int a, int v)
{
    switch (a) {
    case A_CATEGORY: return categories[v].name;
    case A_COLOR: return colors[v];
    case A_MATERIAL: return materials[v];
    case A_STYLE: return styles[v];
    case A_OCCASION: return occasions[v];
    case A_SEASON: return seasons[v];
    case A_SHAPE: return shape_names[v];
    default: return "?";
    }
}

static int write_prefs(const synth_state *st, const char *dir, v4r_err *err)
{
    v4r_outfile f;
    int rc = open_out(&f, dir, "user_prefs.tsv", err);
    if (rc)
        return rc;
    fputs("user\tattribute\tvalue\n", f.fp);
    char id[32];
    for (size_t u = 0; u < st->n_users; u++) {
        user_id(id, sizeof id, u);
        for (int a = A_CATEGORY; a <= A_SEASON; a++)
            if (st->users[u].pref[a] >= 0)
                fprintf(f.fp, "%s\t%s\t%s\n", id, attr_names[a], attr_value(a, st->users[u].pref[a]));
    }
    return v4r_out_commit(&f, err);
}

/* Description templates. {C} category, {K} color, {M} material, {S} style, {O} occasion phrase,
 * {N} season; {a} / {A}: "a" or "an" (capitalized) as the next word needs. */
static const char *const templates[] = {
    "{A} {K} {M} {C} with {a} {S} look, suited to {O} in {N}.",
    "This {C} is made of {M} in {K}. Its {S} style makes it a good pick for {O} during {N}.",
    "The image shows {a} {K} {C} crafted from {M}. The design is {S} and well suited for {O} in {N}.",
    "{A} {S} {C} in {K} {M}, ideal for {O}; a good choice for {N}.",
    "Pictured is {a} {C} in {K}, made from {M}. It has {a} {S} feel and would work well for {O} in {N}.",
    "{A} {K} {C} of {M} with {a} {S} character. Great for {O}, especially in {N}.",
    "This {S} {K} {C} uses {M} and is designed for {O}; it fits the {N} season well.",
    "Made from {M}, this {K} {C} has {a} {S} aesthetic and suits {O} in {N}.",
};
enum { NTEMPLATES = sizeof templates / sizeof templates[0] };

static const char *token_word(const synth_item *it, char t)
{
    switch (t) {
    case 'C': return categories[it->a[A_CATEGORY]].name;
    case 'K': return colors[it->a[A_COLOR]];
    case 'M': return materials[it->a[A_MATERIAL]];
    case 'S': return styles[it->a[A_STYLE]];
    case 'O': return occasion_phrases[it->a[A_OCCASION]];
    case 'N': return seasons[it->a[A_SEASON]];
    default: return "";
    }
}

static void describe(char *buf, size_t cap, const synth_item *it, int tmpl)
{
    size_t n = 0;
    buf[0] = 0;
    for (const char *p = templates[tmpl]; *p && n + 1 < cap;) {
        if (p[0] == '{' && p[1] && p[2] == '}') {
            const char *w;
            if (p[1] == 'a' || p[1] == 'A') {
                const char *next = p + 3;
                while (*next == ' ')
                    next++;
                const char *nw = next[0] == '{' ? token_word(it, next[1]) : next;
                int vowel = strchr("aeiou", nw[0]) != NULL && nw[0];
                w = p[1] == 'a' ? (vowel ? "an" : "a") : (vowel ? "An" : "A");
            } else {
                w = token_word(it, p[1]);
            }
            n += (size_t)snprintf(buf + n, cap - n, "%s", w);
            p += 3;
        } else {
            buf[n++] = *p++;
            buf[n] = 0;
        }
    }
    if (n >= cap)
        buf[cap - 1] = 0;
}

static int write_descriptions(const synth_state *st, const char *dir, v4r_err *err)
{
    v4r_outfile f;
    int rc = open_out(&f, dir, "descriptions.tsv", err);
    if (rc)
        return rc;
    fputs("item\tdescription\n", f.fp);
    char id[32], text[512];
    for (size_t i = 0; i < st->n_items; i++) {
        v4r_rng r;
        stream(&r, st->o->seed, S_TEXT, i);
        item_id(id, sizeof id, i);
        describe(text, sizeof text, &st->items[i], (int)v4r_rng_below(&r, NTEMPLATES));
        fprintf(f.fp, "%s\t", id);
        v4r_tsv_write_field(f.fp, text);
        putc('\n', f.fp);
    }
    return v4r_out_commit(&f, err);
}

/* ---- covered.txt ---- */

typedef struct {
    double prio;
    size_t index;
} prio_ref;

static int cmp_prio(const void *a, const void *b)
{
    const prio_ref *x = a, *y = b;
    if (x->prio != y->prio)
        return x->prio > y->prio ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* The top round(fraction x items) (at least 1) by 0.7 popularity / max + 0.3 min-max recency of
 * the latest interaction (0 for items nobody touched), ties by lower index; highest first. */
static int write_covered(const synth_state *st, const char *dir, size_t *n_covered, v4r_err *err)
{
    size_t n = st->n_items;
    size_t *cnt = v4r_calloc(n, sizeof *cnt);
    int64_t *last = v4r_malloc(n * sizeof *last);
    uint8_t *seen = v4r_calloc(n, 1);
    for (size_t k = 0; k < st->n_inter; k++) {
        int32_t i = st->inter_item[k];
        if (!seen[i] || st->inter_ts[k] > last[i])
            last[i] = st->inter_ts[k];
        seen[i] = 1;
        cnt[i]++;
    }
    size_t maxc = 0;
    int64_t tmin = INT64_MAX, tmax = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        maxc = cnt[i] > maxc ? cnt[i] : maxc;
        if (seen[i]) {
            tmin = last[i] < tmin ? last[i] : tmin;
            tmax = last[i] > tmax ? last[i] : tmax;
        }
    }
    prio_ref *refs = v4r_malloc(n * sizeof *refs);
    for (size_t i = 0; i < n; i++) {
        double pop = maxc ? (double)cnt[i] / (double)maxc : 0;
        double rec = seen[i] && tmax > tmin ? (double)(last[i] - tmin) / (double)(tmax - tmin) : 0;
        refs[i] = (prio_ref){PRIO_POP * pop + PRIO_REC * rec, i};
    }
    qsort(refs, n, sizeof *refs, cmp_prio);
    size_t k = (size_t)llround(st->o->covered_fraction * (double)n);
    k = k < 1 ? 1 : k > n ? n : k;
    v4r_outfile f;
    int rc = open_out(&f, dir, "covered.txt", err);
    if (!rc) {
        char id[32];
        for (size_t j = 0; j < k; j++) {
            item_id(id, sizeof id, refs[j].index);
            fprintf(f.fp, "%s\n", id);
        }
        rc = v4r_out_commit(&f, err);
    }
    *n_covered = k;
    free(cnt);
    free(last);
    free(seen);
    free(refs);
    return rc;
}

/* ---- vectors ---- */

/* The basis of one view: a unit vector per value of every attribute the view sees, in attribute
 * order, from Gaussian draws. When they all fit (count <= d) they are made orthonormal (modified
 * Gram-Schmidt), so attributes and values never leak into one another; otherwise they stay
 * independent random unit vectors (nearly orthogonal for large d). basis[a] points at attribute
 * a's first value, NULL when the view does not see a; returns the buffer to free. */
static float *make_basis(uint64_t seed, int view, size_t d, float *basis[NATTR])
{
    size_t total = 0;
    for (int a = 0; a < NATTR; a++)
        total += view_weight[view][a] != 0 ? (size_t)attr_card[a] : 0;
    double *q = v4r_malloc(total * d * sizeof *q);
    v4r_rng r;
    stream(&r, seed, S_BASIS, (uint64_t)view);
    int orthogonal = total <= d;
    for (size_t v = 0; v < total; v++) {
        double *row = q + v * d;
        for (size_t k = 0; k < d; k++)
            row[k] = v4r_rng_normal(&r);
        for (size_t p = 0; orthogonal && p < v; p++) {
            const double *prev = q + p * d;
            double proj = 0;
            for (size_t k = 0; k < d; k++)
                proj += row[k] * prev[k];
            for (size_t k = 0; k < d; k++)
                row[k] -= proj * prev[k];
        }
        double norm = 0;
        for (size_t k = 0; k < d; k++)
            norm += row[k] * row[k];
        norm = sqrt(norm);
        for (size_t k = 0; k < d; k++)
            row[k] /= norm;
    }
    float *b = v4r_malloc(total * d * sizeof *b);
    for (size_t k = 0; k < total * d; k++)
        b[k] = (float)q[k];
    free(q);
    size_t at = 0;
    for (int a = 0; a < NATTR; a++) {
        basis[a] = NULL;
        if (view_weight[view][a] != 0) {
            basis[a] = b + at * d;
            at += (size_t)attr_card[a];
        }
    }
    return b;
}

static int write_view(const synth_state *st, const char *dir, int view, size_t d, v4r_progress *prog, v4r_err *err)
{
    float *basis[NATTR];
    float *basis_buf = make_basis(st->o->seed, view, d, basis);
    size_t n = st->n_items;
    float *m = v4r_malloc(n * d * sizeof *m);
    float noise = (float)(view_noise[view] / sqrt((double)d));
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        v4r_rng r;
        stream(&r, st->o->seed, S_VECTOR + (uint64_t)view * 0x100000000ULL, i);
        float *row = m + i * d;
        for (size_t k = 0; k < d; k++)
            row[k] = noise * (float)quick_normal(&r);
        for (int a = 0; a < NATTR; a++) {
            if (!basis[a])
                continue;
            float w = (float)view_weight[view][a];
            const float *b = basis[a] + (size_t)st->items[i].a[a] * d;
            for (size_t k = 0; k < d; k++)
                row[k] += w * b[k];
        }
        double norm = 0;
        for (size_t k = 0; k < d; k++)
            norm += (double)row[k] * row[k];
        float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0;
        for (size_t k = 0; k < d; k++)
            row[k] *= inv;
        if ((i & 1023) == 1023)
            v4r_progress_add(prog, 1024);
    }
    v4r_progress_add(prog, n & 1023);
    free(basis_buf);
    char *path = v4r_path_join(dir, view_files[view]);
    int rc = v4r_npy_write(path, m, n, d, err);
    free(path);
    free(m);
    return rc;
}

/* ---- images ---- */

static int write_images(const synth_state *st, const char *dir, v4r_err *err)
{
    char *img_dir = v4r_path_join(dir, "images");
    int rc = v4r_mkdir_p(img_dir, err);
    if (rc) {
        free(img_dir);
        return rc;
    }
    size_t n = st->n_items, first_bad = SIZE_MAX;
    v4r_progress prog;
    v4r_progress_start(&prog, "synth: images", n);
    /* more threads than cores: each file's fsync waits on the disk, not the CPU */
    int threads = omp_get_max_threads() * 4;
#pragma omp parallel num_threads(threads)
    {
        uint8_t *pix = v4r_malloc((size_t)V4R_SYNTH_IMAGE_SIZE * V4R_SYNTH_IMAGE_SIZE * 3);
#pragma omp for schedule(dynamic, 32)
        for (size_t i = 0; i < n; i++) {
            size_t bad;
#pragma omp atomic read
            bad = first_bad;
            if (bad != SIZE_MAX)
                continue;
            v4r_rng r;
            stream(&r, st->o->seed, S_IMAGE, i);
            const synth_item *it = &st->items[i];
            v4r_synth_render(pix, it->a[A_SHAPE], color_rgb[it->a[A_COLOR]], &r);
            char name[48];
            snprintf(name, sizeof name, "I%06zu.png", i);
            char *path = v4r_path_join(img_dir, name);
            v4r_err e = {0};
            if (v4r_synth_write_png(path, pix, V4R_SYNTH_IMAGE_SIZE, V4R_SYNTH_IMAGE_SIZE, &e) != 0) {
#pragma omp critical(synth_image_error)
                if (i < first_bad) {
#pragma omp atomic write
                    first_bad = i;
                    if (err)
                        *err = e;
                }
            }
            free(path);
            v4r_progress_add(&prog, 1);
        }
        free(pix);
    }
    v4r_progress_end(&prog);
    free(img_dir);
    return first_bad == SIZE_MAX ? V4R_OK : (err ? err->code : V4R_EIO);
}

/* ---- the whole ---- */

int v4r_synth(const char *out, const v4r_synth_opts *o, v4r_err *err)
{
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    double t0 = v4r_now();
    synth_state st = {.o = o, .n_items = o->items, .n_users = o->users, .n_inter = o->interactions};
    make_items(&st);
    make_counts(&st);
    make_users(&st);

    v4r_dataset ds;
    size_t split_n[V4R_NSPLITS], n_covered = 0;
    build_dataset(&st, &ds, split_n);
    char *feat = v4r_path_join(out, "features");
    rc = v4r_mkdir_p(feat, err);
    free(feat);
    if (!rc)
        rc = v4r_dataset_write(out, &ds, err);
    v4r_dataset_free(&ds);
    if (!rc)
        rc = write_attributes(&st, out, err);
    if (!rc)
        rc = write_prefs(&st, out, err);
    if (!rc)
        rc = write_descriptions(&st, out, err);
    if (!rc)
        rc = write_covered(&st, out, &n_covered, err);
    if (!rc) {
        const size_t dims[NVIEWS] = {o->dim_title, o->dim_visual, o->dim_desc};
        v4r_progress prog;
        v4r_progress_start(&prog, "synth: vectors", (uint64_t)st.n_items * NVIEWS);
        for (int v = 0; v < NVIEWS && !rc; v++)
            rc = write_view(&st, out, v, dims[v], &prog, err);
        v4r_progress_end(&prog);
    }
    if (!rc && o->images)
        rc = write_images(&st, out, err);
    if (!rc)
        v4r_info("synth: %zu users, %zu items, %zu interactions (train %zu, valid %zu, test %zu), %zu covered, "
                 "seed %llu, %.1f s",
                 st.n_users, st.n_items, st.n_inter, split_n[V4R_TRAIN], split_n[V4R_VALID], split_n[V4R_TEST],
                 n_covered, (unsigned long long)o->seed, v4r_now() - t0);
    state_free(&st);
    return rc;
}

/* synth: the synthetic catalog is deterministic, well formed, and its planted semantics are
 * recoverable from the files (docs/synthetic.md states what is planted). */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/data.h"
#include "vlm4rec/io.h"

/* ---- helpers ---- */

/* A TSV file as rows of fields (header included as row 0). */
typedef struct {
    char *text;
    char ***rows;
    size_t *nfields;
    size_t n;
} table;

static void table_load(table *t, const char *dir, const char *name)
{
    memset(t, 0, sizeof *t);
    t->text = tu_read(dir, name);
    assert_non_null(t->text);
    size_t cap = 0;
    for (char *line = t->text; *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl); /* every line ends with a newline */
        *nl = 0;
        v4r_grow((void **)&t->rows, &cap, t->n + 1, sizeof *t->rows);
        t->rows[t->n] = v4r_malloc(16 * sizeof(char *));
        size_t nf = v4r_tsv_split(line, t->rows[t->n], 16);
        t->nfields = v4r_realloc(t->nfields, (t->n + 1) * sizeof *t->nfields);
        t->nfields[t->n] = nf;
        t->n++;
        line = nl + 1;
    }
}

static void table_free(table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->rows[i]);
    free(t->rows);
    free(t->nfields);
    free(t->text);
    memset(t, 0, sizeof *t);
}

static v4r_matrix load_npy(const char *dir, const char *name)
{
    char *path = v4r_path_join(dir, name);
    v4r_matrix m;
    v4r_err err = {0};
    int rc = v4r_npy_read(path, &m, &err);
    if (rc)
        fail_msg("%s", err.msg);
    free(path);
    return m;
}

static double dot(const float *a, const float *b, size_t d)
{
    double s = 0;
    for (size_t k = 0; k < d; k++)
        s += (double)a[k] * b[k];
    return s;
}

static void synth_into(const char *dir, size_t users, size_t items, size_t inter, uint64_t seed, int images,
                       size_t dim)
{
    v4r_synth_opts o;
    v4r_synth_defaults(&o);
    o.users = users;
    o.items = items;
    o.interactions = inter;
    o.seed = seed;
    o.images = images;
    if (dim)
        o.dim_title = o.dim_visual = o.dim_desc = dim;
    v4r_err err = {0};
    int rc = v4r_synth(dir, &o, &err);
    if (rc)
        fail_msg("synth: %s", err.msg);
}

/* The shared catalog of the group: 800 users, 1500 items, the method's mean of 7.67 per user. */
enum { G_USERS = 800, G_ITEMS = 1500, G_INTER = 6136 };
static char *g_dir;
static v4r_dataset g_ds;

static int group_setup(void **state)
{
    v4r_log_set_level(V4R_LOG_WARN);
    g_dir = tu_tmpdir();
    synth_into(g_dir, G_USERS, G_ITEMS, G_INTER, 7, 0, 0);
    v4r_err err = {0};
    if (v4r_dataset_load(g_dir, &g_ds, &err) != 0) {
        fprintf(stderr, "load: %s\n", err.msg);
        return -1;
    }
    (void)state;
    return 0;
}

static int group_teardown(void **state)
{
    v4r_dataset_free(&g_ds);
    tu_rmtree(g_dir);
    free(g_dir);
    (void)state;
    return 0;
}

/* Per user, the item indices of one split in file order. */
typedef struct {
    int32_t *item[V4R_NSPLITS];
    size_t n[V4R_NSPLITS];
} user_hist;

static user_hist *histories(const v4r_dataset *ds)
{
    user_hist *h = v4r_calloc(ds->n_users, sizeof *h);
    for (int s = 0; s < V4R_NSPLITS; s++) {
        const v4r_split *sp = &ds->split[s];
        for (size_t k = 0; k < sp->n; k++) {
            user_hist *u = &h[sp->user[k]];
            u->item[s] = v4r_realloc(u->item[s], (u->n[s] + 1) * sizeof(int32_t));
            u->item[s][u->n[s]++] = sp->item[k];
        }
    }
    return h;
}

static void histories_free(user_hist *h, size_t n)
{
    for (size_t u = 0; u < n; u++)
        for (int s = 0; s < V4R_NSPLITS; s++)
            free(h[u].item[s]);
    free(h);
}

/* ---- tests ---- */

static void test_defaults(void **state)
{
    v4r_synth_opts o;
    v4r_synth_defaults(&o);
    assert_int_equal(o.users, 23318);
    assert_int_equal(o.items, 38493);
    assert_int_equal(o.interactions, 178944);
    assert_int_equal(o.seed, 1);
    assert_int_equal(o.dim_title, 768);
    assert_int_equal(o.dim_visual, 768);
    assert_int_equal(o.dim_desc, 384);
    assert_int_equal(o.images, 0);
    assert_true(fabs(o.covered_fraction - 0.1223) < 1e-4);
    assert_int_equal((long)llround(o.covered_fraction * 38493), 4708);
    (void)state;
}

static void expect_usage(v4r_synth_opts *o, const char *needle)
{
    char *dir = tu_tmpdir(), *out = v4r_path_join(dir, "out");
    v4r_err err = {0};
    assert_int_equal(v4r_synth(out, o, &err), V4R_EUSAGE);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    assert_false(v4r_file_exists(out)); /* nothing written */
    char *items = v4r_path_join(out, "items.tsv");
    assert_false(v4r_file_exists(items));
    free(items);
    free(out);
    tu_rmtree(dir);
    free(dir);
    v4r_synth_defaults(o);
}

static void test_bad_options(void **state)
{
    v4r_synth_opts o;
    v4r_synth_defaults(&o);
    o.users = 0;
    expect_usage(&o, "--users");
    o.items = 0;
    expect_usage(&o, "--items");
    o.items = 2;
    expect_usage(&o, "--items");
    o.dim_title = 0;
    expect_usage(&o, "--dim-title");
    o.dim_visual = 0;
    expect_usage(&o, "--dim-visual");
    o.dim_desc = 0;
    expect_usage(&o, "--dim-desc");
    o.covered_fraction = 0;
    expect_usage(&o, "--covered");
    o.covered_fraction = 1.5;
    expect_usage(&o, "--covered");
    o.covered_fraction = NAN;
    expect_usage(&o, "--covered");
    o.interactions = 3 * o.users - 1;
    expect_usage(&o, "at least 3");
    o.users = 10, o.items = 5, o.interactions = 51;
    expect_usage(&o, "too small");
    /* the edges themselves are fine: exactly 3 per user, exactly every pair */
    char *dir = tu_tmpdir();
    synth_into(dir, 10, 5, 30, 1, 0, 8);
    synth_into(dir, 10, 5, 50, 1, 0, 8);
    v4r_dataset ds;
    v4r_err err = {0};
    assert_int_equal(v4r_dataset_load(dir, &ds, &err), 0);
    assert_int_equal(ds.split[0].n + ds.split[1].n + ds.split[2].n, 50);
    v4r_dataset_free(&ds);
    o.covered_fraction = 1;
    o.users = 10, o.items = 5, o.interactions = 30;
    assert_int_equal(v4r_synth(dir, &o, &err), 0);
    char *cov = tu_read(dir, "covered.txt");
    size_t lines = 0;
    for (char *p = cov; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 5);
    free(cov);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_unwritable(void **state)
{
    char *dir = tu_tmpdir();
    tu_write(dir, "file", "x");
    char *out = v4r_path_join(dir, "file/sub");
    v4r_synth_opts o;
    v4r_synth_defaults(&o);
    o.users = 5, o.items = 20, o.interactions = 20, o.dim_title = o.dim_visual = o.dim_desc = 4;
    v4r_err err = {0};
    assert_int_equal(v4r_synth(out, &o, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "file/sub"));
    free(out);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void list_files(const char *root, const char *sub, char ***names, size_t *n)
{
    char *path = *sub ? v4r_path_join(root, sub) : v4r_strdup(root);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *rel = *sub ? v4r_sprintf("%s/%s", sub, e->d_name) : v4r_strdup(e->d_name);
        char *full = v4r_path_join(root, rel);
        if (v4r_file_exists(full)) {
            *names = v4r_realloc(*names, (*n + 1) * sizeof **names);
            (*names)[(*n)++] = rel;
        } else {
            list_files(root, rel, names, n);
            free(rel);
        }
        free(full);
    }
    closedir(d);
    free(path);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void assert_same_tree(const char *a, const char *b)
{
    char **na = NULL, **nb = NULL;
    size_t ca = 0, cb = 0;
    list_files(a, "", &na, &ca);
    list_files(b, "", &nb, &cb);
    assert_int_equal(ca, cb);
    qsort(na, ca, sizeof *na, cmp_str);
    qsort(nb, cb, sizeof *nb, cmp_str);
    for (size_t i = 0; i < ca; i++) {
        assert_string_equal(na[i], nb[i]);
        char *pa = v4r_path_join(a, na[i]), *pb = v4r_path_join(b, nb[i]);
        char *da, *db;
        size_t la, lb;
        assert_int_equal(v4r_read_file(pa, &da, &la, NULL), 0);
        assert_int_equal(v4r_read_file(pb, &db, &lb, NULL), 0);
        if (la != lb || memcmp(da, db, la) != 0)
            fail_msg("%s differs between runs", na[i]);
        free(da);
        free(db);
        free(pa);
        free(pb);
        free(na[i]);
        free(nb[i]);
    }
    free(na);
    free(nb);
}

static void test_deterministic(void **state)
{
    char *a = tu_tmpdir(), *b = tu_tmpdir(), *c = tu_tmpdir();
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    synth_into(a, 200, 400, 1700, 42, 1, 48);
    omp_set_num_threads(3); /* the thread count must not matter */
    synth_into(b, 200, 400, 1700, 42, 1, 48);
    omp_set_num_threads(threads);
    assert_same_tree(a, b);
    /* no temporaries left behind */
    char **names = NULL;
    size_t n = 0;
    list_files(a, "", &names, &n);
    assert_int_equal(n, 9 + 3 + 400); /* 9 tables, 3 .npy, 400 images */
    for (size_t i = 0; i < n; i++) {
        assert_null(strstr(names[i], ".tmp"));
        free(names[i]);
    }
    free(names);
    /* another seed gives another catalog */
    synth_into(c, 200, 400, 1700, 43, 0, 48);
    char *ta = tu_read(a, "train.tsv"), *tc = tu_read(c, "train.tsv");
    assert_true(strcmp(ta, tc) != 0);
    free(ta);
    free(tc);
    tu_rmtree(a);
    tu_rmtree(b);
    tu_rmtree(c);
    free(a);
    free(b);
    free(c);
    (void)state;
}

static void test_shapes_and_splits(void **state)
{
    const v4r_dataset *ds = &g_ds;
    assert_int_equal(ds->n_users, G_USERS);
    assert_int_equal(ds->n_items, G_ITEMS);
    size_t total = ds->split[0].n + ds->split[1].n + ds->split[2].n;
    assert_int_equal(total, G_INTER);
    double share[3];
    for (int s = 0; s < 3; s++)
        share[s] = (double)ds->split[s].n / (double)total;
    assert_true(fabs(share[V4R_TRAIN] - 0.64) < 0.02);
    assert_true(fabs(share[V4R_VALID] - 0.19) < 0.02);
    assert_true(fabs(share[V4R_TEST] - 0.17) < 0.02);
    assert_string_equal(ds->item_id[123], "I000123");
    assert_string_equal(ds->user_id[42], "U00042");
    assert_string_equal(ds->item_image[0], "");
    user_hist *h = histories(ds);
    int64_t *first = v4r_malloc(ds->n_users * sizeof *first);
    size_t maxn = 0, ones = 0;
    for (size_t u = 0; u < ds->n_users; u++) {
        size_t n = h[u].n[0] + h[u].n[1] + h[u].n[2];
        maxn = n > maxn ? n : maxn;
        ones += n == 3;
        for (int s = 0; s < 3; s++)
            assert_true(h[u].n[s] >= 1); /* every user in every split */
        /* no item twice for one user, over all splits */
        for (int s = 0; s < 3; s++)
            for (size_t i = 0; i < h[u].n[s]; i++)
                for (int s2 = s; s2 < 3; s2++)
                    for (size_t j = s2 == s ? i + 1 : 0; j < h[u].n[s2]; j++)
                        assert_int_not_equal(h[u].item[s][i], h[u].item[s2][j]);
    }
    assert_true(maxn > 3 * G_INTER / G_USERS); /* long-tailed counts */
    assert_true(ones > 0);
    /* chronological: timestamps rise through train, valid, test for each user */
    int64_t *last = v4r_malloc(ds->n_users * sizeof *last);
    for (size_t u = 0; u < ds->n_users; u++)
        last[u] = INT64_MIN;
    for (int s = 0; s < 3; s++) {
        const v4r_split *sp = &ds->split[s];
        for (size_t k = 0; k < sp->n; k++) {
            assert_true(sp->has_ts[k]);
            assert_true(sp->ts[k] > last[sp->user[k]]);
            last[sp->user[k]] = sp->ts[k];
        }
    }
    free(last);
    free(first);
    histories_free(h, ds->n_users);
    /* feature shapes */
    const char *names[3] = {"features/title.npy", "features/visual.npy", "features/description.npy"};
    const size_t dims[3] = {768, 768, 384};
    for (int v = 0; v < 3; v++) {
        v4r_matrix m = load_npy(g_dir, names[v]);
        assert_int_equal(m.rows, G_ITEMS);
        assert_int_equal(m.cols, dims[v]);
        for (size_t i = 0; i < m.rows; i += 97)
            assert_true(fabs(dot(m.data + i * m.cols, m.data + i * m.cols, m.cols) - 1) < 1e-4); /* unit rows */
        v4r_matrix_free(&m);
    }
    /* the planted tables */
    table t;
    table_load(&t, g_dir, "attributes.tsv");
    assert_int_equal(t.n, G_ITEMS + 1);
    assert_int_equal(t.nfields[0], 8);
    assert_string_equal(t.rows[0][0], "item");
    assert_string_equal(t.rows[0][7], "season");
    for (size_t i = 1; i < t.n; i++) {
        assert_int_equal(t.nfields[i], 8);
        assert_string_equal(t.rows[i][0], ds->item_id[i - 1]);
    }
    table_free(&t);
    table_load(&t, g_dir, "descriptions.tsv");
    assert_int_equal(t.n, G_ITEMS + 1);
    assert_string_equal(t.rows[0][1], "description");
    table_free(&t);
    table_load(&t, g_dir, "user_prefs.tsv");
    assert_string_equal(t.rows[0][1], "attribute");
    size_t cat_rows = 0;
    for (size_t i = 1; i < t.n; i++)
        cat_rows += !strcmp(t.rows[i][1], "category");
    assert_int_equal(cat_rows, G_USERS); /* one category per user */
    assert_true(t.n - 1 >= 3 * G_USERS && t.n - 1 <= 5 * G_USERS);
    table_free(&t);
    (void)state;
}

typedef struct {
    double prio;
    size_t i;
} prio_ref;

static void test_covered_priority(void **state)
{
    const v4r_dataset *ds = &g_ds;
    size_t n = ds->n_items, *cnt = v4r_calloc(n, sizeof *cnt), maxc = 0;
    int64_t *last = v4r_malloc(n * sizeof *last), lo = INT64_MAX, hi = INT64_MIN;
    for (size_t i = 0; i < n; i++)
        last[i] = INT64_MIN;
    for (int s = 0; s < 3; s++)
        for (size_t k = 0; k < ds->split[s].n; k++) {
            int32_t i = ds->split[s].item[k];
            cnt[i]++;
            last[i] = ds->split[s].ts[k] > last[i] ? ds->split[s].ts[k] : last[i];
        }
    for (size_t i = 0; i < n; i++) {
        maxc = cnt[i] > maxc ? cnt[i] : maxc;
        if (cnt[i]) {
            lo = last[i] < lo ? last[i] : lo;
            hi = last[i] > hi ? last[i] : hi;
        }
    }
    double *prio = v4r_malloc(n * sizeof *prio);
    for (size_t i = 0; i < n; i++)
        prio[i] = 0.7 * (double)cnt[i] / (double)maxc + (cnt[i] ? 0.3 * (double)(last[i] - lo) / (double)(hi - lo) : 0);
    uint8_t *mask;
    size_t count;
    v4r_err err = {0};
    char *path = v4r_path_join(g_dir, "covered.txt");
    assert_int_equal(v4r_read_covered(ds, path, &mask, &count, &err), 0);
    free(path);
    assert_int_equal(count, (size_t)llround(0.1223 * G_ITEMS));
    /* every covered item outranks every uncovered one */
    double min_in = 2, max_out = -1;
    for (size_t i = 0; i < n; i++) {
        if (mask[i])
            min_in = prio[i] < min_in ? prio[i] : min_in;
        else
            max_out = prio[i] > max_out ? prio[i] : max_out;
    }
    assert_true(min_in >= max_out);
    /* and the file lists them in priority order, ties by lower index */
    table t;
    table_load(&t, g_dir, "covered.txt");
    assert_int_equal(t.n, count);
    for (size_t k = 1; k < t.n; k++) {
        int64_t a = v4r_strmap_get(&ds->item_index, t.rows[k - 1][0]), b = v4r_strmap_get(&ds->item_index, t.rows[k][0]);
        assert_true(prio[a] > prio[b] || (prio[a] == prio[b] && a < b));
    }
    /* the most popular item is first when it is also the latest (else at least covered) */
    size_t top = 0;
    for (size_t i = 0; i < n; i++)
        if (cnt[i] == maxc) {
            top = i;
            break;
        }
    assert_true(mask[top]);
    table_free(&t);
    free(mask);
    free(prio);
    free(cnt);
    free(last);
    (void)state;
}

/* Mean cosine between a user's train and valid items, and AUC of the valid items against random
 * unseen items under the method's profile (mean of the last 10 train vectors), over all users. */
typedef struct {
    double user_cos, rand_cos, auc, auc_in_cat;
} view_score;

/* AUC twice: against random items, and against random items of the valid item's own category
 * (cat[i]: the category of item i), where only color, material, style, occasion, season differ. */
static view_score score_view(const v4r_dataset *ds, const user_hist *h, const float *x, size_t d, const int *cat)
{
    view_score r = {0};
    v4r_rng rng;
    v4r_rng_seed(&rng, 99);
    double *prof = v4r_malloc(d * sizeof *prof);
    size_t users = 0;
    for (size_t u = 0; u < ds->n_users; u++) {
        const user_hist *hu = &h[u];
        double s = 0;
        for (size_t i = 0; i < hu->n[0]; i++)
            for (size_t j = 0; j < hu->n[1]; j++)
                s += dot(x + (size_t)hu->item[0][i] * d, x + (size_t)hu->item[1][j] * d, d);
        r.user_cos += s / (double)(hu->n[0] * hu->n[1]);
        memset(prof, 0, d * sizeof *prof);
        size_t from = hu->n[0] > 10 ? hu->n[0] - 10 : 0;
        for (size_t i = from; i < hu->n[0]; i++)
            for (size_t k = 0; k < d; k++)
                prof[k] += x[(size_t)hu->item[0][i] * d + k];
        double wins[2] = {0}, trials[2] = {0};
        for (size_t j = 0; j < hu->n[1]; j++) {
            int32_t v = hu->item[1][j];
            double sv = 0;
            for (size_t k = 0; k < d; k++)
                sv += prof[k] * x[(size_t)v * d + k];
            for (int t = 0; t < 100; t++) {
                size_t i = v4r_rng_below(&rng, ds->n_items);
                int same_cat = cat[i] == cat[v];
                if (t >= 50 && !same_cat)
                    continue; /* the second 50 count only when in the same category */
                double sr = 0;
                for (size_t k = 0; k < d; k++)
                    sr += prof[k] * x[i * d + k];
                double w = sv > sr ? 1 : sv == sr ? 0.5 : 0;
                if (t < 50) {
                    wins[0] += w;
                    trials[0]++;
                }
                if (same_cat) {
                    wins[1] += w;
                    trials[1]++;
                }
            }
        }
        r.auc += wins[0] / trials[0];
        r.auc_in_cat += trials[1] ? wins[1] / trials[1] : 0.5;
        users++;
    }
    r.user_cos /= (double)users;
    r.auc /= (double)users;
    r.auc_in_cat /= (double)users;
    for (int t = 0; t < 20000; t++) {
        size_t i = v4r_rng_below(&rng, ds->n_items), j = v4r_rng_below(&rng, ds->n_items);
        r.rand_cos += dot(x + i * d, x + j * d, d);
    }
    r.rand_cos /= 20000;
    free(prof);
    return r;
}

static void test_semantics_recoverable(void **state)
{
    const v4r_dataset *ds = &g_ds;
    user_hist *h = histories(ds);
    v4r_matrix title = load_npy(g_dir, "features/title.npy"), visual = load_npy(g_dir, "features/visual.npy"),
               desc = load_npy(g_dir, "features/description.npy");
    /* random unit vectors: the floor */
    v4r_matrix rnd = {v4r_malloc(ds->n_items * 64 * sizeof(float)), ds->n_items, 64};
    v4r_rng rng;
    v4r_rng_seed(&rng, 5);
    for (size_t i = 0; i < ds->n_items; i++) {
        float *row = rnd.data + i * 64;
        for (int k = 0; k < 64; k++)
            row[k] = (float)v4r_rng_normal(&rng);
        float inv = (float)(1 / sqrt(dot(row, row, 64)));
        for (int k = 0; k < 64; k++)
            row[k] *= inv;
    }
    table a;
    table_load(&a, g_dir, "attributes.tsv");
    int *cat = v4r_malloc(ds->n_items * sizeof *cat);
    v4r_strmap names;
    v4r_strmap_init(&names, 64);
    for (size_t i = 0; i < ds->n_items; i++) {
        int64_t old = v4r_strmap_put(&names, a.rows[i + 1][2], (int64_t)names.count);
        cat[i] = (int)(old >= 0 ? old : (int64_t)names.count - 1);
    }
    assert_int_equal(names.count, 16);
    v4r_strmap_free(&names);
    table_free(&a);
    view_score st = score_view(ds, h, title.data, title.cols, cat),
               sv = score_view(ds, h, visual.data, visual.cols, cat), sd = score_view(ds, h, desc.data, desc.cols, cat),
               sr = score_view(ds, h, rnd.data, rnd.cols, cat);
    print_message("  cosine user/random pairs, AUC all/same category: description %.3f/%.3f %.3f/%.3f, "
                  "title %.3f/%.3f %.3f/%.3f, visual %.3f/%.3f %.3f/%.3f, random %.3f/%.3f %.3f/%.3f\n",
                  sd.user_cos, sd.rand_cos, sd.auc, sd.auc_in_cat, st.user_cos, st.rand_cos, st.auc, st.auc_in_cat,
                  sv.user_cos, sv.rand_cos, sv.auc, sv.auc_in_cat, sr.user_cos, sr.rand_cos, sr.auc, sr.auc_in_cat);
    /* descriptions recover the preferences clearly better than titles, titles better than chance */
    assert_true(sd.user_cos > st.user_cos + 0.05);
    assert_true(st.user_cos > st.rand_cos + 0.1);
    assert_true(sd.auc > st.auc + 0.03);
    assert_true(st.auc > sr.auc + 0.15);
    assert_true(sv.auc > sr.auc + 0.15);
    assert_true(fabs(sr.auc - 0.5) < 0.03);
    /* inside a category only the description sees style, occasion, material, season */
    assert_true(sd.auc_in_cat > st.auc_in_cat + 0.12);
    assert_true(sd.auc_in_cat > 0.65);
    assert_true(fabs(sr.auc_in_cat - 0.5) < 0.05);
    free(cat);
    free(rnd.data);
    v4r_matrix_free(&title);
    v4r_matrix_free(&visual);
    v4r_matrix_free(&desc);
    histories_free(h, ds->n_users);
    (void)state;
}

/* Column index of an attribute in attributes.tsv. */
enum { C_ITEM, C_BRAND, C_CATEGORY, C_COLOR, C_MATERIAL, C_STYLE, C_OCCASION, C_SEASON };

static int same(char **a, char **b, int c) { return !strcmp(a[c], b[c]); }

static void test_views_see_what_they_should(void **state)
{
    table t;
    table_load(&t, g_dir, "attributes.tsv");
    v4r_matrix title = load_npy(g_dir, "features/title.npy"), visual = load_npy(g_dir, "features/visual.npy"),
               desc = load_npy(g_dir, "features/description.npy");
    /* silhouettes: the categories that share one (docs/synthetic.md) */
    static const char *const shape_of[][2] = {
        {"dress", "dress"}, {"skirt", "dress"},  {"shirt", "top"},     {"blouse", "top"},     {"sweater", "top"},
        {"jacket", "coat"}, {"coat", "coat"},    {"sneaker", "shoe"},  {"sandal", "shoe"},    {"boot", "boot"},
        {"handbag", "bag"}, {"backpack", "bag"}, {"hat", "hat"},       {"ring", "ring"},      {"necklace", "pendant"},
        {"watch", "watch"}};
    size_t n = t.n - 1;
    const char **shape = v4r_malloc(n * sizeof *shape);
    for (size_t i = 0; i < n; i++) {
        shape[i] = NULL;
        for (size_t k = 0; k < sizeof shape_of / sizeof shape_of[0]; k++)
            if (!strcmp(t.rows[i + 1][C_CATEGORY], shape_of[k][0]))
                shape[i] = shape_of[k][1];
        assert_non_null(shape[i]);
    }
    /* pairs sharing the style (and occasion) but neither color nor silhouette nor brand */
    double vis_style = 0, desc_style = 0, vis_same = 0, title_brand = 0, vis_brand = 0, desc_unrel = 0;
    size_t n_style = 0, n_same = 0, n_brand = 0, n_unrel = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            char **a = t.rows[i + 1], **b = t.rows[j + 1];
            int vis = same(a, b, C_COLOR) || !strcmp(shape[i], shape[j]);
            int unrelated = !vis && !same(a, b, C_BRAND) && !same(a, b, C_CATEGORY) && !same(a, b, C_MATERIAL) &&
                            !same(a, b, C_STYLE) && !same(a, b, C_OCCASION) && !same(a, b, C_SEASON);
            if (!vis && !same(a, b, C_BRAND) && same(a, b, C_STYLE) && same(a, b, C_OCCASION)) {
                vis_style += dot(visual.data + i * visual.cols, visual.data + j * visual.cols, visual.cols);
                desc_style += dot(desc.data + i * desc.cols, desc.data + j * desc.cols, desc.cols);
                n_style++;
            }
            if (same(a, b, C_COLOR) && !strcmp(shape[i], shape[j])) {
                vis_same += dot(visual.data + i * visual.cols, visual.data + j * visual.cols, visual.cols);
                n_same++;
            }
            if (same(a, b, C_BRAND) && !vis && !same(a, b, C_CATEGORY)) {
                title_brand += dot(title.data + i * title.cols, title.data + j * title.cols, title.cols);
                vis_brand += dot(visual.data + i * visual.cols, visual.data + j * visual.cols, visual.cols);
                n_brand++;
            }
            if (unrelated && n_unrel < 20000) {
                desc_unrel += dot(desc.data + i * desc.cols, desc.data + j * desc.cols, desc.cols);
                n_unrel++;
            }
        }
    assert_true(n_style > 100 && n_same > 100 && n_brand > 100 && n_unrel > 1000);
    vis_style /= (double)n_style, desc_style /= (double)n_style, vis_same /= (double)n_same;
    title_brand /= (double)n_brand, vis_brand /= (double)n_brand, desc_unrel /= (double)n_unrel;
    print_message("  shared style+occasion: visual %.3f description %.3f; same color+shape: visual %.3f; same "
                  "brand: title %.3f visual %.3f; unrelated: description %.3f\n",
                  vis_style, desc_style, vis_same, title_brand, vis_brand, desc_unrel);
    assert_true(fabs(vis_style) < 0.01); /* the visual view does not see style or occasion */
    assert_true(desc_style > 0.2);       /* the description does */
    assert_true(vis_same > 0.6);         /* it sees color and silhouette */
    assert_true(title_brand > 0.2);      /* titles see the brand, the visual view does not */
    assert_true(fabs(vis_brand) < 0.01);
    assert_true(fabs(desc_unrel) < 0.01);
    free(shape);
    v4r_matrix_free(&title);
    v4r_matrix_free(&visual);
    v4r_matrix_free(&desc);
    table_free(&t);
    (void)state;
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (!strncasecmp(p, needle, n))
            return 1;
    return 0;
}

static void test_text_names_attributes(void **state)
{
    table a, d;
    table_load(&a, g_dir, "attributes.tsv");
    table_load(&d, g_dir, "descriptions.tsv");
    const v4r_dataset *ds = &g_ds;
    size_t distinct_starts = 0;
    for (size_t i = 1; i < a.n; i++) {
        const char *text = d.rows[i][1];
        assert_string_equal(d.rows[i][0], a.rows[i][0]);
        for (int c = C_CATEGORY; c <= C_SEASON; c++)
            if (!contains_ci(text, a.rows[i][c]))
                fail_msg("%s: description '%s' does not name %s", a.rows[i][0], text, a.rows[i][c]);
        assert_false(contains_ci(text, a.rows[i][C_BRAND])); /* the image does not show the brand */
        /* the title is sparse: "<Brand> <Color> <Category>" */
        const char *title = ds->item_title[i - 1];
        char *want = v4r_sprintf("%s %s %s", a.rows[i][C_BRAND], a.rows[i][C_COLOR], a.rows[i][C_CATEGORY]);
        assert_int_equal(strcasecmp(title, want), 0);
        assert_true(title[strlen(a.rows[i][C_BRAND]) + 1] >= 'A' && title[strlen(a.rows[i][C_BRAND]) + 1] <= 'Z');
        free(want);
        assert_false(contains_ci(title, a.rows[i][C_STYLE]));
        if (i > 1 && strncmp(text, d.rows[i - 1][1], 8) != 0)
            distinct_starts++;
        for (const char *v = "aeiou"; *v; v++) { /* "an elegant", never "a elegant" */
            char bad[8];
            snprintf(bad, sizeof bad, " a %c", *v);
            assert_null(strstr(text, bad));
            assert_false(text[0] == 'A' && text[1] == ' ' && text[2] == *v);
        }
    }
    assert_true(distinct_starts > a.n / 2); /* varied templates */
    table_free(&a);
    table_free(&d);
    (void)state;
}

/* Users interact by their planted preferences. */
static void test_users_follow_prefs(void **state)
{
    const v4r_dataset *ds = &g_ds;
    table a, p;
    table_load(&a, g_dir, "attributes.tsv");
    table_load(&p, g_dir, "user_prefs.tsv");
    static const char *const cols[8] = {"item", "brand", "category", "color", "material", "style", "occasion", "season"};
    /* per planted (user, attribute, value): the share of the user's interactions having that value */
    double share[8] = {0}, base[8] = {0};
    size_t nshare[8] = {0};
    user_hist *h = histories(ds);
    for (size_t r = 1; r < p.n; r++) {
        int64_t u = v4r_strmap_get(&ds->user_index, p.rows[r][0]);
        assert_true(u >= 0);
        int c = -1;
        for (int k = 2; k < 8; k++)
            if (!strcmp(p.rows[r][1], cols[k]))
                c = k;
        assert_true(c >= 2);
        size_t hit = 0, tot = 0;
        for (int s = 0; s < 3; s++)
            for (size_t k = 0; k < h[u].n[s]; k++, tot++)
                hit += !strcmp(a.rows[h[u].item[s][k] + 1][c], p.rows[r][2]);
        share[c] += (double)hit / (double)tot;
        nshare[c]++;
        size_t all = 0;
        for (size_t i = 1; i < a.n; i++)
            all += !strcmp(a.rows[i][c], p.rows[r][2]);
        base[c] += (double)all / (double)(a.n - 1);
    }
    for (int c = 2; c < 8; c++) {
        assert_true(nshare[c] > 50);
        share[c] /= (double)nshare[c];
        base[c] /= (double)nshare[c];
        print_message("  preferred %s: %.2f of interactions (catalog share %.2f)\n", cols[c], share[c], base[c]);
        assert_true(share[c] > 2 * base[c] && share[c] > base[c] + 0.15);
    }
    assert_true(share[2] > 0.6); /* mostly in the preferred category */
    histories_free(h, ds->n_users);
    table_free(&a);
    table_free(&p);
    (void)state;
}

static void read_png(const char *path, uint8_t *pix, int *w, int *h)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char sig[8];
    assert_int_equal(fread(sig, 1, 8, fp), 8);
    assert_int_equal(png_sig_cmp(sig, 0, 8), 0);
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_true(png && info);
    if (setjmp(png_jmpbuf(png)))
        fail_msg("%s: libpng could not read it", path);
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    *w = (int)png_get_image_width(png, info);
    *h = (int)png_get_image_height(png, info);
    assert_int_equal(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
    assert_int_equal(png_get_bit_depth(png, info), 8);
    assert_int_equal(*w, 64);
    assert_int_equal(*h, 64);
    for (int y = 0; y < 64; y++)
        png_read_row(png, pix + (size_t)y * 64 * 3, NULL);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
}

static void test_images(void **state)
{
    static const char *const names[12] = {"black", "white", "gray",  "red",    "pink",  "yellow",
                                          "green", "blue",  "navy",  "purple", "brown", "beige"};
    static const uint8_t rgb[12][3] = {{30, 30, 30},   {250, 250, 250}, {128, 128, 128}, {200, 30, 40},
                                       {240, 140, 170}, {240, 210, 50}, {40, 140, 60},   {40, 90, 200},
                                       {20, 30, 90},    {120, 50, 150}, {120, 75, 40},   {220, 200, 160}};
    char *dir = tu_tmpdir();
    synth_into(dir, 40, 120, 200, 3, 1, 16);
    v4r_dataset ds;
    v4r_err err = {0};
    assert_int_equal(v4r_dataset_load(dir, &ds, &err), 0);
    table a;
    table_load(&a, dir, "attributes.tsv");
    uint8_t pix[64 * 64 * 3];
    size_t differ = 0;
    uint8_t prev[64 * 64 * 3];
    for (size_t i = 0; i < ds.n_items; i++) {
        char *want = v4r_sprintf("images/%s.png", ds.item_id[i]);
        assert_string_equal(ds.item_image[i], want);
        free(want);
        char *path = v4r_path_join(dir, ds.item_image[i]);
        int w, h;
        read_png(path, pix, &w, &h);
        free(path);
        /* light background in the corner, the item's color inside the silhouette */
        assert_true(pix[0] == 238 && pix[1] == 236 && pix[2] == 230);
        int c = -1;
        for (int k = 0; k < 12; k++)
            if (!strcmp(a.rows[i + 1][C_COLOR], names[k]))
                c = k;
        assert_true(c >= 0);
        size_t filled = 0;
        for (int k = 0; k < 64 * 64; k++)
            filled += !memcmp(pix + 3 * k, rgb[c], 3);
        assert_true(filled >= 40);
        if (i && memcmp(pix, prev, sizeof pix))
            differ++;
        memcpy(prev, pix, sizeof pix);
    }
    assert_true(differ > ds.n_items / 2);
    table_free(&a);
    v4r_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_cli(void **state)
{
    char *dir = tu_tmpdir(), *out = NULL;
    assert_int_equal(tu_run(&out, "dataset synth -o '%s/d' --users 30 --items 90 --interactions 150 --seed 5 "
                                  "--dim-title 8 --dim-visual 8 --dim-desc 8 --covered 0.5",
                            dir),
                     0);
    free(out);
    char *sub = v4r_path_join(dir, "d");
    char *cov = tu_read(sub, "covered.txt");
    assert_non_null(cov);
    size_t lines = 0;
    for (char *p = cov; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 45);
    free(cov);
    size_t rows, cols;
    v4r_err err = {0};
    char *npy = v4r_path_join(sub, "features/description.npy");
    assert_int_equal(v4r_npy_shape(npy, &rows, &cols, &err), 0);
    assert_int_equal(rows, 90);
    assert_int_equal(cols, 8);
    free(npy);
    free(sub);
    assert_int_equal(tu_run(&out, "dataset synth -o '%s/e' --users 10 --interactions 20", dir), 2);
    assert_non_null(strstr(out, "at least 3"));
    free(out);
    assert_int_equal(tu_run(&out, "dataset synth -o '%s/e' --covered 2", dir), 2);
    assert_non_null(strstr(out, "--covered"));
    free(out);
    assert_int_equal(tu_run(&out, "dataset synth --help"), 0);
    assert_non_null(strstr(out, "--images"));
    free(out);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_unwritable),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_shapes_and_splits),
        cmocka_unit_test(test_covered_priority),
        cmocka_unit_test(test_semantics_recoverable),
        cmocka_unit_test(test_views_see_what_they_should),
        cmocka_unit_test(test_text_names_attributes),
        cmocka_unit_test(test_users_follow_prefs),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* The serving index: build and open round trip, every damaged or truncated file refused with the
 * field named, bad vectors, float32 lists equal to eval's, float16/int8 recall, masks, batches,
 * query vectors, and the index / recommend commands' bad inputs. */
#include "index_testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/ground.h"
#include "vlm4rec/index.h"
#include "vlm4rec/kernels.h"
#include "vlm4rec/rec.h"

/* Header layout (docs/serving.md, "Index file format"). */
enum { H_VERSION = 8, H_DTYPE = 12, H_N_ITEMS = 16, H_SECTIONS = 96, H_LABEL = 240, H_BYTES = 512 };
enum { S_ITEM_OFF, S_ITEM_STR, S_USER_OFF, S_USER_STR, S_VECTORS, S_SCALES, S_HIST_OFF, S_HIST_ITEMS, S_META, NSEC };
static const char *const sec_names[NSEC] = {"item_offsets", "item_ids", "user_offsets", "user_ids", "vectors",
                                            "scales", "history_offsets", "history_items", "meta"};

/* ---- fixtures ---- */

/* ni items, nu users; user u has 1 + u % 9 train items (distinct, oldest first; users u % 7 == 3
 * none) and one valid item; vectors random normal (d columns). */
static void small_dataset(v4r_dataset *ds, v4r_matrix *m, size_t ni, size_t nu, size_t d, uint64_t seed)
{
    v4r_rng rng;
    v4r_rng_seed(&rng, seed);
    v4r_dataset_init(ds);
    char id[32];
    for (size_t i = 0; i < ni; i++) {
        snprintf(id, sizeof id, "i%zu", i);
        v4r_dataset_add_item(ds, id, "", "", NULL);
    }
    for (size_t u = 0; u < nu; u++) {
        snprintf(id, sizeof id, "u%zu", u);
        v4r_dataset_add_user(ds, id, NULL);
        size_t nh = u % 7 == 3 ? 0 : 1 + u % 9;
        for (size_t h = 0; h < nh; h++)
            v4r_split_push(&ds->split[V4R_TRAIN], (int32_t)u, (int32_t)((u * 31 + h * 17) % ni), (int64_t)(nh - h),
                           1, 0);
        v4r_split_push(&ds->split[V4R_VALID], (int32_t)u, (int32_t)v4r_rng_below(&rng, ni), 100, 1, 0);
    }
    *m = (v4r_matrix){v4r_malloc(sizeof(float) * ni * d), ni, d};
    for (size_t i = 0; i < ni * d; i++)
        m->data[i] = (float)v4r_rng_normal(&rng);
}

static char *build_small(const char *dir, const char *name, v4r_index_dtype dtype, v4r_index_build_report *rep)
{
    v4r_dataset ds;
    v4r_matrix m;
    small_dataset(&ds, &m, 100, 20, 8, 1);
    v4r_index_build_opts o;
    v4r_index_build_defaults(&o);
    o.dtype = dtype;
    char *path = v4r_path_join(dir, name);
    v4r_err err = {0};
    v4r_index_build_report r;
    if (v4r_index_build(&ds, &m, &o, path, rep ? rep : &r, &err))
        fail_msg("build: %s", err.msg);
    v4r_matrix_free(&m);
    v4r_dataset_free(&ds);
    return path;
}

static v4r_index *open_ok(const char *path, int verify)
{
    v4r_index *ix = NULL;
    v4r_err err = {0};
    if (v4r_index_open(path, verify, &ix, &err))
        fail_msg("open %s: %s", path, err.msg);
    return ix;
}

/* ---- round trip ---- */

static void test_round_trip(void **state)
{
    (void)state;
    v4r_dataset ds;
    v4r_matrix m;
    small_dataset(&ds, &m, 100, 20, 8, 1);
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "a.idx");
    v4r_index_build_opts o;
    v4r_index_build_defaults(&o);
    o.keep = 4;
    o.history_splits = 1u << V4R_TRAIN;
    o.vectors_source = "random.npy";
    v4r_index_build_report rep;
    v4r_err err = {0};
    assert_int_equal(v4r_index_build(&ds, &m, &o, path, &rep, &err), 0);
    v4r_index *ix = open_ok(path, 1);
    assert_int_equal(v4r_index_n_items(ix), 100);
    assert_int_equal(v4r_index_dim(ix), 8);
    assert_int_equal(v4r_index_n_users(ix), 20);
    assert_int_equal(v4r_index_profile_length(ix), 10);
    assert_int_equal(v4r_index_storage(ix), V4R_INDEX_F32);
    assert_string_equal(v4r_index_checksum(ix), rep.checksum);
    char label[64];
    snprintf(label, sizeof label, "float32-%.12s", rep.checksum);
    assert_string_equal(v4r_index_version(ix), label);
    assert_string_equal(rep.version, label);
    assert_true(v4r_index_recall_vs_f32(ix) == 1);
    for (int32_t i = 0; i < 100; i++) {
        const char *id = v4r_index_item_id(ix, i);
        assert_string_equal(id, ds.item_id[i]);
        assert_int_equal(v4r_index_find_item(ix, id, strlen(id)), i);
    }
    assert_int_equal(v4r_index_find_item(ix, "i12x", 3), 12); /* by length */
    assert_int_equal(v4r_index_find_item(ix, "nope", 4), -1);
    assert_int_equal(v4r_index_find_user(ix, "u19", 3), 19);
    assert_int_equal(v4r_index_find_user(ix, "u20", 3), -1);
    /* histories: the last 4 of eval's chronological order */
    size_t *off;
    int32_t *all;
    v4r_user_histories(&ds, 1u << V4R_TRAIN, &off, &all);
    size_t total = 0;
    for (int32_t u = 0; u < 20; u++) {
        const int32_t *h;
        size_t n = v4r_index_user_history(ix, u, &h), full = off[u + 1] - off[u];
        size_t want = full < 4 ? full : 4;
        assert_int_equal(n, want);
        assert_memory_equal(h, all + off[u + 1] - want, want * sizeof *h);
        total += n;
        if (full > 1) /* train timestamps run backwards in file order: the oldest is the last line */
            assert_int_equal(all[off[u]], (int32_t)((u * 31 + (full - 1) * 17) % 100));
    }
    assert_int_equal(rep.n_history, total);
    free(off);
    free(all);
    /* vectors: eval's normalization, bit for bit */
    v4r_matrix norm = {v4r_malloc(sizeof(float) * 800), 100, 8};
    memcpy(norm.data, m.data, sizeof(float) * 800);
    assert_int_equal(v4r_repr_normalize(&norm, NULL, "x", NULL), 0);
    float row[8];
    for (int32_t i = 0; i < 100; i++) {
        v4r_index_item_vector(ix, i, row);
        assert_memory_equal(row, norm.data + i * 8, sizeof row);
    }
    json_error_t je;
    json_t *meta = json_loads(v4r_index_meta_json(ix), 0, &je);
    assert_non_null(meta);
    assert_string_equal(json_string_value(json_object_get(meta, "vectors")), "random.npy");
    assert_true(json_is_null(json_object_get(meta, "label")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(meta, "options"), "keep")), 4);
    assert_non_null(json_string_value(json_object_get(meta, "created")));
    json_decref(meta);
    v4r_index_close(ix);
    /* a label of one's own */
    o.label = "catalog-2024-06";
    assert_int_equal(v4r_index_build(&ds, &m, &o, path, &rep, &err), 0);
    ix = open_ok(path, 1);
    assert_string_equal(v4r_index_version(ix), "catalog-2024-06");
    v4r_index_close(ix);
    free(norm.data);
    v4r_matrix_free(&m);
    v4r_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

/* ---- damaged files ---- */

static void test_header_fields(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *path = build_small(dir, "a.idx", V4R_INDEX_I8, NULL);
    char *bad = v4r_path_join(dir, "bad.idx");
    size_t n;
    unsigned char *orig = read_bytes(path, &n), *b = v4r_malloc(n);
    /* every header byte: refused even without the checksum of the sections */
    for (size_t i = 0; i < H_BYTES; i++) {
        memcpy(b, orig, n);
        b[i] ^= 0x10;
        expect_refused(bad, b, n, 0, "header|section");
    }
    struct {
        size_t at;
        uint64_t value;
        const char *needle;
    } edits[] = {
        {H_VERSION, 3, "format version 3"},
        {H_VERSION, 2, "a version 2 file must have an IVF section"},
        {H_DTYPE, 7, "'dtype'"},
        {H_N_ITEMS, 0, "'n_items'"},
        {H_N_ITEMS, 101, "section 'item_offsets': length"},
        {H_SECTIONS + 16 * S_VECTORS, 0, "section 'vectors'"},
        {H_SECTIONS + 16 * S_HIST_ITEMS + 8, 1u << 30, "section 'history_items'"},
    };
    for (size_t e = 0; e < sizeof edits / sizeof *edits; e++) {
        memcpy(b, orig, n);
        if (edits[e].at == H_VERSION || edits[e].at == H_DTYPE) {
            for (int i = 0; i < 4; i++)
                b[edits[e].at + i] = (unsigned char)(edits[e].value >> (8 * i));
        } else {
            put_u64(b + edits[e].at, edits[e].value);
        }
        reseal(b);
        expect_refused(bad, b, n, 0, edits[e].needle);
    }
    /* a section offset moved off the 64-byte grid, and past the end */
    memcpy(b, orig, n);
    put_u64(b + H_SECTIONS + 16 * S_META, get_u64(orig + H_SECTIONS + 16 * S_META) + 8);
    reseal(b);
    expect_refused(bad, b, n, 0, "section 'meta': offset");
    memcpy(b, orig, n);
    put_u64(b + H_SECTIONS + 16 * S_META, ((uint64_t)n + 64 * 3) / 64 * 64);
    reseal(b);
    expect_refused(bad, b, n, 0, "past the end");
    memcpy(b, orig, n);
    memcpy(b, "V4RINDEY", 8);
    expect_refused(bad, b, n, 0, "'magic'");
    memcpy(b, orig, n);
    memset(b + H_LABEL, 'x', 128); /* no NUL */
    reseal(b);
    expect_refused(bad, b, n, 0, "'label'");
    free(b);
    free(orig);
    tu_rmtree(dir);
    free(dir);
    free(path);
    free(bad);
}

static void test_sections_and_truncation(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *path = build_small(dir, "a.idx", V4R_INDEX_I8, NULL);
    char *bad = v4r_path_join(dir, "bad.idx");
    size_t n;
    unsigned char *orig = read_bytes(path, &n), *b = v4r_malloc(n + 1);
    /* a flipped byte anywhere in a section: the checksum names it */
    for (int s = 0; s < NSEC; s++) {
        uint64_t off = get_u64(orig + H_SECTIONS + 16 * s), len = get_u64(orig + H_SECTIONS + 16 * s + 8);
        assert_true(len > 0);
        assert_int_equal(off % 64, 0);
        uint64_t at[3] = {off, off + len / 2, off + len - 1};
        char needle[64];
        snprintf(needle, sizeof needle, "section '%s'|'sha256'", sec_names[s]);
        for (int i = 0; i < 3; i++) {
            memcpy(b, orig, n);
            b[at[i]] ^= 0x01;
            expect_refused(bad, b, n, 1, needle);
        }
        memcpy(b, orig, n); /* the padding after a section is covered too */
        if (s + 1 < NSEC && off + len < get_u64(orig + H_SECTIONS + 16 * (s + 1))) {
            b[off + len] ^= 1;
            expect_refused(bad, b, n, 1, "'sha256'");
        }
    }
    /* a flipped vector byte is only the checksum's to find */
    uint64_t voff = get_u64(orig + H_SECTIONS + 16 * S_VECTORS);
    memcpy(b, orig, n);
    b[voff + 3] ^= 0x01;
    write_bytes(bad, b, n);
    v4r_index_close(open_ok(bad, 0));
    expect_refused(bad, b, n, 1, "'sha256'");
    /* broken tables, found without the checksum */
    struct {
        int sec;
        size_t byte;
        unsigned char value;
        const char *needle;
    } edits[] = {
        {S_ITEM_OFF, 8 * 5, 0xff, "section 'item_offsets'"},
        {S_ITEM_OFF, 0, 1, "section 'item_offsets': the first offset"},
        {S_ITEM_STR, 4, 0, "section 'item_ids': id 1"}, /* "i0\0i1\0": "i\0\0" */
        {S_USER_OFF, 8 * 3, 0x7f, "section 'user_offsets'"},
        {S_HIST_OFF, 8 * 2, 0xff, "section 'history_offsets'"},
        {S_HIST_ITEMS, 3, 0x7f, "section 'history_items'"},
        {S_SCALES, 3, 0xff, "section 'scales'"},
        {S_META, 0, '[', "section 'meta'"},
    };
    for (size_t e = 0; e < sizeof edits / sizeof *edits; e++) {
        memcpy(b, orig, n);
        b[get_u64(orig + H_SECTIONS + 16 * edits[e].sec) + edits[e].byte] = edits[e].value;
        expect_refused(bad, b, n, 0, edits[e].needle);
    }
    /* a repeated item id: "i1" becomes "i0" */
    memcpy(b, orig, n);
    b[get_u64(orig + H_SECTIONS + 16 * S_ITEM_STR) + 4] = '0';
    expect_refused(bad, b, n, 0, "repeats");
    /* truncations and an appended byte */
    size_t cuts[] = {0, 7, 100, H_BYTES - 1, H_BYTES, H_BYTES + 1, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++)
        expect_refused(bad, orig, cuts[i], 0, "truncated");
    memcpy(b, orig, n);
    b[n] = 0;
    expect_refused(bad, b, n + 1, 0, "bytes appended");
    /* the original is fine; a missing file is an i/o error */
    v4r_index_close(open_ok(path, 1));
    v4r_index *ix = NULL;
    v4r_err err = {0};
    char *missing = v4r_path_join(dir, "missing.idx");
    assert_int_equal(v4r_index_open(missing, 0, &ix, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, missing));
    free(missing);
    free(b);
    free(orig);
    tu_rmtree(dir);
    free(dir);
    free(path);
    free(bad);
}

static void test_bad_vectors(void **state)
{
    (void)state;
    v4r_dataset ds;
    v4r_matrix m;
    small_dataset(&ds, &m, 50, 10, 6, 2);
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "v.idx");
    v4r_index_build_opts o;
    v4r_index_build_defaults(&o);
    v4r_index_build_report rep;
    v4r_err err = {0};
    m.rows = 49;
    assert_int_equal(v4r_index_build(&ds, &m, &o, path, &rep, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "49 rows"));
    m.rows = 50;
    memset(m.data + 7 * 6, 0, 6 * sizeof(float));
    assert_int_equal(v4r_index_build(&ds, &m, &o, path, &rep, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "row 7 (item 'i7') is a zero vector"));
    m.data[7 * 6] = 1;
    m.data[30 * 6 + 2] = NAN;
    assert_int_equal(v4r_index_build(&ds, &m, &o, path, &rep, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "row 30 (item 'i30'), column 2: NaN"));
    m.data[30 * 6 + 2] = INFINITY;
    assert_int_equal(v4r_index_build(&ds, &m, &o, path, &rep, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "infinite"));
    assert_false(v4r_file_exists(path)); /* nothing written */
    v4r_matrix_free(&m);
    v4r_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

/* ---- against eval ---- */

typedef struct {
    char user[32], item[32];
    int rank;
    char score[32];
} rank_row;

/* Rows of a rankings TSV (skip the first `skip` columns) after its header. */
static rank_row *parse_rankings(const char *text, int skip, size_t *n)
{
    size_t cap = 0;
    rank_row *rows = NULL;
    *n = 0;
    const char *line = strchr(text, '\n');
    while (line && line[1]) {
        line++;
        char buf[256];
        size_t len = strcspn(line, "\n");
        assert_true(len < sizeof buf);
        memcpy(buf, line, len);
        buf[len] = 0;
        char *f[8];
        assert_int_equal(v4r_tsv_split(buf, f, 8), (size_t)(4 + skip));
        v4r_grow((void **)&rows, &cap, *n + 1, sizeof *rows);
        rank_row *r = &rows[(*n)++];
        snprintf(r->user, sizeof r->user, "%s", f[skip]);
        r->rank = atoi(f[skip + 1]);
        snprintf(r->item, sizeof r->item, "%s", f[skip + 2]);
        snprintf(r->score, sizeof r->score, "%s", f[skip + 3]);
        line = strchr(line, '\n');
    }
    return rows;
}

static void test_float32_equals_eval(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *out = NULL;
    assert_int_equal(tu_run(NULL,
                            "dataset synth -o '%s/ds' --users 300 --items 1200 --interactions 4000 --dim-title 16 "
                            "--dim-visual 16 --dim-desc 40 --seed 5",
                            dir),
                     0);
    assert_int_equal(tu_run(&out, "eval --dataset '%s/ds' --model m=features/description.npy --k 5,20 "
                                  "--bootstrap 0 --rankings '%s/rk.tsv' -q", dir, dir),
                     0);
    free(out);
    assert_int_equal(tu_run(&out, "index build --dataset '%s/ds' --vectors features/description.npy "
                                  "--history-splits train --keep 0 -o '%s/f32.idx' -q", dir, dir),
                     0);
    free(out);
    char *rk = tu_read(dir, "rk.tsv");
    size_t ne, nr;
    rank_row *ev = parse_rankings(rk, 1, &ne);
    /* every evaluated user, in eval's order, one per line */
    char *users = v4r_malloc(ne * 32 + 1);
    size_t used = 0;
    for (size_t i = 0; i < ne; i++)
        if (ev[i].rank == 1)
            used += (size_t)sprintf(users + used, "%s\n", ev[i].user);
    users[used] = 0;
    tu_write(dir, "users.txt", users);
    assert_int_equal(tu_run(&out, "recommend --index '%s/f32.idx' --users '%s/users.txt' -k 20", dir, dir), 0);
    rank_row *rc = parse_rankings(out, 0, &nr);
    assert_true(ne > 250 * 20);
    assert_int_equal(nr, ne);
    int exact_scores = v4r_cpu_has_avx512(); /* eval's AVX-512 kernel: the same FMA chain */
    size_t near_ties = 0;
    for (size_t i = 0; i < ne; i++) {
        assert_string_equal(rc[i].user, ev[i].user);
        assert_int_equal(rc[i].rank, ev[i].rank);
        if (exact_scores) {
            assert_string_equal(rc[i].item, ev[i].item);
            assert_string_equal(rc[i].score, ev[i].score);
        } else if (strcmp(rc[i].item, ev[i].item)) { /* eval's BLAS path rounds by position */
            assert_true(fabs(atof(rc[i].score) - atof(ev[i].score)) < 1e-5);
            near_ties++;
        }
    }
    assert_true(near_ties * 100 <= ne);
    free(ev);
    free(rc);
    free(rk);
    free(out);
    free(users);
    tu_rmtree(dir);
    free(dir);
}

/* ---- float16 / int8 recall ---- */

static void search_all_users(const v4r_index *ix, size_t k, int32_t **items, size_t *n)
{
    size_t nu = v4r_index_n_users(ix);
    v4r_index_query *q = v4r_calloc(nu, sizeof *q);
    *n = 0;
    for (size_t u = 0; u < nu; u++) {
        q[*n].n_history = v4r_index_user_history(ix, (int32_t)u, &q[*n].history);
        q[*n].k = k;
        *n += q[*n].n_history > 0;
    }
    *items = v4r_malloc(*n * k * sizeof **items);
    float *scores = v4r_malloc(*n * k * sizeof *scores);
    v4r_err err = {0};
    assert_int_equal(v4r_index_search(ix, q, *n, k, *items, scores, &err), 0);
    free(q);
    free(scores);
}

static void test_quantized_recall(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *ds_dir = v4r_path_join(dir, "ds");
    assert_int_equal(tu_run(NULL,
                            "dataset synth -o '%s' --users 400 --items 3000 --interactions 5000 --dim-title 16 "
                            "--dim-visual 16 --dim-desc 96 --seed 9",
                            ds_dir),
                     0);
    v4r_dataset ds;
    v4r_matrix m;
    v4r_err err = {0};
    assert_int_equal(v4r_dataset_load(ds_dir, &ds, &err), 0);
    char *vec = v4r_path_join(ds_dir, "features/description.npy");
    assert_int_equal(v4r_repr_load(vec, ds.n_items, &m, &err), 0);
    v4r_index *ix[3];
    double stored[3];
    for (int t = 0; t < 3; t++) {
        v4r_index_build_opts o;
        v4r_index_build_defaults(&o);
        o.dtype = (v4r_index_dtype)t;
        o.check_users = 100000; /* every user with a history */
        char name[32];
        snprintf(name, sizeof name, "%s.idx", v4r_index_dtype_name(o.dtype));
        char *path = v4r_path_join(dir, name);
        v4r_index_build_report rep;
        assert_int_equal(v4r_index_build(&ds, &m, &o, path, &rep, &err), 0);
        ix[t] = open_ok(path, 1);
        stored[t] = v4r_index_recall_vs_f32(ix[t]);
        assert_true(stored[t] == rep.recall_vs_f32);
        json_error_t je;
        json_t *meta = json_loads(v4r_index_meta_json(ix[t]), 0, &je);
        json_t *check = json_object_get(meta, "recall_check");
        if (t == 0) {
            assert_true(json_is_null(check));
            assert_true(stored[t] == 1);
        } else {
            assert_true(json_real_value(json_object_get(check, "recall_vs_f32")) == stored[t]);
            assert_int_equal(json_integer_value(json_object_get(check, "users")), rep.recall_users);
            printf("recall@10 of %s vs float32: %.4f over %zu users\n", name, stored[t], rep.recall_users);
            assert_true(stored[t] >= 0.95 && stored[t] < 1.0 + 1e-12);
        }
        json_decref(meta);
        free(path);
    }
    /* the stored number is what the three files give */
    int32_t *ref, *got;
    size_t n, n2;
    search_all_users(ix[0], 10, &ref, &n);
    for (int t = 1; t < 3; t++) {
        search_all_users(ix[t], 10, &got, &n2);
        assert_int_equal(n2, n);
        size_t hit = 0;
        for (size_t u = 0; u < n; u++)
            for (size_t i = 0; i < 10; i++)
                for (size_t j = 0; j < 10; j++)
                    hit += got[u * 10 + i] == ref[u * 10 + j] && ref[u * 10 + j] >= 0;
        assert_true(fabs((double)hit / (double)(n * 10) - stored[t]) < 1e-9);
        free(got);
    }
    free(ref);
    for (int t = 0; t < 3; t++)
        v4r_index_close(ix[t]);
    v4r_matrix_free(&m);
    v4r_dataset_free(&ds);
    free(vec);
    free(ds_dir);
    tu_rmtree(dir);
    free(dir);
}

/* ---- masks, batches, vectors ---- */

/* The reference: every item scored with the same FMA chain over the stored (dequantized) vector,
 * sorted by (score desc, index asc), blocked items skipped. */
static void reference(const v4r_index *ix, const v4r_index_query *q, int32_t *items, float *scores)
{
    size_t n = v4r_index_n_items(ix), d = v4r_index_dim(ix);
    float *prof = v4r_malloc(d * sizeof *prof), *row = v4r_malloc(d * sizeof *row);
    if (q->vector) {
        memcpy(prof, q->vector, d * sizeof *prof);
    } else { /* eval's profile over the dequantized rows */
        v4r_matrix rows = {v4r_malloc(n * d * sizeof(float)), n, d};
        for (size_t i = 0; i < n; i++)
            v4r_index_item_vector(ix, (int32_t)i, rows.data + i * d);
        v4r_profile(q->history, q->n_history, v4r_index_profile_length(ix), &rows, prof);
        v4r_matrix_free(&rows);
    }
    uint8_t *ok = v4r_calloc(n, 1);
    for (size_t i = 0; i < n; i++)
        ok[i] = !q->candidates;
    for (size_t i = 0; i < q->n_candidates; i++)
        ok[q->candidates[i]] = 1;
    for (size_t i = 0; !q->keep_history && i < q->n_history; i++)
        ok[q->history[i]] = 0;
    for (size_t i = 0; i < q->n_exclude; i++)
        ok[q->exclude[i]] = 0;
    size_t got = 0; /* a sorted list; a later item goes after equal scores */
    for (size_t j = 0; j < q->k; j++) {
        items[j] = -1;
        scores[j] = 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!ok[i])
            continue;
        v4r_index_item_vector(ix, (int32_t)i, row);
        float s = 0;
        for (size_t k = 0; k < d; k++)
            s = fmaf(prof[k], row[k], s);
        size_t at = got;
        while (at > 0 && scores[at - 1] < s)
            at--;
        if (at >= q->k)
            continue;
        size_t last = got < q->k ? got : q->k - 1;
        memmove(items + at + 1, items + at, (last - at) * sizeof *items);
        memmove(scores + at + 1, scores + at, (last - at) * sizeof *scores);
        items[at] = (int32_t)i;
        scores[at] = s;
        got += got < q->k;
    }
    free(prof);
    free(row);
    free(ok);
}

static void expect_reference(const v4r_index *ix, const v4r_index_query *q, size_t kmax)
{
    int32_t *items = v4r_malloc(kmax * sizeof *items), *want = v4r_malloc(kmax * sizeof *want);
    float *scores = v4r_malloc(kmax * sizeof *scores), *wants = v4r_malloc(kmax * sizeof *wants);
    v4r_err err = {0};
    assert_int_equal(v4r_index_search(ix, q, 1, kmax, items, scores, &err), 0);
    reference(ix, q, want, wants);
    for (size_t j = 0; j < kmax; j++) {
        int32_t w = j < q->k ? want[j] : -1;
        float ws = j < q->k ? wants[j] : 0;
        if (items[j] != w || memcmp(&scores[j], &ws, sizeof ws))
            fail_msg("rank %zu: item %d score %.9g, the reference %d %.9g", j, items[j], (double)scores[j], w,
                     (double)ws);
    }
    free(items);
    free(want);
    free(scores);
    free(wants);
}

static char *build_random(const char *dir, v4r_index_dtype dtype, size_t ni, size_t d)
{
    v4r_dataset ds;
    v4r_matrix m;
    small_dataset(&ds, &m, ni, 30, d, 4);
    v4r_index_build_opts o;
    v4r_index_build_defaults(&o);
    o.dtype = dtype;
    o.check_users = 0;
    char *path = v4r_path_join(dir, v4r_index_dtype_name(dtype));
    v4r_err err = {0};
    v4r_index_build_report rep;
    assert_int_equal(v4r_index_build(&ds, &m, &o, path, &rep, &err), 0);
    v4r_matrix_free(&m);
    v4r_dataset_free(&ds);
    return path;
}

static void test_masks(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    for (int t = 0; t < 2; t++) { /* float32, float16: dequantized exactly, the reference is exact */
        char *path = build_random(dir, (v4r_index_dtype)t, 803, 37);
        v4r_index *ix = open_ok(path, 1);
        int32_t hist[] = {5, 9, 400, 9, 77, 802, 0, 13, 14, 15, 16, 17};
        int32_t excl[] = {3, 3, 801, 100};
        v4r_index_query q;
        memset(&q, 0, sizeof q);
        q.history = hist;
        q.n_history = 12;
        q.k = 25;
        expect_reference(ix, &q, 30);
        q.keep_history = 1; /* history items may come back: the profile's own items rank high */
        expect_reference(ix, &q, 25);
        int32_t items[25];
        float scores[25];
        v4r_err err = {0};
        assert_int_equal(v4r_index_search(ix, &q, 1, 25, items, scores, &err), 0);
        int has_history = 0;
        for (int j = 0; j < 25; j++)
            for (int h = 0; h < 12; h++)
                has_history |= items[j] == hist[h];
        assert_true(has_history);
        q.keep_history = 0;
        q.exclude = excl;
        q.n_exclude = 4;
        expect_reference(ix, &q, 25);
        /* few candidates (scored one by one), with repeats and blocked ones */
        int32_t few[] = {700, 5, 3, 700, 12, 802, 450, 451, 1, 2};
        q.candidates = few;
        q.n_candidates = 10;
        expect_reference(ix, &q, 25);
        q.k = 3;
        expect_reference(ix, &q, 25);
        /* many candidates (scanned with the rest) */
        int32_t *many = v4r_malloc(600 * sizeof *many);
        for (int i = 0; i < 600; i++)
            many[i] = (i * 7) % 803;
        q.candidates = many;
        q.n_candidates = 600;
        q.k = 25;
        expect_reference(ix, &q, 25);
        /* nothing left: padding */
        int32_t blocked[] = {3};
        q.candidates = blocked;
        q.n_candidates = 1;
        assert_int_equal(v4r_index_search(ix, &q, 1, 25, items, scores, &err), 0);
        for (int j = 0; j < 25; j++)
            assert_true(items[j] == -1 && scores[j] == 0);
        free(many);
        v4r_index_close(ix);
        free(path);
    }
    tu_rmtree(dir);
    free(dir);
}

static void test_query_vector_and_errors(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *path = build_random(dir, V4R_INDEX_F32, 200, 16);
    v4r_index *ix = open_ok(path, 0);
    float v[16];
    for (int k = 0; k < 16; k++)
        v[k] = (float)(k % 5) - 1.5f; /* used as it is, unnormalized */
    int32_t hist[] = {1, 2, 3};
    v4r_index_query q;
    memset(&q, 0, sizeof q);
    q.vector = v;
    q.k = 12;
    expect_reference(ix, &q, 12);
    q.history = hist; /* with a vector, the history only excludes */
    q.n_history = 3;
    expect_reference(ix, &q, 12);
    int32_t items[12];
    float scores[12];
    v4r_err err = {0};
    q.k = 13;
    assert_int_equal(v4r_index_search(ix, &q, 1, 12, items, scores, &err), V4R_EUSAGE);
    assert_non_null(strstr(err.msg, "kmax"));
    q.k = 5;
    v[4] = NAN;
    assert_int_equal(v4r_index_search(ix, &q, 1, 12, items, scores, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "vector entry 4"));
    q.vector = NULL;
    q.n_history = 0;
    assert_int_equal(v4r_index_search(ix, &q, 1, 12, items, scores, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "no history"));
    int32_t wild[] = {200};
    q.history = wild;
    q.n_history = 1;
    assert_int_equal(v4r_index_search(ix, &q, 1, 12, items, scores, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "history entry 0 is item 200"));
    q.history = hist;
    q.n_history = 3;
    q.exclude = wild;
    q.n_exclude = 1;
    assert_int_equal(v4r_index_search(ix, &q, 1, 12, items, scores, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "exclude"));
    v4r_index_close(ix);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* nq mixed queries in one call equal nq calls of one, bit for bit, for every dtype and kernel, and
 * with the scan split over threads. */
static void test_batch_equals_singles(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    enum { NQ = 45, KMAX = 15 };
    for (int t = 0; t < 3; t++) {
        char *path = build_random(dir, (v4r_index_dtype)t, 1000, 48);
        int32_t *first = NULL;
        float *first_s = NULL;
        const char *kernels[] = {"blas", "avx512"};
        for (int kn = 0; kn < (v4r_cpu_has_avx512() ? 2 : 1); kn++) {
            setenv("VLM4REC_KERNEL", kernels[kn], 1);
            v4r_index *ix = open_ok(path, 0);
            unsetenv("VLM4REC_KERNEL");
            v4r_index_query q[NQ];
            float vec[48];
            int32_t cand[600]; /* the first 40: scored one by one; all 600: scanned */
            for (int i = 0; i < 48; i++)
                vec[i] = (float)sin(i);
            for (int i = 0; i < 600; i++)
                cand[i] = (i * 37) % 1000;
            size_t n = 0;
            for (int u = 0; n < NQ; u = (u + 1) % 30) {
                memset(&q[n], 0, sizeof q[n]);
                q[n].n_history = v4r_index_user_history(ix, u, &q[n].history);
                if (!q[n].n_history)
                    continue;
                q[n].k = 1 + n % KMAX;
                q[n].vector = n % 11 == 4 ? vec : NULL;
                q[n].candidates = n % 5 == 2 || n % 7 == 5 ? cand : NULL;
                q[n].n_candidates = n % 5 == 2 ? 40 : n % 7 == 5 ? 600 : 0;
                q[n].keep_history = n % 3 == 1;
                n++;
            }
            int32_t items[NQ * KMAX], one[KMAX];
            float scores[NQ * KMAX], one_s[KMAX];
            v4r_err err = {0};
            assert_int_equal(v4r_index_search(ix, q, NQ, KMAX, items, scores, &err), 0);
            for (size_t i = 0; i < NQ; i++) {
                assert_int_equal(v4r_index_search(ix, &q[i], 1, KMAX, one, one_s, &err), 0);
                assert_memory_equal(one, items + i * KMAX, sizeof one);
                assert_memory_equal(one_s, scores + i * KMAX, sizeof one_s);
            }
            for (int threads = 2; threads <= 5; threads += 3) { /* the scan split over threads */
                int32_t split[NQ * KMAX];
                float split_s[NQ * KMAX];
                assert_int_equal(v4r_index_search_threads(ix, q, NQ, KMAX, threads, split, split_s, &err), 0);
                assert_memory_equal(split, items, sizeof items);
                assert_memory_equal(split_s, scores, sizeof scores);
            }
            if (!first) { /* the kernels agree bit for bit */
                first = v4r_malloc(sizeof items);
                first_s = v4r_malloc(sizeof scores);
                memcpy(first, items, sizeof items);
                memcpy(first_s, scores, sizeof scores);
            } else {
                assert_memory_equal(first, items, sizeof items);
                assert_memory_equal(first_s, scores, sizeof scores);
            }
            v4r_index_close(ix);
        }
        free(first);
        free(first_s);
        free(path);
    }
    tu_rmtree(dir);
    free(dir);
}

/* ---- the commands ---- */

static void expect_run(int code, const char *needle, char *out_owned)
{
    (void)code;
    if (!strstr(out_owned, needle))
        fail_msg("output lacks '%s':\n%s", needle, out_owned);
    free(out_owned);
}

static void test_cli(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *out = NULL;
    tu_write(dir, "ds/items.tsv", "item\ttitle\timage\na\tA\t\nb\tB\t\nc\tC\t\nd\tD\t\ne\tE\t\nf\tF\t\n");
    tu_write(dir, "ds/users.tsv", "user\nu0\nu1\nu2\nu3\n");
    tu_write(dir, "ds/train.tsv", "user\titem\ttimestamp\nu0\ta\t1\nu0\tb\t2\nu1\tc\t1\nu2\td\t1\n");
    tu_write(dir, "ds/valid.tsv", "user\titem\ttimestamp\nu0\tc\t3\nu1\te\t2\n");
    tu_write(dir, "ds/test.tsv", "user\titem\ttimestamp\nu0\tf\t4\n");
    float v[12] = {1, 0, 0.9f, 0.1f, 0.8f, 0.3f, 0, 1, 0.5f, 0.5f, -1, 0};
    char *npy = v4r_path_join(dir, "ds/v.npy");
    assert_int_equal(v4r_npy_write(npy, v, 6, 2, NULL), 0);
    int rc = tu_run(&out, "index build --dataset '%s/ds' --vectors v.npy -o '%s/x.idx' --dtype int8 --label L1 -q",
                    dir, dir);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "items: 6 x 2 (int8)"));
    assert_non_null(strstr(out, "version: L1"));
    assert_non_null(strstr(out, "recall@10 vs float32: "));
    free(out);
    rc = tu_run(&out, "index info '%s/x.idx' --verify --json", dir);
    assert_int_equal(rc, 0);
    json_error_t je;
    json_t *info = json_loads(out, 0, &je);
    assert_non_null(info);
    assert_string_equal(json_string_value(json_object_get(info, "version")), "L1");
    assert_int_equal(json_integer_value(json_object_get(info, "users")), 4);
    assert_true(json_is_true(json_object_get(info, "verified")));
    json_decref(info);
    free(out);
    /* u0: history a, b, c, f (train, valid, test), last 10 kept: recommends d, e */
    rc = tu_run(&out, "recommend --index '%s/x.idx' --user u0 -k 3", dir);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "user\trank\titem\tscore\nu0\t1\t"));
    assert_null(strstr(out, "\ta\t"));
    free(out);
    /* unknown history items: reported and skipped */
    rc = tu_run(&out, "recommend --index '%s/x.idx' --history a,zz,b --json -k 2", dir);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "warning: unknown item 'zz' in --history"));
    assert_non_null(strstr(out, "\"user\":null"));
    assert_non_null(strstr(out, "\"unknown\":[\"zz\"]"));
    free(out);
    rc = tu_run(&out, "recommend --index '%s/x.idx' --history zz,yy", dir);
    expect_run(rc, "no known item", out);
    assert_int_equal(rc, 3);
    /* unknown user, a user without history, and in a list: exit 3 naming the line */
    rc = tu_run(&out, "recommend --index '%s/x.idx' --user nobody", dir);
    assert_int_equal(rc, 3);
    expect_run(rc, "unknown user 'nobody'", out);
    rc = tu_run(&out, "recommend --index '%s/x.idx' --user u3", dir);
    assert_int_equal(rc, 3);
    expect_run(rc, "no history", out);
    tu_write(dir, "users.txt", "u0\n\nu1\nghost\n");
    rc = tu_run(&out, "recommend --index '%s/x.idx' --users '%s/users.txt'", dir, dir);
    assert_int_equal(rc, 3);
    expect_run(rc, "users.txt:4: unknown user 'ghost'", out);
    /* candidates from a file; stdin users */
    tu_write(dir, "cand.txt", "e\nqq\n");
    tu_write(dir, "known.txt", "u0\nu1\n");
    rc = tu_run(&out, "recommend --index '%s/x.idx' --users - --candidates @'%s/cand.txt' --json < '%s/known.txt' "
                      "2>/dev/null",
                dir, dir, dir);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "{\"user\":\"u0\",\"items\":[{\"item\":\"e\",\"score\":"));
    assert_non_null(strstr(out, "{\"user\":\"u1\",\"items\":[],\"unknown\":[\"qq\"]}"));
    free(out);
    /* missing index: i/o error; usage errors */
    rc = tu_run(&out, "recommend --index '%s/none.idx' --user u0", dir);
    assert_int_equal(rc, 4);
    expect_run(rc, "none.idx", out);
    rc = tu_run(&out, "recommend --index '%s/x.idx' --user u0 --history a", dir);
    assert_int_equal(rc, 2);
    free(out);
    rc = tu_run(&out, "index build --dataset '%s/ds' --vectors v.npy -o '%s/y.idx' --dtype int4", dir, dir);
    assert_int_equal(rc, 2);
    free(out);
    rc = tu_run(&out, "index build --dataset '%s/ds' --vectors missing.npy -o '%s/y.idx'", dir, dir);
    assert_int_equal(rc, 4);
    free(out);
    char *y = v4r_path_join(dir, "y.idx");
    assert_false(v4r_file_exists(y)); /* nothing written by the failed builds */
    free(y);
    rc = tu_run(&out, "index info '%s/users.txt'", dir);
    assert_int_equal(rc, 3);
    expect_run(rc, "truncated", out);
    free(npy);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_header_fields),
        cmocka_unit_test(test_sections_and_truncation),
        cmocka_unit_test(test_bad_vectors),
        cmocka_unit_test(test_float32_equals_eval),
        cmocka_unit_test(test_quantized_recall),
        cmocka_unit_test(test_masks),
        cmocka_unit_test(test_query_vector_and_errors),
        cmocka_unit_test(test_batch_equals_singles),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

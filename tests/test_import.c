/* Importers: the Kaggle, MMRec and plain TSV layouts, through the library and the CLI; every error
 * path names file and line and leaves OUT absent or untouched; --dedupe. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vlm4rec/data.h"
#include "vlm4rec/io.h"

typedef int (*import_fn)(const char *, const char *, const v4r_import_opts *, v4r_err *);

static int dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void write_f32(const char *dir, const char *name, const float *data, size_t rows, size_t cols)
{
    char *path = v4r_path_join(dir, name);
    v4r_err err = {0};
    assert_int_equal(v4r_mkdir_p(dir, &err), 0);
    assert_int_equal(v4r_npy_write(path, data, rows, cols, &err), 0);
    free(path);
}

/* A C-order float64 .npy, as numpy writes it. */
static void write_f64(const char *dir, const char *name, const double *data, size_t rows, size_t cols)
{
    char dict[128];
    snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (%zu, %zu), }", rows, cols);
    size_t dlen = strlen(dict), pad = (64 - (10 + dlen + 1) % 64) % 64, hlen = dlen + pad + 1;
    char *path = v4r_path_join(dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    pre[8] = (unsigned char)(hlen & 255);
    pre[9] = (unsigned char)(hlen >> 8);
    fwrite(pre, 1, 10, fp);
    fputs(dict, fp);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', fp);
    fputc('\n', fp);
    fwrite(data, sizeof *data, rows * cols, fp);
    fclose(fp);
    free(path);
}

static void assert_same_bytes(const char *a_dir, const char *a, const char *b_dir, const char *b)
{
    char *pa = v4r_path_join(a_dir, a), *pb = v4r_path_join(b_dir, b), *da, *db;
    size_t na, nb;
    assert_int_equal(v4r_read_file(pa, &da, &na, NULL), 0);
    assert_int_equal(v4r_read_file(pb, &db, &nb, NULL), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(da, db, na);
    free(da);
    free(db);
    free(pa);
    free(pb);
}

static void assert_msg(const v4r_err *err, const char *needle)
{
    if (!strstr(err->msg, needle))
        fail_msg("message '%s' lacks '%s'", err->msg, needle);
}

/* Runs an import expected to fail with V4R_EINPUT and a message holding each needle (NULL-ended),
 * and checks OUT was not created. */
static void expect_fail(import_fn fn, const char *src, const char *out, int dedupe, ...)
{
    v4r_import_opts o = {dedupe};
    v4r_err err = {0};
    int rc = fn(src, out, &o, &err);
    if (rc != V4R_EINPUT)
        fail_msg("expected V4R_EINPUT, got %d (%s)", rc, err.msg);
    va_list ap;
    va_start(ap, dedupe);
    const char *needle;
    while ((needle = va_arg(ap, const char *)) != NULL)
        assert_msg(&err, needle);
    va_end(ap);
    assert_false(dir_exists(out));
}

/* Checks split s holds exactly the (user, item, timestamp or -1) triples given. */
static void check_split(const v4r_dataset *ds, int s, size_t n, const char *const *users, const char *const *items,
                        const long long *ts)
{
    const v4r_split *sp = &ds->split[s];
    assert_int_equal(sp->n, n);
    for (size_t k = 0; k < n; k++) {
        assert_string_equal(ds->user_id[sp->user[k]], users[k]);
        assert_string_equal(ds->item_id[sp->item[k]], items[k]);
        if (ts[k] < 0) {
            assert_int_equal(sp->has_ts[k], 0);
        } else {
            assert_int_equal(sp->has_ts[k], 1);
            assert_int_equal(sp->ts[k], ts[k]);
        }
    }
}

/* ---- Kaggle ---- */

static const float kg_text[6] = {0.5f, -1.25f, 3.0e-8f, 7.0f, -0.0f, 1e30f};
static const double kg_image[6] = {0.1, 0.2, 1.0 / 3.0, -4.5, 1e-300, 2.5};

static void kaggle_source(const char *src)
{
    tu_write(src, "users.txt", "User_ID,age\nu1,30\nu2,\n\"u,3\",41\n");
    tu_write(src, "items.txt",
             "\xEF\xBB\xBFitem_id,Title,imUrl,extra\n"
             "i1,\"Shoe, red \"\"classic\"\"\",http://x/1.jpg,a\n"
             "i2,\"two\nlines\",,b\n"
             "i3,Hat,img/3.jpg,c\n");
    tu_write(src, "train.txt",
             "user_id,item_id,rating,unixReviewTime\n"
             "u1,i1,5,1355616000\n"
             "u1,i2,4,1355616001.0\n"
             "\"u,3\",i1,3,\n"
             "\n"
             "u2,i3,1,7\n");
    tu_write(src, "validation.txt", "reviewerID\tasin\nu1\ti3\nu2\ti1\n");
    tu_write(src, "test.txt", "uid,iid,time\r\nu2,i2,42\r\n");
    write_f32(src, "embed_text.npy", kg_text, 3, 2);
    write_f64(src, "embed_image.npy", kg_image, 3, 2);
}

static void check_kaggle(const char *out, const char *src)
{
    v4r_dataset ds;
    v4r_err err = {0};
    if (v4r_dataset_load(out, &ds, &err))
        fail_msg("load: %s", err.msg);
    assert_int_equal(ds.n_users, 3);
    assert_string_equal(ds.user_id[0], "u1");
    assert_string_equal(ds.user_id[1], "u2");
    assert_string_equal(ds.user_id[2], "u,3");
    assert_int_equal(ds.n_items, 3);
    assert_string_equal(ds.item_id[0], "i1");
    assert_string_equal(ds.item_title[0], "Shoe, red \"classic\"");
    assert_string_equal(ds.item_image[0], "http://x/1.jpg");
    assert_string_equal(ds.item_id[1], "i2");
    assert_string_equal(ds.item_title[1], "two\nlines");
    assert_string_equal(ds.item_image[1], "");
    assert_string_equal(ds.item_title[2], "Hat");
    assert_string_equal(ds.item_image[2], "img/3.jpg");
    {
        const char *u[] = {"u1", "u1", "u,3", "u2"}, *i[] = {"i1", "i2", "i1", "i3"};
        const long long ts[] = {1355616000, 1355616001, -1, 7};
        check_split(&ds, V4R_TRAIN, 4, u, i, ts);
    }
    {
        const char *u[] = {"u1", "u2"}, *i[] = {"i3", "i1"};
        const long long ts[] = {-1, -1};
        check_split(&ds, V4R_VALID, 2, u, i, ts);
    }
    {
        const char *u[] = {"u2"}, *i[] = {"i2"};
        const long long ts[] = {42};
        check_split(&ds, V4R_TEST, 1, u, i, ts);
    }
    v4r_dataset_free(&ds);
    assert_same_bytes(src, "embed_text.npy", out, "features/text.npy");
    char *p = v4r_path_join(out, "features/image.npy");
    v4r_matrix m;
    assert_int_equal(v4r_npy_read(p, &m, &err), 0);
    assert_int_equal(m.rows, 3);
    assert_int_equal(m.cols, 2);
    for (int k = 0; k < 6; k++)
        assert_true(m.data[k] == (float)kg_image[k]);
    v4r_matrix_free(&m);
    free(p);
    /* written as float32 */
    char *raw;
    size_t len;
    p = v4r_path_join(out, "features/image.npy");
    assert_int_equal(v4r_read_file(p, &raw, &len, &err), 0);
    assert_true(len > 10);
    assert_non_null(strstr(raw + 10, "'descr': '<f4'"));
    assert_int_equal(len, 128 + 6 * sizeof(float));
    free(raw);
    free(p);
}

static void test_kaggle_import(void **state)
{
    char *tmp = tu_tmpdir(), *src = v4r_path_join(tmp, "src"), *out = v4r_path_join(tmp, "out/ds");
    kaggle_source(src);
    v4r_import_opts o = {0};
    v4r_err err = {0};
    if (v4r_import_kaggle(src, out, &o, &err))
        fail_msg("import: %s", err.msg);
    check_kaggle(out, src);
    /* the same through the CLI */
    char *out2 = v4r_path_join(tmp, "cli"), *log;
    int code = tu_run(&log, "dataset import --format kaggle '%s' -o '%s'", src, out2);
    if (code != 0)
        fail_msg("exit %d: %s", code, log);
    free(log);
    check_kaggle(out2, src);
    free(out2);
    free(src);
    free(out);
    tu_rmtree(tmp);
    free(tmp);
    (void)state;
}

static void test_kaggle_errors(void **state)
{
    char *tmp = tu_tmpdir(), *src = v4r_path_join(tmp, "src"), *out = v4r_path_join(tmp, "out");
    kaggle_source(src);

    tu_write(src, "train.txt", "user_id,item_id\nu1,i1\nu9,i2\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "train.txt:3:", "'user_id'", "unknown user 'u9'", NULL);
    tu_write(src, "train.txt", "user_id,item_id\nu1,i1\nu1,i7\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "train.txt:3:", "'item_id'", "unknown item 'i7'", NULL);
    tu_write(src, "train.txt", "customer,item_id\nu1,i1\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "train.txt:1:", "no user column", "user_idx, uid, reviewerid",
                NULL);
    tu_write(src, "train.txt", "user_id,product\nu1,i1\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "train.txt:1:", "no item column", "iid, asin", NULL);
    tu_write(src, "train.txt", "user_id,item_id\nu1,i1\nu1,i2,9\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "train.txt:3:", "3 fields", NULL);
    tu_write(src, "train.txt", "user_id,item_id\nu1,i1\n,i2\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "train.txt:3:", "'user_id' is empty", NULL);
    tu_write(src, "train.txt", "user_id,item_id,timestamp\nu1,i1,yesterday\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "train.txt:2:", "'timestamp'", "yesterday", NULL);
    tu_write(src, "train.txt", "user_id,item_id\nu1,\"i1\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "train.txt:2:", "unterminated", NULL);
    tu_write(src, "train.txt", "user_id,item_id,timestamp\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "train.txt", "train split must not be empty", NULL);
    tu_write(src, "train.txt", "");
    expect_fail(v4r_import_kaggle, src, out, 0, "train.txt", "empty file", NULL);
    tu_write(src, "train.txt", "user_id,item_id\nu1,i1\nu2,i2\nu1,i1\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "train.txt:4:", "first at line 2", "--dedupe", NULL);
    tu_write(src, "train.txt", "user_id,item_id\nu1,i1\n");

    tu_write(src, "items.txt", "item_id\ni1\ni2\ni1\ni3\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "items.txt:4:", "repeats line 2", NULL);
    tu_write(src, "items.txt", "item_id\ni1\n\ni2\n,\ni3\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "items.txt:5:", "2 fields", NULL);
    tu_write(src, "items.txt", "id,title\ni1,a\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "items.txt:1:", "no item column", NULL);
    tu_write(src, "items.txt", "item_id\ni1\ni2\ni3\n");
    tu_write(src, "users.txt", "user\nu1\nu2\nu1\n");
    expect_fail(v4r_import_kaggle, src, out, 0, "users.txt:4:", "repeats line 2", NULL);
    tu_write(src, "users.txt", "user\nu1\nu2\n");

    float two[4] = {0};
    write_f32(src, "embed_text.npy", two, 2, 2);
    expect_fail(v4r_import_kaggle, src, out, 0, "embed_text.npy", "2 rows", "3 items", NULL);
    write_f32(src, "embed_text.npy", kg_text, 3, 2);
    char *img = v4r_path_join(src, "embed_image.npy");
    assert_int_equal(truncate(img, 100), 0); /* header intact, payload cut */
    free(img);
    expect_fail(v4r_import_kaggle, src, out, 0, "embed_image.npy", "truncated", NULL);
    write_f64(src, "embed_image.npy", kg_image, 3, 2);

    char *p = v4r_path_join(src, "items.txt");
    remove(p);
    free(p);
    expect_fail(v4r_import_kaggle, src, out, 0, "no items.txt", NULL);
    tu_write(src, "items.txt", "item_id\ni1\ni2\ni3\n");

    /* through the CLI: exit 3 with file:line */
    tu_write(src, "test.txt", "user_id,item_id\nu1,i1\nu1,nope\n");
    char *log;
    assert_int_equal(tu_run(&log, "dataset import --format kaggle '%s' -o '%s'", src, out), 3);
    assert_non_null(strstr(log, "test.txt:3:"));
    free(log);
    assert_false(dir_exists(out));
    tu_write(src, "test.txt", "user_id,item_id\nu1,i1\n");

    /* an existing OUT is left untouched by a failing import */
    tu_write(out, "items.txt", "keep me");
    tu_write(src, "validation.txt", "user_id,item_id\nu1,i1\nu1,i1\n");
    v4r_import_opts o = {0};
    v4r_err err = {0};
    assert_int_equal(v4r_import_kaggle(src, out, &o, &err), V4R_EINPUT);
    assert_msg(&err, "validation.txt:3:");
    char *keep = tu_read(out, "items.txt");
    assert_string_equal(keep, "keep me");
    free(keep);
    char *none = tu_read(out, "train.tsv");
    assert_null(none);

    free(src);
    free(out);
    tu_rmtree(tmp);
    free(tmp);
    (void)state;
}

static void test_kaggle_dedupe(void **state)
{
    char *tmp = tu_tmpdir(), *src = v4r_path_join(tmp, "src"), *out = v4r_path_join(tmp, "out");
    kaggle_source(src);
    tu_write(src, "train.txt", "user_id,item_id,timestamp\nu1,i1,1\nu2,i2,2\nu1,i1,3\nu1,i3,4\nu2,i2,5\nu1,i1,6\n");
    tu_write(src, "validation.txt", "user_id,item_id\nu1,i1\nu1,i1\n");
    v4r_import_opts o = {1};
    v4r_err err = {0};
    if (v4r_import_kaggle(src, out, &o, &err))
        fail_msg("import: %s", err.msg);
    v4r_dataset ds;
    assert_int_equal(v4r_dataset_load(out, &ds, &err), 0);
    const char *u[] = {"u1", "u2", "u1"}, *i[] = {"i1", "i2", "i3"};
    const long long ts[] = {1, 2, 4};
    check_split(&ds, V4R_TRAIN, 3, u, i, ts);
    assert_int_equal(ds.split[V4R_VALID].n, 1);
    assert_int_equal(ds.split[V4R_TEST].n, 1);
    v4r_dataset_free(&ds);
    /* the CLI flag */
    char *out2 = v4r_path_join(tmp, "cli");
    assert_int_equal(tu_run(NULL, "dataset import --format kaggle '%s' -o '%s' --dedupe", src, out2), 0);
    assert_int_equal(v4r_dataset_load(out2, &ds, &err), 0);
    assert_int_equal(ds.split[V4R_TRAIN].n, 3);
    v4r_dataset_free(&ds);
    free(out2);
    free(src);
    free(out);
    tu_rmtree(tmp);
    free(tmp);
    (void)state;
}

/* ---- MMRec ---- */

static void mmrec_source(const char *src)
{
    tu_write(src, "baby.inter",
             "userID\titemID\trating\ttimestamp\tx_label\n"
             "0\t1\t5.0\t1400000000\t0\n"
             "2\t0\t4.0\t1400000001\t0\n"
             "0\t3\t3.0\t1400000002\t1\n"
             "1\t1\t3.0\t\t2\n"
             "0\t0\t1.0\t1400000004\t0\n");
}

static void test_mmrec_import(void **state)
{
    char *tmp = tu_tmpdir(), *src = v4r_path_join(tmp, "src"), *out = v4r_path_join(tmp, "out");
    mmrec_source(src);
    float text[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    double image[15] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5};
    write_f32(src, "text_feat.npy", text, 5, 2);
    write_f64(src, "image_feat.npy", image, 5, 3);
    v4r_import_opts o = {0};
    v4r_err err = {0};
    if (v4r_import_mmrec(src, out, &o, &err))
        fail_msg("import: %s", err.msg);
    v4r_dataset ds;
    if (v4r_dataset_load(out, &ds, &err))
        fail_msg("load: %s", err.msg);
    assert_int_equal(ds.n_items, 5); /* from the feature rows, not max(itemID)+1 = 4 */
    assert_int_equal(ds.n_users, 3);
    const char *ids[] = {"0", "1", "2", "3", "4"};
    for (int k = 0; k < 5; k++) {
        assert_string_equal(ds.item_id[k], ids[k]);
        assert_string_equal(ds.item_title[k], "");
    }
    for (int k = 0; k < 3; k++)
        assert_string_equal(ds.user_id[k], ids[k]);
    {
        const char *u[] = {"0", "2", "0"}, *i[] = {"1", "0", "0"};
        const long long ts[] = {1400000000, 1400000001, 1400000004};
        check_split(&ds, V4R_TRAIN, 3, u, i, ts);
    }
    {
        const char *u[] = {"0"}, *i[] = {"3"};
        const long long ts[] = {1400000002};
        check_split(&ds, V4R_VALID, 1, u, i, ts);
    }
    {
        const char *u[] = {"1"}, *i[] = {"1"};
        const long long ts[] = {-1};
        check_split(&ds, V4R_TEST, 1, u, i, ts);
    }
    v4r_dataset_free(&ds);
    assert_same_bytes(src, "text_feat.npy", out, "features/text.npy");
    char *p = v4r_path_join(out, "features/image.npy");
    v4r_matrix m;
    assert_int_equal(v4r_npy_read(p, &m, &err), 0);
    assert_int_equal(m.rows, 5);
    assert_int_equal(m.cols, 3);
    for (int k = 0; k < 15; k++)
        assert_true(m.data[k] == (float)image[k]);
    v4r_matrix_free(&m);
    free(p);

    /* SRC as the .inter file itself, no features beside it: items = max(itemID)+1; and the CLI */
    char *src2 = v4r_path_join(tmp, "src2"), *inter = v4r_path_join(src2, "x.inter"), *out2 = v4r_path_join(tmp, "o2");
    tu_write(src2, "x.inter", "userID\titemID\tx_label\n4\t2\t0\n0\t0\t2\n");
    tu_write(src2, "other.inter", "not read");
    char *log;
    int code = tu_run(&log, "dataset import --format mmrec '%s' -o '%s'", inter, out2);
    if (code != 0)
        fail_msg("exit %d: %s", code, log);
    free(log);
    assert_int_equal(v4r_dataset_load(out2, &ds, &err), 0);
    assert_int_equal(ds.n_items, 3);
    assert_int_equal(ds.n_users, 5);
    assert_int_equal(ds.split[V4R_TRAIN].n, 1);
    assert_int_equal(ds.split[V4R_TEST].n, 1);
    assert_int_equal(ds.split[V4R_TRAIN].has_ts[0], 0);
    v4r_dataset_free(&ds);
    free(src2);
    free(inter);
    free(out2);
    free(src);
    free(out);
    tu_rmtree(tmp);
    free(tmp);
    (void)state;
}

static void test_mmrec_errors(void **state)
{
    char *tmp = tu_tmpdir(), *src = v4r_path_join(tmp, "src"), *out = v4r_path_join(tmp, "out");
    const char *hdr = "userID\titemID\trating\ttimestamp\tx_label\n";
    char buf[512];
#define INTER(body)                                                                                                    \
    do {                                                                                                               \
        snprintf(buf, sizeof buf, "%s%s", hdr, body);                                                                  \
        tu_write(src, "a.inter", buf);                                                                                 \
    } while (0)
    INTER("0\t1\t5\t1\t0\n1\t1\t5\t1\t3\n");
    expect_fail(v4r_import_mmrec, src, out, 0, "a.inter:3:", "'x_label'", "'3'", NULL);
    INTER("0\t1\t5\t1\t0\n1\t1\t5\t1\t\n");
    expect_fail(v4r_import_mmrec, src, out, 0, "a.inter:3:", "'x_label'", NULL);
    INTER("0\t1\t5\t1\t0\n-1\t1\t5\t1\t0\n");
    expect_fail(v4r_import_mmrec, src, out, 0, "a.inter:3:", "'userID'", "'-1'", NULL);
    INTER("0\t1.5\t5\t1\t0\n");
    expect_fail(v4r_import_mmrec, src, out, 0, "a.inter:2:", "'itemID'", "'1.5'", NULL);
    INTER("0\tabc\t5\t1\t0\n");
    expect_fail(v4r_import_mmrec, src, out, 0, "a.inter:2:", "'itemID'", NULL);
    INTER("0\t1\t5\tnoon\t0\n");
    expect_fail(v4r_import_mmrec, src, out, 0, "a.inter:2:", "'timestamp'", NULL);
    INTER("0\t1\t5\t1\n");
    expect_fail(v4r_import_mmrec, src, out, 0, "a.inter:2:", "4 fields", NULL);
    INTER("0\t1\t5\t1\t1\n");
    expect_fail(v4r_import_mmrec, src, out, 0, "a.inter", "x_label 0", NULL);
    INTER("0\t1\t5\t1\t0\n2\t2\t5\t1\t0\n0\t1\t5\t9\t0\n");
    expect_fail(v4r_import_mmrec, src, out, 0, "a.inter:4:", "first at line 2", NULL);
    tu_write(src, "a.inter", "userID\titemID\tlabel\n0\t1\t0\n");
    expect_fail(v4r_import_mmrec, src, out, 0, "a.inter:1:", "x_label", NULL);

    /* features: rows must cover every itemID and agree with each other */
    INTER("0\t1\t5\t1\t0\n0\t3\t5\t1\t2\n");
    float f[8] = {0};
    write_f32(src, "text_feat.npy", f, 3, 2);
    expect_fail(v4r_import_mmrec, src, out, 0, "a.inter:3:", "'itemID'", "text_feat.npy", NULL);
    write_f32(src, "text_feat.npy", f, 4, 2);
    write_f32(src, "image_feat.npy", f, 2, 2);
    expect_fail(v4r_import_mmrec, src, out, 0, "image_feat.npy", "text_feat.npy", NULL);
    write_f32(src, "image_feat.npy", f, 4, 2);

    /* --dedupe */
    INTER("0\t1\t5\t1\t0\n0\t1\t5\t2\t0\n0\t1\t5\t3\t1\n");
    v4r_import_opts o = {1};
    v4r_err err = {0};
    if (v4r_import_mmrec(src, out, &o, &err))
        fail_msg("import: %s", err.msg);
    v4r_dataset ds;
    assert_int_equal(v4r_dataset_load(out, &ds, &err), 0);
    assert_int_equal(ds.n_items, 4);
    assert_int_equal(ds.split[V4R_TRAIN].n, 1);
    assert_int_equal(ds.split[V4R_TRAIN].ts[0], 1);
    assert_int_equal(ds.split[V4R_VALID].n, 1);
    v4r_dataset_free(&ds);
    tu_rmtree(out);

    /* one .inter exactly */
    tu_write(src, "b.inter", hdr);
    expect_fail(v4r_import_mmrec, src, out, 0, "2 .inter files", "a.inter, b.inter", NULL);
    char *empty = v4r_path_join(tmp, "empty");
    tu_write(empty, "readme.txt", "x");
    expect_fail(v4r_import_mmrec, empty, out, 0, "no <name>.inter", NULL);
    free(empty);
    char *log;
    assert_int_equal(tu_run(&log, "dataset import --format mmrec '%s' -o '%s'", src, out), 3);
    assert_non_null(strstr(log, "b.inter"));
    free(log);
    assert_false(dir_exists(out));
#undef INTER
    free(src);
    free(out);
    tu_rmtree(tmp);
    free(tmp);
    (void)state;
}

/* ---- TSV ---- */

static void test_tsv_import(void **state)
{
    char *tmp = tu_tmpdir(), *src = v4r_path_join(tmp, "src"), *out = v4r_path_join(tmp, "out");
    /* no items.tsv / users.tsv: numbered by first appearance over train, valid, test */
    tu_write(src, "train.tsv", "bob\tshoe\t10\nann\that\t\nbob\that\t12\n");
    tu_write(src, "validation.tsv", "user\titem\ncid\tsock\nann\tshoe\n");
    tu_write(src, "test.tsv", "user\titem\ttimestamp\nann\tbelt\t99\n");
    float feat[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    tu_write(src, "features/readme.txt", "ignored");
    char *fdir = v4r_path_join(src, "features");
    write_f32(fdir, "clip.npy", feat, 4, 2);
    free(fdir);
    v4r_import_opts o = {0};
    v4r_err err = {0};
    if (v4r_import_tsv(src, out, &o, &err))
        fail_msg("import: %s", err.msg);
    v4r_dataset ds;
    if (v4r_dataset_load(out, &ds, &err))
        fail_msg("load: %s", err.msg);
    const char *users[] = {"bob", "ann", "cid"}, *items[] = {"shoe", "hat", "sock", "belt"};
    assert_int_equal(ds.n_users, 3);
    assert_int_equal(ds.n_items, 4);
    for (int k = 0; k < 3; k++)
        assert_string_equal(ds.user_id[k], users[k]);
    for (int k = 0; k < 4; k++)
        assert_string_equal(ds.item_id[k], items[k]);
    {
        const char *u[] = {"bob", "ann", "bob"}, *i[] = {"shoe", "hat", "hat"};
        const long long ts[] = {10, -1, 12};
        check_split(&ds, V4R_TRAIN, 3, u, i, ts);
    }
    {
        const char *u[] = {"cid", "ann"}, *i[] = {"sock", "shoe"};
        const long long ts[] = {-1, -1};
        check_split(&ds, V4R_VALID, 2, u, i, ts);
    }
    {
        const char *u[] = {"ann"}, *i[] = {"belt"};
        const long long ts[] = {99};
        check_split(&ds, V4R_TEST, 1, u, i, ts);
    }
    v4r_dataset_free(&ds);
    assert_same_bytes(src, "features/clip.npy", out, "features/clip.npy");
    char *stray = tu_read(out, "features/readme.txt");
    assert_null(stray);

    /* with items.tsv and users.tsv: their order, titles and images; the CLI */
    char *src2 = v4r_path_join(tmp, "src2"), *out2 = v4r_path_join(tmp, "out2");
    tu_write(src2, "items.tsv", "item\ttitle\timage\nhat\tA \\\"hat\\\"\\twith tab\th.jpg\nshoe\tShoe\t\nbelt\t\t\n");
    tu_write(src2, "users.tsv", "user\nzed\nann\n");
    tu_write(src2, "train.tsv", "ann\tshoe\nzed\that\n");
    tu_write(src2, "valid.tsv", "");
    tu_write(src2, "test.tsv", "user\titem\n");
    char *log;
    int code = tu_run(&log, "dataset import --format tsv '%s' -o '%s'", src2, out2);
    if (code != 0)
        fail_msg("exit %d: %s", code, log);
    free(log);
    assert_int_equal(v4r_dataset_load(out2, &ds, &err), 0);
    assert_int_equal(ds.n_items, 3);
    assert_string_equal(ds.item_id[0], "hat");
    assert_string_equal(ds.item_title[0], "A \"hat\"\twith tab");
    assert_string_equal(ds.item_image[0], "h.jpg");
    assert_string_equal(ds.item_id[2], "belt");
    assert_string_equal(ds.user_id[0], "zed");
    assert_string_equal(ds.user_id[1], "ann");
    {
        const char *u[] = {"ann", "zed"}, *i[] = {"shoe", "hat"};
        const long long ts[] = {-1, -1};
        check_split(&ds, V4R_TRAIN, 2, u, i, ts);
    }
    assert_int_equal(ds.split[V4R_VALID].n, 0);
    assert_int_equal(ds.split[V4R_TEST].n, 0);
    v4r_dataset_free(&ds);

    /* a dataset directory is itself a tsv source: importing it reproduces it byte for byte */
    char *out3 = v4r_path_join(tmp, "out3");
    assert_int_equal(v4r_import_tsv(out, out3, &o, &err), 0);
    const char *files[] = {"items.tsv", "users.tsv", "train.tsv", "valid.tsv", "test.tsv", "features/clip.npy"};
    for (int k = 0; k < 6; k++)
        assert_same_bytes(out, files[k], out3, files[k]);
    free(out3);
    free(src2);
    free(out2);
    free(src);
    free(out);
    tu_rmtree(tmp);
    free(tmp);
    (void)state;
}

static void test_tsv_errors(void **state)
{
    char *tmp = tu_tmpdir(), *src = v4r_path_join(tmp, "src"), *out = v4r_path_join(tmp, "out");
    tu_write(src, "valid.tsv", "a\tx\n");
    tu_write(src, "test.tsv", "a\ty\n");

    tu_write(src, "train.tsv", "a\tx\nb\n");
    expect_fail(v4r_import_tsv, src, out, 0, "train.tsv:2:", "1 fields", NULL);
    tu_write(src, "train.tsv", "a\tx\nb\ty\t1\t2\n");
    expect_fail(v4r_import_tsv, src, out, 0, "train.tsv:2:", "4 fields", NULL);
    tu_write(src, "train.tsv", "user\titem\ttimestamp\na\tx\n");
    expect_fail(v4r_import_tsv, src, out, 0, "train.tsv:2:", "2 fields, the header has 3", NULL);
    tu_write(src, "train.tsv", "user\titem\trating\na\tx\t5\n");
    expect_fail(v4r_import_tsv, src, out, 0, "train.tsv:1:", "timestamp", NULL);
    tu_write(src, "train.tsv", "a\tx\n\ty\n");
    expect_fail(v4r_import_tsv, src, out, 0, "train.tsv:2:", "'user' is empty", NULL);
    tu_write(src, "train.tsv", "a\tx\nb\t\t5\n");
    expect_fail(v4r_import_tsv, src, out, 0, "train.tsv:2:", "'item' is empty", NULL);
    tu_write(src, "train.tsv", "a\tx\t1\nb\ty\t2x\n");
    expect_fail(v4r_import_tsv, src, out, 0, "train.tsv:2:", "'timestamp'", "'2x'", NULL);
    tu_write(src, "train.tsv", "user\titem\n");
    expect_fail(v4r_import_tsv, src, out, 0, "train.tsv", "must not be empty", NULL);
    tu_write(src, "train.tsv", "a\tx\nb\ty\na\tx\n");
    expect_fail(v4r_import_tsv, src, out, 0, "train.tsv:3:", "first at line 1", NULL);
    tu_write(src, "train.tsv", "a\tx\n");

    tu_write(src, "items.tsv", "item\ttitle\nx\tX\n");
    expect_fail(v4r_import_tsv, src, out, 0, "test.tsv:1:", "unknown item 'y'", "items.tsv", NULL);
    tu_write(src, "items.tsv", "item\ttitle\nx\tX\ny\tY\nx\tZ\n");
    expect_fail(v4r_import_tsv, src, out, 0, "items.tsv:4:", "repeats line 2", NULL);
    tu_write(src, "items.tsv", "id\ttitle\nx\tX\ny\tY\n");
    expect_fail(v4r_import_tsv, src, out, 0, "items.tsv:1:", "'id'", NULL);
    tu_write(src, "items.tsv", "item\ttitle\nx\tX\ny\n");
    expect_fail(v4r_import_tsv, src, out, 0, "items.tsv:3:", "1 fields", NULL);
    tu_write(src, "items.tsv", "item\ttitle\nx\tX\ny\tY\n");
    tu_write(src, "users.tsv", "user\nb\n");
    expect_fail(v4r_import_tsv, src, out, 0, "train.tsv:1:", "unknown user 'a'", NULL);
    tu_write(src, "users.tsv", "user\na\n");

    float f[6] = {0};
    char *fdir = v4r_path_join(src, "features");
    write_f32(fdir, "t.npy", f, 3, 2);
    free(fdir);
    expect_fail(v4r_import_tsv, src, out, 0, "features/t.npy", "3 rows", "2 items", NULL);
    tu_write(src, "features/t.npy", "junk");
    expect_fail(v4r_import_tsv, src, out, 0, "features/t.npy", NULL);
    char *p = v4r_path_join(src, "features/t.npy");
    remove(p);
    free(p);

    p = v4r_path_join(src, "valid.tsv");
    remove(p);
    free(p);
    expect_fail(v4r_import_tsv, src, out, 0, "valid.tsv or validation.tsv", NULL);
    tu_write(src, "valid.tsv", "a\ty\n");

    v4r_err err = {0};
    v4r_import_opts o = {0};
    assert_int_equal(v4r_import_tsv(src, out, &o, &err), 0); /* all fixed: it imports */
    char *nosrc = v4r_path_join(tmp, "missing");
    assert_int_not_equal(v4r_import_tsv(nosrc, out, &o, &err), 0);
    assert_msg(&err, nosrc);
    free(nosrc);
    free(src);
    free(out);
    tu_rmtree(tmp);
    free(tmp);
    (void)state;
}

static void test_dedupe_helper(void **state)
{
    v4r_dataset ds;
    v4r_dataset_init(&ds);
    v4r_dataset_add_user(&ds, "u", NULL);
    v4r_dataset_add_user(&ds, "v", NULL);
    v4r_dataset_add_item(&ds, "a", "", "", NULL);
    v4r_dataset_add_item(&ds, "b", "", "", NULL);
    int32_t us[] = {0, 1, 0, 0, 1, 0}, is[] = {0, 0, 1, 0, 0, 0};
    for (int k = 0; k < 6; k++)
        v4r_split_push(&ds.split[V4R_TRAIN], us[k], is[k], k, 1, k + 2);
    v4r_split_push(&ds.split[V4R_TEST], 0, 0, 0, 0, 2); /* other splits do not interfere */
    assert_int_equal(v4r_dataset_dedupe(&ds), 3);
    const v4r_split *sp = &ds.split[V4R_TRAIN];
    assert_int_equal(sp->n, 3);
    assert_int_equal(sp->ts[0], 0);
    assert_int_equal(sp->ts[1], 1);
    assert_int_equal(sp->ts[2], 2);
    assert_int_equal(sp->line[2], 4);
    assert_int_equal(ds.split[V4R_TEST].n, 1);
    assert_int_equal(v4r_dataset_dedupe(&ds), 0);
    v4r_dataset_free(&ds);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kaggle_import), cmocka_unit_test(test_kaggle_errors),
        cmocka_unit_test(test_kaggle_dedupe), cmocka_unit_test(test_mmrec_import),
        cmocka_unit_test(test_mmrec_errors),  cmocka_unit_test(test_tsv_import),
        cmocka_unit_test(test_tsv_errors),    cmocka_unit_test(test_dedupe_helper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* io: .npy round trips and rejections, TSV escapes, CSV quoting, line numbers. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/io.h"

static void write_raw(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fwrite(data, 1, n, fp);
    fclose(fp);
}

/* Builds a v1 .npy file image with the given header dict and payload. */
static size_t make_npy(unsigned char *buf, const char *dict, const void *payload, size_t plen)
{
    size_t dlen = strlen(dict), hlen = dlen + 1;
    size_t pad = (64 - (10 + hlen) % 64) % 64;
    hlen += pad;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 255);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, dlen);
    memset(buf + 10 + dlen, ' ', pad);
    buf[10 + hlen - 1] = '\n';
    memcpy(buf + 10 + hlen, payload, plen);
    return 10 + hlen + plen;
}

static void test_npy_roundtrip(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "a.npy");
    float data[6] = {1, -2.5f, 3, 4, 5e-8f, 6};
    v4r_err err = {0};
    assert_int_equal(v4r_npy_write(path, data, 2, 3, &err), 0);
    v4r_matrix m;
    assert_int_equal(v4r_npy_read(path, &m, &err), 0);
    assert_int_equal(m.rows, 2);
    assert_int_equal(m.cols, 3);
    assert_memory_equal(m.data, data, sizeof data);
    v4r_matrix_free(&m);
    FILE *fp = fopen(path, "rb");
    unsigned char pre[10];
    assert_int_equal(fread(pre, 1, 10, fp), 10);
    fclose(fp);
    assert_int_equal((10 + pre[8] + 256 * pre[9]) % 64, 0); /* data aligned as numpy does */
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_npy_dtypes_and_order(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "b.npy");
    unsigned char buf[512];
    v4r_err err = {0};
    v4r_matrix m;
    double d[4] = {1, 2, 3, 4}; /* fortran order (2,2): column-major */
    write_raw(path, buf, make_npy(buf, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }", d, sizeof d));
    assert_int_equal(v4r_npy_read(path, &m, &err), 0);
    assert_true(m.data[0] == 1 && m.data[1] == 3 && m.data[2] == 2 && m.data[3] == 4);
    v4r_matrix_free(&m);
    uint16_t h[3] = {0x3c00, 0xc000, 0x0001}; /* 1, -2, smallest subnormal */
    write_raw(path, buf, make_npy(buf, "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }", h, sizeof h));
    assert_int_equal(v4r_npy_read(path, &m, &err), 0);
    assert_int_equal(m.rows, 3);
    assert_int_equal(m.cols, 1);
    assert_true(m.data[0] == 1.0f && m.data[1] == -2.0f && fabsf(m.data[2] - 5.9604645e-8f) < 1e-12f);
    v4r_matrix_free(&m);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void expect_npy_error(const char *dir, const unsigned char *buf, size_t n, const char *needle)
{
    char *path = v4r_path_join(dir, "bad.npy");
    write_raw(path, buf, n);
    v4r_matrix m;
    v4r_err err = {0};
    assert_int_equal(v4r_npy_read(path, &m, &err), V4R_EINPUT);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    assert_non_null(strstr(err.msg, path));
    free(path);
}

static void test_npy_rejections(void **state)
{
    char *dir = tu_tmpdir();
    unsigned char buf[512];
    float f[4] = {0};
    int32_t ints[4] = {0};
    size_t n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", f, sizeof f);
    expect_npy_error(dir, buf, n - 3, "truncated");
    expect_npy_error(dir, buf, 20, "truncated");
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", f, sizeof f);
    expect_npy_error(dir, buf, n, "trailing");
    n = make_npy(buf, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }", ints, sizeof ints);
    expect_npy_error(dir, buf, n, "not a little-endian float");
    n = make_npy(buf, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", f, sizeof f);
    expect_npy_error(dir, buf, n, "not a little-endian float");
    expect_npy_error(dir, (const unsigned char *)"hello world, not numpy", 22, "bad magic");
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_tsv_escapes(void **state)
{
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "t.tsv");
    FILE *fp = fopen(path, "wb");
    v4r_tsv_write_field(fp, "a\tb\\c\nd");
    fputs("\tx\r\n\nlast", fp);
    fclose(fp);
    v4r_lines r;
    v4r_err err = {0};
    assert_int_equal(v4r_lines_open(&r, path, &err), 0);
    assert_int_equal(v4r_lines_next(&r, &err), 1);
    char *f[4];
    assert_int_equal(v4r_tsv_split(r.line, f, 4), 2);
    v4r_tsv_unescape(f[0]);
    assert_string_equal(f[0], "a\tb\\c\nd");
    assert_string_equal(f[1], "x");
    assert_int_equal(v4r_lines_next(&r, &err), 1);
    assert_string_equal(r.line, "");
    assert_int_equal(v4r_lines_next(&r, &err), 1);
    assert_string_equal(r.line, "last");
    assert_int_equal(r.lineno, 3);
    assert_int_equal(v4r_lines_next(&r, &err), 0);
    v4r_lines_close(&r);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_csv_quotes(void **state)
{
    char *dir = tu_tmpdir();
    tu_write(dir, "c.csv", "id,title\n1,\"Shoe, red \"\"classic\"\"\"\n2,\"two\nlines\"\n3,\n\"4\",\"unterminated\n");
    char *path = v4r_path_join(dir, "c.csv");
    v4r_csv c;
    v4r_err err = {0};
    assert_int_equal(v4r_csv_open(&c, path, ',', &err), 0);
    assert_int_equal(v4r_csv_next(&c, &err), 2);
    assert_string_equal(c.fields[1], "title");
    assert_int_equal(v4r_csv_next(&c, &err), 2);
    assert_string_equal(c.fields[1], "Shoe, red \"classic\"");
    assert_int_equal(v4r_csv_next(&c, &err), 2);
    assert_string_equal(c.fields[1], "two\nlines");
    assert_int_equal(c.record_line, 3);
    assert_int_equal(v4r_csv_next(&c, &err), 2);
    assert_string_equal(c.fields[0], "3");
    assert_string_equal(c.fields[1], "");
    assert_int_equal(v4r_csv_next(&c, &err), -1);
    assert_non_null(strstr(err.msg, ":6: unterminated"));
    v4r_csv_close(&c);
    free(path);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_roundtrip),  cmocka_unit_test(test_npy_dtypes_and_order),
        cmocka_unit_test(test_npy_rejections), cmocka_unit_test(test_tsv_escapes),
        cmocka_unit_test(test_csv_quotes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* safetensors: dtypes and conversion, names with and without "bert.", shards through an index, and
 * the errors for truncation, bad headers, missing shards, missing tensors and wrong shapes. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/io.h"
#include "vlm4rec/kernels.h"

typedef struct {
    const char *name, *dtype;
    int ndim;
    size_t shape[4];
    const void *data;
    size_t nbytes;
} entry;

/* Writes a safetensors file of the entries; keep < nbytes of the data area when cut is set. */
static void write_st(const char *path, const entry *e, size_t n, size_t cut)
{
    json_t *h = json_object();
    size_t off = 0;
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    for (size_t i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < e[i].ndim; d++)
            json_array_append_new(shape, json_integer((json_int_t)e[i].shape[d]));
        json_object_set_new(h, e[i].name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", e[i].dtype, "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + e[i].nbytes)));
        off += e[i].nbytes;
    }
    char *text = json_dumps(h, JSON_COMPACT);
    size_t hl = strlen(text), padded = (hl + 7) / 8 * 8;
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    unsigned char len[8];
    for (int b = 0; b < 8; b++)
        len[b] = (unsigned char)(padded >> (8 * b));
    fwrite(len, 1, 8, fp);
    fwrite(text, 1, hl, fp);
    for (size_t i = hl; i < padded; i++)
        fputc(' ', fp);
    size_t written = 0;
    for (size_t i = 0; i < n; i++) {
        size_t take = e[i].nbytes;
        if (cut && written + take > cut)
            take = cut > written ? cut - written : 0;
        fwrite(e[i].data, 1, take, fp);
        written += take;
    }
    fclose(fp);
    free(text);
    json_decref(h);
}

static const float F32[6] = {1.5f, -2.25f, 0.0f, 3.0e-3f, 65504.0f, -1e-5f};

/* The F32 values as F16 and BF16 (exact for the F16 ones that fit). */
static void halves(uint16_t *f16, uint16_t *bf16)
{
    for (int i = 0; i < 6; i++) {
        f16[i] = v4r_f32_to_f16(F32[i]);
        bf16[i] = v4r_f32_to_bf16(F32[i]);
    }
}

static void test_dtypes_and_names(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "m.safetensors");
    uint16_t f16[6], bf16[6];
    int64_t ids[3] = {0, 1, 2};
    halves(f16, bf16);
    entry e[] = {{"bert.a", "F32", 2, {2, 3}, F32, sizeof F32},
                 {"b", "F16", 1, {6}, f16, sizeof f16},
                 {"c", "BF16", 2, {3, 2}, bf16, sizeof bf16},
                 {"position_ids", "I64", 1, {3}, ids, sizeof ids}};
    write_st(path, e, 4, 0);
    v4r_safetensors *st;
    v4r_err err = {0};
    assert_int_equal(v4r_st_open(path, &st, &err), 0);
    assert_int_equal(v4r_st_count(st), 4);
    /* "a" finds "bert.a"; "bert.b" finds "b" */
    const v4r_st_tensor *t = v4r_st_find(st, "a");
    assert_non_null(t);
    assert_string_equal(t->name, "bert.a");
    assert_non_null(v4r_st_find(st, "bert.b"));
    assert_null(v4r_st_find(st, "d"));
    size_t s23[2] = {2, 3}, s6[1] = {6}, s32[2] = {3, 2};
    float *a, *b, *c;
    assert_int_equal(v4r_st_load(st, "a", 2, s23, &a, &err), 0);
    assert_int_equal(v4r_st_load(st, "b", 1, s6, &b, &err), 0);
    assert_int_equal(v4r_st_load(st, "c", 2, s32, &c, &err), 0);
    for (int i = 0; i < 6; i++) {
        assert_true(a[i] == F32[i]);
        assert_true(b[i] == v4r_f16_to_f32(f16[i]));
        assert_true(c[i] == v4r_bf16_to_f32(bf16[i]));
        assert_float_equal(b[i], F32[i], 1e-3 * (1 + (F32[i] < 0 ? -F32[i] : F32[i])));
    }
    assert_true(b[0] == 1.5f && c[1] == -2.25f);
    /* a non-float tensor is listed but cannot be loaded as weights */
    size_t s3[1] = {3};
    float *p;
    assert_int_equal(v4r_st_load(st, "position_ids", 1, s3, &p, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "I64"));
    free(a);
    free(b);
    free(c);
    v4r_st_close(st);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

static void test_missing_and_wrong_shape(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "m.safetensors");
    entry e[] = {{"w", "F32", 2, {2, 3}, F32, sizeof F32}};
    write_st(path, e, 1, 0);
    v4r_safetensors *st;
    v4r_err err = {0};
    assert_int_equal(v4r_st_open(path, &st, &err), 0);
    size_t s32[2] = {3, 2};
    float *w;
    assert_int_equal(v4r_st_load(st, "w", 2, s32, &w, &err), V4R_EINPUT);
    assert_null(w);
    assert_non_null(strstr(err.msg, "'w'"));
    assert_non_null(strstr(err.msg, "[2, 3]"));
    assert_non_null(strstr(err.msg, "[3, 2]"));
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(v4r_st_load(st, "encoder.x", 2, s32, &w, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "missing tensor 'encoder.x'"));
    assert_non_null(strstr(err.msg, path));
    v4r_st_close(st);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* Opening path fails with code and a message holding want (and the path). */
static void expect_open_error(const char *path, int code, const char *want)
{
    v4r_safetensors *st = (v4r_safetensors *)1;
    v4r_err err = {0};
    assert_int_equal(v4r_st_open(path, &st, &err), code);
    assert_null(st);
    if (!strstr(err.msg, want) || !strstr(err.msg, path))
        fail_msg("message '%s' lacks '%s' or the path", err.msg, want);
}

static void write_bytes(const char *path, const char *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fwrite(data, 1, n, fp);
    fclose(fp);
}

static void test_truncated_and_bad_headers(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *path = v4r_path_join(dir, "m.safetensors");
    entry e[] = {{"x", "F32", 1, {6}, F32, sizeof F32}, {"y", "F32", 1, {6}, F32, sizeof F32}};
    write_st(path, e, 2, 30); /* y's data cut short */
    expect_open_error(path, V4R_EINPUT, "truncated");
    expect_open_error(path, V4R_EINPUT, "'y'");
    write_bytes(path, "abc", 3);
    expect_open_error(path, V4R_EINPUT, "truncated");
    write_bytes(path, "\x40\0\0\0\0\0\0\0{}", 10);
    expect_open_error(path, V4R_EINPUT, "header needs 64 bytes");
    write_bytes(path, "\x07\0\0\0\0\0\0\0[1,2,3]", 15);
    expect_open_error(path, V4R_EINPUT, "not a JSON object");
    /* the byte count must match shape x dtype */
    entry bad[] = {{"z", "F16", 1, {6}, F32, sizeof F32}};
    write_st(path, bad, 1, 0);
    expect_open_error(path, V4R_EINPUT, "24 bytes of data for 6 elements of F16");
    char *none = v4r_path_join(dir, "none.safetensors");
    expect_open_error(none, V4R_EIO, "cannot open");
    tu_rmtree(dir);
    free(none);
    free(path);
    free(dir);
}

static void write_index(const char *dir, const char *text) { tu_write(dir, "model.safetensors.index.json", text); }

static void test_shards(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), *s1 = v4r_path_join(dir, "model-1.safetensors"), *s2 = v4r_path_join(dir, "model-2.safetensors");
    entry e1[] = {{"a", "F32", 1, {6}, F32, sizeof F32}}, e2[] = {{"bert.b", "F32", 2, {3, 2}, F32, sizeof F32}};
    write_st(s1, e1, 1, 0);
    write_st(s2, e2, 1, 0);
    write_index(dir, "{\"metadata\": {}, \"weight_map\": {\"a\": \"model-1.safetensors\", \"bert.b\": "
                     "\"model-2.safetensors\"}}");
    v4r_safetensors *st;
    v4r_err err = {0};
    assert_int_equal(v4r_st_open_dir(dir, &st, &err), 0);
    assert_int_equal(v4r_st_count(st), 2);
    assert_string_equal(v4r_st_find(st, "b")->file, s2);
    assert_string_equal(v4r_st_find(st, "a")->file, s1);
    v4r_st_close(st);
    char *index = v4r_path_join(dir, "model.safetensors.index.json");
    /* a shard the index names is missing */
    write_index(dir, "{\"weight_map\": {\"a\": \"model-1.safetensors\", \"bert.b\": \"model-9.safetensors\"}}");
    expect_open_error(index, V4R_EIO, "model-9.safetensors");
    /* a tensor placed in the wrong shard */
    write_index(dir, "{\"weight_map\": {\"a\": \"model-2.safetensors\", \"bert.b\": \"model-2.safetensors\"}}");
    expect_open_error(index, V4R_EINPUT, "tensor 'a' should be in");
    write_index(dir, "{\"weights\": {}}");
    expect_open_error(index, V4R_EINPUT, "weight_map");
    /* the same tensor in two shards */
    write_st(s2, e1, 1, 0);
    write_index(dir, "{\"weight_map\": {\"a\": \"model-1.safetensors\", \"x\": \"model-2.safetensors\"}}");
    expect_open_error(index, V4R_EINPUT, "appears twice");
    /* a directory with no weights */
    char *empty = tu_tmpdir();
    assert_int_equal(v4r_st_open_dir(empty, &st, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "model.safetensors"));
    assert_non_null(strstr(err.msg, empty));
    tu_rmtree(empty);
    tu_rmtree(dir);
    free(empty);
    free(index);
    free(s1);
    free(s2);
    free(dir);
}

static void test_fixtures(void **state)
{
    (void)state;
    char *tiny = v4r_sprintf("%s/fixtures/models/bert-tiny", tu_shared());
    char *mini = v4r_sprintf("%s/fixtures/models/minilm-l6-shape", tu_shared());
    v4r_safetensors *st;
    v4r_err err = {0};
    assert_int_equal(v4r_st_open_dir(tiny, &st, &err), 0);
    const v4r_st_tensor *t = v4r_st_find(st, "embeddings.word_embeddings.weight");
    assert_non_null(t);
    assert_string_equal(t->dtype, "F32");
    assert_int_equal(t->shape[0], 30522);
    assert_int_equal(t->shape[1], 32);
    v4r_st_close(st);
    assert_int_equal(v4r_st_open_dir(mini, &st, &err), 0);
    t = v4r_st_find(st, "bert.encoder.layer.5.output.dense.weight");
    assert_non_null(t);
    assert_string_equal(t->dtype, "F16");
    assert_int_equal(t->shape[0], 384);
    assert_int_equal(t->shape[1], 1536);
    float v[4];
    v4r_st_to_f32(t, 1000, 4, v);
    for (int i = 0; i < 4; i++)
        assert_true(v[i] > -1.0f && v[i] < 1.0f && v[i] != 0.0f);
    v4r_st_close(st);
    free(tiny);
    free(mini);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes_and_names), cmocka_unit_test(test_missing_and_wrong_shape),
        cmocka_unit_test(test_truncated_and_bad_headers), cmocka_unit_test(test_shards),
        cmocka_unit_test(test_fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

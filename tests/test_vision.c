/* vision: CLIP preprocessing against transformers' pixel values, the preprocessor_config.json
 * forms, the vision transformer against transformers' image_embeds and penultimate states (224 px
 * patch 32, 336 px patch 14; both kernels), independence from batch size and threads, files that
 * fail, the full CLIPModel layout, fp16 weights and load errors. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlm4rec/kernels.h"
#include "vlm4rec/vision.h"

/* The decodable fixtures in file-name order: the goldens' row order. */
static const char *const IMAGES[] = {
    "cmyk_360x240.jpg",     "gray_400.jpg",         "landscape_640x480.jpg",   "odd_333x777.jpg",
    "palette_300x200.png",  "portrait_300x500.jpg", "progressive_512x384.jpg", "rgba_256x320.png",
    "square_224.jpg",       "subsampled420_800x600.jpg", "tiny_97x61.png",     "wide_1000x150.jpg",
};
enum { N_IMAGES = 12 };

static char *fixture(const char *rel) { return v4r_sprintf("%s/fixtures/%s", tu_shared(), rel); }
static char *image_path(const char *name) { return v4r_sprintf("%s/fixtures/images/%s", tu_shared(), name); }

/* A C-order little-endian float32 .npy of any rank; total element count in *n. */
static float *read_npy(const char *rel, size_t *n)
{
    char *path = fixture(rel), *data;
    size_t len;
    assert_int_equal(v4r_read_file(path, &data, &len, NULL), 0);
    assert_true(len > 10 && memcmp(data, "\x93NUMPY", 6) == 0);
    size_t hlen = (uint8_t)data[8] | (size_t)(uint8_t)data[9] << 8, off = 10 + hlen;
    char *hdr = v4r_strndup(data + 10, hlen);
    assert_non_null(strstr(hdr, "'<f4'"));
    assert_non_null(strstr(hdr, "'fortran_order': False"));
    *n = (len - off) / 4;
    float *out = v4r_malloc(*n * 4);
    memcpy(out, data + off, *n * 4);
    free(hdr);
    free(data);
    free(path);
    return out;
}

static v4r_image load_image(const char *name)
{
    char *path = image_path(name);
    v4r_image img;
    v4r_err err = {0};
    if (v4r_image_load(path, &img, &err))
        fail_msg("%s", err.msg);
    free(path);
    return img;
}

static v4r_vision *load_model(const char *dir)
{
    v4r_vision *v;
    v4r_err err = {0};
    if (v4r_vision_load(dir, &v, &err))
        fail_msg("%s", err.msg);
    return v;
}

static v4r_vision *load_fixture_model(const char *name)
{
    char *dir = v4r_sprintf("%s/fixtures/models/%s", tu_shared(), name);
    v4r_vision *v = load_model(dir);
    free(dir);
    return v;
}

/* The 12 fixture images preprocessed by the model: 12 x pixel_count floats. */
static float *fixture_pixels(const v4r_vision *v)
{
    size_t pc = v4r_vision_pixel_count(v);
    float *px = v4r_malloc(N_IMAGES * pc * sizeof *px);
    for (int i = 0; i < N_IMAGES; i++) {
        v4r_image img = load_image(IMAGES[i]);
        v4r_err err = {0};
        assert_int_equal(v4r_vision_preprocess(v, &img, px + i * pc, &err), 0);
        v4r_image_free(&img);
    }
    return px;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

/* The kernels to test: blas always, avx512 where the CPU has it. */
static int n_kernels(void) { return v4r_cpu_has_avx512() ? 2 : 1; }

static void use_kernel(int k) { setenv("VLM4REC_KERNEL", v4r_kernel_name(k), 1); }

/* ---- preprocessing ---- */

static void test_pixels_match_reference(void **state)
{
    char *cfg = fixture("models/clip-vision-tiny-224/preprocessor_config.json");
    v4r_vision_preproc p;
    v4r_err err = {0};
    assert_int_equal(v4r_vision_preproc_read(cfg, &p, &err), 0);
    size_t n, per = 3 * 224 * 224;
    float *gold = read_npy("goldens/clip-vision-tiny-224.pixel_values.npy", &n);
    assert_int_equal(n, N_IMAGES * per);
    float *mine = v4r_malloc(per * sizeof *mine);
    for (int i = 0; i < N_IMAGES; i++) {
        v4r_image img = load_image(IMAGES[i]);
        int w, h;
        assert_int_equal(v4r_vision_preproc_apply(&p, &img, mine, &w, &h, &err), 0);
        assert_int_equal(w, 224);
        assert_int_equal(h, 224);
        double d = max_abs_diff(mine, gold + i * per, per);
        if (d != 0)
            fail_msg("%s: pixel values differ from transformers' by up to %g", IMAGES[i], d);
        v4r_image_free(&img);
    }
    print_message("pixel values of the 12 images: identical to transformers' (max abs diff 0)\n");
    free(mine);
    free(gold);
    free(cfg);
    (void)state;
}

/* Writes text as dir/name and reads it as a preprocessor config. */
static int read_cfg(const char *dir, const char *text, v4r_vision_preproc *p, v4r_err *err)
{
    tu_write(dir, "pp.json", text);
    char *path = v4r_path_join(dir, "pp.json");
    int rc = v4r_vision_preproc_read(path, p, err);
    free(path);
    return rc;
}

static void test_preproc_config_forms(void **state)
{
    char *dir = tu_tmpdir();
    v4r_vision_preproc p, q;
    v4r_err err = {0};
    int w, h;
    /* ints mean the shortest edge and a square crop */
    assert_int_equal(read_cfg(dir, "{\"size\": 336, \"crop_size\": 336}", &p, &err), 0);
    v4r_vision_preproc_default(&q, 336);
    assert_memory_equal(&p, &q, sizeof p);
    assert_int_equal(v4r_vision_preproc_size(&p, &w, &h), 0);
    assert_true(w == 336 && h == 336);
    /* an exact resize without a crop */
    assert_int_equal(read_cfg(dir, "{\"size\": {\"height\": 30, \"width\": 40}, \"do_center_crop\": false, "
                                   "\"resample\": 2, \"image_mean\": 0.5, \"image_std\": [1, 2, 4]}",
                              &p, &err),
                     0);
    assert_int_equal(v4r_vision_preproc_size(&p, &w, &h), 0);
    assert_true(w == 40 && h == 30 && p.resample == V4R_RESAMPLE_BILINEAR && p.mean[2] == 0.5 && p.std[2] == 4);
    /* the shortest edge without a crop: no fixed size */
    assert_int_equal(read_cfg(dir, "{\"do_center_crop\": false}", &p, &err), 0);
    assert_int_equal(v4r_vision_preproc_size(&p, &w, &h), -1);
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"{\"size\": {\"shortest_edge\": 224, \"longest_edge\": 300}}", "longest_edge"},
        {"{\"size\": \"big\"}", "\"size\""},
        {"{\"crop_size\": {\"height\": 3}}", "\"crop_size\""},
        {"{\"resample\": 1}", "\"resample\""},
        {"{\"image_std\": [1, 0, 1]}", "zero"},
        {"{\"image_mean\": [1, 2]}", "\"image_mean\""},
        {"{\"do_resize\": 1}", "\"do_resize\""},
        {"{\"rescale_factor\": -1}", "\"rescale_factor\""},
        {"[1]", "not a JSON object"},
        {"{", "not JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(read_cfg(dir, bad[i].text, &p, &err), V4R_EINPUT);
        if (!strstr(err.msg, bad[i].want) || !strstr(err.msg, "pp.json"))
            fail_msg("%s: message '%s' lacks '%s'", bad[i].text, err.msg, bad[i].want);
    }
    char *missing = v4r_path_join(dir, "none.json");
    assert_int_equal(v4r_vision_preproc_read(missing, &p, &err), V4R_EIO);
    free(missing);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* Rescale only, normalize only, neither; and a crop larger than the image (zeros around it). */
static void test_preproc_steps(void **state)
{
    v4r_image img = {3, 2, (uint8_t[]){0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170}};
    v4r_vision_preproc p;
    v4r_vision_preproc_default(&p, 2);
    p.do_resize = 0;
    p.crop_w = 6;
    p.crop_h = 5;
    p.do_normalize = 0;
    float out[3 * 30];
    int w, h;
    assert_int_equal(v4r_vision_preproc_apply(&p, &img, out, &w, &h, NULL), 0);
    assert_true(w == 6 && h == 5);
    /* as PIL's crop at (floor(-3 / 2), floor(-3 / 2)) = (-2, -2): the image at columns 2..4, rows 2..3 */
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 6; x++) {
                int in = x >= 2 && x < 5 && y >= 2 && y < 4;
                float want = in ? (float)img.px[((y - 2) * 3 + (x - 2)) * 3 + c] * (float)(1.0 / 255.0) : 0.0f;
                assert_true(out[(c * 5 + y) * 6 + x] == want);
            }
    p.do_rescale = 0;
    p.do_normalize = 1;
    p.do_center_crop = 0;
    assert_int_equal(v4r_vision_preproc_apply(&p, &img, out, &w, &h, NULL), 0);
    assert_true(w == 3 && h == 2);
    assert_true(out[0] == (0.0f - (float)p.mean[0]) / (float)p.std[0]);
    p.do_normalize = 0;
    assert_int_equal(v4r_vision_preproc_apply(&p, &img, out, &w, &h, NULL), 0);
    assert_true(out[1] == 30.0f && out[6] == 10.0f);
    (void)state;
}

/* ---- the model against transformers ---- */

static void check_model(const char *name, int kernel)
{
    use_kernel(kernel);
    v4r_vision *v = load_fixture_model(name);
    unsetenv("VLM4REC_KERNEL");
    size_t dim = v4r_vision_dim(v), states = v4r_vision_tokens(v) * v4r_vision_hidden_size(v), n;
    assert_int_equal(dim, 32);
    float *px = fixture_pixels(v), *emb = v4r_malloc(N_IMAGES * dim * sizeof *emb);
    float *pen = v4r_malloc(N_IMAGES * states * sizeof *pen);
    v4r_vision_forward(v, px, N_IMAGES, 12, emb, pen);
    char *rel = v4r_sprintf("goldens/%s.image_embeds.npy", name);
    float *gold = read_npy(rel, &n);
    assert_int_equal(n, N_IMAGES * dim);
    double de = max_abs_diff(emb, gold, n);
    free(gold);
    free(rel);
    rel = v4r_sprintf("goldens/%s.penultimate0.npy", name);
    gold = read_npy(rel, &n);
    assert_int_equal(n, states);
    double dp = max_abs_diff(pen, gold, n);
    print_message("%s, %s kernel: image_embeds max abs diff %.2g, penultimate states of image 0 %.2g\n", name,
                  v4r_kernel_name(kernel), de, dp);
    assert_true(de <= 1e-4);
    assert_true(dp <= 1e-4);
    free(gold);
    free(rel);
    free(px);
    free(emb);
    free(pen);
    v4r_vision_free(v);
}

static void test_embeddings_match_reference(void **state)
{
    for (int k = 0; k < n_kernels(); k++) {
        check_model("clip-vision-tiny-224", k);
        check_model("clip-vision-tiny-336", k);
    }
    (void)state;
}

static void test_model_shape(void **state)
{
    v4r_vision *v = load_fixture_model("clip-vision-tiny-336");
    assert_int_equal(v4r_vision_tokens(v), 577);
    assert_int_equal(v4r_vision_hidden_size(v), 64);
    assert_int_equal(v4r_vision_layers(v), 2);
    assert_int_equal(v4r_vision_image_size(v), 336);
    assert_int_equal(v4r_vision_pixel_count(v), 3 * 336 * 336);
    assert_int_equal(v4r_vision_preproc_of(v)->shortest_edge, 336);
    v4r_vision_free(v);
    (void)state;
}

/* Batch sizes 1, 5, 12 and 1 or 2 threads give the same bits, embeddings and token states. */
static void check_invariance(const char *name, int kernel)
{
    use_kernel(kernel);
    v4r_vision *v = load_fixture_model(name);
    unsetenv("VLM4REC_KERNEL");
    size_t dim = v4r_vision_dim(v), states = v4r_vision_tokens(v) * v4r_vision_hidden_size(v);
    float *px = fixture_pixels(v), *ref = v4r_malloc(N_IMAGES * dim * sizeof *ref);
    float *emb = v4r_malloc(N_IMAGES * dim * sizeof *emb), *pref = v4r_malloc(N_IMAGES * states * sizeof *pref);
    float *pen = v4r_malloc(N_IMAGES * states * sizeof *pen);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    v4r_vision_forward(v, px, N_IMAGES, 1, ref, pref);
    static const size_t batches[] = {5, 12};
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        for (size_t b = 0; b < 2; b++) {
            v4r_vision_forward(v, px, N_IMAGES, batches[b], emb, pen);
            assert_memory_equal(emb, ref, N_IMAGES * dim * sizeof *emb);
            assert_memory_equal(pen, pref, N_IMAGES * states * sizeof *pen);
        }
    }
    omp_set_num_threads(saved);
    free(px), free(ref), free(emb), free(pref), free(pen);
    v4r_vision_free(v);
}

static void test_batch_and_threads_invariance(void **state)
{
    for (int k = 0; k < n_kernels(); k++) {
        check_invariance("clip-vision-tiny-224", k);
        check_invariance("clip-vision-tiny-336", k);
    }
    (void)state;
}

/* ---- files ---- */

static void test_embed_files_with_failures(void **state)
{
    v4r_vision *v = load_fixture_model("clip-vision-tiny-224");
    size_t dim = v4r_vision_dim(v), n_gold;
    float *gold = read_npy("goldens/clip-vision-tiny-224.image_embeds.npy", &n_gold);
    /* the good images interleaved with the broken ones, a missing file and no path */
    const char *names[N_IMAGES + 4];
    int golden_row[N_IMAGES + 4];
    size_t n = 0;
    for (int i = 0; i < N_IMAGES; i++) {
        if (i == 2)
            names[n] = "corrupt_truncated.jpg", golden_row[n++] = -1;
        if (i == 7)
            names[n] = "not_an_image.jpg", golden_row[n++] = -1;
        if (i == 9)
            names[n] = "no_such_file.png", golden_row[n++] = -1;
        names[n] = IMAGES[i], golden_row[n++] = i;
    }
    names[n] = NULL, golden_row[n++] = -1;
    char **paths = v4r_calloc(n, sizeof *paths), **why = v4r_calloc(n, sizeof *why);
    for (size_t i = 0; i < n; i++)
        paths[i] = names[i] ? image_path(names[i]) : NULL;
    float *emb = v4r_malloc(n * dim * sizeof *emb);
    uint8_t ok[N_IMAGES + 4];
    size_t failed = v4r_vision_embed_files(v, (const char *const *)paths, n, 5, emb, ok, why, NULL);
    assert_int_equal(failed, 4);
    for (size_t i = 0; i < n; i++) {
        if (golden_row[i] >= 0) {
            assert_true(ok[i] && !why[i]);
            assert_true(max_abs_diff(emb + i * dim, gold + golden_row[i] * dim, dim) <= 1e-4);
            continue;
        }
        assert_false(ok[i]);
        for (size_t c = 0; c < dim; c++)
            assert_true(emb[i * dim + c] == 0);
        print_message("%s: %s\n", names[i] ? names[i] : "(no path)", why[i]);
    }
    assert_non_null(strstr(why[2], "corrupt_truncated.jpg"));
    assert_non_null(strstr(why[2], "corrupt JPEG"));
    assert_non_null(strstr(why[8], "not a JPEG, PNG or WebP image"));
    assert_non_null(strstr(why[11], "no_such_file.png"));
    assert_string_equal(why[n - 1], "no image");
    for (size_t i = 0; i < n; i++)
        free(paths[i]), free(why[i]);
    free(paths), free(why), free(emb), free(gold);
    v4r_vision_free(v);
    (void)state;
}

/* ---- model directories ---- */

/* A directory with the fixture model's files linked in, and config.json replaced when config is
 * not NULL. */
static char *model_copy(const char *name, const char *config)
{
    char *dir = tu_tmpdir();
    static const char *const files[] = {"config.json", "model.safetensors", "preprocessor_config.json"};
    for (int i = 0; i < 3; i++) {
        if (config && i == 0)
            continue;
        char *src = v4r_sprintf("%s/fixtures/models/%s/%s", tu_shared(), name, files[i]);
        char *dst = v4r_path_join(dir, files[i]);
        assert_int_equal(symlink(src, dst), 0);
        free(src), free(dst);
    }
    if (config)
        tu_write(dir, "config.json", config);
    return dir;
}

static void embed_fixtures(v4r_vision *v, float *emb)
{
    float *px = fixture_pixels(v);
    v4r_vision_forward(v, px, N_IMAGES, 0, emb, NULL);
    free(px);
}

static void test_full_clip_model_layout(void **state)
{
    char *dir = model_copy("clip-vision-tiny-224",
                           "{\"model_type\": \"clip\", \"projection_dim\": 32, \"text_config\": {\"hidden_size\": 8},"
                           " \"vision_config\": {\"hidden_size\": 64, \"intermediate_size\": 128, \"image_size\": 224,"
                           " \"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"patch_size\": 32}}");
    v4r_vision *a = load_model(dir), *b = load_fixture_model("clip-vision-tiny-224");
    float ea[N_IMAGES * 32], eb[N_IMAGES * 32];
    embed_fixtures(a, ea);
    embed_fixtures(b, eb);
    assert_memory_equal(ea, eb, sizeof ea);
    v4r_vision_free(a);
    v4r_vision_free(b);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* Rewrites the fixture model's safetensors: tensors renamed (from -> to, NULL: none) and/or stored
 * as F16. */
static void write_weights(const char *dir, const char *from, const char *to, int f16)
{
    char *src = fixture("models/clip-vision-tiny-224/model.safetensors"), *data;
    size_t len;
    assert_int_equal(v4r_read_file(src, &data, &len, NULL), 0);
    uint64_t hlen;
    memcpy(&hlen, data, 8);
    json_t *hdr = json_loadb(data + 8, hlen, 0, NULL), *out = json_object(), *meta;
    const char *key;
    assert_non_null(hdr);
    size_t off = 0, cap = len * 2;
    unsigned char *body = v4r_malloc(cap);
    json_object_foreach(hdr, key, meta)
    {
        if (!strcmp(key, "__metadata__"))
            continue;
        size_t a = json_integer_value(json_array_get(json_object_get(meta, "data_offsets"), 0));
        size_t b = json_integer_value(json_array_get(json_object_get(meta, "data_offsets"), 1));
        const char *src_bytes = data + 8 + hlen + a;
        size_t nb = f16 ? (b - a) / 2 : b - a;
        if (f16)
            for (size_t i = 0; i < (b - a) / 4; i++) {
                float x;
                memcpy(&x, src_bytes + 4 * i, 4);
                uint16_t h = v4r_f32_to_f16(x);
                memcpy(body + off + 2 * i, &h, 2);
            }
        else
            memcpy(body + off, src_bytes, nb);
        json_t *m = json_pack("{s:s, s:O, s:[I, I]}", "dtype", f16 ? "F16" : "F32", "shape",
                              json_object_get(meta, "shape"), "data_offsets", (json_int_t)off, (json_int_t)(off + nb));
        json_object_set_new(out, from && !strcmp(key, from) ? to : key, m);
        off += nb;
    }
    char *text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    char *path = v4r_path_join(dir, "model.safetensors");
    FILE *fp = fopen(path, "wb");
    uint64_t hl = padded;
    fwrite(&hl, 8, 1, fp);
    fwrite(text, 1, tl, fp);
    for (size_t i = tl; i < padded; i++)
        fputc(' ', fp);
    fwrite(body, 1, off, fp);
    fclose(fp);
    free(path), free(text), free(body), free(data), free(src);
    json_decref(hdr);
    json_decref(out);
}

/* A model directory with the fixture's config and preprocessor, and rewritten weights. */
static char *model_with_weights(const char *from, const char *to, int f16)
{
    char *dir = tu_tmpdir();
    static const char *const files[] = {"config.json", "preprocessor_config.json"};
    for (int i = 0; i < 2; i++) {
        char *src = v4r_sprintf("%s/fixtures/models/clip-vision-tiny-224/%s", tu_shared(), files[i]);
        char *dst = v4r_path_join(dir, files[i]);
        assert_int_equal(symlink(src, dst), 0);
        free(src), free(dst);
    }
    write_weights(dir, from, to, f16);
    return dir;
}

static void test_f16_weights(void **state)
{
    char *dir = model_with_weights(NULL, NULL, 1);
    v4r_vision *v = load_model(dir);
    float emb[N_IMAGES * 32];
    embed_fixtures(v, emb);
    size_t n;
    float *gold = read_npy("goldens/clip-vision-tiny-224.image_embeds.npy", &n);
    double d = max_abs_diff(emb, gold, n);
    print_message("fp16 weights: image_embeds max abs diff %.2g from the fp32 model's\n", d);
    assert_true(d > 0 && d < 2e-2);
    free(gold);
    v4r_vision_free(v);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void expect_load_error(const char *dir, int code, const char *want)
{
    v4r_vision *v = (v4r_vision *)1;
    v4r_err err = {0};
    int rc = v4r_vision_load(dir, &v, &err);
    if (rc != code || !strstr(err.msg, want))
        fail_msg("rc %d, message '%s'; expected %d and '%s'", rc, err.msg, code, want);
    assert_null(v);
}

static void test_load_errors(void **state)
{
    char *dir = model_with_weights("vision_model.encoder.layers.1.mlp.fc2.bias", "something.else", 0);
    expect_load_error(dir, V4R_EINPUT, "missing tensor 'vision_model.encoder.layers.1.mlp.fc2.bias'");
    tu_rmtree(dir), free(dir);
    dir = model_with_weights("vision_model.pre_layrnorm.weight", "vision_model.pre_layernorm.weight", 0);
    expect_load_error(dir, V4R_EINPUT, "'vision_model.pre_layrnorm.weight'");
    tu_rmtree(dir), free(dir);
    dir = model_with_weights("visual_projection.weight", "text_projection.weight", 0);
    expect_load_error(dir, V4R_EINPUT, "'visual_projection.weight'");
    tu_rmtree(dir), free(dir);
    static const struct {
        const char *config;
        int code;
        const char *want;
    } bad[] = {
        {"{\"model_type\": \"clip_vision_model\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_attention_heads\": 4,"
         " \"num_hidden_layers\": 2, \"patch_size\": 32, \"projection_dim\": 16}",
         V4R_EINPUT, "'visual_projection.weight' has shape [32, 64], expected [16, 64]"},
        {"{\"model_type\": \"siglip_vision_model\"}", V4R_EINPUT, "model_type siglip_vision_model is not supported"},
        {"{\"model_type\": \"clip_vision_model\", \"hidden_act\": \"swish\"}", V4R_EINPUT, "hidden_act \"swish\""},
        {"{\"model_type\": \"clip_vision_model\", \"hidden_size\": 64, \"num_attention_heads\": 5}", V4R_EINPUT,
         "not a multiple"},
        {"{\"model_type\": \"clip\", \"vision_config\": 3}", V4R_EINPUT, "\"vision_config\" must be an object"},
        {"{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_attention_heads\": 4, \"num_hidden_layers\": 2,"
         " \"patch_size\": 32, \"projection_dim\": 32, \"image_size\": 256}",
         V4R_EINPUT, "position_embedding.weight' has shape [50, 64], expected [65, 64]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dir = model_copy("clip-vision-tiny-224", bad[i].config);
        expect_load_error(dir, bad[i].code, bad[i].want);
        tu_rmtree(dir), free(dir);
    }
    /* a preprocessor whose crop is not the model's image size, and none at all */
    dir = model_copy("clip-vision-tiny-224", NULL);
    char *pp = v4r_path_join(dir, "preprocessor_config.json");
    assert_int_equal(unlink(pp), 0);
    expect_load_error(dir, V4R_EIO, "preprocessor_config.json: cannot open");
    tu_write(dir, "preprocessor_config.json", "{\"crop_size\": 200}");
    expect_load_error(dir, V4R_EINPUT, "come out 200 x 200, the model takes 224 x 224");
    free(pp);
    tu_rmtree(dir), free(dir);
    char *nowhere = tu_tmpdir();
    expect_load_error(nowhere, V4R_EIO, "config.json");
    tu_rmtree(nowhere), free(nowhere);
    (void)state;
}

int main(void)
{
    unsetenv("VLM4REC_KERNEL");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pixels_match_reference),
        cmocka_unit_test(test_preproc_config_forms),
        cmocka_unit_test(test_preproc_steps),
        cmocka_unit_test(test_embeddings_match_reference),
        cmocka_unit_test(test_model_shape),
        cmocka_unit_test(test_batch_and_threads_invariance),
        cmocka_unit_test(test_embed_files_with_failures),
        cmocka_unit_test(test_full_clip_model_layout),
        cmocka_unit_test(test_f16_weights),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

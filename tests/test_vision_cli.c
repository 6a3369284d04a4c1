/* `vlm4rec embed-images` end to end on a small dataset whose items point at the fixture images:
 * the reference's vectors in item order, zero rows and reasons for the broken, missing and URL
 * images, the coverage list, resuming after a kill -9 (byte for byte the uninterrupted output), a
 * stale checkpoint, batch size / chunk size / threads not changing a byte, and a CLIP repository
 * pulled from a local hub look-alike (tests/hubserver.c) used by its id. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hubserver.c" /* tests/CMakeLists.txt builds each test_*.c alone */
#include "vlm4rec/io.h"

enum { N_ITEMS = 17 };

/* The items: the good images in reverse name order with the broken ones among them, then an item
 * without an image, a URL and a missing file; golden: the row of the goldens (the 12 good images in
 * file-name order), -1 for a failure. */
static const struct {
    const char *id, *image;
    int golden;
} ITEMS[N_ITEMS] = {
    {"i0", "images/wide_1000x150.jpg", 11},   {"i1", "images/tiny_97x61.png", 10},
    {"i2", "images/subsampled420_800x600.jpg", 9}, {"i3", "images/square_224.jpg", 8},
    {"i4", "images/rgba_256x320.png", 7},     {"i5", "images/progressive_512x384.jpg", 6},
    {"i6", "images/portrait_300x500.jpg", 5}, {"i7", "images/palette_300x200.png", 4},
    {"i8", "images/odd_333x777.jpg", 3},      {"bad1", "images/not_an_image.jpg", -1},
    {"i10", "images/landscape_640x480.jpg", 2}, {"i11", "images/gray_400.jpg", 1},
    {"bad2", "images/corrupt_truncated.jpg", -1}, {"i13", "images/cmyk_360x240.jpg", 0},
    {"noimg", "", -1},                        {"url", "https://example.com/a.jpg", -1},
    {"gone", "images/nope.png", -1},
};

static char *model_dir(void) { return v4r_sprintf("%s/fixtures/models/clip-vision-tiny-224", tu_shared()); }

/* dir/ds: the dataset, its images/ a link to the fixture images. */
static char *make_dataset(void)
{
    char *dir = tu_tmpdir(), *items = v4r_strdup("item\ttitle\timage\n");
    for (int i = 0; i < N_ITEMS; i++) {
        char *next = v4r_sprintf("%s%s\tItem %d\t%s\n", items, ITEMS[i].id, i, ITEMS[i].image);
        free(items);
        items = next;
    }
    tu_write(dir, "ds/items.tsv", items);
    tu_write(dir, "ds/users.tsv", "user\nu\n");
    tu_write(dir, "ds/train.tsv", "user\titem\ttimestamp\nu\ti0\t1\n");
    tu_write(dir, "ds/valid.tsv", "user\titem\ttimestamp\nu\ti3\t2\n");
    tu_write(dir, "ds/test.tsv", "user\titem\ttimestamp\n");
    char *src = v4r_sprintf("%s/fixtures/images", tu_shared()), *dst = v4r_sprintf("%s/ds/images", dir);
    assert_int_equal(symlink(src, dst), 0);
    free(src), free(dst), free(items);
    return dir;
}

enum { KILLED = -9 };

/* Runs embed-images into dir/NAME.npy with extra options (kill_after: VLM4REC_TEST_KILL_AFTER_CHUNKS
 * or NULL); returns the output text. want_rc KILLED: ended by SIGKILL (the shell says 128 + 9). */
static char *embed_k(const char *dir, const char *name, const char *opts, const char *kill_after, int want_rc)
{
    char *model = model_dir(), *out = NULL;
    if (kill_after)
        setenv("VLM4REC_TEST_KILL_AFTER_CHUNKS", kill_after, 1);
    int rc = tu_run(&out, "embed-images --model '%s' --dataset '%s/ds' -o '%s/%s.npy' %s", model, dir, dir, name, opts);
    unsetenv("VLM4REC_TEST_KILL_AFTER_CHUNKS");
    if (want_rc == KILLED && (rc == 137 || rc == 128))
        rc = KILLED;
    if (rc != want_rc)
        fail_msg("embed-images %s: exit %d, expected %d: %s", opts, rc, want_rc, out);
    free(model);
    return out;
}

static char *embed(const char *dir, const char *name, const char *opts, int want_rc)
{
    return embed_k(dir, name, opts, NULL, want_rc);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static void *read_bytes(const char *dir, const char *name, size_t *n)
{
    char *path = v4r_path_join(dir, name), *data = NULL;
    if (v4r_read_file(path, &data, n, NULL) != 0)
        fail_msg("cannot read %s", path);
    free(path);
    return data;
}

static void assert_same_file(const char *dir, const char *a, const char *b)
{
    size_t na, nb;
    void *da = read_bytes(dir, a, &na), *db = read_bytes(dir, b, &nb);
    if (na != nb || memcmp(da, db, na))
        fail_msg("%s and %s differ", a, b);
    free(da), free(db);
}

static void test_vectors_coverage_failures(void **state)
{
    char *dir = make_dataset(), *out = embed(dir, "v", "--batch-size 5", 0);
    assert_non_null(strstr(out, "5 of 17 items got no vector"));
    char *npy = v4r_path_join(dir, "v.npy"), *gpath = v4r_sprintf("%s/fixtures/goldens/clip-vision-tiny-224.image_embeds.npy", tu_shared());
    v4r_matrix m, g;
    assert_int_equal(v4r_npy_read(npy, &m, NULL), 0);
    assert_int_equal(v4r_npy_read(gpath, &g, NULL), 0);
    assert_int_equal(m.rows, N_ITEMS);
    assert_int_equal(m.cols, 32);
    double worst = 0;
    for (int i = 0; i < N_ITEMS; i++)
        for (size_t c = 0; c < m.cols; c++) {
            float x = m.data[i * m.cols + c];
            if (ITEMS[i].golden < 0)
                assert_true(x == 0);
            else
                worst = fmax(worst, fabs(x - g.data[ITEMS[i].golden * g.cols + c]));
        }
    print_message("embed-images against transformers: max abs diff %.2g\n", worst);
    assert_true(worst <= 1e-4);
    char *cov = tu_read(dir, "v.covered.txt");
    assert_string_equal(cov, "i0\ni1\ni2\ni3\ni4\ni5\ni6\ni7\ni8\ni10\ni11\ni13\n");
    char *fail = tu_read(dir, "v.failures.tsv");
    print_message("%s", fail);
    assert_int_equal(strncmp(fail, "item\treason\nbad1\t", 17), 0);
    assert_non_null(strstr(fail, "bad1\t"));
    assert_non_null(strstr(fail, "images/not_an_image.jpg: not a JPEG, PNG or WebP image\n"));
    assert_non_null(strstr(fail, "\nbad2\t"));
    assert_non_null(strstr(fail, "images/corrupt_truncated.jpg: corrupt JPEG: truncated file\n"));
    assert_non_null(strstr(fail, "\nnoimg\tno image\n"));
    assert_non_null(strstr(fail, "\nurl\thttps://example.com/a.jpg: image URLs are not supported yet"));
    assert_non_null(strstr(fail, "\ngone\t"));
    assert_non_null(strstr(fail, "images/nope.png: cannot open"));
    char *partial = v4r_path_join(dir, "v.npy.partial");
    assert_false(exists(partial)); /* removed once the outputs are written */
    v4r_matrix_free(&m), v4r_matrix_free(&g);
    free(partial), free(cov), free(fail), free(npy), free(gpath), free(out);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static int count_chunks(const char *partial)
{
    int n = 0;
    for (int c = 0; c < 10; c++) {
        char *p = v4r_sprintf("%s/chunk-%06d.npy", partial, c);
        n += v4r_file_exists(p);
        free(p);
    }
    return n;
}

static void test_resume_after_kill(void **state)
{
    char *dir = make_dataset();
    free(embed(dir, "whole", "--chunk-size 4 --batch-size 3", 0));
    free(embed_k(dir, "r", "--chunk-size 4 --batch-size 3", "2", KILLED)); /* kill -9 after 2 chunks */
    char *npy = v4r_path_join(dir, "r.npy"), *partial = v4r_path_join(dir, "r.npy.partial");
    assert_false(v4r_file_exists(npy));
    assert_int_equal(count_chunks(partial), 2);
    char *out = embed(dir, "r", "--chunk-size 4 --batch-size 3", 0);
    assert_non_null(strstr(out, "2 of 5 chunks already done"));
    assert_same_file(dir, "r.npy", "whole.npy");
    assert_same_file(dir, "r.failures.tsv", "whole.failures.tsv");
    assert_same_file(dir, "r.covered.txt", "whole.covered.txt");
    assert_false(exists(partial));
    free(out), free(npy), free(partial);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* A checkpoint of another chunk size (and a stray chunk file) is discarded, not mixed in. */
static void test_stale_checkpoint(void **state)
{
    char *dir = make_dataset();
    free(embed(dir, "whole", "", 0));
    tu_write(dir, "s.npy.partial/manifest.json", "{\"format\": \"vlm4rec.embed-images.partial/1\", \"chunk_size\": 3}");
    tu_write(dir, "s.npy.partial/chunk-000000.npy", "not a chunk");
    char *out = embed(dir, "s", "--chunk-size 4", 0);
    assert_non_null(strstr(out, "starting over"));
    assert_same_file(dir, "s.npy", "whole.npy");
    free(out);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_batch_chunk_threads_same_bytes(void **state)
{
    char *dir = make_dataset();
    free(embed(dir, "a", "--threads 1 --batch-size 1 --chunk-size 1", 0));
    free(embed(dir, "b", "--threads 2 --batch-size 7", 0));
    assert_same_file(dir, "a.npy", "b.npy");
    assert_same_file(dir, "a.covered.txt", "b.covered.txt");
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

static void test_usage_and_model_errors(void **state)
{
    char *dir = make_dataset(), *model = model_dir(), *out = NULL;
    assert_int_equal(tu_run(&out, "embed-images --model '%s' -o '%s/x.npy'", model, dir), 2);
    assert_non_null(strstr(out, "--dataset"));
    free(out);
    free(embed(dir, "x", "--chunk-size 0", 2));
    out = NULL;
    assert_int_equal(tu_run(&out, "embed-images --model '%s' --dataset '%s/ds' -o '%s/x.npy'", dir, dir, dir), 4);
    assert_non_null(strstr(out, "config.json"));
    free(out);
    assert_int_equal(tu_run(&out, "embed-images --help"), 0);
    assert_non_null(strstr(out, "--chunk-size"));
    free(out);
    char *x = v4r_path_join(dir, "x.npy");
    assert_false(v4r_file_exists(x));
    free(x), free(model);
    tu_rmtree(dir);
    free(dir);
    (void)state;
}

/* A repository laid out as openai/clip-vit-large-patch14 is (safetensors beside PyTorch, TF and
 * Flax weights, tokenizer files), holding the tiny model: pull takes what embed-images needs. */
static void test_pull_clip_repository(void **state)
{
    char *repo = tu_tmpdir(), *home = tu_tmpdir(), *dir = make_dataset(), *out = NULL;
    static const char *const files[] = {"config.json", "model.safetensors", "preprocessor_config.json"};
    for (int i = 0; i < 3; i++) {
        char *src = v4r_sprintf("%s/fixtures/models/clip-vision-tiny-224/%s", tu_shared(), files[i]), *data;
        size_t n;
        assert_int_equal(v4r_read_file(src, &data, &n, NULL), 0);
        char *dst = v4r_path_join(repo, files[i]);
        FILE *fp = fopen(dst, "wb");
        fwrite(data, 1, n, fp);
        fclose(fp);
        free(src), free(data), free(dst);
    }
    tu_write(repo, "pytorch_model.bin", "torch");
    tu_write(repo, "tf_model.h5", "tf");
    tu_write(repo, "flax_model.msgpack", "flax");
    tu_write(repo, "tokenizer.json", "{}");
    tu_write(repo, "merges.txt", "#version: 0.2");
    hs_repo repos[] = {{"openai/clip-vit-large-patch14", repo, "0123456789abcdef0123456789abcdef01234567"}};
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    unsetenv("HF_TOKEN");
    hubserver *srv = hs_start(repos, 1);
    assert_non_null(srv);
    setenv("HF_ENDPOINT", hs_url(srv), 1);
    setenv("VLM4REC_HOME", home, 1);
    int rc = tu_run(&out, "pull openai/clip-vit-large-patch14");
    hs_stop(srv);
    if (rc)
        fail_msg("pull: %s", out);
    free(out);
    char *find = v4r_sprintf("find '%s' -type f \\( -name '*.bin' -o -name '*.h5' -o -name '*.msgpack' \\) | grep -q .", home);
    assert_int_not_equal(system(find), 0); /* none of the other weight formats */
    free(find);
    free(embed(dir, "local", "", 0));
    rc = tu_run(&out, "embed-images --offline --model openai/clip-vit-large-patch14 --dataset '%s/ds' -o '%s/hub.npy'",
                dir, dir);
    if (rc)
        fail_msg("embed-images by id: %s", out);
    assert_same_file(dir, "hub.npy", "local.npy");
    unsetenv("HF_ENDPOINT");
    unsetenv("VLM4REC_HOME");
    free(out);
    tu_rmtree(repo), tu_rmtree(home), tu_rmtree(dir);
    free(repo), free(home), free(dir);
    (void)state;
}

int main(void)
{
    unsetenv("VLM4REC_TEST_KILL_AFTER_CHUNKS");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_coverage_failures),
        cmocka_unit_test(test_resume_after_kill),
        cmocka_unit_test(test_stale_checkpoint),
        cmocka_unit_test(test_batch_chunk_threads_same_bytes),
        cmocka_unit_test(test_usage_and_model_errors),
        cmocka_unit_test(test_pull_clip_repository),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

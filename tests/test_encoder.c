/* The BERT encoder against transformers / sentence-transformers goldens (bert-tiny fp32, the
 * all-MiniLM-L6-v2 shape in fp16 shards), bit-identical vectors across batch sizes, threads and
 * padding, the sentence-transformers configurations, and damaged model directories.
 * V4R_ENCODER_BENCH=1 adds a throughput measurement (2000 sequences of ~100 tokens). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vlm4rec/io.h"
#include "vlm4rec/kernels.h"
#include "vlm4rec/text.h"

/* ---- fixtures ---- */

static tu_tokens tokens; /* ids_256 of every fixture text */

static char *fixture(const char *rel) { return v4r_sprintf("%s/fixtures/%s", tu_shared(), rel); }

static int setup(void **state)
{
    (void)state;
    tu_tokens_load(&tokens);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_tokens_free(&tokens);
    return 0;
}

static v4r_matrix golden(const char *name)
{
    char *rel = v4r_sprintf("goldens/%s.npy", name), *path = fixture(rel);
    v4r_matrix m;
    v4r_err err = {0};
    if (v4r_npy_read(path, &m, &err) != 0)
        fail_msg("%s", err.msg);
    free(rel);
    free(path);
    return m;
}

static v4r_encoder *load(const char *dir, const char *kernel)
{
    v4r_encoder *e;
    v4r_err err = {0};
    const char *was = getenv("VLM4REC_KERNEL");
    char *saved = was ? v4r_strdup(was) : NULL;
    if (kernel)
        setenv("VLM4REC_KERNEL", kernel, 1);
    int rc = v4r_encoder_load(dir, &e, &err);
    if (saved)
        setenv("VLM4REC_KERNEL", saved, 1);
    else
        unsetenv("VLM4REC_KERNEL");
    free(saved);
    if (rc)
        fail_msg("%s", err.msg);
    return e;
}

static v4r_encoder *load_fixture(const char *model, const char *kernel)
{
    char *rel = v4r_sprintf("models/%s", model), *dir = fixture(rel);
    v4r_encoder *e = load(dir, kernel);
    free(rel);
    free(dir);
    return e;
}

/* The vectors of the first n fixture texts. */
static float *encode(v4r_encoder *e, size_t n, size_t batch) { return tu_encode(e, &tokens, n, batch); }

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* ---- parity with transformers ---- */

/* The last layer's token states of text t against goldens/<model>.hidden<t>.npy. */
static double hidden_parity(v4r_encoder *e, const char *model, size_t t)
{
    char *name = v4r_sprintf("%s.hidden%zu", model, t);
    v4r_matrix g = golden(name);
    size_t len = tokens.lens[t], h = v4r_encoder_hidden_size(e), L = v4r_encoder_layers(e);
    assert_int_equal(g.rows, len);
    assert_int_equal(g.cols, h);
    float *states = v4r_malloc((L + 1) * len * h * sizeof *states);
    v4r_err err = {0};
    assert_int_equal(v4r_encoder_hidden_states(e, tokens.ids[t], len, states, &err), 0);
    double d = max_diff(states + L * len * h, g.data, len * h);
    /* the vector is the mean of the last states, normalized */
    float *vec = encode(e, t + 1, 1) + t * h, mean[1024];
    double ss = 0;
    for (size_t c = 0; c < h; c++) {
        mean[c] = 0;
        for (size_t p = 0; p < len; p++)
            mean[c] += states[(L * len + p) * h + c] / (float)len;
        ss += (double)mean[c] * mean[c];
    }
    for (size_t c = 0; c < h; c++)
        assert_float_equal(vec[c], mean[c] / sqrt(ss), 1e-6);
    free(vec - t * h);
    free(states);
    v4r_matrix_free(&g);
    free(name);
    return d;
}

static const char *kernel_names[2] = {"blas", "avx512"};
static int n_kernels(void) { return v4r_cpu_has_avx512() ? 2 : 1; }

static void test_bert_tiny_parity(void **state)
{
    (void)state;
    for (int k = 0; k < n_kernels(); k++) {
        v4r_encoder *e = load_fixture("bert-tiny", kernel_names[k]);
        assert_int_equal(v4r_encoder_dim(e), 32);
        assert_int_equal(v4r_encoder_layers(e), 2);
        assert_int_equal(v4r_encoder_pooling(e), V4R_POOL_MEAN);
        assert_true(v4r_encoder_normalizes(e));
        assert_int_equal(v4r_encoder_max_seq_length(e), 256);
        v4r_matrix g = golden("bert-tiny.embeddings");
        assert_int_equal(g.rows, tokens.n);
        float *v = encode(e, tokens.n, 32);
        double d = max_diff(v, g.data, tokens.n * 32);
        print_message("bert-tiny, %s: %zu vectors, max abs diff %.3g\n", kernel_names[k], tokens.n, d);
        assert_true(d <= 1e-5);
        for (size_t t = 0; t < 3; t++) {
            double dh = hidden_parity(e, "bert-tiny", t);
            print_message("bert-tiny, %s: token states of text %zu, max abs diff %.3g\n", kernel_names[k], t, dh);
            assert_true(dh <= 1e-5);
        }
        free(v);
        v4r_matrix_free(&g);
        v4r_encoder_free(e);
    }
}

static void test_minilm_parity(void **state)
{
    (void)state;
    for (int k = 0; k < n_kernels(); k++) {
        v4r_encoder *e = load_fixture("minilm-l6-shape", kernel_names[k]);
        assert_int_equal(v4r_encoder_dim(e), 384);
        assert_int_equal(v4r_encoder_layers(e), 6);
        size_t n = SANITIZED ? (k ? 24 : 6) : tokens.n;
        v4r_matrix g = golden("minilm-l6-shape.embeddings");
        float *v = encode(e, n, 32);
        double d = max_diff(v, g.data, n * 384), dh = hidden_parity(e, "minilm-l6-shape", 0);
        print_message("minilm-l6-shape, %s: %zu vectors, max abs diff %.3g; token states of text 0: %.3g\n",
                      kernel_names[k], n, d, dh);
        assert_true(d <= 1e-4);
        assert_true(dh <= 1e-4);
        free(v);
        v4r_matrix_free(&g);
        v4r_encoder_free(e);
    }
}

/* ---- determinism ---- */

static void same_vectors(const char *model, const char *kernel, size_t n)
{
    v4r_encoder *e = load_fixture(model, kernel);
    tu_same_across_batches(e, &tokens, n);
    v4r_encoder_free(e);
}

static void test_batches_and_threads(void **state)
{
    (void)state;
    for (int k = 0; k < n_kernels(); k++) {
        same_vectors("bert-tiny", kernel_names[k], SANITIZED ? 120 : tokens.n);
        same_vectors("minilm-l6-shape", kernel_names[k], SANITIZED ? 9 : 80);
    }
}

/* ---- model directories ---- */

typedef struct {
    char *name;
    char dtype[16];
    size_t ndim, shape[4];
    unsigned char *data;
    size_t n;
} tensor;

/* Reads every tensor of a safetensors file (data copied). */
static size_t st_read(const char *path, tensor **out)
{
    char *buf;
    size_t len, n = 0;
    assert_int_equal(v4r_read_file(path, &buf, &len, NULL), 0);
    size_t hl = 0;
    for (int b = 7; b >= 0; b--)
        hl = hl << 8 | (unsigned char)buf[b];
    json_t *h = json_loadb(buf + 8, hl, 0, NULL);
    tensor *t = v4r_calloc(json_object_size(h), sizeof *t);
    const char *name;
    json_t *v;
    json_object_foreach(h, name, v)
    {
        if (!strcmp(name, "__metadata__"))
            continue;
        json_t *shape = json_object_get(v, "shape"), *off = json_object_get(v, "data_offsets");
        size_t a = (size_t)json_integer_value(json_array_get(off, 0)), z = (size_t)json_integer_value(json_array_get(off, 1));
        t[n].name = v4r_strdup(name);
        snprintf(t[n].dtype, sizeof t[n].dtype, "%s", json_string_value(json_object_get(v, "dtype")));
        t[n].ndim = json_array_size(shape);
        for (size_t d = 0; d < t[n].ndim; d++)
            t[n].shape[d] = (size_t)json_integer_value(json_array_get(shape, d));
        t[n].n = z - a;
        t[n].data = v4r_malloc(z - a);
        memcpy(t[n].data, buf + 8 + hl + a, z - a);
        n++;
    }
    json_decref(h);
    free(buf);
    *out = t;
    return n;
}

static void st_write(const char *path, const tensor *t, size_t n)
{
    json_t *h = json_object();
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (size_t d = 0; d < t[i].ndim; d++)
            json_array_append_new(shape, json_integer((json_int_t)t[i].shape[d]));
        json_object_set_new(h, t[i].name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", t[i].dtype, "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + t[i].n)));
        off += t[i].n;
    }
    char *text = json_dumps(h, JSON_COMPACT);
    size_t hl = strlen(text);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (int b = 0; b < 8; b++)
        fputc((int)((hl >> (8 * b)) & 0xff), fp);
    fwrite(text, 1, hl, fp);
    for (size_t i = 0; i < n; i++)
        fwrite(t[i].data, 1, t[i].n, fp);
    fclose(fp);
    free(text);
    json_decref(h);
}

static void st_free(tensor *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].data);
    }
    free(t);
}

static tensor *st_named(tensor *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].name, name))
            return &t[i];
    fail_msg("no tensor %s", name);
    return NULL;
}

static void sh(const char *fmt, const char *a, const char *b)
{
    char *cmd = v4r_sprintf(fmt, a, b);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

/* A fresh copy of a fixture model (cp -r), writable. With link, the files are symlinks to the
 * shared fixtures instead: such a copy may lose files (unlink) but must never be written to. */
static char *copy_model(const char *model, int link)
{
    char *rel = v4r_sprintf("models/%s", model), *src = fixture(rel), *dir = tu_tmpdir();
    sh(link ? "cp -rs '%s'/. '%s'/" : "cp -r '%s'/. '%s'/", src, dir);
    sh("chmod -R u+w '%s' %s", dir, ""); /* chmod -R skips the symlinks it meets */
    free(rel);
    free(src);
    return dir;
}

/* Replaces dir/name (of a writable copy) with text. */
static void replace(const char *dir, const char *name, const char *text)
{
    char *path = v4r_path_join(dir, name);
    unlink(path);
    tu_write(dir, name, text);
    free(path);
}

/* Loading dir fails with code and a message holding want1 and want2. */
static void expect_load_error(const char *dir, int code, const char *want1, const char *want2)
{
    v4r_encoder *e = (v4r_encoder *)1;
    v4r_err err = {0};
    assert_int_equal(v4r_encoder_load(dir, &e, &err), code);
    assert_null(e);
    if (!strstr(err.msg, want1) || (want2 && !strstr(err.msg, want2)))
        fail_msg("message '%s' lacks '%s' or '%s'", err.msg, want1, want2 ? want2 : "");
}

static void test_damaged_weights(void **state)
{
    (void)state;
    char *dir = copy_model("bert-tiny", 0), *path = v4r_path_join(dir, "model.safetensors");
    tensor *t;
    size_t n = st_read(path, &t);
    /* a tensor with the wrong shape */
    tensor *w = st_named(t, n, "encoder.layer.0.intermediate.dense.weight");
    w->shape[0] = 32, w->shape[1] = 64;
    st_write(path, t, n);
    expect_load_error(dir, V4R_EINPUT, "'encoder.layer.0.intermediate.dense.weight' has shape [32, 64], expected [64, 32]",
                      path);
    w->shape[0] = 64, w->shape[1] = 32;
    /* a missing tensor */
    tensor *b = st_named(t, n, "encoder.layer.1.output.LayerNorm.bias");
    free(b->name);
    b->name = v4r_strdup("encoder.layer.1.output.LayerNorm.beta");
    st_write(path, t, n);
    expect_load_error(dir, V4R_EINPUT, "missing tensor 'encoder.layer.1.output.LayerNorm.bias'", path);
    /* a truncated file */
    st_write(path, t, n - 1);
    assert_int_equal(truncate(path, 3000000), 0);
    expect_load_error(dir, V4R_EINPUT, "truncated", path);
    /* no weights at all */
    assert_int_equal(unlink(path), 0);
    expect_load_error(dir, V4R_EIO, "model.safetensors", dir);
    st_free(t, n);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

static void test_missing_shard(void **state)
{
    (void)state;
    char *dir = copy_model("minilm-l6-shape", 1), *shard = v4r_path_join(dir, "model-00003-of-00003.safetensors");
    assert_int_equal(unlink(shard), 0);
    expect_load_error(dir, V4R_EIO, "model.safetensors.index.json names shard 'model-00003-of-00003.safetensors'",
                      "cannot open");
    tu_rmtree(dir);
    free(shard);
    free(dir);
}

static void test_bad_configs(void **state)
{
    (void)state;
    char *dir = copy_model("bert-tiny", 0), *cfg = v4r_path_join(dir, "config.json");
    char *text = tu_read(dir, "config.json"), *act = strstr(text, "\"gelu\"");
    assert_non_null(act);
    memcpy(act, "\"selu\"", 6);
    replace(dir, "config.json", text);
    expect_load_error(dir, V4R_EINPUT, "hidden_act \"selu\" is not supported", cfg);
    memcpy(act, "\"relu\"", 6); /* relu is supported */
    replace(dir, "config.json", text);
    v4r_encoder_free(load(dir, NULL));
    replace(dir, "config.json", "{\"model_type\": \"roberta\"}");
    expect_load_error(dir, V4R_EINPUT, "model_type roberta is not supported", NULL);
    memcpy(act, "\"gelu\"", 6);
    replace(dir, "config.json", text);
    replace(dir, "modules.json", "[{\"idx\": 0, \"path\": \"\", \"type\": \"sentence_transformers.models.Transformer\"},"
                                  "{\"idx\": 1, \"path\": \"2_Dense\", \"type\": \"sentence_transformers.models.Dense\"}]");
    expect_load_error(dir, V4R_EINPUT, "sentence_transformers.models.Dense is not supported", "modules.json");
    tu_rmtree(dir);
    free(text);
    free(cfg);
    free(dir);
}

/* ---- configurations ---- */

static void test_prefixed_names_and_plain_dir(void **state)
{
    (void)state;
    size_t n = SANITIZED ? 40 : tokens.n;
    v4r_encoder *ref = load_fixture("bert-tiny", NULL);
    float *want = encode(ref, n, 32);
    char *dir = copy_model("bert-tiny", 0), *path = v4r_path_join(dir, "model.safetensors");
    tensor *t;
    size_t nt = st_read(path, &t);
    for (size_t i = 0; i < nt; i++) {
        char *p = v4r_sprintf("bert.%s", t[i].name);
        free(t[i].name);
        t[i].name = p;
    }
    st_write(path, t, nt);
    /* a plain BERT directory: no sentence-transformers files */
    sh("cd '%s' && rm -rf modules.json sentence_bert_config.json 1_Pooling %s", dir, "");
    v4r_encoder *e = load(dir, NULL);
    assert_int_equal(v4r_encoder_pooling(e), V4R_POOL_MEAN);
    assert_true(v4r_encoder_normalizes(e));
    assert_int_equal(v4r_encoder_max_seq_length(e), 512);
    float *got = encode(e, n, 32);
    assert_memory_equal(got, want, n * 32 * sizeof *got);
    free(got);
    v4r_encoder_free(e);
    st_free(t, nt);
    free(want);
    v4r_encoder_free(ref);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* Vectors of text 1 under a pooling config (and modules.json with or without Normalize). */
static void check_pooling(const char *dir, const char *pooling, int normalize, int mode)
{
    replace(dir, "1_Pooling/config.json", pooling);
    replace(dir, "modules.json",
             normalize ? "[{\"path\": \"\", \"type\": \"sentence_transformers.models.Transformer\"},"
                         "{\"path\": \"1_Pooling\", \"type\": \"sentence_transformers.models.Pooling\"},"
                         "{\"path\": \"2_Normalize\", \"type\": \"sentence_transformers.models.Normalize\"}]"
                       : "[{\"path\": \"\", \"type\": \"sentence_transformers.models.Transformer\"},"
                         "{\"path\": \"1_Pooling\", \"type\": \"sentence_transformers.models.Pooling\"}]");
    v4r_encoder *e = load(dir, NULL);
    assert_int_equal(v4r_encoder_pooling(e), mode);
    assert_int_equal(v4r_encoder_normalizes(e), normalize);
    size_t t = 1, len = tokens.lens[t], h = 32, L = 2;
    float *states = v4r_malloc((L + 1) * len * h * sizeof *states), *v = encode(e, 2, 7) + t * h, want[32];
    v4r_err err = {0};
    assert_int_equal(v4r_encoder_hidden_states(e, tokens.ids[t], len, states, &err), 0);
    const float *last = states + L * len * h;
    double ss = 0;
    for (size_t c = 0; c < h; c++) {
        want[c] = last[c];
        for (size_t p = 1; p < len && mode != V4R_POOL_CLS; p++)
            want[c] = mode == V4R_POOL_MAX ? fmaxf(want[c], last[p * h + c]) : want[c] + last[p * h + c];
        if (mode == V4R_POOL_MEAN)
            want[c] /= (float)len;
        ss += (double)want[c] * want[c];
    }
    for (size_t c = 0; c < h; c++)
        assert_float_equal(v[c], normalize ? want[c] / sqrt(ss) : want[c], 1e-6);
    free(v - t * h);
    free(states);
    v4r_encoder_free(e);
}

static void test_pooling_modes(void **state)
{
    (void)state;
    char *dir = copy_model("bert-tiny", 0);
    check_pooling(dir, "{\"word_embedding_dimension\": 32, \"pooling_mode_cls_token\": true}", 1, V4R_POOL_CLS);
    check_pooling(dir, "{\"pooling_mode_max_tokens\": true, \"pooling_mode_mean_tokens\": false}", 0, V4R_POOL_MAX);
    check_pooling(dir, "{\"pooling_mode_mean_tokens\": true}", 0, V4R_POOL_MEAN);
    check_pooling(dir, "{\"pooling_mode\": \"cls\"}", 0, V4R_POOL_CLS);
    replace(dir, "1_Pooling/config.json", "{\"pooling_mode_mean_sqrt_len_tokens\": true}");
    expect_load_error(dir, V4R_EINPUT, "pooling must be exactly one of mean, cls, max", "1_Pooling/config.json");
    replace(dir, "1_Pooling/config.json", "{\"word_embedding_dimension\": 64, \"pooling_mode_mean_tokens\": true}");
    expect_load_error(dir, V4R_EINPUT, "word_embedding_dimension", NULL);
    replace(dir, "1_Pooling/config.json", "{\"pooling_mode_mean_tokens\": true}");
    replace(dir, "sentence_bert_config.json", "{\"max_seq_length\": 64}");
    v4r_encoder *e = load(dir, NULL);
    assert_int_equal(v4r_encoder_max_seq_length(e), 64);
    v4r_encoder_free(e);
    tu_rmtree(dir);
    free(dir);
}

/* BF16 weights (converted from the fp32 fixture) load and stay close to the fp32 vectors. */
static void test_bf16_weights(void **state)
{
    (void)state;
    char *dir = copy_model("bert-tiny", 0), *path = v4r_path_join(dir, "model.safetensors");
    tensor *t;
    size_t nt = st_read(path, &t), n = 40;
    for (size_t i = 0; i < nt; i++) {
        size_t count = t[i].n / 4;
        uint16_t *h = v4r_malloc(count * sizeof *h);
        for (size_t j = 0; j < count; j++) {
            float f;
            memcpy(&f, t[i].data + 4 * j, 4);
            h[j] = v4r_f32_to_bf16(f);
        }
        free(t[i].data);
        t[i].data = (unsigned char *)h;
        t[i].n = count * 2;
        strcpy(t[i].dtype, "BF16");
    }
    st_write(path, t, nt);
    v4r_encoder *e = load(dir, NULL);
    v4r_matrix g = golden("bert-tiny.embeddings");
    float *v = encode(e, n, 32);
    double d = max_diff(v, g.data, n * 32);
    print_message("bert-tiny in bf16: max abs diff %.3g from the fp32 goldens\n", d);
    assert_true(d > 0 && d < 0.05);
    free(v);
    v4r_matrix_free(&g);
    v4r_encoder_free(e);
    st_free(t, nt);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* fp16 whose values overflow (the query weights of layer 0 scaled by 1e5): the encode fails, naming
 * the sequence and what to do, instead of writing NaN vectors. */
static void test_fp16_overflow(void **state)
{
    (void)state;
    if (!v4r_cpu_has_avx512_fp16())
        skip();
    char *dir = copy_model("bert-tiny", 0), *path = v4r_path_join(dir, "model.safetensors");
    tensor *t;
    size_t nt = st_read(path, &t), scaled = 0;
    for (size_t i = 0; i < nt; i++) {
        if (!strstr(t[i].name, "layer.0.attention.self.query.weight"))
            continue;
        for (size_t j = 0; j < t[i].n / 4; j++) {
            float f;
            memcpy(&f, t[i].data + 4 * j, 4);
            f *= 1e5f;
            memcpy(t[i].data + 4 * j, &f, 4);
        }
        scaled++;
    }
    assert_int_equal(scaled, 1);
    st_write(path, t, nt);
    v4r_encoder *e;
    v4r_err err = {0};
    assert_int_equal(v4r_encoder_load_precision(dir, V4R_PREC_FP16, &e, &err), V4R_OK);
    int32_t ids[3] = {101, 2000, 102};
    const int32_t *seq[1] = {ids};
    size_t lens[1] = {3};
    float out[32];
    assert_int_equal(v4r_encoder_encode_ids(e, seq, lens, 1, 0, out, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "sequence 0: its vector is not finite in fp16"));
    v4r_encoder_free(e);
    /* The command names the input line (the blank line 1 has no sequence) and writes nothing. */
    char *work = tu_tmpdir(), *printed = NULL;
    tu_write(work, "t.jsonl", "{\"item\": \"a\", \"text\": \"\"}\n{\"item\": \"b\", \"text\": \"a red dress\"}\n");
    int rc = tu_run(&printed, "encode --model '%s' --input '%s/t.jsonl' -o '%s/v.npy' --precision fp16", dir, work, work);
    assert_int_equal(rc, V4R_EINPUT);
    assert_non_null(strstr(printed, "t.jsonl:2: its vector is not finite in fp16"));
    char *npy = v4r_path_join(work, "v.npy");
    assert_int_equal(access(npy, F_OK), -1);
    free(npy);
    free(printed);
    tu_rmtree(work);
    free(work);
    st_free(t, nt);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* ---- inputs ---- */

static void test_bad_ids(void **state)
{
    (void)state;
    v4r_encoder *e = load_fixture("bert-tiny", NULL);
    int32_t good[3] = {101, 2000, 102}, bad[3] = {101, 30522, 102}, *many = v4r_calloc(257, sizeof *many);
    const int32_t *ids[2] = {good, bad};
    size_t lens[2] = {3, 3};
    float out[64];
    v4r_err err = {0};
    assert_int_equal(v4r_encoder_encode_ids(e, ids, lens, 2, 0, out, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "sequence 1: token id 30522 at position 1"));
    lens[1] = 0;
    assert_int_equal(v4r_encoder_encode_ids(e, ids, lens, 2, 0, out, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "sequence 1 is empty"));
    ids[1] = many;
    lens[1] = 257;
    assert_int_equal(v4r_encoder_encode_ids(e, ids, lens, 2, 0, out, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "257 tokens"));
    assert_int_equal(v4r_encoder_encode_ids(e, ids, lens, 0, 0, out, &err), V4R_OK); /* nothing to do */
    free(many);
    v4r_encoder_free(e);
}

/* Texts through the tokenizer give the golden vectors; without a tokenizer a clear error. */
static void test_encode_texts(void **state)
{
    (void)state;
    v4r_encoder *e = load_fixture("bert-tiny", NULL);
    char *path = fixture("text/corpus.jsonl");
    v4r_lines r;
    v4r_err err = {0};
    char **texts = v4r_calloc(tokens.n, sizeof *texts);
    size_t n = 0;
    assert_int_equal(v4r_lines_open(&r, path, &err), 0);
    while (n < tokens.n && v4r_lines_next(&r, &err) == 1) {
        json_t *o = json_loads(r.line, JSON_ALLOW_NUL, NULL), *t = json_object_get(o, "text");
        assert_non_null(t);
        /* BERT's text cleaning drops U+0000, so a C string without those bytes tokenizes the same */
        size_t len = json_string_length(t), k = 0;
        texts[n] = v4r_malloc(len + 1);
        for (size_t i = 0; i < len; i++)
            if (json_string_value(t)[i])
                texts[n][k++] = json_string_value(t)[i];
        texts[n++][k] = 0;
        json_decref(o);
    }
    v4r_lines_close(&r);
    float *v = v4r_malloc(n * 32 * sizeof *v);
    int rc = v4r_encoder_encode_texts(e, (const char *const *)texts, n, 32, v, &err);
    if (!v4r_encoder_tokenizer(e)) {
        assert_int_not_equal(rc, 0);
        assert_non_null(strstr(err.msg, "tokenizer"));
        print_message("no tokenizer in this build: %s\n", err.msg);
    } else {
        assert_int_equal(rc, 0);
        v4r_matrix g = golden("bert-tiny.embeddings");
        double d = max_diff(v, g.data, n * 32);
        print_message("bert-tiny from texts: max abs diff %.3g\n", d);
        assert_true(d <= 1e-5);
        v4r_matrix_free(&g);
    }
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(v);
    free(path);
    v4r_encoder_free(e);
}

/* ---- throughput (V4R_ENCODER_BENCH=1) ---- */

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void bench_threads(v4r_encoder *e, int threads, const int32_t *const *ids, const size_t *lens, size_t n,
                          double flops)
{
    float *out = v4r_malloc(n * v4r_encoder_dim(e) * sizeof *out);
    v4r_err err = {0};
    omp_set_num_threads(threads);
    assert_int_equal(v4r_encoder_encode_ids(e, ids, lens, 64, 32, out, &err), 0); /* warm up */
    double best = 1e30, cpu = 0;
    for (int rep = 0; rep < 3; rep++) {
        double w = v4r_now(), c = cpu_seconds();
        assert_int_equal(v4r_encoder_encode_ids(e, ids, lens, n, 32, out, &err), 0);
        w = v4r_now() - w;
        if (w < best)
            best = w, cpu = cpu_seconds() - c;
    }
    print_message("%d thread(s): %.1f sentences/s, %.1f GFLOP/s (%.2f s wall, %.2f s cpu)\n", threads, (double)n / best,
                  flops / best * 1e-9, best, cpu);
    free(out);
}

static void test_bench(void **state)
{
    (void)state;
    if (!getenv("V4R_ENCODER_BENCH"))
        skip();
    v4r_encoder *e = load_fixture("minilm-l6-shape", NULL);
    size_t n = 2000, H = 384, I = 1536, L = 6;
    int32_t **ids = v4r_malloc(n * sizeof *ids);
    size_t *lens = v4r_malloc(n * sizeof *lens), total = 0;
    double flops = 0;
    v4r_rng rng;
    v4r_rng_seed(&rng, 7);
    for (size_t i = 0; i < n; i++) { /* ~100 tokens: 80..120 */
        lens[i] = 80 + v4r_rng_below(&rng, 41);
        ids[i] = v4r_malloc(lens[i] * sizeof **ids);
        for (size_t p = 0; p < lens[i]; p++)
            ids[i][p] = p == 0 ? 101 : p + 1 == lens[i] ? 102 : (int32_t)(1000 + v4r_rng_below(&rng, 28000));
        total += lens[i];
        double s = (double)lens[i];
        flops += (double)L * (2 * s * (4.0 * H * H + 2.0 * H * I) + 4 * s * s * H);
    }
    print_message("minilm-l6-shape, %s kernel: %zu sequences, %.1f tokens on average, %.2f GFLOP each\n",
                  getenv("VLM4REC_KERNEL") ? getenv("VLM4REC_KERNEL") : "auto", n, (double)total / (double)n,
                  flops / (double)n * 1e-9);
    int saved = omp_get_max_threads();
    bench_threads(e, 1, (const int32_t *const *)ids, lens, n, flops);
    bench_threads(e, 2, (const int32_t *const *)ids, lens, n, flops);
    omp_set_num_threads(saved);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(lens);
    v4r_encoder_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bert_tiny_parity),
        cmocka_unit_test(test_minilm_parity),
        cmocka_unit_test(test_batches_and_threads),
        cmocka_unit_test(test_damaged_weights),
        cmocka_unit_test(test_missing_shard),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_prefixed_names_and_plain_dir),
        cmocka_unit_test(test_pooling_modes),
        cmocka_unit_test(test_bf16_weights),
        cmocka_unit_test(test_fp16_overflow),
        cmocka_unit_test(test_bad_ids),
        cmocka_unit_test(test_encode_texts),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

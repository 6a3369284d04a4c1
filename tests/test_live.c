/* live additions: an index built with --encoder over bert-tiny vectors of a small synthetic
 * catalog, served; items added by text and by vector are answered at once (similar, recommend),
 * deletes remove them, bad inputs change nothing, users' events enter their profiles, a SIGKILL
 * between acknowledgements loses no acknowledged item, torn and damaged logs, and replay +
 * compaction equal a fresh build with the items appended. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>

#pragma GCC diagnostic ignored "-Wunused-function" /* serve_client.c has helpers this test does not use */
#include "serve_client.c"                          /* tests/CMakeLists.txt builds each test_*.c alone */
#include "vlm4rec/index.h"
#include "vlm4rec/io.h"
#include "vlm4rec/kernels.h"

static char *tmp, *data_dir, *vec_path, *idx_path;
static size_t dim;
static server srv;
static CURL *curl;

static const char *const json_hdr[] = {"Content-Type: application/json", NULL};

static long post(int port, const char *path, const char *body, reply *r)
{
    http_full(curl, port, "POST", path, body, strlen(body), json_hdr, r);
    return r->status;
}

static long del(int port, const char *path, reply *r)
{
    http_full(curl, port, "DELETE", path, NULL, 0, NULL, r);
    return r->status;
}

/* The ids of a similar / recommend answer's items, in order, as one comma-joined string. */
static char *answer_ids(const reply *r)
{
    json_t *items = json_object_get(r->json, "items");
    char *out = v4r_strdup("");
    size_t i;
    json_t *v;
    json_array_foreach(items, i, v)
    {
        char *next = v4r_sprintf("%s%s%s", out, i ? "," : "", json_string_value(json_object_get(v, "item")));
        free(out);
        out = next;
    }
    return out;
}

static int contains_id(const char *list, const char *id)
{
    size_t n = strlen(id);
    for (const char *p = list; (p = strstr(p, id)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
            return 1;
    return 0;
}

static char *index_copy(const char *name)
{
    char *path = v4r_path_join(tmp, name);
    char *out = NULL;
    int rc = tu_run(&out, "index build --dataset '%s' --vectors '%s' -o '%s' --encoder '%s/fixtures/models/bert-tiny' -q",
                    data_dir, vec_path, path, tu_shared());
    if (rc)
        fail_msg("index build: %s", out);
    free(out);
    return path;
}

static int group_setup(void **state)
{
    (void)state;
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    tmp = tu_tmpdir();
    data_dir = v4r_path_join(tmp, "data");
    vec_path = v4r_path_join(tmp, "titles.npy");
    idx_path = v4r_path_join(tmp, "items.idx");
    char *out = NULL;
    int rc = tu_run(&out, "dataset synth -o '%s' --users 60 --items 150 --interactions 900 --seed 5", data_dir);
    if (!rc) {
        free(out);
        out = NULL;
        rc = tu_run(&out, "encode --model '%s/fixtures/models/bert-tiny' --dataset '%s' --titles -o '%s' -q", tu_shared(),
                    data_dir, vec_path);
    }
    if (!rc) {
        free(out);
        out = NULL;
        rc = tu_run(&out, "index build --dataset '%s' --vectors '%s' -o '%s' --encoder '%s/fixtures/models/bert-tiny' -q",
                    data_dir, vec_path, idx_path, tu_shared());
    }
    if (rc) {
        fprintf(stderr, "fixtures failed: %s\n", out);
        free(out);
        return -1;
    }
    free(out);
    size_t rows;
    v4r_npy_shape(vec_path, &rows, &dim, NULL);
    char *args = v4r_sprintf("--index %s --threads 2 -q", idx_path);
    server_start(&srv, tmp, NULL, args);
    free(args);
    curl = curl_easy_init();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    servers_kill();
    server_free(&srv);
    curl_easy_cleanup(curl);
    tu_rmtree(tmp);
    free(tmp);
    free(data_dir);
    free(vec_path);
    free(idx_path);
    return 0;
}

/* `index info` names the encoder. */
static void test_info_names_encoder(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(tu_run(&out, "index info '%s'", idx_path), 0);
    assert_non_null(strstr(out, "encoder: "));
    assert_non_null(strstr(out, "bert-tiny (mean pooling, normalized"));
    free(out);
    /* a recorded template is checked as encode checks it */
    out = NULL;
    char *bad = v4r_path_join(tmp, "bad-template.idx");
    assert_int_equal(tu_run(&out, "index build --dataset '%s' --vectors '%s' -o '%s' --encoder '%s/fixtures/models/bert-tiny' "
                                  "--text-template '{titel}: {description}'",
                            data_dir, vec_path, bad, tu_shared()),
                     2);
    assert_non_null(strstr(out, "unknown placeholder '{titel}'"));
    assert_false(v4r_file_exists(bad));
    free(bad);
    free(out);
}

/* A user's profile (the normalized mean of the last 10 stored items), from the library. */
static void user_profile(const char *user, float *prof)
{
    v4r_index *ix;
    assert_int_equal(v4r_index_open(idx_path, 0, &ix, NULL), 0);
    int32_t u = v4r_index_find_user(ix, user, strlen(user));
    const int32_t *h;
    size_t n = v4r_index_user_history(ix, u, &h), first = n > 10 ? n - 10 : 0;
    assert_true(n > 0);
    float *row = v4r_malloc(dim * sizeof *row);
    memset(prof, 0, dim * sizeof *prof);
    for (size_t i = first; i < n; i++) {
        v4r_index_item_vector(ix, h[i], row);
        for (size_t k = 0; k < dim; k++)
            prof[k] += row[k];
    }
    free(row);
    v4r_index_close(ix);
}

static char *vector_json(const float *v)
{
    char *out = v4r_strdup("[");
    for (size_t k = 0; k < dim; k++) {
        char *next = v4r_sprintf("%s%s%.9g", out, k ? "," : "", (double)v[k]);
        free(out);
        out = next;
    }
    char *done = v4r_sprintf("%s]", out);
    free(out);
    return done;
}

/* Added by text: its similar list is the items of the same title; added by a user's profile: the
 * user's first recommendation; deleted: gone from both. */
static void test_add_similar_recommend_delete(void **state)
{
    (void)state;
    reply r = {0};
    /* I000007's title as the description: the same text, so the same vector */
    char *items_tsv = tu_read(data_dir, "items.tsv");
    char *line = strstr(items_tsv, "\nI000007\t") + 9;
    line[strcspn(line, "\t\n")] = 0;
    char *body = v4r_sprintf("{\"item\": \"T1\", \"description\": \"%s\"}", line);
    free(items_tsv);
    assert_int_equal(post(srv.port, "/v1/items", body, &r), 201);
    free(body);
    assert_int_equal(json_integer_value(json_object_get(r.json, "index")), 150);
    assert_true(json_integer_value(json_object_get(r.json, "seq")) >= 1);
    assert_int_equal(http_get(curl, srv.port, "/v1/items/I000007/similar?k=3", &r), 0);
    char *ids = answer_ids(&r);
    assert_string_equal(strtok(ids, ","), "T1"); /* the first answer after the POST's */
    free(ids);
    /* near a user's history: the user's profile as the vector */
    float *prof = v4r_malloc(dim * sizeof *prof);
    user_profile("U00003", prof);
    char *vec = vector_json(prof);
    body = v4r_sprintf("{\"item\": \"P1\", \"vector\": %s}", vec);
    assert_int_equal(post(srv.port, "/v1/items", body, &r), 201);
    free(body);
    assert_int_equal(post(srv.port, "/v1/recommend", "{\"user\": \"U00003\", \"k\": 5}", &r), 200);
    ids = answer_ids(&r);
    assert_string_equal(strtok(ids, ","), "P1");
    free(ids);
    /* delete both */
    assert_int_equal(del(srv.port, "/v1/items/P1", &r), 200);
    assert_int_equal(del(srv.port, "/v1/items/T1", &r), 200);
    assert_int_equal(del(srv.port, "/v1/items/T1", &r), 404);
    assert_int_equal(post(srv.port, "/v1/recommend", "{\"user\": \"U00003\", \"k\": 50}", &r), 200);
    ids = answer_ids(&r);
    assert_false(contains_id(ids, "P1"));
    free(ids);
    assert_int_equal(http_get(curl, srv.port, "/v1/items/I000007/similar?k=50", &r), 0);
    ids = answer_ids(&r);
    assert_false(contains_id(ids, "T1"));
    free(ids);
    assert_int_equal(http_get(curl, srv.port, "/v1/items/T1/similar", &r), 0);
    assert_int_equal(r.status, 404);
    /* a base item deleted, then an item added under its id */
    assert_int_equal(del(srv.port, "/v1/items/I000009", &r), 200);
    assert_int_equal(http_get(curl, srv.port, "/v1/items/I000008/similar?k=149", &r), 0);
    ids = answer_ids(&r);
    assert_false(contains_id(ids, "I000009"));
    free(ids);
    body = v4r_sprintf("{\"item\": \"I000009\", \"vector\": %s}", vec);
    assert_int_equal(post(srv.port, "/v1/items", body, &r), 201);
    free(body);
    /* the command line answers from the index file alone, and says the log is not applied */
    char *out = NULL;
    assert_int_equal(tu_run(&out, "recommend --index '%s' --user U00003 -k 3", idx_path), 0);
    assert_non_null(strstr(out, "are not applied by recommend"));
    free(out);
    free(vec);
    free(prof);
    reply_free(&r);
}

/* The request field "nprobe" reaches an IVF index: probing every list answers exactly as a server
 * of the exact index does; nprobe 0 is refused. */
static void test_nprobe_over_http(void **state)
{
    (void)state;
    char *exact_idx = v4r_path_join(tmp, "exact.idx"), *ivf_idx = v4r_path_join(tmp, "ivf.idx"), *out = NULL;
    int rc = tu_run(&out, "index build --dataset '%s' --vectors '%s' -o '%s' -q", data_dir, vec_path, exact_idx);
    if (!rc) {
        free(out);
        out = NULL;
        rc = tu_run(&out, "index build --dataset '%s' --vectors '%s' -o '%s' --ivf --nlist 6 -q", data_dir, vec_path,
                    ivf_idx);
    }
    if (rc)
        fail_msg("index build: %s", out);
    free(out);
    server exact = {0}, ivf = {0};
    char *args = v4r_sprintf("--index %s --threads 1 -q", exact_idx);
    server_start(&exact, tmp, NULL, args);
    free(args);
    args = v4r_sprintf("--index %s --threads 1 -q", ivf_idx);
    server_start(&ivf, tmp, NULL, args);
    free(args);
    reply r = {0};
    static const char *const users[] = {"U00001", "U00017", "U00042"};
    for (size_t u = 0; u < 3; u++) {
        char *body = v4r_sprintf("{\"user\": \"%s\", \"k\": 20}", users[u]);
        assert_int_equal(post(exact.port, "/v1/recommend", body, &r), 200);
        char *want = answer_ids(&r);
        free(body);
        body = v4r_sprintf("{\"user\": \"%s\", \"k\": 20, \"nprobe\": 6}", users[u]);
        assert_int_equal(post(ivf.port, "/v1/recommend", body, &r), 200);
        char *got = answer_ids(&r);
        assert_string_equal(got, want);
        assert_true(strlen(got) > 0);
        free(body), free(got), free(want);
    }
    assert_int_equal(post(ivf.port, "/v1/recommend", "{\"user\": \"U00001\", \"nprobe\": 0}", &r), 400);
    reply_free(&r);
    assert_int_equal(server_stop(&exact, SIGTERM), 0);
    assert_int_equal(server_stop(&ivf, SIGTERM), 0);
    server_free(&exact);
    server_free(&ivf);
    free(exact_idx);
    free(ivf_idx);
}

/* Each bad body is refused with its status, and nothing changes (items, log bytes). */
static void test_bad_inputs_change_nothing(void **state)
{
    (void)state;
    reply r = {0};
    double items0 = scrape(curl, srv.port, "vlm4rec_live_items");
    double bytes0 = scrape(curl, srv.port, "vlm4rec_live_log_bytes");
    char *short_vec = v4r_strdup("{\"item\": \"B1\", \"vector\": [1, 2, 3]}");
    char *zeros = v4r_strdup("{\"item\": \"B1\", \"vector\": [");
    for (size_t k = 0; k < dim; k++) {
        char *next = v4r_sprintf("%s%s0", zeros, k ? "," : "");
        free(zeros);
        zeros = next;
    }
    char *zero_vec = v4r_sprintf("%s]}", zeros);
    char *huge_vec = v4r_sprintf("{\"item\": \"B1\", \"vector\": [1e39%s", strchr(strchr(zero_vec, '['), ','));
    struct {
        const char *body;
        long status;
        const char *needle;
    } cases[] = {
        {"{\"item\": \"B1\", \"description\": \"x\", \"color\": 1}", 400, "unknown field \\\"color\\\""},
        {"{\"item\": \"B1\"}", 400, "\\\"description\\\""},
        {"{\"item\": \"B1\", \"description\": \"\"}", 422, "empty or blank"},
        {"{\"item\": \"B1\", \"description\": \" \\t \"}", 422, "empty or blank"},
        {"{\"item\": \"\", \"description\": \"x\"}", 400, "\\\"item\\\""},
        {"{\"item\": \"I000001\", \"description\": \"x\"}", 409, "already"},
        {"{\"item\": \"B1\", \"description\": 5}", 400, "must be a string"},
        {short_vec, 422, "dimension"},
        {zero_vec, 422, "zeros"},
        {huge_vec, 422, "finite"},
        {"[1]", 400, "JSON object"},
        {"{\"item\": \"B1\", \"description\": \"x\", \"vector\": [1]}", 400, "one of them"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        post(srv.port, "/v1/items", cases[i].body, &r);
        if (r.status != cases[i].status || !strstr(r.body, cases[i].needle))
            fail_msg("case %zu: %ld %s", i, r.status, r.body);
    }
    assert_int_equal(post(srv.port, "/v1/users/U00001/events", "{\"items\": [\"NOPE\"]}", &r), 422);
    assert_int_equal(post(srv.port, "/v1/users/U00001/events", "{\"items\": []}", &r), 422);
    assert_int_equal(post(srv.port, "/v1/users/NOBODY/events", "{\"items\": [\"I000001\"]}", &r), 404);
    assert_int_equal(del(srv.port, "/v1/items/NOPE", &r), 404);
    assert_true(scrape(curl, srv.port, "vlm4rec_live_items") == items0);
    assert_true(scrape(curl, srv.port, "vlm4rec_live_log_bytes") == bytes0);
    free(short_vec);
    free(zeros);
    free(zero_vec);
    free(huge_vec);
    reply_free(&r);
}

/* Events enter the user's profile: a user whose history becomes one repeated item is then
 * recommended that item's nearest neighbours. */
static void test_events_change_recommendations(void **state)
{
    (void)state;
    reply r = {0};
    assert_int_equal(post(srv.port, "/v1/recommend", "{\"user\": \"U00010\", \"k\": 3}", &r), 200);
    char *before = answer_ids(&r);
    char body[512];
    snprintf(body, sizeof body, "{\"items\": [%s]}",
             "\"I000020\",\"I000020\",\"I000020\",\"I000020\",\"I000020\",\"I000020\",\"I000020\",\"I000020\","
             "\"I000020\",\"I000020\"");
    assert_int_equal(post(srv.port, "/v1/users/U00010/events", body, &r), 201);
    assert_int_equal(post(srv.port, "/v1/recommend", "{\"user\": \"U00010\", \"k\": 3}", &r), 200);
    char *after = answer_ids(&r);
    assert_int_equal(http_get(curl, srv.port, "/v1/items/I000020/similar?k=40", &r), 0);
    char *near = answer_ids(&r);
    assert_string_not_equal(before, after);
    assert_true(contains_id(near, strtok(after, ",")));
    free(before);
    free(after);
    free(near);
    reply_free(&r);
}

/* ---- crash and replay ---- */

typedef struct {
    pid_t pid;
    long delay_ms;
} killer;

static void *kill_later(void *arg)
{
    killer *k = arg;
    sleep_ms(k->delay_ms);
    kill(k->pid, SIGKILL);
    return NULL;
}

/* POSTs in a loop while the server is SIGKILLed at a random moment; after a restart every
 * acknowledged item is there. */
static void test_kill9_keeps_acknowledged(void **state)
{
    (void)state;
    char *ix = index_copy("crash.idx");
    server sv;
    char *args = v4r_sprintf("--index %s --threads 1 -q", ix);
    server_start(&sv, tmp, NULL, args);
    srand((unsigned)time(NULL));
    killer k = {sv.pid, 150 + rand() % 400};
    pthread_t th;
    pthread_create(&th, NULL, kill_later, &k);
    CURL *h = curl_easy_init();
    reply r = {0};
    size_t acked = 0;
    float *v = v4r_malloc(dim * sizeof *v);
    for (size_t i = 0; i < 100000; i++) {
        for (size_t d = 0; d < dim; d++)
            v[d] = (float)(rand() % 1000 - 500) / 500.0f + 0.001f;
        char *vec = vector_json(v);
        char *body = v4r_sprintf("{\"item\": \"K%zu\", \"vector\": %s}", i, vec);
        http_full(h, sv.port, "POST", "/v1/items", body, strlen(body), json_hdr, &r);
        free(vec);
        free(body);
        if (r.status != 201)
            break;
        acked = i + 1;
    }
    pthread_join(th, NULL);
    waitpid(sv.pid, NULL, 0);
    live_set(sv.pid, 0);
    assert_true(acked > 0);
    server sv2;
    server_start(&sv2, tmp, NULL, args);
    for (size_t i = 0; i < acked; i++) {
        char *path = v4r_sprintf("/v1/items/K%zu/similar?k=1", i);
        http_get(h, sv2.port, path, &r);
        if (r.status != 200)
            fail_msg("acknowledged item K%zu (of %zu) missing after the restart: %ld", i, acked, r.status);
        free(path);
    }
    assert_int_equal(server_stop(&sv2, SIGTERM), 0);
    server_free(&sv2);
    server_free(&sv);
    free(args);
    free(v);
    reply_free(&r);
    curl_easy_cleanup(h);
    free(ix);
}

/* A torn last record is cut off with a warning; a damaged record before the last is an error
 * naming its byte offset. */
static void test_torn_and_damaged_log(void **state)
{
    (void)state;
    char *ix = index_copy("torn.idx"), *log = v4r_live_log_path(ix);
    v4r_index *base;
    v4r_live *lv;
    v4r_err err = {0};
    assert_int_equal(v4r_index_open(ix, 0, &base, &err), 0);
    assert_int_equal(v4r_live_open(base, log, &lv, NULL, &err), 0);
    float *v = v4r_calloc(dim, sizeof *v);
    int32_t item;
    uint64_t seq;
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "L%d", i);
        v[i] = 1;
        assert_int_equal(v4r_live_add_item(lv, id, v, dim, &item, &seq, &err), 0);
    }
    v4r_live_close(lv);
    char *text = read_text(log);
    size_t good = strlen(text);
    FILE *fp = fopen(log, "a");
    fputs("0123456789abcdef {\"op\":\"add\",\"ite", fp);
    fclose(fp);
    v4r_live_replay rep;
    assert_int_equal(v4r_index_open(ix, 0, &base, &err), 0);
    assert_int_equal(v4r_live_open(base, log, &lv, &rep, &err), 0);
    assert_int_equal(rep.truncated, 1);
    assert_int_equal(rep.torn_at, good);
    assert_int_equal(rep.records, 3);
    assert_int_equal(v4r_live_n_added(lv), 3);
    v4r_live_close(lv);
    char *now = read_text(log);
    assert_string_equal(now, text);
    free(now);
    /* damage the second record's JSON */
    char *second = strchr(text, '\n') + 1;
    char *third = strchr(second, '\n') + 1;
    third[20] ^= 1;
    FILE *w = fopen(log, "w");
    fputs(text, w);
    fclose(w);
    assert_int_equal(v4r_index_open(ix, 0, &base, &err), 0);
    assert_int_equal(v4r_live_open(base, log, &lv, &rep, &err), V4R_EINPUT);
    char want[64];
    snprintf(want, sizeof want, "at byte %zu", (size_t)(third - text));
    if (!strstr(err.msg, want))
        fail_msg("%s does not name %s", err.msg, want);
    free(text);
    free(v);
    free(log);
    free(ix);
}

/* ---- compaction ---- */

/* Replay + compact equals a fresh build on the dataset with the items appended: ids and vectors
 * bit for bit. */
static void test_compact_equals_fresh_build(void **state)
{
    (void)state;
    char *ix = index_copy("compact.idx"), *log = v4r_live_log_path(ix);
    v4r_index *base;
    v4r_live *lv;
    v4r_err err = {0};
    assert_int_equal(v4r_index_open(ix, 0, &base, &err), 0);
    assert_int_equal(v4r_live_open(base, log, &lv, NULL, &err), 0);
    enum { ADD = 21 };
    v4r_matrix m;
    assert_int_equal(v4r_npy_read(vec_path, &m, &err), 0);
    size_t n0 = m.rows;
    m.data = v4r_realloc(m.data, (n0 + ADD) * dim * sizeof *m.data);
    char *items_tsv = tu_read(data_dir, "items.tsv");
    for (size_t i = 0; i < ADD; i++) {
        float *row = m.data + (n0 + i) * dim;
        for (size_t d = 0; d < dim; d++)
            row[d] = (float)sin((double)(i * 31 + d * 7)) * 3.7f;
        char id[16];
        snprintf(id, sizeof id, "C%02zu", i);
        int32_t item;
        uint64_t seq;
        assert_int_equal(v4r_live_add_item(lv, id, row, dim, &item, &seq, &err), 0);
        char *next = v4r_sprintf("%s%s\tadded %zu\t\n", items_tsv, id, i);
        free(items_tsv);
        items_tsv = next;
    }
    v4r_live_close(lv);
    m.rows = n0 + ADD;
    char *fresh_dir = v4r_path_join(tmp, "fresh"), *fresh_npy = v4r_path_join(tmp, "fresh.npy");
    char *fresh_idx = v4r_path_join(tmp, "fresh.idx"), *out = NULL;
    assert_int_equal(tu_run(&out, "dataset synth -o '%s' --users 60 --items 150 --interactions 900 --seed 5",
                            fresh_dir), 0);
    free(out);
    tu_write(fresh_dir, "items.tsv", items_tsv);
    assert_int_equal(v4r_npy_write(fresh_npy, m.data, m.rows, dim, &err), 0);
    out = NULL;
    assert_int_equal(tu_run(&out, "index build --dataset '%s' --vectors '%s' -o '%s' -q", fresh_dir, fresh_npy,
                            fresh_idx), 0);
    free(out);
    out = NULL;
    assert_int_equal(tu_run(&out, "index compact '%s'", ix), 0);
    assert_non_null(strstr(out, "21 items added"));
    free(out);
    assert_false(v4r_file_exists(log)); /* rotated: the old one is .log.old */
    v4r_index *a, *b;
    assert_int_equal(v4r_index_open(ix, 1, &a, &err), 0);
    assert_int_equal(v4r_index_open(fresh_idx, 1, &b, &err), 0);
    assert_int_equal(v4r_index_n_items(a), n0 + ADD);
    assert_int_equal(v4r_index_n_items(b), n0 + ADD);
    float *va = v4r_malloc(dim * sizeof *va), *vb = v4r_malloc(dim * sizeof *vb);
    for (size_t i = 0; i < n0 + ADD; i++) {
        assert_string_equal(v4r_index_item_id(a, (int32_t)i), v4r_index_item_id(b, (int32_t)i));
        v4r_index_item_vector(a, (int32_t)i, va);
        v4r_index_item_vector(b, (int32_t)i, vb);
        if (memcmp(va, vb, dim * sizeof *va))
            fail_msg("item %zu: the compacted vector differs from the fresh build's", i);
    }
    for (size_t u = 0; u < v4r_index_n_users(a); u++) {
        const int32_t *ha, *hb;
        size_t na = v4r_index_user_history(a, (int32_t)u, &ha), nb = v4r_index_user_history(b, (int32_t)u, &hb);
        assert_int_equal(na, nb);
        assert_memory_equal(ha, hb, na * sizeof *ha);
    }
    v4r_index_close(a);
    v4r_index_close(b);
    free(va);
    free(vb);
    v4r_matrix_free(&m);
    free(items_tsv);
    free(fresh_dir);
    free(fresh_npy);
    free(fresh_idx);
    free(log);
    free(ix);
}

/* Compaction after an addition, a deletion of a base item and a user's events: the deleted item is
 * gone, the others keep their vectors bit for bit in order (the added one last), and each user's
 * stored history is the tail (the index's keep, 10) of the live history, by id. */
static void test_compact_after_delete_and_events(void **state)
{
    (void)state;
    char *ix = index_copy("compact2.idx"), *log = v4r_live_log_path(ix);
    v4r_index *base;
    v4r_live *lv;
    v4r_err err = {0};
    assert_int_equal(v4r_index_open(ix, 0, &base, &err), 0);
    assert_int_equal(v4r_live_open(base, log, &lv, NULL, &err), 0);
    size_t n0 = v4r_index_n_items(v4r_live_base(lv)), n_users = v4r_index_n_users(v4r_live_base(lv));
    float *row = v4r_malloc(dim * sizeof *row);
    for (size_t d = 0; d < dim; d++)
        row[d] = (float)cos((double)(d * 3 + 1));
    int32_t added;
    uint64_t seq;
    assert_int_equal(v4r_live_add_item(lv, "D1", row, dim, &added, &seq, &err), 0);
    assert_int_equal(v4r_live_delete_item(lv, "I000004", &seq, &err), 0);
    int32_t user = v4r_index_find_user(v4r_live_base(lv), "U00007", 6);
    assert_true(user >= 0);
    int32_t events[3] = {v4r_live_find_item(lv, "I000011", 7), added, v4r_live_find_item(lv, "I000012", 7)};
    assert_int_equal(v4r_live_add_events(lv, user, events, 3, &seq, &err), 0);
    /* the live view: surviving ids, their vectors, every user's history by id */
    size_t n_live = v4r_live_n_items(lv), kept = 0;
    char **ids = v4r_malloc(n_live * sizeof *ids);
    float *vecs = v4r_malloc(n_live * dim * sizeof *vecs);
    for (size_t i = 0; i < n_live; i++) {
        const char *id = v4r_live_item_id(lv, (int32_t)i);
        if (v4r_live_find_item(lv, id, strlen(id)) != (int32_t)i)
            continue; /* deleted */
        ids[kept] = v4r_strdup(id);
        v4r_live_item_vector(lv, (int32_t)i, vecs + kept * dim);
        kept++;
    }
    char **hist = v4r_malloc(n_users * sizeof *hist);
    for (size_t u = 0; u < n_users; u++) {
        int32_t *h = NULL;
        size_t n = v4r_live_user_history(lv, (int32_t)u, &h), from = n > 10 ? n - 10 : 0;
        hist[u] = v4r_strdup("");
        for (size_t k = from; k < n; k++) {
            char *next = v4r_sprintf("%s%s,", hist[u], v4r_live_item_id(lv, h[k]));
            free(hist[u]);
            hist[u] = next;
        }
        free(h);
    }
    v4r_live_close(lv);
    char *out = NULL;
    assert_int_equal(tu_run(&out, "index compact '%s'", ix), 0);
    free(out);
    v4r_index *a;
    assert_int_equal(v4r_index_open(ix, 1, &a, &err), 0);
    assert_int_equal(kept, n0); /* one added, one deleted */
    assert_int_equal(v4r_index_n_items(a), kept);
    assert_int_equal(v4r_index_find_item(a, "I000004", 7), -1);
    assert_string_equal(v4r_index_item_id(a, (int32_t)kept - 1), "D1");
    float *va = v4r_malloc(dim * sizeof *va);
    for (size_t i = 0; i < kept; i++) {
        assert_string_equal(v4r_index_item_id(a, (int32_t)i), ids[i]);
        v4r_index_item_vector(a, (int32_t)i, va);
        if (memcmp(va, vecs + i * dim, dim * sizeof *va))
            fail_msg("item %s: the compacted vector differs from the live one", ids[i]);
    }
    for (size_t u = 0; u < n_users; u++) {
        const int32_t *h;
        size_t n = v4r_index_user_history(a, (int32_t)u, &h);
        char *got = v4r_strdup("");
        for (size_t k = 0; k < n; k++) {
            char *next = v4r_sprintf("%s%s,", got, v4r_index_item_id(a, h[k]));
            free(got);
            got = next;
        }
        assert_string_equal(got, hist[u]);
        free(got);
    }
    assert_non_null(strstr(hist[user], "I000011,D1,I000012,"));
    v4r_index_close(a);
    for (size_t i = 0; i < kept; i++)
        free(ids[i]);
    for (size_t u = 0; u < n_users; u++)
        free(hist[u]);
    free(ids), free(hist), free(vecs), free(va), free(row), free(log), free(ix);
}

/* The precision encode used, recorded by `index build --precision`: `index info` says it, and the
 * service encodes a text in it, so an item added with I000007's title gets I000007's fp16 row bit
 * for bit (the fp32 row differs). Flags without --encoder or with a bad value are usage errors. */
static void test_precision_recorded(void **state)
{
    (void)state;
    char *out = NULL, *ix = v4r_path_join(tmp, "fp16.idx"), *npy = v4r_path_join(tmp, "fp16.npy");
    assert_int_equal(tu_run(&out, "index build --dataset '%s' --vectors '%s' -o '%s' --precision fp16", data_dir,
                            vec_path, ix), 2);
    assert_non_null(strstr(out, "--precision needs --encoder"));
    free(out);
    assert_int_equal(tu_run(&out, "index build --dataset '%s' --vectors '%s' -o '%s' --encoder '%s/fixtures/models/bert-tiny' "
                                  "--precision fp12", data_dir, vec_path, ix, tu_shared()), 2);
    assert_non_null(strstr(out, "--precision must be fp32, bf16 or fp16, not 'fp12'"));
    free(out);
    if (!v4r_cpu_has_avx512_fp16()) {
        free(ix), free(npy);
        skip();
    }
    assert_int_equal(tu_run(&out, "encode --model '%s/fixtures/models/bert-tiny' --dataset '%s' --titles -o '%s' "
                                  "--precision fp16 -q", tu_shared(), data_dir, npy), 0);
    free(out);
    assert_int_equal(tu_run(&out, "index build --dataset '%s' --vectors '%s' -o '%s' --encoder '%s/fixtures/models/bert-tiny' "
                                  "--precision fp16 -q", data_dir, npy, ix, tu_shared()), 0);
    free(out);
    assert_int_equal(tu_run(&out, "index info '%s'", ix), 0);
    assert_non_null(strstr(out, "(mean pooling, normalized, fp16, sha256"));
    free(out);
    server sv;
    char *args = v4r_sprintf("--index %s --threads 1 -q", ix);
    server_start(&sv, tmp, NULL, args);
    char *items_tsv = tu_read(data_dir, "items.tsv"), *title = strstr(items_tsv, "\nI000007\t") + 9;
    title[strcspn(title, "\t\n")] = 0;
    char *body = v4r_sprintf("{\"item\": \"H1\", \"description\": \"%s\"}", title);
    reply r = {0};
    assert_int_equal(post(sv.port, "/v1/items", body, &r), 201);
    assert_int_equal(server_stop(&sv, SIGTERM), 0);
    v4r_index *base;
    v4r_live *lv;
    v4r_err err = {0};
    char *log = v4r_live_log_path(ix);
    assert_int_equal(v4r_index_open(ix, 0, &base, &err), 0);
    assert_int_equal(v4r_live_open(base, log, &lv, NULL, &err), 0);
    float *added = v4r_malloc(dim * sizeof *added), *row = v4r_malloc(dim * sizeof *row);
    v4r_live_item_vector(lv, v4r_live_find_item(lv, "H1", 2), added);
    v4r_live_item_vector(lv, v4r_live_find_item(lv, "I000007", 7), row);
    assert_memory_equal(added, row, dim * sizeof *row);
    v4r_live_close(lv);
    assert_int_equal(v4r_index_open(idx_path, 0, &base, &err), 0); /* the fp32 index */
    v4r_index_item_vector(base, v4r_index_find_item(base, "I000007", 7), row);
    assert_memory_not_equal(added, row, dim * sizeof *row);
    v4r_index_close(base);
    server_free(&sv);
    reply_free(&r);
    free(added), free(row), free(log), free(body), free(items_tsv), free(args), free(ix), free(npy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_names_encoder),
        cmocka_unit_test(test_add_similar_recommend_delete),
        cmocka_unit_test(test_nprobe_over_http),
        cmocka_unit_test(test_bad_inputs_change_nothing),
        cmocka_unit_test(test_events_change_recommendations),
        cmocka_unit_test(test_kill9_keeps_acknowledged),
        cmocka_unit_test(test_torn_and_damaged_log),
        cmocka_unit_test(test_compact_equals_fresh_build),
        cmocka_unit_test(test_compact_after_delete_and_events),
        cmocka_unit_test(test_precision_recorded),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

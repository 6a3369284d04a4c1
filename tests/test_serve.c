/* serve: `vlm4rec serve` as a child process over indexes of a small synthetic catalog. Answers
 * equal `vlm4rec recommend --json` (users, histories with masks, similar items); health and
 * metrics; every error path; bearer tokens and rate limits; index swaps under load and --watch;
 * the drain on SIGTERM; fuzzed bodies and malformed HTTP; a soak ending in a clean exit. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "serve_client.c" /* tests/CMakeLists.txt builds each test_*.c alone */

#define N_USERS 150
#define N_ITEMS 400

static char *tmp, *data_dir, *idx[2], *access_path;
static const char *const labels[2] = {"A", "B"};
static char **user_ids, **item_ids;
static size_t n_users, n_items;
static json_t *want[2]; /* per index: user id -> the items `recommend --json` gives */
static server main_srv; /* the server most tests use; the soak stops it */
static CURL *curl;

/* ---- fixtures ---- */

/* The first column of a TSV with a header line. */
static char **first_column(const char *path, size_t *n)
{
    char *text = read_text(path);
    assert_non_null(text);
    char **ids = NULL;
    size_t cap = 0;
    *n = 0;
    int header = 1;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (header-- > 0 || !*line)
            continue;
        line[strcspn(line, "\t\r")] = 0;
        v4r_grow((void **)&ids, &cap, *n + 1, sizeof *ids);
        ids[(*n)++] = v4r_strdup(line);
    }
    free(text);
    return ids;
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

/* Runs vlm4rec with args; its output as one JSON object per line, keyed by "user" (or "" when null). */
static json_t *recommend_lines(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *recommend_lines(const char *fmt, ...)
{
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *out = NULL;
    int rc = tu_run(&out, "recommend %s --json", args);
    if (rc != 0)
        fail_msg("recommend %s: exit %d: %s", args, rc, out);
    json_t *all = json_object();
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] != '{')
            continue; /* a warning (tu_run merges stderr) */
        json_t *o = json_loads(line, 0, NULL);
        if (!o)
            fail_msg("recommend printed a line that is not JSON: %s", line);
        const char *user = json_string_value(json_object_get(o, "user"));
        json_object_set_new(all, user ? user : "", o);
    }
    free(out);
    return all;
}

static int build_fixtures(void)
{
    char *out = NULL;
    int rc = tu_run(&out,
                    "dataset synth -o '%s' --users %d --items %d --interactions 3000 --dim-title 32 --dim-visual 24 "
                    "--dim-desc 16 --seed 3",
                    data_dir, N_USERS, N_ITEMS);
    for (int i = 0; !rc && i < 2; i++) {
        free(out);
        out = NULL;
        rc = tu_run(&out, "index build --dataset '%s' --vectors '%s/features/%s.npy' -o '%s' --label %s -q", data_dir,
                    data_dir, i ? "visual" : "title", idx[i], labels[i]);
    }
    if (rc)
        fprintf(stderr, "fixtures failed (%d): %s\n", rc, out);
    free(out);
    return rc;
}

static void expected_answers(void)
{
    char *users_path = v4r_path_join(tmp, "users.txt");
    FILE *fp = fopen(users_path, "w");
    for (size_t u = 0; u < n_users; u++)
        fprintf(fp, "%s\n", user_ids[u]);
    fclose(fp);
    for (int i = 0; i < 2; i++) {
        json_t *lines = recommend_lines("--index '%s' --users '%s' -k 10", idx[i], users_path);
        want[i] = json_object();
        const char *user;
        json_t *o;
        json_object_foreach(lines, user, o) json_object_set(want[i], user, json_object_get(o, "items"));
        json_decref(lines);
    }
    free(users_path);
}

static int group_setup(void **state)
{
    (void)state;
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    tmp = tu_tmpdir();
    data_dir = v4r_path_join(tmp, "data");
    idx[0] = v4r_path_join(tmp, "A.idx");
    idx[1] = v4r_path_join(tmp, "B.idx");
    access_path = v4r_path_join(tmp, "access.log");
    if (build_fixtures())
        return -1;
    char *path = v4r_path_join(data_dir, "users.tsv");
    user_ids = first_column(path, &n_users);
    free(path);
    path = v4r_path_join(data_dir, "items.tsv");
    item_ids = first_column(path, &n_items);
    free(path);
    expected_answers();
    char *args = v4r_sprintf("--index %s --threads 2 --access-log %s", idx[0], access_path);
    server_start(&main_srv, tmp, NULL, args);
    free(args);
    curl = curl_easy_init();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    servers_kill();
    server_free(&main_srv);
    curl_easy_cleanup(curl);
    for (int i = 0; i < 2; i++) {
        json_decref(want[i]);
        free(idx[i]);
    }
    free_ids(user_ids, n_users);
    free_ids(item_ids, n_items);
    tu_rmtree(tmp);
    free(tmp);
    free(data_dir);
    free(access_path);
    curl_global_cleanup();
    return 0;
}

/* ---- answers ---- */

static char *user_body(const char *user, int k)
{
    return k ? v4r_sprintf("{\"user\": \"%s\", \"k\": %d}", user, k) : v4r_sprintf("{\"user\": \"%s\"}", user);
}

/* The reply is 200 and its items equal index i's answer for user. */
static int answers_user(const reply *r, int i, const char *user)
{
    return r->status == 200 && !strcmp(json_string_value(json_object_get(r->json, "index_version")), labels[i]) &&
           same_items(json_object_get(r->json, "items"), json_object_get(want[i], user));
}

static void test_users_match_recommend(void **state)
{
    (void)state;
    reply r = {0};
    for (size_t u = 0; u < n_users; u++) {
        char *body = user_body(user_ids[u], 0);
        assert_int_equal(http_post(curl, main_srv.port, body, &r), CURLE_OK);
        assert_non_null(json_object_get(want[0], user_ids[u]));
        if (!answers_user(&r, 0, user_ids[u]))
            fail_msg("user %s: %s", user_ids[u], r.body);
        assert_string_equal(json_string_value(json_object_get(r.json, "user")), user_ids[u]);
        assert_int_equal(json_array_size(json_object_get(r.json, "unknown")), 0);
        assert_int_equal(json_array_size(json_object_get(r.json, "items")), 10);
        free(body);
    }
    reply_free(&r);
}

/* Two workers searching at once, each scan on one thread: the same answers. */
static void test_workers_match(void **state)
{
    (void)state;
    server split = {0};
    char *args = v4r_sprintf("--index %s --workers 2 --threads 1", idx[0]);
    server_start(&split, tmp, NULL, args);
    free(args);
    reply r = {0};
    for (size_t u = 0; u < n_users; u++) {
        char *body = user_body(user_ids[u], 0);
        assert_int_equal(http_post(curl, split.port, body, &r), CURLE_OK);
        if (!answers_user(&r, 0, user_ids[u]))
            fail_msg("user %s: %s", user_ids[u], r.body);
        free(body);
    }
    reply_free(&r);
    assert_int_equal(server_stop(&split, SIGTERM), 0);
    server_free(&split);
}

/* n distinct random item ids joined by sep into out (also as a JSON array into arr). */
static void random_ids(v4r_rng *rng, size_t n, char *out, size_t cap, json_t *arr)
{
    out[0] = 0;
    for (size_t j = 0; j < n; j++) {
        const char *id = item_ids[v4r_rng_below(rng, n_items)];
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", j ? "," : "", id);
        json_array_append_new(arr, json_string(id));
    }
}

static void test_histories_match_recommend(void **state)
{
    (void)state;
    v4r_rng rng;
    v4r_rng_seed(&rng, 11);
    reply r = {0};
    for (int t = 0; t < 16; t++) {
        char hist[4096], excl[4096], cand[8192];
        json_t *body = json_object(), *h = json_array(), *x = json_array(), *c = json_array();
        random_ids(&rng, 1 + v4r_rng_below(&rng, 15), hist, sizeof hist, h);
        json_array_append_new(h, json_string("no-such-item"));
        random_ids(&rng, v4r_rng_below(&rng, 5), excl, sizeof excl, x);
        random_ids(&rng, 40 + v4r_rng_below(&rng, 40), cand, sizeof cand, c);
        int k = 1 + (int)v4r_rng_below(&rng, 30), keep = t % 3 == 0, with_cand = t % 2 == 1;
        json_object_set_new(body, "history", h);
        json_object_set_new(body, "k", json_integer(k));
        json_object_set_new(body, "exclude", x);
        json_object_set_new(body, "keep_history", json_boolean(keep));
        json_object_set_new(body, with_cand ? "candidates" : "ignored_field", c);
        char *text = json_dumps(body, 0);
        assert_int_equal(http_post(curl, main_srv.port, text, &r), CURLE_OK);
        json_t *cli = recommend_lines("--index '%s' --history '%s,no-such-item' -k %d %s%s %s%s %s", idx[0], hist, k,
                                      *excl ? "--exclude " : "", excl, with_cand ? "--candidates " : "",
                                      with_cand ? cand : "", keep ? "--keep-history" : "");
        json_t *line = json_object_get(cli, "");
        if (r.status != 200 || !same_items(json_object_get(r.json, "items"), json_object_get(line, "items")))
            fail_msg("history %s: got %s", text, r.body);
        json_t *unknown = json_object_get(r.json, "unknown");
        assert_int_equal(json_array_size(unknown), 1);
        assert_string_equal(json_string_value(json_array_get(unknown, 0)), "no-such-item");
        json_decref(cli);
        json_decref(body);
        free(text);
    }
    reply_free(&r);
}

/* A path with every byte percent-encoded. */
static char *encoded_similar_path(const char *id, int k)
{
    char *enc = v4r_malloc(3 * strlen(id) + 1), *o = enc;
    for (const char *p = id; *p; p++)
        o += sprintf(o, "%%%02X", (unsigned char)*p);
    char *path = v4r_sprintf("/v1/items/%s/similar?k=%d", enc, k);
    free(enc);
    return path;
}

static void test_similar_matches_history_of_one(void **state)
{
    (void)state;
    reply r = {0};
    for (size_t t = 0; t < 12; t++) {
        const char *id = item_ids[(t * 37) % n_items];
        int k = 1 + (int)(t * 7 % 25);
        char path[512];
        snprintf(path, sizeof path, "/v1/items/%s/similar?k=%d", id, k);
        assert_int_equal(http_get(curl, main_srv.port, path, &r), CURLE_OK);
        assert_int_equal(r.status, 200);
        assert_string_equal(json_string_value(json_object_get(r.json, "item")), id);
        json_t *cli = recommend_lines("--index '%s' --history '%s' -k %d", idx[0], id, k);
        json_t *items = json_object_get(json_object_get(cli, ""), "items");
        if (!same_items(json_object_get(r.json, "items"), items))
            fail_msg("similar %s: %s", id, r.body);
        char *encoded = encoded_similar_path(id, k);
        assert_int_equal(http_get(curl, main_srv.port, encoded, &r), CURLE_OK);
        assert_true(r.status == 200 && same_items(json_object_get(r.json, "items"), items));
        free(encoded);
        json_decref(cli);
    }
    reply_free(&r);
}

static void test_healthz(void **state)
{
    (void)state;
    reply r = {0};
    assert_int_equal(http_get(curl, main_srv.port, "/healthz", &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(r.json, "index_version")), "A");
    assert_int_equal(json_integer_value(json_object_get(r.json, "items")), n_items);
    assert_int_equal(json_integer_value(json_object_get(r.json, "dim")), 32);
    assert_true(json_integer_value(json_object_get(r.json, "users")) > 0);
    assert_string_equal(json_string_value(json_object_get(r.json, "storage")), "float32");
    char type[128];
    assert_true(reply_header(&r, "Content-Type", type, sizeof type));
    assert_string_equal(type, "application/json");
    assert_int_equal(http_full(curl, main_srv.port, "HEAD", "/healthz", NULL, 0, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.n, 0);
    reply_free(&r);
}

#define REQ(route, status) "vlm4rec_requests_total{route=\"" route "\",status=\"" status "\"}"

static double counter(const char *series)
{
    double v = scrape(curl, main_srv.port, series);
    return v < 0 ? 0 : v;
}

static void test_metrics_move(void **state)
{
    (void)state;
    double ok0 = counter(REQ("recommend", "200")), nf0 = counter(REQ("recommend", "404"));
    double sim0 = counter(REQ("similar", "200")), batches0 = counter("vlm4rec_batch_size_count");
    double dur0 = counter("vlm4rec_request_duration_seconds_count{route=\"recommend\"}");
    double metrics0 = counter(REQ("metrics", "200"));
    reply r = {0};
    for (int i = 0; i < 7; i++) {
        char *body = user_body(user_ids[i], 3);
        http_post(curl, main_srv.port, body, &r);
        assert_int_equal(r.status, 200);
        free(body);
    }
    for (int i = 0; i < 3; i++) {
        http_post(curl, main_srv.port, "{\"user\": \"nobody\"}", &r);
        assert_int_equal(r.status, 404);
    }
    for (int i = 0; i < 2; i++) {
        char path[256];
        snprintf(path, sizeof path, "/v1/items/%s/similar", item_ids[i]);
        http_get(curl, main_srv.port, path, &r);
        assert_int_equal(r.status, 200);
    }
    reply_free(&r);
    assert_true(counter(REQ("recommend", "200")) == ok0 + 7);
    assert_true(counter(REQ("recommend", "404")) == nf0 + 3);
    assert_true(counter(REQ("similar", "200")) == sim0 + 2);
    /* one client, one request at a time: every search is a batch of one */
    assert_true(counter("vlm4rec_batch_size_count") == batches0 + 9);
    assert_true(counter("vlm4rec_request_duration_seconds_count{route=\"recommend\"}") == dur0 + 10);
    assert_true(counter(REQ("metrics", "200")) >= metrics0 + 6); /* the scrapes above */
    assert_true(counter("vlm4rec_index_items") == (double)n_items);
    assert_true(counter("vlm4rec_index_info{version=\"A\",storage=\"float32\"}") == 1);
    assert_true(counter("vlm4rec_inflight_requests") == 1); /* the scrape itself */
    assert_true(counter("vlm4rec_index_reloads_total{result=\"ok\"}") == 0);
}

static void test_access_log(void **state)
{
    (void)state;
    reply r = {0};
    http_post(curl, main_srv.port, "{\"user\": \"log-probe-user\"}", &r);
    assert_int_equal(r.status, 404);
    http_post(curl, main_srv.port, "{\"history\": [\"x\", \"y\", \"z\"]}", &r);
    assert_int_equal(r.status, 422);
    reply_free(&r);
    char *log = read_text(access_path);
    assert_non_null(log);
    int seen_user = 0, seen_history = 0;
    for (char *save = NULL, *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o); /* every line is one JSON object */
        const char *time = json_string_value(json_object_get(o, "time"));
        assert_true(time && strlen(time) == 24 && time[10] == 'T' && time[23] == 'Z');
        assert_non_null(json_object_get(o, "duration_ms"));
        assert_non_null(json_object_get(o, "bytes"));
        assert_string_equal(json_string_value(json_object_get(o, "remote")), "127.0.0.1");
        const char *user = json_string_value(json_object_get(o, "user"));
        if (user && !strcmp(user, "log-probe-user")) {
            seen_user = json_integer_value(json_object_get(o, "status")) == 404 &&
                        !strcmp(json_string_value(json_object_get(o, "path")), "/v1/recommend") &&
                        !strcmp(json_string_value(json_object_get(o, "method")), "POST") &&
                        !strcmp(json_string_value(json_object_get(o, "index_version")), "A");
        }
        if (json_integer_value(json_object_get(o, "history_length")) == 3 &&
            json_integer_value(json_object_get(o, "status")) == 422)
            seen_history = 1;
        json_decref(o);
    }
    free(log);
    assert_true(seen_user);
    assert_true(seen_history);
}

/* ---- errors ---- */

typedef struct {
    const char *body;
    long status;
    const char *needle; /* a word the message must hold (the field) */
} bad_body;

static const bad_body bad_bodies[] = {
    {"{\"user\": ", 400, "not valid JSON"},
    {"", 400, "not valid JSON"},
    {"[1, 2]", 400, "JSON object"},
    {"{\"user\": 5}", 400, "\"user\""},
    {"{\"history\": \"I000001\"}", 400, "\"history\""},
    {"{\"history\": [\"I000001\", 7]}", 400, "\"history\"[1]"},
    {"{\"user\": \"U000001\", \"k\": \"10\"}", 400, "\"k\""},
    {"{\"user\": \"U000001\", \"k\": 0}", 400, "\"k\""},
    {"{\"user\": \"U000001\", \"k\": 1001}", 400, "\"k\""},
    {"{\"user\": \"U000001\", \"k\": 2.5}", 400, "\"k\""},
    {"{\"user\": \"U000001\", \"k\": 1e999}", 400, "overflow"},
    {"{\"user\": \"U000001\", \"k\": 99999999999999999999}", 400, "too big"},
    {"{\"user\": \"U000001\", \"keep_history\": 1}", 400, "\"keep_history\""},
    {"{\"user\": \"U000001\", \"exclude\": \"I000001\"}", 400, "\"exclude\""},
    {"{\"user\": \"U000001\", \"candidates\": {}}", 400, "\"candidates\""},
    {"{\"user\": \"U000001\", \"candidates\": [null]}", 400, "\"candidates\"[0]"},
    {"{\"user\": \"U000001\", \"history\": [\"I000001\"]}", 400, "not both"},
    {"{\"k\": 3}", 400, "\"user\""},
    {"{\"user\": \"U000001\", \"user\": \"U000002\"}", 400, "duplicate"},
    {"{\"user\": \"U\xff\xfe\"}", 400, "not valid JSON"},
    {"{\"user\": \"U000001\"} trailing", 400, "not valid JSON"},
    {"{\"user\": \"nobody-at-all\"}", 404, "nobody-at-all"},
    {"{\"history\": [\"nothing-1\", \"nothing-2\"]}", 422, "\"history\""},
    {"{\"history\": []}", 422, "\"history\""},
};

static void test_bad_bodies(void **state)
{
    (void)state;
    reply r = {0};
    for (size_t i = 0; i < sizeof bad_bodies / sizeof *bad_bodies; i++) {
        const bad_body *b = &bad_bodies[i];
        assert_int_equal(http_post(curl, main_srv.port, b->body, &r), CURLE_OK);
        check_error(&r, b->status, b->needle);
    }
    char nested[128];
    memset(nested, 0, sizeof nested);
    strcpy(nested, "{\"history\": ");
    memset(nested + strlen(nested), '[', 40);
    memset(nested + strlen(nested), ']', 40);
    strcat(nested, "}");
    assert_int_equal(http_post(curl, main_srv.port, nested, &r), CURLE_OK);
    check_error(&r, 400, "deeper than 32");
    reply_free(&r);
}

static void test_bad_requests(void **state)
{
    (void)state;
    reply r = {0};
    char value[256];
    static const char *const text_type[] = {"Content-Type: text/plain", NULL};
    static const char *const latin1[] = {"Content-Type: application/json; charset=latin1", NULL};
    static const char *const utf8[] = {"Content-Type: application/json; charset=UTF-8", NULL};
    const char *body = "{\"user\": \"U000001\"}";
    http_full(curl, main_srv.port, "POST", "/v1/recommend", body, strlen(body), text_type, &r);
    check_error(&r, 415, "application/json");
    http_full(curl, main_srv.port, "POST", "/v1/recommend", body, strlen(body), latin1, &r);
    check_error(&r, 415, "application/json");
    http_full(curl, main_srv.port, "POST", "/v1/recommend", body, strlen(body), utf8, &r);
    assert_true(r.status == 200 || r.status == 404);
    http_get(curl, main_srv.port, "/v1/recommend", &r);
    check_error(&r, 405, "POST");
    assert_true(reply_header(&r, "Allow", value, sizeof value));
    assert_string_equal(value, "POST");
    http_full(curl, main_srv.port, "DELETE", "/healthz", NULL, 0, NULL, &r);
    check_error(&r, 405, "GET");
    assert_true(reply_header(&r, "Allow", value, sizeof value));
    assert_string_equal(value, "GET, HEAD");
    http_post(curl, main_srv.port, "{}", &r); /* the connection survived the refusals */
    check_error(&r, 400, "\"user\"");
    http_get(curl, main_srv.port, "/v1/nothing", &r);
    check_error(&r, 404, "/v1/nothing");
    http_get(curl, main_srv.port, "/v1/items/no-such-item/similar", &r);
    check_error(&r, 404, "no-such-item");
    http_get(curl, main_srv.port, "/v1/items/no%2Fsuch/similar", &r);
    check_error(&r, 404, "no/such");
    snprintf(value, sizeof value, "/v1/items/%s/similar?k=0", item_ids[0]);
    http_get(curl, main_srv.port, value, &r);
    check_error(&r, 400, "\"k\"");
    snprintf(value, sizeof value, "/v1/items/%s/similar?k=ten", item_ids[0]);
    http_get(curl, main_srv.port, value, &r);
    check_error(&r, 400, "\"k\"");
    /* the header limit: refused by the HTTP layer (its own status and page), the server stays up */
    char *huge = v4r_malloc(40100);
    memcpy(huge, "X-Big: ", 7);
    memset(huge + 7, 'a', 40000);
    huge[40007] = 0;
    const char *big_header[] = {huge, NULL};
    http_full(curl, main_srv.port, "GET", "/healthz", NULL, 0, big_header, &r);
    assert_int_equal(r.status, 431);
    char *long_path = v4r_malloc(40100);
    strcpy(long_path, "/v1/items/");
    memset(long_path + 10, 'a', 40000);
    strcpy(long_path + 40010, "/similar");
    http_get(curl, main_srv.port, long_path, &r);
    assert_int_equal(r.status, 414);
    free(long_path);
    free(huge);
    http_get(curl, main_srv.port, "/healthz", &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

static void test_body_limits(void **state)
{
    (void)state;
    reply r = {0};
    size_t n = 70000;
    char *big = v4r_malloc(n + 64);
    int len = snprintf(big, 64, "{\"history\": [\"");
    memset(big + len, 'a', n);
    strcpy(big + len + n, "\"]}");
    assert_int_equal(http_post(curl, main_srv.port, big, &r), CURLE_OK);
    check_error(&r, 413, "65536");
    /* chunked: no Content-Length, refused while streaming */
    static const char *const chunked[] = {"Content-Type: application/json", "Transfer-Encoding: chunked", NULL};
    assert_int_equal(http_full(curl, main_srv.port, "POST", "/v1/recommend", big, strlen(big), chunked, &r), CURLE_OK);
    check_error(&r, 413, "65536");
    /* just under the limit: read and answered (an unknown id) */
    big[len + 60000] = 0;
    strcat(big, "\"]}");
    assert_int_equal(http_post(curl, main_srv.port, big, &r), CURLE_OK);
    check_error(&r, 422, "\"history\"");
    free(big);
    reply_free(&r);
}

/* ---- the command line ---- */

static void test_cli_errors(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(tu_run(&out, "serve"), 2);
    assert_non_null(strstr(out, "--index"));
    free(out);
    assert_int_equal(tu_run(&out, "serve --index '%s' --rate 1 --burst 0.5", idx[0]), 2);
    free(out);
    assert_int_equal(tu_run(&out, "serve --index '%s' --max-batch 0", idx[0]), 2);
    free(out);
    assert_int_equal(tu_run(&out, "serve --index '%s/none.idx'", tmp), 4);
    free(out);
    tu_write(tmp, "not-an-index.idx", "hello");
    assert_int_equal(tu_run(&out, "serve --index '%s/not-an-index.idx'", tmp), 3);
    assert_non_null(strstr(out, "not-an-index.idx"));
    free(out);
    tu_write(tmp, "empty-token.txt", "\n");
    assert_int_equal(tu_run(&out, "serve --index '%s' --token-file '%s/empty-token.txt'", idx[0], tmp), 3);
    assert_non_null(strstr(out, "empty-token.txt:1"));
    free(out);
    assert_int_equal(tu_run(&out, "serve --index '%s' --port %d", idx[0], main_srv.port), 4); /* in use */
    free(out);
}

/* ---- token and rate limit ---- */

static void test_token_and_rate(void **state)
{
    (void)state;
    tu_write(tmp, "token.txt", "s3cret-token\n");
    server sv = {0};
    char *args = v4r_sprintf("--index %s --threads 1 --token-file %s/token.txt --rate 0.001 --burst 3", idx[0], tmp);
    server_start(&sv, tmp, NULL, args);
    free(args);
    CURL *h = curl_easy_init();
    reply r = {0};
    char value[128];
    static const char *const no_auth[] = {"Content-Type: application/json", NULL};
    static const char *const wrong[] = {"Content-Type: application/json", "Authorization: Bearer s3cret-tokeN", NULL};
    static const char *const right[] = {"Content-Type: application/json", "Authorization: Bearer s3cret-token", NULL};
    static const char *const basic[] = {"Content-Type: application/json", "Authorization: Basic czNjcmV0", NULL};
    char *body = user_body(user_ids[0], 5);
    const char *const *refused[] = {no_auth, wrong, basic};
    for (int i = 0; i < 3; i++) {
        http_full(h, sv.port, "POST", "/v1/recommend", body, strlen(body), refused[i], &r);
        check_error(&r, 401, "token");
        assert_true(reply_header(&r, "WWW-Authenticate", value, sizeof value));
        assert_true(!strncmp(value, "Bearer", 6));
    }
    for (int i = 0; i < 5; i++) { /* health and metrics stay open and are not rate limited */
        http_get(h, sv.port, i % 2 ? "/healthz" : "/metrics", &r);
        assert_int_equal(r.status, 200);
    }
    for (int i = 0; i < 3; i++) { /* the burst */
        http_full(h, sv.port, "POST", "/v1/recommend", body, strlen(body), right, &r);
        assert_int_equal(r.status, 200);
    }
    http_full(h, sv.port, "POST", "/v1/recommend", body, strlen(body), right, &r);
    check_error(&r, 429, "rate");
    assert_true(reply_header(&r, "Retry-After", value, sizeof value));
    assert_true(atoi(value) >= 1);
    char path[256];
    snprintf(path, sizeof path, "/v1/items/%s/similar", item_ids[0]);
    static const char *const right_get[] = {"Authorization: Bearer s3cret-token", NULL};
    http_full(h, sv.port, "GET", path, NULL, 0, right_get, &r);
    check_error(&r, 429, "rate");
    free(body);
    reply_free(&r);
    curl_easy_cleanup(h);
    assert_int_equal(server_stop(&sv, SIGTERM), 0);
    server_free(&sv);
}

/* ---- index swaps ---- */

typedef struct {
    int port, seed;
    atomic_int *stop;
    atomic_long *answered;
    long ok[2], failed;
    char first_failure[512];
} hammer;

static void *hammer_main(void *arg)
{
    hammer *hm = arg;
    CURL *h = curl_easy_init();
    reply r = {0};
    for (size_t i = (size_t)hm->seed * 17; !atomic_load(hm->stop); i++) {
        const char *user = user_ids[i % n_users];
        char *body = user_body(user, 0);
        CURLcode rc = http_post(h, hm->port, body, &r);
        free(body);
        const char *v = json_string_value(json_object_get(r.json, "index_version"));
        int which = v && !strcmp(v, "B") ? 1 : 0;
        if (rc == CURLE_OK && v && answers_user(&r, which, user)) {
            hm->ok[which]++;
        } else if (!hm->failed++) {
            snprintf(hm->first_failure, sizeof hm->first_failure, "curl %d, status %ld: %.400s", (int)rc, r.status,
                     r.body ? r.body : "");
        }
        atomic_fetch_add(hm->answered, 1);
    }
    reply_free(&r);
    curl_easy_cleanup(h);
    return NULL;
}

static int version_is(const reply *r, const char *version)
{
    const char *v = json_string_value(json_object_get(r->json, "index_version"));
    return v && !strcmp(v, version);
}

/* Polls /healthz until it reports version (the reload is in the background). */
static void wait_version(CURL *h, int port, const char *version)
{
    reply r = {0};
    WAIT_FOR(http_get(h, port, "/healthz", &r) == CURLE_OK && version_is(&r, version), version);
    reply_free(&r);
}

/* Puts the file src at path by renaming a fresh hard link over it (what a rollout does). */
static void publish(const char *src, const char *path)
{
    char *staged = v4r_sprintf("%s.staged", path);
    unlink(staged);
    assert_int_equal(link(src, staged), 0);
    assert_int_equal(rename(staged, path), 0);
    free(staged);
}

static void wait_answered(atomic_long *answered, long at_least)
{
    WAIT_FOR(atomic_load(answered) >= at_least, "answers to the load");
}

/* How many mappings of the process's memory name a file whose path holds name. */
static int mappings_of(pid_t pid, const char *name)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    char *maps = read_text(path);
    int n = 0;
    for (const char *p = maps; p && (p = strstr(p, name)); p++)
        n++;
    free(maps);
    return n;
}

static void test_swap_under_load(void **state)
{
    (void)state;
    char *serving = v4r_path_join(tmp, "serving.idx");
    publish(idx[0], serving);
    server sv = {0};
    char *args = v4r_sprintf("--index %s --threads 2", serving);
    server_start(&sv, tmp, NULL, args);
    free(args);
    atomic_int stop = 0;
    atomic_long answered = 0;
    hammer hm[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        hm[t] = (hammer){.port = sv.port, .seed = t, .stop = &stop, .answered = &answered};
        pthread_create(&th[t], NULL, hammer_main, &hm[t]);
    }
    CURL *h = curl_easy_init();
    int swaps = 22;
    for (int s = 1; s <= swaps; s++) {
        wait_answered(&answered, atomic_load(&answered) + 25); /* load before every swap */
        publish(idx[s % 2], serving);
        kill(sv.pid, SIGHUP);
        wait_version(h, sv.port, labels[s % 2]);
    }
    wait_answered(&answered, atomic_load(&answered) + 25);
    /* a broken file: the old index keeps serving and the error is counted */
    tu_write(tmp, "broken.idx", "not an index");
    char *broken = v4r_path_join(tmp, "broken.idx");
    publish(broken, serving);
    kill(sv.pid, SIGHUP);
    WAIT_FOR(scrape(h, sv.port, "vlm4rec_index_reloads_total{result=\"error\"}") == 1, "the failed reload");
    wait_answered(&answered, atomic_load(&answered) + 25);
    atomic_store(&stop, 1);
    long ok[2] = {0, 0}, failed = 0;
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        ok[0] += hm[t].ok[0], ok[1] += hm[t].ok[1], failed += hm[t].failed;
        if (hm[t].failed)
            fprintf(stderr, "thread %d: %ld failed, first: %s\n", t, hm[t].failed, hm[t].first_failure);
    }
    assert_int_equal(failed, 0);
    assert_true(ok[0] > 0 && ok[1] > 0);
    assert_true(scrape(h, sv.port, "vlm4rec_index_reloads_total{result=\"ok\"}") == swaps);
    assert_true(scrape(h, sv.port, "vlm4rec_index_reloads_total{result=\"error\"}") == 1);
    wait_version(h, sv.port, labels[swaps % 2]);
    /* every index swapped out was closed once its last request was answered: one file mapped */
    WAIT_FOR(mappings_of(sv.pid, "/serving.idx") == 1, "the old indexes to be closed");
    curl_easy_cleanup(h);
    assert_int_equal(server_stop(&sv, SIGTERM), 0);
    server_free(&sv);
    free(broken);
    free(serving);
}

static void test_watch_and_env_token(void **state)
{
    (void)state;
    char *serving = v4r_path_join(tmp, "watched.idx");
    publish(idx[0], serving);
    server sv = {0};
    char *args = v4r_sprintf("--index %s --threads 1 --watch", serving);
    server_start(&sv, tmp, "VLM4REC_TOKEN=env-token", args);
    free(args);
    CURL *h = curl_easy_init();
    reply r = {0};
    char *body = user_body(user_ids[1], 0);
    static const char *const right[] = {"Content-Type: application/json", "Authorization: Bearer env-token", NULL};
    http_post(h, sv.port, body, &r);
    check_error(&r, 401, "token");
    http_full(h, sv.port, "POST", "/v1/recommend", body, strlen(body), right, &r);
    assert_true(answers_user(&r, 0, user_ids[1]));
    publish(idx[1], serving); /* no signal: the watch sees the new file */
    wait_version(h, sv.port, "B");
    http_full(h, sv.port, "POST", "/v1/recommend", body, strlen(body), right, &r);
    assert_true(answers_user(&r, 1, user_ids[1]));
    free(body);
    reply_free(&r);
    curl_easy_cleanup(h);
    assert_int_equal(server_stop(&sv, SIGINT), 0);
    server_free(&sv);
    free(serving);
}

/* ---- the drain ---- */

#define N_DRAIN 6

static void test_sigterm_drains(void **state)
{
    (void)state;
    server sv = {0};
    char *args = v4r_sprintf("--index %s --threads 2", idx[0]);
    server_start(&sv, tmp, NULL, args);
    free(args);
    CURL *h = curl_easy_init();
    int fds[N_DRAIN], status;
    char *requests[N_DRAIN];
    size_t halves[N_DRAIN];
    for (int i = 0; i < N_DRAIN; i++) { /* requests in flight: headers and half the body sent */
        char *body = user_body(user_ids[i], 10);
        requests[i] = raw_post(body, 1);
        free(body);
        halves[i] = strlen(requests[i]) - 8;
        fds[i] = raw_connect(sv.port);
        assert_true(fds[i] >= 0);
        raw_send(fds[i], requests[i], halves[i]);
    }
    int idle = raw_connect(sv.port); /* a keep-alive connection between requests */
    const char *health = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    raw_send(idle, health, strlen(health));
    free(raw_response(idle, &status));
    assert_int_equal(status, 200);
    WAIT_FOR(scrape(h, sv.port, "vlm4rec_inflight_requests") == N_DRAIN + 1, "requests in flight"); /* + the scrape */
    curl_easy_cleanup(h);
    kill(sv.pid, SIGTERM);
    int fd;
    WAIT_FOR((fd = raw_connect(sv.port)) < 0 || close(fd) != 0, "new connections to be refused");
    raw_send(idle, health, strlen(health)); /* a new request on an old connection: refused, closed */
    char *text = raw_response(idle, &status);
    assert_int_equal(status, 503);
    assert_non_null(strstr(raw_body(text), "draining"));
    free(text);
    close(idle);
    for (int i = 0; i < N_DRAIN; i++) { /* the requests in flight all get their answers */
        raw_send(fds[i], requests[i] + halves[i], strlen(requests[i]) - halves[i]);
        text = raw_response(fds[i], &status);
        assert_int_equal(status, 200);
        json_t *o = json_loads(raw_body(text), 0, NULL);
        assert_true(same_items(json_object_get(o, "items"), json_object_get(want[0], user_ids[i])));
        json_decref(o);
        free(text);
        free(requests[i]);
        close(fds[i]);
    }
    int st = 0;
    assert_int_equal(waitpid(sv.pid, &st, 0), sv.pid);
    live_set(sv.pid, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    server_free(&sv);
}

/* ---- fuzz ---- */

/* One mutation of a valid body into out (cap bytes); the kind chosen by the rng. */
static size_t mutate(v4r_rng *rng, const char *valid, char *out, size_t cap)
{
    size_t n = strlen(valid);
    memcpy(out, valid, n + 1);
    switch (v4r_rng_below(rng, 8)) {
    case 0: return v4r_rng_below(rng, n); /* truncated */
    case 1:
        for (int j = 0, flips = 1 + (int)v4r_rng_below(rng, 4); j < flips; j++)
            out[v4r_rng_below(rng, n)] = (char)v4r_rng_below(rng, 256);
        return n;
    case 2: { /* deep nesting */
        size_t depth = 20 + v4r_rng_below(rng, 2000), m = 0;
        m += (size_t)snprintf(out, cap, "{\"history\": ");
        for (size_t j = 0; j < depth && m < cap / 2; j++)
            out[m++] = v4r_rng_below(rng, 2) ? '[' : '{';
        return m;
    }
    case 3: { /* huge numbers */
        static const char *const nums[] = {"1e999", "-1e999", "99999999999999999999", "-0", "1e-999", "0.5", "-7",
                                           "1E400", "123456789012345678901234567890"};
        return (size_t)snprintf(out, cap, "{\"history\": [\"%s\"], \"k\": %s}", item_ids[0], nums[v4r_rng_below(rng, 9)]);
    }
    case 4: { /* a huge string */
        size_t len = 1000 + v4r_rng_below(rng, 60000), m = (size_t)snprintf(out, cap, "{\"history\": [\"");
        memset(out + m, 'x', len);
        return m + len + (size_t)snprintf(out + m + len, cap - m - len, "\"]}");
    }
    case 5: { /* invalid UTF-8 inside a string */
        static const char *const bad[] = {"\xc3", "\xff", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "\x80"};
        return (size_t)snprintf(out, cap, "{\"user\": \"U%s1\"}", bad[v4r_rng_below(rng, 6)]);
    }
    case 6: { /* wrong types */
        static const char *const fields[] = {"user", "history", "k", "exclude", "candidates", "keep_history"};
        static const char *const values[] = {"null", "true", "3", "\"s\"", "[]", "{}", "[1]", "[[\"a\"]]", "-1"};
        return (size_t)snprintf(out, cap, "{\"%s\": %s, \"history\": [\"%s\"]}", fields[v4r_rng_below(rng, 6)],
                                values[v4r_rng_below(rng, 9)], item_ids[1]);
    }
    default: /* a structural byte (or NUL) in place of another */
        out[v4r_rng_below(rng, n)] = "{}[]\",:\\"[v4r_rng_below(rng, 9)];
        return n;
    }
}

static void fuzz_bodies(v4r_rng *rng, int cases)
{
    static const char *const json_type[] = {"Content-Type: application/json", NULL};
    size_t cap = 70000;
    char *body = v4r_malloc(cap);
    char valid[512];
    reply r = {0};
    for (int i = 0; i < cases; i++) {
        const char *user = user_ids[v4r_rng_below(rng, n_users)];
        snprintf(valid, sizeof valid, "{\"user\": \"%s\", \"k\": 10, \"exclude\": [\"%s\"], \"keep_history\": false}",
                 user, item_ids[2]);
        size_t n = mutate(rng, valid, body, cap);
        assert_int_equal(http_full(curl, main_srv.port, "POST", "/v1/recommend", body, n, json_type, &r), CURLE_OK);
        if (r.status == 200)
            assert_true(json_is_array(json_object_get(r.json, "items")));
        else if (r.status == 400 || r.status == 404 || r.status == 413 || r.status == 422)
            check_error(&r, r.status, NULL);
        else
            fail_msg("case %d: status %ld for %.*s", i, r.status, (int)(n < 200 ? n : 200), body);
        if (i % 25 == 0) { /* valid requests answer right between the broken ones */
            http_post(curl, main_srv.port, valid, &r);
            assert_int_equal(r.status, 200);
        }
    }
    reply_free(&r);
    free(body);
}

static const char *const bad_http[] = {
    "GARBAGE\r\n\r\n",
    "GET\r\n\r\n",
    "GET /healthz HTTP/9.9\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n{}",
    "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}",
    "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
    "99999999999999999999999\r\n\r\n{}",
    "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    "Content-Length: 3\r\n\r\n{}",
    "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    "zz\r\n{}\r\n0\r\n\r\n",
    "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    "ffffffffffffffffffff\r\n{}\r\n",
    "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    "2\r\n{}XX0\r\n\r\n",
    "\x00\x01\x02\x03\r\n\r\n",
    "GET /v1/items/%zz/similar HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /v1/items/%00/similar HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /v1/items//similar HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET http://example.com/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
};

/* Sends one malformed request; the answer, if any, must be an HTTP status that is not a success for
 * the broken ones (the server may also just close). */
static void fuzz_raw(v4r_rng *rng, int cases)
{
    size_t nb = sizeof bad_http / sizeof *bad_http;
    for (int i = 0; i < cases; i++) {
        const char *base = bad_http[i % nb];
        size_t n = base[0] ? strlen(base) : 8; /* the one that starts with NUL bytes */
        char buf[512];
        memcpy(buf, base, n);
        if (i >= (int)nb) /* later rounds: random bytes flipped */
            for (int j = 0; j < 3; j++)
                buf[v4r_rng_below(rng, n)] = (char)v4r_rng_below(rng, 256);
        int fd = raw_connect(main_srv.port);
        assert_true(fd >= 0);
        raw_send(fd, buf, n);
        shutdown(fd, SHUT_WR);
        int status;
        free(raw_response(fd, &status));
        close(fd);
        assert_true(status == 0 || (status >= 100 && status < 600));
    }
}

typedef struct {
    int port;
    char *request;
    char *answer;
    int status;
} slow_client;

static void *slow_main(void *arg)
{
    slow_client *sc = arg;
    int fd = raw_connect(sc->port);
    for (size_t i = 0; sc->request[i]; i++) {
        raw_send(fd, sc->request + i, 1);
        sleep_ms(1);
    }
    sc->answer = raw_response(fd, &sc->status);
    close(fd);
    return NULL;
}

static void test_fuzz(void **state)
{
    (void)state;
    v4r_rng rng;
    v4r_rng_seed(&rng, 2024);
    char *body = user_body(user_ids[5], 0);
    slow_client sc = {main_srv.port, raw_post(body, 0), NULL, 0};
    pthread_t slow;
    pthread_create(&slow, NULL, slow_main, &sc); /* dribbles its request while the fuzz runs */
    fuzz_bodies(&rng, 2500);
    fuzz_raw(&rng, 400);
    for (int i = 0; i < 20; i++) { /* clients gone mid-body */
        int fd = raw_connect(main_srv.port);
        char *req = raw_post(body, 1);
        raw_send(fd, req, strlen(req) - 5);
        close(fd);
        free(req);
    }
    pthread_join(slow, NULL);
    assert_int_equal(sc.status, 200);
    json_t *o = json_loads(raw_body(sc.answer), 0, NULL);
    assert_true(same_items(json_object_get(o, "items"), json_object_get(want[0], user_ids[5])));
    json_decref(o);
    free(sc.answer);
    free(sc.request);
    free(body);
    WAIT_FOR(scrape(curl, main_srv.port, "vlm4rec_inflight_requests") == 1, "abandoned requests to be let go");
    reply r = {0};
    for (size_t u = 0; u < 20; u++) { /* still up and right */
        char *ub = user_body(user_ids[u], 0);
        http_post(curl, main_srv.port, ub, &r);
        assert_true(answers_user(&r, 0, user_ids[u]));
        free(ub);
    }
    reply_free(&r);
}

/* ---- soak ---- */

typedef struct {
    int port, seed, requests;
    long failed;
    char first_failure[512];
} soaker;

/* One request of a mixed load; 1 when it was answered as it should be. */
static int soak_one(CURL *h, int port, v4r_rng *rng, reply *r)
{
    size_t u = v4r_rng_below(rng, n_users);
    char path[256];
    switch (v4r_rng_below(rng, 10)) {
    case 0: return http_get(h, port, "/healthz", r) == CURLE_OK && r->status == 200;
    case 1:
        snprintf(path, sizeof path, "/v1/items/%s/similar?k=5", item_ids[u % n_items]);
        return http_get(h, port, path, r) == CURLE_OK && r->status == 200;
    case 2: return http_post(h, port, "{\"user\": \"nobody\"}", r) == CURLE_OK && r->status == 404;
    case 3: return http_post(h, port, "{\"user\": ", r) == CURLE_OK && r->status == 400;
    case 4: return http_get(h, port, "/v1/recommend", r) == CURLE_OK && r->status == 405;
    case 5: return http_post(h, port, "{\"history\": [\"a\", \"b\"]}", r) == CURLE_OK && r->status == 422;
    default: {
        char *body = user_body(user_ids[u], 0);
        int ok = http_post(h, port, body, r) == CURLE_OK && answers_user(r, 0, user_ids[u]);
        free(body);
        return ok;
    }
    }
}

static void *soak_main(void *arg)
{
    soaker *sk = arg;
    v4r_rng rng;
    v4r_rng_seed(&rng, (uint64_t)sk->seed);
    CURL *h = curl_easy_init();
    reply r = {0};
    for (int i = 0; i < sk->requests; i++) {
        if (i % 50 == 0) { /* a fresh connection now and then */
            curl_easy_cleanup(h);
            h = curl_easy_init();
        }
        if (!soak_one(h, sk->port, &rng, &r) && !sk->failed++)
            snprintf(sk->first_failure, sizeof sk->first_failure, "status %ld: %.400s", r.status, r.body ? r.body : "");
    }
    reply_free(&r);
    curl_easy_cleanup(h);
    return NULL;
}

static void test_soak_then_clean_exit(void **state)
{
    (void)state;
    soaker sk[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        sk[t] = (soaker){.port = main_srv.port, .seed = 100 + t, .requests = 10000};
        pthread_create(&th[t], NULL, soak_main, &sk[t]);
    }
    long failed = 0;
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        failed += sk[t].failed;
        if (sk[t].failed)
            fprintf(stderr, "soak thread %d: %ld failed, first: %s\n", t, sk[t].failed, sk[t].first_failure);
    }
    assert_int_equal(failed, 0);
    assert_int_equal(server_stop(&main_srv, SIGTERM), 0);
    char *log = read_text(main_srv.log);
    assert_non_null(log);
    if (strstr(log, "LeakSanitizer") || strstr(log, "AddressSanitizer") || strstr(log, "runtime error"))
        fail_msg("the server's log has a sanitizer report:\n%s", log);
    assert_non_null(strstr(log, "listening on http://127.0.0.1:"));
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_users_match_recommend), cmocka_unit_test(test_workers_match),
        cmocka_unit_test(test_histories_match_recommend),
        cmocka_unit_test(test_similar_matches_history_of_one),
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_metrics_move),
        cmocka_unit_test(test_access_log),
        cmocka_unit_test(test_bad_bodies),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_token_and_rate),
        cmocka_unit_test(test_swap_under_load),
        cmocka_unit_test(test_watch_and_env_token),
        cmocka_unit_test(test_sigterm_drains),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_soak_then_clean_exit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

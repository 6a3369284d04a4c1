/* standin: the stand-in chat-completions server in process (port 0) and through the CLI:
 * well-formed completions, descriptions (deterministic, distinct, colors of the synthetic
 * catalog named right), bad requests, every injected fault, fault attempts and determinism, the
 * concurrency cap (waiting and rejecting), stopping, the request log. */
#include "testutil.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vlm4rec/ground.h"

#define N_SYNTH 60

static char *tmp;                 /* the group's temporary directory */
static char *synth_dir;           /* a small synthetic catalog with images */
static char *png[N_SYNTH];        /* its images' bytes */
static size_t png_n[N_SYNTH];

static char *read_bytes(const char *path, size_t *n)
{
    char *data = NULL;
    v4r_err err = {0};
    if (v4r_read_file(path, &data, n, &err) != 0)
        fail_msg("%s", err.msg);
    return data;
}

static int group_setup(void **state)
{
    (void)state;
    v4r_log_set_level(V4R_LOG_WARN);
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    tmp = tu_tmpdir();
    synth_dir = v4r_path_join(tmp, "synth");
    char *out = NULL;
    int rc = tu_run(&out, "dataset synth -o '%s' --users 50 --items %d --interactions 600 --images", synth_dir,
                    N_SYNTH);
    if (rc != 0) {
        fprintf(stderr, "dataset synth failed (%d): %s\n", rc, out);
        free(out);
        return -1;
    }
    free(out);
    for (int i = 0; i < N_SYNTH; i++) {
        char *path = v4r_sprintf("%s/images/I%06d.png", synth_dir, i);
        png[i] = read_bytes(path, &png_n[i]);
        free(path);
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < N_SYNTH; i++)
        free(png[i]);
    tu_rmtree(tmp);
    free(tmp);
    free(synth_dir);
    curl_global_cleanup();
    return 0;
}

/* ---- requests ---- */

static char *request_body(const void *img, size_t n, const char *prompt, int max_tokens)
{
    char *b64 = v4r_malloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)b64, img, (int)n);
    char *url = v4r_sprintf("data:image/png;base64,%s", b64);
    free(b64);
    json_t *o = json_pack("{s:s, s:[{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}}]}], s:f, s:i}", "model", "test-model",
                          "messages", "role", "user", "content", "type", "text", "text", prompt, "type", "image_url",
                          "image_url", "url", url, "temperature", 0.0, "seed", 7);
    if (max_tokens > 0)
        json_object_set_new(o, "max_tokens", json_integer(max_tokens));
    free(url);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return body;
}

typedef struct {
    long status;
    CURLcode code;
    char *body;
    size_t n;
    char retry_after[32];
    char error[CURL_ERROR_SIZE];
} reply;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ctx)
{
    reply *r = ctx;
    size_t add = size * nmemb;
    r->body = v4r_realloc(r->body, r->n + add + 1);
    memcpy(r->body + r->n, p, add);
    r->n += add;
    r->body[r->n] = 0;
    return add;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ctx)
{
    reply *r = ctx;
    size_t len = size * nmemb;
    if (len > 12 && !strncasecmp(p, "Retry-After:", 12)) {
        size_t start = 12, end = len;
        while (start < end && p[start] == ' ')
            start++;
        while (end > start && (p[end - 1] == '\r' || p[end - 1] == '\n'))
            end--;
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)(end - start), p + start);
    }
    return len;
}

static CURL *easy(int port, const char *path, const char *body, double timeout_s, reply *r,
                  struct curl_slist *headers)
{
    memset(r, 0, sizeof *r);
    CURL *h = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    }
    return h;
}

static struct curl_slist *json_headers(void)
{
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    return curl_slist_append(hs, "Expect:");
}

static void perform(int port, const char *path, const char *body, double timeout_s, reply *r)
{
    struct curl_slist *hs = json_headers();
    CURL *h = easy(port, path, body, timeout_s, r, hs);
    r->code = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(h);
    curl_slist_free_all(hs);
}

static void post_image(int port, int image, double timeout_s, reply *r)
{
    char *body = request_body(png[image], png_n[image], "Describe the item in this image.", 0);
    perform(port, "/v1/chat/completions", body, timeout_s, r);
    free(body);
}

/* n requests at once (curl multi); image i % n_images for the i-th. */
static void post_concurrent(int port, int n, int n_images, reply *r)
{
    CURLM *m = curl_multi_init();
    CURL **h = v4r_calloc((size_t)n, sizeof *h);
    char **bodies = v4r_calloc((size_t)n, sizeof *bodies);
    struct curl_slist *hs = json_headers();
    for (int i = 0; i < n; i++) {
        bodies[i] = request_body(png[i % n_images], png_n[i % n_images], "Describe it.", 0);
        h[i] = easy(port, "/v1/chat/completions", bodies[i], 20, &r[i], hs);
        curl_multi_add_handle(m, h[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)) != NULL)
        for (int i = 0; i < n; i++)
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == h[i])
                r[i].code = msg->data.result;
    for (int i = 0; i < n; i++) {
        curl_easy_getinfo(h[i], CURLINFO_RESPONSE_CODE, &r[i].status);
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
        free(bodies[i]);
    }
    curl_slist_free_all(hs);
    free(bodies);
    free(h);
    curl_multi_cleanup(m);
}

static void reply_free(reply *r)
{
    free(r->body);
    r->body = NULL;
}

static v4r_standin *start(const v4r_standin_opts *o)
{
    v4r_standin *s = NULL;
    v4r_err err = {0};
    if (v4r_standin_start(o, &s, &err) != V4R_OK)
        fail_msg("start: %s", err.msg);
    assert_true(v4r_standin_port(s) > 0);
    return s;
}

static v4r_standin *start_default(void)
{
    v4r_standin_opts o;
    v4r_standin_defaults(&o);
    return start(&o);
}

static long long words(const char *s)
{
    long long n = 0;
    for (int in = 0; *s; s++) {
        int sp = *s == ' ' || *s == '\n' || *s == '\t';
        n += !sp && !in;
        in = !sp;
    }
    return n;
}

/* The message content of a completion (a fresh string), checking the object's shape. */
static char *content_of(const reply *r, const char *finish)
{
    assert_int_equal(r->code, CURLE_OK);
    assert_int_equal(r->status, 200);
    json_error_t je;
    json_t *o = json_loads(r->body, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "object")), "chat.completion");
    assert_int_equal(strncmp(json_string_value(json_object_get(o, "id")), "chatcmpl-standin-", 17), 0);
    assert_true(json_is_integer(json_object_get(o, "created")));
    json_t *choice = json_array_get(json_object_get(o, "choices"), 0);
    assert_non_null(choice);
    assert_int_equal(json_integer_value(json_object_get(choice, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(choice, "finish_reason")), finish);
    json_t *message = json_object_get(choice, "message");
    assert_string_equal(json_string_value(json_object_get(message, "role")), "assistant");
    const char *content = json_string_value(json_object_get(message, "content"));
    assert_non_null(content);
    json_t *usage = json_object_get(o, "usage");
    long long pt = json_integer_value(json_object_get(usage, "prompt_tokens"));
    long long ct = json_integer_value(json_object_get(usage, "completion_tokens"));
    assert_int_equal(ct, words(content));
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), pt + ct);
    char *out = v4r_strdup(content);
    json_decref(o);
    return out;
}

/* The error message of an OpenAI-style error body, checking its shape. */
static char *error_of(const reply *r, long status)
{
    assert_int_equal(r->code, CURLE_OK);
    assert_int_equal(r->status, status);
    json_t *o = json_loads(r->body, 0, NULL);
    assert_non_null(o);
    json_t *e = json_object_get(o, "error");
    assert_int_equal(json_integer_value(json_object_get(e, "code")), status);
    assert_non_null(json_string_value(json_object_get(e, "type")));
    char *msg = v4r_strdup(json_string_value(json_object_get(e, "message")));
    json_decref(o);
    return msg;
}

/* ---- tests ---- */

static void test_completion(void **state)
{
    (void)state;
    v4r_standin *s = start_default();
    int port = v4r_standin_port(s);
    reply r;
    char *body = request_body(png[0], png_n[0], "Describe the item in this image.", 0);
    perform(port, "/v1/chat/completions", body, 10, &r);
    free(body);
    char *text = content_of(&r, "stop");
    json_t *o = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "model")), "test-model");
    /* prompt tokens: 6 words of text and 576 for the image */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "usage"), "prompt_tokens")), 6 + 576);
    json_decref(o);
    reply_free(&r);
    assert_true(words(text) >= 20);
    assert_non_null(strstr(text, "item"));
    /* the same text as the library function, and the other route */
    v4r_image img;
    v4r_err err = {0};
    char *path = v4r_sprintf("%s/images/I000000.png", synth_dir);
    assert_int_equal(v4r_image_load(path, &img, &err), 0);
    free(path);
    char *direct = v4r_standin_describe(&img);
    v4r_image_free(&img);
    assert_string_equal(text, direct);
    free(direct);
    body = request_body(png[0], png_n[0], "Describe.", 0);
    perform(port, "/chat/completions", body, 10, &r);
    free(body);
    char *again = content_of(&r, "stop");
    assert_string_equal(text, again);
    free(again);
    reply_free(&r);
    /* max_tokens cuts the answer to that many words */
    body = request_body(png[0], png_n[0], "Describe.", 5);
    perform(port, "/v1/chat/completions", body, 10, &r);
    free(body);
    char *cut = content_of(&r, "length");
    assert_int_equal(words(cut), 5);
    assert_int_equal(strncmp(cut, text, strlen(cut)), 0);
    free(cut);
    reply_free(&r);
    free(text);
    /* the other routes */
    perform(port, "/v1/models", NULL, 10, &r);
    assert_int_equal(r.status, 200);
    o = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "object")), "list");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(o, "data"), 0), "id")),
                        "vlm4rec-standin");
    json_decref(o);
    reply_free(&r);
    perform(port, "/health", NULL, 10, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"ok\""));
    reply_free(&r);
    perform(port, "/v2/nothing", NULL, 10, &r);
    char *msg = error_of(&r, 404);
    free(msg);
    reply_free(&r);
    assert_int_equal(v4r_standin_requests(s), 3); /* chat requests only */
    v4r_standin_stop(s);
}

static void test_texts(void **state)
{
    (void)state;
    v4r_standin *s = start_default();
    int port = v4r_standin_port(s);
    reply a, b, c;
    post_image(port, 3, 10, &a);
    post_image(port, 3, 10, &b);
    post_image(port, 4, 10, &c);
    char *ta = content_of(&a, "stop"), *tb = content_of(&b, "stop"), *tc = content_of(&c, "stop");
    assert_string_equal(ta, tb);
    assert_string_not_equal(ta, tc);
    free(ta), free(tb), free(tc);
    reply_free(&a), reply_free(&b), reply_free(&c);
    v4r_standin_stop(s);
}

/* The color named first is the item's color in attributes.tsv; all texts differ. */
static void test_synth_colors(void **state)
{
    (void)state;
    char *attrs = tu_read(synth_dir, "attributes.tsv");
    assert_non_null(attrs);
    int right = 0;
    char *texts[N_SYNTH];
    char *save = NULL;
    strtok_r(attrs, "\n", &save); /* header */
    for (int i = 0; i < N_SYNTH; i++) {
        char *line = strtok_r(NULL, "\n", &save);
        assert_non_null(line);
        char *f[8], *fs = NULL;
        f[0] = strtok_r(line, "\t", &fs);
        for (int k = 1; k < 4; k++)
            f[k] = strtok_r(NULL, "\t", &fs);
        char *path = v4r_sprintf("%s/images/%s.png", synth_dir, f[0]);
        v4r_image img;
        v4r_err err = {0};
        assert_int_equal(v4r_image_load(path, &img, &err), 0);
        free(path);
        texts[i] = v4r_standin_describe(&img);
        v4r_image_free(&img);
        /* "A <size> <color> [and <color>] item ..." */
        char *want = v4r_sprintf(" %s ", f[3]);
        const char *item = strstr(texts[i], " item ");
        const char *at = strstr(texts[i], want);
        if (at && item && at < item)
            right++;
        else
            fprintf(stderr, "%s (%s %s): %.120s\n", f[0], f[3], f[2], texts[i]);
        free(want);
    }
    fprintf(stderr, "color named right for %d of %d synthetic items\n", right, N_SYNTH);
    assert_true(right * 10 >= N_SYNTH * 9);
    for (int i = 0; i < N_SYNTH; i++)
        for (int j = 0; j < i; j++)
            assert_string_not_equal(texts[i], texts[j]);
    for (int i = 0; i < N_SYNTH; i++)
        free(texts[i]);
    free(attrs);
}

static const char *const photos[] = {"cmyk_360x240.jpg",     "gray_400.jpg",          "landscape_640x480.jpg",
                                     "odd_333x777.jpg",      "palette_300x200.png",   "portrait_300x500.jpg",
                                     "progressive_512x384.jpg", "rgba_256x320.png",   "square_224.jpg",
                                     "subsampled420_800x600.jpg", "tiny_97x61.png",   "wide_1000x150.jpg"};
#define N_PHOTOS (sizeof photos / sizeof *photos)

static void test_photos(void **state)
{
    (void)state;
    char *texts[N_PHOTOS];
    for (size_t i = 0; i < N_PHOTOS; i++) {
        char *path = v4r_sprintf("%s/fixtures/images/%s", tu_shared(), photos[i]);
        v4r_image img;
        v4r_err err = {0};
        if (v4r_image_load(path, &img, &err) != 0)
            fail_msg("%s", err.msg);
        free(path);
        texts[i] = v4r_standin_describe(&img);
        char *again = v4r_standin_describe(&img);
        assert_string_equal(texts[i], again);
        free(again);
        v4r_image_free(&img);
        assert_true(words(texts[i]) >= 15);
        assert_non_null(strstr(texts[i], "color"));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(texts[i], texts[j]);
    }
    for (size_t i = 0; i < N_PHOTOS; i++)
        free(texts[i]);
}

static void expect_400(int port, const char *body, const char *needle)
{
    reply r;
    perform(port, "/v1/chat/completions", body, 10, &r);
    char *msg = error_of(&r, 400);
    if (!strstr(msg, needle))
        fail_msg("'%s' does not contain '%s'", msg, needle);
    free(msg);
    reply_free(&r);
}

static void test_bad_requests(void **state)
{
    (void)state;
    v4r_standin_opts o;
    v4r_standin_defaults(&o);
    o.fault_rate[V4R_FAULT_500] = 1; /* a bad image is a 400 whatever the faults */
    v4r_standin *s = start(&o);
    int port = v4r_standin_port(s);
    size_t n;
    char *path = v4r_sprintf("%s/fixtures/images/not_an_image.jpg", tu_shared());
    char *bytes = read_bytes(path, &n);
    free(path);
    char *body = request_body(bytes, n, "Describe.", 0);
    expect_400(port, body, "could not decode image: ");
    free(body);
    free(bytes);
    path = v4r_sprintf("%s/fixtures/images/corrupt_truncated.jpg", tu_shared());
    bytes = read_bytes(path, &n);
    free(path);
    body = request_body(bytes, n, "Describe.", 0);
    expect_400(port, body, "could not decode image: ");
    free(body);
    free(bytes);
    expect_400(port, "this is not json", "not JSON");
    expect_400(port, "{\"model\": \"m\"}", "messages");
    expect_400(port, "{\"messages\": [{\"role\": \"user\", \"content\": \"describe it\"}]}", "no image");
    expect_400(port,
               "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": "
               "{\"url\": \"http://example.com/a.png\"}}]}]}",
               "data: URL");
    expect_400(port,
               "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": "
               "{\"url\": \"data:image/png;base64,@@@@\"}}]}]}",
               "base64");
    assert_int_equal(v4r_standin_requests(s), 7);
    v4r_standin_stop(s);
}

static v4r_standin *start_fault(int fault, int attempts)
{
    v4r_standin_opts o;
    v4r_standin_defaults(&o);
    o.fault_rate[fault] = 1;
    o.fault_attempts = attempts;
    o.retry_after_s = 1.5;
    o.drip_s = 2;
    return start(&o);
}

static void test_faults(void **state)
{
    (void)state;
    reply r;
    v4r_standin *s = start_fault(V4R_FAULT_429, 0);
    post_image(v4r_standin_port(s), 0, 10, &r);
    char *msg = error_of(&r, 429);
    assert_string_equal(r.retry_after, "2"); /* 1.5 s, rounded up */
    free(msg);
    reply_free(&r);
    v4r_standin_stop(s);

    s = start_fault(V4R_FAULT_500, 0);
    post_image(v4r_standin_port(s), 0, 10, &r);
    free(error_of(&r, 500));
    reply_free(&r);
    v4r_standin_stop(s);

    s = start_fault(V4R_FAULT_400, 0);
    post_image(v4r_standin_port(s), 0, 10, &r);
    msg = error_of(&r, 400);
    assert_string_equal(msg, "stand-in injected 400");
    free(msg);
    reply_free(&r);
    v4r_standin_stop(s);

    s = start_fault(V4R_FAULT_MALFORMED, 0);
    post_image(v4r_standin_port(s), 0, 10, &r);
    assert_int_equal(r.code, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_null(json_loads(r.body, 0, NULL));
    reply_free(&r);
    v4r_standin_stop(s);

    s = start_fault(V4R_FAULT_EMPTY, 0);
    post_image(v4r_standin_port(s), 0, 10, &r);
    char *text = content_of(&r, "stop");
    assert_string_equal(text, "");
    free(text);
    reply_free(&r);
    v4r_standin_stop(s);

    s = start_fault(V4R_FAULT_DRIP, 0);
    double t0 = v4r_now();
    post_image(v4r_standin_port(s), 0, 0.5, &r);
    assert_int_equal(r.code, CURLE_OPERATION_TIMEDOUT);
    assert_true(v4r_now() - t0 < 1.5);
    reply_free(&r);
    post_image(v4r_standin_port(s), 0, 10, &r); /* a patient client gets the whole answer */
    text = content_of(&r, "stop");
    assert_true(words(text) > 10);
    free(text);
    reply_free(&r);
    v4r_standin_stop(s);

    s = start_fault(V4R_FAULT_DROP, 0);
    post_image(v4r_standin_port(s), 0, 10, &r);
    if (r.code != CURLE_GOT_NOTHING && r.code != CURLE_RECV_ERROR)
        fail_msg("drop: curl said %d (%s)", (int)r.code, r.error);
    reply_free(&r);
    assert_int_equal(v4r_standin_requests(s), 1);
    v4r_standin_stop(s);
}

static void test_fault_attempts(void **state)
{
    (void)state;
    v4r_standin *s = start_fault(V4R_FAULT_500, 1);
    int port = v4r_standin_port(s);
    reply r;
    post_image(port, 5, 10, &r);
    free(error_of(&r, 500));
    reply_free(&r);
    post_image(port, 5, 10, &r);
    free(content_of(&r, "stop"));
    reply_free(&r);
    post_image(port, 6, 10, &r); /* another image: its first request */
    free(error_of(&r, 500));
    reply_free(&r);
    v4r_standin_stop(s);
}

/* The fault pattern over images and attempts is a function of the seed. */
static void pattern(uint64_t seed, char out[41])
{
    v4r_standin_opts o;
    v4r_standin_defaults(&o);
    o.seed = seed;
    o.fault_rate[V4R_FAULT_500] = 0.3;
    o.fault_rate[V4R_FAULT_429] = 0.2;
    o.retry_after_s = 0;
    v4r_standin *s = start(&o);
    for (int i = 0; i < 40; i++) {
        reply r;
        post_image(v4r_standin_port(s), i % 20, 10, &r); /* each image twice */
        out[i] = r.status == 200 ? '.' : r.status == 500 ? '5' : r.status == 429 ? '4' : '?';
        reply_free(&r);
    }
    out[40] = 0;
    v4r_standin_stop(s);
}

static void test_fault_determinism(void **state)
{
    (void)state;
    char a[41], b[41], c[41];
    pattern(11, a);
    pattern(11, b);
    pattern(12, c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_null(strchr(a, '?'));
    int faults = 0;
    for (int i = 0; i < 40; i++)
        faults += a[i] != '.';
    assert_true(faults >= 8 && faults <= 32);
}

static void test_cap(void **state)
{
    (void)state;
    v4r_standin_opts o;
    v4r_standin_defaults(&o);
    o.cap = 2;
    o.latency_s = 0.2;
    v4r_standin *s = start(&o);
    reply r[6];
    double t0 = v4r_now();
    post_concurrent(v4r_standin_port(s), 6, 6, r);
    double took = v4r_now() - t0;
    for (int i = 0; i < 6; i++) {
        free(content_of(&r[i], "stop"));
        reply_free(&r[i]);
    }
    assert_true(took >= 0.55);
    assert_int_equal(v4r_standin_peak_concurrency(s), 2);
    assert_int_equal(v4r_standin_requests(s), 6);
    v4r_standin_stop(s);

    /* without a cap they all run at once */
    o.cap = 0;
    s = start(&o);
    t0 = v4r_now();
    post_concurrent(v4r_standin_port(s), 6, 6, r);
    took = v4r_now() - t0;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(r[i].status, 200);
        reply_free(&r[i]);
    }
    assert_true(took < 1.0); /* one after another would take 1.2 s */
    assert_true(v4r_standin_peak_concurrency(s) >= 2);
    v4r_standin_stop(s);

    /* rejecting: 429 at once for those over the cap */
    o.cap = 1;
    o.cap_reject = 1;
    o.latency_s = 0.5;
    s = start(&o);
    post_concurrent(v4r_standin_port(s), 6, 6, r);
    int ok = 0, busy = 0;
    for (int i = 0; i < 6; i++) {
        ok += r[i].status == 200;
        busy += r[i].status == 429 && r[i].retry_after[0];
        reply_free(&r[i]);
    }
    assert_true(ok >= 1);
    assert_true(busy >= 1);
    assert_int_equal(ok + busy, 6);
    assert_int_equal(v4r_standin_peak_concurrency(s), 1);
    v4r_standin_stop(s);
}

typedef struct {
    int port;
    reply r[3];
} stuck;

static void *post_three(void *arg)
{
    stuck *k = arg;
    post_concurrent(k->port, 3, 3, k->r);
    return NULL;
}

/* Stopping does not wait out service times or the queue for a slot. */
static void test_stop_promptly(void **state)
{
    (void)state;
    v4r_standin_opts o;
    v4r_standin_defaults(&o);
    o.cap = 1;
    o.latency_s = 60;
    v4r_standin *s = start(&o);
    stuck k = {.port = v4r_standin_port(s)};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, post_three, &k), 0);
    for (int i = 0; i < 100 && v4r_standin_peak_concurrency(s) < 1; i++)
        usleep(20000);
    usleep(200000);
    double t0 = v4r_now();
    v4r_standin_stop(s);
    assert_true(v4r_now() - t0 < 2);
    pthread_join(th, NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_not_equal(k.r[i].status, 200);
        reply_free(&k.r[i]);
    }
}

static void test_log(void **state)
{
    (void)state;
    char *log = v4r_path_join(tmp, "standin.log");
    v4r_standin_opts o;
    v4r_standin_defaults(&o);
    o.log_path = log;
    o.fault_rate[V4R_FAULT_500] = 1;
    o.fault_attempts = 1;
    v4r_standin *s = start(&o);
    reply r;
    post_image(v4r_standin_port(s), 7, 10, &r);
    reply_free(&r);
    post_image(v4r_standin_port(s), 7, 10, &r);
    reply_free(&r);
    perform(v4r_standin_port(s), "/v1/chat/completions", "nope", 10, &r);
    reply_free(&r);
    v4r_standin_stop(s);
    char *text = tu_read(tmp, "standin.log");
    assert_non_null(text);
    char sha[65];
    unsigned char md[32];
    unsigned len = 0;
    EVP_Digest(png[7], png_n[7], md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(sha + 2 * i, 3, "%02x", md[i]);
    char *save = NULL, *line;
    const char *want[3][3] = {{sha, "0", "500"}, {sha, "1", "200"}, {"-", "0", "bad-request"}};
    int n = 0;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
        assert_true(n < 3);
        char *fs = NULL, *t = strtok_r(line, "\t", &fs);
        double when = strtod(t, NULL);
        assert_true(when > 1.6e9);
        for (int k = 0; k < 3; k++)
            assert_string_equal(strtok_r(NULL, "\t", &fs), want[n][k]);
        assert_null(strtok_r(NULL, "\t", &fs));
    }
    assert_int_equal(n, 3);
    free(text);
    free(log);
}

static void test_fault_names(void **state)
{
    (void)state;
    for (int f = 0; f < V4R_NFAULTS; f++)
        assert_int_equal(v4r_fault_parse(v4r_fault_name(f)), f);
    assert_string_equal(v4r_fault_name(V4R_FAULT_DRIP), "drip");
    assert_int_equal(v4r_fault_parse("nope"), -1);
    v4r_standin_opts o;
    v4r_standin_defaults(&o);
    o.fault_rate[V4R_FAULT_500] = 0.7;
    o.fault_rate[V4R_FAULT_429] = 0.7;
    v4r_standin *s = NULL;
    v4r_err err = {0};
    assert_int_equal(v4r_standin_start(&o, &s, &err), V4R_EUSAGE);
    assert_null(s);
}

static void test_cli(void **state)
{
    (void)state;
    char *port_file = v4r_path_join(tmp, "port.txt");
    char *err_file = v4r_path_join(tmp, "standin.err");
    unlink(port_file);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *e = freopen(err_file, "w", stderr);
        (void)e;
        execl(V4R_BINARY, V4R_BINARY, "standin", "--port", "0", "--port-file", port_file, (char *)NULL);
        _exit(127);
    }
    char *text = NULL;
    for (int i = 0; i < 200 && !(text = tu_read(tmp, "port.txt")); i++)
        usleep(50000);
    assert_non_null(text);
    int port = atoi(text);
    free(text);
    assert_true(port > 0);
    reply r;
    perform(port, "/health", NULL, 10, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    post_image(port, 8, 10, &r);
    free(content_of(&r, "stop"));
    reply_free(&r);
    kill(pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    text = tu_read(tmp, "standin.err");
    assert_non_null(strstr(text, "stand-in server (not a vision-language model"));
    assert_non_null(strstr(text, "1 requests served"));
    free(text);
    free(port_file);
    free(err_file);
    /* usage errors */
    char *out = NULL;
    assert_int_equal(tu_run(&out, "standin --fault bogus:0.5"), 2);
    assert_non_null(strstr(out, "--fault"));
    assert_non_null(strstr(out, "bogus:0.5"));
    free(out);
    assert_int_equal(tu_run(&out, "standin --fault 500:2"), 2);
    assert_non_null(strstr(out, "500:2"));
    free(out);
    assert_int_equal(tu_run(&out, "standin --latency -1"), 2);
    free(out);
    assert_int_equal(tu_run(&out, "standin --help"), 0);
    assert_non_null(strstr(out, "not a vision-language model"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completion),   cmocka_unit_test(test_texts),
        cmocka_unit_test(test_synth_colors), cmocka_unit_test(test_photos),
        cmocka_unit_test(test_bad_requests), cmocka_unit_test(test_faults),
        cmocka_unit_test(test_fault_attempts), cmocka_unit_test(test_fault_determinism),
        cmocka_unit_test(test_cap),          cmocka_unit_test(test_stop_promptly),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_fault_names),  cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

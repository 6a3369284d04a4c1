/* The stand-in server: an OpenAI-compatible chat-completions endpoint (as llama.cpp's server, vLLM,
 * Ollama and SGLang expose) for tests, benchmarks and the offline demo. It is not a
 * vision-language model: the answer is v4r_standin_describe() of the uploaded image, written from
 * pixel statistics. Service time, a concurrency cap and faults are configurable; docs/standin.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "vlm4rec/ground.h"

#define MAX_BODY ((size_t)64 << 20)
#define IMAGE_TOKENS 576 /* what one image costs in prompt tokens (24 x 24 patches, as LLaVA) */
#define DEFAULT_MODEL "vlm4rec-standin"

/* ---- image-hash counts: how many requests each image has had ---- */

typedef struct {
    uint8_t key[32];
    uint64_t count;
    int used;
} seen_slot;

typedef struct {
    seen_slot *slots;
    size_t cap, n;
} seen_map;

static uint64_t key_hash(const uint8_t *k)
{
    uint64_t h;
    memcpy(&h, k, sizeof h); /* sha256 bytes are already uniform */
    return h;
}

/* Returns the count before this request and adds one. */
static uint64_t seen_bump(seen_map *m, const uint8_t key[32])
{
    if (2 * (m->n + 1) > m->cap) {
        seen_map g = {v4r_calloc(m->cap ? 2 * m->cap : 256, sizeof(seen_slot)), m->cap ? 2 * m->cap : 256, 0};
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].used) {
                size_t j = key_hash(m->slots[i].key) & (g.cap - 1);
                while (g.slots[j].used)
                    j = (j + 1) & (g.cap - 1);
                g.slots[j] = m->slots[i];
                g.n++;
            }
        free(m->slots);
        *m = g;
    }
    size_t j = key_hash(key) & (m->cap - 1);
    while (m->slots[j].used && memcmp(m->slots[j].key, key, 32))
        j = (j + 1) & (m->cap - 1);
    if (!m->slots[j].used) {
        m->slots[j].used = 1;
        memcpy(m->slots[j].key, key, 32);
        m->n++;
    }
    return m->slots[j].count++;
}

/* ---- the server ---- */

struct v4r_standin {
    v4r_standin_opts o;
    char *bind, *log_path, *api_key;
    struct MHD_Daemon *d;
    int port;
    FILE *log;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* slots, stop */
    int stopping;
    int in_service, peak;
    uint64_t next_ticket, serving; /* FIFO order of the requests waiting for a slot */
    uint64_t requests, next_id;
    seen_map seen;
};

void v4r_standin_defaults(v4r_standin_opts *o)
{
    memset(o, 0, sizeof *o);
    o->bind = "127.0.0.1";
    o->retry_after_s = 1;
    o->drip_s = 30;
}

int v4r_standin_port(const v4r_standin *s) { return s->port; }

uint64_t v4r_standin_requests(const v4r_standin *s)
{
    pthread_mutex_lock((pthread_mutex_t *)&s->mu);
    uint64_t n = s->requests;
    pthread_mutex_unlock((pthread_mutex_t *)&s->mu);
    return n;
}

int v4r_standin_peak_concurrency(const v4r_standin *s)
{
    pthread_mutex_lock((pthread_mutex_t *)&s->mu);
    int n = s->peak;
    pthread_mutex_unlock((pthread_mutex_t *)&s->mu);
    return n;
}

/* Sleeps up to secs; returns -1 (early) when the server is stopping. */
static int nap(v4r_standin *s, double secs)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double whole = floor(secs);
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((secs - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT)
        ;
    int stop = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return stop ? -1 : 0;
}

enum { SLOT_OK = 0, SLOT_FULL = 1, SLOT_STOPPING = 2 };

/* Takes a service slot: waits its turn (FIFO) under a cap, or reports FULL with cap_reject. */
static int slot_take(v4r_standin *s)
{
    int rc = SLOT_OK;
    pthread_mutex_lock(&s->mu);
    if (s->o.cap > 0 && s->o.cap_reject && s->in_service >= s->o.cap) {
        rc = SLOT_FULL;
    } else if (s->o.cap > 0) {
        uint64_t t = s->next_ticket++;
        while (!s->stopping && (t != s->serving || s->in_service >= s->o.cap))
            pthread_cond_wait(&s->cv, &s->mu);
        s->serving++;
        if (s->stopping)
            rc = SLOT_STOPPING;
    }
    if (rc == SLOT_OK) {
        s->in_service++;
        if (s->in_service > s->peak)
            s->peak = s->in_service;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void slot_give(v4r_standin *s)
{
    pthread_mutex_lock(&s->mu);
    s->in_service--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Counts a finished chat request and writes its log line. */
static void finish(v4r_standin *s, const char *sha, uint64_t k, const char *answer)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pthread_mutex_lock(&s->mu);
    s->requests++;
    if (s->log) {
        fprintf(s->log, "%lld.%03ld\t%s\t%llu\t%s\n", (long long)now.tv_sec, now.tv_nsec / 1000000L,
                sha && *sha ? sha : "-", (unsigned long long)k, answer);
        fflush(s->log);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- responses ---- */

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, char *body, const char *retry_after)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Server", "vlm4rec-standin");
    if (retry_after)
        MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *o, const char *retry_after)
{
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return send_body(c, status, body, retry_after);
}

static const char *error_type(unsigned status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 500: return "server_error";
    case 503: return "server_error";
    default: return "invalid_request_error";
    }
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg, const char *retry_after)
{
    json_t *o = json_pack("{s:{s:s, s:s, s:i}}", "error", "message", msg, "type", error_type(status), "code",
                          (int)status);
    return send_json(c, status, o, retry_after);
}

static void retry_after_text(const v4r_standin *s, char out[32])
{
    double v = s->o.retry_after_s > 0 ? ceil(s->o.retry_after_s) : 0;
    snprintf(out, 32, "%.0f", v);
}

/* ---- the request ---- */

typedef struct {
    char *buf;
    size_t n, cap;
    int too_large;
} upload;

typedef struct {
    const char *model;      /* in the JSON (valid while root lives) */
    const char *image_url;
    long long max_tokens;   /* 0: no limit */
    long long prompt_words; /* words of all text in the messages */
    int images;
} chat_request;

static long long count_words(const char *s)
{
    long long n = 0;
    int in = 0;
    for (; *s; s++) {
        int space = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v';
        n += !space && !in;
        in = !space;
    }
    return n;
}

/* Reads the fields the stand-in uses; a message in msg when the request is bad. */
static int parse_request(json_t *root, chat_request *q, char *msg, size_t msg_n)
{
    memset(q, 0, sizeof *q);
    if (!json_is_object(root))
        return snprintf(msg, msg_n, "the request body must be a JSON object"), -1;
    json_t *v = json_object_get(root, "model");
    if (v && !json_is_string(v) && !json_is_null(v))
        return snprintf(msg, msg_n, "\"model\" must be a string"), -1;
    q->model = json_is_string(v) && json_string_length(v) ? json_string_value(v) : DEFAULT_MODEL;
    v = json_object_get(root, "max_tokens");
    if (!v)
        v = json_object_get(root, "max_completion_tokens");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1)
            return snprintf(msg, msg_n, "\"max_tokens\" must be a positive integer"), -1;
        q->max_tokens = json_integer_value(v);
    }
    v = json_object_get(root, "temperature");
    if (v && !json_is_null(v) && (!json_is_number(v) || json_number_value(v) < 0))
        return snprintf(msg, msg_n, "\"temperature\" must be a non-negative number"), -1;
    v = json_object_get(root, "seed");
    if (v && !json_is_null(v) && !json_is_integer(v))
        return snprintf(msg, msg_n, "\"seed\" must be an integer"), -1;
    v = json_object_get(root, "stream");
    if (v && json_is_true(v))
        return snprintf(msg, msg_n, "the stand-in server does not stream; send \"stream\": false"), -1;
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return snprintf(msg, msg_n, "\"messages\" must be a non-empty array"), -1;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")))
            return snprintf(msg, msg_n, "messages[%zu] must be an object with a \"role\"", i), -1;
        int user = !strcmp(json_string_value(json_object_get(m, "role")), "user");
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content)) {
            q->prompt_words += count_words(json_string_value(content));
            continue;
        }
        if (json_is_null(content) || !content)
            continue;
        if (!json_is_array(content))
            return snprintf(msg, msg_n, "messages[%zu].content must be a string or an array of parts", i), -1;
        size_t j;
        json_t *part;
        json_array_foreach(content, j, part)
        {
            const char *type = json_string_value(json_object_get(part, "type"));
            if (!type)
                return snprintf(msg, msg_n, "messages[%zu].content[%zu] has no \"type\"", i, j), -1;
            if (!strcmp(type, "text")) {
                const char *text = json_string_value(json_object_get(part, "text"));
                if (!text)
                    return snprintf(msg, msg_n, "messages[%zu].content[%zu] has no \"text\"", i, j), -1;
                q->prompt_words += count_words(text);
            } else if (!strcmp(type, "image_url")) {
                json_t *iu = json_object_get(part, "image_url");
                const char *url =
                    json_is_string(iu) ? json_string_value(iu) : json_string_value(json_object_get(iu, "url"));
                if (!url)
                    return snprintf(msg, msg_n, "messages[%zu].content[%zu] has no image_url.url", i, j), -1;
                q->images++;
                if (user && !q->image_url)
                    q->image_url = url;
            }
        }
    }
    if (!q->image_url)
        return snprintf(msg, msg_n,
                        "no image: the stand-in server describes the image of a user message "
                        "(a content part {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:...\"}})"),
               -1;
    return 0;
}

/* Decodes a data:...;base64, URL into *out (caller frees). */
static int decode_data_url(const char *url, uint8_t **out, size_t *n, char *msg, size_t msg_n)
{
    if (strncmp(url, "data:", 5))
        return snprintf(msg, msg_n, "the stand-in server only takes images inline, as data: URLs"), -1;
    const char *comma = strchr(url, ',');
    if (!comma)
        return snprintf(msg, msg_n, "the image data URL has no ','"), -1;
    if ((size_t)(comma - url) < 12 || strncmp(comma - 7, ";base64", 7))
        return snprintf(msg, msg_n, "the image data URL must be base64 (data:<type>;base64,...)"), -1;
    const char *b64 = comma + 1;
    size_t len = strlen(b64);
    while (len && (b64[len - 1] == '\n' || b64[len - 1] == '\r' || b64[len - 1] == ' '))
        len--;
    if (len % 4 == 1)
        return snprintf(msg, msg_n, "the image data is not valid base64 (bad length)"), -1;
    size_t padded = (len + 3) / 4 * 4;
    unsigned char *in = v4r_malloc(padded + 1);
    memcpy(in, b64, len);
    memset(in + len, '=', padded - len);
    size_t pad = 0;
    while (pad < 2 && pad < padded && in[padded - 1 - pad] == '=')
        pad++;
    uint8_t *buf = v4r_malloc(padded / 4 * 3 + 1);
    int got = padded ? EVP_DecodeBlock(buf, in, (int)padded) : 0;
    free(in);
    if (got < 0 || (size_t)got < pad) {
        free(buf);
        return snprintf(msg, msg_n, "the image data is not valid base64"), -1;
    }
    *out = buf;
    *n = (size_t)got - pad;
    return 0;
}

static void sha256(const uint8_t *data, size_t n, uint8_t md[32], char hex[65])
{
    unsigned len = 0;
    EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The fault for the k-th request (from 0) for an image: -1 for none. The draw depends only on the
 * seed, the image and k, so a run's pattern does not depend on request order or timing. */
static int pick_fault(const v4r_standin *s, const uint8_t md[32], uint64_t k)
{
    uint64_t h = mix64(s->o.seed);
    for (int i = 0; i < 4; i++) {
        uint64_t w;
        memcpy(&w, md + 8 * i, 8);
        h = mix64(h ^ w);
    }
    h = mix64(h ^ k);
    double u = (double)(h >> 11) * 0x1.0p-53, acc = 0;
    for (int f = 0; f < V4R_NFAULTS; f++) {
        acc += s->o.fault_rate[f] > 0 ? s->o.fault_rate[f] : 0;
        if (u < acc)
            return s->o.fault_attempts == 0 || k < (uint64_t)s->o.fault_attempts ? f : -1;
    }
    return -1;
}

/* The completion object; content truncated to max_tokens words. */
static char *completion(v4r_standin *s, const chat_request *q, const char *text)
{
    long long words = count_words(text);
    const char *finish_reason = "stop";
    char *content = v4r_strdup(text);
    if (q->max_tokens > 0 && words > q->max_tokens) {
        long long seen = 0;
        int in = 0;
        for (char *p = content; *p; p++) {
            int space = *p == ' ' || *p == '\n' || *p == '\t';
            if (!space && !in && seen++ == q->max_tokens) {
                while (p > content && (p[-1] == ' ' || p[-1] == '\n' || p[-1] == '\t'))
                    p--;
                *p = 0;
                break;
            }
            in = !space;
        }
        words = q->max_tokens;
        finish_reason = "length";
    }
    pthread_mutex_lock(&s->mu);
    uint64_t id = ++s->next_id;
    pthread_mutex_unlock(&s->mu);
    char idbuf[64];
    snprintf(idbuf, sizeof idbuf, "chatcmpl-standin-%llu", (unsigned long long)id);
    long long prompt = q->prompt_words + (long long)IMAGE_TOKENS * q->images;
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s}, s:s}], s:{s:I, s:I, s:I}}", "id", idbuf,
                          "object", "chat.completion", "created", (json_int_t)time(NULL), "model", q->model,
                          "choices", "index", 0, "message", "role", "assistant", "content", content,
                          "finish_reason", finish_reason, "usage", "prompt_tokens", (json_int_t)prompt,
                          "completion_tokens", (json_int_t)words, "total_tokens", (json_int_t)(prompt + words));
    free(content);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return body;
}

/* ---- drip: a valid body, a few bytes at a time ---- */

typedef struct {
    v4r_standin *s;
    char *body;
    size_t len;
    double gap; /* seconds between pieces */
} drip;

#define DRIP_PIECE 8

static ssize_t drip_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    drip *d = cls;
    if (pos >= d->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (pos > 0 && nap(d->s, d->gap) != 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = d->len - (size_t)pos;
    n = n < DRIP_PIECE ? n : DRIP_PIECE;
    n = n < max ? n : max;
    memcpy(buf, d->body + pos, n);
    return (ssize_t)n;
}

static void drip_free(void *cls)
{
    drip *d = cls;
    free(d->body);
    free(d);
}

static enum MHD_Result send_drip(struct MHD_Connection *c, v4r_standin *s, char *body)
{
    drip *d = v4r_calloc(1, sizeof *d);
    d->s = s;
    d->body = body;
    d->len = strlen(body);
    size_t pieces = (d->len + DRIP_PIECE - 1) / DRIP_PIECE;
    d->gap = pieces > 1 ? s->o.drip_s / (double)(pieces - 1) : 0;
    struct MHD_Response *r = MHD_create_response_from_callback(d->len, DRIP_PIECE, drip_read, d, drip_free);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Server", "vlm4rec-standin");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- the chat-completions route ---- */

/* Everything a request costs happens inside its service slot, which it holds for at least
 * latency_s in all: so the server's capacity is exactly cap / latency_s. */
static enum MHD_Result chat_in_slot(struct MHD_Connection *c, v4r_standin *s, upload *up, int slot, double t0)
{
    char msg[1300];
    json_error_t je;
    json_t *root = json_loadb(up->buf ? up->buf : "", up->n, 0, &je);
    if (!root) {
        finish(s, NULL, 0, "bad-request");
        snprintf(msg, sizeof msg, "the request body is not JSON: %s (line %d, column %d)", je.text, je.line,
                 je.column);
        return send_error(c, 400, msg, NULL);
    }
    chat_request q;
    uint8_t *bytes = NULL;
    size_t nbytes = 0;
    if (parse_request(root, &q, msg, sizeof msg) != 0 ||
        decode_data_url(q.image_url, &bytes, &nbytes, msg, sizeof msg) != 0) {
        json_decref(root);
        finish(s, NULL, 0, "bad-request");
        return send_error(c, 400, msg, NULL);
    }
    uint8_t md[32];
    char sha[65];
    sha256(bytes, nbytes, md, sha);
    pthread_mutex_lock(&s->mu);
    uint64_t k = seen_bump(&s->seen, md);
    pthread_mutex_unlock(&s->mu);
    v4r_image img = {0};
    v4r_err err = {0};
    int rc = v4r_image_decode(bytes, nbytes, NULL, &img, &err);
    free(bytes);
    if (rc != V4R_OK) {
        json_decref(root);
        finish(s, sha, k, "bad-image");
        snprintf(msg, sizeof msg, "could not decode image: %s", err.msg);
        return send_error(c, 400, msg, NULL);
    }
    int fault = pick_fault(s, md, k);
    if (fault == V4R_FAULT_DROP) {
        v4r_image_free(&img);
        json_decref(root);
        finish(s, sha, k, "drop");
        return MHD_NO; /* MHD closes the connection without a word */
    }
    char *text = v4r_standin_describe(&img);
    v4r_image_free(&img);
    char retry[32];
    retry_after_text(s, retry);
    double remaining = s->o.latency_s - (v4r_now() - t0);
    int stopped = slot == SLOT_STOPPING || (remaining > 0 && nap(s, remaining) != 0);
    if (stopped) {
        free(text);
        json_decref(root);
        finish(s, sha, k, "503");
        return send_error(c, 503, "the stand-in server is shutting down", NULL);
    }
    enum MHD_Result ret;
    switch (fault) {
    case V4R_FAULT_429:
        ret = send_error(c, 429, "stand-in injected 429: too many requests", retry);
        break;
    case V4R_FAULT_500:
        ret = send_error(c, 500, "stand-in injected 500: internal server error", NULL);
        break;
    case V4R_FAULT_400:
        ret = send_error(c, 400, "stand-in injected 400", NULL);
        break;
    case V4R_FAULT_MALFORMED:
        ret = send_body(c, 200, v4r_strdup("{\"choices\": ["), NULL);
        break;
    case V4R_FAULT_EMPTY:
        ret = send_body(c, 200, completion(s, &q, ""), NULL);
        break;
    case V4R_FAULT_DRIP:
        ret = send_drip(c, s, completion(s, &q, text));
        break;
    default:
        ret = send_body(c, 200, completion(s, &q, text), NULL);
        break;
    }
    free(text);
    json_decref(root);
    finish(s, sha, k, fault < 0 ? "200" : v4r_fault_name(fault));
    return ret;
}

static enum MHD_Result chat(struct MHD_Connection *c, v4r_standin *s, upload *up)
{
    if (up->too_large) {
        char msg[128];
        finish(s, NULL, 0, "413");
        snprintf(msg, sizeof msg, "the request body is larger than %zu MB", MAX_BODY >> 20);
        return send_error(c, 413, msg, NULL);
    }
    int slot = slot_take(s);
    if (slot == SLOT_FULL) {
        char retry[32];
        retry_after_text(s, retry);
        finish(s, NULL, 0, "429");
        return send_error(c, 429, "the stand-in server is at its capacity; retry later", retry);
    }
    enum MHD_Result ret = chat_in_slot(c, s, up, slot, v4r_now());
    if (slot == SLOT_OK)
        slot_give(s);
    return ret;
}

static int is_chat_path(const char *url)
{
    return !strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *data, size_t *data_size, void **con_cls)
{
    (void)version;
    v4r_standin *s = cls;
    if (!strcmp(method, "POST") && is_chat_path(url)) {
        upload *up = *con_cls;
        if (!up) {
            *con_cls = v4r_calloc(1, sizeof(upload));
            return MHD_YES;
        }
        if (*data_size) {
            if (!up->too_large && up->n + *data_size > MAX_BODY) {
                up->too_large = 1;
                free(up->buf);
                up->buf = NULL;
                up->n = up->cap = 0;
            }
            if (!up->too_large) {
                v4r_grow((void **)&up->buf, &up->cap, up->n + *data_size + 1, 1);
                memcpy(up->buf + up->n, data, *data_size);
                up->n += *data_size;
            }
            *data_size = 0;
            return MHD_YES;
        }
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (s->api_key && (!auth || strncmp(auth, "Bearer ", 7) || strcmp(auth + 7, s->api_key))) {
            finish(s, NULL, 0, "401");
            return send_error(c, 401, "missing or wrong API key", NULL);
        }
        return chat(c, s, up);
    }
    if (*data_size) { /* a body on another route: read and ignore it */
        *data_size = 0;
        return MHD_YES;
    }
    if (!*con_cls) { /* wait for the end of any body before answering */
        *con_cls = v4r_calloc(1, sizeof(upload));
        return MHD_YES;
    }
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (get && (!strcmp(url, "/v1/models") || !strcmp(url, "/models")))
        return send_json(c, 200,
                         json_pack("{s:s, s:[{s:s, s:s, s:s}]}", "object", "list", "data", "id", DEFAULT_MODEL,
                                   "object", "model", "owned_by", "vlm4rec"),
                         NULL);
    if (get && !strcmp(url, "/health"))
        return send_json(c, 200, json_pack("{s:s}", "status", "ok"), NULL);
    if (is_chat_path(url) || !strcmp(url, "/v1/models") || !strcmp(url, "/health"))
        return send_error(c, 405, "method not allowed", NULL);
    char msg[600];
    snprintf(msg, sizeof msg, "no route for %s %.400s", method, url);
    return send_error(c, 404, msg, NULL);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    upload *up = *con_cls;
    if (up) {
        free(up->buf);
        free(up);
        *con_cls = NULL;
    }
}

/* ---- lifecycle ---- */

int v4r_standin_start(const v4r_standin_opts *o, v4r_standin **out, v4r_err *err)
{
    *out = NULL;
    if (o->port < 0 || o->port > 65535)
        return v4r_fail(err, V4R_EUSAGE, "stand-in server: port %d is out of range", o->port);
    if (o->latency_s < 0 || o->cap < 0 || o->fault_attempts < 0 || o->retry_after_s < 0 || o->drip_s < 0)
        return v4r_fail(err, V4R_EUSAGE, "stand-in server: latency, cap, fault attempts, retry-after and drip "
                                         "time must not be negative");
    double total = 0;
    for (int f = 0; f < V4R_NFAULTS; f++) {
        if (!(o->fault_rate[f] >= 0 && o->fault_rate[f] <= 1))
            return v4r_fail(err, V4R_EUSAGE, "stand-in server: fault rate of %s must be in [0, 1]", v4r_fault_name(f));
        total += o->fault_rate[f];
    }
    if (total > 1 + 1e-9)
        return v4r_fail(err, V4R_EUSAGE, "stand-in server: fault rates add up to %g, more than 1", total);
    const char *bind = o->bind && *o->bind ? o->bind : "127.0.0.1";
    struct sockaddr_storage sa;
    int v6 = 0;
    int rc = v4r_listen_address(bind, o->port, "stand-in server", &sa, &v6, err);
    if (rc)
        return rc;
    v4r_standin *s = v4r_calloc(1, sizeof *s);
    s->o = *o;
    s->bind = v4r_strdup(bind);
    s->o.bind = s->bind;
    if (o->log_path) {
        s->log_path = v4r_strdup(o->log_path);
        s->o.log_path = s->log_path;
        s->log = fopen(o->log_path, "a");
        if (!s->log) {
            rc = v4r_fail(err, V4R_EIO, "stand-in server: cannot open log %s: %s", o->log_path, strerror(errno));
            free(s->bind);
            free(s->log_path);
            free(s->api_key);
            free(s);
            return rc;
        }
    }
    if (o->api_key) {
        s->api_key = v4r_strdup(o->api_key);
        s->o.api_key = s->api_key;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
    if (v6)
        flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, 1024u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 300u, MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                            MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (!s->d) {
        int e = errno;
        rc = v4r_fail(err, V4R_EIO, "stand-in server: cannot listen on %s port %d%s%s", bind, o->port, e ? ": " : "",
                      e ? strerror(e) : "");
        v4r_standin_stop(s);
        return rc;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? (int)info->port : o->port;
    *out = s;
    return V4R_OK;
}

void v4r_standin_stop(v4r_standin *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->d)
        MHD_stop_daemon(s->d);
    if (s->log)
        fclose(s->log);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->seen.slots);
    free(s->bind);
    free(s->log_path);
    free(s->api_key);
    free(s);
}

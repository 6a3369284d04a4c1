/* ground: one request's parts — the image checked, downscaled when asked and carried as a base64
 * data URL; the chat-completions body; and the answer classified as a description, a fault worth
 * retrying, or a permanent failure. */
#include <ctype.h>
#include <stdarg.h>
#include <time.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

static char *data_url(const char *mime, const uint8_t *bytes, size_t n)
{
    size_t head = strlen("data:") + strlen(mime) + strlen(";base64,");
    size_t b64 = 4 * ((n + 2) / 3);
    char *url = v4r_malloc(head + b64 + 1);
    snprintf(url, head + 1, "data:%s;base64,", mime);
    EVP_EncodeBlock((unsigned char *)url + head, bytes, (int)n);
    url[head + b64] = 0;
    return url;
}

/* Shrinks so the longer side is max_side and re-encodes (PNG stays PNG, the rest become JPEG). */
static int downscale(const v4r_image *img, const char *format, int max_side, uint8_t **out, size_t *out_n,
                     const char **mime, v4r_err *err)
{
    int longer = img->w > img->h ? img->w : img->h;
    double scale = (double)max_side / longer;
    int w = (int)lround(img->w * scale), h = (int)lround(img->h * scale);
    v4r_image small = {0};
    int rc = v4r_image_resize(img, w < 1 ? 1 : w, h < 1 ? 1 : h, V4R_RESAMPLE_BICUBIC, &small, err);
    if (rc)
        return rc;
    if (!strcmp(format, "png")) {
        *mime = "image/png";
        rc = v4r_image_encode_png(&small, out, out_n, err);
    } else {
        *mime = "image/jpeg";
        rc = v4r_image_encode_jpeg(&small, 90, out, out_n, err);
    }
    v4r_image_free(&small);
    return rc;
}

int v4r_upload_prepare(const uint8_t *bytes, size_t n, const char *what, int max_side, size_t max_bytes,
                       v4r_upload *u, v4r_err *err)
{
    memset(u, 0, sizeof *u);
    v4r_sha256_hex(bytes, n, u->hash);
    if (max_bytes && n > max_bytes)
        return v4r_fail(err, V4R_EINPUT, "%s: image is %zu bytes, over the limit of %zu", what, n, max_bytes);
    v4r_image img = {0};
    int rc = v4r_image_decode(bytes, n, what, &img, err);
    if (rc)
        return rc;
    u->w = img.w;
    u->h = img.h;
    const char *format = v4r_image_sniff(bytes, n);
    if (max_side > 0 && (img.w > max_side || img.h > max_side)) {
        uint8_t *small = NULL;
        size_t small_n = 0;
        const char *mime = NULL;
        rc = downscale(&img, format, max_side, &small, &small_n, &mime, err);
        if (!rc)
            u->data_url = data_url(mime, small, small_n);
        free(small);
    } else {
        u->data_url = data_url(v4r_image_mime(format), bytes, n);
    }
    v4r_image_free(&img);
    return rc;
}

void v4r_upload_free(v4r_upload *u)
{
    free(u->data_url);
    memset(u, 0, sizeof *u);
}

char *v4r_request_body(const v4r_ground_opts *o, const char *prompt, const char *data_url)
{
    json_t *text = json_pack("{s:s, s:s}", "type", "text", "text", prompt);
    json_t *image = json_pack("{s:s, s:{s:s}}", "type", "image_url", "image_url", "url", data_url);
    /* the image first: LLaVA-NeXT's chat template, like the released script's "[INST] <image>\n...",
     * puts the image before the text */
    json_t *msg = json_pack("{s:s, s:[o, o]}", "role", "user", "content", image, text);
    json_t *body = json_pack("{s:s, s:[o], s:i, s:f, s:b}", "model", o->model, "messages", msg, "max_tokens",
                             o->max_tokens, "temperature", o->temperature, "stream", 0);
    if (o->has_seed)
        json_object_set_new(body, "seed", json_integer(o->seed));
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!s)
        abort(); /* jansson fails only when out of memory */
    return s;
}

double v4r_retry_after_seconds(const char *value)
{
    if (!value)
        return 0;
    while (isspace((unsigned char)*value))
        value++;
    if (!*value)
        return 0;
    char *end;
    double s = strtod(value, &end);
    if (end != value && (*end == 0 || isspace((unsigned char)*end)))
        return s > 0 && isfinite(s) ? s : 0;
    time_t when = curl_getdate(value, NULL); /* an HTTP date */
    if (when < 0)
        return 0;
    double d = difftime(when, time(NULL));
    return d > 0 ? d : 0;
}

static void set_error(v4r_answer *a, int kind, int endpoint_fault, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_error(v4r_answer *a, int kind, int endpoint_fault, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    a->kind = kind;
    a->endpoint_fault = endpoint_fault;
    a->error = v4r_strdup(buf);
}

/* The server's own message from an error body ({"error": {"message": ...}} or {"error": "..."}). */
static void server_message(const char *body, size_t n, char *out, size_t cap)
{
    out[0] = 0;
    json_t *j = body && n ? json_loadb(body, n, 0, NULL) : NULL;
    json_t *e = j ? json_object_get(j, "error") : NULL;
    const char *m = json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "message"));
    if (!m)
        m = json_string_value(json_object_get(j, "message"));
    if (!m)
        m = json_string_value(json_object_get(j, "detail"));
    if (m)
        snprintf(out, cap, ": %s", m);
    else if (!j && n) /* plain text: its first line, shortened */
        snprintf(out, cap, ": %.*s", (int)strcspn(body, "\r\n") > 200 ? 200 : (int)strcspn(body, "\r\n"), body);
    json_decref(j);
}

static int64_t usage_count(json_t *usage, const char *key)
{
    json_t *v = json_object_get(usage, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

static void parse_completion(const char *body, size_t n, v4r_answer *a)
{
    json_error_t je;
    json_t *j = json_loadb(body, n, 0, &je);
    if (!j) {
        set_error(a, V4R_ANSWER_RETRY, 1, "malformed answer: not JSON (%s)", je.text);
        return;
    }
    json_t *choice = json_array_get(json_object_get(j, "choices"), 0);
    json_t *content = json_object_get(json_object_get(choice, "message"), "content");
    const char *text = json_string_value(content);
    size_t len = text ? strlen(text) : 0;
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    size_t start = 0;
    while (start < len && isspace((unsigned char)text[start]))
        start++;
    if (!choice)
        set_error(a, V4R_ANSWER_RETRY, 1, "malformed answer: no choices");
    else if (!text)
        set_error(a, V4R_ANSWER_RETRY, 1, "malformed answer: no message content");
    else if (start == len)
        set_error(a, V4R_ANSWER_RETRY, 1, "empty answer");
    else {
        a->kind = V4R_ANSWER_OK;
        a->text = v4r_strndup(text + start, len - start);
        json_t *usage = json_object_get(j, "usage");
        a->prompt_tokens = usage_count(usage, "prompt_tokens");
        a->completion_tokens = usage_count(usage, "completion_tokens");
    }
    json_decref(j);
}

void v4r_answer_parse(CURLcode cc, const char *curl_msg, long status, const char *body, size_t body_len,
                      const char *retry_after, v4r_answer *a)
{
    memset(a, 0, sizeof *a);
    a->prompt_tokens = a->completion_tokens = -1;
    if (cc != CURLE_OK) {
        const char *what = cc == CURLE_OPERATION_TIMEDOUT ? "timed out" : "transfer failed";
        set_error(a, V4R_ANSWER_RETRY, 1, "%s: %s", what, curl_msg && *curl_msg ? curl_msg : curl_easy_strerror(cc));
        return;
    }
    char msg[256];
    server_message(body, body_len, msg, sizeof msg);
    if (status == 200) {
        parse_completion(body ? body : "", body_len, a);
    } else if (status == 429) {
        set_error(a, V4R_ANSWER_RETRY, 0, "HTTP 429 (too many requests)%s", msg);
        a->retry_after = v4r_retry_after_seconds(retry_after);
    } else if (status == 400 || status == 413 || status == 415 || status == 422) {
        set_error(a, V4R_ANSWER_PERMANENT, 0, "HTTP %ld%s", status, msg);
    } else if (status == 408 || status == 409 || status == 425 || status >= 500) {
        set_error(a, V4R_ANSWER_RETRY, 1, "HTTP %ld%s", status, msg);
        if (status == 503)
            a->retry_after = v4r_retry_after_seconds(retry_after);
    } else if (status == 401 || status == 403 || status == 404 || status == 405) {
        /* the endpoint is misconfigured (key, URL): not the item's fault */
        set_error(a, V4R_ANSWER_RETRY, 1, "HTTP %ld from the endpoint (check its URL and API key)%s", status, msg);
    } else {
        set_error(a, V4R_ANSWER_PERMANENT, 0, "HTTP %ld%s", status, msg);
    }
}

void v4r_answer_free(v4r_answer *a)
{
    free(a->text);
    free(a->error);
    memset(a, 0, sizeof *a);
}

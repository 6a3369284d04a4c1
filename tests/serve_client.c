/* Helpers of test_serve: the `vlm4rec serve` child process (fork/exec, port file, stop and exit
 * status), HTTP requests through libcurl (keep-alive per handle), raw sockets for what curl will
 * not send, and the JSON checks. Included by test_serve.c (each test program is one file). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the server process ---- */

typedef struct {
    pid_t pid;
    int port;
    char *log; /* the child's stdout and stderr */
} server;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls cond every 10 ms; fails the test when it is still false after two minutes. */
#define WAIT_FOR(cond, what)                                                                                    \
    do {                                                                                                        \
        for (int waited_ = 0; !(cond); waited_ += 10) {                                                         \
            if (waited_ > 120000)                                                                               \
                fail_msg("still waiting for %s", what);                                                         \
            sleep_ms(10);                                                                                       \
        }                                                                                                       \
    } while (0)

/* Splits a space-separated argument string (no quoting) into argv after "vlm4rec serve". */
static char **serve_argv(const char *args, const char *port_file)
{
    char *copy = v4r_sprintf("serve --port 0 --port-file %s %s", port_file, args);
    size_t n = 2;
    for (const char *p = copy; *p; p++)
        n += *p == ' ';
    char **argv = v4r_calloc(n + 1, sizeof *argv);
    size_t i = 0;
    argv[i++] = v4r_strdup(V4R_BINARY);
    for (char *save = NULL, *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        argv[i++] = v4r_strdup(tok);
    free(copy);
    return argv;
}

static void free_argv(char **argv)
{
    for (size_t i = 0; argv[i]; i++)
        free(argv[i]);
    free(argv);
}

static char *read_text(const char *path)
{
    char *text = NULL;
    if (v4r_read_file(path, &text, NULL, NULL) != 0)
        return NULL;
    return text;
}

/* The children started and not yet stopped: a failed test leaves none behind (servers_kill). */
static pid_t live[32];

static void live_set(pid_t pid, pid_t to)
{
    for (size_t i = 0; i < sizeof live / sizeof *live; i++)
        if (live[i] == pid) {
            live[i] = to;
            return;
        }
}

static void servers_kill(void)
{
    for (size_t i = 0; i < sizeof live / sizeof *live; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}

/* Starts `vlm4rec serve ARGS --port 0` in dir (env: one NAME=VALUE or NULL) and waits for its port file. */
static void server_start(server *sv, const char *dir, const char *env, const char *args)
{
    static int count;
    char *port_file = v4r_sprintf("%s/port.%d", dir, count);
    sv->log = v4r_sprintf("%s/serve.%d.log", dir, count++);
    unlink(port_file);
    char **argv = serve_argv(args, port_file);
    sv->pid = fork();
    assert_true(sv->pid >= 0);
    if (sv->pid == 0) {
        int fd = open(sv->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        if (env)
            putenv(v4r_strdup(env));
        execv(V4R_BINARY, argv);
        _exit(127);
    }
    free_argv(argv);
    live_set(0, sv->pid);
    char *text = NULL;
    for (int waited = 0; !(text = read_text(port_file)); waited += 20) {
        int status;
        if (waitpid(sv->pid, &status, WNOHANG) == sv->pid) {
            live_set(sv->pid, 0);
            char *log = read_text(sv->log);
            fail_msg("vlm4rec serve %s exited before listening: %s", args, log ? log : "");
        }
        if (waited > 120000)
            fail_msg("vlm4rec serve %s wrote no port file", args);
        sleep_ms(20);
    }
    sv->port = atoi(text);
    free(text);
    free(port_file);
    assert_true(sv->port > 0);
}

/* Sends sig and returns the exit status (128 + signal when killed). */
static int server_stop(server *sv, int sig)
{
    kill(sv->pid, sig);
    int status = 0;
    assert_int_equal(waitpid(sv->pid, &status, 0), sv->pid);
    live_set(sv->pid, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void server_free(server *sv)
{
    free(sv->log);
    sv->log = NULL;
}

/* ---- HTTP through libcurl ---- */

typedef struct {
    long status;
    char *body, *head;
    size_t n, nh;
    json_t *json; /* the body parsed, NULL when it is not JSON */
} reply;

typedef struct {
    char **buf;
    size_t *n;
} sink;

static size_t on_bytes(char *p, size_t size, size_t count, void *user)
{
    sink *s = user;
    size_t len = size * count;
    *s->buf = v4r_realloc(*s->buf, *s->n + len + 1);
    memcpy(*s->buf + *s->n, p, len);
    *s->n += len;
    (*s->buf)[*s->n] = 0;
    return len;
}

static void reply_free(reply *r)
{
    free(r->body);
    free(r->head);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/* One request on handle h (its connection reused when alive). body NULL: no body. headers: extra
 * request headers, NULL-terminated, or NULL. Returns the curl code. */
static CURLcode http_full(CURL *h, int port, const char *method, const char *path, const char *body, size_t body_n,
                          const char *const *headers, reply *r)
{
    reply_free(r);
    char *url = v4r_sprintf("http://127.0.0.1:%d%s", port, path);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    for (; headers && *headers; headers++)
        list = curl_slist_append(list, *headers);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)body_n);
    }
    sink sb = {&r->body, &r->n}, sh = {&r->head, &r->nh};
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_bytes);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sb);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_bytes);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &sh);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(list);
    free(url);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->body)
        r->json = json_loadb(r->body, r->n, 0, NULL);
    return rc;
}

static CURLcode http_get(CURL *h, int port, const char *path, reply *r)
{
    return http_full(h, port, "GET", path, NULL, 0, NULL, r);
}

static CURLcode http_post(CURL *h, int port, const char *body, reply *r)
{
    static const char *const json_type[] = {"Content-Type: application/json", NULL};
    return http_full(h, port, "POST", "/v1/recommend", body, strlen(body), json_type, r);
}

/* A response header's value (case-insensitive name) into out; 0 when absent. */
static int reply_header(const reply *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *line = r->head; line && *line;) {
        const char *end = strstr(line, "\r\n");
        if (!end)
            break;
        if (!strncasecmp(line, name, n) && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(end - v), v);
            return 1;
        }
        line = end + 2;
    }
    return 0;
}

/* The value of a metric line (exact name with labels) in a /metrics text; -1 when absent. */
static double metric_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (!strncmp(line, series, n) && line[n] == ' ')
            return atof(line + n + 1);
    return -1;
}

static double scrape(CURL *h, int port, const char *series)
{
    reply r = {0};
    assert_int_equal(http_get(h, port, "/metrics", &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    double v = metric_value(r.body, series);
    reply_free(&r);
    return v;
}

/* ---- raw sockets ---- */

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void raw_send(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return; /* the server closed: what it answered is still readable */
        p += k;
        n -= (size_t)k;
    }
}

/* Reads one HTTP response (headers, then Content-Length bytes of body) into a fresh string; the
 * status in *status (0 when the server closed without a complete response). */
static char *raw_response(int fd, int *status)
{
    size_t n = 0, cap = 4096, need = 0;
    char *buf = v4r_malloc(cap);
    *status = 0;
    for (;;) {
        buf[n] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end && !need) {
            const char *cl = strstr(buf, "\r\nContent-Length:"); /* as libmicrohttpd writes it */
            need = (size_t)(end + 4 - buf) + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
        }
        if (need && n >= need)
            break;
        if (n + 1024 >= cap)
            buf = v4r_realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    buf[n] = 0;
    if (need && n >= need && sscanf(buf, "HTTP/1.%*d %d", status) != 1)
        *status = 0;
    return buf;
}

/* The body of a raw response (after the blank line). */
static const char *raw_body(const char *response)
{
    const char *end = strstr(response, "\r\n\r\n");
    return end ? end + 4 : "";
}

static char *raw_post(const char *body, int keep_alive)
{
    return v4r_sprintf("POST /v1/recommend HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\n%s\r\n%s",
                       strlen(body), keep_alive ? "" : "Connection: close\r\n", body);
}

/* ---- JSON checks ---- */

/* Two lists [{"item","score"}] equal: the same ids in the same order, scores equal as float32. */
static int same_items(const json_t *got, const json_t *want)
{
    if (!json_is_array(got) || !json_is_array(want) || json_array_size(got) != json_array_size(want))
        return 0;
    for (size_t i = 0; i < json_array_size(got); i++) {
        const json_t *g = json_array_get(got, i), *w = json_array_get(want, i);
        const char *gi = json_string_value(json_object_get(g, "item")), *wi = json_string_value(json_object_get(w, "item"));
        if (!gi || !wi || strcmp(gi, wi))
            return 0;
        if ((float)json_number_value(json_object_get(g, "score")) != (float)json_number_value(json_object_get(w, "score")))
            return 0;
    }
    return 1;
}

/* The reply is status with an error body {"error":{"status","message"}} whose message holds needle. */
static void check_error(const reply *r, long status, const char *needle)
{
    if (r->status != status)
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body ? r->body : "");
    json_t *e = json_object_get(r->json, "error");
    assert_non_null(e);
    assert_int_equal(json_integer_value(json_object_get(e, "status")), status);
    const char *msg = json_string_value(json_object_get(e, "message"));
    assert_non_null(msg);
    if (needle && !strstr(msg, needle))
        fail_msg("status %ld: message '%s' does not name '%s'", status, msg, needle);
}

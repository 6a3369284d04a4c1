/* `vlm4rec serve`: the recommendation HTTP service over an index file; SIGHUP (or --watch) reloads
 * the index, SIGTERM/SIGINT drain and stop. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/serve.h"

static const char *serve_help =
    "usage: vlm4rec serve --index ITEMS.idx [options]\n"
    "\n"
    "Serves recommendations over HTTP/1.1 (JSON): POST /v1/recommend, GET /v1/items/ID/similar,\n"
    "GET /healthz, GET /metrics; live additions: POST /v1/items, DELETE /v1/items/ID, POST\n"
    "/v1/users/ID/events, logged in ITEMS.idx.log (docs/serving.md). SIGHUP reloads the index file\n"
    "(the old index serves until the new one is verified); SIGTERM or SIGINT stop accepting, answer\n"
    "every request already received, and exit 0.\n"
    "\n"
    "  --index FILE           the index (vlm4rec index build)\n"
    "  --host ADDR            bind address (default 127.0.0.1)\n"
    "  --port N               port (default 8080; 0 = any free port)\n"
    "  --port-file FILE       write the bound port to FILE (atomically) once listening\n"
    "  --threads N            threads each search's catalog scan is split over (default: the number\n"
    "                         of CPUs)\n"
    "  --workers N            searches running at once, each on its own --threads (default 1)\n"
    "  --max-batch N          most queries one search answers together (default 64; 1 = no batching)\n"
    "  --max-body BYTES       largest request body (default 65536)\n"
    "  --max-k N              largest k a request may ask (default 1000)\n"
    "  --rate R               API requests per second per client address (default 0 = no limit)\n"
    "  --burst B              requests a client may send at once above the rate (default max(1, R))\n"
    "  --token-file FILE      API routes need 'Authorization: Bearer TOKEN', TOKEN the file's first\n"
    "                         line (else the VLM4REC_TOKEN environment variable, when set)\n"
    "  --access-log FILE|-    one JSON line per request, appended to FILE (- = stderr)\n"
    "  --watch                reload when the index file changes (checked every second)\n"
    "  --timeout S            idle connection timeout in seconds (default 10)\n"
    "  --max-connections N    open connections at most (default 1000)\n"
    "  --nprobe N             an IVF index's lists probed when a request gives no \"nprobe\"\n"
    "                         (default: the index's own, chosen at build)\n"
    "  --encoder DIR          the model directory of the encoder the index names (index build\n"
    "                         --encoder; default: the path its meta records; the sha256 must match)\n"
    "  -q, --quiet            no log lines but warnings\n";

typedef struct {
    v4r_serve_opts o;
    const char *port_file, *token_file;
    int watch;
} serve_args;

static int positive(const char *opt, const char *val, size_t *out)
{
    int rc = v4r_opt_size("serve", opt, val, out);
    if (!rc && *out == 0)
        rc = v4r_cli_usage_error("serve", "--%s must be at least 1", opt);
    return rc;
}

static int non_negative(const char *opt, const char *val, double *out)
{
    int rc = v4r_opt_double("serve", opt, val, out);
    if (!rc && !(*out >= 0 && *out < 1e12))
        rc = v4r_cli_usage_error("serve", "--%s must be a non-negative number", opt);
    return rc;
}

static int parse_port(const char *val, int *port)
{
    size_t p;
    int rc = v4r_opt_size("serve", "port", val, &p);
    if (!rc && p > 65535)
        rc = v4r_cli_usage_error("serve", "--port must be 0..65535");
    *port = (int)p;
    return rc;
}

static int parse_timeout(const char *val, unsigned *out)
{
    size_t t;
    int rc = positive("timeout", val, &t);
    if (!rc && t > 86400)
        rc = v4r_cli_usage_error("serve", "--timeout must be 1..86400 seconds");
    *out = (unsigned)t;
    return rc;
}

static int parse_threads(const char *opt, const char *val, size_t *out)
{
    int rc = positive(opt, val, out);
    if (!rc && *out > 1024)
        rc = v4r_cli_usage_error("serve", "--%s must be 1..1024", opt);
    return rc;
}

static int parse_args(int argc, char **argv, serve_args *a)
{
    static const struct option opts[] = {
        {"index", required_argument, 0, 'i'},      {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},       {"port-file", required_argument, 0, 'P'},
        {"threads", required_argument, 0, 'j'},    {"max-batch", required_argument, 0, 'b'},
        {"max-body", required_argument, 0, 'B'},   {"max-k", required_argument, 0, 'k'},
        {"rate", required_argument, 0, 'r'},       {"burst", required_argument, 0, 'u'},
        {"token-file", required_argument, 0, 't'}, {"access-log", required_argument, 0, 'a'},
        {"watch", no_argument, 0, 'w'},            {"timeout", required_argument, 0, 'T'},
        {"max-connections", required_argument, 0, 'C'}, {"workers", required_argument, 0, 'W'},
        {"quiet", no_argument, 0, 'q'},            {"nprobe", required_argument, 0, 'N'},
        {"encoder", required_argument, 0, 'e'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    v4r_serve_defaults(&a->o);
    int c, rc = 0;
    v4r_opt_reset();
    while (!rc && (c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'i': a->o.index_path = optarg; break;
        case 'e': a->o.encoder_dir = optarg; break;
        case 'H': a->o.host = optarg; break;
        case 'p': rc = parse_port(optarg, &a->o.port); break;
        case 'P': a->port_file = optarg; break;
        case 'j': rc = parse_threads("threads", optarg, &a->o.threads); break;
        case 'W': rc = parse_threads("workers", optarg, &a->o.workers); break;
        case 'b': rc = positive("max-batch", optarg, &a->o.max_batch); break;
        case 'B': rc = positive("max-body", optarg, &a->o.max_body); break;
        case 'k': rc = positive("max-k", optarg, &a->o.max_k); break;
        case 'r': rc = non_negative("rate", optarg, &a->o.rate); break;
        case 'u': rc = non_negative("burst", optarg, &a->o.burst); break;
        case 't': a->token_file = optarg; break;
        case 'a': a->o.access_log = optarg; break;
        case 'w': a->watch = 1; break;
        case 'T': rc = parse_timeout(optarg, &a->o.timeout_s); break;
        case 'C': rc = positive("max-connections", optarg, &a->o.max_connections); break;
        case 'N': rc = positive("nprobe", optarg, &a->o.nprobe); break;
        case 'q': v4r_log_set_level(V4R_LOG_WARN); break;
        case 'h': fputs(serve_help, stdout); return -1;
        default: return v4r_cli_usage_error("serve", "bad option");
        }
    }
    if (rc)
        return rc;
    if (optind != argc)
        return v4r_cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (!a->o.index_path)
        return v4r_cli_usage_error("serve", "--index FILE is required");
    return 0;
}

/* The token: the first line of --token-file, else $VLM4REC_TOKEN; *token NULL when neither. */
static int read_token(const char *path, char **token, v4r_err *err)
{
    *token = NULL;
    if (!path) {
        const char *env = getenv("VLM4REC_TOKEN");
        *token = env && *env ? v4r_strdup(env) : NULL;
        return V4R_OK;
    }
    char *text = NULL;
    int rc = v4r_read_file(path, &text, NULL, err);
    if (rc)
        return rc;
    text[strcspn(text, "\r\n")] = 0;
    size_t n = strlen(text);
    while (n && (text[n - 1] == ' ' || text[n - 1] == '\t'))
        text[--n] = 0;
    if (!n) {
        free(text);
        return v4r_fail(err, V4R_EINPUT, "%s:1: the token file's first line is empty", path);
    }
    *token = text;
    return V4R_OK;
}

/* Until SIGTERM or SIGINT: SIGHUP reloads; with watch, the file is checked every second. */
static int wait_for_stop(v4r_server *s, const sigset_t *set, int watch)
{
    for (;;) {
        struct timespec second = {1, 0};
        int sig = sigtimedwait(set, NULL, &second);
        if (sig == SIGHUP)
            v4r_server_reload(s);
        else if (sig == SIGTERM || sig == SIGINT)
            return sig;
        else if (sig < 0 && errno == EAGAIN && watch)
            v4r_server_check_file(s);
    }
}

int v4r_cmd_serve(int argc, char **argv)
{
    serve_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (rc < 0)
        return 0; /* --help */
    if (rc)
        return rc;
    v4r_err err = {0};
    char *token = NULL;
    if (read_token(a.token_file, &token, &err) != V4R_OK)
        return v4r_cli_report(&err);
    a.o.token = token;
    /* block the signals before any thread starts, so only the wait below sees them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    v4r_server *s = NULL;
    rc = v4r_server_start(&a.o, &s, &err);
    free(token);
    if (rc)
        return v4r_cli_report(&err);
    int port = v4r_server_port(s);
    if (a.port_file && (rc = v4r_cli_write_port(a.port_file, port)) != 0) {
        v4r_server_drain_and_free(s);
        return rc;
    }
    int v6 = strchr(a.o.host, ':') != NULL;
    v4r_info("serve: listening on http://%s%s%s:%d", v6 ? "[" : "", a.o.host, v6 ? "]" : "", port);
    int sig = wait_for_stop(s, &set, a.watch);
    v4r_info("serve: %s: draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
    v4r_server_drain_and_free(s);
    v4r_info("serve: stopped");
    return 0;
}

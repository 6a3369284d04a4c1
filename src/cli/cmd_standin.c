/* `vlm4rec standin`: the stand-in chat-completions server (not a vision-language model). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/ground.h"

static const char *standin_help =
    "usage: vlm4rec standin [options]\n"
    "\n"
    "Runs a STAND-IN for a vision-language model server: an HTTP server speaking the\n"
    "OpenAI-compatible chat-completions API (POST /v1/chat/completions, GET /v1/models,\n"
    "GET /health) as llama.cpp's server, vLLM, Ollama and SGLang do, for tests, benchmarks and\n"
    "the offline demo. It is not a vision-language model: it decodes the uploaded image and\n"
    "writes a deterministic description from pixel statistics (colors, size and outline of the\n"
    "object, brightness, texture). Service time, a concurrency cap and faults can be set.\n"
    "Runs until SIGINT or SIGTERM, then prints how many requests it served.\n"
    "\n"
    "  --bind ADDR         address to listen on (default 127.0.0.1)\n"
    "  --port P            port (default 8080; 0: any free port)\n"
    "  --port-file FILE    write the port number to FILE (atomically) once listening\n"
    "  --latency S         service time of each request in seconds (default 0)\n"
    "  --cap N             at most N requests in service at once; others wait their turn\n"
    "  --cap-reject        with --cap: answer 429 at once instead of waiting\n"
    "  --fault KIND:RATE   inject a fault in a share RATE (0..1) of requests; KIND is 429, 500,\n"
    "                      400, malformed, empty, drip or drop; repeatable (rates add up to <= 1)\n"
    "  --fault-attempts N  faults only on the first N requests for each image (default 0: any)\n"
    "  --retry-after S     Retry-After of 429 answers, in seconds (default 1)\n"
    "  --drip S            how long a drip answer takes in all (default 30)\n"
    "  --seed N            seed of the fault draws (default 0)\n"
    "  --log FILE          append one line per request: time, image sha256, request number\n"
    "                      for that image, answer\n"
    "  --api-key KEY       require \"Authorization: Bearer KEY\" on chat requests (else 401)\n"
    "\n"
    "See docs/standin.md.\n";

typedef struct {
    v4r_standin_opts o;
    const char *port_file;
} standin_args;

static int parse_fault(const char *val, v4r_standin_opts *o)
{
    const char *colon = strrchr(val, ':');
    char kind[32];
    if (!colon || (size_t)(colon - val) >= sizeof kind)
        return v4r_cli_usage_error("standin", "--fault: '%s' is not KIND:RATE (e.g. 429:0.1)", val);
    memcpy(kind, val, (size_t)(colon - val));
    kind[colon - val] = 0;
    int f = v4r_fault_parse(kind);
    if (f < 0)
        return v4r_cli_usage_error("standin",
                                   "--fault: unknown fault '%s' in '%s' (429, 500, 400, malformed, empty, drip, drop)",
                                   kind, val);
    double rate;
    if (v4r_parse_f64(colon + 1, &rate) != 0 || !(rate >= 0 && rate <= 1))
        return v4r_cli_usage_error("standin", "--fault: rate in '%s' is not a number in [0, 1]", val);
    o->fault_rate[f] = rate;
    return 0;
}

static int nonneg(const char *opt, const char *val, double *out)
{
    int rc = v4r_opt_double("standin", opt, val, out);
    if (!rc && !(*out >= 0))
        return v4r_cli_usage_error("standin", "--%s: '%s' must not be negative", opt, val);
    return rc;
}

static int small_int(const char *opt, const char *val, int max, int *out)
{
    uint64_t v;
    int rc = v4r_opt_u64("standin", opt, val, &v);
    if (rc)
        return rc;
    if (v > (uint64_t)max)
        return v4r_cli_usage_error("standin", "--%s: '%s' is larger than %d", opt, val, max);
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, standin_args *a)
{
    static const struct option opts[] = {
        {"bind", required_argument, 0, 'b'},          {"port", required_argument, 0, 'p'},
        {"port-file", required_argument, 0, 'P'},     {"latency", required_argument, 0, 'l'},
        {"cap", required_argument, 0, 'c'},           {"cap-reject", no_argument, 0, 'C'},
        {"fault", required_argument, 0, 'f'},         {"fault-attempts", required_argument, 0, 'A'},
        {"retry-after", required_argument, 0, 'r'},   {"drip", required_argument, 0, 'd'},
        {"seed", required_argument, 0, 's'},          {"log", required_argument, 0, 'L'},
        {"api-key", required_argument, 0, 'k'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    v4r_standin_defaults(&a->o);
    a->o.port = 8080;
    v4r_opt_reset();
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': a->o.bind = optarg; break;
        case 'p': rc = small_int("port", optarg, 65535, &a->o.port); break;
        case 'P': a->port_file = optarg; break;
        case 'l': rc = nonneg("latency", optarg, &a->o.latency_s); break;
        case 'c': rc = small_int("cap", optarg, 1000000, &a->o.cap); break;
        case 'C': a->o.cap_reject = 1; break;
        case 'f': rc = parse_fault(optarg, &a->o); break;
        case 'A': rc = small_int("fault-attempts", optarg, 1000000000, &a->o.fault_attempts); break;
        case 'r': rc = nonneg("retry-after", optarg, &a->o.retry_after_s); break;
        case 'd': rc = nonneg("drip", optarg, &a->o.drip_s); break;
        case 's': rc = v4r_opt_u64("standin", "seed", optarg, &a->o.seed); break;
        case 'L': a->o.log_path = optarg; break;
        case 'k': a->o.api_key = optarg; break;
        case 'h': fputs(standin_help, stdout); return -1;
        default: return v4r_cli_usage_error("standin", "bad option");
        }
    }
    if (rc)
        return rc;
    if (optind != argc)
        return v4r_cli_usage_error("standin", "unexpected argument '%s'", argv[optind]);
    double total = 0;
    for (int f = 0; f < V4R_NFAULTS; f++)
        total += a->o.fault_rate[f];
    if (total > 1 + 1e-9)
        return v4r_cli_usage_error("standin", "--fault: the rates add up to %g, more than 1", total);
    if (a->o.cap_reject && !a->o.cap)
        return v4r_cli_usage_error("standin", "--cap-reject needs --cap N");
    return 0;
}

int v4r_cmd_standin(int argc, char **argv)
{
    standin_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (rc < 0)
        return 0; /* --help */
    if (rc)
        return rc;
    /* block the stop signals before the server starts its threads, so only sigwait sees them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    v4r_err err = {0};
    v4r_standin *s = NULL;
    rc = v4r_standin_start(&a.o, &s, &err);
    if (rc)
        return v4r_cli_report(&err);
    int port = v4r_standin_port(s);
    if (a.port_file && (rc = v4r_cli_write_port(a.port_file, port)) != 0) {
        v4r_standin_stop(s);
        return rc;
    }
    const char *bind = a.o.bind && *a.o.bind ? a.o.bind : "127.0.0.1";
    int v6 = strchr(bind, ':') != NULL;
    fprintf(stderr,
            "vlm4rec stand-in server (not a vision-language model: descriptions come from pixel statistics) "
            "listening on http://%s%s%s:%d/v1\n",
            v6 ? "[" : "", bind, v6 ? "]" : "", port);
    int sig = 0;
    sigwait(&set, &sig);
    uint64_t served = v4r_standin_requests(s);
    v4r_standin_stop(s);
    fprintf(stderr, "vlm4rec stand-in server: stopped by %s; %llu requests served\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", (unsigned long long)served);
    return 0;
}

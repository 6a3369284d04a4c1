/* `vlm4rec ground`: describe every item image with a vision-language model server (any
 * OpenAI-compatible chat-completions API) and store the descriptions in the semantic cache. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/ground.h"

static const char *ground_help =
    "usage: vlm4rec ground --dataset DIR --endpoint URL [--endpoint URL ...] --model NAME [options]\n"
    "\n"
    "Sends each item image with a prompt to POST URL/chat/completions (llama.cpp's server, vLLM,\n"
    "SGLang, Ollama; URL is the API base, e.g. http://127.0.0.1:8080/v1) and stores every answer in\n"
    "the semantic cache. Re-running the same command skips what is done; a killed run loses at most\n"
    "the requests in flight. Several processes may share one cache. See docs/grounding.md.\n"
    "\n"
    "  --dataset DIR        the dataset (items.tsv gives each item's title and image path or URL)\n"
    "  --endpoint URL       a server's API base; repeatable (requests go to the least busy)\n"
    "  --model NAME         the model name the server expects\n"
    "  --cache FILE         the semantic cache (default DIR/semantic-cache.sqlite)\n"
    "  --concurrency N      requests in flight per endpoint (default 4)\n"
    "  --api-key-env VAR    send the API key in environment variable VAR as a Bearer token\n"
    "  --prompt NAME        preset prompt: paper (default) or script (has the {title})\n"
    "  --prompt-file FILE   the prompt template from a file; {title} is replaced by the item's title\n"
    "  --max-tokens N       answer length limit (default 150)\n"
    "  --seed N             shuffle seed for --order random, also passed to the server\n"
    "  --order O            dataset (default), priority (0.7 x popularity + 0.3 x recency, both\n"
    "                       min-max normalized over the training split) or random\n"
    "  --items FILE         only these item ids (one a line), in this order\n"
    "  --limit N            only the first N items of the order\n"
    "  --shard I/N          only the items of shard I of N (1-based; by a hash of the item id)\n"
    "  --timeout S          per-request timeout in seconds (default 120)\n"
    "  --retries N          retries of timeouts, resets, 429 and 5xx (default 5)\n"
    "  --backoff S          first retry delay, doubled each time with jitter (default 1)\n"
    "  --backoff-max S      longest retry delay (default 60)\n"
    "  --max-side N         downscale images whose longer side exceeds N pixels before upload\n"
    "  --max-image-bytes N  images larger than N bytes fail (default 20000000)\n"
    "  --image-cache DIR    where downloaded http(s) images are kept (default CACHE.images)\n"
    "  --retry-failed       also retry items that failed permanently before\n"
    "  -q, --quiet          no progress or log lines\n"
    "\n"
    "Exit status 0 when every planned item was attempted (failures are recorded in the cache:\n"
    "see `vlm4rec cache stats`), 130 when interrupted (claims are released; run again to go on).\n";

#define MAX_ENDPOINTS 64

typedef struct {
    v4r_ground_opts o;
    v4r_endpoint ep[MAX_ENDPOINTS];
    size_t n_ep;
    size_t concurrency;
    const char *prompt_name, *prompt_file, *key_env;
    char *prompt_text, *cache_default;
} ground_args;

static int parse_order(const char *val, ground_args *a)
{
    if (!strcmp(val, "dataset"))
        a->o.order = V4R_ORDER_DATASET;
    else if (!strcmp(val, "priority"))
        a->o.order = V4R_ORDER_PRIORITY;
    else if (!strcmp(val, "random"))
        a->o.order = V4R_ORDER_RANDOM;
    else
        return v4r_cli_usage_error("ground", "--order must be dataset, priority or random, not '%s'", val);
    return 0;
}

static int parse_number(const char *opt, const char *val, ground_args *a)
{
    size_t v = 0;
    double d = 0;
    if (!strcmp(opt, "timeout") || !strcmp(opt, "backoff") || !strcmp(opt, "backoff-max")) {
        int rc = v4r_opt_double("ground", opt, val, &d);
        if (!rc && !(d > 0))
            rc = v4r_cli_usage_error("ground", "--%s must be positive", opt);
        if (!rc)
            *(opt[0] == 't' ? &a->o.timeout_s : !strcmp(opt, "backoff") ? &a->o.backoff_s : &a->o.backoff_max_s) = d;
        return rc;
    }
    int rc = v4r_opt_size("ground", opt, val, &v);
    if (rc)
        return rc;
    if (!strcmp(opt, "seed")) {
        a->o.has_seed = 1;
        a->o.seed = (int64_t)v;
        a->o.order_seed = v;
    } else if (!strcmp(opt, "limit")) {
        a->o.limit = v;
    } else if (!strcmp(opt, "max-image-bytes")) {
        a->o.max_image_bytes = v;
    } else if (v > 1000000) {
        return v4r_cli_usage_error("ground", "--%s: %s is too large", opt, val);
    } else if (!strcmp(opt, "concurrency")) {
        a->concurrency = v;
    } else if (!strcmp(opt, "max-tokens")) {
        a->o.max_tokens = (int)v;
    } else if (!strcmp(opt, "retries")) {
        a->o.retries = (int)v;
    } else if (!strcmp(opt, "max-side")) {
        a->o.max_side = (int)v;
    }
    return 0;
}

static int parse_args(int argc, char **argv, ground_args *a)
{
    static const struct option opts[] = {
        {"dataset", required_argument, 0, 'd'},   {"endpoint", required_argument, 0, 'e'},
        {"model", required_argument, 0, 'm'},     {"cache", required_argument, 0, 'c'},
        {"api-key-env", required_argument, 0, 'K'}, {"prompt", required_argument, 0, 'p'},
        {"prompt-file", required_argument, 0, 'P'}, {"order", required_argument, 0, 'O'},
        {"items", required_argument, 0, 'I'},     {"shard", required_argument, 0, 'S'},
        {"image-cache", required_argument, 0, 'C'}, {"retry-failed", no_argument, 0, 'R'},
        {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
        {"concurrency", required_argument, 0, 'n'}, {"max-tokens", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 'n'},      {"limit", required_argument, 0, 'n'},
        {"timeout", required_argument, 0, 'n'},   {"retries", required_argument, 0, 'n'},
        {"backoff", required_argument, 0, 'n'},   {"backoff-max", required_argument, 0, 'n'},
        {"max-side", required_argument, 0, 'n'},  {"max-image-bytes", required_argument, 0, 'n'},
        {0, 0, 0, 0}};
    int c, idx = 0, rc = 0;
    v4r_ground_defaults(&a->o);
    a->concurrency = 4;
    v4r_opt_reset();
    while (!rc && (c = getopt_long(argc, argv, "qh", opts, &idx)) != -1) {
        switch (c) {
        case 'd': a->o.dataset_dir = optarg; break;
        case 'e':
            if (a->n_ep == MAX_ENDPOINTS)
                return v4r_cli_usage_error("ground", "at most %d endpoints", MAX_ENDPOINTS);
            a->ep[a->n_ep++].url = optarg;
            break;
        case 'm': a->o.model = optarg; break;
        case 'c': a->o.cache_path = optarg; break;
        case 'K': a->key_env = optarg; break;
        case 'p': a->prompt_name = optarg; break;
        case 'P': a->prompt_file = optarg; break;
        case 'O': rc = parse_order(optarg, a); break;
        case 'I': a->o.items_path = optarg; break;
        case 'S': rc = v4r_cli_parse_shard("ground", optarg, INT_MAX, &a->o.shard_index, &a->o.shard_count); break;
        case 'C': a->o.image_cache_dir = optarg; break;
        case 'R': a->o.retry_failed = 1; break;
        case 'q': v4r_log_set_level(V4R_LOG_WARN); break;
        case 'n': rc = parse_number(opts[idx].name, optarg, a); break;
        case 'h': fputs(ground_help, stdout); return -1;
        default: return v4r_cli_usage_error("ground", "bad option");
        }
    }
    if (rc)
        return rc;
    if (optind != argc)
        return v4r_cli_usage_error("ground", "unexpected argument '%s'", argv[optind]);
    if (!a->o.dataset_dir)
        return v4r_cli_usage_error("ground", "--dataset is required");
    if (!a->n_ep)
        return v4r_cli_usage_error("ground", "at least one --endpoint is required");
    if (!a->o.model)
        return v4r_cli_usage_error("ground", "--model is required");
    if (!a->concurrency)
        return v4r_cli_usage_error("ground", "--concurrency must be at least 1");
    if (a->prompt_name && a->prompt_file)
        return v4r_cli_usage_error("ground", "give --prompt or --prompt-file, not both");
    return 0;
}

static int load_prompt(ground_args *a)
{
    if (a->prompt_file) {
        v4r_err err = {0};
        size_t n = 0;
        if (v4r_read_file(a->prompt_file, &a->prompt_text, &n, &err))
            return v4r_cli_report(&err);
        while (n && (a->prompt_text[n - 1] == '\n' || a->prompt_text[n - 1] == '\r'))
            a->prompt_text[--n] = 0;
        if (!n) {
            err.code = V4R_EINPUT;
            snprintf(err.msg, sizeof err.msg, "%s: the prompt file is empty", a->prompt_file);
            return v4r_cli_report(&err);
        }
        a->o.prompt = a->prompt_text;
        return 0;
    }
    const char *name = a->prompt_name ? a->prompt_name : "paper";
    a->o.prompt = v4r_prompt_preset(name);
    if (!a->o.prompt)
        return v4r_cli_usage_error("ground", "--prompt must be paper or script, not '%s'", name);
    return 0;
}

static void print_summary(const ground_args *a, const v4r_ground_summary *s)
{
    printf("ground: %zu described, %zu failed; skipped %zu already done, %zu failed before, %zu held by another "
           "process\n",
           s->done, s->failed, s->skipped_done, s->skipped_failed, s->skipped_busy);
    printf("ground: %zu requests (%zu retries) in %.1f s (%.2f items/s); client CPU %.2f ms per request\n",
           s->requests, s->retries, s->seconds, s->seconds > 0 ? (s->done + s->failed) / s->seconds : 0.0,
           s->requests ? 1000.0 * s->cpu_seconds / s->requests : 0.0);
    printf("ground: cache %s%s\n", a->o.cache_path, s->interrupted ? " (interrupted: run again to go on)" : "");
}

int v4r_cmd_ground(int argc, char **argv)
{
    ground_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    rc = load_prompt(&a);
    if (!rc && a.key_env) {
        a.o.api_key = getenv(a.key_env);
        if (!a.o.api_key || !*a.o.api_key)
            rc = v4r_cli_usage_error("ground", "--api-key-env: the variable %s is not set", a.key_env);
    }
    if (!rc) {
        for (size_t k = 0; k < a.n_ep; k++)
            a.ep[k].concurrency = (int)a.concurrency;
        a.o.endpoints = a.ep;
        a.o.n_endpoints = a.n_ep;
        if (!a.o.cache_path)
            a.o.cache_path = a.cache_default = v4r_path_join(a.o.dataset_dir, "semantic-cache.sqlite");
        v4r_ground_summary s;
        v4r_err err = {0};
        rc = v4r_ground_run(&a.o, &s, &err);
        if (rc)
            rc = v4r_cli_report(&err);
        else {
            print_summary(&a, &s);
            rc = s.interrupted ? 130 : 0;
        }
    }
    free(a.prompt_text);
    free(a.cache_default);
    return rc;
}

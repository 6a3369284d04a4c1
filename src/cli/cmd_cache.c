/* `vlm4rec cache`: stats, export, import and merge of the semantic cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/data.h"
#include "vlm4rec/ground.h"

static const char *cache_help =
    "usage: vlm4rec cache stats CACHE [--model M] [--prompt-hash H] [--json]\n"
    "       vlm4rec cache export CACHE -o OUT.jsonl [--covered OUT.txt] [--dataset DIR] [--model M]\n"
    "                            [--prompt-hash H]\n"
    "       vlm4rec cache import CACHE FILE --model M (--prompt-hash H | --prompt TEXT |\n"
    "                            --prompt-preset paper|script | --prompt-file F) [--dataset DIR] [--replace]\n"
    "       vlm4rec cache merge OUT SRC...\n"
    "\n"
    "The semantic cache is the SQLite file of item-image descriptions that 'vlm4rec ground' writes\n"
    "(one row per item, image, prompt and model; see docs/cache.md).\n"
    "\n"
    "stats    rows by status (done; failed permanent or transient; running with a live or a stale\n"
    "         claim), counts per model and prompt, attempts, latency mean/p50/p95, tokens, the most\n"
    "         common errors\n"
    "  --json             JSON instead of text\n"
    "export   one JSON object a line per described item: item, description, model, prompt_hash,\n"
    "         image_hash, latency_s, prompt_tokens, completion_tokens, updated, attempts; an item\n"
    "         described several times gives its most recent description\n"
    "  -o, --output FILE  the JSONL (written atomically)\n"
    "  --covered FILE     also the described item ids, one a line (for 'eval --covered')\n"
    "  --dataset DIR      only the dataset's items, in its item order (others are counted and skipped)\n"
    "import   descriptions made elsewhere, stored as done rows in one transaction (all or nothing):\n"
    "         a JSON object {\"ID\": \"text\", ...}, JSONL ({\"item\"|\"id\": ..., \"description\"|\"text\": ...}\n"
    "         a line) or TSV (item<TAB>description a line, optional header), told apart by content\n"
    "  --model M          the model that wrote them (required)\n"
    "  --prompt-hash H    the sha256 (64 hex digits) of the prompt template they were made with, or\n"
    "  --prompt TEXT      the template itself (its hash is computed and the text stored), or\n"
    "  --prompt-preset P  a preset template: paper or script, or\n"
    "  --prompt-file F    the template in a file (trailing newlines dropped)\n"
    "  --dataset DIR      check the ids against the dataset and hash each item's image file\n"
    "  --replace          overwrite items already described under the same key (default: keep them)\n"
    "merge    folds every SRC into OUT (created when missing), in one transaction: per key, done beats\n"
    "         failed beats running, the earlier of two done rows is kept, attempts add up; prompts are\n"
    "         copied\n"
    "\n"
    "Filters (stats, export): --model M keeps one model; --prompt-hash H a prompt (6 to 64 hex digits\n"
    "of its hash). -q, --quiet: no log lines.\n";

typedef struct {
    const char *model, *prompt_hash, *prompt, *preset, *prompt_file, *output, *covered, *dataset;
    int json, replace;
    char **pos;
    int n_pos;
} cache_args;

static int parse_args(int argc, char **argv, const char *sub, cache_args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"prompt-hash", required_argument, 0, 'H'},
        {"prompt", required_argument, 0, 'p'},    {"prompt-preset", required_argument, 0, 'P'},
        {"prompt-file", required_argument, 0, 'F'}, {"output", required_argument, 0, 'o'},
        {"covered", required_argument, 0, 'c'},   {"dataset", required_argument, 0, 'd'},
        {"json", no_argument, 0, 'j'},            {"replace", no_argument, 0, 'r'},
        {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    char cmd[32];
    snprintf(cmd, sizeof cmd, "cache %s", sub);
    int c;
    v4r_opt_reset();
    while ((c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'H': a->prompt_hash = optarg; break;
        case 'p': a->prompt = optarg; break;
        case 'P': a->preset = optarg; break;
        case 'F': a->prompt_file = optarg; break;
        case 'o': a->output = optarg; break;
        case 'c': a->covered = optarg; break;
        case 'd': a->dataset = optarg; break;
        case 'j': a->json = 1; break;
        case 'r': a->replace = 1; break;
        case 'q': v4r_log_set_level(V4R_LOG_WARN); break;
        case 'h': fputs(cache_help, stdout); return -1;
        default: return v4r_cli_usage_error(cmd, "bad option");
        }
    }
    a->pos = argv + optind;
    a->n_pos = argc - optind;
    /* options a subcommand does not take */
    int st = !strcmp(sub, "stats"), ex = !strcmp(sub, "export"), im = !strcmp(sub, "import"),
        me = !strcmp(sub, "merge");
    const char *bad = NULL;
    if (!st && a->json)
        bad = "--json";
    else if (!ex && (a->output || a->covered))
        bad = a->output ? "-o" : "--covered";
    else if (!im && (a->prompt || a->preset || a->prompt_file || a->replace))
        bad = a->prompt ? "--prompt" : a->preset ? "--prompt-preset" : a->prompt_file ? "--prompt-file" : "--replace";
    else if ((st || me) && a->dataset)
        bad = "--dataset";
    else if (me && (a->model || a->prompt_hash))
        bad = a->model ? "--model" : "--prompt-hash";
    if (bad)
        return v4r_cli_usage_error(cmd, "%s does not apply to 'cache %s'", bad, sub);
    return 0;
}

static int check_filter(const char *cmd, const cache_args *a)
{
    const char *h = a->prompt_hash;
    if (h && (strlen(h) < 6 || strlen(h) > 64 || strspn(h, "0123456789abcdefABCDEF") != strlen(h)))
        return v4r_cli_usage_error(cmd, "--prompt-hash '%s': give 6 to 64 hex digits of the prompt's sha256", h);
    return 0;
}

static int cmd_stats(const cache_args *a)
{
    if (a->n_pos != 1)
        return v4r_cli_usage_error("cache stats", "expected one CACHE file, got %d arguments", a->n_pos);
    int rc = check_filter("cache stats", a);
    if (rc)
        return rc;
    v4r_err err = {0};
    v4r_cache *c = NULL;
    v4r_cache_filter f = {a->model, a->prompt_hash};
    rc = v4r_cache_open_readonly(a->pos[0], &c, &err);
    if (!rc)
        rc = v4r_cache_stats(c, &f, a->json, stdout, &err);
    v4r_cache_close(c);
    return rc ? v4r_cli_report(&err) : 0;
}

static int cmd_export(const cache_args *a)
{
    if (a->n_pos != 1)
        return v4r_cli_usage_error("cache export", "expected one CACHE file, got %d arguments", a->n_pos);
    if (!a->output)
        return v4r_cli_usage_error("cache export", "-o OUT.jsonl is required");
    int rc = check_filter("cache export", a);
    if (rc)
        return rc;
    v4r_err err = {0};
    v4r_cache *c = NULL;
    v4r_dataset ds;
    int have_ds = 0;
    v4r_cache_filter f = {a->model, a->prompt_hash};
    if (a->dataset) {
        rc = v4r_dataset_load(a->dataset, &ds, &err);
        have_ds = !rc;
    }
    if (!rc)
        rc = v4r_cache_open_readonly(a->pos[0], &c, &err);
    size_t n = 0;
    if (!rc)
        rc = v4r_cache_export(c, &f, have_ds ? &ds : NULL, a->output, a->covered, &n, &err);
    if (!rc)
        v4r_info("exported %zu descriptions to %s%s%s", n, a->output, a->covered ? " and their ids to " : "",
                 a->covered ? a->covered : "");
    v4r_cache_close(c);
    if (have_ds)
        v4r_dataset_free(&ds);
    return rc ? v4r_cli_report(&err) : 0;
}

static int same_file(const char *x, const char *y)
{
    struct stat a, b;
    return stat(x, &a) == 0 && stat(y, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void remove_cache_files(const char *path)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        char *p = v4r_sprintf("%s%s", path, suffix[i]);
        unlink(p);
        free(p);
    }
}

/* The prompt template of the import options (NULL when given by hash); *text is allocated. */
static int import_prompt(const cache_args *a, char **text, char hash[65], v4r_err *err)
{
    *text = NULL;
    if (a->prompt_hash) {
        snprintf(hash, 65, "%s", a->prompt_hash);
        return 0;
    }
    if (a->prompt)
        *text = v4r_strdup(a->prompt);
    else if (a->preset)
        *text = v4r_strdup(v4r_prompt_preset(a->preset));
    else {
        size_t n = 0;
        int rc = v4r_read_file(a->prompt_file, text, &n, err);
        if (rc)
            return rc;
        if (strlen(*text) != n) {
            free(*text);
            *text = NULL;
            return v4r_fail(err, V4R_EINPUT, "%s: a NUL byte in the prompt", a->prompt_file);
        }
        while (n > 0 && ((*text)[n - 1] == '\n' || (*text)[n - 1] == '\r'))
            (*text)[--n] = 0;
        if (n == 0) {
            free(*text);
            *text = NULL;
            return v4r_fail(err, V4R_EINPUT, "%s: an empty prompt", a->prompt_file);
        }
    }
    v4r_sha256_hex(*text, strlen(*text), hash);
    return 0;
}

static int cmd_import(const cache_args *a)
{
    const char *cmd = "cache import";
    if (a->n_pos != 2)
        return v4r_cli_usage_error(cmd, "expected CACHE and FILE, got %d arguments", a->n_pos);
    if (!a->model || !*a->model)
        return v4r_cli_usage_error(cmd, "--model is required");
    int given = !!a->prompt_hash + !!a->prompt + !!a->preset + !!a->prompt_file;
    if (given != 1)
        return v4r_cli_usage_error(cmd, "give exactly one of --prompt-hash, --prompt, --prompt-preset, --prompt-file");
    if (a->preset && !v4r_prompt_preset(a->preset))
        return v4r_cli_usage_error(cmd, "--prompt-preset must be paper or script, not '%s'", a->preset);
    if (a->prompt && !*a->prompt)
        return v4r_cli_usage_error(cmd, "--prompt is empty");
    const char *h = a->prompt_hash;
    if (h && (strlen(h) != 64 || strspn(h, "0123456789abcdefABCDEF") != 64))
        return v4r_cli_usage_error(cmd, "--prompt-hash '%s': give the 64 hex digits of the prompt's sha256", h);
    v4r_err err = {0};
    char hash[65], *text = NULL;
    v4r_dataset ds;
    int have_ds = 0, rc = import_prompt(a, &text, hash, &err);
    if (!rc && a->dataset) {
        rc = v4r_dataset_load(a->dataset, &ds, &err);
        have_ds = !rc;
    }
    v4r_cache *c = NULL;
    struct stat sb;
    int created = stat(a->pos[0], &sb) != 0;
    if (!rc)
        rc = v4r_cache_open(a->pos[0], &c, &err);
    if (!rc)
        rc = v4r_cache_begin(c, &err);
    if (!rc && text)
        rc = v4r_cache_put_prompt(c, hash, text, &err);
    size_t n = 0;
    v4r_cache_import_opts o = {a->model, hash, have_ds ? &ds : NULL, a->replace};
    if (!rc)
        rc = v4r_cache_import(c, a->pos[1], &o, &n, &err);
    if (!rc)
        rc = v4r_cache_commit(c, &err);
    if (!rc)
        v4r_info("imported %zu descriptions into %s (model %s, prompt %.12s)", n, a->pos[0], a->model, hash);
    v4r_cache_close(c); /* without the commit: rolled back */
    if (rc && created)
        remove_cache_files(a->pos[0]);
    if (have_ds)
        v4r_dataset_free(&ds);
    free(text);
    return rc ? v4r_cli_report(&err) : 0;
}

static int cmd_merge(const cache_args *a)
{
    if (a->n_pos < 2)
        return v4r_cli_usage_error("cache merge", "expected OUT and at least one SRC");
    const char *out = a->pos[0];
    for (int i = 1; i < a->n_pos; i++)
        if (same_file(out, a->pos[i]))
            return v4r_cli_usage_error("cache merge", "SRC '%s' is OUT itself", a->pos[i]);
    struct stat sb;
    int created = stat(out, &sb) != 0;
    v4r_err err = {0};
    v4r_cache *c = NULL;
    int rc = v4r_cache_open(out, &c, &err);
    if (!rc)
        rc = v4r_cache_begin(c, &err);
    for (int i = 1; i < a->n_pos && !rc; i++) {
        size_t n_new = 0, n_upd = 0;
        rc = v4r_cache_merge(c, a->pos[i], &n_new, &n_upd, &err);
        if (!rc)
            v4r_info("%s: %zu new rows, %zu updated", a->pos[i], n_new, n_upd);
    }
    if (!rc)
        rc = v4r_cache_commit(c, &err);
    v4r_cache_close(c);
    if (rc && created)
        remove_cache_files(out);
    return rc ? v4r_cli_report(&err) : 0;
}

int v4r_cmd_cache(int argc, char **argv)
{
    if (argc < 2)
        return v4r_cli_usage_error("cache", "a subcommand is required: stats, export, import or merge");
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(cache_help, stdout);
        return 0;
    }
    int (*run)(const cache_args *) = !strcmp(sub, "stats")    ? cmd_stats
                                     : !strcmp(sub, "export") ? cmd_export
                                     : !strcmp(sub, "import") ? cmd_import
                                     : !strcmp(sub, "merge")  ? cmd_merge
                                                              : NULL;
    if (!run)
        return v4r_cli_usage_error("cache", "unknown subcommand '%s' (stats, export, import or merge)", sub);
    cache_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc - 1, argv + 1, sub, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    return run(&a);
}

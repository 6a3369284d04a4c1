/* `vlm4rec index build|info|compact`: the serving index of a dataset's item vectors, its facts,
 * and the folding of its live-additions log into a new index file. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/index.h"
#include "vlm4rec/kernels.h"
#include "vlm4rec/rec.h"
#include "vlm4rec/text.h"

static const char *build_help =
    "usage: vlm4rec index build --dataset DIR --vectors SPEC -o ITEMS.idx [options]\n"
    "\n"
    "Writes the serving index (docs/serving.md): the item ids, the L2-normalized item vectors, the\n"
    "last items of every user, and the build facts, in one checksummed file read by mmap.\n"
    "  --dataset DIR          the dataset directory\n"
    "  --vectors SPEC         one row per item: PATH.npy, concat:A.npy,B.npy, mean:A.npy,B.npy or\n"
    "                         mean-pad:A.npy,B.npy, as in eval (a relative PATH that does not exist is\n"
    "                         looked up in the dataset directory)\n"
    "  -o, --output FILE      the index file (written atomically)\n"
    "  --dtype T              float32 (default), float16 or int8 (per-row scale)\n"
    "  --keep N               last items kept per user (default 10; 0 = the whole history)\n"
    "  --profile-length N     a profile is the mean of the last N history items (default 10; 0 = all)\n"
    "  --history-splits LIST  the splits that make users' histories (default train,valid,test)\n"
    "  --label S              the index version label (default <dtype>-<first 12 hex of the checksum>)\n"
    "  --check-users N        known users sampled to measure float16/int8 recall against float32\n"
    "                         (default 2000; 0 = skip)\n"
    "  --check-k K            the K of that recall (default 10)\n"
    "  --seed S               the sample's seed (default 0)\n"
    "  --threads N            worker threads of the recall check (default: all cores)\n"
    "  --ivf                  also write an IVF section (approximate search for large catalogs):\n"
    "                         spherical k-means lists, searched by probing the nearest lists\n"
    "  --nlist N              IVF lists (default 4 sqrt(items), rounded)\n"
    "  --nprobe N             the default lists probed (default: the smallest of 1, 2, 4, ... whose\n"
    "                         Recall@K against exact search reaches --ivf-recall on the check)\n"
    "  --ivf-recall R         that recall target (default 0.98)\n"
    "  --train-per-list N     k-means sample: at most N vectors per list (default 64)\n"
    "  --iterations N         k-means iterations (default 10)\n"
    "  --encoder MODEL        the text encoder that made the vectors (a model directory or hub id, as\n"
    "                         encode --model): recorded in the meta (id, path, sha256, pooling), so\n"
    "                         the service can encode the text of items added live\n"
    "  --text-template T      the --text-template encode used (recorded with the encoder)\n"
    "  --precision P          the --precision encode used: fp32 (default), bf16 or fp16 (recorded with\n"
    "                         the encoder; the service encodes live items in it)\n"
    "  --offline              resolve --encoder from the model cache only\n"
    "  -q, --quiet            no progress lines\n";

static const char *info_help =
    "usage: vlm4rec index info ITEMS.idx [--verify] [--json]\n"
    "\n"
    "Prints the index's header facts and build facts (meta). --verify also checks the checksum of\n"
    "the whole file; --json prints one JSON object.\n";

static const char *compact_help =
    "usage: vlm4rec index compact ITEMS.idx [-o OUT]\n"
    "\n"
    "Folds the live-additions log ITEMS.idx.log (items added and deleted, users' events, as the\n"
    "service logged them) into a new index file, written atomically. Without -o the index is\n"
    "replaced and the log emptied (kept as ITEMS.idx.log.old); a running service picks the new\n"
    "file up on SIGHUP or --watch. With -o the index and its log stay as they are.\n";

static const char *index_help =
    "usage: vlm4rec index <build|info|compact> [options]\n"
    "Run 'vlm4rec index <sub> --help' for details.\n";

static int parse_splits(const char *val, unsigned *out)
{
    char *s = v4r_strdup(val);
    int rc = 0;
    *out = 0;
    for (char *save = NULL, *tok = strtok_r(s, ",+", &save); tok && !rc; tok = strtok_r(NULL, ",+", &save)) {
        int sp = v4r_split_parse(tok);
        if (sp < 0)
            rc = v4r_cli_usage_error("index build", "--history-splits: '%s' is not train, valid or test", tok);
        else
            *out |= 1u << sp;
    }
    if (!rc && !*out)
        rc = v4r_cli_usage_error("index build", "--history-splits: no split given");
    free(s);
    return rc;
}

static int positive_size(const char *cmd, const char *opt, const char *val, size_t *out)
{
    int rc = v4r_opt_size(cmd, opt, val, out);
    if (!rc && *out == 0)
        rc = v4r_cli_usage_error(cmd, "--%s must be at least 1", opt);
    return rc;
}

static int parse_target(const char *cmd, const char *val, double *out)
{
    char *end;
    *out = strtod(val, &end);
    if (end == val || *end || !(*out > 0 && *out <= 1))
        return v4r_cli_usage_error(cmd, "--ivf-recall must be a number in (0, 1], not '%s'", val);
    return 0;
}

typedef struct {
    const char *dataset, *vectors, *output, *encoder, *text_template;
    int offline, precision; /* precision: V4R_PREC_* the vectors were encoded in, -1 when not given */
    v4r_index_build_opts o;
} build_args;

static int parse_build(int argc, char **argv, build_args *a)
{
    static const struct option opts[] = {
        {"dataset", required_argument, 0, 'd'},     {"vectors", required_argument, 0, 'v'},
        {"output", required_argument, 0, 'o'},      {"dtype", required_argument, 0, 't'},
        {"keep", required_argument, 0, 'K'},        {"profile-length", required_argument, 0, 'L'},
        {"history-splits", required_argument, 0, 'H'}, {"label", required_argument, 0, 'l'},
        {"check-users", required_argument, 0, 'c'}, {"check-k", required_argument, 0, 'k'},
        {"seed", required_argument, 0, 's'},        {"threads", required_argument, 0, 'j'},
        {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
        {"ivf", no_argument, 0, 'I'},               {"nlist", required_argument, 0, 'n'},
        {"nprobe", required_argument, 0, 'N'},      {"ivf-recall", required_argument, 0, 'R'},
        {"train-per-list", required_argument, 0, 'T'}, {"iterations", required_argument, 0, 'i'},
        {"encoder", required_argument, 0, 'e'},     {"text-template", required_argument, 0, 'X'},
        {"offline", no_argument, 0, 'F'},           {"precision", required_argument, 0, 'P'},
        {0, 0, 0, 0}};
    const char *cmd = "index build";
    v4r_index_build_defaults(&a->o);
    a->precision = -1;
    int c, rc = 0, t;
    v4r_opt_reset();
    while (!rc && (c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'd': a->dataset = optarg; break;
        case 'v': a->vectors = optarg; break;
        case 'o': a->output = optarg; break;
        case 't':
            if ((t = v4r_index_dtype_parse(optarg)) < 0)
                rc = v4r_cli_usage_error(cmd, "--dtype must be float32, float16 or int8, not '%s'", optarg);
            else
                a->o.dtype = (v4r_index_dtype)t;
            break;
        case 'K': rc = v4r_opt_size(cmd, "keep", optarg, &a->o.keep); break;
        case 'L': rc = v4r_opt_size(cmd, "profile-length", optarg, &a->o.profile_length); break;
        case 'H': rc = parse_splits(optarg, &a->o.history_splits); break;
        case 'l': a->o.label = optarg; break;
        case 'c': rc = v4r_opt_size(cmd, "check-users", optarg, &a->o.check_users); break;
        case 'k': rc = v4r_opt_size(cmd, "check-k", optarg, &a->o.check_k); break;
        case 's': rc = v4r_opt_u64(cmd, "seed", optarg, &a->o.seed); break;
        case 'j': rc = v4r_opt_threads(cmd, optarg); break;
        case 'I': a->o.ivf = 1; break;
        case 'n': rc = positive_size(cmd, "nlist", optarg, &a->o.nlist); break;
        case 'N': rc = positive_size(cmd, "nprobe", optarg, &a->o.nprobe); break;
        case 'R': rc = parse_target(cmd, optarg, &a->o.ivf_target); break;
        case 'T': rc = positive_size(cmd, "train-per-list", optarg, &a->o.train_per_list); break;
        case 'i': rc = positive_size(cmd, "iterations", optarg, &a->o.iterations); break;
        case 'e': a->encoder = optarg; break;
        case 'X': a->text_template = optarg; break;
        case 'F': a->offline = 1; break;
        case 'P':
            if ((a->precision = v4r_precision_by_name(optarg)) < 0)
                rc = v4r_cli_usage_error(cmd, "--precision must be fp32, bf16 or fp16, not '%s'", optarg);
            break;
        case 'q': v4r_log_set_level(V4R_LOG_WARN); break;
        case 'h': fputs(build_help, stdout); return -1;
        default: return v4r_cli_usage_error(cmd, "bad option");
        }
    }
    if (!rc && optind != argc)
        rc = v4r_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!rc && (!a->dataset || !a->vectors || !a->output))
        rc = v4r_cli_usage_error(cmd, "--dataset, --vectors and -o are required");
    if (!rc && a->text_template && !a->encoder)
        rc = v4r_cli_usage_error(cmd, "--text-template needs --encoder");
    if (!rc && a->precision >= 0 && !a->encoder)
        rc = v4r_cli_usage_error(cmd, "--precision needs --encoder");
    int uses_title;
    if (!rc && a->text_template)
        rc = v4r_cli_check_text_template(cmd, a->text_template, &uses_title);
    if (!rc && !a->o.ivf && (a->o.nlist || a->o.nprobe))
        rc = v4r_cli_usage_error(cmd, "--nlist and --nprobe need --ivf");
    if (!rc && a->o.label && (!a->o.label[0] || strlen(a->o.label) > 127))
        rc = v4r_cli_usage_error(cmd, "--label must have 1 to 127 bytes");
    return rc;
}

static void print_build(const build_args *a, const v4r_index_build_report *r)
{
    printf("index: %s\n", a->output);
    printf("version: %s\n", r->version);
    printf("items: %zu x %zu (%s)\n", r->n_items, r->dim, v4r_index_dtype_name(a->o.dtype));
    printf("users: %zu (%zu history entries, last %zu kept%s)\n", r->n_users, r->n_history, a->o.keep,
           a->o.keep ? "" : ": all");
    printf("bytes: %llu\n", (unsigned long long)r->file_bytes);
    if (a->o.dtype == V4R_INDEX_F32)
        printf("recall vs float32: 1 (float32 itself)\n");
    else if (r->recall_vs_f32 < 0)
        printf("recall vs float32: not measured\n");
    else
        printf("recall@%zu vs float32: %.4f over %zu users\n", a->o.check_k, r->recall_vs_f32, r->recall_users);
    if (r->nlist && r->ivf_recall_vs_exact >= 0)
        printf("ivf: %zu lists, nprobe %zu: recall@%zu %.4f vs exact, %.4f vs float32 over %zu queries (%.1f s)\n",
               r->nlist, r->nprobe, a->o.check_k, r->ivf_recall_vs_exact, r->ivf_recall_vs_f32, r->ivf_queries,
               r->ivf_seconds);
    else if (r->nlist)
        printf("ivf: %zu lists, nprobe %zu (recall not measured) (%.1f s)\n", r->nlist, r->nprobe, r->ivf_seconds);
    printf("sha256: %s\n", r->checksum);
}

static const char *pooling_name(int pooling)
{
    return pooling == V4R_POOL_CLS ? "cls" : pooling == V4R_POOL_MAX ? "max" : "mean";
}

/* The encoder's identity as the meta records it (a JSON text, caller frees); its dimension must
 * be the vectors'. */
static int encoder_identity(const build_args *a, size_t dim, char **out, v4r_err *err)
{
    char *dir = NULL, abs[PATH_MAX], fingerprint[65], weights[65] = "";
    v4r_encoder *enc = NULL;
    int rc = v4r_cli_resolve_model(a->encoder, a->offline, &dir, err);
    if (!rc)
        rc = v4r_encoder_load(dir, &enc, err);
    if (!rc && v4r_encoder_dim(enc) != dim)
        rc = v4r_fail(err, V4R_EINPUT, "--encoder %s: its vectors have %zu dimensions, the vectors given %zu", a->encoder,
                      v4r_encoder_dim(enc), dim);
    if (!rc)
        rc = v4r_model_fingerprint(dir, fingerprint, err);
    if (!rc) {
        char *st = v4r_path_join(dir, "model.safetensors");
        v4r_err ignored = {0};
        if (v4r_file_exists(st) && v4r_sha256_file(st, weights, &ignored))
            weights[0] = 0;
        free(st);
        json_t *e = json_pack("{s:s,s:s,s:s,s:s?,s:s,s:b,s:I,s:I,s:s?,s:s}", "model", a->encoder, "path",
                              realpath(dir, abs) ? abs : dir, "sha256", fingerprint, "weights_sha256",
                              weights[0] ? weights : NULL, "pooling", pooling_name(v4r_encoder_pooling(enc)),
                              "normalize", v4r_encoder_normalizes(enc), "dim", (json_int_t)v4r_encoder_dim(enc),
                              "max_seq_length", (json_int_t)v4r_encoder_max_seq_length(enc), "text_template",
                              a->text_template, "precision",
                              v4r_precision_name(a->precision < 0 ? V4R_PREC_FP32 : a->precision));
        *out = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(e);
    }
    v4r_encoder_free(enc);
    free(dir);
    return rc;
}

static int cmd_build(int argc, char **argv)
{
    build_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_build(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    v4r_err err = {0};
    v4r_dataset ds;
    v4r_matrix m = {0};
    char *spec = v4r_cli_resolve(a.dataset, a.vectors);
    a.o.vectors_source = spec;
    rc = v4r_dataset_load(a.dataset, &ds, &err);
    int loaded = rc == 0;
    if (!rc)
        rc = v4r_repr_load(spec, ds.n_items, &m, &err);
    char *encoder = NULL;
    if (!rc && a.encoder)
        rc = encoder_identity(&a, m.cols, &encoder, &err);
    a.o.encoder_json = encoder;
    v4r_index_build_report rep;
    if (!rc)
        rc = v4r_index_build(&ds, &m, &a.o, a.output, &rep, &err);
    if (!rc)
        print_build(&a, &rep);
    v4r_matrix_free(&m);
    free(encoder);
    if (loaded)
        v4r_dataset_free(&ds);
    free(spec);
    return rc ? v4r_cli_report(&err) : 0;
}

/* ---- info ---- */

static json_t *info_json(const v4r_index *ix, const char *path, int verified)
{
    json_error_t je;
    json_t *meta = json_loads(v4r_index_meta_json(ix), 0, &je);
    double recall = v4r_index_recall_vs_f32(ix);
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:o,s:b,s:o}", "path", path, "version", v4r_index_version(ix),
                     "sha256", v4r_index_checksum(ix), "dtype", v4r_index_dtype_name(v4r_index_storage(ix)), "items",
                     (json_int_t)v4r_index_n_items(ix), "dim", (json_int_t)v4r_index_dim(ix), "users",
                     (json_int_t)v4r_index_n_users(ix), "profile_length", (json_int_t)v4r_index_profile_length(ix),
                     "recall_vs_f32", recall < 0 ? json_null() : json_real(recall), "verified", verified, "meta",
                     meta ? meta : json_null());
}

static void print_info(const v4r_index *ix, const char *path, int verified)
{
    double recall = v4r_index_recall_vs_f32(ix);
    printf("index: %s\n", path);
    printf("version: %s\n", v4r_index_version(ix));
    printf("sha256: %s%s\n", v4r_index_checksum(ix), verified ? " (verified)" : "");
    printf("items: %zu x %zu (%s)\n", v4r_index_n_items(ix), v4r_index_dim(ix),
           v4r_index_dtype_name(v4r_index_storage(ix)));
    printf("users: %zu\n", v4r_index_n_users(ix));
    printf("profile length: %zu\n", v4r_index_profile_length(ix));
    if (recall < 0)
        printf("recall vs float32: not measured\n");
    else
        printf("recall vs float32: %.4f\n", recall);
    if (v4r_index_nlist(ix))
        printf("ivf: %zu lists, default nprobe %zu, recall vs exact %.4f\n", v4r_index_nlist(ix), v4r_index_nprobe(ix),
               v4r_index_ivf_recall(ix, 0));
    json_t *meta = json_loads(v4r_index_meta_json(ix), 0, NULL), *enc = json_object_get(meta, "encoder");
    const char *precision = json_string_value(json_object_get(enc, "precision"));
    if (json_is_object(enc))
        printf("encoder: %s (%s pooling%s, %s, sha256 %.12s)%s%s\n", json_string_value(json_object_get(enc, "model")),
               json_string_value(json_object_get(enc, "pooling")),
               json_is_true(json_object_get(enc, "normalize")) ? ", normalized" : "", precision ? precision : "fp32",
               json_string_value(json_object_get(enc, "sha256")),
               json_is_string(json_object_get(enc, "text_template")) ? ", text template " : "",
               json_is_string(json_object_get(enc, "text_template"))
                   ? json_string_value(json_object_get(enc, "text_template"))
                   : "");
    else
        printf("encoder: not recorded\n");
    json_decref(meta);
    printf("meta: %s\n", v4r_index_meta_json(ix));
}

static int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = {{"verify", no_argument, 0, 'v'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int verify = 0, as_json = 0, c;
    v4r_opt_reset();
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'v': verify = 1; break;
        case 'j': as_json = 1; break;
        case 'h': fputs(info_help, stdout); return 0;
        default: return v4r_cli_usage_error("index info", "bad option");
        }
    }
    if (optind + 1 != argc)
        return v4r_cli_usage_error("index info", "one index file is required");
    const char *path = argv[optind];
    v4r_err err = {0};
    v4r_index *ix;
    if (v4r_index_open(path, verify, &ix, &err))
        return v4r_cli_report(&err);
    if (as_json) {
        json_t *j = info_json(ix, path, verify);
        char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        puts(text);
        free(text);
        json_decref(j);
    } else {
        print_info(ix, path, verify);
    }
    v4r_index_close(ix);
    return 0;
}

/* ---- compact ---- */

static int cmd_compact(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL;
    int c;
    v4r_opt_reset();
    while ((c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'q': v4r_log_set_level(V4R_LOG_WARN); break;
        case 'h': fputs(compact_help, stdout); return 0;
        default: return v4r_cli_usage_error("index compact", "bad option");
        }
    }
    if (optind + 1 != argc)
        return v4r_cli_usage_error("index compact", "one index file is required");
    v4r_err err = {0};
    v4r_live_compact_report r;
    if (v4r_live_compact(argv[optind], out, &r, &err))
        return v4r_cli_report(&err);
    printf("index: %s\n", out ? out : argv[optind]);
    printf("log records: %zu (%zu items added, %zu deleted, %zu events)\n", r.records, r.added, r.deleted, r.events);
    printf("items: %zu x %zu\n", r.build.n_items, r.build.dim);
    printf("version: %s\n", r.build.version);
    printf("log: %s\n", r.rotated ? "emptied (the old one kept as .log.old)" : "unchanged");
    return 0;
}

int v4r_cmd_index(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(index_help, stdout);
        return argc < 2 ? V4R_EUSAGE : 0;
    }
    if (!strcmp(argv[1], "build"))
        return cmd_build(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info"))
        return cmd_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "compact"))
        return cmd_compact(argc - 1, argv + 1);
    return v4r_cli_usage_error("index", "unknown subcommand '%s'", argv[1]);
}

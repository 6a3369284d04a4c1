/* `vlm4rec eval`: rank the catalog for every user of a protocol and report the method's metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/rec.h"

static const char *eval_help =
    "usage: vlm4rec eval --dataset DIR --model NAME=SPEC [--model NAME=SPEC ...] [options]\n"
    "\n"
    "Ranks all candidate items for every user by cosine to the user's profile (the normalized mean\n"
    "of the last L history vectors) and prints Recall, NDCG and Hit at each K; the JSON has\n"
    "Precision and MAP too. All models share one user set and candidate set.\n"
    "\n"
    "  --dataset DIR          the dataset directory\n"
    "  --model NAME=SPEC      a representation; SPEC is PATH.npy, concat:A.npy,B.npy,\n"
    "                         mean:A.npy,B.npy (naive average) or mean-pad:A.npy,B.npy (average\n"
    "                         after zero-padding to the larger size) of the normalized blocks, or\n"
    "                         concat-raw:A.npy,B.npy, mean-raw:A.npy,B.npy of the blocks as they are.\n"
    "                         A relative PATH that does not exist is looked up in the dataset directory.\n"
    "  --protocol NAME        a preset setting every protocol option: paper or released (README,\n"
    "                         docs/protocols.md); the options below override it wherever they stand\n"
    "  --history SPLITS       train (default) or train+valid\n"
    "  --truth SPLIT          valid (default) or test\n"
    "  --history-length L     items in the profile (default 10; 0 = the whole history)\n"
    "  --mask MODE            history (default: every history item leaves the candidates), profile\n"
    "                         (only the profile's last L items) or none\n"
    "  --keep-history         --mask none\n"
    "  --profile MODE         normalized-mean (default: mean of the L2-normalized vectors) or mean\n"
    "                         (mean of the vectors as they are; zero rows then score 0)\n"
    "  --truth-duplicates M   repeated truth lines: drop (default: the truth is a set), keep (Recall\n"
    "                         and IDCG count lines) or idcg (only IDCG and MAP count lines)\n"
    "  --sample-users F       evaluate a seeded sample of the users with truth: floor(F x n), at least 1\n"
    "  --users FILE           evaluate only these users (ids, one a line); overrides --sample-users\n"
    "  --covered FILE         covered-subset protocol: item ids, one a line (items with a description);\n"
    "                         a relative FILE that does not exist is looked up in the dataset directory\n"
    "  --k LIST               cutoffs (default 5,10,20)\n"
    "  --native NAME=USERS.npy  score model NAME with its own user vectors (one row per user, e.g.\n"
    "                         smore's OUT.users.npy): user . item over its item vectors as they are,\n"
    "                         in place of the history profiles (the model's own ranking, for reference)\n"
    "  --baseline NAME        the model the others are compared with (default: the first)\n"
    "  --bootstrap N          paired bootstrap resamples for the 95%% intervals (default 1000; 0 = none)\n"
    "  --seed S               bootstrap and user-sample seed (default 0)\n"
    "  -o, --output FILE      results JSON\n"
    "  --per-user FILE        per-user metrics TSV (model, user, history, truth, metrics)\n"
    "  --rankings FILE        top-K lists TSV (model, user, rank, item, score)\n"
    "  --threads N            worker threads (default: all cores)\n"
    "  -q, --quiet            no progress or log lines\n";

typedef struct {
    const char *dataset, *output, *per_user, *rankings, *covered, *users;
    v4r_model_spec specs[64];
    size_t n_specs;
    const char *natives[64]; /* NAME=USERS.npy */
    size_t n_natives;
    v4r_eval_opts eo;
} eval_args;

static int parse_ks(const char *val, v4r_eval_opts *eo)
{
    char *s = v4r_strdup(val);
    eo->nk = 0;
    int rc = 0;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        size_t k;
        if (eo->nk == V4R_MAX_K)
            rc = v4r_cli_usage_error("eval", "--k: at most %d cutoffs", V4R_MAX_K);
        else if (!(rc = v4r_opt_size("eval", "k", tok, &k)))
            eo->ks[eo->nk++] = k;
    }
    free(s);
    return rc;
}

static int parse_model(const char *val, eval_args *a)
{
    const char *eq = strchr(val, '=');
    if (!eq || eq == val || !eq[1])
        return v4r_cli_usage_error("eval", "--model wants NAME=SPEC, got '%s'", val);
    if (a->n_specs == sizeof a->specs / sizeof *a->specs)
        return v4r_cli_usage_error("eval", "too many models");
    a->specs[a->n_specs].name = v4r_strndup(val, (size_t)(eq - val));
    a->specs[a->n_specs].spec = v4r_strdup(eq + 1);
    a->n_specs++;
    return 0;
}

/* --native NAME=USERS.npy turns model NAME's spec into native:ITEMS.npy,USERS.npy. */
static int apply_natives(eval_args *a)
{
    for (size_t k = 0; k < a->n_natives; k++) {
        const char *val = a->natives[k], *eq = strchr(val, '=');
        if (!eq || eq == val || !eq[1])
            return v4r_cli_usage_error("eval", "--native wants NAME=USERS.npy, got '%s'", val);
        size_t i = 0;
        while (i < a->n_specs && (strlen(a->specs[i].name) != (size_t)(eq - val) ||
                                  strncmp(a->specs[i].name, val, (size_t)(eq - val))))
            i++;
        if (i == a->n_specs)
            return v4r_cli_usage_error("eval", "--native: no model named '%.*s'", (int)(eq - val), val);
        const char *sp = a->specs[i].spec;
        if (!strncmp(sp, "concat:", 7) || !strncmp(sp, "mean:", 5) || !strncmp(sp, "mean-pad:", 9) ||
            !strncmp(sp, "concat-raw:", 11) || !strncmp(sp, "mean-raw:", 9) || !strncmp(sp, "native:", 7))
            return v4r_cli_usage_error("eval", "--native: model '%s' must be one .npy file", a->specs[i].name);
        char *spec = v4r_sprintf("native:%s,%s", a->specs[i].spec, eq + 1);
        free(a->specs[i].spec);
        a->specs[i].spec = spec;
    }
    return 0;
}

static const struct option eval_opts[] = {
    {"dataset", required_argument, 0, 'd'}, {"model", required_argument, 0, 'm'},
    {"history", required_argument, 0, 'H'}, {"truth", required_argument, 0, 't'},
    {"history-length", required_argument, 0, 'L'}, {"keep-history", no_argument, 0, 'K'},
    {"covered", required_argument, 0, 'c'}, {"k", required_argument, 0, 'k'},
    {"baseline", required_argument, 0, 'b'}, {"bootstrap", required_argument, 0, 'B'},
    {"seed", required_argument, 0, 's'}, {"output", required_argument, 0, 'o'},
    {"per-user", required_argument, 0, 'u'}, {"rankings", required_argument, 0, 'r'},
    {"threads", required_argument, 0, 'j'}, {"quiet", no_argument, 0, 'q'},
    {"native", required_argument, 0, 'N'}, {"mask", required_argument, 0, 'M'},
    {"profile", required_argument, 0, 'P'}, {"truth-duplicates", required_argument, 0, 'D'},
    {"sample-users", required_argument, 0, 'S'}, {"users", required_argument, 0, 'U'},
    {"protocol", required_argument, 0, 'R'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};

/* A preset first, wherever --protocol stands, so that every explicit option overrides it. */
static int apply_preset(int argc, char **argv, v4r_eval_opts *eo)
{
    int c, rc = 0;
    v4r_opt_reset();
    opterr = 0; /* the second pass reports bad options */
    while (!rc && (c = getopt_long(argc, argv, "o:qh", eval_opts, NULL)) != -1)
        if (c == 'R' && v4r_eval_preset(optarg, eo) != 0)
            rc = v4r_cli_usage_error("eval", "--protocol must be paper or released, not '%s'", optarg);
    return rc;
}

/* --mask, --profile, --truth-duplicates. */
static int parse_mode(int c, const char *val, v4r_protocol *p)
{
    if (c == 'M' && (p->mask = v4r_mask_parse(val)) < 0)
        return v4r_cli_usage_error("eval", "--mask must be history, profile or none, not '%s'", val);
    if (c == 'P' && (p->profile = v4r_profile_parse(val)) < 0)
        return v4r_cli_usage_error("eval", "--profile must be normalized-mean or mean, not '%s'", val);
    if (c == 'D' && (p->truth_duplicates = v4r_truth_dup_parse(val)) < 0)
        return v4r_cli_usage_error("eval", "--truth-duplicates must be drop, keep or idcg, not '%s'", val);
    return 0;
}

static int parse_sample(const char *val, v4r_eval_opts *eo)
{
    int rc = v4r_opt_double("eval", "sample-users", val, &eo->sample_fraction);
    if (!rc && !(eo->sample_fraction >= 0 && eo->sample_fraction <= 1))
        rc = v4r_cli_usage_error("eval", "--sample-users must be a fraction in [0, 1] (0 = every user), not '%s'",
                                 val);
    return rc;
}

static int parse_args(int argc, char **argv, eval_args *a)
{
    const struct option *opts = eval_opts;
    v4r_eval_opts_defaults(&a->eo);
    int c, rc = apply_preset(argc, argv, &a->eo);
    v4r_opt_reset();
    while (!rc && (c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'd': a->dataset = optarg; break;
        case 'm': rc = parse_model(optarg, a); break;
        case 'H':
            if (!strcmp(optarg, "train"))
                a->eo.proto.history_splits = 1u << V4R_TRAIN;
            else if (!strcmp(optarg, "train+valid"))
                a->eo.proto.history_splits = 1u << V4R_TRAIN | 1u << V4R_VALID;
            else
                rc = v4r_cli_usage_error("eval", "--history must be train or train+valid, not '%s'", optarg);
            break;
        case 't':
            a->eo.proto.truth_split = v4r_split_parse(optarg);
            if (a->eo.proto.truth_split != V4R_VALID && a->eo.proto.truth_split != V4R_TEST)
                rc = v4r_cli_usage_error("eval", "--truth must be valid or test, not '%s'", optarg);
            break;
        case 'L': rc = v4r_opt_size("eval", "history-length", optarg, &a->eo.proto.history_length); break;
        case 'K': a->eo.proto.mask = V4R_MASK_NONE; break;
        case 'M':
        case 'P':
        case 'D': rc = parse_mode(c, optarg, &a->eo.proto); break;
        case 'S': rc = parse_sample(optarg, &a->eo); break;
        case 'U': a->users = optarg; break;
        case 'R': break; /* applied first */
        case 'c': a->covered = optarg; break;
        case 'k': rc = parse_ks(optarg, &a->eo); break;
        case 'b': a->eo.baseline = optarg; break;
        case 'N':
            if (a->n_natives == sizeof a->natives / sizeof *a->natives)
                rc = v4r_cli_usage_error("eval", "too many --native options");
            else
                a->natives[a->n_natives++] = optarg;
            break;
        case 'B': rc = v4r_opt_size("eval", "bootstrap", optarg, &a->eo.bootstrap); break;
        case 's': rc = v4r_opt_u64("eval", "seed", optarg, &a->eo.seed); break;
        case 'o': a->output = optarg; break;
        case 'u': a->per_user = optarg; break;
        case 'r': a->rankings = optarg; break;
        case 'j': rc = v4r_opt_threads("eval", optarg); break;
        case 'q': v4r_log_set_level(V4R_LOG_WARN); break;
        case 'h': fputs(eval_help, stdout); return -1;
        default: return v4r_cli_usage_error("eval", "bad option");
        }
    }
    if (!rc && optind != argc)
        rc = v4r_cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    if (!rc && !a->dataset)
        rc = v4r_cli_usage_error("eval", "--dataset is required");
    if (!rc && a->n_specs == 0)
        rc = v4r_cli_usage_error("eval", "at least one --model NAME=SPEC is required");
    if (!rc)
        rc = apply_natives(a);
    if (!rc && a->eo.proto.history_splits & (1u << a->eo.proto.truth_split))
        rc = v4r_cli_usage_error("eval", "--truth valid cannot be used with --history train+valid");
    a->eo.keep_rankings = a->rankings != NULL;
    return rc;
}

static int write_outputs(const eval_args *a, const v4r_eval_result *res, const v4r_dataset *ds, v4r_err *err)
{
    int rc = V4R_OK;
    if (a->output)
        rc = v4r_eval_write_json(res, ds, a->output, err);
    if (!rc && a->per_user)
        rc = v4r_eval_write_per_user(res, ds, a->per_user, err);
    if (!rc && a->rankings)
        rc = v4r_eval_write_rankings(res, ds, a->rankings, err);
    return rc;
}

static void print_header(const v4r_eval_result *res, FILE *fp)
{
    const v4r_protocol *p = &res->opts.proto;
    static const char *const masked[] = {"all", "profile's", "no"};
    char last[32] = "all";
    if (p->history_length)
        snprintf(last, sizeof last, "%zu", p->history_length);
    if (res->opts.preset)
        fprintf(fp, "preset: %s\n", res->opts.preset);
    fprintf(fp, "protocol: history %s (last %s), truth %s, %s history masked, candidates %s (%zu items)\n",
            p->history_splits & (1u << V4R_VALID) ? "train+valid" : "train", last, v4r_split_name(p->truth_split),
            masked[p->mask], p->covered ? "covered" : "all", res->set.n_candidates);
    fprintf(fp, "profile %s, truth duplicates %s\n", v4r_profile_name(p->profile),
            v4r_truth_dup_name(p->truth_duplicates));
    fprintf(fp, "users: %zu evaluated, %zu without history, %zu without truth", res->set.n_eval, res->set.no_history,
            res->set.no_truth);
    if (p->users)
        fprintf(fp, ", %zu not in the %s", res->set.not_selected, res->sampled ? "sample" : "users file");
    fprintf(fp, " (of %zu)\n\n", res->set.n_users_total);
}

int v4r_cmd_eval(int argc, char **argv)
{
    eval_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    v4r_dataset ds;
    v4r_eval_result res;
    v4r_err err = {0};
    uint8_t *covered = NULL, *users = NULL;
    int loaded = 0, evaluated = 0;
    if (rc == 0) {
        /* repeated truth lines only count when asked for; otherwise the dataset must have none */
        rc = a.eo.proto.truth_duplicates == V4R_TRUTH_DUP_DROP ? v4r_dataset_load(a.dataset, &ds, &err)
                                                               : v4r_dataset_load_repeats(a.dataset, &ds, &err);
        loaded = rc == 0;
        if (rc && strstr(err.msg, "duplicate interaction")) {
            size_t len = strlen(err.msg);
            snprintf(err.msg + len, sizeof err.msg - len, " (--truth-duplicates keep or idcg counts repeated lines)");
        }
    }
    char *users_path = a.users ? v4r_cli_resolve(a.dataset, a.users) : NULL;
    if (rc == 0 && users_path) {
        size_t n_users;
        rc = v4r_read_users(&ds, users_path, &users, &n_users, &err);
        a.eo.proto.users = users;
    }
    char *covered_path = a.covered ? v4r_cli_resolve(a.dataset, a.covered) : NULL;
    if (rc == 0 && covered_path) {
        size_t n_cov;
        rc = v4r_read_covered(&ds, covered_path, &covered, &n_cov, &err);
        a.eo.proto.covered = covered;
    }
    for (size_t i = 0; rc == 0 && i < a.n_specs; i++) {
        char *resolved = v4r_cli_resolve(a.dataset, a.specs[i].spec);
        free(a.specs[i].spec);
        a.specs[i].spec = resolved;
    }
    if (rc == 0) {
        rc = v4r_evaluate(&ds, a.specs, a.n_specs, &a.eo, &res, &err);
        evaluated = rc == 0;
    }
    if (evaluated) {
        res.covered_path = covered_path ? v4r_strdup(covered_path) : NULL;
        res.users_path = users_path ? v4r_strdup(users_path) : NULL;
        rc = write_outputs(&a, &res, &ds, &err);
        if (rc == 0) {
            print_header(&res, stdout);
            v4r_eval_print_table(&res, stdout);
        }
        v4r_eval_result_free(&res);
    }
    if (loaded)
        v4r_dataset_free(&ds);
    free(covered);
    free(covered_path);
    free(users);
    free(users_path);
    for (size_t i = 0; i < a.n_specs; i++) {
        free(a.specs[i].name);
        free(a.specs[i].spec);
    }
    if (rc < 0)
        return 0; /* --help */
    if (rc > 0 && err.msg[0])
        return v4r_cli_report(&err);
    return rc;
}

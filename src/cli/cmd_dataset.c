/* `vlm4rec dataset import|synth|stats`: dataset creation and inspection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/data.h"

static const char *import_help =
    "usage: vlm4rec dataset import --format kaggle|mmrec|tsv SRC -o DIR [--dedupe]\n"
    "\n"
    "Converts SRC into the dataset layout (items.tsv, users.tsv, train/valid/test.tsv, features/).\n"
    "  --format kaggle  train.txt, validation.txt, test.txt, items.txt, users.txt (CSV with header),\n"
    "                   embed_text.npy, embed_image.npy\n"
    "  --format mmrec   <name>.inter (userID itemID rating timestamp x_label), text_feat.npy,\n"
    "                   image_feat.npy\n"
    "  --format tsv     train.tsv, valid.tsv, test.tsv (user, item[, timestamp]) and optional items.tsv\n"
    "  -o, --output DIR the dataset directory to write\n"
    "  --dedupe         keep the first of duplicate interactions instead of failing\n";

static const char *synth_help =
    "usage: vlm4rec dataset synth -o DIR [--users N] [--items M] [--interactions K] [--seed S] [--images]\n"
    "\n"
    "Generates the synthetic catalog with planted semantics (docs/synthetic.md says what is planted):\n"
    "the dataset layout, titles, descriptions.tsv, attributes.tsv, user_prefs.tsv, covered.txt and\n"
    "features/{title,visual,description}.npy. Same options and seed, same bytes. Defaults: the\n"
    "method's data shape, 23318 users, 38493 items, 178944 interactions, seed 1.\n"
    "  --dim-title N    title vector size (default 768)\n"
    "  --dim-visual N   visual vector size (default 768)\n"
    "  --dim-desc N     description vector size (default 384)\n"
    "  --covered F      share of items listed in covered.txt (default 0.1223, the method's 4708/38493)\n"
    "  --images         also render a 64x64 PNG per item into images/ (color and silhouette)\n";

static const char *stats_help =
    "usage: vlm4rec dataset stats DIR [--covered FILE] [--vectors V.npy] [--json]\n"
    "\n"
    "Counts, density and history lengths per split; with --covered (item ids, one a line) or\n"
    "--vectors (nonzero rows count as covered), the coverage of items and interactions. A relative\n"
    "FILE that does not exist is looked up in the dataset directory.\n";

static const char *dataset_help =
    "usage: vlm4rec dataset <import|synth|stats> [options]\n"
    "Run 'vlm4rec dataset <sub> --help' for details.\n";

static int cmd_import(int argc, char **argv)
{
    static const struct option opts[] = {{"format", required_argument, 0, 'f'},
                                         {"output", required_argument, 0, 'o'},
                                         {"dedupe", no_argument, 0, 'd'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *format = NULL, *out = NULL;
    v4r_import_opts io = {0};
    int c;
    v4r_opt_reset();
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': format = optarg; break;
        case 'o': out = optarg; break;
        case 'd': io.dedupe = 1; break;
        case 'h': fputs(import_help, stdout); return 0;
        default: return v4r_cli_usage_error("dataset import", "bad option");
        }
    }
    if (optind != argc - 1)
        return v4r_cli_usage_error("dataset import", "expected one source directory");
    if (!format || !out)
        return v4r_cli_usage_error("dataset import", "--format and -o are required");
    const char *src = argv[optind];
    v4r_err err = {0};
    int rc;
    if (!strcmp(format, "kaggle"))
        rc = v4r_import_kaggle(src, out, &io, &err);
    else if (!strcmp(format, "mmrec"))
        rc = v4r_import_mmrec(src, out, &io, &err);
    else if (!strcmp(format, "tsv"))
        rc = v4r_import_tsv(src, out, &io, &err);
    else
        return v4r_cli_usage_error("dataset import", "--format must be kaggle, mmrec or tsv, not '%s'", format);
    if (rc)
        return v4r_cli_report(&err);
    v4r_info("imported %s into %s", src, out);
    return 0;
}

static int cmd_synth(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"users", required_argument, 0, 'u'},
                                         {"items", required_argument, 0, 'i'},
                                         {"interactions", required_argument, 0, 'n'},
                                         {"seed", required_argument, 0, 's'},
                                         {"dim-title", required_argument, 0, 'T'},
                                         {"dim-visual", required_argument, 0, 'V'},
                                         {"dim-desc", required_argument, 0, 'D'},
                                         {"covered", required_argument, 0, 'c'},
                                         {"images", no_argument, 0, 'g'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    v4r_synth_opts so;
    v4r_synth_defaults(&so);
    const char *out = NULL, *cmd = "dataset synth";
    int c, rc = 0;
    v4r_opt_reset();
    while (!rc && (c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'u': rc = v4r_opt_size(cmd, "users", optarg, &so.users); break;
        case 'i': rc = v4r_opt_size(cmd, "items", optarg, &so.items); break;
        case 'n': rc = v4r_opt_size(cmd, "interactions", optarg, &so.interactions); break;
        case 's': rc = v4r_opt_u64(cmd, "seed", optarg, &so.seed); break;
        case 'T': rc = v4r_opt_size(cmd, "dim-title", optarg, &so.dim_title); break;
        case 'V': rc = v4r_opt_size(cmd, "dim-visual", optarg, &so.dim_visual); break;
        case 'D': rc = v4r_opt_size(cmd, "dim-desc", optarg, &so.dim_desc); break;
        case 'c': rc = v4r_opt_double(cmd, "covered", optarg, &so.covered_fraction); break;
        case 'g': so.images = 1; break;
        case 'h': fputs(synth_help, stdout); return 0;
        default: return v4r_cli_usage_error(cmd, "bad option");
        }
    }
    if (rc)
        return rc;
    if (optind != argc || !out)
        return v4r_cli_usage_error(cmd, "-o DIR is required and no other arguments are taken");
    v4r_err err = {0};
    if (v4r_synth(out, &so, &err))
        return v4r_cli_report(&err);
    v4r_info("synthetic catalog written to %s", out);
    return 0;
}

static int cmd_stats(int argc, char **argv)
{
    static const struct option opts[] = {{"covered", required_argument, 0, 'c'},
                                         {"vectors", required_argument, 0, 'v'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    v4r_stats_opts so = {0};
    int c;
    v4r_opt_reset();
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': so.covered_path = optarg; break;
        case 'v': so.vectors_path = optarg; break;
        case 'j': so.json = 1; break;
        case 'h': fputs(stats_help, stdout); return 0;
        default: return v4r_cli_usage_error("dataset stats", "bad option");
        }
    }
    if (optind != argc - 1)
        return v4r_cli_usage_error("dataset stats", "expected one dataset directory");
    v4r_dataset ds;
    v4r_err err = {0};
    if (v4r_dataset_load(argv[optind], &ds, &err))
        return v4r_cli_report(&err);
    char *covered = so.covered_path ? v4r_cli_resolve(argv[optind], so.covered_path) : NULL;
    char *vectors = so.vectors_path ? v4r_cli_resolve(argv[optind], so.vectors_path) : NULL;
    so.covered_path = covered;
    so.vectors_path = vectors;
    int rc = v4r_dataset_stats(&ds, &so, stdout, &err);
    free(covered);
    free(vectors);
    v4r_dataset_free(&ds);
    return rc ? v4r_cli_report(&err) : 0;
}

int v4r_cmd_dataset(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(dataset_help, stdout);
        return argc < 2 ? V4R_EUSAGE : 0;
    }
    if (!strcmp(argv[1], "import"))
        return cmd_import(argc - 1, argv + 1);
    if (!strcmp(argv[1], "synth"))
        return cmd_synth(argc - 1, argv + 1);
    if (!strcmp(argv[1], "stats"))
        return cmd_stats(argc - 1, argv + 1);
    return v4r_cli_usage_error("dataset", "unknown subcommand '%s'", argv[1]);
}

/* vlm4rec: entry point, subcommand dispatch and the top-level help. */
#include <stdio.h>
#include <string.h>

#include "vlm4rec/cli.h"

static const char *usage =
    "usage: vlm4rec <command> [options]\n"
    "\n"
    "Commands:\n"
    "  dataset import   convert the Kaggle, MMRec or TSV layout into a dataset directory\n"
    "  dataset synth    generate the synthetic catalog with planted semantics\n"
    "  dataset stats    counts, density, history lengths, coverage\n"
    "  eval             rank the catalog for every user and compute the method's metrics\n"
    "  pull             download a Hugging Face model repository into the model cache\n"
    "  tokenize         print the WordPiece token ids of texts (JSONL)\n"
    "  encode           embed texts with a Sentence-BERT / BERT model into a .npy\n"
    "  embed-images     embed the items' images with a CLIP vision model into a .npy\n"
    "  vectors merge    join the parts of encode / embed-images --shard I/N into one .npy\n"
    "  train            train a fusion baseline (attention, gating, SMORE) into item vectors\n"
    "  ground           describe every item image with a vision-language model server\n"
    "  cache            the semantic cache: stats, export, import, merge\n"
    "  standin          a stand-in chat-completions server for tests and the offline demo\n"
    "                   (not a vision-language model)\n"
    "  report           results files into report.md and a self-contained report.html\n"
    "  explain          a user's history and the top-K of two representations side by side\n"
    "  index build      the serving index of a dataset's item vectors (one mmap'ed file)\n"
    "  index info       an index's header and build facts\n"
    "  recommend        top-K items from an index for a user, a history or a list of users\n"
    "  run              the whole study from a config file, stage by stage, skipping what is done\n"
    "  serve            the recommendation HTTP service over an index\n"
    "  demo             the whole pipeline on the embedded synthetic default\n"
    "  help             this text\n"
    "  version          print the version\n"
    "\n"
    "Run 'vlm4rec <command> --help' for a command's options.\n"
    "Exit codes: 0 success, 1 internal error, 2 usage error, 3 bad input data, 4 i/o error,\n"
    "5 out of memory.\n";

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("vlm4rec %s\n", V4R_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "dataset"))
        return v4r_cmd_dataset(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval"))
        return v4r_cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "pull"))
        return v4r_cmd_pull(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize"))
        return v4r_cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "encode"))
        return v4r_cmd_encode(argc - 1, argv + 1);
    if (!strcmp(cmd, "embed-images"))
        return v4r_cmd_embed_images(argc - 1, argv + 1);
    if (!strcmp(cmd, "vectors"))
        return v4r_cmd_vectors(argc - 1, argv + 1);
    if (!strcmp(cmd, "train"))
        return v4r_cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "ground"))
        return v4r_cmd_ground(argc - 1, argv + 1);
    if (!strcmp(cmd, "cache"))
        return v4r_cmd_cache(argc - 1, argv + 1);
    if (!strcmp(cmd, "standin"))
        return v4r_cmd_standin(argc - 1, argv + 1);
    if (!strcmp(cmd, "report"))
        return v4r_cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "explain"))
        return v4r_cmd_explain(argc - 1, argv + 1);
    if (!strcmp(cmd, "index"))
        return v4r_cmd_index(argc - 1, argv + 1);
    if (!strcmp(cmd, "recommend"))
        return v4r_cmd_recommend(argc - 1, argv + 1);
    if (!strcmp(cmd, "run"))
        return v4r_cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve"))
        return v4r_cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "demo"))
        return v4r_cmd_demo(argc - 1, argv + 1);
    fprintf(stderr, "vlm4rec: unknown command '%s'\n\n%s", cmd, usage);
    return 2;
}

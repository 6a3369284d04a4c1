/* cli: the `vlm4rec` command's subcommands and their shared option helpers. */
#ifndef VLM4REC_CLI_H
#define VLM4REC_CLI_H

#include <getopt.h>

#include "vlm4rec/base.h"

/* Each subcommand: argc/argv start at the subcommand's name; returns an exit code. */
int v4r_cmd_dataset(int argc, char **argv);
int v4r_cmd_eval(int argc, char **argv);
int v4r_cmd_demo(int argc, char **argv);
int v4r_cmd_tokenize(int argc, char **argv);
int v4r_cmd_encode(int argc, char **argv);
int v4r_cmd_embed_images(int argc, char **argv);
int v4r_cmd_vectors(int argc, char **argv);
int v4r_cmd_train(int argc, char **argv);
int v4r_cmd_pull(int argc, char **argv);
int v4r_cmd_ground(int argc, char **argv);
int v4r_cmd_cache(int argc, char **argv);
int v4r_cmd_standin(int argc, char **argv);
int v4r_cmd_report(int argc, char **argv);
int v4r_cmd_explain(int argc, char **argv);
int v4r_cmd_run(int argc, char **argv);
int v4r_cmd_index(int argc, char **argv);
int v4r_cmd_recommend(int argc, char **argv);
int v4r_cmd_serve(int argc, char **argv);

/* Prints "vlm4rec: <message>" for a failed status and returns its exit code. */
int v4r_cli_report(const v4r_err *err);
/* Usage error: prints the message and a hint to --help; returns V4R_EUSAGE. */
int v4r_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Option values. Each returns 0 or prints a usage error and returns V4R_EUSAGE. */
int v4r_opt_size(const char *cmd, const char *opt, const char *val, size_t *out);
int v4r_opt_u64(const char *cmd, const char *opt, const char *val, uint64_t *out);
int v4r_opt_double(const char *cmd, const char *opt, const char *val, double *out);
/* --threads: 1..1024, then the OpenMP thread count. */
int v4r_opt_threads(const char *cmd, const char *val);
/* A file beside the output OUT: OUT with its .npy replaced by suffix (or suffix appended), e.g.
 * ".covered.txt". Caller frees. */
char *v4r_cli_beside(const char *out, const char *suffix);
/* A --shard I/N value (1 <= I <= N <= max) into *index and *count; else a usage error of cmd (2). */
int v4r_cli_parse_shard(const char *cmd, const char *val, int max, int *index, int *count);
/* A --text-template value checked (v4r_text_template_check); a usage error of cmd (2) naming the
 * fault, else 0 with *uses_title set. */
int v4r_cli_check_text_template(const char *cmd, const char *tpl, int *uses_title);
/* Resolves each path of a representation spec (PATH or kind:A,B) against the dataset directory
 * when it is relative and not a file from the current directory. Caller frees. */
char *v4r_cli_resolve(const char *dataset, const char *spec);
/* Resolves a --model value: an existing directory as it is, else a Hugging Face id through the
 * model cache (downloading it unless offline). *dir is allocated. */
int v4r_cli_resolve_model(const char *model, int offline, char **dir, v4r_err *err);
/* A server's --port-file: the bound port and a newline, written atomically; 0 or the exit code. */
int v4r_cli_write_port(const char *path, int port);
/* Resets getopt for a fresh parse. */
void v4r_opt_reset(void);

#endif

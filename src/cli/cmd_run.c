/* `vlm4rec run`: the study a config file describes, stage by stage into a run directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/pipeline.h"

static const char *run_help =
    "usage: vlm4rec run CONFIG [--from STAGE] [-o RUNDIR] [--dry-run]\n"
    "       vlm4rec run --default [...]    the embedded default (the demo's config)\n"
    "       vlm4rec run --print-default    print the embedded default config\n"
    "\n"
    "Runs the pipeline CONFIG describes (docs/pipeline.md): dataset, ground, encode, vision, fusion,\n"
    "eval, report. Each step writes into the run directory and is skipped when its outputs are newer\n"
    "than its inputs and its settings are unchanged.\n"
    "  --from STAGE    run STAGE and every stage after it even when up to date\n"
    "                  (dataset, ground, encode, vision, fusion, eval, report)\n"
    "  -o, --run-dir D the run directory (default: [run] dir of the config)\n"
    "  --dry-run       print which steps would run and each step's command line (shell-quoted);\n"
    "                  run, write and pull nothing\n";

/* The path of the running executable, for the steps. */
char *v4r_cli_self_exe(void);
char *v4r_cli_self_exe(void)
{
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return v4r_strdup("vlm4rec");
    buf[n] = 0;
    return v4r_strdup(buf);
}

int v4r_cli_run_pipeline(const char *path, const char *text, const char *run_dir, int from, int dry_run);
int v4r_cli_run_pipeline(const char *path, const char *text, const char *run_dir, int from, int dry_run)
{
    char *exe = v4r_cli_self_exe();
    v4r_run_opts o = {path, text, exe, run_dir, from, dry_run};
    v4r_err err = {0};
    int rc = v4r_pipeline_run(&o, &err);
    free(exe);
    return rc ? v4r_cli_report(&err) : 0;
}

int v4r_cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {{"from", required_argument, 0, 'f'},   {"run-dir", required_argument, 0, 'o'},
                                         {"dry-run", no_argument, 0, 'n'},      {"default", no_argument, 0, 'D'},
                                         {"print-default", no_argument, 0, 'P'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *run_dir = NULL;
    int c, from = -1, dry = 0, use_default = 0;
    v4r_opt_reset();
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if ((from = v4r_stage_parse(optarg)) < 0)
                return v4r_cli_usage_error("run", "--from: no stage '%s' (dataset, ground, encode, vision, fusion, "
                                                  "eval, report)", optarg);
            break;
        case 'o': run_dir = optarg; break;
        case 'n': dry = 1; break;
        case 'D': use_default = 1; break;
        case 'P': fputs(v4r_default_config, stdout); return 0;
        case 'h': fputs(run_help, stdout); return 0;
        default: return v4r_cli_usage_error("run", "bad option");
        }
    }
    if (use_default == (optind < argc) || argc - optind > 1)
        return v4r_cli_usage_error("run", "give one CONFIG file or --default");
    if (use_default)
        return v4r_cli_run_pipeline("(embedded default)", v4r_default_config, run_dir, from, dry);
    char *text = NULL;
    size_t len = 0;
    v4r_err err = {0};
    if (v4r_read_file(argv[optind], &text, &len, &err))
        return v4r_cli_report(&err);
    int rc = v4r_cli_run_pipeline(argv[optind], text, run_dir, from, dry);
    free(text);
    return rc;
}

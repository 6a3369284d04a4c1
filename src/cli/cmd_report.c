/* `vlm4rec report`: results JSON files into report.md and a self-contained report.html. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/cli.h"
#include "vlm4rec/report.h"

static const char *report_help =
    "usage: vlm4rec report RESULTS.json [RESULTS.json ...] -o DIR [--title T] [--case FILE ...]\n"
    "\n"
    "Draws the tables and figures of the method's study from results files written by 'vlm4rec eval'\n"
    "(one per protocol, e.g. covered subset and full catalog) into DIR/report.md and DIR/report.html\n"
    "(one page, inline SVG, no scripts, no external files): Table 1 with grouped rows, the metric\n"
    "heatmap, the full-catalog bars with standard-deviation error bars, the modality profile, the\n"
    "paired bootstrap intervals, all metrics, timings and the run facts. See docs/report.md.\n"
    "  -o, --output DIR   where report.md and report.html go\n"
    "  --title T          the page title (default \"vlm4rec report\")\n"
    "  --case FILE        a case study (the output of 'vlm4rec explain'); its first line is the title;\n"
    "                     repeatable\n";

static int read_case(const char *path, v4r_rep_case *c, v4r_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = v4r_read_file(path, &data, &len, err);
    if (rc)
        return rc;
    char *nl = strchr(data, '\n');
    c->title = nl ? v4r_strndup(data, (size_t)(nl - data)) : v4r_strdup(path);
    c->text = v4r_strdup(nl ? nl + 1 : data);
    free(data);
    return V4R_OK;
}

static int run_report(char **paths, size_t n, char **case_paths, size_t n_cases, const char *title, const char *dir)
{
    v4r_err err = {0};
    v4r_rep_results *res = v4r_calloc(n, sizeof *res);
    v4r_rep_case *cases = v4r_calloc(n_cases ? n_cases : 1, sizeof *cases);
    int rc = 0;
    size_t loaded = 0, got_cases = 0;
    for (; loaded < n && !rc; loaded++)
        rc = v4r_report_load(paths[loaded], &res[loaded], &err);
    for (; got_cases < n_cases && !rc; got_cases++)
        rc = read_case(case_paths[got_cases], &cases[got_cases], &err);
    v4r_report_opts o = {title, cases, n_cases};
    if (!rc)
        rc = v4r_report_write(res, n, &o, dir, &err);
    if (!rc)
        printf("report: %s/report.html and %s/report.md\n", dir, dir);
    for (size_t i = 0; i < loaded; i++)
        v4r_report_results_free(&res[i]);
    for (size_t i = 0; i < got_cases; i++) {
        free(cases[i].title);
        free(cases[i].text);
    }
    free(res);
    free(cases);
    return rc ? v4r_cli_report(&err) : 0;
}

int v4r_cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"title", required_argument, 0, 't'},
                                         {"case", required_argument, 0, 'c'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *dir = NULL, *title = NULL;
    char **cases = v4r_calloc((size_t)argc, sizeof *cases);
    size_t n_cases = 0;
    int c;
    v4r_opt_reset();
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': dir = optarg; break;
        case 't': title = optarg; break;
        case 'c': cases[n_cases++] = optarg; break;
        case 'h': fputs(report_help, stdout); free(cases); return 0;
        default: free(cases); return v4r_cli_usage_error("report", "bad option");
        }
    }
    int rc = 0;
    if (!dir)
        rc = v4r_cli_usage_error("report", "-o DIR is required");
    else if (optind == argc)
        rc = v4r_cli_usage_error("report", "give at least one results file");
    else
        rc = run_report(argv + optind, (size_t)(argc - optind), cases, n_cases, title, dir);
    free(cases);
    return rc;
}

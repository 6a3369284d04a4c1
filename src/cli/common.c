/* Shared CLI helpers: error reporting, usage errors, option value parsing, output names. */
#include "vlm4rec/cli.h"
#include "vlm4rec/text.h"
#include "vlm4rec/hub.h"

#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int v4r_cli_report(const v4r_err *err)
{
    fprintf(stderr, "vlm4rec: error: %s\n", err->msg);
    return err->code ? err->code : V4R_EINTERNAL;
}

int v4r_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vlm4rec %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'vlm4rec %s --help'.\n", cmd);
    va_end(ap);
    return V4R_EUSAGE;
}

int v4r_opt_u64(const char *cmd, const char *opt, const char *val, uint64_t *out)
{
    int64_t v;
    if (v4r_parse_i64(val, &v) != 0 || v < 0)
        return v4r_cli_usage_error(cmd, "--%s: '%s' is not a non-negative integer", opt, val);
    *out = (uint64_t)v;
    return 0;
}

int v4r_opt_size(const char *cmd, const char *opt, const char *val, size_t *out)
{
    uint64_t v = 0;
    int rc = v4r_opt_u64(cmd, opt, val, &v);
    if (!rc)
        *out = (size_t)v;
    return rc;
}

int v4r_opt_double(const char *cmd, const char *opt, const char *val, double *out)
{
    if (v4r_parse_f64(val, out) != 0)
        return v4r_cli_usage_error(cmd, "--%s: '%s' is not a number", opt, val);
    return 0;
}

int v4r_opt_threads(const char *cmd, const char *val)
{
    size_t threads;
    int rc = v4r_opt_size(cmd, "threads", val, &threads);
    if (!rc && (threads == 0 || threads > 1024))
        rc = v4r_cli_usage_error(cmd, "--threads must be 1..1024");
    if (!rc)
        omp_set_num_threads((int)threads);
    return rc;
}

char *v4r_cli_beside(const char *out, const char *suffix)
{
    size_t n = strlen(out);
    if (n > 4 && !strcmp(out + n - 4, ".npy"))
        return v4r_sprintf("%.*s%s", (int)(n - 4), out, suffix);
    return v4r_sprintf("%s%s", out, suffix);
}

void v4r_opt_reset(void)
{
    optind = 0; /* GNU getopt: full re-initialisation */
    opterr = 1;
}

char *v4r_cli_resolve(const char *dataset, const char *spec)
{
    static const char *const kinds[] = {"concat:", "mean:", "mean-pad:", "native:", "concat-raw:", "mean-raw:"};
    size_t prefix = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strncmp(spec, kinds[i], strlen(kinds[i])))
            prefix = strlen(kinds[i]);
    char *list = v4r_strdup(spec + prefix), *out = v4r_strndup(spec, prefix);
    int first = 1;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *alt = v4r_path_join(dataset, tok);
        const char *use = !v4r_file_exists(tok) && tok[0] != '/' && v4r_file_exists(alt) ? alt : tok;
        char *next = v4r_sprintf("%s%s%s", out, first ? "" : ",", use);
        free(out);
        out = next;
        free(alt);
        first = 0;
    }
    free(list);
    return out;
}

int v4r_cli_resolve_model(const char *model, int offline, char **dir, v4r_err *err)
{
    v4r_hub_opts o;
    memset(&o, 0, sizeof o);
    o.offline = offline;
    return v4r_hub_resolve(model, &o, dir, err);
}

int v4r_cli_write_port(const char *path, int port)
{
    v4r_outfile out;
    v4r_err err = {0};
    if (v4r_out_open(&out, path, &err) != V4R_OK)
        return v4r_cli_report(&err);
    fprintf(out.fp, "%d\n", port);
    if (v4r_out_commit(&out, &err) != V4R_OK)
        return v4r_cli_report(&err);
    return 0;
}

int v4r_cli_parse_shard(const char *cmd, const char *val, int max, int *index, int *count)
{
    int i = 0, n = 0;
    char tail;
    if (sscanf(val, "%d/%d%c", &i, &n, &tail) != 2 || n < 1 || i < 1 || i > n || n > max)
        return v4r_cli_usage_error(cmd, "--shard: '%s' is not I/N with 1 <= I <= N", val);
    *index = i;
    *count = n;
    return 0;
}

int v4r_cli_check_text_template(const char *cmd, const char *tpl, int *uses_title)
{
    v4r_err err = {0};
    if (v4r_text_template_check(tpl, uses_title, &err))
        return v4r_cli_usage_error(cmd, "--text-template: %s", err.msg);
    return 0;
}

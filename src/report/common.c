/* report: column choice, best-per-column, row order, escaping, colors; v4r_report_write. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "report_internal.h"

static const char *const table_keys[] = {"recall@5", "recall@10", "recall@20", "ndcg@10", "ndcg@20", "hit@10"};

size_t rep_table_cols(const v4r_rep_results *r, int *cols)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof table_keys / sizeof *table_keys; i++) {
        int k = v4r_report_key(r, table_keys[i]);
        if (k >= 0)
            cols[n++] = k;
    }
    return n;
}

int rep_improvement_key(const v4r_rep_results *r)
{
    int k = v4r_report_key(r, "recall@10");
    return k >= 0 ? k : 0;
}

int rep_is_best(const v4r_rep_results *r, size_t i, int k)
{
    for (size_t j = 0; j < r->n_models; j++)
        if (r->models[j].m[k].mean > r->models[i].m[k].mean)
            return 0;
    return r->n_models > 1;
}

void rep_order(const v4r_rep_results *r, size_t *order)
{
    size_t n = 0;
    for (int g = 0; g < V4R_NGROUPS; g++)
        for (size_t i = 0; i < r->n_models; i++)
            if (r->models[i].group == g)
                order[n++] = i;
}

const char *rep_key_title(const char *key, char *buf, size_t n)
{
    static const char *const names[][2] = {
        {"recall", "Recall"}, {"ndcg", "NDCG"}, {"hit", "Hit"}, {"precision", "Precision"}, {"map", "MAP"}};
    const char *at = strchr(key, '@');
    size_t len = at ? (size_t)(at - key) : strlen(key);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strlen(names[i][0]) == len && !strncmp(key, names[i][0], len)) {
            snprintf(buf, n, "%s%s", names[i][1], at ? at : "");
            return buf;
        }
    snprintf(buf, n, "%s", key);
    return buf;
}

void rep_html_esc(FILE *fp, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", fp); break;
        case '<': fputs("&lt;", fp); break;
        case '>': fputs("&gt;", fp); break;
        case '"': fputs("&quot;", fp); break;
        case '\'': fputs("&#39;", fp); break;
        default: putc(*s, fp);
        }
    }
}

void rep_md_esc(FILE *fp, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|' || *s == '\\' || *s == '*' || *s == '`')
            putc('\\', fp);
        putc(*s == '\n' || *s == '\r' || *s == '\t' ? ' ' : *s, fp);
    }
}

const char *rep_color(size_t i)
{
    static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                          "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a"};
    return palette[i % (sizeof palette / sizeof *palette)];
}

size_t rep_full_catalog(const v4r_rep_results *res, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (res[i].candidates && !strcmp(res[i].candidates, "all"))
            return i;
    return n - 1;
}

int v4r_report_write(const v4r_rep_results *res, size_t n, const v4r_report_opts *o, const char *dir, v4r_err *err)
{
    if (n == 0)
        return v4r_fail(err, V4R_EUSAGE, "no results to report");
    int rc = v4r_mkdir_p(dir, err);
    char *md = v4r_path_join(dir, "report.md"), *html = v4r_path_join(dir, "report.html");
    if (!rc)
        rc = rep_write_markdown(res, n, o, md, err);
    if (!rc)
        rc = rep_write_html(res, n, o, html, err);
    free(md);
    free(html);
    return rc;
}

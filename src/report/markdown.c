/* report: report.md — per results file the protocol facts, Table 1, the bootstrap intervals, all
 * metrics with their standard deviations and the representations; then run facts and cases. */
#include <stdlib.h>
#include <string.h>

#include "report_internal.h"

static void md_facts(FILE *fp, const v4r_rep_results *r)
{
    fprintf(fp, "Users: %zu evaluated of %zu (no history %zu, no truth %zu). ", r->evaluated, r->users_total,
            r->no_history, r->no_truth);
    fprintf(fp, "Candidates: %zu of %zu items (%s", r->candidate_items, r->items,
            r->candidates ? r->candidates : "all");
    if (r->covered_file) {
        fputs(", ", fp);
        rep_md_esc(fp, r->covered_file);
    }
    fprintf(fp, "). Interactions: train %zu, valid %zu, test %zu. History: %s, last %zu%s; truth: %s. ", r->train,
            r->valid, r->test, r->history, r->history_length, r->mask_history ? ", masked" : ", not masked",
            r->truth ? r->truth : "?");
    fputs("Baseline: ", fp);
    rep_md_esc(fp, r->baseline);
    fprintf(fp, "; bootstrap: %zu resamples, 95%% percentile intervals. Evaluation time: %.2f s.\n\n", r->resamples,
            r->total_s);
}

static void md_improvement(FILE *fp, const v4r_rep_results *r, size_t i)
{
    const v4r_rep_metric *m = &r->models[i].m[rep_improvement_key(r)];
    if (!m->has_cmp)
        fputs("baseline", fp);
    else if (!m->has_imp)
        fputs("n/a", fp);
    else
        fprintf(fp, "%+.1f%%", m->imp);
}

static void md_table1(FILE *fp, const v4r_rep_results *r, size_t *order)
{
    int cols[8];
    size_t nc = rep_table_cols(r, cols);
    char buf[64];
    fputs("### Table 1\n\n| Group | Representation |", fp);
    for (size_t c = 0; c < nc; c++)
        fprintf(fp, " %s |", rep_key_title(r->keys[cols[c]], buf, sizeof buf));
    fprintf(fp, " Improvement (%s) |\n|---|---|", rep_key_title(r->keys[rep_improvement_key(r)], buf, sizeof buf));
    for (size_t c = 0; c <= nc; c++)
        fputs("---:|", fp);
    fputc('\n', fp);
    for (size_t o = 0; o < r->n_models; o++) {
        size_t i = order[o];
        fprintf(fp, "| %s | ", v4r_group_label(r->models[i].group));
        rep_md_esc(fp, r->models[i].name);
        fputs(" |", fp);
        for (size_t c = 0; c < nc; c++) {
            int best = rep_is_best(r, i, cols[c]);
            fprintf(fp, " %s%.4f%s |", best ? "**" : "", r->models[i].m[cols[c]].mean, best ? "**" : "");
        }
        fputc(' ', fp);
        md_improvement(fp, r, i);
        fputs(" |\n", fp);
    }
    fputs("\nBold: the best of the column. Improvement: 100 x (mean - baseline mean) / baseline mean.\n\n", fp);
}

static void md_bootstrap(FILE *fp, const v4r_rep_results *r, size_t *order)
{
    static const char *const keys[] = {"recall@10", "ndcg@10"};
    char buf[64];
    fputs("### Paired bootstrap against the baseline\n\n| Representation | Metric | Difference | 95% low | 95% high |\n"
          "|---|---|---:|---:|---:|\n",
          fp);
    for (size_t o = 0; o < r->n_models; o++)
        for (size_t q = 0; q < 2; q++) {
            int k = v4r_report_key(r, keys[q]);
            const v4r_rep_metric *m = k >= 0 ? &r->models[order[o]].m[k] : NULL;
            if (!m || !m->has_cmp)
                continue;
            fputs("| ", fp);
            rep_md_esc(fp, r->models[order[o]].name);
            fprintf(fp, " | %s | %+.4f | %+.4f | %+.4f |\n", rep_key_title(keys[q], buf, sizeof buf), m->diff, m->low,
                    m->high);
        }
    fputc('\n', fp);
}

static void md_all_metrics(FILE *fp, const v4r_rep_results *r, size_t *order)
{
    char buf[64];
    fputs("### All metrics (mean ± standard deviation over users)\n\n| Representation |", fp);
    for (size_t k = 0; k < r->n_keys; k++)
        fprintf(fp, " %s |", rep_key_title(r->keys[k], buf, sizeof buf));
    fputs("\n|---|", fp);
    for (size_t k = 0; k < r->n_keys; k++)
        fputs("---:|", fp);
    fputc('\n', fp);
    for (size_t o = 0; o < r->n_models; o++) {
        const v4r_rep_model *m = &r->models[order[o]];
        fputs("| ", fp);
        rep_md_esc(fp, m->name);
        fputs(" |", fp);
        for (size_t k = 0; k < r->n_keys; k++)
            fprintf(fp, " %.4f ± %.4f |", m->m[k].mean, m->m[k].std);
        fputc('\n', fp);
    }
    fputc('\n', fp);
}

static void md_models(FILE *fp, const v4r_rep_results *r, size_t *order)
{
    fputs("### Representations\n\n| Representation | Group | Dim | Source | Encoder | Load s | Rank s | Metrics s |\n"
          "|---|---|---:|---|---|---:|---:|---:|\n",
          fp);
    for (size_t o = 0; o < r->n_models; o++) {
        const v4r_rep_model *m = &r->models[order[o]];
        fputs("| ", fp);
        rep_md_esc(fp, m->name);
        fprintf(fp, " | %s | %zu | ", v4r_group_label(m->group), m->dim);
        rep_md_esc(fp, m->source);
        fputs(" | ", fp);
        rep_md_esc(fp, m->encoder ? m->encoder : "not recorded");
        fprintf(fp, " | %.3f | %.3f | %.3f |\n", m->load_s, m->rank_s, m->metrics_s);
    }
    fputc('\n', fp);
}

static void md_run_facts(FILE *fp, const char *facts)
{
    fputs("## Run facts\n\n| Fact | Value |\n|---|---|\n", fp);
    char *copy = v4r_strdup(facts), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = 0;
        fputs("| ", fp);
        rep_md_esc(fp, line);
        fputs(" | ", fp);
        rep_md_esc(fp, tab + 1);
        fputs(" |\n", fp);
    }
    fputc('\n', fp);
    free(copy);
}

static void md_results(FILE *fp, const v4r_rep_results *r)
{
    size_t *order = v4r_malloc(r->n_models * sizeof *order);
    rep_order(r, order);
    fprintf(fp, "## %c%s — ", r->label[0] >= 'a' && r->label[0] <= 'z' ? r->label[0] - 32 : r->label[0], r->label + 1);
    rep_md_esc(fp, r->path);
    fputs("\n\n", fp);
    md_facts(fp, r);
    md_table1(fp, r, order);
    md_bootstrap(fp, r, order);
    md_all_metrics(fp, r, order);
    md_models(fp, r, order);
    free(order);
}

int rep_write_markdown(const v4r_rep_results *res, size_t n, const v4r_report_opts *o, const char *path, v4r_err *err)
{
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    if (rc)
        return rc;
    fputs("# ", out.fp);
    rep_md_esc(out.fp, o && o->title ? o->title : "vlm4rec report");
    fputs("\n\n", out.fp);
    for (size_t i = 0; i < n; i++)
        md_results(out.fp, &res[i]);
    for (size_t i = 0; i < n; i++)
        if (res[i].run_facts) {
            md_run_facts(out.fp, res[i].run_facts);
            break;
        }
    for (size_t c = 0; o && c < o->n_cases; c++) {
        fprintf(out.fp, "%s## Case: ", c == 0 ? "" : "");
        rep_md_esc(out.fp, o->cases[c].title);
        fprintf(out.fp, "\n\n```\n%s```\n\n", o->cases[c].text);
    }
    return v4r_out_commit(&out, err);
}

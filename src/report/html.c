/* report: report.html — one self-contained page (inline CSS and SVG, no scripts): the tables of
 * report.md with machine-readable cells (data-model, data-metric) and the figures. */
#include <stdlib.h>
#include <string.h>

#include "report_internal.h"

static const char *css =
    "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}"
    "table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 8px}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}td.best{font-weight:bold;background:#eef5ff}"
    "tr.group td{background:#f3f3f3;font-style:italic}figure{margin:12px 0 24px}"
    "figcaption{color:#555;font-size:13px}pre{background:#f7f7f7;padding:8px;overflow:auto}"
    "svg text{font-family:system-ui,sans-serif}.facts{color:#333}";

static void html_facts(FILE *fp, const v4r_rep_results *r)
{
    fprintf(fp, "<p class=\"facts\">Users: %zu evaluated of %zu (no history %zu, no truth %zu). ", r->evaluated,
            r->users_total, r->no_history, r->no_truth);
    fprintf(fp, "Candidates: %zu of %zu items (", r->candidate_items, r->items);
    rep_html_esc(fp, r->candidates ? r->candidates : "all");
    if (r->covered_file) {
        fputs(", ", fp);
        rep_html_esc(fp, r->covered_file);
    }
    fprintf(fp, "). Interactions: train %zu, valid %zu, test %zu. History: %s, last %zu%s; truth: ", r->train,
            r->valid, r->test, r->history, r->history_length, r->mask_history ? ", masked" : ", not masked");
    rep_html_esc(fp, r->truth);
    fputs(". Baseline: ", fp);
    rep_html_esc(fp, r->baseline);
    fprintf(fp, "; bootstrap: %zu resamples, 95%% percentile intervals. Evaluation time: %.2f s.</p>\n",
            r->resamples, r->total_s);
}

static void html_model_attr(FILE *fp, const char *table, const char *name)
{
    fprintf(fp, "<tr data-table=\"%s\" data-model=\"", table);
    rep_html_esc(fp, name);
    fputs("\">", fp);
}

static void html_improvement(FILE *fp, const v4r_rep_results *r, size_t i)
{
    const v4r_rep_metric *m = &r->models[i].m[rep_improvement_key(r)];
    fputs("<td class=\"num\" data-metric=\"improvement\">", fp);
    if (!m->has_cmp)
        fputs("baseline", fp);
    else if (!m->has_imp)
        fputs("n/a", fp);
    else
        fprintf(fp, "%+.1f%%", m->imp);
    fputs("</td>", fp);
}

static void html_table1(FILE *fp, const v4r_rep_results *r, const size_t *order, size_t idx)
{
    int cols[8];
    size_t nc = rep_table_cols(r, cols);
    char buf[64], table[32];
    snprintf(table, sizeof table, "t1-%zu", idx);
    fprintf(fp, "<h3>Table 1</h3>\n<table id=\"%s\"><tr><th>Representation</th>", table);
    for (size_t c = 0; c < nc; c++)
        fprintf(fp, "<th>%s</th>", rep_key_title(r->keys[cols[c]], buf, sizeof buf));
    fprintf(fp, "<th>Improvement (%s)</th></tr>\n", rep_key_title(r->keys[rep_improvement_key(r)], buf, sizeof buf));
    int last_group = -1;
    for (size_t o = 0; o < r->n_models; o++) {
        size_t i = order[o];
        if (r->models[i].group != last_group)
            fprintf(fp, "<tr class=\"group\"><td colspan=\"%zu\">%s</td></tr>\n", nc + 2,
                    v4r_group_label(last_group = r->models[i].group));
        html_model_attr(fp, table, r->models[i].name);
        fputs("<td>", fp);
        rep_html_esc(fp, r->models[i].name);
        fputs("</td>", fp);
        for (size_t c = 0; c < nc; c++)
            fprintf(fp, "<td class=\"num%s\" data-metric=\"%s\">%.4f</td>", rep_is_best(r, i, cols[c]) ? " best" : "",
                    r->keys[cols[c]], r->models[i].m[cols[c]].mean);
        html_improvement(fp, r, i);
        fputs("</tr>\n", fp);
    }
    fputs("</table>\n<p>Bold: the best of the column. Improvement: 100 &times; (mean &minus; baseline mean) / baseline "
          "mean.</p>\n",
          fp);
}

static void html_all_metrics(FILE *fp, const v4r_rep_results *r, const size_t *order, size_t idx)
{
    char buf[64];
    fprintf(fp, "<h3>All metrics (mean &plusmn; standard deviation over users)</h3>\n<table id=\"all-%zu\"><tr>"
                "<th>Representation</th>",
            idx);
    for (size_t k = 0; k < r->n_keys; k++)
        fprintf(fp, "<th>%s</th>", rep_key_title(r->keys[k], buf, sizeof buf));
    fputs("</tr>\n", fp);
    snprintf(buf, sizeof buf, "all-%zu", idx);
    for (size_t o = 0; o < r->n_models; o++) {
        const v4r_rep_model *m = &r->models[order[o]];
        html_model_attr(fp, buf, m->name);
        fputs("<td>", fp);
        rep_html_esc(fp, m->name);
        fputs("</td>", fp);
        for (size_t k = 0; k < r->n_keys; k++)
            fprintf(fp, "<td class=\"num\" data-metric=\"%s\">%.4f &plusmn; %.4f</td>", r->keys[k], m->m[k].mean,
                    m->m[k].std);
        fputs("</tr>\n", fp);
    }
    fputs("</table>\n", fp);
}

static void html_models(FILE *fp, const v4r_rep_results *r, const size_t *order)
{
    fputs("<h3>Representations and timing</h3>\n<table><tr><th>Representation</th><th>Group</th><th>Dim</th>"
          "<th>Source</th><th>Encoder</th><th>Load s</th><th>Rank s</th><th>Metrics s</th></tr>\n",
          fp);
    for (size_t o = 0; o < r->n_models; o++) {
        const v4r_rep_model *m = &r->models[order[o]];
        fputs("<tr><td>", fp);
        rep_html_esc(fp, m->name);
        fprintf(fp, "</td><td>%s</td><td class=\"num\">%zu</td><td>", v4r_group_label(m->group), m->dim);
        rep_html_esc(fp, m->source);
        fputs("</td><td>", fp);
        rep_html_esc(fp, m->encoder ? m->encoder : "not recorded");
        fprintf(fp, "</td><td class=\"num\">%.3f</td><td class=\"num\">%.3f</td><td class=\"num\">%.3f</td></tr>\n",
                m->load_s, m->rank_s, m->metrics_s);
    }
    fputs("</table>\n", fp);
}

static void html_figure(FILE *fp, void (*draw)(FILE *, const v4r_rep_results *), const v4r_rep_results *r,
                        const char *caption)
{
    fputs("<figure>\n", fp);
    draw(fp, r);
    fputs("<figcaption>", fp);
    fputs(caption, fp);
    fputs("</figcaption></figure>\n", fp);
}

static void html_results(FILE *fp, const v4r_rep_results *r, size_t idx)
{
    size_t *order = v4r_malloc(r->n_models * sizeof *order);
    rep_order(r, order);
    fputs("<section><h2>", fp);
    rep_html_esc(fp, r->label);
    fputs(" <small>(", fp);
    rep_html_esc(fp, r->path);
    fputs(")</small></h2>\n", fp);
    html_facts(fp, r);
    html_table1(fp, r, order, idx);
    html_figure(fp, rep_svg_heatmap, r,
                "Metric heatmap across representations; the shade is the value relative to the best of its column.");
    html_figure(fp, rep_svg_profile, r, "Modality profile: each representation across the metrics of Table 1.");
    html_figure(fp, rep_svg_bootstrap, r,
                "Paired bootstrap 95% intervals of the per-user Recall@10 difference against the baseline "
                "(dot: mean difference).");
    html_all_metrics(fp, r, order, idx);
    html_models(fp, r, order);
    fputs("</section>\n", fp);
    free(order);
}

static void html_run_facts(FILE *fp, const char *facts)
{
    fputs("<section><h2>Run facts</h2>\n<table id=\"run-facts\"><tr><th>Fact</th><th>Value</th></tr>\n", fp);
    char *copy = v4r_strdup(facts), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = 0;
        fputs("<tr><td>", fp);
        rep_html_esc(fp, line);
        fputs("</td><td>", fp);
        rep_html_esc(fp, tab + 1);
        fputs("</td></tr>\n", fp);
    }
    fputs("</table></section>\n", fp);
    free(copy);
}

static void html_cases(FILE *fp, const v4r_report_opts *o)
{
    if (!o || !o->n_cases)
        return;
    fputs("<section><h2>Case studies</h2>\n", fp);
    for (size_t c = 0; c < o->n_cases; c++) {
        fputs("<h3>", fp);
        rep_html_esc(fp, o->cases[c].title);
        fputs("</h3>\n<pre>", fp);
        rep_html_esc(fp, o->cases[c].text);
        fputs("</pre>\n", fp);
    }
    fputs("</section>\n", fp);
}

static void html_body(FILE *fp, const v4r_rep_results *res, size_t n, const v4r_report_opts *o)
{
    size_t full = rep_full_catalog(res, n);
    for (size_t i = 0; i < n; i++)
        html_results(fp, &res[i], i);
    fputs("<section><h2>Full-catalog comparison</h2>\n", fp);
    html_figure(fp, rep_svg_bars, &res[full],
                "Recall@10 and NDCG@10 per representation; error bars: one standard deviation over users.");
    fputs("</section>\n", fp);
    for (size_t i = 0; i < n; i++)
        if (res[i].run_facts) {
            html_run_facts(fp, res[i].run_facts);
            break;
        }
    html_cases(fp, o);
}

int rep_write_html(const v4r_rep_results *res, size_t n, const v4r_report_opts *o, const char *path, v4r_err *err)
{
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    if (rc)
        return rc;
    const char *title = o && o->title ? o->title : "vlm4rec report";
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>", out.fp);
    rep_html_esc(out.fp, title);
    fprintf(out.fp, "</title>\n<style>%s</style></head><body>\n<h1>", css);
    rep_html_esc(out.fp, title);
    fputs("</h1>\n", out.fp);
    html_body(out.fp, res, n, o);
    fputs("</body></html>\n", out.fp);
    return v4r_out_commit(&out, err);
}

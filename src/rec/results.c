/* Evaluation results: the JSON file (shape in README), the text table, per-user and ranking TSVs. */
#include "vlm4rec/rec.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *metric_key(int metric, size_t k) { return v4r_sprintf("%s@%zu", v4r_metric_name(metric), k); }

static json_t *metrics_json(const v4r_eval_result *res, const v4r_model_result *m)
{
    json_t *obj = json_object();
    for (size_t k = 0; k < res->opts.nk; k++)
        for (int mt = 0; mt < V4R_NMETRICS; mt++) {
            size_t c = k * V4R_NMETRICS + (size_t)mt;
            char *key = metric_key(mt, res->opts.ks[k]);
            json_object_set_new(obj, key, json_pack("{s:f,s:f}", "mean", m->mean[c], "std", m->std[c]));
            free(key);
        }
    return obj;
}

static json_t *comparison_json(const v4r_eval_result *res, const v4r_model_result *m)
{
    if (!m->vs_baseline)
        return json_null();
    const v4r_model_result *base = &res->models[res->baseline];
    json_t *obj = json_object();
    for (size_t k = 0; k < res->opts.nk; k++)
        for (int mt = 0; mt < V4R_NMETRICS; mt++) {
            size_t c = k * V4R_NMETRICS + (size_t)mt;
            const v4r_paired *p = &m->vs_baseline[c];
            json_t *imp = base->mean[c] != 0 ? json_real(100.0 * p->diff / base->mean[c]) : json_null();
            char *key = metric_key(mt, res->opts.ks[k]);
            json_object_set_new(obj, key,
                                json_pack("{s:f,s:f,s:f,s:o}", "diff", p->diff, "low", p->low, "high", p->high,
                                          "improvement_pct", imp));
            free(key);
        }
    return obj;
}

/* The user sample: null, or how it was chosen and its user ids (dataset order). */
static json_t *sample_json(const v4r_eval_result *res, const v4r_dataset *ds)
{
    const uint8_t *sel = res->opts.proto.users;
    if (!sel)
        return json_null();
    json_t *ids = json_array();
    for (size_t u = 0; u < ds->n_users; u++)
        if (sel[u])
            json_array_append_new(ids, json_string(ds->user_id[u]));
    int drawn = res->sampled != NULL;
    return json_pack("{s:o,s:o,s:o,s:o,s:I,s:o}", "fraction",
                     drawn ? json_real(res->opts.sample_fraction) : json_null(), "seed",
                     drawn ? json_integer((json_int_t)res->opts.seed) : json_null(), "users_file",
                     res->users_path ? json_string(res->users_path) : json_null(), "population",
                     drawn ? json_integer((json_int_t)res->sample_population) : json_null(), "size",
                     (json_int_t)json_array_size(ids), "users", ids);
}

static json_t *protocol_json(const v4r_eval_result *res, const v4r_dataset *ds)
{
    const v4r_protocol *p = &res->opts.proto;
    json_t *hist = json_array(), *ks = json_array();
    for (int s = 0; s < V4R_NSPLITS; s++)
        if (p->history_splits & (1u << s))
            json_array_append_new(hist, json_string(v4r_split_name(s)));
    for (size_t k = 0; k < res->opts.nk; k++)
        json_array_append_new(ks, json_integer((json_int_t)res->opts.ks[k]));
    json_t *o = json_pack("{s:o,s:s,s:I,s:b,s:s,s:o,s:I,s:o}", "history", hist, "truth",
                          v4r_split_name(p->truth_split), "history_length", (json_int_t)p->history_length,
                          "mask_history", p->mask != V4R_MASK_NONE, "candidates", p->covered ? "covered" : "all",
                          "covered_file", res->covered_path ? json_string(res->covered_path) : json_null(),
                          "candidate_items", (json_int_t)res->set.n_candidates, "k", ks);
    json_object_set_new(o, "preset", res->opts.preset ? json_string(res->opts.preset) : json_null());
    json_object_set_new(o, "mask", json_string(v4r_mask_name(p->mask)));
    json_object_set_new(o, "profile", json_string(v4r_profile_name(p->profile)));
    json_object_set_new(o, "truth_duplicates", json_string(v4r_truth_dup_name(p->truth_duplicates)));
    json_object_set_new(o, "sample", sample_json(res, ds));
    return o;
}

static json_t *model_json(const v4r_eval_result *res, const v4r_model_result *m)
{
    return json_pack("{s:s,s:s,s:I,s:I,s:o,s:o,s:{s:f,s:f,s:f}}", "name", m->name, "source", m->spec, "dim",
                     (json_int_t)m->dim, "users", (json_int_t)res->set.n_eval, "metrics", metrics_json(res, m),
                     "vs_baseline", comparison_json(res, m), "timing", "load_s", m->load_s, "rank_s", m->rank_s,
                     "metrics_s", m->metrics_s);
}

int v4r_eval_write_json(const v4r_eval_result *res, const v4r_dataset *ds, const char *path, v4r_err *err)
{
    json_t *models = json_array();
    for (size_t i = 0; i < res->n_models; i++)
        json_array_append_new(models, model_json(res, &res->models[i]));
    json_t *root = json_pack(
        "{s:s,s:s,s:{s:s,s:I,s:I,s:{s:I,s:I,s:I}},s:o,s:{s:I,s:I,s:I,s:I,s:I},s:s,s:{s:I,s:f,s:I},s:o,s:{s:f}}",
        "format", "vlm4rec.eval/1", "version", V4R_VERSION, "dataset", "path", ds->dir ? ds->dir : "", "users",
        (json_int_t)ds->n_users, "items", (json_int_t)ds->n_items, "interactions", "train",
        (json_int_t)ds->split[V4R_TRAIN].n, "valid", (json_int_t)ds->split[V4R_VALID].n, "test",
        (json_int_t)ds->split[V4R_TEST].n, "protocol", protocol_json(res, ds), "users", "total",
        (json_int_t)res->set.n_users_total, "evaluated", (json_int_t)res->set.n_eval, "no_history",
        (json_int_t)res->set.no_history, "no_truth", (json_int_t)res->set.no_truth, "not_sampled",
        (json_int_t)res->set.not_selected, "baseline",
        res->models[res->baseline].name, "bootstrap", "resamples", (json_int_t)res->opts.bootstrap, "level", 0.95,
        "seed", (json_int_t)res->opts.seed, "models", models, "timing", "total_s", res->total_s);
    if (!root)
        return v4r_fail(err, V4R_EINTERNAL, "could not build the results JSON");
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    if (!rc) {
        if (json_dumpf(root, out.fp, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0) {
            v4r_out_abort(&out);
            rc = v4r_fail(err, V4R_EIO, "%s: cannot write", path);
        } else {
            fputc('\n', out.fp);
            rc = v4r_out_commit(&out, err);
        }
    }
    json_decref(root);
    return rc;
}

/* ---- table ---- */

static const int table_metrics[] = {V4R_M_RECALL, V4R_M_NDCG, V4R_M_HIT};

static size_t improvement_column(const v4r_eval_result *res)
{
    size_t best = 0;
    for (size_t k = 0; k < res->opts.nk; k++) {
        if (res->opts.ks[k] == 10)
            return k * V4R_NMETRICS + V4R_M_RECALL;
        if (res->opts.ks[k] > res->opts.ks[best])
            best = k;
    }
    return best * V4R_NMETRICS + V4R_M_RECALL;
}

void v4r_eval_print_table(const v4r_eval_result *res, FILE *fp)
{
    const v4r_eval_opts *o = &res->opts;
    int w = 5;
    for (size_t i = 0; i < res->n_models; i++)
        if ((int)strlen(res->models[i].name) > w)
            w = (int)strlen(res->models[i].name);
    fprintf(fp, "%-*s %5s", w, "model", "dim");
    for (size_t mi = 0; mi < 3; mi++)
        for (size_t k = 0; k < o->nk; k++) {
            char *key = metric_key(table_metrics[mi], o->ks[k]);
            fprintf(fp, " %10s", key);
            free(key);
        }
    size_t imp_col = improvement_column(res);
    char *imp_key = metric_key(V4R_M_RECALL, o->ks[imp_col / V4R_NMETRICS]);
    fprintf(fp, "  vs %s on %s\n", res->models[res->baseline].name, imp_key);
    free(imp_key);
    for (size_t i = 0; i < res->n_models; i++) {
        const v4r_model_result *m = &res->models[i];
        fprintf(fp, "%-*s %5zu", w, m->name, m->dim);
        for (size_t mi = 0; mi < 3; mi++)
            for (size_t k = 0; k < o->nk; k++) {
                size_t c = k * V4R_NMETRICS + (size_t)table_metrics[mi];
                int best = 1;
                for (size_t j = 0; j < res->n_models; j++)
                    if (res->models[j].mean[c] > m->mean[c])
                        best = 0;
                fprintf(fp, " %9.4f%c", m->mean[c], best && res->n_models > 1 ? '*' : ' ');
            }
        if (!m->vs_baseline) {
            fprintf(fp, "  (baseline)\n");
        } else {
            const v4r_paired *p = &m->vs_baseline[imp_col];
            double base = res->models[res->baseline].mean[imp_col];
            if (base != 0)
                fprintf(fp, "  %+.1f%%", 100.0 * p->diff / base);
            else
                fprintf(fp, "  n/a");
            if (o->bootstrap)
                fprintf(fp, " [%+.4f, %+.4f]", p->low, p->high);
            fputc('\n', fp);
        }
    }
}

/* ---- per-user metrics and rankings ---- */

int v4r_eval_write_per_user(const v4r_eval_result *res, const v4r_dataset *ds, const char *path, v4r_err *err)
{
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    if (rc)
        return rc;
    const v4r_eval_opts *o = &res->opts;
    const v4r_eval_set *es = &res->set;
    size_t ncols = o->nk * V4R_NMETRICS;
    fputs("model\tuser\thistory\ttruth", out.fp);
    for (size_t k = 0; k < o->nk; k++)
        for (int mt = 0; mt < V4R_NMETRICS; mt++)
            fprintf(out.fp, "\t%s@%zu", v4r_metric_name(mt), o->ks[k]);
    fputc('\n', out.fp);
    for (size_t i = 0; i < res->n_models; i++)
        for (size_t u = 0; u < es->n_eval; u++) {
            v4r_tsv_write_field(out.fp, res->models[i].name);
            putc('\t', out.fp);
            v4r_tsv_write_field(out.fp, ds->user_id[es->users[u]]);
            fprintf(out.fp, "\t%zu\t%zu", es->hist_off[u + 1] - es->hist_off[u], es->truth_off[u + 1] - es->truth_off[u]);
            for (size_t c = 0; c < ncols; c++)
                fprintf(out.fp, "\t%.6g", res->models[i].per_user[u * ncols + c]);
            fputc('\n', out.fp);
        }
    return v4r_out_commit(&out, err);
}

int v4r_eval_write_rankings(const v4r_eval_result *res, const v4r_dataset *ds, const char *path, v4r_err *err)
{
    for (size_t i = 0; i < res->n_models; i++)
        if (!res->models[i].top_items)
            return v4r_fail(err, V4R_EINTERNAL, "rankings were not kept");
    v4r_outfile out;
    int rc = v4r_out_open(&out, path, err);
    if (rc)
        return rc;
    const v4r_eval_set *es = &res->set;
    fputs("model\tuser\trank\titem\tscore\n", out.fp);
    for (size_t i = 0; i < res->n_models; i++)
        for (size_t u = 0; u < es->n_eval; u++)
            for (size_t r = 0; r < res->kmax; r++) {
                int32_t item = res->models[i].top_items[u * res->kmax + r];
                if (item < 0)
                    break;
                v4r_tsv_write_field(out.fp, res->models[i].name);
                putc('\t', out.fp);
                v4r_tsv_write_field(out.fp, ds->user_id[es->users[u]]);
                fprintf(out.fp, "\t%zu\t", r + 1);
                v4r_tsv_write_field(out.fp, ds->item_id[item]);
                fprintf(out.fp, "\t%.9g\n", (double)res->models[i].top_scores[u * res->kmax + r]);
            }
    return v4r_out_commit(&out, err);
}

/* Evaluation of several representations on one protocol's user set: rank, metrics, comparisons. */
#include "vlm4rec/rec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void v4r_eval_opts_defaults(v4r_eval_opts *o)
{
    memset(o, 0, sizeof *o);
    v4r_protocol_defaults(&o->proto);
    o->ks[0] = 5;
    o->ks[1] = 10;
    o->ks[2] = 20;
    o->nk = 3;
    o->bootstrap = 1000;
    o->seed = 0;
}

int v4r_eval_preset(const char *name, v4r_eval_opts *o)
{
    v4r_protocol *p = &o->proto;
    if (!strcmp(name, "paper")) { /* the method's Eq. 3-4; the released recommender.py, run_experiment.py */
        p->history_splits = 1u << V4R_TRAIN;
        p->history_length = 10;
        p->profile = V4R_PROFILE_NORMALIZED_MEAN;
        p->mask = V4R_MASK_PROFILE;
        p->truth_split = V4R_TEST;
        p->truth_duplicates = V4R_TRUTH_DUP_DROP;
        o->sample_fraction = 0;
        o->preset = "paper";
        return 0;
    }
    if (!strcmp(name, "released")) { /* the released evaluate_all_final.py */
        p->history_splits = 1u << V4R_TRAIN | 1u << V4R_VALID;
        p->history_length = 0;
        p->profile = V4R_PROFILE_MEAN;
        p->mask = V4R_MASK_NONE;
        p->truth_split = V4R_TEST;
        p->truth_duplicates = V4R_TRUTH_DUP_KEEP;
        o->sample_fraction = 0.01;
        o->preset = "released";
        return 0;
    }
    return -1;
}

static void per_user_metrics(const v4r_eval_set *es, const v4r_eval_opts *o, size_t kmax, const int32_t *top,
                             double *per_user)
{
    size_t ncols = o->nk * V4R_NMETRICS;
    int dup = o->proto.truth_duplicates;
#pragma omp parallel for schedule(static)
    for (size_t u = 0; u < es->n_eval; u++) {
        size_t n_set = es->truth_off[u + 1] - es->truth_off[u], lines = es->truth_lines[u];
        v4r_metrics_user_counts(top + u * kmax, kmax, es->truth + es->truth_off[u], n_set,
                                dup == V4R_TRUTH_DUP_KEEP ? lines : n_set, dup == V4R_TRUTH_DUP_DROP ? n_set : lines,
                                o->ks, o->nk, per_user + u * ncols);
    }
}

/* The rows' norms, then the rows normalized. The normalized mean refuses a zero row where it is
 * needed; the mean profile takes it as sklearn's cosine_similarity does (cosine 0 to everything). */
static int normalize_model(v4r_matrix *m, const v4r_protocol *p, const char *source, float **norms, v4r_err *err)
{
    *norms = NULL;
    if (p->profile != V4R_PROFILE_MEAN)
        return v4r_repr_normalize(m, p->covered, source, err);
    *norms = v4r_malloc((m->rows ? m->rows : 1) * sizeof **norms);
    for (size_t r = 0; r < m->rows; r++) {
        double ss = 0;
        for (size_t c = 0; c < m->cols; c++)
            ss += (double)m->data[r * m->cols + c] * m->data[r * m->cols + c];
        (*norms)[r] = (float)sqrt(ss);
    }
    uint8_t *none_needed = v4r_calloc(m->rows ? m->rows : 1, 1);
    int rc = v4r_repr_normalize(m, none_needed, source, err);
    free(none_needed);
    return rc;
}

static void mean_std(const double *per_user, size_t n, size_t ncols, double *mean, double *std)
{
    for (size_t c = 0; c < ncols; c++) {
        double s = 0, ss = 0;
        for (size_t u = 0; u < n; u++)
            s += per_user[u * ncols + c];
        double m = s / (double)n;
        for (size_t u = 0; u < n; u++) {
            double x = per_user[u * ncols + c] - m;
            ss += x * x;
        }
        mean[c] = m;
        std[c] = sqrt(ss / (double)n);
    }
}

/* native:ITEMS.npy,USERS.npy: item vectors as they are and one user vector per dataset user. */
static int load_native(const char *spec, const v4r_dataset *ds, v4r_matrix *items, v4r_matrix *users, v4r_err *err)
{
    memset(users, 0, sizeof *users);
    const char *list = spec + strlen("native:"), *comma = strchr(list, ',');
    if (!comma || comma == list || !comma[1] || strchr(comma + 1, ','))
        return v4r_fail(err, V4R_EUSAGE, "%s: native scores need native:ITEMS.npy,USERS.npy", spec);
    char *item_path = v4r_strndup(list, (size_t)(comma - list));
    int rc = v4r_repr_load(item_path, ds->n_items, items, err);
    free(item_path);
    if (!rc)
        rc = v4r_npy_read(comma + 1, users, err);
    if (!rc && users->rows != ds->n_users)
        rc = v4r_fail(err, V4R_EINPUT, "%s: %zu rows, but the dataset has %zu users (row u must be user u)", comma + 1,
                      users->rows, ds->n_users);
    for (size_t i = 0; !rc && i < users->rows * users->cols; i++)
        if (!isfinite(users->data[i]))
            rc = v4r_fail(err, V4R_EINPUT, "%s: row %zu, column %zu: %s value", comma + 1, i / users->cols,
                          i % users->cols, isnan(users->data[i]) ? "NaN" : "infinite");
    return rc;
}

static int eval_model(const v4r_dataset *ds, const v4r_eval_result *res, const v4r_model_spec *spec,
                      v4r_model_result *mr, v4r_err *err)
{
    const v4r_eval_opts *o = &res->opts;
    const v4r_eval_set *es = &res->set;
    size_t ncols = o->nk * V4R_NMETRICS, kmax = res->kmax;
    mr->name = v4r_strdup(spec->name);
    mr->spec = v4r_strdup(spec->spec);
    double t0 = v4r_now();
    v4r_matrix m = {0}, users = {0};
    float *norms = NULL;
    int native = !strncmp(spec->spec, "native:", strlen("native:"));
    int rc = native ? load_native(spec->spec, ds, &m, &users, err) : v4r_repr_load(spec->spec, ds->n_items, &m, err);
    if (!rc && !native)
        rc = normalize_model(&m, &o->proto, spec->spec, &norms, err);
    if (rc) {
        v4r_err_prefix(err, "model '%s': ", spec->name);
        v4r_matrix_free(&m);
        v4r_matrix_free(&users);
        free(norms);
        return rc;
    }
    mr->dim = m.cols;
    double t1 = v4r_now();
    mr->top_items = v4r_malloc(es->n_eval * (kmax ? kmax : 1) * sizeof *mr->top_items);
    mr->top_scores = v4r_malloc(es->n_eval * (kmax ? kmax : 1) * sizeof *mr->top_scores);
    rc = native ? v4r_rank_native(es, &o->proto, &users, &m, kmax, mr->top_items, mr->top_scores, err)
                : v4r_rank_norms(es, &o->proto, &m, norms, kmax, mr->top_items, mr->top_scores, err);
    v4r_matrix_free(&m);
    free(norms);
    v4r_matrix_free(&users);
    if (rc)
        return rc;
    double t2 = v4r_now();
    mr->per_user = v4r_malloc(es->n_eval * ncols * sizeof *mr->per_user);
    mr->mean = v4r_malloc(ncols * sizeof *mr->mean);
    mr->std = v4r_malloc(ncols * sizeof *mr->std);
    per_user_metrics(es, o, kmax, mr->top_items, mr->per_user);
    mean_std(mr->per_user, es->n_eval, ncols, mr->mean, mr->std);
    if (!o->keep_rankings) {
        free(mr->top_items);
        free(mr->top_scores);
        mr->top_items = NULL;
        mr->top_scores = NULL;
    }
    mr->load_s = t1 - t0;
    mr->rank_s = t2 - t1;
    mr->metrics_s = v4r_now() - t2;
    v4r_info("%s: %zu-d, ranked %zu users in %.2fs (load %.2fs)", spec->name, mr->dim, es->n_eval, mr->rank_s,
             mr->load_s);
    return V4R_OK;
}

static int check_options(const v4r_model_spec *specs, size_t n, const v4r_eval_opts *o, size_t *baseline,
                         v4r_err *err)
{
    if (n == 0)
        return v4r_fail(err, V4R_EUSAGE, "no model given (--model NAME=PATH.npy)");
    if (o->nk == 0)
        return v4r_fail(err, V4R_EUSAGE, "no cutoff K given");
    if (!(o->sample_fraction >= 0 && o->sample_fraction <= 1))
        return v4r_fail(err, V4R_EUSAGE, "user sample fraction %g out of range (0..1)", o->sample_fraction);
    for (size_t k = 0; k < o->nk; k++)
        if (o->ks[k] == 0 || o->ks[k] > 10000)
            return v4r_fail(err, V4R_EUSAGE, "cutoff K=%zu out of range (1..10000)", o->ks[k]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(specs[i].name, specs[j].name))
                return v4r_fail(err, V4R_EUSAGE, "model name '%s' given twice", specs[i].name);
    *baseline = 0;
    if (o->baseline) {
        size_t i = 0;
        while (i < n && strcmp(specs[i].name, o->baseline) != 0)
            i++;
        if (i == n)
            return v4r_fail(err, V4R_EUSAGE, "baseline '%s' is not one of the models", o->baseline);
        *baseline = i;
    }
    return V4R_OK;
}

int v4r_evaluate(const v4r_dataset *ds, const v4r_model_spec *specs, size_t n_specs, const v4r_eval_opts *o,
                 v4r_eval_result *res, v4r_err *err)
{
    memset(res, 0, sizeof *res);
    double t0 = v4r_now();
    int rc = check_options(specs, n_specs, o, &res->baseline, err);
    if (rc)
        return rc;
    res->opts = *o;
    res->n_items = ds->n_items;
    for (size_t k = 0; k < o->nk; k++)
        if (o->ks[k] > res->kmax)
            res->kmax = o->ks[k];
    if (o->sample_fraction > 0 && !o->proto.users) {
        v4r_sample_users(ds, o->proto.truth_split, o->sample_fraction, o->seed, &res->sampled,
                         &res->sample_population, &res->sample_size);
        res->opts.proto.users = res->sampled;
    }
    rc = v4r_eval_set_build(ds, &res->opts.proto, &res->set, err);
    if (rc) {
        free(res->sampled);
        res->sampled = NULL;
        return rc;
    }
    v4r_info("protocol: %zu users evaluated (%zu without history, %zu without truth, %zu not sampled), %zu "
             "candidate items",
             res->set.n_eval, res->set.no_history, res->set.no_truth, res->set.not_selected, res->set.n_candidates);
    res->models = v4r_calloc(n_specs, sizeof *res->models);
    for (size_t i = 0; i < n_specs && !rc; i++) {
        rc = eval_model(ds, res, &specs[i], &res->models[i], err);
        res->n_models = i + 1;
    }
    if (rc) {
        v4r_eval_result_free(res);
        return rc;
    }
    size_t ncols = o->nk * V4R_NMETRICS;
    const v4r_model_result *base = &res->models[res->baseline];
    for (size_t i = 0; i < res->n_models; i++) {
        if (i == res->baseline)
            continue;
        v4r_model_result *mr = &res->models[i];
        mr->vs_baseline = v4r_malloc(ncols * sizeof *mr->vs_baseline);
        v4r_bootstrap_paired(mr->per_user, base->per_user, res->set.n_eval, ncols, ncols, o->bootstrap, 0.95,
                             o->seed, mr->vs_baseline);
    }
    res->total_s = v4r_now() - t0;
    return V4R_OK;
}

void v4r_eval_result_free(v4r_eval_result *res)
{
    for (size_t i = 0; i < res->n_models; i++) {
        v4r_model_result *m = &res->models[i];
        free(m->name);
        free(m->spec);
        free(m->per_user);
        free(m->mean);
        free(m->std);
        free(m->top_items);
        free(m->top_scores);
        free(m->vs_baseline);
    }
    free(res->models);
    free(res->dataset_dir);
    free(res->covered_path);
    free(res->users_path);
    free(res->sampled);
    v4r_eval_set_free(&res->set);
    memset(res, 0, sizeof *res);
}

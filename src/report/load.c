/* report: reading a results JSON ("vlm4rec.eval/1") back, the row groups of Table 1. */
#include "vlm4rec/report.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const group_labels[V4R_NGROUPS] = {"Text only", "LLaVA-based fusion", "BERT-based fusion",
                                                      "Other"};
static const char *const group_keys[V4R_NGROUPS] = {"text", "llava-fusion", "bert-fusion", "other"};

const char *v4r_group_label(int group) { return group >= 0 && group < V4R_NGROUPS ? group_labels[group] : "?"; }

int v4r_group_parse(const char *name)
{
    for (int g = 0; g < V4R_NGROUPS; g++)
        if (!strcmp(name, group_keys[g]))
            return g;
    return -1;
}

static int has_word(const char *lower, const char *const *words)
{
    for (; *words; words++)
        if (strstr(lower, *words))
            return 1;
    return 0;
}

/* The naming rule (docs/report.md): fusion words make a fusion row, LLaVA- or BERT-based by the
 * text it names; gating and vision-only rows are "other"; everything else is text only. */
int v4r_group_of_name(const char *name)
{
    static const char *const gating[] = {"gating", NULL};
    static const char *const fusion[] = {"attention", "concat", "average", "mean", "smore", "fusion", "+", NULL};
    static const char *const llava[] = {"llava", "lvlm", "vlm", "desc", "grounded", "stand-in", NULL};
    static const char *const bert[] = {"bert", "title", NULL};
    static const char *const vision[] = {"vision", "clip", "visual", "image", NULL};
    char *lower = v4r_strdup(name);
    for (char *p = lower; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    int g = V4R_GROUP_TEXT;
    if (has_word(lower, gating))
        g = V4R_GROUP_OTHER;
    else if (has_word(lower, fusion))
        g = has_word(lower, llava) ? V4R_GROUP_LLAVA_FUSION : has_word(lower, bert) ? V4R_GROUP_BERT_FUSION
                                                                                    : V4R_GROUP_OTHER;
    else if (has_word(lower, vision))
        g = V4R_GROUP_OTHER;
    free(lower);
    return g;
}

int v4r_report_key(const v4r_rep_results *r, const char *key)
{
    for (size_t i = 0; i < r->n_keys; i++)
        if (!strcmp(r->keys[i], key))
            return (int)i;
    return -1;
}

static char *str_field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? v4r_strdup(json_string_value(v)) : NULL;
}

static size_t size_field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (size_t)json_integer_value(v) : 0;
}

static double num_field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

/* Flattens the "run" object into "key\tvalue" lines (nested keys joined by '.'). */
static void flatten(json_t *v, const char *prefix, FILE *out)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *sub;
        json_object_foreach (v, k, sub) {
            char *key = *prefix ? v4r_sprintf("%s.%s", prefix, k) : v4r_strdup(k);
            flatten(sub, key, out);
            free(key);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *sub;
        json_array_foreach (v, i, sub) {
            char *key = v4r_sprintf("%s[%zu]", prefix, i);
            flatten(sub, key, out);
            free(key);
        }
    } else {
        char *text = json_is_string(v) ? v4r_strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY);
        for (char *p = text; p && *p; p++)
            if (*p == '\t' || *p == '\n' || *p == '\r')
                *p = ' ';
        fprintf(out, "%s\t%s\n", prefix, text ? text : "");
        free(text);
    }
}

static char *flatten_run(json_t *run)
{
    if (!json_is_object(run))
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp)
        return NULL;
    flatten(run, "", fp);
    fclose(fp);
    return buf;
}

static const char *const metric_names[] = {"recall", "ndcg", "hit", "precision", "map"};

/* The metric keys every model has, in the order metric then K. */
static int read_keys(json_t *root, json_t *models, v4r_rep_results *r, const char *path, v4r_err *err)
{
    json_t *ks = json_object_get(json_object_get(root, "protocol"), "k");
    if (!json_is_array(ks) || json_array_size(ks) == 0)
        return v4r_fail(err, V4R_EINPUT, "%s: field 'protocol.k' missing or empty", path);
    json_t *m0 = json_object_get(json_array_get(models, 0), "metrics");
    r->keys = v4r_calloc(json_array_size(ks) * 5, sizeof *r->keys);
    for (size_t mi = 0; mi < 5; mi++)
        for (size_t i = 0; i < json_array_size(ks); i++) {
            char *key = v4r_sprintf("%s@%lld", metric_names[mi], (long long)json_integer_value(json_array_get(ks, i)));
            if (json_object_get(m0, key))
                r->keys[r->n_keys++] = key;
            else
                free(key);
        }
    return r->n_keys ? V4R_OK : v4r_fail(err, V4R_EINPUT, "%s: models[0].metrics has none of the metrics", path);
}

static int read_metric(json_t *model, const char *key, v4r_rep_metric *m, const char *where, v4r_err *err)
{
    json_t *st = json_object_get(json_object_get(model, "metrics"), key);
    json_t *mean = json_object_get(st, "mean"), *sd = json_object_get(st, "std");
    if (!json_is_number(mean) || !json_is_number(sd))
        return v4r_fail(err, V4R_EINPUT, "%s.metrics.%s: mean and std must be numbers", where, key);
    m->mean = json_number_value(mean);
    m->std = json_number_value(sd);
    json_t *cmp = json_object_get(json_object_get(model, "vs_baseline"), key);
    if (json_is_object(cmp)) {
        m->has_cmp = 1;
        m->diff = num_field(cmp, "diff");
        m->low = num_field(cmp, "low");
        m->high = num_field(cmp, "high");
        json_t *imp = json_object_get(cmp, "improvement_pct");
        m->has_imp = json_is_number(imp);
        m->imp = m->has_imp ? json_number_value(imp) : 0;
    }
    return V4R_OK;
}

static int read_model(json_t *model, size_t index, v4r_rep_results *r, const char *path, v4r_err *err)
{
    v4r_rep_model *m = &r->models[index];
    char *where = v4r_sprintf("%s: models[%zu]", path, index);
    m->name = str_field(model, "name");
    m->source = str_field(model, "source");
    m->encoder = str_field(model, "encoder");
    m->dim = size_field(model, "dim");
    m->m = v4r_calloc(r->n_keys, sizeof *m->m);
    int rc = m->name ? V4R_OK : v4r_fail(err, V4R_EINPUT, "%s: field 'name' missing", where);
    char *group = rc ? NULL : str_field(model, "group");
    m->group = group ? v4r_group_parse(group) : rc ? 0 : v4r_group_of_name(m->name);
    if (!rc && m->group < 0)
        rc = v4r_fail(err, V4R_EINPUT, "%s: group '%s' is not text, llava-fusion, bert-fusion or other", where, group);
    for (size_t k = 0; k < r->n_keys && !rc; k++)
        rc = read_metric(model, r->keys[k], &m->m[k], where, err);
    json_t *t = json_object_get(model, "timing");
    m->load_s = num_field(t, "load_s");
    m->rank_s = num_field(t, "rank_s");
    m->metrics_s = num_field(t, "metrics_s");
    free(group);
    free(where);
    return rc;
}

static void read_protocol(json_t *root, v4r_rep_results *r)
{
    json_t *ds = json_object_get(root, "dataset"), *p = json_object_get(root, "protocol");
    json_t *u = json_object_get(root, "users"), *in = json_object_get(ds, "interactions");
    r->dataset = str_field(ds, "path");
    r->items = size_field(ds, "items");
    r->users = size_field(ds, "users");
    r->train = size_field(in, "train");
    r->valid = size_field(in, "valid");
    r->test = size_field(in, "test");
    r->candidates = str_field(p, "candidates");
    r->covered_file = str_field(p, "covered_file");
    r->truth = str_field(p, "truth");
    r->history_length = size_field(p, "history_length");
    r->mask_history = json_is_true(json_object_get(p, "mask_history"));
    r->candidate_items = size_field(p, "candidate_items");
    json_t *h = json_object_get(p, "history");
    r->history = v4r_strdup(json_array_size(h) > 1 ? "train+valid" : "train");
    r->users_total = size_field(u, "total");
    r->evaluated = size_field(u, "evaluated");
    r->no_history = size_field(u, "no_history");
    r->no_truth = size_field(u, "no_truth");
    r->baseline = str_field(root, "baseline");
    r->resamples = size_field(json_object_get(root, "bootstrap"), "resamples");
    r->total_s = num_field(json_object_get(root, "timing"), "total_s");
    r->run_facts = flatten_run(json_object_get(root, "run"));
    r->label = str_field(root, "label");
    if (!r->label)
        r->label = v4r_strdup(r->candidates && !strcmp(r->candidates, "covered") ? "covered subset" : "full catalog");
}

static int read_results(json_t *root, v4r_rep_results *r, const char *path, v4r_err *err)
{
    json_t *fmt = json_object_get(root, "format"), *models = json_object_get(root, "models");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "vlm4rec.eval/1"))
        return v4r_fail(err, V4R_EINPUT, "%s: field 'format' is not \"vlm4rec.eval/1\"", path);
    if (!json_is_array(models) || json_array_size(models) == 0)
        return v4r_fail(err, V4R_EINPUT, "%s: field 'models' missing or empty", path);
    int rc = read_keys(root, models, r, path, err);
    read_protocol(root, r);
    r->models = v4r_calloc(json_array_size(models), sizeof *r->models);
    for (size_t i = 0; i < json_array_size(models) && !rc; i++, r->n_models++)
        rc = read_model(json_array_get(models, i), i, r, path, err);
    if (!rc)
        r->n_models = json_array_size(models);
    for (size_t i = 0; i < r->n_models && !rc; i++)
        if (r->baseline && !strcmp(r->models[i].name, r->baseline))
            r->baseline_index = i;
    return rc;
}

int v4r_report_load(const char *path, v4r_rep_results *r, v4r_err *err)
{
    memset(r, 0, sizeof *r);
    r->path = v4r_strdup(path);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root && !v4r_file_exists(path))
        return v4r_fail(err, V4R_EIO, "%s: cannot open", path);
    if (!root)
        return v4r_fail(err, V4R_EINPUT, "%s:%d: %s", path, je.line, je.text);
    int rc = read_results(root, r, path, err);
    json_decref(root);
    return rc;
}

void v4r_report_results_free(v4r_rep_results *r)
{
    for (size_t i = 0; i < r->n_models; i++) {
        free(r->models[i].name);
        free(r->models[i].source);
        free(r->models[i].encoder);
        free(r->models[i].m);
    }
    for (size_t k = 0; k < r->n_keys; k++)
        free(r->keys[k]);
    free(r->keys);
    free(r->models);
    free(r->path);
    free(r->dataset);
    free(r->candidates);
    free(r->covered_file);
    free(r->truth);
    free(r->history);
    free(r->baseline);
    free(r->run_facts);
    free(r->label);
    memset(r, 0, sizeof *r);
}

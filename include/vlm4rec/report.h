/* report: results JSON files ("vlm4rec.eval/1") read back into tables and figures — report.md and
 * a self-contained report.html (inline SVG, no scripts, no external assets). */
#ifndef VLM4REC_REPORT_H
#define VLM4REC_REPORT_H

#include "vlm4rec/base.h"

/* The row groups of the method's Table 1, in table order. */
enum { V4R_GROUP_TEXT, V4R_GROUP_LLAVA_FUSION, V4R_GROUP_BERT_FUSION, V4R_GROUP_OTHER, V4R_NGROUPS };
const char *v4r_group_label(int group); /* "Text only", "LLaVA-based fusion", ... */
/* The group of a representation: its "group" field when given ("text", "llava-fusion",
 * "bert-fusion", "other"; -1 when unknown), else the rule on its name (docs/report.md). */
int v4r_group_parse(const char *name);
int v4r_group_of_name(const char *name);

/* One metric of one model: mean and std over users; paired comparison with the baseline. */
typedef struct {
    double mean, std;
    double diff, low, high, imp; /* vs the baseline; has_cmp = 0 for the baseline itself */
    int has_cmp, has_imp;
} v4r_rep_metric;

typedef struct {
    char *name, *source, *encoder; /* encoder: NULL when the file does not say */
    int group;
    size_t dim;
    v4r_rep_metric *m; /* one per key of the results' metric list; NULL entries never occur */
    double load_s, rank_s, metrics_s;
} v4r_rep_model;

/* One results file: a protocol, its user set and its models. */
typedef struct {
    char *path, *dataset, *candidates, *covered_file, *truth, *history, *baseline;
    size_t items, users, train, valid, test;
    size_t users_total, evaluated, no_history, no_truth, candidate_items, history_length;
    int mask_history;
    size_t resamples;
    size_t n_keys;
    char **keys; /* metric keys present for every model, "recall@5", ... */
    size_t n_models;
    v4r_rep_model *models;
    size_t baseline_index;
    double total_s;
    char *run_facts; /* the optional "run" object flattened to "key\tvalue\n" lines; NULL when absent */
    char *label;     /* "covered subset" or "full catalog" (or the "label" field) */
} v4r_rep_results;

/* Reads a results file; errors name the file and the field. */
int v4r_report_load(const char *path, v4r_rep_results *r, v4r_err *err);
void v4r_report_results_free(v4r_rep_results *r);
/* The index of a metric key in r->keys, or -1. */
int v4r_report_key(const v4r_rep_results *r, const char *key);

/* A case study: a user's recent history and two top-K lists, rendered as preformatted text. */
typedef struct {
    char *title; /* e.g. "user U00012: description vs title" */
    char *text;  /* what `vlm4rec explain` prints */
} v4r_rep_case;

typedef struct {
    const char *title; /* page title; NULL = "vlm4rec report" */
    const v4r_rep_case *cases;
    size_t n_cases;
} v4r_report_opts;

/* Writes dir/report.md and dir/report.html (atomically each). */
int v4r_report_write(const v4r_rep_results *res, size_t n, const v4r_report_opts *o, const char *dir, v4r_err *err);

#endif

/* rec: protocols (who is evaluated on what), item representations, profiles, cosine scoring with
 * top-K, the method's metrics, paired bootstrap comparisons, and results files. */
#ifndef VLM4REC_REC_H
#define VLM4REC_REC_H

#include "vlm4rec/base.h"
#include "vlm4rec/data.h"
#include "vlm4rec/io.h"

/* ---- protocol and the evaluated user set ---- */

typedef struct {
    unsigned history_splits; /* bit per split: 1 << V4R_TRAIN (default), | 1 << V4R_VALID */
    int truth_split;         /* V4R_VALID (default) or V4R_TEST */
    size_t history_length;   /* L: profile from the last L history items; 0 = all */
    int keep_history;        /* 1: do not mask history items (the method's published script) */
    const uint8_t *covered;  /* NULL = all items are candidates; else the covered-subset protocol */
} v4r_protocol;

void v4r_protocol_defaults(v4r_protocol *p);

/* Per evaluated user, in CSR form (offsets of n_eval + 1): the chronological history used for the
 * profile, the sorted set of masked items, the sorted truth set. */
typedef struct {
    size_t n_eval;
    int32_t *users; /* dataset user index of each evaluated user */
    size_t *hist_off, *mask_off, *truth_off;
    int32_t *hist, *mask, *truth;
    size_t n_users_total, no_history, no_truth; /* no_truth counts users with a history only */
    size_t n_candidates;
    int32_t *candidates; /* candidate item indices, ascending */
} v4r_eval_set;

/* Every user's interactions in the given splits (bit per split), chronologically: the order of
 * eval's histories (timestamp, then split order and file order). User u's items are
 * items[off[u] .. off[u + 1]); off has n_users + 1 entries. Caller frees both. */
void v4r_user_histories(const v4r_dataset *ds, unsigned splits, size_t **off, int32_t **items);

int v4r_eval_set_build(const v4r_dataset *ds, const v4r_protocol *p, v4r_eval_set *es, v4r_err *err);
void v4r_eval_set_free(v4r_eval_set *es);

/* ---- item representations ---- */

/* Loads a representation for n_items items from a spec:
 *   PATH.npy                 the vectors as they are
 *   concat:A.npy,B.npy[,..]  concatenation of the row-wise L2-normalized blocks
 *   mean:A.npy,B.npy[,..]    naive average of the L2-normalized blocks (equal sizes required)
 *   mean-pad:A.npy,B.npy     naive average after zero-padding the smaller blocks to the largest size
 * Every file must have n_items rows and no NaN/Inf; errors name the file and the row. */
int v4r_repr_load(const char *spec, size_t n_items, v4r_matrix *out, v4r_err *err);
/* L2-normalizes the rows in place. A zero row is an error (naming source and row) when needed is
 * NULL or needed[row] is set; other zero rows stay zero. */
int v4r_repr_normalize(v4r_matrix *m, const uint8_t *needed, const char *source, v4r_err *err);

/* ---- ranking ---- */

/* For every evaluated user: profile = normalized mean of the last L history vectors; scores =
 * cosine to every candidate; top kmax by (score desc, item index asc), masked items skipped.
 * items must be row-normalized. Writes n_eval x kmax item indices (-1 pads short lists) and
 * scores. Parallel over user blocks (OpenMP). Two kernels give the same lists (up to float
 * near-ties): one BLAS product per user block and item chunk, or, where the CPU has AVX-512, a
 * fused scoring + top-K kernel (VLM4REC_KERNEL=auto|blas|avx512). The AVX-512 kernel reorders
 * items->data in place during the call and restores it bit-exactly before returning: no other
 * thread may read the matrix meanwhile, and it must be writable. */
int v4r_rank(const v4r_eval_set *es, const v4r_protocol *p, const v4r_matrix *items, size_t kmax,
             int32_t *top_items, float *top_scores, v4r_err *err);
/* v4r_rank with a model's own user vectors (users: one row per dataset user) in place of the
 * profiles, the scores their dot products with the unnormalized item vectors (SMORE's scoring);
 * the same candidates, masks and order. BLAS kernel. */
int v4r_rank_native(const v4r_eval_set *es, const v4r_protocol *p, const v4r_matrix *users, const v4r_matrix *items,
                    size_t kmax, int32_t *top_items, float *top_scores, v4r_err *err);
/* The profile of one user (exposed for tests and the recommend command): out has items->cols. */
void v4r_profile(const int32_t *hist, size_t n_hist, size_t history_length, const v4r_matrix *items, float *out);

/* ---- metrics ---- */

enum { V4R_M_RECALL, V4R_M_NDCG, V4R_M_HIT, V4R_M_PRECISION, V4R_M_MAP, V4R_NMETRICS };
const char *v4r_metric_name(int metric); /* "recall", "ndcg", ... */

#define V4R_MAX_K 32
/* Metrics of one ranked list (kmax entries, -1 = none) against a sorted truth set, for each K:
 * out[k * V4R_NMETRICS + metric]. Binary relevance; NDCG's IDCG over min(|truth|, K); MAP@K
 * divides by min(|truth|, K). Empty truth gives zeros. */
void v4r_metrics_user(const int32_t *ranked, size_t kmax, const int32_t *truth, size_t n_truth, const size_t *ks,
                      size_t nk, double *out);

/* Paired bootstrap over users of mean(a - b): percentile interval at level (e.g. 0.95). The
 * resamples are seeded by (seed, resample) so threads do not change the result. */
typedef struct {
    double diff, low, high;
} v4r_paired;
void v4r_bootstrap_paired(const double *a, const double *b, size_t n, size_t stride, size_t ncols, size_t resamples,
                          double level, uint64_t seed, v4r_paired *out);

/* ---- evaluation of several models on one user set ---- */

/* spec: a representation (v4r_repr_load), or native:ITEMS.npy,USERS.npy for a model's own scores
 * (v4r_rank_native: item vectors as they are, one user vector per dataset user). */
typedef struct {
    char *name;
    char *spec;
} v4r_model_spec;

typedef struct {
    v4r_protocol proto;
    size_t ks[V4R_MAX_K], nk;
    const char *baseline; /* model name; NULL = the first */
    size_t bootstrap;     /* resamples; 0 = no intervals */
    uint64_t seed;
    int keep_rankings;
} v4r_eval_opts;

void v4r_eval_opts_defaults(v4r_eval_opts *o);

typedef struct {
    char *name, *spec;
    size_t dim;
    double *per_user;        /* n_eval x (nk * V4R_NMETRICS) */
    double *mean, *std;      /* nk * V4R_NMETRICS; std is the population std over users */
    int32_t *top_items;      /* n_eval x kmax when kept */
    float *top_scores;
    v4r_paired *vs_baseline; /* nk * V4R_NMETRICS, NULL for the baseline itself */
    double load_s, rank_s, metrics_s;
} v4r_model_result;

typedef struct {
    v4r_eval_set set;
    v4r_eval_opts opts;
    size_t kmax;
    char *dataset_dir;
    char *covered_path;
    size_t n_covered;
    size_t n_items;
    size_t n_models, baseline;
    v4r_model_result *models;
    double total_s;
} v4r_eval_result;

int v4r_evaluate(const v4r_dataset *ds, const v4r_model_spec *specs, size_t n_specs, const v4r_eval_opts *o,
                 v4r_eval_result *res, v4r_err *err);
void v4r_eval_result_free(v4r_eval_result *res);

/* Results: JSON (shape documented in README), a text table, per-user metrics and rankings TSVs. */
int v4r_eval_write_json(const v4r_eval_result *res, const v4r_dataset *ds, const char *path, v4r_err *err);
void v4r_eval_print_table(const v4r_eval_result *res, FILE *fp);
int v4r_eval_write_per_user(const v4r_eval_result *res, const v4r_dataset *ds, const char *path, v4r_err *err);
int v4r_eval_write_rankings(const v4r_eval_result *res, const v4r_dataset *ds, const char *path, v4r_err *err);

#endif

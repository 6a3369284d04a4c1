/* rec: protocols (who is evaluated on what), item representations, profiles, cosine scoring with
 * top-K, the method's metrics, paired bootstrap comparisons, and results files. */
#ifndef VLM4REC_REC_H
#define VLM4REC_REC_H

#include "vlm4rec/base.h"
#include "vlm4rec/data.h"
#include "vlm4rec/io.h"

/* ---- protocol and the evaluated user set ---- */

/* Which items leave a user's candidates: every item of the history splits (default), only the
 * profile's items H_u (the last L; the method's Eq. 4 and the released recommender.py), or none
 * (the released evaluate_all_final.py). */
enum { V4R_MASK_HISTORY = 0, V4R_MASK_PROFILE, V4R_MASK_NONE };
/* The profile: the mean of the L2-normalized vectors (default), or the mean of the vectors as they
 * are (the released code: item_embeddings[history].mean(axis=0)); either is renormalized and
 * scored by cosine. */
enum { V4R_PROFILE_NORMALIZED_MEAN = 0, V4R_PROFILE_MEAN };
/* Repeated truth lines (the same item twice in a user's truth split): drop = the truth is a set
 * (default); keep = Recall divides by the number of lines and IDCG (and MAP's divisor) counts
 * min(K, lines) (the released evaluate_all_final.py); idcg = Recall over distinct items, IDCG and
 * MAP over lines (the released metrics.py). Hits always count distinct items. */
enum { V4R_TRUTH_DUP_DROP = 0, V4R_TRUTH_DUP_KEEP, V4R_TRUTH_DUP_IDCG };

typedef struct {
    unsigned history_splits; /* bit per split: 1 << V4R_TRAIN (default), | 1 << V4R_VALID */
    int truth_split;         /* V4R_VALID (default) or V4R_TEST */
    size_t history_length;   /* L: profile from the last L history items; 0 = all */
    int mask;                /* V4R_MASK_* */
    int profile;             /* V4R_PROFILE_* */
    int truth_duplicates;    /* V4R_TRUTH_DUP_* */
    const uint8_t *covered;  /* NULL = all items are candidates; else the covered-subset protocol */
    const uint8_t *users;    /* NULL = every user; else only users u with users[u] set (a sample) */
} v4r_protocol;

void v4r_protocol_defaults(v4r_protocol *p);
const char *v4r_mask_name(int mask);          /* "history", "profile", "none" */
const char *v4r_profile_name(int profile);    /* "normalized-mean", "mean" */
const char *v4r_truth_dup_name(int mode);     /* "drop", "keep", "idcg" */
/* The inverse of the names above; -1 when unknown. */
int v4r_mask_parse(const char *name);
int v4r_profile_parse(const char *name);
int v4r_truth_dup_parse(const char *name);

/* A seeded sample of the users with at least one line in the truth split (ascending user index):
 * size floor(fraction x n + 1e-9), at least 1 (fraction in (0, 1]), drawn by a partial
 * Fisher-Yates shuffle of that list with v4r_rng seeded by seed (position i swaps with
 * i + v4r_rng_below(n - i), for i < size). sel (n_users bytes, caller frees) marks the sample. */
void v4r_sample_users(const v4r_dataset *ds, int truth_split, double fraction, uint64_t seed, uint8_t **sel,
                      size_t *population, size_t *size);
/* Reads a user-id file (one a line; blank lines and '#' comments skipped) into a 0/1 mask over
 * the dataset's users. Unknown ids are an error naming the line. */
int v4r_read_users(const v4r_dataset *ds, const char *path, uint8_t **sel, size_t *count, v4r_err *err);

/* Per evaluated user, in CSR form (offsets of n_eval + 1): the chronological history used for the
 * profile, the sorted set of masked items, the sorted truth set; truth_lines[u]: the user's
 * candidate truth lines, repeats counted (the count the truth-duplicates modes use). */
typedef struct {
    size_t n_eval;
    int32_t *users; /* dataset user index of each evaluated user */
    size_t *hist_off, *mask_off, *truth_off;
    int32_t *hist, *mask, *truth;
    size_t *truth_lines;
    size_t n_users_total, no_history, no_truth; /* no_truth counts users with a history only */
    size_t not_selected;                        /* users left out by protocol.users */
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
 *   PATH.npy                     the vectors as they are
 *   concat:A.npy,B.npy[,..]      concatenation of the row-wise L2-normalized blocks
 *   mean:A.npy,B.npy[,..]        naive average of the L2-normalized blocks (equal sizes required)
 *   mean-pad:A.npy,B.npy         naive average after zero-padding the smaller blocks to the largest size
 *   concat-raw:A.npy,B.npy[,..]  concatenation of the blocks as they are (not normalized)
 *   mean-raw:A.npy,B.npy[,..]    average of the blocks as they are (equal sizes required)
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
/* v4r_rank for any p->profile: norms[i] is item i's norm before normalization (items hold the
 * normalized rows); with V4R_PROFILE_MEAN each history row is weighted by its norm, so the
 * profile is the mean of the vectors as they were. norms may be NULL for the normalized mean. */
int v4r_rank_norms(const v4r_eval_set *es, const v4r_protocol *p, const v4r_matrix *items, const float *norms,
                   size_t kmax, int32_t *top_items, float *top_scores, v4r_err *err);
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
/* v4r_metrics_user with the counts given apart: hits against the truth set, Recall divided by
 * n_recall, IDCG over min(n_ideal, K) positions and MAP divided by min(n_ideal, K) (repeated truth
 * lines, V4R_TRUTH_DUP_*). */
void v4r_metrics_user_counts(const int32_t *ranked, size_t kmax, const int32_t *truth, size_t n_truth,
                             size_t n_recall, size_t n_ideal, const size_t *ks, size_t nk, double *out);

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
    uint64_t seed;           /* the bootstrap's, and the user sample's */
    double sample_fraction;  /* > 0: evaluate v4r_sample_users(fraction, seed) (unless proto.users) */
    const char *preset;      /* the protocol preset's name, recorded in the results; NULL = none */
    int keep_rankings;
} v4r_eval_opts;

void v4r_eval_opts_defaults(v4r_eval_opts *o);
/* Sets every protocol setting of a named preset (README "Protocol presets"; docs/protocols.md):
 *   paper     history train, last 10, normalized mean, mask the profile's items, truth test
 *             (a set), every user
 *   released  history train+valid, all of it, mean of the vectors as they are, no mask, truth test
 *             with repeated lines kept, a 1% user sample (seeded by o->seed)
 * Returns 0, or -1 for an unknown name (o untouched). */
int v4r_eval_preset(const char *name, v4r_eval_opts *o);

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
    char *users_path;        /* the --users file, recorded in the results */
    uint8_t *sampled;        /* the user sample drawn by v4r_evaluate (NULL: none drawn) */
    size_t sample_population, sample_size;
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

/* data: the dataset directory (items, users, train/valid/test interactions), importers from the
 * Kaggle and MMRec layouts, the synthetic catalog with planted semantics, and statistics. */
#ifndef VLM4REC_DATA_H
#define VLM4REC_DATA_H

#include "vlm4rec/base.h"
#include "vlm4rec/io.h"

enum { V4R_TRAIN = 0, V4R_VALID = 1, V4R_TEST = 2, V4R_NSPLITS = 3 };

/* One split's interactions in file order. */
typedef struct {
    size_t n, cap;
    int32_t *user;   /* user index */
    int32_t *item;   /* item index */
    int64_t *ts;     /* timestamp (0 when absent) */
    uint8_t *has_ts; /* 1 when the line gave a timestamp */
    long *line;      /* source line (for messages); 0 when built in memory */
} v4r_split;

typedef struct {
    char *dir;
    size_t n_items, n_users;
    size_t items_cap, users_cap;
    char **item_id, **item_title, **item_image; /* item index order; title/image may be "" */
    char **user_id;
    v4r_strmap item_index, user_index;
    v4r_arena strings; /* holds every id, title and image string */
    v4r_split split[V4R_NSPLITS];
} v4r_dataset;

const char *v4r_split_name(int split); /* "train", "valid", "test" */
int v4r_split_parse(const char *name);  /* -1 when unknown */

/* Building in memory (importers, synth, tests). */
void v4r_dataset_init(v4r_dataset *ds);
void v4r_dataset_free(v4r_dataset *ds);
/* Adds an item (or returns the index of an existing id; then *is_new is 0). */
int32_t v4r_dataset_add_item(v4r_dataset *ds, const char *id, const char *title, const char *image, int *is_new);
int32_t v4r_dataset_add_user(v4r_dataset *ds, const char *id, int *is_new);
void v4r_split_push(v4r_split *s, int32_t user, int32_t item, int64_t ts, int has_ts, long line);

/* Loads DIR (items.tsv, users.tsv, train.tsv, valid.tsv, test.tsv) with full validation: every
 * error names the file, line and field. Duplicate (user, item) pairs inside one split are an error
 * naming both lines; the same pair in two splits is allowed (a repeat purchase). */
int v4r_dataset_load(const char *dir, v4r_dataset *ds, v4r_err *err);
/* v4r_dataset_load that keeps repeated (user, item) lines inside a split, each in file order: for
 * evaluations that count repeated truth lines (eval --truth-duplicates keep|idcg). */
int v4r_dataset_load_repeats(const char *dir, v4r_dataset *ds, v4r_err *err);
/* Reads items.tsv (header item[, title[, image]]) or users.tsv (header user) into ds, skipping
 * blank lines; a repeated id is an error naming both lines. */
int v4r_dataset_read_items(v4r_dataset *ds, const char *path, v4r_err *err);
int v4r_dataset_read_users(v4r_dataset *ds, const char *path, v4r_err *err);
/* Checks that no (user, item) pair repeats inside a split; the message names files[split] (the
 * split's source file) and both lines. */
int v4r_dataset_check_duplicates(const v4r_dataset *ds, const char *const files[V4R_NSPLITS], v4r_err *err);
/* Drops later repeats of a (user, item) pair inside one split, keeping the first and the order of
 * the rest; returns how many were dropped over all splits. */
size_t v4r_dataset_dedupe(v4r_dataset *ds);
/* Writes the dataset layout into dir (created if needed); each file atomically. */
int v4r_dataset_write(const char *dir, const v4r_dataset *ds, v4r_err *err);

/* Importers: read SRC in a foreign layout, write the dataset layout (and features/) into OUT.
 * Options: dedupe = keep the first of duplicate interactions instead of failing. */
typedef struct {
    int dedupe;
} v4r_import_opts;
int v4r_import_kaggle(const char *src, const char *out, const v4r_import_opts *o, v4r_err *err);
int v4r_import_mmrec(const char *src, const char *out, const v4r_import_opts *o, v4r_err *err);
int v4r_import_tsv(const char *src, const char *out, const v4r_import_opts *o, v4r_err *err);

/* The synthetic catalog with planted semantics (docs/synthetic.md says exactly what is planted). */
typedef struct {
    size_t users, items, interactions;
    uint64_t seed;
    int images;               /* also render a small PNG per item into images/ (64x64 RGB) */
    size_t dim_title, dim_visual, dim_desc;
    double covered_fraction;  /* share of items listed in covered.txt */
} v4r_synth_opts;
void v4r_synth_defaults(v4r_synth_opts *o);
int v4r_synth(const char *out, const v4r_synth_opts *o, v4r_err *err);

/* Statistics: counts, density, history lengths per split; with an optional coverage list
 * (item ids, one a line) or vector file, how much of the catalog and of the interactions it covers. */
typedef struct {
    const char *covered_path; /* NULL or a file of item ids */
    const char *vectors_path; /* NULL or a .npy with one row per item: nonzero rows count as covered */
    int json;                 /* JSON instead of text */
} v4r_stats_opts;
int v4r_dataset_stats(const v4r_dataset *ds, const v4r_stats_opts *o, FILE *out, v4r_err *err);

/* Reads a covered-items file (item ids, one a line; blank lines and '#' comments skipped) into a
 * 0/1 mask over the dataset's items. Unknown ids are an error naming the line. */
int v4r_read_covered(const v4r_dataset *ds, const char *path, uint8_t **mask, size_t *count, v4r_err *err);

#endif

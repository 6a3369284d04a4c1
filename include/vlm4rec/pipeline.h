/* pipeline: `vlm4rec run` — the study described by a config file (docs/pipeline.md), run stage
 * by stage into a run directory, each step skipped when its outputs are newer than its inputs and
 * its settings unchanged. */
#ifndef VLM4REC_PIPELINE_H
#define VLM4REC_PIPELINE_H

#include "vlm4rec/base.h"

/* ---- config files: [section] or [kind NAME], key = value, # comments ---- */

typedef struct {
    char *key, *value;
    int line;
    int used;
} v4r_conf_kv;

typedef struct {
    char *kind, *name; /* name NULL for [kind] */
    int line;
    v4r_conf_kv *kv;
    size_t n;
} v4r_conf_section;

typedef struct {
    char *path; /* for messages */
    v4r_conf_section *sec;
    size_t n;
} v4r_conf;

/* Parses and checks against the schema (section kinds, keys, repeats); errors are "path:line: ...". */
int v4r_conf_parse(const char *path, const char *text, v4r_conf *c, v4r_err *err);
void v4r_conf_free(v4r_conf *c);
const v4r_conf_section *v4r_conf_section_get(const v4r_conf *c, const char *kind);
const v4r_conf_kv *v4r_conf_get(const v4r_conf_section *s, const char *key); /* NULL when absent */

/* The embedded default config (the demo's; also shipped as configs/demo.conf). */
extern const char v4r_default_config[];

/* ---- running ---- */

enum { V4R_STAGE_DATASET, V4R_STAGE_GROUND, V4R_STAGE_ENCODE, V4R_STAGE_VISION, V4R_STAGE_FUSION, V4R_STAGE_EVAL,
       V4R_STAGE_REPORT, V4R_NSTAGES };
const char *v4r_stage_name(int stage);
int v4r_stage_parse(const char *name); /* -1 when unknown */

typedef struct {
    const char *config_path; /* for messages and relative paths */
    const char *config_text; /* the config itself */
    const char *exe;         /* the vlm4rec executable the steps run */
    const char *run_dir;     /* overrides [run] dir when set */
    int from_stage;          /* force this stage and those after it; -1 = none */
    int dry_run;             /* print the plan (run / skip per step) and stop */
} v4r_run_opts;

/* Runs the pipeline. Prints one line per step (ran or up to date) on stdout. */
int v4r_pipeline_run(const v4r_run_opts *o, v4r_err *err);


/* ---- per-item reuse of an earlier vector file (src/pipeline/reuse.c, docs/pipeline.md) ----
 * Beside OUT.npy, OUT.keys.tsv holds one key per row (the item id and a hex sha256 of what made the
 * row: the model's identity, the options that change numbers, the exact input), so a later run
 * copies the rows whose key is unchanged and computes only the others. */

typedef struct {
    size_t n_new;     /* computed: the item had no earlier vector */
    size_t n_changed; /* computed: the item's input, model or options changed */
    size_t n_reused;  /* copied bit for bit from the earlier output */
    size_t n_removed; /* earlier items no longer in the dataset */
    size_t n_failed;  /* computed but got no vector (embed-images: the image failed) */
    size_t n_empty;   /* nothing to compute (encode: no text) */
} v4r_reuse_counts;

typedef struct {
    float *vec;         /* rows x dim, the earlier vectors */
    size_t rows, dim;
    char **item, **key; /* per earlier row; key "-" when the row had no vector */
    v4r_strmap index;   /* item -> earlier row */
} v4r_reuse;

/* OUT with .keys.tsv in place of .npy (caller frees). */
char *v4r_reuse_keys_path(const char *npy);
/* Loads npy and its keys file. Returns 1 when they are usable, else 0 with the reason in why
 * (missing, unreadable, or the keys do not describe these vectors) and an empty r. */
int v4r_reuse_load(v4r_reuse *r, const char *npy, char *why, size_t why_len);
void v4r_reuse_free(v4r_reuse *r);
/* The earlier rows of --reuse PREV (or, without it, of output when it exists) for vectors of dim
 * columns: when they cannot be used, a warning "PREV: why; redo" and r stays empty. */
void v4r_reuse_prepare(v4r_reuse *r, const char *reuse, const char *output, size_t dim, const char *redo);
/* The earlier row of item when its key equals key (a hex sha256; never "-"), else NULL; counts
 * the item as reused, changed or new. */
const float *v4r_reuse_lookup(const v4r_reuse *r, const char *item, const char *key, v4r_reuse_counts *c);
/* Counts the earlier items that are not in current (item id -> index). */
void v4r_reuse_count_removed(const v4r_reuse *r, const v4r_strmap *current, v4r_reuse_counts *c);
/* The key of one input: sha256 of identity, a NUL, and the n bytes of data. */
void v4r_reuse_key(const char *identity, const void *data, size_t n, char hex[65]);
/* Writes npy's keys file (after npy itself is written): items[i] and keys[i] ("-" for a row without
 * a vector) for its rows, the digest of its vectors, and the counts. Atomic. */
int v4r_reuse_write(const char *npy, char *const *items, char *const *keys, size_t n, const v4r_reuse_counts *c,
                    v4r_err *err);
/* The counts a keys file recorded; -1 when there is none. */
int v4r_reuse_read_counts(const char *npy, v4r_reuse_counts *c);
/* "N new, N changed, N reused, N removed, N failed" (caller frees). */
char *v4r_reuse_counts_text(const v4r_reuse_counts *c);

#endif

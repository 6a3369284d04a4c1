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

#endif

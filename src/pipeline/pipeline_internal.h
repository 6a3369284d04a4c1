/* pipeline: the plan (steps built from the config) shared by the planner, the runner and the
 * results annotation. */
#ifndef V4R_PIPELINE_INTERNAL_H
#define V4R_PIPELINE_INTERNAL_H

#include "vlm4rec/pipeline.h"

/* One step: a vlm4rec command with its inputs, outputs and settings. */
typedef struct {
    int stage;
    char *id;                /* "encode.title", ... */
    char **argv;             /* argv[0] is the executable; "@STANDIN@" is replaced by the stand-in's URL */
    size_t argc, argcap;
    char **in, **out;        /* files; a step is up to date when every out is newer than every in */
    size_t n_in, n_out;
    char *stdout_path;       /* when set, the command's stdout goes there (atomically) */
    int standin;             /* needs the in-process stand-in server while it runs */
    int protocol;            /* eval: the protocol whose results it annotates; -1 otherwise */
    char *counts;            /* a per-item step: its vector file (the counts in its keys file), or for
                                grounding the summary file it prints */
} pl_step;

typedef struct {
    char *name, *path, *encoder, *covered; /* covered: the list of items with a vector, NULL if unknown */
} pl_text;

typedef struct {
    char *name, *spec, *group, *encoder;
    int skipped; /* refers to a fusion model that is not trained in this build */
} pl_model;

typedef struct {
    char *name, *label, *json;
    size_t *models, n_models;
} pl_protocol;

typedef struct {
    const v4r_run_opts *o;
    v4r_conf conf;
    char *run_dir, *dataset, *state_dir;
    pl_step *steps;
    size_t n_steps;
    pl_text *texts;
    size_t n_texts;
    char *vision_path, *vision_encoder;
    pl_model *models;
    size_t n_models;
    pl_protocol *protos;
    size_t n_protos;
    int ground, standin, train_available;
    char *ground_endpoint, *ground_model, *ground_prompt, *cache;
    int endpoint_line;
    char *dataset_desc, *fusion_note;
} pl_plan;

int pl_plan_build(pl_plan *p, const v4r_run_opts *o, v4r_err *err);
int pl_plan_models(pl_plan *p, v4r_err *err); /* models, protocols, report steps */
void pl_plan_free(pl_plan *p);

pl_step *pl_step_new(pl_plan *p, int stage, const char *id);
void pl_arg(pl_step *s, const char *arg);
void pl_argf(pl_step *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pl_in(pl_step *s, const char *path);
void pl_out(pl_step *s, const char *path);

/* Config values: a string (or def), a size, a yes/no; errors name path:line. */
const char *pl_str(const v4r_conf_section *s, const char *key, const char *def);
int pl_size(const pl_plan *p, const v4r_conf_section *s, const char *key, size_t def, size_t *out, v4r_err *err);
int pl_bool(const pl_plan *p, const v4r_conf_section *s, const char *key, int def, int *out, v4r_err *err);
int pl_conf_fail(const pl_plan *p, int line, v4r_err *err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A file name from a free-form name (letters, digits, '-', '_', '.'; others become '_'). */
char *pl_slug(const char *name);

/* Runs the executable with argv (a child process); returns its exit code, or -1 if it could not run. */
int pl_spawn(char *const *argv, const char *stdout_path, int quiet);
/* Adds label, groups, encoders and the run facts to a protocol's results JSON. */
int pl_annotate(const pl_plan *p, size_t protocol, v4r_err *err);
/* A per-item step's counts of its last run ("N new, N changed, N reused, ..."), NULL when it has none. */
char *pl_item_counts(const pl_step *s);

#endif

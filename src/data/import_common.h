/* Shared by the importers (import_kaggle.c, import_mmrec.c, import_tsv.c): an import in progress
 * (the dataset being built, the source file of each split, the feature matrices to write), column
 * lookup by name, timestamp parsing, and the final validate-then-write step. Private to src/data. */
#ifndef VLM4REC_IMPORT_COMMON_H
#define VLM4REC_IMPORT_COMMON_H

#include "vlm4rec/data.h"

typedef struct {
    char *name;     /* written as OUT/features/<name> */
    char *src_path; /* for messages */
    v4r_matrix m;
} v4r_imp_feature;

typedef struct {
    const char *format; /* "kaggle", "mmrec", "tsv": for messages */
    const char *src;
    v4r_dataset ds;
    char *split_file[V4R_NSPLITS]; /* source file of each split (messages, duplicate reports) */
    v4r_imp_feature *feat;
    size_t nfeat, feat_cap;
} v4r_importer;

void v4r_imp_init(v4r_importer *im, const char *format, const char *src);
void v4r_imp_free(v4r_importer *im);

/* Reads a .npy feature matrix (any float dtype, converted to float32) to be written as
 * features/<name>; rows are checked against the item count in v4r_imp_finish. */
int v4r_imp_add_feature(v4r_importer *im, const char *src_path, const char *name, v4r_err *err);

/* Validates the whole import (train not empty, features rows == items, duplicates: an error, or
 * dropped with a warning under o->dedupe), then creates OUT and writes the dataset layout and
 * features/, each file atomically. Nothing touches OUT before validation passes. */
int v4r_imp_finish(v4r_importer *im, const char *out, const v4r_import_opts *o, v4r_err *err);

/* Finds a column by name, case-insensitively (surrounding blanks and a UTF-8 byte order mark
 * ignored). names is a NULL-terminated list in order of preference; returns the column index of
 * the first name present, or -1. */
int v4r_imp_find_column(char *const *fields, size_t n, const char *const *names);
/* "a, b, c" for messages (static buffer). */
const char *v4r_imp_name_list(const char *const *names);

/* Parses a timestamp cell: empty means absent (*has = 0); otherwise an integer, or a decimal with
 * an all-zero fraction ("1355616000.0", as pandas writes integer columns that held a NaN).
 * Returns 0, or -1 when malformed. */
int v4r_imp_parse_ts(const char *s, int64_t *ts, int *has);

/* Path of a file in dir that must exist; a missing one is V4R_EINPUT naming the layout. On success
 * *path is set (caller frees). alt (may be NULL) is an accepted second name. */
int v4r_imp_require(const v4r_importer *im, const char *dir, const char *name, const char *alt, char **path,
                    v4r_err *err);

/* SRC must be a directory: a missing one is V4R_EIO, another kind of file V4R_EINPUT. */
int v4r_imp_check_dir(const char *dir, v4r_err *err);

#endif

/* placeholder: importers (being written) */
#include "vlm4rec/data.h"
int v4r_import_kaggle(const char *s, const char *o, const v4r_import_opts *x, v4r_err *err) { (void)s; (void)o; (void)x; return v4r_fail(err, V4R_EINTERNAL, "not yet"); }
int v4r_import_mmrec(const char *s, const char *o, const v4r_import_opts *x, v4r_err *err) { (void)s; (void)o; (void)x; return v4r_fail(err, V4R_EINTERNAL, "not yet"); }
int v4r_import_tsv(const char *s, const char *o, const v4r_import_opts *x, v4r_err *err) { (void)s; (void)o; (void)x; return v4r_fail(err, V4R_EINTERNAL, "not yet"); }

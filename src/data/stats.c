/* placeholder: statistics (being written) */
#include "vlm4rec/data.h"
int v4r_dataset_stats(const v4r_dataset *ds, const v4r_stats_opts *o, FILE *out, v4r_err *err) { (void)ds; (void)o; (void)out; return v4r_fail(err, V4R_EINTERNAL, "not yet"); }

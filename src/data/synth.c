/* placeholder: the synthetic catalog (being written) */
#include "vlm4rec/data.h"
void v4r_synth_defaults(v4r_synth_opts *o) { (void)o; }
int v4r_synth(const char *out, const v4r_synth_opts *o, v4r_err *err) { (void)out; (void)o; return v4r_fail(err, V4R_EINTERNAL, "synth: not yet"); }

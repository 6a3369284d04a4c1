/* Internal to the fusion module: SMORE's graph builders and trainer. */
#ifndef V4R_SMORE_INTERNAL_H
#define V4R_SMORE_INTERNAL_H

#include "vlm4rec/fusion.h"

/* The element-wise maximum of two sparse matrices of one shape over the union of their entries. */
void v4r_spmat_max(const v4r_spmat *a, const v4r_spmat *b, v4r_spmat *out);
/* The symmetrically normalized user-item graph ((users + items)^2) and its users x items block,
 * from interactions (repeats count once). */
void v4r_ui_graph(size_t n_users, size_t n_items, const int32_t *user, const int32_t *item, size_t n_inter,
                  v4r_spmat *adj, v4r_spmat *r_norm);

#endif

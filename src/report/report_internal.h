/* report: helpers shared by the Markdown and HTML writers and the SVG figures. */
#ifndef V4R_REPORT_INTERNAL_H
#define V4R_REPORT_INTERNAL_H

#include <stdio.h>

#include "vlm4rec/report.h"

/* The columns of Table 1 present in r: indices into r->keys (at most 6). */
size_t rep_table_cols(const v4r_rep_results *r, int *cols);
/* The key the Improvement column uses (recall@10, else the first key). */
int rep_improvement_key(const v4r_rep_results *r);
/* 1 when model i has the highest mean of key k (ties are all best). */
int rep_is_best(const v4r_rep_results *r, size_t i, int k);
/* Model indices in table order: by group, then as in the file. */
void rep_order(const v4r_rep_results *r, size_t *order);
/* "Recall@10" for "recall@10" into buf. */
const char *rep_key_title(const char *key, char *buf, size_t n);
/* Text escaped for HTML/SVG (& < > " ') and for a Markdown table cell (| and newlines). */
void rep_html_esc(FILE *fp, const char *s);
void rep_md_esc(FILE *fp, const char *s);
/* A color of the line/bar palette. */
const char *rep_color(size_t i);
/* The results file drawn as the full-catalog comparison: the first with all items as candidates,
 * else the last. */
size_t rep_full_catalog(const v4r_rep_results *res, size_t n);

/* Figures (inline SVG). */
void rep_svg_heatmap(FILE *fp, const v4r_rep_results *r);
void rep_svg_bars(FILE *fp, const v4r_rep_results *r);
void rep_svg_profile(FILE *fp, const v4r_rep_results *r);
void rep_svg_bootstrap(FILE *fp, const v4r_rep_results *r);

int rep_write_markdown(const v4r_rep_results *res, size_t n, const v4r_report_opts *o, const char *path, v4r_err *err);
int rep_write_html(const v4r_rep_results *res, size_t n, const v4r_report_opts *o, const char *path, v4r_err *err);

#endif

/* report: the figures as inline SVG — metric heatmap, full-catalog bars with standard-deviation
 * error bars, modality profile lines, bootstrap intervals. Fixed sizes, no scripts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report_internal.h"

enum { LABEL_W = 230, CELL_W = 78, CELL_H = 24 };

static void svg_open(FILE *fp, const char *cls, double w, double h)
{
    fprintf(fp, "<svg class=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                "viewBox=\"0 0 %.0f %.0f\" role=\"img\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n",
            cls, w, h, w, h);
}

static void svg_text(FILE *fp, double x, double y, const char *anchor, const char *extra, const char *text)
{
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"12\"%s%s>", x, y, anchor,
            extra ? " " : "", extra ? extra : "");
    rep_html_esc(fp, text);
    fputs("</text>\n", fp);
}

/* A blue scale from white (t = 0) to dark blue (t = 1). */
static void shade(double t, char *buf, size_t n)
{
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    int r = (int)(247 - t * (247 - 8)), g = (int)(251 - t * (251 - 48)), b = (int)(255 - t * (255 - 107));
    snprintf(buf, n, "#%02x%02x%02x", r, g, b);
}

/* Heatmap columns: the Recall, NDCG and Hit keys. */
static size_t heat_keys(const v4r_rep_results *r, size_t *keys)
{
    size_t n = 0;
    for (size_t k = 0; k < r->n_keys; k++)
        if (!strncmp(r->keys[k], "recall@", 7) || !strncmp(r->keys[k], "ndcg@", 5) || !strncmp(r->keys[k], "hit@", 4))
            keys[n++] = k;
    return n;
}

void rep_svg_heatmap(FILE *fp, const v4r_rep_results *r)
{
    size_t *order = v4r_malloc(r->n_models * sizeof *order), *keys = v4r_malloc(r->n_keys * sizeof *keys);
    size_t nk = heat_keys(r, keys);
    rep_order(r, order);
    double w = LABEL_W + CELL_W * (double)nk + 10, h = 30 + CELL_H * (double)r->n_models + 10;
    svg_open(fp, "heatmap", w, h);
    char buf[64], color[16];
    for (size_t c = 0; c < nk; c++)
        svg_text(fp, LABEL_W + CELL_W * (c + 0.5), 20, "middle", NULL, rep_key_title(r->keys[keys[c]], buf, sizeof buf));
    for (size_t o = 0; o < r->n_models; o++) {
        const v4r_rep_model *m = &r->models[order[o]];
        double y = 30 + CELL_H * (double)o;
        svg_text(fp, LABEL_W - 8, y + 16, "end", NULL, m->name);
        for (size_t c = 0; c < nk; c++) {
            size_t k = keys[c];
            double best = 0;
            for (size_t j = 0; j < r->n_models; j++)
                best = fmax(best, r->models[j].m[k].mean);
            double t = best > 0 ? m->m[k].mean / best : 0;
            shade(t, color, sizeof color);
            fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"%s\" stroke=\"#fff\"/>\n",
                    LABEL_W + CELL_W * (double)c, y, CELL_W, CELL_H, color);
            snprintf(buf, sizeof buf, "%.4f", m->m[k].mean);
            svg_text(fp, LABEL_W + CELL_W * (c + 0.5), y + 16, "middle", t > 0.55 ? "fill=\"#fff\"" : NULL, buf);
        }
    }
    fputs("</svg>\n", fp);
    free(order);
    free(keys);
}

/* Axis ticks from 0 to top on a chart whose plot area spans y0 (bottom) to y1 (top). */
static void y_axis(FILE *fp, double x0, double x1, double y0, double y1, double top)
{
    char buf[32];
    for (int t = 0; t <= 4; t++) {
        double v = top * t / 4, y = y0 - (y0 - y1) * t / 4;
        fprintf(fp, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, x1, y, y);
        snprintf(buf, sizeof buf, "%.3f", v);
        svg_text(fp, x0 - 6, y + 4, "end", NULL, buf);
    }
}

static void bar_with_error(FILE *fp, double x, double bw, double y0, double scale, const v4r_rep_metric *m,
                           const char *color)
{
    double top = y0 - m->mean * scale, hi = y0 - (m->mean + m->std) * scale;
    double lo = y0 - fmax(0, m->mean - m->std) * scale;
    fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x, top, bw,
            fmax(y0 - top, 0.5), color);
    fprintf(fp, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"#222\" fill=\"none\"/>\n",
            x + bw / 2, lo, hi, x + bw / 4, hi, x + 3 * bw / 4, x + bw / 4, lo, x + 3 * bw / 4);
}

void rep_svg_bars(FILE *fp, const v4r_rep_results *r)
{
    static const char *const keys[] = {"recall@10", "ndcg@10"};
    int k[2] = {v4r_report_key(r, keys[0]), v4r_report_key(r, keys[1])};
    size_t *order = v4r_malloc(r->n_models * sizeof *order);
    rep_order(r, order);
    double gw = 64, x0 = 70, y0 = 300, y1 = 40, w = x0 + gw * (double)r->n_models + 20, h = y0 + 150, top = 1e-9;
    for (size_t i = 0; i < r->n_models; i++)
        for (int q = 0; q < 2; q++)
            if (k[q] >= 0)
                top = fmax(top, r->models[i].m[k[q]].mean + r->models[i].m[k[q]].std);
    svg_open(fp, "bars", w, h);
    y_axis(fp, x0, w - 10, y0, y1, top);
    char buf[64];
    for (int q = 0; q < 2; q++) {
        fprintf(fp, "<rect x=\"%.0f\" y=\"12\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", x0 + 130.0 * q,
                rep_color((size_t)q));
        svg_text(fp, x0 + 130.0 * q + 16, 22, "start", NULL, rep_key_title(keys[q], buf, sizeof buf));
    }
    for (size_t o = 0; o < r->n_models; o++) {
        double gx = x0 + gw * (double)o;
        for (int q = 0; q < 2; q++)
            if (k[q] >= 0)
                bar_with_error(fp, gx + 8 + 24.0 * q, 22, y0, (y0 - y1) / top, &r->models[order[o]].m[k[q]],
                               rep_color((size_t)q));
        char *tr = v4r_sprintf("transform=\"rotate(-40 %.1f %.1f)\"", gx + 32, y0 + 14);
        svg_text(fp, gx + 32, y0 + 14, "end", tr, r->models[order[o]].name);
        free(tr);
    }
    fprintf(fp, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#222\"/>\n</svg>\n", x0, w - 10, y0,
            y0);
    free(order);
}

void rep_svg_profile(FILE *fp, const v4r_rep_results *r)
{
    int cols[8];
    size_t nc = rep_table_cols(r, cols), *order = v4r_malloc(r->n_models * sizeof *order);
    rep_order(r, order);
    double x0 = 70, x1 = 70 + 110 * (double)(nc > 1 ? nc - 1 : 1), y0 = 300, y1 = 30, top = 1e-9;
    double w = x1 + 280, h = fmax(y0 + 40, 30 + 18.0 * (double)r->n_models);
    for (size_t i = 0; i < r->n_models; i++)
        for (size_t c = 0; c < nc; c++)
            top = fmax(top, r->models[i].m[cols[c]].mean);
    svg_open(fp, "profile", w, h);
    y_axis(fp, x0, x1, y0, y1, top);
    char buf[64];
    double step = nc > 1 ? (x1 - x0) / (double)(nc - 1) : 0;
    for (size_t c = 0; c < nc; c++)
        svg_text(fp, x0 + step * (double)c, y0 + 20, "middle", NULL, rep_key_title(r->keys[cols[c]], buf, sizeof buf));
    for (size_t o = 0; o < r->n_models; o++) {
        const v4r_rep_model *m = &r->models[order[o]];
        fprintf(fp, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", rep_color(o));
        for (size_t c = 0; c < nc; c++)
            fprintf(fp, "%s%.1f,%.1f", c ? " " : "", x0 + step * (double)c, y0 - m->m[cols[c]].mean / top * (y0 - y1));
        fputs("\"/>\n", fp);
        fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"4\" fill=\"%s\"/>\n", x1 + 30,
                26 + 18.0 * (double)o, rep_color(o));
        svg_text(fp, x1 + 50, 32 + 18.0 * (double)o, "start", NULL, m->name);
    }
    fputs("</svg>\n", fp);
    free(order);
}

void rep_svg_bootstrap(FILE *fp, const v4r_rep_results *r)
{
    int k = v4r_report_key(r, "recall@10");
    k = k >= 0 ? k : 0;
    size_t *order = v4r_malloc(r->n_models * sizeof *order), rows = 0;
    rep_order(r, order);
    double lo = 0, hi = 0;
    for (size_t i = 0; i < r->n_models; i++)
        if (r->models[i].m[k].has_cmp) {
            lo = fmin(lo, r->models[i].m[k].low);
            hi = fmax(hi, r->models[i].m[k].high);
            rows++;
        }
    if (hi - lo < 1e-9)
        hi = lo + 1e-3;
    double x0 = LABEL_W, x1 = LABEL_W + 420, w = x1 + 30, h = 50 + 22.0 * (double)(rows ? rows : 1);
    svg_open(fp, "bootstrap", w, h);
    double zx = x0 + (0 - lo) / (hi - lo) * (x1 - x0);
    fprintf(fp, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"20\" y2=\"%.1f\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n", zx,
            zx, h - 20);
    char buf[32];
    snprintf(buf, sizeof buf, "%+.4f", lo);
    svg_text(fp, x0, h - 6, "start", NULL, buf);
    snprintf(buf, sizeof buf, "%+.4f", hi);
    svg_text(fp, x1, h - 6, "end", NULL, buf);
    svg_text(fp, zx, 14, "middle", NULL, rows ? "0" : "no comparison (one representation)");
    size_t row = 0;
    for (size_t o = 0; o < r->n_models; o++) {
        const v4r_rep_metric *m = &r->models[order[o]].m[k];
        if (!m->has_cmp)
            continue;
        double y = 34 + 22.0 * (double)row++, a = x0 + (m->low - lo) / (hi - lo) * (x1 - x0);
        double b = x0 + (m->high - lo) / (hi - lo) * (x1 - x0), d = x0 + (m->diff - lo) / (hi - lo) * (x1 - x0);
        svg_text(fp, x0 - 8, y + 4, "end", NULL, r->models[order[o]].name);
        fprintf(fp, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n",
                a, fmax(b, a + 1), y, y);
        fprintf(fp, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", d, y, m->low > 0 ? "#2ca02c"
                                                                                 : m->high < 0 ? "#d62728"
                                                                                               : "#555");
    }
    fputs("</svg>\n", fp);
    free(order);
}

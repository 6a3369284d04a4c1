/* The method's metrics per user (Recall, NDCG, Hit, Precision, MAP at K) and the paired bootstrap. */
#include "vlm4rec/rec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *metric_names[V4R_NMETRICS] = {"recall", "ndcg", "hit", "precision", "map"};

const char *v4r_metric_name(int metric) { return metric >= 0 && metric < V4R_NMETRICS ? metric_names[metric] : "?"; }

static int in_sorted(const int32_t *v, size_t n, int32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo] == x;
}

void v4r_metrics_user(const int32_t *ranked, size_t kmax, const int32_t *truth, size_t n_truth, const size_t *ks,
                      size_t nk, double *out)
{
    v4r_metrics_user_counts(ranked, kmax, truth, n_truth, n_truth, n_truth, ks, nk, out);
}

void v4r_metrics_user_counts(const int32_t *ranked, size_t kmax, const int32_t *truth, size_t n_truth,
                             size_t n_recall, size_t n_ideal, const size_t *ks, size_t nk, double *out)
{
    memset(out, 0, nk * V4R_NMETRICS * sizeof *out);
    if (n_truth == 0 || n_recall == 0 || n_ideal == 0)
        return;
    for (size_t k = 0; k < nk; k++) {
        size_t K = ks[k], hits = 0, ideal = n_ideal < K ? n_ideal : K;
        double dcg = 0, idcg = 0, ap = 0;
        for (size_t r = 0; r < K && r < kmax; r++) {
            if (ranked[r] < 0 || !in_sorted(truth, n_truth, ranked[r]))
                continue;
            hits++;
            dcg += 1.0 / log2((double)r + 2.0);
            ap += (double)hits / (double)(r + 1);
        }
        for (size_t r = 0; r < ideal; r++)
            idcg += 1.0 / log2((double)r + 2.0);
        double *o = out + k * V4R_NMETRICS;
        o[V4R_M_RECALL] = (double)hits / (double)n_recall;
        o[V4R_M_NDCG] = dcg / idcg;
        o[V4R_M_HIT] = hits > 0;
        o[V4R_M_PRECISION] = (double)hits / (double)K;
        o[V4R_M_MAP] = ap / (double)ideal;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* numpy's default percentile: linear interpolation between order statistics */
static double quantile_sorted(const double *v, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t i = (size_t)floor(pos);
    if (i + 1 >= n)
        return v[n - 1];
    double f = pos - (double)i;
    return v[i] + f * (v[i + 1] - v[i]);
}

void v4r_bootstrap_paired(const double *a, const double *b, size_t n, size_t stride, size_t ncols, size_t resamples,
                          double level, uint64_t seed, v4r_paired *out)
{
    double *d = v4r_malloc((n ? n : 1) * ncols * sizeof *d);
    for (size_t c = 0; c < ncols; c++) {
        double sum = 0;
        for (size_t u = 0; u < n; u++) {
            d[u * ncols + c] = a[u * stride + c] - b[u * stride + c];
            sum += d[u * ncols + c];
        }
        out[c].diff = out[c].low = out[c].high = n ? sum / (double)n : 0;
    }
    if (resamples == 0 || n == 0) {
        free(d);
        return;
    }
    double *means = v4r_malloc(resamples * ncols * sizeof *means); /* column-major: c * resamples + r */
#pragma omp parallel
    {
        double *acc = v4r_malloc(ncols * sizeof *acc);
#pragma omp for schedule(static)
        for (size_t r = 0; r < resamples; r++) {
            v4r_rng rng;
            v4r_rng_seed(&rng, seed * 0x9E3779B97F4A7C15ULL + r + 1);
            memset(acc, 0, ncols * sizeof *acc);
            for (size_t i = 0; i < n; i++) {
                const double *row = d + v4r_rng_below(&rng, n) * ncols;
                for (size_t c = 0; c < ncols; c++)
                    acc[c] += row[c];
            }
            for (size_t c = 0; c < ncols; c++)
                means[c * resamples + r] = acc[c] / (double)n;
        }
        free(acc);
    }
    double tail = (1.0 - level) / 2.0;
    for (size_t c = 0; c < ncols; c++) {
        double *col = means + c * resamples;
        qsort(col, resamples, sizeof *col, cmp_double);
        out[c].low = quantile_sorted(col, resamples, tail);
        out[c].high = quantile_sorted(col, resamples, 1.0 - tail);
    }
    free(means);
    free(d);
}

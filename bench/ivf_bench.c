/* The IVF index at catalog scale: a synthetic catalog with planted cluster structure, the index
 * built with --ivf defaults, then Recall@10 against the exact scan and queries per second of both,
 * over a ladder of nprobe values; writes the items, queries and exact lists as .npy for
 * bench/ivf_faiss.py. Prints one JSON object a line.
 *
 * Generator (seeded): T = 100 topic directions (unit Gaussian); C = N / 200 cluster centres, centre
 * c = normalize(topic[c % T] + g), g Gaussian of norm about 1; item i belongs to cluster i % C and is
 * normalize(centre + 0.8 g'). Users (for the build's recall check) and queries: 10 items of one
 * random cluster; a query is the normalized mean of its 10 item vectors (a user profile).
 * Usage: ivf_bench OUT_DIR N_ITEMS DIM N_QUERIES THREADS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "vlm4rec/index.h"
#include "vlm4rec/io.h"

enum { TOPICS = 100, PER_CLUSTER = 200, HIST = 10, K = 10, N_USERS = 2000 };

static void gauss_unit(v4r_rng *rng, float *v, size_t d, const float *base, float scale)
{
    double ss = 0;
    for (size_t k = 0; k < d; k++) {
        v[k] = (base ? base[k] : 0) + scale * (float)v4r_rng_normal(rng) / sqrtf((float)d);
        ss += (double)v[k] * v[k];
    }
    for (size_t k = 0; k < d; k++)
        v[k] /= (float)sqrt(ss);
}

static void history(v4r_rng *rng, size_t n, size_t nc, int32_t *h)
{
    size_t c = (size_t)v4r_rng_below(rng, nc), per = n / nc, first = (size_t)v4r_rng_below(rng, per);
    for (size_t j = 0; j < HIST; j++)
        h[j] = (int32_t)(c + ((first + j * 7) % per) * nc);
}

static double qps(const v4r_index *ix, const float *q, size_t nq, size_t batch, size_t nprobe, int threads,
                  int32_t *items)
{
    size_t d = v4r_index_dim(ix);
    v4r_index_query *qs = calloc(nq, sizeof *qs);
    float *scores = malloc(nq * K * sizeof *scores);
    for (size_t i = 0; i < nq; i++)
        qs[i] = (v4r_index_query){.vector = q + i * d, .k = K, .nprobe = nprobe};
    v4r_err err = {0};
    double t0 = v4r_now();
    for (size_t b = 0; b < nq; b += batch) {
        size_t m = nq - b < batch ? nq - b : batch;
        if (v4r_index_search_threads(ix, qs + b, m, K, threads, items + b * K, scores + b * K, &err)) {
            fprintf(stderr, "ivf_bench: %s\n", err.msg);
            exit(1);
        }
    }
    double s = v4r_now() - t0;
    free(qs);
    free(scores);
    return (double)nq / s;
}

static double recall(const int32_t *a, const int32_t *b, size_t nq)
{
    size_t hit = 0;
    for (size_t q = 0; q < nq; q++)
        for (size_t i = 0; i < K; i++)
            for (size_t j = 0; j < K; j++)
                hit += a[q * K + i] == b[q * K + j];
    return (double)hit / (double)(nq * K);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: ivf_bench OUT_DIR N_ITEMS DIM N_QUERIES THREADS\n");
        return 2;
    }
    const char *out = argv[1];
    size_t n = strtoul(argv[2], NULL, 10), d = strtoul(argv[3], NULL, 10), nq = strtoul(argv[4], NULL, 10);
    int threads = atoi(argv[5]);
    size_t nc = n / PER_CLUSTER;
    v4r_rng rng;
    v4r_rng_seed(&rng, 42);
    float *topic = malloc(TOPICS * d * sizeof *topic), *centre = malloc(nc * d * sizeof *centre);
    for (size_t t = 0; t < TOPICS; t++)
        gauss_unit(&rng, topic + t * d, d, NULL, 1);
    for (size_t c = 0; c < nc; c++)
        gauss_unit(&rng, centre + c * d, d, topic + c % TOPICS * d, 1.0f);
    v4r_matrix m = {malloc(n * d * sizeof(float)), n, d};
    v4r_dataset ds;
    v4r_dataset_init(&ds);
    char id[32];
    for (size_t i = 0; i < n; i++) {
        gauss_unit(&rng, m.data + i * d, d, centre + i % nc * d, 0.8f);
        snprintf(id, sizeof id, "item%zu", i);
        v4r_dataset_add_item(&ds, id, "", "", NULL);
    }
    int32_t h[HIST];
    for (size_t u = 0; u < N_USERS; u++) {
        snprintf(id, sizeof id, "user%zu", u);
        v4r_dataset_add_user(&ds, id, NULL);
        history(&rng, n, nc, h);
        for (size_t j = 0; j < HIST; j++)
            v4r_split_push(&ds.split[V4R_TRAIN], (int32_t)u, h[j], (int64_t)j, 1, 0);
    }
    float *q = calloc(nq * d, sizeof *q);
    for (size_t i = 0; i < nq; i++) {
        history(&rng, n, nc, h);
        double ss = 0;
        for (size_t j = 0; j < HIST; j++)
            for (size_t k = 0; k < d; k++)
                q[i * d + k] += m.data[(size_t)h[j] * d + k];
        for (size_t k = 0; k < d; k++)
            ss += (double)q[i * d + k] * q[i * d + k];
        for (size_t k = 0; k < d; k++)
            q[i * d + k] /= (float)sqrt(ss);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/ivf.idx", out);
    v4r_index_build_opts o;
    v4r_index_build_defaults(&o);
    o.ivf = 1;
    o.check_users = 1000;
    v4r_index_build_report rep;
    v4r_err err = {0};
    double t0 = v4r_now();
    if (v4r_index_build(&ds, &m, &o, path, &rep, &err)) {
        fprintf(stderr, "ivf_bench: %s\n", err.msg);
        return 1;
    }
    double build_s = v4r_now() - t0;
    printf("{\"part\":\"build\",\"items\":%zu,\"dim\":%zu,\"clusters\":%zu,\"nlist\":%zu,\"nprobe\":%zu,"
           "\"recall_check\":%.4f,\"build_s\":%.1f,\"ivf_s\":%.1f,\"file_bytes\":%llu}\n",
           n, d, nc, rep.nlist, rep.nprobe, rep.ivf_recall_vs_exact, build_s, rep.ivf_seconds,
           (unsigned long long)rep.file_bytes);
    fflush(stdout);
    snprintf(path, sizeof path, "%s/items.npy", out);
    v4r_npy_write(path, m.data, n, d, NULL);
    snprintf(path, sizeof path, "%s/queries.npy", out);
    v4r_npy_write(path, q, nq, d, NULL);
    free(m.data);
    v4r_dataset_free(&ds);
    v4r_index *ix;
    snprintf(path, sizeof path, "%s/ivf.idx", out);
    if (v4r_index_open(path, 0, &ix, &err)) {
        fprintf(stderr, "ivf_bench: %s\n", err.msg);
        return 1;
    }
    int32_t *exact = malloc(nq * K * sizeof *exact), *got = malloc(nq * K * sizeof *got);
    double exact_qps = qps(ix, q, nq, 64, V4R_INDEX_EXACT, threads, exact);
    float *ex = malloc(nq * K * sizeof *ex);
    for (size_t i = 0; i < nq * K; i++)
        ex[i] = (float)exact[i];
    snprintf(path, sizeof path, "%s/exact.npy", out);
    v4r_npy_write(path, ex, nq, K, NULL);
    printf("{\"part\":\"exact\",\"qps\":%.1f,\"batch\":64,\"threads\":%d}\n", exact_qps, threads);
    fflush(stdout);
    size_t ladder[] = {1, 2, 4, 8, 16, 32, 64, 128, 0};
    for (size_t i = 0; ladder[i] || i == 8; i++) {
        size_t np = ladder[i] ? ladder[i] : rep.nprobe;
        double r64 = qps(ix, q, nq, 64, np, threads, got);
        double r1 = qps(ix, q, nq < 200 ? nq : 200, 1, np, threads, got);
        double rc = recall(got, exact, nq < 200 ? nq : 200);
        qps(ix, q, nq, 64, np, threads, got);
        printf("{\"part\":\"ivf\",\"nprobe\":%zu,\"default\":%s,\"recall\":%.4f,\"qps\":%.1f,\"qps_batch1\":%.1f,"
               "\"speedup\":%.1f}\n", np, ladder[i] ? "false" : "true", recall(got, exact, nq), r64, r1,
               r64 / exact_qps);
        (void)rc;
        fflush(stdout);
        if (!ladder[i])
            break;
    }
    v4r_index_close(ix);
    free(exact);
    free(got);
    free(ex);
    free(q);
    free(topic);
    free(centre);
    return 0;
}

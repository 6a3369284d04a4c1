/* Queries per second of v4r_index_search on the calling thread at the method's catalog shape
 * (38,493 random unit vectors of 384 dimensions; queries: profiles of 10 random history items,
 * k = 10, history masked), for float32, float16 and int8 storage and batches of 1, 8, 32 and 64
 * queries; beside it, one single-threaded cblas_sgemm (or sgemv at nq = 1) over the same float32
 * rows (scores only, no top-K) for reference; with THREADS > 1 also the scan split over 2..THREADS
 * threads (v4r_index_search_threads). Prints one JSON object a line.
 * Usage: index_bench OUT_DIR [SECONDS_PER_CASE [THREADS]]   (OPENBLAS_NUM_THREADS=1) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlm4rec/index.h"

enum { N_ITEMS = 38493, DIM = 384, N_USERS = 2000, HIST = 10, K = 10, MAXQ = 64 };

static void make_dataset(v4r_dataset *ds, v4r_matrix *m)
{
    v4r_rng rng;
    v4r_rng_seed(&rng, 7);
    v4r_dataset_init(ds);
    char id[32];
    for (size_t i = 0; i < N_ITEMS; i++) {
        snprintf(id, sizeof id, "item%zu", i);
        v4r_dataset_add_item(ds, id, "", "", NULL);
    }
    for (size_t u = 0; u < N_USERS; u++) {
        snprintf(id, sizeof id, "user%zu", u);
        v4r_dataset_add_user(ds, id, NULL);
        for (size_t h = 0; h < HIST; h++)
            v4r_split_push(&ds->split[V4R_TRAIN], (int32_t)u, (int32_t)v4r_rng_below(&rng, N_ITEMS), (int64_t)h, 1,
                           0);
    }
    *m = (v4r_matrix){v4r_malloc(sizeof(float) * N_ITEMS * DIM), N_ITEMS, DIM};
    for (size_t i = 0; i < (size_t)N_ITEMS * DIM; i++)
        m->data[i] = (float)v4r_rng_normal(&rng);
}

/* Queries per second of batches of nq user queries, cycling over the users, for about secs; the
 * scan on `threads` threads. */
static double run_index(const v4r_index *ix, size_t nq, int threads, double secs)
{
    v4r_index_query q[MAXQ];
    int32_t items[MAXQ * K];
    float scores[MAXQ * K];
    v4r_err err = {0};
    size_t done = 0, u = 0;
    double t0 = v4r_now(), t = t0;
    while (t - t0 < secs) {
        for (size_t i = 0; i < nq; i++, u = (u + 1) % N_USERS) {
            memset(&q[i], 0, sizeof q[i]);
            q[i].n_history = v4r_index_user_history(ix, (int32_t)u, &q[i].history);
            q[i].k = K;
        }
        if (v4r_index_search_threads(ix, q, nq, K, threads, items, scores, &err)) {
            fprintf(stderr, "index_bench: %s\n", err.msg);
            exit(1);
        }
        done += nq;
        t = v4r_now();
    }
    return (double)done / (t - t0);
}

static double run_blas(const float *rows, size_t nq, double secs)
{
    float *a = v4r_malloc(sizeof(float) * MAXQ * DIM), *c = v4r_malloc(sizeof(float) * MAXQ * N_ITEMS);
    for (size_t i = 0; i < MAXQ * DIM; i++)
        a[i] = rows[i];
    size_t done = 0;
    double t0 = v4r_now(), t = t0;
    while (t - t0 < secs) {
        if (nq == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, N_ITEMS, DIM, 1, rows, DIM, a, 1, 0, c, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, N_ITEMS, DIM, 1, a, DIM, rows, DIM, 0, c,
                        N_ITEMS);
        done += nq;
        t = v4r_now();
    }
    free(a);
    free(c);
    return (double)done / (t - t0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: index_bench OUT_DIR [SECONDS_PER_CASE [THREADS 1|2]]\n");
        return 2;
    }
    double secs = argc > 2 ? atof(argv[2]) : 2;
    int max_threads = argc > 3 ? atoi(argv[3]) : 1; /* also the scan split over 2..max_threads threads */
    v4r_dataset ds;
    v4r_matrix m;
    make_dataset(&ds, &m);
    static const size_t batches[] = {1, 8, 32, 64};
    for (int t = 0; t < 3; t++) {
        v4r_index_build_opts o;
        v4r_index_build_defaults(&o);
        o.dtype = (v4r_index_dtype)t;
        o.check_users = 500;
        char *path = v4r_sprintf("%s/bench-%s.idx", argv[1], v4r_index_dtype_name(o.dtype));
        v4r_index_build_report rep;
        v4r_index *ix;
        v4r_err err = {0};
        if (v4r_index_build(&ds, &m, &o, path, &rep, &err) || v4r_index_open(path, 1, &ix, &err)) {
            fprintf(stderr, "index_bench: %s\n", err.msg);
            return 1;
        }
        for (int threads = 1; threads <= max_threads; threads++)
            for (size_t b = 0; b < 4; b++)
                printf("{\"what\": \"index, %d thread%s\", \"dtype\": \"%s\", \"nq\": %zu, \"queries_per_s\": %.0f, "
                       "\"recall_vs_f32\": %.4f}\n",
                       threads, threads == 1 ? "" : "s", v4r_index_dtype_name(o.dtype), batches[b],
                       run_index(ix, batches[b], threads, secs), rep.recall_vs_f32);
        fflush(stdout);
        v4r_index_close(ix);
        free(path);
    }
    for (size_t b = 0; b < 4; b++)
        printf("{\"what\": \"%s\", \"dtype\": \"float32\", \"nq\": %zu, \"queries_per_s\": %.0f}\n",
               batches[b] == 1 ? "cblas_sgemv" : "cblas_sgemm", batches[b], run_blas(m.data, batches[b], secs));
    v4r_matrix_free(&m);
    v4r_dataset_free(&ds);
    return 0;
}

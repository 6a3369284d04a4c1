/* Micro-batching: parsed queries wait in one FIFO; each worker takes every waiting query of the
 * same index (up to the batch limit) and answers them with one search (its catalog scan split over
 * --threads), so batches grow with the load by themselves and never wait to fill. */
#include <cblas.h>
#include <omp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "serve_internal.h"

void queue_push(batch_queue *q, serve_request *r)
{
    r->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* Unlinks up to max queued requests of the first request's index, in queue order; 0 when stopping. */
static size_t take_batch(batch_queue *q, serve_request **batch)
{
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->stop)
        pthread_cond_wait(&q->cv, &q->mu);
    size_t n = 0;
    if (q->head) {
        const index_holder *h = q->head->h;
        serve_request **link = &q->head;
        while (*link && n < q->max_batch) {
            serve_request *r = *link;
            if (r->h == h)
                *link = r->next, batch[n++] = r;
            else
                link = &r->next;
        }
        if (!*link) /* the tail went into the batch: the new tail is the last one kept */
            q->tail = link == &q->head ? NULL : (serve_request *)((char *)link - offsetof(serve_request, next));
        if (q->head)
            pthread_cond_signal(&q->cv); /* more for another worker */
    }
    pthread_mutex_unlock(&q->mu);
    return n;
}

/* One search for the batch, then every answer written and its connection resumed. */
static void answer_batch(v4r_server *s, serve_request **batch, size_t n)
{
    v4r_index_query *queries = v4r_malloc(n * sizeof *queries);
    size_t kmax = 1;
    for (size_t i = 0; i < n; i++) {
        queries[i] = batch[i]->q;
        kmax = batch[i]->q.k > kmax ? batch[i]->q.k : kmax;
    }
    int32_t *items = v4r_malloc(n * kmax * sizeof *items);
    float *scores = v4r_malloc(n * kmax * sizeof *scores);
    v4r_err err = {0};
    int rc = v4r_live_search(batch[0]->h->live, queries, n, kmax, (int)s->o.threads, items, scores, &err);
    if (rc)
        v4r_warn("serve: a search of %zu queries failed: %s", n, err.msg);
    metrics_batch(&s->metrics, n);
    for (size_t i = 0; i < n; i++) {
        serve_request *r = batch[i];
        r->batch = n;
        if (rc) {
            r->status = 500;
            free(r->answer);
            r->answer = error_body(500, "the search failed: %s", err.msg);
        } else {
            request_answer(r, items + i * kmax, scores + i * kmax);
        }
        handler_resume(r); /* r belongs to its connection from here on */
    }
    free(items);
    free(scores);
    free(queries);
}

static void *worker_main(void *arg)
{
    v4r_server *s = arg;
    /* the search splits its scan over its own team (--threads); nothing else here runs BLAS or
     * OpenMP in parallel */
    openblas_set_num_threads(1);
    omp_set_num_threads(1);
    serve_request **batch = v4r_malloc(s->queue.max_batch * sizeof *batch);
    size_t n;
    while ((n = take_batch(&s->queue, batch)) > 0)
        answer_batch(s, batch, n);
    free(batch);
    return NULL;
}

int queue_start(v4r_server *s, size_t workers, size_t max_batch, v4r_err *err)
{
    batch_queue *q = &s->queue;
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->max_batch = max_batch;
    q->workers = v4r_calloc(workers, sizeof *q->workers);
    openblas_set_num_threads(1);
    for (; q->n_workers < workers; q->n_workers++)
        if (pthread_create(&q->workers[q->n_workers], NULL, worker_main, s) != 0)
            return v4r_fail(err, V4R_EINTERNAL, "serve: cannot start search worker %zu", q->n_workers + 1);
    return V4R_OK;
}

void queue_stop(batch_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (size_t i = 0; i < q->n_workers; i++)
        pthread_join(q->workers[i], NULL);
    free(q->workers);
    q->workers = NULL;
    q->n_workers = 0;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

/*
 * A fixed set of worker threads waiting on a condition variable. tpool_for
 * publishes one job (fn, arg, n, chunk size) with a generation counter; each
 * participant, the caller included, claims chunks with an atomic counter until
 * none are left, and the caller waits until every worker has checked out of
 * the generation. The job lives on the caller's stack for that time.
 */
#include "core/tpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

struct tpool {
    int nthreads; /* including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    unsigned long gen;
    int active; /* workers still inside the current generation */
    bool stop;
    /* current job */
    tpool_fn fn;
    void *arg;
    int64_t n, chunk;
    atomic_llong next;
};

static void run_chunks(tpool *p)
{
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->chunk);
        if (b >= p->n) break;
        int64_t e = b + p->chunk < p->n ? b + p->chunk : p->n;
        p->fn(p->arg, b, e);
    }
}

static void *worker(void *vp)
{
    tpool *p = vp;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen) pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        run_chunks(p);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

tpool *tpool_create(int threads)
{
    tpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->nthreads = threads < 1 ? 1 : threads;
    if (p->nthreads == 1) return p;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->threads = calloc((size_t)p->nthreads - 1, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 0; i < p->nthreads - 1; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
            p->nthreads = i + 1; /* run with the workers we got */
            break;
        }
    }
    return p;
}

void tpool_free(tpool *p)
{
    if (!p) return;
    if (p->nthreads > 1) {
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->nthreads - 1; i++) pthread_join(p->threads[i], NULL);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->work_cv);
        pthread_cond_destroy(&p->done_cv);
    }
    free(p->threads);
    free(p);
}

int tpool_threads(const tpool *p)
{
    return p ? p->nthreads : 1;
}

void tpool_for(tpool *p, int64_t n, int64_t grain, tpool_fn fn, void *arg)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!p || p->nthreads == 1 || n <= grain) {
        fn(arg, 0, n);
        return;
    }
    int64_t chunk = (n + p->nthreads * 4 - 1) / (p->nthreads * 4);
    if (chunk < grain) chunk = grain;
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    p->active = p->nthreads - 1;
    p->gen++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

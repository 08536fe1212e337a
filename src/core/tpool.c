/*
 * A fixed set of worker threads waiting on a condition variable. tpool_for
 * publishes one job (fn, arg, n, chunk size) with a generation counter; each
 * participant, the caller included, claims chunks with an atomic counter until
 * none are left, and the caller waits until every worker has checked out of
 * the generation. The job lives on the caller's stack for that time.
 *
 * An inference calls tpool_for once per node, tens of microseconds apart,
 * and a futex wake-up costs about as much: so a worker first spins for a
 * while (SPIN_ROUNDS pauses, some tens of microseconds) watching the
 * generation before it sleeps on the condition variable, and the caller
 * likewise spins before sleeping until the workers check out. A pool only
 * spins as many threads as it was created with.
 */
#include "core/tpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_ROUNDS 2000

struct tpool {
    int nthreads; /* including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    atomic_ulong gen;
    atomic_int active; /* workers still inside the current generation */
    atomic_bool stop;
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
    for (;;) {
        for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
                        !atomic_load(&p->stop);
             i++)
            cpu_relax();
        pthread_mutex_lock(&p->mu);
        while (!atomic_load(&p->stop) && atomic_load(&p->gen) == seen)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (atomic_load(&p->stop)) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        seen = atomic_load(&p->gen);
        pthread_mutex_unlock(&p->mu);
        run_chunks(p);
        if (atomic_fetch_sub(&p->active, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
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
        atomic_store(&p->stop, true);
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
    atomic_store(&p->active, p->nthreads - 1);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p);
    for (int i = 0; i < SPIN_ROUNDS && atomic_load(&p->active) > 0; i++) cpu_relax();
    if (atomic_load(&p->active) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->active) > 0) pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

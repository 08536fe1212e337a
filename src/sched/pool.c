/*
 * Worker pool, see pool.h: a mutex-protected FIFO of intrusive jobs and a
 * fixed set of threads that take them in order. Shutdown sets a flag; the
 * workers drain what is queued before they exit, so no submitted job is
 * ever dropped (its connection would stay suspended forever).
 */
#include "sched/pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct sched_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pool_job *head, *tail;
    int queued, nthreads;
    bool stop, cancelled;
    pthread_t *threads;
};

static void *worker(void *arg)
{
    sched_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head) break; /* stopping and drained */
        pool_job *j = p->head;
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->mu);
        j->next = NULL;
        j->run(j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

sched_pool *pool_create(int threads)
{
    sched_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (threads < 1) threads = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) break;
        p->nthreads++;
    }
    if (p->nthreads == 0) {
        free(p->threads);
        free(p);
        return NULL;
    }
    return p;
}

void pool_free(sched_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

void pool_cancel_queued(sched_pool *p)
{
    pthread_mutex_lock(&p->mu);
    pool_job *j = p->head;
    p->head = p->tail = NULL;
    p->queued = 0;
    p->cancelled = true;
    pthread_mutex_unlock(&p->mu);
    while (j) {
        pool_job *next = j->next;
        j->next = NULL;
        j->cancel(j);
        j = next;
    }
}

void pool_submit(sched_pool *p, pool_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->cancelled) {
        pthread_mutex_unlock(&p->mu);
        job->cancel(job);
        return;
    }
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int pool_take(sched_pool *p, bool (*take)(pool_job *job, void *ctx), void *ctx, pool_job **out,
              int max)
{
    int n = 0;
    pthread_mutex_lock(&p->mu);
    pool_job *prev = NULL, *j = p->head;
    while (j && n < max) {
        pool_job *next = j->next;
        if (take(j, ctx)) {
            if (prev)
                prev->next = next;
            else
                p->head = next;
            if (p->tail == j) p->tail = prev;
            p->queued--;
            j->next = NULL;
            out[n++] = j;
        } else {
            prev = j;
        }
        j = next;
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

int pool_queued(sched_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->queued;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/*
 * Worker pool for inference jobs. The HTTP layer suspends a connection,
 * submits a job here and returns its thread to the event loop; a worker runs
 * the model and resumes the connection. Jobs are intrusive (the caller embeds
 * a pool_job in its own request object), so submitting allocates nothing.
 * The queue is FIFO and unbounded; admission control comes with the
 * scheduler of a later issue.
 */
#ifndef TERN_SCHED_POOL_H
#define TERN_SCHED_POOL_H

#include <stdbool.h>

typedef struct pool_job {
    void (*run)(struct pool_job *job);
    void (*cancel)(struct pool_job *job); /* instead of run, at a cancelled shutdown */
    struct pool_job *next;
} pool_job;

typedef struct sched_pool sched_pool;

/* NULL if threads cannot be started. */
sched_pool *pool_create(int threads);
/* Runs every queued job, then joins the workers. */
void pool_free(sched_pool *p);
/* Calls cancel() (on this thread) for every job not yet started; the jobs
 * under way finish. Later submissions are cancelled at once. */
void pool_cancel_queued(sched_pool *p);
void pool_submit(sched_pool *p, pool_job *job);
/* Removes from the queue, in order, up to max jobs for which take(job, ctx)
 * is true (called under the pool's lock: it must be quick and must not call
 * back into the pool) and stores them in out. Returns how many. The batcher
 * uses it to gather requests that can share one run. */
int pool_take(sched_pool *p, bool (*take)(pool_job *job, void *ctx), void *ctx, pool_job **out,
              int max);
/* Jobs queued but not started. */
int pool_queued(sched_pool *p);

#endif

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
/* Jobs queued but not started. */
int pool_queued(sched_pool *p);

#endif

/*
 * Private to the scheduler (sched.c: queues, batching, admission;
 * sched_stats.c: statistics, the SLO window, metrics): the state behind the
 * opaque handle of sched.h. Everything but the atomics and the SLO slots is
 * guarded by mu; the SLO slots by slo_mu.
 */
#ifndef TERN_SCHED_SCHED_INTERNAL_H
#define TERN_SCHED_SCHED_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "sched/sched.h"

#define BATCH_MAX_REQS 1024
/* SLO latency buckets: upper bound SLO_B0_NS * SLO_GROWTH^i */
#define SLO_NB 180
#define SLO_B0_NS 10000.0
#define SLO_GROWTH 1.1
#define EWMA_ALPHA 0.1

typedef struct slo_slot {
    int64_t sec;
    uint64_t total, good;
    uint32_t hist[SLO_NB];
} slo_slot;

typedef struct worker {
    struct sched *s;
    int index;
    pthread_t th;
    bool started;
    int64_t run_start;
} worker;

struct sched {
    sched_policy pol;
    int64_t *preferred;
    int n_out;
    sched_exec_fn exec;
    void *ctx;

    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work arrived, or stop */
    pthread_cond_t idle_cv; /* nothing queued and nothing running */
    sched_req *head[SCHED_MAX_LEVELS], *tail[SCHED_MAX_LEVELS];
    int64_t level_rows[SCHED_MAX_LEVELS];
    int level_n[SCHED_MAX_LEVELS];
    int n_queued, busy, burst;
    bool stop, cancelled;
    worker *workers;
    int n_workers;
    /* observed runs (under mu) */
    /* run time against rows: moving averages of rows, ns, rows^2 and
     * rows*ns give a least-squares line ns = fixed + per_row * rows; dev is
     * the mean deviation of runs from that line */
    double m_r, m_n, m_rr, m_rn, fixed_ns, per_row_ns, dev_ns;
    int64_t n_runs;
    /* statistics (under mu): per batch size in rows, index 0 unused */
    int64_t stat_cap;
    int64_t *batch_count, *batch_ns;
    atomic_llong rejected[REJECT_N];

    pthread_mutex_t slo_mu;
    slo_slot *slo;
};

#endif

/*
 * The per-version scheduler: a queue in front of a model version's
 * instances, with Triton's dynamic batcher, deadlines, priorities and
 * admission control, and the statistics an SLO is judged on.
 *
 * Shape: one scheduler per loaded version, `instances` threads, each owning
 * one engine instance. A thread takes the request at the head of the queue
 * (highest priority first, see below), gathers the queued requests that can
 * share its run (same inputs in name, dtype and every dimension but the
 * first, up to max_batch_size rows), waits up to max_queue_delay_us for
 * more unless a preferred batch size or the maximum is reached, runs the
 * batch once and hands every request exactly its own rows of each output.
 * Requests wait in memory, never on a thread: the HTTP layer submits and
 * goes back to its event loop; the done callback (on the scheduler's
 * thread) answers.
 *
 * Deadlines: a request carries a timeout (its `timeout` parameter in
 * microseconds, else the model's default_timeout_us, else none). A request
 * whose deadline passes while queued is answered 504 (within a few
 * milliseconds, see sched_expire) and is never computed. Admission control predicts the
 * wait at submission from the observed batch compute times (moving
 * averages) and the rows queued ahead, and rejects at once (429 with
 * Retry-After) when the deadline cannot be met, as it does when the queue
 * holds max_queue_size requests.
 *
 * Priorities: levels 1 (highest) .. priority_levels; a request without one
 * gets default_priority_level. The head of a batch is the oldest request of
 * the highest non-empty level, except that after PRIORITY_BURST batches in
 * a row headed by a higher level while a lower one waits, the oldest
 * waiting lower request heads the next batch: higher levels come first,
 * lower ones still get at least one batch in PRIORITY_BURST + 1.
 *
 * SLO: outcomes and latencies of the last window_s seconds (per-second
 * slots; latency in 10% wide buckets) give the observed p99 and
 * availability, compared with the model's slo: {latency_p99_ms,
 * availability}. Availability counts every request except client errors
 * (4xx other than 429); a 429, 503 or 504 counts against it.
 */
#ifndef TERN_SCHED_SCHED_H
#define TERN_SCHED_SCHED_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"
#include "core/tensor.h"

#define SCHED_MAX_LEVELS 16
#define PRIORITY_BURST 4

typedef struct sched_policy {
    int64_t max_batch_size; /* <= 1: every request runs alone */
    const int64_t *preferred_batch_sizes;
    int n_preferred;
    int64_t max_queue_delay_us; /* 0: run with what is queued */
    int64_t max_queue_size;     /* 0: unbounded */
    int64_t default_timeout_us; /* 0: none */
    int priority_levels;        /* >= 1 */
    int default_priority;       /* 1 .. priority_levels */
    int instances;              /* threads, each with its own instance */
    double slo_latency_p99_ms;  /* 0: no latency objective */
    double slo_availability;    /* 0: no availability objective; else in (0, 1] */
    int slo_window_s;           /* >= 1 */
} sched_policy;

/* Why a request was not computed. */
typedef enum sched_reason {
    REJECT_NONE = 0,
    REJECT_QUEUE_FULL,   /* 429: max_queue_size reached */
    REJECT_DEADLINE,     /* 429: admission predicts the deadline cannot be met */
    REJECT_TIMEOUT,      /* 504: the deadline passed while queued */
    REJECT_SHUTDOWN,     /* 503: the server is stopping */
    REJECT_N
} sched_reason;

const char *sched_reason_name(sched_reason r);

typedef struct sched_result {
    int status;            /* 200, or the HTTP status of the error */
    tern_status *error;    /* when status != 200 (the receiver frees it) */
    sched_reason reason;   /* when not computed */
    int retry_after_s;     /* 429: when to try again */
    tern_tensor **outputs; /* status 200: one per model output, the receiver owns them */
    int64_t queue_ns;      /* submit to start of the engine run */
    int64_t compute_ns;    /* the engine run (shared by the batch) */
    int64_t batch_rows;    /* rows of the run this request was part of */
    int64_t rows;          /* the request's own inferences: its rows on a batching
                            * model, else 1 (Triton's inference_count) */
    bool first_of_batch;   /* exactly one request of each run has it */
} sched_result;

typedef struct sched_req sched_req;
struct sched_req {
    /* the caller's */
    int n_inputs;
    const char *const *names;
    const tern_tensor *const *inputs;
    int priority;       /* 0: the model's default level */
    int64_t timeout_us; /* 0: the model's default */
    int64_t t_arrive;   /* CLOCK_MONOTONIC ns the request arrived (its deadline
                         * counts from there), 0: at submission */
    void (*done)(sched_req *r, sched_result *res);
    /* the scheduler's */
    sched_req *prev, *next;
    int64_t t_enq, deadline, rows;
    int level;
};

/* Runs the model on instance `instance`: the same contract as
 * tern_session_run (outputs filled, owned by the caller). */
typedef tern_status *(*sched_exec_fn)(void *ctx, int instance, int n_inputs,
                                      const char *const *names, const tern_tensor *const *inputs,
                                      tern_tensor **outputs);

typedef struct sched sched;

/* Starts policy->instances threads. n_outputs: how many outputs a run
 * fills. The policy is copied. */
tern_status *sched_create(const sched_policy *policy, int n_outputs, sched_exec_fn exec, void *ctx,
                          sched **out);
/* Answers what is queued with 503 (shutdown), waits for the runs under way,
 * joins the threads. */
void sched_free(sched *s);

/* Queues r (r->done is called later, on a scheduler thread) and returns
 * true; or rejects it at once and returns false with *rej filled (done is
 * not called): 429 queue full or deadline unmeetable, 503 shutting down,
 * 400 a priority out of range. */
bool sched_submit(sched *s, sched_req *r, sched_result *rej);

/* Admission for a request of one row at the default level and timeout,
 * before it is decoded: false with *rej filled when even that one would be
 * refused (queue full, deadline unmeetable, shutting down), so a server
 * under overload refuses without paying for decoding. A request with more
 * rows would wait at least as long, so this never refuses one that
 * sched_submit would admit, provided the request sets neither its own
 * timeout nor its priority. */
bool sched_precheck(sched *s, sched_result *rej);
/* Whether sched_precheck can refuse anything: the model has a
 * max_queue_size or a default timeout (no lock; the policy is fixed). */
bool sched_has_limits(const sched *s);

/* Answers 504 at once for the queued requests whose deadline has passed,
 * when every instance is busy (a free instance's thread does it whenever it
 * looks at the queue). Called every few milliseconds by the server, so an
 * expired request does not wait for a long run to finish to hear so. */
void sched_expire(sched *s);

/* Answers every queued request with 503 and rejects later submissions. */
void sched_cancel_queued(sched *s);
/* Blocks until nothing is queued or running (call after cancel). */
void sched_wait_idle(sched *s);

/* Records a finished request for the SLO window: its HTTP status and
 * whole latency (the HTTP layer calls it for every request it answered for
 * this version, rejections included). */
void sched_record(sched *s, int status, int64_t total_ns);

/* Statistics as JSON: Triton's "batch_stats" array, and tern's "queue"
 * (depth, rejections by reason) and "slo" objects. New references. */
json_t *sched_batch_stats_json(sched *s);
json_t *sched_queue_json(sched *s);
json_t *sched_slo_json(sched *s);
/* Prometheus text for n versions' schedulers, grouped by metric family:
 * tern_batch_size (histogram of rows per run), tern_rejected_requests_total
 * {reason}, tern_queue_depth, tern_slo_latency_p99_seconds,
 * tern_slo_availability, tern_slo_compliant; labels model and version. */
void sched_metrics_text(sched *const *ss, const char *const *models, const int64_t *versions,
                        int n, FILE *f);

#endif

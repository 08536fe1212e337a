/*
 * The per-version scheduler, see sched.h for what it promises.
 *
 * One mutex guards the queues (a doubly linked FIFO per priority level),
 * the counters admission control reads and the moving averages it keeps.
 * Threads never run a model or answer a request while holding it: a thread
 * decides under the lock what to run (and which queued requests expired),
 * takes them out of the queues, drops the lock, answers and runs.
 *
 * Batching keeps the contract of the earlier greedy batcher: a batch never
 * changes an answer. Requests share a run only when every input agrees in
 * name, dtype and every dimension but the first; if the batched run fails,
 * or an output lacks the batch dimension, each request runs again alone.
 */
#include "sched/sched.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched/sched_internal.h"


const char *sched_reason_name(sched_reason r)
{
    switch (r) {
    case REJECT_QUEUE_FULL: return "queue_full";
    case REJECT_DEADLINE: return "deadline_unmeetable";
    case REJECT_TIMEOUT: return "timeout";
    case REJECT_SHUTDOWN: return "shutdown";
    default: return "none";
    }
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool batching(const sched *s)
{
    return s->pol.max_batch_size > 1;
}

/* ---- queues (under mu) -------------------------------------------------- */

/* Rows of a request: the shared first dimension of its inputs, or -1 when it
 * cannot be batched (no inputs, strings, scalars, disagreeing first dims). */
static int64_t req_rows(const sched_req *r)
{
    if (r->n_inputs == 0) return -1;
    int64_t rows = -1;
    for (int i = 0; i < r->n_inputs; i++) {
        const tern_tensor *t = r->inputs[i];
        if (t->kind != TENSOR_DENSE || t->dtype == TERN_STRING || t->rank < 1) return -1;
        if (rows >= 0 && t->dims[0] != rows) return -1;
        rows = t->dims[0];
    }
    return rows;
}

/* Rows the queue accounts for (a request that cannot batch counts as 1). */
static int64_t weight(const sched_req *r)
{
    return r->rows >= 1 ? r->rows : 1;
}

/* Inferences in a request, as Triton counts them: its rows on a batching
 * model, else 1. */
static int64_t inferences(const sched *s, const sched_req *r)
{
    return batching(s) ? weight(r) : 1;
}

static void q_push(sched *s, sched_req *r)
{
    int l = r->level;
    r->next = NULL;
    r->prev = s->tail[l];
    if (s->tail[l])
        s->tail[l]->next = r;
    else
        s->head[l] = r;
    s->tail[l] = r;
    s->level_rows[l] += weight(r);
    s->level_n[l]++;
    s->n_queued++;
}

static void q_remove(sched *s, sched_req *r)
{
    int l = r->level;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->head[l] = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        s->tail[l] = r->prev;
    r->next = r->prev = NULL;
    s->level_rows[l] -= weight(r);
    s->level_n[l]--;
    s->n_queued--;
}

/* Takes every queued request whose deadline has passed; returns them as a
 * list linked through next. */
static sched_req *take_expired(sched *s, int64_t now)
{
    sched_req *out = NULL;
    for (int l = 0; l < s->pol.priority_levels; l++)
        for (sched_req *r = s->head[l], *nx; r; r = nx) {
            nx = r->next;
            if (r->deadline && r->deadline <= now) {
                q_remove(s, r);
                r->next = out;
                out = r;
            }
        }
    return out;
}

/* The request that heads the next batch; *burst_next is what s->burst
 * becomes if that batch is dispatched (a wait for a fuller batch picks
 * again, and must not count twice). */
static sched_req *pick_head(const sched *s, int *burst_next)
{
    int top = -1;
    for (int l = 0; l < s->pol.priority_levels && top < 0; l++)
        if (s->head[l]) top = l;
    if (top < 0) return NULL;
    /* a lower level waiting for PRIORITY_BURST batches gets the next one:
     * its oldest request heads it */
    sched_req *lower = NULL;
    for (int l = top + 1; l < s->pol.priority_levels; l++)
        if (s->head[l] && (!lower || s->head[l]->t_enq < lower->t_enq)) lower = s->head[l];
    if (!lower || s->burst >= PRIORITY_BURST) {
        *burst_next = 0;
        return lower ? lower : s->head[top];
    }
    *burst_next = s->burst + 1;
    return s->head[top];
}

static bool compatible(const sched_req *a, const sched_req *b)
{
    if (b->rows < 1 || b->n_inputs != a->n_inputs) return false;
    for (int i = 0; i < a->n_inputs; i++) {
        const tern_tensor *x = a->inputs[i], *y = b->inputs[i];
        if (strcmp(a->names[i], b->names[i]) != 0 || x->dtype != y->dtype || x->rank != y->rank)
            return false;
        for (int d = 1; d < x->rank; d++)
            if (x->dims[d] != y->dims[d]) return false;
    }
    return true;
}

/* The requests that can join head's batch, head first: its own level in
 * order, then the others from the highest. Returns how many; *rows their
 * rows. */
static int gather(sched *s, sched_req *head, sched_req **out, int64_t *rows)
{
    int n = 0;
    out[n++] = head;
    *rows = weight(head);
    if (!batching(s) || head->rows < 1) return n;
    int64_t left = s->pol.max_batch_size - head->rows;
    for (int k = -1; k < s->pol.priority_levels && left > 0; k++) {
        int l = k < 0 ? head->level : k;
        if (k >= 0 && l == head->level) continue;
        for (sched_req *r = s->head[l]; r && left > 0 && n < BATCH_MAX_REQS; r = r->next) {
            if (r == head || r->rows > left || !compatible(head, r)) continue;
            out[n++] = r;
            left -= r->rows;
            *rows += r->rows;
        }
    }
    return n;
}

/* Predicted nanoseconds of a run of `rows` rows, from the moving averages;
 * 0 before the first run. Like TCP's retransmission timer it adds twice the
 * mean deviation, so a run slower than average by the usual spread still
 * fits: admitting at the margin would turn into 504s. */
static double est_run_ns(const sched *s, double rows)
{
    if (s->n_runs == 0) return 0;
    return s->fixed_ns + s->per_row_ns * rows + 2 * s->dev_ns;
}

/* Predicted wait until a request of `rows` rows at `level` starts running,
 * and its run time. */
static void predict(const sched *s, int level, int64_t rows, int64_t now, double *wait,
                    double *run)
{
    int64_t ahead_rows = 0, ahead_n = 0;
    for (int l = 0; l <= level; l++) {
        ahead_rows += s->level_rows[l];
        ahead_n += s->level_n[l];
    }
    double per_batch, batches;
    if (batching(s)) {
        double b = (double)s->pol.max_batch_size;
        batches = floor((double)ahead_rows / b);
        per_batch = est_run_ns(s, b);
        double mine = fmin(b, (double)(ahead_rows % s->pol.max_batch_size) + (double)rows);
        *run = est_run_ns(s, mine);
    } else {
        batches = (double)ahead_n;
        per_batch = est_run_ns(s, (double)rows);
        *run = per_batch;
    }
    /* until an instance frees up, if all are busy */
    double soonest = 0;
    if (s->busy >= s->n_workers) {
        soonest = INFINITY;
        for (int i = 0; i < s->n_workers; i++) {
            double left = (double)s->workers[i].run_start + s->m_n - (double)now;
            soonest = fmin(soonest, fmax(0, left));
        }
        if (!isfinite(soonest)) soonest = 0;
    }
    *wait = soonest + batches * per_batch / s->n_workers;
}

static int retry_secs(double ns)
{
    double sec = ceil(ns / 1e9);
    return sec < 1 ? 1 : sec > 3600 ? 3600 : (int)sec;
}

static void reject(sched *s, sched_result *res, int status, sched_reason why, int retry,
                   tern_status *err)
{
    *res = (sched_result){.status = status, .reason = why, .retry_after_s = retry, .error = err};
    if (why != REJECT_NONE) atomic_fetch_add(&s->rejected[why], 1);
}

/* Admission of a request of `rows` rows at `level` with `timeout` us (0:
 * none), under mu: true, or false with *rej filled. */
static bool admit(sched *s, int level, int64_t rows, int64_t timeout, int64_t now,
                  sched_result *rej)
{
    if (s->cancelled || s->stop) {
        reject(s, rej, 503, REJECT_SHUTDOWN, 1,
               tern_error(TERN_ERR_RUNTIME, "the model is shutting down"));
        return false;
    }
    double wait = 0, run = 0;
    if (s->n_runs > 0) predict(s, level, rows, now, &wait, &run);
    if (s->pol.max_queue_size > 0 && s->n_queued >= s->pol.max_queue_size) {
        reject(s, rej, 429, REJECT_QUEUE_FULL, retry_secs(wait),
               tern_error(TERN_ERR_RUNTIME, "the queue is full (max_queue_size %lld)",
                          (long long)s->pol.max_queue_size));
        return false;
    }
    if (timeout > 0 && s->n_runs > 0 && wait + run > (double)timeout * 1000) {
        /* timeout: what is left of it */
        reject(s, rej, 429, REJECT_DEADLINE, retry_secs(wait + run - (double)timeout * 1000),
               tern_error(TERN_ERR_RUNTIME,
                          "the deadline cannot be met: the predicted %.3f ms (%.3f ms queued, "
                          "%.3f ms to run) exceeds the %.3f ms timeout",
                          (wait + run) / 1e6, wait / 1e6, run / 1e6, (double)timeout / 1e3));
        return false;
    }
    return true;
}

bool sched_has_limits(const sched *s)
{
    return s->pol.max_queue_size > 0 || s->pol.default_timeout_us > 0;
}

bool sched_precheck(sched *s, sched_result *rej)
{
    int64_t now = now_ns();
    pthread_mutex_lock(&s->mu);
    bool ok = admit(s, s->pol.default_priority - 1, 1, s->pol.default_timeout_us, now, rej);
    pthread_mutex_unlock(&s->mu);
    return ok;
}

bool sched_submit(sched *s, sched_req *r, sched_result *rej)
{
    if (r->priority < 0 || r->priority > s->pol.priority_levels) {
        reject(s, rej, 400, REJECT_NONE, 0,
               tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "parameters.priority: must be between 1 and %d (0 or absent: the "
                          "model's default %d)",
                          s->pol.priority_levels, s->pol.default_priority));
        return false;
    }
    r->rows = req_rows(r);
    if (batching(s) && r->rows > s->pol.max_batch_size) {
        /* Triton refuses it too: the model promised no more rows per run */
        reject(s, rej, 400, REJECT_NONE, 0,
               tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "inputs: batch of %lld rows is over the model's max_batch_size %lld",
                          (long long)r->rows, (long long)s->pol.max_batch_size));
        return false;
    }
    int64_t now = now_ns();
    int64_t arrived = r->t_arrive > 0 && r->t_arrive <= now ? r->t_arrive : now;
    r->t_enq = now;
    r->level = (r->priority ? r->priority : s->pol.default_priority) - 1;
    int64_t timeout = r->timeout_us ? r->timeout_us : s->pol.default_timeout_us;
    r->deadline = timeout > 0 ? arrived + timeout * 1000 : 0;
    pthread_mutex_lock(&s->mu);
    int64_t left = timeout > 0 ? timeout - (now - arrived) / 1000 : 0; /* us */
    if (timeout > 0 && left < 1) left = 1;
    if (!admit(s, r->level, weight(r), left, now, rej)) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    q_push(s, r);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return true;
}

/* ---- running ------------------------------------------------------------ */

static void answer_error(sched_req *r, int status, sched_reason why, tern_status *err,
                         int64_t queue_ns)
{
    sched_result res = {.status = status, .reason = why, .error = err, .queue_ns = queue_ns};
    r->done(r, &res);
}

static int status_of_error(const tern_status *st)
{
    tern_code c = tern_status_code(st);
    /* the engine refuses inputs that do not fit the model: a client error */
    return c == TERN_ERR_NO_MEMORY || c == TERN_ERR_IO ? 500 : 400;
}

static void free_outputs(tern_tensor **outs, int n)
{
    for (int j = 0; outs && j < n; j++) tern_tensor_free(outs[j]);
    free(outs);
}

/* Runs r alone and answers it; returns the engine nanoseconds. */
static int64_t run_alone(sched *s, int inst, sched_req *r, int64_t t0)
{
    tern_tensor **outs = calloc((size_t)s->n_out + 1, sizeof *outs);
    tern_status *st = !outs ? tern_error(TERN_ERR_NO_MEMORY, "out of memory")
                            : s->exec(s->ctx, inst, r->n_inputs, r->names, r->inputs, outs);
    int64_t t1 = now_ns();
    if (st) {
        free_outputs(outs, s->n_out);
        outs = NULL;
    }
    sched_result res = {.status = st ? status_of_error(st) : 200, .error = st, .outputs = outs,
                        .queue_ns = t0 - r->t_enq, .compute_ns = t1 - t0,
                        .batch_rows = weight(r), .rows = inferences(s, r),
                        .first_of_batch = true};
    r->done(r, &res);
    return t1 - t0;
}

/* Runs n compatible requests as one batch of `total` rows and answers them;
 * false if that did not work out (nothing answered) and they must run
 * alone. */
static bool run_batch(sched *s, int inst, sched_req **rs, int n, int64_t total, int64_t t0,
                      int64_t *run_ns)
{
    const sched_req *r0 = rs[0];
    int n_in = r0->n_inputs, n_out = s->n_out;
    tern_tensor **ins = calloc((size_t)n_in, sizeof *ins);
    tern_tensor **outs = calloc((size_t)n_out + 1, sizeof *outs);
    bool ok = ins && outs;
    for (int i = 0; ok && i < n_in; i++) {
        const tern_tensor *t = r0->inputs[i];
        int64_t dims[TERN_MAX_RANK];
        memcpy(dims, t->dims, sizeof dims);
        dims[0] = total;
        tern_status *st = tern_tensor_create(t->dtype, t->rank, dims, &ins[i]);
        if (st) {
            tern_status_free(st);
            ok = false;
            break;
        }
        char *dst = tern_tensor_data(ins[i]);
        for (int k = 0; k < n; k++) {
            size_t nb = tensor_nbytes(rs[k]->inputs[i]);
            memcpy(dst, rs[k]->inputs[i]->data, nb);
            dst += nb;
        }
    }
    int64_t t1 = now_ns(), t2 = t1;
    if (ok) {
        tern_status *st =
            s->exec(s->ctx, inst, n_in, r0->names, (const tern_tensor *const *)ins, outs);
        t2 = now_ns();
        if (st) {
            tern_status_free(st);
            ok = false;
        }
    }
    for (int j = 0; ok && j < n_out; j++)
        if (!outs[j] || outs[j]->kind != TENSOR_DENSE || outs[j]->rank < 1 ||
            outs[j]->dims[0] != total || outs[j]->dtype == TERN_STRING)
            ok = false;
    /* split every output by rows */
    tern_tensor ***mine = ok ? calloc((size_t)n, sizeof *mine) : NULL;
    if (ok && !mine) ok = false;
    int64_t row0 = 0;
    for (int k = 0; ok && k < n; k++) {
        int64_t rows = rs[k]->rows;
        mine[k] = calloc((size_t)n_out + 1, sizeof **mine);
        if (!mine[k]) ok = false;
        for (int j = 0; ok && j < n_out; j++) {
            const tern_tensor *o = outs[j];
            int64_t dims[TERN_MAX_RANK];
            memcpy(dims, o->dims, sizeof dims);
            dims[0] = rows;
            size_t row_bytes = o->dims[0] ? tensor_nbytes(o) / (size_t)o->dims[0] : 0;
            tern_status *st = tern_tensor_create_copy(
                o->dtype, o->rank, dims, (const char *)o->data + (size_t)row0 * row_bytes,
                (size_t)rows * row_bytes, &mine[k][j]);
            if (st) {
                tern_status_free(st);
                ok = false;
            }
        }
        row0 += rows;
    }
    *run_ns = t2 - t1;
    if (ok) {
        for (int k = 0; k < n; k++) {
            sched_result res = {.status = 200, .outputs = mine[k], .queue_ns = t0 - rs[k]->t_enq,
                                .compute_ns = t2 - t1, .batch_rows = total,
                                .rows = rs[k]->rows,
                                .first_of_batch = k == 0};
            rs[k]->done(rs[k], &res);
        }
    } else if (mine) {
        for (int k = 0; k < n; k++) free_outputs(mine[k], n_out);
    }
    free(mine);
    for (int i = 0; ins && i < n_in; i++) tern_tensor_free(ins[i]);
    free(ins);
    free_outputs(outs, n_out);
    return ok;
}

static void record_run(sched *s, int64_t rows, int64_t ns)
{
    if (rows < 1) rows = 1;
    double r = (double)rows, n = (double)ns;
    if (s->n_runs) {
        double dev = fabs(n - (s->fixed_ns + s->per_row_ns * r));
        s->dev_ns += EWMA_ALPHA * (dev - s->dev_ns);
    }
    double a = s->n_runs ? EWMA_ALPHA : 1.0;
    s->m_r += a * (r - s->m_r);
    s->m_n += a * (n - s->m_n);
    s->m_rr += a * (r * r - s->m_rr);
    s->m_rn += a * (r * n - s->m_rn);
    double var = s->m_rr - s->m_r * s->m_r;
    double slope = var > 0.25 ? (s->m_rn - s->m_r * s->m_n) / var : -1;
    if (slope >= 0 && s->m_n - slope * s->m_r >= 0) {
        s->per_row_ns = slope;
        s->fixed_ns = s->m_n - slope * s->m_r;
    } else {
        /* One batch size so far, or a noisy fit: assume the run costs the
         * same whatever its rows. Optimistic on purpose: a pessimistic guess
         * (proportional to rows, from batch-1 runs that are all fixed cost)
         * refuses what would form larger batches, so larger batches are
         * never seen and never correct it; an optimistic one admits a few
         * too many, which form the batches that teach the line. */
        s->per_row_ns = 0;
        s->fixed_ns = s->m_n;
    }
    s->n_runs++;
    int64_t i = rows < s->stat_cap ? rows : s->stat_cap - 1;
    s->batch_count[i]++;
    s->batch_ns[i] += ns;
}

/* Decides, under mu, whether the batch headed by head goes now. Trims it to
 * a preferred size. Otherwise sets *wake (absolute ns) and returns false. */
static bool ready_to_go(sched *s, sched_req **batch, int *n, int64_t *rows, int64_t now,
                        int64_t *wake)
{
    if (!batching(s) || batch[0]->rows < 1 || *rows >= s->pol.max_batch_size || s->stop ||
        s->cancelled)
        return true;
    /* the largest preferred size this batch can fill goes at once */
    int64_t pref = 0;
    for (int i = 0; i < s->pol.n_preferred; i++)
        if (s->preferred[i] <= *rows && s->preferred[i] > pref) pref = s->preferred[i];
    if (pref > 0) {
        int64_t sum = 0;
        int k = 0;
        /* the head always; then the others while they fit in pref */
        for (int i = 0; i < *n; i++)
            if (i == 0 || sum + batch[i]->rows <= pref) {
                batch[k++] = batch[i];
                sum += batch[i]->rows;
            }
        *n = k;
        *rows = sum;
        return true;
    }
    if (s->pol.max_queue_delay_us <= 0) return true;
    int64_t oldest = batch[0]->t_enq, deadline = INT64_MAX;
    for (int i = 0; i < *n; i++) {
        if (batch[i]->t_enq < oldest) oldest = batch[i]->t_enq;
        if (batch[i]->deadline && batch[i]->deadline < deadline) deadline = batch[i]->deadline;
    }
    int64_t until = oldest + s->pol.max_queue_delay_us * 1000;
    /* do not wait a request past what its deadline allows */
    if (deadline != INT64_MAX) {
        int64_t latest = deadline - (int64_t)est_run_ns(s, (double)*rows);
        if (latest < until) until = latest;
    }
    if (now >= until) return true;
    *wake = until;
    return false;
}

static void answer_expired(sched *s, sched_req *list, int64_t now)
{
    for (sched_req *r = list, *nx; r; r = nx) {
        nx = r->next;
        atomic_fetch_add(&s->rejected[REJECT_TIMEOUT], 1);
        answer_error(r, 504, REJECT_TIMEOUT,
                     tern_error(TERN_ERR_RUNTIME,
                                "the deadline passed while the request was queued (timeout %lld "
                                "us)",
                                (long long)((r->deadline - r->t_enq) / 1000)),
                     now - r->t_enq);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    sched *s = w->s;
    sched_req *b[BATCH_MAX_REQS]; /* the batch being formed, 8 KB */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->n_queued == 0) {
            if (s->stop) break;
            if (s->busy == 0) pthread_cond_broadcast(&s->idle_cv);
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        int64_t now = now_ns();
        sched_req *expired = take_expired(s, now);
        if (expired) {
            s->busy++; /* not idle while answering */
            pthread_mutex_unlock(&s->mu);
            answer_expired(s, expired, now);
            pthread_mutex_lock(&s->mu);
            s->busy--;
            continue;
        }
        int burst_next = 0;
        sched_req *head = pick_head(s, &burst_next);
        if (!head) continue;
        int64_t rows = 0, wake = 0;
        int n = gather(s, head, b, &rows);
        if (!ready_to_go(s, b, &n, &rows, now, &wake)) {
            /* the condition variable runs on CLOCK_MONOTONIC (sched_create) */
            struct timespec ts = {.tv_sec = wake / 1000000000, .tv_nsec = wake % 1000000000};
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            continue;
        }
        for (int i = 0; i < n; i++) q_remove(s, b[i]);
        s->burst = burst_next;
        s->busy++;
        w->run_start = now;
        pthread_mutex_unlock(&s->mu);

        int64_t run_ns = 0;
        bool alone = n == 1 || !run_batch(s, w->index, b, n, rows, now, &run_ns);
        if (alone)
            for (int i = 0; i < n; i++) {
                int64_t rows_i = weight(b[i]); /* b[i] may be freed once answered */
                int64_t ns = run_alone(s, w->index, b[i], now_ns());
                pthread_mutex_lock(&s->mu);
                record_run(s, rows_i, ns);
                pthread_mutex_unlock(&s->mu);
            }
        pthread_mutex_lock(&s->mu);
        if (!alone) record_run(s, rows, run_ns);
        s->busy--;
    }
    if (s->busy == 0) pthread_cond_broadcast(&s->idle_cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

void sched_expire(sched *s)
{
    if (!s) return;
    int64_t now = now_ns();
    pthread_mutex_lock(&s->mu);
    /* with an instance free, its thread sees the queue soon enough */
    sched_req *list = s->n_queued && s->busy >= s->n_workers ? take_expired(s, now) : NULL;
    if (list) s->busy++; /* not idle while answering (sched_wait_idle) */
    pthread_mutex_unlock(&s->mu);
    if (!list) return;
    answer_expired(s, list, now);
    pthread_mutex_lock(&s->mu);
    s->busy--;
    if (s->n_queued == 0 && s->busy == 0) pthread_cond_broadcast(&s->idle_cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- life ---------------------------------------------------------------- */

tern_status *sched_create(const sched_policy *policy, int n_outputs, sched_exec_fn exec, void *ctx,
                          sched **out)
{
    *out = NULL;
    sched *s = calloc(1, sizeof *s);
    if (!s) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    s->pol = *policy;
    if (s->pol.priority_levels < 1) s->pol.priority_levels = 1;
    if (s->pol.priority_levels > SCHED_MAX_LEVELS) s->pol.priority_levels = SCHED_MAX_LEVELS;
    if (s->pol.default_priority < 1 || s->pol.default_priority > s->pol.priority_levels)
        s->pol.default_priority = s->pol.priority_levels;
    if (s->pol.instances < 1) s->pol.instances = 1;
    if (s->pol.slo_window_s < 1) s->pol.slo_window_s = 60;
    s->n_out = n_outputs;
    s->exec = exec;
    s->ctx = ctx;
    if (policy->n_preferred > 0) {
        s->preferred = malloc((size_t)policy->n_preferred * sizeof *s->preferred);
        if (s->preferred)
            memcpy(s->preferred, policy->preferred_batch_sizes,
                   (size_t)policy->n_preferred * sizeof *s->preferred);
    }
    s->pol.preferred_batch_sizes = s->preferred;
    s->stat_cap = (batching(s) ? s->pol.max_batch_size : 1) + 1;
    if (s->stat_cap > 4097) s->stat_cap = 4097;
    s->batch_count = calloc((size_t)s->stat_cap, sizeof *s->batch_count);
    s->batch_ns = calloc((size_t)s->stat_cap, sizeof *s->batch_ns);
    s->slo = calloc((size_t)s->pol.slo_window_s, sizeof *s->slo);
    s->workers = calloc((size_t)s->pol.instances, sizeof *s->workers);
    if ((policy->n_preferred > 0 && !s->preferred) || !s->batch_count || !s->batch_ns ||
        !s->slo || !s->workers) {
        sched_free(s);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->slo_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->idle_cv, NULL);
    for (int i = 0; i < s->pol.instances; i++) {
        worker *w = &s->workers[i];
        w->s = s;
        w->index = i;
        if (pthread_create(&w->th, NULL, worker_main, w) != 0) break;
        w->started = true;
        s->n_workers++;
    }
    if (s->n_workers == 0) {
        sched_free(s);
        return tern_error(TERN_ERR_NO_MEMORY, "cannot start scheduler threads");
    }
    *out = s;
    return NULL;
}

void sched_cancel_queued(sched *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->cancelled = true;
    sched_req *list = NULL;
    for (int l = 0; l < s->pol.priority_levels; l++)
        while (s->head[l]) {
            sched_req *r = s->head[l];
            q_remove(s, r);
            r->next = list;
            list = r;
        }
    if (s->busy == 0) pthread_cond_broadcast(&s->idle_cv);
    pthread_mutex_unlock(&s->mu);
    int64_t now = now_ns();
    for (sched_req *r = list, *nx; r; r = nx) {
        nx = r->next;
        atomic_fetch_add(&s->rejected[REJECT_SHUTDOWN], 1);
        answer_error(r, 503, REJECT_SHUTDOWN,
                     tern_error(TERN_ERR_RUNTIME, "server is shutting down"),
                     now - r->t_enq);
    }
}

void sched_wait_idle(sched *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    while (s->n_queued > 0 || s->busy > 0) pthread_cond_wait(&s->idle_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void sched_free(sched *s)
{
    if (!s) return;
    if (s->n_workers > 0) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < s->pol.instances; i++) {
            worker *w = &s->workers[i];
            if (!w->started) continue;
            if (pthread_equal(w->th, pthread_self()))
                pthread_detach(w->th); /* freed from its own done callback */
            else
                pthread_join(w->th, NULL);
        }
        pthread_mutex_destroy(&s->mu);
        pthread_mutex_destroy(&s->slo_mu);
        pthread_cond_destroy(&s->cv);
        pthread_cond_destroy(&s->idle_cv);
    }
    free(s->workers);
    free(s->preferred);
    free(s->batch_count);
    free(s->batch_ns);
    free(s->slo);
    free(s);
}

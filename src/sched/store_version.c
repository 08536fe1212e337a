/*
 * One loaded model version: its instances (engine sessions), the config it
 * was loaded with, its statistics and its reference count.
 *
 * Instances: a version holds N sessions of the same file. version_run takes
 * a free one under the version's mutex (waiting on a condition variable
 * while all N are busy), runs outside the mutex, and hands it back; N
 * requests therefore run in parallel, the N+1th waits.
 *
 * Lifetime: store_version_load returns a version with one reference (the
 * store's, once it serves); each request adds one with store_acquire. The
 * last store_release frees the sessions and tells the store's live counter,
 * on which store_free waits.
 *
 * Warm-up: zeros of the shapes config.yaml's `warmup` gives, or of the
 * declared input shapes with dynamic dimensions 1, run once through every
 * instance before the version serves. A warm-up that was asked for must
 * succeed; the guessed one may fail (the guess may not suit the model) and
 * is only logged.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/log.h"
#include "sched/store_internal.h"

/* Warm-up tensors larger than this are not built (a typo in a shape must not
 * allocate the machine away). */
#define WARMUP_MAX_ELEMENTS (INT64_C(1) << 26)

/* ---- identities of files on disk ---------------------------------------- */

file_id store_file_id(const char *path)
{
    file_id f = {0};
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        f.exists = true;
        f.mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        f.size = (int64_t)sb.st_size;
        f.ino = (uint64_t)sb.st_ino;
    }
    return f;
}

bool store_file_id_eq(file_id a, file_id b)
{
    return a.exists == b.exists && a.mtime_ns == b.mtime_ns && a.size == b.size && a.ino == b.ino;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- version objects ---------------------------------------------------- */

void store_vlist_push(vlist *l, model_version *v)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 8;
        model_version **p = realloc(l->v, (size_t)cap * sizeof *p);
        if (!p) {
            /* Cannot defer: the caller's lock order still allows freeing a
             * version here (release never takes `tab`). */
            store_release(v);
            return;
        }
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

void store_vlist_release(vlist *l)
{
    for (int i = 0; i < l->n; i++) store_release(l->v[i]);
    free(l->v);
    *l = (vlist){0};
}

void store_live_add(store_live *l, int delta)
{
    pthread_mutex_lock(&l->mu);
    l->n += delta;
    if (l->n == 0) pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static void version_destroy(model_version *v)
{
    store_live *live = v->live;
    sched_free(v->sched); /* nothing is queued: every request held a reference */
    for (int i = 0; i < v->n_inst; i++) tern_session_free(v->sess[i]);
    free(v->sess);
    free(v->busy);
    store_config_free(v->cfg);
    free(v->name);
    pthread_mutex_destroy(&v->mu);
    pthread_cond_destroy(&v->cv);
    free(v);
    store_live_add(live, -1);
}

void store_release(model_version *v)
{
    if (v && atomic_fetch_sub(&v->refs, 1) == 1) version_destroy(v);
}

const char *version_model_name(const model_version *v)
{
    return v->name;
}
int64_t version_number(const model_version *v)
{
    return v->number;
}
int64_t version_max_batch_size(const model_version *v)
{
    return v->cfg->max_batch_size;
}
version_stats *version_stats_of(model_version *v)
{
    return &v->stats;
}
sched *version_sched(model_version *v)
{
    return v->sched;
}
int version_input_count(const model_version *v)
{
    return tern_session_input_count(v->sess[0]);
}
int version_output_count(const model_version *v)
{
    return tern_session_output_count(v->sess[0]);
}
const tern_io_info *version_input(const model_version *v, int i)
{
    return tern_session_input(v->sess[0], i);
}
const tern_io_info *version_output(const model_version *v, int i)
{
    return tern_session_output(v->sess[0], i);
}
double version_load_seconds(const model_version *v)
{
    return v->load_seconds;
}

tern_status *version_run_timed(model_version *v, int n_inputs, const char *const *names,
                               const tern_tensor *const *inputs, tern_tensor **outputs,
                               int64_t *wait_ns, int64_t *run_ns)
{
    int64_t t0 = now_ns();
    pthread_mutex_lock(&v->mu);
    while (v->n_free == 0) pthread_cond_wait(&v->cv, &v->mu);
    int i = 0;
    while (v->busy[i]) i++;
    v->busy[i] = true;
    v->n_free--;
    pthread_mutex_unlock(&v->mu);
    int64_t t1 = now_ns();
    tern_status *st = tern_session_run(v->sess[i], n_inputs, names, inputs, outputs);
    int64_t t2 = now_ns();
    pthread_mutex_lock(&v->mu);
    v->busy[i] = false;
    v->n_free++;
    pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
    if (wait_ns) *wait_ns = t1 - t0;
    if (run_ns) *run_ns = t2 - t1;
    return st;
}

/* The scheduler's engine call: its thread `instance` runs a free session
 * (as many threads as sessions, so one is always free for it). */
static tern_status *sched_exec(void *ctx, int instance, int n_inputs, const char *const *names,
                               const tern_tensor *const *inputs, tern_tensor **outputs)
{
    (void)instance;
    return version_run_timed(ctx, n_inputs, names, inputs, outputs, NULL, NULL);
}

static tern_status *start_sched(model_version *v)
{
    const store_config *c = v->cfg;
    sched_policy p = {
        .max_batch_size = c->max_batch_size,
        .preferred_batch_sizes = c->preferred_batch_sizes,
        .n_preferred = c->n_preferred,
        .max_queue_delay_us = c->max_queue_delay_us,
        .max_queue_size = c->max_queue_size,
        .default_timeout_us = c->default_timeout_us,
        .priority_levels = c->priority_levels,
        .default_priority = c->default_priority_level,
        .instances = v->n_inst,
        .slo_latency_p99_ms = c->slo_latency_p99_ms,
        .slo_availability = c->slo_availability,
        .slo_window_s = c->slo_window_s,
    };
    return sched_create(&p, version_output_count(v), sched_exec, v, &v->sched);
}

tern_status *version_run(model_version *v, int n_inputs, const char *const *names,
                         const tern_tensor *const *inputs, tern_tensor **outputs)
{
    return version_run_timed(v, n_inputs, names, inputs, outputs, NULL, NULL);
}

/* Runs zeros of the warm-up shapes (or of the declared shapes, dynamic
 * dimensions 1) through one session, twice: kernels build their cheap plan
 * on a shape's first run and the costly, faster one (oneDNN Winograd
 * convolutions) on its second, which then happens before any request. */
static tern_status *warm_session(const store_config *cfg, tern_session *sess)
{
    int n = tern_session_input_count(sess);
    const char **names = calloc((size_t)n + 1, sizeof *names);
    tern_tensor **ins = calloc((size_t)n + 1, sizeof *ins);
    int n_out = tern_session_output_count(sess);
    tern_tensor **outs = calloc((size_t)n_out + 1, sizeof *outs);
    tern_status *st = NULL;
    if (!names || !ins || !outs) st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < n && !st; i++) {
        const tern_io_info *io = tern_session_input(sess, i);
        names[i] = io->name;
        int rank = io->rank < 0 ? 1 : io->rank;
        int64_t dims[TERN_MAX_RANK];
        for (int k = 0; k < rank; k++) dims[k] = io->rank < 0 || io->dims[k] < 0 ? 1 : io->dims[k];
        for (int w = 0; w < cfg->n_warmup; w++) {
            if (strcmp(cfg->warmup[w].name, io->name) != 0) continue;
            rank = cfg->warmup[w].rank;
            memcpy(dims, cfg->warmup[w].dims, sizeof dims);
        }
        int64_t numel = 1;
        for (int k = 0; k < rank; k++) {
            if (dims[k] > 0 && numel > WARMUP_MAX_ELEMENTS / dims[k])
                numel = WARMUP_MAX_ELEMENTS + 1;
            else
                numel *= dims[k];
        }
        if (numel > WARMUP_MAX_ELEMENTS)
            st = tern_error(TERN_ERR_INVALID_ARGUMENT,
                            "warm-up input '%s' would have over %lld elements", io->name,
                            (long long)WARMUP_MAX_ELEMENTS);
        else if (tern_dtype_size(io->dtype) == 0 && io->dtype != TERN_STRING)
            st = tern_error(TERN_ERR_UNSUPPORTED, "warm-up input '%s' has type %s", io->name,
                            tern_dtype_name(io->dtype));
        else
            st = tern_tensor_create(io->dtype, rank, dims, &ins[i]);
    }
    for (int rep = 0; rep < 2 && !st; rep++) {
        st = tern_session_run(sess, n, names, (const tern_tensor *const *)ins, outs);
        for (int j = 0; outs && j < n_out; j++) {
            tern_tensor_free(outs[j]);
            outs[j] = NULL;
        }
    }
    for (int i = 0; ins && i < n; i++) tern_tensor_free(ins[i]);
    free(names);
    free(ins);
    free(outs);
    return st;
}

tern_status *store_version_load(store_live *live, const char *name, int64_t number,
                                const char *path, const char *cfg_path, const store_config *cfg,
                                file_id file, file_id cfg_file, model_version **out)
{
    *out = NULL;
    double t0 = now_s();
    if (!file.exists) return tern_error(TERN_ERR_NOT_FOUND, "%s: no such file", path);
    model_version *v = calloc(1, sizeof *v);
    if (!v) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    v->live = live;
    atomic_init(&v->refs, 1);
    v->number = number;
    v->file = file;
    v->cfg_file = cfg_file;
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->cv, NULL);
    store_live_add(live, 1);
    tern_status *st = NULL;
    v->name = strdup(name);
    v->cfg = store_config_dup(cfg);
    v->sess = calloc((size_t)cfg->instances, sizeof *v->sess);
    v->busy = calloc((size_t)cfg->instances, sizeof *v->busy);
    tern_options *opt = tern_options_create();
    if (!v->name || !v->cfg || !v->sess || !v->busy || !opt)
        st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    if (opt) tern_options_set_threads(opt, cfg->threads);
    bool warm = !cfg->has_warmup || cfg->n_warmup > 0;
    for (int i = 0; !st && i < cfg->instances; i++) {
        st = tern_session_create(path, opt, &v->sess[i]);
        if (st) break;
        v->n_inst++;
        if (i == 0) st = store_config_check(cfg, cfg_path, v->sess[0]);
        if (st || !warm) continue;
        tern_status *w = warm_session(cfg, v->sess[i]);
        if (w && cfg->has_warmup) {
            st = tern_error_wrap(w, "warm-up");
        } else if (w) {
            /* No warm-up was asked for: the guessed shapes may simply not
             * suit this model. Serve it anyway. */
            warm = false;
            log_warn("warm-up with default shapes failed; serving without it", LOG_S("model", name),
                     LOG_I("version", number), LOG_S("error", tern_status_message(w)));
            tern_status_free(w);
        }
    }
    tern_options_free(opt);
    v->n_free = v->n_inst;
    if (!st) st = start_sched(v);
    v->load_seconds = now_s() - t0;
    if (st) {
        store_release(v);
        return st;
    }
    *out = v;
    return NULL;
}

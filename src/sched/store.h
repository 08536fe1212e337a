/*
 * The model store: which models and versions exist, which are loaded, and
 * the safe hand-over between them.
 *
 * Models come from a Triton-style repository folder:
 *     DIR/<model>/config.yaml          (optional)
 *     DIR/<model>/<version>/model.onnx (version: a positive integer)
 * config.yaml keys (all optional; everything else is read from the model):
 *     platform: onnx              max_batch_size: 8
 *     version_policy: {latest: {num_versions: N}} | {specific: {versions: [1,3]}} | {all: {}}
 *         (also accepted in short form: "latest: 2", "specific: [1,3]", "all")
 *     instances: 2                (sessions per version, each with a scheduler thread)
 *     threads: 1                  (intra-op threads per session)
 *     inputs / outputs: [{name, datatype, shape}]  (checked against the model)
 *     scheduling (sched.h): preferred_batch_sizes: [8, 16], max_queue_delay_us: 500,
 *         max_queue_size: 256, default_timeout_us: 20000, priority_levels: 2,
 *         default_priority_level: 2, slo: {latency_p99_ms: 20, availability: 0.999,
 *         window_s: 60}
 *     warmup: [{name: x, shape: [1,784]}]  (zeros of that shape, run before serving;
 *         without it a version is warmed with zeros of its declared shape, dynamic dims 1)
 *
 * Lifecycle of a version: LOADING -> READY -> (UNLOADING) -> gone, or
 * LOADING -> FAILED (with the reason; the version serving before stays).
 * A new version is loaded and warmed beside the serving ones and switched in
 * atomically; requests hold a reference (store_acquire/store_release), so an
 * old version is freed only after its last request finishes. No request ever
 * sees a version that is not READY.
 *
 * Control modes (Triton's): NONE loads everything at start and refuses the
 * load/unload API; EXPLICIT loads what is asked (at start: the names in
 * `startup_models`, "*" for all) and serves the API; POLL rescans the folder
 * every poll_secs, loading new versions and unloading removed ones.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef TERN_SCHED_STORE_H
#define TERN_SCHED_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"
#include "tern/engine.h"

typedef enum store_mode { STORE_NONE = 0, STORE_EXPLICIT = 1, STORE_POLL = 2 } store_mode;

typedef struct store_options {
    const char *repository; /* folder */
    store_mode mode;
    const char *const *startup_models; /* EXPLICIT: names to load at start ("*" = all) */
    int n_startup_models;
    int poll_secs;       /* POLL: rescan period */
    int default_threads; /* intra-op threads per session unless config.yaml says */
} store_options;

/* Cumulative statistics of one version (Triton's model statistics). All
 * fields are updated with atomic adds; times in nanoseconds. */
typedef struct version_stats {
    atomic_llong inference_count, execution_count;
    atomic_llong success_count, success_ns;
    atomic_llong fail_count, fail_ns;
    atomic_llong queue_count, queue_ns;
    atomic_llong compute_count, compute_ns;
    atomic_llong last_inference_ms; /* Unix time in ms */
} version_stats;

typedef struct model_version model_version;

/* Read-only view of a READY version; valid while the caller holds it. */
const char *version_model_name(const model_version *v);
int64_t version_number(const model_version *v);
int64_t version_max_batch_size(const model_version *v);
version_stats *version_stats_of(model_version *v);
/* The version's scheduler (sched.h): where requests are submitted. */
struct sched *version_sched(model_version *v);
/* Model metadata: inputs and outputs as the engine describes them. */
int version_input_count(const model_version *v);
int version_output_count(const model_version *v);
const tern_io_info *version_input(const model_version *v, int i);
const tern_io_info *version_output(const model_version *v, int i);
/* Seconds the load (parse + warm-up) took. */
double version_load_seconds(const model_version *v);

/* Runs one inference on a free instance of the version (blocks while all
 * instances are busy). Same contract as tern_session_run. */
tern_status *version_run(model_version *v, int n_inputs, const char *const *names,
                         const tern_tensor *const *inputs, tern_tensor **outputs);
/* The same, also reporting the nanoseconds spent waiting for a free instance
 * and in the engine (either pointer may be NULL). version_run keeps no
 * statistics: the caller, which sees the whole request, adds to
 * version_stats_of(v) (queue, compute, success/fail, counts). */
tern_status *version_run_timed(model_version *v, int n_inputs, const char *const *names,
                               const tern_tensor *const *inputs, tern_tensor **outputs,
                               int64_t *wait_ns, int64_t *run_ns);

typedef struct model_store model_store;

/* At shutdown: every loaded version's scheduler answers its queued requests
 * with 503 and refuses new ones; then wait until no run is under way. */
void store_cancel_queued(model_store *s);
void store_wait_idle(model_store *s);
/* sched_expire on every loaded version. */
void store_expire_queued(model_store *s);
/* Appends the schedulers' Prometheus metrics (sched_metrics_text). */
void store_metrics_text(model_store *s, FILE *f);

tern_status *store_create(const store_options *opt, model_store **out);
/* Stops the poll thread, waits for every held version, unloads all. */
void store_free(model_store *s);

/* Loads the models of the start-up policy (mode NONE: all; EXPLICIT: the
 * startup_models) and starts polling in POLL mode. A model that fails to load
 * is logged and reported by the index; it does not fail the start. */
tern_status *store_start(model_store *s);

/* Takes a reference to version `version` of `model` (version <= 0: the
 * highest READY version). NULL with *err set: TERN_ERR_NOT_FOUND for an
 * unknown model or version, TERN_ERR_UNSUPPORTED-free "not ready" cases use
 * code TERN_ERR_RUNTIME with the message "model 'm' is not ready" (503). */
model_version *store_acquire(model_store *s, const char *model, int64_t version,
                             tern_status **err);
void store_release(model_version *v);

/* Explicit control (EXPLICIT and POLL modes; NONE refuses with
 * TERN_ERR_INVALID_ARGUMENT "model control is disabled (mode none)").
 * load: (re)reads the model's folder and config, loads the versions its
 * policy selects beside the serving ones, switches atomically, unloads the
 * rest. unload: stops serving the model; held versions drain. */
tern_status *store_load(model_store *s, const char *model);
tern_status *store_unload(model_store *s, const char *model);

/* Rescans the repository now (what the poll thread does every poll_secs). */
void store_poll_once(model_store *s);

/* True if at least one version of model is READY (version <= 0: any). */
bool store_ready(model_store *s, const char *model, int64_t version);
/* True when the store has finished its start-up loads. */
bool store_started(model_store *s);
/* Loaded versions not yet freed: the serving ones plus older ones that
 * requests still hold (a swap's old version drains out of this count). */
long store_live_versions(model_store *s);

/* The repository index as Triton returns it: a malloc'd JSON array of
 * {"name","version","state","reason"} for every model folder and loaded
 * version (state READY, UNAVAILABLE, LOADING, FAILED...). ready_only filters. */
char *store_index_json(model_store *s, bool ready_only);
/* Model metadata JSON (KServe): {"name","versions":[...],"platform","inputs":
 * [{"name","datatype","shape"}],"outputs":[...]}; -1 for dynamic dims.
 * version <= 0: the model (versions lists every READY one). NULL + *err if
 * unknown / not ready. */
char *store_metadata_json(model_store *s, const char *model, int64_t version, tern_status **err);
/* Triton model configuration JSON for GET /v2/models/{m}/config. */
char *store_config_json(model_store *s, const char *model, tern_status **err);
/* Triton statistics JSON {"model_stats":[...]} for one model (version <= 0:
 * every loaded version) or, with model NULL, for all models. */
char *store_stats_json(model_store *s, const char *model, int64_t version, tern_status **err);

/* Visits every READY version (for /metrics). The version is held during fn. */
void store_foreach_version(model_store *s, void (*fn)(model_version *v, void *arg), void *arg);

/* Checks a model name from a URL: non-empty, at most 255 bytes, no '/',
 * no "..", no leading '.', no control characters. */
bool store_valid_name(const char *name);

#endif

/*
 * config.yaml of one model in the repository (see store.h for the keys),
 * parsed with libfyaml into a plain struct, and checked against the model
 * once a session exists. Private to the store.
 */
#ifndef TERN_SCHED_STORE_CONFIG_H
#define TERN_SCHED_STORE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "tern/engine.h"

typedef enum store_policy { POLICY_LATEST = 0, POLICY_SPECIFIC = 1, POLICY_ALL = 2 } store_policy;

/* A declared tensor: an input or output (name, dtype, shape) or a warm-up
 * input (name, shape; dtype 0). rank -1: no shape given. */
typedef struct store_tensor_decl {
    char *name;
    tern_dtype dtype;
    int rank;
    int64_t dims[TERN_MAX_RANK];
} store_tensor_decl;

#define STORE_MAX_PREFERRED 16

typedef struct store_config {
    int64_t max_batch_size; /* 0: the model does not batch */
    store_policy policy;
    int latest_n;      /* POLICY_LATEST */
    int64_t *specific; /* POLICY_SPECIFIC, ascending, no duplicates */
    int n_specific;
    int instances; /* >= 1 */
    int threads;   /* >= 1 */
    store_tensor_decl *inputs, *outputs, *warmup;
    int n_inputs, n_outputs, n_warmup;
    bool has_warmup; /* "warmup" given (an empty list turns warm-up off) */
    /* scheduling (sched.h) */
    int64_t preferred_batch_sizes[STORE_MAX_PREFERRED];
    int n_preferred;
    int64_t max_queue_delay_us; /* 0: no waiting for a fuller batch */
    int64_t max_queue_size;     /* 0: unbounded */
    int64_t default_timeout_us; /* 0: none */
    int priority_levels;        /* 1 unless given */
    int default_priority_level; /* 1 .. priority_levels; default the lowest */
    double slo_latency_p99_ms;  /* 0: none */
    double slo_availability;    /* 0: none */
    int slo_window_s;           /* 60 unless given */
} store_config;

/* Reads `path` (a config.yaml; a missing file gives the defaults) for model
 * `model`. Every error names the file and the key: "PATH: inputs[1].shape:
 * ...". default_threads is used when the file has no `threads`. */
tern_status *store_config_read(const char *path, const char *model, int default_threads,
                               store_config **out);
/* The defaults (no config.yaml). */
tern_status *store_config_default(int default_threads, store_config **out);
store_config *store_config_dup(const store_config *c);
void store_config_free(store_config *c);

/* Checks the declared inputs, outputs and warm-up names against a loaded
 * session; the error names the key and the tensor. */
tern_status *store_config_check(const store_config *c, const char *path, const tern_session *sess);

/* KServe datatype name of a tern dtype ("FP32", "BYTES", ...), NULL if none. */
const char *store_dtype_kserve(tern_dtype dt);
/* Parses a KServe ("FP32") or Triton ("TYPE_FP32") datatype name; 0 if unknown. */
tern_dtype store_dtype_parse(const char *name);

#endif

/*
 * Metrics registry and Prometheus text exposition (format 0.0.4).
 *
 * Series are per (model, version); a series is created on first use and
 * lives until the process ends (unloaded versions keep their counters, with
 * tern_model_loaded 0). Updates on the request path are atomic adds on
 * fixed-bucket histograms: no lock, no allocation. Creation takes a mutex.
 *
 * Exposed names (base units, `tern_` prefix):
 *   tern_requests_total{model,version,outcome}          counter   outcome: success|client_error|server_error|rejected
 *   tern_request_duration_seconds{model,version}        histogram  (whole request, HTTP in to HTTP out)
 *   tern_queue_duration_seconds{model,version}          histogram  (waiting for an engine)
 *   tern_compute_duration_seconds{model,version}        histogram  (engine run)
 *   tern_inflight_requests{model,version}               gauge
 *   tern_model_loaded{model,version}                    gauge 0/1
 *   tern_model_load_duration_seconds{model,version}     gauge
 *   tern_process_cpu_seconds_total                      counter (from /proc/self/stat)
 *   tern_process_resident_memory_bytes                  gauge   (from /proc/self/statm)
 *   tern_process_start_time_seconds                     gauge
 *   tern_http_open_connections                          gauge
 * Buckets (seconds): 0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05
 * 0.1 0.25 0.5 1 2.5 5 10 +Inf.
 */
#ifndef TERN_MONITOR_METRICS_H
#define TERN_MONITOR_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef enum metrics_outcome {
    OUTCOME_SUCCESS = 0,
    OUTCOME_CLIENT_ERROR = 1, /* 4xx */
    OUTCOME_SERVER_ERROR = 2, /* 5xx other than rejections */
    OUTCOME_REJECTED = 3,     /* 429/503 admission or not ready */
} metrics_outcome;

typedef struct metrics_series metrics_series;

/* Initialises the registry (start time). Call once at start-up. */
void metrics_init(void);
/* Frees every series (at exit, after all users are gone). */
void metrics_shutdown(void);

/* The series of (model, version), created on first use; never NULL unless
 * out of memory. version is the number ("1") as a string label. */
metrics_series *metrics_series_get(const char *model, int64_t version);

void metrics_request_done(metrics_series *s, metrics_outcome o, double total_s, double queue_s,
                          double compute_s);
void metrics_inflight_add(metrics_series *s, int delta);
void metrics_set_loaded(metrics_series *s, int loaded, double load_seconds);
void metrics_set_open_connections(long n);

/* Renders every series and the process metrics; *out is malloc'd. Returns 0,
 * or -1 if out of memory. */
int metrics_render(char **out, size_t *len);

#endif

/*
 * tern bench's results (bench.c measures them, bench_report.c prints them as
 * a table, JSON or CSV).
 */
#ifndef TERN_CLI_BENCH_H
#define TERN_CLI_BENCH_H

#include <stdbool.h>

#define MAX_CODES 16

/* The server's own statistics (Triton's inference_stats), or their deltas. */
typedef struct sstats {
    bool ok;
    long long success, queue_n, queue_ns, compute_n, compute_ns;
} sstats;

/* One load level and what it measured. */
typedef struct level {
    bool open_loop;
    int conc;
    double rate;
    /* results */
    double throughput, p50, p90, p95, p99, mean, max, window_s;
    long ok, errors, completed_total, unfinished;
    int windows;
    bool stable;
    int n_codes;
    int code[MAX_CODES];
    long count[MAX_CODES];
    sstats server; /* deltas over the reported windows */
} level;

void bench_print_json(const level *lvs, int n);
void bench_print_csv(const level *lvs, int n);
void bench_print_table(const level *lvs, int n, const char *model);

#endif

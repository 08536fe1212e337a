/*
 * Metrics registry and Prometheus text exposition (format 0.0.4).
 *
 * A series holds every number kept for one (model, version): request counts by
 * outcome, three latency histograms, the in-flight and loaded gauges and the
 * last load time. Every field that changes on the request path is a C11
 * atomic updated with relaxed ordering: an update is one or a few
 * atomic_fetch_add, with no lock and no allocation. Relaxed is enough because
 * no reader infers anything from the order of two different counters; a
 * scrape taken during updates may see one request in a histogram and not yet
 * in another, which Prometheus tolerates (it is as if the scrape came a moment
 * earlier for that series).
 *
 * Histograms keep one non-cumulative count per bucket (the finite bounds of
 * metrics.h plus an overflow slot for +Inf) and the sum as an integer number
 * of nanoseconds. Integers rather than a double with a CAS loop: one
 * fetch_add per observation, exact totals under any interleaving, and 2^64 ns
 * is 584 years of accumulated latency. A value is rounded to whole nanoseconds
 * first and the bucket chosen by comparing integers, so `le` and `_sum` agree
 * exactly. Rendering makes the buckets cumulative and derives `_count` from
 * the same reads, so `_count` always equals the `+Inf` bucket even while
 * requests finish. A duration that is negative or NaN means "this phase was
 * not measured" (e.g. no compute for a request rejected before the queue):
 * that histogram is left alone; +Inf and huge values are clamped to 2^62 ns.
 *
 * Finding a series: a fixed table of hash buckets (FNV-1a over model and
 * version), each the head of an append-only singly linked list. A new series
 * is created under the registry mutex (after a second look, so two racing
 * first requests create it once) and published with a release store of the
 * bucket head; lookups walk the list after an acquire load of that head and
 * take no lock, so metrics_series_get once per request costs a hash and a
 * short walk. Series are never removed while the process runs (an unloaded
 * version keeps its counters with tern_model_loaded 0); metrics_shutdown frees
 * them all when no user is left. A second list in creation order, read under
 * the mutex, gives the renderer every series; it sorts a snapshot by model and
 * version so the output is stable.
 *
 * Process metrics are read at render time: CPU from utime+stime of
 * /proc/self/stat (clock ticks / sysconf(_SC_CLK_TCK)), resident memory from
 * the second field of /proc/self/statm times the page size, start time from
 * starttime of /proc/self/stat plus the boot time (btime of /proc/stat, read
 * once). A /proc file that cannot be read drops that metric from the scrape
 * rather than reporting a false value.
 */
#include "monitor/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- histogram ---------------------------------------------------------- */

#define METRICS_NBOUNDS 16
#define METRICS_NSLOTS (METRICS_NBOUNDS + 1) /* last slot: above every bound */

/* The bounds in nanoseconds, and the same bounds as `le` label values. */
static const uint64_t bound_ns[METRICS_NBOUNDS] = {
    100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,   25000000,
    50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};
static const char *const bound_le[METRICS_NBOUNDS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
    "0.05",   "0.1",     "0.25",   "0.5",   "1",      "2.5",   "5",    "10",
};

typedef struct metrics_hist {
    _Atomic uint64_t slot[METRICS_NSLOTS];
    _Atomic uint64_t sum_ns;
} metrics_hist;

#define NS_MAX ((uint64_t)1 << 62)

static void hist_observe(metrics_hist *h, double seconds)
{
    if (!(seconds >= 0)) return; /* negative or NaN: not measured */
    double ns_d = seconds * 1e9 + 0.5;
    uint64_t ns = ns_d >= (double)NS_MAX ? NS_MAX : (uint64_t)ns_d;
    int i = 0;
    while (i < METRICS_NBOUNDS && ns > bound_ns[i]) i++;
    atomic_fetch_add_explicit(&h->slot[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

/* ---- series and registry ------------------------------------------------ */

#define METRICS_NOUTCOMES 4
static const char *const outcome_name[METRICS_NOUTCOMES] = {"success", "client_error",
                                                            "server_error", "rejected"};

typedef enum hist_kind { HIST_TOTAL, HIST_QUEUE, HIST_COMPUTE, METRICS_NHISTS } hist_kind;

struct metrics_series {
    _Atomic uint64_t requests[METRICS_NOUTCOMES];
    metrics_hist hist[METRICS_NHISTS]; /* indexed by hist_kind */
    _Atomic int64_t inflight;
    _Atomic int loaded;
    _Atomic uint64_t load_seconds_bits; /* a double's bits */

    metrics_series *hash_next; /* fixed before the series is published */
    metrics_series *all_next;  /* creation order; read under the mutex */
    int64_t version;
    char *labels; /* `model="...",version="N"`, escaped */
    char model[]; /* as given, for lookups */
};

#define METRICS_HASH_SIZE 256

static struct {
    pthread_mutex_t mu;
    _Atomic(metrics_series *) bucket[METRICS_HASH_SIZE];
    metrics_series *all; /* newest first */
    size_t count;
    bool started;
    double boot_time; /* seconds since the epoch, 0 if unknown */
    double init_time; /* fallback start time */
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER};

static _Atomic long open_connections;

static uint32_t series_hash(const char *model, int64_t version)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)model; *p; p++) h = (h ^ *p) * 16777619u;
    uint64_t v = (uint64_t)version;
    for (int i = 0; i < 8; i++) h = (h ^ (unsigned char)(v >> (8 * i))) * 16777619u;
    return h;
}

static metrics_series *bucket_find(metrics_series *s, const char *model, int64_t version)
{
    for (; s; s = s->hash_next)
        if (s->version == version && strcmp(s->model, model) == 0) return s;
    return NULL;
}

/* ---- text building ------------------------------------------------------ */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static bool sb_reserve(strbuf *b, size_t extra)
{
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(strbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        sb_add(b, tmp, (size_t)n);
        return;
    }
    if (!sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A label value as the exposition format wants it: \ " and newline escaped. */
static void sb_label_value(strbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\\': sb_add(b, "\\\\", 2); break;
        case '"': sb_add(b, "\\\"", 2); break;
        case '\n': sb_add(b, "\\n", 2); break;
        default: sb_add(b, s, 1);
        }
    }
}

/* The shortest decimal that reads back as the same double; Go's spellings of
 * the non-finite values, which Prometheus parses. */
static void sb_double(strbuf *b, double v)
{
    if (!isfinite(v)) {
        sb_puts(b, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    sb_puts(b, tmp);
}

/* ---- public API --------------------------------------------------------- */

static double now_realtime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double read_boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    char line[256];
    double bt = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long v;
        if (sscanf(line, "btime %llu", &v) == 1) {
            bt = (double)v;
            break;
        }
    }
    fclose(f);
    return bt;
}

/* Caller holds reg.mu. */
static void start_locked(void)
{
    if (reg.started) return;
    reg.started = true;
    reg.init_time = now_realtime();
    reg.boot_time = read_boot_time();
}

void metrics_init(void)
{
    pthread_mutex_lock(&reg.mu);
    start_locked();
    pthread_mutex_unlock(&reg.mu);
}

void metrics_shutdown(void)
{
    pthread_mutex_lock(&reg.mu);
    for (int i = 0; i < METRICS_HASH_SIZE; i++)
        atomic_store_explicit(&reg.bucket[i], NULL, memory_order_relaxed);
    metrics_series *s = reg.all;
    while (s) {
        metrics_series *next = s->all_next;
        free(s->labels);
        free(s);
        s = next;
    }
    reg.all = NULL;
    reg.count = 0;
    reg.started = false;
    atomic_store_explicit(&open_connections, 0, memory_order_relaxed);
    pthread_mutex_unlock(&reg.mu);
}

static metrics_series *series_new(const char *model, int64_t version)
{
    size_t n = strlen(model);
    metrics_series *s = calloc(1, sizeof *s + n + 1);
    if (!s) return NULL;
    memcpy(s->model, model, n + 1);
    s->version = version;
    strbuf b = {0};
    sb_puts(&b, "model=\"");
    sb_label_value(&b, model);
    sb_printf(&b, "\",version=\"%" PRId64 "\"", version);
    if (b.oom) {
        free(b.p);
        free(s);
        return NULL;
    }
    s->labels = b.p;
    return s;
}

metrics_series *metrics_series_get(const char *model, int64_t version)
{
    if (!model) model = "";
    _Atomic(metrics_series *) *head = &reg.bucket[series_hash(model, version) % METRICS_HASH_SIZE];
    metrics_series *s =
        bucket_find(atomic_load_explicit(head, memory_order_acquire), model, version);
    if (s) return s;

    pthread_mutex_lock(&reg.mu);
    metrics_series *first = atomic_load_explicit(head, memory_order_relaxed);
    s = bucket_find(first, model, version);
    if (!s) {
        s = series_new(model, version);
        if (s) {
            s->hash_next = first;
            s->all_next = reg.all;
            reg.all = s;
            reg.count++;
            atomic_store_explicit(head, s, memory_order_release);
        }
    }
    pthread_mutex_unlock(&reg.mu);
    return s;
}

void metrics_request_done(metrics_series *s, metrics_outcome o, double total_s, double queue_s,
                          double compute_s)
{
    if (!s) return;
    unsigned i = (unsigned)o < METRICS_NOUTCOMES ? (unsigned)o : OUTCOME_SERVER_ERROR;
    atomic_fetch_add_explicit(&s->requests[i], 1, memory_order_relaxed);
    hist_observe(&s->hist[HIST_TOTAL], total_s);
    hist_observe(&s->hist[HIST_QUEUE], queue_s);
    hist_observe(&s->hist[HIST_COMPUTE], compute_s);
}

void metrics_inflight_add(metrics_series *s, int delta)
{
    if (s) atomic_fetch_add_explicit(&s->inflight, delta, memory_order_relaxed);
}

void metrics_set_loaded(metrics_series *s, int loaded, double load_seconds)
{
    if (!s) return;
    if (!(load_seconds >= 0) || isinf(load_seconds)) load_seconds = 0;
    uint64_t bits;
    memcpy(&bits, &load_seconds, sizeof bits);
    atomic_store_explicit(&s->load_seconds_bits, bits, memory_order_relaxed);
    atomic_store_explicit(&s->loaded, loaded ? 1 : 0, memory_order_relaxed);
}

void metrics_set_open_connections(long n)
{
    atomic_store_explicit(&open_connections, n, memory_order_relaxed);
}

/* ---- rendering ---------------------------------------------------------- */

static void family_header(strbuf *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_hist(strbuf *b, const char *name, const char *help, metrics_series **v, size_t n,
                        hist_kind kind)
{
    family_header(b, name, "histogram", help);
    for (size_t k = 0; k < n; k++) {
        metrics_hist *h = &v[k]->hist[kind];
        uint64_t cum = 0;
        for (int i = 0; i < METRICS_NSLOTS; i++) {
            cum += atomic_load_explicit(&h->slot[i], memory_order_relaxed);
            sb_printf(b, "%s_bucket{%s,le=\"%s\"} %" PRIu64 "\n", name, v[k]->labels,
                      i < METRICS_NBOUNDS ? bound_le[i] : "+Inf", cum);
        }
        uint64_t sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
        sb_printf(b, "%s_sum{%s} ", name, v[k]->labels);
        sb_double(b, (double)sum_ns / 1e9);
        sb_printf(b, "\n%s_count{%s} %" PRIu64 "\n", name, v[k]->labels, cum);
    }
}

static int series_cmp(const void *a, const void *b)
{
    const metrics_series *x = *(metrics_series *const *)a, *y = *(metrics_series *const *)b;
    int c = strcmp(x->model, y->model);
    if (c) return c;
    return (x->version > y->version) - (x->version < y->version);
}

/* utime+stime in seconds and the start time since the epoch; false if
 * /proc/self/stat cannot be read or parsed. */
static bool read_proc_stat(double *cpu, double *start, double boot_time, double fallback)
{
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return false;
    char line[1024];
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!ok) return false;
    /* comm (field 2) may hold spaces and parentheses: fields resume after the
     * last ')'. Field 3 is the state; utime, stime are 14, 15; starttime 22. */
    char *p = strrchr(line, ')');
    if (!p) return false;
    unsigned long long utime, stime, starttime;
    if (sscanf(p + 1,
               " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
               "%llu",
               &utime, &stime, &starttime) != 3)
        return false;
    long tck = sysconf(_SC_CLK_TCK);
    if (tck <= 0) return false;
    /* the process CPU clock has nanosecond resolution; /proc's ticks are
     * 10 ms, which reads 0 for a server that has just started */
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0)
        *cpu = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    else
        *cpu = (double)(utime + stime) / (double)tck;
    *start = boot_time > 0 ? boot_time + (double)starttime / (double)tck : fallback;
    return true;
}

static bool read_resident_bytes(uint64_t *bytes)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return false;
    unsigned long long size, resident;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (n != 2 || page <= 0) return false;
    *bytes = (uint64_t)resident * (uint64_t)page;
    return true;
}

int metrics_render(char **out, size_t *len)
{
    *out = NULL;
    if (len) *len = 0;

    pthread_mutex_lock(&reg.mu);
    start_locked();
    double boot_time = reg.boot_time, init_time = reg.init_time;
    size_t n = reg.count;
    metrics_series **v = malloc((n ? n : 1) * sizeof *v);
    if (v) {
        size_t k = 0;
        for (metrics_series *s = reg.all; s; s = s->all_next) v[k++] = s;
    }
    pthread_mutex_unlock(&reg.mu);
    if (!v) return -1;
    qsort(v, n, sizeof *v, series_cmp);

    strbuf b = {0};
    sb_reserve(&b, 2048 + n * 6144);
    if (n) {
        family_header(&b, "tern_requests_total", "counter",
                      "Inference requests finished, by outcome.");
        for (size_t k = 0; k < n; k++)
            for (int o = 0; o < METRICS_NOUTCOMES; o++)
                sb_printf(&b, "tern_requests_total{%s,outcome=\"%s\"} %" PRIu64 "\n", v[k]->labels,
                          outcome_name[o],
                          atomic_load_explicit(&v[k]->requests[o], memory_order_relaxed));
        render_hist(&b, "tern_request_duration_seconds",
                    "Whole request time, from the HTTP request in to the response out.", v, n,
                    HIST_TOTAL);
        render_hist(&b, "tern_queue_duration_seconds", "Time spent waiting for an engine.", v, n,
                    HIST_QUEUE);
        render_hist(&b, "tern_compute_duration_seconds", "Time spent running the engine.", v, n,
                    HIST_COMPUTE);
        family_header(&b, "tern_inflight_requests", "gauge", "Requests being handled now.");
        for (size_t k = 0; k < n; k++)
            sb_printf(&b, "tern_inflight_requests{%s} %" PRId64 "\n", v[k]->labels,
                      atomic_load_explicit(&v[k]->inflight, memory_order_relaxed));
        family_header(&b, "tern_model_loaded", "gauge",
                      "1 while the model version is loaded, else 0.");
        for (size_t k = 0; k < n; k++)
            sb_printf(&b, "tern_model_loaded{%s} %d\n", v[k]->labels,
                      atomic_load_explicit(&v[k]->loaded, memory_order_relaxed));
        family_header(&b, "tern_model_load_duration_seconds", "gauge",
                      "Time the last load of the model version took.");
        for (size_t k = 0; k < n; k++) {
            uint64_t bits = atomic_load_explicit(&v[k]->load_seconds_bits, memory_order_relaxed);
            double d;
            memcpy(&d, &bits, sizeof d);
            sb_printf(&b, "tern_model_load_duration_seconds{%s} ", v[k]->labels);
            sb_double(&b, d);
            sb_puts(&b, "\n");
        }
    }
    free(v);

    double cpu, start;
    uint64_t rss;
    if (read_proc_stat(&cpu, &start, boot_time, init_time)) {
        family_header(&b, "tern_process_cpu_seconds_total", "counter",
                      "User and system CPU time of the process.");
        sb_puts(&b, "tern_process_cpu_seconds_total ");
        sb_double(&b, cpu);
        sb_puts(&b, "\n");
        family_header(&b, "tern_process_start_time_seconds", "gauge",
                      "Start time of the process since the Unix epoch.");
        sb_puts(&b, "tern_process_start_time_seconds ");
        sb_double(&b, start);
        sb_puts(&b, "\n");
    }
    if (read_resident_bytes(&rss)) {
        family_header(&b, "tern_process_resident_memory_bytes", "gauge",
                      "Resident memory size of the process.");
        sb_printf(&b, "tern_process_resident_memory_bytes %" PRIu64 "\n", rss);
    }
    family_header(&b, "tern_http_open_connections", "gauge", "Open HTTP connections.");
    sb_printf(&b, "tern_http_open_connections %ld\n",
              atomic_load_explicit(&open_connections, memory_order_relaxed));

    if (b.oom) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    if (len) *len = b.len;
    return 0;
}

/*
 * tern bench: a load generator for KServe v2 servers, like Triton's
 * perf_analyzer.
 *
 *   tern bench MODEL [--url URL] [--binary] [--concurrency 1,8,64 | --rate R[,R...]]
 *              [--duration S] [--input NAME=FILE.npy]... [--format table|json|csv]
 *
 * Setup, over libcurl (off the hot path): GET URL/v2/models/MODEL for the
 * inputs (random values of the declared dtypes, -1 dims as 1, unless --input
 * gives them), one probe inference that must answer 200 (its model_version
 * says which version's statistics to read), then the request is encoded
 * once (infer_codec.c) into the exact bytes every send reuses.
 *
 * Load, over bench_http.c's epoll client on this thread, one level at a time:
 * - closed loop, --concurrency N: N connections, each sending its next
 *   request as soon as the previous one is answered; latency from send;
 * - open loop, --rate R: Poisson arrivals (exponential gaps, mean 1/R), each
 *   sent at its scheduled time whether or not earlier ones were answered, on
 *   an idle connection or a new one, up to MAX_CONNS; latency counts from
 *   the scheduled time, so a server (or a bench) that falls behind shows it
 *   (no coordinated omission). An arrival finding all MAX_CONNS busy is not
 *   sent and counts as "dropped".
 * Each level runs a warm-up, then measurement windows of duration/3 s. A
 * response belongs to the window in which it completed. After the third
 * window, and each one after it, the last three are checked: stable when
 * each window's throughput is within 10% of their mean (perf_analyzer's
 * rule). Unstable levels keep measuring up to MAX_WINDOWS windows and report
 * "stable": false. The last three windows are the result: throughput (200
 * responses per second), latency percentiles of those responses, errors by
 * HTTP status ("conn" for a failed connection or malformed response,
 * "dropped" for arrivals never sent), and the server's own queue and
 * compute time per request: deltas of GET URL/v2/models/MODEL/stats taken
 * at the window edges.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/bench.h"
#include "cli/bench_http.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/infer_codec.h"
#include "core/dtype.h"
#include "server/kserve.h"

#define DEFAULT_URL "http://127.0.0.1:8000"
#define DEFAULT_DURATION 6.0
#define MAX_CONNS 1024
#define WINDOWS 3
#define MAX_WINDOWS 10
#define STABILITY 0.10
#define DRAIN_SECS 10.0
#define MAX_LEVELS 64
/* The stats request runs on the load loop: it must not hold it long. */
#define STATS_TIMEOUT_MS 2000L
#define SETUP_TIMEOUT_MS 30000L

static int usage(FILE *f)
{
    fprintf(f,
            "usage: tern bench MODEL [options]\n"
            "  load a KServe v2 server (tern serve, Triton) with inference requests and report\n"
            "  throughput, latency percentiles, errors and the server's queue/compute time\n\n"
            "  --url URL                server address (default " DEFAULT_URL ")\n"
            "  --concurrency N[,N...]   closed loop: N connections, one request outstanding\n"
            "                           on each (default 1,8,64)\n"
            "  --rate R[,R...]          open loop instead: Poisson arrivals at R requests/s,\n"
            "                           latency measured from each scheduled send time\n"
            "  --duration S             seconds measured per level, in %d windows, after a\n"
            "                           warm-up (default %g)\n"
            "  --input NAME=FILE.npy    an input tensor (repeatable; default: random values\n"
            "                           shaped from the model's metadata, -1 dims as 1)\n"
            "  --binary                 binary tensor data (Inference-Header-Content-Length)\n"
            "  --format table|json|csv  output (default table)\n",
            WINDOWS, DEFAULT_DURATION);
    return f == stderr ? 2 : 0;
}

/* ---- setup over libcurl ------------------------------------------------ */

typedef struct buf {
    char *p;
    size_t len, cap;
    bool no_memory;
} buf;

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    buf *b = arg;
    size_t n = size * nmemb;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->no_memory = true;
            return 0;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return n;
}

/* GET (body NULL) or POST url; *status is the HTTP status, out the body. */
static tern_status *http_call(CURL *c, const char *url, const char *body, size_t len,
                              long long header_len, long timeout_ms, long *status, buf *out)
{
    char errbuf[CURL_ERROR_SIZE] = "", hdr[96];
    struct curl_slist *headers = NULL;
    out->len = 0;
    if (body) {
        snprintf(hdr, sizeof hdr, "Inference-Header-Content-Length: %lld", header_len);
        headers = curl_slist_append(NULL, "Expect:");
        struct curl_slist *h =
            headers ? curl_slist_append(headers, header_len >= 0
                                                     ? "Content-Type: application/octet-stream"
                                                     : "Content-Type: application/json")
                    : NULL;
        if (h && header_len >= 0) h = curl_slist_append(headers, hdr);
        if (!h) {
            curl_slist_free_all(headers);
            return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        }
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* direct, as the load itself goes */
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tern-bench");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    return cli_curl_result(rc, url, errbuf, out->no_memory);
}

/* An error for a non-200 answer: "WHAT: HTTP 404: message". */
static tern_status *http_error(const char *what, long status, const buf *b)
{
    char *msg = infer_error_message(b->p ? b->p : "", b->len);
    tern_status *st =
        tern_error(TERN_ERR_RUNTIME, "%s: HTTP %ld: %s", what, status, msg ? msg : "out of memory");
    free(msg);
    return st;
}

/* ---- inputs ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0,1). */
static double rng_uniform(void)
{
    return (double)(rng_next() >> 11) * 0x1.0p-53;
}

/* A tensor of random values for one input of the metadata: floats in
 * [0,1), integers in [0,10), random bools, one-letter strings. */
static tern_status *random_input(json_t *in, const char **name, tern_tensor **out)
{
    const char *n = json_string_value(json_object_get(in, "name"));
    const char *dt_name = json_string_value(json_object_get(in, "datatype"));
    json_t *shape = json_object_get(in, "shape");
    if (!n || !dt_name || !json_is_array(shape))
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "model metadata: an input without name, datatype or shape");
    tern_dtype dt = kserve_dtype(dt_name);
    if (!dt)
        return tern_error(TERN_ERR_UNSUPPORTED,
                          "input '%s': datatype %s cannot be generated; pass --input %s=FILE.npy",
                          n, dt_name, n);
    int rank = (int)json_array_size(shape);
    if (rank > TERN_MAX_RANK)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "input '%s': rank %d too large", n, rank);
    int64_t dims[TERN_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        json_t *v = json_array_get(shape, (size_t)d);
        if (!json_is_integer(v) || json_integer_value(v) < -1)
            return tern_error(TERN_ERR_INVALID_ARGUMENT, "input '%s': bad shape in the metadata",
                              n);
        dims[d] = json_integer_value(v) < 0 ? 1 : json_integer_value(v);
    }
    tern_tensor *t;
    TERN_TRY(tern_error_wrap(tern_tensor_create(dt, rank, dims, &t), "input '%s'", n));
    void *data = tern_tensor_data(t);
    for (int64_t i = 0; i < tern_tensor_numel(t); i++) {
        if (dt == TERN_STRING) {
            char s[2] = {(char)('a' + rng_next() % 26), 0};
            tern_status *st = tern_tensor_set_string(t, i, s);
            if (st) {
                tern_tensor_free(t);
                return st;
            }
        } else if (dt == TERN_BOOL) {
            ((bool *)data)[i] = rng_next() & 1;
        } else if (dtype_is_float(dt)) {
            dtype_set_f64(dt, data, i, rng_uniform());
        } else {
            dtype_set_i64(dt, data, i, (int64_t)(rng_next() % 10));
        }
    }
    *name = n;
    *out = t;
    return NULL;
}

/* ---- server statistics ------------------------------------------------- */


static long long stat_field(json_t *inf, const char *key, const char *field)
{
    return json_integer_value(json_object_get(json_object_get(inf, key), field));
}

/* The model's stats for `version` (every version summed when that one is
 * not listed); ok false when the endpoint does not answer in Triton's form. */
static sstats fetch_stats(CURL *c, const char *url, const char *version)
{
    sstats s = {0};
    buf b = {0};
    long status;
    tern_status *st = http_call(c, url, NULL, 0, -1, STATS_TIMEOUT_MS, &status, &b);
    json_t *root = !st && status == 200 ? json_loadb(b.p, b.len, 0, NULL) : NULL;
    tern_status_free(st);
    free(b.p);
    json_t *arr = json_object_get(root, "model_stats");
    size_t i;
    json_t *m;
    bool listed = false;
    json_array_foreach(arr, i, m)
    {
        const char *v = json_string_value(json_object_get(m, "version"));
        listed |= version && v && !strcmp(v, version);
    }
    json_array_foreach(arr, i, m)
    {
        const char *v = json_string_value(json_object_get(m, "version"));
        if (listed && !(v && !strcmp(v, version))) continue;
        json_t *inf = json_object_get(m, "inference_stats");
        if (!inf) continue;
        s.ok = true;
        s.success += stat_field(inf, "success", "count");
        s.queue_n += stat_field(inf, "queue", "count");
        s.queue_ns += stat_field(inf, "queue", "ns");
        s.compute_n += stat_field(inf, "compute_infer", "count");
        s.compute_ns += stat_field(inf, "compute_infer", "ns");
    }
    json_decref(root);
    return s;
}

/* ---- one level --------------------------------------------------------- */

typedef struct window {
    long ok;
    double *lat; /* microseconds of the 200 responses */
    size_t n_lat, cap_lat;
    int n_codes;
    int code[MAX_CODES]; /* HTTP status; 0 conn, -1 dropped, -2 any other status */
    long count[MAX_CODES];
} window;


typedef struct bench {
    bh_client *cl;
    bool closed_loop, sending, no_memory;
    double measure_start, window_s;
    window win[MAX_WINDOWS];
    long completed_total;
} bench;

static void count_code(int *codes, long *counts, int *n, int code, long k)
{
    int i = 0;
    while (i < *n && codes[i] != code) i++;
    if (i == *n) {
        if (*n == MAX_CODES) { /* table full: the last entry becomes "other" (-2) */
            for (i = 0; i < *n && codes[i] != -2; i++) {
            }
            if (i == *n) codes[i = *n - 1] = -2;
        } else {
            codes[i] = code;
            counts[i] = 0;
            (*n)++;
        }
    }
    counts[i] += k;
}

static void record(bench *b, double when, int status, double latency_s)
{
    if (when < b->measure_start) return;
    int k = (int)((when - b->measure_start) / b->window_s);
    if (k >= MAX_WINDOWS) return;
    window *w = &b->win[k];
    if (status != 200) {
        count_code(w->code, w->count, &w->n_codes, status, 1);
        return;
    }
    w->ok++;
    if (w->n_lat == w->cap_lat) {
        size_t cap = w->cap_lat ? w->cap_lat * 2 : 4096;
        double *p = realloc(w->lat, cap * sizeof *p);
        if (!p) {
            b->no_memory = true;
            return;
        }
        w->lat = p;
        w->cap_lat = cap;
    }
    w->lat[w->n_lat++] = latency_s * 1e6;
}

static void on_done(void *arg, int status, double start, double now)
{
    bench *b = arg;
    if (status == 200) b->completed_total++;
    record(b, now, status, now - start);
    if (b->closed_loop && b->sending) bh_client_send(b->cl, bh_now());
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v. */
static double pct(const double *v, size_t n, double p)
{
    if (!n) return 0;
    size_t k = (size_t)ceil(p / 100 * (double)n);
    return v[k ? k - 1 : 0];
}

static bool stable(const bench *b, int closed)
{
    double sum = 0;
    for (int k = closed - WINDOWS; k < closed; k++) sum += (double)b->win[k].ok;
    double mean = sum / WINDOWS;
    for (int k = closed - WINDOWS; k < closed; k++)
        if (fabs((double)b->win[k].ok - mean) > STABILITY * mean) return false;
    return true;
}

static void progress(const level *lv, const bench *b, double now, int closed, double last_p99)
{
    char what[48];
    if (lv->open_loop)
        snprintf(what, sizeof what, "rate %.10g", lv->rate);
    else
        snprintf(what, sizeof what, "conc %d", lv->conc);
    if (now < b->measure_start) {
        fprintf(stderr, "\r %s  warm-up\033[K", what);
    } else {
        int k = (int)((now - b->measure_start) / b->window_s);
        if (k >= MAX_WINDOWS) k = MAX_WINDOWS - 1;
        double into = now - b->measure_start - k * b->window_s;
        double rps = into > 0.1 || k == 0 ? (double)b->win[k].ok / fmax(into, 0.1)
                                          : (double)b->win[k - 1].ok / b->window_s;
        fprintf(stderr, "\r %s  %.0f req/s  p99 ", what, rps);
        if (closed)
            fprintf(stderr, "%.2f ms", last_p99 / 1e3);
        else
            fprintf(stderr, "-");
        fprintf(stderr, "  %d/%d windows\033[K", closed, closed < WINDOWS ? WINDOWS : closed + 1);
    }
    fflush(stderr);
}

static double window_p99(window *w)
{
    if (!w->n_lat) return 0;
    double *c = malloc(w->n_lat * sizeof *c);
    if (!c) return 0;
    memcpy(c, w->lat, w->n_lat * sizeof *c);
    qsort(c, w->n_lat, sizeof *c, cmp_double);
    double p = pct(c, w->n_lat, 99);
    free(c);
    return p;
}

typedef struct run_ctx {
    const bh_target *target;
    const char *req;
    size_t req_len;
    int max_conns; /* open loop */
    CURL *stats_curl;
    const char *stats_url, *version;
    double duration;
    bool tty;
} run_ctx;

static tern_status *run_level(const run_ctx *rc, level *lv)
{
    bench b = {.closed_loop = !lv->open_loop, .sending = true};
    sstats snap[MAX_WINDOWS + 1] = {{0}};
    bh_client *cl;
    TERN_TRY(bh_client_create(rc->target, rc->req, rc->req_len,
                              lv->open_loop ? rc->max_conns : lv->conc, on_done, &b, &cl));
    b.cl = cl;
    b.window_s = rc->duration / WINDOWS;
    double warm = fmin(1.0, fmax(0.25, 0.1 * rc->duration));
    double t0 = bh_now(), next_send = INFINITY, next_progress = t0;
    b.measure_start = t0 + warm;
    if (lv->open_loop)
        next_send = t0 - log(1 - rng_uniform()) / lv->rate;
    else
        for (int i = 0; i < lv->conc; i++) bh_client_send(cl, t0);
    int closed = -1; /* windows closed; -1 before the first snapshot */
    double last_p99 = 0;
    tern_status *st = NULL;
    for (;;) {
        double now = bh_now();
        while (next_send <= now) {
            if (!bh_client_send(cl, next_send)) record(&b, next_send, -1, 0);
            next_send += -log(1 - rng_uniform()) / lv->rate;
        }
        double edge = b.measure_start + (closed + 1) * b.window_s;
        if (now >= edge) {
            snap[closed + 1] = fetch_stats(rc->stats_curl, rc->stats_url, rc->version);
            closed++;
            if (closed > 0) last_p99 = window_p99(&b.win[closed - 1]);
            if (closed >= WINDOWS && (stable(&b, closed) || closed == MAX_WINDOWS)) break;
            continue;
        }
        if (rc->tty && now >= next_progress) {
            progress(lv, &b, now, closed < 0 ? 0 : closed, last_p99);
            next_progress = now + 0.25;
        }
        double until = fmin(edge, next_send);
        if (rc->tty) until = fmin(until, next_progress);
        if ((st = bh_client_poll(cl, until))) break;
    }
    b.sending = false;
    double drain_end = bh_now() + DRAIN_SECS;
    while (!st && bh_client_outstanding(cl) > 0 && bh_now() < drain_end)
        st = bh_client_poll(cl, fmin(drain_end, bh_now() + 0.1));
    lv->unfinished = bh_client_abort(cl);
    if (rc->tty) fprintf(stderr, "\r\033[K");
    if (!st && b.no_memory) st = tern_error(TERN_ERR_NO_MEMORY, "out of memory for latencies");
    if (!st) {
        /* the last WINDOWS windows are the result */
        int first = closed - WINDOWS;
        size_t n = 0;
        for (int k = first; k < closed; k++) n += b.win[k].n_lat;
        double *all = malloc((n ? n : 1) * sizeof *all);
        if (!all) {
            st = tern_error(TERN_ERR_NO_MEMORY, "out of memory for latencies");
        } else {
            n = 0;
            double sum = 0;
            for (int k = first; k < closed; k++) {
                window *w = &b.win[k];
                if (w->n_lat) memcpy(all + n, w->lat, w->n_lat * sizeof *all);
                n += w->n_lat;
                lv->ok += w->ok;
                for (int j = 0; j < w->n_codes; j++) {
                    count_code(lv->code, lv->count, &lv->n_codes, w->code[j], w->count[j]);
                    lv->errors += w->count[j];
                }
            }
            qsort(all, n, sizeof *all, cmp_double);
            for (size_t j = 0; j < n; j++) sum += all[j];
            lv->window_s = b.window_s;
            lv->windows = closed;
            lv->stable = stable(&b, closed);
            lv->throughput = (double)lv->ok / (WINDOWS * b.window_s);
            lv->p50 = pct(all, n, 50);
            lv->p90 = pct(all, n, 90);
            lv->p95 = pct(all, n, 95);
            lv->p99 = pct(all, n, 99);
            lv->mean = n ? sum / (double)n : 0;
            lv->max = n ? all[n - 1] : 0;
            lv->completed_total = b.completed_total;
            const sstats *a = &snap[first], *z = &snap[closed];
            lv->server = (sstats){a->ok && z->ok,
                                  z->success - a->success,
                                  z->queue_n - a->queue_n,
                                  z->queue_ns - a->queue_ns,
                                  z->compute_n - a->compute_n,
                                  z->compute_ns - a->compute_ns};
            free(all);
        }
    }
    for (int k = 0; k < MAX_WINDOWS; k++) free(b.win[k].lat);
    bh_client_free(cl);
    return st;
}

/* ---- command ----------------------------------------------------------- */

typedef struct args {
    const char *model, *url, *format;
    bool binary;
    int n_levels;
    bool open_loop, have_conc, have_rate;
    double duration;
    level *levels;
    int n_in;
    const char **in_names;
    tern_tensor **ins;
} args;

/* "1,8,64" into levels; false after printing what is wrong. */
static bool parse_levels(const char *flag, const char *list, args *a)
{
    const char *p = list;
    a->n_levels = 0;
    for (;;) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        bool is_rate = !strcmp(flag, "--rate");
        bool ok = end != p && !errno && (*end == ',' || *end == 0) &&
                  (is_rate ? v > 0 && v <= 1e6 : v >= 1 && v <= MAX_CONNS && v == floor(v));
        if (ok && a->n_levels == MAX_LEVELS) {
            fprintf(stderr, "tern: error: %s: at most %d levels\n", flag, MAX_LEVELS);
            return false;
        }
        if (!ok) {
            fprintf(stderr,
                    is_rate ? "tern: error: --rate wants requests/s from 0 to 1000000, "
                              "comma-separated, got '%s'\n"
                            : "tern: error: --concurrency wants integers from 1 to 1024, "
                              "comma-separated, got '%s'\n",
                    list);
            return false;
        }
        level *l = &a->levels[a->n_levels++];
        *l = (level){.open_loop = is_rate, .rate = v, .conc = (int)v};
        if (!*end) return true;
        p = end + 1;
    }
}

/* Parses argv; 0 on success, -1 for --help, else the exit status. */
static int parse_args(int argc, char **argv, args *a)
{
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(s, "--binary")) {
            a->binary = true;
        } else if (!strcmp(s, "--url") && has_val) {
            a->url = argv[++i];
        } else if (!strcmp(s, "--format") && has_val) {
            a->format = argv[++i];
            if (strcmp(a->format, "table") && strcmp(a->format, "json") &&
                strcmp(a->format, "csv")) {
                fprintf(stderr, "tern: error: --format wants table, json or csv, got '%s'\n",
                        a->format);
                return 2;
            }
        } else if ((!strcmp(s, "--concurrency") || !strcmp(s, "--rate")) && has_val) {
            bool rate = !strcmp(s, "--rate");
            if (rate ? a->have_conc : a->have_rate) {
                fprintf(stderr, "tern: error: --concurrency and --rate exclude each other\n");
                return 2;
            }
            *(rate ? &a->have_rate : &a->have_conc) = true;
            if (!parse_levels(s, argv[++i], a)) return 2;
        } else if (!strcmp(s, "--duration") && has_val) {
            char *end;
            const char *v = argv[++i];
            errno = 0;
            a->duration = strtod(v, &end);
            if (errno || end == v || *end || !(a->duration >= 0.03) || a->duration > 86400) {
                fprintf(stderr,
                        "tern: error: --duration must be seconds from 0.03 to 86400, got '%s'\n",
                        v);
                return 2;
            }
        } else if (!strcmp(s, "--input") && has_val) {
            int rc = cli_read_input(argv[++i], &a->in_names[a->n_in], &a->ins[a->n_in]);
            if (rc) return rc;
            a->n_in++;
        } else if (s[0] == '-' || a->model) {
            static const char *const valued[] = {"--url",  "--format", "--concurrency",
                                                 "--rate", "--input",  "--duration"};
            cli_bad_argument(s, valued, sizeof valued / sizeof *valued);
            return usage(stderr);
        } else {
            a->model = s;
        }
    }
    if (!a->model || !*a->model) {
        fprintf(stderr, "tern: error: bench wants a MODEL name\n");
        return usage(stderr);
    }
    if (!a->n_levels) {
        static char def[] = "1,8,64";
        parse_levels("--concurrency", def, a);
    }
    return 0;
}

/* The descriptors the bench may hold: as many as MAX_CONNS plus a few, or
 * what the limit allows. */
static int conn_budget(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 64;
    rlim_t want = MAX_CONNS + 64;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    long n = (long)rl.rlim_cur - 64;
    return n < 1 ? 1 : n > MAX_CONNS ? MAX_CONNS : (int)n;
}

/* "PREFIX/v2/models/MODEL" on the target, the model escaped. */
static char *model_path(CURL *c, const bh_target *t, const char *model)
{
    char *m = curl_easy_escape(c, model, 0), *out = NULL;
    if (m && asprintf(&out, "%s/v2/models/%s", t->prefix, m) < 0) out = NULL;
    curl_free(m);
    return out;
}

static tern_status *run_bench(args *a)
{
    bh_target t;
    TERN_TRY(bh_target_parse(a->url, &t));
    CURL *c = curl_easy_init();
    char *path = c ? model_path(c, &t, a->model) : NULL, *meta_url = NULL, *infer_url = NULL,
         *stats_url = NULL, *body = NULL, *req = NULL, *version = NULL;
    const char *host_url = a->url;
    size_t hl = strlen(host_url);
    /* scheme://host:port, for libcurl; the path part is t.prefix */
    const char *sch = strstr(host_url, "://");
    const char *slash = strchr(sch ? sch + 3 : host_url, '/');
    if (slash) hl = (size_t)(slash - host_url);
    const char *name_only[64];
    tern_tensor *gen[64] = {0};
    int n_gen = 0;
    json_t *meta = NULL, *probe = NULL;
    buf b = {0};
    tern_status *st = NULL;
    long status;
    size_t body_len = 0;
    long long header_len = -1;
    if (!path || asprintf(&meta_url, "%.*s%s", (int)hl, host_url, path) < 0 ||
        asprintf(&infer_url, "%s/infer", meta_url) < 0 ||
        asprintf(&stats_url, "%s/stats", meta_url) < 0) {
        st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    char what[300];
    snprintf(what, sizeof what, "model '%s'", a->model);
    if ((st = http_call(c, meta_url, NULL, 0, -1, SETUP_TIMEOUT_MS, &status, &b))) goto out;
    if (status != 200) {
        st = http_error(what, status, &b);
        goto out;
    }
    meta = json_loadb(b.p, b.len, 0, NULL);
    if (!meta) {
        st = tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: the metadata is not JSON", what);
        goto out;
    }
    const char *const *names = a->in_names;
    const tern_tensor *const *ins = (const tern_tensor *const *)a->ins;
    int n_in = a->n_in;
    if (!n_in) { /* random inputs from the metadata */
        json_t *inputs = json_object_get(meta, "inputs");
        size_t i;
        json_t *in;
        json_array_foreach(inputs, i, in)
        {
            if (n_gen == 64) {
                st = tern_error(TERN_ERR_UNSUPPORTED, "%s: more than 64 inputs", what);
                goto out;
            }
            if ((st = random_input(in, &name_only[n_gen], &gen[n_gen]))) goto out;
            n_gen++;
        }
        names = name_only;
        ins = (const tern_tensor *const *)gen;
        n_in = n_gen;
    }
    if ((st = infer_encode_request(n_in, names, ins, 0, NULL, a->binary, &body, &body_len,
                                   &header_len)))
        goto out;
    /* one probe: the request works, and which version answers it */
    if ((st = http_call(c, infer_url, body, body_len, header_len, SETUP_TIMEOUT_MS, &status, &b)))
        goto out;
    if (status != 200) {
        st = http_error(what, status, &b);
        goto out;
    }
    probe = json_loadb(b.p, b.len, JSON_DISABLE_EOF_CHECK, NULL);
    const char *v = json_string_value(json_object_get(probe, "model_version"));
    if (v && !(version = strdup(v))) {
        st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    /* the request bytes every send reuses */
    char host[300];
    if (strchr(t.host, ':'))
        snprintf(host, sizeof host, "[%s]:%s", t.host, t.port);
    else
        snprintf(host, sizeof host, "%s:%s", t.host, t.port);
    char head[4096];
    int hn = snprintf(head, sizeof head,
                      "POST %s/infer HTTP/1.1\r\nHost: %s\r\nUser-Agent: tern-bench\r\n"
                      "Content-Type: %s\r\nContent-Length: %zu\r\n",
                      path, host, header_len >= 0 ? "application/octet-stream" : "application/json",
                      body_len);
    if (header_len >= 0 && hn > 0 && (size_t)hn < sizeof head)
        hn += snprintf(head + hn, sizeof head - (size_t)hn,
                       "Inference-Header-Content-Length: %lld\r\n", header_len);
    if (hn <= 0 || (size_t)hn + 3 > sizeof head) {
        st = tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: model name too long", what);
        goto out;
    }
    hn += snprintf(head + hn, sizeof head - (size_t)hn, "\r\n");
    if (!(req = malloc((size_t)hn + body_len))) {
        st = tern_error(TERN_ERR_NO_MEMORY, "out of memory for the request");
        goto out;
    }
    memcpy(req, head, (size_t)hn);
    memcpy(req + hn, body, body_len);

    run_ctx rc = {.target = &t,
                  .req = req,
                  .req_len = (size_t)hn + body_len,
                  .max_conns = conn_budget(),
                  .stats_curl = c,
                  .stats_url = stats_url,
                  .version = version,
                  .duration = a->duration,
                  .tty = isatty(2)};
    for (int i = 0; i < a->n_levels && !st; i++) {
        level *lv = &a->levels[i];
        if (!lv->open_loop && lv->conc > rc.max_conns)
            st = tern_error(TERN_ERR_INVALID_ARGUMENT,
                            "--concurrency %d: only %d connections allowed (ulimit -n)", lv->conc,
                            rc.max_conns);
        else
            st = run_level(&rc, lv);
    }
    if (!st) {
        if (!strcmp(a->format, "json"))
            bench_print_json(a->levels, a->n_levels);
        else if (!strcmp(a->format, "csv"))
            bench_print_csv(a->levels, a->n_levels);
        else
            bench_print_table(a->levels, a->n_levels, a->model);
    }
out:
    for (int i = 0; i < n_gen; i++) tern_tensor_free(gen[i]);
    json_decref(meta);
    json_decref(probe);
    curl_easy_cleanup(c);
    free(b.p);
    free(path);
    free(meta_url);
    free(infer_url);
    free(stats_url);
    free(body);
    free(req);
    free(version);
    return st;
}

int cmd_bench(int argc, char **argv)
{
    args a = {.url = DEFAULT_URL, .format = "table", .duration = DEFAULT_DURATION};
    a.in_names = calloc((size_t)argc + 1, sizeof *a.in_names);
    a.ins = calloc((size_t)argc + 1, sizeof *a.ins);
    a.levels = calloc(MAX_LEVELS, sizeof *a.levels);
    int rc = 1;
    if (!a.in_names || !a.ins || !a.levels) {
        fprintf(stderr, "tern: error: out of memory\n");
        goto out;
    }
    rc = parse_args(argc, argv, &a);
    if (rc) {
        if (rc < 0) rc = 0; /* --help */
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "tern: error: cannot initialise libcurl\n");
        rc = 1;
        goto out;
    }
    tern_status *st = run_bench(&a);
    rc = st ? cli_fail(st) : 0;
    curl_global_cleanup();
out:
    for (int i = 0; i < a.n_in; i++) tern_tensor_free(a.ins[i]);
    free(a.ins);
    free(a.in_names);
    free(a.levels);
    return rc;
}

/*
 * The scheduler's statistics (sched.h): Triton's batch_stats, the queue
 * object, the SLO window and the Prometheus families. The SLO window is a
 * ring of per-second slots, each with its outcome counts and a histogram of
 * successful latencies in 10% wide buckets; a report merges the slots of
 * the last window_s seconds and reads the p99 as the upper bound of the
 * bucket that holds it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched/sched_internal.h"

static int slo_bucket(int64_t ns)
{
    if (ns <= SLO_B0_NS) return 0;
    int b = (int)ceil(log((double)ns / SLO_B0_NS) / log(SLO_GROWTH));
    return b >= SLO_NB ? SLO_NB - 1 : b;
}

static double slo_bound_ns(int b)
{
    return SLO_B0_NS * pow(SLO_GROWTH, b);
}

void sched_record(sched *s, int status, int64_t total_ns)
{
    if (!s) return;
    if (status >= 400 && status < 500 && status != 429) return; /* the client's fault */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t sec = ts.tv_sec;
    pthread_mutex_lock(&s->slo_mu);
    slo_slot *sl = &s->slo[sec % s->pol.slo_window_s];
    if (sl->sec != sec) {
        memset(sl, 0, sizeof *sl);
        sl->sec = sec;
    }
    sl->total++;
    if (status == 200) {
        sl->good++;
        sl->hist[slo_bucket(total_ns)]++;
    }
    pthread_mutex_unlock(&s->slo_mu);
}

/* The SLO window merged: counts, observed p99 and availability, and how
 * they compare with the model's objectives (met when there is none, or no
 * request to judge by). */
typedef struct slo_view {
    uint64_t total, good;
    double p99_ms, availability; /* NAN without requests to judge by */
    bool latency_ok, availability_ok;
} slo_view;

static slo_view slo_compute(sched *s)
{
    slo_view v = {.p99_ms = NAN, .availability = NAN};
    uint64_t h[SLO_NB] = {0};
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t sec = ts.tv_sec;
    pthread_mutex_lock(&s->slo_mu);
    for (int i = 0; i < s->pol.slo_window_s; i++) {
        const slo_slot *sl = &s->slo[i];
        if (sl->sec == 0 || sl->sec <= sec - s->pol.slo_window_s) continue;
        v.total += sl->total;
        v.good += sl->good;
        for (int b = 0; b < SLO_NB; b++) h[b] += sl->hist[b];
    }
    pthread_mutex_unlock(&s->slo_mu);
    if (v.good > 0) {
        uint64_t need = (uint64_t)ceil(0.99 * (double)v.good), acc = 0;
        for (int b = 0; b < SLO_NB && isnan(v.p99_ms); b++)
            if ((acc += h[b]) >= need) v.p99_ms = slo_bound_ns(b) / 1e6;
    }
    if (v.total) v.availability = (double)v.good / (double)v.total;
    const sched_policy *p = &s->pol;
    v.latency_ok = !(p->slo_latency_p99_ms > 0 && v.p99_ms > p->slo_latency_p99_ms);
    v.availability_ok = !(p->slo_availability > 0 && v.availability < p->slo_availability);
    return v;
}

static json_t *real_or_null(double x)
{
    return isnan(x) || x <= 0 ? json_null() : json_real(x);
}

json_t *sched_slo_json(sched *s)
{
    slo_view v = slo_compute(s);
    json_t *o = json_object();
    json_object_set_new(o, "window_s", json_integer(s->pol.slo_window_s));
    json_object_set_new(o, "requests", json_integer((json_int_t)v.total));
    json_object_set_new(o, "succeeded", json_integer((json_int_t)v.good));
    json_object_set_new(o, "latency_p99_ms", real_or_null(s->pol.slo_latency_p99_ms));
    json_object_set_new(o, "availability", real_or_null(s->pol.slo_availability));
    json_object_set_new(o, "observed_latency_p99_ms", real_or_null(v.p99_ms));
    json_object_set_new(o, "observed_availability",
                        isnan(v.availability) ? json_null() : json_real(v.availability));
    json_object_set_new(o, "latency_compliant", json_boolean(v.latency_ok));
    json_object_set_new(o, "availability_compliant", json_boolean(v.availability_ok));
    json_object_set_new(o, "compliant", json_boolean(v.latency_ok && v.availability_ok));
    return o;
}

json_t *sched_batch_stats_json(sched *s)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&s->mu);
    for (int64_t i = 1; i < s->stat_cap; i++) {
        if (!s->batch_count[i]) continue;
        json_t *d = json_pack("{s:I,s:I}", "count", (json_int_t)s->batch_count[i], "ns",
                              (json_int_t)s->batch_ns[i]);
        json_array_append_new(arr, json_pack("{s:I,s:o}", "batch_size", (json_int_t)i,
                                              "compute_infer", d));
    }
    pthread_mutex_unlock(&s->mu);
    return arr;
}

json_t *sched_queue_json(sched *s)
{
    json_t *o = json_object();
    json_t *rej = json_object();
    for (int r = 1; r < REJECT_N; r++)
        json_object_set_new(rej, sched_reason_name((sched_reason)r),
                            json_integer(atomic_load(&s->rejected[r])));
    pthread_mutex_lock(&s->mu);
    json_object_set_new(o, "depth", json_integer(s->n_queued));
    json_object_set_new(o, "running", json_integer(s->busy));
    json_object_set_new(o, "instances", json_integer(s->n_workers));
    json_object_set_new(o, "mean_run_ms", s->n_runs ? json_real(s->m_n / 1e6) : json_null());
    json_object_set_new(o, "mean_batch_rows", s->n_runs ? json_real(s->m_r) : json_null());
    json_object_set_new(o, "run_ms_fixed", s->n_runs ? json_real(s->fixed_ns / 1e6) : json_null());
    json_object_set_new(o, "run_ms_per_row",
                        s->n_runs ? json_real(s->per_row_ns / 1e6) : json_null());
    pthread_mutex_unlock(&s->mu);
    json_object_set_new(o, "rejected", rej);
    return o;
}

static void labels(FILE *f, const char *model, int64_t version)
{
    /* model names are folder names ([A-Za-z0-9_.-]): nothing to escape */
    fprintf(f, "model=\"%s\",version=\"%lld\"", model, (long long)version);
}

void sched_metrics_text(sched *const *ss, const char *const *models, const int64_t *versions,
                        int n, FILE *f)
{
    static const int64_t le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
    const int nle = (int)(sizeof le / sizeof le[0]);
    fputs("# HELP tern_batch_size Rows per engine run (dynamic batching).\n"
          "# TYPE tern_batch_size histogram\n", f);
    for (int k = 0; k < n; k++) {
        sched *s = ss[k];
        pthread_mutex_lock(&s->mu);
        int64_t cum = 0, sum = 0;
        int64_t i = 1;
        for (int b = 0; b < nle; b++) {
            for (; i < s->stat_cap && i <= le[b]; i++) {
                cum += s->batch_count[i];
                sum += i * s->batch_count[i];
            }
            fprintf(f, "tern_batch_size_bucket{");
            labels(f, models[k], versions[k]);
            fprintf(f, ",le=\"%lld\"} %lld\n", (long long)le[b], (long long)cum);
        }
        for (; i < s->stat_cap; i++) {
            cum += s->batch_count[i];
            sum += i * s->batch_count[i];
        }
        pthread_mutex_unlock(&s->mu);
        fprintf(f, "tern_batch_size_bucket{");
        labels(f, models[k], versions[k]);
        fprintf(f, ",le=\"+Inf\"} %lld\ntern_batch_size_sum{", (long long)cum);
        labels(f, models[k], versions[k]);
        fprintf(f, "} %lld\ntern_batch_size_count{", (long long)sum);
        labels(f, models[k], versions[k]);
        fprintf(f, "} %lld\n", (long long)cum);
    }
    fputs("# HELP tern_rejected_requests_total Requests not computed, by reason.\n"
          "# TYPE tern_rejected_requests_total counter\n", f);
    for (int k = 0; k < n; k++)
        for (int r = 1; r < REJECT_N; r++) {
            fprintf(f, "tern_rejected_requests_total{");
            labels(f, models[k], versions[k]);
            fprintf(f, ",reason=\"%s\"} %lld\n", sched_reason_name((sched_reason)r),
                    (long long)atomic_load(&ss[k]->rejected[r]));
        }
    fputs("# HELP tern_queue_depth Requests waiting in the scheduler's queue.\n"
          "# TYPE tern_queue_depth gauge\n", f);
    for (int k = 0; k < n; k++) {
        pthread_mutex_lock(&ss[k]->mu);
        int d = ss[k]->n_queued;
        pthread_mutex_unlock(&ss[k]->mu);
        fprintf(f, "tern_queue_depth{");
        labels(f, models[k], versions[k]);
        fprintf(f, "} %d\n", d);
    }
    slo_view *views = calloc((size_t)n + 1, sizeof *views);
    if (!views) return;
    for (int k = 0; k < n; k++) views[k] = slo_compute(ss[k]);
    fputs("# HELP tern_slo_latency_p99_seconds Observed p99 latency over the SLO window.\n"
          "# TYPE tern_slo_latency_p99_seconds gauge\n", f);
    for (int k = 0; k < n; k++) {
        if (isnan(views[k].p99_ms)) continue;
        fprintf(f, "tern_slo_latency_p99_seconds{");
        labels(f, models[k], versions[k]);
        fprintf(f, "} %.6g\n", views[k].p99_ms / 1e3);
    }
    fputs("# HELP tern_slo_availability Share of requests answered successfully over the SLO "
          "window.\n# TYPE tern_slo_availability gauge\n", f);
    for (int k = 0; k < n; k++) {
        if (isnan(views[k].availability)) continue;
        fprintf(f, "tern_slo_availability{");
        labels(f, models[k], versions[k]);
        fprintf(f, "} %.6g\n", views[k].availability);
    }
    fputs("# HELP tern_slo_compliant 1 when the observed window meets the model's SLO.\n"
          "# TYPE tern_slo_compliant gauge\n", f);
    for (int k = 0; k < n; k++) {
        const sched_policy *p = &ss[k]->pol;
        if (p->slo_latency_p99_ms <= 0 && p->slo_availability <= 0) continue;
        fprintf(f, "tern_slo_compliant{");
        labels(f, models[k], versions[k]);
        fprintf(f, "} %d\n", views[k].latency_ok && views[k].availability_ok);
    }
    free(views);
}

/* tern bench's report: the levels as an aligned table, JSON or CSV. */
#include <stdio.h>
#include <string.h>

#include "cli/bench.h"

static const char *code_name(int code, char *buf, size_t size)
{
    if (code == 0) return "conn";
    if (code == -1) return "dropped";
    if (code == -2) return "other";
    snprintf(buf, size, "%d", code);
    return buf;
}

/* "429:3;504:1" (csv) or "429:3 504:1" (table); "-" when there are none. */
static void codes_str(const level *lv, char sep, char *out, size_t size)
{
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < lv->n_codes && o < size; i++) {
        char b[16];
        o += (size_t)snprintf(out + o, size - o, "%s%s:%ld", i ? (char[]){sep, 0} : "",
                              code_name(lv->code[i], b, sizeof b), lv->count[i]);
    }
    if (!lv->n_codes) snprintf(out, size, "-");
}

static double per_request_us(long long ns, long long n)
{
    return n > 0 ? ns / 1e3 / n : 0;
}

void bench_print_json(const level *lvs, int n)
{
    printf("[");
    for (int i = 0; i < n; i++) {
        const level *l = &lvs[i];
        printf("%s\n  {", i ? "," : "");
        if (l->open_loop)
            printf("\"rate\": %.10g, ", l->rate);
        else
            printf("\"concurrency\": %d, ", l->conc);
        printf("\"throughput\": %.2f, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p95_us\": %.1f, "
               "\"p99_us\": %.1f, \"mean_us\": %.1f, \"max_us\": %.1f, \"requests\": %ld, "
               "\"errors\": %ld, \"errors_by_status\": {",
               l->throughput, l->p50, l->p90, l->p95, l->p99, l->mean, l->max, l->ok, l->errors);
        for (int k = 0; k < l->n_codes; k++) {
            char b[16];
            printf("%s\"%s\": %ld", k ? ", " : "", code_name(l->code[k], b, sizeof b), l->count[k]);
        }
        printf("}, \"stable\": %s, \"windows\": %d, \"window_s\": %.6f, "
               "\"completed_total\": %ld, \"unfinished\": %ld, ",
               l->stable ? "true" : "false", l->windows, l->window_s, l->completed_total,
               l->unfinished);
        if (l->server.ok)
            printf("\"server_requests\": %lld, \"server_queue_us\": %.1f, "
                   "\"server_compute_us\": %.1f}",
                   l->server.success, per_request_us(l->server.queue_ns, l->server.queue_n),
                   per_request_us(l->server.compute_ns, l->server.compute_n));
        else
            printf("\"server_requests\": null, \"server_queue_us\": null, "
                   "\"server_compute_us\": null}");
    }
    printf("\n]\n");
}

void bench_print_csv(const level *lvs, int n)
{
    printf("mode,level,throughput,p50_us,p90_us,p95_us,p99_us,mean_us,max_us,requests,errors,"
           "errors_by_status,stable,windows,server_requests,server_queue_us,server_compute_us\n");
    for (int i = 0; i < n; i++) {
        const level *l = &lvs[i];
        char codes[512];
        codes_str(l, ';', codes, sizeof codes);
        if (l->open_loop)
            printf("rate,%.10g,", l->rate);
        else
            printf("concurrency,%d,", l->conc);
        printf("%.2f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%ld,%ld,%s,%s,%d,", l->throughput, l->p50,
               l->p90, l->p95, l->p99, l->mean, l->max, l->ok, l->errors, l->n_codes ? codes : "",
               l->stable ? "true" : "false", l->windows);
        if (l->server.ok)
            printf("%lld,%.1f,%.1f\n", l->server.success,
                   per_request_us(l->server.queue_ns, l->server.queue_n),
                   per_request_us(l->server.compute_ns, l->server.compute_n));
        else
            printf(",,\n");
    }
}

void bench_print_table(const level *lvs, int n, const char *model)
{
    bool open_loop = n && lvs[0].open_loop;
    printf("model %s, %s\n", model, open_loop ? "open loop (Poisson arrivals)" : "closed loop");
    printf("%8s %10s %8s %8s %8s %8s %8s %9s %10s %6s  %s\n", open_loop ? "rate" : "conc", "req/s",
           "p50 ms", "p90 ms", "p95 ms", "p99 ms", "errors", "queue ms", "compute ms", "stable",
           "errors by status");
    for (int i = 0; i < n; i++) {
        const level *l = &lvs[i];
        char lvl[32], q[32] = "-", c[32] = "-", codes[512];
        if (l->open_loop)
            snprintf(lvl, sizeof lvl, "%.10g", l->rate);
        else
            snprintf(lvl, sizeof lvl, "%d", l->conc);
        if (l->server.ok) {
            snprintf(q, sizeof q, "%.3f",
                     per_request_us(l->server.queue_ns, l->server.queue_n) / 1e3);
            snprintf(c, sizeof c, "%.3f",
                     per_request_us(l->server.compute_ns, l->server.compute_n) / 1e3);
        }
        codes_str(l, ' ', codes, sizeof codes);
        printf("%8s %10.1f %8.3f %8.3f %8.3f %8.3f %8ld %9s %10s %6s  %s\n", lvl, l->throughput,
               l->p50 / 1e3, l->p90 / 1e3, l->p95 / 1e3, l->p99 / 1e3, l->errors, q, c,
               l->stable ? "yes" : "no", codes);
    }
}


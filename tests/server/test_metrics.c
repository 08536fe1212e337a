/* Unit tests of monitor/metrics: the exposition is parsed back by a small
 * reader written here from the Prometheus text format 0.0.4 (HELP/TYPE once
 * per family, samples of a family together, escaped label values) and checked
 * against numbers computed by hand from what was fed in; concurrent updates
 * must give exact totals; the process metrics are compared with independent
 * sources (the process CPU clock, getrusage, the wall clock); and Prometheus'
 * own `promtool check metrics` must accept the text. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "monitor/metrics.h"

static double wall_at_start; /* the wall clock when main began */

/* ---- a reader for the text format --------------------------------------- */

#define MAX_LABELS 4

typedef struct sample {
    char name[96];
    int nlabels;
    char key[MAX_LABELS][32];
    char val[MAX_LABELS][128];
    double value;
} sample;

typedef struct family {
    char name[96];
    char type[16];
    int help_lines, type_lines;
} family;

typedef struct exposition {
    sample *s;
    int n, cap;
    family f[64];
    int nf;
} exposition;

static family *family_of(exposition *e, const char *name, int create)
{
    for (int i = 0; i < e->nf; i++)
        if (strcmp(e->f[i].name, name) == 0) return &e->f[i];
    if (!create) return NULL;
    assert_true(e->nf < 64);
    family *f = &e->f[e->nf++];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    return f;
}

/* The family a sample belongs to: its name, less _bucket/_sum/_count when
 * the family of that base name is a histogram. */
static family *family_of_sample(exposition *e, const char *name)
{
    static const char *const suffix[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(name), m = strlen(suffix[i]);
        if (n > m && strcmp(name + n - m, suffix[i]) == 0) {
            char base[96];
            snprintf(base, sizeof base, "%.*s", (int)(n - m), name);
            family *f = family_of(e, base, 0);
            if (f && strcmp(f->type, "histogram") == 0) return f;
        }
    }
    return family_of(e, name, 0);
}

/* Parses the whole text, asserting the rules of the format as it goes:
 * HELP and TYPE at most once per family and before its samples, the samples
 * of a family contiguous, label values with only \\ \" \n escapes. */
static void parse(const char *text, exposition *e)
{
    memset(e, 0, sizeof *e);
    const family *current = NULL;
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        assert_non_null(eol); /* every line ends in a newline */
        char line[1024];
        assert_true((size_t)(eol - p) < sizeof line);
        memcpy(line, p, (size_t)(eol - p));
        line[eol - p] = '\0';
        p = eol + 1;

        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            char name[96], rest[256] = "";
            assert_true(sscanf(line + 7, "%95s %255[^\n]", name, rest) >= 1);
            family *f = family_of(e, name, 1);
            if (line[2] == 'H') {
                f->help_lines++;
                assert_true(strlen(rest) > 0);
            } else {
                f->type_lines++;
                snprintf(f->type, sizeof f->type, "%s", rest);
            }
            assert_true(current == NULL || current == f || f->help_lines + f->type_lines == 1);
            current = f;
            continue;
        }
        assert_true(line[0] != '#');

        if (e->n == e->cap) {
            e->cap = e->cap ? 2 * e->cap : 256;
            e->s = realloc(e->s, (size_t)e->cap * sizeof *e->s);
            assert_non_null(e->s);
        }
        sample *s = &e->s[e->n++];
        memset(s, 0, sizeof *s);
        const char *q = line;
        size_t k = strcspn(q, "{ ");
        assert_true(k > 0 && k < sizeof s->name);
        memcpy(s->name, q, k);
        q += k;
        if (*q == '{') {
            q++;
            while (*q != '}') {
                assert_true(s->nlabels < MAX_LABELS);
                size_t kl = strcspn(q, "=");
                assert_true(kl > 0 && kl < sizeof s->key[0]);
                memcpy(s->key[s->nlabels], q, kl);
                q += kl;
                assert_int_equal(*q++, '=');
                assert_int_equal(*q++, '"');
                char *v = s->val[s->nlabels];
                size_t vl = 0;
                while (*q != '"') {
                    assert_true(*q != '\0');
                    char c = *q++;
                    if (c == '\\') {
                        c = *q++;
                        assert_true(c == '\\' || c == '"' || c == 'n');
                        if (c == 'n') c = '\n';
                    }
                    assert_true(vl + 1 < sizeof s->val[0]);
                    v[vl++] = c;
                }
                q++;
                s->nlabels++;
                if (*q == ',')
                    q++;
                else
                    assert_int_equal(*q, '}');
            }
            q++;
        }
        assert_int_equal(*q++, ' ');
        char *end;
        s->value = strtod(q, &end);
        assert_true(end != q && *end == '\0');

        family *f = family_of_sample(e, s->name);
        assert_non_null(f);           /* every sample has a TYPE before it */
        assert_ptr_equal(f, current); /* and sits with its family */
    }
    for (int i = 0; i < e->nf; i++) {
        assert_int_equal(e->f[i].help_lines, 1);
        assert_int_equal(e->f[i].type_lines, 1);
    }
}

static const char *label(const sample *s, const char *key)
{
    for (int i = 0; i < s->nlabels; i++)
        if (strcmp(s->key[i], key) == 0) return s->val[i];
    return NULL;
}

/* The value of the one sample with this name and labels (NULL-terminated
 * key, value pairs); fails if there is not exactly one. */
static double value_of(const exposition *e, const char *name, ...)
{
    int found = 0;
    double v = 0;
    for (int i = 0; i < e->n; i++) {
        const sample *s = &e->s[i];
        if (strcmp(s->name, name) != 0) continue;
        va_list ap;
        va_start(ap, name);
        int match = 1, nkeys = 0;
        for (const char *k; (k = va_arg(ap, const char *));) {
            const char *want = va_arg(ap, const char *);
            const char *have = label(s, k);
            nkeys++;
            if (!have || strcmp(have, want) != 0) match = 0;
        }
        va_end(ap);
        if (match && nkeys == s->nlabels) {
            found++;
            v = s->value;
        }
    }
    if (found != 1) fail_msg("%s: %d matching samples", name, found);
    return v;
}

static char *render(void)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(metrics_render(&text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* Runs promtool on the text; skipped when promtool is not installed. */
static void promtool_accepts(const char *text)
{
    if (access("/usr/bin/promtool", X_OK) != 0) return;
    char path[] = "/tmp/tern_metrics_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    char cmd[256], out_path[sizeof path + 4];
    snprintf(out_path, sizeof out_path, "%s.out", path);
    snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s > %s 2>&1", path, out_path);
    int rc = system(cmd);
    char report[2048] = "";
    FILE *o = fopen(out_path, "r");
    if (o) {
        size_t n = fread(report, 1, sizeof report - 1, o);
        report[n] = '\0';
        fclose(o);
    }
    unlink(path);
    unlink(out_path);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0 || report[0])
        fail_msg("promtool check metrics failed (status %d): %s", rc, report);
}

static int setup(void **state)
{
    (void)state;
    metrics_init();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    metrics_shutdown();
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static const char *const les[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                  "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                                  "1",      "2.5",     "5",      "10",    "+Inf"};
#define NLE 17

static void check_hist(const exposition *e, const char *name, const char *model,
                       const char *version, const double want_cum[NLE], double want_sum)
{
    char bucket[128], sum[128], count[128];
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    snprintf(sum, sizeof sum, "%s_sum", name);
    snprintf(count, sizeof count, "%s_count", name);
    double prev = 0;
    for (int i = 0; i < NLE; i++) {
        double c = value_of(e, bucket, "model", model, "version", version, "le", les[i], NULL);
        if (c != want_cum[i]) fail_msg("%s{le=%s}: %g, want %g", name, les[i], c, want_cum[i]);
        assert_true(c >= prev); /* cumulative */
        prev = c;
    }
    assert_true(value_of(e, count, "model", model, "version", version, NULL) == want_cum[NLE - 1]);
    double s = value_of(e, sum, "model", model, "version", version, NULL);
    if (fabs(s - want_sum) > 1e-9 * (1 + want_sum))
        fail_msg("%s: %.12g, want %.12g", sum, s, want_sum);
}

static void test_known_updates(void **state)
{
    (void)state;
    metrics_series *a = metrics_series_get("mlp", 1);
    metrics_series *b = metrics_series_get("mlp", 2);
    metrics_series *c = metrics_series_get("classifier", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_ptr_equal(metrics_series_get("mlp", 1), a);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(a, c);

    /* mlp v1: seven requests. le is inclusive: 0.0001 falls in le="0.0001". */
    static const double total[] = {0.00005, 0.0001, 0.0003, 0.002, 0.7, 3, 20};
    static const metrics_outcome oc[] = {OUTCOME_SUCCESS,      OUTCOME_SUCCESS, OUTCOME_SUCCESS,
                                         OUTCOME_CLIENT_ERROR, OUTCOME_SUCCESS, OUTCOME_REJECTED,
                                         OUTCOME_SERVER_ERROR};
    /* queue: the rejected request (index 5) had no queue phase (-1) */
    static const double queue[] = {0.00001, 0.00002, 0.0001, 0.001, 0.2, -1, 0.01};
    /* compute: only the successes ran the engine; NaN also means not measured */
    static const double compute[] = {0.00003, 0.00007, 0.0002, -1, 0.45, NAN, -1};
    for (int i = 0; i < 7; i++) metrics_request_done(a, oc[i], total[i], queue[i], compute[i]);
    metrics_request_done(b, OUTCOME_SUCCESS, 0.004, 0.001, 0.002);
    metrics_inflight_add(a, 3);
    metrics_inflight_add(a, -1);
    metrics_inflight_add(c, 1);
    metrics_set_loaded(a, 1, 1.25);
    metrics_set_loaded(b, 1, 0.5);
    metrics_set_loaded(b, 0, 0.5);
    metrics_set_open_connections(7);

    char *text = render();
    exposition e;
    parse(text, &e);

    /* every family with its type; counters end in _total */
    static const struct {
        const char *name, *type;
    } fam[] = {
        {"tern_requests_total", "counter"},
        {"tern_request_duration_seconds", "histogram"},
        {"tern_queue_duration_seconds", "histogram"},
        {"tern_compute_duration_seconds", "histogram"},
        {"tern_inflight_requests", "gauge"},
        {"tern_model_loaded", "gauge"},
        {"tern_model_load_duration_seconds", "gauge"},
        {"tern_process_cpu_seconds_total", "counter"},
        {"tern_process_resident_memory_bytes", "gauge"},
        {"tern_process_start_time_seconds", "gauge"},
        {"tern_http_open_connections", "gauge"},
    };
    assert_int_equal(e.nf, sizeof fam / sizeof *fam);
    for (size_t i = 0; i < sizeof fam / sizeof *fam; i++) {
        family *f = family_of(&e, fam[i].name, 0);
        if (!f) fail_msg("no family %s", fam[i].name);
        assert_string_equal(f->type, fam[i].type);
    }
    for (int i = 0; i < e.nf; i++)
        if (strcmp(e.f[i].type, "counter") == 0)
            assert_string_equal(e.f[i].name + strlen(e.f[i].name) - 6, "_total");

    assert_true(value_of(&e, "tern_requests_total", "model", "mlp", "version", "1", "outcome",
                         "success", NULL) == 3 + 1);
    assert_true(value_of(&e, "tern_requests_total", "model", "mlp", "version", "1", "outcome",
                         "client_error", NULL) == 1);
    assert_true(value_of(&e, "tern_requests_total", "model", "mlp", "version", "1", "outcome",
                         "server_error", NULL) == 1);
    assert_true(value_of(&e, "tern_requests_total", "model", "mlp", "version", "1", "outcome",
                         "rejected", NULL) == 1);
    assert_true(value_of(&e, "tern_requests_total", "model", "mlp", "version", "2", "outcome",
                         "success", NULL) == 1);
    assert_true(value_of(&e, "tern_requests_total", "model", "classifier", "version", "1",
                         "outcome", "success", NULL) == 0);

    /* hand-computed cumulative counts, le = 0.0001 ... 10, +Inf */
    static const double want_total[NLE] = {2, 2, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 6, 6, 7};
    check_hist(&e, "tern_request_duration_seconds", "mlp", "1", want_total,
               0.00005 + 0.0001 + 0.0003 + 0.002 + 0.7 + 3 + 20);
    static const double want_queue[NLE] = {3, 3, 3, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6};
    check_hist(&e, "tern_queue_duration_seconds", "mlp", "1", want_queue,
               0.00001 + 0.00002 + 0.0001 + 0.001 + 0.2 + 0.01);
    static const double want_compute[NLE] = {2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4};
    check_hist(&e, "tern_compute_duration_seconds", "mlp", "1", want_compute,
               0.00003 + 0.00007 + 0.0002 + 0.45);
    static const double want_b[NLE] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    check_hist(&e, "tern_request_duration_seconds", "mlp", "2", want_b, 0.004);
    static const double zero[NLE] = {0};
    check_hist(&e, "tern_compute_duration_seconds", "classifier", "1", zero, 0);

    assert_true(value_of(&e, "tern_inflight_requests", "model", "mlp", "version", "1", NULL) == 2);
    assert_true(
        value_of(&e, "tern_inflight_requests", "model", "classifier", "version", "1", NULL) == 1);
    assert_true(value_of(&e, "tern_model_loaded", "model", "mlp", "version", "1", NULL) == 1);
    assert_true(value_of(&e, "tern_model_loaded", "model", "mlp", "version", "2", NULL) == 0);
    assert_true(value_of(&e, "tern_model_loaded", "model", "classifier", "version", "1", NULL) ==
                0);
    assert_true(value_of(&e, "tern_model_load_duration_seconds", "model", "mlp", "version", "1",
                         NULL) == 1.25);
    assert_true(value_of(&e, "tern_http_open_connections", NULL) == 7);

    promtool_accepts(text);
    free(e.s);
    free(text);
}

static void test_escaping(void **state)
{
    (void)state;
    const char *odd = "we\"ird\\model\nname";
    metrics_series *s = metrics_series_get(odd, 12);
    assert_non_null(s);
    assert_ptr_equal(metrics_series_get(odd, 12), s);
    metrics_request_done(s, OUTCOME_SUCCESS, 0.01, 0.001, 0.005);
    metrics_set_loaded(s, 1, 0.75);

    char *text = render();
    /* the escapes of the format, written out by hand */
    assert_non_null(strstr(text, "model=\"we\\\"ird\\\\model\\nname\",version=\"12\""));
    exposition e;
    parse(text, &e);
    assert_true(value_of(&e, "tern_requests_total", "model", odd, "version", "12", "outcome",
                         "success", NULL) == 1);
    assert_true(value_of(&e, "tern_model_load_duration_seconds", "model", odd, "version", "12",
                         NULL) == 0.75);
    promtool_accepts(text);
    free(e.s);
    free(text);
}

static void test_no_series_and_null(void **state)
{
    (void)state;
    /* updates through a NULL series (out of memory at creation) are no-ops */
    metrics_request_done(NULL, OUTCOME_SUCCESS, 1, 1, 1);
    metrics_inflight_add(NULL, 1);
    metrics_set_loaded(NULL, 1, 1);

    char *text = render();
    exposition e;
    parse(text, &e);
    assert_null(family_of(&e, "tern_requests_total", 0));
    assert_non_null(family_of(&e, "tern_http_open_connections", 0));
    assert_true(value_of(&e, "tern_http_open_connections", NULL) == 0);
    promtool_accepts(text);
    free(e.s);
    free(text);

    /* a NULL model is the empty name; out-of-range and extreme inputs stay sane */
    metrics_series *s = metrics_series_get(NULL, -3);
    assert_non_null(s);
    assert_ptr_equal(metrics_series_get("", -3), s);
    metrics_request_done(s, (metrics_outcome)99, INFINITY, 1e300, -0.0);
    metrics_set_loaded(s, 5, NAN);
    text = render();
    parse(text, &e);
    assert_true(value_of(&e, "tern_requests_total", "model", "", "version", "-3", "outcome",
                         "server_error", NULL) == 1);
    assert_true(value_of(&e, "tern_request_duration_seconds_bucket", "model", "", "version", "-3",
                         "le", "10", NULL) == 0);
    assert_true(value_of(&e, "tern_request_duration_seconds_bucket", "model", "", "version", "-3",
                         "le", "+Inf", NULL) == 1);
    assert_true(value_of(&e, "tern_compute_duration_seconds_bucket", "model", "", "version", "-3",
                         "le", "0.0001", NULL) == 1);
    assert_true(value_of(&e, "tern_model_loaded", "model", "", "version", "-3", NULL) == 1);
    assert_true(
        value_of(&e, "tern_model_load_duration_seconds", "model", "", "version", "-3", NULL) == 0);
    promtool_accepts(text);
    free(e.s);
    free(text);
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_process_metrics(void **state)
{
    (void)state;
    /* burn some CPU so the counter is well above zero */
    volatile double x = 0;
    double t0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    while (clock_s(CLOCK_PROCESS_CPUTIME_ID) - t0 < 0.2) x += 1;
    /* touch 32 MiB so resident memory is clearly above it */
    size_t big = 32u << 20;
    char *mem = malloc(big);
    assert_non_null(mem);
    memset(mem, 1, big);

    double cpu_before = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    char *text = render();
    double cpu_after = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    exposition e;
    parse(text, &e);

    /* CPU agrees with the kernel's process clock to within a few ticks */
    double cpu = value_of(&e, "tern_process_cpu_seconds_total", NULL);
    assert_true(cpu >= 0.15);
    if (cpu < cpu_before - 0.1 || cpu > cpu_after + 0.1)
        fail_msg("cpu %g outside [%g, %g] +- 0.1", cpu, cpu_before, cpu_after);

    /* resident memory: at least what we touched, at most the peak */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = value_of(&e, "tern_process_resident_memory_bytes", NULL);
    assert_true(rss >= (double)big);
    assert_true(rss <= (double)ru.ru_maxrss * 1024.0 + (1 << 20));
    assert_true(fmod(rss, (double)sysconf(_SC_PAGESIZE)) == 0);

    /* start time: a moment before main began (boot time has 1 s resolution) */
    double start = value_of(&e, "tern_process_start_time_seconds", NULL);
    if (start > wall_at_start + 1.5 || start < wall_at_start - 30)
        fail_msg("start %.3f, main began at %.3f", start, wall_at_start);

    mem[big - 1] = (char)x;
    free(mem);
    free(e.s);
    free(text);
}

/* ---- concurrency -------------------------------------------------------- */

#define NTHREADS 8
#define NITER 20000

static pthread_barrier_t barrier;
static metrics_series *raced[NTHREADS];
/* cmocka's asserts may only fail on the test's own thread: workers count */
static _Atomic int thread_errors;

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    pthread_barrier_wait(&barrier);
    /* all threads ask for the same new series at once: one is created */
    raced[id] = metrics_series_get("raced", 4);
    metrics_series *shared = metrics_series_get("shared", 1);
    char own_name[32];
    snprintf(own_name, sizeof own_name, "own%d", id);
    for (int i = 0; i < NITER; i++) {
        metrics_series *s = metrics_series_get("shared", 1); /* a lookup per request */
        if (s != shared) thread_errors++;
        metrics_inflight_add(s, 1);
        /* 0.001 s total: 1e6 ns each, so sums are exact */
        metrics_request_done(s, (metrics_outcome)(i % 4), 0.001, i % 2 ? 0.0002 : -1, 0.02);
        metrics_inflight_add(s, -1);
        if (i % 100 == 0) {
            /* new series appear while others look up */
            char name[48];
            snprintf(name, sizeof name, "%s_%d", own_name, i / 100);
            metrics_series *o = metrics_series_get(name, i);
            if (!o) thread_errors++;
            metrics_request_done(o, OUTCOME_SUCCESS, 0.5, 0.1, 0.3);
        }
    }
    return NULL;
}

static void *scraper(void *arg)
{
    volatile int *stop = arg;
    while (!*stop) {
        char *text = NULL;
        size_t len;
        if (metrics_render(&text, &len) != 0 || strlen(text) != len) thread_errors++;
        free(text);
    }
    return NULL;
}

static void test_concurrent_exact(void **state)
{
    (void)state;
    pthread_t t[NTHREADS], sc;
    volatile int stop = 0;
    pthread_barrier_init(&barrier, NULL, NTHREADS);
    assert_int_equal(pthread_create(&sc, NULL, scraper, (void *)&stop), 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i), 0);
    for (int i = 0; i < NTHREADS; i++) pthread_join(t[i], NULL);
    stop = 1;
    pthread_join(sc, NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(thread_errors, 0);
    for (int i = 1; i < NTHREADS; i++) assert_ptr_equal(raced[i], raced[0]);

    char *text = render();
    exposition e;
    parse(text, &e);
    const double n = (double)NTHREADS * NITER;
    static const char *const outcomes[] = {"success", "client_error", "server_error", "rejected"};
    for (int o = 0; o < 4; o++)
        assert_true(value_of(&e, "tern_requests_total", "model", "shared", "version", "1",
                             "outcome", outcomes[o], NULL) == n / 4);
    double want_total[NLE], want_queue[NLE], want_compute[NLE];
    for (int i = 0; i < NLE; i++) {
        want_total[i] = i >= 3 ? n : 0;     /* 0.001 is in le="0.001" */
        want_queue[i] = i >= 1 ? n / 2 : 0; /* 0.0002 in le="0.00025" */
        want_compute[i] = i >= 7 ? n : 0;   /* 0.02 in le="0.025" */
    }
    check_hist(&e, "tern_request_duration_seconds", "shared", "1", want_total, n * 0.001);
    check_hist(&e, "tern_queue_duration_seconds", "shared", "1", want_queue, n / 2 * 0.0002);
    check_hist(&e, "tern_compute_duration_seconds", "shared", "1", want_compute, n * 0.02);
    /* exact, not merely close: 1e6 ns per request */
    assert_true(value_of(&e, "tern_request_duration_seconds_sum", "model", "shared", "version", "1",
                         NULL) == 160.0);
    assert_true(value_of(&e, "tern_inflight_requests", "model", "shared", "version", "1", NULL) ==
                0);

    /* every per-thread series is there once, with its one request */
    int own = 0;
    for (int i = 0; i < e.n; i++)
        if (strcmp(e.s[i].name, "tern_requests_total") == 0 &&
            strncmp(label(&e.s[i], "model"), "own", 3) == 0 &&
            strcmp(label(&e.s[i], "outcome"), "success") == 0) {
            assert_true(e.s[i].value == 1);
            own++;
        }
    assert_int_equal(own, NTHREADS * (NITER / 100));
    promtool_accepts(text);
    free(e.s);
    free(text);
}

/* Many series: each is found again (hash chains), the output is sorted by
 * model then version, and shutdown followed by init starts afresh. */
static void test_many_series_and_restart(void **state)
{
    (void)state;
    metrics_series *s[600];
    for (int i = 0; i < 600; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%03d", i % 200);
        s[i] = metrics_series_get(name, 1000 - i / 200);
        assert_non_null(s[i]);
        metrics_set_loaded(s[i], 1, i);
    }
    for (int i = 0; i < 600; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%03d", i % 200);
        assert_ptr_equal(metrics_series_get(name, 1000 - i / 200), s[i]);
    }
    char *text = render();
    exposition e;
    parse(text, &e);
    const char *prev_model = "";
    long prev_version = -1;
    int seen = 0;
    for (int i = 0; i < e.n; i++) {
        if (strcmp(e.s[i].name, "tern_model_load_duration_seconds") != 0) continue;
        const char *m = label(&e.s[i], "model");
        long v = atol(label(&e.s[i], "version"));
        int c = strcmp(prev_model, m);
        assert_true(c < 0 || (c == 0 && v > prev_version));
        int idx = (int)(1000 - v) * 200 + atoi(m + 1);
        assert_true(e.s[i].value == idx);
        prev_model = m;
        prev_version = v;
        seen++;
    }
    assert_int_equal(seen, 600);
    promtool_accepts(text);
    free(e.s);
    free(text);

    metrics_shutdown();
    metrics_init();
    text = render();
    parse(text, &e);
    assert_null(family_of(&e, "tern_model_loaded", 0));
    free(e.s);
    free(text);
    metrics_series *again = metrics_series_get("m000", 1000);
    assert_non_null(again);
    text = render();
    parse(text, &e);
    assert_true(value_of(&e, "tern_model_loaded", "model", "m000", "version", "1000", NULL) == 0);
    free(e.s);
    free(text);
}

int main(void)
{
    wall_at_start = clock_s(CLOCK_REALTIME);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_known_updates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_series_and_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_process_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_series_and_restart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The tern command. Each subcommand is a function over the public engine
 * API (and, for `check`, the reader and registry, to list every op even when
 * the model cannot load). Errors are one line on stderr and a non-zero exit.
 *
 *   tern check MODEL.onnx [--values] [--optimized]
 *   tern run MODEL.onnx --input NAME=FILE.npy [...] [--output-dir DIR]
 *            [--threads T] [--repeat N] [--no-optimize]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/npy.h"
#include "engine/fold.h"
#include "graph/graph.h"
#include "onnx/reader.h"
#include "ops/op.h"
#include "tern/engine.h"

#define TERN_VERSION "0.1.0"

static int usage(FILE *f)
{
    fprintf(f,
            "tern %s - ONNX inference engine and model server\n\n"
            "usage:\n"
            "  tern check MODEL.onnx [--values] [--optimized]\n"
            "      print inputs, outputs, opsets and every op with whether tern supports it;\n"
            "      exit 1 if any op is unsupported or the model does not load;\n"
            "      --values also prints the type of every value (declared or inferred);\n"
            "      --optimized prints what the graph passes did and the ops left after them\n"
            "  tern run MODEL.onnx --input NAME=FILE.npy [--input ...] [--output-dir DIR]\n"
            "           [--threads T] [--repeat N] [--no-optimize]\n"
            "      run the model; write DIR/<output>.npy for every output (default DIR: .);\n"
            "      with --repeat N, time N runs after one warm-up and print JSON stats last\n"
            "  tern bench MODEL [--url URL] [--concurrency 1,8,64 | --rate R,...] [--duration S]\n"
            "             [--input NAME=FILE.npy]... [--binary] [--format table|json|csv]\n"
            "      load a KServe v2 server and report throughput, latency percentiles, errors;\n"
            "      `tern bench --help` says more\n"
            "  tern ops\n"
            "      list every operator tern implements: domain, op, opset versions\n"
            "  tern version\n",
            TERN_VERSION);
    return f == stderr ? 2 : 0;
}

/* ---- check ------------------------------------------------------------- */

typedef struct op_count {
    const char *domain, *op;
    int count;
    bool supported;
} op_count;

static void collect_ops(const Onnx__GraphProto *g, const graph_model *m, op_count *ops, int *n,
                        int cap)
{
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *np = g->node[i];
        const char *dom = np->domain ? np->domain : "", *op = np->op_type ? np->op_type : "";
        if (strcmp(dom, "ai.onnx") == 0) dom = "";
        int k = 0;
        while (k < *n && !(strcmp(ops[k].domain, dom) == 0 && strcmp(ops[k].op, op) == 0)) k++;
        if (k == *n && *n < cap) {
            int64_t v = graph_model_opset(m, dom);
            ops[k] = (op_count){dom, op, 0, v >= 0 && op_lookup(dom, op, v) != NULL};
            (*n)++;
        }
        if (k < *n) ops[k].count++;
        for (size_t a = 0; a < np->n_attribute; a++) {
            const Onnx__AttributeProto *ap = np->attribute[a];
            if (ap->g) collect_ops(ap->g, m, ops, n, cap);
            for (size_t j = 0; j < ap->n_graphs; j++) collect_ops(ap->graphs[j], m, ops, n, cap);
        }
    }
}

static void print_io(const char *kind, const tern_io_info *io)
{
    printf("  %-6s %-24s %-8s ", kind, io->name, tern_dtype_name(io->dtype));
    if (io->rank < 0) {
        printf("shape unknown\n");
        return;
    }
    printf("[");
    for (int d = 0; d < io->rank; d++) {
        if (d) printf(", ");
        if (io->dims[d] >= 0)
            printf("%lld", (long long)io->dims[d]);
        else
            printf("%s", *io->dim_names[d] ? io->dim_names[d] : "?");
    }
    printf("]\n");
}

static void print_type(const char *name, const graph_type *t)
{
    printf("  %-40s ", name);
    if (t->kind == TENSOR_SEQUENCE)
        printf("seq(%s)\n", tern_dtype_name((tern_dtype)t->elem));
    else if (t->kind < 0)
        printf("?\n");
    else {
        printf("%-8s ", tern_dtype_name((tern_dtype)t->elem));
        if (t->rank < 0) {
            printf("?\n");
            return;
        }
        printf("[");
        for (int d = 0; d < t->rank; d++) {
            if (d) printf(",");
            if (t->dims[d] >= 0)
                printf("%lld", (long long)t->dims[d]);
            else
                printf("%s", *t->dim_names[d] ? t->dim_names[d] : "?");
        }
        printf("]\n");
    }
}

/* The model at path as a graph, as loaded (optimized false) or after the
 * passes, its external data resolved against its folder. */
static tern_status *load_graph(const char *path, bool optimized, graph_model **m)
{
    Onnx__ModelProto *proto;
    TERN_TRY(onnx_read_model_file(path, &proto));
    char *dir = strdup(path);
    if (!dir) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    const char *d = slash ? dir : ".";
    tern_status *st = optimized ? engine_build_model(proto, d, engine_optimize_wanted(true), m)
                                : graph_model_build(proto, d, m);
    free(dir);
    return st;
}

/* Prints the type of every value of the main graph, declared or inferred. */
static int print_values(const char *path)
{
    graph_model *m;
    tern_status *st = load_graph(path, false, &m);
    if (st) return cli_fail(st);
    printf("values:\n");
    for (int i = 0; i < m->main->n_values; i++)
        print_type(m->main->values[i].name, &m->main->values[i].type);
    graph_model_free(m);
    return 0;
}

/* What the passes did to the main graph, and its ops after them. */
static int print_optimized(const char *path)
{
    graph_model *m;
    tern_status *st = load_graph(path, true, &m);
    if (st) return cli_fail(st);
    const graph *g = m->main;
    printf("optimized: %d -> %d nodes\nrewrites:", m->main_nodes_before, g->n_nodes);
    for (int k = 0; k < GRAPH_PASS_KINDS; k++)
        if (m->rewrites[k]) printf(" %s=%d", graph_pass_name(k), m->rewrites[k]);
    printf("\noptimized ops:\n");
    bool *done = calloc((size_t)g->n_nodes + 1, sizeof *done);
    for (int i = 0; done && i < g->n_nodes; i++) {
        if (done[i]) continue;
        const op_node *a = &g->nodes[i].op;
        int count = 0;
        for (int j = i; j < g->n_nodes; j++) {
            const op_node *b = &g->nodes[j].op;
            if (!done[j] && !strcmp(a->domain, b->domain) && !strcmp(a->op_type, b->op_type)) {
                done[j] = true;
                count++;
            }
        }
        char name[256];
        snprintf(name, sizeof name, "%s%s%s", a->domain, *a->domain ? "." : "", a->op_type);
        printf("  %-40s x%d\n", name, count);
    }
    free(done);
    graph_model_free(m);
    return 0;
}

static int cmd_check(int argc, char **argv)
{
    bool values = false, optimized = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--values"))
            values = true;
        else if (!strcmp(argv[i], "--optimized"))
            optimized = true;
        else
            return usage(stderr);
    }
    if (argc < 1) return usage(stderr);
    const char *path = argv[0];
    Onnx__ModelProto *proto;
    tern_status *st = onnx_read_model_file(path, &proto);
    if (st) return cli_fail(st);
    /* a model-only view for opsets and op support, independent of loading */
    graph_model view = {.proto = proto};
    opset_entry opsets[64];
    for (size_t i = 0; i < proto->n_opset_import && view.n_opsets < 64; i++) {
        const Onnx__OperatorSetIdProto *o = proto->opset_import[i];
        const char *dom = o->domain ? o->domain : "";
        if (strcmp(dom, "ai.onnx") == 0) dom = "";
        opsets[view.n_opsets++] = (opset_entry){dom, o->version};
    }
    view.opsets = opsets;
    printf("model: %s (ir_version %lld, producer %s %s)\n", path, (long long)proto->ir_version,
           proto->producer_name ? proto->producer_name : "?",
           proto->producer_version ? proto->producer_version : "");
    printf("opsets:\n");
    for (int i = 0; i < view.n_opsets; i++)
        printf("  %-20s %lld\n", *opsets[i].domain ? opsets[i].domain : "ai.onnx",
               (long long)opsets[i].version);
    enum { CAP = 1024 };
    op_count *ops = calloc(CAP, sizeof *ops);
    int n = 0, unsupported = 0;
    if (!ops) {
        onnx__model_proto__free_unpacked(proto, NULL);
        return cli_fail(tern_error(TERN_ERR_NO_MEMORY, "out of memory"));
    }
    collect_ops(proto->graph, &view, ops, &n, CAP);

    tern_session *s;
    st = tern_session_create(path, NULL, &s);
    if (!st) {
        printf("inputs:\n");
        for (int i = 0; i < tern_session_input_count(s); i++)
            print_io("input", tern_session_input(s, i));
        printf("outputs:\n");
        for (int i = 0; i < tern_session_output_count(s); i++)
            print_io("output", tern_session_output(s, i));
    }
    printf("ops:\n");
    for (int i = 0; i < n; i++) {
        printf("  %-32s x%-4d %s\n", ops[i].op, ops[i].count,
               ops[i].supported ? "supported" : "UNSUPPORTED");
        if (!ops[i].supported) unsupported++;
    }
    printf("%d op types, %d unsupported\n", n, unsupported);
    free(ops);
    onnx__model_proto__free_unpacked(proto, NULL);
    if (st) return cli_fail(st);
    tern_session_free(s);
    if (values && print_values(path)) return 1;
    if (optimized && print_optimized(path)) return 1;
    return unsupported ? 1 : 0;
}

/* ---- run --------------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int parse_int(const char *s, const char *what, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "tern: error: %s must be an integer from %ld to %ld, got '%s'\n", what, lo,
                hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

static int cmd_run(int argc, char **argv)
{
    const char *model = NULL, *outdir = ".";
    long threads = 1, repeat = 0;
    int n_in = 0, optimize = 1;
    char **in_names = calloc((size_t)argc + 1, sizeof *in_names);
    tern_tensor **ins = calloc((size_t)argc + 1, sizeof *ins);
    tern_tensor **outs = NULL;
    tern_session *s = NULL;
    tern_options *opt = NULL;
    int rc = 1;
    if (!in_names || !ins) goto out;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--input") && i + 1 < argc) {
            char *spec = argv[++i], *eq = strchr(spec, '=');
            if (!eq || eq == spec) {
                fprintf(stderr, "tern: error: --input wants NAME=FILE.npy, got '%s'\n", spec);
                goto out;
            }
            *eq = 0;
            in_names[n_in] = spec;
            tern_status *st = npy_read(eq + 1, &ins[n_in]);
            if (st) {
                rc = cli_fail(tern_error_wrap(st, "input '%s'", spec));
                goto out;
            }
            n_in++;
        } else if (!strcmp(a, "--output-dir") && i + 1 < argc) {
            outdir = argv[++i];
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            if (!parse_int(argv[++i], "--threads", 1, 256, &threads)) goto out;
        } else if (!strcmp(a, "--repeat") && i + 1 < argc) {
            if (!parse_int(argv[++i], "--repeat", 1, 1000000, &repeat)) goto out;
        } else if (!strcmp(a, "--no-optimize")) {
            optimize = 0;
        } else if (a[0] == '-' || model) {
            rc = usage(stderr);
            goto out;
        } else {
            model = a;
        }
    }
    if (!model) {
        rc = usage(stderr);
        goto out;
    }
    opt = tern_options_create();
    if (!opt) goto out;
    tern_options_set_threads(opt, (int)threads);
    tern_options_set_optimize(opt, optimize);
    tern_status *st = tern_session_create(model, opt, &s);
    if (st) {
        rc = cli_fail(st);
        goto out;
    }
    int n_out = tern_session_output_count(s);
    outs = calloc((size_t)n_out + 1, sizeof *outs);
    if (!outs) goto out;
    double *times = repeat ? malloc((size_t)repeat * sizeof *times) : NULL;
    int runs = repeat ? (int)repeat + 1 : 1;
    for (int r = 0; r < runs; r++) {
        double t0 = now_ms();
        st = tern_session_run(s, n_in, (const char *const *)in_names,
                              (const tern_tensor *const *)ins, outs);
        double t1 = now_ms();
        if (st) {
            free(times);
            rc = cli_fail(st);
            goto out;
        }
        if (r > 0) times[r - 1] = t1 - t0;
        if (r + 1 < runs)
            for (int j = 0; j < n_out; j++) {
                tern_tensor_free(outs[j]);
                outs[j] = NULL;
            }
    }
    if (mkdir(outdir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "tern: error: --output-dir %s: %s\n", outdir, strerror(errno));
        free(times);
        goto out;
    }
    for (int j = 0; j < n_out; j++) {
        const char *name = tern_session_output(s, j)->name;
        char safe[256], path[4096];
        npy_safe_name(name, j, safe, sizeof safe);
        snprintf(path, sizeof path, "%s/%s.npy", outdir, safe);
        st = npy_write(path, outs[j]);
        if (st) {
            free(times);
            rc = cli_fail(st);
            goto out;
        }
        const tern_tensor *t = outs[j];
        printf("%s: %s [", path, tern_dtype_name(tern_tensor_dtype(t)));
        for (int d = 0; d < tern_tensor_rank(t); d++)
            printf(d ? ",%lld" : "%lld", (long long)tern_tensor_dims(t)[d]);
        printf("]\n");
    }
    if (repeat) {
        qsort(times, (size_t)repeat, sizeof *times, cmp_double);
        double med =
            repeat % 2 ? times[repeat / 2] : (times[repeat / 2 - 1] + times[repeat / 2]) / 2;
        long p90 = (long)((repeat - 1) * 0.9 + 0.5);
        printf("{\"runs\":%ld,\"median_ms\":%.3f,\"p90_ms\":%.3f,\"min_ms\":%.3f}\n", repeat, med,
               times[p90], times[0]);
    }
    free(times);
    rc = 0;
out:
    if (outs && s)
        for (int j = 0; j < tern_session_output_count(s); j++) tern_tensor_free(outs[j]);
    free(outs);
    for (int i = 0; i < n_in; i++) tern_tensor_free(ins[i]);
    free(ins);
    free(in_names);
    tern_session_free(s);
    tern_options_free(opt);
    return rc;
}

static void print_op(const op_def *d, void *arg)
{
    (void)arg;
    printf("%-24s %-28s %d-%d\n", *d->domain ? d->domain : "ai.onnx", d->op_type, d->since,
           d->until);
}

/* oneDNN runs on OpenMP, whose idle workers by default spin for 300,000
 * rounds after each parallel region; on a machine whose cores tern's own
 * threads (and the server's) also use, that spinning took a 2-thread
 * resnet18 from 12 to 50-300 ms, and not spinning at all (PASSIVE) costs a
 * futex wake-up per convolution (mobilenet_v2, 2 threads: 6.5 ms against
 * 4.8 ms with a short spin). libgomp reads its settings once, before main,
 * so when the user has set neither, tern sets GOMP_SPINCOUNT=10000 and
 * re-executes itself (once: the variable is then set). If exec fails, it
 * runs as it is. */
static void omp_short_spin(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", "10000", 1) != 0) return;
    execv("/proc/self/exe", argv);
}

int main(int argc, char **argv)
{
    omp_short_spin(argv);
    if (argc < 2) return usage(stderr);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "check")) return cmd_check(argc - 2, argv + 2);
    if (!strcmp(cmd, "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "infer")) return cmd_infer(argc - 2, argv + 2);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 2, argv + 2);
    if (!strcmp(cmd, "ops")) {
        op_foreach(print_op, NULL);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("tern %s\n", TERN_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) return usage(stdout);
    fprintf(stderr, "tern: error: unknown command '%s'\n", cmd);
    return usage(stderr);
}

/*
 * ONNX backend conformance runner.
 *
 * Runs every test of Debian's libonnx-testdata (sets node, simple,
 * pytorch-converted, pytorch-operator): loads test_NAME/model.onnx through the
 * public engine API, feeds each test_data_set_N/input_K.pb, and compares the
 * outputs with output_K.pb (exact for integers, bool and strings; floats
 * within rtol 1e-3, atol 1e-5, NaN equal to NaN). Each test runs in a child
 * process, so a crash, a sanitizer report, a leak or a hang (60 s) is counted
 * as "crashed" for that test instead of ending the run.
 *
 * Usage: tern-conformance [--data DIR] [--set NAME]... [--filter SUBSTR]
 *                         [--failures FILE] [--floor FILE] [-v]
 * Exit status 1 if any test crashed, or (with --floor) if a set passes fewer
 * tests than its floor.
 */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/tensor.h"
#include "graph/graph.h"
#include "onnx/reader.h"
#include "onnx_data.pb-c.h"
#include "tern/engine.h"

enum { R_PASS = 10, R_FAIL = 11, R_UNSUPPORTED = 12 };
#define MSG_MAX 600

static const char *default_sets[] = {"node", "simple", "pytorch-converted", "pytorch-operator"};

/* ---- reading test values ---------------------------------------------- */

static tern_status *read_file(const char *path, void **buf, size_t *len)
{
    return onnx_map_file(path, buf, len);
}

static tern_status *seq_value(onnx_store *s, const Onnx__SequenceProto *sp, tern_tensor **out);

static tern_status *opt_value(onnx_store *s, const Onnx__OptionalProto *op, tern_tensor **out)
{
    if (op->tensor_value) return onnx_tensor(s, op->tensor_value, "optional", out);
    if (op->sequence_value) return seq_value(s, op->sequence_value, out);
    if (op->optional_value) return opt_value(s, op->optional_value, out);
    tern_tensor *t = arena_calloc(&s->mem, sizeof *t);
    if (!t) return tern_error(TERN_ERR_NO_MEMORY, "oom");
    t->kind = TENSOR_NONE;
    t->dtype = TERN_UNDEFINED;
    *out = t;
    return NULL;
}

static tern_status *seq_value(onnx_store *s, const Onnx__SequenceProto *sp, tern_tensor **out)
{
    tern_tensor *t = arena_calloc(&s->mem, sizeof *t);
    size_t n = sp->n_tensor_values;
    if (sp->n_sequence_values || sp->n_optional_values)
        return tern_error(TERN_ERR_UNSUPPORTED, "nested sequences in test data");
    tern_tensor **el = arena_calloc(&s->mem, (n + 1) * sizeof *el);
    if (!t || !el) return tern_error(TERN_ERR_NO_MEMORY, "oom");
    for (size_t i = 0; i < n; i++)
        TERN_TRY(onnx_tensor(s, sp->tensor_values[i], "sequence", &el[i]));
    t->kind = TENSOR_SEQUENCE;
    t->dtype = n ? el[0]->dtype : TERN_UNDEFINED;
    t->rank = 1;
    t->dims[0] = (int64_t)n;
    t->numel = (int64_t)n;
    t->data = el;
    *out = t;
    return NULL;
}

/* Protobufs unpacked for one test; tensors point into them until the end. */
static ProtobufCMessage *kept[256];
static int n_kept;

static void keep(void *m)
{
    if (n_kept < (int)(sizeof kept / sizeof *kept)) kept[n_kept++] = m;
}

static void free_kept(void)
{
    for (int i = 0; i < n_kept; i++) protobuf_c_message_free_unpacked(kept[i], NULL);
    n_kept = 0;
}

/* Reads a .pb value whose expected type is `ty` (tensor, sequence, optional). */
static tern_status *read_value(onnx_store *s, const char *path, const graph_type *ty,
                               tern_tensor **out, char *name, size_t name_len)
{
    void *buf;
    size_t len;
    if (n_kept == (int)(sizeof kept / sizeof *kept))
        return tern_error(TERN_ERR_UNSUPPORTED, "too many test values");
    TERN_TRY(read_file(path, &buf, &len));
    tern_status *st = NULL;
    name[0] = 0;
    if (ty->optional) {
        Onnx__OptionalProto *op = onnx__optional_proto__unpack(NULL, len, buf);
        if (!op) {
            st = tern_error(TERN_ERR_INVALID_MODEL, "%s: bad OptionalProto", path);
        } else {
            keep(op);
            st = opt_value(s, op, out);
            if (op->name) snprintf(name, name_len, "%s", op->name);
        }
    } else if (ty->kind == TENSOR_SEQUENCE) {
        Onnx__SequenceProto *sp = onnx__sequence_proto__unpack(NULL, len, buf);
        if (!sp) {
            st = tern_error(TERN_ERR_INVALID_MODEL, "%s: bad SequenceProto", path);
        } else {
            keep(sp);
            st = seq_value(s, sp, out);
            if (!st && (*out)->numel == 0) (*out)->dtype = (tern_dtype)ty->elem;
            if (sp->name) snprintf(name, name_len, "%s", sp->name);
        }
    } else {
        Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, len, buf);
        if (!tp) {
            st = tern_error(TERN_ERR_INVALID_MODEL, "%s: bad TensorProto", path);
        } else {
            keep(tp);
            st = onnx_tensor(s, tp, path, out);
            if (tp->name) snprintf(name, name_len, "%s", tp->name);
        }
    }
    onnx_unmap_file(buf, len);
    return st;
}

/* ---- comparison ------------------------------------------------------- */

static bool close_enough(double a, double e)
{
    if (isnan(e)) return isnan(a);
    if (isinf(e)) return a == e;
    return fabs(a - e) <= 1e-5 + 1e-3 * fabs(e);
}

static bool compare(const tern_tensor *got, const tern_tensor *want, char *msg, size_t len,
                    const char *what)
{
    char a[200], b[200];
    if (want->kind == TENSOR_NONE || got->kind == TENSOR_NONE) {
        if (want->kind == got->kind) return true;
        snprintf(msg, len, "%s: expected %s, got %s", what,
                 want->kind == TENSOR_NONE ? "an empty optional" : "a value",
                 got->kind == TENSOR_NONE ? "an empty optional" : "a value");
        return false;
    }
    if (want->kind == TENSOR_SEQUENCE) {
        if (got->kind != TENSOR_SEQUENCE || got->numel != want->numel) {
            snprintf(msg, len, "%s: expected a sequence of %lld", what, (long long)want->numel);
            return false;
        }
        for (int64_t i = 0; i < want->numel; i++) {
            char w[160];
            snprintf(w, sizeof w, "%s[%lld]", what, (long long)i);
            if (!compare(((tern_tensor **)got->data)[i], ((tern_tensor **)want->data)[i], msg, len,
                         w))
                return false;
        }
        return true;
    }
    if (got->kind != TENSOR_DENSE) {
        snprintf(msg, len, "%s: expected a tensor, got a sequence", what);
        return false;
    }
    if (got->dtype != want->dtype) {
        snprintf(msg, len, "%s: dtype %s, expected %s", what, tern_dtype_name(got->dtype),
                 tern_dtype_name(want->dtype));
        return false;
    }
    if (!shape_equal(got, want)) {
        snprintf(msg, len, "%s: shape %s, expected %s", what,
                 shape_str(got->rank, got->dims, a, sizeof a),
                 shape_str(want->rank, want->dims, b, sizeof b));
        return false;
    }
    for (int64_t i = 0; i < want->numel; i++) {
        bool ok;
        if (want->dtype == TERN_STRING) {
            const char *g = ((char **)got->data)[i], *w = ((char **)want->data)[i];
            ok = strcmp(g ? g : "", w ? w : "") == 0;
            if (!ok) {
                snprintf(msg, len, "%s[%lld]: '%s', expected '%s'", what, (long long)i, g ? g : "",
                         w);
                return false;
            }
            continue;
        }
        if (dtype_is_float(want->dtype)) {
            ok = close_enough(dtype_get_f64(got->dtype, got->data, i),
                              dtype_get_f64(want->dtype, want->data, i));
        } else {
            ok = dtype_get_i64(got->dtype, got->data, i) ==
                 dtype_get_i64(want->dtype, want->data, i);
        }
        if (!ok) {
            snprintf(msg, len, "%s[%lld]: %.9g, expected %.9g", what, (long long)i,
                     dtype_get_f64(got->dtype, got->data, i),
                     dtype_get_f64(want->dtype, want->data, i));
            return false;
        }
    }
    return true;
}

/* numpy has no bfloat16, so ONNX 1.12 stores bfloat16 test values as uint16
 * tensors of the same bits; read them as the bfloat16 the model means. */
static void bf16_quirk(tern_tensor *t, int want_elem)
{
    if (t->kind == TENSOR_DENSE && t->dtype == TERN_UINT16 && want_elem == TERN_BFLOAT16)
        t->dtype = TERN_BFLOAT16;
}

/* ---- one test (in the child) ------------------------------------------ */

static int file_exists(const char *p)
{
    return access(p, R_OK) == 0;
}

static int run_test(const char *dir, char *msg, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    Onnx__ModelProto *mp;
    tern_status *st = onnx_read_model_file(path, &mp);
    if (st) {
        snprintf(msg, len, "%s", tern_status_message(st));
        tern_status_free(st);
        return R_FAIL;
    }
    tern_session *s;
    st = tern_session_create(path, NULL, &s);
    if (st) {
        int r = tern_status_code(st) == TERN_ERR_UNSUPPORTED ? R_UNSUPPORTED : R_FAIL;
        snprintf(msg, len, "%s", tern_status_message(st));
        tern_status_free(st);
        onnx__model_proto__free_unpacked(mp, NULL);
        return r;
    }
    /* declared types of the formal inputs (those without initializer) and outputs */
    const Onnx__GraphProto *gp = mp->graph;
    int n_in = tern_session_input_count(s), n_out = tern_session_output_count(s);
    graph_type *in_ty = calloc((size_t)n_in + 1, sizeof *in_ty);
    graph_type *out_ty = calloc((size_t)n_out + 1, sizeof *out_ty);
    for (int i = 0; i < n_in; i++) {
        const char *nm = tern_session_input(s, i)->name;
        for (size_t k = 0; k < gp->n_input; k++)
            if (strcmp(gp->input[k]->name, nm) == 0)
                graph_type_from_proto(NULL, gp->input[k]->type, &in_ty[i]);
    }
    for (int j = 0; j < n_out && j < (int)gp->n_output; j++)
        graph_type_from_proto(NULL, gp->output[j]->type, &out_ty[j]);

    int result = R_PASS;
    const char **names = calloc((size_t)n_in + 1, sizeof *names);
    const tern_tensor **ins = calloc((size_t)n_in + 1, sizeof *ins);
    tern_tensor **outs = calloc((size_t)n_out + 1, sizeof *outs);
    int sets = 0;
    for (int ds = 0;; ds++) {
        char sd[4200];
        snprintf(sd, sizeof sd, "%s/test_data_set_%d", dir, ds);
        snprintf(path, sizeof path, "%s/.", sd);
        if (!file_exists(sd)) break;
        sets++;
        onnx_store store;
        onnx_store_init(&store, NULL);
        int k = 0;
        for (;; k++) {
            snprintf(path, sizeof path, "%s/input_%d.pb", sd, k);
            if (!file_exists(path)) break;
            if (k >= n_in) {
                snprintf(msg, len, "test gives more inputs (%d+) than the model takes (%d)", k + 1,
                         n_in);
                result = R_FAIL;
                break;
            }
            char name[256];
            tern_tensor *t;
            st = read_value(&store, path, &in_ty[k], &t, name, sizeof name);
            if (st) break;
            bf16_quirk(t, in_ty[k].elem);
            names[k] = tern_session_input(s, k)->name;
            for (int q = 0; q < n_in; q++)
                if (*name && strcmp(tern_session_input(s, q)->name, name) == 0) {
                    names[k] = tern_session_input(s, q)->name;
                }
            ins[k] = t;
        }
        if (!st && result == R_PASS) st = tern_session_run(s, k, names, ins, outs);
        for (int j = 0; !st && result == R_PASS && j < n_out; j++) {
            snprintf(path, sizeof path, "%s/output_%d.pb", sd, j);
            if (!file_exists(path)) continue;
            char name[256], what[300];
            tern_tensor *want;
            st = read_value(&store, path, &out_ty[j], &want, name, sizeof name);
            if (st) break;
            bf16_quirk(want, outs[j]->dtype);
            snprintf(what, sizeof what, "set %d output '%s'", ds, tern_session_output(s, j)->name);
            if (!compare(outs[j], want, msg, len, what)) result = R_FAIL;
        }
        for (int j = 0; j < n_out; j++) {
            tern_tensor_free(outs[j]);
            outs[j] = NULL;
        }
        onnx_store_free(&store);
        free_kept();
        if (st) {
            result = tern_status_code(st) == TERN_ERR_UNSUPPORTED ? R_UNSUPPORTED : R_FAIL;
            snprintf(msg, len, "set %d: %s", ds, tern_status_message(st));
            tern_status_free(st);
            st = NULL;
        }
        if (result != R_PASS) break;
    }
    if (sets == 0 && result == R_PASS) {
        snprintf(msg, len, "no test_data_set");
        result = R_FAIL;
    }
    free(names);
    free(ins);
    free(outs);
    free(in_ty);
    free(out_ty);
    tern_session_free(s);
    onnx__model_proto__free_unpacked(mp, NULL);
    return result;
}

/* ---- driver ----------------------------------------------------------- */

typedef struct counts {
    int pass, fail, unsupported, crash;
} counts;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The test names of the set being run; the child frees them before it
 * exits so that LeakSanitizer sees only what the test itself leaked. */
static char **g_tests;
static size_t g_n_tests;

static void free_tests(void)
{
    for (size_t i = 0; i < g_n_tests; i++) free(g_tests[i]);
    free(g_tests);
    g_tests = NULL;
    g_n_tests = 0;
}

/* Forks, runs one test in the child, returns its outcome and message. */
static int run_isolated(const char *dir, char *msg, size_t len)
{
    int fds[2];
    if (pipe(fds) != 0) {
        snprintf(msg, len, "pipe failed");
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        alarm(120);
        char m[MSG_MAX] = "";
        int r = run_test(dir, m, sizeof m);
        ssize_t w = write(fds[1], m, strlen(m));
        (void)w;
        close(fds[1]);
        free_tests();
        exit(r); /* exit, not _exit: LeakSanitizer runs at exit */
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < len && (r = read(fds[0], msg + got, len - 1 - got)) > 0) got += (size_t)r;
    msg[got] = 0;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status)) {
        int c = WEXITSTATUS(status);
        if (c == R_PASS || c == R_FAIL || c == R_UNSUPPORTED) return c;
        snprintf(msg + strlen(msg), len - strlen(msg),
                 "%sexit status %d (sanitizer report or leak)", got ? "; " : "", c);
        return -1;
    }
    if (WIFSIGNALED(status))
        snprintf(msg, len, "killed by signal %d%s", WTERMSIG(status),
                 WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    return -1;
}

static int read_floor(const char *file, const char *set)
{
    FILE *f = fopen(file, "r");
    if (!f) return -1;
    char name[128];
    int n, res = -1;
    while (fscanf(f, "%127s %d", name, &n) == 2)
        if (strcmp(name, set) == 0) res = n;
    fclose(f);
    return res;
}

int main(int argc, char **argv)
{
    const char *data = "/usr/share/libonnx-testdata/data", *filter = NULL, *failures = NULL,
               *floor_file = NULL;
    const char *sets[16];
    int n_sets = 0, verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && n_sets < 16)
            sets[n_sets++] = argv[++i];
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc)
            filter = argv[++i];
        else if (!strcmp(argv[i], "--failures") && i + 1 < argc)
            failures = argv[++i];
        else if (!strcmp(argv[i], "--floor") && i + 1 < argc)
            floor_file = argv[++i];
        else if (!strcmp(argv[i], "-v"))
            verbose = 1;
        else {
            fprintf(stderr,
                    "usage: %s [--data DIR] [--set NAME]... [--filter SUBSTR] [--failures FILE] "
                    "[--floor FILE] [-v]\n",
                    argv[0]);
            return 2;
        }
    }
    if (n_sets == 0)
        for (size_t i = 0; i < sizeof default_sets / sizeof *default_sets; i++)
            sets[n_sets++] = default_sets[i];
    FILE *ff = failures ? fopen(failures, "w") : NULL;
    int bad = 0;
    counts total = {0};
    for (int si = 0; si < n_sets; si++) {
        char sdir[4096];
        snprintf(sdir, sizeof sdir, "%s/%s", data, sets[si]);
        DIR *d = opendir(sdir);
        if (!d) {
            fprintf(stderr, "%s: cannot open\n", sdir);
            return 2;
        }
        char **tests = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strncmp(e->d_name, "test_", 5) != 0) continue;
            if (filter && !strstr(e->d_name, filter)) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                tests = realloc(tests, cap * sizeof *tests);
            }
            tests[n++] = strdup(e->d_name);
        }
        closedir(d);
        if (n) qsort(tests, n, sizeof *tests, cmp_str);
        g_tests = tests;
        g_n_tests = n;
        counts c = {0};
        for (size_t i = 0; i < n; i++) {
            char tdir[8192], msg[MSG_MAX];
            snprintf(tdir, sizeof tdir, "%s/%s", sdir, tests[i]);
            int r = run_isolated(tdir, msg, sizeof msg);
            const char *label = r == R_PASS          ? "PASS"
                                : r == R_FAIL        ? "FAIL"
                                : r == R_UNSUPPORTED ? "UNSUPPORTED"
                                                     : "CRASH";
            if (r == R_PASS)
                c.pass++;
            else if (r == R_FAIL)
                c.fail++;
            else if (r == R_UNSUPPORTED)
                c.unsupported++;
            else
                c.crash++;
            if (verbose || r == -1)
                printf("%-11s %s/%s%s%s\n", label, sets[si], tests[i], *msg ? ": " : "", msg);
            if (ff && r != R_PASS) fprintf(ff, "%s/%s: %s: %s\n", sets[si], tests[i], label, msg);
        }
        free_tests();
        printf("%-18s passed %4d  failed %4d  unsupported %4d  crashed %4d  (of %zu)\n", sets[si],
               c.pass, c.fail, c.unsupported, c.crash, n);
        total.pass += c.pass;
        total.fail += c.fail;
        total.unsupported += c.unsupported;
        total.crash += c.crash;
        if (c.crash) bad = 1;
        if (floor_file) {
            int fl = read_floor(floor_file, sets[si]);
            if (fl > c.pass) {
                printf("%s: %d passed, below the floor of %d\n", sets[si], c.pass, fl);
                bad = 1;
            }
        }
        fflush(stdout);
    }
    printf("%-18s passed %4d  failed %4d  unsupported %4d  crashed %4d\n", "total", total.pass,
           total.fail, total.unsupported, total.crash);
    if (ff) fclose(ff);
    return bad;
}

/*
 * bench/transpose: Transpose and Gather at each instruction-set level
 * (TERN_ISA=generic, avx2, avx512), one thread. A benchmark, not a test.
 *
 * Each case is a one-node session (the model is encoded here, a few bytes
 * of protobuf): Transpose or Gather, followed by Shape so that the session
 * hands back eight bytes instead of copying the result out; graph passes
 * are off so nothing folds the node away. tern_isa() is fixed for a
 * process, so the parent runs itself once per level (`--child`, with
 * TERN_ISA set), ROUNDS times round-robin so that the levels share the
 * machine's state; a child prints the median time of each case, the parent
 * the median over rounds and the speed-up of each level over generic
 * (above 1: faster).
 *
 *   build/bench_transpose [ROUNDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tern/engine.h"
#include "timing.h"

/* ---- a little protobuf ----------------------------------------------------- */

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) exit(1);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void varint(buf *b, uint64_t v)
{
    unsigned char c;
    do {
        c = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) c |= 0x80;
        put(b, &c, 1);
    } while (v);
}
static void f_int(buf *b, int field, int64_t v)
{
    varint(b, (uint64_t)field << 3);
    varint(b, (uint64_t)v);
}
static void f_bytes(buf *b, int field, const void *d, size_t n)
{
    varint(b, (uint64_t)field << 3 | 2);
    varint(b, n);
    put(b, d, n);
}
static void f_str(buf *b, int field, const char *s)
{
    f_bytes(b, field, s, strlen(s));
}
/* Appends sub as field `field` and frees it. */
static void f_msg(buf *b, int field, buf *sub)
{
    f_bytes(b, field, sub->p, sub->n);
    free(sub->p);
    *sub = (buf){0};
}

/* ValueInfoProto of a tensor (rank < 0: no shape). */
static void value_info(buf *g, int field, const char *name, int dt, int rank, const int64_t *dims)
{
    buf vi = {0}, tp = {0}, tt = {0}, sh = {0};
    for (int k = 0; k < rank; k++) {
        buf dim = {0};
        f_int(&dim, 1, dims[k]);
        f_msg(&sh, 1, &dim);
    }
    f_int(&tt, 1, dt);
    if (rank >= 0) f_msg(&tt, 2, &sh);
    f_msg(&tp, 1, &tt);
    f_str(&vi, 1, name);
    f_msg(&vi, 2, &tp);
    f_msg(g, field, &vi);
}

/* op(x[, i]) -> y, Shape(y) -> s; attribute `attr` of n ints (n < 0: one int). */
static buf model(const char *op, int dt, int rank, const int64_t *dims, int irank,
                 const int64_t *idims, const char *attr, const int64_t *vals, int n)
{
    buf m = {0}, g = {0}, node = {0}, a = {0}, shape = {0}, ops = {0};
    f_str(&node, 1, "x");
    if (irank >= 0) f_str(&node, 1, "i");
    f_str(&node, 2, "y");
    f_str(&node, 4, op);
    f_str(&a, 1, attr);
    f_int(&a, 20, n < 0 ? 2 : 7);
    if (n < 0) f_int(&a, 3, vals[0]);
    for (int k = 0; k < n; k++) f_int(&a, 8, vals[k]);
    f_msg(&node, 5, &a);
    f_msg(&g, 1, &node);
    f_str(&shape, 1, "y");
    f_str(&shape, 2, "s");
    f_str(&shape, 4, "Shape");
    f_msg(&g, 1, &shape);
    f_str(&g, 2, "bench");
    value_info(&g, 11, "x", dt, rank, dims);
    if (irank >= 0) value_info(&g, 11, "i", 7, irank, idims);
    value_info(&g, 12, "s", 7, -1, NULL);
    f_int(&m, 1, 8);
    f_int(&ops, 2, 13);
    f_msg(&m, 8, &ops);
    f_msg(&m, 7, &g);
    return m;
}

/* ---- timing ------------------------------------------------------------- */

static void check(tern_status *st)
{
    if (st) {
        fprintf(stderr, "bench_transpose: %s\n", tern_status_message(st));
        exit(1);
    }
}

typedef struct bcase {
    const char *name, *op;
    int dt, rank;
    int64_t dims[4];
    int n; /* perm length, or -1 for Gather's axis */
    int64_t attr[4];
    int64_t nidx; /* Gather: indices (1-D, random in range) */
} bcase;

static const bcase cases[] = {
    {"T f32 [64,64] ->(1,0)", "Transpose", 1, 2, {64, 64}, 2, {1, 0}, 0},
    {"T f32 [256,256] ->(1,0)", "Transpose", 1, 2, {256, 256}, 2, {1, 0}, 0},
    {"T f32 [12,128,64] ->(0,2,1)", "Transpose", 1, 3, {12, 128, 64}, 3, {0, 2, 1}, 0},
    {"T f32 [8,64,56,56] NCHW->NHWC", "Transpose", 1, 4, {8, 64, 56, 56}, 4, {0, 2, 3, 1}, 0},
    {"T f32 [4096,1024] ->(1,0)", "Transpose", 1, 2, {4096, 1024}, 2, {1, 0}, 0},
    {"T f32 [131,67] ->(1,0)", "Transpose", 1, 2, {131, 67}, 2, {1, 0}, 0},
    {"T f64 [256,256] ->(1,0)", "Transpose", 11, 2, {256, 256}, 2, {1, 0}, 0},
    {"T f64 [1024,1024] ->(1,0)", "Transpose", 11, 2, {1024, 1024}, 2, {1, 0}, 0},
    {"T f16 [512,512] ->(1,0)", "Transpose", 10, 2, {512, 512}, 2, {1, 0}, 0},
    {"G f32 [30522,768] x 128", "Gather", 1, 2, {30522, 768}, -1, {0}, 128},
    {"G f32 [1000,64] x 4096", "Gather", 1, 2, {1000, 64}, -1, {0}, 4096},
    {"G f32 [1000,7] x 4096", "Gather", 1, 2, {1000, 7}, -1, {0}, 4096},
    {"G f32 [1M] x 64K (inner 1)", "Gather", 1, 1, {1 << 20}, -1, {0}, 1 << 16},
    {"G f32 [4096] x 64K (inner 1)", "Gather", 1, 1, {4096}, -1, {0}, 1 << 16},
    {"G f64 [1M] x 64K (inner 1)", "Gather", 11, 1, {1 << 20}, -1, {0}, 1 << 16},
};
enum { NCASES = sizeof cases / sizeof *cases };

static double run_case(const bcase *c)
{
    int64_t idims[1] = {c->nidx};
    buf m = model(c->op, c->dt, c->rank, c->dims, c->nidx ? 1 : -1, idims,
                  c->nidx ? "axis" : "perm", c->attr, c->n);
    tern_options *o = tern_options_create();
    tern_options_set_threads(o, 1);
    tern_options_set_optimize(o, 0);
    tern_session *s;
    check(tern_session_create_from_memory(m.p, m.n, o, &s));
    tern_options_free(o);
    free(m.p);
    tern_tensor *x, *ix = NULL;
    check(tern_tensor_create(c->dt, c->rank, c->dims, &x));
    unsigned char *xd = tern_tensor_data(x);
    for (size_t k = 0; k < tern_tensor_nbytes(x); k++)
        xd[k] = (unsigned char)(k * 2654435761u >> 13);
    if (c->nidx) {
        check(tern_tensor_create(7, 1, idims, &ix));
        int64_t *iv = tern_tensor_data(ix), rows = c->dims[0];
        uint64_t r = 88172645463325252ull;
        for (int64_t k = 0; k < c->nidx; k++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            iv[k] = (int64_t)(r % (uint64_t)rows);
        }
    }
    const char *names[2] = {"x", "i"};
    const tern_tensor *ins[2] = {x, ix};
    tern_tensor *out[1] = {NULL};
    enum { MAX_RUNS = 400 };
    double t[MAX_RUNS];
    int runs = 0;
    for (double t0 = now(), t1; runs < MAX_RUNS && (runs < 7 || now() - t0 < 0.3); runs++) {
        t1 = now();
        check(tern_session_run_into(s, c->nidx ? 2 : 1, names, ins, out));
        t[runs] = now() - t1;
    }
    tern_tensor_free(out[0]);
    tern_tensor_free(x);
    tern_tensor_free(ix);
    tern_session_free(s);
    return median(t + 2, runs - 2); /* the first two record and size the memory plan */
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) {
        for (int k = 0; k < NCASES; k++) printf("%d %.9f\n", k, run_case(&cases[k]));
        return 0;
    }
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1) rounds = 1;
    static const char *const levels[3] = {"generic", "avx2", "avx512"};
    static double t[3][NCASES][64];
    if (rounds > 64) rounds = 64;
    for (int r = 0; r < rounds; r++)
        for (int l = 0; l < 3; l++) {
            char cmd[4096];
            snprintf(cmd, sizeof cmd, "TERN_ISA=%s '%s' --child", levels[l], argv[0]);
            FILE *p = popen(cmd, "r");
            if (!p) return 1;
            int k;
            double v;
            while (fscanf(p, "%d %lf", &k, &v) == 2)
                if (k >= 0 && k < NCASES) t[l][k][r] = v;
            if (pclose(p) != 0) return 1;
        }
    printf("1 thread, median of %d rounds (each the median of its runs)\n", rounds);
    printf("%-32s %11s %11s %11s  %8s %8s\n", "case", "generic ms", "avx2 ms", "avx512 ms",
           "avx2 x", "avx512 x");
    for (int k = 0; k < NCASES; k++) {
        double m[3];
        for (int l = 0; l < 3; l++) m[l] = median(t[l][k], rounds) * 1e3;
        printf("%-32s %11.4f %11.4f %11.4f  %8.2f %8.2f\n", cases[k].name, m[0], m[1], m[2],
               m[0] / m[1], m[0] / m[2]);
    }
    return 0;
}

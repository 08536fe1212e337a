/* Tests of the memory planner (engine/plan.h) and its heap (core/arena.h).
 *
 * The heap is checked against its contract: every live allocation keeps its
 * bytes (each is filled with its own pattern and checked when returned), is
 * 64-byte aligned, and returning everything leaves one free chunk per block.
 *
 * The planner is checked end to end on models written by memplan_models.py
 * (run here with the system python) whose outputs are compared with numpy
 * references, under every policy (off, dynamic, plan) and over repeated runs
 * so that recorded plans are replayed. A block returned too early would be
 * overwritten by a later tensor and change an output; in the ASan build the
 * heap also poisons free memory, so such a read is reported directly.
 *
 *   test_memplan PYTHON MODELS_SCRIPT OUT_DIR
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/npy.h"
#include "core/arena.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "engine/exec.h"
#include "model_fixture.h"


/* ---- heap ---------------------------------------------------------------- */

typedef struct live {
    unsigned char *p;
    size_t n;
    unsigned char tag;
} live;

static void fill(live *l)
{
    memset(l->p, l->tag, l->n);
}

static void check(const live *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->p[i] != l->tag) fail_msg("byte %zu of a %zu-byte block was overwritten", i, l->n);
}

/* Random takes and gives; returns how many blocks the heap grew to. */
static int churn(arena_heap *h, uint32_t seed, int steps)
{
    rng r;
    rng_seed(&r, seed);
    live ls[64];
    int n = 0;
    for (int s = 0; s < steps; s++) {
        bool take = n == 0 || (n < 64 && rng_u32(&r) % 3 != 0);
        if (take) {
            size_t sz = rng_u32(&r) % 4 == 0 ? rng_u32(&r) % (3u << 20) : rng_u32(&r) % 5000;
            live l = {arena_heap_take(h, sz), sz, (unsigned char)(1 + s % 251)};
            assert_non_null(l.p);
            assert_int_equal((uintptr_t)l.p % 64, 0);
            fill(&l);
            ls[n++] = l;
        } else {
            int i = (int)(rng_u32(&r) % (uint32_t)n);
            check(&ls[i]);
            arena_heap_give(h, ls[i].p);
            ls[i] = ls[--n];
        }
    }
    while (n > 0) {
        check(&ls[n - 1]);
        arena_heap_give(h, ls[--n].p);
    }
    return h->n_blocks;
}

static void test_heap_keeps_bytes_and_merges(void **state)
{
    (void)state;
    arena_heap h;
    arena_heap_init(&h);
    int blocks = churn(&h, 7, 4000);
    assert_true(blocks >= 1);
    assert_int_equal(h.in_use, 0);
    assert_int_equal(arena_heap_free_chunks(&h), blocks); /* everything merged back */
    /* the reset folds the blocks into one; the same run then fits in it */
    size_t reserved = h.reserved;
    arena_heap_reset(&h, 0, false);
    assert_int_equal(h.n_blocks, 1);
    assert_true(h.reserved >= reserved);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(churn(&h, 7, 4000), 1);
        arena_heap_reset(&h, 0, false);
        assert_int_equal(h.n_blocks, 1);
    }
    arena_heap_free(&h);
}

static void test_heap_fit(void **state)
{
    (void)state;
    arena_heap h;
    arena_heap_init(&h);
    void *p = arena_heap_take(&h, 10u << 20);
    assert_non_null(p);
    arena_heap_reset(&h, 3000, true); /* exactly one take of 3000 bytes */
    assert_int_equal(h.n_blocks, 1);
    assert_true(h.reserved < 8192);
    assert_non_null(arena_heap_take(&h, 3000));
    assert_int_equal(h.n_blocks, 1);
    assert_non_null(arena_heap_take(&h, 1)); /* no room left: grows */
    assert_int_equal(h.n_blocks, 2);
    arena_heap_free(&h);
}

/* ---- blocks and plans ---------------------------------------------------- */

static tern_tensor dense(void *p, int64_t n)
{
    tern_tensor t = {.kind = TENSOR_DENSE, .dtype = TERN_FLOAT, .rank = 1, .numel = n, .data = p};
    t.dims[0] = n;
    return t;
}

static size_t live_bytes(const exec_mem *m)
{
    mem_stats st;
    exec_mem_stats(m, &st);
    return st.end_bytes;
}

/* The executor's calls for a little graph, by hand: a -> b -> c, each node
 * taking scratch before its output (so scratch sits below the output in
 * the block table), c viewed by d, and a sequence whose elements are
 * headers in a node's scratch. hold_b_late keeps b alive to the end, past
 * takes that the recording placed after b was gone. Returns the data
 * pointers of a, b and c. */
static void executor_calls(exec_mem *m, bool hold_b_late, void **ptrs)
{
    exec_mem_node_begin(m);
    tern_tensor a = dense(exec_mem_take(m, 4096), 1024);
    exec_mem_hold(m, &a);
    exec_mem_node_done(m);
    assert_int_equal(live_bytes(m), 4096);

    exec_mem_node_begin(m);
    assert_non_null(exec_mem_take(m, 10000)); /* scratch */
    tern_tensor b = dense(exec_mem_take(m, 4096), 1024);
    exec_mem_hold(m, &b);
    exec_mem_node_done(m);
    exec_mem_drop(m, &a);
    assert_int_equal(live_bytes(m), 4096);

    exec_mem_node_begin(m);
    assert_non_null(exec_mem_take(m, 10000));
    tern_tensor c = dense(exec_mem_take(m, 4096), 1024);
    exec_mem_hold(m, &c);
    exec_mem_node_done(m);
    if (!hold_b_late) exec_mem_drop(m, &b);
    size_t late = hold_b_late ? 4096 : 0;
    assert_int_equal(live_bytes(m), 4096 + late);

    /* d views c: c's block lives until both are gone */
    exec_mem_node_begin(m);
    tern_tensor d = c;
    exec_mem_hold(m, &d);
    exec_mem_node_done(m);
    exec_mem_drop(m, &c);
    assert_int_equal(live_bytes(m), 4096 + late);

    /* a sequence of two headers kept in this node's scratch */
    exec_mem_node_begin(m);
    tern_tensor *hdr = exec_mem_take(m, 2 * sizeof(tern_tensor));
    hdr[0] = dense(exec_mem_take(m, 256), 64);
    hdr[1] = d;
    tern_tensor *el[2] = {&hdr[0], &hdr[1]};
    tern_tensor seq = {
        .kind = TENSOR_SEQUENCE, .dtype = TERN_FLOAT, .rank = 1, .numel = 2, .data = el};
    seq.dims[0] = 2;
    exec_mem_hold(m, &seq);
    exec_mem_node_done(m);
    exec_mem_drop(m, &d);
    size_t hdr_bytes = (2 * sizeof(tern_tensor) + 63) / 64 * 64;
    assert_int_equal(live_bytes(m), hdr_bytes + 256 + 4096 + late);
    exec_mem_drop(m, &seq);
    if (hold_b_late) exec_mem_drop(m, &b);
    assert_int_equal(live_bytes(m), 0);
    ptrs[0] = a.data, ptrs[1] = b.data, ptrs[2] = c.data;
}

static void test_blocks_and_plans(void **state)
{
    (void)state;
    exec_mem m;
    unsetenv("TERN_MEMPLAN");
    exec_mem_init(&m);
    int64_t key[2] = {1, 7};
    void *p[3], *q[3];
    mem_stats st;

    assert_null(exec_mem_begin(&m, key, 2));
    executor_calls(&m, false, p);
    exec_mem_stats(&m, &st);
    assert_string_equal(st.mode, "record");
    exec_mem_end(&m, true);

    /* replayed: the same place every time, and a and c (disjoint
     * lifetimes) share bytes */
    for (int round = 0; round < 2; round++) {
        assert_null(exec_mem_begin(&m, key, 2));
        executor_calls(&m, false, q);
        exec_mem_stats(&m, &st);
        assert_string_equal(st.mode, "replay");
        assert_true(st.plan_bytes <= st.peak);
        exec_mem_end(&m, true);
        if (round == 1) assert_memory_equal(p, q, sizeof p);
        memcpy(p, q, sizeof p);
    }
    assert_ptr_equal(q[0], q[2]);
    assert_ptr_not_equal(q[1], q[2]);

    /* b held longer than recorded: the replay must stop before c is placed
     * over it; the next run records the plan again (MEM_REPLANS), and after
     * a second divergence the signature stays on the heap */
    for (int diverged = 0; diverged < 2; diverged++) {
        assert_null(exec_mem_begin(&m, key, 2));
        executor_calls(&m, true, q);
        assert_ptr_not_equal(q[1], q[2]);
        exec_mem_stats(&m, &st);
        assert_string_equal(st.mode, "replay-diverged");
        exec_mem_end(&m, true);
        assert_null(exec_mem_begin(&m, key, 2));
        executor_calls(&m, false, q);
        exec_mem_stats(&m, &st);
        assert_string_equal(st.mode, diverged == 0 ? "record" : "dynamic");
        exec_mem_end(&m, true);
    }

    /* another signature records its own plan */
    key[1] = 8;
    assert_null(exec_mem_begin(&m, key, 2));
    executor_calls(&m, true, q);
    exec_mem_stats(&m, &st);
    assert_string_equal(st.mode, "record");
    exec_mem_end(&m, true);
    assert_int_equal(st.n_plans, 1); /* counted before the end */
    exec_mem_free(&m);
}

/* ---- models -------------------------------------------------------------- */

typedef struct model_case {
    const char *name;
    const char *inputs[3];
    int sets;     /* input sets, run in turn */
    bool dynamic; /* shapes depend on the data: the plan must be dropped */
    bool settles; /* kernels change plans on the second run (oneDNN Winograd
                     convolutions): that replay diverges, the third records
                     again and later runs replay */
} model_case;

static const model_case cases[] = {
    {"chain", {"x"}, 1, false, false},           {"convs", {"x"}, 1, false, true},
    {"control", {"x", "cond"}, 2, false, false}, {"sequences", {"x"}, 1, false, false},
    {"dynamic", {"x"}, 3, true, false},          {"strings", {"x"}, 1, false, false},
};

/* got must equal ref: same dtype and shape; floats within
 * max(1e-4 * max|ref|, 1e-5), everything else exactly. */
static void expect_equal(const char *what, const tern_tensor *got, const tern_tensor *ref)
{
    if (got->dtype != ref->dtype || !shape_equal(got, ref)) {
        char a[200], b[200];
        fail_msg("%s: got %s %s, expected %s %s", what, tern_dtype_name(got->dtype),
                 shape_str(got->rank, got->dims, a, sizeof a), tern_dtype_name(ref->dtype),
                 shape_str(ref->rank, ref->dims, b, sizeof b));
    }
    if (ref->dtype == TERN_STRING) {
        for (int64_t i = 0; i < ref->numel; i++) {
            const char *g = ((char *const *)got->data)[i], *r = ((char *const *)ref->data)[i];
            if (strcmp(g, r)) fail_msg("%s[%lld]: '%s', expected '%s'", what, (long long)i, g, r);
        }
        return;
    }
    if (ref->dtype != TERN_FLOAT) {
        assert_memory_equal(got->data, ref->data, tensor_nbytes(ref));
        return;
    }
    const float *g = got->data, *r = ref->data;
    double top = 0;
    for (int64_t i = 0; i < ref->numel; i++) top = fabs(r[i]) > top ? fabs(r[i]) : top;
    double tol = 1e-4 * top > 1e-5 ? 1e-4 * top : 1e-5;
    for (int64_t i = 0; i < ref->numel; i++)
        if (!(fabs((double)g[i] - r[i]) <= tol))
            fail_msg("%s[%lld] = %g, expected %g", what, (long long)i, g[i], r[i]);
}

static tern_session *open_model(const char *name, const char *policy)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.onnx", out_dir, name);
    setenv("TERN_MEMPLAN", policy, 1);
    tern_session *s = NULL;
    tern_status *st = tern_session_create(path, NULL, &s);
    unsetenv("TERN_MEMPLAN");
    if (st) fail_msg("%s: %s", path, tern_status_message(st));
    return s;
}

/* Runs case mc under a policy for `reps` rounds over its input sets,
 * checking every output; returns the peak bytes of the last run. */
static size_t run_case(const model_case *mc, const char *policy, int reps)
{
    tern_session *s = open_model(mc->name, policy);
    int n_in = 0, n_out = tern_session_output_count(s);
    while (n_in < 3 && mc->inputs[n_in]) n_in++;
    tern_tensor *outs[8] = {0};
    assert_true(n_out <= 8);
    size_t peak = 0;
    int run = 0;
    for (int rep = 0; rep < reps; rep++)
        for (int set = 0; set < mc->sets; set++, run++) {
            tern_tensor *ins[3], *refs[8];
            for (int i = 0; i < n_in; i++) ins[i] = load(mc->name, set, "in", mc->inputs[i]);
            for (int j = 0; j < n_out; j++) {
                refs[j] = load(mc->name, set, "ref", tern_session_output(s, j)->name);
                /* keep an output tensor across runs when its shape stays */
                if (outs[j] && !shape_equal(outs[j], refs[j])) {
                    tern_tensor_free(outs[j]);
                    outs[j] = NULL;
                }
            }
            tern_status *st =
                tern_session_run_into(s, n_in, mc->inputs, (const tern_tensor *const *)ins, outs);
            if (st) fail_msg("%s (%s, run %d): %s", mc->name, policy, run, tern_status_message(st));
            for (int j = 0; j < n_out; j++) {
                char what[256];
                snprintf(what, sizeof what, "%s (%s, run %d) output %s", mc->name, policy, run,
                         tern_session_output(s, j)->name);
                expect_equal(what, outs[j], refs[j]);
                tern_tensor_free(refs[j]);
            }
            for (int i = 0; i < n_in; i++) tern_tensor_free(ins[i]);

            mem_stats ms;
            size_t bump;
            exec_stats(session_exec_state(s), &ms, &bump);
            const char *want = policy;
            /* a diverged plan is recorded once more (MEM_REPLANS) before
             * its signature stays on the heap */
            if (!strcmp(policy, "plan"))
                want = run == 0                                 ? "record"
                       : !mc->dynamic && !mc->settles           ? "replay"
                       : run == 1 || (mc->dynamic && run == 3) ? "replay-diverged"
                       : run == 2                               ? "record"
                       : mc->settles                            ? "replay"
                                                                : "dynamic";
            if (strcmp(ms.mode, want))
                fail_msg("%s (%s, run %d): memory mode %s, expected %s", mc->name, policy, run,
                         ms.mode, want);
            /* when the run ends, only the outputs' memory is live (each
             * output here has its own buffer, 64-byte granular) */
            size_t end = 0;
            for (int j = 0; j < n_out; j++) end += (tensor_nbytes(outs[j]) + 63) / 64 * 64;
            if (strcmp(policy, "off") && ms.end_bytes != end)
                fail_msg("%s (%s, run %d): %zu bytes live at the end, outputs have %zu", mc->name,
                         policy, run, ms.end_bytes, end);
            peak = ms.peak;
        }
    for (int j = 0; j < n_out; j++) tern_tensor_free(outs[j]);
    tern_session_free(s);
    return peak;
}

static void test_models_every_policy(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t off = run_case(&cases[i], "off", 2);
        size_t dyn = run_case(&cases[i], "dynamic", 2);
        size_t plan = run_case(&cases[i], "plan", 5);
        assert_true(dyn <= off);
        if (!cases[i].dynamic) assert_true(plan <= dyn);
        if (!strcmp(cases[i].name, "chain")) {
            /* ~15 tensors of 256 KiB; at most 5 are live at once */
            print_message("chain: peak %zu bytes planned, %zu kept to the end\n", plan, off);
            assert_true(plan * 2 < off);
        }
    }
}

/* run_into checks the caller's tensors and cleans up after itself. */
static void test_run_into_errors(void **state)
{
    (void)state;
    tern_session *s = open_model("chain", "plan");
    tern_tensor *x = load("chain", 0, "in", "x");
    const char *names[] = {"x"};
    int n_out = tern_session_output_count(s);
    tern_tensor *outs[8] = {0};
    int64_t dims[2] = {3, 3};
    assert_null(tern_tensor_create(TERN_FLOAT, 2, dims, &outs[1])); /* wrong shape */
    tern_status *st = tern_session_run_into(s, 1, names, (const tern_tensor *const *)&x, outs);
    assert_non_null(st);
    assert_int_equal(tern_status_code(st), TERN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(tern_status_message(st), "alias_out"));
    tern_status_free(st);
    for (int j = 0; j < n_out; j++)
        if (j != 1) assert_null(outs[j]);
    tern_tensor_free(outs[1]);
    outs[1] = NULL;
    int64_t dims2[2] = {128, 512};
    assert_null(tern_tensor_create(TERN_INT32, 2, dims2, &outs[1])); /* wrong dtype */
    st = tern_session_run_into(s, 1, names, (const tern_tensor *const *)&x, outs);
    assert_non_null(st);
    assert_non_null(strstr(tern_status_message(st), "int32"));
    tern_status_free(st);
    tern_tensor_free(outs[1]);
    outs[1] = NULL;
    /* all NULL: every output is created, as tern_session_run does */
    assert_null(tern_session_run_into(s, 1, names, (const tern_tensor *const *)&x, outs));
    for (int j = 0; j < n_out; j++) {
        assert_non_null(outs[j]);
        tern_tensor_free(outs[j]);
    }
    tern_tensor_free(x);
    tern_session_free(s);
}

int main(int argc, char **argv)
{
    if (!fixture_args(argc, argv)) return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heap_keeps_bytes_and_merges),
        cmocka_unit_test(test_heap_fit),
        cmocka_unit_test(test_blocks_and_plans),
        cmocka_unit_test(test_models_every_policy),
        cmocka_unit_test(test_run_into_errors),
    };
    return cmocka_run_group_tests(tests, make_models, NULL);
}

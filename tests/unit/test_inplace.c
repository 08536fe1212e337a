/* Tests of in-place execution: an output written over an input that nothing
 * reads any more (OP_INPLACE*, ops/op.h; engine/plan.h, "In place").
 *
 * On models written by inplace_models.py (run here with the system python)
 * every output is compared with numpy's reference and, bit for bit, with
 * the same model run without the memory plan (TERN_MEMPLAN=off, which
 * never writes in place) and with in-place writes turned off
 * (TERN_INPLACE=0). The models put inputs that must not be overwritten
 * (graph inputs, initializers, graph outputs, values read later, views,
 * broadcast operands, Sum's third input, LogSoftmax's) next to ones that
 * may, so a wrong reuse changes an output. Peak bytes come from
 * exec_stats(): on a MatMul -> Add -> Relu -> Sigmoid chain they must drop
 * from two tensors to one. An If that makes the reuse depend on the data
 * checks that replays of a plan follow the decisions it recorded.
 *
 *   test_inplace PYTHON MODELS_SCRIPT OUT_DIR
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
#include "core/tensor.h"
#include "engine/exec.h"
#include "model_fixture.h"


enum { MAX_IO = 4 };

static void expect_shape(const char *what, const tern_tensor *got, const tern_tensor *ref)
{
    if (got->dtype != ref->dtype || !shape_equal(got, ref)) {
        char a[200], b[200];
        fail_msg("%s: got %s %s, expected %s %s", what, tern_dtype_name(got->dtype),
                 shape_str(got->rank, got->dims, a, sizeof a), tern_dtype_name(ref->dtype),
                 shape_str(ref->rank, ref->dims, b, sizeof b));
    }
}

/* got against numpy's ref: floats within 1e-4 of ref's largest magnitude,
 * integers exactly. */
static void expect_close(const char *what, const tern_tensor *got, const tern_tensor *ref)
{
    expect_shape(what, got, ref);
    if (ref->dtype != TERN_FLOAT) {
        assert_memory_equal(got->data, ref->data, tensor_nbytes(ref));
        return;
    }
    const float *g = got->data, *r = ref->data;
    double top = 0;
    for (int64_t i = 0; i < ref->numel; i++) top = fabs(r[i]) > top ? fabs(r[i]) : top;
    double tol = 1e-4 * top > 1e-6 ? 1e-4 * top : 1e-6;
    for (int64_t i = 0; i < ref->numel; i++)
        if (!(fabs((double)g[i] - r[i]) <= tol))
            fail_msg("%s[%lld] = %.9g, expected %.9g", what, (long long)i, g[i], r[i]);
}

/* got against another run of tern: the same bytes. */
static void expect_same(const char *what, const tern_tensor *got, const tern_tensor *ref)
{
    expect_shape(what, got, ref);
    const unsigned char *g = got->data, *r = ref->data;
    for (size_t i = 0; i < tensor_nbytes(ref); i++)
        if (g[i] != r[i]) fail_msg("%s: byte %zu differs from the run without in-place", what, i);
}

/* A session of model `name`: memory policy (TERN_MEMPLAN), in-place writes
 * on or off (TERN_INPLACE), graph passes on or off. */
static tern_session *open_model(const char *name, const char *policy, bool inplace, bool optimize)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.onnx", out_dir, name);
    setenv("TERN_MEMPLAN", policy, 1);
    setenv("TERN_INPLACE", inplace ? "1" : "0", 1);
    tern_options *o = tern_options_create();
    assert_non_null(o);
    tern_options_set_optimize(o, optimize);
    tern_session *s = NULL;
    tern_status *st = tern_session_create(path, o, &s);
    tern_options_free(o);
    unsetenv("TERN_MEMPLAN");
    unsetenv("TERN_INPLACE");
    if (st) fail_msg("%s: %s", path, tern_status_message(st));
    return s;
}

typedef struct run_result {
    tern_tensor *out[MAX_IO];
    int n_out;
    mem_stats ms;
} run_result;

static void result_free(run_result *r)
{
    for (int j = 0; j < r->n_out; j++) tern_tensor_free(r->out[j]);
    memset(r, 0, sizeof *r);
}

/* One run of input set `set` of model `name`; checks every output against
 * numpy's reference and that the inputs were not written to. */
static run_result run(tern_session *s, const char *name, const char *const *inputs, int set,
                      const char *label)
{
    int n_in = 0;
    while (n_in < MAX_IO && inputs[n_in]) n_in++;
    tern_tensor *ins[MAX_IO], *copies[MAX_IO];
    for (int i = 0; i < n_in; i++) {
        ins[i] = load(name, set, "in", inputs[i]);
        copies[i] = load(name, set, "in", inputs[i]);
    }
    run_result r = {.n_out = tern_session_output_count(s)};
    assert_true(r.n_out <= MAX_IO);
    tern_status *st = tern_session_run_into(s, n_in, (const char **)inputs,
                                            (const tern_tensor *const *)ins, r.out);
    if (st) fail_msg("%s (%s): %s", name, label, tern_status_message(st));
    for (int i = 0; i < n_in; i++) {
        char what[256];
        snprintf(what, sizeof what, "%s (%s): input %s after the run", name, label, inputs[i]);
        expect_same(what, ins[i], copies[i]);
        tern_tensor_free(ins[i]);
        tern_tensor_free(copies[i]);
    }
    for (int j = 0; j < r.n_out; j++) {
        const char *oname = tern_session_output(s, j)->name;
        tern_tensor *ref = load(name, set, "ref", oname);
        char what[256];
        snprintf(what, sizeof what, "%s (%s) output %s", name, label, oname);
        expect_close(what, r.out[j], ref);
        tern_tensor_free(ref);
    }
    size_t bump;
    exec_stats(session_exec_state(s), &r.ms, &bump);
    return r;
}

static void expect_same_outputs(const char *label, const run_result *a, const run_result *b)
{
    assert_int_equal(a->n_out, b->n_out);
    for (int j = 0; j < a->n_out; j++) {
        char what[256];
        snprintf(what, sizeof what, "%s output %d", label, j);
        expect_same(what, a->out[j], b->out[j]);
    }
}

/* ---- the chain: peak bytes -------------------------------------------- */

static void test_chain_peak(void **state)
{
    (void)state;
    static const char *const in[] = {"x", "y", NULL};
    const size_t tensor = 256 * 1024 * sizeof(float);
    tern_session *off = open_model("chain", "off", true, false);
    run_result ref = run(off, "chain", in, 0, "off");
    size_t peak[2] = {0, 0};
    for (int inplace = 0; inplace < 2; inplace++) {
        tern_session *s = open_model("chain", "plan", inplace, false);
        for (int k = 0; k < 3; k++) {
            run_result r = run(s, "chain", in, 0, inplace ? "in place" : "TERN_INPLACE=0");
            expect_same_outputs("chain", &r, &ref);
            assert_string_equal(r.ms.mode, k == 0 ? "record" : "replay");
            /* Add, Relu and Sigmoid each write over the tensor before */
            assert_int_equal(r.ms.inplace, inplace ? 3 : 0);
            peak[inplace] = r.ms.peak;
            result_free(&r);
        }
        tern_session_free(s);
    }
    print_message("chain: peak %zu bytes in place, %zu without (tensors of %zu bytes)\n", peak[1],
                  peak[0], tensor);
    /* without: MatMul's and Add's outputs are live together; with: one
     * tensor and MatMul's scratch, if any */
    assert_true(peak[0] >= 2 * tensor);
    assert_true(peak[1] >= tensor);
    assert_true(peak[1] + tensor / 2 <= peak[0]);
    result_free(&ref);
    tern_session_free(off);
}

/* ---- where a reuse would be wrong --------------------------------------- */

static void test_guards(void **state)
{
    (void)state;
    static const char *const in[] = {"x", NULL};
    tern_session *off = open_model("guards", "off", true, false);
    run_result ref = run(off, "guards", in, 0, "off");
    assert_int_equal(ref.ms.inplace, 0);
    tern_session *noip = open_model("guards", "plan", false, false);
    run_result r0 = run(noip, "guards", in, 0, "TERN_INPLACE=0");
    expect_same_outputs("guards without in-place", &r0, &ref);
    assert_int_equal(r0.ms.inplace, 0);
    for (int optimize = 0; optimize < 2; optimize++) {
        tern_session *s = open_model("guards", "plan", true, optimize);
        for (int k = 0; k < 3; k++) {
            run_result r = run(s, "guards", in, 0, optimize ? "in place, optimised" : "in place");
            if (!optimize) expect_same_outputs("guards in place", &r, &ref);
            assert_string_equal(r.ms.mode, k == 0 ? "record" : "replay");
            /* 27 of the 49 nodes write in place */
            if (!optimize) assert_int_equal(r.ms.inplace, 27);
            result_free(&r);
        }
        tern_session_free(s);
    }
    result_free(&r0);
    result_free(&ref);
    tern_session_free(noip);
    tern_session_free(off);
}

/* ---- decisions that depend on the data ---------------------------------- */

/* The branch model on cond true, false, true, ...: the If hands Sigmoid a
 * block it may write over only when cond is true. The plan recorded on the
 * first run (true) replays on every later one with the recorded in-place
 * decisions: a false run cannot reuse where the recording did, and puts
 * Sigmoid's output on the heap beside the plan instead of diverging. The
 * other order (false first) keeps Relu's output alive longer than the
 * recording did on true runs, which stops any replay (engine/plan.h); the
 * outputs must still be right. */
static void branch_runs(int first)
{
    static const char *const in[] = {"x", "cond", NULL};
    tern_session *off = open_model("branch", "off", true, false);
    run_result ref[2] = {run(off, "branch", in, 0, "off"), run(off, "branch", in, 1, "off")};
    tern_session *s = open_model("branch", "plan", true, false);
    for (int k = 0; k < 6; k++) {
        int set = (first + k) % 2;
        run_result r = run(s, "branch", in, set, set ? "cond false" : "cond true");
        expect_same_outputs("branch", &r, &ref[set]);
        if (first == 0) {
            assert_string_equal(r.ms.mode, k == 0 ? "record" : "replay");
            /* Tanh and Add always, Sigmoid when the If returned Relu's
             * output */
            assert_int_equal(r.ms.inplace, set == 0 ? 3 : 2);
        }
        result_free(&r);
    }
    result_free(&ref[0]);
    result_free(&ref[1]);
    tern_session_free(s);
    tern_session_free(off);
}

static void test_branch_replays(void **state)
{
    (void)state;
    branch_runs(0);
    branch_runs(1);
}

/* ---- a blocked-layout producer ------------------------------------------ */

/* With oneDNN, the Conv's output is channel-blocked: Sigmoid and Mul each
 * get a plain copy of it that they may write over (2 in place); without
 * (TERN_DNNL=0), Mul writes over the Conv's output (1). Either way one
 * tensor fewer is live. */
static void test_conv(void **state)
{
    (void)state;
    static const char *const in[] = {"x", NULL};
    size_t peak[2] = {0, 0};
    int reused = 0;
    tern_session *off = open_model("conv", "off", true, true);
    run_result ref = run(off, "conv", in, 0, "off");
    for (int inplace = 0; inplace < 2; inplace++) {
        tern_session *s = open_model("conv", "plan", inplace, true);
        for (int k = 0; k < 4; k++) {
            run_result r = run(s, "conv", in, 0, inplace ? "in place" : "TERN_INPLACE=0");
            expect_same_outputs("conv", &r, &ref);
            if (inplace)
                assert_true(r.ms.inplace == 1 || r.ms.inplace == 2);
            else
                assert_int_equal(r.ms.inplace, 0);
            peak[inplace] = r.ms.peak;
            reused = r.ms.inplace;
            result_free(&r);
        }
        tern_session_free(s);
    }
    print_message("conv: peak %zu bytes in place (%d outputs), %zu without\n", peak[1], reused,
                  peak[0]);
    assert_true(peak[1] < peak[0]);
    result_free(&ref);
    tern_session_free(off);
}

int main(int argc, char **argv)
{
    if (!fixture_args(argc, argv)) return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_peak),
        cmocka_unit_test(test_guards),
        cmocka_unit_test(test_branch_replays),
        cmocka_unit_test(test_conv),
    };
    return cmocka_run_group_tests(tests, make_models, NULL);
}

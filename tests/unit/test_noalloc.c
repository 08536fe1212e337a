/* After warm-up, an inference allocates nothing from the heap.
 *
 * Every heap call of the process is counted while a flag is set: in the
 * Release build by defining malloc, calloc, realloc, free and the aligned
 * variants here (the executable's definitions take precedence over libc's
 * for every caller, libtern and the pool's worker threads included) and
 * forwarding to glibc's __libc_* entry points; in the ASan build, whose
 * runtime owns malloc, through the sanitizer's allocation hooks. A first
 * test proves the counter sees allocations made by the engine.
 *
 * oneDNN is the one exception: dnnl_primitive_execute() builds its argument
 * map on the heap at every call (ops/dnnl.h), which tern cannot avoid with
 * oneDNN's C API. The test defines that function too (forwarding to the
 * library's through dlsym) to tell heap calls made inside it from all the
 * others: those others must be zero; oneDNN's are printed and must balance
 * (as many frees as allocations). ctest also runs the test with
 * TERN_DNNL=0 (unit_noalloc_portable), where every kernel is tern's own and
 * the total must be zero.
 *
 * Models are the torch exports of tests/models/export.py (the ctest fixture
 * runs it): the MLP and resnet18 at batch 1 (and 8), with 1 and 2 threads.
 * Each is run four times per input shape as warm-up (the first run of a
 * shape records the memory plan; the second builds oneDNN's Winograd
 * convolutions in place of the direct ones, so its replay diverges; the
 * third records again; the fourth replays and fits the heap), then
 * five more times with the flag set around tern_session_run_into() only;
 * outputs go into the caller's tensors from the first run and are compared
 * with torch's after every run.
 *
 *   test_noalloc MODELS_DIR
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>

#include "cli/npy.h"
#include "core/tensor.h"

static atomic_int counting;
static atomic_int in_dnnl; /* threads inside dnnl_primitive_execute */
static atomic_long n_allocs, n_frees, n_dnnl_allocs, n_dnnl_frees;

static void count_alloc(void)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add_explicit(atomic_load(&in_dnnl) ? &n_dnnl_allocs : &n_allocs, 1,
                                  memory_order_relaxed);
}
static void count_free(void)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add_explicit(atomic_load(&in_dnnl) ? &n_dnnl_frees : &n_frees, 1,
                                  memory_order_relaxed);
}

typedef dnnl_status_t (*execute_fn)(const_dnnl_primitive_t, dnnl_stream_t, int,
                                    const dnnl_exec_arg_t *);
static execute_fn dnnl_execute;

dnnl_status_t dnnl_primitive_execute(const_dnnl_primitive_t p, dnnl_stream_t s, int nargs,
                                     const dnnl_exec_arg_t *args)
{
    atomic_fetch_add(&in_dnnl, 1);
    dnnl_status_t r = dnnl_execute(p, s, nargs, args);
    atomic_fetch_sub(&in_dnnl, 1);
    return r;
}

#if defined(__SANITIZE_ADDRESS__)
/* from the sanitizer runtime (<sanitizer/allocator_interface.h>, which
 * GCC 12 does not ship) */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));

static void on_malloc(const volatile void *p, size_t n)
{
    (void)p, (void)n;
    count_alloc();
}
static void on_free(const volatile void *p)
{
    (void)p;
    count_free();
}
static void install_counter(void)
{
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}
#else
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);
void *__libc_memalign(size_t align, size_t n);

void *malloc(size_t n)
{
    count_alloc();
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size)
{
    count_alloc();
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n)
{
    count_alloc();
    return __libc_realloc(p, n);
}
void free(void *p)
{
    if (p) count_free();
    __libc_free(p);
}
void *aligned_alloc(size_t align, size_t n)
{
    count_alloc();
    return __libc_memalign(align, n);
}
void *memalign(size_t align, size_t n)
{
    count_alloc();
    return __libc_memalign(align, n);
}
int posix_memalign(void **out, size_t align, size_t n)
{
    count_alloc();
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
static void install_counter(void) {}
#endif

static void count_start(void)
{
    atomic_store(&n_allocs, 0);
    atomic_store(&n_frees, 0);
    atomic_store(&n_dnnl_allocs, 0);
    atomic_store(&n_dnnl_frees, 0);
    atomic_store(&counting, 1);
}
static void count_stop(void)
{
    atomic_store(&counting, 0);
}

static const char *models_dir;

static tern_tensor *load(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", models_dir, rel);
    tern_tensor *t = NULL;
    tern_status *st = npy_read(path, &t);
    if (st)
        fail_msg("%s: %s (run tests/models/export.py %s)", path, tern_status_message(st),
                 models_dir);
    return t;
}

static tern_session *open_model(const char *model, int threads)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s_op13.onnx", models_dir, model);
    tern_options *o = tern_options_create();
    tern_options_set_threads(o, threads);
    tern_session *s = NULL;
    tern_status *st = tern_session_create(path, o, &s);
    tern_options_free(o);
    if (st) fail_msg("%s: %s", path, tern_status_message(st));
    return s;
}

/* Same tolerance as tests/models: max(1e-4 * max|ref|, 1e-5). */
static void expect_close(const char *what, const tern_tensor *got, const tern_tensor *ref)
{
    assert_int_equal(got->dtype, TERN_FLOAT);
    assert_true(shape_equal(got, ref));
    const float *g = got->data, *r = ref->data;
    double top = 0;
    for (int64_t i = 0; i < ref->numel; i++) top = fabs(r[i]) > top ? fabs(r[i]) : top;
    double tol = 1e-4 * top > 1e-5 ? 1e-4 * top : 1e-5;
    for (int64_t i = 0; i < ref->numel; i++)
        if (!(fabs((double)g[i] - r[i]) <= tol))
            fail_msg("%s[%lld] = %g, torch %g", what, (long long)i, g[i], r[i]);
}

enum { WARMUP = 4, COUNTED = 5, MAX_BATCHES = 2 };

/* Runs `model` (one input "input", one output) with `threads` over the
 * given batch sizes in turn, and checks that the counted runs allocate
 * nothing and still match torch. */
static void expect_no_alloc(const char *model, const char *output, int threads, const int *batches,
                            int n_batches)
{
    tern_session *s = open_model(model, threads);
    tern_tensor *in[MAX_BATCHES], *ref[MAX_BATCHES], *out[MAX_BATCHES] = {0};
    for (int b = 0; b < n_batches; b++) {
        char rel[256];
        snprintf(rel, sizeof rel, "%s_b%d/in/input.npy", model, batches[b]);
        in[b] = load(rel);
        snprintf(rel, sizeof rel, "%s_b%d/ref/%s.npy", model, batches[b], output);
        ref[b] = load(rel);
    }
    const char *names[] = {"input"};
    long dnnl_calls = 0;
    for (int round = 0; round < WARMUP + COUNTED; round++)
        for (int b = 0; b < n_batches; b++) {
            bool counted = round >= WARMUP;
            if (counted) count_start();
            tern_status *st =
                tern_session_run_into(s, 1, names, (const tern_tensor *const *)&in[b], &out[b]);
            if (counted) count_stop();
            if (st) fail_msg("%s: %s", model, tern_status_message(st));
            char what[128];
            snprintf(what, sizeof what, "%s batch %d, %d threads, run %d", model, batches[b],
                     threads, round);
            expect_close(what, out[b], ref[b]);
            if (!counted) continue;
            if (n_allocs || n_frees)
                fail_msg("%s: %ld allocations and %ld frees in a warm inference", what,
                         (long)n_allocs, (long)n_frees);
            if (n_dnnl_allocs != n_dnnl_frees)
                fail_msg("%s: oneDNN made %ld allocations and %ld frees", what, (long)n_dnnl_allocs,
                         (long)n_dnnl_frees);
            dnnl_calls += n_dnnl_allocs;
        }
    print_message("%s, %d threads, batches %d%s: %d warm inferences, no heap calls by tern "
                  "(oneDNN's execute: %.0f allocations per inference)\n",
                  model, threads, batches[0], n_batches > 1 ? " and 8 in turn" : "",
                  COUNTED * n_batches, (double)dnnl_calls / (COUNTED * n_batches));
    for (int b = 0; b < n_batches; b++) {
        tern_tensor_free(in[b]);
        tern_tensor_free(ref[b]);
        tern_tensor_free(out[b]);
    }
    tern_session_free(s);
}

/* The counter sees the engine's allocations: tern_session_run creates its
 * output tensors. */
static void test_counter_sees_allocations(void **state)
{
    (void)state;
    tern_session *s = open_model("mlp", 1);
    tern_tensor *in = load("mlp_b1/in/input.npy"), *out = NULL;
    const char *names[] = {"input"};
    for (int r = 0; r < 3; r++) {
        count_start();
        tern_status *st = tern_session_run(s, 1, names, (const tern_tensor *const *)&in, &out);
        count_stop();
        assert_null(st);
        assert_true(n_allocs >= 1);
        count_start();
        tern_tensor_free(out);
        count_stop();
        assert_true(n_frees >= 1);
    }
    tern_tensor_free(in);
    tern_session_free(s);
}

static const int b1[] = {1}, b1_b8[] = {1, 8};

static void test_mlp(void **state)
{
    (void)state;
    expect_no_alloc("mlp", "probs", 1, b1, 1);
    expect_no_alloc("mlp", "probs", 2, b1, 1);
    expect_no_alloc("mlp", "probs", 2, b1_b8, 2);
}

static void test_resnet18(void **state)
{
    (void)state;
    expect_no_alloc("resnet18", "logits", 1, b1, 1);
    expect_no_alloc("resnet18", "logits", 2, b1, 1);
#if !defined(__SANITIZE_ADDRESS__) /* batch 8 takes minutes under ASan; mlp covers the switch */
    expect_no_alloc("resnet18", "logits", 2, b1_b8, 2);
#endif
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODELS_DIR\n", argv[0]);
        return 2;
    }
    models_dir = argv[1];
    dnnl_execute = (execute_fn)dlsym(RTLD_NEXT, "dnnl_primitive_execute");
    if (!dnnl_execute) {
        fprintf(stderr, "dnnl_primitive_execute not found: %s\n", dlerror());
        return 1;
    }
    install_counter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_sees_allocations),
        cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_resnet18),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

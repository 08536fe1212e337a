/*
 * float32 LayerNormalization and Softmax through oneDNN; norm.c and
 * norm_softmax.c call these first and keep their own loops for the rest.
 *
 * Both ops work on rows of contiguous elements, so the plan sees the
 * input as a plain 2-D [rows, n] tensor whatever its rank: LayerNorm over
 * the dims from `axis` on (oneDNN normalises over the last), Softmax over
 * its axis when nothing follows it (the last axis of attention scores and
 * logits). One primitive per shape, reading the node's tensors in place
 * (LayerNorm's Scale and B as its scale and shift arguments, so they need
 * not be constants; the output may be the input's buffer, OP_INPLACE0,
 * which both primitives allow) and writing output 0; its scratchpad, if
 * any, comes from op_scratch().
 *
 * The primitives run on the calling thread alone (one OpenMP thread), and
 * only while the session's pool has at most DNN_ROWS_MAX_POOL threads.
 * These are short ops between tern's own kernels: waking an OpenMP team
 * for each of them, while tern's pool workers still spin from the kernel
 * before, cost more than it saved (the BERT of tests/models, batch 1, two
 * threads: 4.6 ms median with tern's kernels, 7.0 ms with a two-thread
 * oneDNN LayerNorm, 4.1 ms with a one-thread one), and one oneDNN thread
 * already beats tern's row kernels on two.
 *
 * The measurements (bench/dnnl_ops, bench/README.md), on 2 AVX-512 cores:
 * oneDNN's layer normalisation ran 1.5-3.8x faster than tern's on one
 * thread and 1.6-28x faster on one thread than tern's on two (BERT-base
 * and the served BERT's rows, batch 1 and 32); its softmax 1.15-1.5x on
 * attention rows of 128 and ~1.1x on 1000 logits, but not on rows of 10
 * (0.85x), so rows shorter than DNN_SOFTMAX_MIN_N stay with tern's kernel.
 * tern's own kernels stay for the elementwise ops and BatchNormalization,
 * where they were as fast or faster, and for everything these plans
 * decline: other dtypes, LayerNorm's optional mean / inverse-deviation
 * outputs, a broadcast Scale or B, a softmax over an axis with dims after
 * it, LogSoftmax, and any shape for which oneDNN would pick its reference
 * code.
 */
#include "ops/dnnl.h"

#include <omp.h>

/* Above this many intra-op threads tern's row kernels take over (one
 * oneDNN thread is ~1.5-3.8x one of tern's; more than two threads were not
 * measured on a machine with more cores). */
#define DNN_ROWS_MAX_POOL 2
/* Shorter softmax rows stay with tern's kernel. */
#define DNN_SOFTMAX_MIN_N 128

/* Creates the primitive of desc with a user scratchpad and appends it to
 * p (refusing oneDNN's reference implementations); *s is its step. */
static dnnl_status_t plan_primitive(dnn_plan *p, const void *desc, dnn_step **s)
{
    dnnl_primitive_attr_t attr;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st != dnnl_success) return st;
    st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (!st) st = dnnl_primitive_desc_create(&pd, desc, attr, dnn_engine(), NULL);
    dnnl_primitive_attr_destroy(attr);
    if (!st && dnn_is_ref(pd)) st = dnnl_unimplemented;
    if (!st) st = dnn_plan_step(p, pd, s);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return st;
}

static dnnl_status_t ln_build(int64_t rows, int64_t n, bool bias, float eps, dnn_plan *p)
{
    int64_t dims[2] = {rows, n};
    dnnl_memory_desc_t md, pmd;
    dnnl_status_t st;
    if ((st = dnn_md(&md, 2, dims, dnnl_ab)) || (st = dnn_md(&pmd, 1, &n, dnnl_a))) return st;
    dnnl_layer_normalization_desc_t desc;
    unsigned flags = dnnl_use_scale | (bias ? dnnl_use_shift : 0);
    st = dnnl_layer_normalization_forward_desc_init(&desc, dnnl_forward_inference, &md, NULL, eps,
                                                    flags);
    dnn_step *s;
    if (!st) st = plan_primitive(p, &desc, &s);
    if (!st) st = dnn_step_arg(s, DNNL_ARG_SRC, &md, 0, 0, NULL);
    if (!st) st = dnn_step_arg(s, DNNL_ARG_SCALE, &pmd, 1, 0, NULL);
    if (!st && bias) st = dnn_step_arg(s, DNNL_ARG_SHIFT, &pmd, 2, 0, NULL);
    if (!st) st = dnn_step_arg(s, DNNL_ARG_DST, &md, DNN_OUT, 0, NULL);
    p->out_layout = LAYOUT_PLAIN;
    return st;
}

static dnnl_status_t softmax_build(int64_t rows, int64_t n, dnn_plan *p)
{
    int64_t dims[2] = {rows, n};
    dnnl_memory_desc_t md;
    dnnl_status_t st = dnn_md(&md, 2, dims, dnnl_ab);
    if (st) return st;
    dnnl_softmax_v2_desc_t desc;
    st = dnnl_softmax_v2_forward_desc_init(&desc, dnnl_forward_inference, dnnl_softmax_accurate,
                                           &md, &md, 1);
    dnn_step *s;
    if (!st) st = plan_primitive(p, &desc, &s);
    if (!st) st = dnn_step_arg(s, DNNL_ARG_SRC, &md, 0, 0, NULL);
    if (!st) st = dnn_step_arg(s, DNNL_ARG_DST, &md, DNN_OUT, 0, NULL);
    p->out_layout = LAYOUT_PLAIN;
    return st;
}

/* Finds or builds the plan of (op, rows, n, flag) and runs it on the
 * calling thread into a new output 0 of x's shape; *done false if oneDNN
 * declined the shape. */
static tern_status *rows_run(op_ctx *c, dnn_cache *k, int op, int64_t rows, int64_t n, bool flag,
                             float eps, bool *done)
{
    const tern_tensor *x = c->in[0];
    /* the next oneDNN convolution or pooling sets the session's count back
     * (dnn_set_threads) */
    if (omp_get_max_threads() != 1) omp_set_num_threads(1);
    int64_t key[] = {op, rows, n, flag};
    dnn_entry *e = dnn_cache_lock(k, key, (int)(sizeof key / sizeof *key));
    if (!e->built) {
        e->built = true;
        dnnl_status_t st =
            op == 0 ? ln_build(rows, n, flag, eps, &e->plan) : softmax_build(rows, n, &e->plan);
        e->ok = st == dnnl_success;
        if (!e->ok) dnn_plan_free(&e->plan);
    }
    tern_status *st = NULL;
    if (e->ok) {
        tern_tensor *y;
        st = op_out(c, 0, TERN_FLOAT, x->rank, x->dims, &y);
        if (!st) st = dnn_plan_run(c, &e->plan, c->in, y->data);
        *done = !st;
    }
    dnn_cache_unlock(k);
    return st;
}

static bool dense_f32(const tern_tensor *t)
{
    return t && t->kind == TENSOR_DENSE && t->dtype == TERN_FLOAT && t->layout == LAYOUT_PLAIN;
}

tern_status *dnn_layernorm_run(op_ctx *c, dnn_cache *k, int64_t rows, int64_t n, float eps,
                               bool *done)
{
    *done = false;
    const tern_tensor *x = c->in[0], *scale = c->in[1];
    const tern_tensor *bias = c->n_in > 2 ? c->in[2] : NULL;
    if (!k || tpool_threads(c->pool) > DNN_ROWS_MAX_POOL || !dense_f32(x) || !dense_f32(scale) ||
        scale->numel != n || (bias && (!dense_f32(bias) || bias->numel != n)) || rows < 1 ||
        n < 1 || op_out_used(c, 1) || op_out_used(c, 2))
        return NULL;
    return rows_run(c, k, 0, rows, n, bias != NULL, eps, done);
}

tern_status *dnn_softmax_run(op_ctx *c, dnn_cache *k, int64_t rows, int64_t n, bool *done)
{
    *done = false;
    if (!k || tpool_threads(c->pool) > DNN_ROWS_MAX_POOL || !dense_f32(c->in[0]) || rows < 1 ||
        n < DNN_SOFTMAX_MIN_N)
        return NULL;
    return rows_run(c, k, 1, rows, n, false, 0.0f, done);
}

tern_status *dnn_rows_prepare(op_prep *p, const void **state)
{
    *state = dnn_cache_create(p);
    return NULL;
}

/*
 * bench/dnnl_ops: tern's LayerNormalization, Softmax, elementwise (Relu,
 * GELU, Tanh, Sigmoid, Add) and standalone BatchNormalization kernels
 * against oneDNN's primitives for the same ops, on the shapes the served
 * models run (BERT's LayerNorm and attention Softmax at batch 1 and 32, a
 * classifier's Softmax, ResNet-sized and larger activations, ResNet's first
 * BatchNorm). A benchmark, not a test: it decides DESIGN.md's "oneDNN for
 * normalisation, softmax and eltwise where it measures faster" (issue 4).
 *
 * tern's side is what the engine runs: each case is a one-node ONNX model
 * built here (protobuf-c), loaded with the graph passes on
 * (engine_build_model, as a session does) and run through exec_run, the
 * executor entry a session calls, in an exec_state with T intra-op threads.
 * The session's input checks and its copy of the outputs into the caller's
 * tensors are left out: inside a model neither happens. The optimised graph
 * is printed per case so that the kernel that ran is on record.
 *
 * oneDNN's side is the primitive for the op (layer_normalization with
 * scale and shift, softmax_v2 accurate, eltwise gelu_erf / tanh / logistic
 * / relu, binary add, batch_normalization with global statistics), created
 * once per case and thread count on plain-layout memory and executed again
 * and again, its OpenMP threads set to T as src/ops/dnnl.c does.
 *
 * After warm-up, each side is timed twice for about BUDGET seconds (at
 * least 15 runs): in blocks of runs of one side (its own speed, with the
 * other's threads idle; the first run after each switch left out) and in
 * alternation, run for run (the op between tern's own kernels, as in a
 * model: the two thread pools hand the cores to each other every time).
 * Columns are medians and the ratio tern/dnnl (above 1: oneDNN faster),
 * "(min)" the ratio of the fastest runs in blocks (what is left when the
 * machine's other load disturbs the medians), then the largest absolute
 * difference between the two outputs on the same input (equal work: both
 * must compute the same numbers) and oneDNN's implementation name.
 *
 *   build/bench_dnnl_ops [THREADS ...] [FILTER]     (default threads: 1 2)
 *
 * DNNL_THREADS=N in the environment runs oneDNN on N threads whatever the
 * row's thread count (tern's pool keeps T): DNNL_THREADS=1 compares tern's
 * T threads with oneDNN on the calling thread alone, as dnnl_norm.c runs it.
 * FILTER keeps the cases whose label contains it ("Softmax", "[128,768]").
 * tern's side runs with TERN_DNNL=0 (its portable kernels: the comparison
 * the routing decision needs) unless TERN_DNNL is set: with TERN_DNNL=1 the
 * "tern" columns measure the engine's routed path, oneDNN through the
 * node's plan cache (src/ops/dnnl_norm.c) where it is wired in.
 * libgomp reads GOMP_SPINCOUNT at start-up, so without it in the
 * environment the program re-executes itself with GOMP_SPINCOUNT=10000, what
 * bench/gemm's README asks for: with the default spin, idle OpenMP workers
 * take the core from tern's pool between calls.
 */
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/tensor.h"
#include "engine/exec.h"
#include "engine/fold.h"
#include "onnx/reader.h"
#include "timing.h"

#define BUDGET 0.25 /* seconds of timed runs per case and thread count */
#define MAX_RUNS 4000

typedef enum { K_LN, K_SM, K_RELU, K_GELU, K_TANH, K_SIGM, K_ADD, K_BN } op_kind;

static const char *const kind_name[] = {"LayerNorm", "Softmax", "Relu", "Gelu",
                                        "Tanh",      "Sigmoid", "Add",  "BatchNorm"};

typedef struct bcase {
    op_kind k;
    int rank;
    int64_t dims[4];
} bcase;

/* BERT-base sizes (hidden 768, 12 heads, sequence 128) at batch 1 and 32,
 * then the test suite's served BERT (tests/models/export.py: hidden 128, 2
 * heads, its pooler's Tanh) and MLP (Softmax over 10); ImageNet logits;
 * activations of ~64K, ~200K (ResNet's [1,64,56,56]) and ~1M elements. */
static const bcase cases[] = {
    {K_LN, 2, {128, 768}},        {K_LN, 2, {32 * 128, 768}},     {K_LN, 2, {128, 128}},
    {K_LN, 2, {32 * 128, 128}},   {K_SM, 2, {12 * 128, 128}},     {K_SM, 2, {32 * 12 * 128, 128}},
    {K_SM, 2, {2 * 128, 128}},    {K_SM, 2, {32 * 2 * 128, 128}}, {K_SM, 2, {1, 10}},
    {K_SM, 2, {32, 10}},          {K_SM, 2, {1, 1000}},           {K_SM, 2, {32, 1000}},
    {K_RELU, 2, {64, 1024}},      {K_RELU, 4, {1, 64, 56, 56}},   {K_RELU, 3, {32, 128, 256}},
    {K_GELU, 2, {64, 1024}},      {K_GELU, 4, {1, 64, 56, 56}},   {K_GELU, 3, {32, 128, 256}},
    {K_TANH, 2, {1, 128}},        {K_TANH, 2, {32, 128}},         {K_TANH, 2, {64, 1024}},
    {K_TANH, 4, {1, 64, 56, 56}}, {K_TANH, 3, {32, 128, 256}},    {K_SIGM, 2, {64, 1024}},
    {K_SIGM, 4, {1, 64, 56, 56}}, {K_SIGM, 3, {32, 128, 256}},    {K_ADD, 2, {64, 1024}},
    {K_ADD, 4, {1, 64, 56, 56}},  {K_ADD, 3, {32, 128, 256}},     {K_BN, 4, {1, 64, 56, 56}},
};

static uint64_t seed = 88172645463325252ull;

/* Uniform in [lo, hi) (xorshift64). */
static float uniform(float lo, float hi)
{
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return lo + (hi - lo) * (float)(seed >> 40) * (1.0f / 16777216.0f);
}

static void fill(float *v, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++) v[i] = uniform(lo, hi);
}

static int64_t numel(const bcase *c)
{
    int64_t n = 1;
    for (int i = 0; i < c->rank; i++) n *= c->dims[i];
    return n;
}

/* ---- the one-node ONNX model ------------------------------------------- */

/* Constant inputs of a case (NULL if unused): LayerNorm scale/B over the
 * last axis, BatchNorm scale/B/mean/var over channels. */
typedef struct params {
    int64_t len;
    float *p[4];
} params;

static Onnx__ValueInfoProto *value_info(const char *name, const bcase *c, void **mem, int *nmem)
{
    Onnx__TensorShapeProto__Dimension *dim = calloc((size_t)c->rank, sizeof *dim);
    Onnx__TensorShapeProto__Dimension **dimp = calloc((size_t)c->rank, sizeof *dimp);
    Onnx__TensorShapeProto *shape = malloc(sizeof *shape);
    Onnx__TypeProto__Tensor *tt = malloc(sizeof *tt);
    Onnx__TypeProto *type = malloc(sizeof *type);
    Onnx__ValueInfoProto *vi = malloc(sizeof *vi);
    if (!dim || !dimp || !shape || !tt || !type || !vi) abort(); /* a benchmark: no recovery */
    for (int i = 0; i < c->rank; i++) {
        dim[i] = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        dim[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        dim[i].dim_value = c->dims[i];
        dimp[i] = &dim[i];
    }
    *shape = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
    shape->n_dim = (size_t)c->rank;
    shape->dim = dimp;
    *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = shape;
    *type = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tt;
    *vi = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
    vi->name = (char *)name;
    void *all[] = {dim, dimp, shape, tt, type, vi};
    for (int i = 0; i < 6; i++) mem[(*nmem)++] = all[i];
    return vi;
}

/* The serialised model of case c (caller frees *buf). */
static void make_model(const bcase *c, const params *pr, void **buf, size_t *len)
{
    static char *names[] = {"X", "Y", "scale", "B", "mean", "var"};
    void *mem[32];
    int nmem = 0;
    Onnx__NodeProto node = ONNX__NODE_PROTO__INIT;
    char *in[5] = {"X"}, *out[1] = {"Z"};
    node.input = in;
    node.n_input = 1;
    node.output = out;
    node.n_output = 1;
    node.name = "op";
    Onnx__AttributeProto attr[2] = {ONNX__ATTRIBUTE_PROTO__INIT, ONNX__ATTRIBUTE_PROTO__INIT};
    Onnx__AttributeProto *attrp[2] = {&attr[0], &attr[1]};
    node.attribute = attrp;
    Onnx__TensorProto init[4];
    Onnx__TensorProto *initp[4];
    int ninit = 0;
    switch (c->k) {
    case K_LN:
        node.op_type = "LayerNormalization";
        attr[0].name = "axis";
        attr[0].has_type = 1;
        attr[0].type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        attr[0].has_i = 1;
        attr[0].i = -1;
        attr[1].name = "epsilon";
        attr[1].has_type = 1;
        attr[1].type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
        attr[1].has_f = 1;
        attr[1].f = 1e-12f;
        node.n_attribute = 2;
        ninit = 2;
        break;
    case K_SM:
        node.op_type = "Softmax";
        attr[0].name = "axis";
        attr[0].has_type = 1;
        attr[0].type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        attr[0].has_i = 1;
        attr[0].i = -1;
        node.n_attribute = 1;
        break;
    case K_RELU: node.op_type = "Relu"; break;
    case K_GELU:
        /* what graph/passes_fuse.c turns an exported erf GELU into */
        node.op_type = "Gelu";
        node.domain = "com.tern";
        break;
    case K_TANH: node.op_type = "Tanh"; break;
    case K_SIGM: node.op_type = "Sigmoid"; break;
    case K_ADD:
        node.op_type = "Add";
        in[1] = "Y";
        node.n_input = 2;
        break;
    case K_BN:
        node.op_type = "BatchNormalization";
        attr[0].name = "epsilon";
        attr[0].has_type = 1;
        attr[0].type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
        attr[0].has_f = 1;
        attr[0].f = 1e-5f;
        node.n_attribute = 1;
        ninit = 4;
        break;
    }
    for (int i = 0; i < ninit; i++) {
        init[i] = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
        init[i].name = names[2 + i];
        init[i].n_dims = 1;
        init[i].dims = (int64_t *)&pr->len;
        init[i].has_data_type = 1;
        init[i].data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
        init[i].n_float_data = (size_t)pr->len;
        init[i].float_data = pr->p[i];
        initp[i] = &init[i];
        in[node.n_input++] = names[2 + i];
    }
    Onnx__NodeProto *nodep = &node;
    Onnx__ValueInfoProto *inputs[2] = {value_info("X", c, mem, &nmem),
                                       value_info("Y", c, mem, &nmem)};
    Onnx__ValueInfoProto *outputs[1] = {value_info("Z", c, mem, &nmem)};
    Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
    g.name = "bench";
    g.n_node = 1;
    g.node = &nodep;
    g.n_initializer = (size_t)ninit;
    g.initializer = initp;
    g.n_input = c->k == K_ADD ? 2 : 1;
    g.input = inputs;
    g.n_output = 1;
    g.output = outputs;
    Onnx__OperatorSetIdProto ops[2] = {ONNX__OPERATOR_SET_ID_PROTO__INIT,
                                       ONNX__OPERATOR_SET_ID_PROTO__INIT};
    Onnx__OperatorSetIdProto *opsp[2] = {&ops[0], &ops[1]};
    ops[0].domain = "";
    ops[0].has_version = 1;
    ops[0].version = 17;
    ops[1].domain = "com.tern";
    ops[1].has_version = 1;
    ops[1].version = 1;
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    m.has_ir_version = 1;
    m.ir_version = 8;
    m.n_opset_import = 2;
    m.opset_import = opsp;
    m.graph = &g;
    *len = onnx__model_proto__get_packed_size(&m);
    *buf = malloc(*len);
    if (!*buf) abort();
    onnx__model_proto__pack(&m, *buf);
    for (int i = 0; i < nmem; i++) free(mem[i]);
}

/* ---- the oneDNN primitive ----------------------------------------------- */

typedef struct dnn_case {
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[8];
    char impl[48];
} dnn_case;

static void check(dnnl_status_t st, const char *what)
{
    if (st != dnnl_success) {
        fprintf(stderr, "oneDNN: %s failed (status %d)\n", what, (int)st);
        exit(1);
    }
}

static void add_arg(dnn_case *d, dnnl_engine_t eng, int arg, const dnnl_memory_desc_t *md,
                    void *data)
{
    dnnl_memory_t m;
    check(dnnl_memory_create(&m, md, eng, data), "memory");
    d->args[d->nargs++] = (dnnl_exec_arg_t){arg, m};
}

static void dnn_build(dnn_case *d, dnnl_engine_t eng, const bcase *c, float *x, float *y, float *z,
                      const params *pr)
{
    static const dnnl_format_tag_t plain[] = {dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd};
    dnnl_dims_t dims;
    for (int i = 0; i < c->rank; i++) dims[i] = c->dims[i];
    dnnl_memory_desc_t md, pmd;
    check(dnnl_memory_desc_init_by_tag(&md, c->rank, dims, dnnl_f32, plain[c->rank - 1]), "md");
    dnnl_dims_t pdims = {pr->len};
    check(dnnl_memory_desc_init_by_tag(&pmd, 1, pdims, dnnl_f32, dnnl_a), "md");
    union {
        dnnl_layer_normalization_desc_t ln;
        dnnl_softmax_v2_desc_t sm;
        dnnl_eltwise_desc_t ew;
        dnnl_binary_desc_t bin;
        dnnl_batch_normalization_desc_t bn;
    } desc;
    const dnnl_prop_kind_t inf = dnnl_forward_inference;
    switch (c->k) {
    case K_LN:
        check(dnnl_layer_normalization_forward_desc_init(&desc.ln, inf, &md, NULL, 1e-12f,
                                                         dnnl_use_scale | dnnl_use_shift),
              "layer_normalization");
        break;
    case K_SM:
        check(dnnl_softmax_v2_forward_desc_init(&desc.sm, inf, dnnl_softmax_accurate, &md, &md,
                                                c->rank - 1),
              "softmax_v2");
        break;
    case K_RELU:
        check(dnnl_eltwise_forward_desc_init(&desc.ew, inf, dnnl_eltwise_relu, &md, 0, 0),
              "eltwise");
        break;
    case K_GELU:
        check(dnnl_eltwise_forward_desc_init(&desc.ew, inf, dnnl_eltwise_gelu_erf, &md, 0, 0),
              "eltwise");
        break;
    case K_TANH:
        check(dnnl_eltwise_forward_desc_init(&desc.ew, inf, dnnl_eltwise_tanh, &md, 0, 0),
              "eltwise");
        break;
    case K_SIGM:
        check(dnnl_eltwise_forward_desc_init(&desc.ew, inf, dnnl_eltwise_logistic, &md, 0, 0),
              "eltwise");
        break;
    case K_ADD:
        check(dnnl_binary_desc_init(&desc.bin, dnnl_binary_add, &md, &md, &md), "binary");
        break;
    case K_BN:
        check(dnnl_batch_normalization_forward_desc_init(&desc.bn, inf, &md, 1e-5f,
                                                         dnnl_use_global_stats | dnnl_use_scale |
                                                             dnnl_use_shift),
              "batch_normalization");
        break;
    }
    dnnl_primitive_desc_t pd;
    check(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL), "primitive_desc");
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(d->impl, sizeof d->impl, "%s", impl);
    check(dnnl_primitive_create(&d->prim, pd), "primitive");
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    d->nargs = 0;
    if (c->k == K_ADD) {
        add_arg(d, eng, DNNL_ARG_SRC_0, &md, x);
        add_arg(d, eng, DNNL_ARG_SRC_1, &md, y);
    } else {
        add_arg(d, eng, DNNL_ARG_SRC, &md, x);
    }
    add_arg(d, eng, DNNL_ARG_DST, &md, z);
    if (c->k == K_LN || c->k == K_BN) {
        add_arg(d, eng, DNNL_ARG_SCALE, &pmd, pr->p[0]);
        add_arg(d, eng, DNNL_ARG_SHIFT, &pmd, pr->p[1]);
    }
    if (c->k == K_BN) {
        add_arg(d, eng, DNNL_ARG_MEAN, &pmd, pr->p[2]);
        add_arg(d, eng, DNNL_ARG_VARIANCE, &pmd, pr->p[3]);
    }
    if (sp && dnnl_memory_desc_get_size(sp))
        add_arg(d, eng, DNNL_ARG_SCRATCHPAD, sp, DNNL_MEMORY_ALLOCATE);
    dnnl_primitive_desc_destroy(pd);
}

static void dnn_free(dnn_case *d)
{
    for (int i = 0; i < d->nargs; i++) dnnl_memory_destroy(d->args[i].memory);
    dnnl_primitive_destroy(d->prim);
}

static void die(tern_status *st, const char *what)
{
    if (!st) return;
    fprintf(stderr, "%s: %s\n", what, tern_status_message(st));
    exit(1);
}

static double run_tern(exec_state *xs, const graph *g, const tern_tensor *const *in,
                       const tern_tensor **out)
{
    double t = now();
    die(exec_run(xs, g, in, out), "tern run");
    return now() - t;
}

static double run_dnnl(dnn_case *d, dnnl_stream_t stream)
{
    double t = now();
    check(dnnl_primitive_execute(d->prim, stream, d->nargs, d->args), "execute");
    check(dnnl_stream_wait(stream), "wait");
    return now() - t;
}

/* ---- one case ------------------------------------------------------------ */

static const char *label(const bcase *c, char *buf, size_t n)
{
    int k = snprintf(buf, n, "%s [", kind_name[c->k]);
    for (int i = 0; i < c->rank && k < (int)n; i++)
        k += snprintf(buf + k, n - (size_t)k, "%s%lld", i ? "," : "", (long long)c->dims[i]);
    if (k < (int)n) snprintf(buf + k, n - (size_t)k, "]");
    return buf;
}

static void run_case(const bcase *c, const int *threads, int nthreads, int dnnl_threads,
                     dnnl_engine_t eng, dnnl_stream_t stream)
{
    int64_t n = numel(c);
    params pr = {c->k == K_LN ? c->dims[c->rank - 1] : c->k == K_BN ? c->dims[1] : 1, {0}};
    for (int i = 0; i < 4; i++) {
        pr.p[i] = malloc(sizeof(float) * (size_t)pr.len);
        if (!pr.p[i]) abort();
    }
    fill(pr.p[0], pr.len, 0.5f, 1.5f);  /* scale */
    fill(pr.p[1], pr.len, -0.5f, 0.5f); /* B */
    fill(pr.p[2], pr.len, -0.5f, 0.5f); /* mean */
    fill(pr.p[3], pr.len, 0.25f, 2.0f); /* var */

    tern_tensor *tx, *ty;
    die(tern_tensor_create(TERN_FLOAT, c->rank, c->dims, &tx), "tensor");
    die(tern_tensor_create(TERN_FLOAT, c->rank, c->dims, &ty), "tensor");
    float *x = tern_tensor_data(tx), *y = tern_tensor_data(ty);
    fill(x, n, -4, 4);
    fill(y, n, -4, 4);
    float *z = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
    if (!z) abort();

    void *buf;
    size_t len;
    make_model(c, &pr, &buf, &len);
    Onnx__ModelProto *proto;
    die(onnx_parse_model(buf, len, &proto), "model");
    free(buf);
    graph_model *m;
    die(engine_build_model(proto, NULL, true, &m), "model");
    const graph *g = m->main;
    char lb[64], ops[64] = "";
    label(c, lb, sizeof lb);
    for (int i = 0; i < g->n_nodes; i++) {
        size_t k = strlen(ops);
        snprintf(ops + k, sizeof ops - k, "%s%s%s%s", i ? "+" : "", g->nodes[i].op.domain,
                 *g->nodes[i].op.domain ? "." : "", g->nodes[i].op.op_type);
    }
    const tern_tensor *in[2] = {tx, ty};

    for (int t = 0; t < nthreads; t++) {
        int th = threads[t];
        omp_set_num_threads(dnnl_threads ? dnnl_threads : th);
        exec_state xs;
        die(exec_state_init(&xs, th), "exec_state");
        dnn_case d;
        dnn_build(&d, eng, c, x, y, z, &pr);
        const tern_tensor *out[1];
        /* warm-up: the first runs record and size the memory plan */
        double tt = 0, td = 0;
        for (int r = 0; r < 4; r++) {
            tt = run_tern(&xs, g, in, out);
            td = run_dnnl(&d, stream);
        }
        /* in blocks: each side's own speed, the other's threads idle */
        int block = (int)(0.005 / (tt + td + 1e-9)) + 2, nb = 0, na = 0;
        static double b_tern[MAX_RUNS], b_dnnl[MAX_RUNS], a_tern[MAX_RUNS], a_dnnl[MAX_RUNS];
        for (double t0 = now(); nb < 15 || (now() - t0 < BUDGET && nb + block <= MAX_RUNS);) {
            int k = block < MAX_RUNS - nb ? block : MAX_RUNS - nb;
            run_tern(&xs, g, in, out); /* the first run after a switch is left out */
            for (int r = 0; r < k; r++) b_tern[nb + r] = run_tern(&xs, g, in, out);
            run_dnnl(&d, stream);
            for (int r = 0; r < k; r++) b_dnnl[nb + r] = run_dnnl(&d, stream);
            nb += k;
        }
        /* alternating: as when the op sits between tern's kernels in a model */
        for (double t0 = now(); na < 15 || (now() - t0 < BUDGET && na < MAX_RUNS); na++) {
            a_tern[na] = run_tern(&xs, g, in, out);
            a_dnnl[na] = run_dnnl(&d, stream);
        }
        double mt = median(b_tern, nb), md = median(b_dnnl, nb);
        double at = median(a_tern, na), ad = median(a_dnnl, na);
        const float *zt = out[0]->data;
        double diff = 0;
        for (int64_t i = 0; i < n; i++) {
            double e = fabs((double)zt[i] - (double)z[i]);
            if (e > diff || e != e) diff = e;
        }
        /* (sorted by median) [0]: the fastest run of each, the least disturbed */
        printf("%-24s %2d %8.4f %8.4f %5.2fx %5.2fx  %8.4f %8.4f %5.2fx  %7.1e  %-18s %s\n", lb, th,
               mt * 1e3, md * 1e3, mt / md, b_tern[0] / b_dnnl[0], at * 1e3, ad * 1e3, at / ad,
               diff, ops, d.impl);
        fflush(stdout);
        dnn_free(&d);
        exec_state_free(&xs);
    }
    graph_model_free(m);
    tern_tensor_free(tx);
    tern_tensor_free(ty);
    free(z);
    for (int i = 0; i < 4; i++) free(pr.p[i]);
}

int main(int argc, char **argv)
{
    if (!getenv("GOMP_SPINCOUNT")) { /* libgomp reads it at start-up only */
        setenv("GOMP_SPINCOUNT", "10000", 1);
        execv("/proc/self/exe", argv);
        perror("re-exec with GOMP_SPINCOUNT");
        return 1;
    }
    setenv("TERN_DNNL", "0", 0); /* tern's own kernels, unless the caller says otherwise */
    int threads[8], nthreads = 0;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        int t = atoi(argv[i]);
        if (t > 0 && nthreads < 8)
            threads[nthreads++] = t;
        else
            filter = argv[i];
    }
    if (!nthreads) {
        threads[0] = 1;
        threads[1] = 2;
        nthreads = 2;
    }
    const char *dt = getenv("DNNL_THREADS");
    int dnnl_threads = dt ? atoi(dt) : 0;
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    check(dnnl_engine_create(&eng, dnnl_cpu, 0), "engine");
    check(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags), "stream");
    if (dnnl_threads) printf("oneDNN on %d thread(s) in every row (DNNL_THREADS)\n", dnnl_threads);
    printf("GOMP_SPINCOUNT=%s TERN_DNNL=%s, medians over ~%.2f s per row; ratio tern/dnnl > 1: "
           "oneDNN faster\n",
           getenv("GOMP_SPINCOUNT"), getenv("TERN_DNNL"), BUDGET);
    printf("%-24s %2s %8s %8s %6s %6s  %8s %8s %6s  %7s  %-18s %s\n", "", "", "in", "blocks", "",
           "", "alter", "nating", "", "", "", "");
    printf("%-24s %2s %8s %8s %6s %6s  %8s %8s %6s  %7s  %-18s %s\n", "case", "th", "tern ms",
           "dnnl ms", "ratio", "(min)", "tern ms", "dnnl ms", "ratio", "max|d|", "tern graph",
           "dnnl impl");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char lb[64];
        if (filter && !strstr(label(&cases[i], lb, sizeof lb), filter)) continue;
        run_case(&cases[i], threads, nthreads, dnnl_threads, eng, stream);
    }
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(eng);
    return 0;
}

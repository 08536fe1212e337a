/*
 * Operator family: com.tern fused operators, the ops the graph passes
 * (graph/passes_fuse.c) put in place of patterns exporters emit op by op.
 * Each computes what its pattern computes, up to float rounding, in fewer
 * passes over memory:
 *
 *   FusedGemm(A, B, C?)   act(alpha * A' B' + beta * C): Gemm's inputs and
 *                         attributes (transA, transB, alpha, beta);
 *   FusedMatMul(A, B, bias?)  act(A B + bias): A [..., k] by a 2-D B [k, n]
 *                         (a Linear layer on a batch of sequences), bias [n];
 *   Gelu(X)               x * (1 + erf(x / sqrt 2)) / 2, the exact GELU.
 * (com.tern LayerNormalization, for models of opsets before 17, is
 * ai.onnx's kernel in norm.c under a second name.)
 *
 * The activation is a string attribute `activation` ("Relu", "Clip",
 * "LeakyRelu", "HardSigmoid", "Gelu"; absent: none) with its parameters in
 * `activation_params` (Clip: min, max; LeakyRelu: alpha; HardSigmoid:
 * alpha, beta), the same contract as FusedConv (conv.c).
 *
 * The matrix products run on the packed SGEMM of linalg_gemm.h (a constant B
 * is packed once at load by the prepare hook, as MatMul and Gemm do); the
 * bias and the activation are applied row by row right after, while the
 * rows are still in cache, split over the thread pool.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "core/cpu.h"
#include "ops/elementwise.h"
#include "ops/linalg_gemm.h"
#include "ops/op.h"
#include "ops/reduce_util.h"

/* ---- activations ------------------------------------------------------------ */

typedef enum { ACT_NONE, ACT_RELU, ACT_CLIP, ACT_LEAKY, ACT_HSIG, ACT_GELU } act_kind;

typedef struct act_spec {
    act_kind kind;
    float p0, p1;
} act_spec;

static tern_status *read_act(op_ctx *c, act_spec *a)
{
    const char *s = op_attr_str(c, "activation", "");
    const float *f = NULL;
    int nf = op_attr_floats(c, "activation_params", &f);
    *a = (act_spec){ACT_NONE, 0, 0};
    if (!*s) return NULL;
    if (!strcmp(s, "Relu")) {
        a->kind = ACT_RELU;
    } else if (!strcmp(s, "Gelu")) {
        a->kind = ACT_GELU;
    } else if (!strcmp(s, "Clip")) {
        *a = (act_spec){ACT_CLIP, nf > 0 ? f[0] : -INFINITY, nf > 1 ? f[1] : INFINITY};
    } else if (!strcmp(s, "LeakyRelu")) {
        *a = (act_spec){ACT_LEAKY, nf > 0 ? f[0] : 0.01f, 0};
    } else if (!strcmp(s, "HardSigmoid")) {
        *a = (act_spec){ACT_HSIG, nf > 0 ? f[0] : 0.2f, nf > 1 ? f[1] : 0.5f};
    } else {
        return op_error(c,
                        "activation '%s' is not supported (Relu, Clip, LeakyRelu, "
                        "HardSigmoid, Gelu)",
                        s);
    }
    return NULL;
}

/* min(max(v, lo), hi) with Clip's rules: lo > hi gives hi; NaN passes. */
#define CLAMP(v, lo, hi) ((v) < (lo) ? ((lo) > (hi) ? (hi) : (lo)) : (v) > (hi) ? (hi) : (v))

static TERN_INLINE float gelu1(float x)
{
    return 0.5f * x * (1.0f + ru_erff(x * 0.70710678118654752f));
}

/* y[j] = act(y[j] + beta * b[j * bs]) for j < n; b may be NULL, bs 0 or 1. */
static TERN_INLINE void epilogue_impl(const act_spec *a, float *restrict y, const float *b,
                                      int64_t bs, float beta, int64_t n)
{
    if (b && bs == 1) {
        if (beta == 1.0f)
            for (int64_t j = 0; j < n; j++) y[j] += b[j];
        else
            for (int64_t j = 0; j < n; j++) y[j] += beta * b[j];
    } else if (b) {
        float v = beta * b[0];
        for (int64_t j = 0; j < n; j++) y[j] += v;
    }
    const float p0 = a->p0, p1 = a->p1;
    switch (a->kind) {
    case ACT_NONE: break;
    case ACT_RELU:
        for (int64_t j = 0; j < n; j++) y[j] = ew_sel_f32(y[j] < 0, 0.0f, y[j]);
        break;
    case ACT_CLIP:
        for (int64_t j = 0; j < n; j++) y[j] = CLAMP(y[j], p0, p1);
        break;
    case ACT_LEAKY:
        for (int64_t j = 0; j < n; j++) y[j] = ew_sel_f32(y[j] < 0, p0 * y[j], y[j]);
        break;
    case ACT_HSIG:
        for (int64_t j = 0; j < n; j++) {
            float v = p0 * y[j] + p1;
            y[j] = CLAMP(v, 0.0f, 1.0f);
        }
        break;
    case ACT_GELU:
        for (int64_t j = 0; j < n; j++) y[j] = gelu1(y[j]);
        break;
    }
}
TERN_MULTI_VOID(epilogue,
                (const act_spec *a, float *restrict y, const float *b, int64_t bs, float beta,
                 int64_t n),
                (a, y, b, bs, beta, n))

/* y may be x itself (Gelu runs in place, OP_INPLACE0): no restrict. */
static TERN_INLINE void gelu_run_impl(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = gelu1(x[i]);
}
TERN_MULTI_VOID(gelu_run, (const float *x, float *y, int64_t n), (x, y, n))

/* ---- the GEMM and its epilogue ------------------------------------------------ */

typedef struct epi_job {
    const act_spec *act;
    float *y;
    int64_t n;
    const float *bias; /* element (i, j) at bias[i * brs + j * bcs], or NULL */
    int64_t brs, bcs;
    float beta;
} epi_job;

static void epi_rows(void *arg, int64_t r0, int64_t r1)
{
    const epi_job *j = arg;
    for (int64_t i = r0; i < r1; i++)
        epilogue(j->act, j->y + i * j->n, j->bias ? j->bias + i * j->brs : NULL, j->bcs, j->beta,
                 j->n);
}

/* B packed at load: for a constant float32 2-D B (transposed if trans). */
typedef struct packed_b {
    const tern_tensor *b;
    const float *pb;
} packed_b;

static tern_status *pack_b(op_prep *p, bool trans, const void **state)
{
    const tern_tensor *b = p->n_in > 1 ? p->in[1] : NULL;
    if (!b || b->kind != TENSOR_DENSE || b->dtype != TERN_FLOAT || b->rank != 2) return NULL;
    int64_t k = b->dims[trans ? 1 : 0], n = b->dims[trans ? 0 : 1];
    if (k == 0 || n == 0) return NULL;
    packed_b *s = op_prep_alloc(p, sizeof *s);
    float *pb = op_prep_alloc(p, sgemm_pb_all_floats(n, k) * sizeof(float));
    if (!s || !pb) return tern_error(TERN_ERR_NO_MEMORY, "out of memory packing B");
    sgemm_view v = {b->data, trans ? 1 : n, trans ? k : 1};
    sgemm_pack_b_all(n, k, sgemm_pack_view, &v, pb);
    *s = (packed_b){b, pb};
    *state = s;
    return NULL;
}

static const float *packed_for(const op_ctx *c)
{
    const packed_b *s = c->state;
    return s && s->b == c->in[1] ? s->pb : NULL;
}

/* Y [m x n] = alpha * A B, then the epilogue on every row. A (i, q) at
 * a[i*a_rs + q*a_cs], B (q, j) at b[q*b_rs + j*b_cs]; pb is B packed. */
static tern_status *gemm_epilogue(op_ctx *c, int64_t m, int64_t n, int64_t k, float alpha,
                                  const float *a, int64_t a_rs, int64_t a_cs, const float *b,
                                  int64_t b_rs, int64_t b_cs, const float *pb, float *y, epi_job *e)
{
    if (m == 0 || n == 0) return NULL;
    if (pb && !sgemm_is_small(m, n, k)) {
        float *pa;
        TERN_TRY(op_scratch(c, sgemm_pa_floats(m, k) * sizeof(float), (void **)&pa));
        sgemm_pack_a(c->pool, m, k, a, a_rs, a_cs, pa);
        sgemm_out o = {y, n, false, NULL};
        sgemm_prepacked(c->pool, m, n, k, alpha, pa, pb, 0.0f, &o);
    } else {
        float *work = NULL;
        if (!sgemm_is_small(m, n, k))
            TERN_TRY(op_scratch(c, sgemm_work_floats(m, n, k) * sizeof(float), (void **)&work));
        sgemm(c->pool, m, n, k, alpha, a, a_rs, a_cs, b, b_rs, b_cs, 0.0f, y, n, work);
    }
    if (e->act->kind != ACT_NONE || e->bias) {
        e->y = y;
        e->n = n;
        tpool_for(c->pool, m, 16384 / n + 1, epi_rows, e);
    }
    return NULL;
}

static tern_status *need_f32(op_ctx *c, int i, const char *what)
{
    TERN_TRY(op_need_input(c, i));
    const tern_tensor *t = c->in[i];
    if (t->kind != TENSOR_DENSE || t->dtype != TERN_FLOAT)
        return op_error(c, "%s must be a float32 tensor", what);
    return NULL;
}

/* ---- FusedGemm ----------------------------------------------------------------- */

static tern_status *fused_gemm_prepare(op_prep *p, const void **state)
{
    op_ctx attrs = {.node = p->node, .opset = p->opset}; /* for op_attr_int */
    return pack_b(p, op_attr_int(&attrs, "transB", 0) != 0, state);
}

static tern_status *op_fused_gemm(op_ctx *c)
{
    TERN_TRY(need_f32(c, 0, "A"));
    TERN_TRY(need_f32(c, 1, "B"));
    const tern_tensor *a = c->in[0], *b = c->in[1], *cc = c->n_in > 2 ? c->in[2] : NULL;
    if (a->rank != 2 || b->rank != 2)
        return op_error(c, "A and B must be 2-D, got ranks %d and %d", a->rank, b->rank);
    act_spec act;
    TERN_TRY(read_act(c, &act));
    bool ta = op_attr_int(c, "transA", 0) != 0, tb = op_attr_int(c, "transB", 0) != 0;
    float alpha = op_attr_float(c, "alpha", 1.0f), beta = op_attr_float(c, "beta", 1.0f);
    int64_t m = a->dims[ta ? 1 : 0], k = a->dims[ta ? 0 : 1], n = b->dims[tb ? 0 : 1];
    if (b->dims[tb ? 1 : 0] != k)
        return op_error(c, "inner dimensions differ: %lld and %lld", (long long)k,
                        (long long)b->dims[tb ? 1 : 0]);
    int64_t dims[2] = {m, n}, st[2] = {0, 0};
    epi_job e = {.act = &act, .beta = beta};
    if (cc && beta != 0.0f) {
        TERN_TRY(need_f32(c, 2, "C"));
        if (cc->rank > 2) return op_error(c, "C must have rank <= 2, got %d", cc->rank);
        for (int i = 0; i < cc->rank; i++) {
            int64_t want = dims[2 - cc->rank + i];
            if (cc->dims[i] != 1 && cc->dims[i] != want)
                return op_error(c, "C cannot be broadcast to [%lld,%lld]", (long long)m,
                                (long long)n);
        }
        op_bcast_strides(cc, 2, dims, st);
        e.bias = cc->data;
        e.brs = st[0];
        e.bcs = st[1];
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_FLOAT, 2, dims, &y));
    return gemm_epilogue(c, m, n, k, alpha, a->data, ta ? 1 : k, ta ? m : 1, b->data, tb ? 1 : n,
                         tb ? k : 1, packed_for(c), y->data, &e);
}

/* ---- FusedMatMul --------------------------------------------------------------- */

static tern_status *fused_matmul_prepare(op_prep *p, const void **state)
{
    return pack_b(p, false, state);
}

static tern_status *op_fused_matmul(op_ctx *c)
{
    TERN_TRY(need_f32(c, 0, "A"));
    TERN_TRY(need_f32(c, 1, "B"));
    const tern_tensor *a = c->in[0], *b = c->in[1], *bias = c->n_in > 2 ? c->in[2] : NULL;
    if (a->rank < 1 || b->rank != 2)
        return op_error(c, "A must have rank >= 1 and B rank 2, got ranks %d and %d", a->rank,
                        b->rank);
    act_spec act;
    TERN_TRY(read_act(c, &act));
    int64_t k = a->dims[a->rank - 1], n = b->dims[1];
    if (b->dims[0] != k)
        return op_error(c, "inner dimensions differ: A has %lld, B %lld", (long long)k,
                        (long long)b->dims[0]);
    int64_t m = 1;
    for (int d = 0; d + 1 < a->rank; d++) m *= a->dims[d];
    epi_job e = {.act = &act, .beta = 1.0f};
    if (bias) {
        TERN_TRY(need_f32(c, 2, "bias"));
        if (bias->numel != n)
            return op_error(c, "bias has %lld elements, B has %lld columns", (long long)bias->numel,
                            (long long)n);
        e.bias = bias->data;
        e.bcs = 1;
    }
    int64_t dims[TERN_MAX_RANK];
    int rank = a->rank == 1 ? 1 : a->rank;
    for (int d = 0; d + 1 < a->rank; d++) dims[d] = a->dims[d];
    dims[rank - 1] = n;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_FLOAT, rank, dims, &y));
    return gemm_epilogue(c, m, n, k, 1.0f, a->data, k, 1, b->data, n, 1, packed_for(c), y->data,
                         &e);
}

/* ---- Gelu ----------------------------------------------------------------------- */

typedef struct gelu_job {
    const float *x;
    float *y;
} gelu_job;

static void gelu_range(void *arg, int64_t b, int64_t e)
{
    const gelu_job *j = arg;
    gelu_run(j->x + b, j->y + b, e - b);
}

static tern_status *op_gelu(op_ctx *c)
{
    TERN_TRY(need_f32(c, 0, "X"));
    const tern_tensor *x = c->in[0];
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_FLOAT, x->rank, x->dims, &y));
    gelu_job j = {x->data, y->data};
    tpool_for(c->pool, x->numel, 16384, gelu_range, &j);
    return NULL;
}

const op_def ops_fused[] = {
    {"com.tern", "FusedGemm", 1, 1, op_fused_gemm, fused_gemm_prepare},
    {"com.tern", "FusedMatMul", 1, 1, op_fused_matmul, fused_matmul_prepare},
    {"com.tern", "Gelu", 1, 1, op_gelu, NULL, OP_INPLACE0},
    {0},
};

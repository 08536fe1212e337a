/*
 * Softmax, LogSoftmax, Hardmax and the two losses built on them,
 * NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
 *
 * The three softmax ops see the input as [outer, n, inner] around their axis:
 * before opset 13 the input is coerced to 2-D at `axis` (default 1), so the
 * softmax runs over everything from axis on and inner is 1; from opset 13 it
 * runs over the single axis (default -1). Float32 has a row kernel for
 * inner == 1 (every opset-12 model, and the last axis of attention scores in
 * BERT) and a tiled kernel for a strided axis (channels of NCHW), both split
 * over the thread pool; other dtypes, and Hardmax on a strided axis, go
 * through the reference kernel in double. A float32 Softmax over rows
 * (inner == 1) goes to oneDNN first (dnnl_norm.c, which says when).
 * Softmax and Hardmax may write their output over the input (OP_INPLACE0):
 * each path reads a row (or a tile's lanes) whole before it writes it, or
 * reads an element just before overwriting it. LogSoftmax may not: its
 * float32 paths park exp(x - max) in the output and then read x again.
 *
 * The losses compute in double: log-probabilities [N, C, D] (the input itself
 * for NLL, its log-softmax over C for SCE), then per position the weighted
 * negative log-probability of the target class, then the reduction.
 */
#include <math.h>
#include <string.h>

#include "core/cpu.h"
#include "ops/dnnl.h"
#include "ops/norm_softmax.h"
#include "ops/reduce_util.h"

enum { SM_SOFT, SM_LOG, SM_HARD };

/* Softmax of one contiguous float32 row of n > 0 elements. */
static TERN_INLINE void softmax_row_f32(const float *x, float *y, int64_t n, int kind)
{
    if (kind == SM_HARD) {
        int64_t best = 0;
        for (int64_t i = 1; i < n; i++)
            if (x[i] > x[best]) best = i;
        for (int64_t i = 0; i < n; i++) y[i] = i == best ? 1.0f : 0.0f;
        return;
    }
    float m = ru_max_f32(x, n);
    for (int64_t i = 0; i < n; i++) y[i] = ru_expf(x[i] - m);
    double s = ru_sum_f32(y, n);
    if (kind == SM_SOFT) {
        float inv = (float)(1.0 / s);
        for (int64_t i = 0; i < n; i++) y[i] *= inv;
    } else {
        float off = m + (float)log(s);
        for (int64_t i = 0; i < n; i++) y[i] = x[i] - off;
    }
}

typedef struct sm_job {
    const float *x;
    float *y;
    int64_t n, inner;
    int kind;
} sm_job;

static TERN_INLINE void softmax_rows_impl(void *arg, int64_t b, int64_t e)
{
    const sm_job *j = arg;
    for (int64_t r = b; r < e; r++)
        softmax_row_f32(j->x + r * j->n, j->y + r * j->n, j->n, j->kind);
}

TERN_MULTI_VOID(softmax_rows, (void *arg, int64_t b, int64_t e), (arg, b, e))

/* Softmax along a strided axis ([outer, n, inner], inner > 1): each item is
 * one outer index and a tile of up to SM_TILE lanes of inner, so the loops
 * run along contiguous memory and the per-lane max / sum fit on the stack. */
enum { SM_TILE = 64 };

static TERN_INLINE void softmax_tiles_impl(void *arg, int64_t b, int64_t e)
{
    const sm_job *j = arg;
    int64_t n = j->n, inner = j->inner, tiles = (inner + SM_TILE - 1) / SM_TILE;
    for (int64_t it = b; it < e; it++) {
        int64_t o = it / tiles, j0 = it % tiles * SM_TILE;
        int64_t w = inner - j0 < SM_TILE ? inner - j0 : SM_TILE;
        const float *x = j->x + o * n * inner + j0;
        float *y = j->y + o * n * inner + j0, m[SM_TILE], s[SM_TILE];
        for (int64_t l = 0; l < w; l++) {
            m[l] = -INFINITY;
            s[l] = 0;
        }
        for (int64_t k = 0; k < n; k++)
            for (int64_t l = 0; l < w; l++)
                m[l] = x[k * inner + l] > m[l] ? x[k * inner + l] : m[l];
        for (int64_t k = 0; k < n; k++)
            for (int64_t l = 0; l < w; l++) {
                float v = ru_expf(x[k * inner + l] - m[l]);
                y[k * inner + l] = v;
                s[l] += v;
            }
        if (j->kind == SM_SOFT) {
            for (int64_t l = 0; l < w; l++) s[l] = 1.0f / s[l];
            for (int64_t k = 0; k < n; k++)
                for (int64_t l = 0; l < w; l++) y[k * inner + l] *= s[l];
        } else {
            for (int64_t l = 0; l < w; l++) s[l] = m[l] + logf(s[l]);
            for (int64_t k = 0; k < n; k++)
                for (int64_t l = 0; l < w; l++) y[k * inner + l] = x[k * inner + l] - s[l];
        }
    }
}
TERN_MULTI_VOID(softmax_tiles, (void *arg, int64_t b, int64_t e), (arg, b, e))

/* Reference kernel over [outer, n, inner] in double. */
static void softmax_ref(const double *x, double *y, int64_t outer, int64_t n, int64_t inner,
                        int kind)
{
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            const double *p = x + o * n * inner + j;
            double *q = y + o * n * inner + j;
            int64_t best = 0; /* first maximum; a NaN input reaches every output through s */
            for (int64_t k = 1; k < n; k++)
                if (p[k * inner] > p[best * inner]) best = k;
            if (kind == SM_HARD) {
                for (int64_t k = 0; k < n; k++) q[k * inner] = k == best ? 1.0 : 0.0;
                continue;
            }
            double m = p[best * inner], s = 0;
            for (int64_t k = 0; k < n; k++) s += exp(p[k * inner] - m);
            for (int64_t k = 0; k < n; k++) {
                double v = p[k * inner] - m;
                q[k * inner] = kind == SM_SOFT ? exp(v) / s : v - log(s);
            }
        }
}

static tern_status *softmax_generic(op_ctx *c, int kind)
{
    TERN_TRY(ru_need_float(c, 0));
    const tern_tensor *x = c->in[0];
    int axis;
    TERN_TRY(op_axis(c, op_attr_int(c, "axis", c->opset < 13 ? 1 : -1), x->rank, &axis));
    int64_t outer = ru_prod(x->dims, 0, axis), n, inner;
    if (c->opset < 13) {
        n = ru_prod(x->dims, axis, x->rank);
        inner = 1;
    } else {
        n = x->rank ? x->dims[axis] : 1;
        inner = ru_prod(x->dims, axis + 1, x->rank);
    }
    if (kind == SM_SOFT && inner == 1) {
        bool done;
        TERN_TRY(dnn_softmax_run(c, (dnn_cache *)c->state, outer, n, &done));
        if (done) return NULL;
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, x->dims, &y));
    if (x->numel == 0) return NULL;
    if (x->dtype == TERN_FLOAT && inner == 1) {
        sm_job j = {x->data, y->data, n, 1, kind};
        tpool_for(c->pool, outer, ru_grain(n * 8), softmax_rows, &j);
        return NULL;
    }
    if (x->dtype == TERN_FLOAT && kind != SM_HARD) {
        sm_job j = {x->data, y->data, n, inner, kind};
        int64_t tiles = (inner + SM_TILE - 1) / SM_TILE;
        tpool_for(c->pool, outer * tiles, ru_grain(n * SM_TILE * 8), softmax_tiles, &j);
        return NULL;
    }
    const double *xd;
    double *yd;
    TERN_TRY(ru_load_f64(c, x, &xd));
    TERN_TRY(ru_work_f64(c, y, &yd));
    softmax_ref(xd, yd, outer, n, inner, kind);
    ru_store_f64(y, yd);
    return NULL;
}

tern_status *norm_softmax(op_ctx *c)
{
    return softmax_generic(c, SM_SOFT);
}
tern_status *norm_log_softmax(op_ctx *c)
{
    return softmax_generic(c, SM_LOG);
}
tern_status *norm_hardmax(op_ctx *c)
{
    return softmax_generic(c, SM_HARD);
}

/* ---- losses ------------------------------------------------------------ */

enum { LOSS_NONE, LOSS_SUM, LOSS_MEAN };

/* Checks the shared inputs: scores [N, C, d1..dk], target [N, d1..dk] of
 * int32/int64, optional weight [C]; reads the attributes. */
typedef struct loss_args {
    const tern_tensor *x, *target, *weight;
    int64_t n, cls, d; /* N, C and the product of d1..dk */
    int reduction;
    bool has_ii;
    int64_t ii;
} loss_args;

static tern_status *loss_args_read(op_ctx *c, loss_args *a)
{
    TERN_TRY(ru_need_float(c, 0));
    TERN_TRY(op_need_input(c, 1));
    a->x = c->in[0];
    a->target = c->in[1];
    a->weight = c->n_in > 2 ? c->in[2] : NULL;
    const tern_tensor *x = a->x, *t = a->target;
    if (x->rank < 2) return op_error(c, "input must have shape [N, C, ...], got rank %d", x->rank);
    if (t->kind != TENSOR_DENSE || (t->dtype != TERN_INT32 && t->dtype != TERN_INT64))
        return op_error(c, "target must be int32 or int64");
    bool ok = t->rank == x->rank - 1 && t->dims[0] == x->dims[0];
    for (int i = 1; ok && i < t->rank; i++) ok = t->dims[i] == x->dims[i + 1];
    if (!ok) {
        char xs[160], ts[160];
        return op_error(c, "target shape %s does not match input shape %s",
                        shape_str(t->rank, t->dims, ts, sizeof ts),
                        shape_str(x->rank, x->dims, xs, sizeof xs));
    }
    a->n = x->dims[0];
    a->cls = x->dims[1];
    a->d = ru_prod(x->dims, 2, x->rank);
    if (a->weight && (a->weight->kind != TENSOR_DENSE || !dtype_is_float(a->weight->dtype) ||
                      a->weight->rank != 1 || a->weight->dims[0] != a->cls))
        return op_error(c, "weight must be a float tensor of shape [%lld]", (long long)a->cls);
    const char *r = op_attr_str(c, "reduction", "mean");
    if (strcmp(r, "none") == 0)
        a->reduction = LOSS_NONE;
    else if (strcmp(r, "sum") == 0)
        a->reduction = LOSS_SUM;
    else if (strcmp(r, "mean") == 0)
        a->reduction = LOSS_MEAN;
    else
        return op_error(c, "unknown reduction '%s'", r);
    const op_attr *ii = op_attr_get(c, "ignore_index");
    a->has_ii = ii && ii->type == ATTR_INT;
    a->ii = a->has_ii ? ii->i : 0;
    return NULL;
}

/* Output 0 from log-probabilities logp [N, C, D]. */
static tern_status *nll_from_logp(op_ctx *c, const loss_args *a, const double *logp)
{
    const tern_tensor *t = a->target;
    tern_tensor *out;
    if (a->reduction == LOSS_NONE)
        TERN_TRY(op_out(c, 0, a->x->dtype, t->rank, t->dims, &out));
    else
        TERN_TRY(op_out(c, 0, a->x->dtype, 0, NULL, &out));
    double *loss = NULL;
    if (a->reduction == LOSS_NONE) TERN_TRY(ru_work_f64(c, out, &loss));
    double total = 0, wsum = 0;
    for (int64_t i = 0; i < a->n; i++)
        for (int64_t k = 0; k < a->d; k++) {
            int64_t e = i * a->d + k, cls = op_get_i64(t, e);
            double l = 0, w = 0;
            if (!(a->has_ii && cls == a->ii)) {
                if (cls < 0 || cls >= a->cls)
                    return op_error(c, "target %lld is out of range [0, %lld)", (long long)cls,
                                    (long long)a->cls);
                w = a->weight ? op_get_f64(a->weight, cls) : 1.0;
                l = -logp[(i * a->cls + cls) * a->d + k] * w;
            }
            if (loss) loss[e] = l;
            total += l;
            wsum += w;
        }
    if (a->reduction == LOSS_NONE)
        ru_store_f64(out, loss);
    else
        dtype_set_f64(out->dtype, out->data, 0, a->reduction == LOSS_SUM ? total : total / wsum);
    return NULL;
}

tern_status *norm_nll_loss(op_ctx *c)
{
    loss_args a;
    TERN_TRY(loss_args_read(c, &a));
    const double *xd;
    TERN_TRY(ru_load_f64(c, a.x, &xd));
    return nll_from_logp(c, &a, xd);
}

tern_status *norm_sce_loss(op_ctx *c)
{
    loss_args a;
    TERN_TRY(loss_args_read(c, &a));
    const double *xd;
    double *logp;
    TERN_TRY(ru_load_f64(c, a.x, &xd));
    tern_tensor *lp = NULL;
    if (op_out_used(c, 1)) {
        TERN_TRY(op_out(c, 1, a.x->dtype, a.x->rank, a.x->dims, &lp));
        TERN_TRY(ru_work_f64(c, lp, &logp));
    } else {
        TERN_TRY(
            op_scratch(c, (size_t)(a.x->numel ? a.x->numel : 1) * sizeof(double), (void **)&logp));
    }
    softmax_ref(xd, logp, a.n, a.cls, a.d, SM_LOG);
    if (lp) ru_store_f64(lp, logp);
    return nll_from_logp(c, &a, logp);
}

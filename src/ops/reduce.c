/*
 * Operator family: reductions. ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/
 * LogSumExp/SumSquare, ArgMax/ArgMin, CumSum and TopK.
 *
 * The Reduce* ops share one engine. A reduction is planned once per call:
 * dimensions of size 1 are dropped and neighbouring dimensions that are both
 * reduced or both kept are merged, which leaves an alternating list. If the
 * list ends with a kept block of `inner` contiguous elements, every step of
 * the reduction adds a whole row of `inner` elements into `inner` accumulators
 * (a vectorisable loop); if it ends with a reduced block, each output folds
 * that contiguous `run` at once (ReduceMean over the last axis in BERT is this
 * case, with nothing else to iterate). The remaining reduced dimensions are
 * walked with an odometer, kept dimensions index the output rows, and rows are
 * split over the thread pool.
 *
 * Accumulation is in double for float types (float32 read directly, float16
 * and bfloat16 converted first) and in 64-bit integers with wrap-around for
 * integer types, so int64 sums stay exact.
 */
#include <math.h>
#include <string.h>

#include "core/cpu.h"
#include "ops/op.h"
#include "ops/reduce_util.h"

/* ---- Reduce* ---------------------------------------------------------- */

enum red_kind {
    RK_SUM,
    RK_MEAN,
    RK_MAX,
    RK_MIN,
    RK_PROD,
    RK_L1,
    RK_L2,
    RK_LOGSUM,
    RK_LOGSUMEXP,
    RK_SUMSQ,
};

typedef struct red_plan {
    int nk, nr; /* kept / reduced dims left to iterate */
    int64_t kdim[TERN_MAX_RANK], kstride[TERN_MAX_RANK];
    int64_t rdim[TERN_MAX_RANK], rstride[TERN_MAX_RANK];
    int64_t inner; /* trailing kept contiguous block, 1 if the last dim is reduced */
    int64_t run;   /* trailing reduced contiguous block when inner == 1 */
    int64_t rows;  /* product of kdim; the output has rows * inner elements */
    int64_t count; /* input elements folded into each output */
} red_plan;

static void plan_build(red_plan *p, int rank, const int64_t *dims, const bool *red)
{
    int64_t md[TERN_MAX_RANK], ms[TERN_MAX_RANK];
    bool mr[TERN_MAX_RANK];
    int m = 0;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 1) continue;
        if (m > 0 && mr[m - 1] == red[i]) {
            md[m - 1] *= dims[i];
        } else {
            md[m] = dims[i];
            mr[m++] = red[i];
        }
    }
    int64_t s = 1;
    for (int i = m - 1; i >= 0; i--) {
        ms[i] = s;
        s *= md[i];
    }
    p->inner = p->run = 1;
    if (m > 0 && !mr[m - 1])
        p->inner = md[--m];
    else if (m > 0)
        p->run = md[--m];
    p->nk = p->nr = 0;
    p->rows = 1;
    p->count = p->run;
    for (int i = 0; i < m; i++) {
        if (mr[i]) {
            p->rdim[p->nr] = md[i];
            p->rstride[p->nr++] = ms[i];
            p->count *= md[i];
        } else {
            p->kdim[p->nk] = md[i];
            p->kstride[p->nk++] = ms[i];
            p->rows *= md[i];
        }
    }
}

/* Accumulator start values; LogSumExp keeps (running max, sum of exp). */
static double red_init(int kind)
{
    switch (kind) {
    case RK_PROD: return 1;
    case RK_MAX:
    case RK_LOGSUMEXP: return -INFINITY;
    case RK_MIN: return INFINITY;
    default: return 0;
    }
}

static double red_finish(int kind, double a, double a2, int64_t count)
{
    switch (kind) {
    case RK_MEAN: return a / (double)count;
    case RK_L2: return sqrt(a);
    case RK_LOGSUM: return log(a);
    case RK_LOGSUMEXP: return a + log(a2);
    default: return a;
    }
}

/* One step of the online log-sum-exp: (m, s) represents m + log(s). */
static inline void lse_step(double v, double *m, double *s)
{
    if (v == -INFINITY) return;
    if (v > *m) {
        *s = *s * exp(*m - v) + 1;
        *m = v;
    } else {
        *s += exp(v - *m);
    }
}

static inline double max_nan(double a, double v)
{
    return (v > a || v != v) ? v : a;
}
static inline double min_nan(double a, double v)
{
    return (v < a || v != v) ? v : a;
}

/* fold_run_T: folds n contiguous elements into one accumulator.
 * fold_rows_T: folds n contiguous elements into n accumulators. */
#define DEF_FOLD(T, SFX, SUM)                                                                      \
    static TERN_INLINE void fold_run_##SFX(int kind, const T *x, int64_t n, double *a, double *a2)             \
    {                                                                                              \
        double s = *a;                                                                             \
        switch (kind) {                                                                            \
        case RK_SUM:                                                                               \
        case RK_MEAN:                                                                              \
        case RK_LOGSUM: s += SUM(x, n); break;                                                     \
        case RK_L1:                                                                                \
            for (int64_t i = 0; i < n; i++) s += fabs((double)x[i]);                               \
            break;                                                                                 \
        case RK_L2:                                                                                \
        case RK_SUMSQ:                                                                             \
            for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];                              \
            break;                                                                                 \
        case RK_PROD:                                                                              \
            for (int64_t i = 0; i < n; i++) s *= x[i];                                             \
            break;                                                                                 \
        case RK_MAX:                                                                               \
            for (int64_t i = 0; i < n; i++) s = max_nan(s, x[i]);                                  \
            break;                                                                                 \
        case RK_MIN:                                                                               \
            for (int64_t i = 0; i < n; i++) s = min_nan(s, x[i]);                                  \
            break;                                                                                 \
        case RK_LOGSUMEXP:                                                                         \
            for (int64_t i = 0; i < n; i++) lse_step(x[i], &s, a2);                                \
            break;                                                                                 \
        }                                                                                          \
        *a = s;                                                                                    \
    }                                                                                              \
    static TERN_INLINE void fold_rows_##SFX(int kind, const T *x, int64_t n, double *a, double *a2)            \
    {                                                                                              \
        switch (kind) {                                                                            \
        case RK_SUM:                                                                               \
        case RK_MEAN:                                                                              \
        case RK_LOGSUM:                                                                            \
            for (int64_t i = 0; i < n; i++) a[i] += x[i];                                          \
            break;                                                                                 \
        case RK_L1:                                                                                \
            for (int64_t i = 0; i < n; i++) a[i] += fabs((double)x[i]);                            \
            break;                                                                                 \
        case RK_L2:                                                                                \
        case RK_SUMSQ:                                                                             \
            for (int64_t i = 0; i < n; i++) a[i] += (double)x[i] * x[i];                           \
            break;                                                                                 \
        case RK_PROD:                                                                              \
            for (int64_t i = 0; i < n; i++) a[i] *= x[i];                                          \
            break;                                                                                 \
        case RK_MAX:                                                                               \
            for (int64_t i = 0; i < n; i++) a[i] = max_nan(a[i], x[i]);                            \
            break;                                                                                 \
        case RK_MIN:                                                                               \
            for (int64_t i = 0; i < n; i++) a[i] = min_nan(a[i], x[i]);                            \
            break;                                                                                 \
        case RK_LOGSUMEXP:                                                                         \
            for (int64_t i = 0; i < n; i++) lse_step(x[i], &a[i], &a2[i]);                         \
            break;                                                                                 \
        }                                                                                          \
    }

static TERN_INLINE double sum_f64(const double *x, int64_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i];
        s1 += x[i + 1];
        s2 += x[i + 2];
        s3 += x[i + 3];
    }
    for (; i < n; i++) s0 += x[i];
    return (s0 + s1) + (s2 + s3);
}

DEF_FOLD(float, f32, ru_sum_f32)
DEF_FOLD(double, f64, sum_f64)

/* Integer folds, wrapping like the C unsigned types (no signed overflow). */
static inline uint64_t ifold(int kind, uint64_t a, int64_t v)
{
    uint64_t u = (uint64_t)v;
    switch (kind) {
    case RK_PROD: return a * u;
    case RK_L1: return a + (v < 0 ? 0 - u : u);
    case RK_SUMSQ: return a + u * u;
    case RK_MAX: return v > (int64_t)a ? u : a;
    case RK_MIN: return v < (int64_t)a ? u : a;
    default: return a + u;
    }
}

static uint64_t red_init_int(int kind)
{
    switch (kind) {
    case RK_PROD: return 1;
    case RK_MAX: return (uint64_t)INT64_MIN;
    case RK_MIN: return (uint64_t)INT64_MAX;
    default: return 0;
    }
}

enum { XT_F32, XT_F64, XT_I64 };

typedef struct red_job {
    const red_plan *p;
    int kind, xt;
    const void *x;
    double *acc, *acc2; /* float types: rows * inner accumulators */
    uint64_t *iacc;     /* integer types */
} red_job;

static TERN_INLINE void red_rows_impl(void *arg, int64_t b, int64_t e)
{
    const red_job *j = arg;
    const red_plan *p = j->p;
    int64_t inner = p->inner;
    for (int64_t o = b; o < e; o++) {
        int64_t base = 0, r = o;
        for (int k = p->nk - 1; k >= 0; k--) {
            base += (r % p->kdim[k]) * p->kstride[k];
            r /= p->kdim[k];
        }
        double *a = j->acc ? j->acc + o * inner : NULL, *a2 = j->acc2 ? j->acc2 + o * inner : NULL;
        uint64_t *ia = j->iacc ? j->iacc + o * inner : NULL;
        for (int64_t i = 0; i < inner; i++) {
            if (a) a[i] = red_init(j->kind);
            if (a2) a2[i] = 0;
            if (ia) ia[i] = red_init_int(j->kind);
        }
        int64_t idx[TERN_MAX_RANK] = {0}, off = base;
        for (;;) {
            if (j->xt == XT_F32) {
                const float *x = (const float *)j->x + off;
                if (inner == 1)
                    fold_run_f32(j->kind, x, p->run, a, a2);
                else
                    fold_rows_f32(j->kind, x, inner, a, a2);
            } else if (j->xt == XT_F64) {
                const double *x = (const double *)j->x + off;
                if (inner == 1)
                    fold_run_f64(j->kind, x, p->run, a, a2);
                else
                    fold_rows_f64(j->kind, x, inner, a, a2);
            } else {
                const int64_t *x = (const int64_t *)j->x + off;
                if (inner == 1)
                    for (int64_t i = 0; i < p->run; i++) ia[0] = ifold(j->kind, ia[0], x[i]);
                else
                    for (int64_t i = 0; i < inner; i++) ia[i] = ifold(j->kind, ia[i], x[i]);
            }
            int k = p->nr - 1;
            for (; k >= 0; k--) {
                off += p->rstride[k];
                if (++idx[k] < p->rdim[k]) break;
                off -= idx[k] * p->rstride[k];
                idx[k] = 0;
            }
            if (k < 0) break;
        }
    }
}

/* AVX-512 measured 3x slower than AVX2 on ReduceSum over rows of 4096 */
TERN_MULTI_VOID_AVX2(red_rows, (void *arg, int64_t b, int64_t e), (arg, b, e))

/* Which axes to reduce: from the `axes` attribute, or from input 1 for
 * ReduceSum since opset 13 and every Reduce op since opset 18. */
static tern_status *reduce_axes(op_ctx *c, int rank, bool *red, bool *noop)
{
    bool from_input =
        c->opset >= 18 || (strcmp(c->node->op_type, "ReduceSum") == 0 && c->opset >= 13);
    const int64_t *axes = NULL;
    int64_t n = 0;
    if (from_input) {
        if (c->n_in > 1 && c->in[1]) {
            int64_t *v;
            TERN_TRY(op_read_ints(c, c->in[1], &v, &n));
            axes = v;
        }
    } else {
        n = op_attr_ints(c, "axes", &axes);
        if (n < 0) n = 0;
    }
    *noop = false;
    for (int i = 0; i < rank; i++) red[i] = n == 0;
    if (n == 0) {
        *noop = from_input && op_attr_int(c, "noop_with_empty_axes", 0) != 0;
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        int a;
        if (rank == 0 && (axes[i] == 0 || axes[i] == -1)) continue; /* a scalar's one axis */
        TERN_TRY(op_axis(c, axes[i], rank, &a));
        if (red[a]) return op_error(c, "axis %lld is listed twice", (long long)axes[i]);
        red[a] = true;
    }
    return NULL;
}

static tern_status *reduce_generic(op_ctx *c, int kind)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    tern_dtype dt = x->dtype;
    if (x->kind != TENSOR_DENSE || !(dtype_is_float(dt) || dtype_is_int(dt)))
        return op_error(c, "unsupported input type %s", tern_dtype_name(dt));
    bool red[TERN_MAX_RANK], noop;
    TERN_TRY(reduce_axes(c, x->rank, red, &noop));
    if (noop) return op_out_alias(c, 0, x, x->rank, x->dims);

    bool keep = op_attr_int(c, "keepdims", 1) != 0;
    int orank = 0;
    int64_t odims[TERN_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        if (!red[i])
            odims[orank++] = x->dims[i];
        else if (keep)
            odims[orank++] = 1;
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, dt, orank, odims, &y));
    if (y->numel == 0) return NULL;

    red_plan p;
    plan_build(&p, x->rank, x->dims, red);
    if (x->numel == 0) p.count = 0; /* an empty axis is reduced: outputs are empty folds */

    bool is_int = dtype_is_int(dt) && kind != RK_L2 && kind != RK_LOGSUM && kind != RK_LOGSUMEXP;
    if (is_int && kind == RK_L1 && !dtype_is_signed(dt)) kind = RK_SUM;
    /* uint64 max/min: flip the top bit so that int64 order is unsigned order */
    uint64_t flip = (dt == TERN_UINT64 && (kind == RK_MAX || kind == RK_MIN)) ? 1ull << 63 : 0;

    red_job j = {.p = &p, .kind = kind};
    size_t nacc = (size_t)y->numel;
    if (is_int) {
        int64_t *xi;
        TERN_TRY(op_scratch(c, (size_t)(x->numel ? x->numel : 1) * 8, (void **)&xi));
        for (int64_t i = 0; i < x->numel; i++) xi[i] = (int64_t)((uint64_t)op_get_i64(x, i) ^ flip);
        j.xt = XT_I64;
        j.x = xi;
        TERN_TRY(op_scratch(c, nacc * sizeof(uint64_t), (void **)&j.iacc));
    } else {
        if (dt == TERN_FLOAT) {
            j.xt = XT_F32;
            j.x = x->data;
        } else {
            const double *xd;
            TERN_TRY(ru_load_f64(c, x, &xd));
            j.xt = XT_F64;
            j.x = xd;
        }
        TERN_TRY(op_scratch(c, nacc * sizeof(double), (void **)&j.acc));
        if (kind == RK_LOGSUMEXP) TERN_TRY(op_scratch(c, nacc * sizeof(double), (void **)&j.acc2));
    }

    if (x->numel == 0) {
        for (int64_t i = 0; i < y->numel; i++) {
            if (j.acc) j.acc[i] = red_init(kind);
            if (j.acc2) j.acc2[i] = 0;
            if (j.iacc) j.iacc[i] = red_init_int(kind);
        }
    } else {
        tpool_for(c->pool, p.rows, ru_grain(p.count * p.inner), red_rows, &j);
    }

    if (is_int) {
        for (int64_t i = 0; i < y->numel; i++) {
            uint64_t u = j.iacc[i] ^ flip;
            int64_t v = (int64_t)u;
            if (kind == RK_MEAN) v = p.count ? v / p.count : 0;
            dtype_set_i64(dt, y->data, i, v);
        }
    } else if (dt == TERN_FLOAT) {
        float *yd = y->data;
        for (int64_t i = 0; i < y->numel; i++)
            yd[i] = (float)red_finish(kind, j.acc[i], j.acc2 ? j.acc2[i] : 0, p.count);
    } else {
        for (int64_t i = 0; i < y->numel; i++)
            dtype_set_f64(dt, y->data, i,
                          red_finish(kind, j.acc[i], j.acc2 ? j.acc2[i] : 0, p.count));
    }
    return NULL;
}

#define DEF_REDUCE(NAME, KIND)                                                                     \
    static tern_status *op_##NAME(op_ctx *c)                                                       \
    {                                                                                              \
        return reduce_generic(c, KIND);                                                            \
    }
DEF_REDUCE(reduce_sum, RK_SUM)
DEF_REDUCE(reduce_mean, RK_MEAN)
DEF_REDUCE(reduce_max, RK_MAX)
DEF_REDUCE(reduce_min, RK_MIN)
DEF_REDUCE(reduce_prod, RK_PROD)
DEF_REDUCE(reduce_l1, RK_L1)
DEF_REDUCE(reduce_l2, RK_L2)
DEF_REDUCE(reduce_log_sum, RK_LOGSUM)
DEF_REDUCE(reduce_log_sum_exp, RK_LOGSUMEXP)
DEF_REDUCE(reduce_sum_square, RK_SUMSQ)

/* ---- ArgMax / ArgMin -------------------------------------------------- */

/* For each of outer * inner lanes, the index along n of the extreme value.
 * Ties keep the first index unless `last`; a NaN wins (as numpy). */
#define DEF_ARG(T, SFX)                                                                            \
    static void arg_##SFX(const T *x, int64_t outer, int64_t n, int64_t inner, bool is_max,        \
                          bool last, int64_t *out)                                                 \
    {                                                                                              \
        for (int64_t o = 0; o < outer; o++)                                                        \
            for (int64_t j = 0; j < inner; j++) {                                                  \
                const T *p = x + o * n * inner + j;                                                \
                T best = p[0];                                                                     \
                int64_t bi = 0;                                                                    \
                for (int64_t k = 1; k < n && best == best; k++) {                                  \
                    T v = p[k * inner];                                                            \
                    bool better = v != v || (is_max ? v > best : v < best) || (last && v == best); \
                    if (better) {                                                                  \
                        best = v;                                                                  \
                        bi = k;                                                                    \
                    }                                                                              \
                }                                                                                  \
                out[o * inner + j] = bi;                                                           \
            }                                                                                      \
    }
DEF_ARG(float, f32)
DEF_ARG(double, f64)
DEF_ARG(int64_t, i64)

static tern_status *arg_generic(op_ctx *c, bool is_max)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    tern_dtype dt = x->dtype;
    if (x->kind != TENSOR_DENSE || !(dtype_is_float(dt) || dtype_is_int(dt)))
        return op_error(c, "unsupported input type %s", tern_dtype_name(dt));
    int axis;
    TERN_TRY(op_axis(c, op_attr_int(c, "axis", 0), x->rank, &axis));
    bool keep = op_attr_int(c, "keepdims", 1) != 0;
    bool last = op_attr_int(c, "select_last_index", 0) != 0;
    int64_t n = x->rank ? x->dims[axis] : 1;
    if (n == 0) return op_error(c, "cannot take the arg-extreme of an empty axis");
    int orank = 0;
    int64_t odims[TERN_MAX_RANK];
    for (int i = 0; i < x->rank; i++)
        if (i != axis)
            odims[orank++] = x->dims[i];
        else if (keep)
            odims[orank++] = 1;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_INT64, orank, odims, &y));
    if (y->numel == 0) return NULL;
    int64_t outer = ru_prod(x->dims, 0, axis), inner = ru_prod(x->dims, axis + 1, x->rank);
    if (dt == TERN_FLOAT) {
        arg_f32(x->data, outer, n, inner, is_max, last, y->data);
    } else if (dtype_is_float(dt)) {
        const double *xd;
        TERN_TRY(ru_load_f64(c, x, &xd));
        arg_f64(xd, outer, n, inner, is_max, last, y->data);
    } else {
        /* uint64 compares as int64 after flipping the top bit */
        uint64_t flip = dt == TERN_UINT64 ? 1ull << 63 : 0;
        int64_t *xi;
        TERN_TRY(op_scratch(c, (size_t)x->numel * 8, (void **)&xi));
        for (int64_t i = 0; i < x->numel; i++) xi[i] = (int64_t)((uint64_t)op_get_i64(x, i) ^ flip);
        arg_i64(xi, outer, n, inner, is_max, last, y->data);
    }
    return NULL;
}

static tern_status *op_argmax(op_ctx *c)
{
    return arg_generic(c, true);
}
static tern_status *op_argmin(op_ctx *c)
{
    return arg_generic(c, false);
}

/* ---- CumSum ----------------------------------------------------------- */

/* y over [outer, n, inner]: running sums along n, a row of inner at a time. */
#define DEF_CUMSUM(T, SFX)                                                                         \
    static void cumsum_##SFX(const T *x, T *y, int64_t outer, int64_t n, int64_t inner, bool excl, \
                             bool rev)                                                             \
    {                                                                                              \
        for (int64_t o = 0; o < outer; o++) {                                                      \
            const T *xo = x + o * n * inner;                                                       \
            T *yo = y + o * n * inner;                                                             \
            for (int64_t s = 0; s < n; s++) {                                                      \
                int64_t k = rev ? n - 1 - s : s, prev = rev ? k + 1 : k - 1;                       \
                T *yk = yo + k * inner;                                                            \
                const T *yp = yo + prev * inner, *xk = xo + k * inner, *xp = xo + prev * inner;    \
                if (s == 0)                                                                        \
                    for (int64_t j = 0; j < inner; j++) yk[j] = excl ? 0 : xk[j];                  \
                else if (excl)                                                                     \
                    for (int64_t j = 0; j < inner; j++) yk[j] = yp[j] + xp[j];                     \
                else                                                                               \
                    for (int64_t j = 0; j < inner; j++) yk[j] = yp[j] + xk[j];                     \
            }                                                                                      \
        }                                                                                          \
    }
DEF_CUMSUM(float, f32)
DEF_CUMSUM(double, f64)
DEF_CUMSUM(uint64_t, u64) /* every integer type: wraps without undefined behaviour */

static tern_status *op_cumsum(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *x = c->in[0];
    tern_dtype dt = x->dtype;
    if (x->kind != TENSOR_DENSE || !(dtype_is_float(dt) || dtype_is_int(dt)))
        return op_error(c, "unsupported input type %s", tern_dtype_name(dt));
    int64_t a = 0;
    TERN_TRY(ru_scalar_i64(c, c->in[1], "axis", &a));
    int axis;
    TERN_TRY(op_axis(c, a, x->rank, &axis));
    bool excl = op_attr_int(c, "exclusive", 0) != 0, rev = op_attr_int(c, "reverse", 0) != 0;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, dt, x->rank, x->dims, &y));
    if (x->numel == 0) return NULL;
    int64_t outer = ru_prod(x->dims, 0, axis), n = x->rank ? x->dims[axis] : 1;
    int64_t inner = ru_prod(x->dims, axis + 1, x->rank);
    if (dt == TERN_FLOAT) {
        cumsum_f32(x->data, y->data, outer, n, inner, excl, rev);
    } else if (dtype_is_float(dt)) {
        const double *xd;
        double *yd;
        TERN_TRY(ru_load_f64(c, x, &xd));
        TERN_TRY(ru_work_f64(c, y, &yd));
        cumsum_f64(xd, yd, outer, n, inner, excl, rev);
        ru_store_f64(y, yd);
    } else {
        uint64_t *xu, *yu;
        TERN_TRY(op_scratch(c, (size_t)x->numel * 8, (void **)&xu));
        TERN_TRY(op_scratch(c, (size_t)x->numel * 8, (void **)&yu));
        for (int64_t i = 0; i < x->numel; i++) xu[i] = (uint64_t)op_get_i64(x, i);
        cumsum_u64(xu, yu, outer, n, inner, excl, rev);
        for (int64_t i = 0; i < x->numel; i++) dtype_set_i64(dt, y->data, i, (int64_t)yu[i]);
    }
    return NULL;
}

/* ---- TopK ------------------------------------------------------------- */

/* Each element becomes a key whose unsigned order is the numeric order
 * (NaN above +inf, as numpy sorts it); candidates are sorted by key, ties by
 * the lower index, so the order is total and the result deterministic. */
typedef struct topk_item {
    uint64_t key;
    int64_t idx;
} topk_item;

static uint64_t key_f64(double d)
{
    if (d != d) d = NAN;
    if (d == 0) d = 0; /* -0 ties with +0 */
    uint64_t b;
    memcpy(&b, &d, 8);
    return (b >> 63) ? ~b : b | (1ull << 63);
}

static bool topk_before(const topk_item *a, const topk_item *b, bool largest)
{
    if (a->key != b->key) return largest ? a->key > b->key : a->key < b->key;
    return a->idx < b->idx;
}

/* Bottom-up merge sort of v[0..n) using tmp[0..n). */
static void topk_sort(topk_item *v, topk_item *tmp, int64_t n, bool largest)
{
    topk_item *src = v, *dst = tmp;
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = topk_before(&src[j], &src[i], largest) ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        topk_item *t = src;
        src = dst;
        dst = t;
    }
    if (src != v) memcpy(v, src, (size_t)n * sizeof *v);
}

static tern_status *op_topk(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    tern_dtype dt = x->dtype;
    if (x->kind != TENSOR_DENSE || !(dtype_is_float(dt) || dtype_is_int(dt)))
        return op_error(c, "unsupported input type %s", tern_dtype_name(dt));
    if (x->rank == 0) return op_error(c, "input must have rank >= 1");
    int64_t k = 0;
    if (c->opset < 10) {
        k = op_attr_int(c, "k", -1);
    } else {
        TERN_TRY(op_need_input(c, 1));
        TERN_TRY(ru_scalar_i64(c, c->in[1], "K", &k));
    }
    int axis;
    TERN_TRY(op_axis(c, op_attr_int(c, "axis", -1), x->rank, &axis));
    bool largest = op_attr_int(c, "largest", 1) != 0;
    int64_t n = x->dims[axis];
    if (k < 0 || k > n)
        return op_error(c, "k = %lld is out of range for axis of size %lld", (long long)k,
                        (long long)n);
    int64_t dims[TERN_MAX_RANK];
    memcpy(dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
    dims[axis] = k;
    tern_tensor *vals, *idxs;
    TERN_TRY(op_out(c, 0, dt, x->rank, dims, &vals));
    TERN_TRY(op_out(c, 1, TERN_INT64, x->rank, dims, &idxs));
    if (vals->numel == 0) return NULL;

    int64_t outer = ru_prod(x->dims, 0, axis), inner = ru_prod(x->dims, axis + 1, x->rank);
    size_t es = tern_dtype_size(dt);
    topk_item *v, *tmp;
    TERN_TRY(op_scratch(c, (size_t)n * sizeof *v, (void **)&v));
    TERN_TRY(op_scratch(c, (size_t)n * sizeof *v, (void **)&tmp));
    const char *xb = x->data;
    char *vb = vals->data;
    int64_t *ib = idxs->data;
    bool is_signed = dtype_is_signed(dt);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            int64_t base = o * n * inner + j;
            for (int64_t i = 0; i < n; i++) {
                int64_t e = base + i * inner;
                uint64_t key;
                if (dt == TERN_FLOAT)
                    key = key_f64(((const float *)x->data)[e]);
                else if (dtype_is_float(dt))
                    key = key_f64(op_get_f64(x, e));
                else
                    key = (uint64_t)op_get_i64(x, e) ^ (is_signed ? 1ull << 63 : 0);
                v[i] = (topk_item){key, i};
            }
            topk_sort(v, tmp, n, largest);
            int64_t obase = o * k * inner + j;
            for (int64_t i = 0; i < k; i++) {
                int64_t oe = obase + i * inner;
                ib[oe] = v[i].idx;
                memcpy(vb + (size_t)oe * es, xb + (size_t)(base + v[i].idx * inner) * es, es);
            }
        }
    return NULL;
}

const op_def ops_reduce[] = {
    {"", "ReduceSum", 1, 17, op_reduce_sum},
    {"", "ReduceMean", 1, 17, op_reduce_mean},
    {"", "ReduceMax", 1, 17, op_reduce_max},
    {"", "ReduceMin", 1, 17, op_reduce_min},
    {"", "ReduceProd", 1, 17, op_reduce_prod},
    {"", "ReduceL1", 1, 17, op_reduce_l1},
    {"", "ReduceL2", 1, 17, op_reduce_l2},
    {"", "ReduceLogSum", 1, 17, op_reduce_log_sum},
    {"", "ReduceLogSumExp", 1, 17, op_reduce_log_sum_exp},
    {"", "ReduceSumSquare", 1, 17, op_reduce_sum_square},
    {"", "ArgMax", 1, 17, op_argmax},
    {"", "ArgMin", 1, 17, op_argmin},
    {"", "CumSum", 11, 17, op_cumsum},
    {"", "TopK", 1, 17, op_topk},
    {0},
};

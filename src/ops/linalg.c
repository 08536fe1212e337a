/*
 * Operator family: linear algebra. MatMul and Gemm (float32 through the
 * packed SGEMM of linalg_gemm.c, other types through a plain reference
 * loop), their integer and quantised forms MatMulInteger and QLinearMatMul,
 * Einsum (linalg_einsum.c) and Det.
 *
 * MatMul follows numpy: 1-D operands gain a unit dimension that is dropped
 * from the result, leading "batch" dimensions broadcast. mm_plan turns that
 * into (m, n, k), a batch count and the element offset of each batch item's
 * A and B matrix, which every MatMul-shaped kernel here then loops over.
 *
 * When B is a float32 2-D initializer (the weights of a layer), MatMul and
 * Gemm pack it once at load (mm_prepare) into SGEMM's packed-B layout;
 * each run then packs only A.
 */
#include <math.h>
#include <string.h>

#include "ops/linalg_gemm.h"
#include "ops/linalg_ops.h"
#include "ops/op.h"

typedef struct mm_plan {
    int64_t m, n, k, batch;
    int64_t *a_off, *b_off; /* element offset of batch item i's matrices */
    bool flat;              /* B shared and A items contiguous: one GEMM of batch*m rows */
    int rank;               /* output shape */
    int64_t dims[TERN_MAX_RANK];
} mm_plan;

static tern_status *mm_plan_make(op_ctx *c, const tern_tensor *a, const tern_tensor *b, mm_plan *p)
{
    if (a->rank < 1 || b->rank < 1)
        return op_error(c, "inputs must have rank >= 1, got ranks %d and %d", a->rank, b->rank);
    p->m = a->rank == 1 ? 1 : a->dims[a->rank - 2];
    p->k = a->dims[a->rank - 1];
    int64_t kb = b->rank == 1 ? b->dims[0] : b->dims[b->rank - 2];
    p->n = b->rank == 1 ? 1 : b->dims[b->rank - 1];
    if (p->k != kb) {
        char sa[160], sb[160];
        return op_error(c, "inner dimensions differ: A %s, B %s",
                        shape_str(a->rank, a->dims, sa, sizeof sa),
                        shape_str(b->rank, b->dims, sb, sizeof sb));
    }
    int ra = a->rank > 2 ? a->rank - 2 : 0, rb = b->rank > 2 ? b->rank - 2 : 0;
    int r = ra > rb ? ra : rb;
    int64_t as[TERN_MAX_RANK], bs[TERN_MAX_RANK], sa = p->m * p->k, sb = p->k * p->n;
    for (int i = r - 1; i >= 0; i--) {
        int64_t da = i >= r - ra ? a->dims[i - (r - ra)] : 1;
        int64_t db = i >= r - rb ? b->dims[i - (r - rb)] : 1;
        if (da != db && da != 1 && db != 1)
            return op_error(c, "batch dimensions %lld and %lld cannot be broadcast", (long long)da,
                            (long long)db);
        p->dims[i] = da == 1 ? db : da;
        as[i] = da == 1 ? 0 : sa;
        bs[i] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
    }
    p->rank = r;
    if (a->rank > 1) p->dims[p->rank++] = p->m;
    if (b->rank > 1) p->dims[p->rank++] = p->n;
    p->batch = shape_numel(r, p->dims);
    if (p->batch < 0 || shape_numel(p->rank, p->dims) < 0)
        return op_error(c, "output shape overflows");

    size_t nb = (size_t)(p->batch ? p->batch : 1);
    TERN_TRY(op_scratch(c, 2 * nb * sizeof(int64_t), (void **)&p->a_off));
    p->b_off = p->a_off + nb;
    int64_t idx[TERN_MAX_RANK] = {0}, ao = 0, bo = 0;
    p->flat = true;
    for (int64_t t = 0; t < p->batch; t++) {
        p->a_off[t] = ao;
        p->b_off[t] = bo;
        if (bo != 0 || ao != t * p->m * p->k) p->flat = false;
        for (int d = r - 1; d >= 0; d--) { /* odometer over the batch dims */
            ao += as[d];
            bo += bs[d];
            if (++idx[d] < p->dims[d]) break;
            ao -= as[d] * idx[d];
            bo -= bs[d] * idx[d];
            idx[d] = 0;
        }
    }
    return NULL;
}

/* ---- float32 through SGEMM --------------------------------------------- */

typedef struct mm_f32_job {
    const mm_plan *p;
    const float *a, *b;
    float *y;
    int64_t a_rs, a_cs, b_rs, b_cs;
    float alpha, beta;
} mm_f32_job;

static void mm_f32_small_range(void *arg, int64_t begin, int64_t end)
{
    const mm_f32_job *j = arg;
    const mm_plan *p = j->p;
    for (int64_t t = begin; t < end; t++)
        sgemm(NULL, p->m, p->n, p->k, j->alpha, j->a + p->a_off[t], j->a_rs, j->a_cs,
              j->b + p->b_off[t], j->b_rs, j->b_cs, j->beta, j->y + t * p->m * p->n, p->n, NULL);
}

/* Y[t] = alpha * A[t] B[t] + beta * Y[t] for every batch item. pb, if not
 * NULL, is B packed by mm_prepare (B is then one matrix for every item). */
static tern_status *mm_f32(op_ctx *c, const mm_plan *p, const float *a, int64_t a_rs, int64_t a_cs,
                           const float *b, int64_t b_rs, int64_t b_cs, const float *pb, float alpha,
                           float beta, float *y)
{
    mm_f32_job j = {p, a, b, y, a_rs, a_cs, b_rs, b_cs, alpha, beta};
    if (p->batch == 0 || p->m == 0 || p->n == 0) return NULL;
    int64_t m = p->m;
    if (p->flat && a_cs == 1 && a_rs == p->k)
        m *= p->batch; /* stack the batch into rows */
    else if (p->batch > 1 && sgemm_is_small(p->m, p->n, p->k)) {
        tpool_for(c->pool, p->batch, 1, mm_f32_small_range, &j);
        return NULL;
    }
    if (pb && m == p->m * p->batch && !sgemm_is_small(m, p->n, p->k)) { /* one GEMM for all */
        float *pa;
        TERN_TRY(op_scratch(c, sgemm_pa_floats(m, p->k) * sizeof(float), (void **)&pa));
        sgemm_pack_a(c->pool, m, p->k, a, a_rs, a_cs, pa);
        sgemm_out o = {y, p->n, false, NULL};
        sgemm_prepacked(c->pool, m, p->n, p->k, alpha, pa, pb, beta, &o);
        return NULL;
    }
    float *work = NULL;
    if (!sgemm_is_small(m, p->n, p->k))
        TERN_TRY(op_scratch(c, sgemm_work_floats(m, p->n, p->k) * sizeof(float), (void **)&work));
    if (m != p->m) {
        sgemm(c->pool, m, p->n, p->k, alpha, a, a_rs, a_cs, b, b_rs, b_cs, beta, y, p->n, work);
        return NULL;
    }
    for (int64_t t = 0; t < p->batch; t++)
        sgemm(c->pool, m, p->n, p->k, alpha, a + p->a_off[t], a_rs, a_cs, b + p->b_off[t], b_rs,
              b_cs, beta, y + t * m * p->n, p->n, work);
    return NULL;
}

/* ---- reference loop for the other types -------------------------------- */

/* Y[t] = alpha * A[t] B[t] + beta * Y[t] in double (float types) or in
 * wrapping 64-bit integers (integer types; alpha/beta then apply in double
 * only when they are not 1 and 0/1). Y already holds the C term if beta != 0. */
static void mm_generic(const mm_plan *p, const tern_tensor *a, int64_t a_rs, int64_t a_cs,
                       const tern_tensor *b, int64_t b_rs, int64_t b_cs, double alpha, double beta,
                       tern_tensor *y)
{
    bool fl = dtype_is_float(y->dtype);
    bool exact = alpha == 1.0 && (beta == 0.0 || beta == 1.0);
    for (int64_t t = 0; t < p->batch; t++)
        for (int64_t i = 0; i < p->m; i++)
            for (int64_t j = 0; j < p->n; j++) {
                int64_t ai = p->a_off[t] + i * a_rs, bj = p->b_off[t] + j * b_cs;
                int64_t yi = (t * p->m + i) * p->n + j;
                if (fl) {
                    double acc = 0;
                    for (int64_t q = 0; q < p->k; q++)
                        acc += op_get_f64(a, ai + q * a_cs) * op_get_f64(b, bj + q * b_rs);
                    double v = alpha * acc + (beta != 0.0 ? beta * op_get_f64(y, yi) : 0.0);
                    dtype_set_f64(y->dtype, y->data, yi, v);
                    continue;
                }
                uint64_t acc = 0;
                for (int64_t q = 0; q < p->k; q++)
                    acc += (uint64_t)op_get_i64(a, ai + q * a_cs) *
                           (uint64_t)op_get_i64(b, bj + q * b_rs);
                if (exact) {
                    if (beta != 0.0) acc += (uint64_t)op_get_i64(y, yi);
                    dtype_set_i64(y->dtype, y->data, yi, (int64_t)acc);
                } else {
                    double v = alpha * (double)(int64_t)acc;
                    if (beta != 0.0) v += beta * op_get_f64(y, yi);
                    dtype_set_f64(y->dtype, y->data, yi, v);
                }
            }
}

static bool mm_type_ok(tern_dtype dt)
{
    return dt == TERN_FLOAT || dt == TERN_DOUBLE || dt == TERN_FLOAT16 || dt == TERN_BFLOAT16 ||
           dt == TERN_INT32 || dt == TERN_INT64 || dt == TERN_UINT32 || dt == TERN_UINT64;
}

static tern_status *check_pair(op_ctx *c, const tern_tensor *a, const tern_tensor *b)
{
    if (a->kind != TENSOR_DENSE || b->kind != TENSOR_DENSE)
        return op_error(c, "inputs must be tensors");
    if (a->dtype != b->dtype)
        return op_error(c, "input types differ: %s and %s", tern_dtype_name(a->dtype),
                        tern_dtype_name(b->dtype));
    if (!mm_type_ok(a->dtype)) return op_error(c, "unsupported type %s", tern_dtype_name(a->dtype));
    return NULL;
}

/* ---- B packed at load ------------------------------------------------------ */

/* The state of a MatMul or Gemm whose B is a float32 2-D initializer. It
 * holds for the tensor it was packed from only: an initializer that is also
 * a graph input may be replaced by the caller's value. */
typedef struct mm_prepared {
    const tern_tensor *b;
    const float *pb; /* sgemm_pack_b_all of B as [k x n] */
} mm_prepared;

/* Packs input 1 (B, transposed if trans) when it is a constant float32
 * matrix; anything else is left to the general path. */
static tern_status *mm_prepare(op_prep *p, bool trans, const void **state)
{
    const tern_tensor *b = p->n_in > 1 ? p->in[1] : NULL;
    if (!b || b->kind != TENSOR_DENSE || b->dtype != TERN_FLOAT || b->rank != 2) return NULL;
    int64_t k = b->dims[trans ? 1 : 0], n = b->dims[trans ? 0 : 1];
    if (k == 0 || n == 0) return NULL;
    mm_prepared *s = op_prep_alloc(p, sizeof *s);
    float *pb = op_prep_alloc(p, sgemm_pb_all_floats(n, k) * sizeof(float));
    if (!s || !pb) return tern_error(TERN_ERR_NO_MEMORY, "out of memory packing B");
    sgemm_view v = {b->data, trans ? 1 : n, trans ? k : 1};
    sgemm_pack_b_all(n, k, sgemm_pack_view, &v, pb);
    *s = (mm_prepared){b, pb};
    *state = s;
    return NULL;
}

static tern_status *matmul_prepare(op_prep *p, const void **state)
{
    return mm_prepare(p, false, state);
}

static tern_status *gemm_prepare(op_prep *p, const void **state)
{
    op_ctx attrs = {.node = p->node, .opset = p->opset}; /* for op_attr_int */
    return mm_prepare(p, op_attr_int(&attrs, "transB", 0) != 0, state);
}

/* The packed B of c's state if it applies to this run's B, else NULL. */
static const float *mm_packed_b(const op_ctx *c)
{
    const mm_prepared *s = c->state;
    return s && s->b == c->in[1] ? s->pb : NULL;
}

/* ---- MatMul ---------------------------------------------------------------- */

static tern_status *op_matmul(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *a = c->in[0], *b = c->in[1];
    TERN_TRY(check_pair(c, a, b));
    mm_plan p;
    TERN_TRY(mm_plan_make(c, a, b, &p));
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, a->dtype, p.rank, p.dims, &y));
    if (a->dtype == TERN_FLOAT)
        return mm_f32(c, &p, a->data, p.k, 1, b->data, p.n, 1, mm_packed_b(c), 1.0f, 0.0f, y->data);
    mm_generic(&p, a, p.k, 1, b, p.n, 1, 1.0, 0.0, y);
    return NULL;
}

/* ---- Gemm ---------------------------------------------------------------- */

static tern_status *op_gemm(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *a = c->in[0], *b = c->in[1];
    const tern_tensor *cc = c->n_in > 2 ? c->in[2] : NULL;
    TERN_TRY(check_pair(c, a, b));
    if (a->rank != 2 || b->rank != 2)
        return op_error(c, "A and B must be 2-D, got ranks %d and %d", a->rank, b->rank);
    bool ta = op_attr_int(c, "transA", 0) != 0, tb = op_attr_int(c, "transB", 0) != 0;
    float alpha = op_attr_float(c, "alpha", 1.0f), beta = op_attr_float(c, "beta", 1.0f);
    mm_plan p = {.m = a->dims[ta ? 1 : 0],
                 .k = a->dims[ta ? 0 : 1],
                 .n = b->dims[tb ? 0 : 1],
                 .batch = 1,
                 .flat = false,
                 .rank = 2};
    int64_t zero = 0;
    p.a_off = p.b_off = &zero;
    if (b->dims[tb ? 1 : 0] != p.k)
        return op_error(c, "inner dimensions differ: %lld and %lld", (long long)p.k,
                        (long long)b->dims[tb ? 1 : 0]);
    p.dims[0] = p.m;
    p.dims[1] = p.n;
    if (cc && cc->kind != TENSOR_DENSE) cc = NULL;
    if (cc) {
        if (cc->dtype != a->dtype)
            return op_error(c, "C has type %s, A has %s", tern_dtype_name(cc->dtype),
                            tern_dtype_name(a->dtype));
        if (cc->rank > 2) return op_error(c, "C must have rank <= 2, got %d", cc->rank);
        for (int i = 0; i < cc->rank; i++) {
            int64_t want = p.dims[2 - cc->rank + i];
            if (cc->dims[i] != 1 && cc->dims[i] != want)
                return op_error(c, "C cannot be broadcast to [%lld,%lld]", (long long)p.m,
                                (long long)p.n);
        }
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, a->dtype, 2, p.dims, &y));
    if (!cc || beta == 0.0f) {
        beta = 0.0f;
    } else { /* Y = C broadcast; the multiply then adds alpha*AB to beta*Y */
        int64_t st[2];
        op_bcast_strides(cc, 2, p.dims, st);
        size_t es = tern_dtype_size(y->dtype);
        for (int64_t i = 0; i < p.m; i++)
            for (int64_t j = 0; j < p.n; j++)
                memcpy((char *)y->data + (size_t)(i * p.n + j) * es,
                       (const char *)cc->data + (size_t)(i * st[0] + j * st[1]) * es, es);
    }
    int64_t a_rs = ta ? 1 : p.k, a_cs = ta ? p.m : 1, b_rs = tb ? 1 : p.n, b_cs = tb ? p.k : 1;
    if (a->dtype == TERN_FLOAT)
        return mm_f32(c, &p, a->data, a_rs, a_cs, b->data, b_rs, b_cs, mm_packed_b(c), alpha, beta,
                      y->data);
    mm_generic(&p, a, a_rs, a_cs, b, b_rs, b_cs, alpha, beta, y);
    return NULL;
}

/* ---- MatMulInteger, QLinearMatMul ----------------------------------------- */

tern_status *linalg_q_param(op_ctx *c, int idx, const char *what, int64_t per, bool need,
                            const tern_tensor **t)
{
    *t = idx < c->n_in ? c->in[idx] : NULL;
    if (!*t) return need ? op_error(c, "%s is missing", what) : NULL;
    if ((*t)->kind != TENSOR_DENSE || (*t)->rank > 1 || ((*t)->numel != 1 && (*t)->numel != per))
        return op_error(c, "%s must be a scalar or have %lld elements", what, (long long)per);
    return NULL;
}

static inline double q_at(const tern_tensor *t, int64_t i)
{
    return t ? op_get_f64(t, t->numel == 1 ? 0 : i) : 0.0;
}

/* acc[t][i][j] = sum_q (A - a_zp[i]) (B - b_zp[j]) as exact 64-bit integers. */
static tern_status *mm_int(op_ctx *c, const mm_plan *p, const tern_tensor *a,
                           const tern_tensor *azp, const tern_tensor *b, const tern_tensor *bzp,
                           int64_t **acc_out)
{
    size_t ny = (size_t)(p->batch * p->m * p->n);
    int64_t *acc;
    TERN_TRY(op_scratch(c, (ny ? ny : 1) * sizeof *acc, (void **)&acc));
    for (int64_t t = 0; t < p->batch; t++)
        for (int64_t i = 0; i < p->m; i++) {
            int64_t *row = acc + (t * p->m + i) * p->n;
            int64_t za = (int64_t)q_at(azp, i);
            for (int64_t j = 0; j < p->n; j++) row[j] = 0;
            for (int64_t q = 0; q < p->k; q++) {
                int64_t av = op_get_i64(a, p->a_off[t] + i * p->k + q) - za;
                int64_t bo = p->b_off[t] + q * p->n;
                if (!bzp || bzp->numel == 1) {
                    int64_t zb = (int64_t)q_at(bzp, 0);
                    for (int64_t j = 0; j < p->n; j++) row[j] += av * (op_get_i64(b, bo + j) - zb);
                } else {
                    for (int64_t j = 0; j < p->n; j++)
                        row[j] += av * (op_get_i64(b, bo + j) - (int64_t)q_at(bzp, j));
                }
            }
        }
    *acc_out = acc;
    return NULL;
}

static tern_status *op_matmul_integer(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *a = c->in[0], *b = c->in[1], *azp, *bzp;
    if (!linalg_is_q8(a->dtype) || !linalg_is_q8(b->dtype))
        return op_error(c, "inputs must be int8 or uint8");
    mm_plan p;
    TERN_TRY(mm_plan_make(c, a, b, &p));
    TERN_TRY(linalg_q_param(c, 2, "a_zero_point", p.m, false, &azp));
    TERN_TRY(linalg_q_param(c, 3, "b_zero_point", p.n, false, &bzp));
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_INT32, p.rank, p.dims, &y));
    int64_t *acc;
    TERN_TRY(mm_int(c, &p, a, azp, b, bzp, &acc));
    int32_t *yd = y->data;
    for (int64_t i = 0; i < y->numel; i++) yd[i] = (int32_t)(uint32_t)acc[i];
    return NULL;
}

/* Rounds half to even and saturates to the range of a uint8 / int8 output. */
static inline int64_t q_saturate(float v, tern_dtype dt)
{
    float lo = dt == TERN_UINT8 ? 0.0f : -128.0f, hi = dt == TERN_UINT8 ? 255.0f : 127.0f;
    v = nearbyintf(v);
    if (!(v >= lo)) v = lo; /* NaN too */
    if (v > hi) v = hi;
    return (int64_t)v;
}

static tern_status *op_qlinear_matmul(op_ctx *c)
{
    for (int i = 0; i < 8; i++)
        if (i != 7) TERN_TRY(op_need_input(c, i));
    const tern_tensor *a = c->in[0], *b = c->in[3], *as, *azp, *bs, *bzp, *ys, *yzp;
    if (!linalg_is_q8(a->dtype) || !linalg_is_q8(b->dtype))
        return op_error(c, "inputs must be int8 or uint8");
    mm_plan p;
    TERN_TRY(mm_plan_make(c, a, b, &p));
    TERN_TRY(linalg_q_param(c, 1, "a_scale", p.m, true, &as));
    TERN_TRY(linalg_q_param(c, 2, "a_zero_point", p.m, false, &azp));
    TERN_TRY(linalg_q_param(c, 4, "b_scale", p.n, true, &bs));
    TERN_TRY(linalg_q_param(c, 5, "b_zero_point", p.n, false, &bzp));
    TERN_TRY(linalg_q_param(c, 6, "y_scale", 1, true, &ys));
    TERN_TRY(linalg_q_param(c, 7, "y_zero_point", 1, false, &yzp));
    if (!dtype_is_float(as->dtype) || !dtype_is_float(bs->dtype) || !dtype_is_float(ys->dtype))
        return op_error(c, "scales must be floating point");
    tern_dtype yt = yzp ? yzp->dtype : TERN_UINT8;
    if (!linalg_is_q8(yt)) return op_error(c, "y_zero_point must be int8 or uint8");
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, yt, p.rank, p.dims, &y));
    int64_t *acc;
    TERN_TRY(mm_int(c, &p, a, azp, b, bzp, &acc));
    float ysc = (float)q_at(ys, 0), yz = (float)q_at(yzp, 0);
    for (int64_t t = 0, o = 0; t < p.batch; t++)
        for (int64_t i = 0; i < p.m; i++)
            for (int64_t j = 0; j < p.n; j++, o++) {
                float mult = (float)q_at(as, i) * (float)q_at(bs, j) / ysc;
                dtype_set_i64(yt, y->data, o, q_saturate((float)acc[o] * mult + yz, yt));
            }
    return NULL;
}

/* ---- Det ------------------------------------------------------------------ */

static tern_status *op_det(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (!dtype_is_float(x->dtype)) return op_error(c, "input must be floating point");
    if (x->rank < 2 || x->dims[x->rank - 1] != x->dims[x->rank - 2])
        return op_error(c, "input must be [*, M, M]");
    int64_t n = x->dims[x->rank - 1];
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank - 2, x->dims, &y));
    double *lu;
    TERN_TRY(op_scratch(c, (size_t)(n > 0 ? n * n : 1) * sizeof *lu, (void **)&lu));
    for (int64_t t = 0; t < y->numel; t++) {
        for (int64_t i = 0; i < n * n; i++) lu[i] = op_get_f64(x, t * n * n + i);
        double det = 1.0; /* LU with partial pivoting */
        for (int64_t col = 0; col < n && det != 0.0; col++) {
            int64_t piv = col;
            for (int64_t r = col + 1; r < n; r++)
                if (fabs(lu[r * n + col]) > fabs(lu[piv * n + col])) piv = r;
            if (lu[piv * n + col] == 0.0) {
                det = 0.0;
                break;
            }
            if (piv != col) {
                for (int64_t j = 0; j < n; j++) {
                    double tmp = lu[col * n + j];
                    lu[col * n + j] = lu[piv * n + j];
                    lu[piv * n + j] = tmp;
                }
                det = -det;
            }
            double d = lu[col * n + col];
            det *= d;
            for (int64_t r = col + 1; r < n; r++) {
                double f = lu[r * n + col] / d;
                for (int64_t j = col + 1; j < n; j++) lu[r * n + j] -= f * lu[col * n + j];
            }
        }
        dtype_set_f64(y->dtype, y->data, t, det);
    }
    return NULL;
}

const op_def ops_linalg[] = {
    {"", "MatMul", 1, 17, op_matmul, matmul_prepare},
    {"", "Gemm", 1, 17, op_gemm, gemm_prepare},
    {"", "MatMulInteger", 10, 17, op_matmul_integer},
    {"", "QLinearMatMul", 10, 17, op_qlinear_matmul},
    {"", "Einsum", 12, 17, linalg_einsum},
    {"", "Det", 11, 17, op_det},
    {0},
};

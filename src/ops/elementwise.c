/*
 * Operator family: elementwise. Unary math and activations
 * (elementwise_unary.c), binary and variadic ops with numpy broadcasting and
 * Where (elementwise_binary.c), Cast and CastLike (elementwise_cast.c).
 *
 * This file holds the driver they share (see elementwise.h): ew_run walks
 * the broadcast output in runs along its innermost collapsed dimension and
 * calls a typed inner loop for each run. The output range is split into
 * chunks of EW_GRAIN elements for the thread pool; each chunk finds its
 * starting coordinates by division and then advances an odometer, so a chunk
 * may start and end in the middle of a run.
 */
#include "ops/elementwise.h"

/* ~16K elements per chunk: big enough to amortise the pool's hand-off,
 * small enough to spread a 1M-element tensor over many cores. */
#define EW_GRAIN 16384
/* float16/bfloat16 elements converted to float32 at a time (on the stack). */
#define EW_BLOCK 256

typedef struct ew_job {
    ew_loop loop;
    const ew_args *p;
    int n_in, rank;
    int64_t dims[TERN_MAX_RANK];
    int64_t str[EW_MAX_IN][TERN_MAX_RANK]; /* element strides, 0 on broadcast dims */
    const char *x[EW_MAX_IN];
    size_t xsz[EW_MAX_IN];
    char *y;
    size_t ysz;
} ew_job;

static void ew_chunk(void *arg, int64_t begin, int64_t end)
{
    const ew_job *j = arg;
    const int last = j->rank - 1;
    int64_t idx[TERN_MAX_RANK], off[EW_MAX_IN] = {0}, rem = begin;
    for (int d = last; d >= 0; d--) {
        idx[d] = rem % j->dims[d];
        rem /= j->dims[d];
        for (int k = 0; k < j->n_in; k++) off[k] += idx[d] * j->str[k][d];
    }
    const void *xp[EW_MAX_IN];
    int64_t step[EW_MAX_IN];
    for (int k = 0; k < j->n_in; k++) step[k] = j->str[k][last];
    for (int64_t pos = begin; pos < end;) {
        int64_t len = j->dims[last] - idx[last];
        if (len > end - pos) len = end - pos;
        for (int k = 0; k < j->n_in; k++) xp[k] = j->x[k] + (size_t)off[k] * j->xsz[k];
        j->loop(j->p, xp, step, j->y + (size_t)pos * j->ysz, len);
        pos += len;
        idx[last] += len;
        for (int k = 0; k < j->n_in; k++) off[k] += len * step[k];
        for (int d = last; d > 0 && idx[d] == j->dims[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
            for (int k = 0; k < j->n_in; k++)
                off[k] += j->str[k][d - 1] - j->dims[d] * j->str[k][d];
        }
    }
}

void ew_run(op_ctx *c, ew_loop loop, ew_args *p, int n_in, const tern_tensor *const *in,
            tern_tensor *y, bool parallel)
{
    ew_job j = {.loop = loop, .p = p, .n_in = n_in, .y = y->data, .ysz = tern_dtype_size(y->dtype)};
    int64_t str[EW_MAX_IN][TERN_MAX_RANK];
    for (int k = 0; k < EW_MAX_IN; k++) p->xdt[k] = k < n_in ? in[k]->dtype : TERN_UNDEFINED;
    p->ydt = y->dtype;
    if (y->numel == 0) return;
    for (int k = 0; k < n_in; k++) {
        op_bcast_strides(in[k], y->rank, y->dims, str[k]);
        j.x[k] = in[k]->data;
        j.xsz[k] = tern_dtype_size(in[k]->dtype);
        if (in[k]->dtype == TERN_STRING) j.xsz[k] = sizeof(char *);
    }
    if (y->dtype == TERN_STRING) j.ysz = sizeof(char *);
    /* Drop unit dimensions and merge a dimension into the one outside it
     * when every operand walks both as one (dense, or broadcast in both). */
    for (int d = 0; d < y->rank; d++) {
        int64_t n = y->dims[d];
        if (n == 1) continue;
        bool merge = j.rank > 0;
        for (int k = 0; k < n_in && merge; k++) merge = j.str[k][j.rank - 1] == str[k][d] * n;
        if (merge) {
            j.dims[j.rank - 1] *= n;
            for (int k = 0; k < n_in; k++) j.str[k][j.rank - 1] = str[k][d];
        } else {
            j.dims[j.rank] = n;
            for (int k = 0; k < n_in; k++) j.str[k][j.rank] = str[k][d];
            j.rank++;
        }
    }
    if (j.rank == 0) {
        j.rank = 1;
        j.dims[0] = 1;
        for (int k = 0; k < n_in; k++) j.str[k][0] = 0;
    }
    if (parallel && y->numel > EW_GRAIN)
        tpool_for(c->pool, y->numel, EW_GRAIN, ew_chunk, &j);
    else
        ew_chunk(&j, 0, y->numel);
}

static bool is_half(tern_dtype dt)
{
    return dt == TERN_FLOAT16 || dt == TERN_BFLOAT16;
}

static void half_to_f32(tern_dtype dt, const uint16_t *h, float *f, int64_t n)
{
    if (dt == TERN_FLOAT16)
        for (int64_t i = 0; i < n; i++) f[i] = f16_to_f32(h[i]);
    else
        for (int64_t i = 0; i < n; i++) f[i] = bf16_to_f32(h[i]);
}

/* Runs p->f32 on blocks of float16/bfloat16 operands converted to float32;
 * operands of other types (a bool condition, a bool result) pass through. */
static void ew_half_loop(const ew_args *p, const void *const *x, const int64_t *st, void *y,
                         int64_t n)
{
    float xb[EW_MAX_IN][EW_BLOCK], yb[EW_BLOCK];
    const void *xp[EW_MAX_IN];
    for (int64_t i0 = 0; i0 < n; i0 += EW_BLOCK) {
        int64_t m = n - i0 < EW_BLOCK ? n - i0 : EW_BLOCK;
        for (int k = 0; k < EW_MAX_IN && p->xdt[k]; k++) {
            size_t off = (size_t)(i0 * st[k]) * tern_dtype_size(p->xdt[k]);
            const char *src = (const char *)x[k] + off;
            if (is_half(p->xdt[k])) {
                half_to_f32(p->xdt[k], (const uint16_t *)src, xb[k], st[k] ? m : 1);
                xp[k] = xb[k];
            } else {
                xp[k] = src;
            }
        }
        if (is_half(p->ydt)) {
            p->f32(p, xp, st, yb, m);
            uint16_t *h = (uint16_t *)y + i0;
            if (p->ydt == TERN_FLOAT16)
                for (int64_t i = 0; i < m; i++) h[i] = f32_to_f16(yb[i]);
            else
                for (int64_t i = 0; i < m; i++) h[i] = f32_to_bf16(yb[i]);
        } else {
            p->f32(p, xp, st, (char *)y + (size_t)i0 * tern_dtype_size(p->ydt), m);
        }
    }
}

ew_loop ew_pick(const ew_table tbl, tern_dtype dt, ew_args *p)
{
    if (!dtype_valid((int)dt)) return NULL;
    if (tbl[dt]) return tbl[dt];
    if (is_half(dt) && tbl[TERN_FLOAT]) {
        p->f32 = tbl[TERN_FLOAT];
        return ew_half_loop;
    }
    return NULL;
}

tern_status *ew_out_bcast(op_ctx *c, int n_in, const tern_tensor *const *in, tern_dtype dt,
                          tern_tensor **y)
{
    int rank;
    int64_t dims[TERN_MAX_RANK];
    for (int k = 0; k < n_in; k++)
        if (in[k]->kind != TENSOR_DENSE) return op_error(c, "input %d is not a tensor", k);
    TERN_TRY(op_broadcast_shape(c, n_in, in, &rank, dims));
    return op_out(c, 0, dt, rank, dims, y);
}

void ew_set_f64_sat(tern_dtype dt, void *data, int64_t i, double v)
{
    double lo, hi;
    switch (dt) {
    case TERN_INT8: lo = INT8_MIN, hi = INT8_MAX; break;
    case TERN_INT16: lo = INT16_MIN, hi = INT16_MAX; break;
    case TERN_INT32: lo = INT32_MIN, hi = INT32_MAX; break;
    case TERN_UINT8: lo = 0, hi = UINT8_MAX; break;
    case TERN_UINT16: lo = 0, hi = UINT16_MAX; break;
    case TERN_UINT32: lo = 0, hi = UINT32_MAX; break;
    case TERN_UINT64:
        /* 2^64 is the first double above the range */
        ((uint64_t *)data)[i] = v != v || v <= 0              ? 0
                                : v >= 18446744073709551616.0 ? UINT64_MAX
                                                              : (uint64_t)v;
        return;
    default: dtype_set_f64(dt, data, i, v); return; /* floats; int64 saturates already */
    }
    dtype_set_i64(dt, data, i,
                  v != v   ? 0
                  : v < lo ? (int64_t)lo
                  : v > hi ? (int64_t)hi
                           : (int64_t)v);
}

tern_status *ew_bad_dtype(const op_ctx *c, tern_dtype dt)
{
    return op_error(c, "input type %s is not supported", tern_dtype_name(dt));
}

/* Every loop reads input element i just before it writes output element i
 * (ew_run hands an input of the output's shape the same runs as the
 * output), so output 0 may reuse such an input (OP_INPLACE*, ops/op.h). Sum,
 * Mean, Max and Min fold their inputs into the output pairwise, so only the
 * first two may be reused; Where reuses any of its three. The comparisons
 * return bool: only bool operands match them. */
#define IN_PLACE_BIN (OP_INPLACE0 | OP_INPLACE1)

const op_def ops_elementwise[] = {
    /* unary math */
    {"", "Abs", 1, 17, ew_abs, NULL, OP_INPLACE0},
    {"", "Neg", 1, 17, ew_neg, NULL, OP_INPLACE0},
    {"", "Exp", 1, 17, ew_exp, NULL, OP_INPLACE0},
    {"", "Log", 1, 17, ew_log, NULL, OP_INPLACE0},
    {"", "Sqrt", 1, 17, ew_sqrt, NULL, OP_INPLACE0},
    {"", "Reciprocal", 1, 17, ew_reciprocal, NULL, OP_INPLACE0},
    {"", "Floor", 1, 17, ew_floor, NULL, OP_INPLACE0},
    {"", "Ceil", 1, 17, ew_ceil, NULL, OP_INPLACE0},
    {"", "Round", 11, 17, ew_round, NULL, OP_INPLACE0},
    {"", "Sign", 9, 17, ew_sign, NULL, OP_INPLACE0},
    {"", "Sin", 7, 17, ew_sin, NULL, OP_INPLACE0},
    {"", "Cos", 7, 17, ew_cos, NULL, OP_INPLACE0},
    {"", "Tan", 7, 17, ew_tan, NULL, OP_INPLACE0},
    {"", "Asin", 7, 17, ew_asin, NULL, OP_INPLACE0},
    {"", "Acos", 7, 17, ew_acos, NULL, OP_INPLACE0},
    {"", "Atan", 7, 17, ew_atan, NULL, OP_INPLACE0},
    {"", "Sinh", 9, 17, ew_sinh, NULL, OP_INPLACE0},
    {"", "Cosh", 9, 17, ew_cosh, NULL, OP_INPLACE0},
    {"", "Asinh", 9, 17, ew_asinh, NULL, OP_INPLACE0},
    {"", "Acosh", 9, 17, ew_acosh, NULL, OP_INPLACE0},
    {"", "Atanh", 9, 17, ew_atanh, NULL, OP_INPLACE0},
    {"", "Erf", 9, 17, ew_erf, NULL, OP_INPLACE0},
    {"", "IsNaN", 9, 17, ew_isnan},
    {"", "IsInf", 10, 17, ew_isinf},
    {"", "Not", 1, 17, ew_not, NULL, OP_INPLACE0},
    {"", "BitwiseNot", 18, 18, ew_bitwise_not, NULL, OP_INPLACE0},
    /* activations */
    {"", "Relu", 1, 17, ew_relu, NULL, OP_INPLACE0},
    {"", "Sigmoid", 1, 17, ew_sigmoid, NULL, OP_INPLACE0},
    {"", "Tanh", 1, 17, ew_tanh, NULL, OP_INPLACE0},
    {"", "Elu", 1, 17, ew_elu, NULL, OP_INPLACE0},
    {"", "Selu", 1, 17, ew_selu, NULL, OP_INPLACE0},
    {"", "LeakyRelu", 1, 17, ew_leaky_relu, NULL, OP_INPLACE0},
    {"", "HardSigmoid", 1, 17, ew_hard_sigmoid, NULL, OP_INPLACE0},
    {"", "HardSwish", 14, 17, ew_hard_swish, NULL, OP_INPLACE0},
    {"", "Softplus", 1, 17, ew_softplus, NULL, OP_INPLACE0},
    {"", "Softsign", 1, 17, ew_softsign, NULL, OP_INPLACE0},
    {"", "Celu", 12, 17, ew_celu, NULL, OP_INPLACE0},
    {"", "ThresholdedRelu", 10, 17, ew_thresholded_relu, NULL, OP_INPLACE0},
    {"", "Mish", 18, 18, ew_mish, NULL, OP_INPLACE0},
    {"", "Shrink", 9, 17, ew_shrink, NULL, OP_INPLACE0},
    {"", "Clip", 1, 17, ew_clip, NULL, OP_INPLACE0},
    {"", "PRelu", 1, 17, ew_prelu, NULL, IN_PLACE_BIN},
    /* binary, broadcasting */
    {"", "Add", 1, 17, ew_add, NULL, IN_PLACE_BIN},
    {"", "Sub", 1, 17, ew_sub, NULL, IN_PLACE_BIN},
    {"", "Mul", 1, 17, ew_mul, NULL, IN_PLACE_BIN},
    {"", "Div", 1, 17, ew_div, NULL, IN_PLACE_BIN},
    {"", "Pow", 1, 17, ew_pow, NULL, IN_PLACE_BIN},
    {"", "Mod", 10, 17, ew_mod, NULL, IN_PLACE_BIN},
    {"", "BitShift", 11, 17, ew_bitshift, NULL, IN_PLACE_BIN},
    {"", "BitwiseAnd", 18, 18, ew_bitwise_and, NULL, IN_PLACE_BIN},
    {"", "BitwiseOr", 18, 18, ew_bitwise_or, NULL, IN_PLACE_BIN},
    {"", "BitwiseXor", 18, 18, ew_bitwise_xor, NULL, IN_PLACE_BIN},
    {"", "And", 1, 17, ew_and, NULL, IN_PLACE_BIN},
    {"", "Or", 1, 17, ew_or, NULL, IN_PLACE_BIN},
    {"", "Xor", 1, 17, ew_xor, NULL, IN_PLACE_BIN},
    {"", "Equal", 1, 17, ew_equal, NULL, IN_PLACE_BIN},
    {"", "Less", 1, 17, ew_less, NULL, IN_PLACE_BIN},
    {"", "LessOrEqual", 12, 17, ew_less_equal, NULL, IN_PLACE_BIN},
    {"", "Greater", 1, 17, ew_greater, NULL, IN_PLACE_BIN},
    {"", "GreaterOrEqual", 12, 17, ew_greater_equal, NULL, IN_PLACE_BIN},
    /* variadic, broadcasting */
    {"", "Sum", 1, 17, ew_sum, NULL, IN_PLACE_BIN},
    {"", "Mean", 1, 17, ew_mean, NULL, IN_PLACE_BIN},
    {"", "Max", 1, 17, ew_max, NULL, IN_PLACE_BIN},
    {"", "Min", 1, 17, ew_min, NULL, IN_PLACE_BIN},
    {"", "Where", 9, 17, ew_where, NULL, OP_INPLACE0 | IN_PLACE_BIN},
    /* casts */
    {"", "Cast", 6, 17, ew_cast},
    {"", "CastLike", 15, 17, ew_cast_like},
    {0},
};

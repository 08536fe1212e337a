/*
 * Binary and variadic elementwise ops with numpy broadcasting, PRelu and
 * Where. Each op is an expression in `x` (left operand) and `z` (right) per
 * C type; ew_run (elementwise.c) does the broadcasting and threading.
 *
 * Integer semantics are defined for every input: Add/Sub/Mul/Neg wrap (they
 * compute in the unsigned type), Div and Mod refuse a zero divisor before any
 * work and treat INT_MIN / -1 as wrapping, shifts by the type's width or more
 * give 0, and integer powers wrap.
 *
 * Before opset 7 the arithmetic and comparison ops broadcast only when the
 * `broadcast` attribute says so, aligning B with A at `axis` (or at the end);
 * legacy_view() turns that into the numpy alignment.
 */
#include <string.h>
#include <tgmath.h>

#include "ops/elementwise.h"

#define BIN_FN(sfx, T, UT, op, Y, expr) EW_BINARY_FN(op##_##sfx, T, UT, Y, expr)
#define BIN_FLOAT(op, expr) EW_FLOAT_TYPES(BIN_FN, op, T, expr)
#define BIN_SINT(op, expr) EW_SINT_TYPES(BIN_FN, op, T, expr)
#define BIN_UINT(op, expr) EW_UINT_TYPES(BIN_FN, op, T, expr)
#define BIN_INT(op, expr) EW_INT_TYPES(BIN_FN, op, T, expr)
/* Predicates: bool (uint8_t) result for every numeric type. */
#define BIN_PRED(op, expr)                                                                         \
    EW_FLOAT_TYPES(BIN_FN, op, uint8_t, expr) EW_INT_TYPES(BIN_FN, op, uint8_t, expr)

/* B of a pre-opset-7 node with broadcast=1 and an axis, re-shaped so that
 * numpy broadcasting aligns it at that axis of A. */
static tern_status *legacy_view(op_ctx *c, const tern_tensor *a, const tern_tensor *b,
                                tern_tensor *view, const tern_tensor **out)
{
    *out = b;
    const op_attr *axis = op_attr_get(c, "axis");
    if (c->opset >= 7 || !op_attr_int(c, "broadcast", 0) || !axis) return NULL;
    int64_t ax = axis->i < 0 ? axis->i + a->rank : axis->i;
    if (ax < 0 || ax + b->rank > a->rank)
        return op_error(c, "axis %lld does not fit B (rank %d) into A (rank %d)",
                        (long long)axis->i, b->rank, a->rank);
    *view = *b;
    view->rank = a->rank;
    for (int i = 0; i < a->rank; i++)
        view->dims[i] = i >= ax && i < ax + b->rank ? b->dims[i - ax] : 1;
    *out = view;
    return NULL;
}

/* The two operands of a binary op, both dense tensors of the same type. */
static tern_status *binary_inputs(op_ctx *c, tern_tensor *view, const tern_tensor **in)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    in[0] = c->in[0];
    if (in[0]->kind != TENSOR_DENSE || c->in[1]->kind != TENSOR_DENSE)
        return op_error(c, "inputs must be tensors");
    if (in[0]->dtype != c->in[1]->dtype)
        return op_error(c, "input types differ: %s and %s", tern_dtype_name(in[0]->dtype),
                        tern_dtype_name(c->in[1]->dtype));
    return legacy_view(c, in[0], c->in[1], view, &in[1]);
}

/* Runs a same-type binary op; ydt is the result type (0: the input type). */
static tern_status *binary(op_ctx *c, const ew_table tbl, ew_args *p, tern_dtype ydt)
{
    tern_tensor view;
    const tern_tensor *in[2];
    TERN_TRY(binary_inputs(c, &view, in));
    ew_loop f = ew_pick(tbl, in[0]->dtype, p);
    if (!f) return ew_bad_dtype(c, in[0]->dtype);
    tern_tensor *y;
    TERN_TRY(ew_out_bcast(c, 2, in, ydt ? ydt : in[0]->dtype, &y));
    ew_run(c, f, p, 2, in, y, true);
    return NULL;
}

#define BIN_KERNEL(op, ydt, ...)                                                                   \
    tern_status *ew_##op(op_ctx *c)                                                                \
    {                                                                                              \
        static const ew_table tbl = {__VA_ARGS__};                                                 \
        ew_args p = {0};                                                                           \
        return binary(c, tbl, &p, ydt);                                                            \
    }

/* ---- arithmetic -------------------------------------------------------------- */

BIN_FLOAT(add, x + z)
BIN_INT(add, (T)((UT)x + (UT)z))
BIN_KERNEL(add, 0, EW_TBL_NUM(add))

BIN_FLOAT(sub, x - z)
BIN_INT(sub, (T)((UT)x - (UT)z))
BIN_KERNEL(sub, 0, EW_TBL_NUM(sub))

/* clang-format off */
BIN_FLOAT(mul, x * z)
BIN_INT(mul, (T)((UT)x * (UT)z))
/* clang-format on */
BIN_KERNEL(mul, 0, EW_TBL_NUM(mul))

/* Integer Div and Mod: an error for a zero divisor anywhere in B. */
static tern_status *check_divisor(op_ctx *c)
{
    const tern_tensor *b = c->in[1];
    if (!dtype_is_int(b->dtype)) return NULL;
    for (int64_t i = 0; i < b->numel; i++)
        if (op_get_i64(b, i) == 0) return op_error(c, "integer division by zero");
    return NULL;
}

BIN_FLOAT(div, x / z)
BIN_SINT(div, z == -1 ? (T)((UT)0 - (UT)x) : (T)(x / z))
BIN_UINT(div, x / z)
tern_status *ew_div(op_ctx *c)
{
    static const ew_table tbl = {EW_TBL_NUM(div)};
    ew_args p = {0};
    TERN_TRY(op_need_input(c, 1));
    TERN_TRY(check_divisor(c));
    return binary(c, tbl, &p, TERN_UNDEFINED);
}

/* Mod: fmod=1 takes the sign of the dividend (C's fmod and %), fmod=0 the
 * sign of the divisor (Python's %). */
#define MOD_FIX(r, z) ((r) != 0 && (((r) < 0) != ((z) < 0)) ? (r) + (z) : (r))
BIN_FLOAT(fmod, fmod(x, z))
BIN_SINT(fmod, z == -1 ? (T)0 : (T)(x % z))
BIN_UINT(fmod, x % z)
BIN_FLOAT(mod, MOD_FIX(fmod(x, z), z))
BIN_SINT(mod, z == -1 ? (T)0 : (T)MOD_FIX(x % z, z))
BIN_UINT(mod, x % z)
tern_status *ew_mod(op_ctx *c)
{
    static const ew_table fmod_tbl = {EW_TBL_NUM(fmod)}, mod_tbl = {EW_TBL_NUM(mod)};
    ew_args p = {0};
    TERN_TRY(op_need_input(c, 1));
    TERN_TRY(check_divisor(c));
    return binary(c, op_attr_int(c, "fmod", 0) ? fmod_tbl : mod_tbl, &p, TERN_UNDEFINED);
}

/* ---- Pow: base and exponent may differ in type; the result has the base's.
 * Same float types use typed loops; integer ** integer is exact (wrapping);
 * any other mix goes through double, as numpy computes it. */

BIN_FLOAT(pow, pow(x, z))

static uint64_t ipow_u(uint64_t b, uint64_t e)
{
    uint64_t r = 1;
    for (; e; e >>= 1, b *= b)
        if (e & 1) r *= b;
    return r;
}

static void pow_int(const ew_args *p, const void *const *x, const int64_t *st, void *y, int64_t n)
{
    bool e_unsigned = !dtype_is_signed(p->xdt[1]);
    for (int64_t i = 0; i < n; i++) {
        int64_t b = dtype_get_i64(p->xdt[0], x[0], i * st[0]);
        int64_t e = dtype_get_i64(p->xdt[1], x[1], i * st[1]);
        uint64_t r;
        if (e >= 0 || e_unsigned)
            r = ipow_u((uint64_t)b, (uint64_t)e);
        else /* 1/b^|e| truncated */
            r = b == 1 ? 1 : b == -1 ? ((e & 1) ? UINT64_MAX : 1) : 0;
        dtype_set_i64(p->ydt, y, i, (int64_t)r);
    }
}

static void pow_mixed(const ew_args *p, const void *const *x, const int64_t *st, void *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double b = dtype_get_f64(p->xdt[0], x[0], i * st[0]);
        double e = dtype_get_f64(p->xdt[1], x[1], i * st[1]);
        ew_set_f64_sat(p->ydt, y, i, pow(b, e));
    }
}

tern_status *ew_pow(op_ctx *c)
{
    static const ew_table tbl = {EW_TBL_FLOAT(pow)};
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *in[2] = {c->in[0], c->in[1]};
    tern_tensor view;
    if (in[0]->kind != TENSOR_DENSE || in[1]->kind != TENSOR_DENSE)
        return op_error(c, "inputs must be tensors");
    TERN_TRY(legacy_view(c, in[0], in[1], &view, &in[1]));
    tern_dtype bt = in[0]->dtype, et = in[1]->dtype;
    ew_args p = {0};
    ew_loop f;
    if (bt == et && dtype_is_float(bt))
        f = ew_pick(tbl, bt, &p);
    else if (dtype_is_int(bt) && dtype_is_int(et))
        f = pow_int;
    else if ((dtype_is_int(bt) || dtype_is_float(bt)) && (dtype_is_int(et) || dtype_is_float(et)))
        f = pow_mixed;
    else
        return op_error(c, "unsupported types %s ** %s", tern_dtype_name(bt), tern_dtype_name(et));
    tern_tensor *y;
    TERN_TRY(ew_out_bcast(c, 2, in, bt, &y));
    ew_run(c, f, &p, 2, in, y, true);
    return NULL;
}

/* ---- PRelu: slope broadcasts to X (unidirectional). Before opset 7 a slope
 * of C values applies along the channel axis 1. */

/* clang-format off */
BIN_FLOAT(prelu, EW_SEL(x < 0, x * z, x))
/* clang-format on */
BIN_SINT(prelu, x < 0 ? (T)((UT)x * (UT)z) : x)
BIN_UINT(prelu, ((void)z, x))
tern_status *ew_prelu(op_ctx *c)
{
    static const ew_table tbl = {EW_TBL_NUM(prelu)};
    tern_tensor view;
    const tern_tensor *in[2];
    TERN_TRY(binary_inputs(c, &view, in));
    const tern_tensor *x = in[0], *s = in[1];
    if (c->opset < 7 && s->numel > 1 && x->rank >= 2 && s->numel == x->dims[1]) {
        view = *s;
        view.rank = x->rank - 1;
        view.dims[0] = s->numel;
        for (int i = 1; i < view.rank; i++) view.dims[i] = 1;
        in[1] = &view;
    }
    ew_args p = {0};
    ew_loop f = ew_pick(tbl, x->dtype, &p);
    if (!f) return ew_bad_dtype(c, x->dtype);
    tern_tensor *y;
    TERN_TRY(ew_out_bcast(c, 2, in, x->dtype, &y));
    if (!shape_equal(y, x)) return op_error(c, "slope does not broadcast to the input's shape");
    ew_run(c, f, &p, 2, in, y, true);
    return NULL;
}

/* ---- bits and logic ------------------------------------------------------------ */

#define BITS(T) (sizeof(T) * 8)
BIN_UINT(shl, z >= BITS(T) ? (T)0 : (T)((UT)x << z))
BIN_UINT(shr, z >= BITS(T) ? (T)0 : (T)(x >> z))
tern_status *ew_bitshift(op_ctx *c)
{
    static const ew_table shl = {EW_TBL_UINT(shl)}, shr = {EW_TBL_UINT(shr)};
    const char *dir = op_attr_str(c, "direction", "");
    ew_args p = {0};
    if (strcmp(dir, "LEFT") == 0) return binary(c, shl, &p, TERN_UNDEFINED);
    if (strcmp(dir, "RIGHT") == 0) return binary(c, shr, &p, TERN_UNDEFINED);
    return op_error(c, "direction must be LEFT or RIGHT, got '%s'", dir);
}

/* clang-format off */
BIN_INT(band, (T)(x & z))
/* clang-format on */
BIN_KERNEL(bitwise_and, 0, EW_TBL_INT(band))
BIN_INT(bor, (T)(x | z))
BIN_KERNEL(bitwise_or, 0, EW_TBL_INT(bor))
BIN_INT(bxor, (T)(x ^ z))
BIN_KERNEL(bitwise_xor, 0, EW_TBL_INT(bxor))

EW_BINARY_FN(and_b, uint8_t, unsigned, uint8_t, (x != 0) & (z != 0))
BIN_KERNEL(and, 0, [TERN_BOOL] = and_b)
EW_BINARY_FN(or_b, uint8_t, unsigned, uint8_t, (x != 0) | (z != 0))
BIN_KERNEL(or, 0, [TERN_BOOL] = or_b)
EW_BINARY_FN(xor_b, uint8_t, unsigned, uint8_t, (x != 0) ^ (z != 0))
BIN_KERNEL(xor, 0, [TERN_BOOL] = xor_b)

/* ---- comparisons ------------------------------------------------------------------ */

BIN_PRED(eq, x == z)
EW_BINARY_FN(eq_b, uint8_t, unsigned, uint8_t, (x != 0) == (z != 0))
EW_BINARY_FN(eq_s, const char *, unsigned, uint8_t, strcmp(x ? x : "", z ? z : "") == 0)
BIN_KERNEL(equal, TERN_BOOL, EW_TBL_NUM(eq), [TERN_BOOL] = eq_b, [TERN_STRING] = eq_s)

BIN_PRED(lt, x < z)
BIN_KERNEL(less, TERN_BOOL, EW_TBL_NUM(lt))
BIN_PRED(le, x <= z)
BIN_KERNEL(less_equal, TERN_BOOL, EW_TBL_NUM(le))
BIN_PRED(gt, x > z)
BIN_KERNEL(greater, TERN_BOOL, EW_TBL_NUM(gt))
BIN_PRED(ge, x >= z)
BIN_KERNEL(greater_equal, TERN_BOOL, EW_TBL_NUM(ge))

/* ---- variadic: Sum, Mean, Max, Min ---------------------------------------------
 * Folded pairwise into the output: y = in0 op in1, then y = y op ink, each
 * step broadcasting to the final shape (in place is safe: every element is
 * read before it is written, at the same index). So y may also be in0 or
 * in1 itself (OP_INPLACE0/1), but not a later input, read after the first
 * step wrote y. */

BIN_FLOAT(max, (x != x || x > z) ? x : z) /* NaN propagates */
BIN_INT(max, x > z ? x : z)
BIN_FLOAT(min, (x != x || x < z) ? x : z)
BIN_INT(min, x < z ? x : z)
EW_UNARY_FN(mean_f32, float, float, float, v / (float)P.alpha)
EW_UNARY_FN(mean_f64, double, double, double, v / P.alpha)

static tern_status *variadic(op_ctx *c, const ew_table tbl, bool mean)
{
    if (c->n_in < 1) return op_error(c, "needs at least one input");
    for (int k = 0; k < c->n_in; k++) {
        TERN_TRY(op_need_input(c, k));
        if (c->in[k]->kind != TENSOR_DENSE) return op_error(c, "input %d is not a tensor", k);
        if (c->in[k]->dtype != c->in[0]->dtype)
            return op_error(c, "input %d has type %s, input 0 %s", k,
                            tern_dtype_name(c->in[k]->dtype), tern_dtype_name(c->in[0]->dtype));
    }
    tern_dtype dt = c->in[0]->dtype;
    ew_args p = {0};
    ew_loop f = ew_pick(tbl, dt, &p);
    if (!f) return ew_bad_dtype(c, dt);
    tern_tensor *y;
    TERN_TRY(ew_out_bcast(c, c->n_in, c->in, dt, &y));
    if (c->n_in == 1) { /* (y may be the input itself, in place) */
        if (y->numel && y->data != c->in[0]->data)
            memcpy(y->data, c->in[0]->data, tensor_nbytes(y));
        return NULL;
    }
    ew_run(c, f, &p, 2, c->in, y, true);
    for (int k = 2; k < c->n_in; k++) {
        const tern_tensor *in[2] = {y, c->in[k]};
        ew_run(c, f, &p, 2, in, y, true);
    }
    if (mean) {
        static const ew_table div_tbl = {EW_TBL_FLOAT(mean)};
        ew_args q = {.alpha = c->n_in};
        const tern_tensor *in = y;
        ew_run(c, ew_pick(div_tbl, dt, &q), &q, 1, &in, y, true);
    }
    return NULL;
}

tern_status *ew_sum(op_ctx *c)
{
    static const ew_table tbl = {EW_TBL_NUM(add)}; /* integers too, as runtimes accept */
    return variadic(c, tbl, false);
}

tern_status *ew_mean(op_ctx *c)
{
    static const ew_table tbl = {EW_TBL_FLOAT(add)};
    return variadic(c, tbl, true);
}

tern_status *ew_max(op_ctx *c)
{
    static const ew_table tbl = {EW_TBL_NUM(max)};
    return variadic(c, tbl, false);
}

tern_status *ew_min(op_ctx *c)
{
    static const ew_table tbl = {EW_TBL_NUM(min)};
    return variadic(c, tbl, false);
}

/* ---- Where: copies elements by size; strings are duplicated afterwards so
 * the output owns its own. */

/* Elements are moved as unsigned integers of their size, picked with a mask
 * so that the dense loop vectorises. */
#define WHERE_FN(name, T)                                                                          \
    static void name(const ew_args *p, const void *const *x, const int64_t *st, void *y_,          \
                     int64_t n)                                                                    \
    {                                                                                              \
        (void)p;                                                                                   \
        const uint8_t *cond = x[0];                                                                \
        const T *a = x[1], *b = x[2];                                                              \
        T *y = y_;                                                                                 \
        if (st[0] && st[1] && st[2]) {                                                             \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T m = (T)0 - (T)(cond[i] != 0);                                                    \
                y[i] = (T)((a[i] & m) | (b[i] & (T)~m));                                           \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) y[i] = cond[i * st[0]] ? a[i * st[1]] : b[i * st[2]];  \
        }                                                                                          \
    }
WHERE_FN(where_1, uint8_t)
WHERE_FN(where_2, uint16_t)
WHERE_FN(where_4, uint32_t)
WHERE_FN(where_8, uint64_t)

static void where_s(const ew_args *p, const void *const *x, const int64_t *st, void *y_, int64_t n)
{
    (void)p;
    const uint8_t *cond = x[0];
    char *const *a = x[1], *const *b = x[2];
    char **y = y_;
    for (int64_t i = 0; i < n; i++) y[i] = cond[i * st[0]] ? a[i * st[1]] : b[i * st[2]];
}

tern_status *ew_where(op_ctx *c)
{
    for (int k = 0; k < 3; k++) {
        TERN_TRY(op_need_input(c, k));
        if (c->in[k]->kind != TENSOR_DENSE) return op_error(c, "input %d is not a tensor", k);
    }
    const tern_tensor *const *in = c->in;
    if (in[0]->dtype != TERN_BOOL) return op_error(c, "condition must be bool");
    tern_dtype dt = in[1]->dtype;
    if (in[2]->dtype != dt)
        return op_error(c, "X and Y types differ: %s and %s", tern_dtype_name(dt),
                        tern_dtype_name(in[2]->dtype));
    ew_loop f;
    switch (dt == TERN_STRING ? 0 : tern_dtype_size(dt)) {
    case 0: f = where_s; break;
    case 1: f = where_1; break;
    case 2: f = where_2; break;
    case 4: f = where_4; break;
    case 8: f = where_8; break;
    default: return ew_bad_dtype(c, dt);
    }
    tern_tensor *y;
    TERN_TRY(ew_out_bcast(c, 3, in, dt, &y));
    ew_args p = {0};
    ew_run(c, f, &p, 3, in, y, dt != TERN_STRING);
    if (dt == TERN_STRING) {
        char **s = y->data;
        for (int64_t i = 0; i < y->numel; i++) TERN_TRY(op_strdup(c, s[i] ? s[i] : "", &s[i]));
    }
    return NULL;
}

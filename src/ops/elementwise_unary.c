/*
 * Unary elementwise ops: math functions, activations, Not, IsNaN/IsInf and
 * Clip. Each op is one expression in `v` (the input element, of type T);
 * <tgmath.h> picks the float or double libm function from T, so one
 * expression serves both, and float16/bfloat16 run the float32 loop through
 * ew_half_loop. Integer variants are written apart where the spec allows
 * integers; they compute in the unsigned type where the result can wrap
 * (Abs and Neg of the most negative value).
 */
#include <float.h>
#include <string.h>
#include <tgmath.h>

#include "ops/elementwise.h"
#include "ops/reduce_util.h"

/* min(max(v, lo), hi): lo > hi gives hi, as Clip specifies; NaN passes. */
#define CLAMP(v, lo, hi) ((v) < (lo) ? ((lo) > (hi) ? (hi) : (lo)) : (v) > (hi) ? (hi) : (v))

static tern_status *unary(op_ctx *c, const ew_table tbl, ew_args *p, tern_dtype ydt)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE) return op_error(c, "input 0 is not a tensor");
    ew_loop f = ew_pick(tbl, x->dtype, p);
    if (!f) return ew_bad_dtype(c, x->dtype);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, ydt ? ydt : x->dtype, x->rank, x->dims, &y));
    ew_run(c, f, p, 1, &x, y, true);
    return NULL;
}

/* Loops named <op>_<sfx> for a type family; Y is the output C type. */
#define UN_FN(sfx, T, UT, op, Y, expr) EW_UNARY_FN(op##_##sfx, T, UT, Y, expr)
#define UN_FLOAT(op, expr) EW_FLOAT_TYPES(UN_FN, op, T, expr)
#define UN_SINT(op, expr) EW_SINT_TYPES(UN_FN, op, T, expr)
#define UN_UINT(op, expr) EW_UINT_TYPES(UN_FN, op, T, expr)

/* An op whose kernel only picks a loop: float types, no attributes. */
#define UN_KERNEL(op, ...)                                                                         \
    tern_status *ew_##op(op_ctx *c)                                                                \
    {                                                                                              \
        static const ew_table tbl = {__VA_ARGS__};                                                 \
        ew_args p = {0};                                                                           \
        return unary(c, tbl, &p, TERN_UNDEFINED);                                                  \
    }
#define UN_FLOAT_KERNEL(op, expr) UN_FLOAT(op, expr) UN_KERNEL(op, EW_TBL_FLOAT(op))

/* ---- vectorisable float32 exp ---------------------------------------------
 * libm's expf is a call per element, which keeps Exp, Sigmoid and Tanh (the
 * hottest transcendental activations) scalar. This is Cephes' expf: reduce
 * to e^r * 2^n with |r| <= ln2/2, a degree-6 polynomial for e^r, and 2^n
 * built in the exponent bits (in two halves, so results under- and overflow
 * to 0 / inf as they should). Within 1 ulp of exp; NaN propagates.
 *
 * It is written without branches (see ew_sel_f32) or float-to-int
 * conversions, either of which stops GCC from vectorising the loop. */

static inline float fast_expf(float x)
{
    float c = ew_sel_f32(x < -104.0f, -104.0f, x);
    c = ew_sel_f32(c > 89.0f, 89.0f, c);
    /* n = round(c / ln2) by the 1.5 * 2^23 trick: the sum's low mantissa
     * bits hold n. */
    float k = c * 1.44269504088896341f + 12582912.0f;
    float fn = k - 12582912.0f;
    uint32_t kb;
    memcpy(&kb, &k, 4);
    int32_t n = (int32_t)(kb - 0x4b400000u);
    float r = c - fn * 0.693359375f + fn * 2.12194440e-4f; /* ln2 in two parts */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t h = n / 2;
    uint32_t b1 = (uint32_t)(h + 127) << 23, b2 = (uint32_t)(n - h + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    return p * s1 * s2;
}

/* ---- math ----------------------------------------------------------------- */

UN_FLOAT(abs, fabs(v))
UN_SINT(abs, v < 0 ? (T)((UT)0 - (UT)v) : v)
UN_UINT(abs, v)
UN_KERNEL(abs, EW_TBL_NUM(abs))

UN_FLOAT(neg, -v)
UN_SINT(neg, (T)((UT)0 - (UT)v))
UN_KERNEL(neg, EW_TBL_FLOAT(neg), EW_TBL_SINT(neg))

UN_FLOAT(sign, v > 0 ? (T)1 : v < 0 ? (T)-1 : v)
UN_SINT(sign, (v > 0) - (v < 0))
UN_UINT(sign, v > 0)
UN_KERNEL(sign, EW_TBL_NUM(sign))

EW_UNARY_FN(exp_f32, float, float, float, fast_expf(v))
EW_UNARY_FN(exp_f64, double, double, double, exp(v))
UN_KERNEL(exp, EW_TBL_FLOAT(exp))
UN_FLOAT_KERNEL(log, log(v))
UN_FLOAT_KERNEL(sqrt, sqrt(v))
UN_FLOAT_KERNEL(reciprocal, (T)1 / v)
UN_FLOAT_KERNEL(floor, floor(v))
UN_FLOAT_KERNEL(ceil, ceil(v))
UN_FLOAT_KERNEL(round, rint(v)) /* default rounding mode: half to even */
UN_FLOAT_KERNEL(sin, sin(v))
UN_FLOAT_KERNEL(cos, cos(v))
UN_FLOAT_KERNEL(tan, tan(v))
UN_FLOAT_KERNEL(asin, asin(v))
UN_FLOAT_KERNEL(acos, acos(v))
UN_FLOAT_KERNEL(atan, atan(v))
UN_FLOAT_KERNEL(sinh, sinh(v))
UN_FLOAT_KERNEL(cosh, cosh(v))
UN_FLOAT_KERNEL(asinh, asinh(v))
UN_FLOAT_KERNEL(acosh, acosh(v))
UN_FLOAT_KERNEL(atanh, atanh(v))
EW_UNARY_FN(erf_f32, float, float, float, ru_erff(v))
EW_UNARY_FN(erf_f64, double, double, double, erf(v))
UN_KERNEL(erf, EW_TBL_FLOAT(erf))

/* ---- activations without attributes --------------------------------------- */

UN_FLOAT(relu, v < 0 ? (T)0 : v)
UN_SINT(relu, v < 0 ? (T)0 : v)
UN_KERNEL(relu, EW_TBL_FLOAT(relu), EW_TBL_SINT(relu))

EW_UNARY_FN(sigmoid_f32, float, float, float, 1.0f / (1.0f + fast_expf(-v)))
EW_UNARY_FN(sigmoid_f64, double, double, double, 1.0 / (1.0 + exp(-v)))
UN_KERNEL(sigmoid, EW_TBL_FLOAT(sigmoid))
EW_UNARY_FN(tanh_f32, float, float, float, ru_tanhf(v))
EW_UNARY_FN(tanh_f64, double, double, double, tanh(v))
UN_KERNEL(tanh, EW_TBL_FLOAT(tanh))
UN_FLOAT_KERNEL(softsign, v / ((T)1 + fabs(v)))
/* log(1 + e^v) without overflow for large v. */
#define SOFTPLUS(v) ((v) > 0 ? (v) + log1p(exp(-(v))) : log1p(exp(v)))
UN_FLOAT_KERNEL(softplus, SOFTPLUS(v))
/* clang-format off */
UN_FLOAT_KERNEL(mish, v * tanh(SOFTPLUS(v)))
/* x * clamp(x/6 + 1/2, 0, 1) */
#define HARD_SWISH(t) EW_SEL((t) > (T)1, (T)1, EW_SEL((t) < (T)0, (T)0, (t)))
UN_FLOAT_KERNEL(hard_swish, v * HARD_SWISH(v * (T)(1.0 / 6) + (T)0.5))
/* clang-format on */

/* ---- activations with attributes ------------------------------------------- */

/* Runs a float op whose loops read p.alpha/beta/gamma, from the attributes
 * named a, b, g (NULL: unused) with their spec defaults. */
static tern_status *unary_attrs(op_ctx *c, const ew_table tbl, const char *a, double da,
                                const char *b, double db, const char *g, double dg)
{
    ew_args p = {0};
    p.alpha = a ? op_attr_float(c, a, (float)da) : 0;
    p.beta = b ? op_attr_float(c, b, (float)db) : 0;
    p.gamma = g ? op_attr_float(c, g, (float)dg) : 0;
    return unary(c, tbl, &p, TERN_UNDEFINED);
}

#define UN_ATTR_KERNEL(op, expr, ...)                                                              \
    UN_FLOAT(op, expr)                                                                             \
    tern_status *ew_##op(op_ctx *c)                                                                \
    {                                                                                              \
        static const ew_table tbl = {EW_TBL_FLOAT(op)};                                            \
        return unary_attrs(c, tbl, __VA_ARGS__);                                                   \
    }

/* clang-format off */
UN_ATTR_KERNEL(elu, v < 0 ? (T)P.alpha * expm1(v) : v, "alpha", 1.0, NULL, 0, NULL, 0)
UN_ATTR_KERNEL(selu, v > 0 ? (T)P.gamma * v : (T)P.gamma * (T)P.alpha * expm1(v),
               "alpha", 1.67326319217681884765625, NULL, 0, "gamma", 1.05070102214813232421875)
UN_ATTR_KERNEL(leaky_relu, EW_SEL(v < 0, (T)P.alpha * v, v), "alpha", 0.01, NULL, 0, NULL, 0)
UN_ATTR_KERNEL(hard_sigmoid, CLAMP((T)P.alpha * v + (T)P.beta, (T)0, (T)1),
               "alpha", 0.2, "beta", 0.5, NULL, 0)
UN_ATTR_KERNEL(celu, (v > 0 ? v : (T)0) + fmin((T)0, (T)P.alpha * expm1(v / (T)P.alpha)),
               "alpha", 1.0, NULL, 0, NULL, 0)
UN_ATTR_KERNEL(thresholded_relu, v > (T)P.alpha ? v : (T)0, "alpha", 1.0, NULL, 0, NULL, 0)
UN_ATTR_KERNEL(shrink, v < -(T)P.alpha ? v + (T)P.beta : v > (T)P.alpha ? v - (T)P.beta : (T)0,
               "lambd", 0.5, "bias", 0.0, NULL, 0)
/* clang-format on */

/* ---- logical and predicates ------------------------------------------------- */

EW_UNARY_FN(not_b, uint8_t, uint8_t, uint8_t, v == 0)
UN_KERNEL(not, [TERN_BOOL] = not_b)

UN_SINT(bitwise_not, (T)~v)
UN_UINT(bitwise_not, (T)~v)
UN_KERNEL(bitwise_not, EW_TBL_INT(bitwise_not))

EW_FLOAT_TYPES(UN_FN, isnan, uint8_t, isnan(v))
tern_status *ew_isnan(op_ctx *c)
{
    static const ew_table tbl = {EW_TBL_FLOAT(isnan)};
    ew_args p = {0};
    return unary(c, tbl, &p, TERN_BOOL);
}

EW_FLOAT_TYPES(UN_FN, isinf, uint8_t, isinf(v) && (v > 0 ? P.i0 : P.i1))
tern_status *ew_isinf(op_ctx *c)
{
    static const ew_table tbl = {EW_TBL_FLOAT(isinf)};
    ew_args p = {0};
    p.i0 = op_attr_int(c, "detect_positive", 1) != 0;
    p.i1 = op_attr_int(c, "detect_negative", 1) != 0;
    return unary(c, tbl, &p, TERN_BOOL);
}

/* ---- Clip -------------------------------------------------------------------
 * Bounds come from attributes before opset 11 and from optional scalar inputs
 * 1 and 2 since; float bounds ride in p.alpha/beta, integer ones in p.i0/i1
 * (as int64 bit patterns that convert back exactly to T). */

UN_FLOAT(clip, CLAMP(v, (T)P.alpha, (T)P.beta))
UN_SINT(clip, CLAMP(v, (T)P.i0, (T)P.i1))
UN_UINT(clip, CLAMP(v, (T)P.i0, (T)P.i1))

static void int_limits(tern_dtype dt, int64_t *lo, int64_t *hi)
{
    switch (dt) {
    case TERN_INT8: *lo = INT8_MIN, *hi = INT8_MAX; break;
    case TERN_INT16: *lo = INT16_MIN, *hi = INT16_MAX; break;
    case TERN_INT32: *lo = INT32_MIN, *hi = INT32_MAX; break;
    case TERN_UINT8: *lo = 0, *hi = UINT8_MAX; break;
    case TERN_UINT16: *lo = 0, *hi = UINT16_MAX; break;
    case TERN_UINT32: *lo = 0, *hi = UINT32_MAX; break;
    case TERN_UINT64: *lo = 0, *hi = -1; break; /* UINT64_MAX as a bit pattern */
    default: *lo = INT64_MIN, *hi = INT64_MAX; break;
    }
}

static tern_status *clip_bound(op_ctx *c, int i, const tern_tensor *x, ew_args *p, bool hi)
{
    if (i >= c->n_in || !c->in[i]) return NULL;
    const tern_tensor *b = c->in[i];
    if (b->kind != TENSOR_DENSE || b->dtype != x->dtype)
        return op_error(c, "%s must be a tensor of the input's type", hi ? "max" : "min");
    if (b->numel != 1) return op_error(c, "%s must be a scalar", hi ? "max" : "min");
    if (dtype_is_float(x->dtype))
        *(hi ? &p->beta : &p->alpha) = op_get_f64(b, 0);
    else
        *(hi ? &p->i1 : &p->i0) = op_get_i64(b, 0);
    return NULL;
}

tern_status *ew_clip(op_ctx *c)
{
    static const ew_table tbl = {EW_TBL_NUM(clip)};
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    ew_args p = {0};
    int_limits(x->dtype, &p.i0, &p.i1);
    if (c->opset < 11) {
        p.alpha = op_attr_float(c, "min", -FLT_MAX);
        p.beta = op_attr_float(c, "max", FLT_MAX);
    } else {
        p.alpha = -INFINITY;
        p.beta = INFINITY;
        TERN_TRY(clip_bound(c, 1, x, &p, false));
        TERN_TRY(clip_bound(c, 2, x, &p, true));
    }
    return unary(c, tbl, &p, TERN_UNDEFINED);
}

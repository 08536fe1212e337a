/*
 * Shared machinery of the elementwise family (elementwise*.c).
 *
 * Every elementwise kernel reduces to an inner loop `ew_loop` over n elements
 * of up to three inputs, each input advancing by 0 (broadcast) or 1 element
 * per output element. ew_run() computes the numpy broadcast of the inputs,
 * collapses dimensions that are contiguous in every operand (so equal shapes
 * and scalar/vector broadcasts become a single long run), and hands runs of
 * the output to the inner loop, split across the thread pool.
 *
 * Inner loops are written per C type with the macros below, which give the
 * compiler a branch-free body for each of the stride cases so it can
 * vectorise them; each is compiled for SSE2, AVX2 and AVX-512 and picked at
 * run time (core/cpu.h). float16 and bfloat16 have no loops of their own: ew_pick
 * wraps the float32 loop with blockwise conversion (ew_half_loop).
 */
#ifndef TERN_OPS_ELEMENTWISE_H
#define TERN_OPS_ELEMENTWISE_H

#include <string.h>

#include "core/cpu.h"
#include "ops/op.h"

#define EW_MAX_IN 3

typedef struct ew_args ew_args;

/* x[k] advances by step[k] (0 or 1) elements; y is dense. */
typedef void (*ew_loop)(const ew_args *p, const void *const *x, const int64_t *step, void *y,
                        int64_t n);

struct ew_args {
    double alpha, beta, gamma; /* op attributes */
    int64_t i0, i1;            /* integer attributes (IsInf flags, Clip bounds) */
    tern_dtype xdt[EW_MAX_IN], ydt;
    ew_loop f32; /* the float32 loop that a float16/bfloat16 wrapper calls */
};

/* One loop per dtype, indexed by tern_dtype; NULL entries are unsupported.
 * A NULL float16/bfloat16 entry falls back to the float32 loop. */
typedef ew_loop ew_table[TERN_BFLOAT16 + 1];

/* Runs loop over the broadcast of in[0..n_in) into y, which must already
 * have the broadcast shape. p->xdt/ydt are filled from the tensors. With
 * parallel == false the loop runs on the calling thread (string ops). */
void ew_run(op_ctx *c, ew_loop loop, ew_args *p, int n_in, const tern_tensor *const *in,
            tern_tensor *y, bool parallel);

/* Picks the loop for dtype dt from a table (the float32 loop wrapped for the
 * 16-bit floats), or returns NULL. Sets p->f32 when it wraps. */
ew_loop ew_pick(const ew_table tbl, tern_dtype dt, ew_args *p);

/* Allocates output 0 with the broadcast shape of in[0..n_in) and dtype dt. */
tern_status *ew_out_bcast(op_ctx *c, int n_in, const tern_tensor *const *in, tern_dtype dt,
                          tern_tensor **y);

/* Stores v as element i of a dtype dt buffer; integer targets saturate to
 * their range and NaN becomes 0 (dtype_set_f64 saturates to int64 only). */
void ew_set_f64_sat(tern_dtype dt, void *data, int64_t i, double v);

/* Error naming an unsupported input dtype. */
tern_status *ew_bad_dtype(const op_ctx *c, tern_dtype dt);

/* ---- inner loop generators -------------------------------------------------
 * Inside an expression: T is the element type, UT its unsigned counterpart,
 * P the ew_args. Unary expressions read `v`; binary ones `x` and `z`. */

#define EW_UNARY_FN(name, T_, UT_, Y_, expr)                                                       \
    static TERN_INLINE void name##_impl(const ew_args *p, const void *const *x_, const int64_t *st,  \
                                        void *y_, int64_t n)                                       \
    {                                                                                              \
        typedef T_ T;                                                                              \
        typedef UT_ UT;                                                                            \
        const ew_args P = *p; /* a local copy: no aliasing with y */                               \
        (void)P;                                                                                   \
        (void)sizeof(UT);                                                                          \
        const T *x = x_[0];                                                                        \
        Y_ *y = y_;                                                                                \
        if (st[0]) {                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T v = x[i];                                                                        \
                y[i] = (Y_)(expr);                                                                 \
            }                                                                                      \
        } else {                                                                                   \
            T v = x[0];                                                                            \
            Y_ r = (Y_)(expr);                                                                     \
            for (int64_t i = 0; i < n; i++) y[i] = r;                                              \
        }                                                                                          \
    }                                                                                              \
    TERN_MULTI_VOID(name,                                                                          \
                    (const ew_args *p, const void *const *x_, const int64_t *st, void *y_,         \
                     int64_t n),                                                                   \
                    (p, x_, st, y_, n))

#define EW_BINARY_FN(name, T_, UT_, Y_, expr)                                                      \
    static TERN_INLINE void name##_impl(const ew_args *p, const void *const *x_, const int64_t *st,  \
                                        void *y_, int64_t n)                                       \
    {                                                                                              \
        typedef T_ T;                                                                              \
        typedef UT_ UT;                                                                            \
        const ew_args P = *p; /* a local copy: no aliasing with y */                               \
        (void)P;                                                                                   \
        (void)sizeof(UT);                                                                          \
        const T *a = x_[0], *b = x_[1];                                                            \
        Y_ *y = y_;                                                                                \
        if (st[0] && st[1]) {                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i], z = b[i];                                                              \
                y[i] = (Y_)(expr);                                                                 \
            }                                                                                      \
        } else if (st[0]) {                                                                        \
            const T z = b[0];                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i];                                                                        \
                y[i] = (Y_)(expr);                                                                 \
            }                                                                                      \
        } else if (st[1]) {                                                                        \
            const T x = a[0];                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T z = b[i];                                                                        \
                y[i] = (Y_)(expr);                                                                 \
            }                                                                                      \
        } else {                                                                                   \
            const T x = a[0], z = b[0];                                                            \
            const Y_ r = (Y_)(expr);                                                               \
            for (int64_t i = 0; i < n; i++) y[i] = r;                                              \
        }                                                                                          \
    }                                                                                              \
    TERN_MULTI_VOID(name,                                                                          \
                    (const ew_args *p, const void *const *x_, const int64_t *st, void *y_,         \
                     int64_t n),                                                                   \
                    (p, x_, st, y_, n))

/* c ? a : b for float/double as a bit blend. GCC's default -ftrapping-math
 * will not vectorise a loop whose float arithmetic feeds a ?: or sits in one
 * of its arms (it may move the arithmetic under the branch and then cannot
 * execute it speculatively); a blend has no branch to move it into. */
static inline float ew_sel_f32(int c, float a, float b)
{
    uint32_t ua, ub, m = 0u - (uint32_t)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & m) | (ub & ~m);
    memcpy(&a, &ua, sizeof a);
    return a;
}
static inline double ew_sel_f64(int c, double a, double b)
{
    uint64_t ua, ub, m = 0u - (uint64_t)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & m) | (ub & ~m);
    memcpy(&a, &ua, sizeof a);
    return a;
}
#define EW_SEL(c, a, b) _Generic((a), float : ew_sel_f32, double : ew_sel_f64)((c), (a), (b))

/* X(sfx, T, UT, ...) for each type family. UT is the unsigned type integer
 * arithmetic wraps in: at least `unsigned`, so that narrow operands do not
 * promote to (overflowing) int. */
#define EW_FLOAT_TYPES(X, ...) X(f32, float, float, __VA_ARGS__) X(f64, double, double, __VA_ARGS__)
#define EW_SINT_TYPES(X, ...)                                                                      \
    X(i8, int8_t, unsigned, __VA_ARGS__)                                                           \
    X(i16, int16_t, unsigned, __VA_ARGS__)                                                         \
    X(i32, int32_t, uint32_t, __VA_ARGS__)                                                         \
    X(i64, int64_t, uint64_t, __VA_ARGS__)
#define EW_UINT_TYPES(X, ...)                                                                      \
    X(u8, uint8_t, unsigned, __VA_ARGS__)                                                          \
    X(u16, uint16_t, unsigned, __VA_ARGS__)                                                        \
    X(u32, uint32_t, uint32_t, __VA_ARGS__)                                                        \
    X(u64, uint64_t, uint64_t, __VA_ARGS__)
#define EW_INT_TYPES(X, ...) EW_SINT_TYPES(X, __VA_ARGS__) EW_UINT_TYPES(X, __VA_ARGS__)

/* Table initialisers from functions named <op>_<sfx>. */
#define EW_TBL_FLOAT(op) [TERN_FLOAT] = op##_f32, [TERN_DOUBLE] = op##_f64
#define EW_TBL_SINT(op)                                                                            \
    [TERN_INT8] = op##_i8, [TERN_INT16] = op##_i16, [TERN_INT32] = op##_i32, [TERN_INT64] = op##_i64
#define EW_TBL_UINT(op)                                                                            \
    [TERN_UINT8] = op##_u8, [TERN_UINT16] = op##_u16, [TERN_UINT32] = op##_u32,                    \
    [TERN_UINT64] = op##_u64
#define EW_TBL_INT(op) EW_TBL_SINT(op), EW_TBL_UINT(op)
#define EW_TBL_NUM(op) EW_TBL_FLOAT(op), EW_TBL_INT(op)

/* ---- kernels (registered in elementwise.c) -------------------------------- */

/* elementwise_unary.c */
tern_status *ew_abs(op_ctx *c);
tern_status *ew_neg(op_ctx *c);
tern_status *ew_exp(op_ctx *c);
tern_status *ew_log(op_ctx *c);
tern_status *ew_sqrt(op_ctx *c);
tern_status *ew_reciprocal(op_ctx *c);
tern_status *ew_floor(op_ctx *c);
tern_status *ew_ceil(op_ctx *c);
tern_status *ew_round(op_ctx *c);
tern_status *ew_sign(op_ctx *c);
tern_status *ew_sin(op_ctx *c);
tern_status *ew_cos(op_ctx *c);
tern_status *ew_tan(op_ctx *c);
tern_status *ew_asin(op_ctx *c);
tern_status *ew_acos(op_ctx *c);
tern_status *ew_atan(op_ctx *c);
tern_status *ew_sinh(op_ctx *c);
tern_status *ew_cosh(op_ctx *c);
tern_status *ew_asinh(op_ctx *c);
tern_status *ew_acosh(op_ctx *c);
tern_status *ew_atanh(op_ctx *c);
tern_status *ew_erf(op_ctx *c);
tern_status *ew_relu(op_ctx *c);
tern_status *ew_sigmoid(op_ctx *c);
tern_status *ew_tanh(op_ctx *c);
tern_status *ew_elu(op_ctx *c);
tern_status *ew_selu(op_ctx *c);
tern_status *ew_leaky_relu(op_ctx *c);
tern_status *ew_hard_sigmoid(op_ctx *c);
tern_status *ew_hard_swish(op_ctx *c);
tern_status *ew_softplus(op_ctx *c);
tern_status *ew_softsign(op_ctx *c);
tern_status *ew_celu(op_ctx *c);
tern_status *ew_thresholded_relu(op_ctx *c);
tern_status *ew_mish(op_ctx *c);
tern_status *ew_shrink(op_ctx *c);
tern_status *ew_not(op_ctx *c);
tern_status *ew_bitwise_not(op_ctx *c);
tern_status *ew_isnan(op_ctx *c);
tern_status *ew_isinf(op_ctx *c);
tern_status *ew_clip(op_ctx *c);

/* elementwise_binary.c */
tern_status *ew_add(op_ctx *c);
tern_status *ew_sub(op_ctx *c);
tern_status *ew_mul(op_ctx *c);
tern_status *ew_div(op_ctx *c);
tern_status *ew_pow(op_ctx *c);
tern_status *ew_mod(op_ctx *c);
tern_status *ew_prelu(op_ctx *c);
tern_status *ew_bitshift(op_ctx *c);
tern_status *ew_bitwise_and(op_ctx *c);
tern_status *ew_bitwise_or(op_ctx *c);
tern_status *ew_bitwise_xor(op_ctx *c);
tern_status *ew_and(op_ctx *c);
tern_status *ew_or(op_ctx *c);
tern_status *ew_xor(op_ctx *c);
tern_status *ew_equal(op_ctx *c);
tern_status *ew_less(op_ctx *c);
tern_status *ew_less_equal(op_ctx *c);
tern_status *ew_greater(op_ctx *c);
tern_status *ew_greater_equal(op_ctx *c);
tern_status *ew_sum(op_ctx *c);
tern_status *ew_mean(op_ctx *c);
tern_status *ew_max(op_ctx *c);
tern_status *ew_min(op_ctx *c);
tern_status *ew_where(op_ctx *c);

/* elementwise_cast.c */
tern_status *ew_cast(op_ctx *c);
tern_status *ew_cast_like(op_ctx *c);

#endif

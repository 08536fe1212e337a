/*
 * Helpers shared by the reduce and norm families (reduce.c, norm.c,
 * norm_softmax.c). Those kernels have a float32 fast path for the layouts
 * real models use and a reference path in double for every other dtype and
 * layout; these helpers move tensors in and out of that double form and cut
 * a shape into [outer, n, inner] around an axis.
 */
#ifndef TERN_OPS_REDUCE_UTIL_H
#define TERN_OPS_REDUCE_UTIL_H

#include <math.h>
#include <string.h>

#include "ops/op.h"

/* Product of dims[from..to). */
static inline int64_t ru_prod(const int64_t *dims, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= dims[i];
    return p;
}

/* The elements of t as doubles: t's own data when it is float64, else a
 * converted copy in scratch. */
static inline tern_status *ru_load_f64(op_ctx *c, const tern_tensor *t, const double **out)
{
    if (t->dtype == TERN_DOUBLE) {
        *out = (const double *)t->data;
        return NULL;
    }
    double *d;
    TERN_TRY(op_scratch(c, (size_t)(t->numel ? t->numel : 1) * sizeof(double), (void **)&d));
    for (int64_t i = 0; i < t->numel; i++) d[i] = op_get_f64(t, i);
    *out = d;
    return NULL;
}

/* A double buffer to compute output t in: t's data when it is float64, else
 * scratch that ru_store_f64 converts into t afterwards. */
static inline tern_status *ru_work_f64(op_ctx *c, tern_tensor *t, double **out)
{
    if (t->dtype == TERN_DOUBLE) {
        *out = (double *)t->data;
        return NULL;
    }
    return op_scratch(c, (size_t)(t->numel ? t->numel : 1) * sizeof(double), (void **)out);
}

static inline void ru_store_f64(tern_tensor *t, const double *v)
{
    if (t->data == (const void *)v) return;
    for (int64_t i = 0; i < t->numel; i++) dtype_set_f64(t->dtype, t->data, i, v[i]);
}

/* Requires input i to be a dense tensor of a float type. */
static inline tern_status *ru_need_float(const op_ctx *c, int i)
{
    TERN_TRY(op_need_input(c, i));
    const tern_tensor *t = c->in[i];
    if (t->kind != TENSOR_DENSE || !dtype_is_float(t->dtype))
        return op_error(c, "input %d must be a float tensor, got %s", i, tern_dtype_name(t->dtype));
    return NULL;
}

/* Reads a scalar (or one-element) input as double / int64. */
static inline tern_status *ru_scalar_f64(const op_ctx *c, const tern_tensor *t, const char *what,
                                         double *v)
{
    if (t->kind != TENSOR_DENSE || t->numel != 1 ||
        !(dtype_is_float(t->dtype) || dtype_is_int(t->dtype) || t->dtype == TERN_BOOL))
        return op_error(c, "%s must be a one-element numeric tensor", what);
    *v = op_get_f64(t, 0);
    return NULL;
}

static inline tern_status *ru_scalar_i64(const op_ctx *c, const tern_tensor *t, const char *what,
                                         int64_t *v)
{
    if (t->kind != TENSOR_DENSE || t->numel != 1 || !dtype_is_int(t->dtype))
        return op_error(c, "%s must be a one-element integer tensor", what);
    *v = op_get_i64(t, 0);
    return NULL;
}

/* Sum of n floats: eight float lanes over blocks of 1024 (so the compiler
 * vectorises it) folded into a double, which keeps long sums accurate. */
static inline double ru_sum_f32(const float *x, int64_t n)
{
    double total = 0;
    for (int64_t b = 0; b < n; b += 1024) {
        int64_t e = n - b < 1024 ? n - b : 1024, i = 0;
        float l[8] = {0};
        for (; i + 8 <= e; i += 8)
            for (int j = 0; j < 8; j++) l[j] += x[b + i + j];
        float s = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        for (; i < e; i++) s += x[b + i];
        total += s;
    }
    return total;
}

/* Sum of (x[i] - m)^2, same blocking as ru_sum_f32. */
static inline double ru_sumsq_dev_f32(const float *x, int64_t n, float m)
{
    double total = 0;
    for (int64_t b = 0; b < n; b += 1024) {
        int64_t e = n - b < 1024 ? n - b : 1024, i = 0;
        float l[8] = {0};
        for (; i + 8 <= e; i += 8)
            for (int j = 0; j < 8; j++) {
                float d = x[b + i + j] - m;
                l[j] += d * d;
            }
        float s = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        for (; i < e; i++) {
            float d = x[b + i] - m;
            s += d * d;
        }
        total += s;
    }
    return total;
}

/* mask ? a : b for a mask of all ones or all zeros, in the integer domain:
 * GCC if-converts this where it leaves a float `?:` as a branch. */
static inline float ru_select(uint32_t mask, float a, float b)
{
    uint32_t ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    ua = (ua & mask) | (ub & ~mask);
    memcpy(&a, &ua, 4);
    return a;
}

/* Maximum of n > 0 floats. NaNs are skipped: softmax, the caller, turns a
 * NaN input into NaN outputs through its sum anyway. */
static inline float ru_max_f32(const float *x, int64_t n)
{
    float l[8];
    int64_t i = 0;
    for (int j = 0; j < 8; j++) l[j] = -INFINITY;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) l[j] = x[i + j] > l[j] ? x[i + j] : l[j];
    float m = l[0];
    for (int j = 1; j < 8; j++) m = l[j] > m ? l[j] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* exp(x) for float32 softmax: Cephes' polynomial on x - n*ln2, scaled by 2^n
 * through the exponent bits. Branch-free so loops over it vectorise; within
 * 1 ulp of exp over [-87.3, 88], clamped to exp(88) above and 0 below (so
 * exp(-inf) is 0); NaN in gives NaN out. */
static inline float ru_expf(float x)
{
    uint32_t under = 0u - (uint32_t)(x < -87.3f), over = 0u - (uint32_t)(x > 88.0f);
    x = ru_select(over, 88.0f, ru_select(under, -87.3f, x));
    float t = x * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23 rounds to an integer */
    float n = t - 12582912.0f;
    uint32_t ti;
    memcpy(&ti, &t, 4);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    uint32_t eb = (ti - 0x4B400000u + 127u) << 23; /* 2^n, n in [-126, 127] */
    float scale;
    memcpy(&scale, &eb, 4);
    return ru_select(under, 0.0f, y * scale);
}

/* erf for Erf and GELU: libm's is a scalar call per element, which made GELU one of the
 * slowest ops of a transformer. Here erf(x) = x P(x^2) / Q(x^2) for |x| <
 * 3.92 and +-1 beyond (where erf rounds to 1 in float), P of degree 5 and Q
 * of degree 5 in x^2, a rational least-squares fit made for tern (error of
 * the fit 2e-8; evaluated in float, within 5e-7 of the true erf). No branch
 * and no libm call, so the loop vectorises; NaN propagates.
 */
static inline float ru_erff(float x)
{
    float z = ru_select(0u - (uint32_t)(x > 3.93f), 3.93f, x);
    z = ru_select(0u - (uint32_t)(z < -3.93f), -3.93f, z);
    float t = z * z;
    float p = 2.033922783084563e-06f;
    p = p * t + 2.868563460651785e-04f;
    p = p * t + 3.851941553875804e-03f;
    p = p * t + 5.300862342119217e-02f;
    p = p * t + 1.924148797988892e-01f;
    p = p * t + 1.128378987312317f;
    float q = 3.803006620728411e-05f;
    q = q * t + 1.183679327368736e-03f;
    q = q * t + 1.513953972607851e-02f;
    q = q * t + 1.149350851774216e-01f;
    q = q * t + 5.038550496101379e-01f;
    q = q * t + 1.0f;
    float r = z * p / q;
    /* exactly +-1 where erf rounds to it, so that x * (1 + erf) of -inf is
     * NaN, as the unfused graph computes */
    r = ru_select(0u - (uint32_t)(x >= 3.92f), 1.0f, r);
    return ru_select(0u - (uint32_t)(x <= -3.92f), -1.0f, r);
}

/* tanh from ru_expf for |x| >= 0.625, Cephes' odd polynomial below (where
 * 1 - 2/(e^2|x| + 1) would cancel). Within 2 ulp; branch-free like ru_expf. */
static inline float ru_tanhf(float x)
{
    float a = ru_select(0u - (uint32_t)(x < 0), -x, x);
    float big = 1.0f - 2.0f / (ru_expf(2.0f * a) + 1.0f);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    return ru_select(0u - (uint32_t)(a < 0.625f), small,
                     ru_select(0u - (uint32_t)(x < 0), -big, big));
}

/* Grain for tpool_for: enough items per chunk for ~16k elements of work. */
static inline int64_t ru_grain(int64_t work_per_item)
{
    int64_t g = 16384 / (work_per_item > 0 ? work_per_item : 1);
    return g > 0 ? g : 1;
}

#endif

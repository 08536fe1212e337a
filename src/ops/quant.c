/*
 * Operator family: linear quantisation (QuantizeLinear, DequantizeLinear,
 * DynamicQuantizeLinear).
 *
 * Quantisation maps a real x to an 8-bit integer q = sat(rint(x / scale) + zp),
 * rounding half to even as numpy's rint does, and saturating to the range of
 * the zero point's type (uint8 [0,255] or int8 [-128,127]). Dequantisation is
 * the inverse, (q - zp) * scale, in float as the ONNX reference computes it.
 *
 * The scale (and zero point) are either scalars (per-tensor) or, from opset 13,
 * 1-D tensors of length dims[axis] (per-axis: one scale per channel). Both
 * cases run through the same loop: element e belongs to channel
 * (e / inner) % channels, with channels = 1 for per-tensor parameters. The
 * element range is split across the thread pool; each chunk tracks its
 * channel incrementally instead of dividing per element.
 */
#include <math.h>
#include <string.h>

#include "ops/op.h"

/* Per-tensor or per-axis layout of the scale / zero point. */
typedef struct qlayout {
    int64_t channels; /* 1 for per-tensor */
    int64_t inner;    /* elements per channel run */
} qlayout;

static tern_status *quant_layout(op_ctx *c, const tern_tensor *x, const tern_tensor *scale,
                                 const tern_tensor *zp, qlayout *l)
{
    if (scale->kind != TENSOR_DENSE || (zp && zp->kind != TENSOR_DENSE))
        return op_error(c, "scale and zero point must be tensors");
    if (zp && zp->numel != scale->numel)
        return op_error(c, "zero point has %lld elements but scale has %lld", (long long)zp->numel,
                        (long long)scale->numel);
    l->channels = 1;
    l->inner = x->numel ? x->numel : 1;
    if (scale->numel == 1 && scale->rank <= 1) return NULL;
    if (c->opset < 13 || scale->rank != 1)
        return op_error(c, "scale must be a scalar%s", c->opset < 13 ? "" : " or a 1-D tensor");
    int axis;
    TERN_TRY(op_axis(c, op_attr_int(c, "axis", 1), x->rank, &axis));
    if (x->rank == 0 || scale->dims[0] != x->dims[axis])
        return op_error(c, "scale has %lld elements but axis %d of the input has %lld",
                        (long long)scale->dims[0], axis, (long long)(x->rank ? x->dims[axis] : 1));
    l->channels = scale->dims[0];
    l->inner = 1;
    for (int i = axis + 1; i < x->rank; i++) l->inner *= x->dims[i];
    if (l->inner == 0) l->inner = 1;
    return NULL;
}

/* ---- QuantizeLinear ------------------------------------------------------ */

typedef struct quant_job {
    const tern_tensor *x;
    const float *scale;
    const float *zp; /* zero points as float, one per channel */
    void *y;
    tern_dtype ydt;
    float lo, hi;
    qlayout l;
} quant_job;

/* rint(v) + zp saturated to [lo, hi]; NaN maps to the zero point. */
static inline float quant_one(float v, float zp, float lo, float hi)
{
    float q = rintf(v);
    if (q != q) q = 0;
    q += zp;
    return q < lo ? lo : q > hi ? hi : q;
}

static void quant_range(void *arg, int64_t begin, int64_t end)
{
    const quant_job *j = arg;
    int64_t ch = (begin / j->l.inner) % j->l.channels, left = j->l.inner - begin % j->l.inner;
    tern_dtype xdt = j->x->dtype;
    const float *xf = j->x->data;
    for (int64_t e = begin; e < end; e++) {
        float s = j->scale[ch], q;
        if (xdt == TERN_FLOAT)
            q = quant_one(xf[e] / s, j->zp[ch], j->lo, j->hi);
        else if (xdt == TERN_FLOAT16 || xdt == TERN_BFLOAT16)
            q = quant_one((float)op_get_f64(j->x, e) / s, j->zp[ch], j->lo, j->hi);
        else /* int32, double: the reference divides in double */
            q = quant_one((float)(op_get_f64(j->x, e) / s), j->zp[ch], j->lo, j->hi);
        if (j->ydt == TERN_UINT8)
            ((uint8_t *)j->y)[e] = (uint8_t)q;
        else
            ((int8_t *)j->y)[e] = (int8_t)q;
        if (--left == 0) {
            left = j->l.inner;
            if (++ch == j->l.channels) ch = 0;
        }
    }
}

/* Reads scale and zero point (absent: 0) into float arrays of n entries. */
static tern_status *quant_params(op_ctx *c, const tern_tensor *scale, const tern_tensor *zp,
                                 float **s, float **z)
{
    int64_t n = scale->numel;
    if (!dtype_is_float(scale->dtype))
        return op_error(c, "scale must be a float tensor, got %s", tern_dtype_name(scale->dtype));
    TERN_TRY(op_scratch(c, (size_t)(2 * n + 1) * sizeof(float), (void **)s));
    *z = *s + n;
    for (int64_t i = 0; i < n; i++) {
        (*s)[i] = (float)op_get_f64(scale, i);
        (*z)[i] = zp ? (float)op_get_i64(zp, i) : 0.0f;
    }
    return NULL;
}

static tern_status *quantize_linear(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *x = c->in[0], *scale = c->in[1];
    const tern_tensor *zp = c->n_in > 2 ? c->in[2] : NULL;
    if (x->kind != TENSOR_DENSE) return op_error(c, "input must be a tensor");
    if (x->dtype != TERN_FLOAT && x->dtype != TERN_INT32 && x->dtype != TERN_DOUBLE &&
        x->dtype != TERN_FLOAT16 && x->dtype != TERN_BFLOAT16)
        return op_error(c, "unsupported input type %s", tern_dtype_name(x->dtype));
    quant_job j = {.x = x, .ydt = zp ? zp->dtype : TERN_UINT8};
    if (j.ydt == TERN_UINT8) {
        j.lo = 0, j.hi = 255;
    } else if (j.ydt == TERN_INT8) {
        j.lo = -128, j.hi = 127;
    } else {
        return op_error(c, "unsupported zero point type %s", tern_dtype_name(j.ydt));
    }
    TERN_TRY(quant_layout(c, x, scale, zp, &j.l));
    float *s, *z;
    TERN_TRY(quant_params(c, scale, zp, &s, &z));
    j.scale = s, j.zp = z;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, j.ydt, x->rank, x->dims, &y));
    j.y = y->data;
    tpool_for(c->pool, x->numel, 1 << 14, quant_range, &j);
    return NULL;
}

/* ---- DequantizeLinear ---------------------------------------------------- */

typedef struct dequant_job {
    const tern_tensor *x;
    const float *scale, *zp;
    float *y;
    qlayout l;
} dequant_job;

static void dequant_range(void *arg, int64_t begin, int64_t end)
{
    const dequant_job *j = arg;
    int64_t ch = (begin / j->l.inner) % j->l.channels, left = j->l.inner - begin % j->l.inner;
    const void *xd = j->x->data;
    for (int64_t e = begin; e < end; e++) {
        float v;
        switch (j->x->dtype) {
        case TERN_UINT8: v = ((const uint8_t *)xd)[e]; break;
        case TERN_INT8: v = ((const int8_t *)xd)[e]; break;
        default: v = (float)((const int32_t *)xd)[e]; break;
        }
        j->y[e] = (v - j->zp[ch]) * j->scale[ch];
        if (--left == 0) {
            left = j->l.inner;
            if (++ch == j->l.channels) ch = 0;
        }
    }
}

static tern_status *dequantize_linear(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *x = c->in[0], *scale = c->in[1];
    const tern_tensor *zp = c->n_in > 2 ? c->in[2] : NULL;
    if (x->kind != TENSOR_DENSE) return op_error(c, "input must be a tensor");
    if (x->dtype != TERN_UINT8 && x->dtype != TERN_INT8 && x->dtype != TERN_INT32)
        return op_error(c, "unsupported input type %s", tern_dtype_name(x->dtype));
    if (zp && zp->dtype != x->dtype)
        return op_error(c, "zero point type %s differs from input type %s",
                        tern_dtype_name(zp->dtype), tern_dtype_name(x->dtype));
    if (scale->dtype != TERN_FLOAT)
        return op_error(c, "scale must be float32, got %s", tern_dtype_name(scale->dtype));
    dequant_job j = {.x = x};
    TERN_TRY(quant_layout(c, x, scale, zp, &j.l));
    float *s, *z;
    TERN_TRY(quant_params(c, scale, zp, &s, &z));
    j.scale = s, j.zp = z;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_FLOAT, x->rank, x->dims, &y));
    j.y = y->data;
    tpool_for(c->pool, x->numel, 1 << 14, dequant_range, &j);
    return NULL;
}

/* ---- DynamicQuantizeLinear ----------------------------------------------- */

/* Scale and zero point from the range of x widened to include 0, then uint8
 * quantisation with them. An all-zero input gives scale 0: every q is 0. */
static tern_status *dynamic_quantize_linear(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE || x->dtype != TERN_FLOAT)
        return op_error(c, "input must be a float32 tensor");
    const float *xd = x->data;
    float mn = 0, mx = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        if (xd[i] < mn) mn = xd[i];
        if (xd[i] > mx) mx = xd[i];
    }
    /* As the reference: the range in float, divided in double. */
    float scale = (float)((double)(mx - mn) / 255.0), zpf = 0;
    if (scale != 0 && isfinite(scale)) zpf = quant_one((0 - mn) / scale, 0, 0, 255);
    tern_tensor *y, *ys, *yz;
    TERN_TRY(op_out(c, 0, TERN_UINT8, x->rank, x->dims, &y));
    TERN_TRY(op_out(c, 1, TERN_FLOAT, 0, NULL, &ys));
    TERN_TRY(op_out(c, 2, TERN_UINT8, 0, NULL, &yz));
    *(float *)ys->data = scale;
    *(uint8_t *)yz->data = (uint8_t)zpf;
    if (scale == 0 || !isfinite(scale)) {
        memset(y->data, (int)zpf, (size_t)x->numel);
        return NULL;
    }
    quant_job j = {.x = x, .ydt = TERN_UINT8, .lo = 0, .hi = 255};
    j.scale = &scale, j.zp = &zpf, j.y = y->data;
    j.l.channels = 1, j.l.inner = x->numel ? x->numel : 1;
    tpool_for(c->pool, x->numel, 1 << 14, quant_range, &j);
    return NULL;
}

const op_def ops_quant[] = {
    {"", "QuantizeLinear", 10, 17, quantize_linear},
    {"", "DequantizeLinear", 10, 17, dequantize_linear},
    {"", "DynamicQuantizeLinear", 11, 17, dynamic_quantize_linear},
    {0},
};

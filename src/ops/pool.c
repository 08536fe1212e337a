/*
 * Operator family: pooling. MaxPool (with Indices), AveragePool, LpPool,
 * their Global forms, and MaxUnpool, over any number of spatial dimensions.
 *
 * The window geometry comes from conv_geom (shared with Conv). For each
 * output position the window is clipped once per dimension to the input
 * [jlo, jhi) (and, for AveragePool with count_include_pad, to the padded
 * extent, which sets the divisor), then walked with an odometer. Planes
 * (image, channel) are independent and split over the thread pool.
 *
 * float32 runs directly; the other types (double, float16, int8, uint8) are
 * widened to double, pooled, and narrowed back: exact for every input value.
 *
 * MaxPool, AveragePool and the Global forms of both also take the
 * channel-blocked layout the oneDNN convolutions produce (LAYOUT_C16, see
 * core/tensor.h), so that a network's pools do not break a run of blocked
 * convolutions: the same window walk over vectors of 16 channels, written
 * back blocked (a global pool's [N, C, 1...] output is the same bytes
 * either way, so it is plain). Indices, LpPool and 3-D windows unblock the
 * input first. float32 MaxPool and AveragePool without Indices go through
 * oneDNN's pooling first when it takes the window (dnnl_pool.c), plain or
 * blocked: several times faster than these loops.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ops/conv_geom.h"
#include "ops/dnnl.h"
#include "ops/op.h"

typedef enum pool_mode { POOL_MAX, POOL_AVG, POOL_LP } pool_mode;

typedef struct pool_job {
    conv_geom g;
    pool_mode mode;
    bool include_pad; /* AveragePool: divisor counts padding */
    bool col_major;   /* MaxPool storage_order = 1 for Indices */
    double p;         /* LpPool exponent */
    const void *x;    /* float or double */
    void *y;          /* same type as x */
    int64_t *indices; /* MaxPool's second output, or NULL */
} pool_job;

/* One template for float and double planes. */
#define DEFINE_POOL_RANGE(NAME, T)                                                                 \
    static void NAME(void *arg, int64_t begin, int64_t end)                                        \
    {                                                                                              \
        const pool_job *j = arg;                                                                   \
        const conv_geom *g = &j->g;                                                                \
        int nsp = g->nsp;                                                                          \
        int64_t cm_stride[CONV_MAX_SP], rm_stride[CONV_MAX_SP], rs = 1, cs = 1;                    \
        for (int d = nsp - 1; d >= 0; d--) {                                                       \
            rm_stride[d] = rs;                                                                     \
            rs *= g->in[d];                                                                        \
        }                                                                                          \
        for (int d = 0; d < nsp; d++) {                                                            \
            cm_stride[d] = cs;                                                                     \
            cs *= g->in[d];                                                                        \
        }                                                                                          \
        for (int64_t plane = begin; plane < end; plane++) {                                        \
            const T *xp = (const T *)j->x + plane * g->in_size;                                    \
            T *yp = (T *)j->y + plane * g->out_size;                                               \
            int64_t o[CONV_MAX_SP] = {0};                                                          \
            for (int64_t op = 0; op < g->out_size; op++) {                                         \
                int64_t jlo[CONV_MAX_SP], jhi[CONV_MAX_SP], st[CONV_MAX_SP], wi[CONV_MAX_SP];      \
                int64_t divisor = 1, count = 1;                                                    \
                for (int d = 0; d < nsp; d++) {                                                    \
                    int64_t s = o[d] * g->stride[d] - g->pad0[d], dl = g->dil[d], k = g->k[d];     \
                    int64_t lo = s < 0 ? (-s + dl - 1) / dl : 0;                                   \
                    int64_t hi = g->in[d] - 1 - s < 0 ? 0 : (g->in[d] - 1 - s) / dl + 1;           \
                    int64_t hp = g->in[d] + g->pad1[d] - 1 - s < 0                                 \
                                     ? 0                                                           \
                                     : (g->in[d] + g->pad1[d] - 1 - s) / dl + 1;                   \
                    jlo[d] = lo;                                                                   \
                    jhi[d] = hi < k ? hi : k;                                                      \
                    st[d] = s;                                                                     \
                    wi[d] = lo;                                                                    \
                    count *= jhi[d] > lo ? jhi[d] - lo : 0;                                        \
                    divisor *= hp < k ? hp : k;                                                    \
                }                                                                                  \
                double acc = j->mode == POOL_MAX ? -INFINITY : 0.0;                                \
                int64_t best = -1;                                                                 \
                for (int64_t w = 0; w < count; w++) {                                              \
                    int64_t off = 0, cm = 0;                                                       \
                    for (int d = 0; d < nsp; d++) {                                                \
                        int64_t i = st[d] + wi[d] * g->dil[d];                                     \
                        off += i * rm_stride[d];                                                   \
                        cm += i * cm_stride[d];                                                    \
                    }                                                                              \
                    double v = (double)xp[off];                                                    \
                    if (j->mode == POOL_MAX) {                                                     \
                        if (v > acc || best < 0) {                                                 \
                            acc = v;                                                               \
                            best = j->col_major ? cm : off;                                        \
                        }                                                                          \
                    } else if (j->mode == POOL_AVG) {                                              \
                        acc += v;                                                                  \
                    } else {                                                                       \
                        acc += j->p == 2.0 ? v * v : j->p == 1.0 ? fabs(v) : pow(fabs(v), j->p);   \
                    }                                                                              \
                    for (int d = nsp - 1; d >= 0; d--) { /* odometer over the window */            \
                        if (++wi[d] < jhi[d]) break;                                               \
                        wi[d] = jlo[d];                                                            \
                    }                                                                              \
                }                                                                                  \
                if (j->mode == POOL_AVG) {                                                         \
                    int64_t n = j->include_pad ? divisor : count;                                  \
                    acc = n > 0 ? acc / (double)n : 0.0;                                           \
                } else if (j->mode == POOL_LP) {                                                   \
                    acc = j->p == 2.0 ? sqrt(acc) : j->p == 1.0 ? acc : pow(acc, 1.0 / j->p);      \
                }                                                                                  \
                yp[op] = (T)acc;                                                                   \
                if (j->indices)                                                                    \
                    j->indices[plane * g->out_size + op] =                                         \
                        plane * g->in_size + (best < 0 ? 0 : best);                                \
                for (int d = nsp - 1; d >= 0; d--) { /* odometer over the output */                \
                    if (++o[d] < g->out[d]) break;                                                 \
                    o[d] = 0;                                                                      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_POOL_RANGE(pool_range_f32, float)
DEFINE_POOL_RANGE(pool_range_f64, double)

/* The float32 MaxPool / AveragePool fast path for 1-D and 2-D windows
 * (j->g promoted to 2-D): the window is clipped per row and column, and an
 * interior column window needs no division at all. */
static inline void clip_window(int64_t start, int64_t k, int64_t dil, int64_t in, int64_t pad1,
                               int64_t *lo, int64_t *hi, int64_t *padded)
{
    if (start >= 0 && start + (k - 1) * dil < in) {
        *lo = 0;
        *hi = *padded = k;
        return;
    }
    int64_t l = start < 0 ? (-start + dil - 1) / dil : 0;
    int64_t h = in - 1 - start < 0 ? 0 : (in - 1 - start) / dil + 1;
    int64_t p = in + pad1 - 1 - start < 0 ? 0 : (in + pad1 - 1 - start) / dil + 1;
    *lo = l;
    *hi = h < k ? h : k;
    if (*hi < l) *hi = l;
    *padded = p < k ? p : k;
}

static void pool2d_f32_range(void *arg, int64_t begin, int64_t end)
{
    const pool_job *j = arg;
    conv_geom g;
    conv_geom_as_2d(&j->g, &g);
    int64_t H = g.in[0], W = g.in[1], OH = g.out[0], OW = g.out[1];
    for (int64_t plane = begin; plane < end; plane++) {
        const float *xp = (const float *)j->x + plane * H * W;
        float *yp = (float *)j->y + plane * OH * OW;
        int64_t *ip = j->indices ? j->indices + plane * OH * OW : NULL;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t hs = oh * g.stride[0] - g.pad0[0], hlo, hhi, hpad;
            clip_window(hs, g.k[0], g.dil[0], H, g.pad1[0], &hlo, &hhi, &hpad);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t ws = ow * g.stride[1] - g.pad0[1], wlo, whi, wpad;
                clip_window(ws, g.k[1], g.dil[1], W, g.pad1[1], &wlo, &whi, &wpad);
                float acc = j->mode == POOL_MAX ? -INFINITY : 0.0f;
                int64_t best = -1;
                for (int64_t kh = hlo; kh < hhi; kh++) {
                    int64_t ih = hs + kh * g.dil[0];
                    const float *xr = xp + ih * W;
                    if (j->mode != POOL_MAX) {
                        for (int64_t kw = wlo; kw < whi; kw++) acc += xr[ws + kw * g.dil[1]];
                    } else if (!ip) {
                        for (int64_t kw = wlo; kw < whi; kw++) {
                            float v = xr[ws + kw * g.dil[1]];
                            acc = v > acc ? v : acc;
                        }
                    } else {
                        for (int64_t kw = wlo; kw < whi; kw++) {
                            int64_t iw = ws + kw * g.dil[1];
                            if (xr[iw] > acc || best < 0) {
                                acc = xr[iw];
                                best = j->col_major ? iw * H + ih : ih * W + iw;
                            }
                        }
                    }
                }
                if (j->mode == POOL_AVG) {
                    int64_t n = j->include_pad ? hpad * wpad : (hhi - hlo) * (whi - wlo);
                    acc = n > 0 ? acc / (float)n : 0.0f;
                }
                yp[oh * OW + ow] = acc;
                if (ip) ip[oh * OW + ow] = plane * H * W + (best < 0 ? 0 : best);
            }
        }
    }
}

/* pool2d_f32_range over LAYOUT_C16: planes are (image, block of 16
 * channels), each position a vector of 16. No Indices. */
static void pool2d_c16_range(void *arg, int64_t begin, int64_t end)
{
    const pool_job *j = arg;
    conv_geom g;
    conv_geom_as_2d(&j->g, &g);
    int64_t H = g.in[0], W = g.in[1], OH = g.out[0], OW = g.out[1];
    bool max = j->mode == POOL_MAX;
    for (int64_t plane = begin; plane < end; plane++) {
        const float *xp = (const float *)j->x + plane * H * W * 16;
        float *yp = (float *)j->y + plane * OH * OW * 16;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t hs = oh * g.stride[0] - g.pad0[0], hlo, hhi, hpad;
            clip_window(hs, g.k[0], g.dil[0], H, g.pad1[0], &hlo, &hhi, &hpad);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t ws = ow * g.stride[1] - g.pad0[1], wlo, whi, wpad;
                clip_window(ws, g.k[1], g.dil[1], W, g.pad1[1], &wlo, &whi, &wpad);
                float acc[16];
                for (int l = 0; l < 16; l++) acc[l] = max ? -INFINITY : 0.0f;
                for (int64_t kh = hlo; kh < hhi; kh++) {
                    const float *xr = xp + (hs + kh * g.dil[0]) * W * 16;
                    for (int64_t kw = wlo; kw < whi; kw++) {
                        const float *v = xr + (ws + kw * g.dil[1]) * 16;
                        if (max)
                            for (int l = 0; l < 16; l++) acc[l] = v[l] > acc[l] ? v[l] : acc[l];
                        else
                            for (int l = 0; l < 16; l++) acc[l] += v[l];
                    }
                }
                if (!max) {
                    int64_t n = j->include_pad ? hpad * wpad : (hhi - hlo) * (whi - wlo);
                    float inv = n > 0 ? 1.0f / (float)n : 0.0f;
                    for (int l = 0; l < 16; l++) acc[l] = n > 0 ? acc[l] * inv : 0.0f;
                }
                memcpy(yp + (oh * OW + ow) * 16, acc, sizeof acc);
            }
        }
    }
}

/* Global max / average over LAYOUT_C16: planes are (image, block), the
 * output [N, C] plain. */
static void global_c16_range(void *arg, int64_t begin, int64_t end)
{
    const pool_job *j = arg;
    int64_t S = j->g.in_size;
    bool max = j->mode == POOL_MAX;
    for (int64_t plane = begin; plane < end; plane++) {
        const float *xp = (const float *)j->x + plane * S * 16;
        float acc[16];
        for (int l = 0; l < 16; l++) acc[l] = max ? -INFINITY : 0.0f;
        for (int64_t p = 0; p < S; p++) {
            const float *v = xp + p * 16;
            if (max)
                for (int l = 0; l < 16; l++) acc[l] = v[l] > acc[l] ? v[l] : acc[l];
            else
                for (int l = 0; l < 16; l++) acc[l] += v[l];
        }
        if (!max)
            for (int l = 0; l < 16; l++) acc[l] /= (float)S;
        memcpy((float *)j->y + plane * 16, acc, sizeof acc);
    }
}

static bool pool_type_ok(tern_dtype dt, pool_mode mode)
{
    if (dtype_is_float(dt)) return true;
    return mode == POOL_MAX && (dt == TERN_INT8 || dt == TERN_UINT8);
}

/* Runs job j (geometry and mode set) on x into output 0 (and 1: Indices).
 * global: j's window is the whole input. */
static tern_status *pool_run(op_ctx *c, pool_job *j, const tern_tensor *x, bool want_indices,
                             bool global)
{
    if (!pool_type_ok(x->dtype, j->mode))
        return op_error(c, "unsupported type %s", tern_dtype_name(x->dtype));
    int64_t dims[TERN_MAX_RANK] = {x->dims[0], x->dims[1]};
    for (int d = 0; d < j->g.nsp; d++) dims[d + 2] = j->g.out[d];
    bool indices = want_indices && c->n_out > 1 && op_out_used(c, 1);
    if (x->layout == LAYOUT_C16 && (indices || j->mode == POOL_LP)) TERN_TRY(dnn_plain(c, x, &x));
    if (!indices && !global && c->state) {
        bool done;
        TERN_TRY(dnn_pool_run(c, (dnn_cache *)c->state, x, &j->g, j->mode == POOL_MAX,
                              j->include_pad, &done));
        if (done) return NULL;
    }
    if (x->layout == LAYOUT_C16 && !global && j->g.nsp > 2) TERN_TRY(dnn_plain(c, x, &x));
    tern_tensor *y, *ind = NULL;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, dims, &y));
    if (indices) TERN_TRY(op_out(c, 1, TERN_INT64, x->rank, dims, &ind));
    j->indices = ind ? ind->data : NULL;
    int64_t planes = x->dims[0] * x->dims[1];
    if (x->layout == LAYOUT_C16) { /* float32 (core/tensor.h) */
        j->x = x->data;
        j->y = y->data;
        y->layout = global ? LAYOUT_PLAIN : LAYOUT_C16;
        tpool_for(c->pool, planes / 16, 1, global ? global_c16_range : pool2d_c16_range, j);
        return NULL;
    }
    if (x->dtype == TERN_FLOAT) {
        j->x = x->data;
        j->y = y->data;
        bool fast = j->g.nsp <= 2 && j->mode != POOL_LP;
        tpool_for(c->pool, planes, 1, fast ? pool2d_f32_range : pool_range_f32, j);
        return NULL;
    }
    double *xd, *yd;
    TERN_TRY(op_scratch(c, (size_t)(x->numel + y->numel + 1) * sizeof(double), (void **)&xd));
    yd = xd + x->numel;
    for (int64_t i = 0; i < x->numel; i++) xd[i] = op_get_f64(x, i);
    j->x = xd;
    j->y = yd;
    tpool_for(c->pool, planes, 1, pool_range_f64, j);
    for (int64_t i = 0; i < y->numel; i++) dtype_set_f64(y->dtype, y->data, i, yd[i]);
    return NULL;
}

/* MaxPool and AveragePool keep a oneDNN plan cache (dnnl_pool.c) for the
 * blocked inputs, whatever their inputs (there are no weights). */
static tern_status *pool_prepare(op_prep *p, const void **state)
{
    *state = dnn_cache_create(p);
    return NULL;
}

/* Kernel shape attribute (required) of nsp values. */
static tern_status *pool_kernel(op_ctx *c, const tern_tensor *x, int64_t *k)
{
    TERN_TRY(op_need_input(c, 0));
    if (x->kind != TENSOR_DENSE || x->rank < 3)
        return op_error(c, "input must be [N, C, spatial...], got rank %d", x->rank);
    if (!op_attr_get(c, "kernel_shape")) return op_error(c, "attribute 'kernel_shape' is missing");
    return conv_ints_attr(c, "kernel_shape", x->rank - 2, 1, 1, k);
}

static tern_status *op_maxpool(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    int64_t k[CONV_MAX_SP];
    TERN_TRY(pool_kernel(c, x, k));
    pool_job j = {.mode = POOL_MAX, .col_major = op_attr_int(c, "storage_order", 0) == 1};
    TERN_TRY(conv_geom_make(c, x, k, op_attr_int(c, "ceil_mode", 0) != 0, &j.g));
    return pool_run(c, &j, x, true, false);
}

static tern_status *op_avgpool(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    int64_t k[CONV_MAX_SP];
    TERN_TRY(pool_kernel(c, x, k));
    pool_job j = {.mode = POOL_AVG, .include_pad = op_attr_int(c, "count_include_pad", 0) != 0};
    TERN_TRY(conv_geom_make(c, x, k, op_attr_int(c, "ceil_mode", 0) != 0, &j.g));
    return pool_run(c, &j, x, false, false);
}

/* LpPool's p: a float in opset 1, an int since opset 2. */
static tern_status *lp_exponent(op_ctx *c, double *p)
{
    const op_attr *a = op_attr_get(c, "p");
    *p = !a ? 2.0 : a->type == ATTR_FLOAT ? (double)a->f : (double)a->i;
    if (!(*p > 0.0) || *p > 1e6) return op_error(c, "p = %g is invalid", *p);
    return NULL;
}

static tern_status *op_lppool(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    int64_t k[CONV_MAX_SP];
    TERN_TRY(pool_kernel(c, x, k));
    pool_job j = {.mode = POOL_LP};
    TERN_TRY(lp_exponent(c, &j.p));
    TERN_TRY(conv_geom_make(c, x, k, op_attr_int(c, "ceil_mode", 0) != 0, &j.g));
    return pool_run(c, &j, x, false, false);
}

/* Global pools: one window covering every spatial position. */
static tern_status *global_pool(op_ctx *c, pool_mode mode)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE || x->rank < 3)
        return op_error(c, "input must be [N, C, spatial...], got rank %d", x->rank);
    pool_job j = {.mode = mode};
    if (mode == POOL_LP) TERN_TRY(lp_exponent(c, &j.p));
    conv_geom *g = &j.g;
    g->nsp = x->rank - 2;
    g->in_size = g->k_size = g->out_size = 1;
    for (int d = 0; d < g->nsp; d++) {
        g->in[d] = g->k[d] = x->dims[d + 2];
        if (g->in[d] == 0) return op_error(c, "spatial dimension %d is empty", d);
        g->out[d] = g->stride[d] = g->dil[d] = 1;
        g->pad0[d] = g->pad1[d] = 0;
        g->in_size *= g->in[d];
        g->k_size *= g->k[d];
    }
    return pool_run(c, &j, x, false, true);
}

static tern_status *op_global_avgpool(op_ctx *c)
{
    return global_pool(c, POOL_AVG);
}
static tern_status *op_global_maxpool(op_ctx *c)
{
    return global_pool(c, POOL_MAX);
}
static tern_status *op_global_lppool(op_ctx *c)
{
    return global_pool(c, POOL_LP);
}

/* MaxUnpool: Y starts at zero and takes X[i] at the position Indices[i]
 * names. Indices are flat positions in the default output shape
 * (in-1)*stride + kernel - pads (as MaxPool produced them); with an explicit
 * output_shape each lands at the same coordinates of the larger output. */
static tern_status *op_maxunpool(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *x = c->in[0], *ind = c->in[1];
    int64_t k[CONV_MAX_SP], s[CONV_MAX_SP], pads[2 * CONV_MAX_SP];
    TERN_TRY(pool_kernel(c, x, k));
    int nsp = x->rank - 2;
    TERN_TRY(conv_ints_attr(c, "strides", nsp, 1, 1, s));
    TERN_TRY(conv_ints_attr(c, "pads", 2 * nsp, 0, 0, pads));
    if (ind->kind != TENSOR_DENSE || ind->dtype != TERN_INT64 || !shape_equal(x, ind))
        return op_error(c, "indices must be int64 with the shape of X");
    int64_t dflt[TERN_MAX_RANK] = {x->dims[0], x->dims[1]}, dims[TERN_MAX_RANK];
    for (int d = 0; d < nsp; d++) {
        dflt[d + 2] = (x->dims[d + 2] - 1) * s[d] + k[d] - pads[d] - pads[d + nsp];
        if (dflt[d + 2] < 0) return op_error(c, "output size is negative");
    }
    memcpy(dims, dflt, sizeof dims);
    const tern_tensor *os = c->n_in > 2 ? c->in[2] : NULL;
    if (os) {
        int64_t *v, n;
        TERN_TRY(op_read_ints(c, os, &v, &n));
        if (n != x->rank) return op_error(c, "output_shape has %lld values", (long long)n);
        for (int d = 0; d < x->rank; d++) {
            if (d < 2 ? v[d] != x->dims[d] : v[d] < dflt[d])
                return op_error(c, "output_shape is smaller than the unpooled shape");
            dims[d] = v[d];
        }
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, dims, &y));
    size_t es = tern_dtype_size(x->dtype);
    if (es == 0) return op_error(c, "unsupported type %s", tern_dtype_name(x->dtype));
    memset(y->data, 0, (size_t)y->numel * es);
    int64_t dflt_numel = shape_numel(x->rank, dflt);
    const int64_t *iv = ind->data;
    for (int64_t i = 0; i < x->numel; i++) {
        int64_t flat = iv[i];
        if (flat < 0 || flat >= dflt_numel)
            return op_error(c, "index %lld is out of range", (long long)flat);
        int64_t off = 0, mul = 1;
        for (int d = x->rank - 1; d >= 0; d--) {
            off += flat % dflt[d] * mul;
            flat /= dflt[d];
            mul *= dims[d];
        }
        memcpy((char *)y->data + (size_t)off * es, (const char *)x->data + (size_t)i * es, es);
    }
    return NULL;
}

const op_def ops_pool[] = {
    {"", "MaxPool", 1, 17, op_maxpool, pool_prepare, OP_TAKES_C16},
    {"", "AveragePool", 1, 17, op_avgpool, pool_prepare, OP_TAKES_C16},
    {"", "LpPool", 1, 17, op_lppool},
    {"", "GlobalAveragePool", 1, 17, op_global_avgpool, NULL, OP_TAKES_C16},
    {"", "GlobalMaxPool", 1, 17, op_global_maxpool, NULL, OP_TAKES_C16},
    {"", "GlobalLpPool", 1, 17, op_global_lppool},
    {"", "MaxUnpool", 9, 17, op_maxunpool},
    {0},
};

/*
 * Operator family: image (Resize, Upsample here; GridSample, RoiAlign and
 * NonMaxSuppression in image_sample.c).
 *
 * Resize is separable: every mode (nearest, linear, cubic) is a product of
 * 1-D filters, one per axis. The kernel first works out, for each resized
 * axis, the source taps of every output coordinate (up to 4 indices and
 * weights, already clamped to the edge and renormalised for exclude_outside)
 * and then applies one axis at a time, viewing the tensor as
 * [outer, n, inner] -> [outer, m, inner]. The inner run is contiguous, so
 * for NCHW the H pass is a weighted sum of whole rows; the W pass (inner = 1)
 * is a short dot product per output. Axes whose mapping is the identity are
 * skipped, and axes that shrink go first so later passes touch less data.
 *
 * The taps follow the ONNX reference (onnx/backend/test/case/node/resize.py):
 * out-of-range neighbours take the edge value, "tf_crop_and_resize" returns
 * extrapolation_value outside the crop (an extrapolated value stays constant
 * under the later passes because each pass's weights sum to 1), and with
 * "align_corners" / "pytorch_half_pixel" / "tf_crop_and_resize" the resized
 * length is scale * n (the reference's definition) rather than floor of it.
 *
 * nearest gathers elements by bytes, so it works for every dtype; linear and
 * cubic run in float32 (other types converted, integers rounded and
 * saturated on the way out).
 *
 * Before opset 11 (Resize-10, Upsample) the mapping is "asymmetric" and
 * nearest takes floor when enlarging, ceil when shrinking, as ONNX Runtime
 * does for those versions.
 */
#include <math.h>
#include <string.h>

#include "ops/image.h"

enum rz_mode { RZ_NEAREST, RZ_LINEAR, RZ_CUBIC };
enum rz_ctm {
    CTM_HALF_PIXEL,
    CTM_PYTORCH_HALF_PIXEL,
    CTM_ALIGN_CORNERS,
    CTM_ASYMMETRIC,
    CTM_TF_HALF_PIXEL_FOR_NN,
    CTM_TF_CROP_AND_RESIZE,
};
enum rz_nearest { NN_ROUND_PREFER_FLOOR, NN_ROUND_PREFER_CEIL, NN_FLOOR, NN_CEIL, NN_LEGACY };

typedef struct rz_params {
    int mode, ctm, nearest;
    float cubic_a;
    bool exclude_outside;
    float extrapolation;
} rz_params;

/* The taps of one axis: out[x] = sum_k w[x*K+k] * in[idx[x*K+k]], or the
 * extrapolation value where extrap[x]. */
typedef struct rz_axis {
    int axis, K;
    int64_t n, m;
    int64_t *idx;
    float *w;
    bool *extrap; /* NULL when no output extrapolates */
} rz_axis;

static const char *const ctm_names[] = {"half_pixel", "pytorch_half_pixel",   "align_corners",
                                        "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"};
static const char *const nn_names[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};

static int name_index(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

/* The source coordinate of output coordinate x, or NAN to extrapolate. */
static double rz_source(const rz_params *p, double x, int64_t n, double m_f, double scale,
                        double roi_lo, double roi_hi)
{
    switch (p->ctm) {
    case CTM_PYTORCH_HALF_PIXEL: return m_f > 1 ? (x + 0.5) / scale - 0.5 : 0;
    case CTM_ALIGN_CORNERS: return m_f == 1 ? 0 : x * (double)(n - 1) / (m_f - 1);
    case CTM_ASYMMETRIC: return x / scale;
    case CTM_TF_HALF_PIXEL_FOR_NN: return (x + 0.5) / scale;
    case CTM_TF_CROP_AND_RESIZE: {
        double s =
            m_f > 1 ? roi_lo * (double)(n - 1) + x * (roi_hi - roi_lo) * (double)(n - 1) / (m_f - 1)
                    : 0.5 * (roi_lo + roi_hi) * (double)(n - 1);
        return s < 0 || s > (double)(n - 1) ? NAN : s;
    }
    default: return (x + 0.5) / scale - 0.5;
    }
}

static int64_t clamp_idx(int64_t i, int64_t n)
{
    return i < 0 ? 0 : i >= n ? n - 1 : i;
}

static void cubic_coeffs(double r, double A, double *c)
{
    double s = 1 - r;
    c[0] = ((A * (r + 1) - 5 * A) * (r + 1) + 8 * A) * (r + 1) - 4 * A;
    c[1] = ((A + 2) * r - (A + 3)) * r * r + 1;
    c[2] = ((A + 2) * s - (A + 3)) * s * s + 1;
    c[3] = ((A * (s + 1) - 5 * A) * (s + 1) + 8 * A) * (s + 1) - 4 * A;
}

/* Fills ax's taps. Returns true if the mapping is the identity. */
static bool rz_taps(const rz_params *p, rz_axis *ax, double m_f, double scale, double roi_lo,
                    double roi_hi)
{
    const int64_t n = ax->n, m = ax->m;
    const int K = ax->K;
    bool identity = n == m;
    for (int64_t x = 0; x < m; x++) {
        int64_t *idx = ax->idx + x * K;
        float *w = ax->w + x * K;
        double s = rz_source(p, (double)x, n, m_f, scale, roi_lo, roi_hi);
        if (isnan(s)) {
            ax->extrap[x] = true;
            for (int k = 0; k < K; k++) idx[k] = 0, w[k] = 0;
            identity = false;
            continue;
        }
        if (ax->extrap) ax->extrap[x] = false;
        double f = floor(s), r = s - f;
        int64_t i0 = f < -1e15 ? -1000000 : f > 1e15 ? n + 1000000 : (int64_t)f;
        if (p->mode == RZ_NEAREST) {
            int64_t i;
            switch (p->nearest) {
            case NN_ROUND_PREFER_CEIL: i = r < 0.5 ? i0 : i0 + 1; break;
            case NN_FLOOR: i = i0; break;
            case NN_CEIL: i = r > 0 ? i0 + 1 : i0; break;
            case NN_LEGACY: i = scale < 1 && r > 0 ? i0 + 1 : i0; break;
            default: i = r <= 0.5 ? i0 : i0 + 1; break;
            }
            idx[0] = clamp_idx(i, n);
            w[0] = 1;
            identity = identity && idx[0] == x;
        } else if (p->mode == RZ_LINEAR) {
            idx[0] = clamp_idx(i0, n), w[0] = (float)(1 - r);
            idx[1] = clamp_idx(i0 + 1, n), w[1] = (float)r;
            identity = identity && r == 0 && idx[0] == x;
        } else {
            double cw[4], sum = 0;
            cubic_coeffs(r, p->cubic_a, cw);
            for (int k = 0; k < 4; k++) {
                int64_t i = i0 - 1 + k;
                if (p->exclude_outside && (i < 0 || i >= n)) cw[k] = 0;
                sum += cw[k];
            }
            for (int k = 0; k < 4; k++) {
                idx[k] = clamp_idx(i0 - 1 + k, n);
                w[k] = (float)(p->exclude_outside && sum != 0 ? cw[k] / sum : cw[k]);
            }
            identity = identity && r == 0 && idx[1] == x;
        }
    }
    return identity;
}

/* ---- the passes ---------------------------------------------------------- */

typedef struct rz_pass {
    const rz_axis *ax;
    int64_t inner;
    size_t esz; /* element size (nearest) */
    const void *src;
    void *dst;
    const void *fill; /* one element: the extrapolation value */
} rz_pass;

/* Rows are (outer, x) pairs of the output. */
static void rz_pass_f32(void *arg, int64_t begin, int64_t end)
{
    const rz_pass *p = arg;
    const rz_axis *ax = p->ax;
    const int64_t inner = p->inner, m = ax->m, n = ax->n;
    const int K = ax->K;
    const float *src = p->src, fill = *(const float *)p->fill;
    float *dst = p->dst;
    for (int64_t row = begin, o = begin / m, x = begin % m; row < end; row++, x++) {
        if (x == m) x = 0, o++;
        float *d = dst + row * inner;
        if (ax->extrap && ax->extrap[x]) {
            for (int64_t i = 0; i < inner; i++) d[i] = fill;
            continue;
        }
        const int64_t *idx = ax->idx + x * K;
        const float *w = ax->w + x * K, *base = src + o * n * inner;
        if (inner == 1) { /* the last axis: a short dot product per output */
            d[0] = K == 2   ? w[0] * base[idx[0]] + w[1] * base[idx[1]]
                   : K == 4 ? w[0] * base[idx[0]] + w[1] * base[idx[1]] + w[2] * base[idx[2]] +
                                  w[3] * base[idx[3]]
                            : w[0] * base[idx[0]];
            continue;
        }
        const float *s0 = base + idx[0] * inner;
        for (int64_t i = 0; i < inner; i++) d[i] = w[0] * s0[i];
        for (int k = 1; k < K; k++) {
            const float *sk = base + idx[k] * inner, wk = w[k];
            for (int64_t i = 0; i < inner; i++) d[i] += wk * sk[i];
        }
    }
}

static void rz_pass_gather(void *arg, int64_t begin, int64_t end)
{
    const rz_pass *p = arg;
    const rz_axis *ax = p->ax;
    const int64_t m = ax->m, n = ax->n;
    const size_t run = (size_t)p->inner * p->esz;
    const char *src = p->src;
    char *dst = p->dst;
    for (int64_t row = begin, o = begin / m, x = begin % m; row < end; row++, x++) {
        if (x == m) x = 0, o++;
        char *d = dst + (size_t)row * run;
        if (ax->extrap && ax->extrap[x]) {
            for (int64_t i = 0; i < p->inner; i++) memcpy(d + (size_t)i * p->esz, p->fill, p->esz);
            continue;
        }
        memcpy(d, src + ((size_t)(o * n + ax->idx[x])) * run, run);
    }
}

/* Rounds and saturates a float into integer type dt, or converts to a float type. */
static void store_f32(tern_dtype dt, void *data, int64_t i, float v)
{
    if (dtype_is_float(dt) || dt == TERN_BOOL) {
        dtype_set_f64(dt, data, i, v);
        return;
    }
    double lo, hi;
    switch (dt) {
    case TERN_INT8: lo = -128, hi = 127; break;
    case TERN_UINT8: lo = 0, hi = 255; break;
    case TERN_INT16: lo = -32768, hi = 32767; break;
    case TERN_UINT16: lo = 0, hi = 65535; break;
    case TERN_INT32: lo = -2147483648.0, hi = 2147483647.0; break;
    case TERN_UINT32: lo = 0, hi = 4294967295.0; break;
    case TERN_UINT64: lo = 0, hi = 18446744073709549568.0; break;
    default: lo = -9223372036854775808.0, hi = 9223372036854774784.0; break;
    }
    double r = nearbyint((double)v);
    if (r != r) r = 0;
    dtype_set_f64(dt, data, i, r < lo ? lo : r > hi ? hi : r);
}

/* What every slice of one Resize shares. A slice is one index of the axes
 * before the first resized one (N and C for a resize of H and W): slices
 * are independent, and one slice's intermediates stay in cache. */
typedef struct rz_plan {
    const rz_axis *axes;
    int n_axes, rank, first;                      /* first = lowest resized axis */
    int64_t shape[TERN_MAX_RANK];                 /* input dims */
    int64_t slices, slice_in, slice_out, biggest; /* elements; biggest intermediate */
    size_t esz;
    bool gather;
    const void *fill;
    const char *src;
    char *dst, *bufs; /* bufs: 2 * biggest elements per worker */
    int workers;
} rz_plan;

/* Runs every pass over one slice; passes split their rows over pool, or run
 * inline when pool is NULL. */
static void rz_slice(const rz_plan *pl, const char *src, char *dst, char *buf, tpool *pool)
{
    int64_t shape[TERN_MAX_RANK];
    memcpy(shape, pl->shape, sizeof shape);
    for (int a = 0; a < pl->n_axes; a++) {
        const rz_axis *ax = &pl->axes[a];
        int64_t outer = 1, inner = 1;
        for (int i = pl->first; i < ax->axis; i++) outer *= shape[i];
        for (int i = ax->axis + 1; i < pl->rank; i++) inner *= shape[i];
        char *out =
            a == pl->n_axes - 1 ? dst : buf + (size_t)(a & 1) * (size_t)pl->biggest * pl->esz;
        rz_pass job = {ax, inner, pl->esz, src, out, pl->fill};
        tpool_fn fn = pl->gather ? rz_pass_gather : rz_pass_f32;
        int64_t rows = outer * ax->m;
        if (pool)
            tpool_for(pool, rows, inner >= 256 ? 1 : 256 / inner, fn, &job);
        else
            fn(&job, 0, rows);
        shape[ax->axis] = ax->m;
        src = out;
    }
}

static void rz_slices(void *arg, int64_t w0, int64_t w1)
{
    const rz_plan *pl = arg;
    for (int64_t w = w0; w < w1; w++) {
        char *buf = pl->bufs + (size_t)w * 2 * (size_t)pl->biggest * pl->esz;
        int64_t s0 = pl->slices * w / pl->workers, s1 = pl->slices * (w + 1) / pl->workers;
        for (int64_t s = s0; s < s1; s++)
            rz_slice(pl, pl->src + (size_t)(s * pl->slice_in) * pl->esz,
                     pl->dst + (size_t)(s * pl->slice_out) * pl->esz, buf, NULL);
    }
}

/* Runs the passes over x into y. axes[] are the non-identity axes in order. */
static tern_status *rz_run(op_ctx *c, const rz_params *p, const tern_tensor *x, tern_tensor *y,
                           rz_axis *axes, int n_axes)
{
    if (n_axes == 0) {
        memcpy(y->data, x->data, tensor_nbytes(x));
        return NULL;
    }
    rz_plan pl = {.axes = axes, .n_axes = n_axes, .rank = x->rank, .first = x->rank};
    pl.gather = p->mode == RZ_NEAREST;
    const bool direct = pl.gather || x->dtype == TERN_FLOAT;
    pl.esz = pl.gather ? tern_dtype_size(x->dtype) : sizeof(float);
    memcpy(pl.shape, x->dims, sizeof(int64_t) * (size_t)x->rank);
    for (int a = 0; a < n_axes; a++)
        if (axes[a].axis < pl.first) pl.first = axes[a].axis;
    pl.slices = 1;
    for (int i = 0; i < pl.first; i++) pl.slices *= x->dims[i];
    /* Too few slices to keep every thread busy: one slice, parallel passes. */
    const int threads = tpool_threads(c->pool) > 1 ? tpool_threads(c->pool) : 1;
    if (pl.slices < threads) pl.first = 0, pl.slices = 1;
    pl.workers = pl.slices < threads ? (int)pl.slices : threads;
    pl.slice_in = x->numel / pl.slices;
    pl.slice_out = y->numel / pl.slices;
    int64_t cur = pl.slice_in;
    pl.biggest = 1;
    for (int a = 0; a + 1 < n_axes; a++) {
        cur = cur / axes[a].n * axes[a].m;
        if (cur > pl.biggest) pl.biggest = cur;
    }
    TERN_TRY(
        op_scratch(c, (size_t)pl.workers * 2 * (size_t)pl.biggest * pl.esz, (void **)&pl.bufs));

    pl.src = x->data;
    pl.dst = y->data;
    if (!direct) {
        float *f, *yf;
        TERN_TRY(op_scratch(c, (size_t)x->numel * sizeof(float), (void **)&f));
        TERN_TRY(op_scratch(c, (size_t)y->numel * sizeof(float), (void **)&yf));
        for (int64_t i = 0; i < x->numel; i++) f[i] = (float)op_get_f64(x, i);
        pl.src = (const char *)f;
        pl.dst = (char *)yf;
    }
    union {
        float f;
        double d;
        uint64_t u64;
        char bytes[16];
    } fill = {0};
    if (pl.gather)
        store_f32(x->dtype, fill.bytes, 0, p->extrapolation);
    else
        fill.f = p->extrapolation;
    pl.fill = fill.bytes;

    if (pl.slices == 1)
        rz_slice(&pl, pl.src, pl.dst, pl.bufs, c->pool);
    else
        tpool_for(c->pool, pl.workers, 1, rz_slices, &pl);
    if (!direct)
        for (int64_t i = 0; i < y->numel; i++)
            store_f32(y->dtype, y->data, i, ((float *)pl.dst)[i]);
    return NULL;
}

/* ---- Resize / Upsample ---------------------------------------------------- */

static tern_status *rz_read_floats(op_ctx *c, const tern_tensor *t, const char *what, int n,
                                   double *out)
{
    if (t->kind != TENSOR_DENSE || !dtype_is_float(t->dtype) || t->rank > 1)
        return op_error(c, "%s must be a 1-D float tensor", what);
    if (t->numel != n)
        return op_error(c, "%s has %lld values, expected %d", what, (long long)t->numel, n);
    for (int i = 0; i < n; i++) out[i] = op_get_f64(t, i);
    return NULL;
}

static const tern_tensor *rz_opt(const op_ctx *c, int i)
{
    const tern_tensor *t = i < c->n_in ? c->in[i] : NULL;
    return t && t->kind == TENSOR_DENSE && t->numel > 0 ? t : NULL;
}

/* Shared by Resize (every opset) and Upsample. One of scales_in / sizes is
 * set; roi: 2*rank values or NULL. */
static tern_status *rz_resize(op_ctx *c, const rz_params *p, const double *scales_in,
                              const int64_t *sizes, const double *roi)
{
    const tern_tensor *x = c->in[0];
    const int rank = x->rank;
    int64_t ydims[TERN_MAX_RANK];
    double scale[TERN_MAX_RANK], m_f[TERN_MAX_RANK];
    for (int i = 0; i < rank; i++) {
        int64_t n = x->dims[i];
        if (sizes) {
            if (sizes[i] < 0)
                return op_error(c, "sizes[%d] = %lld is negative", i, (long long)sizes[i]);
            ydims[i] = sizes[i];
            scale[i] = n ? (double)sizes[i] / (double)n : 1;
            m_f[i] = (double)sizes[i];
        } else {
            double s = scales_in[i];
            if (!(s > 0) || s * (double)n > 9e15)
                return op_error(c, "scales[%d] = %g is not a usable scale", i, s);
            ydims[i] = (int64_t)floor(s * (double)n);
            scale[i] = s;
            m_f[i] = s * (double)n;
        }
        if (n == 0 && ydims[i] != 0)
            return op_error(c, "axis %d is empty and cannot be resized to %lld", i,
                            (long long)ydims[i]);
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, rank, ydims, &y));
    if (y->numel == 0) return NULL;
    if (x->dtype == TERN_STRING) return op_error(c, "string tensors are not supported");
    if (p->mode != RZ_NEAREST && !dtype_is_float(x->dtype) && !dtype_is_int(x->dtype))
        return op_error(c, "mode linear/cubic needs a numeric input, got %s",
                        tern_dtype_name(x->dtype));

    rz_axis axes[TERN_MAX_RANK];
    int n_axes = 0;
    const int K = p->mode == RZ_NEAREST ? 1 : p->mode == RZ_LINEAR ? 2 : 4;
    for (int i = 0; i < rank; i++) {
        rz_axis *ax = &axes[n_axes];
        ax->axis = i, ax->K = K, ax->n = x->dims[i], ax->m = ydims[i], ax->extrap = NULL;
        size_t taps = (size_t)ax->m * (size_t)K;
        TERN_TRY(op_scratch(c, taps * sizeof(int64_t), (void **)&ax->idx));
        TERN_TRY(op_scratch(c, taps * sizeof(float), (void **)&ax->w));
        if (p->ctm == CTM_TF_CROP_AND_RESIZE)
            TERN_TRY(op_scratch(c, (size_t)ax->m * sizeof(bool), (void **)&ax->extrap));
        double lo = roi ? roi[i] : 0, hi = roi ? roi[rank + i] : 1;
        if (!rz_taps(p, ax, m_f[i], scale[i], lo, hi)) n_axes++;
    }
    /* Shrinking axes first: later passes then run over fewer elements. */
    for (int a = 1; a < n_axes; a++)
        for (int b = a; b > 0 && (double)axes[b].m / (double)axes[b].n <
                                     (double)axes[b - 1].m / (double)axes[b - 1].n;
             b--) {
            rz_axis t = axes[b];
            axes[b] = axes[b - 1];
            axes[b - 1] = t;
        }
    return rz_run(c, p, x, y, axes, n_axes);
}

static tern_status *rz_parse_mode(op_ctx *c, rz_params *p, bool legacy)
{
    const char *mode = op_attr_str(c, "mode", "nearest");
    if (strcmp(mode, "nearest") == 0)
        p->mode = RZ_NEAREST;
    else if (strcmp(mode, "linear") == 0 || (legacy && strcmp(mode, "bilinear") == 0))
        p->mode = RZ_LINEAR;
    else if (strcmp(mode, "cubic") == 0 && !legacy)
        p->mode = RZ_CUBIC;
    else
        return op_error(c, "unsupported mode '%s'", mode);
    if (legacy) {
        p->ctm = CTM_ASYMMETRIC;
        p->nearest = NN_LEGACY;
        p->cubic_a = -0.75f;
        return NULL;
    }
    const char *ctm = op_attr_str(c, "coordinate_transformation_mode", "half_pixel");
    p->ctm = name_index(ctm, ctm_names, 6);
    if (p->ctm < 0 || (p->ctm == CTM_TF_HALF_PIXEL_FOR_NN && c->opset >= 13))
        return op_error(c, "unsupported coordinate_transformation_mode '%s'", ctm);
    const char *nm = op_attr_str(c, "nearest_mode", "round_prefer_floor");
    p->nearest = name_index(nm, nn_names, 4);
    if (p->nearest < 0) return op_error(c, "unsupported nearest_mode '%s'", nm);
    p->cubic_a = op_attr_float(c, "cubic_coeff_a", -0.75f);
    p->exclude_outside = op_attr_int(c, "exclude_outside", 0) != 0;
    p->extrapolation = op_attr_float(c, "extrapolation_value", 0.0f);
    return NULL;
}

static tern_status *op_resize(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE) return op_error(c, "X must be a tensor");
    const int rank = x->rank;
    rz_params p = {0};
    TERN_TRY(rz_parse_mode(c, &p, c->opset < 11));
    double scales[TERN_MAX_RANK], roi_v[2 * TERN_MAX_RANK], *roi = NULL;
    int64_t *sizes = NULL;
    if (c->opset < 11) {
        const tern_tensor *s = rz_opt(c, 1);
        if (!s) return op_error(c, "scales input is required");
        TERN_TRY(rz_read_floats(c, s, "scales", rank, scales));
        return rz_resize(c, &p, scales, NULL, NULL);
    }
    const tern_tensor *r = rz_opt(c, 1), *s = rz_opt(c, 2), *z = rz_opt(c, 3);
    if (r && p.ctm == CTM_TF_CROP_AND_RESIZE) {
        TERN_TRY(rz_read_floats(c, r, "roi", 2 * rank, roi_v));
        roi = roi_v;
    }
    if (s && z) return op_error(c, "only one of scales and sizes may be given");
    if (s) {
        TERN_TRY(rz_read_floats(c, s, "scales", rank, scales));
        return rz_resize(c, &p, scales, NULL, roi);
    }
    if (!z) return op_error(c, "one of scales and sizes is required");
    int64_t n;
    TERN_TRY(op_read_ints(c, z, &sizes, &n));
    if (n != rank) return op_error(c, "sizes has %lld values for rank %d", (long long)n, rank);
    return rz_resize(c, &p, NULL, sizes, roi);
}

static tern_status *op_upsample(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE) return op_error(c, "X must be a tensor");
    rz_params p = {0};
    TERN_TRY(rz_parse_mode(c, &p, true));
    double scales[TERN_MAX_RANK];
    if (c->opset < 9) {
        const float *f;
        int n = op_attr_floats(c, "scales", &f);
        if (n != x->rank)
            return op_error(c, "scales attribute has %d values for rank %d", n, x->rank);
        for (int i = 0; i < n; i++) scales[i] = f[i];
    } else {
        const tern_tensor *s = rz_opt(c, 1);
        if (!s) return op_error(c, "scales input is required");
        TERN_TRY(rz_read_floats(c, s, "scales", x->rank, scales));
    }
    for (int i = 0; i < x->rank; i++)
        if (scales[i] < 1) return op_error(c, "Upsample scales must be >= 1");
    return rz_resize(c, &p, scales, NULL, NULL);
}

/* ---- float32 staging (image.h) ------------------------------------------- */

tern_status *image_as_f32(op_ctx *c, const tern_tensor *t, const float **out)
{
    if (t->kind != TENSOR_DENSE || !dtype_is_float(t->dtype))
        return op_error(c, "expected a float tensor, got %s", tern_dtype_name(t->dtype));
    if (t->dtype == TERN_FLOAT) {
        *out = t->data;
        return NULL;
    }
    float *p;
    TERN_TRY(op_scratch(c, (size_t)(t->numel ? t->numel : 1) * sizeof(float), (void **)&p));
    for (int64_t i = 0; i < t->numel; i++) p[i] = (float)op_get_f64(t, i);
    *out = p;
    return NULL;
}

tern_status *image_out_f32(op_ctx *c, tern_tensor *t, float **out)
{
    if (t->dtype == TERN_FLOAT) {
        *out = t->data;
        return NULL;
    }
    return op_scratch(c, (size_t)(t->numel ? t->numel : 1) * sizeof(float), (void **)out);
}

void image_flush_f32(tern_tensor *t, const float *buf)
{
    if (t->dtype == TERN_FLOAT) return;
    for (int64_t i = 0; i < t->numel; i++) dtype_set_f64(t->dtype, t->data, i, buf[i]);
}

const op_def ops_image[] = {
    {"", "Resize", 10, 17, op_resize},
    {"", "Upsample", 7, 17, op_upsample},
    {"", "GridSample", 16, 17, image_grid_sample},
    {"", "RoiAlign", 10, 17, image_roi_align},
    {"", "NonMaxSuppression", 10, 17, image_nms},
    {0},
};

/*
 * MaxRoiPool (opset 1): max pooling over regions of interest, as Caffe's
 * ROIPooling layer (Fast R-CNN) defines it, which is also what ONNX Runtime
 * implements. It is registered in the random family's table, to which the
 * project assigned it.
 *
 * X is [N, C, H, W]; each row of rois is (batch_index, x1, y1, x2, y2) in the
 * input image's coordinates. The corners are scaled by spatial_scale and
 * rounded (half away from zero); the region is (y2 - y1 + 1) x (x2 - x1 + 1)
 * cells, at least 1 x 1. Bin (ph, pw) of a pooled_h x pooled_w grid covers
 * rows [floor(ph * bh), ceil((ph + 1) * bh)) of the region, bh = roi_h /
 * pooled_h (likewise for columns), shifted by the region's corner and
 * clipped to the image. The output is the bin's maximum, 0 for an empty bin.
 * The edge arithmetic runs in the rois' precision (float, or double for
 * double rois), as Caffe's template does, so edges land on the same cells.
 *
 * The bin edges of every roi are worked out once, then (roi, channel) planes
 * are pooled in parallel.
 */
#include <float.h>
#include <math.h>

#include "ops/random_roipool.h"

typedef struct roi_job {
    const tern_tensor *x;
    tern_tensor *y;
    const int64_t *edges; /* per roi: batch, then hs[PH], he[PH], ws[PW], we[PW] */
    int64_t C, H, W, PH, PW;
} roi_job;

/* Rounds v (finite) to an integer, clamped far outside any real image so the
 * later arithmetic cannot overflow. */
static int64_t round_clamped(double v)
{
    v = round(v);
    return v < -1e12 ? (int64_t)-1e12 : v > 1e12 ? (int64_t)1e12 : (int64_t)v;
}

static int64_t clip(int64_t v, int64_t hi)
{
    return v < 0 ? 0 : v > hi ? hi : v;
}

/* Start and end of each of `pooled` bins over [start, start + size), clipped
 * to [0, limit). Computed in float unless dbl, as Caffe does per Dtype. */
static void bin_edges(int64_t start, int64_t size, int64_t pooled, int64_t limit, bool dbl,
                      int64_t *lo, int64_t *hi)
{
    double bd = (double)size / (double)pooled;
    float bf = (float)size / (float)pooled;
    for (int64_t p = 0; p < pooled; p++) {
        double a = dbl ? floor((double)p * bd) : floorf((float)p * bf);
        double b = dbl ? ceil((double)(p + 1) * bd) : ceilf((float)(p + 1) * bf);
        lo[p] = clip((int64_t)a + start, limit);
        hi[p] = clip((int64_t)b + start, limit);
    }
}

static void roi_planes(void *arg, int64_t begin, int64_t end)
{
    const roi_job *j = arg;
    int64_t per = 1 + 2 * j->PH + 2 * j->PW, plane = j->H * j->W, PH = j->PH, PW = j->PW;
    bool f32 = j->x->dtype == TERN_FLOAT;
    for (int64_t rc = begin; rc < end; rc++) {
        int64_t r = rc / j->C, ch = rc % j->C;
        const int64_t *e = j->edges + r * per;
        const int64_t *hs = e + 1, *he = hs + PH, *ws = he + PH, *we = ws + PW;
        int64_t xoff = (e[0] * j->C + ch) * plane, yoff = rc * PH * PW;
        for (int64_t ph = 0; ph < PH; ph++)
            for (int64_t pw = 0; pw < PW; pw++) {
                bool empty = he[ph] <= hs[ph] || we[pw] <= ws[pw];
                if (f32) {
                    const float *x = (const float *)j->x->data + xoff;
                    float m = empty ? 0.0f : -FLT_MAX;
                    for (int64_t h = hs[ph]; h < he[ph]; h++)
                        for (int64_t w = ws[pw]; w < we[pw]; w++)
                            if (x[h * j->W + w] > m) m = x[h * j->W + w];
                    ((float *)j->y->data)[yoff + ph * PW + pw] = m;
                } else {
                    double m = empty ? 0.0 : -FLT_MAX;
                    for (int64_t h = hs[ph]; h < he[ph]; h++)
                        for (int64_t w = ws[pw]; w < we[pw]; w++) {
                            double v = op_get_f64(j->x, xoff + h * j->W + w);
                            if (v > m) m = v;
                        }
                    dtype_set_f64(j->y->dtype, j->y->data, yoff + ph * PW + pw, m);
                }
            }
    }
}

tern_status *random_max_roi_pool(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *x = c->in[0], *rois = c->in[1];
    if (x->kind != TENSOR_DENSE || !dtype_is_float(x->dtype) || x->rank != 4)
        return op_error(c, "X must be a 4-D floating-point tensor [N, C, H, W]");
    if (rois->kind != TENSOR_DENSE || !dtype_is_float(rois->dtype) || rois->rank != 2 ||
        rois->dims[1] != 5)
        return op_error(c, "rois must be a floating-point tensor [num_rois, 5]");
    const int64_t *ps;
    if (op_attr_ints(c, "pooled_shape", &ps) != 2 || ps[0] <= 0 || ps[1] <= 0)
        return op_error(c, "pooled_shape must be two positive integers");
    double scale = op_attr_float(c, "spatial_scale", 1.0f);
    if (!(scale > 0) || !isfinite(scale))
        return op_error(c, "spatial_scale %g must be positive", scale);

    int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
    int64_t R = rois->dims[0], PH = ps[0], PW = ps[1];
    int64_t dims[4] = {R, C, PH, PW};
    if (shape_numel(4, dims) < 0 || shape_numel(2, (int64_t[]){R, 1 + 2 * PH + 2 * PW}) < 0)
        return op_error(c, "output shape is too large");
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, 4, dims, &y));
    if (y->numel == 0) return NULL;

    int64_t per = 1 + 2 * PH + 2 * PW, *edges;
    TERN_TRY(op_scratch(c, (size_t)(R * per) * sizeof *edges, (void **)&edges));
    bool dbl = rois->dtype == TERN_DOUBLE;
    float fscale = (float)scale;
    for (int64_t r = 0; r < R; r++) {
        double v[5];
        for (int k = 0; k < 5; k++) {
            v[k] = op_get_f64(rois, r * 5 + k);
            if (!isfinite(v[k])) return op_error(c, "rois[%lld] holds %g", (long long)r, v[k]);
            if (k) v[k] = dbl ? v[k] * scale : (double)((float)v[k] * fscale);
        }
        if (!(v[0] >= 0 && v[0] < (double)N))
            return op_error(c, "rois[%lld] has batch index %g, not in [0, %lld)", (long long)r,
                            v[0], (long long)N);
        int64_t x1 = round_clamped(v[1]), y1 = round_clamped(v[2]);
        int64_t x2 = round_clamped(v[3]), y2 = round_clamped(v[4]);
        int64_t rh = y2 - y1 + 1 > 1 ? y2 - y1 + 1 : 1, rw = x2 - x1 + 1 > 1 ? x2 - x1 + 1 : 1;
        int64_t *e = edges + r * per;
        e[0] = (int64_t)v[0];
        bin_edges(y1, rh, PH, H, dbl, e + 1, e + 1 + PH);
        bin_edges(x1, rw, PW, W, dbl, e + 1 + 2 * PH, e + 1 + 2 * PH + PW);
    }
    roi_job j = {x, y, edges, C, H, W, PH, PW};
    tpool_for(c->pool, R * C, 1, roi_planes, &j);
    return NULL;
}

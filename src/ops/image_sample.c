/*
 * Image family, part 2: kernels that sample an image at arbitrary points or
 * pick boxes (GridSample, RoiAlign, NonMaxSuppression).
 *
 * GridSample follows PyTorch's grid_sample (the spec was written from it):
 * grid values in [-1, 1] are unnormalised to pixel coordinates, the padding
 * mode decides what lies outside (zeros; border clamps the coordinate;
 * reflection mirrors it), and bilinear / nearest / bicubic weight the taps.
 * Nearest rounds half to even, as PyTorch's nearbyint does.
 *
 * RoiAlign and NonMaxSuppression follow ONNX Runtime, whose behaviour the
 * ONNX tests encode: RoiAlign's bilinear sampling clamps to the edge and
 * zeroes samples more than one pixel outside; "max" mode takes the largest
 * weighted corner value of each sample. NMS keeps boxes with score strictly
 * above the threshold, visits them by score (ties by index) and drops one
 * whose IoU with a kept box exceeds iou_threshold.
 *
 * All arithmetic is float32 (other float types are converted).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/image.h"

/* ---- GridSample --------------------------------------------------------- */

enum { GS_BILINEAR, GS_NEAREST, GS_BICUBIC };
enum { GS_ZEROS, GS_BORDER, GS_REFLECTION };

typedef struct gs_job {
    const float *x, *grid;
    float *y;
    int64_t C, H, W, Ho, Wo;
    int mode, pad;
    bool align;
} gs_job;

static float gs_unnormalize(float v, int64_t size, bool align)
{
    return align ? (v + 1) * 0.5f * (float)(size - 1) : ((v + 1) * (float)size - 1) * 0.5f;
}

static float gs_reflect(float v, float twice_lo, float twice_hi)
{
    if (twice_lo == twice_hi || !isfinite(v)) return 0;
    float lo = twice_lo / 2, span = (twice_hi - twice_lo) / 2;
    v = fabsf(v - lo);
    float extra = fmodf(v, span);
    int64_t flips = (int64_t)floorf(v / span);
    return flips % 2 == 0 ? extra + lo : span - extra + lo;
}

/* Applies the padding mode to a source coordinate (border / reflection). */
static float gs_pad(const gs_job *j, float v, int64_t size)
{
    if (j->pad == GS_ZEROS) return v;
    if (j->pad == GS_REFLECTION) {
        v = j->align ? gs_reflect(v, 0, 2.0f * (float)(size - 1))
                     : gs_reflect(v, -1, 2.0f * (float)size - 1);
    }
    if (!(v > 0)) return 0; /* also catches NaN */
    return v > (float)(size - 1) ? (float)(size - 1) : v;
}

static float gs_at(const float *img, int64_t H, int64_t W, int64_t yy, int64_t xx)
{
    return yy >= 0 && yy < H && xx >= 0 && xx < W ? img[yy * W + xx] : 0.0f;
}

static void gs_cubic(float t, float *c)
{
    const float A = -0.75f, s = 1 - t;
    c[0] = ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A;
    c[1] = ((A + 2) * t - (A + 3)) * t * t + 1;
    c[2] = ((A + 2) * s - (A + 3)) * s * s + 1;
    c[3] = ((A * (s + 1) - 5 * A) * (s + 1) + 8 * A) * (s + 1) - 4 * A;
}

/* A float coordinate as an index, kept well inside int64 range. */
static int64_t gs_floor(float v)
{
    float f = floorf(v);
    return f < -1e9f || f != f ? -1000000000 : f > 1e9f ? 1000000000 : (int64_t)f;
}

/* Index of a bicubic tap after the padding mode, or -1 (reads zero). */
static int64_t gs_tap(const gs_job *j, int64_t i, int64_t size)
{
    if (j->pad == GS_ZEROS) return i >= 0 && i < size ? i : -1;
    return gs_floor(gs_pad(j, (float)i, size));
}

static void gs_rows(void *arg, int64_t begin, int64_t end)
{
    const gs_job *j = arg;
    const int64_t H = j->H, W = j->W, plane = j->Ho * j->Wo;
    for (int64_t r = begin; r < end; r++) { /* r = n * Ho + oh */
        const int64_t n = r / j->Ho, oh = r % j->Ho;
        const float *img0 = j->x + n * j->C * H * W;
        for (int64_t ow = 0; ow < j->Wo; ow++) {
            const float *g = j->grid + ((r * j->Wo) + ow) * 2;
            float fx = gs_unnormalize(g[0], W, j->align), fy = gs_unnormalize(g[1], H, j->align);
            float *out = j->y + n * j->C * plane + oh * j->Wo + ow;
            if (j->mode == GS_BICUBIC) {
                int64_t x0 = gs_floor(fx), y0 = gs_floor(fy), xs[4], ys[4];
                float cx[4], cy[4];
                gs_cubic(fx - (float)x0, cx);
                gs_cubic(fy - (float)y0, cy);
                for (int k = 0; k < 4; k++) {
                    xs[k] = gs_tap(j, x0 - 1 + k, W);
                    ys[k] = gs_tap(j, y0 - 1 + k, H);
                }
                for (int64_t ch = 0; ch < j->C; ch++) {
                    const float *img = img0 + ch * H * W;
                    float s = 0;
                    for (int a = 0; a < 4; a++) {
                        float row = 0;
                        for (int b = 0; b < 4; b++)
                            if (ys[a] >= 0 && xs[b] >= 0)
                                row += cx[b] * gs_at(img, H, W, ys[a], xs[b]);
                        s += cy[a] * row;
                    }
                    out[ch * plane] = s;
                }
                continue;
            }
            fx = gs_pad(j, fx, W);
            fy = gs_pad(j, fy, H);
            if (j->mode == GS_NEAREST) {
                float rx = nearbyintf(fx), ry = nearbyintf(fy);
                int64_t xi = gs_floor(rx), yi = gs_floor(ry);
                for (int64_t ch = 0; ch < j->C; ch++)
                    out[ch * plane] = gs_at(img0 + ch * H * W, H, W, yi, xi);
                continue;
            }
            int64_t x0 = gs_floor(fx), y0 = gs_floor(fy);
            float lx = fx - (float)x0, ly = fy - (float)y0;
            for (int64_t ch = 0; ch < j->C; ch++) {
                const float *img = img0 + ch * H * W;
                out[ch * plane] = (1 - ly) * ((1 - lx) * gs_at(img, H, W, y0, x0) +
                                              lx * gs_at(img, H, W, y0, x0 + 1)) +
                                  ly * ((1 - lx) * gs_at(img, H, W, y0 + 1, x0) +
                                        lx * gs_at(img, H, W, y0 + 1, x0 + 1));
            }
        }
    }
}

tern_status *image_grid_sample(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *x = c->in[0], *grid = c->in[1];
    if (x->kind != TENSOR_DENSE || x->rank != 4)
        return op_error(c, "X must be a 4-D tensor [N, C, H, W]");
    if (grid->kind != TENSOR_DENSE || grid->rank != 4 || grid->dims[0] != x->dims[0] ||
        grid->dims[3] != 2)
        return op_error(c, "grid must have shape [N, H_out, W_out, 2] with N of X");
    gs_job j = {0};
    const char *mode = op_attr_str(c, "mode", "bilinear");
    const char *pad = op_attr_str(c, "padding_mode", "zeros");
    if (strcmp(mode, "bilinear") == 0)
        j.mode = GS_BILINEAR;
    else if (strcmp(mode, "nearest") == 0)
        j.mode = GS_NEAREST;
    else if (strcmp(mode, "bicubic") == 0)
        j.mode = GS_BICUBIC;
    else
        return op_error(c, "unsupported mode '%s'", mode);
    if (strcmp(pad, "zeros") == 0)
        j.pad = GS_ZEROS;
    else if (strcmp(pad, "border") == 0)
        j.pad = GS_BORDER;
    else if (strcmp(pad, "reflection") == 0)
        j.pad = GS_REFLECTION;
    else
        return op_error(c, "unsupported padding_mode '%s'", pad);
    j.align = op_attr_int(c, "align_corners", 0) != 0;
    j.C = x->dims[1], j.H = x->dims[2], j.W = x->dims[3];
    j.Ho = grid->dims[1], j.Wo = grid->dims[2];
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, 4, (int64_t[]){x->dims[0], j.C, j.Ho, j.Wo}, &y));
    if (y->numel == 0) return NULL;
    if (j.H == 0 || j.W == 0) return op_error(c, "X has an empty spatial dimension");
    TERN_TRY(image_as_f32(c, x, &j.x));
    TERN_TRY(image_as_f32(c, grid, &j.grid));
    TERN_TRY(image_out_f32(c, y, &j.y));
    tpool_for(c->pool, x->dims[0] * j.Ho, 1, gs_rows, &j);
    image_flush_f32(y, j.y);
    return NULL;
}

/* ---- RoiAlign ------------------------------------------------------------- */

typedef struct ra_job {
    const float *x, *rois;
    const int64_t *batch;
    float *y;
    int64_t C, H, W, ph, pw;
    int64_t sampling;
    float scale, offset;
    bool legacy_size; /* output_half_pixel: rois at least 1x1 */
    bool max_mode;
} ra_job;

/* Bilinear taps of one sample point (ONNX Runtime's pre-calculation). */
typedef struct ra_tap {
    int64_t o[4];
    float w[4];
} ra_tap;

static ra_tap ra_point(const ra_job *j, float yy, float xx)
{
    ra_tap t = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    const int64_t H = j->H, W = j->W;
    if (!(yy >= -1.0f && yy <= (float)H && xx >= -1.0f && xx <= (float)W)) return t;
    if (yy <= 0) yy = 0;
    if (xx <= 0) xx = 0;
    int64_t yl = (int64_t)yy, xl = (int64_t)xx, yh, xh;
    if (yl >= H - 1) {
        yh = yl = H - 1;
        yy = (float)yl;
    } else {
        yh = yl + 1;
    }
    if (xl >= W - 1) {
        xh = xl = W - 1;
        xx = (float)xl;
    } else {
        xh = xl + 1;
    }
    float ly = yy - (float)yl, lx = xx - (float)xl, hy = 1 - ly, hx = 1 - lx;
    t.o[0] = yl * W + xl, t.o[1] = yl * W + xh, t.o[2] = yh * W + xl, t.o[3] = yh * W + xh;
    t.w[0] = hy * hx, t.w[1] = hy * lx, t.w[2] = ly * hx, t.w[3] = ly * lx;
    return t;
}

/* Samples per bin along one axis when sampling_ratio is 0: ceil(bin size),
 * at least 1 (a degenerate roi) and bounded (a huge or non-finite one). */
static int64_t ra_grid(float bin)
{
    float g = ceilf(bin);
    return !(g >= 1) ? 1 : g > 4096 ? 4096 : (int64_t)g;
}

static void ra_rois(void *arg, int64_t begin, int64_t end)
{
    const ra_job *j = arg;
    for (int64_t r = begin; r < end; r++) {
        const float *roi = j->rois + r * 4;
        float x1 = roi[0] * j->scale - j->offset, y1 = roi[1] * j->scale - j->offset;
        float x2 = roi[2] * j->scale - j->offset, y2 = roi[3] * j->scale - j->offset;
        float rw = x2 - x1, rh = y2 - y1;
        if (j->legacy_size) {
            rw = rw > 1 ? rw : 1;
            rh = rh > 1 ? rh : 1;
        }
        float bh = rh / (float)j->ph, bw = rw / (float)j->pw;
        int64_t gh = j->sampling > 0 ? j->sampling : ra_grid(rh / (float)j->ph);
        int64_t gw = j->sampling > 0 ? j->sampling : ra_grid(rw / (float)j->pw);
        const float count = (float)(gh * gw);
        const float *img0 = j->x + j->batch[r] * j->C * j->H * j->W;
        float *out0 = j->y + r * j->C * j->ph * j->pw;
        for (int64_t py = 0; py < j->ph; py++)
            for (int64_t px = 0; px < j->pw; px++) {
                for (int64_t ch = 0; ch < j->C; ch++) out0[(ch * j->ph + py) * j->pw + px] = 0;
                for (int64_t iy = 0; iy < gh; iy++) {
                    float yy = y1 + (float)py * bh + ((float)iy + 0.5f) * bh / (float)gh;
                    for (int64_t ix = 0; ix < gw; ix++) {
                        float xx = x1 + (float)px * bw + ((float)ix + 0.5f) * bw / (float)gw;
                        ra_tap t = ra_point(j, yy, xx);
                        bool first = iy == 0 && ix == 0;
                        for (int64_t ch = 0; ch < j->C; ch++) {
                            const float *img = img0 + ch * j->H * j->W;
                            float *o = &out0[(ch * j->ph + py) * j->pw + px];
                            if (!j->max_mode) {
                                *o += t.w[0] * img[t.o[0]] + t.w[1] * img[t.o[1]] +
                                      t.w[2] * img[t.o[2]] + t.w[3] * img[t.o[3]];
                                continue;
                            }
                            float v = t.w[0] * img[t.o[0]];
                            for (int k = 1; k < 4; k++)
                                if (t.w[k] * img[t.o[k]] > v) v = t.w[k] * img[t.o[k]];
                            *o = first || v > *o ? v : *o;
                        }
                    }
                }
                if (!j->max_mode)
                    for (int64_t ch = 0; ch < j->C; ch++)
                        out0[(ch * j->ph + py) * j->pw + px] /= count;
            }
    }
}

tern_status *image_roi_align(op_ctx *c)
{
    for (int i = 0; i < 3; i++) TERN_TRY(op_need_input(c, i));
    const tern_tensor *x = c->in[0], *rois = c->in[1], *bi = c->in[2];
    if (x->kind != TENSOR_DENSE || x->rank != 4) return op_error(c, "X must be a 4-D tensor");
    if (rois->kind != TENSOR_DENSE || rois->rank != 2 || rois->dims[1] != 4)
        return op_error(c, "rois must have shape [num_rois, 4]");
    const int64_t n_rois = rois->dims[0];
    if (bi->kind != TENSOR_DENSE || bi->rank != 1 || bi->dims[0] != n_rois)
        return op_error(c, "batch_indices must have shape [num_rois]");
    ra_job j = {0};
    j.C = x->dims[1], j.H = x->dims[2], j.W = x->dims[3];
    j.ph = op_attr_int(c, "output_height", 1);
    j.pw = op_attr_int(c, "output_width", 1);
    j.sampling = op_attr_int(c, "sampling_ratio", 0);
    j.scale = op_attr_float(c, "spatial_scale", 1.0f);
    if (j.ph <= 0 || j.pw <= 0 || j.ph > (1 << 20) || j.pw > (1 << 20))
        return op_error(c, "output_height and output_width must be positive");
    if (j.sampling < 0 || j.sampling > 4096)
        return op_error(c, "sampling_ratio must be in [0, 4096]");
    const char *mode = op_attr_str(c, "mode", "avg");
    if (strcmp(mode, "max") == 0)
        j.max_mode = true;
    else if (strcmp(mode, "avg") != 0)
        return op_error(c, "unsupported mode '%s'", mode);
    const char *ctm = op_attr_str(c, "coordinate_transformation_mode",
                                  c->opset >= 16 ? "half_pixel" : "output_half_pixel");
    if (strcmp(ctm, "half_pixel") == 0)
        j.offset = 0.5f;
    else if (strcmp(ctm, "output_half_pixel") == 0)
        j.legacy_size = true;
    else
        return op_error(c, "unsupported coordinate_transformation_mode '%s'", ctm);

    int64_t *batch, nb;
    TERN_TRY(op_read_ints(c, bi, &batch, &nb));
    for (int64_t r = 0; r < n_rois; r++)
        if (batch[r] < 0 || batch[r] >= x->dims[0])
            return op_error(c, "batch_indices[%lld] = %lld is out of range", (long long)r,
                            (long long)batch[r]);
    j.batch = batch;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, 4, (int64_t[]){n_rois, j.C, j.ph, j.pw}, &y));
    if (y->numel == 0) return NULL;
    if (j.H == 0 || j.W == 0) return op_error(c, "X has an empty spatial dimension");
    TERN_TRY(image_as_f32(c, x, &j.x));
    TERN_TRY(image_as_f32(c, rois, &j.rois));
    TERN_TRY(image_out_f32(c, y, &j.y));
    tpool_for(c->pool, n_rois, 1, ra_rois, &j);
    image_flush_f32(y, j.y);
    return NULL;
}

/* ---- NonMaxSuppression ------------------------------------------------- */

typedef struct nms_cand {
    float score;
    int64_t index;
} nms_cand;

static int nms_cmp(const void *a, const void *b)
{
    const nms_cand *p = a, *q = b;
    if (p->score != q->score) return p->score > q->score ? -1 : 1;
    return (p->index > q->index) - (p->index < q->index);
}

/* Box i as (y1, x1, y2, x2) with y1 <= y2, x1 <= x2. */
static void nms_box(const float *b, bool center, float *o)
{
    if (center) {
        o[0] = b[1] - b[3] / 2, o[2] = b[1] + b[3] / 2;
        o[1] = b[0] - b[2] / 2, o[3] = b[0] + b[2] / 2;
        return;
    }
    o[0] = fminf(b[0], b[2]), o[2] = fmaxf(b[0], b[2]);
    o[1] = fminf(b[1], b[3]), o[3] = fmaxf(b[1], b[3]);
}

static bool nms_suppress(const float *a, const float *b, float thr)
{
    float area_a = (a[2] - a[0]) * (a[3] - a[1]), area_b = (b[2] - b[0]) * (b[3] - b[1]);
    if (area_a <= 0 || area_b <= 0) return false;
    float ih = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), iw = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    if (ih <= 0 || iw <= 0) return false;
    float inter = ih * iw;
    return inter / (area_a + area_b - inter) > thr;
}

tern_status *image_nms(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *boxes = c->in[0], *scores = c->in[1];
    if (boxes->kind != TENSOR_DENSE || boxes->rank != 3 || boxes->dims[2] != 4)
        return op_error(c, "boxes must have shape [batch, boxes, 4]");
    if (scores->kind != TENSOR_DENSE || scores->rank != 3 || scores->dims[0] != boxes->dims[0] ||
        scores->dims[2] != boxes->dims[1])
        return op_error(c, "scores must have shape [batch, classes, boxes]");
    const int64_t B = boxes->dims[0], C = scores->dims[1], N = boxes->dims[1];
    int64_t max_out = 0;
    float iou_thr = 0, score_thr = 0;
    bool has_score_thr = false;
    const tern_tensor *t;
    if ((t = c->n_in > 2 ? c->in[2] : NULL) && t->kind == TENSOR_DENSE && t->numel > 0) {
        if (!dtype_is_int(t->dtype)) return op_error(c, "max_output_boxes_per_class must be int64");
        max_out = op_get_i64(t, 0);
    }
    if ((t = c->n_in > 3 ? c->in[3] : NULL) && t->kind == TENSOR_DENSE && t->numel > 0) {
        if (!dtype_is_float(t->dtype)) return op_error(c, "iou_threshold must be float");
        iou_thr = (float)op_get_f64(t, 0);
    }
    if ((t = c->n_in > 4 ? c->in[4] : NULL) && t->kind == TENSOR_DENSE && t->numel > 0) {
        if (!dtype_is_float(t->dtype)) return op_error(c, "score_threshold must be float");
        score_thr = (float)op_get_f64(t, 0);
        has_score_thr = true;
    }
    if (max_out < 0) max_out = 0;
    if (max_out > N) max_out = N;
    const bool center = op_attr_int(c, "center_point_box", 0) != 0;

    const float *bx, *sc;
    TERN_TRY(image_as_f32(c, boxes, &bx));
    TERN_TRY(image_as_f32(c, scores, &sc));
    nms_cand *cand;
    float *kept_box;
    int64_t *sel, n_sel = 0;
    TERN_TRY(op_scratch(c, (size_t)(N ? N : 1) * sizeof(nms_cand), (void **)&cand));
    TERN_TRY(
        op_scratch(c, (size_t)(max_out ? max_out : 1) * 4 * sizeof(float), (void **)&kept_box));
    size_t cap = (size_t)B * (size_t)C * (size_t)max_out;
    TERN_TRY(op_scratch(c, (cap ? cap : 1) * 3 * sizeof(int64_t), (void **)&sel));

    for (int64_t b = 0; b < B && max_out > 0; b++)
        for (int64_t k = 0; k < C; k++) {
            const float *s = sc + (b * C + k) * N;
            int64_t n_cand = 0, n_kept = 0;
            for (int64_t i = 0; i < N; i++)
                if (s[i] == s[i] && (!has_score_thr || s[i] > score_thr))
                    cand[n_cand++] = (nms_cand){s[i], i};
            qsort(cand, (size_t)n_cand, sizeof *cand, nms_cmp);
            for (int64_t i = 0; i < n_cand && n_kept < max_out; i++) {
                float box[4];
                nms_box(bx + (b * N + cand[i].index) * 4, center, box);
                bool drop = false;
                for (int64_t q = 0; q < n_kept && !drop; q++)
                    drop = nms_suppress(kept_box + q * 4, box, iou_thr);
                if (drop) continue;
                memcpy(kept_box + n_kept * 4, box, sizeof box);
                n_kept++;
                sel[n_sel * 3] = b, sel[n_sel * 3 + 1] = k, sel[n_sel * 3 + 2] = cand[i].index;
                n_sel++;
            }
        }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_INT64, 2, (int64_t[]){n_sel, 3}, &y));
    if (n_sel) memcpy(y->data, sel, (size_t)n_sel * 3 * sizeof(int64_t));
    return NULL;
}

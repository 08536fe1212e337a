/*
 * Operator family: convolution. Conv, ConvTranspose, ConvInteger and
 * QLinearConv over any number of spatial dimensions, and com.tern
 * FusedConv: Y = act(Conv(X, W, B) + Z), the node tern's graph passes make
 * of a Conv, the Add of a same-shaped Z (a residual) and an activation
 * (ONNX Runtime's com.microsoft FusedConv contract; attributes activation
 * and activation_params).
 *
 * float32 Conv and FusedConv with constant weights (1-3 spatial dims) run
 * through oneDNN (dnnl_conv.c), which keeps the activations in its
 * channel-blocked layout between convolutions; the code below is the
 * portable path for everything else (W computed at run time, the other
 * types, TERN_DNNL=0, shapes oneDNN has no fast kernel for) and the
 * reference the oneDNN path is tested against.
 *
 * Portable float32 Conv is a GEMM per (image, group): Y_g[M/g x P] = W_g[M/g x K] *
 * cols[K x P], K = C/g * kernel size, P = output positions. The im2col
 * matrix is never stored: its packer writes each block straight into the
 * SGEMM's packed-B layout (im2col_pack); a 1x1 stride-1 unpadded conv reads
 * X as B directly. SGEMM's packed A repeats every element 4 times, which is
 * cheap for the weights of a batch but not for the big weights of deep
 * layers at batch 1: there conv_f32_swapped computes Y_g^T = cols^T W_g^T
 * instead, so the small operand is the replicated one. When W is an
 * initializer and oneDNN is off, W_g^T is packed as B once at load
 * (conv_prepare) and that order then costs only the im2col. Depthwise
 * convs (one input channel per group) run a direct loop, with the 3x3 case
 * unrolled. FusedConv adds Z and applies the activation afterwards.
 *
 * float32 ConvTranspose is the transpose: cols[M/g*kernel x P_in] =
 * W_g^T * X_g by SGEMM, then col2im scatters cols into Y.
 *
 * Every other type (double, float16, the integer forms) goes through the
 * reference loops conv_ref / convt_ref, which accumulate in double: exact
 * for the 8-bit integer forms, whose products are small integers.
 */
#include <math.h>
#include <string.h>

#include "ops/conv_geom.h"
#include "ops/dnnl.h"
#include "ops/linalg_gemm.h"
#include "ops/linalg_ops.h"
#include "ops/op.h"

/* ---- shared checks --------------------------------------------------------- */

typedef struct conv_shape {
    int64_t n, c, m, group, cg, mg; /* batch, in/out channels, groups, per group */
    conv_geom g;
} conv_shape;

/* Validates X [N, C, ...] against W [M, C/group, k...] and fills s. */
static tern_status *conv_shape_make(op_ctx *c, const tern_tensor *x, const tern_tensor *w,
                                    conv_shape *s)
{
    if (x->kind != TENSOR_DENSE || w->kind != TENSOR_DENSE)
        return op_error(c, "inputs must be tensors");
    if (x->rank < 3) return op_error(c, "X must be [N, C, spatial...], got rank %d", x->rank);
    if (w->rank != x->rank) return op_error(c, "W has rank %d, X has rank %d", w->rank, x->rank);
    s->n = x->dims[0];
    s->c = x->dims[1];
    s->m = w->dims[0];
    s->group = op_attr_int(c, "group", 1);
    if (s->group < 1 || s->c % s->group || s->m % s->group)
        return op_error(c, "group %lld does not divide %lld input and %lld output channels",
                        (long long)s->group, (long long)s->c, (long long)s->m);
    s->cg = s->c / s->group;
    s->mg = s->m / s->group;
    if (w->dims[1] != s->cg)
        return op_error(c, "W has %lld input channels per group, expected %lld",
                        (long long)w->dims[1], (long long)s->cg);
    const int64_t *ks;
    int nk = op_attr_ints(c, "kernel_shape", &ks);
    if (nk >= 0) {
        if (nk != x->rank - 2) return op_error(c, "kernel_shape has %d values", nk);
        for (int d = 0; d < nk; d++)
            if (ks[d] != w->dims[d + 2]) return op_error(c, "kernel_shape does not match W");
    }
    return conv_geom_make(c, x, w->dims + 2, false, &s->g);
}

static tern_status *conv_out(op_ctx *c, const conv_shape *s, tern_dtype dt, tern_tensor **y)
{
    int64_t dims[TERN_MAX_RANK] = {s->n, s->m};
    for (int d = 0; d < s->g.nsp; d++) dims[d + 2] = s->g.out[d];
    return op_out(c, 0, dt, s->g.nsp + 2, dims, y);
}

/* Optional 1-D bias of m values, of type dt. */
static tern_status *conv_bias(op_ctx *c, int idx, int64_t m, tern_dtype dt, const tern_tensor **b)
{
    *b = idx < c->n_in ? c->in[idx] : NULL;
    if (!*b) return NULL;
    if ((*b)->kind != TENSOR_DENSE || (*b)->dtype != dt || (*b)->numel != m || (*b)->rank != 1)
        return op_error(c, "bias must be a 1-D %s tensor of %lld values", tern_dtype_name(dt),
                        (long long)m);
    return NULL;
}

/* ---- float32 Conv: im2col packed straight into SGEMM's B panels ---------- */

typedef struct im2col_ctx {
    const float *x; /* first input channel of the group in this image */
    const conv_geom *g;
} im2col_ctx;

/* Columns [n0, n0+nc) of im2col row `row` (input channel, kernel offset)
 * into out[0..nc): the input each output position reads, 0 in the padding. */
static void im2col_row(const im2col_ctx *ctx, int64_t row, int64_t n0, int64_t nc, float *out)
{
    const conv_geom *g = ctx->g;
    int last = g->nsp - 1;
    int64_t ci = row / g->k_size, kr = row % g->k_size;
    int64_t koff[CONV_MAX_SP], o[CONV_MAX_SP], pos = n0;
    for (int d = last; d >= 0; d--) {
        koff[d] = kr % g->k[d] * g->dil[d] - g->pad0[d];
        kr /= g->k[d];
        o[d] = pos % g->out[d];
        pos /= g->out[d];
    }
    const float *xc = ctx->x + ci * g->in_size;
    int64_t s = g->stride[last], in = g->in[last], off = koff[last];
    for (int64_t j = 0; j < nc;) {
        /* A run of output positions along the last dimension: inputs
         * (o+r)*s + off, valid for r in [lo, hi). */
        int64_t run = g->out[last] - o[last];
        if (run > nc - j) run = nc - j;
        bool ok = true;
        int64_t base = 0;
        for (int d = 0; d < last; d++) {
            int64_t i = o[d] * g->stride[d] + koff[d];
            ok = ok && i >= 0 && i < g->in[d];
            base = base * g->in[d] + i;
        }
        int64_t first = o[last] * s + off, lo = 0, hi = 0;
        if (ok) {
            lo = first < 0 ? (-first + s - 1) / s : 0;
            hi = in - 1 - first < 0 ? 0 : (in - 1 - first) / s + 1;
            if (hi > run) hi = run;
            if (lo > hi) lo = hi;
        }
        const float *xr = xc + (ok ? base * in : 0);
        float *dst = out + j;
        int64_t r = 0;
        for (; r < lo; r++) dst[r] = 0.0f;
        if (s == 1)
            for (; r < hi; r++) dst[r] = xr[first + r];
        else
            for (; r < hi; r++) dst[r] = xr[first + r * s];
        for (; r < run; r++) dst[r] = 0.0f;
        j += run;
        o[last] += run;
        for (int d = last; d > 0 && o[d] == g->out[d]; d--) {
            o[d] = 0;
            o[d - 1]++;
        }
    }
}

/* sgemm_pack_fn: im2col rows built in a small buffer, then dealt into the
 * NR-column panels. */
static void im2col_pack(const void *vctx, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                        float *dst)
{
    enum { CHUNK = 16 * SGEMM_NR };
    float buf[CHUNK];
    for (int64_t c0 = 0; c0 < nc; c0 += CHUNK) {
        int64_t w = nc - c0 < CHUNK ? nc - c0 : CHUNK;
        int64_t wp = (w + SGEMM_NR - 1) / SGEMM_NR * SGEMM_NR;
        float *d0 = dst + c0 * kc;
        for (int64_t kk = 0; kk < kc; kk++) {
            im2col_row(vctx, k0 + kk, n0 + c0, w, buf);
            for (int64_t j = w; j < wp; j++) buf[j] = 0.0f;
            float *d = d0 + kk * SGEMM_NR;
            for (int64_t p = 0; p < wp; p += SGEMM_NR, d += kc * SGEMM_NR)
                for (int l = 0; l < SGEMM_NR; l++) d[l] = buf[p + l];
        }
    }
}

/* Depthwise conv, 2-D (1-D promoted): output channel m reads input channel
 * m / mult with its own filter. Items are (image, output channel). */
typedef struct dw_job {
    const float *x, *w, *b;
    float *y;
    const float *zero; /* a row of in[1] zeros standing in for padding rows */
    conv_geom g;       /* 2-D */
    int64_t c, m, mult;
} dw_job;

/* The common 3x3 undilated filter: every output is nine multiply-adds over
 * three input rows (a padding row reads the zero row); the interior columns
 * need no bounds checks and vectorise. */
static void dw3x3_plane(const dw_job *j, const float *xp, const float *wp, float bias, float *yp)
{
    const conv_geom *g = &j->g;
    int64_t H = g->in[0], W = g->in[1], OH = g->out[0], OW = g->out[1];
    int64_t sh = g->stride[0], sw = g->stride[1], pw = g->pad0[1];
    /* interior: 0 <= ow*sw - pw and ow*sw - pw + 2 < W */
    int64_t lo = (pw + sw - 1) / sw, hi = W - 3 + pw < 0 ? 0 : (W - 3 + pw) / sw + 1;
    if (lo > OW) lo = OW;
    if (hi > OW) hi = OW;
    if (hi < lo) hi = lo;
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *r[3];
        for (int kh = 0; kh < 3; kh++) {
            int64_t ih = oh * sh - g->pad0[0] + kh;
            r[kh] = ih >= 0 && ih < H ? xp + ih * W : j->zero;
        }
        float *yr = yp + oh * OW;
        for (int64_t ow = 0; ow < OW; ow++) {
            if (ow == lo) ow = hi; /* skip the interior */
            if (ow >= OW) break;
            float acc = bias;
            for (int kw = 0; kw < 3; kw++) {
                int64_t iw = ow * sw - pw + kw;
                if (iw < 0 || iw >= W) continue;
                acc += wp[kw] * r[0][iw] + wp[3 + kw] * r[1][iw] + wp[6 + kw] * r[2][iw];
            }
            yr[ow] = acc;
        }
        const float *r0 = r[0], *r1 = r[1], *r2 = r[2];
        float w0 = wp[0], w1 = wp[1], w2 = wp[2], w3 = wp[3], w4 = wp[4], w5 = wp[5];
        float w6 = wp[6], w7 = wp[7], w8 = wp[8];
        if (sw == 1) {
            for (int64_t ow = lo; ow < hi; ow++) {
                int64_t c0 = ow - pw;
                yr[ow] = bias + w0 * r0[c0] + w1 * r0[c0 + 1] + w2 * r0[c0 + 2] + w3 * r1[c0] +
                         w4 * r1[c0 + 1] + w5 * r1[c0 + 2] + w6 * r2[c0] + w7 * r2[c0 + 1] +
                         w8 * r2[c0 + 2];
            }
        } else {
            for (int64_t ow = lo; ow < hi; ow++) {
                int64_t c0 = ow * sw - pw;
                yr[ow] = bias + w0 * r0[c0] + w1 * r0[c0 + 1] + w2 * r0[c0 + 2] + w3 * r1[c0] +
                         w4 * r1[c0 + 1] + w5 * r1[c0 + 2] + w6 * r2[c0] + w7 * r2[c0 + 1] +
                         w8 * r2[c0 + 2];
            }
        }
    }
}

static void dw_range(void *arg, int64_t begin, int64_t end)
{
    const dw_job *j = arg;
    const conv_geom *g = &j->g;
    int64_t H = g->in[0], W = g->in[1], OH = g->out[0], OW = g->out[1];
    int64_t KH = g->k[0], KW = g->k[1], sh = g->stride[0], sw = g->stride[1];
    bool k3 = KH == 3 && KW == 3 && g->dil[0] == 1 && g->dil[1] == 1;
    for (int64_t it = begin; it < end; it++) {
        int64_t n = it / j->m, m = it % j->m;
        const float *xp = j->x + (n * j->c + m / j->mult) * H * W, *wp = j->w + m * KH * KW;
        float *yp = j->y + it * OH * OW, bias = j->b ? j->b[m] : 0.0f;
        if (k3) {
            dw3x3_plane(j, xp, wp, bias, yp);
            continue;
        }
        for (int64_t oh = 0; oh < OH; oh++) {
            float *yr = yp + oh * OW;
            for (int64_t ow = 0; ow < OW; ow++) yr[ow] = bias;
            for (int64_t kh = 0; kh < KH; kh++) {
                int64_t ih = oh * sh - g->pad0[0] + kh * g->dil[0];
                if (ih < 0 || ih >= H) continue;
                const float *xr = xp + ih * W;
                for (int64_t kw = 0; kw < KW; kw++) {
                    float wv = wp[kh * KW + kw];
                    int64_t off = kw * g->dil[1] - g->pad0[1];
                    /* ow range with 0 <= ow*sw + off < W */
                    int64_t lo = off < 0 ? (-off + sw - 1) / sw : 0;
                    int64_t hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
                    if (hi > OW) hi = OW;
                    for (int64_t ow = lo; ow < hi; ow++) yr[ow] += wv * xr[ow * sw + off];
                }
            }
        }
    }
}

typedef struct im2col_job {
    im2col_ctx ctx;
    int64_t p;  /* columns */
    float *col; /* K x P */
} im2col_job;

static void im2col_rows(void *arg, int64_t begin, int64_t end)
{
    const im2col_job *j = arg;
    for (int64_t r = begin; r < end; r++) im2col_row(&j->ctx, r, 0, j->p, j->col + r * j->p);
}

/* Conv with the operands swapped (see conv_f32): per image and group, the
 * im2col matrix (or X itself when pointwise) is packed as A, transposed, and
 * W_g^T streams as B; the product lands transposed, i.e. straight in Y.
 * wt, if not NULL, is W_g^T for every group already packed (conv_prepare). */
static tern_status *conv_f32_swapped(op_ctx *c, const conv_shape *s, bool pointwise, const float *x,
                                     const float *w, const float *wt, const float *b, float *y)
{
    const conv_geom *g = &s->g;
    int64_t P = g->out_size, K = s->cg * g->k_size;
    size_t pa_n = sgemm_pa_floats(P, K), pb_n = wt ? 0 : sgemm_pb_floats(s->mg, K);
    float *pa, *pb, *col;
    TERN_TRY(op_scratch(c, (pa_n + pb_n + (pointwise ? 0 : (size_t)(K * P))) * sizeof(float),
                        (void **)&pa));
    pb = pa + pa_n;
    col = pb + pb_n;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t gi = 0; gi < s->group; gi++) {
            const float *xg = x + (n * s->c + gi * s->cg) * g->in_size;
            if (!pointwise) {
                im2col_job j = {{xg, g}, P, col};
                tpool_for(c->pool, K, 4, im2col_rows, &j);
                xg = col;
            }
            sgemm_pack_a(c->pool, P, K, xg, 1, P, pa);
            sgemm_out o = {y + (n * s->m + gi * s->mg) * P, P, true, b ? b + gi * s->mg : NULL};
            if (wt) {
                const float *wtg = wt + (size_t)gi * sgemm_pb_all_floats(s->mg, K);
                sgemm_prepacked(c->pool, P, s->mg, K, 1.0f, pa, wtg, 0.0f, &o);
                continue;
            }
            sgemm_view v = {w + gi * s->mg * K, 1, K};
            sgemm_packed(c->pool, P, s->mg, K, 1.0f, pa, sgemm_pack_view, &v, 0.0f, &o, pb);
        }
    return NULL;
}

/* wt: the weights as conv_prepare packed them, or NULL. */
static tern_status *conv_f32(op_ctx *c, const conv_shape *s, const float *x, const float *w,
                             const float *wt, const float *b, float *y)
{
    const conv_geom *g = &s->g;
    int64_t P = g->out_size, K = s->cg * g->k_size;
    if (s->n == 0 || s->m == 0 || P == 0) return NULL;
    if (K == 0) { /* no input channels: the bias alone */
        for (int64_t i = 0; i < s->n * s->m * P; i++) y[i] = b ? b[i / P % s->m] : 0.0f;
        return NULL;
    }
    if (s->cg == 1 && s->mg >= 1 && g->nsp <= 2 && s->group > 1) {
        dw_job j = {x, w, b, y, NULL, {0}, s->c, s->m, s->mg};
        conv_geom_as_2d(g, &j.g);
        float *zero;
        TERN_TRY(op_scratch(c, (size_t)(j.g.in[1] + 1) * sizeof(float), (void **)&zero));
        memset(zero, 0, (size_t)j.g.in[1] * sizeof(float));
        j.zero = zero;
        tpool_for(c->pool, s->n * s->m, 1, dw_range, &j);
        return NULL;
    }
    bool pointwise = true;
    for (int d = 0; d < g->nsp; d++)
        if (g->k[d] != 1 || g->stride[d] != 1 || g->pad0[d] || g->pad1[d]) pointwise = false;

    /* Packed A is every weight repeated SGEMM_LANES times, once per call;
     * packed B is the im2col matrix, once per image. When the weights
     * outweigh the images (deep layers at small batch), swap the operands:
     * Y_g^T = cols^T * W_g^T, so the replicated side is the small one. The
     * weights as B then cost a packing per image and group, or nothing
     * when they were packed at load. */
    double lanes = SGEMM_LANES, imgs = (double)s->n;
    double normal = lanes * (double)(s->m * K) + imgs * (double)(s->group * K * P);
    double swapped = imgs * (double)s->group *
                     ((lanes + !pointwise) * (double)(K * P) + (wt ? 0.0 : (double)(K * s->mg)));
    if (swapped < normal) return conv_f32_swapped(c, s, pointwise, x, w, wt, b, y);

    size_t pa_n = sgemm_pa_floats(s->mg, K);
    float *pa, *pb;
    TERN_TRY(op_scratch(c, (pa_n * (size_t)s->group + sgemm_pb_floats(P, K)) * sizeof(float),
                        (void **)&pa));
    pb = pa + pa_n * (size_t)s->group;
    for (int64_t gi = 0; gi < s->group; gi++)
        sgemm_pack_a(c->pool, s->mg, K, w + gi * s->mg * K, K, 1, pa + pa_n * (size_t)gi);
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t gi = 0; gi < s->group; gi++) {
            const float *xg = x + (n * s->c + gi * s->cg) * g->in_size;
            sgemm_out o = {y + (n * s->m + gi * s->mg) * P, P, false, b ? b + gi * s->mg : NULL};
            sgemm_view v = {xg, P, 1};
            im2col_ctx ic = {xg, g};
            sgemm_packed(c->pool, s->mg, P, K, 1.0f, pa + pa_n * (size_t)gi,
                         pointwise ? sgemm_pack_view : im2col_pack,
                         pointwise ? (const void *)&v : (const void *)&ic, 0.0f, &o, pb);
        }
    return NULL;
}

/* ---- reference Conv (every type, zero points for the integer forms) ------ */

/* acc[(n*M + m)*P + p] = sum over the window of (x - x_zp) * (w - w_zp[m]).
 * w_zp may be NULL, a scalar or one value per output channel. */
static tern_status *conv_ref(op_ctx *c, const conv_shape *s, const tern_tensor *x, double x_zp,
                             const tern_tensor *w, const tern_tensor *w_zp, double **acc_out)
{
    const conv_geom *g = &s->g;
    int nsp = g->nsp;
    int64_t P = g->out_size, KS = g->k_size;
    double *xd, *wd, *acc;
    size_t ny = (size_t)(s->n * s->m * P);
    TERN_TRY(op_scratch(c, (size_t)(x->numel + w->numel + 1) * sizeof(double) + ny * sizeof(double),
                        (void **)&xd));
    wd = xd + x->numel;
    acc = wd + w->numel + 1;
    for (int64_t i = 0; i < x->numel; i++) xd[i] = op_get_f64(x, i) - x_zp;
    int64_t per_m = s->cg * KS;
    for (int64_t i = 0; i < w->numel; i++) {
        int64_t m = i / per_m;
        double z = w_zp ? op_get_f64(w_zp, w_zp->numel == 1 ? 0 : m) : 0.0;
        wd[i] = op_get_f64(w, i) - z;
    }
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t m = 0; m < s->m; m++) {
            int64_t gi = m / s->mg;
            for (int64_t p = 0; p < P; p++) {
                int64_t o[CONV_MAX_SP], q = p;
                for (int d = nsp - 1; d >= 0; d--) {
                    o[d] = q % g->out[d];
                    q /= g->out[d];
                }
                double sum = 0;
                for (int64_t kp = 0; kp < KS; kp++) {
                    int64_t r = kp, xo = 0, stride = 1;
                    bool ok = true;
                    for (int d = nsp - 1; d >= 0; d--) {
                        int64_t i = o[d] * g->stride[d] - g->pad0[d] + r % g->k[d] * g->dil[d];
                        r /= g->k[d];
                        ok = ok && i >= 0 && i < g->in[d];
                        xo += i * stride;
                        stride *= g->in[d];
                    }
                    if (!ok) continue;
                    for (int64_t ci = 0; ci < s->cg; ci++)
                        sum += xd[(n * s->c + gi * s->cg + ci) * g->in_size + xo] *
                               wd[(m * s->cg + ci) * KS + kp];
                }
                acc[(n * s->m + m) * P + p] = sum;
            }
        }
    *acc_out = acc;
    return NULL;
}

/* ---- float32 Conv weights prepared at load ---------------------------------- */

/* For a constant float32 W: the oneDNN plan cache (dnnl_conv.c), or when
 * oneDNN is off, W_g^T of every group as SGEMM's packed B, group g at
 * g * sgemm_pb_all_floats(M/group, K): the weight operand of
 * conv_f32_swapped, the order deep layers take at small batch. It holds
 * for the tensor it was prepared from only (an initializer that is also a
 * graph input may be replaced by the caller's value). */
typedef struct conv_prepared {
    const tern_tensor *w;
    const float *wt; /* or NULL */
    dnn_cache *dnn;  /* or NULL */
} conv_prepared;

static tern_status *conv_prepare(op_prep *p, const void **state)
{
    const tern_tensor *w = p->n_in > 1 ? p->in[1] : NULL;
    if (!w || w->kind != TENSOR_DENSE || w->dtype != TERN_FLOAT || w->rank < 3) return NULL;
    op_ctx attrs = {.node = p->node, .opset = p->opset}; /* for op_attr_int */
    int64_t group = op_attr_int(&attrs, "group", 1), m = w->dims[0], cg = w->dims[1];
    if (group < 1 || m == 0 || m % group || w->numel == 0) return NULL;
    conv_prepared *s = op_prep_alloc(p, sizeof *s);
    if (!s) return tern_error(TERN_ERR_NO_MEMORY, "out of memory preparing W");
    *s = (conv_prepared){w, NULL, w->rank <= 5 ? dnn_cache_create(p) : NULL};
    *state = s;
    if (s->dnn) return NULL;
    if (cg == 1 && group > 1 && w->rank <= 4) return NULL; /* depthwise: a direct loop */
    int64_t mg = m / group, k = w->numel / m;
    size_t per = sgemm_pb_all_floats(mg, k);
    float *wt = op_prep_alloc(p, per * (size_t)group * sizeof(float));
    if (!wt) return tern_error(TERN_ERR_NO_MEMORY, "out of memory packing W");
    for (int64_t gi = 0; gi < group; gi++) {
        sgemm_view v = {(const float *)w->data + gi * mg * k, 1, k};
        sgemm_pack_b_all(mg, k, sgemm_pack_view, &v, wt + (size_t)gi * per);
    }
    s->wt = wt;
    return NULL;
}

/* ---- FusedConv's activation ------------------------------------------------- */

/* The activation and activation_params attributes (ONNX Runtime's FusedConv
 * names and defaults). */
static tern_status *conv_act_read(op_ctx *c, conv_act *a)
{
    const char *name = op_attr_str(c, "activation", "");
    const float *p;
    int np = op_attr_floats(c, "activation_params", &p);
    float p0 = np > 0 ? p[0] : NAN, p1 = np > 1 ? p[1] : NAN;
    *a = (conv_act){ACT_NONE, 0.0f, 0.0f};
    if (!*name) return NULL;
    if (!strcmp(name, "Relu")) {
        a->kind = ACT_RELU;
    } else if (!strcmp(name, "LeakyRelu")) {
        *a = (conv_act){ACT_LEAKY_RELU, np > 0 ? p0 : 0.01f, 0.0f};
    } else if (!strcmp(name, "Clip")) {
        *a = (conv_act){ACT_CLIP, np > 0 ? p0 : -INFINITY, np > 1 ? p1 : INFINITY};
    } else if (!strcmp(name, "Sigmoid")) {
        a->kind = ACT_SIGMOID;
    } else if (!strcmp(name, "Tanh")) {
        a->kind = ACT_TANH;
    } else if (!strcmp(name, "HardSigmoid")) {
        *a = (conv_act){ACT_HARD_SIGMOID, np > 0 ? p0 : 0.2f, np > 1 ? p1 : 0.5f};
    } else {
        return op_error(c, "unknown activation '%s'", name);
    }
    return NULL;
}

static inline double act_f64(conv_act a, double v)
{
    switch (a.kind) {
    case ACT_NONE: return v;
    case ACT_RELU: return v > 0.0 ? v : 0.0;
    case ACT_LEAKY_RELU: return v < 0.0 ? (double)a.a * v : v;
    case ACT_CLIP: return fmin(fmax(v, (double)a.a), (double)a.b);
    case ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case ACT_TANH: return tanh(v);
    case ACT_HARD_SIGMOID: return fmax(0.0, fmin(1.0, (double)a.a * v + (double)a.b));
    }
    return v;
}

typedef struct epilogue_job {
    float *y;
    const float *z;
    conv_act act;
} epilogue_job;

/* y = act(y + z) over [begin, end) (float32 FusedConv, portable path). */
static void epilogue_range(void *arg, int64_t begin, int64_t end)
{
    const epilogue_job *j = arg;
    float *y = j->y;
    conv_act a = j->act;
    if (j->z)
        for (int64_t i = begin; i < end; i++) y[i] += j->z[i];
    switch (a.kind) {
    case ACT_NONE: break;
    case ACT_RELU:
        for (int64_t i = begin; i < end; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        break;
    case ACT_LEAKY_RELU:
        for (int64_t i = begin; i < end; i++) y[i] = y[i] < 0.0f ? a.a * y[i] : y[i];
        break;
    case ACT_CLIP:
        for (int64_t i = begin; i < end; i++) y[i] = fminf(fmaxf(y[i], a.a), a.b);
        break;
    case ACT_SIGMOID:
        for (int64_t i = begin; i < end; i++) y[i] = 1.0f / (1.0f + expf(-y[i]));
        break;
    case ACT_TANH:
        for (int64_t i = begin; i < end; i++) y[i] = tanhf(y[i]);
        break;
    case ACT_HARD_SIGMOID:
        for (int64_t i = begin; i < end; i++) y[i] = fmaxf(0.0f, fminf(1.0f, a.a * y[i] + a.b));
        break;
    }
}

/* ---- Conv and FusedConv -------------------------------------------------------- */

/* Y = act(Conv(X, W, B) + Z); Conv is the case with neither Z nor act.
 * X (and Z) may be channel-blocked (LAYOUT_C16): oneDNN takes them as they
 * are, the portable path unblocks them first. */
static tern_status *conv_run(op_ctx *c, bool fused)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *x = c->in[0], *w = c->in[1], *b, *z = NULL;
    conv_shape s;
    TERN_TRY(conv_shape_make(c, x, w, &s));
    if (w->dtype != x->dtype) return op_error(c, "X and W types differ");
    if (!dtype_is_float(x->dtype))
        return op_error(c, "unsupported type %s", tern_dtype_name(x->dtype));
    TERN_TRY(conv_bias(c, 2, s.m, x->dtype, &b));
    conv_act act = {ACT_NONE, 0.0f, 0.0f};
    if (fused) {
        TERN_TRY(conv_act_read(c, &act));
        z = c->n_in > 3 ? c->in[3] : NULL;
        if (z) {
            bool ok = z->kind == TENSOR_DENSE && z->dtype == x->dtype && z->rank == x->rank &&
                      z->dims[0] == s.n && z->dims[1] == s.m;
            for (int d = 0; ok && d < s.g.nsp; d++) ok = z->dims[d + 2] == s.g.out[d];
            if (!ok) return op_error(c, "Z must have the type and shape of Y");
        }
    }
    const conv_prepared *st = c->state;
    if (st && st->w == w && st->dnn) {
        dnn_conv cv = {x, w, b, z, s.group, s.m, &s.g, act};
        bool done;
        TERN_TRY(dnn_conv_run(c, st->dnn, &cv, &done));
        if (done) return NULL;
    }
    const float *wt = st && st->w == w ? st->wt : NULL;
    TERN_TRY(dnn_plain(c, x, &x));
    TERN_TRY(dnn_plain(c, w, &w));
    TERN_TRY(dnn_plain(c, z, &z));
    tern_tensor *y;
    TERN_TRY(conv_out(c, &s, x->dtype, &y));
    if (x->dtype == TERN_FLOAT) {
        TERN_TRY(conv_f32(c, &s, x->data, w->data, wt, b ? b->data : NULL, y->data));
        if (z || act.kind != ACT_NONE) {
            epilogue_job j = {y->data, z ? z->data : NULL, act};
            tpool_for(c->pool, y->numel, 4096, epilogue_range, &j);
        }
        return NULL;
    }
    double *acc;
    TERN_TRY(conv_ref(c, &s, x, 0.0, w, NULL, &acc));
    int64_t P = s.g.out_size;
    for (int64_t i = 0; i < y->numel; i++) {
        double v = acc[i] + (b ? op_get_f64(b, i / P % s.m) : 0.0) + (z ? op_get_f64(z, i) : 0.0);
        dtype_set_f64(y->dtype, y->data, i, act_f64(act, v));
    }
    return NULL;
}

static tern_status *op_conv(op_ctx *c)
{
    return conv_run(c, false);
}

static tern_status *op_fused_conv(op_ctx *c)
{
    return conv_run(c, true);
}

/* ---- ConvInteger, QLinearConv ------------------------------------------------ */

static tern_status *op_conv_integer(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *x = c->in[0], *w = c->in[1], *xzp, *wzp;
    if (!linalg_is_q8(x->dtype) || !linalg_is_q8(w->dtype))
        return op_error(c, "inputs must be int8 or uint8");
    conv_shape s;
    TERN_TRY(conv_shape_make(c, x, w, &s));
    TERN_TRY(linalg_q_param(c, 2, "x_zero_point", 1, false, &xzp));
    TERN_TRY(linalg_q_param(c, 3, "w_zero_point", s.m, false, &wzp));
    tern_tensor *y;
    TERN_TRY(conv_out(c, &s, TERN_INT32, &y));
    double *acc;
    TERN_TRY(conv_ref(c, &s, x, xzp ? op_get_f64(xzp, 0) : 0.0, w, wzp, &acc));
    int32_t *yd = y->data;
    for (int64_t i = 0; i < y->numel; i++) yd[i] = (int32_t)(uint32_t)(int64_t)acc[i];
    return NULL;
}

static tern_status *op_qlinear_conv(op_ctx *c)
{
    for (int i = 0; i < 8; i++)
        if (i != 2 && i != 5 && i != 7) TERN_TRY(op_need_input(c, i));
    const tern_tensor *x = c->in[0], *w = c->in[3], *xs, *xzp, *ws, *wzp, *ys, *yzp, *b;
    if (!linalg_is_q8(x->dtype) || !linalg_is_q8(w->dtype))
        return op_error(c, "inputs must be int8 or uint8");
    conv_shape s;
    TERN_TRY(conv_shape_make(c, x, w, &s));
    TERN_TRY(linalg_q_param(c, 1, "x_scale", 1, true, &xs));
    TERN_TRY(linalg_q_param(c, 2, "x_zero_point", 1, false, &xzp));
    TERN_TRY(linalg_q_param(c, 4, "w_scale", s.m, true, &ws));
    TERN_TRY(linalg_q_param(c, 5, "w_zero_point", s.m, false, &wzp));
    TERN_TRY(linalg_q_param(c, 6, "y_scale", 1, true, &ys));
    TERN_TRY(linalg_q_param(c, 7, "y_zero_point", 1, false, &yzp));
    TERN_TRY(conv_bias(c, 8, s.m, TERN_INT32, &b));
    if (!dtype_is_float(xs->dtype) || !dtype_is_float(ws->dtype) || !dtype_is_float(ys->dtype))
        return op_error(c, "scales must be floating point");
    tern_dtype yt = yzp ? yzp->dtype : TERN_UINT8;
    if (!linalg_is_q8(yt)) return op_error(c, "y_zero_point must be int8 or uint8");
    tern_tensor *y;
    TERN_TRY(conv_out(c, &s, yt, &y));
    double *acc;
    TERN_TRY(conv_ref(c, &s, x, xzp ? op_get_f64(xzp, 0) : 0.0, w, wzp, &acc));
    float xsc = (float)op_get_f64(xs, 0), ysc = (float)op_get_f64(ys, 0);
    float yz = yzp ? (float)op_get_f64(yzp, 0) : 0.0f;
    float lo = yt == TERN_UINT8 ? 0.0f : -128.0f, hi = yt == TERN_UINT8 ? 255.0f : 127.0f;
    int64_t P = s.g.out_size;
    for (int64_t i = 0; i < y->numel; i++) {
        int64_t m = i / P % s.m;
        double a = acc[i] + (b ? op_get_f64(b, m) : 0.0);
        float mult = xsc * (float)op_get_f64(ws, ws->numel == 1 ? 0 : m) / ysc;
        float v = nearbyintf((float)a * mult) + yz;
        if (!(v >= lo)) v = lo;
        if (v > hi) v = hi;
        dtype_set_i64(yt, y->data, i, (int64_t)v);
    }
    return NULL;
}

/* ---- ConvTranspose ------------------------------------------------------------- */

typedef struct convt_shape {
    int64_t n, c, m, group, cg, mg;
    int nsp;
    int64_t in[CONV_MAX_SP], out[CONV_MAX_SP], k[CONV_MAX_SP];
    int64_t stride[CONV_MAX_SP], dil[CONV_MAX_SP], pad0[CONV_MAX_SP];
    int64_t in_size, out_size, k_size;
} convt_shape;

/* X [N, C, in...], W [C, M/group, k...]: Y [N, M, out...] where input
 * position i scatters to output i*stride - pad0 + j*dil. */
static tern_status *convt_shape_make(op_ctx *c, const tern_tensor *x, const tern_tensor *w,
                                     convt_shape *s)
{
    if (x->kind != TENSOR_DENSE || w->kind != TENSOR_DENSE)
        return op_error(c, "inputs must be tensors");
    if (x->rank < 3 || w->rank != x->rank)
        return op_error(c, "X must be [N, C, spatial...] and W of the same rank");
    int n = s->nsp = x->rank - 2;
    s->n = x->dims[0];
    s->c = x->dims[1];
    s->group = op_attr_int(c, "group", 1);
    if (s->group < 1 || s->c % s->group || w->dims[0] != s->c)
        return op_error(c, "W has %lld input channels, X has %lld (group %lld)",
                        (long long)w->dims[0], (long long)s->c, (long long)s->group);
    s->cg = s->c / s->group;
    s->mg = w->dims[1];
    s->m = s->mg * s->group;
    int64_t opad[CONV_MAX_SP], pads[2 * CONV_MAX_SP], oshape[TERN_MAX_RANK];
    TERN_TRY(conv_ints_attr(c, "strides", n, 1, 1, s->stride));
    TERN_TRY(conv_ints_attr(c, "dilations", n, 1, 1, s->dil));
    TERN_TRY(conv_ints_attr(c, "output_padding", n, 0, 0, opad));
    TERN_TRY(conv_ints_attr(c, "pads", 2 * n, 0, 0, pads));
    const int64_t *ks;
    int nk = op_attr_ints(c, "kernel_shape", &ks);
    if (nk >= 0 && nk != n) return op_error(c, "kernel_shape has %d values", nk);
    for (int d = 0; d < n && nk >= 0; d++)
        if (ks[d] != w->dims[d + 2]) return op_error(c, "kernel_shape does not match W");
    const int64_t *os;
    int nos = op_attr_ints(c, "output_shape", &os);
    if (nos >= 0) {
        if (nos != n && nos != n + 2) return op_error(c, "output_shape has %d values", nos);
        for (int d = 0; d < n; d++) oshape[d] = os[nos - n + d];
    }
    const char *ap = op_attr_str(c, "auto_pad", "NOTSET");
    bool upper = strcmp(ap, "SAME_UPPER") == 0, lower = strcmp(ap, "SAME_LOWER") == 0;
    bool valid = strcmp(ap, "VALID") == 0;
    if (!upper && !lower && !valid && strcmp(ap, "NOTSET") != 0 && ap[0])
        return op_error(c, "unknown auto_pad '%s'", ap);
    s->in_size = s->out_size = s->k_size = 1;
    for (int d = 0; d < n; d++) {
        int64_t in = x->dims[d + 2], k = w->dims[d + 2], st = s->stride[d];
        if (k < 1) return op_error(c, "kernel size %lld is invalid", (long long)k);
        if (opad[d] >= st && opad[d] >= s->dil[d])
            return op_error(c, "output_padding %lld must be smaller than stride or dilation",
                            (long long)opad[d]);
        int64_t full = st * (in - 1) + opad[d] + (k - 1) * s->dil[d] + 1, out;
        if (nos >= 0 || upper || lower) {
            out = nos >= 0 ? oshape[d] : in * st;
            int64_t total = full - out;
            /* A negative total pads the end with extra (bias-only) positions. */
            s->pad0[d] = total <= 0 ? 0 : lower ? total - total / 2 : total / 2;
        } else {
            s->pad0[d] = valid ? 0 : pads[d];
            out = full - s->pad0[d] - (valid ? 0 : pads[d + n]);
        }
        if (out < 0 || out > (INT64_C(1) << 40))
            return op_error(c, "output size %lld is invalid", (long long)out);
        s->in[d] = in;
        s->out[d] = out;
        s->k[d] = k;
        if (!conv_mul_ok(&s->in_size, in) || !conv_mul_ok(&s->out_size, out) ||
            !conv_mul_ok(&s->k_size, k))
            return op_error(c, "geometry overflows");
    }
    return NULL;
}

typedef struct col2im_job {
    const convt_shape *s;
    const float *col; /* [mg*k_size x in_size] */
    float *y;         /* first output channel of the group in this image */
} col2im_job;

/* Items are output channels of the group. */
static void col2im_range(void *arg, int64_t begin, int64_t end)
{
    const col2im_job *j = arg;
    const convt_shape *s = j->s;
    int nsp = s->nsp, last = nsp - 1;
    for (int64_t m = begin; m < end; m++) {
        float *ym = j->y + m * s->out_size;
        for (int64_t kp = 0; kp < s->k_size; kp++) {
            const float *cr = j->col + (m * s->k_size + kp) * s->in_size;
            int64_t koff[CONV_MAX_SP], r = kp;
            for (int d = last; d >= 0; d--) {
                koff[d] = r % s->k[d] * s->dil[d] - s->pad0[d];
                r /= s->k[d];
            }
            int64_t rows = s->in_size / (s->in[last] ? s->in[last] : 1);
            for (int64_t row = 0; row < rows; row++) {
                int64_t q = row, base = 0, mul = 1;
                bool ok = true;
                for (int d = last - 1; d >= 0; d--) {
                    int64_t o = q % s->in[d] * s->stride[d] + koff[d];
                    q /= s->in[d];
                    ok = ok && o >= 0 && o < s->out[d];
                    base += o * mul;
                    mul *= s->out[d];
                }
                if (!ok) continue;
                float *yr = ym + base * s->out[last];
                const float *cl = cr + row * s->in[last];
                for (int64_t i = 0; i < s->in[last]; i++) {
                    int64_t o = i * s->stride[last] + koff[last];
                    if (o >= 0 && o < s->out[last]) yr[o] += cl[i];
                }
            }
        }
    }
}

static tern_status *convt_f32(op_ctx *c, const convt_shape *s, const float *x, const float *w,
                              const float *b, float *y)
{
    int64_t P = s->out_size, R = s->mg * s->k_size, Pin = s->in_size;
    for (int64_t i = 0; i < s->n * s->m; i++)
        for (int64_t p = 0; p < P; p++) y[i * P + p] = b ? b[i % s->m] : 0.0f;
    if (s->n == 0 || R == 0 || Pin == 0 || s->cg == 0 || P == 0) return NULL;
    size_t pa_n = sgemm_pa_floats(R, s->cg);
    float *pa, *pb, *col;
    TERN_TRY(op_scratch(
        c,
        (pa_n * (size_t)s->group + sgemm_pb_floats(Pin, s->cg) + (size_t)(R * Pin)) * sizeof(float),
        (void **)&pa));
    pb = pa + pa_n * (size_t)s->group;
    col = pb + sgemm_pb_floats(Pin, s->cg);
    for (int64_t gi = 0; gi < s->group; gi++) /* A = W_g^T: (r, ci) at W[(g*cg + ci)*R + r] */
        sgemm_pack_a(c->pool, R, s->cg, w + gi * s->cg * R, 1, R, pa + pa_n * (size_t)gi);
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t gi = 0; gi < s->group; gi++) {
            sgemm_view v = {x + (n * s->c + gi * s->cg) * Pin, Pin, 1};
            sgemm_out o = {col, Pin, false, NULL};
            sgemm_packed(c->pool, R, Pin, s->cg, 1.0f, pa + pa_n * (size_t)gi, sgemm_pack_view, &v,
                         0.0f, &o, pb);
            col2im_job j = {s, col, y + (n * s->m + gi * s->mg) * P};
            tpool_for(c->pool, s->mg, 1, col2im_range, &j);
        }
    return NULL;
}

/* Reference ConvTranspose in double for the other float types. */
static tern_status *convt_ref(op_ctx *c, const convt_shape *s, const tern_tensor *x,
                              const tern_tensor *w, const tern_tensor *b, tern_tensor *y)
{
    double *acc;
    int64_t P = s->out_size, Pin = s->in_size, nsp = s->nsp;
    TERN_TRY(op_scratch(c, (size_t)(y->numel ? y->numel : 1) * sizeof *acc, (void **)&acc));
    for (int64_t i = 0; i < y->numel; i++) acc[i] = b ? op_get_f64(b, i / P % s->m) : 0.0;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t ci = 0; ci < s->c; ci++) {
            int64_t gi = ci / s->cg;
            for (int64_t p = 0; p < Pin; p++) {
                double xv = op_get_f64(x, (n * s->c + ci) * Pin + p);
                for (int64_t mm = 0; mm < s->mg; mm++)
                    for (int64_t kp = 0; kp < s->k_size; kp++) {
                        int64_t q = p, r = kp, oo = 0, mul = 1;
                        bool ok = true;
                        for (int64_t d = nsp - 1; d >= 0; d--) {
                            int64_t o =
                                q % s->in[d] * s->stride[d] + r % s->k[d] * s->dil[d] - s->pad0[d];
                            q /= s->in[d];
                            r /= s->k[d];
                            ok = ok && o >= 0 && o < s->out[d];
                            oo += o * mul;
                            mul *= s->out[d];
                        }
                        if (!ok) continue;
                        double wv = op_get_f64(w, (ci * s->mg + mm) * s->k_size + kp);
                        acc[(n * s->m + gi * s->mg + mm) * P + oo] += xv * wv;
                    }
            }
        }
    for (int64_t i = 0; i < y->numel; i++) dtype_set_f64(y->dtype, y->data, i, acc[i]);
    return NULL;
}

static tern_status *op_conv_transpose(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *x = c->in[0], *w = c->in[1], *b;
    convt_shape s;
    TERN_TRY(convt_shape_make(c, x, w, &s));
    if (w->dtype != x->dtype) return op_error(c, "X and W types differ");
    if (!dtype_is_float(x->dtype))
        return op_error(c, "unsupported type %s", tern_dtype_name(x->dtype));
    TERN_TRY(conv_bias(c, 2, s.m, x->dtype, &b));
    int64_t dims[TERN_MAX_RANK] = {s.n, s.m};
    for (int d = 0; d < s.nsp; d++) dims[d + 2] = s.out[d];
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, s.nsp + 2, dims, &y));
    if (x->dtype == TERN_FLOAT)
        return convt_f32(c, &s, x->data, w->data, b ? b->data : NULL, y->data);
    return convt_ref(c, &s, x, w, b, y);
}

const op_def ops_conv[] = {
    {"", "Conv", 1, 17, op_conv, conv_prepare, OP_TAKES_C16},
    {"com.tern", "FusedConv", 1, 1, op_fused_conv, conv_prepare, OP_TAKES_C16},
    {"", "ConvTranspose", 1, 17, op_conv_transpose},
    {"", "ConvInteger", 10, 17, op_conv_integer},
    {"", "QLinearConv", 10, 17, op_qlinear_conv},
    {0},
};

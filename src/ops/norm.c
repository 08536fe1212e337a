/*
 * Operator family: normalisation. BatchNormalization, InstanceNormalization,
 * LayerNormalization, LpNormalization, MeanVarianceNormalization, LRN and
 * Dropout here; Softmax, LogSoftmax, Hardmax and the softmax losses in
 * norm_softmax.c.
 *
 * BatchNormalization, InstanceNormalization and LayerNormalization sit on the
 * hot path of CNNs and transformers: their float32 kernels read the tensor in
 * place, fold the statistics into one multiply-add per element and split
 * planes / rows over the thread pool. Every other dtype, and the rarer ops,
 * run a reference kernel in double (reduce_util.h converts in and out).
 * float32 LayerNormalization goes to oneDNN first (dnnl_norm.c, which says
 * when), its loop here being the rest and the reference.
 * Those three may write their output over X (OP_INPLACE0, ops/op.h): each
 * plane or row is read for its statistics before any of it is written, and
 * then each element is read just before it is overwritten.
 */
#include <math.h>
#include <string.h>

#include "core/cpu.h"
#include "core/rng.h"
#include "ops/dnnl.h"
#include "ops/norm_softmax.h"
#include "ops/op.h"
#include "ops/reduce_util.h"

/* ---- BatchNormalization ------------------------------------------------ */

/* y = x * a[c] + b[c] over `planes` planes of `size` elements, channel
 * (plane % ch). */
typedef struct affine_job {
    const float *x;
    float *y;
    const float *a, *b;
    int64_t size, ch;
} affine_job;

static void affine_planes(void *arg, int64_t b, int64_t e)
{
    const affine_job *j = arg;
    for (int64_t p = b; p < e; p++) {
        const float *x = j->x + p * j->size;
        float *y = j->y + p * j->size;
        float a = j->a[p % j->ch], bb = j->b[p % j->ch];
        for (int64_t i = 0; i < j->size; i++) y[i] = x[i] * a + bb;
    }
}

static tern_status *check_param(const op_ctx *c, int i, int64_t n, const char *what)
{
    TERN_TRY(ru_need_float(c, i));
    if (c->in[i]->numel != n)
        return op_error(c, "%s must have %lld elements, got %lld", what, (long long)n,
                        (long long)c->in[i]->numel);
    return NULL;
}

static tern_status *op_batchnorm(op_ctx *c)
{
    TERN_TRY(ru_need_float(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->rank < 2) return op_error(c, "input must have shape [N, C, ...], got rank %d", x->rank);
    if (c->opset < 9 && op_attr_int(c, "spatial", 1) == 0)
        return op_error(c, "spatial = 0 is not supported");
    int64_t n = x->dims[0], ch = x->dims[1], size = ru_prod(x->dims, 2, x->rank);
    static const char *const names[] = {"scale", "B", "mean", "var"};
    for (int i = 1; i <= 4; i++) TERN_TRY(check_param(c, i, ch, names[i - 1]));
    double eps = op_attr_float(c, "epsilon", 1e-5f);
    bool training = c->opset >= 14 && op_attr_int(c, "training_mode", 0) != 0;
    if (!training)
        for (int i = 1; i < c->n_out; i++)
            if (op_out_used(c, i)) return op_error(c, "output %d exists only in training mode", i);

    double *mean, *var, *a;
    float *af, *bf;
    TERN_TRY(op_scratch(c, (size_t)(ch ? ch : 1) * sizeof(double) * 3, (void **)&mean));
    TERN_TRY(op_scratch(c, (size_t)(ch ? ch : 1) * sizeof(float) * 2, (void **)&af));
    var = mean + ch;
    a = var + ch;
    bf = af + ch;
    const double *xd = NULL;
    if (x->dtype != TERN_FLOAT || training) TERN_TRY(ru_load_f64(c, x, &xd));
    for (int64_t k = 0; k < ch; k++) {
        if (training) { /* batch statistics over N and the spatial dims */
            double s = 0, q = 0, cnt = (double)(n * size);
            for (int64_t i = 0; i < n; i++)
                for (int64_t e = 0; e < size; e++) s += xd[(i * ch + k) * size + e];
            mean[k] = cnt > 0 ? s / cnt : 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t e = 0; e < size; e++) {
                    double d = xd[(i * ch + k) * size + e] - mean[k];
                    q += d * d;
                }
            var[k] = cnt > 0 ? q / cnt : 0;
        } else {
            mean[k] = op_get_f64(c->in[3], k);
            var[k] = op_get_f64(c->in[4], k);
        }
        a[k] = op_get_f64(c->in[1], k) / sqrt(var[k] + eps);
        af[k] = (float)a[k];
        bf[k] = (float)(op_get_f64(c->in[2], k) - mean[k] * a[k]);
    }

    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, x->dims, &y));
    if (x->dtype == TERN_FLOAT) {
        affine_job j = {x->data, y->data, af, bf, size, ch ? ch : 1};
        tpool_for(c->pool, n * ch, ru_grain(size), affine_planes, &j);
    } else {
        double *yd;
        TERN_TRY(ru_work_f64(c, y, &yd));
        for (int64_t p = 0; p < n * ch; p++) {
            int64_t k = p % ch;
            double bk = op_get_f64(c->in[2], k) - mean[k] * a[k];
            for (int64_t e = 0; e < size; e++) yd[p * size + e] = xd[p * size + e] * a[k] + bk;
        }
        ru_store_f64(y, yd);
    }

    if (training) { /* running statistics: input * momentum + batch * (1 - momentum) */
        double mom = op_attr_float(c, "momentum", 0.9f);
        for (int i = 1; i <= 2 && i < c->n_out; i++) {
            const tern_tensor *in = c->in[i + 2];
            tern_tensor *o;
            TERN_TRY(op_out(c, i, in->dtype, in->rank, in->dims, &o));
            const double *batch = i == 1 ? mean : var;
            for (int64_t k = 0; k < ch; k++)
                dtype_set_f64(o->dtype, o->data, k, op_get_f64(in, k) * mom + batch[k] * (1 - mom));
        }
    }
    return NULL;
}

/* ---- InstanceNormalization --------------------------------------------- */

/* Normalises float32 planes [b, e) of `size` elements with their own mean
 * and variance, then scale / B of channel (plane % ch). */
typedef struct in_job {
    const float *x;
    float *y;
    const tern_tensor *scale, *bias;
    int64_t size, ch;
    double eps;
} in_job;

static void in_planes_f32(void *arg, int64_t b, int64_t e)
{
    const in_job *j = arg;
    for (int64_t p = b; p < e; p++) {
        const float *x = j->x + p * j->size;
        float *y = j->y + p * j->size;
        float m = (float)(ru_sum_f32(x, j->size) / (double)j->size);
        double var = ru_sumsq_dev_f32(x, j->size, m) / (double)j->size;
        float a = (float)(op_get_f64(j->scale, p % j->ch) / sqrt(var + j->eps));
        float bb = (float)op_get_f64(j->bias, p % j->ch);
        for (int64_t i = 0; i < j->size; i++) y[i] = (x[i] - m) * a + bb;
    }
}

static tern_status *op_instancenorm(op_ctx *c)
{
    TERN_TRY(ru_need_float(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->rank < 2) return op_error(c, "input must have shape [N, C, ...], got rank %d", x->rank);
    int64_t ch = x->dims[1], planes = x->dims[0] * ch, size = ru_prod(x->dims, 2, x->rank);
    TERN_TRY(check_param(c, 1, ch, "scale"));
    TERN_TRY(check_param(c, 2, ch, "B"));
    double eps = op_attr_float(c, "epsilon", 1e-5f);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, x->dims, &y));
    if (x->numel == 0) return NULL;
    if (x->dtype == TERN_FLOAT) {
        in_job j = {x->data, y->data, c->in[1], c->in[2], size, ch, eps};
        tpool_for(c->pool, planes, ru_grain(size * 3), in_planes_f32, &j);
        return NULL;
    }
    const double *xd;
    double *yd;
    TERN_TRY(ru_load_f64(c, x, &xd));
    TERN_TRY(ru_work_f64(c, y, &yd));
    for (int64_t p = 0; p < planes; p++) {
        const double *xp = xd + p * size;
        double *yp = yd + p * size, s = 0, q = 0;
        for (int64_t e = 0; e < size; e++) s += xp[e];
        double m = s / (double)size;
        for (int64_t e = 0; e < size; e++) q += (xp[e] - m) * (xp[e] - m);
        double a = op_get_f64(c->in[1], p % ch) / sqrt(q / (double)size + eps);
        double b = op_get_f64(c->in[2], p % ch);
        for (int64_t e = 0; e < size; e++) yp[e] = (xp[e] - m) * a + b;
    }
    ru_store_f64(y, yd);
    return NULL;
}

/* ---- LayerNormalization ------------------------------------------------ */

/* Normalises rows of n elements over [0, rows); scale/bias have n elements or
 * one (broadcast, stride 0); bias may be NULL. */
typedef struct ln_job {
    const float *x, *scale, *bias;
    float *y, *mean, *inv; /* mean / inv may be NULL */
    int64_t n, sstride, bstride;
    float eps;
} ln_job;

static TERN_INLINE void ln_rows_f32_impl(void *arg, int64_t b, int64_t e)
{
    const ln_job *j = arg;
    int64_t n = j->n;
    for (int64_t r = b; r < e; r++) {
        const float *x = j->x + r * n;
        float *y = j->y + r * n;
        float m = (float)(ru_sum_f32(x, n) / (double)n);
        float inv = (float)(1.0 / sqrt(ru_sumsq_dev_f32(x, n, m) / (double)n + j->eps));
        if (j->mean) j->mean[r] = m;
        if (j->inv) j->inv[r] = inv;
        if (j->sstride && j->bias && j->bstride) {
            for (int64_t i = 0; i < n; i++) y[i] = (x[i] - m) * inv * j->scale[i] + j->bias[i];
        } else {
            for (int64_t i = 0; i < n; i++)
                y[i] = (x[i] - m) * inv * j->scale[i * j->sstride] +
                       (j->bias ? j->bias[i * j->bstride] : 0.0f);
        }
    }
}
TERN_MULTI_VOID(ln_rows_f32, (void *arg, int64_t b, int64_t e), (arg, b, e))

static tern_status *op_layernorm(op_ctx *c)
{
    TERN_TRY(ru_need_float(c, 0));
    TERN_TRY(ru_need_float(c, 1));
    const tern_tensor *x = c->in[0], *scale = c->in[1];
    const tern_tensor *bias = c->n_in > 2 ? c->in[2] : NULL;
    if (bias) TERN_TRY(ru_need_float(c, 2));
    int axis;
    TERN_TRY(op_axis(c, op_attr_int(c, "axis", -1), x->rank, &axis));
    int64_t rows = ru_prod(x->dims, 0, axis), n = ru_prod(x->dims, axis, x->rank);
    if (scale->numel != n && scale->numel != 1)
        return op_error(c, "Scale has %lld elements, the normalised shape %lld",
                        (long long)scale->numel, (long long)n);
    if (bias && bias->numel != n && bias->numel != 1)
        return op_error(c, "B has %lld elements, the normalised shape %lld", (long long)bias->numel,
                        (long long)n);
    float eps = op_attr_float(c, "epsilon", 1e-5f);

    bool done;
    TERN_TRY(dnn_layernorm_run(c, (dnn_cache *)c->state, rows, n, eps, &done));
    if (done) return NULL;

    int64_t sdims[TERN_MAX_RANK];
    for (int i = 0; i < x->rank; i++) sdims[i] = i < axis ? x->dims[i] : 1;
    tern_tensor *y, *mean = NULL, *inv = NULL;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, x->dims, &y));
    if (op_out_used(c, 1)) TERN_TRY(op_out(c, 1, TERN_FLOAT, x->rank, sdims, &mean));
    if (op_out_used(c, 2)) TERN_TRY(op_out(c, 2, TERN_FLOAT, x->rank, sdims, &inv));
    if (x->numel == 0) return NULL;

    if (x->dtype == TERN_FLOAT && scale->dtype == TERN_FLOAT &&
        (!bias || bias->dtype == TERN_FLOAT)) {
        ln_job j = {x->data,
                    scale->data,
                    bias ? bias->data : NULL,
                    y->data,
                    mean ? mean->data : NULL,
                    inv ? inv->data : NULL,
                    n,
                    scale->numel == n,
                    bias && bias->numel == n,
                    eps};
        tpool_for(c->pool, rows, ru_grain(n * 3), ln_rows_f32, &j);
        return NULL;
    }
    const double *xd, *sd, *bd = NULL;
    double *yd;
    TERN_TRY(ru_load_f64(c, x, &xd));
    TERN_TRY(ru_load_f64(c, scale, &sd));
    if (bias) TERN_TRY(ru_load_f64(c, bias, &bd));
    TERN_TRY(ru_work_f64(c, y, &yd));
    int64_t ss = scale->numel == n, bs = bias && bias->numel == n;
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = xd + r * n;
        double s = 0, q = 0;
        for (int64_t i = 0; i < n; i++) s += xr[i];
        double m = s / (double)n;
        for (int64_t i = 0; i < n; i++) q += (xr[i] - m) * (xr[i] - m);
        double iv = 1.0 / sqrt(q / (double)n + eps);
        if (mean) ((float *)mean->data)[r] = (float)m;
        if (inv) ((float *)inv->data)[r] = (float)iv;
        for (int64_t i = 0; i < n; i++)
            yd[r * n + i] = (xr[i] - m) * iv * sd[i * ss] + (bd ? bd[i * bs] : 0);
    }
    ru_store_f64(y, yd);
    return NULL;
}

/* ---- LpNormalization --------------------------------------------------- */

static tern_status *op_lpnorm(op_ctx *c)
{
    TERN_TRY(ru_need_float(c, 0));
    const tern_tensor *x = c->in[0];
    int axis;
    TERN_TRY(op_axis(c, op_attr_int(c, "axis", -1), x->rank, &axis));
    int64_t p = op_attr_int(c, "p", 2);
    if (p != 1 && p != 2) return op_error(c, "p must be 1 or 2, got %lld", (long long)p);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, x->dims, &y));
    if (x->numel == 0) return NULL;
    int64_t outer = ru_prod(x->dims, 0, axis), n = x->rank ? x->dims[axis] : 1;
    int64_t inner = ru_prod(x->dims, axis + 1, x->rank);
    const double *xd;
    double *yd;
    TERN_TRY(ru_load_f64(c, x, &xd));
    TERN_TRY(ru_work_f64(c, y, &yd));
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            int64_t base = o * n * inner + j;
            double s = 0;
            for (int64_t k = 0; k < n; k++) {
                double v = xd[base + k * inner];
                s += p == 1 ? fabs(v) : v * v;
            }
            double norm = p == 1 ? s : sqrt(s);
            for (int64_t k = 0; k < n; k++)
                yd[base + k * inner] = norm != 0 ? xd[base + k * inner] / norm : 0;
        }
    ru_store_f64(y, yd);
    return NULL;
}

/* ---- MeanVarianceNormalization ------------------------------------------ */

/* y = (x - mean) / (sqrt(E[x^2] - mean^2) + 1e-9), statistics over `axes`. */
static tern_status *op_mvn(op_ctx *c)
{
    TERN_TRY(ru_need_float(c, 0));
    const tern_tensor *x = c->in[0];
    static const int64_t dflt[] = {0, 2, 3};
    const int64_t *axes;
    int na = op_attr_ints(c, "axes", &axes);
    if (na < 0) {
        axes = dflt;
        na = 3;
    }
    bool red[TERN_MAX_RANK] = {0};
    for (int i = 0; i < na; i++) {
        int a;
        TERN_TRY(op_axis(c, axes[i], x->rank, &a));
        red[a] = true;
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, x->dims, &y));
    if (x->numel == 0) return NULL;

    /* element -> statistics slot: strides over the kept dims only */
    int64_t sstride[TERN_MAX_RANK], nstat = 1, count = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        sstride[i] = red[i] ? 0 : nstat;
        if (red[i])
            count *= x->dims[i];
        else
            nstat *= x->dims[i];
    }
    const double *xd;
    double *yd, *s1, *s2;
    TERN_TRY(ru_load_f64(c, x, &xd));
    TERN_TRY(ru_work_f64(c, y, &yd));
    TERN_TRY(op_scratch(c, (size_t)nstat * 2 * sizeof(double), (void **)&s1));
    s2 = s1 + nstat;
    memset(s1, 0, (size_t)nstat * 2 * sizeof(double));
    for (int pass = 0; pass < 2; pass++) {
        int64_t idx[TERN_MAX_RANK] = {0}, slot = 0;
        for (int64_t e = 0; e < x->numel; e++) {
            double v = xd[e];
            if (pass == 0) {
                s1[slot] += v;
                s2[slot] += v * v;
            } else {
                double m = s1[slot] / (double)count, var = s2[slot] / (double)count - m * m;
                yd[e] = (v - m) / (sqrt(var > 0 ? var : 0) + 1e-9);
            }
            for (int k = x->rank - 1; k >= 0; k--) {
                slot += sstride[k];
                if (++idx[k] < x->dims[k]) break;
                slot -= idx[k] * sstride[k];
                idx[k] = 0;
            }
        }
    }
    ru_store_f64(y, yd);
    return NULL;
}

/* ---- LRN ---------------------------------------------------------------- */

/* y = x / (bias + alpha / size * sum of x^2 over the channel window)^beta,
 * the window reaching floor((size-1)/2) channels down and ceil up. */
static tern_status *op_lrn(op_ctx *c)
{
    TERN_TRY(ru_need_float(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->rank < 2) return op_error(c, "input must have shape [N, C, ...], got rank %d", x->rank);
    int64_t size = op_attr_int(c, "size", 0);
    if (size < 1) return op_error(c, "attribute size must be >= 1");
    double alpha = op_attr_float(c, "alpha", 1e-4f), beta = op_attr_float(c, "beta", 0.75f);
    double bias = op_attr_float(c, "bias", 1.0f);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, x->dims, &y));
    if (x->numel == 0) return NULL;
    int64_t n = x->dims[0], ch = x->dims[1], sp = ru_prod(x->dims, 2, x->rank);
    int64_t lo = (size - 1) / 2, hi = size / 2;
    const double *xd;
    double *yd;
    TERN_TRY(ru_load_f64(c, x, &xd));
    TERN_TRY(ru_work_f64(c, y, &yd));
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < ch; k++)
            for (int64_t e = 0; e < sp; e++) {
                double s = 0;
                int64_t from = k - lo > 0 ? k - lo : 0, to = k + hi < ch - 1 ? k + hi : ch - 1;
                for (int64_t q = from; q <= to; q++) {
                    double v = xd[(i * ch + q) * sp + e];
                    s += v * v;
                }
                int64_t at = (i * ch + k) * sp + e;
                yd[at] = xd[at] / pow(bias + alpha / (double)size * s, beta);
            }
    ru_store_f64(y, yd);
    return NULL;
}

/* ---- Dropout ------------------------------------------------------------ */

/* Inference is the identity (with an all-true mask). Training mode (opset 12+
 * `training_mode` input) draws the keep mask from MT19937 seeded with the
 * `seed` attribute (0 if absent), one uniform double in [0, 1) per element in
 * row-major order, made the way numpy's RandomState.uniform makes them, so a
 * seeded model gives the same mask as the ONNX reference. */
static tern_status *op_dropout(op_ctx *c)
{
    TERN_TRY(ru_need_float(c, 0));
    const tern_tensor *x = c->in[0];
    double ratio = op_attr_float(c, "ratio", 0.5f);
    bool training = false;
    if (c->opset >= 12) {
        if (c->n_in > 1 && c->in[1]) TERN_TRY(ru_scalar_f64(c, c->in[1], "ratio", &ratio));
        if (c->n_in > 2 && c->in[2]) {
            double t = 0;
            TERN_TRY(ru_scalar_f64(c, c->in[2], "training_mode", &t));
            training = t != 0;
        }
    }
    if (!(ratio >= 0 && ratio < 1)) return op_error(c, "ratio %g is not in [0, 1)", ratio);
    training = training && ratio > 0;
    /* the mask is bool from opset 10, of the data type before */
    tern_dtype mdt = c->opset >= 10 ? TERN_BOOL : x->dtype;
    tern_tensor *mask = NULL;
    if (op_out_used(c, 1)) TERN_TRY(op_out(c, 1, mdt, x->rank, x->dims, &mask));

    if (!training) {
        if (mask)
            for (int64_t i = 0; i < mask->numel; i++) dtype_set_f64(mdt, mask->data, i, 1.0);
        return op_out_alias(c, 0, x, x->rank, x->dims);
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, x->dims, &y));
    rng *mt;
    TERN_TRY(op_scratch(c, sizeof *mt, (void **)&mt));
    rng_seed(mt, (uint32_t)op_attr_int(c, "seed", 0));
    float rf = (float)ratio, scale = 1.0f / (1.0f - rf);
    for (int64_t i = 0; i < x->numel; i++) {
        bool keep = rng_double(mt) >= ratio;
        if (mask) ((uint8_t *)mask->data)[i] = keep;
        if (x->dtype == TERN_FLOAT)
            ((float *)y->data)[i] = keep ? ((const float *)x->data)[i] * scale : 0.0f;
        else
            dtype_set_f64(y->dtype, y->data, i, keep ? op_get_f64(x, i) * scale : 0.0);
    }
    return NULL;
}

const op_def ops_norm[] = {
    {"", "Softmax", 1, 17, norm_softmax, dnn_rows_prepare, OP_INPLACE0},
    {"", "LogSoftmax", 1, 17, norm_log_softmax},
    {"", "Hardmax", 1, 17, norm_hardmax, NULL, OP_INPLACE0},
    {"", "NegativeLogLikelihoodLoss", 12, 17, norm_nll_loss},
    {"", "SoftmaxCrossEntropyLoss", 12, 17, norm_sce_loss},
    {"", "BatchNormalization", 1, 17, op_batchnorm, NULL, OP_INPLACE0},
    {"", "InstanceNormalization", 1, 17, op_instancenorm, NULL, OP_INPLACE0},
    {"", "LayerNormalization", 17, 17, op_layernorm, dnn_rows_prepare, OP_INPLACE0},
    /* the same op for models of older opsets, put in by graph/passes_fuse.c */
    {"com.tern", "LayerNormalization", 1, 1, op_layernorm, dnn_rows_prepare, OP_INPLACE0},
    {"", "LpNormalization", 1, 17, op_lpnorm},
    {"", "MeanVarianceNormalization", 9, 17, op_mvn},
    {"", "LRN", 1, 17, op_lrn},
    {"", "Dropout", 1, 17, op_dropout},
    {0},
};

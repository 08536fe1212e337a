/*
 * Operator family: random (RandomUniform, RandomNormal and their -Like forms,
 * Multinomial, Bernoulli). MaxRoiPool is in random_roipool.c.
 *
 * The generator is MT19937, the one numpy's legacy RandomState uses, so that a
 * node with a `seed` attribute s draws exactly what `np.random.seed(s)`
 * followed by the matching numpy call draws:
 *   RandomUniform    np.random.uniform(low, high, shape)
 *   RandomNormal     np.random.normal(mean, scale, shape)  (polar Box-Muller)
 *   Bernoulli        np.random.binomial(1, p)               (inversion)
 * with one double per element in row-major order, made from two 32-bit words
 * with numpy's 53-bit recipe. Multinomial has no numpy twin; it inverts the
 * class CDF with one such double per sample.
 *
 * Kernels keep no state, so the generator is built afresh on every call:
 * from the `seed` attribute (a float in ONNX; its integer part wrapped modulo
 * 2^32, as numpy needs 0 <= s < 2^32) when present, otherwise from the
 * FNV-1a hash of the node's name and op type XORed with a CLOCK_MONOTONIC
 * reading in nanoseconds taken once per call (fed to init_by_array as two
 * words). An unseeded node therefore draws a fresh stream on every run, and
 * two unseeded nodes draw different streams; a seeded node draws the same
 * stream on every run, as ONNX Runtime does.
 */
#include <math.h>
#include <time.h>

#include "core/rng.h"
#include "ops/op.h"
#include "ops/random_roipool.h"

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* Seeds r for this call (see the top of the file). */
static tern_status *rng_init(const op_ctx *c, rng *r)
{
    const op_attr *a = op_attr_get(c, "seed");
    if (a && (a->type == ATTR_FLOAT || a->type == ATTR_INT)) {
        double s = a->type == ATTR_FLOAT ? (double)a->f : (double)a->i;
        if (!isfinite(s)) return op_error(c, "seed %g is not finite", s);
        s = fmod(trunc(s), 4294967296.0);
        if (s < 0) s += 4294967296.0;
        rng_seed(r, (uint32_t)s);
        return NULL;
    }
    if (a) return op_error(c, "attribute 'seed' must be a float");
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t h = fnv1a(fnv1a(14695981039346656037u, c->node->op_type), c->node->name);
    h ^= (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    uint32_t key[2] = {(uint32_t)h, (uint32_t)(h >> 32)};
    rng_seed_array(r, key, 2);
    return NULL;
}

/* ---- RandomUniform, RandomNormal (and -Like) -------------------------- */

static bool is_float_type(int64_t dt)
{
    return dt >= 1 && dt <= TERN_BFLOAT16 && dtype_is_float((tern_dtype)dt);
}

/* A 16-bit float one step below h (towards -inf); h is finite. */
static uint16_t half_step_down(uint16_t h)
{
    if (h == 0 || h == 0x8000) return 0x8001;
    return (h & 0x8000) ? (uint16_t)(h + 1) : (uint16_t)(h - 1);
}

/* Fills t with low + (high - low) * u (uniform) or mean + scale * g (normal).
 * Uniform values that round up to `high` in the output type are moved one
 * step down, so every value lies in [low, high) as the spec says. */
static void fill_random(rng *r, tern_tensor *t, bool normal, double a, double b)
{
    int64_t n = t->numel;
    double range = b - a;
    if (t->dtype == TERN_DOUBLE) {
        double *y = t->data;
        for (int64_t i = 0; i < n; i++) {
            double v = normal ? a + b * rng_gauss(r) : a + range * rng_double(r);
            if (!normal && v >= b && b > a) v = nextafter(b, a);
            y[i] = v;
        }
    } else if (t->dtype == TERN_FLOAT) {
        float *y = t->data, hi = (float)b;
        for (int64_t i = 0; i < n; i++) {
            float v = (float)(normal ? a + b * rng_gauss(r) : a + range * rng_double(r));
            if (!normal && v >= hi && b > a) v = nextafterf(hi, (float)a);
            y[i] = v;
        }
    } else { /* float16, bfloat16 */
        bool f16 = t->dtype == TERN_FLOAT16;
        uint16_t *y = t->data;
        for (int64_t i = 0; i < n; i++) {
            float v = (float)(normal ? a + b * rng_gauss(r) : a + range * rng_double(r));
            uint16_t h = f16 ? f32_to_f16(v) : f32_to_bf16(v);
            float back = f16 ? f16_to_f32(h) : bf16_to_f32(h);
            if (!normal && back >= b && b > a && isfinite(back)) h = half_step_down(h);
            y[i] = h;
        }
    }
}

/* Shared body: `like` takes the shape (and default dtype) from input 0. */
static tern_status *random_common(op_ctx *c, bool normal, bool like)
{
    int rank;
    const int64_t *dims;
    int64_t dt;
    if (like) {
        TERN_TRY(op_need_input(c, 0));
        const tern_tensor *x = c->in[0];
        if (x->kind != TENSOR_DENSE) return op_error(c, "input must be a tensor");
        rank = x->rank;
        dims = x->dims;
        dt = op_attr_int(c, "dtype", x->dtype);
    } else {
        int n = op_attr_ints(c, "shape", &dims);
        if (n < 0) return op_error(c, "attribute 'shape' is required");
        if (n > TERN_MAX_RANK) return op_error(c, "shape has rank %d, more than supported", n);
        for (int k = 0; k < n; k++)
            if (dims[k] < 0)
                return op_error(c, "shape[%d] = %lld is negative", k, (long long)dims[k]);
        if (shape_numel(n, dims) < 0) return op_error(c, "shape is too large");
        rank = n;
        dt = op_attr_int(c, "dtype", TERN_FLOAT);
    }
    if (!is_float_type(dt))
        return op_error(c, "dtype %lld is not a floating-point type", (long long)dt);
    double a, b;
    if (normal) {
        a = op_attr_float(c, "mean", 0.0f);
        b = op_attr_float(c, "scale", 1.0f);
        if (!isfinite(a) || !isfinite(b) || b < 0)
            return op_error(c, "mean %g and scale %g must be finite, scale >= 0", a, b);
    } else {
        a = op_attr_float(c, "low", 0.0f);
        b = op_attr_float(c, "high", 1.0f);
        if (!isfinite(a) || !isfinite(b))
            return op_error(c, "low %g and high %g must be finite", a, b);
    }
    rng r;
    TERN_TRY(rng_init(c, &r));
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, (tern_dtype)dt, rank, dims, &y));
    fill_random(&r, y, normal, a, b);
    return NULL;
}

static tern_status *op_random_uniform(op_ctx *c)
{
    return random_common(c, false, false);
}
static tern_status *op_random_uniform_like(op_ctx *c)
{
    return random_common(c, false, true);
}
static tern_status *op_random_normal(op_ctx *c)
{
    return random_common(c, true, false);
}
static tern_status *op_random_normal_like(op_ctx *c)
{
    return random_common(c, true, true);
}

/* ---- Multinomial ------------------------------------------------------- */

/* Input [batch, classes] of unnormalised log-probabilities; output [batch,
 * sample_size] of class indices. Per row the kernel builds the cumulative
 * sums of exp(x - max) and finds each draw u * total by binary search. */
static tern_status *op_multinomial(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE || !is_float_type(x->dtype) || x->rank != 2)
        return op_error(c, "input must be a 2-D floating-point tensor [batch_size, class_size]");
    int64_t dt = op_attr_int(c, "dtype", TERN_INT32);
    if (dt != TERN_INT32 && dt != TERN_INT64)
        return op_error(c, "dtype %lld is not int32 or int64", (long long)dt);
    int64_t samples = op_attr_int(c, "sample_size", 1);
    if (samples < 0) return op_error(c, "sample_size %lld is negative", (long long)samples);
    int64_t batch = x->dims[0], classes = x->dims[1];
    int64_t dims[2] = {batch, samples};
    if (shape_numel(2, dims) < 0) return op_error(c, "sample_size is too large");
    if (classes == 0 && batch > 0 && samples > 0) return op_error(c, "class_size is 0");

    rng r;
    TERN_TRY(rng_init(c, &r));
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, (tern_dtype)dt, 2, dims, &y));
    if (batch == 0 || samples == 0) return NULL;
    double *cum;
    TERN_TRY(op_scratch(c, (size_t)classes * sizeof *cum, (void **)&cum));
    for (int64_t b = 0; b < batch; b++) {
        double mx = -INFINITY;
        for (int64_t k = 0; k < classes; k++) {
            double v = op_get_f64(x, b * classes + k);
            if (isnan(v) || v == INFINITY)
                return op_error(c, "row %lld holds a log-probability of %g", (long long)b, v);
            if (v > mx) mx = v;
        }
        if (mx == -INFINITY)
            return op_error(c, "row %lld has no class of non-zero probability", (long long)b);
        double total = 0;
        for (int64_t k = 0; k < classes; k++)
            cum[k] = total += exp(op_get_f64(x, b * classes + k) - mx);
        for (int64_t s = 0; s < samples; s++) {
            double u = rng_double(&r) * total;
            int64_t lo = 0, hi = classes - 1; /* first k with cum[k] > u */
            while (lo < hi) {
                int64_t mid = lo + (hi - lo) / 2;
                if (cum[mid] > u)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            while (lo > 0 && cum[lo] == cum[lo - 1]) lo--; /* u rounded to total: skip empty tail */
            if (dt == TERN_INT32)
                ((int32_t *)y->data)[b * samples + s] = (int32_t)lo;
            else
                ((int64_t *)y->data)[b * samples + s] = lo;
        }
    }
    return NULL;
}

/* ---- Bernoulli --------------------------------------------------------- */

/* y = 1 with probability p. Draws as numpy's legacy binomial(1, p) does (by
 * inversion): with u uniform, y = u > 1 - p for p <= 0.5, else y = u <= p. */
static tern_status *op_bernoulli(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE || !is_float_type(x->dtype))
        return op_error(c, "input must be a floating-point tensor of probabilities");
    int64_t dt = op_attr_int(c, "dtype", x->dtype);
    if (!is_float_type(dt) && dt != TERN_BOOL &&
        !(dt >= 1 && dt <= TERN_BFLOAT16 && dtype_is_int((tern_dtype)dt)))
        return op_error(c, "dtype %lld is not a numeric or bool type", (long long)dt);
    rng r;
    TERN_TRY(rng_init(c, &r));
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, (tern_dtype)dt, x->rank, x->dims, &y));
    for (int64_t i = 0; i < x->numel; i++) {
        double p = x->dtype == TERN_FLOAT ? ((const float *)x->data)[i] : op_get_f64(x, i);
        if (!(p >= 0 && p <= 1))
            return op_error(c, "probability %g at %lld is not in [0, 1]", p, (long long)i);
        double u = rng_double(&r);
        bool one = p <= 0.5 ? u > 1.0 - p : u <= p;
        if (dt == TERN_FLOAT)
            ((float *)y->data)[i] = one;
        else if (dt == TERN_BOOL)
            ((uint8_t *)y->data)[i] = one;
        else
            dtype_set_f64((tern_dtype)dt, y->data, i, one);
    }
    return NULL;
}

const op_def ops_random[] = {
    {"", "RandomUniform", 1, 17, op_random_uniform},
    {"", "RandomUniformLike", 1, 17, op_random_uniform_like},
    {"", "RandomNormal", 1, 17, op_random_normal},
    {"", "RandomNormalLike", 1, 17, op_random_normal_like},
    {"", "Multinomial", 7, 17, op_multinomial},
    {"", "Bernoulli", 15, 17, op_bernoulli},
    {"", "MaxRoiPool", 1, 17, random_max_roi_pool},
    {0},
};

/*
 * Operator family: signal processing (opset 17): DFT, STFT, the Hann /
 * Hamming / Blackman windows and MelWeightMatrix.
 *
 * Transforms compute in double. A length that is a power of two runs an
 * iterative radix-2 FFT; any other length a direct O(n^2) DFT over a twiddle
 * table (exact, and fast enough for the short odd lengths models use). The
 * lines of a tensor are independent, so they are split across the thread
 * pool; each worker gets its own line buffer, allocated up front because
 * scratch cannot be requested from inside a worker.
 *
 * Complex tensors are real tensors with a trailing dimension of 2 (re, im);
 * real inputs have a trailing 1. "onesided" keeps the n/2 + 1 bins that
 * determine the rest of a real signal's spectrum.
 *
 * MelWeightMatrix follows the ONNX reference (melweightmatrix.py), which is
 * what ONNX Runtime implements: num_mel_bins + 2 points evenly spaced in mel,
 * snapped down to DFT bins, with triangular filters between them.
 */
#include <math.h>
#include <string.h>

#include "ops/op.h"

#define SIG_PI 3.14159265358979323846

/* Element access with a direct float32 path. */
static inline double sig_get(const tern_tensor *t, int64_t i)
{
    return t->dtype == TERN_FLOAT ? ((const float *)t->data)[i] : op_get_f64(t, i);
}
static inline void sig_set(tern_tensor *t, int64_t i, double v)
{
    if (t->dtype == TERN_FLOAT)
        ((float *)t->data)[i] = (float)v;
    else
        dtype_set_f64(t->dtype, t->data, i, v);
}

/* ---- 1-D transform ------------------------------------------------------ */

typedef struct fft_plan {
    int64_t n;
    bool pow2;
    double *cs, *sn; /* cos / sin(2 pi k / n), k < n */
} fft_plan;

static tern_status *fft_plan_make(op_ctx *c, int64_t n, fft_plan *p)
{
    p->n = n;
    p->pow2 = n > 0 && (n & (n - 1)) == 0;
    TERN_TRY(op_scratch(c, (size_t)(n ? n : 1) * 2 * sizeof(double), (void **)&p->cs));
    p->sn = p->cs + n;
    for (int64_t k = 0; k < n; k++) {
        double a = 2.0 * SIG_PI * (double)k / (double)n;
        p->cs[k] = cos(a);
        p->sn[k] = sin(a);
    }
    return NULL;
}

/* Transforms re/im (length n) in place; work holds 2n doubles. The forward
 * transform uses e^{-2 pi i jk/n}; the inverse e^{+...} and divides by n. */
static void fft_run(const fft_plan *p, double *re, double *im, bool inverse, double *work)
{
    const int64_t n = p->n;
    const double sgn = inverse ? 1.0 : -1.0;
    if (n <= 1) return;
    if (p->pow2) {
        for (int64_t i = 1, j = 0; i < n; i++) { /* bit reversal */
            int64_t bit = n >> 1;
            for (; j & bit; bit >>= 1) j ^= bit;
            j ^= bit;
            if (i < j) {
                double t = re[i];
                re[i] = re[j], re[j] = t;
                t = im[i], im[i] = im[j], im[j] = t;
            }
        }
        for (int64_t len = 2; len <= n; len <<= 1) {
            const int64_t half = len >> 1, step = n / len;
            for (int64_t s = 0; s < n; s += len)
                for (int64_t k = 0; k < half; k++) {
                    double wr = p->cs[k * step], wi = sgn * p->sn[k * step];
                    double *ar = re + s + k, *ai = im + s + k;
                    double br = ar[half] * wr - ai[half] * wi, bi = ar[half] * wi + ai[half] * wr;
                    ar[half] = *ar - br, ai[half] = *ai - bi;
                    *ar += br, *ai += bi;
                }
        }
    } else {
        double *or_ = work, *oi = work + n;
        for (int64_t k = 0; k < n; k++) {
            double sr = 0, si = 0;
            for (int64_t j = 0, t = 0; j < n; j++) {
                double wr = p->cs[t], wi = sgn * p->sn[t];
                sr += re[j] * wr - im[j] * wi;
                si += re[j] * wi + im[j] * wr;
                t += k;
                if (t >= n) t -= n;
            }
            or_[k] = sr, oi[k] = si;
        }
        memcpy(re, or_, (size_t)n * sizeof(double));
        memcpy(im, oi, (size_t)n * sizeof(double));
    }
    if (inverse)
        for (int64_t k = 0; k < n; k++) re[k] /= (double)n, im[k] /= (double)n;
}

/* Per-worker buffers: re, im (n each) and the DFT's work area (2n). */
typedef struct line_bufs {
    int workers;
    double *mem;
    int64_t per;
} line_bufs;

static tern_status *line_bufs_make(op_ctx *c, int64_t n, int64_t lines, line_bufs *b)
{
    int t = tpool_threads(c->pool);
    b->workers = t < 1 ? 1 : (int64_t)t > lines ? (int)(lines ? lines : 1) : t;
    b->per = 4 * (n ? n : 1);
    return op_scratch(c, (size_t)b->workers * (size_t)b->per * sizeof(double), (void **)&b->mem);
}

/* ---- DFT --------------------------------------------------------------- */

typedef struct dft_job {
    const tern_tensor *x;
    tern_tensor *y;
    fft_plan plan;
    line_bufs bufs;
    int64_t lines, inner, n_sig, n_out, c_in;
    bool inverse;
} dft_job;

static void dft_worker(void *arg, int64_t w0, int64_t w1)
{
    const dft_job *j = arg;
    const int64_t n = j->plan.n, inner = j->inner;
    for (int64_t w = w0; w < w1; w++) {
        double *re = j->bufs.mem + w * j->bufs.per, *im = re + n, *work = im + n;
        int64_t l0 = j->lines * w / j->bufs.workers, l1 = j->lines * (w + 1) / j->bufs.workers;
        for (int64_t l = l0; l < l1; l++) {
            const int64_t o = l / inner, i = l % inner, take = j->n_sig < n ? j->n_sig : n;
            for (int64_t k = 0; k < n; k++) {
                int64_t e = ((o * j->n_sig + k) * inner + i) * j->c_in;
                re[k] = k < take ? sig_get(j->x, e) : 0;
                im[k] = k < take && j->c_in == 2 ? sig_get(j->x, e + 1) : 0;
            }
            fft_run(&j->plan, re, im, j->inverse, work);
            for (int64_t k = 0; k < j->n_out; k++) {
                int64_t e = ((o * j->n_out + k) * inner + i) * 2;
                sig_set(j->y, e, re[k]);
                sig_set(j->y, e + 1, im[k]);
            }
        }
    }
}

/* A scalar (or 1-element) integer input, or dflt if absent. */
static tern_status *scalar_int(op_ctx *c, int i, int64_t dflt, int64_t *v)
{
    const tern_tensor *t = i < c->n_in ? c->in[i] : NULL;
    *v = dflt;
    if (!t) return NULL;
    if (t->kind != TENSOR_DENSE || !dtype_is_int(t->dtype) || t->numel != 1)
        return op_error(c, "input %d must be an integer scalar", i);
    *v = op_get_i64(t, 0);
    return NULL;
}

static tern_status *scalar_f64(op_ctx *c, int i, double *v)
{
    TERN_TRY(op_need_input(c, i));
    const tern_tensor *t = c->in[i];
    if (t->kind != TENSOR_DENSE || t->numel != 1 || t->dtype == TERN_STRING)
        return op_error(c, "input %d must be a numeric scalar", i);
    *v = op_get_f64(t, 0);
    return NULL;
}

static tern_status *op_dft(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE || !dtype_is_float(x->dtype) || x->rank < 2)
        return op_error(c, "input must be a float tensor of rank >= 2");
    const int r = x->rank;
    dft_job j = {0};
    j.c_in = x->dims[r - 1];
    if (j.c_in != 1 && j.c_in != 2)
        return op_error(c, "last dimension must be 1 (real) or 2 (complex)");
    int64_t axis = op_attr_int(c, "axis", 1);
    if (axis < 0) axis += r;
    if (axis < 0 || axis > r - 2) return op_error(c, "axis is out of range for rank %d", r);
    j.inverse = op_attr_int(c, "inverse", 0) != 0;
    bool onesided = op_attr_int(c, "onesided", 0) != 0;
    if (onesided && (j.inverse || j.c_in == 2))
        return op_error(c, "onesided needs a real input and a forward transform");
    j.n_sig = x->dims[axis];
    int64_t n;
    TERN_TRY(scalar_int(c, 1, j.n_sig, &n));
    if (n < 1 || n > ((int64_t)1 << 30))
        return op_error(c, "dft_length %lld is invalid", (long long)n);
    j.n_out = onesided ? n / 2 + 1 : n;

    int64_t dims[TERN_MAX_RANK], outer = 1;
    j.inner = 1;
    for (int i = 0; i < r; i++) {
        dims[i] = x->dims[i];
        if (i < axis) outer *= dims[i];
        if (i > axis && i < r - 1) j.inner *= dims[i];
    }
    dims[axis] = j.n_out;
    dims[r - 1] = 2;
    TERN_TRY(op_out(c, 0, x->dtype, r, dims, &j.y));
    j.x = x;
    j.lines = outer * j.inner;
    if (j.lines == 0) return NULL;
    TERN_TRY(fft_plan_make(c, n, &j.plan));
    TERN_TRY(line_bufs_make(c, n, j.lines, &j.bufs));
    tpool_for(c->pool, j.bufs.workers, 1, dft_worker, &j);
    return NULL;
}

/* ---- STFT ----------------------------------------------------------------- */

typedef struct stft_job {
    const tern_tensor *x;
    tern_tensor *y;
    const tern_tensor *window; /* NULL: rectangular */
    fft_plan plan;
    line_bufs bufs;
    int64_t frames, step, sig_len, bins, c_in, lines;
} stft_job;

static void stft_worker(void *arg, int64_t w0, int64_t w1)
{
    const stft_job *j = arg;
    const int64_t n = j->plan.n;
    for (int64_t w = w0; w < w1; w++) {
        double *re = j->bufs.mem + w * j->bufs.per, *im = re + n, *work = im + n;
        int64_t l0 = j->lines * w / j->bufs.workers, l1 = j->lines * (w + 1) / j->bufs.workers;
        for (int64_t l = l0; l < l1; l++) { /* l = batch * frames + frame */
            const int64_t b = l / j->frames, f = l % j->frames;
            for (int64_t k = 0; k < n; k++) {
                int64_t e = (b * j->sig_len + f * j->step + k) * j->c_in;
                double wk = j->window ? sig_get(j->window, k) : 1.0;
                re[k] = wk * sig_get(j->x, e);
                im[k] = j->c_in == 2 ? wk * sig_get(j->x, e + 1) : 0;
            }
            fft_run(&j->plan, re, im, false, work);
            for (int64_t k = 0; k < j->bins; k++) {
                int64_t e = (l * j->bins + k) * 2;
                sig_set(j->y, e, re[k]);
                sig_set(j->y, e + 1, im[k]);
            }
        }
    }
}

static tern_status *op_stft(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(op_need_input(c, 1));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE || !dtype_is_float(x->dtype) || x->rank != 3)
        return op_error(c, "signal must be a float tensor [batch, length, 1 or 2]");
    stft_job j = {0};
    j.x = x;
    j.c_in = x->dims[2];
    j.sig_len = x->dims[1];
    if (j.c_in != 1 && j.c_in != 2)
        return op_error(c, "last dimension must be 1 (real) or 2 (complex)");
    TERN_TRY(scalar_int(c, 1, 0, &j.step));
    if (j.step <= 0) return op_error(c, "frame_step must be positive");
    const tern_tensor *win = c->n_in > 2 ? c->in[2] : NULL;
    int64_t n = -1;
    if (win) {
        if (win->kind != TENSOR_DENSE || win->rank != 1 || !dtype_is_float(win->dtype))
            return op_error(c, "window must be a 1-D float tensor");
        n = win->dims[0];
        j.window = win;
    }
    if (c->n_in > 3 && c->in[3]) {
        int64_t fl;
        TERN_TRY(scalar_int(c, 3, 0, &fl));
        if (n >= 0 && fl != n)
            return op_error(c, "frame_length %lld differs from the window length %lld",
                            (long long)fl, (long long)n);
        n = fl;
    }
    if (n < 1 || n > j.sig_len)
        return op_error(c, "frame length %lld must be in [1, signal length %lld]", (long long)n,
                        (long long)j.sig_len);
    bool onesided = op_attr_int(c, "onesided", 1) != 0;
    if (onesided && j.c_in == 2) return op_error(c, "onesided needs a real signal");
    j.frames = (j.sig_len - n) / j.step + 1;
    j.bins = onesided ? n / 2 + 1 : n;
    TERN_TRY(op_out(c, 0, x->dtype, 4, (int64_t[]){x->dims[0], j.frames, j.bins, 2}, &j.y));
    j.lines = x->dims[0] * j.frames;
    if (j.lines == 0) return NULL;
    TERN_TRY(fft_plan_make(c, n, &j.plan));
    TERN_TRY(line_bufs_make(c, n, j.lines, &j.bufs));
    tpool_for(c->pool, j.bufs.workers, 1, stft_worker, &j);
    return NULL;
}

/* ---- windows ----------------------------------------------------------- */

/* y[k] = a0 - a1 cos(2 pi k / N) + a2 cos(4 pi k / N), N = size (periodic)
 * or size - 1 (symmetric). */
static tern_status *window_op(op_ctx *c, double a0, double a1, double a2)
{
    int64_t size;
    TERN_TRY(op_need_input(c, 0));
    TERN_TRY(scalar_int(c, 0, 0, &size));
    if (size < 0 || size > ((int64_t)1 << 32))
        return op_error(c, "size %lld is invalid", (long long)size);
    int64_t dt = op_attr_int(c, "output_datatype", TERN_FLOAT);
    if (!dtype_valid((int)dt) || dt == TERN_STRING || dt == TERN_UNDEFINED ||
        dt == TERN_COMPLEX64 || dt == TERN_COMPLEX128)
        return op_error(c, "unsupported output_datatype %lld", (long long)dt);
    bool periodic = op_attr_int(c, "periodic", 1) != 0;
    double N = (double)(periodic ? size : size - 1);
    if (N < 1) N = 1;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, (tern_dtype)dt, 1, &size, &y));
    for (int64_t k = 0; k < size; k++) {
        double t = 2.0 * SIG_PI * (double)k / N;
        dtype_set_f64(y->dtype, y->data, k, a0 - a1 * cos(t) + a2 * cos(2 * t));
    }
    return NULL;
}

static tern_status *op_hann(op_ctx *c)
{
    return window_op(c, 0.5, 0.5, 0);
}
static tern_status *op_hamming(op_ctx *c)
{
    return window_op(c, 25.0 / 46.0, 21.0 / 46.0, 0);
}
static tern_status *op_blackman(op_ctx *c)
{
    return window_op(c, 0.42, 0.5, 0.08);
}

/* ---- MelWeightMatrix ----------------------------------------------------- */

static tern_status *op_mel(op_ctx *c)
{
    int64_t mels, dft_len, rate;
    double lo_hz = 0, hi_hz = 0;
    for (int i = 0; i < 5; i++) TERN_TRY(op_need_input(c, i));
    TERN_TRY(scalar_int(c, 0, 0, &mels));
    TERN_TRY(scalar_int(c, 1, 0, &dft_len));
    TERN_TRY(scalar_int(c, 2, 0, &rate));
    TERN_TRY(scalar_f64(c, 3, &lo_hz));
    TERN_TRY(scalar_f64(c, 4, &hi_hz));
    if (mels <= 0 || mels > (1 << 20) || dft_len <= 0 || dft_len > (1 << 28) || rate <= 0)
        return op_error(c, "num_mel_bins, dft_length and sample_rate must be positive");
    if (!(lo_hz >= 0 && hi_hz >= lo_hz)) return op_error(c, "bad frequency edges");
    int64_t dt = op_attr_int(c, "output_datatype", TERN_FLOAT);
    if (!dtype_valid((int)dt) || dt == TERN_STRING || dt == TERN_UNDEFINED ||
        dt == TERN_COMPLEX64 || dt == TERN_COMPLEX128)
        return op_error(c, "unsupported output_datatype %lld", (long long)dt);
    const int64_t bins = dft_len / 2 + 1;
    int64_t *edge;
    TERN_TRY(op_scratch(c, (size_t)(mels + 2) * sizeof(int64_t), (void **)&edge));
    double mel_lo = 2595.0 * log10(1.0 + lo_hz / 700.0),
           mel_hi = 2595.0 * log10(1.0 + hi_hz / 700.0);
    double step = (mel_hi - mel_lo) / (double)(mels + 2);
    for (int64_t i = 0; i < mels + 2; i++) {
        double hz = 700.0 * (pow(10.0, (mel_lo + step * (double)i) / 2595.0) - 1.0);
        double b = floor((double)(dft_len + 1) * hz / (double)rate);
        if (b < 0 || b >= (double)bins)
            return op_error(c, "a mel band edge falls outside the %lld DFT bins", (long long)bins);
        edge[i] = (int64_t)b;
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, (tern_dtype)dt, 2, (int64_t[]){bins, mels}, &y));
    memset(y->data, 0, tensor_nbytes(y));
    for (int64_t m = 0; m < mels; m++) {
        int64_t l = edge[m], ce = edge[m + 1], h = edge[m + 2];
        if (ce == l) {
            dtype_set_f64(y->dtype, y->data, ce * mels + m, 1.0);
        } else {
            for (int64_t k = l; k <= ce; k++)
                dtype_set_f64(y->dtype, y->data, k * mels + m, (double)(k - l) / (double)(ce - l));
        }
        for (int64_t k = ce; k < h; k++)
            dtype_set_f64(y->dtype, y->data, k * mels + m, (double)(h - k) / (double)(h - ce));
    }
    return NULL;
}

const op_def ops_signal[] = {
    {"", "DFT", 17, 17, op_dft},
    {"", "STFT", 17, 17, op_stft},
    {"", "HannWindow", 17, 17, op_hann},
    {"", "HammingWindow", 17, 17, op_hamming},
    {"", "BlackmanWindow", 17, 17, op_blackman},
    {"", "MelWeightMatrix", 17, 17, op_mel},
    {0},
};

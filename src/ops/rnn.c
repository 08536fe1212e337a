/*
 * Operator family: recurrent networks (RNN, GRU, LSTM).
 *
 * The three ops share one driver. Each direction runs in two phases:
 *
 *   1. the input projection of every time step at once, one GEMM
 *      XW[t,b,:] = X[t,b,:] . W^T + Wb (+ Rb where it adds outside the gates'
 *      products), which is where most of the work of a short sequence is;
 *   2. the recurrence, step by step: HR = H_prev . R^T, then the cell's
 *      element-wise gate arithmetic per batch row.
 *
 * Gate rows in W, R and B are laid out as the spec orders them: RNN [i],
 * GRU [z r h], LSTM [i o f c]; LSTM peepholes P are [i o f].
 *
 * sequence_lens: batch row b is live at time t iff t < len[b]. A forward
 * pass freezes the state of a finished row, so Y_h holds its last valid
 * state; a reverse pass walks t from seq-1 down, so a row starts from its
 * initial state at t = len[b]-1. Y is zero at the steps where a row is dead.
 *
 * layout = 1 (opset 14) puts batch first in X, Y, the initial states and
 * Y_h / Y_c; the kernel only changes how it indexes them.
 *
 * Arithmetic is float32: other float types are converted on the way in and
 * out (double inputs therefore compute at float precision).
 */
#include <ctype.h>
#include <math.h>
#include <string.h>

#include "core/cpu.h"
#include "ops/linalg_gemm.h"
#include "ops/op.h"
#include "ops/reduce_util.h"

enum cell_kind { CELL_RNN, CELL_GRU, CELL_LSTM };

enum act_kind {
    ACT_SIGMOID,
    ACT_TANH,
    ACT_RELU,
    ACT_AFFINE,
    ACT_LEAKYRELU,
    ACT_THRESHOLDEDRELU,
    ACT_SCALEDTANH,
    ACT_HARDSIGMOID,
    ACT_ELU,
    ACT_SOFTSIGN,
    ACT_SOFTPLUS,
};

typedef struct rnn_act {
    int kind;
    float alpha, beta;
} rnn_act;

/* Name, whether it takes alpha / beta, and their defaults. */
static const struct {
    const char *name;
    int kind;
    bool has_alpha, has_beta;
    float alpha, beta;
} act_table[] = {
    {"sigmoid", ACT_SIGMOID, false, false, 0, 0},
    {"tanh", ACT_TANH, false, false, 0, 0},
    {"relu", ACT_RELU, false, false, 0, 0},
    {"affine", ACT_AFFINE, true, true, 1.0f, 0.0f},
    {"leakyrelu", ACT_LEAKYRELU, true, false, 0.01f, 0},
    {"thresholdedrelu", ACT_THRESHOLDEDRELU, true, false, 1.0f, 0},
    {"scaledtanh", ACT_SCALEDTANH, true, true, 1.0f, 1.0f},
    {"hardsigmoid", ACT_HARDSIGMOID, true, true, 0.2f, 0.5f},
    {"elu", ACT_ELU, true, false, 1.0f, 0},
    {"softsign", ACT_SOFTSIGN, false, false, 0, 0},
    {"softplus", ACT_SOFTPLUS, false, false, 0, 0},
};

static bool name_eq_nocase(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

/* Applies activation a to v[0..n) in place. */
static TERN_INLINE void act_apply_impl(const rnn_act *a, float *v, int64_t n)
{
    float al = a->alpha, be = a->beta;
    switch (a->kind) {
    case ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) v[i] = 1.0f / (1.0f + ru_expf(-v[i]));
        break;
    case ACT_TANH:
        for (int64_t i = 0; i < n; i++) v[i] = ru_tanhf(v[i]);
        break;
    case ACT_RELU:
        for (int64_t i = 0; i < n; i++) v[i] = v[i] > 0 ? v[i] : 0;
        break;
    case ACT_AFFINE:
        for (int64_t i = 0; i < n; i++) v[i] = al * v[i] + be;
        break;
    case ACT_LEAKYRELU:
        for (int64_t i = 0; i < n; i++) v[i] = v[i] >= 0 ? v[i] : al * v[i];
        break;
    case ACT_THRESHOLDEDRELU:
        for (int64_t i = 0; i < n; i++) v[i] = v[i] > al ? v[i] : 0;
        break;
    case ACT_SCALEDTANH:
        for (int64_t i = 0; i < n; i++) v[i] = al * ru_tanhf(be * v[i]);
        break;
    case ACT_HARDSIGMOID:
        for (int64_t i = 0; i < n; i++) {
            float y = al * v[i] + be;
            v[i] = y < 0 ? 0 : y > 1 ? 1 : y;
        }
        break;
    case ACT_ELU:
        for (int64_t i = 0; i < n; i++) v[i] = v[i] >= 0 ? v[i] : al * (expf(v[i]) - 1.0f);
        break;
    case ACT_SOFTSIGN:
        for (int64_t i = 0; i < n; i++) v[i] = v[i] / (1.0f + fabsf(v[i]));
        break;
    case ACT_SOFTPLUS:
        for (int64_t i = 0; i < n; i++) v[i] = log1pf(expf(v[i]));
        break;
    }
}

TERN_MULTI_VOID(act_apply, (const rnn_act *a, float *v, int64_t n), (a, v, n))

static TERN_INLINE void clip_apply(float clip, float *v, int64_t n)
{
    if (clip <= 0) return;
    for (int64_t i = 0; i < n; i++) v[i] = v[i] < -clip ? -clip : v[i] > clip ? clip : v[i];
}

/* ---- float32 staging ----------------------------------------------------- */

static tern_status *scratch_f32(op_ctx *c, int64_t n, float **p)
{
    return op_scratch(c, (size_t)(n > 0 ? n : 1) * sizeof(float), (void **)p);
}

/* t's data as float32: the tensor itself if it is float, else a scratch copy. */
static tern_status *as_f32(op_ctx *c, const tern_tensor *t, const float **out)
{
    if (t->dtype == TERN_FLOAT) {
        *out = t->data;
        return NULL;
    }
    if (!dtype_is_float(t->dtype))
        return op_error(c, "expected a float tensor, got %s", tern_dtype_name(t->dtype));
    float *p;
    TERN_TRY(scratch_f32(c, t->numel, &p));
    for (int64_t i = 0; i < t->numel; i++) p[i] = (float)op_get_f64(t, i);
    *out = p;
    return NULL;
}

/* A float32 buffer for output t: its data if float, else scratch (see flush). */
static tern_status *out_f32(op_ctx *c, tern_tensor *t, float **out)
{
    if (t->dtype == TERN_FLOAT) {
        *out = t->data;
        return NULL;
    }
    return scratch_f32(c, t->numel, out);
}

static void flush_f32(tern_tensor *t, const float *buf)
{
    if (t->dtype == TERN_FLOAT) return;
    for (int64_t i = 0; i < t->numel; i++) dtype_set_f64(t->dtype, t->data, i, buf[i]);
}

/* ---- GEMM: C[m, n] = sum_k A[m, k] * B[n, k] ----------------------------- *
 * B is a weight matrix as ONNX stores it, [n, k] row-major, read through
 * the packed SGEMM as a transposed view. */

static tern_status *gemm_nt(op_ctx *c, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                            const float *B, int64_t ldb, float *C, int64_t ldc)
{
    float *work = NULL;
    size_t wf = sgemm_is_small(M, N, K) ? 0 : sgemm_work_floats(M, N, K);
    if (wf) TERN_TRY(op_scratch(c, wf * sizeof(float), (void **)&work));
    sgemm(c->pool, M, N, K, 1.0f, A, lda, 1, B, 1, ldb, 0.0f, C, ldc, work);
    return NULL;
}

/* ---- the recurrence ---------------------------------------------------- */

typedef struct rnn_args {
    int kind;
    int gates; /* 1, 3 or 4 */
    int64_t seq, batch, in, H;
    int nd;
    bool layout; /* batch first */
    float clip;  /* <= 0: none */
    bool lbr;    /* GRU linear_before_reset */
    bool input_forget;
    const float *X, *W, *R, *B, *P, *h0, *c0;
    const int64_t *lens;
    float *Y, *Yh, *Yc; /* NULL when unused */
    rnn_act act[6];     /* per direction: act[d * n_act + k] */
    int n_act;
} rnn_args;

/* One LSTM step of one batch row: gates g (i, o, f, c; the recurrent
 * product) plus the projected input x, peepholes P, cell state cb and
 * hidden state hb updated in place. Compiled per ISA as a whole, with the
 * activations inlined. */
static TERN_INLINE void lstm_cell_impl(const rnn_args *a, const rnn_act *act, const float *P,
                                       const float *x, float *g, float *cb, float *hb, int64_t H)
{
    float *gi = g, *go = g + H, *gf = g + 2 * H, *gc = g + 3 * H;
    for (int64_t k = 0; k < 4 * H; k++) g[k] += x[k];
    if (P)
        for (int64_t k = 0; k < H; k++) {
            gi[k] += P[k] * cb[k];
            gf[k] += P[2 * H + k] * cb[k];
        }
    clip_apply(a->clip, gi, H);
    clip_apply(a->clip, gf, 2 * H); /* f and c; o waits for its peephole */
    act_apply_impl(&act[0], gi, H);
    if (a->input_forget)
        for (int64_t k = 0; k < H; k++) gf[k] = 1.0f - gi[k];
    else
        act_apply_impl(&act[0], gf, H);
    act_apply_impl(&act[1], gc, H);
    for (int64_t k = 0; k < H; k++) cb[k] = gf[k] * cb[k] + gi[k] * gc[k];
    if (P)
        for (int64_t k = 0; k < H; k++) go[k] += P[H + k] * cb[k];
    clip_apply(a->clip, go, H);
    act_apply_impl(&act[0], go, H);
    memcpy(gc, cb, (size_t)H * sizeof(float));
    act_apply_impl(&act[2], gc, H);
    for (int64_t k = 0; k < H; k++) hb[k] = go[k] * gc[k];
}
TERN_MULTI_VOID(lstm_cell,
                (const rnn_args *a, const rnn_act *act, const float *P, const float *x, float *g,
                 float *cb, float *hb, int64_t H),
                (a, act, P, x, g, cb, hb, H))

/* Offset of row (t, b) in X, or of (t, d, b) in Y, for either layout. */
static int64_t x_row(const rnn_args *a, int64_t t, int64_t b)
{
    return a->layout ? b * a->seq + t : t * a->batch + b;
}
static int64_t y_row(const rnn_args *a, int64_t t, int d, int64_t b)
{
    return a->layout ? (b * a->seq + t) * a->nd + d : (t * a->nd + d) * a->batch + b;
}
static int64_t h_row(const rnn_args *a, int d, int64_t b)
{
    return a->layout ? b * a->nd + d : (int64_t)d * a->batch + b;
}

static tern_status *run_direction(op_ctx *c, const rnn_args *a, int d, bool reverse)
{
    const int64_t H = a->H, GH = a->gates * H, batch = a->batch, rows = a->seq * batch;
    const float *W = a->W + (int64_t)d * GH * a->in, *R = a->R + (int64_t)d * GH * H;
    const float *Wb = a->B ? a->B + (int64_t)d * 2 * GH : NULL, *Rb = Wb ? Wb + GH : NULL;
    const rnn_act *act = a->act + d * a->n_act;
    float *xw, *hr, *h, *cs = NULL, *tmp = NULL;
    TERN_TRY(scratch_f32(c, rows * GH, &xw));
    TERN_TRY(scratch_f32(c, batch * GH, &hr));
    TERN_TRY(scratch_f32(c, batch * H, &h));
    if (a->kind == CELL_LSTM) TERN_TRY(scratch_f32(c, batch * H, &cs));
    if (a->kind == CELL_GRU) TERN_TRY(scratch_f32(c, 2 * H, &tmp));

    /* Phase 1: projection of every input row, rows in X's own order. */
    TERN_TRY(gemm_nt(c, rows, GH, a->in, a->X, a->in, W, a->in, xw, GH));
    if (Wb) {
        /* GRU keeps Rb_h apart: it is scaled by r (linear_before_reset) or
         * added after the product with (r . H); both place it in the step. */
        int64_t rb_end = a->kind == CELL_GRU ? 2 * H : GH;
        for (int64_t r = 0; r < rows; r++) {
            float *p = xw + r * GH;
            for (int64_t g = 0; g < GH; g++) p[g] += Wb[g] + (g < rb_end ? Rb[g] : 0);
        }
    }

    for (int64_t b = 0; b < batch; b++) {
        const int64_t hr0 = h_row(a, d, b) * H;
        for (int64_t k = 0; k < H; k++) {
            h[b * H + k] = a->h0 ? a->h0[hr0 + k] : 0;
            if (cs) cs[b * H + k] = a->c0 ? a->c0[hr0 + k] : 0;
        }
    }

    /* Phase 2: the recurrence. R is packed once for all steps; each step
     * packs the state h and multiplies. */
    const int64_t n_gates_r = a->kind == CELL_GRU && !a->lbr ? 2 * H : GH;
    float *pr, *ph;
    TERN_TRY(scratch_f32(c, (int64_t)sgemm_pb_all_floats(n_gates_r, H), &pr));
    TERN_TRY(scratch_f32(c, (int64_t)sgemm_pa_floats(batch, H), &ph));
    sgemm_view rv = {R, 1, H};
    sgemm_pack_b_all(n_gates_r, H, sgemm_pack_view, &rv, pr);
    sgemm_out ho = {hr, GH, false, NULL};
    for (int64_t s = 0; s < a->seq; s++) {
        const int64_t t = reverse ? a->seq - 1 - s : s;
        sgemm_pack_a(c->pool, batch, H, h, H, 1, ph);
        sgemm_prepacked(c->pool, batch, n_gates_r, H, 1.0f, ph, pr, 0.0f, &ho);
        for (int64_t b = 0; b < batch; b++) {
            bool live = !a->lens || t < a->lens[b];
            float *y = a->Y ? a->Y + y_row(a, t, d, b) * H : NULL;
            if (!live) {
                if (y) memset(y, 0, (size_t)H * sizeof(float));
                continue;
            }
            const float *x = xw + x_row(a, t, b) * GH;
            float *g = hr + b * GH, *hb = h + b * H;
            if (a->kind == CELL_RNN) {
                for (int64_t k = 0; k < H; k++) g[k] += x[k];
                clip_apply(a->clip, g, H);
                act_apply(&act[0], g, H);
                memcpy(hb, g, (size_t)H * sizeof(float));
            } else if (a->kind == CELL_LSTM) {
                const float *P = a->P ? a->P + (int64_t)d * 3 * H : NULL;
                lstm_cell(a, act, P, x, g, cs + b * H, hb, H);
            } else { /* GRU */
                float *gz = g, *gr = g + H, *gh = tmp, *rh = tmp + H;
                for (int64_t k = 0; k < 2 * H; k++) g[k] += x[k];
                clip_apply(a->clip, g, 2 * H);
                act_apply(&act[0], g, 2 * H);
                if (a->lbr) {
                    for (int64_t k = 0; k < H; k++)
                        gh[k] = x[2 * H + k] + gr[k] * (g[2 * H + k] + (Rb ? Rb[2 * H + k] : 0));
                } else {
                    for (int64_t k = 0; k < H; k++) rh[k] = gr[k] * hb[k];
                    TERN_TRY(gemm_nt(c, 1, H, H, rh, H, R + 2 * H * H, H, gh, H));
                    for (int64_t k = 0; k < H; k++)
                        gh[k] += x[2 * H + k] + (Rb ? Rb[2 * H + k] : 0);
                }
                clip_apply(a->clip, gh, H);
                act_apply(&act[1], gh, H);
                for (int64_t k = 0; k < H; k++) hb[k] = (1.0f - gz[k]) * gh[k] + gz[k] * hb[k];
            }
            if (y) memcpy(y, hb, (size_t)H * sizeof(float));
        }
    }

    for (int64_t b = 0; b < batch; b++) {
        const int64_t o = h_row(a, d, b) * H;
        if (a->Yh) memcpy(a->Yh + o, h + b * H, (size_t)H * sizeof(float));
        if (a->Yc) memcpy(a->Yc + o, cs + b * H, (size_t)H * sizeof(float));
    }
    return NULL;
}

/* Reads the activations / activation_alpha / activation_beta attributes, or
 * the defaults of the cell (f, g, h ...) for each direction. */
static tern_status *parse_acts(op_ctx *c, rnn_args *a, const char *const *dflt)
{
    const op_attr *names = op_attr_get(c, "activations");
    const float *alpha = NULL, *beta = NULL;
    int n_alpha = op_attr_floats(c, "activation_alpha", &alpha);
    int n_beta = op_attr_floats(c, "activation_beta", &beta);
    int need = a->n_act * a->nd, n = need, ia = 0, ib = 0;
    if (names && names->type == ATTR_STRINGS) {
        n = names->n;
        if (n != need && !(a->nd == 2 && n == a->n_act))
            return op_error(c, "activations lists %d functions, expected %d", n, need);
    } else {
        names = NULL;
    }
    for (int i = 0; i < need; i++) {
        const char *nm = names ? names->strings[i % n] : dflt[i % a->n_act];
        size_t k = 0;
        while (k < sizeof act_table / sizeof *act_table && !name_eq_nocase(act_table[k].name, nm))
            k++;
        if (k == sizeof act_table / sizeof *act_table)
            return op_error(c, "unsupported activation '%s'", nm);
        a->act[i].kind = act_table[k].kind;
        a->act[i].alpha = act_table[k].alpha;
        a->act[i].beta = act_table[k].beta;
        if (act_table[k].has_alpha && names && ia < n_alpha) a->act[i].alpha = alpha[ia++];
        if (act_table[k].has_beta && names && ib < n_beta) a->act[i].beta = beta[ib++];
    }
    return NULL;
}

static tern_status *check_shape(op_ctx *c, const tern_tensor *t, const char *what, int rank,
                                const int64_t *dims)
{
    bool ok = t->kind == TENSOR_DENSE && t->rank == rank;
    for (int i = 0; ok && i < rank; i++) ok = t->dims[i] == dims[i];
    if (ok) return NULL;
    char got[160], want[160];
    return op_error(c, "%s has shape %s, expected %s", what,
                    shape_str(t->rank, t->dims, got, sizeof got),
                    shape_str(rank, dims, want, sizeof want));
}

static const tern_tensor *opt_in(const op_ctx *c, int i)
{
    return i < c->n_in && c->in[i] && c->in[i]->kind == TENSOR_DENSE ? c->in[i] : NULL;
}

static tern_status *rnn_common(op_ctx *c, int kind)
{
    static const char *const dflt_rnn[] = {"Tanh"};
    static const char *const dflt_gru[] = {"Sigmoid", "Tanh"};
    static const char *const dflt_lstm[] = {"Sigmoid", "Tanh", "Tanh"};
    rnn_args a = {0};
    a.kind = kind;
    a.gates = kind == CELL_RNN ? 1 : kind == CELL_GRU ? 3 : 4;
    a.n_act = kind == CELL_RNN ? 1 : kind == CELL_GRU ? 2 : 3;

    for (int i = 0; i < 3; i++) TERN_TRY(op_need_input(c, i));
    const tern_tensor *X = c->in[0], *W = c->in[1], *R = c->in[2];
    const tern_tensor *B = opt_in(c, 3), *L = opt_in(c, 4), *h0 = opt_in(c, 5);
    const tern_tensor *c0 = kind == CELL_LSTM ? opt_in(c, 6) : NULL;
    const tern_tensor *P = kind == CELL_LSTM ? opt_in(c, 7) : NULL;

    const char *dir = op_attr_str(c, "direction", "forward");
    bool reverse = strcmp(dir, "reverse") == 0;
    if (strcmp(dir, "bidirectional") == 0)
        a.nd = 2;
    else if (reverse || strcmp(dir, "forward") == 0)
        a.nd = 1;
    else
        return op_error(c, "unknown direction '%s'", dir);
    a.layout = c->opset >= 14 && op_attr_int(c, "layout", 0) != 0;
    a.clip = op_attr_get(c, "clip") ? op_attr_float(c, "clip", 0) : 0;
    if (op_attr_get(c, "clip") && !(a.clip > 0)) return op_error(c, "clip must be positive");
    a.lbr = kind == CELL_GRU && op_attr_int(c, "linear_before_reset", 0) != 0;
    a.input_forget = kind == CELL_LSTM && op_attr_int(c, "input_forget", 0) != 0;

    if (X->kind != TENSOR_DENSE || X->rank != 3) return op_error(c, "X must be a 3-D tensor");
    if (W->kind != TENSOR_DENSE || W->rank != 3 || R->kind != TENSOR_DENSE || R->rank != 3)
        return op_error(c, "W and R must be 3-D tensors");
    a.seq = X->dims[a.layout ? 1 : 0];
    a.batch = X->dims[a.layout ? 0 : 1];
    a.in = X->dims[2];
    a.H = op_attr_int(c, "hidden_size", R->dims[2]);
    if (a.H <= 0 || a.H > (1 << 24)) return op_error(c, "bad hidden_size %lld", (long long)a.H);
    const int64_t GH = a.gates * a.H;
    TERN_TRY(check_shape(c, W, "W", 3, (int64_t[]){a.nd, GH, a.in}));
    TERN_TRY(check_shape(c, R, "R", 3, (int64_t[]){a.nd, GH, a.H}));
    if (B) TERN_TRY(check_shape(c, B, "B", 2, (int64_t[]){a.nd, 2 * GH}));
    int64_t hdims[3] = {a.nd, a.batch, a.H};
    if (a.layout) hdims[0] = a.batch, hdims[1] = a.nd;
    if (h0) TERN_TRY(check_shape(c, h0, "initial_h", 3, hdims));
    if (c0) TERN_TRY(check_shape(c, c0, "initial_c", 3, hdims));
    if (P) TERN_TRY(check_shape(c, P, "P", 2, (int64_t[]){a.nd, 3 * a.H}));
    if (L) {
        int64_t n;
        TERN_TRY(op_read_ints(c, L, (int64_t **)&a.lens, &n));
        if (n != a.batch)
            return op_error(c, "sequence_lens has %lld entries for batch %lld", (long long)n,
                            (long long)a.batch);
        for (int64_t b = 0; b < n; b++)
            if (a.lens[b] < 0 || a.lens[b] > a.seq)
                return op_error(c, "sequence_lens[%lld] = %lld is outside [0, %lld]", (long long)b,
                                (long long)a.lens[b], (long long)a.seq);
    }
    TERN_TRY(parse_acts(c, &a,
                        kind == CELL_RNN   ? dflt_rnn
                        : kind == CELL_GRU ? dflt_gru
                                           : dflt_lstm));

    TERN_TRY(as_f32(c, X, &a.X));
    TERN_TRY(as_f32(c, W, &a.W));
    TERN_TRY(as_f32(c, R, &a.R));
    if (B) TERN_TRY(as_f32(c, B, &a.B));
    if (h0) TERN_TRY(as_f32(c, h0, &a.h0));
    if (c0) TERN_TRY(as_f32(c, c0, &a.c0));
    if (P) TERN_TRY(as_f32(c, P, &a.P));

    tern_tensor *Y = NULL, *Yh = NULL, *Yc = NULL;
    int64_t ydims[4] = {a.seq, a.nd, a.batch, a.H};
    if (a.layout) ydims[0] = a.batch, ydims[1] = a.seq, ydims[2] = a.nd;
    if (op_out_used(c, 0)) {
        TERN_TRY(op_out(c, 0, X->dtype, 4, ydims, &Y));
        TERN_TRY(out_f32(c, Y, &a.Y));
    }
    if (op_out_used(c, 1)) {
        TERN_TRY(op_out(c, 1, X->dtype, 3, hdims, &Yh));
        TERN_TRY(out_f32(c, Yh, &a.Yh));
    }
    if (kind == CELL_LSTM && op_out_used(c, 2)) {
        TERN_TRY(op_out(c, 2, X->dtype, 3, hdims, &Yc));
        TERN_TRY(out_f32(c, Yc, &a.Yc));
    }
    for (int d = 0; d < a.nd; d++) TERN_TRY(run_direction(c, &a, d, reverse || d == 1));
    if (Y) flush_f32(Y, a.Y);
    if (Yh) flush_f32(Yh, a.Yh);
    if (Yc) flush_f32(Yc, a.Yc);
    return NULL;
}

static tern_status *op_rnn(op_ctx *c)
{
    return rnn_common(c, CELL_RNN);
}
static tern_status *op_gru(op_ctx *c)
{
    return rnn_common(c, CELL_GRU);
}
static tern_status *op_lstm(op_ctx *c)
{
    return rnn_common(c, CELL_LSTM);
}

const op_def ops_rnn[] = {
    {"", "RNN", 7, 17, op_rnn},
    {"", "GRU", 7, 17, op_gru},
    {"", "LSTM", 7, 17, op_lstm},
    {0},
};

/*
 * Operator family: com.tern Attention, the scaled dot-product attention
 * block that torch exporters write as five ops (graph/passes_attn.c fuses
 * them):
 *
 *     Attention(Q, K, V, mask?) = Softmax(scale * Q K' + mask, last axis) V
 *
 * where K' is input 1 as the first MatMul read it ([..., d, T']), so the
 * kernel never transposes anything itself. Inputs are seen through views:
 * attributes q_perm, k_perm, v_perm (optional INTS) say that the operand is
 * Transpose(input, perm) (the head-splitting Transposes exporters put before
 * attention are absorbed this way), out_perm that the output is
 * Transpose(result, out_perm) (the head-merging one after it; its last entry
 * must keep the last axis in place). Batch dims, the rows of Q and the
 * columns of K' broadcast with the mask's exactly as the unfused MatMul, Add,
 * Softmax, MatMul chain would; the optional `mask` is added, float32.
 *
 * The work is cut into items of (batch index, block of query rows). An item
 * computes its block of scores [rows x T'] with the SGEMM of linalg_gemm.h
 * (scale as alpha), adds the mask and takes a numerically stable softmax row
 * by row while the block is in cache, then multiplies the block by V
 * straight into the output. The full [T x T'] score matrix per head is never
 * written to memory. Items run on the thread pool; each pool chunk owns one
 * slot of scratch (score block and GEMM workspace), so the GEMMs inside run
 * single-threaded (pool NULL), the parallelism being across items.
 */
#include <math.h>
#include <string.h>

#include "core/cpu.h"
#include "ops/linalg_gemm.h"
#include "ops/op.h"
#include "ops/reduce_util.h"

/* Score block size, in floats, that an item aims to keep in cache. */
enum { ATTN_BLOCK_FLOATS = 32768 };

/* A tensor seen as a broadcast operand of rank r: element (batch..., i, j)
 * at p[sum(b_k * bs[k]) + i * rs + j * cs], 0 strides on broadcast dims. */
typedef struct attn_view {
    const float *p;
    int64_t bs[TERN_MAX_RANK];
    int64_t rs, cs;
} attn_view;

/* Logical dims and strides of t seen as Transpose(t, perm) (perm_attr NULL
 * or absent: t itself), right-aligned into rank r (missing leading dims are
 * 1). */
static tern_status *logical(op_ctx *c, const tern_tensor *t, const char *perm_attr, int r,
                            int64_t *dims, int64_t *st)
{
    const int64_t *perm = NULL;
    int np = perm_attr ? op_attr_ints(c, perm_attr, &perm) : -1;
    int64_t ps[TERN_MAX_RANK];
    int64_t s = 1;
    for (int i = t->rank - 1; i >= 0; i--) {
        ps[i] = s;
        s *= t->dims[i];
    }
    if (np >= 0) {
        bool seen[TERN_MAX_RANK] = {0};
        if (np != t->rank)
            return op_error(c, "%s has %d entries for an input of rank %d", perm_attr, np, t->rank);
        for (int i = 0; i < np; i++) {
            if (perm[i] < 0 || perm[i] >= np || seen[perm[i]])
                return op_error(c, "%s is not a permutation", perm_attr);
            seen[perm[i]] = true;
        }
    }
    int off = r - t->rank;
    for (int i = 0; i < r; i++) {
        int k = i - off;
        int src = k < 0 ? -1 : np >= 0 ? (int)perm[k] : k;
        dims[i] = src < 0 ? 1 : t->dims[src];
        st[i] = src < 0 ? 0 : ps[src];
    }
    return NULL;
}

/* Broadcasts dim d of an operand into out (1 and n go to n; else error). */
static tern_status *bcast_dim(op_ctx *c, int64_t d, int64_t *out, const char *what)
{
    if (d == *out || d == 1) return NULL;
    if (*out == 1) {
        *out = d;
        return NULL;
    }
    return op_error(c, "%s: dimension %lld does not broadcast with %lld", what, (long long)d,
                    (long long)*out);
}

static void make_view(attn_view *v, const tern_tensor *t, int r, const int64_t *dims,
                      const int64_t *st, const int64_t *out)
{
    v->p = t->data;
    for (int i = 0; i < r - 2; i++) v->bs[i] = dims[i] == out[i] ? st[i] : 0;
    v->rs = dims[r - 2] == out[r - 2] ? st[r - 2] : 0;
    v->cs = dims[r - 1] == out[r - 1] ? st[r - 1] : 0;
}

static int64_t view_offset(const attn_view *v, int nb, const int64_t *bdims, int64_t b)
{
    int64_t off = 0;
    for (int k = nb - 1; k >= 0; k--) {
        off += b % bdims[k] * v->bs[k];
        b /= bdims[k];
    }
    return off;
}

/* Adds the mask to m rows of n scores (row stride n) and replaces each row
 * by its softmax, as the Softmax kernel computes it (norm_softmax.c). */
static TERN_INLINE void attn_softmax_impl(float *s, int64_t m, int64_t n, const float *mask,
                                          int64_t m_rs, int64_t m_cs)
{
    for (int64_t i = 0; i < m; i++) {
        float *restrict x = s + i * n;
        if (mask && m_cs == 1) {
            const float *restrict mk = mask + i * m_rs;
            for (int64_t j = 0; j < n; j++) x[j] += mk[j];
        } else if (mask) {
            const float *mk = mask + i * m_rs;
            for (int64_t j = 0; j < n; j++) x[j] += mk[j * m_cs];
        }
        float mx = ru_max_f32(x, n);
        for (int64_t j = 0; j < n; j++) x[j] = ru_expf(x[j] - mx);
        float inv = (float)(1.0 / ru_sum_f32(x, n));
        for (int64_t j = 0; j < n; j++) x[j] *= inv;
    }
}
TERN_MULTI_VOID(attn_softmax,
                (float *s, int64_t m, int64_t n, const float *mask, int64_t m_rs, int64_t m_cs),
                (s, m, n, mask, m_rs, m_cs))

typedef struct attn_job {
    attn_view q, k, v, mask; /* mask.p NULL: none */
    float *y;
    int64_t y_bs[TERN_MAX_RANK], y_rs; /* output: the last dim is contiguous */
    int nb;                            /* batch dims */
    int64_t bdims[TERN_MAX_RANK];
    int64_t t, tk, d, dv, rows; /* rows: query rows per item */
    int64_t blocks;             /* row blocks per batch index */
    int64_t items, slots;
    float scale;
    float *scratch;
    size_t slot_floats, work_off;
} attn_job;

static void attn_item(const attn_job *j, int64_t it, float *sc, float *work)
{
    int64_t b = it / j->blocks, r0 = it % j->blocks * j->rows;
    int64_t m = j->t - r0 < j->rows ? j->t - r0 : j->rows;
    const float *q = j->q.p + view_offset(&j->q, j->nb, j->bdims, b) + r0 * j->q.rs;
    const float *k = j->k.p + view_offset(&j->k, j->nb, j->bdims, b);
    const float *v = j->v.p + view_offset(&j->v, j->nb, j->bdims, b);
    float *y = j->y + r0 * j->y_rs;
    int64_t bb = b;
    for (int d = j->nb - 1; d >= 0; d--) {
        y += bb % j->bdims[d] * j->y_bs[d];
        bb /= j->bdims[d];
    }
    if (j->tk == 0) { /* softmax of nothing times an empty V: zeros */
        for (int64_t i = 0; i < m; i++) memset(y + i * j->y_rs, 0, (size_t)j->dv * sizeof *y);
        return;
    }
    sgemm(NULL, m, j->tk, j->d, j->scale, q, j->q.rs, j->q.cs, k, j->k.rs, j->k.cs, 0.0f, sc, j->tk,
          work);
    const float *mk = NULL;
    if (j->mask.p) mk = j->mask.p + view_offset(&j->mask, j->nb, j->bdims, b) + r0 * j->mask.rs;
    attn_softmax(sc, m, j->tk, mk, j->mask.rs, j->mask.cs);
    sgemm(NULL, m, j->dv, j->tk, 1.0f, sc, j->tk, 1, v, j->v.rs, j->v.cs, 0.0f, y, j->y_rs, work);
}

/* One pool chunk: slots [s0, s1) of scratch, each owning an equal share of
 * the items, all run with the scratch of slot s0 (chunks are disjoint). */
static void attn_slots(void *arg, int64_t s0, int64_t s1)
{
    const attn_job *j = arg;
    float *sc = j->scratch + (size_t)s0 * j->slot_floats, *work = sc + j->work_off;
    int64_t i0 = s0 * j->items / j->slots, i1 = s1 * j->items / j->slots;
    for (int64_t it = i0; it < i1; it++) attn_item(j, it, sc, work);
}

static size_t round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static tern_status *op_attention(op_ctx *c)
{
    static const char *const names[4] = {"Q", "K", "V", "mask"};
    static const char *const perms[4] = {"q_perm", "k_perm", "v_perm", NULL};
    const tern_tensor *in[4] = {NULL, NULL, NULL, NULL};
    int r = 2;
    if (c->n_in < 3) return op_error(c, "needs inputs Q, K and V");
    for (int i = 0; i < 4 && i < c->n_in; i++) {
        if (i < 3) TERN_TRY(op_need_input(c, i));
        const tern_tensor *t = c->in[i];
        if (!t) continue;
        if (t->kind != TENSOR_DENSE || t->dtype != TERN_FLOAT)
            return op_error(c, "%s must be a float32 tensor", names[i]);
        if (i < 3 && t->rank < 2)
            return op_error(c, "%s must have rank >= 2, got %d", names[i], t->rank);
        in[i] = t;
        r = t->rank > r ? t->rank : r;
    }
    int64_t dims[4][TERN_MAX_RANK], st[4][TERN_MAX_RANK], out[TERN_MAX_RANK];
    for (int i = 0; i < 4; i++)
        if (in[i]) TERN_TRY(logical(c, in[i], perms[i], r, dims[i], st[i]));
    /* scores: batch of Q and K', rows of Q, columns of K'; then the mask */
    for (int d = 0; d < r; d++) out[d] = 1;
    for (int d = 0; d < r - 2; d++) {
        for (int i = 0; i < 4; i++)
            if (in[i]) TERN_TRY(bcast_dim(c, dims[i][d], &out[d], "batch"));
    }
    int64_t d_in = dims[0][r - 1], t = dims[0][r - 2], tk = dims[1][r - 1];
    if (dims[1][r - 2] != d_in)
        return op_error(c, "Q has %lld columns but K' %lld rows", (long long)d_in,
                        (long long)dims[1][r - 2]);
    if (in[3]) {
        TERN_TRY(bcast_dim(c, dims[3][r - 2], &t, "mask rows"));
        TERN_TRY(bcast_dim(c, dims[3][r - 1], &tk, "mask columns"));
    }
    if (dims[2][r - 2] != tk)
        return op_error(c, "the scores have %lld columns but V %lld rows", (long long)tk,
                        (long long)dims[2][r - 2]);
    out[r - 2] = t;
    out[r - 1] = dims[2][r - 1];

    /* the output, possibly transposed by out_perm */
    const int64_t *op = NULL;
    int nop = op_attr_ints(c, "out_perm", &op);
    int64_t ydims[TERN_MAX_RANK], yst[TERN_MAX_RANK], lst[TERN_MAX_RANK];
    if (nop >= 0) {
        bool seen[TERN_MAX_RANK] = {0};
        if (nop != r || op[r - 1] != r - 1)
            return op_error(c, "out_perm must have %d entries and keep the last axis last", r);
        for (int i = 0; i < r; i++) {
            if (op[i] < 0 || op[i] >= r || seen[op[i]])
                return op_error(c, "out_perm is not a permutation");
            seen[op[i]] = true;
        }
    }
    for (int i = 0; i < r; i++) ydims[i] = out[nop >= 0 ? op[i] : i];
    int64_t s = 1;
    for (int i = r - 1; i >= 0; i--) {
        yst[i] = s;
        s *= ydims[i];
        lst[nop >= 0 ? op[i] : i] = yst[i];
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_FLOAT, r, ydims, &y));
    if (y->numel == 0) return NULL;

    attn_job j = {.y = y->data, .y_rs = lst[r - 2], .nb = r - 2, .t = t, .tk = tk, .d = d_in};
    j.dv = out[r - 1];
    j.scale = op_attr_float(c, "scale", 1.0f);
    /* each operand against its own broadcast shape: Q [.., T, d], K' [.., d, T'],
     * V [.., T', dv], mask [.., T, T'] */
    int64_t shape[4][TERN_MAX_RANK], last2[4][2] = {{t, d_in}, {d_in, tk}, {tk, j.dv}, {t, tk}};
    attn_view *views[4] = {&j.q, &j.k, &j.v, &j.mask};
    for (int i = 0; i < 4; i++) {
        if (!in[i]) continue;
        memcpy(shape[i], out, sizeof shape[i]);
        shape[i][r - 2] = last2[i][0];
        shape[i][r - 1] = last2[i][1];
        make_view(views[i], in[i], r, dims[i], st[i], shape[i]);
    }
    int64_t nbatch = 1;
    for (int d = 0; d < r - 2; d++) {
        j.bdims[d] = out[d];
        j.y_bs[d] = lst[d];
        nbatch *= out[d];
    }

    /* items: score blocks that fit in cache, enough of them for the pool */
    int threads = tpool_threads(c->pool);
    int64_t rows = tk ? ATTN_BLOCK_FLOATS / tk : t;
    rows = rows < 1 ? 1 : rows > t ? t : rows;
    int64_t want = 4 * (int64_t)threads, blocks = (t + rows - 1) / rows;
    if (threads > 1 && nbatch * blocks < want) {
        int64_t per = (want + nbatch - 1) / nbatch; /* blocks per batch index */
        int64_t rr = (t + per - 1) / per;
        int64_t least = t < 4 * SGEMM_MR ? t : 4 * SGEMM_MR; /* keep the GEMMs efficient */
        rows = rr < least ? least : rr;
        blocks = (t + rows - 1) / rows;
    }
    j.rows = rows;
    j.blocks = blocks;
    j.items = nbatch * blocks;
    j.slots = threads == 1 ? 1 : j.items < want ? j.items : want;
    size_t w1 = sgemm_work_floats(rows, tk, d_in), w2 = sgemm_work_floats(rows, j.dv, tk);
    j.work_off = round16((size_t)(rows * tk));
    j.slot_floats = j.work_off + round16(w1 > w2 ? w1 : w2);
    TERN_TRY(op_scratch(c, (size_t)j.slots * j.slot_floats * sizeof(float), (void **)&j.scratch));
    tpool_for(c->pool, j.slots, 1, attn_slots, &j);
    return NULL;
}

const op_def ops_fused_attn[] = {
    {"com.tern", "Attention", 1, 1, op_attention},
    {0},
};

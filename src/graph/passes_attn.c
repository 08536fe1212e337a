/*
 * Attention fusion: the scaled dot-product attention block as torch
 * exporters write it (nn.MultiheadAttention, Hugging Face BERT),
 *
 *     S = MatMul(Q, K')              K' often a Transpose of K
 *     S = Div(S, c) | Mul(S, c)      a constant scalar, optional
 *     S = Add(S, mask)               either operand order, optional
 *     P = Softmax(S, last axis)
 *     O = MatMul(P, V)
 *
 * becomes one com.tern Attention(Q, K', V, mask) with `scale` (c, or 1/c for
 * Div) that never writes the [T x T'] scores to memory (ops/fused_attn.c).
 * Transposes feeding Q, K' and V, and one after O that keeps the last axis
 * in place (the head split and merge around attention), are absorbed as
 * q_perm / k_perm / v_perm / out_perm when nothing else reads their outputs:
 * the kernel reads through strides instead of copying.
 *
 * The rewrite is exact up to float rounding (scale is applied as the GEMM's
 * alpha): every intermediate value is read by the pattern alone and is not a
 * graph output (pass_single); Q, K', V and the mask are known float32 and
 * Q, K', V of known rank >= 2 (MatMul treats 1-D operands differently); the
 * softmax axis is the last one. Broadcasting between Q, K', V and the mask is
 * left to the kernel, which follows the same rules as the unfused ops.
 * It runs after the LayerNorm/GELU patterns and before bias fusion, in the
 * same backward sweep order (visiting the closing MatMul first).
 */
#include <math.h>
#include <string.h>

#include "graph/passes.h"

/* Rank of v: its type's, or else what its producer implies (a Transpose's
 * perm, a Reshape to a constant shape, an arithmetic op with a one-element
 * constant, as exporters put between the head split and the MatMul), or -1. */
static int rank_of(const pass_ctx *c, int v, int depth)
{
    const graph_type *t = pass_type(c, v);
    if (t && t->rank >= 0) return t->rank;
    int p = pass_producer(c, v);
    if (p < 0 || depth > 4) return -1;
    const graph_node *n = &c->g->nodes[p];
    const int64_t *perm;
    if (pass_is(n, "Transpose")) return pass_attr_ints(n, "perm", &perm);
    if (pass_is(n, "Reshape") && n->n_in == 2) {
        const tern_tensor *s = pass_const(c, n->in[1]);
        return s && s->rank == 1 && s->numel <= TERN_MAX_RANK ? (int)s->numel : -1;
    }
    if (n->n_in == 2 &&
        (pass_is(n, "Div") || pass_is(n, "Mul") || pass_is(n, "Add") || pass_is(n, "Sub"))) {
        for (int k = 0; k < 2; k++) {
            const tern_tensor *s = pass_const(c, n->in[k]);
            int r = s && s->numel == 1 ? rank_of(c, n->in[1 - k], depth + 1) : -1;
            if (r >= 0) return r > s->rank ? r : s->rank;
        }
    }
    return -1;
}

static int single_from(const pass_ctx *c, int v, const char *op_type)
{
    if (!pass_single(c, v)) return -1;
    int p = pass_producer(c, v);
    return p >= 0 && pass_is(&c->g->nodes[p], op_type) && c->g->nodes[p].n_out == 1 ? p : -1;
}

/* A finite, nonzero float32 scalar constant of rank <= 2 (it cannot change
 * the rank of scores of rank >= 2). */
static bool scalar_f32(const pass_ctx *c, int v, float *out)
{
    const tern_tensor *t = pass_const(c, v);
    if (!t || t->dtype != TERN_FLOAT || t->numel != 1 || t->rank > 2) return false;
    *out = *(const float *)t->data;
    return isfinite(*out) && *out != 0.0f;
}

typedef struct attn_match {
    int mm1, scale_node, add, softmax, mm2, out_tr; /* node indices, -1 if absent */
    int q, k, v, mask;                              /* value indices */
    int tr[3];                                      /* Transposes absorbed into q, k, v */
    float scale;
} attn_match;

/* v = [scale](MatMul(Q, K')), every step read only by the pattern. */
static bool scores(const pass_ctx *c, int v, attn_match *a)
{
    a->scale = 1.0f;
    a->scale_node = -1;
    int p = single_from(c, v, "Div"), mm;
    float s;
    if (p >= 0) {
        const graph_node *n = &c->g->nodes[p];
        if (n->n_in != 2 || !scalar_f32(c, n->in[1], &s)) return false;
        a->scale = 1.0f / s;
        a->scale_node = p;
        v = n->in[0];
    } else if ((p = single_from(c, v, "Mul")) >= 0) {
        const graph_node *n = &c->g->nodes[p];
        if (n->n_in != 2) return false;
        int k = scalar_f32(c, n->in[1], &s) ? 1 : scalar_f32(c, n->in[0], &s) ? 0 : -1;
        if (k < 0) return false;
        a->scale = s;
        a->scale_node = p;
        v = n->in[1 - k];
    }
    if ((mm = single_from(c, v, "MatMul")) < 0 || c->g->nodes[mm].n_in != 2) return false;
    a->mm1 = mm;
    a->q = c->g->nodes[mm].in[0];
    a->k = c->g->nodes[mm].in[1];
    return true;
}

/* If value *v is a Transpose's output read only here, with an explicit
 * valid perm over a float32 input: reads through it (*v becomes the
 * Transpose's input); returns the node, or -1. */
static int absorb_transpose(const pass_ctx *c, int *v)
{
    int p = single_from(c, *v, "Transpose");
    if (p < 0) return -1;
    const graph_node *n = &c->g->nodes[p];
    const int64_t *perm;
    int np = pass_attr_ints(n, "perm", &perm);
    if (n->n_in != 1 || np < 2 || np > TERN_MAX_RANK || !pass_is_f32(c, n->in[0])) return -1;
    int r = rank_of(c, n->in[0], 0);
    if (r >= 0 && r != np) return -1;
    bool seen[TERN_MAX_RANK] = {0};
    for (int i = 0; i < np; i++) {
        if (perm[i] < 0 || perm[i] >= np || seen[perm[i]]) return -1;
        seen[perm[i]] = true;
    }
    *v = n->in[0];
    return p;
}

/* The live node reading v (read once), or -1. */
static int reader(const pass_ctx *c, int v, int after)
{
    for (int i = after + 1; i < c->g->n_nodes; i++) {
        if (c->dead[i]) continue;
        const graph_node *n = &c->g->nodes[i];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] == v) return i;
    }
    return -1;
}

static tern_status *perm_attr(pass_ctx *c, const char *name, const graph_node *tr, op_attr *a)
{
    const int64_t *perm;
    int np = pass_attr_ints(tr, "perm", &perm);
    int64_t *p = arena_alloc(c->mem, (size_t)np * sizeof *p);
    if (!p) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    memcpy(p, perm, (size_t)np * sizeof *p);
    *a = (op_attr){.name = name, .type = ATTR_INTS, .n = np, .ints = p};
    return NULL;
}

/* Matches the pattern closing at MatMul node i into a. */
static bool match(const pass_ctx *c, int i, attn_match *a)
{
    const graph_node *mm2 = &c->g->nodes[i];
    *a = (attn_match){.mm2 = i, .add = -1, .out_tr = -1, .mask = -1, .tr = {-1, -1, -1}};
    if (mm2->n_in != 2 || mm2->n_out != 1 || mm2->out[0] < 0) return false;
    int sm = single_from(c, mm2->in[0], "Softmax");
    if (sm < 0 || c->g->nodes[sm].n_in != 1) return false;
    a->softmax = sm;
    a->v = mm2->in[1];
    int x = c->g->nodes[sm].in[0];
    if (!scores(c, x, a)) {
        int add = single_from(c, x, "Add");
        if (add < 0 || c->g->nodes[add].n_in != 2) return false;
        const graph_node *an = &c->g->nodes[add];
        int k = scores(c, an->in[0], a) ? 0 : scores(c, an->in[1], a) ? 1 : -1;
        if (k < 0 || !pass_is_f32(c, an->in[1 - k])) return false;
        a->add = add;
        a->mask = an->in[1 - k];
    }
    int rq = rank_of(c, a->q, 0), rk = rank_of(c, a->k, 0), rv = rank_of(c, a->v, 0);
    if (rq < 2 || rk < 2 || rv < 2) return false;
    if (!pass_is_f32(c, a->q) || !pass_is_f32(c, a->k) || !pass_is_f32(c, a->v)) return false;
    /* the softmax axis must be the last one of the scores */
    const graph_node *smn = &c->g->nodes[sm];
    int64_t axis = pass_attr_int(smn, "axis", smn->opset < 13 ? 1 : -1);
    int rm = a->mask >= 0 ? rank_of(c, a->mask, 0) : 0;
    int rs = rq > rk ? rq : rk;
    rs = rm > rs ? rm : rs;
    if (axis != -1 && (rm < 0 || axis != rs - 1)) return false;
    /* the output Transpose, if it keeps the last axis; with the mask's rank
     * unknown the result's rank may exceed what is known, but then the
     * Transpose would refuse it and so does the kernel */
    int o = mm2->out[0], rank = rs > rv ? rs : rv, t = pass_single(c, o) ? reader(c, o, i) : -1;
    if (t >= 0 && pass_is(&c->g->nodes[t], "Transpose") && c->g->nodes[t].n_out == 1 &&
        c->g->nodes[t].out[0] >= 0) {
        const int64_t *perm;
        int np = pass_attr_ints(&c->g->nodes[t], "perm", &perm);
        bool ok =
            (rm >= 0 ? np == rank : np >= rank) && np <= TERN_MAX_RANK && perm[np - 1] == np - 1;
        bool seen[TERN_MAX_RANK] = {0};
        for (int d = 0; ok && d < np; d++) {
            ok = perm[d] >= 0 && perm[d] < np && !seen[perm[d]];
            if (ok) seen[perm[d]] = true;
        }
        if (ok) a->out_tr = t;
    }
    return true;
}

static tern_status *fuse(pass_ctx *c, attn_match *a)
{
    if (!op_lookup("com.tern", "Attention", 1)) return NULL;
    int vals[3] = {a->q, a->k, a->v};
    for (int k = 0; k < 3; k++) {
        /* the same Transpose output as two operands is read twice: kept */
        a->tr[k] = absorb_transpose(c, &vals[k]);
    }
    op_attr *at = arena_calloc(c->mem, 6 * sizeof *at);
    if (!at) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    int na = 0;
    at[na++] = (op_attr){.name = "scale", .type = ATTR_FLOAT, .f = a->scale};
    static const char *const pn[3] = {"q_perm", "k_perm", "v_perm"};
    for (int k = 0; k < 3; k++)
        if (a->tr[k] >= 0) TERN_TRY(perm_attr(c, pn[k], &c->g->nodes[a->tr[k]], &at[na++]));
    if (a->out_tr >= 0) TERN_TRY(perm_attr(c, "out_perm", &c->g->nodes[a->out_tr], &at[na++]));
    int in[4] = {vals[0], vals[1], vals[2], a->mask};
    int slot = a->out_tr >= 0 ? a->out_tr : a->mm2, out = c->g->nodes[slot].out[0];
    const char *name = c->g->nodes[a->softmax].op.name;
    int kill[8] = {a->mm1, a->scale_node, a->add, a->softmax, a->mm2, a->tr[0], a->tr[1], a->tr[2]};
    for (int k = 0; k < 8; k++)
        if (kill[k] >= 0 && kill[k] != slot) pass_kill(c, kill[k]);
    TERN_TRY(pass_rewrite(c, slot, name, "com.tern", "Attention", 1, a->mask >= 0 ? 4 : 3, in, at,
                          na, out));
    c->m->rewrites[GRAPH_PASS_ATTENTION]++;
    return NULL;
}

tern_status *pass_attention(pass_ctx *c)
{
    for (int i = c->g->n_nodes - 1; i >= 0; i--) {
        if (c->dead[i] || !pass_is(&c->g->nodes[i], "MatMul")) continue;
        attn_match a;
        if (match(c, i, &a)) TERN_TRY(fuse(c, &a));
    }
    return NULL;
}

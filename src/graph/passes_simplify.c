/*
 * The simplify sweep: one pass over the nodes in topological order that
 *
 *  - folds constants: a node of a cheap, deterministic op whose inputs are
 *    all constants is run once, through the engine's evaluator, and its
 *    outputs become initializers (Constant nodes and Shape/Size of a
 *    statically known shape need no kernel). Later nodes then see those
 *    constants, so whole chains (Shape -> Gather -> Concat -> Reshape's
 *    shape) fold in the same sweep;
 *  - removes nodes that compute their input: Identity, Dropout in inference,
 *    Reshape to the shape the tensor has, Transpose by the identity
 *    permutation, Cast to the type it has. Their output is aliased to their
 *    input and readers are rewired when the sweep reaches them (readers come
 *    later in the order, so one sweep suffices);
 *  - shortens chains: Transpose of a Transpose becomes one Transpose (or
 *    none), and a Reshape of a Reshape/Flatten/Squeeze/Unsqueeze reads the
 *    original tensor (a Reshape with a constant shape ignores its input's
 *    shape unless the shape holds 0, "copy this dim").
 *
 * A pinned value (graph output, captured by a subgraph) is never aliased
 * away, so the node that writes it stays. Folding is bounded: outputs bigger
 * than max(1 MiB, 8x the inputs) are left to run time, as are kernels that
 * fail (the run then reports the error as it would have).
 */
#include <stdlib.h>
#include <string.h>

#include "graph/passes.h"

/* Ops cheap and deterministic enough to run at load (ai.onnx). */
static const char foldable[] =
    " Abs Add And Cast CastLike Ceil Concat ConstantOfShape Div Equal Exp Expand Flatten Floor"
    " Gather GatherElements Greater GreaterOrEqual Identity Less LessOrEqual Log Max Min Mod Mul"
    " Neg Not Or Pow Range Reciprocal ReduceMax ReduceMin ReduceProd ReduceSum Reshape Shape Sign"
    " Size Slice Split Sqrt Squeeze Sub Tile Transpose Unsqueeze Where Xor ";

static bool is_foldable(const graph_node *n)
{
    return !*n->op.domain && pass_in_list(foldable, n->op.op_type);
}

static bool has_subgraph(const graph_node *n)
{
    for (int a = 0; a < n->op.n_attrs; a++)
        if (n->op.attrs[a].type == ATTR_GRAPH || n->op.attrs[a].type == ATTR_GRAPHS) return true;
    return false;
}

static bool plain_numeric(const tern_tensor *t)
{
    return t && t->kind == TENSOR_DENSE && t->dtype != TERN_STRING && t->dtype != TERN_COMPLEX64 &&
           t->dtype != TERN_COMPLEX128;
}

/* ---- folding ------------------------------------------------------------- */

static void folded(pass_ctx *c, int i)
{
    pass_kill(c, i);
    c->m->rewrites[GRAPH_PASS_FOLD]++;
}

/* Shape and Size of a value whose dims are all known. */
static tern_status *fold_static_shape(pass_ctx *c, int i, bool *done)
{
    const graph_node *n = &c->g->nodes[i];
    const graph_type *t = n->n_in > 0 && n->in[0] >= 0 ? pass_type(c, n->in[0]) : NULL;
    if (!t || t->rank < 0 || n->n_out < 1 || n->out[0] < 0) return NULL;
    int64_t st = 0, en = t->rank;
    if (pass_is(n, "Shape")) {
        st = pass_attr_int(n, "start", 0);
        en = pass_attr_int(n, "end", t->rank);
        if (st < 0) st += t->rank;
        if (en < 0) en += t->rank;
        st = st < 0 ? 0 : st > t->rank ? t->rank : st;
        en = en < 0 ? 0 : en > t->rank ? t->rank : en;
        if (en < st) en = st;
    }
    int64_t size = 1;
    for (int64_t d = st; d < en; d++) {
        if (t->dims[d] < 0) return NULL;
        size *= t->dims[d];
    }
    tern_tensor *r;
    if (pass_is(n, "Shape")) {
        int64_t len = en - st;
        TERN_TRY(pass_new_tensor(c, TERN_INT64, 1, &len, &r));
        for (int64_t d = st; d < en; d++) ((int64_t *)r->data)[d - st] = t->dims[d];
    } else {
        TERN_TRY(pass_new_tensor(c, TERN_INT64, 0, NULL, &r));
        *(int64_t *)r->data = size;
    }
    pass_make_const(c, n->out[0], r);
    folded(c, i);
    *done = true;
    return NULL;
}

/* An output that shares an input's bytes (Reshape, Squeeze...) keeps
 * pointing at them: they live in the model's store too. */
static const void *shared_data(const tern_tensor *o, const tern_tensor *const *in, int n_in)
{
    for (int k = 0; k < n_in; k++)
        if (in[k] && o->data == in[k]->data && o->dtype == in[k]->dtype && o->numel <= in[k]->numel)
            return in[k]->data;
    return NULL;
}

static tern_status *fold_node(pass_ctx *c, int i, bool *done)
{
    const graph_node *n = &c->g->nodes[i];
    *done = false;
    if (*n->op.domain || has_subgraph(n)) return NULL;
    if (pass_is(n, "Constant")) {
        const op_attr *a = pass_attr(n, "value");
        if (a && a->type == ATTR_TENSOR && plain_numeric(a->t) && n->n_out == 1 && n->out[0] >= 0) {
            pass_make_const(c, n->out[0], a->t);
            folded(c, i);
            *done = true;
            return NULL;
        }
    } else if (pass_is(n, "Shape") || pass_is(n, "Size")) {
        TERN_TRY(fold_static_shape(c, i, done));
        if (*done) return NULL;
    }
    if (!c->eval || (!pass_is(n, "Constant") && !is_foldable(n)) || n->n_in > 16 || n->n_out > 16)
        return NULL;
    const tern_tensor *ins[16];
    size_t in_bytes = 0;
    for (int k = 0; k < n->n_in; k++) {
        ins[k] = n->in[k] >= 0 ? pass_const(c, n->in[k]) : NULL;
        if (n->in[k] >= 0 && !plain_numeric(ins[k])) return NULL;
        if (ins[k]) in_bytes += tensor_nbytes(ins[k]);
    }
    const tern_tensor *outs[16] = {0};
    tern_status *st = c->eval->eval(c->eval, n, ins, outs);
    if (st) { /* left to run time, which reports it */
        tern_status_free(st);
        return NULL;
    }
    size_t out_bytes = 0, limit = in_bytes * 8 > (1u << 20) ? in_bytes * 8 : (1u << 20);
    for (int k = 0; k < n->n_out; k++) {
        if (n->out[k] < 0) continue;
        if (!plain_numeric(outs[k])) return NULL;
        out_bytes += tensor_nbytes(outs[k]);
    }
    if (out_bytes > limit) return NULL;
    for (int k = 0; k < n->n_out; k++) {
        if (n->out[k] < 0) continue;
        const tern_tensor *o = outs[k];
        tern_tensor *t = arena_calloc(c->mem, sizeof *t);
        if (!t) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        *t = *o;
        t->owns = false;
        const void *shared = shared_data(o, ins, n->n_in);
        if (shared) {
            t->data = (void *)shared;
        } else {
            size_t nb = tensor_nbytes(o);
            t->data = arena_alloc(c->mem, nb ? nb : 1);
            if (!t->data) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
            if (nb) memcpy(t->data, o->data, nb);
        }
        pass_make_const(c, n->out[k], t);
    }
    folded(c, i);
    *done = true;
    return NULL;
}

/* ---- removal of nodes that compute their input ----------------------------- */

/* Node i's output `out` now stands for value `to`; false if out is pinned. */
static bool bypass(pass_ctx *c, int i, int out, int to)
{
    if (out < 0 || to < 0 || c->pinned[out]) return false;
    c->alias[out] = to;
    pass_kill(c, i);
    c->m->rewrites[GRAPH_PASS_IDENTITY]++;
    return true;
}

static bool only_first_output_used(const pass_ctx *c, const graph_node *n)
{
    for (int k = 1; k < n->n_out; k++)
        if (n->out[k] >= 0 && (c->uses[n->out[k]] > 0 || c->pinned[n->out[k]])) return false;
    return n->n_out >= 1;
}

static bool dropout_is_identity(const pass_ctx *c, const graph_node *n)
{
    if (!only_first_output_used(c, n) || n->n_in < 1 || n->in[0] < 0) return false;
    const graph_type *t = pass_type(c, n->in[0]);
    if (!t || !dtype_is_float((tern_dtype)t->elem)) return false; /* else the kernel refuses */
    double ratio = pass_attr_float(n, "ratio", 0.5f), train = 0;
    if (n->opset >= 12) {
        if (n->n_in > 1 && n->in[1] >= 0 && !pass_const_scalar(c, n->in[1], &ratio)) return false;
        if (n->n_in > 2 && n->in[2] >= 0 && !pass_const_scalar(c, n->in[2], &train)) return false;
    }
    return ratio >= 0 && ratio < 1 && (train == 0 || ratio == 0);
}

static bool reshape_is_identity(const pass_ctx *c, const graph_node *n)
{
    if (n->n_in < 2 || n->in[0] < 0) return false;
    const tern_tensor *s = pass_const(c, n->in[1]);
    const graph_type *t = pass_type(c, n->in[0]);
    if (!s || s->dtype != TERN_INT64 || s->rank != 1 || !t || t->rank != s->numel) return false;
    bool allowzero = pass_attr_int(n, "allowzero", 0) != 0;
    int minus1 = 0;
    for (int d = 0; d < t->rank; d++) {
        int64_t want = ((const int64_t *)s->data)[d];
        if (want == 0 && !allowzero) continue;
        if (want == -1) {
            minus1++;
            continue;
        }
        if (t->dims[d] < 0 || want != t->dims[d]) return false;
    }
    return minus1 <= 1;
}

/* Transpose's permutation into p (explicit, or the reversal for a known
 * rank); its length, or -1. */
static int transpose_perm(const pass_ctx *c, const graph_node *n, int64_t *p)
{
    const int64_t *v;
    int np = pass_attr_ints(n, "perm", &v);
    if (np > TERN_MAX_RANK) return -1;
    if (np >= 0) {
        bool seen[TERN_MAX_RANK] = {0};
        for (int i = 0; i < np; i++) {
            if (v[i] < 0 || v[i] >= np || seen[v[i]]) return -1;
            seen[v[i]] = true;
            p[i] = v[i];
        }
        return np;
    }
    const graph_type *t = pass_type(c, pass_in(n, 0));
    if (!t || t->rank < 0) return -1;
    for (int i = 0; i < t->rank; i++) p[i] = t->rank - 1 - i;
    return t->rank;
}

static bool is_identity_perm(const int64_t *p, int n)
{
    for (int i = 0; i < n; i++)
        if (p[i] != i) return false;
    return true;
}

/* Transpose(Transpose(x, p1), p2) = Transpose(x, p1[p2[i]]). */
static tern_status *simplify_transpose(pass_ctx *c, int i)
{
    graph_node *n = &c->g->nodes[i];
    int64_t p2[TERN_MAX_RANK], p1[TERN_MAX_RANK], q[TERN_MAX_RANK];
    int r = transpose_perm(c, n, p2);
    if (r < 0) return NULL;
    if (is_identity_perm(p2, r)) {
        bypass(c, i, n->out[0], n->in[0]);
        return NULL;
    }
    int p = pass_producer(c, n->in[0]);
    if (p < 0 || !pass_is(&c->g->nodes[p], "Transpose")) return NULL;
    if (transpose_perm(c, &c->g->nodes[p], p1) != r) return NULL;
    for (int k = 0; k < r; k++) q[k] = p1[p2[k]];
    if (pass_in(&c->g->nodes[p], 0) < 0) return NULL;
    pass_set_input(c, i, 0, c->g->nodes[p].in[0]);
    c->m->rewrites[GRAPH_PASS_TRANSPOSE]++;
    if (is_identity_perm(q, r) && bypass(c, i, n->out[0], n->in[0])) return NULL;
    static const char *const drop[] = {"perm", NULL};
    op_attr *a;
    int na;
    TERN_TRY(pass_attrs_copy(c, n, 1, drop, &a, &na));
    int64_t *perm = arena_alloc(c->mem, (size_t)r * sizeof *perm);
    if (!perm) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    memcpy(perm, q, (size_t)r * sizeof *perm);
    a[na++] = (op_attr){.name = "perm", .type = ATTR_INTS, .n = r, .ints = perm};
    n->op.attrs = a;
    n->op.n_attrs = na;
    return NULL;
}

/* A Reshape to a constant shape without "copy" zeros reads through the
 * view ops before it. */
static void simplify_reshape_chain(pass_ctx *c, int i)
{
    graph_node *n = &c->g->nodes[i];
    const tern_tensor *s = n->n_in > 1 ? pass_const(c, n->in[1]) : NULL;
    if (!s || s->dtype != TERN_INT64 || s->rank != 1 || n->in[0] < 0) return;
    if (!pass_attr_int(n, "allowzero", 0))
        for (int64_t d = 0; d < s->numel; d++)
            if (((const int64_t *)s->data)[d] == 0) return;
    for (;;) {
        int p = pass_producer(c, n->in[0]);
        if (p < 0) return;
        const graph_node *pn = &c->g->nodes[p];
        if (!pass_is(pn, "Reshape") && !pass_is(pn, "Flatten") && !pass_is(pn, "Squeeze") &&
            !pass_is(pn, "Unsqueeze"))
            return;
        if (pn->n_in < 1 || pn->in[0] < 0) return;
        pass_set_input(c, i, 0, pn->in[0]);
        c->m->rewrites[GRAPH_PASS_RESHAPE]++;
    }
}

static tern_status *simplify_node(pass_ctx *c, int i)
{
    graph_node *n = &c->g->nodes[i];
    if (*n->op.domain || n->n_in < 1 || n->in[0] < 0 || n->n_out < 1) return NULL;
    if (pass_is(n, "Identity")) {
        bypass(c, i, n->out[0], n->in[0]);
    } else if (pass_is(n, "Dropout")) {
        if (dropout_is_identity(c, n)) bypass(c, i, n->out[0], n->in[0]);
    } else if (pass_is(n, "Cast")) {
        const graph_type *t = pass_type(c, n->in[0]);
        if (t && t->elem && t->elem == pass_attr_int(n, "to", -1))
            bypass(c, i, n->out[0], n->in[0]);
    } else if (pass_is(n, "Transpose")) {
        TERN_TRY(simplify_transpose(c, i));
    } else if (pass_is(n, "Reshape")) {
        simplify_reshape_chain(c, i);
        if (reshape_is_identity(c, n)) bypass(c, i, n->out[0], n->in[0]);
    }
    return NULL;
}

tern_status *pass_simplify(pass_ctx *c)
{
    graph *g = c->g;
    for (int i = 0; i < g->n_nodes; i++) {
        if (c->dead[i]) continue;
        graph_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v < 0 || c->alias[v] < 0) continue;
            while (c->alias[v] >= 0) v = c->alias[v];
            pass_set_input(c, i, k, v);
        }
        bool done;
        TERN_TRY(fold_node(c, i, &done));
        if (!done) TERN_TRY(simplify_node(c, i));
    }
    return NULL;
}

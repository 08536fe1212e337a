/*
 * Static shape inference with symbolic dimensions.
 *
 * Runs once at load, over nodes in topological order, and fills in the type
 * (dtype, rank, dims) of every value the model does not declare. A dim is a
 * number, or -1 with a name (the dim_param, e.g. "batch") that flows through
 * the ops: a MatMul of [N,784] by [784,512] is [N,512]. Where a rule cannot
 * tell (data-dependent shapes, unknown inputs), the dim or the whole shape
 * stays unknown; inference never fails a model, since the executor checks
 * real shapes at run time. Declared types are kept as they are.
 */
#include <string.h>

#include "graph/graph.h"

typedef struct sym {
    int64_t v;        /* >= 0 known */
    const char *name; /* for v < 0: symbolic name, "" if anonymous */
} sym;

static sym dim_of(const graph_type *t, int i)
{
    return (sym){t->dims[i], t->dim_names[i] ? t->dim_names[i] : ""};
}
static void set_dim(graph_type *t, int i, sym d)
{
    t->dims[i] = d.v;
    t->dim_names[i] = d.v >= 0 ? "" : d.name;
}
static sym unknown(void)
{
    return (sym){-1, ""};
}
static sym known(int64_t v)
{
    return (sym){v, ""};
}

static bool same_dim(sym a, sym b)
{
    if (a.v >= 0 || b.v >= 0) return a.v == b.v;
    return *a.name && strcmp(a.name, b.name) == 0;
}

static const graph_type *in_type(const graph *g, const graph_node *n, int k)
{
    if (k >= n->n_in || n->in[k] < 0) return NULL;
    const graph_type *t = &g->values[n->in[k]].type;
    return t->kind == TENSOR_DENSE ? t : NULL;
}

static const tern_tensor *in_const(const graph *g, const graph_node *n, int k)
{
    return k < n->n_in && n->in[k] >= 0 ? g->values[n->in[k]].init : NULL;
}

static const op_attr *attr(const graph_node *n, const char *name)
{
    for (int i = 0; i < n->op.n_attrs; i++)
        if (strcmp(n->op.attrs[i].name, name) == 0) return &n->op.attrs[i];
    return NULL;
}

static int64_t attr_i(const graph_node *n, const char *name, int64_t d)
{
    const op_attr *a = attr(n, name);
    return a && a->type == ATTR_INT ? a->i : d;
}

/* Integer list from an INTS attribute or, from newer opsets, a constant input. */
static int int_list(const graph *g, const graph_node *n, const char *name, int input, int64_t *v,
                    int cap)
{
    const op_attr *a = attr(n, name);
    if (a && a->type == ATTR_INTS && a->n <= cap) {
        memcpy(v, a->ints, (size_t)a->n * sizeof *v);
        return a->n;
    }
    const tern_tensor *t = input >= 0 ? in_const(g, n, input) : NULL;
    if (!t || t->kind != TENSOR_DENSE || t->numel > cap ||
        !(t->dtype == TERN_INT64 || t->dtype == TERN_INT32))
        return -1;
    for (int64_t i = 0; i < t->numel; i++) v[i] = dtype_get_i64(t->dtype, t->data, i);
    return (int)t->numel;
}

static void tensor_type(graph_type *o, int elem, int rank)
{
    memset(o, 0, sizeof *o);
    o->kind = TENSOR_DENSE;
    o->elem = elem;
    o->rank = rank;
    for (int i = 0; i < rank && i < TERN_MAX_RANK; i++) {
        o->dims[i] = -1;
        o->dim_names[i] = "";
    }
}

static bool broadcast(const graph_type *const *ts, int n, graph_type *o, int elem)
{
    int r = 0;
    for (int k = 0; k < n; k++) {
        if (!ts[k] || ts[k]->rank < 0) return false;
        if (ts[k]->rank > r) r = ts[k]->rank;
    }
    tensor_type(o, elem, r);
    for (int i = 0; i < r; i++) {
        sym d = known(1);
        bool any_unknown = false;
        for (int k = 0; k < n; k++) {
            int j = i - (r - ts[k]->rank);
            if (j < 0) continue;
            sym e = dim_of(ts[k], j);
            if (e.v == 1) continue;
            if (d.v == 1)
                d = e;
            else if (!same_dim(d, e)) {
                if (e.v >= 0 && d.v < 0)
                    d = e; /* a known size wins over a symbol */
                else if (e.v < 0 && d.v >= 0) {
                } else
                    any_unknown = true;
            }
        }
        set_dim(o, i, any_unknown ? unknown() : d);
    }
    return true;
}

static int norm_axis(int64_t a, int rank)
{
    return (int)(a < 0 ? a + rank : a);
}

/* Output spatial size of a convolution or pooling window. */
static sym window_out(sym in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe,
                      const char *pad, bool ceil_mode)
{
    if (in.v < 0 || s <= 0) return unknown();
    if (!strcmp(pad, "SAME_UPPER") || !strcmp(pad, "SAME_LOWER")) return known((in.v + s - 1) / s);
    int64_t ek = (k - 1) * d + 1;
    if (!strcmp(pad, "VALID")) pb = pe = 0;
    int64_t span = in.v + pb + pe - ek;
    if (span < 0) return unknown();
    return known((ceil_mode ? (span + s - 1) / s : span / s) + 1);
}

static bool infer_window(const graph *g, const graph_node *n, graph_type *o, bool is_conv)
{
    const graph_type *x = in_type(g, n, 0);
    if (!x || x->rank < 3) return false;
    int sp = x->rank - 2;
    int64_t k[TERN_MAX_RANK], s[TERN_MAX_RANK], d[TERN_MAX_RANK], p[2 * TERN_MAX_RANK];
    int nk = int_list(g, n, "kernel_shape", -1, k, TERN_MAX_RANK);
    const graph_type *w = is_conv ? in_type(g, n, 1) : NULL;
    if (nk != sp) {
        if (!w || w->rank != x->rank) return false;
        for (int i = 0; i < sp; i++) {
            if (w->dims[i + 2] < 0) return false;
            k[i] = w->dims[i + 2];
        }
    }
    if (int_list(g, n, "strides", -1, s, TERN_MAX_RANK) != sp)
        for (int i = 0; i < sp; i++) s[i] = 1;
    if (int_list(g, n, "dilations", -1, d, TERN_MAX_RANK) != sp)
        for (int i = 0; i < sp; i++) d[i] = 1;
    if (int_list(g, n, "pads", -1, p, 2 * TERN_MAX_RANK) != 2 * sp)
        for (int i = 0; i < 2 * sp; i++) p[i] = 0;
    const op_attr *ap = attr(n, "auto_pad");
    const char *pad = ap && ap->type == ATTR_STRING ? ap->s : "NOTSET";
    bool ceil_mode = attr_i(n, "ceil_mode", 0) != 0;
    tensor_type(o, x->elem, x->rank);
    set_dim(o, 0, dim_of(x, 0));
    if (is_conv)
        set_dim(o, 1, w && w->rank > 0 ? dim_of(w, 0) : unknown());
    else
        set_dim(o, 1, dim_of(x, 1));
    for (int i = 0; i < sp; i++)
        set_dim(o, i + 2,
                window_out(dim_of(x, i + 2), k[i], s[i], d[i], p[i], p[i + sp], pad, ceil_mode));
    return true;
}

static bool infer_reshape(const graph *g, const graph_node *n, graph_type *o)
{
    const graph_type *x = in_type(g, n, 0);
    int64_t s[TERN_MAX_RANK];
    int r = int_list(g, n, "shape", 1, s, TERN_MAX_RANK);
    if (!x || r < 0) return false;
    tensor_type(o, x->elem, r);
    int infer_at = -1;
    for (int i = 0; i < r; i++) {
        if (s[i] == 0 && !attr_i(n, "allowzero", 0) && x->rank > i)
            set_dim(o, i, dim_of(x, i));
        else if (s[i] == -1)
            infer_at = i;
        else
            set_dim(o, i, known(s[i]));
    }
    if (infer_at >= 0 && x->rank >= 0) {
        /* known when every dim of x is known, or when x's unknown dims are
         * carried over unchanged (the usual [N, -1] flatten) */
        int64_t num = 1, den = 1;
        bool ok = true;
        for (int i = 0; i < x->rank && ok; i++) {
            sym d = dim_of(x, i);
            bool carried = false;
            for (int j = 0; j < r; j++)
                if (j != infer_at && o->dims[j] < 0 && same_dim(dim_of(o, j), d)) carried = true;
            if (d.v >= 0)
                num *= d.v;
            else if (!carried)
                ok = false;
        }
        for (int j = 0; j < r && ok; j++)
            if (j != infer_at) {
                if (o->dims[j] >= 0) den *= o->dims[j];
            }
        if (ok && den > 0 && num % den == 0) set_dim(o, infer_at, known(num / den));
    }
    return true;
}

static bool infer_node(const graph *g, const graph_node *n, graph_type *o)
{
    const char *op = n->op.op_type;
    const graph_type *x = in_type(g, n, 0);
    if (*n->op.domain) return false;
    static const char *same[] = {"Abs",
                                 "Neg",
                                 "Exp",
                                 "Log",
                                 "Sqrt",
                                 "Reciprocal",
                                 "Floor",
                                 "Ceil",
                                 "Round",
                                 "Sign",
                                 "Sin",
                                 "Cos",
                                 "Tan",
                                 "Asin",
                                 "Acos",
                                 "Atan",
                                 "Sinh",
                                 "Cosh",
                                 "Asinh",
                                 "Acosh",
                                 "Atanh",
                                 "Erf",
                                 "Relu",
                                 "Sigmoid",
                                 "Tanh",
                                 "Elu",
                                 "Selu",
                                 "LeakyRelu",
                                 "HardSigmoid",
                                 "HardSwish",
                                 "Softplus",
                                 "Softsign",
                                 "Celu",
                                 "ThresholdedRelu",
                                 "Mish",
                                 "Shrink",
                                 "Not",
                                 "Clip",
                                 "Softmax",
                                 "LogSoftmax",
                                 "Hardmax",
                                 "Dropout",
                                 "Identity",
                                 "LRN",
                                 "BatchNormalization",
                                 "InstanceNormalization",
                                 "LayerNormalization",
                                 "LpNormalization",
                                 "MeanVarianceNormalization",
                                 "CumSum",
                                 "BitwiseNot",
                                 "Gelu",
                                 NULL};
    for (int i = 0; same[i]; i++)
        if (!strcmp(op, same[i])) {
            if (!x) return false;
            *o = *x;
            o->optional = false;
            return true;
        }
    static const char *bcast[] = {
        "Add", "Sub", "Mul",   "Div",      "Pow",        "Mod",       "Sum",        "Mean",
        "Max", "Min", "PRelu", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", NULL};
    static const char *logic[] = {
        "And", "Or", "Xor", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", NULL};
    const graph_type *ts[8];
    int nt = n->n_in < 8 ? n->n_in : 8;
    for (int k = 0; k < nt; k++) ts[k] = in_type(g, n, k);
    for (int i = 0; bcast[i]; i++)
        if (!strcmp(op, bcast[i])) return x && broadcast(ts, nt, o, x->elem);
    for (int i = 0; logic[i]; i++)
        if (!strcmp(op, logic[i])) return broadcast(ts, nt, o, TERN_BOOL);
    if (!strcmp(op, "Where")) return nt == 3 && ts[1] && broadcast(ts, 3, o, ts[1]->elem);
    if (!strcmp(op, "IsNaN") || !strcmp(op, "IsInf")) {
        if (!x) return false;
        *o = *x;
        o->elem = TERN_BOOL;
        return true;
    }
    if (!strcmp(op, "Cast") || !strcmp(op, "CastLike")) {
        if (!x) return false;
        *o = *x;
        if (!strcmp(op, "Cast"))
            o->elem = (int)attr_i(n, "to", 0);
        else
            o->elem = ts[1] ? ts[1]->elem : 0;
        return true;
    }
    if (!strcmp(op, "MatMul")) {
        const graph_type *a = ts[0], *b = nt > 1 ? ts[1] : NULL;
        if (!a || !b || a->rank < 1 || b->rank < 1) return false;
        graph_type ab = *a, bb = *b; /* batch parts */
        ab.rank = a->rank >= 2 ? a->rank - 2 : 0;
        bb.rank = b->rank >= 2 ? b->rank - 2 : 0;
        const graph_type *bt[2] = {&ab, &bb};
        graph_type batch;
        broadcast(bt, 2, &batch, a->elem);
        int r = batch.rank + (a->rank >= 2) + (b->rank >= 2);
        tensor_type(o, a->elem, r);
        for (int i = 0; i < batch.rank; i++) set_dim(o, i, dim_of(&batch, i));
        int k = batch.rank;
        if (a->rank >= 2) set_dim(o, k++, dim_of(a, a->rank - 2));
        if (b->rank >= 2) set_dim(o, k++, dim_of(b, b->rank - 1));
        return true;
    }
    if (!strcmp(op, "Gemm")) {
        const graph_type *a = ts[0], *b = nt > 1 ? ts[1] : NULL;
        if (!a || !b || a->rank != 2 || b->rank != 2) return false;
        tensor_type(o, a->elem, 2);
        set_dim(o, 0, dim_of(a, attr_i(n, "transA", 0) ? 1 : 0));
        set_dim(o, 1, dim_of(b, attr_i(n, "transB", 0) ? 0 : 1));
        return true;
    }
    if (!strcmp(op, "Conv")) return infer_window(g, n, o, true);
    if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool") || !strcmp(op, "LpPool"))
        return infer_window(g, n, o, false);
    if (!strcmp(op, "GlobalAveragePool") || !strcmp(op, "GlobalMaxPool") ||
        !strcmp(op, "GlobalLpPool")) {
        if (!x || x->rank < 2) return false;
        *o = *x;
        for (int i = 2; i < x->rank; i++) set_dim(o, i, known(1));
        return true;
    }
    if (!strcmp(op, "Flatten")) {
        if (!x || x->rank < 0) return false;
        int ax = norm_axis(attr_i(n, "axis", 1), x->rank);
        if (ax < 0 || ax > x->rank) return false;
        tensor_type(o, x->elem, 2);
        for (int side = 0; side < 2; side++) {
            int lo = side ? ax : 0, hi = side ? x->rank : ax;
            int64_t p = 1;
            sym only = known(1);
            int n_unknown = 0;
            for (int i = lo; i < hi; i++) {
                if (x->dims[i] >= 0)
                    p *= x->dims[i];
                else {
                    n_unknown++;
                    only = dim_of(x, i);
                }
            }
            set_dim(o, side,
                    n_unknown == 0               ? known(p)
                    : (n_unknown == 1 && p == 1) ? only
                                                 : unknown());
        }
        return true;
    }
    if (!strcmp(op, "Reshape")) return infer_reshape(g, n, o);
    if (!strcmp(op, "Transpose")) {
        if (!x || x->rank < 0) return false;
        int64_t perm[TERN_MAX_RANK];
        int np = int_list(g, n, "perm", -1, perm, TERN_MAX_RANK);
        tensor_type(o, x->elem, x->rank);
        for (int i = 0; i < x->rank; i++) {
            int64_t src = np == x->rank ? perm[i] : x->rank - 1 - i;
            if (src < 0 || src >= x->rank) return false;
            set_dim(o, i, dim_of(x, (int)src));
        }
        return true;
    }
    if (!strcmp(op, "Shape")) {
        if (!x || x->rank < 0) return false;
        int64_t st = attr_i(n, "start", 0), en = attr_i(n, "end", x->rank);
        if (st < 0) st += x->rank;
        if (en < 0) en += x->rank;
        st = st < 0 ? 0 : st > x->rank ? x->rank : st;
        en = en < 0 ? 0 : en > x->rank ? x->rank : en;
        tensor_type(o, TERN_INT64, 1);
        set_dim(o, 0, known(en > st ? en - st : 0));
        return true;
    }
    if (!strcmp(op, "Size")) {
        tensor_type(o, TERN_INT64, 0);
        return true;
    }
    if (!strcmp(op, "Concat")) {
        if (!x || x->rank < 1) return false;
        int ax = norm_axis(attr_i(n, "axis", 0), x->rank);
        if (ax < 0 || ax >= x->rank) return false;
        *o = *x;
        int64_t total = 0;
        for (int k = 0; k < nt; k++) {
            if (!ts[k] || ts[k]->rank != x->rank || ts[k]->dims[ax] < 0) {
                total = -1;
                break;
            }
            total += ts[k]->dims[ax];
        }
        set_dim(o, ax, total >= 0 ? known(total) : unknown());
        return true;
    }
    if (!strcmp(op, "Unsqueeze") || !strcmp(op, "Squeeze")) {
        if (!x || x->rank < 0) return false;
        int64_t axes[TERN_MAX_RANK];
        int na = int_list(g, n, "axes", 1, axes, TERN_MAX_RANK);
        bool unsq = !strcmp(op, "Unsqueeze");
        if (na < 0 && unsq) return false;
        int r = unsq ? x->rank + na : x->rank;
        if (r > TERN_MAX_RANK) return false;
        bool mark[TERN_MAX_RANK] = {false};
        for (int i = 0; i < na; i++) {
            int a = norm_axis(axes[i], r);
            if (a < 0 || a >= r) return false;
            mark[a] = true;
        }
        if (!unsq && na < 0) { /* squeeze every known 1 */
            for (int i = 0; i < x->rank; i++) {
                if (x->dims[i] < 0) return false;
                mark[i] = x->dims[i] == 1;
            }
        }
        graph_type t;
        tensor_type(&t, x->elem, 0);
        int j = 0;
        for (int i = 0; i < (unsq ? r : x->rank); i++) {
            if (unsq)
                set_dim(&t, t.rank++, mark[i] ? known(1) : dim_of(x, j++));
            else if (!mark[i])
                set_dim(&t, t.rank++, dim_of(x, i));
        }
        *o = t;
        return true;
    }
    if (!strcmp(op, "Gather")) {
        const graph_type *idx = nt > 1 ? ts[1] : NULL;
        if (!x || !idx || x->rank < 1 || idx->rank < 0 || x->rank + idx->rank - 1 > TERN_MAX_RANK)
            return false;
        int ax = norm_axis(attr_i(n, "axis", 0), x->rank);
        if (ax < 0 || ax >= x->rank) return false;
        tensor_type(o, x->elem, 0);
        for (int i = 0; i < ax; i++) set_dim(o, o->rank++, dim_of(x, i));
        for (int i = 0; i < idx->rank; i++) set_dim(o, o->rank++, dim_of(idx, i));
        for (int i = ax + 1; i < x->rank; i++) set_dim(o, o->rank++, dim_of(x, i));
        return true;
    }
    if (!strncmp(op, "Reduce", 6) || !strcmp(op, "ArgMax") || !strcmp(op, "ArgMin")) {
        if (!x || x->rank < 0) return false;
        bool arg = !strncmp(op, "Arg", 3);
        int64_t axes[TERN_MAX_RANK];
        int na;
        if (arg) {
            axes[0] = attr_i(n, "axis", 0);
            na = 1;
        } else {
            na = int_list(g, n, "axes", 1, axes, TERN_MAX_RANK);
            if (na < 0 && n->n_in > 1 && n->in[1] >= 0)
                return false; /* axes computed at run time */
        }
        bool keep = attr_i(n, "keepdims", 1) != 0, mark[TERN_MAX_RANK] = {false};
        if (na <= 0) {
            if (na == 0 && attr_i(n, "noop_with_empty_axes", 0)) {
                *o = *x;
                return true;
            }
            for (int i = 0; i < x->rank; i++) mark[i] = true;
        }
        for (int i = 0; i < na; i++) {
            int a = norm_axis(axes[i], x->rank);
            if (a < 0 || a >= x->rank) return false;
            mark[a] = true;
        }
        tensor_type(o, arg ? TERN_INT64 : x->elem, 0);
        for (int i = 0; i < x->rank; i++)
            if (!mark[i])
                set_dim(o, o->rank++, dim_of(x, i));
            else if (keep)
                set_dim(o, o->rank++, known(1));
        return true;
    }
    if (!strcmp(op, "Constant")) {
        const op_attr *a = attr(n, "value");
        if (!a || a->type != ATTR_TENSOR || !a->t) return false;
        tensor_type(o, a->t->dtype, a->t->rank);
        for (int i = 0; i < a->t->rank; i++) set_dim(o, i, known(a->t->dims[i]));
        return true;
    }
    return false;
}

void graph_infer_shapes(graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *n = &g->nodes[i];
        if (n->n_out < 1 || n->out[0] < 0) continue;
        graph_value *v = &g->values[n->out[0]];
        if (v->type.kind >= 0 && v->type.rank >= 0 && v->type.elem) continue;
        graph_type t;
        if (!infer_node(g, n, &t)) continue;
        /* keep what the model declared, fill in what it did not */
        if (v->type.kind < 0 || v->type.rank < 0) {
            int elem = v->type.elem;
            v->type = t;
            if (elem) v->type.elem = elem;
        } else if (!v->type.elem) {
            v->type.elem = t.elem;
        }
    }
}

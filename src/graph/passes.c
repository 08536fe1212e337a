/*
 * The pass driver and the helpers every pass shares (see passes.h).
 *
 * Order matters and is fixed:
 *   1. simplify (one forward sweep): constant folding, Identity/Dropout and
 *      no-op removal, Transpose and Reshape chains; then dead nodes go;
 *   2. patterns (one backward sweep): Conv+BatchNormalization, LayerNorm and
 *      GELU as exporters decompose them; they must come first because GELU
 *      becomes an activation that step 3 fuses into MatMul;
 *   3. attention (one backward sweep, passes_attn.c): MatMul, scale, mask,
 *      Softmax, MatMul -> com.tern Attention, before step 4 can take a
 *      MatMul + constant mask for a bias;
 *   4. fuse (one backward sweep): bias and activation into Conv, Gemm and
 *      MatMul, MatMul+bias into Gemm;
 *   5. dead nodes again, compaction, and an order check.
 * Backward sweeps visit the last node of a pattern first, so the longest
 * pattern ending there wins (Conv+Add+Relu before Conv+Add).
 */
#include "graph/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- node and value helpers ------------------------------------------------ */

bool pass_in_list(const char *list, const char *op)
{
    size_t len = strlen(op);
    for (const char *p = strstr(list, op); p; p = strstr(p + 1, op))
        if (p > list && p[-1] == ' ' && p[len] == ' ') return true;
    return false;
}

bool pass_is(const graph_node *n, const char *op_type)
{
    return !*n->op.domain && strcmp(n->op.op_type, op_type) == 0;
}

const op_attr *pass_attr(const graph_node *n, const char *name)
{
    return op_node_attr(&n->op, name);
}

int64_t pass_attr_int(const graph_node *n, const char *name, int64_t dflt)
{
    const op_attr *a = pass_attr(n, name);
    return a && a->type == ATTR_INT ? a->i : dflt;
}

float pass_attr_float(const graph_node *n, const char *name, float dflt)
{
    const op_attr *a = pass_attr(n, name);
    return a && a->type == ATTR_FLOAT ? a->f : dflt;
}

int pass_attr_ints(const graph_node *n, const char *name, const int64_t **v)
{
    const op_attr *a = pass_attr(n, name);
    if (!a || a->type != ATTR_INTS) return -1;
    *v = a->ints;
    return a->n;
}

const tern_tensor *pass_const(const pass_ctx *c, int v)
{
    if (v < 0) return NULL;
    const graph_value *gv = &c->g->values[v];
    return gv->init && !gv->is_input && gv->init->kind == TENSOR_DENSE ? gv->init : NULL;
}

bool pass_single(const pass_ctx *c, int v)
{
    return v >= 0 && c->uses[v] == 1 && !c->pinned[v] && !c->g->values[v].is_input;
}

int pass_producer(const pass_ctx *c, int v)
{
    if (v < 0) return -1;
    int p = c->g->values[v].producer;
    return p >= 0 && !c->dead[p] ? p : -1;
}

const graph_type *pass_type(const pass_ctx *c, int v)
{
    if (v < 0) return NULL;
    const graph_type *t = &c->g->values[v].type;
    return t->kind == TENSOR_DENSE ? t : NULL;
}

bool pass_is_f32(const pass_ctx *c, int v)
{
    const graph_type *t = v >= 0 ? pass_type(c, v) : NULL;
    return t && t->elem == TERN_FLOAT;
}

bool pass_const_scalar(const pass_ctx *c, int v, double *out)
{
    const tern_tensor *t = pass_const(c, v);
    if (!t || t->numel != 1 || t->dtype == TERN_STRING || t->dtype == TERN_COMPLEX64 ||
        t->dtype == TERN_COMPLEX128)
        return false;
    *out = dtype_get_f64(t->dtype, t->data, 0);
    return true;
}

tern_status *pass_new_tensor(pass_ctx *c, tern_dtype dt, int rank, const int64_t *dims,
                             tern_tensor **t)
{
    *t = arena_calloc(c->mem, sizeof **t);
    if (!*t) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    (*t)->kind = TENSOR_DENSE;
    (*t)->dtype = dt;
    TERN_TRY(tensor_set_shape(*t, rank, dims));
    size_t nb = tensor_nbytes(*t);
    (*t)->data = arena_alloc(c->mem, nb ? nb : 1);
    return (*t)->data ? NULL : tern_error(TERN_ERR_NO_MEMORY, "out of memory");
}

/* Room for one more value in g->values and the per-value arrays. */
static tern_status *grow_values(pass_ctx *c)
{
    graph *g = c->g;
    if (g->n_values >= g->cap_values) {
        int nc = g->cap_values * 2 + 16;
        graph_value *nv = arena_alloc(c->mem, (size_t)nc * sizeof *nv);
        if (!nv) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        memcpy(nv, g->values, (size_t)g->n_values * sizeof *nv);
        g->values = nv;
        g->cap_values = nc;
    }
    if (g->n_values >= c->cap) {
        int nc = c->cap * 2 + 16;
        int *u = realloc(c->uses, (size_t)nc * sizeof *u);
        if (u) c->uses = u;
        uint8_t *p = realloc(c->pinned, (size_t)nc);
        if (p) c->pinned = p;
        int *a = realloc(c->alias, (size_t)nc * sizeof *a);
        if (a) c->alias = a;
        if (!u || !p || !a) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        c->cap = nc;
    }
    return NULL;
}

tern_status *pass_add_init(pass_ctx *c, const char *base, const char *suffix, const tern_tensor *t,
                           int *v)
{
    TERN_TRY(grow_values(c));
    size_t len = strlen(base) + strlen(suffix) + 2;
    char *name = arena_alloc(c->mem, len);
    if (!name) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    snprintf(name, len, "%s/%s", base, suffix);
    graph *g = c->g;
    *v = g->n_values++;
    graph_value *gv = &g->values[*v];
    memset(gv, 0, sizeof *gv);
    gv->name = name;
    gv->producer = -1;
    gv->outer = -1;
    c->uses[*v] = 0;
    c->pinned[*v] = 0;
    c->alias[*v] = -1;
    pass_make_const(c, *v, t);
    return NULL;
}

void pass_make_const(pass_ctx *c, int v, const tern_tensor *t)
{
    graph_value *gv = &c->g->values[v];
    gv->init = t;
    gv->producer = -1;
    gv->type.kind = TENSOR_DENSE;
    gv->type.elem = t->dtype;
    gv->type.rank = t->rank;
    for (int d = 0; d < t->rank; d++) {
        gv->type.dims[d] = t->dims[d];
        gv->type.dim_names[d] = "";
    }
}

void pass_kill(pass_ctx *c, int i)
{
    graph_node *n = &c->g->nodes[i];
    if (c->dead[i]) return;
    c->dead[i] = 1;
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0) c->uses[n->in[k]]--;
    for (int k = 0; k < n->n_out; k++)
        if (n->out[k] >= 0 && c->g->values[n->out[k]].producer == i)
            c->g->values[n->out[k]].producer = -1;
}

void pass_set_input(pass_ctx *c, int i, int k, int v)
{
    graph_node *n = &c->g->nodes[i];
    if (n->in[k] >= 0) c->uses[n->in[k]]--;
    n->in[k] = v;
    if (v >= 0) c->uses[v]++;
}

tern_status *pass_attrs_copy(pass_ctx *c, const graph_node *n, int extra, const char *const *drop,
                             op_attr **out, int *n_out)
{
    op_attr *a = arena_calloc(c->mem, (size_t)(n->op.n_attrs + extra + 1) * sizeof *a);
    if (!a) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    int k = 0;
    for (int i = 0; i < n->op.n_attrs; i++) {
        bool skip = false;
        for (int d = 0; drop && drop[d]; d++)
            if (strcmp(n->op.attrs[i].name, drop[d]) == 0) skip = true;
        if (!skip) a[k++] = n->op.attrs[i];
    }
    *out = a;
    *n_out = k;
    return NULL;
}

tern_status *pass_rewrite(pass_ctx *c, int i, const char *name, const char *domain,
                          const char *op_type, int opset, int n_in, const int *in, op_attr *attrs,
                          int n_attrs, int out)
{
    const op_def *def = op_lookup(domain, op_type, opset);
    if (!def)
        return tern_error(TERN_ERR_UNSUPPORTED, "node '%s': no kernel for %s%s%s at opset %d", name,
                          domain, *domain ? "." : "", op_type, opset);
    int *ins = arena_alloc(c->mem, (size_t)(n_in + 1) * sizeof *ins);
    int *outs = arena_alloc(c->mem, sizeof *outs);
    if (!ins || !outs) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    graph_node *n = &c->g->nodes[i];
    /* release the old node first: its inputs may be among the new ones */
    if (!c->dead[i]) pass_kill(c, i);
    c->dead[i] = 0;
    for (int k = 0; k < n_in; k++) {
        ins[k] = in[k];
        if (in[k] >= 0) c->uses[in[k]]++;
    }
    outs[0] = out;
    *n = (graph_node){.op = {.name = name,
                             .op_type = op_type,
                             .domain = domain,
                             .n_attrs = n_attrs,
                             .attrs = attrs},
                      .n_in = n_in,
                      .n_out = 1,
                      .in = ins,
                      .out = outs,
                      .def = def,
                      .opset = opset};
    c->g->values[out].producer = i;
    return NULL;
}

/* ---- dead nodes, compaction ---------------------------------------------- */

void pass_dead(pass_ctx *c)
{
    graph *g = c->g;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        if (c->dead[i]) continue;
        const graph_node *n = &g->nodes[i];
        bool used = false;
        for (int k = 0; k < n->n_out && !used; k++) {
            int v = n->out[k];
            used = v >= 0 && (c->uses[v] > 0 || c->pinned[v]);
        }
        if (used) continue;
        pass_kill(c, i);
        c->m->rewrites[GRAPH_PASS_DEAD]++;
    }
}

/* Squeezes dead nodes out, renumbers producers, and checks that every input
 * is written before it is read. */
static tern_status *compact(pass_ctx *c)
{
    graph *g = c->g;
    int *newidx = malloc((size_t)(g->n_nodes + 1) * sizeof *newidx);
    if (!newidx) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        newidx[i] = c->dead[i] ? -1 : k;
        if (!c->dead[i]) g->nodes[k++] = g->nodes[i];
    }
    for (int v = 0; v < g->n_values; v++) {
        int p = g->values[v].producer;
        if (p >= 0) g->values[v].producer = newidx[p];
    }
    free(newidx);
    g->n_nodes = k;
    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *n = &g->nodes[i];
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0) g->values[n->out[j]].producer = i;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *n = &g->nodes[i];
        for (int j = 0; j < n->n_in; j++) {
            int v = n->in[j];
            if (v < 0) continue;
            const graph_value *gv = &g->values[v];
            bool ok = gv->producer >= 0 ? gv->producer < i : gv->init || gv->is_input;
            if (!ok)
                return tern_error(TERN_ERR_INVALID_MODEL,
                                  "graph optimisation left node '%s' (%s) reading '%s' before it "
                                  "is written (set TERN_OPTIMIZE=0 to load without passes)",
                                  n->op.name, n->op.op_type, gv->name);
        }
    }
    return NULL;
}

/* ---- element types -------------------------------------------------------- */

/* Ops whose outputs have the element type of input 0 (of input 1: Where). */
static const char same_elem[] =
    " Abs Add AveragePool BatchNormalization Ceil Clip Concat Conv Div Dropout Erf Exp Expand"
    " Flatten Floor Gather Gemm GlobalAveragePool GlobalMaxPool HardSigmoid Identity"
    " LayerNormalization LeakyRelu Log MatMul Max MaxPool Min Mul Neg Pad Pow Reciprocal"
    " ReduceMax ReduceMean ReduceMin ReduceSum Relu Reshape Sigmoid Slice Softmax Split Sqrt"
    " Squeeze Sub Tanh Tile Transpose Unsqueeze Where ";

/* Shape inference leaves a value's type unknown when its shape depends on
 * data (a Reshape to a computed shape), and everything after it too; the
 * fusions only need the element type, which almost never depends on data:
 * fill it in along the order. */
static void propagate_elem(pass_ctx *c)
{
    graph *g = c->g;
    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *n = &g->nodes[i];
        if (*n->op.domain) continue;
        const char *op = n->op.op_type;
        int elem = 0, src = !strcmp(op, "Where") ? 1 : 0;
        if (!strcmp(op, "Cast")) {
            elem = (int)pass_attr_int(n, "to", 0);
        } else if (!strcmp(op, "Shape") || !strcmp(op, "Size")) {
            elem = TERN_INT64;
        } else if (!strcmp(op, "Equal") || !strcmp(op, "Less") || !strcmp(op, "Greater") ||
                   !strcmp(op, "Not") || !strcmp(op, "And") || !strcmp(op, "Or")) {
            elem = TERN_BOOL;
        } else if (pass_in_list(same_elem, op) && src < n->n_in && n->in[src] >= 0) {
            const graph_type *t = pass_type(c, n->in[src]);
            elem = t ? t->elem : 0;
        }
        if (!elem || !dtype_valid(elem)) continue;
        for (int k = 0; k < n->n_out; k++) {
            graph_type *t = n->out[k] >= 0 ? &g->values[n->out[k]].type : NULL;
            if (!t || t->elem || t->kind == TENSOR_SEQUENCE) continue;
            if (k > 0 && strcmp(op, "Split") != 0) break; /* Dropout's mask, ... */
            t->kind = TENSOR_DENSE;
            t->elem = elem;
        }
    }
}

/* ---- driver ---------------------------------------------------------------- */

static void mark_captures(pass_ctx *c, const graph *sub)
{
    for (int v = 0; v < sub->n_values; v++)
        if (sub->values[v].outer >= 0) c->pinned[sub->values[v].outer] = 1;
}

static void count_uses(pass_ctx *c)
{
    graph *g = c->g;
    memset(c->uses, 0, (size_t)g->n_values * sizeof *c->uses);
    memset(c->pinned, 0, (size_t)g->n_values);
    for (int i = 0; i < g->n_outputs; i++) c->pinned[g->outputs[i]] = 1;
    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) c->uses[n->in[k]]++;
        for (int a = 0; a < n->op.n_attrs; a++) {
            const op_attr *at = &n->op.attrs[a];
            if (at->type == ATTR_GRAPH && at->g) mark_captures(c, at->g);
            if (at->type == ATTR_GRAPHS)
                for (int j = 0; j < at->n; j++) mark_captures(c, at->graphs[j]);
        }
    }
}

tern_status *graph_optimize(graph_model *m, graph *g, graph_evaluator *eval)
{
    pass_ctx c = {.m = m, .g = g, .mem = &m->store.mem, .eval = eval, .cap = g->n_values + 16};
    c.uses = malloc((size_t)c.cap * sizeof *c.uses);
    c.pinned = malloc((size_t)c.cap);
    c.alias = malloc((size_t)c.cap * sizeof *c.alias);
    c.dead = calloc((size_t)g->n_nodes + 1, 1);
    tern_status *st = NULL;
    if (!c.uses || !c.pinned || !c.alias || !c.dead) {
        st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (int v = 0; v < c.cap; v++) c.alias[v] = -1;
    count_uses(&c);
    propagate_elem(&c);
    if ((st = pass_simplify(&c))) goto done;
    pass_dead(&c);
    if ((st = pass_patterns(&c))) goto done;
    if ((st = pass_attention(&c))) goto done;
    if ((st = pass_fuse(&c))) goto done;
    pass_dead(&c);
    st = compact(&c);
done:
    free(c.uses);
    free(c.pinned);
    free(c.alias);
    free(c.dead);
    return st ? tern_error_wrap(st, "optimising graph '%s'", g->name) : NULL;
}

const char *graph_pass_name(int kind)
{
    static const char *const names[GRAPH_PASS_KINDS] = {
        [GRAPH_PASS_IDENTITY] = "identity",
        [GRAPH_PASS_FOLD] = "fold",
        [GRAPH_PASS_DEAD] = "dead",
        [GRAPH_PASS_CONV_BN] = "conv_bn",
        [GRAPH_PASS_TRANSPOSE] = "transpose",
        [GRAPH_PASS_RESHAPE] = "reshape",
        [GRAPH_PASS_LAYERNORM] = "layernorm",
        [GRAPH_PASS_GELU] = "gelu",
        [GRAPH_PASS_GEMM] = "gemm",
        [GRAPH_PASS_FUSED_GEMM] = "fused_gemm",
        [GRAPH_PASS_FUSED_MATMUL] = "fused_matmul",
        [GRAPH_PASS_FUSED_CONV] = "fused_conv",
        [GRAPH_PASS_ATTENTION] = "attention",
    };
    return kind >= 0 && kind < GRAPH_PASS_KINDS ? names[kind] : "?";
}

/*
 * Graph construction: ONNX protobuf -> IR (graph.h).
 *
 * A graph is built in three steps. First the names it defines (initializers,
 * inputs, node outputs) go into a hash table, so nodes may appear in any
 * order. Then every node input is resolved: locally, or else in the enclosing
 * graphs, which creates a "captured" value here (and, when it comes from
 * further out, in each graph in between). A capture made while building the
 * attributes of node N of the parent is recorded as an implicit input of N.
 * Finally nodes are sorted topologically (Kahn) over explicit and implicit
 * inputs; a node left over sits on a cycle and is named in the error.
 * Shape inference then runs, and on the main graph the optimisation passes
 * (passes.c), before each node's prepare hook sees its constant inputs.
 */
#include "graph/graph.h"
#include "graph/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct edge {
    int node, value;
} edge;

typedef struct builder {
    graph_model *m;
    graph *g;
    struct builder *parent;
    int cap_values;
    int *slots; /* hash table of value index + 1; 0 is empty */
    int n_slots;
    int cur_node; /* node whose subgraphs are being built, or -1 */
    edge *implicit;
    int n_implicit, cap_implicit;
    const graph_build_opts *opts; /* main graph only */
} builder;

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int find_local(const builder *b, const char *name)
{
    uint64_t i = hash_str(name) & (uint64_t)(b->n_slots - 1);
    for (;;) {
        int v = b->slots[i];
        if (v == 0) return -1;
        if (strcmp(b->g->values[v - 1].name, name) == 0) return v - 1;
        i = (i + 1) & (uint64_t)(b->n_slots - 1);
    }
}

static tern_status *add_value(builder *b, const char *name, int *idx)
{
    if (b->g->n_values >= b->cap_values)
        return tern_error(TERN_ERR_INVALID_MODEL, "graph '%s': too many values", b->g->name);
    uint64_t i = hash_str(name) & (uint64_t)(b->n_slots - 1);
    while (b->slots[i]) i = (i + 1) & (uint64_t)(b->n_slots - 1);
    graph_value *v = &b->g->values[b->g->n_values];
    memset(v, 0, sizeof *v);
    v->name = name;
    v->producer = -1;
    v->outer = -1;
    v->type.kind = -1;
    v->type.rank = -1;
    b->slots[i] = ++b->g->n_values;
    *idx = b->g->n_values - 1;
    return NULL;
}

/* Finds `name` here or in an enclosing graph; -1 if nowhere. */
static tern_status *resolve(builder *b, const char *name, int *idx)
{
    *idx = find_local(b, name);
    if (*idx >= 0 || !b->parent) return NULL;
    int pidx;
    TERN_TRY(resolve(b->parent, name, &pidx));
    if (pidx < 0) return NULL;
    if (b->parent->cur_node >= 0) { /* the parent node depends on it */
        builder *p = b->parent;
        if (p->n_implicit == p->cap_implicit) {
            int nc = p->cap_implicit ? 2 * p->cap_implicit : 16;
            edge *ne = realloc(p->implicit, (size_t)nc * sizeof *ne);
            if (!ne) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
            p->implicit = ne;
            p->cap_implicit = nc;
        }
        p->implicit[p->n_implicit++] = (edge){p->cur_node, pidx};
    }
    TERN_TRY(add_value(b, name, idx));
    b->g->values[*idx].outer = pidx;
    b->g->values[*idx].type = b->parent->g->values[pidx].type;
    return NULL;
}

/* ---- types ------------------------------------------------------------- */

void graph_type_from_proto(arena *mem, const Onnx__TypeProto *tp, graph_type *t)
{
    memset(t, 0, sizeof *t);
    t->kind = -1;
    t->rank = -1;
    if (!tp) return;
    if (tp->value_case == ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE && tp->optional_type) {
        graph_type_from_proto(mem, tp->optional_type->elem_type, t);
        t->optional = true;
        return;
    }
    if (tp->value_case == ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE && tp->sequence_type) {
        graph_type inner;
        graph_type_from_proto(mem, tp->sequence_type->elem_type, &inner);
        t->kind = TENSOR_SEQUENCE;
        t->elem = inner.elem;
        return;
    }
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) return;
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    t->kind = TENSOR_DENSE;
    t->elem = tt->has_elem_type && dtype_valid(tt->elem_type) ? tt->elem_type : 0;
    if (!tt->shape || tt->shape->n_dim > TERN_MAX_RANK) return;
    t->rank = (int)tt->shape->n_dim;
    for (int i = 0; i < t->rank; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        t->dims[i] = -1;
        t->dim_names[i] = "";
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
            d->dim_value >= 0) {
            t->dims[i] = d->dim_value;
        } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                   d->dim_param) {
            t->dim_names[i] = d->dim_param;
        }
    }
    (void)mem;
}

static void set_declared_type(builder *b, const Onnx__ValueInfoProto *vi)
{
    if (!vi || !vi->name) return;
    int idx = find_local(b, vi->name);
    if (idx < 0) return;
    graph_type_from_proto(&b->m->store.mem, vi->type, &b->g->values[idx].type);
}

/* ---- attributes -------------------------------------------------------- */

static tern_status *prepare_nodes(graph_model *m, graph *g);
static tern_status *build_graph(graph_model *m, builder *parent, const Onnx__GraphProto *gp,
                                graph **out);

static int attr_type(const Onnx__AttributeProto *a)
{
    if (a->has_type && a->type) return (int)a->type;
    /* IR 1 models leave the type out: tell it from the field that is set */
    if (a->t) return ATTR_TENSOR;
    if (a->g) return ATTR_GRAPH;
    if (a->n_floats) return ATTR_FLOATS;
    if (a->n_ints) return ATTR_INTS;
    if (a->n_strings) return ATTR_STRINGS;
    if (a->has_s) return ATTR_STRING;
    if (a->has_f) return ATTR_FLOAT;
    if (a->has_i) return ATTR_INT;
    return ATTR_UNDEFINED;
}

static int type_proto_elem(const Onnx__TypeProto *tp)
{
    graph_type t;
    graph_type_from_proto(NULL, tp, &t);
    return t.elem;
}

static tern_status *build_attr(builder *b, const op_node *n, const Onnx__AttributeProto *ap,
                               op_attr *a)
{
    arena *mem = &b->m->store.mem;
    memset(a, 0, sizeof *a);
    a->name = str_or_empty(ap->name);
    if (ap->ref_attr_name && *ap->ref_attr_name)
        return tern_error(TERN_ERR_UNSUPPORTED,
                          "node '%s' (%s): attribute '%s' refers to a function attribute", n->name,
                          n->op_type, a->name);
    a->type = attr_type(ap);
    char what[256];
    snprintf(what, sizeof what, "node '%s' (%s) attribute '%s'", n->name, n->op_type, a->name);
    switch (a->type) {
    case ATTR_FLOAT: a->f = ap->f; break;
    case ATTR_INT: a->i = ap->i; break;
    case ATTR_STRING: {
        char *s = arena_alloc(mem, ap->s.len + 1);
        if (!s) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        if (ap->s.len) memcpy(s, ap->s.data, ap->s.len);
        s[ap->s.len] = 0;
        a->s = s;
        a->s_len = ap->s.len;
        break;
    }
    case ATTR_TENSOR:
        if (!ap->t) return tern_error(TERN_ERR_INVALID_MODEL, "%s: tensor missing", what);
        TERN_TRY(onnx_tensor(&b->m->store, ap->t, what, (tern_tensor **)&a->t));
        break;
    case ATTR_GRAPH:
        if (!ap->g) return tern_error(TERN_ERR_INVALID_MODEL, "%s: graph missing", what);
        TERN_TRY(build_graph(b->m, b, ap->g, (graph **)&a->g));
        break;
    case ATTR_FLOATS:
        a->n = (int)ap->n_floats;
        a->floats = ap->floats;
        break;
    case ATTR_INTS:
        a->n = (int)ap->n_ints;
        a->ints = ap->ints;
        break;
    case ATTR_STRINGS: {
        a->n = (int)ap->n_strings;
        char **v = arena_alloc(mem, (ap->n_strings + 1) * sizeof *v);
        if (!v) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        for (size_t i = 0; i < ap->n_strings; i++) {
            v[i] = arena_alloc(mem, ap->strings[i].len + 1);
            if (!v[i]) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
            if (ap->strings[i].len) memcpy(v[i], ap->strings[i].data, ap->strings[i].len);
            v[i][ap->strings[i].len] = 0;
        }
        a->strings = (const char *const *)v;
        break;
    }
    case ATTR_TENSORS: {
        a->n = (int)ap->n_tensors;
        tern_tensor **v = arena_alloc(mem, (ap->n_tensors + 1) * sizeof *v);
        if (!v) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        for (size_t i = 0; i < ap->n_tensors; i++)
            TERN_TRY(onnx_tensor(&b->m->store, ap->tensors[i], what, &v[i]));
        a->tensors = (const tern_tensor *const *)v;
        break;
    }
    case ATTR_GRAPHS: {
        a->n = (int)ap->n_graphs;
        graph **v = arena_alloc(mem, (ap->n_graphs + 1) * sizeof *v);
        if (!v) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        for (size_t i = 0; i < ap->n_graphs; i++)
            TERN_TRY(build_graph(b->m, b, ap->graphs[i], &v[i]));
        a->graphs = (const struct graph *const *)v;
        break;
    }
    case ATTR_TYPE_PROTO: a->tp_elem = type_proto_elem(ap->tp); break;
    default: break; /* sparse tensors and type lists: kernels that need them refuse */
    }
    return NULL;
}

/* ---- nodes and sorting ------------------------------------------------- */

static tern_status *check_op(graph_model *m, graph_node *n)
{
    const char *dom = n->op.domain;
    int64_t v = graph_model_opset(m, dom);
    if (v < 0 && strcmp(dom, "com.tern") == 0) v = 1; /* tern's own ops need no import */
    if (v < 0)
        return tern_error(TERN_ERR_INVALID_MODEL,
                          "node '%s' (%s): domain '%s' is not imported by the model", n->op.name,
                          n->op.op_type, dom);
    if (!op_known(dom, n->op.op_type)) {
        for (size_t i = 0; i < m->proto->n_functions; i++) {
            const Onnx__FunctionProto *f = m->proto->functions[i];
            if (f->name && strcmp(f->name, n->op.op_type) == 0)
                return tern_error(TERN_ERR_UNSUPPORTED,
                                  "node '%s' (%s): model-local functions are not supported",
                                  n->op.name, n->op.op_type);
        }
        return tern_error(TERN_ERR_UNSUPPORTED, "node '%s' (%s): unsupported operator '%s%s%s'",
                          n->op.name, n->op.op_type, dom, *dom ? "." : "", n->op.op_type);
    }
    n->def = op_lookup(dom, n->op.op_type, v);
    if (!n->def)
        return tern_error(TERN_ERR_UNSUPPORTED,
                          "node '%s' (%s): operator %s is not supported at opset %lld of domain "
                          "'%s'",
                          n->op.name, n->op.op_type, n->op.op_type, (long long)v,
                          *dom ? dom : "ai.onnx");
    n->opset = (int)v;
    return NULL;
}

static tern_status *toposort(builder *b)
{
    graph *g = b->g;
    int nn = g->n_nodes;
    if (nn == 0) return NULL;
    tern_status *st = NULL;
    /* successor lists in CSR form */
    int *indeg = calloc((size_t)nn, sizeof *indeg), *cnt = calloc((size_t)nn + 1, sizeof *cnt);
    int total = b->n_implicit;
    for (int i = 0; i < nn; i++) total += g->nodes[i].n_in;
    int *succ = malloc((size_t)(total + 1) * sizeof *succ);
    int *order = malloc((size_t)nn * sizeof *order), *newidx = malloc((size_t)nn * sizeof *newidx);
    graph_node *sorted = arena_alloc(&b->m->store.mem, (size_t)nn * sizeof *sorted);
    if (!indeg || !cnt || !succ || !order || !newidx || !sorted) {
        st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
#define FOR_EACH_DEP(body)                                                                         \
    for (int i = 0; i < nn; i++)                                                                   \
        for (int k = 0; k < g->nodes[i].n_in; k++) {                                               \
            int v = g->nodes[i].in[k];                                                             \
            int p = v >= 0 ? g->values[v].producer : -1;                                           \
            if (p >= 0) {                                                                          \
                body                                                                               \
            }                                                                                      \
        }                                                                                          \
    for (int e = 0; e < b->n_implicit; e++) {                                                      \
        int i = b->implicit[e].node, p = g->values[b->implicit[e].value].producer;                 \
        if (p >= 0) {                                                                              \
            body                                                                                   \
        }                                                                                          \
    }
    FOR_EACH_DEP(cnt[p + 1]++; indeg[i]++;)
    for (int i = 0; i < nn; i++) cnt[i + 1] += cnt[i];
    {
        int *fill = calloc((size_t)nn, sizeof *fill);
        if (!fill) {
            st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
            goto done;
        }
        FOR_EACH_DEP(succ[cnt[p] + fill[p]++] = i;)
        free(fill);
    }
#undef FOR_EACH_DEP
    int head = 0, tail = 0;
    for (int i = 0; i < nn; i++)
        if (indeg[i] == 0) order[tail++] = i;
    while (head < tail) {
        int u = order[head++];
        for (int e = cnt[u]; e < cnt[u + 1]; e++)
            if (--indeg[succ[e]] == 0) order[tail++] = succ[e];
    }
    if (tail < nn) {
        int bad = 0;
        while (indeg[bad] == 0) bad++;
        st = tern_error(TERN_ERR_INVALID_MODEL, "graph '%s' has a cycle through node '%s' (%s)",
                        g->name, g->nodes[bad].op.name, g->nodes[bad].op.op_type);
        goto done;
    }
    for (int i = 0; i < nn; i++) {
        sorted[i] = g->nodes[order[i]];
        newidx[order[i]] = i;
    }
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].producer >= 0) g->values[v].producer = newidx[g->values[v].producer];
    g->nodes = sorted;
done:
    free(indeg);
    free(cnt);
    free(succ);
    free(order);
    free(newidx);
    return st;
}

/* Upper bound on the values a graph can hold: everything it names, plus a
 * capture for every name used by the graphs nested in it. */
static int count_refs(const Onnx__GraphProto *gp)
{
    long n = (long)gp->n_output;
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        n += (long)np->n_input;
        for (size_t a = 0; a < np->n_attribute; a++) {
            const Onnx__AttributeProto *ap = np->attribute[a];
            if (ap->g) n += count_refs(ap->g);
            for (size_t k = 0; k < ap->n_graphs; k++) n += count_refs(ap->graphs[k]);
        }
    }
    return n > 100000000 ? 100000000 : (int)n;
}

static tern_status *build_graph_into(builder *b, const Onnx__GraphProto *gp)
{
    graph_model *m = b->m;
    arena *mem = &m->store.mem;
    graph *g = b->g;
    g->name = str_or_empty(gp->name);

    long outs = 0;
    for (size_t i = 0; i < gp->n_node; i++) outs += (long)gp->node[i]->n_output;
    long cap = (long)gp->n_initializer + (long)gp->n_input + outs + count_refs(gp) + 1;
    if (cap > 100000000) return tern_error(TERN_ERR_INVALID_MODEL, "graph is too large");
    b->cap_values = (int)cap;
    g->cap_values = (int)cap;
    b->n_slots = 16;
    while (b->n_slots < 2 * cap) b->n_slots *= 2;
    b->slots = calloc((size_t)b->n_slots, sizeof *b->slots);
    g->values = arena_alloc(mem, (size_t)cap * sizeof *g->values);
    g->nodes = arena_calloc(mem, (gp->n_node + 1) * sizeof *g->nodes);
    g->inputs = arena_alloc(mem, (gp->n_input + 1) * sizeof *g->inputs);
    g->outputs = arena_alloc(mem, (gp->n_output + 1) * sizeof *g->outputs);
    if (!b->slots || !g->values || !g->nodes || !g->inputs || !g->outputs)
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");

    int idx;
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        const char *name = str_or_empty(tp->name);
        if (!*name) return tern_error(TERN_ERR_INVALID_MODEL, "initializer %zu has no name", i);
        if (find_local(b, name) >= 0)
            return tern_error(TERN_ERR_INVALID_MODEL, "initializer '%s' is defined twice", name);
        TERN_TRY(add_value(b, name, &idx));
        char what[300];
        snprintf(what, sizeof what, "initializer '%s'", name);
        tern_tensor *t;
        TERN_TRY(onnx_tensor(&m->store, tp, what, &t));
        g->values[idx].init = t;
        g->values[idx].type.kind = TENSOR_DENSE;
        g->values[idx].type.elem = t->dtype;
        g->values[idx].type.rank = t->rank;
        for (int d = 0; d < t->rank; d++) {
            g->values[idx].type.dims[d] = t->dims[d];
            g->values[idx].type.dim_names[d] = "";
        }
    }
    if (gp->n_sparse_initializer)
        return tern_error(TERN_ERR_UNSUPPORTED, "graph '%s': sparse initializers are not supported",
                          g->name);
    for (size_t i = 0; i < gp->n_input; i++) {
        const char *name = str_or_empty(gp->input[i]->name);
        if (!*name) return tern_error(TERN_ERR_INVALID_MODEL, "graph input %zu has no name", i);
        idx = find_local(b, name);
        if (idx >= 0 && (g->values[idx].is_input || !g->values[idx].init))
            return tern_error(TERN_ERR_INVALID_MODEL, "graph input '%s' is listed twice", name);
        if (idx < 0) {
            TERN_TRY(add_value(b, name, &idx));
            set_declared_type(b, gp->input[i]);
        }
        g->values[idx].is_input = true;
        g->inputs[g->n_inputs++] = idx;
    }
    /* every name a node defines */
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        graph_node *n = &g->nodes[i];
        n->op.name = str_or_empty(np->name);
        /* unnamed nodes are named by their first output in messages */
        if (!*n->op.name && np->n_output && np->output[0] && *np->output[0])
            n->op.name = np->output[0];
        n->op.op_type = str_or_empty(np->op_type);
        n->op.domain = str_or_empty(np->domain);
        if (strcmp(n->op.domain, "ai.onnx") == 0) n->op.domain = "";
        if (!*n->op.op_type)
            return tern_error(TERN_ERR_INVALID_MODEL, "node %zu ('%s') has no op_type", i,
                              n->op.name);
        n->n_out = (int)np->n_output;
        n->out = arena_alloc(mem, (np->n_output + 1) * sizeof *n->out);
        if (!n->out) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        for (size_t k = 0; k < np->n_output; k++) {
            const char *name = str_or_empty(np->output[k]);
            n->out[k] = -1;
            if (!*name) continue;
            if (find_local(b, name) >= 0)
                return tern_error(TERN_ERR_INVALID_MODEL,
                                  "node '%s' (%s): output '%s' is already defined", n->op.name,
                                  n->op.op_type, name);
            TERN_TRY(add_value(b, name, &idx));
            g->values[idx].producer = (int)i;
            n->out[k] = idx;
        }
        g->n_nodes++;
    }
    for (size_t i = 0; i < gp->n_value_info; i++) set_declared_type(b, gp->value_info[i]);
    for (size_t i = 0; i < gp->n_output; i++) set_declared_type(b, gp->output[i]);
    /* inputs and attributes: resolve names, build subgraphs, find kernels */
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        graph_node *n = &g->nodes[i];
        n->n_in = (int)np->n_input;
        n->in = arena_alloc(mem, (np->n_input + 1) * sizeof *n->in);
        op_attr *attrs = arena_calloc(mem, (np->n_attribute + 1) * sizeof *attrs);
        if (!n->in || !attrs) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        for (size_t k = 0; k < np->n_input; k++) {
            const char *name = str_or_empty(np->input[k]);
            n->in[k] = -1;
            if (!*name) continue;
            TERN_TRY(resolve(b, name, &n->in[k]));
            if (n->in[k] < 0)
                return tern_error(TERN_ERR_INVALID_MODEL,
                                  "node '%s' (%s): input '%s' is not a graph input, initializer "
                                  "or node output",
                                  n->op.name, n->op.op_type, name);
        }
        TERN_TRY(check_op(m, n));
        b->cur_node = (int)i;
        for (size_t a = 0; a < np->n_attribute; a++)
            TERN_TRY(build_attr(b, &n->op, np->attribute[a], &attrs[a]));
        b->cur_node = -1;
        n->op.attrs = attrs;
        n->op.n_attrs = (int)np->n_attribute;
    }
    for (size_t i = 0; i < gp->n_output; i++) {
        const char *name = str_or_empty(gp->output[i]->name);
        TERN_TRY(resolve(b, name, &idx));
        if (idx < 0)
            return tern_error(TERN_ERR_INVALID_MODEL,
                              "graph output '%s' is not produced by any node, input or "
                              "initializer",
                              name);
        if (g->values[idx].type.kind < 0) set_declared_type(b, gp->output[i]);
        g->outputs[g->n_outputs++] = idx;
    }
    TERN_TRY(toposort(b));
    graph_infer_shapes(g);
    if (!b->parent) m->main_nodes_before = g->n_nodes;
    if (!b->parent && b->opts && b->opts->optimize) TERN_TRY(graph_optimize(m, g, b->opts->eval));
    return prepare_nodes(m, g);
}

void *op_prep_alloc(op_prep *p, size_t bytes)
{
    return arena_alloc(p->mem, bytes);
}

struct prep_cleanup {
    void (*fn)(void *);
    void *arg;
    struct prep_cleanup *next;
};

tern_status *op_prep_on_free(op_prep *p, void (*fn)(void *arg), void *arg)
{
    graph_model *m = p->model;
    struct prep_cleanup *c = m ? arena_alloc(&m->store.mem, sizeof *c) : NULL;
    if (!c) {
        fn(arg);
        return tern_error(m ? TERN_ERR_NO_MEMORY : TERN_ERR_RUNTIME,
                          m ? "out of memory" : "no model to attach state to");
    }
    *c = (struct prep_cleanup){fn, arg, m->cleanups};
    m->cleanups = c;
    return NULL;
}

/* Runs each node's prepare hook with its constant inputs (see op.h). */
static tern_status *prepare_nodes(graph_model *m, graph *g)
{
    const tern_tensor *ins[64];
    for (int i = 0; i < g->n_nodes; i++) {
        graph_node *n = &g->nodes[i];
        if (!n->def->prepare || n->n_in > 64) continue;
        /* an initializer that is also a graph input may be replaced at run
         * time: it is not a constant */
        for (int k = 0; k < n->n_in; k++) {
            const graph_value *v = n->in[k] >= 0 ? &g->values[n->in[k]] : NULL;
            ins[k] = v && !v->is_input ? v->init : NULL;
        }
        op_prep p = {.node = &n->op,
                     .opset = n->opset,
                     .n_in = n->n_in,
                     .in = ins,
                     .mem = &m->store.mem,
                     .model = m};
        tern_status *st = n->def->prepare(&p, &n->state);
        if (st) return tern_error_wrap(st, "node '%s' (%s): prepare", n->op.name, n->op.op_type);
    }
    return NULL;
}

static tern_status *build_graph_opts(graph_model *m, builder *parent, const Onnx__GraphProto *gp,
                                     const graph_build_opts *opts, graph **out)
{
    *out = NULL;
    graph *g = arena_calloc(&m->store.mem, sizeof *g);
    if (!g) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    g->parent = parent ? parent->g : NULL;
    builder b = {.m = m, .g = g, .parent = parent, .cur_node = -1, .opts = opts};
    tern_status *st = build_graph_into(&b, gp);
    free(b.slots);
    free(b.implicit);
    if (!st) *out = g;
    return st;
}

static tern_status *build_graph(graph_model *m, builder *parent, const Onnx__GraphProto *gp,
                                graph **out)
{
    return build_graph_opts(m, parent, gp, NULL, out);
}

int64_t graph_model_opset(const graph_model *m, const char *domain)
{
    if (!domain || strcmp(domain, "ai.onnx") == 0) domain = "";
    for (int i = 0; i < m->n_opsets; i++)
        if (strcmp(m->opsets[i].domain, domain) == 0) return m->opsets[i].version;
    return -1;
}

tern_status *graph_model_build(Onnx__ModelProto *proto, const char *dir, graph_model **out)
{
    return graph_model_build_opts(proto, dir, NULL, out);
}

tern_status *graph_model_build_opts(Onnx__ModelProto *proto, const char *dir,
                                    const graph_build_opts *opts, graph_model **out)
{
    *out = NULL;
    graph_model *m = calloc(1, sizeof *m);
    if (!m) {
        onnx__model_proto__free_unpacked(proto, NULL);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }
    m->proto = proto;
    m->ir_version = proto->ir_version;
    char *d = dir ? strdup(dir) : NULL;
    onnx_store_init(&m->store, d);
    tern_status *st = NULL;
    m->opsets = arena_alloc(&m->store.mem, proto->n_opset_import * sizeof *m->opsets);
    if (!m->opsets) {
        st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < proto->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = proto->opset_import[i];
        const char *dom = str_or_empty(o->domain);
        if (strcmp(dom, "ai.onnx") == 0) dom = "";
        if (!o->has_version || o->version < 1) {
            st = tern_error(TERN_ERR_INVALID_MODEL, "opset_import of domain '%s' has no version",
                            dom);
            goto fail;
        }
        m->opsets[m->n_opsets++] = (opset_entry){dom, o->version};
    }
    st = build_graph_opts(m, NULL, proto->graph, opts, &m->main);
    if (st) goto fail;
    *out = m;
    return NULL;
fail:
    graph_model_free(m);
    return st;
}

void graph_model_free(graph_model *m)
{
    if (!m) return;
    for (struct prep_cleanup *c = m->cleanups; c; c = c->next) c->fn(c->arg);
    free((char *)m->store.dir);
    onnx_store_free(&m->store);
    if (m->proto) onnx__model_proto__free_unpacked(m->proto, NULL);
    free(m);
}

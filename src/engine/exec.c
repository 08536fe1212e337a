/*
 * Executor, see exec.h. The op_* functions of ops/op.h that hand out memory
 * live here, since the executor owns the arena. Output slots are tensor
 * structs in the arena; a kernel fills them through op_out() and friends and
 * the executor then binds them to the node's output values.
 *
 * In the main graph, output data and scratch come from the memory plan
 * (exec_mem_take); after each node the executor tells the plan which blocks
 * the new values hold, lets it return the rest (scratch, unused outputs),
 * and drops the values whose last reader this node was. Output 0 of an
 * in-place kernel (OP_INPLACE*) takes the block of an input that this node
 * is the last to read when the plan allows it (inplace_data), so a chain
 * of activations runs in one buffer. Sequence arrays and
 * op_new_tensor() tensors stay in the bump arena: they are small, and
 * sequences point at them.
 */
#include "engine/exec.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static tern_status *oom(void)
{
    return tern_error(TERN_ERR_NO_MEMORY, "out of memory in arena");
}

/* ---- memory for kernels ------------------------------------------------ */

tern_status *op_scratch(op_ctx *c, size_t bytes, void **p)
{
    exec_frame *f = c->frame;
    *p = f->planned ? exec_mem_take(&f->x->mm, bytes) : arena_alloc(&f->x->mem, bytes);
    return *p ? NULL : oom();
}

tern_status *op_strdup(op_ctx *c, const char *s, char **out)
{
    *out = arena_strdup(&c->frame->x->mem, s ? s : "");
    return *out ? NULL : oom();
}

bool op_out_used(const op_ctx *c, int i)
{
    const graph_node *n = c->frame->node;
    return i >= 0 && i < n->n_out && n->out[i] >= 0;
}

/* The slot for output i: a fresh struct; unused outputs get a throwaway. */
static tern_status *out_slot(op_ctx *c, int i, tern_tensor **t)
{
    if (i < 0) return op_error(c, "output index %d", i);
    tern_tensor *s = arena_calloc(&c->frame->x->mem, sizeof *s);
    if (!s) return oom();
    if (i < c->frame->n_outs) c->frame->outs[i] = s;
    *t = s;
    return NULL;
}

/* Data from the plan (planned) or the bump arena; strings start NULL. */
static tern_status *alloc_dense(exec_state *x, bool planned, tern_tensor *s, tern_dtype dt,
                                int rank, const int64_t *dims)
{
    if (!dtype_valid((int)dt) || dt == TERN_COMPLEX64 || dt == TERN_COMPLEX128)
        return tern_error(TERN_ERR_RUNTIME, "unsupported output dtype %d", (int)dt);
    s->kind = TENSOR_DENSE;
    s->dtype = dt;
    TERN_TRY(tensor_set_shape(s, rank, dims));
    size_t nb = tensor_nbytes(s);
    s->data = planned ? exec_mem_take(&x->mm, nb) : arena_alloc(&x->mem, nb);
    if (!s->data) return oom();
    if (dt == TERN_STRING) memset(s->data, 0, nb);
    return NULL;
}

/* For output 0 of an in-place kernel (OP_INPLACE*): the data of an input
 * allowed by its flags that has dtype dt and shape (rank, dims) and that
 * the plan lets go, or a block the plan puts it in (exec_mem_inplace); NULL
 * to allocate as usual. */
static void *inplace_data(const op_ctx *c, int i, tern_dtype dt, int rank, const int64_t *dims)
{
    const exec_frame *f = c->frame;
    if (i != 0 || !f->planned) return NULL;
    const graph_node *n = f->node;
    unsigned may = n->def->flags / OP_INPLACE0 & 7u;
    if (!may) return NULL;
    tern_tensor shape = {.kind = TENSOR_DENSE, .dtype = dt};
    tern_status *st = tensor_set_shape(&shape, rank, dims);
    if (st) { /* op_out reports it */
        tern_status_free(st);
        return NULL;
    }
    const void *in[3];
    bool dying[3];
    int n_in = 0;
    for (int k = 0; k < c->n_in && k < 3; k++) {
        const tern_tensor *t = c->in[k];
        if (!(may >> k & 1u) || !t || t->kind != TENSOR_DENSE || t->dtype != dt ||
            dt == TERN_STRING || t->layout != LAYOUT_PLAIN || !shape_equal(t, &shape))
            continue;
        bool read_apart = false; /* also an input the kernel may read after writing */
        for (int j = 0; j < c->n_in && !read_apart; j++)
            read_apart = (j >= 3 || !(may >> j & 1u)) && c->in[j] && c->in[j]->data == t->data;
        if (read_apart) continue;
        in[n_in] = t->data;
        dying[n_in++] =
            n->in[k] >= 0 && exec_live_dies_at(f->x->live, (int)(n - f->g->nodes), n->in[k]);
    }
    return exec_mem_inplace(&f->x->mm, in, dying, n_in, tensor_nbytes(&shape));
}

tern_status *op_out(op_ctx *c, int i, tern_dtype dt, int rank, const int64_t *dims, tern_tensor **t)
{
    TERN_TRY(out_slot(c, i, t));
    void *data = inplace_data(c, i, dt, rank, dims);
    if (data) {
        (*t)->kind = TENSOR_DENSE;
        (*t)->dtype = dt;
        (*t)->data = data;
        return tensor_set_shape(*t, rank, dims);
    }
    tern_status *st = alloc_dense(c->frame->x, c->frame->planned, *t, dt, rank, dims);
    return st ? tern_error_wrap(st, "node '%s' (%s) output %d", c->node->name, c->node->op_type, i)
              : NULL;
}

tern_status *op_new_tensor(op_ctx *c, tern_dtype dt, int rank, const int64_t *dims, tern_tensor **t)
{
    *t = arena_calloc(&c->frame->x->mem, sizeof **t);
    if (!*t) return oom();
    return alloc_dense(c->frame->x, false, *t, dt, rank, dims);
}

tern_status *op_out_alias(op_ctx *c, int i, const tern_tensor *src, int rank, const int64_t *dims)
{
    tern_tensor *t = NULL;
    TERN_TRY(out_slot(c, i, &t));
    *t = *src;
    t->owns = false;
    TERN_TRY(tensor_set_shape(t, rank, dims));
    if (t->numel != src->numel)
        return op_error(c, "cannot view %lld elements as %lld", (long long)src->numel,
                        (long long)t->numel);
    return NULL;
}

tern_status *op_out_sequence(op_ctx *c, int i, tern_dtype elem, int64_t n, tern_tensor ***elems)
{
    tern_tensor *t = NULL;
    TERN_TRY(out_slot(c, i, &t));
    if (n < 0) return op_error(c, "negative sequence length");
    t->kind = TENSOR_SEQUENCE;
    t->dtype = elem;
    t->rank = 1;
    t->dims[0] = n;
    t->numel = n;
    t->data = arena_calloc(&c->frame->x->mem, (size_t)(n ? n : 1) * sizeof(tern_tensor *));
    if (!t->data) return oom();
    *elems = t->data;
    return NULL;
}

tern_status *op_out_none(op_ctx *c, int i, tern_dtype elem)
{
    tern_tensor *t = NULL;
    TERN_TRY(out_slot(c, i, &t));
    t->kind = TENSOR_NONE;
    t->dtype = elem;
    return NULL;
}

tern_status *op_out_value(op_ctx *c, int i, const tern_tensor *v)
{
    tern_tensor *t = NULL;
    TERN_TRY(out_slot(c, i, &t));
    *t = *v;
    t->owns = false;
    return NULL;
}

/* ---- subgraphs --------------------------------------------------------- */

int op_graph_n_inputs(const struct graph *g)
{
    return g->n_inputs;
}
int op_graph_n_outputs(const struct graph *g)
{
    return g->n_outputs;
}

tern_status *op_run_graph(op_ctx *c, const struct graph *g, int n_in, const tern_tensor *const *in,
                          tern_tensor **out)
{
    exec_frame *f = c->frame;
    /* the caller's node state is restored: nested runs reuse the frame fields */
    const graph_node *node = f->node;
    tern_tensor **outs = f->outs;
    int n_outs = f->n_outs;
    tern_status *st = exec_graph(f->x, f, g, n_in, in, (const tern_tensor **)out);
    f->node = node;
    f->outs = outs;
    f->n_outs = n_outs;
    return st ? tern_error_wrap(st, "in subgraph of node '%s' (%s)", c->node->name,
                                c->node->op_type)
              : NULL;
}

/* ---- running a graph --------------------------------------------------- */

static const tern_tensor *value_of(const exec_frame *f, int v)
{
    for (;;) {
        const graph_value *gv = &f->g->values[v];
        if (f->vals[v] || gv->outer < 0 || !f->parent) return f->vals[v];
        v = gv->outer;
        f = f->parent;
    }
}

tern_status *exec_graph(exec_state *x, exec_frame *parent, const graph *g, int n_in,
                        const tern_tensor *const *in, const tern_tensor **out)
{
    exec_frame f = {.x = x, .g = g, .parent = parent};
    f.planned = !parent && x->live && x->live->g == g;
    f.vals = arena_calloc(&x->mem, (size_t)(g->n_values ? g->n_values : 1) * sizeof *f.vals);
    if (!f.vals) return oom();
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].init) f.vals[v] = g->values[v].init;
    if (n_in > g->n_inputs)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "graph '%s' takes %d inputs, got %d", g->name,
                          g->n_inputs, n_in);
    for (int i = 0; i < n_in; i++)
        if (in[i]) f.vals[g->inputs[i]] = in[i];

    int max_out = 1, max_in = 1;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].n_out > max_out) max_out = g->nodes[i].n_out;
        if (g->nodes[i].n_in > max_in) max_in = g->nodes[i].n_in;
    }
    const tern_tensor **ins = arena_alloc(&x->mem, (size_t)max_in * sizeof *ins);
    tern_tensor **outs = arena_alloc(&x->mem, (size_t)max_out * sizeof *outs);
    if (!ins || !outs) return oom();

    for (int i = 0; i < g->n_nodes; i++) {
        const graph_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            ins[k] = n->in[k] >= 0 ? value_of(&f, n->in[k]) : NULL;
            if (n->in[k] >= 0 && !ins[k])
                return tern_error(TERN_ERR_INVALID_ARGUMENT,
                                  "node '%s' (%s): input '%s' has no value (missing graph input)",
                                  n->op.name, n->op.op_type, g->values[n->in[k]].name);
        }
        memset(outs, 0, (size_t)max_out * sizeof *outs);
        if (f.planned) exec_mem_node_begin(&x->mm);
        f.node = n;
        f.outs = outs;
        f.n_outs = n->n_out;
        op_ctx c = {.node = &n->op,
                    .opset = n->opset,
                    .n_in = n->n_in,
                    .in = ins,
                    .n_out = n->n_out,
                    .out = outs,
                    .pool = x->pool,
                    .frame = &f,
                    .state = n->state};
        if (!(n->def->flags & OP_TAKES_C16)) TERN_TRY(op_plain_inputs(&c, ins));
        TERN_TRY(n->def->fn(&c));
        for (int k = 0; k < n->n_out; k++) {
            if (n->out[k] < 0) continue;
            if (!outs[k])
                return tern_error(TERN_ERR_RUNTIME, "node '%s' (%s): output %d was not produced",
                                  n->op.name, n->op.op_type, k);
            f.vals[n->out[k]] = outs[k];
            if (f.planned) exec_mem_hold(&x->mm, outs[k]);
        }
        if (f.planned) {
            exec_mem_node_done(&x->mm);
            const exec_live *l = x->live;
            for (int k = l->kill_at[i]; k < l->kill_at[i + 1]; k++)
                exec_mem_drop(&x->mm, f.vals[l->kill[k]]);
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        out[i] = value_of(&f, g->outputs[i]);
        if (!out[i])
            return tern_error(TERN_ERR_INVALID_ARGUMENT, "graph output '%s' has no value",
                              g->values[g->outputs[i]].name);
        if (out[i]->layout != LAYOUT_PLAIN) { /* a blocked conv output, see ops/op.h */
            op_node on = {.name = g->values[g->outputs[i]].name, .op_type = "output", .domain = ""};
            op_ctx c = {.node = &on, .pool = x->pool, .frame = &f};
            TERN_TRY(op_plain_value(&c, out[i], &out[i]));
        }
    }
    return NULL;
}

/* ---- inferences -------------------------------------------------------- */

tern_status *exec_state_init(exec_state *x, int threads)
{
    memset(x, 0, sizeof *x);
    arena_init(&x->mem);
    exec_mem_init(&x->mm);
    x->pool = tpool_create(threads > 0 ? threads : 1);
    return x->pool ? NULL : oom();
}

void exec_state_free(exec_state *x)
{
    arena_free(&x->mem);
    exec_mem_free(&x->mm);
    exec_live_free(x->live);
    tpool_free(x->pool);
    free(x->key);
    memset(x, 0, sizeof *x);
}

/* The signature of the inputs: what decides the sizes a run asks for. A
 * plan is checked while it is replayed, so this only has to tell apart
 * inputs that usually need different memory. */
static int signature(exec_state *x, const graph *g, const tern_tensor *const *in)
{
    int n = 0;
    for (int i = 0; i < g->n_inputs; i++) {
        const tern_tensor *t = in[i];
        if (!t) {
            x->key[n++] = -1;
            continue;
        }
        x->key[n++] = t->kind;
        x->key[n++] = t->dtype;
        if (t->kind != TENSOR_DENSE) {
            x->key[n++] = t->numel;
            continue;
        }
        x->key[n++] = t->rank;
        for (int d = 0; d < t->rank; d++) x->key[n++] = t->dims[d];
    }
    return n;
}

void exec_stats(const exec_state *x, mem_stats *st, size_t *bump_bytes)
{
    exec_mem_stats(&x->mm, st);
    *bump_bytes = x->mem.total;
}

tern_status *exec_run(exec_state *x, const graph *g, const tern_tensor *const *in,
                      const tern_tensor **out)
{
    if (!x->live || x->live->g != g) {
        exec_live_free(x->live);
        x->live = NULL;
        TERN_TRY(exec_live_build(g, &x->live));
        free(x->key);
        x->cap_key = g->n_inputs * (3 + TERN_MAX_RANK) + 1;
        x->key = malloc((size_t)x->cap_key * sizeof *x->key);
        if (!x->key) return oom();
    }
    arena_reset(&x->mem);
    TERN_TRY(exec_mem_begin(&x->mm, x->key, signature(x, g, in)));
    tern_status *st = exec_graph(x, NULL, g, g->n_inputs, in, out);
    exec_mem_end(&x->mm, !st);
    if (x->mm.stats) {
        mem_stats ms;
        size_t bump;
        exec_stats(x, &ms, &bump);
        log_info("inference memory", LOG_S("mode", ms.mode), LOG_I("peak_bytes", ms.peak),
                 LOG_I("end_bytes", ms.end_bytes), LOG_I("plan_bytes", ms.plan_bytes),
                 LOG_I("heap_bytes", ms.heap_reserved), LOG_I("bump_bytes", bump),
                 LOG_I("inplace", ms.inplace));
    }
    return st;
}

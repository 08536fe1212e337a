/*
 * Operator family: control flow (If, Loop, Scan).
 *
 * Each operator runs a subgraph attribute through the executor
 * (op_run_graph), which resolves the body's references to outer-scope values
 * and returns the body's outputs as arena tensors. Those live until the
 * inference ends, so loop-carried values are passed from one iteration to the
 * next by pointer, and the node's final values are views of them
 * (op_out_value). Only scan outputs are copied: the per-iteration tensors are
 * kept until the loop ends, then stacked into one output along the scan axis.
 *
 * Scan inputs are sliced per iteration. A slice along axis 0 is contiguous,
 * so it is a tensor header pointing into the input (no copy); a slice along
 * another axis is gathered into a new arena tensor.
 */
#include <string.h>

#include "ops/op.h"

static tern_status *graph_attr(op_ctx *c, const char *name, const struct graph **g)
{
    const op_attr *a = op_attr_get(c, name);
    if (!a || a->type != ATTR_GRAPH || !a->g)
        return op_error(c, "graph attribute '%s' is required", name);
    *g = a->g;
    return NULL;
}

/* True/false of a one-element condition tensor. */
static tern_status *read_cond(op_ctx *c, const tern_tensor *t, const char *what, bool *v)
{
    if (t->kind != TENSOR_DENSE || t->numel != 1 || t->dtype == TERN_STRING)
        return op_error(c, "%s must be a one-element bool tensor", what);
    *v = op_get_f64(t, 0) != 0;
    return NULL;
}

/* Output oi = the items stacked along new axes inserted at `axis`: the items
 * fill the lead dims (nlead of them, row-major; items[p] for flat position p)
 * and must share one dtype and shape. A NULL item is zero-filled (Scan-8 past
 * a sequence's length). With no item to take the shape from, the result is
 * an empty float tensor of the lead dims. */
static tern_status *stack_out(op_ctx *c, int oi, int axis, int nlead, const int64_t *lead,
                              tern_tensor *const *items)
{
    int64_t n = 1;
    for (int i = 0; i < nlead; i++) n *= lead[i];
    const tern_tensor *ref = NULL;
    for (int64_t p = 0; p < n && !ref; p++) ref = items[p];
    tern_tensor *y;
    if (!ref) return op_out(c, oi, TERN_FLOAT, nlead, lead, &y);
    for (int64_t p = 0; p < n; p++)
        if (items[p] && (items[p]->kind != TENSOR_DENSE || items[p]->dtype != ref->dtype ||
                         !shape_equal(items[p], ref)))
            return op_error(c, "scan output %d changes type or shape between iterations", oi);
    if (ref->rank + nlead > TERN_MAX_RANK) return op_error(c, "scan output rank is too large");
    if (axis < 0 || axis > ref->rank)
        return op_error(c, "scan output axis %d is out of range for rank %d", axis,
                        ref->rank + nlead);
    int64_t dims[TERN_MAX_RANK], outer = 1, inner = 1;
    int r = 0;
    for (int i = 0; i < axis; i++) outer *= dims[r++] = ref->dims[i];
    for (int i = 0; i < nlead; i++) dims[r++] = lead[i];
    for (int i = axis; i < ref->rank; i++) inner *= dims[r++] = ref->dims[i];
    TERN_TRY(op_out(c, oi, ref->dtype, r, dims, &y));
    size_t run = (size_t)inner * dtype_elem_size(ref->dtype);
    if (!run) return NULL;
    char *empty = NULL;
    if (ref->dtype == TERN_STRING) TERN_TRY(op_strdup(c, "", &empty));
    char *dst = y->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t p = 0; p < n; p++, dst += run) {
            if (items[p]) {
                memcpy(dst, (const char *)items[p]->data + (size_t)o * run, run);
            } else if (empty) {
                for (int64_t k = 0; k < inner; k++) ((char **)dst)[k] = empty;
            } else {
                memset(dst, 0, run);
            }
        }
    return NULL;
}

/* A growable array of tensor pointers in scratch memory (arena memory is not
 * freed, so growth doubles to keep the waste bounded). */
typedef struct ptr_vec {
    tern_tensor **v;
    int64_t n, cap;
} ptr_vec;

static tern_status *ptr_vec_push(op_ctx *c, ptr_vec *pv, tern_tensor *t)
{
    if (pv->n == pv->cap) {
        int64_t cap = pv->cap ? 2 * pv->cap : 16;
        tern_tensor **v;
        TERN_TRY(op_scratch(c, (size_t)cap * sizeof *v, (void **)&v));
        if (pv->n) memcpy(v, pv->v, (size_t)pv->n * sizeof *v);
        pv->v = v, pv->cap = cap;
    }
    pv->v[pv->n++] = t;
    return NULL;
}

/* ---- If ------------------------------------------------------------------ */

static tern_status *if_op(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    bool cond = false;
    TERN_TRY(read_cond(c, c->in[0], "cond", &cond));
    const struct graph *g = NULL;
    TERN_TRY(graph_attr(c, cond ? "then_branch" : "else_branch", &g));
    int n = op_graph_n_outputs(g);
    if (n < c->n_out)
        return op_error(c, "%s gives %d outputs, node has %d", cond ? "then_branch" : "else_branch",
                        n, c->n_out);
    tern_tensor **res;
    TERN_TRY(op_scratch(c, (size_t)(n + 1) * sizeof *res, (void **)&res));
    TERN_TRY(op_run_graph(c, g, 0, NULL, res));
    for (int i = 0; i < c->n_out; i++) TERN_TRY(op_out_value(c, i, res[i]));
    return NULL;
}

/* ---- Loop ---------------------------------------------------------------- */

/* Inputs (M, cond, v...); body (iter, cond, v...) -> (cond, v..., scans...);
 * outputs (v_final..., scans stacked along a new axis 0). */
static tern_status *loop_op(op_ctx *c)
{
    const struct graph *g = NULL;
    TERN_TRY(graph_attr(c, "body", &g));
    if (c->n_in < 2) return op_error(c, "needs inputs M and cond (either may be empty)");
    const tern_tensor *m_t = c->in[0], *cond_t = c->in[1];
    int nv = c->n_in - 2, nb_out = op_graph_n_outputs(g), ns = nb_out - 1 - nv;
    if (op_graph_n_inputs(g) != nv + 2)
        return op_error(c, "body takes %d inputs, expected %d", op_graph_n_inputs(g), nv + 2);
    if (ns < 0 || c->n_out > nv + ns)
        return op_error(c, "body gives %d outputs for %d loop-carried values and %d node outputs",
                        nb_out, nv, c->n_out);
    for (int i = 0; i < nv; i++) TERN_TRY(op_need_input(c, 2 + i));
    int64_t max_trip = INT64_MAX;
    if (m_t) {
        if (m_t->kind != TENSOR_DENSE || m_t->numel != 1 || !dtype_is_int(m_t->dtype))
            return op_error(c, "M must be an int64 scalar");
        max_trip = op_get_i64(m_t, 0);
    }
    bool cond = true;
    if (cond_t) TERN_TRY(read_cond(c, cond_t, "cond", &cond));
    if (!m_t && !cond_t) return op_error(c, "a loop with neither M nor cond never ends");

    const tern_tensor **in;
    tern_tensor **res;
    ptr_vec *scans;
    TERN_TRY(op_scratch(c, (size_t)(nv + 2) * sizeof *in, (void **)&in));
    TERN_TRY(op_scratch(c, (size_t)nb_out * sizeof *res, (void **)&res));
    TERN_TRY(op_scratch(c, (size_t)(ns + 1) * sizeof *scans, (void **)&scans));
    memset(scans, 0, (size_t)(ns + 1) * sizeof *scans);
    for (int i = 0; i < nv; i++) in[2 + i] = c->in[2 + i];

    int64_t it = 0;
    for (; it < max_trip && cond; it++) {
        tern_tensor *it_t, *cd_t;
        TERN_TRY(op_new_tensor(c, TERN_INT64, 0, NULL, &it_t));
        TERN_TRY(op_new_tensor(c, TERN_BOOL, 0, NULL, &cd_t));
        *(int64_t *)it_t->data = it;
        *(uint8_t *)cd_t->data = cond;
        in[0] = it_t, in[1] = cd_t;
        TERN_TRY(op_run_graph(c, g, nv + 2, in, res));
        if (cond_t) TERN_TRY(read_cond(c, res[0], "the body's cond output", &cond));
        for (int i = 0; i < nv; i++) in[2 + i] = res[1 + i];
        for (int k = 0; k < ns; k++) TERN_TRY(ptr_vec_push(c, &scans[k], res[1 + nv + k]));
    }
    for (int i = 0; i < nv && i < c->n_out; i++) TERN_TRY(op_out_value(c, i, in[2 + i]));
    for (int k = 0; k < ns && nv + k < c->n_out; k++)
        TERN_TRY(stack_out(c, nv + k, 0, 1, &it, scans[k].v));
    return NULL;
}

/* ---- Scan ---------------------------------------------------------------- */

/* Slice `pos` of t along `axis` (the axis removed): a view into t's data
 * when the slice is contiguous, otherwise a gathered copy. */
static tern_status *scan_slice(op_ctx *c, const tern_tensor *t, int axis, int64_t pos,
                               tern_tensor **out)
{
    int64_t dims[TERN_MAX_RANK], outer = 1, inner = 1;
    int r = 0;
    for (int i = 0; i < t->rank; i++) {
        if (i == axis) continue;
        dims[r++] = t->dims[i];
        if (i < axis)
            outer *= t->dims[i];
        else
            inner *= t->dims[i];
    }
    size_t es = dtype_elem_size(t->dtype), run = (size_t)inner * es;
    int64_t d = t->dims[axis];
    if (outer == 1) {
        tern_tensor *v;
        TERN_TRY(op_scratch(c, sizeof *v, (void **)&v));
        memset(v, 0, sizeof *v);
        v->kind = TENSOR_DENSE;
        v->dtype = t->dtype;
        TERN_TRY(tensor_set_shape(v, r, dims));
        v->data = (char *)t->data + (size_t)pos * run;
        *out = v;
        return NULL;
    }
    TERN_TRY(op_new_tensor(c, t->dtype, r, dims, out));
    if (run)
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)(*out)->data + (size_t)o * run,
                   (const char *)t->data + (size_t)(o * d + pos) * run, run);
    return NULL;
}

/* Reads an optional INTS attribute of n entries (default all 0). */
static tern_status *scan_ints(op_ctx *c, const char *name, int n, int64_t **v)
{
    TERN_TRY(op_scratch(c, (size_t)(n + 1) * sizeof **v, (void **)v));
    memset(*v, 0, (size_t)(n + 1) * sizeof **v);
    const int64_t *a;
    int na = op_attr_ints(c, name, &a);
    if (na < 0) return NULL;
    if (na != n) return op_error(c, "attribute '%s' has %d entries, expected %d", name, na, n);
    memcpy(*v, a, (size_t)n * sizeof **v);
    return NULL;
}

/* Opset 9+: inputs (states..., scan inputs...); body (states..., slices...)
 * -> (states..., scan slices...); outputs (final states..., scan outputs...). */
static tern_status *scan9(op_ctx *c, const struct graph *g, int nscan)
{
    int nst = c->n_in - nscan, nb_out = op_graph_n_outputs(g), nso = nb_out - nst;
    if (nst < 0 || op_graph_n_inputs(g) != c->n_in)
        return op_error(c, "body takes %d inputs, node has %d with %d scan inputs",
                        op_graph_n_inputs(g), c->n_in, nscan);
    if (nso < 0 || c->n_out > nb_out)
        return op_error(c, "body gives %d outputs, node has %d", nb_out, c->n_out);
    int64_t *in_axes, *in_dirs, *out_axes, *out_dirs;
    TERN_TRY(scan_ints(c, "scan_input_axes", nscan, &in_axes));
    TERN_TRY(scan_ints(c, "scan_input_directions", nscan, &in_dirs));
    TERN_TRY(scan_ints(c, "scan_output_axes", nso, &out_axes));
    TERN_TRY(scan_ints(c, "scan_output_directions", nso, &out_dirs));
    int64_t T = -1;
    for (int j = 0; j < nscan; j++) {
        TERN_TRY(op_need_input(c, nst + j));
        const tern_tensor *t = c->in[nst + j];
        if (t->kind != TENSOR_DENSE || t->rank == 0)
            return op_error(c, "scan input %d must be a tensor of rank >= 1", j);
        int ax;
        TERN_TRY(op_axis(c, in_axes[j], t->rank, &ax));
        in_axes[j] = ax;
        if (T >= 0 && t->dims[ax] != T)
            return op_error(c, "scan inputs differ in length (%lld and %lld)", (long long)T,
                            (long long)t->dims[ax]);
        T = t->dims[ax];
    }
    if (T < 0) return op_error(c, "needs at least one scan input");
    for (int i = 0; i < nst; i++) TERN_TRY(op_need_input(c, i));

    const tern_tensor **in;
    tern_tensor **res, **items; /* items[k * T + p]: scan output k at position p */
    TERN_TRY(op_scratch(c, (size_t)c->n_in * sizeof *in, (void **)&in));
    TERN_TRY(op_scratch(c, (size_t)nb_out * sizeof *res, (void **)&res));
    TERN_TRY(op_scratch(c, (size_t)(nso * T + 1) * sizeof *items, (void **)&items));
    for (int i = 0; i < nst; i++) in[i] = c->in[i];
    for (int64_t t = 0; t < T; t++) {
        for (int j = 0; j < nscan; j++) {
            tern_tensor *s;
            TERN_TRY(
                scan_slice(c, c->in[nst + j], (int)in_axes[j], in_dirs[j] ? T - 1 - t : t, &s));
            in[nst + j] = s;
        }
        TERN_TRY(op_run_graph(c, g, c->n_in, in, res));
        for (int i = 0; i < nst; i++) in[i] = res[i];
        for (int k = 0; k < nso; k++) items[k * T + (out_dirs[k] ? T - 1 - t : t)] = res[nst + k];
    }
    for (int i = 0; i < nst && i < c->n_out; i++) TERN_TRY(op_out_value(c, i, in[i]));
    for (int k = 0; k < nso && nst + k < c->n_out; k++) {
        int64_t ax = out_axes[k];
        if (T > 0) {
            int r = items[k * T]->rank + 1;
            if (ax < -r || ax >= r)
                return op_error(c, "scan_output_axes[%d] = %lld is out of range for rank %d", k,
                                (long long)ax, r);
            if (ax < 0) ax += r;
        }
        TERN_TRY(stack_out(c, nst + k, (int)ax, 1, &T, items + k * T));
    }
    return NULL;
}

/* Opset 8: inputs (sequence_lens?, states..., scan inputs...), every input
 * and output with a leading batch axis, scan inputs/outputs [batch, seq, ...].
 * Batch b runs sequence_lens[b] iterations; scan outputs past that are 0. */
static tern_status *scan8(op_ctx *c, const struct graph *g, int nscan)
{
    const tern_tensor *lens_t = c->in[0];
    int nst = c->n_in - 1 - nscan, nb_out = op_graph_n_outputs(g), nso = nb_out - nst;
    if (nst < 0 || op_graph_n_inputs(g) != nst + nscan)
        return op_error(c, "body takes %d inputs, node has %d with %d scan inputs",
                        op_graph_n_inputs(g), c->n_in, nscan);
    if (nso < 0 || c->n_out > nb_out)
        return op_error(c, "body gives %d outputs, node has %d", nb_out, c->n_out);
    int64_t *dirs;
    TERN_TRY(scan_ints(c, "directions", nscan, &dirs));
    int64_t B = -1, T = -1;
    for (int j = 0; j < nst + nscan; j++) {
        TERN_TRY(op_need_input(c, 1 + j));
        const tern_tensor *t = c->in[1 + j];
        bool sc = j >= nst;
        if (t->kind != TENSOR_DENSE || t->rank < 1 + sc)
            return op_error(c, "input %d must be a tensor of rank >= %d", 1 + j, 1 + sc);
        if (B >= 0 && t->dims[0] != B) return op_error(c, "inputs differ in batch size");
        B = t->dims[0];
        if (sc && T >= 0 && t->dims[1] != T)
            return op_error(c, "scan inputs differ in sequence length");
        if (sc) T = t->dims[1];
    }
    if (T < 0) return op_error(c, "needs at least one scan input");
    int64_t *lens = NULL, nl;
    if (lens_t) {
        TERN_TRY(op_read_ints(c, lens_t, &lens, &nl));
        if (nl != B)
            return op_error(c, "sequence_lens has %lld entries, batch is %lld", (long long)nl,
                            (long long)B);
        for (int64_t b = 0; b < B; b++)
            if (lens[b] < 0 || lens[b] > T)
                return op_error(c, "sequence_lens[%lld] = %lld is out of range [0, %lld]",
                                (long long)b, (long long)lens[b], (long long)T);
    }

    const tern_tensor **in;
    tern_tensor **res, **finals, **items; /* finals[i * B + b]; items[k * B * T + b * T + t] */
    TERN_TRY(op_scratch(c, (size_t)(nst + nscan + 1) * sizeof *in, (void **)&in));
    TERN_TRY(op_scratch(c, (size_t)(nb_out + 1) * sizeof *res, (void **)&res));
    TERN_TRY(op_scratch(c, (size_t)(nst * B + 1) * sizeof *finals, (void **)&finals));
    TERN_TRY(op_scratch(c, (size_t)(nso * B * T + 1) * sizeof *items, (void **)&items));
    memset(items, 0, (size_t)(nso * B * T + 1) * sizeof *items);
    for (int64_t b = 0; b < B; b++) {
        int64_t len = lens ? lens[b] : T;
        for (int i = 0; i < nst; i++) {
            tern_tensor *s;
            TERN_TRY(scan_slice(c, c->in[1 + i], 0, b, &s));
            in[i] = s;
        }
        for (int64_t t = 0; t < len; t++) {
            for (int j = 0; j < nscan; j++) {
                tern_tensor *row, *s;
                TERN_TRY(scan_slice(c, c->in[1 + nst + j], 0, b, &row));
                TERN_TRY(scan_slice(c, row, 0, dirs[j] ? len - 1 - t : t, &s));
                in[nst + j] = s;
            }
            TERN_TRY(op_run_graph(c, g, nst + nscan, in, res));
            for (int i = 0; i < nst; i++) in[i] = res[i];
            for (int k = 0; k < nso; k++) items[(k * B + b) * T + t] = res[nst + k];
        }
        for (int i = 0; i < nst; i++) finals[i * B + b] = (tern_tensor *)in[i];
    }
    int64_t lead[2] = {B, T};
    for (int i = 0; i < nst && i < c->n_out; i++)
        TERN_TRY(stack_out(c, i, 0, 1, &B, finals + i * B));
    for (int k = 0; k < nso && nst + k < c->n_out; k++)
        TERN_TRY(stack_out(c, nst + k, 0, 2, lead, items + k * B * T));
    return NULL;
}

static tern_status *scan_op(op_ctx *c)
{
    const struct graph *g = NULL;
    TERN_TRY(graph_attr(c, "body", &g));
    const op_attr *a = op_attr_get(c, "num_scan_inputs");
    if (!a || a->type != ATTR_INT || a->i < 1 || a->i > c->n_in)
        return op_error(c, "attribute 'num_scan_inputs' must be in [1, %d]", c->n_in);
    if (c->opset < 9) {
        if (c->n_in < 1 + a->i) return op_error(c, "too few inputs");
        return scan8(c, g, (int)a->i);
    }
    return scan9(c, g, (int)a->i);
}

const op_def ops_control[] = {
    {"", "If", 1, 17, if_op},
    {"", "Loop", 1, 17, loop_op},
    {"", "Scan", 8, 17, scan_op},
    {0},
};

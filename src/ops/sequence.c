/*
 * Operator family: sequences and optionals.
 *
 * A sequence is a tern_tensor of kind TENSOR_SEQUENCE whose data is an array
 * of numel element pointers (dtype is the element type). Values are never
 * mutated once produced and all live until the inference ends, so sequence
 * operators share elements instead of copying them: SequenceInsert builds a
 * new pointer array around the same tensors, SequenceAt returns a view of an
 * element. Only SplitToSequence and ConcatFromSequence move data.
 *
 * An optional is either its value itself (tensor or sequence) or, when empty,
 * a value of kind TENSOR_NONE; Optional / OptionalGetElement are therefore
 * views too.
 */
#include <string.h>

#include "ops/op.h"

static tern_status *need_seq(const op_ctx *c, int i, tern_tensor *const **el)
{
    TERN_TRY(op_need_input(c, i));
    if (c->in[i]->kind != TENSOR_SEQUENCE) return op_error(c, "input %d must be a sequence", i);
    *el = (tern_tensor *const *)c->in[i]->data;
    return NULL;
}

static tern_status *need_tensor(const op_ctx *c, int i)
{
    TERN_TRY(op_need_input(c, i));
    if (c->in[i]->kind != TENSOR_DENSE) return op_error(c, "input %d must be a tensor", i);
    return NULL;
}

/* Reads the scalar position input i (absent: dflt) and checks it against
 * [-n, n - 1 + end_ok]; negative positions count from the back. */
static tern_status *read_position(op_ctx *c, int i, int64_t n, bool end_ok, int64_t dflt,
                                  int64_t *pos)
{
    int64_t p = dflt;
    if (i < c->n_in && c->in[i]) {
        const tern_tensor *t = c->in[i];
        if (t->kind != TENSOR_DENSE || t->numel != 1 ||
            (t->dtype != TERN_INT32 && t->dtype != TERN_INT64))
            return op_error(c, "position must be an int32 or int64 scalar");
        p = op_get_i64(t, 0);
    }
    if (p < -n || p > n - 1 + end_ok)
        return op_error(c, "position %lld is out of range for a sequence of %lld", (long long)p,
                        (long long)n);
    *pos = p < 0 ? p + n : p;
    return NULL;
}

static tern_status *sequence_empty(op_ctx *c)
{
    int64_t dt = op_attr_int(c, "dtype", TERN_FLOAT);
    if (!dtype_valid((int)dt)) return op_error(c, "invalid dtype %lld", (long long)dt);
    tern_tensor **el;
    return op_out_sequence(c, 0, (tern_dtype)dt, 0, &el);
}

static tern_status *sequence_construct(op_ctx *c)
{
    if (c->n_in < 1) return op_error(c, "needs at least one input");
    for (int i = 0; i < c->n_in; i++) {
        TERN_TRY(need_tensor(c, i));
        if (c->in[i]->dtype != c->in[0]->dtype)
            return op_error(c, "input %d has type %s, input 0 has %s", i,
                            tern_dtype_name(c->in[i]->dtype), tern_dtype_name(c->in[0]->dtype));
    }
    tern_tensor **el;
    TERN_TRY(op_out_sequence(c, 0, c->in[0]->dtype, c->n_in, &el));
    for (int i = 0; i < c->n_in; i++) el[i] = (tern_tensor *)c->in[i];
    return NULL;
}

static tern_status *sequence_insert(op_ctx *c)
{
    tern_tensor *const *src = NULL;
    TERN_TRY(need_seq(c, 0, &src));
    TERN_TRY(need_tensor(c, 1));
    const tern_tensor *s = c->in[0], *t = c->in[1];
    int64_t n = s->numel, pos;
    if (n > 0 && t->dtype != s->dtype)
        return op_error(c, "tensor type %s differs from the sequence's %s",
                        tern_dtype_name(t->dtype), tern_dtype_name(s->dtype));
    TERN_TRY(read_position(c, 2, n, true, n, &pos));
    tern_tensor **el;
    TERN_TRY(op_out_sequence(c, 0, t->dtype, n + 1, &el));
    for (int64_t i = 0, k = 0; i <= n; i++) el[i] = i == pos ? (tern_tensor *)t : src[k++];
    return NULL;
}

static tern_status *sequence_at(op_ctx *c)
{
    tern_tensor *const *src = NULL;
    TERN_TRY(need_seq(c, 0, &src));
    int64_t pos;
    TERN_TRY(op_need_input(c, 1));
    TERN_TRY(read_position(c, 1, c->in[0]->numel, false, 0, &pos));
    return op_out_value(c, 0, src[pos]);
}

static tern_status *sequence_erase(op_ctx *c)
{
    tern_tensor *const *src = NULL;
    TERN_TRY(need_seq(c, 0, &src));
    int64_t n = c->in[0]->numel, pos;
    TERN_TRY(read_position(c, 1, n, false, -1, &pos));
    tern_tensor **el;
    TERN_TRY(op_out_sequence(c, 0, c->in[0]->dtype, n - 1, &el));
    for (int64_t i = 0, k = 0; i < n; i++)
        if (i != pos) el[k++] = src[i];
    return NULL;
}

static tern_status *sequence_length(op_ctx *c)
{
    tern_tensor *const *src = NULL;
    TERN_TRY(need_seq(c, 0, &src));
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_INT64, 0, NULL, &y));
    *(int64_t *)y->data = c->in[0]->numel;
    return NULL;
}

/* Splits along `axis` into chunks: of size 1 (squeezed unless keepdims) when
 * `split` is absent, of a fixed size (the last one shorter) when it is a
 * scalar, of the listed sizes when it is 1-D. */
static tern_status *split_to_sequence(op_ctx *c)
{
    TERN_TRY(need_tensor(c, 0));
    const tern_tensor *x = c->in[0];
    const tern_tensor *sp = c->n_in > 1 ? c->in[1] : NULL;
    if (x->rank == 0) return op_error(c, "cannot split a scalar");
    int axis;
    TERN_TRY(op_axis(c, op_attr_int(c, "axis", 0), x->rank, &axis));
    int64_t d = x->dims[axis], n, fixed = 1, *sizes = NULL;
    bool squeeze = !sp && op_attr_int(c, "keepdims", 1) == 0;
    if (!sp) {
        n = d;
    } else if (sp->rank == 0) {
        if (sp->kind != TENSOR_DENSE || !dtype_is_int(sp->dtype) ||
            (fixed = op_get_i64(sp, 0)) <= 0)
            return op_error(c, "split must be a positive integer");
        n = d / fixed + (d % fixed != 0);
    } else {
        TERN_TRY(op_read_ints(c, sp, &sizes, &n));
        int64_t sum = 0;
        for (int64_t i = 0; i < n; i++) {
            if (sizes[i] < 0 || sizes[i] > d - sum)
                return op_error(c, "split sizes do not add up to dimension %lld", (long long)d);
            sum += sizes[i];
        }
        if (sum != d)
            return op_error(c, "split sizes add up to %lld, dimension is %lld", (long long)sum,
                            (long long)d);
    }
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++) outer *= x->dims[i];
    for (int i = axis + 1; i < x->rank; i++) inner *= x->dims[i];
    size_t es = dtype_elem_size(x->dtype);
    tern_tensor **el;
    TERN_TRY(op_out_sequence(c, 0, x->dtype, n, &el));
    int64_t off = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t len = sizes ? sizes[k] : (off + fixed > d ? d - off : fixed);
        int64_t dims[TERN_MAX_RANK];
        int rank = 0;
        for (int i = 0; i < x->rank; i++) {
            if (i == axis && squeeze) continue;
            dims[rank++] = i == axis ? len : x->dims[i];
        }
        TERN_TRY(op_new_tensor(c, x->dtype, rank, dims, &el[k]));
        size_t run = (size_t)(len * inner) * es;
        for (int64_t o = 0; o < outer; o++)
            if (run)
                memcpy((char *)el[k]->data + (size_t)o * run,
                       (const char *)x->data + ((size_t)(o * d + off) * (size_t)inner) * es, run);
        off += len;
    }
    return NULL;
}

/* Concatenates the elements along `axis`, or stacks them along a new axis. */
static tern_status *concat_from_sequence(op_ctx *c)
{
    tern_tensor *const *el = NULL;
    TERN_TRY(need_seq(c, 0, &el));
    int64_t n = c->in[0]->numel;
    const op_attr *aa = op_attr_get(c, "axis");
    if (!aa || aa->type != ATTR_INT) return op_error(c, "attribute 'axis' is required");
    bool new_axis = op_attr_int(c, "new_axis", 0) != 0;
    if (n == 0) return op_error(c, "cannot concatenate an empty sequence");
    const tern_tensor *e0 = el[0];
    int r = e0->rank, axis;
    if (!new_axis && r == 0) return op_error(c, "cannot concatenate scalars");
    TERN_TRY(op_axis(c, aa->i, r + new_axis, &axis));
    int64_t dims[TERN_MAX_RANK], sum = 0;
    for (int64_t k = 0; k < n; k++) {
        const tern_tensor *e = el[k];
        if (e->kind != TENSOR_DENSE || e->dtype != e0->dtype || e->rank != r)
            return op_error(c, "element %lld differs in type or rank from element 0", (long long)k);
        for (int i = 0; i < r; i++)
            if (e->dims[i] != e0->dims[i] && (new_axis || i != axis))
                return op_error(c, "element %lld differs in shape from element 0", (long long)k);
        sum += new_axis ? 1 : e->dims[axis];
    }
    if (new_axis && r + 1 > TERN_MAX_RANK) return op_error(c, "result rank is too large");
    for (int i = 0, j = 0; i < r + new_axis; i++) {
        if (i == axis) {
            dims[i] = sum;
            if (!new_axis) j++;
        } else {
            dims[i] = e0->dims[j++];
        }
    }
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++) outer *= e0->dims[i];
    for (int i = axis + !new_axis; i < r; i++) inner *= e0->dims[i];
    size_t es = dtype_elem_size(e0->dtype);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, e0->dtype, r + new_axis, dims, &y));
    char *dst = y->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < n; k++) {
            size_t run = (size_t)((new_axis ? 1 : el[k]->dims[axis]) * inner) * es;
            if (!run) continue;
            memcpy(dst, (const char *)el[k]->data + (size_t)o * run, run);
            dst += run;
        }
    return NULL;
}

/* Runs the body once per position of the sequence inputs; tensor inputs are
 * passed unchanged to every run. Output k collects the body's k-th output. */
static tern_status *sequence_map(op_ctx *c)
{
    const op_attr *a = op_attr_get(c, "body");
    if (!a || a->type != ATTR_GRAPH) return op_error(c, "attribute 'body' is required");
    tern_tensor *const *first = NULL;
    TERN_TRY(need_seq(c, 0, &first));
    int64_t n = c->in[0]->numel;
    int nb_in = op_graph_n_inputs(a->g), nb_out = op_graph_n_outputs(a->g);
    if (nb_in != c->n_in) return op_error(c, "body takes %d inputs, node has %d", nb_in, c->n_in);
    if (nb_out < c->n_out)
        return op_error(c, "body gives %d outputs, node has %d", nb_out, c->n_out);
    for (int i = 0; i < c->n_in; i++) {
        TERN_TRY(op_need_input(c, i));
        if (c->in[i]->kind == TENSOR_SEQUENCE && c->in[i]->numel != n)
            return op_error(c, "sequence input %d has length %lld, input 0 has %lld", i,
                            (long long)c->in[i]->numel, (long long)n);
        if (c->in[i]->kind == TENSOR_NONE) return op_error(c, "input %d is empty", i);
    }
    const tern_tensor **in;
    tern_tensor **res; /* res[k * nb_out + j]: output j of run k */
    TERN_TRY(op_scratch(c, (size_t)c->n_in * sizeof *in, (void **)&in));
    TERN_TRY(op_scratch(c, (size_t)(n * nb_out + 1) * sizeof *res, (void **)&res));
    for (int64_t k = 0; k < n; k++) {
        for (int i = 0; i < c->n_in; i++) {
            const tern_tensor *t = c->in[i];
            in[i] = t->kind == TENSOR_SEQUENCE ? ((tern_tensor *const *)t->data)[k] : t;
        }
        TERN_TRY(op_run_graph(c, a->g, c->n_in, in, res + k * nb_out));
        for (int j = 0; j < nb_out; j++)
            if (res[k * nb_out + j]->kind != TENSOR_DENSE)
                return op_error(c, "body output %d is not a tensor", j);
    }
    for (int j = 0; j < c->n_out; j++) {
        /* With no runs the element type is unknown; the first input's is the
         * best guess. */
        tern_dtype dt = n ? res[j]->dtype : c->in[0]->dtype;
        tern_tensor **el;
        TERN_TRY(op_out_sequence(c, j, dt, n, &el));
        for (int64_t k = 0; k < n; k++) {
            el[k] = res[k * nb_out + j];
            if (el[k]->dtype != dt)
                return op_error(c, "body output %d changes type between runs", j);
        }
    }
    return NULL;
}

/* ---- optionals ----------------------------------------------------------- */

static tern_status *optional_make(op_ctx *c)
{
    if (c->n_in > 0 && c->in[0]) return op_out_value(c, 0, c->in[0]);
    const op_attr *a = op_attr_get(c, "type");
    if (!a || a->type != ATTR_TYPE_PROTO)
        return op_error(c, "attribute 'type' is required when the input is absent");
    return op_out_none(c, 0, (tern_dtype)a->tp_elem);
}

static tern_status *optional_has_element(op_ctx *c)
{
    if (c->opset < 18) TERN_TRY(op_need_input(c, 0));
    const tern_tensor *v = c->n_in > 0 ? c->in[0] : NULL;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_BOOL, 0, NULL, &y));
    *(uint8_t *)y->data = v && v->kind != TENSOR_NONE;
    return NULL;
}

static tern_status *optional_get_element(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    if (c->in[0]->kind == TENSOR_NONE) return op_error(c, "the optional input is empty");
    return op_out_value(c, 0, c->in[0]);
}

const op_def ops_sequence[] = {
    {"", "SequenceEmpty", 11, 17, sequence_empty},
    {"", "SequenceConstruct", 11, 17, sequence_construct},
    {"", "SequenceInsert", 11, 17, sequence_insert},
    {"", "SequenceAt", 11, 17, sequence_at},
    {"", "SequenceErase", 11, 17, sequence_erase},
    {"", "SequenceLength", 11, 17, sequence_length},
    {"", "SplitToSequence", 11, 17, split_to_sequence},
    {"", "ConcatFromSequence", 11, 17, concat_from_sequence},
    {"", "SequenceMap", 17, 17, sequence_map},
    {"", "Optional", 15, 17, optional_make},
    {"", "OptionalHasElement", 15, 17, optional_has_element},
    {"", "OptionalGetElement", 15, 17, optional_get_element},
    {0},
};

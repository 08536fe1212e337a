/* Attribute access and helpers shared by every operator family (op.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops/op.h"

const op_attr *op_node_attr(const op_node *n, const char *name)
{
    for (int i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

const op_attr *op_attr_get(const op_ctx *c, const char *name)
{
    return op_node_attr(c->node, name);
}

int64_t op_attr_int(const op_ctx *c, const char *name, int64_t dflt)
{
    const op_attr *a = op_attr_get(c, name);
    return a && a->type == ATTR_INT ? a->i : dflt;
}

float op_attr_float(const op_ctx *c, const char *name, float dflt)
{
    const op_attr *a = op_attr_get(c, name);
    if (!a) return dflt;
    if (a->type == ATTR_FLOAT) return a->f;
    if (a->type == ATTR_INT) return (float)a->i;
    return dflt;
}

const char *op_attr_str(const op_ctx *c, const char *name, const char *dflt)
{
    const op_attr *a = op_attr_get(c, name);
    return a && a->type == ATTR_STRING ? a->s : dflt;
}

int op_attr_ints(const op_ctx *c, const char *name, const int64_t **v)
{
    const op_attr *a = op_attr_get(c, name);
    if (!a || a->type != ATTR_INTS) return -1;
    *v = a->ints;
    return a->n;
}

int op_attr_floats(const op_ctx *c, const char *name, const float **v)
{
    const op_attr *a = op_attr_get(c, name);
    if (!a || a->type != ATTR_FLOATS) return -1;
    *v = a->floats;
    return a->n;
}

tern_status *op_error(const op_ctx *c, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tern_error(TERN_ERR_RUNTIME, "node '%s' (%s): %s", c->node->name, c->node->op_type, msg);
}

tern_status *op_axis(const op_ctx *c, int64_t axis, int rank, int *out)
{
    int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= (rank ? rank : 1))
        return op_error(c, "axis %lld is out of range for rank %d", (long long)axis, rank);
    *out = (int)a;
    return NULL;
}

tern_status *op_broadcast_shape(const op_ctx *c, int n, const tern_tensor *const *ts, int *rank,
                                int64_t *dims)
{
    int r = 0;
    for (int k = 0; k < n; k++)
        if (ts[k] && ts[k]->rank > r) r = ts[k]->rank;
    for (int i = 0; i < r; i++) dims[i] = 1;
    for (int k = 0; k < n; k++) {
        const tern_tensor *t = ts[k];
        if (!t) continue;
        for (int i = 0; i < t->rank; i++) {
            int64_t d = t->dims[i], *o = &dims[r - t->rank + i];
            if (d == *o || d == 1) continue;
            if (*o == 1) {
                *o = d;
                continue;
            }
            char a[160], b[160];
            return op_error(c, "shapes %s and %s cannot be broadcast",
                            shape_str(ts[0]->rank, ts[0]->dims, a, sizeof a),
                            shape_str(t->rank, t->dims, b, sizeof b));
        }
    }
    *rank = r;
    return NULL;
}

void op_bcast_strides(const tern_tensor *t, int rank, const int64_t *dims, int64_t *strides)
{
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        int ti = i - (rank - t->rank);
        if (ti < 0) {
            strides[i] = 0;
            continue;
        }
        strides[i] = (t->dims[ti] == 1 && dims[i] != 1) ? 0 : s;
        s *= t->dims[ti];
    }
}

tern_status *op_need_input(const op_ctx *c, int i)
{
    if (i < c->n_in && c->in[i]) return NULL;
    return op_error(c, "required input %d is missing", i);
}

tern_status *op_read_ints(op_ctx *c, const tern_tensor *t, int64_t **v, int64_t *n)
{
    if (t->kind != TENSOR_DENSE || !dtype_is_int(t->dtype))
        return op_error(c, "expected an integer tensor, got %s", tern_dtype_name(t->dtype));
    if (t->rank > 1) return op_error(c, "expected a 1-D tensor, got rank %d", t->rank);
    TERN_TRY(op_scratch(c, (size_t)(t->numel ? t->numel : 1) * sizeof(int64_t), (void **)v));
    for (int64_t i = 0; i < t->numel; i++) (*v)[i] = op_get_i64(t, i);
    *n = t->numel;
    return NULL;
}

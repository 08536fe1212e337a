/*
 * Shape-family operators that produce values: the shape or size of a
 * tensor, constants from attributes, filled tensors (ConstantOfShape), number
 * sequences (Range), identity matrices (EyeLike) and triangular masks of a
 * matrix (Trilu). None reads an input's elements through an index it did not
 * check first.
 */
#include <math.h>
#include <string.h>

#include "ops/shape_layout.h"
#include "ops/shape_make.h"

tern_status *shapeop_shape(op_ctx *c)
{
    const tern_tensor *x;
    TERN_TRY(shapeop_input(c, 0, &x));
    int64_t r = x->rank, start = 0, end = r;
    if (c->opset >= 15) {
        start = op_attr_int(c, "start", 0);
        end = op_attr_int(c, "end", r);
    }
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    int64_t n = end > start ? end - start : 0;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_INT64, 1, &n, &y));
    for (int64_t i = 0; i < n; i++) ((int64_t *)y->data)[i] = x->dims[start + i];
    return NULL;
}

tern_status *shapeop_size(op_ctx *c)
{
    const tern_tensor *x;
    TERN_TRY(shapeop_input(c, 0, &x));
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_INT64, 0, NULL, &y));
    *(int64_t *)y->data = x->numel;
    return NULL;
}

tern_status *shapeop_constant(op_ctx *c)
{
    const op_attr *a = NULL;
    for (int i = 0; i < c->node->n_attrs; i++)
        if (strncmp(c->node->attrs[i].name, "value", 5) == 0 ||
            strcmp(c->node->attrs[i].name, "sparse_value") == 0)
            a = &c->node->attrs[i];
    if (!a) return op_error(c, "no value attribute");
    tern_tensor *y;
    int64_t n = a->n;
    switch (a->type) {
    case ATTR_TENSOR:
        if (!a->t || a->t->kind != TENSOR_DENSE) return op_error(c, "value is not a tensor");
        return op_out_alias(c, 0, a->t, a->t->rank, a->t->dims);
    case ATTR_FLOAT:
        TERN_TRY(op_out(c, 0, TERN_FLOAT, 0, NULL, &y));
        *(float *)y->data = a->f;
        return NULL;
    case ATTR_INT:
        TERN_TRY(op_out(c, 0, TERN_INT64, 0, NULL, &y));
        *(int64_t *)y->data = a->i;
        return NULL;
    case ATTR_FLOATS:
        TERN_TRY(op_out(c, 0, TERN_FLOAT, 1, &n, &y));
        if (n) memcpy(y->data, a->floats, (size_t)n * sizeof(float));
        return NULL;
    case ATTR_INTS:
        TERN_TRY(op_out(c, 0, TERN_INT64, 1, &n, &y));
        if (n) memcpy(y->data, a->ints, (size_t)n * sizeof(int64_t));
        return NULL;
    case ATTR_STRING:
        TERN_TRY(op_out(c, 0, TERN_STRING, 0, NULL, &y));
        return op_strdup(c, a->s, (char **)y->data);
    case ATTR_STRINGS:
        TERN_TRY(op_out(c, 0, TERN_STRING, 1, &n, &y));
        for (int64_t i = 0; i < n; i++) TERN_TRY(op_strdup(c, a->strings[i], (char **)y->data + i));
        return NULL;
    default: return op_error(c, "unsupported attribute '%s'", a->name);
    }
}

tern_status *shapeop_constant_of_shape(op_ctx *c)
{
    const tern_tensor *s;
    int64_t *dims, r;
    TERN_TRY(shapeop_input(c, 0, &s));
    TERN_TRY(op_read_ints(c, s, &dims, &r));
    if (r > TERN_MAX_RANK) return op_error(c, "rank %lld is too large", (long long)r);
    const op_attr *a = op_attr_get(c, "value");
    tern_dtype dt = TERN_FLOAT;
    const void *val = NULL;
    static const unsigned char zero[16] = {0};
    if (a) {
        if (a->type != ATTR_TENSOR || !a->t || a->t->kind != TENSOR_DENSE || a->t->numel != 1 ||
            a->t->dtype == TERN_STRING || dtype_elem_size(a->t->dtype) == 0)
            return op_error(c, "value must be a one-element numeric tensor");
        dt = a->t->dtype;
        val = a->t->data;
    }
    for (int i = 0; i < r; i++)
        if (dims[i] < 0) return op_error(c, "negative dimension %lld", (long long)dims[i]);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, dt, (int)r, dims, &y));
    shapeop_fill(y->data, val ? val : zero, y->numel, dtype_elem_size(dt));
    return NULL;
}

tern_status *shapeop_range(op_ctx *c)
{
    const tern_tensor *t[3];
    for (int i = 0; i < 3; i++) {
        TERN_TRY(shapeop_input(c, i, &t[i]));
        if (t[i]->numel != 1) return op_error(c, "input %d must be a scalar", i);
        if (t[i]->dtype != t[0]->dtype) return op_error(c, "inputs differ in type");
    }
    tern_dtype dt = t[0]->dtype;
    tern_tensor *y;
    int64_t n;
    if (dtype_is_int(dt)) {
        /* In uint64 the distance and each value are exact (two's complement
         * wrap-around), whatever the signed inputs; no signed overflow. */
        int64_t start = op_get_i64(t[0], 0), limit = op_get_i64(t[1], 0),
                delta = op_get_i64(t[2], 0);
        if (delta == 0) return op_error(c, "delta is zero");
        uint64_t dist = 0, step = delta > 0 ? (uint64_t)delta : -(uint64_t)delta;
        if (delta > 0 && limit > start) dist = (uint64_t)limit - (uint64_t)start;
        if (delta < 0 && limit < start) dist = (uint64_t)start - (uint64_t)limit;
        uint64_t cnt = dist ? (dist - 1) / step + 1 : 0;
        if (cnt > ((uint64_t)1 << 40)) return op_error(c, "range too long");
        n = (int64_t)cnt;
        TERN_TRY(op_out(c, 0, dt, 1, &n, &y));
        for (int64_t i = 0; i < n; i++)
            dtype_set_i64(dt, y->data, i,
                          (int64_t)((uint64_t)start + (uint64_t)i * (uint64_t)delta));
    } else if (dtype_is_float(dt)) {
        double start = op_get_f64(t[0], 0), limit = op_get_f64(t[1], 0),
               delta = op_get_f64(t[2], 0);
        double cnt = ceil((limit - start) / delta);
        if (delta == 0) return op_error(c, "delta is zero");
        if (isnan(cnt)) return op_error(c, "start, limit or delta is not finite");
        if (cnt > (double)((int64_t)1 << 40)) return op_error(c, "range too long");
        n = cnt > 0 ? (int64_t)cnt : 0;
        TERN_TRY(op_out(c, 0, dt, 1, &n, &y));
        if (dt == TERN_FLOAT) {
            float s = (float)start, d = (float)delta;
            for (int64_t i = 0; i < n; i++) ((float *)y->data)[i] = s + (float)i * d;
        } else {
            for (int64_t i = 0; i < n; i++)
                dtype_set_f64(dt, y->data, i, start + (double)i * delta);
        }
    } else {
        return op_error(c, "unsupported type %s", tern_dtype_name(dt));
    }
    return NULL;
}

tern_status *shapeop_eye_like(op_ctx *c)
{
    const tern_tensor *x;
    TERN_TRY(shapeop_input(c, 0, &x));
    if (x->rank != 2) return op_error(c, "input must be 2-D, got rank %d", x->rank);
    tern_dtype dt = (tern_dtype)op_attr_int(c, "dtype", x->dtype);
    if (!dtype_valid((int)dt) || dt == TERN_STRING || dtype_elem_size(dt) == 0 ||
        dt == TERN_COMPLEX64 || dt == TERN_COMPLEX128)
        return op_error(c, "unsupported output type %d", (int)dt);
    int64_t k = op_attr_int(c, "k", 0), rows = x->dims[0], cols = x->dims[1];
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, dt, 2, x->dims, &y));
    if (y->numel == 0) return NULL;
    memset(y->data, 0, (size_t)y->numel * dtype_elem_size(dt));
    if (k >= cols || k <= -rows) return NULL;
    for (int64_t i = k < 0 ? -k : 0; i < rows && i + k < cols; i++)
        dtype_set_i64(dt, y->data, i * cols + i + k, 1);
    return NULL;
}

tern_status *shapeop_trilu(op_ctx *c)
{
    const tern_tensor *x, *kt;
    TERN_TRY(shapeop_input(c, 0, &x));
    TERN_TRY(shapeop_opt_input(c, 1, &kt));
    if (x->rank < 2) return op_error(c, "input must have rank >= 2, got %d", x->rank);
    if (x->dtype == TERN_STRING) return op_error(c, "string input is not supported");
    int64_t k = 0;
    if (kt) {
        if (kt->numel != 1 || !dtype_is_int(kt->dtype))
            return op_error(c, "k must be an integer scalar");
        k = op_get_i64(kt, 0);
    }
    bool upper = op_attr_int(c, "upper", 1) != 0;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, x->dims, &y));
    if (y->numel == 0) return NULL;
    int64_t rows = x->dims[x->rank - 2], cols = x->dims[x->rank - 1],
            mats = x->numel / (rows * cols);
    size_t esz = dtype_elem_size(x->dtype);
    /* keep column j of row i when j - i >= k (upper) or j - i <= k (lower) */
    if (k > cols) k = cols + 1;
    if (k < -rows) k = -rows - 1;
    const char *s = x->data;
    char *d = y->data;
    for (int64_t m = 0; m < mats; m++)
        for (int64_t i = 0; i < rows; i++) {
            int64_t edge = i + k; /* first kept column (upper) / last kept (lower) */
            int64_t lo = upper ? edge : 0, hi = upper ? cols : edge + 1;
            lo = lo < 0 ? 0 : lo > cols ? cols : lo;
            hi = hi < lo ? lo : hi > cols ? cols : hi;
            size_t row = (size_t)((m * rows + i) * cols) * esz;
            memset(d + row, 0, (size_t)cols * esz);
            if (hi > lo)
                memcpy(d + row + (size_t)lo * esz, s + row + (size_t)lo * esz,
                       (size_t)(hi - lo) * esz);
        }
    return NULL;
}

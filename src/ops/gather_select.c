/*
 * Gather-family kernels that pick elements by a condition or by value:
 * OneHot, NonZero, Compress, ReverseSequence and Unique.
 *
 * Unique sorts slice numbers (elements when there is no axis, else the
 * slices along the axis, compared lexicographically as numpy does) with a
 * stable merge sort over scratch memory, so among equal slices the first
 * occurrence comes first; runs of equal slices are then the unique values.
 * Unsorted output orders those runs by first occurrence instead.
 */
#include <math.h>
#include <string.h>

#include "ops/gather_select.h"
#include "ops/shape_layout.h"

/* True when element i is not zero (strings: not empty; NaN counts). */
static bool is_nonzero(const tern_tensor *t, int64_t i)
{
    if (dtype_is_float(t->dtype)) return op_get_f64(t, i) != 0;
    if (t->dtype == TERN_STRING) {
        const char *s = ((char *const *)t->data)[i];
        return s && *s;
    }
    size_t esz = dtype_elem_size(t->dtype);
    const unsigned char *p = (const unsigned char *)t->data + (size_t)i * esz;
    for (size_t k = 0; k < esz; k++)
        if (p[k]) return true;
    return false;
}

tern_status *gatherop_one_hot(op_ctx *c)
{
    const tern_tensor *ind, *dep, *val;
    TERN_TRY(shapeop_input(c, 0, &ind));
    TERN_TRY(shapeop_input(c, 1, &dep));
    TERN_TRY(shapeop_input(c, 2, &val));
    if (ind->dtype == TERN_STRING || dep->dtype == TERN_STRING)
        return op_error(c, "indices and depth must be numeric");
    if (dep->numel != 1) return op_error(c, "depth must hold one value");
    if (val->numel != 2) return op_error(c, "values must hold [off, on]");
    int r = ind->rank;
    if (r + 1 > TERN_MAX_RANK) return op_error(c, "output rank is too large");
    int64_t axis = op_attr_int(c, "axis", -1);
    if (axis < 0) axis += r + 1;
    if (axis < 0 || axis > r) return op_error(c, "axis is out of range for rank %d", r + 1);
    double dv = op_get_f64(dep, 0);
    if (!(dv >= 1 && dv <= (double)((int64_t)1 << 40))) return op_error(c, "invalid depth %g", dv);
    int64_t depth = (int64_t)dv, dims[TERN_MAX_RANK], outer = 1, inner = 1;
    for (int k = 0; k < axis; k++) outer *= (dims[k] = ind->dims[k]);
    dims[axis] = depth;
    for (int k = (int)axis; k < r; k++) inner *= (dims[k + 1] = ind->dims[k]);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, val->dtype, r + 1, dims, &y));
    size_t esz = dtype_elem_size(val->dtype);
    const char *off = val->data, *on = off + esz;
    shapeop_fill(y->data, off, y->numel, esz);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t k;
            if (dtype_is_float(ind->dtype)) { /* NaN and far values select nothing */
                double v = op_get_f64(ind, o * inner + i);
                if (!(v > (double)-depth - 1 && v < (double)depth)) continue;
                k = (int64_t)v;
            } else {
                k = op_get_i64(ind, o * inner + i);
            }
            if (k < 0) k += depth;
            if (k >= 0 && k < depth)
                memcpy((char *)y->data + ((o * depth + k) * inner + i) * (int64_t)esz, on, esz);
        }
    return NULL;
}

tern_status *gatherop_non_zero(op_ctx *c)
{
    const tern_tensor *x;
    TERN_TRY(shapeop_input(c, 0, &x));
    int64_t nnz = 0, r = x->rank;
    for (int64_t i = 0; i < x->numel; i++) nnz += is_nonzero(x, i);
    /* a scalar reads as a 1-element vector, as numpy does */
    int64_t dims[2] = {r ? r : 1, nnz}, pos[TERN_MAX_RANK] = {0}, j = 0;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_INT64, 2, dims, &y));
    int64_t *out = y->data;
    if (r == 0) {
        if (nnz) out[0] = 0;
        return NULL;
    }
    for (int64_t i = 0; i < x->numel; i++) {
        if (is_nonzero(x, i)) {
            for (int k = 0; k < r; k++) out[k * nnz + j] = pos[k];
            j++;
        }
        for (int k = (int)r - 1; k >= 0; k--) {
            if (++pos[k] < x->dims[k]) break;
            pos[k] = 0;
        }
    }
    return NULL;
}

tern_status *gatherop_compress(op_ctx *c)
{
    const tern_tensor *x, *cond;
    TERN_TRY(shapeop_input(c, 0, &x));
    TERN_TRY(shapeop_input(c, 1, &cond));
    if (cond->rank != 1) return op_error(c, "condition must be 1-D");
    const op_attr *aa = op_attr_get(c, "axis");
    int64_t dims[TERN_MAX_RANK], outer = 1, inner = 1, n;
    int r, axis = 0;
    if (aa) {
        if (x->rank < 1) return op_error(c, "cannot compress a scalar along an axis");
        TERN_TRY(op_axis(c, aa->i, x->rank, &axis));
        r = x->rank;
        memcpy(dims, x->dims, (size_t)r * sizeof *dims);
        for (int k = 0; k < axis; k++) outer *= dims[k];
        for (int k = axis + 1; k < r; k++) inner *= dims[k];
        n = dims[axis];
    } else { /* the input flattened */
        r = 1;
        n = x->numel;
    }
    int64_t m = cond->numel < n ? cond->numel : n, kept = 0;
    for (int64_t i = 0; i < m; i++) kept += is_nonzero(cond, i);
    dims[aa ? axis : 0] = kept;
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, r, dims, &y));
    if (y->numel == 0) return NULL;
    int64_t blk = inner * (int64_t)dtype_elem_size(x->dtype);
    char *d = y->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < m; i++)
            if (is_nonzero(cond, i)) {
                memcpy(d, (const char *)x->data + (o * n + i) * blk, (size_t)blk);
                d += blk;
            }
    return NULL;
}

tern_status *gatherop_reverse_sequence(op_ctx *c)
{
    const tern_tensor *x, *lens;
    TERN_TRY(shapeop_input(c, 0, &x));
    TERN_TRY(shapeop_input(c, 1, &lens));
    if (x->rank < 2) return op_error(c, "input must have rank >= 2");
    int64_t ta = op_attr_int(c, "time_axis", 0), ba = op_attr_int(c, "batch_axis", 1);
    if (!((ta == 0 && ba == 1) || (ta == 1 && ba == 0)))
        return op_error(c, "time_axis and batch_axis must be 0 and 1");
    int64_t T = x->dims[ta], B = x->dims[ba];
    if (!dtype_is_int(lens->dtype) || lens->rank != 1 || lens->numel != B)
        return op_error(c, "sequence_lens must be %lld integers", (long long)B);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, x->dims, &y));
    if (y->numel == 0) return NULL;
    int64_t inner = (int64_t)dtype_elem_size(x->dtype);
    for (int k = 2; k < x->rank; k++) inner *= x->dims[k];
    int64_t st = ta == 0 ? B * inner : inner, sb = ba == 0 ? T * inner : inner;
    for (int64_t b = 0; b < B; b++) {
        int64_t len = op_get_i64(lens, b);
        if (len < 0 || len > T)
            return op_error(c, "sequence length %lld is out of range [0, %lld]", (long long)len,
                            (long long)T);
        for (int64_t t = 0; t < T; t++) {
            int64_t src = t < len ? len - 1 - t : t;
            memcpy((char *)y->data + t * st + b * sb, (const char *)x->data + src * st + b * sb,
                   (size_t)inner);
        }
    }
    return NULL;
}

/* ---- Unique -------------------------------------------------------------- */

typedef struct uniq {
    const tern_tensor *x;
    int64_t outer, n, inner; /* slice i: elements (o * n + i) * inner + k */
    const int64_t *first;    /* for ordering runs by first occurrence */
} uniq;

static int cmp_f64(double a, double b)
{
    if (isnan(a)) return isnan(b) ? 0 : 1; /* NaN sorts last, as in numpy */
    if (isnan(b)) return -1;
    return (a > b) - (a < b);
}

static int cmp_elem(const tern_tensor *t, int64_t i, int64_t j)
{
    switch (t->dtype) {
    case TERN_STRING: {
        const char *a = ((char *const *)t->data)[i], *b = ((char *const *)t->data)[j];
        return strcmp(a ? a : "", b ? b : "");
    }
    case TERN_UINT64: {
        uint64_t a = ((const uint64_t *)t->data)[i], b = ((const uint64_t *)t->data)[j];
        return (a > b) - (a < b);
    }
    default:
        if (dtype_is_float(t->dtype)) return cmp_f64(op_get_f64(t, i), op_get_f64(t, j));
        int64_t a = op_get_i64(t, i), b = op_get_i64(t, j);
        return (a > b) - (a < b);
    }
}

static int cmp_slices(const void *ctx, int64_t i, int64_t j)
{
    const uniq *u = ctx;
    for (int64_t o = 0; o < u->outer; o++)
        for (int64_t k = 0; k < u->inner; k++) {
            int r = cmp_elem(u->x, (o * u->n + i) * u->inner + k, (o * u->n + j) * u->inner + k);
            if (r) return r;
        }
    return 0;
}

static int cmp_first(const void *ctx, int64_t a, int64_t b)
{
    const uniq *u = ctx;
    return (u->first[a] > u->first[b]) - (u->first[a] < u->first[b]);
}

/* Stable bottom-up merge sort of v[0..n) by cmp; tmp holds n entries. */
static void merge_sort(int64_t *v, int64_t *tmp, int64_t n,
                       int (*cmp)(const void *, int64_t, int64_t), const void *ctx)
{
    int64_t *src = v, *dst = tmp;
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) dst[k++] = cmp(ctx, src[j], src[i]) < 0 ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        int64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != v) memcpy(v, src, (size_t)n * sizeof *v);
}

tern_status *gatherop_unique(op_ctx *c)
{
    const tern_tensor *x;
    TERN_TRY(shapeop_input(c, 0, &x));
    if (x->dtype == TERN_COMPLEX64 || x->dtype == TERN_COMPLEX128)
        return op_error(c, "complex input is not supported");
    bool sorted = op_attr_int(c, "sorted", 1) != 0;
    const op_attr *aa = op_attr_get(c, "axis");
    uniq u = {.x = x, .outer = 1, .inner = 1, .n = x->numel};
    int axis = -1;
    if (aa) {
        if (x->rank < 1) return op_error(c, "axis given for a scalar");
        TERN_TRY(op_axis(c, aa->i, x->rank, &axis));
        u.n = x->dims[axis];
        for (int k = 0; k < axis; k++) u.outer *= x->dims[k];
        for (int k = axis + 1; k < x->rank; k++) u.inner *= x->dims[k];
        if (u.outer * u.inner == 0) u.outer = 0; /* empty slices are all equal */
    }
    int64_t n = u.n, *perm, *tmp, *first, *count, *grp, *order;
    size_t bytes = (size_t)(n ? n : 1) * sizeof(int64_t);
    TERN_TRY(op_scratch(c, bytes, (void **)&perm));
    TERN_TRY(op_scratch(c, bytes, (void **)&tmp));
    TERN_TRY(op_scratch(c, bytes, (void **)&first));
    TERN_TRY(op_scratch(c, bytes, (void **)&count));
    TERN_TRY(op_scratch(c, bytes, (void **)&grp));
    TERN_TRY(op_scratch(c, bytes, (void **)&order));
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    merge_sort(perm, tmp, n, cmp_slices, &u);

    /* runs of equal slices in sorted order: group g starts at first[g] */
    int64_t ng = 0;
    for (int64_t p = 0; p < n; p++) {
        if (p == 0 || cmp_slices(&u, perm[p - 1], perm[p]) != 0) {
            first[ng] = perm[p];
            count[ng++] = 0;
        }
        count[ng - 1]++;
        grp[perm[p]] = ng - 1;
    }
    for (int64_t g = 0; g < ng; g++) order[g] = g;
    if (!sorted) {
        u.first = first;
        merge_sort(order, tmp, ng, cmp_first, &u);
    }
    /* tmp[g] = output position of group g */
    for (int64_t k = 0; k < ng; k++) tmp[order[k]] = k;

    tern_tensor *y, *yi, *yinv, *yc;
    int64_t dims[TERN_MAX_RANK];
    int r = 1;
    if (aa) {
        r = x->rank;
        memcpy(dims, x->dims, (size_t)r * sizeof *dims);
        dims[axis] = ng;
    } else {
        dims[0] = ng;
    }
    TERN_TRY(op_out(c, 0, x->dtype, r, dims, &y));
    TERN_TRY(op_out(c, 1, TERN_INT64, 1, &ng, &yi));
    TERN_TRY(op_out(c, 2, TERN_INT64, 1, &n, &yinv));
    TERN_TRY(op_out(c, 3, TERN_INT64, 1, &ng, &yc));
    int64_t blk = u.inner * (int64_t)dtype_elem_size(x->dtype);
    for (int64_t k = 0; k < ng; k++) {
        int64_t g = order[k];
        ((int64_t *)yi->data)[k] = first[g];
        ((int64_t *)yc->data)[k] = count[g];
        for (int64_t o = 0; o < u.outer; o++)
            memcpy((char *)y->data + (o * ng + k) * blk,
                   (const char *)x->data + (o * n + first[g]) * blk, (size_t)blk);
    }
    for (int64_t i = 0; i < n; i++) ((int64_t *)yinv->data)[i] = tmp[grp[i]];
    return NULL;
}

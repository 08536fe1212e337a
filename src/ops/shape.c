/*
 * Operator family: shape. Operators that change how elements are arranged
 * but never their values: views (Reshape, Flatten, Squeeze, Unsqueeze,
 * Identity) alias their input; rearrangements (Transpose, Slice, Expand, Tile,
 * DepthToSpace, SpaceToDepth) describe their output as a strided view of the
 * input and hand it to shapeop_copy_strided (shape_layout.c); joins and cuts
 * (Concat, Split) and Pad copy contiguous blocks. Every kernel moves elements
 * by size only, so one code path serves every type, strings included (their
 * pointers are copied). Operators that make new values (Shape, Size,
 * Constant, Range, EyeLike, Trilu...) live in shape_make.c.
 *
 * Attributes that became inputs over the opset versions (Reshape's shape,
 * Squeeze/Unsqueeze axes, Split's split, Slice's starts/ends, Pad's pads) are
 * read from where c->opset says they are.
 */
#include <string.h>

#include "ops/shape_layout.h"
#include "ops/shape_make.h"

/* An integer list that is attribute `name` or, when from_input, input i.
 * n is -1 when it is absent. */
static tern_status *int_list(op_ctx *c, const char *name, int i, bool from_input, const int64_t **v,
                             int64_t *n)
{
    *v = NULL;
    *n = -1;
    if (!from_input) {
        *n = op_attr_ints(c, name, v);
        return NULL;
    }
    if (i >= c->n_in || !c->in[i]) return NULL;
    int64_t *tmp;
    TERN_TRY(op_read_ints(c, c->in[i], &tmp, n));
    *v = tmp;
    return NULL;
}

/* ---- views -------------------------------------------------------------- */

static tern_status *op_reshape(op_ctx *c)
{
    const tern_tensor *x;
    const int64_t *shape;
    int64_t n;
    TERN_TRY(shapeop_input(c, 0, &x));
    if (c->opset >= 5) TERN_TRY(op_need_input(c, 1));
    TERN_TRY(int_list(c, "shape", 1, c->opset >= 5, &shape, &n));
    if (n < 0) return op_error(c, "the target shape is missing");
    if (n > TERN_MAX_RANK) return op_error(c, "target rank %lld is too large", (long long)n);
    bool allowzero = c->opset >= 14 && op_attr_int(c, "allowzero", 0) != 0;
    int64_t dims[TERN_MAX_RANK], known = 1;
    int infer = -1;
    for (int i = 0; i < n; i++) {
        int64_t v = shape[i];
        if (v == 0 && !allowzero) {
            if (i >= x->rank)
                return op_error(c, "shape[%d] = 0 copies a dimension the input lacks", i);
            v = x->dims[i];
        } else if (v == -1) {
            if (infer >= 0) return op_error(c, "more than one -1 in the target shape");
            infer = i;
            continue;
        } else if (v < 0) {
            return op_error(c, "invalid target dimension %lld", (long long)v);
        }
        dims[i] = v;
        if (v && known > INT64_MAX / v) return op_error(c, "target shape overflows");
        known *= v;
    }
    if (infer >= 0) {
        if (known == 0 || x->numel % known)
            return op_error(c, "cannot infer the -1 dimension of %lld elements",
                            (long long)x->numel);
        dims[infer] = x->numel / known;
    } else if (known != x->numel) {
        char a[160], b[160];
        return op_error(c, "cannot reshape %s to %s", shape_str(x->rank, x->dims, a, sizeof a),
                        shape_str((int)n, dims, b, sizeof b));
    }
    return op_out_alias(c, 0, x, (int)n, dims);
}

static tern_status *op_flatten(op_ctx *c)
{
    const tern_tensor *x;
    TERN_TRY(shapeop_input(c, 0, &x));
    int64_t axis = op_attr_int(c, "axis", 1);
    if (axis < 0) axis += x->rank;
    if (axis < 0 || axis > x->rank) return op_error(c, "axis is out of range for rank %d", x->rank);
    int64_t dims[2] = {1, 1};
    for (int i = 0; i < x->rank; i++) dims[i >= axis] *= x->dims[i];
    return op_out_alias(c, 0, x, 2, dims);
}

/* Marks axes[0..n) (normalised against rank) in mark; error on repeats. */
static tern_status *mark_axes(op_ctx *c, const int64_t *axes, int64_t n, int rank, bool *mark)
{
    memset(mark, 0, (size_t)(rank ? rank : 1) * sizeof *mark);
    for (int64_t i = 0; i < n; i++) {
        int a;
        TERN_TRY(op_axis(c, axes[i], rank, &a));
        if (rank == 0) return op_error(c, "axis %lld for a scalar", (long long)axes[i]);
        if (mark[a]) return op_error(c, "axis %lld is repeated", (long long)axes[i]);
        mark[a] = true;
    }
    return NULL;
}

static tern_status *op_squeeze(op_ctx *c)
{
    const tern_tensor *x;
    const int64_t *axes;
    int64_t n;
    TERN_TRY(shapeop_input(c, 0, &x));
    TERN_TRY(int_list(c, "axes", 1, c->opset >= 13, &axes, &n));
    bool mark[TERN_MAX_RANK];
    if (n >= 0) {
        TERN_TRY(mark_axes(c, axes, n, x->rank, mark));
    } else {
        for (int i = 0; i < x->rank; i++) mark[i] = x->dims[i] == 1;
    }
    int64_t dims[TERN_MAX_RANK];
    int r = 0;
    for (int i = 0; i < x->rank; i++) {
        if (!mark[i]) {
            dims[r++] = x->dims[i];
        } else if (x->dims[i] != 1) {
            return op_error(c, "cannot squeeze axis %d of size %lld", i, (long long)x->dims[i]);
        }
    }
    return op_out_alias(c, 0, x, r, dims);
}

static tern_status *op_unsqueeze(op_ctx *c)
{
    const tern_tensor *x;
    const int64_t *axes;
    int64_t n;
    TERN_TRY(shapeop_input(c, 0, &x));
    if (c->opset >= 13) TERN_TRY(op_need_input(c, 1));
    TERN_TRY(int_list(c, "axes", 1, c->opset >= 13, &axes, &n));
    if (n < 0) return op_error(c, "axes are missing");
    if (x->rank + n > TERN_MAX_RANK) return op_error(c, "output rank is too large");
    int r = x->rank + (int)n;
    bool mark[TERN_MAX_RANK];
    TERN_TRY(mark_axes(c, axes, n, r, mark));
    int64_t dims[TERN_MAX_RANK];
    for (int i = 0, k = 0; i < r; i++) dims[i] = mark[i] ? 1 : x->dims[k++];
    return op_out_alias(c, 0, x, r, dims);
}

static tern_status *op_identity(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind == TENSOR_DENSE) return op_out_alias(c, 0, x, x->rank, x->dims);
    return op_out_value(c, 0, x);
}

/* ---- strided rearrangements ---------------------------------------------- */

static tern_status *op_transpose(op_ctx *c)
{
    const tern_tensor *x;
    TERN_TRY(shapeop_input(c, 0, &x));
    int r = x->rank;
    const int64_t *perm;
    int np = op_attr_ints(c, "perm", &perm);
    int64_t p[TERN_MAX_RANK], dims[TERN_MAX_RANK], st[TERN_MAX_RANK], ss[TERN_MAX_RANK];
    bool seen[TERN_MAX_RANK] = {0};
    if (np >= 0 && np != r) return op_error(c, "perm has %d entries for rank %d", np, r);
    for (int i = 0; i < r; i++) {
        p[i] = np >= 0 ? perm[i] : r - 1 - i;
        if (p[i] < 0) p[i] += r;
        if (p[i] < 0 || p[i] >= r || seen[p[i]]) return op_error(c, "perm is not a permutation");
        seen[p[i]] = true;
    }
    shapeop_strides(r, x->dims, st);
    for (int i = 0; i < r; i++) {
        dims[i] = x->dims[p[i]];
        ss[i] = st[p[i]];
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, r, dims, &y));
    shapeop_copy_strided(c, y->data, x->data, dtype_elem_size(x->dtype), r, dims, ss);
    return NULL;
}

/* Clamps a Slice start or end against dim as the spec says (end_like: the
 * end may be -1 with a negative step). */
static int64_t slice_clamp(int64_t v, int64_t dim, int64_t step, bool end_like)
{
    if (v < 0) v += dim;
    int64_t lo = step < 0 && end_like ? -1 : 0, hi = step < 0 ? dim - 1 : dim;
    return v < lo ? lo : v > hi ? hi : v;
}

static tern_status *op_slice(op_ctx *c)
{
    const tern_tensor *x;
    const int64_t *starts, *ends, *axes, *steps;
    int64_t ns, ne, na, nst;
    TERN_TRY(shapeop_input(c, 0, &x));
    bool inputs = c->opset >= 10;
    if (inputs) {
        TERN_TRY(op_need_input(c, 1));
        TERN_TRY(op_need_input(c, 2));
    }
    TERN_TRY(int_list(c, "starts", 1, inputs, &starts, &ns));
    TERN_TRY(int_list(c, "ends", 2, inputs, &ends, &ne));
    TERN_TRY(int_list(c, "axes", 3, inputs, &axes, &na));
    TERN_TRY(int_list(c, "steps", 4, inputs, &steps, &nst));
    if (!inputs) nst = -1;
    if (ns < 0 || ne < 0) return op_error(c, "starts and ends are required");
    if (ne != ns || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return op_error(c, "starts, ends, axes and steps differ in length");
    int r = x->rank;
    int64_t dims[TERN_MAX_RANK], ss[TERN_MAX_RANK], st[TERN_MAX_RANK], begin[TERN_MAX_RANK];
    int64_t step[TERN_MAX_RANK];
    bool seen[TERN_MAX_RANK] = {0};
    for (int i = 0; i < r; i++) {
        dims[i] = x->dims[i];
        begin[i] = 0;
        step[i] = 1;
    }
    for (int64_t i = 0; i < ns; i++) {
        int a;
        TERN_TRY(op_axis(c, na >= 0 ? axes[i] : i, r, &a));
        if (r == 0) return op_error(c, "cannot slice a scalar");
        if (seen[a]) return op_error(c, "axis %d is repeated", a);
        seen[a] = true;
        int64_t d = x->dims[a], s = nst >= 0 ? steps[i] : 1;
        if (s == 0) return op_error(c, "step 0 on axis %d", a);
        if (d == 0) {
            dims[a] = 0;
            continue;
        }
        /* |step| beyond the dimension takes one element at most: bound it so
         * the arithmetic below cannot overflow. */
        if (s > d) s = d + 1;
        if (s < -d) s = -d - 1;
        int64_t b = slice_clamp(starts[i], d, s, false), e = slice_clamp(ends[i], d, s, true);
        int64_t cnt =
            s > 0 ? (e > b ? (e - b + s - 1) / s : 0) : (b > e ? (b - e - s - 1) / -s : 0);
        dims[a] = cnt;
        begin[a] = b;
        step[a] = s;
    }
    shapeop_strides(r, x->dims, st);
    int64_t off = 0;
    for (int i = 0; i < r; i++) {
        ss[i] = st[i] * step[i];
        off += begin[i] * st[i];
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, r, dims, &y));
    if (y->numel == 0) return NULL;
    size_t esz = dtype_elem_size(x->dtype);
    shapeop_copy_strided(c, y->data, (const char *)x->data + off * (int64_t)esz, esz, r, dims, ss);
    return NULL;
}

static tern_status *op_expand(op_ctx *c)
{
    const tern_tensor *x;
    const int64_t *shape;
    int64_t n;
    TERN_TRY(shapeop_input(c, 0, &x));
    TERN_TRY(op_need_input(c, 1));
    TERN_TRY(int_list(c, "shape", 1, true, &shape, &n));
    if (n > TERN_MAX_RANK) return op_error(c, "target rank %lld is too large", (long long)n);
    tern_tensor want = {.kind = TENSOR_DENSE, .dtype = x->dtype, .rank = (int)n};
    for (int i = 0; i < n; i++) {
        if (shape[i] < 0) return op_error(c, "invalid target dimension %lld", (long long)shape[i]);
        want.dims[i] = shape[i];
    }
    const tern_tensor *both[2] = {x, &want};
    int r;
    int64_t dims[TERN_MAX_RANK], ss[TERN_MAX_RANK];
    TERN_TRY(op_broadcast_shape(c, 2, both, &r, dims));
    op_bcast_strides(x, r, dims, ss);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, r, dims, &y));
    shapeop_copy_strided(c, y->data, x->data, dtype_elem_size(x->dtype), r, dims, ss);
    return NULL;
}

static tern_status *op_tile(op_ctx *c)
{
    const tern_tensor *x;
    const int64_t *reps;
    int64_t n;
    TERN_TRY(shapeop_input(c, 0, &x));
    TERN_TRY(op_need_input(c, 1));
    TERN_TRY(int_list(c, "repeats", 1, true, &reps, &n));
    int r = x->rank;
    if (n != r) return op_error(c, "repeats has %lld entries for rank %d", (long long)n, r);
    /* View the output as [reps0, d0, reps1, d1, ...] reading the input with
     * stride 0 along each repeat. */
    int64_t dims[TERN_MAX_RANK], vdims[SHAPEOP_MAX_VIEW_RANK], vss[SHAPEOP_MAX_VIEW_RANK];
    int64_t st[TERN_MAX_RANK];
    shapeop_strides(r, x->dims, st);
    for (int i = 0; i < r; i++) {
        if (reps[i] < 0) return op_error(c, "negative repeat %lld", (long long)reps[i]);
        if (reps[i] && x->dims[i] > INT64_MAX / reps[i]) return op_error(c, "output too large");
        dims[i] = x->dims[i] * reps[i];
        vdims[2 * i] = reps[i];
        vss[2 * i] = 0;
        vdims[2 * i + 1] = x->dims[i];
        vss[2 * i + 1] = st[i];
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, r, dims, &y));
    shapeop_copy_strided(c, y->data, x->data, dtype_elem_size(x->dtype), 2 * r, vdims, vss);
    return NULL;
}

/* DepthToSpace (space = false) and SpaceToDepth, both on NCHW as 6-D views. */
static tern_status *depth_space(op_ctx *c, bool to_space)
{
    const tern_tensor *x;
    TERN_TRY(shapeop_input(c, 0, &x));
    if (x->rank != 4) return op_error(c, "input must be 4-D, got rank %d", x->rank);
    int64_t b = op_attr_int(c, "blocksize", 0);
    if (b <= 0 || b > (1 << 20)) return op_error(c, "blocksize must be positive");
    int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
    int64_t sN = C * H * W, sC = H * W, sH = W, dims[4], v[6], vs[6];
    if (to_space) {
        if (C % (b * b))
            return op_error(c, "channels %lld not divisible by blocksize^2", (long long)C);
        int64_t Co = C / (b * b);
        const char *mode = op_attr_str(c, "mode", "DCR");
        bool crd = strcmp(mode, "CRD") == 0;
        if (!crd && strcmp(mode, "DCR") != 0) return op_error(c, "unknown mode '%s'", mode);
        /* output (n, co, h, b1, w, b2) */
        int64_t vv[6] = {N, Co, H, b, W, b};
        int64_t s_dcr[6] = {sN, sC, sH, b * Co * sC, 1, Co * sC};
        int64_t s_crd[6] = {sN, b * b * sC, sH, b * sC, 1, sC};
        memcpy(v, vv, sizeof v);
        memcpy(vs, crd ? s_crd : s_dcr, sizeof vs);
        dims[0] = N, dims[1] = Co, dims[2] = H * b, dims[3] = W * b;
    } else {
        if (H % b || W % b) return op_error(c, "spatial size not divisible by blocksize");
        /* output (n, b1, b2, c, h', w') */
        int64_t vv[6] = {N, b, b, C, H / b, W / b};
        int64_t ss[6] = {sN, sH, 1, sC, b * sH, b};
        memcpy(v, vv, sizeof v);
        memcpy(vs, ss, sizeof vs);
        dims[0] = N, dims[1] = C * b * b, dims[2] = H / b, dims[3] = W / b;
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, 4, dims, &y));
    shapeop_copy_strided(c, y->data, x->data, dtype_elem_size(x->dtype), 6, v, vs);
    return NULL;
}

static tern_status *op_depth_to_space(op_ctx *c)
{
    return depth_space(c, true);
}
static tern_status *op_space_to_depth(op_ctx *c)
{
    return depth_space(c, false);
}

/* ---- joins and cuts ------------------------------------------------------ */

/* Concat. Channel-blocked inputs (LAYOUT_C16, from oneDNN convolutions)
 * joined along the channels stay blocked: with C a multiple of 16, each
 * image's channels are one contiguous run in both layouts, so the plain
 * copy is the blocked one too. Any other mix is made plain first. */
static tern_status *op_concat(op_ctx *c)
{
    if (c->n_in < 1) return op_error(c, "no inputs");
    const tern_tensor *buf[16], **ins = buf;
    if (c->n_in > 16) TERN_TRY(op_scratch(c, (size_t)c->n_in * sizeof *ins, (void **)&ins));
    bool any_c16 = false, all_c16 = true;
    for (int k = 0; k < c->n_in; k++) {
        TERN_TRY(shapeop_input(c, k, &ins[k]));
        if (ins[k]->layout == LAYOUT_C16)
            any_c16 = true;
        else
            all_c16 = false;
    }
    const tern_tensor *x0 = ins[0];
    const op_attr *aa = op_attr_get(c, "axis");
    if (!aa && c->opset >= 4) return op_error(c, "attribute axis is missing");
    int r = x0->rank, axis;
    if (r == 0) return op_error(c, "cannot concatenate scalars");
    TERN_TRY(op_axis(c, aa ? aa->i : 1, r, &axis));
    bool blocked = any_c16 && all_c16 && axis == 1;
    if (any_c16 && !blocked) {
        TERN_TRY(op_plain_inputs(c, ins));
        x0 = ins[0];
    }
    int64_t dims[TERN_MAX_RANK];
    memcpy(dims, x0->dims, (size_t)r * sizeof *dims);
    dims[axis] = 0;
    for (int k = 0; k < c->n_in; k++) {
        const tern_tensor *x = ins[k];
        if (x->dtype != x0->dtype) return op_error(c, "inputs differ in type");
        if (x->rank != r) return op_error(c, "input %d has rank %d, expected %d", k, x->rank, r);
        for (int i = 0; i < r; i++)
            if (i != axis && x->dims[i] != x0->dims[i])
                return op_error(c, "input %d differs in dimension %d", k, i);
        dims[axis] += x->dims[axis];
    }
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x0->dtype, r, dims, &y));
    if (blocked) y->layout = LAYOUT_C16;
    if (y->numel == 0) return NULL;
    size_t esz = dtype_elem_size(x0->dtype);
    int64_t outer = 1, inner = (int64_t)esz;
    for (int i = 0; i < axis; i++) outer *= dims[i];
    for (int i = axis + 1; i < r; i++) inner *= dims[i];
    int64_t row = dims[axis] * inner, off = 0;
    for (int k = 0; k < c->n_in; k++) {
        const char *s = ins[k]->data;
        int64_t blk = ins[k]->dims[axis] * inner;
        if (blk)
            for (int64_t o = 0; o < outer; o++)
                memcpy((char *)y->data + o * row + off, s + o * blk, (size_t)blk);
        off += blk;
    }
    return NULL;
}

static tern_status *op_split(op_ctx *c)
{
    const tern_tensor *x;
    const int64_t *split;
    int64_t ns;
    TERN_TRY(shapeop_input(c, 0, &x));
    int axis, n = c->n_out, r = x->rank;
    if (r == 0) return op_error(c, "cannot split a scalar");
    TERN_TRY(op_axis(c, op_attr_int(c, "axis", 0), r, &axis));
    /* opset 1 took split as input 1 or attribute, 2..12 attribute, 13+ input */
    if (c->opset >= 13 || (c->opset < 2 && c->n_in > 1 && c->in[1]))
        TERN_TRY(int_list(c, "split", 1, true, &split, &ns));
    else
        TERN_TRY(int_list(c, "split", 1, false, &split, &ns));
    int64_t d = x->dims[axis], sizes_buf[64], *sizes = sizes_buf;
    if (n < 1) return op_error(c, "no outputs");
    if (n > 64) TERN_TRY(op_scratch(c, (size_t)n * sizeof *sizes, (void **)&sizes));
    if (ns >= 0) {
        if (ns != n) return op_error(c, "split has %lld entries for %d outputs", (long long)ns, n);
        int64_t sum = 0;
        for (int i = 0; i < n; i++) {
            if (split[i] < 0 || split[i] > d) return op_error(c, "invalid split size");
            sizes[i] = split[i];
            sum += split[i];
        }
        if (sum != d)
            return op_error(c, "split sizes sum to %lld, not %lld", (long long)sum, (long long)d);
    } else {
        /* equal parts; an uneven dimension leaves the last part smaller */
        int64_t part = (d + n - 1) / n, left = d;
        for (int i = 0; i < n; i++) {
            sizes[i] = left < part ? left : part;
            left -= sizes[i];
        }
    }
    size_t esz = dtype_elem_size(x->dtype);
    int64_t outer = 1, inner = (int64_t)esz;
    for (int i = 0; i < axis; i++) outer *= x->dims[i];
    for (int i = axis + 1; i < r; i++) inner *= x->dims[i];
    int64_t row = d * inner, off = 0;
    for (int k = 0; k < n; k++) {
        int64_t dims[TERN_MAX_RANK];
        memcpy(dims, x->dims, (size_t)r * sizeof *dims);
        dims[axis] = sizes[k];
        tern_tensor *y;
        TERN_TRY(op_out(c, k, x->dtype, r, dims, &y));
        int64_t blk = sizes[k] * inner;
        if (blk)
            for (int64_t o = 0; o < outer; o++)
                memcpy((char *)y->data + o * blk, (const char *)x->data + o * row + off,
                       (size_t)blk);
        off += blk;
    }
    return NULL;
}

/* ---- Pad ----------------------------------------------------------------- */

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE };

/* The input index read at position i of a padded axis of d input elements
 * (i = output index - begin pad), or -1 for the constant. */
static int64_t pad_src(int64_t i, int64_t d, int mode)
{
    if (i >= 0 && i < d) return i;
    if (mode == PAD_CONSTANT) return -1;
    if (mode == PAD_EDGE) return i < 0 ? 0 : d - 1;
    if (d == 1) return 0;
    int64_t m = 2 * (d - 1);
    i %= m;
    if (i < 0) i += m;
    return i < d ? i : m - i;
}

static tern_status *op_pad(op_ctx *c)
{
    const tern_tensor *x;
    TERN_TRY(shapeop_input(c, 0, &x));
    int r = x->rank;
    const char *ms = op_attr_str(c, "mode", "constant");
    int mode = strcmp(ms, "constant") == 0  ? PAD_CONSTANT
               : strcmp(ms, "reflect") == 0 ? PAD_REFLECT
               : strcmp(ms, "edge") == 0    ? PAD_EDGE
                                            : -1;
    if (mode < 0) return op_error(c, "unsupported mode '%s'", ms);

    const int64_t *pads, *axes = NULL;
    int64_t np, na = -1;
    if (c->opset >= 11) {
        TERN_TRY(op_need_input(c, 1));
        TERN_TRY(int_list(c, "pads", 1, true, &pads, &np));
        TERN_TRY(int_list(c, "axes", 3, true, &axes, &na));
    } else {
        TERN_TRY(int_list(c, c->opset < 2 ? "paddings" : "pads", 1, false, &pads, &np));
    }
    /* begin/end pad per axis */
    int64_t pb[TERN_MAX_RANK] = {0}, pe[TERN_MAX_RANK] = {0}, dims[TERN_MAX_RANK];
    int64_t n_ax = na >= 0 ? na : r;
    if (np != 2 * n_ax)
        return op_error(c, "pads has %lld entries, expected %lld", (long long)np,
                        (long long)(2 * n_ax));
    bool seen[TERN_MAX_RANK] = {0};
    for (int64_t i = 0; i < n_ax; i++) {
        int a = (int)i;
        if (na >= 0) TERN_TRY(op_axis(c, axes[i], r, &a));
        if (r == 0 || seen[a]) return op_error(c, "invalid or repeated axis");
        seen[a] = true;
        pb[a] = pads[i];
        pe[a] = pads[i + n_ax];
    }
    for (int i = 0; i < r; i++) {
        int64_t lim = (int64_t)1 << 40;
        if (pb[i] < -lim || pb[i] > lim || pe[i] < -lim || pe[i] > lim)
            return op_error(c, "pad too large");
        dims[i] = x->dims[i] + pb[i] + pe[i];
        if (dims[i] < 0) return op_error(c, "pads remove more than axis %d holds", i);
        if (mode != PAD_CONSTANT && x->dims[i] == 0 && dims[i] > 0)
            return op_error(c, "cannot %s-pad an empty axis", ms);
    }

    /* the constant, as one element of x's type */
    size_t esz = dtype_elem_size(x->dtype);
    unsigned char cval[16] = {0};
    if (x->dtype == TERN_STRING) { /* strings pad with "" */
        const char *e = "";
        memcpy(cval, &e, sizeof e);
    }
    if (c->opset >= 11) {
        const tern_tensor *v;
        TERN_TRY(shapeop_opt_input(c, 2, &v));
        if (v && v->numel > 0) {
            if (v->dtype != x->dtype) return op_error(c, "constant_value type differs from input");
            memcpy(cval, v->data, esz);
        }
    } else {
        dtype_set_f64(x->dtype, cval, 0, op_attr_float(c, "value", 0.0f));
    }

    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, r, dims, &y));
    if (y->numel == 0) return NULL;
    if (r == 0) {
        memcpy(y->data, x->data, esz);
        return NULL;
    }
    if (x->numel == 0) { /* only a constant pad can grow an empty axis */
        shapeop_fill(y->data, cval, y->numel, esz);
        return NULL;
    }
    int64_t st[TERN_MAX_RANK], n = dims[r - 1], dl = x->dims[r - 1], rows = y->numel / n;
    shapeop_strides(r, x->dims, st);
    /* the part of a row read straight from the input: [lo, hi) */
    int64_t lo = pb[r - 1] < 0 ? 0 : pb[r - 1], hi = pb[r - 1] + dl;
    if (hi > n) hi = n;
    if (hi < lo) hi = lo;
    char *d = y->data;
    for (int64_t row = 0; row < rows; row++, d += n * (int64_t)esz) {
        int64_t rem = row, off = 0;
        bool constant = false;
        for (int k = r - 2; k >= 0; k--) {
            int64_t o = rem % dims[k], i = pad_src(o - pb[k], x->dims[k], mode);
            rem /= dims[k];
            if (i < 0) constant = true;
            off += i * st[k];
        }
        if (constant) {
            shapeop_fill(d, cval, n, esz);
            continue;
        }
        const char *s = (const char *)x->data + off * (int64_t)esz;
        if (hi > lo)
            memcpy(d + lo * (int64_t)esz, s + (lo - pb[r - 1]) * (int64_t)esz,
                   (size_t)(hi - lo) * esz);
        for (int64_t j = 0; j < n; j++) {
            if (j == lo) j = hi;
            if (j >= n) break;
            int64_t i = pad_src(j - pb[r - 1], dl, mode);
            if (i < 0)
                memcpy(d + j * (int64_t)esz, cval, esz);
            else
                memcpy(d + j * (int64_t)esz, s + i * (int64_t)esz, esz);
        }
    }
    return NULL;
}

const op_def ops_shape[] = {
    {"", "Reshape", 1, 17, op_reshape},
    {"", "Flatten", 1, 17, op_flatten},
    {"", "Squeeze", 1, 17, op_squeeze},
    {"", "Unsqueeze", 1, 17, op_unsqueeze},
    {"", "Identity", 1, 17, op_identity},
    {"", "Transpose", 1, 17, op_transpose},
    {"", "Slice", 1, 17, op_slice},
    {"", "Expand", 8, 17, op_expand},
    {"", "Tile", 6, 17, op_tile},
    {"", "DepthToSpace", 1, 17, op_depth_to_space},
    {"", "SpaceToDepth", 1, 17, op_space_to_depth},
    {"", "Concat", 1, 17, op_concat, NULL, OP_TAKES_C16},
    {"", "Split", 1, 17, op_split},
    {"", "Pad", 1, 17, op_pad},
    {"", "Shape", 1, 17, shapeop_shape},
    {"", "Size", 1, 17, shapeop_size},
    {"", "Constant", 1, 17, shapeop_constant},
    {"", "ConstantOfShape", 9, 17, shapeop_constant_of_shape},
    {"", "Range", 11, 17, shapeop_range},
    {"", "EyeLike", 9, 17, shapeop_eye_like},
    {"", "Trilu", 14, 17, shapeop_trilu},
    {0},
};

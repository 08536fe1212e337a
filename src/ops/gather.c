/*
 * Operator family: gather/scatter. Kernels that read or write elements at
 * positions given by an index tensor (Gather, GatherElements, GatherND and
 * the Scatter variants) and, in gather_select.c, the ones that choose
 * elements by a condition or by value (Compress, NonZero, Unique, OneHot,
 * ReverseSequence).
 *
 * Indices come from the model's user, so every index is normalised (negative
 * counts from the end) and bounds-checked before any element moves; an index
 * out of range fails the node with its value and the valid range. Elements
 * move by size, so one path serves every type; only the scatter reductions
 * (add, mul, max, min) look at values, per type.
 *
 * The gathers end in one copy, gather_copy(): rows of a byte size picked by
 * a list of row numbers. Single elements of 4 or 8 bytes (Gather along the
 * last axis, GatherElements) go through hardware gathers at the AVX2 and
 * AVX-512 levels (core/cpu.h); short rows move inline in vector-sized
 * pieces compiled per level, long ones through memcpy. The int32/int64
 * index check is a branch-free loop compiled per level too.
 */
#include <string.h>

#include "core/cpu.h"
#include "ops/gather_select.h"
#include "ops/shape_layout.h"

/* ---- index checks and copy loops, compiled per instruction set ---------- */

/* out[i] = in[i] normalised against n; *bad set when any is out of range
 * (the caller then finds which, for the message). Branch-free, so each
 * level vectorises it. */
#define NORM_IDX(T)                                                                                \
    static TERN_INLINE void norm_##T##_impl(const T *in, int64_t *out, int64_t m, int64_t n,       \
                                            int *bad)                                              \
    {                                                                                              \
        int b = 0;                                                                                 \
        for (int64_t i = 0; i < m; i++) {                                                          \
            int64_t k = in[i];                                                                     \
            b |= (k < -n) | (k >= n);                                                              \
            out[i] = k + (k < 0 ? n : 0);                                                          \
        }                                                                                          \
        *bad = b;                                                                                  \
    }                                                                                              \
    TERN_MULTI_VOID(norm_##T, (const T *in, int64_t *out, int64_t m, int64_t n, int *bad),         \
                    (in, out, m, n, bad))
NORM_IDX(int64_t)
NORM_IDX(int32_t)
#undef NORM_IDX

/* Rows of blk bytes: d[k] = row idx[k] of s, k < m. Rows up to ROW_INLINE
 * bytes move inline in 32-byte pieces (one or two vector moves at each
 * level), the tail as one overlapping piece; longer rows through memcpy. */
enum { ROW_INLINE = 1024 };
static TERN_INLINE void gather_rows_impl(char *d, const char *s, const int64_t *idx, int64_t m,
                                         int64_t blk)
{
    for (int64_t k = 0; k < m; k++, d += blk) {
        const char *r = s + idx[k] * blk;
        if (blk > ROW_INLINE) {
            memcpy(d, r, (size_t)blk);
        } else if (blk >= 32) {
            int64_t o = 0;
            for (; o + 32 <= blk; o += 32) memcpy(d + o, r + o, 32);
            if (o < blk) memcpy(d + blk - 32, r + blk - 32, 32);
        } else if (blk >= 16) {
            memcpy(d, r, 16);
            memcpy(d + blk - 16, r + blk - 16, 16);
        } else if (blk >= 8) {
            memcpy(d, r, 8);
            memcpy(d + blk - 8, r + blk - 8, 8);
        } else if (blk >= 4) {
            memcpy(d, r, 4);
            memcpy(d + blk - 4, r + blk - 4, 4);
        } else {
            for (int64_t o = 0; o < blk; o++) d[o] = r[o];
        }
    }
}
TERN_MULTI_VOID(gather_rows, (char *d, const char *s, const int64_t *idx, int64_t m, int64_t blk),
                (d, s, idx, m, blk))

/* Single elements of 4 or 8 bytes (a row of one element): the loop the
 * generic level runs, and hardware gathers of 64-bit indices above it. */
static void gather_elems_generic(char *d, const char *s, const int64_t *idx, int64_t m, int64_t esz)
{
    if (esz == 4)
        for (int64_t k = 0; k < m; k++) memcpy(d + k * 4, s + idx[k] * 4, 4);
    else
        for (int64_t k = 0; k < m; k++) memcpy(d + k * 8, s + idx[k] * 8, 8);
}

#ifdef TERN_HAVE_X86_MULTI
#include <immintrin.h>

static TERN_TARGET_AVX2 void gather_elems_avx2(char *d, const char *s, const int64_t *idx,
                                               int64_t m, int64_t esz)
{
    int64_t k = 0;
    if (esz == 4)
        for (; k + 4 <= m; k += 4) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(idx + k));
            _mm_storeu_si128((__m128i *)(d + k * 4), _mm256_i64gather_epi32((const int *)s, v, 4));
        }
    else
        for (; k + 4 <= m; k += 4) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(idx + k));
            _mm256_storeu_si256((__m256i *)(d + k * 8),
                                _mm256_i64gather_epi64((const long long *)s, v, 8));
        }
    gather_elems_generic(d + k * esz, s, idx + k, m - k, esz);
}

static TERN_TARGET_AVX512 void gather_elems_avx512(char *d, const char *s, const int64_t *idx,
                                                   int64_t m, int64_t esz)
{
    int64_t k = 0;
    if (esz == 4)
        for (; k + 8 <= m; k += 8) {
            __m512i v = _mm512_loadu_si512(idx + k);
            _mm256_storeu_si256((__m256i *)(d + k * 4), _mm512_i64gather_epi32(v, s, 4));
        }
    else
        for (; k + 8 <= m; k += 8) {
            __m512i v = _mm512_loadu_si512(idx + k);
            _mm512_storeu_si512(d + k * 8, _mm512_i64gather_epi64(v, s, 8));
        }
    gather_elems_avx2(d + k * esz, s, idx + k, m - k, esz);
}
#endif

/* d[k] = the blk-byte row idx[k] of s, for k < m (idx already checked). */
static void gather_copy(char *d, const char *s, const int64_t *idx, int64_t m, int64_t blk)
{
    if (blk == 4 || blk == 8) {
#ifdef TERN_HAVE_X86_MULTI
        switch (tern_isa()) {
        case TERN_ISA_AVX512: gather_elems_avx512(d, s, idx, m, blk); return;
        case TERN_ISA_AVX2: gather_elems_avx2(d, s, idx, m, blk); return;
        default: break;
        }
#endif
        gather_elems_generic(d, s, idx, m, blk);
        return;
    }
    gather_rows(d, s, idx, m, blk);
}

/* Reads index tensor t into int64 scratch, each normalised against n. */
static tern_status *read_indices(op_ctx *c, const tern_tensor *t, int64_t n, int64_t **out)
{
    if (!dtype_is_int(t->dtype))
        return op_error(c, "indices must be integers, got %s", tern_dtype_name(t->dtype));
    int64_t *v;
    TERN_TRY(op_scratch(c, (size_t)(t->numel ? t->numel : 1) * sizeof *v, (void **)&v));
    int bad = 1; /* other index types: the checking loop below */
    if (t->dtype == TERN_INT64) norm_int64_t(t->data, v, t->numel, n, &bad);
    if (t->dtype == TERN_INT32) norm_int32_t(t->data, v, t->numel, n, &bad);
    for (int64_t i = 0; bad && i < t->numel; i++) {
        int64_t k = op_get_i64(t, i);
        if (k < -n || k >= n)
            return op_error(c, "index %lld is out of range [%lld, %lld)", (long long)k,
                            (long long)-n, (long long)n);
        v[i] = k < 0 ? k + n : k;
    }
    *out = v;
    return NULL;
}

static tern_status *op_gather(op_ctx *c)
{
    const tern_tensor *x, *ind;
    int axis;
    TERN_TRY(shapeop_input(c, 0, &x));
    TERN_TRY(shapeop_input(c, 1, &ind));
    if (x->rank < 1) return op_error(c, "data must have rank >= 1");
    TERN_TRY(op_axis(c, op_attr_int(c, "axis", 0), x->rank, &axis));
    int r = x->rank - 1 + ind->rank;
    if (r > TERN_MAX_RANK) return op_error(c, "output rank %d is too large", r);
    int64_t n = x->dims[axis], *idx, dims[TERN_MAX_RANK], outer = 1, inner = 1;
    TERN_TRY(read_indices(c, ind, n, &idx));
    for (int i = 0; i < axis; i++) outer *= (dims[i] = x->dims[i]);
    for (int i = 0; i < ind->rank; i++) dims[axis + i] = ind->dims[i];
    for (int i = axis + 1; i < x->rank; i++) inner *= (dims[i - 1 + ind->rank] = x->dims[i]);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, r, dims, &y));
    if (y->numel == 0) return NULL;
    int64_t blk = inner * (int64_t)dtype_elem_size(x->dtype);
    for (int64_t o = 0; o < outer; o++)
        gather_copy((char *)y->data + o * ind->numel * blk, (const char *)x->data + o * n * blk,
                    idx, ind->numel, blk);
    return NULL;
}

/* Advances the multi-index i over dims (rank r); returns false at the end. */
static bool next_index(int64_t *i, const int64_t *dims, int r)
{
    for (int k = r - 1; k >= 0; k--) {
        if (++i[k] < dims[k]) return true;
        i[k] = 0;
    }
    return false;
}

/* Checks the indices tensor of GatherElements/ScatterElements against data:
 * same rank, no dimension larger than data's (but along axis). */
static tern_status *check_elements(op_ctx *c, const tern_tensor *x, const tern_tensor *ind,
                                   int axis)
{
    if (ind->rank != x->rank)
        return op_error(c, "indices rank %d differs from data rank %d", ind->rank, x->rank);
    for (int k = 0; k < x->rank; k++)
        if (k != axis && ind->dims[k] > x->dims[k])
            return op_error(c, "indices dimension %d (%lld) exceeds data's (%lld)", k,
                            (long long)ind->dims[k], (long long)x->dims[k]);
    return NULL;
}

/* Offset in x (elements) of position i of indices, with idx along axis. */
static int64_t elem_offset(const int64_t *i, const int64_t *xs, int r, int axis, int64_t idx)
{
    int64_t off = idx * xs[axis];
    for (int k = 0; k < r; k++)
        if (k != axis) off += i[k] * xs[k];
    return off;
}

static tern_status *op_gather_elements(op_ctx *c)
{
    const tern_tensor *x, *ind;
    int axis;
    TERN_TRY(shapeop_input(c, 0, &x));
    TERN_TRY(shapeop_input(c, 1, &ind));
    if (x->rank < 1) return op_error(c, "data must have rank >= 1");
    TERN_TRY(op_axis(c, op_attr_int(c, "axis", 0), x->rank, &axis));
    TERN_TRY(check_elements(c, x, ind, axis));
    int64_t *idx, xs[TERN_MAX_RANK], pos[TERN_MAX_RANK] = {0};
    TERN_TRY(read_indices(c, ind, x->dims[axis], &idx));
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, ind->rank, ind->dims, &y));
    if (y->numel == 0) return NULL;
    /* Row by row of the last dimension: its elements' offsets (from the
     * row's start in x) are gathered like Gather's single elements. */
    int r = x->rank;
    int64_t esz = (int64_t)dtype_elem_size(x->dtype), len = ind->dims[r - 1], *off = NULL;
    if (axis != r - 1) TERN_TRY(op_scratch(c, (size_t)len * sizeof *off, (void **)&off));
    shapeop_strides(r, x->dims, xs);
    int64_t row = 0;
    do {
        const int64_t *ri = idx + row * len;
        if (off)
            for (int64_t k = 0; k < len; k++) off[k] = ri[k] * xs[axis] + k;
        gather_copy((char *)y->data + row * len * esz,
                    (const char *)x->data + elem_offset(pos, xs, r - 1, axis, 0) * esz,
                    off ? off : ri, len, esz);
        row++;
    } while (next_index(pos, ind->dims, r - 1));
    return NULL;
}

static tern_status *op_gather_nd(op_ctx *c)
{
    const tern_tensor *x, *ind;
    TERN_TRY(shapeop_input(c, 0, &x));
    TERN_TRY(shapeop_input(c, 1, &ind));
    if (!dtype_is_int(ind->dtype)) return op_error(c, "indices must be integers");
    int64_t b = op_attr_int(c, "batch_dims", 0);
    int r = x->rank, q = ind->rank;
    if (q < 1 || r < 1) return op_error(c, "data and indices must have rank >= 1");
    if (b < 0 || b >= q || b >= r)
        return op_error(c, "batch_dims %lld is out of range", (long long)b);
    int64_t m = ind->dims[q - 1];
    if (m < 1 || m > r - b)
        return op_error(c, "index tuples of %lld for data rank %d", (long long)m, r);
    int orank = q - 1 + r - (int)b - (int)m;
    if (orank > TERN_MAX_RANK) return op_error(c, "output rank %d is too large", orank);
    int64_t dims[TERN_MAX_RANK], xs[TERN_MAX_RANK], nb = 1, ntup = 1, slice = 1;
    for (int k = 0; k < b; k++) {
        if (ind->dims[k] != x->dims[k]) return op_error(c, "batch dimension %d differs", k);
        nb *= x->dims[k];
    }
    for (int k = (int)b; k < q - 1; k++) ntup *= ind->dims[k];
    for (int k = (int)(b + m); k < r; k++) slice *= x->dims[k];
    memcpy(dims, ind->dims, (size_t)(q - 1) * sizeof *dims);
    memcpy(dims + q - 1, x->dims + b + m, (size_t)(r - b - m) * sizeof *dims);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, x->dtype, orank, dims, &y));
    if (y->numel == 0) return NULL;
    shapeop_strides(r, x->dims, xs);
    /* Every offset is a multiple of slice: count them in slices (rows). */
    int64_t esz = (int64_t)dtype_elem_size(x->dtype), bstride = b ? xs[b - 1] / slice : 0, *rows;
    TERN_TRY(op_scratch(c, (size_t)(nb * ntup) * sizeof *rows, (void **)&rows));
    for (int64_t bi = 0; bi < nb; bi++)
        for (int64_t t = 0; t < ntup; t++) {
            int64_t row = bi * bstride, tup = (bi * ntup + t) * m;
            for (int64_t k = 0; k < m; k++) {
                int64_t v = op_get_i64(ind, tup + k), n = x->dims[b + k];
                if (v < -n || v >= n)
                    return op_error(c, "index %lld is out of range for dimension %lld of size %lld",
                                    (long long)v, (long long)(b + k), (long long)n);
                row += (v < 0 ? v + n : v) * (xs[b + k] / slice);
            }
            rows[bi * ntup + t] = row;
        }
    gather_copy(y->data, x->data, rows, nb * ntup, slice * esz);
    return NULL;
}

/* ---- scatter ------------------------------------------------------------- */

enum { RED_NONE, RED_ADD, RED_MUL, RED_MAX, RED_MIN };

static tern_status *read_reduction(op_ctx *c, int *red)
{
    const char *s = op_attr_str(c, "reduction", "none");
    static const char *const names[] = {"none", "add", "mul", "max", "min"};
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *red = i;
            return NULL;
        }
    return op_error(c, "unknown reduction '%s'", s);
}

#define COMBINE(a, b, ADD, MUL)                                                                    \
    (red == RED_ADD   ? (ADD)                                                                      \
     : red == RED_MUL ? (MUL)                                                                      \
     : red == RED_MAX ? ((a) > (b) ? (a) : (b))                                                    \
                      : ((a) < (b) ? (a) : (b)))

/* Integers wrap (computed unsigned, no signed overflow). */
#define REDUCE_INT(T)                                                                              \
    do {                                                                                           \
        T a, b;                                                                                    \
        memcpy(&a, d, sizeof a);                                                                   \
        memcpy(&b, s, sizeof b);                                                                   \
        a = COMBINE(a, b, (T)((uint64_t)a + (uint64_t)b), (T)((uint64_t)a * (uint64_t)b));         \
        memcpy(d, &a, sizeof a);                                                                   \
    } while (0)

#define REDUCE_FLT(T)                                                                              \
    do {                                                                                           \
        T a, b;                                                                                    \
        memcpy(&a, d, sizeof a);                                                                   \
        memcpy(&b, s, sizeof b);                                                                   \
        a = COMBINE(a, b, a + b, a * b);                                                           \
        memcpy(d, &a, sizeof a);                                                                   \
    } while (0)

/* d = d (op) s for one element of type dt. */
static void reduce_elem(tern_dtype dt, int red, char *d, const char *s)
{
    switch (dt) {
    case TERN_FLOAT: REDUCE_FLT(float); break;
    case TERN_DOUBLE: REDUCE_FLT(double); break;
    case TERN_INT8: REDUCE_INT(int8_t); break;
    case TERN_INT16: REDUCE_INT(int16_t); break;
    case TERN_INT32: REDUCE_INT(int32_t); break;
    case TERN_INT64: REDUCE_INT(int64_t); break;
    case TERN_UINT8: REDUCE_INT(uint8_t); break;
    case TERN_UINT16: REDUCE_INT(uint16_t); break;
    case TERN_UINT32: REDUCE_INT(uint32_t); break;
    case TERN_UINT64: REDUCE_INT(uint64_t); break;
    case TERN_BOOL: {
        bool a = *d != 0, b = *s != 0;
        *d = (char)(red == RED_ADD || red == RED_MAX ? (a || b) : (a && b));
        break;
    }
    case TERN_FLOAT16:
    case TERN_BFLOAT16: {
        uint16_t h, g;
        memcpy(&h, d, 2);
        memcpy(&g, s, 2);
        bool f16 = dt == TERN_FLOAT16;
        float a = f16 ? f16_to_f32(h) : bf16_to_f32(h), b = f16 ? f16_to_f32(g) : bf16_to_f32(g);
        a = COMBINE(a, b, a + b, a * b);
        h = f16 ? f32_to_f16(a) : f32_to_bf16(a);
        memcpy(d, &h, 2);
        break;
    }
    default: break;
    }
}

/* Applies n elements of s onto d with the reduction. */
static void scatter_block(tern_dtype dt, int red, int64_t esz, char *d, const char *s, int64_t n)
{
    if (red == RED_NONE) {
        memcpy(d, s, (size_t)(n * esz));
        return;
    }
    for (int64_t i = 0; i < n; i++) reduce_elem(dt, red, d + i * esz, s + i * esz);
}

/* Output 0 as a copy of x (inputs are never modified). */
static tern_status *copy_input(op_ctx *c, const tern_tensor *x, tern_tensor **y)
{
    TERN_TRY(op_out(c, 0, x->dtype, x->rank, x->dims, y));
    if (x->numel) memcpy((*y)->data, x->data, tensor_nbytes(x));
    return NULL;
}

static tern_status *check_reduction_type(op_ctx *c, tern_dtype dt, int red)
{
    if (red != RED_NONE && (dt == TERN_STRING || dt == TERN_COMPLEX64 || dt == TERN_COMPLEX128))
        return op_error(c, "reduction on %s is not supported", tern_dtype_name(dt));
    return NULL;
}

/* ScatterElements, and the deprecated Scatter (no reduction attribute). */
static tern_status *scatter_elements(op_ctx *c, bool has_reduction)
{
    const tern_tensor *x, *ind, *upd;
    int axis, red = RED_NONE;
    TERN_TRY(shapeop_input(c, 0, &x));
    TERN_TRY(shapeop_input(c, 1, &ind));
    TERN_TRY(shapeop_input(c, 2, &upd));
    if (has_reduction) TERN_TRY(read_reduction(c, &red));
    TERN_TRY(check_reduction_type(c, x->dtype, red));
    if (x->rank < 1) return op_error(c, "data must have rank >= 1");
    TERN_TRY(op_axis(c, op_attr_int(c, "axis", 0), x->rank, &axis));
    TERN_TRY(check_elements(c, x, ind, axis));
    if (!shape_equal(ind, upd)) return op_error(c, "updates and indices differ in shape");
    if (upd->dtype != x->dtype) return op_error(c, "updates and data differ in type");
    int64_t *idx, xs[TERN_MAX_RANK], pos[TERN_MAX_RANK] = {0};
    TERN_TRY(read_indices(c, ind, x->dims[axis], &idx));
    tern_tensor *y;
    TERN_TRY(copy_input(c, x, &y));
    if (ind->numel == 0) return NULL;
    shapeop_strides(x->rank, x->dims, xs);
    int64_t esz = (int64_t)dtype_elem_size(x->dtype), j = 0;
    do {
        char *d = (char *)y->data + elem_offset(pos, xs, x->rank, axis, idx[j]) * esz;
        scatter_block(x->dtype, red, esz, d, (const char *)upd->data + j * esz, 1);
        j++;
    } while (next_index(pos, ind->dims, ind->rank));
    return NULL;
}

static tern_status *op_scatter_elements(op_ctx *c)
{
    return scatter_elements(c, true);
}
static tern_status *op_scatter(op_ctx *c)
{
    return scatter_elements(c, false);
}

static tern_status *op_scatter_nd(op_ctx *c)
{
    const tern_tensor *x, *ind, *upd;
    int red = RED_NONE;
    TERN_TRY(shapeop_input(c, 0, &x));
    TERN_TRY(shapeop_input(c, 1, &ind));
    TERN_TRY(shapeop_input(c, 2, &upd));
    TERN_TRY(read_reduction(c, &red));
    TERN_TRY(check_reduction_type(c, x->dtype, red));
    if (!dtype_is_int(ind->dtype)) return op_error(c, "indices must be integers");
    if (upd->dtype != x->dtype) return op_error(c, "updates and data differ in type");
    int r = x->rank, q = ind->rank;
    if (q < 1) return op_error(c, "indices must have rank >= 1");
    int64_t m = ind->dims[q - 1];
    if (m > r) return op_error(c, "index tuples of %lld for data rank %d", (long long)m, r);
    /* updates shape = indices.shape[:-1] + data.shape[m:] */
    bool ok = upd->rank == q - 1 + r - m;
    for (int k = 0; ok && k < q - 1; k++) ok = upd->dims[k] == ind->dims[k];
    for (int k = (int)m; ok && k < r; k++) ok = upd->dims[q - 1 + k - m] == x->dims[k];
    if (!ok) return op_error(c, "updates shape does not match indices and data");
    tern_tensor *y;
    TERN_TRY(copy_input(c, x, &y));
    int64_t xs[TERN_MAX_RANK], ntup = 1, slice = 1, esz = (int64_t)dtype_elem_size(x->dtype);
    for (int k = 0; k < q - 1; k++) ntup *= ind->dims[k];
    for (int k = (int)m; k < r; k++) slice *= x->dims[k];
    if (ntup == 0 || slice == 0) return NULL;
    shapeop_strides(r, x->dims, xs);
    for (int64_t t = 0; t < ntup; t++) {
        int64_t off = 0;
        for (int64_t k = 0; k < m; k++) {
            int64_t v = op_get_i64(ind, t * m + k), n = x->dims[k];
            if (v < -n || v >= n)
                return op_error(c, "index %lld is out of range for dimension %lld of size %lld",
                                (long long)v, (long long)k, (long long)n);
            off += (v < 0 ? v + n : v) * xs[k];
        }
        scatter_block(x->dtype, red, esz, (char *)y->data + off * esz,
                      (const char *)upd->data + t * slice * esz, slice);
    }
    return NULL;
}

const op_def ops_gather[] = {
    {"", "Gather", 1, 17, op_gather},
    {"", "GatherElements", 11, 17, op_gather_elements},
    {"", "GatherND", 11, 17, op_gather_nd},
    {"", "ScatterElements", 11, 17, op_scatter_elements},
    {"", "Scatter", 9, 10, op_scatter},
    {"", "ScatterND", 11, 17, op_scatter_nd},
    {"", "OneHot", 9, 17, gatherop_one_hot},
    {"", "NonZero", 9, 17, gatherop_non_zero},
    {"", "Compress", 9, 17, gatherop_compress},
    {"", "ReverseSequence", 10, 17, gatherop_reverse_sequence},
    {"", "Unique", 11, 17, gatherop_unique},
    {0},
};

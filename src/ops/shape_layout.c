/*
 * The strided copy behind Transpose, Slice, Expand, Tile and the
 * depth/space rearrangements, plus small helpers of the shape and gather
 * families (shape_layout.h).
 *
 * A copy is described as a dense destination shape and, per dimension, the
 * stride (in elements) at which the source advances. Before looping, the view
 * is simplified: dimensions of size 1 go, and a dimension merges with the one
 * after it when the source is contiguous across them, so a Slice of whole
 * rows becomes one memcpy per row and a Transpose of NCHW to NHWC becomes a
 * batch of 2-D transposes. Two loops then do the work:
 *  - rows: the innermost dimension is walked with its source stride (a
 *    memcpy when it is 1, an element loop otherwise, stride 0 repeats);
 *  - tiles: when the source is contiguous along some other dimension p (a
 *    real transpose) and elements are 1, 2, 4 or 8 bytes, (p, last) is
 *    copied in square tiles so both the reads and the writes stay in cache,
 *    2-, 4- and 8-byte elements through register transposes (SSE2, and
 *    AVX2 / AVX-512 when tern_isa() allows; transpose_tiles.h).
 * Both split their work over the thread pool by rows or tile rows.
 * Elements are moved with fixed-size memcpy, which compilers turn into plain
 * loads and stores without assuming any alignment of the source.
 */
#include "ops/shape_layout.h"

#include <string.h>

#include "ops/transpose_tiles.h"

tern_status *shapeop_input(const op_ctx *c, int i, const tern_tensor **t)
{
    TERN_TRY(op_need_input(c, i));
    const tern_tensor *x = c->in[i];
    if (x->kind != TENSOR_DENSE) return op_error(c, "input %d must be a tensor", i);
    if (!dtype_valid((int)x->dtype) || dtype_elem_size(x->dtype) == 0)
        return op_error(c, "input %d has unsupported type %s", i, tern_dtype_name(x->dtype));
    *t = x;
    return NULL;
}

tern_status *shapeop_opt_input(const op_ctx *c, int i, const tern_tensor **t)
{
    *t = NULL;
    if (i >= c->n_in || !c->in[i]) return NULL;
    return shapeop_input(c, i, t);
}

void shapeop_strides(int rank, const int64_t *dims, int64_t *strides)
{
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= dims[i];
    }
}

void shapeop_fill(void *dst, const void *val, int64_t n, size_t esz)
{
    char *d = dst;
    if (n <= 0) return;
    switch (esz) {
    case 1: memset(d, *(const unsigned char *)val, (size_t)n); return;
    case 4:
        for (int64_t i = 0; i < n; i++) memcpy(d + i * 4, val, 4);
        return;
    case 8:
        for (int64_t i = 0; i < n; i++) memcpy(d + i * 8, val, 8);
        return;
    default:
        for (int64_t i = 0; i < n; i++) memcpy(d + (size_t)i * esz, val, esz);
    }
}

/* Copies n elements from s (stride st elements) to dense d. */
static void copy_line(char *d, const char *s, int64_t n, int64_t st, size_t esz)
{
    if (st == 1) {
        memcpy(d, s, (size_t)n * esz);
        return;
    }
    int64_t bs = st * (int64_t)esz;
    switch (esz) {
    case 1:
        for (int64_t i = 0; i < n; i++) d[i] = s[i * bs];
        break;
    case 2:
        for (int64_t i = 0; i < n; i++) memcpy(d + i * 2, s + i * bs, 2);
        break;
    case 4:
        for (int64_t i = 0; i < n; i++) memcpy(d + i * 4, s + i * bs, 4);
        break;
    case 8:
        for (int64_t i = 0; i < n; i++) memcpy(d + i * 8, s + i * bs, 8);
        break;
    default:
        for (int64_t i = 0; i < n; i++) memcpy(d + (size_t)i * esz, s + i * bs, esz);
    }
}

typedef struct copy_job {
    char *dst;
    const char *src;
    int64_t esz;
    int rank;
    int64_t dims[SHAPEOP_MAX_VIEW_RANK];
    int64_t ss[SHAPEOP_MAX_VIEW_RANK]; /* source strides, elements */
    int64_t ds[SHAPEOP_MAX_VIEW_RANK]; /* destination strides, elements */
    /* tiled path: the contiguous source dimension p, tile edge, tiles along p */
    int p;
    int64_t tile, ntile;
    ttile_fn tile_fn; /* register transposes for esz (transpose_tiles.h) */
} copy_job;

/* Rows: one unit is one run of the innermost dimension. */
static void copy_rows(void *arg, int64_t begin, int64_t end)
{
    const copy_job *j = arg;
    int r = j->rank;
    int64_t n = j->dims[r - 1], st = j->ss[r - 1], idx[SHAPEOP_MAX_VIEW_RANK], off = 0, rem = begin;
    for (int k = r - 2; k >= 0; k--) {
        idx[k] = rem % j->dims[k];
        rem /= j->dims[k];
        off += idx[k] * j->ss[k];
    }
    char *d = j->dst + begin * n * j->esz;
    for (int64_t row = begin; row < end; row++) {
        copy_line(d, j->src + off * j->esz, n, st, (size_t)j->esz);
        d += n * j->esz;
        for (int k = r - 2; k >= 0; k--) {
            off += j->ss[k];
            if (++idx[k] < j->dims[k]) break;
            off -= j->ss[k] * j->dims[k];
            idx[k] = 0;
        }
    }
}

/* Tiles: one unit is one band of `tile` indices of dimension p, all the
 * other dimensions but the last fixed. */
static void copy_tiles(void *arg, int64_t begin, int64_t end)
{
    const copy_job *j = arg;
    int r = j->rank, p = j->p, last = r - 1;
    int64_t dp = j->dims[p], dl = j->dims[last], ssl = j->ss[last], dsp = j->ds[p];
    for (int64_t u = begin; u < end; u++) {
        int64_t band = u % j->ntile, rem = u / j->ntile, soff = 0, doff = 0;
        for (int k = last - 1; k >= 0; k--) {
            if (k == p) continue;
            int64_t ik = rem % j->dims[k];
            rem /= j->dims[k];
            soff += ik * j->ss[k];
            doff += ik * j->ds[k];
        }
        int64_t i0 = band * j->tile, ni = dp - i0 < j->tile ? dp - i0 : j->tile;
        soff += i0; /* ss[p] == 1 */
        doff += i0 * dsp;
        for (int64_t j0 = 0; j0 < dl; j0 += j->tile) {
            int64_t nj = dl - j0 < j->tile ? dl - j0 : j->tile;
            j->tile_fn(j->dst + (doff + j0) * j->esz, j->src + (soff + j0 * ssl) * j->esz, ni, nj,
                       dsp, ssl);
        }
    }
}

void shapeop_copy_strided(op_ctx *c, void *dst, const void *src, size_t esz, int rank,
                          const int64_t *dims, const int64_t *sstrides)
{
    copy_job j = {.dst = dst, .src = src, .esz = (int64_t)esz};
    /* Drop unit dimensions, merge dimensions the source walks contiguously. */
    int r = 0;
    for (int k = 0; k < rank; k++) {
        if (dims[k] == 0) return;
        if (dims[k] == 1) continue;
        if (r > 0 && j.ss[r - 1] == sstrides[k] * dims[k]) {
            j.dims[r - 1] *= dims[k];
            j.ss[r - 1] = sstrides[k];
            continue;
        }
        j.dims[r] = dims[k];
        j.ss[r] = sstrides[k];
        r++;
    }
    if (r == 0) {
        memcpy(dst, src, esz);
        return;
    }
    j.rank = r;
    shapeop_strides(r, j.dims, j.ds);
    int64_t total = j.ds[0] * j.dims[0];

    /* A real transpose: the source is contiguous along p, not along the last. */
    j.p = -1;
    if (esz <= 8 && (esz & (esz - 1)) == 0 && r >= 2 && j.ss[r - 1] != 1 && j.dims[r - 1] >= 4)
        for (int k = 0; k < r - 1; k++)
            if (j.ss[k] == 1 && j.dims[k] >= 4) j.p = k;
    if (j.p >= 0) {
        j.tile = 64;
        j.tile_fn = ttile_pick(esz);
        j.ntile = (j.dims[j.p] + j.tile - 1) / j.tile;
        int64_t units = total / j.dims[j.p] / j.dims[r - 1] * j.ntile;
        int64_t per_unit = j.tile * j.dims[r - 1];
        tpool_for(c->pool, units, 1 + 16384 / per_unit, copy_tiles, &j);
        return;
    }
    int64_t rows = total / j.dims[r - 1];
    tpool_for(c->pool, rows, 1 + 16384 / j.dims[r - 1], copy_rows, &j);
}

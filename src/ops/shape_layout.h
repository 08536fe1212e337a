/*
 * Helpers the shape and gather families share: element sizes that count a
 * STRING element as its char* (kernels copy string pointers, never the
 * bytes), input checks, and the strided copy most data-movement operators
 * reduce to (Transpose, Slice, Expand, Tile, DepthToSpace, SpaceToDepth).
 */
#ifndef TERN_OPS_SHAPE_LAYOUT_H
#define TERN_OPS_SHAPE_LAYOUT_H

#include "ops/op.h"

/* Input i, which must be present and a dense tensor of a known type. */
tern_status *shapeop_input(const op_ctx *c, int i, const tern_tensor **t);

/* Optional input i (NULL when absent); a present one must be dense. */
tern_status *shapeop_opt_input(const op_ctx *c, int i, const tern_tensor **t);

/* dense strides (in elements) of a shape */
void shapeop_strides(int rank, const int64_t *dims, int64_t *strides);

/* Fills dst[0..n) with copies of the esz-byte element at val. */
void shapeop_fill(void *dst, const void *val, int64_t n, size_t esz);

/* Largest rank shapeop_copy_strided accepts (Tile views its output with two
 * dimensions per input dimension). */
#define SHAPEOP_MAX_VIEW_RANK (2 * TERN_MAX_RANK)

/*
 * Writes the dense tensor dst of shape dims[0..rank) from a strided view of
 * src: dst[i0..ik] = src[sum ij * sstrides[j]] (strides in elements; 0 reads
 * one element again, negative walks backwards from src). The caller has
 * checked every offset the view reaches lies inside the source. Runs on the
 * context's thread pool for large copies.
 */
void shapeop_copy_strided(op_ctx *c, void *dst, const void *src, size_t esz, int rank,
                          const int64_t *dims, const int64_t *sstrides);

#endif

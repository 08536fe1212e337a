/*
 * Kernels of the shape family that make new values rather than move
 * elements (shape_make.c); registered in shape.c's table.
 */
#ifndef TERN_OPS_SHAPE_MAKE_H
#define TERN_OPS_SHAPE_MAKE_H

#include "ops/op.h"

tern_status *shapeop_shape(op_ctx *c);
tern_status *shapeop_size(op_ctx *c);
tern_status *shapeop_constant(op_ctx *c);
tern_status *shapeop_constant_of_shape(op_ctx *c);
tern_status *shapeop_range(op_ctx *c);
tern_status *shapeop_eye_like(op_ctx *c);
tern_status *shapeop_trilu(op_ctx *c);

#endif

/*
 * Internal header of the image family: the kernels image_sample.c defines
 * for the table in image.c, and the float32 staging helpers both files use.
 */
#ifndef TERN_OPS_IMAGE_H
#define TERN_OPS_IMAGE_H

#include "ops/op.h"

tern_status *image_grid_sample(op_ctx *c);
tern_status *image_roi_align(op_ctx *c);
tern_status *image_nms(op_ctx *c);

/* t's data as float32: t's own data if it is float, else a scratch copy.
 * Error unless t is a dense float tensor. */
tern_status *image_as_f32(op_ctx *c, const tern_tensor *t, const float **out);
/* A float32 buffer for output t: t's data if float, else scratch that
 * image_flush_f32 converts into t. */
tern_status *image_out_f32(op_ctx *c, tern_tensor *t, float **out);
void image_flush_f32(tern_tensor *t, const float *buf);

#endif

/*
 * Sliding-window geometry shared by Conv, ConvInteger, QLinearConv and the
 * pooling ops: the spatial sizes of input, kernel and output, and the
 * strides, dilations and begin/end pads, resolved once from the node's
 * attributes (including auto_pad) so that the loops only read numbers.
 *
 * Output position o along a dimension reads input positions
 *   o*stride - pad0 + j*dil   for j in [0, k)
 * and positions outside [0, in) are padding.
 */
#ifndef TERN_OPS_CONV_GEOM_H
#define TERN_OPS_CONV_GEOM_H

#include "ops/op.h"

#define CONV_MAX_SP (TERN_MAX_RANK - 2)

typedef struct conv_geom {
    int nsp; /* spatial dimensions */
    int64_t in[CONV_MAX_SP], out[CONV_MAX_SP], k[CONV_MAX_SP];
    int64_t stride[CONV_MAX_SP], dil[CONV_MAX_SP], pad0[CONV_MAX_SP], pad1[CONV_MAX_SP];
    int64_t in_size, out_size, k_size; /* products over the spatial dims */
} conv_geom;

/* x is [N, C, spatial...]; kernel holds nsp window sizes. Reads strides,
 * dilations, pads and auto_pad; ceil_mode rounds the output size up (pools;
 * a window may then not start past the end of the input plus pad0). */
tern_status *conv_geom_make(const op_ctx *c, const tern_tensor *x, const int64_t *kernel,
                            bool ceil_mode, conv_geom *g);

/* Reads an INTS attribute of exactly n values >= lo into v, or fills v with
 * dflt when absent. */
tern_status *conv_ints_attr(const op_ctx *c, const char *name, int n, int64_t dflt, int64_t lo,
                            int64_t *v);

/* *acc *= v unless v is negative or the product overflows (then false). */
bool conv_mul_ok(int64_t *acc, int64_t v);

/* The same geometry with a unit leading dimension when nsp == 1, so 2-D
 * loops serve 1-D windows too. */
void conv_geom_as_2d(const conv_geom *g, conv_geom *g2);

#endif

/* Kernels of norm_softmax.c, listed in norm.c's ops_norm table. */
#ifndef TERN_OPS_NORM_SOFTMAX_H
#define TERN_OPS_NORM_SOFTMAX_H

#include "ops/op.h"

tern_status *norm_softmax(op_ctx *c);
tern_status *norm_log_softmax(op_ctx *c);
tern_status *norm_hardmax(op_ctx *c);
tern_status *norm_nll_loss(op_ctx *c);
tern_status *norm_sce_loss(op_ctx *c);

#endif

/*
 * Gather-family kernels that select elements by condition or value rather
 * than by an index tensor (gather_select.c); registered in gather.c's table.
 */
#ifndef TERN_OPS_GATHER_SELECT_H
#define TERN_OPS_GATHER_SELECT_H

#include "ops/op.h"

tern_status *gatherop_one_hot(op_ctx *c);
tern_status *gatherop_non_zero(op_ctx *c);
tern_status *gatherop_compress(op_ctx *c);
tern_status *gatherop_reverse_sequence(op_ctx *c);
tern_status *gatherop_unique(op_ctx *c);

#endif

/* MaxRoiPool (random_roipool.c), registered in the random family's table. */
#ifndef TERN_OPS_RANDOM_ROIPOOL_H
#define TERN_OPS_RANDOM_ROIPOOL_H

#include "ops/op.h"

tern_status *random_max_roi_pool(op_ctx *c);

#endif

/* Kernels of the linalg family that live outside linalg.c. */
#ifndef TERN_OPS_LINALG_OPS_H
#define TERN_OPS_LINALG_OPS_H

#include "ops/op.h"

/* Einsum (linalg_einsum.c). */
tern_status *linalg_einsum(op_ctx *c);

#endif

/* Kernels of the linalg family that live outside linalg.c. */
#ifndef TERN_OPS_LINALG_OPS_H
#define TERN_OPS_LINALG_OPS_H

#include "ops/op.h"

/* Einsum (linalg_einsum.c). */
tern_status *linalg_einsum(op_ctx *c);

/* int8 or uint8: the element types of the quantised ops. */
static inline bool linalg_is_q8(tern_dtype dt)
{
    return dt == TERN_UINT8 || dt == TERN_INT8;
}

/* A zero point or scale of a quantised operand (input idx, called `what`):
 * absent (*t = NULL; an error if `need`), a scalar, or `per` values (one per
 * row, column or output channel). */
tern_status *linalg_q_param(op_ctx *c, int idx, const char *what, int64_t per, bool need,
                            const tern_tensor **t);

#endif

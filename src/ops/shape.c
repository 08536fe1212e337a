/* Operator family: shape (kernels to come). */
#include "ops/op.h"

const op_def ops_shape[] = {
    {0},
};

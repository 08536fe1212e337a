/* Operator family: pool (kernels to come). */
#include "ops/op.h"

const op_def ops_pool[] = {
    {0},
};

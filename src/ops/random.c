/* Operator family: random (kernels to come). */
#include "ops/op.h"

const op_def ops_random[] = {
    {0},
};

/* Operator family: reduce (kernels to come). */
#include "ops/op.h"

const op_def ops_reduce[] = {
    {0},
};

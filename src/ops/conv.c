/* Operator family: conv (kernels to come). */
#include "ops/op.h"

const op_def ops_conv[] = {
    {0},
};

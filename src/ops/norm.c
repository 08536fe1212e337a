/* Operator family: norm (kernels to come). */
#include "ops/op.h"

const op_def ops_norm[] = {
    {0},
};

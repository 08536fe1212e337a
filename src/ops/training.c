/* Operator family: training (kernels to come). */
#include "ops/op.h"

const op_def ops_training[] = {
    {0},
};

/* Operator family: gather (kernels to come). */
#include "ops/op.h"

const op_def ops_gather[] = {
    {0},
};

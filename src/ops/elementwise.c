/* Operator family: elementwise (kernels to come). */
#include "ops/op.h"

const op_def ops_elementwise[] = {
    {0},
};

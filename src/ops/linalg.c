/* Operator family: linalg (kernels to come). */
#include "ops/op.h"

const op_def ops_linalg[] = {
    {0},
};

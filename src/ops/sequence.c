/* Operator family: sequence (kernels to come). */
#include "ops/op.h"

const op_def ops_sequence[] = {
    {0},
};

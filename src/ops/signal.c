/* Operator family: signal (kernels to come). */
#include "ops/op.h"

const op_def ops_signal[] = {
    {0},
};

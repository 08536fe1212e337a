/* Operator family: control (kernels to come). */
#include "ops/op.h"

const op_def ops_control[] = {
    {0},
};

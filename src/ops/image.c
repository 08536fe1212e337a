/* Operator family: image (kernels to come). */
#include "ops/op.h"

const op_def ops_image[] = {
    {0},
};

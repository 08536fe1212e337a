/* Operator family: quant (kernels to come). */
#include "ops/op.h"

const op_def ops_quant[] = {
    {0},
};

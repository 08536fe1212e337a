/* Operator family: text (kernels to come). */
#include "ops/op.h"

const op_def ops_text[] = {
    {0},
};

/* Operator family: rnn (kernels to come). */
#include "ops/op.h"

const op_def ops_rnn[] = {
    {0},
};

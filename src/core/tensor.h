/*
 * The tensor every layer passes around. It is a plain struct (the public API
 * sees it as opaque): element type, shape inline (no allocation for dims),
 * and a data pointer that points either into an arena, into a model's
 * initializer storage, or into a buffer the tensor owns (flag `owns`).
 *
 * ONNX values that are not plain tensors ride on the same struct through
 * `kind`: a SEQUENCE holds `dims[0]` element tensors in `data` (an array of
 * tern_tensor*, elements of type `dtype`), a NONE is an empty optional.
 *
 * STRING data is an array of char* (NUL terminated UTF-8). An owning tensor
 * owns the strings too; arena tensors keep their strings in the arena.
 */
#ifndef TERN_CORE_TENSOR_H
#define TERN_CORE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "tern/engine.h"

typedef enum tensor_kind { TENSOR_DENSE = 0, TENSOR_SEQUENCE = 1, TENSOR_NONE = 2 } tensor_kind;

/* Order of a dense tensor's elements in memory. PLAIN is row-major over
 * dims. C16 (float32, rank 3-5, C = dims[1] a multiple of 16) is oneDNN's
 * nCw16c / nChw16c / nCdhw16c: [N][C/16][spatial...][16], the same bytes.
 * Only kernels that declare it see C16 tensors (ops/op.h). */
typedef enum tensor_layout { LAYOUT_PLAIN = 0, LAYOUT_C16 = 1 } tensor_layout;

struct tern_tensor {
    tensor_kind kind;
    tern_dtype dtype;
    int rank;
    int64_t dims[TERN_MAX_RANK];
    int64_t numel; /* product of dims; 1 for rank 0; for a sequence, its length */
    void *data;
    bool owns;            /* data (and strings) are freed with the tensor */
    unsigned char layout; /* tensor_layout; PLAIN unless a kernel says otherwise */
};

/* Product of dims, or -1 if a dim is negative or the product overflows. */
int64_t shape_numel(int rank, const int64_t *dims);
/* Sets rank, dims and numel; error if rank > TERN_MAX_RANK or a dim is bad. */
tern_status *tensor_set_shape(tern_tensor *t, int rank, const int64_t *dims);
size_t tensor_nbytes(const tern_tensor *t);
/* A heap tensor owning a deep copy of src (strings and sequences too). */
tern_status *tensor_dup(const tern_tensor *src, tern_tensor **out);
/* Formats "[2,3,4]" into buf; returns buf. */
char *shape_str(int rank, const int64_t *dims, char *buf, size_t len);
bool shape_equal(const tern_tensor *a, const tern_tensor *b);

#endif

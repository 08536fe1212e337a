/*
 * tern engine: the public C API of libtern.
 *
 * Load an ONNX model into a session, ask it what it takes and returns, run it
 * with named input tensors and read the outputs. Every function that can fail
 * returns a tern_status pointer: NULL means success, anything else carries a
 * code and a message and must be released with tern_status_free().
 *
 * Ownership: every type is opaque and comes as a pair create/free. Getters
 * never transfer ownership. tern_session_run() hands back output tensors the
 * caller owns and frees with tern_tensor_free(); tern_session_run_into() can
 * instead fill tensors the caller already holds (no allocation per run).
 */
#ifndef TERN_ENGINE_H
#define TERN_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status ------------------------------------------------------------ */

typedef enum tern_code {
    TERN_OK = 0,
    TERN_ERR_INVALID_ARGUMENT = 1, /* bad input from the caller */
    TERN_ERR_INVALID_MODEL = 2,    /* malformed, truncated or inconsistent model */
    TERN_ERR_UNSUPPORTED = 3,      /* valid ONNX that tern cannot run (op, dtype, opset) */
    TERN_ERR_NOT_FOUND = 4,        /* a file, input or output that does not exist */
    TERN_ERR_NO_MEMORY = 5,
    TERN_ERR_IO = 6,
    TERN_ERR_RUNTIME = 7, /* a kernel refused its inputs at run time */
} tern_code;

typedef struct tern_status tern_status;

tern_code tern_status_code(const tern_status *st);
const char *tern_status_message(const tern_status *st);
void tern_status_free(tern_status *st);

/* ---- data types (values are ONNX TensorProto.DataType) ----------------- */

typedef enum tern_dtype {
    TERN_UNDEFINED = 0,
    TERN_FLOAT = 1,
    TERN_UINT8 = 2,
    TERN_INT8 = 3,
    TERN_UINT16 = 4,
    TERN_INT16 = 5,
    TERN_INT32 = 6,
    TERN_INT64 = 7,
    TERN_STRING = 8,
    TERN_BOOL = 9,
    TERN_FLOAT16 = 10,
    TERN_DOUBLE = 11,
    TERN_UINT32 = 12,
    TERN_UINT64 = 13,
    TERN_COMPLEX64 = 14,
    TERN_COMPLEX128 = 15,
    TERN_BFLOAT16 = 16,
} tern_dtype;

/* "float32", "int64", ... ; "undefined" for an unknown value. */
const char *tern_dtype_name(tern_dtype dt);
/* Bytes per element; 0 for STRING and unknown types. */
size_t tern_dtype_size(tern_dtype dt);

/* ---- tensors ----------------------------------------------------------- */

#define TERN_MAX_RANK 12

typedef struct tern_tensor tern_tensor;

/* A dense tensor that owns a zero-filled buffer of the right size. For STRING
 * every element starts as the empty string. */
tern_status *tern_tensor_create(tern_dtype dt, int rank, const int64_t *dims, tern_tensor **out);
/* Copies `nbytes` of `data` into a new tensor; nbytes must match the shape. */
tern_status *tern_tensor_create_copy(tern_dtype dt, int rank, const int64_t *dims, const void *data,
                                     size_t nbytes, tern_tensor **out);
void tern_tensor_free(tern_tensor *t);

tern_dtype tern_tensor_dtype(const tern_tensor *t);
int tern_tensor_rank(const tern_tensor *t);
const int64_t *tern_tensor_dims(const tern_tensor *t);
int64_t tern_tensor_numel(const tern_tensor *t);
size_t tern_tensor_nbytes(const tern_tensor *t);
/* Raw element buffer (C order). For STRING it is an array of char* (UTF-8, NUL
 * terminated) owned by the tensor. */
void *tern_tensor_data(tern_tensor *t);
const void *tern_tensor_cdata(const tern_tensor *t);
/* Sets string element i (STRING tensors only); the string is copied. */
tern_status *tern_tensor_set_string(tern_tensor *t, int64_t i, const char *s);

/* ---- sessions ---------------------------------------------------------- */

typedef struct tern_options tern_options;

tern_options *tern_options_create(void);
void tern_options_free(tern_options *o);
/* Intra-op threads; 0 (the default) means 1. */
void tern_options_set_threads(tern_options *o, int threads);
/* Graph optimisation at load (constant folding, fusions; see graph/passes.h):
 * 1 (the default) or 0. The environment variable TERN_OPTIMIZE=0 turns it
 * off for every session. */
void tern_options_set_optimize(tern_options *o, int on);

typedef struct tern_session tern_session;

/* Loads a model file. External data files are resolved against its folder. */
tern_status *tern_session_create(const char *path, const tern_options *opt, tern_session **out);
/* Loads a model held in memory (external data is refused: no folder to read). */
tern_status *tern_session_create_from_memory(const void *buf, size_t len, const tern_options *opt,
                                             tern_session **out);
void tern_session_free(tern_session *s);

/* Description of one graph input or output. A dimension is either a fixed
 * size (>= 0) or symbolic: dims[i] == -1 and dim_names[i] is its name (or "" if
 * the model leaves it unnamed). rank is -1 when the model gives no shape. */
typedef struct tern_io_info {
    const char *name;
    tern_dtype dtype;
    int rank;
    const int64_t *dims;
    const char *const *dim_names;
} tern_io_info;

int tern_session_input_count(const tern_session *s);
int tern_session_output_count(const tern_session *s);
/* index must be in range; the returned struct lives as long as the session. */
const tern_io_info *tern_session_input(const tern_session *s, int index);
const tern_io_info *tern_session_output(const tern_session *s, int index);

/* Runs the model. inputs[i] is bound to the graph input called input_names[i];
 * every graph input without an initializer must be given. On success
 * outputs[j] receives a new tensor for every graph output, in the order of
 * tern_session_output(); the caller frees each with tern_tensor_free(). A
 * session runs one inference at a time: concurrent callers are serialised. */
tern_status *tern_session_run(tern_session *s, int n_inputs, const char *const *input_names,
                              const tern_tensor *const *inputs, tern_tensor **outputs);

/* Runs the model into output tensors the caller keeps from run to run. For
 * each j, outputs[j] is either NULL, and receives a new tensor as with
 * tern_session_run(), or a tensor the caller owns, of output j's dtype and of
 * exactly the shape the model produces for these inputs, whose buffer
 * receives the result (an error naming the output if they differ; string
 * elements are copied as with tern_tensor_set_string; a non-tensor output
 * (sequence, optional) needs NULL). On error the tensors created by this
 * call are freed and set back to NULL; the caller's keep their tensors but
 * not necessarily their contents.
 *
 * The session plans its memory per set of input shapes: from the third run
 * with the same shapes on (the first records a plan, the second sizes the
 * memory to it), an inference whose outputs all come back into the caller's
 * tensors makes no heap allocation in tern, whatever the number of threads.
 * Exceptions: string outputs (each element is copied), and oneDNN, which
 * allocates a few small blocks inside each primitive execution (convolution,
 * pooling, LayerNorm and Softmax; TERN_DNNL=0 in the environment runs tern's
 * own kernels). */
tern_status *tern_session_run_into(tern_session *s, int n_inputs, const char *const *input_names,
                                   const tern_tensor *const *inputs, tern_tensor **outputs);

/* Opset version the model imports for a domain ("" is ai.onnx), or -1. */
int64_t tern_session_opset(const tern_session *s, const char *domain);

#ifdef __cplusplus
}
#endif
#endif

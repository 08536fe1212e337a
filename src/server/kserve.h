/*
 * KServe v2 / Open Inference Protocol codec, with Triton's binary tensor
 * extension. Pure functions over buffers: no I/O, no model state.
 *
 * A request body is JSON, optionally followed by binary tensor data: when
 * the HTTP header Inference-Header-Content-Length is present, the first
 * header_len bytes are the JSON header and the rest holds, in input order,
 * the raw bytes of every input whose "parameters" carry "binary_data_size".
 * Such inputs are decoded WITHOUT copying: their tensor data points into the
 * body buffer, which must outlive the request (the HTTP layer owns it).
 *
 * Datatypes map to tern dtypes: BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32,
 * FP64, BYTES (STRING; binary form: each element a 4-byte little-endian
 * length then the bytes), BF16.
 *
 * Every decode error is a tern_status with TERN_ERR_INVALID_ARGUMENT and a
 * message naming the field: "inputs[1].shape: ...", "input 'x': data has 5
 * elements but shape [2,3] needs 6", "request body is not valid JSON: ...".
 */
#ifndef TERN_SERVER_KSERVE_H
#define TERN_SERVER_KSERVE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "core/tensor.h"

typedef struct kserve_output_req {
    const char *name;
    bool binary; /* parameters.binary_data == true */
} kserve_output_req;

typedef struct kserve_request {
    const char *id; /* NULL if absent; echoed in the response */
    int n_inputs;
    const char **input_names;
    tern_tensor **inputs; /* heap tensors; binary ones point into the body (owns=false) */
    int n_outputs;        /* 0: every model output, in model order */
    kserve_output_req *outputs;
    bool binary_default;   /* parameters.binary_data_output: all outputs binary */
    long long timeout_us;  /* parameters.timeout, or 0 */
    long long priority;    /* parameters.priority, or 0 (the model's default level) */
    void *json;            /* private: the parsed document (names point into it) */
} kserve_request;

/* Limits a decoder enforces (0 = no limit). */
typedef struct kserve_limits {
    long long max_elements; /* per tensor */
} kserve_limits;

/* Decodes a request body. header_len is the value of the
 * Inference-Header-Content-Length header, or -1 when absent (whole body is
 * JSON). On success *out must be freed with kserve_request_free(). */
tern_status *kserve_decode_request(const char *body, size_t len, long long header_len,
                                   const kserve_limits *lim, kserve_request **out);
void kserve_request_free(kserve_request *r);

/* Maps a KServe datatype name to a tern dtype (0 if unknown) and back. */
tern_dtype kserve_dtype(const char *name);
const char *kserve_dtype_name(tern_dtype dt);

/* One output of a response. */
typedef struct kserve_output {
    const char *name;
    const tern_tensor *t;
    bool binary;
} kserve_output;

/* Encodes a response: {"model_name","model_version","id"?,"outputs":[...]}.
 * Binary outputs carry "parameters":{"binary_data_size":N} and their bytes
 * follow the JSON; *header_len is then the JSON length (for the
 * Inference-Header-Content-Length response header), or -1 when no output is
 * binary. *body is malloc'd; the caller frees it. */
tern_status *kserve_encode_response(const char *model, const char *version, const char *id,
                                    int n, const kserve_output *outs, char **body, size_t *len,
                                    long long *header_len);

/* {"error": msg} as a malloc'd string. */
char *kserve_error_json(const char *msg);

#endif

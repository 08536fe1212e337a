/*
 * The client side of the KServe v2 / Open Inference Protocol, for `tern
 * infer`: encodes an inference request from tensors and decodes a response
 * into tensors. Pure functions over buffers; the HTTP transfer lives in
 * infer.c.
 *
 * A body is JSON, optionally followed by binary tensor data (Triton's binary
 * tensor extension): when the header Inference-Header-Content-Length is
 * present, the first header_len bytes are the JSON and the rest holds, in
 * tensor order, the bytes of every tensor whose "parameters" carry
 * "binary_data_size". Binary layout: little-endian, row-major; BOOL one byte;
 * BYTES each element a 4-byte little-endian length then its bytes. Datatype
 * names map to dtypes through the server's codec (kserve_dtype).
 */
#ifndef TERN_CLI_INFER_CODEC_H
#define TERN_CLI_INFER_CODEC_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "core/tensor.h"

/* Encodes a request for n inputs. Without `binary`, tensor values travel as
 * JSON "data" (flat, row-major); with it, as binary data after the JSON, and
 * the outputs are asked for in binary too. out_names (n_out of them, may be
 * 0) restricts the outputs; 0 asks for every output. *body is malloc'd;
 * *header_len is the JSON length to send as Inference-Header-Content-Length,
 * or -1 when the body is plain JSON. */
tern_status *infer_encode_request(int n, const char *const *names, const tern_tensor *const *ins,
                                  int n_out, const char *const *out_names, bool binary, char **body,
                                  size_t *len, long long *header_len);

/* A decoded response: the outputs in the order the server sent them. */
typedef struct infer_response {
    int n;
    char **names;
    tern_tensor **outputs;
} infer_response;

/* Decodes a successful response body. header_len is the value of the
 * Inference-Header-Content-Length response header, or -1 when absent. Every
 * inconsistency (bad JSON, unknown datatype, data that disagrees with the
 * shape, binary sizes that do not add up) is an error naming the output. */
tern_status *infer_decode_response(const char *body, size_t len, long long header_len,
                                   infer_response **out);
void infer_response_free(infer_response *r);

/* The message of an error response, as one printable line (malloc'd): the
 * "error" string of a JSON body, else the body text itself, cut to a few
 * hundred characters; "(empty response body)" when there is nothing. */
char *infer_error_message(const char *body, size_t len);

#endif

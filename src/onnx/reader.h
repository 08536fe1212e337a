/*
 * ONNX model reader: protobuf-c over Debian's onnx.proto. It parses a model
 * (from a file or memory), checks the parts every later stage relies on
 * (IR version, a graph, opset imports) and turns TensorProto into tensors:
 * typed fields or raw_data (little-endian), or external data files mapped
 * with mmap, their paths confined to the model's folder.
 *
 * Tensor data points into the parsed protobuf or into a mapping when it can,
 * so weights are not copied; the onnx_store that owns those lives as long as
 * any tensor made from it.
 */
#ifndef TERN_ONNX_READER_H
#define TERN_ONNX_READER_H

#include <stddef.h>

#include "core/arena.h"
#include "core/tensor.h"
#include "onnx/onnx.pb-c.h"

/* Owner of what tensors point into: the arena for copies and structs, and
 * the external-data mappings. */
typedef struct onnx_store {
    arena mem;
    const char *dir; /* model folder for external data, or NULL (memory) */
    struct onnx_mapping *maps;
} onnx_store;

void onnx_store_init(onnx_store *s, const char *dir);
void onnx_store_free(onnx_store *s);

/* Parses a serialized ModelProto and checks its header. The caller frees the
 * model with onnx__model_proto__free_unpacked(m, NULL). */
tern_status *onnx_parse_model(const void *buf, size_t len, Onnx__ModelProto **out);
/* Reads a whole file (mmap) and parses it. */
tern_status *onnx_read_model_file(const char *path, Onnx__ModelProto **out);

/* Converts a TensorProto; `what` names it in errors ("initializer 'w'"). The
 * tensor struct lives in s->mem; data may point into tp. */
tern_status *onnx_tensor(onnx_store *s, const Onnx__TensorProto *tp, const char *what,
                         tern_tensor **out);

/* Reads a whole file into memory (mmap, read-only). *len may be 0. */
tern_status *onnx_map_file(const char *path, void **buf, size_t *len);
void onnx_unmap_file(void *buf, size_t len);

#endif

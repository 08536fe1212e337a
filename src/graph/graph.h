/*
 * The graph IR. A model is turned into graphs of values and nodes, with every
 * name resolved to an index once, at load time:
 *
 *  - a value is anything a node reads or writes: a graph input, an
 *    initializer (its tensor is attached), a node output, or a name captured
 *    from an enclosing graph (`outer` is its index there);
 *  - nodes are stored in topological order, each with its kernel (op_def)
 *    already looked up for the opset the model imports; a node that owns
 *    subgraphs (If, Loop, Scan) depends on the outer values they capture, so
 *    it runs after their producers;
 *  - declared types (value_info, inputs, outputs) are kept with symbolic
 *    dims: dims[i] == -1 with dim_names[i] the dim_param (or "").
 *
 * Everything a graph owns lives in the model's store arena, so freeing a
 * model is one arena free plus the protobuf.
 */
#ifndef TERN_GRAPH_GRAPH_H
#define TERN_GRAPH_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "onnx/reader.h"
#include "ops/op.h"

typedef struct graph_type {
    int kind; /* TENSOR_DENSE, TENSOR_SEQUENCE (of tensors), or -1 unknown */
    int elem; /* tern_dtype of the elements, 0 if unknown */
    int rank; /* -1 if unknown */
    int64_t dims[TERN_MAX_RANK];
    const char *dim_names[TERN_MAX_RANK];
    bool optional;
} graph_type;

typedef struct graph_value {
    const char *name;
    const tern_tensor *init; /* initializer, or NULL */
    int producer;            /* node index or -1 */
    int outer;               /* index in the parent graph if captured, else -1 */
    bool is_input;
    graph_type type; /* declared type, if any */
} graph_value;

typedef struct graph_node {
    op_node op; /* name, op_type, domain, attributes */
    int n_in, n_out;
    int *in;  /* value indices, -1 for an omitted optional input */
    int *out; /* value indices, -1 for an omitted optional output */
    const op_def *def;
    int opset;
    const void *state; /* from def->prepare at load */
} graph_node;

struct graph {
    struct graph *parent;
    const char *name;
    int n_values, n_nodes, n_inputs, n_outputs;
    graph_value *values;
    graph_node *nodes; /* topological order */
    int *inputs;       /* value indices of the formal inputs, in order */
    int *outputs;
};
typedef struct graph graph;

typedef struct opset_entry {
    const char *domain;
    int64_t version;
} opset_entry;

typedef struct graph_model {
    Onnx__ModelProto *proto;
    onnx_store store;
    graph *main;
    int n_opsets;
    opset_entry *opsets;
    int64_t ir_version;
} graph_model;

/* Builds the IR of a parsed model (takes ownership of proto, also on error).
 * dir is the model's folder for external data, or NULL. Every node is checked
 * here: an unknown op, domain or opset version is an error naming the node. */
tern_status *graph_model_build(Onnx__ModelProto *proto, const char *dir, graph_model **out);
void graph_model_free(graph_model *m);

/* Opset version imported for a domain ("" / "ai.onnx" are the default), -1 if none. */
int64_t graph_model_opset(const graph_model *m, const char *domain);

/* Fills in the types of values the model does not declare (infer.c); run
 * by graph_model_build on every graph, after sorting. */
void graph_infer_shapes(graph *g);

/* Fills a graph_type from a protobuf TypeProto (for tools that read value info). */
void graph_type_from_proto(arena *mem, const Onnx__TypeProto *tp, graph_type *t);

#endif

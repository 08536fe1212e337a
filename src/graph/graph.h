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
    int cap_values; /* room in values[] (passes add initializers) */
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

/* What the load-time passes (passes.c) changed, by kind; graph_pass_name()
 * names each. */
enum {
    GRAPH_PASS_IDENTITY,  /* Identity, Dropout, no-op Reshape/Transpose/Cast removed */
    GRAPH_PASS_FOLD,      /* nodes evaluated at load into initializers */
    GRAPH_PASS_DEAD,      /* nodes whose outputs nothing reads */
    GRAPH_PASS_CONV_BN,   /* BatchNormalization folded into the Conv before it */
    GRAPH_PASS_TRANSPOSE, /* Transpose pairs composed or cancelled */
    GRAPH_PASS_RESHAPE,   /* Reshape chains collapsed */
    GRAPH_PASS_LAYERNORM, /* decomposed LayerNorm -> LayerNormalization */
    GRAPH_PASS_GELU,      /* decomposed erf GELU -> com.tern Gelu */
    GRAPH_PASS_GEMM,      /* MatMul + bias -> Gemm */
    GRAPH_PASS_FUSED_GEMM,
    GRAPH_PASS_FUSED_MATMUL,
    GRAPH_PASS_FUSED_CONV,
    GRAPH_PASS_ATTENTION, /* MatMul, scale, mask, Softmax, MatMul -> com.tern Attention */
    GRAPH_PASS_KINDS
};

/* Evaluates one node on constant inputs for constant folding; outputs stay
 * valid until the next call. The engine supplies it (engine/fold.c): the
 * graph layer cannot run kernels itself. */
typedef struct graph_evaluator graph_evaluator;
struct graph_evaluator {
    tern_status *(*eval)(graph_evaluator *self, const graph_node *n, const tern_tensor *const *in,
                         const tern_tensor **out);
};

/* How a model is built: optimise (run the passes on the main graph before
 * its nodes are prepared), with eval for constant folding (NULL: only the
 * folds the graph layer does itself, Constant and static Shape). */
typedef struct graph_build_opts {
    bool optimize;
    graph_evaluator *eval;
} graph_build_opts;

typedef struct graph_model {
    Onnx__ModelProto *proto;
    onnx_store store;
    graph *main;
    int n_opsets;
    opset_entry *opsets;
    int64_t ir_version;
    int main_nodes_before; /* node count of the main graph before the passes */
    int rewrites[GRAPH_PASS_KINDS];
    struct prep_cleanup *cleanups; /* op_prep_on_free callbacks, newest first */
} graph_model;

/* Builds the IR of a parsed model (takes ownership of proto, also on error).
 * dir is the model's folder for external data, or NULL. Every node is checked
 * here: an unknown op, domain or opset version is an error naming the node. */
tern_status *graph_model_build(Onnx__ModelProto *proto, const char *dir, graph_model **out);
/* The same with options (NULL: as graph_model_build, no optimisation). */
tern_status *graph_model_build_opts(Onnx__ModelProto *proto, const char *dir,
                                    const graph_build_opts *opts, graph_model **out);
void graph_model_free(graph_model *m);

/* Name of a GRAPH_PASS_* kind ("fold", "conv_bn", ...). */
const char *graph_pass_name(int kind);

/* Opset version imported for a domain ("" / "ai.onnx" are the default), -1 if none. */
int64_t graph_model_opset(const graph_model *m, const char *domain);

/* Fills in the types of values the model does not declare (infer.c); run
 * by graph_model_build on every graph, after sorting. */
void graph_infer_shapes(graph *g);

/* Fills a graph_type from a protobuf TypeProto (for tools that read value info). */
void graph_type_from_proto(arena *mem, const Onnx__TypeProto *tp, graph_type *t);

#endif

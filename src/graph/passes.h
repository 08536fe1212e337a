/*
 * Load-time graph optimisation: the passes that rewrite the main graph after
 * shape inference and before the nodes' prepare hooks (so that folded
 * weights are what gets prepacked).
 *
 * The passes work on the built IR in place. A node is removed by marking it
 * dead; a value that disappears (an Identity's output) is aliased to the one
 * that replaces it and readers are rewired when the sweep reaches them; a
 * fused node takes the slot of the last node of its pattern, which keeps the
 * node array in topological order without sorting again (every input of the
 * pattern exists before its last node runs). At the end the dead nodes are
 * squeezed out and the order is checked.
 *
 * Everything here is about values the model cannot observe changing: graph
 * outputs and values captured by subgraphs are "pinned" (never renamed or
 * removed), an initializer that is also a graph input is not a constant (the
 * caller may replace it), and every rewrite computes what the original nodes
 * compute, up to float rounding.
 *
 * This header is the graph layer's internal interface between passes.c (the
 * driver and the shared helpers), passes_simplify.c (folding, Identity and
 * no-op removal, Transpose/Reshape chains) and passes_fuse.c (Conv+BN,
 * LayerNorm, GELU, and bias/activation fusion into Conv, Gemm and MatMul) and
 * passes_attn.c (attention).
 */
#ifndef TERN_GRAPH_PASSES_H
#define TERN_GRAPH_PASSES_H

#include <stdbool.h>
#include <stdint.h>

#include "graph/graph.h"

/* Runs every pass on g (the model's main graph); eval may be NULL. */
tern_status *graph_optimize(graph_model *m, graph *g, graph_evaluator *eval);

/* ---- shared by the pass files -------------------------------------------- */

typedef struct pass_ctx {
    graph_model *m;
    graph *g;
    arena *mem; /* the model's store: new tensors, attributes and nodes */
    graph_evaluator *eval;
    int *uses;       /* per value: input slots of live nodes that read it */
    uint8_t *pinned; /* per value: a graph output or captured by a subgraph */
    int *alias;      /* per value: its replacement, or -1 (simplify sweep) */
    uint8_t *dead;   /* per node */
    int cap;         /* entries in uses / pinned / alias */
} pass_ctx;

/* Input k of n, or -1 when omitted or past the node's inputs (a malformed
 * node may have fewer than its op needs). */
static inline int pass_in(const graph_node *n, int k)
{
    return k >= 0 && k < n->n_in ? n->in[k] : -1;
}

/* Node predicates and attribute readers (ai.onnx ops unless said). */
bool pass_is(const graph_node *n, const char *op_type);
/* True if op is a word of list, a string of names each with a space on
 * both sides (" Add Mul "). */
bool pass_in_list(const char *list, const char *op);
const op_attr *pass_attr(const graph_node *n, const char *name);
int64_t pass_attr_int(const graph_node *n, const char *name, int64_t dflt);
float pass_attr_float(const graph_node *n, const char *name, float dflt);
/* INTS attribute: count and array, -1 if absent. */
int pass_attr_ints(const graph_node *n, const char *name, const int64_t **v);

/* Value helpers. pass_const: the tensor of a true constant (an initializer
 * the caller cannot override), else NULL. pass_single: read by exactly one
 * live node and neither pinned nor a graph input. pass_producer: index of the
 * live node that writes v, or -1. pass_type: v's type if it is a tensor,
 * else NULL. All take v = -1 (an omitted input). */
const tern_tensor *pass_const(const pass_ctx *c, int v);
bool pass_single(const pass_ctx *c, int v);
int pass_producer(const pass_ctx *c, int v);
const graph_type *pass_type(const pass_ctx *c, int v);
/* True if v is known to be a float32 tensor. */
bool pass_is_f32(const pass_ctx *c, int v);
/* Scalar value of a constant with one element (any numeric dtype). */
bool pass_const_scalar(const pass_ctx *c, int v, double *out);

/* A new dense tensor in the model's store (uninitialised data). */
tern_status *pass_new_tensor(pass_ctx *c, tern_dtype dt, int rank, const int64_t *dims,
                             tern_tensor **t);
/* Adds an initializer value named "<base>/<suffix>" holding t; *v its index.
 * May move g->values: hold no graph_value pointer across it. */
tern_status *pass_add_init(pass_ctx *c, const char *base, const char *suffix, const tern_tensor *t,
                           int *v);
/* Turns value v (a node output) into the initializer t: its node no longer
 * writes it. */
void pass_make_const(pass_ctx *c, int v, const tern_tensor *t);

/* Marks node i dead and releases its inputs. */
void pass_kill(pass_ctx *c, int i);
/* Points input k of node i at value v (-1: omitted), keeping use counts. */
void pass_set_input(pass_ctx *c, int i, int k, int v);

/* A copy of n's attributes with room for `extra` more at the end; *n_out
 * receives the copied count. Attributes named in `drop` (NULL-terminated
 * list, may be NULL) are left out. */
tern_status *pass_attrs_copy(pass_ctx *c, const graph_node *n, int extra, const char *const *drop,
                             op_attr **out, int *n_out);

/* Rewrites node slot i into a new node (domain "" for ai.onnx) with the
 * given inputs (-1 for omitted ones), attributes (taken, not copied) and one
 * output, value `out`, which the new node now produces. The kernel is looked
 * up for opset (the model's import for ai.onnx, 1 for com.tern); error if
 * none. */
tern_status *pass_rewrite(pass_ctx *c, int i, const char *name, const char *domain,
                          const char *op_type, int opset, int n_in, const int *in, op_attr *attrs,
                          int n_attrs, int out);

/* The passes (each returns through c and counts in c->m->rewrites). */
tern_status *pass_simplify(pass_ctx *c);
void pass_dead(pass_ctx *c);
tern_status *pass_patterns(pass_ctx *c);
tern_status *pass_fuse(pass_ctx *c);
tern_status *pass_attention(pass_ctx *c);

#endif

/*
 * The kernel contract. A kernel is one function `tern_status *fn(op_ctx *c)`
 * that reads its input tensors and the node's attributes, asks the executor
 * for each output with op_out() (which allocates it in the inference arena),
 * and loops. It allocates nothing else from the heap, keeps no global state
 * and does no I/O (STYLE.md, from ggml). Temporary buffers come from
 * op_scratch(), also arena memory, valid while the kernel runs and for as
 * long as an output points into it (the memory plan frees the rest when the
 * node finishes; see engine/plan.h).
 *
 * Kernels are found through the registry (registry.c): a table per operator
 * family of op_def {domain, op_type, since, until, fn}. A node whose domain
 * imports opset version V uses the entry with since <= V <= until; the kernel
 * sees V as c->opset and handles the differences between versions itself
 * (an attribute that became an input, a new default). Nodes with no entry are
 * refused when the model loads, naming the node and the op.
 *
 * Inputs are never modified: they may be model weights or another node's
 * output that is read again later. An output may alias an input (op_out_alias)
 * when it has the same bytes (Identity, Reshape, Squeeze...).
 *
 * A kernel whose op_def has OP_TAKES_C16 may receive, and produce, float
 * tensors in the channel-blocked layout LAYOUT_C16 (core/tensor.h): the
 * oneDNN convolutions pass it between each other without reordering. Every
 * other kernel sees plain tensors only: the executor converts its blocked
 * inputs first (op_plain_inputs), and the graph's outputs (op_plain_value).
 */
#ifndef TERN_OPS_OP_H
#define TERN_OPS_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"
#include "core/tensor.h"
#include "core/tpool.h"

struct graph;      /* a subgraph (If/Loop/Scan bodies); opaque to kernels */
struct exec_frame; /* executor state; opaque to kernels */

/* ONNX AttributeProto.AttributeType values. */
enum {
    ATTR_UNDEFINED = 0,
    ATTR_FLOAT = 1,
    ATTR_INT = 2,
    ATTR_STRING = 3,
    ATTR_TENSOR = 4,
    ATTR_GRAPH = 5,
    ATTR_FLOATS = 6,
    ATTR_INTS = 7,
    ATTR_STRINGS = 8,
    ATTR_TENSORS = 9,
    ATTR_GRAPHS = 10,
    ATTR_SPARSE_TENSOR = 11,
    ATTR_SPARSE_TENSORS = 12,
    ATTR_TYPE_PROTO = 13,
    ATTR_TYPE_PROTOS = 14,
};

typedef struct op_attr {
    const char *name;
    int type;
    float f;
    int64_t i;
    const char *s; /* NUL terminated; s_len excludes the NUL (may hold NULs) */
    size_t s_len;
    int n; /* element count of floats / ints / strings / tensors / graphs */
    const float *floats;
    const int64_t *ints;
    const char *const *strings;
    const tern_tensor *t;
    const tern_tensor *const *tensors;
    const struct graph *g;
    const struct graph *const *graphs;
    int tp_elem; /* TYPE_PROTO: tensor elem_type (or sequence's element type) */
} op_attr;

typedef struct op_node {
    const char *name; /* never NULL; "" if the model gives none */
    const char *op_type;
    const char *domain; /* "" for ai.onnx */
    int n_attrs;
    const op_attr *attrs;
} op_node;

typedef struct op_ctx {
    const op_node *node;
    int opset; /* version the model imports for the node's domain */
    int n_in;
    const tern_tensor *const *in; /* in[i] == NULL: optional input absent */
    int n_out;                    /* outputs the node declares */
    tern_tensor **out;            /* filled through op_out(); do not write directly */
    tpool *pool;                  /* intra-op threads (tpool_for) */
    struct exec_frame *frame;
    const void *state; /* what the op's prepare() made at load, or NULL */
} op_ctx;

typedef tern_status *(*op_fn)(op_ctx *c);

/* Load-time preparation of one node (optional). The inputs that are
 * constant (initializers of the node's own graph) are given, the others are
 * NULL; a prepare may precompute from them (e.g. prepacked weights) and set
 * *state, allocated with op_prep_alloc so it lives as long as the model. A
 * prepare that does not apply (no constant input, unsupported dtype) leaves
 * *state NULL and returns NULL; the kernel then takes its general path. It
 * must not fail on inputs the kernel would accept. */
typedef struct op_prep {
    const op_node *node;
    int opset;
    int n_in;
    const tern_tensor *const *in;
    void *mem;   /* private: the model's allocator */
    void *model; /* private: the model, for op_prep_on_free */
} op_prep;
typedef tern_status *(*op_prepare_fn)(op_prep *p, const void **state);
/* Memory that lives as long as the loaded model (64-byte aligned). */
void *op_prep_alloc(op_prep *p, size_t bytes);
/* Registers fn(arg) to run when the model is freed, for state that holds
 * resources other than op_prep_alloc memory (oneDNN primitives, heap
 * buffers). Callbacks run in reverse order of registration. On error (out
 * of memory, or no model behind p) fn has been called at once. */
tern_status *op_prep_on_free(op_prep *p, void (*fn)(void *arg), void *arg);

/* op_def.flags */
enum {
    OP_TAKES_C16 = 1, /* the kernel accepts LAYOUT_C16 inputs (see above) */
    /* In place: op_out(c, 0, ...) may hand back the buffer of input 0 (1,
     * 2) when that input has the output's dtype and shape and nothing else
     * will read it (engine/plan.h). The kernel must then be correct with
     * out->data == in->data: every element of that input is read before,
     * or at the same time as, the output element at its index is written,
     * and never after (elementwise loops; row kernels that finish reading a
     * row before writing it, or read each element just before overwriting
     * it). Inputs it reads at other indices (broadcast operands, scale and
     * bias) must not be flagged. */
    OP_INPLACE0 = 2,
    OP_INPLACE1 = 4,
    OP_INPLACE2 = 8,
};

typedef struct op_def {
    const char *domain;
    const char *op_type;
    int since, until; /* opset versions this kernel implements, inclusive */
    op_fn fn;
    op_prepare_fn prepare; /* optional */
    unsigned flags;        /* OP_* */
} op_def;

/* ---- registry (registry.c) ------------------------------------------------ */

/* The entry for (domain, op_type) at opset version `opset`, or NULL. */
const op_def *op_lookup(const char *domain, const char *op_type, int64_t opset);
/* True if any version of the op is known (to tell "unknown op" from "opset"). */
bool op_known(const char *domain, const char *op_type);
/* Calls fn for every registry entry. */
void op_foreach(void (*fn)(const op_def *d, void *arg), void *arg);
/* Highest opset of a domain tern implements ("" -> ai.onnx), or -1. */
int op_domain_max_opset(const char *domain);

/* ---- outputs and scratch (executor, engine/exec.c) ----------------------- */

/* Allocates output i as a dense tensor (uninitialised data; strings NULL). If
 * the node does not use output i, a throwaway tensor is returned. Output 0
 * of an OP_INPLACE* kernel may share an input's data (see the flags). */
tern_status *op_out(op_ctx *c, int i, tern_dtype dt, int rank, const int64_t *dims,
                    tern_tensor **t);
/* Output i shares src's data with a new dtype-preserving shape (rank/dims). */
tern_status *op_out_alias(op_ctx *c, int i, const tern_tensor *src, int rank, const int64_t *dims);
/* Output i becomes a sequence of n elements of dtype elem (elems[k] filled by
 * the kernel, e.g. with op_new_tensor or pointers to input tensors). */
tern_status *op_out_sequence(op_ctx *c, int i, tern_dtype elem, int64_t n, tern_tensor ***elems);
/* Output i becomes an empty optional (kind NONE) of element type elem. */
tern_status *op_out_none(op_ctx *c, int i, tern_dtype elem);
/* Output i becomes a view of an existing value (tensor, sequence or none). */
tern_status *op_out_value(op_ctx *c, int i, const tern_tensor *v);
/* A new arena tensor not bound to any output (sequence elements). */
tern_status *op_new_tensor(op_ctx *c, tern_dtype dt, int rank, const int64_t *dims,
                           tern_tensor **t);
/* Arena memory for this node: valid until it finishes, or for as long as
 * one of its outputs points into it; error if out of memory. */
tern_status *op_scratch(op_ctx *c, size_t bytes, void **p);
/* A copy of s in the arena (for STRING outputs). */
tern_status *op_strdup(op_ctx *c, const char *s, char **out);
bool op_out_used(const op_ctx *c, int i);

/* ---- layouts (ops/dnnl_layout.c) ----------------------------------------- */

/* Replaces every LAYOUT_C16 tensor among ins[0..c->n_in) by a plain copy in
 * scratch memory (the executor, before a kernel without OP_TAKES_C16). */
tern_status *op_plain_inputs(op_ctx *c, const tern_tensor **ins);
/* t itself when plain, else a plain copy that lives until the inference
 * ends (the executor, for the values a graph returns). */
tern_status *op_plain_value(op_ctx *c, const tern_tensor *t, const tern_tensor **out);

/* Runs subgraph g (an attribute of this node) with formal inputs in[0..n_in)
 * and writes its outputs, in graph order, to out[0..op_graph_n_outputs(g)).
 * Outer-scope names the body uses are resolved by the executor. The output
 * tensors live in the arena. */
tern_status *op_run_graph(op_ctx *c, const struct graph *g, int n_in, const tern_tensor *const *in,
                          tern_tensor **out);
int op_graph_n_inputs(const struct graph *g);
int op_graph_n_outputs(const struct graph *g);

/* ---- attributes (ops/common.c) ------------------------------------------ */

/* The attribute `name` of a node (NULL if absent); the graph passes read
 * nodes through it too. */
const op_attr *op_node_attr(const op_node *n, const char *name);
const op_attr *op_attr_get(const op_ctx *c, const char *name); /* NULL if absent */
int64_t op_attr_int(const op_ctx *c, const char *name, int64_t dflt);
float op_attr_float(const op_ctx *c, const char *name, float dflt);
const char *op_attr_str(const op_ctx *c, const char *name, const char *dflt);
/* Count of INTS / FLOATS elements and the array, or -1 if absent. */
int op_attr_ints(const op_ctx *c, const char *name, const int64_t **v);
int op_attr_floats(const op_ctx *c, const char *name, const float **v);

/* ---- helpers every family uses (ops/common.c) --------------------------- */

/* Error "node 'n' (Op): <message>" with TERN_ERR_RUNTIME. */
tern_status *op_error(const op_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Normalises a possibly negative axis against rank; error names the attribute. */
tern_status *op_axis(const op_ctx *c, int64_t axis, int rank, int *out);
/* Numpy multidirectional broadcast of n shapes. */
tern_status *op_broadcast_shape(const op_ctx *c, int n, const tern_tensor *const *ts, int *rank,
                                int64_t *dims);
/* Element strides of t when viewed with the broadcast shape (rank, dims): 0
 * on broadcast dimensions, right-aligned as numpy does. */
void op_bcast_strides(const tern_tensor *t, int rank, const int64_t *dims, int64_t *strides);
/* Requires input i to be present; error names it otherwise. */
tern_status *op_need_input(const op_ctx *c, int i);
/* Reads a 1-D (or scalar) integer tensor (int32/int64) into a scratch array. */
tern_status *op_read_ints(op_ctx *c, const tern_tensor *t, int64_t **v, int64_t *n);
/* Element i of a numeric tensor as double / int64 (any dtype). */
static inline double op_get_f64(const tern_tensor *t, int64_t i)
{
    return dtype_get_f64(t->dtype, t->data, i);
}
static inline int64_t op_get_i64(const tern_tensor *t, int64_t i)
{
    return dtype_get_i64(t->dtype, t->data, i);
}

#endif

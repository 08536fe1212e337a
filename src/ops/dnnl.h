/*
 * oneDNN inside the kernels: the process's CPU engine, and "plans", the
 * primitives a kernel runs for one input shape with their memory objects,
 * kept in a small per-node cache.
 *
 * A plan is built on the first run for a shape (key: the input dims and
 * layouts, the thread count) and kept until the model is freed (or until
 * DNN_CACHE_SIZE other shapes pushed it out). Its memory objects are created
 * once with no data; a run only points them at this run's tensors and
 * scratch (dnnl_memory_set_data_handle) and executes, under the cache's
 * mutex: runs of one node are serialised, which costs nothing while the
 * session runs one inference at a time. Primitive scratchpads are "user"
 * scratchpads carved out of op_scratch() with the plan's other temporaries.
 *
 * Threads: oneDNN here is built on OpenMP. A run sets the calling thread's
 * OpenMP thread count to the session's (tpool_threads) before creating or
 * executing anything, so oneDNN uses as many threads as tern's own pool and
 * never both at once (the caller of tpool_for and the OpenMP master are the
 * same thread, and neither pool runs while the other works). One caveat:
 * libgomp's idle workers spin for a while after each parallel region
 * unless OMP_WAIT_POLICY=PASSIVE (or a small GOMP_SPINCOUNT) is in the
 * environment when the process starts; libgomp reads it before any code of
 * ours runs. On a busy machine the spinning costs a lot (2 threads,
 * resnet18: 160-330 ms spinning against 24-28 ms passive on 2 loaded cores),
 * so deployments should set it; a process that embeds tern decides.
 *
 * TERN_DNNL=0 in the environment turns oneDNN off (every kernel takes its
 * portable path): for tests that compare the two, and to rule it out.
 * TERN_DNNL=direct keeps oneDNN but not its Winograd convolutions.
 *
 * One oneDNN limit: dnnl_primitive_execute() itself allocates a few small
 * blocks (its argument map) on every call; nothing else here allocates on
 * the hot path.
 */
#ifndef TERN_OPS_DNNL_H
#define TERN_OPS_DNNL_H

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>

#include "ops/conv_geom.h"
#include "ops/op.h"

/* False when oneDNN is unusable (no CPU engine) or TERN_DNNL=0. */
bool dnn_enabled(void);
/* Whether convolutions may use Winograd (not with TERN_DNNL=direct). */
bool dnn_winograd(void);
dnnl_engine_t dnn_engine(void);
/* Sets the calling thread's OpenMP threads to the session's; returns it. */
int dnn_set_threads(const op_ctx *c);
/* The format tag of a dense float tensor of rank 3-5 in layout l. */
dnnl_format_tag_t dnn_tag(int rank, tensor_layout l);
/* A plain md of t's dims in layout l (f32). */
dnnl_status_t dnn_md(dnnl_memory_desc_t *md, int rank, const int64_t *dims, dnnl_format_tag_t tag);
/* True if the primitive descriptor is oneDNN's slow reference code. */
bool dnn_is_ref(const_dnnl_primitive_desc_t pd);
/* True if it is a GEMM-based convolution ("gemm:jit"). */
bool dnn_is_gemm(const_dnnl_primitive_desc_t pd);

/* ---- plans --------------------------------------------------------------- */

/* Where an argument's data is during a run: input i (i >= 0) of the node,
 * its output 0, a region of the run's scratch, or a buffer fixed at build
 * time (reordered weights). */
enum { DNN_OUT = -1, DNN_SCRATCH = -2, DNN_FIXED = -3 };

#define DNN_MAX_STEPS 5
#define DNN_MAX_ARGS 6

typedef struct dnn_arg {
    int arg;    /* DNNL_ARG_* */
    int where;  /* input index or DNN_* */
    size_t off; /* DNN_SCRATCH: byte offset */
    dnnl_memory_t mem;
} dnn_arg;

typedef struct dnn_step {
    dnnl_primitive_t prim;
    int nargs;
    dnn_arg args[DNN_MAX_ARGS];
} dnn_step;

typedef struct dnn_plan {
    int nsteps;
    dnn_step steps[DNN_MAX_STEPS];
    size_t scratch; /* bytes of scratch a run takes */
    int out_layout; /* tensor_layout of output 0 */
} dnn_plan;

/* A region of n bytes in the plan's scratch; returns its offset. */
size_t dnn_plan_reserve(dnn_plan *p, size_t n);
/* Appends a step running the primitive of pd (created here). */
dnnl_status_t dnn_plan_step(dnn_plan *p, const_dnnl_primitive_desc_t pd, dnn_step **s);
/* Adds argument `arg` of md to step s, its data at `where` (+off). For
 * DNN_FIXED, data is the buffer. */
dnnl_status_t dnn_step_arg(dnn_step *s, int arg, const dnnl_memory_desc_t *md, int where,
                           size_t off, void *data);
/* Appends a reorder step from (md_from at where_from) to (md_to at where_to). */
dnnl_status_t dnn_plan_reorder(dnn_plan *p, const dnnl_memory_desc_t *from, int where_from,
                               size_t off_from, const dnnl_memory_desc_t *to, int where_to,
                               size_t off_to);
void dnn_plan_free(dnn_plan *p);
/* Runs the plan (threads already set): argument `where` i >= 0 reads in[i]. */
tern_status *dnn_plan_run(op_ctx *c, dnn_plan *p, const tern_tensor *const *in, void *y);

/* ---- per-node cache of plans --------------------------------------------- */

#define DNN_CACHE_SIZE 8
#define DNN_KEY_MAX (4 * TERN_MAX_RANK + 8)

typedef struct dnn_entry {
    int nkey;
    int64_t key[DNN_KEY_MAX];
    unsigned long used; /* tick of the last use, for eviction */
    bool built, ok;     /* ok: the plan runs; !ok: oneDNN declined, use the portable path */
    bool upgradable;    /* a direct plan whose next run builds the Winograd one */
    dnn_plan plan;
} dnn_entry;

/* Reordered constant weights, one per format a plan asked for. */
#define DNN_WEIGHT_FORMATS 4

typedef struct dnn_cache {
    pthread_mutex_t mu;
    unsigned long tick;
    dnn_entry e[DNN_CACHE_SIZE];
    int nw;
    dnnl_memory_desc_t wmd[DNN_WEIGHT_FORMATS];
    void *wbuf[DNN_WEIGHT_FORMATS];
} dnn_cache;

/* Allocates a cache that the model frees (op_prep_on_free); NULL if that
 * is not possible, and the caller then goes without. */
dnn_cache *dnn_cache_create(op_prep *p);
/* Locks k and returns the entry for key: built if seen before, else a
 * fresh one (the least recently used is recycled). dnn_cache_unlock after
 * the run. */
dnn_entry *dnn_cache_lock(dnn_cache *k, const int64_t *key, int nkey);
void dnn_cache_unlock(dnn_cache *k);
/* The constant `data` (plain md `have`) in format `want`, reordered once
 * and kept with the cache (called with the cache locked). */
dnnl_status_t dnn_cache_weights(dnn_cache *k, const dnnl_memory_desc_t *want,
                                const dnnl_memory_desc_t *have, const void *data, void **buf);

/* ---- convolutions (dnnl_conv.c) ------------------------------------------ */

/* Activation after the convolution (FusedConv). */
typedef enum conv_act_kind {
    ACT_NONE,
    ACT_RELU,
    ACT_LEAKY_RELU, /* a: alpha */
    ACT_CLIP,       /* a: min, b: max */
    ACT_SIGMOID,
    ACT_TANH,
    ACT_HARD_SIGMOID, /* a: alpha, b: beta */
} conv_act_kind;

typedef struct conv_act {
    conv_act_kind kind;
    float a, b;
} conv_act;

/* A float32 convolution the kernel has validated: Y = act(conv(X, W) + B + Z).
 * b and z may be NULL; x and z may be LAYOUT_C16; w is a constant (the
 * cache keeps it reordered). */
typedef struct dnn_conv {
    const tern_tensor *x, *w, *b, *z;
    int64_t group, m; /* groups, output channels */
    const conv_geom *g;
    conv_act act;
} dnn_conv;

/* Runs conv through oneDNN into a new output 0 if it can (*done true);
 * else leaves the output alone and *done false. */
tern_status *dnn_conv_run(op_ctx *c, dnn_cache *k, const dnn_conv *conv, bool *done);

/* ---- pooling (dnnl_pool.c) ------------------------------------------------ */

/* float32 MaxPool (max) or AveragePool of x with window g into a new
 * output 0 (C16 when the channels allow) if oneDNN can (*done true); else
 * *done false. */
tern_status *dnn_pool_run(op_ctx *c, dnn_cache *k, const tern_tensor *x, const conv_geom *g,
                          bool max, bool include_pad, bool *done);

/* ---- rows: LayerNormalization and Softmax (dnnl_norm.c) ------------------ */

/* The prepare of the nodes below: a plan cache in *state (NULL when oneDNN
 * is off). */
tern_status *dnn_rows_prepare(op_prep *p, const void **state);
/* LayerNormalization of c's X viewed as [rows, n] with Scale (and B) of n
 * elements and epsilon eps into a new output 0 if oneDNN can (*done true);
 * else *done false and the output untouched. */
tern_status *dnn_layernorm_run(op_ctx *c, dnn_cache *k, int64_t rows, int64_t n, float eps,
                               bool *done);
/* Softmax of c's input viewed as [rows, n] along n, likewise. */
tern_status *dnn_softmax_run(op_ctx *c, dnn_cache *k, int64_t rows, int64_t n, bool *done);

/* ---- layouts (dnnl_layout.c) --------------------------------------------- */

/* t, or a plain copy of it in scratch memory when it is LAYOUT_C16. */
tern_status *dnn_plain(op_ctx *c, const tern_tensor *t, const tern_tensor **out);

#endif

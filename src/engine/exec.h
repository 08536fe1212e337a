/*
 * The executor: runs a graph's nodes in order.
 *
 * An inference owns an exec_state: the memory every intermediate tensor,
 * scratch buffer and per-node array is allocated from, and the intra-op
 * pool. A frame is one activation of a graph: an array of value slots (the
 * tensor each value currently holds). The main graph gets the first frame;
 * If/Loop/Scan bodies get a frame whose parent is the frame of the node that
 * runs them, so captured values read through to the enclosing graph.
 *
 * Memory: the tensors and scratch buffers of main-graph nodes come from the
 * memory plan (engine/plan.h): each is returned when its last reader has
 * run, and for input shapes seen before, offsets recorded on the first run
 * are replayed. Everything else (tensor headers, frame arrays, and all the
 * memory of If/Loop/Scan bodies, which stay on this simple path) comes from
 * the bump arena and lives until the inference ends. Both are rewound at
 * the start of each inference and keep their memory, so in the steady state
 * (same input shapes) nothing is taken from the system heap.
 */
#ifndef TERN_ENGINE_EXEC_H
#define TERN_ENGINE_EXEC_H

#include "core/arena.h"
#include "core/tpool.h"
#include "engine/plan.h"
#include "graph/graph.h"

typedef struct exec_state {
    arena mem;
    tpool *pool;
    exec_mem mm;
    exec_live *live; /* of the main graph, built on the first run */
    int64_t *key;    /* input-shape signature of the current run */
    int cap_key;
} exec_state;

typedef struct exec_frame {
    exec_state *x;
    const graph *g;
    const tern_tensor **vals;
    struct exec_frame *parent;
    const graph_node *node; /* node running now, for errors */
    tern_tensor **outs;     /* its output slots */
    int n_outs;
    bool planned; /* the main graph: buffers come from x->mm */
} exec_frame;

/* threads as in tern_options_set_threads. */
tern_status *exec_state_init(exec_state *x, int threads);
void exec_state_free(exec_state *x);

/* One inference of the main graph g: rewinds the memory, runs g with its
 * inputs bound to in[] (as exec_graph) and stores its outputs in out[],
 * valid until the next exec_run. */
tern_status *exec_run(exec_state *x, const graph *g, const tern_tensor *const *in,
                      const tern_tensor **out);
/* Memory of the last inference (for TERN_ARENA_STATS and tests). */
void exec_stats(const exec_state *x, mem_stats *st, size_t *bump_bytes);
/* The executor state of a session (defined in session.c; for tests). */
exec_state *session_exec_state(tern_session *s);

/* Runs g with its formal inputs bound to in[] (NULL: use the initializer, or
 * an error if there is none) and stores its outputs in out[] (arena tensors,
 * or the inputs/initializers themselves). parent is NULL for the main graph. */
tern_status *exec_graph(exec_state *x, exec_frame *parent, const graph *g, int n_in,
                        const tern_tensor *const *in, const tern_tensor **out);

#endif

/*
 * The executor: runs a graph's nodes in order over one arena.
 *
 * An inference owns an exec_state: the arena every intermediate tensor,
 * scratch buffer and per-node array is allocated from, and the intra-op
 * pool. A frame is one activation of a graph: an array of value slots (the
 * tensor each value currently holds). The main graph gets the first frame;
 * If/Loop/Scan bodies get a frame whose parent is the frame of the node that
 * runs them, so captured values read through to the enclosing graph.
 *
 * The arena is rewound at the start of each inference and keeps its blocks,
 * so in the steady state (same input shapes) nothing is taken from the heap.
 */
#ifndef TERN_ENGINE_EXEC_H
#define TERN_ENGINE_EXEC_H

#include "core/arena.h"
#include "core/tpool.h"
#include "graph/graph.h"

typedef struct exec_state {
    arena mem;
    tpool *pool;
} exec_state;

typedef struct exec_frame {
    exec_state *x;
    const graph *g;
    const tern_tensor **vals;
    struct exec_frame *parent;
    const graph_node *node; /* node running now, for errors */
    tern_tensor **outs;     /* its output slots */
    int n_outs;
} exec_frame;

/* Runs g with its formal inputs bound to in[] (NULL: use the initializer, or
 * an error if there is none) and stores its outputs in out[] (arena tensors,
 * or the inputs/initializers themselves). parent is NULL for the main graph. */
tern_status *exec_graph(exec_state *x, exec_frame *parent, const graph *g, int n_in,
                        const tern_tensor *const *in, const tern_tensor **out);

#endif

/*
 * Memory planning for the main graph: tensors die when their last reader
 * has run, and their memory goes to later tensors.
 *
 * Liveness (exec_live): for each node, the values whose last use it is. A
 * use is a node input, or a capture by an If/Loop/Scan body (the node that
 * owns the body counts as the reader). Graph outputs never die; a value no
 * node reads dies right after its producer.
 *
 * Ownership (exec_mem): every buffer the executor takes for a main-graph
 * node (op_out data, op_scratch) is a block with a reference count. After a
 * node runs, each of its outputs adds a reference to every block it points
 * into (its data; for a sequence, each element and its data; for strings,
 * each string), so views (Reshape, Identity, SequenceAt, an If returning an
 * outer value) keep the block alive. Blocks the node took that no output
 * references (scratch, unused outputs) are returned at once; when a value
 * dies, its references are dropped the same way. A pointer that is not in a
 * block (weights, inputs, bump memory) is simply not counted.
 *
 * Plans (per input-shape signature): the first run of a signature records
 * the sequence of takes (with sizes) and gives. From it, an offset for every
 * take is computed offline (greedy by size: the biggest first, each in the
 * smallest gap left by the tensors alive at the same time, or above them),
 * packed into one region. Later runs of the signature take that region once and
 * replay the offsets, checking that every take arrives in the recorded order
 * with the recorded size and that no block outlives its recorded lifetime
 * (dying earlier is fine). The first difference (a data-dependent shape, a
 * tensor kept longer because a branch went the other way) switches the rest
 * of the run to the heap and marks the plan unusable, so a replay is always
 * correct. Signatures beyond MEM_MAX_PLANS, and unstable ones, run on the
 * heap (which still reuses memory, just with a higher peak). After a new
 * plan, the heap is cut down to the biggest plan (the unplanned first run
 * may have grown it more).
 *
 * In place (exec_mem_inplace): output 0 of a kernel whose op_def allows
 * it (OP_INPLACE0.., ops/op.h) may be written over an input of its size
 * instead of a new block, when no one else can see that input's block:
 * either the block holds exactly the input's bytes, the input's value dies
 * at this node and is the block's only holder (refs == 1: no view, no
 * sequence, no graph output shares it; graph inputs and initializers are
 * never in a block), or the block was taken by this very node and is held
 * by nothing (the plain copy the executor made of a LAYOUT_C16 input). The
 * output then holds the block like any view: no take, no give, the block
 * simply lives on under the output's name. Whether an input can be reused
 * may depend on the data (an If that returned an outer value hands the next
 * node a block, the other branch a tensor of its own body), so a plan
 * records each decision with its takes and a replay follows it: where the
 * recording took a block, so does the replay; where the recording reused
 * and the replay cannot, the output goes to the heap outside the plan (an
 * untracked take that consumes no event), and the replay goes on.
 *
 * TERN_MEMPLAN=off|dynamic|plan (default plan) selects the policy when a
 * session is created: off keeps every tensor to the end of the inference
 * (the behaviour before planning, for comparison), dynamic frees but never
 * plans. TERN_INPLACE=0 turns in-place outputs off (for comparison; off
 * never writes in place either). TERN_ARENA_STATS=1 logs the memory of each
 * inference.
 */
#ifndef TERN_ENGINE_PLAN_H
#define TERN_ENGINE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "graph/graph.h"

typedef struct exec_live {
    const graph *g;
    int *kill_at; /* node i kills kill[kill_at[i] .. kill_at[i + 1]) */
    int *kill;
} exec_live;

/* Liveness of graph g (its nodes in order). */
tern_status *exec_live_build(const graph *g, exec_live **out);
/* True if value v dies once node `node` has run (its last reader). */
bool exec_live_dies_at(const exec_live *l, int node, int v);
void exec_live_free(exec_live *l);

enum { MEM_OFF = 0, MEM_DYNAMIC = 1, MEM_PLAN = 2 };
enum { MEM_MAX_PLANS = 16 };

typedef struct mem_plan mem_plan;

typedef struct mem_block {
    unsigned char *p;
    size_t n; /* bytes asked for (>= 1) */
    uint32_t id;
    int refs;
    bool planned; /* in the replayed region: not returned to the heap */
} mem_block;

/* What the last inference used (exec_mem_stats). */
typedef struct mem_stats {
    const char *mode;     /* "off", "dynamic", "record", "replay", "replay-diverged" */
    size_t peak;          /* most bytes of tensors and scratch live at once */
    size_t end_bytes;     /* bytes still live at the end: the graph outputs' */
    size_t heap_reserved; /* bytes the heap holds */
    size_t plan_bytes;    /* size of the replayed plan, 0 if none */
    int n_plans;
    int inplace; /* outputs written over one of their inputs */
} mem_stats;

typedef struct exec_mem {
    arena_heap heap;
    int policy;
    int mode;

    /* blocks taken in this run and not yet returned; the ones the current
     * node took are at [node_first, n_blocks) */
    mem_block *blocks;
    int n_blocks, cap_blocks, node_first;
    uint32_t next_id;
    size_t live_bytes, peak_bytes;

    /* plans, and the one this run records or replays */
    mem_plan **plans;
    int n_plans;
    mem_plan *cur;
    unsigned char *base; /* replayed region */
    int ev;              /* next event of cur to match */
    bool diverged;
    bool fit_pending; /* a plan was built: fit the heap to the plans */

    /* the recording (kept for its capacity) */
    uint32_t *rec_ev;
    size_t *rec_size;
    int n_rec_ev, cap_rec_ev, n_rec_size, cap_rec_size;
    int64_t *key;
    int key_n, cap_key;
    bool stats;
    bool inplace;             /* outputs may be written over dead inputs (TERN_INPLACE) */
    int n_reuse;              /* in-place decisions made in this run */
    int n_reused;             /* and how many of them reused an input */
    unsigned char *rec_reuse; /* recorded decisions (1: reused) */
    int n_rec_reuse, cap_rec_reuse;
} exec_mem;

void exec_mem_init(exec_mem *m);
void exec_mem_free(exec_mem *m);
/* Starts an inference: forgets every block and picks the plan for the
 * signature key[0..n) (any sequence of integers that tells input shapes
 * apart). Allocates from the system heap only to grow (first runs). */
tern_status *exec_mem_begin(exec_mem *m, const int64_t *key, int n);
/* Ends an inference; ok is false if it failed (a recording is dropped). */
void exec_mem_end(exec_mem *m, bool ok);
void exec_mem_stats(const exec_mem *m, mem_stats *st);

/* A buffer for the current node: returned after it runs unless an output
 * points into it. NULL if out of memory. */
void *exec_mem_take(exec_mem *m, size_t n);
/* Called before each node of the main graph. */
void exec_mem_node_begin(exec_mem *m);
/* Called after each node: `t` (an output) holds its blocks. */
void exec_mem_hold(exec_mem *m, const tern_tensor *t);
/* Returns the blocks the node took that no output holds. */
void exec_mem_node_done(exec_mem *m);
/* `t` (a value that died) lets go of its blocks. */
void exec_mem_drop(exec_mem *m, const tern_tensor *t);
/* Output 0 (n bytes) of the current node, an in-place kernel, for which
 * in[0..n_in) are the inputs it may be written over (data pointers, all
 * of n bytes; dying[k]: that input's value dies at this node): the data
 * of the input it reuses, or the heap block a replay puts it in (see "In
 * place" above), or NULL to take a block as usual. Called once for every
 * such output of the main graph, in node order. */
void *exec_mem_inplace(exec_mem *m, const void *const *in, const bool *dying, int n_in, size_t n);

#endif

/*
 * The evaluator constant folding runs nodes through (see fold.h). A node is
 * run exactly as the executor would run it (same kernel, same opset, same
 * op_ctx), with its outputs in a scratch arena that is rewound before each
 * node; the graph layer copies what it keeps into the model's store at
 * once. Kernels run on the calling thread (no pool): folded nodes are small.
 */
#include "engine/fold.h"

#include <stdlib.h>
#include <string.h>

#include "engine/exec.h"

typedef struct folder {
    graph_evaluator base; /* first: the graph layer passes &base back */
    exec_state x;
} folder;

static tern_status *fold_eval(graph_evaluator *self, const graph_node *n,
                              const tern_tensor *const *in, const tern_tensor **out)
{
    folder *f = (folder *)self;
    arena_reset(&f->x.mem);
    tern_tensor **outs = arena_calloc(&f->x.mem, (size_t)(n->n_out + 1) * sizeof *outs);
    if (!outs) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    exec_frame fr = {.x = &f->x, .node = n, .outs = outs, .n_outs = n->n_out, .planned = false};
    op_ctx c = {.node = &n->op,
                .opset = n->opset,
                .n_in = n->n_in,
                .in = in,
                .n_out = n->n_out,
                .out = outs,
                .pool = NULL,
                .frame = &fr,
                .state = NULL};
    TERN_TRY(n->def->fn(&c));
    for (int k = 0; k < n->n_out; k++) {
        if (n->out[k] >= 0 && !outs[k])
            return tern_error(TERN_ERR_RUNTIME, "node '%s' (%s): output %d was not produced",
                              n->op.name, n->op.op_type, k);
        out[k] = outs[k];
    }
    return NULL;
}

bool engine_optimize_wanted(bool want)
{
    const char *e = getenv("TERN_OPTIMIZE");
    if (e && (!strcmp(e, "0") || !strcmp(e, "off") || !strcmp(e, "false"))) return false;
    return want;
}

tern_status *engine_build_model(Onnx__ModelProto *proto, const char *dir, bool optimize,
                                graph_model **out)
{
    if (!optimize) return graph_model_build(proto, dir, out);
    folder f = {.base = {.eval = fold_eval}};
    tern_status *st = exec_state_init(&f.x, 1);
    if (st) {
        onnx__model_proto__free_unpacked(proto, NULL);
        return st;
    }
    graph_build_opts o = {.optimize = true, .eval = &f.base};
    st = graph_model_build_opts(proto, dir, &o, out);
    exec_state_free(&f.x);
    return st;
}

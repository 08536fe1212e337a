/*
 * Model loading with the graph passes: the engine's side of constant
 * folding. The graph layer (graph/passes.c) decides what to fold; running a
 * kernel needs the executor's memory functions, which live here in the
 * engine, so the engine hands the graph layer an evaluator that runs one
 * node on constant inputs in a scratch arena.
 */
#ifndef TERN_ENGINE_FOLD_H
#define TERN_ENGINE_FOLD_H

#include <stdbool.h>

#include "graph/graph.h"

/* graph_model_build with the passes on when `optimize` (takes ownership of
 * proto, also on error). */
tern_status *engine_build_model(Onnx__ModelProto *proto, const char *dir, bool optimize,
                                graph_model **out);

/* Whether to optimise: `want` (the session option) unless the environment
 * says TERN_OPTIMIZE=0. */
bool engine_optimize_wanted(bool want);

#endif

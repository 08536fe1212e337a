/*
 * Sessions: the public engine API (include/tern/engine.h) over the graph IR
 * and the executor. A session holds the model, its I/O descriptions, the
 * intra-op pool and the inference arena; a mutex serialises runs because
 * the arena is single-threaded (the scheduler of a later issue runs one
 * session per instance for parallelism).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/exec.h"
#include "graph/graph.h"

struct tern_options {
    int threads;
};

tern_options *tern_options_create(void)
{
    return calloc(1, sizeof(tern_options));
}
void tern_options_free(tern_options *o)
{
    free(o);
}
void tern_options_set_threads(tern_options *o, int threads)
{
    o->threads = threads;
}

struct tern_session {
    graph_model *model;
    exec_state x;
    pthread_mutex_t mu;
    int n_inputs, n_outputs;
    tern_io_info *inputs, *outputs;
    int *input_values; /* value index of each described input */
    const tern_tensor **bound, **results;
};

static void describe(const graph_value *v, tern_io_info *io)
{
    io->name = v->name;
    io->dtype = (tern_dtype)v->type.elem;
    io->rank = v->type.rank;
    io->dims = v->type.dims;
    io->dim_names = v->type.dim_names;
}

static tern_status *session_init(graph_model *m, const tern_options *opt, tern_session **out)
{
    tern_session *s = calloc(1, sizeof *s);
    if (!s) {
        graph_model_free(m);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }
    s->model = m;
    arena_init(&s->x.mem);
    pthread_mutex_init(&s->mu, NULL);
    const graph *g = m->main;
    s->x.pool = tpool_create(opt && opt->threads > 0 ? opt->threads : 1);
    s->inputs = calloc((size_t)g->n_inputs + 1, sizeof *s->inputs);
    s->input_values = calloc((size_t)g->n_inputs + 1, sizeof *s->input_values);
    s->outputs = calloc((size_t)g->n_outputs + 1, sizeof *s->outputs);
    s->bound = calloc((size_t)g->n_inputs + 1, sizeof *s->bound);
    s->results = calloc((size_t)g->n_outputs + 1, sizeof *s->results);
    if (!s->x.pool || !s->inputs || !s->input_values || !s->outputs || !s->bound || !s->results) {
        tern_session_free(s);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }
    /* Inputs that carry an initializer (IR < 4 models list weights as
     * inputs) are optional overrides, not part of the described interface. */
    for (int i = 0; i < g->n_inputs; i++) {
        const graph_value *v = &g->values[g->inputs[i]];
        if (v->init) continue;
        s->input_values[s->n_inputs] = i;
        describe(v, &s->inputs[s->n_inputs++]);
    }
    for (int i = 0; i < g->n_outputs; i++)
        describe(&g->values[g->outputs[i]], &s->outputs[s->n_outputs++]);
    *out = s;
    return NULL;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

tern_status *tern_session_create(const char *path, const tern_options *opt, tern_session **out)
{
    *out = NULL;
    Onnx__ModelProto *proto;
    TERN_TRY(onnx_read_model_file(path, &proto));
    char *dir = dir_of(path);
    if (!dir) {
        onnx__model_proto__free_unpacked(proto, NULL);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }
    graph_model *m;
    tern_status *st = graph_model_build(proto, dir, &m);
    free(dir);
    if (st) return tern_error_wrap(st, "%s", path);
    return session_init(m, opt, out);
}

tern_status *tern_session_create_from_memory(const void *buf, size_t len, const tern_options *opt,
                                             tern_session **out)
{
    *out = NULL;
    Onnx__ModelProto *proto;
    TERN_TRY(onnx_parse_model(buf, len, &proto));
    graph_model *m;
    TERN_TRY(graph_model_build(proto, NULL, &m));
    return session_init(m, opt, out);
}

void tern_session_free(tern_session *s)
{
    if (!s) return;
    graph_model_free(s->model);
    arena_free(&s->x.mem);
    tpool_free(s->x.pool);
    pthread_mutex_destroy(&s->mu);
    free(s->inputs);
    free(s->input_values);
    free(s->outputs);
    free(s->bound);
    free(s->results);
    free(s);
}

int tern_session_input_count(const tern_session *s)
{
    return s->n_inputs;
}
int tern_session_output_count(const tern_session *s)
{
    return s->n_outputs;
}
const tern_io_info *tern_session_input(const tern_session *s, int i)
{
    return i >= 0 && i < s->n_inputs ? &s->inputs[i] : NULL;
}
const tern_io_info *tern_session_output(const tern_session *s, int i)
{
    return i >= 0 && i < s->n_outputs ? &s->outputs[i] : NULL;
}

int64_t tern_session_opset(const tern_session *s, const char *domain)
{
    return graph_model_opset(s->model, domain);
}

/* Checks a caller's tensor against the declared type of a graph input. */
static tern_status *check_input(const graph_value *v, const tern_tensor *t)
{
    const graph_type *ty = &v->type;
    if (ty->kind >= 0 && (int)t->kind != ty->kind && !(ty->optional && t->kind == TENSOR_NONE))
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "input '%s': expected a %s", v->name,
                          ty->kind == TENSOR_SEQUENCE ? "sequence" : "tensor");
    if (t->kind == TENSOR_NONE) return NULL;
    if (ty->elem && (int)t->dtype != ty->elem)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "input '%s': expected dtype %s, got %s",
                          v->name, tern_dtype_name((tern_dtype)ty->elem),
                          tern_dtype_name(t->dtype));
    if (t->kind != TENSOR_DENSE || ty->rank < 0) return NULL;
    char a[200], b[200];
    if (t->rank != ty->rank)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "input '%s': expected rank %d, got shape %s",
                          v->name, ty->rank, shape_str(t->rank, t->dims, a, sizeof a));
    for (int d = 0; d < t->rank; d++)
        if (ty->dims[d] >= 0 && ty->dims[d] != t->dims[d])
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "input '%s': expected shape %s, got %s (dimension %d)", v->name,
                              shape_str(ty->rank, ty->dims, a, sizeof a),
                              shape_str(t->rank, t->dims, b, sizeof b), d);
    return NULL;
}

static tern_status *run_locked(tern_session *s, int n, const char *const *names,
                               const tern_tensor *const *inputs, tern_tensor **outputs)
{
    const graph *g = s->model->main;
    memset(s->bound, 0, (size_t)g->n_inputs * sizeof *s->bound);
    for (int i = 0; i < n; i++) {
        if (!names || !names[i] || !inputs || !inputs[i])
            return tern_error(TERN_ERR_INVALID_ARGUMENT, "input %d has no name or tensor", i);
        int k = 0;
        while (k < g->n_inputs && strcmp(g->values[g->inputs[k]].name, names[i]) != 0) k++;
        if (k == g->n_inputs)
            return tern_error(TERN_ERR_NOT_FOUND, "model has no input named '%s'", names[i]);
        if (s->bound[k])
            return tern_error(TERN_ERR_INVALID_ARGUMENT, "input '%s' is given twice", names[i]);
        TERN_TRY(check_input(&g->values[g->inputs[k]], inputs[i]));
        s->bound[k] = inputs[i];
    }
    for (int k = 0; k < g->n_inputs; k++) {
        const graph_value *v = &g->values[g->inputs[k]];
        if (!s->bound[k] && !v->init)
            return tern_error(TERN_ERR_INVALID_ARGUMENT, "missing input '%s'", v->name);
    }
    arena_reset(&s->x.mem);
    TERN_TRY(exec_graph(&s->x, NULL, g, g->n_inputs, s->bound, s->results));
    for (int j = 0; j < g->n_outputs; j++) {
        tern_status *st = tensor_dup(s->results[j], &outputs[j]);
        if (st) {
            for (int k = 0; k < j; k++) {
                tern_tensor_free(outputs[k]);
                outputs[k] = NULL;
            }
            return st;
        }
    }
    return NULL;
}

tern_status *tern_session_run(tern_session *s, int n_inputs, const char *const *input_names,
                              const tern_tensor *const *inputs, tern_tensor **outputs)
{
    for (int j = 0; j < s->n_outputs; j++) outputs[j] = NULL;
    pthread_mutex_lock(&s->mu);
    tern_status *st = run_locked(s, n_inputs, input_names, inputs, outputs);
    pthread_mutex_unlock(&s->mu);
    return st;
}

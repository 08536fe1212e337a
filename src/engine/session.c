/*
 * Sessions: the public engine API (include/tern/engine.h) over the graph IR
 * and the executor. A session holds the model, its I/O descriptions, the
 * intra-op pool and the inference memory; a mutex serialises runs because
 * that memory is single-threaded (the scheduler of a later issue runs one
 * session per instance for parallelism).
 *
 * Results live in the session's memory until the next run, so each run
 * copies them out: into new tensors (tern_session_run), or into tensors the
 * caller passes back run after run (tern_session_run_into), which is what
 * makes an inference free of heap allocation once the memory plan for its
 * input shapes exists.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/exec.h"
#include "engine/fold.h"
#include "graph/graph.h"

struct tern_options {
    int threads;
    int no_optimize; /* graph passes off (default on) */
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
void tern_options_set_optimize(tern_options *o, int on)
{
    o->no_optimize = !on;
}

struct tern_session {
    graph_model *model;
    exec_state x;
    pthread_mutex_t mu;
    int n_inputs, n_outputs;
    tern_io_info *inputs, *outputs;
    int *input_values; /* value index of each described input */
    const tern_tensor **bound, **results;
    bool *created; /* outputs[j] made by the current run (freed on error) */
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
    pthread_mutex_init(&s->mu, NULL);
    const graph *g = m->main;
    tern_status_free(exec_state_init(&s->x, opt ? opt->threads : 1));
    s->inputs = calloc((size_t)g->n_inputs + 1, sizeof *s->inputs);
    s->input_values = calloc((size_t)g->n_inputs + 1, sizeof *s->input_values);
    s->outputs = calloc((size_t)g->n_outputs + 1, sizeof *s->outputs);
    s->bound = calloc((size_t)g->n_inputs + 1, sizeof *s->bound);
    s->results = calloc((size_t)g->n_outputs + 1, sizeof *s->results);
    s->created = calloc((size_t)g->n_outputs + 1, sizeof *s->created);
    if (!s->x.pool || !s->inputs || !s->input_values || !s->outputs || !s->bound || !s->results ||
        !s->created) {
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
    bool opt_on = engine_optimize_wanted(!opt || !opt->no_optimize);
    tern_status *st = engine_build_model(proto, dir, opt_on, &m);
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
    bool opt_on = engine_optimize_wanted(!opt || !opt->no_optimize);
    TERN_TRY(engine_build_model(proto, NULL, opt_on, &m));
    return session_init(m, opt, out);
}

void tern_session_free(tern_session *s)
{
    if (!s) return;
    graph_model_free(s->model);
    exec_state_free(&s->x);
    pthread_mutex_destroy(&s->mu);
    free(s->inputs);
    free(s->input_values);
    free(s->outputs);
    free(s->bound);
    free(s->results);
    free(s->created);
    free(s);
}

exec_state *session_exec_state(tern_session *s)
{
    return &s->x;
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

/* A caller's output tensor must match what the model produced. */
static tern_status *check_output(const graph_value *v, const tern_tensor *r, const tern_tensor *o)
{
    if (r->kind != TENSOR_DENSE)
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "output '%s' is not a tensor: pass NULL to receive a new value", v->name);
    char a[200], b[200];
    if (o->kind != TENSOR_DENSE || o->dtype != r->dtype || !shape_equal(o, r))
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "output '%s': the tensor given is %s %s, the model produced %s %s",
                          v->name, tern_dtype_name(o->dtype),
                          shape_str(o->rank, o->dims, a, sizeof a), tern_dtype_name(r->dtype),
                          shape_str(r->rank, r->dims, b, sizeof b));
    if (r->dtype == TERN_STRING && !o->owns)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "output '%s': not an owning string tensor",
                          v->name);
    return NULL;
}

static tern_status *copy_output(const tern_tensor *r, tern_tensor *o)
{
    if (r->dtype != TERN_STRING) {
        if (tensor_nbytes(r)) memcpy(o->data, r->data, tensor_nbytes(r));
        return NULL;
    }
    for (int64_t i = 0; i < r->numel; i++)
        TERN_TRY(tern_tensor_set_string(o, i, ((char *const *)r->data)[i]));
    return NULL;
}

/* outputs[j]: NULL to receive a new tensor, or a caller's tensor to fill. */
static tern_status *run_locked(tern_session *s, int n, const char *const *names,
                               const tern_tensor *const *inputs, tern_tensor **outputs)
{
    const graph *g = s->model->main;
    memset(s->bound, 0, (size_t)g->n_inputs * sizeof *s->bound);
    memset(s->created, 0, (size_t)g->n_outputs * sizeof *s->created);
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
    TERN_TRY(exec_run(&s->x, g, s->bound, s->results));
    for (int j = 0; j < g->n_outputs; j++)
        if (outputs[j])
            TERN_TRY(check_output(&g->values[g->outputs[j]], s->results[j], outputs[j]));
    tern_status *st = NULL;
    for (int j = 0; j < g->n_outputs && !st; j++) {
        s->created[j] = !outputs[j];
        st = outputs[j] ? copy_output(s->results[j], outputs[j])
                        : tensor_dup(s->results[j], &outputs[j]);
    }
    if (st)
        for (int j = 0; j < g->n_outputs; j++)
            if (s->created[j]) {
                tern_tensor_free(outputs[j]);
                outputs[j] = NULL;
            }
    return st;
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

tern_status *tern_session_run_into(tern_session *s, int n_inputs, const char *const *input_names,
                                   const tern_tensor *const *inputs, tern_tensor **outputs)
{
    pthread_mutex_lock(&s->mu);
    tern_status *st = run_locked(s, n_inputs, input_names, inputs, outputs);
    pthread_mutex_unlock(&s->mu);
    return st;
}

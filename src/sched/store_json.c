/*
 * The store's JSON documents, built with jansson from held versions and the
 * table: Triton's repository index, KServe model metadata, Triton's model
 * configuration and statistics. A document is built from a snapshot: the
 * versions it describes are held (or the table read-locked) while it is
 * built, so a swap in the middle cannot free what is being described.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/store_internal.h"

static char *dump(json_t *root)
{
    if (!root) return NULL;
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

static char *version_str(int64_t n, char *buf, size_t len)
{
    snprintf(buf, len, "%lld", (long long)n);
    return buf;
}

static const char *state_name(vstate st)
{
    switch (st) {
    case VS_LOADING: return "LOADING";
    case VS_READY: return "READY";
    case VS_UNAVAILABLE: return "UNAVAILABLE";
    }
    return "UNKNOWN";
}

static json_t *index_item(const char *name, const int64_t *version, const char *state,
                          const char *reason)
{
    json_t *o = json_object();
    char vb[32];
    json_object_set_new(o, "name", json_string(name));
    if (version)
        json_object_set_new(o, "version", json_string(version_str(*version, vb, sizeof vb)));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "reason", json_string(reason));
    return o;
}

char *store_index_json(model_store *s, bool ready_only)
{
    char **names = NULL;
    int n = 0;
    tern_status *st = store_list_models(s->repo, &names, &n);
    tern_status_free(st); /* an unreadable folder still lists the loaded models */
    json_t *arr = json_array();
    pthread_rwlock_rdlock(&s->tab);
    int i = 0, m = 0;
    while (i < n || m < s->n_models) {
        /* merge the folder listing with the table, both sorted by name */
        int c = i >= n ? 1 : m >= s->n_models ? -1 : strcmp(names[i], s->models[m]->name);
        const model_entry *e = c >= 0 ? s->models[m] : NULL;
        const char *name = e ? e->name : names[i];
        if (c <= 0) i++;
        if (c >= 0) m++;
        bool any = false;
        for (int k = 0; e && k < e->n_recs; k++) {
            const vrec *r = &e->recs[k];
            if (ready_only && !r->v) continue;
            const char *reason = r->reason[0] || !r->v ? r->reason : e->reason;
            json_array_append_new(arr, index_item(name, &r->number, state_name(r->state), reason));
            any = true;
        }
        if (any || ready_only) continue;
        if (e && e->reason[0])
            json_array_append_new(arr, index_item(name, NULL, "UNAVAILABLE", e->reason));
        else
            json_array_append_new(
                arr, index_item(name, NULL, "UNAVAILABLE", e ? "unloaded" : "not loaded"));
    }
    pthread_rwlock_unlock(&s->tab);
    store_free_names(names, n);
    return dump(arr);
}

static const char *dtype_label(tern_dtype dt)
{
    const char *k = store_dtype_kserve(dt);
    return k ? k : "UNKNOWN";
}

static json_t *shape_json(const tern_io_info *io, int skip)
{
    json_t *a = json_array();
    if (io->rank < 0) {
        json_array_append_new(a, json_integer(-1));
        return a;
    }
    for (int k = skip; k < io->rank; k++)
        json_array_append_new(a, json_integer(io->dims[k] < 0 ? -1 : io->dims[k]));
    return a;
}

static json_t *io_list(const model_version *v, bool input)
{
    json_t *a = json_array();
    int n = input ? version_input_count(v) : version_output_count(v);
    for (int i = 0; i < n; i++) {
        const tern_io_info *io = input ? version_input(v, i) : version_output(v, i);
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(io->name));
        json_object_set_new(o, "datatype", json_string(dtype_label(io->dtype)));
        json_object_set_new(o, "shape", shape_json(io, 0));
        json_array_append_new(a, o);
    }
    return a;
}

char *store_metadata_json(model_store *s, const char *model, int64_t version, tern_status **err)
{
    *err = NULL;
    model_version *v = store_acquire(s, model, version, err);
    if (!v) return NULL;
    json_t *root = json_object();
    json_object_set_new(root, "name", json_string(model));
    json_t *vers = json_array();
    char vb[32];
    if (version > 0) {
        json_array_append_new(vers, json_string(version_str(v->number, vb, sizeof vb)));
    } else {
        vlist l;
        tern_status *st = store_hold_versions(s, model, &l);
        tern_status_free(st);
        for (int i = 0; i < l.n; i++)
            json_array_append_new(vers, json_string(version_str(l.v[i]->number, vb, sizeof vb)));
        store_vlist_release(&l);
    }
    json_object_set_new(root, "versions", vers);
    json_object_set_new(root, "platform", json_string("onnx"));
    json_object_set_new(root, "inputs", io_list(v, true));
    json_object_set_new(root, "outputs", io_list(v, false));
    store_release(v);
    char *out = dump(root);
    if (!out) *err = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    return out;
}

static json_t *config_io(const model_version *v, bool input)
{
    json_t *a = json_array();
    int n = input ? version_input_count(v) : version_output_count(v);
    int64_t mbs = v->cfg->max_batch_size;
    for (int i = 0; i < n; i++) {
        const tern_io_info *io = input ? version_input(v, i) : version_output(v, i);
        json_t *o = json_object();
        char type[32];
        tern_dtype dt = io->dtype;
        snprintf(type, sizeof type, "TYPE_%s", dt == TERN_STRING ? "STRING" : dtype_label(dt));
        json_object_set_new(o, "name", json_string(io->name));
        json_object_set_new(o, "data_type", json_string(type));
        /* Triton's dims leave out the batch dimension of a batching model. */
        json_object_set_new(o, "dims", shape_json(io, mbs > 0 && io->rank >= 1 ? 1 : 0));
        json_array_append_new(a, o);
    }
    return a;
}

char *store_config_json(model_store *s, const char *model, tern_status **err)
{
    *err = NULL;
    model_version *v = store_acquire(s, model, 0, err);
    if (!v) return NULL;
    const store_config *c = v->cfg;
    json_t *root = json_object();
    json_object_set_new(root, "name", json_string(model));
    json_object_set_new(root, "platform", json_string("tern_onnx"));
    json_object_set_new(root, "backend", json_string("tern"));
    json_object_set_new(root, "max_batch_size", json_integer(c->max_batch_size));
    json_t *policy = json_object();
    switch (c->policy) {
    case POLICY_LATEST:
        json_object_set_new(policy, "latest",
                            json_pack("{s:I}", "num_versions", (json_int_t)c->latest_n));
        break;
    case POLICY_SPECIFIC: {
        json_t *vs = json_array();
        for (int i = 0; i < c->n_specific; i++)
            json_array_append_new(vs, json_integer(c->specific[i]));
        json_object_set_new(policy, "specific", json_pack("{s:o}", "versions", vs));
        break;
    }
    case POLICY_ALL: json_object_set_new(policy, "all", json_object()); break;
    }
    json_object_set_new(root, "version_policy", policy);
    if (c->max_batch_size > 1) {
        /* Triton's names for the dynamic batcher and its queue policy */
        json_t *pref = json_array();
        for (int i = 0; i < c->n_preferred; i++)
            json_array_append_new(pref, json_integer(c->preferred_batch_sizes[i]));
        json_object_set_new(
            root, "dynamic_batching",
            json_pack("{s:o,s:I,s:i,s:i,s:{s:I,s:I}}", "preferred_batch_size", pref,
                      "max_queue_delay_microseconds", (json_int_t)c->max_queue_delay_us,
                      "priority_levels", c->priority_levels, "default_priority_level",
                      c->default_priority_level, "default_queue_policy", "max_queue_size",
                      (json_int_t)c->max_queue_size, "default_timeout_microseconds",
                      (json_int_t)c->default_timeout_us));
    }
    json_t *slo = json_object();
    if (c->slo_latency_p99_ms > 0)
        json_object_set_new(slo, "latency_p99_ms", json_real(c->slo_latency_p99_ms));
    if (c->slo_availability > 0)
        json_object_set_new(slo, "availability", json_real(c->slo_availability));
    json_object_set_new(slo, "window_s", json_integer(c->slo_window_s));
    json_object_set_new(root, "slo", slo);
    json_object_set_new(root, "input", config_io(v, true));
    json_object_set_new(root, "output", config_io(v, false));
    json_object_set_new(
        root, "instance_group",
        json_pack("[{s:s,s:i,s:s}]", "name", model, "count", c->instances, "kind", "KIND_CPU"));
    json_object_set_new(root, "default_model_filename", json_string(MODEL_FILE));
    store_release(v);
    char *out = dump(root);
    if (!out) *err = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    return out;
}

static json_t *duration(atomic_llong *count, atomic_llong *ns)
{
    return json_pack("{s:I,s:I}", "count", (json_int_t)atomic_load(count), "ns",
                     (json_int_t)atomic_load(ns));
}

static json_t *version_stats_json(model_version *v)
{
    version_stats *st = &v->stats;
    atomic_llong zero = 0;
    char vb[32];
    json_t *inf = json_object();
    json_object_set_new(inf, "success", duration(&st->success_count, &st->success_ns));
    json_object_set_new(inf, "fail", duration(&st->fail_count, &st->fail_ns));
    json_object_set_new(inf, "queue", duration(&st->queue_count, &st->queue_ns));
    json_object_set_new(inf, "compute_input", duration(&zero, &zero));
    json_object_set_new(inf, "compute_infer", duration(&st->compute_count, &st->compute_ns));
    json_object_set_new(inf, "compute_output", duration(&zero, &zero));
    json_object_set_new(inf, "cache_hit", duration(&zero, &zero));
    json_object_set_new(inf, "cache_miss", duration(&zero, &zero));
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(v->name));
    json_object_set_new(o, "version", json_string(version_str(v->number, vb, sizeof vb)));
    json_object_set_new(o, "last_inference", json_integer(atomic_load(&st->last_inference_ms)));
    json_object_set_new(o, "inference_count", json_integer(atomic_load(&st->inference_count)));
    json_object_set_new(o, "execution_count", json_integer(atomic_load(&st->execution_count)));
    json_object_set_new(o, "inference_stats", inf);
    json_object_set_new(o, "batch_stats", sched_batch_stats_json(v->sched));
    json_object_set_new(o, "queue", sched_queue_json(v->sched));
    json_object_set_new(o, "slo", sched_slo_json(v->sched));
    return o;
}

char *store_stats_json(model_store *s, const char *model, int64_t version, tern_status **err)
{
    *err = NULL;
    vlist l = {0};
    if (model && version > 0) {
        model_version *v = store_acquire(s, model, version, err);
        if (!v) return NULL;
        store_vlist_push(&l, v);
    } else if ((*err = store_hold_versions(s, model, &l))) {
        store_vlist_release(&l);
        return NULL;
    }
    json_t *arr = json_array();
    for (int i = 0; i < l.n; i++) json_array_append_new(arr, version_stats_json(l.v[i]));
    store_vlist_release(&l);
    char *out = dump(json_pack("{s:o}", "model_stats", arr));
    if (!out) *err = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    return out;
}

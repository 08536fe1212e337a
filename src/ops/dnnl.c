/*
 * oneDNN's engine, streams, plans and plan caches, see dnnl.h.
 *
 * The CPU engine is created once per process, on first use. Streams are
 * per thread (a oneDNN stream is not meant to be shared between threads
 * that execute at the same time): created on a thread's first run and
 * destroyed when the thread exits.
 */
#include "ops/dnnl.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;
static bool enabled, winograd;
static pthread_key_t stream_key;

static void stream_free(void *s)
{
    dnnl_stream_destroy(s);
}

static void init(void)
{
    const char *env = getenv("TERN_DNNL");
    if (env && strcmp(env, "0") == 0) return;
    winograd = !env || strcmp(env, "direct") != 0;
    if (pthread_key_create(&stream_key, stream_free) != 0) return;
    if (dnnl_engine_get_count(dnnl_cpu) < 1) return;
    enabled = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success;
}

bool dnn_enabled(void)
{
    pthread_once(&once, init);
    return enabled;
}

bool dnn_winograd(void)
{
    return dnn_enabled() && winograd;
}

dnnl_engine_t dnn_engine(void)
{
    return dnn_enabled() ? engine : NULL;
}

static dnnl_stream_t stream(void)
{
    dnnl_stream_t s = pthread_getspecific(stream_key);
    if (s) return s;
    if (dnnl_stream_create(&s, engine, dnnl_stream_default_flags) != dnnl_success) return NULL;
    if (pthread_setspecific(stream_key, s) != 0) {
        dnnl_stream_destroy(s);
        return NULL;
    }
    return s;
}

int dnn_set_threads(const op_ctx *c)
{
    int n = tpool_threads(c->pool);
    if (omp_get_max_threads() != n) omp_set_num_threads(n);
    return n;
}

dnnl_format_tag_t dnn_tag(int rank, tensor_layout l)
{
    static const dnnl_format_tag_t plain[] = {dnnl_ncw, dnnl_nchw, dnnl_ncdhw};
    static const dnnl_format_tag_t c16[] = {dnnl_nCw16c, dnnl_nChw16c, dnnl_nCdhw16c};
    if (rank < 3 || rank > 5) return dnnl_format_tag_undef;
    return l == LAYOUT_C16 ? c16[rank - 3] : plain[rank - 3];
}

dnnl_status_t dnn_md(dnnl_memory_desc_t *md, int rank, const int64_t *dims, dnnl_format_tag_t tag)
{
    dnnl_dims_t d;
    for (int i = 0; i < rank; i++) d[i] = dims[i];
    return dnnl_memory_desc_init_by_tag(md, rank, d, dnnl_f32, tag);
}

static const char *impl_name(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success)
        return NULL;
    return impl;
}

bool dnn_is_ref(const_dnnl_primitive_desc_t pd)
{
    const char *impl = impl_name(pd);
    return !impl || strncmp(impl, "ref", 3) == 0;
}

bool dnn_is_gemm(const_dnnl_primitive_desc_t pd)
{
    const char *impl = impl_name(pd);
    return impl && strstr(impl, "gemm:") != NULL;
}

/* ---- plans --------------------------------------------------------------- */

size_t dnn_plan_reserve(dnn_plan *p, size_t n)
{
    size_t off = p->scratch;
    p->scratch += (n + 63) / 64 * 64;
    return off;
}

dnnl_status_t dnn_step_arg(dnn_step *s, int arg, const dnnl_memory_desc_t *md, int where,
                           size_t off, void *data)
{
    if (s->nargs == DNN_MAX_ARGS) return dnnl_out_of_memory;
    dnn_arg *a = &s->args[s->nargs];
    dnnl_status_t st =
        dnnl_memory_create(&a->mem, md, engine, where == DNN_FIXED ? data : DNNL_MEMORY_NONE);
    if (st != dnnl_success) return st;
    a->arg = arg;
    a->where = where;
    a->off = off;
    s->nargs++;
    return dnnl_success;
}

dnnl_status_t dnn_plan_step(dnn_plan *p, const_dnnl_primitive_desc_t pd, dnn_step **out)
{
    if (p->nsteps == DNN_MAX_STEPS) return dnnl_out_of_memory;
    dnn_step *s = &p->steps[p->nsteps];
    memset(s, 0, sizeof *s);
    dnnl_status_t st = dnnl_primitive_create(&s->prim, pd);
    if (st != dnnl_success) return st;
    p->nsteps++;
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t n = sp ? dnnl_memory_desc_get_size(sp) : 0;
    if (n) {
        st = dnn_step_arg(s, DNNL_ARG_SCRATCHPAD, sp, DNN_SCRATCH, dnn_plan_reserve(p, n), NULL);
        if (st != dnnl_success) return st;
    }
    *out = s;
    return dnnl_success;
}

dnnl_status_t dnn_plan_reorder(dnn_plan *p, const dnnl_memory_desc_t *from, int where_from,
                               size_t off_from, const dnnl_memory_desc_t *to, int where_to,
                               size_t off_to)
{
    dnnl_primitive_attr_t attr;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st != dnnl_success) return st;
    st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, attr);
    dnnl_primitive_attr_destroy(attr);
    dnn_step *s;
    if (st == dnnl_success) st = dnn_plan_step(p, pd, &s);
    if (st == dnnl_success) st = dnn_step_arg(s, DNNL_ARG_FROM, from, where_from, off_from, NULL);
    if (st == dnnl_success) st = dnn_step_arg(s, DNNL_ARG_TO, to, where_to, off_to, NULL);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return st;
}

void dnn_plan_free(dnn_plan *p)
{
    for (int i = 0; i < p->nsteps; i++) {
        dnn_step *s = &p->steps[i];
        for (int a = 0; a < s->nargs; a++) dnnl_memory_destroy(s->args[a].mem);
        dnnl_primitive_destroy(s->prim);
    }
    memset(p, 0, sizeof *p);
}

tern_status *dnn_plan_run(op_ctx *c, dnn_plan *p, const tern_tensor *const *in, void *y)
{
    char *base = NULL;
    if (p->scratch) TERN_TRY(op_scratch(c, p->scratch, (void **)&base));
    dnnl_stream_t s = stream();
    if (!s) return op_error(c, "cannot create a oneDNN stream");
    for (int i = 0; i < p->nsteps; i++) {
        dnn_step *st = &p->steps[i];
        dnnl_exec_arg_t args[DNN_MAX_ARGS];
        for (int a = 0; a < st->nargs; a++) {
            dnn_arg *da = &st->args[a];
            void *h = da->where >= 0             ? in[da->where]->data
                      : da->where == DNN_OUT     ? y
                      : da->where == DNN_SCRATCH ? base + da->off
                                                 : NULL;
            if (h) dnnl_memory_set_data_handle(da->mem, h);
            args[a] = (dnnl_exec_arg_t){da->arg, da->mem};
        }
        dnnl_status_t r = dnnl_primitive_execute(st->prim, s, st->nargs, args);
        if (r != dnnl_success) return op_error(c, "oneDNN step %d failed (status %d)", i, (int)r);
    }
    return NULL;
}

/* ---- caches -------------------------------------------------------------- */

static void cache_free(void *arg)
{
    dnn_cache *k = arg;
    for (int i = 0; i < DNN_CACHE_SIZE; i++) dnn_plan_free(&k->e[i].plan);
    for (int i = 0; i < k->nw; i++) free(k->wbuf[i]);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

dnn_cache *dnn_cache_create(op_prep *p)
{
    if (!dnn_enabled()) return NULL;
    dnn_cache *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    pthread_mutex_init(&k->mu, NULL);
    tern_status *st = op_prep_on_free(p, cache_free, k); /* frees k on error */
    if (st) {
        tern_status_free(st);
        return NULL;
    }
    return k;
}

dnn_entry *dnn_cache_lock(dnn_cache *k, const int64_t *key, int nkey)
{
    pthread_mutex_lock(&k->mu);
    k->tick++;
    dnn_entry *lru = &k->e[0];
    for (int i = 0; i < DNN_CACHE_SIZE; i++) {
        dnn_entry *e = &k->e[i];
        if (e->built && e->nkey == nkey && memcmp(e->key, key, (size_t)nkey * sizeof *key) == 0) {
            e->used = k->tick;
            return e;
        }
        if (!e->built || (lru->built && e->used < lru->used)) lru = e;
    }
    dnn_plan_free(&lru->plan);
    memset(lru, 0, sizeof *lru);
    lru->nkey = nkey;
    memcpy(lru->key, key, (size_t)nkey * sizeof *key);
    lru->used = k->tick;
    return lru;
}

void dnn_cache_unlock(dnn_cache *k)
{
    pthread_mutex_unlock(&k->mu);
}

dnnl_status_t dnn_cache_weights(dnn_cache *k, const dnnl_memory_desc_t *want,
                                const dnnl_memory_desc_t *have, const void *data, void **buf)
{
    for (int i = 0; i < k->nw; i++)
        if (dnnl_memory_desc_equal(&k->wmd[i], want)) {
            *buf = k->wbuf[i];
            return dnnl_success;
        }
    if (k->nw == DNN_WEIGHT_FORMATS) return dnnl_out_of_memory;
    size_t n = dnnl_memory_desc_get_size(want);
    void *b = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!b) return dnnl_out_of_memory;
    /* A one-off reorder, its scratchpad (if any) library-managed. */
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_memory_t from = NULL, to = NULL;
    dnnl_stream_t s = stream();
    dnnl_status_t st = s ? dnnl_reorder_primitive_desc_create(&pd, have, engine, want, engine, NULL)
                         : dnnl_runtime_error;
    if (st == dnnl_success) st = dnnl_primitive_create(&r, pd);
    if (st == dnnl_success) st = dnnl_memory_create(&from, have, engine, (void *)data);
    if (st == dnnl_success) st = dnnl_memory_create(&to, want, engine, b);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        st = dnnl_primitive_execute(r, s, 2, args);
    }
    if (to) dnnl_memory_destroy(to);
    if (from) dnnl_memory_destroy(from);
    if (r) dnnl_primitive_destroy(r);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) {
        free(b);
        return st;
    }
    k->wmd[k->nw] = *want;
    k->wbuf[k->nw++] = b;
    *buf = b;
    return dnnl_success;
}

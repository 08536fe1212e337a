/*
 * HTTP front end: routing, limits, and the suspend/resume hand-off to the
 * inference workers.
 *
 * libmicrohttpd runs `threads` epoll event loops. A request's life:
 *   1. first call of the handler: a `req` is allocated for the connection; a
 *      Content-Length over the body limit marks it too large at once.
 *   2. body chunks are appended to req->body (never past the limit: the rest
 *      is read and dropped, then answered with 413).
 *   3. last call: the route runs. Cheap routes answer immediately. An infer
 *      request is decoded (binary tensors point into req->body), its model
 *      version is acquired (a reference: a hot swap cannot free it), the
 *      connection is suspended and a job is queued to the worker pool. The
 *      event-loop thread goes back to serving other connections.
 *   4. a worker runs the model, encodes the response into req, and resumes
 *      the connection; the handler is called again and queues the response.
 *   5. MHD's completion callback frees req (and releases what it holds).
 * So a waiting request holds memory, not a thread. In-flight requests are
 * counted so that SIGTERM can drain them: stop accepting, wait for the count
 * to reach zero (bounded), then stop the daemon.
 */
#include "server/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/tensor.h"
#include "monitor/metrics.h"
#include "sched/pool.h"
#include "sched/store.h"
#include "server/kserve.h"

#define TERN_SERVER_VERSION "0.1.0"
/* Body bytes read and dropped after the limit before the connection is cut. */
#define DISCARD_ALLOWANCE ((size_t)16 << 20)

/* Every open connection, so that a reaper can cut those whose headers do
 * not arrive in time (MHD's own timeout is per inactivity, which a client
 * trickling one byte at a time never triggers). */
typedef struct conn_track {
    struct conn_track *prev, *next;
    MHD_socket fd;
    double deadline; /* headers due by then; 0 while a request is being served */
} conn_track;

struct tern_server {
    const server_settings *cfg;
    pthread_mutex_t conns_mu;
    conn_track conns; /* list head */
    pthread_t reaper;
    bool reaper_started;
    atomic_bool stopping;
    struct MHD_Daemon *mhd;
    model_store *store;
    sched_pool *pool;
    atomic_long inflight;    /* requests between first byte and completion */
    atomic_long connections; /* open TCP connections */
    int port;
};

typedef struct req {
    pool_job job; /* first: the worker gets a req back from its job */
    tern_server *srv;
    struct MHD_Connection *conn;
    double t_start, t_queued, t_run0, t_run1;
    /* body */
    char *body;
    size_t len, cap;
    bool too_large;
    /* infer */
    model_version *v;
    metrics_series *series;
    kserve_request *kr;
    /* response */
    bool done;
    unsigned status;
    char *resp;
    size_t resp_len;
    long long resp_header_len;
    const char *content_type; /* NULL: application/json */
    size_t discarded;         /* body bytes dropped after the limit */
} req;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- responses --------------------------------------------------------- */

static void set_response(req *r, unsigned status, char *body)
{
    free(r->resp);
    r->status = status;
    r->resp = body;
    r->resp_len = body ? strlen(body) : 0;
    r->resp_header_len = -1;
    r->done = true;
}

static void set_error(req *r, unsigned status, const char *msg)
{
    set_response(r, status, kserve_error_json(msg));
}

static unsigned status_of(tern_code c)
{
    switch (c) {
    case TERN_ERR_INVALID_ARGUMENT:
    case TERN_ERR_INVALID_MODEL:
    case TERN_ERR_UNSUPPORTED: return MHD_HTTP_BAD_REQUEST;
    case TERN_ERR_NOT_FOUND: return MHD_HTTP_NOT_FOUND;
    default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

static void set_status_error(req *r, tern_status *st, unsigned status)
{
    set_error(r, status ? status : status_of(tern_status_code(st)), tern_status_message(st));
    tern_status_free(st);
}

static enum MHD_Result queue(req *r)
{
    const char *body = r->resp ? r->resp : "";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->resp_len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    bool binary = r->resp_header_len >= 0;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type ? r->content_type
                            : binary        ? "application/octet-stream"
                                            : "application/json");
    if (binary) {
        char n[32];
        snprintf(n, sizeof n, "%lld", r->resp_header_len);
        MHD_add_response_header(resp, "Inference-Header-Content-Length", n);
    }
    enum MHD_Result ret = MHD_queue_response(r->conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- inference --------------------------------------------------------- */

static metrics_outcome outcome_of(unsigned status)
{
    if (status < 400) return OUTCOME_SUCCESS;
    if (status == 429 || status == 503) return OUTCOME_REJECTED;
    return status < 500 ? OUTCOME_CLIENT_ERROR : OUTCOME_SERVER_ERROR;
}

/* Encodes r's response from the model outputs outs (owned; freed here) or
 * the error st, records statistics and resumes the connection. */
static void finish_request(req *r, tern_tensor **outs, tern_status *st, int64_t run_ns,
                           bool first_of_execution)
{
    model_version *v = r->v;
    kserve_request *kr = r->kr;
    int n_out = version_output_count(v);
    /* queue time runs until an engine instance starts: the pool's queue and
     * the wait for a free instance */
    r->t_run1 = now_s();
    r->t_run0 = r->t_run1 - (double)run_ns / 1e9;
    version_stats *vs = version_stats_of(v);
    kserve_output *sel = calloc((size_t)n_out + 1, sizeof *sel);
    if (!st && !sel) st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    if (st) {
        /* the engine refuses inputs that do not fit the model: a client error */
        tern_code c = tern_status_code(st);
        set_status_error(r, st, c == TERN_ERR_NO_MEMORY || c == TERN_ERR_IO ? 500 : 400);
    } else {
        int n = 0;
        if (kr->n_outputs == 0) {
            for (int j = 0; j < n_out; j++)
                sel[n++] = (kserve_output){version_output(v, j)->name, outs[j], kr->binary_default};
        } else {
            for (int k = 0; k < kr->n_outputs; k++)
                for (int j = 0; j < n_out; j++)
                    if (strcmp(kr->outputs[k].name, version_output(v, j)->name) == 0)
                        sel[n++] = (kserve_output){version_output(v, j)->name, outs[j],
                                                   kr->outputs[k].binary};
        }
        char vbuf[32];
        snprintf(vbuf, sizeof vbuf, "%lld", (long long)version_number(v));
        char *body = NULL;
        size_t len = 0;
        long long hl = -1;
        st = kserve_encode_response(version_model_name(v), vbuf, kr->id, n, sel, &body, &len, &hl);
        if (st) {
            set_status_error(r, st, 500);
        } else {
            free(r->resp);
            r->status = MHD_HTTP_OK;
            r->resp = body;
            r->resp_len = len;
            r->resp_header_len = hl;
            r->done = true;
        }
    }
    long long queue_ns = (long long)((r->t_run0 - r->t_queued) * 1e9);
    atomic_fetch_add(&vs->inference_count, 1);
    if (first_of_execution) {
        atomic_fetch_add(&vs->execution_count, 1);
        atomic_fetch_add(&vs->compute_count, 1);
        atomic_fetch_add(&vs->compute_ns, run_ns);
    }
    atomic_fetch_add(&vs->queue_count, 1);
    atomic_fetch_add(&vs->queue_ns, queue_ns);
    long long total_ns = (long long)((now_s() - r->t_start) * 1e9);
    if (r->status == MHD_HTTP_OK) {
        atomic_fetch_add(&vs->success_count, 1);
        atomic_fetch_add(&vs->success_ns, total_ns);
    } else {
        atomic_fetch_add(&vs->fail_count, 1);
        atomic_fetch_add(&vs->fail_ns, total_ns);
    }
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    atomic_store(&vs->last_inference_ms, (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000);
    for (int j = 0; outs && j < n_out; j++) tern_tensor_free(outs[j]);
    free(outs);
    free(sel);
    MHD_resume_connection(r->conn);
}

static void run_single(req *r)
{
    int n_out = version_output_count(r->v);
    tern_tensor **outs = calloc((size_t)n_out + 1, sizeof *outs);
    int64_t wait_ns = 0, run_ns = 0;
    tern_status *st = !outs ? tern_error(TERN_ERR_NO_MEMORY, "out of memory")
                            : version_run_timed(r->v, r->kr->n_inputs, r->kr->input_names,
                                                (const tern_tensor *const *)r->kr->inputs, outs,
                                                &wait_ns, &run_ns);
    finish_request(r, outs, st, run_ns, true);
}

/* ---- batching ------------------------------------------------------------
 * A version whose config sets max_batch_size > 1 declares that its first
 * dimension is a batch of independent rows (Triton's contract). A worker
 * that takes such a request also takes the queued requests of the same
 * version whose inputs agree in name, dtype and every dimension but the
 * first, up to max_batch_size rows, concatenates them along dim 0, runs the
 * model once and hands each request its own rows of every output. Requests
 * only wait as long as they would have waited anyway (no queue delay; the
 * delay-based batcher is the scheduler's, issue 5). If the batched run fails
 * or an output lacks the batch dimension, each request runs on its own, so a
 * batch never changes an answer. */

#define BATCH_MAX_REQS 64

/* Rows of a request (the shared first dimension of its inputs), or -1 if it
 * cannot be batched. */
static int64_t batch_rows(const req *r)
{
    const kserve_request *kr = r->kr;
    if (kr->n_inputs == 0) return -1;
    int64_t rows = -1;
    for (int i = 0; i < kr->n_inputs; i++) {
        const tern_tensor *t = kr->inputs[i];
        if (t->kind != TENSOR_DENSE || t->dtype == TERN_STRING || t->rank < 1) return -1;
        if (rows >= 0 && t->dims[0] != rows) return -1;
        rows = t->dims[0];
    }
    return rows;
}

typedef struct batch_ctx {
    const req *first;
    int64_t rows_left;
} batch_ctx;

static bool batch_compatible(pool_job *job, void *vctx)
{
    batch_ctx *c = vctx;
    const req *a = c->first, *b = (const req *)job;
    if (b->job.run != a->job.run || b->v != a->v || b->kr->n_inputs != a->kr->n_inputs)
        return false;
    int64_t rows = batch_rows(b);
    if (rows < 1 || rows > c->rows_left) return false;
    for (int i = 0; i < a->kr->n_inputs; i++) {
        const tern_tensor *x = a->kr->inputs[i], *y = b->kr->inputs[i];
        if (strcmp(a->kr->input_names[i], b->kr->input_names[i]) != 0 || x->dtype != y->dtype ||
            x->rank != y->rank)
            return false;
        for (int d = 1; d < x->rank; d++)
            if (x->dims[d] != y->dims[d]) return false;
    }
    c->rows_left -= rows;
    return true;
}

/* Runs n compatible requests as one batch; false if that did not work out
 * and they must run one by one (nothing has been answered then). */
static bool run_batch(req **rs, int n, int64_t total)
{
    model_version *v = rs[0]->v;
    const kserve_request *k0 = rs[0]->kr;
    int n_in = k0->n_inputs, n_out = version_output_count(v);
    tern_tensor **ins = calloc((size_t)n_in, sizeof *ins);
    tern_tensor **outs = calloc((size_t)n_out + 1, sizeof *outs);
    bool ok = ins && outs;
    for (int i = 0; ok && i < n_in; i++) {
        const tern_tensor *t = k0->inputs[i];
        int64_t dims[TERN_MAX_RANK];
        memcpy(dims, t->dims, sizeof dims);
        dims[0] = total;
        tern_status *st = tern_tensor_create(t->dtype, t->rank, dims, &ins[i]);
        if (st) {
            tern_status_free(st);
            ok = false;
            break;
        }
        char *dst = tern_tensor_data(ins[i]);
        for (int k = 0; k < n; k++) {
            size_t nb = tensor_nbytes(rs[k]->kr->inputs[i]);
            memcpy(dst, rs[k]->kr->inputs[i]->data, nb);
            dst += nb;
        }
    }
    int64_t wait_ns = 0, run_ns = 0;
    if (ok) {
        tern_status *st = version_run_timed(
            v, n_in, k0->input_names, (const tern_tensor *const *)ins, outs, &wait_ns, &run_ns);
        if (st) {
            tern_status_free(st);
            ok = false;
        }
    }
    for (int j = 0; ok && j < n_out; j++)
        if (!outs[j] || outs[j]->kind != TENSOR_DENSE || outs[j]->rank < 1 ||
            outs[j]->dims[0] != total || outs[j]->dtype == TERN_STRING)
            ok = false;
    /* split every output by rows */
    tern_tensor ***mine = ok ? calloc((size_t)n, sizeof *mine) : NULL;
    if (ok && !mine) ok = false;
    int64_t row0 = 0;
    for (int k = 0; ok && k < n; k++) {
        int64_t rows = batch_rows(rs[k]);
        mine[k] = calloc((size_t)n_out + 1, sizeof **mine);
        if (!mine[k]) ok = false;
        for (int j = 0; ok && j < n_out; j++) {
            const tern_tensor *o = outs[j];
            int64_t dims[TERN_MAX_RANK];
            memcpy(dims, o->dims, sizeof dims);
            dims[0] = rows;
            size_t row_bytes = o->dims[0] ? tensor_nbytes(o) / (size_t)o->dims[0] : 0;
            tern_status *st = tern_tensor_create_copy(
                o->dtype, o->rank, dims, (const char *)o->data + (size_t)row0 * row_bytes,
                (size_t)rows * row_bytes, &mine[k][j]);
            if (st) {
                tern_status_free(st);
                ok = false;
            }
        }
        row0 += rows;
    }
    if (ok)
        for (int k = 0; k < n; k++) finish_request(rs[k], mine[k], NULL, run_ns, k == 0);
    else if (mine)
        for (int k = 0; k < n; k++) {
            for (int j = 0; mine[k] && j < n_out; j++) tern_tensor_free(mine[k][j]);
            free(mine[k]);
        }
    free(mine);
    for (int i = 0; ins && i < n_in; i++) tern_tensor_free(ins[i]);
    for (int j = 0; outs && j < n_out; j++) tern_tensor_free(outs[j]);
    free(ins);
    free(outs);
    return ok;
}

static void infer_job(pool_job *job)
{
    req *r = (req *)job;
    int64_t max_rows = version_max_batch_size(r->v), rows = batch_rows(r);
    if (max_rows > 1 && rows >= 1 && rows < max_rows) {
        pool_job *more[BATCH_MAX_REQS];
        batch_ctx c = {r, max_rows - rows};
        int n = pool_take(r->srv->pool, batch_compatible, &c, more, BATCH_MAX_REQS - 1);
        if (n > 0) {
            req *rs[BATCH_MAX_REQS];
            rs[0] = r;
            for (int k = 0; k < n; k++) rs[k + 1] = (req *)more[k];
            if (!run_batch(rs, n + 1, max_rows - c.rows_left))
                for (int k = 0; k <= n; k++) run_single(rs[k]);
            return;
        }
    }
    run_single(r);
}

/* At a shutdown whose drain timed out: answer without running. */
static void infer_cancel(pool_job *job)
{
    req *r = (req *)job;
    set_error(r, 503, "server is shutting down");
    MHD_resume_connection(r->conn);
}

/* The request's inputs against the model's declared datatypes, in KServe
 * names (the engine checks shapes and names again when it runs). */
static bool check_datatypes(req *r)
{
    for (int i = 0; i < r->kr->n_inputs; i++)
        for (int k = 0; k < version_input_count(r->v); k++) {
            const tern_io_info *io = version_input(r->v, k);
            if (strcmp(io->name, r->kr->input_names[i]) != 0) continue;
            tern_dtype got = r->kr->inputs[i]->dtype;
            if (io->dtype && got != io->dtype) {
                char msg[512];
                snprintf(msg, sizeof msg, "input '%s': datatype %s does not match the model's %s",
                         io->name, kserve_dtype_name(got), kserve_dtype_name(io->dtype));
                set_error(r, 400, msg);
                return false;
            }
        }
    return true;
}

static void handle_infer(req *r, const char *model, int64_t version)
{
    tern_server *srv = r->srv;
    tern_status *st = NULL;
    r->v = store_acquire(srv->store, model, version, &st);
    if (!r->v) {
        /* unknown model or version: 404; known but not ready: 503 */
        set_status_error(r, st, tern_status_code(st) == TERN_ERR_NOT_FOUND ? 404 : 503);
        return;
    }
    r->series = metrics_series_get(model, version_number(r->v));
    if (r->series) metrics_inflight_add(r->series, 1);
    const char *hl =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    long long header_len = -1;
    if (hl) {
        char *end;
        header_len = strtoll(hl, &end, 10);
        if (*end || end == hl || header_len < 0 || (size_t)header_len > r->len) {
            set_error(r, 400, "Inference-Header-Content-Length is not a length within the body");
            return;
        }
    }
    kserve_limits lim = {.max_elements = srv->cfg->max_tensor_elements};
    st = kserve_decode_request(r->body ? r->body : "", r->len, header_len, &lim, &r->kr);
    if (st) {
        set_status_error(r, st, 400);
        return;
    }
    for (int k = 0; k < r->kr->n_outputs; k++) {
        bool found = false;
        for (int j = 0; j < version_output_count(r->v) && !found; j++)
            found = strcmp(r->kr->outputs[k].name, version_output(r->v, j)->name) == 0;
        if (!found) {
            char msg[600];
            snprintf(msg, sizeof msg, "outputs[%d]: model '%s' has no output named '%s'", k, model,
                     r->kr->outputs[k].name);
            set_error(r, 400, msg);
            return;
        }
    }
    if (!check_datatypes(r)) return;
    r->job.run = infer_job;
    r->job.cancel = infer_cancel;
    r->t_queued = now_s();
    MHD_suspend_connection(r->conn);
    pool_submit(srv->pool, &r->job);
}

/* ---- routing ----------------------------------------------------------- */

static bool parse_version(const char *s, int64_t *v)
{
    char *end;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || x < 1) return false;
    *v = x;
    return true;
}

static void json_reply(req *r, char *json, tern_status *st, unsigned err_status)
{
    if (json)
        set_response(r, 200, json);
    else if (st)
        set_status_error(r, st, err_status);
    else
        set_error(r, 500, "out of memory");
}

static void route(req *r, const char *method, const char *url)
{
    tern_server *srv = r->srv;
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    /* split the path into at most 8 segments */
    char path[1024];
    if (strlen(url) >= sizeof path) {
        set_error(r, 414, "URL too long");
        return;
    }
    strcpy(path, url);
    char *seg[8];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(path, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (n == 8) {
            set_error(r, 404, "no such endpoint");
            return;
        }
        seg[n++] = t;
    }
    if (n == 1 && !strcmp(seg[0], "metrics") && get) {
        metrics_set_open_connections(atomic_load(&srv->connections));
        char *out;
        size_t len;
        if (metrics_render(&out, &len) != 0) {
            set_error(r, 500, "out of memory");
            return;
        }
        set_response(r, 200, NULL);
        r->resp = out;
        r->resp_len = len;
        r->content_type = "text/plain; version=0.0.4; charset=utf-8";
        return;
    }
    if (n == 0 || strcmp(seg[0], "v2") != 0) {
        set_error(r, 404, "no such endpoint");
        return;
    }
    if (n == 1 && get) {
        set_response(r, 200,
                     strdup("{\"name\":\"tern\",\"version\":\"" TERN_SERVER_VERSION
                            "\",\"extensions\":[\"binary_tensor_data\",\"model_repository\","
                            "\"statistics\",\"model_configuration\"]}"));
        return;
    }
    if (n == 3 && !strcmp(seg[1], "health") && get) {
        if (!strcmp(seg[2], "live"))
            set_response(r, 200, strdup("{\"live\":true}"));
        else if (!strcmp(seg[2], "ready"))
            set_response(
                r, store_started(srv->store) ? 200 : 503,
                strdup(store_started(srv->store) ? "{\"ready\":true}" : "{\"ready\":false}"));
        else
            set_error(r, 404, "no such endpoint");
        return;
    }
    if (n >= 2 && !strcmp(seg[1], "repository")) {
        if (!post) {
            set_error(r, 405, "repository endpoints take POST");
            return;
        }
        if (n == 3 && !strcmp(seg[2], "index")) {
            bool ready_only =
                r->body && r->len && strstr(r->body, "\"ready\"") && strstr(r->body, "true");
            json_reply(r, store_index_json(srv->store, ready_only), NULL, 500);
            return;
        }
        if (n == 5 && !strcmp(seg[2], "models") &&
            (!strcmp(seg[4], "load") || !strcmp(seg[4], "unload"))) {
            if (!store_valid_name(seg[3])) {
                set_error(r, 400, "invalid model name");
                return;
            }
            bool load = !strcmp(seg[4], "load");
            tern_status *st =
                load ? store_load(srv->store, seg[3]) : store_unload(srv->store, seg[3]);
            if (st)
                set_status_error(r, st, 0);
            else
                set_response(r, 200, strdup("{}"));
            return;
        }
        set_error(r, 404, "no such endpoint");
        return;
    }
    if (n == 3 && !strcmp(seg[1], "models") && !strcmp(seg[2], "stats") && get) {
        tern_status *st = NULL;
        char *j = store_stats_json(srv->store, NULL, 0, &st);
        json_reply(r, j, st, 0);
        return;
    }
    if (n >= 3 && !strcmp(seg[1], "models")) {
        const char *model = seg[2];
        if (!store_valid_name(model)) {
            set_error(r, 400, "invalid model name");
            return;
        }
        int64_t version = 0;
        int k = 3;
        if (n >= 5 && !strcmp(seg[3], "versions")) {
            if (!parse_version(seg[4], &version)) {
                set_error(r, 400, "version must be a positive integer");
                return;
            }
            k = 5;
        } else if (n == 4 && !strcmp(seg[3], "versions")) {
            set_error(r, 404, "no such endpoint");
            return;
        }
        const char *action = k < n ? seg[k] : NULL;
        if (k + 1 < n) {
            set_error(r, 404, "no such endpoint");
            return;
        }
        tern_status *st = NULL;
        if (!action && get) {
            char *j = store_metadata_json(srv->store, model, version, &st);
            json_reply(r, j, st, 0);
        } else if (action && !strcmp(action, "ready") && get) {
            if (store_ready(srv->store, model, version)) {
                set_response(r, 200, strdup("{\"ready\":true}"));
            } else {
                model_version *v = store_acquire(srv->store, model, version, &st);
                if (v) store_release(v);
                if (st && tern_status_code(st) == TERN_ERR_NOT_FOUND)
                    set_status_error(r, st, 404);
                else {
                    tern_status_free(st);
                    set_response(r, 400, strdup("{\"ready\":false}"));
                }
            }
        } else if (action && !strcmp(action, "config") && get && k == 3) {
            char *j = store_config_json(srv->store, model, &st);
            json_reply(r, j, st, 0);
        } else if (action && !strcmp(action, "stats") && get) {
            char *j = store_stats_json(srv->store, model, version, &st);
            json_reply(r, j, st, 0);
        } else if (action && !strcmp(action, "infer")) {
            if (!post)
                set_error(r, 405, "infer takes POST");
            else
                handle_infer(r, model, version);
        } else {
            set_error(r, action && (get || post) ? 404 : 405,
                      action ? "no such endpoint" : "method not allowed");
        }
        return;
    }
    set_error(r, 404, "no such endpoint");
}

/* ---- MHD callbacks ----------------------------------------------------- */

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    (void)version;
    tern_server *srv = cls;
    req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = srv;
        r->conn = conn;
        r->t_start = now_s();
        r->resp_header_len = -1;
        *con_cls = r;
        atomic_fetch_add(&srv->inflight, 1);
        /* headers are in: no header deadline while the request is served */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        if (ci && ci->socket_context) {
            pthread_mutex_lock(&srv->conns_mu);
            ((conn_track *)ci->socket_context)->deadline = 0;
            pthread_mutex_unlock(&srv->conns_mu);
        }
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)srv->cfg->max_body_bytes) {
            r->too_large = true;
            char msg[160];
            snprintf(msg, sizeof msg, "request body of %s bytes is over the limit of %ld", cl,
                     srv->cfg->max_body_bytes);
            set_error(r, 413, msg);
            return queue(r); /* answered before the body is read; MHD closes the connection */
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (!r->too_large && r->len + n > (size_t)srv->cfg->max_body_bytes) {
            r->too_large = true;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
        }
        if (r->too_large) {
            /* read and drop the rest so the client can read the 413, but
             * only so much: past that, answer now and close the connection */
            r->discarded += n;
            if (r->discarded > DISCARD_ALLOWANCE) {
                char msg[160];
                snprintf(msg, sizeof msg, "request body is over the limit of %ld bytes",
                         srv->cfg->max_body_bytes);
                set_error(r, 413, msg);
                return queue(r);
            }
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n + 1) cap *= 2;
            if (cap > (size_t)srv->cfg->max_body_bytes + 1)
                cap = (size_t)srv->cfg->max_body_bytes + 1;
            char *b = realloc(r->body, cap);
            if (!b) return MHD_NO;
            r->body = b;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload, n);
        r->len += n;
        r->body[r->len] = 0;
        return MHD_YES;
    }
    if (!r->done) {
        if (r->too_large) {
            char msg[160];
            snprintf(msg, sizeof msg, "request body is over the limit of %ld bytes",
                     srv->cfg->max_body_bytes);
            set_error(r, 413, msg);
        } else {
            route(r, method, url);
        }
        if (!r->done) return MHD_YES; /* suspended: a worker will resume us */
    }
    return queue(r);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    tern_server *srv = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context) {
        pthread_mutex_lock(&srv->conns_mu);
        ((conn_track *)ci->socket_context)->deadline = now_s() + srv->cfg->idle_timeout_secs;
        pthread_mutex_unlock(&srv->conns_mu);
    }
    req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    if (r->series) {
        double t = now_s();
        metrics_request_done(r->series, outcome_of(r->status), t - r->t_start,
                             r->t_run0 > 0 ? r->t_run0 - r->t_queued : 0,
                             r->t_run1 > 0 ? r->t_run1 - r->t_run0 : 0);
        metrics_inflight_add(r->series, -1);
    }
    if (r->kr) kserve_request_free(r->kr);
    if (r->v) store_release(r->v);
    free(r->body);
    free(r->resp);
    free(r);
    atomic_fetch_sub(&srv->inflight, 1);
}

static void notify_conn(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                        enum MHD_ConnectionNotificationCode code)
{
    tern_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&srv->connections, 1);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_track *t = calloc(1, sizeof *t);
        if (!t || !ci) {
            free(t);
            return;
        }
        t->fd = ci->connect_fd;
        t->deadline = now_s() + srv->cfg->header_timeout_secs;
        pthread_mutex_lock(&srv->conns_mu);
        t->next = srv->conns.next;
        t->prev = &srv->conns;
        srv->conns.next->prev = t;
        srv->conns.next = t;
        pthread_mutex_unlock(&srv->conns_mu);
        *socket_ctx = t;
    } else {
        atomic_fetch_sub(&srv->connections, 1);
        conn_track *t = *socket_ctx;
        if (!t) return;
        /* under the lock: the reaper never touches an fd MHD is closing */
        pthread_mutex_lock(&srv->conns_mu);
        t->prev->next = t->next;
        t->next->prev = t->prev;
        pthread_mutex_unlock(&srv->conns_mu);
        free(t);
        *socket_ctx = NULL;
    }
}

static void *reaper(void *arg)
{
    tern_server *srv = arg;
    while (!atomic_load(&srv->stopping)) {
        usleep(200000);
        double now = now_s();
        pthread_mutex_lock(&srv->conns_mu);
        for (conn_track *t = srv->conns.next; t != &srv->conns; t = t->next)
            if (t->deadline > 0 && now > t->deadline) {
                t->deadline = 0;
                shutdown(t->fd, SHUT_RDWR); /* MHD sees the close and cleans up */
            }
        pthread_mutex_unlock(&srv->conns_mu);
    }
    return NULL;
}

/* MHD's own messages (malformed requests, closed peers) as debug log lines. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (log_get_level() > LOG_DEBUG) return;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
    log_debug("http", LOG_S("detail", buf));
}

/* ---- start and stop ---------------------------------------------------- */

tern_status *server_start(const server_settings *cfg, tern_server **out)
{
    *out = NULL;
    tern_server *srv = calloc(1, sizeof *srv);
    if (!srv) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    srv->cfg = cfg;
    pthread_mutex_init(&srv->conns_mu, NULL);
    srv->conns.next = srv->conns.prev = &srv->conns;
    metrics_init();
    store_options so = {
        .repository = cfg->model_repository,
        .mode = !strcmp(cfg->model_control_mode, "explicit") ? STORE_EXPLICIT
                : !strcmp(cfg->model_control_mode, "poll")   ? STORE_POLL
                                                             : STORE_NONE,
        .startup_models = (const char *const *)cfg->load_model,
        .n_startup_models = cfg->n_load_model,
        .poll_secs = (int)cfg->repository_poll_secs,
        .default_threads = (int)cfg->model_threads,
    };
    tern_status *st = store_create(&so, &srv->store);
    if (st) {
        free(srv);
        return st;
    }
    /* By default half the cores run engines and the rest is left to the
     * HTTP threads, which decode and encode every request: more workers
     * than that only take turns on the same cores (on 2 cores, batched MLP
     * requests from 64 clients: 21.6-24.5k req/s with 2 workers, 25.4-26.4k
     * with 1, which also batches more). */
    long workers = cfg->infer_threads;
    if (workers <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        workers = cores >= 2 ? cores / 2 : 1;
    }
    srv->pool = pool_create((int)workers);
    if (!srv->pool) {
        store_free(srv->store);
        free(srv);
        return tern_error(TERN_ERR_NO_MEMORY, "cannot start inference workers");
    }
    st = store_start(srv->store);
    if (st) {
        server_free(srv, 0);
        return st;
    }
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->host, &addr.sin_addr) != 1) {
        server_free(srv, 0);
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "--host: '%s' is not an IPv4 address",
                          cfg->host);
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    srv->mhd = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, handler, srv, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->idle_timeout_secs, MHD_OPTION_NOTIFY_COMPLETED, completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, notify_conn, srv, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv, MHD_OPTION_END);
    if (!srv->mhd) {
        server_free(srv, 0);
        return tern_error(TERN_ERR_IO, "cannot listen on %s:%ld (in use or not permitted)",
                          cfg->host, cfg->port);
    }
    srv->reaper_started = pthread_create(&srv->reaper, NULL, reaper, srv) == 0;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : (int)cfg->port;
    *out = srv;
    return NULL;
}

int server_port(const tern_server *srv)
{
    return srv->port;
}

void server_free(tern_server *srv, int drain_secs)
{
    if (!srv) return;
    MHD_socket listen_fd = MHD_INVALID_SOCKET;
    if (srv->mhd) {
        /* no new connections. The listen socket is shut down, not closed:
         * MHD's pool threads take it out of their epoll sets one by one,
         * and a closed fd makes that fail (and MHD abort). */
        listen_fd = MHD_quiesce_daemon(srv->mhd);
        if (listen_fd != MHD_INVALID_SOCKET) shutdown(listen_fd, SHUT_RDWR);
        double until = now_s() + drain_secs;
        while (atomic_load(&srv->inflight) > 0 && now_s() < until) usleep(10000);
        if (atomic_load(&srv->inflight) > 0) {
            log_warn("drain timeout: answering queued requests with 503",
                     LOG_I("inflight", atomic_load(&srv->inflight)));
            pool_cancel_queued(srv->pool);
        }
    }
    /* the runs under way finish and resume their connections */
    pool_free(srv->pool);
    srv->pool = NULL;
    if (srv->mhd) {
        /* give resumed connections a moment to send their responses */
        double until = now_s() + 1.0;
        while (atomic_load(&srv->inflight) > 0 && now_s() < until) usleep(10000);
        MHD_stop_daemon(srv->mhd);
        if (listen_fd != MHD_INVALID_SOCKET) close(listen_fd);
    }
    atomic_store(&srv->stopping, true);
    if (srv->reaper_started) pthread_join(srv->reaper, NULL);
    pthread_mutex_destroy(&srv->conns_mu);
    store_free(srv->store);
    metrics_shutdown();
    free(srv);
}

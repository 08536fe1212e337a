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
 *      connection is suspended and the request is submitted to the
 *      version's scheduler (sched/sched.h), which may refuse it at once. The
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
#include "sched/sched.h"
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
    atomic_long inflight;    /* requests between first byte and completion */
    atomic_long connections; /* open TCP connections */
    int port;
};

typedef struct req {
    sched_req sr; /* first: the scheduler's callback gets a req back */
    tern_server *srv;
    struct MHD_Connection *conn;
    double t_start, queue_s, compute_s;
    int retry_after; /* seconds, for a 429 */
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
    if (r->retry_after > 0) {
        char n[32];
        snprintf(n, sizeof n, "%d", r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, n);
    }
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

/* Triton's statistics for one answered inference request. */
static void count_request(req *r, const sched_result *res)
{
    version_stats *vs = version_stats_of(r->v);
    bool computed = res->status == 200; /* Triton counts failures only in "fail" */
    if (computed) {
        /* Triton's: inferences are rows, executions runs; queue and compute
         * count requests, each with the duration of the run it shared */
        atomic_fetch_add(&vs->inference_count, res->rows);
        if (res->first_of_batch) atomic_fetch_add(&vs->execution_count, 1);
        atomic_fetch_add(&vs->compute_count, 1);
        atomic_fetch_add(&vs->compute_ns, res->compute_ns);
        atomic_fetch_add(&vs->queue_count, 1);
        atomic_fetch_add(&vs->queue_ns, res->queue_ns);
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        atomic_store(&vs->last_inference_ms,
                     (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000);
    }
    long long total_ns = (long long)((now_s() - r->t_start) * 1e9);
    if (r->status == MHD_HTTP_OK) {
        atomic_fetch_add(&vs->success_count, 1);
        atomic_fetch_add(&vs->success_ns, total_ns);
    } else {
        atomic_fetch_add(&vs->fail_count, 1);
        atomic_fetch_add(&vs->fail_ns, total_ns);
    }
}

/* Encodes r's response from the model outputs (owned; freed here). */
static void encode_outputs(req *r, tern_tensor **outs)
{
    model_version *v = r->v;
    kserve_request *kr = r->kr;
    int n_out = version_output_count(v);
    kserve_output *sel = calloc((size_t)n_out + 1, sizeof *sel);
    if (!sel) {
        set_error(r, 500, "out of memory");
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
        tern_status *st =
            kserve_encode_response(version_model_name(v), vbuf, kr->id, n, sel, &body, &len, &hl);
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
    for (int j = 0; outs && j < n_out; j++) tern_tensor_free(outs[j]);
    free(outs);
    free(sel);
}

/* The scheduler's answer (sched.h): on its thread, or on the HTTP thread
 * for a rejection at submission. Sets the response and records it; the
 * caller resumes the connection. */
static void apply_result(req *r, sched_result *res)
{
    r->queue_s = (double)res->queue_ns / 1e9;
    r->compute_s = (double)res->compute_ns / 1e9;
    if (res->status == 200) {
        encode_outputs(r, res->outputs);
    } else {
        set_error(r, (unsigned)res->status, tern_status_message(res->error));
        r->retry_after = res->retry_after_s;
    }
    tern_status_free(res->error);
    count_request(r, res);
}

static void infer_done(sched_req *sr, sched_result *res)
{
    req *r = (req *)sr;
    apply_result(r, res);
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
    /* Overloaded: refuse before paying for the decode, when the request
     * leaves timeout and priority to the model (the JSON mentions neither;
     * a string tensor containing the words only costs the shortcut). */
    size_t jlen = header_len >= 0 ? (size_t)header_len : r->len;
    if (r->body && sched_has_limits(version_sched(r->v)) &&
        !memmem(r->body, jlen, "\"timeout\"", 9) &&
        !memmem(r->body, jlen, "\"priority\"", 10)) {
        sched_result rej;
        if (!sched_precheck(version_sched(r->v), &rej)) {
            apply_result(r, &rej);
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
    r->sr = (sched_req){.n_inputs = r->kr->n_inputs,
                        .names = r->kr->input_names,
                        .inputs = (const tern_tensor *const *)r->kr->inputs,
                        .priority = (int)r->kr->priority,
                        .timeout_us = r->kr->timeout_us,
                        .t_arrive = (int64_t)(r->t_start * 1e9),
                        .done = infer_done};
    /* suspended first: a scheduler thread may answer before submit returns */
    MHD_suspend_connection(r->conn);
    sched_result rej;
    if (!sched_submit(version_sched(r->v), &r->sr, &rej)) {
        apply_result(r, &rej);
        MHD_resume_connection(r->conn);
    }
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
        /* then the schedulers' families (batch sizes, rejections, SLOs) */
        char *all = NULL;
        size_t all_len = 0;
        FILE *f = open_memstream(&all, &all_len);
        if (f) {
            fwrite(out, 1, len, f);
            store_metrics_text(srv->store, f);
        }
        if (f && fclose(f) == 0 && all) {
            free(out);
            out = all;
            len = all_len;
        } else {
            free(all);
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
        metrics_request_done(r->series, outcome_of(r->status), t - r->t_start, r->queue_s,
                             r->compute_s);
        metrics_inflight_add(r->series, -1);
        if (r->v) sched_record(version_sched(r->v), (int)r->status,
                               (int64_t)((t - r->t_start) * 1e9));
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
    for (unsigned tick = 1; !atomic_load(&srv->stopping); tick++) {
        /* every 5 ms: queued requests past their deadline get their 504 now
         * rather than when a busy instance frees up */
        usleep(5000);
        store_expire_queued(srv->store);
        if (tick % 40) continue;
        /* every 200 ms: connections whose headers are late */
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
            store_cancel_queued(srv->store);
        }
        /* the runs under way finish and resume their connections */
        store_wait_idle(srv->store);
    }
    /* the reaper answers expired requests: it must be gone before MHD is */
    atomic_store(&srv->stopping, true);
    if (srv->reaper_started) pthread_join(srv->reaper, NULL);
    srv->reaper_started = false;
    if (srv->mhd) {
        /* give resumed connections a moment to send their responses */
        double until = now_s() + 1.0;
        while (atomic_load(&srv->inflight) > 0 && now_s() < until) usleep(10000);
        MHD_stop_daemon(srv->mhd);
        if (listen_fd != MHD_INVALID_SOCKET) close(listen_fd);
    }
    pthread_mutex_destroy(&srv->conns_mu);
    store_free(srv->store);
    metrics_shutdown();
    free(srv);
}

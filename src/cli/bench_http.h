/*
 * The transport of `tern bench`: a small HTTP/1.1 keep-alive client on one
 * epoll loop, sending one fixed request (encoded once) over a pool of
 * connections, each carrying at most one request at a time.
 *
 * Why not libcurl's multi interface, the usual choice: the bench shares the
 * machine's cores with the server it measures, so every microsecond of
 * client CPU per request is taken from the server. Measured on the 2-core
 * machine against `tern serve` and the MLP at 64 connections, a libcurl
 * multi loop spent about 25 us of CPU per request against wrk's 12 us and
 * reported 15-40% fewer requests/s than wrk in the same minute; this loop
 * writes the prepared bytes and parses only what it needs (status line,
 * Content-Length, Connection: close), as wrk does.
 *
 * A response must carry Content-Length (tern, Triton and KServe servers
 * do); one without it, or chunked, is a protocol error (status 0) and its
 * connection is closed. Plain http only.
 */
#ifndef TERN_CLI_BENCH_HTTP_H
#define TERN_CLI_BENCH_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/status.h"

/* A parsed http://HOST[:PORT][/PREFIX] URL and its resolved address. */
typedef struct bh_target {
    char host[256], port[16], prefix[1024];
    struct sockaddr_storage addr;
    socklen_t addrlen;
} bh_target;

/* Parses and resolves url (the first address getaddrinfo gives). */
tern_status *bh_target_parse(const char *url, bh_target *t);

/* Monotonic time in seconds. */
double bh_now(void);

typedef struct bh_client bh_client;

/* Called for every finished request: the HTTP status, or 0 when the
 * connection failed or the response was malformed; `start` is the value
 * given to bh_client_send. The connection is already free again, so the
 * callback may send. */
typedef void (*bh_done_fn)(void *arg, int status, double start, double now);

/* A client sending the `len` bytes of `request` (a whole HTTP request) to t,
 * over at most max_conns connections. */
tern_status *bh_client_create(const bh_target *t, const char *request, size_t len, int max_conns,
                              bh_done_fn done, void *arg, bh_client **out);
void bh_client_free(bh_client *c);

/* Sends the request on an idle connection, opening one when none is idle
 * and fewer than max_conns are open. Returns false (nothing sent) when all
 * max_conns connections are busy. */
bool bh_client_send(bh_client *c, double start);

/* Requests sent and not yet finished. */
int bh_client_outstanding(const bh_client *c);

/* Waits for network events until `until` (bh_now time) and finishes the
 * requests they complete; returns early after a batch of events. */
tern_status *bh_client_poll(bh_client *c, double until);

/* Closes every connection; requests in flight are dropped without a
 * callback. Returns how many there were. */
int bh_client_abort(bh_client *c);

#endif

/*
 * The HTTP server: libmicrohttpd in epoll thread-pool mode serving the KServe
 * v2 REST protocol, Triton's extensions and /metrics over a model store.
 */
#ifndef TERN_SERVER_HTTP_H
#define TERN_SERVER_HTTP_H

#include "core/status.h"
#include "server/settings.h"

typedef struct tern_server tern_server;

/* Creates the model store, loads the start-up models and starts listening.
 * The settings must stay valid until server_free. */
tern_status *server_start(const server_settings *s, tern_server **out);
/* The port actually bound (useful with --port 0). */
int server_port(const tern_server *srv);
/* Graceful stop: stop accepting, let in-flight requests finish (at most
 * drain_secs), stop the daemon, unload every model, free. */
void server_free(tern_server *srv, int drain_secs);

#endif

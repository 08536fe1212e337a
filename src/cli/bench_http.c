/*
 * The HTTP/1.1 client of `tern bench` (see bench_http.h for why it is not
 * libcurl). One thread, one epoll set, level-triggered.
 *
 * A connection lives in a slot: CONNECTING (non-blocking connect under
 * way), WRITING (request bytes left to write), READING (waiting for the
 * response) and IDLE (kept alive, on the idle stack), or CLOSED (slot free).
 * A request is owned by its connection from bh_client_send until its
 * response is complete or the connection fails; then the slot goes back to
 * IDLE (or is closed, on "Connection: close" or any error) before the done
 * callback runs, so the callback may send again at once, as a closed loop
 * does.
 *
 * Epoll events carry the slot index and a generation number bumped on every
 * open: an event still queued for a connection closed (and its slot reused)
 * by a callback earlier in the same batch is recognised and skipped.
 *
 * Responses are read into one shared scratch buffer. A head that arrives
 * whole is parsed there; one split across reads is gathered in the slot (up
 * to HEAD_MAX bytes). Body bytes are only counted off against
 * Content-Length.
 */
#include "cli/bench_http.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 16384
#define SCRATCH_BYTES (256 * 1024)
#define MAX_EVENTS 256

enum { C_CLOSED, C_CONNECTING, C_WRITING, C_READING, C_IDLE };

typedef struct conn {
    int fd, state;
    uint32_t gen;
    bool want_out;       /* EPOLLOUT is in the interest set */
    size_t sent;         /* request bytes written */
    double start;        /* the request's start, given to the callback */
    char *head;          /* response head bytes so far */
    size_t head_len;     /* bytes in head */
    long long body_left; /* -1 while the head is incomplete */
    int status;
    bool close_after;
} conn;

struct bh_client {
    bh_target t;
    const char *req;
    size_t len;
    int max_conns, n_open, outstanding;
    conn *slots;
    int n_slots, cap_slots;
    int *idle, n_idle; /* idle connections, a stack */
    int *free_slots, n_free;
    double *failed; /* starts of requests whose connection failed in send */
    int n_failed, cap_failed;
    int ep;
    char *scratch;
    bh_done_fn done;
    void *arg;
};

double bh_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- URL --------------------------------------------------------------- */

tern_status *bh_target_parse(const char *url, bh_target *t)
{
    memset(t, 0, sizeof *t);
    const char *p = url;
    if (!strncasecmp(p, "http://", 7))
        p += 7;
    else if (strstr(p, "://"))
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "--url %s: only http:// is supported by tern bench", url);
    const char *slash = strchr(p, '/');
    size_t hostport = slash ? (size_t)(slash - p) : strlen(p);
    if (hostport == 0 || hostport >= sizeof t->host)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "--url %s: no host", url);
    char hp[sizeof t->host];
    memcpy(hp, p, hostport);
    hp[hostport] = 0;
    char *host = hp, *colon = NULL;
    if (hp[0] == '[') { /* [IPv6]:port */
        char *close = strchr(hp, ']');
        if (!close) return tern_error(TERN_ERR_INVALID_ARGUMENT, "--url %s: bad IPv6 host", url);
        *close = 0;
        host = hp + 1;
        if (close[1] == ':') colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
    }
    if (colon) {
        *colon = 0;
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || port < 1 || port > 65535)
            return tern_error(TERN_ERR_INVALID_ARGUMENT, "--url %s: bad port", url);
        snprintf(t->port, sizeof t->port, "%ld", port);
    } else {
        snprintf(t->port, sizeof t->port, "80");
    }
    snprintf(t->host, sizeof t->host, "%s", host);
    if (slash) {
        size_t pl = strlen(slash);
        while (pl && slash[pl - 1] == '/') pl--;
        if (pl >= sizeof t->prefix)
            return tern_error(TERN_ERR_INVALID_ARGUMENT, "--url %s: path too long", url);
        memcpy(t->prefix, slash, pl);
        t->prefix[pl] = 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(t->host, t->port, &hints, &ai);
    if (rc)
        return tern_error(TERN_ERR_IO, "--url %s: cannot resolve '%s': %s", url, t->host,
                          gai_strerror(rc));
    /* the first address that accepts a connection ("localhost" may give ::1
     * first to a server listening on 127.0.0.1 only), else the first one */
    const struct addrinfo *pick = ai;
    for (const struct addrinfo *a = ai; a; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        bool ok = fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0;
        if (fd >= 0 && !ok && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int err = 0;
            socklen_t el = sizeof err;
            ok = poll(&pfd, 1, 2000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 &&
                 !err;
        }
        if (fd >= 0) close(fd);
        if (ok) {
            pick = a;
            break;
        }
    }
    memcpy(&t->addr, pick->ai_addr, pick->ai_addrlen);
    t->addrlen = pick->ai_addrlen;
    freeaddrinfo(ai);
    return NULL;
}

/* ---- connections ------------------------------------------------------- */

static uint64_t tag(const conn *c, int i)
{
    return (uint64_t)c->gen << 32 | (uint32_t)i;
}

static void set_out(bh_client *cl, int i, bool out)
{
    conn *c = &cl->slots[i];
    if (c->want_out == out) return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u64 = tag(c, i)};
    epoll_ctl(cl->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

static void remove_idle(bh_client *cl, int i)
{
    for (int k = 0; k < cl->n_idle; k++)
        if (cl->idle[k] == i) {
            cl->idle[k] = cl->idle[--cl->n_idle];
            return;
        }
}

static void close_conn(bh_client *cl, int i)
{
    conn *c = &cl->slots[i];
    if (c->state == C_CLOSED) return;
    if (c->state == C_IDLE) remove_idle(cl, i);
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->state = C_CLOSED;
    c->want_out = false;
    cl->n_open--;
    cl->free_slots[cl->n_free++] = i;
}

/* The request on slot i is over: free the connection, then tell the caller. */
static void finish(bh_client *cl, int i, int status)
{
    conn *c = &cl->slots[i];
    double start = c->start;
    cl->outstanding--;
    if (status == 0 || c->close_after) {
        close_conn(cl, i);
    } else {
        c->state = C_IDLE;
        cl->idle[cl->n_idle++] = i;
    }
    cl->done(cl->arg, status, start, bh_now());
}

static void write_request(bh_client *cl, int i)
{
    conn *c = &cl->slots[i];
    while (c->sent < cl->len) {
        ssize_t n = send(c->fd, cl->req + c->sent, cl->len - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out(cl, i, true);
            return;
        } else {
            finish(cl, i, 0);
            return;
        }
    }
    set_out(cl, i, false);
    c->state = C_READING;
    c->head_len = 0;
    c->body_left = -1;
    c->status = 0;
    c->close_after = false;
}

/* Status, Content-Length and Connection of a complete head of `len` bytes;
 * false when it is not a usable HTTP/1.x response head. */
static bool parse_head(conn *c, const char *h, size_t len)
{
    if (len < 12 || strncmp(h, "HTTP/1.", 7) || h[8] != ' ') return false;
    int status = 0;
    for (int k = 9; k < 12; k++) {
        if (h[k] < '0' || h[k] > '9') return false;
        status = status * 10 + (h[k] - '0');
    }
    long long clen = -1;
    c->close_after = h[7] == '0'; /* HTTP/1.0 closes unless told otherwise */
    const char *p = memchr(h, '\n', len), *end = h + len;
    while (p && p + 1 < end) {
        const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) break;
        size_t ll = (size_t)(eol - line);
        if (ll > 15 && !strncasecmp(line, "content-length:", 15)) {
            const char *v = line + 15;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            clen = 0;
            if (v == eol || *v < '0' || *v > '9') return false;
            for (; v < eol && *v >= '0' && *v <= '9'; v++) {
                clen = clen * 10 + (*v - '0');
                if (clen > (1LL << 50)) return false;
            }
        } else if (ll > 11 && !strncasecmp(line, "connection:", 11)) {
            if (memmem(line, ll, "close", 5) || memmem(line, ll, "Close", 5))
                c->close_after = true;
            else if (memmem(line, ll, "keep-alive", 10) || memmem(line, ll, "Keep-Alive", 10))
                c->close_after = false;
        } else if (ll > 18 && !strncasecmp(line, "transfer-encoding:", 18)) {
            return false; /* chunked: not spoken here */
        }
        p = eol;
    }
    if (clen < 0) {
        if (status != 204 && status != 304) return false;
        clen = 0;
    }
    c->status = status;
    c->body_left = clen;
    return true;
}

/* Consumes n response bytes on slot i. */
static void feed(bh_client *cl, int i, const char *data, size_t n)
{
    conn *c = &cl->slots[i];
    if (c->body_left < 0 && c->head_len == 0) { /* the usual case: a whole head in one read */
        char *e = memmem(data, n, "\r\n\r\n", 4);
        if (e) {
            size_t head = (size_t)(e - data) + 4;
            if (head > HEAD_MAX || !parse_head(c, data, head)) {
                finish(cl, i, 0);
                return;
            }
            n -= head;
        }
    }
    if (c->body_left < 0) {
        if (!c->head && !(c->head = malloc(HEAD_MAX))) {
            finish(cl, i, 0);
            return;
        }
        size_t take = n < HEAD_MAX - c->head_len ? n : HEAD_MAX - c->head_len;
        size_t from = c->head_len > 3 ? c->head_len - 3 : 0;
        memcpy(c->head + c->head_len, data, take);
        c->head_len += take;
        char *e = memmem(c->head + from, c->head_len - from, "\r\n\r\n", 4);
        if (!e || !parse_head(c, c->head, (size_t)(e - c->head) + 4)) {
            if (e || c->head_len == HEAD_MAX) finish(cl, i, 0); /* bad or too long a head */
            return;
        }
        /* body bytes: those copied after the head, and those not copied */
        n = c->head_len - ((size_t)(e - c->head) + 4) + (n - take);
    }
    if ((long long)n > c->body_left) { /* more than the response: we never pipeline */
        finish(cl, i, 0);
        return;
    }
    c->body_left -= (long long)n;
    if (c->body_left == 0) finish(cl, i, c->status);
}

static void on_readable(bh_client *cl, int i)
{
    conn *c = &cl->slots[i];
    for (;;) {
        ssize_t n = read(c->fd, cl->scratch, SCRATCH_BYTES);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) { /* EOF or error */
            if (c->state == C_IDLE)
                close_conn(cl, i); /* the server closed a kept-alive connection */
            else
                finish(cl, i, 0);
            return;
        }
        if (c->state != C_READING) { /* bytes nobody asked for */
            if (c->state == C_IDLE)
                close_conn(cl, i);
            else
                finish(cl, i, 0);
            return;
        }
        feed(cl, i, cl->scratch, (size_t)n); /* callbacks may move the slots */
        c = &cl->slots[i];
        if (n < SCRATCH_BYTES || c->state != C_READING) return;
    }
}

static void on_event(bh_client *cl, uint64_t data, uint32_t events)
{
    int i = (int)(uint32_t)data;
    if (i >= cl->n_slots) return;
    conn *c = &cl->slots[i];
    if (c->state == C_CLOSED || c->gen != (uint32_t)(data >> 32)) return; /* stale */
    if (c->state == C_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
            finish(cl, i, 0);
            return;
        }
        c->state = C_WRITING;
        write_request(cl, i);
        return;
    }
    if (c->state == C_WRITING && (events & EPOLLOUT)) {
        write_request(cl, i);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(cl, i);
}

/* A new connection in a free slot, connect under way; -1 if none can be made. */
static int open_conn(bh_client *cl)
{
    int i;
    if (cl->n_free) {
        i = cl->free_slots[--cl->n_free];
    } else {
        if (cl->n_slots == cl->cap_slots) {
            int cap = cl->cap_slots ? cl->cap_slots * 2 : 16;
            conn *s = realloc(cl->slots, (size_t)cap * sizeof *s);
            int *idle = s ? realloc(cl->idle, (size_t)cap * sizeof *idle) : NULL;
            if (idle) cl->idle = idle;
            int *fr = idle ? realloc(cl->free_slots, (size_t)cap * sizeof *fr) : NULL;
            if (fr) cl->free_slots = fr;
            if (s) cl->slots = s;
            if (!s || !idle || !fr) return -1;
            cl->cap_slots = cap;
        }
        i = cl->n_slots++;
        cl->slots[i] = (conn){.fd = -1, .state = C_CLOSED};
    }
    conn *c = &cl->slots[i];
    int fd = socket(cl->t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        cl->free_slots[cl->n_free++] = i;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->gen++;
    c->fd = fd;
    c->state = C_CONNECTING;
    c->want_out = true;
    cl->n_open++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = tag(c, i)};
    if (epoll_ctl(cl->ep, EPOLL_CTL_ADD, fd, &ev) != 0 ||
        (connect(fd, (const struct sockaddr *)&cl->t.addr, cl->t.addrlen) != 0 &&
         errno != EINPROGRESS)) {
        close_conn(cl, i);
        return -1;
    }
    return i;
}

/* ---- client ------------------------------------------------------------ */

tern_status *bh_client_create(const bh_target *t, const char *request, size_t len, int max_conns,
                              bh_done_fn done, void *arg, bh_client **out)
{
    bh_client *cl = calloc(1, sizeof *cl);
    if (!cl) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    cl->t = *t;
    cl->req = request;
    cl->len = len;
    cl->max_conns = max_conns;
    cl->done = done;
    cl->arg = arg;
    cl->scratch = malloc(SCRATCH_BYTES);
    cl->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!cl->scratch || cl->ep < 0) {
        bh_client_free(cl);
        return tern_error(TERN_ERR_NO_MEMORY, "cannot set up the bench client: %s",
                          strerror(errno));
    }
    *out = cl;
    return NULL;
}

void bh_client_free(bh_client *c)
{
    if (!c) return;
    bh_client_abort(c);
    for (int i = 0; i < c->n_slots; i++) free(c->slots[i].head);
    free(c->slots);
    free(c->idle);
    free(c->free_slots);
    free(c->failed);
    free(c->scratch);
    if (c->ep >= 0) close(c->ep);
    free(c);
}

int bh_client_outstanding(const bh_client *c)
{
    return c->outstanding;
}

bool bh_client_send(bh_client *cl, double start)
{
    int i;
    if (cl->n_idle) {
        i = cl->idle[--cl->n_idle];
        conn *c = &cl->slots[i];
        c->state = C_WRITING;
        c->sent = 0;
        c->start = start;
        cl->outstanding++;
        write_request(cl, i);
        return true;
    }
    if (cl->n_open >= cl->max_conns) return false;
    cl->outstanding++;
    i = open_conn(cl);
    if (i < 0) { /* finished with status 0 in the next poll, never inside send */
        if (cl->n_failed == cl->cap_failed) {
            int cap = cl->cap_failed ? cl->cap_failed * 2 : 64;
            double *f = realloc(cl->failed, (size_t)cap * sizeof *f);
            if (!f) {
                cl->outstanding--;
                return false;
            }
            cl->failed = f;
            cl->cap_failed = cap;
        }
        cl->failed[cl->n_failed++] = start;
        return true;
    }
    conn *c = &cl->slots[i];
    c->sent = 0;
    c->start = start;
    return true;
}

tern_status *bh_client_poll(bh_client *cl, double until)
{
    if (cl->n_failed) { /* those failed so far; callbacks may add more for the next poll */
        int n = cl->n_failed;
        double *starts = malloc((size_t)n * sizeof *starts);
        if (!starts) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        memcpy(starts, cl->failed, (size_t)n * sizeof *starts);
        cl->n_failed = 0;
        for (int k = 0; k < n; k++) {
            cl->outstanding--;
            cl->done(cl->arg, 0, starts[k], bh_now());
        }
        free(starts);
        return NULL;
    }
    struct epoll_event evs[MAX_EVENTS];
    double wait = until - bh_now();
    if (wait < 0) wait = 0;
    struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
    int n = epoll_pwait2(cl->ep, evs, MAX_EVENTS, &ts, NULL);
    if (n < 0 && errno == ENOSYS) /* kernels before 5.11: millisecond timeouts */
        n = epoll_wait(cl->ep, evs, MAX_EVENTS, (int)(wait * 1000 + 0.999));
    if (n < 0) {
        if (errno == EINTR) return NULL;
        return tern_error(TERN_ERR_IO, "epoll: %s", strerror(errno));
    }
    for (int k = 0; k < n; k++) on_event(cl, evs[k].data.u64, evs[k].events);
    return NULL;
}

int bh_client_abort(bh_client *cl)
{
    int n = cl->outstanding;
    for (int i = 0; i < cl->n_slots; i++) close_conn(cl, i);
    cl->n_idle = 0;
    cl->n_failed = 0;
    cl->outstanding = 0;
    return n;
}

/* JSON-lines logger, see log.h. */
#include "core/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int current = LOG_INFO;
static const char *names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, names[i]) == 0) return i;
    return -1;
}

void log_set_level(log_level l)
{
    atomic_store(&current, (int)l);
}
log_level log_get_level(void)
{
    return (log_level)atomic_load(&current);
}

/* Appends s as a JSON string body (without quotes) to buf. */
static size_t put_escaped(char *buf, size_t o, size_t cap, const char *s)
{
    for (; *s && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(buf + o, cap - o, "\\u%04x", ch);
        } else {
            buf[o++] = (char)ch;
        }
    }
    return o;
}

void log_write(log_level l, const char *msg, int n, const log_field *f)
{
    if (l < log_get_level()) return;
    char buf[4096];
    size_t cap = sizeof buf - 4, o = 0;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    o += strftime(buf, cap, "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
    o += (size_t)snprintf(buf + o, cap - o, ".%03dZ\",\"level\":\"%s\",\"msg\":\"",
                          (int)(tv.tv_usec / 1000), names[l > 3 ? 1 : l]);
    o = put_escaped(buf, o, cap, msg);
    buf[o++] = '"';
    for (int i = 0; i < n && o + 64 < cap; i++) {
        buf[o++] = ',';
        buf[o++] = '"';
        o = put_escaped(buf, o, cap - 32, f[i].key);
        buf[o++] = '"';
        buf[o++] = ':';
        if (f[i].s) {
            buf[o++] = '"';
            o = put_escaped(buf, o, cap - 4, f[i].s);
            buf[o++] = '"';
        } else {
            o += (size_t)snprintf(buf + o, cap - o, "%lld", (long long)f[i].i);
        }
    }
    buf[o++] = '}';
    buf[o++] = '\n';
    ssize_t ignored = write(2, buf, o);
    (void)ignored;
}

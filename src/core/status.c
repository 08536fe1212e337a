/* Status objects: code + message, see status.h. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returned when even the status cannot be allocated. Never freed. */
static tern_status oom_status = {TERN_ERR_NO_MEMORY, "out of memory"};

tern_status *tern_error(tern_code code, const char *fmt, ...)
{
    tern_status *st = malloc(sizeof *st);
    if (!st) return &oom_status;
    st->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof st->msg, fmt, ap);
    va_end(ap);
    return st;
}

tern_status *tern_error_wrap(tern_status *st, const char *fmt, ...)
{
    if (!st || st == &oom_status) return st;
    char prefix[256], old[sizeof st->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, st->msg, sizeof old);
    snprintf(st->msg, sizeof st->msg, "%s: %s", prefix, old);
    return st;
}

tern_code tern_status_code(const tern_status *st)
{
    return st ? st->code : TERN_OK;
}
const char *tern_status_message(const tern_status *st)
{
    return st ? st->msg : "ok";
}

void tern_status_free(tern_status *st)
{
    if (st && st != &oom_status) free(st);
}

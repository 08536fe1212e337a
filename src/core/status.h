/*
 * One error path, always taken (see STYLE.md): a function that can fail
 * returns a tern_status*, NULL on success. The status owns its message. Errors
 * are rare, so allocating on the error path is fine; the success path costs a
 * NULL compare.
 */
#ifndef TERN_CORE_STATUS_H
#define TERN_CORE_STATUS_H

#include "tern/engine.h"

struct tern_status {
    tern_code code;
    char msg[512];
};

tern_status *tern_error(tern_code code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to st's message; returns st. */
tern_status *tern_error_wrap(tern_status *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define TERN_TRY(expr)                                                                             \
    do {                                                                                           \
        tern_status *tern_try_st_ = (expr);                                                        \
        if (tern_try_st_) return tern_try_st_;                                                     \
    } while (0)

#endif

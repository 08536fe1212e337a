/*
 * Logging: one JSON object per line on stderr, e.g.
 *   {"ts":"2026-11-26T18:20:00.123Z","level":"info","msg":"model loaded","model":"mlp","version":1}
 * Lines below the configured level are dropped before any formatting. Fields
 * are given as alternating key, value pairs of type log_field, so a line is
 * built in one buffer and written with one write(2) (lines from different
 * threads never interleave).
 */
#ifndef TERN_CORE_LOG_H
#define TERN_CORE_LOG_H

#include <stdint.h>

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } log_level;

/* Parses "debug" / "info" / "warn" / "error"; -1 if none. */
int log_level_parse(const char *s);
void log_set_level(log_level l);
log_level log_get_level(void);

typedef struct log_field {
    const char *key;
    const char *s; /* string value, or NULL to use i */
    int64_t i;
} log_field;

static inline log_field log_s_(const char *k, const char *v)
{
    return (log_field){k, v ? v : "", 0};
}
#define LOG_S(k, v) log_s_((k), (v))
#define LOG_I(k, v) ((log_field){(k), NULL, (int64_t)(v)})

void log_write(log_level l, const char *msg, int n, const log_field *f);

#define log_at(level, msg, ...)                                                                    \
    do {                                                                                           \
        if ((level) >= log_get_level()) {                                                          \
            log_field log_f_[] = {LOG_S("", ""), ##__VA_ARGS__};                                   \
            log_write((level), (msg), (int)(sizeof log_f_ / sizeof *log_f_) - 1, log_f_ + 1);      \
        }                                                                                          \
    } while (0)
#define log_debug(msg, ...) log_at(LOG_DEBUG, msg, ##__VA_ARGS__)
#define log_info(msg, ...) log_at(LOG_INFO, msg, ##__VA_ARGS__)
#define log_warn(msg, ...) log_at(LOG_WARN, msg, ##__VA_ARGS__)
#define log_error(msg, ...) log_at(LOG_ERROR, msg, ##__VA_ARGS__)

#endif

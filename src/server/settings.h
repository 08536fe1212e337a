/*
 * Server settings, each defined once (name, type, default, help) in the
 * table of settings.c; the command-line flags (--name VALUE), the config file
 * keys (YAML, the same names, '-' or '_') and `tern serve --help` all come
 * from that table (STYLE.md, from nginx and curl). Precedence: defaults, then
 * the config file, then flags.
 */
#ifndef TERN_SERVER_SETTINGS_H
#define TERN_SERVER_SETTINGS_H

#include <stdbool.h>
#include <stdio.h>

#include "core/status.h"

#define SETTINGS_MAX_LIST 64

typedef struct server_settings {
    char *host;
    long port;
    long threads;       /* HTTP threads */
    long model_threads; /* intra-op threads per session (config.yaml may override) */
    char *model_repository;
    char *config;
    char *model_control_mode; /* none | explicit | poll */
    char *load_model[SETTINGS_MAX_LIST];
    int n_load_model;
    long repository_poll_secs;
    long max_body_bytes;
    long max_tensor_elements;
    long max_connections;
    long header_timeout_secs;
    long idle_timeout_secs;
    long drain_timeout_secs;
    char *log_level;
} server_settings;

void settings_defaults(server_settings *s);
void settings_free(server_settings *s);
/* Applies flags; with only_config, just finds --config. Unknown flags and bad
 * values are errors naming the flag. */
tern_status *settings_parse_args(server_settings *s, int argc, char **argv, bool only_config);
/* Applies a YAML config file; errors name the file and key. */
tern_status *settings_load_file(server_settings *s, const char *path);
/* Checks cross-setting rules (mode names, ranges). */
tern_status *settings_validate(const server_settings *s);
void settings_help(FILE *f);

#endif

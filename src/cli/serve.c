/*
 * tern serve: settings from defaults, the --config file and flags (in that
 * order), then the HTTP server until a signal. Signals are blocked in every
 * thread and taken here with sigwait, so handlers never run inside library
 * code: SIGTERM/SIGINT drain and exit 0, SIGHUP re-reads the config file's
 * log level.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/log.h"
#include "server/http.h"
#include "server/settings.h"

static int fail_status(tern_status *st)
{
    fprintf(stderr, "tern: error: %s\n", tern_status_message(st));
    tern_status_free(st);
    return 1;
}

static tern_status *read_settings(server_settings *s, int argc, char **argv)
{
    settings_defaults(s);
    TERN_TRY(settings_parse_args(s, argc, argv, true));
    if (*s->config) TERN_TRY(settings_load_file(s, s->config));
    TERN_TRY(settings_parse_args(s, argc, argv, false));
    return settings_validate(s);
}

int cmd_serve(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            settings_help(stdout);
            return 0;
        }
    server_settings s;
    tern_status *st = read_settings(&s, argc, argv);
    if (st) {
        settings_free(&s);
        return fail_status(st);
    }
    log_set_level((log_level)log_level_parse(s.log_level));

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    tern_server *srv;
    st = server_start(&s, &srv);
    if (st) {
        settings_free(&s);
        return fail_status(st);
    }
    log_info("listening", LOG_S("host", s.host), LOG_I("port", server_port(srv)),
             LOG_S("model_repository", s.model_repository),
             LOG_S("model_control_mode", s.model_control_mode));
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            if (*s.config) {
                server_settings fresh;
                st = read_settings(&fresh, argc, argv);
                if (st) {
                    log_error("reload failed", LOG_S("error", tern_status_message(st)));
                    tern_status_free(st);
                } else {
                    log_set_level((log_level)log_level_parse(fresh.log_level));
                    log_info("configuration reloaded", LOG_S("log_level", fresh.log_level));
                }
                settings_free(&fresh);
            }
            continue;
        }
        log_info("shutting down", LOG_S("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
                 LOG_I("drain_timeout_secs", s.drain_timeout_secs));
        break;
    }
    server_free(srv, (int)s.drain_timeout_secs);
    log_info("stopped");
    settings_free(&s);
    return 0;
}

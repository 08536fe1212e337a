/*
 * The settings table and its three readers (flags, YAML file, help). Each row
 * says where the value lives in server_settings (offsetof), its type and
 * bounds, its default as text and one help line. Adding a setting is adding a
 * row and a struct field.
 */
#include "server/settings.h"

#include <errno.h>
#include <libfyaml.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STR, T_INT, T_LIST } set_type;

typedef struct setting {
    const char *name;
    set_type type;
    size_t off;
    const char *dflt;
    long min, max;
    const char *help;
} setting;

#define F(field) offsetof(server_settings, field)

static const setting table[] = {
    {"host", T_STR, F(host), "127.0.0.1", 0, 0,
     "address to listen on (not loopback needs tokens, issue 8)"},
    {"port", T_INT, F(port), "8000", 0, 65535, "TCP port (0 picks a free one)"},
    {"threads", T_INT, F(threads), "2", 1, 256, "HTTP threads (epoll event loops)"},
    {"model-threads", T_INT, F(model_threads), "1", 1, 256, "intra-op threads per model session"},
    {"model-repository", T_STR, F(model_repository), "", 0, 0,
     "folder of <model>/<version>/model.onnx"},
    {"config", T_STR, F(config), "", 0, 0, "YAML file with any of these settings"},
    {"model-control-mode", T_STR, F(model_control_mode), "none", 0, 0, "none | explicit | poll"},
    {"load-model", T_LIST, F(load_model), "", 0, 0,
     "explicit mode: model to load at start (repeatable, * = all)"},
    {"repository-poll-secs", T_INT, F(repository_poll_secs), "15", 1, 86400,
     "poll mode: seconds between rescans"},
    {"max-body-bytes", T_INT, F(max_body_bytes), "67108864", 1024, LONG_MAX,
     "largest request body (413 above)"},
    {"max-tensor-elements", T_INT, F(max_tensor_elements), "16777216", 1, LONG_MAX,
     "largest input tensor, in elements"},
    {"max-connections", T_INT, F(max_connections), "1024", 1, 65536, "concurrent HTTP connections"},
    {"header-timeout-secs", T_INT, F(header_timeout_secs), "10", 1, 3600,
     "time allowed without progress before the request is read"},
    {"idle-timeout-secs", T_INT, F(idle_timeout_secs), "60", 1, 86400,
     "keep-alive connection idle time"},
    {"drain-timeout-secs", T_INT, F(drain_timeout_secs), "30", 0, 3600,
     "SIGTERM: time to finish in-flight requests"},
    {"log-level", T_STR, F(log_level), "info", 0, 0, "debug | info | warn | error"},
};

#define N_SETTINGS (sizeof table / sizeof *table)

static const setting *find(const char *name, size_t len)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *n = table[i].name;
        if (strlen(n) != len) continue;
        size_t k = 0;
        for (; k < len; k++) {
            char a = n[k], b = name[k] == '_' ? '-' : name[k];
            if (a != b) break;
        }
        if (k == len) return &table[i];
    }
    return NULL;
}

static tern_status *set_value(server_settings *s, const setting *d, const char *v,
                              const char *where)
{
    char *base = (char *)s;
    switch (d->type) {
    case T_STR: {
        char **p = (char **)(base + d->off);
        char *c = strdup(v);
        if (!c) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        free(*p);
        *p = c;
        return NULL;
    }
    case T_INT: {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < d->min || x > d->max)
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "%s%s: '%s' is not an integer from %ld to %ld", where, d->name, v,
                              d->min, d->max);
        *(long *)(base + d->off) = x;
        return NULL;
    }
    case T_LIST: {
        char **arr = (char **)(base + d->off);
        int *n = (int *)(base + offsetof(server_settings, n_load_model));
        if (*n >= SETTINGS_MAX_LIST)
            return tern_error(TERN_ERR_INVALID_ARGUMENT, "%s%s: at most %d values", where, d->name,
                              SETTINGS_MAX_LIST);
        if (!(arr[*n] = strdup(v))) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        (*n)++;
        return NULL;
    }
    }
    return NULL;
}

void settings_defaults(server_settings *s)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (table[i].type != T_LIST) {
            tern_status *st = set_value(s, &table[i], table[i].dflt, "");
            tern_status_free(st); /* defaults are valid by construction */
        }
}

void settings_free(server_settings *s)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (table[i].type == T_STR) free(*(char **)((char *)s + table[i].off));
    for (int i = 0; i < s->n_load_model; i++) free(s->load_model[i]);
    memset(s, 0, sizeof *s);
}

tern_status *settings_parse_args(server_settings *s, int argc, char **argv, bool only_config)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return tern_error(TERN_ERR_INVALID_ARGUMENT, "unexpected argument '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const setting *d = find(name, len);
        if (!d)
            return tern_error(TERN_ERR_INVALID_ARGUMENT, "unknown flag '%.*s'", (int)len + 2, a);
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc)
                return tern_error(TERN_ERR_INVALID_ARGUMENT, "flag --%s needs a value", d->name);
            v = argv[++i];
        }
        bool is_config = strcmp(d->name, "config") == 0;
        if (only_config != is_config) continue;
        TERN_TRY(set_value(s, d, v, "--"));
    }
    return NULL;
}

tern_status *settings_load_file(server_settings *s, const char *path)
{
    struct fy_document *doc = fy_document_build_from_file(NULL, path);
    if (!doc) return tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: cannot read or parse YAML", path);
    tern_status *st = NULL;
    struct fy_node *root = fy_document_root(doc);
    if (!root) goto done; /* empty file: nothing to set */
    if (!fy_node_is_mapping(root)) {
        st = tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: expected a mapping of settings", path);
        goto done;
    }
    void *iter = NULL;
    struct fy_node_pair *pair;
    char where[512];
    snprintf(where, sizeof where, "%s: ", path);
    while (!st && (pair = fy_node_mapping_iterate(root, &iter))) {
        size_t klen = 0;
        const char *key = fy_node_get_scalar(fy_node_pair_key(pair), &klen);
        if (!key) {
            st = tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: a key is not a string", path);
            break;
        }
        const setting *d = find(key, klen);
        if (!d || strcmp(d->name, "config") == 0) {
            st = tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: unknown setting '%.*s'", path,
                            (int)klen, key);
            break;
        }
        struct fy_node *val = fy_node_pair_value(pair);
        if (d->type == T_LIST && val && fy_node_is_sequence(val)) {
            void *it2 = NULL;
            struct fy_node *item;
            while (!st && (item = fy_node_sequence_iterate(val, &it2))) {
                char *text = fy_node_is_scalar(item)
                                 ? fy_emit_node_to_string(item, FYECF_MODE_FLOW_ONELINE)
                                 : NULL;
                if (!text)
                    st = tern_error(TERN_ERR_INVALID_ARGUMENT, "%s%s: expected strings", where,
                                    d->name);
                else
                    st = set_value(s, d, text, where);
                free(text);
            }
            continue;
        }
        size_t vlen = 0;
        const char *v = val && fy_node_is_scalar(val) ? fy_node_get_scalar(val, &vlen) : NULL;
        if (!v) {
            st = tern_error(TERN_ERR_INVALID_ARGUMENT, "%s%s: expected a single value", where,
                            d->name);
            break;
        }
        char *copy = strndup(v, vlen);
        if (!copy)
            st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        else
            st = set_value(s, d, copy, where);
        free(copy);
    }
done:
    fy_document_destroy(doc);
    return st;
}

tern_status *settings_validate(const server_settings *s)
{
    const char *m = s->model_control_mode;
    if (strcmp(m, "none") && strcmp(m, "explicit") && strcmp(m, "poll"))
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "--model-control-mode: '%s' is not none, explicit or poll", m);
    if (strcmp(s->log_level, "debug") && strcmp(s->log_level, "info") &&
        strcmp(s->log_level, "warn") && strcmp(s->log_level, "error"))
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "--log-level: '%s' is not debug, info, warn or error", s->log_level);
    if (!*s->model_repository)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "--model-repository is required");
    if (s->n_load_model && strcmp(m, "explicit") != 0)
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "--load-model needs --model-control-mode explicit");
    return NULL;
}

void settings_help(FILE *f)
{
    fprintf(f, "usage: tern serve --model-repository DIR [--name VALUE]...\n\n"
               "Every flag is also a key of the --config YAML file (same name; flags win).\n\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *d = &table[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s %s", d->name,
                 d->type == T_INT    ? "N"
                 : d->type == T_LIST ? "NAME"
                                     : "VALUE");
        fprintf(f, "  %-34s %s", flag, d->help);
        if (*d->dflt) fprintf(f, " [%s]", d->dflt);
        fprintf(f, "\n");
    }
}

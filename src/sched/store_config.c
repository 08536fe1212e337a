/*
 * config.yaml reader for the model store.
 *
 * The file is parsed by libfyaml into a document tree and walked once into
 * a store_config; nothing keeps the tree. The walk is strict: an unknown key,
 * a value of the wrong type or out of range is an error naming the file and
 * the key path ("repo/m/config.yaml: inputs[1].shape[0]: ..."), because a
 * typo that is silently ignored (say `instance: 4`) is worse than a refusal.
 * libfyaml's own syntax errors are collected (not printed) and reported
 * with their line and column.
 *
 * Everything the file does not say comes from the model (inputs, outputs,
 * shapes) or from a default that serves a newcomer: policy latest 1, one
 * instance, the server's default thread count.
 */
#include "sched/store_config.h"

#include <errno.h>
#include <stdarg.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_MAX_BYTES (1 << 20)
#define MAX_INSTANCES 64
#define MAX_THREADS 256
#define MAX_LIST 4096

static const struct {
    const char *name;
    tern_dtype dt;
} dtypes[] = {
    {"BOOL", TERN_BOOL},     {"UINT8", TERN_UINT8},   {"UINT16", TERN_UINT16},
    {"UINT32", TERN_UINT32}, {"UINT64", TERN_UINT64}, {"INT8", TERN_INT8},
    {"INT16", TERN_INT16},   {"INT32", TERN_INT32},   {"INT64", TERN_INT64},
    {"FP16", TERN_FLOAT16},  {"FP32", TERN_FLOAT},    {"FP64", TERN_DOUBLE},
    {"BYTES", TERN_STRING},  {"BF16", TERN_BFLOAT16},
};

const char *store_dtype_kserve(tern_dtype dt)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (dtypes[i].dt == dt) return dtypes[i].name;
    return NULL;
}

tern_dtype store_dtype_parse(const char *name)
{
    if (!name) return TERN_UNDEFINED;
    if (strncmp(name, "TYPE_", 5) == 0) {
        name += 5;
        if (strcmp(name, "STRING") == 0) return TERN_STRING;
    }
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (strcmp(dtypes[i].name, name) == 0) return dtypes[i].dt;
    return TERN_UNDEFINED;
}

/* ---- the walk ----------------------------------------------------------- */

/* Where we are, for messages: the file and the key path. */
typedef struct walk {
    const char *file;
    char key[256];
} walk;

static tern_status *werr(const walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static tern_status *werr(const walk *w, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (w->key[0]) return tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: %s: %s", w->file, w->key, msg);
    return tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: %s", w->file, msg);
}

/* Appends ".name" or "[i]" to the key path; returns the old length to
 * restore with key_pop. */
static size_t key_push(walk *w, const char *name, int index)
{
    size_t n = strlen(w->key);
    if (name)
        snprintf(w->key + n, sizeof w->key - n, "%s%s", n ? "." : "", name);
    else
        snprintf(w->key + n, sizeof w->key - n, "[%d]", index);
    return n;
}
static void key_pop(walk *w, size_t n)
{
    w->key[n] = '\0';
}

static const char *node_kind(struct fy_node *n)
{
    if (!n) return "nothing";
    switch (fy_node_get_type(n)) {
    case FYNT_SCALAR: return "a scalar";
    case FYNT_SEQUENCE: return "a list";
    case FYNT_MAPPING: return "a mapping";
    }
    return "an unknown node";
}

static tern_status *get_string(const walk *w, struct fy_node *n, const char **out)
{
    if (!n || fy_node_get_type(n) != FYNT_SCALAR || fy_node_is_alias(n))
        return werr(w, "expected a string, got %s", node_kind(n));
    const char *s = fy_node_get_scalar0(n);
    if (!s) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    *out = s;
    return NULL;
}

static tern_status *get_int(const walk *w, struct fy_node *n, int64_t lo, int64_t hi, int64_t *out)
{
    const char *s;
    if (!n || fy_node_get_type(n) != FYNT_SCALAR || fy_node_is_alias(n))
        return werr(w, "expected an integer, got %s", node_kind(n));
    s = fy_node_get_scalar0(n);
    if (!s) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno == ERANGE || s[0] == ' ')
        return werr(w, "expected an integer, got '%.64s'", s);
    if (v < lo || v > hi)
        return werr(w, "%lld is out of range [%lld, %lld]", v, (long long)lo, (long long)hi);
    *out = v;
    return NULL;
}

static tern_status *get_real(const walk *w, struct fy_node *n, double lo, double hi, double *out)
{
    const char *s;
    if (!n || fy_node_get_type(n) != FYNT_SCALAR || fy_node_is_alias(n))
        return werr(w, "expected a number, got %s", node_kind(n));
    s = fy_node_get_scalar0(n);
    if (!s) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno == ERANGE || s[0] == ' ' || v != v)
        return werr(w, "expected a number, got '%.64s'", s);
    if (v < lo || v > hi) return werr(w, "%g is out of range [%g, %g]", v, lo, hi);
    *out = v;
    return NULL;
}

static tern_status *expect(const walk *w, struct fy_node *n, enum fy_node_type t, const char *what)
{
    if (!n || fy_node_get_type(n) != t || fy_node_is_alias(n))
        return werr(w, "expected %s, got %s", what, node_kind(n));
    return NULL;
}

/* Iterates a mapping's pairs, handing each string key to fn. */
typedef tern_status *(*pair_fn)(walk *w, const char *key, struct fy_node *value, void *arg);
static tern_status *each_pair(walk *w, struct fy_node *map, pair_fn fn, void *arg)
{
    TERN_TRY(expect(w, map, FYNT_MAPPING, "a mapping"));
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(map, &it))) {
        const char *key;
        struct fy_node *k = fy_node_pair_key(p);
        if (!k || fy_node_get_type(k) != FYNT_SCALAR || !(key = fy_node_get_scalar0(k)))
            return werr(w, "keys must be strings");
        size_t old = key_push(w, key, 0);
        tern_status *st = fn(w, key, fy_node_pair_value(p), arg);
        if (st) return st;
        key_pop(w, old);
    }
    return NULL;
}

static tern_status *get_shape(walk *w, struct fy_node *n, bool allow_dynamic, store_tensor_decl *d)
{
    TERN_TRY(expect(w, n, FYNT_SEQUENCE, "a list of dimensions"));
    int count = fy_node_sequence_item_count(n);
    if (count > TERN_MAX_RANK)
        return werr(w, "rank %d is over the limit of %d", count, TERN_MAX_RANK);
    void *it = NULL;
    struct fy_node *item;
    int i = 0;
    while ((item = fy_node_sequence_iterate(n, &it))) {
        size_t old = key_push(w, NULL, i);
        TERN_TRY(get_int(w, item, allow_dynamic ? -1 : 0, INT64_C(1) << 40, &d->dims[i]));
        key_pop(w, old);
        i++;
    }
    d->rank = i;
    return NULL;
}

typedef struct decl_ctx {
    store_tensor_decl *d;
    bool warmup;
    bool has_name, has_dtype, has_shape;
} decl_ctx;

static tern_status *decl_pair(walk *w, const char *key, struct fy_node *v, void *arg)
{
    decl_ctx *c = arg;
    if (strcmp(key, "name") == 0) {
        const char *s;
        TERN_TRY(get_string(w, v, &s));
        if (!*s) return werr(w, "must not be empty");
        free(c->d->name);
        if (!(c->d->name = strdup(s))) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        c->has_name = true;
    } else if (strcmp(key, "datatype") == 0 && !c->warmup) {
        const char *s;
        TERN_TRY(get_string(w, v, &s));
        if (!(c->d->dtype = store_dtype_parse(s)))
            return werr(w,
                        "unknown datatype '%.64s' (expected BOOL, UINT8..UINT64, INT8..INT64, "
                        "FP16, FP32, FP64, BYTES or BF16)",
                        s);
        c->has_dtype = true;
    } else if (strcmp(key, "shape") == 0 || strcmp(key, "dims") == 0) {
        TERN_TRY(get_shape(w, v, !c->warmup, c->d));
        c->has_shape = true;
    } else {
        return werr(w, "unknown key (expected name, %sshape)", c->warmup ? "" : "datatype, ");
    }
    return NULL;
}

static tern_status *get_decls(walk *w, struct fy_node *n, bool warmup, store_tensor_decl **out,
                              int *count)
{
    TERN_TRY(expect(w, n, FYNT_SEQUENCE, "a list"));
    int len = fy_node_sequence_item_count(n);
    if (len > MAX_LIST) return werr(w, "%d entries is over the limit of %d", len, MAX_LIST);
    store_tensor_decl *d = calloc((size_t)len + 1, sizeof *d);
    if (!d) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    *out = d;
    void *it = NULL;
    struct fy_node *item;
    for (int i = 0; (item = fy_node_sequence_iterate(n, &it)); i++) {
        size_t old = key_push(w, NULL, i);
        decl_ctx c = {.d = &d[i], .warmup = warmup};
        d[i].rank = -1;
        *count = i + 1;
        TERN_TRY(each_pair(w, item, decl_pair, &c));
        if (!c.has_name) return werr(w, "missing key 'name'");
        if (warmup && !c.has_shape) return werr(w, "missing key 'shape'");
        for (int j = 0; j < i; j++)
            if (strcmp(d[j].name, d[i].name) == 0)
                return werr(w, "'%s' is listed twice", d[i].name);
        key_pop(w, old);
    }
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static tern_status *get_versions(walk *w, struct fy_node *n, store_config *c)
{
    TERN_TRY(expect(w, n, FYNT_SEQUENCE, "a list of version numbers"));
    int len = fy_node_sequence_item_count(n);
    if (len == 0) return werr(w, "the list of versions is empty");
    if (len > MAX_LIST) return werr(w, "%d versions is over the limit of %d", len, MAX_LIST);
    free(c->specific);
    c->n_specific = 0;
    if (!(c->specific = calloc((size_t)len, sizeof *c->specific)))
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    void *it = NULL;
    struct fy_node *item;
    for (int i = 0; (item = fy_node_sequence_iterate(n, &it)); i++) {
        size_t old = key_push(w, NULL, i);
        TERN_TRY(get_int(w, item, 1, INT64_MAX, &c->specific[i]));
        key_pop(w, old);
        c->n_specific = i + 1;
    }
    qsort(c->specific, (size_t)c->n_specific, sizeof *c->specific, cmp_i64);
    int k = 0;
    for (int i = 0; i < c->n_specific; i++)
        if (k == 0 || c->specific[k - 1] != c->specific[i]) c->specific[k++] = c->specific[i];
    c->n_specific = k;
    return NULL;
}

/* version_policy: {latest: {num_versions: N}} | {latest: N} | {specific:
 * {versions: [..]}} | {specific: [..]} | {all: {}} | all | latest */
static tern_status *policy_pair(walk *w, const char *key, struct fy_node *v, void *arg)
{
    store_config *c = arg;
    if (strcmp(key, "latest") == 0) {
        c->policy = POLICY_LATEST;
        struct fy_node *n = v;
        size_t old = strlen(w->key);
        if (v && fy_node_get_type(v) == FYNT_MAPPING) {
            if (fy_node_mapping_item_count(v) != 1 ||
                !(n = fy_node_mapping_lookup_by_string(v, "num_versions", FY_NT)))
                return werr(w, "expected {num_versions: N}");
            key_push(w, "num_versions", 0);
        }
        int64_t num;
        TERN_TRY(get_int(w, n, 1, MAX_LIST, &num));
        key_pop(w, old);
        c->latest_n = (int)num;
    } else if (strcmp(key, "specific") == 0) {
        c->policy = POLICY_SPECIFIC;
        struct fy_node *n = v;
        size_t old = strlen(w->key);
        if (v && fy_node_get_type(v) == FYNT_MAPPING) {
            if (fy_node_mapping_item_count(v) != 1 ||
                !(n = fy_node_mapping_lookup_by_string(v, "versions", FY_NT)))
                return werr(w, "expected {versions: [...]}");
            key_push(w, "versions", 0);
        }
        TERN_TRY(get_versions(w, n, c));
        key_pop(w, old);
    } else if (strcmp(key, "all") == 0) {
        c->policy = POLICY_ALL;
        if (v && fy_node_get_type(v) == FYNT_MAPPING && fy_node_mapping_item_count(v) != 0)
            return werr(w, "expected {} (all takes no settings)");
        if (v && fy_node_get_type(v) == FYNT_SEQUENCE) return werr(w, "expected {}");
    } else {
        return werr(w, "unknown policy (expected latest, specific or all)");
    }
    return NULL;
}

static tern_status *get_policy(walk *w, struct fy_node *n, store_config *c)
{
    if (n && fy_node_get_type(n) == FYNT_SCALAR && !fy_node_is_alias(n)) {
        const char *s = fy_node_get_scalar0(n);
        if (s && strcmp(s, "all") == 0) {
            c->policy = POLICY_ALL;
            return NULL;
        }
        if (s && strcmp(s, "latest") == 0) {
            c->policy = POLICY_LATEST;
            c->latest_n = 1;
            return NULL;
        }
        return werr(w, "expected latest, specific or all, got '%.64s'", s ? s : "");
    }
    if (!n || fy_node_get_type(n) != FYNT_MAPPING || fy_node_mapping_item_count(n) != 1)
        return werr(w, "expected one of {latest: N}, {specific: [...]} or all");
    return each_pair(w, n, policy_pair, c);
}

static tern_status *slo_pair(walk *w, const char *key, struct fy_node *v, void *arg)
{
    store_config *c = arg;
    int64_t num;
    if (strcmp(key, "latency_p99_ms") == 0) {
        TERN_TRY(get_real(w, v, 1e-3, 1e7, &c->slo_latency_p99_ms));
    } else if (strcmp(key, "availability") == 0) {
        TERN_TRY(get_real(w, v, 1e-9, 1.0, &c->slo_availability));
    } else if (strcmp(key, "window_s") == 0) {
        TERN_TRY(get_int(w, v, 1, 86400, &num));
        c->slo_window_s = (int)num;
    } else {
        return werr(w, "unknown key (expected latency_p99_ms, availability or window_s)");
    }
    return NULL;
}

static tern_status *get_preferred(walk *w, struct fy_node *n, store_config *c)
{
    TERN_TRY(expect(w, n, FYNT_SEQUENCE, "a list of batch sizes"));
    int len = fy_node_sequence_item_count(n);
    if (len > STORE_MAX_PREFERRED)
        return werr(w, "%d sizes is over the limit of %d", len, STORE_MAX_PREFERRED);
    void *it = NULL;
    struct fy_node *item;
    c->n_preferred = 0;
    for (int i = 0; (item = fy_node_sequence_iterate(n, &it)); i++) {
        size_t old = key_push(w, NULL, i);
        TERN_TRY(get_int(w, item, 1, INT32_MAX, &c->preferred_batch_sizes[i]));
        key_pop(w, old);
        c->n_preferred = i + 1;
    }
    return NULL;
}

typedef struct top_ctx {
    store_config *c;
    const char *model;
} top_ctx;

static tern_status *top_pair(walk *w, const char *key, struct fy_node *v, void *arg)
{
    top_ctx *t = arg;
    store_config *c = t->c;
    int64_t num;
    if (strcmp(key, "name") == 0) {
        const char *s;
        TERN_TRY(get_string(w, v, &s));
        if (strcmp(s, t->model) != 0)
            return werr(w, "'%.64s' does not match the folder name '%s'", s, t->model);
    } else if (strcmp(key, "platform") == 0) {
        const char *s;
        TERN_TRY(get_string(w, v, &s));
        if (strcmp(s, "onnx") != 0 && strcmp(s, "onnxruntime_onnx") != 0 &&
            strcmp(s, "tern_onnx") != 0)
            return werr(w, "unsupported platform '%.64s' (expected onnx)", s);
    } else if (strcmp(key, "max_batch_size") == 0) {
        TERN_TRY(get_int(w, v, 0, INT32_MAX, &c->max_batch_size));
    } else if (strcmp(key, "version_policy") == 0) {
        TERN_TRY(get_policy(w, v, c));
    } else if (strcmp(key, "instances") == 0) {
        TERN_TRY(get_int(w, v, 1, MAX_INSTANCES, &num));
        c->instances = (int)num;
    } else if (strcmp(key, "threads") == 0) {
        TERN_TRY(get_int(w, v, 1, MAX_THREADS, &num));
        c->threads = (int)num;
    } else if (strcmp(key, "inputs") == 0) {
        TERN_TRY(get_decls(w, v, false, &c->inputs, &c->n_inputs));
    } else if (strcmp(key, "outputs") == 0) {
        TERN_TRY(get_decls(w, v, false, &c->outputs, &c->n_outputs));
    } else if (strcmp(key, "warmup") == 0) {
        TERN_TRY(get_decls(w, v, true, &c->warmup, &c->n_warmup));
        c->has_warmup = true;
    } else if (strcmp(key, "preferred_batch_sizes") == 0) {
        TERN_TRY(get_preferred(w, v, c));
    } else if (strcmp(key, "max_queue_delay_us") == 0) {
        TERN_TRY(get_int(w, v, 0, INT64_C(60000000), &c->max_queue_delay_us));
    } else if (strcmp(key, "max_queue_size") == 0) {
        TERN_TRY(get_int(w, v, 0, INT32_MAX, &c->max_queue_size));
    } else if (strcmp(key, "default_timeout_us") == 0) {
        TERN_TRY(get_int(w, v, 0, INT64_C(3600000000), &c->default_timeout_us));
    } else if (strcmp(key, "priority_levels") == 0) {
        TERN_TRY(get_int(w, v, 1, 16, &num));
        c->priority_levels = (int)num;
    } else if (strcmp(key, "default_priority_level") == 0) {
        TERN_TRY(get_int(w, v, 1, 16, &num));
        c->default_priority_level = (int)num;
    } else if (strcmp(key, "slo") == 0) {
        TERN_TRY(expect(w, v, FYNT_MAPPING, "{latency_p99_ms, availability, window_s}"));
        TERN_TRY(each_pair(w, v, slo_pair, c));
    } else {
        return werr(w, "unknown key (expected platform, max_batch_size, version_policy, "
                       "instances, threads, inputs, outputs, warmup, preferred_batch_sizes, "
                       "max_queue_delay_us, max_queue_size, default_timeout_us, priority_levels, "
                       "default_priority_level or slo)");
    }
    return NULL;
}

tern_status *store_config_default(int default_threads, store_config **out)
{
    store_config *c = calloc(1, sizeof *c);
    if (!c) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    c->policy = POLICY_LATEST;
    c->latest_n = 1;
    c->instances = 1;
    c->threads = default_threads > 0 ? default_threads : 1;
    c->priority_levels = 1;
    c->slo_window_s = 60;
    *out = c;
    return NULL;
}

/* Parses the file; *doc is NULL for an empty file. */
static tern_status *parse_file(const char *path, struct fy_document **doc)
{
    *doc = NULL;
    struct fy_diag_cfg dc;
    fy_diag_cfg_default(&dc);
    dc.fp = NULL;
    dc.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dc);
    if (!diag) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg pc = {.flags = FYPCF_QUIET, .diag = diag};
    *doc = fy_document_build_from_file(&pc, path);
    tern_status *st = NULL;
    void *it = NULL;
    struct fy_diag_error *e = fy_diag_errors_iterate(diag, &it);
    if (e) {
        st = tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: line %d, column %d: %s", path, e->line,
                        e->column, e->msg ? e->msg : "invalid YAML");
        if (*doc) fy_document_destroy(*doc);
        *doc = NULL;
    }
    fy_diag_destroy(diag);
    return st;
}

/* What can only be checked once every key is read. */
static tern_status *check_scheduling(const char *path, store_config *c)
{
    for (int i = 0; i < c->n_preferred; i++)
        if (c->preferred_batch_sizes[i] > c->max_batch_size)
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "%s: preferred_batch_sizes[%d]: %lld is over max_batch_size %lld",
                              path, i, (long long)c->preferred_batch_sizes[i],
                              (long long)c->max_batch_size);
    if (c->default_priority_level == 0) c->default_priority_level = c->priority_levels;
    if (c->default_priority_level > c->priority_levels)
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "%s: default_priority_level: %d is over priority_levels %d", path,
                          c->default_priority_level, c->priority_levels);
    return NULL;
}

tern_status *store_config_read(const char *path, const char *model, int default_threads,
                               store_config **out)
{
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) return store_config_default(default_threads, out);
        return tern_error(TERN_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) return tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: not a file", path);
    if (sb.st_size > CONFIG_MAX_BYTES)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: %lld bytes is over the limit of %d", path,
                          (long long)sb.st_size, CONFIG_MAX_BYTES);
    store_config *c = NULL;
    TERN_TRY(store_config_default(default_threads, &c));
    struct fy_document *doc;
    tern_status *st = parse_file(path, &doc);
    struct fy_node *root = doc ? fy_document_root(doc) : NULL;
    walk w = {.file = path};
    top_ctx t = {.c = c, .model = model};
    if (!st && root) {
        /* A file of only comments, or "~", is an empty configuration. */
        const char *s;
        bool null_scalar = fy_node_get_type(root) == FYNT_SCALAR &&
                           (s = fy_node_get_scalar0(root)) &&
                           (!*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0);
        if (!null_scalar) {
            if (fy_node_get_type(root) != FYNT_MAPPING)
                st = werr(&w, "expected a mapping of settings, got %s", node_kind(root));
            else
                st = each_pair(&w, root, top_pair, &t);
        }
    }
    if (doc) fy_document_destroy(doc);
    if (!st) st = check_scheduling(path, c);
    if (st) {
        store_config_free(c);
        return st;
    }
    *out = c;
    return NULL;
}

static tern_status *dup_decls(const store_tensor_decl *src, int n, store_tensor_decl **out)
{
    *out = NULL;
    if (!src) return NULL;
    store_tensor_decl *d = calloc((size_t)n + 1, sizeof *d);
    if (!d) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    *out = d;
    for (int i = 0; i < n; i++) {
        d[i] = src[i];
        if (!(d[i].name = strdup(src[i].name)))
            return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }
    return NULL;
}

store_config *store_config_dup(const store_config *c)
{
    store_config *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    *d = *c;
    d->specific = NULL;
    d->inputs = d->outputs = d->warmup = NULL;
    tern_status *st = NULL;
    if (c->n_specific) {
        d->specific = malloc((size_t)c->n_specific * sizeof *d->specific);
        if (!d->specific)
            st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        else
            memcpy(d->specific, c->specific, (size_t)c->n_specific * sizeof *d->specific);
    }
    if (!st) st = dup_decls(c->inputs, c->n_inputs, &d->inputs);
    if (!st) st = dup_decls(c->outputs, c->n_outputs, &d->outputs);
    if (!st) st = dup_decls(c->warmup, c->n_warmup, &d->warmup);
    if (st) {
        tern_status_free(st);
        store_config_free(d);
        return NULL;
    }
    return d;
}

static void free_decls(store_tensor_decl *d, int n)
{
    if (!d) return;
    for (int i = 0; i < n; i++) free(d[i].name);
    free(d);
}

void store_config_free(store_config *c)
{
    if (!c) return;
    free(c->specific);
    free_decls(c->inputs, c->n_inputs);
    free_decls(c->outputs, c->n_outputs);
    free_decls(c->warmup, c->n_warmup);
    free(c);
}

/* ---- checks against the model ----------------------------------------- */

static const tern_io_info *find_io(const tern_session *s, bool input, const char *name)
{
    int n = input ? tern_session_input_count(s) : tern_session_output_count(s);
    for (int i = 0; i < n; i++) {
        const tern_io_info *io = input ? tern_session_input(s, i) : tern_session_output(s, i);
        if (strcmp(io->name, name) == 0) return io;
    }
    return NULL;
}

static char *dims_str(int rank, const int64_t *dims, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < rank && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
    return buf;
}

/* A declared dimension of -1 matches anything; a fixed one matches the
 * same size or a dynamic model dimension. With max_batch_size > 0 the
 * declaration may leave out the batch dimension, as Triton's dims do. */
static bool shape_fits(const store_tensor_decl *d, const tern_io_info *io, int64_t max_batch)
{
    if (d->rank < 0 || io->rank < 0) return true;
    int skip = 0;
    if (d->rank == io->rank - 1 && max_batch > 0)
        skip = 1;
    else if (d->rank != io->rank)
        return false;
    for (int i = 0; i < d->rank; i++) {
        int64_t m = io->dims[i + skip];
        if (d->dims[i] >= 0 && m >= 0 && d->dims[i] != m) return false;
    }
    return true;
}

static tern_status *check_decls(const store_config *c, const char *path, const tern_session *sess,
                                bool input)
{
    const store_tensor_decl *decls = input ? c->inputs : c->outputs;
    int n = input ? c->n_inputs : c->n_outputs;
    const char *key = input ? "inputs" : "outputs";
    for (int i = 0; i < n; i++) {
        const store_tensor_decl *d = &decls[i];
        const tern_io_info *io = find_io(sess, input, d->name);
        if (!io)
            return tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: %s[%d]: the model has no %s '%s'",
                              path, key, i, input ? "input" : "output", d->name);
        if (d->dtype && d->dtype != io->dtype)
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "%s: %s[%d].datatype: '%s' is %s in the model, not %s", path, key, i,
                              d->name,
                              store_dtype_kserve(io->dtype) ? store_dtype_kserve(io->dtype)
                                                            : tern_dtype_name(io->dtype),
                              store_dtype_kserve(d->dtype));
        if (!shape_fits(d, io, c->max_batch_size)) {
            char a[160], b[160];
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "%s: %s[%d].shape: %s does not fit the model's shape %s of '%s'",
                              path, key, i, dims_str(d->rank, d->dims, a, sizeof a),
                              dims_str(io->rank, io->dims, b, sizeof b), d->name);
        }
    }
    return NULL;
}

tern_status *store_config_check(const store_config *c, const char *path, const tern_session *sess)
{
    TERN_TRY(check_decls(c, path, sess, true));
    TERN_TRY(check_decls(c, path, sess, false));
    for (int i = 0; i < c->n_warmup; i++) {
        const store_tensor_decl *d = &c->warmup[i];
        const tern_io_info *io = find_io(sess, true, d->name);
        if (!io)
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "%s: warmup[%d]: the model has no input '%s'", path, i, d->name);
        if (io->rank >= 0 && d->rank != io->rank)
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "%s: warmup[%d].shape: rank %d, but input '%s' has rank %d", path, i,
                              d->rank, d->name, io->rank);
        for (int k = 0; k < d->rank && io->rank >= 0; k++)
            if (io->dims[k] >= 0 && io->dims[k] != d->dims[k])
                return tern_error(TERN_ERR_INVALID_ARGUMENT,
                                  "%s: warmup[%d].shape[%d]: %lld, but input '%s' has %lld there",
                                  path, i, k, (long long)d->dims[k], d->name,
                                  (long long)io->dims[k]);
    }
    return NULL;
}

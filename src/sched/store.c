/*
 * The model store: a table of models, each with a list of version records,
 * and the hand-over of loaded versions between the control path (load,
 * unload, poll) and the request path (acquire, run, release).
 *
 * Objects and who owns them
 *   model_version  one loaded version: N engine sessions (the instances), its
 *                  parsed config and its statistics. Reference counted: the
 *                  store holds one reference while the version serves, every
 *                  request one more. The last store_release frees it; so an
 *                  old version outlives a swap exactly as long as a request
 *                  still uses it, and a request never sees freed sessions.
 *   vrec           what the index reports about one version number: LOADING,
 *                  READY (with `v` the serving version) or UNAVAILABLE (with
 *                  the reason), and the identity of the last file that failed
 *                  to load, so that polling does not retry (and re-log) the
 *                  same broken file every few seconds.
 *   model_entry    a model folder the store has looked at: its records and a
 *                  model-level problem (a broken config.yaml, no versions).
 *
 * Locks
 *   ctl  serialises every control operation (start, load, unload, poll,
 *        free). Loading a version (reading the file, building sessions,
 *        warm-up) happens under ctl only, never under `tab`, so requests keep
 *        flowing while a new version loads beside the old one.
 *   tab  a writer-preferring rwlock over the table and the records. Requests
 *        take it shared for a lookup and a reference increment; the control
 *        path takes it exclusive only to switch pointers. The switch of a
 *        whole model (new versions in, old ones out) happens in one exclusive
 *        section, so it is atomic for requests.
 *   live counts versions not yet freed; store_free waits on it for requests
 *        that still hold versions.
 *   Versions are released (and possibly freed) only after `tab` is dropped.
 *
 * A sync of one model (the heart of load and poll): read config.yaml, list
 * the version folders, select those the policy wants, load the ones that are
 * missing or whose model.onnx or config.yaml changed (mtime, size, inode),
 * then switch: loaded versions replace their predecessors, versions the
 * policy no longer wants are unloaded. If a wanted version is not serving
 * after the switch (it failed), versions that would have been dropped stay
 * in service as long as their folder exists: a broken new version never takes
 * away the one that works.
 *
 * Statistics: version_run does not touch version_stats; the caller, which
 * sees the whole request, keeps them (version_run_timed reports the time
 * waited for an instance and the engine time for that). The store does
 * publish tern_model_loaded and the load time to the metrics registry.
 */
#include "sched/store.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/log.h"
#include "monitor/metrics.h"
#include "sched/store_config.h"

#define MODEL_FILE "model.onnx"
#define CONFIG_FILE "config.yaml"
/* Warm-up tensors larger than this are not built (a typo in a shape must not
 * allocate the machine away). */
#define WARMUP_MAX_ELEMENTS (INT64_C(1) << 26)

/* ---- identities of files on disk ---------------------------------------- */

typedef struct file_id {
    bool exists;
    int64_t mtime_ns, size;
    uint64_t ino;
} file_id;

static file_id file_id_of(const char *path)
{
    file_id f = {0};
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        f.exists = true;
        f.mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        f.size = (int64_t)sb.st_size;
        f.ino = (uint64_t)sb.st_ino;
    }
    return f;
}

static bool file_id_eq(file_id a, file_id b)
{
    return a.exists == b.exists && a.mtime_ns == b.mtime_ns && a.size == b.size && a.ino == b.ino;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- types ------------------------------------------------------------- */

struct model_version {
    model_store *store;
    atomic_int refs;
    char *name;
    int64_t number;
    store_config *cfg;
    file_id file, cfg_file; /* what it was loaded from */
    int n_inst, n_free;
    tern_session **sess;
    bool *busy;
    pthread_mutex_t mu; /* guards busy and n_free */
    pthread_cond_t cv;  /* an instance became free */
    version_stats stats;
    double load_seconds;
};

typedef enum vstate { VS_LOADING, VS_READY, VS_UNAVAILABLE } vstate;

typedef struct vrec {
    int64_t number;
    vstate state;
    model_version *v; /* serving (holds a store reference) or NULL */
    bool unloaded;    /* taken out of service on purpose, not failed */
    bool failed;      /* the last attempt failed on failed_file + failed_cfg */
    file_id failed_file, failed_cfg;
    char reason[512];
} vrec;

typedef struct model_entry {
    char *name;
    vrec *recs; /* ascending by number */
    int n_recs, cap_recs;
    char reason[512]; /* model-level problem, "" if none */
    bool cfg_failed;  /* config.yaml with identity cfg_failed_id is broken */
    file_id cfg_failed_id;
    bool api_unloaded; /* unloaded through the API: polling leaves it alone */
} model_entry;

struct model_store {
    char *repo;
    store_mode mode;
    char **startup;
    int n_startup;
    int poll_secs, default_threads;

    pthread_mutex_t ctl;
    pthread_rwlock_t tab;
    model_entry **models; /* ascending by name */
    int n_models, cap_models;
    atomic_bool started;
    bool start_called;

    pthread_mutex_t live_mu;
    pthread_cond_t live_cv;
    long live;

    pthread_mutex_t poll_mu;
    pthread_cond_t poll_cv;
    bool stopping, poller_on;
    pthread_t poller;
};

/* A list of versions to release once `tab` is dropped. */
typedef struct vlist {
    model_version **v;
    int n, cap;
} vlist;

static void vlist_push(vlist *l, model_version *v)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 8;
        model_version **p = realloc(l->v, (size_t)cap * sizeof *p);
        if (!p) {
            /* Cannot defer: the caller's lock order still allows freeing a
             * version here (release never takes `tab`). */
            store_release(v);
            return;
        }
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

static void vlist_release(vlist *l)
{
    for (int i = 0; i < l->n; i++) store_release(l->v[i]);
    free(l->v);
    *l = (vlist){0};
}

/* ---- names ------------------------------------------------------------- */

bool store_valid_name(const char *name)
{
    if (!name || !*name || name[0] == '.') return false;
    size_t n = strlen(name);
    if (n > 255 || strstr(name, "..")) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c < 0x20 || c == 0x7f) return false;
    }
    return true;
}

/* A version folder name: a positive decimal integer without leading zeros. */
static bool parse_version_dir(const char *s, int64_t *out)
{
    if (!*s || *s == '0') return false;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        if (v > (INT64_MAX - (*s - '0')) / 10) return false;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return true;
}

/* ---- version objects ---------------------------------------------------- */

static void live_add(model_store *s, int d)
{
    pthread_mutex_lock(&s->live_mu);
    s->live += d;
    if (s->live == 0) pthread_cond_broadcast(&s->live_cv);
    pthread_mutex_unlock(&s->live_mu);
}

static void version_destroy(model_version *v)
{
    model_store *s = v->store;
    for (int i = 0; i < v->n_inst; i++) tern_session_free(v->sess[i]);
    free(v->sess);
    free(v->busy);
    store_config_free(v->cfg);
    free(v->name);
    pthread_mutex_destroy(&v->mu);
    pthread_cond_destroy(&v->cv);
    free(v);
    live_add(s, -1);
}

void store_release(model_version *v)
{
    if (v && atomic_fetch_sub(&v->refs, 1) == 1) version_destroy(v);
}

const char *version_model_name(const model_version *v)
{
    return v->name;
}
int64_t version_number(const model_version *v)
{
    return v->number;
}
int64_t version_max_batch_size(const model_version *v)
{
    return v->cfg->max_batch_size;
}
version_stats *version_stats_of(model_version *v)
{
    return &v->stats;
}
int version_input_count(const model_version *v)
{
    return tern_session_input_count(v->sess[0]);
}
int version_output_count(const model_version *v)
{
    return tern_session_output_count(v->sess[0]);
}
const tern_io_info *version_input(const model_version *v, int i)
{
    return tern_session_input(v->sess[0], i);
}
const tern_io_info *version_output(const model_version *v, int i)
{
    return tern_session_output(v->sess[0], i);
}
double version_load_seconds(const model_version *v)
{
    return v->load_seconds;
}

tern_status *version_run_timed(model_version *v, int n_inputs, const char *const *names,
                               const tern_tensor *const *inputs, tern_tensor **outputs,
                               int64_t *wait_ns, int64_t *run_ns)
{
    int64_t t0 = now_ns();
    pthread_mutex_lock(&v->mu);
    while (v->n_free == 0) pthread_cond_wait(&v->cv, &v->mu);
    int i = 0;
    while (v->busy[i]) i++;
    v->busy[i] = true;
    v->n_free--;
    pthread_mutex_unlock(&v->mu);
    int64_t t1 = now_ns();
    tern_status *st = tern_session_run(v->sess[i], n_inputs, names, inputs, outputs);
    int64_t t2 = now_ns();
    pthread_mutex_lock(&v->mu);
    v->busy[i] = false;
    v->n_free++;
    pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
    if (wait_ns) *wait_ns = t1 - t0;
    if (run_ns) *run_ns = t2 - t1;
    return st;
}

tern_status *version_run(model_version *v, int n_inputs, const char *const *names,
                         const tern_tensor *const *inputs, tern_tensor **outputs)
{
    return version_run_timed(v, n_inputs, names, inputs, outputs, NULL, NULL);
}

/* Runs zeros of the warm-up shapes (or of the declared shapes, dynamic
 * dimensions 1) through one session. */
static tern_status *warm_session(const store_config *cfg, tern_session *sess)
{
    int n = tern_session_input_count(sess);
    const char **names = calloc((size_t)n + 1, sizeof *names);
    tern_tensor **ins = calloc((size_t)n + 1, sizeof *ins);
    int n_out = tern_session_output_count(sess);
    tern_tensor **outs = calloc((size_t)n_out + 1, sizeof *outs);
    tern_status *st = NULL;
    if (!names || !ins || !outs) st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < n && !st; i++) {
        const tern_io_info *io = tern_session_input(sess, i);
        names[i] = io->name;
        int rank = io->rank < 0 ? 1 : io->rank;
        int64_t dims[TERN_MAX_RANK];
        for (int k = 0; k < rank; k++) dims[k] = io->rank < 0 || io->dims[k] < 0 ? 1 : io->dims[k];
        for (int w = 0; w < cfg->n_warmup; w++) {
            if (strcmp(cfg->warmup[w].name, io->name) != 0) continue;
            rank = cfg->warmup[w].rank;
            memcpy(dims, cfg->warmup[w].dims, sizeof dims);
        }
        int64_t numel = 1;
        for (int k = 0; k < rank; k++) {
            if (dims[k] > 0 && numel > WARMUP_MAX_ELEMENTS / dims[k])
                numel = WARMUP_MAX_ELEMENTS + 1;
            else
                numel *= dims[k];
        }
        if (numel > WARMUP_MAX_ELEMENTS)
            st = tern_error(TERN_ERR_INVALID_ARGUMENT,
                            "warm-up input '%s' would have over %lld elements", io->name,
                            (long long)WARMUP_MAX_ELEMENTS);
        else if (tern_dtype_size(io->dtype) == 0 && io->dtype != TERN_STRING)
            st = tern_error(TERN_ERR_UNSUPPORTED, "warm-up input '%s' has type %s", io->name,
                            tern_dtype_name(io->dtype));
        else
            st = tern_tensor_create(io->dtype, rank, dims, &ins[i]);
    }
    if (!st) st = tern_session_run(sess, n, names, (const tern_tensor *const *)ins, outs);
    for (int j = 0; outs && j < n_out; j++) tern_tensor_free(outs[j]);
    for (int i = 0; ins && i < n; i++) tern_tensor_free(ins[i]);
    free(names);
    free(ins);
    free(outs);
    return st;
}

/* Loads version `number` of `name` from `path` with `cfg` (copied): every
 * instance is created, checked against the config and warmed. */
static tern_status *version_load(model_store *s, const char *name, int64_t number, const char *path,
                                 const char *cfg_path, const store_config *cfg, file_id file,
                                 file_id cfg_file, model_version **out)
{
    *out = NULL;
    double t0 = now_s();
    if (!file.exists) return tern_error(TERN_ERR_NOT_FOUND, "%s: no such file", path);
    model_version *v = calloc(1, sizeof *v);
    if (!v) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    v->store = s;
    atomic_init(&v->refs, 1);
    v->number = number;
    v->file = file;
    v->cfg_file = cfg_file;
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->cv, NULL);
    live_add(s, 1);
    tern_status *st = NULL;
    v->name = strdup(name);
    v->cfg = store_config_dup(cfg);
    v->sess = calloc((size_t)cfg->instances, sizeof *v->sess);
    v->busy = calloc((size_t)cfg->instances, sizeof *v->busy);
    tern_options *opt = tern_options_create();
    if (!v->name || !v->cfg || !v->sess || !v->busy || !opt)
        st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    if (opt) tern_options_set_threads(opt, cfg->threads);
    bool warm = !cfg->has_warmup || cfg->n_warmup > 0;
    for (int i = 0; !st && i < cfg->instances; i++) {
        st = tern_session_create(path, opt, &v->sess[i]);
        if (st) break;
        v->n_inst++;
        if (i == 0) st = store_config_check(cfg, cfg_path, v->sess[0]);
        if (st || !warm) continue;
        tern_status *w = warm_session(cfg, v->sess[i]);
        if (w && cfg->has_warmup) {
            st = tern_error_wrap(w, "warm-up");
        } else if (w) {
            /* No warm-up was asked for: the guessed shapes may simply not
             * suit this model. Serve it anyway. */
            warm = false;
            log_warn("warm-up with default shapes failed; serving without it", LOG_S("model", name),
                     LOG_I("version", number), LOG_S("error", tern_status_message(w)));
            tern_status_free(w);
        }
    }
    tern_options_free(opt);
    v->n_free = v->n_inst;
    v->load_seconds = now_s() - t0;
    if (st) {
        store_release(v);
        return st;
    }
    *out = v;
    return NULL;
}

/* ---- the table ---------------------------------------------------------- */

/* Caller holds tab (any mode). */
static int find_model_idx(const model_store *s, const char *name, bool *found)
{
    int lo = 0, hi = s->n_models;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(s->models[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static model_entry *find_model(const model_store *s, const char *name)
{
    bool found;
    int i = find_model_idx(s, name, &found);
    return found ? s->models[i] : NULL;
}

/* Caller holds tab exclusively. */
static model_entry *get_or_add_model(model_store *s, const char *name)
{
    bool found;
    int i = find_model_idx(s, name, &found);
    if (found) return s->models[i];
    if (s->n_models == s->cap_models) {
        int cap = s->cap_models ? s->cap_models * 2 : 16;
        model_entry **p = realloc(s->models, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        s->models = p;
        s->cap_models = cap;
    }
    model_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->name = strdup(name))) {
        free(e);
        return NULL;
    }
    memmove(s->models + i + 1, s->models + i, (size_t)(s->n_models - i) * sizeof *s->models);
    s->models[i] = e;
    s->n_models++;
    return e;
}

static vrec *find_rec(const model_entry *e, int64_t number)
{
    for (int i = 0; i < e->n_recs; i++)
        if (e->recs[i].number == number) return &e->recs[i];
    return NULL;
}

/* Caller holds tab exclusively. */
static vrec *get_or_add_rec(model_entry *e, int64_t number)
{
    int i = 0;
    while (i < e->n_recs && e->recs[i].number < number) i++;
    if (i < e->n_recs && e->recs[i].number == number) return &e->recs[i];
    if (e->n_recs == e->cap_recs) {
        int cap = e->cap_recs ? e->cap_recs * 2 : 4;
        vrec *p = realloc(e->recs, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        e->recs = p;
        e->cap_recs = cap;
    }
    memmove(e->recs + i + 1, e->recs + i, (size_t)(e->n_recs - i) * sizeof *e->recs);
    e->recs[i] = (vrec){.number = number, .state = VS_UNAVAILABLE};
    e->n_recs++;
    return &e->recs[i];
}

static void del_rec(model_entry *e, int i)
{
    memmove(e->recs + i, e->recs + i + 1, (size_t)(e->n_recs - i - 1) * sizeof *e->recs);
    e->n_recs--;
}

static void entry_free(model_entry *e)
{
    free(e->recs);
    free(e->name);
    free(e);
}

/* Caller holds tab exclusively: takes every serving version out of service
 * (into `rel`). */
static void unserve(model_entry *e, vrec *r, vlist *rel, const char *reason)
{
    if (r->v) {
        metrics_set_loaded(metrics_series_get(e->name, r->number), 0, r->v->load_seconds);
        log_info("model version unloaded", LOG_S("model", e->name), LOG_I("version", r->number),
                 LOG_S("reason", reason));
        vlist_push(rel, r->v);
        r->v = NULL;
    }
    r->state = VS_UNAVAILABLE;
    r->unloaded = true;
    r->failed = false;
    snprintf(r->reason, sizeof r->reason, "%s", reason);
}

/* ---- the repository folder --------------------------------------------- */

typedef struct disk_version {
    int64_t number;
    file_id file;
    bool want;
} disk_version;

static int cmp_disk(const void *a, const void *b)
{
    int64_t x = ((const disk_version *)a)->number, y = ((const disk_version *)b)->number;
    return (x > y) - (x < y);
}

static bool join_path(char *buf, size_t len, const char *a, const char *b, const char *c)
{
    int n = c ? snprintf(buf, len, "%s/%s/%s", a, b, c) : snprintf(buf, len, "%s/%s", a, b);
    return n >= 0 && (size_t)n < len;
}

/* The version folders of a model folder, ascending. */
static tern_status *list_versions(const char *dir, disk_version **out, int *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return tern_error(TERN_ERR_IO, "%s: %s", dir, strerror(errno));
    disk_version *v = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    tern_status *st = NULL;
    while ((de = readdir(d))) {
        int64_t num;
        char path[PATH_MAX];
        struct stat sb;
        if (!parse_version_dir(de->d_name, &num)) continue;
        if (!join_path(path, sizeof path, dir, de->d_name, NULL) || stat(path, &sb) != 0 ||
            !S_ISDIR(sb.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            disk_version *p = realloc(v, (size_t)cap * sizeof *p);
            if (!p) {
                st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
                break;
            }
            v = p;
        }
        if (!join_path(path, sizeof path, dir, de->d_name, MODEL_FILE)) continue;
        v[n++] = (disk_version){.number = num, .file = file_id_of(path)};
    }
    closedir(d);
    if (st) {
        free(v);
        return st;
    }
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_disk);
    *out = v;
    *count = n;
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Model folders of the repository (valid names only), sorted. */
static tern_status *list_models(const char *repo, char ***out, int *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(repo);
    if (!d) return tern_error(TERN_ERR_IO, "%s: %s", repo, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    tern_status *st = NULL;
    while ((de = readdir(d))) {
        char path[PATH_MAX];
        struct stat sb;
        if (!store_valid_name(de->d_name)) continue;
        if (!join_path(path, sizeof path, repo, de->d_name, NULL) || stat(path, &sb) != 0 ||
            !S_ISDIR(sb.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **p = realloc(names, (size_t)cap * sizeof *p);
            if (!p) {
                st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
                break;
            }
            names = p;
        }
        if (!(names[n] = strdup(de->d_name))) {
            st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (st) {
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
        return st;
    }
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    *count = n;
    return NULL;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static bool model_dir_exists(const model_store *s, const char *name)
{
    char path[PATH_MAX];
    struct stat sb;
    return join_path(path, sizeof path, s->repo, name, NULL) && stat(path, &sb) == 0 &&
           S_ISDIR(sb.st_mode);
}

/* Marks the versions the policy selects; returns how many. */
static int apply_policy(const store_config *c, disk_version *d, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        bool want = false;
        switch (c->policy) {
        case POLICY_LATEST: want = i >= n - c->latest_n; break;
        case POLICY_ALL: want = true; break;
        case POLICY_SPECIFIC:
            for (int j = 0; j < c->n_specific; j++) want |= c->specific[j] == d[i].number;
            break;
        }
        d[i].want = want;
        k += want;
    }
    return k;
}

/* ---- sync: load what the folder and the policy say ---------------------- */

typedef struct job {
    int64_t number;
    file_id file;
    model_version *v;
    tern_status *st;
} job;

static void set_model_reason(model_store *s, const char *name, const char *reason)
{
    pthread_rwlock_wrlock(&s->tab);
    model_entry *e = get_or_add_model(s, name);
    if (e) snprintf(e->reason, sizeof e->reason, "%s", reason);
    pthread_rwlock_unlock(&s->tab);
}

/* Caller holds ctl. `forced`: an explicit request, which retries versions
 * that failed before on the same files. */
static tern_status *sync_model(model_store *s, const char *name, bool forced)
{
    char dir[PATH_MAX], cfg_path[PATH_MAX];
    if (!store_valid_name(name))
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "invalid model name '%.300s'", name);
    if (!join_path(dir, sizeof dir, s->repo, name, NULL) ||
        !join_path(cfg_path, sizeof cfg_path, s->repo, name, CONFIG_FILE))
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "model path too long");
    if (!model_dir_exists(s, name))
        return tern_error(TERN_ERR_NOT_FOUND, "model '%s' is not in the repository %s", name,
                          s->repo);

    /* config.yaml */
    file_id cfg_file = file_id_of(cfg_path);
    pthread_rwlock_rdlock(&s->tab);
    model_entry *e0 = find_model(s, name);
    bool known_bad = e0 && e0->cfg_failed && file_id_eq(e0->cfg_failed_id, cfg_file);
    pthread_rwlock_unlock(&s->tab);
    store_config *cfg;
    tern_status *st = store_config_read(cfg_path, name, s->default_threads, &cfg);
    if (st) {
        pthread_rwlock_wrlock(&s->tab);
        model_entry *e = get_or_add_model(s, name);
        if (e) {
            snprintf(e->reason, sizeof e->reason, "%s", tern_status_message(st));
            e->cfg_failed = true;
            e->cfg_failed_id = cfg_file;
        }
        pthread_rwlock_unlock(&s->tab);
        if (!known_bad || forced)
            log_error("model configuration is invalid", LOG_S("model", name),
                      LOG_S("error", tern_status_message(st)));
        return st;
    }

    /* version folders and the policy */
    disk_version *disk;
    int n_disk;
    st = list_versions(dir, &disk, &n_disk);
    if (st) {
        store_config_free(cfg);
        set_model_reason(s, name, tern_status_message(st));
        return st;
    }
    int n_want = apply_policy(cfg, disk, n_disk);

    /* plan: which wanted versions need loading; mark them LOADING */
    job *jobs = calloc((size_t)n_want + 1, sizeof *jobs);
    int n_jobs = 0;
    if (!jobs) {
        free(disk);
        store_config_free(cfg);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }
    pthread_rwlock_wrlock(&s->tab);
    model_entry *e = get_or_add_model(s, name);
    for (int i = 0; e && i < n_disk; i++) {
        if (!disk[i].want) continue;
        vrec *r = find_rec(e, disk[i].number);
        if (r && r->v && file_id_eq(r->v->file, disk[i].file) &&
            file_id_eq(r->v->cfg_file, cfg_file))
            continue; /* serving, unchanged */
        if (r && !forced && r->failed && file_id_eq(r->failed_file, disk[i].file) &&
            file_id_eq(r->failed_cfg, cfg_file))
            continue; /* failed before on these very files */
        if (!r && !(r = get_or_add_rec(e, disk[i].number))) continue;
        if (!r->v) {
            r->state = VS_LOADING;
            r->reason[0] = '\0';
        }
        jobs[n_jobs++] = (job){.number = disk[i].number, .file = disk[i].file};
    }
    pthread_rwlock_unlock(&s->tab);
    if (!e) {
        free(jobs);
        free(disk);
        store_config_free(cfg);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }

    /* load beside the serving versions, no table lock held */
    for (int j = 0; j < n_jobs; j++) {
        char path[PATH_MAX], sub[32];
        snprintf(sub, sizeof sub, "%lld", (long long)jobs[j].number);
        if (!join_path(path, sizeof path, dir, sub, MODEL_FILE))
            jobs[j].st = tern_error(TERN_ERR_INVALID_ARGUMENT, "model path too long");
        else
            jobs[j].st = version_load(s, name, jobs[j].number, path, cfg_path, cfg, jobs[j].file,
                                      cfg_file, &jobs[j].v);
    }

    /* switch, atomically for requests */
    vlist rel = {0};
    pthread_rwlock_wrlock(&s->tab);
    e = find_model(s, name); /* ctl is held: nobody removed it */
    int missing = 0;
    for (int j = 0; j < n_jobs; j++) {
        vrec *r = find_rec(e, jobs[j].number);
        if (!r && !(r = get_or_add_rec(e, jobs[j].number))) {
            if (jobs[j].v) vlist_push(&rel, jobs[j].v);
            if (!jobs[j].st) jobs[j].st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
            continue;
        }
        if (jobs[j].st) {
            r->failed = true;
            r->failed_file = jobs[j].file;
            r->failed_cfg = cfg_file;
            r->unloaded = false;
            r->state = r->v ? VS_READY : VS_UNAVAILABLE;
            snprintf(r->reason, sizeof r->reason, "%s%s", r->v ? "reload failed: " : "",
                     tern_status_message(jobs[j].st));
            continue;
        }
        if (r->v) vlist_push(&rel, r->v);
        r->v = jobs[j].v;
        r->state = VS_READY;
        r->failed = r->unloaded = false;
        r->reason[0] = '\0';
        metrics_set_loaded(metrics_series_get(name, r->number), 1, r->v->load_seconds);
    }
    for (int i = 0; i < n_disk; i++) {
        vrec *r = find_rec(e, disk[i].number);
        if (disk[i].want && !(r && r->v)) missing++;
    }
    /* Versions the policy no longer selects leave, unless a selected one is
     * not serving (then they stay while their folder exists). */
    for (int i = e->n_recs - 1; i >= 0; i--) {
        vrec *r = &e->recs[i];
        disk_version *d = NULL;
        for (int k = 0; k < n_disk; k++)
            if (disk[k].number == r->number) d = &disk[k];
        if (d && d->want) continue;
        if (r->v && (!d || missing == 0))
            unserve(e, r, &rel,
                    d ? "unloaded: not selected by the version policy"
                      : "unloaded: version folder removed");
        if (!r->v && (!d || !r->unloaded)) del_rec(e, i);
    }
    e->api_unloaded = false;
    e->cfg_failed = false;
    const char *no_version = n_want   ? ""
                             : n_disk ? "no version folder matches the version policy"
                                      : "no version folders (expected <model>/<version>/" MODEL_FILE
                                        ")";
    bool reason_changed = strcmp(e->reason, no_version) != 0;
    snprintf(e->reason, sizeof e->reason, "%s", no_version);
    pthread_rwlock_unlock(&s->tab);
    vlist_release(&rel);

    /* report */
    tern_status *first = NULL;
    int n_failed = 0;
    for (int j = 0; j < n_jobs; j++) {
        if (jobs[j].st) {
            log_error("model version failed to load", LOG_S("model", name),
                      LOG_I("version", jobs[j].number),
                      LOG_S("error", tern_status_message(jobs[j].st)));
            if (!first)
                first = tern_error_wrap(jobs[j].st, "model '%s' version %lld", name,
                                        (long long)jobs[j].number);
            else
                tern_status_free(jobs[j].st);
            n_failed++;
        } else {
            log_info("model version loaded", LOG_S("model", name), LOG_I("version", jobs[j].number),
                     LOG_I("load_ms", (int64_t)(jobs[j].v->load_seconds * 1000)),
                     LOG_I("instances", cfg->instances));
        }
    }
    if (first && n_failed > 1) {
        char msg[sizeof first->msg];
        snprintf(msg, sizeof msg, "%s (and %d more versions failed)", first->msg, n_failed - 1);
        memcpy(first->msg, msg, sizeof msg);
    }
    if (!first && n_want == 0) {
        first = tern_error(TERN_ERR_NOT_FOUND, "model '%s': %s", name, no_version);
        /* polling finds the same empty folder again and again: say it once */
        if (forced || reason_changed)
            log_warn("model has no version to load", LOG_S("model", name),
                     LOG_S("reason", no_version));
    }
    free(jobs);
    free(disk);
    store_config_free(cfg);
    return first;
}

/* Takes every version of a model out of service; `drop` also forgets the
 * model (its folder is gone). Caller holds ctl. */
static void unload_model(model_store *s, const char *name, bool drop, const char *reason)
{
    vlist rel = {0};
    pthread_rwlock_wrlock(&s->tab);
    bool found;
    int idx = find_model_idx(s, name, &found);
    if (found) {
        model_entry *e = s->models[idx];
        for (int i = 0; i < e->n_recs; i++) unserve(e, &e->recs[i], &rel, reason);
        if (drop) {
            memmove(s->models + idx, s->models + idx + 1,
                    (size_t)(s->n_models - idx - 1) * sizeof *s->models);
            s->n_models--;
            entry_free(e);
        } else {
            e->api_unloaded = true;
        }
    }
    pthread_rwlock_unlock(&s->tab);
    vlist_release(&rel);
}

/* ---- public: lifecycle -------------------------------------------------- */

tern_status *store_create(const store_options *opt, model_store **out)
{
    *out = NULL;
    if (!opt || !opt->repository || !*opt->repository)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "model repository: no folder given");
    struct stat sb;
    if (stat(opt->repository, &sb) != 0)
        return tern_error(TERN_ERR_NOT_FOUND, "model repository %s: %s", opt->repository,
                          strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "model repository %s: not a folder",
                          opt->repository);
    if (opt->mode != STORE_NONE && opt->mode != STORE_EXPLICIT && opt->mode != STORE_POLL)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "model control mode: unknown value %d",
                          (int)opt->mode);
    if (opt->mode == STORE_POLL && opt->poll_secs <= 0)
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "repository poll seconds: must be positive, not %d", opt->poll_secs);
    if (opt->n_startup_models < 0 || (opt->n_startup_models > 0 && !opt->startup_models))
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "startup models: bad list");
    model_store *s = calloc(1, sizeof *s);
    if (!s) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    s->mode = opt->mode;
    s->poll_secs = opt->poll_secs;
    s->default_threads = opt->default_threads > 0 ? opt->default_threads : 1;
    s->repo = strdup(opt->repository);
    size_t rl = s->repo ? strlen(s->repo) : 0;
    while (rl > 1 && s->repo[rl - 1] == '/') s->repo[--rl] = '\0';
    s->startup = calloc((size_t)opt->n_startup_models + 1, sizeof *s->startup);
    bool oom = !s->repo || !s->startup;
    for (int i = 0; !oom && i < opt->n_startup_models; i++) {
        if (!(s->startup[i] = strdup(opt->startup_models[i] ? opt->startup_models[i] : "")))
            oom = true;
        else
            s->n_startup++;
    }
    pthread_mutex_init(&s->ctl, NULL);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->tab, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&s->live_mu, NULL);
    pthread_cond_init(&s->live_cv, NULL);
    pthread_mutex_init(&s->poll_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->poll_cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&s->started, false);
    if (oom) {
        store_free(s);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }
    *out = s;
    return NULL;
}

static void *poll_main(void *arg)
{
    model_store *s = arg;
    pthread_mutex_lock(&s->poll_mu);
    while (!s->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += s->poll_secs;
        while (!s->stopping && pthread_cond_timedwait(&s->poll_cv, &s->poll_mu, &ts) != ETIMEDOUT) {
        }
        if (s->stopping) break;
        pthread_mutex_unlock(&s->poll_mu);
        store_poll_once(s);
        pthread_mutex_lock(&s->poll_mu);
    }
    pthread_mutex_unlock(&s->poll_mu);
    return NULL;
}

void store_free(model_store *s)
{
    if (!s) return;
    if (s->poller_on) {
        pthread_mutex_lock(&s->poll_mu);
        s->stopping = true;
        pthread_cond_broadcast(&s->poll_cv);
        pthread_mutex_unlock(&s->poll_mu);
        pthread_join(s->poller, NULL);
    }
    pthread_mutex_lock(&s->ctl); /* waits for a load in progress */
    vlist rel = {0};
    pthread_rwlock_wrlock(&s->tab);
    for (int m = 0; m < s->n_models; m++) {
        model_entry *e = s->models[m];
        for (int i = 0; i < e->n_recs; i++) unserve(e, &e->recs[i], &rel, "server stopping");
        entry_free(e);
    }
    s->n_models = 0;
    pthread_rwlock_unlock(&s->tab);
    pthread_mutex_unlock(&s->ctl);
    vlist_release(&rel);
    /* Requests still holding versions finish first. */
    pthread_mutex_lock(&s->live_mu);
    while (s->live > 0) pthread_cond_wait(&s->live_cv, &s->live_mu);
    pthread_mutex_unlock(&s->live_mu);

    free(s->models);
    free_names(s->startup, s->n_startup);
    free(s->repo);
    pthread_mutex_destroy(&s->ctl);
    pthread_rwlock_destroy(&s->tab);
    pthread_mutex_destroy(&s->live_mu);
    pthread_cond_destroy(&s->live_cv);
    pthread_mutex_destroy(&s->poll_mu);
    pthread_cond_destroy(&s->poll_cv);
    free(s);
}

static void sync_quietly(model_store *s, const char *name, bool forced)
{
    tern_status *st = sync_model(s, name, forced);
    tern_status_free(st); /* logged and recorded by sync_model */
}

tern_status *store_start(model_store *s)
{
    pthread_mutex_lock(&s->ctl);
    if (s->start_called) {
        pthread_mutex_unlock(&s->ctl);
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "model store: already started");
    }
    s->start_called = true;
    char **names = NULL;
    int n = 0;
    tern_status *st = list_models(s->repo, &names, &n);
    if (st) {
        pthread_mutex_unlock(&s->ctl);
        return st;
    }
    bool all = s->mode != STORE_EXPLICIT;
    for (int i = 0; i < s->n_startup && !all; i++) all = strcmp(s->startup[i], "*") == 0;
    if (all) {
        for (int i = 0; i < n; i++) sync_quietly(s, names[i], true);
    } else {
        for (int i = 0; i < s->n_startup; i++) {
            if (!store_valid_name(s->startup[i])) {
                log_error("start-up model has an invalid name", LOG_S("model", s->startup[i]));
                continue;
            }
            tern_status *e = sync_model(s, s->startup[i], true);
            if (e && tern_status_code(e) == TERN_ERR_NOT_FOUND &&
                !model_dir_exists(s, s->startup[i]))
                log_error("start-up model is not in the repository", LOG_S("model", s->startup[i]),
                          LOG_S("repository", s->repo));
            tern_status_free(e);
        }
    }
    free_names(names, n);
    pthread_mutex_unlock(&s->ctl);
    atomic_store(&s->started, true);
    if (s->mode == STORE_POLL) {
        if (pthread_create(&s->poller, NULL, poll_main, s) != 0)
            return tern_error(TERN_ERR_RUNTIME, "model store: cannot start the poll thread");
        s->poller_on = true;
    }
    return NULL;
}

bool store_started(model_store *s)
{
    return atomic_load(&s->started);
}

long store_live_versions(model_store *s)
{
    pthread_mutex_lock(&s->live_mu);
    long n = s->live;
    pthread_mutex_unlock(&s->live_mu);
    return n;
}

void store_poll_once(model_store *s)
{
    if (s->mode != STORE_POLL) return;
    pthread_mutex_lock(&s->ctl);
    char **names = NULL;
    int n = 0;
    tern_status *st = list_models(s->repo, &names, &n);
    if (st) {
        log_error("cannot read the model repository", LOG_S("error", tern_status_message(st)));
        tern_status_free(st);
        pthread_mutex_unlock(&s->ctl);
        return;
    }
    /* Models whose folder went away. */
    for (;;) {
        char *gone = NULL;
        pthread_rwlock_rdlock(&s->tab);
        for (int m = 0; m < s->n_models && !gone; m++)
            if (!bsearch(&s->models[m]->name, names, (size_t)n, sizeof *names, cmp_str))
                gone = strdup(s->models[m]->name);
        pthread_rwlock_unlock(&s->tab);
        if (!gone) break;
        unload_model(s, gone, true, "unloaded: model folder removed");
        log_info("model removed from the repository", LOG_S("model", gone));
        free(gone);
    }
    for (int i = 0; i < n; i++) {
        pthread_rwlock_rdlock(&s->tab);
        model_entry *e = find_model(s, names[i]);
        bool skip = e && e->api_unloaded;
        pthread_rwlock_unlock(&s->tab);
        if (!skip) sync_quietly(s, names[i], false);
    }
    free_names(names, n);
    pthread_mutex_unlock(&s->ctl);
}

/* ---- public: control ---------------------------------------------------- */

tern_status *store_load(model_store *s, const char *model)
{
    if (s->mode == STORE_NONE)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "model control is disabled (mode none)");
    if (!store_valid_name(model))
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "invalid model name '%.300s'",
                          model ? model : "");
    pthread_mutex_lock(&s->ctl);
    tern_status *st = sync_model(s, model, true);
    pthread_mutex_unlock(&s->ctl);
    return st;
}

tern_status *store_unload(model_store *s, const char *model)
{
    if (s->mode == STORE_NONE)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "model control is disabled (mode none)");
    if (!store_valid_name(model))
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "invalid model name '%.300s'",
                          model ? model : "");
    pthread_mutex_lock(&s->ctl);
    pthread_rwlock_rdlock(&s->tab);
    bool known = find_model(s, model) != NULL;
    pthread_rwlock_unlock(&s->tab);
    tern_status *st = NULL;
    if (known) {
        unload_model(s, model, false, "unloaded");
        log_info("model unloaded", LOG_S("model", model));
    } else if (!model_dir_exists(s, model)) {
        st = tern_error(TERN_ERR_NOT_FOUND, "unknown model '%s'", model);
    }
    pthread_mutex_unlock(&s->ctl);
    return st;
}

/* ---- public: requests --------------------------------------------------- */

/* Caller holds tab. NULL and *err when the version is not serving. */
static model_version *pick(model_store *s, const char *model, int64_t version, tern_status **err)
{
    model_entry *e = find_model(s, model);
    if (!e) {
        *err = model_dir_exists(s, model)
                   ? tern_error(TERN_ERR_RUNTIME, "model '%s' is not ready", model)
                   : tern_error(TERN_ERR_NOT_FOUND, "unknown model '%s'", model);
        return NULL;
    }
    if (version <= 0) {
        for (int i = e->n_recs - 1; i >= 0; i--)
            if (e->recs[i].v) return e->recs[i].v;
        *err = tern_error(TERN_ERR_RUNTIME, "model '%s' is not ready", model);
        return NULL;
    }
    vrec *r = find_rec(e, version);
    if (r && r->v) return r->v;
    if (r)
        *err = tern_error(TERN_ERR_RUNTIME, "model '%s' version %lld is not ready", model,
                          (long long)version);
    else
        *err = tern_error(TERN_ERR_NOT_FOUND, "model '%s' has no version %lld", model,
                          (long long)version);
    return NULL;
}

model_version *store_acquire(model_store *s, const char *model, int64_t version, tern_status **err)
{
    tern_status *dummy = NULL;
    if (!err) err = &dummy;
    *err = NULL;
    if (!store_valid_name(model)) {
        *err = tern_error(TERN_ERR_NOT_FOUND, "unknown model '%.300s'", model ? model : "");
        tern_status_free(dummy);
        return NULL;
    }
    pthread_rwlock_rdlock(&s->tab);
    model_version *v = pick(s, model, version, err);
    if (v) atomic_fetch_add(&v->refs, 1);
    pthread_rwlock_unlock(&s->tab);
    tern_status_free(dummy);
    return v;
}

bool store_ready(model_store *s, const char *model, int64_t version)
{
    if (!store_valid_name(model)) return false;
    pthread_rwlock_rdlock(&s->tab);
    model_entry *e = find_model(s, model);
    bool ready = false;
    for (int i = 0; e && i < e->n_recs && !ready; i++)
        ready = e->recs[i].v && (version <= 0 || e->recs[i].number == version);
    pthread_rwlock_unlock(&s->tab);
    return ready;
}

/* Holds every READY version of one model (or of all with model NULL). */
static tern_status *hold_versions(model_store *s, const char *model, vlist *out)
{
    *out = (vlist){0};
    if (model && !store_valid_name(model))
        return tern_error(TERN_ERR_NOT_FOUND, "unknown model '%.300s'", model);
    pthread_rwlock_rdlock(&s->tab);
    model_entry *only = model ? find_model(s, model) : NULL;
    tern_status *st = NULL;
    if (model && !only && !model_dir_exists(s, model))
        st = tern_error(TERN_ERR_NOT_FOUND, "unknown model '%s'", model);
    for (int m = 0; !st && m < s->n_models; m++) {
        model_entry *e = s->models[m];
        if (model && e != only) continue;
        for (int i = 0; i < e->n_recs; i++) {
            if (!e->recs[i].v) continue;
            atomic_fetch_add(&e->recs[i].v->refs, 1);
            vlist_push(out, e->recs[i].v);
        }
    }
    pthread_rwlock_unlock(&s->tab);
    return st;
}

void store_foreach_version(model_store *s, void (*fn)(model_version *v, void *arg), void *arg)
{
    vlist l;
    tern_status *st = hold_versions(s, NULL, &l);
    tern_status_free(st);
    for (int i = 0; i < l.n; i++) fn(l.v[i], arg);
    vlist_release(&l);
}

/* ---- public: JSON documents -------------------------------------------- */

static char *dump(json_t *root)
{
    if (!root) return NULL;
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

static char *version_str(int64_t n, char *buf, size_t len)
{
    snprintf(buf, len, "%lld", (long long)n);
    return buf;
}

static const char *state_name(vstate st)
{
    switch (st) {
    case VS_LOADING: return "LOADING";
    case VS_READY: return "READY";
    case VS_UNAVAILABLE: return "UNAVAILABLE";
    }
    return "UNKNOWN";
}

static json_t *index_item(const char *name, const int64_t *version, const char *state,
                          const char *reason)
{
    json_t *o = json_object();
    char vb[32];
    json_object_set_new(o, "name", json_string(name));
    if (version)
        json_object_set_new(o, "version", json_string(version_str(*version, vb, sizeof vb)));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "reason", json_string(reason));
    return o;
}

char *store_index_json(model_store *s, bool ready_only)
{
    char **names = NULL;
    int n = 0;
    tern_status *st = list_models(s->repo, &names, &n);
    tern_status_free(st); /* an unreadable folder still lists the loaded models */
    json_t *arr = json_array();
    pthread_rwlock_rdlock(&s->tab);
    int i = 0, m = 0;
    while (i < n || m < s->n_models) {
        /* merge the folder listing with the table, both sorted by name */
        int c = i >= n ? 1 : m >= s->n_models ? -1 : strcmp(names[i], s->models[m]->name);
        const model_entry *e = c >= 0 ? s->models[m] : NULL;
        const char *name = e ? e->name : names[i];
        if (c <= 0) i++;
        if (c >= 0) m++;
        bool any = false;
        for (int k = 0; e && k < e->n_recs; k++) {
            const vrec *r = &e->recs[k];
            if (ready_only && !r->v) continue;
            const char *reason = r->reason[0] || !r->v ? r->reason : e->reason;
            json_array_append_new(arr, index_item(name, &r->number, state_name(r->state), reason));
            any = true;
        }
        if (any || ready_only) continue;
        if (e && e->reason[0])
            json_array_append_new(arr, index_item(name, NULL, "UNAVAILABLE", e->reason));
        else
            json_array_append_new(
                arr, index_item(name, NULL, "UNAVAILABLE", e ? "unloaded" : "not loaded"));
    }
    pthread_rwlock_unlock(&s->tab);
    free_names(names, n);
    return dump(arr);
}

static const char *dtype_label(tern_dtype dt)
{
    const char *k = store_dtype_kserve(dt);
    return k ? k : "UNKNOWN";
}

static json_t *shape_json(const tern_io_info *io, int skip)
{
    json_t *a = json_array();
    if (io->rank < 0) {
        json_array_append_new(a, json_integer(-1));
        return a;
    }
    for (int k = skip; k < io->rank; k++)
        json_array_append_new(a, json_integer(io->dims[k] < 0 ? -1 : io->dims[k]));
    return a;
}

static json_t *io_list(const model_version *v, bool input)
{
    json_t *a = json_array();
    int n = input ? version_input_count(v) : version_output_count(v);
    for (int i = 0; i < n; i++) {
        const tern_io_info *io = input ? version_input(v, i) : version_output(v, i);
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(io->name));
        json_object_set_new(o, "datatype", json_string(dtype_label(io->dtype)));
        json_object_set_new(o, "shape", shape_json(io, 0));
        json_array_append_new(a, o);
    }
    return a;
}

char *store_metadata_json(model_store *s, const char *model, int64_t version, tern_status **err)
{
    *err = NULL;
    model_version *v = store_acquire(s, model, version, err);
    if (!v) return NULL;
    json_t *root = json_object();
    json_object_set_new(root, "name", json_string(model));
    json_t *vers = json_array();
    char vb[32];
    if (version > 0) {
        json_array_append_new(vers, json_string(version_str(v->number, vb, sizeof vb)));
    } else {
        vlist l;
        tern_status *st = hold_versions(s, model, &l);
        tern_status_free(st);
        for (int i = 0; i < l.n; i++)
            json_array_append_new(vers, json_string(version_str(l.v[i]->number, vb, sizeof vb)));
        vlist_release(&l);
    }
    json_object_set_new(root, "versions", vers);
    json_object_set_new(root, "platform", json_string("onnx"));
    json_object_set_new(root, "inputs", io_list(v, true));
    json_object_set_new(root, "outputs", io_list(v, false));
    store_release(v);
    char *out = dump(root);
    if (!out) *err = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    return out;
}

static json_t *config_io(const model_version *v, bool input)
{
    json_t *a = json_array();
    int n = input ? version_input_count(v) : version_output_count(v);
    int64_t mbs = v->cfg->max_batch_size;
    for (int i = 0; i < n; i++) {
        const tern_io_info *io = input ? version_input(v, i) : version_output(v, i);
        json_t *o = json_object();
        char type[32];
        tern_dtype dt = io->dtype;
        snprintf(type, sizeof type, "TYPE_%s", dt == TERN_STRING ? "STRING" : dtype_label(dt));
        json_object_set_new(o, "name", json_string(io->name));
        json_object_set_new(o, "data_type", json_string(type));
        /* Triton's dims leave out the batch dimension of a batching model. */
        json_object_set_new(o, "dims", shape_json(io, mbs > 0 && io->rank >= 1 ? 1 : 0));
        json_array_append_new(a, o);
    }
    return a;
}

char *store_config_json(model_store *s, const char *model, tern_status **err)
{
    *err = NULL;
    model_version *v = store_acquire(s, model, 0, err);
    if (!v) return NULL;
    const store_config *c = v->cfg;
    json_t *root = json_object();
    json_object_set_new(root, "name", json_string(model));
    json_object_set_new(root, "platform", json_string("tern_onnx"));
    json_object_set_new(root, "backend", json_string("tern"));
    json_object_set_new(root, "max_batch_size", json_integer(c->max_batch_size));
    json_t *policy = json_object();
    switch (c->policy) {
    case POLICY_LATEST:
        json_object_set_new(policy, "latest",
                            json_pack("{s:I}", "num_versions", (json_int_t)c->latest_n));
        break;
    case POLICY_SPECIFIC: {
        json_t *vs = json_array();
        for (int i = 0; i < c->n_specific; i++)
            json_array_append_new(vs, json_integer(c->specific[i]));
        json_object_set_new(policy, "specific", json_pack("{s:o}", "versions", vs));
        break;
    }
    case POLICY_ALL: json_object_set_new(policy, "all", json_object()); break;
    }
    json_object_set_new(root, "version_policy", policy);
    json_object_set_new(root, "input", config_io(v, true));
    json_object_set_new(root, "output", config_io(v, false));
    json_object_set_new(
        root, "instance_group",
        json_pack("[{s:s,s:i,s:s}]", "name", model, "count", c->instances, "kind", "KIND_CPU"));
    json_object_set_new(root, "default_model_filename", json_string(MODEL_FILE));
    store_release(v);
    char *out = dump(root);
    if (!out) *err = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    return out;
}

static json_t *duration(atomic_llong *count, atomic_llong *ns)
{
    return json_pack("{s:I,s:I}", "count", (json_int_t)atomic_load(count), "ns",
                     (json_int_t)atomic_load(ns));
}

static json_t *version_stats_json(model_version *v)
{
    version_stats *st = &v->stats;
    atomic_llong zero = 0;
    char vb[32];
    json_t *inf = json_object();
    json_object_set_new(inf, "success", duration(&st->success_count, &st->success_ns));
    json_object_set_new(inf, "fail", duration(&st->fail_count, &st->fail_ns));
    json_object_set_new(inf, "queue", duration(&st->queue_count, &st->queue_ns));
    json_object_set_new(inf, "compute_input", duration(&zero, &zero));
    json_object_set_new(inf, "compute_infer", duration(&st->compute_count, &st->compute_ns));
    json_object_set_new(inf, "compute_output", duration(&zero, &zero));
    json_object_set_new(inf, "cache_hit", duration(&zero, &zero));
    json_object_set_new(inf, "cache_miss", duration(&zero, &zero));
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(v->name));
    json_object_set_new(o, "version", json_string(version_str(v->number, vb, sizeof vb)));
    json_object_set_new(o, "last_inference", json_integer(atomic_load(&st->last_inference_ms)));
    json_object_set_new(o, "inference_count", json_integer(atomic_load(&st->inference_count)));
    json_object_set_new(o, "execution_count", json_integer(atomic_load(&st->execution_count)));
    json_object_set_new(o, "inference_stats", inf);
    json_object_set_new(o, "batch_stats", json_array());
    return o;
}

char *store_stats_json(model_store *s, const char *model, int64_t version, tern_status **err)
{
    *err = NULL;
    vlist l = {0};
    if (model && version > 0) {
        model_version *v = store_acquire(s, model, version, err);
        if (!v) return NULL;
        vlist_push(&l, v);
    } else if ((*err = hold_versions(s, model, &l))) {
        vlist_release(&l);
        return NULL;
    }
    json_t *arr = json_array();
    for (int i = 0; i < l.n; i++) json_array_append_new(arr, version_stats_json(l.v[i]));
    vlist_release(&l);
    char *out = dump(json_pack("{s:o}", "model_stats", arr));
    if (!out) *err = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    return out;
}

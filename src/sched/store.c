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
 * Files: this one holds the table, the folder scan, sync and the public
 * control and request calls; store_version.c a loaded version (instances,
 * warm-up, reference count); store_json.c the JSON documents;
 * store_config.c config.yaml; store_internal.h the types they share.
 *
 * Statistics: version_run does not touch version_stats; the caller, which
 * sees the whole request, keeps them (version_run_timed reports the time
 * waited for an instance and the engine time for that). The store does
 * publish tern_model_loaded and the load time to the metrics registry.
 */
#include "sched/store.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/log.h"
#include "monitor/metrics.h"
#include "sched/store_internal.h"

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
        store_vlist_push(rel, r->v);
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
        v[n++] = (disk_version){.number = num, .file = store_file_id(path)};
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

tern_status *store_list_models(const char *repo, char ***out, int *count)
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

void store_free_names(char **names, int n)
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
    file_id cfg_file = store_file_id(cfg_path);
    pthread_rwlock_rdlock(&s->tab);
    model_entry *e0 = find_model(s, name);
    bool known_bad = e0 && e0->cfg_failed && store_file_id_eq(e0->cfg_failed_id, cfg_file);
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
        if (r && r->v && store_file_id_eq(r->v->file, disk[i].file) &&
            store_file_id_eq(r->v->cfg_file, cfg_file))
            continue; /* serving, unchanged */
        if (r && !forced && r->failed && store_file_id_eq(r->failed_file, disk[i].file) &&
            store_file_id_eq(r->failed_cfg, cfg_file))
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
            jobs[j].st = store_version_load(&s->live, name, jobs[j].number, path, cfg_path, cfg,
                                            jobs[j].file, cfg_file, &jobs[j].v);
    }

    /* switch, atomically for requests */
    vlist rel = {0};
    pthread_rwlock_wrlock(&s->tab);
    e = find_model(s, name); /* ctl is held: nobody removed it */
    int missing = 0;
    for (int j = 0; j < n_jobs; j++) {
        vrec *r = find_rec(e, jobs[j].number);
        if (!r && !(r = get_or_add_rec(e, jobs[j].number))) {
            if (jobs[j].v) store_vlist_push(&rel, jobs[j].v);
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
        if (r->v) store_vlist_push(&rel, r->v);
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
    store_vlist_release(&rel);

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
    store_vlist_release(&rel);
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
    pthread_mutex_init(&s->live.mu, NULL);
    pthread_cond_init(&s->live.cv, NULL);
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
    store_vlist_release(&rel);
    /* Requests still holding versions finish first. */
    pthread_mutex_lock(&s->live.mu);
    while (s->live.n > 0) pthread_cond_wait(&s->live.cv, &s->live.mu);
    pthread_mutex_unlock(&s->live.mu);

    free(s->models);
    store_free_names(s->startup, s->n_startup);
    free(s->repo);
    pthread_mutex_destroy(&s->ctl);
    pthread_rwlock_destroy(&s->tab);
    pthread_mutex_destroy(&s->live.mu);
    pthread_cond_destroy(&s->live.cv);
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
    tern_status *st = store_list_models(s->repo, &names, &n);
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
    store_free_names(names, n);
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
    pthread_mutex_lock(&s->live.mu);
    long n = s->live.n;
    pthread_mutex_unlock(&s->live.mu);
    return n;
}

/* Only POLL mode follows the folder: elsewhere a rescan would load models
 * that mode NONE or EXPLICIT did not ask for, so this is a no-op there. */
void store_poll_once(model_store *s)
{
    if (s->mode != STORE_POLL) return;
    pthread_mutex_lock(&s->ctl);
    char **names = NULL;
    int n = 0;
    tern_status *st = store_list_models(s->repo, &names, &n);
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
    store_free_names(names, n);
    pthread_mutex_unlock(&s->ctl);
}

/* ---- public: control ---------------------------------------------------- */

/* The checks every load/unload request passes first. */
static tern_status *control_allowed(const model_store *s, const char *model)
{
    if (s->mode == STORE_NONE)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "model control is disabled (mode none)");
    if (!store_valid_name(model))
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "invalid model name '%.300s'",
                          model ? model : "");
    return NULL;
}

tern_status *store_load(model_store *s, const char *model)
{
    TERN_TRY(control_allowed(s, model));
    pthread_mutex_lock(&s->ctl);
    tern_status *st = sync_model(s, model, true);
    pthread_mutex_unlock(&s->ctl);
    return st;
}

tern_status *store_unload(model_store *s, const char *model)
{
    TERN_TRY(control_allowed(s, model));
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

tern_status *store_hold_versions(model_store *s, const char *model, vlist *out)
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
            store_vlist_push(out, e->recs[i].v);
        }
    }
    pthread_rwlock_unlock(&s->tab);
    return st;
}

void store_foreach_version(model_store *s, void (*fn)(model_version *v, void *arg), void *arg)
{
    vlist l;
    tern_status *st = store_hold_versions(s, NULL, &l);
    tern_status_free(st);
    for (int i = 0; i < l.n; i++) fn(l.v[i], arg);
    store_vlist_release(&l);
}

static void cancel_one(model_version *v, void *arg)
{
    (void)arg;
    sched_cancel_queued(v->sched);
}

void store_cancel_queued(model_store *s)
{
    store_foreach_version(s, cancel_one, NULL);
}

static void expire_one(model_version *v, void *arg)
{
    (void)arg;
    sched_expire(v->sched);
}

void store_expire_queued(model_store *s)
{
    store_foreach_version(s, expire_one, NULL);
}

static void idle_one(model_version *v, void *arg)
{
    (void)arg;
    sched_wait_idle(v->sched);
}

void store_wait_idle(model_store *s)
{
    store_foreach_version(s, idle_one, NULL);
}

void store_metrics_text(model_store *s, FILE *f)
{
    vlist l;
    tern_status *st = store_hold_versions(s, NULL, &l);
    tern_status_free(st);
    sched **ss = calloc((size_t)l.n + 1, sizeof *ss);
    const char **names = calloc((size_t)l.n + 1, sizeof *names);
    int64_t *numbers = calloc((size_t)l.n + 1, sizeof *numbers);
    int n = 0;
    for (int i = 0; ss && names && numbers && i < l.n; i++)
        if (l.v[i]->sched) {
            ss[n] = l.v[i]->sched;
            names[n] = l.v[i]->name;
            numbers[n++] = l.v[i]->number;
        }
    if (ss && names && numbers) sched_metrics_text(ss, names, numbers, n, f);
    free(ss);
    free(names);
    free(numbers);
    store_vlist_release(&l);
}

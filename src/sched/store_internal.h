/*
 * Private to the model store (store.c, store_version.c, store_json.c): the
 * types behind the opaque handles of store.h and the helpers the files
 * share. See store.c for the design: who owns what, and which lock guards it.
 */
#ifndef TERN_SCHED_STORE_INTERNAL_H
#define TERN_SCHED_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sched/store.h"
#include "sched/sched.h"
#include "sched/store_config.h"

#define MODEL_FILE "model.onnx"
#define CONFIG_FILE "config.yaml"

/* What a file on disk was when we read it: a change of any field (or of
 * existence) means it was replaced or rewritten. */
typedef struct file_id {
    bool exists;
    int64_t mtime_ns, size;
    uint64_t ino;
} file_id;

file_id store_file_id(const char *path);
bool store_file_id_eq(file_id a, file_id b);

/* Count of versions not yet freed; store_free waits for it to reach 0. */
typedef struct store_live {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long n;
} store_live;

void store_live_add(store_live *l, int delta);

struct model_version {
    store_live *live;
    atomic_int refs; /* the store's while serving + one per request */
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
    sched *sched; /* its queue and instance threads, once loaded */
};

/* Loads version `number` of `name` from `path` with a copy of `cfg`: every
 * instance is created, checked against the config and warmed up. The new
 * version holds one reference, the caller's. */
tern_status *store_version_load(store_live *live, const char *name, int64_t number,
                                const char *path, const char *cfg_path, const store_config *cfg,
                                file_id file, file_id cfg_file, model_version **out);

typedef enum vstate { VS_LOADING, VS_READY, VS_UNAVAILABLE } vstate;

/* What the index reports about one version number. */
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

    pthread_mutex_t ctl;  /* serialises control operations */
    pthread_rwlock_t tab; /* guards models and their records */
    model_entry **models; /* ascending by name */
    int n_models, cap_models;
    atomic_bool started;
    bool start_called;

    store_live live;

    pthread_mutex_t poll_mu;
    pthread_cond_t poll_cv;
    bool stopping, poller_on;
    pthread_t poller;
};

/* A list of held versions, released together (after `tab` is dropped). */
typedef struct vlist {
    model_version **v;
    int n, cap;
} vlist;

void store_vlist_push(vlist *l, model_version *v);
void store_vlist_release(vlist *l);

/* Holds every READY version of one model (or of all with model NULL);
 * NOT_FOUND for a model neither loaded nor in the folder. */
tern_status *store_hold_versions(model_store *s, const char *model, vlist *out);

/* Model folders of the repository (valid names only), sorted. */
tern_status *store_list_models(const char *repo, char ***out, int *count);
void store_free_names(char **names, int n);

#endif

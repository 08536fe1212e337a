/*
 * Model store tests: a real repository in a temporary folder with real ONNX
 * models, made once by Debian's python3-onnx (onnx.helper). The models are
 * y = x + k for k = 1..9 (x float [batch, 4]), so the value a request gets
 * back tells which file served it; "types" passes six dtypes through
 * Identity for the metadata datatypes. JSON documents are parsed back with
 * jansson and checked against the KServe / Triton field names and the
 * values the test put on disk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "sched/store.h"

static char gen_dir[PATH_MAX]; /* generated models */
static char work_dir[PATH_MAX];
static int repo_seq;

static const char gen_script[] =
    "import sys, onnx\n"
    "from onnx import helper as h, TensorProto as T\n"
    "out = sys.argv[1]\n"
    "for k in range(1, 10):\n"
    "    x = h.make_tensor_value_info('x', T.FLOAT, ['batch', 4])\n"
    "    y = h.make_tensor_value_info('y', T.FLOAT, ['batch', 4])\n"
    "    c = h.make_tensor('c', T.FLOAT, [1], [float(k)])\n"
    "    g = h.make_graph([h.make_node('Add', ['x', 'c'], ['y'])], 'add', [x], [y], [c])\n"
    "    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid('', 13)]), "
    "f'{out}/add_{k}.onnx')\n"
    "specs = [('i64', T.INT64, ['n']), ('b', T.BOOL, [2, 2]), ('u8', T.UINT8, [1]),\n"
    "         ('f64', T.DOUBLE, [3]), ('f16', T.FLOAT16, [3]), ('s', T.STRING, [2])]\n"
    "ins = [h.make_tensor_value_info(n, t, s) for n, t, s in specs]\n"
    "outs = [h.make_tensor_value_info('o_' + n, t, s) for n, t, s in specs]\n"
    "nodes = [h.make_node('Identity', [n], ['o_' + n]) for n, _, _ in specs]\n"
    "g = h.make_graph(nodes, 'types', ins, outs)\n"
    "onnx.save(h.make_model(g, opset_imports=[h.make_opsetid('', 13)]), f'{out}/types.onnx')\n"
    "x = h.make_tensor_value_info('x', T.FLOAT, ['n'])\n"
    "y = h.make_tensor_value_info('y', T.FLOAT, [2, 'm'])\n"
    "sh = h.make_tensor('sh', T.INT64, [2], [2, -1])\n"
    "g = h.make_graph([h.make_node('Reshape', ['x', 'sh'], ['y'])], 'reshape', [x], [y], [sh])\n"
    "onnx.save(h.make_model(g, opset_imports=[h.make_opsetid('', 13)]), f'{out}/reshape.onnx')\n";

/* ---- files -------------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t len)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0); /* a new inode, as a deploy would */
}

static void mkdirs(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(buf, 0755);
        *p = '/';
    }
    mkdir(buf, 0755);
}

static void rm_rf(const char *path)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static char *new_repo(void)
{
    char *r = malloc(PATH_MAX);
    snprintf(r, PATH_MAX, "%s/repo%d", work_dir, ++repo_seq);
    mkdirs(r);
    return r;
}

/* Puts gen/<src> at repo/model/version/model.onnx. */
static void put_model(const char *repo, const char *model, int version, const char *src)
{
    char dir[PATH_MAX], path[PATH_MAX + 16], from[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/%s/%d", repo, model, version);
    mkdirs(dir);
    snprintf(from, sizeof from, "%s/%s.onnx", gen_dir, src);
    FILE *f = fopen(from, "rb");
    assert_non_null(f);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    write_file(path, buf, n);
}

static void put_add(const char *repo, const char *model, int version, int k)
{
    char src[16];
    snprintf(src, sizeof src, "add_%d", k);
    put_model(repo, model, version, src);
}

static void put_garbage(const char *repo, const char *model, int version)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/%s/%d", repo, model, version);
    mkdirs(dir);
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    const char junk[] = "this is not an ONNX model \x01\x02\xff\xfe";
    write_file(path, junk, sizeof junk);
}

static void put_config(const char *repo, const char *model, const char *text)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/%s", repo, model);
    mkdirs(dir);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    write_file(path, text, strlen(text));
}

static void rm_version(const char *repo, const char *model, int version)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s/%d", repo, model, version);
    rm_rf(dir);
}

/* ---- store helpers ------------------------------------------------------ */

static model_store *open_store(const char *repo, store_mode mode, const char *const *startup,
                               int n_startup, int poll_secs)
{
    store_options o = {.repository = repo,
                       .mode = mode,
                       .startup_models = startup,
                       .n_startup_models = n_startup,
                       .poll_secs = poll_secs,
                       .default_threads = 1};
    model_store *s = NULL;
    tern_status *st = store_create(&o, &s);
    if (st) fail_msg("store_create: %s", tern_status_message(st));
    st = store_start(s);
    if (st) fail_msg("store_start: %s", tern_status_message(st));
    assert_true(store_started(s));
    return s;
}

/* Runs one row through an add model; returns y - x (the model's k), or
 * -1000 on an error (message in *msg if given). */
static float run_delta(model_version *v, char *msg, size_t msg_len)
{
    float x[4] = {0.5f, 1.5f, -2.0f, 3.0f};
    int64_t dims[2] = {1, 4};
    tern_tensor *in = NULL, *out[1] = {NULL};
    tern_status *st = tern_tensor_create_copy(TERN_FLOAT, 2, dims, x, sizeof x, &in);
    const char *names[1] = {"x"};
    if (!st) st = version_run(v, 1, names, (const tern_tensor *const *)&in, out);
    float delta = -1000;
    if (!st) {
        const float *y = tern_tensor_cdata(out[0]);
        delta = y[0] - x[0];
        for (int i = 1; i < 4; i++)
            if (y[i] - x[i] != delta) delta = -1000;
    } else if (msg) {
        snprintf(msg, msg_len, "%s", tern_status_message(st));
    }
    tern_status_free(st);
    tern_tensor_free(in);
    tern_tensor_free(out[0]);
    return delta;
}

/* What version `version` of `model` answers (its k). */
static float infer(model_store *s, const char *model, int64_t version)
{
    tern_status *err = NULL;
    model_version *v = store_acquire(s, model, version, &err);
    if (!v) fail_msg("acquire %s/%lld: %s", model, (long long)version, tern_status_message(err));
    char msg[512] = "";
    float d = run_delta(v, msg, sizeof msg);
    store_release(v);
    if (d == -1000) fail_msg("run %s: %s", model, msg);
    return d;
}

/* acquire must fail with `code` and a message containing `part`. */
static void acquire_fails(model_store *s, const char *model, int64_t version, tern_code code,
                          const char *part)
{
    tern_status *err = NULL;
    model_version *v = store_acquire(s, model, version, &err);
    if (v) {
        store_release(v);
        fail_msg("acquire %s/%lld succeeded", model, (long long)version);
    }
    assert_non_null(err);
    assert_int_equal(tern_status_code(err), code);
    if (!strstr(tern_status_message(err), part))
        fail_msg("'%s' does not contain '%s'", tern_status_message(err), part);
    tern_status_free(err);
}

static void expect_error(tern_status *st, tern_code code, const char *part1, const char *part2)
{
    if (!st) fail_msg("expected an error containing '%s'", part1);
    const char *m = tern_status_message(st);
    if (tern_status_code(st) != code)
        fail_msg("code %d, expected %d: %s", tern_status_code(st), code, m);
    if (part1 && !strstr(m, part1)) fail_msg("'%s' does not contain '%s'", m, part1);
    if (part2 && !strstr(m, part2)) fail_msg("'%s' does not contain '%s'", m, part2);
    tern_status_free(st);
}

static void expect_ok(tern_status *st)
{
    if (st) fail_msg("unexpected error: %s", tern_status_message(st));
}

static json_t *parse(char *text)
{
    assert_non_null(text);
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j) fail_msg("invalid JSON (%s): %s", e.text, text);
    free(text);
    return j;
}

/* The index entry of (model, version) (version NULL: the model-level one). */
static json_t *index_find(json_t *index, const char *model, const char *version)
{
    size_t i;
    json_t *it;
    json_array_foreach(index, i, it)
    {
        const char *n = json_string_value(json_object_get(it, "name"));
        json_t *v = json_object_get(it, "version");
        if (n && strcmp(n, model) == 0 &&
            (version ? v && strcmp(json_string_value(v), version) == 0 : !v))
            return it;
    }
    return NULL;
}

static const char *index_state(model_store *s, const char *model, const char *version, char *reason,
                               size_t len)
{
    static char state[32];
    json_t *idx = parse(store_index_json(s, false));
    json_t *e = index_find(idx, model, version);
    snprintf(state, sizeof state, "%s", e ? json_string_value(json_object_get(e, "state")) : "-");
    if (reason)
        snprintf(reason, len, "%s", e ? json_string_value(json_object_get(e, "reason")) : "");
    json_decref(idx);
    return state;
}

/* ---- group setup -------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    snprintf(work_dir, sizeof work_dir, "/tmp/tern-store-test-XXXXXX");
    if (!mkdtemp(work_dir)) return -1;
    snprintf(gen_dir, sizeof gen_dir, "%s/gen", work_dir);
    mkdirs(gen_dir);
    char script[PATH_MAX + 8], cmd[3 * PATH_MAX];
    snprintf(script, sizeof script, "%s/gen.py", work_dir);
    FILE *f = fopen(script, "w");
    if (!f) return -1;
    fputs(gen_script, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", script, gen_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot make the test models (needs Debian's python3-onnx)\n");
        return -1;
    }
    /* Failed loads are logged on purpose in these tests. */
    log_set_level(LOG_ERROR);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    rm_rf(work_dir);
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_valid_name(void **state)
{
    (void)state;
    const char *good[] = {"mlp", "resnet-50", "a.b", "x_1", "model v2", "ünïcode", "a.", "-"};
    const char *bad[] = {"",     ".",    "..",  ".hidden", "../etc", "a/b",
                         "/abs", "a..b", "x\n", "a\tb",    "del\x7f"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!store_valid_name(good[i])) fail_msg("'%s' should be valid", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (store_valid_name(bad[i])) fail_msg("'%s' should be invalid", bad[i]);
    assert_false(store_valid_name(NULL));
    char longname[300];
    memset(longname, 'a', sizeof longname);
    longname[255] = '\0';
    assert_true(store_valid_name(longname));
    longname[255] = 'a';
    longname[256] = '\0';
    assert_false(store_valid_name(longname));
}

static void test_create_errors(void **state)
{
    (void)state;
    model_store *s = NULL;
    char missing[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/no-such-repo", work_dir);
    store_options o = {.repository = missing, .mode = STORE_NONE};
    expect_error(store_create(&o, &s), TERN_ERR_NOT_FOUND, missing, NULL);
    assert_null(s);
    char *repo = new_repo();
    o = (store_options){.repository = repo, .mode = STORE_POLL, .poll_secs = 0};
    expect_error(store_create(&o, &s), TERN_ERR_INVALID_ARGUMENT, "poll", NULL);
    o = (store_options){.repository = NULL};
    expect_error(store_create(&o, &s), TERN_ERR_INVALID_ARGUMENT, "repository", NULL);
    free(repo);
}

static void test_none_mode_loads_all(void **state)
{
    (void)state;
    char *repo = new_repo();
    put_add(repo, "m1", 1, 1);
    put_add(repo, "m1", 2, 2);
    put_add(repo, "m2", 1, 3);
    put_config(repo, "empty", "# no versions yet\n");
    mkdirs(repo); /* plus stray files that are no models */
    char junk[PATH_MAX + 16];
    snprintf(junk, sizeof junk, "%s/README", repo);
    write_file(junk, "x", 1);
    snprintf(junk, sizeof junk, "%s/.hidden", repo);
    mkdirs(junk);

    model_store *s = open_store(repo, STORE_NONE, NULL, 0, 0);
    /* default policy: latest 1 */
    assert_true(store_ready(s, "m1", 0));
    assert_true(store_ready(s, "m1", 2));
    assert_false(store_ready(s, "m1", 1));
    assert_true(store_ready(s, "m2", 1));
    assert_false(store_ready(s, "empty", 0));
    assert_float_equal(infer(s, "m1", 0), 2, 0);
    assert_float_equal(infer(s, "m1", 2), 2, 0);
    assert_float_equal(infer(s, "m2", 0), 3, 0);
    acquire_fails(s, "m1", 1, TERN_ERR_NOT_FOUND, "version 1");
    acquire_fails(s, "m1", 7, TERN_ERR_NOT_FOUND, "version 7");
    acquire_fails(s, "nope", 0, TERN_ERR_NOT_FOUND, "unknown model 'nope'");
    acquire_fails(s, "../m1", 0, TERN_ERR_NOT_FOUND, "unknown model");
    acquire_fails(s, "empty", 0, TERN_ERR_RUNTIME, "model 'empty' is not ready");
    assert_int_equal(store_live_versions(s), 2);

    /* control API refused */
    expect_error(store_load(s, "m1"), TERN_ERR_INVALID_ARGUMENT,
                 "model control is disabled (mode none)", NULL);
    expect_error(store_unload(s, "m1"), TERN_ERR_INVALID_ARGUMENT, "mode none", NULL);

    /* index: every folder, loaded versions with their state */
    json_t *idx = parse(store_index_json(s, false));
    assert_true(json_is_array(idx));
    json_t *e = index_find(idx, "m1", "2");
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "state")), "READY");
    assert_string_equal(json_string_value(json_object_get(e, "reason")), "");
    assert_null(index_find(idx, "m1", "1"));
    assert_non_null(index_find(idx, "m2", "1"));
    e = index_find(idx, "empty", NULL);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "state")), "UNAVAILABLE");
    assert_non_null(strstr(json_string_value(json_object_get(e, "reason")), "no version"));
    assert_null(index_find(idx, "README", NULL));
    assert_null(index_find(idx, ".hidden", NULL));
    json_decref(idx);
    idx = parse(store_index_json(s, true));
    assert_int_equal(json_array_size(idx), 2);
    json_decref(idx);

    /* model metadata (KServe) */
    tern_status *err = NULL;
    json_t *md = parse(store_metadata_json(s, "m1", 0, &err));
    assert_string_equal(json_string_value(json_object_get(md, "name")), "m1");
    assert_string_equal(json_string_value(json_object_get(md, "platform")), "onnx");
    json_t *vers = json_object_get(md, "versions");
    assert_int_equal(json_array_size(vers), 1);
    assert_string_equal(json_string_value(json_array_get(vers, 0)), "2");
    json_t *in = json_array_get(json_object_get(md, "inputs"), 0);
    assert_string_equal(json_string_value(json_object_get(in, "name")), "x");
    assert_string_equal(json_string_value(json_object_get(in, "datatype")), "FP32");
    json_t *shape = json_object_get(in, "shape");
    assert_int_equal(json_array_size(shape), 2);
    assert_int_equal(json_integer_value(json_array_get(shape, 0)), -1);
    assert_int_equal(json_integer_value(json_array_get(shape, 1)), 4);
    json_t *out = json_array_get(json_object_get(md, "outputs"), 0);
    assert_string_equal(json_string_value(json_object_get(out, "name")), "y");
    json_decref(md);
    md = parse(store_metadata_json(s, "m1", 2, &err));
    assert_string_equal(json_string_value(json_array_get(json_object_get(md, "versions"), 0)), "2");
    json_decref(md);
    assert_null(store_metadata_json(s, "m1", 1, &err));
    expect_error(err, TERN_ERR_NOT_FOUND, "m1", NULL);
    assert_null(store_metadata_json(s, "zzz", 0, &err));
    expect_error(err, TERN_ERR_NOT_FOUND, "zzz", NULL);

    /* Triton config */
    json_t *cfg = parse(store_config_json(s, "m1", &err));
    assert_string_equal(json_string_value(json_object_get(cfg, "name")), "m1");
    assert_string_equal(json_string_value(json_object_get(cfg, "platform")), "tern_onnx");
    assert_string_equal(json_string_value(json_object_get(cfg, "backend")), "tern");
    assert_int_equal(json_integer_value(json_object_get(cfg, "max_batch_size")), 0);
    json_t *pol = json_object_get(json_object_get(cfg, "version_policy"), "latest");
    assert_int_equal(json_integer_value(json_object_get(pol, "num_versions")), 1);
    in = json_array_get(json_object_get(cfg, "input"), 0);
    assert_string_equal(json_string_value(json_object_get(in, "data_type")), "TYPE_FP32");
    assert_int_equal(json_array_size(json_object_get(in, "dims")), 2);
    json_t *ig = json_array_get(json_object_get(cfg, "instance_group"), 0);
    assert_int_equal(json_integer_value(json_object_get(ig, "count")), 1);
    assert_string_equal(json_string_value(json_object_get(ig, "kind")), "KIND_CPU");
    json_decref(cfg);
    assert_null(store_config_json(s, "empty", &err));
    expect_error(err, TERN_ERR_RUNTIME, "not ready", NULL);

    /* statistics: counters the caller keeps, rendered as Triton does */
    model_version *v = store_acquire(s, "m1", 0, &err);
    assert_non_null(v);
    version_stats *vs = version_stats_of(v);
    atomic_fetch_add(&vs->inference_count, 3);
    atomic_fetch_add(&vs->execution_count, 2);
    atomic_fetch_add(&vs->success_count, 3);
    atomic_fetch_add(&vs->success_ns, 3000);
    atomic_fetch_add(&vs->queue_count, 3);
    atomic_fetch_add(&vs->queue_ns, 300);
    atomic_fetch_add(&vs->compute_count, 2);
    atomic_fetch_add(&vs->compute_ns, 2000);
    atomic_store(&vs->last_inference_ms, 1700000000123LL);
    store_release(v);
    json_t *st = parse(store_stats_json(s, "m1", 0, &err));
    json_t *ms = json_object_get(st, "model_stats");
    assert_int_equal(json_array_size(ms), 1);
    json_t *m0 = json_array_get(ms, 0);
    assert_string_equal(json_string_value(json_object_get(m0, "name")), "m1");
    assert_string_equal(json_string_value(json_object_get(m0, "version")), "2");
    assert_int_equal(json_integer_value(json_object_get(m0, "inference_count")), 3);
    assert_int_equal(json_integer_value(json_object_get(m0, "execution_count")), 2);
    assert_int_equal(json_integer_value(json_object_get(m0, "last_inference")), 1700000000123LL);
    json_t *is = json_object_get(m0, "inference_stats");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(is, "success"), "ns")),
                     3000);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(is, "queue"), "count")), 3);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(is, "compute_infer"), "ns")), 2000);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(is, "fail"), "count")), 0);
    json_decref(st);
    st = parse(store_stats_json(s, NULL, 0, &err));
    assert_int_equal(json_array_size(json_object_get(st, "model_stats")), 2);
    json_decref(st);
    assert_null(store_stats_json(s, "m1", 1, &err));
    expect_error(err, TERN_ERR_NOT_FOUND, "version 1", NULL);
    assert_null(store_stats_json(s, "nope", 0, &err));
    expect_error(err, TERN_ERR_NOT_FOUND, "nope", NULL);

    store_free(s);
    rm_rf(repo);
    free(repo);
}

static void count_version(model_version *v, void *arg)
{
    (*(int *)arg) += (int)version_number(v);
}

static void test_metadata_datatypes(void **state)
{
    (void)state;
    char *repo = new_repo();
    put_model(repo, "types", 1, "types");
    model_store *s = open_store(repo, STORE_NONE, NULL, 0, 0);
    tern_status *err = NULL;
    json_t *md = parse(store_metadata_json(s, "types", 0, &err));
    const char *want[][2] = {{"i64", "INT64"}, {"b", "BOOL"},   {"u8", "UINT8"},
                             {"f64", "FP64"},  {"f16", "FP16"}, {"s", "BYTES"}};
    json_t *ins = json_object_get(md, "inputs"), *outs = json_object_get(md, "outputs");
    assert_int_equal(json_array_size(ins), 6);
    assert_int_equal(json_array_size(outs), 6);
    for (size_t i = 0; i < 6; i++) {
        json_t *in = json_array_get(ins, i);
        assert_string_equal(json_string_value(json_object_get(in, "name")), want[i][0]);
        assert_string_equal(json_string_value(json_object_get(in, "datatype")), want[i][1]);
        assert_string_equal(json_string_value(json_object_get(json_array_get(outs, i), "datatype")),
                            want[i][1]);
    }
    json_t *bshape = json_object_get(json_array_get(ins, 1), "shape");
    assert_int_equal(json_array_size(bshape), 2);
    assert_int_equal(json_integer_value(json_array_get(bshape, 0)), 2);
    json_decref(md);
    json_t *cfg = parse(store_config_json(s, "types", &err));
    json_t *in5 = json_array_get(json_object_get(cfg, "input"), 5);
    assert_string_equal(json_string_value(json_object_get(in5, "data_type")), "TYPE_STRING");
    json_decref(cfg);
    int sum = 0;
    store_foreach_version(s, count_version, &sum);
    assert_int_equal(sum, 1);
    store_free(s);
    rm_rf(repo);
    free(repo);
}

static void test_explicit_load_unload(void **state)
{
    (void)state;
    char *repo = new_repo();
    put_add(repo, "m1", 1, 1);
    put_add(repo, "m2", 1, 2);
    const char *startup[] = {"m1", "missing"};
    model_store *s = open_store(repo, STORE_EXPLICIT, startup, 2, 0);
    assert_true(store_ready(s, "m1", 0));
    assert_false(store_ready(s, "m2", 0));
    acquire_fails(s, "m2", 0, TERN_ERR_RUNTIME, "model 'm2' is not ready");
    assert_string_equal(index_state(s, "m2", NULL, NULL, 0), "UNAVAILABLE");

    expect_ok(store_load(s, "m2"));
    assert_float_equal(infer(s, "m2", 0), 2, 0);
    expect_ok(store_load(s, "m2")); /* nothing changed: a no-op */
    assert_int_equal(store_live_versions(s), 2);

    expect_ok(store_unload(s, "m1"));
    assert_false(store_ready(s, "m1", 0));
    acquire_fails(s, "m1", 0, TERN_ERR_RUNTIME, "not ready");
    char reason[512];
    assert_string_equal(index_state(s, "m1", "1", reason, sizeof reason), "UNAVAILABLE");
    assert_non_null(strstr(reason, "unloaded"));
    assert_int_equal(store_live_versions(s), 1);
    expect_ok(store_unload(s, "m1")); /* twice is fine */
    expect_ok(store_load(s, "m1"));
    assert_float_equal(infer(s, "m1", 1), 1, 0);
    assert_string_equal(index_state(s, "m1", "1", NULL, 0), "READY");

    expect_error(store_load(s, "nope"), TERN_ERR_NOT_FOUND, "nope", NULL);
    expect_error(store_unload(s, "nope"), TERN_ERR_NOT_FOUND, "nope", NULL);
    expect_error(store_load(s, "../m1"), TERN_ERR_INVALID_ARGUMENT, "invalid model name", NULL);
    expect_error(store_load(s, "a/b"), TERN_ERR_INVALID_ARGUMENT, "invalid model name", NULL);
    expect_error(store_load(s, ""), TERN_ERR_INVALID_ARGUMENT, "invalid model name", NULL);
    expect_error(store_load(s, NULL), TERN_ERR_INVALID_ARGUMENT, "invalid model name", NULL);
    expect_error(store_unload(s, ".."), TERN_ERR_INVALID_ARGUMENT, "invalid model name", NULL);
    store_free(s);

    /* "*" loads everything at start */
    const char *all[] = {"*"};
    s = open_store(repo, STORE_EXPLICIT, all, 1, 0);
    assert_true(store_ready(s, "m1", 0));
    assert_true(store_ready(s, "m2", 0));
    store_free(s);
    rm_rf(repo);
    free(repo);
}

/* The versions of m that are READY, as a bit mask over 1..9. */
static int ready_mask(model_store *s, const char *m)
{
    int mask = 0;
    for (int v = 1; v <= 9; v++)
        if (store_ready(s, m, v)) mask |= 1 << v;
    return mask;
}

static void test_version_policies(void **state)
{
    (void)state;
    char *repo = new_repo();
    for (int v = 1; v <= 4; v++) put_add(repo, "m", v, v);
    const char *startup[] = {"m"};
    struct {
        const char *yaml;
        int mask;
        const char *policy_key; /* in the config JSON */
    } cases[] = {
        {"version_policy: {latest: {num_versions: 2}}\n", 1 << 3 | 1 << 4, "latest"},
        {"version_policy:\n  latest: 3\n", 1 << 2 | 1 << 3 | 1 << 4, "latest"},
        {"version_policy: {specific: {versions: [1, 3]}}\n", 1 << 1 | 1 << 3, "specific"},
        {"version_policy:\n  specific: [4, 2, 2]\n", 1 << 2 | 1 << 4, "specific"},
        {"version_policy: {all: {}}\n", 0x1e, "all"},
        {"version_policy: all\n", 0x1e, "all"},
        {"version_policy: {latest: 9}\n", 0x1e, "latest"},
        {"# comments only\n", 1 << 4, "latest"},
        {"", 1 << 4, "latest"},
        {"version_policy: {specific: [2, 7]}\n", 1 << 2, "specific"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        put_config(repo, "m", cases[i].yaml);
        model_store *s = open_store(repo, STORE_EXPLICIT, startup, 1, 0);
        int got = ready_mask(s, "m");
        if (got != cases[i].mask)
            fail_msg("case %zu (%s): ready mask %#x, expected %#x", i, cases[i].yaml, got,
                     cases[i].mask);
        /* the highest selected version answers version 0 */
        int top = 0;
        for (int v = 1; v <= 9; v++)
            if (cases[i].mask & (1 << v)) top = v;
        assert_float_equal(infer(s, "m", 0), top, 0);
        tern_status *err = NULL;
        json_t *cfg = parse(store_config_json(s, "m", &err));
        json_t *pol = json_object_get(cfg, "version_policy");
        assert_non_null(json_object_get(pol, cases[i].policy_key));
        json_decref(cfg);
        store_free(s);
    }

    /* A policy change through load switches the set. */
    put_config(repo, "m", "version_policy: {latest: 2}\n");
    model_store *s = open_store(repo, STORE_EXPLICIT, startup, 1, 0);
    assert_int_equal(ready_mask(s, "m"), 1 << 3 | 1 << 4);
    put_config(repo, "m", "version_policy: {specific: [1]}\n");
    expect_ok(store_load(s, "m"));
    assert_int_equal(ready_mask(s, "m"), 1 << 1);
    assert_int_equal(store_live_versions(s), 1);
    tern_status *err = NULL;
    json_t *cfg = parse(store_config_json(s, "m", &err));
    json_t *vs = json_object_get(
        json_object_get(json_object_get(cfg, "version_policy"), "specific"), "versions");
    assert_int_equal(json_array_size(vs), 1);
    assert_int_equal(json_integer_value(json_array_get(vs, 0)), 1);
    json_decref(cfg);
    store_free(s);
    rm_rf(repo);
    free(repo);
}

static void test_config_good(void **state)
{
    (void)state;
    char *repo = new_repo();
    put_add(repo, "m", 1, 4);
    put_config(repo, "m",
               "name: m\n"
               "platform: onnx\n"
               "max_batch_size: 8\n"
               "instances: 2\n"
               "threads: 1\n"
               "inputs:\n"
               "  - {name: x, datatype: FP32, shape: [-1, 4]}\n"
               "outputs:\n"
               "  - name: y\n"
               "    datatype: TYPE_FP32\n"
               "    shape: [4]\n"
               "warmup:\n"
               "  - {name: x, shape: [3, 4]}\n");
    model_store *s = open_store(repo, STORE_NONE, NULL, 0, 0);
    assert_float_equal(infer(s, "m", 1), 4, 0);
    tern_status *err = NULL;
    model_version *v = store_acquire(s, "m", 0, &err);
    assert_non_null(v);
    assert_int_equal(version_max_batch_size(v), 8);
    assert_string_equal(version_model_name(v), "m");
    assert_int_equal(version_number(v), 1);
    assert_true(version_load_seconds(v) >= 0);
    assert_int_equal(version_input_count(v), 1);
    assert_int_equal(version_output_count(v), 1);
    assert_string_equal(version_input(v, 0)->name, "x");
    assert_string_equal(version_output(v, 0)->name, "y");
    store_release(v);
    json_t *cfg = parse(store_config_json(s, "m", &err));
    assert_int_equal(json_integer_value(json_object_get(cfg, "max_batch_size")), 8);
    json_t *ig = json_array_get(json_object_get(cfg, "instance_group"), 0);
    assert_int_equal(json_integer_value(json_object_get(ig, "count")), 2);
    /* Triton leaves the batch dimension out of dims when max_batch_size > 0 */
    json_t *dims = json_object_get(json_array_get(json_object_get(cfg, "input"), 0), "dims");
    assert_int_equal(json_array_size(dims), 1);
    assert_int_equal(json_integer_value(json_array_get(dims, 0)), 4);
    json_decref(cfg);
    store_free(s);

    /* warmup: [] turns warm-up off; still serves */
    put_config(repo, "m", "warmup: []\n");
    s = open_store(repo, STORE_NONE, NULL, 0, 0);
    assert_float_equal(infer(s, "m", 0), 4, 0);
    store_free(s);
    rm_rf(repo);
    free(repo);
}

/* reshape.onnx turns x[n] into y[2, n/2]: zeros of shape [1] (the default
 * warm-up) cannot run, [4] can. */
static void test_warmup(void **state)
{
    (void)state;
    char *repo = new_repo();
    put_model(repo, "r", 1, "reshape");
    const char *startup[] = {"r"};
    /* default warm-up fails: logged, the version serves anyway */
    model_store *s = open_store(repo, STORE_EXPLICIT, startup, 1, 0);
    assert_true(store_ready(s, "r", 1));
    tern_status *err = NULL;
    model_version *v = store_acquire(s, "r", 0, &err);
    assert_non_null(v);
    float x[4] = {1, 2, 3, 4};
    int64_t n = 4;
    tern_tensor *in = NULL, *out[1] = {NULL};
    expect_ok(tern_tensor_create_copy(TERN_FLOAT, 1, &n, x, sizeof x, &in));
    const char *names[1] = {"x"};
    int64_t wait_ns = -1, run_ns = -1;
    expect_ok(
        version_run_timed(v, 1, names, (const tern_tensor *const *)&in, out, &wait_ns, &run_ns));
    assert_true(wait_ns >= 0 && run_ns > 0);
    assert_int_equal(tern_tensor_rank(out[0]), 2);
    assert_int_equal(tern_tensor_dims(out[0])[0], 2);
    assert_int_equal(tern_tensor_dims(out[0])[1], 2);
    tern_tensor_free(in);
    tern_tensor_free(out[0]);
    store_release(v);

    /* a warm-up that was asked for and fails fails the load */
    put_config(repo, "r", "warmup: [{name: x, shape: [3]}]\n");
    expect_error(store_load(s, "r"), TERN_ERR_RUNTIME, "warm-up", "version 1");
    char reason[512];
    assert_string_equal(index_state(s, "r", "1", reason, sizeof reason), "READY");
    assert_non_null(strstr(reason, "warm-up"));
    /* and one that fits succeeds */
    put_config(repo, "r", "warmup: [{name: x, shape: [6]}]\n");
    expect_ok(store_load(s, "r"));
    assert_string_equal(index_state(s, "r", "1", reason, sizeof reason), "READY");
    assert_string_equal(reason, "");
    store_free(s);
    rm_rf(repo);
    free(repo);
}

static void test_config_errors(void **state)
{
    (void)state;
    struct {
        const char *yaml;
        const char *key; /* the message must name it */
        const char *what;
    } cases[] = {
        {"instances: 0\n", "instances", "out of range"},
        {"instances: two\n", "instances", "expected an integer"},
        {"threads: 1.5\n", "threads", "expected an integer"},
        {"max_batch_size: -1\n", "max_batch_size", "out of range"},
        {"version_policy: {latest: {num_versions: 0}}\n", "version_policy.latest.num_versions",
         "out of range"},
        {"version_policy: sometimes\n", "version_policy", "sometimes"},
        {"version_policy: {newest: 2}\n", "version_policy.newest", "unknown policy"},
        {"version_policy: {specific: []}\n", "version_policy.specific", "empty"},
        {"version_policy: {specific: [1, x]}\n", "version_policy.specific[1]", "integer"},
        {"inputs: [{name: x, datatype: FP33}]\n", "inputs[0].datatype", "FP33"},
        {"inputs: [{datatype: FP32}]\n", "inputs[0]", "missing key 'name'"},
        {"inputs: [{name: x, size: 3}]\n", "inputs[0].size", "unknown key"},
        {"inputs: [{name: nope, datatype: FP32}]\n", "inputs[0]", "no input 'nope'"},
        {"inputs: [{name: x, datatype: INT64}]\n", "inputs[0].datatype", "FP32"},
        {"inputs: [{name: x, shape: [-1, 5]}]\n", "inputs[0].shape", "does not fit"},
        {"inputs: [{name: x}, {name: x}]\n", "inputs[1]", "twice"},
        {"outputs: [{name: z}]\n", "outputs[0]", "no output 'z'"},
        {"inputs: {name: x}\n", "inputs", "expected a list"},
        {"warmup: [{name: x, shape: [1, 5]}]\n", "warmup[0].shape[1]", "5"},
        {"warmup: [{name: x, shape: [1]}]\n", "warmup[0].shape", "rank 1"},
        {"warmup: [{name: q, shape: [1, 4]}]\n", "warmup[0]", "no input 'q'"},
        {"warmup: [{name: x}]\n", "warmup[0]", "missing key 'shape'"},
        {"warmup: [{name: x, shape: [1, -1]}]\n", "warmup[0].shape[1]", "out of range"},
        {"colour: red\n", "colour", "unknown key"},
        {"platform: tensorflow\n", "platform", "tensorflow"},
        {"name: other\n", "name", "does not match"},
        {"- a list\n", "config.yaml", "expected a mapping"},
        {"a: [1, 2\nb: }\n", "line", "column"},
        {"instances: 1\ninstances: 2\n", "line 2", "duplicate"},
    };
    char *repo = new_repo();
    put_add(repo, "m", 1, 1);
    const char *startup[] = {"m"};
    model_store *s = open_store(repo, STORE_EXPLICIT, startup, 1, 0);
    assert_true(store_ready(s, "m", 1));
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        put_config(repo, "m", cases[i].yaml);
        tern_status *st = store_load(s, "m");
        if (!st) fail_msg("case %zu (%s): loaded", i, cases[i].yaml);
        const char *m = tern_status_message(st);
        if (!strstr(m, "config.yaml") || !strstr(m, cases[i].key) || !strstr(m, cases[i].what))
            fail_msg("case %zu: '%s' should name config.yaml, '%s' and '%s'", i, m, cases[i].key,
                     cases[i].what);
        tern_status_free(st);
        /* the serving version stays; the index says why the config failed */
        assert_float_equal(infer(s, "m", 0), 1, 0);
        char reason[512];
        assert_string_equal(index_state(s, "m", "1", reason, sizeof reason), "READY");
        assert_non_null(strstr(reason, "config.yaml"));
    }
    store_free(s);

    /* with nothing serving, the model-level entry carries the reason */
    put_config(repo, "m", "instances: -3\n");
    s = open_store(repo, STORE_NONE, NULL, 0, 0);
    assert_false(store_ready(s, "m", 0));
    char reason[512];
    assert_string_equal(index_state(s, "m", NULL, reason, sizeof reason), "UNAVAILABLE");
    assert_non_null(strstr(reason, "instances"));
    acquire_fails(s, "m", 0, TERN_ERR_RUNTIME, "not ready");
    store_free(s);
    rm_rf(repo);
    free(repo);
}

/* Captures what the store logs on stderr while fn runs. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/stderr.txt", work_dir);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)len + 1);
    assert_int_equal(pread(fd, buf, (size_t)len, 0), len);
    close(fd);
    return buf;
}

static void load_m(void *arg)
{
    model_store *s = arg;
    tern_status *st = store_load(s, "m");
    assert_non_null(st);
    assert_non_null(strstr(tern_status_message(st), "version 2"));
    tern_status_free(st);
}

static void test_broken_version_keeps_serving(void **state)
{
    (void)state;
    char *repo = new_repo();
    put_add(repo, "m", 1, 1);
    const char *startup[] = {"m"};
    model_store *s = open_store(repo, STORE_EXPLICIT, startup, 1, 0);
    assert_float_equal(infer(s, "m", 0), 1, 0);

    /* a corrupt newer version: load fails, is logged and reported, v1 serves */
    put_garbage(repo, "m", 2);
    char *log = capture_stderr(load_m, s);
    assert_non_null(strstr(log, "\"level\":\"error\""));
    assert_non_null(strstr(log, "\"model\":\"m\""));
    assert_non_null(strstr(log, "\"version\":2"));
    free(log);
    assert_float_equal(infer(s, "m", 0), 1, 0);
    assert_true(store_ready(s, "m", 1));
    char reason[512];
    assert_string_equal(index_state(s, "m", "2", reason, sizeof reason), "UNAVAILABLE");
    assert_true(strlen(reason) > 0);
    assert_string_equal(index_state(s, "m", "1", NULL, 0), "READY");
    acquire_fails(s, "m", 2, TERN_ERR_RUNTIME, "version 2 is not ready");

    /* a version folder without model.onnx fails the same way */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/m/3", repo);
    mkdirs(dir);
    expect_error(store_load(s, "m"), TERN_ERR_NOT_FOUND, "model.onnx", "version 3");
    assert_float_equal(infer(s, "m", 0), 1, 0);
    rm_rf(dir);

    /* fixing version 2 swaps it in and retires version 1 (latest 1) */
    put_add(repo, "m", 2, 2);
    expect_ok(store_load(s, "m"));
    assert_float_equal(infer(s, "m", 0), 2, 0);
    assert_false(store_ready(s, "m", 1));
    assert_string_equal(index_state(s, "m", "2", reason, sizeof reason), "READY");
    assert_string_equal(reason, "");

    /* a broken replacement of the serving file: the loaded copy stays */
    put_garbage(repo, "m", 2);
    tern_status *st = store_load(s, "m");
    assert_non_null(st);
    tern_status_free(st);
    assert_float_equal(infer(s, "m", 2), 2, 0);
    assert_string_equal(index_state(s, "m", "2", reason, sizeof reason), "READY");
    assert_non_null(strstr(reason, "reload failed"));
    assert_int_equal(store_live_versions(s), 1);
    store_free(s);
    rm_rf(repo);
    free(repo);
}

static void test_poll_mode(void **state)
{
    (void)state;
    char *repo = new_repo();
    put_add(repo, "m", 1, 1);
    /* a long period: the test drives the rescans itself */
    model_store *s = open_store(repo, STORE_POLL, NULL, 0, 3600);
    assert_float_equal(infer(s, "m", 0), 1, 0);

    /* a new version folder */
    put_add(repo, "m", 2, 2);
    store_poll_once(s);
    assert_float_equal(infer(s, "m", 0), 2, 0);
    assert_false(store_ready(s, "m", 1));

    /* removed: version 1 is the latest again */
    rm_version(repo, "m", 2);
    store_poll_once(s);
    assert_false(store_ready(s, "m", 2));
    assert_float_equal(infer(s, "m", 0), 1, 0);
    assert_string_equal(index_state(s, "m", "2", NULL, 0), "-");

    /* a changed model.onnx is reloaded under the same number */
    put_add(repo, "m", 1, 7);
    store_poll_once(s);
    assert_float_equal(infer(s, "m", 1), 7, 0);
    assert_int_equal(store_live_versions(s), 1);

    /* a corrupt file dropped in disturbs nothing, and is not retried */
    put_garbage(repo, "m", 3);
    store_poll_once(s);
    assert_float_equal(infer(s, "m", 0), 7, 0);
    char reason[512];
    assert_string_equal(index_state(s, "m", "3", reason, sizeof reason), "UNAVAILABLE");
    assert_true(strlen(reason) > 0);
    tern_status *err = NULL;
    model_version *before = store_acquire(s, "m", 1, &err);
    store_poll_once(s);
    model_version *after = store_acquire(s, "m", 1, &err);
    assert_ptr_equal(before, after);
    store_release(before);
    store_release(after);
    assert_float_equal(infer(s, "m", 0), 7, 0);

    /* ... and a corrupt replacement of the serving file neither */
    rm_version(repo, "m", 3);
    store_poll_once(s);
    put_garbage(repo, "m", 1);
    store_poll_once(s);
    assert_float_equal(infer(s, "m", 1), 7, 0);
    assert_string_equal(index_state(s, "m", "1", reason, sizeof reason), "READY");
    assert_non_null(strstr(reason, "reload failed"));
    put_add(repo, "m", 1, 1);
    store_poll_once(s);
    assert_float_equal(infer(s, "m", 0), 1, 0);

    /* a broken config.yaml keeps the versions, a fixed one reloads them */
    put_config(repo, "m", "instances: [\n");
    store_poll_once(s);
    assert_float_equal(infer(s, "m", 0), 1, 0);
    put_config(repo, "m", "instances: 2\n");
    store_poll_once(s);
    assert_float_equal(infer(s, "m", 0), 1, 0);
    json_t *cfg = parse(store_config_json(s, "m", &err));
    json_t *ig = json_array_get(json_object_get(cfg, "instance_group"), 0);
    assert_int_equal(json_integer_value(json_object_get(ig, "count")), 2);
    json_decref(cfg);

    /* new and removed model folders */
    put_add(repo, "other", 5, 5);
    store_poll_once(s);
    assert_float_equal(infer(s, "other", 0), 5, 0);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/other", repo);
    rm_rf(dir);
    store_poll_once(s);
    acquire_fails(s, "other", 0, TERN_ERR_NOT_FOUND, "unknown model");
    assert_string_equal(index_state(s, "other", NULL, NULL, 0), "-");

    /* unload through the API sticks across polls; load brings it back */
    expect_ok(store_unload(s, "m"));
    store_poll_once(s);
    assert_false(store_ready(s, "m", 0));
    expect_ok(store_load(s, "m"));
    assert_true(store_ready(s, "m", 0));
    store_free(s);

    /* the poll thread itself */
    s = open_store(repo, STORE_POLL, NULL, 0, 1);
    put_add(repo, "m", 4, 4);
    for (int i = 0; i < 100 && !store_ready(s, "m", 4); i++) usleep(50 * 1000);
    assert_true(store_ready(s, "m", 4));
    assert_float_equal(infer(s, "m", 0), 4, 0);
    store_free(s); /* stops the thread */
    rm_rf(repo);
    free(repo);
}

static void test_hold_across_swap(void **state)
{
    (void)state;
    char *repo = new_repo();
    put_add(repo, "m", 1, 1);
    const char *startup[] = {"m"};
    model_store *s = open_store(repo, STORE_EXPLICIT, startup, 1, 0);
    tern_status *err = NULL;
    model_version *old = store_acquire(s, "m", 0, &err);
    assert_non_null(old);

    /* swap version 1 for a new file */
    put_add(repo, "m", 1, 5);
    expect_ok(store_load(s, "m"));
    assert_float_equal(infer(s, "m", 0), 5, 0);
    assert_int_equal(store_live_versions(s), 2);
    assert_float_equal(run_delta(old, NULL, 0), 1, 0); /* the old one still runs */
    store_release(old);
    assert_int_equal(store_live_versions(s), 1); /* and is freed */

    /* a new version number: the held old one drains the same way */
    old = store_acquire(s, "m", 0, &err);
    put_add(repo, "m", 2, 2);
    expect_ok(store_load(s, "m"));
    assert_false(store_ready(s, "m", 1));
    assert_int_equal(store_live_versions(s), 2);
    assert_float_equal(run_delta(old, NULL, 0), 5, 0);
    store_release(old);
    assert_int_equal(store_live_versions(s), 1);

    /* and across an unload */
    old = store_acquire(s, "m", 0, &err);
    expect_ok(store_unload(s, "m"));
    assert_int_equal(store_live_versions(s), 1);
    assert_float_equal(run_delta(old, NULL, 0), 2, 0);
    store_release(old);
    assert_int_equal(store_live_versions(s), 0);
    store_free(s);
    rm_rf(repo);
    free(repo);
}

typedef struct client {
    model_store *s;
    atomic_int *stop;
    int runs, failures, bad_values;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    while (!atomic_load(c->stop) || c->runs < 50) {
        tern_status *err = NULL;
        model_version *v = store_acquire(c->s, "m", 0, &err);
        if (!v) {
            c->failures++;
            tern_status_free(err);
            continue;
        }
        float d = run_delta(v, NULL, 0);
        int64_t number = version_number(v);
        store_release(v);
        c->runs++;
        if (d == -1000) c->failures++;
        /* version n of this test is add_n: the value names the version */
        else if (d != (float)number || d < 1 || d > 6)
            c->bad_values++;
    }
    return NULL;
}

static void test_concurrent_runs_and_swaps(void **state)
{
    (void)state;
    char *repo = new_repo();
    put_config(repo, "m", "instances: 2\n");
    put_add(repo, "m", 1, 1);
    const char *startup[] = {"m"};
    model_store *s = open_store(repo, STORE_EXPLICIT, startup, 1, 0);
    enum { N = 8 };
    pthread_t th[N];
    client cl[N];
    atomic_int stop = 0;
    for (int i = 0; i < N; i++) {
        cl[i] = (client){.s = s, .stop = &stop};
        assert_int_equal(pthread_create(&th[i], NULL, client_main, &cl[i]), 0);
    }
    for (int v = 2; v <= 6; v++) {
        usleep(20 * 1000);
        put_add(repo, "m", v, v);
        expect_ok(store_load(s, "m"));
    }
    usleep(20 * 1000);
    atomic_store(&stop, 1);
    int runs = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(cl[i].failures, 0);
        assert_int_equal(cl[i].bad_values, 0);
        runs += cl[i].runs;
    }
    assert_true(runs >= N * 50);
    assert_float_equal(infer(s, "m", 0), 6, 0);
    assert_int_equal(store_live_versions(s), 1);
    store_free(s);
    rm_rf(repo);
    free(repo);
}

typedef struct holder {
    model_store *s;
    atomic_int held;
    float delta;
} holder;

static void *holder_main(void *arg)
{
    holder *h = arg;
    tern_status *err = NULL;
    model_version *v = store_acquire(h->s, "m", 0, &err);
    atomic_store(&h->held, 1);
    usleep(300 * 1000);
    h->delta = v ? run_delta(v, NULL, 0) : -1000;
    store_release(v);
    tern_status_free(err);
    return NULL;
}

static void test_free_waits_for_held_versions(void **state)
{
    (void)state;
    char *repo = new_repo();
    put_add(repo, "m", 1, 3);
    model_store *s = open_store(repo, STORE_POLL, NULL, 0, 1);
    holder h = {.s = s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, holder_main, &h), 0);
    while (!atomic_load(&h.held)) usleep(1000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    store_free(s);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_join(th, NULL);
    assert_float_equal(h.delta, 3, 0);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(waited >= 0.2);
    rm_rf(repo);
    free(repo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_name),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_none_mode_loads_all),
        cmocka_unit_test(test_metadata_datatypes),
        cmocka_unit_test(test_explicit_load_unload),
        cmocka_unit_test(test_version_policies),
        cmocka_unit_test(test_config_good),
        cmocka_unit_test(test_warmup),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_broken_version_keeps_serving),
        cmocka_unit_test(test_poll_mode),
        cmocka_unit_test(test_hold_across_swap),
        cmocka_unit_test(test_concurrent_runs_and_swaps),
        cmocka_unit_test(test_free_waits_for_held_versions),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

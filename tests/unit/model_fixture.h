/*
 * For the unit tests that run models a python script writes (memplan,
 * inplace): main's arguments PYTHON SCRIPT OUT_DIR, the group setup that
 * runs the script, and loading the .npy files it leaves. Include after
 * cmocka.h; one translation unit per test program.
 */
#ifndef TERN_TESTS_MODEL_FIXTURE_H
#define TERN_TESTS_MODEL_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include "cli/npy.h"
#include "core/tensor.h"

static const char *python, *script, *out_dir;

/* OUT_DIR/<model>.<set>.<kind>.<name>.npy, or the test fails. */
static tern_tensor *load(const char *model, int set, const char *kind, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.%d.%s.%s.npy", out_dir, model, set, kind, name);
    tern_tensor *t = NULL;
    tern_status *st = npy_read(path, &t);
    if (st) fail_msg("%s: %s", path, tern_status_message(st));
    return t;
}

/* cmocka group setup: writes the models and their references. */
static int make_models(void **state)
{
    (void)state;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", python, script, out_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Takes PYTHON SCRIPT OUT_DIR from main's arguments; false (after a usage
 * line) if they are not there. */
static bool fixture_args(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PYTHON MODELS_SCRIPT OUT_DIR\n", argv[0]);
        return false;
    }
    python = argv[1], script = argv[2], out_dir = argv[3];
    return true;
}

#endif

/*
 * NumPy .npy files (format versions 1.0 to 3.0): the CLI's way to pass
 * tensors in and out. Reading accepts little-endian numeric and bool arrays
 * in C order, and unicode strings ('<U'); writing produces version 1.0 (or
 * 2.0 when the header needs it) with the dtype numpy would choose.
 */
#ifndef TERN_CLI_NPY_H
#define TERN_CLI_NPY_H

#include "tern/engine.h"

/* Reads a .npy file into a new tensor the caller frees. */
tern_status *npy_read(const char *path, tern_tensor **out);
/* Writes a tensor; strings become numpy unicode ('<Un'). */
tern_status *npy_write(const char *path, const tern_tensor *t);

/* The file name (without ".npy") for a tensor called `name`: characters
 * outside [A-Za-z0-9._-] become '_'; an empty, "." or ".." result becomes
 * "output_<index>". */
void npy_safe_name(const char *name, int index, char *buf, size_t size);

#endif

/*
 * The conventions every tern subcommand follows: the one-line error, the
 * argument errors and --input NAME=FILE.npy, and the error of a libcurl
 * transfer (tern infer and tern bench's setup requests).
 */
#ifndef TERN_CLI_ARGS_H
#define TERN_CLI_ARGS_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "core/tensor.h"

/* Prints "tern: error: MESSAGE" (after flushing stdout), frees st, returns 1. */
int cli_fail(tern_status *st);

/* An argument no option took: "S wants a value" when S is one of the
 * options that take one (valued, n of them), else "unexpected argument". */
void cli_bad_argument(const char *s, const char *const *valued, size_t n);

/* --input NAME=FILE.npy: splits spec (its '=' becomes NUL; *name points
 * into it) and reads the file. Returns 0, or the exit status after printing
 * the error: 2 for a malformed spec, 1 for a file that cannot be read. */
int cli_read_input(char *spec, const char **name, tern_tensor **t);

/* The status of a finished curl_easy_perform on url: NULL, or an error
 * naming url (no_memory: the response did not fit in memory). */
tern_status *cli_curl_result(CURLcode rc, const char *url, const char *errbuf, bool no_memory);

#endif

/*
 * The codec's fast lane for flat numeric `data` lists (kserve_fast.c): find
 * them in the JSON text, hand jansson the rest, convert the numbers directly.
 */
#ifndef TERN_SERVER_KSERVE_FAST_H
#define TERN_SERVER_KSERVE_FAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tern/engine.h"

#define KFAST_MAX 64 /* inputs past this index take the full path */

typedef struct kfast_list {
    const char *text; /* the list, '[' to ']', inside the body; NULL if none */
    size_t len;
} kfast_list;

typedef struct kfast {
    kfast_list lists[KFAST_MAX]; /* by input index */
    int n_lists;
} kfast;

/* Finds the root.inputs[i].data lists (they are checked when converted).
 * False when there are none or the text is not shaped as the lane expects
 * (the caller then parses the body as it is). */
bool kfast_scan(const char *js, size_t len, kfast *f);
/* A malloc'd copy of js with every found list replaced by [] (NUL ended). */
char *kfast_strip(const char *js, size_t len, const kfast *f, size_t *out_len);
/* Converts a found list into dst: exactly count elements of dt. False when
 * the list is not a flat list of count strict JSON numbers, a value does not
 * fit dt exactly, or dt is not a numeric type the lane handles. */
bool kfast_convert(const kfast_list *l, tern_dtype dt, int64_t count, void *dst);

#endif

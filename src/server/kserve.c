/*
 * KServe v2 codec: request JSON (+ Triton binary tensors) in, tern tensors
 * out; tern tensors in, response JSON (+ binary tensors) out.
 *
 * Decoding. jansson parses the JSON header into a tree that the request keeps
 * (r->json): names and the id point into it, so nothing is copied twice. A
 * tensor given as JSON `data` is checked in two steps before any allocation
 * that depends on its size: first the nesting (flat, or nested lists whose
 * lengths agree level by level; deeper than TERN_MAX_RANK is refused) and
 * its element count against the declared shape, then one tight loop per
 * innermost list converts the values into a buffer the tensor owns. Numbers
 * must fit the datatype exactly: an integer type takes integers (or reals
 * with no fraction) inside its range, a float type takes any number that
 * does not overflow it, BOOL takes true/false, BYTES takes strings. jansson
 * refuses integers beyond int64, so a UINT64 above 2^63-1 can only be sent
 * as binary.
 *
 * A binary input (parameters.binary_data_size) takes the next N bytes after
 * the JSON header, in input order, and the bytes must be used exactly. The
 * tensor points into the caller's body (owns=false) - unless that address is
 * not aligned to the element size (a 1-byte tensor before a float one puts
 * the float one at an odd offset), in which case the bytes are copied into an
 * owned, malloc-aligned buffer so kernels never read misaligned data. BOOL
 * bytes must be 0 or 1 (anything else is not a valid C bool). BYTES are
 * 4-byte little-endian lengths each followed by the bytes; they are copied
 * into NUL-terminated strings, so an element holding a NUL byte is refused.
 *
 * A requested output is binary when its parameters.binary_data says so, or,
 * when that is absent, when the request's parameters.binary_data_output does
 * (Triton's rule): kserve_output_req.binary is that final answer.
 *
 * Encoding writes the JSON by hand into one growing buffer (no jansson tree:
 * a big float output would cost an allocation per element). Floats are
 * printed in the shortest form that reads back to the same value in their
 * own type (FP16/BF16 judged against their own neighbours, FP32 against
 * float's, FP64 by trying 15, 16, then 17 digits); the digits come from
 * double arithmetic and every candidate is checked against the distance to
 * the neighbouring values with a safety margin, so the result always round
 * trips. JSON has no NaN or infinity: they are written as null. Strings are
 * escaped; bytes that are not valid UTF-8 become U+FFFD in JSON (binary
 * outputs carry the raw bytes).
 */
#include "server/kserve.h"

#include <jansson.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "server/kserve_fast.h"

#define BAD(...) tern_error(TERN_ERR_INVALID_ARGUMENT, __VA_ARGS__)
#define OOM() tern_error(TERN_ERR_NO_MEMORY, "out of memory")

/* tensor_set_shape's own cap; checked early so byte sizes cannot overflow. */
#define KS_MAX_NUMEL ((int64_t)1 << 40)
/* Above this many names, duplicates are found with a hash instead of a scan. */
#define KS_LINEAR_DUP_MAX 16

/* ---- datatypes ---------------------------------------------------------- */

static const struct {
    const char *name;
    tern_dtype dt;
} ks_types[] = {
    {"BOOL", TERN_BOOL},     {"UINT8", TERN_UINT8},   {"UINT16", TERN_UINT16},
    {"UINT32", TERN_UINT32}, {"UINT64", TERN_UINT64}, {"INT8", TERN_INT8},
    {"INT16", TERN_INT16},   {"INT32", TERN_INT32},   {"INT64", TERN_INT64},
    {"FP16", TERN_FLOAT16},  {"FP32", TERN_FLOAT},    {"FP64", TERN_DOUBLE},
    {"BYTES", TERN_STRING},  {"BF16", TERN_BFLOAT16},
};
#define KS_NTYPES (sizeof ks_types / sizeof ks_types[0])

tern_dtype kserve_dtype(const char *name)
{
    if (!name) return TERN_UNDEFINED;
    for (size_t i = 0; i < KS_NTYPES; i++)
        if (!strcmp(ks_types[i].name, name)) return ks_types[i].dt;
    return TERN_UNDEFINED;
}

const char *kserve_dtype_name(tern_dtype dt)
{
    for (size_t i = 0; i < KS_NTYPES; i++)
        if (ks_types[i].dt == dt) return ks_types[i].name;
    return NULL;
}

/* ---- decoding: helpers -------------------------------------------------- */

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* A heap tensor with its shape set and no data yet. */
static tern_status *ks_tensor_new(tern_dtype dt, int rank, const int64_t *dims, tern_tensor **out)
{
    tern_tensor *t = calloc(1, sizeof *t);
    if (!t) return OOM();
    t->kind = TENSOR_DENSE;
    t->dtype = dt;
    tern_status *st = tensor_set_shape(t, rank, dims);
    if (st) {
        free(t);
        return st;
    }
    *out = t;
    return NULL;
}

/* Finds a repeated string among names[0..n). Returns its index or -1; sets
 * *oom on allocation failure. */
static int find_duplicate(const char *const *names, int n, bool *oom)
{
    *oom = false;
    if (n <= KS_LINEAR_DUP_MAX) {
        for (int i = 1; i < n; i++)
            for (int j = 0; j < i; j++)
                if (!strcmp(names[i], names[j])) return i;
        return -1;
    }
    json_t *seen = json_object();
    if (!seen) {
        *oom = true;
        return -1;
    }
    int dup = -1;
    for (int i = 0; i < n && dup < 0; i++) {
        if (json_object_get(seen, names[i])) {
            dup = i;
        } else if (json_object_set_new(seen, names[i], json_true())) {
            *oom = true;
            break;
        }
    }
    json_decref(seen);
    return dup;
}

/* ---- decoding: JSON data ------------------------------------------------ */

typedef struct data_ctx {
    const char *name; /* input name, for messages */
    tern_dtype dt;
    void *dst;   /* tensor buffer */
    int64_t pos; /* flat index of the next element */
} data_ctx;

static tern_status *elem_type_err(const data_ctx *c, int64_t i, const json_t *e, const char *need)
{
    if (json_is_array(e))
        return BAD("input '%s': element %lld of data is a list, but the lists are not nested "
                   "consistently",
                   c->name, (long long)i);
    return BAD("input '%s': element %lld of data is %s; %s needs %s", c->name, (long long)i,
               json_kind(e), kserve_dtype_name(c->dt), need);
}

/* Reads an integer element into *v, range-checked against [lo, hi]. */
static inline tern_status *elem_int(const data_ctx *c, int64_t i, const json_t *e, long long lo,
                                    long long hi, long long *v)
{
    if (json_is_integer(e)) {
        *v = json_integer_value(e);
        if (*v < lo || *v > hi)
            return BAD("input '%s': element %lld of data (%lld) is out of range for %s", c->name,
                       (long long)i, *v, kserve_dtype_name(c->dt));
        return NULL;
    }
    if (!json_is_real(e)) return elem_type_err(c, i, e, "integers");
    double d = json_real_value(e);
    if (d != floor(d))
        return BAD("input '%s': element %lld of data (%.17g) is not an integer, as %s requires",
                   c->name, (long long)i, d, kserve_dtype_name(c->dt));
    /* Every bound but INT64_MAX is exact as a double; 2^63 is, and bounds
     * INT64_MAX from above. */
    if (d < (double)lo || d >= 9223372036854775808.0 || d > (double)hi)
        return BAD("input '%s': element %lld of data (%.17g) is out of range for %s", c->name,
                   (long long)i, d, kserve_dtype_name(c->dt));
    *v = (long long)d;
    return NULL;
}

static inline tern_status *elem_num(const data_ctx *c, int64_t i, const json_t *e, double *v)
{
    if (json_is_real(e))
        *v = json_real_value(e);
    else if (json_is_integer(e))
        *v = (double)json_integer_value(e);
    else
        return elem_type_err(c, i, e, "numbers");
    return NULL;
}

/* Half an ulp above FLT_MAX: the smallest magnitude that rounds to infinity. */
#define F32_OVERFLOW 0x1.ffffffp127

static inline tern_status *elem_f32(const data_ctx *c, int64_t i, const json_t *e, float *f)
{
    double v = 0;
    TERN_TRY(elem_num(c, i, e, &v));
    if (fabs(v) >= F32_OVERFLOW)
        return BAD("input '%s': element %lld of data (%.17g) is out of range for %s", c->name,
                   (long long)i, v, kserve_dtype_name(c->dt));
    *f = fabs(v) > FLT_MAX ? (v < 0 ? -FLT_MAX : FLT_MAX) : (float)v;
    return NULL;
}

#define CONV_INT(T, LO, HI)                                                                        \
    do {                                                                                           \
        T *d = (T *)c->dst + c->pos;                                                               \
        for (size_t k = 0; k < n; k++) {                                                           \
            long long v = 0;                                                                       \
            TERN_TRY(elem_int(c, c->pos + (int64_t)k, json_array_get(list, k), LO, HI, &v));       \
            d[k] = (T)v;                                                                           \
        }                                                                                          \
    } while (0)

/* Converts one innermost list of scalars into the tensor buffer. */
static tern_status *convert_list(data_ctx *c, const json_t *list)
{
    size_t n = json_array_size(list);
    switch (c->dt) {
    case TERN_FLOAT: {
        float *d = (float *)c->dst + c->pos;
        for (size_t k = 0; k < n; k++) {
            const json_t *e = json_array_get(list, k);
            if (json_is_real(e)) { /* the common case, kept short */
                double v = json_real_value(e);
                if (fabs(v) <= FLT_MAX) {
                    d[k] = (float)v;
                    continue;
                }
            }
            TERN_TRY(elem_f32(c, c->pos + (int64_t)k, e, &d[k]));
        }
        break;
    }
    case TERN_DOUBLE: {
        double *d = (double *)c->dst + c->pos;
        for (size_t k = 0; k < n; k++)
            TERN_TRY(elem_num(c, c->pos + (int64_t)k, json_array_get(list, k), &d[k]));
        break;
    }
    case TERN_FLOAT16:
    case TERN_BFLOAT16: {
        uint16_t *d = (uint16_t *)c->dst + c->pos;
        bool half = c->dt == TERN_FLOAT16;
        for (size_t k = 0; k < n; k++) {
            float f = 0;
            TERN_TRY(elem_f32(c, c->pos + (int64_t)k, json_array_get(list, k), &f));
            d[k] = half ? f32_to_f16(f) : f32_to_bf16(f);
            if ((d[k] & 0x7fff) == (half ? 0x7c00 : 0x7f80))
                return BAD("input '%s': element %lld of data (%.9g) is out of range for %s",
                           c->name, (long long)(c->pos + (int64_t)k), f, kserve_dtype_name(c->dt));
        }
        break;
    }
    case TERN_BOOL: {
        bool *d = (bool *)c->dst + c->pos;
        for (size_t k = 0; k < n; k++) {
            const json_t *e = json_array_get(list, k);
            if (!json_is_boolean(e))
                return elem_type_err(c, c->pos + (int64_t)k, e, "true or false");
            d[k] = json_is_true(e);
        }
        break;
    }
    case TERN_STRING: {
        char **d = (char **)c->dst + c->pos;
        for (size_t k = 0; k < n; k++) {
            const json_t *e = json_array_get(list, k);
            if (!json_is_string(e)) return elem_type_err(c, c->pos + (int64_t)k, e, "strings");
            size_t l = json_string_length(e);
            if (!(d[k] = malloc(l + 1))) return OOM();
            memcpy(d[k], json_string_value(e), l + 1);
        }
        break;
    }
    case TERN_INT8: CONV_INT(int8_t, INT8_MIN, INT8_MAX); break;
    case TERN_INT16: CONV_INT(int16_t, INT16_MIN, INT16_MAX); break;
    case TERN_INT32: CONV_INT(int32_t, INT32_MIN, INT32_MAX); break;
    case TERN_INT64: CONV_INT(int64_t, INT64_MIN, INT64_MAX); break;
    case TERN_UINT8: CONV_INT(uint8_t, 0, UINT8_MAX); break;
    case TERN_UINT16: CONV_INT(uint16_t, 0, UINT16_MAX); break;
    case TERN_UINT32: CONV_INT(uint32_t, 0, UINT32_MAX); break;
    case TERN_UINT64: {
        uint64_t *d = (uint64_t *)c->dst + c->pos;
        for (size_t k = 0; k < n; k++) {
            const json_t *e = json_array_get(list, k);
            if (json_is_real(e)) { /* a real may reach up to 2^64 */
                double v = json_real_value(e);
                if (v >= 9223372036854775808.0 && v < 18446744073709551616.0 && v == floor(v)) {
                    d[k] = (uint64_t)v;
                    continue;
                }
            }
            long long v = 0;
            TERN_TRY(elem_int(c, c->pos + (int64_t)k, e, 0, INT64_MAX, &v));
            d[k] = (uint64_t)v;
        }
        break;
    }
    default: return BAD("input '%s': unsupported datatype", c->name);
    }
    c->pos += (int64_t)n;
    return NULL;
}

/* Walks nested lists down to the innermost ones (depth levels in all). */
static tern_status *convert_nested(data_ctx *c, const json_t *list, int level, int depth)
{
    if (level == depth - 1) return convert_list(c, list);
    size_t n = json_array_size(list);
    for (size_t k = 0; k < n; k++)
        TERN_TRY(convert_nested(c, json_array_get(list, k), level + 1, depth));
    return NULL;
}

/* Checks that every list at a level has the length of the first one there
 * (dims[level]) and holds lists above the innermost level. */
static tern_status *check_nesting(const char *name, const json_t *list, int level, int depth,
                                  const int64_t *dims)
{
    if (level == depth - 1) return NULL;
    size_t n = json_array_size(list);
    for (size_t k = 0; k < n; k++) {
        const json_t *e = json_array_get(list, k);
        if (!json_is_array(e) || (int64_t)json_array_size(e) != dims[level + 1])
            return BAD("input '%s': data is not consistently nested: at depth %d a list holds %s "
                       "where the first holds a list of %lld elements",
                       name, level + 1,
                       json_is_array(e) ? "a list of a different length" : json_kind(e),
                       (long long)dims[level + 1]);
        TERN_TRY(check_nesting(name, e, level + 1, depth, dims));
    }
    return NULL;
}

static tern_status *decode_json_data(const char *name, const json_t *data, tern_tensor *t)
{
    if (!json_is_array(data))
        return BAD("input '%s': data must be a list, not %s", name, json_kind(data));
    int64_t dims[TERN_MAX_RANK];
    int depth = 0;
    for (const json_t *a = data;;) {
        if (depth == TERN_MAX_RANK)
            return BAD("input '%s': data is nested deeper than %d levels", name, TERN_MAX_RANK);
        dims[depth++] = (int64_t)json_array_size(a);
        if (!json_array_size(a) || !json_is_array(json_array_get(a, 0))) break;
        a = json_array_get(a, 0);
    }
    TERN_TRY(check_nesting(name, data, 0, depth, dims));
    int64_t count = shape_numel(depth, dims); /* consistent lists: real elements, no overflow */
    if (count != t->numel) {
        char sh[200];
        return BAD("input '%s': data has %lld elements but shape %s needs %lld", name,
                   (long long)count, shape_str(t->rank, t->dims, sh, sizeof sh),
                   (long long)t->numel);
    }
    size_t nb = (size_t)t->numel * dtype_elem_size(t->dtype);
    /* calloc: a failed BYTES conversion frees the strings made so far. */
    t->data = t->dtype == TERN_STRING ? calloc(1, nb ? nb : 1) : malloc(nb ? nb : 1);
    if (!t->data) return OOM();
    t->owns = true;
    data_ctx c = {.name = name, .dt = t->dtype, .dst = t->data, .pos = 0};
    return convert_nested(&c, data, 0, depth);
}

/* ---- decoding: binary data ---------------------------------------------- */

static tern_status *decode_binary_bytes(const char *name, const unsigned char *p, size_t n,
                                        tern_tensor *t)
{
    t->data = calloc(1, t->numel ? (size_t)t->numel * sizeof(char *) : 1);
    if (!t->data) return OOM();
    t->owns = true;
    char **s = t->data;
    size_t off = 0;
    int64_t i = 0;
    for (; off < n; i++) {
        if (n - off < 4)
            return BAD("input '%s': binary BYTES data ends inside the length of element %lld", name,
                       (long long)i);
        uint32_t l = (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 |
                     (uint32_t)p[off + 3] << 24;
        off += 4;
        if (l > n - off)
            return BAD("input '%s': binary BYTES element %lld has length %u but only %zu bytes "
                       "remain",
                       name, (long long)i, l, n - off);
        if (i >= t->numel) {
            char sh[200];
            return BAD("input '%s': binary BYTES data holds more than the %lld elements of shape "
                       "%s",
                       name, (long long)t->numel, shape_str(t->rank, t->dims, sh, sizeof sh));
        }
        if (memchr(p + off, 0, l))
            return BAD("input '%s': binary BYTES element %lld contains a NUL byte, which tern "
                       "strings cannot hold",
                       name, (long long)i);
        if (!(s[i] = malloc((size_t)l + 1))) return OOM();
        memcpy(s[i], p + off, l);
        s[i][l] = 0;
        off += l;
    }
    if (i != t->numel) {
        char sh[200];
        return BAD("input '%s': binary BYTES data has %lld elements but shape %s needs %lld", name,
                   (long long)i, shape_str(t->rank, t->dims, sh, sizeof sh), (long long)t->numel);
    }
    return NULL;
}

static tern_status *decode_binary(const char *name, const char *p, size_t n, tern_tensor *t)
{
    if (t->dtype == TERN_STRING) return decode_binary_bytes(name, (const unsigned char *)p, n, t);
    size_t es = tern_dtype_size(t->dtype);
    size_t need = (size_t)t->numel * es;
    if (n != need) {
        char sh[200];
        return BAD("input '%s': parameters.binary_data_size is %zu but shape %s of %s needs %zu "
                   "bytes",
                   name, n, shape_str(t->rank, t->dims, sh, sizeof sh), kserve_dtype_name(t->dtype),
                   need);
    }
    if (t->dtype == TERN_BOOL)
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)p[i] > 1)
                return BAD("input '%s': binary BOOL element %zu is %u, not 0 or 1", name, i,
                           (unsigned char)p[i]);
    if ((uintptr_t)p % es == 0) {
        t->data = (void *)(uintptr_t)p; /* zero copy: the body outlives the request */
        t->owns = false;
        return NULL;
    }
    if (!(t->data = malloc(n))) return OOM();
    memcpy(t->data, p, n);
    t->owns = true;
    return NULL;
}

/* ---- decoding: the request ---------------------------------------------- */

typedef struct bin_ctx {
    const char *body;
    size_t len;
    size_t start;      /* first binary byte: the JSON header's length */
    size_t off;        /* next unread binary byte */
    bool header;       /* Inference-Header-Content-Length was given */
    const kfast *fast; /* numbers found by the fast lane, or NULL */
} bin_ctx;

/* Returned by the fast lane when it cannot decode exactly as the full path
 * would: the request is then decoded again from the original body. */
static tern_status kfast_declined = {TERN_ERR_INVALID_ARGUMENT, "fast lane declined"};

static tern_status *decode_input(const json_t *in, int idx, bin_ctx *b, const kserve_limits *lim,
                                 const char **name_out, tern_tensor **out)
{
    if (!json_is_object(in))
        return BAD("inputs[%d]: must be an object, not %s", idx, json_kind(in));
    const json_t *jn = json_object_get(in, "name");
    if (!jn) return BAD("inputs[%d].name: missing", idx);
    if (!json_is_string(jn) || !json_string_length(jn))
        return BAD("inputs[%d].name: must be a non-empty string", idx);
    const char *name = json_string_value(jn);
    *name_out = name;

    const json_t *jd = json_object_get(in, "datatype");
    if (!jd) return BAD("inputs[%d].datatype: missing (input '%s')", idx, name);
    if (!json_is_string(jd))
        return BAD("inputs[%d].datatype: must be a string (input '%s')", idx, name);
    tern_dtype dt = kserve_dtype(json_string_value(jd));
    if (!dt)
        return BAD("inputs[%d].datatype: unknown datatype '%s' (input '%s')", idx,
                   json_string_value(jd), name);

    const json_t *js = json_object_get(in, "shape");
    if (!js) return BAD("inputs[%d].shape: missing (input '%s')", idx, name);
    if (!json_is_array(js))
        return BAD("inputs[%d].shape: must be a list of non-negative integers (input '%s')", idx,
                   name);
    size_t rank = json_array_size(js);
    if (rank > TERN_MAX_RANK)
        return BAD("inputs[%d].shape: rank %zu exceeds the maximum of %d (input '%s')", idx, rank,
                   TERN_MAX_RANK, name);
    int64_t dims[TERN_MAX_RANK];
    for (size_t k = 0; k < rank; k++) {
        const json_t *e = json_array_get(js, k);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return BAD("inputs[%d].shape[%zu]: must be a non-negative integer (input '%s')", idx, k,
                       name);
        dims[k] = json_integer_value(e);
    }
    int64_t numel = shape_numel((int)rank, dims);
    char sh[200];
    if (numel < 0 || numel > KS_MAX_NUMEL)
        return BAD("input '%s': shape %s has too many elements", name,
                   shape_str((int)rank, dims, sh, sizeof sh));
    if (lim && lim->max_elements > 0 && numel > lim->max_elements)
        return BAD("input '%s': shape %s has %lld elements, over the limit of %lld", name,
                   shape_str((int)rank, dims, sh, sizeof sh), (long long)numel,
                   (long long)lim->max_elements);

    long long bds = -1;
    const json_t *jp = json_object_get(in, "parameters");
    if (jp) {
        if (!json_is_object(jp))
            return BAD("inputs[%d].parameters: must be an object (input '%s')", idx, name);
        const json_t *jb = json_object_get(jp, "binary_data_size");
        if (jb) {
            if (!json_is_integer(jb) || json_integer_value(jb) < 0)
                return BAD("input '%s': parameters.binary_data_size must be a non-negative "
                           "integer",
                           name);
            bds = json_integer_value(jb);
        }
    }
    const json_t *data = json_object_get(in, "data");
    if (bds >= 0) {
        if (data) return BAD("input '%s': has both data and parameters.binary_data_size", name);
        if (!b->header)
            return BAD("input '%s': parameters.binary_data_size needs the "
                       "Inference-Header-Content-Length header",
                       name);
        if ((unsigned long long)bds > b->len - b->off)
            return BAD("input '%s': parameters.binary_data_size is %lld but only %zu bytes of "
                       "binary data remain in the body",
                       name, bds, b->len - b->off);
    } else if (!data) {
        return BAD("input '%s': data missing (and no parameters.binary_data_size)", name);
    }

    tern_tensor *t = NULL;
    TERN_TRY(ks_tensor_new(dt, (int)rank, dims, &t));
    tern_status *st;
    const kfast_list *fl =
        b->fast && idx < KFAST_MAX && b->fast->lists[idx].text ? &b->fast->lists[idx] : NULL;
    if (fl && bds < 0) {
        /* numbers straight from the text; anything irregular (and every
         * BOOL or BYTES input: strings must not be freed half made) goes
         * to the full path */
        size_t nb = (size_t)t->numel * dtype_elem_size(dt);
        st = NULL;
        /* n numbers take at least 2n - 1 bytes ("1,1"): a shape the text
         * cannot fill is the full path's count error, found before any
         * allocation of the shape's size */
        if (dt == TERN_STRING || dt == TERN_BOOL || t->numel > (int64_t)(fl->len / 2 + 1) ||
            !(t->data = malloc(nb ? nb : 1)))
            st = &kfast_declined;
        else {
            t->owns = true;
            if (!kfast_convert(fl, dt, t->numel, t->data)) st = &kfast_declined;
        }
    } else if (bds >= 0) {
        st = decode_binary(name, b->body + b->off, (size_t)bds, t);
        b->off += (size_t)bds;
    } else {
        st = decode_json_data(name, data, t);
    }
    if (st) {
        tern_tensor_free(t);
        return st;
    }
    *out = t;
    return NULL;
}

static tern_status *decode_outputs(const json_t *jo, kserve_request *r)
{
    if (!json_is_array(jo)) return BAD("outputs: must be a list, not %s", json_kind(jo));
    size_t n = json_array_size(jo);
    if (n > INT32_MAX) return BAD("outputs: too many");
    r->outputs = calloc(n ? n : 1, sizeof *r->outputs);
    if (!r->outputs) return OOM();
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(jo, i);
        if (!json_is_object(o)) return BAD("outputs[%zu]: must be an object", i);
        const json_t *jn = json_object_get(o, "name");
        if (!json_is_string(jn) || !json_string_length(jn))
            return BAD("outputs[%zu].name: %s", i, jn ? "must be a non-empty string" : "missing");
        kserve_output_req *q = &r->outputs[r->n_outputs++];
        q->name = json_string_value(jn);
        q->binary = r->binary_default; /* binary_data, when given, overrides the default */
        const json_t *jp = json_object_get(o, "parameters");
        if (jp) {
            if (!json_is_object(jp))
                return BAD("outputs[%zu].parameters: must be an object (output '%s')", i, q->name);
            const json_t *jb = json_object_get(jp, "binary_data");
            if (jb) {
                if (!json_is_boolean(jb))
                    return BAD("output '%s': parameters.binary_data must be true or false",
                               q->name);
                q->binary = json_is_true(jb);
            }
        }
    }
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names) return OOM();
    for (size_t i = 0; i < n; i++) names[i] = r->outputs[i].name;
    bool oom;
    int dup = find_duplicate(names, (int)n, &oom);
    free(names);
    if (oom) return OOM();
    if (dup >= 0)
        return BAD("outputs[%d].name: output '%s' is requested twice", dup, r->outputs[dup].name);
    return NULL;
}

static tern_status *decode_parameters(const json_t *jp, kserve_request *r)
{
    if (!json_is_object(jp)) return BAD("parameters: must be an object, not %s", json_kind(jp));
    const json_t *jb = json_object_get(jp, "binary_data_output");
    if (jb) {
        if (!json_is_boolean(jb))
            return BAD("parameters.binary_data_output: must be true or false, not %s",
                       json_kind(jb));
        r->binary_default = json_is_true(jb);
    }
    const json_t *jt = json_object_get(jp, "timeout");
    if (jt) {
        if (!json_is_integer(jt) || json_integer_value(jt) < 0)
            return BAD("parameters.timeout: must be a non-negative integer (microseconds)");
        r->timeout_us = json_integer_value(jt);
    }
    const json_t *jpr = json_object_get(jp, "priority");
    if (jpr) {
        if (!json_is_integer(jpr) || json_integer_value(jpr) < 0 ||
            json_integer_value(jpr) > INT32_MAX)
            return BAD("parameters.priority: must be a non-negative integer (1 is the highest "
                       "level, 0 the model's default)");
        r->priority = json_integer_value(jpr);
    }
    return NULL;
}

static tern_status *decode_root(const json_t *root, bin_ctx *b, const kserve_limits *lim,
                                kserve_request *r)
{
    if (!json_is_object(root))
        return BAD("request body must be a JSON object, not %s", json_kind(root));
    const json_t *jid = json_object_get(root, "id");
    if (jid) {
        if (!json_is_string(jid)) return BAD("id: must be a string, not %s", json_kind(jid));
        r->id = json_string_value(jid);
    }
    const json_t *jp = json_object_get(root, "parameters");
    if (jp) TERN_TRY(decode_parameters(jp, r));

    const json_t *ji = json_object_get(root, "inputs");
    if (!ji) return BAD("inputs: missing");
    if (!json_is_array(ji)) return BAD("inputs: must be a list, not %s", json_kind(ji));
    size_t n = json_array_size(ji);
    if (n > INT32_MAX) return BAD("inputs: too many");
    r->input_names = calloc(n ? n : 1, sizeof *r->input_names);
    r->inputs = calloc(n ? n : 1, sizeof *r->inputs);
    if (!r->input_names || !r->inputs) return OOM();
    for (size_t i = 0; i < n; i++) {
        TERN_TRY(
            decode_input(json_array_get(ji, i), (int)i, b, lim, &r->input_names[i], &r->inputs[i]));
        r->n_inputs = (int)i + 1;
    }
    bool oom;
    int dup = find_duplicate(r->input_names, (int)n, &oom);
    if (oom) return OOM();
    if (dup >= 0)
        return BAD("inputs[%d].name: input '%s' is given twice", dup, r->input_names[dup]);
    if (b->header && b->off != b->len)
        return BAD("the body holds %zu bytes of binary data after the JSON header but the inputs' "
                   "parameters.binary_data_size add up to %zu",
                   b->len - b->start, b->off - b->start);

    const json_t *jo = json_object_get(root, "outputs");
    if (jo) TERN_TRY(decode_outputs(jo, r));
    return NULL;
}

tern_status *kserve_decode_request(const char *body, size_t len, long long header_len,
                                   const kserve_limits *lim, kserve_request **out)
{
    *out = NULL;
    if (!body && len) return BAD("request body is missing");
    size_t jlen = len;
    if (header_len >= 0) {
        if ((unsigned long long)header_len > len)
            return BAD("Inference-Header-Content-Length is %lld but the body has only %zu bytes",
                       header_len, len);
        jlen = (size_t)header_len;
    }
    /* the fast lane first (kserve_fast.c); it declines rather than differ */
    kfast *fast = body && jlen ? malloc(sizeof *fast) : NULL;
    if (fast && kfast_scan(body, jlen, fast)) {
        size_t slen;
        char *stripped = kfast_strip(body, jlen, fast, &slen);
        json_t *froot = stripped ? json_loadb(stripped, slen, JSON_REJECT_DUPLICATES, NULL) : NULL;
        free(stripped);
        kserve_request *fr = froot ? calloc(1, sizeof *fr) : NULL;
        if (fr) {
            fr->json = froot;
            bin_ctx b = {.body = body,
                         .len = len,
                         .start = jlen,
                         .off = jlen,
                         .header = header_len >= 0,
                         .fast = fast};
            tern_status *st = decode_root(froot, &b, lim, fr);
            if (!st) {
                free(fast);
                *out = fr;
                return NULL;
            }
            kserve_request_free(fr);
            if (st != &kfast_declined) {
                free(fast);
                return st;
            }
        } else if (froot) {
            json_decref(froot);
        }
    }
    free(fast);
    json_error_t jerr;
    json_t *root = json_loadb(body ? body : "", jlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return BAD("request body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                   jerr.column);
    kserve_request *r = calloc(1, sizeof *r);
    if (!r) {
        json_decref(root);
        return OOM();
    }
    r->json = root;
    bin_ctx b = {.body = body, .len = len, .start = jlen, .off = jlen, .header = header_len >= 0};
    tern_status *st = decode_root(root, &b, lim, r);
    if (st) {
        kserve_request_free(r);
        return st;
    }
    *out = r;
    return NULL;
}

void kserve_request_free(kserve_request *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_inputs; i++) tern_tensor_free(r->inputs[i]);
    free(r->inputs);
    free(r->input_names);
    free(r->outputs);
    json_decref(r->json);
    free(r);
}

/* ---- encoding: an append-only buffer ------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool fail; /* an allocation failed: later writes are dropped */
} sbuf;

/* Room for n more bytes at p + len, or NULL (and fail set). */
static char *sb_room(sbuf *b, size_t n)
{
    if (b->fail) return NULL;
    if (n > b->cap - b->len) {
        if (n > SIZE_MAX / 4 - b->len) {
            b->fail = true;
            return NULL;
        }
        size_t cap = b->cap ? b->cap : 1024;
        while (cap - b->len < n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->fail = true;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

static void sb_put(sbuf *b, const void *s, size_t n)
{
    char *w = sb_room(b, n);
    if (!w) return;
    if (n) memcpy(w, s, n);
    b->len += n;
}

static void sb_lit(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* ---- encoding: numbers and strings -------------------------------------- */

static size_t fmt_u64(char *w, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) w[i] = tmp[n - 1 - i];
    return n;
}

static size_t fmt_i64(char *w, int64_t v)
{
    if (v >= 0) return fmt_u64(w, (uint64_t)v);
    w[0] = '-';
    return 1 + fmt_u64(w + 1, 0 - (uint64_t)v);
}

static const double P10[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29, 1e30, 1e31,
    1e32, 1e33, 1e34, 1e35, 1e36, 1e37, 1e38, 1e39, 1e40, 1e41, 1e42, 1e43, 1e44, 1e45, 1e46, 1e47,
    1e48, 1e49, 1e50, 1e51, 1e52, 1e53, 1e54, 1e55, 1e56, 1e57, 1e58, 1e59, 1e60,
};

/* Writes m * 10^E (m > 0) as a JSON number: fixed notation for magnitudes
 * from 1e-5 to below 1e16 (with ".0" when integral, so it reads as a float),
 * else d.ddde[-]x. */
static size_t fmt_digits(char *w, bool neg, uint64_t m, int E)
{
    char dg[20];
    size_t k = fmt_u64(dg, m);
    E += (int)k - 1; /* m * 10^E: its first digit weighs 10^(E + k - 1) */
    while (k > 1 && dg[k - 1] == '0') k--;
    char *o = w;
    if (neg) *o++ = '-';
    if (E >= 0 && E < 16) {
        if ((int)k <= E + 1) {
            memcpy(o, dg, k);
            o += k;
            for (int i = (int)k; i <= E; i++) *o++ = '0';
            memcpy(o, ".0", 2);
            o += 2;
        } else {
            memcpy(o, dg, (size_t)E + 1);
            o += E + 1;
            *o++ = '.';
            memcpy(o, dg + E + 1, k - (size_t)E - 1);
            o += k - (size_t)E - 1;
        }
    } else if (E < 0 && E >= -5) {
        *o++ = '0';
        *o++ = '.';
        for (int i = -1; i > E; i--) *o++ = '0';
        memcpy(o, dg, k);
        o += k;
    } else {
        *o++ = dg[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, dg + 1, k - 1);
            o += k - 1;
        }
        *o++ = 'e';
        o += fmt_i64(o, E);
    }
    return (size_t)(o - w);
}

/* Shortest decimal that reads back as v (> 0, finite) in a type whose
 * neighbours of v are v - below and v + above: any decimal strictly inside
 * (v - below/2, v + above/2) rounds to v.
 *
 * v is scaled once to s = v * 10^(8-e) in [1e8, 1e9), so that a decimal of
 * p significant digits is an integer multiple of 10^(9-p) there; the half
 * gaps are scaled alike. From 9 digits down, the two p-digit numbers around
 * s are tried (the floor, and the ceiling when digits were dropped); once
 * neither lies inside the interval no shorter one can, as every shorter
 * number is also a p-digit one. A candidate must clear the interval's ends by
 * 2^-10 of a half gap: far more than the double rounding here (~1e-16
 * relative), and enough for a reader that rounds to float on its way to
 * FP16/BF16. */
static size_t fmt_shortest(char *w, bool neg, double v, double below, double above)
{
    uint64_t bits;
    memcpy(&bits, &v, 8);
    int e2 = (int)(bits >> 52) - 1023; /* v in [2^e2, 2^(e2+1)); v is normal as a double */
    int e = (int)floor(e2 * 0.30102999566398120);
    double sc = 8 - e >= 0 ? P10[8 - e] : 1 / P10[e - 8];
    double s = v * sc;
    if (s >= 999999999.5) {
        e++;
        sc = 8 - e >= 0 ? P10[8 - e] : 1 / P10[e - 8];
        s = v * sc;
    }
    const double tol = 1.0 - 1.0 / 1024;
    double lo = below / 2 * tol * sc, hi = above / 2 * tol * sc;
    uint64_t N = (uint64_t)(s + 0.5);
    double dN = (double)N - s;
    if (!(dN >= 0 ? dN < hi : -dN < lo)) /* cannot happen: 9 digits always do */
        return (size_t)snprintf(w, 32, "%s%.9g", neg ? "-" : "", v);
    uint64_t best = N, m = N;
    int best_p = 9;
    bool dropped = false; /* nonzero digits dropped from N so far */
    for (int p = 8; p >= 1; p--) {
        dropped |= m % 10 != 0;
        m /= 10;
        double unit = P10[9 - p];
        double d0 = (double)m * unit - s, d1 = d0 + unit;
        bool ok0 = -d0 < lo, ok1 = dropped && d1 < hi; /* d0 <= 0 < d1 */
        if (ok0 && ok1) ok0 = -d0 <= d1;
        if (ok0)
            best = m;
        else if (ok1)
            best = m + 1;
        else
            break;
        best_p = p;
    }
    return fmt_digits(w, neg, best, e - best_p + 1);
}

/* Magnitude bits a (sign removed) of a float-like type: inf_bits is its
 * infinity; to_f maps magnitude bits to the value. */
#define FMT_FLOATLIKE(w, sign, a, inf_bits, to_f)                                                  \
    do {                                                                                           \
        if ((a) >= (inf_bits)) {                                                                   \
            memcpy(w, "null", 4);                                                                  \
            return 4;                                                                              \
        }                                                                                          \
        if ((a) == 0) {                                                                            \
            memcpy(w, (sign) ? "-0.0" : "0.0", (sign) ? 4 : 3);                                    \
            return (sign) ? 4 : 3;                                                                 \
        }                                                                                          \
        double v_ = to_f(a), below_ = v_ - to_f((a)-1);                                            \
        double above_ = (a) + 1 == (inf_bits) ? below_ : to_f((a) + 1) - v_;                       \
        return fmt_shortest(w, sign, v_, below_, above_);                                          \
    } while (0)

static inline double f32_bits(uint32_t a)
{
    float f = 0;
    memcpy(&f, &a, 4);
    return f;
}

static size_t fmt_f32(char *w, float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t a = x & 0x7fffffffu;
    FMT_FLOATLIKE(w, x >> 31, a, 0x7f800000u, f32_bits);
}

static inline double f16_bits(uint32_t a)
{
    return f16_to_f32((uint16_t)a);
}
static inline double bf16_bits(uint32_t a)
{
    return bf16_to_f32((uint16_t)a);
}

static size_t fmt_f16(char *w, uint16_t h)
{
    uint32_t a = h & 0x7fffu;
    FMT_FLOATLIKE(w, h >> 15, a, 0x7c00u, f16_bits);
}

static size_t fmt_bf16(char *w, uint16_t h)
{
    uint32_t a = h & 0x7fffu;
    FMT_FLOATLIKE(w, h >> 15, a, 0x7f80u, bf16_bits);
}

/* Doubles: the fewest of 15, 16, 17 significant digits that read back. */
static size_t fmt_f64(char *w, double v)
{
    if (!isfinite(v)) {
        memcpy(w, "null", 4);
        return 4;
    }
    int n = 0;
    for (int p = 15; p <= 17; p++) {
        n = snprintf(w, 32, "%.*g", p, v);
        if (strtod(w, NULL) == v) break;
    }
    if (!strpbrk(w, ".e")) {
        memcpy(w + n, ".0", 2);
        n += 2;
    }
    return (size_t)n;
}

/* A JSON string. Bytes that are not UTF-8 become U+FFFD. */
static void sb_str(sbuf *b, const char *s, size_t n)
{
    if (n > SIZE_MAX / 8) {
        b->fail = true;
        return;
    }
    char *w = sb_room(b, 6 * n + 2), *o = w;
    if (!w) return;
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    *o++ = '"';
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            i++;
            continue;
        }
        if (c < 0x80) {
            *o++ = '\\';
            switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            default:
                memcpy(o, "u00", 3);
                o[3] = hex[c >> 4];
                o[4] = hex[c & 15];
                o += 5;
            }
            i++;
            continue;
        }
        size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                     : c >= 0xe0 && c <= 0xef ? 3
                     : c >= 0xf0 && c <= 0xf4 ? 4
                                              : 0;
        uint32_t cp = c & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
        bool ok = len && len <= n - i;
        for (size_t k = 1; ok && k < len; k++) {
            ok = (u[i + k] & 0xc0) == 0x80;
            cp = cp << 6 | (u[i + k] & 0x3f);
        }
        if (ok && len == 3) ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
        if (ok && len == 4) ok = cp >= 0x10000 && cp <= 0x10ffff;
        if (ok) {
            memcpy(o, u + i, len);
            o += len;
            i += len;
        } else {
            memcpy(o, "\\ufffd", 6);
            o += 6;
            i++;
        }
    }
    *o++ = '"';
    b->len += (size_t)(o - w);
}

static void sb_cstr(sbuf *b, const char *s)
{
    sb_str(b, s ? s : "", s ? strlen(s) : 0);
}

/* ---- encoding: the response --------------------------------------------- */

#define ELEM_MAX 32     /* widest formatted element plus its comma */
#define ELEM_CHUNK 4096 /* elements formatted per buffer reservation */

static size_t fmt_elem(char *w, tern_dtype dt, const void *d, int64_t i)
{
    switch (dt) {
    case TERN_FLOAT: return fmt_f32(w, ((const float *)d)[i]);
    case TERN_DOUBLE: return fmt_f64(w, ((const double *)d)[i]);
    case TERN_FLOAT16: return fmt_f16(w, ((const uint16_t *)d)[i]);
    case TERN_BFLOAT16: return fmt_bf16(w, ((const uint16_t *)d)[i]);
    case TERN_INT8: return fmt_i64(w, ((const int8_t *)d)[i]);
    case TERN_INT16: return fmt_i64(w, ((const int16_t *)d)[i]);
    case TERN_INT32: return fmt_i64(w, ((const int32_t *)d)[i]);
    case TERN_INT64: return fmt_i64(w, ((const int64_t *)d)[i]);
    case TERN_UINT8: return fmt_u64(w, ((const uint8_t *)d)[i]);
    case TERN_UINT16: return fmt_u64(w, ((const uint16_t *)d)[i]);
    case TERN_UINT32: return fmt_u64(w, ((const uint32_t *)d)[i]);
    case TERN_UINT64: return fmt_u64(w, ((const uint64_t *)d)[i]);
    case TERN_BOOL:
        if (((const bool *)d)[i]) {
            memcpy(w, "true", 4);
            return 4;
        }
        memcpy(w, "false", 5);
        return 5;
    default: return 0;
    }
}

static void put_json_data(sbuf *b, const tern_tensor *t)
{
    sb_lit(b, "[");
    const void *d = t->data;
    if (t->dtype == TERN_STRING) {
        char *const *s = t->data;
        for (int64_t i = 0; i < t->numel; i++) {
            if (i) sb_lit(b, ",");
            sb_cstr(b, s[i]);
        }
    } else {
        for (int64_t i0 = 0; i0 < t->numel; i0 += ELEM_CHUNK) {
            int64_t i1 = t->numel - i0 < ELEM_CHUNK ? t->numel : i0 + ELEM_CHUNK;
            char *w = sb_room(b, (size_t)(i1 - i0) * ELEM_MAX), *o = w;
            if (!w) return;
            for (int64_t i = i0; i < i1; i++) {
                if (i) *o++ = ',';
                o += fmt_elem(o, t->dtype, d, i);
            }
            b->len += (size_t)(o - w);
        }
    }
    sb_lit(b, "]");
}

/* Bytes of a tensor in the binary extension's layout. */
static size_t binary_size(const tern_tensor *t)
{
    if (t->dtype != TERN_STRING) return (size_t)t->numel * tern_dtype_size(t->dtype);
    size_t n = 0;
    char *const *s = t->data;
    for (int64_t i = 0; i < t->numel; i++) n += 4 + (s[i] ? strlen(s[i]) : 0);
    return n;
}

static void put_binary(sbuf *b, const tern_tensor *t)
{
    if (t->dtype != TERN_STRING) {
        sb_put(b, t->data, (size_t)t->numel * tern_dtype_size(t->dtype));
        return;
    }
    char *const *s = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        size_t l = s[i] ? strlen(s[i]) : 0;
        unsigned char len4[4] = {(unsigned char)l, (unsigned char)(l >> 8),
                                 (unsigned char)(l >> 16), (unsigned char)(l >> 24)};
        sb_put(b, len4, 4);
        sb_put(b, s[i], l);
    }
}

static tern_status *check_output(const kserve_output *o, int i)
{
    if (!o->name) return BAD("outputs[%d]: no name", i);
    if (!o->t) return BAD("output '%s': no tensor", o->name);
    if (o->t->kind != TENSOR_DENSE)
        return tern_error(TERN_ERR_UNSUPPORTED, "output '%s' is a %s, which KServe cannot carry",
                          o->name, o->t->kind == TENSOR_SEQUENCE ? "sequence" : "empty optional");
    if (!kserve_dtype_name(o->t->dtype))
        return tern_error(TERN_ERR_UNSUPPORTED, "output '%s': datatype %s has no KServe equivalent",
                          o->name, tern_dtype_name(o->t->dtype));
    if (o->t->numel && !o->t->data) return BAD("output '%s': tensor has no data", o->name);
    if (o->binary && o->t->dtype == TERN_STRING) {
        char *const *s = o->t->data;
        for (int64_t k = 0; k < o->t->numel; k++)
            if (s[k] && strlen(s[k]) > UINT32_MAX)
                return tern_error(TERN_ERR_UNSUPPORTED,
                                  "output '%s': BYTES element %lld is longer than 4 GiB", o->name,
                                  (long long)k);
    }
    return NULL;
}

tern_status *kserve_encode_response(const char *model, const char *version, const char *id, int n,
                                    const kserve_output *outs, char **body, size_t *len,
                                    long long *header_len)
{
    *body = NULL;
    *len = 0;
    *header_len = -1;
    if (n < 0 || (n && !outs)) return BAD("bad output list");
    bool any_binary = false;
    for (int i = 0; i < n; i++) {
        TERN_TRY(check_output(&outs[i], i));
        any_binary |= outs[i].binary;
    }

    sbuf b = {0};
    char num[24];
    sb_lit(&b, "{\"model_name\":");
    sb_cstr(&b, model);
    if (version) {
        sb_lit(&b, ",\"model_version\":");
        sb_cstr(&b, version);
    }
    if (id) {
        sb_lit(&b, ",\"id\":");
        sb_cstr(&b, id);
    }
    sb_lit(&b, ",\"outputs\":[");
    for (int i = 0; i < n; i++) {
        const tern_tensor *t = outs[i].t;
        sb_lit(&b, i ? ",{\"name\":" : "{\"name\":");
        sb_cstr(&b, outs[i].name);
        sb_lit(&b, ",\"datatype\":\"");
        sb_lit(&b, kserve_dtype_name(t->dtype));
        sb_lit(&b, "\",\"shape\":[");
        for (int k = 0; k < t->rank; k++) {
            if (k) sb_lit(&b, ",");
            sb_put(&b, num, fmt_i64(num, t->dims[k]));
        }
        if (outs[i].binary) {
            sb_lit(&b, "],\"parameters\":{\"binary_data_size\":");
            sb_put(&b, num, fmt_u64(num, binary_size(t)));
            sb_lit(&b, "}}");
        } else {
            sb_lit(&b, "],\"data\":");
            put_json_data(&b, t);
            sb_lit(&b, "}");
        }
    }
    sb_lit(&b, "]}");
    size_t json_len = b.len;
    for (int i = 0; i < n; i++)
        if (outs[i].binary) put_binary(&b, outs[i].t);
    if (b.fail) {
        free(b.p);
        return OOM();
    }
    *body = b.p;
    *len = b.len;
    *header_len = any_binary ? (long long)json_len : -1;
    return NULL;
}

/* ---- errors ------------------------------------------------------------- */

char *kserve_error_json(const char *msg)
{
    if (!msg) msg = "unknown error";
    json_t *s = json_string(msg);
    if (!s) {
        /* Not UTF-8 (a message cut mid-character, or quoting raw bytes):
         * keep ASCII and replace the rest. */
        char *clean = strdup(msg);
        if (!clean) return NULL;
        for (char *c = clean; *c; c++)
            if ((unsigned char)*c >= 0x80) *c = '?';
        s = json_string(clean);
        free(clean);
    }
    json_t *o = json_object();
    char *out = NULL;
    if (s && o && !json_object_set_new(o, "error", s)) {
        s = NULL;
        out = json_dumps(o, JSON_COMPACT);
    }
    json_decref(s);
    json_decref(o);
    return out;
}

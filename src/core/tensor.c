/* Tensor helpers and the public tensor API; see tensor.h for the layout. */
#include "core/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"

int64_t shape_numel(int rank, const int64_t *dims)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) return -1;
        if (dims[i] && n > INT64_MAX / dims[i]) return -1;
        n *= dims[i];
    }
    return n;
}

tern_status *tensor_set_shape(tern_tensor *t, int rank, const int64_t *dims)
{
    if (rank < 0 || rank > TERN_MAX_RANK)
        return tern_error(TERN_ERR_UNSUPPORTED, "rank %d exceeds the maximum of %d", rank,
                          TERN_MAX_RANK);
    int64_t n = shape_numel(rank, dims);
    if (n < 0) {
        char buf[160];
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "invalid shape %s",
                          shape_str(rank, dims, buf, sizeof buf));
    }
    /* Keep byte sizes well inside size_t and int64 arithmetic. */
    if (n > ((int64_t)1 << 40))
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "tensor of %lld elements is too large",
                          (long long)n);
    t->rank = rank;
    if (rank) memmove(t->dims, dims, (size_t)rank * sizeof *dims);
    t->numel = n;
    return NULL;
}

size_t tensor_nbytes(const tern_tensor *t)
{
    if (t->kind != TENSOR_DENSE) return 0;
    if (t->dtype == TERN_STRING) return (size_t)t->numel * sizeof(char *);
    return (size_t)t->numel * tern_dtype_size(t->dtype);
}

char *shape_str(int rank, const int64_t *dims, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int i = 0; i < rank && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? ",%lld" : "%lld", (long long)dims[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
    return buf;
}

bool shape_equal(const tern_tensor *a, const tern_tensor *b)
{
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return false;
    return true;
}

static void tensor_release(tern_tensor *t)
{
    if (!t->owns || !t->data) return;
    if (t->kind == TENSOR_SEQUENCE) {
        tern_tensor **el = t->data;
        for (int64_t i = 0; i < t->numel; i++) tern_tensor_free(el[i]);
    } else if (t->dtype == TERN_STRING) {
        char **s = t->data;
        for (int64_t i = 0; i < t->numel; i++) free(s[i]);
    }
    free(t->data);
}

void tern_tensor_free(tern_tensor *t)
{
    if (!t) return;
    tensor_release(t);
    free(t);
}

tern_status *tern_tensor_create(tern_dtype dt, int rank, const int64_t *dims, tern_tensor **out)
{
    *out = NULL;
    if (!dtype_valid((int)dt) || dt == TERN_COMPLEX64 || dt == TERN_COMPLEX128)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "unsupported dtype %d", (int)dt);
    tern_tensor *t = calloc(1, sizeof *t);
    if (!t) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    t->dtype = dt;
    tern_status *st = tensor_set_shape(t, rank, dims);
    if (st) {
        free(t);
        return st;
    }
    size_t nb = tensor_nbytes(t);
    t->data = calloc(1, nb ? nb : 1);
    t->owns = true;
    if (!t->data) {
        free(t);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory allocating %zu bytes", nb);
    }
    if (dt == TERN_STRING) {
        char **s = t->data;
        for (int64_t i = 0; i < t->numel; i++) {
            s[i] = calloc(1, 1);
            if (!s[i]) {
                tern_tensor_free(t);
                return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
            }
        }
    }
    *out = t;
    return NULL;
}

tern_status *tern_tensor_create_copy(tern_dtype dt, int rank, const int64_t *dims, const void *data,
                                     size_t nbytes, tern_tensor **out)
{
    if (dt == TERN_STRING)
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "string tensors are filled with tern_tensor_set_string");
    TERN_TRY(tern_tensor_create(dt, rank, dims, out));
    if (nbytes != tensor_nbytes(*out)) {
        size_t want = tensor_nbytes(*out);
        tern_tensor_free(*out);
        *out = NULL;
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "data has %zu bytes but the shape needs %zu",
                          nbytes, want);
    }
    if (nbytes) memcpy((*out)->data, data, nbytes);
    return NULL;
}

tern_status *tensor_dup(const tern_tensor *src, tern_tensor **out)
{
    *out = NULL;
    tern_tensor *t = calloc(1, sizeof *t);
    if (!t) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    *t = *src;
    t->owns = true;
    t->data = NULL;
    if (src->kind == TENSOR_NONE) {
        *out = t;
        return NULL;
    }
    size_t nb = src->kind == TENSOR_SEQUENCE ? (size_t)src->numel * sizeof(tern_tensor *)
                                             : tensor_nbytes(src);
    t->data = calloc(1, nb ? nb : 1);
    if (!t->data) {
        free(t);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory allocating %zu bytes", nb);
    }
    if (src->kind == TENSOR_SEQUENCE) {
        tern_tensor **d = t->data, *const *s = src->data;
        for (int64_t i = 0; i < src->numel; i++) {
            tern_status *st = tensor_dup(s[i], &d[i]);
            if (st) {
                t->numel = i;
                tern_tensor_free(t);
                return st;
            }
        }
    } else if (src->dtype == TERN_STRING) {
        char **d = t->data, *const *s = src->data;
        for (int64_t i = 0; i < src->numel; i++) {
            d[i] = strdup(s[i] ? s[i] : "");
            if (!d[i]) {
                t->numel = i;
                tern_tensor_free(t);
                return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
            }
        }
    } else if (nb) {
        memcpy(t->data, src->data, nb);
    }
    *out = t;
    return NULL;
}

tern_dtype tern_tensor_dtype(const tern_tensor *t)
{
    return t->dtype;
}
int tern_tensor_rank(const tern_tensor *t)
{
    return t->rank;
}
const int64_t *tern_tensor_dims(const tern_tensor *t)
{
    return t->dims;
}
int64_t tern_tensor_numel(const tern_tensor *t)
{
    return t->numel;
}
size_t tern_tensor_nbytes(const tern_tensor *t)
{
    return tensor_nbytes(t);
}
void *tern_tensor_data(tern_tensor *t)
{
    return t->data;
}
const void *tern_tensor_cdata(const tern_tensor *t)
{
    return t->data;
}

tern_status *tern_tensor_set_string(tern_tensor *t, int64_t i, const char *s)
{
    if (t->dtype != TERN_STRING || !t->owns)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "not an owning string tensor");
    if (i < 0 || i >= t->numel)
        return tern_error(TERN_ERR_INVALID_ARGUMENT, "string index %lld out of range",
                          (long long)i);
    char *c = strdup(s ? s : "");
    if (!c) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    char **d = t->data;
    free(d[i]);
    d[i] = c;
    return NULL;
}

/*
 * ONNX reader, see reader.h. Every check here exists because a later stage
 * would otherwise read out of bounds: the byte size of tensor data must match
 * its shape and type, dims must be non-negative, external data must stay in
 * the model's folder and inside its file.
 */
#include "onnx/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dtype.h"

struct onnx_mapping {
    struct onnx_mapping *next;
    void *addr;
    size_t len;
};

void onnx_store_init(onnx_store *s, const char *dir)
{
    memset(s, 0, sizeof *s);
    arena_init(&s->mem);
    s->dir = dir;
}

void onnx_store_free(onnx_store *s)
{
    struct onnx_mapping *m = s->maps;
    while (m) {
        struct onnx_mapping *n = m->next;
        munmap(m->addr, m->len);
        free(m);
        m = n;
    }
    arena_free(&s->mem);
    s->maps = NULL;
}

tern_status *onnx_map_file(const char *path, void **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tern_error(TERN_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tern_error(TERN_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return NULL;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return tern_error(TERN_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    *buf = p;
    *len = (size_t)st.st_size;
    return NULL;
}

void onnx_unmap_file(void *buf, size_t len)
{
    if (buf) munmap(buf, len);
}

tern_status *onnx_parse_model(const void *buf, size_t len, Onnx__ModelProto **out)
{
    *out = NULL;
    if (len == 0) return tern_error(TERN_ERR_INVALID_MODEL, "model is empty (0 bytes)");
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m)
        return tern_error(TERN_ERR_INVALID_MODEL,
                          "model is not a valid ONNX protobuf (truncated or corrupt, %zu bytes)",
                          len);
    if (!m->has_ir_version || m->ir_version < 3 || m->ir_version > 10) {
        long long v = m->has_ir_version ? (long long)m->ir_version : -1;
        onnx__model_proto__free_unpacked(m, NULL);
        if (v < 0) return tern_error(TERN_ERR_INVALID_MODEL, "model has no ir_version");
        return tern_error(TERN_ERR_UNSUPPORTED, "IR version %lld is not supported (3 to 10)", v);
    }
    if (!m->graph) {
        onnx__model_proto__free_unpacked(m, NULL);
        return tern_error(TERN_ERR_INVALID_MODEL, "model has no graph");
    }
    if (m->n_opset_import == 0) {
        onnx__model_proto__free_unpacked(m, NULL);
        return tern_error(TERN_ERR_INVALID_MODEL, "model has no opset_import");
    }
    *out = m;
    return NULL;
}

tern_status *onnx_read_model_file(const char *path, Onnx__ModelProto **out)
{
    void *buf;
    size_t len;
    *out = NULL;
    TERN_TRY(onnx_map_file(path, &buf, &len));
    tern_status *st = onnx_parse_model(buf, len, out);
    onnx_unmap_file(buf, len);
    return st ? tern_error_wrap(st, "%s", path) : NULL;
}

/* ---- external data ----------------------------------------------------- */

static tern_status *external_data(onnx_store *s, const Onnx__TensorProto *tp, const char *what,
                                  size_t want, void **data)
{
    const char *loc = NULL;
    long long off = 0, len = -1;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = tp->external_data[i];
        if (!e->key || !e->value) continue;
        char *end;
        if (strcmp(e->key, "location") == 0) {
            loc = e->value;
        } else if (strcmp(e->key, "offset") == 0) {
            errno = 0;
            off = strtoll(e->value, &end, 10);
            if (errno || *end || off < 0)
                return tern_error(TERN_ERR_INVALID_MODEL, "%s: bad external data offset '%s'", what,
                                  e->value);
        } else if (strcmp(e->key, "length") == 0) {
            errno = 0;
            len = strtoll(e->value, &end, 10);
            if (errno || *end || len < 0)
                return tern_error(TERN_ERR_INVALID_MODEL, "%s: bad external data length '%s'", what,
                                  e->value);
        }
    }
    if (!loc || !*loc)
        return tern_error(TERN_ERR_INVALID_MODEL, "%s: external data without a location", what);
    if (!s->dir)
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "%s: external data '%s' needs a model loaded from a file", what, loc);
    /* Confine the path to the model's folder: relative, no "..", and the
     * resolved path must still lie under the folder (symlinks). */
    if (loc[0] == '/' || strstr(loc, "..") != NULL)
        return tern_error(TERN_ERR_INVALID_MODEL,
                          "%s: external data location '%s' leaves the model folder", what, loc);
    char path[PATH_MAX], real[PATH_MAX], realdir[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", s->dir, loc) >= sizeof path)
        return tern_error(TERN_ERR_INVALID_MODEL, "%s: external data path too long", what);
    if (!realpath(s->dir, realdir) || !realpath(path, real))
        return tern_error(TERN_ERR_NOT_FOUND, "%s: external data file '%s': %s", what, path,
                          strerror(errno));
    size_t dl = strlen(realdir);
    if (strncmp(real, realdir, dl) != 0 || real[dl] != '/')
        return tern_error(TERN_ERR_INVALID_MODEL,
                          "%s: external data location '%s' leaves the model folder", what, loc);
    if (len >= 0 && (size_t)len != want)
        return tern_error(TERN_ERR_INVALID_MODEL,
                          "%s: external data length %lld does not match the shape (%zu bytes)",
                          what, len, want);
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tern_error(TERN_ERR_NOT_FOUND, "%s: external data file '%s': %s", what, loc,
                          strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || (unsigned long long)off + want > (unsigned long long)st.st_size) {
        close(fd);
        return tern_error(TERN_ERR_INVALID_MODEL,
                          "%s: external data file '%s' is too short (needs %zu bytes at offset "
                          "%lld)",
                          what, loc, want, off);
    }
    if (want == 0) {
        close(fd);
        *data = arena_alloc(&s->mem, 1);
        return *data ? NULL : tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }
    long page = sysconf(_SC_PAGESIZE);
    off_t base = (off_t)(off - off % page);
    size_t maplen = want + (size_t)(off - base);
    void *p = mmap(NULL, maplen, PROT_READ, MAP_PRIVATE, fd, base);
    close(fd);
    if (p == MAP_FAILED)
        return tern_error(TERN_ERR_IO, "%s: mmap of '%s': %s", what, loc, strerror(errno));
    struct onnx_mapping *m = malloc(sizeof *m);
    if (!m) {
        munmap(p, maplen);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }
    m->addr = p;
    m->len = maplen;
    m->next = s->maps;
    s->maps = m;
    *data = (char *)p + (off - base);
    return NULL;
}

/* ---- TensorProto -> tensor --------------------------------------------- */

static tern_status *count_err(const char *what, const char *field, size_t have, int64_t want)
{
    return tern_error(TERN_ERR_INVALID_MODEL, "%s: %s holds %zu values but the shape needs %lld",
                      what, field, have, (long long)want);
}

tern_status *onnx_tensor(onnx_store *s, const Onnx__TensorProto *tp, const char *what,
                         tern_tensor **out)
{
    *out = NULL;
    tern_tensor *t = arena_calloc(&s->mem, sizeof *t);
    if (!t) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    int dt = tp->has_data_type ? tp->data_type : 0;
    if (!dtype_valid(dt))
        return tern_error(TERN_ERR_INVALID_MODEL, "%s: unknown data_type %d", what, dt);
    if (dt == TERN_COMPLEX64 || dt == TERN_COMPLEX128)
        return tern_error(TERN_ERR_UNSUPPORTED, "%s: complex tensors are not supported", what);
    if (tp->segment)
        return tern_error(TERN_ERR_UNSUPPORTED, "%s: segmented tensors are not supported", what);
    if (tp->n_dims > TERN_MAX_RANK)
        return tern_error(TERN_ERR_UNSUPPORTED, "%s: rank %zu exceeds %d", what, tp->n_dims,
                          TERN_MAX_RANK);
    t->dtype = (tern_dtype)dt;
    for (size_t i = 0; i < tp->n_dims; i++)
        if (tp->dims[i] < 0)
            return tern_error(TERN_ERR_INVALID_MODEL, "%s: negative dimension %lld", what,
                              (long long)tp->dims[i]);
    tern_status *st = tensor_set_shape(t, (int)tp->n_dims, tp->dims);
    if (st) return tern_error_wrap(st, "%s", what);
    int64_t n = t->numel;
    size_t esz = tern_dtype_size(t->dtype);

    if (t->dtype == TERN_STRING) {
        if (tp->has_data_location &&
            tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
            return tern_error(TERN_ERR_UNSUPPORTED, "%s: external string data", what);
        if ((int64_t)tp->n_string_data != n)
            return count_err(what, "string_data", tp->n_string_data, n);
        char **v = arena_alloc(&s->mem, (size_t)(n ? n : 1) * sizeof *v);
        if (!v) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        for (int64_t i = 0; i < n; i++) {
            const ProtobufCBinaryData *b = &tp->string_data[i];
            v[i] = arena_alloc(&s->mem, b->len + 1);
            if (!v[i]) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
            if (b->len) memcpy(v[i], b->data, b->len);
            v[i][b->len] = 0;
        }
        t->data = v;
        *out = t;
        return NULL;
    }

    size_t want = (size_t)n * esz;
    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        TERN_TRY(external_data(s, tp, what, want, &t->data));
        *out = t;
        return NULL;
    }
    if (tp->has_raw_data) {
        if (tp->raw_data.len != want)
            return tern_error(TERN_ERR_INVALID_MODEL,
                              "%s: raw_data has %zu bytes but shape %s of %s needs %zu", what,
                              tp->raw_data.len, shape_str(t->rank, t->dims, (char[160]){0}, 160),
                              tern_dtype_name(t->dtype), want);
        if (want && ((uintptr_t)tp->raw_data.data % (esz < 8 ? esz : 8)) == 0) {
            t->data = tp->raw_data.data; /* x86-64 is little-endian, as raw_data is */
        } else {
            t->data = arena_alloc(&s->mem, want);
            if (!t->data) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
            if (want) memcpy(t->data, tp->raw_data.data, want);
        }
        *out = t;
        return NULL;
    }
    t->data = arena_alloc(&s->mem, want ? want : 1);
    if (!t->data) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    switch (t->dtype) {
    case TERN_FLOAT:
        if ((int64_t)tp->n_float_data != n)
            return count_err(what, "float_data", tp->n_float_data, n);
        if (want) memcpy(t->data, tp->float_data, want);
        break;
    case TERN_DOUBLE:
        if ((int64_t)tp->n_double_data != n)
            return count_err(what, "double_data", tp->n_double_data, n);
        if (want) memcpy(t->data, tp->double_data, want);
        break;
    case TERN_INT64:
        if ((int64_t)tp->n_int64_data != n)
            return count_err(what, "int64_data", tp->n_int64_data, n);
        if (want) memcpy(t->data, tp->int64_data, want);
        break;
    case TERN_UINT32:
    case TERN_UINT64:
        if ((int64_t)tp->n_uint64_data != n)
            return count_err(what, "uint64_data", tp->n_uint64_data, n);
        for (int64_t i = 0; i < n; i++)
            dtype_set_i64(t->dtype, t->data, i, (int64_t)tp->uint64_data[i]);
        break;
    case TERN_FLOAT16:
    case TERN_BFLOAT16:
        if ((int64_t)tp->n_int32_data != n)
            return count_err(what, "int32_data", tp->n_int32_data, n);
        for (int64_t i = 0; i < n; i++) ((uint16_t *)t->data)[i] = (uint16_t)tp->int32_data[i];
        break;
    default: /* int32, int16, int8, uint16, uint8, bool live in int32_data */
        if ((int64_t)tp->n_int32_data != n)
            return count_err(what, "int32_data", tp->n_int32_data, n);
        for (int64_t i = 0; i < n; i++) dtype_set_i64(t->dtype, t->data, i, tp->int32_data[i]);
        break;
    }
    *out = t;
    return NULL;
}

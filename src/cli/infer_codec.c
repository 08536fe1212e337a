/*
 * KServe v2 client codec, see infer_codec.h. Requests are built as a jansson
 * document and dumped once; binary tensor bytes are appended behind the JSON.
 * Responses are decoded in two passes per output: first everything that can
 * be checked without allocating (shape, sizes, element count), then the
 * tensor is created and filled. A hostile or broken server therefore cannot
 * make us allocate more than its body already occupies, and every element is
 * type- and range-checked before it lands in the tensor.
 */
#include "cli/infer_codec.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "server/kserve.h"

static tern_status *oom(void)
{
    return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
}

static void put_u32le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- request ----------------------------------------------------------- */

/* Bytes of t in the binary tensor format. */
static tern_status *binary_size(const char *name, const tern_tensor *t, size_t *out)
{
    if (t->dtype != TERN_STRING) {
        *out = (size_t)t->numel * tern_dtype_size(t->dtype);
        return NULL;
    }
    const char *const *s = tern_tensor_cdata(t);
    size_t n = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        size_t l = strlen(s[i]);
        if (l > UINT32_MAX)
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "input '%s': element %" PRId64 " is longer than 4 GiB", name, i);
        n += 4 + l;
    }
    *out = n;
    return NULL;
}

static void binary_write(const tern_tensor *t, unsigned char *p)
{
    const void *data = tern_tensor_cdata(t);
    if (t->dtype == TERN_STRING) {
        const char *const *s = data;
        for (int64_t i = 0; i < t->numel; i++) {
            size_t l = strlen(s[i]);
            put_u32le(p, (uint32_t)l);
            memcpy(p + 4, s[i], l);
            p += 4 + l;
        }
    } else if (t->dtype == TERN_BOOL) {
        const unsigned char *b = data;
        for (int64_t i = 0; i < t->numel; i++) p[i] = b[i] != 0;
    } else if (t->numel) {
        memcpy(p, data, (size_t)t->numel * tern_dtype_size(t->dtype));
    }
}

/* One JSON value for element i of t. */
static tern_status *json_element(const char *name, const tern_tensor *t, int64_t i, json_t **out)
{
    const void *d = tern_tensor_cdata(t);
    double f = 0;
    switch (t->dtype) {
    case TERN_BOOL: *out = json_boolean(((const unsigned char *)d)[i] != 0); return NULL;
    case TERN_STRING:
        *out = json_string(((const char *const *)d)[i]);
        if (!*out)
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "input '%s': element %" PRId64
                              " is not valid UTF-8, which JSON cannot carry (use --binary)",
                              name, i);
        return NULL;
    case TERN_UINT64:
        if (((const uint64_t *)d)[i] > INT64_MAX)
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "input '%s': element %" PRId64 " (%" PRIu64
                              ") is above the JSON integer range (use --binary)",
                              name, i, ((const uint64_t *)d)[i]);
        *out = json_integer((json_int_t)((const uint64_t *)d)[i]);
        return NULL;
    case TERN_FLOAT: f = ((const float *)d)[i]; break;
    case TERN_DOUBLE: f = ((const double *)d)[i]; break;
    case TERN_FLOAT16: f = f16_to_f32(((const uint16_t *)d)[i]); break;
    case TERN_BFLOAT16: f = bf16_to_f32(((const uint16_t *)d)[i]); break;
    default: *out = json_integer(dtype_get_i64(t->dtype, d, i)); return NULL;
    }
    if (!isfinite(f))
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "input '%s': element %" PRId64 " is %g, which JSON cannot carry "
                          "(use --binary)",
                          name, i, f);
    *out = json_real(f);
    return NULL;
}

static tern_status *json_data(const char *name, const tern_tensor *t, json_t *arr)
{
    for (int64_t i = 0; i < t->numel; i++) {
        json_t *v = NULL;
        TERN_TRY(json_element(name, t, i, &v));
        if (!v || json_array_append_new(arr, v)) return oom();
    }
    return NULL;
}

/* Builds {"name","shape","datatype", "data" | "parameters"} for one input and
 * adds its binary size to *bin_total. */
static tern_status *encode_input(const char *name, const tern_tensor *t, bool binary,
                                 size_t *bin_total, json_t **out)
{
    const char *dtname = kserve_dtype_name(t->dtype);
    if (t->kind != TENSOR_DENSE || !dtname)
        return tern_error(TERN_ERR_UNSUPPORTED, "input '%s': %s has no KServe datatype", name,
                          tern_dtype_name(t->dtype));
    json_t *o = json_object();
    *out = o;
    json_t *shape = json_array(), *jname = json_string(name);
    if (!o || json_object_set_new(o, "shape", shape) ||
        json_object_set_new(o, "datatype", json_string(dtname))) {
        json_decref(jname);
        return oom();
    }
    if (!jname || json_object_set_new(o, "name", jname))
        return tern_error(TERN_ERR_INVALID_ARGUMENT,
                          "input '%s': the name is not valid UTF-8 (or out of memory)", name);
    for (int d = 0; d < t->rank; d++)
        if (json_array_append_new(shape, json_integer(t->dims[d]))) return oom();
    if (binary) {
        size_t n = 0;
        TERN_TRY(binary_size(name, t, &n));
        *bin_total += n;
        json_t *p = json_pack("{s:I}", "binary_data_size", (json_int_t)n);
        if (!p || json_object_set_new(o, "parameters", p)) return oom();
        return NULL;
    }
    json_t *data = json_array();
    if (!data || json_object_set_new(o, "data", data)) return oom();
    return json_data(name, t, data);
}

static tern_status *encode_outputs(json_t *root, int n_out, const char *const *out_names,
                                   bool binary)
{
    if (!n_out) {
        if (!binary) return NULL;
        json_t *p = json_pack("{s:b}", "binary_data_output", 1);
        return !p || json_object_set_new(root, "parameters", p) ? oom() : NULL;
    }
    json_t *outs = json_array();
    if (!outs || json_object_set_new(root, "outputs", outs)) return oom();
    for (int i = 0; i < n_out; i++) {
        json_t *o = binary ? json_pack("{s:s, s:{s:b}}", "name", out_names[i], "parameters",
                                       "binary_data", 1)
                           : json_pack("{s:s}", "name", out_names[i]);
        if (!o)
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "--output '%s': not a valid UTF-8 name (or out of memory)",
                              out_names[i]);
        if (json_array_append_new(outs, o)) return oom();
    }
    return NULL;
}

tern_status *infer_encode_request(int n, const char *const *names, const tern_tensor *const *ins,
                                  int n_out, const char *const *out_names, bool binary, char **body,
                                  size_t *len, long long *header_len)
{
    *body = NULL;
    *len = 0;
    *header_len = -1;
    tern_status *st = NULL;
    size_t bin_total = 0;
    int precision = 9; /* round-trips float32; float64 needs 17 */
    json_t *root = json_object(), *inputs = json_array();
    if (!root || !inputs || json_object_set_new(root, "inputs", inputs)) {
        if (!root) json_decref(inputs);
        st = oom();
        goto out;
    }
    for (int i = 0; i < n && !st; i++) {
        json_t *o = NULL;
        st = encode_input(names[i], ins[i], binary, &bin_total, &o);
        if (o && json_array_append_new(inputs, o) && !st) st = oom();
        if (ins[i]->dtype == TERN_DOUBLE) precision = 17;
    }
    if (!st) st = encode_outputs(root, n_out, out_names, binary);
    if (st) goto out;
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(precision));
    if (!hdr) {
        st = oom();
        goto out;
    }
    size_t hlen = strlen(hdr);
    if (!binary) {
        *body = hdr;
        *len = hlen;
        goto out;
    }
    char *b = realloc(hdr, hlen + bin_total + 1);
    if (!b) {
        free(hdr);
        st = oom();
        goto out;
    }
    unsigned char *p = (unsigned char *)b + hlen;
    for (int i = 0; i < n; i++) {
        size_t sz = 0;
        binary_size(names[i], ins[i], &sz); /* already checked above */
        binary_write(ins[i], p);
        p += sz;
    }
    *body = b;
    *len = hlen + bin_total;
    *header_len = (long long)hlen;
out:
    json_decref(root);
    return st;
}

/* ---- response ---------------------------------------------------------- */

static tern_status *bad_output(const char *name, const char *fmt, const char *detail)
{
    tern_status *st = tern_error(TERN_ERR_INVALID_ARGUMENT, fmt, detail);
    return tern_error_wrap(st, "malformed response: output '%s'", name);
}

/* Leaves of a (possibly nested) data array; -1 when nested too deeply. */
static int64_t count_leaves(const json_t *v, int depth)
{
    if (!json_is_array(v)) return 1;
    if (depth > 64) return -1;
    int64_t n = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        int64_t k = count_leaves(json_array_get(v, i), depth + 1);
        if (k < 0) return -1;
        n += k;
    }
    return n;
}

static bool int_range(tern_dtype dt, int64_t *lo, int64_t *hi)
{
    switch (dt) {
    case TERN_INT8: *lo = INT8_MIN, *hi = INT8_MAX; return true;
    case TERN_INT16: *lo = INT16_MIN, *hi = INT16_MAX; return true;
    case TERN_INT32: *lo = INT32_MIN, *hi = INT32_MAX; return true;
    case TERN_INT64: *lo = INT64_MIN, *hi = INT64_MAX; return true;
    case TERN_UINT8: *lo = 0, *hi = UINT8_MAX; return true;
    case TERN_UINT16: *lo = 0, *hi = UINT16_MAX; return true;
    case TERN_UINT32: *lo = 0, *hi = UINT32_MAX; return true;
    case TERN_UINT64: *lo = 0, *hi = INT64_MAX; return true; /* jansson's integer range */
    default: return false;
    }
}

/* Stores one JSON leaf as element i of t. */
static tern_status *store_leaf(const char *name, tern_tensor *t, int64_t i, const json_t *v)
{
    void *d = tern_tensor_data(t);
    char where[64];
    snprintf(where, sizeof where, "data[%" PRId64 "]", i);
    int64_t lo, hi;
    if (t->dtype == TERN_BOOL) {
        if (json_is_boolean(v))
            ((bool *)d)[i] = json_is_true(v);
        else if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
            ((bool *)d)[i] = json_integer_value(v) == 1;
        else
            return bad_output(name, "%s is not a boolean", where);
    } else if (t->dtype == TERN_STRING) {
        if (!json_is_string(v)) return bad_output(name, "%s is not a string", where);
        size_t l = json_string_length(v);
        char *s = malloc(l + 1);
        if (!s) return oom();
        memcpy(s, json_string_value(v), l);
        s[l] = 0;
        char **slot = &((char **)d)[i];
        free(*slot);
        *slot = s;
    } else if (int_range(t->dtype, &lo, &hi)) {
        int64_t x;
        if (json_is_integer(v)) {
            x = json_integer_value(v);
        } else { /* a real with no fraction, as some servers write integers */
            double r = json_real_value(v);
            if (!json_is_real(v) || r != floor(r))
                return bad_output(name, "%s is not an integer", where);
            if (!(r >= -0x1p63 && r < 0x1p63))
                return bad_output(name, "%s is out of range for its datatype", where);
            x = (int64_t)r;
        }
        if (x < lo || x > hi) return bad_output(name, "%s is out of range for its datatype", where);
        dtype_set_i64(t->dtype, d, i, x);
    } else {
        /* JSON has no NaN or infinity; servers (tern's among them) send null */
        if (!json_is_number(v) && !json_is_null(v))
            return bad_output(name, "%s is not a number", where);
        double x = json_is_null(v) ? NAN : json_number_value(v);
        switch (t->dtype) {
        case TERN_FLOAT: ((float *)d)[i] = (float)x; break;
        case TERN_DOUBLE: ((double *)d)[i] = x; break;
        case TERN_FLOAT16: ((uint16_t *)d)[i] = f32_to_f16((float)x); break;
        default: ((uint16_t *)d)[i] = f32_to_bf16((float)x); break;
        }
    }
    return NULL;
}

static tern_status *fill_leaves(const char *name, tern_tensor *t, const json_t *v, int64_t *i)
{
    if (!json_is_array(v)) return store_leaf(name, t, (*i)++, v);
    for (size_t k = 0; k < json_array_size(v); k++)
        TERN_TRY(fill_leaves(name, t, json_array_get(v, k), i));
    return NULL;
}

static tern_status *decode_json_data(const char *name, const json_t *data, tern_dtype dt, int rank,
                                     const int64_t *dims, int64_t numel, tern_tensor **out)
{
    if (!data) return bad_output(name, "%s", "has neither \"data\" nor binary_data_size");
    int64_t n = count_leaves(data, 0);
    if (n < 0) return bad_output(name, "%s", "\"data\" is nested too deeply");
    if (n != numel) {
        char msg[128];
        snprintf(msg, sizeof msg, "\"data\" has %" PRId64 " elements but the shape needs %" PRId64,
                 n, numel);
        return bad_output(name, "%s", msg);
    }
    TERN_TRY(tern_tensor_create(dt, rank, dims, out));
    int64_t i = 0;
    tern_status *st = fill_leaves(name, *out, data, &i);
    if (st) {
        tern_tensor_free(*out);
        *out = NULL;
    }
    return st;
}

static tern_status *decode_binary_data(const char *name, const unsigned char *p, size_t size,
                                       tern_dtype dt, int rank, const int64_t *dims, int64_t numel,
                                       tern_tensor **out)
{
    char msg[160];
    if (dt != TERN_STRING) {
        size_t es = tern_dtype_size(dt);
        if ((uint64_t)numel > size / es || (size_t)numel * es != size) {
            char shape[160];
            snprintf(msg, sizeof msg, "binary_data_size is %zu but %s %s needs %.0f bytes", size,
                     kserve_dtype_name(dt), shape_str(rank, dims, shape, sizeof shape),
                     (double)numel * (double)es);
            return bad_output(name, "%s", msg);
        }
        TERN_TRY(tern_tensor_create_copy(dt, rank, dims, p, size, out));
        if (dt == TERN_BOOL) {
            unsigned char *b = tern_tensor_data(*out);
            for (int64_t i = 0; i < numel; i++) b[i] = b[i] != 0;
        }
        return NULL;
    }
    /* BYTES: count the length-prefixed elements before allocating */
    int64_t n = 0;
    size_t off = 0;
    while (off < size) {
        if (size - off < 4 || get_u32le(p + off) > size - off - 4) {
            snprintf(msg, sizeof msg, "BYTES element %" PRId64 " runs past its binary_data_size",
                     n);
            return bad_output(name, "%s", msg);
        }
        off += 4 + get_u32le(p + off);
        n++;
    }
    if (n != numel) {
        snprintf(msg, sizeof msg,
                 "binary data holds %" PRId64 " BYTES elements but the shape needs %" PRId64, n,
                 numel);
        return bad_output(name, "%s", msg);
    }
    TERN_TRY(tern_tensor_create(dt, rank, dims, out));
    char **s = tern_tensor_data(*out);
    off = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t l = get_u32le(p + off);
        char *e = malloc((size_t)l + 1);
        if (!e) {
            tern_tensor_free(*out);
            *out = NULL;
            return oom();
        }
        memcpy(e, p + off + 4, l);
        e[l] = 0;
        free(s[i]);
        s[i] = e;
        off += 4 + (size_t)l;
    }
    return NULL;
}

/* Decodes outputs[idx]; binary data is taken from bin at *bin_off. */
static tern_status *decode_output(const json_t *o, size_t idx, bool has_binary,
                                  const unsigned char *bin, size_t bin_len, size_t *bin_off,
                                  char **name_out, tern_tensor **out)
{
    char idxname[32];
    snprintf(idxname, sizeof idxname, "#%zu", idx);
    if (!json_is_object(o)) return bad_output(idxname, "%s", "is not a JSON object");
    const json_t *jname = json_object_get(o, "name");
    if (!json_is_string(jname)) return bad_output(idxname, "%s", "has no \"name\" string");
    const char *name = json_string_value(jname);
    const json_t *jdt = json_object_get(o, "datatype"), *jshape = json_object_get(o, "shape");
    if (!json_is_string(jdt)) return bad_output(name, "%s", "has no \"datatype\" string");
    tern_dtype dt = kserve_dtype(json_string_value(jdt));
    if (dt == TERN_UNDEFINED)
        return bad_output(name, "unknown datatype \"%s\"", json_string_value(jdt));
    if (!json_is_array(jshape)) return bad_output(name, "%s", "has no \"shape\" array");
    int rank = (int)json_array_size(jshape);
    if (json_array_size(jshape) > TERN_MAX_RANK)
        return bad_output(name, "%s", "shape has more dimensions than tern supports");
    int64_t dims[TERN_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        const json_t *v = json_array_get(jshape, (size_t)d);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return bad_output(name, "%s", "shape holds something other than a size >= 0");
        dims[d] = json_integer_value(v);
    }
    int64_t numel = shape_numel(rank, dims);
    if (numel < 0) return bad_output(name, "%s", "shape overflows");

    const json_t *params = json_object_get(o, "parameters");
    const json_t *bds = json_is_object(params) ? json_object_get(params, "binary_data_size") : NULL;
    tern_status *st;
    if (bds) {
        if (!json_is_integer(bds) || json_integer_value(bds) < 0)
            return bad_output(name, "%s", "binary_data_size is not an integer >= 0");
        if (!has_binary)
            return bad_output(name, "%s",
                              "has binary_data_size but the response has no "
                              "Inference-Header-Content-Length header");
        uint64_t size = (uint64_t)json_integer_value(bds);
        if (size > bin_len - *bin_off)
            return bad_output(name, "%s", "binary_data_size runs past the end of the body");
        st = decode_binary_data(name, bin + *bin_off, (size_t)size, dt, rank, dims, numel, out);
        *bin_off += (size_t)size;
    } else {
        st = decode_json_data(name, json_object_get(o, "data"), dt, rank, dims, numel, out);
    }
    if (st) return st;
    *name_out = strdup(name);
    if (!*name_out) {
        tern_tensor_free(*out);
        *out = NULL;
        return oom();
    }
    return NULL;
}

void infer_response_free(infer_response *r)
{
    if (!r) return;
    for (int i = 0; i < r->n; i++) {
        free(r->names[i]);
        tern_tensor_free(r->outputs[i]);
    }
    free(r->names);
    free(r->outputs);
    free(r);
}

tern_status *infer_decode_response(const char *body, size_t len, long long header_len,
                                   infer_response **out)
{
    *out = NULL;
    size_t hlen = len;
    if (header_len >= 0) {
        if ((unsigned long long)header_len > len)
            return tern_error(TERN_ERR_INVALID_ARGUMENT,
                              "malformed response: Inference-Header-Content-Length is %lld but "
                              "the body has only %zu bytes",
                              header_len, len);
        hlen = (size_t)header_len;
    }
    json_error_t err;
    json_t *root = json_loadb(body, hlen, 0, &err);
    if (!root)
        return tern_error(
            TERN_ERR_INVALID_ARGUMENT,
            "malformed response: not valid JSON: %s (line %d, column %d)%s", err.text, err.line,
            err.column,
            strstr(err.text, "too big integer") ? "; integers above 2^63 need --binary" : "");
    tern_status *st = NULL;
    const json_t *outputs = json_object_get(root, "outputs");
    infer_response *r = NULL;
    if (!json_is_array(outputs)) {
        st = tern_error(TERN_ERR_INVALID_ARGUMENT, "malformed response: no \"outputs\" array");
        goto out;
    }
    size_t n = json_array_size(outputs);
    r = calloc(1, sizeof *r);
    if (!r || !(r->names = calloc(n + 1, sizeof *r->names)) ||
        !(r->outputs = calloc(n + 1, sizeof *r->outputs))) {
        st = oom();
        goto out;
    }
    const unsigned char *bin = (const unsigned char *)body + hlen;
    size_t bin_len = len - hlen, bin_off = 0;
    for (size_t i = 0; i < n && !st; i++) {
        st = decode_output(json_array_get(outputs, i), i, header_len >= 0, bin, bin_len, &bin_off,
                           &r->names[r->n], &r->outputs[r->n]);
        if (!st) r->n++;
    }
    if (!st && bin_off != bin_len)
        st = tern_error(TERN_ERR_INVALID_ARGUMENT,
                        "malformed response: %zu bytes of binary data follow the JSON but the "
                        "outputs claim %zu",
                        bin_len, bin_off);
out:
    json_decref(root);
    if (st) {
        infer_response_free(r);
        return st;
    }
    *out = r;
    return NULL;
}

/* ---- errors and names -------------------------------------------------- */

char *infer_error_message(const char *body, size_t len)
{
    enum { MAX = 400 };
    const char *msg = body;
    size_t n = len;
    json_t *root = json_loadb(body, len, 0, NULL);
    const json_t *e = json_object_get(root, "error");
    if (json_is_string(e)) {
        msg = json_string_value(e);
        n = json_string_length(e);
    }
    char *out = malloc(MAX + 8);
    if (!out) {
        json_decref(root);
        return NULL;
    }
    size_t o = 0, i = 0;
    for (; i < n && o < MAX; i++) {
        unsigned char c = (unsigned char)msg[i];
        bool space = c <= 0x20 || c == 0x7f; /* control characters and runs of space: one ' ' */
        if (!space || (o && out[o - 1] != ' ')) out[o++] = space ? ' ' : (char)c;
    }
    if (i < n) {
        /* drop a UTF-8 character the cut left incomplete */
        size_t start = o;
        while (start && ((unsigned char)out[start - 1] & 0xc0) == 0x80) start--;
        if (start) {
            unsigned char lead = (unsigned char)out[start - 1];
            size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
            if (start - 1 + need > o) o = start - 1;
        }
        memcpy(out + o, "...", 3);
        o += 3;
    }
    while (o && out[o - 1] == ' ') o--;
    out[o] = 0;
    json_decref(root);
    if (!o) {
        free(out);
        return strdup("(empty response body)");
    }
    return out;
}

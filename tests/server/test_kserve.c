/*
 * Unit tests of the KServe v2 codec (src/server/kserve.c). Expectations come
 * from the protocol and from literals written here: decoded values are
 * compared with the numbers in the request text, encoded responses are
 * parsed back with jansson, binary layouts are built by hand byte by byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/tensor.h"
#include "server/kserve.h"

/* ---- helpers ------------------------------------------------------------ */

static kserve_request *decode_ok_bin(const char *body, size_t len, long long hl,
                                     const kserve_limits *lim)
{
    kserve_request *r = NULL;
    tern_status *st = kserve_decode_request(body, len, hl, lim, &r);
    if (st) fail_msg("unexpected decode error: %s", tern_status_message(st));
    assert_non_null(r);
    return r;
}

static kserve_request *decode_ok(const char *json)
{
    return decode_ok_bin(json, strlen(json), -1, NULL);
}

/* Decodes a body that must fail; checks the code and that the message holds
 * every NULL-terminated substring given. */
static void expect_err_bin(const char *body, size_t len, long long hl, const kserve_limits *lim,
                           ...)
{
    kserve_request *r = (kserve_request *)1;
    tern_status *st = kserve_decode_request(body, len, hl, lim, &r);
    if (!st) fail_msg("decode of %.*s succeeded but should fail", (int)len, body);
    assert_null(r);
    assert_int_equal(tern_status_code(st), TERN_ERR_INVALID_ARGUMENT);
    const char *msg = tern_status_message(st);
    va_list ap;
    va_start(ap, lim);
    for (const char *want; (want = va_arg(ap, const char *));)
        if (!strstr(msg, want)) fail_msg("message \"%s\" lacks \"%s\"", msg, want);
    va_end(ap);
    tern_status_free(st);
}

#define EXPECT_ERR(json, ...) expect_err_bin(json, strlen(json), -1, NULL, __VA_ARGS__, NULL)

static const tern_tensor *input(const kserve_request *r, const char *name)
{
    for (int i = 0; i < r->n_inputs; i++)
        if (!strcmp(r->input_names[i], name)) return r->inputs[i];
    fail_msg("no input %s", name);
    return NULL;
}

static void check_shape(const tern_tensor *t, tern_dtype dt, int rank, const int64_t *dims)
{
    assert_int_equal(t->kind, TENSOR_DENSE);
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->rank, rank);
    for (int i = 0; i < rank; i++) assert_int_equal(t->dims[i], dims[i]);
}

/* A body: the JSON header followed by raw bytes. */
typedef struct body {
    char *p;
    size_t len;
    long long hl;
} body;

static body make_body(const char *json, const void *bin, size_t nbin)
{
    body b = {.hl = (long long)strlen(json)};
    b.len = strlen(json) + nbin;
    b.p = malloc(b.len + 1);
    assert_non_null(b.p);
    memcpy(b.p, json, strlen(json));
    if (nbin) memcpy(b.p + strlen(json), bin, nbin);
    return b;
}

/* Encodes and parses the JSON part back; returns the "outputs" array owner. */
static json_t *encode_parse(const char *id, int n, const kserve_output *outs, char **raw,
                            size_t *rawlen, long long *hl)
{
    char *bodyp;
    size_t len;
    long long h;
    tern_status *st = kserve_encode_response("m", "1", id, n, outs, &bodyp, &len, &h);
    if (st) fail_msg("encode failed: %s", tern_status_message(st));
    size_t jl = h >= 0 ? (size_t)h : len;
    json_error_t err;
    json_t *root = json_loadb(bodyp, jl, 0, &err);
    if (!root) fail_msg("response is not JSON: %s: %.*s", err.text, (int)jl, bodyp);
    if (raw) {
        *raw = bodyp;
        *rawlen = len;
        *hl = h;
    } else {
        free(bodyp);
    }
    return root;
}

static json_t *out_named(json_t *root, const char *name)
{
    json_t *outs = json_object_get(root, "outputs");
    size_t i;
    json_t *o;
    json_array_foreach(outs, i, o)
    {
        if (!strcmp(json_string_value(json_object_get(o, "name")), name)) return o;
    }
    fail_msg("response lacks output %s", name);
    return NULL;
}

static tern_tensor *tensor_of(tern_dtype dt, int rank, const int64_t *dims, const void *data)
{
    tern_tensor *t;
    tern_status *st = tern_tensor_create(dt, rank, dims, &t);
    assert_null(st);
    if (data) memcpy(t->data, data, tern_tensor_nbytes(t));
    return t;
}

/* ---- datatype names ----------------------------------------------------- */

static void test_dtype_names(void **state)
{
    (void)state;
    const char *names[] = {"BOOL",  "UINT8", "UINT16", "UINT32", "UINT64", "INT8",  "INT16",
                           "INT32", "INT64", "FP16",   "FP32",   "FP64",   "BYTES", "BF16"};
    tern_dtype dts[] = {TERN_BOOL,  TERN_UINT8,  TERN_UINT16, TERN_UINT32,  TERN_UINT64,
                        TERN_INT8,  TERN_INT16,  TERN_INT32,  TERN_INT64,   TERN_FLOAT16,
                        TERN_FLOAT, TERN_DOUBLE, TERN_STRING, TERN_BFLOAT16};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        assert_int_equal(kserve_dtype(names[i]), dts[i]);
        assert_string_equal(kserve_dtype_name(dts[i]), names[i]);
    }
    assert_int_equal(kserve_dtype("FLOAT"), TERN_UNDEFINED);
    assert_int_equal(kserve_dtype("fp32"), TERN_UNDEFINED);
    assert_int_equal(kserve_dtype(NULL), TERN_UNDEFINED);
    assert_null(kserve_dtype_name(TERN_COMPLEX64));
    assert_null(kserve_dtype_name(TERN_UNDEFINED));
}

/* ---- JSON round trip of every datatype ---------------------------------- */

static const char *ALL_TYPES_JSON =
    "{\"id\":\"r-1\",\"inputs\":["
    "{\"name\":\"b\",\"shape\":[3],\"datatype\":\"BOOL\",\"data\":[true,false,true]},"
    "{\"name\":\"u8\",\"shape\":[3],\"datatype\":\"UINT8\",\"data\":[0,255,7]},"
    "{\"name\":\"u16\",\"shape\":[2],\"datatype\":\"UINT16\",\"data\":[0,65535]},"
    "{\"name\":\"u32\",\"shape\":[2],\"datatype\":\"UINT32\",\"data\":[0,4294967295]},"
    "{\"name\":\"u64\",\"shape\":[3],\"datatype\":\"UINT64\","
    "\"data\":[0,9223372036854775807,1.8e19]},"
    "{\"name\":\"i8\",\"shape\":[2],\"datatype\":\"INT8\",\"data\":[-128,127]},"
    "{\"name\":\"i16\",\"shape\":[2],\"datatype\":\"INT16\",\"data\":[-32768,32767]},"
    "{\"name\":\"i32\",\"shape\":[3],\"datatype\":\"INT32\",\"data\":[-2147483648,2147483647,"
    "4.0]},"
    "{\"name\":\"i64\",\"shape\":[2],\"datatype\":\"INT64\","
    "\"data\":[-9223372036854775808,9223372036854775807]},"
    "{\"name\":\"f16\",\"shape\":[4],\"datatype\":\"FP16\",\"data\":[0.5,-2,65504,1e-7]},"
    "{\"name\":\"bf16\",\"shape\":[2],\"datatype\":\"BF16\",\"data\":[1.0,-2.5]},"
    "{\"name\":\"f32\",\"shape\":[4],\"datatype\":\"FP32\",\"data\":[0.1,-3.5,1e-30,7]},"
    "{\"name\":\"f64\",\"shape\":[3],\"datatype\":\"FP64\",\"data\":[0.1,-1e300,3]},"
    "{\"name\":\"s\",\"shape\":[3],\"datatype\":\"BYTES\","
    "\"data\":[\"hello\",\"\",\"\\u00fcn\\\"i\\n\"]}"
    "]}";

static void check_all_types(const kserve_request *r)
{
    int64_t d2[] = {2}, d3[] = {3}, d4[] = {4};
    const tern_tensor *t = input(r, "b");
    check_shape(t, TERN_BOOL, 1, d3);
    const bool *b = t->data;
    assert_true(b[0] && !b[1] && b[2]);

    t = input(r, "u8");
    check_shape(t, TERN_UINT8, 1, d3);
    const uint8_t *u8 = t->data;
    assert_true(u8[0] == 0 && u8[1] == 255 && u8[2] == 7);
    t = input(r, "u16");
    check_shape(t, TERN_UINT16, 1, d2);
    assert_int_equal(((const uint16_t *)t->data)[1], 65535);
    t = input(r, "u32");
    check_shape(t, TERN_UINT32, 1, d2);
    assert_true(((const uint32_t *)t->data)[1] == 4294967295u);
    t = input(r, "u64");
    check_shape(t, TERN_UINT64, 1, d3);
    const uint64_t *u64 = t->data;
    assert_true(u64[0] == 0 && u64[1] == 9223372036854775807ull &&
                u64[2] == 18000000000000000000ull);
    t = input(r, "i8");
    check_shape(t, TERN_INT8, 1, d2);
    assert_true(((const int8_t *)t->data)[0] == -128 && ((const int8_t *)t->data)[1] == 127);
    t = input(r, "i16");
    check_shape(t, TERN_INT16, 1, d2);
    assert_true(((const int16_t *)t->data)[0] == -32768);
    t = input(r, "i32");
    check_shape(t, TERN_INT32, 1, d3);
    const int32_t *i32 = t->data;
    assert_true(i32[0] == INT32_MIN && i32[1] == INT32_MAX && i32[2] == 4);
    t = input(r, "i64");
    check_shape(t, TERN_INT64, 1, d2);
    assert_true(((const int64_t *)t->data)[0] == INT64_MIN &&
                ((const int64_t *)t->data)[1] == INT64_MAX);

    /* FP16 bit patterns from the IEEE binary16 layout: 0.5 = 0x3800,
     * -2 = 0xc000, 65504 = 0x7bff (largest), 1e-7 ~ 2 * 2^-24 = 0x0002. */
    t = input(r, "f16");
    check_shape(t, TERN_FLOAT16, 1, d4);
    const uint16_t *h = t->data;
    assert_int_equal(h[0], 0x3800);
    assert_int_equal(h[1], 0xc000);
    assert_int_equal(h[2], 0x7bff);
    assert_int_equal(h[3], 0x0002);
    /* bfloat16: the top half of the float32 pattern. */
    t = input(r, "bf16");
    check_shape(t, TERN_BFLOAT16, 1, d2);
    assert_int_equal(((const uint16_t *)t->data)[0], 0x3f80);
    assert_int_equal(((const uint16_t *)t->data)[1], 0xc020);

    t = input(r, "f32");
    check_shape(t, TERN_FLOAT, 1, d4);
    const float *f = t->data;
    assert_true(f[0] == 0.1f && f[1] == -3.5f && f[2] == 1e-30f && f[3] == 7.0f);
    t = input(r, "f64");
    check_shape(t, TERN_DOUBLE, 1, d3);
    const double *d = t->data;
    assert_true(d[0] == 0.1 && d[1] == -1e300 && d[2] == 3.0);

    t = input(r, "s");
    check_shape(t, TERN_STRING, 1, d3);
    char *const *s = t->data;
    assert_string_equal(s[0], "hello");
    assert_string_equal(s[1], "");
    assert_string_equal(s[2], "\xc3\xbcn\"i\n");
}

static void test_json_all_types(void **state)
{
    (void)state;
    kserve_request *r = decode_ok(ALL_TYPES_JSON);
    assert_int_equal(r->n_inputs, 14);
    assert_string_equal(r->id, "r-1");
    assert_int_equal(r->n_outputs, 0);
    assert_false(r->binary_default);
    assert_int_equal(r->timeout_us, 0);
    check_all_types(r);

    /* Encode every input back as an output and read it with jansson. */
    kserve_output outs[14];
    int n = 0;
    for (int i = 0; i < r->n_inputs; i++)
        if (strcmp(r->input_names[i], "u64")) /* checked as text below */
            outs[n++] = (kserve_output){.name = r->input_names[i], .t = r->inputs[i]};
    json_t *root = encode_parse("r-1", n, outs, NULL, NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(root, "model_name")), "m");
    assert_string_equal(json_string_value(json_object_get(root, "model_version")), "1");
    assert_string_equal(json_string_value(json_object_get(root, "id")), "r-1");
    assert_int_equal(json_array_size(json_object_get(root, "outputs")), 13);

    json_t *o = out_named(root, "b");
    assert_string_equal(json_string_value(json_object_get(o, "datatype")), "BOOL");
    json_t *a = json_object_get(o, "data");
    assert_true(json_is_true(json_array_get(a, 0)) && json_is_false(json_array_get(a, 1)));
    assert_null(json_object_get(o, "parameters"));

    struct {
        const char *name, *dt;
        long long v[3];
        int n;
    } ints[] = {
        {"u8", "UINT8", {0, 255, 7}, 3},
        {"u16", "UINT16", {0, 65535}, 2},
        {"u32", "UINT32", {0, 4294967295ll}, 2},
        {"i8", "INT8", {-128, 127}, 2},
        {"i16", "INT16", {-32768, 32767}, 2},
        {"i32", "INT32", {INT32_MIN, INT32_MAX, 4}, 3},
        {"i64", "INT64", {INT64_MIN, INT64_MAX}, 2},
    };
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        o = out_named(root, ints[k].name);
        assert_string_equal(json_string_value(json_object_get(o, "datatype")), ints[k].dt);
        json_t *shape = json_object_get(o, "shape");
        assert_int_equal(json_array_size(shape), 1);
        assert_int_equal(json_integer_value(json_array_get(shape, 0)), ints[k].n);
        a = json_object_get(o, "data");
        assert_int_equal(json_array_size(a), ints[k].n);
        for (int j = 0; j < ints[k].n; j++) {
            assert_true(json_is_integer(json_array_get(a, j)));
            assert_true(json_integer_value(json_array_get(a, j)) == ints[k].v[j]);
        }
    }

    o = out_named(root, "f16");
    assert_string_equal(json_string_value(json_object_get(o, "datatype")), "FP16");
    a = json_object_get(o, "data");
    assert_true(json_number_value(json_array_get(a, 0)) == 0.5);
    assert_true(json_number_value(json_array_get(a, 1)) == -2.0);
    /* The shortest text that reads back as the half float (as numpy prints
     * float16): 65504 (gap 32) prints as 65500.0, 2 * 2^-24 as 1e-07. */
    assert_true(json_number_value(json_array_get(a, 2)) == 65500.0);
    assert_int_equal(f32_to_f16((float)json_number_value(json_array_get(a, 2))), 0x7bff);
    assert_true(json_number_value(json_array_get(a, 3)) == 1e-7);
    assert_int_equal(f32_to_f16((float)json_number_value(json_array_get(a, 3))), 0x0002);

    o = out_named(root, "bf16");
    a = json_object_get(o, "data");
    assert_true(json_number_value(json_array_get(a, 0)) == 1.0);
    assert_true(json_number_value(json_array_get(a, 1)) == -2.5);
    assert_true(json_is_real(json_array_get(a, 0))); /* printed as a float, "1.0" */

    o = out_named(root, "f32");
    a = json_object_get(o, "data");
    assert_true((float)json_real_value(json_array_get(a, 0)) == 0.1f);
    assert_true(json_real_value(json_array_get(a, 0)) == 0.1); /* shortest: "0.1" */
    assert_true((float)json_real_value(json_array_get(a, 1)) == -3.5f);
    assert_true((float)json_real_value(json_array_get(a, 2)) == 1e-30f);
    assert_true(json_real_value(json_array_get(a, 3)) == 7.0);

    o = out_named(root, "f64");
    a = json_object_get(o, "data");
    assert_true(json_real_value(json_array_get(a, 0)) == 0.1);
    assert_true(json_real_value(json_array_get(a, 1)) == -1e300);
    assert_true(json_real_value(json_array_get(a, 2)) == 3.0);

    o = out_named(root, "s");
    assert_string_equal(json_string_value(json_object_get(o, "datatype")), "BYTES");
    a = json_object_get(o, "data");
    assert_string_equal(json_string_value(json_array_get(a, 0)), "hello");
    assert_string_equal(json_string_value(json_array_get(a, 1)), "");
    assert_string_equal(json_string_value(json_array_get(a, 2)), "\xc3\xbcn\"i\n");

    json_decref(root);

    /* UINT64 as text: jansson itself stops at int64. */
    kserve_output ou = {.name = "u64", .t = input(r, "u64")};
    char *raw;
    size_t len;
    long long hl;
    assert_null(kserve_encode_response("m", "1", NULL, 1, &ou, &raw, &len, &hl));
    assert_non_null(strstr(raw,
                           "\"datatype\":\"UINT64\",\"shape\":[3],\"data\":[0,9223372036854775807,"
                           "18000000000000000000]"));
    free(raw);
    kserve_request_free(r);
}

static void test_uint64_max_as_text(void **state)
{
    (void)state;
    uint64_t v[2] = {UINT64_MAX, 12345};
    int64_t d[] = {2};
    tern_tensor *t = tensor_of(TERN_UINT64, 1, d, v);
    kserve_output o = {.name = "u", .t = t};
    char *b;
    size_t len;
    long long hl;
    assert_null(kserve_encode_response("m", "1", NULL, 1, &o, &b, &len, &hl));
    assert_int_equal(hl, -1);
    assert_non_null(strstr(b, "\"data\":[18446744073709551615,12345]"));
    free(b);
    tern_tensor_free(t);
}

/* ---- nesting ------------------------------------------------------------ */

static void test_nested_and_flat(void **state)
{
    (void)state;
    kserve_request *flat = decode_ok("{\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],"
                                     "\"datatype\":\"INT32\",\"data\":[1,2,3,4,5,6]}]}");
    kserve_request *nest = decode_ok("{\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],"
                                     "\"datatype\":\"INT32\",\"data\":[[1,2,3],[4,5,6]]}]}");
    /* Any consistent nesting with the right count is accepted, as in Triton. */
    kserve_request *other = decode_ok("{\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],"
                                      "\"datatype\":\"INT32\",\"data\":[[[1],[2]],[[3],[4]],[[5],"
                                      "[6]]]}]}");
    int64_t d[] = {2, 3};
    const kserve_request *rs[] = {flat, nest, other};
    for (int k = 0; k < 3; k++) {
        check_shape(rs[k]->inputs[0], TERN_INT32, 2, d);
        const int32_t *v = rs[k]->inputs[0]->data;
        for (int i = 0; i < 6; i++) assert_int_equal(v[i], i + 1);
    }
    kserve_request_free(flat);
    kserve_request_free(nest);
    kserve_request_free(other);

    kserve_request *s =
        decode_ok("{\"inputs\":[{\"name\":\"s\",\"shape\":[2,2],"
                  "\"datatype\":\"BYTES\",\"data\":[[\"a\",\"b\"],[\"c\",\"d\"]]}]}");
    char *const *sv = s->inputs[0]->data;
    assert_string_equal(sv[0], "a");
    assert_string_equal(sv[3], "d");
    kserve_request_free(s);

    /* Empty and scalar tensors. */
    kserve_request *e =
        decode_ok("{\"inputs\":[{\"name\":\"e\",\"shape\":[2,0],"
                  "\"datatype\":\"FP32\",\"data\":[[],[]]},"
                  "{\"name\":\"z\",\"shape\":[0],\"datatype\":\"BYTES\",\"data\":[]},"
                  "{\"name\":\"c\",\"shape\":[],\"datatype\":\"FP64\",\"data\":[2.5]}]}");
    assert_int_equal(e->inputs[0]->numel, 0);
    assert_int_equal(e->inputs[1]->numel, 0);
    assert_int_equal(e->inputs[2]->rank, 0);
    assert_true(((double *)e->inputs[2]->data)[0] == 2.5);
    kserve_output outs[3] = {{.name = "e", .t = e->inputs[0]},
                             {.name = "z", .t = e->inputs[1], .binary = true},
                             {.name = "c", .t = e->inputs[2]}};
    char *raw;
    size_t len;
    long long hl;
    json_t *root = encode_parse(NULL, 3, outs, &raw, &len, &hl);
    assert_int_equal(hl, (long long)len); /* binary but empty */
    assert_int_equal(json_array_size(json_object_get(out_named(root, "e"), "data")), 0);
    assert_int_equal(json_array_size(json_object_get(out_named(root, "c"), "shape")), 0);
    assert_true(json_real_value(json_array_get(json_object_get(out_named(root, "c"), "data"), 0)) ==
                2.5);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(out_named(root, "z"), "parameters"), "binary_data_size")),
                     0);
    free(raw);
    json_decref(root);
    kserve_request_free(e);
}

static void test_nesting_errors(void **state)
{
    (void)state;
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[4],\"datatype\":\"INT32\","
               "\"data\":[[1,2],[3]]}]}",
               "input 'x'", "not consistently nested");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[3],\"datatype\":\"INT32\","
               "\"data\":[[1,2],3]}]}",
               "input 'x'", "not consistently nested");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"INT32\","
               "\"data\":[1,[2]]}]}",
               "input 'x'", "element 1", "not nested consistently");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT32\","
               "\"data\":[[[[[[[[[[[[[1]]]]]]]]]]]]]}]}",
               "input 'x'", "nested deeper than 12");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT32\",\"data\":5}]}",
               "input 'x'", "data must be a list");
}

/* ---- binary round trip of every datatype -------------------------------- */

static void test_binary_all_types(void **state)
{
    (void)state;
    /* Bytes laid out by hand, little endian. Order: FP64 first so that it is
     * 8-aligned (the header is padded to a multiple of 8), then 3 BOOL bytes
     * that push the following FP32 off its alignment. */
    unsigned char bin[256];
    size_t n = 0;
    double f64[2] = {0.25, -1e-300};
    memcpy(bin + n, f64, 16), n += 16;
    bin[n++] = 1, bin[n++] = 0, bin[n++] = 1; /* BOOL */
    float f32[2] = {1.5f, -0.1f};             /* at offset 19: unaligned */
    memcpy(bin + n, f32, 8), n += 8;          /* -> 27 */
    bin[n++] = 0xff, bin[n++] = 0x80;         /* INT8 -1, -128 -> 29 */
    bin[n++] = 0x00, bin[n++] = 0x3c;         /* FP16 1.0 -> 31 */
    bin[n++] = 0x80, bin[n++] = 0x3f;         /* BF16 1.0 -> 33 */
    bin[n++] = 0x01, bin[n++] = 0x00, bin[n++] = 0x00, bin[n++] = 0x00; /* UINT32 1 at 33 */
    /* BYTES ["ab", "", "xyz"] */
    const unsigned char sb[] = {2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0, 3, 0, 0, 0, 'x', 'y', 'z'};
    memcpy(bin + n, sb, sizeof sb), n += sizeof sb;
    /* INT64 -2 and UINT16 65535 */
    int64_t i64 = -2;
    memcpy(bin + n, &i64, 8), n += 8;
    bin[n++] = 0xff, bin[n++] = 0xff;

    char json[1024];
    int jl = snprintf(json, sizeof json,
                      "{\"inputs\":["
                      "{\"name\":\"d\",\"shape\":[2],\"datatype\":\"FP64\",\"parameters\":{"
                      "\"binary_data_size\":16}},"
                      "{\"name\":\"b\",\"shape\":[3],\"datatype\":\"BOOL\",\"parameters\":{"
                      "\"binary_data_size\":3}},"
                      "{\"name\":\"f\",\"shape\":[1,2],\"datatype\":\"FP32\",\"parameters\":{"
                      "\"binary_data_size\":8}},"
                      "{\"name\":\"i8\",\"shape\":[2],\"datatype\":\"INT8\",\"parameters\":{"
                      "\"binary_data_size\":2}},"
                      "{\"name\":\"h\",\"shape\":[1],\"datatype\":\"FP16\",\"parameters\":{"
                      "\"binary_data_size\":2}},"
                      "{\"name\":\"bf\",\"shape\":[1],\"datatype\":\"BF16\",\"parameters\":{"
                      "\"binary_data_size\":2}},"
                      "{\"name\":\"u32\",\"shape\":[1],\"datatype\":\"UINT32\",\"parameters\":{"
                      "\"binary_data_size\":4}},"
                      "{\"name\":\"s\",\"shape\":[3],\"datatype\":\"BYTES\",\"parameters\":{"
                      "\"binary_data_size\":%zu}},"
                      "{\"name\":\"i64\",\"shape\":[1],\"datatype\":\"INT64\",\"parameters\":{"
                      "\"binary_data_size\":8}},"
                      "{\"name\":\"u16\",\"shape\":[1],\"datatype\":\"UINT16\",\"parameters\":{"
                      "\"binary_data_size\":2}},"
                      "{\"name\":\"j\",\"shape\":[2],\"datatype\":\"INT32\",\"data\":[5,6]}"
                      "]}",
                      sizeof sb);
    while (jl % 8) json[jl++] = ' '; /* JSON allows trailing white space */
    json[jl] = 0;
    body b = make_body(json, bin, n);
    kserve_request *r = decode_ok_bin(b.p, b.len, b.hl, NULL);
    assert_int_equal(r->n_inputs, 11);
    const char *bin0 = b.p + b.hl;

    const tern_tensor *t = input(r, "d");
    assert_ptr_equal(t->data, bin0); /* zero copy */
    assert_false(t->owns);
    assert_true(((double *)t->data)[0] == 0.25 && ((double *)t->data)[1] == -1e-300);

    t = input(r, "b");
    assert_ptr_equal(t->data, bin0 + 16);
    assert_true(((bool *)t->data)[0] && !((bool *)t->data)[1] && ((bool *)t->data)[2]);

    t = input(r, "f");
    int64_t d12[] = {1, 2};
    check_shape(t, TERN_FLOAT, 2, d12);
    assert_ptr_not_equal(t->data, bin0 + 19); /* misaligned: copied */
    assert_true(t->owns);
    assert_int_equal((uintptr_t)t->data % 4, 0);
    assert_true(((float *)t->data)[0] == 1.5f && ((float *)t->data)[1] == -0.1f);

    t = input(r, "i8");
    assert_ptr_equal(t->data, bin0 + 27);
    assert_true(((int8_t *)t->data)[0] == -1 && ((int8_t *)t->data)[1] == -128);
    t = input(r, "h");
    assert_int_equal(((uint16_t *)t->data)[0], 0x3c00);
    t = input(r, "bf");
    assert_int_equal(((uint16_t *)t->data)[0], 0x3f80);
    t = input(r, "u32");
    assert_int_equal(((uint32_t *)t->data)[0], 1);
    t = input(r, "s");
    char *const *s = t->data;
    assert_string_equal(s[0], "ab");
    assert_string_equal(s[1], "");
    assert_string_equal(s[2], "xyz");
    t = input(r, "i64");
    assert_true(((int64_t *)t->data)[0] == -2);
    t = input(r, "u16");
    assert_int_equal(((uint16_t *)t->data)[0], 65535);
    t = input(r, "j");
    assert_int_equal(((int32_t *)t->data)[1], 6);

    /* Encode them all as binary outputs but "j": the bytes must equal the
     * request's, in output order, after a JSON header naming each size. */
    kserve_output outs[11];
    for (int i = 0; i < r->n_inputs; i++)
        outs[i] = (kserve_output){.name = r->input_names[i],
                                  .t = r->inputs[i],
                                  .binary = strcmp(r->input_names[i], "j") != 0};
    char *raw;
    size_t len;
    long long hl;
    json_t *root = encode_parse(NULL, r->n_inputs, outs, &raw, &len, &hl);
    assert_true(hl > 0);
    assert_int_equal(len - (size_t)hl, n);
    assert_memory_equal(raw + hl, bin, n);
    const char *names[] = {"d", "b", "f", "i8", "h", "bf", "u32", "s", "i64", "u16"};
    long long sizes[] = {16, 3, 8, 2, 2, 2, 4, (long long)sizeof sb, 8, 2};
    for (int i = 0; i < 10; i++) {
        json_t *o = out_named(root, names[i]);
        assert_null(json_object_get(o, "data"));
        assert_int_equal(json_integer_value(
                             json_object_get(json_object_get(o, "parameters"), "binary_data_size")),
                         sizes[i]);
    }
    json_t *a = json_object_get(out_named(root, "j"), "data");
    assert_int_equal(json_integer_value(json_array_get(a, 0)), 5);
    assert_null(json_object_get(out_named(root, "j"), "parameters"));
    json_decref(root);
    free(raw);
    kserve_request_free(r);
    free(b.p);
}

/* A binary request body fed back from its own prefixes and with flipped
 * bytes: every variant fails cleanly or succeeds, never touches memory
 * outside the body (the sanitizer build checks that). */
static void test_binary_mutations(void **state)
{
    (void)state;
    float f[4] = {1, 2, 3, 4};
    unsigned char bin[16 + 12];
    memcpy(bin, f, 16);
    const unsigned char sb[] = {3, 0, 0, 0, 'a', 'b', 'c', 1, 0, 0, 0, 'd'};
    memcpy(bin + 16, sb, 12);
    const char *json = "{\"inputs\":[{\"name\":\"f\",\"shape\":[2,2],\"datatype\":\"FP32\","
                       "\"parameters\":{\"binary_data_size\":16}},{\"name\":\"s\",\"shape\":[2],"
                       "\"datatype\":\"BYTES\",\"parameters\":{\"binary_data_size\":12}}]}";
    body b = make_body(json, bin, sizeof bin);
    kserve_request *r = decode_ok_bin(b.p, b.len, b.hl, NULL);
    kserve_request_free(r);
    for (size_t cut = 0; cut < b.len; cut++) {
        /* Copy so that ASan sees the exact end of the shorter body. */
        char *p = malloc(cut ? cut : 1);
        memcpy(p, b.p, cut);
        r = NULL;
        tern_status *st =
            kserve_decode_request(p, cut, cut < (size_t)b.hl ? (long long)cut : b.hl, NULL, &r);
        assert_non_null(st); /* every prefix is short of something */
        tern_status_free(st);
        free(p);
    }
    uint32_t seed = 12345;
    for (int it = 0; it < 3000; it++) {
        char *p = malloc(b.len);
        memcpy(p, b.p, b.len);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            p[(seed >> 8) % b.len] = (char)(seed >> 20);
        }
        r = NULL;
        tern_status *st = kserve_decode_request(p, b.len, b.hl, NULL, &r);
        if (st)
            tern_status_free(st);
        else
            kserve_request_free(r);
        free(p);
    }
    free(b.p);
}

/* ---- BYTES -------------------------------------------------------------- */

static void test_bytes_binary_errors(void **state)
{
    (void)state;
    const char *fmt = "{\"inputs\":[{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\","
                      "\"parameters\":{\"binary_data_size\":%zu}}]}";
    char json[256];
    struct {
        const unsigned char bin[16];
        size_t n;
        const char *want;
    } cases[] = {
        {{1, 0, 0, 0, 'a', 2, 0}, 7, "ends inside the length of element 1"},
        {{1, 0, 0, 0, 'a', 9, 0, 0, 0, 'b'}, 10, "element 1 has length 9 but only 1 bytes"},
        {{1, 0, 0, 0, 'a'}, 5, "has 1 elements but shape [2] needs 2"},
        {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 12, "more than the 2 elements"},
        {{1, 0, 0, 0, 'a', 2, 0, 0, 0, 'b', 0}, 11, "element 1 contains a NUL byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(json, sizeof json, fmt, cases[i].n);
        body b = make_body(json, cases[i].bin, cases[i].n);
        expect_err_bin(b.p, b.len, b.hl, NULL, "input 's'", cases[i].want, NULL);
        free(b.p);
    }
    /* JSON BYTES must be strings. */
    EXPECT_ERR("{\"inputs\":[{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\","
               "\"data\":[\"a\",3]}]}",
               "input 's'", "element 1", "is a number", "BYTES needs strings");
}

/* ---- decode errors ------------------------------------------------------ */

static void test_structure_errors(void **state)
{
    (void)state;
    EXPECT_ERR("{\"inputs\":[", "not valid JSON");
    EXPECT_ERR("", "not valid JSON");
    EXPECT_ERR("{\"inputs\":[]} trailing", "not valid JSON");
    EXPECT_ERR("{\"inputs\":[],\"inputs\":[]}", "not valid JSON", "duplicate");
    EXPECT_ERR("[1,2]", "must be a JSON object");
    EXPECT_ERR("{}", "inputs: missing");
    EXPECT_ERR("{\"inputs\":{}}", "inputs: must be a list");
    EXPECT_ERR("{\"inputs\":[3]}", "inputs[0]: must be an object");
    EXPECT_ERR("{\"inputs\":[{\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}",
               "inputs[0].name: missing");
    EXPECT_ERR("{\"inputs\":[{\"name\":7,\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}",
               "inputs[0].name: must be a non-empty string");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"data\":[1]}]}",
               "inputs[0].datatype: missing", "'x'");
    EXPECT_ERR(
        "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FLOAT32\",\"data\":[1]}]}",
        "inputs[0].datatype", "unknown datatype 'FLOAT32'", "'x'");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":32,\"data\":[1]}]}",
               "inputs[0].datatype: must be a string");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"data\":[1]}]}",
               "inputs[0].shape: missing");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":3,\"datatype\":\"FP32\",\"data\":[1]}]}",
               "inputs[0].shape: must be a list");
    EXPECT_ERR(
        "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,-2],\"datatype\":\"FP32\",\"data\":[1]}]}",
        "inputs[0].shape[1]: must be a non-negative integer");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1.5],\"datatype\":\"FP32\",\"data\":[1]}]}",
               "inputs[0].shape[0]: must be a non-negative integer");
    EXPECT_ERR(
        "{\"inputs\":[{\"name\":\"x\",\"shape\":[\"2\"],\"datatype\":\"FP32\",\"data\":[1]}]}",
        "inputs[0].shape[0]");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1],"
               "\"datatype\":\"FP32\",\"data\":[1]}]}",
               "inputs[0].shape: rank 13 exceeds the maximum of 12");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[4611686018427387904,4],"
               "\"datatype\":\"FP32\",\"data\":[1]}]}",
               "input 'x'", "too many elements");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1099511627777],"
               "\"datatype\":\"FP32\",\"data\":[1]}]}",
               "input 'x'", "too many elements");
    /* A huge but legal shape with little data fails on the count, before
     * anything of that size is allocated. */
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1000000000,1000],"
               "\"datatype\":\"FP64\",\"data\":[1]}]}",
               "input 'x': data has 1 elements but shape [1000000000,1000] needs 1000000000000");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],\"datatype\":\"FP32\","
               "\"data\":[1,2,3,4,5]}]}",
               "input 'x': data has 5 elements but shape [2,3] needs 6");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\"}]}",
               "input 'x': data missing");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]},"
               "{\"name\":\"y\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]},"
               "{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[2]}]}",
               "inputs[2].name", "input 'x' is given twice");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1],"
               "\"parameters\":[]}]}",
               "inputs[0].parameters: must be an object");
    EXPECT_ERR("{\"id\":5,\"inputs\":[]}", "id: must be a string");
    EXPECT_ERR("{\"parameters\":7,\"inputs\":[]}", "parameters: must be an object");
    EXPECT_ERR("{\"parameters\":{\"binary_data_output\":1},\"inputs\":[]}",
               "parameters.binary_data_output: must be true or false");
    EXPECT_ERR("{\"parameters\":{\"timeout\":-5},\"inputs\":[]}", "parameters.timeout");
    EXPECT_ERR("{\"parameters\":{\"timeout\":\"1s\"},\"inputs\":[]}", "parameters.timeout");
    EXPECT_ERR("{\"inputs\":[],\"outputs\":{}}", "outputs: must be a list");
    EXPECT_ERR("{\"inputs\":[],\"outputs\":[{}]}", "outputs[0].name: missing");
    EXPECT_ERR("{\"inputs\":[],\"outputs\":[{\"name\":\"\"}]}", "outputs[0].name: must be");
    EXPECT_ERR("{\"inputs\":[],\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data\":"
               "\"yes\"}}]}",
               "output 'y': parameters.binary_data must be true or false");
    EXPECT_ERR("{\"inputs\":[],\"outputs\":[{\"name\":\"y\"},{\"name\":\"z\"},{\"name\":\"y\"}]}",
               "outputs[2].name", "output 'y' is requested twice");
    /* Over the configured element limit. */
    kserve_limits lim = {.max_elements = 100};
    const char *big = "{\"inputs\":[{\"name\":\"x\",\"shape\":[101],\"datatype\":\"FP32\","
                      "\"data\":[1]}]}";
    expect_err_bin(big, strlen(big), -1, &lim, "input 'x'", "101 elements, over the limit of 100",
                   NULL);
    const char *ok = "{\"inputs\":[{\"name\":\"x\",\"shape\":[100],\"datatype\":\"FP32\","
                     "\"data\":[1]}]}";
    expect_err_bin(ok, strlen(ok), -1, &lim, "data has 1 elements but shape [100] needs 100", NULL);
}

/* Many inputs: the duplicate check must not be quadratic, and must work. */
static void test_many_inputs(void **state)
{
    (void)state;
    size_t n = 20000, cap = n * 80 + 64, o = 0;
    char *j = malloc(cap);
    o += (size_t)snprintf(j + o, cap - o, "{\"inputs\":[");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(j + o, cap - o,
                              "%s{\"name\":\"in%zu\",\"shape\":[1],\"datatype\":\"INT8\","
                              "\"data\":[1]}",
                              i ? "," : "", i == n - 1 ? (size_t)7 : i);
    snprintf(j + o, cap - o, "]}");
    EXPECT_ERR(j, "input 'in7' is given twice");
    free(j);
}

static void test_value_errors(void **state)
{
    (void)state;
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"INT32\","
               "\"data\":[1,1.5]}]}",
               "input 'x'", "element 1", "1.5", "not an integer", "INT32");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"UINT8\","
               "\"data\":[1,300]}]}",
               "input 'x'", "element 1", "300", "out of range for UINT8");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"UINT8\","
               "\"data\":[-1]}]}",
               "out of range for UINT8");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT8\","
               "\"data\":[128]}]}",
               "out of range for INT8");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT16\","
               "\"data\":[40000.0]}]}",
               "out of range for INT16");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT64\","
               "\"data\":[1e19]}]}",
               "out of range for INT64");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"UINT64\","
               "\"data\":[-3]}]}",
               "out of range for UINT64");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"UINT64\","
               "\"data\":[2e19]}]}",
               "out of range for UINT64");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"UINT32\","
               "\"data\":[4294967296]}]}",
               "out of range for UINT32");
    /* Non-numeric data and wrong JSON types. */
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\","
               "\"data\":[1,\"abc\"]}]}",
               "input 'x'", "element 1", "is a string", "FP32 needs numbers");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP64\","
               "\"data\":[null]}]}",
               "element 0", "is null", "FP64 needs numbers");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT32\","
               "\"data\":[true]}]}",
               "is a boolean", "INT32 needs integers");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT32\","
               "\"data\":[{}]}]}",
               "is an object");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"BOOL\","
               "\"data\":[true,1]}]}",
               "input 'x'", "element 1", "is a number", "BOOL needs true or false");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP16\","
               "\"data\":[\"1\"]}]}",
               "FP16 needs numbers");
    /* Float overflow (JSON has no infinity; 1e39 does not fit a float). */
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\","
               "\"data\":[1e39]}]}",
               "input 'x'", "out of range for FP32");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP16\","
               "\"data\":[70000]}]}",
               "input 'x'", "out of range for FP16");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"BF16\","
               "\"data\":[-3.4e38]}]}",
               "out of range for BF16");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP64\","
               "\"data\":[NaN]}]}",
               "not valid JSON");
    EXPECT_ERR("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP64\","
               "\"data\":[1e400]}]}",
               "not valid JSON");
    /* The shortest text of FLT_MAX (3.4028235e38, slightly above it) and
     * 65504 for FP16 are accepted. */
    kserve_request *r = decode_ok("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":"
                                  "\"FP32\",\"data\":[3.4028235e38,-3.4028235e38]},"
                                  "{\"name\":\"h\",\"shape\":[1],\"datatype\":\"FP16\","
                                  "\"data\":[65519]}]}");
    assert_true(((float *)r->inputs[0]->data)[0] == FLT_MAX);
    assert_true(((float *)r->inputs[0]->data)[1] == -FLT_MAX);
    assert_int_equal(((uint16_t *)r->inputs[1]->data)[0], 0x7bff);
    kserve_request_free(r);
}

static void test_binary_errors(void **state)
{
    (void)state;
    const char *j16 = "{\"inputs\":[{\"name\":\"x\",\"shape\":[4],\"datatype\":\"FP32\","
                      "\"parameters\":{\"binary_data_size\":16}}]}";
    unsigned char bin[32] = {0};
    /* Truncated: 8 of 16 bytes. */
    body b = make_body(j16, bin, 8);
    expect_err_bin(b.p, b.len, b.hl, NULL, "input 'x'", "binary_data_size is 16", "only 8 bytes",
                   NULL);
    /* Left over: 20 bytes for a 16-byte input. */
    free(b.p);
    b = make_body(j16, bin, 20);
    expect_err_bin(b.p, b.len, b.hl, NULL, "20 bytes of binary data", "add up to 16", NULL);
    /* Header length beyond the body. */
    expect_err_bin(b.p, b.len, (long long)b.len + 1, NULL, "Inference-Header-Content-Length", NULL);
    /* Header length that cuts the JSON. */
    expect_err_bin(b.p, b.len, b.hl - 3, NULL, "not valid JSON", NULL);
    /* No header: the binary tail makes the whole body invalid JSON. */
    expect_err_bin(b.p, b.len, -1, NULL, "not valid JSON", NULL);
    free(b.p);
    /* binary_data_size without the header at all. */
    expect_err_bin(j16, strlen(j16), -1, NULL, "input 'x'", "needs the Inference-Header", NULL);
    /* Size disagreeing with the shape. */
    const char *j12 = "{\"inputs\":[{\"name\":\"x\",\"shape\":[4],\"datatype\":\"FP32\","
                      "\"parameters\":{\"binary_data_size\":12}}]}";
    b = make_body(j12, bin, 12);
    expect_err_bin(b.p, b.len, b.hl, NULL, "input 'x'", "binary_data_size is 12",
                   "shape [4] of FP32 needs 16 bytes", NULL);
    free(b.p);
    const char *jneg = "{\"inputs\":[{\"name\":\"x\",\"shape\":[4],\"datatype\":\"FP32\","
                       "\"parameters\":{\"binary_data_size\":-1}}]}";
    b = make_body(jneg, bin, 0);
    expect_err_bin(b.p, b.len, b.hl, NULL, "binary_data_size must be a non-negative integer", NULL);
    free(b.p);
    const char *jboth = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\","
                        "\"data\":[1],\"parameters\":{\"binary_data_size\":4}}]}";
    b = make_body(jboth, bin, 4);
    expect_err_bin(b.p, b.len, b.hl, NULL, "input 'x': has both data and", NULL);
    free(b.p);
    /* BOOL bytes other than 0/1. */
    const char *jb = "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"BOOL\","
                     "\"parameters\":{\"binary_data_size\":2}}]}";
    unsigned char bb[2] = {1, 2};
    b = make_body(jb, bb, 2);
    expect_err_bin(b.p, b.len, b.hl, NULL, "input 'x'", "BOOL element 1 is 2", NULL);
    free(b.p);
    /* A huge shape with a small binary size fails on the size. */
    const char *jh = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1000000000000],\"datatype\":"
                     "\"FP64\",\"parameters\":{\"binary_data_size\":8}}]}";
    b = make_body(jh, bin, 8);
    expect_err_bin(b.p, b.len, b.hl, NULL, "needs 8000000000000 bytes", NULL);
    free(b.p);
    /* The header length given but all data in JSON, nothing after: fine. */
    const char *jj = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\","
                     "\"data\":[2]}]}";
    kserve_request *r = decode_ok_bin(jj, strlen(jj), (long long)strlen(jj), NULL);
    assert_true(((float *)r->inputs[0]->data)[0] == 2.0f);
    kserve_request_free(r);
}

/* ---- request-level fields ----------------------------------------------- */

static void test_outputs_and_parameters(void **state)
{
    (void)state;
    kserve_request *r = decode_ok(
        "{\"parameters\":{\"binary_data_output\":true,\"timeout\":5000,\"other\":\"x\"},"
        "\"inputs\":[],\"outputs\":[{\"name\":\"a\",\"parameters\":{\"binary_data\":true}},"
        "{\"name\":\"b\"},{\"name\":\"c\",\"parameters\":{\"binary_data\":false}}]}");
    assert_true(r->binary_default);
    assert_int_equal(r->timeout_us, 5000);
    assert_null(r->id);
    assert_int_equal(r->n_inputs, 0);
    assert_int_equal(r->n_outputs, 3);
    assert_string_equal(r->outputs[0].name, "a");
    assert_true(r->outputs[0].binary);
    assert_string_equal(r->outputs[1].name, "b");
    assert_true(r->outputs[1].binary); /* inherits binary_data_output */
    assert_string_equal(r->outputs[2].name, "c");
    assert_false(r->outputs[2].binary); /* binary_data overrides it */
    kserve_request_free(r);

    r = decode_ok("{\"inputs\":[],\"outputs\":[{\"name\":\"a\",\"parameters\":{\"binary_data\":"
                  "true}},{\"name\":\"b\"}]}");
    assert_false(r->binary_default);
    assert_true(r->outputs[0].binary);
    assert_false(r->outputs[1].binary);
    kserve_request_free(r);
}

static void test_id_echo(void **state)
{
    (void)state;
    kserve_request *r = decode_ok("{\"id\":\"q\\\"1\\\\\",\"inputs\":[]}");
    assert_string_equal(r->id, "q\"1\\");
    float v = 1;
    int64_t d[] = {1};
    tern_tensor *t = tensor_of(TERN_FLOAT, 1, d, &v);
    kserve_output o = {.name = "y", .t = t};
    json_t *root = encode_parse(r->id, 1, &o, NULL, NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(root, "id")), "q\"1\\");
    json_decref(root);
    root = encode_parse(NULL, 1, &o, NULL, NULL, NULL);
    assert_null(json_object_get(root, "id"));
    json_decref(root);
    /* No version: the key is left out. */
    char *b;
    size_t len;
    long long hl;
    assert_null(kserve_encode_response("m\n", NULL, NULL, 1, &o, &b, &len, &hl));
    root = json_loadb(b, len, 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "model_name")), "m\n");
    assert_null(json_object_get(root, "model_version"));
    json_decref(root);
    free(b);
    tern_tensor_free(t);
    kserve_request_free(r);
}

/* ---- encoding ----------------------------------------------------------- */

static void test_nan_inf_as_null(void **state)
{
    (void)state;
    float f[4] = {NAN, INFINITY, -INFINITY, 1.5f};
    double d[3] = {NAN, -INFINITY, -0.0};
    uint16_t h[3] = {0x7e00, 0x7c00, 0xfc00};
    int64_t d4[] = {4}, d3[] = {3};
    tern_tensor *tf = tensor_of(TERN_FLOAT, 1, d4, f), *td = tensor_of(TERN_DOUBLE, 1, d3, d),
                *th = tensor_of(TERN_FLOAT16, 1, d3, h),
                *tb = tensor_of(TERN_BFLOAT16, 1, d3, NULL);
    uint16_t bh[3] = {0x7fc0, 0x7f80, 0xff80};
    memcpy(tb->data, bh, 6);
    kserve_output o[4] = {{.name = "f", .t = tf},
                          {.name = "d", .t = td},
                          {.name = "h", .t = th},
                          {.name = "b", .t = tb}};
    json_t *root = encode_parse(NULL, 4, o, NULL, NULL, NULL);
    json_t *a = json_object_get(out_named(root, "f"), "data");
    for (int i = 0; i < 3; i++) assert_true(json_is_null(json_array_get(a, i)));
    assert_true(json_real_value(json_array_get(a, 3)) == 1.5);
    a = json_object_get(out_named(root, "d"), "data");
    assert_true(json_is_null(json_array_get(a, 0)) && json_is_null(json_array_get(a, 1)));
    assert_true(json_is_real(json_array_get(a, 2)) &&
                signbit(json_real_value(json_array_get(a, 2))));
    a = json_object_get(out_named(root, "h"), "data");
    for (int i = 0; i < 3; i++) assert_true(json_is_null(json_array_get(a, i)));
    a = json_object_get(out_named(root, "b"), "data");
    for (int i = 0; i < 3; i++) assert_true(json_is_null(json_array_get(a, i)));
    json_decref(root);
    tern_tensor_free(tf);
    tern_tensor_free(td);
    tern_tensor_free(th);
    tern_tensor_free(tb);
}

/* Encodes one FP32 value and returns the text of its data element. */
static void f32_text(float v, char *out, size_t cap)
{
    int64_t d[] = {1};
    tern_tensor *t = tensor_of(TERN_FLOAT, 1, d, &v);
    kserve_output o = {.name = "y", .t = t};
    char *b;
    size_t len;
    long long hl;
    assert_null(kserve_encode_response("m", "1", NULL, 1, &o, &b, &len, &hl));
    const char *s = strstr(b, "\"data\":[");
    assert_non_null(s);
    s += 8;
    size_t n = strcspn(s, "]");
    assert_true(n < cap);
    memcpy(out, s, n);
    out[n] = 0;
    free(b);
    tern_tensor_free(t);
}

static void test_float_text(void **state)
{
    (void)state;
    /* The shortest decimal that reads back, as Python's repr(numpy.float32)
     * prints them. */
    struct {
        float v;
        const char *text;
    } cases[] = {
        {0.1f, "0.1"},
        {1.0f, "1.0"},
        {-2.5f, "-2.5"},
        {100.0f, "100.0"},
        {0.3f, "0.3"},
        {1.0f / 3, "0.33333334"},
        {FLT_MAX, "3.4028235e38"},
        {FLT_MIN, "1.1754944e-38"},
        {1e-45f, "1e-45"},
        {16777216.0f, "16777216.0"},
        {1e16f, "1e16"},
        {0.00001f, "0.00001"},
        {0.000001f, "1e-6"},
        {123456.79f, "123456.79"},
        {-0.0f, "-0.0"},
        {0.0f, "0.0"},
    };
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f32_text(cases[i].v, buf, sizeof buf);
        if (strcmp(buf, cases[i].text))
            fail_msg("%.9g printed as %s, expected %s", cases[i].v, buf, cases[i].text);
    }
}

/* Every FP16 and BF16 value, and many random FP32 and FP64 ones, read back
 * through jansson to the very same bits. */
static void roundtrip_check(tern_dtype dt, const void *data, int64_t n)
{
    int64_t d[] = {n};
    tern_tensor *t = tensor_of(dt, 1, d, data);
    kserve_output o = {.name = "y", .t = t};
    json_t *root = encode_parse(NULL, 1, &o, NULL, NULL, NULL);
    json_t *a = json_object_get(out_named(root, "y"), "data");
    assert_int_equal(json_array_size(a), n);
    for (int64_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, (size_t)i);
        bool nonfinite;
        switch (dt) {
        case TERN_FLOAT: nonfinite = !isfinite(((const float *)data)[i]); break;
        case TERN_DOUBLE: nonfinite = !isfinite(((const double *)data)[i]); break;
        case TERN_FLOAT16: nonfinite = (((const uint16_t *)data)[i] & 0x7c00) == 0x7c00; break;
        default: nonfinite = (((const uint16_t *)data)[i] & 0x7f80) == 0x7f80; break;
        }
        if (nonfinite) {
            assert_true(json_is_null(e));
            continue;
        }
        assert_true(json_is_real(e)); /* floats always print as floats */
        double v = json_real_value(e);
        if (dt == TERN_DOUBLE) {
            double want = ((const double *)data)[i];
            if (memcmp(&v, &want, 8)) fail_msg("double %.17g read back as %.17g", want, v);
        } else if (dt == TERN_FLOAT) {
            float got = (float)v, want = ((const float *)data)[i];
            if (memcmp(&got, &want, 4)) fail_msg("float %.9g read back as %.9g", want, got);
        } else {
            uint16_t want = ((const uint16_t *)data)[i];
            uint16_t got = dt == TERN_FLOAT16 ? f32_to_f16((float)v) : f32_to_bf16((float)v);
            if (got != want) fail_msg("16-bit %#x read back as %#x (%.17g)", want, got, v);
        }
    }
    json_decref(root);
    tern_tensor_free(t);
}

static void test_float_roundtrip(void **state)
{
    (void)state;
    uint16_t *h = malloc(65536 * sizeof *h);
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    roundtrip_check(TERN_FLOAT16, h, 65536);
    roundtrip_check(TERN_BFLOAT16, h, 65536);
    free(h);
    int n = 200000;
    uint32_t *f = malloc((size_t)n * 4);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        f[i] = (uint32_t)(x >> 11);
        if (i % 4 == 1)
            f[i] &= 0x807fffffu | (0x3f000000u + ((uint32_t)(x >> 3) % 0x1000000u)); /* near 1 */
        if (i % 16 == 3) f[i] &= 0x800000ffu; /* subnormals */
    }
    /* Every power of two and its neighbours (asymmetric gaps). */
    for (uint32_t e = 1; e < 255; e++) f[e] = e << 23, f[255 + e] = (e << 23) - 1;
    roundtrip_check(TERN_FLOAT, f, n);
    free(f);
    int m = 50000;
    uint64_t *dv = malloc((size_t)m * 8);
    for (int i = 0; i < m; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        dv[i] = x;
        if (i % 8 == 1) { /* short decimals like 0.1 * k */
            double v = (double)(i % 1000) / 10.0;
            memcpy(&dv[i], &v, 8);
        }
    }
    roundtrip_check(TERN_DOUBLE, dv, m);
    free(dv);
}

static void test_strings_escaped(void **state)
{
    (void)state;
    int64_t d[] = {4};
    tern_tensor *t;
    assert_null(tern_tensor_create(TERN_STRING, 1, d, &t));
    assert_null(tern_tensor_set_string(t, 0, "tab\tquote\"back\\slash\x01"));
    assert_null(tern_tensor_set_string(t, 1, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    assert_null(tern_tensor_set_string(t, 2, "bad\xff\xc3(\xed\xa0\x80!"));
    assert_null(tern_tensor_set_string(t, 3, "\x7f/</script>"));
    kserve_output o = {.name = "n\"ame", .t = t};
    json_t *root = encode_parse(NULL, 1, &o, NULL, NULL, NULL);
    json_t *a = json_object_get(out_named(root, "n\"ame"), "data");
    assert_string_equal(json_string_value(json_array_get(a, 0)), "tab\tquote\"back\\slash\x01");
    assert_string_equal(json_string_value(json_array_get(a, 1)),
                        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    /* Each byte that does not start valid UTF-8 becomes U+FFFD (EF BF BD). */
    assert_string_equal(json_string_value(json_array_get(a, 2)),
                        "bad\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!");
    assert_string_equal(json_string_value(json_array_get(a, 3)), "\x7f/</script>");
    json_decref(root);
    tern_tensor_free(t);
}

static void test_encode_errors(void **state)
{
    (void)state;
    int64_t d[] = {1};
    float c[2] = {1, 2};
    tern_tensor cx = {
        .kind = TENSOR_DENSE, .dtype = TERN_COMPLEX64, .rank = 1, .numel = 1, .data = c};
    cx.dims[0] = d[0];
    kserve_output o = {.name = "z", .t = &cx};
    char *b = (char *)1;
    size_t len;
    long long hl;
    tern_status *st = kserve_encode_response("m", "1", NULL, 1, &o, &b, &len, &hl);
    assert_non_null(st);
    assert_int_equal(tern_status_code(st), TERN_ERR_UNSUPPORTED);
    assert_non_null(strstr(tern_status_message(st), "output 'z'"));
    assert_null(b);
    tern_status_free(st);

    tern_tensor seq = {.kind = TENSOR_SEQUENCE, .dtype = TERN_FLOAT};
    o = (kserve_output){.name = "q", .t = &seq};
    st = kserve_encode_response("m", "1", NULL, 1, &o, &b, &len, &hl);
    assert_non_null(st);
    assert_non_null(strstr(tern_status_message(st), "output 'q' is a sequence"));
    tern_status_free(st);
    o = (kserve_output){.name = "n", .t = NULL};
    st = kserve_encode_response("m", "1", NULL, 1, &o, &b, &len, &hl);
    assert_non_null(st);
    assert_non_null(strstr(tern_status_message(st), "output 'n'"));
    tern_status_free(st);

    /* No outputs at all is a valid (empty) response. */
    assert_null(kserve_encode_response("m", "1", NULL, 0, NULL, &b, &len, &hl));
    json_t *root = json_loadb(b, len, 0, NULL);
    assert_non_null(root);
    assert_int_equal(json_array_size(json_object_get(root, "outputs")), 0);
    json_decref(root);
    free(b);
}

static void test_large_output(void **state)
{
    (void)state;
    /* Several buffer reservations' worth of elements. */
    int64_t n = 100000, d[] = {n};
    tern_tensor *t = tensor_of(TERN_FLOAT, 1, d, NULL);
    float *f = t->data;
    for (int64_t i = 0; i < n; i++) f[i] = (float)i * -1.25e-3f;
    kserve_output o = {.name = "y", .t = t};
    json_t *root = encode_parse(NULL, 1, &o, NULL, NULL, NULL);
    json_t *a = json_object_get(out_named(root, "y"), "data");
    assert_int_equal(json_array_size(a), n);
    for (int64_t i = 0; i < n; i++)
        assert_true((float)json_number_value(json_array_get(a, i)) == f[i]);
    json_decref(root);
    tern_tensor_free(t);
}

static void test_error_json(void **state)
{
    (void)state;
    const char *msgs[] = {"input 'x': data has 5 elements", "quote\" back\\ nl\n tab\t \x01",
                          "caf\xc3\xa9"};
    for (int i = 0; i < 3; i++) {
        char *s = kserve_error_json(msgs[i]);
        assert_non_null(s);
        json_t *root = json_loads(s, 0, NULL);
        assert_non_null(root);
        assert_string_equal(json_string_value(json_object_get(root, "error")), msgs[i]);
        assert_int_equal(json_object_size(root), 1);
        json_decref(root);
        free(s);
    }
    /* Invalid UTF-8 (a message cut mid-character) still gives valid JSON. */
    char *s = kserve_error_json("cut \xc3");
    json_t *root = json_loads(s, 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "error")), "cut ?");
    json_decref(root);
    free(s);
    s = kserve_error_json(NULL);
    root = json_loads(s, 0, NULL);
    assert_non_null(root);
    json_decref(root);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_names),
        cmocka_unit_test(test_json_all_types),
        cmocka_unit_test(test_uint64_max_as_text),
        cmocka_unit_test(test_nested_and_flat),
        cmocka_unit_test(test_nesting_errors),
        cmocka_unit_test(test_binary_all_types),
        cmocka_unit_test(test_binary_mutations),
        cmocka_unit_test(test_bytes_binary_errors),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_many_inputs),
        cmocka_unit_test(test_value_errors),
        cmocka_unit_test(test_binary_errors),
        cmocka_unit_test(test_outputs_and_parameters),
        cmocka_unit_test(test_id_echo),
        cmocka_unit_test(test_nan_inf_as_null),
        cmocka_unit_test(test_float_text),
        cmocka_unit_test(test_float_roundtrip),
        cmocka_unit_test(test_strings_escaped),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_large_output),
        cmocka_unit_test(test_error_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

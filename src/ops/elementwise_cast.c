/*
 * Cast and CastLike. Numeric casts have direct loops for the conversions
 * models use most (float32 to and from float16, bfloat16, float64, int32,
 * int64) and a generic path for the rest: integer to integer wraps like C's
 * conversion to unsigned, anything involving a float goes through double and
 * saturates when the target is an integer (NaN becomes 0), so no input is
 * undefined behaviour.
 *
 * float32 -> bfloat16 truncates (NaN stays NaN), which is what the ONNX 1.12
 * reference and its conformance data do (onnx/onnx#3876).
 *
 * Strings follow the spec: parsing accepts plain and scientific notation and
 * "NaN", "INF", "+INF", "-INF" in any case; numbers print the way numpy's
 * str() does (the shortest digits that read back to the same value).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/elementwise.h"

#define CAST_GRAIN 16384

static uint16_t f32_to_bf16_trunc(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)(x >> 16);
}

typedef struct cast_job {
    tern_dtype from, to;
    const void *x;
    void *y;
} cast_job;

static void cast_range(void *arg, int64_t b, int64_t e)
{
    const cast_job *j = arg;
    const float *xf = j->x;
    float *yf = j->y;
#define CASE(F, T, expr)                                                                           \
    if (j->from == F && j->to == T) {                                                              \
        for (int64_t i = b; i < e; i++) expr;                                                      \
        return;                                                                                    \
    }
    CASE(TERN_FLOAT, TERN_FLOAT16, ((uint16_t *)j->y)[i] = f32_to_f16(xf[i]))
    CASE(TERN_FLOAT16, TERN_FLOAT, yf[i] = f16_to_f32(((const uint16_t *)j->x)[i]))
    CASE(TERN_FLOAT, TERN_BFLOAT16, ((uint16_t *)j->y)[i] = f32_to_bf16_trunc(xf[i]))
    CASE(TERN_BFLOAT16, TERN_FLOAT, yf[i] = bf16_to_f32(((const uint16_t *)j->x)[i]))
    CASE(TERN_FLOAT, TERN_DOUBLE, ((double *)j->y)[i] = xf[i])
    CASE(TERN_DOUBLE, TERN_FLOAT, yf[i] = (float)((const double *)j->x)[i])
    CASE(TERN_INT64, TERN_FLOAT, yf[i] = (float)((const int64_t *)j->x)[i])
    CASE(TERN_INT32, TERN_FLOAT, yf[i] = (float)((const int32_t *)j->x)[i])
    CASE(TERN_INT32, TERN_INT64, ((int64_t *)j->y)[i] = ((const int32_t *)j->x)[i])
    CASE(TERN_INT64, TERN_INT32, ((int32_t *)j->y)[i] = (int32_t)((const int64_t *)j->x)[i])
    CASE(TERN_BOOL, TERN_FLOAT, yf[i] = ((const uint8_t *)j->x)[i] != 0)
#undef CASE
    bool from_int = dtype_is_int(j->from) || j->from == TERN_BOOL;
    bool to_int = dtype_is_int(j->to) || j->to == TERN_BOOL;
    if (from_int && to_int) {
        for (int64_t i = b; i < e; i++)
            dtype_set_i64(j->to, j->y, i, dtype_get_i64(j->from, j->x, i));
    } else if (j->to == TERN_BFLOAT16) {
        uint16_t *y = j->y;
        for (int64_t i = b; i < e; i++)
            y[i] = f32_to_bf16_trunc((float)dtype_get_f64(j->from, j->x, i));
    } else {
        for (int64_t i = b; i < e; i++)
            ew_set_f64_sat(j->to, j->y, i, dtype_get_f64(j->from, j->x, i));
    }
}

/* ---- number -> string ------------------------------------------------------- */

/* True if the decimal text s reads back as v in type dt. */
static bool reads_back(const char *s, double v, tern_dtype dt)
{
    switch (dt) {
    case TERN_DOUBLE: return strtod(s, NULL) == v;
    case TERN_FLOAT: return strtof(s, NULL) == (float)v;
    case TERN_FLOAT16: return f32_to_f16(strtof(s, NULL)) == f32_to_f16((float)v);
    default: return f32_to_bf16(strtof(s, NULL)) == f32_to_bf16((float)v);
    }
}

/* v (exactly representable in dt) as numpy prints it: shortest digits,
 * positional for 1e-4 <= |v| < 1e16 ("0.5", "100.0"), else scientific
 * ("1e-05", "1.5e+16"). */
static void format_float(double v, tern_dtype dt, char *out, size_t len)
{
    if (isnan(v)) {
        snprintf(out, len, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(out, len, v < 0 ? "-inf" : "inf");
        return;
    }
    const char *sign = signbit(v) ? "-" : "";
    v = fabs(v);
    if (v == 0) {
        snprintf(out, len, "%s0.0", sign);
        return;
    }
    char e[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, v);
        if (reads_back(e, v, dt)) break;
    }
    /* e is "d[.ddd]e±XX": collect the digits and the exponent. */
    char digits[24];
    int nd = 0;
    const char *q = e;
    for (; *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int exp10 = atoi(q + 1);
    if (exp10 < -4 || exp10 >= 16) {
        snprintf(out, len, "%s%c%s%.*se%c%02d", sign, digits[0], nd > 1 ? "." : "", nd - 1,
                 digits + 1, exp10 < 0 ? '-' : '+', abs(exp10));
        return;
    }
    /* Positional: at most 1 + 16 + 1 + 17 characters, or "0.000" + 17. */
    char pos[48], *o = pos;
    if (exp10 < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int k = 0; k < -exp10 - 1; k++) *o++ = '0';
        for (int k = 0; k < nd; k++) *o++ = digits[k];
    } else {
        for (int k = 0; k <= exp10; k++) *o++ = k < nd ? digits[k] : '0';
        *o++ = '.';
        if (nd <= exp10 + 1) *o++ = '0';
        for (int k = exp10 + 1; k < nd; k++) *o++ = digits[k];
    }
    *o = 0;
    snprintf(out, len, "%s%s", sign, pos);
}

static tern_status *to_string(op_ctx *c, const tern_tensor *x, tern_tensor *y)
{
    char **s = y->data, buf[64];
    for (int64_t i = 0; i < x->numel; i++) {
        if (x->dtype == TERN_STRING) {
            const char *src = ((char *const *)x->data)[i];
            TERN_TRY(op_strdup(c, src ? src : "", &s[i]));
            continue;
        }
        if (dtype_is_float(x->dtype))
            format_float(op_get_f64(x, i), x->dtype, buf, sizeof buf);
        else if (x->dtype == TERN_BOOL)
            snprintf(buf, sizeof buf, "%s", op_get_i64(x, i) ? "True" : "False");
        else if (x->dtype == TERN_UINT64)
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)((const uint64_t *)x->data)[i]);
        else
            snprintf(buf, sizeof buf, "%lld", (long long)op_get_i64(x, i));
        TERN_TRY(op_strdup(c, buf, &s[i]));
    }
    return NULL;
}

/* ---- string -> number ---------------------------------------------------------- */

static tern_status *from_string(op_ctx *c, const tern_tensor *x, tern_tensor *y)
{
    char *const *s = x->data;
    bool to_int = dtype_is_int(y->dtype) || y->dtype == TERN_BOOL;
    for (int64_t i = 0; i < x->numel; i++) {
        const char *str = s[i] ? s[i] : "";
        char *e = (char *)str;
        if (y->dtype == TERN_UINT64)
            ((uint64_t *)y->data)[i] = strtoull(str, &e, 10);
        else if (to_int)
            dtype_set_i64(y->dtype, y->data, i, strtoll(str, &e, 10));
        /* Floats, and integers written as "100.5", "1e3" or "NaN". */
        if (!to_int || e == str || *e == '.' || *e == 'e' || *e == 'E')
            ew_set_f64_sat(y->dtype, y->data, i, strtod(str, &e));
        if (e == str) return op_error(c, "cannot read '%.40s' as a number", str);
        while (*e == ' ' || *e == '\t' || *e == '\n') e++;
        if (*e) return op_error(c, "cannot read '%.40s' as a number", str);
    }
    return NULL;
}

/* ---- kernels -------------------------------------------------------------------- */

static bool castable(tern_dtype dt)
{
    return dtype_is_int(dt) || dtype_is_float(dt) || dt == TERN_BOOL || dt == TERN_STRING;
}

static tern_status *cast(op_ctx *c, tern_dtype to)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE) return op_error(c, "input 0 is not a tensor");
    if (!castable(x->dtype)) return ew_bad_dtype(c, x->dtype);
    if (!castable(to)) return op_error(c, "cannot cast to type %d", (int)to);
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, to, x->rank, x->dims, &y));
    if (to == TERN_STRING) return to_string(c, x, y);
    if (x->dtype == TERN_STRING) return from_string(c, x, y);
    if (x->numel == 0) return NULL;
    if (x->dtype == to) {
        memcpy(y->data, x->data, tensor_nbytes(x));
        return NULL;
    }
    cast_job j = {x->dtype, to, x->data, y->data};
    tpool_for(c->pool, x->numel, CAST_GRAIN, cast_range, &j);
    return NULL;
}

tern_status *ew_cast(op_ctx *c)
{
    const op_attr *to = op_attr_get(c, "to");
    if (!to || to->type != ATTR_INT) return op_error(c, "attribute 'to' is missing");
    if (!dtype_valid((int)to->i)) return op_error(c, "unknown type %lld", (long long)to->i);
    return cast(c, (tern_dtype)to->i);
}

tern_status *ew_cast_like(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 1));
    return cast(c, c->in[1]->dtype);
}

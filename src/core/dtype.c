/* Element type table and generic element access, see dtype.h. */
#include "core/dtype.h"

#include <math.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [TERN_UNDEFINED] = {"undefined", 0}, [TERN_FLOAT] = {"float32", 4},
    [TERN_UINT8] = {"uint8", 1},         [TERN_INT8] = {"int8", 1},
    [TERN_UINT16] = {"uint16", 2},       [TERN_INT16] = {"int16", 2},
    [TERN_INT32] = {"int32", 4},         [TERN_INT64] = {"int64", 8},
    [TERN_STRING] = {"string", 0},       [TERN_BOOL] = {"bool", 1},
    [TERN_FLOAT16] = {"float16", 2},     [TERN_DOUBLE] = {"float64", 8},
    [TERN_UINT32] = {"uint32", 4},       [TERN_UINT64] = {"uint64", 8},
    [TERN_COMPLEX64] = {"complex64", 8}, [TERN_COMPLEX128] = {"complex128", 16},
    [TERN_BFLOAT16] = {"bfloat16", 2},
};

bool dtype_valid(int dt)
{
    return dt > 0 && dt <= TERN_BFLOAT16;
}

const char *tern_dtype_name(tern_dtype dt)
{
    return dtype_valid((int)dt) ? dtypes[dt].name : "undefined";
}

size_t tern_dtype_size(tern_dtype dt)
{
    return dtype_valid((int)dt) ? dtypes[dt].size : 0;
}

size_t dtype_elem_size(tern_dtype dt)
{
    return dt == TERN_STRING ? sizeof(char *) : tern_dtype_size(dt);
}

bool dtype_is_float(tern_dtype dt)
{
    return dt == TERN_FLOAT || dt == TERN_DOUBLE || dt == TERN_FLOAT16 || dt == TERN_BFLOAT16;
}

bool dtype_is_int(tern_dtype dt)
{
    switch (dt) {
    case TERN_INT8:
    case TERN_INT16:
    case TERN_INT32:
    case TERN_INT64:
    case TERN_UINT8:
    case TERN_UINT16:
    case TERN_UINT32:
    case TERN_UINT64: return true;
    default: return false;
    }
}

bool dtype_is_signed(tern_dtype dt)
{
    return dt == TERN_INT8 || dt == TERN_INT16 || dt == TERN_INT32 || dt == TERN_INT64 ||
           dtype_is_float(dt);
}

double dtype_get_f64(tern_dtype dt, const void *d, int64_t i)
{
    switch (dt) {
    case TERN_FLOAT: return ((const float *)d)[i];
    case TERN_DOUBLE: return ((const double *)d)[i];
    case TERN_FLOAT16: return f16_to_f32(((const uint16_t *)d)[i]);
    case TERN_BFLOAT16: return bf16_to_f32(((const uint16_t *)d)[i]);
    case TERN_INT8: return ((const int8_t *)d)[i];
    case TERN_INT16: return ((const int16_t *)d)[i];
    case TERN_INT32: return ((const int32_t *)d)[i];
    case TERN_INT64: return (double)((const int64_t *)d)[i];
    case TERN_UINT8: return ((const uint8_t *)d)[i];
    case TERN_UINT16: return ((const uint16_t *)d)[i];
    case TERN_UINT32: return ((const uint32_t *)d)[i];
    case TERN_UINT64: return (double)((const uint64_t *)d)[i];
    case TERN_BOOL: return ((const uint8_t *)d)[i] ? 1.0 : 0.0;
    default: return 0;
    }
}

/* Float to integer conversion that is defined for every input (C leaves
 * out-of-range conversions undefined): saturate, NaN becomes 0. */
static int64_t sat_i64(double v)
{
    if (isnan(v)) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

static uint64_t sat_u64(double v)
{
    if (isnan(v) || v <= 0) return v <= -1.0 ? (uint64_t)sat_i64(v) : 0;
    if (v >= 18446744073709551615.0) return UINT64_MAX;
    return (uint64_t)v;
}

/* Clamps v to [lo, hi] after the NaN and int64 saturation above. */
static int64_t clamp_i(double v, int64_t lo, int64_t hi)
{
    int64_t x = sat_i64(v);
    return x < lo ? lo : x > hi ? hi : x;
}

void dtype_set_f64(tern_dtype dt, void *d, int64_t i, double v)
{
    switch (dt) {
    case TERN_FLOAT: ((float *)d)[i] = (float)v; break;
    case TERN_DOUBLE: ((double *)d)[i] = v; break;
    case TERN_FLOAT16: ((uint16_t *)d)[i] = f32_to_f16((float)v); break;
    case TERN_BFLOAT16: ((uint16_t *)d)[i] = f32_to_bf16((float)v); break;
    case TERN_INT8: ((int8_t *)d)[i] = (int8_t)clamp_i(v, INT8_MIN, INT8_MAX); break;
    case TERN_INT16: ((int16_t *)d)[i] = (int16_t)clamp_i(v, INT16_MIN, INT16_MAX); break;
    case TERN_INT32: ((int32_t *)d)[i] = (int32_t)clamp_i(v, INT32_MIN, INT32_MAX); break;
    case TERN_INT64: ((int64_t *)d)[i] = sat_i64(v); break;
    case TERN_UINT8: ((uint8_t *)d)[i] = (uint8_t)clamp_i(v, 0, UINT8_MAX); break;
    case TERN_UINT16: ((uint16_t *)d)[i] = (uint16_t)clamp_i(v, 0, UINT16_MAX); break;
    case TERN_UINT32: ((uint32_t *)d)[i] = (uint32_t)clamp_i(v, 0, UINT32_MAX); break;
    case TERN_UINT64: ((uint64_t *)d)[i] = v <= 0 || isnan(v) ? 0 : sat_u64(v); break;
    case TERN_BOOL: ((uint8_t *)d)[i] = v != 0; break;
    default: break;
    }
}

int64_t dtype_get_i64(tern_dtype dt, const void *d, int64_t i)
{
    switch (dt) {
    case TERN_INT8: return ((const int8_t *)d)[i];
    case TERN_INT16: return ((const int16_t *)d)[i];
    case TERN_INT32: return ((const int32_t *)d)[i];
    case TERN_INT64: return ((const int64_t *)d)[i];
    case TERN_UINT8: return ((const uint8_t *)d)[i];
    case TERN_UINT16: return ((const uint16_t *)d)[i];
    case TERN_UINT32: return ((const uint32_t *)d)[i];
    case TERN_UINT64: return (int64_t)((const uint64_t *)d)[i];
    case TERN_BOOL: return ((const uint8_t *)d)[i] != 0;
    default: return sat_i64(dtype_get_f64(dt, d, i));
    }
}

void dtype_set_i64(tern_dtype dt, void *d, int64_t i, int64_t v)
{
    switch (dt) {
    case TERN_INT8: ((int8_t *)d)[i] = (int8_t)v; break;
    case TERN_INT16: ((int16_t *)d)[i] = (int16_t)v; break;
    case TERN_INT32: ((int32_t *)d)[i] = (int32_t)v; break;
    case TERN_INT64: ((int64_t *)d)[i] = v; break;
    case TERN_UINT8: ((uint8_t *)d)[i] = (uint8_t)v; break;
    case TERN_UINT16: ((uint16_t *)d)[i] = (uint16_t)v; break;
    case TERN_UINT32: ((uint32_t *)d)[i] = (uint32_t)v; break;
    case TERN_UINT64: ((uint64_t *)d)[i] = (uint64_t)v; break;
    case TERN_BOOL: ((uint8_t *)d)[i] = v != 0; break;
    default: dtype_set_f64(dt, d, i, (double)v); break;
    }
}

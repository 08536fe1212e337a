/*
 * Element types: sizes, names, and the two 16-bit float formats. float16 is
 * IEEE binary16, bfloat16 is the top half of a binary32; both are stored as
 * uint16_t and converted through float for arithmetic (round to nearest even).
 */
#ifndef TERN_CORE_DTYPE_H
#define TERN_CORE_DTYPE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "tern/engine.h"

bool dtype_valid(int dt);
/* Bytes per element in a tensor's buffer: STRING counts as one char*. */
size_t dtype_elem_size(tern_dtype dt);
bool dtype_is_float(tern_dtype dt); /* float16, bfloat16, float, double */
bool dtype_is_int(tern_dtype dt);   /* signed or unsigned integer */
bool dtype_is_signed(tern_dtype dt);

static inline float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 |
                          (absx > 0x7f800000u ? 0x200 | ((absx >> 13) & 0x3ff) : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow to inf */
    if (absx < 0x38800000u) {                                  /* subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t e = absx >> 23, m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((absx - 0x38000000u) >> 13);
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

static inline float bf16_to_f32(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* Reads element i of a numeric buffer of type dt as double / writes one,
 * saturating to the target type's range (NaN becomes 0). Slow generic path
 * for kernels that are not type-specialised. */
double dtype_get_f64(tern_dtype dt, const void *data, int64_t i);
void dtype_set_f64(tern_dtype dt, void *data, int64_t i, double v);
int64_t dtype_get_i64(tern_dtype dt, const void *data, int64_t i);
void dtype_set_i64(tern_dtype dt, void *data, int64_t i, int64_t v);

#endif

/*
 * Fast lane for the numbers of KServe JSON requests.
 *
 * Almost all of a typical inference request is its `data` arrays: a
 * 784-float image is 16 KB of digits, and building a jansson value per
 * number then converting it costs most of the request's time. So before
 * jansson sees the body, this pass walks the JSON text (tracking strings,
 * nesting and the current key, nothing more) and, for each
 * root.inputs[i].data that is a FLAT list of plain JSON numbers, notes where
 * its numbers are and hands jansson a copy of the body in which that list is
 * replaced by []. jansson still parses and checks the whole structure; the
 * codec then converts the noted numbers straight into the tensor.
 *
 * The lane only ever declines: a nested list, a string, true/false/null, a
 * number that is not strict JSON, or a value that does not fit the input's
 * datatype exactly (a fraction for an integer type, an integer out of range,
 * a float overflow) makes the codec decode the original body with jansson
 * alone, so every error message and every edge case is the full path's.
 */
#include "server/kserve_fast.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"

#define MAX_DEPTH 64

static size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

/* End of the JSON string starting at s[i] == '"' (index after the closing
 * quote), or 0 if it is unterminated. */
static size_t skip_string(const char *s, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

/* Length of a strict JSON number at s[i], or 0. */
static size_t number_len(const char *s, size_t i, size_t n)
{
    size_t j = i;
    if (j < n && s[j] == '-') j++;
    if (j >= n) return 0;
    if (s[j] == '0')
        j++;
    else if (s[j] >= '1' && s[j] <= '9')
        while (j < n && s[j] >= '0' && s[j] <= '9') j++;
    else
        return 0;
    if (j < n && s[j] == '.') {
        size_t k = ++j;
        while (j < n && s[j] >= '0' && s[j] <= '9') j++;
        if (j == k) return 0;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        j++;
        if (j < n && (s[j] == '+' || s[j] == '-')) j++;
        size_t k = j;
        while (j < n && s[j] >= '0' && s[j] <= '9') j++;
        if (j == k) return 0;
    }
    return j - i;
}

/* Scans a flat list of numbers at s[i] == '['. Returns the index after ']'
 * and the count, or 0 if the list is anything else. */
/* The end of a list at s[i] == '[': the first ']' after it (memchr, which
 * is vectorised). For a flat list of numbers that is its end; for anything
 * else kfast_convert, which checks every element's grammar and the closing
 * bracket, declines, and the region found here is never used. Returns the
 * index after ']' or 0. */
static size_t scan_flat_numbers(const char *s, size_t i, size_t n)
{
    const char *e = memchr(s + i + 1, ']', n - i - 1);
    return e ? (size_t)(e - s) + 1 : 0;
}

bool kfast_scan(const char *js, size_t len, kfast *f)
{
    memset(f, 0, sizeof *f);
    /* the container stack: for each level, object or array, the current
     * key of an object (offset and length into js) and an array's index */
    char kind[MAX_DEPTH];
    size_t key_at[MAX_DEPTH], key_len[MAX_DEPTH];
    int64_t index[MAX_DEPTH];
    int depth = 0;
    bool expect_key = false;
    for (size_t i = skip_ws(js, 0, len); i < len; i = skip_ws(js, i, len)) {
        char ch = js[i];
        if (ch == '"') {
            size_t e = skip_string(js, i, len);
            if (!e) return false;
            if (expect_key && depth > 0 && kind[depth - 1] == '{') {
                key_at[depth - 1] = i + 1;
                key_len[depth - 1] = e - i - 2;
                expect_key = false;
            }
            i = e;
            continue;
        }
        if (ch == '{' || ch == '[') {
            /* root.inputs[k].data == [...] : try the fast lane */
            if (ch == '[' && depth == 3 && kind[0] == '{' && kind[1] == '[' && kind[2] == '{' &&
                key_len[0] == 6 && !memcmp(js + key_at[0], "inputs", 6) && key_len[2] == 4 &&
                !memcmp(js + key_at[2], "data", 4) && index[1] >= 0 && index[1] < KFAST_MAX) {
                size_t e = scan_flat_numbers(js, i, len);
                if (e) {
                    kfast_list *l = &f->lists[index[1]];
                    if (l->text) return false; /* "data" twice: let jansson refuse it */
                    l->text = js + i;
                    l->len = e - i;
                    f->n_lists++;
                    i = e;
                    continue;
                }
            }
            if (depth == MAX_DEPTH) return false;
            kind[depth] = ch;
            key_len[depth] = 0;
            index[depth] = 0;
            depth++;
            expect_key = ch == '{';
            i++;
            continue;
        }
        if (ch == '}' || ch == ']') {
            if (depth == 0) return false;
            depth--;
            i++;
            continue;
        }
        if (ch == ',') {
            if (depth > 0) {
                if (kind[depth - 1] == '[')
                    index[depth - 1]++;
                else
                    expect_key = true;
            }
            i++;
            continue;
        }
        if (ch == ':') {
            i++;
            continue;
        }
        /* a scalar: number or literal */
        size_t l = number_len(js, i, len);
        if (!l) {
            while (i + l < len && js[i + l] >= 'a' && js[i + l] <= 'z') l++;
            if (!l) return false;
        }
        i += l;
    }
    return f->n_lists > 0;
}

char *kfast_strip(const char *js, size_t len, const kfast *f, size_t *out_len)
{
    char *out = malloc(len + 1);
    if (!out) return NULL;
    /* lists appear in document order of their inputs, but inputs may be
     * given in any order: copy by increasing text position */
    size_t o = 0, from = 0;
    for (;;) {
        const kfast_list *next = NULL;
        for (int k = 0; k < KFAST_MAX; k++) {
            const kfast_list *l = &f->lists[k];
            if (l->text && (size_t)(l->text - js) >= from && (!next || l->text < next->text))
                next = l;
        }
        if (!next) break;
        size_t at = (size_t)(next->text - js);
        memcpy(out + o, js + from, at - from);
        o += at - from;
        out[o++] = '[';
        out[o++] = ']';
        from = at + next->len;
    }
    memcpy(out + o, js + from, len - from);
    o += len - from;
    out[o] = 0;
    *out_len = o;
    return out;
}

/* ---- numbers ------------------------------------------------------------ */

/* Powers of ten as doubles: exact up to 1e22 (Clinger's fast path uses only
 * those), correctly rounded above (the float path allows for that). */
static const double pow10_d[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,
                                 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
                                 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27};

/* A strict JSON number as sign, up to 19 significant digits m and a power
 * of ten; *exact is false when digits had to be dropped. */
typedef struct decimal {
    uint64_t m;
    int exp10, digits;
    bool neg, exact;
    bool ok; /* the text is a strict JSON number */
} decimal;

/* True if the 8 bytes at s are all decimal digits; then *v is their value. */
static inline bool eight_digits(const char *s, uint64_t *v)
{
    uint64_t x;
    memcpy(&x, s, 8);
    if (((x & 0xF0F0F0F0F0F0F0F0ull) |
         (((x + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) >> 4)) != 0x3333333333333333ull)
        return false;
    /* little-endian: the first digit is the low byte; pairs, then quads,
     * then the eight (the well-known SWAR reduction) */
    x = ((x & 0x0F0F0F0F0F0F0F0Full) * 2561) >> 8;
    x = ((x & 0x00FF00FF00FF00FFull) * 6553601) >> 16;
    x = ((x & 0x0000FFFF0000FFFFull) * 42949672960001ull) >> 32;
    *v = x;
    return true;
}

static decimal parse_decimal(const char *s, size_t n, size_t *used)
{
    decimal d = {0, 0, 0, n > 0 && s[0] == '-', true, false};
    size_t i = d.neg, int0 = i;
    uint64_t v8;
    *used = i;
    if (i >= n || s[i] < '0' || s[i] > '9') return d; /* no digit */
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (d.digits < 19) {
            d.m = d.m * 10 + (uint64_t)(s[i] - '0');
            if (d.m) d.digits++;
        } else {
            d.exp10++;
            if (s[i] != '0') d.exact = false;
        }
    }
    if (s[int0] == '0' && i - int0 > 1) return d; /* a leading zero */
    if (i < n && s[i] == '.') {
        if (i + 1 >= n || s[i + 1] < '0' || s[i + 1] > '9') return d; /* "1." */
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            while (d.m && d.digits <= 11 && i + 8 <= n && eight_digits(s + i, &v8)) {
                d.m = d.m * 100000000u + v8;
                d.digits += 8;
                d.exp10 -= 8;
                i += 8;
            }
            if (i >= n || s[i] < '0' || s[i] > '9') break;
            if (d.digits < 19) {
                d.m = d.m * 10 + (uint64_t)(s[i] - '0');
                if (d.m) d.digits++;
                d.exp10--;
            } else if (s[i] != '0') {
                d.exact = false;
            }
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = i < n && s[i] == '-';
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return d; /* "1e" */
        int e = 0;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            if (e < 100000) e = e * 10 + (s[i] - '0');
        d.exp10 += eneg ? -e : e;
    }
    *used = i;
    d.ok = true;
    return d;
}

static double strtod_token(const char *s, size_t n)
{
    char buf[128];
    if (n >= sizeof buf) return NAN; /* the caller declines */
    memcpy(buf, s, n);
    buf[n] = 0;
    return strtod(buf, NULL);
}

/* A strict JSON number as a correctly rounded double: Clinger's fast path
 * (at most 15 digits and a power of ten up to 22, both exact in double, so
 * one rounding) or strtod. */
static double parse_double(const char *s, size_t n, size_t *used)
{
    decimal d = parse_decimal(s, n, used);
    n = *used;
    if (!d.ok) return NAN; /* the caller declines */
    if (d.exact && d.digits <= 15 && d.exp10 >= -22 && d.exp10 <= 22) {
        double v = (double)d.m;
        v = d.exp10 < 0 ? v / pow10_d[-d.exp10] : v * pow10_d[d.exp10];
        return d.neg ? -v : v;
    }
    return strtod_token(s, n);
}

/* The float the full path makes, (float)strtod(s), computed without strtod
 * when that is certain. Clients send float32 values printed as doubles (17
 * digits), past Clinger's limit, but a float needs far less precision than
 * a double: m (up to 19 digits) converted to double, times a double power of
 * ten (exact up to 10^22, else correctly rounded), is within 4 double ulps
 * (2^-51 relative) of the exact value. Rounding that to float gives the same
 * float as strtod-then-float unless the value lies within that distance of a
 * float rounding midpoint. A normal float keeps the top 23 of the double's
 * 52 fraction bits; the low 29 decide the rounding, whose midpoint is 2^28.
 * Numbers whose low bits lie within 2^6 double ulps of it go to strtod
 * (about one in four million). */
static float parse_float(const char *s, size_t n, size_t *used)
{
    static const double m10[] = {
        1e-0,  1e-1,  1e-2,  1e-3,  1e-4,  1e-5,  1e-6,  1e-7,  1e-8,  1e-9,  1e-10, 1e-11,
        1e-12, 1e-13, 1e-14, 1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22, 1e-23,
        1e-24, 1e-25, 1e-26, 1e-27, 1e-28, 1e-29, 1e-30, 1e-31, 1e-32, 1e-33, 1e-34, 1e-35,
        1e-36, 1e-37, 1e-38, 1e-39, 1e-40, 1e-41, 1e-42, 1e-43, 1e-44, 1e-45, 1e-46, 1e-47,
        1e-48, 1e-49, 1e-50, 1e-51, 1e-52, 1e-53, 1e-54, 1e-55, 1e-56, 1e-57, 1e-58, 1e-59};
    decimal d = parse_decimal(s, n, used);
    n = *used;
    if (!d.ok) return NAN; /* the caller declines */
    if (d.exact && d.exp10 >= -59 && d.exp10 <= 27) {
        if (d.m == 0) return d.neg ? -0.0f : 0.0f;
        double x = (double)d.m * (d.exp10 < 0 ? m10[-d.exp10] : pow10_d[d.exp10]);
        uint64_t bits;
        memcpy(&bits, &x, 8);
        uint64_t low = bits & ((1ull << 29) - 1);
        if (x >= (double)FLT_MIN && x <= (double)FLT_MAX &&
            (low < (1ull << 28) - 64 || low > (1ull << 28) + 64)) {
            float f = (float)x;
            return d.neg ? -f : f;
        }
    }
    return (float)strtod_token(s, n);
}

/* An integer token (no fraction or exponent) as int64; false if it is not
 * one or does not fit. */
static bool parse_int(const char *s, size_t n, int64_t *v)
{
    size_t i = 0;
    bool neg = s[0] == '-';
    if (neg) i++;
    uint64_t m = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        if (m > (UINT64_MAX - 9) / 10) return false;
        m = m * 10 + (uint64_t)(s[i] - '0');
    }
    if (neg) {
        if (m > (uint64_t)INT64_MAX + 1) return false;
        *v = (int64_t)(0 - m);
    } else {
        if (m > (uint64_t)INT64_MAX) return false;
        *v = (int64_t)m;
    }
    return true;
}

bool kfast_convert(const kfast_list *l, tern_dtype dt, int64_t count, void *dst)
{
    const char *s = l->text;
    size_t n = l->len, i = skip_ws(s, 1, n);
    if (count == 0) return i < n && s[i] == ']';
    for (int64_t k = 0; k < count; k++) {
        /* the scan only found the bracket: each element's grammar is
         * checked here (the float parsers check it as they read) */
        size_t len = 0;
        const char *tok = s + i;
        switch (dt) {
        case TERN_FLOAT: {
            float v = parse_float(tok, n - i, &len);
            if (!isfinite(v)) return false; /* overflow: the full path words the error */
            ((float *)dst)[k] = v;
            break;
        }
        case TERN_DOUBLE: {
            double v = parse_double(tok, n - i, &len);
            if (!isfinite(v)) return false;
            ((double *)dst)[k] = v;
            break;
        }
        case TERN_FLOAT16:
        case TERN_BFLOAT16: {
            double v = parse_double(tok, n - i, &len);
            if (!isfinite(v)) return false;
            uint16_t h = dt == TERN_FLOAT16 ? f32_to_f16((float)v) : f32_to_bf16((float)v);
            if ((dt == TERN_FLOAT16 && (h & 0x7c00) == 0x7c00) ||
                (dt == TERN_BFLOAT16 && (h & 0x7f80) == 0x7f80))
                return false; /* overflow: the full path words the error */
            ((uint16_t *)dst)[k] = h;
            break;
        }
        case TERN_INT8:
        case TERN_INT16:
        case TERN_INT32:
        case TERN_INT64:
        case TERN_UINT8:
        case TERN_UINT16:
        case TERN_UINT32: {
            int64_t v;
            len = number_len(s, i, n);
            if (!len) return false;
            if (!parse_int(tok, len, &v)) return false;
            int64_t lo = 0, hi = 0;
            switch (dt) {
            case TERN_INT8: lo = INT8_MIN, hi = INT8_MAX; break;
            case TERN_INT16: lo = INT16_MIN, hi = INT16_MAX; break;
            case TERN_INT32: lo = INT32_MIN, hi = INT32_MAX; break;
            case TERN_INT64: lo = INT64_MIN, hi = INT64_MAX; break;
            case TERN_UINT8: hi = UINT8_MAX; break;
            case TERN_UINT16: hi = UINT16_MAX; break;
            default: hi = UINT32_MAX; break;
            }
            if (v < lo || v > hi) return false;
            dtype_set_i64(dt, dst, k, v);
            break;
        }
        case TERN_UINT64: {
            /* jansson stops at INT64_MAX; the lane reads the whole range */
            len = number_len(s, i, n);
            if (!len) return false;
            uint64_t v = 0;
            if (tok[0] == '-') {
                int64_t sv;
                if (!parse_int(tok, len, &sv) || sv != 0) return false;
            } else {
                for (size_t q = 0; q < len; q++) {
                    if (tok[q] < '0' || tok[q] > '9') return false;
                    if (v > (UINT64_MAX - (uint64_t)(tok[q] - '0')) / 10) return false;
                    v = v * 10 + (uint64_t)(tok[q] - '0');
                }
            }
            ((uint64_t *)dst)[k] = v;
            break;
        }
        default: return false; /* BOOL, BYTES: the full path */
        }
        i = skip_ws(s, i + len, n);
        if (i >= n || s[i] != (k + 1 < count ? ',' : ']')) return false;
        i = skip_ws(s, i + 1, n);
    }
    return true;
}

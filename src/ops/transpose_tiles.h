/*
 * Register transposes for the tiled path of the strided copy
 * (shape_layout.c): one call copies an ni x nj block with
 *     d[i * dsp + j] = s[i + j * ssl]      (i < ni, j < nj; strides in elements)
 * where the source is contiguous along i and the destination along j.
 *
 * Each element size has a ladder of block kernels, widest first; a level
 * covers the block with its square V x V register transposes and hands the
 * right and bottom strips (narrower than V) to the next level down, the last
 * being a scalar loop:
 *   1 byte   scalar
 *   2 bytes  SSE2 8x8 (unpack 16/32/64), every level
 *   4 bytes  SSE2 4x4 (generic); AVX2 8x8, rows loaded as two 128-bit halves
 *            so the cross-lane step costs no shuffle; AVX-512 16x16
 *            (unpack, shuffle, two rounds of shuffle_f32x4), or AVX2's 8x8
 *            when source rows lie 8 KB apart, with 8x8 masked loads and
 *            stores for every edge
 *   8 bytes  SSE2 2x2 (generic); AVX2 4x4; AVX-512 8x8
 * ttile_pick() returns the ladder top for an element size at the level
 * tern_isa() allows (core/cpu.h); the AVX ones are compiled with target
 * attributes, so the file builds for plain x86-64 and for other CPUs (only
 * the scalar loops there). Loads and stores are unaligned.
 */
#ifndef TERN_OPS_TRANSPOSE_TILES_H
#define TERN_OPS_TRANSPOSE_TILES_H

#include <stdint.h>
#include <string.h>

#include "core/cpu.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#ifdef TERN_HAVE_X86_MULTI
#include <immintrin.h>
#endif

typedef void (*ttile_fn)(char *d, const char *s, int64_t ni, int64_t nj, int64_t dsp, int64_t ssl);

#define TT_SCALAR(N)                                                                               \
    static void tt_scalar##N(char *d, const char *s, int64_t ni, int64_t nj, int64_t dsp,          \
                             int64_t ssl)                                                          \
    {                                                                                              \
        for (int64_t i = 0; i < ni; i++)                                                           \
            for (int64_t j = 0; j < nj; j++)                                                       \
                memcpy(d + (i * dsp + j) * N, s + (i + j * ssl) * N, N);                           \
    }
TT_SCALAR(1)
TT_SCALAR(2)
TT_SCALAR(4)
TT_SCALAR(8)
#undef TT_SCALAR

/* The body of a ladder level: V x V blocks through BLOCK(d, s, dst row
 * bytes, src row bytes), strips through REST. */
#define TT_LEVEL(V, N, BLOCK, REST)                                                                \
    int64_t i = 0, j;                                                                              \
    for (; i + (V) <= ni; i += (V)) {                                                              \
        for (j = 0; j + (V) <= nj; j += (V))                                                       \
            BLOCK(d + (i * dsp + j) * (N), s + (i + j * ssl) * (N), dsp * (N), ssl * (N));         \
        if (j < nj) REST(d + (i * dsp + j) * (N), s + (i + j * ssl) * (N), (V), nj - j, dsp, ssl); \
    }                                                                                              \
    if (i < ni) REST(d + i * dsp * (N), s + i * (N), ni - i, nj, dsp, ssl);

#ifdef __SSE2__
static inline void blk4x4_sse2(char *d, const char *s, int64_t db, int64_t sb)
{
    __m128 r0 = _mm_loadu_ps((const float *)s), r1 = _mm_loadu_ps((const float *)(s + sb));
    __m128 r2 = _mm_loadu_ps((const float *)(s + 2 * sb));
    __m128 r3 = _mm_loadu_ps((const float *)(s + 3 * sb));
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps((float *)d, r0);
    _mm_storeu_ps((float *)(d + db), r1);
    _mm_storeu_ps((float *)(d + 2 * db), r2);
    _mm_storeu_ps((float *)(d + 3 * db), r3);
}

static inline void blk2x2_sse2(char *d, const char *s, int64_t db, int64_t sb)
{
    __m128d r0 = _mm_loadu_pd((const double *)s), r1 = _mm_loadu_pd((const double *)(s + sb));
    _mm_storeu_pd((double *)d, _mm_unpacklo_pd(r0, r1));
    _mm_storeu_pd((double *)(d + db), _mm_unpackhi_pd(r0, r1));
}

/* 8x8 of 16-bit elements: pairs, then quads, then halves. */
static inline void blk8x8_16_sse2(char *d, const char *s, int64_t db, int64_t sb)
{
    __m128i r[8], a[8], b[8];
    for (int k = 0; k < 8; k++) r[k] = _mm_loadu_si128((const __m128i *)(s + k * sb));
    for (int k = 0; k < 8; k += 2) {
        a[k] = _mm_unpacklo_epi16(r[k], r[k + 1]);
        a[k + 1] = _mm_unpackhi_epi16(r[k], r[k + 1]);
    }
    for (int h = 0; h < 8; h += 4) { /* rows 0-3, then 4-7 */
        b[h + 0] = _mm_unpacklo_epi32(a[h + 0], a[h + 2]);
        b[h + 1] = _mm_unpackhi_epi32(a[h + 0], a[h + 2]);
        b[h + 2] = _mm_unpacklo_epi32(a[h + 1], a[h + 3]);
        b[h + 3] = _mm_unpackhi_epi32(a[h + 1], a[h + 3]);
    }
    for (int k = 0; k < 4; k++) {
        _mm_storeu_si128((__m128i *)(d + 2 * k * db), _mm_unpacklo_epi64(b[k], b[k + 4]));
        _mm_storeu_si128((__m128i *)(d + (2 * k + 1) * db), _mm_unpackhi_epi64(b[k], b[k + 4]));
    }
}

static void tt4_sse2(char *d, const char *s, int64_t ni, int64_t nj, int64_t dsp, int64_t ssl)
{
    TT_LEVEL(4, 4, blk4x4_sse2, tt_scalar4)
}
static void tt8_sse2(char *d, const char *s, int64_t ni, int64_t nj, int64_t dsp, int64_t ssl)
{
    TT_LEVEL(2, 8, blk2x2_sse2, tt_scalar8)
}
static void tt2_sse2(char *d, const char *s, int64_t ni, int64_t nj, int64_t dsp, int64_t ssl)
{
    TT_LEVEL(8, 2, blk8x8_16_sse2, tt_scalar2)
}
#else
#define tt4_sse2 tt_scalar4
#define tt8_sse2 tt_scalar8
#define tt2_sse2 tt_scalar2
#endif

#ifdef TERN_HAVE_X86_MULTI
/* ---- AVX2 ---------------------------------------------------------------- */

static inline TERN_TARGET_AVX2 __m256 load2x128(const char *lo, const char *hi)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps((const float *)lo)),
                                _mm_loadu_ps((const float *)hi), 1);
}

/* Source rows k and k+4 share a register (low and high lane), so a 4x4
 * transpose within lanes leaves whole output rows. */
static inline TERN_TARGET_AVX2 void blk8x8_avx2(char *d, const char *s, int64_t db, int64_t sb)
{
    for (int h = 0; h < 2; h++) { /* source columns 0-3, then 4-7 */
        const char *c = s + h * 16;
        __m256 l0 = load2x128(c, c + 4 * sb), l1 = load2x128(c + sb, c + 5 * sb);
        __m256 l2 = load2x128(c + 2 * sb, c + 6 * sb), l3 = load2x128(c + 3 * sb, c + 7 * sb);
        __m256 t0 = _mm256_unpacklo_ps(l0, l1), t1 = _mm256_unpackhi_ps(l0, l1);
        __m256 t2 = _mm256_unpacklo_ps(l2, l3), t3 = _mm256_unpackhi_ps(l2, l3);
        char *o = d + 4 * h * db;
        _mm256_storeu_ps((float *)o, _mm256_shuffle_ps(t0, t2, 0x44));
        _mm256_storeu_ps((float *)(o + db), _mm256_shuffle_ps(t0, t2, 0xEE));
        _mm256_storeu_ps((float *)(o + 2 * db), _mm256_shuffle_ps(t1, t3, 0x44));
        _mm256_storeu_ps((float *)(o + 3 * db), _mm256_shuffle_ps(t1, t3, 0xEE));
    }
}

static inline TERN_TARGET_AVX2 __m256d load2x128d(const char *lo, const char *hi)
{
    return _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd((const double *)lo)),
                                _mm_loadu_pd((const double *)hi), 1);
}

static inline TERN_TARGET_AVX2 void blk4x4d_avx2(char *d, const char *s, int64_t db, int64_t sb)
{
    for (int h = 0; h < 2; h++) { /* source columns 0-1, then 2-3 */
        const char *c = s + h * 16;
        __m256d l0 = load2x128d(c, c + 2 * sb), l1 = load2x128d(c + sb, c + 3 * sb);
        _mm256_storeu_pd((double *)(d + 2 * h * db), _mm256_unpacklo_pd(l0, l1));
        _mm256_storeu_pd((double *)(d + (2 * h + 1) * db), _mm256_unpackhi_pd(l0, l1));
    }
}

static TERN_TARGET_AVX2 void tt4_avx2(char *d, const char *s, int64_t ni, int64_t nj, int64_t dsp,
                                      int64_t ssl)
{
    TT_LEVEL(8, 4, blk8x8_avx2, tt4_sse2)
}
static TERN_TARGET_AVX2 void tt8_avx2(char *d, const char *s, int64_t ni, int64_t nj, int64_t dsp,
                                      int64_t ssl)
{
    TT_LEVEL(4, 8, blk4x4d_avx2, tt8_sse2)
}

/* ---- AVX-512 ------------------------------------------------------------- */

/* Last step of both 512-bit transposes: output row 4L + c gathers lane L of
 * u[c], u[c + 4], u[c + 8], u[c + 12] (floats; c < 4), or of u[c], u[c + 2],
 * u[c + 4], u[c + 6] (doubles, row 2L + c, c < 2): two rounds of 128-bit
 * lane shuffles. STEP is the distance between the four sources. */
#define TT_LANES(T, SHUF, STORE, u, c, STEP, d, db, ROWSTEP)                                       \
    do {                                                                                           \
        T v0 = SHUF(u[c], u[(c) + (STEP)], 0x88), v1 = SHUF(u[c], u[(c) + (STEP)], 0xDD);          \
        T w0 = SHUF(u[(c) + 2 * (STEP)], u[(c) + 3 * (STEP)], 0x88);                               \
        T w1 = SHUF(u[(c) + 2 * (STEP)], u[(c) + 3 * (STEP)], 0xDD);                               \
        STORE(d + (c) * (db), SHUF(v0, w0, 0x88));                                                 \
        STORE(d + ((c) + (ROWSTEP)) * (db), SHUF(v1, w1, 0x88));                                   \
        STORE(d + ((c) + 2 * (ROWSTEP)) * (db), SHUF(v0, w0, 0xDD));                               \
        STORE(d + ((c) + 3 * (ROWSTEP)) * (db), SHUF(v1, w1, 0xDD));                               \
    } while (0)
#define TT_STORE_PS(p, v) _mm512_storeu_ps((float *)(p), v)
#define TT_STORE_PD(p, v) _mm512_storeu_pd((double *)(p), v)

static inline TERN_TARGET_AVX512 void blk16x16_avx512(char *d, const char *s, int64_t db,
                                                      int64_t sb)
{
    __m512 r[16], t[16], u[16];
    for (int k = 0; k < 16; k++) r[k] = _mm512_loadu_ps((const float *)(s + k * sb));
    for (int k = 0; k < 16; k += 2) {
        t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 16; k += 4) { /* u[k + c]: column 4L + c of rows k..k+3, lane L */
        u[k] = _mm512_shuffle_ps(t[k], t[k + 2], 0x44);
        u[k + 1] = _mm512_shuffle_ps(t[k], t[k + 2], 0xEE);
        u[k + 2] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        u[k + 3] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++)
        TT_LANES(__m512, _mm512_shuffle_f32x4, TT_STORE_PS, u, c, 4, d, db, 4);
}

static inline TERN_TARGET_AVX512 void blk8x8d_avx512(char *d, const char *s, int64_t db, int64_t sb)
{
    __m512d r[8], t[8];
    for (int k = 0; k < 8; k++) r[k] = _mm512_loadu_pd((const double *)(s + k * sb));
    for (int k = 0; k < 8; k += 2) { /* t[k + c]: column 2L + c of rows k, k+1, lane L */
        t[k] = _mm512_unpacklo_pd(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_pd(r[k], r[k + 1]);
    }
    for (int c = 0; c < 2; c++)
        TT_LANES(__m512d, _mm512_shuffle_f64x2, TT_STORE_PD, t, c, 2, d, db, 2);
}

/* Any block of at most 8 x 8 floats: masked loads of the rj source rows
 * (ri elements each), an 8x8 register transpose, masked stores of the ri
 * destination rows (rj elements each). */
static inline TERN_TARGET_AVX512 void blk8x8_masked(char *d, const char *s, int64_t db, int64_t sb,
                                                    int ri, int rj)
{
    __mmask8 lm = (__mmask8)((1u << ri) - 1), sm = (__mmask8)((1u << rj) - 1);
    __m256 r[8], t[8], u[8];
    for (int k = 0; k < 8; k++)
        r[k] =
            k < rj ? _mm256_maskz_loadu_ps(lm, (const float *)(s + k * sb)) : _mm256_setzero_ps();
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    for (int k = 0; k < 4; k++) { /* row k + 4h: lane h of u[k] and of u[k + 4] */
        r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
        r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
    }
    for (int k = 0; k < ri; k++) _mm256_mask_storeu_ps((float *)(d + k * db), sm, r[k]);
}

static TERN_TARGET_AVX512 void tt4_masked(char *d, const char *s, int64_t ni, int64_t nj,
                                          int64_t dsp, int64_t ssl)
{
    for (int64_t i = 0; i < ni; i += 8)
        for (int64_t j = 0; j < nj; j += 8)
            blk8x8_masked(d + (i * dsp + j) * 4, s + (i + j * ssl) * 4, dsp * 4, ssl * 4,
                          ni - i < 8 ? (int)(ni - i) : 8, nj - j < 8 ? (int)(nj - j) : 8);
}
static TERN_TARGET_AVX512 void tt4_avx512(char *d, const char *s, int64_t ni, int64_t nj,
                                          int64_t dsp, int64_t ssl)
{
    /* Source rows 8 KB or more apart (NCHW -> NHWC of a large image):
     * 16 streams at once measured slower than the 8x8 AVX2 blocks (Zen 4,
     * bench/transpose.c); the masked edges either way. */
    if (ssl >= 2048) {
        TT_LEVEL(8, 4, blk8x8_avx2, tt4_masked)
    } else {
        TT_LEVEL(16, 4, blk16x16_avx512, tt4_masked)
    }
}
static TERN_TARGET_AVX512 void tt8_avx512(char *d, const char *s, int64_t ni, int64_t nj,
                                          int64_t dsp, int64_t ssl)
{
    TT_LEVEL(8, 8, blk8x8d_avx512, tt8_avx2)
}
#undef TT_LANES
#undef TT_STORE_PS
#undef TT_STORE_PD
#endif
#undef TT_LEVEL

/* The kernel for esz-byte elements (1, 2, 4 or 8) at the current level. */
static inline ttile_fn ttile_pick(size_t esz)
{
#ifdef TERN_HAVE_X86_MULTI
    int isa = tern_isa();
    if (esz == 4)
        return isa >= TERN_ISA_AVX512 ? tt4_avx512 : isa >= TERN_ISA_AVX2 ? tt4_avx2 : tt4_sse2;
    if (esz == 8)
        return isa >= TERN_ISA_AVX512 ? tt8_avx512 : isa >= TERN_ISA_AVX2 ? tt8_avx2 : tt8_sse2;
#else
    if (esz == 4) return tt4_sse2;
    if (esz == 8) return tt8_sse2;
#endif
    return esz == 2 ? tt2_sse2 : tt_scalar1;
}

#endif

/*
 * Packed, cache-blocked float32 GEMM (see linalg_gemm.h for the design).
 *
 * Loop nest, for one superblock of B columns [n0, n0+ns):
 *   phase 1 (parallel over k-blocks x column groups): pack B[:, n0:n0+ns]
 *   phase 2 (parallel over MC x NC tiles of C):
 *     for each k-block of SGEMM_KC
 *       for each MR-row panel of A      (KC x MR panel, 16 KB, stays in L1)
 *         for each NR-column panel of B (the tile's B block stays in L2)
 *           micro-kernel on an MR x NR tile, or rows_kernel on the
 *           h x NR tile of a last panel of h < MR rows
 * The first k-block applies beta (and the bias) to C, the others
 * accumulate. A is packed once for the whole call by the caller
 * (sgemm_pack_a), in k-blocks of MR-row panels with every element repeated
 * LANES times for the portable kernels (once for the vector kernels, which
 * broadcast as they load: a_lanes()), so block (k0, i0) starts at
 * pa + (k0*Mp + i0*kc) * a_lanes();
 * a last panel of h < MR rows holds those h rows only.
 *
 * A B packed ahead of time (sgemm_pack_b_all, for weights) is one
 * superblock of all n columns; sgemm_prepacked runs phase 2 on it alone.
 * At batch 1 (m < MR) that is a matrix-vector product over the packed
 * weights, all of it in rows_kernel. Without packed B, sgemm() runs such an
 * m as a direct loop instead: packing B would cost as much as the product.
 */
#include "ops/linalg_gemm.h"

#include "core/cpu.h"

#define MR SGEMM_MR
#define NR SGEMM_NR
#define KC SGEMM_KC
#define LANES SGEMM_LANES
#define NC 64               /* tile width of C per task (8 panels) */
#define PB_TARGET (1 << 20) /* floats of packed B per superblock (4 MB) */

static inline int64_t round_up(int64_t x, int64_t m)
{
    return (x + m - 1) / m * m;
}
static inline int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Columns of B per superblock: a multiple of NC (or all of n, rounded to NR). */
static int64_t superblock_cols(int64_t n, int64_t k)
{
    int64_t ns = PB_TARGET / (k > 0 ? k : 1) / NC * NC;
    if (ns < NC) ns = NC;
    if (ns >= n) ns = round_up(n, NR);
    return ns;
}

/* Copies of each A element in packed A: LANES for the portable kernels,
 * one for the vector ones. Fixed for the process (tern_isa() is). */
static inline int64_t a_lanes(void)
{
    return tern_isa() >= TERN_ISA_AVX2 ? 1 : LANES;
}

size_t sgemm_pa_floats(int64_t m, int64_t k)
{
    return (size_t)(round_up(m, MR) * k * LANES);
}

size_t sgemm_pb_floats(int64_t n, int64_t k)
{
    return (size_t)(superblock_cols(n, k) * k);
}

size_t sgemm_work_floats(int64_t m, int64_t n, int64_t k)
{
    if (m < MR) return 0; /* sgemm() packs nothing then */
    return sgemm_pa_floats(m, k) + sgemm_pb_floats(n, k);
}

/* ---- packing ------------------------------------------------------------ */

void sgemm_pack_view(const void *view, int64_t k0, int64_t kc, int64_t n0, int64_t nc, float *dst)
{
    const sgemm_view *v = view;
    int64_t full = nc / NR * NR;
    if (v->cs == 1) { /* row-major B: read each row once, left to right */
        for (int64_t k = 0; k < kc; k++) {
            const float *src = v->p + (k0 + k) * v->rs + n0;
            float *d = dst + k * NR;
            for (int64_t j0 = 0; j0 < full; j0 += NR, d += kc * NR)
                for (int j = 0; j < NR; j++) d[j] = src[j0 + j];
            if (full < nc)
                for (int j = 0; j < NR; j++) d[j] = full + j < nc ? src[full + j] : 0.0f;
        }
        return;
    }
    for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += kc * NR) {
        int64_t w = min64(NR, nc - j0);
        const float *src = v->p + k0 * v->rs + (n0 + j0) * v->cs;
        if (v->rs == 1) { /* B transposed: walk each column contiguously */
            for (int j = 0; j < NR; j++)
                for (int64_t k = 0; k < kc; k++)
                    dst[k * NR + j] = j < w ? src[k + j * v->cs] : 0.0f;
        } else {
            for (int64_t k = 0; k < kc; k++)
                for (int j = 0; j < NR; j++)
                    dst[k * NR + j] = j < w ? src[k * v->rs + j * v->cs] : 0.0f;
        }
    }
}

typedef struct pack_a_job {
    int64_t m, k, mp, rs, cs;
    const float *a;
    float *pa;
} pack_a_job;

/* Items are (k-block, row panel) pairs. Element (i, k) of a panel of h
 * rows goes to dst[(k*h + i)*al + l] for every lane l < al = a_lanes(): h is MR but for
 * the last panel of an m not a multiple of MR, which rows_kernel reads
 * without padding. */
static void pack_a_range(void *arg, int64_t begin, int64_t end)
{
    const pack_a_job *j = arg;
    int64_t panels = j->mp / MR;
    for (int64_t it = begin; it < end; it++) {
        int64_t k0 = it / panels * KC, i0 = it % panels * MR;
        int64_t kc = min64(KC, j->k - k0), h = min64(MR, j->m - i0);
        int64_t al = a_lanes();
        float *dst = j->pa + (k0 * j->mp + i0 * kc) * al;
        const float *src = j->a + i0 * j->rs + k0 * j->cs;
        for (int i = 0; i < h; i++)
            for (int64_t k = 0; k < kc; k++) {
                float v = src[i * j->rs + k * j->cs];
                for (int64_t l = 0; l < al; l++) dst[(k * h + i) * al + l] = v;
            }
    }
}

void sgemm_pack_a(tpool *pool, int64_t m, int64_t k, const float *a, int64_t rs, int64_t cs,
                  float *pa)
{
    pack_a_job j = {m, k, round_up(m, MR), rs, cs, a, pa};
    int64_t items = (k + KC - 1) / KC * (j.mp / MR);
    tpool_for(pool, items, 16, pack_a_range, &j);
}

/* ---- micro-kernels ------------------------------------------------------ */

/* The portable kernels work on half a panel, HW = NR/2 columns (two SSE
 * registers per row: a whole panel's 4x4 accumulators would not fit in 16
 * xmm registers), reading B with the panel's row stride NR. */
#define HW (NR / 2)

/* C tile (h x w valid) = alpha * acc + beta * C (+ bias_i[i] on row i or
 * bias_j[j] on column j), acc (i, j) at acc[i*ast + j], C element (i, j) at
 * c[i*rs + j*cs]. */
static inline void store_tile(const float *acc, int ast, float *restrict c, int64_t rs, int64_t cs,
                              int h, int w, float alpha, float beta, const float *bias_i,
                              const float *bias_j)
{
    if (cs == 1 && !bias_j) {
        for (int i = 0; i < h; i++) {
            float *cr = c + i * rs, bi = bias_i ? bias_i[i] : 0.0f;
            for (int j = 0; j < w; j++) {
                float x = alpha * acc[i * ast + j] + bi;
                cr[j] = beta == 0.0f ? x : x + beta * cr[j];
            }
        }
        return;
    }
    for (int j = 0; j < w; j++)
        for (int i = 0; i < h; i++) {
            float x = alpha * acc[i * ast + j];
            if (bias_i) x += bias_i[i];
            if (bias_j) x += bias_j[j];
            float *p = c + i * rs + j * cs;
            *p = beta == 0.0f ? x : x + beta * *p;
        }
}

/* C tile (MR x w valid of MR x HW) = alpha * A panel * half a B panel +
 * beta * C (+ bias), as store_tile. acc[i][v][l] is row i, column
 * v*LANES + l: each [i][v] row of LANES floats maps onto one xmm register,
 * which gcc keeps in registers across the loop. The lane loop runs
 * downwards on purpose: gcc 12 then emits the vector loads in order;
 * written upwards it reverses every operand with a shuffle. */
static inline void micro_kernel(int64_t kc, const float *restrict a, const float *restrict b,
                                float *restrict c, int64_t rs, int64_t cs, int w, float alpha,
                                float beta, const float *bias_i, const float *bias_j)
{
    enum { NV = HW / LANES };
    float acc[MR][NV][LANES];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++)
            for (int l = 0; l < LANES; l++) acc[i][v][l] = 0.0f;
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < NV; v++)
                for (int l = LANES - 1; l >= 0; l--)
                    acc[i][v][l] += a[i * LANES + l] * b[v * LANES + l];
        a += MR * LANES;
        b += NR;
    }
    store_tile(&acc[0][0][0], HW, c, rs, cs, MR, w, alpha, beta, bias_i, bias_j);
}

/* micro_kernel for a last panel of A of h < MR rows (at batch 1, all of A):
 * it computes those h rows only, where micro_kernel would do MR/h times the
 * work. The panel holds its h rows only, element (i, k) at
 * a[(k*h + i)*LANES + l] (pack_a_range). One row alone has two sums in
 * flight, too few to hide the latency of addps, so its k loop is dealt
 * round-robin to s = 2 sets of accumulators, added up at the end (an odd
 * last step goes to a third, rest). Two rows gain nothing from it: their
 * extra registers spill. This is a shape gcc 12 vectorises cleanly: an A
 * element read as a scalar to broadcast, or several B panels per step, make
 * it vectorise along k with shuffles instead. As in micro_kernel the lane
 * loop runs downwards. h is a constant at each call (always_inline), so
 * each h compiles to its own loop. */
static inline __attribute__((always_inline)) void
rows_kernel(int h, int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
            int64_t rs, int64_t cs, int w, float alpha, float beta, const float *bias_i,
            const float *bias_j)
{
    enum { NV = HW / LANES };
    const int s = h == 1 ? 2 : 1;
    float acc[2][MR - 1][NV][LANES], rest[MR - 1][NV][LANES], sum[MR - 1][HW];
    for (int i = 0; i < h; i++)
        for (int v = 0; v < NV; v++)
            for (int l = 0; l < LANES; l++) {
                for (int t = 0; t < s; t++) acc[t][i][v][l] = 0.0f;
                rest[i][v][l] = 0.0f;
            }
    int64_t k = 0;
#pragma GCC unroll 2
    for (; k + s <= kc; k += s) {
        for (int t = 0; t < s; t++)
            for (int i = 0; i < h; i++)
                for (int v = 0; v < NV; v++)
                    for (int l = LANES - 1; l >= 0; l--)
                        acc[t][i][v][l] += a[(t * h + i) * LANES + l] * b[t * NR + v * LANES + l];
        a += s * h * LANES;
        b += s * NR;
    }
    for (; k < kc; k++) {
        for (int i = 0; i < h; i++)
            for (int v = 0; v < NV; v++)
                for (int l = 0; l < LANES; l++)
                    rest[i][v][l] += a[i * LANES + l] * b[v * LANES + l];
        a += h * LANES;
        b += NR;
    }
    for (int i = 0; i < h; i++)
        for (int v = 0; v < NV; v++)
            for (int l = 0; l < LANES; l++) {
                float x = rest[i][v][l];
                for (int t = 0; t < s; t++) x += acc[t][i][v][l];
                sum[i][v * LANES + l] = x;
            }
    store_tile(&sum[0][0], HW, c, rs, cs, h, w, alpha, beta, bias_i, bias_j);
}

/* rows_kernel for a run-time h in [1, MR). */
static void rows_tile(int h, int64_t kc, const float *a, const float *b, float *c, int64_t rs,
                      int64_t cs, int w, float alpha, float beta, const float *bias_i,
                      const float *bias_j)
{
    switch (h) {
    case 1: rows_kernel(1, kc, a, b, c, rs, cs, w, alpha, beta, bias_i, bias_j); break;
    case 2: rows_kernel(2, kc, a, b, c, rs, cs, w, alpha, beta, bias_i, bias_j); break;
    default: rows_kernel(3, kc, a, b, c, rs, cs, w, alpha, beta, bias_i, bias_j);
    }
}

/* One panel (h rows, w <= NR columns) with the portable kernels, as two
 * halves. */
static void generic_panel(int h, int64_t kc, const float *a, const float *b, float *c, int64_t rs,
                          int64_t cs, int w, float alpha, float beta, const float *bias_i,
                          const float *bias_j)
{
    for (int half = 0; half < 2 && half * HW < w; half++) {
        int wh = w - half * HW < HW ? w - half * HW : HW;
        const float *bh = b + half * HW, *bj = bias_j ? bias_j + half * HW : NULL;
        float *ch = c + half * HW * cs;
        if (h == MR)
            micro_kernel(kc, a, bh, ch, rs, cs, wh, alpha, beta, bias_i, bj);
        else
            rows_tile(h, kc, a, bh, ch, rs, cs, wh, alpha, beta, bias_i, bj);
    }
}

/* ---- AVX2 + FMA and AVX-512 kernels (chosen at run time) ------------------ *
 * The same packed B, read differently, and packed A without copies: an A
 * element is broadcast as it is loaded, and one call covers P adjacent panels of B
 * (panel p at b + p*kc*NR): two ymm or one zmm register per panel row. h
 * rows x P panels give enough independent FMA chains (8 to 16 accumulators)
 * to hide the FMA latency; a single row also deals its k steps to two sets
 * of accumulators. The tile is then stored panel by panel through
 * store_tile. */
#ifdef TERN_HAVE_X86_MULTI
#define GEMM_HAVE_X86 1
#include <immintrin.h>

static inline TERN_TARGET_AVX512 __m512 bcast512(const float *p)
{
    return _mm512_set1_ps(*p);
}

#define VEC_TILE(NAME, TARGET, VT, VW, LOAD, BCAST, FMA, ZERO, ADD, STORE)                         \
    static inline __attribute__((always_inline)) TARGET void NAME(                                  \
        int H, int P, int64_t kc, const float *restrict a, const float *restrict b,                \
        float *restrict c, int64_t rs, int64_t cs, int w, float alpha, float beta,                 \
        const float *bias_i, const float *bias_j)                                                  \
    {                                                                                              \
        enum { PV = NR / VW }; /* vectors per panel row */                                         \
        const int S = H == 1 ? 2 : 1, V = P * PV;                                                  \
        const int64_t bs = kc * NR;                                                                \
        VT acc[2][MR][4 * PV];                                                                     \
        _Pragma("GCC unroll 16") for (int t = 0; t < S; t++)                                       \
            _Pragma("GCC unroll 16") for (int i = 0; i < H; i++)                                   \
                _Pragma("GCC unroll 16") for (int v = 0; v < V; v++) acc[t][i][v] = ZERO();        \
        int64_t k = 0;                                                                             \
        for (; k + S <= kc; k += S) {                                                              \
            _Pragma("GCC unroll 16") for (int t = 0; t < S; t++)                                   \
            {                                                                                      \
                VT bv[4 * PV];                                                                     \
                _Pragma("GCC unroll 16") for (int v = 0; v < V; v++) bv[v] =                       \
                    LOAD(b + v / PV * bs + (k + t) * NR + v % PV * VW);                            \
                _Pragma("GCC unroll 16") for (int i = 0; i < H; i++)                               \
                {                                                                                  \
                    VT av = BCAST(a + (k + t) * H + i);                                            \
                    _Pragma("GCC unroll 16") for (int v = 0; v < V; v++) acc[t][i][v] =            \
                        FMA(av, bv[v], acc[t][i][v]);                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; k < kc; k++)                                                                        \
            _Pragma("GCC unroll 16") for (int i = 0; i < H; i++)                                   \
            {                                                                                      \
                VT av = BCAST(a + k * H + i);                                                      \
                _Pragma("GCC unroll 16") for (int v = 0; v < V; v++) acc[0][i][v] =                \
                    FMA(av, LOAD(b + v / PV * bs + k * NR + v % PV * VW), acc[0][i][v]);           \
            }                                                                                      \
        float sum[4][MR * NR];                                                                     \
        _Pragma("GCC unroll 16") for (int i = 0; i < H; i++)                                       \
            _Pragma("GCC unroll 16") for (int v = 0; v < V; v++)                                   \
                STORE(sum[v / PV] + i * NR + v % PV * VW,                                          \
                      S == 2 ? ADD(acc[0][i][v], acc[1][i][v]) : acc[0][i][v]);                    \
        for (int p = 0; p < P && p * NR < w; p++) {                                                \
            int wp = w - p * NR < NR ? w - p * NR : NR;                                            \
            store_tile(sum[p], NR, c + p * NR * cs, rs, cs, H, wp, alpha, beta, bias_i,            \
                       bias_j ? bias_j + p * NR : NULL);                                           \
        }                                                                                          \
    }

VEC_TILE(avx2_tile, TERN_TARGET_AVX2, __m256, 8, _mm256_loadu_ps, _mm256_broadcast_ss,
         _mm256_fmadd_ps, _mm256_setzero_ps, _mm256_add_ps, _mm256_storeu_ps)
VEC_TILE(avx512_tile, TERN_TARGET_AVX512, __m512, 16, _mm512_loadu_ps, bcast512,
         _mm512_fmadd_ps, _mm512_setzero_ps, _mm512_add_ps, _mm512_storeu_ps)

/* Panels per call for h rows: h*P (times two sets for one row) accumulators
 * plus the loads of B within the register file (16 ymm, 32 zmm). */
static int vec_panels(int isa, int h)
{
    if (isa >= TERN_ISA_AVX512) return 4;
    return h == 1 || h == 2 ? 2 : 1;
}

#define TILE_CASE(F, H, P)                                                                        \
    case (H) * 8 + (P): F(H, P, kc, a, b, c, rs, cs, w, alpha, beta, bias_i, bias_j); break
static TERN_TARGET_AVX2 void avx2_block(int h, int np, int64_t kc, const float *a, const float *b,
                                        float *c, int64_t rs, int64_t cs, int w, float alpha,
                                        float beta, const float *bias_i, const float *bias_j)
{
    switch (h * 8 + np) {
        TILE_CASE(avx2_tile, 1, 1); TILE_CASE(avx2_tile, 1, 2);
        TILE_CASE(avx2_tile, 2, 1); TILE_CASE(avx2_tile, 2, 2);
        TILE_CASE(avx2_tile, 3, 1);
        TILE_CASE(avx2_tile, 4, 1);
    default: break;
    }
}
static TERN_TARGET_AVX512 void avx512_block(int h, int np, int64_t kc, const float *a,
                                            const float *b, float *c, int64_t rs, int64_t cs,
                                            int w, float alpha, float beta, const float *bias_i,
                                            const float *bias_j)
{
    switch (h * 8 + np) {
        TILE_CASE(avx512_tile, 1, 1); TILE_CASE(avx512_tile, 1, 2);
        TILE_CASE(avx512_tile, 1, 3); TILE_CASE(avx512_tile, 1, 4);
        TILE_CASE(avx512_tile, 2, 1); TILE_CASE(avx512_tile, 2, 2);
        TILE_CASE(avx512_tile, 2, 3); TILE_CASE(avx512_tile, 2, 4);
        TILE_CASE(avx512_tile, 3, 1); TILE_CASE(avx512_tile, 3, 2);
        TILE_CASE(avx512_tile, 3, 3); TILE_CASE(avx512_tile, 3, 4);
        TILE_CASE(avx512_tile, 4, 1); TILE_CASE(avx512_tile, 4, 2);
        TILE_CASE(avx512_tile, 4, 3); TILE_CASE(avx512_tile, 4, 4);
    default: break;
    }
}
#undef TILE_CASE
#endif

/* ---- driver ------------------------------------------------------------- */

typedef struct pack_b_job {
    int64_t k, n0, ns, nsp; /* superblock: first column, width, width rounded to NR */
    sgemm_pack_fn pack_b;
    const void *b_ctx;
    float *pb;
} pack_b_job;

#define PACK_GROUP 16 /* NR-column panels per packing item */

static void pack_b_range(void *arg, int64_t begin, int64_t end)
{
    const pack_b_job *j = arg;
    int64_t groups = (j->nsp / NR + PACK_GROUP - 1) / PACK_GROUP;
    for (int64_t it = begin; it < end; it++) {
        int64_t k0 = it / groups * KC, c0 = it % groups * PACK_GROUP * NR;
        int64_t kc = min64(KC, j->k - k0), nc = min64(PACK_GROUP * NR, j->ns - c0);
        j->pack_b(j->b_ctx, k0, kc, j->n0 + c0, nc, j->pb + k0 * j->nsp + c0 * kc);
    }
}

/* Packs columns [n0, n0+ns) of B into pb, k-block k0 at pb + k0*nsp. */
static void pack_superblock(tpool *pool, pack_b_job *j)
{
    int64_t kblocks = (j->k + KC - 1) / KC;
    int64_t groups = (j->nsp / NR + PACK_GROUP - 1) / PACK_GROUP;
    tpool_for(pool, kblocks * groups, 1, pack_b_range, j);
}

typedef struct gemm_job {
    int64_t m, k, mp;
    int64_t n0, ns, nsp; /* current superblock, as in pack_b_job */
    int64_t mc, mtiles;  /* row tile height and count */
    float alpha, beta;
    sgemm_out out;
    const float *pa, *pb;
} gemm_job;

static void compute_range(void *arg, int64_t begin, int64_t end)
{
    const gemm_job *j = arg;
    const sgemm_out *o = &j->out;
    int64_t rs = o->trans ? 1 : o->ldc, cs = o->trans ? o->ldc : 1;
    int isa = tern_isa();
    int64_t al = a_lanes();
    (void)isa;
    for (int64_t t = begin; t < end; t++) {
        int64_t i0 = t % j->mtiles * j->mc, c0 = t / j->mtiles * NC;
        int64_t i1 = min64(i0 + j->mc, j->m), c1 = min64(c0 + NC, j->ns);
        for (int64_t k0 = 0; k0 < j->k; k0 += KC) {
            int64_t kc = min64(KC, j->k - k0);
            float beta = k0 == 0 ? j->beta : 1.0f;
            const float *bias = k0 == 0 ? o->bias : NULL;
            const float *pa = j->pa + k0 * j->mp * al, *pb = j->pb + k0 * j->nsp;
            for (int64_t ic = i0; ic < i1; ic += MR) {
                const float *ap = pa + ic * kc * al;
                int h = (int)min64(MR, i1 - ic);
                int pmax = 1;
#ifdef GEMM_HAVE_X86
                if (isa >= TERN_ISA_AVX2) pmax = vec_panels(isa, h);
#endif
                for (int64_t jc = c0; jc < c1; jc += pmax * NR) {
                    int64_t col = j->n0 + jc;
                    float *c = o->c + ic * rs + col * cs;
                    int w = (int)min64(pmax * NR, c1 - jc), np = (w + NR - 1) / NR;
                    const float *bi = bias && !o->trans ? bias + ic : NULL;
                    const float *bj = bias && o->trans ? bias + col : NULL;
                    const float *bp = pb + jc * kc;
#ifdef GEMM_HAVE_X86
                    if (isa >= TERN_ISA_AVX512) {
                        avx512_block(h, np, kc, ap, bp, c, rs, cs, w, j->alpha, beta, bi, bj);
                        continue;
                    }
                    if (isa >= TERN_ISA_AVX2) {
                        avx2_block(h, np, kc, ap, bp, c, rs, cs, w, j->alpha, beta, bi, bj);
                        continue;
                    }
#endif
                    (void)np;
                    generic_panel(h, kc, ap, bp, c, rs, cs, w, j->alpha, beta, bi, bj);
                }
            }
        }
    }
}

/* Phase 2 for the superblock j describes, its B packed at j->pb. */
static void compute_superblock(tpool *pool, gemm_job *j)
{
    /* Shrink the row tile until every thread has a few tiles to take. */
    int64_t ntiles = (j->ns + NC - 1) / NC;
    j->mc = 128;
    while (j->mc > MR && ntiles * ((j->m + j->mc - 1) / j->mc) < 4 * tpool_threads(pool))
        j->mc /= 2;
    j->mtiles = (j->m + j->mc - 1) / j->mc;
    tpool_for(pool, ntiles * j->mtiles, 1, compute_range, j);
}

/* Empty products: C = beta * C + bias when k == 0. True if nothing is left. */
static bool gemm_trivial(int64_t m, int64_t n, int64_t k, float beta, const sgemm_out *o)
{
    if (m <= 0 || n <= 0) return true;
    if (k > 0) return false;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float *p = o->c + (o->trans ? j * o->ldc + i : i * o->ldc + j);
            float b = o->bias ? o->bias[o->trans ? j : i] : 0.0f;
            *p = (beta == 0.0f ? 0.0f : beta * *p) + b;
        }
    return true;
}

void sgemm_packed(tpool *pool, int64_t m, int64_t n, int64_t k, float alpha, const float *pa,
                  sgemm_pack_fn pack_b, const void *b_ctx, float beta, const sgemm_out *out,
                  float *pb)
{
    if (gemm_trivial(m, n, k, beta, out)) return;
    gemm_job j = {.m = m,
                  .k = k,
                  .mp = round_up(m, MR),
                  .alpha = alpha,
                  .beta = beta,
                  .out = *out,
                  .pa = pa,
                  .pb = pb};
    pack_b_job pj = {.k = k, .pack_b = pack_b, .b_ctx = b_ctx, .pb = pb};
    int64_t ns_max = superblock_cols(n, k);
    for (j.n0 = 0; j.n0 < n; j.n0 += ns_max) {
        pj.n0 = j.n0;
        pj.ns = j.ns = min64(ns_max, n - j.n0);
        pj.nsp = j.nsp = round_up(j.ns, NR);
        pack_superblock(pool, &pj);
        compute_superblock(pool, &j);
    }
}

size_t sgemm_pb_all_floats(int64_t n, int64_t k)
{
    return (size_t)(round_up(n, NR) * k);
}

void sgemm_pack_b_all(int64_t n, int64_t k, sgemm_pack_fn pack_b, const void *b_ctx, float *pb)
{
    pack_b_job pj = {k, 0, n, round_up(n, NR), pack_b, b_ctx, pb};
    if (n > 0 && k > 0) pack_superblock(NULL, &pj);
}

void sgemm_prepacked(tpool *pool, int64_t m, int64_t n, int64_t k, float alpha, const float *pa,
                     const float *pb, float beta, const sgemm_out *out)
{
    if (gemm_trivial(m, n, k, beta, out)) return;
    gemm_job j = {.m = m,
                  .k = k,
                  .mp = round_up(m, MR),
                  .ns = n,
                  .nsp = round_up(n, NR),
                  .alpha = alpha,
                  .beta = beta,
                  .out = *out,
                  .pa = pa,
                  .pb = pb};
    compute_superblock(pool, &j);
}

/* sum of x[p] * y[p] over p < k, in 2*LANES partial sums that gcc keeps in
 * two registers (it does not reorder a float sum by itself). */
static float dot(const float *x, const float *y, int64_t k)
{
    float s[2 * LANES] = {0};
    int64_t p = 0;
    for (; p + 2 * LANES <= k; p += 2 * LANES)
        for (int l = 0; l < 2 * LANES; l++) s[l] += x[p + l] * y[p + l];
    float t = 0.0f;
    for (int l = 0; l < 2 * LANES; l++) t += s[l];
    for (; p < k; p++) t += x[p] * y[p];
    return t;
}

/* Direct loop for small products: C row by row, B rows streamed, or one dot
 * product per element when rows of A and columns of B are both contiguous. */
static void sgemm_small(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t a_rs,
                        int64_t a_cs, const float *b, int64_t b_rs, int64_t b_cs, float beta,
                        float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++) {
        float *cr = c + i * ldc;
        if (a_cs == 1 && b_rs == 1) {
            for (int64_t j = 0; j < n; j++) {
                float x = alpha * dot(a + i * a_rs, b + j * b_cs, k);
                cr[j] = beta == 0.0f ? x : x + beta * cr[j];
            }
            continue;
        }
        for (int64_t j = 0; j < n; j++) cr[j] = beta == 0.0f ? 0.0f : beta * cr[j];
        for (int64_t p = 0; p < k; p++) {
            float av = alpha * a[i * a_rs + p * a_cs];
            const float *br = b + p * b_rs;
            if (b_cs == 1)
                for (int64_t j = 0; j < n; j++) cr[j] += av * br[j];
            else
                for (int64_t j = 0; j < n; j++) cr[j] += av * br[j * b_cs];
        }
    }
}

/* Fewer than MR rows with B not packed ahead (at batch 1, a MatMul of two
 * activations): packing B would cost as much as the whole product, so the
 * direct loop runs, split over blocks of SMALL_NC columns (wide enough that
 * each row of B is read in long runs). */
typedef struct small_job {
    int64_t m, n, k;
    float alpha, beta;
    const float *a, *b;
    int64_t a_rs, a_cs, b_rs, b_cs;
    float *c;
    int64_t ldc;
} small_job;

#define SMALL_NC 256
#define SMALL_TASK (64 * 1024) /* multiply-adds per task, at least */

static void small_range(void *arg, int64_t begin, int64_t end)
{
    const small_job *j = arg;
    int64_t c0 = begin * SMALL_NC, c1 = min64(end * SMALL_NC, j->n);
    sgemm_small(j->m, c1 - c0, j->k, j->alpha, j->a, j->a_rs, j->a_cs, j->b + c0 * j->b_cs, j->b_rs,
                j->b_cs, j->beta, j->c + c0, j->ldc);
}

void sgemm(tpool *pool, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t a_rs,
           int64_t a_cs, const float *b, int64_t b_rs, int64_t b_cs, float beta, float *c,
           int64_t ldc, float *work)
{
    if (m <= 0 || n <= 0) return;
    if (sgemm_is_small(m, n, k)) {
        sgemm_small(m, n, k, alpha, a, a_rs, a_cs, b, b_rs, b_cs, beta, c, ldc);
        return;
    }
    if (m < MR) {
        small_job j = {m, n, k, alpha, beta, a, b, a_rs, a_cs, b_rs, b_cs, c, ldc};
        int64_t items = (n + SMALL_NC - 1) / SMALL_NC;
        tpool_for(pool, items, SMALL_TASK / (m * k * SMALL_NC) + 1, small_range, &j);
        return;
    }
    float *pa = work, *pb = work + sgemm_pa_floats(m, k);
    sgemm_pack_a(pool, m, k, a, a_rs, a_cs, pa);
    sgemm_view v = {b, b_rs, b_cs};
    sgemm_out o = {c, ldc, false, NULL};
    sgemm_packed(pool, m, n, k, alpha, pa, sgemm_pack_view, &v, beta, &o, pb);
}

/*
 * Packed, cache-blocked float32 GEMM (see linalg_gemm.h for the design).
 *
 * Loop nest, for one superblock of B columns [n0, n0+ns):
 *   phase 1 (parallel over k-blocks x column groups): pack B[:, n0:n0+ns]
 *   phase 2 (parallel over MC x NC tiles of C):
 *     for each k-block of SGEMM_KC
 *       for each MR-row panel of A      (KC x MR panel, 16 KB, stays in L1)
 *         for each NR-column panel of B (the tile's B block stays in L2)
 *           micro-kernel on an MR x NR tile
 * The first k-block applies beta (and the bias) to C, the others
 * accumulate. A is packed once for the whole call by the caller
 * (sgemm_pack_a), in k-blocks of MR-row panels with every element repeated
 * LANES times, so block (k0, i0) starts at pa + (k0*Mp + i0*kc) * LANES.
 *
 * A B packed ahead of time (sgemm_pack_b_all, for weights) is one
 * superblock of all n columns; sgemm_prepacked runs phase 2 on it alone.
 */
#include "ops/linalg_gemm.h"

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

/* Items are (k-block, row panel) pairs. Element (i, k) of a panel goes to
 * dst[(k*MR + i)*LANES + l] for every lane l. */
static void pack_a_range(void *arg, int64_t begin, int64_t end)
{
    const pack_a_job *j = arg;
    int64_t panels = j->mp / MR;
    for (int64_t it = begin; it < end; it++) {
        int64_t k0 = it / panels * KC, i0 = it % panels * MR;
        int64_t kc = min64(KC, j->k - k0), h = min64(MR, j->m - i0);
        float *dst = j->pa + (k0 * j->mp + i0 * kc) * LANES;
        const float *src = j->a + i0 * j->rs + k0 * j->cs;
        for (int i = 0; i < MR; i++)
            for (int64_t k = 0; k < kc; k++) {
                float v = i < h ? src[i * j->rs + k * j->cs] : 0.0f;
                for (int l = 0; l < LANES; l++) dst[(k * MR + i) * LANES + l] = v;
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

/* ---- micro-kernel ------------------------------------------------------- */

/* C tile (h x w valid of MR x NR) = alpha * A panel * B panel + beta * C
 * (+ bias_i[i] on row i or bias_j[j] on column j), C element (i, j) at
 * c[i*rs + j*cs]. acc[i][v][l] is row i, column v*LANES + l: each [i][v] row
 * of LANES floats maps onto one xmm register, which gcc keeps in registers
 * across the loop. The lane loop runs downwards on purpose: gcc 12 then
 * emits the vector loads in order; written upwards it reverses every operand
 * with a shuffle. */
static inline void micro_kernel(int64_t kc, const float *restrict a, const float *restrict b,
                                float *restrict c, int64_t rs, int64_t cs, int h, int w,
                                float alpha, float beta, const float *bias_i, const float *bias_j)
{
    enum { NV = NR / LANES };
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
    if (h == MR && w == NR && cs == 1 && !bias_j) {
        for (int i = 0; i < MR; i++) {
            float *cr = c + i * rs, bi = bias_i ? bias_i[i] : 0.0f;
            for (int v = 0; v < NV; v++)
                for (int l = 0; l < LANES; l++) {
                    float x = alpha * acc[i][v][l] + bi;
                    cr[v * LANES + l] = beta == 0.0f ? x : x + beta * cr[v * LANES + l];
                }
        }
        return;
    }
    for (int j = 0; j < w; j++)
        for (int i = 0; i < h; i++) {
            float x = alpha * acc[i][j / LANES][j % LANES];
            if (bias_i) x += bias_i[i];
            if (bias_j) x += bias_j[j];
            float *p = c + i * rs + j * cs;
            *p = beta == 0.0f ? x : x + beta * *p;
        }
}

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
    for (int64_t t = begin; t < end; t++) {
        int64_t i0 = t % j->mtiles * j->mc, c0 = t / j->mtiles * NC;
        int64_t i1 = min64(i0 + j->mc, j->m), c1 = min64(c0 + NC, j->ns);
        for (int64_t k0 = 0; k0 < j->k; k0 += KC) {
            int64_t kc = min64(KC, j->k - k0);
            float beta = k0 == 0 ? j->beta : 1.0f;
            const float *bias = k0 == 0 ? o->bias : NULL;
            const float *pa = j->pa + k0 * j->mp * LANES, *pb = j->pb + k0 * j->nsp;
            for (int64_t ic = i0; ic < i1; ic += MR) {
                const float *ap = pa + ic * kc * LANES;
                int h = (int)min64(MR, i1 - ic);
                for (int64_t jc = c0; jc < c1; jc += NR) {
                    int64_t col = j->n0 + jc;
                    micro_kernel(kc, ap, pb + jc * kc, o->c + ic * rs + col * cs, rs, cs, h,
                                 (int)min64(NR, c1 - jc), j->alpha, beta,
                                 bias && !o->trans ? bias + ic : NULL,
                                 bias && o->trans ? bias + col : NULL);
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

/* Direct loop for small products: C row by row, B rows streamed. */
static void sgemm_small(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t a_rs,
                        int64_t a_cs, const float *b, int64_t b_rs, int64_t b_cs, float beta,
                        float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++) {
        float *cr = c + i * ldc;
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

void sgemm(tpool *pool, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t a_rs,
           int64_t a_cs, const float *b, int64_t b_rs, int64_t b_cs, float beta, float *c,
           int64_t ldc, float *work)
{
    if (m <= 0 || n <= 0) return;
    if (sgemm_is_small(m, n, k)) {
        sgemm_small(m, n, k, alpha, a, a_rs, a_cs, b, b_rs, b_cs, beta, c, ldc);
        return;
    }
    float *pa = work, *pb = work + sgemm_pa_floats(m, k);
    sgemm_pack_a(pool, m, k, a, a_rs, a_cs, pa);
    sgemm_view v = {b, b_rs, b_cs};
    sgemm_out o = {c, ldc, false, NULL};
    sgemm_packed(pool, m, n, k, alpha, pa, sgemm_pack_view, &v, beta, &o, pb);
}

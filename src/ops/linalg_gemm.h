/*
 * The float32 matrix multiply every heavy kernel rests on (MatMul, Gemm,
 * Conv through im2col, ConvTranspose through col2im):
 *
 *     C[m x n] = alpha * A[m x k] * B[k x n] + beta * C
 *
 * It follows the GotoBLAS/BLIS design. A is packed once into row panels of
 * SGEMM_MR rows, B into column panels of SGEMM_NR columns, both cut into
 * blocks of SGEMM_KC along k, so the micro-kernel reads both operands
 * sequentially. B is packed one "superblock" of columns at a time (sized to
 * stay in cache) through a callback, which lets Conv write its im2col matrix
 * straight into packed form without materialising it.
 *
 * Panels are 16 columns wide: one AVX-512 register, two AVX2 ones. Where
 * the CPU has them (checked at run time, core/cpu.h) FMA kernels take 1-4
 * panels per call for 8-16 independent accumulators; the portable kernels,
 * plain C that gcc -O3 turns into SSE2 mulps/addps with no shuffles, work
 * on half a panel (a 4x8 tile in 8 xmm registers). For the portable
 * kernel's A loads to be plain loads, packed A stores every element
 * SGEMM_LANES times (the vector kernels broadcast the first copy). Packing
 * and compute are each split over the thread pool. A last panel of fewer
 * than 4 rows (all of A at batch 1) runs kernels that compute only its real
 * rows.
 * The caller owns all memory: sgemm_pa_floats()/sgemm_pb_floats() size the
 * two packing buffers (kernels take them from op_scratch once per call and
 * reuse them across batch items and groups).
 */
#ifndef TERN_OPS_LINALG_GEMM_H
#define TERN_OPS_LINALG_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tpool.h"

#define SGEMM_MR 4
#define SGEMM_NR 16
#define SGEMM_KC 256
#define SGEMM_LANES 4 /* floats per SSE register */

/* Packs rows [k0, k0+kc) and columns [n0, n0+nc) of B into dst as
 * ceil(nc / SGEMM_NR) panels, panel p at dst + p*kc*SGEMM_NR holding element
 * (k, n0 + p*SGEMM_NR + j) at [k*SGEMM_NR + j]; columns past nc are zero.
 * n0 is a multiple of SGEMM_NR. Called concurrently on disjoint ranges. */
typedef void (*sgemm_pack_fn)(const void *ctx, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                              float *dst);

/* A plain matrix as B: element (k, n) at p[k*rs + n*cs]. */
typedef struct sgemm_view {
    const float *p;
    int64_t rs, cs;
} sgemm_view;
void sgemm_pack_view(const void *view, int64_t k0, int64_t kc, int64_t n0, int64_t nc, float *dst);

/* Buffer sizes, in floats, for packed A (all of it) and packed B (one
 * superblock). */
size_t sgemm_pa_floats(int64_t m, int64_t k);
size_t sgemm_pb_floats(int64_t n, int64_t k);

/* Packs A (element (i, k) at a[i*rs + k*cs]) into pa. */
void sgemm_pack_a(tpool *pool, int64_t m, int64_t k, const float *a, int64_t rs, int64_t cs,
                  float *pa);

/* Where C is stored: element (i, j) at c[i*ldc + j], or at c[j*ldc + i]
 * when trans (the caller then receives C^T). bias, if not NULL, is added to
 * each stored row: bias[i] without trans, bias[j] with it. */
typedef struct sgemm_out {
    float *c;
    int64_t ldc;
    bool trans;
    const float *bias;
} sgemm_out;

/* C = alpha * A * B + beta * C (+ bias) with A packed by sgemm_pack_a and B
 * supplied through pack_b; pb is the B buffer (sgemm_pb_floats(n, k)). With
 * beta == 0 C is only written (it may hold garbage). */
void sgemm_packed(tpool *pool, int64_t m, int64_t n, int64_t k, float alpha, const float *pa,
                  sgemm_pack_fn pack_b, const void *b_ctx, float beta, const sgemm_out *out,
                  float *pb);

/* B packed ahead of time, for a B that does not change between calls
 * (weights, packed when the model loads): all n columns in one superblock,
 * k-block k0 at pb + k0 * round_up(n, SGEMM_NR) and laid out as pack_b
 * writes it. Nothing in it depends on m. */
size_t sgemm_pb_all_floats(int64_t n, int64_t k);
void sgemm_pack_b_all(int64_t n, int64_t k, sgemm_pack_fn pack_b, const void *b_ctx, float *pb);

/* sgemm_packed with B already packed by sgemm_pack_b_all. */
void sgemm_prepacked(tpool *pool, int64_t m, int64_t n, int64_t k, float alpha, const float *pa,
                     const float *pb, float beta, const sgemm_out *out);

/* Below this many multiply-adds sgemm() runs a direct loop: it then needs
 * no workspace and may run on any thread with pool == NULL. */
#define SGEMM_SMALL_FLOPS (16 * 1024)
static inline int sgemm_is_small(int64_t m, int64_t n, int64_t k)
{
    return m * n * k <= SGEMM_SMALL_FLOPS || k == 0;
}

/* Workspace (floats) for sgemm(): packed A plus one B superblock, none
 * when m < SGEMM_MR (sgemm() then runs a direct loop). */
size_t sgemm_work_floats(int64_t m, int64_t n, int64_t k);

/* The whole operation on plain strided matrices: A (i, k) at a[i*a_rs + k*a_cs],
 * B (k, j) at b[k*b_rs + j*b_cs], C row-major with row stride ldc. Small
 * problems and m < SGEMM_MR run a direct loop (on the pool for the latter);
 * others pack into work (sgemm_work_floats). */
void sgemm(tpool *pool, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t a_rs,
           int64_t a_cs, const float *b, int64_t b_rs, int64_t b_cs, float beta, float *c,
           int64_t ldc, float *work);

#endif

/*
 * MT19937 (Matsumoto & Nishimura) as numpy's legacy RandomState uses it, so
 * that kernels seeded like `np.random.seed(s)` draw numpy's exact stream:
 * rng_double is numpy's 53-bit random_double, rng_gauss its legacy_gauss
 * (Marsaglia polar method). The state lives with the caller: kernels build
 * one per call, since they keep no global state.
 */
#ifndef TERN_CORE_RNG_H
#define TERN_CORE_RNG_H

#include <stdbool.h>
#include <stdint.h>

enum { MT_N = 624, MT_M = 397 };

typedef struct rng {
    uint32_t s[MT_N];
    int i;
    bool has_gauss; /* the polar method makes normals in pairs */
    double gauss;
} rng;

void rng_seed(rng *r, uint32_t seed);                         /* init_genrand */
void rng_seed_array(rng *r, const uint32_t *key, uint32_t n); /* init_by_array */
uint32_t rng_u32(rng *r);
double rng_double(rng *r); /* uniform on [0, 1) */
double rng_gauss(rng *r);  /* standard normal */

#endif

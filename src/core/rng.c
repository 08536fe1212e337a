/* MT19937 with numpy's seeding and sampling recipes, see rng.h. */
#include "core/rng.h"

#include <math.h>

void rng_seed(rng *r, uint32_t seed)
{
    r->s[0] = seed;
    for (uint32_t k = 1; k < MT_N; k++)
        r->s[k] = 1812433253u * (r->s[k - 1] ^ (r->s[k - 1] >> 30)) + k;
    r->i = MT_N;
    r->has_gauss = false;
}

void rng_seed_array(rng *r, const uint32_t *key, uint32_t n)
{
    rng_seed(r, 19650218u);
    uint32_t i = 1, j = 0;
    for (uint32_t k = MT_N > n ? MT_N : n; k; k--) {
        r->s[i] = (r->s[i] ^ ((r->s[i - 1] ^ (r->s[i - 1] >> 30)) * 1664525u)) + key[j] + j;
        i++, j++;
        if (i >= MT_N) r->s[0] = r->s[MT_N - 1], i = 1;
        if (j >= n) j = 0;
    }
    for (uint32_t k = MT_N - 1; k; k--) {
        r->s[i] = (r->s[i] ^ ((r->s[i - 1] ^ (r->s[i - 1] >> 30)) * 1566083941u)) - i;
        i++;
        if (i >= MT_N) r->s[0] = r->s[MT_N - 1], i = 1;
    }
    r->s[0] = 0x80000000u;
}

uint32_t rng_u32(rng *r)
{
    if (r->i >= MT_N) {
        for (int k = 0; k < MT_N; k++) {
            uint32_t y = (r->s[k] & 0x80000000u) | (r->s[(k + 1) % MT_N] & 0x7fffffffu);
            r->s[k] = r->s[(k + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        r->i = 0;
    }
    uint32_t y = r->s[r->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

/* Uniform on [0, 1) with 53 random bits (numpy's random_double). */
double rng_double(rng *r)
{
    uint32_t a = rng_u32(r) >> 5, b = rng_u32(r) >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
}

/* Standard normal, numpy's legacy_gauss (Marsaglia polar method). */
double rng_gauss(rng *r)
{
    if (r->has_gauss) {
        r->has_gauss = false;
        return r->gauss;
    }
    double x1, x2, r2;
    do {
        x1 = 2.0 * rng_double(r) - 1.0;
        x2 = 2.0 * rng_double(r) - 1.0;
        r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 == 0.0);
    double f = sqrt(-2.0 * log(r2) / r2);
    r->gauss = f * x1;
    r->has_gauss = true;
    return f * x2;
}

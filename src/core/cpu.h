/*
 * Which vector instruction set the hot loops use, chosen once at run time.
 *
 * tern is built for a plain x86-64 (SSE2); loops that gain from wider
 * vectors are compiled again for AVX2+FMA and for AVX-512 (F, BW, DQ, VL)
 * and dispatched on tern_isa(): the best level the CPU supports, lowered by
 * the environment variable TERN_ISA=generic|avx2|avx512 (tests run the same
 * inputs under each level and compare; a level the CPU lacks is capped to
 * what it has). On other architectures every level is the portable code.
 *
 * A multi-versioned function is written once, as an always_inline body, and
 * TERN_MULTI_VOID wraps it (the body is inlined into each target-specific
 * wrapper, so gcc vectorises it for that target):
 *     static TERN_INLINE void f_impl(const float *x, float *y, int64_t n) { ... }
 *     TERN_MULTI_VOID(f, (const float *x, float *y, int64_t n), (x, y, n))
 * defines static void f(const float *x, float *y, int64_t n).
 */
#ifndef TERN_CORE_CPU_H
#define TERN_CORE_CPU_H

enum { TERN_ISA_GENERIC = 0, TERN_ISA_AVX2 = 1, TERN_ISA_AVX512 = 2 };

/* The level in use (cached after the first call; thread-safe). */
int tern_isa(void);
/* "generic", "avx2" or "avx512". */
const char *tern_isa_name(int level);

#define TERN_INLINE inline __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__)
#define TERN_HAVE_X86_MULTI 1
#define TERN_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define TERN_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define TERN_MULTI_VOID(name, params, args)                                                        \
    static TERN_TARGET_AVX512 void name##_avx512 params                                            \
    {                                                                                              \
        name##_impl args;                                                                          \
    }                                                                                              \
    static TERN_TARGET_AVX2 void name##_avx2 params                                                \
    {                                                                                              \
        name##_impl args;                                                                          \
    }                                                                                              \
    static void name params                                                                        \
    {                                                                                              \
        switch (tern_isa()) {                                                                      \
        case TERN_ISA_AVX512: name##_avx512 args; return;                                          \
        case TERN_ISA_AVX2: name##_avx2 args; return;                                              \
        default: name##_impl args;                                                                 \
        }                                                                                          \
    }
/* The same without an AVX-512 version (AVX-512 CPUs run the AVX2 one), for
 * loops that measure slower with 512-bit vectors. */
#define TERN_MULTI_VOID_AVX2(name, params, args)                                                   \
    static TERN_TARGET_AVX2 void name##_avx2 params                                                \
    {                                                                                              \
        name##_impl args;                                                                          \
    }                                                                                              \
    static void name params                                                                        \
    {                                                                                              \
        if (tern_isa() >= TERN_ISA_AVX2)                                                           \
            name##_avx2 args;                                                                      \
        else                                                                                       \
            name##_impl args;                                                                      \
    }
#else
#define TERN_MULTI_VOID(name, params, args)                                                        \
    static void name params                                                                        \
    {                                                                                              \
        name##_impl args;                                                                          \
    }
#define TERN_MULTI_VOID_AVX2 TERN_MULTI_VOID
#endif

#endif

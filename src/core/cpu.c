/* Run-time choice of the vector instruction set, see cpu.h. */
#include "core/cpu.h"

#include <stdlib.h>
#include <string.h>

static int detect(void)
{
#ifdef TERN_HAVE_X86_MULTI
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return TERN_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return TERN_ISA_AVX2;
#endif
    return TERN_ISA_GENERIC;
}

int tern_isa(void)
{
    static int level = -1;
    int v = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (v >= 0) return v;
    v = detect();
    const char *e = getenv("TERN_ISA");
    if (e) {
        int want = strcmp(e, "generic") == 0 ? TERN_ISA_GENERIC
                   : strcmp(e, "avx2") == 0  ? TERN_ISA_AVX2
                                             : TERN_ISA_AVX512;
        if (want < v) v = want;
    }
    __atomic_store_n(&level, v, __ATOMIC_RELAXED);
    return v;
}

const char *tern_isa_name(int level)
{
    return level == TERN_ISA_AVX512 ? "avx512" : level == TERN_ISA_AVX2 ? "avx2" : "generic";
}

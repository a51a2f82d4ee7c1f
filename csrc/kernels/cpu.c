/* cpu.c: OpenMP thread count, runtime ISA detection and the kernel dispatch table. */
#include "moe.h"
#include "kernels.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int requested_threads = 0; /* 0: the OpenMP default */

int moe_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int moe_get_num_threads(void) {
#ifdef _OPENMP
    return requested_threads > 0 ? requested_threads : omp_get_max_threads();
#else
    return 1;
#endif
}

void moe_set_num_threads(int n) { requested_threads = n > 0 ? n : 0; }

int moe_cpu_has(const char *feature) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!strcmp(feature, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(feature, "f16c")) return __builtin_cpu_supports("f16c");
    if (!strcmp(feature, "fma")) return __builtin_cpu_supports("fma");
    if (!strcmp(feature, "avx512f")) return __builtin_cpu_supports("avx512f");
    if (!strcmp(feature, "avx512bw")) return __builtin_cpu_supports("avx512bw");
    if (!strcmp(feature, "avx512dq")) return __builtin_cpu_supports("avx512dq");
    if (!strcmp(feature, "avx512vl")) return __builtin_cpu_supports("avx512vl");
    if (!strcmp(feature, "avx512vnni")) return __builtin_cpu_supports("avx512vnni");
    if (!strcmp(feature, "avx512bf16")) return __builtin_cpu_supports("avx512bf16");
    if (!strcmp(feature, "avxvnni")) return __builtin_cpu_supports("avxvnni");
#else
    (void)feature;
#endif
    return 0;
}

moe_isa moe_detected_isa(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    /* the AVX-512 level includes VNNI (Ice Lake, Zen 4 and later); AVX-512 CPUs without it use AVX2 */
    if (moe_cpu_has("avx512f") && moe_cpu_has("avx512bw") && moe_cpu_has("avx512vl") && moe_cpu_has("avx512dq") &&
        moe_cpu_has("avx512vnni") && moe_cpu_has("avx2") && moe_cpu_has("f16c"))
        return MOE_ISA_AVX512;
    if (moe_cpu_has("avx2") && moe_cpu_has("f16c")) return MOE_ISA_AVX2;
#endif
    return MOE_ISA_SCALAR;
}

static moe_isa active = MOE_ISA_SCALAR;
static int active_set = 0;

static const moe_kernel_table *table_for(moe_isa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == MOE_ISA_AVX512) return &moe_kernels_avx512;
    if (isa == MOE_ISA_AVX2) return &moe_kernels_avx2;
#endif
    (void)isa;
    return &moe_kernels_scalar;
}

static void init_active(void) {
    if (active_set) return;
    active = moe_detected_isa();
    const char *env = getenv("MOEPY_ISA");
    if (env && *env) {
        moe_isa want = !strcmp(env, "scalar") ? MOE_ISA_SCALAR
                       : !strcmp(env, "avx2") ? MOE_ISA_AVX2
                       : !strcmp(env, "avx512") ? MOE_ISA_AVX512 : active;
        if (want <= active) active = want;
    }
    active_set = 1;
}

moe_isa moe_active_isa(void) { init_active(); return active; }

int moe_force_isa(moe_isa isa) {
    init_active();
    if (isa < MOE_ISA_SCALAR || isa > moe_detected_isa()) return -1;
    active = isa;
    return 0;
}

const char *moe_isa_name(moe_isa isa) {
    switch (isa) {
    case MOE_ISA_AVX512: return "avx512";
    case MOE_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}

const moe_kernel_table *moe_kernels(void) { return table_for(moe_active_isa()); }

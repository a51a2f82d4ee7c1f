/* cpu.c: OpenMP thread count, runtime ISA detection and the kernel dispatch table.
 *
 * The active table is read by OpenMP threads and by Python threads that run without the GIL while
 * another thread may call moe_force_isa: it is one atomic pointer to a constant table (stored with
 * release, loaded with acquire), so a reader sees the old table or the new one, never a mix. Each
 * entry point loads it once (moe_kernels()) and uses that table throughout its call.
 *
 * A process forked from one that has run OpenMP regions cannot use OpenMP's thread pool (the pool's threads
 * do not exist in the child: GNU libgomp waits for them forever). A fork handler marks the child, and
 * moe_get_num_threads() is 1 there, so kernels run on the calling thread: multiprocessing's "fork" workers
 * work (serially); "spawn" / "forkserver" workers get a fresh runtime and all threads. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* syscall() (arch_prctl for the AMX tile state) */
#include "moe.h"
#include "kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static atomic_int requested_threads = 0; /* 0: the OpenMP default */
static atomic_int in_forked_child = 0;    /* 1 in a child forked after this library was loaded */

static void mark_forked_child(void) { atomic_store_explicit(&in_forked_child, 1, memory_order_relaxed); }

__attribute__((constructor)) static void register_fork_handler(void) { pthread_atfork(NULL, NULL, mark_forked_child); }

int moe_in_forked_child(void) { return atomic_load_explicit(&in_forked_child, memory_order_relaxed); }

int moe_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int moe_get_num_threads(void) {
#ifdef _OPENMP
    if (moe_in_forked_child()) return 1; /* see the file comment */
    const int n = atomic_load_explicit(&requested_threads, memory_order_relaxed);
    return n > 0 ? n : omp_get_max_threads();
#else
    return 1;
#endif
}

void moe_set_num_threads(int n) { atomic_store_explicit(&requested_threads, n > 0 ? n : 0, memory_order_relaxed); }

/* 1 if AMX-TILE and AMX-INT8 can run here: CPUID says so, the OS enables the tile state in XCR0 (bits 17, 18), and
 * Linux grants this process the tile data (arch_prctl ARCH_REQ_XCOMP_PERM, once; some hypervisors list AMX in
 * CPUID without the state, and a tile instruction there raises SIGILL) */
static int amx_usable(void) {
    static atomic_int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v >= 0) return v;
    v = 0;
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c >> 27 & 1) && __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
        (d >> 24 & 1) && (d >> 25 & 1)) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        if ((lo >> 17 & 3) == 3 && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0)
            v = 1;
    }
#endif
    atomic_store_explicit(&cached, v, memory_order_relaxed);
    return v;
}

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
    if (!strcmp(feature, "amx")) return amx_usable();
#else
    (void)feature;
#endif
    return 0;
}

/* see moe.h: AMD (Zen 4 measured, 2026-12-04) streams one-token INT weights faster with non-temporal prefetches (whole
 * OLMoE-L2 int4 decode 5.6 -> 4.9 ms a step, 6 rounds); Intel (Sapphire Rapids, 2026-12-03) half as fast with them */
int moe_weight_prefetch_nta(void) {
    static atomic_int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v >= 0) return v;
    v = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) v = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u; /* AuthenticAMD */
#endif
    const char *env = getenv("MOEPY_WEIGHT_PREFETCH"); /* "nta" or "l2" overrides the vendor's default */
    if (env && !strcmp(env, "nta")) v = 1;
    if (env && !strcmp(env, "l2")) v = 0;
    atomic_store_explicit(&cached, v, memory_order_relaxed);
    return v;
}

moe_isa moe_detected_isa(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    /* the AVX-512 level includes VNNI (Ice Lake, Zen 4 and later); AVX-512 CPUs without it use AVX2 */
    if (moe_cpu_has("avx512f") && moe_cpu_has("avx512bw") && moe_cpu_has("avx512vl") && moe_cpu_has("avx512dq") &&
        moe_cpu_has("avx512vnni") && moe_cpu_has("avx2") && moe_cpu_has("f16c")) {
        if (!moe_cpu_has("avx512bf16")) return MOE_ISA_AVX512;
        return amx_usable() ? MOE_ISA_AMX : MOE_ISA_AVX512BF16;
    }
    if (moe_cpu_has("avx2") && moe_cpu_has("f16c")) return MOE_ISA_AVX2;
#endif
    return MOE_ISA_SCALAR;
}

static const moe_kernel_table *table_for(moe_isa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == MOE_ISA_AMX) return &moe_kernels_amx;
    if (isa == MOE_ISA_AVX512BF16) return &moe_kernels_avx512bf16;
    if (isa == MOE_ISA_AVX512) return &moe_kernels_avx512;
    if (isa == MOE_ISA_AVX2) return &moe_kernels_avx2;
#endif
    (void)isa;
    return &moe_kernels_scalar;
}

static moe_isa isa_of(const moe_kernel_table *t) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (t == &moe_kernels_amx) return MOE_ISA_AMX;
    if (t == &moe_kernels_avx512bf16) return MOE_ISA_AVX512BF16;
    if (t == &moe_kernels_avx512) return MOE_ISA_AVX512;
    if (t == &moe_kernels_avx2) return MOE_ISA_AVX2;
#endif
    (void)t;
    return MOE_ISA_SCALAR;
}

/* NULL until first use: then the detected ISA, lowered by MOEPY_ISA if set */
static _Atomic(const moe_kernel_table *) active = NULL;

static const moe_kernel_table *initial_table(void) {
    moe_isa isa = moe_detected_isa();
    const char *env = getenv("MOEPY_ISA");
    if (env && *env) {
        const moe_isa want = !strcmp(env, "scalar") ? MOE_ISA_SCALAR
                             : !strcmp(env, "avx2") ? MOE_ISA_AVX2
                             : !strcmp(env, "avx512") ? MOE_ISA_AVX512
                             : !strcmp(env, "avx512bf16") ? MOE_ISA_AVX512BF16
                             : !strcmp(env, "amx") ? MOE_ISA_AMX : isa;
        if (want <= isa) isa = want;
    }
    return table_for(isa);
}

const moe_kernel_table *moe_kernels(void) {
    const moe_kernel_table *t = atomic_load_explicit(&active, memory_order_acquire);
    if (t) return t;
    const moe_kernel_table *init = initial_table(), *expected = NULL;
    /* first use: publish the initial table unless another thread (or moe_force_isa) got there first */
    if (atomic_compare_exchange_strong_explicit(&active, &expected, init, memory_order_acq_rel,
                                                memory_order_acquire))
        return init;
    return expected;
}

moe_isa moe_active_isa(void) { return isa_of(moe_kernels()); }

int moe_force_isa(moe_isa isa) {
    if (isa < MOE_ISA_SCALAR || isa > moe_detected_isa()) return -1;
    atomic_store_explicit(&active, table_for(isa), memory_order_release);
    return 0;
}

const char *moe_isa_name(moe_isa isa) {
    switch (isa) {
    case MOE_ISA_AMX: return "amx";
    case MOE_ISA_AVX512BF16: return "avx512bf16";
    case MOE_ISA_AVX512: return "avx512";
    case MOE_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}

/* ---------------------------------------------------------------- activation precision (moe.h) */
static atomic_int precision_mode = MOE_PREC_FP32;
static _Atomic int64_t precision_min_rows = 16;

int moe_set_activation_precision(int32_t mode, int64_t min_rows) {
    if (mode < MOE_PREC_FP32 || mode > MOE_PREC_AUTO || min_rows < 1) return -1;
    atomic_store_explicit(&precision_min_rows, min_rows, memory_order_relaxed);
    atomic_store_explicit(&precision_mode, mode, memory_order_relaxed);
    return 0;
}

int32_t moe_get_activation_precision(int64_t *min_rows) {
    if (min_rows) *min_rows = atomic_load_explicit(&precision_min_rows, memory_order_relaxed);
    return atomic_load_explicit(&precision_mode, memory_order_relaxed);
}

/* isa_avx2.c: simd_kernels.inc for AVX2 + FMA, chosen at run time by cpu.c. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#define MOE_SUFFIX(name) name##_avx2
#define MOE_ISA_NAME "avx2"
#define MOE_HAVE_AVX2 1
#include "simd_kernels.inc"
#else
typedef int moe_isa_avx2_unused;
#endif

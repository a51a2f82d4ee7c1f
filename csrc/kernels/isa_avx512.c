/* isa_avx512.c: simd_kernels.inc for AVX-512 (F, BW, VL, DQ, VNNI), chosen at run time by cpu.c. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#define MOE_SUFFIX(name) name##_avx512
#define MOE_ISA_NAME "avx512"
#define MOE_HAVE_AVX2 1
#define MOE_HAVE_AVX512 1
#include "simd_kernels.inc"
#else
typedef int moe_isa_avx512_unused;
#endif

/* isa_avx512bf16.c: simd_kernels.inc for AVX-512 with AVX512-BF16 (vdpbf16ps for the bf16-activation kernels;
 * every other kernel is the AVX-512 one), chosen at run time by cpu.c. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16")
#define MOE_SUFFIX(name) name##_avx512bf16
#define MOE_ISA_NAME "avx512bf16"
#define MOE_HAVE_AVX2 1
#define MOE_HAVE_AVX512 1
#define MOE_HAVE_AVX512BF16 1
#include "simd_kernels.inc"
#else
typedef int moe_isa_avx512bf16_unused;
#endif

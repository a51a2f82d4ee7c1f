/* isa_amx.c: simd_kernels.inc for AVX-512 with AVX512-BF16 and AMX-INT8 (Sapphire Rapids and later): the INT
 * kernels' integer dots of 32 or 16 rows at a time go through AMX tiles (qtile_amx.inc; exact int32, so the same
 * results as the VNNI dots), every other kernel is the AVX512-BF16 one. Chosen at run time by cpu.c when the CPU has AMX and
 * the OS grants this process the tile state. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,amx-tile,amx-int8")
#define MOE_SUFFIX(name) name##_amx
#define MOE_ISA_NAME "amx"
#define MOE_HAVE_AVX2 1
#define MOE_HAVE_AVX512 1
#define MOE_HAVE_AVX512BF16 1
#define MOE_HAVE_AMX 1
#include "simd_kernels.inc"
#else
typedef int moe_isa_amx_unused;
#endif

/* isa_scalar.c: the portable build of simd_kernels.inc (any CPU). */
#define MOE_SUFFIX(name) name##_scalar
#define MOE_ISA_NAME "scalar"
#include "simd_kernels.inc"

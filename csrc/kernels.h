/* kernels.h: internal ISA-specific kernels, one table per instruction set.
 * simd_kernels.inc is compiled once per ISA (isa_scalar.c, isa_avx2.c, isa_avx512.c); cpu.c picks
 * the table at run time. Within one ISA every kernel's arithmetic order is fixed, so results do not
 * depend on the thread count. */
#ifndef MOEPY_KERNELS_H
#define MOEPY_KERNELS_H

#include <stdint.h>

typedef struct {
    const char *name;
    /* out (n) = exp(x - shift); returns the sum of out in a fixed lane order */
    float (*exp_shift_sum)(float *out, const float *x, int64_t n, float shift);
    /* out (n) = 1 / (1 + exp(-x)) */
    void (*sigmoid)(float *out, const float *x, int64_t n);
} moe_kernel_table;

extern const moe_kernel_table moe_kernels_scalar;
#if defined(__x86_64__) && defined(__GNUC__)
extern const moe_kernel_table moe_kernels_avx2;
extern const moe_kernel_table moe_kernels_avx512;
#endif

const moe_kernel_table *moe_kernels(void);

#endif

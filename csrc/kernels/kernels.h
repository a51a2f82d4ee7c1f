/* kernels.h: internal ISA-specific kernels, one table per instruction set.
 * simd_kernels.inc is compiled once per ISA (isa_scalar.c, isa_avx2.c, isa_avx512.c); cpu.c picks
 * the table at run time. Every kernel's arithmetic order is fixed and the same on every ISA, so
 * results depend neither on the thread count nor on the ISA. */
#ifndef MOEPY_KERNELS_H
#define MOEPY_KERNELS_H

#include <stdint.h>
#include "moe.h"

/* Every ISA computes the same bits: a * b + c is two roundings unless written as fmaf or an FMA
 * intrinsic, so the compiler must not fuse on its own. GCC fuses only in GNU modes (-std=gnu11
 * means -ffp-contract=fast; the build uses -std=c11); clang fuses within expressions by default,
 * which the pragma turns off. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#if defined(__GNUC__) && !defined(__clang__) && !defined(__STRICT_ANSI__) && !defined(MOE_FP_CONTRACT_OFF)
#error "build with -std=c11 (or -ffp-contract=off -DMOE_FP_CONTRACT_OFF): GNU modes let GCC fuse a * b + c per ISA"
#endif

typedef struct {
    const char *name;
    /* out (R, n) = row softmax of x (R, n); every row must have a finite maximum */
    void (*softmax_rows)(float *out, const float *x, int64_t R, int64_t n);
    /* out (n) = 1 / (1 + exp(-x)) */
    void (*sigmoid)(float *out, const float *x, int64_t n);
    /* weights, experts, scores: rows [t0, t1) of moe_route(); returns the first NaN row or INT64_MAX */
    int64_t (*route_rows)(float *weights, int32_t *experts, float *scores, const float *logits, const float *bias,
                          int64_t t0, int64_t t1, int64_t E, const moe_route_params *p, float *fscratch,
                          int64_t *iscratch);
    /* values, indices: rows [r0, r1) of moe_topk(); returns the first NaN row or INT64_MAX */
    int64_t (*topk_rows)(float *values, int64_t *indices, const float *x, int64_t r0, int64_t r1, int64_t M,
                         int64_t K);
    /* grouped FFN blocks (ffn_kernels.inc): see ffn_in_block / ffn_out_block there (xb / hb: bf16 rows or NULL) */
    void (*ffn_in_block)(float *h, int64_t ldh, const float *x, const uint16_t *xb, int64_t ldx, int64_t rows,
                         const void *w_in,
                         int64_t H, int64_t Ip, int64_t p0, int64_t p1, int32_t dtype, int32_t gated,
                         const float *b_in, int32_t act, float alpha, float limit);
    void (*ffn_out_block)(float *y, int64_t ldy, const float *h, const uint16_t *hb, int64_t ldh, int64_t rows,
                          const void *w_out,
                          int64_t Ip, int64_t p0, int64_t p1, int32_t dtype, const float *b_out);
    /* quantised path (qkernels.inc) */
    void (*quantize_rows)(int8_t *xq, float *sx, int32_t *sums, const float *x, int64_t ldx, int64_t rows,
                          int64_t K, int64_t G);
    void (*qffn_in_block)(float *h, int64_t ldh, const int8_t *xq, const float *sx, const int32_t *sums,
                          int64_t ldq, int64_t rows, const uint8_t *w_in, int64_t H, int64_t Ip, int64_t p0,
                          int64_t p1, int32_t fmt, int64_t G, int32_t gated, const float *b_in, int32_t act,
                          float alpha, float limit);
    void (*qffn_out_block)(float *y, int64_t ldy, const int8_t *hq, const float *sx, const int32_t *sums,
                           int64_t ldq, int64_t rows, const uint8_t *w_out, int64_t inter, int64_t p0, int64_t p1,
                           int32_t fmt, int64_t G, const float *b_out);
    /* attention rows (attention_kernels.inc): see attn_rows there; scratch per call: qp MOE_ATTN_RB * Dp floats,
     * s MOE_ATTN_RB * S floats, idx 2 * S int64 */
    void (*attn_rows)(float *out, const float *q, int64_t ldq, int64_t R, const float *k, int64_t ldk,
                      const float *v, int64_t ldv, const uint8_t *allowed, int64_t ldm, int64_t S, int64_t D,
                      int64_t Dv, float scale, const float *sink, float *qp, float *s, int64_t *idx);
} moe_kernel_table;
#define MOE_ATTN_RB 4 /* query rows the AVX-512 attention scores together */

extern const moe_kernel_table moe_kernels_scalar;
#if defined(__x86_64__) && defined(__GNUC__)
extern const moe_kernel_table moe_kernels_avx2;
extern const moe_kernel_table moe_kernels_avx512;
extern const moe_kernel_table moe_kernels_avx512bf16;
extern const moe_kernel_table moe_kernels_amx;
#endif

const moe_kernel_table *moe_kernels(void);

#endif

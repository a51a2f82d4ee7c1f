/* quant.h: quantized expert weight formats (one place; sizes asserted).
 *
 * A weight matrix W (N outputs, K inputs) is cut into panels of 16 output columns and groups of G
 * consecutive inputs (G = 32, 64 or 128 dividing K). Each (panel, group) is one block:
 *   scale[16]  fp16   per-column scale s
 *   bias[16]   fp16   per-column offset m (asymmetric INT4 only)
 *   q[...]            unsigned codes u, in "quads": 4 consecutive inputs of each of the 16 columns
 *                     (64 bytes per quad for INT8; INT4 packs quad 2j in the low and quad 2j+1 in
 *                     the high nibbles of one 64-byte chunk)
 * Dequantised weight: w = s * (u - z) with z = 128 (INT8, u = q + 128, q in [-127, 127]) or
 * z = 8 (INT4, q in [-8, 7]); asymmetric INT4: w = s * u + m, u in [0, 15]; non-uniform INT4 (int4_nl,
 * the blocks of INT4): w = s * L[u], L the 16 levels of llama.cpp's IQ4_NL (moe_nl_levels), which the
 * dots read as u' = L[u] + 128 with z = 128 (one byte shuffle per 64 codes).
 * This layout serves the VNNI dot (vpdpbusd: 4 u8 x s8 products per 32-bit lane, one lane per
 * output column) directly, and AVX2 / scalar equally.
 *
 * Activations are quantised per token and per group: xq = rint(x / sx), sx = max|x| / 127, with the
 * group sum of xq kept for the zero-point term:
 *   sum_k x_k w_k  ~=  sum_g sx_g (s (D_g - z S_g))      D_g = sum u xq, S_g = sum xq
 *                       sum_g sx_g (s D_g + m S_g)       (asymmetric)
 */
#ifndef MOEPY_QUANT_H
#define MOEPY_QUANT_H

#include <stdint.h>

#include "moe.h" /* moe_qformat */

/* the nine block types: 16 columns x G inputs (int4_nl uses the INT4 blocks) */
typedef struct { uint16_t scale[16]; uint8_t q[32 * 16]; } moe_block_q8_g32;
typedef struct { uint16_t scale[16]; uint8_t q[64 * 16]; } moe_block_q8_g64;
typedef struct { uint16_t scale[16]; uint8_t q[128 * 16]; } moe_block_q8_g128;
typedef struct { uint16_t scale[16]; uint8_t q[32 * 8]; } moe_block_q4_g32;
typedef struct { uint16_t scale[16]; uint8_t q[64 * 8]; } moe_block_q4_g64;
typedef struct { uint16_t scale[16]; uint8_t q[128 * 8]; } moe_block_q4_g128;
typedef struct { uint16_t scale[16]; uint16_t bias[16]; uint8_t q[32 * 8]; } moe_block_q4a_g32;
typedef struct { uint16_t scale[16]; uint16_t bias[16]; uint8_t q[64 * 8]; } moe_block_q4a_g64;
typedef struct { uint16_t scale[16]; uint16_t bias[16]; uint8_t q[128 * 8]; } moe_block_q4a_g128;

_Static_assert(sizeof(moe_block_q8_g32) == 32 + 512, "q8 g32 block: 8.5 bits per weight");
_Static_assert(sizeof(moe_block_q8_g64) == 32 + 1024, "q8 g64 block");
_Static_assert(sizeof(moe_block_q8_g128) == 32 + 2048, "q8 g128 block");
_Static_assert(sizeof(moe_block_q4_g32) == 32 + 256, "q4 g32 block: 4.5 bits per weight");
_Static_assert(sizeof(moe_block_q4_g64) == 32 + 512, "q4 g64 block");
_Static_assert(sizeof(moe_block_q4_g128) == 32 + 1024, "q4 g128 block");
_Static_assert(sizeof(moe_block_q4a_g32) == 64 + 256, "q4 asym g32 block: 5 bits per weight");
_Static_assert(sizeof(moe_block_q4a_g64) == 64 + 512, "q4 asym g64 block");
_Static_assert(sizeof(moe_block_q4a_g128) == 64 + 1024, "q4 asym g128 block");

#include <stddef.h>

/* int4_nl: the 16 levels of a code (llama.cpp's IQ4_NL values, so its GGUF blocks are read bit for bit),
 * denser near zero where trained weights are; the midpoints between neighbours decide the nearest level */
static const int8_t moe_nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* z of the dots' epilogue s * (D - z S): the code that stands for 0 (int4_nl: level + 128 as the dots read it) */
static inline int32_t moe_qzero(int32_t fmt) {
    return fmt == MOE_Q_INT8 || fmt == MOE_Q_INT4_NL ? 128 : (fmt == MOE_Q_INT4 ? 8 : 0);
}

static inline int moe_qgroup_ok(int64_t G) { return G == 32 || G == 64 || G == 128; }

/* The geometry of every format is read from the structs above (the one source): header bytes
 * before the codes, and bytes of one (16 columns x G inputs) block; -1 for an unknown format or G. */
static inline int64_t moe_qblock_header_bytes(int32_t fmt) {
    switch (fmt) {
    case MOE_Q_INT8: return (int64_t)offsetof(moe_block_q8_g32, q);
    case MOE_Q_INT4:
    case MOE_Q_INT4_NL: return (int64_t)offsetof(moe_block_q4_g32, q);
    case MOE_Q_INT4_ASYM: return (int64_t)offsetof(moe_block_q4a_g32, q);
    default: return -1;
    }
}

static inline int64_t moe_qblock_bytes(int32_t fmt, int64_t G) {
#define MOE_QB_(f, tag) ((f) == MOE_Q_INT8 ? (int64_t)sizeof(moe_block_q8_##tag) \
                         : (f) == MOE_Q_INT4_ASYM ? (int64_t)sizeof(moe_block_q4a_##tag) : (int64_t)sizeof(moe_block_q4_##tag))
    if (fmt < MOE_Q_INT8 || fmt > MOE_Q_LAST) return -1;
    switch (G) {
    case 32: return MOE_QB_(fmt, g32);
    case 64: return MOE_QB_(fmt, g64);
    case 128: return MOE_QB_(fmt, g128);
    default: return -1;
    }
#undef MOE_QB_
}

_Static_assert(offsetof(moe_block_q8_g128, q) == 32 && offsetof(moe_block_q4_g128, q) == 32 &&
                   offsetof(moe_block_q4a_g128, q) == 64 && offsetof(moe_block_q4a_g32, bias) == 32,
               "the header of a block does not depend on G");

/* fp16 <-> fp32, exact round to nearest even (portable; the kernels use F16C where present) */
static inline float moe_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            uint32_t m = man;
            do { e++; m <<= 1; } while (!(m & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((m & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t moe_f32_to_f16(float f) {
    uint32_t x;
    __builtin_memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return (uint16_t)(sign | 0x7C00 | (ax > 0x7F800000u ? 0x200 : 0)); /* inf / nan */
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00);                                  /* overflow */
    if (ax < 0x38800000u) {                                                                     /* subnormal */
        if (ax < 0x33000000u) return (uint16_t)sign;
        const uint32_t e = ax >> 23, m = (ax & 0x7FFFFF) | 0x800000;
        const uint32_t shift = 126 - e; /* 14 .. 24 */
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((ax >> 23) - 112) << 10 | ((ax >> 13) & 0x3FF);
    const uint32_t rem = ax & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

#endif

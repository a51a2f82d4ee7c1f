/* vec_avx512.h: the FFN tile's 16-lane vector on one zmm register (AVX-512 build).
 * vf is 16 float lanes; FFN_MR the rows of a register tile (ffn_kernels.inc). */
#include <immintrin.h>
typedef struct { __m512 v; } vf;
static inline vf vf_zero(void) { return (vf){_mm512_setzero_ps()}; }
static inline vf vf_load(const float *p) { return (vf){_mm512_loadu_ps(p)}; }
static inline vf vf_load_bf16(const uint16_t *p) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return (vf){_mm512_castsi512_ps(_mm512_slli_epi32(w, 16))};
}
static inline vf vf_bcast(float f) { return (vf){_mm512_set1_ps(f)}; }
static inline vf vf_fma(vf a, vf b, vf c) { return (vf){_mm512_fmadd_ps(a.v, b.v, c.v)}; }
static inline void vf_store(float *p, vf a) { _mm512_storeu_ps(p, a.v); }

/* bf16 pair products (the bf16-activation kernels, ffn_kernels.inc): vw is 16 columns x 2 inputs of bf16 weights
 * (pair-interleaved: column c's inputs k, k + 1 at 2c, 2c + 1), vx one activation pair broadcast; vf_dp adds the
 * odd input's products, then the even one's, each sum rounded with subnormal results flushed to zero and subnormal
 * inputs read as zero: vdpbf16ps, or its emulation with two FMAs (each product of two bf16 is exact in float) */
#if defined(MOE_HAVE_AVX512BF16)
typedef struct { __m512i v; } vw;
typedef struct { __m512i v; } vx;
static inline vw vw_load(const uint16_t *p) { return (vw){_mm512_loadu_si512(p)}; }
static inline vx vx_bcast(const uint16_t *x) {
    uint32_t u;
    memcpy(&u, x, 4);
    return (vx){_mm512_set1_epi32((int)u)};
}
static inline vf vf_dp(vf acc, vx x, vw w) { return (vf){_mm512_dpbf16_ps(acc.v, (__m512bh)x.v, (__m512bh)w.v)}; }
#else
typedef struct { __m512 e, o; } vw;
typedef struct { __m512 e, o; } vx;
/* lanes with a zero exponent (zero, subnormal) to a zero of their sign */
static inline __m512i flush512(__m512i v) {
    const __mmask16 normal = _mm512_test_epi32_mask(v, _mm512_set1_epi32(0x7F800000));
    return _mm512_mask_blend_epi32(normal, _mm512_and_si512(v, _mm512_set1_epi32((int)0x80000000u)), v);
}
static inline vw vw_load(const uint16_t *p) {
    const __m512i w = _mm512_loadu_si512(p);
    return (vw){_mm512_castsi512_ps(flush512(_mm512_slli_epi32(w, 16))),
                _mm512_castsi512_ps(flush512(_mm512_and_si512(w, _mm512_set1_epi32((int)0xFFFF0000u))))};
}
static inline vx vx_bcast(const uint16_t *x) {
    const uint32_t e = (uint32_t)x[0] << 16, o = (uint32_t)x[1] << 16;
    return (vx){_mm512_castsi512_ps(flush512(_mm512_set1_epi32((int)e))),
                _mm512_castsi512_ps(flush512(_mm512_set1_epi32((int)o)))};
}
static inline vf vf_dp(vf acc, vx x, vw w) {
    __m512 a = _mm512_fmadd_ps(x.o, w.o, acc.v);
    a = _mm512_castsi512_ps(flush512(_mm512_castps_si512(a)));
    a = _mm512_fmadd_ps(x.e, w.e, a);
    return (vf){_mm512_castsi512_ps(flush512(_mm512_castps_si512(a)))};
}
#endif
#define FFN_MR 6
#define FFN_NB 4

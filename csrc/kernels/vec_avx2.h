/* vec_avx2.h: the FFN tile's 16-lane vector on two ymm registers (AVX2 build).
 * vf is 16 float lanes; FFN_MR the rows of a register tile (ffn_kernels.inc). */
#include <immintrin.h>
typedef struct { __m256 lo, hi; } vf;
static inline vf vf_zero(void) { return (vf){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
static inline vf vf_load(const float *p) { return (vf){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
static inline vf vf_load_bf16(const uint16_t *p) {
    __m256i lo = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    __m256i hi = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 8)));
    return (vf){_mm256_castsi256_ps(_mm256_slli_epi32(lo, 16)), _mm256_castsi256_ps(_mm256_slli_epi32(hi, 16))};
}
static inline vf vf_bcast(float f) { return (vf){_mm256_set1_ps(f), _mm256_set1_ps(f)}; }
static inline vf vf_fma(vf a, vf b, vf c) {
    return (vf){_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
static inline void vf_store(float *p, vf a) { _mm256_storeu_ps(p, a.lo); _mm256_storeu_ps(p + 8, a.hi); }
#define FFN_MR 4

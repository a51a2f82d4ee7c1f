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

/* bf16 pair products (see vec_avx512.h): vdpbf16ps emulated with two FMAs per pair */
typedef struct { vf e, o; } vw;
typedef struct { vf e, o; } vx;
static inline __m256i flush256(__m256i v) { /* lanes with a zero exponent to a zero of their sign */
    const __m256i sub = _mm256_cmpeq_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0x7F800000)), _mm256_setzero_si256());
    return _mm256_blendv_epi8(v, _mm256_and_si256(v, _mm256_set1_epi32((int)0x80000000u)), sub);
}
static inline __m256 pair_even(__m256i w) { return _mm256_castsi256_ps(flush256(_mm256_slli_epi32(w, 16))); }
static inline __m256 pair_odd(__m256i w) {
    return _mm256_castsi256_ps(flush256(_mm256_and_si256(w, _mm256_set1_epi32((int)0xFFFF0000u))));
}
static inline vw vw_load(const uint16_t *p) {
    const __m256i lo = _mm256_loadu_si256((const __m256i *)p), hi = _mm256_loadu_si256((const __m256i *)(p + 16));
    return (vw){{pair_even(lo), pair_even(hi)}, {pair_odd(lo), pair_odd(hi)}};
}
static inline vx vx_bcast(const uint16_t *x) {
    const __m256 e = _mm256_castsi256_ps(flush256(_mm256_set1_epi32((int)((uint32_t)x[0] << 16))));
    const __m256 o = _mm256_castsi256_ps(flush256(_mm256_set1_epi32((int)((uint32_t)x[1] << 16))));
    return (vx){{e, e}, {o, o}};
}
static inline __m256 fma_flush(__m256 a, __m256 b, __m256 c) {
    return _mm256_castsi256_ps(flush256(_mm256_castps_si256(_mm256_fmadd_ps(a, b, c))));
}
static inline vf vf_dp(vf acc, vx x, vw w) {
    const __m256 lo = fma_flush(x.e.lo, w.e.lo, fma_flush(x.o.lo, w.o.lo, acc.lo));
    const __m256 hi = fma_flush(x.e.hi, w.e.hi, fma_flush(x.o.hi, w.o.hi, acc.hi));
    return (vf){lo, hi};
}
#define FFN_MR 4

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
#define FFN_MR 6
#define FFN_NB 4

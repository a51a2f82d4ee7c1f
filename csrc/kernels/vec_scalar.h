/* vec_scalar.h: the FFN tile's 16-lane vector as a plain array (portable build), with
 * the vector builds' arithmetic: one fmaf per lane where they use FMA.
 * vf is 16 float lanes; FFN_MR the rows of a register tile (ffn_kernels.inc). */
typedef struct { float v[16]; } vf;
static inline vf vf_zero(void) { vf r; for (int i = 0; i < 16; i++) r.v[i] = 0.0f; return r; }
static inline vf vf_load(const float *p) { vf r; for (int i = 0; i < 16; i++) r.v[i] = p[i]; return r; }
static inline vf vf_load_bf16(const uint16_t *p) {
    vf r;
    for (int i = 0; i < 16; i++) { uint32_t b = (uint32_t)p[i] << 16; memcpy(&r.v[i], &b, 4); }
    return r;
}
static inline vf vf_bcast(float f) { vf r; for (int i = 0; i < 16; i++) r.v[i] = f; return r; }
/* fmaf: one rounding per lane as _mm512_fmadd_ps / _mm256_fmadd_ps, so every ISA computes the same
 * bits (an instruction where the target has FMA, else libm's call; glibc picks the FMA unit at run
 * time when the CPU has one) */
static inline vf vf_fma(vf a, vf b, vf c) { vf r; for (int i = 0; i < 16; i++) r.v[i] = fmaf(a.v[i], b.v[i], c.v[i]); return r; }
static inline void vf_store(float *p, vf a) { for (int i = 0; i < 16; i++) p[i] = a.v[i]; }
#define FFN_MR 4

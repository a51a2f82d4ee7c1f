/* vec_scalar.h: the FFN tile's 16-lane vector as a plain array (portable build), with the vector
 * builds' arithmetic: a fused multiply-add (one rounding) per lane where they use FMA.
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
/* one rounding per lane, as _mm512_fmadd_ps / _mm256_fmadd_ps: every ISA computes the same bits */
#if defined(FP_FAST_FMAF)
static inline vf vf_fma(vf a, vf b, vf c) { vf r; for (int i = 0; i < 16; i++) r.v[i] = fmaf(a.v[i], b.v[i], c.v[i]); return r; }
#else
/* Without an FMA instruction libm's fmaf is a call (glibc: software on CPUs without FMA). Instead:
 * a * b is exact in double and s = a * b + c rounds once there; rounding s to float gives fmaf's
 * result unless s is exactly halfway between two floats (its 29 bits below float precision read
 * 1000...0; the exact sum may lie on the other side) or in the float subnormal range (a coarser
 * grid). A vector holding such a lane (rare) is redone with fmaf. Checked against fmaf on 4.8e9
 * lanes (random bits, cancellation, constructed ties, subnormal results). */
static inline vf vf_fma(vf a, vf b, vf c) {
    vf r;
    int rare = 0;
    for (int i = 0; i < 16; i++) {
        const double s = (double)a.v[i] * (double)b.v[i] + (double)c.v[i];
        uint64_t u;
        memcpy(&u, &s, 8);
        r.v[i] = (float)s;
        rare |= ((u & 0x1FFFFFFFu) == 0x10000000u) | ((s != 0.0) & (fabs(s) < 0x1p-126));
    }
    if (__builtin_expect(rare, 0))
        for (int i = 0; i < 16; i++) r.v[i] = fmaf(a.v[i], b.v[i], c.v[i]);
    return r;
}
#endif
static inline void vf_store(float *p, vf a) { for (int i = 0; i < 16; i++) p[i] = a.v[i]; }

/* bf16 pair products (see vec_avx512.h): vdpbf16ps emulated with two fused multiply-adds per pair */
typedef struct { vf e, o; } vw;
typedef struct { vf e, o; } vx;
static inline float flush_bits(uint32_t b) { /* a zero exponent to a zero of its sign */
    if (!(b & 0x7F800000u)) b &= 0x80000000u;
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static inline vw vw_load(const uint16_t *p) {
    vw r;
    for (int i = 0; i < 16; i++) {
        r.e.v[i] = flush_bits((uint32_t)p[2 * i] << 16);
        r.o.v[i] = flush_bits((uint32_t)p[2 * i + 1] << 16);
    }
    return r;
}
static inline vx vx_bcast(const uint16_t *x) {
    return (vx){vf_bcast(flush_bits((uint32_t)x[0] << 16)), vf_bcast(flush_bits((uint32_t)x[1] << 16))};
}
static inline vf vf_flush(vf a) {
    for (int i = 0; i < 16; i++) {
        uint32_t b;
        memcpy(&b, &a.v[i], 4);
        a.v[i] = flush_bits(b);
    }
    return a;
}
static inline vf vf_dp(vf acc, vx x, vw w) { return vf_flush(vf_fma(x.e, w.e, vf_flush(vf_fma(x.o, w.o, acc)))); }
#define FFN_MR 4

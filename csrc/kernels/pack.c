/* pack.c: expert weights into the panel layout of the grouped FFN kernels (once, at load time). */
#include "moe.h"
#include "parallel.h"

#include <string.h>

int64_t moe_round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

int64_t moe_packed_in_elems(int64_t E, int64_t H, int64_t I, int32_t gated) {
    const int64_t per = moe_mul_checked(moe_mul_checked(moe_round_up(I, MOE_PANEL), H), gated ? 2 : 1);
    return moe_mul_checked(E, per);
}

int64_t moe_packed_out_elems(int64_t E, int64_t H, int64_t I) {
    return moe_mul_checked(E, moe_mul_checked(moe_round_up(H, MOE_PANEL), moe_round_up(I, MOE_PANEL)));
}

/* dst[((e * Cp/16 + pb) * R + r) * (P*16) + p*16 + c] = src_p[e][pb*16 + c][r]  (0 past C or R0)
 * src_p: (E, C, R0) row-major, elements of es bytes; R >= R0 rows of the packed panel, rows past R0 zero.
 * Written once for every element size: the callers pass es as a constant, so memcpy becomes one move. */
static inline __attribute__((always_inline)) void pack_panels(char *dst, const char *src0, const char *src1, int P,
                                                              int64_t E, int64_t C, int64_t R0, int64_t R,
                                                              const size_t es) {
    const char *srcs[2] = {src0, src1};
    const int64_t npanels = moe_round_up(C, MOE_PANEL) / MOE_PANEL;
#pragma omp parallel for collapse(2) schedule(static) num_threads(moe_get_num_threads())
    for (int64_t e = 0; e < E; e++)
        for (int64_t pb = 0; pb < npanels; pb++) {
            char *out = dst + (size_t)((e * npanels + pb) * R * P * MOE_PANEL) * es;
            for (int64_t r = 0; r < R; r++)
                for (int p = 0; p < P; p++)
                    for (int c = 0; c < MOE_PANEL; c++) {
                        const int64_t col = pb * MOE_PANEL + c;
                        char *o = out + (size_t)((r * P + p) * MOE_PANEL + c) * es;
                        if (col < C && r < R0) memcpy(o, srcs[p] + (size_t)((e * C + col) * R0 + r) * es, es);
                        else memset(o, 0, es);
                    }
        }
}

static void pack_f32(void *dst, const void *a, const void *b, int P, int64_t E, int64_t C, int64_t R0, int64_t R) {
    pack_panels(dst, a, b, P, E, C, R0, R, sizeof(float));
}

static void pack_u16(void *dst, const void *a, const void *b, int P, int64_t E, int64_t C, int64_t R0, int64_t R) {
    pack_panels(dst, a, b, P, E, C, R0, R, sizeof(uint16_t));
}

static moe_status pack(void *dst, const void *a, const void *b, int P, int64_t E, int64_t C, int64_t R0, int64_t R,
                       int32_t dtype) {
    if (E < 1 || C < 1 || R0 < 1 || R < R0) return MOE_EINVAL;
    if (moe_mul_checked(moe_mul_checked(E, moe_round_up(C, MOE_PANEL)), moe_mul_checked(moe_mul_checked(R, P), 4)) < 0 ||
        moe_mul_checked(moe_mul_checked(E, C), moe_mul_checked(R0, 4)) < 0)
        return MOE_EOVERFLOW;
    if (dtype == MOE_DT_F32) pack_f32(dst, a, b, P, E, C, R0, R);
    else if (dtype == MOE_DT_BF16) pack_u16(dst, a, b, P, E, C, R0, R);
    else return MOE_EINVAL;
    return MOE_OK;
}

moe_status moe_pack_in(void *dst, const void *gate, const void *up, int64_t E, int64_t H, int64_t I, int32_t dtype) {
    /* panels of Ip columns over the H inputs: src (E, I, H) */
    return pack(dst, gate, up, up ? 2 : 1, E, I, H, H, dtype);
}

moe_status moe_pack_out(void *dst, const void *down, int64_t E, int64_t H, int64_t I, int32_t dtype) {
    /* panels of Hp columns over the Ip inputs: src (E, H, I), rows I..Ip zero */
    return pack(dst, down, NULL, 1, E, H, I, moe_round_up(I, MOE_PANEL), dtype);
}

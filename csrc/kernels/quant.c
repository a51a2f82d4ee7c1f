/* quant.c: quantize expert weights into the panel blocks of quant.h, and back. */
#include "moe.h"
#include "parallel.h"
#include "quant.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

int64_t moe_qpacked_bytes(int64_t E, int64_t N, int64_t K, int32_t fmt, int64_t G) {
    if (!moe_qgroup_ok(G) || K % G || fmt < MOE_Q_INT8 || fmt > MOE_Q_LAST) return -1;
    const int64_t blocks = moe_mul_checked(moe_mul_checked(E, moe_round_up(N, 16) / 16), K / G);
    return moe_mul_checked(blocks, moe_qblock_bytes(fmt, G));
}

#define INT4_CANDIDATES 9 /* divisors 8, 8.25, ..., 10 tried for symmetric INT4 scales */
#define NL_CANDIDATES 9   /* divisors 119, 121, ..., 135 of the signed maximum tried for int4_nl scales */

/* the midpoint between int4_nl levels i and i + 1 (exact: a half-integer) */
static inline float nl_mid(int i) { return 0.5f * (float)(moe_nl_levels[i] + moe_nl_levels[i + 1]); }

/* index of the int4_nl level nearest to v: the number of midpoints below v (a tie goes to the lower level), by
 * binary search over the 15 midpoints */
static inline int nl_nearest(float v) {
    float mid[15];
    for (int i = 0; i < 15; i++) mid[i] = nl_mid(i);
    int i = v > mid[7] ? 8 : 0;
    i += v > mid[i + 3] ? 4 : 0;
    i += v > mid[i + 1] ? 2 : 0;
    return i + (v > mid[i] ? 1 : 0);
}

/* int4_nl codes of the G values r under the fp16 scale h (u[k] = nearest level of r[k] / s); returns their squared
 * error (double, in order) and gives the fp16 least-squares scale of these codes, sum r L / sum L^2 (L never 0) */
static double nl_assign(uint8_t *u, const float *r, int64_t G, uint16_t h, uint16_t *refit) {
    const float s = moe_f16_to_f32(h);
    double err = 0.0, wl = 0.0, ll = 0.0;
    for (int64_t k = 0; k < G; k++) {
        const int i = nl_nearest(s != 0.0f ? r[k] / s : 0.0f);
        const float L = (float)moe_nl_levels[i];
        const double d = (double)r[k] - (double)(s * L);
        err += d * d;
        wl += (double)r[k] * (double)L;
        ll += (double)L * (double)L;
        u[k] = (uint8_t)i;
    }
    *refit = moe_f32_to_f16((float)(wl / ll));
    return err;
}

int64_t moe_qformat_block_bytes(int32_t fmt, int64_t G) { return moe_qblock_bytes(fmt, G); }
int64_t moe_qformat_header_bytes(int32_t fmt) { return moe_qblock_header_bytes(fmt); }

static int f16_is_inf(uint16_t h) { return (h & 0x7FFF) == 0x7C00; }

/* codes u (16 x G) and the header of one block from w (16 rows of G values, rows >= n zero).
 * Returns the first column whose fp16 scale (or offset) overflows, or -1. */
static int quantize_block(uint8_t *blk, const float *w, int64_t ldw, int n, int32_t fmt, int64_t G) {
    uint16_t *scale = (uint16_t *)blk, *bias = scale + 16;
    uint8_t *q = blk + moe_qblock_header_bytes(fmt);
    uint8_t u[16][128];
    for (int c = 0; c < 16; c++) {
        const float *r = w + c * ldw;
        if (c >= n) { /* padding columns dequantise to 0 */
            scale[c] = 0;
            if (fmt == MOE_Q_INT4_ASYM) bias[c] = 0;
            memset(u[c], fmt == MOE_Q_INT8 ? 128 : (fmt == MOE_Q_INT4_ASYM ? 0 : 8), (size_t)G);
            continue;
        }
        if (fmt == MOE_Q_INT8) { /* s = max|w| / 127, u = rint(w / s) + 128 */
            float amax = 0.0f;
            for (int64_t k = 0; k < G; k++) amax = fmaxf(amax, fabsf(r[k]));
            scale[c] = moe_f32_to_f16(amax / 127.0f);
            if (f16_is_inf(scale[c])) return c;
            const float s = moe_f16_to_f32(scale[c]);
            for (int64_t k = 0; k < G; k++) {
                float v = s > 0.0f ? rintf(r[k] / s) : 0.0f;
                v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
                u[c][k] = (uint8_t)((int)v + 128);
            }
        } else if (fmt == MOE_Q_INT4) {
            /* s = (signed max) / -(8 + d): the candidate d in INT4_DIVISOR_STEPS with the least squared
             * error (d = 0 maps the extreme exactly; larger d trade clipping it for finer steps) */
            float mx = 0.0f;
            for (int64_t k = 0; k < G; k++) mx = fabsf(r[k]) > fabsf(mx) ? r[k] : mx;
            double best_err = INFINITY;
            scale[c] = 0x7C00; /* inf: no candidate fits fp16 yet */
            for (int i = 0; i < INT4_CANDIDATES; i++) {
                const uint16_t h = moe_f32_to_f16(mx / -(8.0f + 0.25f * (float)i));
                if (f16_is_inf(h)) continue; /* a scale past the fp16 range is no candidate */
                const float s = moe_f16_to_f32(h);
                double err = 0.0;
                for (int64_t k = 0; k < G; k++) {
                    float v = s != 0.0f ? rintf(r[k] / s) : 0.0f;
                    v = v < -8.0f ? -8.0f : (v > 7.0f ? 7.0f : v);
                    const double d = (double)r[k] - (double)(s * v);
                    err += d * d;
                }
                if (err < best_err) {
                    best_err = err;
                    scale[c] = h;
                }
            }
            if (f16_is_inf(scale[c])) return c;
            const float s = moe_f16_to_f32(scale[c]);
            for (int64_t k = 0; k < G; k++) {
                float v = s != 0.0f ? rintf(r[k] / s) + 8.0f : 8.0f;
                v = v < 0.0f ? 0.0f : (v > 15.0f ? 15.0f : v);
                u[c][k] = (uint8_t)v;
            }
        } else if (fmt == MOE_Q_INT4_NL) {
            /* each candidate s = (signed max) / -d, d in 119 .. 135, gives codes (nearest levels); then the
             * least-squares scale for those codes gives codes of its own: the least squared error of all wins */
            float mx = 0.0f;
            for (int64_t k = 0; k < G; k++) mx = fabsf(r[k]) > fabsf(mx) ? r[k] : mx;
            double best_err = INFINITY;
            uint16_t h, refit;
            scale[c] = 0x7C00;
            for (int i = 0; i < NL_CANDIDATES; i++) {
                h = moe_f32_to_f16(mx / -(119.0f + 2.0f * (float)i));
                for (int t = 0; t < 2 && !f16_is_inf(h); t++, h = refit) { /* the candidate, then its refit */
                    const double err = nl_assign(u[c], r, G, h, &refit);
                    if (err < best_err) {
                        best_err = err;
                        scale[c] = h;
                    }
                }
            }
            if (f16_is_inf(scale[c])) return c;
            nl_assign(u[c], r, G, scale[c], &refit);
        } else { /* asymmetric: m = min, s = (max - min) / 15, u = rint((w - m) / s) */
            float lo = r[0], hi = r[0];
            for (int64_t k = 1; k < G; k++) { lo = fminf(lo, r[k]); hi = fmaxf(hi, r[k]); }
            scale[c] = moe_f32_to_f16((hi - lo) / 15.0f);
            bias[c] = moe_f32_to_f16(lo);
            if (f16_is_inf(scale[c]) || f16_is_inf(bias[c])) return c;
            const float s = moe_f16_to_f32(scale[c]), m = moe_f16_to_f32(bias[c]);
            for (int64_t k = 0; k < G; k++) {
                float v = s > 0.0f ? rintf((r[k] - m) / s) : 0.0f;
                v = v < 0.0f ? 0.0f : (v > 15.0f ? 15.0f : v);
                u[c][k] = (uint8_t)v;
            }
        }
    }
    if (fmt == MOE_Q_INT8) {
        for (int64_t j = 0; j < G / 4; j++)
            for (int c = 0; c < 16; c++)
                for (int i = 0; i < 4; i++) q[j * 64 + c * 4 + i] = u[c][4 * j + i];
    } else {
        for (int64_t p = 0; p < G / 8; p++)
            for (int c = 0; c < 16; c++)
                for (int i = 0; i < 4; i++)
                    q[p * 64 + c * 4 + i] = (uint8_t)(u[c][8 * p + i] | (u[c][8 * p + 4 + i] << 4));
    }
    return -1;
}

/* w (16 x G, rows >= n skipped) <- one block */
static void dequantize_block(float *w, int64_t ldw, int n, const uint8_t *blk, int32_t fmt, int64_t G) {
    const uint16_t *scale = (const uint16_t *)blk, *bias = scale + 16;
    const uint8_t *q = blk + moe_qblock_header_bytes(fmt);
    for (int c = 0; c < n; c++) {
        const float s = moe_f16_to_f32(scale[c]), m = fmt == MOE_Q_INT4_ASYM ? moe_f16_to_f32(bias[c]) : 0.0f;
        for (int64_t k = 0; k < G; k++) {
            int u;
            if (fmt == MOE_Q_INT8) u = q[(k / 4) * 64 + c * 4 + k % 4];
            else u = (q[(k / 8) * 64 + c * 4 + k % 4] >> (k % 8 >= 4 ? 4 : 0)) & 0xF;
            w[c * ldw + k] = fmt == MOE_Q_INT8 ? s * (float)(u - 128)
                             : fmt == MOE_Q_INT4 ? s * (float)(u - 8)
                             : fmt == MOE_Q_INT4_NL ? s * (float)moe_nl_levels[u] : s * (float)u + m;
        }
    }
}

moe_status moe_quantize(uint8_t *dst, int64_t *bad_index, const float *w, int64_t E, int64_t N, int64_t K,
                        int32_t fmt, int64_t G, int32_t P, int32_t p) {
    if (E < 1 || N < 1 || K < 1 || P < 1 || p < 0 || p >= P) return MOE_EINVAL;
    if (moe_qpacked_bytes(E, N, K, fmt, G) < 0) return MOE_EINVAL;
    const int64_t total = moe_mul_checked(moe_mul_checked(E, N), K);
    if (total < 0) return MOE_EOVERFLOW;
    for (int64_t i = 0; i < total; i++)
        if (!isfinite(w[i])) { *bad_index = i; return MOE_ENAN; }
    const int64_t np_ = moe_round_up(N, 16) / 16, ng = K / G, bb = moe_qblock_bytes(fmt, G);
    int64_t first_bad = INT64_MAX; /* the lowest index of w whose block's fp16 scale overflows */
#pragma omp parallel for collapse(2) schedule(static) num_threads(moe_get_num_threads())
    for (int64_t e = 0; e < E; e++)
        for (int64_t pb = 0; pb < np_; pb++) {
            const int n = (int)(N - pb * 16 < 16 ? N - pb * 16 : 16);
            for (int64_t g = 0; g < ng; g++) {
                uint8_t *blk = dst + ((((e * np_ + pb) * ng + g) * P) + p) * bb;
                const float *src = w + (e * N + pb * 16) * K + g * G;
                float tmp[16 * 128];
                for (int c = 0; c < 16; c++)
                    for (int64_t k = 0; k < G; k++) tmp[c * G + k] = c < n ? src[c * K + k] : 0.0f;
                const int c = quantize_block(blk, tmp, G, n, fmt, G);
                if (c >= 0) {
                    const int64_t idx = (e * N + pb * 16 + c) * K + g * G;
#pragma omp critical(moe_quantize_range)
                    if (idx < first_bad) first_bad = idx;
                }
            }
        }
    if (first_bad != INT64_MAX) { *bad_index = first_bad; return MOE_ERANGE; }
    return MOE_OK;
}

moe_status moe_dequantize(float *w, const uint8_t *src, int64_t E, int64_t N, int64_t K, int32_t fmt, int64_t G,
                          int32_t P, int32_t p) {
    if (E < 1 || N < 1 || K < 1 || P < 1 || p < 0 || p >= P || moe_qpacked_bytes(E, N, K, fmt, G) < 0)
        return MOE_EINVAL;
    const int64_t np_ = moe_round_up(N, 16) / 16, ng = K / G, bb = moe_qblock_bytes(fmt, G);
#pragma omp parallel for collapse(2) schedule(static) num_threads(moe_get_num_threads())
    for (int64_t e = 0; e < E; e++)
        for (int64_t pb = 0; pb < np_; pb++) {
            const int n = (int)(N - pb * 16 < 16 ? N - pb * 16 : 16);
            for (int64_t g = 0; g < ng; g++)
                dequantize_block(w + (e * N + pb * 16) * K + g * G, K, n,
                                 src + ((((e * np_ + pb) * ng + g) * P) + p) * bb, fmt, G);
        }
    return MOE_OK;
}

moe_status moe_quantize_rows(int8_t *xq, float *scales, int32_t *sums, const float *x, int64_t R, int64_t K,
                             int64_t G) {
    if (R < 0 || K < 1 || !moe_qgroup_ok(G) || K % G) return MOE_EINVAL;
    if (moe_mul_checked(R, K) < 0) return MOE_EOVERFLOW;
    moe_kernels()->quantize_rows(xq, scales, sums, x, K, R, K, G);
    return MOE_OK;
}

/* norm_rope.c: the decoder's RMSNorm and rotary embedding (moe_rms_norm, moe_rope; moe.h).
 * Each row depends on that row alone and is computed in one fixed order (this file is compiled once, for every ISA,
 * without FMA contraction), so results are bitwise the same for any thread count, batch and ISA; the NumPy twins
 * are moepy.reference.norm_rope. */
#include <math.h>

#include "moe.h"
#include "parallel.h"

#define NORM_LANES 16

/* y (n) <- x (n) * r [* w], r = 1 / sqrt(var + eps), var = (float)(sum of x^2 / n): the squares summed in double,
 * element i into lane i % 16 in ascending i, the lanes then combined l += l + w for w = 8, 4, 2, 1 */
static void rms_row(float *y, const float *x, int64_t n, const float *w, float eps) {
    double acc[NORM_LANES] = {0};
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (int l = 0; l < NORM_LANES; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
    for (int l = 0; i + l < n; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
    for (int h = NORM_LANES / 2; h > 0; h /= 2)
        for (int l = 0; l < h; l++) acc[l] += acc[l + h];
    const float var = (float)(acc[0] / (double)n);
    const float r = 1.0f / sqrtf(var + eps);
    if (w)
        for (i = 0; i < n; i++) y[i] = (x[i] * r) * w[i];
    else
        for (i = 0; i < n; i++) y[i] = x[i] * r;
}

moe_status moe_rms_norm(float *y, const float *x, int64_t R, int64_t n, const float *w, float eps) {
    if (R < 0 || n < 1) return MOE_EINVAL;
    if (moe_mul_checked(R, n) < 0) return MOE_EOVERFLOW;
    if (R == 0) return MOE_OK;
    if (!y || !x) return MOE_EINVAL;
    const int parallel = R > 1 && R * n >= MOE_PARALLEL_MIN_WORK && moe_get_num_threads() > 1;
#pragma omp parallel for num_threads(moe_get_num_threads()) if (parallel) schedule(static)
    for (int64_t r = 0; r < R; r++) rms_row(y + r * n, x + r * n, n, w, eps);
    return MOE_OK;
}

/* out (H, dim) <- x (H, dim) rotated by c, s (dim / 2): re = a c - b s, im = b c + a s, every product and sum
 * rounded; a, b the halves (MOE_ROPE_HALF, MOE_ROPE_PAIRS_TO_HALF: the even and odd dims) written back as halves,
 * or the even and odd dims written back interleaved (MOE_ROPE_PAIRS) */
static void rope_row(float *out, const float *x, int64_t H, int64_t dim, const float *c, const float *s,
                     int32_t layout) {
    const int64_t h = dim / 2;
    for (int64_t hh = 0; hh < H; hh++) {
        const float *xr = x + hh * dim;
        float *o = out + hh * dim;
        for (int64_t i = 0; i < h; i++) {
            const float a = layout == MOE_ROPE_HALF ? xr[i] : xr[2 * i];
            const float b = layout == MOE_ROPE_HALF ? xr[h + i] : xr[2 * i + 1];
            const float re = a * c[i] - b * s[i], im = b * c[i] + a * s[i];
            if (layout == MOE_ROPE_PAIRS) {
                o[2 * i] = re;
                o[2 * i + 1] = im;
            } else {
                o[i] = re;
                o[h + i] = im;
            }
        }
    }
}

moe_status moe_rope(float *out, const float *x, int64_t R, int64_t H, int64_t dim, const float *cos_, const float *sin_,
                    int32_t layout) {
    if (R < 0 || H < 1 || dim < 2 || dim % 2 || layout < MOE_ROPE_HALF || layout > MOE_ROPE_PAIRS_TO_HALF)
        return MOE_EINVAL;
    if (moe_mul_checked(moe_mul_checked(R, H), dim) < 0) return MOE_EOVERFLOW;
    if (R == 0) return MOE_OK;
    if (!out || !x || !cos_ || !sin_) return MOE_EINVAL;
    const int parallel = R > 1 && R * H * dim >= MOE_PARALLEL_MIN_WORK && moe_get_num_threads() > 1;
#pragma omp parallel for num_threads(moe_get_num_threads()) if (parallel) schedule(static)
    for (int64_t r = 0; r < R; r++)
        rope_row(out + r * H * dim, x + r * H * dim, H, dim, cos_ + r * (dim / 2), sin_ + r * (dim / 2), layout);
    return MOE_OK;
}

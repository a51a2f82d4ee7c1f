/* attention.c: scaled dot-product attention over strided keys and values (moe_attention, moe.h).
 *
 * out (B, Hq, T, Dv) <- q (B, Hq, T, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv), allowed (B, T, S), sinks (Hq)
 * Work items are (b, h, block of ATTN_TB queries), or in a decode step of grouped-query attention (b, key/value
 * head, block of ATTN_GR of its query heads); each thread owns the outputs of its items and a private
 * scratch (the padded query, S scores, S key indices). The arithmetic of one query row is the per-ISA
 * attn_rows (attention_kernels.inc), fixed and independent of the blocking, so results are bitwise the same
 * for any thread count, T and ISA. */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "moe.h"
#include "parallel.h"

#define ATTN_TB 16 /* queries per work item */
#define ATTN_GR 8  /* query heads per work item in a grouped decode step (the keys and values are read once per item) */

/* a + b, or -1 if it would overflow (a, b >= 0) */
static int64_t add_checked(int64_t a, int64_t b) {
    if (a < 0 || b < 0 || a > INT64_MAX - b) return -1;
    return a + b;
}

/* the last element index + 1 of a strided (n0, n1, n2, n3) view with unit last stride, or -1 on overflow */
static int64_t extent(int64_t n0, int64_t s0, int64_t n1, int64_t s1, int64_t n2, int64_t s2, int64_t n3) {
    if (n0 == 0 || n1 == 0 || n2 == 0 || n3 == 0) return 0;
    int64_t e = n3;
    e = add_checked(e, moe_mul_checked(n0 - 1, s0));
    e = e < 0 ? -1 : add_checked(e, moe_mul_checked(n1 - 1, s1));
    e = e < 0 ? -1 : add_checked(e, moe_mul_checked(n2 - 1, s2));
    return e;
}

moe_status moe_attention(float *out, const float *q, const float *k, const float *v, const uint8_t *allowed,
                         const float *sinks, const moe_attention_dims *d) {
    if (!d) return MOE_EINVAL;
    const int64_t B = d->B, Hq = d->Hq, Hkv = d->Hkv, T = d->T, S = d->S, D = d->D, Dv = d->Dv;
    if (B < 0 || Hq < 1 || Hkv < 1 || Hq % Hkv != 0 || T < 0 || S < 0 || D < 1 || Dv < 1) return MOE_EINVAL;
    if (d->q_sb < 0 || d->q_sh < 0 || d->q_st < 0 || d->k_sb < 0 || d->k_sh < 0 || d->k_ss < 0 || d->v_sb < 0 ||
        d->v_sh < 0 || d->v_ss < 0 || d->m_sb < 0 || d->m_st < 0)
        return MOE_EINVAL;
    /* every index the kernel forms must fit int64 (the caller guarantees the memory behind it) */
    if (extent(B, d->q_sb, Hq, d->q_sh, T, d->q_st, D) < 0 || extent(B, d->k_sb, Hkv, d->k_sh, S, d->k_ss, D) < 0 ||
        extent(B, d->v_sb, Hkv, d->v_sh, S, d->v_ss, Dv) < 0 || extent(B, d->m_sb, 1, 0, T, d->m_st, S) < 0)
        return MOE_EOVERFLOW;
    const int64_t rows = moe_mul_checked(moe_mul_checked(B, Hq), T);
    const int64_t nout = moe_mul_checked(rows, Dv);
    if (rows < 0 || nout < 0) return MOE_EOVERFLOW;
    if (rows == 0) return MOE_OK;
    if (!out || !q || !allowed || (S > 0 && (!k || !v))) return MOE_EINVAL;
    const int64_t Dp = add_checked(D, 15) < 0 ? -1 : (D + 15) & ~(int64_t)15;
    /* floats of scratch: MOE_ATTN_RB padded queries + their scores; int64: 2 S (kernels.h) */
    const int64_t fl = Dp < 0 ? -1 : moe_mul_checked(add_checked(Dp, S), MOE_ATTN_RB);
    const int64_t fbytes = moe_mul_checked(fl, (int64_t)sizeof(float));
    const int64_t ibytes = moe_mul_checked(S, 2 * (int64_t)sizeof(int64_t));
    const int64_t bytes = fbytes < 0 || ibytes < 0 ? -1 : add_checked(fbytes, ibytes + 64);
    if (Dp < 0 || fl < 0 || bytes < 0 || (uint64_t)bytes > (uint64_t)SIZE_MAX) return MOE_EOVERFLOW;

    const moe_kernel_table *kt = moe_kernels();
    const int64_t g = Hq / Hkv, nblk = (T + ATTN_TB - 1) / ATTN_TB;
    /* a decode step (T = 1) of grouped-query attention without sinks: the g query heads of a key/value head are
     * the rows of one item, so the kernel reads that head's keys and values once for all of them (each row's
     * arithmetic is fixed, so the bits are the same as one head at a time) */
    const int grouped = T == 1 && g > 1 && !sinks;
    const int64_t gblk = (g + ATTN_GR - 1) / ATTN_GR; /* items per key/value head when grouped */
    const int64_t items = grouped ? B * Hkv * gblk : B * Hq * nblk; /* <= rows */
    /* work ~ rows * S * (D + Dv): one thread below the team's break-even */
    const int64_t work = moe_mul_checked(moe_mul_checked(rows, S > 0 ? S : 1), D + Dv);
    const int parallel = items > 1 && (work < 0 || work >= MOE_PARALLEL_MIN_WORK) && moe_get_num_threads() > 1;
    int failed = 0;
#pragma omp parallel num_threads(moe_get_num_threads()) if (parallel)
    {
        char *scratch = malloc((size_t)bytes);
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
        float *qp = (float *)scratch, *s = qp + MOE_ATTN_RB * Dp;
        int64_t *idx = (int64_t *)(scratch + ((fbytes + 63) & ~(int64_t)63));
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            if (!scratch) continue;
            if (grouped) { /* rows: up to ATTN_GR of the heads h = hk g + i at t = 0, one mask row for all */
                const int64_t gb = it % gblk, hk = (it / gblk) % Hkv, b = it / (gblk * Hkv), h0 = hk * g + gb * ATTN_GR;
                const int64_t nr = g - gb * ATTN_GR < ATTN_GR ? g - gb * ATTN_GR : ATTN_GR;
                kt->attn_rows(out + (b * Hq + h0) * Dv, q + b * d->q_sb + h0 * d->q_sh, d->q_sh, nr,
                              k ? k + b * d->k_sb + hk * d->k_sh : NULL, d->k_ss,
                              v ? v + b * d->v_sb + hk * d->v_sh : NULL, d->v_ss, allowed + b * d->m_sb, 0, S, D, Dv,
                              d->scale, NULL, qp, s, idx);
                continue;
            }
            const int64_t tb = it % nblk, bh = it / nblk, h = bh % Hq, b = bh / Hq, hk = h / g;
            const int64_t t0 = tb * ATTN_TB, nr = T - t0 < ATTN_TB ? T - t0 : ATTN_TB;
            kt->attn_rows(out + ((b * Hq + h) * T + t0) * Dv, q + b * d->q_sb + h * d->q_sh + t0 * d->q_st, d->q_st,
                          nr, k ? k + b * d->k_sb + hk * d->k_sh : NULL, d->k_ss,
                          v ? v + b * d->v_sb + hk * d->v_sh : NULL, d->v_ss, allowed + b * d->m_sb + t0 * d->m_st,
                          d->m_st, S, D, Dv, d->scale, sinks ? sinks + h : NULL, qp, s, idx);
        }
        free(scratch);
    }
    return failed ? MOE_ENOMEM : MOE_OK;
}

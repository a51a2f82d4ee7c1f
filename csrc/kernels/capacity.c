/* capacity.c: capacity-limited routing (Switch, GShard), expert-choice routing, load statistics. */
#include "moe.h"
#include "parallel.h"
#include "topk.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

moe_status moe_apply_capacity(float *weights, uint8_t *dropped, int64_t *counts,
                              const int32_t *experts, int64_t T, int64_t K, int64_t E,
                              int64_t capacity, int32_t priority) {
    if (T < 0 || K < 1 || E < 1 || capacity < 0) return MOE_EINVAL;
    if (priority != MOE_PRIORITY_RANK && priority != MOE_PRIORITY_TOKEN) return MOE_EINVAL;
    if (moe_mul_checked(T, K) < 0) return MOE_EOVERFLOW;
    for (int64_t i = 0; i < T * K; i++)
        if (experts[i] < 0 || experts[i] >= E) return MOE_EINVAL;
    memset(counts, 0, (size_t)E * sizeof(int64_t));
    /* Slots are served one after another in priority order: the order itself is the semantics,
     * and one O(T K) pass costs about a nanosecond per slot. */
    const int64_t outer = priority == MOE_PRIORITY_RANK ? K : T;
    const int64_t inner = priority == MOE_PRIORITY_RANK ? T : K;
    for (int64_t a = 0; a < outer; a++)
        for (int64_t b = 0; b < inner; b++) {
            const int64_t slot = priority == MOE_PRIORITY_RANK ? b * K + a : a * K + b;
            const int32_t e = experts[slot];
            if (counts[e] < capacity) {
                counts[e]++;
                dropped[slot] = 0;
            } else {
                dropped[slot] = 1;
                weights[slot] = 0.0f;
            }
        }
    return MOE_OK;
}

moe_status moe_expert_choice(float *gates, int64_t *tokens, int64_t *bad_row,
                             const float *scores, int64_t T, int64_t E, int64_t C) {
    if (T < 1 || E < 1 || C < 1 || C > T) return MOE_EINVAL;
    if (moe_mul_checked(T, E) < 0 || moe_mul_checked(E, C) < 0) return MOE_EOVERFLOW;
    for (int64_t t = 0; t < T; t++) /* NaN check first, reported by token row */
        for (int64_t e = 0; e < E; e++)
            if (isnan(scores[t * E + e])) { *bad_row = t; return MOE_ENAN; }
#pragma omp parallel for schedule(dynamic, 1) num_threads(moe_get_num_threads()) \
    if (T * E >= MOE_PARALLEL_MIN_WORK)
    for (int64_t e = 0; e < E; e++) /* column e, stride E: each expert picks its C best tokens */
        moe_topk_row(gates + e * C, tokens + e * C, scores + e, E, T, C);
    return MOE_OK;
}

#define LOAD_BLOCK_ROWS 1024 /* fixed blocks keep the float sums independent of the thread count */

moe_status moe_expert_load(int64_t *counts, double *prob_sum, const int32_t *experts,
                           const uint8_t *dropped, const float *scores, int64_t T, int64_t K,
                           int64_t E) {
    if (T < 0 || K < 1 || E < 1) return MOE_EINVAL;
    if (moe_mul_checked(T, K) < 0 || moe_mul_checked(T, E) < 0) return MOE_EOVERFLOW;
    const int64_t nblocks = (T + LOAD_BLOCK_ROWS - 1) / LOAD_BLOCK_ROWS;
    const int64_t cells = moe_mul_checked(nblocks, E);
    if (cells < 0) return MOE_EOVERFLOW;
    int64_t *bcounts = calloc((size_t)(cells > 0 ? cells : 1), sizeof(int64_t));
    double *bsums = prob_sum ? calloc((size_t)(cells > 0 ? cells : 1), sizeof(double)) : NULL;
    if (!bcounts || (prob_sum && !bsums)) { free(bcounts); free(bsums); return MOE_ENOMEM; }
    int invalid = 0;
#pragma omp parallel for schedule(static) num_threads(moe_get_num_threads()) \
    if (T * (K + E) >= MOE_PARALLEL_MIN_WORK) reduction(| : invalid)
    for (int64_t b = 0; b < nblocks; b++) {
        const int64_t t0 = b * LOAD_BLOCK_ROWS, t1 = t0 + LOAD_BLOCK_ROWS < T ? t0 + LOAD_BLOCK_ROWS : T;
        int64_t *c = bcounts + b * E;
        for (int64_t i = t0 * K; i < t1 * K; i++) {
            const int32_t e = experts[i];
            if (e < 0 || e >= E) { invalid = 1; continue; }
            if (!dropped || !dropped[i]) c[e]++;
        }
        if (bsums) {
            double *s = bsums + b * E;
            for (int64_t t = t0; t < t1; t++)
                for (int64_t e = 0; e < E; e++) s[e] += (double)scores[t * E + e];
        }
    }
    for (int64_t e = 0; e < E; e++) {
        counts[e] = 0;
        if (prob_sum) prob_sum[e] = 0.0;
    }
    for (int64_t b = 0; b < nblocks; b++)
        for (int64_t e = 0; e < E; e++) {
            counts[e] += bcounts[b * E + e];
            if (prob_sum) prob_sum[e] += bsums[b * E + e];
        }
    free(bcounts);
    free(bsums);
    return invalid ? MOE_EINVAL : MOE_OK;
}

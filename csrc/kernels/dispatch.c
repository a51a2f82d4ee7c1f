/* dispatch.c: the dispatch plan (slots grouped by expert, per-chunk histograms), the gather of rows in plan
 * order, and the weighted combine in ascending expert order: the pieces around the grouped FFN (ffn.c). */
#include "moe.h"
#include "dispatch.h"
#include "parallel.h"

#include <stdlib.h>
#include <string.h>

#define PLAN_CHUNK_SLOTS 8192 /* slots per histogram chunk */
#define PLAN_MAX_CHUNKS 256

moe_status moe_dispatch_plan(int64_t *counts, int64_t *offsets, int64_t *order, int64_t *position,
                             const int32_t *experts, const uint8_t *dropped, int64_t T, int64_t K, int64_t E) {
    if (T < 0 || K < 1 || E < 1) return MOE_EINVAL;
    const int64_t N = moe_mul_checked(T, K);
    if (N < 0) return MOE_EOVERFLOW;
    int64_t nchunks = (N + PLAN_CHUNK_SLOTS - 1) / PLAN_CHUNK_SLOTS;
    if (nchunks > PLAN_MAX_CHUNKS) nchunks = PLAN_MAX_CHUNKS;
    if (nchunks < 1) nchunks = 1;
    const int64_t per = (N + nchunks - 1) / nchunks;
    const int64_t cells = moe_mul_checked(nchunks, E);
    if (cells < 0) return MOE_EOVERFLOW;
    int64_t *hist = calloc((size_t)cells, sizeof(int64_t));
    if (!hist) return MOE_ENOMEM;
    int invalid = 0;
    const int parallel = N >= MOE_PARALLEL_MIN_WORK;

    /* 1. per-chunk histograms */
#pragma omp parallel for schedule(static) num_threads(moe_get_num_threads()) if (parallel) reduction(| : invalid)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t *h = hist + c * E;
        const int64_t s1 = (c + 1) * per < N ? (c + 1) * per : N;
        for (int64_t s = c * per; s < s1; s++) {
            const int32_t e = experts[s];
            if (e < 0 || e >= E) { invalid = 1; continue; }
            if (!dropped || !dropped[s]) h[e]++;
        }
    }
    if (invalid) { free(hist); return MOE_EINVAL; }

    /* 2. offsets, and each chunk's start within each expert (O(E * chunks)) */
    offsets[0] = 0;
    for (int64_t e = 0; e < E; e++) {
        int64_t run = offsets[e];
        for (int64_t c = 0; c < nchunks; c++) {
            const int64_t n = hist[c * E + e];
            hist[c * E + e] = run;
            run += n;
        }
        counts[e] = run - offsets[e];
        offsets[e + 1] = run;
    }

    /* 3. scatter: each chunk writes its own disjoint rows */
#pragma omp parallel for schedule(static) num_threads(moe_get_num_threads()) if (parallel)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t *next = hist + c * E;
        const int64_t s1 = (c + 1) * per < N ? (c + 1) * per : N;
        for (int64_t s = c * per; s < s1; s++) {
            if (dropped && dropped[s]) { position[s] = -1; continue; }
            const int64_t row = next[experts[s]]++;
            order[row] = s;
            position[s] = row;
        }
    }
    free(hist);
    return MOE_OK;
}

moe_status moe_gather(float *xs, const float *x, int64_t T, int64_t H, const int64_t *order, int64_t N, int64_t K,
                      const float *weights) {
    if (T < 0 || H < 1 || N < 0 || K < 1) return MOE_EINVAL;
    const int64_t TK = moe_mul_checked(T, K);
    if (TK < 0 || moe_mul_checked(N, H) < 0) return MOE_EOVERFLOW;
    int invalid = 0;
#pragma omp parallel for schedule(static) num_threads(moe_get_num_threads()) if (N * H >= MOE_PARALLEL_MIN_WORK) \
    reduction(| : invalid)
    for (int64_t r = 0; r < N; r++) {
        const int64_t slot = order[r]; /* read once, checked before use */
        if (slot < 0 || slot >= TK) { invalid = 1; continue; }
        const int64_t t = slot / K;
        if (weights) {
            const float w = weights[slot];
            for (int64_t j = 0; j < H; j++) xs[r * H + j] = w * x[t * H + j];
        } else {
            memcpy(xs + r * H, x + t * H, (size_t)H * sizeof(float));
        }
    }
    return invalid ? MOE_EINVAL : MOE_OK;
}

/* (internal, dispatch.h) out (T, H) <- routed rows of y (ld ldy) in ascending expert order per token, + gate * ys (ld ldys).
 * Returns -1 (after finishing) if a row holds a duplicate expert id or a position is out of [-1, N). */
int moe_combine_rows(float *out, const float *y, int64_t ldy, int64_t N, const int64_t *position,
                          const int32_t *experts, const float *weights, int64_t T, int64_t K, int64_t H,
                          int32_t scale_input, const float *ys, int64_t ldys, const float *shared_gate,
                          int nthreads) {
    int invalid = 0;
#pragma omp parallel for schedule(static) num_threads(nthreads) if (T * H * K >= MOE_PARALLEL_MIN_WORK) \
    reduction(| : invalid)
    for (int64_t t = 0; t < T; t++) {
        float *o = out + t * H;
        memset(o, 0, (size_t)H * sizeof(float));
        int32_t last = -1;
        int64_t n = 0;
        for (; n < K; n++) { /* next slot: smallest expert id above `last` */
            int64_t best = -1;
            for (int64_t k = 0; k < K; k++) {
                const int32_t e = experts[t * K + k];
                if (e > last && (best < 0 || e < experts[t * K + best])) best = k;
            }
            if (best < 0) break;
            last = experts[t * K + best];
            const int64_t row = position[t * K + best];
            if (row < 0) continue; /* dropped */
            if (row >= N) { invalid = 1; continue; }
            const float w = scale_input ? 1.0f : weights[t * K + best];
            const float *src = y + row * ldy;
            for (int64_t j = 0; j < H; j++) o[j] += w * src[j];
        }
        if (n < K) invalid = 1; /* fewer distinct ids than slots: a duplicate */
        if (ys) {
            const float g = shared_gate ? shared_gate[t] : 1.0f;
            const float *src = ys + t * ldys;
            for (int64_t j = 0; j < H; j++) o[j] += g * src[j];
        }
    }
    return invalid ? -1 : 0;
}

moe_status moe_combine(float *out, const float *ys, int64_t N, const int64_t *position, const int32_t *experts,
                       const float *weights, int64_t T, int64_t K, int64_t H, int32_t scale_input,
                       const float *shared_y, const float *shared_gate) {
    if (T < 0 || K < 1 || H < 1 || N < 0) return MOE_EINVAL;
    if (moe_mul_checked(moe_mul_checked(T, K), H) < 0 || moe_mul_checked(N, H) < 0) return MOE_EOVERFLOW;
    return moe_combine_rows(out, ys, H, N, position, experts, weights, T, K, H, scale_input, shared_y, H, shared_gate,
                          moe_get_num_threads()) < 0 ? MOE_EINVAL : MOE_OK;
}

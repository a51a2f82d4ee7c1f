/* dispatch.c: the dispatch plan (slots grouped by expert) with per-chunk histograms. */
#include "moe.h"
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

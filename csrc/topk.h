/* topk.h: deterministic top-k of one row (inline; used by routing and expert choice).
 * Order: larger value first, equal values by lower index. Inputs must hold no NaN. */
#ifndef MOEPY_TOPK_H
#define MOEPY_TOPK_H

#include <stdint.h>

/* 1 if (va, ia) ranks before (vb, ib) */
static inline int moe_ranks_before(float va, int64_t ia, float vb, int64_t ib) {
    return va > vb || (va == vb && ia < ib);
}

/* heap of K entries with the worst at the root */
static inline void moe_heap_sift_down(float *v, int64_t *ix, int64_t K, int64_t pos) {
    for (;;) {
        int64_t l = 2 * pos + 1, r = l + 1, worst = pos;
        if (l < K && moe_ranks_before(v[worst], ix[worst], v[l], ix[l])) worst = l;
        if (r < K && moe_ranks_before(v[worst], ix[worst], v[r], ix[r])) worst = r;
        if (worst == pos) return;
        float tv = v[pos]; v[pos] = v[worst]; v[worst] = tv;
        int64_t ti = ix[pos]; ix[pos] = ix[worst]; ix[worst] = ti;
        pos = worst;
    }
}

/* vals (K), idx (K)  <-  x[j * stride] for j < M: the K best, sorted best first. 1 <= K <= M. */
static inline void moe_topk_row(float *vals, int64_t *idx, const float *x, int64_t stride, int64_t M,
                                int64_t K) {
    if (K <= 32) { /* insertion into a sorted list: one compare per element in the common case */
        for (int64_t j = 0; j < M; j++) {
            float v = x[j * stride];
            int64_t pos = j < K ? j : K;
            if (pos == K) {
                if (!(v > vals[K - 1])) continue; /* ties lose to the lower index already held */
                pos = K - 1;
            }
            while (pos > 0 && v > vals[pos - 1]) {
                vals[pos] = vals[pos - 1];
                idx[pos] = idx[pos - 1];
                pos--;
            }
            vals[pos] = v;
            idx[pos] = j;
        }
        return;
    }
    for (int64_t j = 0; j < K; j++) { vals[j] = x[j * stride]; idx[j] = j; }
    for (int64_t p = K / 2 - 1; p >= 0; p--) moe_heap_sift_down(vals, idx, K, p);
    for (int64_t j = K; j < M; j++) {
        float v = x[j * stride];
        if (v > vals[0]) { vals[0] = v; idx[0] = j; moe_heap_sift_down(vals, idx, K, 0); }
    }
    for (int64_t end = K - 1; end > 0; end--) { /* heap sort: worst goes to the back */
        float tv = vals[0]; vals[0] = vals[end]; vals[end] = tv;
        int64_t ti = idx[0]; idx[0] = idx[end]; idx[end] = ti;
        moe_heap_sift_down(vals, idx, end, 0);
    }
}

#endif

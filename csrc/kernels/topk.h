/* topk.h: deterministic top-k of one row (inline; used by routing and expert choice).
 * Order: larger value first, equal values by lower index. Inputs must hold no NaN (a NaN never
 * crashes nor yields an out-of-range or repeated index; K <= 16 ranks it after every number).
 *
 * K <= 16 (every router): moe_topk_small, free of data-dependent branches but for rare events:
 *   1. tau = the K-th largest of the 16 lane maxima (the maxima of the sets {j : j mod 16 = l}).
 *      K of those maxima are distinct elements >= tau, so tau <= the K-th largest element and
 *      only elements >= tau can be selected (about K + 2..4 of them for random rows).
 *   2. the candidates (x >= tau) are appended in index order to a buffer of at most 32; when it
 *      would overflow, it is cut down to its K best (still in index order) and tau becomes the
 *      K-th best so far (from then on only x > tau can enter: an equal later one loses the tie).
 *   3. ranks of the candidates by counting (value, then position = index order); rank r < K goes
 *      to output slot r.
 * The portable version does this with plain loops. With AVX-512 (MOE_HAVE_AVX512, defined by
 * isa_avx512.c) it runs on zmm registers: counts by lane rotations (valignd + compare + masked
 * add), the tau as a masked min, candidates by compress, and the output order as a permutation
 * (vpermd) built from the ranks. Counting first without the index tie-break and checking that the
 * K best ranks are each held once (else counting again with it) saves half the compares. Steps are
 * also exposed separately (moe_topk_tau / moe_topk_filter_mem / moe_rank_sort) so that route_rows
 * can run each over 16 rows in a row: per row they are short dependency chains, and consecutive
 * rows then overlap in the core. Every version gives the exact (unique) answer, so all ISAs agree. */
#ifndef MOEPY_TOPK_H
#define MOEPY_TOPK_H

#include <math.h>
#include <stdint.h>

#define MOE_TOPK_SMALL 16 /* moe_topk_small handles K <= this */
#define MOE_TOPK_CAP 32   /* candidate buffer of moe_topk_small */

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

/* insert (v, j) into the sorted list vals/idx of K entries, j larger than every held index */
static inline void moe_topk_insert(float *vals, int64_t *idx, int64_t K, float v, int64_t j) {
    int64_t pos = K - 1;
    while (pos > 0 && v > vals[pos - 1]) {
        vals[pos] = vals[pos - 1];
        idx[pos] = idx[pos - 1];
        pos--;
    }
    vals[pos] = v;
    idx[pos] = j;
}

/* Fallback of moe_topk_small for rows holding NaN: sorted insertion, NaN after every number. */
static inline int moe_before_nan_last(float va, int64_t ia, float vb, int64_t ib) {
    if (va != va) return vb != vb && ia < ib;
    if (vb != vb) return 1;
    return va > vb || (va == vb && ia < ib);
}

/* vals (K), idx (K) <- the K best of x (M) by moe_before_nan_last */
static inline void moe_topk_nan_safe(float *vals, int32_t *idx, const float *x, int64_t M, int K) {
    int n = 0;
    for (int64_t j = 0; j < M; j++) {
        const float v = x[j];
        if (n == K && !moe_before_nan_last(v, j, vals[K - 1], idx[K - 1])) continue;
        int pos = n < K ? n++ : K - 1;
        while (pos > 0 && moe_before_nan_last(v, j, vals[pos - 1], idx[pos - 1])) {
            vals[pos] = vals[pos - 1];
            idx[pos] = idx[pos - 1];
            pos--;
        }
        vals[pos] = v;
        idx[pos] = (int32_t)j;
    }
}

/* moe_topk_small: vals (K), idx (K) <- the K best of x (M), sorted best first; 1 <= K <= 16, K <= M */
#if defined(MOE_HAVE_AVX512)
#include "topk_avx512.h"
#else
#include "topk_generic.h"
#endif

/* vals (K), idx (K)  <-  x[j * stride] for j < M: the K best, sorted best first. 1 <= K <= M. */
static inline void moe_topk_row(float *vals, int64_t *idx, const float *x, int64_t stride, int64_t M,
                                int64_t K) {
    if (stride == 1 && K <= MOE_TOPK_SMALL && M <= INT32_MAX) {
        int32_t i32[MOE_TOPK_SMALL];
        moe_topk_small(vals, i32, x, M, (int)K);
        for (int64_t i = 0; i < K; i++) idx[i] = i32[i];
        return;
    }
    if (M <= 32 && stride == 1) { /* rank counting: branch-free, vectorisable for small rows */
        float lv[33];
        int64_t li[33]; /* slot 32 absorbs the ranks >= K without a branch */
        for (int64_t j = 0; j < M; j++) {
            const float v = x[j];
            int32_t rank = 0;
            for (int32_t i = 0; i < (int32_t)M; i++) rank += (x[i] > v) | ((x[i] == v) & (i < (int32_t)j));
            const int32_t slot = rank < (int32_t)K ? rank : 32;
            lv[slot] = v;
            li[slot] = j;
        }
        for (int64_t i = 0; i < K; i++) { vals[i] = lv[i]; idx[i] = li[i]; }
        return;
    }
    if (stride == 1 && K <= 32 && M <= 4096) { /* threshold from set maxima, then few candidates */
        /* Partition the row into nb >= K disjoint sets {j : j mod nb = b}; the K-th largest set
         * maximum tau is a lower bound of the K-th largest element, so only x >= tau compete. */
        const int64_t nb = K <= 16 ? 16 : 32;
        float smax[32], tv[32];
        int32_t cand[4096];
        for (int64_t b = 0; b < nb; b++) smax[b] = x[b];
        int64_t c = nb;
        for (; c + nb <= M; c += nb)
            for (int64_t b = 0; b < nb; b++) smax[b] = x[c + b] > smax[b] ? x[c + b] : smax[b];
        for (int64_t b = 0; c + b < M; b++) smax[b] = x[c + b] > smax[b] ? x[c + b] : smax[b];
        for (int64_t b = 0; b < nb; b++) { /* tv: the K largest set maxima, descending */
            const float v = smax[b];
            int64_t pos = b < K ? b : K;
            if (pos == K) {
                if (!(v > tv[K - 1])) continue;
                pos = K - 1;
            }
            while (pos > 0 && v > tv[pos - 1]) { tv[pos] = tv[pos - 1]; pos--; }
            tv[pos] = v;
        }
        const float tau = tv[K - 1];
        int64_t nc = 0, j = 0;
        for (; j + 8 <= M; j += 8) { /* skip chunks of 8 with no candidate */
            int any = 0;
            for (int l = 0; l < 8; l++) any |= x[j + l] >= tau;
            if (!any) continue;
            for (int l = 0; l < 8; l++) { cand[nc] = (int32_t)(j + l); nc += x[j + l] >= tau; }
        }
        for (; j < M; j++) { cand[nc] = (int32_t)j; nc += x[j] >= tau; }
        /* nc >= K; candidates are in index order, so insertion keeps ties by lower index */
        for (int64_t i = 0; i < nc; i++) {
            const float v = x[cand[i]];
            if (i < K) {
                moe_topk_insert(vals, idx, i + 1, v, cand[i]); /* the list grows to i + 1 */
            } else if (v > vals[K - 1]) {
                moe_topk_insert(vals, idx, K, v, cand[i]);
            }
        }
        return;
    }
    if (K <= 32) { /* sorted list; blocks of 16 below the current K-th value are skipped at once */
        for (int64_t j = 0; j < K; j++) moe_topk_insert(vals, idx, j + 1, x[j * stride], j); /* the list grows */
        int64_t j = K;
        for (; j + 16 <= M; j += 16) {
            const float kth = vals[K - 1];
            int any = 0;
            for (int l = 0; l < 16; l++) any |= x[(j + l) * stride] > kth;
            if (!any) continue;
            for (int l = 0; l < 16; l++) {
                const float v = x[(j + l) * stride];
                if (v > vals[K - 1]) moe_topk_insert(vals, idx, K, v, j + l);
            }
        }
        for (; j < M; j++) {
            const float v = x[j * stride];
            if (v > vals[K - 1]) moe_topk_insert(vals, idx, K, v, j);
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

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
#if defined(MOE_HAVE_AVX512)
#include <immintrin.h>
#endif

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

#if !defined(MOE_HAVE_AVX512)
/* rank (n) <- for each entry j of v (n <= MOE_TOPK_CAP, no NaN): #{i : v_i > v_j or (v_i == v_j, i < j)} */
static inline void moe_rank_entries(int32_t *rank, const float *v, int n) {
    for (int j = 0; j < n; j++) rank[j] = 0;
    for (int i = 0; i < n; i++) {
        const float vi = v[i];
        for (int j = 0; j < n; j++) rank[j] += (vi > v[j]) | ((vi == v[j]) & (i < j));
    }
}

/* cut the candidates cv/ci (*nc, index order) down to their K best, in index order; returns the
 * K-th best value */
static inline float moe_keep_best(float *cv, int32_t *ci, int *nc, int K) {
    int32_t rank[MOE_TOPK_CAP];
    const int n = *nc;
    moe_rank_entries(rank, cv, n);
    int w = 0;
    float kth = cv[0];
    for (int j = 0; j < n; j++) {
        const float v = cv[j];
        const int32_t i = ci[j];
        kth = rank[j] == K - 1 ? v : kth;
        cv[w] = v;
        ci[w] = i;
        w += rank[j] < K;
    }
    *nc = w;
    return kth;
}

/* vals (K), idx (K) <- the K best of x (M), sorted best first. 1 <= K <= MOE_TOPK_SMALL, K <= M. */
static inline void moe_topk_small(float *vals, int32_t *idx, const float *x, int64_t M, int K) {
    if (M <= 32) { /* short rows: rank every entry directly */
        float lv[33];
        int32_t li[33]; /* slot 32 absorbs the ranks >= K without a branch */
        int nan = 0;
        for (int j = 0; j < (int)M; j++) {
            const float v = x[j];
            int32_t rank = 0;
            nan |= v != v;
            for (int i = 0; i < (int)M; i++) rank += (x[i] > v) | ((x[i] == v) & (i < j));
            const int32_t slot = rank < K ? rank : 32;
            lv[slot] = v;
            li[slot] = j;
        }
        if (nan) {
            moe_topk_nan_safe(vals, idx, x, M, K);
            return;
        }
        for (int i = 0; i < K; i++) {
            vals[i] = lv[i];
            idx[i] = li[i];
        }
        return;
    }
    float tau;
    { /* tau: the K-th largest lane maximum */
        float lm[16];
        int32_t cnt[16];
        for (int l = 0; l < 16; l++) lm[l] = x[l];
        int64_t c = 16;
        for (; c + 16 <= M; c += 16)
            for (int l = 0; l < 16; l++) lm[l] = x[c + l] > lm[l] ? x[c + l] : lm[l];
        for (int l = 0; c + l < M; l++) lm[l] = x[c + l] > lm[l] ? x[c + l] : lm[l];
        for (int l = 0; l < 16; l++) cnt[l] = 0;
        for (int i = 0; i < 16; i++)
            for (int l = 0; l < 16; l++) cnt[l] += lm[i] > lm[l];
        tau = INFINITY;
        for (int l = 0; l < 16; l++) {
            const float t = cnt[l] < K ? lm[l] : INFINITY;
            tau = t < tau ? t : tau;
        }
    }
    float cv[MOE_TOPK_CAP + 1];
    int32_t ci[MOE_TOPK_CAP + 1];
    int nc = 0, strict = 0;
    int64_t j = 0;
    for (; j < M; j += 16) {
        const int len = M - j < 16 ? (int)(M - j) : 16;
        int any = 0;
        for (int l = 0; l < len; l++) any |= x[j + l] >= tau;
        if (!any) continue;
        for (int l = 0; l < len; l++) {
            const float v = x[j + l];
            cv[nc] = v;
            ci[nc] = (int32_t)(j + l);
            nc += strict ? v > tau : v >= tau;
            if (nc == MOE_TOPK_CAP) {
                tau = moe_keep_best(cv, ci, &nc, K);
                strict = 1;
            }
        }
    }
    if (nc < K) { /* only with NaN */
        moe_topk_nan_safe(vals, idx, x, M, K);
        return;
    }
    int32_t rank[MOE_TOPK_CAP];
    float lv[MOE_TOPK_CAP + 1];
    int32_t li[MOE_TOPK_CAP + 1];
    moe_rank_entries(rank, cv, nc);
    for (int i = 0; i < nc; i++) { /* slot MOE_TOPK_CAP absorbs the ranks >= K */
        const int slot = rank[i] < K ? rank[i] : MOE_TOPK_CAP;
        lv[slot] = cv[i];
        li[slot] = ci[i];
    }
    for (int i = 0; i < K; i++) {
        vals[i] = lv[i];
        idx[i] = li[i];
    }
}

#else /* MOE_HAVE_AVX512 */

/* lane j of v against lane (j + r) mod 16 of v, which holds a lower index iff j >= 16 - r */
#define MOE_RANK_STEP16(acc, r)                                                                        \
    do {                                                                                               \
        const __m512 rot_ = _mm512_castsi512_ps(_mm512_alignr_epi32(vi_, vi_, (r)));                   \
        const __mmask16 k_ = _mm512_cmp_ps_mask(rot_, v, _CMP_GT_OQ) |                                 \
                             _mm512_mask_cmp_ps_mask((__mmask16)(0xFFFFu << (16 - (r))), rot_, v, _CMP_EQ_OQ); \
        acc = _mm512_mask_sub_epi32(acc, k_, acc, m1_);                                                \
    } while (0)

/* ranks of the 16 lanes of v (no NaN): #{i : v_i > v_j or (v_i == v_j and i < j)}, a permutation */
static inline __m512i moe_rank16(__m512 v) {
    const __m512i vi_ = _mm512_castps_si512(v), m1_ = _mm512_set1_epi32(-1);
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    MOE_RANK_STEP16(a, 1); MOE_RANK_STEP16(b, 2); MOE_RANK_STEP16(a, 3); MOE_RANK_STEP16(b, 4);
    MOE_RANK_STEP16(a, 5); MOE_RANK_STEP16(b, 6); MOE_RANK_STEP16(a, 7); MOE_RANK_STEP16(b, 8);
    MOE_RANK_STEP16(a, 9); MOE_RANK_STEP16(b, 10); MOE_RANK_STEP16(a, 11); MOE_RANK_STEP16(b, 12);
    MOE_RANK_STEP16(a, 13); MOE_RANK_STEP16(b, 14); MOE_RANK_STEP16(a, 15);
    return _mm512_add_epi32(a, b);
}

#define MOE_RANK_STEP8(r)                                                                              \
    do {                                                                                               \
        const __m256 rot_ = _mm256_castsi256_ps(_mm256_alignr_epi32(vi_, vi_, (r)));                   \
        const __mmask8 k_ = _mm256_cmp_ps_mask(rot_, v, _CMP_GT_OQ) |                                  \
                            _mm256_mask_cmp_ps_mask((__mmask8)(0xFFu << (8 - (r))), rot_, v, _CMP_EQ_OQ); \
        cnt = _mm256_mask_sub_epi32(cnt, k_, cnt, m1_);                                                \
    } while (0)

/* the same for the low 8 lanes of v (zero-extended: lanes 8..15 of the result are 0) */
static inline __m512i moe_rank8(__m512 v16) {
    const __m256 v = _mm512_castps512_ps256(v16);
    const __m256i vi_ = _mm256_castps_si256(v), m1_ = _mm256_set1_epi32(-1);
    __m256i cnt = _mm256_setzero_si256();
    MOE_RANK_STEP8(1); MOE_RANK_STEP8(2); MOE_RANK_STEP8(3); MOE_RANK_STEP8(4);
    MOE_RANK_STEP8(5); MOE_RANK_STEP8(6); MOE_RANK_STEP8(7);
    return _mm512_zextsi256_si512(cnt);
}

/* acc_j += #{i : w_i PRED v_j} over the 16 lanes i of w */
#define MOE_CROSS_STEP(r, pred)                                                                        \
    do {                                                                                               \
        const __m512 rot_ = _mm512_castsi512_ps(_mm512_alignr_epi32(wi_, wi_, (r)));                   \
        acc = _mm512_mask_sub_epi32(acc, _mm512_cmp_ps_mask(rot_, v, pred), acc, m1_);                 \
    } while (0)
#define MOE_CROSS_ALL(pred)                                                                            \
    do {                                                                                               \
        MOE_CROSS_STEP(0, pred); MOE_CROSS_STEP(1, pred); MOE_CROSS_STEP(2, pred); MOE_CROSS_STEP(3, pred); \
        MOE_CROSS_STEP(4, pred); MOE_CROSS_STEP(5, pred); MOE_CROSS_STEP(6, pred); MOE_CROSS_STEP(7, pred); \
        MOE_CROSS_STEP(8, pred); MOE_CROSS_STEP(9, pred); MOE_CROSS_STEP(10, pred); MOE_CROSS_STEP(11, pred); \
        MOE_CROSS_STEP(12, pred); MOE_CROSS_STEP(13, pred); MOE_CROSS_STEP(14, pred); MOE_CROSS_STEP(15, pred); \
    } while (0)

/* ranks of 32 entries: a (lanes 0..15), then b (16..31), in index order */
static inline void moe_rank32(__m512 a, __m512 b, __m512i *ra, __m512i *rb) {
    const __m512i m1_ = _mm512_set1_epi32(-1);
    {
        const __m512 v = a;
        const __m512i wi_ = _mm512_castps_si512(b);
        __m512i acc = moe_rank16(a);
        MOE_CROSS_ALL(_CMP_GT_OQ); /* b's entries come later: only larger ones rank before */
        *ra = acc;
    }
    {
        const __m512 v = b;
        const __m512i wi_ = _mm512_castps_si512(a);
        __m512i acc = moe_rank16(b);
        MOE_CROSS_ALL(_CMP_GE_OQ); /* a's entries come earlier: equal ones rank before too */
        *rb = acc;
    }
}

/* the K-th largest of the 16 lanes of m (no NaN) */
static inline float moe_kth16(__m512 m, int K) {
    const __m512 v = m;
    const __m512i wi_ = _mm512_castps_si512(m), m1_ = _mm512_set1_epi32(-1);
    __m512i acc = _mm512_setzero_si512(), a1 = acc, a2 = acc;
    MOE_CROSS_STEP(1, _CMP_GT_OQ); MOE_CROSS_STEP(2, _CMP_GT_OQ); MOE_CROSS_STEP(3, _CMP_GT_OQ);
    MOE_CROSS_STEP(4, _CMP_GT_OQ); MOE_CROSS_STEP(5, _CMP_GT_OQ);
    a1 = acc; acc = a2;
    MOE_CROSS_STEP(6, _CMP_GT_OQ); MOE_CROSS_STEP(7, _CMP_GT_OQ); MOE_CROSS_STEP(8, _CMP_GT_OQ);
    MOE_CROSS_STEP(9, _CMP_GT_OQ); MOE_CROSS_STEP(10, _CMP_GT_OQ);
    a2 = acc; acc = _mm512_setzero_si512();
    MOE_CROSS_STEP(11, _CMP_GT_OQ); MOE_CROSS_STEP(12, _CMP_GT_OQ); MOE_CROSS_STEP(13, _CMP_GT_OQ);
    MOE_CROSS_STEP(14, _CMP_GT_OQ); MOE_CROSS_STEP(15, _CMP_GT_OQ);
    acc = _mm512_add_epi32(acc, _mm512_add_epi32(a1, a2));
    /* the lanes with fewer than K strictly larger lanes hold the values >= the K-th largest */
    return _mm512_mask_reduce_min_ps(_mm512_cmplt_epi32_mask(acc, _mm512_set1_epi32(K)), m);
}

/* lanes s < K of *pv, *iv <- lanes of p, ix ranked s (rank: the ranks of `nr` lanes, a permutation) */
static inline void moe_sort_out(__m512 *pv, __m512i *iv, __m512i rank, __mmask16 nr, __m512 p, __m512i ix, int K) {
    __m512i inv = _mm512_setzero_si512();
    for (int s = 0; s < K; s++) {
        const unsigned hit = (unsigned)_mm512_mask_cmpeq_epi32_mask(nr, rank, _mm512_set1_epi32(s));
        inv = _mm512_mask_set1_epi32(inv, (__mmask16)(1u << s), (int)__builtin_ctz(hit));
    }
    *pv = _mm512_permutexvar_ps(inv, p);
    *iv = _mm512_permutexvar_epi32(inv, ix);
}

/* #{i : v_i > v_j} for the 16 lanes j of v: the rank when the lanes hold distinct values */
static inline __m512i moe_rank16_gt(__m512 v) {
    const __m512i wi_ = _mm512_castps_si512(v), m1_ = _mm512_set1_epi32(-1);
    __m512i acc = _mm512_setzero_si512(), a1;
    MOE_CROSS_STEP(1, _CMP_GT_OQ); MOE_CROSS_STEP(2, _CMP_GT_OQ); MOE_CROSS_STEP(3, _CMP_GT_OQ);
    MOE_CROSS_STEP(4, _CMP_GT_OQ); MOE_CROSS_STEP(5, _CMP_GT_OQ); MOE_CROSS_STEP(6, _CMP_GT_OQ);
    MOE_CROSS_STEP(7, _CMP_GT_OQ);
    a1 = acc;
    acc = _mm512_setzero_si512();
    MOE_CROSS_STEP(8, _CMP_GT_OQ); MOE_CROSS_STEP(9, _CMP_GT_OQ); MOE_CROSS_STEP(10, _CMP_GT_OQ);
    MOE_CROSS_STEP(11, _CMP_GT_OQ); MOE_CROSS_STEP(12, _CMP_GT_OQ); MOE_CROSS_STEP(13, _CMP_GT_OQ);
    MOE_CROSS_STEP(14, _CMP_GT_OQ); MOE_CROSS_STEP(15, _CMP_GT_OQ);
    return _mm512_add_epi32(acc, a1);
}

/* the same for the low 8 lanes of v (lanes 8..15 of the result are 0) */
static inline __m512i moe_rank8_gt(__m512 v16) {
    const __m256 v = _mm512_castps512_ps256(v16);
    const __m256i vi_ = _mm256_castps_si256(v), m1_ = _mm256_set1_epi32(-1);
    __m256i a = _mm256_setzero_si256(), b = a;
#define MOE_GT_STEP8(acc, r)                                                                          \
    acc = _mm256_mask_sub_epi32(acc, _mm256_cmp_ps_mask(_mm256_castsi256_ps(_mm256_alignr_epi32(vi_, vi_, (r))), v, \
                                                        _CMP_GT_OQ), acc, m1_)
    MOE_GT_STEP8(a, 1); MOE_GT_STEP8(b, 2); MOE_GT_STEP8(a, 3); MOE_GT_STEP8(b, 4);
    MOE_GT_STEP8(a, 5); MOE_GT_STEP8(b, 6); MOE_GT_STEP8(a, 7);
#undef MOE_GT_STEP8
    return _mm512_zextsi256_si512(_mm256_add_epi32(a, b));
}

/* moe_sort_out for counts without the lane tie-break (moe_rank*_gt) over the lanes nr: exact when
 * those counts are all different (a permutation of 0..n-1), which is checked; returns 0 (outputs
 * unspecified) if not. The lane ranked s is found with a compress of the lane numbers, all in
 * vector registers. */
static inline int moe_sort_out_gt(__m512 *pv, __m512i *iv, __m512i rank, __mmask16 nr, __m512 p, __m512i ix, int K) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    /* a permutation iff the one-hot bits 1 << rank of the lanes nr cover 0..n-1 */
    const __m512i onehot = _mm512_maskz_sllv_epi32(nr, _mm512_set1_epi32(1), rank);
    if ((unsigned)_mm512_reduce_or_epi32(onehot) != (unsigned)nr) return 0;
    __m512i inv = _mm512_setzero_si512();
    for (int s = 0; s < K; s++) {
        const __mmask16 hit = _mm512_mask_cmpeq_epi32_mask(nr, rank, _mm512_set1_epi32(s));
        inv = _mm512_mask_broadcastd_epi32(inv, (__mmask16)(1u << s),
                                          _mm512_castsi512_si128(_mm512_maskz_compress_epi32(hit, iota)));
    }
    *pv = _mm512_permutexvar_ps(inv, p);
    *iv = _mm512_permutexvar_epi32(inv, ix);
    return 1;
}

/* rank the n <= 16 entries in lanes 0..n-1 of v (-inf after; no NaN) and put the K best of
 * p / ix in order into lanes 0..K-1 of *pv / *iv */
static inline void moe_rank_sort(__m512 *pv, __m512i *iv, __m512 v, int n, __m512 p, __m512i ix, int K) {
    const __mmask16 nr = (__mmask16)((1u << n) - 1);
    if (n <= 8) {
        if (__builtin_expect(moe_sort_out_gt(pv, iv, moe_rank8_gt(v), nr, p, ix, K), 1)) return;
        moe_sort_out(pv, iv, moe_rank8(v), 0xFF, p, ix, K);
    } else {
        if (__builtin_expect(moe_sort_out_gt(pv, iv, moe_rank16_gt(v), nr, p, ix, K), 1)) return;
        moe_sort_out(pv, iv, moe_rank16(v), 0xFFFF, p, ix, K);
    }
}

/* NaN fallback of moe_topk_avx512 */
static inline void moe_topk_avx512_nan(__m512 *pv, __m512i *iv, const float *x, const float *pay, int64_t M, int K) {
    float vals[MOE_TOPK_SMALL];
    int32_t idx[MOE_TOPK_SMALL];
    moe_topk_nan_safe(vals, idx, x, M, K);
    for (int i = 0; i < K; i++) vals[i] = pay[idx[i]];
    const __mmask16 km = (__mmask16)((1u << K) - 1);
    *pv = _mm512_maskz_loadu_ps(km, vals);
    *iv = _mm512_maskz_loadu_epi32(km, idx);
}

/* step 1 of moe_topk_avx512 for M > 16: the K-th largest lane maximum of x (M) */
static inline float moe_topk_tau(const float *x, int64_t M, int K) {
    __m512 mx = _mm512_loadu_ps(x);
    int64_t c = 16;
    for (; c + 16 <= M; c += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(x + c));
    const __mmask16 tail = (__mmask16)((1u << (M - c)) - 1);
    if (tail) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail, x + c));
    return moe_kth16(mx, K);
}

/* step 2 of moe_topk_avx512 for M > 16, given tau = moe_topk_tau(x, M, K): *cv, *cp, *ci <- the
 * candidates' values, payloads (pay[j]; cp = cv for pay = x) and indices in lanes 0..nc-1 (cv: -inf
 * after), in index order; returns nc, >= K unless x holds NaN. */
static inline int moe_topk_filter(__m512 *cvo, __m512 *cpo, __m512i *cio, const float *x, const float *pay,
                                  int64_t M, int K, float tau) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __mmask16 tail = (__mmask16)((1u << (M & 15)) - 1);
    /* candidates >= tau (> tau once the buffer was cut) appended in index order to registers
     * cv (values), cp (payload), ci (indices); lanes >= nc of cv hold -inf */
    __m512 vt = _mm512_set1_ps(tau), cv = ninf, cp = _mm512_setzero_ps();
    __m512i ci = _mm512_setzero_si512();
    int nc = 0;
    __mmask16 eq_ok = 0xFFFF;
    const int own = pay == x; /* payload = the values: cp is cv */
    for (int64_t c = 0; c < M; c += 16) {
        const __mmask16 lm = c + 16 <= M ? (__mmask16)0xFFFF : tail;
        const __m512 v = _mm512_maskz_loadu_ps(lm, x + c);
        const __mmask16 k = _mm512_mask_cmp_ps_mask(lm, v, vt, _CMP_GT_OQ) |
                            _mm512_mask_cmp_ps_mask(lm & eq_ok, v, vt, _CMP_EQ_OQ);
        const int n = __builtin_popcount((unsigned)k);
        const __m512 bv = _mm512_mask_compress_ps(ninf, k, v);
        const __m512 bp = own ? bv : _mm512_maskz_compress_ps(k, _mm512_maskz_loadu_ps(lm, pay + c));
        const __m512i bi = _mm512_maskz_compress_epi32(k, _mm512_add_epi32(iota, _mm512_set1_epi32((int)c)));
        if (__builtin_expect(nc + n <= 16, 1)) {
            const __mmask16 slots = (__mmask16)(((1u << n) - 1) << nc);
            cv = _mm512_mask_expand_ps(cv, slots, bv);
            if (!own) cp = _mm512_mask_expand_ps(cp, slots, bp);
            ci = _mm512_mask_expand_epi32(ci, slots, bi);
            nc += n;
            continue;
        }
        /* rare: keep the K best of the nc + n > 16 >= K candidates: a = the nc held then the first
         * 16 - nc new ones, b = the other new ones then -inf (so the order stays the index order) */
        const int fit = 16 - nc, rest = n - fit;
        const __mmask16 free_lanes = (__mmask16)(0xFFFFu << nc), brest = (__mmask16)((1u << rest) - 1);
        const __m512i shift = _mm512_add_epi32(iota, _mm512_set1_epi32(fit));
        const __m512 av = _mm512_mask_expand_ps(cv, free_lanes, bv);
        const __m512i ai = _mm512_mask_expand_epi32(ci, free_lanes, bi);
        const __m512 bv2 = _mm512_mask_permutexvar_ps(ninf, brest, shift, bv);
        const __m512i bi2 = _mm512_maskz_permutexvar_epi32(brest, shift, bi);
        __m512i ra, rb;
        moe_rank32(av, bv2, &ra, &rb);
        const __m512i vk = _mm512_set1_epi32(K);
        const __mmask16 ka = _mm512_cmplt_epi32_mask(ra, vk), kb = _mm512_mask_cmplt_epi32_mask(brest, rb, vk);
        const float kth_a = _mm512_mask_reduce_min_ps(ka, av), kth_b = _mm512_mask_reduce_min_ps(kb, bv2);
        const int na = __builtin_popcount((unsigned)ka);
        const __mmask16 slots = (__mmask16)(((1u << __builtin_popcount((unsigned)kb)) - 1) << na);
        cv = _mm512_mask_expand_ps(_mm512_mask_compress_ps(ninf, ka, av), slots, _mm512_maskz_compress_ps(kb, bv2));
        if (!own) {
            const __m512 ap = _mm512_mask_expand_ps(cp, free_lanes, bp);
            const __m512 bp2 = _mm512_maskz_permutexvar_ps(brest, shift, bp);
            cp = _mm512_mask_expand_ps(_mm512_maskz_compress_ps(ka, ap), slots, _mm512_maskz_compress_ps(kb, bp2));
        }
        ci = _mm512_mask_expand_epi32(_mm512_maskz_compress_epi32(ka, ai), slots, _mm512_maskz_compress_epi32(kb, bi2));
        nc = K;
        vt = _mm512_set1_ps(kth_a < kth_b ? kth_a : kth_b);
        eq_ok = 0;
    }
    if (own) cp = cv;
    *cvo = cv;
    *cpo = cp;
    *cio = ci;
    return nc;
}

/* cut the n <= 32 candidates cv/ci (and payloads cp unless NULL; index order, in memory) down to
 * their K best, still in index order; returns K, *kth <- the K-th best value */
static inline int moe_keep_best_mem(float *cv, float *cp, int32_t *ci, int n, int K, float *kth) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const __mmask16 ma = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 mb = n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    const __m512 a = _mm512_mask_loadu_ps(ninf, ma, cv), b = _mm512_mask_loadu_ps(ninf, mb, cv + 16);
    const __m512i ia = _mm512_loadu_si512(ci), ib = _mm512_loadu_si512(ci + 16);
    __m512i ra, rb;
    moe_rank32(a, b, &ra, &rb);
    const __m512i vk = _mm512_set1_epi32(K);
    const __mmask16 ka = _mm512_mask_cmplt_epi32_mask(ma, ra, vk), kb = _mm512_mask_cmplt_epi32_mask(mb, rb, vk);
    const float kth_a = _mm512_mask_reduce_min_ps(ka, a), kth_b = _mm512_mask_reduce_min_ps(kb, b);
    const int na = __builtin_popcount((unsigned)ka);
    if (cp) {
        const __m512 pa = _mm512_loadu_ps(cp), pb = _mm512_loadu_ps(cp + 16);
        _mm512_storeu_ps(cp, _mm512_maskz_compress_ps(ka, pa));
        _mm512_storeu_ps(cp + na, _mm512_maskz_compress_ps(kb, pb));
    }
    _mm512_storeu_ps(cv, _mm512_mask_compress_ps(ninf, ka, a));
    _mm512_storeu_si512(ci, _mm512_maskz_compress_epi32(ka, ia));
    _mm512_storeu_ps(cv + na, _mm512_mask_compress_ps(ninf, kb, b));
    _mm512_storeu_si512(ci + na, _mm512_maskz_compress_epi32(kb, ib));
    *kth = kth_a < kth_b ? kth_a : kth_b;
    return na + __builtin_popcount((unsigned)kb);
}

/* one step of a candidate filter into memory (moe_topk_filter_mem): append the lanes k of v (and of
 * the payload p when cp) with indices c + lane; cut the buffer first if it would overflow */
#define MOE_FILTER_STEP(v, p, c, lm)                                                                 \
    do {                                                                                             \
        __mmask16 k_ = _mm512_mask_cmp_ps_mask((lm), (v), vt, _CMP_GT_OQ) |                          \
                       _mm512_mask_cmp_ps_mask((lm) & eq_ok, (v), vt, _CMP_EQ_OQ);                   \
        int n_ = __builtin_popcount((unsigned)k_);                                                   \
        if (__builtin_expect(nc + n_ > 32, 0)) {                                                     \
            float kth_;                                                                              \
            nc = moe_keep_best_mem(cv, cp, ci, nc, K, &kth_);                                        \
            vt = _mm512_set1_ps(kth_);                                                               \
            eq_ok = 0;                                                                               \
            k_ = _mm512_mask_cmp_ps_mask((lm), (v), vt, _CMP_GT_OQ);                                 \
            n_ = __builtin_popcount((unsigned)k_);                                                   \
        }                                                                                            \
        _mm512_storeu_ps(cv + nc, _mm512_mask_compress_ps(_mm512_set1_ps(-INFINITY), k_, (v)));     \
        if (cp) _mm512_storeu_ps(cp + nc, _mm512_maskz_compress_ps(k_, (p)));                        \
        _mm512_storeu_si512(ci + nc, _mm512_maskz_compress_epi32(k_, _mm512_add_epi32(iota, _mm512_set1_epi32((int)(c))))); \
        nc += n_;                                                                                    \
    } while (0)

/* moe_topk_filter with the candidates (values cv, indices ci) appended to memory, cv/ci holding at
 * least 48 entries; for callers that read them back much later (no store-forwarding stall, no
 * dependency chain through registers). Returns nc, <= 16, >= K unless x holds NaN. */
static inline int moe_topk_filter_mem(float *cv, int32_t *ci, const float *x, int64_t M, int K, float tau) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __mmask16 tail = (__mmask16)((1u << (M & 15)) - 1);
    float *const cp = NULL;
    __m512 vt = _mm512_set1_ps(tau);
    int nc = 0;
    __mmask16 eq_ok = 0xFFFF;
    int64_t c = 0;
    for (; c + 16 <= M; c += 16) {
        const __m512 v = _mm512_loadu_ps(x + c);
        MOE_FILTER_STEP(v, v, c, 0xFFFF);
    }
    if (tail) {
        const __m512 v = _mm512_maskz_loadu_ps(tail, x + c);
        MOE_FILTER_STEP(v, v, c, tail);
    }
    float kth;
    if (__builtin_expect(nc > 16, 0)) nc = moe_keep_best_mem(cv, cp, ci, nc, K, &kth);
    return nc;
}

/* step 3: the ranked output of the nc (>= K) candidates from moe_topk_filter */
static inline void moe_topk_finish(__m512 *pv, __m512i *iv, __m512 cv, __m512 cp, __m512i ci, int nc, int K) {
    moe_rank_sort(pv, iv, cv, nc, cp, ci, K);
}

/* steps 2 and 3 of moe_topk_avx512 for M > 16, given tau = moe_topk_tau(x, M, K) */
static inline void moe_topk_select(__m512 *pv, __m512i *iv, const float *x, const float *pay, int64_t M, int K,
                                   float tau) {
    __m512 cv, cp;
    __m512i ci;
    const int nc = moe_topk_filter(&cv, &cp, &ci, x, pay, M, K, tau);
    if (nc < K) { /* only with NaN */
        moe_topk_avx512_nan(pv, iv, x, pay, M, K);
        return;
    }
    moe_topk_finish(pv, iv, cv, cp, ci, nc, K);
}

/* Lanes s < K: *iv the index of the s-th best of x (M) and *pv pay at that index (pay = x for the
 * values themselves). 1 <= K <= MOE_TOPK_SMALL, K <= M. */
static inline void moe_topk_avx512(__m512 *pv, __m512i *iv, const float *x, const float *pay, int64_t M, int K) {
    if (M <= 16) { /* rank the row itself; lanes past M hold -inf and rank after every entry */
        const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const __mmask16 tm = (__mmask16)((1u << M) - 1);
        const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tm, x);
        if (_mm512_mask_cmp_ps_mask(tm, v, v, _CMP_UNORD_Q)) { moe_topk_avx512_nan(pv, iv, x, pay, M, K); return; }
        const __m512 p = pay == x ? v : _mm512_maskz_loadu_ps(tm, pay);
        moe_rank_sort(pv, iv, v, (int)M, p, iota, K);
        return;
    }
    moe_topk_select(pv, iv, x, pay, M, K, moe_topk_tau(x, M, K));
}

/* vals (K), idx (K) <- the K best of x (M), sorted best first. 1 <= K <= MOE_TOPK_SMALL, K <= M. */
static inline void moe_topk_small(float *vals, int32_t *idx, const float *x, int64_t M, int K) {
    __m512 pv;
    __m512i iv;
    moe_topk_avx512(&pv, &iv, x, x, M, K);
    const __mmask16 km = (__mmask16)((1u << K) - 1);
    _mm512_mask_storeu_ps(vals, km, pv);
    _mm512_mask_storeu_epi32(idx, km, iv);
}
#endif /* MOE_HAVE_AVX512 */

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
                int64_t pos = i;
                while (pos > 0 && v > vals[pos - 1]) { vals[pos] = vals[pos - 1]; idx[pos] = idx[pos - 1]; pos--; }
                vals[pos] = v;
                idx[pos] = cand[i];
            } else if (v > vals[K - 1]) {
                moe_topk_insert(vals, idx, K, v, cand[i]);
            }
        }
        return;
    }
    if (K <= 32) { /* sorted list; blocks of 16 below the current K-th value are skipped at once */
        for (int64_t j = 0; j < K; j++) {
            const float v = x[j * stride];
            int64_t pos = j;
            while (pos > 0 && v > vals[pos - 1]) {
                vals[pos] = vals[pos - 1];
                idx[pos] = idx[pos - 1];
                pos--;
            }
            vals[pos] = v;
            idx[pos] = j;
        }
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

/* topk_avx512.h: moe_topk_small and its steps on zmm registers (AVX-512 build; included by topk.h,
 * which describes the method): counts by lane rotations (valignd + compare + masked add), tau as a
 * masked min, candidates by compress, the output order as a permutation (vpermd) built from the
 * ranks. The lane rotations take immediates: the helpers are always_inline and called with
 * constants. */
#include <immintrin.h>

/* lane j <- lane (j + r) mod 16 of v; r must be a constant (an immediate of valignd) */
static inline __attribute__((always_inline)) __m512 moe_rot16(__m512 v, const int r) {
    return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(v), _mm512_castps_si512(v), r));
}

static inline __attribute__((always_inline)) __m256 moe_rot8(__m256 v, const int r) {
    return _mm256_castsi256_ps(_mm256_alignr_epi32(_mm256_castps_si256(v), _mm256_castps_si256(v), r));
}

/* acc_j + 1 where lane (j + r) mod 16 of v ranks before lane j: larger, or equal and of a lower
 * index (j >= 16 - r) */
static inline __attribute__((always_inline)) __m512i moe_rank_step16(__m512i acc, __m512 v, const int r) {
    const __m512 rot = moe_rot16(v, r);
    const __mmask16 k = _mm512_cmp_ps_mask(rot, v, _CMP_GT_OQ) |
                        _mm512_mask_cmp_ps_mask((__mmask16)(0xFFFFu << (16 - r)), rot, v, _CMP_EQ_OQ);
    return _mm512_mask_sub_epi32(acc, k, acc, _mm512_set1_epi32(-1));
}

/* the same over 8 lanes */
static inline __attribute__((always_inline)) __m256i moe_rank_step8(__m256i acc, __m256 v, const int r) {
    const __m256 rot = moe_rot8(v, r);
    const __mmask8 k = _mm256_cmp_ps_mask(rot, v, _CMP_GT_OQ) |
                       _mm256_mask_cmp_ps_mask((__mmask8)(0xFFu << (8 - r)), rot, v, _CMP_EQ_OQ);
    return _mm256_mask_sub_epi32(acc, k, acc, _mm256_set1_epi32(-1));
}

/* acc_j + 1 where lane (j + r) mod 16 of w compares `pred` (a constant _CMP_*) to lane j of v */
static inline __attribute__((always_inline)) __m512i moe_cross_step(__m512i acc, __m512 v, __m512 w, const int r, const int pred) {
    return _mm512_mask_sub_epi32(acc, _mm512_cmp_ps_mask(moe_rot16(w, r), v, pred), acc, _mm512_set1_epi32(-1));
}

/* acc_j + 1 where lane (j + r) mod 8 of v is larger than lane j */
static inline __attribute__((always_inline)) __m256i moe_gt_step8(__m256i acc, __m256 v, const int r) {
    return _mm256_mask_sub_epi32(acc, _mm256_cmp_ps_mask(moe_rot8(v, r), v, _CMP_GT_OQ), acc, _mm256_set1_epi32(-1));
}

/* acc_j + #{i : w_i pred v_j} over the 16 lanes i of w */
static inline __attribute__((always_inline)) __m512i moe_cross_all(__m512i acc, __m512 v, __m512 w, const int pred) {
    acc = moe_cross_step(acc, v, w, 0, pred);
    acc = moe_cross_step(acc, v, w, 1, pred);
    acc = moe_cross_step(acc, v, w, 2, pred);
    acc = moe_cross_step(acc, v, w, 3, pred);
    acc = moe_cross_step(acc, v, w, 4, pred);
    acc = moe_cross_step(acc, v, w, 5, pred);
    acc = moe_cross_step(acc, v, w, 6, pred);
    acc = moe_cross_step(acc, v, w, 7, pred);
    acc = moe_cross_step(acc, v, w, 8, pred);
    acc = moe_cross_step(acc, v, w, 9, pred);
    acc = moe_cross_step(acc, v, w, 10, pred);
    acc = moe_cross_step(acc, v, w, 11, pred);
    acc = moe_cross_step(acc, v, w, 12, pred);
    acc = moe_cross_step(acc, v, w, 13, pred);
    acc = moe_cross_step(acc, v, w, 14, pred);
    acc = moe_cross_step(acc, v, w, 15, pred);
    return acc;
}

/* ranks of the 16 lanes of v (no NaN): #{i : v_i > v_j or (v_i == v_j and i < j)}, a permutation */
static inline __m512i moe_rank16(__m512 v) {
    __m512i a = _mm512_setzero_si512(), b = a; /* two chains */
    a = moe_rank_step16(a, v, 1); b = moe_rank_step16(b, v, 2);
    a = moe_rank_step16(a, v, 3); b = moe_rank_step16(b, v, 4);
    a = moe_rank_step16(a, v, 5); b = moe_rank_step16(b, v, 6);
    a = moe_rank_step16(a, v, 7); b = moe_rank_step16(b, v, 8);
    a = moe_rank_step16(a, v, 9); b = moe_rank_step16(b, v, 10);
    a = moe_rank_step16(a, v, 11); b = moe_rank_step16(b, v, 12);
    a = moe_rank_step16(a, v, 13); b = moe_rank_step16(b, v, 14);
    a = moe_rank_step16(a, v, 15);
    return _mm512_add_epi32(a, b);
}

/* the same for the low 8 lanes of v (zero-extended: lanes 8..15 of the result are 0) */
static inline __m512i moe_rank8(__m512 v16) {
    const __m256 v = _mm512_castps512_ps256(v16);
    __m256i cnt = _mm256_setzero_si256();
    cnt = moe_rank_step8(cnt, v, 1);
    cnt = moe_rank_step8(cnt, v, 2);
    cnt = moe_rank_step8(cnt, v, 3);
    cnt = moe_rank_step8(cnt, v, 4);
    cnt = moe_rank_step8(cnt, v, 5);
    cnt = moe_rank_step8(cnt, v, 6);
    cnt = moe_rank_step8(cnt, v, 7);
    return _mm512_zextsi256_si512(cnt);
}

/* ranks of 32 entries: a (lanes 0..15), then b (16..31), in index order */
static inline void moe_rank32(__m512 a, __m512 b, __m512i *ra, __m512i *rb) {
    *ra = moe_cross_all(moe_rank16(a), a, b, _CMP_GT_OQ); /* b's entries come later: only larger ones rank before */
    *rb = moe_cross_all(moe_rank16(b), b, a, _CMP_GE_OQ); /* a's entries come earlier: equal ones rank before too */
}

/* the K-th largest of the 16 lanes of m (no NaN) */
static inline float moe_kth16(__m512 m, int K) {
    __m512i a1 = _mm512_setzero_si512(), a2 = a1, a3 = a1; /* three chains */
    a1 = moe_cross_step(a1, m, m, 1, _CMP_GT_OQ); a2 = moe_cross_step(a2, m, m, 6, _CMP_GT_OQ); a3 = moe_cross_step(a3, m, m, 11, _CMP_GT_OQ);
    a1 = moe_cross_step(a1, m, m, 2, _CMP_GT_OQ); a2 = moe_cross_step(a2, m, m, 7, _CMP_GT_OQ); a3 = moe_cross_step(a3, m, m, 12, _CMP_GT_OQ);
    a1 = moe_cross_step(a1, m, m, 3, _CMP_GT_OQ); a2 = moe_cross_step(a2, m, m, 8, _CMP_GT_OQ); a3 = moe_cross_step(a3, m, m, 13, _CMP_GT_OQ);
    a1 = moe_cross_step(a1, m, m, 4, _CMP_GT_OQ); a2 = moe_cross_step(a2, m, m, 9, _CMP_GT_OQ); a3 = moe_cross_step(a3, m, m, 14, _CMP_GT_OQ);
    a1 = moe_cross_step(a1, m, m, 5, _CMP_GT_OQ); a2 = moe_cross_step(a2, m, m, 10, _CMP_GT_OQ); a3 = moe_cross_step(a3, m, m, 15, _CMP_GT_OQ);
    const __m512i acc = _mm512_add_epi32(a3, _mm512_add_epi32(a1, a2));
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
    __m512i a = _mm512_setzero_si512(), b = a; /* two chains */
    a = moe_cross_step(a, v, v, 1, _CMP_GT_OQ); b = moe_cross_step(b, v, v, 8, _CMP_GT_OQ);
    a = moe_cross_step(a, v, v, 2, _CMP_GT_OQ); b = moe_cross_step(b, v, v, 9, _CMP_GT_OQ);
    a = moe_cross_step(a, v, v, 3, _CMP_GT_OQ); b = moe_cross_step(b, v, v, 10, _CMP_GT_OQ);
    a = moe_cross_step(a, v, v, 4, _CMP_GT_OQ); b = moe_cross_step(b, v, v, 11, _CMP_GT_OQ);
    a = moe_cross_step(a, v, v, 5, _CMP_GT_OQ); b = moe_cross_step(b, v, v, 12, _CMP_GT_OQ);
    a = moe_cross_step(a, v, v, 6, _CMP_GT_OQ); b = moe_cross_step(b, v, v, 13, _CMP_GT_OQ);
    a = moe_cross_step(a, v, v, 7, _CMP_GT_OQ); b = moe_cross_step(b, v, v, 14, _CMP_GT_OQ);
    b = moe_cross_step(b, v, v, 15, _CMP_GT_OQ);
    return _mm512_add_epi32(a, b);
}

/* the same for the low 8 lanes of v (lanes 8..15 of the result are 0) */
static inline __m512i moe_rank8_gt(__m512 v16) {
    const __m256 v = _mm512_castps512_ps256(v16);
    __m256i a = _mm256_setzero_si256(), b = a;
    a = moe_gt_step8(a, v, 1); b = moe_gt_step8(b, v, 2);
    a = moe_gt_step8(a, v, 3); b = moe_gt_step8(b, v, 4);
    a = moe_gt_step8(a, v, 5); b = moe_gt_step8(b, v, 6);
    a = moe_gt_step8(a, v, 7);
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

/* A candidate filter into memory: values cv, payloads cp (NULL: none) and indices ci (each with
 * room for 48) of the entries above the threshold vt (or equal to it while eq_ok), in index order;
 * nc of them. When the buffer would pass 32 it is cut to its K best and vt becomes the K-th. */
typedef struct {
    float *cv, *cp;
    int32_t *ci;
    int nc, K;
    __m512 vt;
    __mmask16 eq_ok;
} moe_filter;

static inline __attribute__((always_inline)) moe_filter moe_filter_start(float *cv, float *cp, int32_t *ci, int K,
                                                                         float tau) {
    const moe_filter f = {cv, cp, ci, 0, K, _mm512_set1_ps(tau), (__mmask16)0xFFFF};
    return f;
}

/* append the lanes lm of v that pass (payload p when cp), with indices c + lane */
static inline __attribute__((always_inline)) void moe_filter_step(moe_filter *f, __m512 v, __m512 p, int64_t c,
                                                                  __mmask16 lm) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __mmask16 k = _mm512_mask_cmp_ps_mask(lm, v, f->vt, _CMP_GT_OQ) |
                  _mm512_mask_cmp_ps_mask(lm & f->eq_ok, v, f->vt, _CMP_EQ_OQ);
    int n = __builtin_popcount((unsigned)k);
    if (__builtin_expect(f->nc + n > 32, 0)) {
        float kth;
        f->nc = moe_keep_best_mem(f->cv, f->cp, f->ci, f->nc, f->K, &kth);
        f->vt = _mm512_set1_ps(kth);
        f->eq_ok = 0;
        k = _mm512_mask_cmp_ps_mask(lm, v, f->vt, _CMP_GT_OQ);
        n = __builtin_popcount((unsigned)k);
    }
    _mm512_storeu_ps(f->cv + f->nc, _mm512_mask_compress_ps(_mm512_set1_ps(-INFINITY), k, v));
    if (f->cp) _mm512_storeu_ps(f->cp + f->nc, _mm512_maskz_compress_ps(k, p));
    _mm512_storeu_si512(f->ci + f->nc, _mm512_maskz_compress_epi32(k, _mm512_add_epi32(iota, _mm512_set1_epi32((int)c))));
    f->nc += n;
}

/* the final cut to at most 16 candidates; returns their number (>= K unless the row held NaN) */
static inline __attribute__((always_inline)) int moe_filter_end(moe_filter *f) {
    float kth;
    if (__builtin_expect(f->nc > 16, 0)) f->nc = moe_keep_best_mem(f->cv, f->cp, f->ci, f->nc, f->K, &kth);
    return f->nc;
}

/* moe_topk_filter with the candidates (values cv, indices ci) appended to memory, cv/ci holding at
 * least 48 entries; for callers that read them back much later (no store-forwarding stall, no
 * dependency chain through registers). Returns nc, <= 16, >= K unless x holds NaN. */
static inline int moe_topk_filter_mem(float *cv, int32_t *ci, const float *x, int64_t M, int K, float tau) {
    const __mmask16 tail = (__mmask16)((1u << (M & 15)) - 1);
    moe_filter f = moe_filter_start(cv, NULL, ci, K, tau);
    int64_t c = 0;
    for (; c + 16 <= M; c += 16) {
        const __m512 v = _mm512_loadu_ps(x + c);
        moe_filter_step(&f, v, v, c, 0xFFFF);
    }
    if (tail) {
        const __m512 v = _mm512_maskz_loadu_ps(tail, x + c);
        moe_filter_step(&f, v, v, c, tail);
    }
    return moe_filter_end(&f);
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

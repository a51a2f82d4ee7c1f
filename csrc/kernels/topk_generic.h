/* topk_generic.h: moe_topk_small with plain loops (scalar and AVX2 builds; included by topk.h,
 * which describes the method). */

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


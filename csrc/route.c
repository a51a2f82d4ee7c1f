/* route.c: router scoring, selection bias, group-limited selection, top-k and routing weights. */
#include "moe.h"
#include "kernels.h"
#include "parallel.h"
#include "topk.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

moe_status moe_route_check(const moe_route_params *p, int64_t E) {
    if (E < 1 || E > INT32_MAX) return MOE_EINVAL;
    if (p->top_k < 1 || p->top_k > E) return MOE_EINVAL;
    if (p->scoring != MOE_SCORE_SOFTMAX && p->scoring != MOE_SCORE_SIGMOID) return MOE_EINVAL;
    if (p->group_score != MOE_GROUP_MAX && p->group_score != MOE_GROUP_TOP2_SUM) return MOE_EINVAL;
    if (p->n_group < 1 || E % p->n_group != 0) return MOE_EINVAL;
    if (p->topk_group < 1 || p->topk_group > p->n_group) return MOE_EINVAL;
    if (p->n_group > 1 && p->topk_group * (E / p->n_group) < p->top_k) return MOE_EINVAL;
    if (!(p->norm_p > 0.0f) || !isfinite(p->norm_p) || !(p->norm_eps >= 0.0f) || isnan(p->scale))
        return MOE_EINVAL;
    if (isnan(p->group_mask_value)) return MOE_EINVAL;
    return MOE_OK;
}

static int row_has_nan(const float *x, int64_t n) {
    int nan = 0;
    for (int64_t i = 0; i < n; i++) nan |= isnan(x[i]);
    return nan;
}

/* out (n) = softmax(x (n)); a row holding +inf shares the mass among its +inf entries, an all -inf
 * row is uniform (the limits of finite rows). */
static void softmax_row(float *out, const float *x, int64_t n, const moe_kernel_table *kt) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    if (m == INFINITY || m == -INFINITY) {
        int64_t c = 0;
        for (int64_t i = 0; i < n; i++) c += x[i] == m;
        for (int64_t i = 0; i < n; i++) out[i] = x[i] == m ? 1.0f / (float)c : 0.0f;
        return;
    }
    float sum = kt->exp_shift_sum(out, x, n, m);
    for (int64_t i = 0; i < n; i++) out[i] /= sum;
}

/* sel (E) <- sel with the experts of all but the best topk_group groups set to mask_value */
static void mask_groups(float *sel, float *gvals, int64_t *gidx, float *gscore, int64_t E,
                        const moe_route_params *p) {
    int64_t G = p->n_group, gs = E / G;
    for (int64_t g = 0; g < G; g++) {
        const float *s = sel + g * gs;
        float a = -INFINITY, b = -INFINITY; /* best and second best */
        for (int64_t j = 0; j < gs; j++) {
            if (s[j] > a) { b = a; a = s[j]; }
            else if (s[j] > b) b = s[j];
        }
        gscore[g] = (p->group_score == MOE_GROUP_TOP2_SUM && gs > 1) ? a + b : a;
    }
    moe_topk_row(gvals, gidx, gscore, 1, G, p->topk_group);
    for (int64_t g = 0; g < G; g++) gscore[g] = 0.0f; /* reuse as the keep mask */
    for (int64_t i = 0; i < p->topk_group; i++) gscore[gidx[i]] = 1.0f;
    for (int64_t g = 0; g < G; g++)
        if (gscore[g] == 0.0f)
            for (int64_t j = 0; j < gs; j++) sel[g * gs + j] = p->group_mask_value;
}

/* w (K) <- normalised, scaled weights */
static void finish_weights(float *w, int64_t K, const moe_route_params *p) {
    if (p->normalize) {
        float norm = 0.0f;
        if (p->norm_p == 1.0f) {
            for (int64_t i = 0; i < K; i++) norm += fabsf(w[i]);
        } else if (p->norm_p == 2.0f) {
            for (int64_t i = 0; i < K; i++) norm += w[i] * w[i];
            norm = sqrtf(norm);
        } else {
            for (int64_t i = 0; i < K; i++) norm += powf(fabsf(w[i]), p->norm_p);
            norm = powf(norm, 1.0f / p->norm_p);
        }
        float denom = norm + p->norm_eps;
        if (denom > 0.0f) /* an all-zero selection stays zero instead of 0/0 */
            for (int64_t i = 0; i < K; i++) w[i] /= denom;
    }
    if (p->scale != 1.0f)
        for (int64_t i = 0; i < K; i++) w[i] *= p->scale;
}

/* scratch floats per thread: sel (E), group scores + values (2G), top-k values (K) */
static int64_t route_scratch_floats(int64_t E, int64_t G, int64_t K) { return E + 2 * G + K; }

/* one token: weights (K), experts (K), scores (E) <- logits (E) */
static void route_one(float *w, int32_t *experts, float *scores, const float *logits,
                      const float *bias, int64_t E, const moe_route_params *p,
                      const moe_kernel_table *kt, float *fscratch, int64_t *iscratch) {
    const int64_t K = p->top_k, G = p->n_group;
    float *sel = fscratch, *gscore = sel + E, *gvals = gscore + G, *kvals = gvals + G;
    int64_t *kidx = iscratch, *gidx = kidx + K;

    if (p->scoring == MOE_SCORE_SOFTMAX) softmax_row(scores, logits, E, kt);
    else kt->sigmoid(scores, logits, E);

    const float *basis = p->topk_before_score ? logits : scores;
    if (bias) for (int64_t j = 0; j < E; j++) sel[j] = basis[j] + bias[j];
    else memcpy(sel, basis, (size_t)E * sizeof(float));
    if (G > 1) mask_groups(sel, gvals, gidx, gscore, E, p);
    moe_topk_row(kvals, kidx, sel, 1, E, K);

    for (int64_t i = 0; i < K; i++) experts[i] = (int32_t)kidx[i];
    if (!p->topk_before_score) {
        for (int64_t i = 0; i < K; i++) w[i] = scores[kidx[i]];
    } else {
        for (int64_t i = 0; i < K; i++) kvals[i] = logits[kidx[i]];
        if (p->scoring == MOE_SCORE_SOFTMAX) softmax_row(w, kvals, K, kt);
        else kt->sigmoid(w, kvals, K);
    }
    finish_weights(w, K, p);
}

moe_status moe_route(float *weights, int32_t *experts, float *scores, int64_t *bad_row,
                     const float *logits, const float *bias, int64_t T, int64_t E,
                     const moe_route_params *p) {
    if (T < 0 || moe_route_check(p, E) != MOE_OK) return MOE_EINVAL;
    if (moe_mul_checked(T, E) < 0) return MOE_EOVERFLOW;
    const int64_t K = p->top_k, G = p->n_group;
    const int nthreads = moe_get_num_threads();
    const int64_t nf = route_scratch_floats(E, G, K), ni = K + G;
    float *fscratch = malloc((size_t)(nf * nthreads) * sizeof(float));
    int64_t *iscratch = malloc((size_t)(ni * nthreads) * sizeof(int64_t));
    if (!fscratch || !iscratch) { free(fscratch); free(iscratch); return MOE_ENOMEM; }
    const moe_kernel_table *kt = moe_kernels();
    int64_t bad = INT64_MAX;

#pragma omp parallel num_threads(nthreads) if (T * E >= MOE_PARALLEL_MIN_WORK)
    {
        const int tid = MOE_THREAD_ID();
#pragma omp for schedule(static) reduction(min : bad)
        for (int64_t t = 0; t < T; t++) {
            const float *row = logits + t * E;
            float *w = weights + t * K;
            int32_t *ex = experts + t * K;
            if (row_has_nan(row, E)) { /* defined output even on error: zero weights, ids 0..K-1 */
                if (t < bad) bad = t;
                for (int64_t i = 0; i < K; i++) { w[i] = 0.0f; ex[i] = (int32_t)i; }
                memset(scores + t * E, 0, (size_t)E * sizeof(float));
                continue;
            }
            route_one(w, ex, scores + t * E, row, bias, E, p, kt, fscratch + tid * nf,
                      iscratch + tid * ni);
        }
    }
    free(fscratch);
    free(iscratch);
    if (bad != INT64_MAX) { *bad_row = bad; return MOE_ENAN; }
    return MOE_OK;
}

moe_status moe_topk(float *values, int64_t *indices, int64_t *bad_row, const float *x, int64_t R,
                    int64_t M, int64_t K) {
    if (R < 0 || M < 1 || K < 1 || K > M) return MOE_EINVAL;
    if (moe_mul_checked(R, M) < 0) return MOE_EOVERFLOW;
    int64_t bad = INT64_MAX;
#pragma omp parallel for schedule(static) num_threads(moe_get_num_threads()) \
    if (R * M >= MOE_PARALLEL_MIN_WORK) reduction(min : bad)
    for (int64_t r = 0; r < R; r++) {
        if (row_has_nan(x + r * M, M)) {
            if (r < bad) bad = r;
            for (int64_t i = 0; i < K; i++) { values[r * K + i] = NAN; indices[r * K + i] = i; }
            continue;
        }
        moe_topk_row(values + r * K, indices + r * K, x + r * M, 1, M, K);
    }
    if (bad != INT64_MAX) { *bad_row = bad; return MOE_ENAN; }
    return MOE_OK;
}

/* route.c: router scoring, selection bias, group-limited selection, top-k and routing weights. */
#include "moe.h"
#include "kernels.h"
#include "parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* see moe.h: params against E */
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

/* scratch per thread: floats sel (E), group scores + values (2G), top-k values (K); int64 K + G */
static int64_t route_scratch_floats(int64_t E, int64_t G, int64_t K) { return E + 2 * G + K; }

#define ROUTE_BLOCK_ROWS 32 /* rows scored together: keeps small-E softmax vectorised */
#define ROUTE_PARALLEL_MIN_WORK 4096

/* route row blocks [b0, b1) of moe_route; returns the first NaN row or INT64_MAX */
static int64_t route_blocks(int64_t b0, int64_t b1, float *weights, int32_t *experts, float *scores,
                            const float *logits, const float *bias, int64_t T, int64_t E, const moe_route_params *p,
                            const moe_kernel_table *kt, float *fs, int64_t *is) {
    int64_t bad = INT64_MAX;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t t0 = b * ROUTE_BLOCK_ROWS, t1 = t0 + ROUTE_BLOCK_ROWS < T ? t0 + ROUTE_BLOCK_ROWS : T;
        const int64_t rb = kt->route_rows(weights, experts, scores, logits, bias, t0, t1, E, p, fs, is);
        if (rb < bad) bad = rb;
    }
    return bad;
}

/* weights (T, K), experts (T, K), scores (T, E) <- logits (T, E), bias (E): blocks of rows over the threads */
moe_status moe_route(float *weights, int32_t *experts, float *scores, int64_t *bad_row,
                     const float *logits, const float *bias, int64_t T, int64_t E,
                     const moe_route_params *p) {
    if (T < 0 || moe_route_check(p, E) != MOE_OK) return MOE_EINVAL;
    if (moe_mul_checked(T, E) < 0) return MOE_EOVERFLOW;
    const int64_t K = p->top_k, G = p->n_group;
    const int64_t nf = route_scratch_floats(E, G, K), ni = K + G;
    const moe_kernel_table *kt = moe_kernels();
    const int64_t nblocks = (T + ROUTE_BLOCK_ROWS - 1) / ROUTE_BLOCK_ROWS;
    int64_t bad = INT64_MAX;

    /* a thread team costs ~1 us, which pays from about 4096 scored entries and two row blocks */
    if (T * E < ROUTE_PARALLEL_MIN_WORK || nblocks < 2 || moe_get_num_threads() == 1) { /* small: one thread */
        float fstack[2048];
        int64_t istack[256];
        const int on_stack = nf <= 2048 && ni <= 256;
        float *fs = on_stack ? fstack : malloc((size_t)nf * sizeof(float));
        int64_t *is = on_stack ? istack : malloc((size_t)ni * sizeof(int64_t));
        if (!fs || !is) {
            if (!on_stack) { free(fs); free(is); }
            return MOE_ENOMEM;
        }
        bad = route_blocks(0, nblocks, weights, experts, scores, logits, bias, T, E, p, kt, fs, is);
        if (!on_stack) { free(fs); free(is); }
    } else {
        const int nthreads = moe_get_num_threads();
        const int on_stack = nf <= 2048 && ni <= 256; /* each thread's scratch on its own stack */
        float *fscratch = on_stack ? NULL : malloc((size_t)(nf * nthreads) * sizeof(float));
        int64_t *iscratch = on_stack ? NULL : malloc((size_t)(ni * nthreads) * sizeof(int64_t));
        if (!on_stack && (!fscratch || !iscratch)) { free(fscratch); free(iscratch); return MOE_ENOMEM; }
#pragma omp parallel num_threads(nthreads)
        {
            float fstack[2048];
            int64_t istack[256];
            const int tid = MOE_THREAD_ID();
            float *fs = on_stack ? fstack : fscratch + tid * nf;
            int64_t *is = on_stack ? istack : iscratch + tid * ni;
#pragma omp for schedule(static) reduction(min : bad)
            for (int64_t b = 0; b < nblocks; b++) {
                const int64_t rb = route_blocks(b, b + 1, weights, experts, scores, logits, bias, T, E, p, kt, fs, is);
                if (rb < bad) bad = rb;
            }
        }
        free(fscratch);
        free(iscratch);
    }
    if (bad != INT64_MAX) { *bad_row = bad; return MOE_ENAN; }
    return MOE_OK;
}

/* values (R, K), indices (R, K) <- x (R, M): blocks of rows over the threads */
moe_status moe_topk(float *values, int64_t *indices, int64_t *bad_row, const float *x, int64_t R,
                    int64_t M, int64_t K) {
    if (R < 0 || M < 1 || K < 1 || K > M) return MOE_EINVAL;
    if (moe_mul_checked(R, M) < 0) return MOE_EOVERFLOW;
    const moe_kernel_table *kt = moe_kernels();
    const int64_t nblocks = (R + ROUTE_BLOCK_ROWS - 1) / ROUTE_BLOCK_ROWS;
    int64_t bad = INT64_MAX;
#pragma omp parallel for schedule(static) num_threads(moe_get_num_threads()) \
    if (R * M >= MOE_PARALLEL_MIN_WORK) reduction(min : bad)
    for (int64_t b = 0; b < nblocks; b++) {
        const int64_t r0 = b * ROUTE_BLOCK_ROWS, r1 = r0 + ROUTE_BLOCK_ROWS < R ? r0 + ROUTE_BLOCK_ROWS : R;
        const int64_t rb = kt->topk_rows(values, indices, x, r0, r1, M, K);
        if (rb < bad) bad = rb;
    }
    if (bad != INT64_MAX) { *bad_row = bad; return MOE_ENAN; }
    return MOE_OK;
}

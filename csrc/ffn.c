/* ffn.c: one MoE layer after routing: plan -> gather -> grouped expert FFN -> weighted combine.
 *
 * Work is split into items (expert, block of rows, block of output panels) that the threads take
 * dynamically; every output element is computed by exactly one item with a fixed arithmetic order,
 * so any schedule gives bitwise the same result. */
#include "moe.h"
#include "kernels.h"
#include "parallel.h"

#include <stdlib.h>
#include <string.h>

#define FFN_ROW_BLOCK 64 /* rows per work item */

typedef struct {
    const moe_experts *ex;
    int64_t e;          /* expert index within ex */
    const float *in;    /* first input row */
    int64_t ld_in;
    float *out;         /* first output row */
    int64_t ld_out;
    int64_t rows, p0, p1;
} work_item;

typedef struct {
    work_item *items;
    int64_t n, cap;
} work_list;

static int push(work_list *l, work_item it) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 256;
        work_item *p = realloc(l->items, (size_t)cap * sizeof(work_item));
        if (!p) return -1;
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n++] = it;
    return 0;
}

/* items covering `rows` rows x `panels` panels of one expert, panel blocks of pb */
static int add_items(work_list *l, const moe_experts *ex, int64_t e, const float *in, int64_t ld_in, float *out,
                     int64_t ld_out, int64_t rows, int64_t panels, int64_t pb) {
    for (int64_t r0 = 0; r0 < rows; r0 += FFN_ROW_BLOCK)
        for (int64_t p0 = 0; p0 < panels; p0 += pb) {
            work_item it = {ex, e, in + r0 * ld_in, ld_in, out + r0 * ld_out, ld_out,
                            rows - r0 < FFN_ROW_BLOCK ? rows - r0 : FFN_ROW_BLOCK, p0, p0 + pb < panels ? p0 + pb : panels};
            if (push(l, it) < 0) return -1;
        }
    return 0;
}

/* panels per item: enough items to balance the threads, few enough to amortise the overhead */
static int64_t panel_block(int64_t total_row_panels, int nthreads) {
    int64_t pb = total_row_panels / (16 * (int64_t)nthreads);
    return pb < 1 ? 1 : (pb > 8 ? 8 : pb);
}

static size_t esize(const moe_experts *ex) { return ex->dtype == MOE_DT_BF16 ? 2 : 4; }

static void run_in_items(const work_list *l, const moe_kernel_table *kt, int nthreads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (l->n > 1)
    for (int64_t i = 0; i < l->n; i++) {
        const work_item *it = &l->items[i];
        const moe_experts *ex = it->ex;
        const int64_t Ip = moe_round_up(ex->inter, MOE_PANEL), P = ex->gated ? 2 : 1;
        const char *w = (const char *)ex->w_in + (size_t)(it->e * Ip * ex->H * P) * esize(ex);
        const float *b = ex->b_in ? ex->b_in + it->e * P * Ip : NULL;
        kt->ffn_in_block(it->out, it->ld_out, it->in, it->ld_in, it->rows, w, ex->H, Ip, it->p0, it->p1, ex->dtype,
                         ex->gated, b, ex->activation, ex->act_alpha, ex->act_limit);
    }
}

static void run_out_items(const work_list *l, const moe_kernel_table *kt, int nthreads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (l->n > 1)
    for (int64_t i = 0; i < l->n; i++) {
        const work_item *it = &l->items[i];
        const moe_experts *ex = it->ex;
        const int64_t Ip = moe_round_up(ex->inter, MOE_PANEL), Hp = moe_round_up(ex->H, MOE_PANEL);
        const char *w = (const char *)ex->w_out + (size_t)(it->e * Hp * Ip) * esize(ex);
        const float *b = ex->b_out ? ex->b_out + it->e * Hp : NULL;
        kt->ffn_out_block(it->out, it->ld_out, it->in, it->ld_in, it->rows, w, Ip, it->p0, it->p1, ex->dtype, b);
    }
}

static moe_status check_experts(const moe_experts *ex, int64_t H) {
    if (!ex || ex->E < 1 || ex->H != H || ex->inter < 1 || !ex->w_in || !ex->w_out) return MOE_EINVAL;
    if (ex->dtype != MOE_DT_F32 && ex->dtype != MOE_DT_BF16) return MOE_EINVAL;
    if (ex->activation < MOE_ACT_SILU || ex->activation > MOE_ACT_NONE) return MOE_EINVAL;
    if (ex->activation == MOE_ACT_NONE && ex->gated) return MOE_EINVAL;
    if (moe_packed_in_elems(ex->E, ex->H, ex->inter, ex->gated) < 0 || moe_packed_out_elems(ex->E, ex->H, ex->inter) < 0)
        return MOE_EOVERFLOW;
    return MOE_OK;
}

moe_status moe_forward(float *out, const float *x, int64_t T, const float *weights, const int32_t *experts,
                       const uint8_t *dropped, int64_t K, const moe_experts *routed, const moe_experts *shared,
                       const float *shared_gate, int32_t scale_input) {
    if (T < 0 || K < 1 || !routed) return MOE_EINVAL;
    const int64_t H = routed->H, E = routed->E;
    moe_status st = check_experts(routed, H);
    if (st != MOE_OK) return st;
    if (shared && (st = check_experts(shared, H)) != MOE_OK) return st;
    if (shared && shared->E != 1) return MOE_EINVAL;
    const int64_t N = moe_mul_checked(T, K);
    if (N < 0 || moe_mul_checked(T, H) < 0) return MOE_EOVERFLOW;
    const int64_t Hp = moe_round_up(H, MOE_PANEL), Ip = moe_round_up(routed->inter, MOE_PANEL);
    const int64_t Ips = shared ? moe_round_up(shared->inter, MOE_PANEL) : 0;
    const int nthreads = moe_get_num_threads();
    const moe_kernel_table *kt = moe_kernels();

    /* plan and scratch: xs (N, H), h (N, Ip), y (N, Hp), hs (T, Ips), ys (T, Hp) */
    int64_t *counts = malloc((size_t)E * sizeof(int64_t)), *offsets = malloc((size_t)(E + 1) * sizeof(int64_t));
    int64_t *order = malloc((size_t)(N > 0 ? N : 1) * sizeof(int64_t));
    int64_t *position = malloc((size_t)(N > 0 ? N : 1) * sizeof(int64_t));
    const int64_t n_xs = moe_mul_checked(N, H), n_h = moe_mul_checked(N, Ip), n_y = moe_mul_checked(N, Hp);
    const int64_t n_hs = moe_mul_checked(T, Ips), n_ys = shared ? moe_mul_checked(T, Hp) : 0;
    if (n_xs < 0 || n_h < 0 || n_y < 0 || n_hs < 0 || n_ys < 0) {
        free(counts); free(offsets); free(order); free(position);
        return MOE_EOVERFLOW;
    }
    float *xs = malloc((size_t)(n_xs + 1) * sizeof(float)), *h = malloc((size_t)(n_h + 1) * sizeof(float));
    float *y = malloc((size_t)(n_y + 1) * sizeof(float)), *hs = malloc((size_t)(n_hs + 1) * sizeof(float));
    float *ys = malloc((size_t)(n_ys + 1) * sizeof(float));
    work_list in_items = {0}, out_items = {0};
    if (!counts || !offsets || !order || !position || !xs || !h || !y || !hs || !ys) { st = MOE_ENOMEM; goto done; }
    if ((st = moe_dispatch_plan(counts, offsets, order, position, experts, dropped, T, K, E)) != MOE_OK) goto done;
    const int64_t rows = offsets[E];

    /* gather: xs[row] = x[token] (times the routing weight when it scales the input, Llama 4) */
#pragma omp parallel for schedule(static) num_threads(nthreads) if (rows * H >= MOE_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t slot = order[r];
        const float *src = x + (slot / K) * H;
        float *dst = xs + r * H;
        if (scale_input) {
            const float w = weights[slot];
            for (int64_t j = 0; j < H; j++) dst[j] = w * src[j];
        } else {
            memcpy(dst, src, (size_t)H * sizeof(float));
        }
    }

    /* up + activation: routed experts and the shared expert in one work list */
    int64_t row_panels = rows * (Ip / MOE_PANEL) + T * (Ips / MOE_PANEL);
    int64_t pb = panel_block(row_panels, nthreads);
    for (int64_t e = 0; e < E && st == MOE_OK; e++)
        if (counts[e] && add_items(&in_items, routed, e, xs + offsets[e] * H, H, h + offsets[e] * Ip, Ip, counts[e],
                                   Ip / MOE_PANEL, pb) < 0)
            st = MOE_ENOMEM;
    if (shared && T && st == MOE_OK && add_items(&in_items, shared, 0, x, H, hs, Ips, T, Ips / MOE_PANEL, pb) < 0)
        st = MOE_ENOMEM;
    if (st != MOE_OK) goto done;
    run_in_items(&in_items, kt, nthreads);

    /* down projection */
    row_panels = (rows + (shared ? T : 0)) * (Hp / MOE_PANEL);
    pb = panel_block(row_panels, nthreads);
    for (int64_t e = 0; e < E && st == MOE_OK; e++)
        if (counts[e] && add_items(&out_items, routed, e, h + offsets[e] * Ip, Ip, y + offsets[e] * Hp, Hp, counts[e],
                                   Hp / MOE_PANEL, pb) < 0)
            st = MOE_ENOMEM;
    if (shared && T && st == MOE_OK && add_items(&out_items, shared, 0, hs, Ips, ys, Hp, T, Hp / MOE_PANEL, pb) < 0)
        st = MOE_ENOMEM;
    if (st != MOE_OK) goto done;
    run_out_items(&out_items, kt, nthreads);

    /* combine per token: routed contributions in ascending expert order, then the shared expert */
#pragma omp parallel for schedule(static) num_threads(nthreads) if (T * H * K >= MOE_PARALLEL_MIN_WORK)
    for (int64_t t = 0; t < T; t++) {
        float *o = out + t * H;
        memset(o, 0, (size_t)H * sizeof(float));
        int32_t last = -1;
        for (int64_t n = 0; n < K; n++) { /* next slot: smallest expert id above `last` */
            int64_t best = -1;
            for (int64_t k = 0; k < K; k++) {
                const int32_t e = experts[t * K + k];
                if (e > last && (best < 0 || e < experts[t * K + best])) best = k;
            }
            if (best < 0) break;
            last = experts[t * K + best];
            const int64_t row = position[t * K + best];
            if (row < 0) continue; /* dropped */
            const float w = scale_input ? 1.0f : weights[t * K + best];
            const float *src = y + row * Hp;
            for (int64_t j = 0; j < H; j++) o[j] += w * src[j];
        }
        if (shared) {
            const float g = shared_gate ? shared_gate[t] : 1.0f;
            const float *src = ys + t * Hp;
            for (int64_t j = 0; j < H; j++) o[j] += g * src[j];
        }
    }
done:
    free(in_items.items); free(out_items.items);
    free(counts); free(offsets); free(order); free(position);
    free(xs); free(h); free(y); free(hs); free(ys);
    return st;
}

moe_status moe_linear(float *out, const float *x, int64_t T, const moe_experts *w) {
    if (T < 0 || !w || w->E != 1 || w->gated || w->activation != MOE_ACT_NONE) return MOE_EINVAL;
    moe_status st = check_experts(w, w->H);
    if (st != MOE_OK) return st;
    const int64_t N = w->inter, Np = moe_round_up(N, MOE_PANEL);
    const int64_t n = moe_mul_checked(T, Np);
    if (n < 0) return MOE_EOVERFLOW;
    float *buf = malloc((size_t)(n + 1) * sizeof(float));
    work_list items = {0};
    if (!buf) return MOE_ENOMEM;
    const int nthreads = moe_get_num_threads();
    if (T && add_items(&items, w, 0, x, w->H, buf, Np, T, Np / MOE_PANEL,
                       panel_block(T * (Np / MOE_PANEL), nthreads)) < 0) {
        free(buf);
        return MOE_ENOMEM;
    }
    run_in_items(&items, moe_kernels(), nthreads);
    for (int64_t t = 0; t < T; t++) memcpy(out + t * N, buf + t * Np, (size_t)N * sizeof(float));
    free(items.items);
    free(buf);
    return MOE_OK;
}

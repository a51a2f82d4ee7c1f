/* ffn.c: one MoE layer after routing: plan -> gather -> grouped expert FFN -> weighted combine.
 *
 * Work is split into items (expert, block of rows, block of output panels) that the threads take
 * dynamically; every output element is computed by exactly one item with a fixed arithmetic order,
 * so any schedule gives bitwise the same result. INT8/INT4 experts take activations quantised once
 * per token (or per expert row for the down projection) instead of float rows. */
#include "moe.h"
#include "kernels.h"
#include "dispatch.h"
#include "parallel.h"
#include "quant.h"

#include <stdlib.h>
#include <string.h>

#define FFN_ROW_BLOCK 64 /* rows per work item */

typedef struct { /* rows of activations: float (f, ld), bf16 (b, ld) or quantised (q, s, sum; ld, ng) */
    const float *f;
    const uint16_t *b;
    const int8_t *q;
    const float *s;
    const int32_t *sum;
    int64_t ld, ng;
} rows_in;

static rows_in float_rows(const float *f, int64_t ld) { return (rows_in){.f = f, .ld = ld}; }
static rows_in bf16_rows(const uint16_t *b, int64_t ld) { return (rows_in){.b = b, .ld = ld}; }

static rows_in rows_offset(rows_in r, int64_t n) {
    if (r.f) r.f += n * r.ld;
    else if (r.b) r.b += n * r.ld;
    else { r.q += n * r.ld; r.s += n * r.ng; r.sum += n * r.ng; }
    return r;
}

typedef struct {
    const moe_experts *ex;
    int64_t e; /* expert index within ex */
    rows_in in;
    float *out;
    int64_t ld_out, rows, p0, p1;
} work_item;

typedef struct {
    work_item *items;
    int64_t n, cap;
    int64_t macs; /* multiply-adds of all items: small lists run on the calling thread */
} work_list;

#define FFN_PARALLEL_MIN_MACS (1 << 20)

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
static int add_items(work_list *l, const moe_experts *ex, int64_t e, rows_in in, float *out, int64_t ld_out,
                     int64_t rows, int64_t panels, int64_t pb) {
    for (int64_t r0 = 0; r0 < rows; r0 += FFN_ROW_BLOCK)
        for (int64_t p0 = 0; p0 < panels; p0 += pb) {
            work_item it = {ex, e, rows_offset(in, r0), out + r0 * ld_out, ld_out,
                            rows - r0 < FFN_ROW_BLOCK ? rows - r0 : FFN_ROW_BLOCK, p0,
                            p0 + pb < panels ? p0 + pb : panels};
            if (push(l, it) < 0) return -1;
            l->macs += it.rows * (it.p1 - it.p0) * MOE_PANEL * (in.ld > 0 ? in.ld : 1);
        }
    return 0;
}

/* panels per item: enough items to balance the threads, few enough to amortise the overhead, and at least four,
 * so that a tile with few rows runs four independent FMA chains (one panel alone waits on its chain's latency:
 * float and bf16 linears of 64-1024 outputs at T = 1 ran 1.4-2.3x slower) */
static int64_t panel_block(int64_t total_row_panels, int nthreads) {
    int64_t pb = total_row_panels / (16 * (int64_t)nthreads);
    return pb < 4 ? 4 : (pb > 8 ? 8 : pb);
}

/* bytes of one expert's packed input / output projection */
static int64_t expert_in_bytes(const moe_experts *ex) {
    const int64_t Ip = moe_round_up(ex->inter, MOE_PANEL), P = ex->gated ? 2 : 1;
    if (MOE_DT_IS_QUANT(ex->dtype)) return P * moe_qpacked_bytes(1, ex->inter, ex->H, MOE_DT_QFORMAT(ex->dtype), ex->group);
    return Ip * ex->H * P * (ex->dtype == MOE_DT_BF16 ? 2 : 4);
}

static int64_t expert_out_bytes(const moe_experts *ex) {
    const int64_t Ip = moe_round_up(ex->inter, MOE_PANEL), Hp = moe_round_up(ex->H, MOE_PANEL);
    if (MOE_DT_IS_QUANT(ex->dtype)) return moe_qpacked_bytes(1, ex->H, ex->inter, MOE_DT_QFORMAT(ex->dtype), ex->group);
    return Hp * Ip * (ex->dtype == MOE_DT_BF16 ? 2 : 4);
}

static void run_items(const work_list *l, int phase_out, const moe_kernel_table *kt, int nthreads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (l->n > 1 && l->macs >= FFN_PARALLEL_MIN_MACS)
    for (int64_t i = 0; i < l->n; i++) {
        const work_item *it = &l->items[i];
        const moe_experts *ex = it->ex;
        const int64_t Ip = moe_round_up(ex->inter, MOE_PANEL), Hp = moe_round_up(ex->H, MOE_PANEL);
        const int P = ex->gated ? 2 : 1;
        const rows_in *in = &it->in;
        if (!phase_out) {
            const void *w = (const char *)ex->w_in + it->e * expert_in_bytes(ex);
            const float *b = ex->b_in ? ex->b_in + it->e * P * Ip : NULL;
            if (MOE_DT_IS_QUANT(ex->dtype))
                kt->qffn_in_block(it->out, it->ld_out, in->q, in->s, in->sum, in->ld, it->rows, w, ex->H, Ip, it->p0,
                                  it->p1, MOE_DT_QFORMAT(ex->dtype), ex->group, ex->gated, b, ex->activation,
                                  ex->act_alpha, ex->act_limit);
            else
                kt->ffn_in_block(it->out, it->ld_out, in->f, in->b, in->ld, it->rows, w, ex->H, Ip, it->p0, it->p1,
                                 ex->dtype, ex->gated, b, ex->activation, ex->act_alpha, ex->act_limit);
        } else {
            const void *w = (const char *)ex->w_out + it->e * expert_out_bytes(ex);
            const float *b = ex->b_out ? ex->b_out + it->e * Hp : NULL;
            if (MOE_DT_IS_QUANT(ex->dtype))
                kt->qffn_out_block(it->out, it->ld_out, in->q, in->s, in->sum, in->ld, it->rows, w, ex->inter, it->p0,
                                   it->p1, MOE_DT_QFORMAT(ex->dtype), ex->group, b);
            else
                kt->ffn_out_block(it->out, it->ld_out, in->f, in->b, in->ld, it->rows, w, Ip, it->p0, it->p1, ex->dtype,
                                  b);
        }
    }
}

/* the items of one phase: every routed expert's rows (out: (rows, ld_out)), then the shared
 * expert's T rows (shared_out: (T, ld_shared)); ld_* are padded column counts */
static int add_phase(work_list *l, const moe_experts *routed, const int64_t *counts, const int64_t *offsets,
                     rows_in routed_in, float *out, int64_t ld_out, const moe_experts *shared, rows_in shared_in,
                     float *shared_out, int64_t ld_shared, int64_t T, int nthreads) {
    const int64_t E = routed->E, rows = offsets[E];
    const int64_t pb = panel_block(rows * (ld_out / MOE_PANEL) + (shared ? T * (ld_shared / MOE_PANEL) : 0), nthreads);
    for (int64_t e = 0; e < E; e++)
        if (counts[e] && add_items(l, routed, e, rows_offset(routed_in, offsets[e]), out + offsets[e] * ld_out, ld_out,
                                   counts[e], ld_out / MOE_PANEL, pb) < 0)
            return -1;
    if (shared && T && add_items(l, shared, 0, shared_in, shared_out, ld_shared, T, ld_shared / MOE_PANEL, pb) < 0)
        return -1;
    return 0;
}

/* need_out = 0: w_out unused (moe_linear reads only w_in) */
static moe_status check_experts(const moe_experts *ex, int64_t H, int need_out) {
    if (!ex || ex->E < 1 || ex->H != H || ex->inter < 1 || !ex->w_in || (need_out && !ex->w_out)) return MOE_EINVAL;
    if (ex->dtype < MOE_DT_F32 || ex->dtype > MOE_DT_INT4_NL) return MOE_EINVAL;
    if (!moe_activation_valid(ex->activation, ex->gated)) return MOE_EINVAL;
    if (MOE_DT_IS_QUANT(ex->dtype) && (!moe_qgroup_ok(ex->group) || ex->H % ex->group || ex->inter % ex->group))
        return MOE_EINVAL;
    if (moe_packed_in_elems(ex->E, ex->H, ex->inter, ex->gated) < 0 || moe_packed_out_elems(ex->E, ex->H, ex->inter) < 0)
        return MOE_EOVERFLOW;
    return MOE_OK;
}

int moe_activation_valid(int32_t activation, int32_t gated) {
    return activation >= MOE_ACT_SILU && activation <= MOE_ACT_RELU2 && !(activation == MOE_ACT_NONE && gated);
}

/* ---- quantised activations: a (rows, K) int8 buffer with per-group scales and sums */
typedef struct {
    int8_t *q;
    float *s;
    int32_t *sum;
    int64_t K, ng;
} qbuf;

/* ---- scratch: one work buffer carved into 64-byte aligned pieces; a dry run (base NULL) sizes it */
typedef struct {
    char *base;
    int64_t cap, used;
    int overflow;
} arena;

static void *take(arena *a, int64_t count, int64_t size) {
    const int64_t bytes = moe_mul_checked(count > 0 ? count : 1, size);
    const int64_t start = (a->used + 63) / 64 * 64;
    if (bytes < 0 || start > INT64_MAX - bytes) { a->overflow = 1; return NULL; }
    a->used = start + bytes;
    if (!a->base || a->used > a->cap) return NULL;
    return a->base + start;
}

static void qbuf_take(qbuf *b, arena *a, int64_t rows, int64_t K, int64_t G) {
    b->K = K;
    b->ng = K / G;
    b->q = take(a, moe_mul_checked(rows, K), 1);
    b->s = take(a, moe_mul_checked(rows, b->ng), sizeof(float));
    b->sum = take(a, moe_mul_checked(rows, b->ng), sizeof(int32_t));
}

/* ---- bf16 activations (moe.h, moe_set_activation_precision) */
static int64_t even(int64_t n) { return n + (n & 1); }

/* the activation precision of one call, read once */
typedef struct { int32_t mode; int64_t min_rows; } precision;
static precision current_precision(void) {
    precision p;
    p.mode = moe_get_activation_precision(&p.min_rows);
    return p;
}
static int use_bf16(precision p, int32_t dtype, int64_t rows) {
    return dtype == MOE_DT_BF16 && (p.mode == MOE_PREC_BF16 || (p.mode == MOE_PREC_AUTO && rows >= p.min_rows));
}

/* float -> bf16, round to nearest even; zero and subnormal inputs to a zero of their sign, NaN stays NaN (quiet) */
static inline uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if (!(u & 0x7F800000u)) return (uint16_t)((u >> 16) & 0x8000u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* dst (rows, ldd) bf16 <- x (rows, K, stride ldx) by bf16_round, columns K..ldd - 1 zero; in parallel over rows */
static void round_bf16_parallel(uint16_t *dst, int64_t ldd, const float *x, int64_t ldx, int64_t rows, int64_t K,
                                int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads) if (rows * K >= MOE_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        uint16_t *d = dst + r * ldd;
        const float *v = x + r * ldx;
        for (int64_t k = 0; k < K; k++) d[k] = bf16_round(v[k]);
        for (int64_t k = K; k < ldd; k++) d[k] = 0;
    }
}

/* every buffer moe_forward uses, for at most N = T K dispatched rows; the bf16 rows whenever the weights are bf16
 * (the size does not depend on the activation precision, which may change between the workspace query and the call) */
typedef struct {
    int64_t *counts, *offsets, *order, *position;
    float *xs, *h, *y, *hs, *ys;
    qbuf xq_tok, xq_rows, hq, xq_sh, hq_sh;
    uint16_t *xb_tok, *xb_rows, *hb, *hb_sh; /* (T, He), (N, He), (N, Ip), (T, Ips) with He = H rounded up to even */
} buffers;

static void carve(buffers *b, arena *a, int64_t T, int64_t K, const moe_experts *routed, const moe_experts *shared,
                  int32_t scale_input) {
    const int64_t H = routed->H, E = routed->E, N = moe_mul_checked(T, K);
    const int64_t Hp = moe_round_up(H, MOE_PANEL), Ip = moe_round_up(routed->inter, MOE_PANEL);
    const int rq = MOE_DT_IS_QUANT(routed->dtype), sq = shared && MOE_DT_IS_QUANT(shared->dtype);
    memset(b, 0, sizeof(*b));
    b->counts = take(a, E, sizeof(int64_t));
    b->offsets = take(a, E + 1, sizeof(int64_t));
    b->order = take(a, N, sizeof(int64_t));
    b->position = take(a, N, sizeof(int64_t));
    if (!rq || scale_input) b->xs = take(a, moe_mul_checked(N, H), sizeof(float));
    b->h = take(a, moe_mul_checked(N, Ip), sizeof(float));
    b->y = take(a, moe_mul_checked(N, Hp), sizeof(float));
    if (shared) {
        b->hs = take(a, moe_mul_checked(T, moe_round_up(shared->inter, MOE_PANEL)), sizeof(float));
        b->ys = take(a, moe_mul_checked(T, Hp), sizeof(float));
    }
    if (rq) {
        if (!scale_input) qbuf_take(&b->xq_tok, a, T, H, routed->group);
        qbuf_take(&b->xq_rows, a, N, H, routed->group);
        qbuf_take(&b->hq, a, N, routed->inter, routed->group);
    }
    if (sq) {
        if (!(rq && !scale_input && shared->group == routed->group)) qbuf_take(&b->xq_sh, a, T, H, shared->group);
        qbuf_take(&b->hq_sh, a, T, shared->inter, shared->group);
    }
    const int rb = routed->dtype == MOE_DT_BF16, sb = shared && shared->dtype == MOE_DT_BF16;
    if (rb || sb) b->xb_tok = take(a, moe_mul_checked(T, even(H)), sizeof(uint16_t));
    if (rb) {
        b->xb_rows = take(a, moe_mul_checked(N, even(H)), sizeof(uint16_t));
        b->hb = take(a, moe_mul_checked(N, Ip), sizeof(uint16_t));
    }
    if (sb) b->hb_sh = take(a, moe_mul_checked(T, moe_round_up(shared->inter, MOE_PANEL)), sizeof(uint16_t));
}

static rows_in qbuf_rows(const qbuf *b) { return (rows_in){.q = b->q, .s = b->s, .sum = b->sum, .ld = b->K, .ng = b->ng}; }

/* b <- quantised rows of x (rows, K, stride ldx), in parallel over row blocks */
static void quantize_parallel(qbuf *b, const float *x, int64_t ldx, int64_t rows, int64_t G,
                              const moe_kernel_table *kt, int nthreads) {
    const int64_t K = b->K, ng = b->ng;
#pragma omp parallel for schedule(static) num_threads(nthreads) if (rows * K >= MOE_PARALLEL_MIN_WORK)
    for (int64_t r0 = 0; r0 < rows; r0 += 16) {
        const int64_t n = rows - r0 < 16 ? rows - r0 : 16;
        kt->quantize_rows(b->q + r0 * K, b->s + r0 * ng, b->sum + r0 * ng, x + r0 * ldx, ldx, n, K, G);
    }
}

static moe_status check_forward(int64_t T, int64_t K, const moe_experts *routed, const moe_experts *shared) {
    if (T < 0 || K < 1 || !routed) return MOE_EINVAL;
    moe_status st = check_experts(routed, routed->H, 1);
    if (st != MOE_OK) return st;
    if (shared && (st = check_experts(shared, routed->H, 1)) != MOE_OK) return st;
    if (shared && shared->E != 1) return MOE_EINVAL;
    const int64_t N = moe_mul_checked(T, K);
    if (N < 0 || moe_mul_checked(T, routed->H) < 0) return MOE_EOVERFLOW;
    return MOE_OK;
}

/* bytes of the work buffer for valid shapes (a dry run of carve), -1 on overflow */
static int64_t workspace_bytes(int64_t T, int64_t K, const moe_experts *routed, const moe_experts *shared,
                               int32_t scale_input) {
    arena a = {NULL, 0, 0, 0};
    buffers b;
    carve(&b, &a, T, K, routed, shared, scale_input);
    return a.overflow ? -1 : a.used + 64;
}

int64_t moe_forward_workspace(int64_t T, int64_t K, const moe_experts *routed, const moe_experts *shared,
                              int32_t scale_input) {
    if (check_forward(T, K, routed, shared) != MOE_OK) return -1;
    return workspace_bytes(T, K, routed, shared, scale_input);
}

moe_status moe_forward(float *out, const float *x, int64_t T, const float *weights, const int32_t *experts,
                       const uint8_t *dropped, int64_t K, const moe_experts *routed, const moe_experts *shared,
                       const float *shared_gate, int32_t scale_input, void *work, int64_t work_bytes) {
    moe_status st = check_forward(T, K, routed, shared);
    if (st != MOE_OK) return st;
    const int64_t need = workspace_bytes(T, K, routed, shared, scale_input);
    if (need < 0) return MOE_EOVERFLOW;
    void *owned = NULL;
    if (!work) {
        work = owned = malloc((size_t)need);
        work_bytes = need;
        if (!work) return MOE_ENOMEM;
    } else if (work_bytes < need) {
        return MOE_EINVAL;
    }
    arena a = {(char *)(((uintptr_t)work + 63) / 64 * 64), work_bytes - 64, 0, 0};
    buffers B;
    carve(&B, &a, T, K, routed, shared, scale_input);
    const int64_t H = routed->H, E = routed->E;
    const int64_t Hp = moe_round_up(H, MOE_PANEL), Ip = moe_round_up(routed->inter, MOE_PANEL);
    const int64_t Ips = shared ? moe_round_up(shared->inter, MOE_PANEL) : 0;
    const int rq = MOE_DT_IS_QUANT(routed->dtype), sq = shared && MOE_DT_IS_QUANT(shared->dtype);
    const precision prec = current_precision(); /* read once: one call, one precision */
    /* AUTO decides by the rows one weight matrix meets on average: tokens x top-k / E for the routed experts */
    const int rb = use_bf16(prec, routed->dtype, moe_mul_checked(T, K) / E);
    const int sb = shared && use_bf16(prec, shared->dtype, T);
    const int64_t He = even(H);
    const int nthreads = moe_get_num_threads();
    const moe_kernel_table *kt = moe_kernels();
    int64_t *counts = B.counts, *offsets = B.offsets, *order = B.order, *position = B.position;
    float *xs = B.xs, *h = B.h, *y = B.y, *hs = B.hs, *ys = B.ys;
    qbuf xq_tok = B.xq_tok, xq_rows = B.xq_rows, hq = B.hq, xq_sh = B.xq_sh, hq_sh = B.hq_sh;
    work_list in_items = {0}, out_items = {0};
    if ((st = moe_dispatch_plan(counts, offsets, order, position, experts, dropped, T, K, E)) != MOE_OK) goto done;
    const int64_t rows = offsets[E];

    /* routed inputs: float rows gathered by expert (scaled by the weight for Llama 4), or INT8
     * rows: tokens quantised once and gathered, or (scaled inputs) the gathered rows quantised */
    const int quant_tokens_once = rq && !scale_input, round_tokens_once = rb && !scale_input;
    if (round_tokens_once || sb) round_bf16_parallel(B.xb_tok, He, x, H, T, H, nthreads);
    if (quant_tokens_once) quantize_parallel(&xq_tok, x, H, T, routed->group, kt, nthreads);
    const int64_t ngx = rq ? H / routed->group : 0;
    if (quant_tokens_once) { /* the quantised rows of each dispatched token */
#pragma omp parallel for schedule(static) num_threads(nthreads) if (rows * H >= MOE_PARALLEL_MIN_WORK)
        for (int64_t r = 0; r < rows; r++) {
            const int64_t t = order[r] / K;
            memcpy(xq_rows.q + r * H, xq_tok.q + t * H, (size_t)H);
            memcpy(xq_rows.s + r * ngx, xq_tok.s + t * ngx, (size_t)ngx * sizeof(float));
            memcpy(xq_rows.sum + r * ngx, xq_tok.sum + t * ngx, (size_t)ngx * sizeof(int32_t));
        }
    } else if (round_tokens_once) { /* the bf16 rows of each dispatched token */
#pragma omp parallel for schedule(static) num_threads(nthreads) if (rows * H >= MOE_PARALLEL_MIN_WORK)
        for (int64_t r = 0; r < rows; r++)
            memcpy(B.xb_rows + r * He, B.xb_tok + (order[r] / K) * He, (size_t)He * sizeof(uint16_t));
    } else if ((st = moe_gather(xs, x, T, H, order, rows, K, scale_input ? weights : NULL)) != MOE_OK) {
        goto done; /* the gather piece itself (float rows, scaled for Llama 4) */
    }
    if (rq && scale_input) quantize_parallel(&xq_rows, xs, H, rows, routed->group, kt, nthreads);
    if (rb && scale_input) round_bf16_parallel(B.xb_rows, He, xs, H, rows, H, nthreads);
    rows_in routed_in = rq ? qbuf_rows(&xq_rows) : rb ? bf16_rows(B.xb_rows, He) : float_rows(xs, H);
    rows_in shared_in = sb ? bf16_rows(B.xb_tok, He) : float_rows(x, H);
    if (sq) {
        if (quant_tokens_once && shared->group == routed->group) {
            shared_in = qbuf_rows(&xq_tok);
        } else {
            quantize_parallel(&xq_sh, x, H, T, shared->group, kt, nthreads);
            shared_in = qbuf_rows(&xq_sh);
        }
    }

    /* up + activation: routed experts and the shared expert in one work list */
    if (add_phase(&in_items, routed, counts, offsets, routed_in, h, Ip, shared, shared_in, hs, Ips, T, nthreads) < 0) {
        st = MOE_ENOMEM;
        goto done;
    }
    run_items(&in_items, 0, kt, nthreads);

    /* quantise the intermediate rows once for INT experts */
    rows_in h_in = float_rows(h, Ip), hs_in = float_rows(hs, Ips);
    if (rb) { /* Ip is a multiple of the panel width: even, the padding columns of h are zero */
        round_bf16_parallel(B.hb, Ip, h, Ip, rows, Ip, nthreads);
        h_in = bf16_rows(B.hb, Ip);
    }
    if (sb) {
        round_bf16_parallel(B.hb_sh, Ips, hs, Ips, T, Ips, nthreads);
        hs_in = bf16_rows(B.hb_sh, Ips);
    }
    if (rq) {
        quantize_parallel(&hq, h, Ip, rows, routed->group, kt, nthreads);
        h_in = qbuf_rows(&hq);
    }
    if (sq) {
        quantize_parallel(&hq_sh, hs, Ips, T, shared->group, kt, nthreads);
        hs_in = qbuf_rows(&hq_sh);
    }

    /* down projection */
    if (add_phase(&out_items, routed, counts, offsets, h_in, y, Hp, shared, hs_in, ys, Hp, T, nthreads) < 0) {
        st = MOE_ENOMEM;
        goto done;
    }
    run_items(&out_items, 1, kt, nthreads);

    /* combine per token: routed contributions in ascending expert order, then the shared expert */
    if (moe_combine_rows(out, y, Hp, rows, position, experts, weights, T, K, H, scale_input, ys, Hp, shared_gate,
                       nthreads) < 0)
        st = MOE_EINVAL; /* duplicate expert ids in a row */
done:
    free(in_items.items);
    free(out_items.items);
    free(owned);
    return st;
}

moe_status moe_linear(float *out, const float *x, int64_t T, const moe_experts *w) {
    if (T < 0 || !w || w->E != 1 || w->gated || w->activation != MOE_ACT_NONE) return MOE_EINVAL;
    moe_status st = check_experts(w, w->H, 0);
    if (st != MOE_OK) return st;
    const int64_t N = w->inter, Np = moe_round_up(N, MOE_PANEL);
    const int64_t n = moe_mul_checked(T, Np);
    if (n < 0) return MOE_EOVERFLOW;
    /* N a multiple of the panel width and out not overlapping x: the kernels write out directly;
     * else into a (T, Np) buffer, then copied */
    const uintptr_t o0 = (uintptr_t)out, o1 = o0 + (uintptr_t)(T * N) * sizeof(float);
    const uintptr_t x0 = (uintptr_t)x, x1 = x0 + (uintptr_t)(T * w->H) * sizeof(float);
    const int direct = Np == N && (o1 <= x0 || x1 <= o0);
    float *buf = direct ? out : malloc((size_t)(n + 1) * sizeof(float));
    work_list items = {0};
    if (!buf) return MOE_ENOMEM;
    const int nthreads = moe_get_num_threads();
    const moe_kernel_table *kt = moe_kernels();
    rows_in in = float_rows(x, w->H);
    void *qmem = NULL; /* INT weights: the rows quantised once (int8 codes, per-group scales and sums); bf16
                        * activations: the rows rounded once */
    if (use_bf16(current_precision(), w->dtype, T)) {
        const int64_t He = even(w->H), nb = moe_mul_checked(T, He);
        if (nb < 0 || !(qmem = malloc((size_t)(nb + 1) * sizeof(uint16_t)))) {
            if (!direct) free(buf);
            return nb < 0 ? MOE_EOVERFLOW : MOE_ENOMEM;
        }
        round_bf16_parallel(qmem, He, x, w->H, T, w->H, nthreads);
        in = bf16_rows(qmem, He);
    } else if (MOE_DT_IS_QUANT(w->dtype)) {
        qbuf xq = {0};
        arena a = {NULL, 0, 0, 0};
        for (int pass = 0; pass < 2; pass++) {
            qbuf_take(&xq, &a, T, w->H, w->group);
            if (pass == 0) {
                if (a.overflow || !(qmem = malloc((size_t)(a.used + 64)))) {
                    if (!direct) free(buf);
                    return a.overflow ? MOE_EOVERFLOW : MOE_ENOMEM;
                }
                a = (arena){(char *)(((uintptr_t)qmem + 63) / 64 * 64), a.used, 0, 0};
            }
        }
        quantize_parallel(&xq, x, w->H, T, w->group, kt, nthreads);
        in = qbuf_rows(&xq);
    }
    if (T && add_items(&items, w, 0, in, buf, Np, T, Np / MOE_PANEL, panel_block(T * (Np / MOE_PANEL), nthreads)) < 0) {
        if (!direct) free(buf);
        free(qmem);
        return MOE_ENOMEM;
    }
    run_items(&items, 0, kt, nthreads);
    if (!direct) {
        for (int64_t t = 0; t < T; t++) memcpy(out + t * N, buf + t * Np, (size_t)N * sizeof(float));
        free(buf);
    }
    free(qmem);
    free(items.items);
    return MOE_OK;
}

/* ---------------------------------------------------------------- the grouped FFN piece of moe_forward */

moe_status moe_grouped_ffn(float *ys, const float *xs, const int64_t *offsets, const moe_experts *ex) {
    moe_status st = check_experts(ex, ex ? ex->H : 0, 1);
    if (st != MOE_OK) return st;
    const int64_t E = ex->E, H = ex->H;
    if (offsets[0] != 0) return MOE_EINVAL;
    for (int64_t e = 0; e < E; e++)
        if (offsets[e + 1] < offsets[e]) return MOE_EINVAL;
    const int64_t N = offsets[E];
    const int64_t Hp = moe_round_up(H, MOE_PANEL), Ip = moe_round_up(ex->inter, MOE_PANEL);
    const int rq = MOE_DT_IS_QUANT(ex->dtype), rb = use_bf16(current_precision(), ex->dtype, N / E);
    const int64_t He = even(H);
    int64_t *counts = malloc((size_t)E * sizeof(int64_t));
    if (!counts) return MOE_ENOMEM;
    for (int64_t e = 0; e < E; e++) counts[e] = offsets[e + 1] - offsets[e];
    /* scratch: h (N, Ip), y (N, Hp) [, xq (N, H), hq (N, I) quantised]; a dry run sizes it */
    float *h = NULL, *y = NULL;
    uint16_t *xb = NULL, *hb = NULL; /* bf16 activations: xs (N, He) and h (N, Ip) rounded */
    qbuf xq = {0}, hq = {0};
    arena a = {NULL, 0, 0, 0};
    void *base = NULL;
    for (int pass = 0; pass < 2; pass++) {
        h = take(&a, moe_mul_checked(N, Ip), sizeof(float));
        y = take(&a, moe_mul_checked(N, Hp), sizeof(float));
        if (rq) {
            qbuf_take(&xq, &a, N, H, ex->group);
            qbuf_take(&hq, &a, N, ex->inter, ex->group);
        }
        if (rb) {
            xb = take(&a, moe_mul_checked(N, He), sizeof(uint16_t));
            hb = take(&a, moe_mul_checked(N, Ip), sizeof(uint16_t));
        }
        if (pass == 0) {
            if (a.overflow) { free(counts); return MOE_EOVERFLOW; }
            base = malloc((size_t)(a.used + 64));
            if (!base) { free(counts); return MOE_ENOMEM; }
            a = (arena){(char *)(((uintptr_t)base + 63) / 64 * 64), a.used, 0, 0};
        }
    }
    const int nthreads = moe_get_num_threads();
    const moe_kernel_table *kt = moe_kernels();
    work_list in_items = {0}, out_items = {0};
    rows_in x_in = float_rows(xs, H);
    if (rb) {
        round_bf16_parallel(xb, He, xs, H, N, H, nthreads);
        x_in = bf16_rows(xb, He);
    }
    if (rq) {
        quantize_parallel(&xq, xs, H, N, ex->group, kt, nthreads);
        x_in = qbuf_rows(&xq);
    }
    rows_in none = {0};
    if (add_phase(&in_items, ex, counts, offsets, x_in, h, Ip, NULL, none, NULL, 0, 0, nthreads) < 0) {
        st = MOE_ENOMEM;
        goto done;
    }
    run_items(&in_items, 0, kt, nthreads);
    rows_in h_in = float_rows(h, Ip);
    if (rb) {
        round_bf16_parallel(hb, Ip, h, Ip, N, Ip, nthreads);
        h_in = bf16_rows(hb, Ip);
    }
    if (rq) {
        quantize_parallel(&hq, h, Ip, N, ex->group, kt, nthreads);
        h_in = qbuf_rows(&hq);
    }
    if (add_phase(&out_items, ex, counts, offsets, h_in, y, Hp, NULL, none, NULL, 0, 0, nthreads) < 0) {
        st = MOE_ENOMEM;
        goto done;
    }
    run_items(&out_items, 1, kt, nthreads);
    for (int64_t r = 0; r < N; r++) memcpy(ys + r * H, y + r * Hp, (size_t)H * sizeof(float));
done:
    free(in_items.items);
    free(out_items.items);
    free(base);
    free(counts);
    return st;
}

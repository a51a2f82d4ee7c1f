/* moe.h: the public API of moepy's C core.
 *
 * Pure C11 on raw pointers and int64_t sizes. No Python here: csrc/python/ holds the only files that
 * see Python.h / NumPy. Kernels never allocate Python objects, print or abort; they return a status.
 *
 * Dimension legend (used in every shape comment):
 *   T  tokens (rows of the activation matrix)      H  hidden size
 *   E  routed experts                               K  experts selected per token (top-k)
 *   I  expert intermediate width                    G  expert groups (group-limited routing)
 *   C  capacity (tokens an expert may take)         N  T * K routed (token, slot) pairs
 * All arrays are C-contiguous, row-major; "(T, E)" means T rows of E floats.
 */
#ifndef MOEPY_MOE_H
#define MOEPY_MOE_H

#include <stdint.h>
#include <stddef.h>

typedef enum {
    MOE_OK = 0,
    MOE_EINVAL = 1,   /* a parameter out of range */
    MOE_ENOMEM = 2,   /* an allocation failed */
    MOE_ENAN = 3,     /* NaN found in an input; *bad_index names the row */
    MOE_EOVERFLOW = 4, /* a size computation overflowed int64 */
    MOE_ERANGE = 5     /* a value does not fit the storage format; *bad_index names it */
} moe_status;

/* Memory contract: every array a kernel reads must not change while the call runs (callers on
 * other threads included); expert ids are validated in the same pass that uses them, or the
 * caller hands in a private copy (the Python boundary copies them). */

/* ---------- threads and CPU dispatch (cpu.c) ---------- */
/* AVX512BF16: the AVX-512 level plus vdpbf16ps (the bf16-activation kernels; the other levels emulate it bit for bit) */
typedef enum { MOE_ISA_SCALAR = 0, MOE_ISA_AVX2 = 1, MOE_ISA_AVX512 = 2, MOE_ISA_AVX512BF16 = 3, MOE_ISA_AMX = 4 } moe_isa;

int moe_openmp_enabled(void);
int moe_get_num_threads(void);           /* 1 in a process forked after the library loaded (cpu.c) */
int moe_in_forked_child(void);
void moe_set_num_threads(int n);          /* n <= 0 restores the default (all cores) */
moe_isa moe_detected_isa(void);           /* best ISA this CPU and build support */
moe_isa moe_active_isa(void);             /* the ISA the kernels use now */
int moe_force_isa(moe_isa isa);           /* returns 0, or -1 if the CPU/build lacks it */
const char *moe_isa_name(moe_isa isa);
int moe_cpu_has(const char *feature);     /* "avx2", "avx512f", "avx512vnni", "avx512bf16", ... */
int moe_weight_prefetch_nta(void);        /* 1: the INT tiles prefetch weights non-temporally (AMD), 0: into L2 */

/* Activation precision for bf16 weights (experts, shared experts, moe_linear; float32 and INT weights are not
 * affected). FP32: the exact path, float32 activations times bf16 weights widened exactly. BF16: activations
 * rounded to bf16 once per row (round to nearest even, subnormals to zero) and bf16 pair products summed into
 * float32 with vdpbf16ps semantics (each pair: the odd element's product added first, then the even one's, each
 * sum rounded to nearest even with subnormal results flushed to zero), as llama.cpp and PyTorch compute bf16
 * matmuls. AUTO: BF16 where a weight matrix meets at least min_rows rows on average in the call (moe_linear and a
 * shared expert: the tokens; routed experts: dispatched rows / E, i.e. tokens x top-k / E), else FP32 - a token's
 * result then depends on the size of its call. FP32 and BF16 are each batch invariant. Process-wide, read once per
 * call. */
typedef enum { MOE_PREC_FP32 = 0, MOE_PREC_BF16 = 1, MOE_PREC_AUTO = 2 } moe_precision;
int moe_set_activation_precision(int32_t mode, int64_t min_rows); /* 0, or -1 if mode or min_rows < 1 is invalid */
int32_t moe_get_activation_precision(int64_t *min_rows);          /* the mode; *min_rows (if not NULL) the threshold */

/* ---------- routing (route.c) ---------- */
typedef enum { MOE_SCORE_SOFTMAX = 0, MOE_SCORE_SIGMOID = 1 } moe_scoring;
typedef enum { MOE_GROUP_MAX = 0, MOE_GROUP_TOP2_SUM = 1 } moe_group_score;

typedef struct {
    int64_t top_k;              /* K, 1 <= K <= E */
    int32_t scoring;            /* moe_scoring */
    int32_t topk_before_score;  /* 1: select on raw logits, then score the K selected (GPT-OSS, Llama 4) */
    int32_t normalize;          /* 1: w /= (||w||_p + norm_eps) */
    float norm_p;               /* p of the normalising norm (1 = sum, DBRX may use 2) */
    float norm_eps;             /* DeepSeek-V3 adds 1e-20 */
    float scale;                /* routed scaling factor, applied last */
    int64_t n_group;            /* G; 1 disables group-limited routing */
    int64_t topk_group;         /* groups kept per token */
    int32_t group_score;        /* moe_group_score */
    float group_mask_value;     /* the selection score of experts in dropped groups (-inf, or 0 for DeepSeek-V2) */
} moe_route_params;

/* Validates params against E; MOE_OK or MOE_EINVAL. */
moe_status moe_route_check(const moe_route_params *p, int64_t E);

/* weights (T, K) f32, experts (T, K) i32, scores (T, E) f32  <-  logits (T, E) f32, bias (E) f32 or NULL.
 * scores: the scoring function over the full row; bias shifts selection only. Rows of experts are
 * ordered by descending selection score, ties to the lower expert index. *bad_row gets the first
 * row holding a NaN (MOE_ENAN). */
moe_status moe_route(float *weights, int32_t *experts, float *scores, int64_t *bad_row,
                     const float *logits, const float *bias, int64_t T, int64_t E,
                     const moe_route_params *p);

/* values (R, K) f32, indices (R, K) i64  <-  x (R, M) f32: each row's K largest, descending,
 * ties to the lower index. *bad_row gets the first row holding a NaN (MOE_ENAN). */
moe_status moe_topk(float *values, int64_t *indices, int64_t *bad_row,
                    const float *x, int64_t R, int64_t M, int64_t K);

/* Capacity-limited routing, in place on a routing result.
 * weights (T, K) f32 [zeroed where dropped], dropped (T, K) u8, counts (E) i64 [kept per expert]
 *   <- experts (T, K) i32. Slots are served in priority order: rank-major (all first choices in
 * token order, then all second choices, ... as GShard) or token-major; a slot whose expert already
 * holds `capacity` tokens is dropped. */
typedef enum { MOE_PRIORITY_RANK = 0, MOE_PRIORITY_TOKEN = 1 } moe_priority;
moe_status moe_apply_capacity(float *weights, uint8_t *dropped, int64_t *counts,
                              const int32_t *experts, int64_t T, int64_t K, int64_t E,
                              int64_t capacity, int32_t priority);

/* Expert-choice routing (Zhou et al. 2022): each expert takes its C highest-scoring tokens.
 * gates (E, C) f32, tokens (E, C) i64  <-  scores (T, E) f32. Ties to the lower token index. */
moe_status moe_expert_choice(float *gates, int64_t *tokens, int64_t *bad_row,
                             const float *scores, int64_t T, int64_t E, int64_t C);

/* Load statistics: counts (E) i64 of (token, slot) pairs per expert, skipping dropped slots;
 * prob_sum (E) f64 column sums of scores (T, E) (may be NULL). Fixed summation order. */
moe_status moe_expert_load(int64_t *counts, double *prob_sum, const int32_t *experts,
                           const uint8_t *dropped, const float *scores, int64_t T, int64_t K,
                           int64_t E);

/* ---------- dispatch (dispatch.c) ---------- */
struct moe_experts_s; /* moe_experts, below */
/* The dispatch plan of a routing: slots (t, k) grouped by expert, in slot order within an expert.
 *   counts (E) i64: kept slots per expert; offsets (E + 1) i64: start of each expert's rows;
 *   order (N) i64: slot index t * K + k of each dispatched row (N = offsets[E]);
 *   position (T * K) i64: the row of each slot, or -1 if dropped.
 * Built with per-chunk histograms in parallel; the result does not depend on the thread count. */
moe_status moe_dispatch_plan(int64_t *counts, int64_t *offsets, int64_t *order, int64_t *position,
                             const int32_t *experts, const uint8_t *dropped, int64_t T, int64_t K, int64_t E);

/* The pieces of moe_forward, callable one by one (placement simulation, expert parallelism):
 *   plan (above) -> gather -> grouped FFN -> combine  ==  moe_forward, bitwise.
 * xs (N, H) <- x (T, H): row r is x[order[r] / K] (times weights[order[r]] when weights is not NULL:
 * Llama 4's scaled input). */
moe_status moe_gather(float *xs, const float *x, int64_t T, int64_t H, const int64_t *order, int64_t N, int64_t K,
                      const float *weights);
/* ys (N, H) <- f_e(xs) for the rows [offsets[e], offsets[e+1]) of each expert e (offsets (E + 1),
 * offsets[0] = 0, non-decreasing, N = offsets[E]); the arithmetic of moe_forward's FFN (ffn.c). */
moe_status moe_grouped_ffn(float *ys, const float *xs, const int64_t *offsets, const struct moe_experts_s *ex);
/* out (T, H) <- per token t, over its slots in ascending expert order, the kept rows
 * w[t,k] * ys[position[t K + k]] (w = 1 when scale_input), then + shared_gate[t] * shared_y[t]
 * (shared_y (T, H) or NULL; shared_gate NULL = 1). experts (T, K) must be unique per row. */
moe_status moe_combine(float *out, const float *ys, int64_t N, const int64_t *position, const int32_t *experts,
                       const float *weights, int64_t T, int64_t K, int64_t H, int32_t scale_input,
                       const float *shared_y, const float *shared_gate);
/* ---------- grouped expert FFN (ffn.c, pack.c) ---------- */
typedef enum {
    MOE_ACT_SILU = 0,      /* silu(gate) * up (SwiGLU) */
    MOE_ACT_GELU = 1,      /* gelu(gate) * up, or gelu(x) when not gated; erf form */
    MOE_ACT_GELU_TANH = 2, /* tanh approximation of gelu */
    MOE_ACT_RELU = 3,      /* relu (Switch: not gated) */
    MOE_ACT_GPT_OSS = 4,   /* (clamp(up, -l, l) + 1) * g * sigmoid(alpha g), g = clamp(gate, max=l) */
    MOE_ACT_NONE = 5,      /* identity (a plain linear map; ungated only) */
    MOE_ACT_RELU2 = 6      /* relu(x)^2 (Nemotron-H: not gated) */
} moe_activation;

/* expert weight element types; the INT formats are the blocks of quant.h */
typedef enum { MOE_DT_F32 = 0, MOE_DT_BF16 = 1, MOE_DT_INT8 = 2, MOE_DT_INT4 = 3, MOE_DT_INT4_ASYM = 4,
               MOE_DT_INT4_NL = 5 } moe_dtype;
#define MOE_DT_IS_QUANT(dt) ((dt) >= MOE_DT_INT8)
#define MOE_DT_QFORMAT(dt) ((dt) - MOE_DT_INT8) /* moe_qformat of quant.h */

#define MOE_PANEL 16 /* output columns per packed weight panel */

/* E experts of one shape, packed for the kernels (pack.c). Ip, Hp: I and H rounded up to MOE_PANEL.
 * float / bf16:  w_in  (E, Ip/16, H, P * 16): P = 2 (gate panel, up panel) when gated, else 1
 *                w_out (E, Hp/16, Ip, 16)
 * INT8 / INT4:   w_in  blocks [e][Ip/16][H/G][P], w_out blocks [e][Hp/16][I/G] (quant.h, quant.c)
 *   b_in  (E, P, Ip) f32 or NULL;  b_out (E, Hp) f32 or NULL */
typedef struct moe_experts_s {
    int64_t E, H, inter; /* experts, hidden size, expert width I (named inter: complex.h defines I) */
    int64_t group;       /* G of the INT formats (32, 64, 128), else 0 */
    int32_t dtype, gated, activation;
    float act_alpha, act_limit;
    const void *w_in, *w_out;
    const float *b_in, *b_out;
} moe_experts;

/* 1 if the kernels implement this activation code (with gating, when gated), else 0 */
int moe_activation_valid(int32_t activation, int32_t gated);

int64_t moe_round_up(int64_t n, int64_t m);
/* elements (not bytes) of the packed w_in / w_out of `ex` */
int64_t moe_packed_in_elems(int64_t E, int64_t H, int64_t inter, int32_t gated);
int64_t moe_packed_out_elems(int64_t E, int64_t H, int64_t inter);
/* dst <- gate (E, inter, H) and up (E, inter, H) (up NULL when not gated), in the element type `dtype`
 * (f32: float, bf16: uint16) */
moe_status moe_pack_in(void *dst, const void *gate, const void *up, int64_t E, int64_t H, int64_t inter, int32_t dtype);
/* dst <- down (E, H, inter) */
moe_status moe_pack_out(void *dst, const void *down, int64_t E, int64_t H, int64_t inter, int32_t dtype);

/* ---------- quantized weights (quant.c; formats in quant.h) ---------- */
typedef enum { MOE_Q_INT8 = 0, MOE_Q_INT4 = 1, MOE_Q_INT4_ASYM = 2, MOE_Q_INT4_NL = 3 } moe_qformat;
#define MOE_Q_LAST MOE_Q_INT4_NL
/* bytes of one block (16 columns x G inputs) and of its header (fp16 scales [+ offsets]); -1 if invalid */
int64_t moe_qformat_block_bytes(int32_t fmt, int64_t G);
int64_t moe_qformat_header_bytes(int32_t fmt);
/* bytes of E matrices (N outputs, K inputs) in format fmt (moe_qformat) with groups of G; -1 if invalid */
int64_t moe_qpacked_bytes(int64_t E, int64_t N, int64_t K, int32_t fmt, int64_t G);
/* dst <- w (E, N, K) f32; blocks [e][N/16][K/G] at stride P starting at slot p (P = 2 interleaves the
 * gate and up blocks of one panel and group). MOE_ENAN with *bad_index if w holds NaN or inf; MOE_ERANGE with *bad_index (the first input of the group) if a
 * block's fp16 scale or offset would overflow (|w| beyond ~8.3e6 for INT8, ~6.5e5 for INT4, 65504 for an
 * INT4-asym minimum): nothing is clamped silently. */
moe_status moe_quantize(uint8_t *dst, int64_t *bad_index, const float *w, int64_t E, int64_t N, int64_t K,
                        int32_t fmt, int64_t G, int32_t P, int32_t p);
/* xq (R, K) i8, scales (R, K/G) f32, sums (R, K/G) i32 <- x (R, K): the kernels' activation quantisation */
moe_status moe_quantize_rows(int8_t *xq, float *scales, int32_t *sums, const float *x, int64_t R, int64_t K,
                             int64_t G);
/* w (E, N, K) f32 <- blocks (stride P, slot p) */
moe_status moe_dequantize(float *w, const uint8_t *src, int64_t E, int64_t N, int64_t K, int32_t fmt, int64_t G,
                          int32_t P, int32_t p);

/* One MoE layer after routing:
 *   out (T, H) = sum over kept slots, in ascending expert order, of w[t,k] * f_e(x[t])
 *              + shared_gate[t] * f_shared(x[t])          (shared may be NULL, shared_gate NULL = 1)
 * scale_input = 1 (Llama 4): f_e is applied to w[t,k] * x[t] and the output is not weighted.
 * Each token's output is computed from its own row only, in a fixed order: it does not change
 * with the batch or the thread count. */
moe_status moe_forward(float *out, const float *x, int64_t T, const float *weights, const int32_t *experts,
                       const uint8_t *dropped, int64_t K, const moe_experts *routed, const moe_experts *shared,
                       const float *shared_gate, int32_t scale_input, void *work, int64_t work_bytes);
/* bytes of the work buffer moe_forward needs for these shapes (-1 if invalid); work = NULL makes
 * moe_forward allocate it itself (ggml's work-buffer pattern: callers that repeat reuse theirs) */
int64_t moe_forward_workspace(int64_t T, int64_t K, const moe_experts *routed, const moe_experts *shared,
                              int32_t scale_input);

/* out (T, N) = x (T, K) @ W^T for W packed as the ungated input matrix of one "expert" (E = 1,
 * H = K, inter = N, activation MOE_ACT_NONE): the router and dense projections, batch-invariant unlike BLAS.
 * W may be float32, bf16 or INT blocks (x then quantised to INT8 per group, as the experts' kernels do). */
moe_status moe_linear(float *out, const float *x, int64_t T, const moe_experts *w);

/* ---------- attention (attention.c, attention_kernels.inc) ---------- */
/* Shapes: B batch rows, Hq query heads, Hkv key/value heads (Hq % Hkv == 0; head h reads h / (Hq / Hkv)),
 * T queries, S keys, D query/key dim, Dv value dim. Strides are in elements, the last axis unit stride;
 * every stride >= 0 (0 broadcasts). */
typedef struct {
    int64_t B, Hq, Hkv, T, S, D, Dv;
    int64_t q_sb, q_sh, q_st; /* q (B, Hq, T, D) */
    int64_t k_sb, k_sh, k_ss; /* k (B, Hkv, S, D) */
    int64_t v_sb, v_sh, v_ss; /* v (B, Hkv, S, Dv) */
    int64_t m_sb, m_st;       /* allowed (B, T, S) bytes, nonzero = query t may attend key j */
    float scale;
} moe_attention_dims;
/* out (B, Hq, T, Dv) f32 contiguous = softmax_j(scale * q . k_j over allowed j [, sinks[h]]) @ v:
 * max-subtracted fp32 softmax with the router's exp; a sink logit sinks[h] (sinks (Hq) or NULL) joins
 * the max and the denominator only; a row with no allowed key is zeros. Each (b, h, t) is computed
 * from its own row in a fixed order: bitwise the same for any T, thread count and ISA. */
moe_status moe_attention(float *out, const float *q, const float *k, const float *v, const uint8_t *allowed,
                         const float *sinks, const moe_attention_dims *d);

/* ---- the decoder's norm and rotary embedding (norm_rope.c); each row alone, one fixed order */
/* y (R, n) <- x (R, n) / sqrt(mean(x^2) + eps) [* w (n)]: the mean's squares summed in double over 16 lanes */
moe_status moe_rms_norm(float *y, const float *x, int64_t R, int64_t n, const float *w, float eps);
enum { MOE_ROPE_HALF = 0, MOE_ROPE_PAIRS = 1, MOE_ROPE_PAIRS_TO_HALF = 2 };
/* out (R, H, dim) <- x (R, H, dim) rotated by cos, sin (R, dim / 2), broadcast over the H heads */
moe_status moe_rope(float *out, const float *x, int64_t R, int64_t H, int64_t dim, const float *cos_, const float *sin_,
                    int32_t layout);

#endif

"""Pure-NumPy twins of the C kernels in moepy._ops: the oracle the tests hold the kernels to.

Written for clarity, not speed; never imports moepy._C. Same conventions as the kernels: float32
arithmetic, top-k descending with ties to the lower index, NaN rows raise ValueError.
"""
from __future__ import annotations

import numpy as np

SCORINGS = ("softmax", "sigmoid")
GROUP_SCORES = ("max", "top2_sum")


def _check_nan(x: np.ndarray, name: str):
    bad = np.isnan(x).any(axis=1)
    if bad.any():
        raise ValueError(f"{name} holds NaN in row {int(np.argmax(bad))}")


def topk(x: np.ndarray, k: int):
    """x (R, M) -> values (R, k), indices (R, k) int64: descending, ties to the lower index."""
    x = np.asarray(x, np.float32)
    if not 1 <= k <= x.shape[1]:
        raise ValueError(f"k must be in [1, {x.shape[1]}], got {k}")
    _check_nan(x, "x")
    idx = np.argsort(-x, axis=1, kind="stable")[:, :k].astype(np.int64)
    return np.take_along_axis(x, idx, axis=1), idx


def softmax(x: np.ndarray) -> np.ndarray:
    """Row softmax in float32; +inf entries share the mass, an all -inf row is uniform."""
    x = np.asarray(x, np.float32)
    out = np.empty_like(x)
    m = x.max(axis=1, keepdims=True) if x.shape[1] else np.zeros((x.shape[0], 1), np.float32)
    inf_rows = np.isinf(m[:, 0])
    fin = ~inf_rows
    if fin.any():
        e = np.exp(x[fin] - m[fin])
        out[fin] = e / e.sum(axis=1, keepdims=True, dtype=np.float32)
    if inf_rows.any():
        hit = x[inf_rows] == m[inf_rows]
        out[inf_rows] = hit / hit.sum(axis=1, keepdims=True).astype(np.float32)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    with np.errstate(over="ignore"):
        return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)


def route(logits: np.ndarray, config, bias=None):
    """Twin of moepy._ops.route_arrays: logits (T, E) -> weights (T, K), experts (T, K) int32, scores (T, E).
    config: a moepy.routing.RouterConfig (its routing fields; capacity is not applied here)."""
    K, before, normalize = config.top_k, config.topk_before_score, config.normalize
    norm_p, norm_eps, scale, G = config.norm_p, config.norm_eps, config.scale, config.n_group
    topk_group, mask_value = config.topk_group, config.group_mask_value
    x = np.asarray(logits, np.float32)
    T, E = x.shape
    _check_nan(x, "logits")
    act = softmax if config.scoring == "softmax" else sigmoid
    scores = act(x)
    sel = (x if before else scores).copy()
    if bias is not None:
        sel = sel + np.asarray(bias, np.float32)[None, :]
    if G > 1:
        grouped = sel.reshape(T, G, E // G)
        if config.group_score == "top2_sum" and E // G > 1:
            two = -np.sort(-grouped, axis=2)[:, :, :2]
            gscore = two[:, :, 0] + two[:, :, 1]
        else:
            gscore = grouped.max(axis=2)
        _, keep = topk(gscore, topk_group)
        kept = np.zeros((T, G), bool)
        np.put_along_axis(kept, keep, True, axis=1)
        sel = np.where(np.repeat(kept, E // G, axis=1), sel, np.float32(mask_value)).astype(np.float32)
    _, idx = topk(sel, K)
    if before:
        w = act(np.take_along_axis(x, idx, axis=1))
    else:
        w = np.take_along_axis(scores, idx, axis=1)
    if normalize:
        if norm_p == 1.0:
            norm = np.abs(w).sum(axis=1, keepdims=True, dtype=np.float32)
        else:
            norm = (np.abs(w) ** np.float32(norm_p)).sum(axis=1, keepdims=True) ** np.float32(1 / norm_p)
        denom = (norm + np.float32(norm_eps)).astype(np.float32)
        w = np.where(denom > 0, w / np.where(denom > 0, denom, 1), w)
    if scale != 1.0:
        w = w * np.float32(scale)
    return w.astype(np.float32), idx.astype(np.int32), scores


def apply_capacity(weights: np.ndarray, experts: np.ndarray, num_experts: int, capacity: int, priority: str = "rank"):
    """Twin of moepy._ops.apply_capacity (in place on weights) -> dropped (T, K) bool, counts (E,)."""
    if capacity < 0:
        raise ValueError(f"capacity must be >= 0, got {capacity}")
    T, K = experts.shape
    dropped = np.zeros((T, K), bool)
    counts = np.zeros(num_experts, np.int64)
    order = [(t, k) for k in range(K) for t in range(T)] if priority == "rank" else \
            [(t, k) for t in range(T) for k in range(K)]
    for t, k in order:
        e = experts[t, k]
        if counts[e] < capacity:
            counts[e] += 1
        else:
            dropped[t, k] = True
            weights[t, k] = 0.0
    return dropped, counts


def expert_choice(scores: np.ndarray, capacity: int):
    """Twin of moepy._ops.expert_choice: scores (T, E) -> gates (E, C), tokens (E, C) int64."""
    return topk(np.ascontiguousarray(np.asarray(scores, np.float32).T), capacity)


def expert_load(experts: np.ndarray, dropped, scores, num_experts: int):
    """Twin of moepy._ops.expert_load -> counts (E,) int64, prob_sum (E,) float64 | None."""
    ids = experts.ravel() if dropped is None else experts.ravel()[~np.asarray(dropped).ravel()]
    counts = np.bincount(ids, minlength=num_experts).astype(np.int64)
    psum = None if scores is None else np.asarray(scores, np.float64).sum(axis=0)
    return counts, psum


def dispatch_plan(experts: np.ndarray, dropped, num_experts: int):
    """Twin of moepy._ops.dispatch_plan."""
    T, K = experts.shape
    flat = experts.ravel().astype(np.int64)
    keep = np.ones(T * K, bool) if dropped is None else ~np.asarray(dropped).ravel()
    slots = np.nonzero(keep)[0]
    order = slots[np.argsort(flat[slots], kind="stable")]
    counts = np.bincount(flat[slots], minlength=num_experts).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    position = np.full(T * K, -1, np.int64)
    position[order] = np.arange(len(order))
    return counts, offsets, order.astype(np.int64), position


def gather(x: np.ndarray, order: np.ndarray, top_k: int, weights=None) -> np.ndarray:
    """Twin of moepy._ops.gather: row r = x[order[r] // top_k] (times weights.flat[order[r]] if given)."""
    order = np.asarray(order, np.int64)
    rows = np.asarray(x, np.float32)[order // top_k]
    if weights is not None:
        rows = (np.asarray(weights, np.float32).ravel()[order][:, None] * rows).astype(np.float32)
    return rows


def grouped_ffn(xs: np.ndarray, offsets: np.ndarray, ex) -> np.ndarray:
    """Twin of moepy._ops.grouped_ffn in float64: rows offsets[e]:offsets[e+1] through expert e of ex
    (a moepy.moe.ExpertWeights) -> (N, H) float32."""
    out = np.zeros((xs.shape[0], ex.shape[1]), np.float64)
    for e in range(len(offsets) - 1):
        a, b = int(offsets[e]), int(offsets[e + 1])
        if b > a:
            out[a:b] = expert_ffn(xs[a:b], ex, e)
    return out.astype(np.float32)


def combine(ys: np.ndarray, position: np.ndarray, experts: np.ndarray, weights: np.ndarray, scale_input=False,
            shared_y=None, shared_gate=None) -> np.ndarray:
    """Twin of moepy._ops.combine in float32, the kernel's order: per token, kept slots in ascending expert
    order (o += w * y), then o += gate * shared_y."""
    T, K = experts.shape
    H = ys.shape[1]
    out = np.zeros((T, H), np.float32)
    pos = np.asarray(position).reshape(T, K)
    for t in range(T):
        for k in np.argsort(experts[t], kind="stable"):
            if pos[t, k] >= 0:
                w = np.float32(1) if scale_input else np.float32(weights[t, k])
                out[t] = out[t] + w * ys[pos[t, k]]
        if shared_y is not None:
            g = np.float32(1) if shared_gate is None else np.float32(shared_gate[t])
            out[t] = out[t] + g * shared_y[t]
    return out


def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[np.float64])(x)


def expert_ffn(x: np.ndarray, ex, e: int) -> np.ndarray:
    """f_e(x) for x (n, H) in float64, ex a moepy.moe.ExpertWeights (float32 weights)."""
    x = x.astype(np.float64)
    up = x @ ex.up[e].T.astype(np.float64) + (0 if ex.up_bias is None else ex.up_bias[e])
    if ex.gate is not None:
        g = x @ ex.gate[e].T.astype(np.float64) + (0 if ex.gate_bias is None else ex.gate_bias[e])
    else:
        g = up
    if ex.activation == "gpt_oss":
        g = np.minimum(g, ex.limit)
        h = g / (1 + np.exp(-ex.alpha * g))
        if ex.gate is not None:
            h = h * (np.clip(up, -ex.limit, ex.limit) + 1)
    else:
        act = {"silu": lambda a: a / (1 + np.exp(-a)), "swiglu": lambda a: a / (1 + np.exp(-a)),
               "relu": lambda a: np.maximum(a, 0), "relu2": lambda a: np.maximum(a, 0) ** 2,
               "gelu": lambda a: 0.5 * a * (1 + _erf(a / np.sqrt(2))),
               "gelu_tanh": lambda a: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3)))}
        act["gelu_new"] = act["gelu_pytorch_tanh"] = act["gelu_tanh"]
        h = act[ex.activation](g) * (up if ex.gate is not None else 1)
    return h @ ex.down[e].T.astype(np.float64) + (0 if ex.down_bias is None else ex.down_bias[e])


def moe_layer_forward(x, weights, experts, dropped, ex, shared=None, shared_gate=None, scale_input=False):
    """Twin of moepy._ops.moe_forward in float64: x (T, H) -> (T, H) float32."""
    T, K = experts.shape
    out = np.zeros(x.shape, np.float64)
    for e in np.unique(experts):
        tok, slot = np.nonzero((experts == e) & (True if dropped is None else ~np.asarray(dropped)))
        if len(tok) == 0:
            continue
        w = weights[tok, slot].astype(np.float64)[:, None]
        if scale_input:
            out[tok] += expert_ffn(x[tok] * w, ex, e)
        else:
            out[tok] += w * expert_ffn(x[tok], ex, e)
    if shared is not None:
        g = 1.0 if shared_gate is None else np.asarray(shared_gate, np.float64)[:, None]
        out += g * expert_ffn(x, shared, 0)
    return out.astype(np.float32)


# ---------------------------------------------------------------- quantized experts (csrc/quant.*)
Q_ZERO = {"int8": 128, "int4": 8, "int4_asym": 0}
F32 = np.float32


def quantize_weights(w: np.ndarray, fmt: str, G: int):
    """Twin of moe_quantize's arithmetic: w (E, N, K) f32 -> codes u (E, N, K) uint8, scale and
    offset (E, N, K/G) as fp16 (offset None unless int4_asym)."""
    E, N, K = w.shape
    g = np.asarray(w, F32).reshape(E, N, K // G, G)
    if not np.isfinite(g).all():
        raise ValueError("weights hold NaN or inf")
    m16 = None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if fmt == "int8":
            s16 = (np.abs(g).max(-1) / F32(127)).astype(np.float16)
            s = s16.astype(F32)[..., None]
            q = np.where(s > 0, np.rint(g / s), F32(0))
            u = np.clip(q, -127, 127) + 128
        elif fmt == "int4":
            idx = np.abs(g).argmax(-1)[..., None]
            mx = np.take_along_axis(g, idx, -1)[..., 0]
            best = np.full(mx.shape, np.inf)
            s16 = np.full(mx.shape, np.inf, np.float16)  # stays inf when no candidate fits fp16
            for i in range(9):  # divisors 8, 8.25, ..., 10: least squared error wins (first on ties)
                h = (mx / F32(-(8.0 + 0.25 * i))).astype(np.float16)
                s = h.astype(F32)[..., None]
                v = np.clip(np.where(s != 0, np.rint(g / s), F32(0)), -8, 7)
                d = g.astype(np.float64) - (s * v).astype(F32).astype(np.float64)
                err = np.cumsum(d * d, axis=-1)[..., -1]  # sequential, as the C loop
                take = err < best
                best = np.where(take, err, best)
                s16 = np.where(take, h, s16)
            s = s16.astype(F32)[..., None]
            u = np.clip(np.where(s != 0, np.rint(g / s) + F32(8), F32(8)), 0, 15)
        else:
            lo, hi = g.min(-1), g.max(-1)
            s16 = ((hi - lo) / F32(15)).astype(np.float16)
            m16 = lo.astype(np.float16)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isinf(s16).any() or (m16 is not None and np.isinf(m16).any()):  # as moe_quantize: MOE_ERANGE
            raise ValueError("weights are too large for fp16 block scales")
    with np.errstate(divide="ignore", invalid="ignore"):
        if fmt == "int4_asym":
            s, m = s16.astype(F32)[..., None], m16.astype(F32)[..., None]
            u = np.clip(np.where(s > 0, np.rint((g - m) / s), F32(0)), 0, 15)
    return u.reshape(E, N, K).astype(np.uint8), s16, m16


def dequantize_weights(u, s16, m16, fmt: str, G: int) -> np.ndarray:
    E, N, K = u.shape
    uf = u.reshape(E, N, K // G, G).astype(F32)
    s = s16.astype(F32)[..., None]
    w = s * uf + m16.astype(F32)[..., None] if fmt == "int4_asym" else s * (uf - F32(Q_ZERO[fmt]))
    return w.reshape(E, N, K).astype(F32)


def pack_blocks(u, s16, m16, fmt: str, G: int, P: int = 1, p: int = 0, out=None) -> np.ndarray:
    """The byte layout of csrc/quant.h for codes u (E, N, K): blocks [e][N/16][K/G] (slot p of P)."""
    E, N, K = u.shape
    Np = -(-N // 16) * 16
    pad_u = np.full((E, Np, K), {"int8": 128, "int4": 8, "int4_asym": 0}[fmt], np.uint8)
    pad_u[:, :N] = u
    pad_s = np.zeros((E, Np, K // G), np.float16)
    pad_s[:, :N] = s16
    hdr = 64 if fmt == "int4_asym" else 32
    bb = hdr + (16 if fmt == "int8" else 8) * G
    nblocks = E * (Np // 16) * (K // G)
    blocks = np.zeros((nblocks, P, bb), np.uint8) if out is None else out.reshape(nblocks, P, bb)
    # (e, panel, group, column, k) -> codes of each block, columns inner
    cu = pad_u.reshape(E, Np // 16, 16, K // G, G).transpose(0, 1, 3, 2, 4).reshape(nblocks, 16, G)
    cs = pad_s.reshape(E, Np // 16, 16, K // G).transpose(0, 1, 3, 2).reshape(nblocks, 16)
    blocks[:, p, :32] = np.ascontiguousarray(cs).view(np.uint8).reshape(nblocks, 32)
    if fmt == "int4_asym":
        pad_m = np.zeros((E, Np, K // G), np.float16)
        pad_m[:, :N] = m16
        cm = pad_m.reshape(E, Np // 16, 16, K // G).transpose(0, 1, 3, 2).reshape(nblocks, 16)
        blocks[:, p, 32:64] = np.ascontiguousarray(cm).view(np.uint8).reshape(nblocks, 32)
    if fmt == "int8":  # quads: [quad j][column c][4 inputs]
        q = cu.reshape(nblocks, 16, G // 4, 4).transpose(0, 2, 1, 3).reshape(nblocks, 16 * G)
    else:  # pairs of quads: low nibble quad 2j, high nibble quad 2j+1
        c8 = cu.reshape(nblocks, 16, G // 8, 2, 4)
        q = (c8[:, :, :, 0, :] | (c8[:, :, :, 1, :] << 4)).transpose(0, 2, 1, 3).reshape(nblocks, 8 * G)
    blocks[:, p, hdr:] = q
    return blocks.reshape(-1)


def quantize_activations(x: np.ndarray, G: int):
    """Twin of the kernels' quantize_rows: x (R, K) -> xq (R, K) int8, sx (R, K/G) f32, sums (R, K/G) i32."""
    R, K = x.shape
    g = np.asarray(x, F32).reshape(R, K // G, G)
    bad = ~np.isfinite(g).all(-1)  # a group holding NaN or inf: scale NaN, codes and sums 0
    g = np.where(bad[..., None], F32(0), g)
    amax = np.abs(g).max(-1)
    s = (amax / F32(127)).astype(F32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, F32(1) / s, F32(0)).astype(F32)
    q = np.clip(np.rint(g * inv[..., None]), -127, 127)
    return q.reshape(R, K).astype(np.int8), np.where(bad, F32(np.nan), s).astype(F32), q.sum(-1).astype(np.int32)


def qmatmul(x: np.ndarray, u, s16, m16, fmt: str, G: int) -> np.ndarray:
    """Twin of the INT kernels for one matrix: x (R, K) f32 @ dequant(u)^T (N, K) -> (R, N) f32 with
    the kernels' arithmetic: int dots per group, then acc = acc + sx * (s * (D - z S)) in float32."""
    xq, sx, S = quantize_activations(x, G)
    R, K = x.shape
    N = u.shape[0]
    ng = K // G
    acc = np.zeros((R, N), F32)
    s = s16.astype(F32)  # (N, ng)
    for g in range(ng):
        D = xq[:, g * G:(g + 1) * G].astype(np.int64) @ u[:, g * G:(g + 1) * G].astype(np.int64).T  # (R, N)
        if fmt == "int4_asym":
            t = s[None, :, g] * D.astype(F32) + m16.astype(F32)[None, :, g] * S[:, g, None].astype(F32)
        else:
            t = s[None, :, g] * (D - Q_ZERO[fmt] * S[:, g, None].astype(np.int64)).astype(F32)
        acc = acc + sx[:, g, None] * t
    return acc


def expf_poly(x):
    """Bit-exact twin of the kernels' expf_poly (csrc/kernels/simd_kernels.inc) in float32."""
    x = np.asarray(x, F32)
    xc = np.maximum(np.minimum(x, F32(88.7228393)), F32(-104.0))
    n = (xc * F32(1.44269504088896341) + F32(12582912.0)) - F32(12582912.0)
    r = xc - n * F32(0.693359375)
    r = r - n * F32(-2.12194440e-4)
    p = F32(1.9875691500e-4)
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = p * r + F32(c)
    p = p * r * r + r + F32(1.0)
    ni = n.astype(np.int32)
    n1 = ni >> 1
    n2 = ni - n1
    s1 = ((n1 + 127) << 23).astype(np.int32).view(F32)
    s2 = ((n2 + 127) << 23).astype(np.int32).view(F32)
    with np.errstate(over="ignore"):
        y = (p * s1) * s2
    y = np.where(x > F32(88.7228393), F32(np.inf), y)
    return np.where(x < F32(-104.0), F32(0), y).astype(F32)


def erf_approx(x):
    """Bit-exact twin of the kernels' erf_approx (Abramowitz & Stegun 7.1.26) in float32."""
    x = np.asarray(x, F32)
    ax = np.abs(x)
    t = F32(1) / (F32(1) + F32(0.3275911) * ax)
    poly = t * (F32(0.254829592) + t * (F32(-0.284496736) + t * (F32(1.421413741) + t * (F32(-1.453152027)
                                                                                       + t * F32(1.061405429)))))
    return np.copysign(F32(1) - poly * expf_poly(-ax * ax), x).astype(F32)


def activate_exact(g, u, ex):
    """Twin of the kernels' fused activation (csrc/kernels/ffn_kernels.inc activate) in float32."""
    g = np.asarray(g, F32)
    gb = g + (F32(0) if ex.gate_bias is None else 0)
    if ex.activation in ("silu", "swiglu"):
        v = gb / (F32(1) + expf_poly(-gb))
    elif ex.activation == "gelu":
        v = F32(0.5) * gb * (F32(1) + erf_approx(gb * F32(0.70710678118654752)))
    elif ex.activation in ("gelu_tanh", "gelu_new", "gelu_pytorch_tanh"):
        z = F32(0.7978845608028654) * (gb + F32(0.044715) * gb * gb * gb)
        with np.errstate(over="ignore"):
            th = F32(1) - F32(2) / (expf_poly(F32(2) * z) + F32(1))
        v = F32(0.5) * gb * (F32(1) + th)
    elif ex.activation == "relu":
        v = np.where(gb < 0, F32(0), gb)
    elif ex.activation == "relu2":
        v = np.where(gb < 0, F32(0), gb * gb)
    elif ex.activation == "gpt_oss":
        a = np.minimum(gb, F32(ex.limit))
        v = a / (F32(1) + expf_poly(F32(-ex.alpha) * a))
        if u is not None:
            v = v * (np.clip(u, F32(-ex.limit), F32(ex.limit)) + F32(1))
        return v.astype(F32)
    else:
        raise NotImplementedError(f"exact twin for {ex.activation}")
    return (v * u if u is not None else v).astype(F32)


def moe_layer_forward_quant(x, weights, experts, dropped, qex, ex, fmt: str, G: int):
    """NumPy model of the INT path of moe_forward (routed experts only, no biases): qex = dict of
    (u, s16, m16) for 'gate', 'up', 'down' from quantize_weights; ex the ExpertWeights (activation)."""
    T, K = experts.shape
    H = x.shape[1]
    out = np.zeros((T, H), F32)
    contrib = {}
    for e in np.unique(experts):
        tok, slot = np.nonzero((experts == e) & (True if dropped is None else ~np.asarray(dropped)))
        if len(tok) == 0:
            continue
        sel = lambda name: tuple(None if a is None else a[e] for a in qex[name])  # noqa: E731
        xe = x[tok]
        up = qmatmul(xe, *sel("up"), fmt, G)
        if qex.get("gate") is not None:
            h = activate_exact(qmatmul(xe, *sel("gate"), fmt, G), up, ex)
        else:
            h = activate_exact(up, None, ex)
        y = qmatmul(h, *sel("down"), fmt, G)
        for i, (t, k) in enumerate(zip(tok, slot)):
            contrib[(t, e)] = weights[t, k] * y[i]
    for t in range(T):  # ascending expert order, as the kernel combines
        for e in sorted(int(v) for v in experts[t]):
            if (t, e) in contrib:
                out[t] = out[t] + contrib[(t, e)]
    return out

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


def route(logits: np.ndarray, params, bias=None):
    """Twin of moepy._ops.route: logits (T, E) -> weights (T, K), experts (T, K) int32, scores (T, E).
    params: RouterConfig.c_params_tuple (or the RouterConfig itself)."""
    params = getattr(params, "c_params_tuple", params)
    (K, scoring, before, normalize, norm_p, norm_eps, scale, G, topk_group, group_score, mask_value) = params
    x = np.asarray(logits, np.float32)
    T, E = x.shape
    _check_nan(x, "logits")
    act = softmax if SCORINGS[scoring] == "softmax" else sigmoid
    scores = act(x)
    sel = (x if before else scores).copy()
    if bias is not None:
        sel = sel + np.asarray(bias, np.float32)[None, :]
    if G > 1:
        grouped = sel.reshape(T, G, E // G)
        if GROUP_SCORES[group_score] == "top2_sum" and E // G > 1:
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


def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[np.float64])(x)


def expert_ffn(x: np.ndarray, ex, e: int) -> np.ndarray:
    """f_e(x) for x (n, H) in float64, ex a moepy.layer.ExpertWeights (float32 weights)."""
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
               "relu": lambda a: np.maximum(a, 0), "gelu": lambda a: 0.5 * a * (1 + _erf(a / np.sqrt(2))),
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

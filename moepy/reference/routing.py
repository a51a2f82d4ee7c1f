"""Twins of routing, top-k, capacity, expert choice and load (csrc/kernels/route*.inc, capacity.c).
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

"""Twins of the dispatch plan, gather and combine (csrc/kernels/dispatch.c).
"""
from __future__ import annotations

import numpy as np

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

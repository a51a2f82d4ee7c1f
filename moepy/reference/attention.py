"""Twin of moe_attention (csrc/kernels/attention.c): scaled dot-product attention with a boolean mask, GQA head
sharing and gpt-oss sinks, in float64 (or float32) NumPy.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, allowed: np.ndarray, scale: float,
              sinks: Optional[np.ndarray] = None, dtype=np.float64) -> np.ndarray:
    """q (B, Hq, T, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv), allowed (B, T, S) bool, sinks (Hq,) or None
    -> (B, Hq, T, Dv) float32. Query head h reads key/value head h // (Hq / Hkv); scores scale * q . k over the
    allowed keys, a sink logit joins the softmax's max and denominator and is dropped; a row with no allowed key
    is zeros."""
    B, Hq, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    g = Hq // Hkv
    qd, kd, vd = (np.asarray(a, dtype) for a in (q, k, v))
    kd, vd = np.repeat(kd, g, axis=1), np.repeat(vd, g, axis=1)  # (B, Hq, S, .)
    s = np.matmul(qd, kd.transpose(0, 1, 3, 2)) * dtype(scale)  # (B, Hq, T, S)
    ok = np.broadcast_to(np.asarray(allowed, bool)[:, None], s.shape)
    s = np.where(ok, s, -np.inf)
    m = s.max(axis=-1, keepdims=True) if S else np.full(s.shape[:-1] + (1,), -np.inf, dtype)
    if sinks is not None:
        sk = np.asarray(sinks, dtype).reshape(1, Hq, 1, 1)
        m = np.maximum(m, sk)
    m = np.where(np.isfinite(m), m, 0)
    p = np.where(ok, np.exp(s - m), 0)
    den = p.sum(axis=-1, keepdims=True)
    if sinks is not None:
        den = den + np.exp(sk - m)
    empty = ~ok.any(axis=-1, keepdims=True)
    out = np.matmul(p / np.where(empty, 1, den), vd)
    return np.where(empty, 0, out).astype(np.float32)

"""Twins of moe_rms_norm and moe_rope (csrc/kernels/norm_rope.c), bit for bit.

rms_norm: the squares of a row summed in float64 over 16 lanes (element i into lane i % 16, in ascending i; a
sequential sum per lane is a cumsum), the lanes combined l += l + w for w = 8, 4, 2, 1, the mean rounded to float32,
then x * (1 / sqrt(mean + eps)) [* weight] in float32. rope: re = a c - b s, im = b c + a s in float32 with every
product and sum rounded, a / b the halves ("half") or the even / odd dims ("pairs" writes them back interleaved,
"pairs_to_half" as halves).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

LAYOUTS = ("half", "pairs", "pairs_to_half")  # the kernel's layout codes 0, 1, 2


def rms_norm(x: np.ndarray, weight: Optional[np.ndarray], eps: float) -> np.ndarray:
    """x (R, n) float32, weight (n,) float32 or None -> (R, n) float32."""
    x = np.asarray(x, np.float32)
    R, n = x.shape
    x64 = np.zeros((R, -(-n // 16) * 16), np.float64)
    x64[:, :n] = x
    lanes = np.cumsum(np.square(x64).reshape(R, x64.shape[1] // 16, 16), axis=1)[:, -1, :]
    for w in (8, 4, 2, 1):
        lanes = lanes[:, :w] + lanes[:, w:2 * w]
    with np.errstate(over="ignore"):  # a mean beyond float32 is inf, as the kernel's cast gives
        var = (lanes[:, :1] / n).astype(np.float32)
    y = x * (np.float32(1.0) / np.sqrt(var + np.float32(eps)))
    return y if weight is None else y * np.asarray(weight, np.float32)


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, layout: str) -> np.ndarray:
    """x (R, H, dim) float32 rotated by cos / sin (R, dim / 2) -> (R, H, dim) float32."""
    x = np.asarray(x, np.float32)
    h = x.shape[-1] // 2
    c, s = np.asarray(cos, np.float32)[:, None, :], np.asarray(sin, np.float32)[:, None, :]
    a, b = (x[..., :h], x[..., h:]) if layout == "half" else (x[..., 0::2], x[..., 1::2])
    re, im = a * c - b * s, b * c + a * s
    if layout == "pairs":
        return np.stack([re, im], axis=-1).reshape(x.shape)
    return np.concatenate([re, im], axis=-1)

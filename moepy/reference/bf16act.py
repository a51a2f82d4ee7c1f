"""Bit-exact twins of the bf16-activation path (moepy.set_activation_precision("bf16"); csrc/kernels/ffn.c,
ffn_kernels.inc block_gemm_dp, vec_*.h vf_dp), in float32 arithmetic:

- activations are rounded to bf16 once (round to nearest even; zero and subnormal values to a zero of their sign;
  NaN stays NaN): the tokens on the way in, each expert row's hidden vector before the down projection;
- each output element is one chain over the input pairs (k, k + 1) in order, as vdpbf16ps computes it: the odd
  input's product added first, then the even one's, each sum rounded to float32 with a subnormal result flushed to
  zero, subnormal inputs read as zero; an odd input count gets a zero pair partner.
"""
from __future__ import annotations

import numpy as np

from .quant import activate_exact

F32 = np.float32


def bf16_round(x) -> np.ndarray:
    """x float32 -> the bf16 values the kernels multiply, as float32 (round to nearest even, subnormals to zero)."""
    u = np.ascontiguousarray(x, F32).view(np.uint32)
    exp_zero = (u & 0x7F800000) == 0
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32)
    r = np.where(exp_zero, (u >> 16) & 0x8000, np.where(nan, (u >> 16) | 0x40, r))
    return (r.astype(np.uint32) << 16).view(F32)


def _flush(a: np.ndarray) -> np.ndarray:
    """float32 values with a zero exponent (zero, subnormal) to a zero of their sign."""
    u = a.view(np.uint32)
    return np.where((u & 0x7F800000) == 0, u & 0x80000000, u).astype(np.uint32).view(F32)


def dot_pairs(xb: np.ndarray, w: np.ndarray) -> np.ndarray:
    """xb (R, K) bf16 values (float32) @ w (N, K) bf16 values (float32)^T -> (R, N) float32 in the kernel's order."""
    xb, w = _flush(np.ascontiguousarray(xb, F32)), _flush(np.ascontiguousarray(w, F32))
    R, K = xb.shape
    if K % 2:
        xb, w = np.pad(xb, ((0, 0), (0, 1))), np.pad(w, ((0, 0), (0, 1)))
    acc = np.zeros((R, w.shape[0]), F32)
    x64, w64 = xb.astype(np.float64), w.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(0, xb.shape[1], 2):
            for j in (k + 1, k):  # odd input first; each product of two bf16 is exact, the sum rounded once
                acc = _flush((acc.astype(np.float64) + x64[:, j, None] * w64[None, :, j]).astype(F32))
    return acc


def _pad_cols(a: np.ndarray, n: int) -> np.ndarray:
    return np.pad(a, ((0, 0), (0, n - a.shape[1])))


def expert_ffn(x: np.ndarray, ex, e: int, panel: int = 16) -> np.ndarray:
    """f_e(x) for x (n, H) float32 with bf16 activations; ex a moepy.moe.ExpertWeights of bf16-exact float32
    weights (MoELayer.to_float32_reference). The down projection runs over the padded width, as the kernel does."""
    xb = bf16_round(x)
    up = dot_pairs(xb, ex.up[e]) + (F32(0) if ex.up_bias is None else ex.up_bias[e].astype(F32))
    if ex.gate is not None:
        g = dot_pairs(xb, ex.gate[e]) + (F32(0) if ex.gate_bias is None else ex.gate_bias[e].astype(F32))
        h = activate_exact(g.astype(F32), up.astype(F32), ex)
    else:
        h = activate_exact(up.astype(F32), None, ex)
    Ip = -(-h.shape[1] // panel) * panel
    y = dot_pairs(bf16_round(_pad_cols(h, Ip)), _pad_cols(ex.down[e], Ip))
    return (y + (F32(0) if ex.down_bias is None else ex.down_bias[e].astype(F32))).astype(F32)


def grouped_ffn(xs: np.ndarray, offsets, ex) -> np.ndarray:
    """Twin of moepy._ops.grouped_ffn with bf16 activations -> (N, H) float32."""
    out = np.zeros((xs.shape[0], ex.shape[1]), F32)
    for e in range(len(offsets) - 1):
        a, b = int(offsets[e]), int(offsets[e + 1])
        if b > a:
            out[a:b] = expert_ffn(xs[a:b], ex, e)
    return out


def linear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Twin of moepy._ops.linear for bf16 weights w (N, H) with bf16 activations -> (T, N) float32."""
    return dot_pairs(bf16_round(x), w)


def moe_layer_forward(x, weights, experts, dropped, ex, shared=None, shared_gate=None, scale_input=False):
    """Twin of moepy._ops.moe_forward with bf16 activations, float32 throughout -> (T, H) float32: each token's
    kept experts combined in ascending expert order, out += w * y (then + gate * the shared expert's output)."""
    x = np.asarray(x, F32)
    T, K = experts.shape
    keep = np.ones((T, K), bool) if dropped is None else ~np.asarray(dropped)
    contrib = {}
    for e in np.unique(experts):
        tok, slot = np.nonzero((experts == e) & keep)
        if len(tok) == 0:
            continue
        w = weights[tok, slot].astype(F32)[:, None]
        y = expert_ffn(x[tok] * w if scale_input else x[tok], ex, int(e))
        for i, (t, k) in enumerate(zip(tok, slot)):
            contrib[(int(t), int(e))] = y[i] if scale_input else w[i] * y[i]
    out = np.zeros(x.shape, F32)
    for t in range(T):
        for e in sorted(int(v) for v in experts[t]):
            if (t, e) in contrib:
                out[t] = out[t] + contrib[(t, e)]
    if shared is not None:
        g = np.ones(T, F32) if shared_gate is None else np.asarray(shared_gate, F32)
        out = out + g[:, None] * expert_ffn(x, shared, 0)
    return out

"""Twins of the expert FFN and the whole layer in float (csrc/kernels/ffn.c, ffn_kernels.inc), float64.
"""
from __future__ import annotations

import numpy as np

def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[np.float64])(x)


def expert_ffn(x: np.ndarray, ex, e: int) -> np.ndarray:
    """f_e(x) for x (n, H) in float64, ex a moepy.moe.ExpertWeights (float32 weights)."""
    h = expert_hidden(x, ex, e)
    return h @ ex.down[e].T.astype(np.float64) + (0 if ex.down_bias is None else ex.down_bias[e])


def expert_hidden(x: np.ndarray, ex, e: int) -> np.ndarray:
    """The input of expert e's down projection for x (n, H): act(x gate^T) * (x up^T), (n, I) float64."""
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
    return h


def grouped_ffn(xs: np.ndarray, offsets: np.ndarray, ex) -> np.ndarray:
    """Twin of moepy._ops.grouped_ffn in float64: rows offsets[e]:offsets[e+1] through expert e of ex
    (a moepy.moe.ExpertWeights) -> (N, H) float32."""
    out = np.zeros((xs.shape[0], ex.shape[1]), np.float64)
    for e in range(len(offsets) - 1):
        a, b = int(offsets[e]), int(offsets[e + 1])
        if b > a:
            out[a:b] = expert_ffn(xs[a:b], ex, e)
    return out.astype(np.float32)


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

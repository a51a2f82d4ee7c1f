"""ExpertWeights: E experts in nn.Linear orientation, and their packing into the kernels' panel layout.

Weights are held in a canonical form (gate/up (E, I, H), down (E, H, I)) and packed once into the
layout the kernels read (csrc/kernels/pack.c; INT formats: moepy.moe.quant).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import _ops
from . import quant

ACTIVATIONS = {"silu": 0, "swiglu": 0, "gelu": 1, "gelu_tanh": 2, "gelu_new": 2, "gelu_pytorch_tanh": 2,
               "relu": 3, "gpt_oss": 4, "relu2": 6}
ACT_NONE = 5
DTYPES = ("float32", "bfloat16", "int8", "int4", "int4_asym")
PANEL = 16


def round_up(n: int, m: int = PANEL) -> int:
    return (n + m - 1) // m * m


def to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> raw bfloat16 bits (uint16), round to nearest even; ml_dtypes.bfloat16 arrays pass through."""
    if a.dtype == np.uint16:
        return np.ascontiguousarray(a)
    if a.dtype.name == "bfloat16":
        return np.ascontiguousarray(a).view(np.uint16)
    try:  # ml_dtypes (the bf16 extra) converts ~50x faster, with the same rounding
        import ml_dtypes
        return np.ascontiguousarray(a, dtype=np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)
    except ImportError:
        pass
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        rounded[nan] = 0x7FC0
    return rounded


def from_bf16_bits(b: np.ndarray) -> np.ndarray:
    return (np.ascontiguousarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


@dataclass
class ExpertWeights:
    """E experts in nn.Linear orientation, float32 (or raw bf16 uint16 / ml_dtypes.bfloat16).

    gate (E, I, H) or None for an ungated FFN (then `up` is the only input matrix: act(x up^T));
    up (E, I, H); down (E, H, I); optional biases gate_bias/up_bias (E, I), down_bias (E, H).
    activation: "silu" (SwiGLU), "gelu", "gelu_tanh", "relu", or "gpt_oss" (clamped, alpha, limit)."""

    up: np.ndarray
    down: np.ndarray
    gate: Optional[np.ndarray] = None
    gate_bias: Optional[np.ndarray] = None
    up_bias: Optional[np.ndarray] = None
    down_bias: Optional[np.ndarray] = None
    activation: str = "silu"
    alpha: float = 1.702
    limit: float = 7.0

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        E, I, H = self.up.shape
        if self.down.shape != (E, H, I):
            raise ValueError(f"down must be (E, H, I) = {(E, H, I)}, got {self.down.shape}")
        if self.gate is not None and self.gate.shape != (E, I, H):
            raise ValueError(f"gate must have the shape of up {(E, I, H)}, got {self.gate.shape}")
        for name, b, shape in [("gate_bias", self.gate_bias, (E, I)), ("up_bias", self.up_bias, (E, I)),
                               ("down_bias", self.down_bias, (E, H))]:
            if b is not None and np.shape(b) != shape:
                raise ValueError(f"{name} must be {shape}, got {np.shape(b)}")
        for name in ("up", "down", "gate"):
            w = getattr(self, name)
            if w is not None and w.dtype in (np.float32, np.float64) and not np.isfinite(w).all():
                raise ValueError(f"{name} holds NaN or inf")

    @property
    def shape(self):
        """(E, H, I)"""
        E, I, H = self.up.shape
        return E, H, I

    @property
    def gated(self) -> bool:
        return self.gate is not None

    def num_params(self) -> int:
        n = sum(int(np.prod(w.shape)) for w in (self.gate, self.up, self.down) if w is not None)
        return n + sum(int(np.prod(b.shape)) for b in (self.gate_bias, self.up_bias, self.down_bias) if b is not None)

    def as_float32(self) -> "ExpertWeights":
        def f(w):
            if w is None:
                return None
            if w.dtype == np.uint16 or w.dtype.name == "bfloat16":
                return from_bf16_bits(to_bf16_bits(w))
            return np.ascontiguousarray(w, dtype=np.float32)
        return ExpertWeights(f(self.up), f(self.down), f(self.gate), f(self.gate_bias), f(self.up_bias),
                             f(self.down_bias), self.activation, self.alpha, self.limit)

    def packed(self, dtype: str, group_size: int = 32) -> tuple:
        """The experts tuple that moepy._C.moe_forward takes (packs the weights; call once).
        dtype: "float32", "bfloat16", or an INT format of moepy.moe.quant ("int8", "int4", "int4_asym")."""
        E, H, I = self.shape
        if dtype in quant.FORMATS:
            f32 = self.as_float32()
            w_in, w_out = quant.pack_experts(f32.gate, f32.up, f32.down, dtype, group_size)
            b_in, b_out = self._packed_biases()
            return (E, H, I, int(self.gated), ACTIVATIONS[self.activation], float(self.alpha), float(self.limit),
                    w_in, w_out, b_in, b_out, quant.DTYPE_CODES[dtype], int(group_size))
        conv = (lambda w: to_bf16_bits(w)) if dtype == "bfloat16" else \
            (lambda w: np.ascontiguousarray(w, dtype=np.float32))
        first = self.gate if self.gated else self.up
        w_in = _ops.pack(0, conv(first), conv(self.up) if self.gated else None)
        w_out = _ops.pack(1, conv(self.down))
        b_in, b_out = self._packed_biases()
        return (E, H, I, int(self.gated), ACTIVATIONS[self.activation], float(self.alpha), float(self.limit),
                w_in, w_out, b_in, b_out)

    def _packed_biases(self):
        """Biases padded to the panel widths: b_in (E * P * Ip,), b_out (E * Hp,) or None."""
        E, H, I = self.shape
        Ip, Hp = round_up(I), round_up(H)
        b_in = b_out = None
        if self.gate_bias is not None or self.up_bias is not None:
            P = 2 if self.gated else 1
            b = np.zeros((E, P, Ip), np.float32)
            first_bias = self.gate_bias if self.gated else self.up_bias
            if first_bias is not None:
                b[:, 0, :I] = first_bias
            if self.gated and self.up_bias is not None:
                b[:, 1, :I] = self.up_bias
            b_in = b.ravel()
        if self.down_bias is not None:
            b = np.zeros((E, Hp), np.float32)
            b[:, :H] = self.down_bias
            b_out = b.ravel()
        return b_in, b_out


def pack_linear(weight: np.ndarray) -> tuple:
    """weight (N, H) float32 -> the packed tuple moepy._ops.linear takes."""
    N, H = weight.shape
    w_in = _ops.pack(0, np.ascontiguousarray(weight, dtype=np.float32)[None])
    w_out = np.zeros(_ops.packed_out_elems(1, H, N), np.float32)  # unused by linear()
    return (1, H, N, 0, ACT_NONE, 0.0, 0.0, w_in, w_out, None, None)



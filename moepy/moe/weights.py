"""ExpertWeights: E experts in nn.Linear orientation, and their packing into the kernels' panel layout.

Weights are held in a canonical form (gate/up (E, I, H), down (E, H, I)) and packed once into the
layout the kernels read (csrc/kernels/pack.c; INT formats: moepy.moe.quant).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import _ops

# activation names a user may give -> the kernels' names (their codes come from moepy._C)
ACTIVATION_ALIASES = {"silu": "silu", "swiglu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_tanh",
                      "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu", "gpt_oss": "gpt_oss",
                      "relu2": "relu2"}
ACTIVATIONS = {name: _ops.ACTIVATIONS[c] for name, c in ACTIVATION_ALIASES.items()}
DTYPES = tuple(_ops.DTYPES)
PANEL = _ops.PANEL


def round_up(n: int, m: int = PANEL) -> int:
    return (n + m - 1) // m * m


def to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> raw bfloat16 bits (uint16), round to nearest even; ml_dtypes.bfloat16 arrays and raw
    uint16 bits (of either byte order) pass through as native uint16."""
    a = np.asarray(a)
    if a.dtype.kind == "u" and a.dtype.itemsize == 2:  # raw bits, maybe big-endian: never taken as integers
        return np.ascontiguousarray(a, dtype=np.uint16)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
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
    """Raw bfloat16 bits (uint16) -> float32 (exact)."""
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
        for name in ("up", "down", "gate"):
            w = getattr(self, name)
            if w is not None and len(np.shape(w)) != 3:
                raise ValueError(f"{name} must be 3-dimensional (E, I, H) / (E, H, I), got shape {np.shape(w)}")
        E, I, H = self.up.shape
        if self.down.shape != (E, H, I):
            raise ValueError(f"down must be (E, H, I) = {(E, H, I)}, got {self.down.shape}")
        if self.gate is not None and self.gate.shape != (E, I, H):
            raise ValueError(f"gate must have the shape of up {(E, I, H)}, got {self.gate.shape}")
        for name, b, shape in [("gate_bias", self.gate_bias, (E, I)), ("up_bias", self.up_bias, (E, I)),
                               ("down_bias", self.down_bias, (E, H))]:
            if b is not None and np.shape(b) != shape:
                raise ValueError(f"{name} must be {shape}, got {np.shape(b)}")
        for name in ("up", "down", "gate", "gate_bias", "up_bias", "down_bias"):
            w = getattr(self, name)
            if w is not None:
                _ops._finite(w, name)  # float, bf16 and raw bf16 bits alike: ValueError naming the tensor
        for name in ("alpha", "limit"):
            v = getattr(self, name)
            if isinstance(v, (bool, str)) or not np.isfinite(float(v)):
                raise ValueError(f"{name} must be a finite number, got {v!r}")

    @property
    def shape(self):
        """(E, H, I)"""
        E, I, H = self.up.shape
        return E, H, I

    @property
    def gated(self) -> bool:
        """True for GLU experts (a gate matrix beside up)."""
        return self.gate is not None

    def num_params(self) -> int:
        """Weights and biases of the E experts."""
        n = sum(int(np.prod(w.shape)) for w in (self.gate, self.up, self.down) if w is not None)
        return n + sum(int(np.prod(b.shape)) for b in (self.gate_bias, self.up_bias, self.down_bias) if b is not None)

    def as_float32(self) -> "ExpertWeights":
        """A copy with every weight widened to float32 (bf16 exactly)."""
        def f(w):
            if w is None:
                return None
            if (w.dtype.kind == "u" and w.dtype.itemsize == 2) or w.dtype.name == "bfloat16":
                return from_bf16_bits(to_bf16_bits(w))
            return np.ascontiguousarray(w, dtype=np.float32)
        return ExpertWeights(f(self.up), f(self.down), f(self.gate), f(self.gate_bias), f(self.up_bias),
                             f(self.down_bias), self.activation, self.alpha, self.limit)

    def packed(self, dtype: str, group_size: int = 32) -> "_ops.PackedExperts":
        """The experts packed for the kernels (moepy._ops.PackedExperts; call once).
        dtype: "float32", "bfloat16", or an INT format of moepy.moe.quant ("int8", "int4", "int4_asym")."""
        conv = to_bf16_bits if dtype == "bfloat16" else (lambda w: w)
        src = self if dtype == "bfloat16" else self.as_float32()
        gate = None if src.gate is None else conv(src.gate)
        return _ops.pack_experts(conv(src.up), conv(src.down), gate, gate_bias=self.gate_bias, up_bias=self.up_bias,
                                 down_bias=self.down_bias, activation=ACTIVATION_ALIASES[self.activation],
                                 alpha=self.alpha, limit=self.limit, dtype=dtype, group_size=group_size)


def pack_linear(weight: np.ndarray) -> "_ops.PackedExperts":
    """weight (N, H) float32 -> the packed weight moepy._ops.linear takes."""
    return _ops.pack_linear(np.asarray(weight, dtype=np.float32))

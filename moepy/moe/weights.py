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
        _check_activation_constants(self)

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
        dtype: "float32", "bfloat16", or an INT format of moepy.moe.quant ("int8", "int4", "int4_asym", "int4_nl")."""
        conv = to_bf16_bits if dtype == "bfloat16" else (lambda w: w)
        src = self if dtype == "bfloat16" else self.as_float32()
        gate = None if src.gate is None else conv(src.gate)
        return _ops.pack_experts(conv(src.up), conv(src.down), gate, gate_bias=self.gate_bias, up_bias=self.up_bias,
                                 down_bias=self.down_bias, activation=ACTIVATION_ALIASES[self.activation],
                                 alpha=self.alpha, limit=self.limit, dtype=dtype, group_size=group_size)


def pack_linear(weight: np.ndarray) -> "_ops.PackedExperts":
    """weight (N, H) float32 -> the packed weight moepy._ops.linear takes."""
    return _ops.pack_linear(np.asarray(weight, dtype=np.float32))


class ExpertSource:
    """E experts read one at a time from their source tensors (a checkpoint's memory map, or per-expert views of a
    fused tensor), never stacked: `packed(dtype)` packs (or quantizes) expert by expert into the one buffer the
    kernels read, so a load holds the packed copy and at most one expert's temporary (a dtype conversion or a
    transpose), not a canonical (E, I, H) stack beside it.

    gate(e) / up(e) -> (I, H), down(e) -> (H, I): float32, ml_dtypes.bfloat16 or raw bf16 bits (uint16), in
    nn.Linear orientation (gate None for an ungated FFN). bf16: the weights are bf16 in this layer (float32
    sources are rounded to nearest even, as packing an ExpertWeights for "bfloat16" rounds them), so an INT
    format quantizes the bf16 values, as quantizing the bf16 panels would. Biases as in ExpertWeights."""

    def __init__(self, E: int, up, down, gate=None, *, gate_bias=None, up_bias=None, down_bias=None,
                 activation: str = "silu", alpha: float = 1.702, limit: float = 7.0, bf16: bool = False):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.E = int(E)
        self._get = {"gate": gate, "up": up, "down": down}
        self.activation, self.alpha, self.limit, self.bf16 = activation, alpha, limit, bool(bf16)
        first = np.shape(up(0))
        if len(first) != 2:
            raise ValueError(f"up of expert 0 must be a matrix (I, H), got shape {first}")
        self.I, self.H = int(first[0]), int(first[1])
        self._want = {"gate": (self.I, self.H), "up": (self.I, self.H), "down": (self.H, self.I)}
        for name in ("down", "gate"):
            if self._get[name] is not None:
                self._one(name, 0)  # the shapes of expert 0 now, the others as they are packed
        E, H, I = self.shape
        for name, b, shape in [("gate_bias", gate_bias, (E, I)), ("up_bias", up_bias, (E, I)),
                               ("down_bias", down_bias, (E, H))]:
            if b is not None:
                if np.shape(b) != shape:
                    raise ValueError(f"{name} must be {shape}, got {np.shape(b)}")
                _ops._finite(b, name)
            setattr(self, name, b)
        _check_activation_constants(self)

    @property
    def shape(self):
        """(E, H, I)"""
        return self.E, self.H, self.I

    @property
    def gated(self) -> bool:
        """True for GLU experts (a gate matrix beside up)."""
        return self._get["gate"] is not None

    def num_params(self) -> int:
        """Weights and biases of the E experts."""
        E, H, I = self.shape
        n = E * H * I * (3 if self.gated else 2)
        return n + sum(int(np.prod(b.shape)) for b in (self.gate_bias, self.up_bias, self.down_bias) if b is not None)

    def _one(self, name: str, e: int) -> np.ndarray:
        """Expert e's matrix as the source gives it (shape checked)."""
        w = self._get[name](e)
        if np.shape(w) != self._want[name]:
            what = "(H, I)" if name == "down" else "(I, H)"
            raise ValueError(f"{name} of expert {e} must be {what} = {self._want[name]} (the shape of up), got "
                             f"{np.shape(w)}")
        return w

    def _expert(self, name: str, e: int, dtype: str) -> np.ndarray:
        """Expert e's matrix as (1, N, K) in the packing's element type: raw bf16 bits for "bfloat16", float32
        otherwise (bf16 values when the layer is bf16); ValueError naming the tensor and index for NaN / inf."""
        w = self._one(name, e)
        raw = (w.dtype.kind == "u" and w.dtype.itemsize == 2) or w.dtype.name == "bfloat16"
        bad = (to_bf16_bits(w) & 0x7F80) == 0x7F80 if raw else ~np.isfinite(w)  # as ExpertWeights checks
        if bad.any():
            raise ValueError(f"{name} holds NaN or inf at {(e,) + tuple(int(i) for i in np.argwhere(bad)[0])}")
        if dtype == "bfloat16" or (self.bf16 and dtype in _QFORMATS):
            w = to_bf16_bits(w)
            if dtype != "bfloat16":
                w = from_bf16_bits(w).reshape(w.shape)
        elif raw:
            w = from_bf16_bits(to_bf16_bits(w)).reshape(w.shape)
        else:
            w = np.ascontiguousarray(w, dtype=np.float32)
        return w[None]

    def check(self) -> None:
        """The checks packing makes (every expert's shapes; NaN / inf), one expert at a time, without packing."""
        for e in range(self.E):
            for name in ("gate", "up", "down"):
                if self._get[name] is not None:
                    self._expert(name, e, "float32" if not self.bf16 else "bfloat16")

    def packed(self, dtype: str, group_size: int = 32) -> "_ops.PackedExperts":
        """The experts packed for the kernels (as ExpertWeights.packed gives them, bit for bit), built expert by
        expert into one buffer. dtype: "float32", "bfloat16", or an INT format of moepy.moe.quant."""
        from .packed import _packed
        E, H, I = self.shape
        gated = self.gated
        names = ("gate", "up") if gated else ("up",)
        if dtype in _QFORMATS:
            from . import quant
            quant.check_format(dtype, group_size)
            G = int(group_size)
            for what, k in (("hidden size H", H), ("expert width I", I)):
                if k % G:
                    raise ValueError(f"group_size {G} must divide the {what} = {k}")
            bb = quant.block_bytes(dtype, G)
            n_in = _ops.round_up(I) // PANEL * (H // G) * len(names) * bb
            n_out = _ops.round_up(H) // PANEL * (I // G) * bb
            w_in, w_out = np.zeros(E * n_in, np.uint8), np.zeros(E * n_out, np.uint8)  # calloc: no pages yet
            for e in range(E):
                dst = w_in[e * n_in:(e + 1) * n_in]
                for slot, name in enumerate(names):
                    _ops.quantize(self._expert(name, e, dtype), dtype, G, len(names), slot, out=dst, name=name)
                _ops.quantize(self._expert("down", e, dtype), dtype, G, out=w_out[e * n_out:(e + 1) * n_out],
                              name="down")
            return _packed(self, w_in, w_out, dtype, G)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        etype = np.uint16 if dtype == "bfloat16" else np.float32
        n_in, n_out = _ops.packed_elems(1, H, I, gated)
        w_in, w_out = np.empty(E * n_in, etype), np.empty(E * n_out, etype)
        for e in range(E):
            _ops.pack(0, *(self._expert(n, e, dtype) for n in names), out=w_in[e * n_in:(e + 1) * n_in])
            _ops.pack(1, self._expert("down", e, dtype), out=w_out[e * n_out:(e + 1) * n_out])
        return _packed(self, w_in, w_out, dtype, 0)

    def matrices(self):
        """(gate or None, up, down) stacked as the sources give them (a full copy: for references only)."""
        st = lambda n: None if self._get[n] is None else np.stack([self._one(n, e) for e in range(self.E)])  # noqa
        return st("gate"), st("up"), st("down")

    def as_weights(self) -> ExpertWeights:
        """An ExpertWeights of the stacked sources (a full copy)."""
        gate, up, down = self.matrices()
        return ExpertWeights(up=up, down=down, gate=gate, gate_bias=self.gate_bias, up_bias=self.up_bias,
                             down_bias=self.down_bias, activation=self.activation, alpha=self.alpha, limit=self.limit)

    def as_float32(self) -> ExpertWeights:
        """A copy with every weight widened to float32 (bf16 exactly)."""
        return self.as_weights().as_float32()

    @property
    def gate(self):
        """gate (E, I, H) stacked on each access (a full copy); None if ungated."""
        return self.matrices()[0]

    @property
    def up(self):
        """up (E, I, H) stacked on each access (a full copy)."""
        return self.matrices()[1]

    @property
    def down(self):
        """down (E, H, I) stacked on each access (a full copy)."""
        return self.matrices()[2]


_QFORMATS = tuple(_ops.QFORMATS)


def _check_activation_constants(ex) -> None:
    """GPT-OSS's alpha and limit: finite numbers (ValueError naming the one that is not)."""
    for name in ("alpha", "limit"):
        v = getattr(ex, name)
        if isinstance(v, (bool, str)) or not np.isfinite(float(v)):
            raise ValueError(f"{name} must be a finite number, got {v!r}")

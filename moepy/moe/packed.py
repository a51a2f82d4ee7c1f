"""Experts held only in the kernels' packed layout (INT blocks): no float copy of the weights.

A layer whose routed experts are quantized keeps `PackedOnlyExperts` as its `experts`: the shape, activation and
biases, and the packed tuple the kernels read. `packed(dtype, group_size)` hands that tuple back when asked for
the same format (so a layer rebuilt from it, by pickling or by moepy.io's MoELayer.load, is bit-identical and
never requantized); `as_float32()` dequantizes the blocks (for NumPy references and for requantizing to another
format), one call at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import _ops
from . import quant


class _Packed:
    """What both packed-only expert kinds answer from their fields (E, H, I, gated, w_in, w_out, biases)."""

    @property
    def shape(self):
        """(E, H, I)"""
        return self.E, self.H, self.I

    @property
    def nbytes(self) -> int:
        """Bytes of the packed weights (INT blocks or float panels) the kernels read."""
        return int(self.w_in.nbytes + self.w_out.nbytes)

    def num_params(self) -> int:
        """Weights (and biases) the packed form stands for."""
        n = self.E * self.H * self.I * (3 if self.gated else 2)
        return n + sum(int(b.size) for b in (self.gate_bias, self.up_bias, self.down_bias) if b is not None)


@dataclass(eq=False)
class PackedOnlyExperts(_Packed):
    """E experts as INT blocks: w_in (gate and up interleaved per block, or up alone) and w_out, uint8 in
    moepy.moe.quant's layout; biases float32 in canonical form (gate_bias/up_bias (E, I), down_bias (E, H))."""

    E: int
    H: int
    I: int
    gated: bool
    activation: str
    alpha: float
    limit: float
    format: str
    group_size: int
    w_in: np.ndarray
    w_out: np.ndarray
    gate_bias: Optional[np.ndarray] = None
    up_bias: Optional[np.ndarray] = None
    down_bias: Optional[np.ndarray] = None

    def __post_init__(self):
        quant.check_format(self.format, self.group_size)
        bb = quant.block_bytes(self.format, self.group_size)
        E, H, I, G = self.E, self.H, self.I, self.group_size
        if H % G or I % G:
            raise ValueError(f"group_size {G} must divide H = {H} and I = {I}")
        want_in = E * (-(-I // 16)) * (H // G) * (2 if self.gated else 1) * bb
        want_out = E * (-(-H // 16)) * (I // G) * bb
        for name, a, want in (("w_in", self.w_in, want_in), ("w_out", self.w_out, want_out)):
            if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 1 or a.size != want:
                raise ValueError(f"{name} must be {want} uint8 bytes for {self.format} (E={E}, H={H}, I={I}, "
                                 f"G={G}, gated={self.gated}), got {getattr(a, 'dtype', type(a))} "
                                 f"{getattr(a, 'shape', '')}")

    @classmethod
    def from_packed(cls, experts, packed: tuple, fmt: str, group_size: int) -> "PackedOnlyExperts":
        """From an ExpertWeights and the packed tuple its `packed(fmt, group_size)` returned."""
        return cls(int(packed[0]), int(packed[1]), int(packed[2]), bool(packed[3]), experts.activation,
                   float(experts.alpha), float(experts.limit), fmt, int(group_size),
                   np.ascontiguousarray(packed[7]), np.ascontiguousarray(packed[8]),
                   _f32(experts.gate_bias), _f32(experts.up_bias), _f32(experts.down_bias))

    def packed(self, dtype: str, group_size: int = 32) -> tuple:
        """The kernels' tuple: the stored blocks for this format and group size; another format requantizes
        the dequantized weights (lossy: a second rounding)."""
        if dtype == self.format and int(group_size) == self.group_size:
            return _packed(self, self.w_in, self.w_out, dtype, self.group_size)
        return self.as_float32().packed(dtype, group_size)

    def matrices(self, which=("gate", "up", "down")):
        """Dequantized (gate or None, up, down) float32 in canonical form (only those in `which`)."""
        code = self.format
        G = self.group_size
        gate = up = down = None
        if self.gated:
            if "gate" in which:
                gate = _ops.dequantize(self.w_in, self.E, self.I, self.H, code, G, 2, 0)
            if "up" in which:
                up = _ops.dequantize(self.w_in, self.E, self.I, self.H, code, G, 2, 1)
        elif "up" in which:
            up = _ops.dequantize(self.w_in, self.E, self.I, self.H, code, G)
        if "down" in which:
            down = _ops.dequantize(self.w_out, self.E, self.H, self.I, code, G)
        return gate, up, down

    @property
    def gate(self) -> Optional[np.ndarray]:
        """The dequantized gate (E, I, H) float32, computed on each access (not stored); None if ungated."""
        return self.matrices(("gate",))[0] if self.gated else None

    @property
    def up(self) -> np.ndarray:
        """The dequantized up (E, I, H) float32, computed on each access (not stored)."""
        return self.matrices(("up",))[1]

    @property
    def down(self) -> np.ndarray:
        """The dequantized down (E, H, I) float32, computed on each access (not stored)."""
        return self.matrices(("down",))[2]

    def as_float32(self):
        """An ExpertWeights of the dequantized weights (float32)."""
        from .weights import ExpertWeights
        gate, up, down = self.matrices()
        return ExpertWeights(up=up, down=down, gate=gate, gate_bias=self.gate_bias, up_bias=self.up_bias,
                             down_bias=self.down_bias, activation=self.activation, alpha=self.alpha, limit=self.limit)


def _f32(b):
    return None if b is None else np.ascontiguousarray(b, dtype=np.float32)


def _packed(ex, w_in, w_out, dtype: str, group: int) -> "_ops.PackedExperts":
    """The kernels' PackedExperts of stored weights (biases padded to the panel widths, as _ops.pack_experts
    pads them)."""
    from .weights import ACTIVATION_ALIASES
    E, H, I = ex.shape
    b_in, b_out = _ops.pad_biases(E, H, I, ex.gated, ex.gate_bias, ex.up_bias, ex.down_bias)
    return _ops.PackedExperts(int(E), int(H), int(I), int(ex.gated),
                              _ops.ACTIVATIONS[ACTIVATION_ALIASES[ex.activation]], float(ex.alpha), float(ex.limit),
                              w_in, w_out, b_in, b_out, _ops.DTYPES[dtype], int(group))


@dataclass(eq=False)
class PackedFloatExperts(_Packed):
    """E float32 or bf16 experts held only as the kernels' panels (csrc/kernels/pack.c): w_in (E, I/16, H, P, 16)
    and w_out (E, H/16, Ip, 16), flattened. gate / up / down are unpacked on access (not stored), so a layer holds
    one copy of its weights, not a canonical copy beside the packed one."""

    E: int
    H: int
    I: int
    gated: bool
    activation: str
    alpha: float
    limit: float
    dtype: str
    w_in: np.ndarray
    w_out: np.ndarray
    gate_bias: Optional[np.ndarray] = None
    up_bias: Optional[np.ndarray] = None
    down_bias: Optional[np.ndarray] = None

    @classmethod
    def from_packed(cls, experts, packed: tuple, dtype: str) -> "PackedFloatExperts":
        """From an ExpertWeights and the packed tuple its `packed(dtype)` returned."""
        return cls(int(packed[0]), int(packed[1]), int(packed[2]), bool(packed[3]), experts.activation,
                   float(experts.alpha), float(experts.limit), dtype, packed[7], packed[8],
                   _f32(experts.gate_bias), _f32(experts.up_bias), _f32(experts.down_bias))

    def _view(self, a):
        if self.dtype == "bfloat16":
            import ml_dtypes
            return a.view(ml_dtypes.bfloat16)
        return a

    def _unpack_in(self, p: int) -> np.ndarray:
        E, H, I = self.E, self.H, self.I
        P, npi = (2 if self.gated else 1), -(-I // 16)
        a = self.w_in.reshape(E, npi, H, P, 16)[:, :, :, p, :]
        return self._view(np.ascontiguousarray(a.transpose(0, 1, 3, 2).reshape(E, npi * 16, H)[:, :I]))

    @property
    def gate(self) -> Optional[np.ndarray]:
        """gate (E, I, H), unpacked on each access; None if ungated."""
        return self._unpack_in(0) if self.gated else None

    @property
    def up(self) -> np.ndarray:
        """up (E, I, H), unpacked on each access."""
        return self._unpack_in(1 if self.gated else 0)

    @property
    def down(self) -> np.ndarray:
        """down (E, H, I), unpacked on each access."""
        E, H, I = self.E, self.H, self.I
        nph, Ip = -(-H // 16), -(-I // 16) * 16
        a = self.w_out.reshape(E, nph, Ip, 16).transpose(0, 1, 3, 2).reshape(E, nph * 16, Ip)[:, :H, :I]
        return self._view(np.ascontiguousarray(a))

    def packed(self, dtype: str, group_size: int = 32) -> tuple:
        """The kernels' tuple: the stored panels for this dtype; an INT format is quantized expert by expert from
        the panels (one expert in float32 at a time); float32 <-> bf16 repacks the whole."""
        if dtype == self.dtype:
            return _packed(self, self.w_in, self.w_out, dtype, 0)
        if dtype in quant.FORMATS:
            w_in, w_out = self._quantize_per_expert(dtype, group_size)
            return _packed(self, w_in, w_out, dtype, int(group_size))
        return self.as_float32().packed(dtype, group_size)

    def _one(self, e: int) -> "PackedFloatExperts":
        E, H, I = self.E, self.H, self.I
        n_in, n_out = self.w_in.size // E, self.w_out.size // E
        return PackedFloatExperts(1, H, I, self.gated, self.activation, self.alpha, self.limit, self.dtype,
                                  self.w_in[e * n_in:(e + 1) * n_in], self.w_out[e * n_out:(e + 1) * n_out])

    def _quantize_per_expert(self, fmt: str, G: int):
        quant.check_format(fmt, G)
        E, H, I = self.E, self.H, self.I
        for what, k in (("hidden size H", H), ("expert width I", I)):
            if k % G:
                raise ValueError(f"group_size {G} must divide the {what} = {k}")
        bb, code = quant.block_bytes(fmt, G), fmt
        per_in = (-(-I // 16)) * (H // G) * (2 if self.gated else 1) * bb
        per_out = (-(-H // 16)) * (I // G) * bb
        w_in, w_out = np.empty(E * per_in, np.uint8), np.empty(E * per_out, np.uint8)
        f32 = lambda w: np.ascontiguousarray(w, dtype=np.float32)  # noqa: E731
        for e in range(E):
            one = self._one(e)
            dst_in, dst_out = w_in[e * per_in:(e + 1) * per_in], w_out[e * per_out:(e + 1) * per_out]
            if self.gated:
                both = _ops.quantize(f32(one.gate), code, G, 2, 0)
                _ops.quantize(f32(one.up), code, G, 2, 1, out=both)
                dst_in[:] = both
            else:
                dst_in[:] = _ops.quantize(f32(one.up), code, G)
            dst_out[:] = _ops.quantize(f32(one.down), code, G)
        return w_in, w_out

    def as_float32(self):
        """An ExpertWeights of the weights in float32 (bf16 widened exactly)."""
        from .weights import ExpertWeights
        f = lambda w: None if w is None else np.asarray(w, dtype=np.float32)  # noqa: E731
        return ExpertWeights(up=f(self.up), down=f(self.down), gate=f(self.gate), gate_bias=self.gate_bias,
                             up_bias=self.up_bias, down_bias=self.down_bias, activation=self.activation,
                             alpha=self.alpha, limit=self.limit)

"""Quantized expert weights: INT8 and INT4 (symmetric, asymmetric and non-uniform) with a scale per group.

A matrix W (N outputs, K inputs) is stored as blocks of 16 output columns x G inputs (G = 32, 64 or
128 dividing K), each with fp16 scales (and, for "int4_asym", fp16 offsets): see csrc/kernels/quant.h for
the byte layout and the dequantisation rules:
    int8       w = s (u - 128),  s = max|w| / 127                   8.5 bits per weight at G = 32
    int4       w = s (u - 8),    s = (signed max) / -8              4.5 bits per weight at G = 32
    int4_asym  w = s u + m,      m = min, s = (max - min) / 15     5.0 bits per weight at G = 32
    int4_nl    w = s L[u],       L = IQ4_NL's 16 levels            4.5 bits per weight at G = 32
               (-127 ... 113, denser near zero; s the least squared error of 9 candidates and their refits)
The kernels quantise activations to INT8 once per token and group and compute the dots in
integers (AVX-512 VNNI, AVX2, or scalar); `MoELayer.quantize("int4", group_size=32)` gives a layer
whose routed experts use them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _ops
from .._inputs import as_float32

FORMATS = dict(_ops.QFORMATS)  # name -> moe_qformat (csrc/kernels/moe.h), read from moepy._C
DTYPE_CODES = {f: _ops.DTYPES[f] for f in FORMATS}  # name -> moe_dtype
GROUP_SIZES = (32, 64, 128)


def block_bytes(fmt: str, group_size: int) -> int:
    """Bytes of one block of 16 columns x group_size inputs (the structs of csrc/kernels/quant.h)."""
    check_format(fmt, group_size)
    return _ops.QBLOCK_BYTES[(fmt, group_size)]


def bits_per_weight(fmt: str, group_size: int = 32) -> float:
    """Storage bits per weight, scales (and offsets) included."""
    check_format(fmt, group_size)
    return block_bytes(fmt, group_size) * 8 / (16 * group_size)


def check_format(fmt: str, group_size: int):
    """ValueError unless fmt is an INT format and group_size one of GROUP_SIZES."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {tuple(FORMATS)}, got {fmt!r}")
    if group_size not in GROUP_SIZES:
        raise ValueError(f"group_size must be one of {GROUP_SIZES}, got {group_size!r}")


@dataclass(frozen=True)
class QuantizedTensor:
    """E matrices (N, K) quantized into blocks (uint8, the layout of csrc/kernels/quant.h)."""

    blocks: np.ndarray
    shape: tuple  # (E, N, K)
    format: str
    group_size: int

    @property
    def nbytes(self) -> int:
        """Bytes of the blocks (scales included)."""
        return int(self.blocks.nbytes)

    @property
    def bits_per_weight(self) -> float:
        """Bits per stored weight, scales included (padding columns of a partial panel counted)."""
        return self.nbytes * 8 / float(np.prod(self.shape))

    def dequantize(self) -> np.ndarray:
        """The float32 (E, N, K) weights the blocks encode."""
        E, N, K = self.shape
        return _ops.dequantize(self.blocks, E, N, K, FORMATS[self.format], self.group_size)


def quantize(weights: np.ndarray, format: str = "int8", group_size: int = 32) -> QuantizedTensor:
    """Quantize weights (N, K) or (E, N, K), groups of `group_size` along K (the input dimension).
    weights follow moepy's input rule (moepy/_inputs.py: array-likes, DLPack tensors, other float precisions
    converted to float32). Raises ValueError for NaN/inf weights (naming the index), a group size that does not
    divide K, an unknown format, or a scale beyond fp16's range."""
    check_format(format, group_size)
    w = as_float32(weights, "weights", (2, 3))
    if w.ndim == 2:
        w = w[None]
    if w.shape[2] % group_size:
        raise ValueError(f"group_size {group_size} must divide the input dimension {w.shape[2]}")
    blocks = _ops.quantize(np.ascontiguousarray(w), FORMATS[format], group_size)
    return QuantizedTensor(blocks, tuple(w.shape), format, group_size)


def dequantize(q: QuantizedTensor) -> np.ndarray:
    """float32 (E, N, K) weights of a QuantizedTensor."""
    return q.dequantize()


def pack_experts(gate, up, down, fmt: str, group_size: int):
    """Quantized w_in (gate and up blocks interleaved per panel and group, or up alone when gate is
    None) and w_out blocks for the C engine. gate/up (E, I, H), down (E, H, I) float32.
    (moepy._ops.pack_experts builds the whole PackedExperts.)"""
    check_format(fmt, group_size)
    p = _ops.pack_experts(up, down, gate, activation="silu" if gate is not None else "relu", dtype=fmt,
                          group_size=group_size)
    return p.w_in, p.w_out

"""The dense pieces of a decoder: linear projections, RMSNorm / LayerNorm, the dense MLP.

Projections run through moepy's C linear kernel (float32 or bf16 panels, fp32 accumulation): a token's result does
not depend on the other tokens of the call, unlike a BLAS GEMM whose blocking follows the batch size. The dense
MLP is a one-expert grouped FFN (the experts' kernel, so it takes every expert dtype, INT included).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _ops
from ..families._checkpoint import is_bf16, to_numpy
from ..moe import quant
from ..moe.weights import ExpertWeights, from_bf16_bits, to_bf16_bits

DTYPES = ("float32", "bfloat16")


def weight_array(a, dtype: str, name: str, shape=None) -> np.ndarray:
    """A checkpoint matrix as float32, or as raw bf16 bits (uint16) when dtype is "bfloat16" (float32 sources are
    rounded to nearest even). ValueError naming the tensor for a wrong shape or non-finite values."""
    a = to_numpy(a)
    if a.dtype.kind not in "fu" and a.dtype.name != "bfloat16" or (a.dtype.kind == "u" and a.dtype != np.uint16):
        raise TypeError(f"checkpoint tensor {name!r}: expected floating point weights, got {a.dtype}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"checkpoint tensor {name!r} has shape {tuple(a.shape)}, the config.json implies "
                         f"{tuple(shape)}")
    if dtype == "bfloat16":
        bits = to_bf16_bits(a) if not is_bf16(a) else (a if a.dtype == np.uint16 else a.view(np.uint16))
        bits = np.array(bits, dtype=np.uint16, order="C").reshape(a.shape)
        _ops._finite(bits, name)
        return bits
    if is_bf16(a):
        out = from_bf16_bits(np.ascontiguousarray(a).view(np.uint16)).reshape(a.shape)
    else:
        out = np.array(a, dtype=np.float32, order="C")  # owned (not a view of a checkpoint's map)
    if not np.isfinite(out).all():
        raise ValueError(f"checkpoint tensor {name!r} holds NaN or inf")
    return out


def vector(a, name: str, size: int) -> np.ndarray:
    """A checkpoint vector (norm weight, bias, sinks) as float32 of length `size`."""
    out = weight_array(a, "float32", name, (size,))
    return out


class Linear:
    """y = x W^T (+ b): W (N, K) float32 or raw bf16 bits, kept only as the kernel's packed panels (or, through
    quantized(), as INT8 / INT4 blocks)."""

    def __init__(self, weight: np.ndarray, bias: Optional[np.ndarray] = None):
        w = np.asarray(weight)
        self.out_features, self.in_features = w.shape
        self.dtype = "bfloat16" if w.dtype == np.uint16 else "float32"
        packed = _ops.pack_linear(np.zeros((1, 1), np.float32))  # the structure; panels below
        self._packed = packed._replace(H=int(w.shape[1]), I=int(w.shape[0]), w_in=_ops.pack(0, w[None]),
                                       dtype=_ops.DTYPES[self.dtype])
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)

    def quantized(self, format: str = "int8", group_size: int = 32) -> "Linear":
        """This projection with W in an INT format of moepy.moe.quant (blocks of 16 outputs x group_size inputs;
        the activations are quantised to INT8 per group in the kernel, as for INT experts); itself, unchanged, when
        group_size does not divide both its dimensions."""
        quant.check_format(format, group_size)
        N, K = self.out_features, self.in_features
        if N % group_size or K % group_size:
            return self
        w = self.weight
        w = from_bf16_bits(w).reshape(w.shape) if w.dtype == np.uint16 else w
        out = Linear.__new__(Linear)
        out.out_features, out.in_features, out.dtype, out.bias = N, K, format, self.bias
        out._packed = self._packed._replace(w_in=_ops.quantize(w[None], format, group_size, name="weight"),
                                            dtype=_ops.DTYPES[format], group=int(group_size))
        return out

    @staticmethod
    def concat(linears) -> Optional["Linear"]:
        """One Linear whose outputs are those of `linears` side by side (q, k and v as one projection: one kernel
        call, and every output bitwise what its own Linear gives, since packed panels of 16 outputs concatenate);
        None when they cannot be joined (an output count not a multiple of 16, different inputs, dtypes, groups,
        or biases on some only)."""
        first = linears[0]
        same = all(l.in_features == first.in_features and l.dtype == first.dtype and l.out_features % _ops.PANEL == 0
                   and l._packed.group == first._packed.group and (l.bias is None) == (first.bias is None)
                   for l in linears)
        if not same:
            return None
        out = Linear.__new__(Linear)
        out.in_features, out.dtype = first.in_features, first.dtype
        out.out_features = sum(l.out_features for l in linears)
        out.bias = None if first.bias is None else np.concatenate([l.bias for l in linears])
        out._packed = first._packed._replace(I=out.out_features,
                                             w_in=np.concatenate([l._packed.w_in for l in linears]))
        return out

    def rows(self, start: int, stop: int) -> "Linear":
        """Outputs [start, stop) of this Linear as a Linear sharing its packed weights (start and stop multiples
        of 16, or stop the last output)."""
        N = self.out_features
        if not (0 <= start < stop <= N and start % _ops.PANEL == 0 and (stop % _ops.PANEL == 0 or stop == N)):
            raise ValueError(f"rows [{start}, {stop}) of a Linear with {N} outputs must be panel-aligned "
                             f"(multiples of {_ops.PANEL})")
        per_panel = self._packed.w_in.size // -(-N // _ops.PANEL)
        out = Linear.__new__(Linear)
        out.in_features, out.dtype, out.out_features = self.in_features, self.dtype, stop - start
        out.bias = None if self.bias is None else self.bias[start:stop]
        p0, p1 = start // _ops.PANEL, -(-stop // _ops.PANEL)
        out._packed = self._packed._replace(I=stop - start, w_in=self._packed.w_in[p0 * per_panel: p1 * per_panel])
        return out

    @property
    def weight(self) -> np.ndarray:
        """W (N, K) unpacked from the panels: float32, or raw bf16 bits (uint16) for a bf16 Linear; the
        dequantized float32 weights of an INT Linear."""
        N, K = self.out_features, self.in_features
        if self.dtype in quant.FORMATS:
            return _ops.dequantize(self._packed.w_in, 1, N, K, self.dtype, self._packed.group)[0]
        npanel = -(-N // _ops.PANEL)
        a = self._packed.w_in.reshape(npanel, K, _ops.PANEL).transpose(0, 2, 1).reshape(npanel * _ops.PANEL, K)
        return np.ascontiguousarray(a[:N])

    @property
    def nbytes(self) -> int:
        """Bytes of the packed weight."""
        return int(self._packed.w_in.nbytes)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (..., K) float32 -> (..., N) float32."""
        lead = x.shape[:-1]
        y = _ops.linear(np.ascontiguousarray(x.reshape(-1, self.in_features), dtype=np.float32), self._packed)
        if self.bias is not None:
            y += self.bias
        return y.reshape(*lead, self.out_features)


def rms_norm(x: np.ndarray, weight: Optional[np.ndarray], eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) * weight over the last axis, in float32 (weight None: Llama 4's L2 norm), by the C
    kernel _ops.rms_norm (the mean's squares summed in float64 in a fixed order: the same bits for any batch)."""
    n = x.shape[-1]
    y = _ops.rms_norm(np.ascontiguousarray(x, dtype=np.float32).reshape(-1, n), weight, eps)
    return y.reshape(x.shape)


def layer_norm(x: np.ndarray, weight: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """(x - mean) / sqrt(biased var + eps) * weight (DBRX's LayerNorm, no bias), float32."""
    mu = np.mean(x, axis=-1, keepdims=True, dtype=np.float32)
    c = x - mu
    var = np.mean(np.square(c), axis=-1, keepdims=True, dtype=np.float32)
    return c * (np.float32(1.0) / np.sqrt(var + np.float32(eps))) * weight


class DenseMLP:
    """down(act(gate(x)) * up(x)) (+ biases): one expert through the grouped-FFN kernel, in dtype float32,
    bfloat16 or an INT format (moepy.moe.quant)."""

    def __init__(self, gate, up, down, *, activation: str = "silu", biases=(None, None, None),
                 dtype: str = "float32", group_size: int = 32):
        gb, ub, db = biases
        self.weights = ExpertWeights(up=up[None], down=down[None], gate=gate[None],
                                     gate_bias=None if gb is None else gb[None],
                                     up_bias=None if ub is None else ub[None],
                                     down_bias=None if db is None else db[None], activation=activation)
        if dtype not in DTYPES + tuple(quant.FORMATS):
            raise ValueError(f"dtype must be one of {DTYPES + tuple(quant.FORMATS)}, got {dtype!r}")
        self.dtype = dtype
        self.group_size = group_size
        self._packed = self.weights.packed(dtype, group_size)
        self.intermediate_size = int(up.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the packed weights."""
        return self._packed.nbytes

    def quantize(self, format: str, group_size: int = 32) -> "DenseMLP":
        """This MLP with its weights in an INT format."""
        w = self.weights.as_float32()
        return DenseMLP(w.gate[0], w.up[0], w.down[0], activation=w.activation,
                        biases=tuple(None if b is None else b[0] for b in (w.gate_bias, w.up_bias, w.down_bias)),
                        dtype=format, group_size=group_size)

    def __call__(self, x2: np.ndarray) -> np.ndarray:
        """x (T, H) float32 -> (T, H) float32."""
        T = x2.shape[0]
        return _ops.grouped_ffn(x2, np.array([0, T], np.int64), self._packed)

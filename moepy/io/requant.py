"""Requantizing stored weights (FP8 with block scales, MXFP4, bf16, f32) straight to moepy's INT formats, one
matrix at a time: the float32 temporaries are one expert's matrix, never the layer or the model."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np


def quantize_tensor(tensors, name: str, format: str = "int8", group_size: int = 32,
                    transform: Optional[Callable[[np.ndarray], np.ndarray]] = None):
    """The checkpoint tensor `name` as moepy INT blocks (moepy.moe.quant.QuantizedTensor).

    tensors: a Checkpoint (FP8-with-scales and MXFP4 pairs resolved by .get(name, "float32")) or any Mapping.
    A matrix (N, K) gives E = 1; a stack (E, N, K) is dequantized and quantized expert by expert, so the float32
    temporary is one (N, K) matrix. transform(w) maps each dequantized matrix (e.g. a transpose) first."""
    from ..moe.quant import check_format, quantize
    check_format(format, group_size)
    if hasattr(tensors, "is_mxfp4") and tensors.is_mxfp4(name):
        from .blockquant import dequantize_mxfp4
        blocks, scales = tensors[name + "_blocks"], tensors[name + "_scales"]
        parts = []
        for e in range(blocks.shape[0]):
            w = dequantize_mxfp4(blocks[e:e + 1], scales[e:e + 1], "float32")[0]
            w = transform(w) if transform else w
            parts.append(quantize(np.ascontiguousarray(w, dtype=np.float32), format, group_size))
        return _stack(parts)
    if hasattr(tensors, "is_fp8_scaled"):
        w = tensors.get(name, "float32") if tensors.is_fp8_scaled(name) else tensors[name]
    else:
        w = tensors[name]
    w = np.asarray(w)
    if w.ndim == 2:
        w = transform(w.astype(np.float32)) if transform else w.astype(np.float32)
        return quantize(np.ascontiguousarray(w), format, group_size)
    if w.ndim != 3:
        raise ValueError(f"{name}: expected a matrix or a stack of matrices, got shape {w.shape}")
    parts = []
    for e in range(w.shape[0]):
        m = w[e].astype(np.float32)
        m = transform(m) if transform else m
        parts.append(quantize(np.ascontiguousarray(m), format, group_size))
    return _stack(parts)


def _stack(parts):
    """QuantizedTensors of one matrix each -> one of E matrices (each expert's blocks are contiguous)."""
    from ..moe.quant import QuantizedTensor
    first = parts[0]
    for p in parts:
        if p.shape != first.shape:
            raise ValueError(f"experts of different shapes: {p.shape} and {first.shape}")
    return QuantizedTensor(np.concatenate([p.blocks for p in parts]), (len(parts),) + tuple(first.shape[1:]),
                           first.format, first.group_size)

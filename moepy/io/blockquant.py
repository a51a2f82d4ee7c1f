"""Weights that checkpoints store in pieces, dequantized as transformers 5.23 does, one tensor at a time.

- FP8 with block scales (DeepSeek-V3 / R1, Kimi K2; `quantization_config` {"quant_method": "fp8",
  "weight_block_size": [128, 128]}): `W.weight` (N, K) float8_e4m3fn and `W.weight_scale_inv`
  (ceil(N / bn), ceil(K / bk)) float32; w = float32(q) * scale_inv of its block, in float32, then cast to the
  target dtype (transformers' Fp8Dequantize; DeepSeek's weight_dequant).
- MXFP4 (gpt-oss): `P_blocks` (E, R, G, 16) uint8, two FP4 E2M1 codes per byte (low nibble first) and
  `P_scales` (E, R, G) uint8 E8M0 exponents (2 ** (s - 127)) for each group of 32 values; the result is
  (E, G * 32, R), the x @ W orientation of gpt-oss's fused experts (transformers' convert_moe_packed_tensors:
  ldexp(FP4 value, s - 127) in float32, exact unless it overflows, then cast).

Sizes come from the file and are checked against each other before anything is allocated; the work is done in
slices (a row block, an expert), so the float32 temporaries are one slice, not the tensor.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import ml_dtypes
import numpy as np

from .errors import CheckpointError

FP4_E2M1 = np.array([+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
                     -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)

OUT_DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16),
              "float16": np.dtype(np.float16)}


def out_dtype(dtype) -> np.dtype:
    """A target dtype name ("float32", "bfloat16", "float16") or NumPy dtype; ValueError otherwise."""
    key = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if key not in OUT_DTYPES:
        raise ValueError(f"dtype must be one of {tuple(OUT_DTYPES)}, got {dtype!r}")
    return OUT_DTYPES[key]


def fp8_block_size(config: Optional[dict]) -> Tuple[int, int]:
    """(bn, bk) from a config.json's quantization_config (default 128 x 128, DeepSeek-V3's)."""
    q = (config or {}).get("quantization_config") or {}
    bs = q.get("weight_block_size") or [128, 128]
    if (not isinstance(bs, (list, tuple)) or len(bs) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in bs)):
        raise ValueError(f"config.json: quantization_config.weight_block_size must be two positive ints, got {bs!r}")
    return int(bs[0]), int(bs[1])


def dequantize_fp8(weight: np.ndarray, scale_inv: np.ndarray, block: Sequence[int] = (128, 128),
                   dtype="float32", *, path=None, name: Optional[str] = None) -> np.ndarray:
    """FP8 weight (..., N, K) with scale_inv (..., ceil(N / bn), ceil(K / bk)) -> dtype (..., N, K)."""
    od = out_dtype(dtype)
    bn, bk = int(block[0]), int(block[1])
    if weight.ndim < 2:
        raise CheckpointError(path, name, f"an FP8 block-scaled weight must be at least 2-D, got {weight.shape}")
    *lead, N, K = weight.shape
    want = tuple(lead) + (-(-N // bn), -(-K // bk))
    if scale_inv.ndim == 0 or scale_inv.size == 1:  # per-tensor scale
        s = np.float32(np.asarray(scale_inv, dtype=np.float32).reshape(()))
        out = np.empty(weight.shape, od)
        flat_w, flat_o = weight.reshape(-1, N, K), out.reshape(-1, N, K)
        for i in range(flat_w.shape[0]):
            flat_o[i] = (flat_w[i].astype(np.float32) * s).astype(od)
        return out
    if tuple(scale_inv.shape) != want:
        raise CheckpointError(path, name, f"weight_scale_inv has shape {tuple(scale_inv.shape)}, but a weight of "
                                          f"shape {weight.shape} in {bn} x {bk} blocks needs {want}")
    out = np.empty(weight.shape, od)
    w3, s3, o3 = weight.reshape(-1, N, K), np.asarray(scale_inv).reshape(-1, want[-2], want[-1]), out.reshape(-1, N, K)
    for i in range(w3.shape[0]):
        for r in range(want[-2]):
            rows = slice(r * bn, min(N, (r + 1) * bn))
            srow = np.repeat(s3[i, r].astype(np.float32), bk)[:K]
            o3[i, rows] = (w3[i, rows].astype(np.float32) * srow).astype(od)
    return out


def dequantize_mxfp4(blocks: np.ndarray, scales: np.ndarray, dtype="float32", *, path=None,
                     name: Optional[str] = None) -> np.ndarray:
    """gpt-oss MXFP4 `_blocks` (E, R, G, B) uint8 + `_scales` (E, R, G) uint8 -> dtype (E, G * 2B, R)."""
    od = out_dtype(dtype)
    if blocks.dtype != np.uint8 or scales.dtype != np.uint8:
        raise CheckpointError(path, name, f"MXFP4 _blocks and _scales must be U8, got {blocks.dtype} and "
                                          f"{scales.dtype}")
    if blocks.ndim < 2 or tuple(blocks.shape[:-1]) != tuple(scales.shape):
        raise CheckpointError(path, name, f"MXFP4 _blocks {tuple(blocks.shape)} do not match _scales "
                                          f"{tuple(scales.shape)} (blocks = scales + one axis of bytes)")
    if blocks.ndim == 3:  # one expert
        return dequantize_mxfp4(blocks[None], scales[None], dtype, path=path, name=name)[0]
    if blocks.ndim != 4:
        raise CheckpointError(path, name, f"MXFP4 _blocks must be (E, R, G, B), got {tuple(blocks.shape)}")
    E, R, G, B = blocks.shape
    out = np.empty((E, G * B * 2, R), od)
    for e in range(E):  # one expert of float32 at a time
        b = np.asarray(blocks[e])
        v = np.empty((R, G, B * 2), np.float32)
        v[..., 0::2] = FP4_E2M1[b & 0x0F]
        v[..., 1::2] = FP4_E2M1[b >> 4]
        with np.errstate(over="ignore"):
            v = np.ldexp(v, (np.asarray(scales[e]).astype(np.int32) - 127)[..., None]).astype(np.float32, copy=False)
        out[e] = v.reshape(R, G * B * 2).T.astype(od)
    return out

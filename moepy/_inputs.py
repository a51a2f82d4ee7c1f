"""The one input rule of moepy's public entry points (route, topk, expert_choice, the metrics, MoELayer,
quantize, ...).

* Array-likes are accepted: NumPy arrays, anything NumPy converts (lists, scalars, objects with __array__), and
  DLPack tensors (PyTorch, JAX, ...: read without a copy where the producer allows; torch bfloat16 is widened).
* Float arguments are float32 inside. Floating inputs of other precisions (float16, float64, bfloat16, float8)
  are converted to float32; integer inputs are converted when every value is exactly representable (|v| <= 2**24);
  a conversion that would lose data raises ValueError instead (a finite value beyond float32's range, an
  integer float32 cannot hold). Booleans, strings and complex numbers raise TypeError.
* Integer arguments (expert ids) take any integer dtype whose values fit the target (else ValueError);
  floats raise TypeError.
* Byte order, strides and alignment are the library's business: non-native byte order, non-contiguous and
  misaligned arrays are copied to a native, contiguous, aligned array. Inputs are never modified.
Errors name the argument.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

_F32_EXACT_INT = 1 << 24


def _to_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__") and not isinstance(x, (list, tuple)):
        t = x
        if hasattr(t, "detach"):  # torch: leave autograd, come to the CPU, widen bf16 (NumPy has no DLPack bf16)
            t = t.detach()
            if hasattr(t, "resolve_neg"):  # a lazily negated / conjugated view: DLPack exports the raw memory
                t = t.resolve_conj().resolve_neg()
            if getattr(t, "device", None) is not None and str(t.device) != "cpu":
                t = t.cpu()
            if str(getattr(t, "dtype", "")) == "torch.bfloat16":
                t = t.float()
        try:
            return np.from_dlpack(t)
        except (TypeError, RuntimeError, BufferError, ValueError):
            pass  # fall back to __array__ / the sequence protocol
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array (NumPy array, array-like or DLPack tensor), got "
                        f"{type(x).__name__}: {exc}") from None


def _native(a: np.ndarray) -> np.ndarray:
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def _is_floating(dtype: np.dtype) -> bool:
    if dtype.kind == "f":
        return True
    return dtype.kind == "V" and dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
                                                 "float8_e5m2fnuz", "float8_e4m3b11fnuz", "float4_e2m1fn")


def as_float32(x, name: str, ndim: Optional[Tuple[int, ...]] = None) -> np.ndarray:
    """x as a C-contiguous, aligned, native float32 array (see the module docstring for the rule).
    ndim: the allowed numbers of dimensions (None: any)."""
    a = _native(_to_numpy(x, name))
    if a.dtype != np.float32:
        if _is_floating(a.dtype):
            wide = a
            with np.errstate(over="ignore"):
                a = a.astype(np.float32)
            if a.size and np.isinf(a).any():
                finite_before = np.isfinite(wide.astype(np.float64)) if wide.dtype.kind == "V" else np.isfinite(wide)
                if (np.isinf(a) & finite_before).any():
                    raise ValueError(f"{name} holds finite values beyond float32's range (max 3.4e38); "
                                     f"converting it to float32 would turn them into inf")
        elif a.dtype.kind in "iu":
            if a.size and int(np.abs(a.astype(np.int64) if a.dtype.kind == "i" else a).max()) > _F32_EXACT_INT:
                raise ValueError(f"{name} holds integers float32 cannot represent exactly (|v| > 2**24); pass floats")
            a = a.astype(np.float32)
        else:
            raise TypeError(f"{name} must hold floating-point numbers, got dtype {a.dtype}")
    _check_ndim(a, name, ndim)
    return _contiguous(a)


def as_index(x, name: str, dtype=np.int32, ndim: Optional[Tuple[int, ...]] = None) -> np.ndarray:
    """x as a C-contiguous, aligned, native integer array of `dtype` (expert ids, token ids)."""
    a = _native(_to_numpy(x, name))
    target = np.dtype(dtype)
    if a.dtype != target:
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
        info = np.iinfo(target)
        if a.size and (int(a.min()) < info.min or int(a.max()) > info.max):
            raise ValueError(f"{name} holds values outside {target.name}'s range [{info.min}, {info.max}]")
        a = a.astype(target)
    _check_ndim(a, name, ndim)
    return _contiguous(a)


def as_int(v, name: str, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
    """A Python int from an int-like scalar (int, NumPy integer); bools, floats and strings raise TypeError,
    values outside [lo, hi] ValueError, each naming the argument."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    v = int(v)
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {v}")
    return v


def _check_ndim(a: np.ndarray, name: str, ndim):
    if ndim is not None and a.ndim not in ndim:
        want = " or ".join(f"{n}-D" for n in ndim)
        raise ValueError(f"{name} must be {want}, got shape {a.shape}")


def _contiguous(a: np.ndarray) -> np.ndarray:
    if not a.flags.c_contiguous or not a.flags.aligned:
        a = np.array(a, order="C", copy=True)
    return a

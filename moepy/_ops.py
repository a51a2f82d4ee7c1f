"""The only module that imports moepy._C: input coercion, output allocation, shapes in docstrings.

Inputs must already have the documented dtype (a different dtype raises TypeError: no silent
casts); Python sequences are converted, and non-contiguous arrays are copied to contiguous ones.
Output arrays passed in (`out=`-style) must be C-contiguous, writeable and of the exact dtype.
"""
from __future__ import annotations

import numpy as np

from . import _C

build_info = _C.build_info
set_num_threads = _C.set_num_threads
get_num_threads = _C.get_num_threads
set_isa = _C.set_isa

PRIORITY_CODES = {"rank": 0, "token": 1}


def as_input(x, name: str, dtype, ndim: int) -> np.ndarray:
    """x as a C-contiguous array of `dtype` and rank `ndim`; TypeError / ValueError naming `name`."""
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be an array of {np.dtype(dtype).name}: {exc}") from None
    if x.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {x.shape}")
    return np.ascontiguousarray(x)


# route() for ndarray inputs, the C entry itself (no wrapper frame on the fast path):
# route_arrays(logits (T, E) f32, bias (E,) f32 | None, params) -> (weights, experts, scores);
# the C side checks every argument and copies non-contiguous inputs.
route_arrays = _C.route


def topk(x, k: int):
    """x (R, M) f32 (or (M,)) -> values (R, k) f32, indices (R, k) i64, descending, ties to the lower index."""
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    one_row = x.ndim == 1
    x = as_input(x[None, :] if one_row else x, "x", np.float32, 2)
    values, indices = _C.topk(x, int(k))
    return (values[0], indices[0]) if one_row else (values, indices)


def apply_capacity(weights: np.ndarray, experts, num_experts: int, capacity: int, priority: str = "rank"):
    """In place on weights (T, K) f32; experts (T, K) i32 -> dropped (T, K) bool, kept counts (E,) i64."""
    if priority not in PRIORITY_CODES:
        raise ValueError(f"priority must be one of {tuple(PRIORITY_CODES)}, got {priority!r}")
    experts = as_input(experts, "experts", np.int32, 2)
    return _C.apply_capacity(weights, experts, int(num_experts), int(capacity), PRIORITY_CODES[priority])


def expert_choice(scores, capacity: int):
    """scores (T, E) f32 -> gates (E, C) f32, tokens (E, C) i64: each expert's C best tokens."""
    scores = as_input(scores, "scores", np.float32, 2)
    return _C.expert_choice(scores, int(capacity))


def expert_load(experts, dropped, scores, num_experts: int):
    """experts (T, K) i32, dropped (T, K) bool | None, scores (T, E) f32 | None
    -> counts (E,) i64 (kept slots per expert), prob_sum (E,) f64 | None (column sums of scores)."""
    experts = as_input(experts, "experts", np.int32, 2)
    if dropped is not None:
        dropped = as_input(dropped, "dropped", np.bool_, 2)
    if scores is not None:
        scores = as_input(scores, "scores", np.float32, 2)
    return _C.expert_load(experts, dropped, scores, int(num_experts))


def pack(which: int, w, w2=None):
    """Pack expert weights into kernel panels. which 0: gate (E, I, H) [+ up]; 1: down (E, H, I).
    float32 or uint16 (raw bfloat16) -> 1-D packed array of the same dtype."""
    return _C.pack(which, np.ascontiguousarray(w), None if w2 is None else np.ascontiguousarray(w2))


def moe_forward(x, weights, experts, dropped, routed: tuple, shared, shared_gate, scale_input: bool, out=None,
                work=None):
    """x (T, H) f32, weights (T, K) f32, experts (T, K) i32, dropped (T, K) bool | None,
    routed / shared: packed expert tuples (moepy.moe.ExpertWeights.packed), shared_gate (T,) f32 | None
    -> out (T, H) f32 = the routed experts' weighted sum (+ the gated shared expert).
    work: a uint8 scratch buffer of at least forward_workspace(...) bytes, reused across calls."""
    return _C.moe_forward(x, weights, experts, dropped, routed, shared, shared_gate, bool(scale_input), out, work)


def forward_workspace(T: int, K: int, routed: tuple, shared, scale_input: bool) -> int:
    """Bytes of the scratch moe_forward needs for T tokens with K experts each."""
    return _C.forward_workspace(int(T), int(K), routed, shared, bool(scale_input))


def dispatch_plan(experts, dropped, num_experts: int):
    """experts (T, K) i32, dropped (T, K) bool | None -> counts (E,), offsets (E + 1,), order (N,) slot ids
    grouped by expert, position (T * K,) row of each slot or -1 (all int64)."""
    experts = as_input(experts, "experts", np.int32, 2)
    if dropped is not None:
        dropped = as_input(dropped, "dropped", np.bool_, 2)
    return _C.dispatch_plan(experts, dropped, int(num_experts))


def linear(x, packed_weight: tuple):
    """x (T, H) f32 @ W^T with W packed by moepy.moe.pack_linear -> (T, N) f32. Each row's result is
    independent of the other rows (unlike BLAS, whose kernel choice depends on T)."""
    return _C.linear(as_input(x, "x", np.float32, 2), packed_weight)


def packed_out_elems(E: int, H: int, I: int) -> int:
    """Elements of a packed output projection (csrc/pack.c): E * round16(H) * round16(I)."""
    r = lambda n: (n + 15) // 16 * 16  # noqa: E731
    return E * r(H) * r(I)


def quantize(w, fmt: int, group: int, interleave: int = 1, slot: int = 0, out=None):
    """w (E, N, K) f32 -> uint8 blocks (csrc/quant.h); interleave=2 puts this matrix's blocks in
    slot 0 or 1 of gate/up pairs (write both into one `out`)."""
    return _C.quantize(as_input(w, "weights", np.float32, 3), int(fmt), int(group), int(interleave), int(slot), out)


def dequantize(blocks, E: int, N: int, K: int, fmt: int, group: int, interleave: int = 1, slot: int = 0):
    """uint8 blocks -> (E, N, K) f32."""
    return _C.dequantize(as_input(blocks, "blocks", np.uint8, 1), int(E), int(N), int(K), int(fmt), int(group),
                         int(interleave), int(slot))


def quantize_rows(x, group: int):
    """The kernels' activation quantisation: x (R, K) f32 -> xq (R, K) i8, scales (R, K/G) f32, sums (R, K/G) i32."""
    return _C.quantize_rows(as_input(x, "x", np.float32, 2), int(group))

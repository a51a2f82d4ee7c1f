"""The only module that imports moepy._C: the whole C interface.

- Constants come from _C (the enums of csrc/kernels/moe.h, the panel width, the quant block geometry);
  nothing here or elsewhere copies them by hand.
- Packed experts are a named structure, `PackedExperts`, that the C side reads by field name.
- Router parameters are packed (once per RouterConfig, cached) only here: `route_params(config)`.
- Inputs must have the documented dtype (another dtype raises TypeError: no silent casts); Python
  sequences are converted; non-contiguous, misaligned or non-native byte order arrays are copied.
  Outputs passed in (`out=`-style) must be C-contiguous, aligned, native, writeable, of the exact dtype,
  and must not overlap an input or the packed weights.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from . import _C

build_info = _C.build_info
set_num_threads = _C.set_num_threads
get_num_threads = _C.get_num_threads
set_isa = _C.set_isa
_set_activation_precision = _C.set_activation_precision
get_activation_precision = _C.get_activation_precision

# ---------------------------------------------------------------- constants of moe.h (from _C)
ACTIVATIONS: dict = dict(_C.ACTIVATIONS)      # name -> moe_activation ("none": a plain linear map)
DTYPES: dict = dict(_C.DTYPES)                # "float32", "bfloat16", "int8", "int4", "int4_asym", "int4_nl" -> moe_dtype
QFORMATS: dict = dict(_C.QFORMATS)            # INT block formats -> moe_qformat
SCORINGS: dict = dict(_C.SCORINGS)
GROUP_SCORES: dict = dict(_C.GROUP_SCORES)
PRIORITIES: dict = dict(_C.PRIORITIES)
ISAS: dict = dict(_C.ISAS)
PANEL: int = _C.PANEL                         # output columns per packed panel
QBLOCK_BYTES: dict = dict(_C.QBLOCK_BYTES)    # (format, group_size) -> bytes of one 16 x G block
QBLOCK_HEADER_BYTES: dict = dict(_C.QBLOCK_HEADER_BYTES)  # format -> fp16 scale (+ offset) bytes
PRIORITY_CODES = PRIORITIES  # the old name


def round_up(n: int, m: int = PANEL) -> int:
    return (n + m - 1) // m * m


def _native(x: np.ndarray) -> np.ndarray:
    return x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))


def as_input(x, name: str, dtype, ndim: int) -> np.ndarray:
    """x as a C-contiguous, native-byte-order array of `dtype` and rank `ndim`; TypeError / ValueError
    naming `name`. A big-endian array of the right kind is converted, not misread."""
    if type(x) is np.ndarray and x.dtype == dtype and x.ndim == ndim and x.flags.c_contiguous:
        return x  # the common case (an equal dtype is also native): nothing to convert
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be an array of {np.dtype(dtype).name}: {exc}") from None
    x = _native(x)
    if x.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _int(v, name: str) -> int:
    """An int argument: ints and NumPy integers; bool, float and str raise TypeError."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    return int(v)


# ---------------------------------------------------------------- routing
def route_params(config) -> bytes:
    """The bytes of the C struct moe_route_params for a RouterConfig: packed by _C once, then kept on the
    (frozen) config itself, so a route call costs one attribute read, not a hash of the config."""
    try:
        return config._c_route_params
    except AttributeError:
        pass
    packed = _C.route_params(top_k=config.top_k, scoring=SCORINGS[config.scoring],
                             topk_before_score=int(config.topk_before_score), normalize=int(config.normalize),
                             norm_p=config.norm_p, norm_eps=config.norm_eps, scale=config.scale,
                             n_group=config.n_group, topk_group=config.topk_group,
                             group_score=GROUP_SCORES[config.group_score], group_mask_value=config.group_mask_value)
    object.__setattr__(config, "_c_route_params", packed)
    return packed


# route_arrays(logits (T, E) f32, bias (E,) f32 | None, params: route_params(config)) -> (weights, experts,
# scores): the C entry itself (no wrapper frame on the fast path); it checks every argument and copies
# non-contiguous, misaligned or byte-swapped inputs.
route_arrays = _C.route


def topk(x, k: int):
    """x (R, M) f32 (or (M,)) -> values (R, k) f32, indices (R, k) i64, descending, ties to the lower index."""
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    one_row = x.ndim == 1
    x = as_input(x[None, :] if one_row else x, "x", np.float32, 2)
    values, indices = _C.topk(x, k)
    return (values[0], indices[0]) if one_row else (values, indices)


def apply_capacity(weights: np.ndarray, experts, num_experts: int, capacity: int, priority: str = "rank"):
    """In place on weights (T, K) f32; experts (T, K) i32 -> dropped (T, K) bool, kept counts (E,) i64."""
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {tuple(PRIORITIES)}, got {priority!r}")
    experts = as_input(experts, "experts", np.int32, 2)
    return _C.apply_capacity(weights, experts, num_experts, capacity, PRIORITIES[priority])


def expert_choice(scores, capacity: int):
    """scores (T, E) f32 -> gates (E, C) f32, tokens (E, C) i64: each expert's C best tokens."""
    return _C.expert_choice(as_input(scores, "scores", np.float32, 2), capacity)


def expert_load(experts, dropped, scores, num_experts: int):
    """experts (T, K) i32, dropped (T, K) bool | None, scores (T, E) f32 | None
    -> counts (E,) i64 (kept slots per expert), prob_sum (E,) f64 | None (column sums of scores)."""
    experts = as_input(experts, "experts", np.int32, 2)
    if dropped is not None:
        dropped = as_input(dropped, "dropped", np.bool_, 2)
    if scores is not None:
        scores = as_input(scores, "scores", np.float32, 2)
    return _C.expert_load(experts, dropped, scores, num_experts)


# ---------------------------------------------------------------- packed experts
class PackedExperts(NamedTuple):
    """E experts of one shape in the kernels' layout (csrc/kernels/moe.h, moe_experts); read by name in C.

    w_in / w_out: float32 or uint16 (bf16) panels, or uint8 INT blocks (dtype an INT code, group G);
    b_in (E * P * Ip,) / b_out (E * Hp,) float32 padded biases or None; w_out None only for pack_linear."""

    E: int
    H: int
    I: int
    gated: int
    activation: int
    alpha: float
    limit: float
    w_in: np.ndarray
    w_out: Optional[np.ndarray]
    b_in: Optional[np.ndarray]
    b_out: Optional[np.ndarray]
    dtype: int
    group: int

    @property
    def nbytes(self) -> int:
        """Bytes of the packed weights the kernels read (biases excluded)."""
        return int(self.w_in.nbytes) + (0 if self.w_out is None else int(self.w_out.nbytes))

    @property
    def dtype_name(self) -> str:
        return next(k for k, v in DTYPES.items() if v == self.dtype)


def pack(which: int, w, w2=None, out=None):
    """Pack expert weights into kernel panels. which 0: gate (E, I, H) [+ up]; 1: down (E, H, I).
    float32 or uint16 (raw bfloat16) -> 1-D packed array of the same dtype. out: a C-contiguous writeable 1-D
    array of that dtype and exactly the packed size (e.g. one expert's slice of a layer's buffer), filled in place."""
    return _C.pack(which, w, w2, out)


def packed_elems(E: int, H: int, I: int, gated: bool) -> tuple:
    """(elements of a packed w_in, of a packed w_out) for float / bf16 panels, from the C side."""
    return tuple(_C.packed_elems(E, H, I, int(bool(gated))))


def packed_out_elems(E: int, H: int, I: int) -> int:
    """Elements of a packed output projection (E * round16(H) * round16(I)), from the C side."""
    return _C.packed_elems(E, H, I, 0)[1]


def _finite(a, name: str):
    a = np.asarray(a)
    if a.dtype == np.uint16:  # raw bf16 bits: exponent all ones is inf or NaN
        bad = (a & 0x7F80) == 0x7F80
    elif a.dtype.name == "bfloat16" or a.dtype.kind == "f":
        bad = ~np.isfinite(a.astype(np.float32))
    else:
        return
    if bad.any():
        raise ValueError(f"{name} holds NaN or inf at {tuple(int(i) for i in np.argwhere(bad)[0])}")


def _bias(b, name: str, shape) -> np.ndarray:
    b = _native(np.asarray(b))
    if b.dtype.kind not in "f" and b.dtype.name != "bfloat16":
        raise TypeError(f"{name} must be a float array, got {b.dtype}")
    b = b.astype(np.float32)
    if b.shape != tuple(shape):
        raise ValueError(f"{name} must be {tuple(shape)}, got {b.shape}")
    _finite(b, name)
    return b


def pad_biases(E: int, H: int, I: int, gated: bool, gate_bias, up_bias, down_bias, name: str = "experts"):
    """Expert biases (gate/up (E, I), down (E, H); checked: float, that shape, finite) padded to the panel
    widths the kernels read -> b_in (E * P * Ip,) or None, b_out (E * Hp,) or None."""
    Ip, Hp, P = round_up(I), round_up(H), 2 if gated else 1
    b_in = b_out = None
    if gate_bias is not None or up_bias is not None:
        b = np.zeros((E, P, Ip), np.float32)
        first_bias = gate_bias if gated else up_bias
        if first_bias is not None:
            b[:, 0, :I] = _bias(first_bias, f"{name}.{'gate' if gated else 'up'}_bias", (E, I))
        if gated and up_bias is not None:
            b[:, 1, :I] = _bias(up_bias, f"{name}.up_bias", (E, I))
        b_in = b.ravel()
    if down_bias is not None:
        b = np.zeros((E, Hp), np.float32)
        b[:, :H] = _bias(down_bias, f"{name}.down_bias", (E, H))
        b_out = b.ravel()
    return b_in, b_out


def pack_experts(up, down, gate=None, *, gate_bias=None, up_bias=None, down_bias=None, activation: str = "silu",
                 alpha: float = 1.702, limit: float = 7.0, dtype: str = "float32", group_size: int = 32,
                 name: str = "experts") -> PackedExperts:
    """Pack E experts (nn.Linear orientation: gate/up (E, I, H), down (E, H, I); float32, or uint16 raw
    bf16 bits for dtype "bfloat16") for the kernels. dtype: "float32", "bfloat16" or an INT format
    ("int8", "int4", "int4_asym", "int4_nl"; float32 input, groups of group_size). Biases (E, I) / (E, H) float."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    for nm, v in (("alpha", alpha), ("limit", limit)):
        if isinstance(v, (bool, str)) or not math.isfinite(float(v)):
            raise ValueError(f"{name}.{nm} must be a finite number, got {v!r}")
    E, I, H = np.shape(up)
    gated = gate is not None
    first = gate if gated else up
    if dtype in QFORMATS:
        if group_size not in (32, 64, 128):
            raise ValueError(f"group_size must be 32, 64 or 128, got {group_size!r}")
        for what, k in (("hidden size H", H), ("expert width I", I)):
            if k % group_size:
                raise ValueError(f"group_size {group_size} must divide the {what} = {k}")
        code = QFORMATS[dtype]
        f32 = lambda w: as_input(w, "weights", np.float32, 3)  # noqa: E731
        if gated:
            w_in = _C.quantize(f32(gate), code, group_size, 2, 0, name=f"{name}.gate")
            _C.quantize(f32(up), code, group_size, 2, 1, out=w_in, name=f"{name}.up")
        else:
            w_in = _C.quantize(f32(up), code, group_size, name=f"{name}.up")
        w_out = _C.quantize(f32(down), code, group_size, name=f"{name}.down")
        group = int(group_size)
    else:
        etype = np.uint16 if dtype == "bfloat16" else np.float32
        conv = lambda w, nm: as_input(w, f"{name}.{nm}", etype, 3)  # noqa: E731
        w_in = _C.pack(0, conv(first, "gate" if gated else "up"), conv(up, "up") if gated else None)
        w_out = _C.pack(1, conv(down, "down"))
        group = 0
    b_in, b_out = pad_biases(E, H, I, gated, gate_bias, up_bias, down_bias, name)
    return PackedExperts(int(E), int(H), int(I), int(gated), ACTIVATIONS[activation], float(alpha), float(limit),
                         w_in, w_out, b_in, b_out, DTYPES[dtype], group)


def pack_linear(weight) -> PackedExperts:
    """weight (N, H) float32 -> the packed weight `linear` takes (one ungated expert, activation none)."""
    w = as_input(weight, "weight", np.float32, 2)
    N, H = w.shape
    return PackedExperts(1, int(H), int(N), 0, ACTIVATIONS["none"], 0.0, 0.0, _C.pack(0, w[None]), None, None,
                         None, DTYPES["float32"], 0)


def linear(x, packed_weight: PackedExperts):
    """x (T, H) f32 @ W^T with W packed by pack_linear -> (T, N) f32. Each row's result is
    independent of the other rows (unlike BLAS, whose kernel choice depends on T)."""
    return _C.linear(as_input(x, "x", np.float32, 2), packed_weight)


# ---------------------------------------------------------------- attention
def attention(q, k, v, allowed, scale: float, sinks=None):
    """q (B, Hq, T, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv) float32, allowed (B, T, S) bool | uint8, sinks (Hq,)
    float32 | None -> out (B, Hq, T, Dv) float32: softmax(scale * q k^T over the allowed keys [, the sink]) @ v,
    query head h reading key/value head h // (Hq / Hkv); a row with no allowed key is zeros.
    q, k, v and allowed are read in place as strided views (unit stride in the last axis, non-negative strides:
    a KV cache slice, or v as the first columns of k's rows); other layouts raise ValueError. Each query row's
    result is bitwise independent of T, the thread count and the ISA."""
    return _C.attention(q, k, v, allowed, scale, sinks)


def rms_norm(x, weight, eps: float):
    """x (R, n) f32, weight (n,) f32 | None -> (R, n) f32: x / sqrt(mean(x^2) + eps) [* weight] per row, the mean's
    squares summed in float64 over 16 lanes (moepy.reference.norm_rope.rms_norm gives the same bits)."""
    w = None if weight is None else as_input(weight, "weight", np.float32, 1)
    return _C.rms_norm(as_input(x, "x", np.float32, 2), w, eps)


ROPE_LAYOUTS = ("half", "pairs", "pairs_to_half")


def rope(x, cos, sin, layout: str):
    """x (R, H, dim) f32 rotated by cos, sin (R, dim / 2) f32 in a RopeSpec layout -> (R, H, dim) f32
    (moepy.reference.norm_rope.rope gives the same bits)."""
    if layout not in ROPE_LAYOUTS:
        raise ValueError(f"layout must be one of {ROPE_LAYOUTS}, got {layout!r}")
    return _C.rope(as_input(x, "x", np.float32, 3), as_input(cos, "cos", np.float32, 2),
                   as_input(sin, "sin", np.float32, 2), ROPE_LAYOUTS.index(layout))


# ---------------------------------------------------------------- the MoE layer: fused, and piece by piece
def moe_forward(x, weights, experts, dropped, routed: PackedExperts, shared: Optional[PackedExperts], shared_gate,
                scale_input: bool, out=None, work=None):
    """x (T, H) f32, weights (T, K) f32, experts (T, K) i32 (unique per row), dropped (T, K) bool | None,
    routed / shared: PackedExperts, shared_gate (T,) f32 | None
    -> out (T, H) f32 = the routed experts' weighted sum (+ the gated shared expert).
    work: a uint8 scratch buffer of at least forward_workspace(...) bytes, reused across calls."""
    return _C.moe_forward(x, weights, experts, dropped, routed, shared, shared_gate, bool(scale_input), out, work)


def forward_workspace(T: int, K: int, routed: PackedExperts, shared: Optional[PackedExperts],
                      scale_input: bool) -> int:
    """Bytes of the scratch moe_forward needs for T tokens with K experts each."""
    return _C.forward_workspace(T, K, routed, shared, bool(scale_input))


def dispatch_plan(experts, dropped, num_experts: int):
    """experts (T, K) i32, dropped (T, K) bool | None -> counts (E,), offsets (E + 1,), order (N,) slot ids
    t * K + k grouped by expert (slot order within an expert), position (T * K,) row of each slot or -1."""
    experts = as_input(experts, "experts", np.int32, 2)
    if dropped is not None:
        dropped = as_input(dropped, "dropped", np.bool_, 2)
    return _C.dispatch_plan(experts, dropped, num_experts)


def gather(x, order, top_k: int, weights=None):
    """xs (N, H) f32: row r = x[order[r] // top_k] (times weights.flat[order[r]] when weights (T, K) is
    given: Llama 4's scaled expert input)."""
    return _C.gather(as_input(x, "x", np.float32, 2), as_input(order, "order", np.int64, 1), top_k,
                     None if weights is None else as_input(weights, "weights", np.float32, 2))


def grouped_ffn(xs, offsets, experts: PackedExperts):
    """ys (N, H) f32: rows offsets[e]:offsets[e+1] of xs (N, H) through expert e (the FFN of moe_forward)."""
    return _C.grouped_ffn(as_input(xs, "xs", np.float32, 2), as_input(offsets, "offsets", np.int64, 1), experts)


def combine(ys, position, experts, weights, scale_input: bool = False, shared_y=None, shared_gate=None):
    """out (T, H) f32: per token, its kept rows of ys (N, H) (position (T * K,), -1 = dropped) weighted by
    weights (T, K) (1 when scale_input), in ascending expert order, then + shared_gate * shared_y."""
    return _C.combine(as_input(ys, "ys", np.float32, 2), as_input(position, "position", np.int64, 1),
                      as_input(experts, "experts", np.int32, 2), as_input(weights, "weights", np.float32, 2),
                      bool(scale_input), None if shared_y is None else as_input(shared_y, "shared_y", np.float32, 2),
                      None if shared_gate is None else as_input(shared_gate, "shared_gate", np.float32, 1))


# ---------------------------------------------------------------- quantized blocks
def _qcode(fmt) -> int:
    if isinstance(fmt, str):
        if fmt not in QFORMATS:
            raise ValueError(f"format must be one of {tuple(QFORMATS)}, got {fmt!r}")
        return QFORMATS[fmt]
    return fmt


def quantize(w, fmt, group: int, interleave: int = 1, slot: int = 0, out=None, name: str = "weights"):
    """w (E, N, K) f32 -> uint8 blocks (csrc/kernels/quant.h); interleave=2 puts this matrix's blocks in
    slot 0 or 1 of gate/up pairs (write both into one `out`). ValueError naming `name` for NaN/inf or
    values whose fp16 block scale would overflow."""
    return _C.quantize(as_input(w, name, np.float32, 3), _qcode(fmt), group, interleave, slot, out, name)


def dequantize(blocks, E: int, N: int, K: int, fmt, group: int, interleave: int = 1, slot: int = 0):
    """uint8 blocks -> (E, N, K) f32."""
    return _C.dequantize(as_input(blocks, "blocks", np.uint8, 1), E, N, K, _qcode(fmt), group, interleave, slot)


def quantize_rows(x, group: int):
    """The kernels' activation quantisation: x (R, K) f32 -> xq (R, K) i8, scales (R, K/G) f32, sums (R, K/G) i32."""
    return _C.quantize_rows(as_input(x, "x", np.float32, 2), group)

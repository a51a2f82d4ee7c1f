"""Rotary position embeddings (RoPE) in NumPy, matching HF transformers 5.23's numerics.

* ``RopeSpec`` describes one rotary embedding: rotary dim, theta, scaling type and its parameters, and the
  layout of the rotated dims (``"half"``, ``"pairs"`` or ``"pairs_to_half"``).
* ``rope_spec_from_hf`` reads one from a config.json dict (``rope_parameters`` or the legacy ``rope_scaling``).
* ``Rope`` computes the inverse frequencies once, gives the per-position half-width cos/sin (with yarn's
  attention factor folded in) and rotates q/k.

Inverse frequencies follow torch's float32 arithmetic step by step (powers are taken in float64 and rounded,
which is what torch's float32 pow gives up to the odd last bit); angles are float32 products ``pos * inv_freq``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Tuple

import numpy as np

from .. import _ops
from .._inputs import as_float32, as_index

__all__ = ["LAYOUTS", "ROPE_TYPES", "Rope", "RopeSpec", "rope_spec_from_hf", "yarn_get_mscale"]

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")
LAYOUTS = _ops.ROPE_LAYOUTS  # ("half", "pairs", "pairs_to_half"): the kernel's layout codes 0, 1, 2
_F32 = np.float32
_NEEDS_FACTOR = ("linear", "dynamic", "yarn", "llama3")
_NEEDS_ORIGINAL = ("yarn", "llama3")


def yarn_get_mscale(scale, mscale=1.0) -> float:
    """YaRN's magnitude correction ``0.1 * mscale * ln(scale) + 1`` for ``scale > 1``, else 1.0 (DeepSeek also
    multiplies its softmax scale by its square when ``mscale_all_dim`` is set)."""
    scale = float(scale)
    if scale <= 1.0:
        return 1.0
    return 0.1 * float(mscale) * math.log(scale) + 1.0


def _number(v, name: str, positive: bool = True) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {type(v).__name__} {v!r}")
    v = float(v)
    if not math.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}, got {v!r}")
    return v


def _positive_int(v, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or int(v) <= 0:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class RopeSpec:
    """One rotary embedding.

    dim: rotary dims per head (head_dim, or qk_rope_head_dim for MLA), even. theta: the base.
    rope_type: "default", "linear", "dynamic", "yarn" or "llama3". params: the other rope_parameters entries
    (factor, original_max_position_embeddings, beta_fast, beta_slow, mscale, mscale_all_dim, truncate,
    attention_factor, low_freq_factor, high_freq_factor); a missing original_max_position_embeddings means
    max_position_embeddings. layout: "half" (rotate-half: Mixtral, Qwen, OLMoE, DBRX, GPT-OSS, DeepSeek-V3 with
    rope_interleave=False), "pairs" (adjacent pairs as complex numbers, output interleaved: DeepSeek-V2,
    Llama 4) or "pairs_to_half" (adjacent pairs rotated and written out as [reals | imags]: DeepSeek-V3 with
    rope_interleave=True). Invalid values raise ValueError naming the field."""

    dim: int
    theta: float
    rope_type: str = "default"
    params: Mapping = field(default_factory=dict, hash=False)
    layout: str = "half"
    max_position_embeddings: int = 2048

    def __post_init__(self):
        dim = _positive_int(self.dim, "dim")
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        object.__setattr__(self, "dim", dim)
        object.__setattr__(self, "theta", _number(self.theta, "theta"))
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"rope_type {self.rope_type!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        object.__setattr__(self, "max_position_embeddings",
                           _positive_int(self.max_position_embeddings, "max_position_embeddings"))
        if not isinstance(self.params, Mapping):
            raise ValueError(f"params must be a mapping, got {type(self.params).__name__}")
        p = dict(self.params)
        rt = self.rope_type
        if rt in _NEEDS_FACTOR:
            if "factor" not in p:
                raise ValueError(f"rope_type {rt!r} needs params['factor']")
            if not (rt == "yarn" and p["factor"] is None):  # yarn: None means max_pos / original
                _number(p["factor"], "factor")
        if rt in _NEEDS_ORIGINAL and p.get("original_max_position_embeddings") is not None:
            _positive_int(p["original_max_position_embeddings"], "original_max_position_embeddings")
        if rt == "yarn":
            if self.theta == 1.0:
                raise ValueError("theta must not be 1 with yarn (its correction range divides by ln(theta))")
            for k in ("beta_fast", "beta_slow", "mscale", "mscale_all_dim"):
                if p.get(k) is not None:
                    _number(p[k], k, positive=False)
            if p.get("attention_factor") is not None:
                _number(p["attention_factor"], "attention_factor")
        if rt == "llama3":
            for k in ("low_freq_factor", "high_freq_factor"):
                if k not in p:
                    raise ValueError(f"rope_type 'llama3' needs params[{k!r}]")
                _number(p[k], k)
        object.__setattr__(self, "params", p)

    @property
    def original_max_position_embeddings(self) -> int:
        """The pre-training context length yarn and llama3 scale from (max_position_embeddings if unset)."""
        v = self.params.get("original_max_position_embeddings")
        return self.max_position_embeddings if v is None else int(v)


def rope_spec_from_hf(d: dict, dim: int, default_theta: float, layout: str) -> RopeSpec:
    """A RopeSpec from a HF config.json dict, resolved like transformers 5.23: a truthy legacy ``rope_scaling``
    replaces ``rope_parameters``; ``type`` is an alias of ``rope_type``; theta comes from rope_parameters, else
    the top-level ``rope_theta``, else ``default_theta`` (the model class's default); for llama3/yarn a top-level
    ``original_max_position_embeddings`` wins over the rope dict's (as in the model's rotary embedding, whose
    init re-reads it), else the dict's, else ``max_position_embeddings``;
    max_position_embeddings is read from ``d`` (``max_seq_len`` for DBRX, 2048 if neither is there).
    Unsupported rope types (longrope, proportional, ...) and partial rotary raise ValueError "not supported";
    bad values raise ValueError naming the field."""
    if not isinstance(d, Mapping):
        raise ValueError(f"d must be a config dict, got {type(d).__name__}")
    rp = d.get("rope_scaling") or d.get("rope_parameters") or {}
    if not isinstance(rp, Mapping):
        raise ValueError(f"rope_parameters must be a dict, got {type(rp).__name__}")
    rp = dict(rp)
    rope_type = rp.pop("rope_type", None)
    alias = rp.pop("type", None)
    rope_type = rope_type if rope_type is not None else (alias if alias is not None else "default")
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"rope_type {rope_type!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
    theta = rp.pop("rope_theta", d.get("rope_theta", default_theta))
    if theta is None:
        raise ValueError("rope_theta is None")
    prf = rp.pop("partial_rotary_factor", d.get("partial_rotary_factor"))
    if prf is not None and prf != 1.0:
        raise ValueError(f"partial_rotary_factor {prf!r} is not supported")
    max_pos = d.get("max_position_embeddings", d.get("max_seq_len", 2048))
    if rope_type in _NEEDS_ORIGINAL:
        if d.get("original_max_position_embeddings") is not None:
            # transformers' init functions standardize the rope dict again once the config's extra keys are
            # attributes, so a top-level value overrides the dict's in the model's rotary embedding
            rp["original_max_position_embeddings"] = d["original_max_position_embeddings"]
        elif rp.get("original_max_position_embeddings") is None:
            rp["original_max_position_embeddings"] = max_pos
    return RopeSpec(dim=dim, theta=theta, rope_type=rope_type, params=rp, layout=layout,
                    max_position_embeddings=max_pos)


def _exponents(dim: int) -> np.ndarray:
    # float32(2j) / float32(dim), as torch's arange(0, dim, 2).float() / dim
    return np.arange(0, dim, 2).astype(_F32) / _F32(dim)


def _pow32(base, e: np.ndarray) -> np.ndarray:
    # float32 base ** float32 exponents, taken in float64 and rounded once
    return np.power(np.float64(_F32(base)), e.astype(np.float64)).astype(_F32)


def _default_inv_freq(theta, dim: int) -> np.ndarray:
    return _F32(1) / _pow32(theta, _exponents(dim))


def _yarn(spec: RopeSpec) -> Tuple[np.ndarray, float]:
    p, dim, theta = spec.params, spec.dim, spec.theta
    orig = spec.original_max_position_embeddings
    factor = p.get("factor")
    if factor is None:
        factor = spec.max_position_embeddings / orig
    factor = float(factor)
    att = p.get("attention_factor")
    if att is None:
        ms, msa = p.get("mscale"), p.get("mscale_all_dim")
        att = yarn_get_mscale(factor, ms) / yarn_get_mscale(factor, msa) if (ms and msa) else yarn_get_mscale(factor)
    beta_fast = float(p.get("beta_fast") or 32)
    beta_slow = float(p.get("beta_slow") or 1)

    def corr(rot):  # the dim index where `rot` full turns fit into `orig` positions (double precision)
        return dim * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(theta))

    low, high = corr(beta_fast), corr(beta_slow)
    if p.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    pf = _pow32(theta, _exponents(dim))
    extra = _F32(1) / pf
    inter = _F32(1) / (_F32(factor) * pf)
    ramp = np.clip((np.arange(dim // 2, dtype=_F32) - _F32(low)) / _F32(high - low), _F32(0), _F32(1))
    ext = _F32(1) - ramp
    return inter * (_F32(1) - ext) + extra * ext, float(att)


def _llama3(spec: RopeSpec) -> np.ndarray:
    p = spec.params
    inv = _default_inv_freq(spec.theta, spec.dim)
    factor, lo, hi = float(p["factor"]), float(p["low_freq_factor"]), float(p["high_freq_factor"])
    orig = spec.original_max_position_embeddings
    lo_wl, hi_wl = _F32(orig / lo), _F32(orig / hi)
    wl = (_F32(1) / inv) * _F32(2 * math.pi)  # torch: scalar / tensor is reciprocal(tensor) * scalar
    il = np.where(wl > lo_wl, inv / _F32(factor), inv)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # lo == hi: discarded below
        sm = ((_F32(1) / wl) * _F32(orig) - _F32(lo)) / _F32(hi - lo)
        smoothed = (_F32(1) - sm) * il / _F32(factor) + sm * il
    medium = ~(wl < hi_wl) & ~(wl > lo_wl)
    return np.where(medium, smoothed, il).astype(_F32)


def _dynamic_inv_freq(spec: RopeSpec, seq_len: int) -> np.ndarray:
    # the recompute at run time, where transformers' seq_len is an int64 tensor, so the base is float32 math
    dim, m = spec.dim, spec.max_position_embeddings
    factor = float(spec.params["factor"])
    s = _F32(factor) * _F32(max(seq_len, m)) / _F32(m) - _F32(factor - 1)
    s = _F32(np.float64(s) ** (dim / (dim - 2)))  # torch keeps a Python exponent in double here
    base = _F32(spec.theta) * s
    return _F32(1) / _pow32(base, _exponents(dim))


def _dynamic_initial(spec: RopeSpec) -> np.ndarray:
    # at init transformers uses seq_len = max_position_embeddings as Python numbers (double)
    dim, m, factor = spec.dim, spec.max_position_embeddings, float(spec.params["factor"])
    base = spec.theta * ((factor * m / m) - (factor - 1)) ** (dim / (dim - 2))
    return _default_inv_freq(base, dim)


class Rope:
    """Rotary embedding for one RopeSpec. Attributes: spec; inv_freq (float32, dim // 2); attention_scaling
    (yarn's attention factor, 1.0 for the other types; cos_sin folds it in). Methods: cos_sin, apply.

    For rope_type "dynamic" the object is stateful, like transformers' dynamic_rope_update: it caches a
    length (starting at max_position_embeddings); a cos_sin call with seq_len = max(positions) + 1 beyond it
    recomputes inv_freq for seq_len and caches seq_len; a later call with seq_len below the original
    max_position_embeddings, after the cache had grown, restores the original inv_freq. So results depend on
    the calls made before (share one Rope per model, as transformers shares one rotary module, and do not
    share it across threads)."""

    def __init__(self, spec: RopeSpec):
        """Compute the inverse frequencies and the attention scaling of `spec`."""
        if not isinstance(spec, RopeSpec):
            raise TypeError(f"spec must be a RopeSpec, got {type(spec).__name__}")
        self.spec = spec
        self.attention_scaling = 1.0
        rt = spec.rope_type
        if rt == "default":
            inv = _default_inv_freq(spec.theta, spec.dim)
        elif rt == "linear":
            inv = _default_inv_freq(spec.theta, spec.dim) / _F32(float(spec.params["factor"]))
        elif rt == "dynamic":
            inv = _dynamic_initial(spec)
        elif rt == "yarn":
            inv, self.attention_scaling = _yarn(spec)
        else:
            inv = _llama3(spec)
        self.inv_freq = inv.astype(_F32)
        self._original_inv_freq = self.inv_freq
        self._max_seq_len_cached = spec.max_position_embeddings

    def _dynamic_update(self, positions: np.ndarray) -> None:
        seq_len = int(positions.max()) + 1
        cached, original = self._max_seq_len_cached, self.spec.max_position_embeddings
        if seq_len > cached:
            self.inv_freq = _dynamic_inv_freq(self.spec, seq_len)
            self._max_seq_len_cached = seq_len
        if seq_len < original and cached > original:
            self.inv_freq = self._original_inv_freq
            self._max_seq_len_cached = original

    def cos_sin(self, positions) -> Tuple[np.ndarray, np.ndarray]:
        """Half-width cos and sin for integer `positions` of any shape (...,): two float32 arrays of shape
        (..., dim // 2), already multiplied by attention_scaling. May update a "dynamic" Rope's state (see the
        class docstring)."""
        pos = as_index(positions, "positions", dtype=np.int64)
        if self.spec.rope_type == "dynamic" and pos.size:
            self._dynamic_update(pos)
        ang = (pos.astype(_F32)[..., None] * self.inv_freq).astype(np.float64)
        scale = _F32(self.attention_scaling)
        return np.cos(ang).astype(_F32) * scale, np.sin(ang).astype(_F32) * scale

    def apply(self, x, cos, sin) -> np.ndarray:
        """Rotate `x` (..., T, n_heads, dim) by `cos`/`sin` (..., T, dim // 2) from cos_sin, broadcast over the
        heads, in the spec's layout. Returns a new float32 array of x's shape."""
        x = as_float32(x, "x")
        cos, sin = as_float32(cos, "cos"), as_float32(sin, "sin")
        dim = self.spec.dim
        if x.ndim < 3 or x.shape[-1] != dim:
            raise ValueError(f"x must have shape (..., T, n_heads, {dim}), got {x.shape}")
        if cos.shape != sin.shape or cos.ndim < 2 or cos.shape[-1] != dim // 2:
            raise ValueError(f"cos and sin must have one shape (..., T, {dim // 2}), got {cos.shape}, {sin.shape}")
        c = cos[..., None, :]  # the heads axis, as rotate broadcasts it
        half = x.shape[:-1] + (dim // 2,)
        try:
            fits = np.broadcast_shapes(c.shape, half) == half
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"cos/sin of shape {cos.shape} do not broadcast to x of shape {x.shape} "
                             f"(want (..., T, {dim // 2}) against x's (..., T, n_heads, {dim}))")
        return self.rotate(x, cos, sin)

    def rotate(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """apply() without its checks, for callers that built x, cos and sin themselves (the attention layers):
        x float32 (..., T, n_heads, dim), cos / sin float32 broadcasting to (..., T, dim // 2) -> a new float32
        array, by the C kernel _ops.rope (re = a c - b s, im = b c + a s, each product and sum rounded)."""
        lead, (H, dim) = x.shape[:-2], x.shape[-2:]
        half = lead + (dim // 2,)
        c, s = (np.broadcast_to(a, half) if a.shape != half else a for a in (cos, sin))
        out = _ops.rope(np.ascontiguousarray(x).reshape(-1, H, dim), np.ascontiguousarray(c).reshape(-1, dim // 2),
                        np.ascontiguousarray(s).reshape(-1, dim // 2), self.spec.layout)
        return out.reshape(x.shape)

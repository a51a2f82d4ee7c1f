"""Checkpoint tensors -> moepy's canonical expert weights: the lookups every family's MoE block shares.

Tensors come as a mapping full checkpoint name -> array (numpy float32/float16, ml_dtypes.bfloat16, raw bf16
bits as uint16, or torch tensors). Canonical form: gate/up (E, I, H), down (E, H, I) (nn.Linear orientation).
Router weights and biases are always float32; expert weights float32 (bf16 widened exactly), or bf16 kept
as stored when dtype == "bfloat16" (float32 inputs are then rounded to nearest even by the packing).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from ..moe.weights import ExpertSource, ExpertWeights, from_bf16_bits, to_bf16_bits


def first_of(cfg: dict, *names, default: Any = None):
    for n in names:
        if n in cfg and cfg[n] is not None:
            return cfg[n]
    return default


def is_bf16(a) -> bool:
    return a.dtype == np.uint16 or a.dtype.name == "bfloat16"


def to_numpy(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "detach"):  # torch tensor
        import torch
        t = a.detach().cpu()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(np.uint16)
        return t.float().numpy() if t.dtype not in (torch.float32, torch.float64) else t.numpy()
    return np.asarray(a)


def as_f32(a) -> np.ndarray:
    """Router weights / biases: always float32 (bf16 widened exactly)."""
    a = to_numpy(a)
    if is_bf16(a):
        return from_bf16_bits(to_bf16_bits(a)).reshape(a.shape)
    return np.ascontiguousarray(a, dtype=np.float32)


def expert_array(a, dtype: str) -> np.ndarray:
    """Expert weights: float32, or bf16 kept as they are when dtype == "bfloat16"."""
    a = to_numpy(a)
    if is_bf16(a):
        if dtype == "bfloat16":
            return a
        return from_bf16_bits(to_bf16_bits(a)).reshape(a.shape)
    if a.dtype.name.startswith("float8"):  # its scales live in another tensor: never use it without them
        raise TypeError(f"expert weights stored as FP8 ({a.dtype.name}) need their weight_scale_inv: pass "
                        f"moepy.io.open_checkpoint(path).dequantized() as the tensors")
    if a.dtype.kind != "f":  # integer codes (INT8 / INT4 checkpoints) mean nothing without their scales
        raise TypeError(f"expert weights must be floating point (or raw bf16 bits as uint16), got {a.dtype}: a "
                        f"quantized checkpoint's codes need their scales (moepy reads FP8, MXFP4 and GGUF Q8_0/Q4_0/Q4_1/IQ4_NL)")
    return np.asarray(a, dtype=np.float32)


def contig(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


class Tensors:
    """Lookups in the checkpoint mapping with KeyErrors that name the tensor looked for."""

    def __init__(self, tensors: Mapping, prefix: str):
        self.t = tensors
        self.prefix = prefix

    def has(self, rel: str) -> bool:
        return (self.prefix + rel) in self.t

    def get(self, rel: str):
        name = self.prefix + rel
        try:
            return self.t[name]
        except KeyError:
            raise KeyError(f"checkpoint tensor {name!r} not found") from None

    def opt(self, rel: str):
        return self.t[self.prefix + rel] if self.has(rel) else None


def find_prefix(tensors: Mapping, suffixes: list, rel: str) -> str:
    """The block prefix: the key ending in `suffix + rel` for the first suffix that has one (the key is
    either exactly that or has it after a '.'). Raises KeyError naming the names looked for."""
    keys = list(tensors.keys())
    for suffix in suffixes:
        target = suffix + rel
        hits = [k for k in keys if k == target or k.endswith("." + target)]
        if hits:
            hits.sort(key=len)  # the shortest prefix (e.g. not an "mtp." copy)
            return hits[0][: len(hits[0]) - len(rel)]
    looked = " or ".join(repr("<prefix>" + s + rel) for s in suffixes)
    raise KeyError(f"checkpoint tensor {looked} not found (the router of this layer)")


def source_array(a) -> np.ndarray:
    """A checkpoint tensor as numpy, without converting it (per-expert views are taken of it); TypeError for FP8
    weights given without their scales."""
    a = to_numpy(a)
    if a.dtype.name.startswith("float8"):
        expert_array(a, "float32")  # raises the TypeError that names the fix
    return a


def last_expert(f):
    """f(e) remembering its last expert only (gate and up sliced from one fused read)."""
    last = [None, None]

    def g(e):
        if last[0] != e:
            last[1] = None  # drop the previous expert before reading the next
            last[:] = [e, f(e)]
        return last[1]
    return g


def _check_experts(T: Tensors, E: int, names: tuple):
    for e in range(E):
        for n in names:
            if not T.has(f"experts.{e}.{n}.weight"):
                T.get(f"experts.{e}.{n}.weight")  # the KeyError naming it


def stack_experts(T: Tensors, E: int, names: tuple, dtype: str, activation: str = "silu") -> ExpertSource:
    """Per-expert Hub names experts.{e}.{gate,up,down}.weight -> the E experts, read one at a time from the
    checkpoint's tensors when packed (never stacked)."""
    g, u, d = names
    _check_experts(T, E, names)
    one = lambda n: (lambda e: expert_array(T.get(f"experts.{e}.{n}.weight"), dtype))  # noqa: E731
    source_array(T.get(f"experts.0.{g}.weight"))
    return ExpertSource(E, one(u), one(d), one(g), activation=activation, bf16=dtype == "bfloat16")


def glu_experts(T: Tensors, E: int, dtype: str, per_expert_names: tuple, activation: str = "silu",
                    fused_layout: str = "linear") -> ExpertSource:
    """Routed experts from the fused v5 names (experts.gate_up_proj + experts.down_proj) or the per-expert names,
    as an ExpertSource: each expert is read from the checkpoint's tensors (a view of the map, or a per-expert
    slice of the fused tensor) as it is packed, never stacked into a second copy of the layer.
    fused_layout "linear": gate_up (E, 2I, H) with gate = first I rows, down (E, H, I);
    "matmul" (Llama 4): gate_up (E, H, 2I) with gate = first I columns, down (E, I, H) (transposed one expert
    at a time)."""
    bf16 = dtype == "bfloat16"
    if T.has("experts.gate_up_proj") or T.has("experts.down_proj"):
        gu = source_array(T.get("experts.gate_up_proj"))
        down = source_array(T.get("experts.down_proj"))
        if gu.ndim != 3 or gu.shape[0] != E:
            raise ValueError(f"{T.prefix}experts.gate_up_proj: expected {E} experts, got shape {gu.shape}")
        if down.ndim != 3 or down.shape[0] != E:
            raise ValueError(f"down must be (E, H, I) with E = {E}, got {down.shape}")
        a = lambda w: expert_array(w, dtype)  # noqa: E731
        if fused_layout == "linear":
            I = gu.shape[1] // 2
            return ExpertSource(E, lambda e: a(gu[e, I:]), lambda e: a(down[e]), lambda e: a(gu[e, :I]),
                                activation=activation, bf16=bf16)
        I = gu.shape[2] // 2
        return ExpertSource(E, lambda e: contig(a(gu[e, :, I:]).T), lambda e: contig(a(down[e]).T),
                            lambda e: contig(a(gu[e, :, :I]).T), activation=activation, bf16=bf16)
    names = per_expert_names
    if not T.has(f"experts.0.{names[0]}.weight"):  # the other spelling, if the checkpoint uses it
        alt = ("gate_proj", "up_proj", "down_proj") if names[0] == "w1" else ("w1", "w3", "w2")
        if T.has(f"experts.0.{alt[0]}.weight"):
            names = alt
        elif not any(T.has(f"experts.0.{n}.weight") for n in names + alt):
            raise KeyError(f"checkpoint tensor {T.prefix}experts.0.{names[0]}.weight (Hub names) or "
                           f"{T.prefix}experts.gate_up_proj (fused names) not found")
    return stack_experts(T, E, names, dtype, activation)


def shared_mlp(T: Tensors, rel: str, dtype: str, activation: str = "silu") -> ExpertWeights:
    w = [expert_array(T.get(f"{rel}.{n}.weight"), dtype)[None] for n in ("gate_proj", "up_proj", "down_proj")]
    return ExpertWeights(up=w[1], down=w[2], gate=w[0], activation=activation)


def activation_name(name: Optional[str]) -> str:
    """A config.json activation name in moepy's spelling (swish -> silu, ...); ValueError if not a string."""
    if name is not None and not isinstance(name, str):
        raise ValueError(f"the activation (hidden_act) must be a string, got {type(name).__name__} {name!r}")
    name = (name or "silu").lower()
    return {"swish": "silu", "gelu_python": "gelu", "gelu_fast": "gelu_tanh"}.get(name, name)


def qwen_style_block(c: Mapping, tensors: Mapping, i: int, dtype: str, family: str, router, shared: bool = False):
    """The MoE block of Qwen2-MoE, Qwen3-MoE and OLMoE (`layers.{i}.mlp.`: gate, experts, and with `shared`
    Qwen2-MoE's sigmoid-gated shared_expert)."""
    from ..moe.layer import MoELayer
    E = int(first_of(c, "num_experts", "num_local_experts"))
    T = Tensors(tensors, find_prefix(tensors, [f"layers.{i}.mlp."], "gate.weight"))
    act = activation_name(c.get("hidden_act"))
    experts = glu_experts(T, E, dtype, ("gate_proj", "up_proj", "down_proj"), act)
    shared_mlp_w = gate_w = None
    if shared:
        shared_mlp_w = shared_mlp(T, "shared_expert", dtype, act)
        gate_w = as_f32(T.get("shared_expert_gate.weight"))
    return MoELayer(router, as_f32(T.get("gate.weight")), experts, shared=shared_mlp_w, shared_gate_weight=gate_w,
                    dtype=dtype, family=family)


def deepseek_style_block(c: Mapping, tensors: Mapping, i: int, dtype: str, family: str, router,
                         selection_bias: bool):
    """The MoE block of DeepSeek-V2/V3 and Kimi K2 (`layers.{i}.mlp.`: gate [+ e_score_correction_bias],
    experts, shared_experts when n_shared_experts > 0)."""
    from ..moe.layer import MoELayer
    E = int(first_of(c, "n_routed_experts", "num_experts", "num_local_experts"))
    T = Tensors(tensors, find_prefix(tensors, [f"layers.{i}.mlp."], "gate.weight"))
    act = activation_name(c.get("hidden_act"))
    bias = as_f32(T.get("gate.e_score_correction_bias")) if selection_bias else None
    experts = glu_experts(T, E, dtype, ("gate_proj", "up_proj", "down_proj"), act)
    shared = shared_mlp(T, "shared_experts", dtype, act) if int(first_of(c, "n_shared_experts", default=0)) > 0 \
        else None
    return MoELayer(router, as_f32(T.get("gate.weight")), experts, shared=shared, selection_bias=bias, dtype=dtype,
                    family=family)

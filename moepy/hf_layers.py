"""Hugging Face checkpoint tensors -> MoELayer (canonical gate/up (E, I, H), down (E, H, I)).

`layer_from_hf(MoELayer, hf_config, tensors, layer_index, dtype)` (what `MoELayer.from_hf` calls) maps one
MoE block of a checkpoint to a MoELayer that computes what transformers 5.23 computes (tests/HF_NOTES.md).

hf_config: the config.json dict, or a path to config.json (or to the directory holding it).
tensors: a mapping full checkpoint name -> array (numpy float32/float16, ml_dtypes.bfloat16, raw bf16 bits
as uint16, or torch tensors). Both the per-expert Hub names (`experts.{e}.w1.weight`,
`experts.{e}.gate_proj.weight`, ...) and the fused names of transformers v5 (`experts.gate_up_proj`,
`experts.down_proj`) are accepted, under any prefix ("model.", "language_model.model.", ...).
The prefix is found from the router tensor, whose name ends in e.g. `layers.{i}.mlp.gate.weight`.

Families (model_type): mixtral, qwen2_moe, qwen3_moe, olmoe, dbrx, deepseek_v2, deepseek_v3, kimi_k2,
llama4 / llama4_text, gpt_oss, switch_transformers. For switch_transformers, layer_index is an encoder
block index, or a string "encoder.3" / "decoder.3".

Router weights and biases are kept float32; expert weights are float32 (dtype="float32", bf16 inputs are
widened exactly) or bf16 (dtype="bfloat16": float32 inputs are rounded to nearest even).
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

import numpy as np

from .moe.weights import ExpertWeights, from_bf16_bits, to_bf16_bits
from .routing import RouterConfig

FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "dbrx", "deepseek_v2", "deepseek_v3", "kimi_k2",
            "llama4", "llama4_text", "gpt_oss", "switch_transformers")
_DEEPSEEK_V3_LIKE = ("deepseek_v3", "kimi_k2")


# ---------------------------------------------------------------------------------------------- config
def load_config(hf_config) -> dict:
    """A config.json dict from a dict or a path (file or directory)."""
    if isinstance(hf_config, Mapping):
        return dict(hf_config)
    if hasattr(hf_config, "to_dict"):  # a transformers PretrainedConfig
        return hf_config.to_dict()
    if isinstance(hf_config, (str, os.PathLike)):
        path = os.fspath(hf_config)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    raise TypeError(f"hf_config must be a dict or a path to config.json, got {type(hf_config).__name__}")


def _model_type(cfg: dict) -> str:
    mt = cfg.get("model_type")
    if mt is None:
        raise ValueError("hf_config has no model_type")
    if mt not in FAMILIES:
        raise ValueError(f"unsupported model_type {mt!r}; supported: {', '.join(FAMILIES)}")
    return mt


def _text_config(cfg: dict) -> dict:
    """The config that describes the decoder layers (Llama 4: text_config)."""
    if cfg.get("model_type") == "llama4":
        text = cfg.get("text_config")
        if not isinstance(text, Mapping):
            raise ValueError("llama4 config has no text_config")
        return dict(text)
    return cfg


def _get(cfg: dict, *names, default: Any = None):
    for n in names:
        if n in cfg and cfg[n] is not None:
            return cfg[n]
    return default


def _num_layers(mt: str, cfg: dict) -> int:
    if mt == "dbrx":
        return int(_get(cfg, "n_layers", "num_hidden_layers", default=0))
    if mt == "switch_transformers":
        return int(_get(cfg, "num_layers", default=0))
    return int(_get(cfg, "num_hidden_layers", default=0))


def _switch_sparse(cfg: dict, stack: str) -> list:
    if stack == "encoder":
        L = int(_get(cfg, "num_layers", default=12))
        n = int(_get(cfg, "num_sparse_encoder_layers", default=3))
    else:
        L = int(_get(cfg, "num_decoder_layers", "num_layers", default=12))
        n = int(_get(cfg, "num_sparse_decoder_layers", default=3))
    step = L // n if n > 0 else L
    if step <= 0:
        return []
    return [i for i in range(L) if i % step == 1 or step == 1]


def moe_layer_indices(hf_config, stack: str = "encoder") -> list:
    """Indices of the decoder layers that hold an MoE block (switch_transformers: of `stack`,
    "encoder" or "decoder")."""
    cfg = load_config(hf_config)
    mt = _model_type(cfg)
    c = _text_config(cfg)
    if mt == "switch_transformers":
        return _switch_sparse(c, stack)
    L = _num_layers(mt, c)
    if mt in ("qwen2_moe", "qwen3_moe"):
        E = int(_get(c, "num_experts", "num_local_experts", default=0))
        step = int(_get(c, "decoder_sparse_step", default=1))
        only = set(_get(c, "mlp_only_layers", default=[]) or [])
        return [i for i in range(L) if i not in only and E > 0 and step > 0 and (i + 1) % step == 0]
    if mt in ("deepseek_v2",) + _DEEPSEEK_V3_LIKE:
        first = int(_get(c, "first_k_dense_replace", default=0))
        freq = int(_get(c, "moe_layer_freq", default=1)) or 1
        return [i for i in range(L) if i >= first and i % freq == 0]
    if mt in ("llama4", "llama4_text"):
        layers = c.get("moe_layers")
        if layers is not None:
            return sorted(int(i) for i in layers)
        step = int(_get(c, "interleave_moe_layer_step", default=1))
        return list(range(step - 1, L, step)) if step > 0 else []
    return list(range(L))  # mixtral, olmoe, dbrx, gpt_oss


# ---------------------------------------------------------------------------------------------- arrays
def _is_bf16(a) -> bool:
    return a.dtype == np.uint16 or a.dtype.name == "bfloat16"


def _np(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "detach"):  # torch tensor
        import torch
        t = a.detach().cpu()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(np.uint16)
        return t.float().numpy() if t.dtype not in (torch.float32, torch.float64) else t.numpy()
    return np.asarray(a)


def _f32(a) -> np.ndarray:
    """Router weights / biases: always float32 (bf16 widened exactly)."""
    a = _np(a)
    if _is_bf16(a):
        return from_bf16_bits(to_bf16_bits(a)).reshape(a.shape)
    return np.ascontiguousarray(a, dtype=np.float32)


def _expert(a, dtype: str) -> np.ndarray:
    """Expert weights: float32, or bf16 kept as they are when dtype == "bfloat16"."""
    a = _np(a)
    if _is_bf16(a):
        if dtype == "bfloat16":
            return a
        return from_bf16_bits(to_bf16_bits(a)).reshape(a.shape)
    return np.asarray(a, dtype=np.float32)


def _contig(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


class _Tensors:
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


def _find_prefix(tensors: Mapping, suffixes: list, rel: str) -> str:
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


# ---------------------------------------------------------------------------------------------- experts
def _stack_experts(T: _Tensors, E: int, names: tuple, dtype: str):
    """Per-expert Hub names experts.{e}.{gate,up,down}.weight -> (gate (E,I,H), up (E,I,H), down (E,H,I))."""
    g, u, d = names
    gate = np.stack([_expert(T.get(f"experts.{e}.{g}.weight"), dtype) for e in range(E)])
    up = np.stack([_expert(T.get(f"experts.{e}.{u}.weight"), dtype) for e in range(E)])
    down = np.stack([_expert(T.get(f"experts.{e}.{d}.weight"), dtype) for e in range(E)])
    return gate, up, down


def _swiglu_experts(T: _Tensors, E: int, dtype: str, per_expert_names: tuple, activation: str = "silu",
                    fused_layout: str = "linear") -> ExpertWeights:
    """Routed experts from the fused v5 names (experts.gate_up_proj + experts.down_proj) or the per-expert names.
    fused_layout "linear": gate_up (E, 2I, H) with gate = first I rows, down (E, H, I);
    "matmul" (Llama 4): gate_up (E, H, 2I) with gate = first I columns, down (E, I, H)."""
    if T.has("experts.gate_up_proj") or T.has("experts.down_proj"):
        gu = _expert(T.get("experts.gate_up_proj"), dtype)
        down = _expert(T.get("experts.down_proj"), dtype)
        if gu.ndim != 3 or gu.shape[0] != E:
            raise ValueError(f"{T.prefix}experts.gate_up_proj: expected {E} experts, got shape {gu.shape}")
        if fused_layout == "linear":
            I = gu.shape[1] // 2
            gate, up = _contig(gu[:, :I]), _contig(gu[:, I:])
        else:
            I = gu.shape[2] // 2
            gate = _contig(gu[:, :, :I].transpose(0, 2, 1))
            up = _contig(gu[:, :, I:].transpose(0, 2, 1))
            down = _contig(down.transpose(0, 2, 1))
    else:
        names = per_expert_names
        if not T.has(f"experts.0.{names[0]}.weight"):  # the other spelling, if the checkpoint uses it
            alt = ("gate_proj", "up_proj", "down_proj") if names[0] == "w1" else ("w1", "w3", "w2")
            if T.has(f"experts.0.{alt[0]}.weight"):
                names = alt
            elif not any(T.has(f"experts.0.{n}.weight") for n in names + alt):
                raise KeyError(f"checkpoint tensor {T.prefix}experts.0.{names[0]}.weight (Hub names) or "
                               f"{T.prefix}experts.gate_up_proj (fused names) not found")
        gate, up, down = _stack_experts(T, E, names, dtype)
    return ExpertWeights(up=up, down=down, gate=gate, activation=activation)


def _shared_mlp(T: _Tensors, rel: str, dtype: str, activation: str = "silu") -> ExpertWeights:
    w = [_expert(T.get(f"{rel}.{n}.weight"), dtype)[None] for n in ("gate_proj", "up_proj", "down_proj")]
    return ExpertWeights(up=w[1], down=w[2], gate=w[0], activation=activation)


def _act(name: Optional[str]) -> str:
    name = (name or "silu").lower()
    return {"swish": "silu", "gelu_python": "gelu", "gelu_fast": "gelu_tanh"}.get(name, name)


# ---------------------------------------------------------------------------------------------- main
def layer_from_hf(cls, hf_config, tensors: Mapping, layer_index, dtype: Optional[str] = "float32"):
    """MoELayer (`cls`) of layer `layer_index` of a Hugging Face checkpoint (see the module docstring)."""
    cfg = load_config(hf_config)
    mt = _model_type(cfg)
    c = _text_config(cfg)
    if dtype is None:
        dtype = "float32"

    stack = "encoder"
    if mt == "switch_transformers" and isinstance(layer_index, str):
        stack, _, idx = layer_index.rpartition(".")
        stack = stack or "encoder"
        if stack not in ("encoder", "decoder"):
            raise ValueError(f"switch_transformers layer_index must be 'encoder.N' or 'decoder.N', got {layer_index!r}")
        layer_index = idx
    try:
        i = int(layer_index)
    except (TypeError, ValueError):
        raise ValueError(f"layer_index must be an int, got {layer_index!r}") from None
    moe = moe_layer_indices(cfg, stack)
    if i not in moe:
        where = f" {stack}" if mt == "switch_transformers" else ""
        raise ValueError(f"{mt}:{where} layer {i} is not an MoE layer (dense or out of range); "
                         f"the MoE layers are {moe}")

    if mt == "mixtral":
        E = int(_get(c, "num_local_experts", "num_experts"))
        K = int(_get(c, "num_experts_per_tok", default=2))
        T = _Tensors(tensors, _find_prefix(tensors, [f"layers.{i}.block_sparse_moe.", f"layers.{i}.mlp."],
                                           "gate.weight"))
        experts = _swiglu_experts(T, E, dtype, ("w1", "w3", "w2"), _act(c.get("hidden_act")))
        return cls(RouterConfig.mixtral(E, K), _f32(T.get("gate.weight")), experts, dtype=dtype, family=mt)

    if mt in ("qwen2_moe", "qwen3_moe", "olmoe"):
        E = int(_get(c, "num_experts", "num_local_experts"))
        K = int(_get(c, "num_experts_per_tok"))
        norm = bool(_get(c, "norm_topk_prob", default=False))
        T = _Tensors(tensors, _find_prefix(tensors, [f"layers.{i}.mlp."], "gate.weight"))
        act = _act(c.get("hidden_act"))
        experts = _swiglu_experts(T, E, dtype, ("gate_proj", "up_proj", "down_proj"), act)
        router = getattr(RouterConfig, mt)(E, K, norm)
        shared = gate_w = None
        if mt == "qwen2_moe" and int(_get(c, "shared_expert_intermediate_size", default=0)) > 0:
            shared = _shared_mlp(T, "shared_expert", dtype, act)
            gate_w = _f32(T.get("shared_expert_gate.weight"))
        return cls(router, _f32(T.get("gate.weight")), experts, shared=shared, shared_gate_weight=gate_w,
                   dtype=dtype, family=mt)

    if mt == "deepseek_v2" or mt in _DEEPSEEK_V3_LIKE:
        E = int(_get(c, "n_routed_experts", "num_experts", "num_local_experts"))
        K = int(_get(c, "num_experts_per_tok"))
        scale = float(_get(c, "routed_scaling_factor", default=1.0 if mt == "deepseek_v2" else 2.5))
        T = _Tensors(tensors, _find_prefix(tensors, [f"layers.{i}.mlp."], "gate.weight"))
        act = _act(c.get("hidden_act"))
        selection_bias = None
        if mt == "deepseek_v2":
            method = _get(c, "topk_method", default="greedy")
            if method not in ("greedy", "group_limited_greedy"):
                raise ValueError(f"deepseek_v2: topk_method {method!r} is not supported by the transformers "
                                 f"DeepseekV2 block (greedy, group_limited_greedy)")
            router = RouterConfig.deepseek_v2(E, K, int(_get(c, "n_group", default=1)),
                                              int(_get(c, "topk_group", default=1)), scale, method)
        else:
            router = RouterConfig.deepseek_v3(E, K, int(_get(c, "n_group", default=1)),
                                              int(_get(c, "topk_group", default=1)), scale,
                                              bool(_get(c, "norm_topk_prob", default=True)))
            selection_bias = _f32(T.get("gate.e_score_correction_bias"))
        experts = _swiglu_experts(T, E, dtype, ("gate_proj", "up_proj", "down_proj"), act)
        shared = None
        if int(_get(c, "n_shared_experts", default=0)) > 0:
            shared = _shared_mlp(T, "shared_experts", dtype, act)
        return cls(router, _f32(T.get("gate.weight")), experts, shared=shared, selection_bias=selection_bias,
                   dtype=dtype, family=mt)

    if mt == "dbrx":
        f = dict(c.get("ffn_config") or {})
        E = int(_get(f, "moe_num_experts", default=4))
        K = int(_get(f, "moe_top_k", default=1))
        F = int(_get(f, "ffn_hidden_size", default=3584))
        p = f.get("moe_normalize_expert_weights", 1.0)
        act = _act((f.get("ffn_act_fn") or {}).get("name", "silu"))
        T = _Tensors(tensors, _find_prefix(tensors, [f"blocks.{i}.ffn."], "router.layer.weight"))
        H = int(_get(c, "d_model", "hidden_size"))

        def split(rel):
            w = _expert(T.get(rel), dtype)
            if w.shape != (E * F, H):
                raise ValueError(f"{T.prefix}{rel}: expected (E*F, H) = {(E * F, H)}, got {w.shape}")
            return w.reshape(E, F, H)
        gate, up = split("experts.mlp.w1"), split("experts.mlp.v1")
        down = _contig(split("experts.mlp.w2").transpose(0, 2, 1))  # out_e = h @ w2_e -> down_e = w2_e^T
        experts = ExpertWeights(up=up, down=down, gate=gate, activation=act)
        router = RouterConfig.dbrx(E, K, None if p is None else float(p))
        return cls(router, _f32(T.get("router.layer.weight")), experts, dtype=dtype, family=mt)

    if mt in ("llama4", "llama4_text"):
        E = int(_get(c, "num_local_experts", default=16))
        K = int(_get(c, "num_experts_per_tok", default=1))
        act = _act(c.get("hidden_act"))
        T = _Tensors(tensors, _find_prefix(tensors, [f"layers.{i}.feed_forward."], "router.weight"))
        experts = _swiglu_experts(T, E, dtype, ("gate_proj", "up_proj", "down_proj"), act, fused_layout="matmul")
        shared = _shared_mlp(T, "shared_expert", dtype, act)
        return cls(RouterConfig.llama4(E, K), _f32(T.get("router.weight")), experts, shared=shared,
                   scale_input=True, dtype=dtype, family="llama4")

    if mt == "gpt_oss":
        E = int(_get(c, "num_local_experts", "num_experts"))
        K = int(_get(c, "num_experts_per_tok", "experts_per_token", default=4))
        T = _Tensors(tensors, _find_prefix(tensors, [f"layers.{i}.mlp."], "router.weight"))
        if T.has("experts.gate_up_proj") or T.has("experts.down_proj"):
            gu = _expert(T.get("experts.gate_up_proj"), dtype)  # (E, H, 2I), x @ W
            down = _expert(T.get("experts.down_proj"), dtype)  # (E, I, H)
        elif T.has("experts.gate_up_proj_blocks"):
            gu = _mxfp4(T, "experts.gate_up_proj")
            down = _mxfp4(T, "experts.down_proj")
        else:
            T.get("experts.gate_up_proj")  # raises the KeyError naming it
        gate = _contig(gu[:, :, 0::2].transpose(0, 2, 1))
        up = _contig(gu[:, :, 1::2].transpose(0, 2, 1))
        down = _contig(down.transpose(0, 2, 1))
        gub = _f32(T.get("experts.gate_up_proj_bias"))
        experts = ExpertWeights(up=up, down=down, gate=gate, gate_bias=_contig(gub[:, 0::2]),
                                up_bias=_contig(gub[:, 1::2]), down_bias=_f32(T.get("experts.down_proj_bias")),
                                activation="gpt_oss", alpha=float(_get(c, "swiglu_alpha", default=1.702)),
                                limit=float(_get(c, "swiglu_limit", default=7.0)))
        return cls(RouterConfig.gpt_oss(E, K), _f32(T.get("router.weight")), experts,
                   router_bias=_f32(T.get("router.bias")), dtype=dtype, family=mt)

    if mt == "switch_transformers":
        E = int(_get(c, "num_experts", default=8))
        ff = 1 if stack == "encoder" else 2
        T = _Tensors(tensors, _find_prefix(tensors, [f"{stack}.block.{i}.layer.{ff}.mlp."],
                                           "router.classifier.weight"))
        act = _act(_get(c, "dense_act_fn", default="relu"))
        up = np.stack([_expert(T.get(f"experts.expert_{e}.wi.weight"), dtype) for e in range(E)])
        down = np.stack([_expert(T.get(f"experts.expert_{e}.wo.weight"), dtype) for e in range(E)])
        experts = ExpertWeights(up=up, down=down, activation=act)
        router = RouterConfig.switch(E, int(_get(c, "expert_capacity", default=64)))
        bias = _f32(T.get("router.classifier.bias")) if c.get("router_bias") else None
        return cls(router, _f32(T.get("router.classifier.weight")), experts, router_bias=bias, dtype=dtype,
                   family="switch")

    raise ValueError(f"unsupported model_type {mt!r}")  # unreachable: _model_type checked it


_FP4_LUT = np.array([+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
                     -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)


def _mxfp4(T: _Tensors, rel: str) -> np.ndarray:
    """GPT-OSS MXFP4 experts (`{rel}_blocks` (E, R, G, 16) u8 + `{rel}_scales` (E, R, G) u8) -> float32
    in the x @ W orientation (E, G*32, R), as transformers dequantizes them."""
    blocks = _np(T.get(rel + "_blocks")).astype(np.uint8)
    scales = _np(T.get(rel + "_scales")).astype(np.int32) - 127
    E, R, G, B = blocks.shape
    out = np.empty((E, R, G, B * 2), np.float32)
    out[..., 0::2] = _FP4_LUT[blocks & 0x0F]
    out[..., 1::2] = _FP4_LUT[blocks >> 4]
    out *= np.ldexp(np.float32(1.0), scales)[..., None].astype(np.float32)
    return _contig(out.reshape(E, R, G * B * 2).transpose(0, 2, 1))

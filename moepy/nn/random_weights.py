"""Seeded random weights for a whole decoder described by a config.json: what MoEModel.from_config loads.

`random_tensors(hf_config, seed, std)` returns one float32 array for every parameter of the model, under the
names and shapes that transformers 5.23's `AutoModelForCausalLM.from_config(...).state_dict()` uses (the fused v5
expert tensors `experts.gate_up_proj` / `experts.down_proj`, DBRX's `ffn.experts.mlp.w1/v1/w2`, ...). The shapes
are read from the config.json fields with the defaults of the transformers config classes (head_dim, bias flags,
which layers are MoE and which dense). Values: norm weights 1 + 0.1 * N(0, 1) (so they are not trivially 1),
DeepSeek-V3's e_score_correction_bias N(0, 0.1^2), GPT-OSS's attention sinks N(0, 1), everything else
(embeddings, projections, routers, experts, biases) N(0, std^2). The arrays are drawn from one
np.random.default_rng(seed) in a fixed name order, so the same (config, seed, std) gives the same arrays.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Dict, Tuple

import numpy as np

from ..families._config_json import load_hf_config

Shapes = Dict[str, Tuple[int, ...]]

NORM_STD = 0.1
E_SCORE_BIAS_STD = 0.1
SINKS_STD = 1.0


# ---------------------------------------------------------------------------------------------- config fields
def _get(d: Mapping, key: str, default):
    """d[key], or `default` when the key is absent (an explicit null stays None)."""
    return d[key] if key in d else default


def _int(d: Mapping, key: str, default=None) -> int:
    v = _get(d, key, default)
    if v is None or isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"config field {key!r} must be an int, got {v!r}")
    return int(v)


def _kv_heads(d: Mapping, nh: int, default=None) -> int:
    v = _get(d, "num_key_value_heads", default)
    return nh if v is None else int(v)


def _head_dim(d: Mapping, H: int, nh: int, default=None) -> int:
    """head_dim from the config, else the class default, else hidden_size // num_attention_heads."""
    v = _get(d, "head_dim", default)
    return H // nh if not v else int(v)


# ---------------------------------------------------------------------------------------------- building blocks
def _linear(out: Shapes, name: str, n_out: int, n_in: int, bias: bool = False) -> None:
    out[f"{name}.weight"] = (n_out, n_in)
    if bias:
        out[f"{name}.bias"] = (n_out,)


def _gqa(out: Shapes, p: str, H: int, nh: int, nkv: int, hd: int, qkv_bias: bool, o_bias: bool) -> None:
    _linear(out, p + "q_proj", nh * hd, H, qkv_bias)
    _linear(out, p + "k_proj", nkv * hd, H, qkv_bias)
    _linear(out, p + "v_proj", nkv * hd, H, qkv_bias)
    _linear(out, p + "o_proj", H, nh * hd, o_bias)


def _swiglu_mlp(out: Shapes, p: str, H: int, inter: int, bias: bool = False) -> None:
    _linear(out, p + "gate_proj", inter, H, bias)
    _linear(out, p + "up_proj", inter, H, bias)
    _linear(out, p + "down_proj", H, inter, bias)


def _fused_experts(out: Shapes, p: str, E: int, H: int, inter: int) -> None:
    """transformers v5 fused experts, (E, 2I, H) and (E, H, I) (Mixtral, Qwen, OLMoE, DeepSeek)."""
    out[p + "gate_up_proj"] = (E, 2 * inter, H)
    out[p + "down_proj"] = (E, H, inter)


def _layer_norms(out: Shapes, p: str, H: int) -> None:
    out[p + "input_layernorm.weight"] = (H,)
    out[p + "post_attention_layernorm.weight"] = (H,)


def _embed_and_head(d: Mapping, V: int, H: int, tie_default: bool = False) -> Tuple[Shapes, Shapes]:
    """(the embedding, the final norm + lm_head unless tie_word_embeddings) of a `model.`-prefixed decoder."""
    first = {"model.embed_tokens.weight": (V, H)}
    last = {"model.norm.weight": (H,)}
    if not _get(d, "tie_word_embeddings", tie_default):
        last["lm_head.weight"] = (V, H)
    return first, last


def _llama_like(d: Mapping, layer: Callable[[Shapes, str, int], None], H: int) -> Shapes:
    V, L = _int(d, "vocab_size"), _int(d, "num_hidden_layers")
    out, last = _embed_and_head(d, V, H)
    for i in range(L):
        layer(out, f"model.layers.{i}.", i)
    out.update(last)
    return out


def _attention_dims(d: Mapping, head_dim_default=None, kv_default=None):
    H, nh = _int(d, "hidden_size"), _int(d, "num_attention_heads")
    return H, nh, _kv_heads(d, nh, kv_default), _head_dim(d, H, nh, head_dim_default)


# ---------------------------------------------------------------------------------------------- families
def _mixtral(d: Mapping) -> Shapes:
    H, nh, nkv, hd = _attention_dims(d)
    E, inter = _int(d, "num_local_experts", 8), _int(d, "intermediate_size")

    def layer(out, p, i):
        _gqa(out, p + "self_attn.", H, nh, nkv, hd, False, False)
        out[p + "mlp.gate.weight"] = (E, H)
        _fused_experts(out, p + "mlp.experts.", E, H, inter)
        _layer_norms(out, p, H)
    return _llama_like(d, layer, H)


def _qwen_moe_layers(d: Mapping, L: int, E: int) -> set:
    only = _get(d, "mlp_only_layers", None) or []
    step = _int(d, "decoder_sparse_step", 1)
    return {i for i in range(L) if i not in only and E > 0 and (i + 1) % step == 0}


def _qwen2_moe(d: Mapping) -> Shapes:
    H, nh, nkv, hd = _attention_dims(d, kv_default=16)
    E = _int(d, "num_experts", 60)
    moe = _qwen_moe_layers(d, _int(d, "num_hidden_layers"), E)
    qkv_bias = bool(_get(d, "qkv_bias", True))
    moe_inter, dense_inter = _int(d, "moe_intermediate_size", 1408), _int(d, "intermediate_size", 5632)
    shared = _int(d, "shared_expert_intermediate_size", 5632)

    def layer(out, p, i):
        _gqa(out, p + "self_attn.", H, nh, nkv, hd, qkv_bias, False)
        if i in moe:
            out[p + "mlp.gate.weight"] = (E, H)
            _fused_experts(out, p + "mlp.experts.", E, H, moe_inter)
            _swiglu_mlp(out, p + "mlp.shared_expert.", H, shared)
            out[p + "mlp.shared_expert_gate.weight"] = (1, H)
        else:
            _swiglu_mlp(out, p + "mlp.", H, dense_inter)
        _layer_norms(out, p, H)
    return _llama_like(d, layer, H)


def _qwen3_moe(d: Mapping) -> Shapes:
    H, nh, nkv, hd = _attention_dims(d, kv_default=4)
    E = _int(d, "num_experts", 128)
    moe = _qwen_moe_layers(d, _int(d, "num_hidden_layers"), E)
    bias = bool(_get(d, "attention_bias", False))
    moe_inter, dense_inter = _int(d, "moe_intermediate_size", 768), _int(d, "intermediate_size", 6144)

    def layer(out, p, i):
        _gqa(out, p + "self_attn.", H, nh, nkv, hd, bias, bias)
        out[p + "self_attn.q_norm.weight"] = (hd,)
        out[p + "self_attn.k_norm.weight"] = (hd,)
        if i in moe:
            out[p + "mlp.gate.weight"] = (E, H)
            _fused_experts(out, p + "mlp.experts.", E, H, moe_inter)
        else:
            _swiglu_mlp(out, p + "mlp.", H, dense_inter)
        _layer_norms(out, p, H)
    return _llama_like(d, layer, H)


def _olmoe(d: Mapping) -> Shapes:
    H, nh, nkv, hd = _attention_dims(d)
    E, inter = _int(d, "num_experts", 64), _int(d, "intermediate_size", 2048)
    bias = bool(_get(d, "attention_bias", False))

    def layer(out, p, i):
        _gqa(out, p + "self_attn.", H, nh, nkv, hd, bias, bias)
        out[p + "self_attn.q_norm.weight"] = (H,)  # over the whole projection, not per head
        out[p + "self_attn.k_norm.weight"] = ((H // nh) * nkv,)
        out[p + "mlp.gate.weight"] = (E, H)
        _fused_experts(out, p + "mlp.experts.", E, H, inter)
        _layer_norms(out, p, H)
    return _llama_like(d, layer, H)


def _dbrx(d: Mapping) -> Shapes:
    H, nh, L = _int(d, "d_model", 2048), _int(d, "n_heads", 16), _int(d, "n_layers", 24)
    V = _int(d, "vocab_size", 32000)
    attn = _get(d, "attn_config", None) or {}
    ffn = _get(d, "ffn_config", None) or {}
    nkv, hd = _int(attn, "kv_n_heads", 1), H // nh
    E, F = _int(ffn, "moe_num_experts", 4), _int(ffn, "ffn_hidden_size", 3584)
    out: Shapes = {"transformer.wte.weight": (V, H)}
    for i in range(L):
        p = f"transformer.blocks.{i}."
        out[p + "norm_attn_norm.norm_1.weight"] = (H,)
        out[p + "norm_attn_norm.attn.Wqkv.weight"] = (H + 2 * nkv * hd, H)
        out[p + "norm_attn_norm.attn.out_proj.weight"] = (H, H)
        out[p + "norm_attn_norm.norm_2.weight"] = (H,)
        out[p + "ffn.router.layer.weight"] = (E, H)
        for w in ("w1", "v1", "w2"):
            out[p + f"ffn.experts.mlp.{w}"] = (E * F, H)
    out["transformer.norm_f.weight"] = (H,)
    if not _get(d, "tie_word_embeddings", False):
        out["lm_head.weight"] = (V, H)
    return out


def _deepseek(version: int) -> Callable[[Mapping], Shapes]:
    v3 = version == 3
    defaults = dict(first_k=3 if v3 else 0, n_shared=1 if v3 else 2, moe_inter=2048 if v3 else 1407,
                    inter=18432 if v3 else 11008, E=256 if v3 else 64)

    def build(d: Mapping) -> Shapes:
        H, nh = _int(d, "hidden_size"), _int(d, "num_attention_heads")
        q_lora = _get(d, "q_lora_rank", 1536)
        kv_lora = _int(d, "kv_lora_rank", 512)
        nope, rope = _int(d, "qk_nope_head_dim", 128), _int(d, "qk_rope_head_dim", 64)
        vh = _int(d, "v_head_dim", 128)
        qk = nope + rope
        bias = bool(_get(d, "attention_bias", False))
        mlp_bias = bool(_get(d, "mlp_bias", False)) and not v3  # V3's MLP has no bias
        first_k = _get(d, "first_k_dense_replace", defaults["first_k"]) or 0
        E = _int(d, "n_routed_experts", defaults["E"])
        moe_inter = _int(d, "moe_intermediate_size", defaults["moe_inter"])
        inter = _int(d, "intermediate_size", defaults["inter"])
        n_shared = _get(d, "n_shared_experts", defaults["n_shared"]) or 0

        def layer(out, p, i):
            a = p + "self_attn."
            if not q_lora:
                _linear(out, a + "q_proj", nh * qk, H)
            else:
                _linear(out, a + "q_a_proj", int(q_lora), H, bias)
                out[a + "q_a_layernorm.weight"] = (int(q_lora),)
                _linear(out, a + "q_b_proj", nh * qk, int(q_lora))
            _linear(out, a + "kv_a_proj_with_mqa", kv_lora + rope, H, bias)
            out[a + "kv_a_layernorm.weight"] = (kv_lora,)
            _linear(out, a + "kv_b_proj", nh * (nope + vh), kv_lora)
            _linear(out, a + "o_proj", H, nh * vh, bias)
            if i >= first_k:
                _fused_experts(out, p + "mlp.experts.", E, H, moe_inter)
                out[p + "mlp.gate.weight"] = (E, H)
                if v3:
                    out[p + "mlp.gate.e_score_correction_bias"] = (E,)
                _swiglu_mlp(out, p + "mlp.shared_experts.", H, moe_inter * int(n_shared), mlp_bias)
            else:
                _swiglu_mlp(out, p + "mlp.", H, inter, mlp_bias)
            _layer_norms(out, p, H)
        return _llama_like(d, layer, H)
    return build


def _deepseek_v1(d: Mapping) -> Shapes:
    """DeepSeekMoE (model_type deepseek): Llama attention, MoE layers by moepy's rule for the family
    (first_k_dense_replace, moe_layer_freq), shared experts as one MLP."""
    from ..families._layers import moe_layer_indices
    H, nh, nkv, hd = _attention_dims(d)
    moe = set(moe_layer_indices(dict(d)))
    E, moe_inter = _int(d, "n_routed_experts", 64), _int(d, "moe_intermediate_size", 1408)
    inter, n_shared = _int(d, "intermediate_size", 10944), _get(d, "n_shared_experts", 2) or 0

    def layer(out, p, i):
        _gqa(out, p + "self_attn.", H, nh, nkv, hd, False, False)
        if i in moe:
            _fused_experts(out, p + "mlp.experts.", E, H, moe_inter)
            out[p + "mlp.gate.weight"] = (E, H)
            if n_shared:
                _swiglu_mlp(out, p + "mlp.shared_experts.", H, moe_inter * int(n_shared))
        else:
            _swiglu_mlp(out, p + "mlp.", H, inter)
        _layer_norms(out, p, H)
    return _llama_like(d, layer, H)


def _llama4_text(d: Mapping) -> Shapes:
    H, nh, nkv, hd = _attention_dims(d, head_dim_default=128, kv_default=8)
    L = _int(d, "num_hidden_layers")
    E = _int(d, "num_local_experts", 16)
    inter, dense_inter = _int(d, "intermediate_size", 8192), _int(d, "intermediate_size_mlp", 16384)
    bias = bool(_get(d, "attention_bias", False))
    moe = _get(d, "moe_layers", None)
    if moe is None:
        step = _int(d, "interleave_moe_layer_step", 1)
        moe = range(step - 1, L, step)
    moe = {int(i) for i in moe}

    def layer(out, p, i):
        _gqa(out, p + "self_attn.", H, nh, nkv, hd, bias, bias)  # qk norm (use_qk_norm) has no weight
        f = p + "feed_forward."
        if i in moe:
            out[f + "experts.gate_up_proj"] = (E, H, 2 * inter)
            out[f + "experts.down_proj"] = (E, inter, H)
            out[f + "router.weight"] = (E, H)
            _swiglu_mlp(out, f + "shared_expert.", H, inter)
        else:
            _swiglu_mlp(out, f, H, dense_inter)
        _layer_norms(out, p, H)
    return _llama_like(d, layer, H)


def _llama4(d: Mapping) -> Shapes:
    text = _get(d, "text_config", None)
    if not isinstance(text, Mapping):
        raise ValueError("llama4 config.json has no text_config")
    text = dict(text)
    if "tie_word_embeddings" not in text and "tie_word_embeddings" in d:
        text["tie_word_embeddings"] = d["tie_word_embeddings"]
    return _llama4_text(text)


def _gpt_oss(d: Mapping) -> Shapes:
    H, nh, nkv, hd = _attention_dims(d, head_dim_default=64, kv_default=8)
    E, inter = _int(d, "num_local_experts", 128), _int(d, "intermediate_size", 2880)
    bias = bool(_get(d, "attention_bias", True))

    def layer(out, p, i):
        out[p + "self_attn.sinks"] = (nh,)
        _gqa(out, p + "self_attn.", H, nh, nkv, hd, bias, bias)
        _linear(out, p + "mlp.router", E, H, True)
        x = p + "mlp.experts."
        out[x + "gate_up_proj"] = (E, H, 2 * inter)
        out[x + "gate_up_proj_bias"] = (E, 2 * inter)
        out[x + "down_proj"] = (E, inter, H)
        out[x + "down_proj_bias"] = (E, H)
        _layer_norms(out, p, H)
    return _llama_like(d, layer, H)


_FAMILIES: Dict[str, Callable[[Mapping], Shapes]] = {
    "mixtral": _mixtral,
    "qwen2_moe": _qwen2_moe,
    "qwen3_moe": _qwen3_moe,
    "olmoe": _olmoe,
    "dbrx": _dbrx,
    "deepseek": _deepseek_v1,
    "deepseek_v2": _deepseek(2),
    "deepseek_v3": _deepseek(3),
    "kimi_k2": _deepseek(3),
    "llama4_text": _llama4_text,
    "llama4": _llama4,
    "gpt_oss": _gpt_oss,
}
MODEL_TYPES = tuple(_FAMILIES)


# ---------------------------------------------------------------------------------------------- public
def _is_norm(name: str) -> bool:
    return name.endswith(("norm.weight", "norm_1.weight", "norm_2.weight", "norm_f.weight"))


def tensor_shapes(hf_config) -> Dict[str, Tuple[int, ...]]:
    """Name -> shape of every parameter of the model a config.json describes (see the module docstring), in the
    fixed order random_tensors draws them. hf_config: a dict, a path to a config.json (or its directory) or a
    transformers config. ValueError for a model_type without a decoder layout here."""
    d = load_hf_config(hf_config)
    mt = d.get("model_type")
    build = _FAMILIES.get(mt)
    if build is None:
        raise ValueError(f"random_tensors: unsupported model_type {mt!r}; supported: {', '.join(MODEL_TYPES)}")
    return build(d)


def random_tensors(hf_config: dict, seed: int = 0, std: float = 0.02) -> Dict[str, np.ndarray]:
    """Seeded random float32 weights for every parameter of the model `hf_config` (a config.json dict, a path
    or a transformers config) describes, under transformers 5.23's state_dict names and shapes.

    Norm weights are 1 + 0.1 * N(0, 1); DeepSeek-V3 / Kimi-K2 e_score_correction_bias N(0, 0.1^2); GPT-OSS
    attention sinks N(0, 1); all other tensors N(0, std^2). Deterministic in (hf_config, seed, std).
    ValueError naming the model_type if the family is not supported."""
    shapes = tensor_shapes(hf_config)
    rng = np.random.default_rng(seed)
    std32 = np.float32(std)
    out: Dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        z = rng.standard_normal(shape, dtype=np.float32)
        if _is_norm(name):
            a = np.float32(1.0) + np.float32(NORM_STD) * z
        elif name.endswith("e_score_correction_bias"):
            a = np.float32(E_SCORE_BIAS_STD) * z
        elif name.endswith("self_attn.sinks"):
            a = np.float32(SINKS_STD) * z
        else:
            a = std32 * z
        out[name] = np.ascontiguousarray(a, dtype=np.float32)
    return out


__all__ = ["MODEL_TYPES", "random_tensors", "tensor_shapes"]

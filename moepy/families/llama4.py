"""Llama 4 Scout and Maverick (Meta, 2025): top-1 on the raw router logits, a sigmoid of the chosen logit scales
the expert *input*; one always-active shared expert; MoE on every (Scout) or every other (Maverick) layer.

config.json model_type `llama4` (text_config nested, the vision tower counted) or `llama4_text`; checkpoint
names `layers.{i}.feed_forward.` (router, experts.gate_up_proj (E, H, 2I) in x @ W orientation, shared_expert).
"""
from __future__ import annotations

import copy
from typing import Mapping, Tuple

from ..configs.model import ModelConfig
from ..configs.accounting import LLAMA4_VISION_DEFAULTS
from ..moe.layer import MoELayer
from ..routing.config import RouterConfig
from ._checkpoint import first_of, as_f32, Tensors, find_prefix, glu_experts, shared_mlp, activation_name
from ._config_json import Fields, read_common, dense_width, write_common, spread_layers
from .registry import Family


def router(num_experts: int = 16, top_k: int = 1) -> RouterConfig:
    """Llama 4: top-k on the raw logits, then sigmoid of each selected logit; no renormalisation.
    (The Llama 4 layer multiplies the expert *input* by this weight.)"""
    return RouterConfig(top_k=top_k, scoring="sigmoid", topk_before_score=True, num_experts=num_experts,
                        family="llama4")


def read_hf(d, mt):
    nested = mt == "llama4" and isinstance(d.get("text_config"), Mapping)
    top = Fields(d, mt)
    t = d["text_config"] if nested else d
    f = Fields(t, f"{mt} text_config" if nested else mt)
    kw = read_common(f)
    L = kw["num_layers"]
    E, k = f.req_int("num_local_experts"), f.opt_int("num_experts_per_tok", 1)
    step = f.opt_positive("interleave_moe_layer_step", 1)
    moe = t.get("moe_layers")
    default_moe = list(range(step - 1, L, step))
    mlo: Tuple[int, ...] = ()
    if moe is not None and list(moe) != default_moe:
        step = 1
        mlo = tuple(i for i in range(L) if i not in set(moe))
    has_dense = len(default_moe if moe is None else moe) < L
    interval = f.opt_positive("no_rope_layer_interval", 4)
    rope_layers = t.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(L)]
    chunk = f.opt("attention_chunk_size", 8192)
    local = sum(1 for x in rope_layers[:L] if x) if chunk else 0
    kw.update(family="llama4", num_experts=E, top_k=k, expert_intermediate_size=f.req_int("intermediate_size"),
              moe_every=step, mlp_only_layers=mlo,
              dense_intermediate_size=dense_width(f, "intermediate_size_mlp", 16384, has_dense),
              num_shared_experts=1, shared_intermediate_size=f.req_int("intermediate_size"),
              qk_norm="l2" if f.opt_bool("use_qk_norm", True) else "none",
              attention_bias="all" if f.opt_bool("attention_bias", False) else "none",
              local_attention_layers=local, local_attention_window=int(chunk) if local else 0,
              router=router(E, k))
    extra = {"": top.extra()} if nested else {"": f.extra()}
    if nested:
        extra["text_config"] = f.extra()
        vc = d.get("vision_config")
        if isinstance(vc, Mapping):
            kw["vision_config"] = {k: vc[k] for k in LLAMA4_VISION_DEFAULTS if vc.get(k) is not None}
            extra["vision_config"] = {k: v for k, v in vc.items() if k not in LLAMA4_VISION_DEFAULTS}
        if top.d.get("tie_word_embeddings") is not None:
            top.used.add("tie_word_embeddings")
    return kw, extra


def write_hf(c: ModelConfig) -> dict:
    t = write_common(c, "llama4_text", "Llama4ForCausalLM")
    L = c.num_layers
    rope = [0] * L
    for i in spread_layers(L, c.local_attention_layers, period=4):
        rope[i] = 1
    t.update(intermediate_size=c.expert_intermediate_size, num_local_experts=c.num_experts, num_experts_per_tok=c.top_k,
             interleave_moe_layer_step=c.moe_every, moe_layers=list(c.moe_layers), use_qk_norm=c.qk_norm == "l2",
             attention_bias=c.attention_bias == "all", no_rope_layers=rope,
             attention_chunk_size=c.local_attention_window if c.local_attention_layers else None)
    if c.dense_intermediate_size:
        t["intermediate_size_mlp"] = c.dense_intermediate_size
    if c.vision_config is None:
        return t
    t.pop("architectures")
    vision = {"model_type": "llama4_vision_model", **copy.deepcopy(dict(c.vision_config))}
    return {"model_type": "llama4", "architectures": ["Llama4ForConditionalGeneration"], "text_config": t,
            "vision_config": vision, "tie_word_embeddings": c.tie_embeddings}


LLAMA4_VISION = {
    "hidden_size": 1408, "num_hidden_layers": 34, "num_attention_heads": 16, "num_channels": 3,
    "intermediate_size": 5632, "vision_output_dim": 4096, "image_size": 336, "patch_size": 14,
    "projector_input_dim": 4096, "projector_output_dim": 4096,
}


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    E = int(first_of(c, "num_local_experts", default=16))
    K = int(first_of(c, "num_experts_per_tok", default=1))
    act = activation_name(c.get("hidden_act"))
    T = Tensors(tensors, find_prefix(tensors, [f"layers.{i}.feed_forward."], "router.weight"))
    experts = glu_experts(T, E, dtype, ("gate_proj", "up_proj", "down_proj"), act, fused_layout="matmul")
    shared = shared_mlp(T, "shared_expert", dtype, act)
    return MoELayer(router(E, K), as_f32(T.get("router.weight")), experts, shared=shared, scale_input=True, dtype=dtype,
                    family="llama4")


def llama4_scout() -> ModelConfig:
    """Llama-4-Scout-17B-16E (Meta, "The Llama 4 herd", Apr 2025, and the model card): 109B total, 17B active;
    16 experts top-1 (sigmoid gate on the expert input) + a shared expert in all 48 layers, chunked attention
    (8192) on 3 of 4 layers; the total includes the vision encoder (counted from its vision_config);
    meta-llama/Llama-4-Scout-17B-16E config.json."""
    return ModelConfig(name="llama-4-scout", family="llama4", vocab_size=202048, hidden_size=5120, num_layers=48,
                       num_heads=40, num_kv_heads=8, head_dim=128, qk_norm="l2", local_attention_layers=36,
                       local_attention_window=8192, dense_intermediate_size=16384, num_experts=16, top_k=1,
                       expert_intermediate_size=8192, num_shared_experts=1, shared_intermediate_size=8192,
                       vision_config=LLAMA4_VISION, max_context=10485760)


def llama4_maverick() -> ModelConfig:
    """Llama-4-Maverick-17B-128E (Meta, "The Llama 4 herd", Apr 2025, and the model card): 400B total, 17B
    active; 128 experts top-1 + shared expert on every other layer (24 MoE, 24 dense of width 16384), no qk-norm;
    total includes the vision encoder; meta-llama/Llama-4-Maverick-17B-128E config.json."""
    return ModelConfig(name="llama-4-maverick", family="llama4", vocab_size=202048, hidden_size=5120, num_layers=48,
                       num_heads=40, num_kv_heads=8, head_dim=128, local_attention_layers=36,
                       local_attention_window=8192, moe_every=2, dense_intermediate_size=16384, num_experts=128,
                       top_k=1, expert_intermediate_size=8192, num_shared_experts=1, shared_intermediate_size=8192,
                       vision_config=LLAMA4_VISION, max_context=1048576)


def decoder(d):
    """Llama 4's text decoder: RoPE layers (no_rope_layers[i] = 1) with complex-pair RoPE, weightless L2 q/k norm
    after it (use_qk_norm) and chunked attention (attention_chunk_size); NoPE layers with full attention and the
    attention-temperature scaling of q; dense layers of intermediate_size_mlp between the MoE layers."""
    from ..nn import spec as S
    L = S.cfg_int(d, "num_hidden_layers", lo=1)
    interval = S.cfg_int(d, "no_rope_layer_interval", 4, lo=1)
    use_rope = d.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(L)]
    if len(use_rope) != L:
        raise ValueError(f"llama4 config.json: no_rope_layers has {len(use_rope)} entries for {L} layers")
    lt = S.layer_types(d, L) or tuple("chunked_attention" if r else "full_attention" for r in use_rope)
    chunk = S.cfg_int(d, "attention_chunk_size", 8192, lo=1) if "chunked_attention" in lt else 0
    bias = bool(d.get("attention_bias", False))
    eps = S.cfg_float(d, "rms_norm_eps", 1e-5)
    temp = None
    if d.get("attn_temperature_tuning", True):
        temp = (S.cfg_float(d, "attn_scale", 0.1), float(S.cfg_int(d, "floor_scale", 8192, lo=1)))
    qk = bool(d.get("use_qk_norm", True))

    def attention(i):
        rope = bool(use_rope[i])
        return S.gqa(d, rope_layout="pairs", default_theta=5e5, head_dim=S.cfg_int(d, "head_dim", 128, lo=1),
                     **({} if rope else {"rope": None}), qkv_bias=bias, o_bias=bias,
                     qk_norm="l2" if rope and qk else "none", qk_norm_eps=eps,
                     chunk=chunk if lt[i] == "chunked_attention" else 0, temperature=None if rope else temp)
    return S.decoder(d, "llama4", S.standard_layers(d, attention, dense_width_key="intermediate_size_mlp"),
                     names=S.Names(mlp="feed_forward."), norm_eps_default=1e-5)


FAMILY = Family(
    name="llama4", order=110, router=router,
    model_types=('llama4', 'llama4_text'),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block, decoder=decoder,
    presets={"llama-4-scout": llama4_scout, "llama-4-maverick": llama4_maverick},
    aliases={'llama-4-scout-17b-16e': 'llama-4-scout', 'llama-4-maverick-17b-128e': 'llama-4-maverick', 'llama4-scout': 'llama-4-scout', 'llama4-maverick': 'llama-4-maverick'},
    description='Meta, 2025',
)

"""gpt-oss (OpenAI, 2025): top-4 on the (biased) router logits, a softmax over the four; clamped SwiGLU experts with
biases (alpha 1.702, limit 7); experts stored in MXFP4 in the released checkpoints.

config.json model_type `gpt_oss`; checkpoint names `layers.{i}.mlp.` (router.weight/bias, experts.gate_up_proj
(E, H, 2I) with gate and up interleaved, or its MXFP4 `_blocks` + `_scales`, and biases).
"""
from __future__ import annotations

import numpy as np

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..moe.weights import ExpertSource
from ..routing.config import RouterConfig
from ._checkpoint import first_of, to_numpy, as_f32, expert_array, contig, last_expert, source_array, Tensors, find_prefix
from ._config_json import Fields, read_common, write_common, spread_layers
from .registry import Family
from ._gguf import GPT_OSS_NAMES, GGUFSpec, common_config, key, need


def router(num_experts: int = 32, top_k: int = 4) -> RouterConfig:
    """GPT-OSS: top-k on the logits (router has a bias, already in the logits), softmax over the K selected."""
    return RouterConfig(top_k=top_k, scoring="softmax", topk_before_score=True, num_experts=num_experts,
                        family="gpt_oss")


def read_hf(d, mt):
    f = Fields(d, mt)
    kw = read_common(f, head_dim_default=False)
    f.used.add("head_dim")
    kw["head_dim"] = f.opt_int("head_dim", 64)
    L = kw["num_layers"]
    E, k = f.req_int("num_local_experts", "num_experts"), f.opt_int("num_experts_per_tok", 4)
    sw = f.opt("sliding_window", 128)
    types = d.get("layer_types") or ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(L)]
    local = sum(1 for x in types[:L] if x == "sliding_attention") if sw else 0
    kw.update(family="gpt_oss", num_experts=E, top_k=k, expert_intermediate_size=f.req_int("intermediate_size"),
              attention_bias="all" if f.opt_bool("attention_bias", True) else "none", attention_sinks=True,
              expert_bias=True, router_bias=True, local_attention_layers=local,
              local_attention_window=int(sw) if local else 0, router=router(E, k))
    return kw, {"": f.extra()}


def write_hf(c: ModelConfig) -> dict:
    d = write_common(c, "gpt_oss", "GptOssForCausalLM")
    L = c.num_layers
    local = set(spread_layers(L, c.local_attention_layers, period=2))
    d.update(intermediate_size=c.expert_intermediate_size, num_local_experts=c.num_experts, num_experts_per_tok=c.top_k,
             attention_bias=c.attention_bias == "all",
             layer_types=["sliding_attention" if i in local else "full_attention" for i in range(L)],
             sliding_window=c.local_attention_window if c.local_attention_layers else None)
    return d


FP4_LUT = np.array([+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
                     -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)


def mxfp4(T: Tensors, rel: str):
    """GPT-OSS MXFP4 experts (`{rel}_blocks` (E, R, G, 16) u8 + `{rel}_scales` (E, R, G) u8) -> float32
    in the x @ W orientation (E, G*32, R), as transformers dequantizes them (moepy.io.blockquant: ldexp of
    the FP4 value by the E8M0 exponent, exact for every scale byte): (the stack's shape, a function
    e -> expert e's (G*32, R) float32), dequantized one expert at a time as the layer is packed."""
    from ..io.blockquant import dequantize_mxfp4
    blocks = np.asarray(to_numpy(T.get(rel + "_blocks"))).astype(np.uint8, copy=False)
    scales = np.asarray(to_numpy(T.get(rel + "_scales"))).astype(np.uint8, copy=False)
    if blocks.ndim != 4 or tuple(scales.shape) != tuple(blocks.shape[:3]):
        dequantize_mxfp4(blocks, scales, "float32", name=T.prefix + rel)  # raises the CheckpointError
    E, R, G, B = blocks.shape
    return (E, G * B * 2, R), lambda e: dequantize_mxfp4(blocks[e], scales[e], "float32", name=T.prefix + rel)


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    E = int(first_of(c, "num_local_experts", "num_experts"))
    K = int(first_of(c, "num_experts_per_tok", "experts_per_token", default=4))
    T = Tensors(tensors, find_prefix(tensors, [f"layers.{i}.mlp."], "router.weight"))
    if T.has("experts.gate_up_proj") or T.has("experts.down_proj"):
        gu_src = source_array(T.get("experts.gate_up_proj"))  # (E, H, 2I), x @ W
        down_src = source_array(T.get("experts.down_proj"))  # (E, I, H)
        gu_e = lambda e: expert_array(gu_src[e], dtype)  # noqa: E731
        down_e = lambda e: expert_array(down_src[e], dtype)  # noqa: E731
        gu, down = gu_src.shape, down_src.shape
    elif T.has("experts.gate_up_proj_blocks"):
        gu, gu_e = mxfp4(T, "experts.gate_up_proj")  # shapes, and expert e dequantized
        down, down_e = mxfp4(T, "experts.down_proj")
    else:
        T.get("experts.gate_up_proj")  # raises the KeyError naming it
    if len(gu) != 3 or gu[0] != E or gu[2] % 2:
        raise ValueError(f"{T.prefix}experts.gate_up_proj: expected (E={E}, H, 2I), got shape {tuple(gu)}")
    if len(down) != 3 or down[0] != E:
        raise ValueError(f"down must be (E, H, I) with E = {E}, got {tuple(down)}")
    gub = as_f32(T.get("experts.gate_up_proj_bias"))
    # one expert at a time, transposed to nn.Linear orientation (gate / up interleaved in the columns)
    gu_e = last_expert(gu_e)  # gate and up of one expert: one read (one dequantization)
    experts = ExpertSource(E, lambda e: contig(gu_e(e)[:, 1::2].T), lambda e: contig(down_e(e).T),
                           lambda e: contig(gu_e(e)[:, 0::2].T), gate_bias=contig(gub[:, 0::2]),
                           up_bias=contig(gub[:, 1::2]), down_bias=as_f32(T.get("experts.down_proj_bias")),
                           activation="gpt_oss", alpha=float(first_of(c, "swiglu_alpha", default=1.702)),
                           limit=float(first_of(c, "swiglu_limit", default=7.0)), bf16=dtype == "bfloat16")
    return MoELayer(router(E, K), as_f32(T.get("router.weight")), experts, router_bias=as_f32(T.get("router.bias")),
                    dtype=dtype, family="gpt_oss")


def gpt_oss_20b() -> ModelConfig:
    """gpt-oss-20b (OpenAI, "gpt-oss-120b & gpt-oss-20b Model Card", Aug 2025, arXiv:2508.10925, Table 1):
    20.91B total, 3.61B active (active counts the unembedding, not the embedding); 32 experts top-4 with
    biases, attention sinks, banded (128) attention on every other layer; openai/gpt-oss-20b config.json."""
    return ModelConfig(name="gpt-oss-20b", family="gpt_oss", vocab_size=201088, hidden_size=2880, num_layers=24,
                       num_heads=64, num_kv_heads=8, head_dim=64, attention_bias="all", attention_sinks=True,
                       local_attention_layers=12, local_attention_window=128, num_experts=32, top_k=4,
                       expert_intermediate_size=2880, expert_bias=True, router_bias=True, max_context=131072)


def gpt_oss_120b() -> ModelConfig:
    """gpt-oss-120b (OpenAI model card, arXiv:2508.10925, Table 1): 116.83B total, 5.13B active (without the
    input embedding); 128 experts top-4, 36 layers; openai/gpt-oss-120b config.json."""
    return ModelConfig(name="gpt-oss-120b", family="gpt_oss", vocab_size=201088, hidden_size=2880, num_layers=36,
                       num_heads=64, num_kv_heads=8, head_dim=64, attention_bias="all", attention_sinks=True,
                       local_attention_layers=18, local_attention_window=128, num_experts=128, top_k=4,
                       expert_intermediate_size=2880, expert_bias=True, router_bias=True, max_context=131072)



def gguf_config(meta, arch, shapes) -> dict:
    """config.json of a llama.cpp gpt-oss."""
    d = common_config(meta, arch, shapes, "gpt_oss", "GptOssForCausalLM")
    d.update(num_local_experts=int(need(meta, arch, "expert_count")),
             intermediate_size=int(need(meta, arch, "expert_feed_forward_length")),
             sliding_window=int(key(meta, arch, "attention.sliding_window", 128) or 128),
             head_dim=int(key(meta, arch, "attention.key_length", 64)))
    return d

def decoder(d):
    """gpt-oss's decoder: biases on q, k, v, o, alternating sliding (layer_types) and full layers, attention sinks,
    YaRN RoPE on rotate-half."""
    from ..nn import spec as S
    L = S.cfg_int(d, "num_hidden_layers", lo=1)
    lt = S.layer_types(d, L) or tuple("sliding_attention" if i % 2 == 0 else "full_attention" for i in range(L))
    w = S.cfg_int(d, "sliding_window", 128, lo=1)
    bias = bool(d.get("attention_bias", True))
    return S.decoder(d, "gpt_oss", S.standard_layers(
        d, lambda i: S.gqa(d, default_theta=150000.0, qkv_bias=bias, o_bias=bias, sinks=True,
                           window=w if lt[i] == "sliding_attention" else 0)), norm_eps_default=1e-5)


FAMILY = Family(
    name="gpt_oss", order=120, router=router,
    model_types=('gpt_oss',),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block, decoder=decoder,
    presets={"gpt-oss-20b": gpt_oss_20b, "gpt-oss-120b": gpt_oss_120b},
    description='OpenAI, 2025',
    gguf=GGUFSpec(archs=("gpt-oss",), model_type="gpt_oss", config=gguf_config, router="router",
                  fused_interleaved=True, extra_names=GPT_OSS_NAMES),
)

"""Qwen3-MoE (Alibaba, 2025): 128 experts, softmax top-8, renormalised, no shared expert; QK-norm per head.

config.json model_type `qwen3_moe`; checkpoint names `layers.{i}.mlp.` (gate, experts).
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..routing.config import RouterConfig
from ._checkpoint import first_of, qwen_style_block
from ._config_json import Fields, read_common, dense_width, qwen_layers, write_common, write_qwen_layers
from .registry import Family
from ._gguf import GGUFSpec, common_config, key, need


def router(num_experts: int = 128, top_k: int = 8, norm_topk_prob: bool = True) -> RouterConfig:
    """Qwen3-MoE: as Qwen2-MoE; the released 30B-A3B and 235B-A22B set norm_topk_prob=True."""
    return RouterConfig(top_k=top_k, scoring="softmax", normalize=norm_topk_prob, num_experts=num_experts,
                        family="qwen3_moe")


def read_hf(d, mt):
    f = Fields(d, mt)
    kw = read_common(f)
    L = kw["num_layers"]
    step, mlo, has_dense = qwen_layers(f, L)
    E, k = f.req_int("num_experts", "num_local_experts"), f.req_int("num_experts_per_tok")
    f.used.add("num_local_experts")
    sw = int(f.opt("sliding_window", 0) or 0) if f.opt_bool("use_sliding_window", False) else 0
    kw.update(family="qwen3_moe", moe_every=step, mlp_only_layers=mlo,
              dense_intermediate_size=dense_width(f, "intermediate_size", 6144, has_dense), num_experts=E, top_k=k,
              expert_intermediate_size=f.req_int("moe_intermediate_size"), qk_norm="head",
              attention_bias="all" if f.opt_bool("attention_bias", False) else "none",
              local_attention_layers=L if sw else 0, local_attention_window=sw,
              router=router(E, k, norm_topk_prob=f.opt_bool("norm_topk_prob", False)))
    return kw, {"": f.extra()}


def write_hf(c: ModelConfig) -> dict:
    d = write_common(c, "qwen3_moe", "Qwen3MoeForCausalLM")
    write_qwen_layers(c, d)
    d.update(moe_intermediate_size=c.expert_intermediate_size, attention_bias=c.attention_bias == "all",
             use_sliding_window=c.local_attention_layers > 0)
    if c.local_attention_layers:
        d["sliding_window"] = c.local_attention_window
    return d


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    r = router(int(first_of(c, "num_experts", "num_local_experts")), int(first_of(c, "num_experts_per_tok")),
               bool(first_of(c, "norm_topk_prob", default=False)))
    return qwen_style_block(c, tensors, i, dtype, "qwen3_moe", r)


def qwen3_30b_a3b() -> ModelConfig:
    """Qwen3-30B-A3B (Qwen/Qwen3-30B-A3B model card, Apr 2025): 30.5B total, 3.3B activated, 29.9B non-embedding;
    128 experts top-8 (renormalised), no shared expert, q/k RMSNorm per head; its config.json."""
    return ModelConfig(name="qwen3-30b-a3b", family="qwen3_moe", vocab_size=151936, hidden_size=2048, num_layers=48,
                       num_heads=32, num_kv_heads=4, head_dim=128, qk_norm="head", dense_intermediate_size=6144,
                       num_experts=128, top_k=8, expert_intermediate_size=768, max_context=40960)


def qwen3_235b_a22b() -> ModelConfig:
    """Qwen3-235B-A22B (Qwen/Qwen3-235B-A22B model card, Apr 2025): 235B total, 22B activated, 234B non-embedding;
    128 experts top-8; its config.json."""
    return ModelConfig(name="qwen3-235b-a22b", family="qwen3_moe", vocab_size=151936, hidden_size=4096, num_layers=94,
                       num_heads=64, num_kv_heads=4, head_dim=128, qk_norm="head", dense_intermediate_size=12288,
                       num_experts=128, top_k=8, expert_intermediate_size=1536, max_context=40960)


def gguf_config(meta, arch, shapes) -> dict:
    """config.json of a llama.cpp qwen3moe (llama.cpp renormalises the top-k weights of every qwen3moe)."""
    d = common_config(meta, arch, shapes, "qwen3_moe", "Qwen3MoeForCausalLM")
    d.update(num_experts=int(need(meta, arch, "expert_count")),
             moe_intermediate_size=int(need(meta, arch, "expert_feed_forward_length")),
             intermediate_size=int(key(meta, arch, "feed_forward_length", 0) or 0) or None,
             norm_topk_prob=bool(key(meta, arch, "expert_weights_norm", True)),
             head_dim=int(key(meta, arch, "attention.key_length", d["hidden_size"] // d["num_attention_heads"])))
    return d


def decoder(d):
    """Qwen3-MoE's decoder: per-head q/k RMSNorm before RoPE, attention_bias on q, k, v and o, every layer sliding
    with use_sliding_window."""
    from ..nn import spec as S
    L = S.cfg_int(d, "num_hidden_layers", lo=1)
    win = S.sliding_windows(d, L, every_layer=True) if d.get("use_sliding_window") else (0,) * L
    bias = bool(d.get("attention_bias", False))
    eps = S.cfg_float(d, "rms_norm_eps", 1e-6)
    return S.decoder(d, "qwen3_moe", S.standard_layers(
        d, lambda i: S.gqa(d, qkv_bias=bias, o_bias=bias, qk_norm="head", qk_norm_eps=eps, window=win[i])))


FAMILY = Family(
    name="qwen3_moe", order=60, router=router,
    model_types=('qwen3_moe',),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block, decoder=decoder,
    presets={"qwen3-30b-a3b": qwen3_30b_a3b, "qwen3-235b-a22b": qwen3_235b_a22b},
    aliases={'qwen3-30b': 'qwen3-30b-a3b', 'qwen3-235b': 'qwen3-235b-a22b'},
    description='Alibaba Qwen, 2025',
    gguf=GGUFSpec(archs=("qwen3moe",), model_type="qwen3_moe", config=gguf_config),
)

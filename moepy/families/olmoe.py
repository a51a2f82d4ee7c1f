"""OLMoE (Allen AI, 2024): 64 experts, softmax top-8, not renormalised; QK-norm over the whole projections.

config.json model_type `olmoe`; checkpoint names `layers.{i}.mlp.` (gate, experts).
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..routing.config import RouterConfig
from ._checkpoint import first_of, qwen_style_block
from ._config_json import Fields, read_common, write_common
from .registry import Family
from ._gguf import GGUFSpec, common_config, key, need


def router(num_experts: int = 64, top_k: int = 8, norm_topk_prob: bool = False) -> RouterConfig:
    """OLMoE: softmax, top-k, no renormalisation in OLMoE-1B-7B."""
    return RouterConfig(top_k=top_k, scoring="softmax", normalize=norm_topk_prob, num_experts=num_experts,
                        family="olmoe")


def read_hf(d, mt):
    f = Fields(d, mt)
    kw = read_common(f)
    E, k = f.req_int("num_experts", "num_local_experts"), f.req_int("num_experts_per_tok")
    f.used.add("num_local_experts")
    kw.update(family="olmoe", num_experts=E, top_k=k, expert_intermediate_size=f.req_int("intermediate_size"),
              qk_norm="proj", attention_bias="all" if f.opt_bool("attention_bias", False) else "none",
              router=router(E, k, norm_topk_prob=f.opt_bool("norm_topk_prob", False)))
    return kw, {"": f.extra()}


def write_hf(c: ModelConfig) -> dict:
    d = write_common(c, "olmoe", "OlmoeForCausalLM")
    d.update(intermediate_size=c.expert_intermediate_size, num_experts=c.num_experts, num_experts_per_tok=c.top_k,
             norm_topk_prob=c.router.normalize, attention_bias=c.attention_bias == "all")
    return d


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    r = router(int(first_of(c, "num_experts", "num_local_experts")), int(first_of(c, "num_experts_per_tok")),
               bool(first_of(c, "norm_topk_prob", default=False)))
    return qwen_style_block(c, tensors, i, dtype, "olmoe", r)


def olmoe_1b_7b() -> ModelConfig:
    """OLMoE-1B-7B (Muennighoff et al. 2024, arXiv:2409.02060): 6.9B total, 1.3B active; 64 experts top-8,
    q/k norms over the whole projections; allenai/OLMoE-1B-7B-0924 config.json."""
    return ModelConfig(name="olmoe-1b-7b", family="olmoe", vocab_size=50304, hidden_size=2048, num_layers=16,
                       num_heads=16, qk_norm="proj", num_experts=64, top_k=8, expert_intermediate_size=1024,
                       max_context=4096)


def gguf_config(meta, arch, shapes) -> dict:
    """config.json of a llama.cpp olmoe (expert width: feed_forward_length)."""
    d = common_config(meta, arch, shapes, "olmoe", "OlmoeForCausalLM")
    d.update(num_experts=int(need(meta, arch, "expert_count")),
             intermediate_size=int(key(meta, arch, "expert_feed_forward_length", None)
                                   or need(meta, arch, "feed_forward_length")),
             norm_topk_prob=bool(key(meta, arch, "expert_weights_norm", False)))
    return d


def decoder(d):
    """OLMoE's decoder: q/k RMSNorm over the whole projections, then clip_qkv, then RoPE."""
    from ..nn import spec as S
    bias = bool(d.get("attention_bias", False))
    eps = S.cfg_float(d, "rms_norm_eps", 1e-5)
    clip = d.get("clip_qkv")
    clip = None if clip is None else S.cfg_float(d, "clip_qkv", 0.0)
    return S.decoder(d, "olmoe", S.standard_layers(
        d, lambda i: S.gqa(d, qkv_bias=bias, o_bias=bias, qk_norm="proj", qk_norm_eps=eps, clip_qkv=clip)),
        norm_eps_default=1e-5, max_pos_default=4096)


FAMILY = Family(
    name="olmoe", order=70, router=router,
    model_types=('olmoe',),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block, decoder=decoder,
    presets={"olmoe-1b-7b": olmoe_1b_7b},
    aliases={'olmoe': 'olmoe-1b-7b'},
    description='Allen AI, 2024',
    gguf=GGUFSpec(archs=("olmoe",), model_type="olmoe", config=gguf_config),
)

"""DeepSeekMoE (DeepSeek-AI, 2024): fine-grained experts plus always-active shared experts, softmax top-k.

config.json model_type `deepseek` (the remote-code DeepseekForCausalLM of deepseek-moe-16b); transformers has no
model of this family. Its attention, norms and dense MLPs are Llama's; checkpoint names `layers.{i}.mlp.` (gate,
experts.{e}.gate_proj / up_proj / down_proj, shared_experts) as in DeepSeek-V2.
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..routing.config import RouterConfig
from ._checkpoint import deepseek_style_block, first_of
from ._config_json import Fields, read_deepseek_common, write_common, write_deepseek_common
from .registry import Family


def router(num_experts: int = 64, top_k: int = 6, norm_topk_prob: bool = False) -> RouterConfig:
    """DeepSeekMoE: softmax over all experts, top-k, renormalised only if norm_topk_prob (released: False)."""
    return RouterConfig(top_k=top_k, scoring="softmax", normalize=norm_topk_prob, num_experts=num_experts,
                        family="deepseek")


def read_hf(d, mt):
    f = Fields(d, mt)
    kw = read_deepseek_common(f, mt, "deepseek")
    if f.opt("scoring_func", "softmax") != "softmax":
        raise ValueError(f"{mt} config.json: scoring_func={d.get('scoring_func')!r} is not supported (DeepSeekMoE: softmax)")
    kw["router"] = RouterConfig(top_k=kw["top_k"], scoring="softmax", normalize=f.opt_bool("norm_topk_prob", False),
                                num_experts=kw["num_experts"], family="deepseek")
    return kw, {"": f.extra()}


def write_hf(c: ModelConfig) -> dict:
    d = write_common(c, "deepseek", "DeepseekForCausalLM", head_dim=False)
    write_deepseek_common(c, d)
    d.update(scoring_func="softmax", norm_topk_prob=c.router.normalize)
    return d


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    """Layer i's DeepSeekMoE block: softmax over all n_routed_experts, top num_experts_per_tok, renormalised only
    if norm_topk_prob, no scaling factor; plus the n_shared_experts shared experts as one MLP."""
    scoring = first_of(c, "scoring_func", default="softmax")
    if scoring != "softmax":
        raise ValueError(f"deepseek: scoring_func={scoring!r} is not supported (DeepSeekMoE: softmax)")
    r = router(int(first_of(c, "n_routed_experts", "num_experts", "num_local_experts")),
               int(first_of(c, "num_experts_per_tok")), bool(first_of(c, "norm_topk_prob", default=False)))
    return deepseek_style_block(c, tensors, i, dtype, "deepseek", r, selection_bias=False)


def decoder(d):
    """DeepSeekMoE's decoder: Llama attention (MHA/GQA, biases on q/k/v/o with attention_bias, rotate-half RoPE,
    theta default 10000), RMSNorm (eps default 1e-6), the first first_k_dense_replace layers dense
    (intermediate_size), the others MoE."""
    from ..nn import spec as S
    bias = bool(d.get("attention_bias", False))
    return S.decoder(d, "deepseek", S.standard_layers(
        d, lambda i: S.gqa(d, default_theta=10000.0, qkv_bias=bias, o_bias=bias)))


def deepseek_moe_16b() -> ModelConfig:
    """DeepSeekMoE-16B (Dai et al. 2024, arXiv:2401.06066): 16.4B total, 2.8B activated; 64 fine-grained
    experts (top-6) + 2 shared, first layer dense; deepseek-ai/deepseek-moe-16b-base config.json."""
    return ModelConfig(name="deepseek-moe-16b", family="deepseek", vocab_size=102400, hidden_size=2048, num_layers=28,
                       num_heads=16, first_dense_layers=1, dense_intermediate_size=10944, num_experts=64, top_k=6,
                       expert_intermediate_size=1408, num_shared_experts=2, shared_intermediate_size=2816,
                       max_context=4096)


FAMILY = Family(
    name="deepseek", order=20, router=router,
    model_types=('deepseek',),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block, decoder=decoder,
    presets={"deepseek-moe-16b": deepseek_moe_16b},
    aliases={'deepseekmoe-16b': 'deepseek-moe-16b'},
    description='DeepSeek-AI, 2024',
)

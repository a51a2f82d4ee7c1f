"""DeepSeekMoE (DeepSeek-AI, 2024): fine-grained experts plus always-active shared experts, softmax top-k.

config.json model_type `deepseek` (the remote-code DeepseekForCausalLM of deepseek-moe-16b); transformers has no
block of this family, so moepy reads its config.json and presets but no checkpoint.
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..routing.config import RouterConfig
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
    presets={"deepseek-moe-16b": deepseek_moe_16b},
    aliases={'deepseekmoe-16b': 'deepseek-moe-16b'},
    description='DeepSeek-AI, 2024',
)

"""GShard (Google, 2020): top-2 softmax gating with an expert capacity, first choices served before second
choices. Preset only.
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..routing.config import RouterConfig
from .registry import Family


def router(num_experts: int = 2048, capacity_factor: float = 2.0) -> RouterConfig:
    """GShard: softmax top-2 with the two weights renormalised, capacity 2T/E * factor, first choices
    served before second choices. (GShard's random dispatch of the second expert is not modelled:
    the second expert is always kept while capacity allows.)"""
    return RouterConfig(top_k=2, scoring="softmax", normalize=True, num_experts=num_experts,
                        capacity_factor=capacity_factor, family="gshard")


def default_router(num_experts: int, top_k: int) -> RouterConfig:
    return router(num_experts)


def gshard_600b() -> ModelConfig:
    """GShard M4 "MoE(2048E, 36L)" (Lepikhin et al. 2020, arXiv:2006.16668, Table 1: 600B weights): Transformer
    encoder-decoder of 36 layers (18 + 18), d 1024, 16 heads, ReLU FFN 8192, every other FFN a MoE of 2048
    experts, top-2 with capacity factor 2. Approximated: the 64k shared vocabulary and tied embeddings are
    assumed; GShard's random second-expert dispatch is not modelled; cross-attention as for Switch."""
    return ModelConfig(name="gshard-600b", family="gshard", vocab_size=64000, hidden_size=1024, num_layers=36,
                       encoder_layers=18, num_heads=16, moe_every=2, dense_intermediate_size=8192, dense_glu=False,
                       num_experts=2048, top_k=2, expert_intermediate_size=8192, expert_glu=False,
                       tie_embeddings=True, activation="relu", router=router(2048, 2.0))


FAMILY = Family(
    name="gshard", order=140, router=router,
    default_router=default_router,
    presets={"gshard-600b": gshard_600b},
    aliases={'gshard': 'gshard-600b'},
    description='Google, 2020',
)

"""Snowflake Arctic (2024): a dense transformer with a residual 128-expert top-2 MoE in every layer. Preset only
(its remote-code checkpoints have no transformers implementation).
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..routing.config import RouterConfig
from .registry import Family


def router(num_experts: int = 128, top_k: int = 2) -> RouterConfig:
    """Arctic: Mixtral's routing (softmax, top-2, renormalised)."""
    return RouterConfig(top_k=top_k, scoring="softmax", normalize=True, num_experts=num_experts, family="arctic")


def arctic() -> ModelConfig:
    """Snowflake Arctic (Snowflake, "Snowflake Arctic: The Best LLM for Enterprise AI", Apr 2024): a dense-MoE
    hybrid, "10B dense + 128 x 3.66B MoE MLP, 480B total and 17B active"; Snowflake/snowflake-arctic-base
    config.json: 35 layers, d 7168, 56 heads / 8 KV, 128 experts top-2 of width 4864, and in every layer a residual
    SwiGLU MLP of width hidden_size (7168, with its own norm) beside the MoE."""
    return ModelConfig(name="arctic", family="arctic", vocab_size=32000, hidden_size=7168, num_layers=35, num_heads=56,
                       num_kv_heads=8, num_experts=128, top_k=2, expert_intermediate_size=4864,
                       residual_intermediate_size=7168, max_context=4096)


FAMILY = Family(
    name="arctic", order=100, router=router,
    presets={"arctic": arctic},
    aliases={'snowflake-arctic': 'arctic'},
    description='Snowflake, 2024',
)

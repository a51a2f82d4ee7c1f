"""Grok-1 (xAI, 2024): 8 experts, softmax top-2 (weights as the softmax gives them). Preset only: no Hugging Face
implementation exists.
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..routing.config import RouterConfig
from .registry import Family


def router(num_experts: int = 8, top_k: int = 2) -> RouterConfig:
    """Grok-1: softmax over the experts, top-k, not renormalised."""
    return RouterConfig(top_k=top_k, scoring="softmax", num_experts=num_experts, family="grok")


def grok_1() -> ModelConfig:
    """Grok-1 (xAI, "Open Release of Grok-1", Mar 2024): 314B total, "25% of the weights active on a given
    token" (no exact active figure published). Hyper-parameters from xai-org/grok-1 run.py / model.py: 64 layers,
    d_model 6144, 48 query / 8 KV heads of 128, 8 experts top-2 (softmax, no renormalisation), expert width
    int(8 * 6144) * 2 // 3 = 32768 (GeGLU), vocabulary 131072, embedding shared with the output. Approximated:
    Grok-1's extra post-attention/post-MLP norms (4 per layer) are counted as 2."""
    return ModelConfig(name="grok-1", family="grok", vocab_size=131072, hidden_size=6144, num_layers=64, num_heads=48,
                       num_kv_heads=8, head_dim=128, num_experts=8, top_k=2, expert_intermediate_size=32768,
                       tie_embeddings=True, activation="gelu", max_context=8192)


FAMILY = Family(
    name="grok", order=90, router=router,
    presets={"grok-1": grok_1},
    aliases={'grok': 'grok-1'},
    description='xAI, 2024',
)

"""GLaM (Google, 2021): 64 experts on every other layer, top-2 softmax gating, renormalised. Preset only.
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..routing.config import RouterConfig
from .registry import Family


def router(num_experts: int = 64, top_k: int = 2) -> RouterConfig:
    """GLaM: softmax over the experts, top-2, renormalised."""
    return RouterConfig(top_k=top_k, scoring="softmax", normalize=True, num_experts=num_experts, family="glam")


def glam_64b_64e() -> ModelConfig:
    """GLaM (64B/64E) (Du et al. 2022, arXiv:2112.06905, Table 4; Google AI blog Dec 2021): 1.2T total, 96.6B
    activated; decoder-only, 64 layers, d 8192, 128 heads of 128, every other layer a MoE of 64 experts (top-2)
    with a plain GELU FFN of 32768; the dense layers use a gated (GLU) FFN. Approximated: the 256k vocabulary is
    tied; per-layer relative position biases are not counted; capacity limits are not modelled."""
    return ModelConfig(name="glam-64b-64e", family="glam", vocab_size=256000, hidden_size=8192, num_layers=64,
                       num_heads=128, head_dim=128, moe_every=2, dense_intermediate_size=32768, num_experts=64,
                       top_k=2, expert_intermediate_size=32768, expert_glu=False, tie_embeddings=True,
                       activation="gelu", max_context=1024)


FAMILY = Family(
    name="glam", order=150, router=router,
    presets={"glam-64b-64e": glam_64b_64e},
    aliases={'glam': 'glam-64b-64e'},
    description='Google, 2021',
)

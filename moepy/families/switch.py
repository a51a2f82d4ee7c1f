"""Switch Transformer (Google, 2021): top-1 softmax routing with an expert capacity; tokens past it are dropped
and pass through the residual. An encoder-decoder: moepy's presets count it as one stack (see the preset
docstrings); its MoE blocks are read from `switch_transformers` checkpoints.

Checkpoint names `{encoder|decoder}.block.{i}.layer.{1|2}.mlp.` (router.classifier, experts.expert_{e}.wi/wo).
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..moe.weights import ExpertWeights
from ..routing.config import RouterConfig
from ._checkpoint import first_of, as_f32, expert_array, Tensors, find_prefix, activation_name
from .._limits import MAX_SIZE
from ._config_json import Fields
from .registry import Family


def router(num_experts: int = 128, expert_capacity: Optional[int] = 64,
           capacity_factor: Optional[float] = None) -> RouterConfig:
    """Switch Transformer: softmax, top-1, weight = the top probability; tokens past the expert
    capacity (absolute, HF's expert_capacity, or from a capacity factor) are dropped in sequence order."""
    if capacity_factor is not None:
        expert_capacity = None
    return RouterConfig(top_k=1, scoring="softmax", num_experts=num_experts, capacity=expert_capacity,
                        capacity_factor=capacity_factor, family="switch")


def default_router(num_experts: int, top_k: int) -> RouterConfig:
    if top_k != 1:
        raise ValueError(f"Switch routes each token to one expert; got top_k={top_k}")
    return router(num_experts)


def moe_layer_indices(d: dict, stack: str = "encoder") -> List[int]:
    """The sparse blocks of one stack ("encoder" or "decoder"): every (L / num_sparse)-th block, from block 1."""
    if stack not in ("encoder", "decoder"):
        raise ValueError(f"stack must be 'encoder' or 'decoder', got {stack!r}")
    f = Fields(d, "switch_transformers")
    if stack == "encoder":
        L = f.opt_int("num_layers", 12)
        n = f.opt_int("num_sparse_encoder_layers", 3)
    else:
        L = f.opt_int("num_decoder_layers", f.opt_int("num_layers", 12))
        n = f.opt_int("num_sparse_decoder_layers", 3)
    for key, v in (("num_layers", L), ("num_sparse_layers", n)):
        if not 0 <= v <= MAX_SIZE["num_layers"]:
            raise ValueError(f"switch_transformers config.json: {key}={v:,} is out of range (0 .. "
                             f"{MAX_SIZE['num_layers']:,})")
    step = L // n if n > 0 else L
    if step <= 0:
        return []
    return [i for i in range(L) if i % step == 1 or step == 1]


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "encoder") -> MoELayer:
    E = int(first_of(c, "num_experts", default=8))
    ff = 1 if stack == "encoder" else 2
    T = Tensors(tensors, find_prefix(tensors, [f"{stack}.block.{i}.layer.{ff}.mlp."], "router.classifier.weight"))
    act = activation_name(first_of(c, "dense_act_fn", default="relu"))
    up = np.stack([expert_array(T.get(f"experts.expert_{e}.wi.weight"), dtype) for e in range(E)])
    down = np.stack([expert_array(T.get(f"experts.expert_{e}.wo.weight"), dtype) for e in range(E)])
    experts = ExpertWeights(up=up, down=down, activation=act)
    bias = as_f32(T.get("router.classifier.bias")) if c.get("router_bias") else None
    return MoELayer(router(E, int(first_of(c, "expert_capacity", default=64))), as_f32(T.get("router.classifier.weight")),
                    experts, router_bias=bias, dtype=dtype, family="switch")


def switch_base_128() -> ModelConfig:
    """Switch-Base-128 (Fedus et al. 2021, arXiv:2101.03961, Table 9: "Switch-Base, 7B"; google/switch-base-128
    config.json): T5-Base encoder-decoder (12 + 12 layers, d 768, 12 heads of 64, ReLU FFN 3072), every other FFN
    a Switch layer of 128 experts, top-1, capacity 64 tokens (HF default). Approximated: the encoder-decoder is
    one stack of 24 layers whose 12 decoder layers carry a cross-attention block; T5's relative position biases
    are not counted; "active" counts every layer (an encoder token and a decoder token together)."""
    return ModelConfig(name="switch-base-128", family="switch", vocab_size=32128, hidden_size=768, num_layers=24,
                       encoder_layers=12, num_heads=12, moe_every=2, dense_intermediate_size=3072, dense_glu=False,
                       num_experts=128, top_k=1, expert_intermediate_size=3072, expert_glu=False, tie_embeddings=True,
                       activation="relu", max_context=512)


def switch_c_2048() -> ModelConfig:
    """Switch-C (Fedus et al. 2021, arXiv:2101.03961, Table 9: 1571B parameters, "1.6T"): 15 + 15 layers,
    d 2080, 32 heads of 64, 2048 experts of width 6144 in every layer, top-1; google/switch-c-2048 config.json.
    Approximated as Switch-Base-128 is (one stack with cross-attention on the decoder half)."""
    return ModelConfig(name="switch-c-2048", family="switch", vocab_size=32128, hidden_size=2080, num_layers=30,
                       encoder_layers=15, num_heads=32, head_dim=64, num_experts=2048, top_k=1,
                       expert_intermediate_size=6144, expert_glu=False, tie_embeddings=True, activation="relu",
                       router=router(2048), max_context=512)


FAMILY = Family(
    name="switch", order=130, router=router,
    default_router=default_router,
    model_types=('switch_transformers',),
    moe_block=moe_block,
    moe_layer_indices=moe_layer_indices,
    presets={"switch-base-128": switch_base_128, "switch-c-2048": switch_c_2048},
    aliases={'switch-base': 'switch-base-128', 'switch-c': 'switch-c-2048'},
    description='Google, 2021',
)

"""ModelConfig's field vocabulary and bounds: the allowed values of its string fields and the size limits.

Sizes are bounded so that a config.json with an absurd value (num_hidden_layers=10**9) is refused at once, with
the field named, before anything loops over it or allocates for it.
"""
from __future__ import annotations

import numbers

ATTENTION_BIASES = ("none", "qkv", "all")
QK_NORMS = ("none", "head", "proj", "l2")
PARTS = ("embedding", "lm_head", "attention", "norms", "dense_mlp", "routed_experts", "shared_experts", "router",
         "vision", "mtp", "mamba", "moe_latent")
# per-layer kinds of a hybrid design (ModelConfig.layer_mixers / layer_ffns): the token mixer of each layer
# (self-attention, a Mamba / Mamba-2 state-space mixer, or none: Nemotron-H's MoE-only and MLP-only layers) and its
# feed-forward block (an MoE block, a dense MLP, or none: Nemotron-H's mixer-only layers)
MIXERS = ("attention", "mamba", "mamba2", "none")
FFNS = ("moe", "dense", "none")
from .._limits import MAX_PARAMS, MAX_SIZE  # noqa: F401,E402  (re-exported)


def is_int(v) -> bool:
    """An integer that is not a bool (True is an int to Python, never a size to us)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)

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
# upper bounds of the size fields (far above any released model: DeepSeek-V3 has 61 layers, 129,280 tokens,
# Switch-C 2048 experts; expert ids are int32 in the kernels)
MAX_SIZE = {"vocab_size": 1 << 24, "hidden_size": 1 << 17, "num_layers": 4096, "num_heads": 4096,
            "num_kv_heads": 4096, "head_dim": 1 << 14, "num_experts": 1 << 16, "top_k": 1 << 12,
            "expert_intermediate_size": 1 << 20, "dense_intermediate_size": 1 << 20,
            "shared_intermediate_size": 1 << 21, "residual_intermediate_size": 1 << 20,
            "num_shared_experts": 1 << 12, "moe_latent_size": 1 << 17, "q_lora_rank": 1 << 16, "kv_lora_rank": 1 << 16,
            "qk_nope_head_dim": 1 << 14, "qk_rope_head_dim": 1 << 14, "v_head_dim": 1 << 14,
            "local_attention_window": 1 << 30, "max_context": 1 << 31, "mtp_layers": 64}
MAX_PARAMS = 1 << 50  # a model's parameter count (1e15); DeepSeek-V3 has 6.7e11


def is_int(v) -> bool:
    """An integer that is not a bool (True is an int to Python, never a size to us)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)

"""Tiny transformers 5.23 MoE causal LMs, seeded, saved with save_pretrained in small shards."""
import functools
import tempfile

import numpy as np
import torch

H, I, E, K, L, V = 32, 16, 4, 2, 2, 64


def _config(family: str):
    import transformers as tf
    common = dict(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=4, num_key_value_heads=2,
                  num_experts_per_tok=K, max_position_embeddings=64, eos_token_id=None, pad_token_id=None,
                  bos_token_id=None)
    if family == "olmoe":
        return tf.OlmoeConfig(intermediate_size=I, num_experts=E, **{**common, "num_key_value_heads": 4})
    if family == "qwen2_moe":
        return tf.Qwen2MoeConfig(intermediate_size=48, moe_intermediate_size=I, shared_expert_intermediate_size=32,
                                 num_experts=E, **common)
    if family == "qwen3_moe":
        return tf.Qwen3MoeConfig(intermediate_size=48, moe_intermediate_size=I, num_experts=E, head_dim=8,
                                 norm_topk_prob=True, **common)
    if family == "mixtral":
        return tf.MixtralConfig(intermediate_size=I, num_local_experts=E, **common)
    raise ValueError(family)


def _model_class(family):
    import transformers as tf
    return {"olmoe": tf.OlmoeForCausalLM, "qwen2_moe": tf.Qwen2MoeForCausalLM, "qwen3_moe": tf.Qwen3MoeForCausalLM,
            "mixtral": tf.MixtralForCausalLM}[family]


@functools.lru_cache(maxsize=None)
def saved_model(family: str, dtype: str = "float32", shard: str = "12KB"):
    """(directory, torch model in float32 with the saved weights) of a tiny seeded model saved sharded."""
    torch.manual_seed(7)
    model = _model_class(family)(_config(family)).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or "layernorm" in n:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.2)
    d = tempfile.mkdtemp(prefix=f"moepy_io_{family}_{dtype}_")
    if dtype == "bfloat16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(d, max_shard_size=shard)
    model = model.float().eval()
    return d, model


def moe_block_output(model, layer: int, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        mlp = model.model.layers[layer].mlp
        y = mlp(torch.from_numpy(x)[None])
        if isinstance(y, tuple):
            y = y[0]
        return y[0].numpy()

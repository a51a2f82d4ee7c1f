"""Test support: tiny, seeded transformers decoders of every family, saved with save_pretrained (safetensors).

Not a test module. ``make_model(name)`` builds one of the CONFIGS below (a small config of the family that
exercises its attention options), fills every parameter with a seeded normal (norm weights around 1), saves it
to a cached temporary directory and returns (torch model in eval mode, directory, config dict). References use
attn_implementation="eager" (sdpa is not bit-equal to eager).
"""
from __future__ import annotations

import copy
import functools
import os
import tempfile

import numpy as np
import torch

from families import hf_blocks as hb

H, F, E, K = 32, 16, 4, 2


def _strip(d):
    return {k: v for k, v in d.items() if k not in ("architectures", "torch_dtype")}


def _mixtral():
    d = hb._cfg_mixtral(H, F, E, K, 3)
    d.update(sliding_window=5, head_dim=12, num_attention_heads=4, num_key_value_heads=2)  # odd head dim, sliding
    return d


def _mixtral_full():
    return hb._cfg_mixtral(H, F, E, K, 2)


def _mixtral_dynamic():
    d = hb._cfg_mixtral(H, F, E, K, 2)
    d.update(max_position_embeddings=8, head_dim=8, rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    return d


def _qwen3_linear():
    d = hb._cfg_qwen3_moe(H, F, E, K, 2)
    d.update(rope_scaling={"rope_type": "linear", "factor": 4.0}, tie_word_embeddings=True)
    return d


def _qwen2():
    d = hb._cfg_qwen2_moe(H, F, E, K, 4)
    d.update(mlp_only_layers=[1], decoder_sparse_step=1, norm_topk_prob=False)
    return d


def _qwen2_sliding():
    d = hb._cfg_qwen2_moe(H, F, E, K, 3)
    d.update(use_sliding_window=True, sliding_window=4, max_window_layers=2)
    return d


def _qwen3():
    d = hb._cfg_qwen3_moe(H, F, E, K, 3)
    d.update(head_dim=10, decoder_sparse_step=2, attention_bias=True)
    return d


def _olmoe():
    d = hb._cfg_olmoe(H, F, E, K, 2)
    d.update(clip_qkv=1.5, attention_bias=False)
    return d


def _dbrx():
    d = hb._cfg_dbrx(H, F, E, K, 2)
    d["attn_config"]["clip_qkv"] = 2.0
    d["rope_theta"] = d["attn_config"]["rope_theta"]  # transformers reads the top level (moepy: attn_config)
    return d


def _deepseek_v2_lite():
    d = hb._cfg_deepseek(2, H, F, E, K, 3)
    d.update(q_lora_rank=None, rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32,
                                             "beta_fast": 32, "beta_slow": 1, "mscale": 0.707,
                                             "mscale_all_dim": 0.707})
    return d


def _deepseek_v2():
    return hb._cfg_deepseek(2, H, F, E, K, 3)  # q_lora_rank 16: DeepSeek-V2 proper


def _deepseek_v3():
    d = hb._cfg_deepseek(3, H, F, 8, K, 3)  # 4 groups of 2 experts
    d.update(rope_scaling={"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 16,
                           "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})
    return d


def _deepseek_v3_no_interleave():
    d = hb._cfg_deepseek(3, H, F, E, K, 2)
    d.update(rope_interleave=False, q_lora_rank=None, n_group=2, topk_group=1)
    return d


def _llama4():
    d = hb._cfg_llama4_text(H, F, E, K, 4)
    d.update(attention_chunk_size=6, interleave_moe_layer_step=2, floor_scale=4, attn_scale=0.5,
             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 16})
    return d


def _gpt_oss():
    d = hb._cfg_gpt_oss(H, F, E, K, 3)
    d.update(sliding_window=4, layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    return d


CONFIGS = {
    "mixtral": _mixtral, "mixtral_full": _mixtral_full, "qwen2_moe": _qwen2, "qwen2_moe_sliding": _qwen2_sliding,
    "mixtral_dynamic": _mixtral_dynamic, "qwen3_moe_linear_tied": _qwen3_linear, "qwen3_moe": _qwen3, "olmoe": _olmoe, "dbrx": _dbrx, "deepseek_v2_lite": _deepseek_v2_lite,
    "deepseek_v2": _deepseek_v2, "deepseek_v3": _deepseek_v3, "deepseek_v3_rotate_half": _deepseek_v3_no_interleave,
    "llama4": _llama4, "gpt_oss": _gpt_oss,
}

_DIR = tempfile.mkdtemp(prefix="moepy-hf-models-")


def build(d: dict, seed: int = 0):
    """The transformers model of config dict d (eager attention) with seeded weights."""
    from transformers import AutoConfig, AutoModelForCausalLM
    d = _strip(copy.deepcopy(d))
    mt = d.pop("model_type")
    cfg = AutoConfig.for_model(mt, **d)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight") or name.endswith(("norm_1.weight", "norm_2.weight", "norm_f.weight")):
                p.copy_(1.0 + 0.1 * r)
            elif "embed" in name or name.endswith("wte.weight"):
                p.copy_(r)
            else:
                p.copy_(r * (0.35 if p.ndim > 1 else 0.1) / max(1.0, p.shape[-1] / 16) ** 0.5)
    return model.eval()


@functools.lru_cache(maxsize=None)
def make_model(name: str, seed: int = 0):
    """(torch model, saved directory, config dict) of CONFIGS[name]."""
    d = CONFIGS[name]()
    model = build(d, seed)
    path = os.path.join(_DIR, f"{name}-{seed}")
    model.save_pretrained(path)
    return model, path, d


def hf_logits(model, ids: np.ndarray, attention_mask=None) -> np.ndarray:
    """transformers' logits (B, T, V) float32 for ids (B, T)."""
    with torch.no_grad():
        kw = {} if attention_mask is None else {"attention_mask": torch.from_numpy(np.asarray(attention_mask))}
        return model(torch.from_numpy(np.asarray(ids, np.int64)), **kw).logits.float().numpy()


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    """max |a - ref| / max |ref|."""
    return float(np.abs(a - ref).max() / np.abs(ref).max())

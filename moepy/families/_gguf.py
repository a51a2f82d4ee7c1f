"""GGUF (llama.cpp) files of a family: its architecture names, tensor names and metadata keys, as the family
modules declare them (Family.gguf) and moepy.io.open_gguf reads them.

llama.cpp's converter (convert_hf_to_gguf.py) stacks each layer's experts into `blk.{i}.ffn_{gate,up,down}_exps`
((E, I, H) / (E, H, I) in NumPy order: the nn.Linear orientation per expert), names the router
`blk.{i}.ffn_gate_inp`, the shared expert `ffn_{gate,up,down}_shexp` (Qwen2-MoE's gate `ffn_gate_inp_shexp`),
DeepSeek-V3's selection bias `exp_probs_b`, and writes the config.json fields under `{arch}.` keys. A GGUFSpec
says, for one family, which HF names those become and which config.json a file's metadata gives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

# GGUF names shared by every architecture read here -> Hugging Face names ({i}: the block)
COMMON_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.post_attention_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.attn_q.bias": "model.layers.{i}.self_attn.q_proj.bias",
    "blk.{i}.attn_k.bias": "model.layers.{i}.self_attn.k_proj.bias",
    "blk.{i}.attn_v.bias": "model.layers.{i}.self_attn.v_proj.bias",
    "blk.{i}.attn_output.bias": "model.layers.{i}.self_attn.o_proj.bias",
    "blk.{i}.attn_q_norm.weight": "model.layers.{i}.self_attn.q_norm.weight",
    "blk.{i}.attn_k_norm.weight": "model.layers.{i}.self_attn.k_norm.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
}
MLA_NAMES = {
    "blk.{i}.attn_q_a.weight": "model.layers.{i}.self_attn.q_a_proj.weight",
    "blk.{i}.attn_q_a_norm.weight": "model.layers.{i}.self_attn.q_a_layernorm.weight",
    "blk.{i}.attn_q_b.weight": "model.layers.{i}.self_attn.q_b_proj.weight",
    "blk.{i}.attn_kv_a_mqa.weight": "model.layers.{i}.self_attn.kv_a_proj_with_mqa.weight",
    "blk.{i}.attn_kv_a_norm.weight": "model.layers.{i}.self_attn.kv_a_layernorm.weight",
    "blk.{i}.attn_kv_b.weight": "model.layers.{i}.self_attn.kv_b_proj.weight",
}
GPT_OSS_NAMES = {
    "blk.{i}.attn_sinks.weight": "model.layers.{i}.self_attn.sinks",
}


@dataclass(frozen=True)
class GGUFSpec:
    """How one family's GGUF files map to its Hugging Face names and config.json.

    archs: `general.architecture` values; accepts(meta, arch): whether a file of that architecture is this
    family's (Mixtral is llama with experts; deepseek2 holds V2 and V3). moe: the HF MoE block under
    `model.layers.{i}.` ("mlp" or "block_sparse_moe"), router: its router's name there ("gate" or "router"),
    experts: the per-expert HF names of gate/up/down, shared: the shared expert's name (None: none).
    fused_interleaved: gpt-oss's fused experts (gate and up interleaved in one (E, H, 2I) tensor, with biases).
    permute_qk: llama's converter permuted q/k rows for its RoPE; undone on read.
    config(meta, arch, shapes) -> config.json dict from the metadata (`meta` key -> value; shapes: tensor
    GGUF name -> NumPy shape). extra_names: more GGUF -> HF names."""

    archs: Tuple[str, ...]
    model_type: str
    config: Callable[[Mapping, str, Mapping], dict]
    moe: str = "mlp"
    router: str = "gate"
    experts: Tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj")
    shared: Optional[str] = None
    fused_interleaved: bool = False
    permute_qk: bool = False
    accepts: Callable[[Mapping, str], bool] = lambda meta, arch: True
    extra_names: Mapping[str, str] = field(default_factory=dict)

    def names(self) -> Dict[str, str]:
        """GGUF name pattern -> HF name pattern for everything but the stacked experts."""
        m = dict(COMMON_NAMES)
        p = f"model.layers.{{i}}.{self.moe}."
        m["blk.{i}.ffn_gate_inp.weight"] = p + f"{self.router}.weight"
        m["blk.{i}.ffn_gate_inp.bias"] = p + f"{self.router}.bias"
        m["blk.{i}.exp_probs_b.bias"] = p + "gate.e_score_correction_bias"
        if self.shared:
            for g, h in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
                m[f"blk.{{i}}.ffn_{g}_shexp.weight"] = p + f"{self.shared}.{h}.weight"
            m["blk.{i}.ffn_gate_inp_shexp.weight"] = p + "shared_expert_gate.weight"
        m.update(self.extra_names)
        return m


def key(meta: Mapping, arch: str, name: str, default: Any = None):
    """meta[f"{arch}.{name}"] (a one-element array read as its element), or default."""
    v = meta.get(f"{arch}.{name}", default)
    if isinstance(v, (list, tuple)):
        if not v:
            return default
        if any(x != v[0] for x in v):
            raise ValueError(f"GGUF {arch}.{name}: per-layer values {list(v)[:8]} are not supported")
        v = v[0]
    return v


def need(meta: Mapping, arch: str, name: str):
    v = key(meta, arch, name)
    if v is None:
        raise ValueError(f"GGUF metadata has no {arch}.{name}")
    return v


def common_config(meta: Mapping, arch: str, shapes: Mapping, model_type: str, arch_class: str) -> dict:
    """The config.json fields every family shares, from `{arch}.` keys (vocab from token_embd's shape)."""
    H = int(need(meta, arch, "embedding_length"))
    heads = int(need(meta, arch, "attention.head_count"))
    vocab = meta.get(f"{arch}.vocab_size")
    if vocab is None:
        tok = meta.get("tokenizer.ggml.tokens")
        vocab = len(tok) if tok is not None else (shapes.get("token_embd.weight") or (0,))[0]
    d = {"model_type": model_type, "architectures": [arch_class], "hidden_size": H,
         "num_hidden_layers": int(need(meta, arch, "block_count")), "num_attention_heads": heads,
         "num_key_value_heads": int(key(meta, arch, "attention.head_count_kv", heads)),
         "vocab_size": int(vocab), "hidden_act": "silu",
         "rms_norm_eps": float(key(meta, arch, "attention.layer_norm_rms_epsilon", 1e-6)),
         "max_position_embeddings": int(key(meta, arch, "context_length", 0) or 0),
         "rope_theta": float(key(meta, arch, "rope.freq_base", 10000.0)),
         "num_experts_per_tok": int(need(meta, arch, "expert_used_count")),
         "tie_word_embeddings": "output.weight" not in shapes}
    kl = key(meta, arch, "attention.key_length")
    if kl is not None and int(kl) != H // heads:
        d["head_dim"] = int(kl)
    return d


def has_experts(meta: Mapping, arch: str) -> bool:
    return int(key(meta, arch, "expert_count", 0) or 0) > 0

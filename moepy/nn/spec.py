"""DecoderSpec: everything around the MoE blocks that a decoder needs to run, read from a config.json.

ModelConfig (moepy.configs) counts a model; a DecoderSpec runs one: per layer its attention (heads, biases, q/k
norms, clipping, sliding window or chunk, RoPE or none, sinks, MLA sizes), its feed-forward kind and the checkpoint
names of its tensors. Each family module builds its spec from its config.json (`Family.decoder`), with the
builders here; ../shared/reference/model_semantics.md (and the installed transformers) is the authority.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from .rope import RopeSpec, rope_spec_from_hf, yarn_get_mscale


@dataclass(frozen=True)
class AttentionSpec:
    """One layer's self-attention.

    kind "gqa" (MHA/GQA/MQA) or "mla" (DeepSeek's multi-head latent attention).
    GQA: num_heads, num_kv_heads, head_dim; biases on q/k/v (qkv_bias) and o (o_bias); qk_norm "none", "head"
    (RMSNorm over head_dim, before RoPE: Qwen3), "proj" (RMSNorm over the whole projection: OLMoE), "l2"
    (weightless, after RoPE: Llama 4); clip_qkv clamps q, k, v (after the norms) to [-c, c]; fused_qkv: one
    Wqkv matrix (DBRX). MLA: q_lora_rank (0: a plain q_proj), kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim,
    v_head_dim, latent_eps (1e-6 in transformers whatever rms_norm_eps says).
    window > 0: a query sees the `window` most recent tokens including itself (sliding); chunk > 0: only the
    tokens of its own chunk of `chunk` positions (Llama 4). rope: the RopeSpec, or None (NoPE layers).
    temperature: (attn_scale, floor_scale) of Llama 4's NoPE layers, q scaled by
    1 + attn_scale * log1p(floor((p + 1) / floor_scale)). sinks: one learned logit per head (gpt-oss).
    scaling: the softmax scale (DeepSeek's includes the YaRN mscale squared).
    """

    kind: str
    num_heads: int
    scaling: float
    rope: Optional[RopeSpec]
    num_kv_heads: int = 0
    head_dim: int = 0
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: str = "none"
    qk_norm_eps: float = 1e-6
    clip_qkv: Optional[float] = None
    fused_qkv: bool = False
    window: int = 0
    chunk: int = 0
    temperature: Optional[Tuple[float, float]] = None
    sinks: bool = False
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    latent_eps: float = 1e-6

    @property
    def q_head_dim(self) -> int:
        """Width of one query (and key) head: head_dim, or nope + rope for MLA."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.kind == "mla" else self.head_dim


@dataclass(frozen=True)
class Names:
    """Checkpoint tensor names, relative to the model root ("model." and the like are found from the file).

    layer: the prefix of layer i ("layers.{i}."); attn: the attention's prefix inside a layer; attn_norm /
    ffn_norm: the two pre-norm weights; mlp: the dense MLP's prefix (gate_proj / up_proj / down_proj);
    q, k, v, o, qkv: the projection names in the attention (qkv: DBRX's fused one)."""

    embed: str = "embed_tokens.weight"
    final_norm: str = "norm.weight"
    head: str = "lm_head.weight"
    layer: str = "layers.{i}."
    attn: str = "self_attn."
    attn_norm: str = "input_layernorm.weight"
    ffn_norm: str = "post_attention_layernorm.weight"
    mlp: str = "mlp."
    q: str = "q_proj"
    k: str = "k_proj"
    v: str = "v_proj"
    o: str = "o_proj"
    qkv: str = "Wqkv"


@dataclass(frozen=True)
class LayerSpec:
    """One decoder layer: its attention, and its feed-forward block ("moe" or "dense", the dense MLP of
    dense_intermediate_size with biases when dense_bias)."""

    attention: AttentionSpec
    ffn: str
    dense_intermediate_size: int = 0
    dense_bias: bool = False


@dataclass(frozen=True)
class DecoderSpec:
    """A whole decoder: embeddings, layers, final norm, head. norm "rms" (eps norm_eps) or "layer" (DBRX's
    LayerNorm without bias, eps 1e-5); tie_embeddings: the head is the embedding matrix."""

    family: str
    vocab_size: int
    hidden_size: int
    layers: Tuple[LayerSpec, ...]
    norm: str = "rms"
    norm_eps: float = 1e-6
    tie_embeddings: bool = False
    activation: str = "silu"
    max_position_embeddings: int = 2048
    names: Names = field(default_factory=Names)
    bos_token_id: Optional[int] = None
    eos_token_ids: Tuple[int, ...] = ()
    pad_token_id: Optional[int] = None

    @property
    def num_layers(self) -> int:
        """L."""
        return len(self.layers)

    @property
    def moe_layers(self) -> Tuple[int, ...]:
        """Indices of the layers whose feed-forward block is an MoE block."""
        return tuple(i for i, s in enumerate(self.layers) if s.ffn == "moe")


# ---------------------------------------------------------------- readers the family modules share
def cfg_int(d: Mapping, key: str, default=None, *, lo: int = 0, what: str = "config.json") -> int:
    """d[key] as an int >= lo (default when missing or None); ValueError naming the field."""
    v = d.get(key)
    if v is None:
        if default is None:
            raise ValueError(f"{what}: required field {key!r} is missing")
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < lo:
        raise ValueError(f"{what}: {key} must be an int >= {lo}, got {v!r}")
    return int(v)


def cfg_float(d: Mapping, key: str, default: float, *, what: str = "config.json") -> float:
    """d[key] as a finite float (default when missing or None); ValueError naming the field."""
    v = d.get(key)
    if v is None:
        return float(default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what}: {key} must be a finite number, got {v!r}")
    return float(v)


def eos_ids(d: Mapping) -> Tuple[int, ...]:
    """eos_token_id as a tuple (config.json holds an int or a list)."""
    v = d.get("eos_token_id")
    if v is None:
        return ()
    vals = v if isinstance(v, (list, tuple)) else [v]
    return tuple(int(x) for x in vals if isinstance(x, int) and not isinstance(x, bool))


def _opt_id(d: Mapping, key: str) -> Optional[int]:
    v = d.get(key)
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def decoder(d: Mapping, family: str, layers, *, norm: str = "rms", norm_eps_default: float = 1e-6,
            names: Names = Names(), vocab_key: str = "vocab_size", hidden_key: str = "hidden_size",
            max_pos_key: str = "max_position_embeddings", max_pos_default: int = 2048) -> DecoderSpec:
    """The DecoderSpec common to every family: sizes, norm, head tying, activation and special tokens."""
    from ..families._checkpoint import activation_name
    return DecoderSpec(
        family=family, vocab_size=cfg_int(d, vocab_key, lo=1), hidden_size=cfg_int(d, hidden_key, lo=1),
        layers=tuple(layers), norm=norm, norm_eps=cfg_float(d, "rms_norm_eps", norm_eps_default),
        tie_embeddings=bool(d.get("tie_word_embeddings", False)), activation=activation_name(d.get("hidden_act")),
        max_position_embeddings=cfg_int(d, max_pos_key, max_pos_default, lo=1), names=names,
        bos_token_id=_opt_id(d, "bos_token_id"), eos_token_ids=eos_ids(d), pad_token_id=_opt_id(d, "pad_token_id"))


def gqa(d: Mapping, *, rope_layout: str = "half", default_theta: float = 10000.0, head_dim: Optional[int] = None,
        **kw) -> AttentionSpec:
    """A Llama-style attention from the usual config.json fields (num_attention_heads, num_key_value_heads,
    head_dim, rope_parameters / rope_scaling / rope_theta); keyword arguments set the other AttentionSpec fields
    (rope=None for a NoPE layer)."""
    H = cfg_int(d, "hidden_size", lo=1)
    nh = cfg_int(d, "num_attention_heads", lo=1)
    nkv = cfg_int(d, "num_key_value_heads", nh, lo=1)
    if nh % nkv:
        raise ValueError(f"config.json: num_key_value_heads={nkv} must divide num_attention_heads={nh}")
    if head_dim is None:
        head_dim = cfg_int(d, "head_dim", 0)
        if not head_dim:
            if H % nh:
                raise ValueError(f"config.json: hidden_size={H} is not a multiple of num_attention_heads={nh}; "
                                 f"give head_dim")
            head_dim = H // nh
    if "rope" not in kw:
        kw["rope"] = rope_spec_from_hf(d, head_dim, default_theta, rope_layout)
    return AttentionSpec(kind="gqa", num_heads=nh, num_kv_heads=nkv, head_dim=head_dim,
                         scaling=head_dim ** -0.5, **kw)


def mla(d: Mapping, *, rope_layout: str) -> AttentionSpec:
    """DeepSeek-V2/V3's multi-head latent attention; the softmax scale carries YaRN's mscale(factor,
    mscale_all_dim) squared when the RoPE is scaled (as transformers computes it)."""
    nh = cfg_int(d, "num_attention_heads", lo=1)
    dn = cfg_int(d, "qk_nope_head_dim", lo=0)
    dr = cfg_int(d, "qk_rope_head_dim", lo=2)
    rope = rope_spec_from_hf(d, dr, 10000.0, rope_layout)
    scaling = (dn + dr) ** -0.5
    mad = rope.params.get("mscale_all_dim")
    if rope.rope_type != "default" and mad:
        m = yarn_get_mscale(float(rope.params.get("factor", 1.0)), float(mad))
        scaling = scaling * m * m
    bias = bool(d.get("attention_bias", False))
    return AttentionSpec(kind="mla", num_heads=nh, scaling=scaling, rope=rope, qkv_bias=bias, o_bias=bias,
                         q_lora_rank=cfg_int(d, "q_lora_rank", 0), kv_lora_rank=cfg_int(d, "kv_lora_rank", lo=1),
                         qk_nope_head_dim=dn, qk_rope_head_dim=dr, v_head_dim=cfg_int(d, "v_head_dim", lo=1))


def layer_types(d: Mapping, L: int) -> Optional[Tuple[str, ...]]:
    """config.json's layer_types (full_attention / sliding_attention / chunked_attention) if it has them."""
    lt = d.get("layer_types")
    if lt is None:
        return None
    if not isinstance(lt, (list, tuple)) or len(lt) != L or not all(isinstance(t, str) for t in lt):
        raise ValueError(f"config.json: layer_types must be a list of {L} strings, got {lt!r}")
    bad = sorted(set(lt) - {"full_attention", "sliding_attention", "chunked_attention"})
    if bad:
        raise ValueError(f"config.json: layer_types holds unknown kinds {bad}")
    return tuple(lt)


def standard_layers(d: Mapping, attention, *, dense_width_key: str = "intermediate_size",
                    dense_bias: bool = False) -> Tuple[LayerSpec, ...]:
    """LayerSpecs of a decoder whose MoE layers follow the family's ModelConfig rule (first_k_dense_replace,
    decoder_sparse_step / mlp_only_layers, interleave_moe_layer_step / moe_layers); attention(i) gives layer i's
    AttentionSpec; the dense layers' MLP width is d[dense_width_key]."""
    from ..families._layers import moe_layer_indices
    L = cfg_int(d, "num_hidden_layers", lo=1)
    moe = set(moe_layer_indices(dict(d)))
    width = 0
    if len(moe) < L:
        width = cfg_int(d, dense_width_key, lo=1)
    return tuple(LayerSpec(attention(i), "moe" if i in moe else "dense", 0 if i in moe else width, dense_bias)
                 for i in range(L))


def sliding_windows(d: Mapping, L: int, *, every_layer: bool = False) -> Tuple[int, ...]:
    """The window of each layer: layer_types' sliding_attention layers (or every layer when every_layer, as
    Mixtral / Qwen3-MoE do) get sliding_window; 0 = full attention."""
    w = d.get("sliding_window")
    if w is None or w == 0:
        return (0,) * L
    w = cfg_int(d, "sliding_window", lo=1)
    if every_layer:
        return (w,) * L
    lt = layer_types(d, L)
    if lt is None:
        return (0,) * L
    return tuple(w if t == "sliding_attention" else 0 for t in lt)

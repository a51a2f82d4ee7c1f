"""Jamba (AI21 Labs, 2024): a hybrid of Mamba and attention layers (one attention layer in every eight) with 16
SwiGLU experts, top-2, in every other layer; softmax over all experts, top-k, NOT renormalised.

config.json model_type `jamba`: attention at layers i with i % attn_layer_period == attn_layer_offset (8, 4), the
MoE block at i % expert_layer_period == expert_layer_offset (2, 1), dense SwiGLU MLPs elsewhere (the same
intermediate_size as an expert). Checkpoint names `layers.{i}.feed_forward.` (router.weight; Hub experts.{e}.
gate_proj / up_proj / down_proj, or transformers v5 fused experts.gate_up_proj / down_proj).

moepy runs the MoE blocks of a Jamba checkpoint (MoELayer.from_hf); its Mamba layers are counted (parameters,
memory, FLOPs, recurrent state; moepy/configs/mamba.py) but not run.
"""
from __future__ import annotations

import math
from typing import Tuple

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..routing.config import RouterConfig
from ._checkpoint import Tensors, activation_name, as_f32, find_prefix, first_of, glu_experts
from ._config_json import Fields, read_common, typed, write_common
from .registry import Family


def router(num_experts: int = 16, top_k: int = 2) -> RouterConfig:
    """Jamba: softmax over all E in fp32, top-k, the selected probabilities used as they are (no renormalisation)."""
    return RouterConfig(top_k=top_k, scoring="softmax", normalize=False, num_experts=num_experts, family="jamba")


# ------------------------------------------------------------------------------------------------ config.json
def _every(f: Fields, what: str, L: int, default: Tuple[int, int]) -> Tuple[bool, ...]:
    """Layers i with i % {what}_layer_period == {what}_layer_offset."""
    period = f.opt_positive(f"{what}_layer_period", default[0])
    offset = f.opt_int(f"{what}_layer_offset", default[1])
    if not 0 <= offset < period:
        raise ValueError(f"{f.where} config.json: {what}_layer_offset={offset} must be in [0, "
                         f"{what}_layer_period={period})")
    return tuple(i % period == offset for i in range(L))


def _period(flags: Tuple[bool, ...], what: str) -> Tuple[int, int]:
    """(period, offset) that give exactly `flags` (the smallest period); ValueError if none does."""
    L = len(flags)
    hits = [i for i, b in enumerate(flags) if b]
    if not hits:
        return L + 1, L  # no layer (an offset past the last layer)
    for p in range(1, L + 1):
        o = hits[0] % p
        if o == hits[0] and all(b == (i % p == o) for i, b in enumerate(flags)):
            return p, o
    raise ValueError(f"a jamba config.json places the {what} layers every period layers from an offset; "
                     f"layers {hits} are not such a pattern")


def read_hf(d, mt):
    f = Fields(d, mt)
    kw = read_common(f)
    L, H = kw["num_layers"], kw["hidden_size"]
    E = f.req_size("num_experts", "num_experts", "num_local_experts")
    k = f.req_int("num_experts_per_tok")
    I = f.req_size("expert_intermediate_size", "intermediate_size")
    moe = _every(f, "expert", L, (2, 1))
    attn = _every(f, "attn", L, (8, 4))
    ffns = tuple("moe" if m and E > 1 else "dense" for m in moe)  # JambaMLP where the layer has one expert
    mixers = tuple("attention" if a else "mamba" for a in attn)
    dt_rank = f.opt("mamba_dt_rank", "auto")
    if dt_rank == "auto":  # transformers' default: ceil(hidden / 16)
        dt_rank = math.ceil(H / 16)
    dt_rank = typed(dt_rank, int, f"{mt} config.json: field 'mamba_dt_rank'")
    mamba = dict(d_state=f.opt_int("mamba_d_state", 16), d_conv=f.opt_int("mamba_d_conv", 4),
                 expand=f.opt_int("mamba_expand", 2), dt_rank=dt_rank, conv_bias=f.opt_bool("mamba_conv_bias", True),
                 proj_bias=f.opt_bool("mamba_proj_bias", False), inner_norms=True)
    kw.update(family="jamba", num_experts=E, top_k=k, expert_intermediate_size=I,
              dense_intermediate_size=I if "dense" in ffns else 0, layer_mixers=mixers, layer_ffns=ffns,
              mamba=mamba if "mamba" in mixers else None, router=router(E, k))
    return kw, {"": f.extra()}


def write_hf(c: ModelConfig) -> dict:
    L = c.num_layers
    ep, eo = _period(tuple(c.ffn(i) == "moe" for i in range(L)), "MoE")
    ap, ao = _period(tuple(c.mixer(i) == "attention" for i in range(L)), "attention")
    d = write_common(c, "jamba", "JambaForCausalLM", head_dim=False)
    d.update(intermediate_size=c.expert_intermediate_size, num_experts=c.num_experts, num_experts_per_tok=c.top_k,
             expert_layer_period=ep, expert_layer_offset=eo, attn_layer_period=ap, attn_layer_offset=ao)
    m = c.mamba
    if m is not None:
        d.update(mamba_d_state=m.get("d_state"), mamba_d_conv=m.get("d_conv"), mamba_expand=m.get("expand"),
                 mamba_dt_rank=m.get("dt_rank"), mamba_conv_bias=m.get("conv_bias"),
                 mamba_proj_bias=m.get("proj_bias"))
    return d


# ------------------------------------------------------------------------------------------------ checkpoint
def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    E = int(first_of(c, "num_experts", "num_local_experts", default=16))
    K = int(first_of(c, "num_experts_per_tok", default=2))
    T = Tensors(tensors, find_prefix(tensors, [f"layers.{i}.feed_forward."], "router.weight"))
    experts = glu_experts(T, E, dtype, ("gate_proj", "up_proj", "down_proj"), activation_name(c.get("hidden_act")))
    return MoELayer(router(E, K), as_f32(T.get("router.weight")), experts, dtype=dtype, family="jamba")


# ------------------------------------------------------------------------------------------------ presets
def _layers(L: int) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Jamba's released layout: attention at i % 8 == 4 (Mamba elsewhere), MoE at odd i (dense MLP elsewhere)."""
    return (tuple("attention" if i % 8 == 4 else "mamba" for i in range(L)),
            tuple("moe" if i % 2 == 1 else "dense" for i in range(L)))


def _jamba(name: str, H: int, L: int, heads: int, I: int, dt_rank: int) -> ModelConfig:
    mixers, ffns = _layers(L)
    return ModelConfig(name=name, family="jamba", vocab_size=65536, hidden_size=H, num_layers=L, num_heads=heads,
                       num_kv_heads=8, dense_intermediate_size=I, num_experts=16, top_k=2, expert_intermediate_size=I,
                       layer_mixers=mixers, layer_ffns=ffns,
                       mamba=dict(d_state=16, d_conv=4, expand=2, dt_rank=dt_rank, conv_bias=True, proj_bias=False,
                                  inner_norms=True),
                       max_context=262144)


def jamba_v01() -> ModelConfig:
    """Jamba-v0.1 (AI21 Labs, Mar 2024; Lieber et al., "Jamba: A Hybrid Transformer-Mamba Language Model",
    arXiv:2403.19887): 52B total, 12B active; 4 blocks of 8 layers (1 attention : 7 Mamba), MoE every other layer
    (16 experts, top-2); ai21labs/Jamba-v0.1 config.json (hidden 4096, 32 heads / 8 KV heads, expert and MLP width
    14336, d_state 16, d_conv 4, expand 2, dt_rank 256, vocabulary 65536)."""
    return _jamba("jamba-v0.1", 4096, 32, 32, 14336, 256)


def jamba_15_mini() -> ModelConfig:
    """Jamba-1.5-Mini (AI21 Labs, Aug 2024; "Jamba-1.5: Hybrid Transformer-Mamba Models at Scale",
    arXiv:2408.12570): 52B total, 12B active, the Jamba-v0.1 architecture; ai21labs/AI21-Jamba-1.5-Mini
    config.json (the same sizes as v0.1)."""
    return _jamba("jamba-1.5-mini", 4096, 32, 32, 14336, 256)


def jamba_15_large() -> ModelConfig:
    """Jamba-1.5-Large (AI21 Labs, Aug 2024; arXiv:2408.12570): 398B total, 94B active; 9 blocks of 8 layers
    (1 attention : 7 Mamba), MoE every other layer (16 experts, top-2), hidden 8192, 64 query heads / 8 KV heads;
    ai21labs/AI21-Jamba-1.5-Large config.json (expert and MLP width 24576, dt_rank 512 = hidden / 16)."""
    return _jamba("jamba-1.5-large", 8192, 72, 64, 24576, 512)


FAMILY = Family(
    name="jamba", order=155, router=router,
    model_types=("jamba",),
    architectures=("JambaForCausalLM",),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block,
    presets={"jamba-v0.1": jamba_v01, "jamba-1.5-mini": jamba_15_mini, "jamba-1.5-large": jamba_15_large},
    aliases={"jamba": "jamba-v0.1", "ai21-jamba-1.5-mini": "jamba-1.5-mini", "ai21-jamba-1.5-large": "jamba-1.5-large",
             "jamba-mini": "jamba-1.5-mini", "jamba-large": "jamba-1.5-large"},
    description="AI21 Labs, 2024",
)

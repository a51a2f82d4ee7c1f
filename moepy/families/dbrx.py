"""DBRX (Databricks, 2024): 16 experts, softmax top-4, weights divided by their p-norm.

config.json model_type `dbrx` (nested ffn_config / attn_config); checkpoint names `blocks.{i}.ffn.`
(router.layer, experts.mlp.w1 / v1 / w2 as (E*F, H) matrices).
"""
from __future__ import annotations

from typing import Mapping, Optional

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..moe.weights import ExpertSource
from ..routing.config import RouterConfig
from ._checkpoint import first_of, as_f32, expert_array, contig, source_array, Tensors, find_prefix, activation_name
from ._config_json import Fields
from .registry import Family


def router(num_experts: int = 16, top_k: int = 4, moe_normalize_expert_weights: Optional[float] = 1.0) -> RouterConfig:
    """DBRX: softmax, top-k, weights divided by their p-norm (p = moe_normalize_expert_weights; None: no normalising)."""
    p = moe_normalize_expert_weights
    return RouterConfig(top_k=top_k, scoring="softmax", normalize=p is not None, norm_p=float(p if p is not None else 1.0),
                        num_experts=num_experts, family="dbrx")


def read_hf(d, mt):
    f = Fields(d, mt)
    attn = d.get("attn_config")
    ffn = d.get("ffn_config")
    if not isinstance(ffn, Mapping):
        raise ValueError(f"{mt} config.json: missing field 'ffn_config' (a dict)")
    if not isinstance(attn, Mapping):
        raise ValueError(f"{mt} config.json: missing field 'attn_config' (a dict)")
    fa, ff = Fields(attn, f"{mt} attn_config"), Fields(ffn, f"{mt} ffn_config")
    H, nh = f.req_int("d_model"), f.req_int("n_heads")
    E, k = ff.req_int("moe_num_experts"), ff.req_int("moe_top_k")
    ff.used.add("moe_normalize_expert_weights")  # null means "do not normalise", absent means 1.0
    p = ffn["moe_normalize_expert_weights"] if "moe_normalize_expert_weights" in ffn else 1.0
    ff.used.add("hidden_size")
    act = ff.opt("ffn_act_fn", {"name": "silu"})
    kw = dict(family="dbrx", vocab_size=f.req_int("vocab_size"), hidden_size=H, num_layers=f.req_size("num_layers", "n_layers"),
              num_heads=nh, num_kv_heads=fa.req_int("kv_n_heads"), num_experts=E, top_k=k,
              expert_intermediate_size=ff.req_int("ffn_hidden_size"),
              tie_embeddings=f.opt_bool("tie_word_embeddings", False), max_context=f.opt_int("max_seq_len", 0),
              activation=str(act.get("name", "silu")) if isinstance(act, Mapping) else "silu",
              router=router(E, k, None if p is None else float(p)))
    return kw, {"": f.extra(), "attn_config": fa.extra(), "ffn_config": ff.extra()}


def write_hf(c: ModelConfig) -> dict:
    if c.tie_embeddings:
        raise ValueError(f"ModelConfig({c.name!r}).to_hf(): DBRX does not support tied embeddings (transformers refuses)")
    p = c.router.norm_p if c.router.normalize else None
    d = {"model_type": "dbrx", "architectures": ["DbrxForCausalLM"], "vocab_size": c.vocab_size, "d_model": c.hidden_size,
         "n_heads": c.num_heads, "n_layers": c.num_layers, "tie_word_embeddings": c.tie_embeddings,
         "attn_config": {"kv_n_heads": c.num_kv_heads},
         "ffn_config": {"ffn_hidden_size": c.expert_intermediate_size, "moe_num_experts": c.num_experts,
                        "moe_top_k": c.top_k, "moe_normalize_expert_weights": p, "ffn_act_fn": {"name": c.activation}}}
    if c.max_context:
        d["max_seq_len"] = c.max_context
    return d


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    f = dict(c.get("ffn_config") or {})
    E = int(first_of(f, "moe_num_experts", default=4))
    K = int(first_of(f, "moe_top_k", default=1))
    F = int(first_of(f, "ffn_hidden_size", default=3584))
    p = f.get("moe_normalize_expert_weights", 1.0)
    act = activation_name((f.get("ffn_act_fn") or {}).get("name", "silu"))
    T = Tensors(tensors, find_prefix(tensors, [f"blocks.{i}.ffn."], "router.layer.weight"))
    H = int(first_of(c, "d_model", "hidden_size"))

    def split(rel):
        w = source_array(T.get(rel))
        if w.shape != (E * F, H):
            raise ValueError(f"{T.prefix}{rel}: expected (E*F, H) = {(E * F, H)}, got {w.shape}")
        w = w.reshape(E, F, H)  # a view: expert e's rows
        return lambda e: expert_array(w[e], dtype)
    w2 = split("experts.mlp.w2")
    # out_e = h @ w2_e -> down_e = w2_e^T, transposed one expert at a time
    experts = ExpertSource(E, split("experts.mlp.v1"), lambda e: contig(w2(e).T), split("experts.mlp.w1"),
                           activation=act, bf16=dtype == "bfloat16")
    return MoELayer(router(E, K, None if p is None else float(p)), as_f32(T.get("router.layer.weight")), experts,
                    dtype=dtype, family="dbrx")


def dbrx() -> ModelConfig:
    """DBRX (Databricks, "Introducing DBRX", Mar 2024): 132B total, 36B active; 16 experts top-4;
    databricks/dbrx-base config.json (LayerNorm without bias, same count as RMSNorm)."""
    return ModelConfig(name="dbrx", family="dbrx", vocab_size=100352, hidden_size=6144, num_layers=40, num_heads=48,
                       num_kv_heads=8, num_experts=16, top_k=4, expert_intermediate_size=10752, max_context=32768)


def decoder(d):
    """DBRX's decoder: LayerNorm without bias (eps 1e-5), one fused Wqkv clamped to clip_qkv before the split,
    GQA with kv_n_heads. RoPE theta: attn_config.rope_theta, which real DBRX config.json files carry (500000),
    where transformers 5.23 reads a top-level rope_parameters / rope_theta (default 10000) and ignores it; moepy
    follows the checkpoint, and the top-level value only when attn_config has none."""
    from ..nn import spec as S
    attn = d.get("attn_config") or {}
    if not isinstance(attn, dict):
        raise ValueError("dbrx config.json: attn_config must be an object")
    nh = S.cfg_int(d, "n_heads", lo=1)
    a = {"hidden_size": S.cfg_int(d, "d_model", lo=1), "num_attention_heads": nh,
         "num_key_value_heads": S.cfg_int(attn, "kv_n_heads", 1, lo=1, what="dbrx attn_config"),
         "max_position_embeddings": S.cfg_int(d, "max_seq_len", 2048, lo=1)}
    theta = attn.get("rope_theta")
    if theta is not None:
        a["rope_theta"] = S.cfg_float(attn, "rope_theta", 10000.0, what="dbrx attn_config")
    else:
        a.update({k: d[k] for k in ("rope_parameters", "rope_scaling", "rope_theta") if k in d})
    clip = attn.get("clip_qkv")
    clip = None if clip is None else S.cfg_float(attn, "clip_qkv", 0.0, what="dbrx attn_config")
    names = S.Names(embed="wte.weight", final_norm="norm_f.weight", layer="blocks.{i}.", attn="norm_attn_norm.attn.",
                    attn_norm="norm_attn_norm.norm_1.weight", ffn_norm="norm_attn_norm.norm_2.weight", o="out_proj")
    L = S.cfg_int(d, "n_layers", lo=1)
    ffn = d.get("ffn_config") or {}
    act = (ffn.get("ffn_act_fn") or {}).get("name", "silu") if isinstance(ffn, dict) else "silu"
    layers = tuple(S.LayerSpec(S.gqa(a, clip_qkv=clip, fused_qkv=True), "moe") for _ in range(L))
    spec = S.decoder({**d, "hidden_size": a["hidden_size"], "hidden_act": act}, "dbrx", layers, norm="layer",
                     names=names, max_pos_key="max_seq_len")
    return spec


FAMILY = Family(
    name="dbrx", order=80, router=router,
    model_types=('dbrx',),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block, decoder=decoder,
    presets={"dbrx": dbrx},
    aliases={'dbrx-base': 'dbrx', 'dbrx-instruct': 'dbrx'},
    description='Databricks, 2024',
)

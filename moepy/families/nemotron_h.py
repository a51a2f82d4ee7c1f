"""Nemotron-H / Nemotron 3 (NVIDIA, 2025): a hybrid of Mamba-2, attention and MoE layers in which every layer holds
ONE block (hybrid_override_pattern: M = Mamba-2, * = attention, - = dense MLP, E = MoE). The MoE block routes as
DeepSeek-V3 does (sigmoid scores, selection on score + e_score_correction_bias, groups scored by their top-2,
renormalised weights times routed_scaling_factor) over UNGATED experts down(act(up x)) with act = mlp_hidden_act
(relu2 = relu(x)^2 in Nemotron 3 Nano), plus one ungated shared expert; with moe_latent_size the routed experts
work in a smaller latent space (fc1_latent_proj before, fc2_latent_proj after).

config.json model_type `nemotron_h`; checkpoint names `layers.{i}.mixer.` (gate.weight, gate.e_score_correction_bias,
Hub experts.{e}.up_proj / down_proj.weight or transformers v5 fused experts.up_proj / down_proj, shared_experts.
up_proj / down_proj.weight); Hub checkpoints say `backbone.layers...`, transformers v5 `model.layers...`.

moepy runs the MoE blocks of a Nemotron-H checkpoint (MoELayer.from_hf); its Mamba-2 layers are counted
(parameters, memory, FLOPs, recurrent state; moepy/configs/mamba.py) but not run.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..moe.weights import ExpertWeights
from ..routing.config import RouterConfig
from ._checkpoint import Tensors, activation_name, as_f32, expert_array, find_prefix, first_of
from .._limits import MAX_SIZE
from ._config_json import Fields, typed
from .registry import Family

# the one-character layer codes of hybrid_override_pattern -> (mixer, feed-forward block) of ModelConfig
CODES = {"M": ("mamba2", "none"), "*": ("attention", "none"), "-": ("none", "dense"), "E": ("none", "moe")}
# layers_block_type names (the newer spelling, and the legacy names transformers remaps) -> code
BLOCK_TYPES = {"linear_attention": "M", "mamba": "M", "full_attention": "*", "attention": "*", "mlp": "-", "moe": "E"}


def router(num_experts: int = 128, top_k: int = 6, n_group: int = 1, topk_group: int = 1,
           routed_scaling_factor: float = 2.5, norm_topk_prob: bool = True) -> RouterConfig:
    """Nemotron-H (NemotronHTopkRouter): fp32 logits, sigmoid scores; selection on score + e_score_correction_bias
    (pass it as route(..., bias=)); groups scored by the sum of their top-2, dropped groups masked with -inf; weights
    are the unbiased scores, renormalised (+1e-20) if norm_topk_prob, times routed_scaling_factor. Defaults: Nemotron
    3 Nano (128 experts, top-6, one group, scale 2.5)."""
    return RouterConfig(top_k=top_k, scoring="sigmoid", normalize=norm_topk_prob, norm_eps=1e-20,
                        scale=routed_scaling_factor, n_group=n_group, topk_group=topk_group, group_score="top2_sum",
                        num_experts=num_experts, family="nemotron_h")


# ------------------------------------------------------------------------------------------------ config.json
def _get(f: Fields, keys: Tuple[str, ...], default, kind: type):
    """The first of `keys` present (the aliases transformers accepts), type-checked; every alias counts as read."""
    key = f._key_of(keys)
    return default if key is None else typed(f.d[key], kind, f"{f.where} config.json: field {key!r}")


def pattern_of(d: dict, where: str = "nemotron_h") -> str:
    """The layer pattern of a config.json (hybrid_override_pattern, or layers_block_type as transformers 5 writes
    it) as a string of M, *, - and E."""
    pat, types = d.get("hybrid_override_pattern"), d.get("layers_block_type", d.get("layer_types"))
    if types is not None:
        if not isinstance(types, (list, tuple)) or len(types) > MAX_SIZE["num_layers"] or \
                not all(isinstance(t, str) for t in types):
            raise ValueError(f"{where} config.json: layers_block_type must be a list of str, got {types!r}")
        bad = sorted(set(types) - set(BLOCK_TYPES))
        if bad:
            raise ValueError(f"{where} config.json: layers_block_type has unknown kinds {bad}; "
                             f"expected {sorted(BLOCK_TYPES)}")
        return "".join(BLOCK_TYPES[t] for t in types)
    if pat is None:
        raise ValueError(f"{where} config.json: missing field 'hybrid_override_pattern' (or 'layers_block_type')")
    if not isinstance(pat, str) or not pat or len(pat) > MAX_SIZE["num_layers"] or set(pat) - set(CODES):
        raise ValueError(f"{where} config.json: hybrid_override_pattern must be a non-empty string of "
                         f"{''.join(CODES)} (at most {MAX_SIZE['num_layers']} layers), got {str(pat)[:80]!r}")
    return pat


def read_hf(d, mt):
    f = Fields(d, mt)
    pat = pattern_of(d, mt)
    f.used.update({"hybrid_override_pattern", "layers_block_type", "num_hidden_layers"})
    H, nh = f.req_size("hidden_size", "hidden_size"), f.req_int("num_attention_heads")
    E = f.req_size("num_experts", "n_routed_experts", "num_local_experts")
    k = f.req_int("num_experts_per_tok")
    mixers = tuple(CODES[c][0] for c in pat)
    ffns = tuple(CODES[c][1] for c in pat)
    mlp_width = f.opt_int("intermediate_size", 21504)  # transformers' default
    dense = mlp_width if "dense" in ffns or "intermediate_size" in d else 0
    # NemotronHMLP takes `intermediate_size or config.intermediate_size`: a 0-wide shared expert gets the MLP width
    S = f.req_size("shared_intermediate_size", "moe_shared_expert_intermediate_size") or mlp_width
    ns = f.opt_int("n_shared_experts", 1)
    mamba = dict(d_state=f.opt_int("ssm_state_size", 128), d_conv=_get(f, ("conv_kernel", "mamba_d_conv"), 4, int),
                 num_heads=f.opt_int("mamba_num_heads", 128), head_dim=f.opt_int("mamba_head_dim", 64),
                 n_groups=_get(f, ("n_groups", "mamba_n_groups"), 8, int),
                 conv_bias=_get(f, ("use_conv_bias", "mamba_conv_bias"), True, bool),
                 proj_bias=f.opt_bool("use_bias", False))
    r = router(E, k, n_group=f.opt_int("n_group", 1), topk_group=f.opt_int("topk_group", 1),
               routed_scaling_factor=f.opt_float("routed_scaling_factor", 1.0),
               norm_topk_prob=f.opt_bool("norm_topk_prob", True))
    # tie_word_embeddings is not read: NemotronHForCausalLM never ties (its _tied_weights_keys is empty)
    kw = dict(family="nemotron_h", vocab_size=f.req_size("vocab_size", "vocab_size"), hidden_size=H,
              num_layers=len(pat), num_heads=nh, num_kv_heads=f.opt_int("num_key_value_heads", nh),
              head_dim=f.opt_int("head_dim", 128), mlp_bias=f.opt_bool("mlp_bias", False),
              moe_latent_size=f.opt_int("moe_latent_size", 0), max_context=f.opt_int("max_position_embeddings", 0),
              activation=f.opt_str("mlp_hidden_act", "relu2"), layer_mixers=mixers, layer_ffns=ffns,
              dense_intermediate_size=dense, dense_glu=False, num_experts=E, top_k=k,
              expert_intermediate_size=f.req_size("expert_intermediate_size", "moe_intermediate_size"),
              expert_glu=False,
              # NemotronHMoE always holds one shared MLP of this width, whatever n_shared_experts says
              num_shared_experts=ns if ns > 0 else 1, shared_intermediate_size=S,
              router=r, selection_bias=True, mamba=mamba if "mamba2" in mixers else None)
    extra = f.extra()
    mtp = d.get("num_nextn_predict_layers")
    if mtp:  # transformers 5.23 builds no MTP layers (it ignores mtp.* tensors): kept, not counted
        extra["num_nextn_predict_layers"] = mtp
    return kw, {"": extra}


def write_hf(c: ModelConfig) -> dict:
    codes = {v: k for k, v in CODES.items()}
    pat = []
    for i in range(c.num_layers):
        kind = (c.mixer(i), c.ffn(i))
        if kind not in codes:
            raise ValueError(f"a nemotron_h layer holds one block (Mamba-2, attention, MLP or MoE); layer {i} has "
                             f"mixer {kind[0]!r} and feed-forward {kind[1]!r}")
        pat.append(codes[kind])
    r, m = c.router, c.mamba or {}
    d = {"model_type": "nemotron_h", "architectures": ["NemotronHForCausalLM"], "vocab_size": c.vocab_size,
         "hidden_size": c.hidden_size, "num_hidden_layers": c.num_layers, "hybrid_override_pattern": "".join(pat),
         "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads, "head_dim": c.head_dim,
         "mlp_bias": c.mlp_bias, "mlp_hidden_act": c.activation, "n_routed_experts": c.num_experts,
         "num_experts_per_tok": c.top_k, "moe_intermediate_size": c.expert_intermediate_size,
         "moe_shared_expert_intermediate_size": c.shared_intermediate_size,
         "n_shared_experts": c.num_shared_experts, "n_group": r.n_group, "topk_group": r.topk_group,
         "routed_scaling_factor": float(r.scale), "norm_topk_prob": r.normalize}
    if m:
        d.update(ssm_state_size=m["d_state"], conv_kernel=m["d_conv"], mamba_num_heads=m["num_heads"],
                 mamba_head_dim=m["head_dim"], n_groups=m["n_groups"], use_conv_bias=m["conv_bias"],
                 use_bias=m["proj_bias"])
    if c.dense_intermediate_size:
        d["intermediate_size"] = c.dense_intermediate_size
    if c.moe_latent_size:
        d["moe_latent_size"] = c.moe_latent_size
    if c.max_context:
        d["max_position_embeddings"] = c.max_context
    return d


# ------------------------------------------------------------------------------------------------ checkpoint
def _routed(T: Tensors, E: int, dtype: str):
    """(up (E, I, Hin), down (E, Hin, I)) from the fused v5 names or the per-expert Hub names."""
    if T.has("experts.up_proj") or T.has("experts.down_proj"):
        up, down = expert_array(T.get("experts.up_proj"), dtype), expert_array(T.get("experts.down_proj"), dtype)
        if up.ndim != 3 or up.shape[0] != E:
            raise ValueError(f"{T.prefix}experts.up_proj: expected {E} experts, got shape {up.shape}")
        return np.ascontiguousarray(up), np.ascontiguousarray(down)
    if not T.has("experts.0.up_proj.weight"):
        raise KeyError(f"checkpoint tensor {T.prefix}experts.0.up_proj.weight (Hub names) or "
                       f"{T.prefix}experts.up_proj (fused names) not found")
    up = np.stack([expert_array(T.get(f"experts.{e}.up_proj.weight"), dtype) for e in range(E)])
    down = np.stack([expert_array(T.get(f"experts.{e}.down_proj.weight"), dtype) for e in range(E)])
    return up, down


def _fold_latent(T: Tensors, up, down, shared_down_bias, dtype: str):
    """moe_latent_size: experts on z = fc1 x + b1 (latent L), output fc2 (sum_k w_k f_k(z)) + b2. Folded into
    experts on x: up_e fc1 (I, H) with bias up_e b1, fc2 down_e (H, I); b2 (added once, unweighted) joins the
    shared expert's output bias. Exact in real arithmetic; float32 results agree to ~1e-6."""
    if dtype != "float32":
        raise ValueError("moe_latent_size: the latent projections are folded into the experts in float32; "
                         "use dtype='float32' (bf16 expert weights would be re-rounded)")
    w1 = as_f32(T.get("fc1_latent_proj.weight")).astype(np.float64)
    w2 = as_f32(T.get("fc2_latent_proj.weight")).astype(np.float64)
    up64, down64 = up.astype(np.float64), down.astype(np.float64)
    if up64.shape[2] != w1.shape[0] or w2.shape[1] != up64.shape[2]:
        raise ValueError(f"{T.prefix}fc1/fc2_latent_proj: shapes {w1.shape} / {w2.shape} do not fit experts of "
                         f"latent width {up64.shape[2]}")
    up_f = np.ascontiguousarray((up64 @ w1).astype(np.float32))
    down_f = np.ascontiguousarray(np.einsum("hl,eli->ehi", w2, down64).astype(np.float32))
    b1, b2 = T.opt("fc1_latent_proj.bias"), T.opt("fc2_latent_proj.bias")
    up_bias = None if b1 is None else np.ascontiguousarray((up64 @ as_f32(b1).astype(np.float64)).astype(np.float32))
    if b2 is not None:
        b2 = as_f32(b2)[None]
        shared_down_bias = b2 if shared_down_bias is None else (shared_down_bias + b2).astype(np.float32)
    return up_f, down_f, up_bias, shared_down_bias


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    E = int(first_of(c, "n_routed_experts", "num_local_experts", default=8))
    K = int(first_of(c, "num_experts_per_tok", default=2))
    r = router(E, K, n_group=int(first_of(c, "n_group", default=1)),
               topk_group=int(first_of(c, "topk_group", default=1)),
               routed_scaling_factor=float(first_of(c, "routed_scaling_factor", default=1.0)),
               norm_topk_prob=bool(first_of(c, "norm_topk_prob", default=True)))
    T = Tensors(tensors, find_prefix(tensors, [f"layers.{i}.mixer."], "gate.weight"))
    act = activation_name(first_of(c, "mlp_hidden_act", default="relu2"))
    up, down = _routed(T, E, dtype)
    s_up = expert_array(T.get("shared_experts.up_proj.weight"), dtype)[None]
    s_down = expert_array(T.get("shared_experts.down_proj.weight"), dtype)[None]
    s_up_b, s_down_b = T.opt("shared_experts.up_proj.bias"), T.opt("shared_experts.down_proj.bias")
    s_up_b = None if s_up_b is None else as_f32(s_up_b)[None]
    s_down_b = None if s_down_b is None else as_f32(s_down_b)[None]
    up_bias = None
    if first_of(c, "moe_latent_size") is not None:
        up, down, up_bias, s_down_b = _fold_latent(T, up, down, s_down_b, dtype)
    experts = ExpertWeights(up=up, down=down, up_bias=up_bias, activation=act)
    shared = ExpertWeights(up=s_up, down=s_down, up_bias=s_up_b, down_bias=s_down_b, activation=act)
    return MoELayer(r, as_f32(T.get("gate.weight")), experts, shared=shared,
                    selection_bias=as_f32(T.get("gate.e_score_correction_bias")), dtype=dtype, family="nemotron_h")


# ------------------------------------------------------------------------------------------------ presets
def _from_pattern(pat: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    return tuple(CODES[ch][0] for ch in pat), tuple(CODES[ch][1] for ch in pat)


NANO_PATTERN = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"  # 23 M, 23 E, 6 *


def nemotron_3_nano_30b_a3b() -> ModelConfig:
    """NVIDIA Nemotron 3 Nano 30B-A3B (NVIDIA, Dec 2025; "Nemotron 3 Nano: Open, Efficient Mixture-of-Experts Hybrid
    Mamba-Transformer Model for Agentic Reasoning", arXiv:2512.20848, and the nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16
    model card): 31.6B total, ~3.2B active (3.6B including embeddings); 52 layers = 23 Mamba-2 + 23 MoE + 6 GQA
    attention; 128 routed experts (relu2, ungated), top-6, + 1 shared expert; its config.json (hidden 2688, 32 heads
    of 128 / 2 KV heads, expert width 1856, shared 3712, Mamba-2 64 heads of 64, state 128, 8 groups, vocabulary
    131072, routed_scaling_factor 2.5, one group)."""
    mixers, ffns = _from_pattern(NANO_PATTERN)
    return ModelConfig(name="nemotron-3-nano-30b-a3b", family="nemotron_h", vocab_size=131072, hidden_size=2688,
                       num_layers=52, num_heads=32, num_kv_heads=2, head_dim=128, layer_mixers=mixers, layer_ffns=ffns,
                       dense_intermediate_size=1856, dense_glu=False, num_experts=128, top_k=6,
                       expert_intermediate_size=1856, expert_glu=False, num_shared_experts=1,
                       shared_intermediate_size=3712, router=router(128, 6, routed_scaling_factor=2.5),
                       selection_bias=True, activation="relu2",
                       mamba=dict(d_state=128, d_conv=4, num_heads=64, head_dim=64, n_groups=8, conv_bias=True,
                                  proj_bias=False),
                       max_context=262144)


FAMILY = Family(
    name="nemotron_h", order=160, router=router,
    model_types=("nemotron_h",),
    architectures=("NemotronHForCausalLM",),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block,
    presets={"nemotron-3-nano-30b-a3b": nemotron_3_nano_30b_a3b},
    aliases={"nemotron-3-nano": "nemotron-3-nano-30b-a3b", "nemotron-nano-3": "nemotron-3-nano-30b-a3b",
             "nvidia-nemotron-3-nano-30b-a3b": "nemotron-3-nano-30b-a3b",
             "nvidia-nemotron-3-nano-30b-a3b-bf16": "nemotron-3-nano-30b-a3b",
             "nvidia-nemotron-3-nano-30b-a3b-base-bf16": "nemotron-3-nano-30b-a3b",
             "nvidia-nemotron-3-nano-30b-a3b-fp8": "nemotron-3-nano-30b-a3b"},
    description="NVIDIA, 2025",
)

"""ModelConfig: one flat, frozen, validated description of a Mixture-of-Experts model.

Fields and their validation are here; the accounting (parameters, memory, FLOPs, KV cache) is in accounting.py,
scaled() in scaling.py, and the config.json mapping of each family in its module of moepy/families.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Tuple

from ..families import registry
from ..families._config_json import load_hf_config, merge_extra
from ..routing.config import RouterConfig
from .accounting import LLAMA4_VISION_DEFAULTS, FlopCount, ParamCount, Tensor, count_params, expert_combinations, \
    flops_per_token, kv_cache_bytes, memory_bytes, recurrent_state_bytes, summary, tensors, vision_tensors
from . import mamba as _mamba
from .fields import ATTENTION_BIASES, FFNS, MAX_PARAMS, MAX_SIZE, MIXERS, QK_NORMS, is_int
from .scaling import scaled


def _default_router(family: str, num_experts: int, top_k: int) -> RouterConfig:
    """The router a ModelConfig of `family` gets when it names none: the family's released routing."""
    if family == "custom":
        return RouterConfig(top_k=top_k, scoring="softmax", normalize=True, num_experts=num_experts)
    return registry.get(family).make_default_router(num_experts, top_k)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """A decoder (or, approximately, encoder-decoder) Mixture-of-Experts model.

    Sizes: vocab_size V, hidden_size H, num_layers L, num_heads, num_kv_heads (default num_heads), head_dim
    (default H // num_heads).
    MLA (DeepSeek-V2/V3, Kimi K2) when kv_lora_rank > 0: q_lora_rank (0: a full q_proj), kv_lora_rank,
    qk_nope_head_dim, qk_rope_head_dim, v_head_dim; head_dim and num_kv_heads are then unused.
    attention_bias: "none", "qkv" (Qwen1.5/2-MoE) or "all" (q, k, v and o; gpt-oss).
    qk_norm: "none", "head" (RMSNorm over head_dim: Qwen3), "proj" (over the whole q and k projections:
    OLMoE), "l2" (weightless: Llama 4). attention_sinks: one learned logit per head (gpt-oss).
    local_attention_layers / local_attention_window: layers that attend to at most `window` tokens (gpt-oss's
    banded layers, Llama 4's chunked layers, Mixtral's sliding window); used by FLOP and KV-cache accounting.
    Layer i is MoE iff i >= first_dense_layers, i not in mlp_only_layers and (i + 1) % moe_every == 0
    (DeepSeek's first_k_dense_replace, Qwen's decoder_sparse_step / mlp_only_layers, Llama 4's
    interleave_moe_layer_step); other layers have a dense MLP of dense_intermediate_size (GLU if dense_glu).
    Experts: num_experts E routed experts of expert_intermediate_size, top_k per token; expert_glu (3
    matrices, SwiGLU-style) or 2 (Switch/GShard/GLaM); expert_bias (gpt-oss). Shared experts, always active:
    num_shared_experts as their makers count them, shared_intermediate_size their total width (one MLP in
    every implementation), shared_expert_gate (Qwen's sigmoid gate). residual_intermediate_size: Arctic's
    dense MLP beside the MoE in every MoE layer (its own norm included). moe_latent_size: the routed experts
    work in a latent space of this width between a down- and an up-projection of the hidden state (Nemotron-H's
    moe_latent_size; 0 = none). mlp_bias: the dense and shared MLPs (and latent projections) have biases.
    router: the RouterConfig (default: the family's named constructor); router_bias (gpt-oss);
    selection_bias: DeepSeek-V3's e_score_correction_bias (E,) checkpoint tensor.
    tie_embeddings: one V x H matrix for embedding and head. encoder_layers: for encoder-decoder designs
    (Switch, GShard) the first encoder_layers of num_layers are encoder layers; the others get a
    cross-attention block as large as their self-attention (an approximation: relative position biases are
    not counted). mtp_layers: DeepSeek-V3's multi-token-prediction modules (counted apart).
    max_context: the released context length (0 = unknown). vision_config: the sizes of a Llama 4 vision
    tower, as HF vision_config keys (hidden_size, num_hidden_layers, num_attention_heads, num_channels,
    intermediate_size, vision_output_dim, image_size, patch_size, projector_input_dim, projector_output_dim;
    missing ones take transformers' defaults, other keys are dropped), counted into total parameters.
    Hybrid designs (Jamba, Nemotron-H) name each layer's parts: layer_mixers[i] is "attention", "mamba",
    "mamba2" or "none" and layer_ffns[i] is "moe", "dense" or "none" (a layer has at least one); empty means
    every layer has attention and the MoE rule above places the MoE blocks (then first_dense_layers, moe_every and
    mlp_only_layers must keep their defaults when layer_ffns is given). mamba: the sizes of the Mamba layers, one
    mapping (moepy/configs/mamba.py lists its keys), counted into parameters, memory and FLOPs; moepy runs no
    Mamba layer.
    hf_extra: config.json fields moepy does not model, kept so to_hf() returns them.
    Equality compares the architecture: `name` and `hf_extra` are not compared.
    """

    name: str = field(default="custom", compare=False)
    family: str = "custom"
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: Optional[int] = None
    head_dim: Optional[int] = None
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    attention_bias: str = "none"
    qk_norm: str = "none"
    attention_sinks: bool = False
    local_attention_layers: int = 0
    local_attention_window: int = 0
    first_dense_layers: int = 0
    moe_every: int = 1
    mlp_only_layers: Tuple[int, ...] = ()
    dense_intermediate_size: int = 0
    dense_glu: bool = True
    num_experts: int
    top_k: int
    expert_intermediate_size: int
    expert_glu: bool = True
    expert_bias: bool = False
    num_shared_experts: int = 0
    shared_intermediate_size: int = 0
    shared_expert_gate: bool = False
    residual_intermediate_size: int = 0
    moe_latent_size: int = 0
    mlp_bias: bool = False
    router: Optional[RouterConfig] = None
    router_bias: bool = False
    selection_bias: bool = False
    tie_embeddings: bool = False
    encoder_layers: int = 0
    mtp_layers: int = 0
    max_context: int = 0
    activation: str = "silu"
    vision_config: Optional[Mapping[str, Any]] = field(default=None, hash=False)
    layer_mixers: Tuple[str, ...] = ()
    layer_ffns: Tuple[str, ...] = ()
    mamba: Optional[Mapping[str, Any]] = field(default=None, hash=False)
    hf_extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    # ------------------------------------------------------------------ validation
    def __post_init__(self):
        def need(ok, msg):
            if not ok:
                raise ValueError(f"ModelConfig({self.name!r}): {msg}")

        def pos_int(attr, lo=1):
            v = getattr(self, attr)
            need(is_int(v) and v >= lo, f"{attr} must be an int >= {lo}, got {v!r}")
            hi = MAX_SIZE.get(attr)
            if hi is not None and v > hi:
                need(False, f"{attr}={v:,} exceeds the bound {hi:,} (an absurd size)")

        need(isinstance(self.name, str), f"name must be a str, got {self.name!r}")
        fams = registry.names() + ("custom",)
        need(self.family in fams, f"family must be one of {fams}, got {self.family!r}")
        for a in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_experts", "top_k",
                  "expert_intermediate_size", "moe_every"):
            pos_int(a)
        for a in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                  "local_attention_layers", "local_attention_window", "first_dense_layers", "dense_intermediate_size",
                  "num_shared_experts", "shared_intermediate_size", "residual_intermediate_size", "encoder_layers",
                  "mtp_layers", "max_context", "moe_latent_size"):
            pos_int(a, 0)
        for a in ("attention_sinks", "dense_glu", "expert_glu", "expert_bias", "shared_expert_gate", "router_bias",
                  "selection_bias", "tie_embeddings", "mlp_bias"):
            need(isinstance(getattr(self, a), bool), f"{a} must be a bool, got {getattr(self, a)!r}")
        need(isinstance(self.activation, str), f"activation must be a str, got {self.activation!r}")
        if self.num_kv_heads is None:
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        if self.head_dim is None:
            need(self.hidden_size % self.num_heads == 0,
                 f"hidden_size={self.hidden_size} is not a multiple of num_heads={self.num_heads}; give head_dim")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        pos_int("num_kv_heads")
        pos_int("head_dim")
        need(self.num_heads % self.num_kv_heads == 0,
             f"num_kv_heads={self.num_kv_heads} must divide num_heads={self.num_heads}")
        need(self.attention_bias in ATTENTION_BIASES,
             f"attention_bias must be one of {ATTENTION_BIASES}, got {self.attention_bias!r}")
        need(self.qk_norm in QK_NORMS, f"qk_norm must be one of {QK_NORMS}, got {self.qk_norm!r}")
        if self.kv_lora_rank > 0:
            need(self.qk_rope_head_dim > 0 and self.v_head_dim > 0,
                 "MLA (kv_lora_rank > 0) needs qk_rope_head_dim > 0 and v_head_dim > 0")
            need(self.attention_bias in ("none", "all"), "MLA supports attention_bias 'none' or 'all'")
            need(self.qk_norm == "none", "MLA has its own latent norms; qk_norm must be 'none'")
        else:
            need(self.q_lora_rank == 0 and self.qk_nope_head_dim == 0 and self.qk_rope_head_dim == 0
                 and self.v_head_dim == 0, "q_lora_rank / qk_*_head_dim / v_head_dim need kv_lora_rank > 0 (MLA)")
        if self.qk_norm == "proj":
            need(self.num_heads * self.head_dim == self.hidden_size,
                 "qk_norm='proj' (OLMoE) normalises q over hidden_size: needs num_heads * head_dim == hidden_size")
        # layers
        mlo = self.mlp_only_layers
        need(isinstance(mlo, (tuple, list)) and all(is_int(i) for i in mlo),
             f"mlp_only_layers must be a sequence of ints, got {mlo!r}")
        mlo = tuple(sorted(set(int(i) for i in mlo)))
        need(all(0 <= i < self.num_layers for i in mlo),
             f"mlp_only_layers {mlo} out of range for num_layers={self.num_layers}")
        object.__setattr__(self, "mlp_only_layers", mlo)
        self._check_layer_kinds(need)
        need(self.first_dense_layers <= self.num_layers,
             f"first_dense_layers={self.first_dense_layers} exceeds num_layers={self.num_layers}")
        need(self.encoder_layers < self.num_layers,
             f"encoder_layers={self.encoder_layers} must be < num_layers={self.num_layers} (the rest are decoder layers)")
        moe = self.moe_layers
        need(len(moe) > 0, "no layer is a MoE layer (check first_dense_layers, moe_every and mlp_only_layers"
                           + (", layer_ffns)" if self.layer_ffns else ")"))
        n_dense = len(self.dense_mlp_layers)
        if n_dense:
            need(self.dense_intermediate_size > 0, f"{n_dense} dense layers need dense_intermediate_size > 0")
        n_attn = len(self.attention_layers)
        need(self.local_attention_layers <= n_attn,
             f"local_attention_layers={self.local_attention_layers} exceeds the {n_attn} attention layers"
             if self.layer_mixers else
             f"local_attention_layers={self.local_attention_layers} exceeds num_layers={self.num_layers}")
        need((self.local_attention_layers == 0) == (self.local_attention_window == 0),
             "local_attention_layers and local_attention_window must be both 0 or both > 0")
        # experts
        need(self.top_k <= self.num_experts, f"top_k={self.top_k} exceeds num_experts={self.num_experts}")
        need((self.num_shared_experts == 0) == (self.shared_intermediate_size == 0),
             "num_shared_experts and shared_intermediate_size must be both 0 or both > 0")
        need(not self.shared_expert_gate or self.num_shared_experts > 0, "shared_expert_gate needs shared experts")
        if self.router is None:
            object.__setattr__(self, "router", _default_router(self.family, self.num_experts, self.top_k))
        need(isinstance(self.router, RouterConfig), f"router must be a RouterConfig, got {type(self.router).__name__}")
        need(self.router.top_k == self.top_k, f"router.top_k={self.router.top_k} != top_k={self.top_k}")
        need(self.router.num_experts in (None, self.num_experts),
             f"router.num_experts={self.router.num_experts} != num_experts={self.num_experts}")
        need(self.num_experts % self.router.n_group == 0,
             f"router.n_group={self.router.n_group} must divide num_experts={self.num_experts}")
        if self.vision_config is not None:
            need(isinstance(self.vision_config, Mapping), "vision_config must be a mapping (the HF vision_config)")
            vc = self.vision_config
            vc = {k: (vc.get(k) if vc.get(k) is not None else d) for k, d in LLAMA4_VISION_DEFAULTS.items()}
            object.__setattr__(self, "vision_config", vc)
            vision_tensors(vc, self.hidden_size)  # validates it
        need(isinstance(self.hf_extra, Mapping), "hf_extra must be a mapping")
        n = sum(t.numel for t in tensors(self, include_vision=True, include_mtp=True))
        need(n <= MAX_PARAMS, f"{n:.3g} parameters exceed the bound {MAX_PARAMS:.3g} (an absurd size)")

    def _check_layer_kinds(self, need) -> None:
        """layer_mixers / layer_ffns / mamba (hybrid designs): normalised to tuples and a plain dict."""
        L = self.num_layers
        for attr, kinds in (("layer_mixers", MIXERS), ("layer_ffns", FFNS)):
            v = getattr(self, attr)
            need(isinstance(v, (tuple, list)) and all(isinstance(k, str) for k in v),
                 f"{attr} must be a sequence of str, got {v!r}")
            v = tuple(v)
            need(len(v) in (0, L), f"{attr} has {len(v)} entries for num_layers={L}")
            bad = sorted(set(v) - set(kinds))
            need(not bad, f"{attr}: unknown kind(s) {bad}; expected one of {kinds}")
            object.__setattr__(self, attr, v)
        if self.layer_ffns:
            need(self.first_dense_layers == 0 and self.moe_every == 1 and not self.mlp_only_layers,
                 "layer_ffns places the MoE blocks: first_dense_layers, moe_every and mlp_only_layers must keep "
                 "their defaults")
        if self.layer_mixers or self.layer_ffns:
            need(self.encoder_layers == 0, "layer_mixers / layer_ffns describe decoder-only models (encoder_layers=0)")
            empty = [i for i in range(L) if self.mixer(i) == "none" and self.ffn(i) == "none"]
            need(not empty, f"layers {empty} have neither a mixer nor a feed-forward block")
        kinds = tuple(k for k in ("mamba", "mamba2") if k in self.layer_mixers)
        if kinds:
            need(self.mamba is not None, f"layers of kind {'/'.join(kinds)} need the mamba sizes")
            try:
                object.__setattr__(self, "mamba", _mamba.normalize(self.mamba, kinds))
            except ValueError as exc:
                need(False, str(exc))
        else:
            need(self.mamba is None, "mamba sizes given but no layer_mixers entry is 'mamba' or 'mamba2'")

    # ------------------------------------------------------------------ structure
    @property
    def is_mla(self) -> bool:
        """True when attention is DeepSeek's multi-head latent attention (kv_lora_rank > 0)."""
        return self.kv_lora_rank > 0

    @property
    def is_encoder_decoder(self) -> bool:
        """True for encoder-decoder designs (Switch, GShard): encoder_layers > 0."""
        return self.encoder_layers > 0

    def is_moe_layer(self, i: int) -> bool:
        """True if layer i holds an MoE block (see the class docstring for the rule)."""
        if self.layer_ffns:
            return self.layer_ffns[i] == "moe"
        return i >= self.first_dense_layers and i not in self.mlp_only_layers and (i + 1) % self.moe_every == 0

    def mixer(self, i: int) -> str:
        """The token mixer of layer i: "attention", "mamba", "mamba2" or "none"."""
        return self.layer_mixers[i] if self.layer_mixers else "attention"

    def ffn(self, i: int) -> str:
        """The feed-forward block of layer i: "moe", "dense" or "none"."""
        if self.layer_ffns:
            return self.layer_ffns[i]
        return "moe" if self.is_moe_layer(i) else "dense"

    @property
    def moe_layers(self) -> Tuple[int, ...]:
        """Indices of the MoE layers (encoder layers first for encoder-decoder models)."""
        return tuple(i for i in range(self.num_layers) if self.is_moe_layer(i))

    @property
    def dense_layers(self) -> Tuple[int, ...]:
        """Indices of the layers without an MoE block (with a dense MLP, or in a hybrid design also none)."""
        return tuple(i for i in range(self.num_layers) if not self.is_moe_layer(i))

    @property
    def dense_mlp_layers(self) -> Tuple[int, ...]:
        """Indices of the layers with a dense MLP (dense_layers unless layer_ffns says otherwise)."""
        return tuple(i for i in range(self.num_layers) if self.ffn(i) == "dense")

    @property
    def attention_layers(self) -> Tuple[int, ...]:
        """Indices of the layers whose mixer is self-attention (every layer unless layer_mixers says otherwise)."""
        return tuple(i for i in range(self.num_layers) if self.mixer(i) == "attention")

    @property
    def mamba_layers(self) -> Tuple[int, ...]:
        """Indices of the layers whose mixer is a Mamba or Mamba-2 state-space mixer."""
        return tuple(i for i in range(self.num_layers) if self.mixer(i) in ("mamba", "mamba2"))

    @property
    def expert_combinations(self) -> int:
        """C(E, k): distinct expert sets per token per MoE layer."""
        return expert_combinations(self.num_experts, self.top_k)

    # ------------------------------------------------------------------ accounting (moepy/configs/accounting.py)
    def tensors(self, include_vision: bool = True, include_mtp: bool = False) -> List[Tensor]:
        """The weight tensors of the model, one entry per kind with its layer count (generic names)."""
        return tensors(self, include_vision, include_mtp)

    def count_params(self) -> ParamCount:
        """Parameters by component: see ParamCount (total, active, *_non_embedding, activation_ratio ...)."""
        return count_params(self)

    def memory_bytes(self, dtype="bf16", *, experts_only: bool = False, group_size: Optional[int] = None,
                     include_mtp: bool = False, include_vision: bool = True) -> int:
        """Bytes to hold the weights in `dtype` (see WEIGHT_FORMATS: fp32, bf16, fp16, fp8, int8, int4, mxfp4).

        A quantized format stores every weight matrix with its group or block scales; vectors (norms, biases,
        sinks) and the router stay in bf16. experts_only=True quantizes the routed experts only (gpt-oss's
        published MXFP4 checkpoints). group_size overrides the format's group (int8, int4, mxfp4)."""
        return memory_bytes(self, dtype, experts_only=experts_only, group_size=group_size, include_mtp=include_mtp,
                            include_vision=include_vision)

    def flops_per_token(self, context: int = 0) -> FlopCount:
        """Forward FLOPs of one token attending to `context` tokens (its KV cache), by component."""
        return flops_per_token(self, context)

    def kv_cache_bytes(self, context: int, dtype="bf16") -> int:
        """Bytes of KV cache for `context` tokens of one sequence (MLA: the compressed latent)."""
        return kv_cache_bytes(self, context, dtype)

    def recurrent_state_bytes(self, dtype="fp32") -> int:
        """Bytes of the Mamba layers' recurrent state of one sequence (constant in the context; 0 without them)."""
        return recurrent_state_bytes(self, dtype)

    def summary(self, context: int = 4096) -> str:
        """A readable breakdown: parameters by component, memory per format, FLOPs per token at `context`."""
        return summary(self, context)

    def scaled(self, **sizes) -> "ModelConfig":
        """A small instance of the same design, for random-weight experiments and tests (see
        moepy.configs.scaling.scaled for the sizes it takes and what it keeps)."""
        return scaled(self, **sizes)

    def replace(self, **changes) -> "ModelConfig":
        """dataclasses.replace, re-validated (a changed expert count resizes the router, keeping its kind)."""
        if ("num_experts" in changes or "top_k" in changes) and "router" not in changes:
            E = changes.get("num_experts", self.num_experts)
            k = changes.get("top_k", self.top_k)
            changes["router"] = dataclasses.replace(self.router, num_experts=E, top_k=k)
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ Hugging Face config.json (moepy/families)
    @classmethod
    def from_hf(cls, config, *, name: Optional[str] = None) -> "ModelConfig":
        """Read a Hugging Face config.json: a path (file or directory), a dict, or a transformers config object.

        The family is found from model_type (or, for e.g. Kimi K2's kimi_k2, from `architectures`); its module in
        moepy/families reads the fields. Fields that set sizes are required (a missing one raises ValueError
        naming it); flags default as in transformers. Unmodelled fields go to hf_extra for to_hf()."""
        d = load_hf_config(config)
        fam, mt = registry.for_hf_config(d)
        if fam.read_hf is None:
            raise ValueError(f"model_type {mt!r}: moepy reads this family's checkpoints but not its config.json "
                             f"as a ModelConfig")
        try:
            kw, extra = fam.read_hf(d, d.get("model_type") or mt)
        except (OverflowError, ZeroDivisionError, RecursionError) as exc:  # e.g. 1e999 or a zero width
            raise ValueError(f"{mt} config.json: a field holds an impossible value ({type(exc).__name__}: {exc})") \
                from None
        kw["name"] = name or d.get("_name_or_path") or d.get("model_type") or mt
        return cls(**kw, hf_extra=extra)

    def to_hf(self) -> dict:
        """This configuration as a Hugging Face config.json dict that transformers builds (and from_hf reads back
        to an equal ModelConfig). Raises ValueError naming what the family's config.json cannot express."""
        fam = registry.get(self.family) if self.family != "custom" else None
        if fam is None or fam.write_hf is None:
            have = tuple(f.name for f in registry.all_families() if f.write_hf is not None)
            raise ValueError(f"family {self.family!r} has no Hugging Face config.json; supported: {have}")
        d = merge_extra(fam.write_hf(self), self.hf_extra)
        if self.family == "dbrx":  # transformers' DbrxAttention reads attn_config.rope_theta (no default)
            d["attn_config"].setdefault("rope_theta", 500000.0)
        back = ModelConfig.from_hf(d, name=self.name)
        diffs = _diff(self, back)
        if diffs:
            raise ValueError(f"ModelConfig({self.name!r}).to_hf(): a {self.family} config.json cannot express "
                             + "; ".join(f"{f} (have {a!r}, config.json gives {b!r})" for f, a, b in diffs))
        return d

    def save_hf(self, path) -> None:
        """Write to_hf() as JSON to `path` (a file, or a directory that gets config.json)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        with open(path, "w") as f:
            json.dump(self.to_hf(), f, indent=2)
            f.write("\n")


def _diff(a: ModelConfig, b: ModelConfig) -> List[Tuple[str, Any, Any]]:
    out = []
    for f in dataclasses.fields(ModelConfig):
        if f.name in ("name",) or not f.compare:
            continue
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if va != vb:
            out.append((f.name, va, vb))
    return out

"""Model configurations: presets for every system in MoE's history, HF config.json mapping, accounting.

`ModelConfig` describes a decoder MoE model in one flat, frozen, validated dataclass: vocabulary, width,
layers, attention (GQA or DeepSeek's MLA), which layers are MoE, the experts (routed, shared, gated,
Arctic's residual dense MLP) and the `RouterConfig` that picks them.  From it:

* ``cfg.count_params()``      total / active parameters, with and without embeddings and head
* ``cfg.memory_bytes(dtype)`` weight memory for fp32, bf16, fp16, fp8, int8, int4, mxfp4 (scales included)
* ``cfg.flops_per_token(n)``  forward FLOPs of one token that attends to n tokens, split by component
* ``cfg.kv_cache_bytes(n)``   KV-cache bytes for n tokens
* ``cfg.expert_combinations`` C(E, k): the distinct expert sets a token can take in one MoE layer
* ``cfg.scaled()``            a tiny instance of the same design, for random-weight experiments and tests
* ``ModelConfig.from_hf(path_or_dict)`` / ``cfg.to_hf()``  the Hugging Face config.json, both ways

Presets (``names()``, ``get(name)``) carry the published hyper-parameters of Mixtral, DeepSeekMoE,
DeepSeek-V2/V3, Kimi K2, Qwen1.5/2/3-MoE, OLMoE, DBRX, Grok-1, Arctic, Llama 4, gpt-oss, Switch, GShard
and GLaM; each preset's docstring cites its source (the presets live in presets.py, the config.json
mapping in hf_config.py; both are re-exported here).

Counting conventions (what vendors mean by "active" differs; see docs/configs.md):
``ParamCount.total`` / ``.active`` count the input embedding and the output head (once if tied);
``.total_non_embedding`` / ``.active_non_embedding`` count neither; ``.active_without_input_embedding``
counts the head but not the embedding table (a lookup does no matmul work): the convention of
DeepSeek-V2/V3 and OpenAI's gpt-oss model card.  ``total`` includes a vision tower if the model has one
(Llama 4) and never includes multi-token-prediction modules (reported apart as ``mtp``).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .routing import RouterConfig

__all__ = [
    "FAMILIES", "HF_FAMILIES", "FORMATS", "FlopCount", "ModelConfig", "ParamCount", "Tensor", "WeightFormat",
    "expert_combinations", "get", "names", "table",
]

FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "dbrx", "deepseek", "deepseek_v2", "deepseek_v3",
            "llama4", "gpt_oss", "grok", "arctic", "switch", "gshard", "glam", "custom")
# Families whose Hugging Face config.json from_hf()/to_hf() read and write ("deepseek" is DeepSeekMoE's
# remote-code config; the other nine are native transformers classes).
HF_FAMILIES = FAMILIES[:10]
ATTENTION_BIASES = ("none", "qkv", "all")
QK_NORMS = ("none", "head", "proj", "l2")
PARTS = ("embedding", "lm_head", "attention", "norms", "dense_mlp", "routed_experts", "shared_experts", "router",
         "vision", "mtp")


def expert_combinations(num_experts: int, top_k: int) -> int:
    """C(E, k): how many distinct sets of k experts a token can be routed to in one MoE layer.

    Mixtral's 8 experts, top-2 give 28; 128 experts, top-2 give 8,128; DeepSeek-V3's 256, top-8 give 4.1e14.
    """
    return math.comb(int(num_experts), int(top_k))


# ---------------------------------------------------------------------------------------------------------
# Weight formats
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightFormat:
    """How one weight matrix is stored: `bits` per weight plus one scale of `scale_bits` per `group`
    consecutive weights along the input dimension, or per `block` (rows, cols) tile."""

    name: str
    bits: int
    group: int = 0
    scale_bits: int = 0
    block: Tuple[int, int] = ()
    description: str = ""

    @property
    def quantized(self) -> bool:
        return self.bits < 16

    def matrix_bits(self, rows: int, cols: int, group: Optional[int] = None) -> int:
        """Bits to store one (rows, cols) matrix, scales included."""
        n = rows * cols * self.bits
        if self.block:
            br, bc = self.block
            n += -(-rows // br) * -(-cols // bc) * self.scale_bits
        elif self.group or group:
            g = group or self.group
            n += rows * -(-cols // g) * self.scale_bits
        return n


FORMATS: Dict[str, WeightFormat] = {
    "fp32": WeightFormat("fp32", 32, description="IEEE float32"),
    "bf16": WeightFormat("bf16", 16, description="bfloat16"),
    "fp16": WeightFormat("fp16", 16, description="IEEE float16"),
    "fp8": WeightFormat("fp8", 8, block=(128, 128), scale_bits=32,
                        description="float8 e4m3, one fp32 scale per 128x128 block (DeepSeek-V3's checkpoint format)"),
    "int8": WeightFormat("int8", 8, group=32, scale_bits=16,
                         description="int8, one fp16 scale per 32 weights (ggml Q8_0, 8.5 bits/weight)"),
    "int4": WeightFormat("int4", 4, group=32, scale_bits=16,
                         description="int4, one fp16 scale per 32 weights (ggml Q4_0, 4.5 bits/weight)"),
    "mxfp4": WeightFormat("mxfp4", 4, group=32, scale_bits=8,
                          description="OCP MXFP4: e2m1, one e8m0 scale per 32 weights (gpt-oss experts, 4.25 bits)"),
}
_FORMAT_ALIASES = {"float32": "fp32", "f32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16",
                   "f16": "fp16", "float8": "fp8", "float8_e4m3fn": "fp8", "e4m3": "fp8", "q8_0": "int8",
                   "q4_0": "int4", "mxfp4_e2m1": "mxfp4"}


def _format(dtype) -> WeightFormat:
    if isinstance(dtype, WeightFormat):
        return dtype
    key = str(getattr(dtype, "name", dtype)).lower().replace("torch.", "")
    key = _FORMAT_ALIASES.get(key, key)
    if key not in FORMATS:
        raise ValueError(f"unknown weight format {dtype!r}; expected one of {sorted(FORMATS)} "
                         f"(or aliases {sorted(_FORMAT_ALIASES)})")
    return FORMATS[key]


# ---------------------------------------------------------------------------------------------------------
# Accounting results
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tensor:
    """One kind of weight tensor, repeated `count` times (once per layer that has it).

    shape is the nn.Linear (out, in) layout, with a leading E for a stack of expert matrices."""

    name: str
    part: str
    shape: Tuple[int, ...]
    count: int = 1

    @property
    def numel(self) -> int:
        return math.prod(self.shape) * self.count


@dataclass(frozen=True)
class ParamCount:
    """Parameters of a ModelConfig by component (see the module docstring for the conventions)."""

    embedding: int
    lm_head: int
    attention: int
    norms: int
    dense_mlp: int
    routed_experts: int
    routed_experts_active: int
    shared_experts: int
    router: int
    vision: int
    mtp: int
    num_experts: int
    top_k: int
    moe_layers: int
    dense_layers: int
    tied_embeddings: bool

    @property
    def total(self) -> int:
        """Every parameter, the embedding and the head included (the head once if tied), the vision tower
        included, multi-token-prediction modules excluded."""
        return (self.embedding + self.lm_head + self.attention + self.norms + self.dense_mlp + self.routed_experts
                + self.shared_experts + self.router + self.vision)

    @property
    def active(self) -> int:
        """Parameters one text token uses: all but the unselected routed experts and the vision tower."""
        return (self.embedding + self.lm_head + self.attention + self.norms + self.dense_mlp
                + self.routed_experts_active + self.shared_experts + self.router)

    @property
    def total_non_embedding(self) -> int:
        return self.total - self.embedding - self.lm_head

    @property
    def active_non_embedding(self) -> int:
        return self.active - self.embedding - self.lm_head

    @property
    def active_without_input_embedding(self) -> int:
        """Active minus the input embedding table (a lookup, no matmul); with tied embeddings the table
        is the head and stays. DeepSeek-V2/V3's and gpt-oss's convention."""
        return self.active - (0 if self.tied_embeddings else self.embedding)

    @property
    def activation_ratio(self) -> float:
        return self.active / self.total

    @property
    def experts_per_layer(self) -> int:
        return self.num_experts

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for p in ("total", "active", "total_non_embedding", "active_non_embedding", "active_without_input_embedding",
                  "activation_ratio"):
            d[p] = getattr(self, p)
        return d


@dataclass(frozen=True)
class FlopCount:
    """Forward FLOPs (2 per multiply-add) of one token that attends to `context` tokens.

    The linear parts are 2 x their active weights; `attention_scores` is QK^T and AV against the context
    (local-attention layers see at most their window). Norms, activations and softmax are not counted."""

    context: int
    attention_proj: int
    attention_scores: int
    dense_mlp: int
    routed_experts: int
    shared_experts: int
    router: int
    lm_head: int

    @property
    def attention(self) -> int:
        return self.attention_proj + self.attention_scores

    @property
    def total(self) -> int:
        return (self.attention_proj + self.attention_scores + self.dense_mlp + self.routed_experts
                + self.shared_experts + self.router + self.lm_head)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["attention"] = self.attention
        d["total"] = self.total
        return d


# ---------------------------------------------------------------------------------------------------------
# ModelConfig
# ---------------------------------------------------------------------------------------------------------
def _default_router(family: str, num_experts: int, top_k: int) -> RouterConfig:
    E, k = num_experts, top_k
    if family == "mixtral":
        return RouterConfig.mixtral(E, k)
    if family == "qwen2_moe":
        return RouterConfig.qwen2_moe(E, k, norm_topk_prob=False)
    if family == "qwen3_moe":
        return RouterConfig.qwen3_moe(E, k, norm_topk_prob=True)
    if family == "olmoe":
        return RouterConfig.olmoe(E, k, norm_topk_prob=False)
    if family == "dbrx":
        return RouterConfig.dbrx(E, k, 1.0)
    if family == "deepseek":
        return RouterConfig(top_k=k, scoring="softmax", num_experts=E, family="deepseek")
    if family == "deepseek_v2":
        return RouterConfig.deepseek_v2(E, k, routed_scaling_factor=1.0, topk_method="greedy")
    if family == "deepseek_v3":
        return RouterConfig.deepseek_v3(E, k, n_group=1, topk_group=1)
    if family == "llama4":
        return RouterConfig.llama4(E, k)
    if family == "gpt_oss":
        return RouterConfig.gpt_oss(E, k)
    if family == "grok":
        return RouterConfig(top_k=k, scoring="softmax", num_experts=E, family="grok")
    if family == "arctic":
        return dataclasses.replace(RouterConfig.mixtral(E, k), family="arctic")
    if family == "switch":
        return RouterConfig.switch(E)
    if family == "gshard":
        return RouterConfig.gshard(E)
    if family == "glam":
        return RouterConfig(top_k=k, scoring="softmax", normalize=True, num_experts=E, family="glam")
    return RouterConfig(top_k=k, scoring="softmax", normalize=True, num_experts=E)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


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
    dense MLP beside the MoE in every MoE layer (its own norm included).
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
    router: Optional[RouterConfig] = None
    router_bias: bool = False
    selection_bias: bool = False
    tie_embeddings: bool = False
    encoder_layers: int = 0
    mtp_layers: int = 0
    max_context: int = 0
    activation: str = "silu"
    vision_config: Optional[Mapping[str, Any]] = field(default=None, hash=False)
    hf_extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    # ------------------------------------------------------------------ validation
    def __post_init__(self):
        def need(ok, msg):
            if not ok:
                raise ValueError(f"ModelConfig({self.name!r}): {msg}")

        def pos_int(attr, lo=1):
            v = getattr(self, attr)
            need(_is_int(v) and v >= lo, f"{attr} must be an int >= {lo}, got {v!r}")

        need(isinstance(self.name, str), f"name must be a str, got {self.name!r}")
        need(self.family in FAMILIES, f"family must be one of {FAMILIES}, got {self.family!r}")
        for a in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_experts", "top_k",
                  "expert_intermediate_size", "moe_every"):
            pos_int(a)
        for a in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                  "local_attention_layers", "local_attention_window", "first_dense_layers", "dense_intermediate_size",
                  "num_shared_experts", "shared_intermediate_size", "residual_intermediate_size", "encoder_layers",
                  "mtp_layers", "max_context"):
            pos_int(a, 0)
        for a in ("attention_sinks", "dense_glu", "expert_glu", "expert_bias", "shared_expert_gate", "router_bias",
                  "selection_bias", "tie_embeddings"):
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
        need(isinstance(mlo, (tuple, list)) and all(_is_int(i) for i in mlo),
             f"mlp_only_layers must be a sequence of ints, got {mlo!r}")
        mlo = tuple(sorted(set(int(i) for i in mlo)))
        need(all(0 <= i < self.num_layers for i in mlo),
             f"mlp_only_layers {mlo} out of range for num_layers={self.num_layers}")
        object.__setattr__(self, "mlp_only_layers", mlo)
        need(self.first_dense_layers <= self.num_layers,
             f"first_dense_layers={self.first_dense_layers} exceeds num_layers={self.num_layers}")
        need(self.encoder_layers < self.num_layers,
             f"encoder_layers={self.encoder_layers} must be < num_layers={self.num_layers} (the rest are decoder layers)")
        moe = self.moe_layers
        need(len(moe) > 0, "no layer is a MoE layer (check first_dense_layers, moe_every and mlp_only_layers)")
        if len(moe) < self.num_layers:
            need(self.dense_intermediate_size > 0,
                 f"{self.num_layers - len(moe)} dense layers need dense_intermediate_size > 0")
        need(self.local_attention_layers <= self.num_layers,
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
            vc = {k: (vc.get(k) if vc.get(k) is not None else d) for k, d in _LLAMA4_VISION_DEFAULTS.items()}
            object.__setattr__(self, "vision_config", vc)
            _vision_tensors(vc, self.hidden_size)  # validates it
        need(isinstance(self.hf_extra, Mapping), "hf_extra must be a mapping")

    # ------------------------------------------------------------------ structure
    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def is_encoder_decoder(self) -> bool:
        return self.encoder_layers > 0

    def is_moe_layer(self, i: int) -> bool:
        return i >= self.first_dense_layers and i not in self.mlp_only_layers and (i + 1) % self.moe_every == 0

    @property
    def moe_layers(self) -> Tuple[int, ...]:
        """Indices of the MoE layers (encoder layers first for encoder-decoder models)."""
        return tuple(i for i in range(self.num_layers) if self.is_moe_layer(i))

    @property
    def dense_layers(self) -> Tuple[int, ...]:
        return tuple(i for i in range(self.num_layers) if not self.is_moe_layer(i))

    @property
    def expert_combinations(self) -> int:
        """C(E, k): distinct expert sets per token per MoE layer."""
        return expert_combinations(self.num_experts, self.top_k)

    # ------------------------------------------------------------------ tensor inventory
    def _attention_tensors(self) -> List[Tuple[str, Tuple[int, ...]]]:
        H, nh, nkv, hd = self.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim
        t: List[Tuple[str, Tuple[int, ...]]] = []
        if self.is_mla:
            biased = self.attention_bias == "all"
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                t += [("q_a_proj", (self.q_lora_rank, H))]
                t += [("q_a_proj.bias", (self.q_lora_rank,))] if biased else []
                t += [("q_a_layernorm", (self.q_lora_rank,)), ("q_b_proj", (nh * qk, self.q_lora_rank))]
            else:
                t += [("q_proj", (nh * qk, H))]
            kv_a = self.kv_lora_rank + self.qk_rope_head_dim
            t += [("kv_a_proj_with_mqa", (kv_a, H))] + ([("kv_a_proj_with_mqa.bias", (kv_a,))] if biased else [])
            t += [("kv_a_layernorm", (self.kv_lora_rank,)),
                  ("kv_b_proj", (nh * (self.qk_nope_head_dim + self.v_head_dim), self.kv_lora_rank)),
                  ("o_proj", (H, nh * self.v_head_dim))]
            t += [("o_proj.bias", (H,))] if biased else []
            return t
        t = [("q_proj", (nh * hd, H)), ("k_proj", (nkv * hd, H)), ("v_proj", (nkv * hd, H)), ("o_proj", (H, nh * hd))]
        if self.attention_bias != "none":
            t += [("q_proj.bias", (nh * hd,)), ("k_proj.bias", (nkv * hd,)), ("v_proj.bias", (nkv * hd,))]
        if self.attention_bias == "all":
            t += [("o_proj.bias", (H,))]
        if self.qk_norm == "head":
            t += [("q_norm", (hd,)), ("k_norm", (hd,))]
        elif self.qk_norm == "proj":
            t += [("q_norm", (nh * hd,)), ("k_norm", (nkv * hd,))]
        if self.attention_sinks:
            t += [("sinks", (nh,))]
        return t

    def _mlp_tensors(self, prefix: str, width: int, glu: bool) -> List[Tuple[str, Tuple[int, ...]]]:
        H = self.hidden_size
        up = [(f"{prefix}.gate_proj", (width, H)), (f"{prefix}.up_proj", (width, H))] if glu else \
            [(f"{prefix}.up_proj", (width, H))]
        return up + [(f"{prefix}.down_proj", (H, width))]

    def _moe_tensors(self) -> List[Tuple[str, str, Tuple[int, ...]]]:
        """(name, part, shape) of one MoE layer's MLP block."""
        H, E, I = self.hidden_size, self.num_experts, self.expert_intermediate_size
        t = [("router", "router", (E, H))]
        if self.router_bias:
            t.append(("router.bias", "router", (E,)))
        if self.selection_bias:
            t.append(("router.e_score_correction_bias", "router", (E,)))
        up = 2 * I if self.expert_glu else I
        t += [("experts.gate_up_proj" if self.expert_glu else "experts.up_proj", "routed_experts", (E, up, H)),
              ("experts.down_proj", "routed_experts", (E, H, I))]
        if self.expert_bias:
            t += [("experts.gate_up_proj_bias" if self.expert_glu else "experts.up_proj_bias", "routed_experts", (E, up)),
                  ("experts.down_proj_bias", "routed_experts", (E, H))]
        if self.shared_intermediate_size:
            t += [(n, "shared_experts", s)
                  for n, s in self._mlp_tensors("shared_experts", self.shared_intermediate_size, self.expert_glu)]
            if self.shared_expert_gate:
                t.append(("shared_expert_gate", "shared_experts", (1, H)))
        if self.residual_intermediate_size:
            t += [(n, "dense_mlp", s) for n, s in self._mlp_tensors("residual_mlp", self.residual_intermediate_size, True)]
            t.append(("residual_layernorm", "norms", (H,)))
        return t

    def tensors(self, include_vision: bool = True, include_mtp: bool = False) -> List[Tensor]:
        """The weight tensors of the model, one entry per kind with its layer count (generic names)."""
        H, V, L = self.hidden_size, self.vocab_size, self.num_layers
        out: List[Tensor] = []

        def add(name, part, shape, count=1):
            if count > 0:
                out.append(Tensor(name, part, tuple(int(s) for s in shape), int(count)))

        add("embed_tokens", "embedding", (V, H))
        if not self.tie_embeddings:
            add("lm_head", "lm_head", (V, H))
        add("norm", "norms", (H,), 2 if self.is_encoder_decoder else 1)
        attn = self._attention_tensors()
        for n, s in attn:
            add(f"layers.self_attn.{n}", "attention", s, L)
        add("layers.input_layernorm", "norms", (H,), L)
        add("layers.post_attention_layernorm", "norms", (H,), L)
        if self.is_encoder_decoder:
            n_dec = L - self.encoder_layers
            for n, s in attn:
                add(f"layers.cross_attn.{n}", "attention", s, n_dec)
            add("layers.cross_attn_layernorm", "norms", (H,), n_dec)
        n_dense, n_moe = len(self.dense_layers), len(self.moe_layers)
        for n, s in self._mlp_tensors("layers.mlp", self.dense_intermediate_size, self.dense_glu):
            add(n, "dense_mlp", s, n_dense)
        for n, part, s in self._moe_tensors():
            add(f"layers.mlp.{n}", part, s, n_moe)
        if include_vision and self.vision_config is not None:
            for n, s, cnt in _vision_tensors(self.vision_config, H):
                add(f"vision.{n}", "vision", s, cnt)
        if include_mtp and self.mtp_layers:
            m = self.mtp_layers
            for n, s in attn:
                add(f"mtp.self_attn.{n}", "mtp", s, m)
            for n, _, s in self._moe_tensors():
                add(f"mtp.mlp.{n}", "mtp", s, m)
            add("mtp.eh_proj", "mtp", (H, 2 * H), m)
            add("mtp.norms", "mtp", (5 * H,), m)  # input, post-attention, enorm, hnorm, shared_head.norm
        return out

    # ------------------------------------------------------------------ accounting
    def count_params(self) -> ParamCount:
        """Parameters by component: see ParamCount (total, active, *_non_embedding, activation_ratio ...)."""
        parts = dict.fromkeys(PARTS, 0)
        for t in self.tensors(include_vision=True, include_mtp=True):
            parts[t.part] += t.numel
        routed = parts["routed_experts"]
        return ParamCount(
            embedding=parts["embedding"], lm_head=parts["lm_head"], attention=parts["attention"], norms=parts["norms"],
            dense_mlp=parts["dense_mlp"], routed_experts=routed,
            routed_experts_active=routed * self.top_k // self.num_experts,
            shared_experts=parts["shared_experts"], router=parts["router"], vision=parts["vision"], mtp=parts["mtp"],
            num_experts=self.num_experts, top_k=self.top_k, moe_layers=len(self.moe_layers),
            dense_layers=len(self.dense_layers), tied_embeddings=self.tie_embeddings)

    def memory_bytes(self, dtype="bf16", *, experts_only: bool = False, group_size: Optional[int] = None,
                     include_mtp: bool = False, include_vision: bool = True) -> int:
        """Bytes to hold the weights in `dtype` (see FORMATS: fp32, bf16, fp16, fp8, int8, int4, mxfp4).

        A quantized format stores every weight matrix (attention, dense and expert MLPs, embedding, head,
        vision tower) with its group or block scales; vectors (norms, biases, sinks) and the router stay in
        bf16. experts_only=True quantizes the routed experts only and keeps the rest in bf16 (gpt-oss's
        published MXFP4 checkpoints). group_size overrides the format's group (int8, int4, mxfp4)."""
        fmt = _format(dtype)
        hi = FORMATS["bf16"] if fmt.quantized else fmt
        if group_size is not None:
            if not (_is_int(group_size) and group_size >= 1):
                raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
            if not fmt.group:
                raise ValueError(f"format {fmt.name} has no group size to override")
            fmt = dataclasses.replace(fmt, group=int(group_size))
        bits = 0
        for t in self.tensors(include_vision=include_vision, include_mtp=include_mtp):
            matrix = len(t.shape) >= 2 and min(t.shape[-2:]) > 1 and t.part != "router"
            use = fmt if matrix and (not experts_only or t.part == "routed_experts") else hi
            if len(t.shape) >= 2:
                lead = math.prod(t.shape[:-2]) * t.count
                bits += lead * use.matrix_bits(t.shape[-2], t.shape[-1])
            else:
                bits += t.numel * use.bits
        return -(-bits // 8)

    def _score_dims(self) -> Tuple[int, int]:
        """(query-key dim, value dim) summed over heads."""
        if self.is_mla:
            return (self.num_heads * (self.qk_nope_head_dim + self.qk_rope_head_dim), self.num_heads * self.v_head_dim)
        return self.num_heads * self.head_dim, self.num_heads * self.head_dim

    def flops_per_token(self, context: int = 0) -> FlopCount:
        """Forward FLOPs of one token attending to `context` tokens (its KV cache), by component.

        Local-attention layers attend to min(context, window) tokens; MLA is counted in its naive
        (non-absorbed) form; the router counts 2 E H per MoE layer; embedding lookups are free."""
        if not (_is_int(context) and context >= 0):
            raise ValueError(f"context must be an int >= 0, got {context!r}")
        p = self.count_params()
        dqk, dv = self._score_dims()
        n_local = self.local_attention_layers
        ctx_local = min(context, self.local_attention_window) if n_local else 0
        per_ctx = 2 * (dqk + dv)
        scores = per_ctx * ((self.num_layers - n_local) * context + n_local * ctx_local)
        if self.is_encoder_decoder:
            scores += per_ctx * (self.num_layers - self.encoder_layers) * context
        return FlopCount(context=context, attention_proj=2 * p.attention, attention_scores=scores,
                         dense_mlp=2 * p.dense_mlp, routed_experts=2 * p.routed_experts_active,
                         shared_experts=2 * p.shared_experts, router=2 * p.router,
                         lm_head=2 * self.vocab_size * self.hidden_size)

    def kv_cache_bytes(self, context: int, dtype="bf16") -> int:
        """Bytes of KV cache for `context` tokens (one sequence): 2 x kv_heads x head_dim per layer and token,
        or MLA's compressed kv_lora_rank + qk_rope_head_dim; local layers keep at most their window.
        dtype: fp32, bf16, fp16, fp8 or int8 (no scales counted)."""
        if not (_is_int(context) and context >= 0):
            raise ValueError(f"context must be an int >= 0, got {context!r}")
        fmt = _format(dtype)
        if fmt.bits not in (8, 16, 32):
            raise ValueError(f"kv_cache_bytes supports 8, 16 and 32-bit formats, got {fmt.name}")
        per = (self.kv_lora_rank + self.qk_rope_head_dim) if self.is_mla else 2 * self.num_kv_heads * self.head_dim
        n_local = self.local_attention_layers
        ctx_local = min(context, self.local_attention_window) if n_local else 0
        tokens = (self.num_layers - n_local) * context + n_local * ctx_local
        return tokens * per * fmt.bits // 8

    def summary(self, context: int = 4096) -> str:
        """A readable breakdown: parameters by component, memory per format, FLOPs per token at `context`."""
        p, f = self.count_params(), self.flops_per_token(context)
        lines = [f"{self.name} ({self.family}): {_fmt_count(p.total)} total, {_fmt_count(p.active)} active "
                 f"({100 * p.activation_ratio:.1f}%), {self.num_layers} layers ({p.moe_layers} MoE), "
                 f"{self.num_experts} experts top-{self.top_k}"
                 + (f" + {self.num_shared_experts} shared" if self.num_shared_experts else "")
                 + f", C(E,k) = {_fmt_combos(self.expert_combinations)}"]
        lines.append("  parameters:")
        for part in ("embedding", "lm_head", "attention", "norms", "dense_mlp", "routed_experts", "shared_experts",
                     "router", "vision", "mtp"):
            v = getattr(p, part)
            if v:
                extra = f"  (active {_fmt_count(p.routed_experts_active)})" if part == "routed_experts" else ""
                extra = "  (not in total)" if part == "mtp" else extra
                lines.append(f"    {part:<16}{_fmt_count(v):>10}{extra}")
        lines.append(f"    {'non-embedding':<16}{_fmt_count(p.total_non_embedding):>10}  "
                     f"(active {_fmt_count(p.active_non_embedding)})")
        lines.append("  weight memory: " + ", ".join(f"{k} {self.memory_bytes(k) / 1e9:.1f} GB" for k in FORMATS))
        terms = [("attention", f.attention), ("dense", f.dense_mlp), ("routed", f.routed_experts),
                 ("shared", f.shared_experts), ("router", f.router), ("head", f.lm_head)]
        lines.append(f"  forward FLOPs/token at context {context}: {_fmt_count(f.total)} = "
                     + " + ".join(f"{k} {_fmt_count(v)}" for k, v in terms if v)
                     + f" (attention scores {_fmt_count(f.attention_scores)})")
        lines.append(f"  KV cache at context {context}: {self.kv_cache_bytes(context) / 1e9:.2f} GB (bf16)")
        return "\n".join(lines)

    # ------------------------------------------------------------------ scaled instance
    def scaled(self, *, num_layers: Optional[int] = None, hidden_size: int = 64, num_heads: int = 4,
               head_dim: Optional[int] = None, num_experts: Optional[int] = None, top_k: Optional[int] = None,
               expert_intermediate_size: int = 32, dense_intermediate_size: int = 128, vocab_size: int = 128,
               name: Optional[str] = None) -> "ModelConfig":
        """A small instance of the same design, for random-weight experiments and tests.

        Keeps the family, the router's kind (scoring, normalisation, scale, group-limited selection with fewer
        groups), MLA vs GQA and the KV-head ratio, biases and norms, shared experts (same width ratio to a
        routed expert), the shared gate, Arctic's residual MLP, dense-first layers (one), MoE interleaving,
        local attention, encoder-decoder split. By default: 2 layers (one dense and one MoE where the design
        has both), hidden 64, 4 heads, min(E, 8) experts, top-k at most E/2, expert width 32, vocabulary 128.
        The vision tower and unmodelled config.json fields are dropped."""
        step = self.moe_every
        mlp_only: Tuple[int, ...] = ()
        fd = 0
        if self.is_encoder_decoder:
            L = num_layers if num_layers is not None else 2 * step
            enc = max(1, L // 2)
        else:
            enc = 0
            fd = min(self.first_dense_layers, 1)
            L = num_layers if num_layers is not None else max(2, fd + step)
            if self.mlp_only_layers:
                mlp_only = (0,)
                L = max(L, 2) if num_layers is None else L
            fd = min(fd, L - 1)
        H = int(hidden_size)
        nh = int(num_heads)
        nkv = max(1, nh * self.num_kv_heads // self.num_heads)
        while nh % nkv:
            nkv -= 1
        E = int(num_experts) if num_experts is not None else min(self.num_experts, 8)
        k = int(top_k) if top_k is not None else min(self.top_k, max(1, E // 2))
        r = self.router
        g, tg = r.n_group, r.topk_group
        if g > 1:
            g2 = max(d for d in range(1, min(g, 4) + 1) if E % d == 0)
            tg2 = max(1, min(g2, round(tg * g2 / g)))
            if g2 > 1 and tg2 == g2:
                tg2 = g2 - 1 if g2 > 2 else g2
            g, tg = g2, tg2
            k = min(k, tg * (E // g))
        router = dataclasses.replace(r, top_k=k, num_experts=E, n_group=g, topk_group=tg)
        I = int(expert_intermediate_size)
        shared = 0
        if self.shared_intermediate_size:
            shared = max(1, round(self.shared_intermediate_size * I / self.expert_intermediate_size))
        local = 0
        if self.local_attention_layers:
            local = min(L, max(1, round(self.local_attention_layers * L / self.num_layers)))
        kw = dict(
            name=name or f"{self.name}-scaled", family=self.family, vocab_size=int(vocab_size), hidden_size=H,
            num_layers=L, num_heads=nh, num_kv_heads=nkv, head_dim=head_dim, attention_bias=self.attention_bias,
            qk_norm=self.qk_norm, attention_sinks=self.attention_sinks, local_attention_layers=local,
            local_attention_window=min(self.local_attention_window, 16) if local else 0, first_dense_layers=fd,
            moe_every=step, mlp_only_layers=mlp_only,
            dense_intermediate_size=int(dense_intermediate_size) if self.dense_intermediate_size else 0,
            dense_glu=self.dense_glu, num_experts=E, top_k=k, expert_intermediate_size=I, expert_glu=self.expert_glu,
            expert_bias=self.expert_bias, num_shared_experts=self.num_shared_experts, shared_intermediate_size=shared,
            shared_expert_gate=self.shared_expert_gate,
            residual_intermediate_size=max(1, round(self.residual_intermediate_size * H / self.hidden_size))
            if self.residual_intermediate_size else 0,
            router=router, router_bias=self.router_bias, selection_bias=self.selection_bias,
            tie_embeddings=self.tie_embeddings, encoder_layers=enc, mtp_layers=min(self.mtp_layers, 1),
            max_context=min(self.max_context, 2048), activation=self.activation)
        if self.is_mla:
            kw.update(q_lora_rank=32 if self.q_lora_rank else 0, kv_lora_rank=32, qk_nope_head_dim=16,
                      qk_rope_head_dim=8, v_head_dim=16)
        return ModelConfig(**kw)

    def replace(self, **changes) -> "ModelConfig":
        """dataclasses.replace, re-validated (a changed expert count resizes the router, keeping its kind)."""
        if ("num_experts" in changes or "top_k" in changes) and "router" not in changes:
            E = changes.get("num_experts", self.num_experts)
            k = changes.get("top_k", self.top_k)
            changes["router"] = dataclasses.replace(self.router, num_experts=E, top_k=k)
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ Hugging Face config.json
    @classmethod
    def from_hf(cls, config, *, name: Optional[str] = None) -> "ModelConfig":
        """Read a Hugging Face config.json: a path (file or directory), a dict, or a transformers config object.

        model_type: mixtral, qwen2_moe, qwen3_moe, olmoe, dbrx (nested ffn_config/attn_config), deepseek
        (DeepSeekMoE's remote-code config), deepseek_v2, deepseek_v3 (and any config whose architectures name
        DeepseekV3ForCausalLM, e.g. Kimi K2's kimi_k2), llama4 (text_config nested; the vision_config is kept and
        counted) or llama4_text, gpt_oss. Fields that set sizes are required (a missing one raises ValueError
        naming it); flags default as in transformers. Unmodelled fields go to hf_extra for to_hf()."""
        d = _load_hf(config)
        mt = d.get("model_type")
        archs = d.get("architectures") or []
        if mt not in _HF_READERS:
            if "DeepseekV3ForCausalLM" in archs:
                mt = "deepseek_v3"
            else:
                raise ValueError(f"unsupported model_type {mt!r} (architectures {archs}); supported: "
                                 f"{sorted(_HF_READERS)} and configs of architecture DeepseekV3ForCausalLM")
        kw, extra = _HF_READERS[mt](d, d.get("model_type") or mt)
        kw["name"] = name or d.get("_name_or_path") or d.get("model_type") or mt
        return cls(**kw, hf_extra=extra)

    def to_hf(self) -> dict:
        """This configuration as a Hugging Face config.json dict that transformers builds (and from_hf reads back
        to an equal ModelConfig). Raises ValueError naming what the family's config.json cannot express."""
        if self.family not in _HF_WRITERS:
            raise ValueError(f"family {self.family!r} has no Hugging Face config.json; supported: {HF_FAMILIES}")
        d = _HF_WRITERS[self.family](self)
        d = _merge_extra(d, self.hf_extra)
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


# ---------------------------------------------------------------------------------------------------------
# Llama 4 vision tower (counted from its vision_config, as transformers' Llama4VisionModel + projector)
# ---------------------------------------------------------------------------------------------------------
_LLAMA4_VISION_DEFAULTS = dict(hidden_size=768, num_hidden_layers=34, num_attention_heads=16, num_channels=3,
                               intermediate_size=5632, vision_output_dim=7680, image_size=448, patch_size=14,
                               projector_input_dim=4096, projector_output_dim=4096)


def _vision_tensors(vc: Mapping[str, Any], text_hidden: int) -> List[Tuple[str, Tuple[int, ...], int]]:
    """(name, shape, count) of transformers' Llama4VisionModel + Llama4MultiModalProjector for `vc`."""
    v = {k: (vc.get(k) if vc.get(k) is not None else dflt) for k, dflt in _LLAMA4_VISION_DEFAULTS.items()}
    for k, val in v.items():
        if not (_is_int(val) and val >= 1):
            raise ValueError(f"vision_config.{k} must be an int >= 1, got {val!r}")
    d, F, L, nh = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"], v["num_attention_heads"]
    a = nh * (d // nh)
    patches = (v["image_size"] // v["patch_size"]) ** 2 + 1
    return [
        ("patch_embedding", (d, v["num_channels"] * v["patch_size"] ** 2), 1), ("class_embedding", (d,), 1),
        ("positional_embedding", (patches, d), 1), ("layernorm_pre_post", (4 * d,), 1),
        ("layers.q_proj", (a, d), L), ("layers.k_proj", (a, d), L), ("layers.v_proj", (a, d), L),
        ("layers.o_proj", (d, a), L), ("layers.qkvo_bias", (3 * a + d,), L), ("layers.layernorms", (4 * d,), L),
        ("layers.fc1", (F, d), L), ("layers.fc2", (d, F), L), ("layers.fc_bias", (F + d,), L),
        ("adapter.fc1", (v["projector_input_dim"], F), 1),
        ("adapter.fc2", (v["projector_output_dim"], v["projector_output_dim"]), 1),
        ("multi_modal_projector", (text_hidden, v["vision_output_dim"]), 1),
    ]


# ---------------------------------------------------------------------------------------------------------
# Preset registry (the presets themselves are in presets.py)
# ---------------------------------------------------------------------------------------------------------
def _key(name: str) -> str:
    k = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    return k.split("/")[-1]


def names() -> List[str]:
    """Preset names, in historical-family order (see get())."""
    return list(_PRESETS)


def get(name: str) -> ModelConfig:
    """The preset `name` (case, '_' and a Hub 'org/' prefix are ignored; e.g. "deepseek-v3",
    "Qwen/Qwen3-30B-A3B", "llama4_scout"). Raises KeyError listing close matches."""
    k = _key(name)
    k = _ALIASES.get(k, k)
    if k not in _PRESETS:
        close = difflib.get_close_matches(k, list(_PRESETS) + list(_ALIASES), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no preset {name!r}{hint} (moepy.configs.names() lists them)")
    return _PRESETS[k]()


# ---------------------------------------------------------------------------------------------------------
# The presets table
# ---------------------------------------------------------------------------------------------------------
def _fmt_count(n: float) -> str:
    n = float(n)
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            v = n / div
            return f"{v:#.3g}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return f"{n:.0f}"


def _fmt_combos(n: int) -> str:
    if n < 10 ** 7:
        return f"{n:,}"
    mant, exp = f"{n:.2e}".split("e+")
    return f"{mant}e{int(exp)}"


def table(configs: Optional[Sequence] = None) -> str:
    """The comparison table of `configs` (ModelConfigs or preset names; default: every preset).

    Active counts include the embedding and the head (the "full" convention); memory is the weights only,
    in GB (1e9 bytes): bf16, and int4 with one fp16 scale per 32 weights (router and norms in bf16)."""
    cfgs = [get(c) if isinstance(c, str) else c for c in (names() if configs is None else configs)]
    head = ("model", "family", "layers", "total", "active", "active %", "experts", "top-k", "shared", "C(E,k)",
            "bf16 GB", "int4 GB")
    rows = []
    for c in cfgs:
        p = c.count_params()
        rows.append((c.name, c.family, f"{len(c.moe_layers)}/{c.num_layers}", _fmt_count(p.total), _fmt_count(p.active),
                     f"{100 * p.activation_ratio:.1f}", str(c.num_experts), str(c.top_k), str(c.num_shared_experts),
                     _fmt_combos(c.expert_combinations), f"{c.memory_bytes('bf16') / 1e9:,.1f}",
                     f"{c.memory_bytes('int4') / 1e9:,.1f}"))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    left = {0, 1}

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------
# The config.json mapping and the presets build on ModelConfig, so they are imported last (moepy/__init__
# imports this module first); their names stay importable from moepy.configs.
# ---------------------------------------------------------------------------------------------------------
from .hf_config import _HF_READERS, _HF_WRITERS, _load_hf, _merge_extra  # noqa: E402
from .presets import (  # noqa: E402,F401
    _ALIASES, _PRESETS, arctic, dbrx, deepseek_moe_16b, deepseek_v2, deepseek_v2_lite, deepseek_v3, glam_64b_64e,
    gpt_oss_20b, gpt_oss_120b, grok_1, gshard_600b, kimi_k2, llama4_maverick, llama4_scout,
    mixtral_8x7b, mixtral_8x22b, olmoe_1b_7b, qwen2_57b_a14b, qwen3_30b_a3b, qwen3_235b_a22b, qwen15_moe_a27b,
    switch_base_128, switch_c_2048,
)

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
and GLaM; each preset's docstring cites its source.

Counting conventions (what vendors mean by "active" differs; see docs/configs.md):
``ParamCount.total`` / ``.active`` count the input embedding and the output head (once if tied);
``.total_non_embedding`` / ``.active_non_embedding`` count neither; ``.active_without_input_embedding``
counts the head but not the embedding table (a lookup does no matmul work): the convention of
DeepSeek-V2/V3 and OpenAI's gpt-oss model card.  ``total`` includes a vision tower if the model has one
(Llama 4) and never includes multi-token-prediction modules (reported apart as ``mtp``).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

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


def _plain(obj):
    """A JSON-plain deep copy (dicts, lists, numbers, strings) of a config fragment."""
    return json.loads(json.dumps(obj))


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
# Hugging Face readers and writers
# ---------------------------------------------------------------------------------------------------------
def _load_hf(config) -> dict:
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        with open(path) as f:
            return json.load(f)
    if hasattr(config, "to_dict") and not isinstance(config, Mapping):
        return _plain(config.to_dict())
    if isinstance(config, Mapping):
        return _plain(dict(config))
    raise TypeError(f"config must be a path, a dict or a transformers config, got {type(config).__name__}")


# keys that to_hf regenerates (or that describe another implementation) and are never passed through
_NO_PASSTHROUGH = {"model_type", "architectures", "auto_map", "_name_or_path", "transformers_version", "layer_types",
                   "no_rope_layers", "moe_layers", "mlp_only_layers", "num_experts", "num_local_experts",
                   "num_mtp_layers", "num_nextn_predict_layers", "head_dim", "text_config", "vision_config",
                   "attn_config", "ffn_config", "sub_configs"}


class _Fields:
    """Reads one config dict, remembering which keys were consumed."""

    def __init__(self, d: Mapping[str, Any], where: str):
        self.d, self.where, self.used = d, where, set()

    def req(self, *keys):
        for k in keys:
            self.used.add(k)
        for k in keys:
            if self.d.get(k) is not None:
                return self.d[k]
        alt = f" (or {', '.join(map(repr, keys[1:]))})" if len(keys) > 1 else ""
        raise ValueError(f"{self.where} config.json: missing field {keys[0]!r}{alt}")

    def opt(self, key, default):
        self.used.add(key)
        v = self.d.get(key)
        return default if v is None else v

    def extra(self) -> dict:
        return {k: v for k, v in self.d.items() if k not in self.used and k not in _NO_PASSTHROUGH}


def _common(f: _Fields, *, head_dim_default=True) -> dict:
    H = int(f.req("hidden_size"))
    nh = int(f.req("num_attention_heads"))
    kw = dict(vocab_size=int(f.req("vocab_size")), hidden_size=H, num_layers=int(f.req("num_hidden_layers")),
              num_heads=nh, num_kv_heads=int(f.opt("num_key_value_heads", nh)),
              tie_embeddings=bool(f.opt("tie_word_embeddings", False)),
              max_context=int(f.opt("max_position_embeddings", 0)), activation=str(f.opt("hidden_act", "silu")))
    if head_dim_default:
        f.used.add("head_dim")
        hd = f.d.get("head_dim")
        kw["head_dim"] = int(hd) if hd else None
    return kw


def _dense_width(f: _Fields, key: str, default: int, has_dense: bool) -> int:
    v = f.d.get(key)
    f.used.add(key)
    if v is not None:
        return int(v)
    return default if has_dense else 0


def _read_mixtral(d, mt):
    f = _Fields(d, mt)
    kw = _common(f)
    E = int(f.req("num_local_experts", "num_experts"))
    k = int(f.req("num_experts_per_tok"))
    sw = f.opt("sliding_window", None)
    kw.update(family="mixtral", num_experts=E, top_k=k, expert_intermediate_size=int(f.req("intermediate_size")),
              local_attention_layers=kw["num_layers"] if sw else 0, local_attention_window=int(sw or 0),
              router=RouterConfig.mixtral(E, k))
    return kw, {"": f.extra()}


def _qwen_layers(f: _Fields, L: int):
    step = int(f.opt("decoder_sparse_step", 1))
    mlo = tuple(int(i) for i in f.opt("mlp_only_layers", []))
    has_dense = any(not ((i not in mlo) and (i + 1) % step == 0) for i in range(L))
    return step, mlo, has_dense


def _read_qwen2_moe(d, mt):
    f = _Fields(d, mt)
    kw = _common(f)
    L = kw["num_layers"]
    step, mlo, has_dense = _qwen_layers(f, L)
    E, k, I = int(f.req("num_experts")), int(f.req("num_experts_per_tok")), int(f.req("moe_intermediate_size"))
    S = int(f.req("shared_expert_intermediate_size"))
    if S <= 0:
        raise ValueError(f"{mt} config.json: shared_expert_intermediate_size must be > 0 (transformers always "
                         f"builds the shared expert), got {S}")
    local, window = 0, 0
    if f.opt("use_sliding_window", False):
        mw = int(f.opt("max_window_layers", 28))
        window = int(f.opt("sliding_window", 4096))
        local = sum(1 for i in range(L) if (i + 1) % 2 and i < mw) if window else 0
        window = window if local else 0
    kw.update(family="qwen2_moe", moe_every=step, mlp_only_layers=mlo,
              dense_intermediate_size=_dense_width(f, "intermediate_size", 5632, has_dense), num_experts=E, top_k=k,
              expert_intermediate_size=I, num_shared_experts=S // I if S % I == 0 else 1, shared_intermediate_size=S,
              shared_expert_gate=True, attention_bias="qkv" if f.opt("qkv_bias", True) else "none",
              local_attention_layers=local, local_attention_window=window,
              router=RouterConfig.qwen2_moe(E, k, norm_topk_prob=bool(f.opt("norm_topk_prob", False))))
    return kw, {"": f.extra()}


def _read_qwen3_moe(d, mt):
    f = _Fields(d, mt)
    kw = _common(f)
    L = kw["num_layers"]
    step, mlo, has_dense = _qwen_layers(f, L)
    E, k = int(f.req("num_experts", "num_local_experts")), int(f.req("num_experts_per_tok"))
    f.used.add("num_local_experts")
    sw = int(f.opt("sliding_window", 0) or 0) if f.opt("use_sliding_window", False) else 0
    kw.update(family="qwen3_moe", moe_every=step, mlp_only_layers=mlo,
              dense_intermediate_size=_dense_width(f, "intermediate_size", 6144, has_dense), num_experts=E, top_k=k,
              expert_intermediate_size=int(f.req("moe_intermediate_size")), qk_norm="head",
              attention_bias="all" if f.opt("attention_bias", False) else "none",
              local_attention_layers=L if sw else 0, local_attention_window=sw,
              router=RouterConfig.qwen3_moe(E, k, norm_topk_prob=bool(f.opt("norm_topk_prob", False))))
    return kw, {"": f.extra()}


def _read_olmoe(d, mt):
    f = _Fields(d, mt)
    kw = _common(f)
    E, k = int(f.req("num_experts", "num_local_experts")), int(f.req("num_experts_per_tok"))
    f.used.add("num_local_experts")
    kw.update(family="olmoe", num_experts=E, top_k=k, expert_intermediate_size=int(f.req("intermediate_size")),
              qk_norm="proj", attention_bias="all" if f.opt("attention_bias", False) else "none",
              router=RouterConfig.olmoe(E, k, norm_topk_prob=bool(f.opt("norm_topk_prob", False))))
    return kw, {"": f.extra()}


def _read_dbrx(d, mt):
    f = _Fields(d, mt)
    attn = d.get("attn_config")
    ffn = d.get("ffn_config")
    if not isinstance(ffn, Mapping):
        raise ValueError(f"{mt} config.json: missing field 'ffn_config' (a dict)")
    if not isinstance(attn, Mapping):
        raise ValueError(f"{mt} config.json: missing field 'attn_config' (a dict)")
    fa, ff = _Fields(attn, f"{mt} attn_config"), _Fields(ffn, f"{mt} ffn_config")
    H, nh = int(f.req("d_model")), int(f.req("n_heads"))
    E, k = int(ff.req("moe_num_experts")), int(ff.req("moe_top_k"))
    ff.used.add("moe_normalize_expert_weights")  # null means "do not normalise", absent means 1.0
    p = ffn["moe_normalize_expert_weights"] if "moe_normalize_expert_weights" in ffn else 1.0
    ff.used.add("hidden_size")
    act = ff.opt("ffn_act_fn", {"name": "silu"})
    kw = dict(family="dbrx", vocab_size=int(f.req("vocab_size")), hidden_size=H, num_layers=int(f.req("n_layers")),
              num_heads=nh, num_kv_heads=int(fa.req("kv_n_heads")), num_experts=E, top_k=k,
              expert_intermediate_size=int(ff.req("ffn_hidden_size")),
              tie_embeddings=bool(f.opt("tie_word_embeddings", False)), max_context=int(f.opt("max_seq_len", 0)),
              activation=str(act.get("name", "silu")) if isinstance(act, Mapping) else "silu",
              router=RouterConfig.dbrx(E, k, None if p is None else float(p)))
    return kw, {"": f.extra(), "attn_config": fa.extra(), "ffn_config": ff.extra()}


def _read_deepseek_common(f: _Fields, mt: str, family: str) -> dict:
    kw = _common(f, head_dim_default=False)
    f.used.add("head_dim")
    L = kw["num_layers"]
    fd = int(f.opt("first_k_dense_replace", 3 if family == "deepseek_v3" else 0))
    freq = int(f.opt("moe_layer_freq", 1))
    if freq != 1:
        raise ValueError(f"{mt} config.json: moe_layer_freq={freq} is not supported (transformers ignores it; "
                         f"every released DeepSeek model uses 1)")
    if f.opt("mlp_bias", False):
        raise ValueError(f"{mt} config.json: mlp_bias=True is not supported")
    I = int(f.req("moe_intermediate_size"))
    ns = int(f.opt("n_shared_experts", 1 if family == "deepseek_v3" else 0) or 0)
    kw.update(family=family, first_dense_layers=fd,
              dense_intermediate_size=_dense_width(f, "intermediate_size", 18432 if family == "deepseek_v3" else 11008,
                                                   fd > 0),
              num_experts=int(f.req("n_routed_experts")), top_k=int(f.req("num_experts_per_tok")),
              expert_intermediate_size=I, num_shared_experts=ns, shared_intermediate_size=ns * I,
              attention_bias="all" if f.opt("attention_bias", False) else "none")
    if family != "deepseek":
        kw.update(q_lora_rank=int(f.opt("q_lora_rank", 0) or 0), kv_lora_rank=int(f.req("kv_lora_rank")),
                  qk_nope_head_dim=int(f.req("qk_nope_head_dim")), qk_rope_head_dim=int(f.req("qk_rope_head_dim")),
                  v_head_dim=int(f.req("v_head_dim")))
    return kw


def _read_deepseek(d, mt):
    f = _Fields(d, mt)
    kw = _read_deepseek_common(f, mt, "deepseek")
    if f.opt("scoring_func", "softmax") != "softmax":
        raise ValueError(f"{mt} config.json: scoring_func={d.get('scoring_func')!r} is not supported (DeepSeekMoE: softmax)")
    kw["router"] = RouterConfig(top_k=kw["top_k"], scoring="softmax", normalize=bool(f.opt("norm_topk_prob", False)),
                                num_experts=kw["num_experts"], family="deepseek")
    return kw, {"": f.extra()}


def _read_deepseek_v2(d, mt):
    f = _Fields(d, mt)
    kw = _read_deepseek_common(f, mt, "deepseek_v2")
    method = f.opt("topk_method", "greedy")
    f.used.update({"norm_topk_prob", "scoring_func"})  # transformers' V2 applies neither (softmax, no renorm)
    kw["router"] = RouterConfig.deepseek_v2(kw["num_experts"], kw["top_k"], n_group=int(f.opt("n_group", 1)),
                                            topk_group=int(f.opt("topk_group", 1)),
                                            routed_scaling_factor=float(f.opt("routed_scaling_factor", 1.0)),
                                            topk_method=method)
    return kw, {"": f.extra()}


def _read_deepseek_v3(d, mt):
    f = _Fields(d, mt)
    kw = _read_deepseek_common(f, mt, "deepseek_v3")
    f.used.update({"scoring_func", "topk_method"})
    mtp = d.get("num_nextn_predict_layers", d.get("num_mtp_layers"))
    kw.update(selection_bias=True, mtp_layers=int(mtp or 0),
              router=RouterConfig.deepseek_v3(kw["num_experts"], kw["top_k"], n_group=int(f.opt("n_group", 8)),
                                              topk_group=int(f.opt("topk_group", 4)),
                                              routed_scaling_factor=float(f.opt("routed_scaling_factor", 2.5)),
                                              norm_topk_prob=bool(f.opt("norm_topk_prob", True))))
    return kw, {"": f.extra()}


def _read_llama4(d, mt):
    nested = mt == "llama4" and isinstance(d.get("text_config"), Mapping)
    top = _Fields(d, mt)
    t = d["text_config"] if nested else d
    f = _Fields(t, f"{mt} text_config" if nested else mt)
    kw = _common(f)
    L = kw["num_layers"]
    E, k = int(f.req("num_local_experts")), int(f.opt("num_experts_per_tok", 1))
    step = int(f.opt("interleave_moe_layer_step", 1))
    moe = t.get("moe_layers")
    default_moe = list(range(step - 1, L, step))
    mlo: Tuple[int, ...] = ()
    if moe is not None and list(moe) != default_moe:
        step = 1
        mlo = tuple(i for i in range(L) if i not in set(moe))
    has_dense = len(default_moe if moe is None else moe) < L
    interval = int(f.opt("no_rope_layer_interval", 4))
    rope_layers = t.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(L)]
    chunk = f.opt("attention_chunk_size", 8192)
    local = sum(1 for x in rope_layers[:L] if x) if chunk else 0
    kw.update(family="llama4", num_experts=E, top_k=k, expert_intermediate_size=int(f.req("intermediate_size")),
              moe_every=step, mlp_only_layers=mlo,
              dense_intermediate_size=_dense_width(f, "intermediate_size_mlp", 16384, has_dense),
              num_shared_experts=1, shared_intermediate_size=int(f.req("intermediate_size")),
              qk_norm="l2" if f.opt("use_qk_norm", True) else "none",
              attention_bias="all" if f.opt("attention_bias", False) else "none",
              local_attention_layers=local, local_attention_window=int(chunk) if local else 0,
              router=RouterConfig.llama4(E, k))
    extra = {"": top.extra()} if nested else {"": f.extra()}
    if nested:
        extra["text_config"] = f.extra()
        vc = d.get("vision_config")
        if isinstance(vc, Mapping):
            kw["vision_config"] = {k: vc[k] for k in _LLAMA4_VISION_DEFAULTS if vc.get(k) is not None}
            extra["vision_config"] = {k: v for k, v in vc.items() if k not in _LLAMA4_VISION_DEFAULTS}
        if top.d.get("tie_word_embeddings") is not None:
            top.used.add("tie_word_embeddings")
    return kw, extra


def _read_gpt_oss(d, mt):
    f = _Fields(d, mt)
    kw = _common(f, head_dim_default=False)
    f.used.add("head_dim")
    kw["head_dim"] = int(f.opt("head_dim", 64))
    L = kw["num_layers"]
    E, k = int(f.req("num_local_experts", "num_experts")), int(f.opt("num_experts_per_tok", 4))
    sw = f.opt("sliding_window", 128)
    types = d.get("layer_types") or ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(L)]
    local = sum(1 for x in types[:L] if x == "sliding_attention") if sw else 0
    kw.update(family="gpt_oss", num_experts=E, top_k=k, expert_intermediate_size=int(f.req("intermediate_size")),
              attention_bias="all" if f.opt("attention_bias", True) else "none", attention_sinks=True,
              expert_bias=True, router_bias=True, local_attention_layers=local,
              local_attention_window=int(sw) if local else 0, router=RouterConfig.gpt_oss(E, k))
    return kw, {"": f.extra()}


_HF_READERS: Dict[str, Callable] = {
    "mixtral": _read_mixtral, "qwen2_moe": _read_qwen2_moe, "qwen3_moe": _read_qwen3_moe, "olmoe": _read_olmoe,
    "dbrx": _read_dbrx, "deepseek": _read_deepseek, "deepseek_v2": _read_deepseek_v2,
    "deepseek_v3": _read_deepseek_v3, "kimi_k2": _read_deepseek_v3, "llama4": _read_llama4,
    "llama4_text": _read_llama4, "gpt_oss": _read_gpt_oss,
}


def _w_common(c: ModelConfig, model_type: str, arch: str, *, head_dim=True) -> dict:
    d = {"model_type": model_type, "architectures": [arch], "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
         "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads,
         "hidden_act": c.activation, "tie_word_embeddings": c.tie_embeddings}
    if head_dim:
        d["head_dim"] = c.head_dim
    if c.max_context:
        d["max_position_embeddings"] = c.max_context
    return d


def _w_mixtral(c: ModelConfig) -> dict:
    d = _w_common(c, "mixtral", "MixtralForCausalLM")
    d.update(intermediate_size=c.expert_intermediate_size, num_local_experts=c.num_experts,
             num_experts_per_tok=c.top_k,
             sliding_window=c.local_attention_window if c.local_attention_layers == c.num_layers else None)
    return d


def _w_qwen_layers(c: ModelConfig, d: dict) -> None:
    d.update(decoder_sparse_step=c.moe_every, mlp_only_layers=list(c.mlp_only_layers),
             norm_topk_prob=c.router.normalize, num_experts=c.num_experts, num_experts_per_tok=c.top_k)
    if c.dense_intermediate_size:
        d["intermediate_size"] = c.dense_intermediate_size


def _w_qwen2_moe(c: ModelConfig) -> dict:
    d = _w_common(c, "qwen2_moe", "Qwen2MoeForCausalLM")
    _w_qwen_layers(c, d)
    d.update(moe_intermediate_size=c.expert_intermediate_size, shared_expert_intermediate_size=c.shared_intermediate_size,
             qkv_bias=c.attention_bias == "qkv", use_sliding_window=c.local_attention_layers > 0)
    if c.local_attention_layers:
        d.update(sliding_window=c.local_attention_window, max_window_layers=2 * c.local_attention_layers)
    return d


def _w_qwen3_moe(c: ModelConfig) -> dict:
    d = _w_common(c, "qwen3_moe", "Qwen3MoeForCausalLM")
    _w_qwen_layers(c, d)
    d.update(moe_intermediate_size=c.expert_intermediate_size, attention_bias=c.attention_bias == "all",
             use_sliding_window=c.local_attention_layers > 0)
    if c.local_attention_layers:
        d["sliding_window"] = c.local_attention_window
    return d


def _w_olmoe(c: ModelConfig) -> dict:
    d = _w_common(c, "olmoe", "OlmoeForCausalLM")
    d.update(intermediate_size=c.expert_intermediate_size, num_experts=c.num_experts, num_experts_per_tok=c.top_k,
             norm_topk_prob=c.router.normalize, attention_bias=c.attention_bias == "all")
    return d


def _w_dbrx(c: ModelConfig) -> dict:
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


def _w_deepseek_common(c: ModelConfig, d: dict) -> None:
    d.update(first_k_dense_replace=c.first_dense_layers, moe_layer_freq=1, n_routed_experts=c.num_experts,
             num_experts_per_tok=c.top_k, n_shared_experts=c.num_shared_experts,
             moe_intermediate_size=c.expert_intermediate_size, attention_bias=c.attention_bias == "all")
    if c.dense_intermediate_size:
        d["intermediate_size"] = c.dense_intermediate_size
    if c.is_mla:
        d.update(q_lora_rank=c.q_lora_rank or None, kv_lora_rank=c.kv_lora_rank, qk_nope_head_dim=c.qk_nope_head_dim,
                 qk_rope_head_dim=c.qk_rope_head_dim, v_head_dim=c.v_head_dim)


def _w_deepseek(c: ModelConfig) -> dict:
    d = _w_common(c, "deepseek", "DeepseekForCausalLM", head_dim=False)
    _w_deepseek_common(c, d)
    d.update(scoring_func="softmax", norm_topk_prob=c.router.normalize)
    return d


def _w_deepseek_v2(c: ModelConfig) -> dict:
    d = _w_common(c, "deepseek_v2", "DeepseekV2ForCausalLM", head_dim=False)
    _w_deepseek_common(c, d)
    r = c.router
    d.update(topk_method="group_limited_greedy" if r.n_group > 1 else "greedy", n_group=r.n_group,
             topk_group=r.topk_group, routed_scaling_factor=float(r.scale), norm_topk_prob=False, scoring_func="softmax")
    return d


def _w_deepseek_v3(c: ModelConfig) -> dict:
    d = _w_common(c, "deepseek_v3", "DeepseekV3ForCausalLM", head_dim=False)
    _w_deepseek_common(c, d)
    r = c.router
    d.update(n_group=r.n_group, topk_group=r.topk_group, routed_scaling_factor=float(r.scale),
             norm_topk_prob=r.normalize, scoring_func="sigmoid", topk_method="noaux_tc",
             num_nextn_predict_layers=c.mtp_layers)
    return d


def _w_llama4(c: ModelConfig) -> dict:
    t = _w_common(c, "llama4_text", "Llama4ForCausalLM")
    L = c.num_layers
    rope = [0] * L
    for i in _spread(L, c.local_attention_layers, period=4):
        rope[i] = 1
    t.update(intermediate_size=c.expert_intermediate_size, num_local_experts=c.num_experts, num_experts_per_tok=c.top_k,
             interleave_moe_layer_step=c.moe_every, moe_layers=list(c.moe_layers), use_qk_norm=c.qk_norm == "l2",
             attention_bias=c.attention_bias == "all", no_rope_layers=rope,
             attention_chunk_size=c.local_attention_window if c.local_attention_layers else None)
    if c.dense_intermediate_size:
        t["intermediate_size_mlp"] = c.dense_intermediate_size
    if c.vision_config is None:
        return t
    t.pop("architectures")
    vision = {"model_type": "llama4_vision_model", **copy.deepcopy(dict(c.vision_config))}
    return {"model_type": "llama4", "architectures": ["Llama4ForConditionalGeneration"], "text_config": t,
            "vision_config": vision, "tie_word_embeddings": c.tie_embeddings}


def _w_gpt_oss(c: ModelConfig) -> dict:
    d = _w_common(c, "gpt_oss", "GptOssForCausalLM")
    L = c.num_layers
    local = set(_spread(L, c.local_attention_layers, period=2))
    d.update(intermediate_size=c.expert_intermediate_size, num_local_experts=c.num_experts, num_experts_per_tok=c.top_k,
             attention_bias=c.attention_bias == "all",
             layer_types=["sliding_attention" if i in local else "full_attention" for i in range(L)],
             sliding_window=c.local_attention_window if c.local_attention_layers else None)
    return d


def _spread(L: int, n: int, period: int) -> List[int]:
    """n layer indices out of L in the families' default order: for period p, first the layers with
    (i + 1) % p != 0 (Llama 4's RoPE/chunked layers for p=4, gpt-oss's banded layers for p=2), then the rest."""
    first = [i for i in range(L) if (i + 1) % period != 0]
    rest = [i for i in range(L) if (i + 1) % period == 0]
    return sorted((first + rest)[:n])


_HF_WRITERS: Dict[str, Callable[[ModelConfig], dict]] = {
    "mixtral": _w_mixtral, "qwen2_moe": _w_qwen2_moe, "qwen3_moe": _w_qwen3_moe, "olmoe": _w_olmoe, "dbrx": _w_dbrx,
    "deepseek": _w_deepseek, "deepseek_v2": _w_deepseek_v2, "deepseek_v3": _w_deepseek_v3, "llama4": _w_llama4,
    "gpt_oss": _w_gpt_oss,
}


def _merge_extra(d: dict, extra: Mapping[str, Any]) -> dict:
    """Put unmodelled fields back under the modelled ones (modelled values win)."""
    if not extra:
        return d
    out = {**extra.get("", {}), **d}
    for sub in ("text_config", "vision_config", "attn_config", "ffn_config"):
        if sub in out and isinstance(out[sub], dict):
            out[sub] = {**extra.get(sub, {}), **out[sub]}
    return _plain(out)


# ---------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------
# The vision tower of both released Llama 4 models (their config.json vision_config, size-determining keys).
_LLAMA4_VISION = {
    "hidden_size": 1408, "num_hidden_layers": 34, "num_attention_heads": 16, "num_channels": 3,
    "intermediate_size": 5632, "vision_output_dim": 4096, "image_size": 336, "patch_size": 14,
    "projector_input_dim": 4096, "projector_output_dim": 4096,
}


def mixtral_8x7b() -> ModelConfig:
    """Mixtral-8x7B (Mistral AI, Dec 2023): 46.7B total, 12.9B active ("Mixtral of experts", mistral.ai/news,
    and Jiang et al. 2024, arXiv:2401.04088); hyper-parameters from mistralai/Mixtral-8x7B-v0.1 config.json."""
    return ModelConfig(name="mixtral-8x7b", family="mixtral", vocab_size=32000, hidden_size=4096, num_layers=32,
                       num_heads=32, num_kv_heads=8, head_dim=128, num_experts=8, top_k=2,
                       expert_intermediate_size=14336, max_context=32768)


def mixtral_8x22b() -> ModelConfig:
    """Mixtral-8x22B (Mistral AI, Apr 2024): 141B total, 39B active ("Cheaper, Better, Faster, Stronger",
    mistral.ai/news/mixtral-8x22b); hyper-parameters from mistralai/Mixtral-8x22B-v0.1 config.json (vocabulary
    32000; the v0.3 / Instruct tokenizer has 32768, +3M parameters)."""
    return ModelConfig(name="mixtral-8x22b", family="mixtral", vocab_size=32000, hidden_size=6144, num_layers=56,
                       num_heads=48, num_kv_heads=8, head_dim=128, num_experts=8, top_k=2,
                       expert_intermediate_size=16384, max_context=65536)


def deepseek_moe_16b() -> ModelConfig:
    """DeepSeekMoE-16B (Dai et al. 2024, arXiv:2401.06066): 16.4B total, 2.8B activated; 64 fine-grained
    experts (top-6) + 2 shared, first layer dense; deepseek-ai/deepseek-moe-16b-base config.json."""
    return ModelConfig(name="deepseek-moe-16b", family="deepseek", vocab_size=102400, hidden_size=2048, num_layers=28,
                       num_heads=16, first_dense_layers=1, dense_intermediate_size=10944, num_experts=64, top_k=6,
                       expert_intermediate_size=1408, num_shared_experts=2, shared_intermediate_size=2816,
                       max_context=4096)


def deepseek_v2() -> ModelConfig:
    """DeepSeek-V2 (DeepSeek-AI 2024, arXiv:2405.04434): 236B total, 21B activated; MLA, 160 routed experts
    (top-6, group-limited 8 groups / 3 kept, scale 16) + 2 shared; deepseek-ai/DeepSeek-V2 config.json."""
    return ModelConfig(name="deepseek-v2", family="deepseek_v2", vocab_size=102400, hidden_size=5120, num_layers=60,
                       num_heads=128, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
                       v_head_dim=128, first_dense_layers=1, dense_intermediate_size=12288, num_experts=160, top_k=6,
                       expert_intermediate_size=1536, num_shared_experts=2, shared_intermediate_size=3072,
                       router=RouterConfig.deepseek_v2(160, 6, n_group=8, topk_group=3, routed_scaling_factor=16.0,
                                                       topk_method="group_limited_greedy"),
                       max_context=163840)


def deepseek_v2_lite() -> ModelConfig:
    """DeepSeek-V2-Lite (deepseek-ai/DeepSeek-V2-Lite model card): 15.7B total, 2.4B activated; MLA without
    q compression, 64 routed experts (top-6, greedy, scale 1) + 2 shared, first layer dense; its config.json."""
    return ModelConfig(name="deepseek-v2-lite", family="deepseek_v2", vocab_size=102400, hidden_size=2048,
                       num_layers=27, num_heads=16, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
                       v_head_dim=128, first_dense_layers=1, dense_intermediate_size=10944, num_experts=64, top_k=6,
                       expert_intermediate_size=1408, num_shared_experts=2, shared_intermediate_size=2816,
                       router=RouterConfig.deepseek_v2(64, 6, routed_scaling_factor=1.0, topk_method="greedy"),
                       max_context=163840)


def deepseek_v3() -> ModelConfig:
    """DeepSeek-V3 / R1 (DeepSeek-AI 2024, arXiv:2412.19437): 671B total, 37B activated; README_WEIGHTS.md:
    main model 671B, 36.6B activated including the 0.9B output head (i.e. without the input embedding); the
    Hub's 685B adds the 14B MTP module (11.5B unique). 256 routed experts (top-8 of 8 groups / 4 kept, sigmoid,
    bias-corrected selection, scale 2.5) + 1 shared, 3 dense layers; deepseek-ai/DeepSeek-V3 config.json."""
    return ModelConfig(name="deepseek-v3", family="deepseek_v3", vocab_size=129280, hidden_size=7168, num_layers=61,
                       num_heads=128, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
                       v_head_dim=128, first_dense_layers=3, dense_intermediate_size=18432, num_experts=256, top_k=8,
                       expert_intermediate_size=2048, num_shared_experts=1, shared_intermediate_size=2048,
                       router=RouterConfig.deepseek_v3(256, 8, n_group=8, topk_group=4, routed_scaling_factor=2.5),
                       selection_bias=True, mtp_layers=1, max_context=163840)


def kimi_k2() -> ModelConfig:
    """Kimi K2 (Moonshot AI 2025, arXiv:2507.20534 and moonshotai/Kimi-K2-Instruct model card): "1T total,
    32B activated" (the report's text: 1.04T); the DeepSeek-V3 architecture with 384 experts (top-8, one group,
    scale 2.827), 64 heads, 1 dense layer, 160K vocabulary; its config.json (model_type kimi_k2)."""
    return ModelConfig(name="kimi-k2", family="deepseek_v3", vocab_size=163840, hidden_size=7168, num_layers=61,
                       num_heads=64, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
                       v_head_dim=128, first_dense_layers=1, dense_intermediate_size=18432, num_experts=384, top_k=8,
                       expert_intermediate_size=2048, num_shared_experts=1, shared_intermediate_size=2048,
                       router=RouterConfig.kimi_k2(384, 8, routed_scaling_factor=2.827), selection_bias=True,
                       max_context=131072)


def qwen15_moe_a27b() -> ModelConfig:
    """Qwen1.5-MoE-A2.7B (Qwen blog "Qwen1.5-MoE: Matching 7B Model Performance with 1/3 Activated Parameters",
    Mar 2024): 14.3B total, 2.7B activated (2.0B non-embedding); 60 experts top-4, a gated shared expert of 4
    experts' width (5632); Qwen/Qwen1.5-MoE-A2.7B config.json."""
    return ModelConfig(name="qwen1.5-moe-a2.7b", family="qwen2_moe", vocab_size=151936, hidden_size=2048,
                       num_layers=24, num_heads=16, attention_bias="qkv", dense_intermediate_size=5632, num_experts=60,
                       top_k=4, expert_intermediate_size=1408, num_shared_experts=4, shared_intermediate_size=5632,
                       shared_expert_gate=True, max_context=8192)


def qwen2_57b_a14b() -> ModelConfig:
    """Qwen2-57B-A14B (Yang et al. 2024, Qwen2 Technical Report, arXiv:2407.10671): 57B total, 14B activated;
    64 experts top-8 + a gated shared expert of 8 experts' width (20480); Qwen/Qwen2-57B-A14B config.json."""
    return ModelConfig(name="qwen2-57b-a14b", family="qwen2_moe", vocab_size=151936, hidden_size=3584, num_layers=28,
                       num_heads=28, num_kv_heads=4, attention_bias="qkv", dense_intermediate_size=18944,
                       num_experts=64, top_k=8, expert_intermediate_size=2560, num_shared_experts=8,
                       shared_intermediate_size=20480, shared_expert_gate=True, max_context=32768)


def qwen3_30b_a3b() -> ModelConfig:
    """Qwen3-30B-A3B (Qwen/Qwen3-30B-A3B model card, Apr 2025): 30.5B total, 3.3B activated, 29.9B non-embedding;
    128 experts top-8 (renormalised), no shared expert, q/k RMSNorm per head; its config.json."""
    return ModelConfig(name="qwen3-30b-a3b", family="qwen3_moe", vocab_size=151936, hidden_size=2048, num_layers=48,
                       num_heads=32, num_kv_heads=4, head_dim=128, qk_norm="head", dense_intermediate_size=6144,
                       num_experts=128, top_k=8, expert_intermediate_size=768, max_context=40960)


def qwen3_235b_a22b() -> ModelConfig:
    """Qwen3-235B-A22B (Qwen/Qwen3-235B-A22B model card, Apr 2025): 235B total, 22B activated, 234B non-embedding;
    128 experts top-8; its config.json."""
    return ModelConfig(name="qwen3-235b-a22b", family="qwen3_moe", vocab_size=151936, hidden_size=4096, num_layers=94,
                       num_heads=64, num_kv_heads=4, head_dim=128, qk_norm="head", dense_intermediate_size=12288,
                       num_experts=128, top_k=8, expert_intermediate_size=1536, max_context=40960)


def olmoe_1b_7b() -> ModelConfig:
    """OLMoE-1B-7B (Muennighoff et al. 2024, arXiv:2409.02060): 6.9B total, 1.3B active; 64 experts top-8,
    q/k norms over the whole projections; allenai/OLMoE-1B-7B-0924 config.json."""
    return ModelConfig(name="olmoe-1b-7b", family="olmoe", vocab_size=50304, hidden_size=2048, num_layers=16,
                       num_heads=16, qk_norm="proj", num_experts=64, top_k=8, expert_intermediate_size=1024,
                       max_context=4096)


def dbrx() -> ModelConfig:
    """DBRX (Databricks, "Introducing DBRX", Mar 2024): 132B total, 36B active; 16 experts top-4;
    databricks/dbrx-base config.json (LayerNorm without bias, same count as RMSNorm)."""
    return ModelConfig(name="dbrx", family="dbrx", vocab_size=100352, hidden_size=6144, num_layers=40, num_heads=48,
                       num_kv_heads=8, num_experts=16, top_k=4, expert_intermediate_size=10752, max_context=32768)


def grok_1() -> ModelConfig:
    """Grok-1 (xAI, "Open Release of Grok-1", Mar 2024): 314B total, "25% of the weights active on a given
    token" (no exact active figure published). Hyper-parameters from xai-org/grok-1 run.py / model.py: 64 layers,
    d_model 6144, 48 query / 8 KV heads of 128, 8 experts top-2 (softmax, no renormalisation), expert width
    int(8 * 6144) * 2 // 3 = 32768 (GeGLU), vocabulary 131072, embedding shared with the output. Approximated:
    Grok-1's extra post-attention/post-MLP norms (4 per layer) are counted as 2."""
    return ModelConfig(name="grok-1", family="grok", vocab_size=131072, hidden_size=6144, num_layers=64, num_heads=48,
                       num_kv_heads=8, head_dim=128, num_experts=8, top_k=2, expert_intermediate_size=32768,
                       tie_embeddings=True, activation="gelu", max_context=8192)


def arctic() -> ModelConfig:
    """Snowflake Arctic (Snowflake, "Snowflake Arctic: The Best LLM for Enterprise AI", Apr 2024): a dense-MoE
    hybrid, "10B dense + 128 x 3.66B MoE MLP, 480B total and 17B active"; Snowflake/snowflake-arctic-base
    config.json: 35 layers, d 7168, 56 heads / 8 KV, 128 experts top-2 of width 4864, and in every layer a residual
    SwiGLU MLP of width hidden_size (7168, with its own norm) beside the MoE."""
    return ModelConfig(name="arctic", family="arctic", vocab_size=32000, hidden_size=7168, num_layers=35, num_heads=56,
                       num_kv_heads=8, num_experts=128, top_k=2, expert_intermediate_size=4864,
                       residual_intermediate_size=7168, max_context=4096)


def llama4_scout() -> ModelConfig:
    """Llama-4-Scout-17B-16E (Meta, "The Llama 4 herd", Apr 2025, and the model card): 109B total, 17B active;
    16 experts top-1 (sigmoid gate on the expert input) + a shared expert in all 48 layers, chunked attention
    (8192) on 3 of 4 layers; the total includes the vision encoder (counted from its vision_config);
    meta-llama/Llama-4-Scout-17B-16E config.json."""
    return ModelConfig(name="llama-4-scout", family="llama4", vocab_size=202048, hidden_size=5120, num_layers=48,
                       num_heads=40, num_kv_heads=8, head_dim=128, qk_norm="l2", local_attention_layers=36,
                       local_attention_window=8192, dense_intermediate_size=16384, num_experts=16, top_k=1,
                       expert_intermediate_size=8192, num_shared_experts=1, shared_intermediate_size=8192,
                       vision_config=_LLAMA4_VISION, max_context=10485760)


def llama4_maverick() -> ModelConfig:
    """Llama-4-Maverick-17B-128E (Meta, "The Llama 4 herd", Apr 2025, and the model card): 400B total, 17B
    active; 128 experts top-1 + shared expert on every other layer (24 MoE, 24 dense of width 16384), no qk-norm;
    total includes the vision encoder; meta-llama/Llama-4-Maverick-17B-128E config.json."""
    return ModelConfig(name="llama-4-maverick", family="llama4", vocab_size=202048, hidden_size=5120, num_layers=48,
                       num_heads=40, num_kv_heads=8, head_dim=128, local_attention_layers=36,
                       local_attention_window=8192, moe_every=2, dense_intermediate_size=16384, num_experts=128,
                       top_k=1, expert_intermediate_size=8192, num_shared_experts=1, shared_intermediate_size=8192,
                       vision_config=_LLAMA4_VISION, max_context=1048576)


def gpt_oss_20b() -> ModelConfig:
    """gpt-oss-20b (OpenAI, "gpt-oss-120b & gpt-oss-20b Model Card", Aug 2025, arXiv:2508.10925, Table 1):
    20.91B total, 3.61B active (active counts the unembedding, not the embedding); 32 experts top-4 with
    biases, attention sinks, banded (128) attention on every other layer; openai/gpt-oss-20b config.json."""
    return ModelConfig(name="gpt-oss-20b", family="gpt_oss", vocab_size=201088, hidden_size=2880, num_layers=24,
                       num_heads=64, num_kv_heads=8, head_dim=64, attention_bias="all", attention_sinks=True,
                       local_attention_layers=12, local_attention_window=128, num_experts=32, top_k=4,
                       expert_intermediate_size=2880, expert_bias=True, router_bias=True, max_context=131072)


def gpt_oss_120b() -> ModelConfig:
    """gpt-oss-120b (OpenAI model card, arXiv:2508.10925, Table 1): 116.83B total, 5.13B active (without the
    input embedding); 128 experts top-4, 36 layers; openai/gpt-oss-120b config.json."""
    return ModelConfig(name="gpt-oss-120b", family="gpt_oss", vocab_size=201088, hidden_size=2880, num_layers=36,
                       num_heads=64, num_kv_heads=8, head_dim=64, attention_bias="all", attention_sinks=True,
                       local_attention_layers=18, local_attention_window=128, num_experts=128, top_k=4,
                       expert_intermediate_size=2880, expert_bias=True, router_bias=True, max_context=131072)


def switch_base_128() -> ModelConfig:
    """Switch-Base-128 (Fedus et al. 2021, arXiv:2101.03961, Table 9: "Switch-Base, 7B"; google/switch-base-128
    config.json): T5-Base encoder-decoder (12 + 12 layers, d 768, 12 heads of 64, ReLU FFN 3072), every other FFN
    a Switch layer of 128 experts, top-1, capacity 64 tokens (HF default). Approximated: the encoder-decoder is
    one stack of 24 layers whose 12 decoder layers carry a cross-attention block; T5's relative position biases
    are not counted; "active" counts every layer (an encoder token and a decoder token together)."""
    return ModelConfig(name="switch-base-128", family="switch", vocab_size=32128, hidden_size=768, num_layers=24,
                       encoder_layers=12, num_heads=12, moe_every=2, dense_intermediate_size=3072, dense_glu=False,
                       num_experts=128, top_k=1, expert_intermediate_size=3072, expert_glu=False, tie_embeddings=True,
                       activation="relu", max_context=512)


def switch_c_2048() -> ModelConfig:
    """Switch-C (Fedus et al. 2021, arXiv:2101.03961, Table 9: 1571B parameters, "1.6T"): 15 + 15 layers,
    d 2080, 32 heads of 64, 2048 experts of width 6144 in every layer, top-1; google/switch-c-2048 config.json.
    Approximated as Switch-Base-128 is (one stack with cross-attention on the decoder half)."""
    return ModelConfig(name="switch-c-2048", family="switch", vocab_size=32128, hidden_size=2080, num_layers=30,
                       encoder_layers=15, num_heads=32, head_dim=64, num_experts=2048, top_k=1,
                       expert_intermediate_size=6144, expert_glu=False, tie_embeddings=True, activation="relu",
                       router=RouterConfig.switch(2048), max_context=512)


def gshard_600b() -> ModelConfig:
    """GShard M4 "MoE(2048E, 36L)" (Lepikhin et al. 2020, arXiv:2006.16668, Table 1: 600B weights): Transformer
    encoder-decoder of 36 layers (18 + 18), d 1024, 16 heads, ReLU FFN 8192, every other FFN a MoE of 2048
    experts, top-2 with capacity factor 2. Approximated: the 64k shared vocabulary and tied embeddings are
    assumed; GShard's random second-expert dispatch is not modelled; cross-attention as for Switch."""
    return ModelConfig(name="gshard-600b", family="gshard", vocab_size=64000, hidden_size=1024, num_layers=36,
                       encoder_layers=18, num_heads=16, moe_every=2, dense_intermediate_size=8192, dense_glu=False,
                       num_experts=2048, top_k=2, expert_intermediate_size=8192, expert_glu=False,
                       tie_embeddings=True, activation="relu", router=RouterConfig.gshard(2048, 2.0))


def glam_64b_64e() -> ModelConfig:
    """GLaM (64B/64E) (Du et al. 2022, arXiv:2112.06905, Table 4; Google AI blog Dec 2021): 1.2T total, 96.6B
    activated; decoder-only, 64 layers, d 8192, 128 heads of 128, every other layer a MoE of 64 experts (top-2)
    with a plain GELU FFN of 32768; the dense layers use a gated (GLU) FFN. Approximated: the 256k vocabulary is
    tied; per-layer relative position biases are not counted; capacity limits are not modelled."""
    return ModelConfig(name="glam-64b-64e", family="glam", vocab_size=256000, hidden_size=8192, num_layers=64,
                       num_heads=128, head_dim=128, moe_every=2, dense_intermediate_size=32768, num_experts=64,
                       top_k=2, expert_intermediate_size=32768, expert_glu=False, tie_embeddings=True,
                       activation="gelu", max_context=1024)


_PRESETS: Dict[str, Callable[[], ModelConfig]] = {
    "mixtral-8x7b": mixtral_8x7b,
    "mixtral-8x22b": mixtral_8x22b,
    "deepseek-moe-16b": deepseek_moe_16b,
    "deepseek-v2": deepseek_v2,
    "deepseek-v2-lite": deepseek_v2_lite,
    "deepseek-v3": deepseek_v3,
    "kimi-k2": kimi_k2,
    "qwen1.5-moe-a2.7b": qwen15_moe_a27b,
    "qwen2-57b-a14b": qwen2_57b_a14b,
    "qwen3-30b-a3b": qwen3_30b_a3b,
    "qwen3-235b-a22b": qwen3_235b_a22b,
    "olmoe-1b-7b": olmoe_1b_7b,
    "dbrx": dbrx,
    "grok-1": grok_1,
    "arctic": arctic,
    "llama-4-scout": llama4_scout,
    "llama-4-maverick": llama4_maverick,
    "gpt-oss-20b": gpt_oss_20b,
    "gpt-oss-120b": gpt_oss_120b,
    "switch-base-128": switch_base_128,
    "switch-c-2048": switch_c_2048,
    "gshard-600b": gshard_600b,
    "glam-64b-64e": glam_64b_64e,
}
_ALIASES = {
    "mixtral": "mixtral-8x7b", "deepseek-r1": "deepseek-v3", "deepseekmoe-16b": "deepseek-moe-16b",
    "qwen1.5-moe": "qwen1.5-moe-a2.7b", "qwen2-moe": "qwen2-57b-a14b", "qwen3-30b": "qwen3-30b-a3b",
    "qwen3-235b": "qwen3-235b-a22b", "olmoe": "olmoe-1b-7b", "snowflake-arctic": "arctic", "grok": "grok-1",
    "llama-4-scout-17b-16e": "llama-4-scout", "llama-4-maverick-17b-128e": "llama-4-maverick",
    "llama4-scout": "llama-4-scout", "llama4-maverick": "llama-4-maverick", "switch-base": "switch-base-128",
    "switch-c": "switch-c-2048", "gshard": "gshard-600b", "glam": "glam-64b-64e", "kimi-k2-instruct": "kimi-k2",
    "dbrx-base": "dbrx", "dbrx-instruct": "dbrx",
}


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

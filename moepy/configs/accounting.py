"""Accounting of a ModelConfig: its weight tensors, parameters, memory, FLOPs and KV cache.

Everything is computed from the architecture (`tensors()` lists each kind of weight with its count); nothing
is typed in. ModelConfig's methods (count_params, memory_bytes, flops_per_token, kv_cache_bytes, summary,
tensors) call the functions here; they take any ModelConfig.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import mamba as _mamba
from .fields import PARTS, is_int

def expert_combinations(num_experts: int, top_k: int) -> int:
    """C(E, k): how many distinct sets of k experts a token can be routed to in one MoE layer.

    Mixtral's 8 experts, top-2 give 28; 128 experts, top-2 give 8,128; DeepSeek-V3's 256, top-8 give 4.1e14.
    """
    return math.comb(int(num_experts), int(top_k))


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
        """True for formats under 16 bits per weight."""
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


WEIGHT_FORMATS: Dict[str, WeightFormat] = {
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


def weight_format(dtype) -> WeightFormat:
    if isinstance(dtype, WeightFormat):
        return dtype
    key = str(getattr(dtype, "name", dtype)).lower().replace("torch.", "")
    key = _FORMAT_ALIASES.get(key, key)
    if key not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {dtype!r}; expected one of {sorted(WEIGHT_FORMATS)} "
                         f"(or aliases {sorted(_FORMAT_ALIASES)})")
    return WEIGHT_FORMATS[key]


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
        """Elements over all `count` copies."""
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
    mamba: int = 0  # the Mamba / Mamba-2 mixers of hybrid designs (their inner norms are in `norms`)
    moe_latent: int = 0  # the projections into and out of a latent MoE's expert space (always active)

    @property
    def total(self) -> int:
        """Every parameter, the embedding and the head included (the head once if tied), the vision tower
        included, multi-token-prediction modules excluded."""
        return (self.embedding + self.lm_head + self.attention + self.norms + self.dense_mlp + self.routed_experts
                + self.shared_experts + self.router + self.vision + self.mamba + self.moe_latent)

    @property
    def active(self) -> int:
        """Parameters one text token uses: all but the unselected routed experts and the vision tower."""
        return (self.embedding + self.lm_head + self.attention + self.norms + self.dense_mlp
                + self.routed_experts_active + self.shared_experts + self.router + self.mamba + self.moe_latent)

    @property
    def total_non_embedding(self) -> int:
        """All parameters but the embedding and the head."""
        return self.total - self.embedding - self.lm_head

    @property
    def active_non_embedding(self) -> int:
        """Active parameters without the embedding and the head (Qwen's non-embedding convention)."""
        return self.active - self.embedding - self.lm_head

    @property
    def active_without_input_embedding(self) -> int:
        """Active minus the input embedding table (a lookup, no matmul); with tied embeddings the table
        is the head and stays. DeepSeek-V2/V3's and gpt-oss's convention."""
        return self.active - (0 if self.tied_embeddings else self.embedding)

    @property
    def activation_ratio(self) -> float:
        """active / total."""
        return self.active / self.total

    @property
    def experts_per_layer(self) -> int:
        """E, routed experts per MoE layer."""
        return self.num_experts

    def as_dict(self) -> dict:
        """A JSON-ready dict, the derived totals included."""
        d = dataclasses.asdict(self)
        for p in ("total", "active", "total_non_embedding", "active_non_embedding", "active_without_input_embedding",
                  "activation_ratio"):
            d[p] = getattr(self, p)
        return d


@dataclass(frozen=True)
class FlopCount:
    """Forward FLOPs (2 per multiply-add) of one token that attends to `context` tokens.

    The linear parts are 2 x their active weights; `attention_scores` is QK^T and AV against the context
    (local-attention layers see at most their window). Norms, activations and softmax are not counted.
    Hybrid designs: `mamba` is 2 x the Mamba mixers' weights (projections, convolution, per-channel vectors) and
    `ssm_scan` their state update and readout (independent of the context)."""

    context: int
    attention_proj: int
    attention_scores: int
    dense_mlp: int
    routed_experts: int
    shared_experts: int
    router: int
    lm_head: int
    mamba: int = 0
    ssm_scan: int = 0

    @property
    def attention(self) -> int:
        """Projections plus scores."""
        return self.attention_proj + self.attention_scores

    @property
    def total(self) -> int:
        """Every counted FLOP."""
        return (self.attention_proj + self.attention_scores + self.dense_mlp + self.routed_experts
                + self.shared_experts + self.router + self.lm_head + self.mamba + self.ssm_scan)

    def as_dict(self) -> dict:
        """A JSON-ready dict, the derived totals included."""
        d = dataclasses.asdict(self)
        d["attention"] = self.attention
        d["total"] = self.total
        return d


LLAMA4_VISION_DEFAULTS = dict(hidden_size=768, num_hidden_layers=34, num_attention_heads=16, num_channels=3,
                               intermediate_size=5632, vision_output_dim=7680, image_size=448, patch_size=14,
                               projector_input_dim=4096, projector_output_dim=4096)


def vision_tensors(vc: Mapping[str, Any], text_hidden: int) -> List[Tuple[str, Tuple[int, ...], int]]:
    """(name, shape, count) of transformers' Llama4VisionModel + Llama4MultiModalProjector for `vc`."""
    v = {k: (vc.get(k) if vc.get(k) is not None else dflt) for k, dflt in LLAMA4_VISION_DEFAULTS.items()}
    for k, val in v.items():
        if not (is_int(val) and val >= 1):
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


def fmt_count(n: float) -> str:
    n = float(n)
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            v = n / div
            return f"{v:#.3g}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return f"{n:.0f}"


def fmt_combos(n: int) -> str:
    if n < 10 ** 7:
        return f"{n:,}"
    mant, exp = f"{n:.2e}".split("e+")
    return f"{mant}e{int(exp)}"


def attention_tensors(cfg) -> List[Tuple[str, Tuple[int, ...]]]:
    H, nh, nkv, hd = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    t: List[Tuple[str, Tuple[int, ...]]] = []
    if cfg.is_mla:
        biased = cfg.attention_bias == "all"
        qk = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
        if cfg.q_lora_rank:
            t += [("q_a_proj", (cfg.q_lora_rank, H))]
            t += [("q_a_proj.bias", (cfg.q_lora_rank,))] if biased else []
            t += [("q_a_layernorm", (cfg.q_lora_rank,)), ("q_b_proj", (nh * qk, cfg.q_lora_rank))]
        else:
            t += [("q_proj", (nh * qk, H))]
        kv_a = cfg.kv_lora_rank + cfg.qk_rope_head_dim
        t += [("kv_a_proj_with_mqa", (kv_a, H))] + ([("kv_a_proj_with_mqa.bias", (kv_a,))] if biased else [])
        t += [("kv_a_layernorm", (cfg.kv_lora_rank,)),
              ("kv_b_proj", (nh * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank)),
              ("o_proj", (H, nh * cfg.v_head_dim))]
        t += [("o_proj.bias", (H,))] if biased else []
        return t
    t = [("q_proj", (nh * hd, H)), ("k_proj", (nkv * hd, H)), ("v_proj", (nkv * hd, H)), ("o_proj", (H, nh * hd))]
    if cfg.attention_bias != "none":
        t += [("q_proj.bias", (nh * hd,)), ("k_proj.bias", (nkv * hd,)), ("v_proj.bias", (nkv * hd,))]
    if cfg.attention_bias == "all":
        t += [("o_proj.bias", (H,))]
    if cfg.qk_norm == "head":
        t += [("q_norm", (hd,)), ("k_norm", (hd,))]
    elif cfg.qk_norm == "proj":
        t += [("q_norm", (nh * hd,)), ("k_norm", (nkv * hd,))]
    if cfg.attention_sinks:
        t += [("sinks", (nh,))]
    return t


def mlp_tensors(cfg, prefix: str, width: int, glu: bool) -> List[Tuple[str, Tuple[int, ...]]]:
    H = cfg.hidden_size
    up = [(f"{prefix}.gate_proj", (width, H)), (f"{prefix}.up_proj", (width, H))] if glu else \
        [(f"{prefix}.up_proj", (width, H))]
    t = up + [(f"{prefix}.down_proj", (H, width))]
    if cfg.mlp_bias:
        t += [(n + ".bias", (width,)) for n, _ in up] + [(f"{prefix}.down_proj.bias", (H,))]
    return t


def moe_tensors(cfg) -> List[Tuple[str, str, Tuple[int, ...]]]:
    """(name, part, shape) of one MoE layer's MLP block."""
    H, E, I = cfg.hidden_size, cfg.num_experts, cfg.expert_intermediate_size
    t = [("router", "router", (E, H))]
    Lt = cfg.moe_latent_size
    if Lt:  # the experts read and write the latent space
        t += [("latent.fc1", "moe_latent", (Lt, H)), ("latent.fc2", "moe_latent", (H, Lt))]
        t += [("latent.fc1.bias", "moe_latent", (Lt,)), ("latent.fc2.bias", "moe_latent", (H,))] if cfg.mlp_bias else []
        H = Lt
    if cfg.router_bias:
        t.append(("router.bias", "router", (E,)))
    if cfg.selection_bias:
        t.append(("router.e_score_correction_bias", "router", (E,)))
    up = 2 * I if cfg.expert_glu else I
    t += [("experts.gate_up_proj" if cfg.expert_glu else "experts.up_proj", "routed_experts", (E, up, H)),
          ("experts.down_proj", "routed_experts", (E, H, I))]
    if cfg.expert_bias:
        t += [("experts.gate_up_proj_bias" if cfg.expert_glu else "experts.up_proj_bias", "routed_experts", (E, up)),
              ("experts.down_proj_bias", "routed_experts", (E, H))]
    H = cfg.hidden_size
    if cfg.shared_intermediate_size:
        t += [(n, "shared_experts", s)
              for n, s in mlp_tensors(cfg, "shared_experts", cfg.shared_intermediate_size, cfg.expert_glu)]
        if cfg.shared_expert_gate:
            t.append(("shared_expert_gate", "shared_experts", (1, H)))
    if cfg.residual_intermediate_size:
        t += [(n, "dense_mlp", s) for n, s in mlp_tensors(cfg, "residual_mlp", cfg.residual_intermediate_size, True)]
        t.append(("residual_layernorm", "norms", (H,)))
    return t


def tensors(cfg, include_vision: bool = True, include_mtp: bool = False) -> List[Tensor]:
    """The weight tensors of the model, one entry per kind with its layer count (generic names)."""
    H, V, L = cfg.hidden_size, cfg.vocab_size, cfg.num_layers
    out: List[Tensor] = []

    def add(name, part, shape, count=1):
        if count > 0:
            out.append(Tensor(name, part, tuple(int(s) for s in shape), int(count)))

    add("embed_tokens", "embedding", (V, H))
    if not cfg.tie_embeddings:
        add("lm_head", "lm_head", (V, H))
    add("norm", "norms", (H,), 2 if cfg.is_encoder_decoder else 1)
    attn = attention_tensors(cfg)
    for n, s in attn:
        add(f"layers.self_attn.{n}", "attention", s, len(cfg.attention_layers))
    for kind in ("mamba", "mamba2"):
        n_kind = sum(1 for i in range(L) if cfg.mixer(i) == kind)
        if n_kind:
            for n, part, s in _mamba.tensors(cfg.mamba, kind, H):
                add(f"layers.{kind}.{n}", part, s, n_kind)
    # one pre-norm per sublayer: before the mixer (input_layernorm) and before the feed-forward block
    add("layers.input_layernorm", "norms", (H,), sum(1 for i in range(L) if cfg.mixer(i) != "none"))
    add("layers.post_attention_layernorm", "norms", (H,), sum(1 for i in range(L) if cfg.ffn(i) != "none"))
    if cfg.is_encoder_decoder:
        n_dec = L - cfg.encoder_layers
        for n, s in attn:
            add(f"layers.cross_attn.{n}", "attention", s, n_dec)
        add("layers.cross_attn_layernorm", "norms", (H,), n_dec)
    n_dense, n_moe = len(cfg.dense_mlp_layers), len(cfg.moe_layers)
    for n, s in mlp_tensors(cfg, "layers.mlp", cfg.dense_intermediate_size, cfg.dense_glu):
        add(n, "dense_mlp", s, n_dense)
    for n, part, s in moe_tensors(cfg):
        add(f"layers.mlp.{n}", part, s, n_moe)
    if include_vision and cfg.vision_config is not None:
        for n, s, cnt in vision_tensors(cfg.vision_config, H):
            add(f"vision.{n}", "vision", s, cnt)
    if include_mtp and cfg.mtp_layers:
        m = cfg.mtp_layers
        for n, s in attn:
            add(f"mtp.self_attn.{n}", "mtp", s, m)
        for n, _, s in moe_tensors(cfg):
            add(f"mtp.mlp.{n}", "mtp", s, m)
        add("mtp.eh_proj", "mtp", (H, 2 * H), m)
        add("mtp.norms", "mtp", (5 * H,), m)  # input, post-attention, enorm, hnorm, shared_head.norm
    return out


def count_params(cfg) -> ParamCount:
    """Parameters by component: see ParamCount (total, active, *_non_embedding, activation_ratio ...)."""
    parts = dict.fromkeys(PARTS, 0)
    for t in cfg.tensors(include_vision=True, include_mtp=True):
        parts[t.part] += t.numel
    routed = parts["routed_experts"]
    return ParamCount(
        embedding=parts["embedding"], lm_head=parts["lm_head"], attention=parts["attention"], norms=parts["norms"],
        dense_mlp=parts["dense_mlp"], routed_experts=routed,
        routed_experts_active=routed * cfg.top_k // cfg.num_experts,
        shared_experts=parts["shared_experts"], router=parts["router"], vision=parts["vision"], mtp=parts["mtp"],
        num_experts=cfg.num_experts, top_k=cfg.top_k, moe_layers=len(cfg.moe_layers),
        dense_layers=len(cfg.dense_layers), tied_embeddings=cfg.tie_embeddings, mamba=parts["mamba"],
        moe_latent=parts["moe_latent"])


def memory_bytes(cfg, dtype="bf16", *, experts_only: bool = False, group_size: Optional[int] = None,
                 include_mtp: bool = False, include_vision: bool = True) -> int:
    """Bytes to hold the weights in `dtype` (see FORMATS: fp32, bf16, fp16, fp8, int8, int4, mxfp4).

    A quantized format stores every weight matrix (attention, dense and expert MLPs, embedding, head,
    vision tower) with its group or block scales; vectors (norms, biases, sinks) and the router stay in
    bf16. experts_only=True quantizes the routed experts only and keeps the rest in bf16 (gpt-oss's
    published MXFP4 checkpoints). group_size overrides the format's group (int8, int4, mxfp4)."""
    fmt = weight_format(dtype)
    hi = WEIGHT_FORMATS["bf16"] if fmt.quantized else fmt
    if group_size is not None:
        if not (is_int(group_size) and group_size >= 1):
            raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
        if not fmt.group:
            raise ValueError(f"format {fmt.name} has no group size to override")
        fmt = dataclasses.replace(fmt, group=int(group_size))
    bits = 0
    for t in cfg.tensors(include_vision=include_vision, include_mtp=include_mtp):
        matrix = len(t.shape) >= 2 and min(t.shape[-2:]) > 1 and t.part != "router"
        use = fmt if matrix and (not experts_only or t.part == "routed_experts") else hi
        if len(t.shape) >= 2:
            lead = math.prod(t.shape[:-2]) * t.count
            bits += lead * use.matrix_bits(t.shape[-2], t.shape[-1])
        else:
            bits += t.numel * use.bits
    return -(-bits // 8)


def score_dims(cfg) -> Tuple[int, int]:
    """(query-key dim, value dim) summed over heads."""
    if cfg.is_mla:
        return (cfg.num_heads * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim), cfg.num_heads * cfg.v_head_dim)
    return cfg.num_heads * cfg.head_dim, cfg.num_heads * cfg.head_dim


def flops_per_token(cfg, context: int = 0) -> FlopCount:
    """Forward FLOPs of one token attending to `context` tokens (its KV cache), by component.

    Local-attention layers attend to min(context, window) tokens; MLA is counted in its naive
    (non-absorbed) form; the router counts 2 E H per MoE layer; embedding lookups are free."""
    if not (is_int(context) and context >= 0):
        raise ValueError(f"context must be an int >= 0, got {context!r}")
    p = cfg.count_params()
    dqk, dv = score_dims(cfg)
    n_local = cfg.local_attention_layers
    ctx_local = min(context, cfg.local_attention_window) if n_local else 0
    per_ctx = 2 * (dqk + dv)
    scores = per_ctx * ((len(cfg.attention_layers) - n_local) * context + n_local * ctx_local)
    scan = sum(_mamba.scan_flops(cfg.mamba, cfg.mixer(i), cfg.hidden_size) for i in cfg.mamba_layers)
    if cfg.is_encoder_decoder:
        scores += per_ctx * (cfg.num_layers - cfg.encoder_layers) * context
    return FlopCount(context=context, attention_proj=2 * p.attention, attention_scores=scores,
                     dense_mlp=2 * p.dense_mlp, routed_experts=2 * (p.routed_experts_active + p.moe_latent),
                     shared_experts=2 * p.shared_experts, router=2 * p.router,
                     lm_head=2 * cfg.vocab_size * cfg.hidden_size, mamba=2 * p.mamba, ssm_scan=scan)


def kv_cache_bytes(cfg, context: int, dtype="bf16") -> int:
    """Bytes of KV cache for `context` tokens (one sequence): 2 x kv_heads x head_dim per layer and token,
    or MLA's compressed kv_lora_rank + qk_rope_head_dim; local layers keep at most their window.
    dtype: fp32, bf16, fp16, fp8 or int8 (no scales counted)."""
    if not (is_int(context) and context >= 0):
        raise ValueError(f"context must be an int >= 0, got {context!r}")
    fmt = weight_format(dtype)
    if fmt.bits not in (8, 16, 32):
        raise ValueError(f"kv_cache_bytes supports 8, 16 and 32-bit formats, got {fmt.name}")
    per = (cfg.kv_lora_rank + cfg.qk_rope_head_dim) if cfg.is_mla else 2 * cfg.num_kv_heads * cfg.head_dim
    n_local = cfg.local_attention_layers
    ctx_local = min(context, cfg.local_attention_window) if n_local else 0
    tokens = (len(cfg.attention_layers) - n_local) * context + n_local * ctx_local
    return tokens * per * fmt.bits // 8


def recurrent_state_bytes(cfg, dtype="fp32") -> int:
    """Bytes of the Mamba layers' recurrent state for one sequence (SSM state and convolution window), the same
    for any context length; 0 without Mamba layers. dtype: fp32 (transformers' default cache), bf16 or fp16."""
    fmt = weight_format(dtype)
    if fmt.bits not in (16, 32):
        raise ValueError(f"recurrent_state_bytes supports 16 and 32-bit formats, got {fmt.name}")
    n = sum(_mamba.state_elems(cfg.mamba, cfg.mixer(i), cfg.hidden_size) for i in cfg.mamba_layers)
    return n * fmt.bits // 8


def summary(cfg, context: int = 4096) -> str:
    """A readable breakdown: parameters by component, memory per format, FLOPs per token at `context`."""
    p, f = cfg.count_params(), cfg.flops_per_token(context)
    lines = [f"{cfg.name} ({cfg.family}): {fmt_count(p.total)} total, {fmt_count(p.active)} active "
             f"({100 * p.activation_ratio:.1f}%), {cfg.num_layers} layers ({p.moe_layers} MoE"
             + (f", {len(cfg.mamba_layers)} Mamba" if cfg.mamba_layers else "")
             + f"), {cfg.num_experts} experts top-{cfg.top_k}"
             + (f" + {cfg.num_shared_experts} shared" if cfg.num_shared_experts else "")
             + f", C(E,k) = {fmt_combos(cfg.expert_combinations)}"]
    lines.append("  parameters:")
    for part in ("embedding", "lm_head", "attention", "mamba", "norms", "dense_mlp", "routed_experts",
                 "shared_experts", "router", "vision", "mtp"):
        v = getattr(p, part)
        if v:
            extra = f"  (active {fmt_count(p.routed_experts_active)})" if part == "routed_experts" else ""
            extra = "  (not in total)" if part == "mtp" else extra
            lines.append(f"    {part:<16}{fmt_count(v):>10}{extra}")
    lines.append(f"    {'non-embedding':<16}{fmt_count(p.total_non_embedding):>10}  "
                 f"(active {fmt_count(p.active_non_embedding)})")
    lines.append("  weight memory: " + ", ".join(f"{k} {cfg.memory_bytes(k) / 1e9:.1f} GB" for k in WEIGHT_FORMATS))
    terms = [("attention", f.attention), ("mamba", f.mamba + f.ssm_scan), ("dense", f.dense_mlp),
             ("routed", f.routed_experts), ("shared", f.shared_experts), ("router", f.router), ("head", f.lm_head)]
    lines.append(f"  forward FLOPs/token at context {context}: {fmt_count(f.total)} = "
                 + " + ".join(f"{k} {fmt_count(v)}" for k, v in terms if v)
                 + f" (attention scores {fmt_count(f.attention_scores)})")
    lines.append(f"  KV cache at context {context}: {cfg.kv_cache_bytes(context) / 1e9:.2f} GB (bf16)"
                 + (f"; Mamba state {recurrent_state_bytes(cfg) / 1e6:.1f} MB (fp32, any context)"
                    if cfg.mamba_layers else ""))
    return "\n".join(lines)

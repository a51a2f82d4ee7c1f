"""Test support: tiny, seeded Hugging Face transformers MoE blocks with their weights in checkpoint naming.

Not a test module.  ``make_block(family, ...)`` builds the transformers (5.23) MoE block of one family
directly from a small config, fills every parameter/buffer with a seeded normal, and returns an
:class:`HFBlock` exposing

* ``hf_config``       - the config as a JSON-able dict, as it would appear in the model's config.json
                        (Hub field names, nested ``ffn_config`` for DBRX, ``text_config`` for Llama 4),
* ``tensors_legacy``  - full checkpoint tensor names (the names the Hub safetensors use) -> float32 arrays,
* ``tensors_fused``   - the same weights under the v5 in-memory ``state_dict`` names,
* ``forward`` / ``route`` / ``router_logits`` / ``kept`` running the torch block.

See tests/HF_NOTES.md for the math of every family as transformers 5.23 computes it.
Everything is float32 on CPU; results depend only on the arguments (seed included).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

FAMILIES = (
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "olmoe",
    "dbrx",
    "deepseek_v2",
    "deepseek_v3",
    "llama4",
    "gpt_oss",
    "switch",
    "jamba",
    "nemotron_h",
)

# Overrides that are not config fields (consumed by make_block itself).
_BUILDER_KNOBS = (
    "layer_index",  # which layer the block is (default 1)
    "num_hidden_layers",  # total layers in hf_config (default max(2, layer_index + 1))
    "router_std",  # init std of router / gate weights and router biases (default 0.1)
    "expert_std",  # init std of expert and shared-expert weights (default 0.15)
    "bias_std",  # init std of expert biases (gpt_oss) and e_score_correction_bias (default 0.1)
    "shared_intermediate",  # shared-expert width (qwen2_moe; deepseek: multiple of intermediate)
    "switch_stack",  # "encoder" (default) or "decoder"
    "llama4_text_only",  # True: model_type llama4_text, Llama4ForCausalLM names (model.layers...)
    "experts_implementation",  # "eager" (default: the per-expert index_add_ loop), "grouped_mm", "batched_mm"
    "latent",  # nemotron_h: moe_latent_size (experts in a latent space of this width; default None)
)

# Families whose Experts class is decorated with @use_experts_implementation (dispatch on
# config._experts_implementation).  NB: from_pretrained() defaults to "grouped_mm" when available (it is on
# CPU with torch 2.13); a bare module built from a config falls back to the eager loop.
_DISPATCHING = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "gpt_oss", "jamba",
                "nemotron_h")

# Config fields whose strict dataclass validation rejects ints.
_FLOAT_FIELDS = {
    "routed_scaling_factor",
    "moe_normalize_expert_weights",
    "moe_jitter_eps",
    "moe_loss_weight",
    "swiglu_limit",
    "swiglu_alpha",
    "router_jitter_noise",
    "router_aux_loss_coef",
    "router_z_loss_coef",
    "rms_norm_eps",
    "rope_theta",
}


@dataclass
class HFBlock:
    family: str
    hf_config: dict
    layer_index: int
    tensors_legacy: dict[str, np.ndarray]
    tensors_fused: dict[str, np.ndarray]
    num_experts: int
    top_k: int
    hidden: int
    module: torch.nn.Module = field(repr=False)
    config: Any = field(repr=False)  # the transformers config object the block was built from
    prefix_legacy: str = ""  # e.g. "model.layers.1.block_sparse_moe."
    prefix_fused: str = ""  # e.g. "model.layers.1.mlp."

    # ------------------------------------------------------------------ helpers
    def _t(self, x) -> tuple[torch.Tensor, tuple]:
        a = np.asarray(x, dtype=np.float32)
        if a.shape[-1] != self.hidden or a.ndim not in (2, 3):
            raise ValueError(f"expected (T, {self.hidden}) or (B, S, {self.hidden}), got {a.shape}")
        return torch.from_numpy(np.ascontiguousarray(a)), a.shape

    @staticmethod
    def _np(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(torch.float32).cpu().numpy().copy()

    # ------------------------------------------------------------------ API
    def forward(self, x: np.ndarray) -> np.ndarray:
        """The block's MoE output (without residual) for x (T, H) -> (T, H); (B, S, H) is also accepted
        (for switch, expert capacity is counted per batch row)."""
        t, shape = self._t(x)
        t3 = t.reshape(1, *t.shape) if t.ndim == 2 else t
        with torch.no_grad():
            out = self.module(t3)
        if isinstance(out, tuple):  # llama4 -> (out, router_logits); gpt_oss -> (out, router_scores)
            out = out[0]
        return self._np(out).reshape(shape)

    def router_logits(self, x: np.ndarray) -> np.ndarray:
        """Raw router logits (N, E), N = number of tokens."""
        t, _ = self._t(x)
        t2 = t.reshape(-1, self.hidden)
        m, f = self.module, self.family
        with torch.no_grad():
            if f == "dbrx":
                logits = m.router(t2)
            elif f == "jamba":
                logits = m.router(t2)[0]
            elif f == "llama4":
                logits = m.router(t2)[1]
            elif f == "gpt_oss":
                logits = m.router(t2)[0]
            elif f == "switch":
                logits = m.router(t2.reshape(1, -1, self.hidden))[2].reshape(-1, self.num_experts)
            else:
                logits = m.gate(t2)[0]
        return self._np(logits)

    def route(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(weights (N, K) float32, experts (N, K) int64) chosen by the torch router, each row sorted by
        ascending expert id.  For switch (K = 1) this is the router's choice *before* the capacity drop
        (see ``kept``); the weight is the max softmax prob that scales the expert output."""
        t, shape = self._t(x)
        t2 = t.reshape(-1, self.hidden)
        m, f = self.module, self.family
        with torch.no_grad():
            if f == "dbrx":
                w, idx = m.route_tokens_to_experts(m.router(t2))
            elif f == "llama4":
                scores, logits = m.router(t2)
                idx = torch.topk(logits, m.router.top_k, dim=1).indices  # same call as inside Llama4Router
                w = scores.gather(1, idx)
            elif f in ("gpt_oss", "jamba"):
                _, w, idx = m.router(t2)
            elif f == "switch":
                cap = m.router.expert_capacity
                try:
                    m.router.expert_capacity = t2.shape[0] + 1  # no drop: the router's raw choice
                    onehot, probs, _ = m.router(t2.reshape(1, -1, self.hidden))
                finally:
                    m.router.expert_capacity = cap
                idx = onehot.reshape(-1, self.num_experts).argmax(-1, keepdim=True)
                w = probs.reshape(-1, 1)
            else:
                _, w, idx = m.gate(t2)
        w = self._np(w)
        idx = idx.detach().cpu().numpy().astype(np.int64)
        order = np.argsort(idx, axis=1, kind="stable")
        return np.take_along_axis(w, order, 1), np.take_along_axis(idx, order, 1)

    def kept(self, x: np.ndarray) -> np.ndarray:
        """Bool (N,): whether each token is processed by its routed expert(s).  Always True except for
        switch, where tokens beyond ``expert_capacity`` (counted per batch row, in position order) are
        dropped (their SparseMLP output is exactly 0)."""
        t, shape = self._t(x)
        if self.family != "switch":
            return np.ones(int(np.prod(shape[:-1])), dtype=bool)
        t3 = t.reshape(1, *t.shape) if t.ndim == 2 else t
        with torch.no_grad():
            onehot, _, _ = self.module.router(t3)
        return onehot.reshape(-1, self.num_experts).sum(-1).cpu().numpy() > 0


def make_input(tokens: int, hidden: int = 32, *, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Deterministic float32 activations (tokens, hidden) ~ N(0, scale^2)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    return (torch.randn(tokens, hidden, generator=g, dtype=torch.float32) * scale).numpy()


# ====================================================================== builders
def _tiny_attention(hidden: int) -> dict:
    heads = 4 if hidden % 4 == 0 else 1
    return {"num_attention_heads": heads, "num_key_value_heads": max(1, heads // 2)}


def _base(arch: str, model_type: str, hidden: int, n_layers: int) -> dict:
    att = _tiny_attention(hidden)
    return {
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": 64,
        "hidden_size": hidden,
        "num_hidden_layers": n_layers,
        **att,
        "hidden_act": "silu",
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


def _cfg_mixtral(H, F, E, K, L):
    d = _base("MixtralForCausalLM", "mixtral", H, L)
    d.update(
        intermediate_size=F,
        num_local_experts=E,
        num_experts_per_tok=K,
        router_jitter_noise=0.0,
        router_aux_loss_coef=0.02,
        output_router_logits=False,
        sliding_window=None,
    )
    return d


def _cfg_qwen2_moe(H, F, E, K, L):
    d = _base("Qwen2MoeForCausalLM", "qwen2_moe", H, L)
    d.update(
        intermediate_size=2 * F,  # dense MLP width (non-sparse layers only)
        moe_intermediate_size=F,
        shared_expert_intermediate_size=2 * F,
        num_experts=E,
        num_experts_per_tok=K,
        norm_topk_prob=False,  # Qwen1.5-MoE-A2.7B / Qwen2-57B-A14B
        decoder_sparse_step=1,
        mlp_only_layers=[],
        router_aux_loss_coef=0.001,
        output_router_logits=False,
        use_sliding_window=False,
    )
    return d


def _cfg_qwen3_moe(H, F, E, K, L):
    d = _base("Qwen3MoeForCausalLM", "qwen3_moe", H, L)
    d.update(
        head_dim=H // d["num_attention_heads"],
        intermediate_size=2 * F,
        moe_intermediate_size=F,
        num_experts=E,
        num_experts_per_tok=K,
        norm_topk_prob=True,  # Qwen3-30B-A3B / 235B-A22B (class default is False)
        decoder_sparse_step=1,
        mlp_only_layers=[],
        router_aux_loss_coef=0.001,
        output_router_logits=False,
        use_sliding_window=False,
    )
    return d


def _cfg_olmoe(H, F, E, K, L):
    d = _base("OlmoeForCausalLM", "olmoe", H, L)
    d.update(
        intermediate_size=F,  # per-expert width (OLMoE has no moe_intermediate_size)
        num_experts=E,
        num_experts_per_tok=K,
        norm_topk_prob=False,  # OLMoE-1B-7B
        clip_qkv=None,
        pad_token_id=1,
        eos_token_id=2,  # class default 50279 is outside the tiny vocab
        router_aux_loss_coef=0.01,
        output_router_logits=False,
    )
    return d


def _cfg_deepseek(version, H, F, E, K, L):
    d = _base(f"DeepseekV{version}ForCausalLM", f"deepseek_v{version}", H, L)
    d["num_key_value_heads"] = d["num_attention_heads"]
    d.update(
        intermediate_size=2 * F,  # dense MLP width (layers < first_k_dense_replace)
        moe_intermediate_size=F,
        n_routed_experts=E,
        num_experts_per_tok=K,
        first_k_dense_replace=1,
        moe_layer_freq=1,
        q_lora_rank=16,
        kv_lora_rank=16,
        qk_nope_head_dim=8,
        qk_rope_head_dim=8,
        v_head_dim=8,
    )
    if version == 2:  # DeepSeek-V2 (236B)-like, scaled down.  With V2's max-per-group score the group
        # limit can only change the selection when top_k > topk_group, hence 2 groups / keep 1.
        d.update(
            n_shared_experts=2,
            topk_method="group_limited_greedy",
            n_group=2,
            topk_group=1,
            routed_scaling_factor=16.0,
            norm_topk_prob=False,
            scoring_func="softmax",
        )
    else:  # DeepSeek-V3-like
        d.update(
            n_shared_experts=1,
            topk_method="noaux_tc",
            n_group=4,
            topk_group=2,
            routed_scaling_factor=2.5,
            norm_topk_prob=True,
            scoring_func="sigmoid",
            rope_interleave=True,
        )
    return d


def _cfg_dbrx(H, F, E, K, L):
    att = _tiny_attention(H)
    return {
        "architectures": ["DbrxForCausalLM"],
        "model_type": "dbrx",
        "d_model": H,
        "n_heads": att["num_attention_heads"],
        "n_layers": L,
        "max_seq_len": 128,
        "vocab_size": 64,
        "resid_pdrop": 0.0,
        "emb_pdrop": 0.0,
        "attn_config": {"kv_n_heads": att["num_key_value_heads"], "clip_qkv": 8.0, "rope_theta": 500000.0},
        "ffn_config": {
            "ffn_act_fn": {"name": "silu"},
            "ffn_hidden_size": F,
            "moe_num_experts": E,
            "moe_top_k": K,
            "moe_jitter_eps": 0.01,  # training only
            "moe_loss_weight": 0.05,
            "moe_normalize_expert_weights": 1.0,  # real configs say 1 (int): rejected by 5.23 strict validation
        },
        "router_aux_loss_coef": 0.05,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


def _cfg_llama4_text(H, F, E, K, L):
    att = _tiny_attention(H)
    return {
        "model_type": "llama4_text",
        "vocab_size": 64,
        "hidden_size": H,
        "intermediate_size": F,  # routed AND shared expert width
        "intermediate_size_mlp": 2 * F,  # dense layers (non-MoE) width
        "num_hidden_layers": L,
        **att,
        "head_dim": H // att["num_attention_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "num_local_experts": E,
        "num_experts_per_tok": K,
        "interleave_moe_layer_step": 1,
        "router_aux_loss_coef": 0.001,
        "router_jitter_noise": 0.0,
        "output_router_logits": False,
        "use_qk_norm": True,
        "attention_chunk_size": 64,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


_LLAMA4_TINY_VISION = {
    "model_type": "llama4_vision_model",
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 28,
    "patch_size": 14,
    "pixel_shuffle_ratio": 0.5,
    "vision_output_dim": 16,
    "projector_input_dim": 16,
    "projector_output_dim": 16,
    "rope_theta": 10000.0,
}


def _cfg_gpt_oss(H, F, E, K, L):
    d = _base("GptOssForCausalLM", "gpt_oss", H, L)
    d.update(
        head_dim=H // d["num_attention_heads"],
        intermediate_size=F,
        num_local_experts=E,
        num_experts_per_tok=K,
        experts_per_token=K,  # the Hub config carries both spellings
        swiglu_limit=7.0,
        attention_bias=True,
        sliding_window=16,
        layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(L)],
        router_aux_loss_coef=0.9,
        output_router_logits=False,
        rms_norm_eps=1e-5,
        rope_theta=150000.0,
        max_position_embeddings=131072,
        rope_scaling={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                      "original_max_position_embeddings": 4096, "truncate": False},
    )
    return d


def _cfg_switch(H, F, E, K, L):
    return {
        "architectures": ["SwitchTransformersForConditionalGeneration"],
        "model_type": "switch_transformers",
        "vocab_size": 64,
        "d_model": H,
        "d_ff": F,
        "d_kv": H // 4,
        "num_heads": 4,
        "num_layers": L,
        "num_decoder_layers": L,
        "num_sparse_encoder_layers": max(1, L // 2),
        "num_sparse_decoder_layers": max(1, L // 2),
        "num_experts": E,
        "expert_capacity": 64,
        "router_bias": False,
        "router_jitter_noise": 0.01,  # training only
        "router_dtype": "float32",
        "router_ignore_padding_tokens": False,
        "router_z_loss_coef": 0.001,
        "router_aux_loss_coef": 0.001,
        "dense_act_fn": "relu",
        "feed_forward_proj": "relu",
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "is_encoder_decoder": True,
        "decoder_start_token_id": 0,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }


def _cfg_jamba(H, F, E, K, L):
    """Jamba-v0.1-like, scaled down: MoE on odd layers, attention at i % 4 == 2 (Mamba elsewhere)."""
    d = _base("JambaForCausalLM", "jamba", H, L)
    d.update(
        intermediate_size=F,  # expert AND dense-MLP width (Jamba has one)
        num_experts=E,
        num_experts_per_tok=K,
        expert_layer_period=2,
        expert_layer_offset=1,
        attn_layer_period=4,
        attn_layer_offset=2,
        mamba_d_state=8,
        mamba_d_conv=4,
        mamba_expand=2,
        mamba_dt_rank="auto",
        mamba_conv_bias=True,
        mamba_proj_bias=False,
        router_aux_loss_coef=0.001,
        output_router_logits=False,
        use_mamba_kernels=False,
    )
    d.pop("rope_theta")
    return d


def _nemotron_pattern(L: int, layer_index: int) -> str:
    """M, E alternating (E on odd layers), one attention layer (*) at 2 when there are >= 4 layers."""
    pat = ["E" if i % 2 else "M" for i in range(L)]
    if L >= 4 and layer_index != 2:
        pat[2] = "*"
    pat[layer_index] = "E"
    return "".join(pat)


def _cfg_nemotron_h(H, F, E, K, L):
    """Nemotron 3 Nano-like, scaled down: relu2 experts, one shared expert of twice the width, sigmoid router with
    e_score_correction_bias and routed_scaling_factor 2.5, one expert group."""
    att = _tiny_attention(H)
    return {
        "architectures": ["NemotronHForCausalLM"],
        "model_type": "nemotron_h",
        "vocab_size": 64,
        "hidden_size": H,
        "num_hidden_layers": L,
        "hybrid_override_pattern": _nemotron_pattern(L, 1 if L > 1 else 0),
        **att,
        "head_dim": H // att["num_attention_heads"],
        "intermediate_size": 2 * F,  # dense MLP ('-') layers
        "mlp_hidden_act": "relu2",
        "mlp_bias": False,
        "moe_intermediate_size": F,
        "moe_shared_expert_intermediate_size": 2 * F,
        "n_routed_experts": E,
        "n_shared_experts": 1,
        "num_experts_per_tok": K,
        "n_group": 1,
        "topk_group": 1,
        "norm_topk_prob": True,
        "routed_scaling_factor": 2.5,
        "ssm_state_size": 8,
        "mamba_num_heads": 4,
        "mamba_head_dim": 8,
        "n_groups": 2,
        "conv_kernel": 4,
        "use_conv_bias": True,
        "use_bias": False,
        "layer_norm_epsilon": 1e-5,
        "max_position_embeddings": 128,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


def _config_class(family: str):
    import transformers as tf

    return {
        "mixtral": tf.MixtralConfig,
        "qwen2_moe": tf.Qwen2MoeConfig,
        "qwen3_moe": tf.Qwen3MoeConfig,
        "olmoe": tf.OlmoeConfig,
        "dbrx": tf.DbrxConfig,
        "deepseek_v2": tf.DeepseekV2Config,
        "deepseek_v3": tf.DeepseekV3Config,
        "llama4": tf.Llama4TextConfig,
        "gpt_oss": tf.GptOssConfig,
        "switch": tf.SwitchTransformersConfig,
        "jamba": tf.JambaConfig,
        "nemotron_h": tf.NemotronHConfig,
    }[family]


def _known_keys(cls) -> set[str]:
    keys = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    return keys | set(getattr(cls, "attribute_map", {}) or {})


def _coerce(key: str, value):
    if key in _FLOAT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return copy.deepcopy(value)


def _build_config(cls, d: dict, experts_implementation: str = "eager"):
    d = {k: v for k, v in d.items() if k not in ("torch_dtype", "architectures", "model_type")}
    cfg = cls(**copy.deepcopy(d))
    cfg._experts_implementation = experts_implementation
    return cfg


def _is_moe_layer(family: str, d: dict, cfg, i: int, switch_stack: str) -> bool:
    if family in ("qwen2_moe", "qwen3_moe"):
        return i not in cfg.mlp_only_layers and cfg.num_experts > 0 and (i + 1) % cfg.decoder_sparse_step == 0
    if family in ("deepseek_v2", "deepseek_v3"):
        return i >= cfg.first_k_dense_replace
    if family == "llama4":
        return i in cfg.moe_layers
    if family == "switch":
        step = cfg.decoder_sparse_step if switch_stack == "decoder" else cfg.encoder_sparse_step
        return (i % step == 1 or step == 1) if step > 0 else False
    if family == "jamba":
        return cfg.layers_num_experts[i] > 1
    if family == "nemotron_h":
        return cfg.layers_block_type[i] == "moe"
    return True  # mixtral, olmoe, dbrx, gpt_oss: every layer


_ROUTER_PARAMS = (
    "gate.weight",  # mixtral / qwen / olmoe / deepseek router
    "router.weight",  # llama4, gpt_oss
    "router.bias",  # gpt_oss
    "router.layer.weight",  # dbrx
    "router.classifier.weight",  # switch
    "shared_expert_gate.weight",  # qwen2_moe scalar shared gate
)


def _init_block(module: torch.nn.Module, seed: int, router_std: float, expert_std: float, bias_std: float):
    """Every parameter and buffer <- N(0, std^2), drawn from one generator in sorted-name order."""
    g = torch.Generator().manual_seed(seed)
    named = sorted(list(module.named_parameters()) + list(module.named_buffers()), key=lambda kv: kv[0])
    with torch.no_grad():
        for name, t in named:
            leaf = name.rsplit(".", 1)[-1]
            if name in _ROUTER_PARAMS:
                std = router_std
            elif leaf == "bias" or leaf.endswith("_bias"):  # e_score_correction_bias, gpt_oss expert biases
                std = bias_std
            else:
                std = expert_std
            t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float32).to(t.dtype) * std)


def _split_fused(family: str, fused: dict[str, np.ndarray], prefix_fused: str, prefix_legacy: str):
    """v5 in-memory names -> Hub checkpoint names (inverse of conversion_mapping.py for the
    mixtral / qwen2_moe patterns; identity for dbrx, llama4, gpt_oss, switch)."""
    out: dict[str, np.ndarray] = {}
    w_gate, w_up, w_down = ("w1", "w3", "w2") if family == "mixtral" else ("gate_proj", "up_proj", "down_proj")
    convert = family in ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "jamba")
    for k, v in fused.items():
        rel = k[len(prefix_fused):]
        if family == "nemotron_h" and rel in ("experts.up_proj", "experts.down_proj"):  # ungated: MergeModulelist
            for e in range(v.shape[0]):
                out[f"{prefix_legacy}{rel}".replace("experts.", f"experts.{e}.") + ".weight"] = \
                    np.ascontiguousarray(v[e])
        elif convert and rel == "experts.gate_up_proj":  # (E, 2I, H) = stack_e cat([gate_e; up_e], 0)
            inter = v.shape[1] // 2
            for e in range(v.shape[0]):
                out[f"{prefix_legacy}experts.{e}.{w_gate}.weight"] = np.ascontiguousarray(v[e, :inter])
                out[f"{prefix_legacy}experts.{e}.{w_up}.weight"] = np.ascontiguousarray(v[e, inter:])
        elif convert and rel == "experts.down_proj":  # (E, H, I) = stack_e down_e
            for e in range(v.shape[0]):
                out[f"{prefix_legacy}experts.{e}.{w_down}.weight"] = np.ascontiguousarray(v[e])
        else:
            out[prefix_legacy + rel] = v
    return out


def make_block(
    family: str,
    *,
    hidden: int = 32,
    intermediate: int = 24,
    experts: int = 8,
    top_k: int = 2,
    seed: int = 0,
    **overrides,
) -> HFBlock:
    """Build the transformers MoE block of ``family`` (see FAMILIES) with seeded random weights.

    ``intermediate`` is the per-expert width (Mixtral intermediate_size, Qwen/DeepSeek moe_intermediate_size,
    DBRX ffn_hidden_size, Switch d_ff, ...).  ``top_k`` is ignored for switch (always top-1).
    ``overrides``: any config field of the family (e.g. norm_topk_prob, n_group, topk_group,
    routed_scaling_factor, topk_method, n_shared_experts, shared_expert_intermediate_size, expert_capacity,
    moe_normalize_expert_weights, swiglu_limit, decoder_sparse_step, ...; DBRX ffn_config and Llama 4
    text_config fields are routed into the nested dict), plus the builder knobs in ``_BUILDER_KNOBS``.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    knobs = {k: overrides.pop(k) for k in list(overrides) if k in _BUILDER_KNOBS}
    layer_index = int(knobs.get("layer_index", 1))
    n_layers = int(knobs.get("num_hidden_layers", max(2, layer_index + 1)))
    if layer_index >= n_layers or layer_index < 0:
        raise ValueError(f"layer_index {layer_index} out of range for {n_layers} layers")
    switch_stack = knobs.get("switch_stack", "encoder")
    if switch_stack not in ("encoder", "decoder"):
        raise ValueError("switch_stack must be 'encoder' or 'decoder'")
    H, F, E = int(hidden), int(intermediate), int(experts)
    K = 1 if family == "switch" else int(top_k)

    builders = {
        "mixtral": _cfg_mixtral,
        "qwen2_moe": _cfg_qwen2_moe,
        "qwen3_moe": _cfg_qwen3_moe,
        "olmoe": _cfg_olmoe,
        "dbrx": _cfg_dbrx,
        "deepseek_v2": lambda *a: _cfg_deepseek(2, *a),
        "deepseek_v3": lambda *a: _cfg_deepseek(3, *a),
        "llama4": _cfg_llama4_text,
        "gpt_oss": _cfg_gpt_oss,
        "switch": _cfg_switch,
        "jamba": _cfg_jamba,
        "nemotron_h": _cfg_nemotron_h,
    }
    d = builders[family](H, F, E, K, n_layers)
    if family.startswith("deepseek") and layer_index < d["first_k_dense_replace"]:
        d["first_k_dense_replace"] = layer_index
    if family == "nemotron_h":
        d["hybrid_override_pattern"] = _nemotron_pattern(n_layers, layer_index)
        if knobs.get("latent") is not None:
            d["moe_latent_size"] = int(knobs["latent"])
    if family == "jamba" and layer_index % 2 == 0:
        d["expert_layer_offset"] = 0  # make the requested layer an MoE layer

    # ---- shared_intermediate knob
    if "shared_intermediate" in knobs:
        s = int(knobs["shared_intermediate"])
        if family == "qwen2_moe":
            d["shared_expert_intermediate_size"] = s
        elif family.startswith("deepseek"):
            if s % F:
                raise ValueError("deepseek shared width must be n_shared_experts * moe_intermediate_size")
            d["n_shared_experts"] = s // F
        elif family == "nemotron_h":
            d["moe_shared_expert_intermediate_size"] = s
        elif family == "llama4" and s == F:
            pass
        else:
            raise ValueError(f"{family}: shared expert width is not configurable (llama4 uses intermediate_size)")

    # ---- config-field overrides, routed into nested dicts where needed
    cls = _config_class(family)
    top_keys = _known_keys(cls)
    nested: dict[str, set] = {}
    if family == "dbrx":
        from transformers.models.dbrx import configuration_dbrx as cd

        nested = {"ffn_config": _known_keys(cd.DbrxFFNConfig), "attn_config": _known_keys(cd.DbrxAttentionConfig)}
    for k, v in overrides.items():
        v = _coerce(k, v)
        sub = next((n for n, keys in nested.items() if k in d[n] or (k in keys and k not in top_keys)), None)
        if sub is not None:
            d[sub][k] = v
        elif k in d or k in top_keys:
            d[k] = v
        else:
            raise ValueError(f"{family}: unknown override {k!r}")
    if family == "switch" and not any(k.startswith("num_sparse_") for k in overrides):
        # default: every other layer sparse (switch-base-8 style) if that makes layer_index sparse, else all
        probe = _build_config(cls, d)
        if not _is_moe_layer(family, d, probe, layer_index, switch_stack):
            d["num_sparse_encoder_layers"] = d["num_sparse_decoder_layers"] = n_layers
    if family == "gpt_oss":
        d["experts_per_token"] = d["num_experts_per_tok"]
        if len(d.get("layer_types") or []) != d["num_hidden_layers"]:
            d["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]

    impl = knobs.get("experts_implementation", "eager")
    if impl != "eager" and family not in _DISPATCHING:
        raise ValueError(f"{family}: experts are not dispatched on experts_implementation (eager only)")
    if impl not in ("eager", "grouped_mm", "batched_mm"):
        raise ValueError(f"unsupported experts_implementation {impl!r}")
    cfg = _build_config(cls, d, impl)
    if not _is_moe_layer(family, d, cfg, layer_index, switch_stack):
        raise ValueError(f"{family}: layer {layer_index} is not an MoE layer under this config")

    # ---- module + names
    import transformers.models as M

    if family == "mixtral":
        block = M.mixtral.modeling_mixtral.MixtralSparseMoeBlock(cfg)
        pf, pl = f"model.layers.{layer_index}.mlp.", f"model.layers.{layer_index}.block_sparse_moe."
        E_, K_ = cfg.num_local_experts, cfg.num_experts_per_tok
    elif family == "qwen2_moe":
        block = M.qwen2_moe.modeling_qwen2_moe.Qwen2MoeSparseMoeBlock(cfg)
        pf = pl = f"model.layers.{layer_index}.mlp."
        E_, K_ = cfg.num_experts, cfg.num_experts_per_tok
    elif family == "qwen3_moe":
        block = M.qwen3_moe.modeling_qwen3_moe.Qwen3MoeSparseMoeBlock(cfg)
        pf = pl = f"model.layers.{layer_index}.mlp."
        E_, K_ = cfg.num_experts, cfg.num_experts_per_tok
    elif family == "olmoe":
        block = M.olmoe.modeling_olmoe.OlmoeSparseMoeBlock(cfg)
        pf = pl = f"model.layers.{layer_index}.mlp."
        E_, K_ = cfg.num_experts, cfg.num_experts_per_tok
    elif family == "deepseek_v2":
        block = M.deepseek_v2.modeling_deepseek_v2.DeepseekV2Moe(cfg)
        pf = pl = f"model.layers.{layer_index}.mlp."
        E_, K_ = cfg.n_routed_experts, cfg.num_experts_per_tok
    elif family == "deepseek_v3":
        block = M.deepseek_v3.modeling_deepseek_v3.DeepseekV3MoE(cfg)
        pf = pl = f"model.layers.{layer_index}.mlp."
        E_, K_ = cfg.n_routed_experts, cfg.num_experts_per_tok
    elif family == "dbrx":
        block = M.dbrx.modeling_dbrx.DbrxFFN(cfg)
        pf = pl = f"transformer.blocks.{layer_index}.ffn."
        E_, K_ = cfg.ffn_config.moe_num_experts, cfg.ffn_config.moe_top_k
    elif family == "llama4":
        block = M.llama4.modeling_llama4.Llama4TextMoe(cfg)
        root = "" if knobs.get("llama4_text_only") else "language_model."
        pf = pl = f"{root}model.layers.{layer_index}.feed_forward."
        E_, K_ = cfg.num_local_experts, cfg.num_experts_per_tok
    elif family == "gpt_oss":
        block = M.gpt_oss.modeling_gpt_oss.GptOssMLP(cfg)
        pf = pl = f"model.layers.{layer_index}.mlp."
        E_, K_ = cfg.num_local_experts, cfg.num_experts_per_tok
    elif family == "jamba":
        block = M.jamba.modeling_jamba.JambaSparseMoeBlock(cfg)
        pf = pl = f"model.layers.{layer_index}.feed_forward."
        E_, K_ = cfg.num_experts, cfg.num_experts_per_tok
    elif family == "nemotron_h":
        block = M.nemotron_h.modeling_nemotron_h.NemotronHMoE(cfg, layer_idx=layer_index)
        pf, pl = f"model.layers.{layer_index}.mixer.", f"backbone.layers.{layer_index}.mixer."
        E_, K_ = cfg.n_routed_experts, cfg.num_experts_per_tok
    else:  # switch
        block = M.switch_transformers.modeling_switch_transformers.SwitchTransformersSparseMLP(cfg)
        ff = 2 if switch_stack == "decoder" else 1  # layer[0] self-attn, (layer[1] cross-attn), then FF
        pf = pl = f"{switch_stack}.block.{layer_index}.layer.{ff}.mlp."
        E_, K_ = cfg.num_experts, 1

    block = block.to(torch.float32).eval()
    _init_block(
        block,
        seed,
        float(knobs.get("router_std", 0.1)),
        float(knobs.get("expert_std", 0.15)),
        float(knobs.get("bias_std", 0.1)),
    )

    # ---- hf_config as in config.json
    hf_config = copy.deepcopy(d)
    if family == "llama4":
        if knobs.get("llama4_text_only"):
            hf_config["architectures"] = ["Llama4ForCausalLM"]
        else:
            text = {k: v for k, v in hf_config.items() if k != "torch_dtype"}
            hf_config = {
                "architectures": ["Llama4ForConditionalGeneration"],
                "model_type": "llama4",
                "text_config": text,
                "vision_config": copy.deepcopy(_LLAMA4_TINY_VISION),
                "boi_token_index": 60,
                "eoi_token_index": 61,
                "image_token_index": 62,
                "tie_word_embeddings": False,
                "torch_dtype": "float32",
            }

    fused = {pf + k: HFBlock._np(v) for k, v in block.state_dict().items()}
    legacy = _split_fused(family, fused, pf, pl)
    return HFBlock(
        family=family,
        hf_config=hf_config,
        layer_index=layer_index,
        tensors_legacy=legacy,
        tensors_fused=fused,
        num_experts=int(E_),
        top_k=int(K_),
        hidden=H,
        module=block,
        config=cfg,
        prefix_legacy=pl,
        prefix_fused=pf,
    )

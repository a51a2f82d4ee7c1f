"""Model presets: the published hyper-parameters of every system in MoE's history, as ModelConfigs.

Each preset function's docstring cites its source. ``_PRESETS`` (name -> function) and ``_ALIASES`` feed
``moepy.configs.names()`` / ``get()`` / ``table()``, the public way in.
"""
from __future__ import annotations

from typing import Callable, Dict

from .configs import ModelConfig
from .routing import RouterConfig


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

"""DeepSeek-V2 and V2-Lite (DeepSeek-AI, 2024): MLA attention, 160 (Lite: 64) routed experts + 2 shared,
softmax with group-limited greedy selection and a routed scaling factor.

config.json model_type `deepseek_v2`; checkpoint names `layers.{i}.mlp.` (gate, experts, shared_experts).
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..routing.config import RouterConfig
from ._checkpoint import first_of, deepseek_style_block
from ._config_json import Fields, read_deepseek_common, write_common, write_deepseek_common
from .registry import Family
from ._gguf import MLA_NAMES as _MLA, GGUFSpec, common_config, key, need


def router(num_experts: int = 160, top_k: int = 6, n_group: int = 8, topk_group: int = 3,
           routed_scaling_factor: float = 16.0, topk_method: str = "group_limited_greedy") -> RouterConfig:
    """DeepSeek-V2: softmax; greedy or group-limited greedy (group score = max, dropped groups' scores
    set to 0.0); no renormalisation (HF); weights times routed_scaling_factor. V2-Lite: greedy, scale 1."""
    if topk_method not in ("greedy", "group_limited_greedy"):
        raise ValueError(f"topk_method must be 'greedy' or 'group_limited_greedy', got {topk_method!r}")
    grouped = topk_method == "group_limited_greedy"
    return RouterConfig(top_k=top_k, scoring="softmax", scale=routed_scaling_factor,
                        n_group=n_group if grouped else 1, topk_group=topk_group if grouped else 1,
                        group_score="max", group_mask_value=0.0, num_experts=num_experts, family="deepseek_v2")


def default_router(num_experts: int, top_k: int) -> RouterConfig:
    return router(num_experts, top_k, routed_scaling_factor=1.0, topk_method="greedy")


def read_hf(d, mt):
    f = Fields(d, mt)
    kw = read_deepseek_common(f, mt, "deepseek_v2")
    method = f.opt("topk_method", "greedy")
    f.used.update({"norm_topk_prob", "scoring_func"})  # transformers' V2 applies neither (softmax, no renorm)
    kw["router"] = router(kw["num_experts"], kw["top_k"], n_group=f.opt_int("n_group", 1),
                                            topk_group=f.opt_int("topk_group", 1),
                                            routed_scaling_factor=f.opt_float("routed_scaling_factor", 1.0),
                                            topk_method=method)
    return kw, {"": f.extra()}


def write_hf(c: ModelConfig) -> dict:
    d = write_common(c, "deepseek_v2", "DeepseekV2ForCausalLM", head_dim=False)
    write_deepseek_common(c, d)
    r = c.router
    d.update(topk_method="group_limited_greedy" if r.n_group > 1 else "greedy", n_group=r.n_group,
             topk_group=r.topk_group, routed_scaling_factor=float(r.scale), norm_topk_prob=False, scoring_func="softmax")
    return d


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    method = first_of(c, "topk_method", default="greedy")
    if method not in ("greedy", "group_limited_greedy"):
        raise ValueError(f"deepseek_v2: topk_method {method!r} is not supported by the transformers "
                         f"DeepseekV2 block (greedy, group_limited_greedy)")
    r = router(int(first_of(c, "n_routed_experts", "num_experts", "num_local_experts")), int(first_of(c, "num_experts_per_tok")),
               int(first_of(c, "n_group", default=1)), int(first_of(c, "topk_group", default=1)),
               float(first_of(c, "routed_scaling_factor", default=1.0)), method)
    return deepseek_style_block(c, tensors, i, dtype, "deepseek_v2", r, selection_bias=False)


def deepseek_v2() -> ModelConfig:
    """DeepSeek-V2 (DeepSeek-AI 2024, arXiv:2405.04434): 236B total, 21B activated; MLA, 160 routed experts
    (top-6, group-limited 8 groups / 3 kept, scale 16) + 2 shared; deepseek-ai/DeepSeek-V2 config.json."""
    return ModelConfig(name="deepseek-v2", family="deepseek_v2", vocab_size=102400, hidden_size=5120, num_layers=60,
                       num_heads=128, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
                       v_head_dim=128, first_dense_layers=1, dense_intermediate_size=12288, num_experts=160, top_k=6,
                       expert_intermediate_size=1536, num_shared_experts=2, shared_intermediate_size=3072,
                       router=router(160, 6, n_group=8, topk_group=3, routed_scaling_factor=16.0,
                                                       topk_method="group_limited_greedy"),
                       max_context=163840)


def deepseek_v2_lite() -> ModelConfig:
    """DeepSeek-V2-Lite (deepseek-ai/DeepSeek-V2-Lite model card): 15.7B total, 2.4B activated; MLA without
    q compression, 64 routed experts (top-6, greedy, scale 1) + 2 shared, first layer dense; its config.json."""
    return ModelConfig(name="deepseek-v2-lite", family="deepseek_v2", vocab_size=102400, hidden_size=2048,
                       num_layers=27, num_heads=16, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
                       v_head_dim=128, first_dense_layers=1, dense_intermediate_size=10944, num_experts=64, top_k=6,
                       expert_intermediate_size=1408, num_shared_experts=2, shared_intermediate_size=2816,
                       router=router(64, 6, routed_scaling_factor=1.0, topk_method="greedy"),
                       max_context=163840)


def _deepseek_gguf(meta, arch, shapes, model_type, arch_class) -> dict:
    d = common_config(meta, arch, shapes, model_type, arch_class)
    rope = int(key(meta, arch, "rope.dimension_count", 64))
    k_len = int(key(meta, arch, "attention.key_length_mla", None) or need(meta, arch, "attention.key_length"))
    v_len = int(key(meta, arch, "attention.value_length_mla", None) or need(meta, arch, "attention.value_length"))
    d.pop("head_dim", None)
    d.update(n_routed_experts=int(need(meta, arch, "expert_count")),
             moe_intermediate_size=int(need(meta, arch, "expert_feed_forward_length")),
             intermediate_size=int(key(meta, arch, "feed_forward_length", 0) or 0) or None,
             n_shared_experts=int(key(meta, arch, "expert_shared_count", 0) or 0),
             first_k_dense_replace=int(key(meta, arch, "leading_dense_block_count", 0) or 0),
             routed_scaling_factor=float(key(meta, arch, "expert_weights_scale", 1.0)),
             norm_topk_prob=bool(key(meta, arch, "expert_weights_norm", False)),
             n_group=int(key(meta, arch, "expert_group_count", 1) or 1),
             topk_group=int(key(meta, arch, "expert_group_used_count", 1) or 1),
             q_lora_rank=int(key(meta, arch, "attention.q_lora_rank", 0) or 0) or None,
             kv_lora_rank=int(need(meta, arch, "attention.kv_lora_rank")),
             qk_rope_head_dim=rope, qk_nope_head_dim=k_len - rope, v_head_dim=v_len)
    return d


def _is_v2(meta, arch) -> bool:
    """deepseek2 files with softmax gating (expert_gating_func 1 or absent) and no selection bias."""
    return int(key(meta, arch, "expert_gating_func", 1) or 1) != 2


def gguf_config(meta, arch, shapes) -> dict:
    """config.json of a llama.cpp deepseek2 with softmax gating (DeepSeek-V2 / V2-Lite)."""
    d = _deepseek_gguf(meta, arch, shapes, "deepseek_v2", "DeepseekV2ForCausalLM")
    d["topk_method"] = "group_limited_greedy" if d["n_group"] > 1 else "greedy"
    return d


def decoder(d):
    """DeepSeek-V2's decoder: MLA (q_lora_rank 0 as in V2-Lite, or q_a / q_b), RoPE in the complex adjacent-pair
    layout, the first first_k_dense_replace layers dense (biases with mlp_bias)."""
    from ..nn import spec as S
    return S.decoder(d, "deepseek_v2", S.standard_layers(d, lambda i: S.mla(d, rope_layout="pairs"),
                                                         dense_bias=bool(d.get("mlp_bias", False))))


FAMILY = Family(
    name="deepseek_v2", order=30, router=router,
    default_router=default_router,
    model_types=('deepseek_v2',),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block, decoder=decoder,
    presets={"deepseek-v2": deepseek_v2, "deepseek-v2-lite": deepseek_v2_lite},
    description='DeepSeek-AI, 2024',
    gguf=GGUFSpec(archs=("deepseek2",), model_type="deepseek_v2", config=gguf_config, shared="shared_experts",
                  accepts=_is_v2, extra_names=_MLA),
)

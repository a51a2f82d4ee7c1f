"""DeepSeek-V3 / R1 (DeepSeek-AI, 2024) and Kimi K2 (Moonshot AI, 2025): MLA, 256 (K2: 384) routed experts + 1
shared, sigmoid scores with the auxiliary-loss-free selection bias (e_score_correction_bias), group-limited
selection by the sum of each group's top-2, renormalised weights times a routed scaling factor.

config.json model_type `deepseek_v3` or `kimi_k2` (any DeepseekV3ForCausalLM); checkpoint names `layers.{i}.mlp.`.
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..routing.config import RouterConfig
from ._checkpoint import first_of, deepseek_style_block
from ._config_json import Fields, read_deepseek_common, write_common, write_deepseek_common
from .registry import Family
from ._gguf import MLA_NAMES, GGUFSpec, key
from .deepseek_v2 import _deepseek_gguf


def router(num_experts: int = 256, top_k: int = 8, n_group: int = 8, topk_group: int = 4,
           routed_scaling_factor: float = 2.5, norm_topk_prob: bool = True) -> RouterConfig:
    """DeepSeek-V3/R1 (noaux_tc): sigmoid scores; selection on score + e_score_correction_bias (pass it
    as route(..., bias=)); groups scored by the sum of their top-2; dropped groups masked with -inf;
    weights are the unbiased scores, renormalised (+1e-20), times routed_scaling_factor."""
    return RouterConfig(top_k=top_k, scoring="sigmoid", normalize=norm_topk_prob, norm_eps=1e-20,
                        scale=routed_scaling_factor, n_group=n_group, topk_group=topk_group, group_score="top2_sum",
                        num_experts=num_experts, family="deepseek_v3")


def kimi_k2_router(num_experts: int = 384, top_k: int = 8, routed_scaling_factor: float = 2.827) -> RouterConfig:
    """Kimi K2: the DeepSeek-V3 router with 384 experts, one group (n_group=topk_group=1)."""
    return router(num_experts=num_experts, top_k=top_k, n_group=1, topk_group=1,
                  routed_scaling_factor=routed_scaling_factor)


def default_router(num_experts: int, top_k: int) -> RouterConfig:
    return router(num_experts, top_k, n_group=1, topk_group=1)


def read_hf(d, mt):
    f = Fields(d, mt)
    kw = read_deepseek_common(f, mt, "deepseek_v3")
    f.used.update({"scoring_func", "topk_method"})
    mtp = d.get("num_nextn_predict_layers", d.get("num_mtp_layers"))
    kw.update(selection_bias=True, mtp_layers=int(mtp or 0),
              router=router(kw["num_experts"], kw["top_k"], n_group=f.opt_int("n_group", 8),
                                              topk_group=f.opt_int("topk_group", 4),
                                              routed_scaling_factor=f.opt_float("routed_scaling_factor", 2.5),
                                              norm_topk_prob=f.opt_bool("norm_topk_prob", True)))
    return kw, {"": f.extra()}


def write_hf(c: ModelConfig) -> dict:
    d = write_common(c, "deepseek_v3", "DeepseekV3ForCausalLM", head_dim=False)
    write_deepseek_common(c, d)
    r = c.router
    d.update(n_group=r.n_group, topk_group=r.topk_group, routed_scaling_factor=float(r.scale),
             norm_topk_prob=r.normalize, scoring_func="sigmoid", topk_method="noaux_tc",
             num_nextn_predict_layers=c.mtp_layers)
    return d


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    r = router(int(first_of(c, "n_routed_experts", "num_experts", "num_local_experts")), int(first_of(c, "num_experts_per_tok")),
               int(first_of(c, "n_group", default=1)), int(first_of(c, "topk_group", default=1)),
               float(first_of(c, "routed_scaling_factor", default=2.5)), bool(first_of(c, "norm_topk_prob", default=True)))
    return deepseek_style_block(c, tensors, i, dtype, c.get("model_type") or "deepseek_v3", r, selection_bias=True)


def deepseek_v3() -> ModelConfig:
    """DeepSeek-V3 / R1 (DeepSeek-AI 2024, arXiv:2412.19437): 671B total, 37B activated; README_WEIGHTS.md:
    main model 671B, 36.6B activated including the 0.9B output head (i.e. without the input embedding); the
    Hub's 685B adds the 14B MTP module (11.5B unique). 256 routed experts (top-8 of 8 groups / 4 kept, sigmoid,
    bias-corrected selection, scale 2.5) + 1 shared, 3 dense layers; deepseek-ai/DeepSeek-V3 config.json."""
    return ModelConfig(name="deepseek-v3", family="deepseek_v3", vocab_size=129280, hidden_size=7168, num_layers=61,
                       num_heads=128, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
                       v_head_dim=128, first_dense_layers=3, dense_intermediate_size=18432, num_experts=256, top_k=8,
                       expert_intermediate_size=2048, num_shared_experts=1, shared_intermediate_size=2048,
                       router=router(256, 8, n_group=8, topk_group=4, routed_scaling_factor=2.5),
                       selection_bias=True, mtp_layers=1, max_context=163840)


def kimi_k2() -> ModelConfig:
    """Kimi K2 (Moonshot AI 2025, arXiv:2507.20534 and moonshotai/Kimi-K2-Instruct model card): "1T total,
    32B activated" (the report's text: 1.04T); the DeepSeek-V3 architecture with 384 experts (top-8, one group,
    scale 2.827), 64 heads, 1 dense layer, 160K vocabulary; its config.json (model_type kimi_k2)."""
    return ModelConfig(name="kimi-k2", family="deepseek_v3", vocab_size=163840, hidden_size=7168, num_layers=61,
                       num_heads=64, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
                       v_head_dim=128, first_dense_layers=1, dense_intermediate_size=18432, num_experts=384, top_k=8,
                       expert_intermediate_size=2048, num_shared_experts=1, shared_intermediate_size=2048,
                       router=kimi_k2_router(384, 8, routed_scaling_factor=2.827), selection_bias=True,
                       max_context=131072)


def gguf_config(meta, arch, shapes) -> dict:
    """config.json of a llama.cpp deepseek2 with sigmoid gating (expert_gating_func 2: DeepSeek-V3 / R1, Kimi K2)."""
    d = _deepseek_gguf(meta, arch, shapes, "deepseek_v3", "DeepseekV3ForCausalLM")
    d.update(scoring_func="sigmoid", topk_method="noaux_tc")
    return d


def decoder(d):
    """DeepSeek-V3's (and Kimi K2's) decoder: MLA with q_a / q_b, RoPE on adjacent pairs de-interleaved into
    halves (rope_interleave, default True) or rotate-half, YaRN with the mscale correction of the softmax scale,
    the first first_k_dense_replace layers dense."""
    from ..nn import spec as S
    layout = "pairs_to_half" if d.get("rope_interleave", True) else "half"
    return S.decoder(d, "deepseek_v3", S.standard_layers(d, lambda i: S.mla(d, rope_layout=layout)),
                     max_pos_default=4096)


FAMILY = Family(
    name="deepseek_v3", order=40, router=router, routers={"kimi_k2": kimi_k2_router},
    default_router=default_router,
    model_types=('deepseek_v3', 'kimi_k2'),
    architectures=('DeepseekV3ForCausalLM',),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block, decoder=decoder,
    presets={"deepseek-v3": deepseek_v3, "kimi-k2": kimi_k2},
    aliases={'deepseek-r1': 'deepseek-v3', 'kimi-k2-instruct': 'kimi-k2'},
    description='DeepSeek-AI, 2024; Moonshot AI, 2025',
    gguf=GGUFSpec(archs=("deepseek2",), model_type="deepseek_v3", config=gguf_config, shared="shared_experts",
                  accepts=lambda meta, arch: int(key(meta, arch, "expert_gating_func", 1) or 1) == 2,
                  extra_names=MLA_NAMES),
)

"""Qwen1.5-MoE and Qwen2-MoE (Alibaba, 2024): softmax top-k (not renormalised in the releases) plus one shared
expert behind a sigmoid gate.

config.json model_type `qwen2_moe`; checkpoint names `layers.{i}.mlp.` (gate, experts, shared_expert,
shared_expert_gate).
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..routing.config import RouterConfig
from ._checkpoint import first_of, qwen_style_block
from ._config_json import Fields, read_common, dense_width, qwen_layers, write_common, write_qwen_layers
from .registry import Family
from ._gguf import GGUFSpec, common_config, key, need


def router(num_experts: int = 60, top_k: int = 4, norm_topk_prob: bool = False) -> RouterConfig:
    """Qwen1.5/Qwen2-MoE: softmax, top-k, renormalised only if norm_topk_prob (released: False)."""
    return RouterConfig(top_k=top_k, scoring="softmax", normalize=norm_topk_prob, num_experts=num_experts,
                        family="qwen2_moe")


def read_hf(d, mt):
    f = Fields(d, mt)
    kw = read_common(f)
    L = kw["num_layers"]
    step, mlo, has_dense = qwen_layers(f, L)
    E, k, I = f.req_int("num_experts"), f.req_int("num_experts_per_tok"), f.req_int("moe_intermediate_size")
    S = f.req_int("shared_expert_intermediate_size")
    if S < 0:
        raise ValueError(f"{mt} config.json: shared_expert_intermediate_size must be >= 0, got {S}")
    # S == 0: transformers still allocates the (1, H) shared_expert_gate of a zero-width expert, which adds
    # nothing to the output; moepy models it as no shared expert (and does not count those H weights)
    local, window = 0, 0
    if f.opt_bool("use_sliding_window", False):
        mw = f.opt_int("max_window_layers", 28)
        window = f.opt_int("sliding_window", 4096)
        local = sum(1 for i in range(L) if (i + 1) % 2 and i < mw) if window else 0
        window = window if local else 0
    kw.update(family="qwen2_moe", moe_every=step, mlp_only_layers=mlo,
              dense_intermediate_size=dense_width(f, "intermediate_size", 5632, has_dense), num_experts=E, top_k=k,
              expert_intermediate_size=I, num_shared_experts=(S // I if S % I == 0 else 1) if S else 0, shared_intermediate_size=S,
              shared_expert_gate=S > 0, attention_bias="qkv" if f.opt_bool("qkv_bias", True) else "none",
              local_attention_layers=local, local_attention_window=window,
              router=router(E, k, norm_topk_prob=f.opt_bool("norm_topk_prob", False)))
    return kw, {"": f.extra()}


def write_hf(c: ModelConfig) -> dict:
    d = write_common(c, "qwen2_moe", "Qwen2MoeForCausalLM")
    write_qwen_layers(c, d)
    d.update(moe_intermediate_size=c.expert_intermediate_size, shared_expert_intermediate_size=c.shared_intermediate_size,
             qkv_bias=c.attention_bias == "qkv", use_sliding_window=c.local_attention_layers > 0)
    if c.local_attention_layers:
        d.update(sliding_window=c.local_attention_window, max_window_layers=2 * c.local_attention_layers)
    return d


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    r = router(int(first_of(c, "num_experts", "num_local_experts")), int(first_of(c, "num_experts_per_tok")),
               bool(first_of(c, "norm_topk_prob", default=False)))
    shared = int(first_of(c, "shared_expert_intermediate_size", default=0)) > 0
    return qwen_style_block(c, tensors, i, dtype, "qwen2_moe", r, shared=shared)


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


def gguf_config(meta, arch, shapes) -> dict:
    """config.json of a llama.cpp qwen2moe."""
    d = common_config(meta, arch, shapes, "qwen2_moe", "Qwen2MoeForCausalLM")
    d.update(num_experts=int(need(meta, arch, "expert_count")),
             moe_intermediate_size=int(need(meta, arch, "expert_feed_forward_length")),
             shared_expert_intermediate_size=int(key(meta, arch, "expert_shared_feed_forward_length", 0) or 0),
             intermediate_size=int(key(meta, arch, "feed_forward_length", 0) or 0) or None,
             norm_topk_prob=bool(key(meta, arch, "expert_weights_norm", False)),
             qkv_bias="blk.0.attn_q.bias" in shapes)
    return d


def decoder(d):
    """Qwen1.5/2-MoE's decoder: q/k/v biases (qkv_bias), dense layers by decoder_sparse_step / mlp_only_layers,
    sliding layers (layer_types) only with use_sliding_window."""
    from ..nn import spec as S
    L = S.cfg_int(d, "num_hidden_layers", lo=1)
    win = (0,) * L
    if d.get("use_sliding_window"):
        if d.get("layer_types") is None:
            w = S.cfg_int(d, "sliding_window", 4096, lo=1)
            mwl = S.cfg_int(d, "max_window_layers", 28)
            win = tuple(w if i % 2 == 0 and i < mwl else 0 for i in range(L))
        else:
            win = S.sliding_windows(d, L)
    bias = bool(d.get("qkv_bias", True))
    return S.decoder(d, "qwen2_moe", S.standard_layers(d, lambda i: S.gqa(d, qkv_bias=bias, window=win[i])))


FAMILY = Family(
    name="qwen2_moe", order=50, router=router,
    model_types=('qwen2_moe',),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block, decoder=decoder,
    presets={"qwen1.5-moe-a2.7b": qwen15_moe_a27b, "qwen2-57b-a14b": qwen2_57b_a14b},
    aliases={'qwen1.5-moe': 'qwen1.5-moe-a2.7b', 'qwen2-moe': 'qwen2-57b-a14b'},
    description='Alibaba Qwen, 2024',
    gguf=GGUFSpec(archs=("qwen2moe",), model_type="qwen2_moe", config=gguf_config, shared="shared_expert"),
)

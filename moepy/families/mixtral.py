"""Mixtral (Mistral AI): 8 SwiGLU experts, softmax over all experts, top-2, renormalised.

config.json model_type `mixtral`; checkpoint names `layers.{i}.block_sparse_moe.` (Hub: gate, experts.{e}.w1/w3/w2)
or `layers.{i}.mlp.` (transformers v5 fused experts.gate_up_proj / down_proj).
"""
from __future__ import annotations

from ..configs.model import ModelConfig
from ..moe.layer import MoELayer
from ..routing.config import RouterConfig
from ._checkpoint import first_of, as_f32, Tensors, find_prefix, glu_experts, activation_name
from ._config_json import Fields, read_common, write_common
from .registry import Family
from ._gguf import GGUFSpec, common_config, has_experts, need


def router(num_experts: int = 8, top_k: int = 2) -> RouterConfig:
    """Mixtral: softmax over all E in fp32, top-k, always renormalised."""
    return RouterConfig(top_k=top_k, scoring="softmax", normalize=True, num_experts=num_experts, family="mixtral")


def read_hf(d, mt):
    f = Fields(d, mt)
    kw = read_common(f)
    E = f.req_int("num_local_experts", "num_experts")
    k = f.req_int("num_experts_per_tok")
    sw = f.opt("sliding_window", None)
    kw.update(family="mixtral", num_experts=E, top_k=k, expert_intermediate_size=f.req_int("intermediate_size"),
              local_attention_layers=kw["num_layers"] if sw else 0, local_attention_window=int(sw or 0),
              router=router(E, k))
    return kw, {"": f.extra()}


def write_hf(c: ModelConfig) -> dict:
    d = write_common(c, "mixtral", "MixtralForCausalLM")
    d.update(intermediate_size=c.expert_intermediate_size, num_local_experts=c.num_experts,
             num_experts_per_tok=c.top_k,
             sliding_window=c.local_attention_window if c.local_attention_layers == c.num_layers else None)
    return d


def moe_block(c: dict, tensors, i: int, dtype: str, stack: str = "") -> MoELayer:
    E = int(first_of(c, "num_local_experts", "num_experts"))
    K = int(first_of(c, "num_experts_per_tok", default=2))
    T = Tensors(tensors, find_prefix(tensors, [f"layers.{i}.block_sparse_moe.", f"layers.{i}.mlp."], "gate.weight"))
    experts = glu_experts(T, E, dtype, ("w1", "w3", "w2"), activation_name(c.get("hidden_act")))
    return MoELayer(router(E, K), as_f32(T.get("gate.weight")), experts, dtype=dtype, family="mixtral")


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


def gguf_config(meta, arch, shapes) -> dict:
    """config.json of a llama.cpp Mixtral (architecture llama with experts)."""
    d = common_config(meta, arch, shapes, "mixtral", "MixtralForCausalLM")
    d.update(num_local_experts=int(need(meta, arch, "expert_count")),
             intermediate_size=int(need(meta, arch, "feed_forward_length")), rope_theta=d["rope_theta"])
    return d


def decoder(d):
    """Mixtral's decoder: Llama attention (GQA, RoPE theta 1e6), a sliding window on every layer when set."""
    from ..nn import spec as S
    L = S.cfg_int(d, "num_hidden_layers", lo=1)
    win = S.sliding_windows(d, L, every_layer=True)
    return S.decoder(d, "mixtral", S.standard_layers(d, lambda i: S.gqa(d, default_theta=1e6, window=win[i])),
                     norm_eps_default=1e-5)


FAMILY = Family(
    name="mixtral", order=10, router=router,
    model_types=('mixtral',),
    read_hf=read_hf, write_hf=write_hf,
    moe_block=moe_block, decoder=decoder,
    presets={"mixtral-8x7b": mixtral_8x7b, "mixtral-8x22b": mixtral_8x22b},
    aliases={'mixtral': 'mixtral-8x7b'},
    description='Mistral AI, 2023',
    gguf=GGUFSpec(archs=("llama",), model_type="mixtral", config=gguf_config, moe="block_sparse_moe",
                  experts=("w1", "w3", "w2"), permute_qk=True, accepts=has_experts),
)

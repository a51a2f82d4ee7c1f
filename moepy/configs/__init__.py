"""Model configurations: presets for every system in MoE's history, the HF config.json mapping, accounting.

`ModelConfig` (model.py) describes a decoder MoE model in one flat, frozen, validated dataclass: vocabulary,
width, layers, attention (GQA or DeepSeek's MLA), which layers are MoE, the experts (routed, shared, gated,
Arctic's residual dense MLP) and the `RouterConfig` that picks them. From it:

* ``cfg.count_params()``      total / active parameters, with and without embeddings and head
* ``cfg.memory_bytes(dtype)`` weight memory for fp32, bf16, fp16, fp8, int8, int4, mxfp4 (scales included)
* ``cfg.flops_per_token(n)``  forward FLOPs of one token that attends to n tokens, split by component
* ``cfg.kv_cache_bytes(n)``   KV-cache bytes for n tokens
* ``cfg.expert_combinations`` C(E, k): the distinct expert sets a token can take in one MoE layer
* ``cfg.scaled()``            a tiny instance of the same design, for random-weight experiments and tests
* ``ModelConfig.from_hf(path_or_dict)`` / ``cfg.to_hf()``  the Hugging Face config.json, both ways

Presets (``names()``, ``get(name)``, ``table()``) carry the published hyper-parameters of every family; each
lives in its family's module of moepy/families with a docstring citing its source.

Counting conventions (what vendors mean by "active" differs; see the README): ``ParamCount.total`` /
``.active`` count the input embedding and the output head (once if tied); ``.total_non_embedding`` /
``.active_non_embedding`` count neither; ``.active_without_input_embedding`` counts the head but not the
embedding table (DeepSeek-V2/V3's and gpt-oss's convention). ``total`` includes a vision tower if the model has
one (Llama 4) and never includes multi-token-prediction modules (reported apart as ``mtp``).
"""
from ..families import registry as _registry
from ..families._config_json import load_hf_config
from .accounting import WEIGHT_FORMATS, FlopCount, ParamCount, Tensor, WeightFormat, expert_combinations
from .model import ModelConfig
from .presets import get, names, table

__all__ = ["FAMILIES", "HF_FAMILIES", "WEIGHT_FORMATS", "FlopCount", "ModelConfig", "ParamCount", "Tensor",
           "WeightFormat", "expert_combinations", "get", "load_hf_config", "names", "table"]


def __getattr__(name):
    # the family lists come from the registry (moepy/families), computed on first use
    if name == "FAMILIES":
        return _registry.names() + ("custom",)
    if name == "HF_FAMILIES":
        return tuple(f.name for f in _registry.all_families() if f.read_hf is not None)
    raise AttributeError(f"module 'moepy.configs' has no attribute {name!r}")

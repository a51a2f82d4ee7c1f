"""One MoE block of a Hugging Face checkpoint -> MoELayer, for every family that has a checkpoint reader.

`moe_layer_from_hf(hf_config, tensors, layer_index, dtype)` (what `MoELayer.from_hf` calls) finds the family from
the config.json, checks that the layer holds an MoE block, and calls the family's `moe_block`, which maps that
block's tensors to a MoELayer computing what transformers 5.23 computes (tests/families/HF_NOTES.md).

hf_config: the config.json dict, a path to it (or to its directory), or a transformers config.
tensors: a mapping full checkpoint name -> array; both the per-expert Hub names (`experts.{e}.w1.weight`,
`experts.{e}.gate_proj.weight`, ...) and the fused names of transformers v5 (`experts.gate_up_proj`,
`experts.down_proj`) are accepted, under any prefix ("model.", "language_model.model.", ...): the prefix is found
from the router tensor, whose name ends in e.g. `layers.{i}.mlp.gate.weight`.
For switch_transformers, layer_index is an encoder block index, or a string "encoder.3" / "decoder.3".
"""
from __future__ import annotations

from collections.abc import Mapping

from . import registry
from ._config_json import load_hf_config, text_config

DTYPES = ("float32", "bfloat16")


def moe_layer_indices(hf_config, stack: str = "encoder") -> list:
    """Indices of the decoder layers that hold an MoE block (switch_transformers: of `stack`, "encoder" or
    "decoder"). The rule is the ModelConfig's (ModelConfig.from_hf(d).moe_layers) unless the family defines its
    own (encoder-decoders)."""
    d = load_hf_config(hf_config)
    fam, _ = registry.for_hf_config(d)
    if fam.moe_layer_indices is not None:
        return list(fam.moe_layer_indices(d, stack))
    from ..configs.model import ModelConfig
    return list(ModelConfig.from_hf(d).moe_layers)


def _layer_and_stack(fam, layer_index):
    stack = "encoder"
    if fam.moe_layer_indices is not None and isinstance(layer_index, str):
        stack, _, idx = layer_index.rpartition(".")
        stack = stack or "encoder"
        if stack not in ("encoder", "decoder"):
            raise ValueError(f"layer_index must be 'encoder.N' or 'decoder.N', got {layer_index!r}")
        layer_index = idx
        try:
            layer_index = int(layer_index)
        except ValueError:
            raise ValueError(f"layer_index must be an int or 'encoder.N' / 'decoder.N', got {layer_index!r}") from None
    if isinstance(layer_index, bool) or not isinstance(layer_index, int):
        try:
            import numpy as np
            if isinstance(layer_index, np.integer):
                return int(layer_index), stack
        except ImportError:  # pragma: no cover
            pass
        raise TypeError(f"layer_index must be an int, got {type(layer_index).__name__} {layer_index!r}")
    return layer_index, stack


def moe_layer_from_hf(hf_config, tensors, layer_index, dtype: str = "float32"):
    """The MoELayer of layer `layer_index` of a Hugging Face checkpoint (see the module docstring)."""
    d = load_hf_config(hf_config)
    fam, mt = registry.for_hf_config(d)
    if fam.moe_block is None:
        readers = [t for f in registry.all_families() if f.moe_block is not None for t in f.model_types]
        raise ValueError(f"model_type {mt!r}: moepy has no checkpoint reader for this family; "
                         f"supported: {', '.join(readers)}")
    if dtype is None:
        dtype = "float32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES} (quantize with quantize=), got {dtype!r}")
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping of checkpoint names to arrays (e.g. a dict, or "
                        f"moepy.io.open_checkpoint(path)), got {type(tensors).__name__}")
    i, stack = _layer_and_stack(fam, layer_index)
    moe = moe_layer_indices(d, stack)
    if i not in moe:
        where = f" {stack}" if fam.moe_layer_indices is not None else ""
        raise ValueError(f"{mt}:{where} layer {i} is not an MoE layer (dense or out of range); "
                         f"the MoE layers are {moe}")
    return fam.moe_block(text_config(d), tensors, i, dtype, stack)

"""Model families: one module per family, each holding everything moepy knows about it (router, config.json
both ways, which layers are MoE, checkpoint tensor names, presets), behind one registry (registry.py).

Adding a family is adding one module here that defines `FAMILY = Family(...)`.
"""
from .registry import Family, all_families, for_hf_config, get, model_types, names

__all__ = ["Family", "all_families", "for_hf_config", "get", "model_types", "names", "moe_layer_indices",
           "moe_layer_from_hf"]


def moe_layer_indices(hf_config, stack: str = "encoder") -> list:
    """Indices of the layers of a checkpoint's config.json that hold an MoE block (see moepy/families/_layers.py)."""
    from ._layers import moe_layer_indices as indices
    return indices(hf_config, stack)


def moe_layer_from_hf(hf_config, tensors, layer_index, dtype: str = "float32"):
    """The MoELayer of layer `layer_index` of a checkpoint (see moepy/families/_layers.py)."""
    from ._layers import moe_layer_from_hf as build
    return build(hf_config, tensors, layer_index, dtype)

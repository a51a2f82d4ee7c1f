"""MoE layers: expert weights and their packing, the MoELayer, quantized experts."""
from . import quant
from .layer import MoELayer
from .weights import ExpertSource, ExpertWeights, from_bf16_bits, pack_linear, to_bf16_bits

__all__ = ["ExpertSource", "ExpertWeights", "MoELayer", "from_bf16_bits", "pack_linear", "quant", "to_bf16_bits"]

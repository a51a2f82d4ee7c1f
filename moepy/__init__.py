"""moepy: a CPU-native Mixture-of-Experts toolkit.

C kernels (routing, top-k, dispatch, grouped expert FFNs, INT8/INT4 matmul) under a NumPy API; see README.md.
Subpackages: routing (RouterConfig, route, metrics), moe (MoELayer, experts, quant), families (one module per
model family, behind a registry), configs (ModelConfig, presets, accounting), io (safetensors, checkpoints, GGUF),
reference (the NumPy twins of the kernels), nn (MoEModel: whole decoders, KV cache, generation), eval
(perplexity, KLD, the built-in checkpoints), analysis (router traces and their measures and plots), experiments
(routing schemes swapped into a model, compared), sim (expert-placement simulation), parallel (expert parallelism
on MPI).
"""
from ._ops import build_info as _build_info, get_num_threads, set_isa, set_num_threads
from .routing import BalanceStats, BiasBalancer, ExpertChoice, RouterConfig, Routing, apply_capacity, balance_stats, \
    expert_choice, load_balancing_loss, route, router_z_loss, sequence_aux_loss, tokens_per_expert, topk, update_bias
from .moe import ExpertWeights, MoELayer, quant
from . import configs, families
from .configs import ModelConfig

__version__ = "0.1.0"


def build_info() -> dict:
    """How this build of moepy runs: OpenMP on or off, threads, the ISA the kernels use
    ("scalar" / "avx2" / "avx512"), the best ISA the CPU allows, CPU features, compiler."""
    info = _build_info()
    info["version"] = __version__
    return info


def __getattr__(name):
    if name in ("io", "nn", "eval", "analysis", "experiments", "sim", "parallel"):  # imported on first use
        import importlib
        return importlib.import_module("." + name, __name__)
    if name in ("MoEModel", "KVCache"):
        from . import nn
        return getattr(nn, name)
    raise AttributeError(f"module 'moepy' has no attribute {name!r}")


__all__ = [
    "BalanceStats", "BiasBalancer", "ExpertWeights", "KVCache", "MoELayer", "MoEModel", "ModelConfig", "configs", "families", "quant", "ExpertChoice", "RouterConfig", "Routing", "apply_capacity", "balance_stats",
    "build_info", "expert_choice", "get_num_threads", "load_balancing_loss", "route", "router_z_loss",
    "sequence_aux_loss", "set_isa", "set_num_threads", "tokens_per_expert", "topk", "update_bias",
]

"""moepy: a CPU-native Mixture-of-Experts toolkit.

C kernels (routing, top-k, dispatch, grouped expert FFNs, INT8/INT4 matmul) under a NumPy API; see README.md.
Subpackages: routing (RouterConfig, route, metrics), moe (MoELayer, experts, quant), families (one module per
model family, behind a registry), configs (ModelConfig, presets, accounting), io (safetensors, checkpoints, GGUF),
reference (the NumPy twins of the kernels), nn (MoEModel: whole decoders, KV cache, generation), eval
(perplexity, KLD, the built-in checkpoints), analysis (router traces and their measures and plots), experiments
(routing schemes swapped into a model, compared), sim (expert-placement simulation), parallel (expert parallelism
on MPI).
"""
import contextlib as _contextlib

from ._ops import build_info as _build_info, get_activation_precision, get_num_threads, set_isa, set_num_threads
from ._ops import _set_activation_precision
from .routing import BalanceStats, BiasBalancer, ExpertChoice, RouterConfig, Routing, apply_capacity, balance_stats, \
    expert_choice, load_balancing_loss, route, router_z_loss, sequence_aux_loss, tokens_per_expert, topk, update_bias
from .moe import ExpertWeights, MoELayer, quant
from . import configs, families
from .configs import ModelConfig

__version__ = "0.1.0"


def build_info() -> dict:
    """How this build of moepy runs: OpenMP on or off, threads, the ISA the kernels use
    ("scalar" / "avx2" / "avx512" / "avx512bf16" / "amx"), the best ISA the CPU allows, CPU features, compiler, and the
    activation precision for bf16 weights (set_activation_precision)."""
    info = _build_info()
    info["version"] = __version__
    return info


def set_activation_precision(mode: str, min_rows: int = 16) -> None:
    """The precision of the activations that meet bf16 weights (routed and shared experts, bf16 linears).

    "fp32" (the default): activations stay float32, each bf16 weight is widened exactly; the result is the same
        for every batch, thread count and ISA.
    "bf16": activations are rounded to bf16 once (per token on the way in, per expert row before the down
        projection) and multiplied in pairs with AVX512-BF16 dot products (vdpbf16ps, as llama.cpp and PyTorch do
        on bf16); about 2x the prefill arithmetic rate. Still bitwise the same for every batch, thread count and ISA
        (the other ISAs emulate the instruction exactly); the error against "fp32" is the bf16 rounding of the
        activations (README: Activation precision).
    "auto": "bf16" where a weight matrix meets at least `min_rows` rows on average in the call (a linear or shared
        expert: the tokens; routed experts: tokens x top-k / experts), "fp32" below (decode, small batches): fast and
        exact where each matters, but a token's output then depends on the size of the call it came in. Below about
        16 rows per matrix the bf16 path's pairing of the weights costs more than its faster arithmetic gains.
    Process-wide, like set_num_threads; float32 and INT8/INT4 weights are not affected."""
    _set_activation_precision(mode, min_rows)


@_contextlib.contextmanager
def activation_precision(mode: str, min_rows: int = 16):
    """`with moepy.activation_precision("bf16"):` set_activation_precision for a block, restored after it."""
    old = get_activation_precision()
    set_activation_precision(mode, min_rows)
    try:
        yield
    finally:
        _set_activation_precision(*old)


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
    "activation_precision", "build_info", "expert_choice", "get_activation_precision", "get_num_threads", "load_balancing_loss", "route", "router_z_loss",
    "sequence_aux_loss", "set_activation_precision", "set_isa", "set_num_threads", "tokens_per_expert", "topk", "update_bias",
]

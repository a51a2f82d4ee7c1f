"""Pure-NumPy twins of the C kernels in moepy._ops: the oracle the tests hold the kernels to.

Written for clarity, not speed; never imports moepy._C. Same conventions as the kernels: float32
arithmetic, top-k descending with ties to the lower index, NaN rows raise ValueError. One module per area,
each twin named as the _ops function it mirrors (moe_forward, quantize_rows: aliases of the longer names):
routing.py, dispatch.py, ffn.py (float experts and layer), quant.py (INT formats, bit-exact), attention.py,
norm_rope.py (the decoder's RMSNorm and rotary embedding, bit-exact).
"""
from .routing import SCORINGS, GROUP_SCORES, topk, softmax, sigmoid, route, apply_capacity, expert_choice, expert_load  # noqa: F401
from .dispatch import dispatch_plan, gather, combine  # noqa: F401
from .ffn import expert_ffn, grouped_ffn, moe_layer_forward  # noqa: F401
from .quant import Q_ZERO, F32, quantize_weights, dequantize_weights, pack_blocks, quantize_activations, qmatmul, expf_poly, erf_approx, activate_exact, moe_layer_forward_quant  # noqa: F401
from .attention import attention  # noqa: F401
from .norm_rope import rms_norm, rope  # noqa: F401

moe_forward = moe_layer_forward        # _ops.moe_forward
quantize_rows = quantize_activations  # _ops.quantize_rows

"""MoELayer: router + routed experts + optional shared expert, one call through the C engine.

Weights are held in a canonical form (gate/up (E, I, H), down (E, H, I), nn.Linear orientation)
and packed once, at construction, into the panel layout the kernels read (csrc/pack.c).
`MoELayer.from_hf` maps Hugging Face checkpoint tensors of each family to that form
(moepy/families); `MoELayer.random` builds seeded random layers for experiments.
"""
from __future__ import annotations

import contextvars
import threading
from typing import Callable, Optional

import numpy as np

from .. import _ops
from .._inputs import as_float32, as_index
from ..routing import BalanceStats, RouterConfig, Routing, balance_stats, route
from . import quant
from .weights import DTYPES, ExpertSource, ExpertWeights, from_bf16_bits, pack_linear, to_bf16_bits

# set by from_hf(quantize=...) while the family builds its layer: routed experts read from the checkpoint
# (ExpertSource) are not packed as floats, since they are quantized from their sources right after
_DEFER_ROUTED = contextvars.ContextVar("moepy_defer_routed_pack", default=False)

class MoELayer:
    """One MoE block: y = sum_k w_k f_{e_k}(x) [+ g(x) shared(x)], as the family's HF block computes it.

    router: the RouterConfig; router_weight (E, H) [+ router_bias (E,), GPT-OSS];
    selection_bias (E,): DeepSeek-V3's e_score_correction_bias (selection only);
    experts: ExpertWeights of the E routed experts (or an ExpertSource: read one expert at a time from a
        checkpoint's tensors and packed straight into the one buffer); shared: ExpertWeights with E = 1 or None;
    shared_gate_weight (1, H): Qwen2-MoE's sigmoid gate on the shared expert;
    scale_input: Llama 4 (the routing weight scales the expert input, not its output);
    dtype: "float32" or "bfloat16" expert weights (bf16 read directly, accumulated in fp32), or
        "int8" / "int4" / "int4_asym" / "int4_nl" (moepy.moe.quant; `group_size` 32, 64 or 128) for the routed
        experts; the router stays float32; the shared expert takes `shared_dtype` (default: dtype for
        float32 / bfloat16, float32 when the routed experts are INT).
    The layer holds one copy of its expert weights, the packed one: `experts` / `shared` are
    moepy.moe.packed.PackedFloatExperts (float32 / bf16 panels) or PackedOnlyExperts (INT blocks), whose
    gate / up / down are unpacked or dequantized on access. save(path) / load(path): moepy.io.layer_io.
    """

    def __init__(self, router: RouterConfig, router_weight: np.ndarray, experts: ExpertWeights, *,
                 shared: Optional[ExpertWeights] = None, shared_gate_weight: Optional[np.ndarray] = None,
                 router_bias: Optional[np.ndarray] = None, selection_bias: Optional[np.ndarray] = None,
                 scale_input: bool = False, dtype: str = "float32", family: str = "custom",
                 group_size: int = 32, shared_dtype: Optional[str] = None):
        if shared_dtype is None:  # the shared expert follows float32 / bf16, and stays float32 under INT
            shared_dtype = "float32" if dtype in quant.FORMATS else dtype
        for name, d in (("dtype", dtype), ("shared_dtype", shared_dtype)):
            if d not in DTYPES:
                raise ValueError(f"{name} must be one of {DTYPES}, got {d!r}")
        if dtype in quant.FORMATS or shared_dtype in quant.FORMATS:
            quant.check_format(dtype if dtype in quant.FORMATS else shared_dtype, group_size)
        E, H, I = experts.shape
        self.router = router
        self.router_weight = _as_f32(router_weight, "router_weight", (E, H))
        self.router_bias = None if router_bias is None else _as_f32(router_bias, "router_bias", (E,))
        self.selection_bias = None if selection_bias is None else _as_f32(selection_bias, "selection_bias", (E,))
        if router.num_experts is not None and router.num_experts != E:
            raise ValueError(f"router has num_experts={router.num_experts} but there are {E} experts")
        if shared is not None and (shared.shape[0] != 1 or shared.shape[1] != H):
            raise ValueError(f"shared must be one expert of hidden size {H}, got shape {shared.shape}")
        self.experts = experts
        self.shared = shared
        self.shared_gate_weight = None if shared_gate_weight is None else \
            _as_f32(shared_gate_weight, "shared_gate_weight", (1, H))
        self.scale_input = bool(scale_input)
        self.dtype = dtype
        self.shared_dtype = shared_dtype
        self.group_size = group_size
        self.family = family
        gate_rows = [] if self.shared_gate_weight is None else [self.shared_gate_weight]
        self._router_packed = pack_linear(np.concatenate([self.router_weight] + gate_rows))
        # an ExpertSource (a checkpoint's experts) is packed expert by expert from its source tensors
        defer = isinstance(experts, ExpertSource) and _DEFER_ROUTED.get()
        self._routed = None if defer else experts.packed(dtype, group_size)
        self._shared = shared.packed(shared_dtype, group_size) if shared is not None else None
        # keep one copy of the weights: the packed one (INT blocks, or float panels unpacked on access)
        if not defer:
            experts = self.experts = _packed_only(experts, self._routed, dtype, group_size)
        if shared is not None:
            shared = self.shared = _packed_only(shared, self._shared, shared_dtype, group_size)
        self.last_routing: Optional[Routing] = None
        # route_hook(layer, x, logits (T, E)) -> Routing replaces the router's choice in __call__ (moepy.experiments
        # schemes: expert choice, pruning, an online bias); None: route(logits, router, selection_bias)
        self.route_hook: Optional[Callable[["MoELayer", np.ndarray, np.ndarray], Routing]] = None
        self._init_args = dict(router=router, router_weight=self.router_weight, experts=experts, shared=shared,
                               shared_gate_weight=self.shared_gate_weight, router_bias=self.router_bias,
                               selection_bias=self.selection_bias, scale_input=self.scale_input, dtype=dtype,
                               family=family, group_size=group_size, shared_dtype=shared_dtype)
        self._work = np.empty(0, np.uint8)  # scratch reused across calls (no page faults per call)
        self._work_lock = threading.Lock()

    # ---- pickling: the constructor's arguments (the packed weights are rebuilt, identically, on load)
    def __reduce__(self):
        return (_rebuild_layer, (self._init_args,))

    # ---- shape and size
    @property
    def num_experts(self) -> int:
        """E, routed experts."""
        return self.experts.shape[0]

    @property
    def hidden_size(self) -> int:
        """H."""
        return self.experts.shape[1]

    @property
    def intermediate_size(self) -> int:
        """I, the routed experts' width."""
        return self.experts.shape[2]

    def __repr__(self):
        E, H, I = self.experts.shape
        sh = f", shared I={self.shared.shape[2]}" if self.shared is not None else ""
        return (f"MoELayer({self.family}: E={E}, H={H}, I={I}, top_k={self.router.top_k}, "
                f"{self.experts.activation}{sh}, {self.dtype})")

    # ---- forward
    def router_logits(self, x2: np.ndarray) -> np.ndarray:
        """x (T, H) -> logits (T, E) in float32 (plus, past column E, the shared-gate logit)."""
        logits = _ops.linear(x2, self._router_packed)
        if self.router_bias is not None:
            logits[:, :self.num_experts] += self.router_bias
        return logits

    def route(self, x: np.ndarray) -> Routing:
        """The routing of the tokens of x ((T, H) or (B, S, H)); capacity is applied per batch row."""
        x = _as_tokens(x, self.hidden_size)
        return self._route(x, self.router_logits(x.reshape(-1, self.hidden_size)))

    def _route(self, x: np.ndarray, logits: np.ndarray) -> Routing:
        """x is finite here (_as_tokens refuses NaN and inf, naming the row)."""
        E = self.num_experts
        logits = np.ascontiguousarray(logits[:, :E])
        if x.ndim == 3:  # capacity applies per sequence (Switch's groups)
            logits = logits.reshape(x.shape[0], x.shape[1], E)
        return route(logits, self.router, self.selection_bias)

    def __call__(self, x: np.ndarray, return_routing: bool = False, out: Optional[np.ndarray] = None):
        """y = MoE(x) for x (T, H) or (B, S, H) float32; with return_routing, (y, Routing).
        out: a float32 array of x's shape that receives y (any layout: a non-contiguous view is filled)."""
        x = _as_tokens(x, self.hidden_size)
        x2 = x.reshape(-1, self.hidden_size)
        routing, gate = self._routing_and_gate(x, x2)
        y = self._forward(x2, routing.weights, routing.experts, routing.dropped, gate, out)
        self.last_routing = routing
        y = y.reshape(x.shape) if out is None else out
        return (y, routing) if return_routing else y

    def _routing_and_gate(self, x: np.ndarray, x2: np.ndarray):
        """(Routing of the tokens x2 (T, H) — the router's, or route_hook's —, the shared expert's gate (T,) or
        None); x is x2 in the caller's shape ((T, H) or (B, S, H): capacity applies per sequence)."""
        logits = self.router_logits(x2)
        if self.route_hook is None:
            routing = self._route(x, logits)
        else:
            routing = self.route_hook(self, x, np.ascontiguousarray(logits[:, :self.num_experts]))
            if not isinstance(routing, Routing) or routing.experts.shape[0] != x2.shape[0]:
                raise TypeError(f"route_hook must return a Routing of the {x2.shape[0]} tokens")
        gate = None
        if self.shared_gate_weight is not None:
            gate = (1.0 / (1.0 + np.exp(-logits[:, self.num_experts]))).astype(np.float32)
        return routing, gate

    def _forward(self, x2, weights, experts, dropped, gate, out):
        """The C layer over a routing; out (x's shape) is written directly when the kernel can write it,
        else filled from a fresh result."""
        direct = None
        if out is not None:
            if not isinstance(out, np.ndarray) or out.dtype != np.float32:
                raise TypeError(f"out must be a float32 numpy array, got {getattr(out, 'dtype', type(out))}")
            if out.size != x2.size or out.shape[-1] != x2.shape[1]:
                raise ValueError(f"out must have the shape of x, got {out.shape}")
            if not out.flags.writeable:
                raise ValueError("out is read-only")
            if out.flags.c_contiguous and out.flags.aligned and out.dtype.isnative:
                direct = out.reshape(x2.shape)  # a view: the kernel writes into out
        args = (x2, weights, experts, dropped, self._routed, self._shared, gate, self.scale_input)
        if self._work_lock.acquire(blocking=False):  # concurrent callers get their own scratch
            try:
                need = _ops.forward_workspace(x2.shape[0], experts.shape[1], self._routed, self._shared,
                                              self.scale_input)
                if self._work.size < need:
                    self._work = np.empty(need, np.uint8)
                y = _ops.moe_forward(*args, out=direct, work=self._work)
            finally:
                self._work_lock.release()
        else:
            y = _ops.moe_forward(*args, out=direct)
        if out is not None and direct is None:
            out[...] = y.reshape(out.shape)
        return y

    def quantize(self, format: str = "int8", group_size: int = 32, shared: bool = False) -> "MoELayer":
        """A copy of this layer whose routed experts are quantized (moepy.moe.quant formats "int8",
        "int4", "int4_asym", "int4_nl", groups of `group_size` inputs); the router and (unless `shared`) the
        shared expert keep full precision."""
        return MoELayer(self.router, self.router_weight, self.experts, shared=self.shared,
                        shared_gate_weight=self.shared_gate_weight, router_bias=self.router_bias,
                        selection_bias=self.selection_bias, scale_input=self.scale_input, dtype=format,
                        family=self.family, group_size=group_size,
                        shared_dtype=format if shared else self.shared_dtype)

    def nbytes(self) -> dict:
        """Bytes of the packed weights the kernels read: routed experts, shared expert, router."""
        routed = self._routed.nbytes
        shared = 0 if self._shared is None else self._shared.nbytes
        return {"routed": routed, "shared": shared, "router": self.router_weight.nbytes,
                "per_expert": routed // self.num_experts}

    def stats(self) -> BalanceStats:
        """Balance measures of the last call's routing."""
        if self.last_routing is None:
            raise RuntimeError("stats() needs a forward call first")
        return balance_stats(self.last_routing)

    # ---- constructors
    @classmethod
    def random(cls, router: RouterConfig, hidden_size: int, intermediate_size: int, *, seed: int = 0,
               num_experts: Optional[int] = None, shared_intermediate_size: int = 0, shared_gate: bool = False,
               activation: str = "silu", dtype: str = "float32", scale_input: bool = False,
               selection_bias: bool = False, std: float = 0.02) -> "MoELayer":
        """A layer with seeded N(0, std) weights (router N(0, 1/sqrt(H)) so routing is not uniform)."""
        E = num_experts or router.num_experts
        if E is None:
            raise ValueError("num_experts is needed when router.num_experts is None")
        rng = np.random.default_rng(seed)
        H, I = hidden_size, intermediate_size
        gated = activation in ("silu", "swiglu", "gpt_oss") or activation.startswith("gelu")

        def experts(n, width):
            w = lambda *s: (rng.standard_normal(s) * std).astype(np.float32)  # noqa: E731
            return ExpertWeights(up=w(n, width, H), down=w(n, H, width), gate=w(n, width, H) if gated else None,
                                 activation=activation)
        shared = experts(1, shared_intermediate_size) if shared_intermediate_size else None
        return cls(router, (rng.standard_normal((E, H)) / np.sqrt(H)).astype(np.float32), experts(E, I),
                   shared=shared,
                   shared_gate_weight=(rng.standard_normal((1, H)) / np.sqrt(H)).astype(np.float32) if shared_gate else None,
                   selection_bias=(rng.standard_normal(E) * 0.01).astype(np.float32) if selection_bias else None,
                   scale_input=scale_input, dtype=dtype, family=router.family)

    @classmethod
    def from_hf(cls, hf_config, tensors, layer_index: int, dtype: str = "float32",
                quantize: Optional[str] = None, group_size: int = 32) -> "MoELayer":
        """Layer `layer_index` of a Hugging Face checkpoint: `hf_config` a config.json dict or path,
        `tensors` a mapping of full checkpoint names to arrays (per-expert Hub names or the fused
        names of transformers v5). Every family with a checkpoint reader in moepy/families (mixtral,
        qwen2_moe, qwen3_moe, olmoe, dbrx, deepseek_v2, deepseek_v3 / kimi_k2, llama4, gpt_oss,
        switch_transformers, ...); see moepy/families/_layers.py.
        quantize: "int8", "int4", "int4_asym" or "int4_nl" quantizes the routed experts (moepy.moe.quant)."""
        from ..families import moe_layer_from_hf
        if not quantize:
            return moe_layer_from_hf(hf_config, tensors, layer_index, dtype)
        # the routed experts are quantized expert by expert from the checkpoint's tensors, never packed as
        # floats first (the same blocks as quantizing the float / bf16 layer: bf16 values are exact in float32)
        return cls._from_hf_unpacked(hf_config, tensors, layer_index, dtype).quantize(quantize, group_size)

    @classmethod
    def _from_hf_unpacked(cls, hf_config, tensors, layer_index: int, dtype: str) -> "MoELayer":
        """from_hf whose routed experts, when the family reads them as an ExpertSource, are left unpacked
        (layer.experts the source, layer._routed None): only for building another layer from it at once
        (quantize(), or GGUF's INT blocks); such a layer cannot run."""
        from ..families import moe_layer_from_hf
        token = _DEFER_ROUTED.set(True)
        try:
            return moe_layer_from_hf(hf_config, tensors, layer_index, dtype)
        finally:
            _DEFER_ROUTED.reset(token)

    def to_float32_reference(self):
        """The NumPy twin of this layer (moepy.reference.moe_layer_forward arguments)."""
        def ref(ex, dt):
            if dt == "float32" or dt in quant.FORMATS:  # INT experts: their dequantized blocks
                return ex.as_float32()
            return _bf16_round(ex)
        return dict(experts=ref(self.experts, self.dtype),
                    shared=None if self.shared is None else ref(self.shared, self.shared_dtype),
                    scale_input=self.scale_input)

    # ---- files
    def save(self, path, metadata: Optional[dict] = None) -> None:
        """Write this layer to one .safetensors file (moepy.io.layer_io): float experts as F32 / BF16 tensors
        any safetensors reader loads, INT experts as their U8 blocks with format, group size and layout in
        __metadata__; `MoELayer.load` reads it back bit-exact without requantizing."""
        from ..io.layer_io import save_layer
        save_layer(self, path, metadata)

    @classmethod
    def load(cls, path, mmap: bool = False) -> "MoELayer":
        """A layer written by `save`, bit-exact: bf16 experts stay bf16 (packed from the file's map), INT blocks are
        used as stored (copied, or with mmap=True read in place from the map; see moepy.io.layer_io)."""
        from ..io.layer_io import load_layer
        return load_layer(path, mmap)



    # ---- the layer's experts on a caller's routing
    def run_experts(self, x: np.ndarray, weights, experts, dropped=None, include_shared: bool = True) -> np.ndarray:
        """y = sum_k weights[t, k] f_{experts[t, k]}(x[t]) (+ the shared expert, gated as in __call__, unless
        include_shared is False) for a routing the caller chose: x (T, H) or (B, S, H) float32; experts (T, K) int ids, each in [0, E) and
        unique within a row; weights (T, K) float (converted to float32); dropped (T, K) bool or None
        (dropped slots contribute nothing). ValueError / TypeError naming the argument otherwise."""
        x = _as_tokens(x, self.hidden_size)
        x2 = x.reshape(-1, self.hidden_size)
        T = x2.shape[0]
        experts = as_index(experts, "experts", np.int32, (2,))
        if experts.shape[0] != T or experts.shape[1] < 1:
            raise ValueError(f"experts must be (T, K) = ({T}, K >= 1), got {experts.shape}")
        E = self.num_experts
        if experts.size and (experts.min() < 0 or experts.max() >= E):
            t, k = np.argwhere((experts < 0) | (experts >= E))[0]
            raise ValueError(f"experts[{t}, {k}] = {experts[t, k]} is out of range [0, {E})")
        srt = np.sort(experts, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        if dup.any():
            raise ValueError(f"experts row {int(np.argmax(dup))} holds an expert id twice")
        weights = as_float32(weights, "weights", (2,))
        if weights.shape != experts.shape:
            raise ValueError(f"weights must have the shape of experts {experts.shape}, got {weights.shape}")
        if not np.isfinite(weights).all():
            raise ValueError("weights hold NaN or inf")
        if dropped is not None:
            dropped = np.asarray(dropped)
            if dropped.dtype != np.bool_ or dropped.shape != experts.shape:
                raise ValueError(f"dropped must be a bool array of shape {experts.shape}")
            dropped = np.ascontiguousarray(dropped)
        if not include_shared:
            return _ops.moe_forward(x2, weights, experts, dropped, self._routed, None, None,
                                    self.scale_input).reshape(x.shape)
        gate = None
        if self.shared_gate_weight is not None:
            logit = _ops.linear(x2, self._router_packed)[:, E]
            gate = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
        y = self._forward(x2, weights, experts, dropped, gate, None)
        return y.reshape(x.shape)

    def forward_expert_choice(self, x: np.ndarray, capacity_factor: float = 1.0, capacity: Optional[int] = None,
                              return_routing: bool = False):
        """Expert-choice routing (Zhou et al. 2022) through this layer: each expert takes its C best tokens
        by the softmax of the router logits (C = capacity or ceil(capacity_factor * T / E)) and weights
        them by that score; a token gets 0..E experts. With return_routing, (y, ExpertChoice)."""
        from ..routing import expert_choice
        x = _as_tokens(x, self.hidden_size)
        x2 = x.reshape(-1, self.hidden_size)
        E = self.num_experts
        ec = expert_choice(np.ascontiguousarray(self.router_logits(x2)[:, :E]), capacity, capacity_factor)
        r = ec.to_routing()
        y = self.run_experts(x, r.weights, r.experts, r.dropped)
        return (y, ec) if return_routing else y


def _packed_only(ex, packed: tuple, dtype: str, group_size: int):
    """Experts as their packed form alone (moepy.moe.packed): INT blocks, or float / bf16 panels."""
    from .packed import PackedFloatExperts, PackedOnlyExperts
    if dtype in quant.FORMATS:
        if isinstance(ex, PackedOnlyExperts) and ex.format == dtype and ex.group_size == group_size:
            return ex
        return PackedOnlyExperts.from_packed(ex, packed, dtype, group_size)
    if isinstance(ex, PackedFloatExperts) and ex.dtype == dtype:
        return ex
    return PackedFloatExperts.from_packed(ex, packed, dtype)


def _rebuild_layer(args: dict) -> "MoELayer":
    """Unpickle a MoELayer from its constructor's arguments."""
    args = dict(args)
    return MoELayer(args.pop("router"), args.pop("router_weight"), args.pop("experts"), **args)


def _bf16_round(ex: ExpertWeights) -> ExpertWeights:
    f = lambda w: None if w is None else from_bf16_bits(to_bf16_bits(w))  # noqa: E731
    return ExpertWeights(f(ex.up), f(ex.down), f(ex.gate), ex.gate_bias, ex.up_bias, ex.down_bias, ex.activation,
                         ex.alpha, ex.limit)


def _as_f32(a, name, shape) -> np.ndarray:
    """A router-side tensor as the layer's own finite float32 copy (the caller may change theirs afterwards)."""
    src = a
    a = as_float32(a, name)
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    if a is src or (isinstance(src, np.ndarray) and np.shares_memory(a, src)):
        a = a.copy()
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or inf at {tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])}")
    return a


def _as_tokens(x, H) -> np.ndarray:
    """x by moepy's input rule (moepy/_inputs.py: array-likes, DLPack tensors, other float precisions
    converted to float32), as (T, H) or (B, S, H)."""
    x = as_float32(x, "x", (2, 3))
    if x.shape[-1] != H:
        raise ValueError(f"x must be (T, {H}) or (B, S, {H}), got {x.shape}")
    if not np.isfinite(np.add.reduce(x, axis=None, dtype=np.float64)):  # one pass; exact check only if it fails
        bad = ~np.isfinite(x.reshape(-1, H)).all(axis=1)
        if bad.any():
            t = int(np.argmax(bad))
            where = f"token row {t}" if x.ndim == 2 else \
                f"token row {t} (batch {t // x.shape[1]}, position {t % x.shape[1]})"
            raise ValueError(f"x holds NaN or inf in {where}")
    return x

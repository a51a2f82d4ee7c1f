"""Routing schemes: small objects that change how a model's MoE layers route for one compare_routing run.

A scheme may change each MoE layer's RouterConfig (`router`), replace the routing itself (`route`, given the
layer's router logits), and learn from the text before the run (`prepare`, e.g. pruning statistics). Write your
own by subclassing `Scheme`; every built-in one below is a few lines of that.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Mapping, Optional, Union

import numpy as np

from .. import _ops
from ..routing import ExpertChoice, RouterConfig, Routing, route
from ..routing.route import concat_routings


class Scheme:
    """How the MoE layers route during one run.

    name: the row label. router(index, layer, current) -> the RouterConfig layer `index` runs with (default:
    current). route(index, layer, x, logits (T, E)) -> Routing, or None to route with the layer's own router and
    selection bias (the default; overriding it costs nothing when unused). prepare(model, chunks) runs once
    before the scheme's run: chunks (n, ctx) int64 are the evaluated token chunks. end_run() after it."""

    name = "scheme"

    def router(self, index: int, layer, current: RouterConfig) -> RouterConfig:
        """The RouterConfig layer `index` runs with."""
        return current

    def route(self, index: int, layer, x: np.ndarray, logits: np.ndarray) -> Optional[Routing]:
        """A Routing of the T tokens of x ((T, H) or (B, S, H)) from their router logits (T, E); None: the
        layer's own routing."""
        return None

    def prepare(self, model, chunks: np.ndarray) -> None:
        """Called once before this scheme's run (reset state, collect statistics)."""

    def end_run(self) -> None:
        """Called once after this scheme's run."""

    def overrides_route(self) -> bool:
        """True when this scheme's class replaces route()."""
        return type(self).route is not Scheme.route

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


def layer_route(layer, x: np.ndarray, logits: np.ndarray, router: Optional[RouterConfig] = None,
                bias: Optional[np.ndarray] = None) -> Routing:
    """The layer's routing of logits (T, E) under `router` (default: the layer's) and selection `bias` (default:
    the layer's): capacity per sequence when x is (B, S, H), as MoELayer does."""
    router = layer.router if router is None else router
    bias = layer.selection_bias if bias is None else bias
    if x.ndim == 3 and router.drops_tokens:
        logits = logits.reshape(x.shape[0], x.shape[1], -1)
    return route(logits, router, bias)


class Baseline(Scheme):
    """The model's own routing."""

    name = "baseline"


class TopK(Scheme):
    """k active experts per token: an int for every MoE layer, or {layer_index: k} (other layers keep theirs)."""

    def __init__(self, k: Union[int, Mapping[int, int]], name: Optional[str] = None):
        ks = dict(k) if isinstance(k, Mapping) else None
        for v in (ks.values() if ks is not None else [k]):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"k must be an int >= 1 (or a dict of them), got {v!r}")
        self.k, self._per_layer = k, ks
        self.name = name or (f"top-{k}" if ks is None else "top-k " + ",".join(f"L{i}:{v}" for i, v in ks.items()))

    def router(self, index, layer, current):
        k = self.k if self._per_layer is None else self._per_layer.get(index, current.top_k)
        if k > layer.num_experts:
            raise ValueError(f"k={k} exceeds the {layer.num_experts} experts of layer {index}")
        return dataclasses.replace(current, top_k=int(k))


class Renormalize(Scheme):
    """Renormalise the top-k weights to sum 1 (on=True) or keep the raw scores (on=False)."""

    def __init__(self, on: bool):
        self.on = bool(on)
        self.name = "renormalize " + ("on" if self.on else "off")

    def router(self, index, layer, current):
        return dataclasses.replace(current, normalize=self.on)


class Capacity(Scheme):
    """Token dropping at a capacity factor (Switch / GShard): each expert takes at most ceil(factor * T * K / E)
    tokens of a sequence, in `priority` order ("rank": all first choices first, GShard; "token": token order).
    factor None: dropless."""

    def __init__(self, factor: Optional[float], priority: str = "rank"):
        if factor is not None and not (factor > 0 and math.isfinite(factor)):
            raise ValueError(f"factor must be finite and > 0 (or None: dropless), got {factor!r}")
        self.factor, self.priority = factor, priority
        self.name = "dropless" if factor is None else f"capacity {factor:g} ({priority})"

    def router(self, index, layer, current):
        return dataclasses.replace(current, capacity_factor=self.factor, capacity=None,
                                   capacity_priority=self.priority)


class ExpertChoiceRouting(Scheme):
    """Expert choice (Zhou et al. 2022) through the real layer: each expert takes the C = ceil(factor * T / E)
    tokens of a sequence with the highest scores (the layer's own scoring function: softmax or sigmoid) and
    weights each by its score (times the router's scale). factor = k gives k experts per token on average.
    Non-causal: a token's experts depend on the later tokens of its sequence, which is why decoders do not use it."""

    def __init__(self, factor: float):
        if not (factor > 0 and math.isfinite(factor)):
            raise ValueError(f"factor must be finite and > 0, got {factor!r}")
        self.factor = float(factor)
        self.name = f"expert choice {factor:g}"

    def route(self, index, layer, x, logits):
        cfg = dataclasses.replace(layer.router, top_k=1, capacity=None, capacity_factor=None, n_group=1, topk_group=1)
        scores = route(logits, cfg).scores  # (T, E) softmax or sigmoid of the logits
        S = x.shape[1] if x.ndim == 3 else x.shape[0]
        parts = []
        for s in range(0, scores.shape[0], S):  # each sequence on its own
            sc = np.ascontiguousarray(scores[s:s + S])
            C = min(S, max(1, math.ceil(self.factor * S / sc.shape[1])))
            gates, tokens = _ops.expert_choice(sc, C)
            coverage = np.bincount(tokens.ravel(), minlength=S).astype(np.int64)
            parts.append(ExpertChoice((gates * np.float32(layer.router.scale)).astype(np.float32), tokens, sc,
                                      coverage).to_routing())
        if len(parts) == 1:
            return parts[0]
        K = max(p.top_k for p in parts)
        return concat_routings([_pad(p, K) for p in parts])


def _pad(r: Routing, K: int) -> Routing:
    """r with dropped slots appended up to K experts per token (ids the row does not use)."""
    T, k = r.experts.shape
    if k == K:
        return r
    used = np.zeros((T, r.num_experts), bool)
    np.put_along_axis(used, r.experts.astype(np.int64), True, axis=1)
    free = np.argsort(used, axis=1, kind="stable")[:, :K - k].astype(np.int32)
    return Routing(np.concatenate([r.weights, np.zeros((T, K - k), np.float32)], 1),
                   np.concatenate([r.experts, free], 1), r.scores,
                   np.concatenate([r.dropped, np.ones((T, K - k), bool)], 1), None, r.scoring)


class GroupLimited(Scheme):
    """Group-limited routing (DeepSeek-V2/V3) with n_group groups of which topk_group stay selectable, or off
    (n_group None: every expert selectable)."""

    def __init__(self, n_group: Optional[int], topk_group: Optional[int] = None):
        self.n_group, self.topk_group = n_group, topk_group
        self.name = "groups off" if n_group is None else f"groups {topk_group}/{n_group}"

    def router(self, index, layer, current):
        if self.n_group is None:
            return dataclasses.replace(current, n_group=1, topk_group=1)
        return dataclasses.replace(current, n_group=int(self.n_group),
                                   topk_group=int(self.topk_group or current.topk_group))


class Scoring(Scheme):
    """Score with `scoring` ("softmax" or "sigmoid") instead of the function the model was trained with."""

    def __init__(self, scoring: str):
        self.scoring = scoring
        self.name = f"{scoring} scoring"

    def router(self, index, layer, current):
        return dataclasses.replace(current, scoring=self.scoring)


class OnlineBias(Scheme):
    """The auxiliary-loss-free selection bias (DeepSeek-V3) re-estimated online over the text: after each
    batch (one layer call: a chunk), b_i += gamma * sign(mean load - load_i). Starts from the model's own
    selection bias (start="model") or from zero (start="zero"). The bias shifts selection only, never the
    weights; `biases` holds the final ones by layer."""

    def __init__(self, gamma: float = 1e-3, start: str = "model"):
        if not (gamma > 0 and math.isfinite(gamma)):
            raise ValueError(f"gamma must be finite and > 0, got {gamma!r}")
        if start not in ("model", "zero"):
            raise ValueError(f"start must be 'model' or 'zero', got {start!r}")
        self.gamma, self.start = float(gamma), start
        self.name = f"online bias {gamma:g}" + (" from 0" if start == "zero" else "")
        self.biases: Dict[int, np.ndarray] = {}

    def prepare(self, model, chunks):
        self.biases = {}
        for i, layer in model.moe_layers.items():
            own = layer.selection_bias if self.start == "model" else None
            self.biases[i] = np.zeros(layer.num_experts, np.float32) if own is None else own.copy()

    def route(self, index, layer, x, logits):
        b = self.biases[index]
        r = layer_route(layer, x, logits, bias=b)
        counts = r.counts().astype(np.float64)
        b += np.float32(self.gamma) * np.sign(counts.mean() - counts).astype(np.float32)
        return r


class Prune(Scheme):
    """Remove a fraction of each MoE layer's routed experts: the router can no longer pick them (their logits
    and selection bias become -inf, so the others share the weight as the scoring function gives it).

    by="frequency": drop the least used experts; by="reap": drop the lowest REAP saliency (Lasby et al. 2025:
    the mean over the tokens routed to an expert of gate weight x ||expert output||_2). Statistics come from a
    run of the model's own routing over `calibration` ids (default: the evaluated chunks themselves, in-sample)."""

    BY = ("frequency", "reap")

    def __init__(self, fraction: float, by: str = "frequency", calibration: Optional[np.ndarray] = None):
        if not (0 <= fraction < 1):
            raise ValueError(f"fraction must lie in [0, 1), got {fraction!r}")
        if by not in self.BY:
            raise ValueError(f"by must be one of {self.BY}, got {by!r}")
        self.fraction, self.by, self.calibration = float(fraction), by, calibration
        self.name = f"prune {fraction:.0%} ({by})"
        self.pruned: Dict[int, np.ndarray] = {}
        self.saliency: Dict[int, np.ndarray] = {}

    def prepare(self, model, chunks):
        from .compare import collect_saliency
        cal = chunks if self.calibration is None else np.asarray(self.calibration, np.int64).reshape(1, -1)
        freq, reap = collect_saliency(model, cal, reap=self.by == "reap")
        self.saliency = freq if self.by == "frequency" else reap
        self.pruned = {}
        for i, layer in model.moe_layers.items():
            n = int(round(self.fraction * layer.num_experts))
            keep = layer.num_experts - n
            r = layer.router
            if keep < r.top_k:
                raise ValueError(f"fraction={self.fraction} leaves {keep} experts in layer {i}, fewer than top_k "
                                 f"{r.top_k}")
            order = np.argsort(self.saliency[i], kind="stable")  # least salient first, ties to the lower id
            self.pruned[i] = np.sort(order[:n])

    def route(self, index, layer, x, logits):
        gone = self.pruned[index]
        if gone.size == 0:
            return None
        logits = logits.copy()
        logits[:, gone] = -np.inf
        bias = None
        if layer.selection_bias is not None:
            bias = layer.selection_bias.copy()
            bias[gone] = -np.inf
        return layer_route(layer, x, logits, bias=bias)

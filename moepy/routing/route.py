"""route(), top-k, capacity-limited and expert-choice routing: the C kernels behind RouterConfig.

The kernels are in C (csrc/kernels/route.c, capacity.c); moepy/reference holds their NumPy twins.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import _ops
from .._inputs import as_float32, as_int
from .config import PRIORITIES, RouterConfig


@dataclass(slots=True)
class Routing:
    """The result of routing T tokens.

    weights (T, K) float32: combine weights (0 where a slot was dropped).
    experts (T, K) int32: selected expert ids, best first, unique per row.
    scores (T, E) float32: the scoring function over all experts (softmax or sigmoid of the logits).
    dropped (T, K) bool or None: slots refused by a capacity limit (None when dropless).
    capacity: the per-expert capacity that was applied, or None.
    scoring: "softmax" or "sigmoid", how `scores` were made.
    """

    weights: np.ndarray
    experts: np.ndarray
    scores: np.ndarray
    dropped: Optional[np.ndarray] = None
    capacity: Optional[int] = None
    scoring: str = "softmax"

    @property
    def num_tokens(self) -> int:
        """T."""
        return self.experts.shape[0]

    @property
    def num_experts(self) -> int:
        """E."""
        return self.scores.shape[1]

    @property
    def top_k(self) -> int:
        """K, experts per token."""
        return self.experts.shape[1]

    @property
    def kept(self) -> np.ndarray:
        """(T, K) bool: the slots that reached their expert (all of them unless a capacity dropped some)."""
        return np.ones(self.experts.shape, bool) if self.dropped is None else ~np.asarray(self.dropped)

    def counts(self) -> np.ndarray:
        """(E,) int64 tokens per expert (dropped slots excluded)."""
        return _ops.expert_load(self.experts, self.dropped, None, self.num_experts)[0]


_F32 = np.dtype(np.float32)


def route(logits, config: RouterConfig, bias=None) -> Routing:
    """Route tokens: logits (T, E), or (B, S, E) -> Routing over the T = B * S tokens (weights (T, K),
    experts (T, K), scores (T, E)).

    logits and bias follow moepy's input rule (moepy/_inputs.py: array-likes and DLPack tensors; other float
    precisions converted to float32). bias (E,) shifts selection only (DeepSeek-V3's e_score_correction_bias /
    the auxiliary-loss-free balancing bias). With a capacity in `config`, over-capacity slots are dropped and
    returned in `Routing.dropped`; for (B, S, E) logits the capacity applies per sequence (Switch's groups).
    Raises ValueError naming the first row with a NaN, or the offending parameter.
    """
    # the hot path: a native float32 (T, E) ndarray, a config already routed with (its packed C parameters
    # kept on it by _ops.route_params), no bias or a float32 one; C checks the rest and copies non-contiguous
    # or misaligned arrays itself
    if (type(logits) is np.ndarray and logits.dtype is _F32 and logits.ndim == 2
            and (bias is None or (type(bias) is np.ndarray and bias.dtype is _F32))):
        try:
            params = config._c_route_params
        except AttributeError:
            params = None
        if params is not None:
            ne = config.num_experts
            if ne is not None and logits.shape[1] != ne:
                raise ValueError(f"logits has {logits.shape[1]} expert columns but config.num_experts={ne}")
            weights, experts, scores = _ops.route_arrays(logits, bias, params)
            if not config._drops:
                return Routing(weights, experts, scores, None, None, config.scoring)
            return _with_capacity(config, weights, experts, scores)
    if not isinstance(config, RouterConfig):
        raise TypeError(f"config must be a RouterConfig, got {type(config).__name__}")
    logits = as_float32(logits, "logits", (2, 3))
    E = logits.shape[-1]
    if config.num_experts is not None and E != config.num_experts:
        raise ValueError(f"logits has {E} expert columns but config.num_experts={config.num_experts}")
    if bias is not None:
        bias = as_float32(bias, "bias", (1,))
    if logits.ndim == 3:
        B, S, _ = logits.shape
        flat = logits.reshape(B * S, E)
        if not config.drops_tokens or B <= 1:
            return route(flat, config, bias)
        return concat_routings([route(flat[b * S:(b + 1) * S], config, bias) for b in range(B)])  # per sequence
    weights, experts, scores = _ops.route_arrays(logits, bias, _ops.route_params(config))
    if not config.drops_tokens:
        return Routing(weights, experts, scores, None, None, config.scoring)
    return _with_capacity(config, weights, experts, scores)


def concat_routings(parts) -> Routing:
    """One Routing of the tokens of several (in order): their arrays joined; all have the same K, and all or none
    carry `dropped`; the capacity and scoring of the first."""
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    dropped = cat("dropped") if parts[0].dropped is not None else None
    return Routing(cat("weights"), cat("experts"), cat("scores"), dropped, parts[0].capacity, parts[0].scoring)


def _with_capacity(config: RouterConfig, weights, experts, scores) -> Routing:
    cap = config.expert_capacity(experts.shape[0], scores.shape[1])
    dropped, _ = _ops.apply_capacity(weights, experts, scores.shape[1], cap, config.capacity_priority)
    return Routing(weights, experts, scores, dropped, cap, config.scoring)


def topk(x, k: int):
    """Row-wise top-k of x (R, M) -> (values (R, k) float32, indices (R, k) int64), sorted descending, ties to
    the lower index. A 1-D x is treated as one row. x follows moepy's input rule; NaN raises ValueError."""
    x = as_float32(x, "x", (1, 2))
    k = as_int(k, "k", lo=1, hi=x.shape[-1])
    return _ops.topk(x, k)


def apply_capacity(routing: Routing, capacity: int, priority: str = "rank") -> Routing:
    """A copy of `routing` with slots past `capacity` tokens per expert dropped (weights zeroed)."""
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")
    capacity = as_int(capacity, "capacity", lo=0)
    weights = routing.weights.copy()
    dropped, _ = _ops.apply_capacity(weights, routing.experts, routing.num_experts, capacity, priority)
    if routing.dropped is not None:
        dropped |= routing.dropped
        weights[routing.dropped] = 0.0
    return Routing(weights, routing.experts, routing.scores, dropped, capacity, routing.scoring)


@dataclass(frozen=True)
class ExpertChoice:
    """Expert-choice routing: expert e takes tokens[e] (C,) with gates[e] (C,), best first.

    coverage (T,) int64: how many experts took each token (0 = the token is dropped)."""

    gates: np.ndarray
    tokens: np.ndarray
    scores: np.ndarray
    coverage: np.ndarray

    @property
    def capacity(self) -> int:
        """C, the tokens each expert takes."""
        return self.tokens.shape[1]

    @property
    def num_tokens(self) -> int:
        """T."""
        return self.scores.shape[0]

    @property
    def num_experts(self) -> int:
        """E."""
        return self.scores.shape[1]

    def to_routing(self) -> Routing:
        """The same assignment seen from the tokens: a Routing whose row t lists the experts that took token t,
        best gate first (ties to the lower expert), padded to the largest coverage K with dropped slots (weight
        0, `dropped` True, an expert id the row does not use). What a layer's experts run on (the combine is
        the same sum over a token's experts); `coverage` 0 rows are all dropped."""
        T, E, C = self.num_tokens, self.num_experts, self.capacity
        K = max(1, int(self.coverage.max()) if T else 1)
        e_ids = np.repeat(np.arange(E, dtype=np.int64), C)
        t_ids = self.tokens.ravel()
        g = self.gates.ravel()
        order = np.lexsort((e_ids, -g.astype(np.float64), t_ids))  # by token, best gate first, lower expert
        t_sorted = t_ids[order]
        starts = np.searchsorted(t_sorted, np.arange(T))
        rank = np.arange(t_sorted.size) - starts[t_sorted]
        experts = np.empty((T, K), np.int32)
        weights = np.zeros((T, K), np.float32)
        dropped = np.ones((T, K), np.bool_)
        experts[t_sorted, rank] = e_ids[order]
        weights[t_sorted, rank] = g[order]
        dropped[t_sorted, rank] = False
        if (self.coverage < K).any():  # padding slots take the lowest expert ids the row does not use
            used = np.zeros((T, E), np.bool_)
            used[t_sorted, e_ids[order]] = True
            free = np.argsort(used, axis=1, kind="stable")  # unused ids first, ascending
            pad_rank = np.arange(K)[None, :] - self.coverage[:, None]  # 0, 1, ... for padding slots
            rows, cols = np.nonzero(pad_rank >= 0)
            experts[rows, cols] = free[rows, pad_rank[rows, cols]]
        return Routing(weights, experts, self.scores, dropped, None, "softmax")


def expert_choice(logits: np.ndarray, capacity: Optional[int] = None, capacity_factor: float = 1.0) -> ExpertChoice:
    """Expert-choice routing (Zhou et al., 2022): scores = softmax over experts of logits (T, E); each
    expert takes its C highest-scoring tokens, C = capacity or ceil(capacity_factor * T / E) (a
    factor of k gives each token k experts on average). Ties go to the lower token index."""
    logits = as_float32(logits, "logits", (2,))
    T, E = logits.shape
    if capacity is not None:
        capacity = as_int(capacity, "capacity", lo=1, hi=T)
    else:
        if not (capacity_factor > 0 and math.isfinite(capacity_factor)):
            raise ValueError(f"capacity_factor must be finite and > 0, got {capacity_factor!r}")
        capacity = min(T, max(1, int(math.ceil(capacity_factor * T / E))))
    cfg = RouterConfig(top_k=1, scoring="softmax")
    _, _, scores = _ops.route_arrays(logits, None, _ops.route_params(cfg))
    gates, tokens = _ops.expert_choice(scores, capacity)
    coverage = np.bincount(tokens.ravel(), minlength=T).astype(np.int64)
    return ExpertChoice(gates, tokens, scores, coverage)

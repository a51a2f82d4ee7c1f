"""route(), top-k, capacity-limited and expert-choice routing: the C kernels behind RouterConfig.

The kernels are in C (csrc/kernels/route.c, capacity.c); moepy/reference holds their NumPy twins.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import _ops
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
        return self.experts.shape[0]

    @property
    def num_experts(self) -> int:
        return self.scores.shape[1]

    @property
    def top_k(self) -> int:
        return self.experts.shape[1]

    def counts(self) -> np.ndarray:
        """(E,) int64 tokens per expert (dropped slots excluded)."""
        return _ops.expert_load(self.experts, self.dropped, None, self.num_experts)[0]


def route(logits: np.ndarray, config: RouterConfig, bias: Optional[np.ndarray] = None) -> Routing:
    """Route tokens: logits (T, E) float32 -> Routing (weights (T, K), experts (T, K), scores (T, E)).

    bias (E,) float32 shifts selection only (DeepSeek-V3's e_score_correction_bias / the
    auxiliary-loss-free balancing bias). With a capacity in `config`, over-capacity slots are
    dropped and returned in `Routing.dropped`.
    Raises ValueError naming the first row with a NaN, or the offending parameter.
    """
    if type(logits) is not np.ndarray:
        logits = _ops.as_input(logits, "logits", np.float32, 2)
    if config.num_experts is not None and logits.ndim == 2 and logits.shape[1] != config.num_experts:
        raise ValueError(f"logits has {logits.shape[1]} expert columns but config.num_experts={config.num_experts}")
    if bias is not None and type(bias) is not np.ndarray:
        bias = _ops.as_input(bias, "bias", np.float32, 1)
    weights, experts, scores = _ops.route_arrays(logits, bias, _ops.route_params(config))
    if not config.drops_tokens:
        return Routing(weights, experts, scores, None, None, config.scoring)
    cap = config.expert_capacity(experts.shape[0], scores.shape[1])
    dropped, _ = _ops.apply_capacity(weights, experts, scores.shape[1], cap, config.capacity_priority)
    return Routing(weights, experts, scores, dropped, cap, config.scoring)


def topk(x: np.ndarray, k: int):
    """Row-wise top-k of x (R, M) float32 -> (values (R, k) float32, indices (R, k) int64), sorted
    descending, ties to the lower index. A 1-D x is treated as one row. NaN raises ValueError."""
    return _ops.topk(x, k)


def apply_capacity(routing: Routing, capacity: int, priority: str = "rank") -> Routing:
    """A copy of `routing` with slots past `capacity` tokens per expert dropped (weights zeroed)."""
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")
    weights = routing.weights.copy()
    dropped, _ = _ops.apply_capacity(weights, routing.experts, routing.num_experts, capacity, priority)
    if routing.dropped is not None:
        dropped |= routing.dropped
        weights[routing.dropped] = 0.0
    return Routing(weights, routing.experts, routing.scores, dropped, int(capacity), routing.scoring)


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
        return self.tokens.shape[1]


def expert_choice(logits: np.ndarray, capacity: Optional[int] = None, capacity_factor: float = 1.0) -> ExpertChoice:
    """Expert-choice routing (Zhou et al., 2022): scores = softmax over experts of logits (T, E); each
    expert takes its C highest-scoring tokens, C = capacity or ceil(capacity_factor * T / E) (a
    factor of k gives each token k experts on average). Ties go to the lower token index."""
    logits = _ops.as_input(logits, "logits", np.float32, 2)
    T, E = logits.shape
    if capacity is None:
        if not (capacity_factor > 0 and math.isfinite(capacity_factor)):
            raise ValueError(f"capacity_factor must be finite and > 0, got {capacity_factor!r}")
        capacity = min(T, max(1, int(math.ceil(capacity_factor * T / E))))
    cfg = RouterConfig(top_k=1, scoring="softmax")
    _, _, scores = _ops.route_arrays(logits, None, _ops.route_params(cfg))
    gates, tokens = _ops.expert_choice(scores, capacity)
    coverage = np.bincount(tokens.ravel(), minlength=T).astype(np.int64)
    return ExpertChoice(gates, tokens, scores, coverage)

"""Synthetic routing at the shapes of moepy's presets, with hot experts; load and co-activation counts.

Legend: T tokens, E experts, K experts per token.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from .placement import _as_int_array, _check_int

LAWS = ("zipf", "lognormal")


def _router_of(config):
    """(RouterConfig with num_experts set and no capacity, E) from a preset name, ModelConfig or RouterConfig."""
    from .. import configs
    from ..routing import RouterConfig
    if isinstance(config, str):
        try:
            config = configs.get(config)
        except KeyError as exc:
            raise ValueError(f"config_or_preset_name: {exc.args[0]}") from None
    if isinstance(config, configs.ModelConfig):
        router, E = config.router, config.num_experts
    elif isinstance(config, RouterConfig):
        if config.num_experts is None:
            raise ValueError("config_or_preset_name: a RouterConfig needs num_experts set")
        router, E = config, config.num_experts
    else:
        raise ValueError(f"config_or_preset_name must be a preset name, ModelConfig or RouterConfig, got "
                         f"{type(config).__name__}")
    router = dataclasses.replace(router, num_experts=E, capacity=None, capacity_factor=None)
    return router, E


def popularity_offsets(num_experts: int, skew: float, law: str = "zipf", seed: int = 0) -> np.ndarray:
    """(E,) float32 logit offsets that make some experts hot: "zipf" gives the expert of popularity rank r
    (a random permutation) the offset -skew * log(r), so under softmax routing its share falls as r^-skew;
    "lognormal" gives N(0, skew^2) offsets. skew = 0: uniform."""
    E = _check_int(num_experts, "num_experts")
    if not (isinstance(skew, (int, float)) and math.isfinite(skew) and skew >= 0):
        raise ValueError(f"skew must be a finite number >= 0, got {skew!r}")
    if law not in LAWS:
        raise ValueError(f"law must be one of {', '.join(LAWS)}; got {law!r}")
    rng = np.random.default_rng([int(seed), 0])
    if law == "zipf":
        rank = rng.permutation(E) + 1
        return (-skew * np.log(rank)).astype(np.float32)
    return (skew * rng.standard_normal(E)).astype(np.float32)


def synthetic_routing(config_or_preset_name, num_tokens: int, *, skew: float = 1.0, law: str = "zipf",
                      seed: int = 0, popularity_seed: Optional[int] = None, noise: float = 1.0,
                      chunk: int = 65536) -> np.ndarray:
    """(T, K) int32 experts of num_tokens tokens routed by the model's own router (moepy.route with the
    family's RouterConfig: scoring, group-limited routing, top-k) on random logits N(0, noise^2) plus a
    per-expert popularity offset (popularity_offsets(E, skew, law)), so that load is skewed like a trained
    router's (a few hot experts). config_or_preset_name: a preset name ("deepseek-v3", "kimi-k2",
    "mixtral-8x7b", ...), a ModelConfig or a RouterConfig with num_experts. Capacity limits of the router are
    ignored (dispatch applies its own). popularity_seed (default seed) fixes which experts are hot, seed the
    tokens: two calls with different seeds and one popularity_seed draw two batches of one distribution."""
    from ..routing import route
    router, E = _router_of(config_or_preset_name)
    T = _check_int(num_tokens, "num_tokens", 0)
    chunk = _check_int(chunk, "chunk")
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise > 0):
        raise ValueError(f"noise must be a finite number > 0, got {noise!r}")
    offsets = popularity_offsets(E, skew, law, seed if popularity_seed is None else popularity_seed)  # (E,)
    rng = np.random.default_rng([int(seed), 1])
    out = np.empty((T, router.top_k), np.int32)  # (T, K)
    for start in range(0, T, chunk):
        n = min(chunk, T - start)
        logits = rng.standard_normal((n, E), dtype=np.float32)
        if noise != 1.0:
            logits *= np.float32(noise)
        logits += offsets
        out[start:start + n] = route(logits, router).experts
    return out


def load_from_experts(experts, num_experts: int) -> np.ndarray:
    """(E,) int64 slots routed to each expert, from experts (T, K) (or any int array of expert ids)."""
    E = _check_int(num_experts, "num_experts")
    ids = np.asarray(experts).reshape(-1)
    ids = _as_int_array(ids, "experts")
    if ids.size and (ids.min() < 0 or ids.max() >= E):
        raise ValueError(f"experts: ids must be in [0, {E}), got [{ids.min()}, {ids.max()}]")
    return np.bincount(ids, minlength=E)


def coactivation_counts(experts, num_experts: int) -> np.ndarray:
    """(E, E) int64 symmetric: entry (a, b) counts the tokens routed to both a and b (a != b); the diagonal
    is 0. experts (T, K)."""
    E = _check_int(num_experts, "num_experts")
    x = _as_int_array(experts, "experts", 2)  # (T, K)
    if x.size and (x.min() < 0 or x.max() >= E):
        raise ValueError(f"experts: ids must be in [0, {E}), got [{x.min()}, {x.max()}]")
    counts = np.zeros(E * E, np.int64)
    K = x.shape[1]
    for i in range(K):  # K (K - 1) / 2 pairs of columns, each one bincount over T
        for j in range(i + 1, K):
            counts += np.bincount(x[:, i] * E + x[:, j], minlength=E * E)
    counts = counts.reshape(E, E)
    counts = counts + counts.T
    np.fill_diagonal(counts, 0)
    return counts


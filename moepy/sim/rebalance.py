"""rebalance_stream(): re-place the experts every N steps of a stream of batches, against a static placement.

Legend: E logical experts, D devices; a step is one batch (T, K) of routed experts or one (E,) load.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, List, Optional

import numpy as np

from .placement import Placement, _check_int
from .policies import POLICIES, place_experts


def moved_bytes(old: Placement, new: Placement, expert_bytes: float) -> float:
    """expert_bytes x the (expert, device) pairs of `new` that `old` lacks: a physical expert that changed
    device, or a replica added on a device that did not hold that expert, is one expert's weights moved."""
    return float(np.setdiff1d(new.pairs(), old.pairs(), assume_unique=True).size) * expert_bytes


@dataclass(eq=False)
class RebalanceResult:
    """The load over a stream, rebalanced and static.

    max_load, mean_load (steps,): the most loaded device's load and the mean device load at each step under
    the rebalanced placement; static_max_load: the same max under the static placement (mean is the same).
    imbalance / static_imbalance (steps,): max / mean. rebalance_steps: the steps that first ran on a new
    placement; bytes_moved: the weights moved at each of them. placements: the placement in force at each
    rebalance, after the first one (step 0). static: the static placement.
    """

    max_load: np.ndarray
    mean_load: np.ndarray
    static_max_load: np.ndarray
    rebalance_steps: List[int]
    bytes_moved: List[float]
    placements: List[Placement]
    static: Placement

    @property
    def imbalance(self) -> np.ndarray:
        """(steps,) max / mean device load, rebalanced."""
        return np.divide(self.max_load, self.mean_load, out=np.ones_like(self.max_load), where=self.mean_load > 0)

    @property
    def static_imbalance(self) -> np.ndarray:
        """(steps,) max / mean device load, static."""
        return np.divide(self.static_max_load, self.mean_load, out=np.ones_like(self.max_load),
                         where=self.mean_load > 0)

    @property
    def total_bytes_moved(self) -> float:
        """The sum of bytes_moved."""
        return float(sum(self.bytes_moved))

    def summary(self) -> dict:
        """Means over the stream: imbalance rebalanced vs static, rebalances, bytes moved."""
        return {"steps": int(self.max_load.size), "mean_imbalance": float(self.imbalance.mean()),
                "static_mean_imbalance": float(self.static_imbalance.mean()),
                "rebalances": len(self.rebalance_steps), "total_bytes_moved": self.total_bytes_moved}

    def __repr__(self) -> str:
        s = self.summary()
        return (f"RebalanceResult({s['steps']} steps: imbalance {s['mean_imbalance']:.3f} vs static "
                f"{s['static_mean_imbalance']:.3f}; {s['rebalances']} rebalances moving "
                f"{s['total_bytes_moved'] / 1e9:.3f} GB)")


def _batch_load(batch, E: Optional[int], step: int) -> np.ndarray:
    a = np.asarray(batch)
    if a.ndim == 1 and a.dtype.kind in "fiu":
        load = a.astype(np.float64)
        if E is not None and load.size != E:
            raise ValueError(f"batches[{step}]: a load of {load.size} experts, expected {E}")
        if not np.isfinite(load).all() or (load < 0).any():
            raise ValueError(f"batches[{step}]: loads must be finite and >= 0")
        return load
    if a.ndim == 2 and a.dtype.kind in "iu":
        if E is None:
            raise ValueError("num_experts is needed when batches are (T, K) expert arrays")
        if a.size and (a.min() < 0 or a.max() >= E):
            raise ValueError(f"batches[{step}]: expert ids must be in [0, {E}), got [{a.min()}, {a.max()}]")
        return np.bincount(a.reshape(-1).astype(np.int64), minlength=E).astype(np.float64)
    raise ValueError(f"batches[{step}]: expected a (T, K) int array of experts or an (E,) load, got "
                     f"{a.dtype} {a.shape}")


def rebalance_stream(batches: Iterable, num_devices: int, *, every: int = 1, policy: str = "eplb",
                     num_replicas: int = 0, num_nodes: int = 1, num_groups: Optional[int] = None,
                     expert_bytes: float = 1.0, num_experts: Optional[int] = None, ema: Optional[float] = None,
                     initial_load=None) -> RebalanceResult:
    """Run a stream of batches (each a (T, K) int array of routed experts, with num_experts, or an (E,) load)
    on num_devices devices, re-placing the experts with place_experts(policy, num_replicas, num_nodes,
    num_groups) after every `every` steps; the new placement serves the following steps.

    The load estimate is the load seen since the last rebalance (default) or, with ema = a in (0, 1], an
    exponential moving average updated each step (estimate = a x batch + (1 - a) x estimate), kept across
    rebalances. The first placement, and the static one kept for the whole stream for comparison, come from
    initial_load (default uniform: no knowledge of the load). expert_bytes: the weights of one expert, for
    bytes_moved (see moved_bytes).
    """
    D = _check_int(num_devices, "num_devices")
    every = _check_int(every, "every")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    if ema is not None and not (isinstance(ema, (int, float)) and 0 < ema <= 1):
        raise ValueError(f"ema must be in (0, 1], got {ema!r}")
    if not (isinstance(expert_bytes, (int, float)) and math.isfinite(expert_bytes) and expert_bytes >= 0):
        raise ValueError(f"expert_bytes must be a finite number >= 0, got {expert_bytes!r}")
    E = None if num_experts is None else _check_int(num_experts, "num_experts")
    place = dict(num_devices=D, num_nodes=num_nodes, num_replicas=num_replicas, policy=policy,
                 num_groups=num_groups)
    it = iter(batches)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("batches is empty") from None
    load0 = _batch_load(first, E, 0)
    E = load0.size
    init = np.ones(E) if initial_load is None else np.asarray(initial_load, np.float64)
    if init.shape != (E,):
        raise ValueError(f"initial_load must have shape ({E},), got {init.shape}")
    static = place_experts(init, **place)
    current = static
    max_load, mean_load, static_max = [], [], []
    steps, moved, placements = [], [], [static]
    seen = np.zeros(E)  # the load estimate
    step, load = 0, load0
    while True:
        dl = current.device_load(load)  # (D,)
        max_load.append(dl.max())
        mean_load.append(dl.mean())
        static_max.append(static.device_load(load).max())
        seen = seen + load if ema is None else (load if step == 0 else ema * load + (1 - ema) * seen)
        try:
            load = _batch_load(next(it), E, step + 1)
        except StopIteration:
            break
        if (step + 1) % every == 0:
            new = place_experts(seen, **place)
            steps.append(step + 1)
            moved.append(moved_bytes(current, new, expert_bytes))
            placements.append(new)
            current = new
            if ema is None:
                seen = np.zeros(E)
        step += 1
    return RebalanceResult(np.array(max_load), np.array(mean_load), np.array(static_max), steps, moved,
                           placements, static)

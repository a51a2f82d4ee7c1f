"""The two building blocks of every placement policy: replicate the hottest experts, pack items into bins.

Both loop over experts or physical experts (hundreds to a few thousand), never over tokens; each step is a
NumPy operation over the bins. Ties break to the lower index (deterministic).
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def replicate_hottest(load: np.ndarray, num_slots: int, max_per_expert: int) -> np.ndarray:
    """(E,) replica counts filling `num_slots` physical slots: every expert once, then each extra slot to the
    expert with the largest load per replica (EPLB's replicate step), at most `max_per_expert` each."""
    load = np.asarray(load, dtype=np.float64)  # (E,)
    E = load.size
    counts = np.ones(E, np.int64)
    if num_slots < E:
        raise ValueError(f"{num_slots} physical slots for {E} experts")
    if num_slots > E * max_per_expert:
        raise ValueError(f"{num_slots - E} replicas need more than {max_per_expert} copies of an expert")
    per_replica = load.copy()
    for _ in range(num_slots - E):
        e = int(np.argmax(np.where(counts < max_per_expert, per_replica, -np.inf)))
        counts[e] += 1
        per_replica[e] = load[e] / counts[e]
    return counts


def pack(weights: np.ndarray, item_expert: np.ndarray, num_bins: int, per_bin: int, *,
         coactivation: Optional[np.ndarray] = None, slack: float = 0.1,
         fixed: Optional[np.ndarray] = None) -> np.ndarray:
    """(n,) bin of each item: items by weight descending (stable), each onto the least-loaded bin that has a
    free slot (of `per_bin`) and does not already hold a replica of the same expert (longest processing time;
    EPLB's balanced packing with the one-replica-per-bin rule). n <= num_bins * per_bin.

    With `coactivation` (E, E): among the allowed bins whose load would stay within (1 + slack) x the mean bin
    load, the one whose experts co-activate most with the item's expert (ties: least loaded); if none is that
    light, the least-loaded allowed bin.
    fixed (n,): a bin for some items (-1 for the others), placed first; the others are packed around them.
    When every free bin already holds the item's expert, an item of a full bin that the free bin may take is
    moved there and the new item takes its place (always possible: a free bin holds fewer experts than a full
    one).
    """
    weights = np.asarray(weights, dtype=np.float64)  # (n,)
    item_expert = np.asarray(item_expert, dtype=np.int64)  # (n,)
    n = weights.size
    if n > num_bins * per_bin:
        raise ValueError(f"{n} items do not fit in {num_bins} bins of {per_bin}")
    load = np.zeros(num_bins)  # (bins,)
    fill = np.zeros(num_bins, np.int64)
    holds = [set() for _ in range(num_bins)]  # experts in each bin
    items = [[] for _ in range(num_bins)]  # items in each bin
    where = np.full(n, -1, np.int64)
    target = weights.sum() / num_bins
    affinity = None
    if coactivation is not None:
        coactivation = np.asarray(coactivation, dtype=np.float64)
        affinity = np.zeros((num_bins, coactivation.shape[0]))  # (bins, E) co-activation with each bin
    free = np.arange(n)
    if fixed is not None:
        fixed = np.asarray(fixed, np.int64)
        for i in np.flatnonzero(fixed >= 0):
            b, e = int(fixed[i]), int(item_expert[i])
            if fill[b] >= per_bin or e in holds[b]:
                raise ValueError(f"fixed: bin {b} is full or already holds expert {e}")
            items[b].append(int(i))
            holds[b].add(e)
            load[b] += weights[i]
            fill[b] += 1
            where[i] = b
            if affinity is not None:
                affinity[b] += coactivation[e]
        free = np.flatnonzero(fixed < 0)
    for i in free[np.argsort(-weights[free], kind="stable")]:
        e, w = int(item_expert[i]), weights[i]
        allowed = fill < per_bin
        for b in np.flatnonzero(allowed):
            if e in holds[b]:
                allowed[b] = False
        if not allowed.any():  # every free bin holds e: swap an item of a full bin into a free one
            x = int(np.flatnonzero(fill < per_bin)[0])
            b, j = next((b, j) for b in range(num_bins) if e not in holds[b]
                        for j in items[b] if int(item_expert[j]) not in holds[x])
            f = int(item_expert[j])
            items[b].remove(j)
            holds[b].discard(f)
            load[b] -= weights[j]
            items[x].append(j)
            holds[x].add(f)
            load[x] += weights[j]
            fill[x] += 1
            fill[b] -= 1
            where[j] = x
            if affinity is not None:
                affinity[b] -= coactivation[f]
                affinity[x] += coactivation[f]
        else:
            masked = np.where(allowed, load, np.inf)
            b = int(np.argmin(masked))
            if affinity is not None:
                light = allowed & (load + w <= (1.0 + slack) * target + 1e-12)
                if light.any():
                    score = np.where(light, affinity[:, e], -np.inf)
                    best = light & (score == score.max())
                    b = int(np.argmin(np.where(best, load, np.inf)))
        items[b].append(int(i))
        holds[b].add(e)
        load[b] += w
        fill[b] += 1
        where[i] = b
        if affinity is not None:
            affinity[b] += coactivation[e]
    return where

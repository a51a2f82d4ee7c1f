"""moepy.sim at scale: 1M tokens x top-8 over 1,024 experts on 2,048 devices (256 nodes of 8).

Spec: routing drawn from a Zipf(0.8) popularity (distinct experts per token; drawing it is not timed), a
placement with 3,072 replicas (two physical experts per device) by eplb_global and round_robin, then
moepy.sim.dispatch with a node limit and a capacity factor: the median of 3 runs (seconds) and the report.
Goal: a few seconds. Usage: python benchmarks/bench_sim.py [--tokens N] [--repeats R]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from common import machine_info, print_table, write_json
from moepy.sim import dispatch, load_from_experts, place_experts


def distinct_draws(T: int, K: int, p: np.ndarray, rng) -> np.ndarray:
    """(T, K) experts drawn from p, redrawing a slot until each row's experts are distinct (vectorised)."""
    cdf = np.cumsum(p)
    cdf[-1] = 1.0
    out = np.searchsorted(cdf, rng.random((T, K)))
    while True:
        s = np.sort(out, axis=1)
        dup_rows = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(1))
        if not dup_rows.size:
            return out
        sub = out[dup_rows]
        srt = np.argsort(sub, axis=1, kind="stable")
        ss = np.take_along_axis(sub, srt, 1)
        dup = np.zeros_like(ss, bool)
        dup[:, 1:] = ss[:, 1:] == ss[:, :-1]
        cols = srt[dup]
        rows = np.nonzero(dup)[0]
        sub[rows, cols] = np.searchsorted(cdf, rng.random(rows.size))
        out[dup_rows] = sub


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=1 << 20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    T, K, E, D, N, R = args.tokens, 8, 1024, 2048, 256, 3072
    rng = np.random.default_rng(0)
    p = rng.permutation(1.0 / np.arange(1, E + 1) ** 0.8)
    p /= p.sum()
    experts = distinct_draws(T, K, p, rng)
    load = load_from_experts(experts, E)
    rows, results = [], {}
    for policy in ("eplb_global", "round_robin"):
        t0 = time.perf_counter()
        pl = place_experts(load, D, N, R, policy)
        place_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            rep = dispatch(experts, pl, None, 7168 * 2, node_limit=4, capacity_factor=1.25)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        results[policy] = {"place_s": place_s, "dispatch_s": med, "dispatch_runs_s": times, **rep.to_dict()}
        rows.append((policy, f"{place_s:.3f}", f"{med:.2f}", f"{rep.imbalance:.3f}", f"{rep.jain:.4f}",
                     f"{rep.nodes_per_token_mean:.2f}", f"{rep.inter_node_bytes / 1e9:.1f}",
                     f"{1e3 * rep.step_time():.2f}"))
        print(rep)
    print(f"\n{T:,} tokens x top-{K} over {E} experts (+{R} replicas) on {D} devices in {N} nodes")
    print_table(["policy", "place s", "dispatch s", "max/mean", "Jain", "nodes/token", "inter GB", "step ms"], rows)
    info = machine_info()
    print(f"machine: {info['cpu_model']}, {info['cpu_count']} cores (NumPy {info['numpy']})")
    write_json("bench_sim", {"machine": info, "tokens": T, "top_k": K, "experts": E, "devices": D, "nodes": N,
                             "replicas": R, "results": results})


if __name__ == "__main__":
    main()

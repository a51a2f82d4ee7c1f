"""The fixed cost of a decode step: what a token costs when the weights are so small that reading them is free.

Random-weight models of a preset's design at hidden size 64 (vocabulary 128) with 1, 2 and 9 layers decode one
token at a time from an 8-token prompt; the step time's slope over the layer count is the fixed cost per decoder
layer (Python, NumPy and the kernel calls' entry), the intercept what a step costs outside the layers (embedding,
final norm, head, the step's masks and positions). At full width these are what a step adds to its bandwidth bound.

    python benchmarks/bench_overhead.py [--presets olmoe-1b-7b qwen3-30b-a3b] [--threads 1] [--json]
"""
import argparse
import time

import numpy as np

import common
from moepy import _ops
from moepy.configs import presets
from moepy.nn import MoEModel

LAYERS = (1, 2, 9)


def step_seconds(model, steps: int = 64) -> float:
    """Seconds per one-token decode step after an 8-token prefill (one pass)."""
    cache = model.new_cache(capacity=8 + steps)
    model(np.arange(8)[None], cache=cache, logits_to_keep=1)
    t0 = time.perf_counter()
    for i in range(steps):
        model(np.array([[i % model.vocab_size]]), cache=cache, logits_to_keep=1)
    return (time.perf_counter() - t0) / steps


def best_step_seconds(models, repeats: int = 15) -> list:
    """The best of `repeats` passes for each model, the models taking turns (a noisy neighbour slows all alike)."""
    best = [float("inf")] * len(models)
    for _ in range(repeats):
        for i, m in enumerate(models):
            best[i] = min(best[i], step_seconds(m))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["olmoe-1b-7b", "qwen3-30b-a3b", "deepseek-v3", "gpt-oss-20b"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    _ops.set_num_threads(args.threads)
    rows = []
    for name in args.presets:
        t = best_step_seconds([MoEModel.from_config(presets.get(name).scaled(num_layers=L), seed=0, std=0.2)
                               for L in LAYERS])
        slope, intercept = np.polyfit(LAYERS, t, 1)
        rows.append({"preset": name, **{f"step us L={L}": 1e6 * s for L, s in zip(LAYERS, t)},
                     "us per layer": 1e6 * slope, "us per step outside layers": 1e6 * intercept})
    common.print_table(list(rows[0].keys()), [[f"{v:.0f}" if isinstance(v, float) else v for v in r.values()]
                                              for r in rows])
    if args.json:
        print("wrote", common.write_json("bench_overhead", {"machine": common.machine_info(), "threads": args.threads,
                                                            "rows": rows}))


if __name__ == "__main__":
    main()

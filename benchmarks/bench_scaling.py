"""How an MoE layer's cost scales: with tokens, with active experts, with the total number of experts, and one call
of a million tokens.

    python benchmarks/bench_scaling.py [--json] [--plot benchmarks/results/scaling.png]

Layer: softmax top-k routing + routed SwiGLU experts, H 256, I 128, bf16 weights (moepy.MoELayer.random), 2 threads.
Sweeps (median of 3 calls after one warm-up): T = 64 .. 65,536 at E 64, k 4 (time per token should be flat);
k = 1 .. 16 at E 256, T 4,096 (time per token per active expert flat); E = 8 .. 1,024 at k 4, T 4,096 (the active
work is fixed; what grows is the weight traffic once an expert gets few rows: the bound is the read bandwidth over
all the experts' bytes, printed beside); then one call of 1,048,576 tokens (E 64, k 2) and routing 1,048,576 tokens
over 256 experts. The machine's limits are measured in the same run: read bandwidth (common.measure_bandwidth).
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from common import machine_info, measure_bandwidth, print_table, write_json  # noqa: E402

H, I = 256, 128


def layer(E: int, k: int):
    import moepy
    return moepy.MoELayer.random(moepy.RouterConfig(top_k=k, num_experts=E), H, I, seed=E * 31 + k,
                                 dtype="bfloat16")


def timed(fn, repeat: int = 3) -> float:
    fn()
    return statistics.median(_once(fn) for _ in range(repeat))


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", help="write the three curves as a PNG (matplotlib)")
    args = ap.parse_args(argv)
    import moepy
    moepy.set_num_threads(2)
    bw = measure_bandwidth()["gb_per_s"]
    rng = np.random.default_rng(0)
    out = {"bandwidth_gb_s": bw, "tokens": [], "active": [], "experts": []}
    m = layer(64, 4)
    for T in (64, 256, 1024, 4096, 16384, 65536):
        x = rng.standard_normal((T, H)).astype(np.float32)
        s = timed(lambda: m(x))
        out["tokens"].append({"T": T, "seconds": s, "us_per_token": 1e6 * s / T})
    x = rng.standard_normal((4096, H)).astype(np.float32)
    for k in (1, 2, 4, 8, 16):
        m = layer(256, k)
        s = timed(lambda: m(x))
        out["active"].append({"k": k, "seconds": s, "us_per_token_per_expert": 1e6 * s / (4096 * k)})
    for E in (8, 32, 128, 512, 1024):
        m = layer(E, 4)
        s = timed(lambda: m(x))
        nbytes = m.nbytes()["routed"]
        touched = min(E, 4096 * 4) / E  # every expert gets rows at this T
        out["experts"].append({"E": E, "seconds": s, "us_per_token": 1e6 * s / 4096, "expert_MB": nbytes / 1e6,
                               "weights_read_bound_s": touched * nbytes / (bw * 1e9)})
    m = x = None  # free them before the million-token call
    big = layer(64, 2)
    xb = rng.standard_normal((1 << 20, H)).astype(np.float32)
    s = _once(lambda: big(xb))
    out["million_tokens"] = {"T": 1 << 20, "E": 64, "k": 2, "seconds": s, "us_per_token": 1e6 * s / (1 << 20)}
    xb = None
    logits = rng.standard_normal((1 << 20, 256)).astype(np.float32)
    cfg = moepy.RouterConfig(top_k=8, num_experts=256)
    s = timed(lambda: moepy.route(logits, cfg), 2)
    out["route_million"] = {"T": 1 << 20, "E": 256, "k": 8, "seconds": s, "logits_GB_per_s": logits.nbytes / s / 1e9}
    print(f"read bandwidth {bw:.1f} GB/s; layer H {H}, I {I}, bf16 experts, 2 threads")
    print_table(["T", "ms", "us / token"], [[r["T"], f"{1e3 * r['seconds']:.2f}", f"{r['us_per_token']:.3f}"]
                                            for r in out["tokens"]])
    print_table(["k (E 256, T 4096)", "ms", "us / token / expert"],
                [[r["k"], f"{1e3 * r['seconds']:.2f}", f"{r['us_per_token_per_expert']:.3f}"] for r in out["active"]])
    print_table(["E (k 4, T 4096)", "ms", "us / token", "expert MB", "bound: read all experts (ms)"],
                [[r["E"], f"{1e3 * r['seconds']:.2f}", f"{r['us_per_token']:.3f}", f"{r['expert_MB']:.0f}",
                  f"{1e3 * r['weights_read_bound_s']:.2f}"] for r in out["experts"]])
    mt, rt = out["million_tokens"], out["route_million"]
    print(f"one call of {mt['T']:,} tokens (E 64, k 2): {mt['seconds']:.2f} s, {mt['us_per_token']:.3f} us / token")
    print(f"routing {rt['T']:,} tokens over 256 experts (top-8): {rt['seconds']:.3f} s "
          f"({rt['logits_GB_per_s']:.1f} GB/s of logits)")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(1, 3, figsize=(13, 3.4))
        ax[0].semilogx([r["T"] for r in out["tokens"]], [r["us_per_token"] for r in out["tokens"]], "o-")
        ax[0].set_xlabel("tokens T (E 64, k 4)"); ax[0].set_ylabel("us per token")
        ax[1].plot([r["k"] for r in out["active"]], [r["us_per_token_per_expert"] for r in out["active"]], "o-")
        ax[1].set_xlabel("active experts k (E 256, T 4096)"); ax[1].set_ylabel("us per token per active expert")
        ax[2].semilogx([r["E"] for r in out["experts"]], [1e3 * r["seconds"] for r in out["experts"]], "o-",
                       label="moepy")
        ax[2].semilogx([r["E"] for r in out["experts"]], [1e3 * r["weights_read_bound_s"] for r in out["experts"]],
                       "k:", label="reading every expert once")
        ax[2].set_xlabel("experts E (k 4, T 4096)"); ax[2].set_ylabel("ms per call"); ax[2].legend()
        for a in ax:
            a.set_ylim(bottom=0)
            a.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    if args.json:
        write_json(f"bench_scaling_{datetime.date.today()}", {"machine": machine_info(), **out})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dense projection and grouped-FFN GEMM rate: moepy linear (fp32 / bf16 weights, K = N = 2048) at T = 1, 64, 512,
small projections at T = 1 (N = 64 .. 1024 outputs, K 2048: routers, narrow heads, one tile per few panels), and
an OLMoE-shaped MoELayer (E 64, top-8, H 2048, I 1024) at T = 1 and 512, against numpy x @ W.T in the same run.

Each measurement is short: best of --repeats timed calls (each call at least ~50 ms of work is not enforced;
small T repeats the call in a loop of --inner). T = 1 rows also print GB/s of weights read.
Usage: python benchmarks/bench_linear.py [--threads 2] [--repeats 7] [--no-moe] [--isa avx512]
"""
import argparse
import time

import numpy as np

import moepy
from moepy import RouterConfig
from moepy.moe import MoELayer
from moepy.nn.layers import Linear


def best(fn, repeats, inner):
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t0) / inner)
    return min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-moe", action="store_true")
    ap.add_argument("--isa", default=None)
    ap.add_argument("--tokens", default="1,64,512")
    a = ap.parse_args()
    moepy.set_num_threads(a.threads)
    if a.isa:
        moepy.set_isa(a.isa)
    rng = np.random.default_rng(0)
    K = N = 2048
    W = rng.standard_normal((N, K), dtype=np.float32) * 0.02
    lin = {"fp32": Linear(W), "bf16": Linear((W.view(np.uint32) >> 16).astype(np.uint16))}
    for T in [int(t) for t in a.tokens.split(",")]:
        x = rng.standard_normal((T, K), dtype=np.float32)
        inner = max(1, 256 // T)
        fl = 2.0 * T * K * N
        tn = best(lambda: x @ W.T, a.repeats, inner)
        row = f"linear T={T:4d}: numpy {fl / tn / 1e9:6.1f} GF/s"
        for name, L in lin.items():
            t = best(lambda: L(x), a.repeats, inner)
            row += f" | {name} {fl / t / 1e9:6.1f} GF/s {t * 1e3:7.3f} ms"
            if T == 1:
                row += f" {L.nbytes / t / 1e9:5.1f} GB/s"
        print(row, flush=True)
    for n in (64, 256, 1024):  # small projections at T = 1: microseconds, against numpy's GEMV on the same weights
        Ws = np.ascontiguousarray(W[:n])
        small = {"fp32": Linear(Ws), "bf16": Linear((Ws.view(np.uint32) >> 16).astype(np.uint16))}
        x = rng.standard_normal((1, K), dtype=np.float32)
        tn = best(lambda: x @ Ws.T, a.repeats, 200)
        row = f"linear N={n:4d} T=1: numpy {tn * 1e6:6.1f} us"
        for name, L in small.items():
            t = best(lambda: L(x), a.repeats, 200)
            row += f" | {name} {t * 1e6:6.1f} us ({tn / t:4.2f}x numpy)"
        print(row, flush=True)
    if a.no_moe:
        return
    H, I, E, k = 2048, 1024, 64, 8
    for dt in ["float32", "bfloat16"]:
        layer = MoELayer.random(RouterConfig.olmoe(E, k) if hasattr(RouterConfig, "olmoe") else RouterConfig.mixtral(E, k),
                                H, I, seed=0, dtype=dt)
        bpw = 4 if dt == "float32" else 2
        for T in (1, 512):
            x = rng.standard_normal((T, H), dtype=np.float32)
            _, r = layer(x, return_routing=True)
            hit = len(np.unique(r.experts))
            t = best(lambda: layer(x), a.repeats if T > 1 else 3 * a.repeats, 1 if T > 1 else 20)
            fl = 2.0 * 3 * H * I * k * T
            by = hit * 3 * H * I * bpw
            print(f"MoE {dt:8s} T={T:4d}: {fl / t / 1e9:6.1f} GF/s  {t * 1e3:8.3f} ms  weights {by / t / 1e9:5.1f} GB/s"
                  f" ({hit} experts)", flush=True)
        layer = None  # freed before the next dtype


if __name__ == "__main__":
    main()

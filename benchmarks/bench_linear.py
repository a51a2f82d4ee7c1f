"""Dense projection and grouped-FFN GEMM rate: moepy linear (fp32 / bf16 weights, K = N = 2048) at T = 1, 64, 512,
small projections at T = 1 (N = 64 .. 1024 outputs, K 2048: routers, narrow heads, one tile per few panels), and
an OLMoE-shaped MoELayer (E 64, top-8, H 2048, I 1024) at T = 1 and 512, against numpy x @ W.T in the same run.

Each measurement is short: best of --repeats timed calls (each call at least ~50 ms of work is not enforced;
small T repeats the call in a loop of --inner). T = 1 rows also print GB/s of weights read.

--int FORMATS (e.g. int8,int4,int4_nl): instead, one-token (decode) streaming of INT weights from DRAM against the
read bandwidth measured in the same run (common.measure_bandwidth, before and after; mean): the linears of an OLMoE
decode step (lm_head 50304 x 2048, fused q/k/v 6144 x 2048, o 2048 x 2048; the small ones as enough copies to pass
the last-level cache, called in turn) and an OLMoE-shaped INT MoELayer at T = 1 whose 64 inputs route at random
(the 8 experts' weights read from DRAM; bytes = 8 experts + the router). Median GB/s of --repeats rounds.
Usage: python benchmarks/bench_linear.py [--threads 2] [--repeats 7] [--no-moe] [--isa avx512] [--int int8,int4]
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
    ap.add_argument("--int", default=None, help="INT formats for the one-token streaming rows instead")
    a = ap.parse_args()
    moepy.set_num_threads(a.threads)
    if a.isa:
        moepy.set_isa(a.isa)
    if a.int:
        return int_decode(a.int.split(","), a.repeats)
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


LAST_LEVEL_CACHE = 64 << 20  # bytes a set of copies must exceed so that each call reads DRAM (L3 here: 32-105 MB)


def median_rate(calls, nbytes, repeats) -> float:
    """GB/s of `nbytes` per call over rounds of the calls in turn: the median of `repeats` rounds after one warm-up."""
    rates = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        for call in calls:
            call()
        rates.append(nbytes * len(calls) / (time.perf_counter() - t0) / 1e9)
    return float(np.median(rates[1:]))


def int_decode(formats, repeats):
    """One-token INT linears and an INT MoE layer: GB/s of weights and the fraction of the read bandwidth."""
    from common import measure_bandwidth, print_table
    rng = np.random.default_rng(0)
    H, I, E, k = 2048, 1024, 64, 8
    bw_before = measure_bandwidth(512, 3)["gb_per_s"]
    rows = []
    for fmt in formats:
        for name, N in (("lm_head", 50304), ("q/k/v", 6144), ("o", 2048)):
            one = Linear(rng.standard_normal((N, H), dtype=np.float32) * 0.02).quantized(fmt, 32)
            copies = max(1, -(-LAST_LEVEL_CACHE // one.nbytes))
            linears = [one] + [Linear(rng.standard_normal((N, H), dtype=np.float32) * 0.02).quantized(fmt, 32)
                               for _ in range(copies - 1)]
            x = rng.standard_normal((1, H), dtype=np.float32)
            rate = median_rate([lambda L=L: L(x) for L in linears], one.nbytes, repeats)
            rows.append([fmt, f"linear {name} {N} x {H}", f"{one.nbytes / 1e6:.1f} MB", copies, rate])
            linears = one = None
        layer = MoELayer.random(RouterConfig.olmoe(E, k), H, I, seed=0).quantize(fmt, 32)
        nb = layer.nbytes()
        active = k * nb["per_expert"] + nb["router"]
        xs = [rng.standard_normal((1, H), dtype=np.float32) for _ in range(64)]
        rate = median_rate([lambda x=x: layer(x) for x in xs], active, repeats)
        rows.append([fmt, f"MoE layer T=1 E {E} top-{k}", f"{active / 1e6:.1f} MB", "64 inputs", rate])
        layer = None
    bw = (bw_before + measure_bandwidth(512, 3)["gb_per_s"]) / 2
    print(f"read bandwidth {bw:.1f} GB/s (mean of before and after), {moepy.get_num_threads()} threads")
    print_table(["format", "what", "bytes / call", "copies", "GB/s", "of bandwidth"],
                [r[:4] + [f"{r[4]:.1f}", f"{r[4] / bw:.2f}"] for r in rows])


if __name__ == "__main__":
    main()

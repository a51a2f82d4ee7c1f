"""Attention core of one OLMoE layer (16 heads of 128, MHA) over a KV cache of 512 tokens: a decode step (T = 1) and
a causal prefill (T = 512), and a decode step of Qwen3-30B-A3B's grouped-query attention (32 query heads over 4
key/value heads) at 4,096 cached tokens, the C kernel _ops.attention against the NumPy path moepy used before it (BLAS matmuls +
an additive finfo.min mask + a float32 softmax, copied here as the peer). Keys and values are slices of a larger
cache buffer, as the KV cache passes them.

    python benchmarks/bench_attention.py [--reps 30] [--threads 1 2]      prints a table, writes results/attention.json
"""
import argparse
import json
import os
import time

import numpy as np

from moepy import _ops
from moepy.nn.attention import build_allowed

NEG = np.float32(np.finfo(np.float32).min)


def softmax(s):
    """float32 softmax over the last axis, in place (the NumPy path before the kernel)."""
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def build_mask(start, T, valid, pad, window, chunk):
    """transformers' additive eager mask: 0 where build_allowed, finfo.min elsewhere."""
    return np.where(build_allowed(start, T, valid, pad, window, chunk), np.float32(0.0), NEG).astype(np.float32)


def numpy_core(q, K, V, mask, scale):
    """the GQAAttention path before the kernel: q (B, T, Hq, D) -> (B, T, Hq * D)"""
    B, T, Hq, D = q.shape
    Hkv = K.shape[1]
    g = Hq // Hkv
    qh = np.ascontiguousarray(q.reshape(B, T, Hkv, g, D).transpose(0, 2, 3, 1, 4)).reshape(B, Hkv, g * T, D)
    scores = np.matmul(qh, K.transpose(0, 1, 3, 2)).reshape(B, Hkv, g, T, -1)
    scores *= np.float32(scale)
    scores += mask[:, None, None]
    probs = softmax(scores)
    out = np.matmul(np.ascontiguousarray(probs).reshape(B, Hkv, g * T, -1), V)
    return out.reshape(B, Hkv, g, T, D).transpose(0, 3, 1, 2, 4).reshape(B, T, Hq * D)


def kernel_core(q, K, V, allowed, scale):
    B, T, Hq, D = q.shape
    return _ops.attention(q.transpose(0, 2, 1, 3), K, V, allowed, scale).transpose(0, 2, 1, 3).reshape(B, T, Hq * D)


def best(f, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    D = 128
    rows = []
    print(f"{'case':22s} {'threads':>7s} {'numpy ms':>9s} {'kernel ms':>9s} {'speedup':>7s} {'max |diff|':>10s}")
    cases = [("decode S=512", 1, 512, 16, 16, args.reps), ("prefill T=512", 512, 512, 16, 16, max(3, args.reps // 10)),
             ("GQA 32/4 decode S=4096", 1, 4096, 32, 4, args.reps)]  # OLMoE's 16 heads; Qwen3-30B-A3B's 32 over 4
    for name, T, S, Hq, Hkv, reps in cases:
        store = rng.standard_normal((2, 1, Hkv, S + 512, D), dtype=np.float32)
        K, V = store[0, :, :, :S], store[1, :, :, :S]  # (1, Hkv, S, D) views, as the cache returns
        q = rng.standard_normal((1, T, Hq, D), dtype=np.float32)
        valid, pad = np.ones((1, S), bool), np.zeros(1, np.int64)
        mask, allowed = build_mask(S - T, T, valid, pad, 0, 0), build_allowed(S - T, T, valid, pad, 0, 0)
        diff = float(np.abs(numpy_core(q, K, V, mask, D ** -0.5) - kernel_core(q, K, V, allowed, D ** -0.5)).max())
        for nt in args.threads:
            old = _ops.get_num_threads()
            _ops.set_num_threads(nt)  # the kernel's threads; numpy's BLAS keeps its own setting
            tn = best(lambda: numpy_core(q, K, V, mask, D ** -0.5), reps)
            tk = best(lambda: kernel_core(q, K, V, allowed, D ** -0.5), reps)
            _ops.set_num_threads(old)
            rows.append(dict(case=name, T=T, S=S, heads=Hq, kv_heads=Hkv, head_dim=D, threads=nt, numpy_ms=tn * 1e3,
                             kernel_ms=tk * 1e3, max_abs_diff=diff))
            print(f"{name:22s} {nt:7d} {tn * 1e3:9.3f} {tk * 1e3:9.3f} {tn / tk:7.2f} {diff:10.1e}")
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "attention.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

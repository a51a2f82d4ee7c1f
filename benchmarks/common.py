"""Timing and machine-limit helpers shared by the moepy benchmarks (bench_routing.py, bench_moe.py, ...).

- time_interleaved: median seconds per call of several functions, sampled alternately so machine
  drift (this is a shared VM) hits all of them alike.
- measure_bandwidth / measure_gemm_rate: the machine's memory read bandwidth and BLAS GEMM rate,
  from which a lower bound on an MoE layer's time is computed.
- machine_info, write_json, format_seconds, print_table: reporting.
"""
from __future__ import annotations

import datetime
import gc
from dataclasses import dataclass
import importlib.metadata
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ---- timing ----
def calls_per_sample(fn: Callable[[], object], min_sample_s: float) -> int:
    """How many back-to-back calls of fn take at least min_sample_s (doubling from 1; also warms fn up)."""
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_sample_s:
            return calls
        # jump close to the target, at most x16 at a time, so a noisy fast first call cannot overshoot wildly
        calls *= int(min(16, max(2, 1.2 * min_sample_s / max(elapsed, 1e-9))))


def sample_interleaved(fns: Sequence[Callable[[], object]], min_sample_s: float = 0.02,
                       repeats: int = 15, warmup_s: float = 0.05) -> list[list[float]]:
    """Per function, `repeats` samples of seconds per call. Each sample times enough calls to last
    >= min_sample_s; the functions take turns (A B, B A, A B, ...) so drift hits all of them."""
    for fn in fns:  # warm up: caches, lazy initialisation, thread pools
        deadline = time.perf_counter() + warmup_s
        while time.perf_counter() < deadline:
            fn()
    calls = [calls_per_sample(fn, min_sample_s) for fn in fns]
    return _alternating_samples(fns, calls, repeats)


def _alternating_samples(fns, calls: Sequence[int], repeats: int) -> list[list[float]]:
    """`repeats` samples per function of calls[i] calls each, functions taking turns (A B, B A, ...),
    with the garbage collector off."""
    samples: list[list[float]] = [[] for _ in fns]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rep in range(repeats):
            order = range(len(fns)) if rep % 2 == 0 else reversed(range(len(fns)))
            for i in order:
                fn, n = fns[i], calls[i]
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[i].append((time.perf_counter() - start) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def choose(ap, value: str, choices, what: str) -> list:
    """The comma-separated `value` as a list, in the order of `choices`; argparse error on an unknown one."""
    wanted = value.split(",")
    for w in wanted:
        if w not in choices:
            ap.error(f"unknown {what} {w!r}; choose from {', '.join(choices)}")
    return [c for c in choices if c in wanted]


def time_interleaved(fns: Sequence[Callable[[], object]], min_sample_s: float = 0.02,
                     repeats: int = 15) -> list[float]:
    """Median seconds per call of each function in fns (see sample_interleaved)."""
    return [statistics.median(s) for s in sample_interleaved(fns, min_sample_s, repeats)]


def sample_budgeted(fns: Sequence[Callable[[], object]], budget_s: float, min_repeats: int = 3,
                    max_repeats: int = 15, min_sample_s: float = 0.02) -> list[list[float]]:
    """Like sample_interleaved, for functions that may be slow (seconds per call): each function is called
    once to warm up and to time it (no doubling search), a sample is ceil(min_sample_s / that time) calls,
    and the number of repeats is what fits in budget_s, clamped to [min_repeats, max_repeats]."""
    first = [_elapsed(fn) for fn in fns]
    calls = [max(1, int(np.ceil(min_sample_s / max(t, 1e-9)))) for t in first]
    per_round = sum(max(t, 1e-9) * n for t, n in zip(first, calls))
    repeats = int(min(max_repeats, max(min_repeats, budget_s // per_round)))
    return _alternating_samples(fns, calls, repeats)


# ---- the layer shapes of bench_moe.py and bench_quant.py ----
@dataclass(frozen=True)
class LayerShape:
    """One MoE layer at a released model's real shape."""

    key: str          # CLI name and transformers family
    model: str
    hidden: int
    inter: int
    experts: int
    top_k: int
    shared_inter: int = 0  # width of the (fused) shared expert; 0: none

    def router(self):
        from moepy import RouterConfig
        E, k = self.experts, self.top_k
        return {"mixtral": lambda: RouterConfig.mixtral(E, k),
                "olmoe": lambda: RouterConfig.olmoe(E, k),
                "qwen3_moe": lambda: RouterConfig.qwen3_moe(E, k),
                "deepseek_v2": lambda: RouterConfig.deepseek_v2(E, k, topk_method="greedy",
                                                                routed_scaling_factor=1.0)}[self.key]()


LAYER_SHAPES = {
    "mixtral": LayerShape("mixtral", "Mixtral-8x7B", 4096, 14336, 8, 2),
    "olmoe": LayerShape("olmoe", "OLMoE-1B-7B", 2048, 1024, 64, 8),
    "qwen3_moe": LayerShape("qwen3_moe", "Qwen3-30B-A3B", 2048, 768, 128, 8),
    "deepseek_v2": LayerShape("deepseek_v2", "DeepSeek-V2-Lite", 2048, 1408, 64, 6, shared_inter=2 * 1408),
}
LAYER_TOKEN_COUNTS = (1, 8, 64, 512)


# ---- machine limits ----
def measure_bandwidth(megabytes: int = 1024, repeats: int = 5) -> dict:
    """Memory read bandwidth in GB/s (1e9 bytes/s): best of `repeats` passes over a float32 array,
    read with np.sum (one core), np.dot(a, a) (BLAS), np.dot on each half in two threads, and
    torch.sum on torch's threads: the best reader keeps both cores' load units busy, as moepy does.
    Returns {"gb_per_s": the best, "sum_gb_per_s", "dot_gb_per_s", "torch_gb_per_s", "megabytes"}."""
    a = np.ones(megabytes * 2**20 // 4, dtype=np.float32)  # np.ones writes every page (np.zeros would not)

    def best_rate(read):
        read()
        best = min(_elapsed(read) for _ in range(repeats))
        return a.nbytes / best / 1e9

    sum_rate = best_rate(lambda: a.sum())
    dot_rate = best_rate(lambda: np.dot(a, a))
    def threaded_dot():  # one np.dot per core on its own half: both cores' load units busy
        halves = [a[: a.size // 2], a[a.size // 2:]]
        workers = [threading.Thread(target=np.dot, args=(h, h)) for h in halves]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    threads_rate = best_rate(threaded_dot)
    torch_rate = 0.0
    try:
        import torch
        t = torch.from_numpy(a)
        torch_rate = best_rate(lambda: t.sum())
    except ImportError:
        pass
    return {"gb_per_s": max(sum_rate, dot_rate, threads_rate, torch_rate), "sum_gb_per_s": sum_rate,
            "dot_gb_per_s": dot_rate, "threaded_dot_gb_per_s": threads_rate, "torch_gb_per_s": torch_rate,
            "megabytes": megabytes}


def measure_gemm_rate(n: int = 2048, repeats: int = 5) -> dict:
    """float32 GEMM rate of NumPy's BLAS in GFLOP/s: best of `repeats` n x n x n matmuls (2 n^3 flops).
    Returns {"gflop_per_s", "n"}."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)
    best = min(_elapsed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return {"gflop_per_s": 2 * n**3 / best / 1e9, "n": n}


def measure_peak_rate(threads: int) -> dict:
    """The cores' arithmetic limit in G op/s on `threads` threads, {"fp32", "bf16", "int8"}: benchmarks/peak_rate.c
    (independent chains of vfmadd231ps, vdpbf16ps and vpdpbusd; 2 ops per multiply-add), compiled once with gcc
    into build/. Empty when the compiler or the CPU lacks AVX-512 with BF16 and VNNI."""
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    exe = os.path.join(os.path.dirname(here), "build", "peak_rate")
    src = os.path.join(here, "peak_rate.c")
    try:
        if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
            os.makedirs(os.path.dirname(exe), exist_ok=True)
            subprocess.run(["gcc", "-O3", "-fopenmp", "-mavx512f", "-mavx512bf16", "-mavx512vnni", src, "-o", exe],
                           check=True, capture_output=True)
        out = subprocess.run([exe, str(threads)], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {kind: float(v) for kind, _, v in (line.split() for line in out.splitlines())}


def measure_torch_gemm_rate(dtype=None, n: int = 2048, repeats: int = 5) -> dict:
    """PyTorch's GEMM rate on its current threads in G op/s (torch.mm, oneDNN / MKL; torch._int_mm for torch.int8):
    the machine's limit for a dtype NumPy's BLAS lacks (torch.bfloat16: AVX512-BF16 dot products, torch.int8: VNNI,
    where the CPU has them). dtype None: float32. Returns {"gflop_per_s", "n", "dtype"}."""
    import torch
    dtype = dtype or torch.float32
    g = torch.Generator().manual_seed(0)
    if dtype == torch.int8:
        a = torch.randint(-127, 128, (n, n), generator=g, dtype=torch.int8)
        b = torch.randint(-127, 128, (n, n), generator=g, dtype=torch.int8)
        mm = lambda: torch._int_mm(a, b)  # noqa: E731
    else:
        a = torch.randn(n, n, generator=g).to(dtype)
        b = torch.randn(n, n, generator=g).to(dtype)
        out = torch.empty(n, n, dtype=dtype)
        mm = lambda: torch.mm(a, b, out=out)  # noqa: E731
    with torch.inference_mode():
        mm()
        best = min(_elapsed(mm) for _ in range(repeats))
    return {"gflop_per_s": 2 * n**3 / best / 1e9, "n": n, "dtype": str(dtype)}


def _elapsed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---- reporting ----
def machine_info() -> dict:
    """Date, host, CPU, library versions and moepy's build (ISA, OpenMP, threads)."""
    import moepy

    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu_model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                             cpu_model)
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": version("torch"),
        "transformers": version("transformers"),
        "moepy_build": moepy.build_info(),
    }


def write_json(name: str, payload: dict) -> Path:
    """Write payload to benchmarks/results/<name>.json (creating the directory); returns the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return path


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def format_seconds(seconds: float) -> str:
    """A duration with a readable unit: '850 ns', '12.3 us', '4.56 ms', '1.23 s'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{seconds / 1e-9:.0f} ns"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows under headers, columns right-aligned to their widest cell."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    print("\n".join(lines))


def format_bytes(n: float) -> str:
    """A byte count with a decimal unit: '812 B', '4.72 MB', '5.64 GB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n:.0f} B"

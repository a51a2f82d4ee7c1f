"""INT expert layers on the AVX-512 (VNNI) kernels against the AMX ones (tile dots), one layer at prefill sizes.

    python benchmarks/bench_isa_int.py [--tokens 64 512] [--formats int8 int4 int4_nl] [--json]

Layers: OLMoE-1B-7B (64 experts, top-8, H 2048, I 1024) and Qwen3-30B-A3B (128, top-8, H 2048, I 768) MoE blocks,
random weights, groups of 32. Per format, thread count and token count: the two ISAs' times interleaved (medians),
the speed-up, and each one's integer rate (2 ops per weight x active weights x tokens) beside the cores' vpdpbusd
peak and torch's int8 GEMM (oneDNN, AMX where the CPU has it), measured in the same run. Needs a CPU with AMX for
the "amx" column (else only "avx512" runs). Both ISAs give bitwise the same outputs (checked here too).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from common import machine_info, measure_peak_rate, measure_torch_gemm_rate, print_table, time_interleaved, \
    write_json  # noqa: E402

LAYERS = {"olmoe": (64, 8, 2048, 1024), "qwen3_moe": (128, 8, 2048, 768)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--formats", nargs="+", default=["int8", "int4", "int4_nl"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import moepy
    from moepy import RouterConfig
    from moepy.moe import MoELayer
    best = moepy.build_info()["best_isa"]
    isas = ["avx512", "amx"] if best == "amx" else ["avx512"]
    peak = {t: measure_peak_rate(t).get("int8", float("nan")) for t in args.threads}
    torch_rate = {}
    try:
        import torch
        for t in args.threads:
            torch.set_num_threads(t)
            torch_rate[t] = measure_torch_gemm_rate(torch.int8)["gflop_per_s"]
    except Exception:  # torch absent or without int8 GEMM: the column stays empty
        pass
    rows, raw = [], []
    for name, (E, k, H, I) in LAYERS.items():
        base = MoELayer.random(RouterConfig.qwen3_moe(E, k) if name == "qwen3_moe" else RouterConfig.olmoe(E, k),
                               H, I, std=0.02, seed=0)
        for fmt in args.formats:
            layer = base.quantize(fmt, 32)
            for T in args.tokens:
                x = np.random.default_rng(1).standard_normal((T, H)).astype(np.float32)
                for t in args.threads:
                    moepy.set_num_threads(t)
                    outs, fns = {}, []
                    for isa in isas:
                        def run(isa=isa):
                            moepy.set_isa(isa)
                            return layer(x)
                        outs[isa] = run().tobytes()
                        fns.append(run)
                    assert len(set(outs.values())) == 1, "the ISAs disagree"
                    secs = dict(zip(isas, time_interleaved(fns, min_sample_s=0.2, repeats=5)))
                    gops = {i: 2 * 3 * H * I * k * T / s / 1e9 for i, s in secs.items()}
                    row = [name, fmt, T, t] + [f"{secs[i] * 1e3:.1f} ms" for i in isas]
                    row += [f"{secs['avx512'] / secs['amx']:.2f}x" if "amx" in secs else "-"]
                    row += [f"{gops[i]:.0f} ({100 * gops[i] / peak[t]:.0f}%)" for i in isas]
                    row += [f"{torch_rate.get(t, float('nan')):.0f}"]
                    rows.append(row)
                    raw.append({"layer": name, "format": fmt, "tokens": T, "threads": t, "seconds": secs,
                                "gop_s": gops, "vnni_peak": peak[t], "torch_int8_gemm": torch_rate.get(t)})
                    print("  " + "  ".join(map(str, row)), flush=True)
    moepy.set_isa("best")
    print(f"\nvpdpbusd peak (G op/s): {peak}; torch int8 GEMM: {torch_rate}")
    print_table(["layer", "format", "T", "threads"] + [f"{i} time" for i in isas] + ["amx speed-up"]
                + [f"{i} G op/s (% of VNNI peak)" for i in isas] + ["torch int8 GEMM G op/s"], rows)
    if args.json:
        write_json("bench_isa_int", {"machine": machine_info(), "rows": raw})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a decode step's time goes: each moepy._C entry point's microseconds per step (and GB/s of weights for the
linears and MoE layers), beside the time outside the kernels (Python, NumPy, the calls' entry), at full width.

The checkpoint is benchmarks/bench_model.py's (transformers-built, bf16 safetensors, cached in --cache-dir), loaded
with its routed experts and projections in --format (float32 / bfloat16: as loaded). --context tokens are prefilled,
then --steps one-token steps are timed twice: untimed (the step time) and with every _C call timed (the split; both
step times are printed, so what the timers add shows). Bytes: a linear reads its packed weight, an MoE layer top_k
experts + its shared expert (the router is a linear call of its own).

    python benchmarks/bench_decode_step.py [--model olmoe] [--format int4] [--context 128] [--steps 64] [--threads 2]
"""
import argparse
import collections

import numpy as np

import bench_model
import moepy
from common import measure_bandwidth, print_table
from moepy.nn import MoEModel


def call_bytes(name: str, args) -> tuple:
    """(row label, weight bytes read) of one _C call."""
    if name == "linear":
        packed = args[1]
        return f"linear N={packed.I}", packed.w_in.nbytes
    if name == "moe_forward":
        K, routed, shared = args[1].shape[1], args[4], args[5]
        per_expert = (routed.w_in.nbytes + routed.w_out.nbytes) // routed.E
        return name, K * per_expert + (0 if shared is None else shared.w_in.nbytes + shared.w_out.nbytes)
    return name, 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="olmoe", choices=sorted(bench_model.MODELS))
    ap.add_argument("--format", default="int4", choices=["float32", "bfloat16", "int8", "int4", "int4_nl"])
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default="/tmp/moepy-bench-models")
    args = ap.parse_args()
    ck = bench_model.checkpoint(args.model, argparse.Namespace(layers=2, quick=False, cache_dir=args.cache_dir))
    quantized = args.format.startswith("int")
    model = MoEModel.from_pretrained(ck, dtype="bfloat16" if quantized else args.format,
                                     quantize=args.format if quantized else None, progress=False)
    if quantized:
        model.quantize_projections(args.format, 32)
    moepy.set_num_threads(args.threads)
    ctx = np.random.default_rng(0).integers(0, model.vocab_size, args.context + 1)
    bench_model.timed_steps(model, ctx, 8)  # warm-up
    step = min(bench_model.timed_steps(model, ctx, args.steps)[0] for _ in range(3))  # a step's time, timers idle
    split = collections.defaultdict(lambda: [0.0, 0, 0])  # label -> seconds, calls, bytes

    def on_call(name, call_args, seconds):
        label, nbytes = call_bytes(name, call_args)
        entry = split[label]
        entry[0] += seconds
        entry[1] += 1
        entry[2] += nbytes
    timed_step, inside = bench_model.timed_steps(model, ctx, args.steps, on_call)
    bandwidth = measure_bandwidth(512, 3)["gb_per_s"]
    n = args.steps
    print(f"{args.model}-L2 {args.format}, {args.threads} threads, context {args.context}: step {step * 1e3:.2f} ms "
          f"({1 / step:.1f} tok/s), with timers {timed_step * 1e3:.2f} ms; read bandwidth {bandwidth:.1f} GB/s")
    rows = [[label, f"{s / n * 1e6:.1f}", f"{c / n:g}", f"{b / s / 1e9:.1f}" if b else "",
             f"{b / s / 1e9 / bandwidth:.2f}" if b else "", f"{s / n / timed_step:.1%}"]
            for label, (s, c, b) in sorted(split.items(), key=lambda kv: -kv[1][0])]
    rows.append(["outside the kernels", f"{(timed_step - inside) * 1e6:.1f}", "", "", "",
                 f"{1 - inside / timed_step:.1%}"])
    print_table(["call", "us / step", "calls / step", "GB/s", "of bandwidth", "share"], rows)


if __name__ == "__main__":
    main()

"""moepy against llama.cpp on the very same GGUF files: prefill (llama-bench pp512) and decode (tg128) tokens/s per
format and thread count, beside each engine's bandwidth bound.

    LLAMACPP_BIN=$(benchmarks/build_llamacpp.sh) python benchmarks/bench_llamacpp.py [--json] [--models olmoe qwen3_moe]

Models: the OLMoE-1B-7B and Qwen3-30B-A3B architectures at full width, 2 layers, random bf16 weights (the
checkpoints of benchmarks/bench_model.py, built with transformers and cached in --cache-dir; a byte-level tokenizer is
added so the converter runs; its vocabulary is padded to the model's). Each is converted by llama.cpp's own
convert_hf_to_gguf.py (the llama-cpp-python sdist's tree, scripts/get_llamacpp.sh) to F32, BF16 and Q8_0, and by
llama-quantize --pure to Q4_0 and IQ4_NL (every tensor in that type; by default the output tensor would be Q6_K,
which moepy does not read). moepy reads each file with MoEModel.from_pretrained(path.gguf): float32 / bf16 weights
as they are; Q8_0 / Q4_0 / IQ4_NL routed experts keep their blocks (moepy's int8 / int4 / int4_nl kernels) and the
attention and output projections are quantized to int8 / int4 / int4_nl (MoEModel.quantize_projections; the
embedding and norms stay bf16 / float32).
"BF16+bf16act" runs the BF16 file with moepy's bf16 activations for prefill (activation_precision("auto"):
AVX512-BF16 dot products, as llama.cpp computes bf16); "BF16" keeps moepy's exact fp32 activations.
Per format and thread count (--threads, default 1 2), --repeat rounds (default 3) of: llama-bench -p 512 -n 128 -r 1,
the read bandwidth (benchmarks/common.measure_bandwidth), moepy's prefill of 512 tokens (one call, logits of the last
position) and decode of 128 tokens from an empty cache. These hosts' bandwidth moves between 40 and 80 GB/s within
seconds, so the engines are compared round by round: ratios are medians of per-round ratios, and each engine's
fraction of the bandwidth bound (bytes it reads per decoded token: its non-expert tensors, top-k / E of its expert
tensors, one embedding row; the KV cache is negligible at 128 tokens) uses that round's bandwidth. Prefill ceiling:
the machine's GEMM rate in the format's arithmetic (gemm_rates) over the flops per token.
"""
from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, ROOT]
from common import machine_info, measure_bandwidth, print_table, write_json  # noqa: E402

FORMATS = ("F32", "BF16", "BF16+bf16act", "Q8_0", "Q4_0", "IQ4_NL")
FILE_FORMAT = {f: f.split("+")[0] for f in FORMATS}  # "BF16+bf16act": the BF16 file, moepy's bf16 activations
MOEPY_DTYPE = {"F32": "float32", "BF16": "bfloat16", "Q8_0": "bfloat16", "Q4_0": "bfloat16", "IQ4_NL": "bfloat16"}
MOEPY_PRECISION = {"BF16+bf16act": "auto"}  # moepy.activation_precision: bf16 for prefill, fp32 for decode
GEMM_KIND = {"F32": "fp32", "BF16": "fp32", "BF16+bf16act": "bf16", "Q8_0": "int8", "Q4_0": "int8", "IQ4_NL": "int8"}
# the attention and head projections, as the file has them
MOEPY_PROJECTIONS = {"Q8_0": "int8", "Q4_0": "int4", "IQ4_NL": "int4_nl"}
PREFILL, DECODE = 512, 128


def with_tokenizer(ckpt: str, out: str) -> str:
    """A copy of the checkpoint directory (weights linked) with the built-in mixtral's tokenizer files."""
    from moepy.eval import builtin
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(ckpt):
        dst = os.path.join(out, f)
        if not os.path.exists(dst):
            os.symlink(os.path.join(ckpt, f), dst)
    src = builtin.path("mixtral")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(src, f)) and not os.path.exists(os.path.join(out, f)):
            shutil.copy(os.path.join(src, f), os.path.join(out, f))
    return out


def gguf_files(key: str, args, bin_dir: str) -> dict:
    """{format: path} of the model's GGUF conversions (made once, cached beside the checkpoint)."""
    import bench_model
    from bench_perplexity_peers import CONVERT, NICE
    ck = bench_model.checkpoint(key, argparse.Namespace(layers=2, quick=False, cache_dir=args.cache_dir))
    src = with_tokenizer(ck, ck + "-tok")
    tree = subprocess.run([os.path.join(ROOT, "scripts", "get_llamacpp.sh")], capture_output=True, text=True,
                          check=True).stdout.strip()
    out = {}
    for fmt, outtype in (("F32", "f32"), ("BF16", "bf16"), ("Q8_0", "q8_0")):
        path = os.path.join(args.cache_dir, f"{key}-L2-{fmt}.gguf")
        if not os.path.exists(path):
            t0 = time.perf_counter()
            p = subprocess.run(NICE + [sys.executable, "-c", CONVERT, tree, src, "--outtype", outtype, "--outfile",
                                       path + ".part"], capture_output=True, text=True)
            if p.returncode:
                raise RuntimeError("convert_hf_to_gguf.py failed:\n" + (p.stdout + p.stderr)[-3000:])
            os.replace(path + ".part", path)
            print(f"  converted {key} to {fmt} in {time.perf_counter() - t0:.0f} s", flush=True)
        out[fmt] = path
    for fmt in ("Q4_0", "IQ4_NL"):
        q4 = os.path.join(args.cache_dir, f"{key}-L2-{fmt}.gguf")
        if not os.path.exists(q4):
            # --pure: every tensor in fmt (by default the output tensor becomes Q6_K, which moepy does not read)
            subprocess.run(NICE + [os.path.join(bin_dir, "llama-quantize"), "--pure", out["F32"], q4 + ".part", fmt],
                           check=True, capture_output=True)
            os.replace(q4 + ".part", q4)  # an interrupted run leaves no truncated file under the final name
        out[fmt] = q4
    return out


def llama_bytes_per_token(path: str) -> int:
    """Bytes llama.cpp reads per decoded token: every tensor but the expert stacks and the token embedding, top-k / E
    of the expert stacks, one embedding row."""
    import gguf
    r = gguf.GGUFReader(path)
    arch = str(bytes(r.fields["general.architecture"].parts[-1]), "utf-8")
    E = int(r.fields[f"{arch}.expert_count"].parts[-1][0])
    k = int(r.fields[f"{arch}.expert_used_count"].parts[-1][0])
    total = 0
    for t in r.tensors:
        nb = int(t.n_bytes)
        if "_exps" in t.name:
            total += nb * k // E
        elif t.name == "token_embd.weight":
            total += nb // int(t.shape[-1] if t.shape[-1] > t.shape[0] else t.shape[0])
        else:
            total += nb
    return total


def llama_bench(bin_dir: str, path: str, threads, repeat: int) -> dict:
    """{(test, threads): tokens/s} from llama-bench's JSON."""
    cmd = [os.path.join(bin_dir, "llama-bench"), "-m", path, "-t", ",".join(map(str, threads)), "-r", str(repeat),
           "-o", "json", "-p", str(PREFILL), "-n", str(DECODE)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"llama-bench failed: {p.stderr[-2000:]}")
    out = {}
    for row in json.loads(p.stdout):
        test = "prefill" if row["n_prompt"] else "decode"
        out[test, int(row["n_threads"])] = float(row["avg_ts"])
    return out


def gemm_rates(threads) -> dict:
    """{(kind, threads): GFLOP/s} of the libraries' GEMMs, n = 2048: float32 the better of NumPy's BLAS (threadpoolctl
    sets its threads) and torch.mm (MKL may take a slower path on AMD CPUs); bfloat16 torch.mm (oneDNN, AVX512-BF16
    dot products); int8 torch._int_mm (VNNI); and ("peak_" + kind, threads): the cores' own limit
    (common.measure_peak_rate), the ceiling of the table."""
    import torch
    from threadpoolctl import threadpool_limits
    from common import measure_gemm_rate, measure_peak_rate, measure_torch_gemm_rate
    out = {}
    for t in threads:
        for kind, v in measure_peak_rate(t).items():
            out["peak_" + kind, t] = v
        torch.set_num_threads(t)
        with threadpool_limits(limits=t, user_api="blas"):
            numpy_fp32 = measure_gemm_rate()["gflop_per_s"]
        out["fp32", t] = max(numpy_fp32, measure_torch_gemm_rate(torch.float32)["gflop_per_s"])
        out["bf16", t] = measure_torch_gemm_rate(torch.bfloat16)["gflop_per_s"]
        out["int8", t] = measure_torch_gemm_rate(torch.int8)["gflop_per_s"]
    return out


def paired_rounds(bin_dir: str, path: str, fmt: str, threads, repeat: int, vocab: int) -> tuple:
    """Per thread count, `repeat` rounds of: llama-bench (pp512 + tg128, -r 1), the read bandwidth, moepy's prefill of
    512 tokens and decode of 128. The bandwidth of these hosts moves between 40 and 80 GB/s from second to second, so
    each round pairs the two engines and the bandwidth a few seconds apart and the ratios are taken per round.
    Returns ({threads: [round dicts]}, moepy's bytes read per decoded token)."""
    import moepy
    from bench_model import active_bytes
    from moepy.nn import MoEModel
    with moepy.activation_precision(MOEPY_PRECISION.get(fmt, "fp32")):
        model = MoEModel.from_pretrained(path, dtype=MOEPY_DTYPE[FILE_FORMAT[fmt]], progress=False)
        if FILE_FORMAT[fmt] in MOEPY_PROJECTIONS:
            model.quantize_projections(MOEPY_PROJECTIONS[FILE_FORMAT[fmt]], 32)
        ids = np.random.default_rng(0).integers(0, vocab, PREFILL + DECODE)

        def prefill():
            cache = model.new_cache(1, capacity=PREFILL)
            t0 = time.perf_counter()
            model(ids[None, :PREFILL], cache=cache, logits_to_keep=1)
            return PREFILL / (time.perf_counter() - t0)

        def decode():
            cache = model.new_cache(1, capacity=DECODE)
            t0 = time.perf_counter()
            for s in range(DECODE):
                model(ids[None, s:s + 1], cache=cache, logits_to_keep=1)
            return DECODE / (time.perf_counter() - t0)
        rounds = {}
        for t in threads:
            moepy.set_num_threads(t)
            prefill(), decode()  # warm-up
            rounds[t] = []
            for _ in range(repeat):
                lb = llama_bench(bin_dir, path, [t], 1)
                bw = measure_bandwidth(megabytes=512, repeats=3)["gb_per_s"]
                rounds[t].append({"llama_pp": lb["prefill", t], "llama_tg": lb["decode", t], "bandwidth": bw,
                                  "moepy_pp": prefill(), "moepy_tg": decode()})
    return rounds, active_bytes(model)["total"]


def _save_result(path, rounds, m_bytes, l_bytes):
    with open(path, "w") as f:
        json.dump({"rounds": {str(t): r for t, r in rounds.items()}, "m_bytes": m_bytes, "l_bytes": l_bytes}, f)


def _load_result(path):
    d = json.load(open(path))
    if "rounds" not in d:
        raise ValueError(f"{path}: an older result format; run with --fresh")
    return {int(t): r for t, r in d["rounds"].items()}, d["m_bytes"], d["l_bytes"]


def output_bytes(path: str) -> int:
    """Bytes of the output projection (output.weight, or the tied token embedding): prefill with logits for the last
    position only (llama-bench pp, moepy logits_to_keep=1) reads it once per call, not per token."""
    import gguf
    r = gguf.GGUFReader(path)
    names = {t.name: int(t.n_bytes) for t in r.tensors}
    return names.get("output.weight", names.get("token_embd.weight", 0))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["olmoe", "qwen3_moe"])
    ap.add_argument("--formats", nargs="+", default=list(FORMATS))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache-dir", default="/tmp/moepy-bench-models")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", help="results name (default bench_llamacpp_<date>)")
    ap.add_argument("--fresh", action="store_true", help="measure again the pairs a previous run finished")
    args = ap.parse_args(argv)
    bin_dir = os.environ.get("LLAMACPP_BIN") or subprocess.run([os.path.join(HERE, "build_llamacpp.sh")],
                                                               capture_output=True, text=True, check=True).stdout.strip()
    rows, raw = [], []
    bw0 = measure_bandwidth()["gb_per_s"]
    gemm = gemm_rates(args.threads)
    print("arithmetic rates (G op/s; peak_*: the cores, others: library GEMMs): " +
          ", ".join(f"{k} {t}t {v:.0f}" for (k, t), v in gemm.items()), flush=True)
    for key in args.models:
        files = gguf_files(key, args, bin_dir)
        vocab = json.load(open(os.path.join(args.cache_dir, f"{key}-L2", "config.json")))["vocab_size"]
        # prefill flops per token: 2 per weight a decoded token reads, but for the output projection (the F32 file's
        # bytes / 4; attention scores at 512 tokens add under 1%)
        flops_per_token = 2 * (llama_bytes_per_token(files["F32"]) - output_bytes(files["F32"])) / 4
        for fmt in args.formats:
            ff = FILE_FORMAT[fmt]
            done = os.path.join(args.cache_dir, f"{key}-L2-{fmt}.result.json")  # a finished pair, for a rerun
            if os.path.exists(done) and not args.fresh:
                rounds, m_bytes, l_bytes = _load_result(done)
            else:
                # each format in a fresh interpreter, as llama-bench is a fresh process: the heap and page state the
                # earlier formats' models left in this process slowed later formats' decode by up to a third
                with multiprocessing.get_context("spawn").Pool(1) as pool:
                    rounds, m_bytes = pool.apply(paired_rounds, (bin_dir, files[ff], fmt, args.threads, args.repeat,
                                                                 vocab))
                l_bytes = llama_bytes_per_token(files[ff])
                _save_result(done, rounds, m_bytes, l_bytes)
            raw.append({"model": key, "format": fmt, "rounds": rounds, "moepy_bytes_per_token": m_bytes,
                        "llama_bytes_per_token": l_bytes})
            med = lambda f, rs: statistics.median(f(r) for r in rs)  # noqa: E731
            for t in args.threads:
                rs = rounds[t]
                rows.append({"model": key, "format": fmt, "threads": t,
                             "pp512 moepy": med(lambda r: r["moepy_pp"], rs),
                             "pp512 llama": med(lambda r: r["llama_pp"], rs),
                             "pp x": med(lambda r: r["moepy_pp"] / r["llama_pp"], rs),
                             "tg128 moepy": med(lambda r: r["moepy_tg"], rs),
                             "tg128 llama": med(lambda r: r["llama_tg"], rs),
                             "tg x": med(lambda r: r["moepy_tg"] / r["llama_tg"], rs),
                             "GB/s": med(lambda r: r["bandwidth"], rs),
                             "MB/tok moepy": m_bytes / 1e6, "MB/tok llama": l_bytes / 1e6,
                             "moepy / bound": med(lambda r: r["moepy_tg"] * m_bytes / (r["bandwidth"] * 1e9), rs),
                             "llama / bound": med(lambda r: r["llama_tg"] * l_bytes / (r["bandwidth"] * 1e9), rs),
                             "pp ceil": gemm.get(("peak_" + GEMM_KIND[fmt], t), gemm[GEMM_KIND[fmt], t]) * 1e9
                             / flops_per_token,
                             "pp at GEMM": gemm[GEMM_KIND[fmt], t] * 1e9 / flops_per_token})
            print(f"  {key} {fmt} done", flush=True)
    bw1 = measure_bandwidth()["gb_per_s"]
    for r in rows:
        r["moepy / ceil"] = r["pp512 moepy"] / r["pp ceil"]
        r["ceil / llama"] = r["pp ceil"] / r["pp512 llama"]
    print(f"read bandwidth {bw0:.1f} / {bw1:.1f} GB/s (start / end); GB/s: the median of the bandwidths measured in each "
          f"round between the two engines; bound = that bandwidth / bytes read per token; ratios: medians of the "
          f"per-round ratios")
    print("pp ceil: prefill tokens/s at the cores' peak rate for the format's arithmetic (benchmarks/peak_rate.c: fp32 "
          "FMA for F32 and BF16 with fp32 activations, vdpbf16ps for bf16 activations, vpdpbusd for Q8_0 / Q4_0 / IQ4_NL) over "
          "2 flops per weight but the output projection's; pp at GEMM: the same at the libraries' GEMM rate (NumPy / "
          "torch); ceil / llama: the most any engine could gain over llama.cpp")
    cell = lambda v: f"{v:.3g}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.0f}" if isinstance(v, float) else v)  # noqa: E731
    print_table(list(rows[0]), [[cell(v) for v in r.values()] for r in rows])
    if args.json:
        write_json(args.out or f"bench_llamacpp_{datetime.date.today()}", {"machine": machine_info(), "bandwidth_gb_s": [bw0, bw1],
                                                                      "gemm_gflop_s": {f"{k}_{t}": v for (k, t), v
                                                                                       in gemm.items()},
                                                                      "rows": rows, "raw": raw})
    return 0


if __name__ == "__main__":
    sys.exit(main())

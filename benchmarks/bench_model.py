"""Whole-model speed and memory (issue 10): moepy.nn.MoEModel against transformers and the bandwidth bound.

    python benchmarks/bench_model.py [--json]                       # full width, 2 layers (heavy: minutes, ~10 GB)
    python benchmarks/bench_model.py --quick                        # tiny widths, 1 layer, < 60 s

Models: the OLMoE-1B-7B, Qwen3-30B-A3B and DeepSeek-V2-Lite architectures (moepy presets) at full width with
num_hidden_layers = --layers (DeepSeek: first_k_dense_replace = 1 when there are >= 2 layers, so layer 0 is its
dense MLP and the rest MoE). Each is built ONCE with transformers (bf16, seeded N(0, 0.02) weights, norms 1) and
saved as bf16 safetensors into --cache-dir (reused if present): both engines read the same file.

Per model, format (float32, bfloat16, int8, int4) and thread count (--threads):
- moepy prefill tok/s: model(ids[None], cache=fresh, logits_to_keep=1) at --prefill tokens; decode tok/s: prefill
  --context tokens into a cache, then time --steps single-token steps. Median of --repeat runs (one warm-up first).
- transformers (float32 and bf16 only; torch.set_num_threads the same): the same prefill (use_cache=True,
  logits_to_keep=1) and decode with its DynamicCache. int8 / int4: moepy's routed experts quantized (groups of 32),
  the other weights bf16 (dtype="bfloat16").
- bandwidth bound of decode: bytes read per decoded token in that format (attention + norms + router + shared
  experts + top_k routed experts of each MoE layer + dense MLPs + lm_head + one embedding row, counted from the
  loaded moepy model's packed weights) + the KV cache read at --context (moepy's: float32) / the read
  bandwidth measured in the same run (common.measure_bandwidth, before and after each model; mean).
- Python share of a decode step: one step with every moepy._C call and np.matmul wrapped in a perf_counter timer;
  share = 1 - (time inside them) / (step time). The rest is Python and small NumPy ops (norms, softmax, RoPE).
Memory: peak RSS (VmHWM) of a fresh process loading each model with quantize="int4", against the bf16 bytes
of its largest layer + the int4 model's weight bytes (what an expert-by-expert quantizing load must hold).
Goals: decode >= 85% of the bound; >= 3x transformers decode; >= 1.5x transformers prefill; Python share < 10%.
--json writes benchmarks/results/bench_model_<date>.json (bench_model_quick_<date>.json with --quick).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import choose, format_bytes, machine_info, measure_bandwidth, print_table, write_json  # noqa: E402

MODELS = {"olmoe": "olmoe-1b-7b", "qwen3_moe": "qwen3-30b-a3b", "deepseek_v2": "deepseek-v2-lite"}
FORMATS = ("float32", "bfloat16", "int8", "int4")
GOAL_BW, GOAL_DECODE_X, GOAL_PREFILL_X, GOAL_PY = 0.85, 3.0, 1.5, 0.10


# ---------------------------------------------------------------- the checkpoints
def hf_config(key: str, layers: int, quick: bool) -> dict:
    from moepy.configs import presets
    cfg = presets.get(MODELS[key])
    if quick:
        cfg = cfg.scaled(num_layers=layers, hidden_size=256, num_heads=4, expert_intermediate_size=128,
                         dense_intermediate_size=512, vocab_size=1024)
        return {**cfg.to_hf(), "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}  # ids < V
    d = cfg.to_hf()
    d["num_hidden_layers"] = layers
    if "first_k_dense_replace" in d:
        d["first_k_dense_replace"] = min(1, layers - 1)
    return d


def checkpoint(key: str, args) -> str:
    """The directory of the model's bf16 checkpoint, built with transformers if absent."""
    d = hf_config(key, args.layers, args.quick)
    path = os.path.join(args.cache_dir, f"{key}-L{args.layers}" + ("-quick" if args.quick else ""))
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    t0 = time.perf_counter()
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(d.pop("model_type"), **{k: v for k, v in d.items() if k != "architectures"})
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.bfloat16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.fill_(1.0)
            else:
                torch.nn.init.normal_(p, std=0.02)
    model.save_pretrained(path)  # safetensors, bf16
    del model
    gc.collect()
    print(f"  built {path} with transformers in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


# ---------------------------------------------------------------- moepy: bytes per decoded token
def _obj_bytes(obj) -> int:
    """Packed weight bytes of an attention / MLP object: its Linears, DenseMLPs and arrays (not RoPE tables)."""
    from moepy.nn.layers import DenseMLP, Linear
    if isinstance(obj, (Linear, DenseMLP)):
        return obj.nbytes
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if obj is None or type(obj).__name__ == "Rope":
        return 0
    if isinstance(obj, (tuple, list)):
        return sum(_obj_bytes(v) for v in obj)
    return sum(_obj_bytes(v) for v in vars(obj).values() if not isinstance(v, (int, float, str, bool))
               and type(v).__name__ != "AttentionSpec")


def active_bytes(model) -> dict:
    """Bytes read per decoded token by the moepy model, by part."""
    parts = {"attention": 0, "norms": 0, "router": 0, "shared": 0, "routed_topk": 0, "dense_mlp": 0}
    for layer in model.layers:
        parts["attention"] += _obj_bytes(layer.attention)
        parts["norms"] += layer.attn_norm.nbytes + layer.ffn_norm.nbytes
        if layer.is_moe:
            nb = layer.ffn.nbytes()
            parts["router"] += nb["router"]
            parts["shared"] += nb["shared"]
            parts["routed_topk"] += nb["per_expert"] * layer.ffn.router.top_k
        else:
            parts["dense_mlp"] += layer.ffn.nbytes
    parts["norms"] += model.final_norm.nbytes
    parts["lm_head"] = model.head.nbytes
    parts["embed_row"] = model.embed[0].nbytes
    parts["total"] = sum(parts.values())
    return parts


def model_bytes(model) -> int:
    """All weight bytes the loaded moepy model holds."""
    total = model.embed.nbytes + model.final_norm.nbytes + model.head.nbytes
    for layer in model.layers:
        total += _obj_bytes(layer.attention) + layer.attn_norm.nbytes + layer.ffn_norm.nbytes
        if layer.is_moe:
            nb = layer.ffn.nbytes()
            total += nb["routed"] + nb["shared"] + nb["router"]
        else:
            total += layer.ffn.nbytes
    return total


# ---------------------------------------------------------------- timing
def median_runs(run, repeat: int) -> float:
    return statistics.median(run() for _ in range(repeat))


def moepy_runs(model, ids: np.ndarray, ctx: np.ndarray, steps: int):
    def prefill():
        cache = model.new_cache(1, capacity=ids.size)
        t0 = time.perf_counter()
        model(ids[None], cache=cache, logits_to_keep=1)
        return time.perf_counter() - t0

    def decode():
        cache = model.new_cache(1, capacity=ctx.size + steps)
        model(ctx[None], cache=cache, logits_to_keep=1)
        t0 = time.perf_counter()
        for s in range(steps):
            model(ctx[None, s:s + 1], cache=cache, logits_to_keep=1)
        return (time.perf_counter() - t0) / steps
    return prefill, decode


def torch_runs(model, ids: np.ndarray, ctx: np.ndarray, steps: int):
    import torch
    ids_t, ctx_t = torch.from_numpy(ids)[None], torch.from_numpy(ctx)[None]

    def prefill():
        with torch.inference_mode():
            t0 = time.perf_counter()
            model(ids_t, use_cache=True, logits_to_keep=1)
            return time.perf_counter() - t0

    def decode():
        with torch.inference_mode():
            pkv = model(ctx_t, use_cache=True, logits_to_keep=1).past_key_values
            t0 = time.perf_counter()
            for s in range(steps):
                pkv = model(ctx_t[:, s:s + 1], past_key_values=pkv, use_cache=True, logits_to_keep=1).past_key_values
            return (time.perf_counter() - t0) / steps
    return prefill, decode


def timed_steps(model, ctx: np.ndarray, steps: int = 1, on_call=None) -> tuple:
    """Prefill ctx[:-1], then decode `steps` one-token steps with every moepy._C function and np.matmul timed (the
    outermost call only); on_call(name, args, seconds) sees each. Returns (seconds per step, seconds inside them per
    step)."""
    from moepy import _ops
    inside = [0.0]
    depth = [0]

    def timed(name, fn):
        def wrapper(*a, **k):
            if depth[0]:
                return fn(*a, **k)
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                inside[0] += dt
                depth[0] -= 1
                if on_call is not None:
                    on_call(name, a, dt)
        return wrapper

    class TimedC:
        def __init__(self, mod):
            self._mod = mod

        def __getattr__(self, name):
            v = getattr(self._mod, name)
            return timed(name, v) if callable(v) and type(v).__name__ == "builtin_function_or_method" else v

    C = _ops._C
    aliases = {n: v for n, v in vars(_ops).items() if type(v).__name__ == "builtin_function_or_method"
               and getattr(C, getattr(v, "__name__", ""), None) is v}
    cache = model.new_cache(1, capacity=ctx.size + steps)
    model(ctx[None, :-1], cache=cache, logits_to_keep=1)
    matmul = np.matmul
    _ops._C = TimedC(C)
    for n, v in aliases.items():
        setattr(_ops, n, timed(v.__name__, v))
    np.matmul = timed("np.matmul", matmul)
    try:
        t0 = time.perf_counter()
        for s in range(steps):
            model(ctx[None, -1:] if s == 0 else np.array([[(int(ctx[-1]) + s) % model.vocab_size]]), cache=cache,
                  logits_to_keep=1)
        step = (time.perf_counter() - t0) / steps
    finally:
        np.matmul = matmul
        _ops._C = C
        for n, v in aliases.items():
            setattr(_ops, n, v)
    return step, inside[0] / steps


def python_share(model, ctx: np.ndarray) -> dict:
    """One decode step (after a prefill of ctx) with moepy._C's functions and np.matmul timed: the share of the step
    spent outside them."""
    step, inside = timed_steps(model, ctx)
    return {"step_s": step, "inside_c_s": inside, "python_share": 1.0 - inside / step}


# ---------------------------------------------------------------- memory (fresh process)
def _vm_hwm() -> int:
    """Peak RSS of this process in bytes: VmHWM (ru_maxrss would carry the forking parent's peak across exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def rss_child(path: str) -> None:
    import moepy.nn
    from moepy.io import open_checkpoint
    base = _vm_hwm()
    t0 = time.perf_counter()
    model = moepy.nn.MoEModel.from_pretrained(path, dtype="bfloat16", quantize="int4", progress=False)
    dt = time.perf_counter() - t0
    peak = _vm_hwm()
    ck = open_checkpoint(path)
    per_layer = {}
    for n in ck:
        if ".layers." in n:
            i = int(n.split(".layers.")[1].split(".")[0])
            per_layer[i] = per_layer.get(i, 0) + ck.info(n)[0].nbytes
    print(json.dumps({"peak_rss": peak, "baseline_rss": base, "load_s": dt, "int4_model_bytes": model_bytes(model),
                      "bf16_layer_bytes": max(per_layer.values())}))


def measure_rss(path: str) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--rss-child", path], check=True,
                         capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r["budget"] = r["bf16_layer_bytes"] + r["int4_model_bytes"]
    r["peak_over_budget"] = r["peak_rss"] / r["budget"]
    r["load_over_budget"] = (r["peak_rss"] - r["baseline_rss"]) / r["budget"]  # without the interpreter + imports
    return r


# ---------------------------------------------------------------- one model
def run_model(key: str, args, threads) -> tuple[list[dict], dict]:
    import moepy
    import moepy.nn  # noqa: F401
    import torch
    from transformers import AutoModelForCausalLM
    path = checkpoint(key, args)
    bw0 = measure_bandwidth(megabytes=args.bw_mb, repeats=2 if args.quick else 5)
    rng = np.random.default_rng(0)
    V = json.load(open(os.path.join(path, "config.json")))["vocab_size"]
    ids = rng.integers(0, V, args.prefill, dtype=np.int64)
    ctx = rng.integers(0, V, args.context + args.steps, dtype=np.int64)
    rows = []
    for fmt in args.formats:
        t0 = time.perf_counter()
        m = moepy.nn.MoEModel.from_pretrained(path, dtype="float32" if fmt == "float32" else "bfloat16",
                                              quantize=fmt if fmt.startswith("int") else None, progress=False)
        load_s = time.perf_counter() - t0
        act = active_bytes(m)
        kv_bytes = m.new_cache(1, capacity=args.context).bytes_per_token * args.context
        mp, md = moepy_runs(m, ids, ctx[:args.context], args.steps)
        for n in threads:
            moepy.set_num_threads(n)
            moepy_runs(m, ids[:8], ctx[:9], 1)[1]()  # warm-up
            row = {"model": MODELS[key], "family": key, "format": fmt, "threads": n, "moepy_load_s": load_s,
                   "active_bytes": act, "kv_cache_bytes_at_context": kv_bytes,
                   "moepy_prefill_tok_s": args.prefill / median_runs(mp, args.repeat),
                   "moepy_decode_tok_s": 1.0 / median_runs(md, args.repeat)}
            row.update(python_share(m, ctx[:args.context + 1]))
            rows.append(row)
            print(f"  {MODELS[key]} {fmt} t={n}: moepy prefill {row['moepy_prefill_tok_s']:.1f} tok/s, decode "
                  f"{row['moepy_decode_tok_s']:.2f} tok/s, Python {row['python_share']:.0%}", flush=True)
        del m, mp, md
        gc.collect()
        if fmt in ("float32", "bfloat16"):
            tm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32 if fmt == "float32" else torch.bfloat16)
            tm.eval()
            tp, td = torch_runs(tm, ids, ctx[:args.context], args.steps)
            for row in (r for r in rows if r["format"] == fmt and r["family"] == key):
                torch.set_num_threads(row["threads"])
                torch_runs(tm, ids[:8], ctx[:9], 1)[1]()  # warm-up
                row["torch_prefill_tok_s"] = args.prefill / median_runs(tp, args.repeat)
                row["torch_decode_tok_s"] = 1.0 / median_runs(td, args.repeat)
                row["torch_attn_implementation"] = tm.config._attn_implementation
                print(f"  {MODELS[key]} {fmt} t={row['threads']}: transformers prefill "
                      f"{row['torch_prefill_tok_s']:.1f} tok/s, decode {row['torch_decode_tok_s']:.2f} tok/s",
                      flush=True)
            del tm, tp, td
            gc.collect()
    bw1 = measure_bandwidth(megabytes=args.bw_mb, repeats=2 if args.quick else 5)
    bw = 0.5 * (bw0["gb_per_s"] + bw1["gb_per_s"])
    for r in rows:
        r["bandwidth_gb_per_s"] = bw
        r["bound_decode_tok_s"] = bw * 1e9 / (r["active_bytes"]["total"] + r["kv_cache_bytes_at_context"])
        r["bw_fraction"] = r["moepy_decode_tok_s"] / r["bound_decode_tok_s"]
        if "torch_decode_tok_s" in r:
            r["prefill_x"] = r["moepy_prefill_tok_s"] / r["torch_prefill_tok_s"]
            r["decode_x"] = r["moepy_decode_tok_s"] / r["torch_decode_tok_s"]
    rss = measure_rss(path)
    info = {"model": MODELS[key], "family": key, "checkpoint": path, "bandwidth_before": bw0,
            "bandwidth_after": bw1, "bandwidth_gb_per_s": bw, "int4_load_rss": rss}
    print(f"  {MODELS[key]}: bandwidth {bw0['gb_per_s']:.1f} -> {bw1['gb_per_s']:.1f} GB/s; int4 load peak RSS "
          f"{format_bytes(rss['peak_rss'])} vs bf16 layer + int4 model {format_bytes(rss['budget'])}", flush=True)
    return rows, info


def goals(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        tag = {"model": r["model"], "format": r["format"], "threads": r["threads"]}
        out.append({"goal": f"decode >= {GOAL_BW:.0%} of bound", **tag, "value": r["bw_fraction"],
                    "met": r["bw_fraction"] >= GOAL_BW})
        out.append({"goal": f"Python share < {GOAL_PY:.0%}", **tag, "value": r["python_share"],
                    "met": r["python_share"] < GOAL_PY})
        if "decode_x" in r:
            out.append({"goal": f"decode >= {GOAL_DECODE_X:g}x transformers", **tag, "value": r["decode_x"],
                        "met": r["decode_x"] >= GOAL_DECODE_X})
            out.append({"goal": f"prefill >= {GOAL_PREFILL_X:g}x transformers", **tag, "value": r["prefill_x"],
                        "met": r["prefill_x"] >= GOAL_PREFILL_X})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny widths, 1 layer, prefill/context 64, 1 thread")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {','.join(MODELS)}")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--layers", type=int, default=None, help="num_hidden_layers (default 2; --quick 1)")
    ap.add_argument("--threads", default=None, help="comma list (default 1,2; --quick 1)")
    ap.add_argument("--prefill", type=int, default=None, help="prefill tokens (default 512; --quick 64)")
    ap.add_argument("--context", type=int, default=None, help="decode context (default 512; --quick 64)")
    ap.add_argument("--steps", type=int, default=None, help="timed decode steps per run (default 16; --quick 4)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per median (default 3; --quick 1)")
    ap.add_argument("--cache-dir", default="/tmp/moepy-bench-models")
    ap.add_argument("--json", action="store_true", help="write benchmarks/results/bench_model_<date>.json")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child)
        return 0
    q = args.quick
    for name, full, quick in (("layers", 2, 1), ("prefill", 512, 64), ("context", 512, 64), ("steps", 16, 4),
                              ("repeat", 3, 1), ("threads", "1,2", "1")):
        if getattr(args, name) is None:
            setattr(args, name, quick if q else full)
    args.bw_mb = 256 if q else 1024
    keys = choose(ap, args.models, list(MODELS), "model")
    args.formats = choose(ap, args.formats, list(FORMATS), "format")
    threads = [int(t) for t in str(args.threads).split(",")]
    os.makedirs(args.cache_dir, exist_ok=True)

    import torch
    import transformers
    t_start = time.perf_counter()
    print(f"moepy bench_model: layers {args.layers}{' (quick widths)' if q else ''}, prefill {args.prefill}, "
          f"context {args.context}, {args.steps} steps x {args.repeat} runs, threads {threads}; torch "
          f"{torch.__version__}, transformers {transformers.__version__}", flush=True)
    rows, infos = [], []
    for key in keys:
        r, info = run_model(key, args, threads)
        rows += r
        infos.append(info)

    def f(r, k, spec):
        return format(r[k], spec) if k in r else "-"
    print()
    print_table(["model", "format", "thr", "prefill tok/s", "hf prefill", "x", "decode tok/s", "hf decode", "x",
                 "bound tok/s", "of bound", "Python"],
                [[r["model"], r["format"], r["threads"], f(r, "moepy_prefill_tok_s", ".1f"),
                  f(r, "torch_prefill_tok_s", ".1f"), f(r, "prefill_x", ".2f"), f(r, "moepy_decode_tok_s", ".2f"),
                  f(r, "torch_decode_tok_s", ".2f"), f(r, "decode_x", ".2f"), f(r, "bound_decode_tok_s", ".2f"),
                  f(r, "bw_fraction", ".0%"), f(r, "python_share", ".0%")] for r in rows])
    print("\nint4 load (fresh process, VmHWM; budget = bf16 largest layer + int4 model; baseline = after imports):")
    print_table(["model", "peak RSS", "bf16 layer", "int4 model", "budget", "peak/budget", "baseline",
                 "(peak-baseline)/budget"],
                [[i["model"], format_bytes(i["int4_load_rss"]["peak_rss"]),
                  format_bytes(i["int4_load_rss"]["bf16_layer_bytes"]),
                  format_bytes(i["int4_load_rss"]["int4_model_bytes"]), format_bytes(i["int4_load_rss"]["budget"]),
                  f"{i['int4_load_rss']['peak_over_budget']:.2f}", format_bytes(i["int4_load_rss"]["baseline_rss"]),
                  f"{i['int4_load_rss']['load_over_budget']:.2f}"]
                 for i in infos])
    g = goals(rows)
    print("\ngoals:")
    for kind in dict.fromkeys(x["goal"] for x in g):
        sel = [x for x in g if x["goal"] == kind]
        missed = [x for x in sel if not x["met"]]
        print(f"  {kind}: {len(sel) - len(missed)}/{len(sel)} met" + (
            "; missed: " + ", ".join(f"{x['model']} {x['format']} t={x['threads']} ({x['value']:.2f})"
                                     for x in missed) if missed else ""))
    elapsed = time.perf_counter() - t_start
    print(f"\ntotal {elapsed:.0f} s")
    if args.json:
        name = f"bench_model{'_quick' if q else ''}_{datetime.date.today().isoformat()}"
        path = write_json(name, {
            "benchmark": "bench_model", "argv": sys.argv[1:], "machine": machine_info(),
            "settings": {k: getattr(args, k) for k in ("layers", "prefill", "context", "steps", "repeat", "threads",
                                                      "formats", "quick")},
            "models": infos, "rows": rows, "goals": g, "elapsed_s": elapsed,
            "notes": "bw_fraction = moepy decode tok/s / (bandwidth / active bytes per token); x = moepy / "
                     "transformers tok/s; python_share = 1 - time in moepy._C and np.matmul / decode step time; "
                     "int8/int4 rows: experts quantized, other weights bf16"})
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

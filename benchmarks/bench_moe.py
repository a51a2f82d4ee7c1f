"""MoE layer speed: moepy against the transformers (PyTorch) MoE block of the same family, at real shapes.

Spec: one MoE layer at the shapes of Mixtral-8x7B (H 4096, I 14336, E 8, k 2), OLMoE-1B-7B (2048, 1024, 64, 8),
Qwen3-30B-A3B (2048, 768, 128, 8) and DeepSeek-V2-Lite (2048, 1408, 64, 6, 2 shared experts), in fp32 and bf16,
for T = 1, 8, 64, 512 tokens. In the same run: moepy; the transformers block of the family in PyTorch; the
machine's memory read bandwidth and its BLAS (numpy matmul) fp32 GEMM rate. Printed per row: times, the
moepy / PyTorch speed-up, the fraction of the bandwidth bound (active expert bytes / bandwidth, over the moepy
time) and the fraction of the GEMM rate (moepy GFLOP/s over numpy GEMM GFLOP/s).
Goals: >= 85% of the bandwidth bound at T=1, >= 75% of the GEMM rate at T=512 (fp32), >= 5x PyTorch at T <= 64.

Both sides use the same weights: they are drawn once per family (seeded), handed to the torch block without a
copy (the block is built on the meta device and its parameters assigned), and moepy packs the same arrays.
bf16: torch runs the block in torch.bfloat16 with bf16 input (what a user gets with torch_dtype=bfloat16);
moepy runs dtype="bfloat16" (the same bf16 expert weights, fp32 activations); dtype "bf16act": the same bf16 weights
with moepy's bf16 activations (moepy.activation_precision("bf16"), AVX512-BF16 dot products, as torch uses), its
GEMM fraction against torch's own bf16 GEMM rate (torch.mm on bf16, measured in the same run). The torch block uses
experts_implementation="grouped_mm", the default transformers 5.23 picks in from_pretrained (a bare block built
from a config would fall back to the eager per-expert loop); --torch-experts eager measures the loop instead.

Active bytes at T: distinct routed experts hit by the T tokens (moepy's routing) * 3*H*I*bytes_per_weight, plus
the shared expert 3*H*I_shared*bytes. Flops at T: 2*3*H*I*k*T (+ 2*3*H*I_shared*T). Bandwidth is measured right
before and after each family's timings (it is bimodal on this VM) and the mean is used.
Once per family (T=8, fp32, and bf16 for information) moepy's output is compared with the torch block's.

Memory: one family at a time; its weights are freed (del + gc.collect()) before the next. Mixtral fp32 peaks at
about 2.5x its 5.6 GB of expert weights while moepy packs.

Usage: python benchmarks/bench_moe.py [--quick] [--families olmoe,qwen3_moe,...] [--dtypes float32,bfloat16]
                                      [--tokens 1,8,64,512] [--threads 2] [--torch-experts grouped_mm|eager]
  --quick: OLMoE and Qwen3 at T = 1 and 64, fp32 + bf16, few repeats (< 90 s); writes bench_moe_quick.json.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

import numpy as np
import torch
import transformers

import moepy
from moepy.moe import ExpertWeights, MoELayer
from common import (LAYER_SHAPES, LAYER_TOKEN_COUNTS, LayerShape, choose, format_seconds, machine_info,
                    measure_torch_gemm_rate,
                    measure_bandwidth, measure_gemm_rate, print_table, sample_budgeted, write_json)

TOKEN_COUNTS = LAYER_TOKEN_COUNTS
GOAL_BW_FRACTION_T1 = 0.85     # moepy >= 85% of the bandwidth bound at T = 1
GOAL_GEMM_FRACTION_T512 = 0.75  # moepy >= 75% of numpy's GEMM rate at T = 512, fp32
GOAL_SPEEDUP = 5.0             # moepy >= 5x the PyTorch block at T <= 64
CHECK_TOKENS = 8
CHECK_RTOL = 1e-4
BYTES = {"float32": 4, "bfloat16": 2, "bf16act": 2}
TORCH_DTYPE = {"float32": torch.float32, "bfloat16": torch.bfloat16, "bf16act": torch.bfloat16}
WEIGHT_DTYPE = {"float32": "float32", "bfloat16": "bfloat16", "bf16act": "bfloat16"}
ACT_PRECISION = {"float32": "fp32", "bfloat16": "fp32", "bf16act": "bf16"}  # moepy.activation_precision


def torch_block(fam: LayerShape, experts_impl: str) -> torch.nn.Module:
    """The transformers block of the family on the meta device (no memory; parameters assigned later)."""
    import transformers.models as M
    H, I, E, k = fam.hidden, fam.inter, fam.experts, fam.top_k
    if fam.key == "mixtral":
        cfg = transformers.MixtralConfig(hidden_size=H, intermediate_size=I, num_local_experts=E,
                                         num_experts_per_tok=k, router_jitter_noise=0.0)
        cls = M.mixtral.modeling_mixtral.MixtralSparseMoeBlock
    elif fam.key == "olmoe":
        cfg = transformers.OlmoeConfig(hidden_size=H, intermediate_size=I, num_experts=E, num_experts_per_tok=k,
                                       norm_topk_prob=False, num_attention_heads=16, num_key_value_heads=16)
        cls = M.olmoe.modeling_olmoe.OlmoeSparseMoeBlock
    elif fam.key == "qwen3_moe":
        cfg = transformers.Qwen3MoeConfig(hidden_size=H, moe_intermediate_size=I, intermediate_size=6144,
                                          num_experts=E, num_experts_per_tok=k, norm_topk_prob=True,
                                          num_attention_heads=32, num_key_value_heads=4, head_dim=128)
        cls = M.qwen3_moe.modeling_qwen3_moe.Qwen3MoeSparseMoeBlock
    elif fam.key == "deepseek_v2":
        cfg = transformers.DeepseekV2Config(hidden_size=H, moe_intermediate_size=I, intermediate_size=10944,
                                            n_routed_experts=E, num_experts_per_tok=k,
                                            n_shared_experts=fam.shared_inter // I, topk_method="greedy",
                                            n_group=1, topk_group=1, routed_scaling_factor=1.0,
                                            norm_topk_prob=False, num_attention_heads=16,
                                            num_key_value_heads=16)
        cls = M.deepseek_v2.modeling_deepseek_v2.DeepseekV2Moe
    else:
        raise ValueError(fam.key)
    cfg._experts_implementation = experts_impl
    with torch.device("meta"):
        block = cls(cfg)
    return block.eval()


FAMILIES = LAYER_SHAPES


# ---- weights: one seeded set per family, shared by torch (no copy) and moepy ----
def make_weights(fam: LayerShape, seed: int = 0, std: float = 0.02) -> dict[str, torch.Tensor]:
    """fp32 tensors in the block's state_dict naming (fused gate_up_proj (E, 2I, H) = [gate; up], down (E, H, I))."""
    g = torch.Generator().manual_seed(seed)
    H, I, E = fam.hidden, fam.inter, fam.experts

    def randn(*shape, scale=std):
        return torch.randn(shape, generator=g, dtype=torch.float32).mul_(scale)
    w = {"gate.weight": randn(E, H, scale=H ** -0.5),  # router: N(0, 1/H) so routing is not uniform
         "experts.gate_up_proj": randn(E, 2 * I, H),
         "experts.down_proj": randn(E, H, I)}
    if fam.shared_inter:
        S = fam.shared_inter
        w.update({"shared_experts.gate_proj.weight": randn(S, H), "shared_experts.up_proj.weight": randn(S, H),
                  "shared_experts.down_proj.weight": randn(H, S)})
    return w


def build_torch(fam: LayerShape, weights: dict[str, torch.Tensor], experts_impl: str) -> torch.nn.Module:
    block = torch_block(fam, experts_impl)
    block.load_state_dict(weights, strict=True, assign=True)  # parameters become these tensors (no copy)
    for p in block.parameters():
        p.requires_grad_(False)
    return block


def _np_weight(t: torch.Tensor) -> np.ndarray:
    """A numpy view (no copy): fp32 as float32, bf16 as its raw uint16 bits (what moepy takes for bf16)."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def build_moepy(fam: LayerShape, weights: dict[str, torch.Tensor], dtype: str) -> MoELayer:
    I = fam.inter
    gu, down = _np_weight(weights["experts.gate_up_proj"]), _np_weight(weights["experts.down_proj"])
    experts = ExpertWeights(gate=gu[:, :I], up=gu[:, I:], down=down)
    shared = None
    if fam.shared_inter:
        shared = ExpertWeights(gate=_np_weight(weights["shared_experts.gate_proj.weight"])[None],
                               up=_np_weight(weights["shared_experts.up_proj.weight"])[None],
                               down=_np_weight(weights["shared_experts.down_proj.weight"])[None])
    router_w = weights["gate.weight"].float().numpy()
    return MoELayer(fam.router(), router_w, experts, shared=shared, dtype=dtype, family=fam.key)


def free():
    gc.collect()


# ---- per-row quantities ----
def flops(fam: LayerShape, T: int) -> float:
    return 2.0 * 3 * fam.hidden * (fam.inter * fam.top_k + fam.shared_inter) * T


def active_bytes(fam: LayerShape, distinct: int, dtype: str) -> float:
    return 3.0 * fam.hidden * (distinct * fam.inter + fam.shared_inter) * BYTES[dtype]


def rel_err(a: np.ndarray, ref: np.ndarray) -> dict:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return {"rel_l2": float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), 1e-30)),
            "rel_max": float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-30))}


def time_pair(fns, quick: bool) -> list[list[float]]:
    """Samples of seconds per call, interleaved (moepy, torch, torch, moepy, ...); as many repeats as fit in a
    budget per (family, dtype, T) row, at least 3 (2 with --quick)."""
    if quick:
        return sample_budgeted(fns, budget_s=2.0, min_repeats=2, max_repeats=5, min_sample_s=0.01)
    return sample_budgeted(fns, budget_s=15.0, min_repeats=3, max_repeats=15, min_sample_s=0.03)


def run_family(fam: LayerShape, dtypes, tokens, args, gemm_gflops: float) -> tuple[list[dict], dict]:
    rows: list[dict] = []
    bw_before = measure_bandwidth(repeats=3 if args.quick else 5)
    info = {"model": fam.model, "family": fam.key, "bandwidth_before": bw_before, "checks": {},
            "loadavg_before": os.getloadavg()}  # this VM is shared: other processes' load skews every time
    t_build = time.perf_counter()
    w32 = make_weights(fam, seed=0)
    w_bf16 = None
    rng = np.random.default_rng(1)
    xs = {T: rng.standard_normal((T, fam.hidden), dtype=np.float32) for T in sorted(set(tokens) | {CHECK_TOKENS})}

    for dtype in dtypes:
        if dtype == "float32":
            w = w32
        elif w32 is None:  # the bf16 weights of the previous dtype (bfloat16, then bf16act)
            w = w_bf16
        else:  # bf16 weights for both sides (rounded once by torch: round-to-nearest-even, as moepy's to_bf16_bits)
            w = w_bf16 = {k: v.to(torch.bfloat16) for k, v in w32.items()}
            w32 = None  # fp32 copies are no longer needed (bf16 runs last)
            free()
        block = build_torch(fam, w, args.torch_experts)
        layer = build_moepy(fam, w, WEIGHT_DTYPE[dtype])
        tdt = TORCH_DTYPE[dtype]
        xt = {T: torch.from_numpy(x).to(tdt)[None] for T, x in xs.items()}
        info.setdefault("build_s", {})[dtype] = time.perf_counter() - t_build
        impl_used = getattr(block.experts.config, "_experts_implementation", None)
        print(f"  {fam.model} {dtype}: weights + torch block + moepy pack in {info['build_s'][dtype]:.1f} s", flush=True)
        info.setdefault("torch_experts_implementation", impl_used)

        with torch.inference_mode(), moepy.activation_precision(ACT_PRECISION[dtype]):
            # correctness, once per family at T = 8
            y_m = layer(xs[CHECK_TOKENS])
            y_t = block(xt[CHECK_TOKENS]).float().numpy()[0]
            err = rel_err(y_m, y_t)
            err["ok"] = err["rel_l2"] <= CHECK_RTOL if dtype == "float32" else None
            info["checks"][dtype] = err
            if dtype == "float32" and not err["ok"]:
                print(f"  !! {fam.model} fp32 T={CHECK_TOKENS}: moepy differs from the torch block: "
                      f"rel L2 {err['rel_l2']:.2e}, rel max {err['rel_max']:.2e} (> {CHECK_RTOL:g})", flush=True)

            for T in tokens:
                x, x_t = xs[T], xt[T]
                out = np.empty_like(x)
                f_m = lambda: layer(x, out=out)  # noqa: E731
                f_t = lambda: block(x_t)  # noqa: E731
                samples = time_pair([f_m, f_t], args.quick)
                t_m, t_t = (statistics.median(s) for s in samples)
                distinct = int(np.unique(layer.last_routing.experts).size)
                rows.append({"model": fam.model, "family": fam.key, "dtype": dtype, "T": T,
                             "moepy_s": t_m, "torch_s": t_t, "speedup": t_t / t_m,
                             "moepy_samples": samples[0], "torch_samples": samples[1],
                             "distinct_experts": distinct, "active_bytes": active_bytes(fam, distinct, dtype),
                             "flops": flops(fam, T), "gflop_per_s": flops(fam, T) / t_m / 1e9})
                print(f"  {fam.model:16s} {dtype:8s} T={T:<4d} moepy {format_seconds(t_m):>9s}  "
                      f"torch {format_seconds(t_t):>9s}  x{t_t / t_m:.2f}", flush=True)
        block = layer = w = xt = None  # freed before the next dtype
        free()
        t_build = time.perf_counter()
    del w32, w_bf16
    free()
    bw_after = measure_bandwidth(repeats=3 if args.quick else 5)
    bw = 0.5 * (bw_before["gb_per_s"] + bw_after["gb_per_s"])
    info.update(bandwidth_after=bw_after, bandwidth_gb_per_s=bw, loadavg_after=os.getloadavg())
    for r in rows:
        r["bandwidth_gb_per_s"] = bw
        r["bw_bound_s"] = r["active_bytes"] / (bw * 1e9)
        r["bw_fraction"] = r["bw_bound_s"] / r["moepy_s"]
        r["gemm_fraction"] = r["gflop_per_s"] / gemm_gflops[r["dtype"] == "bf16act"]
    return rows, info


def goals(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        if r["T"] == 1:
            out.append({"goal": f"bandwidth >= {GOAL_BW_FRACTION_T1:.0%} at T=1", "model": r["model"],
                        "dtype": r["dtype"], "value": r["bw_fraction"], "met": r["bw_fraction"] >= GOAL_BW_FRACTION_T1})
        if r["T"] == 512 and r["dtype"] == "float32":
            out.append({"goal": f"GEMM rate >= {GOAL_GEMM_FRACTION_T512:.0%} at T=512 fp32", "model": r["model"],
                        "dtype": r["dtype"], "value": r["gemm_fraction"],
                        "met": r["gemm_fraction"] >= GOAL_GEMM_FRACTION_T512})
        if r["T"] <= 64:
            out.append({"goal": f"speed-up >= {GOAL_SPEEDUP:g}x PyTorch at T<=64 (T={r['T']})", "model": r["model"],
                        "dtype": r["dtype"], "value": r["speedup"], "met": r["speedup"] >= GOAL_SPEEDUP})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="OLMoE + Qwen3 at T=1, 64; few repeats (< 90 s)")
    ap.add_argument("--families", default=None, help=f"comma list of {','.join(FAMILIES)}")
    ap.add_argument("--dtypes", default="float32,bfloat16,bf16act")
    ap.add_argument("--tokens", default=None, help="comma list of token counts (default 1,8,64,512)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-experts", default="grouped_mm", choices=("grouped_mm", "eager", "batched_mm"))
    ap.add_argument("--out", default=None, help="results name (default bench_moe / bench_moe_quick)")
    args = ap.parse_args(argv)

    fams = choose(ap, args.families, list(FAMILIES), "family") if args.families else \
        (["olmoe", "qwen3_moe"] if args.quick else list(FAMILIES))
    dtypes = choose(ap, args.dtypes, ["float32", "bfloat16", "bf16act"], "dtype")  # bf16 last: frees fp32
    tokens = [int(t) for t in args.tokens.split(",")] if args.tokens else ([1, 64] if args.quick else list(TOKEN_COUNTS))

    torch.set_num_threads(args.threads)
    moepy.set_num_threads(args.threads)
    t0 = time.perf_counter()
    gemm = measure_gemm_rate(repeats=3 if args.quick else 5)
    gemm_bf16 = measure_torch_gemm_rate(torch.bfloat16, repeats=3 if args.quick else 5)
    gemm["bf16_gflop_per_s"] = gemm_bf16["gflop_per_s"]
    print(f"numpy fp32 GEMM rate: {gemm['gflop_per_s']:.1f} GFLOP/s, torch bf16 {gemm_bf16['gflop_per_s']:.1f} "
          f"(n={gemm['n']}); "
          f"threads: moepy {moepy.get_num_threads()}, torch {torch.get_num_threads()}; "
          f"torch experts_implementation={args.torch_experts}", flush=True)

    rows, fam_info = [], []
    for f in fams:
        r, info = run_family(FAMILIES[f], dtypes, tokens, args, (gemm["gflop_per_s"], gemm_bf16["gflop_per_s"]))
        print(f"  {FAMILIES[f].model}: bandwidth {info['bandwidth_before']['gb_per_s']:.1f} -> "
              f"{info['bandwidth_after']['gb_per_s']:.1f} GB/s (mean {info['bandwidth_gb_per_s']:.1f}); "
              f"load average {info['loadavg_before'][0]:.1f} -> {info['loadavg_after'][0]:.1f}", flush=True)
        rows += r
        fam_info.append(info)

    print()
    print_table(["model", "dtype", "T", "moepy", "torch", "speed-up", "experts hit", "BW bound", "of BW bound",
                 "GFLOP/s", "of GEMM"],
                [[r["model"], r["dtype"], r["T"], format_seconds(r["moepy_s"]), format_seconds(r["torch_s"]),
                  f"{r['speedup']:.2f}x", r["distinct_experts"], format_seconds(r["bw_bound_s"]),
                  f"{r['bw_fraction']:.0%}", f"{r['gflop_per_s']:.1f}", f"{r['gemm_fraction']:.0%}"] for r in rows])
    print(f"\nnumpy fp32 GEMM {gemm['gflop_per_s']:.1f} GFLOP/s, torch bf16 GEMM {gemm_bf16['gflop_per_s']:.1f} (the "
          f"bf16act rows' 'of GEMM'); bandwidth per family (mean of before/after): " +
          ", ".join(f"{i['model']} {i['bandwidth_gb_per_s']:.1f} GB/s" for i in fam_info))
    print("correctness (moepy vs torch block, T=8): " + "; ".join(
        f"{i['model']} " + ", ".join(f"{d} relL2 {c['rel_l2']:.1e}" for d, c in i["checks"].items())
        for i in fam_info))
    g = goals(rows)
    print("\ngoals:")
    for kind in (f"bandwidth >= {GOAL_BW_FRACTION_T1:.0%} at T=1", f"GEMM rate >= {GOAL_GEMM_FRACTION_T512:.0%} at T=512 fp32",
                 f"speed-up >= {GOAL_SPEEDUP:g}x PyTorch at T<=64"):
        sel = [x for x in g if x["goal"].startswith(kind)]
        if not sel:
            continue
        missed = [x for x in sel if not x["met"]]
        print(f"  {kind}: {len(sel) - len(missed)}/{len(sel)} met" + (
            "; missed: " + ", ".join(f"{x['model']} {x['dtype']}" + (f" T={x['goal'].split('T=')[-1].rstrip(')')}"
                                                                      if "speed-up" in kind else "") +
                                    f" ({x['value']:.2f})" for x in missed) if missed else ""))
    elapsed = time.perf_counter() - t0
    print(f"\ntotal {elapsed:.0f} s")
    name = args.out or ("bench_moe_quick" if args.quick else "bench_moe")
    path = write_json(name, {
        "benchmark": "bench_moe", "argv": sys.argv[1:], "machine": machine_info(), "threads": args.threads,
        "torch_experts_implementation": args.torch_experts, "gemm": gemm, "families": fam_info, "rows": rows,
        "goals": g, "elapsed_s": elapsed,
        "notes": "bw_fraction = (active expert bytes / mean bandwidth) / moepy time; gemm_fraction = moepy "
                 "GFLOP/s / numpy fp32 GEMM GFLOP/s; speedup = torch time / moepy time",
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

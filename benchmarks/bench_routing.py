"""Routing speed: moepy.route against the transformers (PyTorch) router of the same family.

Spec: route T = 1, 64, 4096 and 65536 tokens for E = 8 (k=2), 64 (k=6), 128 (k=8), 256 (k=8, 8 groups,
top-4 groups, bias) and 384 (k=8); print the moepy time, the PyTorch router time on the same logits
and their ratio. Goals: routing >= 5x faster than PyTorch at every size, and <= 5% of the MoE layer's time.

The PyTorch peer is the transformers router's forward *after* its F.linear (the logits projection is
not routing work), replicated op for op below; once per shape its output is checked to equal the
transformers module's own output on the same logits (built with hidden_size = E and an identity
weight, so its F.linear passes the logits through exactly).

The MoE layer kernels do not exist yet, so the layer time is a lower bound from this machine's
limits: max(active expert weight bytes / memory bandwidth, expert FFN flops / GEMM rate), measured
in the same run. The printed router share is therefore an upper bound on the true share.

Usage: python benchmarks/bench_routing.py [--quick] [--threads N]
  --quick: 5 repeats and no T=65536 (a smoke test, < 60 s); results go to bench_routing_quick.json.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import transformers.models.deepseek_v2.modeling_deepseek_v2 as hf_deepseek_v2
import transformers.models.deepseek_v3.modeling_deepseek_v3 as hf_deepseek_v3
import transformers.models.mixtral.modeling_mixtral as hf_mixtral
import transformers.models.qwen3_moe.modeling_qwen3_moe as hf_qwen3_moe
from transformers import DeepseekV2Config, DeepseekV3Config, MixtralConfig, Qwen3MoeConfig

import moepy
from moepy import RouterConfig
from common import (format_seconds, machine_info, measure_bandwidth, measure_gemm_rate, print_table,
                    sample_interleaved, write_json)

TOKEN_COUNTS = (1, 64, 4096, 65536)
MIN_SPEEDUP = 5.0        # goal: moepy routing >= 5x faster than the PyTorch router
MAX_ROUTER_SHARE = 0.05  # goal: routing <= 5% of the MoE layer's time
FP32_BYTES = 4


@dataclass(frozen=True)
class RoutingCase:
    """One router (E, k, family) and the expert shapes of the model it stands for."""
    model: str
    family: str            # transformers family whose router is the PyTorch peer
    config: RouterConfig
    hidden: int            # H
    intermediate: int      # I, per routed expert
    shared_experts: int    # always-active experts of the same shape (H, I)
    n_group: int = 1
    topk_group: int = 1
    has_bias: bool = False  # DeepSeek-V3-style e_score_correction_bias

    @property
    def num_experts(self) -> int:
        return self.config.num_experts

    @property
    def top_k(self) -> int:
        return self.config.top_k


CASES = (
    RoutingCase("Mixtral-8x7B", "mixtral", RouterConfig.mixtral(8, 2), 4096, 14336, 0),
    RoutingCase("DeepSeek-V2-Lite", "deepseek_v2",
                RouterConfig.deepseek_v2(64, 6, topk_method="greedy", routed_scaling_factor=1.0), 2048, 1408, 2),
    RoutingCase("Qwen3-30B-A3B", "qwen3_moe", RouterConfig.qwen3_moe(128, 8), 2048, 768, 0),
    RoutingCase("DeepSeek-V3", "deepseek_v3", RouterConfig.deepseek_v3(256, 8), 7168, 2048, 1,
                n_group=8, topk_group=4, has_bias=True),
    RoutingCase("Kimi-K2", "deepseek_v3", RouterConfig.kimi_k2(), 7168, 2048, 1, has_bias=True),
)

TorchRouter = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


# ---- the PyTorch peers: each transformers router's forward after `router_logits = F.linear(...)` ----
def torch_router(case: RoutingCase, bias: Optional[torch.Tensor]) -> TorchRouter:
    """logits (T, E) -> (weights (T, k), expert indices (T, k)), exactly as transformers 5.23 computes them."""
    E, k, scale = case.num_experts, case.top_k, case.config.scale
    F = torch.nn.functional

    def mixtral(logits):  # MixtralTopKRouter
        probs = F.softmax(logits.float(), dim=-1)
        top_value, top_index = torch.topk(probs, k, dim=-1)
        top_value /= top_value.sum(dim=-1, keepdim=True)
        return top_value, top_index

    def qwen3_moe(logits):  # Qwen3MoeTopKRouter (norm_topk_prob=True)
        probs = F.softmax(logits, dtype=torch.float, dim=-1)
        top_value, top_index = torch.topk(probs, k, dim=-1)
        top_value /= top_value.sum(dim=-1, keepdim=True)
        return top_value.to(logits.dtype), top_index

    def deepseek_v2(logits):  # DeepseekV2TopkRouter, topk_method="greedy"
        scores = logits.softmax(dim=-1, dtype=torch.float32)
        top_weight, top_index = torch.topk(scores, k=k, dim=-1, sorted=False)
        return top_weight * scale, top_index

    def deepseek_v3(logits):  # DeepseekV3TopkRouter (noaux_tc), norm_topk_prob=True
        G, group_size = case.n_group, E // case.n_group
        scores = logits.sigmoid()
        scores_for_choice = scores + bias
        group_scores = scores_for_choice.view(-1, G, group_size).topk(2, dim=-1)[0].sum(dim=-1)
        group_idx = torch.topk(group_scores, k=case.topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores)
        group_mask.scatter_(1, group_idx, 1)
        score_mask = group_mask.unsqueeze(-1).expand(-1, G, group_size).reshape(-1, E)
        scores_for_choice = scores_for_choice.masked_fill(~score_mask.bool(), float("-inf"))
        top_index = torch.topk(scores_for_choice, k=k, dim=-1, sorted=False)[1]
        top_weight = scores.gather(1, top_index)
        top_weight /= top_weight.sum(dim=-1, keepdim=True) + 1e-20
        return top_weight * scale, top_index

    return {"mixtral": mixtral, "qwen3_moe": qwen3_moe, "deepseek_v2": deepseek_v2,
            "deepseek_v3": deepseek_v3}[case.family]


def transformers_router_module(case: RoutingCase, bias: Optional[np.ndarray]) -> torch.nn.Module:
    """The transformers router of case's family with hidden_size = E and weight = I (logits pass through)."""
    E, k = case.num_experts, case.top_k
    if case.family == "mixtral":
        module = hf_mixtral.MixtralTopKRouter(MixtralConfig(hidden_size=E, num_local_experts=E, num_experts_per_tok=k))
    elif case.family == "qwen3_moe":
        module = hf_qwen3_moe.Qwen3MoeTopKRouter(Qwen3MoeConfig(hidden_size=E, num_experts=E, num_experts_per_tok=k,
                                                                norm_topk_prob=True))
    elif case.family == "deepseek_v2":
        module = hf_deepseek_v2.DeepseekV2TopkRouter(DeepseekV2Config(
            hidden_size=E, n_routed_experts=E, num_experts_per_tok=k, n_group=1, topk_group=1,
            topk_method="greedy", routed_scaling_factor=case.config.scale))
    else:
        module = hf_deepseek_v3.DeepseekV3TopkRouter(DeepseekV3Config(
            hidden_size=E, n_routed_experts=E, num_experts_per_tok=k, n_group=case.n_group,
            topk_group=case.topk_group, routed_scaling_factor=case.config.scale, norm_topk_prob=True))
    with torch.no_grad():
        module.weight.copy_(torch.eye(E))
        if bias is not None:
            module.e_score_correction_bias.copy_(torch.from_numpy(bias))
    return module.eval()


def check_peer(case: RoutingCase, peer: TorchRouter, logits: np.ndarray, bias: Optional[np.ndarray]) -> float:
    """Assert the peer equals the transformers module on these logits (bit for bit); return the fraction
    of tokens for which moepy selects the same expert set (near-ties may differ in the last ulp)."""
    logits_t = torch.from_numpy(logits)
    _, hf_weight, hf_index = transformers_router_module(case, bias)(logits_t)
    weight, index = peer(logits_t)
    if not (torch.equal(weight, hf_weight) and torch.equal(index, hf_index)):
        raise AssertionError(f"{case.model}: the PyTorch peer differs from the transformers router")
    moepy_experts = np.sort(moepy.route(logits, case.config, bias=bias).experts, axis=1)
    agreement = float((moepy_experts == np.sort(index.numpy(), axis=1)).all(axis=1).mean())
    if agreement < 0.99:
        raise AssertionError(f"{case.model}: moepy and PyTorch select different experts ({agreement:.1%} agree)")
    return agreement


# ---- the MoE layer's lower-bound time ----
def layer_lower_bound(case: RoutingCase, tokens: int, bandwidth_gb_s: float, gemm_gflop_s: float) -> tuple[float, str]:
    """(seconds, "memory" or "compute"): the expert FFNs of one layer cannot run faster than reading the
    active experts' fp32 weights once, nor than their GEMM flops at the BLAS rate."""
    E, k, H, I = case.num_experts, case.top_k, case.hidden, case.intermediate
    expert_bytes = 3 * H * I * FP32_BYTES  # gate, up, down
    distinct_routed = min(E, E * (1 - (1 - k / E) ** tokens))  # expected experts hit by uniform routing
    memory_s = (distinct_routed + case.shared_experts) * expert_bytes / (bandwidth_gb_s * 1e9)
    compute_s = 2 * 3 * H * I * (k + case.shared_experts) * tokens / (gemm_gflop_s * 1e9)
    return (memory_s, "memory") if memory_s >= compute_s else (compute_s, "compute")


def bench_cell(case: RoutingCase, tokens: int, bandwidth_gb_s: float, gemm_gflop_s: float,
               min_sample_s: float, repeats: int) -> dict:
    rng = np.random.default_rng(tokens * 1000 + case.num_experts)
    logits = rng.standard_normal((tokens, case.num_experts), dtype=np.float32)
    bias = (0.1 * rng.standard_normal(case.num_experts, dtype=np.float32)) if case.has_bias else None
    logits_t, bias_t = torch.from_numpy(logits), (torch.from_numpy(bias) if bias is not None else None)
    with torch.inference_mode():
        peer = torch_router(case, bias_t)
        agreement = check_peer(case, peer, logits, bias)
        moepy_samples, torch_samples = sample_interleaved(
            [lambda: moepy.route(logits, case.config, bias=bias), lambda: peer(logits_t)], min_sample_s, repeats)
    moepy_s, torch_s = float(np.median(moepy_samples)), float(np.median(torch_samples))
    bound_s, bound_limit = layer_lower_bound(case, tokens, bandwidth_gb_s, gemm_gflop_s)
    speedup, share = torch_s / moepy_s, moepy_s / (moepy_s + bound_s)
    spread = max((max(samples) - min(samples)) / np.median(samples) for samples in (moepy_samples, torch_samples))
    return {
        "model": case.model, "family": case.family, "num_experts": case.num_experts, "top_k": case.top_k,
        "n_group": case.n_group, "topk_group": case.topk_group, "bias": case.has_bias, "tokens": tokens,
        "moepy_s": moepy_s, "torch_s": torch_s, "speedup": speedup,
        "layer_lower_bound_s": bound_s, "layer_bound_by": bound_limit, "router_share_upper_bound": share,
        "meets_speedup_goal": speedup >= MIN_SPEEDUP, "meets_share_goal": share <= MAX_ROUTER_SHARE,
        "expert_set_agreement": agreement, "sample_spread": spread,
        "moepy_samples_s": moepy_samples, "torch_samples_s": torch_samples,
    }


def table_row(r: dict) -> list:
    misses = [f"<{MIN_SPEEDUP:g}x"] * (not r["meets_speedup_goal"]) + \
             [f">{MAX_ROUTER_SHARE:.0%}"] * (not r["meets_share_goal"])
    return [r["model"], r["num_experts"], r["top_k"], r["tokens"], format_seconds(r["moepy_s"]),
            format_seconds(r["torch_s"]), f"{r['speedup']:.1f}x",
            f"{format_seconds(r['layer_lower_bound_s'])} ({r['layer_bound_by']})",
            f"{r['router_share_upper_bound']:.3%}", f"{r['sample_spread']:.0%}", " ".join(misses) or "ok"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no T=65536 (smoke test)")
    parser.add_argument("--threads", type=int, default=2, help="threads for moepy and torch (default 2)")
    args = parser.parse_args()
    token_counts = TOKEN_COUNTS[:-1] if args.quick else TOKEN_COUNTS
    min_sample_s, repeats = 0.02, (5 if args.quick else 15)

    moepy.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    build = moepy.build_info()
    print(f"threads: moepy {moepy.get_num_threads()}, torch {torch.get_num_threads()} | moepy ISA {build['isa']}, "
          f"OpenMP {build['openmp']} | torch {torch.__version__}")

    bandwidth = measure_bandwidth(repeats=3 if args.quick else 7)
    gemm = measure_gemm_rate(repeats=3 if args.quick else 5)
    print(f"memory read bandwidth: {bandwidth['gb_per_s']:.1f} GB/s (np.sum {bandwidth['sum_gb_per_s']:.1f}, "
          f"np.dot {bandwidth['dot_gb_per_s']:.1f}; {bandwidth['megabytes']} MB fp32, best of passes)")
    print(f"fp32 GEMM rate: {gemm['gflop_per_s']:.1f} GFLOP/s (numpy matmul {gemm['n']}^3, best of runs)\n")

    rows = []
    for case in CASES:
        for tokens in token_counts:
            row = bench_cell(case, tokens, bandwidth["gb_per_s"], gemm["gflop_per_s"], min_sample_s, repeats)
            print(f"  {case.model:<16} T={tokens:<6} moepy {format_seconds(row['moepy_s'])}, "
                  f"torch {format_seconds(row['torch_s'])}", flush=True)
            rows.append(row)

    print(f"\nLegend\n  moepy, torch: median seconds per route call over {repeats} interleaved samples of >= "
          f"{min_sample_s * 1e3:g} ms each; speedup = torch / moepy (goal >= {MIN_SPEEDUP:g}x).\n"
          "  layer bound: a LOWER BOUND on the MoE layer's expert FFN time (shared experts included), "
          "max(active expert fp32\n    weight bytes / bandwidth, FFN flops / GEMM rate), so router share = "
          f"moepy / (moepy + layer bound) is an UPPER BOUND\n    on the true share (goal <= {MAX_ROUTER_SHARE:.0%}).\n"
          "  spread: (max - min) / median of the samples, the larger of moepy's and torch's (machine noise).\n")
    print_table(["model", "E", "k", "T", "moepy", "torch", "speedup", "layer bound", "router share", "spread", "goals"],
                [table_row(r) for r in rows])
    misses = [r for r in rows if not (r["meets_speedup_goal"] and r["meets_share_goal"])]
    print(f"\n{len(rows) - len(misses)}/{len(rows)} cells meet both goals.")

    path = write_json("bench_routing_quick" if args.quick else "bench_routing", {
        "benchmark": "routing", "quick": args.quick, "threads": args.threads, "machine": machine_info(),
        "bandwidth": bandwidth, "gemm": gemm,
        "timing": {"statistic": "median", "min_sample_s": min_sample_s, "repeats": repeats, "interleaved": True},
        "goals": {"min_speedup": MIN_SPEEDUP, "max_router_share": MAX_ROUTER_SHARE},
        "rows": rows,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

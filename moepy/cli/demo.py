"""`python -m moepy demo`: the main job on a built-in default.

First the built-in default checkpoint (a small DeepSeek-V3-style MoE trained by scripts/train_builtin.py): its
perplexity on held-out text against the unigram baseline, a generated sample and how its routers behaved; then
routes a batch of random tokens through a DeepSeek-V3-style router (sigmoid, 256 experts, 8 groups,
top-4 groups, top-8, with the auxiliary-loss-free bias learned over a stream of batches) and a
Mixtral-style router (softmax, 8 experts, top-2), and prints expert load, imbalance and throughput.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import moepy


def _time(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class SkewedRouter:
    """A random linear router x -> x W^T + popularity, with a few 'popular' experts, as trained routers show."""

    def __init__(self, rng, experts: int, hidden: int = 64):
        self.rng = rng
        self.hidden = hidden
        self.weight = (rng.standard_normal((experts, hidden)) / np.sqrt(hidden)).astype(np.float32)
        self.popularity = np.zeros(experts, np.float32)
        self.popularity[rng.choice(experts, max(1, experts // 16), replace=False)] = 1.5

    def logits(self, tokens: int) -> np.ndarray:
        x = self.rng.standard_normal((tokens, self.hidden)).astype(np.float32)
        return (x @ self.weight.T + self.popularity).astype(np.float32)


def route_comparison(tokens: int, seed: int = 0, balance_batches: int = 50) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for name, cfg in [("mixtral-8x7b router", moepy.RouterConfig.mixtral(8, 2)),
                      ("deepseek-v3 router", moepy.RouterConfig.deepseek_v3())]:
        E = cfg.num_experts
        router = SkewedRouter(rng, E)
        logits = router.logits(tokens)
        r = moepy.route(logits, cfg)
        s = moepy.balance_stats(r)
        seconds = _time(lambda: moepy.route(logits, cfg))
        row = dict(router=name, experts=E, top_k=cfg.top_k, cv=s.cv, max_over_mean=s.max_over_mean,
                   dead=s.dead_experts, aux_loss=s.aux_loss, tokens_per_s=tokens / seconds)
        rows.append(row)
        if cfg.family == "deepseek_v3":  # the auxiliary-loss-free bias, learned over a stream of batches
            balancer = moepy.BiasBalancer(E, gamma=0.01)
            for _ in range(balance_batches):
                balancer.route(router.logits(tokens), cfg)
            s2 = moepy.balance_stats(moepy.route(logits, cfg, bias=balancer.bias))
            rows.append(dict(row, router=f"{name} + bias ({balance_batches} batches)", cv=s2.cv,
                             max_over_mean=s2.max_over_mean, dead=s2.dead_experts, aux_loss=s2.aux_loss))
    return rows


def layer_comparison(tokens: int, seed: int = 0) -> list[dict]:
    """Throughput of a Mixtral-style and a DeepSeek-V3-style layer at a laptop-friendly width."""
    rows = []
    specs = [("mixtral-style layer", moepy.RouterConfig.mixtral(8, 2), 1024, 3584, {}),
             ("deepseek-v3-style layer", moepy.RouterConfig.deepseek_v3(64, 6, n_group=8, topk_group=4), 1024, 512,
              dict(shared_intermediate_size=512, selection_bias=True))]
    x = np.random.default_rng(seed).standard_normal((tokens, 1024)).astype(np.float32)
    for name, cfg, H, I, extra in specs:
        for dtype in ("float32", "bfloat16"):
            layer = moepy.MoELayer.random(cfg, H, I, seed=seed, dtype=dtype, **extra)
            layer(x)
            seconds = _time(lambda: layer(x), repeat=3)
            shared = extra.get("shared_intermediate_size", 0)
            flops = 2 * 3 * H * (I * cfg.top_k + shared) * tokens
            rows.append(dict(layer=f"{name} {dtype}", shape=f"H{H} I{I} E{cfg.num_experts} k{cfg.top_k}",
                             tokens_per_s=tokens / seconds, gflops=flops / seconds / 1e9))
    return rows


def _positive_int(text: str) -> int:
    """argparse type: an int >= 1 (argparse prints the message and exits 2 otherwise)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def builtin_model_demo(chunks: int = 6, ctx: int = 512) -> bool:
    """Evaluate the built-in default on the first chunks of each held-out domain, print a sample; False when the
    built-in checkpoint (or the tokenizers package) is missing."""
    from ..eval import builtin, evaluate
    from ..nn import MoEModel
    from .eval import print_report
    try:
        path = builtin.path()
        model = MoEModel.from_pretrained(path, progress=False)
    except (ValueError, ImportError, OSError) as exc:
        print(f"(no built-in checkpoint demo: {exc})\n")
        return False
    if model.tokenizer is None:
        return False
    print(f"Built-in checkpoint {builtin.DEFAULT!r} ({path}): {model}")
    for domain in builtin.DOMAINS:
        ids = np.asarray(model.tokenizer.encode(builtin.heldout_text(domain), add_special_tokens=False))
        ids = ids[: chunks * ctx]
        rep = evaluate(model, ids, ctx=ctx, bos=model.tokenizer.bos_token_id if model.tokenizer.adds_bos else None)
        rep["environment"] = {"moepy": moepy.__version__, "isa": moepy.build_info()["isa"],
                              "threads": moepy.get_num_threads()}
        print(f"\nheld-out {domain} ({len(ids)} tokens):")
        print_report(rep)
    prompt = "And God said,"
    text = model.generate(prompt=prompt, max_new_tokens=40)
    print(f"\ngreedy sample: {text!r}")
    g = model.last_generation
    print(f"({g['new_tokens']} tokens, decode {g['decode_tokens_per_second']:.0f} tokens/s)\n")
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m moepy demo", description=__doc__)
    ap.add_argument("--tokens", type=_positive_int, default=8192, help="tokens to route, >= 1 (default 8192)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    info = moepy.build_info()
    print(f"moepy {info['version']}: ISA {info['isa']}, OpenMP {info['openmp']}, {info['num_threads']} threads\n")
    builtin_model_demo()
    print(f"Routing {args.tokens} random tokens (a few experts made popular, as trained routers show)\n")
    header = f"{'router':<38}{'E':>5}{'k':>3}{'CV':>8}{'max/mean':>10}{'dead':>6}{'aux loss':>10}{'Mtok/s':>9}"
    print(header)
    print("-" * len(header))
    for r in route_comparison(args.tokens, args.seed):
        print(f"{r['router']:<38}{r['experts']:>5}{r['top_k']:>3}{r['cv']:>8.3f}{r['max_over_mean']:>10.2f}"
              f"{r['dead']:>6}{r['aux_loss']:>10.3f}{r['tokens_per_s'] / 1e6:>9.2f}")
    print("\nCV: coefficient of variation of tokens per expert; aux loss: E * sum f_i P_i (k under perfect balance).")
    tokens = min(args.tokens, 512)
    print(f"\nMoE layers (router + experts + shared expert), {tokens} tokens\n")
    header = f"{'layer':<34}{'shape':<24}{'tokens/s':>12}{'GFLOP/s':>10}"
    print(header)
    print("-" * len(header))
    for r in layer_comparison(tokens, args.seed):
        print(f"{r['layer']:<34}{r['shape']:<24}{r['tokens_per_s']:>12.0f}{r['gflops']:>10.1f}")
    return 0

"""compare_routing: run a model once per routing scheme over the same text and tabulate what each one changes."""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._progress import bar as progress_bar
from ..eval.perplexity import chunks as make_chunks, kld_stats, perplexity_stats, run_chunks, scored_positions
from ..eval.routing_report import layer_report
from .schemes import Baseline, ExpertChoiceRouting, Scheme, layer_route
from .table import Table

FORMATS = {"ppl": "{:.3f}", "d_ppl": "{:+.2%}", "kld": "{:.5f}", "same_top": "{:.2%}", "k_per_token": "{:.2f}",
           "dropped": "{:.2%}", "unrouted": "{:.2%}", "cv": "{:.3f}", "max_mean": "{:.2f}", "dead": "{:d}",
           "entropy": "{:.3f}", "tok_s": "{:,.0f}"}


@contextlib.contextmanager
def applied(model, scheme: Scheme):
    """Run `model` under `scheme` inside the block (its routers and route hooks restored after, even on error)."""
    moe = model.moe_layers
    saved = {i: (layer.router, layer.route_hook) for i, layer in moe.items()}
    try:
        model.set_router(lambda i, r: scheme.router(i, moe[i], r))
        if scheme.overrides_route():
            for i, layer in moe.items():
                layer.route_hook = _hook(scheme, i)
        yield
    finally:
        for i, (router, hook) in saved.items():
            moe[i].router, moe[i].route_hook = router, hook
        scheme.end_run()


def _hook(scheme: Scheme, index: int):
    def hook(layer, x, logits):
        r = scheme.route(index, layer, x, logits)
        return layer_route(layer, x, logits) if r is None else r
    return hook


class RoutingComparison:
    """The result of compare_routing: `table` (a moepy.experiments.Table, one row per scheme: perplexity, its
    change, KLD against the model's own routing and the same-top-token rate, experts per token, dropped slots,
    tokens no routed expert took, CV / max-mean / dead experts / entropy of the load averaged over MoE layers
    (dead summed), tokens/s); `counts[name]` {layer: (E,) slots per expert}; `nll[name]` (N,) per scored token;
    `layers[name]` the per-layer report (moepy.eval.routing_report.layer_report dicts)."""

    def __init__(self, table: Table, counts: Dict[str, Dict[int, np.ndarray]], nll: Dict[str, np.ndarray],
                 layers: Dict[str, List[dict]]):
        self.table, self.counts, self.nll, self.layers = table, counts, nll, layers

    def per_layer(self, name: str) -> Table:
        """The per-layer balance of scheme `name` as a Table."""
        reps = self.layers[name]
        return Table({"layer": [r["layer"] for r in reps], "cv": [r["cv"] for r in reps],
                      "max_mean": [r["max_over_mean"] for r in reps], "dead": [r["dead"] for r in reps],
                      "entropy": [r["entropy_fraction"] for r in reps], "dropped": [r["drop_rate"] for r in reps]},
                     FORMATS, title=name)

    def to_dict(self) -> Dict[str, np.ndarray]:
        """The table as {column: array}."""
        return self.table.to_dict()

    def __getitem__(self, column: str) -> np.ndarray:
        return self.table[column]

    def __str__(self):
        return str(self.table)

    __repr__ = __str__

    def _repr_html_(self):
        return self.table._repr_html_()


def compare_routing(model, ids, schemes: Sequence[Scheme], *, ctx: int = 256, max_chunks: Optional[int] = None,
                    bos: Optional[int] = None, score_all: bool = False, progress: bool = False) -> RoutingComparison:
    """Run `model` over token ids once with its own routing and once per scheme; tabulate each run.

    ids (N,) are cut into chunks of ctx tokens, each run from an empty cache and scored in llama-perplexity's
    convention (moepy.eval.perplexity; score_all scores every position). max_chunks limits the chunks. The
    baseline row (the model's own routing) comes first; KLD and same-top are against it (float16 log-probs, so a
    scheme that changes nothing gives exactly 0 and 100%). The model is left as it was."""
    schemes = list(schemes)
    bad = [s for s in schemes if not isinstance(s, Scheme)]
    if bad:
        raise TypeError(f"schemes must be moepy.experiments.Scheme objects, got {type(bad[0]).__name__}")
    if isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 4:
        raise ValueError(f"ctx must be an int >= 4, got {ctx!r}")
    if ctx > model.spec.max_position_embeddings:
        raise ValueError(f"ctx {ctx} exceeds the model's {model.spec.max_position_embeddings} positions")
    ids = np.asarray(ids).reshape(-1)
    if ids.dtype.kind not in "iu" or (ids.size and (ids.min() < 0 or ids.max() >= model.vocab_size)):
        raise ValueError(f"ids must be integer token ids in [0, {model.vocab_size})")
    chunked = make_chunks(ids.astype(np.int64), ctx, bos)
    if max_chunks is not None:
        chunked = chunked[:max_chunks]
    if len(chunked) == 0:
        raise ValueError(f"ids has {ids.size} tokens, fewer than one chunk of ctx {ctx}")
    positions = scored_positions(ctx, score_all)
    if not any(isinstance(s, Baseline) for s in schemes):
        schemes = [Baseline()] + schemes
    names = [s.name for s in schemes]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"schemes must have distinct names; repeated: {sorted(dup)}")
    base = next(s for s in schemes if isinstance(s, Baseline))
    order = [base] + [s for s in schemes if s is not base]
    runs = {}
    bar = progress_bar(len(order) * len(chunked), "schemes", progress, unit="chunk")
    try:
        for s in order:
            runs[s.name] = _run(model, s, chunked, positions, bar)
    finally:
        if bar is not None:
            bar.close()
    base_lp, targets = runs[base.name][1], runs[base.name][2]
    cols: Dict[str, list] = {k: [] for k in ["scheme", *FORMATS]}
    counts, nll, layers = {}, {}, {}
    base_ppl = runs[base.name][0]["perplexity"]
    for s in schemes:
        stats, lp, _, reps, per_token, seconds, n_tok, token_nll = runs[s.name]
        kl = kld_stats(base_lp, lp, targets)
        cols["scheme"].append(s.name)
        cols["ppl"].append(stats["perplexity"])
        cols["d_ppl"].append(stats["perplexity"] / base_ppl - 1.0)
        cols["kld"].append(kl["kld_mean"])
        cols["same_top"].append(kl["same_top_p"])
        cols["k_per_token"].append(per_token[0])
        cols["dropped"].append(float("nan") if isinstance(s, ExpertChoiceRouting) else
                               float(np.mean([r["drop_rate"] for r in reps])))
        cols["unrouted"].append(per_token[1])
        cols["cv"].append(float(np.mean([r["cv"] for r in reps])))
        cols["max_mean"].append(float(np.mean([r["max_over_mean"] for r in reps])))
        cols["dead"].append(int(sum(r["dead"] for r in reps)))
        cols["entropy"].append(float(np.mean([r["entropy_fraction"] for r in reps])))
        cols["tok_s"].append(n_tok / seconds if seconds else float("nan"))
        counts[s.name] = {r["layer"]: r.pop("_counts") for r in reps}
        nll[s.name] = token_nll
        layers[s.name] = reps
    return RoutingComparison(Table(cols, FORMATS), counts, nll, layers)


def _run(model, scheme: Scheme, chunked: np.ndarray, positions: np.ndarray, bar) -> Tuple:
    scheme.prepare(model, chunked)
    with applied(model, scheme):
        res = run_chunks(model, chunked, positions, keep_logprobs=True, return_routing=True,
                         progress=bar.update if bar is not None else None)
    nll = np.concatenate(res.nll)
    reps = []
    active = np.zeros(chunked.size)  # per token: routed experts that processed it, summed over MoE layers
    none = np.zeros(chunked.size)    # per token: MoE layers where no routed expert processed it
    for i, layer in model.moe_layers.items():
        rs = [c[i] for c in res.routing]
        rep = layer_report(rs, layer.num_experts)
        rep["layer"] = i
        kept = [r.kept for r in rs]  # K may vary
        rep["_counts"] = sum(np.bincount(r.experts[k], minlength=layer.num_experts) for r, k in zip(rs, kept))
        per_tok = np.concatenate([k.sum(axis=1) for k in kept])
        active += per_tok
        none += per_tok == 0
        reps.append(rep)
    L = max(len(reps), 1)
    per_token = (float(active.mean() / L), float(none.mean() / L))
    return (perplexity_stats(nll), np.concatenate(res.logprobs), np.concatenate(res.targets), reps, per_token,
            res.seconds, res.tokens_run, nll)


@contextlib.contextmanager
def routing_hooks(model, route: Callable):
    """Within the block every MoE layer i of the model routes by route(i, layer, x, logits) -> Routing; the layers'
    own route hooks are restored after, even on error."""
    moe = model.moe_layers
    saved = {i: layer.route_hook for i, layer in moe.items()}
    try:
        for i, layer in moe.items():
            layer.route_hook = (lambda i: lambda layer, x, logits: route(i, layer, x, logits))(i)
        yield
    finally:
        for i, layer in moe.items():
            layer.route_hook = saved[i]


def observe_routing(model, chunks: np.ndarray, seen: Callable) -> None:
    """Run the model over chunks (n, ctx) with its own routing, calling seen(layer_index, layer, x, routing) at every
    MoE layer call (x as the layer got it); the layers' route hooks are restored after, even on error."""
    def observe(i, layer, x, logits):
        r = layer_route(layer, x, logits)
        seen(i, layer, x, r)
        return r

    with routing_hooks(model, observe):
        for c in chunks:
            model(c)


def collect_saliency(model, chunks: np.ndarray, reap: bool = True) -> Tuple[Dict[int, np.ndarray], Dict[int, np.ndarray]]:
    """Run the model's own routing over chunks (n, ctx) and return, per MoE layer, the frequency (E,) slots each
    expert took and (reap=True) the REAP saliency (E,): the mean over the tokens routed to an expert of gate weight
    x ||expert output||_2 (0 for an expert no token reached)."""
    moe = model.moe_layers
    freq = {i: np.zeros(l.num_experts, np.int64) for i, l in moe.items()}
    sal = {i: np.zeros(l.num_experts, np.float64) for i, l in moe.items()}

    def seen(i, layer, x, r):
        kept = r.kept
        e = r.experts[kept]
        freq[i] += np.bincount(e, minlength=layer.num_experts)
        if reap and e.size:
            x2 = x.reshape(-1, layer.hidden_size)
            rows = np.nonzero(kept)[0]
            y = layer.run_experts(np.ascontiguousarray(x2[rows]), np.ones((e.size, 1), np.float32),
                                  e.reshape(-1, 1).astype(np.int32), include_shared=False)
            norms = np.sqrt((y.astype(np.float64) ** 2).sum(axis=1))
            sal[i] += np.bincount(e, weights=r.weights[kept] * norms, minlength=layer.num_experts)

    observe_routing(model, chunks, seen)
    reap_s = {i: np.where(freq[i] > 0, sal[i] / np.maximum(freq[i], 1), 0.0) for i in moe}
    return freq, reap_s

"""How much of a changed model's divergence comes from its routers choosing other experts.

A quantized (or pruned, or otherwise changed) MoE model drifts from its reference in two ways: each expert computes
a slightly different function, and the changed hidden states make later routers pick other experts. routing_drift
runs both models over the same chunks and measures, against the reference's log-probabilities (KLD in
llama-perplexity's convention, moepy.eval.perplexity): the model as it is, and the model with the reference's
routing of every MoE layer replayed into it (same experts, same combine weights), which leaves only the experts'
own error. The difference is the share of the divergence the routing changes cause; per layer, the rate at which a
token's set of experts (and its first choice) differs from the reference's.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .perplexity import chunks as make_chunks, kld_stats, log_softmax, scored_positions


def _selected(r) -> list:
    """Per token, the frozenset of experts that received it (dropped slots excluded)."""
    return [frozenset(row[k].tolist()) for row, k in zip(np.asarray(r.experts), r.kept)]


def _run(model, chunk, replay=None):
    """(logits of one chunk, {layer: Routing it used}): each MoE layer's own routing, or replay[layer]'s."""
    from ..experiments.compare import layer_route, routing_hooks
    seen = {}

    def record(i, layer, x, logits):
        seen[i] = r = layer_route(layer, x, logits) if replay is None else replay[i]
        return r
    with routing_hooks(model, record):
        logits = model(chunk)
    return logits, seen


def routing_drift(reference, model, ids, *, ctx: int = 512, bos: Optional[int] = None,
                  max_chunks: Optional[int] = None, score_all: bool = False) -> Dict[str, object]:
    """Split the divergence of `model` from `reference` (two MoEModels with the same MoE layers and experts, e.g. a
    checkpoint and its quantized copy) on token ids into the experts' own error and the routing changes.

    ids are cut into chunks of ctx (each chunk's first token set to bos unless None), the first max_chunks kept.
    Returns {"kld_mean": KLD of the model as it is, "kld_mean_replayed": KLD with the reference's routing replayed
    into every MoE layer, "routing_share": 1 - replayed / as is (the part the routing changes cause),
    "same_top_p" / "same_top_p_replayed", "layers": {layer: {"changed_set_rate": share of tokens whose set of
    experts differs from the reference's, "changed_first_rate": share whose first choice differs}}, "chunks"}."""
    for name, m in (("reference", reference), ("model", model)):
        if not hasattr(m, "moe_layers") or not hasattr(m, "spec"):
            raise TypeError(f"{name} must be a MoEModel, got {type(m).__name__}")
    ref_layers, layers = reference.moe_layers, model.moe_layers
    if sorted(ref_layers) != sorted(layers):
        raise ValueError(f"model: its MoE layers {sorted(layers)} are not the reference's {sorted(ref_layers)}")
    for i in layers:
        if layers[i].num_experts != ref_layers[i].num_experts:
            raise ValueError(f"model: layer {i} has {layers[i].num_experts} experts, the reference "
                             f"{ref_layers[i].num_experts}")
    if isinstance(ctx, bool) or not isinstance(ctx, (int, np.integer)) or ctx < 4:
        raise ValueError(f"ctx must be an int >= 4, got {ctx!r}")
    longest = min(reference.spec.max_position_embeddings, model.spec.max_position_embeddings)
    if ctx > longest:
        raise ValueError(f"ctx {ctx} is beyond the models' {longest} positions")
    if max_chunks is not None and (isinstance(max_chunks, bool) or not isinstance(max_chunks, (int, np.integer))
                                   or max_chunks < 1):
        raise ValueError(f"max_chunks must be an int >= 1 or None, got {max_chunks!r}")
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"ids must be integer token ids, got an array of {ids.dtype}")
    chunked = make_chunks(ids.astype(np.int64).reshape(-1), int(ctx), bos)
    if max_chunks is not None:
        chunked = chunked[: int(max_chunks)]
    if len(chunked) == 0:
        raise ValueError(f"ids: fewer than one chunk of ctx {ctx} tokens")
    pos = scored_positions(int(ctx), score_all)
    base, own, replayed, targets = [], [], [], []
    changed = {i: [0, 0] for i in layers}
    n_tok = 0
    for c in chunked:
        ref_logits, ref_routing = _run(reference, c)
        logits, routing = _run(model, c)
        rep_logits, _ = _run(model, c, ref_routing)
        for lp, out in ((ref_logits, base), (logits, own), (rep_logits, replayed)):
            out.append(log_softmax(lp[pos]).astype(np.float16))  # rounded as evaluate's saved log-probs
        targets.append(c[pos + 1])
        for i in layers:
            a, b = ref_routing[i], routing[i]
            changed[i][0] += sum(x != y for x, y in zip(_selected(a), _selected(b)))
            changed[i][1] += int(np.count_nonzero(np.asarray(a.experts)[:, 0] != np.asarray(b.experts)[:, 0]))
        n_tok += len(c)
    base, tgt = np.concatenate(base), np.concatenate(targets)
    k_own = kld_stats(base, np.concatenate(own), tgt)
    k_rep = kld_stats(base, np.concatenate(replayed), tgt)
    kl, kl_rep = k_own["kld_mean"], k_rep["kld_mean"]
    return {"kld_mean": kl, "kld_mean_replayed": kl_rep, "routing_share": 1.0 - kl_rep / kl if kl > 0 else 0.0,
            "same_top_p": k_own["same_top_p"], "same_top_p_replayed": k_rep["same_top_p"],
            "layers": {i: {"changed_set_rate": s / n_tok, "changed_first_rate": f / n_tok}
                       for i, (s, f) in sorted(changed.items())},
            "chunks": len(chunked)}

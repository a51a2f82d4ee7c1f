"""Evaluation under expert parallelism: chunks dealt round-robin to the ranks, results gathered in chunk order.

Round i: rank r runs chunk i R + r (a rank past the last chunk takes part in the exchanges with no tokens), so
every rank calls its MoE layers equally often. Each chunk runs alone from an empty cache, as one process runs it,
and its per-token results are gathered to rank 0 in chunk order: the perplexity, the KLD and the routing report are
those of one process, bit for bit.
"""
from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np

from ..eval.perplexity import ChunkResult, run_chunks


def run_chunks_parallel(model, chunked: np.ndarray, positions: np.ndarray, *, keep_logprobs: bool,
                        return_routing: bool, progress: Optional[Callable] = None) -> Optional[ChunkResult]:
    """run_chunks over the ranks of model.expert_parallel: the ChunkResult of every chunk on rank 0 (None on
    the other ranks). Routing entries carry the experts and dropped slots of each MoE layer."""
    ep = model.expert_parallel
    R, me = ep.size, ep.rank
    n = len(chunked)
    mine, ids = [], []
    t0 = time.perf_counter()
    for rnd in range(-(-n // R)):
        c = rnd * R + me
        if c < n:
            mine.append(run_chunks(model, chunked[c:c + 1], positions, keep_logprobs=keep_logprobs,
                                   return_routing=return_routing))
            ids.append(c)
        else:
            model.idle_forward()
        if progress is not None:
            progress()
    seconds = time.perf_counter() - t0
    layers = sorted(model.moe_layers)
    arrays = [np.array(ids, np.int64)]
    for part in mine:
        arrays += [part.nll[0], part.targets[0]]
        if keep_logprobs:
            arrays.append(part.logprobs[0])
        if return_routing:
            for i in layers:
                r = part.routing[0][i]
                arrays.append(r.experts)
                arrays.append(np.zeros(0, bool) if r.dropped is None else r.dropped)
    every = ep.group.gather_arrays(arrays, "gathering the chunk results")
    if every is None:
        return None
    res = ChunkResult()
    by_chunk = {}
    for part in every:
        chunk_ids, rest = part[0], part[1:]
        per = 2 + keep_logprobs + 2 * len(layers) * return_routing
        for j, c in enumerate(chunk_ids):
            by_chunk[int(c)] = rest[j * per:(j + 1) * per]
    for c in range(n):
        items = list(by_chunk[c])
        res.nll.append(items.pop(0))
        res.targets.append(items.pop(0))
        if keep_logprobs:
            res.logprobs.append(items.pop(0))
        if return_routing:
            rt = {}
            for i in layers:
                ex, dr = items.pop(0), items.pop(0)
                rt[i] = SimpleNamespace(experts=ex, dropped=dr if dr.size else None)
            res.routing.append(rt)
    res.seconds, res.tokens_run = seconds, int(chunked.size)
    return res


def parallel_report(model, peak_rss: int) -> dict:
    """Per MoE layer, the rows and bytes all ranks sent to other ranks (dispatch and combine), the exchange
    seconds (the slowest rank), and every rank's peak RSS and routed-expert bytes: the same dict on every rank."""
    ep = model.expert_parallel
    mine = {"stats": {str(k): v for k, v in ep.stats.items()}, "peak_rss_bytes": int(peak_rss),
            "routed_bytes": int(sum(l.nbytes()["routed"] for l in model.moe_layers.values())),
            "experts": {str(i): [int(e) for e in l.local_ids] for i, l in model.moe_layers.items()}}
    every = ep.group.allgather_json(mine, "gathering the expert-parallel report")
    layers = {}
    for i in sorted(model.moe_layers):
        st = [r["stats"].get(str(i), {}) for r in every]
        layers[str(i)] = {k: int(sum(s.get(k, 0) for s in st)) for k in
                          ("dispatch_rows", "dispatch_bytes", "combine_rows", "combine_bytes")}
        layers[str(i)]["seconds_max"] = max(s.get("seconds", 0.0) for s in st)
        layers[str(i)]["comm_seconds_max"] = max(s.get("comm_seconds", 0.0) for s in st)
        layers[str(i)]["calls"] = int(st[0].get("calls", 0))
    return {"ranks": ep.size, "peak_rss_bytes": [r["peak_rss_bytes"] for r in every],
            "routed_bytes": [r["routed_bytes"] for r in every],
            "experts_per_rank": {i: [len(r["experts"][i]) for r in every] for i in every[0]["experts"]},
            "layers": layers}


def predicted_dispatch_bytes(model, routing_per_chunk, num_ranks: int) -> dict:
    """{layer: the dispatch bytes moepy.sim.dispatch predicts} for the chunks' routing with chunk c's tokens on
    rank c % num_ranks (as run_chunks_parallel deals them) and the layer's placement: what the run must have
    moved (rows of H float32, once per token and destination rank, the token's own rank excluded). None for a
    layer whose router dropped slots (moepy.sim takes a routing without drops)."""
    from ..sim import dispatch
    out = {}
    for i, layer in model.moe_layers.items():
        experts = [np.asarray(c[i].experts) for c in routing_per_chunk]
        if any(c[i].dropped is not None and c[i].dropped.any() for c in routing_per_chunk):
            out[i] = None
            continue
        device = np.concatenate([np.full(len(e), c % num_ranks) for c, e in enumerate(experts)])
        rep = dispatch(np.concatenate(experts).astype(np.int64), layer.placement.sim, device,
                       4 * model.spec.hidden_size)
        out[i] = int(rep.bytes.sum() - rep.local_bytes)
    return out

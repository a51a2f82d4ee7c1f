"""How the routers behaved over an evaluated text, per MoE layer.

load: each expert's share of the routed slots (sums to 1); cv: coefficient of variation of the slot counts;
max_over_mean; entropy_fraction: entropy of `load` over log E (1 = uniform); dead / cold: experts given under
0.1% / 0.5% of the slots; drop_rate: share of slots refused by a capacity limit; same_expert_rate_first /
_any: the Mixtral paper's (section 5) rate at which consecutive tokens keep their first-choice expert / share
any expert, beside what independent routing would give: random_first = sum_e f_e^2 (f the first-choice shares:
two independent first choices drawn from the observed loads agree with this probability), random_any =
1 - C(E - k, k) / C(E, k) (two independent uniformly random top-k sets share an expert).
"""
from __future__ import annotations

import math
from typing import Dict, List

import numpy as np

DEAD, COLD = 0.001, 0.005


def layer_report(routings: List, num_experts: int) -> Dict[str, object]:
    """The report of one layer from its Routing per chunk (consecutive pairs are counted within a chunk)."""
    E = num_experts
    counts = np.zeros(E, np.int64)
    first = np.zeros(E, np.int64)
    slots = dropped = 0
    same_first = same_any = pairs = 0
    for r in routings:
        ex = np.asarray(r.experts)
        # r: a Routing, or only its experts / dropped gathered from the ranks (moepy.parallel.run): no Routing.kept
        keep = np.ones(ex.shape, bool) if r.dropped is None else ~np.asarray(r.dropped)
        counts += np.bincount(ex[keep], minlength=E)
        first += np.bincount(ex[:, 0], minlength=E)
        slots += ex.size
        dropped += int((~keep).sum())
        if len(ex) > 1:
            a, b = ex[:-1], ex[1:]
            same_first += int((a[:, 0] == b[:, 0]).sum())
            overlap = (a[:, :, None] == b[:, None, :]).any(axis=(1, 2))
            same_any += int(overlap.sum())
            pairs += len(a)
    total = max(int(counts.sum()), 1)
    load = counts / total
    mean = counts.mean()
    nz = load[load > 0]
    k = routings[0].experts.shape[1] if routings else 1
    f1 = first / max(int(first.sum()), 1)
    return {"load": load.tolist(), "cv": float(counts.std() / mean) if mean else 0.0,
            "max_over_mean": float(counts.max() / mean) if mean else 0.0,
            "entropy_fraction": float(-(nz * np.log(nz)).sum() / math.log(E)) if E > 1 else 1.0,
            "dead": int((load < DEAD).sum()), "cold": int((load < COLD).sum()),
            "drop_rate": dropped / slots if slots else 0.0,
            "same_expert_rate_first": same_first / pairs if pairs else float("nan"),
            "random_first": float((f1 ** 2).sum()),
            "same_expert_rate_any": same_any / pairs if pairs else float("nan"),
            "random_any": float(1.0 - math.comb(E - k, k) / math.comb(E, k)) if E >= 2 * k else 1.0,
            "top_k": int(k), "num_experts": int(E)}


def routing_report(per_chunk: List[dict], num_experts: Dict[int, int]) -> List[Dict[str, object]]:
    """One report per MoE layer (ascending), from the {layer: Routing} of each evaluated chunk."""
    out = []
    for i in sorted(num_experts):
        rep = layer_report([c[i] for c in per_chunk], num_experts[i])
        out.append({"layer": i, **rep})
    return out

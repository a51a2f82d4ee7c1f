"""Routing measures over a Trace: load and balance, co-activation, cross-layer transitions, consecutive tokens,
vocabulary and domain specialization, router agreement, coverage. NumPy arrays and small dataclasses.

Every measure counts the router's selections (trace.experts), dropped slots included, unless it says otherwise
(load / balance take kept=True to count only the slots a capacity limit kept). Legend: T tokens, L MoE layers
(trace.layers, ascending), E experts, K top-k, D domains, N token ids. Arrays over layers with different E are
padded with NaN to the largest E.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .trace import FINGERPRINT_KEYS, Trace


def _check_trace(trace, name: str = "trace") -> Trace:
    if not isinstance(trace, Trace):
        raise TypeError(f"{name} must be a moepy.analysis.Trace, got {type(trace).__name__}")
    return trace


def _pair_counts(xa: np.ndarray, xb: np.ndarray, Ea: int, Eb: int, skip_same_slot: bool = False) -> np.ndarray:
    """(Ea, Eb) float64: over tokens t and slot pairs (i, j), how often xa[t, i] = a and xb[t, j] = b (xa (T, Ka),
    xb (T, Kb); skip_same_slot: leave out i == j). Bincounts over the slot pairs, no (T, E) matrix."""
    out = np.zeros(Ea * Eb, np.int64)
    for i in range(xa.shape[1]):
        for j in range(xb.shape[1]):
            if skip_same_slot and i == j:
                continue
            out += np.bincount(xa[:, i].astype(np.int64) * Eb + xb[:, j], minlength=Ea * Eb)
    return out.reshape(Ea, Eb).astype(np.float64)


def _counts(trace: Trace, layer: int, kept: bool = False, tokens: Optional[np.ndarray] = None) -> np.ndarray:
    """(E,) int64 slots per expert at `layer` (tokens: a (T,) bool mask of the tokens to count)."""
    ex = trace.experts[layer]
    keep = np.ones(ex.shape, bool)
    if kept and trace.dropped[layer] is not None:
        keep &= ~trace.dropped[layer]
    if tokens is not None:
        keep &= tokens[:, None]
    return np.bincount(ex[keep], minlength=trace.num_experts(layer)).astype(np.int64)


def _share(c: np.ndarray) -> np.ndarray:
    tot = c.sum()
    return c / tot if tot else np.full(len(c), np.nan)


def _pad(rows: List[np.ndarray]) -> np.ndarray:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def load(trace: Trace, kept: bool = False) -> np.ndarray:
    """(L, E) float64: each expert's share of its layer's routed slots (rows sum to 1; NaN rows for an empty
    trace). kept: count only the slots a capacity limit kept."""
    _check_trace(trace)
    return _pad([_share(_counts(trace, l, kept)) for l in trace.layers])


@dataclass
class Balance:
    """Per-layer balance of the load. layers (L,); load_over_uniform (L, E): load / (1/E) (1 = the uniform
    share); cv (L,): coefficient of variation (std / mean) of the slot counts; max_over_mean (L,); entropy_ratio
    (L,): entropy of the load / log E (1 = uniform); dead (L,) int: experts given no slot; cold (L,) int: experts
    under `cold` x the uniform share (the dead included)."""

    layers: List[int]
    load_over_uniform: np.ndarray
    cv: np.ndarray
    max_over_mean: np.ndarray
    entropy_ratio: np.ndarray
    dead: np.ndarray
    cold: np.ndarray


def balance(trace: Trace, cold: float = 0.1, kept: bool = False) -> Balance:
    """The Balance of each MoE layer (see Balance); cold: the fraction of the uniform share 1/E under which an
    expert counts as cold."""
    _check_trace(trace)
    if not (isinstance(cold, (int, float)) and 0 <= cold <= 1):
        raise ValueError(f"cold must be a number in [0, 1], got {cold!r}")
    rel, cv, mom, ent, dead, n_cold = [], [], [], [], [], []
    for l in trace.layers:
        c = _counts(trace, l, kept)
        E = len(c)
        p = _share(c)
        rel.append(p * E)
        mean = c.mean()
        cv.append(c.std() / mean if mean else np.nan)
        mom.append(c.max() / mean if mean else np.nan)
        nz = p[p > 0]
        ent.append(float(-(nz * np.log(nz)).sum() / math.log(E)) if E > 1 and mean else (1.0 if mean else np.nan))
        dead.append(int((c == 0).sum()))
        n_cold.append(int((p * E < cold).sum()) if mean else E)
    return Balance(trace.layers, _pad(rel), np.array(cv), np.array(mom), np.array(ent), np.array(dead),
                   np.array(n_cold))


def coactivation(trace: Trace, layer: int) -> np.ndarray:
    """(E, E) float64 P(b | a): among the tokens whose top-k holds a, the share whose top-k also holds b (any two
    of the k slots, not only adjacent ranks). The diagonal is 0; a row is NaN when no token selected a. Each row
    sums to K - 1."""
    _check_trace(trace)
    E = trace.num_experts(layer)
    ex = trace.experts[layer]
    co = _pair_counts(ex, ex, E, E, skip_same_slot=True)  # experts are unique per row: the diagonal stays 0
    n = np.bincount(ex.reshape(-1), minlength=E).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = co / n[:, None]
    out[n == 0] = np.nan
    return out


def _next_layer(trace: Trace, layer_a: int) -> int:
    L = trace.layers
    i = trace._pos(layer_a)
    if i + 1 >= len(L):
        raise ValueError(f"layer_a: {layer_a} is the last MoE layer ({L}); there is no next one")
    return L[i + 1]


def cross_layer(trace: Trace, layer_a: int, layer_b: Optional[int] = None, any_choice: bool = False) -> np.ndarray:
    """(E_a, E_b) float64 P(expert b at layer_b | expert a at layer_a) over the same tokens; layer_b defaults to
    the next MoE layer. First choices (rows sum to 1), or with any_choice among the tokens whose top-k at
    layer_a holds a, the share whose top-k at layer_b holds b (rows sum to K_b). NaN rows for unused a."""
    _check_trace(trace)
    if layer_b is None:
        layer_b = _next_layer(trace, layer_a)
    Ea, Eb = trace.num_experts(layer_a), trace.num_experts(layer_b)
    xa, xb = trace.experts[layer_a], trace.experts[layer_b]
    if not any_choice:
        xa, xb = xa[:, :1], xb[:, :1]
    co = _pair_counts(xa, xb, Ea, Eb)
    n = np.bincount(xa.reshape(-1), minlength=Ea).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = co / n[:, None]
    out[n == 0] = np.nan
    return out


def consecutive_pairs(trace: Trace) -> np.ndarray:
    """(T - 1,) bool: token t and t + 1 are consecutive (same chunk, same domain)."""
    _check_trace(trace)
    T = trace.num_tokens
    ok = np.ones(max(T - 1, 0), bool)
    starts = trace.chunk_starts[trace.chunk_starts > 0]
    ok[starts - 1] = False
    if T > 1:
        ok &= trace.domains[1:] == trace.domains[:-1]
    return ok


@dataclass
class Consecutive:
    """How often consecutive tokens keep their experts (the Mixtral paper, section 5), per layer (L,): first
    (token t and t + 1 have the same first choice), any (their top-k sets intersect); random_first = 1/E and
    random_any = 1 - C(E-K, K) / C(E, K): independent uniform routing; random_first_load = sum_e f_e^2 with f the
    observed first-choice shares (independent routing with the observed imbalance); pairs: consecutive pairs
    counted (pairs across chunk or domain boundaries are not)."""

    layers: List[int]
    first: np.ndarray
    any: np.ndarray
    random_first: np.ndarray
    random_any: np.ndarray
    random_first_load: np.ndarray
    pairs: int


def consecutive_same_expert(trace: Trace) -> Consecutive:
    """The Consecutive rates of each MoE layer, within chunks only."""
    ok = consecutive_pairs(trace)
    n = int(ok.sum())
    first, any_, rf, ra, rl = [], [], [], [], []
    for l in trace.layers:
        ex = trace.experts[l]
        E, K = trace.num_experts(l), trace.top_k(l)
        a, b = ex[:-1][ok], ex[1:][ok]
        first.append(float((a[:, 0] == b[:, 0]).mean()) if n else np.nan)
        any_.append(float((a[:, :, None] == b[:, None, :]).any(axis=(1, 2)).mean()) if n else np.nan)
        rf.append(1.0 / E)
        ra.append(1.0 - math.comb(E - K, K) / math.comb(E, K))
        f = _share(np.bincount(ex[:, 0], minlength=E))
        rl.append(float((f ** 2).sum()))
    return Consecutive(trace.layers, np.array(first), np.array(any_), np.array(rf), np.array(ra), np.array(rl), n)


@dataclass
class VocabSpecialization:
    """Per token id seen at least min_count times (ordered by count, most frequent first): token_ids (N,), counts
    (N,) its occurrences, expert (N,) the expert it is most often routed to (ties: the lower index), share (N,)
    the share of its occurrences routed there; mean_share: share averaged over tokens weighted by count; uniform:
    what uniform routing would give for a frequent token (1/E for first choices, K/E for any choice)."""

    token_ids: np.ndarray
    counts: np.ndarray
    expert: np.ndarray
    share: np.ndarray
    mean_share: float
    uniform: float


def _token_expert_counts(trace: Trace, layer: int, any_choice: bool):
    ex = trace.experts[layer] if any_choice else trace.experts[layer][:, :1]
    E = trace.num_experts(layer)
    keys = np.repeat(trace.ids.astype(np.int64), ex.shape[1]) * E + ex.reshape(-1)
    uniq, c = np.unique(keys, return_counts=True)
    return uniq // E, uniq % E, c


def vocab_specialization(trace: Trace, layer: int, min_count: int = 5, any_choice: bool = False
                         ) -> VocabSpecialization:
    """The VocabSpecialization of `layer` (OLMoE's vocabulary specialization): for each token id with at least
    min_count occurrences, the expert its first choice (any_choice: any of its top-k) most often is and how often."""
    _check_trace(trace)
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
    tid, ex, c = _token_expert_counts(trace, layer, any_choice)
    order = np.lexsort((ex, -c, tid))  # per token: the largest count first, ties to the lower expert
    tid, ex, c = tid[order], ex[order], c[order]
    head = np.ones(len(tid), bool)
    head[1:] = tid[1:] != tid[:-1]
    tid, ex, c = tid[head], ex[head], c[head]
    _, occ = np.unique(trace.ids, return_counts=True)  # the same distinct ids as tid, ascending
    keep = occ >= min_count
    tid, ex, c, occ = tid[keep], ex[keep], c[keep], occ[keep]
    order = np.lexsort((tid, -occ))
    tid, ex, c, occ = tid[order], ex[order], c[order], occ[order]
    share = c / occ if len(occ) else np.zeros(0)
    E, K = trace.num_experts(layer), trace.top_k(layer)
    mean = float((share * occ).sum() / occ.sum()) if len(occ) else float("nan")
    return VocabSpecialization(tid.astype(np.int64), occ.astype(np.int64), ex.astype(np.int64), share, mean,
                               (K if any_choice else 1) / E)


@dataclass
class TopTokens:
    """The token ids most often routed to one expert: ids (n,), counts (n,) the times they were routed there,
    share (n,) of their occurrences in the trace."""

    ids: np.ndarray
    counts: np.ndarray
    share: np.ndarray


def top_tokens(trace: Trace, layer: int, expert: int, n: int = 10, any_choice: bool = False) -> TopTokens:
    """The n ids most often routed (first choice; any_choice: any of the top-k) to `expert` at `layer` (ties: the
    lower id first)."""
    _check_trace(trace)
    E = trace.num_experts(layer)
    if isinstance(expert, bool) or not isinstance(expert, (int, np.integer)) or not 0 <= expert < E:
        raise ValueError(f"expert must be an int in [0, {E}), got {expert!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    tid, ex, c = _token_expert_counts(trace, layer, any_choice)
    sel = ex == expert
    tid, c = tid[sel], c[sel]
    order = np.lexsort((tid, -c))[:n]
    tid, c = tid[order], c[order]
    ids, occ = np.unique(trace.ids, return_counts=True)
    occ_of = occ[np.searchsorted(ids, tid)]
    return TopTokens(tid.astype(np.int64), c.astype(np.int64), c / occ_of if len(c) else np.zeros(0))


@dataclass
class DomainSpecialization:
    """ratio (D, L, E): the share of domain d's slots at layer l that expert e takes, over the uniform share 1/E
    (1 = no preference; NaN for a domain without tokens); domain_names (D,), layers (L,)."""

    domain_names: List[str]
    layers: List[int]
    ratio: np.ndarray

    def max_ratio(self) -> np.ndarray:
        """(D, L): the largest ratio of each domain and layer."""
        return np.nanmax(self.ratio, axis=2)


def domain_specialization(trace: Trace) -> DomainSpecialization:
    """The DomainSpecialization of a trace with several domains (e.g. record_trace(model, {"prose": ..., "code":
    ...}))."""
    _check_trace(trace)
    rows = []
    for d in range(len(trace.domain_names)):
        mask = trace.domains == d
        rows.append(_pad([_share(_counts(trace, l, tokens=mask)) * trace.num_experts(l) for l in trace.layers]))
    return DomainSpecialization(list(trace.domain_names), trace.layers, np.stack(rows))


@dataclass
class Agreement:
    """Per layer (L,): overlap, the mean over tokens of |topk_a ∩ topk_b| / k (k = the smaller top-k; OLMoE's
    router saturation when b is the final checkpoint), and top1, the share of tokens with the same first choice."""

    layers: List[int]
    overlap: np.ndarray
    top1: np.ndarray


def router_agreement(trace_a: Trace, trace_b: Trace) -> Agreement:
    """The Agreement of two traces of the same token ids (and chunks) from models of one architecture and
    tokenizer (e.g. a checkpoint and its quantized copy, or two training steps). ValueError naming trace_b
    otherwise."""
    _check_trace(trace_a, "trace_a")
    _check_trace(trace_b, "trace_b")
    trace_a.check_compatible(trace_b, "trace_b", keys=[k for k in FINGERPRINT_KEYS if k != "top_k"])
    if trace_a.layers != trace_b.layers or [trace_a.num_experts(l) for l in trace_a.layers] != \
            [trace_b.num_experts(l) for l in trace_b.layers]:
        raise ValueError(f"trace_b: MoE layers / experts differ from trace_a's ({trace_b.layers} vs {trace_a.layers})")
    if not np.array_equal(trace_a.ids, trace_b.ids):
        raise ValueError(f"trace_b: not the same token ids as trace_a ({trace_b.num_tokens} vs {trace_a.num_tokens} "
                         f"tokens); record both on the same ids")
    if not np.array_equal(trace_a.chunk_starts, trace_b.chunk_starts):
        raise ValueError("trace_b: chunked differently from trace_a (record both with the same ctx)")
    over, top1 = [], []
    for l in trace_a.layers:
        a, b = trace_a.experts[l], trace_b.experts[l]
        k = min(a.shape[1], b.shape[1])
        inter = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
        T = len(a)
        over.append(float(inter.mean() / k) if T else np.nan)
        top1.append(float((a[:, 0] == b[:, 0]).mean()) if T else np.nan)
    return Agreement(trace_a.layers, np.array(over), np.array(top1))


def coverage_curve(trace: Trace, layer: int) -> np.ndarray:
    """(E,) float64: the share of `layer`'s slots taken by its N most used experts, N = 1..E (ends at 1;
    uniform routing gives N/E)."""
    _check_trace(trace)
    c = np.cumsum(np.sort(_counts(trace, layer))[::-1])
    return c / c[-1] if c[-1] else np.full(len(c), np.nan)

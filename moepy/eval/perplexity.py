"""Perplexity in llama-perplexity's convention, its standard error, the unigram baseline, and KL divergence.

Convention (llama.cpp's tools/perplexity, so figures compare across engines): the ids are cut into non-overlapping
chunks of ctx tokens (a shorter tail is dropped); each chunk runs from an empty cache; when the tokenizer adds a
BOS token it replaces each chunk's first token; the logits at positions ctx/2 .. ctx-2 predict the next token, so
each chunk scores ctx/2 - 1 tokens (the first half is context only). score_all scores every position >= 1.
Perplexity = exp(mean NLL); its standard error = ppl * std(NLL) / sqrt(N - 1) (first order).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

PERCENTILES = (99.9, 99.0, 95.0, 90.0, 50.0, 10.0, 5.0, 1.0)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float32 log-probabilities over the last axis (computed in float64)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return z.astype(np.float32)


def chunks(ids: np.ndarray, ctx: int, bos: Optional[int]) -> np.ndarray:
    """(n_chunks, ctx) non-overlapping chunks of ids (the tail dropped), the first token of each set to bos."""
    n = len(ids) // ctx
    out = np.array(ids[: n * ctx], dtype=np.int64).reshape(n, ctx)
    if bos is not None:
        out[:, 0] = bos
    return out


def scored_positions(ctx: int, score_all: bool) -> np.ndarray:
    """Positions whose logits are scored (each predicts the token after it)."""
    return np.arange(0, ctx - 1) if score_all else np.arange(ctx // 2, ctx - 1)


@dataclass
class ChunkResult:
    """Per scored token of the run: NLL, the log-probs of every token (for KLD), the top token and the target."""

    nll: List[np.ndarray] = field(default_factory=list)
    logprobs: List[np.ndarray] = field(default_factory=list)
    targets: List[np.ndarray] = field(default_factory=list)
    routing: List[dict] = field(default_factory=list)
    seconds: float = 0.0
    tokens_run: int = 0


def run_chunks(model, chunked: np.ndarray, positions: np.ndarray, *, keep_logprobs: bool, return_routing: bool,
               progress: Optional[Callable] = None) -> ChunkResult:
    """Evaluate each chunk from an empty cache (one model call per chunk, as a prefill)."""
    res = ChunkResult()
    for c in chunked:
        t0 = time.perf_counter()
        out = model(c, return_routing=return_routing)
        res.seconds += time.perf_counter() - t0
        res.tokens_run += len(c)
        logits, routing = out if return_routing else (out, None)
        lp = log_softmax(logits[positions])
        tgt = c[positions + 1]
        res.nll.append(-lp[np.arange(len(positions)), tgt].astype(np.float64))
        res.targets.append(tgt)
        if keep_logprobs:
            res.logprobs.append(lp.astype(np.float16))
        if routing is not None:
            res.routing.append(routing)
        if progress is not None:
            progress()
    return res


def perplexity_stats(nll: np.ndarray) -> Dict[str, float]:
    """perplexity, perplexity_stderr, mean NLL (nats) and tokens_scored of per-token NLLs."""
    n = len(nll)
    mean = float(nll.mean())
    ppl = math.exp(mean)
    sd = float(nll.std(ddof=1)) if n > 1 else float("nan")
    return {"perplexity": ppl, "perplexity_stderr": ppl * sd / math.sqrt(n - 1) if n > 1 else float("nan"),
            "nll_mean": mean, "tokens_scored": n}


def unigram_baseline(targets: np.ndarray) -> float:
    """Perplexity of the scored tokens under their own unigram frequencies: exp(-mean log f(token))."""
    _, inv, counts = np.unique(targets, return_inverse=True, return_counts=True)
    return float(math.exp(-np.mean(np.log(counts[inv] / len(targets)))))


def kld_stats(base_lp: np.ndarray, lp: np.ndarray, targets: np.ndarray) -> Dict[str, object]:
    """KL(base || this) per scored token and llama-perplexity's summary of it, from float16 log-probs (both runs
    rounded alike, so a run against itself gives exactly 0). base_lp, lp (N, V); targets (N,)."""
    if base_lp.shape != lp.shape:
        raise ValueError(f"kl-base: the saved log-probs are {base_lp.shape}, this run's {lp.shape} (another model or "
                         f"text?)")
    b = base_lp.astype(np.float64)
    t = lp.astype(np.float64)
    pb = np.exp(b)
    kld = np.maximum((pb * (b - t)).sum(axis=-1), 0.0)
    n = len(kld)
    rows = np.arange(n)
    p_base, p_this = pb[rows, targets], np.exp(t[rows, targets])
    dp = p_this - p_base
    return {"kld_mean": float(kld.mean()), "kld_stderr": float(kld.std(ddof=1) / math.sqrt(n - 1)) if n > 1 else 0.0,
            "kld_max": float(kld.max()),
            "kld_percentiles": {f"{q:g}": float(np.percentile(kld, q)) for q in PERCENTILES},
            "same_top_p": float(np.mean(b.argmax(-1) == t.argmax(-1))),
            "delta_p_mean": float(dp.mean()), "delta_p_rms": float(np.sqrt(np.mean(dp ** 2))),
            "delta_p_max": float(np.abs(dp).max())}

"""evaluate(): perplexity, KL divergence against a saved run, the routing report, speed and memory of one model on
one text, as one JSON-able dict (what `python -m moepy eval` prints and writes)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from typing import Optional

import numpy as np

from .._progress import bar as progress_bar
from .perplexity import chunks, kld_stats, perplexity_stats, run_chunks, scored_positions, unigram_baseline
from .routing_report import routing_report

LOGPROBS_FORMAT = "moepy-logprobs-1"


class EvalError(ValueError):
    """A problem with what `eval` was given (the CLI prints it and exits with code 2)."""


def ids_hash(ids: np.ndarray) -> str:
    """sha256 of the token ids (int64 little-endian)."""
    return hashlib.sha256(np.asarray(ids, "<i8").tobytes()).hexdigest()


def checkpoint_hash(path: Optional[str]) -> Optional[str]:
    """An identity hash of a checkpoint: sha256 over its config.json and, per weight file, its name, size and
    first 1 MiB (the safetensors / GGUF header): cheap for a 600 GB checkpoint, different for different weights
    files in practice. None without a path."""
    if not path:
        return None
    h = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs
        if f.endswith((".json", ".safetensors", ".gguf")))
    for f in files:
        h.update(os.path.relpath(f, path if os.path.isdir(path) else os.path.dirname(path)).encode())
        h.update(str(os.path.getsize(f)).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
    return h.hexdigest()


def peak_rss_bytes() -> int:
    """The process's peak resident set (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * (1 if sys.platform == "darwin" else 1024)


def _with_top_k(model, top_k: Optional[int]):
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise EvalError(f"--top-k must be an int >= 1, got {top_k!r}")
    too_many = [i for i, l in model.moe_layers.items() if top_k > l.num_experts]
    if too_many:
        raise EvalError(f"--top-k {top_k} exceeds the experts of layers {too_many}")
    return model.set_router(lambda i, r: dataclasses.replace(r, top_k=top_k))


def evaluate(model, ids, *, ctx: int = 512, score_all: bool = False, bos: Optional[int] = None,
             top_k: Optional[int] = None, save_logprobs: Optional[str] = None, kl_base: Optional[str] = None,
             progress: bool = False, checkpoint: Optional[str] = None, max_chunks: Optional[int] = None) -> dict:
    """The report of `model` on token ids (see moepy.eval.perplexity for the convention).

    bos: the id that replaces each chunk's first token (the tokenizer's BOS when it adds one; None: keep the
    text's token). max_chunks: evaluate only the first chunks (llama-perplexity's --chunks). top_k: run every MoE layer with this many active experts. save_logprobs / kl_base: a .npz file
    to write this run's log-probabilities of the scored positions to / to compare this run against (KLD)."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if max_chunks is not None:
        if isinstance(max_chunks, bool) or not isinstance(max_chunks, int) or max_chunks < 2:
            raise EvalError(f"--chunks must be an int >= 2, got {max_chunks!r}")
        ids = ids[: max_chunks * ctx] if isinstance(ctx, int) and ctx > 0 else ids
    if isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 4:
        raise EvalError(f"--ctx must be an int >= 4, got {ctx!r}")
    if ctx > model.spec.max_position_embeddings:
        raise EvalError(f"--ctx {ctx} exceeds the model's {model.spec.max_position_embeddings} positions")
    if len(ids) < 2 * ctx:
        raise EvalError(f"the text has {len(ids)} tokens, fewer than two chunks of --ctx {ctx}")
    if ids.min() < 0 or ids.max() >= model.vocab_size:
        raise EvalError(f"the token ids must lie in [0, {model.vocab_size}) (the model's vocabulary)")
    base = None
    if kl_base is not None:
        base = load_logprobs(kl_base)
        want = {"ctx": ctx, "score_all": bool(score_all), "ids_sha256": ids_hash(ids), "vocab_size": model.vocab_size}
        bad = [k for k, v in want.items() if base["meta"].get(k) != v]
        if bad:
            raise EvalError(f"--kl-base {kl_base}: saved from another model or text ({', '.join(bad)} differ)")
    chunked = chunks(ids, ctx, bos)
    positions = scored_positions(ctx, score_all)
    old = _with_top_k(model, top_k)
    ep = getattr(model, "expert_parallel", None)
    runner = run_chunks
    if ep is not None:  # chunks dealt to the ranks; the results gathered on rank 0
        from ..parallel.run import run_chunks_parallel as runner
        ep.stats.clear()  # the report's bytes are this evaluation's
    bar = progress_bar(-(-len(chunked) // ep.size) if ep is not None else len(chunked), "chunks",
                       progress and (ep is None or ep.rank == 0), unit="chunk", tty_only=True)
    try:
        res = runner(model, chunked, positions, keep_logprobs=save_logprobs is not None or base is not None,
                     return_routing=True, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
        if old is not None:
            model.set_router(lambda i, r: old[i])
    if ep is None:
        return _report(model, res, ids, chunked, ctx, score_all, save_logprobs, base, kl_base, checkpoint)
    from ..parallel.run import parallel_report
    out = _report(model, res, ids, chunked, ctx, score_all, save_logprobs, base, kl_base, checkpoint) \
        if ep.rank == 0 else None
    if ep.rank == 0:
        from ..parallel.run import predicted_dispatch_bytes
        predicted = predicted_dispatch_bytes(model, res.routing, ep.size)
        for rep in out["layers"]:
            rep["predicted_dispatch_bytes"] = predicted[rep["layer"]]
    out = ep.group.bcast_json(out, "the report")
    out["expert_parallel"] = parallel_report(model, peak_rss_bytes())
    for rep in out["layers"]:
        out["expert_parallel"]["layers"][str(rep["layer"])]["predicted_dispatch_bytes"] = \
            rep.pop("predicted_dispatch_bytes")
    out["peak_rss_bytes"] = max(out["expert_parallel"]["peak_rss_bytes"])
    return out


def _report(model, res, ids, chunked, ctx, score_all, save_logprobs, base, kl_base, checkpoint) -> dict:
    nll = np.concatenate(res.nll)
    targets = np.concatenate(res.targets)
    out = perplexity_stats(nll)
    out["baseline_unigram_perplexity"] = unigram_baseline(targets)
    out["chunks"], out["ctx"], out["score_all"] = len(chunked), ctx, bool(score_all)
    out["layers"] = routing_report(res.routing, {i: l.num_experts for i, l in model.moe_layers.items()})
    out["tokens_per_second"] = res.tokens_run / res.seconds if res.seconds else float("nan")
    lp = np.concatenate(res.logprobs) if res.logprobs else None
    if save_logprobs is not None:
        meta = {"format": LOGPROBS_FORMAT, "ctx": ctx, "score_all": bool(score_all), "ids_sha256": ids_hash(ids),
                "vocab_size": model.vocab_size, "perplexity": out["perplexity"], "checkpoint_sha256":
                checkpoint_hash(checkpoint)}
        np.savez_compressed(save_logprobs, logprobs=lp, targets=targets, meta=np.array(json.dumps(meta)))
    if base is not None:
        if not np.array_equal(base["targets"], targets):
            raise EvalError(f"--kl-base {kl_base}: its scored tokens differ from this run's")
        out.update(kld_stats(base["logprobs"], lp, targets))
        out["perplexity_ratio"] = out["perplexity"] / base["meta"]["perplexity"]
    out["peak_rss_bytes"] = peak_rss_bytes()
    return out


def load_logprobs(path: str) -> dict:
    """A file written by evaluate(save_logprobs=...): logprobs (N, V) float16, targets (N,), meta."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not a .npz file written by --save-logprobs")
        with z:
            meta = json.loads(str(z["meta"]))
            if not isinstance(meta, dict) or meta.get("format") != LOGPROBS_FORMAT:
                raise ValueError("not a moepy log-prob file")
            return {"logprobs": z["logprobs"], "targets": z["targets"], "meta": meta}
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise EvalError(f"--kl-base {path}: cannot read it ({exc})") from None



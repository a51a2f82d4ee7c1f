"""record_trace: run a model over a text chunk by chunk and keep its routing (a Trace)."""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from .._progress import iterate
from .trace import Trace, model_fingerprint


def _ids(model, ids_or_text, name: str) -> np.ndarray:
    if isinstance(ids_or_text, str):
        if getattr(model, "tokenizer", None) is None:
            raise ValueError(f"{name}: a text needs model.tokenizer, and this model has none; pass token ids")
        return np.asarray(model.tokenizer.encode(ids_or_text), np.int64)
    ids = np.asarray(ids_or_text)
    if ids.ndim != 1 or ids.dtype == bool or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise ValueError(f"{name}: expected a text or 1-D integer token ids, got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= model.vocab_size):
        raise ValueError(f"{name}: token ids must be in [0, {model.vocab_size})")
    return ids.astype(np.int64)


def record_trace(model, ids_or_text, *, ctx: int = 512, domain: Optional[str] = None, progress: bool = False,
                 bos: bool = True) -> Trace:
    """The routing of `model` (a MoEModel) over a text (tokenized with model.tokenizer) or token ids (T,), or
    over a dict {domain_name: text or ids} (each domain chunked on its own, then Trace.concat).

    As moepy.eval.perplexity does, the ids are cut into chunks of ctx tokens, each run from an empty cache (one
    model call, return_routing=True), and with bos=True each chunk's first token becomes the tokenizer's BOS when
    the tokenizer adds one; unlike perplexity the shorter tail is kept as a last chunk. The trace's ids are the ids
    that ran; chunk_starts marks the chunks. domain: the label of a single text (default "text").
    Records per MoE layer experts (T, K) int32, weights (T, K) float32, scores (T, E) float16, dropped (T, K)
    bool or None, and the model's fingerprint in meta (plus ctx)."""
    if isinstance(ids_or_text, Mapping):
        if not ids_or_text:
            raise ValueError("ids_or_text: an empty dict of domains")
        if domain is not None:
            raise ValueError("domain: not used with a dict of domains (its keys name them)")
        parts = []
        for name, v in ids_or_text.items():
            if not isinstance(name, str):
                raise ValueError(f"ids_or_text: domain names must be str, got {name!r}")
            parts.append(record_trace(model, v, ctx=ctx, domain=name, progress=progress, bos=bos))
        return Trace.concat(parts)
    if isinstance(ctx, bool) or not isinstance(ctx, (int, np.integer)) or ctx < 1:
        raise ValueError(f"ctx must be an int >= 1, got {ctx!r}")
    limit = model.spec.max_position_embeddings
    if limit and ctx > limit:
        raise ValueError(f"ctx={ctx} exceeds the model's max_position_embeddings ({limit})")
    if domain is not None and not isinstance(domain, str):
        raise ValueError(f"domain must be a str, got {domain!r}")
    ids = _ids(model, ids_or_text, "ids_or_text")
    if len(ids) == 0:
        raise ValueError("ids_or_text: no tokens")
    tok = getattr(model, "tokenizer", None)
    bos_id = tok.bos_token_id if (bos and tok is not None and tok.adds_bos) else None
    ids = ids.copy()
    starts = np.arange(0, len(ids), ctx, dtype=np.int64)
    if bos_id is not None:
        ids[starts] = bos_id
    fp = model_fingerprint(model)
    layers = fp["layers"]
    if not layers:
        raise ValueError("model: it has no MoE layers to trace")
    acc = {a: {l: [] for l in layers} for a in ("experts", "weights", "scores", "dropped")}
    for s in iterate(starts, len(starts), "recording routing", progress):
        _, routing = model(ids[s:s + ctx], return_routing=True)
        for l in layers:
            r = routing[l]
            acc["experts"][l].append(np.asarray(r.experts, np.int32))
            acc["weights"][l].append(np.asarray(r.weights, np.float32))
            acc["scores"][l].append(np.asarray(r.scores).astype(np.float16))
            acc["dropped"][l].append(None if r.dropped is None else np.asarray(r.dropped, bool))
    out = {a: {} for a in acc}
    for l in layers:
        for a in ("experts", "weights", "scores"):
            out[a][l] = np.concatenate(acc[a][l])
        d = acc["dropped"][l]
        out["dropped"][l] = None if all(x is None for x in d) else np.concatenate(
            [np.zeros(e.shape, bool) if x is None else x for x, e in zip(d, acc["experts"][l])])
    meta = dict(fp, ctx=int(ctx), quantize=getattr(model, "quantize", None))
    meta.pop("top_k")
    return Trace(ids, out["experts"], out["weights"], out["scores"], out["dropped"], None,
                 [domain or "text"], starts, meta)

"""Trace: the router decisions of a model over a text, per MoE layer, as plain arrays.

Dimension legend: T tokens of the trace, L MoE layers, E experts of a layer, K its top-k, C chunks, D domains.

    ids (T,) int32             the token ids that were run (after the BOS substitution of record_trace)
    domains (T,) int32         index into domain_names (e.g. ["prose", "code"]) of each token
    chunk_starts (C,) int64    offset of each chunk's first token (0 first, strictly increasing): each chunk ran
                               from an empty cache, so tokens of different chunks are not consecutive
    experts[l] (T, K) int32    selected experts of MoE layer l, best first, unique per row, in [0, E)
    weights[l] (T, K) float32  their combine weights
    scores[l] (T, E) float16   the router's scoring function over all experts (softmax or sigmoid); kept as float16
                               (about 3 significant digits) to keep trace files small; None when not recorded
    dropped[l] (T, K) bool     slots refused by a capacity limit; None when dropless

meta: a JSON-able dict. Its fingerprint keys say which model and tokenizer made the trace: family, vocab_size,
layers, num_experts and top_k (per layer, aligned with layers) and tokenizer_sha256 (the sha256 of the
tokenizer's serialized JSON, None when the model had no tokenizer). Traces built with from_arrays carry only the
keys they are given (layers, num_experts and top_k always), and only keys present on both sides are compared.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Iterable, List, Mapping, Optional, Sequence

import numpy as np

FORMAT = "moepy.analysis.Trace"
VERSION = 1
MODEL_KEYS = ("family", "vocab_size", "layers", "num_experts", "top_k")
FINGERPRINT_KEYS = MODEL_KEYS + ("tokenizer_sha256",)


def tokenizer_sha256(tokenizer) -> Optional[str]:
    """The sha256 (hex) of a tokenizer's serialized JSON (a moepy.nn.tokenizer.Tokenizer or a `tokenizers`
    Tokenizer), or None when there is no tokenizer or it cannot serialize itself."""
    if tokenizer is None:
        return None
    for obj in (getattr(tokenizer, "_tok", None), tokenizer):
        to_str = getattr(obj, "to_str", None)
        if callable(to_str):
            try:
                s = to_str()
            except Exception:  # a tokenizer that cannot serialize: no identity to record
                continue
            if isinstance(s, str):
                return hashlib.sha256(s.encode("utf-8")).hexdigest()
    return None


def model_fingerprint(model) -> dict:
    """The fingerprint of a MoEModel: family, vocab_size, layers (MoE layer indices, ascending), num_experts and
    top_k per layer (aligned with layers), tokenizer_sha256."""
    moe = model.moe_layers
    layers = sorted(int(i) for i in moe)
    return {"family": str(model.spec.family), "vocab_size": int(model.vocab_size), "layers": layers,
            "num_experts": [int(moe[i].num_experts) for i in layers],
            "top_k": [int(moe[i].router.top_k) for i in layers],
            "tokenizer_sha256": tokenizer_sha256(getattr(model, "tokenizer", None))}


def _short(v):
    return v[:12] + "..." if isinstance(v, str) and len(v) > 12 else v


def compare_fingerprints(mine: Mapping, theirs: Mapping, name: str, what: str,
                         keys: Sequence[str] = FINGERPRINT_KEYS) -> None:
    """ValueError naming `name` (the argument whose trace is checked) when the fingerprints differ on a key both
    have: the model keys first ("recorded with a different model"), then the tokenizer."""
    diff = [k for k in keys if k in mine and k in theirs and k != "tokenizer_sha256" and mine[k] != theirs[k]]
    if diff:
        parts = ", ".join(f"{k} {mine[k]!r} vs {what}'s {theirs[k]!r}" for k in diff)
        raise ValueError(f"{name}: recorded with a different model ({parts})")
    k = "tokenizer_sha256"
    if k in keys and k in mine and k in theirs and mine[k] != theirs[k]:
        raise ValueError(f"{name}: recorded with a different tokenizer (sha256 {_short(mine[k])} vs {what}'s "
                         f"{_short(theirs[k])})")


def _int_array(a, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _float_array(a, name: str, shape: tuple) -> np.ndarray:
    arr = np.asarray(a)
    if not (np.issubdtype(arr.dtype, np.floating) or arr.size == 0):
        raise ValueError(f"{name} must hold floats, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    return arr


class Trace:
    """Router decisions over a text, per MoE layer (see the module docstring for the arrays and their shapes).

    Build with moepy.analysis.record_trace (a model and a text), Trace.from_arrays (your own routing),
    Trace.load (a file written by save) or Trace.concat (several traces of one model)."""

    def __init__(self, ids, experts, weights, scores, dropped, domains, domain_names, chunk_starts, meta,
                 where: str = ""):
        pre = where + ": " if where else ""
        try:
            self._init(ids, experts, weights, scores, dropped, domains, domain_names, chunk_starts, meta)
        except ValueError as e:
            raise ValueError(pre + str(e)) from None

    def _init(self, ids, experts, weights, scores, dropped, domains, domain_names, chunk_starts, meta):
        meta = dict(meta)
        ids = _int_array(ids, "ids", 1)
        T = len(ids)
        vocab = meta.get("vocab_size")
        if ids.size and (ids.min() < 0 or (vocab is not None and ids.max() >= vocab)):
            raise ValueError(f"ids: token ids must be in [0, {vocab if vocab is not None else 'inf'}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        self.ids = ids.astype(np.int32)
        layers = meta.get("layers")
        if not isinstance(experts, Mapping) or not experts:
            raise ValueError("experts must be a non-empty dict {layer_index: (T, K) array}")
        if layers is None:
            layers = sorted(int(k) for k in experts)
        if sorted(int(k) for k in experts) != list(layers) or len(set(layers)) != len(layers):
            raise ValueError(f"experts has layers {sorted(int(k) for k in experts)}, meta says {layers}")
        E_list, K_list = meta.get("num_experts"), meta.get("top_k")
        if not (isinstance(E_list, list) and len(E_list) == len(layers)):
            raise ValueError(f"num_experts must list one count per layer ({len(layers)}), got {E_list!r}")
        self.experts, self.weights, self.scores, self.dropped = {}, {}, {}, {}
        K_seen = []
        for i, l in enumerate(layers):
            E = E_list[i]
            if isinstance(E, bool) or not isinstance(E, int) or E < 1:
                raise ValueError(f"num_experts of layer {l} must be an int >= 1, got {E!r}")
            ex = _int_array(experts[l], f"experts[{l}]", 2)
            if ex.shape[0] != T:
                raise ValueError(f"experts[{l}] has {ex.shape[0]} rows, ids {T} tokens")
            K = ex.shape[1]
            if K < 1 or K > E:
                raise ValueError(f"experts[{l}] has {K} columns; top-k must be in [1, num_experts={E}]")
            if ex.size and (ex.min() < 0 or ex.max() >= E):
                raise ValueError(f"experts[{l}]: expert ids out of range [0, {E}): [{int(ex.min())}, "
                                 f"{int(ex.max())}]")
            if K > 1 and T and (np.diff(np.sort(ex, axis=1), axis=1) == 0).any():
                raise ValueError(f"experts[{l}]: an expert is selected twice in one row")
            self.experts[l] = ex.astype(np.int32)
            w = weights.get(l) if weights is not None else None
            self.weights[l] = np.full((T, K), 1.0 / K, np.float32) if w is None else \
                _float_array(w, f"weights[{l}]", (T, K)).astype(np.float32)
            s = scores.get(l) if scores is not None else None
            self.scores[l] = None if s is None else _float_array(s, f"scores[{l}]", (T, E)).astype(np.float16)
            d = dropped.get(l) if dropped is not None else None
            if d is not None:
                d = np.asarray(d)
                if d.dtype != bool or d.shape != (T, K):
                    raise ValueError(f"dropped[{l}] must be a bool ({T}, {K}) array, got {d.dtype} {d.shape}")
            self.dropped[l] = d
            K_seen.append(int(K))
        if K_list is not None and K_list != K_seen:
            raise ValueError(f"top_k in meta is {K_list}, the experts arrays have {K_seen} columns")
        meta["layers"], meta["num_experts"], meta["top_k"] = [int(x) for x in layers], list(E_list), K_seen
        names = list(domain_names) if domain_names is not None else ["text"]
        if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise ValueError(f"domain_names must be distinct strings, got {names!r}")
        dom = np.zeros(T, np.int32) if domains is None else _int_array(domains, "domains", 1)
        if len(dom) != T:
            raise ValueError(f"domains has {len(dom)} entries, ids {T}")
        if dom.size and (dom.min() < 0 or dom.max() >= len(names)):
            raise ValueError(f"domains: indices must be in [0, {len(names)}) (domain_names {names})")
        self.domains, self.domain_names = dom.astype(np.int32), names
        cs = np.zeros(min(T, 1), np.int64) if chunk_starts is None else _int_array(chunk_starts, "chunk_starts", 1)
        if T and (len(cs) == 0 or cs[0] != 0 or (np.diff(cs) <= 0).any() or cs[-1] >= T):
            raise ValueError("chunk_starts must start at 0 and increase strictly below the number of tokens")
        if not T and len(cs):
            raise ValueError("chunk_starts must be empty for an empty trace")
        self.chunk_starts = cs.astype(np.int64)
        meta.pop("domain_names", None)
        try:
            json.dumps(meta, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"meta must be JSON-serializable (plain str / int / float / list / dict): {e}") from None
        self.meta = meta

    # ---------------------------------------------------------------- building
    @classmethod
    def from_arrays(cls, ids, experts: Mapping[int, np.ndarray], weights: Optional[Mapping] = None,
                    scores: Optional[Mapping] = None, dropped: Optional[Mapping] = None, *,
                    num_experts=None, domains=None, domain_names: Optional[Sequence[str]] = None,
                    chunk_starts=None, meta: Optional[Mapping] = None) -> "Trace":
        """A trace from your own arrays. ids (T,) ints; experts {layer: (T, K) ints, best first}; weights
        {layer: (T, K)} (default 1/K each); scores {layer: (T, E)} (optional; stored float16); dropped
        {layer: (T, K) bool} (optional); num_experts an int or {layer: E} (default: the scores' width; required
        without scores); domains (T,) ints into domain_names (default one domain "text"); chunk_starts (C,)
        (default one chunk [0]); meta: extra JSON-able fields (e.g. family, vocab_size, tokenizer_sha256).
        ValueError naming the argument on inconsistent input."""
        if not isinstance(experts, Mapping) or not experts:
            raise ValueError("experts must be a non-empty dict {layer_index: (T, K) array}")
        layers = sorted(int(k) for k in experts)
        experts = {int(k): v for k, v in experts.items()}
        opt = {}
        for arg, d in (("weights", weights), ("scores", scores), ("dropped", dropped)):
            if d is not None and not isinstance(d, Mapping):
                raise ValueError(f"{arg} must be a dict {{layer_index: array}}, got {type(d).__name__}")
            opt[arg] = None if d is None else {int(k): v for k, v in d.items()}
            extra = sorted(set(opt[arg] or ()) - set(layers))
            if extra:
                raise ValueError(f"{arg} has layers {extra} that experts does not have ({layers})")
        weights, scores, dropped = opt["weights"], opt["scores"], opt["dropped"]
        E = []
        for l in layers:
            if isinstance(num_experts, Mapping):
                if l not in num_experts:
                    raise ValueError(f"num_experts has no entry for layer {l}")
                E.append(num_experts[l])
            elif num_experts is not None:
                E.append(num_experts)
            elif scores is not None and scores.get(l) is not None:
                E.append(int(np.shape(scores[l])[-1]))
            else:
                raise ValueError(f"num_experts: needed for layer {l} (no scores to take it from)")
        E = [int(e) if isinstance(e, (int, np.integer)) and not isinstance(e, bool) else e for e in E]
        m = dict(meta or {})
        m.update(layers=layers, num_experts=E)
        m.pop("top_k", None)
        return cls(ids, experts, weights, scores, dropped, domains, domain_names, chunk_starts, m)

    @classmethod
    def concat(cls, traces: Iterable["Trace"]) -> "Trace":
        """One trace of several (e.g. one per domain) of the same model: tokens, chunks and domains appended in
        order (domains merged by name). ValueError when a trace has another fingerprint or lacks scores /
        dropped where the first has them."""
        traces = list(traces)
        if not traces or not all(isinstance(t, Trace) for t in traces):
            raise ValueError("traces: a non-empty sequence of Trace objects is needed")
        first = traces[0]
        for i, t in enumerate(traces[1:], 1):
            compare_fingerprints(t.fingerprint, first.fingerprint, f"traces[{i}]", "traces[0]")
            for k in FINGERPRINT_KEYS:
                if (k in t.meta) != (k in first.meta):
                    raise ValueError(f"traces[{i}]: its fingerprint has {k!r} {'but' if k in t.meta else 'without'} "
                                     f"traces[0]'s")
        names: List[str] = []
        for t in traces:
            names += [n for n in t.domain_names if n not in names]
        offs = np.cumsum([0] + [t.num_tokens for t in traces])
        doms = [np.array([names.index(n) for n in t.domain_names], np.int32)[t.domains] for t in traces]
        out = {}
        for l in first.layers:
            for attr in ("experts", "weights", "scores", "dropped"):
                parts = [getattr(t, attr)[l] for t in traces]
                have = [p is not None for p in parts]
                if any(have) and not all(have):
                    i = have.index(not have[0])
                    raise ValueError(f"traces[{i}]: {attr} of layer {l} {'missing' if have[0] else 'present'} "
                                     f"unlike traces[0]")
                out.setdefault(attr, {})[l] = np.concatenate(parts) if all(have) else None
        meta = copy.deepcopy(first.meta)
        meta.pop("top_k", None)
        cs = np.concatenate([t.chunk_starts + o for t, o in zip(traces, offs)])
        return cls(np.concatenate([t.ids for t in traces]), out["experts"], out["weights"], out["scores"],
                   out["dropped"], np.concatenate(doms), names, cs, meta)

    def take(self, mask) -> "Trace":
        """The trace of the tokens where mask (T,) bool is True; chunks split where tokens were left out."""
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (self.num_tokens,):
            raise ValueError(f"mask must be a bool ({self.num_tokens},) array, got {mask.dtype} {mask.shape}")
        idx = np.flatnonzero(mask)
        start = np.zeros(self.num_tokens, bool)
        start[self.chunk_starts] = True
        new = start[idx].copy()
        if len(idx):
            new[0] = True
            new[1:] |= np.diff(idx) != 1
        meta = copy.deepcopy(self.meta)
        meta.pop("top_k", None)
        pick = lambda d: {l: (None if a is None else a[idx]) for l, a in d.items()}  # noqa: E731
        return Trace(self.ids[idx], pick(self.experts), pick(self.weights), pick(self.scores), pick(self.dropped),
                     self.domains[idx], self.domain_names, np.flatnonzero(new), meta)

    def domain(self, name: str) -> "Trace":
        """The trace of one domain's tokens (ValueError naming the domains there are)."""
        if name not in self.domain_names:
            raise ValueError(f"domain {name!r} is not in this trace; it has {self.domain_names}")
        return self.take(self.domains == self.domain_names.index(name))

    # ---------------------------------------------------------------- what it is
    @property
    def layers(self) -> List[int]:
        """The MoE layer indices, ascending."""
        return list(self.meta["layers"])

    @property
    def num_tokens(self) -> int:
        """T."""
        return len(self.ids)

    def _pos(self, layer) -> int:
        try:
            return self.meta["layers"].index(int(layer))
        except (ValueError, TypeError):
            raise ValueError(f"layer {layer!r} is not a MoE layer of this trace; it has {self.layers}") from None

    def num_experts(self, layer: int) -> int:
        """E of MoE layer `layer`."""
        return int(self.meta["num_experts"][self._pos(layer)])

    def top_k(self, layer: int) -> int:
        """K of MoE layer `layer`."""
        return int(self.meta["top_k"][self._pos(layer)])

    @property
    def fingerprint(self) -> dict:
        """The fingerprint keys of meta (those present): family, vocab_size, layers, num_experts, top_k,
        tokenizer_sha256."""
        return {k: copy.deepcopy(self.meta[k]) for k in FINGERPRINT_KEYS if k in self.meta}

    def check_model(self, model, name: str = "trace") -> None:
        """ValueError naming `name` if this trace was recorded with another model (family, vocabulary, MoE
        layers, experts, top-k) or another tokenizer than `model` (a MoEModel)."""
        compare_fingerprints(self.fingerprint, model_fingerprint(model), name, "the model")

    def check_compatible(self, other: "Trace", name: str = "other", keys: Sequence[str] = FINGERPRINT_KEYS) -> None:
        """ValueError naming `name` if `other` was recorded with another model or tokenizer than this trace."""
        if not isinstance(other, Trace):
            raise TypeError(f"{name} must be a Trace, got {type(other).__name__}")
        compare_fingerprints(other.fingerprint, self.fingerprint, name, "the other trace", keys)

    def __repr__(self):
        fam = self.meta.get("family", "?")
        return (f"Trace({fam}: {self.num_tokens} tokens in {len(self.chunk_starts)} chunks, MoE layers "
                f"{self.layers}, domains {self.domain_names})")

    # ---------------------------------------------------------------- files
    def save(self, path) -> None:
        """Write the trace to one .npz file (arrays as they are, meta as JSON; no pickles)."""
        from .tracefile import save_trace
        save_trace(self, path)

    @classmethod
    def load(cls, path) -> "Trace":
        """A trace written by save. The file is untrusted: ValueError naming the file and what is wrong when it
        is not a trace file, lacks an array or has inconsistent shapes or out-of-range ids."""
        from .tracefile import load_trace
        return load_trace(path)

"""Trace files: one .npz archive (no pickles) holding the arrays of a Trace and its meta as a JSON string.

Arrays: ids (T,) int32, domains (T,) int32, chunk_starts (C,) int64, and per MoE layer l: experts_<l> (T, K)
int32, weights_<l> (T, K) float32, scores_<l> (T, E) float16 (when recorded), dropped_<l> (T, K) bool (when a
capacity limit applied); meta: a 0-d str array, JSON {"format": "moepy.analysis.Trace", "version": 1,
"domain_names": [...], "layers": [...], "num_experts": [...], "top_k": [...], ...}.
A file is untrusted input: load_trace checks every array's presence, dtype, shape and range before use.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .._json import unique_keys
from .trace import FORMAT, VERSION, Trace

DTYPES = {"ids": np.int32, "domains": np.int32, "chunk_starts": np.int64, "experts": np.int32,
          "weights": np.float32, "scores": np.float16, "dropped": np.bool_}


def save_trace(trace: Trace, path) -> None:
    """Write `trace` to `path` (exactly that name; compressed .npz, meta as JSON)."""
    meta = dict(trace.meta)
    meta.update(format=FORMAT, version=VERSION, domain_names=list(trace.domain_names))
    arrays = {"meta": np.array(json.dumps(meta, sort_keys=True)), "ids": trace.ids, "domains": trace.domains,
              "chunk_starts": trace.chunk_starts}
    for l in trace.layers:
        arrays[f"experts_{l}"] = trace.experts[l]
        arrays[f"weights_{l}"] = trace.weights[l]
        if trace.scores[l] is not None:
            arrays[f"scores_{l}"] = trace.scores[l]
        if trace.dropped[l] is not None:
            arrays[f"dropped_{l}"] = trace.dropped[l]
    with open(os.fspath(path), "wb") as f:
        np.savez_compressed(f, **arrays)


def _meta(arrays: dict) -> dict:
    if "meta" not in arrays:
        raise ValueError("not a trace file (no 'meta' array)")
    m = arrays["meta"]
    if m.shape != () or m.dtype.kind != "U":
        raise ValueError(f"not a trace file ('meta' is a {m.dtype} array of shape {m.shape}, not a JSON string)")
    try:
        meta = json.loads(str(m), object_pairs_hook=unique_keys(lambda k: ValueError(f"duplicate key {k!r}")))
    except ValueError as e:
        raise ValueError(f"not a trace file ('meta' is not valid JSON: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"not a trace file (meta format is {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                         f"expected {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"trace file version {meta.get('version')!r}; this moepy reads version {VERSION}")
    for key in ("layers", "num_experts", "top_k", "domain_names"):
        v = meta.get(key)
        if not isinstance(v, list):
            raise ValueError(f"meta {key!r} must be a list, got {v!r}")
    for key in ("layers", "num_experts", "top_k"):
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in meta[key]):
            raise ValueError(f"meta {key!r} must list integers, got {meta[key]!r}")
        if len(meta[key]) != len(meta["layers"]):
            raise ValueError(f"meta {key!r} has {len(meta[key])} entries for {len(meta['layers'])} layers")
    if meta["layers"] != sorted(set(meta["layers"])) or not meta["layers"]:
        raise ValueError(f"meta 'layers' must be distinct ascending indices, got {meta['layers']!r}")
    vocab = meta.get("vocab_size")
    if vocab is not None and (not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1):
        raise ValueError(f"meta 'vocab_size' must be an int >= 1, got {vocab!r}")
    return meta


def _check(arrays: dict, meta: dict) -> None:
    need = ["ids", "domains", "chunk_starts"] + [f"{a}_{l}" for l in meta["layers"] for a in ("experts", "weights")]
    missing = [k for k in need if k not in arrays]
    if missing:
        raise ValueError(f"missing array {missing[0]!r}")
    allowed = set(need) | {"meta"} | {f"{a}_{l}" for l in meta["layers"] for a in ("scores", "dropped")}
    extra = sorted(set(arrays) - allowed)
    if extra:
        raise ValueError(f"unexpected array {extra[0]!r} (layers {meta['layers']})")
    for k, a in arrays.items():
        if k == "meta":
            continue
        want = np.dtype(DTYPES[k.rsplit("_", 1)[0] if k not in DTYPES else k])
        if a.dtype != want:
            raise ValueError(f"array {k!r} is {a.dtype}, expected {want}")


def load_trace(path) -> Trace:
    """The Trace in the .npz file `path` (see the module docstring). ValueError naming the file and what is wrong
    for anything that is not a well-formed trace file; FileNotFoundError when there is no file."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"path: no trace file at {name!r}")
    try:
        f = np.load(name, allow_pickle=False)
    except Exception as e:  # a truncated or foreign file: any reader error means "not a trace file"
        raise ValueError(f"{name}: not a trace file (not a readable .npz archive: {type(e).__name__}: {e})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{name}: not a trace file (a single .npy array, not an .npz archive)")
    try:
        with f:
            arrays = {}
            for k in f.files:
                try:
                    arrays[k] = f[k]
                except Exception as e:  # damaged member, pickled object array, bad header
                    raise ValueError(f"array {k!r} cannot be read ({type(e).__name__}: {e})") from None
        meta = _meta(arrays)
        _check(arrays, meta)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    except Exception as e:  # zip-level damage found while reading members
        raise ValueError(f"{name}: not a trace file ({type(e).__name__}: {e})") from None
    layers = meta["layers"]
    names = meta.pop("domain_names")
    for k in ("format", "version"):
        meta.pop(k)
    try:
        return Trace(arrays["ids"], {l: arrays[f"experts_{l}"] for l in layers},
                     {l: arrays[f"weights_{l}"] for l in layers}, {l: arrays.get(f"scores_{l}") for l in layers},
                     {l: arrays.get(f"dropped_{l}") for l in layers}, arrays["domains"], names,
                     arrays["chunk_starts"], meta, where=name)
    except TypeError as e:
        raise ValueError(f"{name}: {e}") from None

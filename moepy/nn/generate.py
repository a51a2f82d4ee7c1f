"""Generation with the KV cache: prefill the prompt in one call (the head on its last position only), then one
token per call. Greedy at temperature 0 (ties to the lower id, as argmax); otherwise softmax(logits / T)
restricted by top_k and top_p (nucleus: the smallest set of most likely tokens whose probability reaches top_p),
sampled with numpy's Generator seeded by `seed`.
"""
from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np


def _check(max_new_tokens, temperature, top_k, top_p):
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")


def next_tokens(logits: np.ndarray, temperature: float, top_k: Optional[int], top_p: Optional[float],
                rng: np.random.Generator) -> np.ndarray:
    """logits (B, V) -> (B,) ids: argmax at temperature 0, else a sample (see the module docstring)."""
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    z = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1:
        order = np.argsort(-p, axis=-1, kind="stable")
        sp = np.take_along_axis(p, order, axis=-1)
        keep_sorted = np.cumsum(sp, axis=-1) - sp < top_p  # a token stays while the mass before it is < top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=-1, keepdims=True)
    u = rng.random(p.shape[0])[:, None]
    return np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), p.shape[-1] - 1)


def _stop_ids(model, stop) -> set:
    ids = set(model.spec.eos_token_ids)
    if model.tokenizer is not None and model.tokenizer.eos_token_id is not None:
        ids.add(model.tokenizer.eos_token_id)
    if stop is None:
        return ids
    items = [stop] if isinstance(stop, (int, str, np.integer)) else list(stop)
    out = set(ids)
    for s in items:
        if isinstance(s, str):
            continue  # stop strings are checked on the decoded text
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s < model.vocab_size:
            raise ValueError(f"stop: {s!r} is neither a token id in [0, {model.vocab_size}) nor a string")
        out.add(int(s))
    return out


def generate(model, input_ids=None, max_new_tokens: int = 32, *, temperature: float = 0.0,
             top_k: Optional[int] = None, top_p: Optional[float] = None, seed: Optional[int] = None, stop=None,
             stream=None, prompt: Optional[str] = None, attention_mask=None):
    """The prompt followed by up to max_new_tokens new ids: (T + n,) for (T,) ids, (B, T + n) for (B, T)
    (rows that stopped are filled with the pad id, or their stop id, as transformers fills them).

    Text: pass a str as input_ids (or prompt=): it is encoded with model.tokenizer, and the prompt text followed
    by the generated text is returned. stop: token ids and / or strings that end generation (the model's EOS ids
    always do); a stop string is cut from the returned text. stream(piece): called with each new token id (an
    int; (B,) ids for a batch), or with each new piece of text in text mode. model.last_generation holds the
    prefill and decode timings."""
    if isinstance(input_ids, str):
        prompt, input_ids = input_ids, None
    text = prompt is not None
    if text:
        if model.tokenizer is None:
            raise ValueError("prompt: text needs a tokenizer (the checkpoint has no tokenizer.json); pass ids")
        if input_ids is not None:
            raise ValueError("give either input_ids or prompt, not both")
        input_ids = model.tokenizer.encode(prompt)
    elif input_ids is None:
        raise ValueError("input_ids: give the prompt's ids (or text with prompt=)")
    _check(max_new_tokens, temperature, top_k, top_p)
    ids = model._ids(input_ids)
    squeeze = ids.ndim == 1
    ids2 = ids[None] if squeeze else ids
    B, T = ids2.shape
    stops = _stop_ids(model, stop)
    stop_strings = [s for s in ([stop] if isinstance(stop, str) else (stop or [])) if isinstance(s, str)] \
        if not isinstance(stop, (int, np.integer)) else []
    if stop_strings and not text:
        raise ValueError("stop: strings need text mode (a prompt and a tokenizer)")
    rng = np.random.default_rng(seed)
    cache = model.new_cache(B, capacity=T + max(max_new_tokens, 1))
    t0 = time.perf_counter()
    logits = model(ids2, attention_mask, cache=cache, logits_to_keep=1)[:, -1]
    t1 = time.perf_counter()
    out = [ids2]
    done = np.zeros(B, bool)
    fill = model.spec.pad_token_id if model.spec.pad_token_id is not None else (min(stops) if stops else 0)
    text_so_far, emitted = "", 0
    n = 0
    for n in range(1, max_new_tokens + 1):
        tok = next_tokens(logits, temperature, top_k, top_p, rng)
        tok = np.where(done, fill, tok)
        out.append(tok[:, None])
        done |= np.isin(tok, list(stops)) if stops else False
        if text:
            new = np.concatenate(out[1:], axis=1)[0]
            keep = [int(t) for t in new if int(t) not in stops]
            text_so_far = model.tokenizer.decode(keep)
            cut = [text_so_far.find(s) for s in stop_strings if s in text_so_far]
            if cut:
                text_so_far = text_so_far[:min(cut)]
                done[:] = True
            if stream is not None and len(text_so_far) > emitted and not text_so_far.endswith("\ufffd"):
                stream(text_so_far[emitted:])
                emitted = len(text_so_far)
        elif stream is not None:
            stream(int(tok[0]) if squeeze else tok.copy())
        if done.all() or n == max_new_tokens:
            break
        logits = model(tok[:, None], cache=cache)[:, -1]
    t2 = time.perf_counter()
    model.last_generation = {"prompt_tokens": int(T), "new_tokens": int(n), "prefill_seconds": t1 - t0,
                             "decode_seconds": t2 - t1,
                             "decode_tokens_per_second": (n - 1) / (t2 - t1) if n > 1 and t2 > t1 else float("nan")}
    if text:
        if stream is not None and len(text_so_far) > emitted:
            stream(text_so_far[emitted:])
        return prompt + text_so_far
    res = np.concatenate(out, axis=1)
    return res[0] if squeeze else res

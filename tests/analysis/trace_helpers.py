"""Small hand-made traces for the moepy.analysis tests."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")  # plots run headless

import numpy as np  # noqa: E402

from moepy.analysis import Trace  # noqa: E402


def random_trace(seed=0, T=40, layers=(0, 2, 3), E=6, K=2, domains=("prose", "code"), chunk=7, vocab=11,
                 dropped=False, meta=None):
    """A Trace of random routing: unique experts per row, softmax scores, tokens from a small vocabulary,
    chunks of `chunk` tokens, domains in two halves."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, T)
    ex, w, s, d = {}, {}, {}, {}
    for l in layers:
        logits = rng.normal(size=(T, E)) * 2
        ex[l] = np.argsort(-logits, axis=1, kind="stable")[:, :K].astype(np.int32)
        s[l] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        w[l] = np.take_along_axis(s[l], ex[l], 1)
        if dropped:
            d[l] = rng.random((T, K)) < 0.2
    dom = (np.arange(T) >= T // 2).astype(np.int32) if len(domains) > 1 else None
    starts = sorted(set(range(0, T, chunk)) | ({T // 2} if len(domains) > 1 else set()))
    return Trace.from_arrays(ids, ex, w, s, d if dropped else None, domains=dom, domain_names=list(domains),
                             chunk_starts=starts, meta=meta)

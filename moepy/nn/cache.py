"""KVCache: the keys and values (MLA: the compressed latents) a decoder has seen, per layer, for B sequences.

Storage grows by doubling up to `capacity` tokens; appending past it raises. Every row shares one length (a
left-padded batch keeps its pads, masked through `valid`), so a step appends the same number of tokens to each
row. MLA layers keep kv_lora_rank + qk_rope_head_dim numbers per token (576 for DeepSeek-V3): the normalised
latent and the rotated shared rope key, not the expanded per-head keys and values.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np


class KVCache:
    """Per-layer key/value storage for `batch_size` sequences of up to `capacity` tokens.

    length: tokens stored per row; valid (B, length) bool: False at padding; seen (B,) int64: real tokens per
    row (the next token's position). Create with MoEModel.new_cache(); pass to model(ids, cache=cache)."""

    def __init__(self, widths: Dict[int, tuple], batch_size: int, capacity: int):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self.batch_size = int(batch_size)
        self.capacity = int(capacity)
        self.length = 0
        self._widths = dict(widths)  # layer -> per-token shapes, None marking the token axis: ((Hkv, None, D),) * 2
        self._store: Dict[int, List[np.ndarray]] = {}
        self._valid = np.zeros((self.batch_size, 0), bool)
        self.seen = np.zeros(self.batch_size, np.int64)
        self.pad = np.zeros(self.batch_size, np.int64)  # left-padding tokens of each row

    def __repr__(self):
        return f"KVCache(batch_size={self.batch_size}, length={self.length}, capacity={self.capacity})"

    @property
    def valid(self) -> np.ndarray:
        """(B, length) bool: True where a stored token is real (False at padding)."""
        return self._valid[:, :self.length]

    def valid_through(self, end: int) -> np.ndarray:
        """(B, end) padding flags including a step in progress."""
        return self._valid[:, :end]

    @property
    def bytes_per_token(self) -> int:
        """Bytes one token of one row adds (float32 keys and values of every layer; MLA: latent + rope key)."""
        return sum(int(np.prod([n for n in s if n is not None])) * 4 for shapes in self._widths.values()
                   for s in shapes)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored keys and values (at the current length)."""
        return self.bytes_per_token * self.batch_size * self.length

    def check_step(self, B: int, T: int) -> None:
        """Raise ValueError unless B rows of T new tokens fit."""
        if B != self.batch_size:
            raise ValueError(f"cache: the ids have batch size {B}, the cache was made for {self.batch_size}")
        if self.length + T > self.capacity:
            raise ValueError(f"cache: {self.length} + {T} tokens exceed its capacity of {self.capacity} "
                             f"(make it with model.new_cache(capacity=...))")

    def begin_step(self, valid_new: np.ndarray) -> int:
        """Record the new tokens' padding flags (B, T); returns the start index of the step."""
        start = self.length
        B, T = valid_new.shape
        self.check_step(B, T)
        if self._valid.shape[1] < start + T:
            grown = np.zeros((B, self._grow_to(start + T)), bool)
            grown[:, :start] = self._valid[:, :start]
            self._valid = grown
        self._valid[:, start:start + T] = valid_new
        return start

    def pads(self, valid_new: np.ndarray) -> np.ndarray:
        """(B,) left-padding tokens of each row (from the first step's padding flags)."""
        if self.length:
            return self.pad
        return np.argmax(valid_new, axis=1).astype(np.int64) * valid_new.any(axis=1)

    def end_step(self, valid_new: np.ndarray) -> None:
        """Advance by the step's T tokens once every layer has appended them (a step that raised part way leaves
        the cache as it was: the next step overwrites what it wrote)."""
        self.pad = self.pads(valid_new)
        self.seen = self.seen + valid_new.sum(axis=1)
        self.length += valid_new.shape[1]

    def _grow_to(self, need: int) -> int:
        return min(self.capacity, max(need, 2 * max(self._valid.shape[1], 16)))

    def append(self, layer: int, *parts: np.ndarray) -> List[np.ndarray]:
        """Store the new tokens' parts of `layer` at the step's position and return every part over the whole stored
        length (views of the storage). A part is (B, T, ...) or, when the layer's cache shape puts the token axis
        later ((Hkv, None, D): keys stored head-major so each head's keys are contiguous), (B, Hkv, T, D)."""
        start = self.length
        shapes = self._widths[layer]
        axes = [1 + (list(sh).index(None) if None in sh else 0) for sh in shapes]
        T = parts[0].shape[axes[0]]
        store = self._store.get(layer)
        if store is None or store[0].shape[axes[0]] < start + T:
            cap = self._grow_to(start + T)
            new = []
            for p, ax in zip(parts, axes):
                shape = list(p.shape)
                shape[ax] = cap
                new.append(np.zeros(shape, np.float32))
            if store is not None:
                for n, s, ax in zip(new, store, axes):
                    n[(slice(None),) * ax + (slice(0, start),)] = s[(slice(None),) * ax + (slice(0, start),)]
            store = self._store[layer] = new
        out = []
        for s, p, ax in zip(store, parts, axes):
            lead = (slice(None),) * ax
            s[lead + (slice(start, start + T),)] = p
            out.append(s[lead + (slice(0, start + T),)])
        return out

    def layer(self, layer: int) -> Optional[List[np.ndarray]]:
        """The stored parts of `layer` over the current length (None before the first step)."""
        store = self._store.get(layer)
        if store is None:
            return None
        axes = [1 + (list(sh).index(None) if None in sh else 0) for sh in self._widths[layer]]
        return [s[(slice(None),) * ax + (slice(0, self.length),)] for s, ax in zip(store, axes)]

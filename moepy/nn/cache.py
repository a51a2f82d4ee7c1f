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
        self._widths = dict(widths)  # layer -> tuple of per-token shapes, e.g. ((Hkv, D), (Hkv, D))
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
    def nbytes(self) -> int:
        """Bytes of the stored keys and values (at the current length)."""
        return sum(int(np.prod(s)) * 4 * self.batch_size * self.length
                   for shapes in self._widths.values() for s in shapes)

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
        """Store the new tokens' parts (each (B, T, ...)) of `layer` at the step's position and return every part
        over the whole stored length (B, length + T, ...) (views of the storage)."""
        start = self.length
        T = parts[0].shape[1]
        store = self._store.get(layer)
        if store is None or store[0].shape[1] < start + T:
            cap = self._grow_to(start + T)
            new = [np.zeros((self.batch_size, cap) + p.shape[2:], np.float32) for p in parts]
            if store is not None:
                for n, s in zip(new, store):
                    n[:, :start] = s[:, :start]
            store = self._store[layer] = new
        out = []
        for s, p in zip(store, parts):
            s[:, start:start + T] = p
            out.append(s[:, :start + T])
        return out

    def layer(self, layer: int) -> Optional[List[np.ndarray]]:
        """The stored parts of `layer` over the current length (None before the first step)."""
        store = self._store.get(layer)
        return None if store is None else [s[:, :self.length] for s in store]

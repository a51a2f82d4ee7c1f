"""The one exception class of moepy.io: a checkpoint file that breaks a rule of its format."""
from __future__ import annotations

import os
from typing import Optional


class CheckpointError(ValueError):
    """A malformed or inconsistent checkpoint file (safetensors, its index.json, GGUF).

    `path` is the file, `tensor` the tensor (or header field) concerned, None when the fault is in the
    file's framing; the message names both. Raised before anything the bad header implies is allocated."""

    def __init__(self, path, tensor: Optional[str], what: str):
        self.path = os.fspath(path) if path is not None else "<bytes>"
        self.tensor = tensor
        self.what = what
        where = f"tensor {tensor!r}" if tensor is not None else "header"
        super().__init__(f"{self.path}: {where}: {what}")

    def __reduce__(self):  # picklable (multiprocessing returns it from a worker) with its three fields
        return type(self), (self.path, self.tensor, self.what)

"""Hugging Face checkpoint directories: one read-only Mapping over a file, a directory or a sharded directory.

`open_checkpoint(path)` accepts a `.safetensors` file, a directory holding `model.safetensors`, a directory
holding shards and `model.safetensors.index.json` (its weight_map: tensor name -> shard file name), or a
directory of `*.safetensors` files without an index. Every shard's header is validated on open
(moepy.io.safetensors); the index is checked against the shards: a shard it names must exist in the directory
(a plain file name: no path, no '..'), and must hold each tensor the index places in it. Tensors are
memory-mapped views; nothing is read until it is used.

`.get(name, dtype=None)` returns the tensor as stored; with dtype ("float32", "bfloat16", "float16") it resolves
what the checkpoint stores in pieces, one tensor at a time: an FP8 weight with its `weight_scale_inv` (the
block size from config.json's quantization_config) and a gpt-oss MXFP4 pair `X_blocks` + `X_scales` (asked for
as `X`) come back dequantized; other tensors are converted. `.dequantized(dtype)` is the Mapping view that does
this for every name (what `MoELayer.from_hf` should be given for an FP8 or MXFP4 checkpoint).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Dict, Iterator, List, Optional

import numpy as np

from . import blockquant
from .._json import unique_keys
from .errors import CheckpointError
from .safetensors import SafetensorsFile

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
MAX_JSON = 100_000_000  # bytes of an index.json / config.json read at most
SCALE_SUFFIX = "_scale_inv"
MXFP4_SUFFIXES = ("_blocks", "_scales")


def _read_json(path, what: str):
    size = os.path.getsize(path)
    if size > MAX_JSON:
        raise CheckpointError(path, None, f"{what} of {size:,} bytes exceeds the limit of {MAX_JSON:,}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_dup(path))
    except CheckpointError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(path, None, f"{what} is not valid UTF-8 JSON ({exc})") from None


def _no_dup(path):
    return unique_keys(lambda k: CheckpointError(path, k, "duplicate key"))


def _plain_name(index_path, tensor: str, fname) -> str:
    if not isinstance(fname, str) or not fname or fname in (".", "..") or "/" in fname or "\\" in fname \
            or "\0" in fname or os.path.isabs(fname):
        raise CheckpointError(index_path, tensor, f"shard {fname!r:.80} is not a plain file name in the directory")
    return fname


class Checkpoint(Mapping):
    """A checkpoint's tensors by full name (read-only, memory-mapped); see the module docstring.

    .config: the parsed config.json dict ({} when there is none); .files: the shard paths; .metadata: each
    shard's __metadata__; .info(name): (TensorInfo, path)."""

    def __init__(self, path):
        path = os.fspath(path)
        self.path = path
        self._files: Dict[str, SafetensorsFile] = {}
        self._where: Dict[str, str] = {}
        if os.path.isfile(path):
            root = os.path.dirname(os.path.abspath(path))
            self._add_file(path)
            self._where = {n: path for n in self._files[path]}
        elif os.path.isdir(path):
            root = path
            index = os.path.join(path, INDEX)
            if os.path.isfile(index):
                self._open_index(index)
            elif os.path.isfile(os.path.join(path, SINGLE)):
                f = os.path.join(path, SINGLE)
                self._add_file(f)
                self._where = {n: f for n in self._files[f]}
            else:
                shards = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
                if not shards:
                    raise FileNotFoundError(f"{path}: no {INDEX}, {SINGLE} or *.safetensors file")
                for s in shards:
                    f = os.path.join(path, s)
                    self._add_file(f)
                    for n in self._files[f]:
                        if n in self._where:
                            raise CheckpointError(f, n, f"also in {self._where[n]} (a directory without an "
                                                        f"index must not repeat a tensor)")
                        self._where[n] = f
        else:
            raise FileNotFoundError(f"no checkpoint file or directory at {path!r}")
        cfg = os.path.join(root, "config.json")
        self.config: dict = {}
        if os.path.isfile(cfg):
            d = _read_json(cfg, "config.json")
            if not isinstance(d, dict):
                raise CheckpointError(cfg, None, f"config.json holds a JSON {type(d).__name__}, not an object")
            self.config = d

    def _add_file(self, f: str) -> None:
        if f not in self._files:
            self._files[f] = SafetensorsFile(f)

    def _open_index(self, index: str) -> None:
        d = _read_json(index, "index.json")
        wm = d.get("weight_map") if isinstance(d, dict) else None
        if not isinstance(wm, dict):
            raise CheckpointError(index, None, "index.json has no weight_map object")
        root = os.path.dirname(index)
        for tensor, fname in wm.items():
            f = os.path.join(root, _plain_name(index, tensor, fname))
            if f not in self._files:
                if not os.path.isfile(f):
                    raise CheckpointError(index, tensor, f"its shard {fname!r} does not exist")
                self._add_file(f)
            if tensor not in self._files[f]:
                raise CheckpointError(index, tensor, f"the index places it in {fname!r}, which does not hold it")
            self._where[tensor] = f

    # ---- the Mapping
    def __getitem__(self, name: str) -> np.ndarray:
        try:
            f = self._where[name]
        except KeyError:
            raise KeyError(f"checkpoint {self.path}: no tensor {name!r}") from None
        return self._files[f][name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, name) -> bool:
        return name in self._where

    def __repr__(self):
        return f"Checkpoint({self.path!r}, {len(self)} tensors in {len(self._files)} file(s))"

    @property
    def files(self) -> List[str]:
        return list(self._files)

    @property
    def metadata(self) -> Dict[str, Optional[Dict[str, str]]]:
        return {f: s.metadata for f, s in self._files.items()}

    def info(self, name: str):
        """(TensorInfo, path of its file) of a stored tensor."""
        if name not in self._where:
            raise KeyError(f"checkpoint {self.path}: no tensor {name!r}")
        f = self._where[name]
        return self._files[f].info(name), f

    # ---- tensors stored in pieces
    def is_fp8_scaled(self, name: str) -> bool:
        """name is an FP8 tensor with a `<name>_scale_inv` beside it."""
        if name not in self._where or name + SCALE_SUFFIX not in self._where:
            return False
        return self.info(name)[0].dtype in ("F8_E4M3", "F8_E5M2")

    def is_mxfp4(self, name: str) -> bool:
        """name is stored as an MXFP4 pair `<name>_blocks` + `<name>_scales`."""
        return name not in self._where and all(name + s in self._where for s in MXFP4_SUFFIXES)

    def get(self, name: str, dtype=None):
        """The tensor `name` (None if there is none: Mapping.get; note the second argument is a dtype, not a
        default). dtype None: as stored. dtype "float32" / "bfloat16" / "float16": FP8-with-scales and MXFP4
        pairs dequantized (transformers' arithmetic), anything else converted."""
        if dtype is None:
            return self[name] if name in self._where else None
        od = blockquant.out_dtype(dtype)
        if self.is_fp8_scaled(name):
            _, f = self.info(name)
            return blockquant.dequantize_fp8(self[name], self[name + SCALE_SUFFIX],
                                             blockquant.fp8_block_size(self.config), od, path=f, name=name)
        if self.is_mxfp4(name):
            _, f = self.info(name + "_blocks")
            return blockquant.dequantize_mxfp4(self[name + "_blocks"], self[name + "_scales"], od, path=f,
                                               name=name)
        if name not in self._where:
            return None
        a = self[name]
        if a.dtype.kind not in "fV" and a.dtype.name not in ("bfloat16",) and not a.dtype.name.startswith("float8"):
            raise TypeError(f"{name}: a {a.dtype} tensor is not a float tensor to convert to {od.name}")
        return a if a.dtype == od else a.astype(od)

    def drop_pages(self) -> None:
        """Release the pages read so far of every shard from resident memory (SafetensorsFile.drop_pages)."""
        for f in self._files.values():
            f.drop_pages()

    def dequantized(self, dtype="float32") -> "DequantizedView":
        """A Mapping view whose FP8-with-scales and MXFP4 tensors come back dequantized to `dtype` (the
        `_scale_inv`, `_blocks`, `_scales` pieces hidden; MXFP4 under its own name); others as stored."""
        return DequantizedView(self, dtype)


class DequantizedView(Mapping):
    """See Checkpoint.dequantized."""

    def __init__(self, ckpt: Checkpoint, dtype="float32"):
        self.ckpt = ckpt
        self.dtype = blockquant.out_dtype(dtype)
        self.config = ckpt.config
        names = []
        for n in ckpt:
            if n.endswith(SCALE_SUFFIX) and ckpt.is_fp8_scaled(n[:-len(SCALE_SUFFIX)]):
                continue
            base = next((n[:-len(s)] for s in MXFP4_SUFFIXES if n.endswith(s)), None)
            if base is not None and ckpt.is_mxfp4(base):
                if n.endswith("_blocks"):
                    names.append(base)
                continue
            names.append(n)
        self._names = names
        self._set = set(names)

    def __getitem__(self, name):
        if name not in self._set:
            raise KeyError(f"checkpoint {self.ckpt.path}: no tensor {name!r}")
        if self.ckpt.is_fp8_scaled(name) or self.ckpt.is_mxfp4(name):
            return self.ckpt.get(name, self.dtype)
        return self.ckpt[name]

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def __contains__(self, name):
        return name in self._set


def open_checkpoint(path) -> Checkpoint:
    """A read-only Mapping of tensor name -> memory-mapped array over a .safetensors file, a directory or a
    sharded directory (model.safetensors.index.json); `.config` is its config.json. See moepy.io.checkpoint."""
    return Checkpoint(path)

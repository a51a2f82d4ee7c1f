"""safetensors files: a validating header parser, memory-mapped NumPy views, and a writer.

Format (huggingface/safetensors): 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON (an object: tensor
name -> {"dtype", "shape", "data_offsets": [begin, end]} and an optional "__metadata__" str -> str map), then the
data buffer that the offsets index. Files are untrusted: `parse_header` enforces every rule of the reference Rust
reader (header length capped at 100,000,000 bytes and inside the file; UTF-8; starts with '{'; a JSON object;
known dtypes; dims non-negative integers whose product does not overflow u64; integer offsets, begin <= end;
byte count = element count x dtype size; tensors sorted by offset tile the buffer from 0 with no hole and no
overlap, and the buffer ends exactly at the end of the file; `__metadata__` a string-to-string map) and more
(duplicate keys, NaN / Infinity literals; deep nesting is a CheckpointError, not a RecursionError). Every violation is a `CheckpointError` (a ValueError)
naming the file and the tensor, raised before any allocation the header implies.

Arrays are read-only views of one `mmap` of the file: opening costs the header, and a tensor's pages are read
when (and only when) they are touched. BF16 is `ml_dtypes.bfloat16`; F8_E4M3 / F8_E5M2 are
`ml_dtypes.float8_e4m3fn` / `float8_e5m2`.
"""
from __future__ import annotations

import json
import mmap
import os
import stat
import tempfile
import struct
import sys
from dataclasses import dataclass
from typing import Dict, Iterator, Mapping, Optional, Tuple

import ml_dtypes
import numpy as np

from .._json import unique_keys
from .errors import CheckpointError

MAX_HEADER_SIZE = 100_000_000  # the reference reader's cap
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the process's umask
MAX_DIMS = 64  # NumPy's limit on dimensions
MAX_DIM = (1 << 63) - 1  # NumPy's largest dimension (np.intp), even for a zero-element array
_U64 = (1 << 64) - 1

# safetensors dtype -> (bits per element, NumPy dtype or None when NumPy has no array of it)
DTYPES: Dict[str, Tuple[int, Optional[np.dtype]]] = {
    "BOOL": (8, np.dtype(np.bool_)),
    "U8": (8, np.dtype(np.uint8)), "I8": (8, np.dtype(np.int8)),
    "U16": (16, np.dtype("<u2")), "I16": (16, np.dtype("<i2")),
    "U32": (32, np.dtype("<u4")), "I32": (32, np.dtype("<i4")),
    "U64": (64, np.dtype("<u8")), "I64": (64, np.dtype("<i8")),
    "F16": (16, np.dtype("<f2")), "F32": (32, np.dtype("<f4")), "F64": (64, np.dtype("<f8")),
    "BF16": (16, np.dtype(ml_dtypes.bfloat16)),
    "F8_E4M3": (8, np.dtype(ml_dtypes.float8_e4m3fn)), "F8_E5M2": (8, np.dtype(ml_dtypes.float8_e5m2)),
    "F8_E4M3FNUZ": (8, np.dtype(ml_dtypes.float8_e4m3fnuz)), "F8_E5M2FNUZ": (8, np.dtype(ml_dtypes.float8_e5m2fnuz)),
    "F8_E8M0": (8, np.dtype(ml_dtypes.float8_e8m0fnu)),
    "C64": (64, np.dtype("<c8")),
    "F4": (4, None), "F6_E2M3": (6, None), "F6_E3M2": (6, None),  # packed sub-byte: no NumPy view
}
_BY_NUMPY = {v[1]: k for k, v in DTYPES.items() if v[1] is not None and not k.endswith("FNUZ")}
_BY_NUMPY[np.dtype("<f4")] = "F32"


@dataclass(frozen=True)
class TensorInfo:
    """One header entry: dtype (safetensors name), shape, byte range [begin, end) of the data buffer."""

    dtype: str
    shape: Tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class Header:
    """A validated header: tensors in file order of their offsets, metadata, where the data buffer starts."""

    tensors: Dict[str, TensorInfo]
    metadata: Optional[Dict[str, str]]
    data_start: int


def _pairs(path):
    return unique_keys(lambda k: CheckpointError(path, k, "duplicate key in the header"))


def _bad_constant(path):
    def hook(name):
        raise CheckpointError(path, None, f"{name} is not JSON (the header may hold only JSON values)")
    return hook


def _is_uint(v) -> bool:
    return type(v) is int and 0 <= v <= _U64


def parse_header(head: bytes, file_size: int, path=None) -> Header:
    """Validate a header. `head` holds at least the first 8 bytes of the file and, if the length they give
    fits the rules, the whole header; `file_size` is the size of the file. CheckpointError on any violation."""
    if file_size < 8 or len(head) < 8:
        raise CheckpointError(path, None, f"file of {file_size} bytes is too small for the 8-byte header length")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER_SIZE:
        raise CheckpointError(path, None, f"header length {n:,} exceeds the limit of {MAX_HEADER_SIZE:,} bytes")
    if 8 + n > file_size:
        raise CheckpointError(path, None, f"header length {n:,} runs past the end of the {file_size:,}-byte file")
    if len(head) < 8 + n:
        raise CheckpointError(path, None, f"header truncated: {len(head) - 8} of {n} bytes")
    raw = bytes(head[8:8 + n])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(path, None, f"header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.startswith("{"):
        raise CheckpointError(path, None, "header does not start with '{' (not a JSON object)")
    try:
        obj = json.loads(text, object_pairs_hook=_pairs(path), parse_constant=_bad_constant(path))
    except CheckpointError:
        raise
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise CheckpointError(path, None, f"header is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(path, None, f"header is a JSON {type(obj).__name__}, not an object")
    metadata = None
    entries = []
    for name, e in obj.items():
        if name == "__metadata__":
            if e is None:
                continue
            if not isinstance(e, dict) or not all(isinstance(v, str) for v in e.values()):
                bad = e if not isinstance(e, dict) else next(v for v in e.values() if not isinstance(v, str))
                raise CheckpointError(path, name, f"__metadata__ must map strings to strings, holds {bad!r:.60}")
            metadata = e
            continue
        if not isinstance(e, dict):
            raise CheckpointError(path, name, f"entry is a {type(e).__name__}, not an object")
        for key in ("dtype", "shape", "data_offsets"):
            if key not in e:
                raise CheckpointError(path, name, f"entry has no {key!r}")
        dt, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if not isinstance(dt, str) or dt not in DTYPES:
            raise CheckpointError(path, name, f"unknown dtype {dt!r:.40}; known: {', '.join(DTYPES)}")
        if type(shape) is not list:
            raise CheckpointError(path, name, f"shape must be a list of non-negative integers, got {shape!r:.80}")
        if len(shape) > MAX_DIMS:
            raise CheckpointError(path, name, f"{len(shape)} dimensions; NumPy holds at most {MAX_DIMS}")
        count = 1
        for d in shape:  # type(d) is int: a bool is not a dim
            if type(d) is not int or d < 0 or d > _U64:
                raise CheckpointError(path, name, f"shape must be a list of non-negative integers, got {shape!r:.80}")
            if d > MAX_DIM:
                raise CheckpointError(path, name, f"dimension {d} overflows NumPy's limit (2**63 - 1)")
            count *= d
            if count > _U64:
                raise CheckpointError(path, name, f"the element count of shape {shape} overflows 64 bits")
        if type(offs) is not list or len(offs) != 2 or not (_is_uint(offs[0]) and _is_uint(offs[1])):
            raise CheckpointError(path, name, f"data_offsets must be two non-negative integers, got {offs!r:.80}")
        bits = DTYPES[dt][0] * count
        if bits > _U64:
            raise CheckpointError(path, name, f"the byte count of shape {shape} x {dt} overflows 64 bits")
        if bits % 8:
            raise CheckpointError(path, name, f"{count} elements of {dt} are not a whole number of bytes")
        begin, end = offs
        if end < begin:
            raise CheckpointError(path, name, f"data_offsets end {end} < begin {begin}")
        if end - begin != bits // 8:
            raise CheckpointError(path, name, f"holds {end - begin} bytes but shape {shape} x {dt} needs "
                                              f"{bits // 8}")
        entries.append((begin, end, name, TensorInfo(dt, tuple(shape), begin, end)))
    entries.sort(key=lambda t: (t[0], t[1]))
    buffer = file_size - 8 - n
    pos, prev = 0, None
    for begin, end, name, _ in entries:
        if begin < pos:
            raise CheckpointError(path, name, f"bytes [{begin}, {end}) overlap tensor {prev!r} (ends at {pos})")
        if begin > pos:
            raise CheckpointError(path, name, f"a hole of {begin - pos} unindexed bytes before it (at {pos})")
        if end > buffer:
            raise CheckpointError(path, name, f"bytes [{begin}, {end}) run past the end of the {buffer}-byte "
                                              f"data buffer")
        pos, prev = end, name
    if pos != buffer:
        raise CheckpointError(path, prev, f"the data buffer has {buffer - pos} bytes past the last tensor "
                                          f"(the buffer must be fully indexed)")
    return Header({name: info for _, _, name, info in entries}, metadata, 8 + n)


def _check_regular_file(path) -> None:
    """A FIFO, a device or a directory is not a checkpoint (opening a FIFO would block forever)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise CheckpointError(os.fspath(path), None, f"cannot open: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(os.fspath(path), None, "not a regular file")


def read_header(path) -> Header:
    """The validated header of the file at `path` (reads the 8-byte length and the header only)."""
    _check_regular_file(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) == 8:
            (n,) = struct.unpack("<Q", head)
            if n <= MAX_HEADER_SIZE and 8 + n <= size:  # else parse_header raises, having read nothing more
                head += f.read(n)
        return parse_header(head, size, path)


class SafetensorsFile(Mapping):
    """One .safetensors file, memory-mapped: a read-only Mapping of tensor name -> NumPy view.

    Views share the map (no copy; np.array(view) copies). `.metadata` is the __metadata__ map or None;
    `.info(name)` the TensorInfo. Opening reads the header only."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.header = read_header(self.path)
        self._map = None
        if self.header.tensors and os.path.getsize(self.path) > 0:
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            if len(self._map) != self.header.data_start + max(t.end for t in self.header.tensors.values()):
                raise CheckpointError(self.path, None, "the file changed size while it was opened")

    @property
    def metadata(self) -> Optional[Dict[str, str]]:
        return self.header.metadata

    def info(self, name: str) -> TensorInfo:
        try:
            return self.header.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor {name!r}") from None

    def __getitem__(self, name: str) -> np.ndarray:
        t = self.info(name)
        dt = DTYPES[t.dtype][1]
        if dt is None:
            raise CheckpointError(self.path, name, f"dtype {t.dtype} (packed sub-byte) has no NumPy array type; "
                                                   f"moepy reads it only through a format that knows its layout")
        count = t.nbytes // dt.itemsize
        if count == 0:
            a = np.zeros(t.shape, dt)
            a.flags.writeable = False
            return a
        a = np.frombuffer(self._map, dtype=dt, count=count, offset=self.header.data_start + t.begin)
        if sys.byteorder == "big":  # pragma: no cover - the files are little-endian
            a = a.byteswap().view(dt.newbyteorder(">"))
        return a.reshape(t.shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self.header.tensors)

    def drop_pages(self) -> None:
        """Release the file pages read so far from this process's resident memory (madvise DONTNEED on the
        read-only map): views stay valid and read the file again when used. Loaders call it after converting a
        layer, so a checkpoint's pages do not accumulate in the RSS of the process that packs it."""
        if self._map is not None and hasattr(self._map, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def __len__(self) -> int:
        return len(self.header.tensors)

    def __contains__(self, name) -> bool:
        return name in self.header.tensors

    def __repr__(self):
        return f"SafetensorsFile({self.path!r}, {len(self)} tensors)"


def load_file(path) -> Dict[str, np.ndarray]:
    """Every tensor of one .safetensors file as a dict of read-only, memory-mapped NumPy arrays
    (BF16 as ml_dtypes.bfloat16, F8_E4M3 / F8_E5M2 as ml_dtypes.float8_e4m3fn / float8_e5m2).
    CheckpointError (a ValueError naming the file and tensor) for a malformed file."""
    f = SafetensorsFile(path)
    return {name: f[name] for name in f}


def _to_numpy(name: str, a) -> np.ndarray:
    if hasattr(a, "detach") and hasattr(a, "dtype") and not isinstance(a, np.ndarray):  # a torch tensor
        import torch
        t = a.detach().cpu().contiguous()
        special = {torch.bfloat16: ml_dtypes.bfloat16, torch.float8_e4m3fn: ml_dtypes.float8_e4m3fn,
                   torch.float8_e5m2: ml_dtypes.float8_e5m2}
        if t.dtype in special:
            return t.view(torch.uint8).numpy().view(special[t.dtype]).reshape(tuple(t.shape))
        return t.numpy()
    a = np.asarray(a)
    return a


def save_file(tensors: Mapping[str, np.ndarray], path, metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write `tensors` (name -> NumPy array, ml_dtypes arrays and torch tensors included) to one .safetensors
    file that safetensors.numpy / safetensors.torch read unchanged. Tensors are laid out by decreasing element
    size, then name (each aligned to its element size); the header is padded with spaces to 8 bytes. The file is
    written to a temporary name and renamed, so a reader never sees half a file. TypeError for a dtype
    safetensors has no name for, ValueError for a non-string name or metadata."""
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                        for k, v in metadata.items()):
            raise ValueError("metadata must map strings to strings")
    arrays = {}
    for name, a in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"tensor names must be strings other than '__metadata__', got {name!r}")
        a = _to_numpy(name, a)
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dt.byteorder == "=" and sys.byteorder == "little":
            dt = dt.newbyteorder("<")
        key = _BY_NUMPY.get(np.dtype(dt)) or _BY_NUMPY.get(a.dtype)
        if key is None:
            raise TypeError(f"tensor {name!r}: dtype {a.dtype} has no safetensors name")
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        if not a.flags.c_contiguous:
            a = a.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
        arrays[name] = (key, a)
    order = sorted(arrays, key=lambda k: (-arrays[k][1].dtype.itemsize, k))
    header: dict = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    pos = 0
    for name in order:
        key, a = arrays[name]
        header[name] = {"dtype": key, "shape": list(a.shape), "data_offsets": [pos, pos + a.nbytes]}
        pos += a.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for name in order:
                a = arrays[name][1]
                if a.nbytes:
                    f.write(memoryview(a.reshape(-1).view(np.uint8)))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600: give the file the permissions open() would
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

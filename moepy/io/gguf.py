"""GGUF (llama.cpp) checkpoints of MoE models, through the `gguf` package, under the family's Hugging Face names.

`open_gguf(path)` validates the whole header first (our own pass: the llama.cpp GGUF CVEs, CVE-2024-21836,
CVE-2025-49847, CVE-2025-53630, are sizes, offsets and counts taken on trust): magic and version (2 or 3,
little-endian), key/value and tensor counts bounded by the bytes that could hold them, every string and array
length inside the file, value types known, no nested arrays, no duplicate keys or tensor names, at most 4 dims
(each >= 1, product without overflow), tensor types known to gguf, rows a whole number of blocks, offsets aligned
to general.alignment (a power of two), every tensor inside the data section and no two overlapping. Only then
does `gguf.GGUFReader` read the file (memory-mapped). Every violation is a CheckpointError naming the file and the
tensor (or key).

The result is a read-only Mapping of Hugging Face names (the family's, from Family.gguf) to arrays: F32 / F16 /
BF16 tensors as memory-mapped views (float32 / float16 / ml_dtypes.bfloat16), Q8_0 / Q4_0 / Q4_1 / IQ4_NL dequantized
to float32 (gguf's own dequantize), stacked experts as per-expert views. `.quantized(gguf_name)` re-lays a Q8_0 /
Q4_0 / Q4_1 / IQ4_NL tensor into moepy's INT blocks (int8 / int4 / int4_asym / int4_nl, groups of 32) bit for bit, without
requantizing. Any other tensor type is a CheckpointError naming it. `.config` is the config.json dict the
metadata gives, `.model_config` its ModelConfig.
"""
from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Mapping
from typing import Dict, List, Tuple

import ml_dtypes
import numpy as np

from .errors import CheckpointError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_DIMS = 4
MAX_NAME = 1024  # bytes of a key or tensor name (llama.cpp's GGML_MAX_NAME is 64; names here are a few dozen)
_SCALAR = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4), 6: ("<f", 4),
           7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
T_STRING, T_ARRAY = 8, 9
SUPPORTED = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "IQ4_NL")
INT_FORMAT = {"Q8_0": "int8", "Q4_0": "int4", "Q4_1": "int4_asym", "IQ4_NL": "int4_nl"}


class _Cursor:
    def __init__(self, buf, path):
        self.buf, self.pos, self.size, self.path = buf, 0, len(buf), path

    def take(self, n: int, what: str, tensor=None) -> memoryview:
        if n < 0 or self.pos + n > self.size:
            raise CheckpointError(self.path, tensor, f"{what} at byte {self.pos} needs {n:,} bytes, past the end "
                                                     f"of the {self.size:,}-byte file")
        v = self.buf[self.pos:self.pos + n]
        self.pos += n
        return v

    def u32(self, what, tensor=None) -> int:
        return struct.unpack("<I", self.take(4, what, tensor))[0]

    def u64(self, what, tensor=None) -> int:
        return struct.unpack("<Q", self.take(8, what, tensor))[0]

    def string(self, what, tensor=None, limit=None, decode=True):
        n = self.u64(f"{what} length", tensor)
        if limit is not None and n > limit:
            raise CheckpointError(self.path, tensor, f"{what} of {n:,} bytes exceeds the limit of {limit}")
        raw = self.take(n, what, tensor)
        if not decode:
            return None
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(self.path, tensor, f"{what} is not UTF-8") from None


def _value(c: _Cursor, t: int, key: str, keep: bool):
    if t in _SCALAR:
        fmt, n = _SCALAR[t]
        return struct.unpack(fmt, c.take(n, "value", key))[0]
    if t == T_STRING:
        return c.string("string value", key, decode=keep)
    if t == T_ARRAY:
        it = c.u32("array item type", key)
        n = c.u64("array length", key)
        if it == T_ARRAY:
            raise CheckpointError(c.path, key, "nested arrays are not supported")
        if it not in _SCALAR and it != T_STRING:
            raise CheckpointError(c.path, key, f"unknown array item type {it}")
        least = _SCALAR[it][1] if it in _SCALAR else 8
        if n * least > c.size - c.pos:
            raise CheckpointError(c.path, key, f"array of {n:,} items needs at least {n * least:,} bytes, more than "
                                               f"the {c.size - c.pos:,} left in the file")
        if it in _SCALAR:
            fmt, size = _SCALAR[it]
            raw = c.take(n * size, "array", key)
            if not keep:
                return None
            return np.frombuffer(raw, dtype=np.dtype(fmt)).tolist()
        out = [] if keep else None
        for _ in range(n):
            s = c.string("array string", key, decode=keep)
            if keep:
                out.append(s)
        return out
    raise CheckpointError(c.path, key, f"unknown value type {t}")


def scan(path) -> Tuple[dict, List[tuple], int, int]:
    """Validate a GGUF file's header -> (metadata key -> value, [(name, shape (NumPy order), type name, offset
    in the file, nbytes)], data start, version). CheckpointError on any violation."""
    import gguf
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 24:
            raise CheckpointError(path, None, f"file of {size} bytes is too small for a GGUF header")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        c = _Cursor(memoryview(mm), path)
        if bytes(c.take(4, "magic")) != MAGIC:
            raise CheckpointError(path, None, "not a GGUF file (magic is not 'GGUF')")
        version = c.u32("version")
        if version not in VERSIONS:
            swapped = struct.unpack(">I", struct.pack("<I", version))[0]
            hint = " (a big-endian GGUF: not supported)" if swapped in VERSIONS else ""
            raise CheckpointError(path, None, f"GGUF version {version} is not supported (2, 3){hint}")
        n_tensors = c.u64("tensor count")
        n_kv = c.u64("key/value count")
        if n_kv * 13 > size - c.pos:  # each pair takes at least 8 + 1 + 4 bytes
            raise CheckpointError(path, None, f"{n_kv:,} key/value pairs cannot fit in a {size:,}-byte file")
        if n_tensors * 24 > size - c.pos:  # each tensor info takes at least 8 + 4 + 4 + 8 bytes
            raise CheckpointError(path, None, f"{n_tensors:,} tensors cannot fit in a {size:,}-byte file")
        meta: dict = {}
        for _ in range(n_kv):
            k = c.string("key", None, MAX_NAME)
            if k in meta:
                raise CheckpointError(path, k, "duplicate key")
            t = c.u32("value type", k)
            keep = not k.startswith("tokenizer.ggml.") or k in ("tokenizer.ggml.model",)
            v = _value(c, t, k, keep)
            if not keep and t == T_ARRAY:
                v = _Skipped(k)
            meta[k] = v
        align = meta.get("general.alignment", 32)
        if not isinstance(align, int) or isinstance(align, bool) or align < 1 or align & (align - 1):
            raise CheckpointError(path, "general.alignment", f"must be a power of two, got {align!r}")
        infos = []
        names = set()
        types = {t.value: t.name for t in gguf.GGMLQuantizationType}
        for _ in range(n_tensors):
            name = c.string("tensor name", None, MAX_NAME)
            if name in names:
                raise CheckpointError(path, name, "duplicate tensor name")
            names.add(name)
            nd = c.u32("dimension count", name)
            if not 1 <= nd <= MAX_DIMS:
                raise CheckpointError(path, name, f"{nd} dimensions (1 to {MAX_DIMS} allowed)")
            dims = [c.u64("dimension", name) for _ in range(nd)]
            tt = c.u32("tensor type", name)
            off = c.u64("tensor offset", name)
            if tt not in types:
                raise CheckpointError(path, name, f"unknown tensor type {tt}")
            tname = types[tt]
            block, tsize = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(tt)]
            count = 1
            for d in dims:
                if d < 1:
                    raise CheckpointError(path, name, f"dimension {d} in {dims} (each must be >= 1)")
                count *= d
                if count >= 1 << 62:
                    raise CheckpointError(path, name, f"element count of {dims} overflows")
            if dims[0] % block:
                raise CheckpointError(path, name, f"rows of {dims[0]} elements are not whole {tname} blocks of {block}")
            nbytes = count // block * tsize
            if off % align:
                raise CheckpointError(path, name, f"offset {off} is not a multiple of the alignment {align}")
            infos.append([name, tuple(reversed(dims)), tname, off, nbytes])
        data_start = -(-c.pos // align) * align
        if data_start > size:
            raise CheckpointError(path, None, f"the data section starts at {data_start:,}, past the end of the "
                                              f"{size:,}-byte file")
        for info in infos:
            info[3] += data_start
        prev_end, prev = data_start, None
        for name, _, _, start, nbytes in sorted(infos, key=lambda i: (i[3], i[4])):
            if start < prev_end:
                raise CheckpointError(path, name, f"bytes [{start}, {start + nbytes}) overlap tensor {prev!r}")
            if start + nbytes > size:
                raise CheckpointError(path, name, f"bytes [{start:,}, {start + nbytes:,}) run past the end of the "
                                                  f"{size:,}-byte file")
            prev_end, prev = start + nbytes, name
        del c
        return meta, [tuple(i) for i in infos], data_start, version
    finally:
        try:
            mm.close()
        except BufferError:  # pragma: no cover
            pass


class _Skipped:
    """A tokenizer array not decoded by the validating pass (GGUFReader holds it)."""

    def __init__(self, key):
        self.key = key


# ---------------------------------------------------------------- GGUF blocks -> moepy INT blocks
def relayout(raw: np.ndarray, kind: str, shape: Tuple[int, ...]):
    """GGUF Q8_0 / Q4_0 / Q4_1 / IQ4_NL bytes of a tensor of NumPy `shape` (..., N, K) -> QuantizedTensor
    (E, N, K) in moepy's layout (blocks of 16 output columns x 32 inputs, csrc/kernels/quant.h), the same values:
    Q8_0   w = d q           -> int8       w = s (u - 128), u = q + 128
    Q4_0   w = d (q - 8)     -> int4       w = s (u - 8)
    Q4_1   w = d q + m       -> int4_asym  w = s u + m
    IQ4_NL w = d values[q]   -> int4_nl    w = s L[u] (the same 16 levels)"""
    from ..moe.quant import QuantizedTensor
    K, N = shape[-1], shape[-2]
    E = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1
    ng, npb, G = K // 32, -(-N // 16), 32
    bsize = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20, "IQ4_NL": 18}[kind]
    b = np.asarray(raw, dtype=np.uint8).reshape(E, N, ng, bsize)
    Np = npb * 16
    d = np.zeros((E, Np, ng), np.uint16)
    d[:, :N] = b[..., 0:2].copy().view(np.uint16)[..., 0]
    scales = d.reshape(E, npb, 16, ng).transpose(0, 1, 3, 2)  # (E, npb, ng, 16)
    if kind == "Q8_0":
        u = np.full((E, Np, ng, G), 128, np.uint8)
        u[:, :N] = (b[..., 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        q = u.reshape(E, npb, 16, ng, G // 4, 4).transpose(0, 1, 3, 4, 2, 5).reshape(E, npb, ng, G * 16)
        parts = [_bytes16(scales), q]
    else:
        off = 4 if kind == "Q4_1" else 2
        qs = b[..., off:off + 16]
        u = np.full((E, Np, ng, G), 0 if kind == "Q4_1" else 8, np.uint8)  # padding columns (scale 0)
        u[:, :N, :, :16] = qs & 0x0F
        u[:, :N, :, 16:] = qs >> 4
        u6 = u.reshape(E, npb, 16, ng, G // 8, 2, 4)  # (.., pair p, half, i): element 8p + 4 half + i
        byte = (u6[..., 0, :] | (u6[..., 1, :] << 4)).astype(np.uint8)  # (E, npb, 16, ng, G/8, 4)
        q = byte.transpose(0, 1, 3, 4, 2, 5).reshape(E, npb, ng, G * 8)
        parts = [_bytes16(scales)]
        if kind == "Q4_1":
            m = np.zeros((E, Np, ng), np.uint16)
            m[:, :N] = b[..., 2:4].copy().view(np.uint16)[..., 0]
            parts.append(_bytes16(m.reshape(E, npb, 16, ng).transpose(0, 1, 3, 2)))
        parts.append(q)
    parts = [np.ascontiguousarray(p) for p in parts]
    blocks = np.concatenate(parts, axis=-1).reshape(-1)
    return QuantizedTensor(blocks, (E, N, K), INT_FORMAT[kind], G)


def _bytes16(a: np.ndarray) -> np.ndarray:
    """(E, npb, ng, 16) uint16 -> (E, npb, ng, 32) bytes (little-endian fp16 as the C structs hold them)."""
    a = np.ascontiguousarray(a, dtype='<u2')
    return a.view(np.uint8).reshape(*a.shape[:-1], 32)


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (convert_hf_to_gguf's LlamaModel.permute) of w (rows, ...)."""
    rows = w.shape[0]
    return np.ascontiguousarray(w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2)
                                .reshape(w.shape))


class GGUFCheckpoint(Mapping):
    """A GGUF file's tensors under the family's Hugging Face names (see the module docstring).

    .family: the moepy Family; .config: config.json dict; .model_config: ModelConfig; .metadata: GGUF key ->
    value (tokenizer arrays left out); .gguf_names: HF name -> GGUF name (+ expert index);
    .tensor_type(name): the GGUF type name of an HF or GGUF name; .quantized(gguf_name): moepy INT blocks."""

    def __init__(self, path):
        import gguf
        from ..families import registry
        self.path = os.fspath(path)
        meta, infos, data_start, version = scan(self.path)
        self.metadata = {k: v for k, v in meta.items() if not isinstance(v, _Skipped)}
        self.version = version
        arch = meta.get("general.architecture")
        if not isinstance(arch, str):
            raise CheckpointError(self.path, "general.architecture", "missing or not a string")
        self.arch = arch
        try:
            self.family = registry.for_gguf_arch(arch, meta)
        except ValueError as exc:
            raise CheckpointError(self.path, "general.architecture", str(exc)) from None
        self._info = {i[0]: i for i in infos}
        shapes = {i[0]: i[1] for i in infos}
        spec = self.family.gguf
        try:
            self.config = spec.config(self.metadata, arch, shapes)
        except (ValueError, TypeError, OverflowError, ZeroDivisionError) as exc:
            raise CheckpointError(self.path, None, f"metadata: {exc}") from None
        try:
            self._reader = gguf.GGUFReader(self.path)
        except Exception as exc:  # validated above; anything left is the reader's own refusal
            raise CheckpointError(self.path, None, f"gguf.GGUFReader refused the file: {exc}") from None
        self._tensors = {t.name: t for t in self._reader.tensors}
        self._spec = spec
        self._names = self._map_names(spec, shapes)

    # ---- names
    def _map_names(self, spec, shapes) -> Dict[str, tuple]:
        import re
        pats = []
        for g, h in spec.names().items():
            rx = re.compile("^" + re.escape(g).replace(re.escape("{i}"), r"(\d+)") + "$")
            pats.append((rx, h))
        out: Dict[str, tuple] = {}
        prefix = f"model.layers.{{i}}.{spec.moe}.experts."
        for name, shape in shapes.items():
            m = re.match(r"^blk\.(\d+)\.ffn_(gate|up|down)_exps\.(weight|bias)$", name)
            if m:
                i, which, kind = m.group(1), m.group(2), m.group(3)
                if spec.fused_interleaved:
                    if which == "down":
                        out[f"model.layers.{i}.{spec.moe}.experts.down_proj" + ("_bias" if kind == "bias" else "")] = \
                            ("down", name)
                    else:
                        out[f"model.layers.{i}.{spec.moe}.experts.gate_up_proj" + ("_bias" if kind == "bias" else "")] \
                            = ("gate_up", f"blk.{i}.ffn_gate_exps.{kind}", f"blk.{i}.ffn_up_exps.{kind}")
                    continue
                hf = spec.experts[("gate", "up", "down").index(which)]
                for e in range(shape[0]):
                    out[prefix.format(i=i) + f"{e}.{hf}.{kind}"] = ("expert", name, e)
                continue
            for rx, h in pats:
                mm = rx.match(name)
                if mm:
                    hf = h.format(i=mm.group(1)) if mm.groups() else h
                    out[hf] = ("plain", name)
                    break
            else:
                out[name] = ("plain", name)  # no HF name known: kept under its GGUF name
        return out

    @property
    def gguf_names(self) -> Dict[str, tuple]:
        return dict(self._names)

    @property
    def model_config(self):
        from ..configs.model import ModelConfig
        return ModelConfig.from_hf(self.config)

    def tensor_type(self, name: str) -> str:
        g = self._names[name][1] if name in self._names else name
        if g not in self._info:
            raise KeyError(f"{self.path}: no tensor {name!r}")
        return self._info[g][2]

    # ---- raw GGUF tensors
    def _float(self, gname: str) -> np.ndarray:
        import gguf
        t = self._tensors[gname]
        _, shape, kind, _, _ = self._info[gname]
        if kind == "F32" or kind == "F16":
            return t.data.reshape(shape)
        if kind == "BF16":
            return t.data.view(ml_dtypes.bfloat16).reshape(shape)
        if kind in INT_FORMAT:
            return gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32, copy=False)
        raise CheckpointError(self.path, gname, f"tensor type {kind} is not supported (moepy reads "
                                                f"{', '.join(SUPPORTED)})")

    def _float_expert(self, gname: str, e: int) -> np.ndarray:
        """Expert e of the stacked tensor `gname` (E, N, K): a view for float types, and only that expert's blocks
        dequantized for the block types (not the whole stack once per expert)."""
        import gguf
        _, shape, kind, _, _ = self._info[gname]
        if kind not in INT_FORMAT:
            return self._float(gname)[e]
        t = self._tensors[gname]
        rows = np.asarray(t.data).reshape(shape[0], -1, np.asarray(t.data).shape[-1])[e]
        return gguf.quants.dequantize(rows, t.tensor_type).reshape(shape[1:]).astype(np.float32, copy=False)

    def quantized(self, gguf_name: str):
        """The Q8_0 / Q4_0 / Q4_1 / IQ4_NL tensor `gguf_name` as moepy INT blocks (QuantizedTensor (E, N, K), E = 1 for
        a matrix), re-laid bit for bit: its dequantized values equal gguf's dequantize."""
        if gguf_name not in self._info:
            raise KeyError(f"{self.path}: no GGUF tensor {gguf_name!r}")
        _, shape, kind, _, _ = self._info[gguf_name]
        if kind not in INT_FORMAT:
            raise CheckpointError(self.path, gguf_name, f"tensor type {kind} has no moepy INT format (Q8_0 -> int8, "
                                                        f"Q4_0 -> int4, Q4_1 -> int4_asym, IQ4_NL -> int4_nl)")
        if len(shape) < 2:
            raise CheckpointError(self.path, gguf_name, f"a quantized tensor must be a matrix, got shape {shape}")
        return relayout(self._tensors[gguf_name].data, kind, shape)

    def moe_layer(self, layer_index: int, dtype: str = "float32"):
        """The MoELayer of block `layer_index`. When its three expert tensors (ffn_{gate,up,down}_exps) are all
        Q8_0, Q4_0, Q4_1 or IQ4_NL, the routed experts keep those very blocks, re-laid bit for bit into moepy's
        int8 / int4 / int4_asym / int4_nl format (groups of 32): llama.cpp's weights, not a requantization. Otherwise, and for
        everything else (router, shared expert), the tensors are read as MoELayer.from_hf reads them (dtype
        "float32" or "bfloat16"); with INT blocks the routed experts are never packed as floats (the family's reader
        checks them one expert at a time)."""
        from ..moe.layer import MoELayer
        from ..moe.packed import PackedOnlyExperts
        from ..moe.quant import block_bytes
        from ..moe.weights import ExpertSource
        names = [f"blk.{layer_index}.ffn_{w}_exps.weight" for w in ("gate", "up", "down")]
        kinds = {self._info[n][2] for n in names if n in self._info}
        if len(kinds) != 1 or len([n for n in names if n in self._info]) != 3 or next(iter(kinds)) not in INT_FORMAT:
            return MoELayer.from_hf(self.config, self, layer_index, dtype)
        # the routed experts are replaced by the file's blocks: read (and checked) one at a time, never packed
        layer = MoELayer._from_hf_unpacked(self.config, self, layer_index, dtype)
        if isinstance(layer.experts, ExpertSource):
            layer.experts.check()  # as packing the float experts would (NaN / inf, shapes), one at a time
        g, u, d = (self.quantized(n) for n in names)
        E, H, I = layer.experts.shape
        if g.shape != (E, I, H) or u.shape != (E, I, H) or d.shape != (E, H, I):
            raise CheckpointError(self.path, names[0], f"expert tensors of shapes {g.shape}, {u.shape}, {d.shape} "
                                                       f"do not make a layer of E={E}, H={H}, I={I}")
        fmt = g.format
        bb = block_bytes(fmt, 32)
        w_in = np.stack([g.blocks.reshape(E, -(-I // 16), H // 32, bb), u.blocks.reshape(E, -(-I // 16), H // 32, bb)],
                        axis=3).reshape(-1)
        ex = layer.experts
        packed = PackedOnlyExperts(E, H, I, True, ex.activation, ex.alpha, ex.limit, fmt, 32, w_in, d.blocks,
                                   ex.gate_bias, ex.up_bias, ex.down_bias)
        return MoELayer(layer.router, layer.router_weight, packed, shared=layer.shared,
                        shared_gate_weight=layer.shared_gate_weight, router_bias=layer.router_bias,
                        selection_bias=layer.selection_bias, scale_input=layer.scale_input, dtype=fmt,
                        family=layer.family, group_size=32, shared_dtype=layer.shared_dtype)

    # ---- the Mapping
    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(f"{self.path}: no tensor {name!r}")
        how = self._names[name]
        if how[0] == "expert":  # one expert of a stack: dequantize that expert only
            return self._float_expert(how[1], how[2])
        if how[0] == "down":
            w = self._float(how[1])  # (E, H, I) -> gpt-oss (E, I, H); bias (E, H) as is
            return np.ascontiguousarray(w.transpose(0, 2, 1)) if w.ndim == 3 else w
        if how[0] == "gate_up":
            g, u = self._float(how[1]), self._float(how[2])
            if g.ndim == 3:  # (E, I, H) each -> (E, H, 2I) interleaved
                out = np.empty((g.shape[0], g.shape[2], 2 * g.shape[1]), g.dtype)
                out[:, :, 0::2] = g.transpose(0, 2, 1)
                out[:, :, 1::2] = u.transpose(0, 2, 1)
            else:
                out = np.empty((g.shape[0], 2 * g.shape[1]), g.dtype)
                out[:, 0::2], out[:, 1::2] = g, u
            return out
        w = self._float(how[1])
        g = how[1]
        if self._spec.permute_qk and (g.endswith("attn_q.weight") or g.endswith("attn_k.weight")):
            heads = int(self.config["num_attention_heads"])
            if g.endswith("attn_k.weight"):
                heads = int(self.config.get("num_key_value_heads") or heads)
            w = _unpermute(w, heads)
        if g.endswith("ffn_gate_inp_shexp.weight") and w.ndim == 1:
            w = w[None]
        return w

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def __contains__(self, name):
        return name in self._names

    def __repr__(self):
        return f"GGUFCheckpoint({self.path!r}, {self.arch} -> {self.family.name}, {len(self._info)} tensors)"


def open_gguf(path) -> GGUFCheckpoint:
    """A GGUF file of an MoE architecture (llama with experts = Mixtral, qwen2moe, qwen3moe, olmoe, deepseek2,
    gpt-oss) as a Mapping of Hugging Face names -> arrays; see moepy.io.gguf."""
    return GGUFCheckpoint(path)

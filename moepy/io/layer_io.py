"""MoELayer.save / MoELayer.load: one layer in one .safetensors file.

Tensors (canonical nn.Linear orientation):
    router.weight (E, H) F32 [router.bias (E,), selection_bias (E,), shared_gate.weight (1, H)]
    float experts:  experts.gate (E, I, H), experts.up (E, I, H), experts.down (E, H, I) in F32 or BF16
    INT experts:    experts.w_in, experts.w_out: U8, the blocks of csrc/kernels/quant.h as the kernels read them
    experts.gate_bias / up_bias (E, I), experts.down_bias (E, H) F32; the same under "shared." for a shared expert
__metadata__ (strings): "moepy" = the format version, "layer" = JSON of the router, family, dtypes, activation and
sizes, and for INT experts "<part>.format", "<part>.group_size", "<part>.layout". Float files are plain
safetensors (safetensors.numpy / safetensors.torch read them unchanged); INT files load back bit-exact, without
requantizing. Loading maps the file: bf16 experts are packed from the map, INT blocks are used as stored.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

import numpy as np

from .errors import CheckpointError
from .safetensors import SafetensorsFile, save_file

VERSION = "1"
LAYOUT = ("moepy INT blocks (csrc/kernels/quant.h): for each expert, panel of 16 output columns and group of "
          "{G} inputs one block of fp16 scales[16]{bias} + codes in quads; w_in interleaves gate and up per block")


def _router_json(r) -> dict:
    d = {f.name: getattr(r, f.name) for f in dataclasses.fields(r) if f.init}
    return d


def _expert_tensors(prefix: str, ex, dtype: str, group_size: int, out: dict, meta: dict) -> dict:
    from ..moe import quant
    from ..moe.packed import PackedOnlyExperts
    info = {"shape": list(ex.shape), "gated": bool(ex.gated), "activation": ex.activation, "alpha": float(ex.alpha),
            "limit": float(ex.limit), "dtype": dtype}
    if dtype in quant.FORMATS:
        if not isinstance(ex, PackedOnlyExperts):  # (a layer always holds these for INT experts)
            raise TypeError(f"{prefix}: INT experts must be PackedOnlyExperts")
        out[f"{prefix}.w_in"], out[f"{prefix}.w_out"] = ex.w_in, ex.w_out
        meta[f"{prefix}.format"] = ex.format
        meta[f"{prefix}.group_size"] = str(ex.group_size)
        meta[f"{prefix}.layout"] = LAYOUT.format(G=ex.group_size, bias=" + fp16 offsets[16]"
                                                 if ex.format == "int4_asym" else "")
    else:
        import ml_dtypes
        for name in ("gate", "up", "down"):
            w = getattr(ex, name)
            if w is None:
                continue
            if dtype == "bfloat16":
                w = np.asarray(w)
                w = w.view(ml_dtypes.bfloat16) if w.dtype == np.uint16 else w.astype(ml_dtypes.bfloat16)
            else:
                w = np.asarray(w, dtype=np.float32)
            out[f"{prefix}.{name}"] = w
    for name in ("gate_bias", "up_bias", "down_bias"):
        b = getattr(ex, name)
        if b is not None:
            out[f"{prefix}.{name}"] = np.asarray(b, dtype=np.float32)
    return info


def save_layer(layer, path, metadata: Optional[dict] = None) -> None:
    """See the module docstring. metadata: extra str -> str entries for __metadata__."""
    tensors: dict = {"router.weight": layer.router_weight}
    meta: dict = {}
    if layer.router_bias is not None:
        tensors["router.bias"] = layer.router_bias
    if layer.selection_bias is not None:
        tensors["selection_bias"] = layer.selection_bias
    if layer.shared_gate_weight is not None:
        tensors["shared_gate.weight"] = layer.shared_gate_weight
    d = {"router": _router_json(layer.router), "family": layer.family, "scale_input": bool(layer.scale_input),
         "group_size": int(layer.group_size), "dtype": layer.dtype, "shared_dtype": layer.shared_dtype,
         "experts": _expert_tensors("experts", layer.experts, layer.dtype, layer.group_size, tensors, meta)}
    if layer.shared is not None:
        d["shared"] = _expert_tensors("shared", layer.shared, layer.shared_dtype, layer.group_size, tensors, meta)
    meta.update({"moepy": VERSION, "layer": json.dumps(d)})
    if metadata:
        meta.update(metadata)
    save_file(tensors, path, meta)


def _experts(f: SafetensorsFile, prefix: str, info: dict, mmap: bool = False):
    from ..moe import quant
    from ..moe.packed import PackedOnlyExperts
    from ..moe.weights import ExpertWeights
    E, H, I = info["shape"]
    biases = {n: (np.array(f[f"{prefix}.{n}"]) if f"{prefix}.{n}" in f else None)
              for n in ("gate_bias", "up_bias", "down_bias")}
    dtype = info["dtype"]
    blocks = (lambda n: f[n]) if mmap else (lambda n: np.array(f[n]))  # noqa: E731
    if dtype in quant.FORMATS:
        md = f.metadata or {}
        fmt, G = md.get(f"{prefix}.format"), md.get(f"{prefix}.group_size")
        if fmt != dtype or G is None or not G.isdigit():
            raise CheckpointError(f.path, f"{prefix}.w_in", f"__metadata__ gives format {fmt!r}, group size {G!r} "
                                                            f"for {dtype} experts")
        _check_int_experts(f, prefix, dtype, int(G), E, H, I, biases, blocks)
        try:
            return PackedOnlyExperts(E, H, I, bool(info["gated"]), info["activation"], float(info["alpha"]),
                                     float(info["limit"]), fmt, int(G), blocks(f"{prefix}.w_in"),
                                     blocks(f"{prefix}.w_out"), **biases)
        except ValueError as exc:
            raise CheckpointError(f.path, f"{prefix}.w_in", str(exc)) from None
    get = lambda n: f[f"{prefix}.{n}"] if f"{prefix}.{n}" in f else None  # noqa: E731
    w = {n: get(n) for n in ("gate", "up", "down")}
    if dtype == "float32":
        w = {n: (None if a is None else np.asarray(a, dtype=np.float32)) for n, a in w.items()}
    return ExpertWeights(up=w["up"], down=w["down"], gate=w["gate"], activation=info["activation"],
                         alpha=float(info["alpha"]), limit=float(info["limit"]), **biases)


def _check_int_experts(f, prefix, fmt, G, E, H, I, biases, blocks) -> None:
    """Untrusted INT experts: biases of their exact shapes and finite, and every fp16 block scale (and offset)
    finite (a NaN scale would make whole rows of the layer's output NaN without an error)."""
    from .. import _ops
    for name, shape in (("gate_bias", (E, I)), ("up_bias", (E, I)), ("down_bias", (E, H))):
        b = biases[name]
        if b is None:
            continue
        if b.shape != shape:
            raise CheckpointError(f.path, f"{prefix}.{name}", f"shape {b.shape}, expected {shape}")
        if not np.isfinite(np.asarray(b, np.float32)).all():
            raise CheckpointError(f.path, f"{prefix}.{name}", "holds NaN or inf")
    if (fmt, G) not in _ops.QBLOCK_BYTES:
        raise CheckpointError(f.path, f"{prefix}.w_in", f"no {fmt} format with group size {G}")
    nb, nh = _ops.QBLOCK_BYTES[(fmt, G)], _ops.QBLOCK_HEADER_BYTES[fmt]
    for name in ("w_in", "w_out"):
        raw = np.asarray(blocks(f"{prefix}.{name}")).reshape(-1)
        if raw.dtype != np.uint8 or raw.size % nb:
            continue  # PackedOnlyExperts refuses it, naming the size it expects
        scales = raw.reshape(-1, nb)[:, :nh].copy().view(np.float16)
        if not np.isfinite(scales).all():
            raise CheckpointError(f.path, f"{prefix}.{name}", "a block scale or offset is NaN or inf")


def load_layer(path, mmap: bool = False):
    """A MoELayer from a file written by save_layer; CheckpointError for a file that is not one.
    INT blocks are copied into private memory, or with mmap=True used in place from the read-only map (no copy;
    the file must then not be modified or truncated while the layer lives: a truncated file faults on access).
    Float experts are packed from the map (one copy: the packed one)."""
    from ..moe.layer import MoELayer
    from ..routing.config import RouterConfig
    f = SafetensorsFile(path)
    md = f.metadata or {}
    if md.get("moepy") != VERSION or "layer" not in md:
        raise CheckpointError(f.path, None, f"not a moepy layer file (__metadata__ moepy={md.get('moepy')!r})")
    try:
        d = json.loads(md["layer"])
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        router = RouterConfig(**d["router"])
        experts = _experts(f, "experts", d["experts"], mmap)
        shared = _experts(f, "shared", d["shared"], mmap) if "shared" in d else None
        scale_input = d["scale_input"]
        if not isinstance(scale_input, bool):
            raise ValueError(f"scale_input must be a bool, got {scale_input!r}")
        group_size = d["group_size"]
        if not isinstance(group_size, int) or isinstance(group_size, bool):
            raise ValueError(f"group_size must be an int, got {group_size!r}")
        dtype, family, shared_dtype = d["dtype"], d["family"], d["shared_dtype"]
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f.path, None, f"__metadata__ 'layer' does not describe a layer ({exc!r})") from None
    opt = lambda n: np.array(f[n]) if n in f else None  # noqa: E731  (copies: the map is released after load)
    try:
        return MoELayer(router, np.array(f["router.weight"]), experts, shared=shared,
                        shared_gate_weight=opt("shared_gate.weight"), router_bias=opt("router.bias"),
                        selection_bias=opt("selection_bias"), scale_input=scale_input, dtype=dtype,
                        family=family, group_size=group_size, shared_dtype=shared_dtype)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f.path, None, f"the layer it describes is invalid: {exc}") from None

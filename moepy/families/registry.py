"""The family registry: one `Family` per module of moepy/families, found by looking at the package.

A family module defines `FAMILY = Family(...)`: everything moepy knows about one model family (its router,
its config.json both ways, which layers are MoE, its checkpoint tensor names, its presets). Adding a family
is adding one file; nothing else names the families. The modules are imported on the first lookup, so this
module imports nothing of moepy at module level and every other module may import it.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple


@dataclass(frozen=True)
class Family:
    """One model family.

    name: the ModelConfig.family value ("mixtral", "deepseek_v3", ...); order: its place in tables
    (historical order of the families). model_types: the config.json model_type values it reads;
    architectures: config.json `architectures` entries that identify it when model_type does not (Kimi K2's
    "kimi_k2" is a DeepseekV3ForCausalLM).
    router(num_experts, top_k, **options) -> RouterConfig: the family's routing, as its released code does
    it (RouterConfig.<name>(...) calls it); default_router(num_experts, top_k): what a ModelConfig of the
    family gets when it names no router (None: `router` with its defaults).
    read_hf(d, model_type) -> (ModelConfig keyword arguments, unmodelled fields by sub-dict) and
    write_hf(cfg) -> config.json dict: the Hugging Face mapping (None: no config.json of this family).
    moe_block(d, tensors, layer_index, dtype) -> MoELayer: one MoE block from checkpoint tensors, `d` the
    config.json dict (None: moepy reads no checkpoint of this family). moe_layer_indices(d, stack): which
    layers hold an MoE block, when ModelConfig.from_hf(d).moe_layers cannot tell (encoder-decoders).
    presets: preset name -> function returning the ModelConfig; aliases: other spellings -> preset name.
    routers: further named router constructors (RouterConfig.<key>), e.g. Kimi K2's in deepseek_v3.
    decoder(d) -> moepy.nn.spec.DecoderSpec: the whole decoder around the MoE blocks (attention, norms, RoPE,
    dense layers, tensor names) from the config.json dict (None: moepy runs no whole model of this family).
    gguf: how llama.cpp's GGUF files of this family map to its checkpoint names and config.json
    (a moepy.families._gguf.GGUFSpec: the GGUF architecture names, tensor names, metadata keys; None: no
    GGUF reader). moepy.io.open_gguf uses it.
    """

    name: str
    order: int
    router: Callable[..., Any]
    default_router: Optional[Callable[[int, int], Any]] = None
    model_types: Tuple[str, ...] = ()
    architectures: Tuple[str, ...] = ()
    read_hf: Optional[Callable[[dict, str], Tuple[dict, dict]]] = None
    write_hf: Optional[Callable[[Any], dict]] = None
    moe_block: Optional[Callable[..., Any]] = None
    moe_layer_indices: Optional[Callable[..., list]] = None
    presets: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    routers: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    gguf: Optional[Any] = None
    decoder: Optional[Callable[[dict], Any]] = None

    def make_default_router(self, num_experts: int, top_k: int):
        """The router a ModelConfig of this family gets when it names none."""
        if self.default_router is not None:
            return self.default_router(num_experts, top_k)
        return self.router(num_experts, top_k)


_FAMILIES: Dict[str, Family] = {}
_LOCK = threading.Lock()


def _load() -> Dict[str, Family]:
    """Import every family module of this package once (thread-safe) and return name -> Family."""
    if _FAMILIES:
        return _FAMILIES
    with _LOCK:
        if _FAMILIES:
            return _FAMILIES
        package = importlib.import_module(__name__.rpartition(".")[0])
        found = []
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_") or info.name == "registry":
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            fam = getattr(module, "FAMILY", None)
            if not isinstance(fam, Family):
                raise ImportError(f"moepy.families.{info.name} defines no FAMILY = Family(...)")
            found.append(fam)
        found.sort(key=lambda f: (f.order, f.name))
        names = [f.name for f in found]
        if len(set(names)) != len(names):
            raise ImportError(f"two family modules share a name: {names}")
        _FAMILIES.update((f.name, f) for f in found)
    return _FAMILIES


def names() -> Tuple[str, ...]:
    """Every family's name, in table order."""
    return tuple(_load())


def all_families() -> Tuple[Family, ...]:
    """Every Family, in table order."""
    return tuple(_load().values())


def get(name: str) -> Family:
    """The Family called `name`; ValueError listing the families if there is none."""
    fams = _load()
    if name not in fams:
        raise ValueError(f"unknown family {name!r}; the families are {', '.join(fams)}")
    return fams[name]


def model_types() -> Tuple[str, ...]:
    """The config.json model_type values some family reads."""
    return tuple(mt for f in _load().values() for mt in f.model_types)


def for_gguf_arch(arch: str, meta: Optional[Mapping] = None) -> Family:
    """The Family whose GGUF spec reads `general.architecture` = arch (`meta`, the GGUF metadata, settles an
    architecture two families share: deepseek2 holds DeepSeek-V2 and V3). ValueError listing the readable ones."""
    fams = [f for f in _load().values() if f.gguf is not None and arch in f.gguf.archs]
    fams = [f for f in fams if f.gguf.accepts(meta or {}, arch)] or fams[:0]
    if not fams:
        known = sorted({a for f in _load().values() if f.gguf is not None for a in f.gguf.archs})
        raise ValueError(f"GGUF architecture {arch!r} is not an MoE architecture moepy reads; it reads "
                         f"{', '.join(known)}")
    return fams[0]


def for_hf_config(d: Mapping) -> Tuple[Family, str]:
    """(Family, model_type) of a config.json dict: by model_type, else by architecture. ValueError if none."""
    mt = d.get("model_type")
    for f in _load().values():
        if mt in f.model_types:
            return f, mt
    archs = d.get("architectures") or []
    for f in _load().values():
        if any(a in f.architectures for a in archs):
            return f, f.model_types[0]
    raise ValueError(f"unsupported model_type {mt!r} (architectures {list(archs)}); supported model types: "
                     f"{', '.join(model_types())}")

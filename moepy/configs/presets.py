"""The preset registry: every family's presets by name (`names()`, `get()`) and the comparison `table()`."""
from __future__ import annotations

import difflib
from typing import Dict, List, Optional, Sequence

from ..families import registry
from .accounting import fmt_combos, fmt_count


def _key(name: str) -> str:
    k = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    return k.split("/")[-1]


def _presets() -> Dict[str, tuple]:
    """preset name -> (Family, function), in table order; aliases -> preset name."""
    presets, aliases = {}, {}
    for fam in registry.all_families():
        for name, fn in fam.presets.items():
            presets[name] = (fam, fn)
        aliases.update(fam.aliases)
    return presets, aliases


def names() -> List[str]:
    """Preset names, in historical-family order (see get())."""
    return list(_presets()[0])


def get(name: str):
    """The preset `name` as a ModelConfig (case, '_' and a Hub 'org/' prefix are ignored; e.g. "deepseek-v3",
    "Qwen/Qwen3-30B-A3B", "llama4_scout"). Raises KeyError listing close matches."""
    presets, aliases = _presets()
    k = _key(name)
    k = aliases.get(k, k)
    if k not in presets:
        close = difflib.get_close_matches(k, list(presets) + list(aliases), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no preset {name!r}{hint} (moepy.configs.names() lists them)")
    return presets[k][1]()


def table(configs: Optional[Sequence] = None) -> str:
    """The comparison table of `configs` (ModelConfigs or preset names; default: every preset).

    Active counts include the embedding and the head (the "full" convention); memory is the weights only,
    in GB (1e9 bytes): bf16, and int4 with one fp16 scale per 32 weights (router and norms in bf16)."""
    cfgs = [get(c) if isinstance(c, str) else c for c in (names() if configs is None else configs)]
    head = ("model", "family", "layers", "total", "active", "active %", "experts", "top-k", "shared", "C(E,k)",
            "bf16 GB", "int4 GB")
    rows = []
    for c in cfgs:
        p = c.count_params()
        rows.append((c.name, c.family, f"{len(c.moe_layers)}/{c.num_layers}", fmt_count(p.total), fmt_count(p.active),
                     f"{100 * p.activation_ratio:.1f}", str(c.num_experts), str(c.top_k), str(c.num_shared_experts),
                     fmt_combos(c.expert_combinations), f"{c.memory_bytes('bf16') / 1e9:,.1f}",
                     f"{c.memory_bytes('int4') / 1e9:,.1f}"))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    left = {0, 1}

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    return "\n".join(out)

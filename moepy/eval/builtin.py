"""The built-in checkpoints (trained by scripts/train_builtin.py, shipped in moepy/data/builtin/) and their
held-out text (moepy/data/heldout/: the fixed held-out split of the training corpus, prose and code)."""
from __future__ import annotations

import os
from typing import List, Optional

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
BUILTIN = os.path.join(DATA, "builtin")
DEFAULT = "deepseek_v3"
DOMAINS = ("prose", "code")


def names() -> List[str]:
    """The built-in checkpoints present in this install."""
    if not os.path.isdir(BUILTIN):
        return []
    return sorted(n for n in os.listdir(BUILTIN) if os.path.isfile(os.path.join(BUILTIN, n, "config.json")))


def path(name: Optional[str] = None) -> str:
    """The directory of built-in checkpoint `name` (default: DEFAULT). ValueError listing them if absent."""
    name = name or DEFAULT
    p = os.path.join(BUILTIN, name)
    if not os.path.isfile(os.path.join(p, "config.json")):
        raise ValueError(f"no built-in checkpoint {name!r}; the built-in ones are {names() or 'none (not trained)'}")
    return p


def heldout_text(domain: Optional[str] = None) -> str:
    """The held-out text of one domain ("prose": World English Bible passages, "code": Python standard library
    files), or both (prose then code) when domain is None."""
    doms = DOMAINS if domain is None else (domain,)
    bad = [d for d in doms if d not in DOMAINS]
    if bad:
        raise ValueError(f"domain must be one of {DOMAINS}, got {bad[0]!r}")
    parts = []
    for d in doms:
        with open(os.path.join(DATA, "heldout", f"{d}.txt"), encoding="utf-8") as f:
            parts.append(f.read())
    return "\n<|endoftext|>\n".join(parts)

"""RouterConfig: how router logits become K experts and K weights per token.

A router maps logits (T, E) to, per token, K experts and K combine weights. The families differ in
where the activation sits relative to the top-k, what is renormalised, and how selection may be
biased or limited to groups; `RouterConfig` spells each choice out, and the named constructors
(`RouterConfig.mixtral(...)`, `.deepseek_v3(...)`, ...) set them as the Hugging Face
implementation of that family does. The kernels are in C (csrc/route.c, csrc/capacity.c).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np


from .. import _ops

SCORINGS = tuple(_ops.SCORINGS)  # the names of the C enums (codes: moepy._ops, packed by _ops.route_params)
GROUP_SCORES = tuple(_ops.GROUP_SCORES)
PRIORITIES = tuple(_ops.PRIORITIES)

_INT32_MAX = 2 ** 31 - 1


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


class _FamilyRouters(type):
    """RouterConfig.<name>(...) for every family of moepy/families: `RouterConfig.mixtral(8, 2)` is the
    `router` of moepy/families/mixtral.py (and extra constructors a family names, e.g. `kimi_k2`), looked up in
    the registry on first use, so a new family module brings its constructor with it and routing imports no
    family module."""

    _ready = False  # set once RouterConfig exists (dataclass() probes class attributes while building it)

    def __getattr__(cls, name):
        if name.startswith("_") or not _FamilyRouters._ready:
            raise AttributeError(name)
        from ..families import registry
        for fam in registry.all_families():
            if name == fam.name:
                return fam.router
            if name in fam.routers:
                return fam.routers[name]
        raise AttributeError(f"type object 'RouterConfig' has no attribute {name!r} (the family constructors are "
                             f"{', '.join(cls.family_constructors())})")

    def __dir__(cls):
        return sorted(set(super().__dir__()) | set(cls.family_constructors()))

    def family_constructors(cls):
        """The names of the family constructors (RouterConfig.<name>)."""
        from ..families import registry
        return tuple(n for fam in registry.all_families() for n in (fam.name, *fam.routers))


@dataclass(frozen=True)
class RouterConfig(metaclass=_FamilyRouters):
    """How router logits (T, E) become K experts and K weights per token.

    top_k: experts per token (K).
    scoring: "softmax" (over all E experts) or "sigmoid" (per expert).
    normalize: renormalise the K selected weights by their p-norm (`norm_p`, 1 = their sum), plus
        `norm_eps` in the denominator (DeepSeek-V3 adds 1e-20).
    scale: routed scaling factor, multiplied into the weights last (DeepSeek-V2 16, V3 2.5, K2 2.827).
    n_group, topk_group, group_score: group-limited routing (DeepSeek-V2/V3): the E experts form
        n_group groups; each group is scored by its best ("max") or best-two ("top2_sum") selection
        score, only the best topk_group groups stay selectable; the others' selection scores become
        `group_mask_value` (-inf, or 0.0 as DeepSeek-V2's HF code does).
    topk_before_score: select on the raw logits, then apply the scoring function to the K selected
        only: a softmax over the K (GPT-OSS) or a per-expert sigmoid (Llama 4).
    num_experts: E, if this router is tied to a width (checked in route()).
    capacity_factor / capacity: Switch/GShard token dropping. Capacity per expert is `capacity`, or
        ceil(capacity_factor * T * K / E) for a batch of T tokens; slots over it are dropped in
        `capacity_priority` order ("rank": all first choices in token order, then second choices, as
        GShard; "token": token by token).
    A selection bias (DeepSeek-V3's e_score_correction_bias) is passed to route() per call: it
    shifts which experts are selected, never the weights.
    """

    top_k: int
    scoring: str = "softmax"
    normalize: bool = False
    norm_p: float = 1.0
    norm_eps: float = 0.0
    scale: float = 1.0
    n_group: int = 1
    topk_group: int = 1
    group_score: str = "max"
    group_mask_value: float = float("-inf")
    topk_before_score: bool = False
    num_experts: Optional[int] = None
    capacity_factor: Optional[float] = None
    capacity: Optional[int] = None
    capacity_priority: str = "rank"
    family: str = "custom"

    def __post_init__(self):
        def need(ok, msg):
            if not ok:
                raise ValueError(f"RouterConfig: {msg}")

        need(_is_int(self.top_k) and self.top_k >= 1, f"top_k must be an int >= 1, got {self.top_k!r}")
        for name in ("top_k", "n_group", "topk_group", "num_experts", "capacity"):  # expert ids are int32
            v = getattr(self, name)
            if _is_int(v) and v > _INT32_MAX:
                need(False, f"{name} must be at most {_INT32_MAX:,}, got {v:,}")
        need(self.scoring in SCORINGS, f"scoring must be one of {SCORINGS}, got {self.scoring!r}")
        need(self.group_score in GROUP_SCORES, f"group_score must be one of {GROUP_SCORES}, got {self.group_score!r}")
        need(self.capacity_priority in PRIORITIES, f"capacity_priority must be one of {PRIORITIES}, got {self.capacity_priority!r}")
        need(_is_int(self.n_group) and self.n_group >= 1, f"n_group must be an int >= 1, got {self.n_group!r}")
        need(_is_int(self.topk_group) and 1 <= self.topk_group <= self.n_group,
             f"topk_group must be in [1, n_group={self.n_group}], got {self.topk_group!r}")
        need(math.isfinite(self.norm_p) and self.norm_p > 0, f"norm_p must be finite and > 0, got {self.norm_p!r}")
        need(self.norm_eps >= 0, f"norm_eps must be >= 0, got {self.norm_eps!r}")
        need(not math.isnan(self.scale), "scale must not be NaN")
        need(not math.isnan(self.group_mask_value), "group_mask_value must not be NaN")
        if self.num_experts is not None:
            E = self.num_experts
            need(_is_int(E) and E >= 1, f"num_experts must be an int >= 1, got {E!r}")
            need(self.top_k <= E, f"top_k={self.top_k} exceeds num_experts={E}")
            need(E % self.n_group == 0, f"n_group={self.n_group} must divide num_experts={E}")
            if self.n_group > 1:
                need(self.topk_group * (E // self.n_group) >= self.top_k,
                     f"top_k={self.top_k} exceeds the experts in the kept groups ({self.topk_group} x {E // self.n_group})")
        if self.capacity_factor is not None:
            need(self.capacity_factor > 0 and math.isfinite(self.capacity_factor),
                 f"capacity_factor must be finite and > 0, got {self.capacity_factor!r}")
        if self.capacity is not None:
            need(_is_int(self.capacity) and self.capacity >= 0,
                 f"capacity must be an int >= 0, got {self.capacity!r}")
        need(self.capacity is None or self.capacity_factor is None, "give capacity or capacity_factor, not both")
        object.__setattr__(self, "_drops", self.capacity is not None or self.capacity_factor is not None)

    @property
    def drops_tokens(self) -> bool:
        """True when a capacity (or capacity factor) can drop slots."""
        return self._drops


    def expert_capacity(self, num_tokens: int, num_experts: int) -> Optional[int]:
        """Tokens each expert may take for a batch of num_tokens; None when dropless."""
        if self.capacity is not None:
            return int(self.capacity)
        if self.capacity_factor is None:
            return None
        return int(math.ceil(self.capacity_factor * num_tokens * self.top_k / num_experts))


_FamilyRouters._ready = True

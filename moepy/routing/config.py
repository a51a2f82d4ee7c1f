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

def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class RouterConfig:
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
        return self._drops


    def expert_capacity(self, num_tokens: int, num_experts: int) -> Optional[int]:
        """Tokens each expert may take for a batch of num_tokens; None when dropless."""
        if self.capacity is not None:
            return int(self.capacity)
        if self.capacity_factor is None:
            return None
        return int(math.ceil(self.capacity_factor * num_tokens * self.top_k / num_experts))

    # ---- named constructors, one per family (semantics: ../shared/reference/moe_semantics.md) ----
    @classmethod
    def mixtral(cls, num_experts: int = 8, top_k: int = 2) -> "RouterConfig":
        """Mixtral: softmax over all E in fp32, top-k, always renormalised."""
        return cls(top_k=top_k, scoring="softmax", normalize=True, num_experts=num_experts, family="mixtral")

    @classmethod
    def qwen2_moe(cls, num_experts: int = 60, top_k: int = 4, norm_topk_prob: bool = False) -> "RouterConfig":
        """Qwen1.5/Qwen2-MoE: softmax, top-k, renormalised only if norm_topk_prob (released: False)."""
        return cls(top_k=top_k, scoring="softmax", normalize=norm_topk_prob, num_experts=num_experts, family="qwen2_moe")

    @classmethod
    def qwen3_moe(cls, num_experts: int = 128, top_k: int = 8, norm_topk_prob: bool = True) -> "RouterConfig":
        """Qwen3-MoE: as Qwen2-MoE; the released 30B-A3B and 235B-A22B set norm_topk_prob=True."""
        return cls(top_k=top_k, scoring="softmax", normalize=norm_topk_prob, num_experts=num_experts, family="qwen3_moe")

    @classmethod
    def olmoe(cls, num_experts: int = 64, top_k: int = 8, norm_topk_prob: bool = False) -> "RouterConfig":
        """OLMoE: softmax, top-k, no renormalisation in OLMoE-1B-7B."""
        return cls(top_k=top_k, scoring="softmax", normalize=norm_topk_prob, num_experts=num_experts, family="olmoe")

    @classmethod
    def dbrx(cls, num_experts: int = 16, top_k: int = 4, moe_normalize_expert_weights: Optional[float] = 1.0) -> "RouterConfig":
        """DBRX: softmax, top-k, weights divided by their p-norm (p = moe_normalize_expert_weights; None: no normalising)."""
        p = moe_normalize_expert_weights
        return cls(top_k=top_k, scoring="softmax", normalize=p is not None, norm_p=float(p if p is not None else 1.0),
                   num_experts=num_experts, family="dbrx")

    @classmethod
    def deepseek_v2(cls, num_experts: int = 160, top_k: int = 6, n_group: int = 8, topk_group: int = 3,
                    routed_scaling_factor: float = 16.0, topk_method: str = "group_limited_greedy") -> "RouterConfig":
        """DeepSeek-V2: softmax; greedy or group-limited greedy (group score = max, dropped groups' scores
        set to 0.0); no renormalisation (HF); weights times routed_scaling_factor. V2-Lite: greedy, scale 1."""
        if topk_method not in ("greedy", "group_limited_greedy"):
            raise ValueError(f"topk_method must be 'greedy' or 'group_limited_greedy', got {topk_method!r}")
        grouped = topk_method == "group_limited_greedy"
        return cls(top_k=top_k, scoring="softmax", scale=routed_scaling_factor,
                   n_group=n_group if grouped else 1, topk_group=topk_group if grouped else 1,
                   group_score="max", group_mask_value=0.0, num_experts=num_experts, family="deepseek_v2")

    @classmethod
    def deepseek_v3(cls, num_experts: int = 256, top_k: int = 8, n_group: int = 8, topk_group: int = 4,
                    routed_scaling_factor: float = 2.5, norm_topk_prob: bool = True) -> "RouterConfig":
        """DeepSeek-V3/R1 (noaux_tc): sigmoid scores; selection on score + e_score_correction_bias (pass it
        as route(..., bias=)); groups scored by the sum of their top-2; dropped groups masked with -inf;
        weights are the unbiased scores, renormalised (+1e-20), times routed_scaling_factor."""
        return cls(top_k=top_k, scoring="sigmoid", normalize=norm_topk_prob, norm_eps=1e-20,
                   scale=routed_scaling_factor, n_group=n_group, topk_group=topk_group, group_score="top2_sum",
                   num_experts=num_experts, family="deepseek_v3")

    @classmethod
    def kimi_k2(cls, num_experts: int = 384, top_k: int = 8, routed_scaling_factor: float = 2.827) -> "RouterConfig":
        """Kimi K2: the DeepSeek-V3 router with 384 experts, one group (n_group=topk_group=1)."""
        return cls.deepseek_v3(num_experts=num_experts, top_k=top_k, n_group=1, topk_group=1,
                               routed_scaling_factor=routed_scaling_factor)

    @classmethod
    def llama4(cls, num_experts: int = 16, top_k: int = 1) -> "RouterConfig":
        """Llama 4: top-k on the raw logits, then sigmoid of each selected logit; no renormalisation.
        (The Llama 4 layer multiplies the expert *input* by this weight.)"""
        return cls(top_k=top_k, scoring="sigmoid", topk_before_score=True, num_experts=num_experts, family="llama4")

    @classmethod
    def gpt_oss(cls, num_experts: int = 32, top_k: int = 4) -> "RouterConfig":
        """GPT-OSS: top-k on the logits (router has a bias, already in the logits), softmax over the K selected."""
        return cls(top_k=top_k, scoring="softmax", topk_before_score=True, num_experts=num_experts, family="gpt_oss")

    @classmethod
    def switch(cls, num_experts: int = 128, expert_capacity: Optional[int] = 64,
               capacity_factor: Optional[float] = None) -> "RouterConfig":
        """Switch Transformer: softmax, top-1, weight = the top probability; tokens past the expert
        capacity (absolute, HF's expert_capacity, or from a capacity factor) are dropped in sequence order."""
        if capacity_factor is not None:
            expert_capacity = None
        return cls(top_k=1, scoring="softmax", num_experts=num_experts, capacity=expert_capacity,
                   capacity_factor=capacity_factor, family="switch")

    @classmethod
    def gshard(cls, num_experts: int = 2048, capacity_factor: float = 2.0) -> "RouterConfig":
        """GShard: softmax top-2 with the two weights renormalised, capacity 2T/E * factor, first choices
        served before second choices. (GShard's random dispatch of the second expert is not modelled:
        the second expert is always kept while capacity allows.)"""
        return cls(top_k=2, scoring="softmax", normalize=True, num_experts=num_experts,
                   capacity_factor=capacity_factor, family="gshard")

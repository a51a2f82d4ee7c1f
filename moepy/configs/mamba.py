"""The state-space mixers of hybrid designs: the sizes of their Mamba (Jamba) and Mamba-2 (Nemotron-H) layers,
and the weight tensors those sizes give.

`ModelConfig.mamba` is one mapping of sizes, shared by every Mamba layer of the model (`layer_mixers` says which
layers they are). Keys, by mixer kind:

* both kinds: ``d_state`` (N, the state size per channel), ``d_conv`` (the causal depthwise convolution's width),
  ``conv_bias`` (the convolution has a bias), ``proj_bias`` (in_proj and out_proj have biases)
* "mamba" (Gu & Dao 2023; Jamba): ``expand`` (inner width D = expand x hidden), ``dt_rank`` (R, the rank of the
  time-step projection), ``inner_norms`` (Jamba's RMSNorms on the time step, B and C)
* "mamba2" (Dao & Gu 2024; Nemotron-H): ``num_heads`` and ``head_dim`` (inner width D = num_heads x head_dim),
  ``n_groups`` (G groups of B and C, shared by num_heads / G heads); its gated RMSNorm over D is always there

The tensors are the ones transformers allocates (JambaMambaMixer, NemotronHMamba2Mixer); moepy runs no Mamba layer,
it counts them (parameters, memory, FLOPs and the recurrent state).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Tuple

from .fields import is_int

KEYS = {
    "mamba": {"d_state": int, "d_conv": int, "conv_bias": bool, "proj_bias": bool, "expand": int, "dt_rank": int,
              "inner_norms": bool},
    "mamba2": {"d_state": int, "d_conv": int, "conv_bias": bool, "proj_bias": bool, "num_heads": int, "head_dim": int,
               "n_groups": int},
}
MAX = {"d_state": 1 << 12, "d_conv": 64, "expand": 64, "dt_rank": 1 << 16, "num_heads": 1 << 14, "head_dim": 1 << 12,
       "n_groups": 1 << 12}


def normalize(mamba: Any, kinds: Tuple[str, ...]) -> Dict[str, Any]:
    """The mamba mapping validated for the mixer kinds used (`kinds`): a plain dict of exactly the keys those kinds
    need. ValueError naming the key for a missing, unknown or ill-typed entry."""
    if not isinstance(mamba, Mapping):
        raise ValueError(f"mamba must be a mapping of Mamba sizes, got {type(mamba).__name__}")
    need: Dict[str, type] = {}
    for k in kinds:
        need.update(KEYS[k])
    unknown = sorted(set(mamba) - set(need))
    if unknown:
        raise ValueError(f"mamba: unknown key(s) {unknown} for mixers {list(kinds)}; expected {sorted(need)}")
    out: Dict[str, Any] = {}
    for key, typ in need.items():
        if key not in mamba:
            raise ValueError(f"mamba: missing key {key!r} (needed by the {'/'.join(kinds)} layers)")
        v = mamba[key]
        if typ is bool:
            if not isinstance(v, bool):
                raise ValueError(f"mamba[{key!r}] must be a bool, got {v!r}")
        else:
            if not (is_int(v) and 1 <= v <= MAX[key]):
                raise ValueError(f"mamba[{key!r}] must be an int in [1, {MAX[key]:,}], got {v!r}")
            v = int(v)
        out[key] = v
    if "mamba2" in kinds and out["num_heads"] % out["n_groups"]:
        raise ValueError(f"mamba: n_groups={out['n_groups']} must divide num_heads={out['num_heads']}")
    return out


def inner_width(m: Mapping[str, Any], kind: str, hidden: int) -> int:
    """D, the width of the state-space channels."""
    return m["expand"] * hidden if kind == "mamba" else m["num_heads"] * m["head_dim"]


def tensors(m: Mapping[str, Any], kind: str, hidden: int) -> List[Tuple[str, str, Tuple[int, ...]]]:
    """(name, part, shape) of one Mamba layer's mixer (nn.Linear (out, in) layout; conv1d (C, 1, width))."""
    H, N, W = hidden, m["d_state"], m["d_conv"]
    D = inner_width(m, kind, H)
    t: List[Tuple[str, str, Tuple[int, ...]]] = []
    if kind == "mamba":
        R = m["dt_rank"]
        t += [("in_proj", "mamba", (2 * D, H))] + ([("in_proj.bias", "mamba", (2 * D,))] if m["proj_bias"] else [])
        t += [("conv1d", "mamba", (D, 1, W))] + ([("conv1d.bias", "mamba", (D,))] if m["conv_bias"] else [])
        t += [("x_proj", "mamba", (R + 2 * N, D)), ("dt_proj", "mamba", (D, R)), ("dt_proj.bias", "mamba", (D,)),
              ("A_log", "mamba", (D, N)), ("D", "mamba", (D,))]
        if m["inner_norms"]:
            t += [("dt_layernorm", "norms", (R,)), ("b_layernorm", "norms", (N,)), ("c_layernorm", "norms", (N,))]
    else:
        G, nh = m["n_groups"], m["num_heads"]
        conv = D + 2 * G * N  # x, B and C go through the convolution; z (the gate) and dt do not
        proj = D + conv + nh
        t += [("in_proj", "mamba", (proj, H))] + ([("in_proj.bias", "mamba", (proj,))] if m["proj_bias"] else [])
        t += [("conv1d", "mamba", (conv, 1, W))] + ([("conv1d.bias", "mamba", (conv,))] if m["conv_bias"] else [])
        t += [("dt_bias", "mamba", (nh,)), ("A_log", "mamba", (nh,)), ("D", "mamba", (nh,)), ("norm", "norms", (D,))]
    t += [("out_proj", "mamba", (H, D))] + ([("out_proj.bias", "mamba", (H,))] if m["proj_bias"] else [])
    return t


def scan_flops(m: Mapping[str, Any], kind: str, hidden: int) -> int:
    """FLOPs of one token's state update and readout in one layer: h = exp(dt A) h + dt B x and y = C h are three
    multiply-adds per (channel, state) pair, D x N pairs (the projections are counted as weights)."""
    return 6 * inner_width(m, kind, hidden) * m["d_state"]


def state_elems(m: Mapping[str, Any], kind: str, hidden: int) -> int:
    """Elements of one sequence's recurrent state in one layer: the SSM state (D x N) and the convolution's last
    d_conv - 1 inputs (its channels). Constant in the context length."""
    D = inner_width(m, kind, hidden)
    conv = D if kind == "mamba" else D + 2 * m["n_groups"] * m["d_state"]
    return D * m["d_state"] + conv * (m["d_conv"] - 1)


def scaled(m: Mapping[str, Any], kinds: Tuple[str, ...], hidden: int, old_hidden: int) -> Dict[str, Any]:
    """The sizes of a small instance of the same mixers for hidden size `hidden` (the flags kept, the inner width
    kept in proportion to the hidden size)."""
    out = dict(m)
    out["d_state"] = min(m["d_state"], 16)
    if "mamba" in kinds:
        out["dt_rank"] = math.ceil(hidden / 16)
    if "mamba2" in kinds:
        G = min(m["n_groups"], 2)
        hd = min(m["head_dim"], 16)
        ratio = m["num_heads"] * m["head_dim"] / old_hidden
        nh = max(G, round(ratio * hidden / hd / G) * G)
        out.update(n_groups=G, head_dim=hd, num_heads=nh)
    return out

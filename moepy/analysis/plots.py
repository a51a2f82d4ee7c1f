"""Plots of the routing measures (matplotlib, an optional extra: pip install "moepy[plots]"; imported on first
use). Each function draws into `ax` (default: a new figure's axes) and returns the matplotlib Axes. Headless
runs (tests, servers) should set MPLBACKEND=Agg."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import numpy as np

from . import measures
from .trace import Trace


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('moepy.analysis plots need matplotlib: pip install "moepy[plots]"') from None
    return plt


def _axes(ax):
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots()
    return ax


def plot_load_heatmap(trace: Trace, ax=None, kept: bool = False):
    """Heatmap of load / uniform share (layers x experts), centred at 1, with a colorbar. Returns the Axes."""
    ax = _axes(ax)
    from matplotlib.colors import TwoSlopeNorm
    b = measures.balance(trace, kept=kept)
    rel = b.load_over_uniform
    top = max(2.0, float(np.nanmax(rel)) if np.isfinite(rel).any() else 2.0)
    im = ax.imshow(rel, aspect="auto", cmap="RdBu_r", norm=TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=top),
                   interpolation="nearest")
    ax.set_yticks(range(len(b.layers)), [str(l) for l in b.layers])
    ax.set_xlabel("expert")
    ax.set_ylabel("MoE layer")
    ax.set_title(f"{trace.meta.get('family', 'trace')}: load / uniform share")
    ax.figure.colorbar(im, ax=ax, label="load / uniform")
    return ax


def plot_coactivation(trace: Trace, layer: int, ax=None):
    """Heatmap of coactivation(trace, layer): P(b | a), a on rows. Returns the Axes."""
    ax = _axes(ax)
    c = measures.coactivation(trace, layer)
    im = ax.imshow(c, cmap="viridis", vmin=0.0, vmax=max(float(np.nanmax(c)) if np.isfinite(c).any() else 1.0,
                                                          1e-9), interpolation="nearest")
    ax.set_xlabel("expert b")
    ax.set_ylabel("expert a")
    ax.set_title(f"layer {layer}: P(b selected | a selected)")
    ax.figure.colorbar(im, ax=ax, label="P(b | a)")
    return ax


def _mean_curve(trace: Trace, layer: Optional[int]) -> np.ndarray:
    layers = trace.layers if layer is None else [layer]
    curves = [measures.coverage_curve(trace, l) for l in layers]
    if len({len(c) for c in curves}) != 1:
        raise ValueError("plot_coverage: the layers have different expert counts; pass layer=")
    return np.mean(curves, axis=0)


def plot_coverage(trace_or_traces: Union[Trace, Sequence[Trace], Mapping[str, Trace]], layer: Optional[int] = None,
                  ax=None):
    """Coverage curves: the share of slots taken by the most used N experts against N / E, with the uniform
    diagonal. One Trace: a curve per MoE layer (or only `layer`); a list or {label: trace} dict: a curve per
    trace (its layers averaged, or `layer`). Returns the Axes."""
    ax = _axes(ax)
    if isinstance(trace_or_traces, Trace):
        layers = trace_or_traces.layers if layer is None else [layer]
        items = [(f"layer {l}", measures.coverage_curve(trace_or_traces, l)) for l in layers]
    else:
        named = trace_or_traces.items() if isinstance(trace_or_traces, Mapping) else \
            [(t.meta.get("family", f"trace {i}") if isinstance(t, Trace) else str(i), t)
             for i, t in enumerate(trace_or_traces)]
        items = []
        for name, t in named:
            if not isinstance(t, Trace):
                raise TypeError(f"trace_or_traces: expected Trace objects, got {type(t).__name__}")
            items.append((str(name), _mean_curve(t, layer)))
    if not items:
        raise ValueError("trace_or_traces: no traces")
    for name, c in items:
        E = len(c)
        ax.plot(np.arange(E + 1) / E, np.concatenate([[0.0], c]), marker="." if E <= 16 else None, label=name)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="uniform")
    ax.set_xlabel("most used experts N / E")
    ax.set_ylabel("share of slots")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="small")
    return ax


def plot_domain_specialization(trace: Trace, layer: int, ax=None):
    """Bars per expert, one colour per domain: each domain's share of `layer`'s slots over the uniform share,
    with a line at 1. Returns the Axes."""
    ax = _axes(ax)
    ds = measures.domain_specialization(trace)
    i = trace._pos(layer)
    E = trace.num_experts(layer)
    D = len(ds.domain_names)
    width = 0.8 / D
    x = np.arange(E)
    for d, name in enumerate(ds.domain_names):
        ax.bar(x - 0.4 + width * (d + 0.5), ds.ratio[d, i, :E], width, label=name)
    ax.axhline(1.0, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("expert")
    ax.set_ylabel("share / uniform share")
    ax.set_title(f"layer {layer}: domain specialization")
    if E <= 32:
        ax.set_xticks(x)
    ax.legend(fontsize="small")
    return ax

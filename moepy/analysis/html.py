"""tokens_html: a text with each token coloured by its first-choice expert (the Mixtral paper's figure 8), as HTML
for notebooks (no matplotlib needed)."""
from __future__ import annotations

import colorsys
import html as _html
from typing import List

import numpy as np

from .trace import Trace, tokenizer_sha256

# light, distinct backgrounds (matplotlib's tab10 lightened); more experts get golden-ratio hues
_BASE = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
         "#d9d9d9"]


def expert_colors(num_experts: int) -> List[str]:
    """(E,) CSS hex colours, one per expert: a fixed light palette up to 10 experts, evenly spread hues beyond."""
    if num_experts <= len(_BASE):
        return _BASE[:num_experts]
    out = []
    for e in range(num_experts):
        r, g, b = colorsys.hls_to_rgb((e * 0.618033988749895) % 1.0, 0.78, 0.65)
        out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out


class TokensHTML:
    """HTML of coloured tokens: .html (a str), shown by notebooks through _repr_html_."""

    def __init__(self, html: str):
        self.html = html

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def tokens_html(trace: Trace, layer: int, tokenizer=None, start: int = 0, count: int = 200) -> TokensHTML:
    """Tokens start .. start + count - 1 of `trace` as HTML spans coloured by their first-choice expert at
    `layer` (a tooltip gives the token id and its top-k experts with weights), then a legend of the expert
    colours. tokenizer (e.g. model.tokenizer) decodes each token; without one the ids are shown. The text is
    HTML-escaped. ValueError if the tokenizer is not the one the trace was recorded with."""
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a moepy.analysis.Trace, got {type(trace).__name__}")
    E = trace.num_experts(layer)
    for name, v in (("start", start), ("count", count)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    if tokenizer is not None and "tokenizer_sha256" in trace.meta:
        sha = tokenizer_sha256(tokenizer)
        if sha is not None and sha != trace.meta["tokenizer_sha256"]:
            raise ValueError("tokenizer: not the tokenizer this trace was recorded with")
    colors = expert_colors(E)
    ex, w = trace.experts[layer], trace.weights[layer]
    starts = set(int(s) for s in trace.chunk_starts)
    spans = []
    for t in range(int(start), min(int(start) + int(count), trace.num_tokens)):
        tid = int(trace.ids[t])
        text = tokenizer.decode([tid], skip_special_tokens=False) if tokenizer is not None else f"{tid} "
        tip = f"token {t}: id {tid}; experts " + ", ".join(f"{int(e)} ({float(x):.2f})" for e, x in zip(ex[t], w[t]))
        mark = "border-left:2px solid #444;" if t in starts and t > start else ""
        spans.append(f'<span style="background:{colors[int(ex[t, 0])]};{mark}" title="{_html.escape(tip)}">'
                     f"{_html.escape(text)}</span>")
    legend = "".join(f'<span style="background:{c};padding:0 0.4em;margin-right:0.2em">{e}</span>'
                     for e, c in enumerate(colors))
    fam = _html.escape(str(trace.meta.get("family", "")))
    return TokensHTML(
        f'<div class="moepy-tokens"><div style="font-family:monospace;white-space:pre-wrap;line-height:1.7">'
        f'{"".join(spans)}</div><div style="font-family:monospace;margin-top:0.5em">{fam} layer {int(layer)}, '
        f"first-choice expert: {legend}</div></div>")

"""Plots run headless and return Axes (no image comparison); tokens_html escapes the text; a clear ImportError
without matplotlib."""
import sys

import numpy as np
import pytest

from trace_helpers import random_trace
from moepy import analysis as A
from moepy.analysis import Trace

plt = pytest.importorskip("matplotlib.pyplot")
from matplotlib.axes import Axes  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_plots_return_axes():
    tr = random_trace(E=10, K=3)
    assert isinstance(A.plot_load_heatmap(tr), Axes)
    assert isinstance(A.plot_coactivation(tr, 2), Axes)
    assert isinstance(A.plot_coverage(tr), Axes)
    assert isinstance(A.plot_coverage({"a": tr, "b": random_trace(seed=1, E=4, K=1)}, layer=0), Axes)
    assert isinstance(A.plot_coverage([tr, tr]), Axes)
    ax = A.plot_domain_specialization(tr, 3)
    assert isinstance(ax, Axes) and len(ax.patches) == 2 * 10
    _, given = plt.subplots()
    assert A.plot_load_heatmap(tr, ax=given) is given
    with pytest.raises(ValueError, match="not a MoE layer"):
        A.plot_coactivation(tr, 1)


def test_plots_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "moepy\[plots\]"'):
        A.plot_load_heatmap(random_trace())


class EvilTokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return {0: "<script>alert(1)</script>", 1: 'a"b&c'}.get(ids[0], f"t{ids[0]}")


def test_tokens_html_escapes_and_colours():
    tr = Trace.from_arrays([0, 1, 2, 0], {0: [[3, 1], [1, 0], [2, 3], [3, 2]]}, num_experts=4, chunk_starts=[0, 2])
    h = A.tokens_html(tr, 0, EvilTokenizer())
    assert "<script>" not in h.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in h.html
    assert "a&quot;b&amp;c" in h.html and h._repr_html_() == h.html
    colors = A.expert_colors(4)
    assert h.html.count(f"background:{colors[3]}") == 2 + 1  # two tokens and the legend
    assert h.html.count("<span") == 4 + 4  # tokens + legend
    ids_only = A.tokens_html(tr, 0, start=1, count=2)
    assert ids_only.html.count("title=") == 2 and ">1 </span>" in ids_only.html
    assert len(set(A.expert_colors(64))) == 64
    tagged = Trace.from_arrays([0], {0: [[0]]}, num_experts=1, meta={"tokenizer_sha256": "f" * 64})

    class Serializable(EvilTokenizer):
        def to_str(self):
            return "{}"
    with pytest.raises(ValueError, match="tokenizer: not the tokenizer"):
        A.tokens_html(tagged, 0, Serializable())
    assert np.asarray(tagged.ids).tolist() == [0]

"""Shared test helpers."""
import contextlib
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/hf_blocks.py and friends

import moepy  # noqa: E402


@contextlib.contextmanager
def num_threads(n):
    old = moepy.get_num_threads()
    moepy.set_num_threads(n)
    try:
        yield
    finally:
        moepy.set_num_threads(old)


@contextlib.contextmanager
def isa(name):
    old = moepy.build_info()["isa"]
    moepy.set_isa(name)
    try:
        yield
    finally:
        moepy.set_isa(old)


def available_isas():
    best = moepy.build_info()["best_isa"]
    order = ["scalar", "avx2", "avx512", "avx512bf16", "amx"]
    return order[: order.index(best) + 1]


def assert_selection_equal(experts, ref_experts, sel_scores, rtol=1e-5):
    """Experts (T, K) equal to the reference, except where the reference's selection scores of the
    differing experts are equal to within float32 rounding (a near-tie the two exp implementations
    may break differently)."""
    experts = np.asarray(experts)
    ref_experts = np.asarray(ref_experts)
    diff_rows = np.nonzero((experts != ref_experts).any(axis=1))[0]
    for t in diff_rows:
        a = set(experts[t].tolist())
        b = set(ref_experts[t].tolist())
        if a == b:  # same set, order differs: the swapped pairs must be near-ties
            swapped = [i for i in range(experts.shape[1]) if experts[t, i] != ref_experts[t, i]]
            vals = sel_scores[t, experts[t, swapped]]
            ref_vals = sel_scores[t, ref_experts[t, swapped]]
        else:
            vals = sel_scores[t, sorted(a - b)]
            ref_vals = sel_scores[t, sorted(b - a)]
        scale = max(1e-30, float(np.max(np.abs(sel_scores[t]))))
        assert np.allclose(vals, ref_vals, rtol=rtol, atol=rtol * scale), (
            f"row {t}: experts {experts[t]} vs reference {ref_experts[t]} (scores {vals} vs {ref_vals})")
    return len(diff_rows)


def assert_valid_selection(experts, E):
    experts = np.asarray(experts)
    assert experts.dtype == np.int32
    assert ((experts >= 0) & (experts < E)).all(), "expert id out of range"
    for row in experts:
        assert len(set(row.tolist())) == len(row), f"duplicate experts in row {row}"


@pytest.fixture
def rng():
    return np.random.default_rng(12345)

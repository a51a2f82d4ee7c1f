"""Hypothesis drives the C entry points with arbitrary arrays and parameters: a clean Python
exception or a valid result, never a crash; results always equal the NumPy twin."""
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from moepy import _C
from moepy import reference as ref
from moepy.routing import C_PARAMS_FORMAT

ALLOWED = (TypeError, ValueError, OverflowError, MemoryError)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

dtypes = st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.bool_, np.uint16])
any_array = (hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12),
                        elements=st.integers(0, 1))
             | hnp.arrays(st.sampled_from([np.int32, np.float32]), hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
                          elements=st.integers(-3, 9)))
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
logits_arrays = hnp.arrays(np.float32, st.tuples(st.integers(0, 20), st.integers(1, 40)), elements=floats)
params = st.builds(
    lambda *a: struct.pack(C_PARAMS_FORMAT, *a),
    st.integers(-2, 45), st.integers(-1, 2), st.integers(0, 1), st.integers(0, 1),
    st.floats(-1, 3, width=32) | st.just(float("nan")), st.floats(0, 0.0009765625, width=32) | st.just(-1.0),
    st.floats(-4, 4, width=32), st.integers(-1, 9), st.integers(-1, 9), st.integers(-1, 2),
    st.sampled_from([float("-inf"), 0.0, 1.0, float("nan")]))


@SETTINGS
@given(logits=logits_arrays | any_array, p=params, use_bias=st.booleans())
def test_route_never_crashes(logits, p, use_bias):
    E = logits.shape[1] if logits.ndim == 2 else 1
    bias = np.linspace(-1, 1, E).astype(np.float32) if use_bias else None
    before = logits.copy()
    try:
        w, e, s = _C.route(logits, bias, p)
    except ALLOWED:
        np.testing.assert_array_equal(logits, before)
        return
    T = logits.shape[0]
    assert ((e >= 0) & (e < E)).all()
    assert all(len(set(row)) == len(row) for row in e.tolist())
    rw, re_, rs = ref.route(logits, struct.unpack(C_PARAMS_FORMAT, p), bias)  # no NaN: the twin accepts too
    assert w.shape == rw.shape == e.shape == re_.shape and s.shape == rs.shape == (T, E)
    np.testing.assert_array_equal(logits, before)


@SETTINGS
@given(x=logits_arrays | any_array, k=st.integers(-1, 45))
def test_topk_never_crashes_and_matches(x, k):
    try:
        v, i = _C.topk(x, k)
    except ALLOWED:
        return
    rv, ri = ref.topk(x, k)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(v, rv)


@SETTINGS
@given(experts=any_array, E=st.integers(-1, 8), cap=st.integers(-2, 5), prio=st.integers(-1, 2))
def test_capacity_never_crashes(experts, E, cap, prio):
    w = np.ones(experts.shape, np.float32) if experts.ndim == 2 else np.ones((1, 1), np.float32)
    try:
        dropped, counts = _C.apply_capacity(w, experts, E, cap, prio)
    except ALLOWED:
        return
    rw = np.ones_like(w)
    rd, rc = ref.apply_capacity(rw, experts, E, cap, ["rank", "token"][prio])
    np.testing.assert_array_equal(dropped, rd)
    np.testing.assert_array_equal(counts, rc)


@SETTINGS
@given(scores=logits_arrays | any_array, c=st.integers(-1, 25))
def test_expert_choice_never_crashes(scores, c):
    try:
        g, t = _C.expert_choice(scores, c)
    except ALLOWED:
        return
    rg, rt = ref.expert_choice(scores, c)
    np.testing.assert_array_equal(t, rt)


@SETTINGS
@given(experts=any_array, E=st.integers(-1, 8), with_scores=st.booleans(), with_dropped=st.booleans())
def test_expert_load_never_crashes(experts, E, with_scores, with_dropped):
    shape = experts.shape if experts.ndim == 2 else (1, 1)
    scores = np.ones((shape[0], max(E, 1)), np.float32) if with_scores else None
    dropped = np.zeros(shape, bool) if with_dropped else None
    try:
        counts, psum = _C.expert_load(experts, dropped, scores, E)
    except ALLOWED:
        return
    rc, _ = ref.expert_load(experts, dropped, scores, E)
    np.testing.assert_array_equal(counts, rc)

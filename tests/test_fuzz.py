"""Hypothesis drives the C entry points with arbitrary arrays and parameters: a clean Python
exception or a valid result, never a crash; results always equal the NumPy twin."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from moepy import _C, _ops
from moepy import reference as ref
from moepy.routing.config import RouterConfig

ALLOWED = (TypeError, ValueError, OverflowError, MemoryError)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

dtypes = st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.bool_, np.uint16])
any_array = (hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12),
                        elements=st.integers(0, 1))
             | hnp.arrays(st.sampled_from([np.int32, np.float32]), hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
                          elements=st.integers(-3, 9)))
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
logits_arrays = hnp.arrays(np.float32, st.tuples(st.integers(0, 20), st.integers(1, 40)), elements=floats)
PARAM_NAMES = ("top_k", "scoring", "topk_before_score", "normalize", "norm_p", "norm_eps", "scale", "n_group",
               "topk_group", "group_score", "group_mask_value")
param_values = st.tuples(
    st.integers(-2, 45), st.integers(-1, 2), st.integers(0, 1), st.integers(0, 1),
    st.floats(-1, 3, width=32) | st.just(float("nan")), st.floats(0, 0.0009765625, width=32) | st.just(-1.0),
    st.floats(-4, 4, width=32), st.integers(-1, 9), st.integers(-1, 9), st.integers(-1, 2),
    st.sampled_from([float("-inf"), 0.0, 1.0, float("nan")]))
junk = st.one_of(st.booleans(), st.floats(), st.text(max_size=3), st.integers(-2**70, 2**70), st.none())


def config_of(v):
    """A RouterConfig from raw values, or None where RouterConfig refuses them (ValueError)."""
    kw = dict(zip(PARAM_NAMES, v))
    names = {"scoring": ("softmax", "sigmoid"), "group_score": ("max", "top2_sum")}
    for k, opts in names.items():
        kw[k] = opts[kw[k]] if 0 <= kw[k] < len(opts) else "bogus"
    kw["topk_before_score"], kw["normalize"] = bool(kw["topk_before_score"]), bool(kw["normalize"])
    try:
        return RouterConfig(**kw)
    except ValueError:
        return None


@SETTINGS
@given(v=param_values, bad_field=st.sampled_from(PARAM_NAMES), bad=junk)
def test_route_params_reject_junk(v, bad_field, bad):
    kw = dict(zip(PARAM_NAMES, v))
    for case in (kw, {**kw, bad_field: bad}):
        try:
            p = _C.route_params(**case)
        except ALLOWED:
            continue
        assert isinstance(p, bytes) and len(p) == _C.ROUTE_PARAMS_BYTES


@SETTINGS
@given(logits=logits_arrays | any_array, v=param_values, use_bias=st.booleans())
def test_route_never_crashes(logits, v, use_bias):
    cfg = config_of(v)
    if cfg is None:
        return
    p = _ops.route_params(cfg)
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
    rw, re_, rs = ref.route(logits, cfg, bias)  # no NaN: the twin accepts too
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


# ------------------------------------------------------------------ engine and quantization entry points
small_floats = st.floats(-4, 4, width=32)


@SETTINGS
@given(which=st.integers(-1, 2), w=any_array | hnp.arrays(st.sampled_from([np.float32, np.uint16]),
                                                           hnp.array_shapes(min_dims=3, max_dims=3, max_side=20),
                                                           elements=st.integers(0, 5)),
       with_up=st.booleans())
def test_pack_never_crashes(which, w, with_up):
    try:
        _C.pack(which, w, w.copy() if with_up else None)
    except ALLOWED:
        pass


@SETTINGS
@given(which=st.integers(0, 1), w=hnp.arrays(st.sampled_from([np.float32, np.uint16]),
                                             hnp.array_shapes(min_dims=3, max_dims=3, max_side=20),
                                             elements=st.integers(0, 5)),
       with_up=st.booleans(), out_dtype=st.sampled_from([np.float32, np.uint16, np.float64, np.uint8]),
       delta=st.integers(-3, 3), offset=st.integers(0, 2), overlap=st.booleans())
def test_pack_into_out_never_crashes(which, w, with_up, out_dtype, delta, offset, overlap):
    """out= of any dtype and size (exact, short, long; at an offset; over the input): a valid out gets the
    bytes of a fresh pack, anything else an error."""
    try:
        want = _C.pack(which, w, w.copy() if with_up else None)
    except ALLOWED:
        return
    n = max(want.size + delta, 0)
    if overlap:
        buf = np.zeros(w.size + n + offset, w.dtype)
        buf[:w.size] = w.ravel()
        src, out = buf[:w.size].reshape(w.shape), buf[w.size - 1:][:n]  # its first element is src's last
    else:
        src, out = w, np.zeros(n + offset, out_dtype)[offset:]
    try:
        _C.pack(which, src, w.copy() if with_up else None, out)
    except ALLOWED:
        return
    assert not overlap and delta == 0 and out_dtype == w.dtype
    np.testing.assert_array_equal(out, want)


@SETTINGS
@given(w=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 20), st.sampled_from([32, 64, 96, 128, 7])),
                    elements=small_floats | st.sampled_from([np.inf, np.nan, 0.0])),
       fmt=st.integers(-1, 4), G=st.sampled_from([0, 16, 32, 64, 128]), P=st.integers(0, 3), p=st.integers(-1, 2))
def test_quantize_never_crashes_and_matches(w, fmt, G, P, p):
    try:
        blocks = _C.quantize(w, fmt, G, P, p)
    except ALLOWED:
        return
    name = ["int8", "int4", "int4_asym", "int4_nl"][fmt]
    if P == 1:
        u, s, m = ref.quantize_weights(w, name, G)
        np.testing.assert_array_equal(blocks, ref.pack_blocks(u, s, m, name, G))
    E, N, K = w.shape
    back = _C.dequantize(blocks, E, N, K, fmt, G, P, p)
    assert back.shape == w.shape


@SETTINGS
@given(blocks=hnp.arrays(np.uint8, st.integers(0, 2000)), E=st.integers(-1, 3), N=st.integers(-1, 20),
       K=st.sampled_from([-1, 0, 32, 64, 33]), fmt=st.integers(-1, 4), G=st.sampled_from([0, 32, 64]),
       P=st.integers(0, 3), p=st.integers(-1, 2))
def test_dequantize_never_crashes(blocks, E, N, K, fmt, G, P, p):
    try:
        _C.dequantize(blocks, E, N, K, fmt, G, P, p)
    except ALLOWED:
        pass


@SETTINGS
@given(x=logits_arrays | any_array, G=st.sampled_from([0, 8, 32, 64]))
def test_quantize_rows_never_crashes(x, G):
    try:
        q, s, S = _C.quantize_rows(x, G)
    except ALLOWED:
        return
    rq, rs, rS = ref.quantize_activations(x, G)
    np.testing.assert_array_equal(q, rq)


def _experts_tuple(E, H, I, gated, act, dtype):
    from moepy.moe import ExpertWeights
    rng = np.random.default_rng(0)
    w = lambda *s: (rng.standard_normal(s) * 0.1).astype(np.float32)  # noqa: E731
    ex = ExpertWeights(up=w(E, I, H), down=w(E, H, I), gate=w(E, I, H) if gated else None,
                       activation=["silu", "gelu", "gelu_tanh", "relu", "gpt_oss"][act])
    return ex.packed(dtype, 32)


@SETTINGS
@given(T=st.integers(0, 12), K=st.integers(1, 4), E=st.integers(1, 6), gated=st.booleans(), act=st.integers(0, 4),
       dtype=st.sampled_from(["float32", "bfloat16", "int8", "int4", "int4_asym", "int4_nl"]),
       ids=st.lists(st.integers(-2, 8), min_size=0, max_size=60), bad=st.integers(0, 6), scale_input=st.booleans())
def test_moe_forward_never_crashes(T, K, E, gated, act, dtype, ids, bad, scale_input):
    H, I = 32, 64
    routed = _experts_tuple(E, H, I, gated, act, dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, H)).astype(np.float32)
    experts = np.resize(np.array(ids or [0], np.int32), (T, K)).astype(np.int32)
    weights = rng.random((T, K)).astype(np.float32)
    args = [x, weights, experts, None, routed, None, None, scale_input]
    if bad == 1:
        args[0] = x.astype(np.float64)
    elif bad == 2:
        args[1] = weights[:, :-1] if K > 1 else weights[:0]
    elif bad == 3:
        args[4] = routed._replace(w_in=routed.w_in[:-1])
    elif bad == 4:
        args[4] = routed._replace(I=routed.I + 16)
    elif bad == 5:
        args[5] = _experts_tuple(2, H, I, gated, act, dtype)
    elif bad == 6:
        args[6] = np.ones(T + 1, np.float32)
    try:
        y = _C.moe_forward(*args)
    except ALLOWED:
        return
    assert y.shape == (T, H) and np.isfinite(y).all()
    assert ((experts >= 0) & (experts < E)).all()


@SETTINGS
@given(experts=any_array, E=st.integers(-1, 9), with_dropped=st.booleans())
def test_dispatch_plan_never_crashes(experts, E, with_dropped):
    dropped = np.zeros(experts.shape, bool) if with_dropped and experts.ndim == 2 else None
    try:
        plan = _C.dispatch_plan(experts, dropped, E)
    except ALLOWED:
        return
    for got, want in zip(plan, ref.dispatch_plan(experts, dropped, E)):
        np.testing.assert_array_equal(got, want)


@SETTINGS
@given(T=st.integers(0, 10), K=st.integers(1, 3), E=st.integers(1, 5), dtype=st.sampled_from(["float32", "int8"]),
       ids=st.lists(st.integers(-1, 6), min_size=0, max_size=40), order=any_array, offsets=any_array,
       position=any_array, mode=st.integers(0, 3), scale_input=st.booleans())
def test_dispatch_pieces_never_crash(T, K, E, dtype, ids, order, offsets, position, mode, scale_input):
    """plan -> gather -> grouped_ffn -> combine with arbitrary (often invalid) plans: a clean exception or
    a result; valid plans give the fused layer's result bitwise."""
    H, I = 32, 32
    routed = _experts_tuple(E, H, I, True, 0, dtype)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, H)).astype(np.float32)
    experts = np.resize(np.array(ids or [0], np.int32), (T, K)).astype(np.int32)
    weights = rng.random((T, K)).astype(np.float32)
    try:
        counts, offs, ordr, pos = _C.dispatch_plan(experts, None, E)
    except ALLOWED:
        counts = None
    if mode == 1 or counts is None:  # arbitrary arrays in place of the plan
        ordr, offs, pos = order, offsets, position
    elif mode == 2 and counts is not None:
        ordr = ordr[::-1].copy()
    try:
        rows = _C.gather(x, ordr, K, weights if scale_input else None)
        ys = _C.grouped_ffn(rows, offs, routed)
        out = _C.combine(ys, pos, experts, weights, scale_input)
    except ALLOWED:
        return
    assert out.shape == (T, H)
    if mode in (0, 3) and counts is not None:
        np.testing.assert_array_equal(out, _C.moe_forward(x, weights, experts, None, routed, None, None, scale_input))

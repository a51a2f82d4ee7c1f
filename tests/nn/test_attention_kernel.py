"""moe_attention (csrc/kernels/attention.c) against its NumPy twin, its input checks, and its determinism."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moepy import _ops
from moepy.reference import attention as ref_attention

from conftest import available_isas, isa, num_threads


def make(rng, B, Hq, Hkv, T, S, D, Dv, p_allowed=0.7, sinks=False):
    q = rng.standard_normal((B, Hq, T, D), dtype=np.float32)
    k = rng.standard_normal((B, Hkv, S, D), dtype=np.float32)
    v = rng.standard_normal((B, Hkv, S, Dv), dtype=np.float32)
    allowed = rng.random((B, T, S)) < p_allowed
    if T > 1:
        allowed[0, 1] = False  # a fully masked row
    s = rng.standard_normal(Hq).astype(np.float32) * 2 if sinks else None
    return q, k, v, allowed, s


SHAPES = [  # B, Hq, Hkv, T, S, D, Dv
    (1, 1, 1, 1, 1, 1, 1), (2, 4, 2, 5, 7, 12, 12), (1, 8, 2, 3, 300, 64, 33), (2, 6, 1, 9, 17, 16, 5),
    (1, 4, 4, 20, 129, 128, 128), (3, 2, 2, 2, 64, 31, 47), (1, 3, 3, 17, 1, 7, 19), (1, 2, 1, 4, 0, 8, 8),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sinks", [False, True])
def test_matches_reference(shape, sinks):
    rng = np.random.default_rng(hash((shape, sinks)) % 2**32)
    q, k, v, allowed, s = make(rng, *shape, sinks=sinks)
    scale = 1 / np.sqrt(shape[5])
    out = _ops.attention(q, k, v, allowed, scale, s)
    assert out.shape == shape[:3:1][:2] + (shape[3], shape[6]) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref_attention(q, k, v, allowed, scale, s), rtol=1e-5, atol=2e-6)
    assert (out[0, :, 1] == 0).all() if shape[3] > 1 else True  # the fully masked row


def test_random_shapes():
    rng = np.random.default_rng(7)
    for _ in range(25):
        Hkv = int(rng.integers(1, 4))
        shape = (int(rng.integers(1, 3)), Hkv * int(rng.integers(1, 5)), Hkv, int(rng.integers(1, 12)),
                 int(rng.integers(1, 301)), int(rng.integers(1, 70)), int(rng.integers(1, 70)))
        q, k, v, allowed, s = make(rng, *shape, p_allowed=float(rng.random()), sinks=bool(rng.integers(2)))
        out = _ops.attention(q, k, v, allowed, 0.2, s)
        np.testing.assert_allclose(out, ref_attention(q, k, v, allowed, 0.2, s), rtol=1e-5, atol=2e-6, err_msg=str(shape))


def test_strided_views_and_mla_layout():
    """k and v as views of one buffer (MLA: k = [latent | k_pe], v = its first r columns), a cache slice, a
    broadcast mask; inputs are not modified."""
    rng = np.random.default_rng(3)
    B, H, T, S, r, dr, cap = 2, 4, 3, 40, 24, 8, 64
    cache = rng.standard_normal((B, cap, r + dr), dtype=np.float32)
    k = cache[:, None, :S]  # (B, 1, S, r + dr)
    v = cache[:, None, :S, :r]
    q = rng.standard_normal((B, T, H, r + dr), dtype=np.float32).transpose(0, 2, 1, 3)  # non-contiguous q
    allowed = np.broadcast_to(np.tril(np.ones((T, S), bool), S - T), (B, T, S))
    before = cache.copy()
    out = _ops.attention(q, k, v, allowed, 0.1)
    np.testing.assert_allclose(out, ref_attention(q, k, v, allowed, 0.1), rtol=1e-5, atol=2e-6)
    assert np.array_equal(cache, before)
    contig = _ops.attention(*(np.ascontiguousarray(a) for a in (q, k, v, allowed)), 0.1)
    assert np.array_equal(out, contig)


@pytest.mark.parametrize("D, Dv", [(45, 70), (128, 128), (576, 512), (64, 200)])  # AVX-512: 16 keys at once,
def test_bitwise_across_threads_and_isas(D, Dv):  # outputs 128 at a time (MLA's 512), the rest four keys at a time
    rng = np.random.default_rng(11)
    q, k, v, allowed, s = make(rng, 2, 8, 2, 37, 203, D, Dv, sinks=True)
    q[1, 3, 5, 7] = np.nan  # a NaN score: that row is NaN on every ISA
    k[0, 1, 100, 0] = np.inf  # an infinite one
    results = []
    for name in available_isas():
        for n in (1, 2):
            with isa(name), num_threads(n):
                results.append(_ops.attention(q, k, v, allowed, 0.15, s))
    assert np.isnan(results[0][1, 3, 5]).all()
    for r in results[1:]:
        assert np.array_equal(results[0], r, equal_nan=True)


@pytest.mark.parametrize("name", available_isas())
def test_query_row_independent_of_T(name):
    rng = np.random.default_rng(5)
    q, k, v, allowed, s = make(rng, 1, 4, 2, 7, 150, 12, 20, sinks=True)
    with isa(name):
        full = _ops.attention(q, k, v, allowed, 0.3, s)
        last = _ops.attention(q[:, :, -1:], k, v, allowed[:, -1:], 0.3, s)
        first = _ops.attention(q[:, :, :1], k, v, allowed[:, :1], 0.3, s)
    assert np.array_equal(full[:, :, -1:], last)
    assert np.array_equal(full[:, :, :1], first)


@pytest.mark.parametrize("Hq, Hkv, D", [(8, 2, 64), (32, 4, 128), (20, 1, 36), (6, 3, 16)])
def test_grouped_decode_step_is_each_heads_bits(Hq, Hkv, D):
    # T = 1 without sinks: the g query heads of a key/value head run as the rows of one item (up to 8 at a time)
    rng = np.random.default_rng(Hq * 100 + D)
    q, k, v, allowed, _ = make(rng, 2, Hq, Hkv, 1, 70, D, D)
    g = Hq // Hkv
    results = []
    for name in available_isas():
        for n in (1, 2):
            with isa(name), num_threads(n):
                results.append(_ops.attention(q, k, v, allowed, 0.2))
    for r in results[1:]:
        assert np.array_equal(results[0], r)
    for h in range(Hq):  # each head alone (one query head over its key/value head: no grouping)
        one = _ops.attention(q[:, h:h + 1], k[:, h // g:h // g + 1], v[:, h // g:h // g + 1], allowed, 0.2)
        assert np.array_equal(results[0][:, h:h + 1], one)
    want = ref_attention(q, k, v, allowed, 0.2)
    assert np.abs(results[0] - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def _ok_args(rng):
    q, k, v, allowed, s = make(rng, 2, 4, 2, 3, 5, 8, 6, sinks=True)
    return dict(q=q, k=k, v=v, allowed=allowed, scale=0.5, sinks=s)


BAD = {
    "q": [np.zeros((2, 4, 3, 8), np.float64), np.zeros((2, 4, 3), np.float32), [[1.0]],
          np.zeros((2, 4, 3, 16), np.float32)[..., ::2], np.zeros((2, 4, 3, 9), np.float32),
          np.zeros((3, 4, 3, 8), np.float32), np.zeros((2, 3, 3, 8), np.float32),
          np.zeros((2, 4, 3, 8), np.float32)[:, ::-1], np.zeros((2, 4, 3, 8), ">f4")],
    "k": [np.zeros((2, 2, 5, 8), np.float16), np.zeros((2, 3, 5, 8), np.float32), np.zeros((2, 2, 5, 7), np.float32),
          np.zeros((2, 2, 5, 16), np.float32)[..., 1::2], None, np.zeros((2, 2, 5, 8), np.int32)],
    "v": [np.zeros((2, 2, 4, 6), np.float32), np.zeros((2, 1, 5, 6), np.float32), np.zeros((2, 2, 5, 0), np.float32),
          np.zeros((2, 2, 5, 6), np.float64), np.zeros((2, 2, 5, 12), np.float32)[..., ::2]],
    "allowed": [np.ones((2, 3, 5), np.float32), np.ones((2, 3, 4), bool), np.ones((3, 5), bool),
                np.ones((2, 3, 10), bool)[..., ::2], np.ones((2, 3, 5), np.int64), 1],
    "scale": ["0.5", float("nan"), float("inf"), None, True],
    "sinks": [np.zeros(3, np.float32), np.zeros(4, np.float64), np.zeros((4, 1), np.float32)],
}


@pytest.mark.parametrize("arg,value", [(a, v) for a, vs in BAD.items() for v in vs])
def test_bad_inputs_name_the_argument(arg, value):
    args = _ok_args(np.random.default_rng(0))
    args[arg] = value
    with pytest.raises((TypeError, ValueError)) as e:
        _ops.attention(**args)
    assert arg in str(e.value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arg=st.sampled_from(["q", "k", "v", "allowed"]), dtype=st.sampled_from(["f4", "f8", "f2", "i4", "u1", "?"]),
       shape=st.lists(st.integers(0, 6), min_size=0, max_size=5), step=st.integers(1, 3))
def test_fuzz_never_crashes(arg, dtype, shape, step):
    args = _ok_args(np.random.default_rng(1))
    a = np.zeros([n * step for n in shape], dtype)
    if a.ndim:
        a = a[(slice(None),) * (a.ndim - 1) + (slice(None, None, step),)]
    args[arg] = a
    try:
        out = _ops.attention(**args)
    except (TypeError, ValueError) as e:
        assert arg in str(e) or "heads" in str(e)
    else:
        assert out.dtype == np.float32 and np.isfinite(out).all()

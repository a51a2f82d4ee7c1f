"""The dense pieces' fast paths: q/k/v joined into one Linear (float32, bf16, INT) and Linear.rows views give the
separate Linears' bits; the RMSNorm and RoPE kernels give their NumPy twins' bits (moepy.reference.norm_rope), for any
thread count and row, and name the argument of bad input; a whole model with its projections fused gives bitwise
the logits of the same model with them apart."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import num_threads
from moepy import _ops
from moepy import reference as ref
from moepy.configs import presets
from moepy.moe.weights import to_bf16_bits
from moepy.nn import MoEModel
from moepy.nn.attention import GQAAttention
from moepy.nn.layers import Linear, rms_norm
from moepy.nn.rope import LAYOUTS, Rope, RopeSpec


def _linears(dtype, sizes=(64, 32, 32), K=64, bias=False, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        w = rng.standard_normal((n, K), dtype=np.float32)
        b = rng.standard_normal(n, dtype=np.float32) if bias else None
        lin = Linear(to_bf16_bits(w) if dtype == "bfloat16" else w, b)
        out.append(lin.quantized(dtype, 32) if dtype.startswith("int") else lin)
    return out


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8", "int4", "int4_asym", "int4_nl"])
@pytest.mark.parametrize("bias", [False, True])
def test_concat_gives_each_linears_bits(dtype, bias):
    parts = _linears(dtype, bias=bias)
    fused = Linear.concat(parts)
    assert fused.out_features == 128 and fused.dtype == parts[0].dtype
    x = np.random.default_rng(1).standard_normal((5, 64), dtype=np.float32)
    for T in (1, 5):  # one row (decode) and several
        assert np.array_equal(fused(x[:T]), np.concatenate([p(x[:T]) for p in parts], axis=-1))
    for (lo, hi), p in zip(((0, 64), (64, 96), (96, 128)), parts):
        view = fused.rows(lo, hi)
        assert np.shares_memory(view._packed.w_in, fused._packed.w_in)
        assert np.array_equal(view.weight, p.weight) and np.array_equal(view(x), p(x))


def test_concat_refuses_what_does_not_join():
    assert Linear.concat(_linears("float32", sizes=(64, 24))) is None  # 24 outputs: not whole panels
    a, b = _linears("float32")[:2]
    assert Linear.concat([a, _linears("bfloat16")[1]]) is None  # dtypes differ
    assert Linear.concat([a, _linears("float32", bias=True)[1]]) is None  # a bias on one only
    assert Linear.concat([a, _linears("float32", K=32)[1]]) is None  # inputs differ
    with pytest.raises(ValueError, match="panel-aligned"):
        a.rows(8, 32)
    with pytest.raises(ValueError, match="panel-aligned"):
        a.rows(0, 80)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5), st.integers(1, 300), st.floats(0, 1e-2), st.booleans(), st.integers(0, 2**31))
def test_rms_norm_kernel_is_its_twins_bits(rows, n, eps, weighted, seed):
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-20, 20)  # squares beyond float32 at both ends: float64 sums keep them
    x = (rng.standard_normal((rows, n)) * scale).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32) if weighted else None
    got = _ops.rms_norm(x, w, eps)
    assert np.array_equal(got, ref.rms_norm(x, w, eps), equal_nan=True)
    var = np.mean(np.square(x.astype(np.float64)), axis=-1, keepdims=True)  # against the plain formula
    plain = (x / np.sqrt(var + np.float32(eps)) * (1 if w is None else w)).astype(np.float32)
    if 1e-15 < scale < 1e15:  # a mean of squares float32 holds as a normal number
        assert np.allclose(got, plain, rtol=3e-6, atol=0)
    with num_threads(1):
        assert np.array_equal(_ops.rms_norm(x, w, eps), got, equal_nan=True)


def test_rms_norm_rows_are_independent_and_threads_agree():
    x = np.random.default_rng(0).standard_normal((300, 2048)).astype(np.float32)  # big enough for the threads
    w = np.random.default_rng(1).standard_normal(2048).astype(np.float32)
    full = rms_norm(x, w, 1e-6)
    assert np.array_equal(full[7:8], rms_norm(x[7:8], w, 1e-6))
    with num_threads(1):
        assert np.array_equal(rms_norm(x, w, 1e-6), full)
    view = np.zeros((300, 4096), np.float32)[:, 1000:3048]  # a strided view (q of the fused qkv)
    view[...] = x
    assert np.array_equal(rms_norm(view, w, 1e-6), full)
    assert np.array_equal(rms_norm(x.reshape(3, 100, 2048), w, 1e-6), full.reshape(3, 100, 2048))


@pytest.mark.parametrize("bad, match", [
    (dict(x=np.zeros((2, 3), np.float64)), "x must have dtype float32"),
    (dict(x=np.zeros(3, np.float32)), "x must be 2-dimensional"),
    (dict(x=np.zeros((2, 0), np.float32)), "at least one column"),
    (dict(weight=np.zeros(4, np.float32)), r"weight must have shape \(3,\)"),
    (dict(eps=-1.0), "eps must be"), (dict(eps=float("nan")), "eps must not be NaN"), (dict(eps="1"), "eps must be"),
])
def test_rms_norm_bad_input_names_the_argument(bad, match):
    args = dict(x=np.zeros((2, 3), np.float32), weight=np.ones(3, np.float32), eps=1e-6) | bad
    with pytest.raises((TypeError, ValueError), match=match):
        _ops.rms_norm(**args)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rotate_is_the_textbook_rotation(layout):
    rope = Rope(RopeSpec(dim=16, theta=10000.0, layout=layout))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 24), dtype=np.float32)[..., 4:20]  # a strided view, as q is of qkv
    cos, sin = rope.cos_sin(np.arange(6).reshape(2, 3))
    c, s = cos[..., None, :], sin[..., None, :]
    a, b = (x[..., :8], x[..., 8:]) if layout == "half" else (x[..., 0::2], x[..., 1::2])
    re, im = a * c - b * s, b * c + a * s
    want = np.stack([re, im], axis=-1).reshape(x.shape) if layout == "pairs" else np.concatenate([re, im], -1)
    assert np.array_equal(rope.rotate(x, cos, sin), want)
    assert np.array_equal(rope.apply(x, cos, sin), want)
    assert np.array_equal(ref.rope(x.reshape(6, 4, 16), cos.reshape(6, 8), sin.reshape(6, 8), layout),
                          want.reshape(6, 4, 16))
    assert np.array_equal(rope.rotate(x, cos[:1], sin[:1]), rope.rotate(x, np.repeat(cos[:1], 2, 0),
                                                                        np.repeat(sin[:1], 2, 0)))  # broadcast
    big = rng.standard_normal((600, 4, 16), dtype=np.float32)  # threads, rows apart
    cb, sb = rope.cos_sin(np.arange(600))
    out = _ops.rope(big, cb, sb, layout)
    assert np.array_equal(out, ref.rope(big, cb, sb, layout)) and np.array_equal(out[5:6], _ops.rope(
        big[5:6], cb[5:6], sb[5:6], layout))
    with num_threads(1):
        assert np.array_equal(_ops.rope(big, cb, sb, layout), out)


@pytest.mark.parametrize("bad, match", [
    (dict(x=np.zeros((2, 3, 8), np.float64)), "x must have dtype float32"), (dict(x=np.zeros((2, 8), np.float32)),
                                                                             "x must be 3-dimensional"),
    (dict(x=np.zeros((2, 3, 7), np.float32)), "even dim"), (dict(cos=np.zeros((2, 3), np.float32)), r"cos must have"),
    (dict(sin=np.zeros((3, 4), np.float32)), r"sin must have"), (dict(layout="interleaved"), "layout must be"),
])
def test_rope_bad_input_names_the_argument(bad, match):
    args = dict(x=np.zeros((2, 3, 8), np.float32), cos=np.zeros((2, 4), np.float32), sin=np.zeros((2, 4), np.float32),
                layout="half") | bad
    with pytest.raises((TypeError, ValueError), match=match):
        _ops.rope(**args)


@pytest.mark.parametrize("name", ["olmoe-1b-7b", "qwen3-30b-a3b", "gpt-oss-20b"])
def test_fused_projections_give_the_separate_ones_bits(name):
    m = MoEModel.from_config(presets.get(name).scaled(hidden_size=64, vocab_size=128), seed=0, std=0.2)
    attn = [l.attention for l in m.layers if isinstance(l.attention, GQAAttention)]
    assert attn and all(a.qkv is not None for a in attn)  # these sizes fuse
    ids = np.random.default_rng(0).integers(0, 128, 12)
    cache = m.new_cache()
    fused = np.concatenate([m(ids[:7], cache=cache), m(ids[7:8], cache=cache)])
    for a in attn:  # the same Linears, apart
        a.qkv, a._qkv_parts = None, (a.q, a.k, a.v)
    cache = m.new_cache()
    assert np.array_equal(np.concatenate([m(ids[:7], cache=cache), m(ids[7:8], cache=cache)]), fused)
    for a in attn:  # set_projection rejoins them
        a.set_projection("q", a.q)
        assert a.qkv is not None
    with num_threads(1):
        cache = m.new_cache()
        assert np.array_equal(np.concatenate([m(ids[:7], cache=cache), m(ids[7:8], cache=cache)]), fused)

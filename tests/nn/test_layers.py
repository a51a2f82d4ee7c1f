"""The dense pieces' fast paths are the slow paths' bits: q/k/v joined into one Linear (float32, bf16, INT),
Linear.rows views, rms_norm against np.mean, Rope.rotate against the textbook rotation; a whole model with its
projections fused gives bitwise the logits of the same model with them apart."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import num_threads
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


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8", "int4", "int4_asym"])
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


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 300), st.floats(1e-8, 1e-2))
def test_rms_norm_is_np_means_bits(rows, n, eps):
    x = np.random.default_rng(rows * 1000 + n).standard_normal((rows, n), dtype=np.float32) * 3
    w = np.random.default_rng(n).standard_normal(n, dtype=np.float32)
    var = np.mean(np.square(x, dtype=np.float32), axis=-1, keepdims=True, dtype=np.float32)
    ref = x * (np.float32(1.0) / np.sqrt(var + np.float32(eps))) * w
    assert np.array_equal(rms_norm(x, w, eps), ref)
    assert np.array_equal(rms_norm(x[:, ::-1], w, eps), rms_norm(np.ascontiguousarray(x[:, ::-1]), w, eps))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rotate_is_the_textbook_rotation(layout):
    rope = Rope(RopeSpec(dim=16, theta=10000.0, layout=layout))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 24), dtype=np.float32)[..., 4:20]  # a strided view, as q is of qkv
    cos, sin = rope.cos_sin(np.arange(6).reshape(2, 3))
    c, s = cos[..., None, :], sin[..., None, :]
    a, b = (x[..., :8], x[..., 8:]) if layout == "half" else (x[..., 0::2], x[..., 1::2])
    re, im = a * c - b * s, b * c + a * s
    ref = np.stack([re, im], axis=-1).reshape(x.shape) if layout == "pairs" else np.concatenate([re, im], -1)
    assert np.array_equal(rope.rotate(x, cos, sin), ref)
    assert np.array_equal(rope.apply(x, cos, sin), ref)


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

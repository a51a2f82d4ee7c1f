"""bf16 activations for bf16 weights (moepy.set_activation_precision): the kernels bit for bit against their NumPy
twin (moepy.reference.bf16act), on every ISA and thread count, batch invariant; "auto" switching at its threshold;
the error against float32 activations; float32 and INT weights untouched; bad modes refused."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import moepy
from moepy import RouterConfig
from moepy import _ops
from moepy.moe import ExpertWeights, MoELayer, from_bf16_bits, to_bf16_bits
from moepy.moe.layer import _bf16_round
from moepy.nn.layers import Linear
from moepy.reference import bf16act
from conftest import available_isas, isa, num_threads
from test_layer import LAYERS, build


def forward(layer, x, r, gate=None):
    return _ops.moe_forward(x, r.weights, r.experts, r.dropped, layer._routed, layer._shared, gate, layer.scale_input)


def twin(layer, x, r, gate=None):
    R = layer.to_float32_reference()
    return bf16act.moe_layer_forward(x, r.weights, r.experts, r.dropped, R["experts"], R["shared"], gate,
                                     R["scale_input"])


def shared_gate(layer, T, seed=0):
    if layer._shared is None or layer.shared_gate_weight is None:
        return None
    return np.random.default_rng(seed).random(T).astype(np.float32)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("T", [1, 37, 200])
def test_layer_bitwise_equal_to_twin(name, T):
    layer = build(name, "bfloat16")
    x = np.random.default_rng(T).standard_normal((T, layer.hidden_size)).astype(np.float32)
    r, gate = layer.route(x), shared_gate(layer, T)
    with moepy.activation_precision("bf16"):
        y = forward(layer, x, r, gate)
    assert y.tobytes() == twin(layer, x, r, gate).tobytes()


def test_grouped_ffn_and_linear_bitwise_equal_to_twin():
    rng = np.random.default_rng(1)
    for gated, act, H, I in [(True, "silu", 34, 40), (False, "gelu", 19, 16), (True, "gpt_oss", 32, 24)]:
        g = lambda *shape: (0.2 * rng.standard_normal(shape)).astype(np.float32)  # noqa: E731
        ex = ExpertWeights(up=g(3, I, H), down=g(3, H, I), gate=g(3, I, H) if gated else None, activation=act,
                           up_bias=g(3, I), down_bias=g(3, H), gate_bias=g(3, I) if gated else None)
        packed, R = ex.packed("bfloat16"), _bf16_round(ex)
        offsets = np.array([0, 5, 5, 70], np.int64)
        xs = rng.standard_normal((70, H)).astype(np.float32)
        with moepy.activation_precision("bf16"):
            ys = _ops.grouped_ffn(xs, offsets, packed)
        assert ys.tobytes() == bf16act.grouped_ffn(xs, offsets, R).tobytes()
    w = rng.standard_normal((40, 33)).astype(np.float32)
    lin = Linear(to_bf16_bits(w))
    x = rng.standard_normal((9, 33)).astype(np.float32)
    with moepy.activation_precision("bf16"):
        y = lin(x)
    assert y.tobytes() == bf16act.linear(x, from_bf16_bits(lin.weight)).tobytes()


def test_every_isa_thread_count_and_batch_gives_the_same_bits():
    layer = build("deepseek_v3", "bfloat16")
    x = np.random.default_rng(5).standard_normal((300, layer.hidden_size)).astype(np.float32)
    with moepy.activation_precision("bf16"):
        outs = []
        for cpu_isa in available_isas():
            with isa(cpu_isa):
                for n in (1, 2):
                    with num_threads(n):
                        outs.append(layer(x))
                single = np.concatenate([layer(x[i:i + 1]) for i in range(0, 300, 41)])
                assert single.tobytes() == outs[0][::41].tobytes()
    assert all(o.tobytes() == outs[0].tobytes() for o in outs)


def test_auto_switches_at_min_rows_and_fp32_is_the_default():
    assert moepy.get_activation_precision() == ("fp32", 16)
    layer = build("mixtral", "bfloat16")
    x = np.random.default_rng(6).standard_normal((20, layer.hidden_size)).astype(np.float32)
    exact = layer(x)
    with moepy.activation_precision("bf16"):
        fast = layer(x)
        assert moepy.build_info()["activation_precision"] == "bf16"
    assert exact.tobytes() != fast.tobytes()
    with moepy.activation_precision("auto", min_rows=5):  # 8 experts, top-2: 20 tokens give 5 rows per expert
        assert moepy.get_activation_precision() == ("auto", 5)
        assert layer(x).tobytes() == fast.tobytes()
        assert layer(x[:19]).tobytes() == exact[:19].tobytes()
    assert moepy.get_activation_precision() == ("fp32", 16)


def test_error_against_fp32_is_the_bf16_rounding_of_activations():
    layer = build("qwen2_moe", "bfloat16")
    x = np.random.default_rng(7).standard_normal((256, layer.hidden_size)).astype(np.float32)
    exact = layer(x)
    with moepy.activation_precision("bf16"):
        fast = layer(x)
    rel = np.linalg.norm(fast - exact) / np.linalg.norm(exact)
    assert 1e-4 < rel < 8e-3  # bf16 has 8 significant bits: 2^-9 relative rounding per activation


@pytest.mark.parametrize("dtype", ["float32", "int8", "int4"])
def test_float32_and_int_weights_ignore_the_mode(dtype):
    layer = MoELayer.random(RouterConfig.mixtral(8, 2), 64, 64, seed=0, std=0.15)
    if dtype != "float32":
        layer = layer.quantize(dtype)
    x = np.random.default_rng(8).standard_normal((70, layer.hidden_size)).astype(np.float32)
    a = layer(x)
    with moepy.activation_precision("bf16"):
        assert layer(x).tobytes() == a.tobytes()


def test_bad_modes_are_refused_and_leave_the_setting():
    with pytest.raises(ValueError, match="mode"):
        moepy.set_activation_precision("fp16")
    with pytest.raises(ValueError, match="min_rows"):
        moepy.set_activation_precision("auto", min_rows=0)
    with pytest.raises(TypeError):
        moepy.set_activation_precision("auto", min_rows=2.5)
    assert moepy.get_activation_precision() == ("fp32", 16)


def _bits(draw, n, mant_bits, exp_bits):
    """n floats' bits: sign, an exponent of zero (zero / subnormal: read as zero), 2^-50..2^50, or (exp_bits given:
    inf / NaN), random mantissa. Products then are zero or >= 2^-116 in magnitude, so no sum lands within a rounding
    of the smallest normal float (where the instruction and its emulation may flush differently)."""
    top = (1 << exp_bits) - 1 if mant_bits == 23 else None
    exps = st.one_of(st.just(0), st.integers(127 - 50, 127 + 50), *( [st.just(top)] if top else []))
    vals = st.tuples(st.integers(0, 1), exps, st.integers(0, (1 << mant_bits) - 1))
    out = draw(st.lists(vals, min_size=n, max_size=n))
    return [(sg << (mant_bits + 8)) | (e << mant_bits) | m for sg, e, m in out]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_extreme_values_match_the_twin(data):
    """Zero, subnormal, tiny, huge, inf and NaN activations, zero, subnormal, tiny and huge weights: kernel == twin,
    NaN where the twin has NaN."""
    H = data.draw(st.integers(1, 9))
    N = data.draw(st.integers(1, 20))
    T = data.draw(st.integers(1, 6))
    wbits = np.array(_bits(data.draw, N * H, 7, 8), np.uint16).reshape(N, H)
    x = np.array(_bits(data.draw, T * H, 23, 8), np.uint32).view(np.float32).reshape(T, H)
    lin = Linear(wbits)
    with moepy.activation_precision("bf16"):
        y = lin(x)
    yr = bf16act.linear(x, from_bf16_bits(wbits).reshape(N, H))
    assert np.array_equal(y, yr, equal_nan=True)

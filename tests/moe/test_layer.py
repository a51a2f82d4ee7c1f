"""The MoE engine (dispatch plan, grouped FFN, combine) against its NumPy twin; determinism,
batch invariance, bf16, bad input."""
import numpy as np
import pytest

from moepy import RouterConfig, _ops
from moepy import reference as ref
from moepy.moe import ExpertWeights, MoELayer, from_bf16_bits, to_bf16_bits
from conftest import available_isas, isa, num_threads


def check_layer(layer, x, rtol=2e-6):
    y, r = layer(x, return_routing=True)
    R = layer.to_float32_reference()
    x2 = x.reshape(-1, layer.hidden_size)
    gate = None
    if layer.shared_gate_weight is not None:
        gate = 1 / (1 + np.exp(-(x2.astype(np.float64) @ layer.shared_gate_weight.T.astype(np.float64))[:, 0]))
    yr = ref.moe_layer_forward(x2, r.weights, r.experts, r.dropped, R["experts"], R["shared"], gate,
                               R["scale_input"]).reshape(x.shape)
    scale = max(np.abs(yr).max(initial=0.0), 1e-30)
    err = np.abs(y - yr).max(initial=0.0)
    assert err <= rtol * scale * 10, err / scale
    return y, r


LAYERS = {
    "mixtral": dict(router=RouterConfig.mixtral(8, 2), H=64, I=48),
    "deepseek_v3": dict(router=RouterConfig.deepseek_v3(16, 4, n_group=4, topk_group=2), H=48, I=40,
                        shared_intermediate_size=40, selection_bias=True),
    "qwen2_moe": dict(router=RouterConfig.qwen2_moe(12, 4), H=32, I=24, shared_intermediate_size=64, shared_gate=True),
    "llama4": dict(router=RouterConfig.llama4(8, 1), H=40, I=33, shared_intermediate_size=33, scale_input=True),
    "gpt_oss": dict(router=RouterConfig.gpt_oss(8, 2), H=36, I=20, activation="gpt_oss"),
    "switch": dict(router=RouterConfig.switch(8, expert_capacity=3), H=32, I=64, activation="relu"),
    "gelu": dict(router=RouterConfig.olmoe(4, 2), H=17, I=5, activation="gelu"),
}


def build(name, dtype="float32", seed=0):
    kw = dict(LAYERS[name])
    router, H, I = kw.pop("router"), kw.pop("H"), kw.pop("I")
    return MoELayer.random(router, H, I, seed=seed, std=0.15, dtype=dtype, **kw)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("T", [0, 1, 3, 50, 300])
def test_layer_matches_reference(name, T):
    layer = build(name)
    x = np.random.default_rng(T).standard_normal((T, layer.hidden_size)).astype(np.float32)
    y, r = check_layer(layer, x)
    assert y.shape == x.shape and y.dtype == np.float32
    if name == "switch" and T > 24:
        assert r.dropped.any()


@pytest.mark.parametrize("cpu_isa", available_isas())
def test_every_isa_matches_reference(cpu_isa):
    with isa(cpu_isa):
        for name in ("mixtral", "gpt_oss", "qwen2_moe"):
            for dtype in ("float32", "bfloat16"):
                layer = build(name, dtype)
                check_layer(layer, np.random.default_rng(1).standard_normal((37, layer.hidden_size)).astype(np.float32))


def test_bf16_weights_are_read_exactly():
    layer = build("mixtral", "bfloat16")
    x = np.random.default_rng(2).standard_normal((64, layer.hidden_size)).astype(np.float32)
    check_layer(layer, x)  # the reference uses the same bf16-rounded weights
    f32 = build("mixtral", "float32")
    y32, y16 = f32(x), layer(x)
    rel = np.abs(y32 - y16).max() / np.abs(y32).max()
    assert 1e-5 < rel < 3e-2  # bf16 rounding shows, but only at bf16 precision
    w = np.array([1.0, -2.5, 3.14159, 1e-3, np.float32(65504.0)], np.float32)
    import ml_dtypes
    np.testing.assert_array_equal(to_bf16_bits(w), w.astype(ml_dtypes.bfloat16).view(np.uint16))
    np.testing.assert_array_equal(from_bf16_bits(to_bf16_bits(w)), w.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_three_dimensional_input_and_capacity_per_row():
    layer = build("switch")
    x = np.random.default_rng(3).standard_normal((3, 20, layer.hidden_size)).astype(np.float32)
    y, r = layer(x, return_routing=True)
    assert y.shape == x.shape
    for b in range(3):  # each batch row is its own capacity group, as Switch does
        np.testing.assert_array_equal(layer(x[b]), y[b])
    mix = build("mixtral")
    x = np.random.default_rng(4).standard_normal((2, 5, mix.hidden_size)).astype(np.float32)
    np.testing.assert_array_equal(mix(x).reshape(10, -1), mix(x.reshape(10, -1)))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bitwise_identical_across_threads_runs_and_batches(dtype):
    layer = build("deepseek_v3", dtype)
    x = np.random.default_rng(5).standard_normal((700, layer.hidden_size)).astype(np.float32)
    with num_threads(1):
        a = layer(x)
    with num_threads(2):
        b = layer(x)
        c = layer(x)
        # a token's output does not change when other tokens join the batch
        single = np.concatenate([layer(x[i:i + 1]) for i in range(0, 700, 97)])
    assert a.tobytes() == b.tobytes() == c.tobytes()
    assert single.tobytes() == a[::97].tobytes()
    assert layer(x[:13]).tobytes() == a[:13].tobytes()


def test_dispatch_plan_matches_reference():
    rng = np.random.default_rng(6)
    for T, K, E in [(0, 2, 4), (1, 1, 1), (100, 2, 8), (20_000, 8, 64), (5000, 6, 160)]:
        experts = np.argsort(rng.random((T, E)), axis=1)[:, :K].astype(np.int32)
        dropped = rng.random((T, K)) < 0.2
        for d in (None, dropped):
            got = _ops.dispatch_plan(experts, d, E)
            want = ref.dispatch_plan(experts, d, E)
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
        with num_threads(1):
            one = _ops.dispatch_plan(experts, dropped, E)
        for g, w in zip(one, _ops.dispatch_plan(experts, dropped, E)):
            assert g.tobytes() == w.tobytes()


def test_expert_without_tokens_and_all_on_one_expert():
    layer = build("mixtral")
    x = np.random.default_rng(7).standard_normal((40, layer.hidden_size)).astype(np.float32)
    w = layer.router_weight.copy()
    w[:] = 0
    w[3] = 5 * layer.router_weight[3] / np.abs(layer.router_weight[3]).max()
    hot = MoELayer(RouterConfig.mixtral(8, 2), w, layer.experts)
    x_pos = np.abs(x) * np.sign(layer.router_weight[3])[None, :]  # drives every token to expert 3
    y, r = check_layer(hot, x_pos.astype(np.float32))
    assert (r.experts == 3).any(axis=1).all()
    counts = r.counts()
    assert counts[3] == 40 and (counts == 0).sum() >= 1


def test_stats_of_last_call():
    layer = build("mixtral")
    with pytest.raises(RuntimeError):
        layer.stats()
    layer(np.random.default_rng(8).standard_normal((100, layer.hidden_size)).astype(np.float32))
    s = layer.stats()
    assert s.counts.sum() == 200 and s.num_experts == 8


def test_bad_inputs():
    layer = build("mixtral")
    H = layer.hidden_size
    with pytest.raises(TypeError, match="x must hold floating-point"):  # other dtypes: tests/test_inputs.py
        layer(np.zeros((2, H), np.bool_))
    with pytest.raises(ValueError, match=r"\(T, 64\)"):
        layer(np.zeros((2, H + 1), np.float32))
    with pytest.raises(ValueError, match="down must be"):
        ExpertWeights(up=np.zeros((2, 3, 4), np.float32), down=np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        ExpertWeights(up=np.full((1, 3, 4), np.nan, np.float32), down=np.zeros((1, 4, 3), np.float32))
    with pytest.raises(ValueError, match="activation"):
        ExpertWeights(up=np.zeros((1, 3, 4), np.float32), down=np.zeros((1, 4, 3), np.float32), activation="tanh")
    with pytest.raises(ValueError, match="num_experts=8"):
        MoELayer(RouterConfig.mixtral(8, 2), np.zeros((4, 8), np.float32),
                 ExpertWeights(up=np.zeros((4, 3, 8), np.float32), down=np.zeros((4, 8, 3), np.float32)))
    x = np.zeros((3, H), np.float32)
    r = layer.route(x)
    with pytest.raises(ValueError, match="out of range"):
        _ops.moe_forward(x, r.weights, np.full_like(r.experts, 8), None, layer._routed, None, None, False)
    with pytest.raises(ValueError, match="packed weights do not match"):
        bad = layer._routed._replace(w_in=layer._routed.w_in[:-1])
        _ops.moe_forward(x, r.weights, r.experts, None, bad, None, None, False)
    out = np.zeros((3, H), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _ops.moe_forward(x, r.weights, r.experts, None, layer._routed, None, None, False, out=out)
    with pytest.raises(ValueError, match="overlaps"):
        _ops.moe_forward(x, r.weights, r.experts, None, layer._routed, None, None, False, out=x)

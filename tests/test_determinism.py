"""Activations and reproducibility of the kernels: relu2 (Nemotron-H) against its NumPy twin and torch
on every ISA and dtype."""
import numpy as np
import pytest

import moepy
from moepy import RouterConfig
from moepy import reference as ref
from moepy.moe import ExpertWeights, MoELayer
from conftest import available_isas, isa

INT_FORMATS = ["int8", "int4", "int4_asym"]


def float_twin(layer, x):
    """moe_layer_forward of layer (float32 / bf16-rounded weights) on layer's own routing of x."""
    y, r = layer(x, return_routing=True)
    R = layer.to_float32_reference()
    yr = ref.moe_layer_forward(x, r.weights, r.experts, r.dropped, R["experts"], R["shared"], None,
                               R["scale_input"])
    return y, yr


def int_twin(layer, fmt, G, x):
    y, r = layer(x, return_routing=True)
    ex = layer.experts
    qex = {n: ref.quantize_weights(getattr(ex, n), fmt, G) for n in ("up", "down")}
    qex["gate"] = ref.quantize_weights(ex.gate, fmt, G) if ex.gated else None
    return y, ref.moe_layer_forward_quant(x, r.weights, r.experts, r.dropped, qex, ex, fmt, G)


def relu2_layer(H=64, I=96, E=8, K=2, seed=21, dtype="float32"):
    return MoELayer.random(RouterConfig.mixtral(E, K), H, I, seed=seed, std=0.15, activation="relu2", dtype=dtype)


def test_relu2_is_ungated_code_6():
    from moepy.moe.weights import ACTIVATIONS
    assert ACTIVATIONS["relu2"] == 6
    layer = relu2_layer()
    assert not layer.experts.gated


@pytest.mark.parametrize("cpu_isa", available_isas())
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_relu2_float_layer_equals_twin_on_every_isa(cpu_isa, dtype):
    layer = relu2_layer(H=40, I=33, dtype=dtype)
    x = np.random.default_rng(1).standard_normal((67, 40)).astype(np.float32)
    with isa(cpu_isa):
        y, yr = float_twin(layer, x)
    assert np.abs(y - yr).max() <= 2e-5 * np.abs(yr).max()


@pytest.mark.parametrize("cpu_isa", available_isas())
@pytest.mark.parametrize("fmt", INT_FORMATS)
def test_relu2_int_layer_equals_numpy_model_on_every_isa(cpu_isa, fmt):
    layer = relu2_layer(H=64, I=64).quantize(fmt, 32)
    x = np.random.default_rng(2).standard_normal((29, 64)).astype(np.float32)
    with isa(cpu_isa):
        y, model = int_twin(layer, fmt, 32, x)
    assert np.abs(y - model).max() <= 1e-5 * np.abs(model).max()
    assert (y == model).mean() > 0.99


def test_relu2_activation_exact_twin():
    ex = ExpertWeights(up=np.zeros((1, 16, 16), np.float32), down=np.zeros((1, 16, 16), np.float32),
                       activation="relu2")
    g = np.array([-3.0, -0.0, 0.0, 1e-30, 0.5, 2.0, 3e19, np.inf, -np.inf, np.nan], np.float32)
    with np.errstate(over="ignore"):
        v = ref.activate_exact(g, None, ex)
        np.testing.assert_array_equal(v, np.where(g > 0, g * g, np.float32(0)))


def test_relu2_matches_torch():
    torch = pytest.importorskip("torch")
    try:
        from transformers.activations import ACT2FN
        act = ACT2FN["relu2"]
    except Exception:  # transformers missing or without relu2: the definition it uses
        act = lambda t: torch.relu(t) ** 2  # noqa: E731
    H, I, E = 48, 80, 4
    layer = MoELayer.random(RouterConfig.mixtral(E, 1), H, I, seed=5, std=0.2, activation="relu2")
    x = np.random.default_rng(3).standard_normal((33, H)).astype(np.float32)
    y, r = layer(x, return_routing=True)
    ex = layer.experts
    xt = torch.from_numpy(x).double()
    out = torch.zeros_like(xt)
    for t in range(x.shape[0]):
        e = int(r.experts[t, 0])
        up = torch.from_numpy(ex.up[e]).double()
        down = torch.from_numpy(ex.down[e]).double()
        out[t] = float(r.weights[t, 0]) * (act(xt[t] @ up.T) @ down.T)
    np.testing.assert_allclose(y, out.numpy(), rtol=0, atol=2e-6 * float(out.abs().max()))
    # relu2 differs from relu (the layer really squares)
    relu = MoELayer(layer.router, layer.router_weight, ExpertWeights(ex.up, ex.down, activation="relu"))
    assert np.abs(relu(x) - y).max() > 1e-3

"""Quantized experts: formats against the NumPy twin (bit for bit), the INT kernels against a NumPy
model of their arithmetic on every ISA, determinism, the error budget, bad input."""
import numpy as np
import pytest

from moepy import RouterConfig, quant
from moepy import reference as ref
from moepy.moe import MoELayer
from conftest import available_isas, isa, num_threads

FORMATS = ["int8", "int4", "int4_asym", "int4_nl"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("G", [32, 64, 128])
def test_blocks_equal_numpy_twin(fmt, G):
    w = (np.random.default_rng(G).standard_normal((3, 40, 256)) * 0.05).astype(np.float32)
    w[0, 0, :G] = 0.0                       # an all-zero group
    w[1, 3, :G] = np.linspace(-1, 1, G)     # exact ties in rounding
    q = quant.quantize(w, fmt, G)
    u, s, m = ref.quantize_weights(w, fmt, G)
    np.testing.assert_array_equal(q.blocks, ref.pack_blocks(u, s, m, fmt, G))
    np.testing.assert_array_equal(q.dequantize(), ref.dequantize_weights(u, s, m, fmt, G))
    assert q.nbytes == 3 * 3 * (256 // G) * quant.block_bytes(fmt, G)   # N = 40 pads to 3 panels
    np.testing.assert_array_equal(quant.quantize(w[0], fmt, G).dequantize()[0], q.dequantize()[0])


def test_bits_per_weight():
    assert quant.bits_per_weight("int8", 32) == 8.5
    assert quant.bits_per_weight("int4", 32) == 4.5
    assert quant.bits_per_weight("int4_asym", 32) == 5.0
    assert quant.bits_per_weight("int4_nl", 32) == 4.5
    assert quant.bits_per_weight("int4", 128) == 4.125
    w = np.zeros((2, 64, 128), np.float32)
    assert quant.quantize(w, "int4", 32).bits_per_weight == 4.5


def test_activation_quantization_equals_twin():
    from moepy import _ops
    x = np.random.default_rng(0).standard_normal((37, 256)).astype(np.float32) * 3
    x[0, :32] = 0
    x[1, :64] = np.linspace(-1, 1, 64)
    for G in (32, 64, 128):
        for cpu_isa in available_isas():
            with isa(cpu_isa):
                q, s, S = _ops.quantize_rows(x, G)
            rq, rs, rS = ref.quantize_activations(x, G)
            np.testing.assert_array_equal(q, rq)
            np.testing.assert_array_equal(s, rs)
            np.testing.assert_array_equal(S, rS)


def quant_model(layer, fmt, G, x, source=None):
    """The INT layer's output and the twin's on the same routing; the twin quantizes `source`'s float experts
    (default the layer's own dequantized experts: int4_nl's scale search need not give the same codes again)."""
    y, r = layer(x, return_routing=True)
    ex = (source or layer).experts
    qex = {n: ref.quantize_weights(getattr(ex, n), fmt, G) for n in ("up", "down")}
    qex["gate"] = ref.quantize_weights(ex.gate, fmt, G) if ex.gated else None
    return y, ref.moe_layer_forward_quant(x, r.weights, r.experts, r.dropped, qex, ex, fmt, G)


@pytest.mark.parametrize("cpu_isa", available_isas())
@pytest.mark.parametrize("fmt", FORMATS)
def test_int_kernels_equal_numpy_model_on_every_isa(cpu_isa, fmt):
    base = MoELayer.random(RouterConfig.mixtral(8, 2), 128, 96, std=0.1, seed=3)
    relu = MoELayer.random(RouterConfig.switch(8, expert_capacity=6), 64, 64, std=0.1, seed=4, activation="relu")
    x = np.random.default_rng(5).standard_normal((29, 128)).astype(np.float32)
    with isa(cpu_isa):
        for layer, xin, G in [(base, x, 32), (relu, x[:, :64], 64)]:
            y, model = quant_model(layer.quantize(fmt, G), fmt, G, xin, layer)
            scale = np.abs(model).max()
            # the same integers and the same float32 operation order: equal up to rare 1-ulp
            # differences where the activation's exp feeds a rounding boundary
            assert np.abs(y - model).max() <= 1e-5 * scale
            assert (y == model).mean() > 0.99


@pytest.mark.parametrize("fmt", FORMATS)
def test_deterministic_across_threads_and_batches(fmt):
    layer = MoELayer.random(RouterConfig.deepseek_v3(16, 4, n_group=4, topk_group=2), 64, 64, std=0.1, seed=6,
                            shared_intermediate_size=64).quantize(fmt, 32, shared=True)
    x = np.random.default_rng(7).standard_normal((300, 64)).astype(np.float32)
    with num_threads(1):
        a = layer(x)
    with num_threads(2):
        b = layer(x)
        single = np.concatenate([layer(x[i:i + 1]) for i in range(0, 300, 37)])
    assert a.tobytes() == b.tobytes()
    assert single.tobytes() == a[::37].tobytes()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("G", [32, 64, 128])
def test_many_rows_per_expert_bitwise_equal_on_every_isa(fmt, G):
    """16 to 100 rows per expert: the AMX build's tiles take blocks of 32 and 16 rows and VNNI the rest; every ISA,
    every row count and a one-token batch give the same bits."""
    layer = MoELayer.random(RouterConfig.mixtral(4, 2), 256, 128, std=0.1, seed=3).quantize(fmt, G)
    x = np.random.default_rng(5).standard_normal((203, 256)).astype(np.float32)
    outs = []
    for cpu_isa in available_isas():
        with isa(cpu_isa):
            y = layer(x)
            outs.append(y.tobytes())
            for rows in (16, 17, 33, 48):
                assert layer(x[:rows]).tobytes() == y[:rows].tobytes()
    assert len(set(outs)) == 1
    one = np.concatenate([layer(x[i:i + 1]) for i in range(0, 203, 50)])
    assert one.tobytes() == y[::50].tobytes()


def relative_rms(a, b):
    return float(np.sqrt(((a - b) ** 2).mean() / (b ** 2).mean()))


# Measured on Gaussian weights (std 0.02, H 512, I 256), G = 32. Per projection (one matrix, weights
# and activations quantized): INT8 ~0.7%, INT4 ~8.3%, INT4 asym ~7.8%. The SwiGLU layer compounds
# three projections (gate, up, down) and the activation's heavy tails: INT8 ~1.5%, INT4 ~14%.
BUDGET = {"int8": (0.01, 0.02), "int4": (0.09, 0.16), "int4_asym": (0.085, 0.15), "int4_nl": (0.085, 0.15)}  # (projection, layer)


@pytest.mark.parametrize("fmt", FORMATS)
def test_error_budget(fmt):
    H, I, G = 512, 256, 32
    layer = MoELayer.random(RouterConfig.mixtral(8, 2), H, I, std=0.02, seed=8)
    x = np.random.default_rng(9).standard_normal((256, H)).astype(np.float32)
    w = layer.experts.up[0]
    exact = x @ w.T
    u, s, m = ref.quantize_weights(w[None], fmt, G)
    proj = relative_rms(ref.qmatmul(x, u[0], s[0], None if m is None else m[0], fmt, G), exact)
    layer_err = relative_rms(layer.quantize(fmt, G)(x), layer(x))
    print(f"{fmt} G={G}: projection {proj:.4f}, layer {layer_err:.4f}")
    assert proj < BUDGET[fmt][0]
    assert layer_err < BUDGET[fmt][1]


def test_quantized_layer_keeps_router_and_shared_in_float():
    layer = MoELayer.random(RouterConfig.qwen2_moe(8, 2), 64, 32, shared_intermediate_size=64, shared_gate=True,
                            std=0.1, seed=10)
    q = layer.quantize("int4", 32)
    assert q.dtype == "int4" and q.shared_dtype == "float32"
    x = np.random.default_rng(11).standard_normal((20, 64)).astype(np.float32)
    np.testing.assert_array_equal(q.route(x).experts, layer.route(x).experts)
    nb, nb32 = q.nbytes(), layer.nbytes()
    assert nb["shared"] == nb32["shared"] and nb["routed"] < nb32["routed"] / 6
    assert layer.quantize("int8", 32, shared=True).shared_dtype == "int8"


def test_bad_inputs():
    w = np.zeros((2, 16, 64), np.float32)
    with pytest.raises(ValueError, match="group_size 128 must divide the input dimension 64"):
        quant.quantize(w, "int8", 128)
    with pytest.raises(ValueError, match="group_size 32 must divide the input dimension 33"):
        quant.quantize(np.zeros((16, 33), np.float32), "int4", 32)
    with pytest.raises(ValueError, match="group_size must be one of"):
        quant.quantize(w, "int4", 48)
    with pytest.raises(ValueError, match="format must be one of"):
        quant.quantize(w, "int3", 32)
    with pytest.raises(TypeError, match="weights must hold floating-point"):  # float64 converts: test_inputs.py
        quant.quantize(w.astype(np.bool_), "int8", 32)
    bad = w.copy()
    bad[1, 2, 5] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf at \[1, 2, 5\]"):
        quant.quantize(bad, "int8", 32)
    bad[1, 2, 5] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        quant.quantize(bad, "int4_asym", 32)
    layer = MoELayer.random(RouterConfig.mixtral(4, 2), 64, 48, seed=0)
    with pytest.raises(ValueError, match="expert width I = 48"):
        layer.quantize("int4", 32)
    from moepy import _C
    with pytest.raises(ValueError, match="blocks must hold"):
        _C.dequantize(np.zeros(10, np.uint8), 1, 16, 32, 0, 32)


@pytest.mark.parametrize("kind", ["llama4", "gpt_oss", "switch"])
def test_quantized_special_layers_track_float(kind):
    """Llama 4 (scaled expert inputs), GPT-OSS (biases, clamped GLU) and Switch (ungated ReLU, drops)
    through the INT path stay within the INT8 budget of their float layer."""
    rng = np.random.default_rng(12)
    H, I = 64, 64
    if kind == "llama4":
        layer = MoELayer.random(RouterConfig.llama4(8, 1), H, I, std=0.1, seed=13, shared_intermediate_size=I,
                                scale_input=True)
    elif kind == "gpt_oss":
        base = MoELayer.random(RouterConfig.gpt_oss(8, 2), H, I, std=0.1, seed=14, activation="gpt_oss")
        ex = base.experts
        ex.gate_bias = (rng.standard_normal((8, I)) * 0.1).astype(np.float32)
        ex.up_bias = (rng.standard_normal((8, I)) * 0.1).astype(np.float32)
        ex.down_bias = (rng.standard_normal((8, H)) * 0.1).astype(np.float32)
        layer = MoELayer(base.router, base.router_weight, ex, router_bias=np.zeros(8, np.float32))
    else:
        layer = MoELayer.random(RouterConfig.switch(8, expert_capacity=5), H, I, std=0.1, seed=15, activation="relu")
    x = rng.standard_normal((40, H)).astype(np.float32)
    y = layer(x)
    q = layer.quantize("int8", 32)
    yq, r = q(x, return_routing=True)
    np.testing.assert_array_equal(r.experts, layer.last_routing.experts)
    assert relative_rms(yq, y) < 0.02


@pytest.mark.parametrize("fmt", FORMATS)
def test_int_linear_equals_its_twin_on_every_isa(fmt):
    """moe_linear on INT blocks (the dense projections of quantize_projections) == reference.quant.qmatmul, bitwise,
    for every ISA and thread count; rows independent of the batch."""
    from moepy.nn.layers import Linear
    from moepy.reference.quant import qmatmul, quantize_weights
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((96, 64)) * 0.1).astype(np.float32)
    x = rng.standard_normal((37, 64)).astype(np.float32)
    lin = Linear(w).quantized(fmt, 32)
    u, s16, m16 = quantize_weights(w[None], fmt, 32)
    want = qmatmul(x, u[0], s16[0], None if m16 is None else m16[0], fmt, 32)
    for name in available_isas():
        with isa(name):
            for n in (1, 2):
                with num_threads(n):
                    got = lin(x)
                    assert np.array_equal(got, want), (name, n)
                    assert np.array_equal(lin(x[:3]), want[:3])
    from moepy.reference.quant import dequantize_weights
    assert np.array_equal(lin.weight, dequantize_weights(u, s16, m16, fmt, 32)[0])
    assert Linear(w[:80]).quantized(fmt, 32).dtype == "float32"  # 32 does not divide 80: left as it is

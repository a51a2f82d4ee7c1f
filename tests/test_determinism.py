"""Activations and reproducibility of the kernels: relu2 (Nemotron-H) against its NumPy twin and torch
on every ISA and dtype."""
import numpy as np
import pytest

import moepy
from moepy import RouterConfig
from moepy import reference as ref
from moepy.moe import ExpertWeights, MoELayer
from conftest import available_isas, isa

INT_FORMATS = ["int8", "int4", "int4_asym", "int4_nl"]


def float_twin(layer, x):
    """moe_layer_forward of layer (float32 / bf16-rounded weights) on layer's own routing of x."""
    y, r = layer(x, return_routing=True)
    R = layer.to_float32_reference()
    yr = ref.moe_layer_forward(x, r.weights, r.experts, r.dropped, R["experts"], R["shared"], None,
                               R["scale_input"])
    return y, yr


def int_twin(layer, fmt, G, x, source=None):
    """The INT layer's output and the twin's on its routing, the twin quantizing `source`'s float experts (default
    the layer's dequantized ones, which int4_nl's scale search need not map back to the same codes)."""
    y, r = layer(x, return_routing=True)
    ex = (source or layer).experts
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
    source = relu2_layer(H=64, I=64)
    layer = source.quantize(fmt, 32)
    x = np.random.default_rng(2).standard_normal((29, 64)).astype(np.float32)
    with isa(cpu_isa):
        y, model = int_twin(layer, fmt, 32, x, source)
    assert np.abs(y - model).max() <= 1e-5 * np.abs(model).max()
    assert (y == model).mean() > 0.99


def test_relu2_activation_exact_twin():
    ex = ExpertWeights(up=np.zeros((1, 16, 16), np.float32), down=np.zeros((1, 16, 16), np.float32),
                       activation="relu2")
    g = np.array([-3.0, -0.0, 0.0, 1e-30, 0.5, 2.0, 3e19, np.inf, -np.inf, np.nan], np.float32)
    with np.errstate(over="ignore"):
        v = ref.activate_exact(g, None, ex)
        np.testing.assert_array_equal(v, np.where(g < 0, np.float32(0), g * g))  # NaN stays NaN


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


# ------------------------------------------------------------------ scalar == avx2 == avx512, bitwise
# Every float result is computed with the same operations in the same order on every ISA (the scalar
# build mirrors the vector lane structure and uses fmaf where the vector code fuses), so a result
# computed on any machine equals the others bit for bit.
ISAS = available_isas()
needs_two = pytest.mark.skipif(len(ISAS) < 2, reason="this CPU runs one ISA only")


def on_every_isa(fn):
    """fn() on every ISA this CPU has; asserts the outputs (arrays or tuples of arrays) bitwise equal."""
    outs = {}
    for name in ISAS:
        with isa(name):
            o = fn()
        outs[name] = [np.asarray(a) for a in (o if isinstance(o, tuple) else (o,))]
    first = ISAS[0]
    for name in ISAS[1:]:
        for i, (a, b) in enumerate(zip(outs[first], outs[name])):
            assert a.dtype == b.dtype and a.shape == b.shape
            if a.tobytes() != b.tobytes():
                d = np.abs(a.astype(np.float64) - b.astype(np.float64))
                raise AssertionError(f"output {i}: {first} != {name} at {int((a != b).sum())} of {a.size} "
                                     f"(max abs diff {d.max():.3g})")
    return outs[first]


def _w(rng, *shape, std=0.15):
    return (rng.standard_normal(shape) * std).astype(np.float32)


def gpt_oss_layer(H, I, E=8, seed=0):
    rng = np.random.default_rng(seed)
    ex = ExpertWeights(up=_w(rng, E, I, H), down=_w(rng, E, H, I), gate=_w(rng, E, I, H),
                       gate_bias=_w(rng, E, I), up_bias=_w(rng, E, I), down_bias=_w(rng, E, H),
                       activation="gpt_oss", alpha=1.702, limit=7.0)
    return MoELayer(RouterConfig.gpt_oss(E, 2), _w(rng, E, H, std=1 / np.sqrt(H)), ex,
                    router_bias=_w(rng, E, std=0.1))


def ungated_gelu_layer(H, I, E=8, seed=0):
    rng = np.random.default_rng(seed)
    ex = ExpertWeights(up=_w(rng, E, I, H), down=_w(rng, E, H, I), up_bias=_w(rng, E, I), activation="gelu")
    return MoELayer(RouterConfig.switch(E, expert_capacity=None), _w(rng, E, H, std=1 / np.sqrt(H)), ex)


# name -> (constructor kwargs for MoELayer.random, or a function of (H, I))
KINDS = {
    "silu": dict(router=RouterConfig.mixtral(8, 2)),
    "gelu": dict(router=RouterConfig.olmoe(8, 2), activation="gelu"),
    "gelu_tanh": dict(router=RouterConfig.olmoe(8, 2), activation="gelu_tanh"),
    "relu": dict(router=RouterConfig.switch(8, expert_capacity=None), activation="relu"),
    "relu2": dict(router=RouterConfig.mixtral(8, 2), activation="relu2"),
    "gpt_oss": gpt_oss_layer,
    "gelu_ungated": ungated_gelu_layer,
    "deepseek_v3_shared": dict(router=RouterConfig.deepseek_v3(16, 4, n_group=4, topk_group=2),
                               shared_intermediate_size=48, selection_bias=True),
    "qwen2_shared_gate": dict(router=RouterConfig.qwen2_moe(12, 4), shared_intermediate_size=40, shared_gate=True),
    "llama4_scale_input": dict(router=RouterConfig.llama4(8, 1), shared_intermediate_size=40, scale_input=True),
}


def make_layer(kind, H, I, dtype, seed=0):
    spec = KINDS[kind]
    if callable(spec):
        base = spec(H, I, seed=seed)
    else:
        kw = dict(spec)
        if "shared_intermediate_size" in kw:  # INT: a multiple of the group; float: an odd width
            kw["shared_intermediate_size"] = 64 if dtype in INT_FORMATS else I + 7
        base = MoELayer.random(kw.pop("router"), H, I, seed=seed, std=0.15, **kw)
    if dtype in INT_FORMATS:
        return base.quantize(dtype, 32, shared=True)
    if dtype == "bfloat16":
        return MoELayer(base.router, base.router_weight, base.experts, shared=base.shared,
                        shared_gate_weight=base.shared_gate_weight, router_bias=base.router_bias,
                        selection_bias=base.selection_bias, scale_input=base.scale_input, dtype="bfloat16")
    return base


@needs_two
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"] + INT_FORMATS)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_layer_bitwise_equal_on_every_isa(kind, dtype):
    # float: odd H and I (not multiples of 16); INT: multiples of the group (32) but not of 64
    shapes = [(40, 33), (23, 70)] if dtype in ("float32", "bfloat16") else [(96, 32)]
    for H, I in shapes:
        layer = make_layer(kind, H, I, dtype)
        rng = np.random.default_rng(H * 1000 + I)
        for T in (1, 3, 67):
            x = rng.standard_normal((T, H)).astype(np.float32)
            on_every_isa(lambda: layer(x, return_routing=True)[:1] + tuple(
                getattr(layer.last_routing, n) for n in ("weights", "experts", "scores")))


@needs_two
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int4"])
@pytest.mark.parametrize("kind", ["silu", "gpt_oss", "gelu", "gelu_tanh", "gelu_ungated"])
def test_activation_edges_bitwise_equal_on_every_isa(kind, dtype):
    # the AVX-512 SwiGLU / GPT-OSS / GELU activations run 16 lanes at a time: inputs scaled so that pre-activations pass
    # GPT-OSS's limit and the exponential's overflow / underflow bounds (|a| > 88, > 104)
    layer = make_layer(kind, 96, 64, dtype)
    rng = np.random.default_rng(5)
    for scale in (1.0, 30.0, 3000.0):
        x = (rng.standard_normal((19, 96)) * scale).astype(np.float32)
        on_every_isa(lambda: layer(x))


@needs_two
@pytest.mark.parametrize("H, N", [(1, 1), (7, 5), (40, 33), (64, 16), (129, 160), (1000, 3)])
def test_router_linear_bitwise_equal_on_every_isa(H, N):
    from moepy import _ops
    from moepy.moe.weights import pack_linear
    rng = np.random.default_rng(H + N)
    w = pack_linear(rng.standard_normal((N, H)).astype(np.float32))
    for T in (1, 3, 67):
        x = rng.standard_normal((T, H)).astype(np.float32)
        on_every_isa(lambda: _ops.linear(x, w))


ROUTERS = {
    "softmax_e8": RouterConfig.mixtral(8, 2),
    "softmax_e16_k4": RouterConfig(top_k=4, num_experts=16),
    "softmax_e24_norm": RouterConfig(top_k=3, normalize=True, num_experts=24),
    "softmax_e60": RouterConfig.qwen2_moe(60, 4),
    "softmax_e64_norm": RouterConfig.olmoe(64, 8, norm_topk_prob=True),
    "softmax_e128": RouterConfig.qwen3_moe(128, 8),
    "softmax_norm_p2": RouterConfig(top_k=4, normalize=True, norm_p=2.0, num_experts=16),
    "softmax_k20": RouterConfig(top_k=20, num_experts=40),
    "sigmoid_e8": RouterConfig(top_k=2, scoring="sigmoid", normalize=True, num_experts=8),
    "sigmoid_e48_scale": RouterConfig(top_k=6, scoring="sigmoid", normalize=True, scale=2.5, num_experts=48),
    "topk_before_score": RouterConfig.gpt_oss(32, 4),
    "topk_before_sigmoid": RouterConfig.llama4(16, 1),
    "groups_v3": RouterConfig.deepseek_v3(64, 8, n_group=4, topk_group=2),
    "groups_v3_256": RouterConfig.deepseek_v3(256, 8, n_group=8, topk_group=4),
    "groups_v2": RouterConfig.deepseek_v2(160, 6, n_group=8, topk_group=3),
    "groups_odd": RouterConfig.deepseek_v3(24, 4, n_group=3, topk_group=2),
    "groups_g32": RouterConfig(top_k=8, scoring="sigmoid", normalize=True, n_group=32, topk_group=4,
                               group_score="top2_sum", num_experts=512),
    "groups_tg20": RouterConfig(top_k=20, n_group=24, topk_group=20, group_score="max", num_experts=384),
}


@needs_two
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_router_bitwise_equal_on_every_isa(name, bias):
    from moepy import route
    cfg = ROUTERS[name]
    E = cfg.num_experts
    rng = np.random.default_rng(E)
    b = (rng.standard_normal(E) * 0.1).astype(np.float32) if bias else None
    for T in (1, 3, 17, 67):
        x = (rng.standard_normal((T, E)) * 3).astype(np.float32)
        if T == 67:  # rows with infinities and large values take the special paths
            x[5, 2] = np.inf
            x[6, :] = -np.inf
            x[7, 1] = -np.inf
            x[8, 3] = 80.0
            x[9, :] *= 30
        def run():
            r = route(x, cfg, b)
            return r.weights, r.experts, r.scores
        on_every_isa(run)


@needs_two
def test_scoring_functions_bitwise_equal_on_every_isa():
    from moepy import _ops
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.standard_normal(5000) * 30, [0.0, -0.0, 88.0, 89.0, -103.0, -105.0, 1e-30,
                                                          np.inf, -np.inf]]).astype(np.float32)
    for E in (1, 5, 8, 16, 31, 32, 33, 64, 100):
        logits = np.ascontiguousarray(x[: (len(x) // E) * E].reshape(-1, E)[:40])
        on_every_isa(lambda: (_ops.topk(logits, min(E, 3))))
        on_every_isa(lambda: moepy.route(logits, RouterConfig(top_k=1)).scores)
        on_every_isa(lambda: moepy.route(logits, RouterConfig(top_k=1, scoring="sigmoid")).scores)


# ------------------------------------------------------------------ non-finite input of INT layers
@pytest.mark.parametrize("cpu_isa", available_isas())
@pytest.mark.parametrize("fmt", INT_FORMATS)
def test_int_layer_propagates_inf_and_nan_like_float(cpu_isa, fmt):
    from moepy import _ops
    for kind in ("silu", "relu", "deepseek_v3_shared"):
        base = make_layer(kind, 64, 64, "float32", seed=3)
        layer = make_layer(kind, 64, 64, fmt, seed=3)
        clean = np.random.default_rng(4).standard_normal((5, 64)).astype(np.float32)
        with isa(cpu_isa), np.errstate(all="ignore"):
            y_clean = layer(clean)
            r = layer.route(clean)
            for val in (np.inf, -np.inf):
                x = clean.copy()
                x[2, 7] = val
                with pytest.raises(ValueError, match="x holds NaN or inf in token row 2"):
                    layer(x)  # the layer refuses it; the kernels below propagate it as float does
                yf = _ops.moe_forward(x, r.weights, r.experts, r.dropped, base._routed, base._shared, None,
                                      base.scale_input)
                y = _ops.moe_forward(x, r.weights, r.experts, r.dropped, layer._routed, layer._shared, None,
                                     layer.scale_input)
                assert not np.isfinite(yf[2]).any()  # the float kernels: NaN (inf - inf somewhere)
                assert np.isnan(y[2]).all(), (kind, val, y[2])
                others = [0, 1, 3, 4]
                assert y[others].tobytes() == y_clean[others].tobytes()
            # NaN: the same, straight through the kernels
            x = clean.copy()
            x[1, 0] = np.nan
            y = _ops.moe_forward(x, r.weights, r.experts, r.dropped, layer._routed, layer._shared, None,
                                 layer.scale_input)
            assert np.isnan(y[1]).all()
            others = [0, 2, 3, 4]
            assert y[others].tobytes() == y_clean[others].tobytes()


def test_activation_quantization_of_non_finite_groups_equals_twin():
    from moepy import _ops
    x = np.random.default_rng(8).standard_normal((4, 96)).astype(np.float32)
    x[0, 3], x[1, 40], x[2, 95], x[3, 0] = np.nan, np.inf, -np.inf, 3e38
    for G in (32,):
        q, s, S = _ops.quantize_rows(x, G)
        rq, rs, rS = ref.quantize_activations(x, G)
        np.testing.assert_array_equal(q, rq)
        np.testing.assert_array_equal(s, rs)  # NaN where the group is not finite
        np.testing.assert_array_equal(S, rS)
        assert np.isnan(s[:3]).sum() == 3 and not np.isnan(s[3]).any()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("kind", ["relu", "relu2", "gpt_oss", "silu"])
def test_nan_reaching_the_experts_stays_nan(kind, dtype):
    """relu, relu2 and the GPT-OSS clamp keep NaN (as torch.relu / torch.clamp), so a NaN input row of
    the experts gives a NaN output row on every path."""
    from moepy import _ops
    layer = make_layer(kind, 64, 64, dtype, seed=5)
    x = np.random.default_rng(6).standard_normal((3, 64)).astype(np.float32)
    r = layer.route(x)
    x[1, 9] = np.nan
    y = _ops.moe_forward(x, r.weights, r.experts, r.dropped, layer._routed, layer._shared, None, layer.scale_input)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()


# ------------------------------------------------------------------ switching the ISA under running threads
@needs_two
def test_set_isa_while_other_threads_run_layers():
    """One thread flips the ISA in a loop while others run layers (the kernels run without the GIL):
    every call uses one table from entry to exit, and all tables compute the same bits."""
    import threading
    import time
    layers = [make_layer("deepseek_v3_shared", 48, 40, "float32"), make_layer("silu", 64, 64, "int4"),
              make_layer("gpt_oss", 40, 33, "bfloat16")]
    xs = [np.random.default_rng(i).standard_normal((37, L.hidden_size)).astype(np.float32)
          for i, L in enumerate(layers)]
    logits = np.random.default_rng(7).standard_normal((300, 64)).astype(np.float32)
    cfg = RouterConfig.deepseek_v3(64, 8, n_group=4, topk_group=2)
    want = [L(x).tobytes() for L, x in zip(layers, xs)]
    want_route = moepy.route(logits, cfg).weights.tobytes()
    stop = threading.Event()
    errors, calls = [], [0]
    old = moepy.build_info()["isa"]

    def flip():
        i = 0
        while not stop.is_set():
            moepy.set_isa(ISAS[i % len(ISAS)])
            i += 1

    def work():
        try:
            while not stop.is_set():
                for L, x, w in zip(layers, xs, want):
                    if L(x).tobytes() != w:
                        errors.append("layer output changed")
                if moepy.route(logits, cfg).weights.tobytes() != want_route:
                    errors.append("routing changed")
                calls[0] += 1
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=flip)] + [threading.Thread(target=work) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        moepy.set_isa(old)
    assert not errors, errors[:3]
    assert calls[0] > 0


def test_moepy_isa_environment_variable_lowers_the_first_table():
    import os
    import subprocess
    import sys
    code = "import moepy; print(moepy.build_info()['isa'])"
    env = dict(os.environ, MOEPY_ISA="scalar")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "scalar"


def test_weight_prefetch_choice_changes_no_result():
    """MOEPY_WEIGHT_PREFETCH (the INT tiles' prefetch hint, chosen by CPU vendor) is reported by build_info and
    changes no bit of an INT linear's or INT layer's output at one token and at many."""
    import os
    import subprocess
    import sys
    code = """
import hashlib, numpy as np, moepy
from moepy import RouterConfig
from moepy.moe import MoELayer
from moepy.nn.layers import Linear
rng = np.random.default_rng(3)
h = hashlib.sha256()
for fmt in ("int8", "int4", "int4_nl"):
    lin = Linear(rng.standard_normal((320, 256), dtype=np.float32)).quantized(fmt, 32)
    layer = MoELayer.random(RouterConfig.mixtral(8, 2), 256, 192, seed=1).quantize(fmt, 32)
    for T in (1, 37):
        x = rng.standard_normal((T, 256), dtype=np.float32)
        h.update(lin(x).tobytes())
        h.update(layer(x).tobytes())
print(moepy.build_info()["weight_prefetch"], h.hexdigest())
"""
    outs = {}
    for hint in ("nta", "l2"):
        env = dict(os.environ, MOEPY_WEIGHT_PREFETCH=hint)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        reported, digest = out.stdout.split()
        assert reported == hint
        outs[hint] = digest
    assert outs["nta"] == outs["l2"]


@pytest.mark.parametrize("act", ["silu", "gelu", "gelu_tanh", "relu", "relu2", "gpt_oss"])
def test_activation_twins_are_bit_exact(act):
    """activate_exact (NumPy, float32) equals the kernels' activation bit for bit: an INT layer's
    hidden activations are the twin applied to the INT dots, so check through the INT numpy model on
    a layer of that activation (the same integers, the same float32 operations)."""
    gated = act not in ("relu", "relu2")
    rng = np.random.default_rng(11)
    E, H, I = 4, 64, 64
    ex = ExpertWeights(up=_w(rng, E, I, H), down=_w(rng, E, H, I), gate=_w(rng, E, I, H) if gated else None,
                       activation=act)
    layer = MoELayer(RouterConfig.mixtral(E, 2), _w(rng, E, H, std=1 / np.sqrt(H)), ex).quantize("int8", 32)
    x = (rng.standard_normal((40, H)) * 3).astype(np.float32)
    for cpu_isa in ISAS:
        with isa(cpu_isa):
            y, model = int_twin(layer, "int8", 32, x)
        np.testing.assert_array_equal(y, model)


def test_router_linear_fuses_multiply_add_on_every_isa():
    """moe_linear accumulates with fused multiply-adds on every ISA, including the scalar build (whose
    FMA without the instruction rounds a double sum once, and redoes midpoints and subnormals)."""
    from moepy import _ops
    from moepy.moe.weights import pack_linear
    u = np.float32(2.0 ** -23)
    # out = fma(x1, w1, fma(x0, w0, 0)) = fma(1 - u, (1 + u) 2^-24, 1 + u): exactly below the midpoint
    # of 1 + u and 1 + 2u, so 1 + u; a separate multiply, or rounding the double sum twice, gives 1 + 2u
    x = np.array([[1, 1 - u]], np.float32)
    w = pack_linear(np.array([[1 + u, (1 + u) * np.float32(2.0 ** -24)]], np.float32))
    rng = np.random.default_rng(12)
    tiny_x = (rng.standard_normal((67, 40)) * 2.0 ** -70).astype(np.float32)  # subnormal products and sums
    tiny_w = pack_linear((rng.standard_normal((33, 40)) * 2.0 ** -70).astype(np.float32))
    mids_x = (rng.integers(-2 ** 12, 2 ** 12, (67, 40)) * 2.0 ** -12).astype(np.float32)  # exact ties
    mids_w = pack_linear((rng.integers(-2 ** 12, 2 ** 12, (33, 40)) * 2.0 ** -13).astype(np.float32))
    for name in ISAS:
        with isa(name):
            assert _ops.linear(x, w)[0, 0] == 1 + u, name
    on_every_isa(lambda: _ops.linear(tiny_x, tiny_w))
    on_every_isa(lambda: _ops.linear(mids_x, mids_w))

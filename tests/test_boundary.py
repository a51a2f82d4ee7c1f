"""The C/Python boundary: constants from _C, PackedExperts, route params, the dispatch pieces, and the
regression tests of the hardening findings (issue 8), one test (or a few) per finding."""
import pathlib
import pickle
import threading

import numpy as np
import pytest

import moepy
from moepy import _C, _ops
from moepy import reference as ref
from moepy.moe import ExpertWeights, MoELayer, quant
from moepy.moe import weights as weights_mod
from moepy.routing import RouterConfig, expert_choice

REPO = pathlib.Path(__file__).resolve().parents[1]


def small_layer(dtype="float32", shared=False, bias=False, scale_input=False, E=8, K=2, H=64, I=64, seed=0,
                activation="silu"):
    router = RouterConfig.llama4(E, K) if scale_input else RouterConfig.mixtral(E, K)
    layer = MoELayer.random(router, H, I, seed=seed, shared_intermediate_size=32 if shared else 0,
                            shared_gate=shared, dtype="float32", scale_input=scale_input, activation=activation)
    if bias:
        rng = np.random.default_rng(seed + 1)
        ex = layer.experts
        ex = ExpertWeights(ex.up, ex.down, ex.gate, (rng.standard_normal((E, I)) * 0.1).astype(np.float32),
                           (rng.standard_normal((E, I)) * 0.1).astype(np.float32),
                           (rng.standard_normal((E, H)) * 0.1).astype(np.float32), ex.activation)
        layer = MoELayer(layer.router, layer.router_weight, ex, shared=layer.shared,
                         shared_gate_weight=layer.shared_gate_weight, scale_input=scale_input)
    if dtype != "float32":
        layer = layer.quantize(dtype) if dtype in quant.FORMATS else MoELayer(
            layer.router, layer.router_weight, layer.experts, shared=layer.shared,
            shared_gate_weight=layer.shared_gate_weight, scale_input=scale_input, dtype=dtype)
    return layer


def xs(T=16, H=64, seed=3):
    return np.random.default_rng(seed).standard_normal((T, H)).astype(np.float32)


# ---------------------------------------------------------------- task 1: constants come from _C
def test_constants_come_from_the_extension():
    assert _ops.ACTIVATIONS == _C.ACTIVATIONS and _ops.ACTIVATIONS["none"] == 5
    assert _ops.DTYPES == {"float32": 0, "bfloat16": 1, "int8": 2, "int4": 3, "int4_asym": 4, "int4_nl": 5}
    assert weights_mod.PANEL == _ops.PANEL == _C.PANEL == 16
    assert weights_mod.ACTIVATIONS["swiglu"] == _C.ACTIVATIONS["silu"]
    assert quant.FORMATS == _C.QFORMATS
    assert quant.DTYPE_CODES == {f: _C.DTYPES[f] for f in quant.FORMATS}
    for (fmt, G), n in _C.QBLOCK_BYTES.items():
        assert quant.block_bytes(fmt, G) == n == _C.QBLOCK_HEADER_BYTES[fmt] + (16 if fmt == "int8" else 8) * G
    assert _ops.packed_out_elems(2, 20, 40) == 2 * 32 * 48
    assert not hasattr(RouterConfig.mixtral(), "c_params") and not hasattr(RouterConfig.mixtral(), "c_params_tuple")


# ---------------------------------------------------------------- task 2: PackedExperts
def test_packed_experts_are_named_and_read_by_name():
    layer = small_layer(shared=True)
    p = layer._routed
    assert isinstance(p, _ops.PackedExperts)
    assert (p.E, p.H, p.I, p.gated, p.dtype_name) == (8, 64, 64, 1, "float32")
    assert layer.nbytes()["routed"] == p.w_in.nbytes + p.w_out.nbytes == p.nbytes
    q = small_layer("int4")._routed
    assert q.dtype == _ops.DTYPES["int4"] and q.group == 32 and q.w_in.dtype == np.uint8
    x = xs()
    r = layer.route(x)
    with pytest.raises(TypeError, match="PackedExperts"):
        _ops.moe_forward(x, r.weights, r.experts, None, tuple(p), None, None, False)
    with pytest.raises(TypeError, match="routed.gated must be an int"):
        _ops.moe_forward(x, r.weights, r.experts, None, p._replace(gated=1.5), None, None, False)
    assert pickle.loads(pickle.dumps(p)).E == 8
    with pytest.raises(ValueError, match="routed.activation = 9 is not a kernel activation"):
        _ops.moe_forward(x, r.weights, r.experts, None, p._replace(activation=9), None, None, False)
    with pytest.raises(ValueError, match="for gated experts"):
        _ops.moe_forward(x, r.weights, r.experts, None, p._replace(activation=_ops.ACTIVATIONS["none"]), None, None,
                         False)


# ---------------------------------------------------------------- task 3: router params packed in _ops only
def test_route_params_are_packed_and_cached_in_ops():
    cfg = RouterConfig.llama4(16, 1)
    assert cfg.topk_before_score and _ops.route_params(cfg) is _ops.route_params(cfg)  # packed once per config
    assert _ops.route_params(cfg) == _ops.route_params(RouterConfig.llama4(16, 1))
    assert len(_ops.route_params(cfg)) == _C.ROUTE_PARAMS_BYTES
    logits = xs(9, 16)
    w, e, s = ref.route(logits, cfg)
    r = moepy.route(logits, cfg)
    np.testing.assert_array_equal(r.experts, e)
    np.testing.assert_allclose(r.weights, w, rtol=1e-6)


# ---------------------------------------------------------------- hardening: the race on expert ids
def test_mutating_expert_ids_from_another_thread_never_crashes():
    layer = small_layer()
    E = layer.num_experts
    x = xs(256)
    r = layer.route(x)
    experts = r.experts.copy()
    weights = np.ascontiguousarray(r.weights)
    stop = threading.Event()

    def mutate():
        bad = np.full_like(experts, 10**6)
        good = r.experts.copy()
        while not stop.is_set():
            experts[...] = bad
            experts[...] = good

    t = threading.Thread(target=mutate)
    t.start()
    try:
        for _ in range(300):
            for call in (lambda: _ops.moe_forward(x, weights, experts, None, layer._routed, None, None, False),
                         lambda: _ops.dispatch_plan(experts, None, E),
                         lambda: _ops.apply_capacity(weights.copy(), experts, E, 4),
                         lambda: _ops.expert_load(experts, None, None, E)):
                try:
                    call()
                except ValueError as exc:
                    assert "out of range" in str(exc) or "twice" in str(exc)
    finally:
        stop.set()
        t.join()


def test_mutating_a_large_routing_during_plan_and_capacity_never_crashes():
    """The window between validation and use grows with T: 65536 tokens crashed the old build (segfault in
    the plan's scatter or the capacity pass) about one run in two."""
    T, K, E = 1 << 16, 2, 8
    rng = np.random.default_rng(0)
    good = np.stack([rng.permutation(E)[:K] for _ in range(64)] * (T // 64)).astype(np.int32)
    experts, bad = good.copy(), np.full_like(good, 10**6)
    weights = np.full((T, K), 0.5, np.float32)
    stop = threading.Event()

    def mutate():
        while not stop.is_set():
            experts[...] = bad
            experts[...] = good

    t = threading.Thread(target=mutate)
    t.start()
    try:
        for _ in range(100):
            for call in (lambda: _ops.dispatch_plan(experts, None, E),
                         lambda: _ops.apply_capacity(weights.copy(), experts, E, 4)):
                try:
                    call()
                except ValueError as exc:
                    assert "out of range" in str(exc)
    finally:
        stop.set()
        t.join()


# ---------------------------------------------------------------- hardening: byte order
def test_big_endian_inputs_are_converted_everywhere():
    cfg = RouterConfig.mixtral(16, 2)
    logits = xs(10, 16)
    be = logits.astype(">f4")
    want = moepy.route(logits, cfg)
    for got in (moepy.route(be, cfg), moepy.route(be.tolist(), cfg)):
        np.testing.assert_array_equal(got.experts, want.experts)
        np.testing.assert_array_equal(got.weights, want.weights)
    w, e, _ = _C.route(be, None, _ops.route_params(cfg))
    np.testing.assert_array_equal(e, want.experts)
    v, i = _ops.topk(be, 3)
    np.testing.assert_array_equal(i, ref.topk(logits, 3)[1])
    layer = small_layer()
    x = xs()
    np.testing.assert_array_equal(layer(x.astype(">f4")), layer(x))
    r = layer.route(x)
    np.testing.assert_array_equal(
        _ops.moe_forward(x.astype(">f4"), r.weights.astype(">f4"), r.experts.astype(">i4"), None, layer._routed, None,
                         None, False), layer(x))
    np.testing.assert_array_equal(quant.quantize(layer.experts.up.astype(">f4")).blocks,
                                  quant.quantize(layer.experts.up).blocks)


def test_big_endian_bf16_bits_are_bits_not_integers():
    layer = small_layer()
    ex = layer.experts
    bits = [weights_mod.to_bf16_bits(w) for w in (ex.up, ex.down, ex.gate)]
    native = ExpertWeights(*bits)
    swapped = ExpertWeights(*[b.astype(">u2") for b in bits])
    np.testing.assert_array_equal(weights_mod.to_bf16_bits(bits[0].astype(">u2")), bits[0])
    a = MoELayer(layer.router, layer.router_weight, native, dtype="bfloat16")
    b = MoELayer(layer.router, layer.router_weight, swapped, dtype="bfloat16")
    x = xs()
    np.testing.assert_array_equal(a(x), b(x))
    np.testing.assert_array_equal(native.as_float32().up, swapped.as_float32().up)


# ---------------------------------------------------------------- hardening: out= views
def test_non_contiguous_out_is_filled():
    layer = small_layer()
    x = xs()
    want = layer(x)
    big = np.zeros((16, 128), np.float32)
    view = big[:, ::2]
    y = layer(x, out=view)
    assert y is view
    np.testing.assert_array_equal(view, want)
    assert (big[:, 1::2] == 0).all()
    flat = np.zeros((16, 64), np.float32)
    assert layer(x, out=flat) is flat and np.array_equal(flat, want)
    with pytest.raises(ValueError, match="shape of x"):
        layer(x, out=np.zeros((16, 63), np.float32))
    with pytest.raises(TypeError, match="float32"):
        layer(x, out=np.zeros((16, 64)))


# ---------------------------------------------------------------- hardening: duplicates and overlaps
def test_duplicate_expert_ids_are_errors():
    layer = small_layer()
    x = xs(4)
    w = np.full((4, 2), 0.5, np.float32)
    dup = np.array([[1, 2], [3, 3], [0, 1], [4, 5]], np.int32)
    with pytest.raises(ValueError, match="row 1 holds expert 3 twice"):
        _ops.moe_forward(x, w, dup, None, layer._routed, None, None, False)
    with pytest.raises(ValueError, match="twice"):
        layer.run_experts(x, w, dup)
    with pytest.raises(ValueError, match="twice"):
        _ops.combine(np.zeros((8, 64), np.float32), np.arange(8), dup, w)
    wide = small_layer(E=32)  # rows wider than 16 slots take the per-expert stamp path
    wide_ids = np.stack([np.random.default_rng(i).permutation(32)[:20] for i in range(4)]).astype(np.int32)
    ww = np.ones((4, 20), np.float32)
    _ops.moe_forward(x, ww, wide_ids, None, wide._routed, None, None, False)
    wide_ids[2, 17] = wide_ids[2, 3]
    with pytest.raises(ValueError, match=f"row 2 holds expert {wide_ids[2, 3]} twice \\(slots 3 and 17\\)"):
        _ops.moe_forward(x, ww, wide_ids, None, wide._routed, None, None, False)


def test_buffers_overlapping_packed_weights_or_inputs_are_errors():
    layer = small_layer()
    x = xs(4)
    r = layer.route(x)
    p = layer._routed
    w_in_bytes = p.w_in.view(np.uint8)
    need = _ops.forward_workspace(4, 2, p, None, False)
    args = (x, r.weights, r.experts, None, p, None, None, False)
    with pytest.raises(ValueError, match="packed weights"):
        _ops.moe_forward(*args, work=w_in_bytes[:max(need, 1)] if w_in_bytes.size >= need else w_in_bytes)
    with pytest.raises(ValueError, match="overlaps"):
        _ops.moe_forward(*args, out=p.w_out[:4 * 64].reshape(4, 64))
    big = np.zeros(need // 4 + 4 * 64, np.float32)
    x_in_big = big[:4 * 64].reshape(4, 64)
    x_in_big[...] = x
    with pytest.raises(ValueError, match="overlaps"):  # work covering the input x
        _ops.moe_forward(x_in_big, r.weights, r.experts, None, p, None, None, False, work=big.view(np.uint8))
    before = p.w_in.copy()
    layer(x)
    np.testing.assert_array_equal(p.w_in, before)


def test_pack_into_a_callers_buffer_per_expert():
    """pack(..., out=) writes one expert's panels into its slice of a layer's buffer: the same bytes as packing the
    whole stack; a wrong size, dtype, layout, a read-only or an overlapping out is an error, never a write."""
    rng = np.random.default_rng(0)
    E, I, H = 3, 20, 40
    gate, up = (rng.standard_normal((E, I, H)).astype(np.float32) for _ in range(2))
    down = rng.standard_normal((E, H, I)).astype(np.float32)
    whole_in, whole_out = _ops.pack(0, gate, up), _ops.pack(1, down)
    n_in, n_out = whole_in.size // E, whole_out.size // E
    buf_in, buf_out = np.full(whole_in.size, np.nan, np.float32), np.full(whole_out.size, np.nan, np.float32)
    for e in range(E):
        r = _ops.pack(0, gate[e:e + 1], up[e:e + 1], out=buf_in[e * n_in:(e + 1) * n_in])
        assert r.base is buf_in or r is buf_in or np.shares_memory(r, buf_in)
        _ops.pack(1, down[e:e + 1], out=buf_out[e * n_out:(e + 1) * n_out])
    np.testing.assert_array_equal(buf_in, whole_in)
    np.testing.assert_array_equal(buf_out, whole_out)
    bits = gate.view(np.uint32).astype(np.uint16)  # any uint16 bits: bf16 panels are a byte permutation
    b16 = np.zeros(n_in // 2 * 2, np.uint16)
    np.testing.assert_array_equal(_ops.pack(0, bits[:1], out=np.zeros(_ops.pack(0, bits[:1]).size, np.uint16)),
                                  _ops.pack(0, bits[:1]))
    one = np.zeros(n_in, np.float32)
    with pytest.raises(ValueError, match="wrong shape"):
        _ops.pack(0, gate[:1], up[:1], out=one[:-1])
    with pytest.raises(TypeError, match="float32"):
        _ops.pack(0, gate[:1], up[:1], out=one.view(np.uint16))
    with pytest.raises(TypeError, match="uint16"):
        _ops.pack(0, bits[:1], out=b16.view(np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _ops.pack(0, gate[:1], up[:1], out=np.zeros(2 * n_in, np.float32)[::2])
    with pytest.raises(ValueError, match="1-dimensional"):
        _ops.pack(0, gate[:1], up[:1], out=one.reshape(2, -1))
    ro = one.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _ops.pack(0, gate[:1], up[:1], out=ro)
    big = np.zeros(n_in + I * H, np.float32)
    src = big[:I * H].reshape(1, I, H)
    with pytest.raises(ValueError, match="overlaps"):  # out covering the input
        _ops.pack(0, src, out=big[I * H - 1:I * H - 1 + _ops.pack(0, src).size])
    with pytest.raises(ValueError, match="overlaps"):  # out covering w2
        _ops.pack(0, up[:1], src, out=big[:n_in])
    with pytest.raises(TypeError, match="ndarray"):
        _ops.pack(0, gate[:1], out=[0.0] * (n_in // 2))
    np.testing.assert_array_equal(one, 0)


# ---------------------------------------------------------------- hardening: misaligned arrays
def misaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    m = buf[1:].view(a.dtype).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned and m.flags.c_contiguous
    return m


def test_misaligned_contiguous_arrays_are_accepted():
    cfg = RouterConfig.mixtral(16, 2)
    logits = xs(10, 16)
    np.testing.assert_array_equal(moepy.route(misaligned(logits), cfg).experts, moepy.route(logits, cfg).experts)
    layer = small_layer()
    x = xs()
    r = layer.route(x)
    np.testing.assert_array_equal(
        _ops.moe_forward(misaligned(x), misaligned(r.weights), misaligned(r.experts), None, layer._routed, None, None,
                         False), layer(x))
    np.testing.assert_array_equal(_ops.topk(misaligned(logits), 2)[1], _ops.topk(logits, 2)[1])


# ---------------------------------------------------------------- hardening: NaN in biases, bf16 bits, alpha
def test_nan_in_biases_bf16_bits_and_alpha_are_errors():
    E, I, H = 2, 16, 32
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match="down_bias holds NaN"):
        ExpertWeights(z(E, I, H), z(E, H, I), down_bias=np.full((E, H), np.nan, np.float32))
    with pytest.raises(ValueError, match="up_bias holds NaN"):
        ExpertWeights(z(E, I, H), z(E, H, I), up_bias=np.full((E, I), np.inf, np.float32))
    bits = np.zeros((E, I, H), np.uint16)
    bits[1, 2, 3] = 0x7FC0  # bf16 NaN
    with pytest.raises(ValueError, match=r"up holds NaN or inf at \(1, 2, 3\)"):
        ExpertWeights(bits, np.zeros((E, H, I), np.uint16))
    with pytest.raises(ValueError, match="alpha"):
        ExpertWeights(z(E, I, H), z(E, H, I), z(E, I, H), activation="gpt_oss", alpha=float("nan"))
    with pytest.raises(ValueError, match="limit"):
        _ops.pack_experts(z(E, I, H), z(E, H, I), activation="gpt_oss", limit=float("nan"))
    with pytest.raises(ValueError, match="experts.gate_bias holds NaN"):
        _ops.pack_experts(z(E, I, H), z(E, H, I), z(E, I, H), gate_bias=np.full((E, I), np.nan))


# ---------------------------------------------------------------- hardening: fp16 scale overflow
@pytest.mark.parametrize("fmt, value", [("int8", 1e7), ("int4", 1e6), ("int4_asym", -1e5), ("int4_nl", 1e7)])
def test_quantization_out_of_fp16_range_is_an_error(fmt, value):
    w = np.random.default_rng(0).standard_normal((2, 32, 64)).astype(np.float32)
    w[1, 5, 40] = value
    with pytest.raises(ValueError, match=r"weights: the group at \[1, 5, 32:64\] is too large"):
        quant.quantize(w, fmt, 32)
    with pytest.raises(ValueError, match=r"experts.down: the group"):
        _ops.pack_experts(np.zeros((2, 64, 32), np.float32), w, dtype=fmt, activation="relu")
    w[1, 5, 40] = value / 100  # representable: quantizes and round-trips finitely
    assert np.isfinite(quant.quantize(w, fmt, 32).dequantize()).all()


def test_quantization_twin_agrees_on_range():
    w = np.zeros((1, 16, 32), np.float32)
    w[0, 0, 0] = 1e7
    with pytest.raises(ValueError):
        ref.quantize_weights(w, "int8", 32)


# ---------------------------------------------------------------- hardening: exception types
def test_clear_exception_types_at_the_c_entry_points():
    x = xs(4, 8)
    for bad, exc in ((2.7, TypeError), (True, TypeError), ("2", TypeError), (None, TypeError), (0, ValueError),
                     (9, ValueError), (2**64, ValueError)):
        with pytest.raises(exc, match="k must"):
            _ops.topk(x, bad)
    with pytest.raises(ValueError, match="top_k"):
        _ops.route_params(RouterConfig(top_k=2**64))
    with pytest.raises(ValueError, match="top_k"):
        moepy.route(x, RouterConfig(top_k=2**64))
    with pytest.raises(ValueError, match="RouterConfig: top_k"):
        RouterConfig(top_k=True)
    with pytest.raises(ValueError, match="RouterConfig: top_k"):
        RouterConfig(top_k=2.0)
    with pytest.raises(TypeError, match="capacity must be an int"):
        _C.apply_capacity(np.zeros((2, 1), np.float32), np.zeros((2, 1), np.int32), 8, 1.5, 0)
    with pytest.raises(TypeError, match="num_experts must be an int"):
        _ops.dispatch_plan(np.zeros((2, 1), np.int32), None, "8")
    with pytest.raises(ValueError, match="weights must be 3-dimensional"):
        _ops.quantize(np.zeros((4, 32), np.float32), "int8", 32)
    with pytest.raises(ValueError, match="group_size must be"):
        _ops.quantize(np.zeros((1, 4, 32), np.float32), "int8", 48)
    with pytest.raises(TypeError, match="group_size must be an int"):
        _ops.quantize(np.zeros((1, 4, 32), np.float32), "int8", 32.0)
    with pytest.raises(ValueError, match="format must be"):
        _ops.quantize(np.zeros((1, 4, 32), np.float32), "int3", 32)
    with pytest.raises(TypeError, match="n must be an int"):
        _C.set_num_threads(1.5)
    with pytest.raises(ValueError, match="up must be 3-dimensional"):
        ExpertWeights(np.zeros((4, 8), np.float32), np.zeros((1, 8, 4), np.float32))
    with pytest.raises(TypeError, match="logits must be a numpy.ndarray"):
        _C.route([[1.0, 2.0]], None, _ops.route_params(RouterConfig(top_k=1)))


# ---------------------------------------------------------------- hardening: NaN in x named as x
def test_nan_in_x_is_reported_as_x():
    layer = small_layer()
    x = xs(6)
    x[4, 7] = np.nan
    with pytest.raises(ValueError, match="x holds NaN or inf in token row 4"):
        layer(x)
    x3 = xs(6).reshape(2, 3, 64)
    x3[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"token row 5 \(batch 1, position 2\)"):
        layer(x3)


# ---------------------------------------------------------------- hardening: the ASan script
def test_asan_script_has_no_early_exit_pipe():
    text = (REPO / "scripts" / "asan_tests.sh").read_text()
    assert "| grep -q" not in text  # under pipefail, grep -q exiting early SIGPIPEs its writer
    for line in text.splitlines():
        if line.startswith("  TESTS=("):
            for path in line.split("(")[1].rstrip(")").split():
                assert (REPO / path).exists(), path


# ---------------------------------------------------------------- task 5: the dispatch pieces
def pieces_forward(layer, x, routing):
    """moe_forward built from its pieces: plan -> gather -> grouped FFN -> combine."""
    E, K = layer.num_experts, routing.top_k
    counts, offsets, order, position = _ops.dispatch_plan(routing.experts, routing.dropped, E)
    rows = _ops.gather(x, order, K, routing.weights if layer.scale_input else None)
    ys = _ops.grouped_ffn(rows, offsets, layer._routed)
    shared_y = gate = None
    if layer._shared is not None:
        shared_y = _ops.grouped_ffn(x, np.array([0, x.shape[0]], np.int64), layer._shared)
        if layer.shared_gate_weight is not None:
            logit = layer.router_logits(x)[:, E]
            gate = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return _ops.combine(ys, position, routing.experts, routing.weights, layer.scale_input, shared_y, gate)


@pytest.mark.parametrize("kind", ["float32", "bfloat16", "int8", "int4_asym", "shared", "bias", "llama4", "switch"])
def test_pieces_compose_to_moe_forward_bitwise(kind):
    if kind == "switch":
        layer = MoELayer.random(RouterConfig.switch(8, expert_capacity=3), 64, 64, activation="relu", seed=2)
    else:
        layer = small_layer(kind if kind in ("float32", "bfloat16", "int8", "int4_asym") else "float32",
                            shared=kind == "shared", bias=kind == "bias", scale_input=kind == "llama4")
    x = xs(40)
    y, routing = layer(x, return_routing=True)
    if kind == "switch":
        assert routing.dropped.any()
    np.testing.assert_array_equal(pieces_forward(layer, x, routing), y)


def test_pieces_equal_their_numpy_twins():
    layer = small_layer(bias=True)
    x = xs(30)
    r = layer.route(x)
    dropped = np.zeros_like(r.experts, bool)
    dropped[::4, 1] = True
    E, K = layer.num_experts, r.top_k
    plan = _ops.dispatch_plan(r.experts, dropped, E)
    for a, b in zip(plan, ref.dispatch_plan(r.experts, dropped, E)):
        np.testing.assert_array_equal(a, b)
    _, offsets, order, position = plan
    rows = _ops.gather(x, order, K)
    np.testing.assert_array_equal(rows, ref.gather(x, order, K))
    ys = _ops.grouped_ffn(rows, offsets, layer._routed)
    np.testing.assert_allclose(ys, ref.grouped_ffn(rows, offsets, layer.experts), rtol=2e-4, atol=2e-6)
    out = _ops.combine(ys, position, r.experts, r.weights)
    np.testing.assert_allclose(out, ref.combine(ys, position, r.experts, r.weights), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out, ref.moe_layer_forward(x, r.weights, r.experts, dropped, layer.experts),
                               rtol=2e-4, atol=2e-6)
    with pytest.raises(ValueError, match="order holds a slot"):
        _ops.gather(x, np.array([10**6]), K)
    with pytest.raises(ValueError, match="non-decreasing"):
        _ops.grouped_ffn(rows, offsets[::-1].copy(), layer._routed)
    with pytest.raises(ValueError, match="position holds a row"):
        _ops.combine(ys, np.full(position.shape, 10**6), r.experts, r.weights)


def test_run_experts_on_a_callers_routing():
    layer = small_layer(shared=True)
    x = xs(12)
    rng = np.random.default_rng(5)
    experts = np.stack([rng.permutation(8)[:3] for _ in range(12)])  # int64 ids, K = 3 (the router has 2)
    weights = rng.random((12, 3))  # float64 weights are accepted (converted)
    dropped = rng.random((12, 3)) < 0.2
    y = layer.run_experts(x, weights, experts, dropped)
    gate = 1 / (1 + np.exp(-(x.astype(np.float64) @ layer.shared_gate_weight[0].astype(np.float64))))
    want = ref.moe_layer_forward(x, weights.astype(np.float32), experts, dropped, layer.experts, layer.shared,
                                 gate.astype(np.float32))
    np.testing.assert_allclose(y, want, rtol=2e-4, atol=2e-5)
    r = layer.route(x)  # the layer's own routing through run_experts is the layer, bitwise
    np.testing.assert_array_equal(layer.run_experts(x, r.weights, r.experts), layer(x))
    with pytest.raises(ValueError, match="out of range"):
        layer.run_experts(x, weights, np.full((12, 3), 8))
    with pytest.raises(TypeError, match="integer"):
        layer.run_experts(x, weights, experts.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(T, K\)"):
        layer.run_experts(x, weights, experts[:5])


def test_forward_expert_choice_through_the_layer():
    layer = small_layer(E=8, K=2)
    x = xs(24)
    y, ec = layer.forward_expert_choice(x, capacity_factor=2.0, return_routing=True)
    assert ec.capacity == 6
    want = np.zeros((24, 64), np.float64)
    for e in range(8):
        tok = ec.tokens[e]
        want[tok] += ec.gates[e][:, None].astype(np.float64) * ref.expert_ffn(x[tok], layer.experts, e)
    np.testing.assert_allclose(y, want.astype(np.float32), rtol=2e-4, atol=2e-5)
    assert (ec.coverage == 0).any() or (ec.coverage > 2).any()  # 0..E experts per token
    np.testing.assert_array_equal(y[ec.coverage == 0], 0)
    logits = layer.router_logits(x)[:, :8]
    assert np.array_equal(ec.tokens, expert_choice(np.ascontiguousarray(logits), capacity_factor=2.0).tokens)

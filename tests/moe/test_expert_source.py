"""ExpertSource: experts packed (or quantized) one at a time from their source tensors give the very bytes of
packing the stacked ExpertWeights, and a checkpoint load never holds a second copy of a layer's weights."""
import tracemalloc

import ml_dtypes
import numpy as np
import pytest

from moepy.moe import ExpertWeights, MoELayer
from moepy.moe.weights import ExpertSource

E, H, I = 5, 64, 40


def stacks(rng, kind, I=I):
    w = lambda *s: (rng.standard_normal(s) * 0.05).astype(np.float32)  # noqa: E731
    g, u, d = w(E, I, H), w(E, I, H), w(E, H, I)
    if kind == "bf16":
        return [a.astype(ml_dtypes.bfloat16) for a in (g, u, d)]
    if kind == "bits":
        return [a.astype(ml_dtypes.bfloat16).view(np.uint16) for a in (g, u, d)]
    return [g, u, d]


def same(a, b):
    for f in ("E", "H", "I", "gated", "activation", "alpha", "limit", "dtype", "group"):
        assert getattr(a, f) == getattr(b, f), f
    for f in ("w_in", "w_out", "b_in", "b_out"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape, f
            np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8), err_msg=f)


@pytest.mark.parametrize("kind", ["f32", "bf16", "bits"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8", "int4", "int4_asym", "int4_nl"])
@pytest.mark.parametrize("gated", [True, False])
def test_packed_one_expert_at_a_time_is_bit_identical(kind, dtype, gated):
    rng = np.random.default_rng(1)
    I = 40 if dtype in ("float32", "bfloat16") else 96  # panels padded past I; INT groups of 32 divide I
    g, u, d = stacks(rng, kind, I)
    bias = dict(up_bias=(rng.standard_normal((E, I)) * 0.1).astype(np.float32),
                down_bias=(rng.standard_normal((E, H)) * 0.1).astype(np.float32))
    act = "silu" if gated else "relu"
    ref = ExpertWeights(up=u, down=d, gate=g if gated else None, activation=act, **bias)
    for layer_dtype in ("float32", "bfloat16"):  # the INT formats quantize the values of the float layer
        src = ExpertSource(E, lambda e: u[e], lambda e: d[e], (lambda e: g[e]) if gated else None, activation=act,
                           bf16=layer_dtype == "bfloat16", **bias)
        assert src.shape == ref.shape and src.gated == gated and src.num_params() == ref.num_params()
        if dtype in ("float32", "bfloat16"):
            if layer_dtype != dtype:
                continue
            same(src.packed(dtype), ref.packed(dtype))
        else:
            float_layer = ref.packed(layer_dtype)
            from moepy.moe.packed import PackedFloatExperts
            want = PackedFloatExperts.from_packed(ref, float_layer, layer_dtype).packed(dtype, 32)
            same(src.packed(dtype, 32), want)


def test_errors_name_the_expert_and_the_tensor():
    rng = np.random.default_rng(2)
    g, u, d = stacks(rng, "f32")
    g[3, 5, 7] = np.nan
    src = ExpertSource(E, lambda e: u[e], lambda e: d[e], lambda e: g[e])
    with pytest.raises(ValueError, match=r"gate holds NaN or inf at \(3, 5, 7\)"):
        src.packed("bfloat16")
    with pytest.raises(ValueError, match=r"gate holds NaN or inf at \(3, 5, 7\)"):
        src.check()
    bad = ExpertSource(E, lambda e: u[e], lambda e: d[e] if e < 2 else d[e][:, :-1], lambda e: g[e])
    with pytest.raises(ValueError, match="down of expert 2 must be"):
        bad.packed("float32")
    with pytest.raises(ValueError, match="down of expert 0 must be"):
        ExpertSource(E, lambda e: u[e], lambda e: d[e].T, lambda e: g[e])
    with pytest.raises(ValueError, match="group_size 32 must divide the expert width I = 40"):
        ExpertSource(E, lambda e: u[e], lambda e: d[e], lambda e: g[e]).packed("int8", 32)


def olmoe(L_E=16, L_H=256, L_I=128):
    cfg = {"model_type": "olmoe", "hidden_size": L_H, "intermediate_size": L_I, "num_experts": L_E,
           "num_experts_per_tok": 2, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
           "vocab_size": 64, "norm_topk_prob": False}
    rng = np.random.default_rng(3)
    t = {"model.layers.0.mlp.gate.weight": (rng.standard_normal((L_E, L_H)) * 0.02).astype(ml_dtypes.bfloat16)}
    for e in range(L_E):
        for n, shape in (("gate_proj", (L_I, L_H)), ("up_proj", (L_I, L_H)), ("down_proj", (L_H, L_I))):
            t[f"model.layers.0.mlp.experts.{e}.{n}.weight"] = \
                (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16)
    return cfg, t


def traced_peak(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("quantize", [None, "int4"])
def test_a_checkpoint_load_holds_one_copy_of_the_weights(quantize):
    """numpy reports its buffers to tracemalloc: the peak of a bf16 load is the packed layer plus about one
    expert, not a stacked copy beside it; an int4 load never holds the layer in bf16 or float32."""
    cfg, t = olmoe()
    layer, peak = traced_peak(lambda: MoELayer.from_hf(cfg, t, 0, "bfloat16", quantize=quantize, group_size=32))
    E_, H_, I_ = layer.experts.shape
    weights_bf16 = E_ * 3 * H_ * I_ * 2
    one_expert_f32 = 3 * H_ * I_ * 4
    kept = layer.nbytes()["routed"]
    assert peak < kept + 2 * one_expert_f32 + 256 * 1024, (peak, kept, weights_bf16)
    if quantize:
        assert kept < weights_bf16 / 3
    # the same bytes as the stacked, packed-as-a-whole route
    ref = MoELayer.from_hf(cfg, {k: np.array(v) for k, v in t.items()}, 0, "bfloat16")
    if quantize:
        ref = ref.quantize(quantize, 32)
    for a, b in ((layer._routed.w_in, ref._routed.w_in), (layer._routed.w_out, ref._routed.w_out)):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))

"""moepy's one input rule (moepy/_inputs.py), at every public entry point that takes arrays: array-likes and
DLPack tensors are accepted, other float precisions are converted to float32, and nothing is lost silently."""
import numpy as np
import pytest

import moepy
from moepy import RouterConfig

ml_dtypes = pytest.importorskip("ml_dtypes")
torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)
LOGITS = RNG.standard_normal((12, 8)).astype(np.float32)
X = (RNG.standard_normal((6, 64)) * 0.5).astype(np.float32)
LAYER = moepy.MoELayer.random(RouterConfig.mixtral(8, 2), 64, 32)
QLAYER = LAYER.quantize("int8")


def _variants(a: np.ndarray):
    """(label, the same values in another container / precision / layout, exact?)"""
    big = a.astype(">f4")
    buf = np.zeros(a.nbytes + 1, np.uint8)
    misaligned = np.frombuffer(buf.data, dtype=np.float32, count=a.size, offset=1).reshape(a.shape)
    misaligned[...] = a
    wide = np.zeros((a.shape[0], 2 * a.shape[1]), np.float32)
    wide[:, ::2] = a
    return [
        ("list", a.tolist(), True),
        ("float64", a.astype(np.float64), True),
        ("big-endian", big, True),
        ("misaligned", misaligned, True),
        ("strided", wide[:, ::2], True),
        ("torch float32", torch.from_numpy(a.copy()), True),
        ("torch float64", torch.from_numpy(a.astype(np.float64)), True),
        ("float16", a.astype(np.float16), False),
        ("bfloat16", a.astype(ml_dtypes.bfloat16), False),
        ("torch bfloat16", torch.from_numpy(a.copy()).to(torch.bfloat16), False),
    ]


def _round(v, label):
    if "16" in label:
        dt = np.float16 if label == "float16" else ml_dtypes.bfloat16
        return v.astype(dt).astype(np.float32)
    return v


ENTRY_POINTS = {
    "route": (LOGITS, lambda a: moepy.route(a, RouterConfig.mixtral(8, 2)).weights),
    "route_bias": (LOGITS[0], lambda b: moepy.route(LOGITS, RouterConfig.deepseek_v3(8, 2, n_group=1, topk_group=1),
                                                    bias=b).experts),
    "topk": (LOGITS, lambda a: moepy.topk(a, 3)[0]),
    "expert_choice": (LOGITS, lambda a: moepy.expert_choice(a, capacity=3).gates),
    "router_z_loss": (LOGITS, lambda a: np.float64(moepy.router_z_loss(a))),
    "layer": (X, lambda a: LAYER(a)),
    "layer_int8": (X, lambda a: QLAYER(a)),
    "layer_route": (X, lambda a: LAYER.route(a).experts),
    "quantize": (X, lambda a: moepy.quant.quantize(a, "int8").blocks),
    "sequence_aux_loss": (LOGITS, lambda a: np.float64(moepy.sequence_aux_loss(moepy.route(a, RouterConfig.mixtral(8, 2)), 4))),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_array_likes_and_precisions(entry):
    base, fn = ENTRY_POINTS[entry]
    want = fn(base)
    for label, v, exact in _variants(base if base.ndim == 2 else base[None])[: None]:
        if base.ndim == 1:
            v = v[0] if not hasattr(v, "shape") else v.reshape(-1)
        got = fn(v)
        ref = want if exact else fn(_round(base, label))
        assert np.array_equal(np.asarray(got), np.asarray(ref)), (entry, label)


def test_inputs_are_not_modified():
    a = LOGITS.astype(np.float64)
    keep = a.copy()
    moepy.route(a, RouterConfig.mixtral(8, 2))
    LAYER(X.astype(np.float64))
    assert np.array_equal(a, keep)


def test_batched_logits_route_as_the_layer_does():
    logits = RNG.standard_normal((3, 5, 8)).astype(np.float32)
    r3 = moepy.route(logits, RouterConfig.mixtral(8, 2))
    r2 = moepy.route(logits.reshape(15, 8), RouterConfig.mixtral(8, 2))
    assert np.array_equal(r3.experts, r2.experts) and r3.weights.shape == (15, 2)
    sw = RouterConfig.switch(8, expert_capacity=2)
    per_row = moepy.route(logits, sw)  # capacity per sequence
    parts = [moepy.route(logits[b], sw) for b in range(3)]
    assert np.array_equal(per_row.dropped, np.concatenate([p.dropped for p in parts]))


@pytest.mark.parametrize("bad,err,match", [
    (np.zeros((4, 8), np.bool_), TypeError, "floating-point"),
    (np.array([["a"] * 8] * 4), TypeError, "floating-point"),
    (np.zeros((4, 8), np.complex64), TypeError, "floating-point"),
    (np.full((4, 8), 1e39), ValueError, "beyond float32's range"),
    (np.full((4, 8), 2 ** 25, np.int64), ValueError, "2\\*\\*24"),
    ({"a": 1}, TypeError, "floating-point"),
])
def test_lossy_or_meaningless_inputs_raise(bad, err, match):
    with pytest.raises(err, match=match):
        moepy.route(bad, RouterConfig.mixtral(8, 2))
    with pytest.raises(err, match=match):
        LAYER(bad if not hasattr(bad, "shape") or bad.ndim != 2 else np.resize(bad, (4, 64)))


def test_small_integers_convert_exactly():
    ints = np.arange(32, dtype=np.int64).reshape(4, 8) % 5
    assert np.array_equal(moepy.route(ints, RouterConfig.mixtral(8, 2)).weights,
                          moepy.route(ints.astype(np.float32), RouterConfig.mixtral(8, 2)).weights)


@pytest.mark.parametrize("k", [2.7, "2", True, None])
def test_integer_arguments_reject_other_types(k):
    with pytest.raises(TypeError, match="k must be an int"):
        moepy.topk(LOGITS, k)
    with pytest.raises(TypeError, match="capacity must be an int"):
        moepy.expert_choice(LOGITS, capacity=k) if k is not None else (_ for _ in ()).throw(TypeError("capacity must be an int"))


def test_huge_integer_arguments_name_their_bound():
    with pytest.raises(ValueError, match="top_k must be at most 2,147,483,647"):
        RouterConfig(top_k=2 ** 64)
    with pytest.raises(ValueError, match="k must be <= 8"):
        moepy.topk(LOGITS, 2 ** 64)
    with pytest.raises(ValueError, match="capacity must be <= 12"):
        moepy.expert_choice(LOGITS, capacity=2 ** 64)


def test_a_single_inf_in_x_is_refused_by_every_layer_entry():
    x = X.copy()
    x[4, 3] = np.inf
    for call in (lambda: LAYER(x), lambda: QLAYER(x), lambda: LAYER.route(x),
                 lambda: LAYER.run_experts(x, np.full((6, 2), 0.5), np.tile([0, 1], (6, 1))),
                 lambda: LAYER.forward_expert_choice(x, capacity_factor=1.0)):
        with pytest.raises(ValueError, match="x holds NaN or inf in token row 4"):
            call()


def test_torch_views_with_the_negative_bit_are_read_with_their_sign():
    t = torch.from_numpy(LOGITS.copy())
    v = torch.complex(torch.zeros_like(t), t).conj().imag  # == -t, a lazily negated view
    assert v.is_neg()
    cfg = RouterConfig.mixtral(8, 2)
    assert np.array_equal(moepy.route(v, cfg).weights, moepy.route(-LOGITS, cfg).weights)


def test_a_layer_owns_its_router_tensors():
    rw = np.random.default_rng(5).standard_normal((8, 64)).astype(np.float32)
    layer = moepy.MoELayer(RouterConfig.mixtral(8, 2), rw, LAYER.experts)
    y = layer(X)
    rw[:] = 0  # the caller's array, changed afterwards
    import pickle
    assert np.array_equal(layer(X), y) and np.array_equal(pickle.loads(pickle.dumps(layer))(X), y)
    with pytest.raises(ValueError, match="router_weight holds NaN or inf"):
        moepy.MoELayer(RouterConfig.mixtral(8, 2), np.full((8, 64), np.nan, np.float32), LAYER.experts)

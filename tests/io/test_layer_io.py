"""MoELayer.save / MoELayer.load: float files any safetensors reader loads, INT blocks back bit-exact without
requantizing; quantized layers hold only their INT blocks (pickling included)."""
import pickle

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file as np_load
from safetensors.torch import load_file as torch_load

from moepy import RouterConfig
from moepy.io import CheckpointError, save_file
from moepy.moe import MoELayer
from moepy.moe.packed import PackedOnlyExperts

H, I = 64, 32


def layers():
    yield "mixtral", MoELayer.random(RouterConfig.mixtral(8, 2), H, I, seed=1)
    yield "qwen2", MoELayer.random(RouterConfig.qwen2_moe(8, 2), H, I, seed=2, shared_intermediate_size=64,
                                   shared_gate=True)
    yield "dsv3", MoELayer.random(RouterConfig.deepseek_v3(8, 2, n_group=2, topk_group=1), H, I, seed=3,
                                  shared_intermediate_size=32, selection_bias=True)


X = np.random.default_rng(0).standard_normal((11, H)).astype(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_float_layers_round_trip(tmp_path, dtype):
    for name, base in layers():
        m = MoELayer(base.router, base.router_weight, base.experts, shared=base.shared,
                     shared_gate_weight=base.shared_gate_weight, selection_bias=base.selection_bias, dtype=dtype,
                     family=base.family)
        p = tmp_path / f"{name}.safetensors"
        m.save(p)
        back = MoELayer.load(p)
        assert back.dtype == dtype and back.router == m.router and back.family == m.family
        assert np.array_equal(back(X), m(X)), name
        # a plain safetensors file: the reference readers load it unchanged
        t = torch_load(p)
        assert tuple(t["experts.up"].shape) == (8, I, H)
        if dtype == "float32":
            n = np_load(p)
            assert np.array_equal(n["experts.up"], m.experts.up)
        else:
            assert back.experts.up.dtype == ml_dtypes.bfloat16


@pytest.mark.parametrize("fmt,G", [("int8", 32), ("int4", 32), ("int4_asym", 32), ("int4_nl", 32)])
def test_int_layers_round_trip_bit_exact(tmp_path, fmt, G):
    for name, base in layers():
        q = base.quantize(fmt, G, shared=name == "qwen2")
        assert isinstance(q.experts, PackedOnlyExperts)  # no float copy kept
        p = tmp_path / f"{name}.safetensors"
        q.save(p)
        back = MoELayer.load(p)
        assert isinstance(back.experts, PackedOnlyExperts)
        assert np.array_equal(back.experts.w_in, q.experts.w_in) and np.array_equal(back.experts.w_out,
                                                                                    q.experts.w_out)
        assert np.array_equal(back(X), q(X)), (name, fmt)
        n = np_load(p)  # U8 blocks: readable by safetensors.numpy as they are
        assert n["experts.w_in"].dtype == np.uint8
        r = pickle.loads(pickle.dumps(back))
        assert isinstance(r.experts, PackedOnlyExperts) and np.array_equal(r(X), q(X))


def test_quantized_layer_holds_only_blocks_and_pickles_from_them():
    base = next(layers())[1]
    q = base.quantize("int4", 32)
    arrays = [v for v in vars(q.experts).values() if isinstance(v, np.ndarray)]
    assert all(a.dtype == np.uint8 for a in arrays if a.ndim == 1 and a.size > 1000)
    blob = pickle.dumps(q)
    assert len(blob) < q.experts.nbytes + 200_000  # the blocks, not float32 weights (4x larger)
    r = pickle.loads(blob)
    assert np.array_equal(r(X), q(X))
    # requantizing to another format goes through the dequantized blocks
    q8 = q.quantize("int8", 32)
    assert q8.dtype == "int8" and np.isfinite(q8(X)).all()
    ref = q.to_float32_reference()
    assert ref["experts"].up.dtype == np.float32


def test_not_a_layer_file(tmp_path):
    save_file({"a": np.zeros(3, np.float32)}, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="not a moepy layer file"):
        MoELayer.load(tmp_path / "x.safetensors")
    q = next(layers())[1].quantize("int8", 32)
    q.save(tmp_path / "q.safetensors")
    from moepy.io import load_file
    t = dict(load_file(tmp_path / "q.safetensors"))
    from moepy.io.safetensors import read_header
    md = dict(read_header(tmp_path / "q.safetensors").metadata)
    t["experts.w_in"] = t["experts.w_in"][:-16]
    save_file(t, tmp_path / "cut.safetensors", md)
    with pytest.raises(CheckpointError, match="tensor 'experts.w_in': w_in must be"):
        MoELayer.load(tmp_path / "cut.safetensors")

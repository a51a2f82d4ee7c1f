"""moepy.io.save_file / load_file round trips, read back by safetensors.numpy and safetensors.torch."""
import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as np_load, save_file as np_save
from safetensors.torch import load_file as torch_load, save_file as torch_save

from moepy.io import load_file, read_header, save_file

NATIVE = [np.float32, np.float16, np.float64, np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_]


def _arrays(rng):
    out = {f"t_{np.dtype(dt).name}": (rng.standard_normal((3, 5)) * 10).astype(dt) for dt in NATIVE}
    out["bf16"] = rng.standard_normal((4, 7)).astype(ml_dtypes.bfloat16)
    out["e4m3"] = rng.standard_normal((2, 16)).astype(ml_dtypes.float8_e4m3fn)
    out["e5m2"] = rng.standard_normal(9).astype(ml_dtypes.float8_e5m2)
    out["scalar"] = np.array(3.5, np.float32)
    out["empty"] = np.zeros((0, 4), np.float32)
    return out


def test_round_trip_every_dtype(tmp_path):
    a = _arrays(np.random.default_rng(0))
    p = tmp_path / "all.safetensors"
    save_file(a, p, metadata={"format": "np", "who": "moepy"})
    b = load_file(p)
    assert set(a) == set(b)
    for k in a:
        assert b[k].dtype == a[k].dtype and b[k].shape == a[k].shape
        assert b[k].tobytes() == a[k].tobytes(), k
    assert read_header(p).metadata == {"format": "np", "who": "moepy"}
    assert read_header(p).data_start % 8 == 0
    # the reference reads it unchanged: torch for every dtype, numpy for the ones it knows
    t = torch_load(p)
    assert torch.equal(t["bf16"].view(torch.int16), torch.from_numpy(a["bf16"].view(np.int16)))
    assert torch.equal(t["e4m3"].view(torch.uint8), torch.from_numpy(a["e4m3"].view(np.uint8)))
    native = {k: v for k, v in a.items() if v.dtype in [np.dtype(d) for d in NATIVE]}
    p2 = tmp_path / "native.safetensors"
    save_file(native, p2)
    r = np_load(p2)
    for k in native:
        assert np.array_equal(r[k], native[k])


def test_reads_what_the_reference_writes(tmp_path):
    rng = np.random.default_rng(1)
    t = {"w": torch.randn(8, 3).to(torch.bfloat16), "s": torch.randn(2, 2), "f8": torch.randn(4).to(torch.float8_e4m3fn),
         "i": torch.arange(6, dtype=torch.int64).reshape(2, 3)}
    torch_save(t, tmp_path / "t.safetensors", metadata={"format": "pt"})
    b = load_file(tmp_path / "t.safetensors")
    assert b["w"].dtype == ml_dtypes.bfloat16 and b["f8"].dtype == ml_dtypes.float8_e4m3fn
    assert np.array_equal(b["w"].astype(np.float32), t["w"].float().numpy())
    assert np.array_equal(b["f8"].astype(np.float32), t["f8"].float().numpy())
    assert np.array_equal(b["i"], t["i"].numpy())
    n = {"x": rng.standard_normal((5, 2)).astype(np.float32)}
    np_save(n, tmp_path / "n.safetensors")
    assert np.array_equal(load_file(tmp_path / "n.safetensors")["x"], n["x"])


def test_torch_tensors_and_views_are_read_only(tmp_path):
    save_file({"a": torch.ones(3, dtype=torch.bfloat16), "b": np.arange(4.0, dtype=np.float32)[::2]},
              tmp_path / "x.safetensors")
    x = load_file(tmp_path / "x.safetensors")
    assert x["a"].dtype == ml_dtypes.bfloat16 and np.array_equal(x["b"], [0.0, 2.0])
    with pytest.raises(ValueError):
        x["b"][0] = 1.0


def test_writer_refuses(tmp_path):
    with pytest.raises(TypeError, match="no safetensors name"):
        save_file({"o": np.array(["x"], dtype=object)}, tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match="metadata"):
        save_file({"a": np.zeros(1, np.float32)}, tmp_path / "m.safetensors", metadata={"k": 1})
    with pytest.raises(ValueError, match="names"):
        save_file({"__metadata__": np.zeros(1, np.float32)}, tmp_path / "n.safetensors")
    assert not any(tmp_path.iterdir())  # nothing half-written

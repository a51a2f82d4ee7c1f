"""Regressions of an adversarial review of the checkpoint readers (each finding: the file or config that broke
them, and the clear error it gets now)."""
import json
import os
import threading

import numpy as np
import pytest

import moepy
from gguf_files import write_gguf
from moepy.io import CheckpointError, load_file, open_checkpoint, open_gguf, save_file
from moepy.moe import MoELayer
from tiny_models import saved_model


def test_switch_layer_counts_are_bounded():
    with pytest.raises(ValueError, match="num_layers=1,000,000,000,000 is out of range"):
        MoELayer.from_hf({"model_type": "switch_transformers", "num_layers": 10 ** 12,
                          "num_sparse_encoder_layers": 10 ** 12}, {}, 1)
    with pytest.raises(ValueError, match="num_layers"):
        MoELayer.from_hf({"model_type": "switch_transformers", "num_layers": "12"}, {}, 1)


def test_integer_expert_codes_are_not_read_as_weights():
    cfg = moepy.configs.get("qwen3-30b-a3b").scaled().to_hf()
    E, H, I = cfg["num_experts"], cfg["hidden_size"], cfg["moe_intermediate_size"]
    p = "model.layers.0.mlp."
    t = {p + "gate.weight": np.zeros((E, H), np.float32)}
    for e in range(E):
        for n, shape in (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I))):
            t[f"{p}experts.{e}.{n}.weight"] = np.ones(shape, np.int8)
    with pytest.raises(TypeError, match="must be floating point"):
        MoELayer.from_hf(cfg, t, 0)


def test_gguf_experts_dequantize_one_at_a_time(tmp_path, monkeypatch):
    import gguf
    d, _ = saved_model("olmoe", "float32")
    ck = open_checkpoint(d)
    write_gguf(tmp_path / "q.gguf", ck, ck.config, qtype=gguf.GGMLQuantizationType.Q8_0)
    g = open_gguf(tmp_path / "q.gguf")
    full = {}
    calls = []
    real = gguf.quants.dequantize

    def counting(data, qtype):
        calls.append(np.asarray(data).shape)
        return real(data, qtype)
    monkeypatch.setattr(gguf.quants, "dequantize", counting)
    name = next(n for n in g if ".experts.3.down_proj.weight" in n)
    one = np.asarray(g[name])
    gname = next(k for k in g._info if k.endswith("ffn_down_exps.weight") and k.startswith("blk.0."))
    if g._info[gname][2] == "Q8_0":
        assert len(calls) == 1 and len(calls[0]) == 2  # one expert's rows, not the (E, N, K) stack
    monkeypatch.setattr(gguf.quants, "dequantize", real)
    t = g._tensors[gname]
    full = (real(t.data, t.tensor_type) if g._info[gname][2] == "Q8_0" else np.asarray(t.data)).reshape(g._info[gname][1])
    assert np.array_equal(one, full[3])


def test_config_json_duplicates_and_nesting(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "olmoe", "model_type": "mixtral"}')
    with pytest.raises(ValueError, match="duplicate key 'model_type'"):
        moepy.ModelConfig.from_hf(tmp_path)
    (tmp_path / "config.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match="nested too deeply|not valid JSON"):
        moepy.ModelConfig.from_hf(tmp_path)


def test_layer_file_metadata_is_checked(tmp_path):
    layer = MoELayer.random(moepy.RouterConfig.mixtral(8, 2), 32, 32)
    layer.save(tmp_path / "l.safetensors")
    f = load_file(tmp_path / "l.safetensors")
    from moepy.io.safetensors import SafetensorsFile
    md = dict(SafetensorsFile(tmp_path / "l.safetensors").metadata)
    meta = json.loads(md["layer"])
    for change in ({"scale_input": "false"}, {"group_size": "x"}, {"scale_input": None}):
        bad = dict(meta, **change)
        save_file(f, tmp_path / "bad.safetensors", metadata=dict(md, layer=json.dumps(bad)))
        with pytest.raises(CheckpointError):
            MoELayer.load(tmp_path / "bad.safetensors")
    gone = {k: v for k, v in meta.items() if k != "scale_input"}
    save_file(f, tmp_path / "bad.safetensors", metadata=dict(md, layer=json.dumps(gone)))
    with pytest.raises(CheckpointError):
        MoELayer.load(tmp_path / "bad.safetensors")


def test_a_fifo_or_a_directory_is_not_a_checkpoint(tmp_path):
    save_file({"a": np.zeros(2, np.float32)}, tmp_path / "a.safetensors")
    os.mkfifo(tmp_path / "b.safetensors")
    with pytest.raises(CheckpointError, match="not a regular file"):
        open_checkpoint(tmp_path)
    os.unlink(tmp_path / "b.safetensors")
    os.mkdir(tmp_path / "b.safetensors")
    with pytest.raises(CheckpointError, match="not a regular file"):
        open_checkpoint(tmp_path)


def test_concurrent_saves_to_one_path(tmp_path):
    errors = []

    def save(v):
        try:
            for _ in range(10):
                save_file({"a": np.full(1000, v, np.float32)}, tmp_path / "x.safetensors")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=save, args=(v,)) for v in (1.0, 2.0)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    a = load_file(tmp_path / "x.safetensors")["a"]
    assert a[0] in (1.0, 2.0) and (a == a[0]).all()
    assert oct(os.stat(tmp_path / "x.safetensors").st_mode & 0o777) != "0o600"


def test_shapes_numpy_cannot_hold_are_refused_at_open(tmp_path):
    def raw(header):
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        return len(h).to_bytes(8, "little") + h
    (tmp_path / "zero.safetensors").write_bytes(raw({"a": {"dtype": "F32", "shape": [0, 2 ** 63],
                                                           "data_offsets": [0, 0]}}))
    with pytest.raises(CheckpointError, match="overflows NumPy's limit"):
        open_checkpoint(tmp_path / "zero.safetensors")
    (tmp_path / "deep.safetensors").write_bytes(raw({"a": {"dtype": "F32", "shape": [1] * 70,
                                                           "data_offsets": [0, 0]}}) + b"\0" * 4)
    with pytest.raises(CheckpointError, match="70 dimensions"):
        open_checkpoint(tmp_path / "deep.safetensors")


def test_int_layer_files_check_biases_and_scales(tmp_path):
    cfg = moepy.RouterConfig.gpt_oss(8, 2)
    layer = MoELayer.random(cfg, 32, 32, activation="gpt_oss").quantize("int8")
    layer.save(tmp_path / "l.safetensors")
    from moepy.io.safetensors import SafetensorsFile
    md = dict(SafetensorsFile(tmp_path / "l.safetensors").metadata)
    f = {k: np.array(v) for k, v in load_file(tmp_path / "l.safetensors").items()}
    assert np.array_equal(MoELayer.load(tmp_path / "l.safetensors")(np.ones((2, 32), np.float32)),
                          layer(np.ones((2, 32), np.float32)))
    w = f["experts.w_in"].copy()
    w[:2] = np.frombuffer(np.float16(np.nan).tobytes(), np.uint8)  # the first block's first scale: NaN
    save_file(dict(f, **{"experts.w_in": w}), tmp_path / "nan.safetensors", metadata=md)
    with pytest.raises(CheckpointError, match="scale or offset is NaN or inf"):
        MoELayer.load(tmp_path / "nan.safetensors")
    if "experts.down_bias" in f:
        save_file(dict(f, **{"experts.down_bias": np.float32([5.0])}), tmp_path / "b.safetensors", metadata=md)
        with pytest.raises(CheckpointError, match="down_bias"):
            MoELayer.load(tmp_path / "b.safetensors")

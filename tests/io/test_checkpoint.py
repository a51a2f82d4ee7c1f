"""open_checkpoint over real save_pretrained output (sharded, f32 and bf16) against safetensors.torch, and
MoELayer.from_hf on it against the transformers block."""
import json
import os
import shutil

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.torch import load_file as torch_load

from moepy.io import CheckpointError, open_checkpoint
from moepy.moe import MoELayer
from tiny_models import H, moe_block_output, saved_model

FAMILIES = ["olmoe", "qwen2_moe", "qwen3_moe", "mixtral"]


def _torch_tensors(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update(torch_load(os.path.join(d, f)))
    return out


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_tensor_equals_safetensors_torch(family, dtype):
    d, _ = saved_model(family, dtype)
    ck = open_checkpoint(d)
    ref = _torch_tensors(d)
    assert len(ck.files) >= 2, "the checkpoint should be sharded"
    assert set(ck) == set(ref)
    for name, t in ref.items():
        a = ck[name]
        assert a.shape == tuple(t.shape)
        if dtype == "bfloat16":
            assert a.dtype == ml_dtypes.bfloat16
            assert np.array_equal(a.view(np.uint16), t.view(torch.int16).numpy().view(np.uint16))
        else:
            assert a.dtype == np.float32 and np.array_equal(a, t.numpy())
        assert not a.flags.writeable
    assert ck.config["model_type"] == family


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_moe_layer_from_checkpoint_matches_transformers(family, dtype):
    d, model = saved_model(family, dtype)
    ck = open_checkpoint(d)
    x = np.random.default_rng(1).standard_normal((9, H)).astype(np.float32)
    for layer in range(2):
        m = MoELayer.from_hf(ck.config, ck, layer, dtype)
        assert m.dtype == dtype
        y, ref = m(x), moe_block_output(model, layer, x)
        err = np.abs(y - ref).max() / np.abs(ref).max()
        assert err < 1e-5, (family, dtype, layer, err)


def test_single_file_and_unindexed_directory(tmp_path):
    d, model = saved_model("olmoe", "float32")
    ck = open_checkpoint(d)
    from moepy.io import save_file
    single = tmp_path / "single"
    single.mkdir()
    save_file({k: ck[k] for k in ck}, single / "model.safetensors")
    shutil.copy(os.path.join(d, "config.json"), single / "config.json")
    one = open_checkpoint(single)
    assert set(one) == set(ck) and len(one.files) == 1
    assert one.config == ck.config
    via_file = open_checkpoint(single / "model.safetensors")
    assert via_file.config == ck.config
    # shards without the index: the union of the files
    loose = tmp_path / "loose"
    shutil.copytree(d, loose)
    os.unlink(loose / "model.safetensors.index.json")
    assert set(open_checkpoint(loose)) == set(ck)


def _broken_index(tmp_path, edit):
    d, _ = saved_model("olmoe", "float32")
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    idx = json.loads((bad / "model.safetensors.index.json").read_text())
    edit(idx, bad)
    (bad / "model.safetensors.index.json").write_text(json.dumps(idx))
    return bad


def test_index_naming_a_missing_shard(tmp_path):
    def edit(idx, d):
        idx["weight_map"]["model.norm.weight"] = "model-99999-of-99999.safetensors"
    with pytest.raises(CheckpointError, match=r"index.json: tensor 'model.norm.weight': .*does not exist"):
        open_checkpoint(_broken_index(tmp_path, edit))


def test_index_placing_a_tensor_in_the_wrong_shard(tmp_path):
    def edit(idx, d):
        wm = idx["weight_map"]
        other = next(f for f in sorted(set(wm.values())) if f != wm["model.norm.weight"])
        wm["model.norm.weight"] = other
    with pytest.raises(CheckpointError, match=r"tensor 'model.norm.weight': the index places it in .*does not hold"):
        open_checkpoint(_broken_index(tmp_path, edit))


@pytest.mark.parametrize("fname", ["../x.safetensors", "/etc/passwd", "a/b.safetensors", "", 3])
def test_index_shard_names_must_be_plain(tmp_path, fname):
    def edit(idx, d):
        idx["weight_map"]["model.norm.weight"] = fname
    with pytest.raises(CheckpointError, match="not a plain file name"):
        open_checkpoint(_broken_index(tmp_path, edit))


def test_index_without_weight_map_and_duplicate_keys(tmp_path):
    def edit(idx, d):
        idx.pop("weight_map")
    with pytest.raises(CheckpointError, match="no weight_map"):
        open_checkpoint(_broken_index(tmp_path, edit))
    bad = tmp_path / "bad"
    assert (bad / "model.safetensors.index.json").read_text()
    (bad / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}}')
    with pytest.raises(CheckpointError, match="tensor 'a': duplicate key"):
        open_checkpoint(bad)


def test_missing_paths():
    with pytest.raises(FileNotFoundError):
        open_checkpoint("/nonexistent/moepy/ckpt")


def test_get_dtype_conversion():
    d, _ = saved_model("olmoe", "bfloat16")
    ck = open_checkpoint(d)
    name = "model.layers.0.mlp.gate.weight"
    a = ck.get(name, "float32")
    assert a.dtype == np.float32 and np.array_equal(a, ck[name].astype(np.float32))
    assert ck.get(name) is ck.get(name) or np.array_equal(ck.get(name), ck[name])
    assert ck.get("no.such.tensor") is None
    with pytest.raises(ValueError, match="dtype must be one of"):
        ck.get(name, "int3")

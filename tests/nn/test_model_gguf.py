"""MoEModel from llama.cpp's GGUF files (written by the gguf package from a tiny checkpoint, named as llama.cpp's
converter names them): the same logits as from the checkpoint directory, and a Q8_0 file within Q8_0's error."""
import sys
import os

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "io"))

import gguf  # noqa: E402
from gguf_files import write_gguf  # noqa: E402
from tiny_models import saved_model  # noqa: E402
from moepy.io import open_checkpoint  # noqa: E402
from moepy.nn import MoEModel  # noqa: E402


@pytest.mark.parametrize("family", ["olmoe", "qwen2_moe", "qwen3_moe", "mixtral"])
def test_gguf_model_equals_checkpoint_model(tmp_path, family):
    d, _ = saved_model(family, "float32")
    ck = open_checkpoint(d)
    write_gguf(tmp_path / "m.gguf", ck, ck.config)
    ref = MoEModel.from_pretrained(d, progress=False)
    g = MoEModel.from_pretrained(tmp_path / "m.gguf", progress=False)
    ids = np.random.default_rng(0).integers(0, ref.vocab_size, (2, 9))
    a, b = g(ids), ref(ids)
    assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max()


def test_gguf_q8_0_model(tmp_path):
    """Every matrix with whole Q8_0 blocks per row stored as Q8_0 (attention, gate / up experts): dequantized
    where moepy keeps floats; the logits stay within Q8_0's error of the float model."""
    d, _ = saved_model("olmoe", "float32")
    ck = open_checkpoint(d)
    write_gguf(tmp_path / "q.gguf", ck, ck.config, qtype=gguf.GGMLQuantizationType.Q8_0)
    g = MoEModel.from_pretrained(tmp_path / "q.gguf", progress=False)
    ref = MoEModel.from_pretrained(d, progress=False)
    ids = np.random.default_rng(1).integers(0, ref.vocab_size, 12)
    a, b = g(ids), ref(ids)
    assert np.sqrt(np.mean((a - b) ** 2)) < 0.05 * np.sqrt(np.mean(b ** 2))

"""FP8 block-scaled (DeepSeek-V3) and MXFP4 (gpt-oss) tensors: dequantized as transformers 5.23 does, one
tensor at a time, through open_checkpoint; requantized to moepy's INT formats tensor by tensor."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "families"))  # hf_blocks

import json

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.torch import save_file as torch_save
from transformers.integrations.finegrained_fp8 import Fp8Dequantize, _dequantize_fp8_weight
from transformers.integrations.mxfp4 import convert_moe_packed_tensors

from hf_blocks import make_block, make_input
from moepy.io import CheckpointError, open_checkpoint, quantize_tensor
from moepy.moe import MoELayer, quant

BLOCK = 128


def fp8_quantize(w: torch.Tensor, block=(BLOCK, BLOCK)):
    """DeepSeek-style: per 128 x 128 block, scale = amax / 448, q = float8_e4m3fn(w / scale)."""
    N, K = w.shape
    bn, bk = block
    sn, sk = -(-N // bn), -(-K // bk)
    scale = torch.empty(sn, sk)
    q = torch.empty(N, K, dtype=torch.float8_e4m3fn)
    for i in range(sn):
        for j in range(sk):
            blk = w[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk]
            s = blk.abs().max().clamp(min=1e-12) / 448.0
            scale[i, j] = s
            q[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk] = (blk / s).to(torch.float8_e4m3fn)
    return q, scale


@pytest.mark.parametrize("shape", [(256, 384), (200, 300)])
def test_fp8_matches_transformers(tmp_path, shape):
    torch.manual_seed(0)
    w = torch.randn(*shape) * 0.05
    q, s = fp8_quantize(w)
    torch_save({"m.weight": q, "m.weight_scale_inv": s}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(
        {"quantization_config": {"quant_method": "fp8", "weight_block_size": [BLOCK, BLOCK]}}))
    ck = open_checkpoint(tmp_path)
    assert ck["m.weight"].dtype == ml_dtypes.float8_e4m3fn  # as stored
    assert ck.is_fp8_scaled("m.weight")
    got = ck.get("m.weight", "float32")
    ref = _dequantize_fp8_weight(q, s, [BLOCK, BLOCK], torch.float32).numpy()
    assert got.dtype == np.float32 and np.array_equal(got, ref)
    if shape[0] % BLOCK == 0 and shape[1] % BLOCK == 0:  # the loader's own path (whole blocks only)
        ref2 = Fp8Dequantize(None)._dequantize_one(q, s, output_dtype=torch.float32).numpy()
        assert np.array_equal(got, ref2)
    bf = ck.get("m.weight", "bfloat16")  # the loader's arithmetic: float32 product, then one rounding
    assert bf.dtype == ml_dtypes.bfloat16
    assert np.array_equal(bf.view(np.uint16), ref.astype(ml_dtypes.bfloat16).view(np.uint16))
    if shape[0] % BLOCK == 0 and shape[1] % BLOCK == 0:
        ref3 = Fp8Dequantize(None)._dequantize_one(q, s, output_dtype=torch.bfloat16)
        assert np.array_equal(bf.view(np.uint16), ref3.view(torch.int16).numpy().view(np.uint16))
    view = ck.dequantized()
    assert "m.weight_scale_inv" not in view and set(view) == {"m.weight"}
    assert np.array_equal(view["m.weight"], ref)


def test_fp8_scale_shape_checked(tmp_path):
    q, s = fp8_quantize(torch.randn(256, 256))
    torch_save({"m.weight": q, "m.weight_scale_inv": s[:1]}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"tensor 'm.weight': weight_scale_inv has shape \(1, 2\)"):
        open_checkpoint(tmp_path).get("m.weight", "float32")


def _deepseek_v3_fp8(tmp_path):
    """A DeepSeek-V3 MoE block whose expert weights are stored FP8 with 128 x 128 block scales."""
    b = make_block("deepseek_v3", hidden=256, intermediate=128, experts=4, top_k=2, seed=0)
    stored, deq = {}, {}
    for name, a in b.tensors_legacy.items():
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if "experts" in name and name.endswith(".weight") and t.ndim == 2:
            q, s = fp8_quantize(t)
            stored[name], stored[name + "_scale_inv"] = q, s
            deq[name] = _dequantize_fp8_weight(q, s, [BLOCK, BLOCK], torch.float32).numpy()
        else:
            stored[name] = t
            deq[name] = t.numpy()
    torch_save(stored, tmp_path / "model.safetensors")
    cfg = dict(b.hf_config)
    cfg["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [BLOCK, BLOCK], "fmt": "e4m3"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return b, deq


def test_deepseek_v3_fp8_layer(tmp_path):
    b, deq = _deepseek_v3_fp8(tmp_path)
    ck = open_checkpoint(tmp_path)
    x = make_input(7, 256, seed=2)
    m = MoELayer.from_hf(ck.config, ck.dequantized(), b.layer_index)
    ref = MoELayer.from_hf(b.hf_config, deq, b.layer_index)
    assert np.array_equal(m(x), ref(x))
    with pytest.raises(TypeError, match="FP8"):  # raw FP8 without its scales is never used silently
        MoELayer.from_hf(ck.config, ck, b.layer_index)


def test_requantize_fp8_tensor_by_tensor(tmp_path):
    b, deq = _deepseek_v3_fp8(tmp_path)
    ck = open_checkpoint(tmp_path)
    name = next(n for n in deq if n.endswith("experts.1.down_proj.weight"))
    for fmt in ("int8", "int4", "int4_asym"):
        q = quantize_tensor(ck, name, fmt, 32)
        ref = quant.quantize(deq[name], fmt, 32)
        assert q.shape == ref.shape and np.array_equal(q.blocks, ref.blocks)


# ------------------------------------------------------------------------------------------------ MXFP4
def _mxfp4_pair(rng, E, R, G):
    blocks = rng.integers(0, 256, (E, R, G, 16), dtype=np.uint8)
    scales = rng.integers(118, 133, (E, R, G), dtype=np.uint8)
    return blocks, scales


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_mxfp4_matches_transformers(tmp_path, dtype):
    rng = np.random.default_rng(0)
    blocks, scales = _mxfp4_pair(rng, 3, 24, 2)
    scales[0, 0, 0], scales[0, 0, 1] = 0, 255  # the extremes of E8M0
    torch_save({"e.gate_up_proj_blocks": torch.from_numpy(blocks), "e.gate_up_proj_scales": torch.from_numpy(scales)},
               tmp_path / "model.safetensors")
    ck = open_checkpoint(tmp_path)
    assert ck.is_mxfp4("e.gate_up_proj") and "e.gate_up_proj" not in ck
    got = ck.get("e.gate_up_proj", dtype)
    tdt = torch.float32 if dtype == "float32" else torch.bfloat16
    ref = convert_moe_packed_tensors(torch.from_numpy(blocks), torch.from_numpy(scales), dtype=tdt)
    ref = ref.numpy() if dtype == "float32" else ref.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    assert got.shape == ref.shape == (3, 64, 24)
    assert np.array_equal(got.view(np.uint8), ref.view(np.uint8))  # bitwise, NaN and inf included
    view = ck.dequantized(dtype)
    assert set(view) == {"e.gate_up_proj"}


def test_gpt_oss_mxfp4_layer_and_requantize(tmp_path):
    b = make_block("gpt_oss", hidden=64, intermediate=32, experts=4, top_k=2, seed=1)
    rng = np.random.default_rng(3)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in b.tensors_fused.items()
               if not k.endswith("experts.gate_up_proj") and not k.endswith("experts.down_proj")}
    pre = next(k for k in b.tensors_fused if k.endswith("experts.gate_up_proj"))[:-len("gate_up_proj")]
    gu_b, gu_s = _mxfp4_pair(rng, 4, 64, 2)  # (E, 2I, H/32, 16)
    dn_b, dn_s = _mxfp4_pair(rng, 4, 64, 1)  # (E, H, I/32, 16)
    for rel, (bb, ss) in {"gate_up_proj": (gu_b, gu_s), "down_proj": (dn_b, dn_s)}.items():
        tensors[pre + rel + "_blocks"], tensors[pre + rel + "_scales"] = torch.from_numpy(bb), torch.from_numpy(ss)
    torch_save(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(dict(b.hf_config)))
    ck = open_checkpoint(tmp_path)
    x = make_input(6, 64, seed=4)
    m_view = MoELayer.from_hf(ck.config, ck.dequantized(), b.layer_index)
    m_raw = MoELayer.from_hf(ck.config, ck, b.layer_index)  # the family's own MXFP4 path
    assert np.array_equal(m_view(x), m_raw(x))
    # tensor by tensor to INT: expert by expert, (E, G*32, R) -> the (N, K) = (R, G*32) orientation
    q = quantize_tensor(ck, pre + "down_proj", "int4", 32, transform=lambda w: w.T)
    full = ck.get(pre + "down_proj", "float32")  # (E, I, H)
    ref = quant.quantize(np.ascontiguousarray(full.transpose(0, 2, 1)), "int4", 32)
    assert q.shape == ref.shape and np.array_equal(q.blocks, ref.blocks)

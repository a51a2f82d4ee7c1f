"""GGUF files of deepseek2 (DeepSeek-V2 softmax and V3 sigmoid gating) and gpt-oss, written as llama.cpp's
converter lays them out: the MoE layer read from them equals the one read from the Hugging Face tensors."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "families"))  # hf_blocks

import gguf
import numpy as np
import pytest

from hf_blocks import make_block, make_input
from moepy.io import CheckpointError, open_gguf
from moepy.moe import MoELayer


def _write(path, arch, meta, tensors):
    w = gguf.GGUFWriter(str(path), arch)
    for k, (kind, v) in meta.items():
        getattr(w, f"add_{kind}")(f"{arch}.{k}", v)
    for n, a in tensors.items():
        if isinstance(a, tuple):
            w.add_tensor(n, a[0], raw_dtype=a[1])
        else:
            w.add_tensor(n, np.ascontiguousarray(a, dtype=np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def _deepseek(tmp_path, version):
    b = make_block(f"deepseek_v{version}", hidden=64, intermediate=32, experts=4, top_k=2, seed=0)
    c, t, i = b.hf_config, b.tensors_legacy, b.layer_index
    p = f"model.layers.{i}.mlp."
    E = c["n_routed_experts"]
    g = {f"blk.{i}.ffn_gate_inp.weight": t[p + "gate.weight"]}
    if version == 3:
        g[f"blk.{i}.exp_probs_b.bias"] = t[p + "gate.e_score_correction_bias"]
    for gg, hh in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
        g[f"blk.{i}.ffn_{gg}_exps.weight"] = np.stack([t[p + f"experts.{e}.{hh}.weight"] for e in range(E)])
        g[f"blk.{i}.ffn_{gg}_shexp.weight"] = t[p + f"shared_experts.{hh}.weight"]
    meta = {"block_count": ("uint32", c["num_hidden_layers"]), "embedding_length": ("uint32", c["hidden_size"]),
            "attention.head_count": ("uint32", c["num_attention_heads"]),
            "expert_count": ("uint32", E), "expert_used_count": ("uint32", c["num_experts_per_tok"]),
            "expert_feed_forward_length": ("uint32", c["moe_intermediate_size"]),
            "feed_forward_length": ("uint32", c["intermediate_size"]),
            "expert_shared_count": ("uint32", c["n_shared_experts"]),
            "leading_dense_block_count": ("uint32", c["first_k_dense_replace"]),
            "expert_weights_scale": ("float32", c["routed_scaling_factor"]),
            "expert_weights_norm": ("bool", bool(c["norm_topk_prob"])),
            "expert_gating_func": ("uint32", 2 if version == 3 else 1),
            "expert_group_count": ("uint32", c["n_group"]), "expert_group_used_count": ("uint32", c["topk_group"]),
            "attention.q_lora_rank": ("uint32", c["q_lora_rank"]), "attention.kv_lora_rank": ("uint32", c["kv_lora_rank"]),
            "attention.key_length": ("uint32", c["qk_nope_head_dim"] + c["qk_rope_head_dim"]),
            "attention.value_length": ("uint32", c["v_head_dim"]),
            "rope.dimension_count": ("uint32", c["qk_rope_head_dim"]), "vocab_size": ("uint32", c["vocab_size"])}
    _write(tmp_path / "ds.gguf", "deepseek2", meta, g)
    return b


@pytest.mark.parametrize("version", [2, 3])
def test_deepseek2_gguf(tmp_path, version):
    b = _deepseek(tmp_path, version)
    g = open_gguf(tmp_path / "ds.gguf")
    assert g.family.name == f"deepseek_v{version}"
    x = make_input(6, 64, seed=1)
    y = MoELayer.from_hf(g.config, g, b.layer_index)(x)
    assert np.array_equal(y, MoELayer.from_hf(b.hf_config, b.tensors_legacy, b.layer_index)(x))
    assert g.model_config.router == __import__("moepy").ModelConfig.from_hf(b.hf_config).router


def test_gpt_oss_gguf(tmp_path):
    b = make_block("gpt_oss", hidden=64, intermediate=32, experts=4, top_k=2, seed=2)
    c, t, i = b.hf_config, b.tensors_fused, b.layer_index
    p = f"model.layers.{i}.mlp."
    gu, gub = t[p + "experts.gate_up_proj"], t[p + "experts.gate_up_proj_bias"]
    g = {f"blk.{i}.ffn_gate_inp.weight": t[p + "router.weight"], f"blk.{i}.ffn_gate_inp.bias": t[p + "router.bias"],
         f"blk.{i}.ffn_gate_exps.weight": gu[:, :, 0::2].transpose(0, 2, 1),
         f"blk.{i}.ffn_up_exps.weight": gu[:, :, 1::2].transpose(0, 2, 1),
         f"blk.{i}.ffn_down_exps.weight": t[p + "experts.down_proj"].transpose(0, 2, 1),
         f"blk.{i}.ffn_gate_exps.bias": gub[:, 0::2], f"blk.{i}.ffn_up_exps.bias": gub[:, 1::2],
         f"blk.{i}.ffn_down_exps.bias": t[p + "experts.down_proj_bias"]}
    meta = {"block_count": ("uint32", c["num_hidden_layers"]), "embedding_length": ("uint32", c["hidden_size"]),
            "attention.head_count": ("uint32", c["num_attention_heads"]),
            "attention.head_count_kv": ("uint32", c["num_key_value_heads"]),
            "attention.key_length": ("uint32", c["head_dim"]), "expert_count": ("uint32", c["num_local_experts"]),
            "expert_used_count": ("uint32", c["num_experts_per_tok"]),
            "expert_feed_forward_length": ("uint32", c["intermediate_size"]),
            "attention.sliding_window": ("uint32", c["sliding_window"]), "vocab_size": ("uint32", c["vocab_size"])}
    _write(tmp_path / "oss.gguf", "gpt-oss", meta, g)
    go = open_gguf(tmp_path / "oss.gguf")
    assert go.family.name == "gpt_oss"
    x = make_input(5, 64, seed=3)
    y = MoELayer.from_hf(go.config, go, i)(x)
    assert np.array_equal(y, MoELayer.from_hf(c, t, i)(x))
    # llama.cpp's gpt-oss GGUFs keep the experts in MXFP4: a clear error naming the type
    blocks = np.zeros((4, 32, 2, 17), np.uint8)  # MXFP4 blocks of 32: 1 scale byte + 16 bytes
    g2 = dict(g)
    g2[f"blk.{i}.ffn_down_exps.weight"] = (blocks.reshape(4, 32, 34), gguf.GGMLQuantizationType.MXFP4)
    _write(tmp_path / "mx.gguf", "gpt-oss", meta, g2)
    gm = open_gguf(tmp_path / "mx.gguf")
    with pytest.raises(CheckpointError, match="tensor type MXFP4 is not supported"):
        MoELayer.from_hf(gm.config, gm, i)


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q4_1", "IQ4_NL"])
@pytest.mark.parametrize("family", ["olmoe", "mixtral", "qwen2_moe"])
def test_gguf_int_layer_keeps_llama_cpp_blocks(tmp_path, family, kind):
    """Expert tensors all Q8_0 / Q4_0 / Q4_1 / IQ4_NL: the layer's INT experts are those blocks, bit for bit."""
    from gguf_files import write_gguf
    from moepy.moe.packed import PackedOnlyExperts
    b = make_block(family, hidden=64, intermediate=32, experts=4, top_k=2, seed=5)
    cfg = dict(b.hf_config)
    qt = getattr(gguf.GGMLQuantizationType, kind)
    write_gguf(tmp_path / "q.gguf", b.tensors_legacy, cfg, qtype=qt)
    g = open_gguf(tmp_path / "q.gguf")
    i = b.layer_index
    m = g.moe_layer(i)
    assert m.dtype == {"Q8_0": "int8", "Q4_0": "int4", "Q4_1": "int4_asym", "IQ4_NL": "int4_nl"}[kind]
    assert m.group_size == 32
    assert isinstance(m.experts, PackedOnlyExperts)
    reader = {t.name: t for t in gguf.GGUFReader(str(tmp_path / "q.gguf")).tensors}
    for w, got in (("gate", m.experts.gate), ("up", m.experts.up), ("down", m.experts.down)):
        t = reader[f"blk.{i}.ffn_{w}_exps.weight"]
        ref = gguf.quants.dequantize(t.data, t.tensor_type).reshape(got.shape)
        assert np.array_equal(got, ref), w  # llama.cpp's values exactly
    x = make_input(9, 64, seed=6)
    f = MoELayer.from_hf(g.config, g, i)  # the same weights dequantized, float32 kernels
    y, yf = m(x), f(x)
    assert np.abs(y - yf).max() < 0.05 * np.abs(yf).max()  # only the activations' int8 rounding differs

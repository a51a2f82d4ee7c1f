"""GGUF files written by the `gguf` package: names and metadata mapped to the family's HF names and config,
F32/F16/BF16/Q8_0/Q4_0/Q4_1/IQ4_NL values equal to gguf's own dequantize, the INT re-layout bit-exact, MoE layers built
from a GGUF equal to those built from the safetensors checkpoint."""
import gguf
import ml_dtypes
import numpy as np
import pytest

from gguf_files import iq4_nl_blocks, write_gguf
from moepy.io import CheckpointError, open_checkpoint, open_gguf
from moepy.io.gguf import relayout
from moepy.moe import MoELayer
from tiny_models import H, saved_model

Q = gguf.GGMLQuantizationType
FAMILIES = ["olmoe", "qwen2_moe", "qwen3_moe", "mixtral"]


@pytest.mark.parametrize("family", FAMILIES)
def test_f32_gguf_equals_the_checkpoint(tmp_path, family):
    d, _ = saved_model(family, "float32")
    ck = open_checkpoint(d)
    write_gguf(tmp_path / "m.gguf", ck, ck.config)
    g = open_gguf(tmp_path / "m.gguf")
    assert g.family.name == family
    # every checkpoint tensor under its HF name, bit-equal (llama's q/k permutation undone)
    for name in ck:
        if name == "lm_head.weight" or name in g:
            assert np.array_equal(np.asarray(g[name]), ck[name]), name
    missing = [n for n in ck if n not in g]
    assert not missing, missing
    mc = g.model_config
    from moepy.configs import ModelConfig
    ref = ModelConfig.from_hf(ck.config)
    for f in ("family", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "num_experts", "top_k",
              "expert_intermediate_size", "shared_intermediate_size", "vocab_size"):
        assert getattr(mc, f) == getattr(ref, f), f
    assert mc.router == ref.router
    x = np.random.default_rng(0).standard_normal((5, H)).astype(np.float32)
    for layer in range(2):
        assert np.array_equal(MoELayer.from_hf(g.config, g, layer)(x), MoELayer.from_hf(ck.config, ck, layer)(x))


@pytest.mark.parametrize("qtype", [Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.IQ4_NL, Q.F16, Q.BF16])
def test_quantized_values_equal_gguf_dequantize(tmp_path, qtype):
    d, _ = saved_model("qwen2_moe", "float32")
    ck = open_checkpoint(d)
    ft = Q.F16 if qtype == Q.F16 else Q.F32
    if qtype == Q.BF16:
        qtype, ft = Q.BF16, Q.F32
    write_gguf(tmp_path / "q.gguf", ck, ck.config, qtype=qtype, float_type=ft)
    g = open_gguf(tmp_path / "q.gguf")
    reader = gguf.GGUFReader(str(tmp_path / "q.gguf"))
    seen = set()
    for t in reader.tensors:
        ref = gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
        kind = t.tensor_type.name
        seen.add(kind)
        hits = [(h, how) for h, how in g.gguf_names.items() if how[1] == t.name]
        assert hits, t.name
        for hf, how in hits:
            got = np.asarray(g[hf])
            want = ref[how[2]] if how[0] == "expert" else ref.reshape(got.shape)
            assert np.array_equal(got.astype(np.float32), want.astype(np.float32)), (t.name, hf)
            if kind == "BF16":
                assert got.dtype == ml_dtypes.bfloat16
        if kind in ("Q8_0", "Q4_0", "Q4_1", "IQ4_NL"):
            q = g.quantized(t.name)
            assert q.format == {"Q8_0": "int8", "Q4_0": "int4", "Q4_1": "int4_asym", "IQ4_NL": "int4_nl"}[kind]
            assert q.group_size == 32
            assert np.array_equal(q.dequantize().reshape(ref.shape), ref.astype(np.float32)), t.name
    assert qtype.name in seen
    x = np.random.default_rng(0).standard_normal((4, H)).astype(np.float32)
    deq = {}
    for h, how in g.gguf_names.items():
        deq[h] = np.asarray(g[h]).astype(np.float32)
    y = MoELayer.from_hf(g.config, g, 1)(x)
    assert np.array_equal(y, MoELayer.from_hf(g.config, deq, 1)(x))


def test_stacked_experts_relayout_and_shapes(tmp_path):
    rng = np.random.default_rng(5)
    for kind in ("Q8_0", "Q4_0", "Q4_1", "IQ4_NL"):
        for shape in [(4, 40, 64), (8, 96), (2, 17, 32)]:
            w = rng.standard_normal(shape).astype(np.float32)
            raw = iq4_nl_blocks(w) if kind == "IQ4_NL" else gguf.quants.quantize(w, getattr(Q, kind))
            q = relayout(raw, kind, shape)
            ref = gguf.quants.dequantize(raw, getattr(Q, kind)).reshape(shape)
            assert np.array_equal(q.dequantize().reshape(shape), ref), (kind, shape)


def test_unsupported_type_is_named(tmp_path):
    d, _ = saved_model("olmoe", "float32")
    ck = open_checkpoint(d)
    write_gguf(tmp_path / "q5.gguf", ck, ck.config, qtype=Q.Q5_0)
    g = open_gguf(tmp_path / "q5.gguf")
    name = "model.layers.0.mlp.gate.weight"
    assert g.tensor_type(name) == "Q5_0"
    with pytest.raises(CheckpointError, match=r"tensor 'blk.0.ffn_gate_inp.weight': tensor type Q5_0 is not supported"):
        g[name]
    with pytest.raises(CheckpointError, match="Q5_0 has no moepy INT format"):
        g.quantized("blk.0.ffn_gate_inp.weight")
    assert np.array_equal(g["model.norm.weight"], ck["model.norm.weight"])  # the F32 tensors still read


def test_not_an_moe_architecture(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "dense.gguf"), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with pytest.raises(CheckpointError, match="not an MoE architecture"):
        open_gguf(tmp_path / "dense.gguf")


def test_checkpoint_error_pickles():
    """A worker process can return it (multiprocessing pickles the exception with its fields)."""
    import pickle
    e = pickle.loads(pickle.dumps(CheckpointError("/x/m.gguf", "blk.0.ffn_up_exps.weight", "bad rows")))
    assert isinstance(e, CheckpointError) and e.tensor == "blk.0.ffn_up_exps.weight" and e.what == "bad rows"
    assert str(e) == "/x/m.gguf: tensor 'blk.0.ffn_up_exps.weight': bad rows"

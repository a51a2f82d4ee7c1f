"""MoELayer.from_hf (moepy/families) against the transformers 5.23 blocks built by tests/hf_blocks.py.

Every family, Hub (per-expert) and v5 fused tensor names, float32 and bf16-rounded weights:
max|moepy - transformers| <= 1e-5 * max|transformers|.
"""
import functools
import json
import re

import ml_dtypes
import numpy as np
import pytest
import torch

import hf_blocks
from hf_blocks import make_block, make_input
from moepy.families import model_types, moe_layer_from_hf, moe_layer_indices
from moepy.moe import MoELayer, to_bf16_bits

pytestmark = pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")

RTOL = 1e-5
FAMILIES = hf_blocks.FAMILIES  # mixtral ... switch
ROUTER_REL = {"dbrx": "router.layer.weight", "llama4": "router.weight", "gpt_oss": "router.weight",
              "switch": "router.classifier.weight", "jamba": "router.weight"}
MAX_REL = {}  # family -> worst relative error seen (printed by test_zz_report with -s)


def router_rel(family):
    return ROUTER_REL.get(family, "gate.weight")


@functools.lru_cache(maxsize=None)
def block(family, hidden=32, intermediate=24, experts=8, top_k=2, seed=0, **kw):
    return make_block(family, hidden=hidden, intermediate=intermediate, experts=experts, top_k=top_k, seed=seed,
                      **kw)


def rel_err(y, ref):
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))


def check(b, x, tensors=None, dtype="float32", hf_config=None, tag=None):
    ref = b.forward(x)
    m = MoELayer.from_hf(b.hf_config if hf_config is None else hf_config,
                         b.tensors_legacy if tensors is None else tensors, b.layer_index, dtype)
    y = m(x)
    assert y.shape == x.shape and y.dtype == np.float32
    err = rel_err(y, ref)
    key = tag or b.family
    MAX_REL[key] = max(MAX_REL.get(key, 0.0), err)
    assert err <= RTOL, f"{b.family}: max rel error {err:.3g}"
    return m, y, ref


def set_param(b, rel, value):
    """Set block parameter `rel` (relative to the block prefix) in the torch module and in both tensor dicts."""
    value = np.ascontiguousarray(value, dtype=np.float32)
    with torch.no_grad():
        dict(b.module.named_parameters())[rel].copy_(torch.from_numpy(value))
    b.tensors_fused[b.prefix_fused + rel] = value
    b.tensors_legacy[b.prefix_legacy + rel] = value


# ------------------------------------------------------------------------------------------- float32
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("T", [1, 5, 64])
@pytest.mark.parametrize("names", ["legacy", "fused"])
def test_matches_transformers(family, T, names):
    b = block(family)
    x = make_input(T, b.hidden, seed=T)
    m, _, _ = check(b, x, b.tensors_legacy if names == "legacy" else b.tensors_fused)
    if T == 1:  # with 8 experts and top-k <= 2, some experts receive no token
        assert (m.last_routing.counts() == 0).any()


@pytest.mark.parametrize("family", FAMILIES)
def test_other_shape(family):
    """H, I not multiples of the panel width (16), more experts, top-4."""
    b = block(family, hidden=40, intermediate=20, experts=16, top_k=4, seed=3)
    x = make_input(23, b.hidden, seed=7, scale=2.0)
    check(b, x, b.tensors_legacy)
    check(b, x, b.tensors_fused)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("top_k", [1, 2])
def test_all_tokens_to_one_expert(family, top_k):
    b = make_block(family, top_k=top_k, seed=11)  # not cached: the router is modified
    H, e0 = b.hidden, 5
    w = b.tensors_fused[b.prefix_fused + router_rel(family)].copy()
    w[e0] = 2.0 / np.sqrt(H)
    set_param(b, router_rel(family), w)
    x = np.abs(make_input(33, H, seed=5)) + 0.5  # all positive: expert e0's logit dominates
    for tensors in (b.tensors_legacy, b.tensors_fused):
        m, _, _ = check(b, x, tensors)
        counts = m.last_routing.counts()
        assert counts[e0] == 33, counts
        if top_k == 1:
            assert counts.sum() == 33


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_input(family):
    b = block(family)
    x = make_input(2 * 7, b.hidden, seed=2).reshape(2, 7, b.hidden)
    _, y, _ = check(b, x)
    assert y.shape == (2, 7, b.hidden)


@pytest.mark.parametrize("impl", ["grouped_mm", "batched_mm"])
@pytest.mark.parametrize("family", [f for f in FAMILIES if f in hf_blocks._DISPATCHING])
def test_other_experts_implementations(family, impl):
    b = block(family, experts_implementation=impl)
    check(b, make_input(19, b.hidden, seed=4), b.tensors_fused)


@pytest.mark.parametrize("family,overrides", [
    ("qwen2_moe", dict(norm_topk_prob=True)),
    ("qwen2_moe", dict(shared_expert_intermediate_size=0)),
    ("qwen3_moe", dict(norm_topk_prob=False)),
    ("olmoe", dict(norm_topk_prob=True)),
    ("dbrx", dict(moe_normalize_expert_weights=2.0)),
    ("dbrx", dict(moe_normalize_expert_weights=None)),
    ("deepseek_v2", dict(topk_method="greedy", routed_scaling_factor=1.0)),
    ("deepseek_v2", dict(n_group=4, topk_group=2, top_k=3)),
    ("deepseek_v3", dict(norm_topk_prob=False, routed_scaling_factor=1.5)),
    ("deepseek_v3", dict(n_shared_experts=2)),
    ("gpt_oss", dict(swiglu_limit=0.5)),
    ("switch", dict(expert_capacity=3)),  # tokens dropped
    ("switch", dict(router_bias=True)),
    ("switch", dict(router_bias=True, expert_capacity=4)),
])
def test_config_variants(family, overrides):
    overrides = dict(overrides)
    top_k = overrides.pop("top_k", 2)
    b = block(family, top_k=top_k, seed=2, **overrides)
    x = make_input(40, b.hidden, seed=9)
    check(b, x, b.tensors_legacy)
    check(b, x, b.tensors_fused)
    if "expert_capacity" in overrides:
        assert not b.kept(x).all()
        xb = x.reshape(4, 10, b.hidden)  # capacity is per batch row
        check(b, xb)


def test_kimi_k2():
    """Kimi K2 = the DeepSeek-V3 block with one expert group."""
    b = block("deepseek_v3", experts=16, top_k=4, n_group=1, topk_group=1, routed_scaling_factor=2.827)
    cfg = dict(b.hf_config, model_type="kimi_k2", architectures=["DeepseekV3ForCausalLM"])
    check(b, make_input(21, b.hidden, seed=1), b.tensors_legacy, hf_config=cfg, tag="kimi_k2")


def test_llama4_text_only_and_per_expert_names():
    b = block("llama4", llama4_text_only=True)
    assert b.hf_config["model_type"] == "llama4_text"
    x = make_input(9, b.hidden, seed=3)
    check(b, x)
    # per-expert nn.Linear names (as some quantized Llama 4 checkpoints store them)
    p = b.prefix_fused
    t = {k: v for k, v in b.tensors_fused.items() if ".experts." not in k}
    gu, down = b.tensors_fused[p + "experts.gate_up_proj"], b.tensors_fused[p + "experts.down_proj"]
    inter = gu.shape[2] // 2
    for e in range(gu.shape[0]):
        t[f"{p}experts.{e}.gate_proj.weight"] = gu[e, :, :inter].T.copy()
        t[f"{p}experts.{e}.up_proj.weight"] = gu[e, :, inter:].T.copy()
        t[f"{p}experts.{e}.down_proj.weight"] = down[e].T.copy()
    check(b, x, t)


def test_llama4_interleaved_layers():
    b = block("llama4", layer_index=3, num_hidden_layers=4, interleave_moe_layer_step=2)
    assert moe_layer_indices(b.hf_config) == [1, 3]
    check(b, make_input(6, b.hidden, seed=2))


@pytest.mark.parametrize("root", ["", "model.", "language_model.model.", "model.language_model.", "mtp.x."])
def test_prefixes(root):
    b = block("qwen2_moe")
    strip = "model."
    t = {root + k[len(strip):]: v for k, v in b.tensors_legacy.items()}
    check(b, make_input(8, b.hidden), t)


def test_switch_decoder_stack():
    b = block("switch", switch_stack="decoder", layer_index=1, num_hidden_layers=4)
    x = make_input(12, b.hidden, seed=1)
    ref = b.forward(x)
    m = MoELayer.from_hf(b.hf_config, b.tensors_legacy, "decoder.1")
    assert rel_err(m(x), ref) <= RTOL


def test_gpt_oss_mxfp4():
    """The openai checkpoint's MXFP4 experts, dequantized as transformers does."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    b = make_block("gpt_oss", hidden=64, intermediate=32, seed=4)
    p = b.prefix_fused
    rng = np.random.default_rng(0)
    t = {k: v for k, v in b.tensors_fused.items() if not k.endswith(("gate_up_proj", "down_proj"))}
    for rel, (R, C) in {"experts.gate_up_proj": (64, 64), "experts.down_proj": (64, 32)}.items():
        blocks = rng.integers(0, 256, (8, R, C // 32, 16), dtype=np.uint8)
        scales = rng.integers(122, 126, (8, R, C // 32), dtype=np.uint8)
        t[p + rel + "_blocks"], t[p + rel + "_scales"] = blocks, scales
        w = convert_moe_packed_tensors(torch.from_numpy(blocks), torch.from_numpy(scales), dtype=torch.float32)
        set_param(b, rel, w.numpy())
    check(b, make_input(10, b.hidden, seed=5), t)


# ------------------------------------------------------------------------------------------- bf16
def _is_expert_weight(rel):
    return ("experts" in rel or "shared_expert." in rel) and not rel.endswith("bias")


def bf16_block(family, **kw):
    """A block whose expert weights are bf16-rounded in the torch module; tensors with those weights as
    ml_dtypes.bfloat16 (router, gates, biases stay float32)."""
    b = make_block(family, seed=6, **kw)
    with torch.no_grad():
        for name, prm in b.module.named_parameters():
            if _is_expert_weight(name):
                prm.copy_(prm.to(torch.bfloat16).to(torch.float32))
    fused = {b.prefix_fused + k: v.detach().numpy().copy() for k, v in b.module.state_dict().items()}
    legacy = hf_blocks._split_fused(family, fused, b.prefix_fused, b.prefix_legacy)

    def to_bf16(d, prefix):
        return {k: v.astype(ml_dtypes.bfloat16) if _is_expert_weight(k[len(prefix):]) else v for k, v in d.items()}
    return b, to_bf16(fused, b.prefix_fused), to_bf16(legacy, b.prefix_legacy)


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_weights(family):
    b, fused, legacy = bf16_block(family)
    assert any(v.dtype == ml_dtypes.bfloat16 for v in legacy.values())
    x = make_input(17, b.hidden, seed=8)
    for tensors in (legacy, fused):
        m, _, _ = check(b, x, tensors, dtype="bfloat16", tag=family + "/bf16")
        assert m.dtype == "bfloat16"
    # raw bf16 bits (uint16), and bf16 tensors widened to a float32 layer
    raw = {k: (to_bf16_bits(v) if v.dtype == ml_dtypes.bfloat16 else v) for k, v in legacy.items()}
    check(b, x, raw, dtype="bfloat16", tag=family + "/bf16")
    check(b, x, raw, dtype="float32", tag=family + "/bf16")
    check(b, x, fused, dtype="float32", tag=family + "/bf16")
    # float32 tensors holding bf16-representable values, packed as bf16 (round to nearest even: exact)
    f32 = {k: (v.astype(np.float32) if v.dtype == ml_dtypes.bfloat16 else v) for k, v in fused.items()}
    check(b, x, f32, dtype="bfloat16", tag=family + "/bf16")


def test_bf16_rounding_of_float32_weights():
    """dtype="bfloat16" with float32 tensors rounds them; the result is that of the bf16-rounded block."""
    b = make_block("mixtral", seed=13)
    x = make_input(11, b.hidden, seed=1)
    m32 = MoELayer.from_hf(b.hf_config, b.tensors_fused, 1, "float32")
    m16 = MoELayer.from_hf(b.hf_config, b.tensors_fused, 1, "bfloat16")
    y32, y16 = m32(x), m16(x)
    assert 1e-5 < rel_err(y16, y32) < 2e-2  # rounding happened, and only rounding


# ------------------------------------------------------------------------------------------- layers / errors
def test_moe_layer_indices():
    q = block("qwen2_moe").hf_config
    assert moe_layer_indices(dict(q, num_hidden_layers=6, decoder_sparse_step=2)) == [1, 3, 5]
    assert moe_layer_indices(dict(q, num_hidden_layers=6, mlp_only_layers=[0, 4])) == [1, 2, 3, 5]
    with pytest.raises(ValueError, match="num_experts"):  # a dense Qwen2: no MoE layer to read
        moe_layer_indices(dict(q, num_hidden_layers=6, num_experts=0))
    d = block("deepseek_v3").hf_config
    assert moe_layer_indices(dict(d, num_hidden_layers=8, first_k_dense_replace=3)) == [3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="moe_layer_freq"):  # transformers ignores it: refuse rather than guess
        moe_layer_indices(dict(d, num_hidden_layers=8, first_k_dense_replace=1, moe_layer_freq=2))
    ll = block("llama4").hf_config
    text = dict(ll["text_config"], num_hidden_layers=48, interleave_moe_layer_step=2)
    assert moe_layer_indices(dict(ll, text_config=text)) == list(range(1, 48, 2))
    assert moe_layer_indices(dict(ll, text_config=dict(text, moe_layers=[5, 2]))) == [2, 5]
    assert moe_layer_indices(block("dbrx").hf_config) == [0, 1]
    sw = dict(block("switch").hf_config, num_layers=12, num_decoder_layers=12, num_sparse_encoder_layers=6,
              num_sparse_decoder_layers=6)
    assert moe_layer_indices(sw) == [1, 3, 5, 7, 9, 11]
    assert moe_layer_indices(sw, "decoder") == [1, 3, 5, 7, 9, 11]


@pytest.mark.parametrize("family,cfg_update,dense,moe", [
    ("deepseek_v3", {}, 0, "[1]"),
    ("qwen2_moe", dict(decoder_sparse_step=2), 0, "[1]"),
    ("mixtral", {}, 2, "[0, 1]"),  # out of range
])
def test_dense_layer_raises(family, cfg_update, dense, moe):
    b = block(family)
    cfg = dict(b.hf_config, **cfg_update)
    with pytest.raises(ValueError, match=rf"layer {dense} is not an MoE layer.*" + re.escape(moe)):
        MoELayer.from_hf(cfg, b.tensors_legacy, dense)


def test_llama4_dense_layer_raises():
    b = block("llama4", layer_index=3, num_hidden_layers=4, interleave_moe_layer_step=2)
    with pytest.raises(ValueError, match=r"layer 2 is not an MoE layer.*\[1, 3\]"):
        MoELayer.from_hf(b.hf_config, b.tensors_legacy, 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_tensor_raises(family):
    b = block(family)
    for tensors in (b.tensors_legacy, b.tensors_fused):
        # drop an expert tensor
        victim = sorted(k for k in tensors if "experts" in k and not k.endswith("bias"))[-1]
        t = {k: v for k, v in tensors.items() if k != victim}
        with pytest.raises(KeyError, match=victim.replace(".", r"\.")):
            MoELayer.from_hf(b.hf_config, t, b.layer_index)
        # drop the router
        r = router_rel(family)
        t = {k: v for k, v in tensors.items() if not k.endswith(r)}
        with pytest.raises(KeyError, match=r.replace(".", r"\.")):
            MoELayer.from_hf(b.hf_config, t, b.layer_index)


def test_missing_selection_bias_and_shared_gate():
    b = block("deepseek_v3")
    t = {k: v for k, v in b.tensors_legacy.items() if "e_score_correction_bias" not in k}
    with pytest.raises(KeyError, match=r"model\.layers\.1\.mlp\.gate\.e_score_correction_bias"):
        MoELayer.from_hf(b.hf_config, t, 1)
    b = block("qwen2_moe")
    t = {k: v for k, v in b.tensors_legacy.items() if "shared_expert_gate" not in k}
    with pytest.raises(KeyError, match=r"model\.layers\.1\.mlp\.shared_expert_gate\.weight"):
        MoELayer.from_hf(b.hf_config, t, 1)


def test_unknown_model_type():
    b = block("mixtral")
    with pytest.raises(ValueError, match="'llama'"):
        MoELayer.from_hf(dict(b.hf_config, model_type="llama"), b.tensors_legacy, 1)
    assert "kimi_k2" in model_types() and "llama4_text" in model_types()


def test_config_path(tmp_path):
    b = block("dbrx")
    (tmp_path / "config.json").write_text(json.dumps(b.hf_config))
    x = make_input(5, b.hidden)
    ref = b.forward(x)
    for path in (tmp_path, tmp_path / "config.json", str(tmp_path / "config.json")):
        m = moe_layer_from_hf(path, b.tensors_legacy, b.layer_index, "float32")
        assert rel_err(m(x), ref) <= RTOL


def test_qwen3_num_local_experts_spelling():
    b = block("qwen3_moe")
    cfg = {k: v for k, v in b.hf_config.items() if k != "num_experts"}
    cfg["num_local_experts"] = b.num_experts  # what 5.23 save_pretrained writes
    check(b, make_input(7, b.hidden), hf_config=cfg)


def test_torch_tensors_accepted():
    b = block("olmoe")
    t = {k: torch.from_numpy(v) for k, v in b.tensors_legacy.items()}
    check(b, make_input(4, b.hidden), t)


def test_zz_report():
    """Prints the worst relative error per family (run with -s)."""
    for k in sorted(MAX_REL):
        print(f"{k:18s} max rel err {MAX_REL[k]:.3g}")

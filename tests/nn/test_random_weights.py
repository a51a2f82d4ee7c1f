"""moepy.nn.random_weights.random_tensors against transformers 5.23: for every supported family the arrays load
into AutoModelForCausalLM.from_config(cfg) with load_state_dict(strict=True) (the same names and shapes), and
they are deterministic per seed."""
import copy
import os
import re
import sys

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "families"))
import hf_blocks as hb  # noqa: E402

from moepy.families import moe_layer_indices  # noqa: E402
from moepy.nn.random_weights import random_tensors  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")

# F != H / 2 so that a transposed expert tensor has the wrong shape
H, F, E, K, L = 32, 12, 4, 2, 3


def _with(d, **kw):
    d = copy.deepcopy(d)
    d.update(kw)
    return d


CONFIGS = {
    "mixtral": hb._cfg_mixtral(H, F, E, K, L),
    "qwen2_moe": hb._cfg_qwen2_moe(H, F, E, K, L),
    "qwen2_moe-mlp_only": _with(hb._cfg_qwen2_moe(H, F, E, K, 4), mlp_only_layers=[1]),
    "qwen2_moe-sparse_step": _with(hb._cfg_qwen2_moe(H, F, E, K, 4), decoder_sparse_step=2),
    "qwen3_moe": hb._cfg_qwen3_moe(H, F, E, K, L),
    "qwen3_moe-mlp_only-bias": _with(hb._cfg_qwen3_moe(H, F, E, K, L), mlp_only_layers=[0], attention_bias=True),
    "olmoe": hb._cfg_olmoe(H, F, E, K, L),
    "dbrx": hb._cfg_dbrx(H, F, E, K, L),
    "deepseek_v2": hb._cfg_deepseek(2, H, F, E, K, L),
    "deepseek_v2-q_proj": _with(hb._cfg_deepseek(2, H, F, E, K, L), q_lora_rank=None),
    "deepseek_v3": hb._cfg_deepseek(3, H, F, E, K, L),
    "deepseek_v3-first_k2": _with(hb._cfg_deepseek(3, H, F, E, K, L), first_k_dense_replace=2),
    "llama4_text": hb._cfg_llama4_text(H, F, E, K, L),
    "llama4_text-interleave2": _with(hb._cfg_llama4_text(H, F, E, K, 4), interleave_moe_layer_step=2),
    "gpt_oss": hb._cfg_gpt_oss(H, F, E, K, L),
    "mixtral-tied": _with(hb._cfg_mixtral(H, F, E, K, L), tie_word_embeddings=True),
}


def _hf_model(d):
    fields = {k: hb._coerce(k, v) for k, v in d.items() if k not in ("architectures", "torch_dtype")}
    cfg = AutoConfig.for_model(fields.pop("model_type"), **fields)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_loads_strict_into_transformers(name):
    d = CONFIGS[name]
    t = random_tensors(d, seed=1)
    assert all(v.dtype == np.float32 for v in t.values())
    model = _hf_model(d)
    sd = {k: torch.from_numpy(v) for k, v in t.items()}
    if d.get("tie_word_embeddings"):
        assert "lm_head.weight" not in t
        res = model.load_state_dict(sd, strict=False)  # the tied lm_head.weight is the embedding
        assert res.missing_keys == ["lm_head.weight"] and res.unexpected_keys == []
        assert model.lm_head.weight is model.get_input_embeddings().weight
    else:
        model.load_state_dict(sd, strict=True)
    loaded = model.state_dict()
    for k, v in t.items():
        np.testing.assert_array_equal(loaded[k].numpy(), v, err_msg=k)


@pytest.mark.parametrize("name", ["qwen2_moe-mlp_only", "qwen2_moe-sparse_step", "deepseek_v3",
                                  "llama4_text-interleave2", "mixtral"])
def test_moe_layers_match_moepy(name):
    d = CONFIGS[name]
    t = random_tensors(d)
    moe = sorted({int(m.group(1)) for k in t for m in [re.search(r"layers\.(\d+)\.(?:mlp|feed_forward)\.experts\.", k)]
                  if m})
    assert moe == sorted(moe_layer_indices(d))
    assert len(moe) < d["num_hidden_layers"] or name == "mixtral"


def test_deterministic_and_distributions():
    d = CONFIGS["deepseek_v3"]
    a, b, c = random_tensors(d, seed=3), random_tensors(d, seed=3), random_tensors(d, seed=4)
    assert list(a) == list(b) == list(c)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    norm = a["model.layers.0.input_layernorm.weight"]
    assert not np.all(norm == 1) and abs(norm.mean() - 1) < 0.1
    bias = a["model.layers.1.mlp.gate.e_score_correction_bias"]
    assert bias.std() > 0.02
    w = random_tensors(d, seed=3, std=0.5)["model.embed_tokens.weight"]
    np.testing.assert_allclose(w, a["model.embed_tokens.weight"] * 25, rtol=1e-5)
    sinks = random_tensors(CONFIGS["gpt_oss"])["model.layers.0.self_attn.sinks"]
    assert sinks.shape == (4,) and np.abs(sinks).max() > 0.1


def test_llama4_multimodal_uses_text_config():
    text = {k: v for k, v in CONFIGS["llama4_text"].items() if k != "torch_dtype"}
    d = {"model_type": "llama4", "text_config": text, "vision_config": dict(hb._LLAMA4_TINY_VISION)}
    a, b = random_tensors(d), random_tensors(text)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_kimi_k2_is_deepseek_v3():
    d = CONFIGS["deepseek_v3"]
    a, b = random_tensors(d), random_tensors(_with(d, model_type="kimi_k2"))
    assert list(a) == list(b)


def test_unknown_model_type():
    with pytest.raises(ValueError, match="not_a_model"):
        random_tensors({"model_type": "not_a_model", "hidden_size": 8})

"""config.json and checkpoint arguments are untrusted input: absurd sizes, wrong JSON types and wrong
containers raise ValueError/TypeError naming the field, at once (regressions of issue 8's hardening list)."""
import json

import numpy as np
import pytest

import moepy
from moepy import ModelConfig, MoELayer

QWEN3 = moepy.configs.get("qwen3-30b-a3b").scaled().to_hf()
MIXTRAL = moepy.configs.get("mixtral-8x7b").scaled().to_hf()


def test_absurd_sizes_are_refused_at_once():
    for field, key in (("num_layers", "num_hidden_layers"), ("vocab_size", "vocab_size"),
                       ("num_experts", "num_experts"), ("hidden_size", "hidden_size")):
        with pytest.raises(ValueError, match=field):
            ModelConfig.from_hf(dict(QWEN3, **{key: 10 ** 9}))
    with pytest.raises(ValueError, match="num_layers=1,000,000,000 exceeds the bound"):
        moepy.configs.get("deepseek-v3").replace(num_layers=10 ** 9)


def test_parameter_product_is_bounded():
    big = moepy.configs.get("switch-c-2048")  # 1.6T parameters: fine
    assert big.count_params().total > 1e12
    with pytest.raises(ValueError, match="parameters exceed the bound"):
        big.replace(num_layers=4000, num_experts=60000, top_k=1)


@pytest.mark.parametrize("key,value", [
    ("hidden_size", "64"), ("hidden_size", 64.0), ("hidden_size", True), ("num_hidden_layers", [2]),
    ("tie_word_embeddings", "false"), ("tie_word_embeddings", 0), ("norm_topk_prob", "yes"),
    ("hidden_act", 3), ("decoder_sparse_step", 0), ("mlp_only_layers", "0"), ("mlp_only_layers", [0.5]),
])
def test_wrong_json_types_name_the_field(key, value):
    with pytest.raises(ValueError, match=key):
        ModelConfig.from_hf(dict(QWEN3, **{key: value}))


def test_config_files(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        ModelConfig.from_hf(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelConfig.from_hf(tmp_path)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ModelConfig.from_hf(tmp_path / "missing")
    with pytest.raises(TypeError, match="config must be"):
        ModelConfig.from_hf(42)


def test_tensors_must_be_a_mapping(tmp_path):
    with pytest.raises(TypeError, match="tensors must be a mapping"):
        MoELayer.from_hf(MIXTRAL, [np.zeros(3)], 0)
    with pytest.raises(TypeError, match="tensors must be a mapping"):
        MoELayer.from_hf(MIXTRAL, str(tmp_path), 0)
    with pytest.raises(TypeError, match="layer_index must be an int"):
        MoELayer.from_hf(MIXTRAL, {}, 0.0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        MoELayer.from_hf(MIXTRAL, {}, 0, dtype="int3")


def test_gpt_oss_gate_up_must_be_3d():
    cfg = moepy.configs.get("gpt-oss-20b").scaled().to_hf()
    H, E, I = cfg["hidden_size"], cfg["num_local_experts"], cfg["intermediate_size"]
    p = "model.layers.0.mlp."
    t = {p + "router.weight": np.zeros((E, H), np.float32), p + "router.bias": np.zeros(E, np.float32),
         p + "experts.gate_up_proj": np.zeros((H, 2 * I), np.float32),
         p + "experts.down_proj": np.zeros((E, I, H), np.float32)}
    with pytest.raises(ValueError, match="gate_up_proj: expected"):
        MoELayer.from_hf(cfg, t, 0)


def test_unknown_family_and_model_type():
    with pytest.raises(ValueError, match="unknown family"):
        moepy.families.get("nope")
    with pytest.raises(ValueError, match="unsupported model_type 'llama'"):
        ModelConfig.from_hf(dict(MIXTRAL, model_type="llama", architectures=["LlamaForCausalLM"]))
    with pytest.raises(ValueError, match="family must be one of"):
        moepy.configs.get("mixtral-8x7b").replace(family="nope")


def test_round_trip_still_holds_for_every_hf_preset(tmp_path):
    for name in moepy.configs.names():
        cfg = moepy.configs.get(name)
        if moepy.families.get(cfg.family).write_hf is None:
            continue
        s = cfg.scaled()
        s.save_hf(tmp_path)
        assert ModelConfig.from_hf(json.loads((tmp_path / "config.json").read_text())) == s, name


@pytest.mark.parametrize("key,value", [("head_dim", 1e999), ("intermediate_size", 1e999), ("moe_intermediate_size", 0)])
def test_impossible_values_are_value_errors(key, value):
    base = moepy.configs.get("qwen1.5-moe-a2.7b").scaled().to_hf() if key == "moe_intermediate_size" else QWEN3
    with pytest.raises(ValueError):
        ModelConfig.from_hf(dict(base, **{key: value}))


@pytest.mark.parametrize("key", ["attention_bias", "use_sliding_window"])
def test_flags_given_as_strings_are_refused(key):
    with pytest.raises(ValueError, match=key):
        ModelConfig.from_hf(dict(QWEN3, **{key: "false"}))

"""MoEModel against transformers 5.23: whole-model logits, batches with padding, prefill + decode through the
cache, greedy generation and router traces, for tiny random models of every family (tests/nn/hf_models.py)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import hf_models as hm  # noqa: E402
from moepy.nn import MoEModel  # noqa: E402

NAMES = sorted(hm.CONFIGS)
TOL = 1e-4


def _ids(T, B=None, seed=0, V=64):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (T,) if B is None else (B, T))


def load(name, **kw):
    _, path, _ = hm.make_model(name)
    return MoEModel.from_pretrained(path, progress=False, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_logits_match_transformers(name):
    ref_model, _, _ = hm.make_model(name)
    m = load(name)
    ids = _ids(17, B=2, seed=1)  # longer than every sliding window and Llama 4 chunk of the configs
    ref = hm.hf_logits(ref_model, ids)
    got = m(ids)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert hm.rel_err(got, ref) < TOL
    one = m(ids[0])  # a (T,) id array gives (T, V)
    assert one.shape == ref.shape[1:]
    np.testing.assert_array_equal(one, got[0])  # a batch equals its rows, bit for bit


@pytest.mark.parametrize("name", [n for n in NAMES if n != "mixtral_dynamic"])  # dynamic: one length per batch
def test_left_padded_batch_equals_rows(name):
    m = load(name)
    a, b = _ids(11, seed=2), _ids(6, seed=3)
    ids = np.zeros((2, 11), np.int64)
    mask = np.zeros((2, 11), np.int64)
    ids[0], mask[0] = a, 1
    ids[1, 5:], mask[1, 5:] = b, 1
    got = m(ids, attention_mask=mask)
    np.testing.assert_allclose(got[0], m(a), rtol=0, atol=1e-5 * np.abs(got[0]).max())
    np.testing.assert_allclose(got[1, 5:], m(b), rtol=0, atol=1e-5 * np.abs(got[1]).max())


@pytest.mark.parametrize("name", [n for n in NAMES if n != "mixtral_dynamic"])  # dynamic RoPE: see below
def test_prefill_then_decode_equals_full_forward(name):
    m = load(name)
    ids = _ids(16, seed=4)
    full = m(ids)
    cache = m.new_cache()
    parts = [m(ids[:9], cache=cache)]
    for t in range(9, 16):  # one token per call: MLA runs its absorbed form here
        parts.append(m(ids[t:t + 1], cache=cache))
    assert cache.length == 16
    got = np.concatenate(parts)
    assert hm.rel_err(got, full) < 1e-5
    last = m(ids, logits_to_keep=3)
    np.testing.assert_array_equal(last, full[-3:])


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe", "deepseek_v3", "llama4", "gpt_oss", "dbrx"])
def test_greedy_generate_matches_transformers(name):
    ref_model, _, _ = hm.make_model(name)
    m = load(name)
    prompt = _ids(5, seed=5)
    with torch.no_grad():
        ref = ref_model.generate(torch.from_numpy(prompt[None]), max_new_tokens=12, do_sample=False,
                                 eos_token_id=None, pad_token_id=0, attention_mask=torch.ones(1, 5, dtype=torch.long))
    m.spec = type(m.spec)(**{**m.spec.__dict__, "eos_token_ids": ()})  # transformers was told: no EOS
    got = m.generate(prompt, max_new_tokens=12)
    np.testing.assert_array_equal(got, ref[0].numpy())
    streamed = []
    again = m.generate(prompt, max_new_tokens=12, stream=streamed.append)
    np.testing.assert_array_equal(again, got)
    assert streamed == [int(t) for t in got[5:]]


MOE_BLOCKS = {"MixtralSparseMoeBlock", "Qwen2MoeSparseMoeBlock", "Qwen3MoeSparseMoeBlock", "OlmoeSparseMoeBlock",
              "DbrxFFN", "DeepseekV2Moe", "DeepseekV3MoE", "Llama4TextMoe", "GptOssMLP"}


def _moe_inputs(ref_model, ids):
    """transformers' inputs of every MoE block (layer index -> (T, H)), by forward hooks."""
    found = {}
    hooks = []
    for name, mod in ref_model.named_modules():
        parts = name.split(".")
        if type(mod).__name__ in MOE_BLOCKS:
            i = int(parts[-2])
            hooks.append(mod.register_forward_hook(
                lambda mod, args, out, i=i: found.__setitem__(i, args[0].reshape(-1, args[0].shape[-1]).numpy())))
    try:
        hm.hf_logits(ref_model, ids)
    finally:
        for h in hooks:
            h.remove()
    return found


@pytest.mark.parametrize("name", NAMES)
def test_router_traces(name):
    ref_model, _, _ = hm.make_model(name)
    m = load(name)
    ids = _ids(12, B=1, seed=6)
    logits, routing = m(ids, return_routing=True)
    assert sorted(routing) == sorted(m.moe_layers)
    hf_in = _moe_inputs(ref_model, ids)
    assert sorted(hf_in) == sorted(routing), "every MoE layer of transformers is traced"
    for i, r in routing.items():
        assert r.experts.shape == (12, m.moe_layers[i].router.top_k)
        # the router run on transformers' own MoE input picks the same experts (moepy's router is tied to
        # transformers' block by tests/families/test_layer_hf.py)
        ref = m.moe_layers[i].route(hf_in[i])
        np.testing.assert_array_equal(np.sort(r.experts, axis=1), np.sort(ref.experts, axis=1))


def test_dbrx_follows_attn_config_rope_theta():
    """transformers 5.23 takes DBRX's RoPE base from the top level and ignores attn_config.rope_theta, which
    real DBRX config.json files carry: moepy follows the checkpoint."""
    _, path, d = hm.make_model("dbrx")
    import json
    import os
    import shutil
    import tempfile
    other = tempfile.mkdtemp()
    for f in os.listdir(path):
        shutil.copy(os.path.join(path, f), other)
    cfg = json.load(open(os.path.join(path, "config.json")))
    cfg.pop("rope_theta", None)
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}  # what transformers would use
    json.dump(cfg, open(os.path.join(other, "config.json"), "w"))
    ids = _ids(9, seed=7)
    a = MoEModel.from_pretrained(path, progress=False)(ids)
    b = MoEModel.from_pretrained(other, progress=False)(ids)
    np.testing.assert_array_equal(a, b)  # attn_config.rope_theta (500000) wins in both


def test_dynamic_rope_recomputes_like_transformers_step_by_step():
    """Dynamic NTK RoPE changes its frequencies with the longest position seen, so transformers' own decode differs
    from its full forward past max_position_embeddings; moepy's decode follows transformers' decode."""
    ref_model, _, _ = hm.make_model("mixtral_dynamic")
    m = load("mixtral_dynamic")
    ids = _ids(14, seed=8)
    cache = m.new_cache(capacity=32)  # past max_position_embeddings (8), the default capacity
    got = [m(ids[:6], cache=cache)] + [m(ids[t:t + 1], cache=cache) for t in range(6, 14)]
    from transformers import DynamicCache
    c = DynamicCache(config=ref_model.config)
    ref = []
    with torch.no_grad():
        ref.append(ref_model(torch.from_numpy(ids[None, :6]), past_key_values=c, use_cache=True).logits[0].numpy())
        for t in range(6, 14):
            ref.append(ref_model(torch.from_numpy(ids[None, t:t + 1]), past_key_values=c, use_cache=True)
                       .logits[0].numpy())
    assert hm.rel_err(np.concatenate(got), np.concatenate(ref)) < TOL


def test_llama4_multimodal_checkpoint_runs_its_text_decoder(tmp_path):
    """A Llama4ForConditionalGeneration checkpoint (vision tower, text under language_model.): its text decoder."""
    import copy
    from transformers import Llama4Config, Llama4ForConditionalGeneration
    text = hm._strip(hm.CONFIGS["llama4"]())
    text.pop("model_type")
    cfg = Llama4Config(text_config=text, vision_config=copy.deepcopy(hm.hb._LLAMA4_TINY_VISION),
                       boi_token_index=60, eoi_token_index=61, image_token_index=62)
    full = Llama4ForConditionalGeneration(cfg).eval()
    ref_model, _, _ = hm.make_model("llama4")
    lm = full.language_model
    lm.load_state_dict(ref_model.state_dict() if hasattr(lm, "lm_head") else ref_model.model.state_dict())
    if not hasattr(lm, "lm_head"):
        full.lm_head.load_state_dict(ref_model.lm_head.state_dict())
    full.save_pretrained(tmp_path)
    m = MoEModel.from_pretrained(tmp_path, progress=False)
    ids = _ids(10, seed=9)
    assert hm.rel_err(m(ids), hm.hf_logits(ref_model, ids[None])[0]) < TOL


def test_kimi_k2_config_runs_as_deepseek_v3(tmp_path):
    """Kimi K2's config.json (model_type kimi_k2, which transformers does not register) runs DeepSeek-V3's decoder."""
    import json
    import shutil
    ref_model, path, _ = hm.make_model("deepseek_v3")
    shutil.copytree(path, tmp_path / "k2")
    cfg = json.load(open(tmp_path / "k2" / "config.json"))
    cfg["model_type"] = "kimi_k2"
    json.dump(cfg, open(tmp_path / "k2" / "config.json", "w"))
    m = MoEModel.from_pretrained(tmp_path / "k2", progress=False)
    assert m.spec.family == "deepseek_v3"
    ids = _ids(10, seed=10)
    assert hm.rel_err(m(ids), hm.hf_logits(ref_model, ids[None])[0]) < TOL

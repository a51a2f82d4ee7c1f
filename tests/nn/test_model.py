"""MoEModel without transformers: from_config for every decoder preset, save_pretrained round trips (float, bf16,
INT), bf16 / INT error against float32, determinism across threads, router replacement, sampling, tokenizer text,
and bad input."""
import json
import os

import numpy as np
import pytest

import moepy
from conftest import num_threads
from moepy.configs import presets
from moepy.nn import MoEModel

DECODER_PRESETS = [n for n in presets.names()
                   if moepy.families.registry.get(presets.get(n).family).decoder is not None]
PRESET_ONLY = [n for n in presets.names() if n not in DECODER_PRESETS]


def tiny(name="qwen3-30b-a3b", seed=0, **sizes):
    return MoEModel.from_config(presets.get(name).scaled(**sizes), seed=seed, std=0.2)


def ids_of(m, T=12, B=None, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, m.vocab_size, (T,) if B is None else (B, T))


@pytest.mark.parametrize("name", DECODER_PRESETS)
def test_from_config_every_decoder_preset(name):
    m = tiny(name)
    ids = ids_of(m)
    out = m(ids)
    assert out.shape == (12, m.vocab_size) and np.isfinite(out).all()
    np.testing.assert_array_equal(tiny(name)(ids), out)  # seeded
    assert m.config.family == presets.get(name).family
    cache = m.new_cache()  # prefill + decode equals the full forward for every preset's design too
    steps = np.concatenate([m(ids[:7], cache=cache)] + [m(ids[t:t + 1], cache=cache) for t in range(7, 12)])
    assert np.abs(steps - out).max() <= 1e-5 * np.abs(out).max()


@pytest.mark.parametrize("name", PRESET_ONLY)
def test_preset_only_families_say_so(name):
    with pytest.raises(ValueError, match="no whole decoder|no Hugging Face config.json|runs no"):
        MoEModel.from_config(presets.get(name).scaled())


@pytest.mark.parametrize("kw", [{}, {"dtype": "bfloat16"}, {"quantize": "int8"}, {"quantize": "int4"},
                                {"quantize": "int4_asym", "dtype": "bfloat16"}, {"quantize": "int4_nl"}])
def test_save_pretrained_round_trip_is_bit_exact(tmp_path, kw):
    src = tiny("deepseek-v3")
    src.save_pretrained(tmp_path / "src")
    m = MoEModel.from_pretrained(tmp_path / "src", progress=False, **kw)
    m.save_pretrained(tmp_path / "out")
    back = MoEModel.from_pretrained(tmp_path / "out", progress=False)
    assert back.dtype == m.dtype and back.quantize == m.quantize
    ids = ids_of(m, B=2)
    np.testing.assert_array_equal(back(ids), m(ids))
    if "quantize" in kw:
        for i, layer in back.moe_layers.items():
            assert layer.dtype == kw["quantize"]
        with pytest.raises(ValueError, match="quantize"):
            MoEModel.from_pretrained(tmp_path / "out", quantize="int8" if kw["quantize"] != "int8" else "int4",
                                     progress=False)
    # a float model saved by moepy quantizes on load like any checkpoint
    direct = MoEModel.from_hf(src.hf_config, _tensors_of(src), quantize="int4", dtype=kw.get("dtype", "float32"))
    via_saved = MoEModel.from_pretrained(tmp_path / "src", quantize="int4", progress=False,
                                         dtype=kw.get("dtype", "float32"))
    np.testing.assert_array_equal(via_saved(ids), direct(ids))


def _tensors_of(model):
    from moepy.nn.random_weights import random_tensors
    return random_tensors(model.hf_config, seed=0, std=0.2)


def _errors(m, ref, ids):
    a, b = m(ids), ref(ids)
    rms = float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b ** 2)))
    top1 = float(np.mean(a.argmax(-1) == b.argmax(-1)))
    return rms, top1


def test_bf16_and_int_error_against_float32(tmp_path):
    """Relative logit RMS error and top-1 agreement (the README's table: benchmarks/model_error.py)."""
    src = MoEModel.from_config(presets.get("olmoe-1b-7b").scaled(hidden_size=128, expert_intermediate_size=64),
                               std=0.02)
    src.save_pretrained(tmp_path)
    ref = MoEModel.from_pretrained(tmp_path, progress=False)
    ids = ids_of(ref, T=64, B=2, seed=3)
    bounds = {("bfloat16", None): (0.01, 0.97), ("float32", "int8"): (0.002, 0.99),
              ("float32", "int4"): (0.02, 0.95)}
    for (dtype, q), (max_rms, min_top1) in bounds.items():
        m = MoEModel.from_pretrained(tmp_path, dtype=dtype, quantize=q, progress=False)
        rms, top1 = _errors(m, ref, ids)
        assert rms < max_rms and top1 > min_top1, (dtype, q, rms, top1)


def test_deterministic_across_threads_and_runs():
    m = tiny("gpt-oss-20b")
    ids = ids_of(m, T=20, B=3)
    with num_threads(1):
        one = m(ids)
    with num_threads(2):
        two = m(ids)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(m(ids), two)
    np.testing.assert_array_equal(m(ids[1]), two[1])  # a row does not depend on the other rows
    from conftest import available_isas, isa
    for name in available_isas():  # moepy's kernels agree bit for bit on every ISA
        with isa(name):
            np.testing.assert_array_equal(m(ids), two)


def test_set_router_and_restore():
    m = tiny("mixtral-8x7b")
    ids = ids_of(m)
    base, routing = m(ids, return_routing=True)
    k = m.config.top_k
    import dataclasses
    old = m.set_router(lambda i, r: dataclasses.replace(r, top_k=1))
    one, r1 = m(ids, return_routing=True)
    assert all(r.experts.shape[1] == 1 for r in r1.values())
    assert not np.array_equal(one, base)
    m.set_router(lambda i, r: old[i])
    np.testing.assert_array_equal(m(ids), base)
    assert all(r.experts.shape[1] == k for r in routing.values())
    with pytest.raises(ValueError, match="not MoE layers"):
        m.set_router(old[0], layers=[99])
    with pytest.raises(TypeError, match="RouterConfig"):
        m.set_router(lambda i, r: "softmax")


def test_sampling():
    m = tiny("qwen3-30b-a3b")
    p = ids_of(m, T=4)
    greedy = m.generate(p, max_new_tokens=8)
    assert greedy.shape == (12,) and np.array_equal(greedy[:4], p)
    np.testing.assert_array_equal(m.generate(p, 8, temperature=0.7, top_k=1, seed=1), greedy)
    np.testing.assert_array_equal(m.generate(p, 8, temperature=1.0, top_p=1e-6, seed=1), greedy)
    a = m.generate(p, 8, temperature=1.5, seed=3)
    np.testing.assert_array_equal(m.generate(p, 8, temperature=1.5, seed=3), a)
    stop = int(greedy[6])
    cut = m.generate(p, 8, stop=[stop])
    assert cut[-1] == stop and len(cut) == 4 + list(greedy[4:]).index(stop) + 1
    batch = m.generate(np.stack([p, p]), max_new_tokens=8)
    np.testing.assert_array_equal(batch[1], greedy)


def test_tokenizer_text_generation(tmp_path):
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    m = tiny("mixtral-8x7b", vocab_size=320)  # the byte-level alphabet has 256 symbols
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=m.vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the cat sat on the mat " * 20, "a dog ran in the park " * 20], trainer)
    from tokenizers import decoders
    tok.decoder = decoders.ByteLevel()
    m.save_pretrained(tmp_path)
    tok.save(str(tmp_path / "tokenizer.json"))
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True},
              open(tmp_path / "tokenizer_config.json", "w"))
    m2 = MoEModel.from_pretrained(tmp_path, progress=False)
    assert m2.tokenizer is not None and m2.tokenizer.bos_token_id == 1
    ids = m2.tokenizer.encode("the cat")
    assert ids[0] == 1 and m2.tokenizer.decode(ids) == "the cat"
    pieces = []
    text = m2.generate("the cat", max_new_tokens=6, stream=pieces.append)
    assert text.startswith("the cat") and text == "the cat" + "".join(pieces)
    same = m2.generate(prompt="the cat", max_new_tokens=6)
    assert same == text
    m2.save_pretrained(tmp_path / "copy")  # the tokenizer files travel with the model
    assert os.path.isfile(tmp_path / "copy" / "tokenizer.json")


# ---------------------------------------------------------------- bad input
def test_bad_ids_and_masks():
    m = tiny()
    V = m.vocab_size
    with pytest.raises(ValueError, match=f"outside the vocabulary \\[0, {V}\\)"):
        m(np.array([0, V]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m(np.array([-1, 2]))
    with pytest.raises((TypeError, ValueError), match="input_ids"):
        m(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="input_ids"):
        m(np.zeros((1, 2, 3), np.int64))
    with pytest.raises(ValueError, match="no tokens"):
        m(np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        m(np.zeros((2, 3), np.int64), attention_mask=np.ones((2, 4), np.int64))
    with pytest.raises(ValueError, match="only 0 and 1"):
        m(np.zeros((1, 3), np.int64), attention_mask=np.array([[0, 2, 1]]))
    with pytest.raises(ValueError, match="logits_to_keep"):
        m(np.zeros(3, np.int64), logits_to_keep=-1)


def test_bad_generation_arguments():
    m = tiny()
    p = np.array([1, 2, 3])
    for kw, match in [({"max_new_tokens": -1}, "max_new_tokens"), ({"temperature": -0.5}, "temperature"),
                      ({"temperature": float("nan")}, "temperature"), ({"top_k": 0}, "top_k"),
                      ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"stop": [10 ** 9]}, "stop")]:
        with pytest.raises(ValueError, match=match):
            m.generate(p, **{"max_new_tokens": 2, **kw})
    with pytest.raises(ValueError, match="tokenizer"):
        m.generate("some text", max_new_tokens=2)


def test_cache_misuse():
    m = tiny()
    cache = m.new_cache(batch_size=1, capacity=5)
    m(np.array([1, 2, 3]), cache=cache)
    with pytest.raises(ValueError, match="capacity of 5"):
        m(np.array([1, 2, 3]), cache=cache)
    assert cache.length == 3  # a refused step leaves the cache as it was
    with pytest.raises(ValueError, match="batch size 2"):
        m(np.zeros((2, 1), np.int64), cache=cache)
    with pytest.raises(TypeError, match="KVCache"):
        m(np.array([1]), cache={})
    with pytest.raises(ValueError, match="capacity"):
        m.new_cache(capacity=0)
    with pytest.raises(ValueError, match="batch_size"):
        m.new_cache(batch_size=0)


def test_bad_checkpoints(tmp_path):
    from moepy.io.safetensors import SafetensorsFile, save_file
    src = tiny("mixtral-8x7b")
    src.save_pretrained(tmp_path / "ok")
    cfg = json.load(open(tmp_path / "ok" / "config.json"))
    tensors = {k: np.array(v) for k, v in SafetensorsFile(str(tmp_path / "ok" / "model.safetensors")).items()}

    def variant(name, cfg_change=None, drop=None, reshape=None):
        d = tmp_path / name
        d.mkdir()
        c = dict(cfg, **(cfg_change or {}))
        c.pop("moepy")  # a plain checkpoint: the MoE blocks come from the tensors below
        json.dump(c, open(d / "config.json", "w"))
        t = {k: v for k, v in tensors.items() if k != drop}
        if reshape:
            t[reshape] = t[reshape][:-1]
        for i, layer in src.moe_layers.items():  # the experts under their Hub names
            t[f"model.layers.{i}.block_sparse_moe.gate.weight"] = layer.router_weight
            ex = layer.experts
            for e in range(ex.shape[0]):
                for n, w in (("w1", ex.gate[e]), ("w3", ex.up[e]), ("w2", ex.down[e])):
                    t[f"model.layers.{i}.block_sparse_moe.experts.{e}.{n}.weight"] = np.asarray(w, np.float32)
        save_file(t, d / "model.safetensors")
        return d

    ok = MoEModel.from_pretrained(variant("plain"), progress=False)
    np.testing.assert_array_equal(ok(np.array([1, 2, 3])), src(np.array([1, 2, 3])))
    with pytest.raises(KeyError, match="o_proj.weight"):
        MoEModel.from_pretrained(variant("missing", drop="model.layers.1.self_attn.o_proj.weight"), progress=False)
    with pytest.raises(ValueError, match="q_proj.weight.*shape"):
        MoEModel.from_pretrained(variant("shape", reshape="model.layers.0.self_attn.q_proj.weight"), progress=False)
    with pytest.raises(ValueError, match="embed_tokens.weight.*shape"):
        MoEModel.from_pretrained(variant("vocab", cfg_change={"vocab_size": cfg["vocab_size"] + 1}), progress=False)
    with pytest.raises(ValueError, match="unsupported model_type 'llama'"):
        MoEModel.from_pretrained(variant("arch", cfg_change={"model_type": "llama"}), progress=False)
    with pytest.raises(FileNotFoundError, match="path"):
        MoEModel.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="dtype"):
        MoEModel.from_pretrained(tmp_path / "ok", dtype="float16", progress=False)


@pytest.mark.parametrize("name", ["olmoe-1b-7b", "deepseek-v3"])
def test_quantize_projections(name):
    m = tiny(name, hidden_size=64, vocab_size=128)
    ids = ids_of(m, T=20)
    ref = m(ids)
    n = m.quantize_projections("int8", 32)
    assert n >= 2  # the attention projections of every layer and the head
    got = m(ids)
    rel = np.sqrt(((got - ref) ** 2).mean() / (ref ** 2).mean())
    assert 0 < rel < 0.05
    from moepy.nn.layers import Linear
    assert m.head.dtype == "int8" and isinstance(m.head, Linear)
    assert np.array_equal(m(ids[:12]), got[:12])  # a token's logits do not depend on the later tokens (T > 8: MLA prefill form)
    with num_threads(1):
        assert np.array_equal(m(ids), got)
    with pytest.raises(ValueError, match="format"):
        m.quantize_projections("int3")

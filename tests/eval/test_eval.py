"""moepy.eval and `python -m moepy eval / generate`: the llama-perplexity convention against transformers, router
loads against transformers' routers, KL divergence, the report's fields, and bad input (exit code 2)."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from moepy.eval import evaluate, kld_stats, unigram_baseline
from moepy.eval.perplexity import chunks, scored_positions
from moepy.nn import MoEModel

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "nn"))


def test_chunks_and_positions():
    ids = np.arange(23)
    c = chunks(ids, 8, bos=99)
    assert c.shape == (2, 8) and c[0, 0] == 99 and c[1, 0] == 99 and c[1, 1] == 9  # the tail (16..22) dropped
    np.testing.assert_array_equal(chunks(ids, 8, None)[1], np.arange(8, 16))
    np.testing.assert_array_equal(scored_positions(8, False), [4, 5, 6])  # ctx/2 .. ctx-2: ctx/2 - 1 of them
    np.testing.assert_array_equal(scored_positions(8, True), np.arange(7))


def test_unigram_baseline_and_kld():
    t = np.array([1, 1, 2, 3])
    assert math.isclose(unigram_baseline(t), math.exp(-(2 * math.log(0.5) + 2 * math.log(0.25)) / 4))
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(10), 50)).astype(np.float16)
    tg = rng.integers(0, 10, 50)
    same = kld_stats(lp, lp, tg)
    assert same["kld_mean"] == 0.0 and same["kld_max"] == 0.0 and same["same_top_p"] == 1.0
    other = np.log(rng.dirichlet(np.ones(10), 50)).astype(np.float16)
    k = kld_stats(lp, other, tg)
    assert k["kld_mean"] > 0 and set(k["kld_percentiles"]) == {"99.9", "99", "95", "90", "50", "10", "5", "1"}


torch = pytest.importorskip("torch")


def _hf_perplexity(ref_model, ids, ctx, bos, score_all=False):
    nll = []
    for c in chunks(ids, ctx, bos):
        with torch.no_grad():
            logits = ref_model(torch.from_numpy(c[None])).logits[0].double()
        lp = torch.log_softmax(logits, -1).numpy()
        pos = scored_positions(ctx, score_all)
        nll.append(-lp[pos, c[pos + 1]])
    return math.exp(np.concatenate(nll).mean())


@pytest.mark.parametrize("name", ["mixtral", "deepseek_v3", "gpt_oss"])
def test_perplexity_equals_transformers(name):
    import hf_models as hm
    ref_model, path, _ = hm.make_model(name)
    m = MoEModel.from_pretrained(path, progress=False)
    ids = np.random.default_rng(1).integers(0, m.vocab_size, 100)
    for score_all, bos in ((False, None), (True, 3)):
        rep = evaluate(m, ids, ctx=32, score_all=score_all, bos=bos)
        ref = _hf_perplexity(ref_model, ids, 32, bos, score_all)
        assert abs(rep["perplexity"] / ref - 1) < 1e-4
        assert rep["tokens_scored"] == 3 * (31 if score_all else 15)


def test_router_loads_equal_transformers_routers():
    import hf_models as hm
    ref_model, path, _ = hm.make_model("qwen2_moe")
    m = MoEModel.from_pretrained(path, progress=False)
    ids = np.random.default_rng(2).integers(0, m.vocab_size, 64)
    rep = evaluate(m, ids, ctx=32)
    counts = {}
    hooks = []
    for name, mod in ref_model.named_modules():
        if type(mod).__name__.endswith("TopKRouter"):
            i = int(name.split(".")[2])
            hooks.append(mod.register_forward_hook(
                lambda mod, a, out, i=i: counts.__setitem__(i, counts.get(i, 0) + np.bincount(
                    out[2].reshape(-1).numpy(), minlength=mod.weight.shape[0])) and None))
    for c in chunks(ids, 32, None):
        with torch.no_grad():
            ref_model(torch.from_numpy(c[None]))
    for h in hooks:
        h.remove()
    for layer in rep["layers"]:
        c = counts[layer["layer"]]
        np.testing.assert_allclose(layer["load"], c / c.sum(), rtol=0, atol=1e-12)


def test_kld_against_itself_is_zero_and_quantized_is_not(tmp_path):
    import hf_models as hm
    _, path, _ = hm.make_model("olmoe")
    m = MoEModel.from_pretrained(path, progress=False)
    ids = np.random.default_rng(3).integers(0, m.vocab_size, 96)
    f = str(tmp_path / "base.npz")
    base = evaluate(m, ids, ctx=32, save_logprobs=f)
    again = evaluate(m, ids, ctx=32, kl_base=f)
    assert again["kld_mean"] == 0.0 and again["kld_max"] == 0.0 and again["same_top_p"] == 1.0
    assert again["perplexity_ratio"] == 1.0 and again["perplexity"] == base["perplexity"]
    q = MoEModel.from_pretrained(path, progress=False, dtype="bfloat16")  # (I = 16: too narrow for INT groups)
    qrep = evaluate(q, ids, ctx=32, kl_base=f)
    assert qrep["kld_mean"] > 0 and 0 < qrep["same_top_p"] <= 1
    from moepy.eval import EvalError
    with pytest.raises(EvalError, match="another model or text"):
        evaluate(m, ids[::-1].copy(), ctx=32, kl_base=f)
    with pytest.raises(EvalError, match="fewer than two chunks"):
        evaluate(m, ids[:40], ctx=32)
    with pytest.raises(EvalError, match="exceeds the model"):
        evaluate(m, np.zeros(10 ** 4, np.int64), ctx=4096)
    with pytest.raises(EvalError, match="top-k"):
        evaluate(m, ids, ctx=32, top_k=0)
    fewer = evaluate(m, ids, ctx=32, top_k=1)
    assert fewer["perplexity"] != base["perplexity"]
    assert all(layer["top_k"] == 1 for layer in fewer["layers"])
    assert m.moe_layers[0].router.top_k == 2  # restored


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "moepy", *args], capture_output=True, text=True, timeout=300)


def test_cli_eval_json_and_bad_input(tmp_path):
    import hf_models as hm
    _, path, _ = hm.make_model("mixtral")
    ids = np.random.default_rng(4).integers(0, 64, 200)
    np.save(tmp_path / "ids.npy", ids)
    r = _cli("eval", path, "--tokens", str(tmp_path / "ids.npy"), "--ctx", "32", "--json", str(tmp_path / "r.json"),
             "--save-logprobs", str(tmp_path / "lp.npz"))
    assert r.returncode == 0, r.stderr
    rep = json.load(open(tmp_path / "r.json"))
    for key in ("perplexity", "perplexity_stderr", "tokens_scored", "baseline_unigram_perplexity", "layers",
                "tokens_per_second", "peak_rss_bytes", "environment"):
        assert key in rep
    assert set(rep["environment"]) >= {"moepy", "isa", "threads", "checkpoint", "checkpoint_sha256"}
    assert abs(sum(rep["layers"][0]["load"]) - 1) < 1e-9
    assert "perplexity" in r.stdout and "routing per MoE layer" in r.stdout
    k = _cli("eval", path, "--tokens", str(tmp_path / "ids.npy"), "--ctx", "32", "--kl-base", str(tmp_path / "lp.npz"),
             "--dtype", "bfloat16", "--activations", "bf16", "--json", str(tmp_path / "k.json"))
    assert k.returncode == 0, k.stderr
    kr = json.load(open(tmp_path / "k.json"))
    assert kr["environment"]["activations"] == "bf16" and kr["environment"]["dtype"] == "bfloat16"
    assert {"kld_mean", "kld_stderr", "kld_max", "kld_percentiles", "same_top_p", "delta_p_mean", "delta_p_rms",
            "delta_p_max"} <= set(kr)
    for args, match in [((str(tmp_path / "nowhere"),), "no such directory"),
                        ((path, "--tokens", str(tmp_path / "ids.npy"), "--ctx", "128"), "fewer than two chunks"),
                        ((path, "--tokens", str(tmp_path / "ids.npy"), "--ctx", "100000"), "exceeds the model"),
                        ((path, "--tokens", str(tmp_path / "ids.npy"), "--ctx", "32", "--kl-base",
                          str(tmp_path / "ids.npy")), "cannot read"),
                        ((path, "--text", str(tmp_path / "missing.txt")), "tokenizer|missing"),
                        ((path,), "give the text"),
                        ((path, "--tokens", str(tmp_path / "ids.npy"), "--quantize", "int4", "--group-size", "48"),
                         "group_size must be one of")]:
        bad = _cli("eval", *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert "Traceback" not in bad.stderr and __import__("re").search(match, bad.stderr), (args, bad.stderr)

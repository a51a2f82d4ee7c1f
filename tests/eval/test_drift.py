"""routing_drift: the divergence of a changed model split into its experts' own error and its routers' changes."""
import numpy as np
import pytest

from moepy.eval import builtin, evaluate, routing_drift
from moepy.nn import MoEModel


@pytest.fixture(scope="module")
def models():
    ref = MoEModel.from_pretrained(builtin.path("mixtral"), progress=False)
    q = MoEModel.from_pretrained(builtin.path("mixtral"), quantize="int4", progress=False)
    ids = np.array(ref.tokenizer.encode(builtin.heldout_text("prose")), np.int64)[:4 * 128]
    return ref, q, ids


def test_a_model_against_itself_has_no_drift(models):
    ref, _, ids = models
    same = MoEModel.from_pretrained(builtin.path("mixtral"), progress=False)
    d = routing_drift(ref, same, ids, ctx=128)
    assert d["kld_mean"] == 0 and d["kld_mean_replayed"] == 0 and d["routing_share"] == 0 and d["chunks"] == 4
    assert all(v == {"changed_set_rate": 0.0, "changed_first_rate": 0.0} for v in d["layers"].values())


def test_quantized_drift_matches_evaluate_and_replaying_removes_the_routing_part(models, tmp_path):
    ref, q, ids = models
    d = routing_drift(ref, q, ids, ctx=128)
    base = str(tmp_path / "base.npz")
    evaluate(ref, ids, ctx=128, save_logprobs=base)
    r = evaluate(q, ids, ctx=128, kl_base=base)
    assert d["kld_mean"] == pytest.approx(r["kld_mean"], rel=1e-12) and d["same_top_p"] == r["same_top_p"]
    assert 0 < d["kld_mean_replayed"] < d["kld_mean"] and 0 < d["routing_share"] < 1
    assert sorted(d["layers"]) == sorted(q.moe_layers)
    first, *later = sorted(d["layers"])
    # the first MoE layer's input is untouched by the quantized experts (attention and norms are float): no change
    assert d["layers"][first] == {"changed_set_rate": 0.0, "changed_first_rate": 0.0}
    for i in later:
        assert 0 < d["layers"][i]["changed_set_rate"] < 0.5 and 0 < d["layers"][i]["changed_first_rate"] < 0.5
    # the hooks are restored: the models run their own routing again
    assert all(layer.route_hook is None for m in (ref, q) for layer in m.moe_layers.values())


def test_bad_input(models):
    ref, q, ids = models
    other = MoEModel.from_pretrained(builtin.path("finegrained"), progress=False)
    with pytest.raises(ValueError, match="model: layer"):
        routing_drift(ref, other, ids, ctx=128)
    with pytest.raises(ValueError, match="fewer than one chunk"):
        routing_drift(ref, q, ids[:100], ctx=128)
    with pytest.raises(ValueError, match="ctx"):
        routing_drift(ref, q, ids, ctx=2)
    with pytest.raises(ValueError, match="beyond the models"):
        routing_drift(ref, q, ids, ctx=10 ** 7)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_chunks"):
            routing_drift(ref, q, ids, ctx=128, max_chunks=bad)
    for bad in (ids.astype(np.float64), ["a"] * 300):
        with pytest.raises(ValueError, match="integer token ids"):
            routing_drift(ref, q, bad, ctx=128)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        routing_drift(ref, q, np.full(300, 10 ** 6), ctx=128)
    with pytest.raises(TypeError, match="model must be a MoEModel"):
        routing_drift(ref, "q", ids, ctx=128)


def test_cli_routing_drift(tmp_path):
    import json
    import subprocess
    import sys
    run = lambda *a: subprocess.run([sys.executable, "-m", "moepy", "eval", "mixtral", "--ctx", "128", "--chunks", "4",  # noqa: E731
                                     "--quiet", *a], capture_output=True, text=True)
    r = run("--quantize", "int4", "--routing-drift", "--json", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    assert "routing drift: KLD" in r.stdout and "from the routers' changed choices" in r.stdout
    d = json.load(open(tmp_path / "r.json"))["routing_drift"]
    assert 0 < d["kld_mean_replayed"] < d["kld_mean"] and 0 < d["routing_share"] < 1 and d["chunks"] == 4
    assert sorted(d["layers"]) == ["0", "1", "2", "3"] and d["layers"]["0"]["changed_set_rate"] == 0
    for bad in ([], ["--quantize", "int4", "--top-k", "1"]):
        b = run("--routing-drift", *bad)
        assert b.returncode == 2 and "--routing-drift" in b.stderr


def test_any_ids_give_a_result_or_a_named_error(models):
    from hypothesis import given, settings, strategies as st
    ref, q, _ = models

    @settings(max_examples=25, deadline=None)
    @given(st.lists(st.integers(-3, 4100), max_size=400), st.integers(2, 200))
    def check(ids, ctx):
        try:
            d = routing_drift(ref, q, np.array(ids, np.int64), ctx=ctx)
        except ValueError as e:
            assert any(w in str(e) for w in ("ids", "ctx", "vocabulary"))
            return
        assert d["kld_mean"] >= 0 and d["kld_mean_replayed"] >= 0 and d["chunks"] == len(ids) // ctx
        assert all(0 <= v["changed_set_rate"] <= 1 for v in d["layers"].values())
    check()

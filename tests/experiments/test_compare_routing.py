"""moepy.experiments: scheme swaps on whole models against hand-built expectations."""
import dataclasses

import numpy as np
import pytest

from moepy import RouterConfig, route
from moepy.eval import builtin
from moepy.experiments import Baseline, Capacity, ExpertChoiceRouting, GroupLimited, OnlineBias, Prune, Renormalize, \
    Scheme, Scoring, Table, TopK, applied, collect_saliency, compare_routing, layer_route
from moepy.nn import MoEModel
from moepy.reference.ffn import expert_ffn

CTX, CHUNKS = 64, 4


@pytest.fixture(scope="module")
def ds():
    return MoEModel.from_pretrained(builtin.path("deepseek_v3"))


@pytest.fixture(scope="module")
def mx():
    return MoEModel.from_pretrained(builtin.path("mixtral"))


@pytest.fixture(scope="module")
def ids(ds):
    return np.array(ds.tokenizer.encode(builtin.heldout_text("prose"))[: CTX * CHUNKS], np.int64)


def _run(model, ids, schemes):
    return compare_routing(model, ids, schemes, ctx=CTX)


def test_no_change_schemes_reproduce_the_baseline_exactly(ds, ids):
    k = ds.moe_layers[1].router.top_k
    res = _run(ds, ids, [TopK(k), Capacity(1e4), Prune(0.0), Renormalize(True), GroupLimited(4, 2)])
    assert ds.moe_layers[1].router.normalize and ds.moe_layers[1].router.n_group == 4  # the trained settings
    for name in res["scheme"]:
        assert np.array_equal(res.nll[name], res.nll["baseline"]), name
        row = res.table.row(name)
        assert row["kld"] == 0.0 and row["same_top"] == 1.0 and row["d_ppl"] == 0.0, name
        for i in ds.moe_layers:
            assert np.array_equal(res.counts[name][i], res.counts["baseline"][i])
    assert res.table.row("baseline")["dropped"] == 0.0


def test_schemes_change_what_they_claim(ds, ids):
    res = _run(ds, ids, [TopK(2), TopK({1: 1}), Capacity(1.0), OnlineBias(0.05, "zero"), Prune(0.25)])
    t = res.table
    assert t.row("top-2")["k_per_token"] == 2.0
    L = len(ds.moe_layers)
    assert t.row("top-k L1:1")["k_per_token"] == pytest.approx((1 + 4 * (L - 1)) / L)
    assert 0 < t.row("capacity 1 (rank)")["dropped"] < 1
    assert t.row("capacity 1 (rank)")["k_per_token"] < 4
    for name in ("top-2", "capacity 1 (rank)"):
        assert t.row(name)["kld"] > 0 and t.row(name)["same_top"] < 1
    # the online bias balances: lower CV than the baseline's
    assert t.row("online bias 0.05 from 0")["cv"] < t.row("baseline")["cv"]
    # pruned experts take no token; 8 of 32 per layer
    for i, c in res.counts["prune 25% (frequency)"].items():
        assert (c == 0).sum() >= 8
    assert len(res.table) == 6 and res.table["scheme"][0] == "baseline"
    d = res.to_dict()
    assert set(d) >= {"scheme", "ppl", "d_ppl", "kld", "same_top", "cv", "max_mean", "dead", "entropy", "dropped",
                      "tok_s"}


def test_models_are_restored_even_on_error(ds, ids):
    before = {i: (l.router, l.route_hook) for i, l in ds.moe_layers.items()}

    class Broken(Scheme):
        name = "broken"

        def route(self, index, layer, x, logits):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _run(ds, ids, [TopK(2), Broken()])
    assert {i: (l.router, l.route_hook) for i, l in ds.moe_layers.items()} == before


def test_expert_choice_through_the_layer_equals_the_layer_method(mx):
    layer = mx.moe_layers[0]
    x = np.random.default_rng(0).standard_normal((40, layer.hidden_size)).astype(np.float32)
    logits = np.ascontiguousarray(layer.router_logits(x)[:, :layer.num_experts])
    r = ExpertChoiceRouting(2.0).route(0, layer, x, logits)
    want = layer.forward_expert_choice(x, capacity_factor=2.0)
    got = layer.run_experts(x, r.weights, r.experts, r.dropped)
    assert np.array_equal(got, want)
    # a batch of two sequences: each chooses on its own
    xb = np.stack([x[:20], x[20:]])
    rb = ExpertChoiceRouting(2.0).route(0, layer, xb, logits)
    for b in range(2):
        one = ExpertChoiceRouting(2.0).route(0, layer, x[20 * b:20 * b + 20], logits[20 * b:20 * b + 20])
        y1 = layer.run_experts(x[20 * b:20 * b + 20], one.weights, one.experts, one.dropped)
        yb = layer.run_experts(xb, rb.weights, rb.experts, rb.dropped)[b]
        assert np.array_equal(yb, y1)


def test_online_bias_update_rule(ds):
    layer = ds.moe_layers[1]
    s = OnlineBias(0.01)
    s.prepare(ds, None)
    b0 = s.biases[1].copy()
    assert np.array_equal(b0, layer.selection_bias)
    x = np.random.default_rng(1).standard_normal((50, layer.hidden_size)).astype(np.float32)
    logits = np.ascontiguousarray(layer.router_logits(x)[:, :layer.num_experts])
    r = s.route(1, layer, x, logits)
    want = route(logits, layer.router, b0)
    assert np.array_equal(r.experts, want.experts)
    counts = np.bincount(want.experts.ravel(), minlength=layer.num_experts)
    assert np.array_equal(s.biases[1], b0 + np.float32(0.01) * np.sign(counts.mean() - counts).astype(np.float32))


def test_reap_saliency_against_numpy(mx, ids):
    freq, sal = collect_saliency(mx, ids[:CTX].reshape(1, -1), reap=True)
    # recompute layer 0's by hand: its input is recorded with a hook
    layer = mx.moe_layers[0]
    seen = {}

    def rec(lay, x, logits):
        seen["x"] = x.reshape(-1, lay.hidden_size).copy()
        return layer_route(lay, x, logits)
    layer.route_hook = rec
    try:
        mx(ids[:CTX])
    finally:
        layer.route_hook = None
    x = seen["x"]
    r = layer.route(x)
    ref = layer.to_float32_reference()["experts"]
    E = layer.num_experts
    total, n = np.zeros(E), np.zeros(E)
    for t in range(len(x)):
        for k in range(r.top_k):
            e = int(r.experts[t, k])
            y = expert_ffn(x[t:t + 1].astype(np.float64), ref, e)
            total[e] += r.weights[t, k] * np.linalg.norm(y)
            n[e] += 1
    assert np.array_equal(freq[0], n.astype(np.int64))
    np.testing.assert_allclose(sal[0], np.where(n > 0, total / np.maximum(n, 1), 0), rtol=1e-4)


def test_prune_removes_the_least_salient(mx, ids):
    s = Prune(0.25, "frequency")
    chunks = ids.reshape(-1, CTX)
    s.prepare(mx, chunks)
    for i, gone in s.pruned.items():
        assert len(gone) == 2
        f = s.saliency[i]
        assert f[gone].max() <= np.delete(f, gone).min()


def test_scoring_and_group_swaps_change_the_router(ds):
    layer = ds.moe_layers[1]
    with applied(ds, Scoring("softmax")):
        assert layer.router.scoring == "softmax"
    assert layer.router.scoring == "sigmoid"
    with applied(ds, GroupLimited(None)):
        assert layer.router.n_group == 1
    assert layer.router.n_group == 4


def test_a_user_scheme(mx, ids):
    class FirstExperts(Scheme):
        """Always experts 0 .. k-1 with equal weights (a scheme of a user's own)."""
        name = "first experts"

        def route(self, index, layer, x, logits):
            k = layer.router.top_k
            r = layer_route(layer, x, logits)
            T = r.num_tokens
            return dataclasses.replace(r, experts=np.tile(np.arange(k, dtype=np.int32), (T, 1)),
                                       weights=np.full((T, k), 1.0 / k, np.float32))

    res = _run(mx, ids, [FirstExperts()])
    for c in res.counts["first experts"].values():
        assert (c[2:] == 0).all() and c[0] == c[1] > 0


def test_bad_input(ds, ids):
    with pytest.raises(TypeError, match="schemes"):
        _run(ds, ids, ["top-2"])
    with pytest.raises(ValueError, match="distinct names"):
        _run(ds, ids, [TopK(2), TopK(2)])
    with pytest.raises(ValueError, match="exceeds the 32 experts"):
        _run(ds, ids, [TopK(33)])
    with pytest.raises(ValueError, match="fraction"):
        Prune(1.0)
    with pytest.raises(ValueError, match="fewer than top_k"):
        _run(ds, ids, [Prune(0.95)])
    with pytest.raises(ValueError, match="by must be"):
        Prune(0.5, by="magic")
    with pytest.raises(ValueError, match="k must be"):
        TopK(0)
    with pytest.raises(ValueError, match="factor"):
        Capacity(0.0)
    with pytest.raises(ValueError, match="ctx"):
        compare_routing(ds, ids, [], ctx=2)
    with pytest.raises(ValueError, match="ids"):
        compare_routing(ds, np.array([0, 1, 10 ** 6]), [], ctx=CTX)
    with pytest.raises(ValueError, match="fewer than one chunk"):
        compare_routing(ds, ids[:10], [], ctx=CTX)
    with pytest.raises(ValueError, match="scoring"):
        _run(ds, ids, [Scoring("relu")])


def test_table_prints_aligned():
    t = Table({"scheme": ["a", "bbbbbb"], "ppl": [1.5, 22.25], "dead": [0, 12]}, {"ppl": "{:.2f}"})
    lines = str(t).splitlines()
    assert lines[0].split() == ["scheme", "ppl", "dead"]
    assert len({len(line) for line in lines}) == 1  # every row the same width
    assert "22.25" in lines[3] and t.to_dict()["dead"].tolist() == [0, 12]
    assert "<table>" in t._repr_html_() and t.row("bbbbbb")["dead"] == 12
    assert t.without("ppl").columns == ["scheme", "dead"]
    with pytest.raises(KeyError, match="no column"):
        t.without("tok_s")
    with pytest.raises(ValueError, match="one length"):
        Table({"a": [1], "b": [1, 2]})


def test_baseline_given_explicitly_is_not_repeated(mx, ids):
    res = _run(mx, ids, [TopK(1), Baseline()])
    assert list(res["scheme"]) == ["top-1", "baseline"]
    assert res.table.row("baseline")["kld"] == 0.0
    _ = RouterConfig  # the router type schemes return

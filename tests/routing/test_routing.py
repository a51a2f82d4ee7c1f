"""Routing kernels against their NumPy twins: every family, many shapes, edge values, threads, ISAs."""
import numpy as np
import pytest

import moepy
from moepy import _ops
from moepy import reference as ref
from moepy.routing import RouterConfig
from conftest import assert_selection_equal, assert_valid_selection, available_isas, isa, num_threads


def family_configs(E, K, seed=0):
    """One RouterConfig per family for E experts and top-k K (group settings scaled to E)."""
    G = next(g for g in (8, 4, 2, 1) if E % g == 0 and (E // g) * max(1, g // 2) >= K)
    tg = max(1, G // 2)
    return {
        "mixtral": RouterConfig.mixtral(E, K),
        "qwen2_moe": RouterConfig.qwen2_moe(E, K, norm_topk_prob=False),
        "qwen3_moe": RouterConfig.qwen3_moe(E, K),
        "olmoe": RouterConfig.olmoe(E, K),
        "dbrx": RouterConfig.dbrx(E, K),
        "dbrx_l2": RouterConfig.dbrx(E, K, moe_normalize_expert_weights=2.0),
        "deepseek_v2": RouterConfig.deepseek_v2(E, K, n_group=G, topk_group=tg, routed_scaling_factor=16.0),
        "deepseek_v2_lite": RouterConfig.deepseek_v2(E, K, topk_method="greedy", routed_scaling_factor=1.0),
        "deepseek_v3": RouterConfig.deepseek_v3(E, K, n_group=G, topk_group=tg),
        "llama4": RouterConfig.llama4(E, K),
        "gpt_oss": RouterConfig.gpt_oss(E, K),
    }


def selection_scores(logits, cfg, bias):
    """The values top-k ranks (for judging near-ties) from the reference's own arithmetic."""
    _, _, scores = ref.route(logits, cfg, bias)
    sel = logits if cfg.topk_before_score else scores
    return sel + (bias if bias is not None else 0)


def check_against_reference(logits, cfg, bias=None):
    r = moepy.route(logits, cfg, bias=bias)
    w, e, s = ref.route(logits, cfg, bias)
    T, E = logits.shape
    assert r.weights.shape == (T, cfg.top_k) and r.experts.shape == (T, cfg.top_k) and r.scores.shape == (T, E)
    np.testing.assert_allclose(r.scores, s, rtol=2e-6, atol=1e-7)
    assert_valid_selection(r.experts, E)
    ndiff = assert_selection_equal(r.experts, e, selection_scores(logits, cfg, bias))
    same = (r.experts == e).all(axis=1)
    np.testing.assert_allclose(r.weights[same], w[same], rtol=5e-6, atol=1e-7 * max(1.0, abs(cfg.scale)))
    assert ndiff <= max(2, T // 1000)
    return r


SHAPES = [(0, 8, 2), (1, 8, 2), (7, 1, 1), (33, 3, 3), (100, 16, 4), (257, 60, 4), (64, 64, 6), (300, 128, 8),
          (200, 256, 8), (150, 384, 8), (40, 1024, 32), (500, 40, 32), (10, 1024, 1)]


@pytest.mark.parametrize("T,E,K", SHAPES)
def test_every_family_matches_reference(T, E, K, rng):
    logits = rng.standard_normal((T, E)).astype(np.float32) * 2
    bias = (rng.standard_normal(E) * 0.05).astype(np.float32)
    for name, cfg in family_configs(E, K).items():
        check_against_reference(logits, cfg, bias if name == "deepseek_v3" else None)


def test_large_batch_matches_reference(rng):
    logits = rng.standard_normal((100_000, 64)).astype(np.float32)
    check_against_reference(logits, RouterConfig.mixtral(64, 6))
    logits = rng.standard_normal((20_000, 256)).astype(np.float32)
    bias = (rng.standard_normal(256) * 0.05).astype(np.float32)
    check_against_reference(logits, RouterConfig.deepseek_v3(), bias)


@pytest.mark.parametrize("cpu_isa", available_isas())
def test_every_isa_matches_reference(cpu_isa, rng):
    logits = rng.standard_normal((513, 256)).astype(np.float32)
    bias = (rng.standard_normal(256) * 0.05).astype(np.float32)
    with isa(cpu_isa):
        assert moepy.build_info()["isa"] == cpu_isa
        for name, cfg in family_configs(256, 8).items():
            check_against_reference(logits, cfg, bias if name == "deepseek_v3" else None)
        x = rng.standard_normal((300, 1000)).astype(np.float32)
        v, i = moepy.topk(x, 17)
        rv, ri = ref.topk(x, 17)
        np.testing.assert_array_equal(i, ri)


def test_bias_moves_selection_not_weights(rng):
    E = 64
    cfg = RouterConfig.deepseek_v3(E, 6, n_group=8, topk_group=4)
    logits = rng.standard_normal((500, E)).astype(np.float32)
    bias = np.zeros(E, np.float32)
    bias[3] = 10.0  # expert 3 always selected through the bias...
    r = moepy.route(logits, cfg, bias=bias)
    assert (r.experts == 3).any(axis=1).all()
    # ...but its weight is its unbiased sigmoid score, renormalised and scaled
    sig = 1 / (1 + np.exp(-logits.astype(np.float64)))
    w = np.take_along_axis(sig, r.experts.astype(np.int64), 1)
    w = w / w.sum(1, keepdims=True) * 2.5
    np.testing.assert_allclose(r.weights, w, rtol=1e-5)


def test_group_limited_selection_stays_in_kept_groups(rng):
    E, G, tg = 64, 8, 2
    cfg = RouterConfig.deepseek_v3(E, 8, n_group=G, topk_group=tg)
    r = moepy.route(rng.standard_normal((1000, E)).astype(np.float32), cfg)
    groups = r.experts // (E // G)
    assert all(len(set(row)) <= tg for row in groups.tolist())


def test_topk_matches_reference_exactly(rng):
    for R, M, k in [(0, 5, 1), (1, 1, 1), (50, 7, 7), (100, 33, 5), (64, 257, 32), (10, 3000, 40), (5, 5000, 500)]:
        x = rng.standard_normal((R, M)).astype(np.float32)
        x[::3] = np.round(x[::3] * 2)  # ties
        v, i = moepy.topk(x, k)
        rv, ri = ref.topk(x, k)
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(v, rv)
    v, i = moepy.topk(np.array([1, 3, 3, 2], np.float32), 2)
    assert i.tolist() == [1, 2] and v.tolist() == [3, 3]


@pytest.mark.parametrize("E,K", [(8, 2), (64, 6), (256, 8), (40, 32)])
def test_ties_infinities_all_equal_give_valid_selection(E, K, rng):
    rows = [np.zeros(E), np.full(E, -np.inf), np.full(E, np.inf), np.round(rng.standard_normal(E)),
            np.where(rng.random(E) < 0.5, np.inf, -np.inf), np.where(rng.random(E) < 0.5, -np.inf, 1.0),
            np.full(E, 3.0e38), np.full(E, -3.0e38)]
    logits = np.array(rows, np.float32)
    for name, cfg in family_configs(E, K).items():
        r = moepy.route(logits, cfg)
        assert_valid_selection(r.experts, E)
        assert np.isfinite(r.weights).all() and np.isfinite(r.scores).all(), name
        w, e, s = ref.route(logits, cfg)
        np.testing.assert_array_equal(r.experts, e)  # exact ties: both break to the lower index
        np.testing.assert_allclose(r.weights, w, rtol=1e-6)
    # all-equal logits: the K lowest ids
    r = moepy.route(np.zeros((3, E), np.float32), RouterConfig.mixtral(E, K))
    assert (r.experts == np.arange(K)).all()
    np.testing.assert_allclose(r.weights, 1.0 / K, rtol=1e-6)


def test_nan_raises_naming_the_row(rng):
    logits = rng.standard_normal((50, 16)).astype(np.float32)
    logits[17, 3] = np.nan
    logits[30, 0] = np.nan
    with pytest.raises(ValueError, match="row 17"):
        moepy.route(logits, RouterConfig.mixtral(16, 2))
    with pytest.raises(ValueError, match="row 17"):
        moepy.topk(logits, 3)
    with pytest.raises(ValueError, match="row 17"):
        ref.route(logits, RouterConfig.mixtral(16, 2))
    with pytest.raises(ValueError, match="expert 2"):
        moepy.route(logits[:5], RouterConfig.deepseek_v3(16, 2, n_group=4, topk_group=2),
                    bias=np.array([0, 0, np.nan] + [0] * 13, np.float32))


def test_bitwise_identical_across_threads_and_runs(rng):
    logits = rng.standard_normal((40_000, 256)).astype(np.float32)
    bias = (rng.standard_normal(256) * 0.05).astype(np.float32)
    for cfg in [RouterConfig.deepseek_v3(), RouterConfig.mixtral(256, 8), RouterConfig.gpt_oss(256, 4)]:
        with num_threads(1):
            a = moepy.route(logits, cfg, bias=bias if cfg.family == "deepseek_v3" else None)
        with num_threads(2):
            b = moepy.route(logits, cfg, bias=bias if cfg.family == "deepseek_v3" else None)
            c = moepy.route(logits, cfg, bias=bias if cfg.family == "deepseek_v3" else None)
        for x, y, z in [(a.weights, b.weights, c.weights), (a.experts, b.experts, c.experts),
                        (a.scores, b.scores, c.scores)]:
            assert x.tobytes() == y.tobytes() == z.tobytes()


def test_inputs_are_not_mutated(rng):
    logits = rng.standard_normal((100, 32)).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)
    l0, b0 = logits.copy(), bias.copy()
    moepy.route(logits, RouterConfig.deepseek_v3(32, 4, n_group=4, topk_group=2), bias=bias)
    moepy.topk(logits, 4)
    r = moepy.route(logits, RouterConfig.switch(32, expert_capacity=2))
    w0 = r.weights.copy()
    moepy.apply_capacity(r, 1)
    moepy.expert_choice(logits, capacity=5)
    np.testing.assert_array_equal(logits, l0)
    np.testing.assert_array_equal(bias, b0)
    np.testing.assert_array_equal(r.weights, w0)


def test_non_contiguous_inputs_are_accepted(rng):
    logits = rng.standard_normal((20, 64)).astype(np.float32)
    view = logits[:, ::2]
    r = moepy.route(view, RouterConfig.mixtral(32, 2))
    w, e, _ = ref.route(np.ascontiguousarray(view), RouterConfig.mixtral(32, 2))
    np.testing.assert_array_equal(r.experts, e)
    r = moepy.route(logits.tolist(), RouterConfig.mixtral(64, 2))
    assert r.experts.shape == (20, 2)


# ------------------------------------------------------------------ capacity and expert choice

@pytest.mark.parametrize("priority", ["rank", "token"])
def test_capacity_matches_reference(priority, rng):
    for T, E, K, cap in [(0, 4, 1, 3), (1, 4, 2, 0), (100, 8, 1, 10), (500, 16, 2, 40), (64, 64, 8, 3)]:
        r = moepy.route(rng.standard_normal((T, E)).astype(np.float32), RouterConfig.mixtral(E, K))
        capped = moepy.apply_capacity(r, cap, priority)
        w = r.weights.copy()
        dropped, counts = ref.apply_capacity(w, r.experts, E, cap, priority)
        np.testing.assert_array_equal(capped.dropped, dropped)
        np.testing.assert_array_equal(capped.weights, w)
        np.testing.assert_array_equal(capped.counts(), counts)
        assert (counts <= cap).all()


def test_capacity_drops_in_sequence_order():
    logits = np.zeros((6, 2), np.float32)
    logits[:, 0] = 1.0  # every token prefers expert 0
    r = moepy.route(logits, RouterConfig.switch(2, expert_capacity=4))
    assert r.dropped[:, 0].tolist() == [False] * 4 + [True] * 2
    assert (r.weights[4:] == 0).all() and (r.weights[:4] > 0).all()
    r = moepy.route(logits, RouterConfig.switch(2, capacity_factor=1.0))  # ceil(1.0 * 6 * 1 / 2) = 3
    assert r.capacity == 3 and r.dropped[:, 0].sum() == 3
    g = moepy.route(np.tile([[3.0, 2.0, 0.0]], (4, 1)).astype(np.float32), RouterConfig.gshard(3, 0.75))
    # capacity ceil(0.75 * 4 * 2 / 3) = 2: first choices (expert 0) of tokens 0,1 kept, then second choices
    assert g.capacity == 2
    assert g.dropped.tolist() == [[False, False], [False, False], [True, True], [True, True]]


def test_expert_choice_matches_reference(rng):
    for T, E, C in [(1, 1, 1), (50, 4, 50), (300, 16, 40), (2000, 8, 500)]:
        logits = rng.standard_normal((T, E)).astype(np.float32)
        ec = moepy.expert_choice(logits, capacity=C)
        g, tok = ref.expert_choice(ec.scores, C)
        np.testing.assert_array_equal(ec.tokens, tok)
        np.testing.assert_array_equal(ec.gates, g)
        assert ec.coverage.sum() == E * C
    ec = moepy.expert_choice(rng.standard_normal((64, 8)).astype(np.float32), capacity_factor=2.0)
    assert ec.capacity == 16


# ------------------------------------------------------------------ bad input

def test_bad_inputs_raise_clear_errors(rng):
    x = rng.standard_normal((10, 8)).astype(np.float32)
    cfg = RouterConfig.mixtral(8, 2)
    with pytest.raises(ValueError, match="logits must be 2-D or 3-D"):  # other dtypes: tests/test_inputs.py
        moepy.route(x[0], cfg)
    with pytest.raises(ValueError, match="num_experts=8"):
        moepy.route(x[:, :6], cfg)
    with pytest.raises(ValueError, match="top_k"):
        moepy.route(x, RouterConfig(top_k=9))
    with pytest.raises(ValueError, match="n_group"):
        moepy.route(x, RouterConfig(top_k=2, n_group=3, topk_group=1))
    with pytest.raises(ValueError, match="topk_group"):
        RouterConfig(top_k=2, n_group=2, topk_group=3)
    with pytest.raises(ValueError, match="n_group=3 must divide"):
        RouterConfig.deepseek_v3(8, 2, n_group=3, topk_group=1)
    with pytest.raises(ValueError, match="exceeds the experts in the kept groups"):
        moepy.route(x, RouterConfig(top_k=4, n_group=4, topk_group=1))
    with pytest.raises(ValueError, match="bias must have shape"):
        moepy.route(x, cfg, bias=np.zeros(7, np.float32))
    with pytest.raises(TypeError, match="bias must hold floating-point"):
        moepy.route(x, cfg, bias=np.zeros(8, np.bool_))
    with pytest.raises(ValueError, match="capacity must be"):
        RouterConfig.switch(8, expert_capacity=-1)
    r = moepy.route(x, cfg)
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        moepy.apply_capacity(r, -1)
    with pytest.raises(ValueError, match="k must be <= 8"):
        moepy.topk(x, 9)
    with pytest.raises(ValueError, match="scoring"):
        RouterConfig(top_k=1, scoring="relu")
    with pytest.raises(ValueError, match="capacity must be <= 10"):
        moepy.expert_choice(x, capacity=11)


def test_bad_output_buffers_raise():
    from moepy import _C
    x = np.zeros((4, 8), np.float32)
    p = _ops.route_params(RouterConfig.mixtral(8, 2))
    ro = np.zeros((4, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="weights is read-only"):
        _C.route(x, None, p, weights=ro)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.route(x, None, p, weights=np.zeros((2, 4), np.float32).T)
    with pytest.raises(ValueError, match="wrong shape"):
        _C.route(x, None, p, weights=np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="experts must have dtype int32"):
        _C.route(x, None, p, experts=np.zeros((4, 2), np.int64))
    with pytest.raises(ValueError, match="overlaps an input"):
        _C.route(x, None, p, scores=x)
    buf = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="must not overlap"):
        _C.route(x, None, p, weights=buf, experts=buf.view(np.int32))
    with pytest.raises(TypeError, match="params must be"):
        _C.route(x, None, b"short")
    w = np.zeros((4, 2), np.float32)
    out = _C.route(x, None, p, weights=w)
    assert out[0] is w and np.allclose(w, 0.5)
    with pytest.raises(ValueError, match="out of range"):
        _C.apply_capacity(np.zeros((2, 1), np.float32), np.array([[0], [8]], np.int32), 8, 1, 0)

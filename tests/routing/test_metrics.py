"""Balance measures, auxiliary losses and the auxiliary-loss-free bias update."""
import numpy as np
import pytest

import moepy
from moepy import RouterConfig, Routing
from moepy import reference as ref


def make_routing(experts, E, dropped=None, scores=None):
    experts = np.asarray(experts, np.int32)
    T, K = experts.shape
    if scores is None:
        scores = np.full((T, E), 1.0 / E, np.float32)
    return Routing(np.ones((T, K), np.float32), experts, scores, dropped)


def test_balance_stats_by_hand():
    r = make_routing([[0, 1], [0, 2], [0, 1], [0, 3]], E=5)
    s = moepy.balance_stats(r)
    assert s.counts.tolist() == [4, 2, 1, 1, 0]
    np.testing.assert_allclose(s.fraction, [0.5, 0.25, 0.125, 0.125, 0])
    assert s.dead_experts == 1
    assert s.max_over_mean == pytest.approx(4 / 1.6)
    assert s.cv == pytest.approx(np.std([4, 2, 1, 1, 0]) / 1.6)
    f = np.array([0.5, 0.25, 0.125, 0.125])
    assert s.entropy == pytest.approx(-(f * np.log(f)).sum())
    assert s.normalized_entropy == pytest.approx(s.entropy / np.log(5))
    assert s.drop_rate == 0.0
    # uniform scores: aux = E * sum_i (count_i / T) * (1/E) = K
    assert s.aux_loss == pytest.approx(2.0)
    assert set(s.as_dict()) >= {"counts", "cv", "aux_loss", "drop_rate"}


def test_drops_counted_and_excluded():
    dropped = np.array([[False, True], [False, False], [True, False], [False, False]])
    r = make_routing([[0, 1], [0, 2], [0, 1], [0, 3]], E=4, dropped=dropped)
    s = moepy.balance_stats(r)
    assert s.counts.tolist() == [3, 1, 1, 1]
    assert s.drop_rate == pytest.approx(2 / 8)


def test_perfect_balance_and_collapse():
    E, T = 8, 800
    experts = (np.arange(T) % E)[:, None]
    s = moepy.balance_stats(make_routing(experts, E))
    assert s.cv == 0 and s.max_over_mean == 1 and s.normalized_entropy == pytest.approx(1.0) and s.dead_experts == 0
    collapsed = moepy.balance_stats(make_routing(np.zeros((T, 1)), E))
    assert collapsed.dead_experts == E - 1 and collapsed.max_over_mean == E and collapsed.entropy == 0


def test_expert_load_matches_reference(rng):
    from moepy import _ops
    for T, K, E in [(0, 2, 4), (5, 1, 1), (3000, 8, 256), (50_000, 2, 8)]:
        r = moepy.route(rng.standard_normal((T, E)).astype(np.float32), RouterConfig.mixtral(E, K))
        dropped = rng.random((T, K)) < 0.1
        c, p = _ops.expert_load(r.experts, dropped, r.scores, E)
        rc, rp = ref.expert_load(r.experts, dropped, r.scores, E)
        np.testing.assert_array_equal(c, rc)
        np.testing.assert_allclose(p, rp, rtol=1e-12)


def test_sequence_aux_loss_by_hand():
    # 2 sequences of 2 tokens, E=2, K=1; sigmoid-like scores normalised per token
    scores = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.2, 0.8]], np.float32)
    r = Routing(np.ones((4, 1), np.float32), np.array([[0], [0], [0], [1]], np.int32), scores, scoring="sigmoid")
    # seq 0: f = 2/(1*2) * [2, 0] = [2, 0]; P = [0.9, 0.1] -> 1.8 ; seq 1: f = [1, 1]; P = [0.35, 0.65] -> 1.0
    assert moepy.sequence_aux_loss(r, seq_len=2) == pytest.approx((1.8 + 1.0) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="seq_len"):
        moepy.sequence_aux_loss(r, seq_len=3)


def test_bias_update_and_balancer_reduce_imbalance(rng):
    E = 64
    cfg = RouterConfig.deepseek_v3(E, 6, n_group=8, topk_group=4)
    w = rng.standard_normal((E, 32)).astype(np.float32) / 6
    skew = np.where(np.arange(E) < 4, 1.0, 0.0).astype(np.float32)

    def batch():
        return (rng.standard_normal((2048, 32)).astype(np.float32) @ w.T + skew).astype(np.float32)

    b = moepy.update_bias(np.zeros(E, np.float32), np.array([3] + [1] * (E - 1)), gamma=0.5)
    assert b[0] == -0.5 and (b[1:] == 0.5).all() and b.dtype == np.float32
    bal = moepy.BiasBalancer(E, gamma=0.01)
    before = moepy.balance_stats(moepy.route(batch(), cfg)).max_over_mean
    for _ in range(60):
        bal.route(batch(), cfg)
    after = moepy.balance_stats(moepy.route(batch(), cfg, bias=bal.bias)).max_over_mean
    assert after < 0.5 * before
    assert len(bal.history) == 60


def test_z_loss_values():
    assert moepy.router_z_loss(np.zeros((4, 8), np.float32)) == pytest.approx(np.log(8) ** 2)
    assert moepy.router_z_loss(np.zeros((0, 8), np.float32)) == 0.0

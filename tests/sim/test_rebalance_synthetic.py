"""rebalance_stream, synthetic routing, load and co-activation counts."""
import numpy as np
import pytest

import moepy
from moepy.sim import load_from_experts, moved_bytes, place_experts, rebalance_stream, synthetic_routing
from moepy.sim.synthetic import coactivation_counts, popularity_offsets


def _stationary(E=32, steps=12, T=400, seed=0):
    rng = np.random.default_rng(seed)
    p = np.exp(popularity_offsets(E, 1.0, seed=seed).astype(float))
    p /= p.sum()
    return [np.stack([rng.choice(E, 2, replace=False, p=p) for _ in range(T)]) for _ in range(steps)]


@pytest.mark.parametrize("policy,replicas,nodes", [("eplb", 8, 2), ("greedy", 0, 1), ("eplb_global", 8, 1)])
def test_rebalancing_every_step_is_no_worse_than_static(policy, replicas, nodes):
    batches = _stationary()
    res = rebalance_stream(batches, 8, every=1, policy=policy, num_replicas=replicas, num_nodes=nodes,
                           num_experts=32, expert_bytes=100)
    assert res.imbalance.shape == (12,) and res.rebalance_steps == list(range(1, 12))
    assert res.imbalance.mean() <= res.static_imbalance.mean()
    assert res.imbalance[1:].mean() < res.static_imbalance[1:].mean()
    assert len(res.bytes_moved) == 11 and res.bytes_moved[0] > 0
    # loads recomputed by hand under the placement in force
    for step, batch in enumerate(batches):
        pl = res.placements[step]
        assert res.max_load[step] == pytest.approx(pl.device_load(load_from_experts(batch, 32)).max())
    assert "imbalance" in repr(res) and res.summary()["rebalances"] == 11


def test_no_bytes_moved_when_the_load_does_not_change():
    load = np.random.default_rng(2).pareto(1.0, 64) + 0.1
    res = rebalance_stream([load] * 6, 16, every=2, num_replicas=16, num_nodes=4, initial_load=load)
    assert res.rebalance_steps == [2, 4] and res.bytes_moved == [0.0, 0.0]
    res = rebalance_stream([load] * 5, 16, every=1, num_replicas=16, num_nodes=4, expert_bytes=7.0)
    assert res.bytes_moved[0] > 0 and res.bytes_moved[1:] == [0.0] * 3  # the first one learns the load
    np.testing.assert_allclose(res.imbalance[1:], res.imbalance[1])


def test_ema_and_errors():
    batches = _stationary(steps=4)
    res = rebalance_stream(batches, 4, every=2, num_experts=32, ema=0.5, policy="greedy")
    assert res.rebalance_steps == [2]
    with pytest.raises(ValueError, match="num_experts is needed"):
        rebalance_stream(batches, 4)
    with pytest.raises(ValueError, match="policy must be one of"):
        rebalance_stream(batches, 4, num_experts=32, policy="nope")
    with pytest.raises(ValueError, match="batches is empty"):
        rebalance_stream([], 4)
    with pytest.raises(ValueError, match=r"batches\[1\]"):
        rebalance_stream([np.ones(32), np.ones(31)], 4)


def test_moved_bytes_counts_new_expert_device_pairs():
    load = np.arange(1.0, 9.0)
    a = place_experts(load, 4, 1, 0, "round_robin")
    b = place_experts(load, 4, 1, 4, "greedy")
    assert moved_bytes(a, a, 10) == 0
    new_pairs = len(set(b.pairs().tolist()) - set(a.pairs().tolist()))
    assert moved_bytes(a, b, 10) == 10 * new_pairs > 0


@pytest.mark.parametrize("preset", ["deepseek-v3", "kimi-k2", "mixtral-8x7b", "qwen3-30b-a3b"])
def test_synthetic_routing_has_the_preset_shape(preset):
    cfg = moepy.configs.get(preset)
    ex = synthetic_routing(preset, 3000, skew=0.8, chunk=1000)
    assert ex.shape == (3000, cfg.top_k) and ex.min() >= 0 and ex.max() < cfg.num_experts
    assert all(len(set(r)) == cfg.top_k for r in ex[:200].tolist())
    np.testing.assert_array_equal(ex, synthetic_routing(preset, 3000, skew=0.8))  # chunking, seed: same
    load = load_from_experts(ex, cfg.num_experts)
    flat = load_from_experts(synthetic_routing(preset, 3000, skew=0.0), cfg.num_experts)
    assert load.max() / load.mean() > flat.max() / flat.mean()
    r = cfg.router
    if r.n_group > 1:  # group-limited routing: a token's experts lie in at most topk_group groups
        groups = ex // (cfg.num_experts // r.n_group)
        assert max(len(set(g)) for g in groups.tolist()) <= r.topk_group


def test_synthetic_routing_errors():
    with pytest.raises(ValueError, match="config_or_preset_name"):
        synthetic_routing("no-such-model", 10)
    with pytest.raises(ValueError, match="skew"):
        synthetic_routing("mixtral-8x7b", 10, skew=-1)


def test_load_and_coactivation_counts_against_loops():
    rng = np.random.default_rng(0)
    ex = np.argsort(rng.random((100, 10)), axis=1)[:, :3]
    load = load_from_experts(ex, 10)
    co = coactivation_counts(ex, 10)
    ref_load, ref_co = np.zeros(10, int), np.zeros((10, 10), int)
    for row in ex.tolist():
        for a in row:
            ref_load[a] += 1
            for b in row:
                if a != b:
                    ref_co[a, b] += 1
    np.testing.assert_array_equal(load, ref_load)
    np.testing.assert_array_equal(co, ref_co)

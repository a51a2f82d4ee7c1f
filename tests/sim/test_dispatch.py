"""moepy.sim.dispatch against plain Python loops on small cases."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moepy.sim import Link, Placement, dispatch, jain_index, place_experts, tokens_even


def reference_dispatch(experts, placement, token_device, token_bytes, capacity=None):
    """The published rules, one slot at a time: replica on the token's device, else on its node, else any;
    each source device round-robin among the nearest tier's replicas (sorted by device) in its token order, starting
    at its device index; capacity per physical
    expert in token order; a token counted once per destination device."""
    pl = placement
    D, dpn = pl.num_devices, pl.devices_per_node
    reps = {e: sorted((int(d), int(p)) for p, (l, d) in enumerate(zip(pl.phys_to_logical, pl.phys_to_device))
                      if l == e) for e in range(pl.num_experts)}
    counters, used = {}, {}
    matrix = np.zeros((D, D), np.int64)
    tokens = np.zeros(D, np.int64)
    hist = np.zeros(pl.num_nodes + 1, np.int64)
    dropped = pairs = 0
    for t, row in enumerate(experts):
        src = int(token_device[t])
        dests = set()
        for e in row:
            e = int(e)
            local = [r for r in reps[e] if r[0] == src]
            node = [r for r in reps[e] if r[0] // dpn == src // dpn]
            if local:
                d, p = local[0]
            else:
                key, cands = ((e, "node", src // dpn, src), node) if node else ((e, "any", src), reps[e])
                j = counters.get(key, 0)
                counters[key] = j + 1
                d, p = cands[(j + src) % len(cands)]
            used[p] = used.get(p, 0) + 1
            if capacity is not None and used[p] > capacity:
                dropped += 1
                continue
            tokens[d] += 1
            dests.add(d)
        pairs += len(dests)
        for d in dests:
            matrix[src, d] += token_bytes
        hist[len({d // dpn for d in dests})] += 1
    return matrix, tokens, hist, dropped, pairs


def _case(replicas: bool, seed=0):
    rng = np.random.default_rng(seed)
    T, K, E, D = 50, 3, 8, 4
    experts = np.stack([rng.choice(E, K, replace=False, p=np.arange(1, E + 1) / 36) for _ in range(T)])
    if replicas:  # experts 7 and 6 replicated; 7 on both nodes and twice on node 1
        pl = Placement.from_assignment([[0], [1], [2], [3], [0], [1], [2, 3], [0, 2, 3]], D, 2)
    else:
        pl = Placement.from_assignment(np.array([0, 1, 2, 3, 0, 1, 2, 3]), D, 2)
    token_device = rng.integers(0, D, T)
    return experts, pl, token_device


@pytest.mark.parametrize("replicas", [False, True])
@pytest.mark.parametrize("capacity_factor", [None, 1.0])
def test_dispatch_matches_the_loop(replicas, capacity_factor):
    experts, pl, token_device = _case(replicas)
    rep = dispatch(experts, pl, token_device, 10, node_limit=1, capacity_factor=capacity_factor)
    cap = None if capacity_factor is None else math.ceil(capacity_factor * experts.size / pl.num_physical)
    matrix, tokens, hist, dropped, _ = reference_dispatch(experts, pl, token_device, 10, cap)
    np.testing.assert_array_equal(rep.bytes, matrix)
    np.testing.assert_array_equal(rep.combine_bytes, matrix.T)
    np.testing.assert_array_equal(rep.tokens_per_device, tokens)
    np.testing.assert_array_equal(rep.nodes_per_token, hist)
    assert rep.dropped == dropped and rep.capacity == cap
    if cap is not None:
        assert dropped > 0
    assert rep.local_bytes == np.trace(matrix)
    same = np.equal.outer(np.arange(4) // 2, np.arange(4) // 2) & ~np.eye(4, dtype=bool)
    assert rep.intra_node_bytes == matrix[same].sum()
    assert rep.inter_node_bytes == matrix[~np.equal.outer(np.arange(4) // 2, np.arange(4) // 2)].sum()
    assert rep.over_node_limit == pytest.approx(hist[2:].sum() / 50)
    assert rep.max_tokens == tokens.max() and rep.mean_tokens == pytest.approx(tokens.mean())
    assert "Jain" in str(rep) and "step time" in repr(rep)


def test_jain_index_by_hand():
    assert jain_index([1, 2, 3]) == pytest.approx(36 / (3 * 14))
    assert jain_index([5, 5, 5, 5]) == pytest.approx(1.0)
    assert jain_index([0, 0, 7, 0]) == pytest.approx(0.25)
    experts, pl, token_device = _case(False)
    rep = dispatch(experts, pl, token_device, 1)
    x = rep.tokens_per_device.astype(float)
    assert rep.jain == pytest.approx(x.sum() ** 2 / (x.size * (x * x).sum()))


@pytest.mark.parametrize("nodes", [1, 2])
def test_step_time_by_hand_on_two_devices(nodes):
    pl = Placement.from_assignment(np.array([0, 1]), 2, 2 // nodes)  # expert 0 on device 0, expert 1 on 1
    experts = np.array([[1], [0], [0], [1]])  # token 0: dev 0 -> 1; 1: dev 1 -> 0; 2: local; 3: dev 0 -> 1
    token_device = np.array([0, 1, 0, 0])
    B = 1000
    link = Link(intra_node_bw=1e6, inter_node_bw=1e5, latency=1e-3)
    rep = dispatch(experts, pl, token_device, B, link=link)
    np.testing.assert_array_equal(rep.bytes, [[B, 2 * B], [B, 0]])
    bw = link.intra_node_bw if nodes == 1 else link.inter_node_bw
    send0, recv0 = 1e-3 + 2 * B / bw, 1e-3 + B / bw  # device 0 sends 2B to device 1, receives B
    send1, recv1 = 1e-3 + B / bw, 1e-3 + 2 * B / bw
    assert rep.dispatch_time() == pytest.approx(max(send0, recv0, send1, recv1))
    assert rep.step_time() == pytest.approx(2 * max(send0, recv0, send1, recv1))
    assert rep.local_bytes == B
    assert (rep.intra_node_bytes, rep.inter_node_bytes) == ((3 * B, 0) if nodes == 1 else (0, 3 * B))


def test_tokens_even():
    d = tokens_even(10, 4)
    assert d.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert np.bincount(tokens_even(1000, 8)).tolist() == [125] * 8


def test_replica_choice_prefers_own_device_then_node():
    pl = Placement.from_assignment([[0, 1, 2], [3]], 4, 2)  # expert 0 on devices 0, 1 (node 0) and 2 (node 1)
    experts = np.zeros((6, 1), np.int64)
    rep = dispatch(experts, pl, np.array([1, 3, 3, 3, 0, 2]), 1)
    # own device for tokens on 1, 0, 2; the node-1 replica (device 2) for the tokens on device 3
    np.testing.assert_array_equal(rep.bytes[:, 0], [1, 0, 0, 0])
    np.testing.assert_array_equal(rep.bytes[3], [0, 0, 3, 0])
    assert rep.inter_node_bytes == 0


def test_node_limit_larger_than_the_node_count():
    experts, pl, token_device = _case(False)
    with pytest.raises(ValueError, match="node_limit=3 is larger than the node count 2"):
        dispatch(experts, pl, token_device, 1, node_limit=3)
    with pytest.raises(ValueError, match="token_device"):
        dispatch(experts, pl, token_device[:-1], 1)
    with pytest.raises(ValueError, match="experts"):
        dispatch(experts + 8, pl, token_device, 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 40), st.integers(1, 4), st.integers(2, 12), st.sampled_from([(1, 1), (2, 1), (4, 2), (6, 3)]),
       st.integers(0, 2), st.integers(0, 10_000), st.booleans())
def test_matrix_sums_count_distinct_token_device_pairs(T, K, E, devices_nodes, extra, seed, capacity):
    D, N = devices_nodes
    K = min(K, E)
    rng = np.random.default_rng(seed)
    R = (-E) % D + extra * D  # E + R divisible by D
    while (E + R) // D > E:  # at most one replica of an expert per device
        R -= D
    load = rng.pareto(1.0, E) + 0.01
    pl = place_experts(load, D, N, R, "eplb_global")
    experts = np.argsort(rng.random((T, E)), axis=1)[:, :K]
    src = rng.integers(0, D, T)
    rep = dispatch(experts, pl, src, 7, capacity_factor=0.7 if capacity else None)
    matrix, tokens, hist, dropped, pairs = reference_dispatch(
        experts, pl, src, 7, None if not capacity else math.ceil(0.7 * T * K / pl.num_physical))
    np.testing.assert_array_equal(rep.bytes, matrix)
    assert rep.bytes.sum() == 7 * pairs
    np.testing.assert_array_equal(rep.tokens_per_device, tokens)
    np.testing.assert_array_equal(rep.nodes_per_token, hist)
    assert rep.dropped == dropped
    np.testing.assert_array_equal(rep.combine_bytes, rep.bytes.T)
    assert rep.tokens_per_device.sum() == T * K - rep.dropped
    assert rep.nodes_per_token.sum() == T
    assert rep.local_bytes + rep.intra_node_bytes + rep.inter_node_bytes == rep.bytes.sum()


def test_matrix_sum_is_distinct_pairs_times_bytes_without_replicas():
    rng = np.random.default_rng(3)
    E, D = 12, 6
    pl = place_experts(np.ones(E), D, 3, 0, "contiguous")
    experts = np.argsort(rng.random((200, E)), axis=1)[:, :4]
    rep = dispatch(experts, pl, None, 5)
    dev = pl.phys_to_device[np.argsort(pl.phys_to_logical)]  # device of each logical expert
    distinct = sum(len(set(dev[row])) for row in experts)
    assert rep.bytes.sum() == 5 * distinct


def test_empty_batches():
    pl = place_experts(np.ones(8), 4, 2, 0, "contiguous")
    rep = dispatch(np.zeros((0, 2), np.int64), pl, None, 10, node_limit=2)
    assert rep.bytes.sum() == 0 and rep.step_time() == 0 and rep.jain == 1.0 and rep.over_node_limit == 0
    rep = dispatch(np.zeros((5, 0), np.int64), pl, None, 10)
    assert rep.nodes_per_token.tolist() == [5, 0, 0] and rep.tokens_per_device.sum() == 0

"""Every measure of moepy.analysis against a plain Python loop over small hand-made traces."""
import math
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from trace_helpers import random_trace
from moepy import analysis as A
from moepy.analysis import Trace


@pytest.fixture
def tr():
    return random_trace()


def loop_counts(trace, l, kept=False):
    c = [0] * trace.num_experts(l)
    for t in range(trace.num_tokens):
        for j, e in enumerate(trace.experts[l][t]):
            if kept and trace.dropped[l] is not None and trace.dropped[l][t, j]:
                continue
            c[e] += 1
    return np.array(c, float)


@pytest.mark.parametrize("kept", [False, True])
def test_load_and_balance_match_loops(kept):
    tr = random_trace(dropped=True, E=9, K=3)
    ld = A.load(tr, kept=kept)
    b = A.balance(tr, cold=0.5, kept=kept)
    for i, l in enumerate(tr.layers):
        c = loop_counts(tr, l, kept)
        p = c / c.sum()
        np.testing.assert_allclose(ld[i], p)
        np.testing.assert_allclose(b.load_over_uniform[i], p * 9)
        assert b.cv[i] == pytest.approx(np.std(c) / np.mean(c))
        assert b.max_over_mean[i] == pytest.approx(max(c) / np.mean(c))
        assert b.entropy_ratio[i] == pytest.approx(-sum(x * math.log(x) for x in p if x > 0) / math.log(9))
        assert b.dead[i] == sum(x == 0 for x in c)
        assert b.cold[i] == sum(x < 0.5 / 9 for x in p)


def test_balance_by_hand():
    tr = Trace.from_arrays([1, 2, 3, 4], {0: [[0], [0], [0], [1]]}, num_experts=4)
    b = A.balance(tr)
    np.testing.assert_allclose(b.load_over_uniform, [[3, 1, 0, 0]])
    assert b.dead.tolist() == [2] and b.cold.tolist() == [2] and b.max_over_mean[0] == 3
    np.testing.assert_allclose(A.coverage_curve(tr, 0), [0.75, 1, 1, 1])
    assert A.coverage_curve(tr, 0)[-1] == 1.0


def test_coactivation_matches_loop(tr):
    for l in tr.layers:
        E = tr.num_experts(l)
        n, both = Counter(), Counter()
        for row in tr.experts[l]:
            for a in row:
                n[a] += 1
                for b in row:
                    if b != a:
                        both[a, b] += 1
        c = A.coactivation(tr, l)
        for a in range(E):
            for b in range(E):
                want = np.nan if n[a] == 0 else (0.0 if a == b else both[a, b] / n[a])
                np.testing.assert_allclose(c[a, b], want)


def test_coactivation_dead_row_is_nan_and_all_pairs_count():
    # top-3: pairs (0, 2) are ranks 1 and 3, not adjacent; expert 3 is never selected
    tr = Trace.from_arrays([0, 1], {0: [[0, 1, 2], [2, 1, 4]]}, num_experts=5)
    c = A.coactivation(tr, 0)
    assert c[0, 2] == 1.0 and c[2, 0] == 0.5 and c[1, 4] == 0.5 and c[2, 2] == 0
    assert np.isnan(c[3]).all()


@pytest.mark.parametrize("any_choice", [False, True])
def test_cross_layer_matches_loop(tr, any_choice):
    a, b = tr.layers[0], tr.layers[1]
    got = A.cross_layer(tr, a, any_choice=any_choice)
    np.testing.assert_array_equal(got, A.cross_layer(tr, a, b, any_choice=any_choice))
    E = tr.num_experts(a)
    n, co = Counter(), Counter()
    for t in range(tr.num_tokens):
        ra = tr.experts[a][t] if any_choice else tr.experts[a][t][:1]
        rb = tr.experts[b][t] if any_choice else tr.experts[b][t][:1]
        for x in ra:
            n[x] += 1
            for y in rb:
                co[x, y] += 1
    for x in range(E):
        for y in range(E):
            np.testing.assert_allclose(got[x, y], co[x, y] / n[x] if n[x] else np.nan)
    with pytest.raises(ValueError, match="last MoE layer"):
        A.cross_layer(tr, tr.layers[-1])
    with pytest.raises(ValueError, match="not a MoE layer"):
        A.cross_layer(tr, 1)


def test_consecutive_matches_loop_and_skips_chunk_boundaries(tr):
    c = A.consecutive_same_expert(tr)
    starts = set(tr.chunk_starts.tolist())
    for i, l in enumerate(tr.layers):
        same1 = same_any = pairs = 0
        for t in range(tr.num_tokens - 1):
            if t + 1 in starts:
                continue
            a, b = tr.experts[l][t], tr.experts[l][t + 1]
            pairs += 1
            same1 += a[0] == b[0]
            same_any += bool(set(a) & set(b))
        assert c.pairs == pairs
        assert c.first[i] == pytest.approx(same1 / pairs) and c.any[i] == pytest.approx(same_any / pairs)
        f = np.bincount(tr.experts[l][:, 0], minlength=6) / tr.num_tokens
        assert c.random_first_load[i] == pytest.approx((f ** 2).sum())


def test_consecutive_by_hand_and_mixtral_baselines():
    ex = {0: [[1, 0], [1, 2], [3, 4], [3, 5], [6, 7]]}
    one = Trace.from_arrays([0] * 5, ex, num_experts=8)
    c = A.consecutive_same_expert(one)
    assert c.pairs == 4 and c.first[0] == 0.5 and c.any[0] == 0.5
    cut = Trace.from_arrays([0] * 5, ex, num_experts=8, chunk_starts=[0, 1, 3])  # pairs (1,2) and (3,4) only
    c = A.consecutive_same_expert(cut)
    assert c.pairs == 2 and c.first[0] == 0.0 and c.any[0] == 0.0
    assert c.random_first[0] == 0.125 and c.random_any[0] == pytest.approx(1 - 15 / 28)  # 12.5% and 46%


def test_vocab_specialization_matches_loop(tr):
    for any_choice in (False, True):
        for l in tr.layers:
            v = A.vocab_specialization(tr, l, min_count=3, any_choice=any_choice)
            occ = Counter(tr.ids.tolist())
            per = defaultdict(Counter)
            for t, tid in enumerate(tr.ids):
                for e in (tr.experts[l][t] if any_choice else tr.experts[l][t][:1]):
                    per[int(tid)][int(e)] += 1
            want = []
            for tid, n in occ.items():
                if n >= 3:
                    best = min(per[tid], key=lambda e: (-per[tid][e], e))
                    want.append((-n, tid, best, per[tid][best] / n))
            want.sort()
            assert v.token_ids.tolist() == [w[1] for w in want]
            assert v.counts.tolist() == [-w[0] for w in want]
            assert v.expert.tolist() == [w[2] for w in want]
            np.testing.assert_allclose(v.share, [w[3] for w in want])
            assert v.mean_share == pytest.approx(sum(-w[0] * w[3] for w in want) / sum(-w[0] for w in want))
            assert v.uniform == (2 if any_choice else 1) / 6


def test_top_tokens_matches_loop(tr):
    l = tr.layers[1]
    for e in range(6):
        got = A.top_tokens(tr, l, e, n=3)
        cnt = Counter(int(tid) for t, tid in enumerate(tr.ids) if tr.experts[l][t, 0] == e)
        want = sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        assert got.ids.tolist() == [k for k, _ in want] and got.counts.tolist() == [v for _, v in want]
        occ = Counter(tr.ids.tolist())
        np.testing.assert_allclose(got.share, [v / occ[k] for k, v in want])
    with pytest.raises(ValueError, match="expert"):
        A.top_tokens(tr, l, 6)


def test_domain_specialization_matches_loop(tr):
    ds = A.domain_specialization(tr)
    assert ds.ratio.shape == (2, 3, 6) and ds.domain_names == ["prose", "code"]
    for d in range(2):
        for i, l in enumerate(tr.layers):
            c = np.zeros(6)
            for t in range(tr.num_tokens):
                if tr.domains[t] == d:
                    for e in tr.experts[l][t]:
                        c[e] += 1
            np.testing.assert_allclose(ds.ratio[d, i], c / c.sum() * 6)
    np.testing.assert_allclose(ds.max_ratio(), ds.ratio.max(axis=2))


def test_router_agreement_matches_loop():
    a = random_trace(seed=1, K=3)
    b = random_trace(seed=2, K=3)
    b = Trace.from_arrays(a.ids, b.experts, num_experts=6, domains=a.domains, domain_names=a.domain_names,
                          chunk_starts=a.chunk_starts)
    g = A.router_agreement(a, b)
    for i, l in enumerate(a.layers):
        over = [len(set(x) & set(y)) / 3 for x, y in zip(a.experts[l], b.experts[l])]
        assert g.overlap[i] == pytest.approx(np.mean(over))
        assert g.top1[i] == pytest.approx(np.mean(a.experts[l][:, 0] == b.experts[l][:, 0]))
    same = A.router_agreement(a, a)
    assert (same.overlap == 1).all() and (same.top1 == 1).all()


def test_router_agreement_refuses_other_ids_and_tokenizers():
    a = random_trace(meta={"tokenizer_sha256": "aa" * 32, "vocab_size": 11})
    other_ids = random_trace(seed=5, meta={"tokenizer_sha256": "aa" * 32, "vocab_size": 11})
    with pytest.raises(ValueError, match="trace_b: not the same token ids"):
        A.router_agreement(a, other_ids)
    tok = random_trace(meta={"tokenizer_sha256": "bb" * 32, "vocab_size": 11})
    with pytest.raises(ValueError, match="trace_b: recorded with a different tokenizer"):
        A.router_agreement(a, tok)
    with pytest.raises(ValueError, match="trace_b: recorded with a different model"):
        A.router_agreement(a, random_trace(E=7, meta={"tokenizer_sha256": "aa" * 32, "vocab_size": 11}))
    with pytest.raises(TypeError, match="trace_b"):
        A.router_agreement(a, "x")


def test_take_and_domain():
    tr = random_trace(T=30, chunk=4)
    code = tr.domain("code")
    m = tr.domains == 1
    assert code.num_tokens == int(m.sum()) and code.domain_names == tr.domain_names
    for l in tr.layers:
        np.testing.assert_array_equal(code.experts[l], tr.experts[l][m])
    assert code.chunk_starts.tolist() == [s - 15 for s in tr.chunk_starts if s >= 15]
    odd = tr.take(np.arange(30) % 2 == 0)  # every token is alone: no consecutive pairs
    assert A.consecutive_same_expert(odd).pairs == 0
    with pytest.raises(ValueError, match="domain 'math'"):
        tr.domain("math")


@st.composite
def traces(draw):
    E = draw(st.integers(1, 9))
    K = draw(st.integers(1, E))
    T = draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2 ** 31))
    rng = np.random.default_rng(seed)
    skew = rng.random(E) ** 3 + 1e-3  # uneven loads, some experts nearly dead
    ex = {l: np.stack([rng.choice(E, K, replace=False, p=skew / skew.sum()) for _ in range(T)]) for l in (0, 1)}
    starts = sorted({0} | set(rng.integers(0, T, 3).tolist()))
    return Trace.from_arrays(rng.integers(0, 5, T), ex, num_experts=E, chunk_starts=starts)


@settings(max_examples=60, deadline=None)
@given(traces())
def test_measures_properties(tr):
    E, K = tr.num_experts(0), tr.top_k(0)
    ld = A.load(tr)
    np.testing.assert_allclose(ld.sum(axis=1), 1.0)
    cov = A.coverage_curve(tr, 0)
    assert cov.shape == (E,) and cov[-1] == pytest.approx(1.0)
    d = np.diff(np.concatenate([[0.0], cov]))
    assert (d >= -1e-12).all() and (np.diff(d) <= 1e-12).all()  # non-decreasing and concave
    c = A.coactivation(tr, 0)
    live = ~np.isnan(c).all(axis=1)
    assert ((c[live] >= 0) & (c[live] <= 1)).all()
    np.testing.assert_allclose(c[live].sum(axis=1), K - 1)
    x = A.cross_layer(tr, 0)
    xl = ~np.isnan(x).all(axis=1)
    np.testing.assert_allclose(x[xl].sum(axis=1), 1.0)
    np.testing.assert_allclose(A.cross_layer(tr, 0, any_choice=True)[live].sum(axis=1), K)
    cs = A.consecutive_same_expert(tr)
    assert cs.pairs == tr.num_tokens - len(tr.chunk_starts)
    if cs.pairs:
        assert 0 <= cs.first[0] <= cs.any[0] <= 1
    b = A.balance(tr)
    assert 0 <= b.entropy_ratio[0] <= 1 + 1e-12 and b.dead[0] <= b.cold[0]

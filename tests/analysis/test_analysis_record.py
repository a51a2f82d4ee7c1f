"""record_trace on a tiny random model and on the built-in mixtral checkpoint: the model's own routing per chunk,
BOS per chunk, domains, fingerprints (another model or tokenizer refused)."""
import numpy as np
import pytest

from moepy import analysis as A
from moepy.configs import presets
from moepy.eval import builtin
from moepy.nn import MoEModel


@pytest.fixture(scope="module")
def tiny():
    return MoEModel.from_config(presets.get("mixtral-8x7b").scaled(), seed=0, std=0.2)


@pytest.fixture(scope="module")
def mixtral():
    if "mixtral" not in builtin.names():
        pytest.skip("no built-in mixtral checkpoint")
    pytest.importorskip("tokenizers")
    return MoEModel.from_pretrained(builtin.path("mixtral"), progress=False)


def test_record_matches_the_models_routing_per_chunk(tiny):
    ids = np.random.default_rng(0).integers(0, tiny.vocab_size, 40)
    tr = A.record_trace(tiny, ids, ctx=16, domain="rand")
    assert tr.num_tokens == 40 and tr.chunk_starts.tolist() == [0, 16, 32] and tr.domain_names == ["rand"]
    np.testing.assert_array_equal(tr.ids, ids)  # no tokenizer: no BOS substitution
    for s in tr.chunk_starts:
        _, routing = tiny(ids[s:s + 16], return_routing=True)
        for l, r in routing.items():
            np.testing.assert_array_equal(tr.experts[l][s:s + 16], r.experts)
            np.testing.assert_array_equal(tr.weights[l][s:s + 16], r.weights)
            np.testing.assert_array_equal(tr.scores[l][s:s + 16], r.scores.astype(np.float16))
    fp = A.model_fingerprint(tiny)
    assert tr.fingerprint == fp and fp["tokenizer_sha256"] is None and tr.meta["ctx"] == 16
    tr.check_model(tiny)
    with pytest.raises(ValueError, match="tokenizer"):
        A.record_trace(tiny, "some text")
    with pytest.raises(ValueError, match="ids_or_text"):
        A.record_trace(tiny, np.array([0, tiny.vocab_size]))
    with pytest.raises(ValueError, match="ctx"):
        A.record_trace(tiny, ids, ctx=0)


def test_record_builtin_domains_and_fingerprint(mixtral, tmp_path):
    texts = {"prose": builtin.heldout_text("prose")[:1500], "code": builtin.heldout_text("code")[:1500]}
    tr = A.record_trace(mixtral, texts, ctx=128)
    tok = mixtral.tokenizer
    n = [len(tok.encode(t)) for t in texts.values()]
    assert tr.num_tokens == sum(n) and tr.domain_names == ["prose", "code"]
    assert (tr.domains == 1).sum() == n[1]
    assert (tr.ids[tr.chunk_starts] == tok.bos_token_id).all()  # perplexity's BOS per chunk
    assert n[0] in tr.chunk_starts
    tr.check_model(mixtral)
    assert tr.meta["tokenizer_sha256"] == A.tokenizer_sha256(tok) and len(tr.meta["tokenizer_sha256"]) == 64
    prose = A.record_trace(mixtral, texts["prose"], ctx=128, domain="prose")
    np.testing.assert_array_equal(prose.experts[0], tr.domain("prose").experts[0])
    ds = A.domain_specialization(tr)
    assert ds.ratio.shape == (2, 4, 8) and np.isfinite(ds.ratio).all()
    # another tokenizer: same architecture, different tokenizer identity
    tr.meta["tokenizer_sha256"] = "0" * 64
    with pytest.raises(ValueError, match="trace: recorded with a different tokenizer"):
        tr.check_model(mixtral)
    tiny = MoEModel.from_config(presets.get("mixtral-8x7b").scaled(), seed=0)
    with pytest.raises(ValueError, match="trace: recorded with a different model"):
        prose.check_model(tiny)
    with pytest.raises(ValueError, match="trace_b: recorded with a different model"):
        A.router_agreement(prose, A.record_trace(tiny, [1, 2, 3]))
